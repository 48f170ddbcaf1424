//! The VT-d adapter: [`IommuDriver`] over `sviommu_vtd::driver`, with the unit's hardware model
//! beside it for the audit's DMA.
//!
//! Paging domains are second-stage tables (the only kind legacy mode has, and the kind a
//! nesting parent must be). Nested and SVA domains are a DID of their own over a first stage
//! the driver does not own. PASID tables are per device and live in host memory, so a guest's
//! whole PASID table is never bound (`pasid_table_bind: false`).

use std::ops::Range;
use std::sync::Arc;

use sviommu_memory::{FrameAllocator, HostMemory, Hpa};
use sviommu_pgtable::{Access, Mapped};
use sviommu_vtd::driver::{
    Did, DomainConfig, DriverConfig, DriverError as VtdError, InvalidateRequest, Mode, PasidConfig,
    Prot, VtdDriver, RID_PASID,
};
use sviommu_vtd::hw::{DmaRequest, Vtd, VtdParams};
use sviommu_vtd::spec::prq::ResponseCode;
use sviommu_vtd::spec::{
    FaultReason as VtdReason, Fspm, INTERRUPT_ADDR_FIRST, INTERRUPT_ADDR_LAST,
};

use crate::driver::{
    CacheKind, DmaAccess, DmaFault, DmaResult, DriverCounters, DriverError, DriverErrorKind,
    FaultReason, HwDomain, HwFault, HwInvalidation, HwTarget, IommuDriver, PageResponseCode,
    PasidTableConfig, Reach, RequestIds, Stage1Config, Stage1Format, UnitCaps,
};
use crate::pasid_alloc::Pasid;

/// The VT-d model over host memory, shared by the driver (as registers) and the devices.
pub type HostVtd = Vtd<Arc<HostMemory>>;

/// §3.14: requests without PASID to FEEx_xxxxh are interrupts, never DMA, so no domain may map
/// that window (Linux reserves it as `IOMMU_RESV_MSI`).
const INTERRUPT_WINDOW: Range<u64> = INTERRUPT_ADDR_FIRST..INTERRUPT_ADDR_LAST + 1;

/// One VT-d remapping unit under the core.
pub struct VtdUnit {
    hw: Arc<HostVtd>,
    driver: VtdDriver<Arc<HostVtd>, Arc<HostMemory>>,
    caps: UnitCaps,
    /// Requester IDs of devices with a device-TLB (ATS enabled at probe).
    ats: std::collections::BTreeSet<u16>,
}

impl std::fmt::Debug for VtdUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VtdUnit").field("caps", &self.caps).finish_non_exhaustive()
    }
}

impl VtdUnit {
    /// A unit with `params` over `mem`, brought up by its driver with table memory from
    /// `frames`.
    pub fn new(
        mem: Arc<HostMemory>,
        params: VtdParams,
        frames: FrameAllocator<Hpa>,
        config: DriverConfig,
    ) -> Result<Self, VtdError> {
        let hw = Arc::new(Vtd::new(Arc::clone(&mem), params));
        let driver = VtdDriver::new(Arc::clone(&hw), mem, frames, config)?;
        let c = *driver.capabilities();
        let scalable = driver.mode() == Mode::Scalable;
        let mut stage1_formats = Vec::new();
        if scalable && c.first_stage {
            stage1_formats.push(Stage1Format::X86 { levels: 4 });
            if c.fs_5level {
                stage1_formats.push(Stage1Format::X86 { levels: 5 });
            }
        }
        let ias_bits = c.default_aw().map_or(39, |aw| aw.input_bits());
        let caps = UnitCaps {
            model: crate::Model::Vtd,
            page_sizes: c.ss_page_sizes,
            ias_bits,
            oas_bits: config.haw,
            pasid_bits: if scalable && c.pasid { c.pasid_bits.min(config.pasid_bits) } else { 0 },
            nesting: scalable && c.nesting,
            rid_nesting: scalable && c.nesting,
            identity: c.pass_through,
            stage1_formats,
            pasid_table_bind: false,
            page_requests: scalable && c.page_requests,
            // PASID tables are per device: a PASID entry stays whatever RID_PASID holds.
            pasid_table_follows_domain: false,
        };
        Ok(Self { hw, driver, caps, ats: Default::default() })
    }

    /// The hardware model (to play devices, as tests and the simulator do).
    pub fn hw(&self) -> &Arc<HostVtd> {
        &self.hw
    }

    /// The driver.
    pub fn driver(&self) -> &VtdDriver<Arc<HostVtd>, Arc<HostMemory>> {
        &self.driver
    }

    fn did(d: HwDomain) -> Result<Did, DriverError> {
        u16::try_from(d.0)
            .map(Did)
            .map_err(|_| DriverError::new(DriverErrorKind::Invalid, "no such domain"))
    }

    fn levels(s1: &Stage1Config) -> Result<Fspm, DriverError> {
        match s1.format {
            Stage1Format::X86 { levels: 4 } => Ok(Fspm::FourLevel),
            Stage1Format::X86 { levels: 5 } => Ok(Fspm::FiveLevel),
            _ => Err(DriverError::new(DriverErrorKind::Unsupported, "this stage-1 format")),
        }
    }

    /// Whether one of `ids` has a first stage tagged `did` at RID_PASID.
    fn at_rid_pasid(&self, did: u16, ids: &[u32]) -> bool {
        ids.iter().filter_map(|&id| u16::try_from(id).ok()).any(|r| {
            match self.driver.attachment(r, None) {
                Some(PasidConfig::Nested { s1_did: Some(d), .. }) => d.0 == did,
                Some(PasidConfig::FirstStageExternal { did: d, .. }) => d.0 == did,
                _ => false,
            }
        })
    }

    fn config(&self, target: HwTarget) -> Result<PasidConfig, DriverError> {
        Ok(match target {
            HwTarget::Blocked => PasidConfig::Blocked,
            HwTarget::Identity => PasidConfig::PassThrough,
            HwTarget::Paging(d) => PasidConfig::SecondStage { did: Self::did(d)? },
            HwTarget::Nested { tag, parent, s1 } => PasidConfig::Nested {
                parent: Self::did(parent)?,
                s1_did: Some(Self::did(tag)?),
                fs_root_gpa: s1.root,
                levels: Self::levels(&s1)?,
                sre: false,
            },
            HwTarget::Sva { tag, s1 } => PasidConfig::FirstStageExternal {
                did: Self::did(tag)?,
                fs_root: s1.root,
                levels: Self::levels(&s1)?,
                sre: false,
            },
        })
    }
}

/// The driver's refusal, as the core's kinds.
fn err(e: VtdError) -> DriverError {
    let kind = match e {
        VtdError::Unsupported(_) | VtdError::AwNotSupported(_) | VtdError::NeedsScalableMode(_) => {
            DriverErrorKind::Unsupported
        }
        VtdError::NoDomainIds | VtdError::Frame(_) => DriverErrorKind::NoResources,
        VtdError::DomainAttached(_) | VtdError::DeviceInUse(_) => DriverErrorKind::Busy,
        VtdError::Map(sviommu_pgtable::MapError::Overlap { .. }) => DriverErrorKind::Busy,
        VtdError::Timeout { .. }
        | VtdError::DeviceTlbTimeout { .. }
        | VtdError::InvalidationQueue { .. }
        | VtdError::Memory(_)
        | VtdError::PageRequestTail(_) => DriverErrorKind::Hardware,
        _ => DriverErrorKind::Invalid,
    };
    DriverError::new(kind, e)
}

fn reason(r: VtdReason) -> FaultReason {
    FaultReason { code: u16::from(r.code()), name: r.name() }
}

fn rid(id: u32) -> Result<u16, DriverError> {
    u16::try_from(id).map_err(|_| DriverError::new(DriverErrorKind::Invalid, "not a requester ID"))
}

fn span(r: &Range<u64>) -> (u64, u64) {
    (r.start, r.end - r.start)
}

impl IommuDriver for VtdUnit {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn caps(&self) -> &UnitCaps {
        &self.caps
    }

    fn reserved_regions(&self, _ids: &RequestIds) -> Vec<(Range<u64>, &'static str)> {
        vec![(INTERRUPT_WINDOW, "interrupt address range")]
    }

    fn alloc_paging(&mut self, _nesting_parent: bool) -> Result<HwDomain, DriverError> {
        let did = self.driver.alloc_domain(DomainConfig::SecondStage { aw: None }).map_err(err)?;
        Ok(HwDomain(u32::from(did.0)))
    }

    fn alloc_tag(&mut self, _s1: &Stage1Config) -> Result<HwDomain, DriverError> {
        let did = self.driver.alloc_domain(DomainConfig::External).map_err(err)?;
        Ok(HwDomain(u32::from(did.0)))
    }

    fn probe_device(&mut self, ids: &RequestIds, ats: bool, pri: bool) -> Result<(), DriverError> {
        let c = self.driver.capabilities();
        let features = sviommu_vtd::driver::DeviceFeatures {
            ats: ats && c.device_tlb,
            page_requests: pri && ats && c.page_requests && self.driver.mode() == Mode::Scalable,
        };
        if !features.ats {
            return Ok(());
        }
        for &id in ids {
            self.driver.set_device_features(rid(id)?, features).map_err(err)?;
        }
        // The device-TLB belongs to the device, whose own Requester ID comes first.
        if let Some(&own) = ids.first() {
            self.ats.insert(rid(own)?);
        }
        Ok(())
    }

    fn free(&mut self, domain: HwDomain) -> Result<(), DriverError> {
        self.driver.free_domain(Self::did(domain)?).map_err(err)?;
        Ok(())
    }

    fn map(
        &mut self,
        domain: HwDomain,
        iova: u64,
        pa: u64,
        page_lg2: u8,
        write: bool,
    ) -> Result<Mapped, DriverError> {
        let prot = if write { Prot::RW } else { Prot::READ };
        self.driver.map_recorded(Self::did(domain)?, iova, pa, 1 << page_lg2, prot).map_err(err)
    }

    fn undo_map(
        &mut self,
        domain: HwDomain,
        range: Range<u64>,
        maps: &[Mapped],
    ) -> Result<(), DriverError> {
        let (iova, size) = span(&range);
        self.driver.undo_maps(Self::did(domain)?, iova, size, maps).map_err(err)
    }

    fn unmap(&mut self, domain: HwDomain, range: Range<u64>) -> Result<u64, DriverError> {
        let (iova, size) = span(&range);
        self.driver.unmap(Self::did(domain)?, iova, size).map_err(err)
    }

    fn flush(&mut self, domain: HwDomain, range: Option<Range<u64>>) -> Result<(), DriverError> {
        self.driver.flush_iotlb(Self::did(domain)?, range.as_ref().map(span)).map_err(err)
    }

    fn attach(
        &mut self,
        ids: &RequestIds,
        pasid: Option<Pasid>,
        target: HwTarget,
    ) -> Result<Reach, DriverError> {
        let config = self.config(target)?;
        for &id in ids {
            let r = rid(id)?;
            match config {
                PasidConfig::Blocked => {
                    self.driver.detach(r, pasid.map(|p| p.0)).map_err(err)?;
                }
                _ => self.driver.attach(r, pasid.map(|p| p.0), config).map_err(err)?,
            }
        }
        // PASID tables are per requester: a change reaches only the IDs named.
        Ok(Reach { request_ids: ids.to_vec() })
    }

    fn bind_pasid_table(
        &mut self,
        _ids: &RequestIds,
        _parent: HwDomain,
        _config: &PasidTableConfig,
    ) -> Result<Reach, DriverError> {
        Err(DriverError::new(
            DriverErrorKind::Unsupported,
            "scalable-mode PASID tables live in host memory; nest per PASID",
        ))
    }

    fn invalidate(&mut self, inv: &HwInvalidation) -> Result<(), DriverError> {
        let did = Self::did(inv.domain)?.0;
        let range = inv.range.as_ref().map(span);
        let mut reqs = Vec::new();
        match inv.cache {
            CacheKind::Iotlb => reqs.push(match inv.pasid {
                Some(p) => InvalidateRequest::PasidIotlb { did, pasid: p.0, range, ih: inv.leaf },
                // §6.5.2.4: a first stage at RID_PASID (a nested domain attached without
                // PASID) is cached as first-stage translations of RID_PASID, which only a
                // PASID-based invalidation selects by address.
                None if self.at_rid_pasid(did, &inv.request_ids) => {
                    InvalidateRequest::PasidIotlb { did, pasid: RID_PASID, range, ih: inv.leaf }
                }
                None => InvalidateRequest::Iotlb { did, range, ih: inv.leaf },
            }),
            CacheKind::Pasid => {
                reqs.push(InvalidateRequest::PasidCache { did, pasid: inv.pasid.map(|p| p.0) });
            }
            CacheKind::DevIotlb => {
                // Only devices with a device-TLB get an ATS invalidation (Linux sends them only
                // where ATS is enabled).
                for &id in &inv.request_ids {
                    let sid = rid(id)?;
                    if self.ats.contains(&sid) {
                        let pasid = inv.pasid.map(|p| p.0);
                        reqs.push(InvalidateRequest::DevTlb { sid, pasid, range });
                    }
                }
                if reqs.is_empty() {
                    return Ok(());
                }
            }
        }
        self.driver.invalidate(&reqs).map_err(err)
    }

    fn poll_faults(&mut self) -> Vec<HwFault> {
        let mut out = Vec::new();
        for rec in self.driver.drain_faults().records {
            let reason = match rec.fr() {
                Ok(r) => reason(r),
                Err(_) => FaultReason {
                    code: u16::try_from(rec.fr_raw()).unwrap_or(u16::MAX),
                    name: "reserved fault reason",
                },
            };
            out.push(HwFault::Unrecoverable {
                request_id: u32::from(rec.sid()),
                pasid: rec.pp().then(|| Pasid(rec.pv())),
                addr: rec.fi(),
                reason,
                raw: None,
            });
        }
        if let Ok(d) = self.driver.drain_page_requests() {
            for r in d.requests {
                out.push(HwFault::PageRequest {
                    request_id: u32::from(r.rid()),
                    pasid: r.pp().then(|| Pasid(r.pasid())),
                    addr: r.addr(),
                    write: r.wr(),
                    group: r.prgi(),
                    last: r.lpig(),
                });
            }
        }
        out
    }

    fn page_response(
        &mut self,
        request_id: u32,
        pasid: Option<Pasid>,
        group: u16,
        code: PageResponseCode,
    ) -> Result<(), DriverError> {
        let code = match code {
            PageResponseCode::Success => ResponseCode::Success,
            PageResponseCode::Invalid => ResponseCode::InvalidRequest,
            PageResponseCode::Failure => ResponseCode::ResponseFailure,
        };
        self.driver
            .page_group_response(rid(request_id)?, pasid.map(|p| p.0), group, code)
            .map_err(err)
    }

    fn counters(&self) -> DriverCounters {
        let s = self.driver.stats();
        DriverCounters {
            faults_overflowed: s.fault_overflows,
            page_requests_overflowed: s.page_request_overflows,
            invalidations: s.descriptors,
            syncs: s.waits,
        }
    }

    fn dma(
        &self,
        request_id: u32,
        pasid: Option<Pasid>,
        addr: u64,
        access: DmaAccess,
    ) -> DmaResult {
        let access = match access {
            DmaAccess::Read => Access::READ,
            DmaAccess::Write => Access::WRITE,
        };
        let Ok(r) = u16::try_from(request_id) else {
            return Err(DmaFault::NotSeen { why: "wider than a 16-bit requester ID" });
        };
        let mut req = DmaRequest::new(r, addr, access);
        if let Some(p) = pasid {
            req = req.with_pasid(p.0);
        }
        self.hw.translate(&req).map(|t| t.output).map_err(|f| DmaFault::Fault(reason(f.reason)))
    }

    fn hw_info(&self) -> crate::driver::HwInfo {
        crate::driver::HwInfo::Vtd {
            cap: self.hw.mmio_read(sviommu_vtd::spec::regs::CAP.0, 8),
            ecap: self.hw.mmio_read(sviommu_vtd::spec::regs::ECAP.0, 8),
        }
    }
}

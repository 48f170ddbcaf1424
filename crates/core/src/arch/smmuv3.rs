//! The SMMUv3 adapter: [`IommuDriver`] over `sviommu_smmuv3::driver`, with the unit's
//! hardware model beside it for the audit's DMA.
//!
//! Paging domains are stage-1 (an ASID, a CD) unless they are nesting parents, which are
//! stage 2 (a VMID). Whether a PASID bind reaches more StreamIDs than it names is the driver's
//! CD table policy; the adapter passes the reach up as data.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use sviommu_memory::{FrameAllocator, HostMemory, Hpa};
use sviommu_pgtable::{vmsa, Access, Format, Mapped};
use sviommu_smmuv3::driver::{
    Attach, DomainConfig, DomainId, DriverConfig, DriverError as SmmuError, GuestCdTable,
    Invalidation, NestedCd, PasidAttach, Prot, SmmuDriver, SvaContext,
};
use sviommu_smmuv3::hw::{Abort, Silent, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::{EventId, Granule, PriResp, S1Dss, S1Fmt};

use crate::driver::{
    CacheKind, DmaAccess, DmaFault, DmaResult, DriverCounters, DriverError, DriverErrorKind,
    FaultReason, HwDomain, HwFault, HwInvalidation, HwTarget, IommuDriver, PageResponseCode,
    PasidTableConfig, PasidTableFormat, Reach, RequestIds, Stage1Config, Stage1Format, UnitCaps,
};
use crate::pasid_alloc::Pasid;

/// The SMMU model over host memory, shared by the driver (as registers) and the devices.
pub type HostSmmu = Smmu<Arc<HostMemory>>;

/// Input bits of the adapter's paging domains (T0SZ / S2T0SZ = 16).
const DOMAIN_IAS_BITS: u8 = 48;
/// Linux's software MSI window (`MSI_IOVA_BASE`, `MSI_IOVA_LENGTH` in arm-smmu-v3): IOVAs where
/// the kernel maps MSI doorbells, so DMA mappings must stay out.
const SW_MSI: Range<u64> = 0x0800_0000..0x0810_0000;

/// The granule whose pages are 2^`lg2` bytes.
fn granule_of(lg2: u8) -> Option<Granule> {
    [Granule::Size4K, Granule::Size16K, Granule::Size64K].into_iter().find(|g| g.lg2() == lg2)
}

/// The sizes a leaf of a domain's tables can map with granule `g` (a bit per size): what
/// pgtable's VMSAv8-64 stage-1 format allows at each level of a `DOMAIN_IAS_BITS` table
/// (D8.2; no FEAT_LPA(2) blocks: the domains' output is 48 bits).
fn leaf_sizes(g: Granule) -> u64 {
    let tg = match g {
        Granule::Size4K => vmsa::Granule::K4,
        Granule::Size16K => vmsa::Granule::K16,
        Granule::Size64K => vmsa::Granule::K64,
    };
    let f = vmsa::VmsaS1::new(0, tg, 64 - DOMAIN_IAS_BITS);
    (0..f.depth()).filter(|&d| f.leaf_allowed(d)).fold(0, |sizes, d| sizes | 1 << f.shift(d))
}

/// What an adapter domain handle stands for.
#[derive(Clone, Copy, Debug)]
enum Tag {
    /// A driver domain: stage 1 or (a nesting parent) stage 2.
    Paging(DomainId),
    /// A stage 1 the driver does not own (nested or SVA), tagged in the TLB by its owner's
    /// ASID (and, nested, by the parent's VMID, learnt at attach).
    Foreign {
        /// The owner's ASID.
        asid: u16,
        /// The nesting parent, once attached nested.
        parent: Option<DomainId>,
    },
}

/// One SMMUv3 under the core.
pub struct SmmuUnit {
    hw: Arc<HostSmmu>,
    driver: SmmuDriver<Arc<HostSmmu>, Arc<HostMemory>>,
    caps: UnitCaps,
    tags: BTreeMap<u32, Tag>,
    next_tag: u32,
    /// StreamIDs of devices with ATS: enabled in their STE once they translate.
    ats: std::collections::BTreeSet<u32>,
    /// The domain each StreamID's requests without a SubstreamID are attached to.
    attached: BTreeMap<u32, DomainId>,
    /// (StreamID, SubstreamID) pairs nested over a parent (the host CD table in the window).
    nested: std::collections::BTreeSet<(u32, u32)>,
}

impl std::fmt::Debug for SmmuUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmmuUnit").field("caps", &self.caps).finish_non_exhaustive()
    }
}

impl SmmuUnit {
    /// An SMMU with `params` over `mem`, brought up by its driver with table memory from
    /// `frames`.
    pub fn new(
        mem: Arc<HostMemory>,
        params: SmmuParams,
        frames: FrameAllocator<Hpa>,
        config: DriverConfig,
    ) -> Result<Self, SmmuError> {
        let hw = Arc::new(Smmu::new(Arc::clone(&mem), params));
        let driver = SmmuDriver::new(Arc::clone(&hw), mem, frames, config)?;
        let c = *driver.capabilities();
        let advertised = [(c.gran4k, Granule::Size4K), (c.gran16k, Granule::Size16K)]
            .into_iter()
            .chain([(c.gran64k, Granule::Size64K)])
            .filter_map(|(ok, g)| ok.then_some(g));
        let stage1_formats: Vec<_> = advertised
            .clone()
            .map(|g| Stage1Format::Vmsa { granule_lg2: g.lg2(), ias_bits: DOMAIN_IAS_BITS })
            .collect();
        // Domains use the smallest granule the SMMU has.
        let page_sizes = advertised.map(leaf_sizes).next().unwrap_or(0);
        let caps = UnitCaps {
            model: crate::Model::Smmuv3,
            page_sizes,
            ias_bits: DOMAIN_IAS_BITS,
            oas_bits: c.oas_bits,
            pasid_bits: driver.config().ssid_bits.min(c.ssidsize),
            nesting: c.s1p && c.s2p,
            rid_nesting: false,
            identity: true,
            stage1_formats,
            pasid_table_bind: c.s1p && c.s2p,
            page_requests: c.pri,
            pasid_table_follows_domain: driver.config().cd_table_policy
                == sviommu_smmuv3::driver::CdTablePolicy::PerDomain,
        };
        Ok(Self {
            hw,
            driver,
            caps,
            tags: BTreeMap::new(),
            next_tag: 1,
            ats: Default::default(),
            attached: BTreeMap::new(),
            nested: Default::default(),
        })
    }

    /// The hardware model (to play devices, as tests and the simulator do).
    pub fn hw(&self) -> &Arc<HostSmmu> {
        &self.hw
    }

    /// The driver.
    pub fn driver(&self) -> &SmmuDriver<Arc<HostSmmu>, Arc<HostMemory>> {
        &self.driver
    }

    fn granule(&self) -> Granule {
        let lg2 = self.caps.page_sizes.trailing_zeros();
        u8::try_from(lg2).ok().and_then(granule_of).unwrap_or(Granule::Size4K)
    }

    fn paging(&self, d: HwDomain) -> Result<DomainId, DriverError> {
        match self.tags.get(&d.0) {
            Some(Tag::Paging(id)) => Ok(*id),
            _ => Err(DriverError::new(DriverErrorKind::Invalid, "not a paging domain")),
        }
    }

    fn new_tag(&mut self, tag: Tag) -> HwDomain {
        let h = HwDomain(self.next_tag);
        self.next_tag += 1;
        self.tags.insert(h.0, tag);
        h
    }

    /// A guest's stage 1 as the CD of per-PASID nesting holds it: its root is an IPA.
    fn nested_cd(s1: Stage1Config) -> Result<NestedCd, DriverError> {
        let c = Self::sva_context(s1, DOMAIN_IAS_BITS)?;
        Ok(NestedCd {
            asid: c.asid,
            ttb0_ipa: c.ttb0,
            t0sz: c.t0sz,
            granule: c.granule,
            ips_bits: c.ips_bits,
            mair: c.mair,
            ha: c.ha,
            hd: c.hd,
        })
    }

    fn sva_context(s1: Stage1Config, oas_bits: u8) -> Result<SvaContext, DriverError> {
        let Stage1Format::Vmsa { granule_lg2, ias_bits } = s1.format else {
            return Err(DriverError::new(DriverErrorKind::Unsupported, "an x86 stage 1"));
        };
        let granule = granule_of(granule_lg2)
            .ok_or_else(|| DriverError::new(DriverErrorKind::Invalid, "granule"))?;
        Ok(SvaContext {
            asid: s1.asid,
            ttb0: s1.root,
            t0sz: 64u8.saturating_sub(ias_bits),
            granule,
            ips_bits: oas_bits,
            // Normal write-back memory at index 0, as the driver's own stage-1 tables use.
            mair: sviommu_smmuv3::driver::MAIR_NORMAL_WB,
            ha: false,
            hd: false,
        })
    }
}

/// The driver's refusal, as the core's kinds.
fn err(e: SmmuError) -> DriverError {
    let kind = match &e {
        SmmuError::Unsupported(_) | SmmuError::Granule(_) | SmmuError::InputSize { .. } => {
            DriverErrorKind::Unsupported
        }
        SmmuError::IdsExhausted(_) | SmmuError::Frame(_) => DriverErrorKind::NoResources,
        SmmuError::PasidInUse { .. } | SmmuError::AsidInUse(_) | SmmuError::DomainInUse { .. } => {
            DriverErrorKind::Busy
        }
        SmmuError::Map(sviommu_pgtable::MapError::Overlap { .. }) => DriverErrorKind::Busy,
        SmmuError::EnableTimeout { .. }
        | SmmuError::SyncTimeout { .. }
        | SmmuError::AtcInvalidationTimeout { .. }
        | SmmuError::Command { .. }
        | SmmuError::Memory(_) => DriverErrorKind::Hardware,
        _ => DriverErrorKind::Invalid,
    };
    DriverError::new(kind, e)
}

fn reason(id: EventId) -> FaultReason {
    FaultReason { code: u16::from(id.code()), name: id.name() }
}

/// What terminated a transaction the SMMU records no event for.
fn silent(s: Silent) -> &'static str {
    match s {
        Silent::GbpaAbort => "SMMU_GBPA.ABORT (SMMUEN == 0)",
        Silent::DisabledBeyondOas => "bypass beyond the OAS (SMMUEN == 0)",
        Silent::SteAbort => "STE.Config abort",
    }
}

impl IommuDriver for SmmuUnit {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn caps(&self) -> &UnitCaps {
        &self.caps
    }

    fn reserved_regions(&self, ids: &RequestIds) -> Vec<(Range<u64>, &'static str)> {
        let mut out = vec![(SW_MSI, "software MSI window")];
        // A nesting parent's IPA window holding the host CD tables of per-PASID nesting.
        for sid in ids {
            let window = self.attached.get(sid).and_then(|d| self.driver.reserved_ipa_window(*d));
            if let Some((start, size)) = window {
                out.push((start..start + size, "nested CD table window"));
            }
        }
        out.sort_by_key(|(r, _)| r.start);
        out.dedup();
        out
    }

    fn alloc_paging(&mut self, nesting_parent: bool) -> Result<HwDomain, DriverError> {
        let granule = self.granule();
        let config = if nesting_parent {
            DomainConfig::S2 { granule, ias_bits: DOMAIN_IAS_BITS }
        } else {
            DomainConfig::S1 { granule, ias_bits: DOMAIN_IAS_BITS }
        };
        let id = self.driver.alloc_domain(config).map_err(err)?;
        Ok(self.new_tag(Tag::Paging(id)))
    }

    fn alloc_tag(&mut self, s1: &Stage1Config) -> Result<HwDomain, DriverError> {
        Ok(self.new_tag(Tag::Foreign { asid: s1.asid, parent: None }))
    }

    fn probe_device(&mut self, ids: &RequestIds, ats: bool, _pri: bool) -> Result<(), DriverError> {
        if ats && self.driver.capabilities().ats {
            self.ats.extend(ids.iter().copied());
        }
        Ok(())
    }

    fn free(&mut self, domain: HwDomain) -> Result<(), DriverError> {
        if let Some(Tag::Paging(id)) = self.tags.get(&domain.0) {
            self.driver.free_domain(*id).map_err(err)?;
        }
        self.tags.remove(&domain.0);
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
        let id = self.paging(domain)?;
        let prot = if write { Prot::RW } else { Prot::RO };
        self.driver.map_recorded(id, iova, pa, 1 << page_lg2, prot).map_err(err)
    }

    fn undo_map(
        &mut self,
        domain: HwDomain,
        range: Range<u64>,
        maps: &[Mapped],
    ) -> Result<(), DriverError> {
        let id = self.paging(domain)?;
        self.driver.undo_maps(id, range.start, range.end - range.start, maps).map_err(err)
    }

    fn unmap(&mut self, domain: HwDomain, range: Range<u64>) -> Result<u64, DriverError> {
        let id = self.paging(domain)?;
        self.driver.unmap(id, range.start, range.end - range.start).map_err(err)
    }

    fn flush(&mut self, domain: HwDomain, range: Option<Range<u64>>) -> Result<(), DriverError> {
        let id = self.paging(domain)?;
        self.driver.flush_tlb(id, range.map(|r| (r.start, r.end - r.start))).map_err(err)
    }

    fn release_unattached(&mut self, ids: &RequestIds) -> Result<(), DriverError> {
        for &sid in ids {
            self.driver.release_stream(sid).map_err(err)?;
        }
        Ok(())
    }

    fn attach(
        &mut self,
        ids: &RequestIds,
        pasid: Option<Pasid>,
        target: HwTarget,
    ) -> Result<Reach, DriverError> {
        let mut reach = Reach::default();
        for &sid in ids {
            match (pasid, target) {
                (None, HwTarget::Blocked) => {
                    self.driver.attach(sid, Attach::Abort).map_err(err)?;
                    self.attached.remove(&sid);
                }
                (None, HwTarget::Identity) => {
                    self.driver.attach(sid, Attach::Bypass).map_err(err)?;
                    self.attached.remove(&sid);
                }
                (None, HwTarget::Paging(d)) => {
                    let id = self.paging(d)?;
                    self.driver.attach(sid, Attach::Domain(id)).map_err(err)?;
                    self.attached.insert(sid, id);
                }
                (None, _) => {
                    return Err(DriverError::new(
                        DriverErrorKind::Unsupported,
                        "a foreign stage 1 for requests without a SubstreamID",
                    ))
                }
                (Some(p), HwTarget::Blocked) if self.nested.contains(&(sid, p.0)) => {
                    let r = self.driver.detach_nested_pasid(sid, p.0).map_err(err)?;
                    self.nested.remove(&(sid, p.0));
                    reach.request_ids.extend(r);
                    continue;
                }
                (Some(p), HwTarget::Blocked) => {
                    match self.driver.detach_pasid(sid, p.0) {
                        Ok(r) => reach.request_ids.extend(r),
                        Err(SmmuError::PasidNotBound { .. } | SmmuError::NoCdTable { .. }) => {}
                        Err(e) => return Err(err(e)),
                    }
                    continue;
                }
                (Some(p), HwTarget::Paging(d)) => {
                    let id = self.paging(d)?;
                    let r = self.driver.attach_pasid(sid, p.0, PasidAttach::Domain(id));
                    reach.request_ids.extend(r.map_err(err)?);
                    continue;
                }
                (Some(p), HwTarget::Sva { s1, .. }) => {
                    let ctx = Self::sva_context(s1, self.caps.oas_bits)?;
                    let r = self.driver.attach_pasid(sid, p.0, PasidAttach::Sva(ctx));
                    reach.request_ids.extend(r.map_err(err)?);
                    continue;
                }
                (Some(p), HwTarget::Nested { tag, parent, s1 }) => {
                    let parent = self.paging(parent)?;
                    let cd = Self::nested_cd(s1)?;
                    let r = self.driver.attach_nested_pasid(sid, p.0, parent, cd).map_err(err)?;
                    self.nested.insert((sid, p.0));
                    if let Some(Tag::Foreign { parent: at, .. }) = self.tags.get_mut(&tag.0) {
                        *at = Some(parent);
                    }
                    reach.request_ids.extend(r);
                    continue;
                }
                (Some(_), HwTarget::Identity) => {
                    return Err(DriverError::new(
                        DriverErrorKind::Unsupported,
                        "bypass for one SubstreamID",
                    ))
                }
            }
            if self.ats.contains(&sid) && matches!(target, HwTarget::Paging(_)) {
                // EATS needs a translating STE; ATS follows the attach (Linux enables it after).
                self.driver.set_ats(sid, true).map_err(err)?;
            }
            reach.request_ids.push(sid);
        }
        reach.request_ids.sort_unstable();
        reach.request_ids.dedup();
        Ok(reach)
    }

    fn bind_pasid_table(
        &mut self,
        ids: &RequestIds,
        parent: HwDomain,
        config: &PasidTableConfig,
    ) -> Result<Reach, DriverError> {
        let parent = self.paging(parent)?;
        let s1fmt = match config.format {
            PasidTableFormat::SmmuLinear => S1Fmt::Linear,
            PasidTableFormat::SmmuTwoLevel { leaf_lg2: 12 } => S1Fmt::TwoLevel4K,
            PasidTableFormat::SmmuTwoLevel { leaf_lg2: 16 } => S1Fmt::TwoLevel64K,
            _ => {
                return Err(DriverError::new(DriverErrorKind::Unsupported, "this CD table format"))
            }
        };
        let guest = GuestCdTable {
            s1_context_ptr_ipa: config.base,
            s1cdmax: config.pasid_bits,
            s1fmt,
            // Requests without a PASID use the guest's CD 0, as Linux's guests set it.
            s1dss: S1Dss::Substream0,
        };
        for &sid in ids {
            self.driver.bind_pasid_table(sid, parent, guest).map_err(err)?;
        }
        Ok(Reach { request_ids: ids.to_vec() })
    }

    fn pasid_table_sharers(&self, ids: &RequestIds) -> Vec<u32> {
        let mut out: Vec<u32> = ids.to_vec();
        for &sid in ids {
            out.extend(self.driver.pasid_reach(sid));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn invalidate(&mut self, inv: &HwInvalidation) -> Result<(), DriverError> {
        let tag = self.tags.get(&inv.domain.0).copied();
        let mut cmds = Vec::new();
        match inv.cache {
            CacheKind::Iotlb => {
                match tag {
                    // A guest's ASID under a nesting parent's VMID: its CD table is the
                    // guest's own (bind_pasid_table), so only the guest knows the tag.
                    Some(Tag::Paging(parent)) if inv.arch_id.is_some() => {
                        let asid = u16::try_from(inv.arch_id.unwrap_or_default())
                            .map_err(|_| DriverError::new(DriverErrorKind::Invalid, "ASID"))?;
                        cmds.push(match &inv.range {
                            Some(r) => Invalidation::NhVa {
                                parent: Some(parent),
                                asid,
                                iova: r.start,
                                size: r.end - r.start,
                                granule: self.granule(),
                                leaf: inv.leaf,
                            },
                            None => Invalidation::NhAsid { parent: Some(parent), asid },
                        });
                    }
                    Some(Tag::Paging(id)) => {
                        let range = inv.range.as_ref().map(|r| (r.start, r.end - r.start));
                        return self.driver.flush_tlb(id, range).map_err(err);
                    }
                    // A foreign stage 1 is tagged by its owner's ASID (under the parent's VMID
                    // when nested).
                    Some(Tag::Foreign { asid, parent }) => cmds.push(match &inv.range {
                        Some(r) => Invalidation::NhVa {
                            parent,
                            asid,
                            iova: r.start,
                            size: r.end - r.start,
                            granule: self.granule(),
                            leaf: inv.leaf,
                        },
                        None => Invalidation::NhAsid { parent, asid },
                    }),
                    None => {
                        return Err(DriverError::new(DriverErrorKind::Invalid, "no such domain"))
                    }
                }
            }
            CacheKind::DevIotlb => {
                for &sid in &inv.request_ids {
                    let range = inv.range.as_ref().map(|r| (r.start, r.end - r.start));
                    cmds.push(Invalidation::AtcInv { sid, ssid: inv.pasid.map(|p| p.0), range });
                }
            }
            CacheKind::Pasid => {
                for &sid in &inv.request_ids {
                    cmds.push(match inv.pasid {
                        Some(p) => Invalidation::CfgiCd { sid, ssid: p.0, leaf: inv.leaf },
                        None => Invalidation::CfgiCdAll { sid },
                    });
                }
            }
        }
        self.driver.invalidate(&cmds).map_err(err)
    }

    fn poll_faults(&mut self) -> Vec<HwFault> {
        let mut out = Vec::new();
        for e in self.driver.drain_events().unwrap_or_default() {
            let reason = match e.id {
                Ok(id) => reason(id),
                Err(r) => FaultReason {
                    code: u16::try_from(r.0).unwrap_or(u16::MAX),
                    name: "reserved event",
                },
            };
            out.push(HwFault::Unrecoverable {
                request_id: e.sid,
                pasid: e.ssid.map(Pasid),
                addr: e.input_addr,
                reason,
                raw: Some(e.record.0),
            });
        }
        for r in self.driver.drain_page_requests().unwrap_or_default() {
            if r.is_stop_marker() {
                continue;
            }
            out.push(HwFault::PageRequest {
                request_id: r.sid(),
                pasid: r.ssv().then(|| Pasid(r.ssid())),
                addr: r.page_address(),
                write: r.w(),
                group: r.prgindex(),
                last: r.last(),
            });
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
        let resp = match code {
            PageResponseCode::Success => PriResp::Success,
            PageResponseCode::Invalid => PriResp::InvalidRequest,
            PageResponseCode::Failure => PriResp::ResponseFailure,
        };
        self.driver.pri_response(request_id, pasid.map(|p| p.0), group, resp).map_err(err)
    }

    fn counters(&self) -> DriverCounters {
        let s = self.driver.stats();
        DriverCounters {
            faults_overflowed: s.event_overflows,
            page_requests_overflowed: s.priq_overflows,
            invalidations: s.commands,
            syncs: s.syncs,
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
        let mut t = Transaction::new(request_id, addr, access);
        if let Some(p) = pasid {
            t = t.with_ssid(p.0);
        }
        match self.hw.translate(&t) {
            Ok(tr) => Ok(tr.output),
            // A stalled probe is a fault to the audit: it did not reach the page.
            Err(Abort::Event(e) | Abort::Stalled(e)) => Err(DmaFault::Fault(reason(e.id))),
            Err(Abort::Silent(s)) => Err(DmaFault::Terminated { by: silent(s) }),
        }
    }

    fn hw_info(&self) -> crate::driver::HwInfo {
        use sviommu_smmuv3::spec::regs;
        // A 32-bit register read is at most 32 bits wide.
        let read = |r: sviommu_memory::bits::Reg32| {
            u32::try_from(self.hw.mmio_read(r.0, 4)).unwrap_or(u32::MAX)
        };
        crate::driver::HwInfo::Smmuv3 {
            idr: [regs::IDR0, regs::IDR1, regs::IDR2, regs::IDR3, regs::IDR4, regs::IDR5].map(read),
            iidr: read(regs::IIDR),
            aidr: read(regs::AIDR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_sizes_per_granule_are_the_vmsa_levels() {
        assert_eq!(leaf_sizes(Granule::Size4K), (1 << 12) | (1 << 21) | (1 << 30));
        assert_eq!(leaf_sizes(Granule::Size16K), (1 << 14) | (1 << 25));
        assert_eq!(leaf_sizes(Granule::Size64K), (1 << 16) | (1 << 29));
        assert_eq!(granule_of(14), Some(Granule::Size16K));
        assert_eq!(granule_of(13), None);
    }
}

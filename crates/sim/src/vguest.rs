//! A guest with a vIOMMU: the VMM's side (its RAM mapped in an IOAS of the machine's iommufd
//! context, a `VVtd` or `VSmmu` with the assigned devices) and the guest kernel's side (the
//! architecture's own driver running over guest RAM against the vIOMMU's registers, binding
//! the guest's processes at PASIDs). Every host change comes from the vIOMMU forwarding what
//! the guest's driver wrote; the devices' DMA still goes to the host model's `translate`.

use std::sync::Arc;

use sviommu_core::topology::DeviceId;
use sviommu_core::{DomainId, Stage1Config, Stage1Format};
use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory};
use sviommu_smmuv3::driver::{
    Attach, CdTablePolicy, DomainConfig as SmmuDomainConfig, DriverConfig as SmmuConfig,
    Invalidation, PasidAttach, Prot as SmmuProt, SmmuDriver, SvaContext,
};
use sviommu_smmuv3::spec::Granule;
use sviommu_uapi::data::map_flags;
use sviommu_uapi::{Object, ObjectId};
use sviommu_viommu::smmuv3::SharedFd;
use sviommu_viommu::{VSmmu, VVtd};
use sviommu_vtd::driver::VtdDriver;
use sviommu_vtd::driver::{
    DomainConfig, DriverConfig as VtdConfig, ModeChoice, PasidConfig, Prot as VtdProt,
};
use sviommu_vtd::spec::Fspm;

use crate::scenario::Arch;

type Ram = GuestRam<Arc<HostMemory>>;

/// The guest's vIOMMU and the guest kernel's driver of it.
pub enum GuestIommu {
    /// A scalable-mode VT-d with caching mode.
    Vtd {
        /// The vIOMMU.
        viommu: Arc<VVtd>,
        /// The guest's driver.
        driver: Box<VtdDriver<Arc<VVtd>, Ram>>,
    },
    /// An SMMUv3.
    Smmu {
        /// The vIOMMU.
        viommu: Arc<VSmmu>,
        /// The guest's driver.
        driver: Box<SmmuDriver<Arc<VSmmu>, Ram>>,
    },
}

impl std::fmt::Debug for GuestIommu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Vtd { viommu, .. } => f.debug_struct("Vtd").field("viommu", viommu).finish(),
            Self::Smmu { viommu, .. } => f.debug_struct("Smmu").field("viommu", viommu).finish(),
        }
    }
}

/// What a guest's vIOMMU forwarded to the host, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Forwarded {
    /// `"VT-d"` or `"SMMUv3"`.
    pub model: &'static str,
    /// The host's nesting-parent HWPT (the guest's stage 2) and its core domain.
    pub parent_hwpt: u32,
    /// Nested HWPTs the host holds for this guest now.
    pub nested_hwpts: u64,
    /// VT-d: (device, PASID) attaches forwarded, replaced and detached.
    pub attached: u64,
    /// VT-d: replaced attaches.
    pub replaced: u64,
    /// VT-d: detaches.
    pub detached: u64,
    /// VT-d: guest invalidations forwarded; SMMUv3: not counted by the vIOMMU (`None`).
    pub invalidations: Option<u64>,
    /// Calls the host refused (VT-d attaches and invalidations; SMMUv3 events refused).
    pub refused: u64,
    /// SMMUv3: host events delivered into the guest's Event queue.
    pub events_delivered: Option<u64>,
}

/// A guest with a vIOMMU.
#[derive(Debug)]
pub struct VGuest {
    /// The vIOMMU and the guest's driver.
    pub iommu: GuestIommu,
    /// The host's stage-2 domain over guest RAM (the nesting parent HWPT's).
    pub stage2: DomainId,
    parent: ObjectId,
    /// VT-d: the guest driver's domain for each PASID it bound.
    dids: Vec<(u32, sviommu_vtd::driver::Did)>,
}

/// Makes the VMM's side for a guest whose RAM is `ram` with `devices` (host device, the ID
/// the guest knows it by: its own requester / StreamID), and brings the guest's driver up on
/// it with its structures in `driver_frames` (guest-physical).
pub fn bring_up(
    fd: &SharedFd,
    arch: Arch,
    vmm_va: u64,
    ram: GuestRamRegion,
    devices: &[(DeviceId, u32)],
    driver_frames: (u64, u64),
) -> Result<VGuest, String> {
    let (mem, bound, ioas) = {
        let mut f = fd.lock().map_err(|_| "the iommufd context is poisoned".to_owned())?;
        let mem = Arc::clone(f.memory());
        let mut bound = Vec::new();
        for (dev, vid) in devices {
            bound.push((*vid, f.device_bind(dev).map_err(|e| e.to_string())?));
        }
        let ioas = f.ioas_alloc().map_err(|e| e.to_string())?;
        let rw = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;
        f.ioas_map(ioas, rw, vmm_va, ram.len_bytes, 0).map_err(|e| e.to_string())?;
        (mem, bound, ioas)
    };
    let gram = || GuestRam::new(Arc::clone(&mem), vec![ram]);
    let frames = FrameAllocator::new(&[(Gpa(driver_frames.0), driver_frames.1)]);
    let (iommu, parent) = match arch {
        Arch::Vtd => {
            let mut rids = Vec::new();
            for &(vid, dev) in &bound {
                let rid = u16::try_from(vid).map_err(|_| format!("requester ID {vid:#x}"))?;
                rids.push((rid, dev));
            }
            let viommu = Arc::new(
                VVtd::new(Arc::clone(fd), gram(), ioas, &rids).map_err(|e| e.to_string())?,
            );
            let config = VtdConfig { mode: ModeChoice::Scalable, ..VtdConfig::default() };
            let driver = VtdDriver::new(Arc::clone(&viommu), gram(), frames, config)
                .map_err(|e| format!("the guest's VT-d driver: {e}"))?;
            let parent = viommu.parent_id();
            (GuestIommu::Vtd { viommu, driver: Box::new(driver) }, parent)
        }
        Arch::Smmuv3 => {
            let viommu = Arc::new(
                VSmmu::new(Arc::clone(fd), gram(), ioas, &bound).map_err(|e| e.to_string())?,
            );
            let config =
                SmmuConfig { cd_table_policy: CdTablePolicy::PerDevice, ..SmmuConfig::default() };
            let mut driver = SmmuDriver::new(Arc::clone(&viommu), gram(), frames, config)
                .map_err(|e| format!("the guest's SMMUv3 driver: {e}"))?;
            for &(vsid, _) in &bound {
                driver.attach(vsid, Attach::Abort).map_err(|e| e.to_string())?;
            }
            let parent = viommu.parent_id();
            (GuestIommu::Smmu { viommu, driver: Box::new(driver) }, parent)
        }
    };
    let stage2 = match fd.lock().map_err(|_| "poisoned".to_owned())?.object(parent) {
        Some(Object::HwptPaging(h)) => h.domain,
        _ => return Err(format!("object {parent} is not the nesting parent HWPT")),
    };
    Ok(VGuest { iommu, stage2, parent, dids: Vec::new() })
}

impl VGuest {
    /// The guest's driver binds the address space `s1` (guest-physical root) to its device
    /// `vid` at `pasid`, as SVA in the guest; returns the host's nested core domain where the
    /// host keeps one per (device, PASID) (VT-d), after looking it up in `fd`.
    pub fn bind(
        &mut self,
        fd: &SharedFd,
        vid: u32,
        pasid: u32,
        s1: &Stage1Config,
    ) -> Result<Option<DomainId>, String> {
        match &mut self.iommu {
            GuestIommu::Vtd { viommu, driver } => {
                let rid = u16::try_from(vid).map_err(|_| format!("requester ID {vid:#x}"))?;
                let Stage1Format::X86 { levels } = s1.format else {
                    return Err("a VT-d guest's process needs x86-64 page tables".into());
                };
                let levels = if levels == 5 { Fspm::FiveLevel } else { Fspm::FourLevel };
                let did = driver.alloc_domain(DomainConfig::External).map_err(|e| e.to_string())?;
                let config =
                    PasidConfig::FirstStageExternal { did, fs_root: s1.root, levels, sre: false };
                driver.attach(rid, Some(pasid), config).map_err(|e| e.to_string())?;
                self.dids.push((pasid, did));
                let hwpt = viommu
                    .host_hwpt(rid, pasid)
                    .ok_or("the vIOMMU forwarded no nested HWPT for the attach")?;
                Ok(nested_domain(fd, hwpt))
            }
            GuestIommu::Smmu { driver, .. } => {
                let Stage1Format::Vmsa { granule_lg2: 12, ias_bits } = s1.format else {
                    return Err("an SMMUv3 guest's process needs 4K VMSAv8-64 tables".into());
                };
                let ctx = SvaContext {
                    asid: s1.asid,
                    ttb0: s1.root,
                    t0sz: 64 - ias_bits,
                    granule: Granule::Size4K,
                    ips_bits: 48,
                    mair: 0,
                    ha: false,
                    hd: false,
                };
                driver
                    .attach_pasid(vid, pasid, PasidAttach::Sva(ctx))
                    .map_err(|e| e.to_string())?;
                Ok(None)
            }
        }
    }

    /// The guest kernel gives its device `vid` a default DMA domain, as Linux does for every
    /// device behind an IOMMU when its driver probes: a paging domain of the guest's driver
    /// (VT-d first-stage, SMMUv3 stage 1), with the DMA API's mappings `maps` (IOVA, guest
    /// page, writable; 4K each) in it, attached to the device for its requests without PASID
    /// (VT-d: the RID_PASID entry, §9.6 PGTT first-stage; SMMUv3: an S1 STE whose CD 0 the
    /// requests without a SubstreamID use, §5.2 S1DSS). The vIOMMU forwards it: VT-d a nested
    /// HWPT attached to the device itself, whose core domain this returns after looking it up
    /// in `fd`; SMMUv3 the nested STE over the guest's CD table (`None`).
    pub fn dma_domain(
        &mut self,
        fd: &SharedFd,
        vid: u32,
        maps: &[(u64, u64, bool)],
    ) -> Result<Option<DomainId>, String> {
        let page = 1u64 << 12;
        match &mut self.iommu {
            GuestIommu::Vtd { viommu, driver } => {
                let rid = u16::try_from(vid).map_err(|_| format!("requester ID {vid:#x}"))?;
                let did = driver
                    .alloc_domain(DomainConfig::FirstStage { levels: Fspm::FourLevel })
                    .map_err(|e| e.to_string())?;
                for &(iova, gpa, w) in maps {
                    let prot = if w { VtdProt::RW } else { VtdProt::READ };
                    driver.map(did, iova, gpa, page, prot).map_err(|e| e.to_string())?;
                }
                driver
                    .attach(rid, None, PasidConfig::FirstStage { did })
                    .map_err(|e| e.to_string())?;
                let hwpt = viommu
                    .host_hwpt(rid, 0)
                    .ok_or("the vIOMMU forwarded no nested HWPT for the RID_PASID entry")?;
                Ok(nested_domain(fd, hwpt))
            }
            GuestIommu::Smmu { driver, .. } => {
                let d = driver
                    .alloc_domain(SmmuDomainConfig::S1 { granule: Granule::Size4K, ias_bits: 48 })
                    .map_err(|e| e.to_string())?;
                for &(iova, gpa, w) in maps {
                    let prot = SmmuProt { read: true, write: w, exec: false };
                    driver.map(d, iova, gpa, page, prot).map_err(|e| e.to_string())?;
                }
                driver.attach(vid, Attach::Domain(d)).map_err(|e| e.to_string())?;
                Ok(None)
            }
        }
    }

    /// The guest's driver invalidates `[va, va + size)` of the address space it bound at
    /// `pasids` (ASID `asid`), as a guest kernel does after unmapping: VT-d a PASID-based IOTLB
    /// invalidation for each bind's domain, SMMUv3 CMD_TLBI_NH_VA (leaf) for the ASID, each
    /// followed by its wait / CMD_SYNC; the vIOMMU forwards them to the host.
    pub fn invalidate(
        &mut self,
        pasids: &[u32],
        asid: u16,
        va: u64,
        size: u64,
    ) -> Result<(), String> {
        match &mut self.iommu {
            GuestIommu::Vtd { driver, .. } => {
                for &(_, did) in self.dids.iter().filter(|(p, _)| pasids.contains(p)) {
                    driver.flush_iotlb(did, Some((va, size))).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            GuestIommu::Smmu { driver, .. } => {
                let tlbi = Invalidation::NhVa {
                    parent: None,
                    asid,
                    iova: va,
                    size,
                    granule: Granule::Size4K,
                    leaf: true,
                };
                driver.invalidate(&[tlbi]).map_err(|e| e.to_string())
            }
        }
    }

    /// What the vIOMMU forwarded so far.
    pub fn forwarded(&self, fd: &SharedFd) -> Forwarded {
        let nested_hwpts = fd.lock().map_or(0, |f| {
            let ids = f.object_ids();
            ids.iter()
                .filter(|&&id| {
                    matches!(f.object(id), Some(Object::HwptNested(n)) if n.parent == self.parent)
                })
                .count() as u64
        });
        let mut out = Forwarded { parent_hwpt: self.parent, nested_hwpts, ..Forwarded::default() };
        match &self.iommu {
            GuestIommu::Vtd { viommu, .. } => {
                let s = viommu.stats();
                out.model = "VT-d";
                out.attached = s.attached;
                out.replaced = s.replaced;
                out.detached = s.detached;
                out.invalidations = Some(s.invalidations);
                out.refused = s.host_refused + s.invalidations_refused;
            }
            GuestIommu::Smmu { viommu, .. } => {
                let s = viommu.stats();
                out.model = "SMMUv3";
                out.refused = s.events_refused;
                out.events_delivered = Some(s.events_delivered);
            }
        }
        out
    }
}

fn nested_domain(fd: &SharedFd, hwpt: ObjectId) -> Option<DomainId> {
    match fd.lock().ok()?.object(hwpt) {
        Some(Object::HwptNested(n)) => n.domain,
        _ => None,
    }
}

//! A guest-visible VT-d (Intel VT-d Architecture Specification rev. 4.1) in scalable mode with
//! caching mode, over the host's iommufd-shaped API, as QEMU's intel-iommu with iommufd nesting
//! and the Rust VMMs build it.
//!
//! The guest sees [`Vtd`], the hardware model, over its own RAM: its driver programs registers,
//! root, context and PASID tables and the invalidation queue exactly as on the host. CAP.CM is
//! set, so the guest invalidates after making any entry present (§6.1), and the model's
//! invalidation queue hands every legal descriptor to [`Host`] (a [`Forward`] hook) where the
//! hardware acts on it:
//!
//! | guest descriptor | on the host |
//! |---|---|
//! | context-cache (§6.5.2.1), PASID-cache (§6.5.2.2) | the selected devices' context and PASID-table entries, read and checked by the model (an erroneous one is a fault record in the guest): each PASID whose PGTT is first-stage -> a nested HWPT with the guest's FSPTPTR, address width and WPE on the nesting parent, attached to (device, PASID); a changed entry replaces it, a cleared one detaches it; the old HWPT is destroyed |
//! | PASID-based IOTLB (§6.5.2.4) | HWPT invalidate on the nested HWPT of each (device, PASID) whose entry has that DID and PASID |
//! | PASID-based device-TLB (§6.5.2.6) | HWPT invalidate on the device's nested HWPT at that PASID (all of the device's with G) |
//! | IOTLB (§6.5.2.3) global / domain-selective | HWPT invalidate of every nested HWPT (of that DID) |
//! | IOTLB page-selective, device-TLB without PASID | nothing: they select second-stage and requests-without-PASID translations, which no forwarded HWPT holds |
//! | wait (§6.5.2.8) | nothing: forwarding is synchronous, so everything before it has completed on the host |
//!
//! What the vIOMMU advertises keeps the guest to what the host can run, so everything else is
//! refused by the model's own checks, architecturally: no second stage (ECAP.SSTS, ECAP.NEST
//! and ECAP.PT clear, CAP.SAGAW empty), so a PASID-table entry with PGTT second-stage, nested
//! or pass-through is invalid (§9.6: a PGTT the unit does not support, fault reason 5Bh) and a
//! legacy-mode context entry is invalid (§9.3: TT pass-through without ECAP.PT, or an AW not
//! in SAGAW, fault reason 3h); no supervisor or execute requests (ECAP.SRS, ECAP.ERS clear:
//! SRE or ERE set is 5Bh), no RID_PASID other than 0 (ECAP.RPS clear, 48h). IMPDEF: such a
//! fault is recorded in the guest's fault recording registers when the vIOMMU reads the entry
//! (at the invalidation), for a request of that requester and PASID at address 0, since no
//! request will ever reach the host with it; not-present entries record nothing (they are how
//! a guest detaches).
//!
//! IMPDEF: [`GUEST_PASID_BITS`] PASID bits (ECAP.PSS); a domain-selective or global PASID-cache
//! invalidation and every context-cache invalidation read all of them for each selected device.
//!
//! DEVIATION: a first-stage RID_PASID entry (requests without PASID) is not forwarded, because
//! the host's core nests per PASID only; such requests stay blocked on the host, counted in
//! [`VVtdStats::rid_pasid_refused`]. A legal guest entry the host refuses (a device narrower
//! than the PASID, a 5-level first stage on a 4-level host) blocks that PASID on the host
//! without an error in the guest, counted in [`VVtdStats::host_refused`]. Register-based
//! invalidation (§6.5.1) is not forwarded: in scalable mode software uses the queue. Host
//! faults and page requests are not forwarded to the guest yet (issue 12 step 4).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sviommu_core::driver::HwInfo;
use sviommu_core::Model;
use sviommu_memory::bits::low_mask;
use sviommu_memory::{GuestPhys, GuestRam, HostMemory, Mmio};
use sviommu_uapi::data::{hwpt_flags, vtd_s1_flags, VTD_INV_FLAGS_LEAF};
use sviommu_uapi::{HwptAlloc, HwptData, InvalidateArray, ObjectId, VtdS1Invalidate};
use sviommu_vtd::hw::{CacheParams, Context, EntryLookup, Forward, Vtd, VtdParams};
use sviommu_vtd::spec::inv::{
    ats_range, fm_sid_mask, CcGranularity, Invalidation, IotlbGranularity, PasidCacheGranularity,
    PasidIotlbGranularity,
};
use sviommu_vtd::spec::pasid::{PasidEntry, Pgtt};
use sviommu_vtd::spec::regs::iqer::Iqei;
use sviommu_vtd::spec::regs::{cap, ecap};
use sviommu_vtd::spec::root::ScalableContextEntry;
use sviommu_vtd::spec::Fspm;

use crate::smmuv3::{GuestMemory, SharedFd};
use crate::ViommuError;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// PASID bits of the vIOMMU (ECAP.PSS + 1). IMPDEF: 256 PASIDs per device, so reading every
/// PASID-table entry of a device stays cheap.
pub const GUEST_PASID_BITS: u8 = 8;

/// The VT-d the guest sees: the default model in scalable mode with caching mode, first stage
/// only (no second stage, nesting or pass-through), no supervisor or execute requests,
/// RID_PASID 0 and [`GUEST_PASID_BITS`] PASID bits. Its caches are off: the guest's devices
/// never translate through it (IMPDEF), only the host's unit does.
pub fn guest_params() -> VtdParams {
    let p = VtdParams::default();
    let c = cap::SAGAW.set(cap::CM.with(p.cap, true), 0);
    let mut e = p.ecap;
    for f in [
        ecap::SSTS,
        ecap::NEST,
        ecap::PT,
        ecap::SSADS,
        ecap::SRS,
        ecap::ERS,
        ecap::RPS,
        ecap::RPRIVS,
    ] {
        e = f.with(e, false);
    }
    e = ecap::PSS.set(e, u64::from(GUEST_PASID_BITS) - 1);
    VtdParams { cap: c, ecap: e, caches: CacheParams::NONE, ..p }
}

/// What the vIOMMU has done on the host, and what it could not (nothing is dropped silently).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VVtdStats {
    /// Nested HWPTs attached where nothing was.
    pub attached: u64,
    /// Nested HWPTs that replaced another (the guest changed a PASID-table entry).
    pub replaced: u64,
    /// (device, PASID)s detached (the guest cleared the entry or made it erroneous).
    pub detached: u64,
    /// HWPT invalidations sent.
    pub invalidations: u64,
    /// Legal guest entries the host refused (that PASID is blocked on the host).
    pub host_refused: u64,
    /// Invalidations the host refused (IQE in the guest).
    pub invalidations_refused: u64,
    /// First-stage RID_PASID entries not forwarded (DEVIATION, module doc).
    pub rid_pasid_refused: u64,
}

/// A guest-visible VT-d whose programming reaches the host through `uapi`.
pub struct VVtd {
    vtd: Vtd<GuestMemory>,
    host: Arc<Host>,
}

impl fmt::Debug for VVtd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VVtd").field("vtd", &self.vtd).field("host", &self.host).finish()
    }
}

impl VVtd {
    /// A vIOMMU for the guest whose RAM is `ram` and whose stage 2 is `ioas` (the VMM mapped
    /// guest RAM there), with `devices` assigned as (the requester ID the guest sees, device
    /// object). The host gets a NEST_PARENT HWPT over `ioas`; every device starts blocked and
    /// gets a nested HWPT per PASID as the guest programs them.
    ///
    /// Refused with [`ViommuError::ModelMismatch`] before anything is made if a device's unit
    /// is not a VT-d.
    pub fn new(
        fd: SharedFd,
        ram: GuestRam<Arc<HostMemory>>,
        ioas: ObjectId,
        devices: &[(u16, ObjectId)],
    ) -> Result<Self, ViommuError> {
        let Some(&(_, first)) = devices.first() else {
            return Err(ViommuError::NoDevice);
        };
        let parent = {
            let mut f = lock(&fd);
            for (i, &(rid, dev)) in devices.iter().enumerate() {
                let host = match f.get_hw_info(dev)?.data {
                    HwInfo::Smmuv3 { .. } => Model::Smmuv3,
                    HwInfo::Vtd { .. } => Model::Vtd,
                };
                if host != Model::Vtd {
                    return Err(ViommuError::ModelMismatch {
                        guest: Model::Vtd,
                        host,
                        device: dev,
                    });
                }
                if devices.iter().take(i).any(|&(r, _)| r == rid) {
                    return Err(ViommuError::DuplicateRequesterId(rid));
                }
            }
            f.hwpt_alloc(&HwptAlloc {
                flags: hwpt_flags::NEST_PARENT,
                dev_id: first,
                pt_id: ioas,
                ..HwptAlloc::default()
            })?
        };
        let devices = devices
            .iter()
            .map(|&(rid, dev)| (rid, Device { dev, pasids: BTreeMap::new() }))
            .collect();
        let host = Arc::new(Host {
            fd,
            parent,
            devices: Mutex::new(devices),
            stats: Mutex::new(VVtdStats::default()),
        });
        let hook: Arc<dyn Forward> = host.clone();
        let vtd = Vtd::new(GuestPhys(ram), guest_params()).with_forward(hook);
        Ok(Self { vtd, host })
    }

    /// The hardware model the guest programs.
    pub fn vtd(&self) -> &Vtd<GuestMemory> {
        &self.vtd
    }

    /// The host's nesting parent (the guest's stage 2).
    pub fn parent_id(&self) -> ObjectId {
        self.host.parent
    }

    /// The nested HWPT the device the guest knows as `rid` is attached to at `pasid` on the
    /// host, if any.
    pub fn host_hwpt(&self, rid: u16, pasid: u32) -> Option<ObjectId> {
        lock(&self.host.devices).get(&rid)?.pasids.get(&pasid).map(|b| b.hwpt)
    }

    /// What the vIOMMU has done on the host so far.
    pub fn stats(&self) -> VVtdStats {
        *lock(&self.host.stats)
    }
}

impl Mmio for VVtd {
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.vtd.mmio_read(offset, size)
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        self.vtd.mmio_write(offset, size, value);
    }
}

/// The guest's first stage as `IOMMU_HWPT_DATA_VTD_S1` carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FirstStage {
    fsptptr: u64,
    addr_width: u32,
    flags: u64,
}

impl FirstStage {
    /// §9.6: FSPTPTR, the width FSPM gives, and the SRE / EAFE / WPE flags.
    fn of(pe: &PasidEntry) -> Self {
        let addr_width = match pe.fspm() {
            Ok(Fspm::FiveLevel) => 57,
            _ => 48,
        };
        let mut flags = 0;
        for (on, f) in [
            (pe.sre(), vtd_s1_flags::SRE),
            (pe.eafe(), vtd_s1_flags::EAFE),
            (pe.wpe(), vtd_s1_flags::WPE),
        ] {
            if on {
                flags |= f;
            }
        }
        Self { fsptptr: pe.fsptptr(), addr_width, flags }
    }
}

/// A guest PASID forwarded to the host.
#[derive(Clone, Copy, Debug)]
struct Bound {
    hwpt: ObjectId,
    s1: FirstStage,
    /// The DID of the guest's entry (what its IOTLB invalidations select by).
    did: u16,
}

/// One assigned device.
#[derive(Debug)]
struct Device {
    dev: ObjectId,
    /// By guest PASID.
    pasids: BTreeMap<u32, Bound>,
}

/// The forwarding hook: the VMM's side of the vIOMMU, owning the host objects it made.
struct Host {
    fd: SharedFd,
    parent: ObjectId,
    /// By the requester ID the guest sees (taken before `fd`).
    devices: Mutex<BTreeMap<u16, Device>>,
    stats: Mutex<VVtdStats>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("parent", &self.parent)
            .field("devices", &*lock(&self.devices))
            .finish_non_exhaustive()
    }
}

/// Which PASIDs an invalidation makes the vIOMMU read again.
#[derive(Clone, Copy)]
enum Pasids {
    /// Every PASID of the device, and RID_PASID.
    All,
    /// One (RID_PASID when it is the context entry's).
    One(u32),
}

impl Host {
    fn count(&self, f: impl FnOnce(&mut VVtdStats)) {
        f(&mut lock(&self.stats));
    }

    /// §6.5.2.1, §6.5.2.2: the guest changed context or PASID-table entries of the devices
    /// `sel` selects; `which` of their PASIDs are read with the model's checks and moved to
    /// what they ask for.
    fn entries_changed(&self, sel: impl Fn(u16) -> bool, which: Pasids, e: &mut dyn EntryLookup) {
        let mut devices = lock(&self.devices);
        for (&rid, d) in devices.iter_mut().filter(|(&r, _)| sel(r)) {
            let ce = match e.context(rid) {
                Ok(Context::Scalable(ce)) => Some(ce),
                // Not present, legacy (invalid by the vIOMMU's capabilities, so never here) or
                // erroneous (recorded in the guest): nothing of the device is forwarded.
                _ => None,
            };
            let pasids: Vec<u32> = match (which, &ce) {
                (_, None) => d.pasids.keys().copied().collect(),
                (Pasids::One(p), Some(ce)) if p == ce.rid_pasid() => {
                    self.rid_pasid(rid, ce, e);
                    continue;
                }
                (Pasids::One(p), Some(_)) => vec![p],
                (Pasids::All, Some(ce)) => {
                    self.rid_pasid(rid, ce, e);
                    let top = 1u32 << GUEST_PASID_BITS;
                    (1..top).filter(|&p| p != ce.rid_pasid()).collect()
                }
            };
            for p in pasids {
                let want = ce.as_ref().and_then(|ce| Self::wanted(rid, ce, p, e));
                self.apply(d, p, want);
            }
        }
    }

    /// What the guest's entry for `pasid` asks the host for: a first stage, or nothing.
    /// IMPDEF: a PASID beyond [`GUEST_PASID_BITS`] is never forwarded, and a device without
    /// PASIDs enabled (PASIDE clear) has none to forward.
    fn wanted(
        rid: u16,
        ce: &ScalableContextEntry,
        pasid: u32,
        e: &mut dyn EntryLookup,
    ) -> Option<(FirstStage, u16)> {
        if pasid >> GUEST_PASID_BITS != 0 || !ce.paside() {
            return None;
        }
        match e.pasid_entry(rid, ce, Some(pasid)) {
            // The vIOMMU runs no other PGTT (module doc).
            Ok(Some(f)) if f.pgtt == Pgtt::FirstStage => {
                Some((FirstStage::of(&f.entry), f.entry.did()))
            }
            _ => None,
        }
    }

    /// The RID_PASID entry (requests without PASID): read with the model's checks, so an
    /// erroneous one is a fault record in the guest; a first-stage one is the DEVIATION of the
    /// module doc.
    fn rid_pasid(&self, rid: u16, ce: &ScalableContextEntry, e: &mut dyn EntryLookup) {
        if let Ok(Some(f)) = e.pasid_entry(rid, ce, None) {
            if f.pgtt == Pgtt::FirstStage {
                self.count(|s| s.rid_pasid_refused += 1);
            }
        }
    }

    /// Moves `(d, pasid)` on the host to `want`: a nested HWPT with that first stage (the
    /// current one kept if the tables are the same), or blocked. The old HWPT is destroyed.
    fn apply(&self, d: &mut Device, pasid: u32, want: Option<(FirstStage, u16)>) {
        let current = d.pasids.get(&pasid).copied();
        let mut fd = lock(&self.fd);
        let Some((s1, did)) = want else {
            if let Some(old) = current {
                let _ = fd.detach(d.dev, Some(pasid));
                let _ = fd.destroy(old.hwpt);
                d.pasids.remove(&pasid);
                self.count(|s| s.detached += 1);
            }
            return;
        };
        if let Some(old) = current.filter(|b| b.s1 == s1) {
            // The same tables: only the DID the guest tags them with may have changed.
            d.pasids.insert(pasid, Bound { did, ..old });
            return;
        }
        let alloc = HwptAlloc {
            flags: hwpt_flags::PASID,
            dev_id: d.dev,
            pt_id: self.parent,
            data: HwptData::vtd_s1(s1.flags, s1.fsptptr, s1.addr_width),
            ..HwptAlloc::default()
        };
        let attached = fd.hwpt_alloc(&alloc).and_then(|h| {
            let r = match current {
                Some(_) => fd.replace(d.dev, Some(pasid), h),
                None => fd.attach(d.dev, Some(pasid), h),
            };
            r.map(|()| h).inspect_err(|_| {
                let _ = fd.destroy(h);
            })
        });
        match attached {
            Ok(h) => {
                d.pasids.insert(pasid, Bound { hwpt: h, s1, did });
                if let Some(old) = current {
                    let _ = fd.destroy(old.hwpt);
                }
                self.count(|s| if current.is_some() { s.replaced += 1 } else { s.attached += 1 });
            }
            Err(_) => {
                // DEVIATION (module doc): the host refused a legal entry; block the PASID.
                if let Some(old) = current {
                    let _ = fd.detach(d.dev, Some(pasid));
                    let _ = fd.destroy(old.hwpt);
                    d.pasids.remove(&pasid);
                }
                self.count(|s| s.host_refused += 1);
            }
        }
    }

    /// HWPT invalidate of `range` (`None`: everything) on every forwarded PASID `sel` picks
    /// (by the guest's requester ID, PASID and DID).
    fn invalidate(
        &self,
        sel: impl Fn(u16, u32, u16) -> bool,
        range: Option<(u64, u64, bool)>,
    ) -> Result<(), Iqei> {
        let entry = match range {
            Some((addr, npages, leaf)) => {
                VtdS1Invalidate { addr, npages, flags: if leaf { VTD_INV_FLAGS_LEAF } else { 0 } }
            }
            None => VtdS1Invalidate { addr: 0, npages: u64::MAX, flags: 0 },
        };
        let array = InvalidateArray::vtd_s1(&[entry]);
        let devices = lock(&self.devices);
        let sel = &sel;
        let hwpts = devices.iter().flat_map(|(&rid, d)| {
            d.pasids.iter().filter(move |(&p, b)| sel(rid, p, b.did)).map(|(_, b)| b.hwpt)
        });
        let mut fd = lock(&self.fd);
        for h in hwpts {
            self.count(|s| s.invalidations += 1);
            if fd.invalidate(h, &array).is_err() {
                self.count(|s| s.invalidations_refused += 1);
                // IMPDEF: an invalidation the host refuses is an IQE without further
                // information at the descriptor in the guest.
                return Err(Iqei::NotAvailable);
            }
        }
        Ok(())
    }
}

/// The `2^am` pages from `addr` aligned down to them (§6.5.2.4 ADDR / AM; the model has
/// refused an AM above CAP.MAMV already).
fn am_range(addr: u64, am: u8) -> (u64, u64) {
    (addr & !low_mask(am.saturating_add(12)), 1u64.checked_shl(am.into()).unwrap_or(u64::MAX))
}

impl Forward for Host {
    fn descriptor(&self, inv: &Invalidation, e: &mut dyn EntryLookup) -> Result<(), Iqei> {
        match inv {
            Invalidation::ContextCache(c) => {
                // The model has refused a reserved granularity already; domain-selective
                // selects every scalable-mode entry (scalable context entries have no DID).
                let mask = fm_sid_mask(c.fm());
                let sid = c.sid();
                let device = c.g() == Ok(CcGranularity::Device);
                self.entries_changed(|r| !device || r & mask == sid & mask, Pasids::All, e);
            }
            Invalidation::PasidCache(c) => {
                let which = match c.g() {
                    Ok(PasidCacheGranularity::Pasid) => Pasids::One(c.pasid()),
                    // Domain-selective: which PASIDs now carry the DID is only in memory.
                    _ => Pasids::All,
                };
                self.entries_changed(|_| true, which, e);
            }
            Invalidation::Iotlb(c) => match c.g() {
                Ok(IotlbGranularity::Global) => self.invalidate(|_, _, _| true, None)?,
                Ok(IotlbGranularity::Domain) => {
                    let did = c.did();
                    self.invalidate(|_, _, d| d == did, None)?;
                }
                // Page-selective selects second-stage translations only (§6.5.2.3).
                _ => {}
            },
            Invalidation::PasidIotlb(c) => {
                let (did, pasid) = (c.did(), c.pasid());
                let range = match c.g() {
                    Ok(PasidIotlbGranularity::Page) => {
                        let (addr, npages) = am_range(c.addr(), c.am());
                        Some((addr, npages, c.ih()))
                    }
                    _ => None,
                };
                self.invalidate(|_, p, d| p == pasid && d == did, range)?;
            }
            Invalidation::PasidDevTlb(c) => {
                let (sid, pasid, global) = (c.sid(), c.pasid(), c.g());
                let (addr, lg2) = ats_range(c.addr(), c.s());
                let pages = 1u64.checked_shl(u32::from(lg2.saturating_sub(12)));
                let range = pages.filter(|_| lg2 < 64).map(|n| (addr, n, false));
                self.invalidate(|r, p, _| r == sid && (global || p == pasid), range)?;
            }
            // Device-TLB without PASID, interrupt entry cache, wait, page group response:
            // nothing forwarded holds what they select (page responses: step 4).
            _ => {}
        }
        Ok(())
    }
}

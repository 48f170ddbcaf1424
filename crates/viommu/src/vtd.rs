//! A guest-visible VT-d (Intel VT-d Architecture Specification rev. 4.1) in scalable mode with
//! caching mode, over the host's iommufd-shaped API, as QEMU's intel-iommu with iommufd nesting
//! and the Rust VMMs build it.
//!
//! The guest sees [`Vtd`], the hardware model, over its own RAM: its driver programs registers,
//! root, context and PASID tables and the invalidation queue exactly as on the host. CAP.CM is
//! set, so the guest invalidates after making any entry present (§6.1), and the model's
//! invalidation queue hands every legal descriptor to `Host` (a [`Forward`] hook) where the
//! hardware acts on it:
//!
//! | guest descriptor | on the host |
//! |---|---|
//! | context-cache (§6.5.2.1), PASID-cache (§6.5.2.2) | the selected devices' context and PASID-table entries, read and checked by the model (an erroneous one is a fault record in the guest): each PASID whose PGTT is first-stage -> a nested HWPT with the guest's FSPTPTR, address width and WPE on the nesting parent, attached to (device, PASID); a changed entry replaces it, a cleared one detaches it; the old HWPT is destroyed |
//! | PASID-based IOTLB (§6.5.2.4) | HWPT invalidate on the nested HWPT of each (device, PASID) whose entry has that DID and PASID |
//! | PASID-based device-TLB (§6.5.2.6) | HWPT invalidate on the device's nested HWPT at that PASID (all of the device's with G) |
//! | device-TLB without PASID (§6.5.2.5) | HWPT invalidate on the device's nested HWPT at RID_PASID |
//! | IOTLB (§6.5.2.3) global / domain-selective | HWPT invalidate of every nested HWPT (of that DID) |
//! | IOTLB page-selective | nothing: it selects second-stage translations, which no forwarded HWPT holds (a first stage at RID_PASID is invalidated PASID-based, §6.5.2.4) |
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
//! The RID_PASID entry (requests without PASID) is forwarded as every other PASID is, except
//! that its nested HWPT is attached to the device itself (iommufd's attach without PASID:
//! the host writes its own RID_PASID entry with PGTT nested, as Linux's
//! `intel_nested_attach_dev()`); it is keyed by RID_PASID (0: ECAP.RPS is clear), so the
//! guest's PASID-based invalidations of PASID 0 and its device-TLB invalidations without
//! PASID select it. A legal guest entry the host refuses (a device narrower
//! than the PASID, a 5-level first stage on a 4-level host) blocks that PASID on the host
//! without an error in the guest, counted in [`VVtdStats::host_refused`]. Register-based
//! invalidation (§6.5.1) is not forwarded: in scalable mode software uses the queue.
//!
//! Back to the guest, in [`VVtd::service`] (the VMM's event loop). When the host unit takes
//! page requests (ECAP.PRS in `GET_HW_INFO`), the vIOMMU advertises ECAP.PRS, allocates a
//! fault queue and every nested HWPT it makes carries it: a page request group of an assigned
//! device arrives there (`handle_host_events`, `fault_read`) and goes into the guest's page
//! request queue through the model's own entry point ([`Vtd::page_request`]: the guest's
//! context entry must have PRE, a full queue overflows, §7.5.1) with the guest's requester ID
//! and the PASID. The guest's page group response descriptor (§7.7.1, through the hook), and
//! the responses the guest's model makes by itself (a full queue's Success, a blocked
//! request's Invalid Request), go back to the fault queue by the group's cookie, once, and
//! through the host's unit to the device. Without ECAP.PRS on the host the guest sees none.
//!
//! Faults are not forwarded: iommufd v6.19 has no VT-d vIOMMU object and no VT-d vEVENTQ, so a
//! first-stage fault of a guest's device at the host, like a second-stage one, stays with the
//! VMM (`Iommufd::take_host_faults`, with the physical IDs) and the guest's fault recording
//! registers never see it. IMPDEF: ECAP.PDS is clear, since a page drain in the guest cannot
//! wait for groups the host still holds.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use sviommu_core::driver::HwInfo;
use sviommu_core::Model;
use sviommu_memory::bits::low_mask;
use sviommu_memory::{GuestPhys, GuestRam, HostMemory, Mmio};
use sviommu_uapi::data::{hwpt_flags, vtd_s1_flags, VTD_INV_FLAGS_LEAF};
use sviommu_uapi::object::{pgfault, PageFault};
use sviommu_uapi::{HwptAlloc, HwptData, InvalidateArray, ObjectId, VtdS1Invalidate};
use sviommu_vtd::hw::{
    CacheParams, Context, EntryLookup, Forward, Output, PageRequestMsg, PageRequestOutcome, Vtd,
    VtdParams,
};
use sviommu_vtd::spec::inv::{
    ats_range, fm_sid_mask, CcGranularity, Invalidation, IotlbGranularity, PasidCacheGranularity,
    PasidIotlbGranularity,
};
use sviommu_vtd::spec::pasid::{PasidEntry, Pgtt};
use sviommu_vtd::spec::prq::{PageGroupResponse, ResponseCode};
use sviommu_vtd::spec::regs::iqer::Iqei;
use sviommu_vtd::spec::regs::{cap, ecap};
use sviommu_vtd::spec::root::ScalableContextEntry;
use sviommu_vtd::spec::Fspm;

use crate::smmuv3::{GuestMemory, SharedFd};
use crate::{lock, ViommuError};

/// PASID bits of the vIOMMU (ECAP.PSS + 1). IMPDEF: 256 PASIDs per device, so reading every
/// PASID-table entry of a device stays cheap.
pub const GUEST_PASID_BITS: u8 = 8;

/// The VT-d the guest sees: the default model in scalable mode with caching mode, first stage
/// only (no second stage, nesting or pass-through), no supervisor or execute requests,
/// RID_PASID 0 and [`GUEST_PASID_BITS`] PASID bits, no page requests or page drain (ECAP.PRS,
/// ECAP.PDS). Its caches are off: the guest's devices never translate through it (IMPDEF),
/// only the host's unit does.
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
        ecap::PRS,
        ecap::PDS,
    ] {
        e = f.with(e, false);
    }
    e = ecap::PSS.set(e, u64::from(GUEST_PASID_BITS) - 1);
    VtdParams { cap: c, ecap: e, caches: CacheParams::NONE, ..p }
}

/// [`guest_params`], plus page requests (ECAP.PRS) when the host unit, whose ECAP_REG is
/// `host_ecap` (from `GET_HW_INFO`), takes them: they come back through the fault queue.
pub fn guest_params_for(host_ecap: u64) -> VtdParams {
    let p = guest_params();
    VtdParams { ecap: ecap::PRS.with(p.ecap, ecap::PRS.is_set(host_ecap)), ..p }
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
    /// Page requests the guest's unit took (written into its page request queue, or answered
    /// by its model: its `ats_stats()` counts which).
    pub page_requests: u64,
    /// Page request groups of no assigned device on the fault queue: answered Invalid.
    pub page_requests_refused: u64,
    /// Page group responses that reached the host's fault queue.
    pub responses: u64,
    /// Page group responses of the guest for no group the host asked about: dropped.
    pub stray_responses: u64,
}

/// What one [`VVtd::service`] pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Serviced {
    /// Page requests the guest's unit took.
    pub page_requests: u64,
    /// Page requests still waiting for the guest's unit (its outbox had no room).
    pub waiting: u64,
    /// The guest's interrupt messages, for the VMM to inject.
    pub interrupts: Vec<Output>,
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
        let (parent, fault, host_ecap) = {
            let mut f = lock(&fd);
            let mut host_ecap = 0;
            for (i, &(rid, dev)) in devices.iter().enumerate() {
                let host = match f.get_hw_info(dev)?.data {
                    HwInfo::Smmuv3 { .. } => Model::Smmuv3,
                    HwInfo::Vtd { ecap, .. } => {
                        if i == 0 {
                            host_ecap = ecap;
                        }
                        Model::Vtd
                    }
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
            let parent = f.hwpt_alloc(&HwptAlloc {
                flags: hwpt_flags::NEST_PARENT,
                dev_id: first,
                pt_id: ioas,
                ..HwptAlloc::default()
            })?;
            let fault = if ecap::PRS.is_set(host_ecap) {
                match f.fault_queue_alloc(0) {
                    Ok(q) => Some(q),
                    Err(e) => {
                        let _ = f.destroy(parent);
                        return Err(e.into());
                    }
                }
            } else {
                None
            };
            (parent, fault, host_ecap)
        };
        let devices = devices
            .iter()
            .map(|&(rid, dev)| (rid, Device { dev, pasids: BTreeMap::new() }))
            .collect();
        let host = Arc::new(Host {
            fd,
            parent,
            fault,
            devices: Mutex::new(devices),
            cookies: Mutex::new(BTreeMap::new()),
            pending_prq: Mutex::new(VecDeque::new()),
            stats: Mutex::new(VVtdStats::default()),
        });
        let hook: Arc<dyn Forward> = host.clone();
        let vtd = Vtd::new(GuestPhys(ram), guest_params_for(host_ecap)).with_forward(hook);
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
    /// host, if any (`pasid` 0: RID_PASID, the device itself on the host).
    pub fn host_hwpt(&self, rid: u16, pasid: u32) -> Option<ObjectId> {
        lock(&self.host.devices).get(&rid)?.pasids.get(&pasid).map(|b| b.hwpt)
    }

    /// What the vIOMMU has done on the host so far.
    pub fn stats(&self) -> VVtdStats {
        *lock(&self.host.stats)
    }

    /// The host's fault queue of this vIOMMU (when the host unit takes page requests).
    pub fn fault_queue_id(&self) -> Option<ObjectId> {
        self.host.fault
    }

    /// The VMM's event loop, one pass: the host's interrupt thread runs
    /// ([`sviommu_uapi::Iommufd::handle_host_events`]; faults stay with the VMM, module doc);
    /// the fault queue's page requests go to the guest's unit with the guest's requester ID
    /// ([`Vtd::page_request`], §7.5.1), those its port does not take yet waiting for the next
    /// pass; then what the guest's unit sent is delivered: page group responses (its own
    /// automatic ones too) go to the host's fault queue, and its interrupts are returned for
    /// the VMM to inject.
    pub fn service(&self) -> Serviced {
        let h = &*self.host;
        let faults = {
            let mut fd = lock(&h.fd);
            fd.handle_host_events();
            h.fault.map(|q| fd.fault_read(q).unwrap_or_default()).unwrap_or_default()
        };
        let (msgs, strays) = h.page_requests(faults);
        if let Some(fq) = h.fault {
            // Groups of no assigned device: nobody in this guest can answer them.
            let mut fd = lock(&h.fd);
            for cookie in strays {
                let _ = fd.fault_respond(fq, cookie, pgfault::RESP_INVALID);
            }
        }
        let mut out = Serviced::default();
        {
            // Not under `devices` or `cookies`: the model's register file comes first.
            let mut pending = lock(&h.pending_prq);
            pending.extend(msgs);
            while let Some(msg) = pending.front() {
                if self.vtd.page_request(msg) == PageRequestOutcome::Busy {
                    break;
                }
                pending.pop_front();
                out.page_requests += 1;
                h.count(|s| s.page_requests += 1);
            }
            out.waiting = u64::try_from(pending.len()).unwrap_or(u64::MAX);
        }
        for o in self.vtd.drain_outputs() {
            match o {
                Output::PageGroupResponse(r) => h.respond(&r, false),
                // Device-TLB invalidations went to the host through the hook.
                Output::DevTlbInvalidation(_) => {}
                Output::Msi { .. } => out.interrupts.push(o),
            }
        }
        out
    }
}

impl VVtd {
    /// Takes the vIOMMU's host objects down in dependency order (every guest (device, PASID)
    /// detached and its nested HWPT destroyed, then the fault queue and the parent), so the
    /// host's objects are as before [`VVtd::new`]; page request groups still waiting are
    /// answered Invalid by the host as their PASIDs leave. Called by `Drop`; a second call
    /// does nothing. Returns the host objects it could not destroy.
    pub fn destroy(&self) -> Vec<ObjectId> {
        self.host.destroy()
    }
}

impl Drop for VVtd {
    fn drop(&mut self) {
        self.host.destroy();
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
    /// By guest PASID; [`RID_PASID`]: requests without PASID, attached to the device itself.
    pasids: BTreeMap<u32, Bound>,
}

/// The guest's RID_PASID: 0, since the vIOMMU advertises no ECAP.RPS (§9.4: the context
/// entry's RID_PASID field is then treated as 0).
const RID_PASID: u32 = 0;

/// Where a guest PASID is attached on the host: RID_PASID is the device itself.
fn host_pasid(pasid: u32) -> Option<u32> {
    (pasid != RID_PASID).then_some(pasid)
}

/// A page request group as the guest names it: requester ID, PASID, PRG index.
type PageGroup = (u16, Option<u32>, u16);

/// The forwarding hook: the VMM's side of the vIOMMU, owning the host objects it made.
/// Lock order: the guest model's register file (the hook runs under it), then `devices`,
/// `cookies`, `fd`; `pending_prq` only before the register file; `stats` last.
struct Host {
    fd: SharedFd,
    parent: ObjectId,
    /// The fault queue every nested HWPT carries, when the host takes page requests.
    fault: Option<ObjectId>,
    /// By the requester ID the guest sees (taken before `fd`).
    devices: Mutex<BTreeMap<u16, Device>>,
    /// The fault queue's cookie of each page request group handed to the guest: where its
    /// response goes.
    cookies: Mutex<BTreeMap<PageGroup, u32>>,
    /// Page requests the guest's unit has not taken yet (its outbox was full).
    pending_prq: Mutex<VecDeque<PageRequestMsg>>,
    stats: Mutex<VVtdStats>,
}

impl Host {
    /// See [`VVtd::destroy`].
    fn destroy(&self) -> Vec<ObjectId> {
        let devices = std::mem::take(&mut *lock(&self.devices));
        let mut fd = lock(&self.fd);
        let mut order = Vec::new();
        for d in devices.values() {
            // PASIDs first, the device's RID_PASID (0) last.
            for (&pasid, b) in d.pasids.iter().rev() {
                let _ = fd.detach(d.dev, host_pasid(pasid));
                order.push(b.hwpt);
            }
        }
        order.extend(self.fault);
        order.push(self.parent);
        order.into_iter().filter(|&id| fd.object(id).is_some() && fd.destroy(id).is_err()).collect()
    }
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
                (Pasids::One(p), Some(_)) => vec![p],
                // RID_PASID first, as a host PASID attach needs the RID's HWPT to allow it.
                (Pasids::All, Some(_)) => (0..1u32 << GUEST_PASID_BITS).collect(),
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
        // RID_PASID needs no PASIDE: requests without PASID use it (§9.4).
        if pasid == RID_PASID {
            return match e.pasid_entry(rid, ce, None) {
                Ok(Some(f)) if f.pgtt == Pgtt::FirstStage => {
                    Some((FirstStage::of(&f.entry), f.entry.did()))
                }
                _ => None,
            };
        }
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

    /// Moves `(d, pasid)` on the host to `want`: a nested HWPT with that first stage (the
    /// current one kept if the tables are the same), or blocked. The old HWPT is destroyed.
    fn apply(&self, d: &mut Device, pasid: u32, want: Option<(FirstStage, u16)>) {
        let current = d.pasids.get(&pasid).copied();
        let mut fd = lock(&self.fd);
        let at = host_pasid(pasid);
        let Some((s1, did)) = want else {
            if let Some(old) = current {
                let _ = fd.detach(d.dev, at);
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
            flags: hwpt_flags::PASID
                | if self.fault.is_some() { hwpt_flags::FAULT_ID_VALID } else { 0 },
            dev_id: d.dev,
            pt_id: self.parent,
            data: HwptData::vtd_s1(s1.flags, s1.fsptptr, s1.addr_width),
            fault_id: self.fault.unwrap_or(0),
        };
        let attached = fd.hwpt_alloc(&alloc).and_then(|h| {
            let r = match current {
                Some(_) => fd.replace(d.dev, at, h),
                None => fd.attach(d.dev, at, h),
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
                    let _ = fd.detach(d.dev, at);
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

impl Host {
    /// The fault queue's pages as the guest's unit receives them (§7.5.1.1: the guest's
    /// requester ID, the PASID, the PRG index), remembering each group's cookie; and the
    /// cookies of complete groups of no assigned device.
    fn page_requests(&self, faults: Vec<PageFault>) -> (Vec<PageRequestMsg>, Vec<u32>) {
        let devices = lock(&self.devices);
        let mut cookies = lock(&self.cookies);
        let (mut msgs, mut strays) = (Vec::new(), Vec::new());
        for f in faults {
            let lpig = f.flags & pgfault::LAST_PAGE != 0;
            let Some(rid) = devices.iter().find(|(_, d)| d.dev == f.dev_id).map(|(&r, _)| r) else {
                if lpig {
                    strays.push(f.cookie);
                    self.count(|s| s.page_requests_refused += 1);
                }
                continue;
            };
            let pasid = (f.flags & pgfault::PASID_VALID != 0).then_some(f.pasid);
            // The PRG index is 9 bits (PCIe §10.4.1); the host's came from a device.
            let prgi = u16::try_from(f.grpid & 0x1ff).unwrap_or(0);
            if lpig {
                cookies.insert((rid, pasid, prgi), f.cookie);
            }
            msgs.push(PageRequestMsg {
                rid,
                pasid,
                addr: f.addr & !low_mask(12),
                read: f.perm & pgfault::PERM_READ != 0,
                write: f.perm & pgfault::PERM_WRITE != 0,
                exec: false,
                privileged: false,
                prgi,
                lpig,
                private_data: None,
            });
        }
        (msgs, strays)
    }

    /// A page group response of the guest's unit: to the host's fault queue with the group's
    /// cookie, once (the descriptor through the hook, and the message the model then sends,
    /// are one response). `descriptor`: it is the guest's descriptor, so a group nobody asked
    /// about is counted as stray.
    fn respond(&self, r: &PageGroupResponse, descriptor: bool) {
        let key = (r.rid(), r.pp().then(|| r.pasid()), r.prgi());
        let cookie = lock(&self.cookies).remove(&key);
        let (Some(cookie), Some(fq)) = (cookie, self.fault) else {
            if descriptor {
                self.count(|s| s.stray_responses += 1);
            }
            return;
        };
        // iommufd has Success and Invalid; Response Failure becomes Invalid.
        let code = match r.rc() {
            Ok(ResponseCode::Success) => pgfault::RESP_SUCCESS,
            _ => pgfault::RESP_INVALID,
        };
        let ok = lock(&self.fd).fault_respond(fq, cookie, code).is_ok();
        self.count(|s| if ok { s.responses += 1 } else { s.stray_responses += 1 });
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
            Invalidation::DevTlb(c) => {
                // §6.5.2.5: requests without PASID, translated at RID_PASID.
                let sid = c.sid();
                let (addr, lg2) = ats_range(c.addr(), c.s());
                let pages = 1u64.checked_shl(u32::from(lg2.saturating_sub(12)));
                let range = pages.filter(|_| lg2 < 64).map(|n| (addr, n, false));
                self.invalidate(|r, p, _| r == sid && p == RID_PASID, range)?;
            }
            // §7.7.1: the model checked it (RC, ECAP.PRS) and sent it to the outbox.
            Invalidation::PageGroupResponse(r) => self.respond(r, true),
            // Interrupt entry cache, wait: nothing forwarded holds what they select.
            _ => {}
        }
        Ok(())
    }
}

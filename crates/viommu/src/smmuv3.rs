//! A guest-visible SMMUv3 (Arm IHI 0070 G.b) over the host's iommufd-shaped API, as QEMU's
//! accelerated SMMUv3 and the Rust VMMs build it.
//!
//! The guest sees [`Smmu`], the hardware model, over its own RAM: its drivers program registers,
//! the Stream table, CD tables and queues exactly as on the host. The model's Command queue
//! hands every legal command to `Host` (a [`Forward`] hook) where the hardware acts on it:
//!
//! | guest command | on the host |
//! |---|---|
//! | CMD_CFGI_STE, CMD_CFGI_STE_RANGE (CFGI_ALL) | the guest's STE, read and checked by the model (§5.2.2; an ILLEGAL one is C_BAD_STE in the guest): stage 1 -> a nested HWPT on the vIOMMU carrying the STE, replacing the device's HWPT (the seed's `bind_pasid_table`); bypass -> the nesting parent; abort or ILLEGAL -> an abort vSTE |
//! | CMD_TLBI_NH_*, CMD_TLBI_NSNH_ALL, CMD_CFGI_CD(_ALL), CMD_ATC_INV | the vIOMMU's invalidate with the raw command (uapi turns the vSID into the SID and forces the VMID) |
//! | CMD_TLBI_S12_VMALL | CERROR_ILL: the vSMMU has no stage 2 and iommufd passes none |
//! | CMD_SYNC | nothing: forwarding is synchronous, so everything before it has completed on the host |
//!
//! The vSMMU advertises stage 1 only (SMMU_IDR0.S2P == 0, so stage-2 and nested STEs and
//! CMD_TLBI_S2_IPA are ILLEGAL by the model's own checks) and the terminate-only fault model.
//!
//! | CMD_PRI_RESP | the host fault queue's page response for the group (by its cookie) |
//!
//! Back to the guest, in [`VSmmu::service`] (the VMM's event loop): the host's stage-1 events
//! for the assigned devices arrive on the vIOMMU's vEVENTQ with the virtual StreamID and go
//! into the guest's Event queue through the model's own recording path
//! ([`Smmu::record_event`]: full queue, overflow flag and interrupt as §7.2, §7.4 say); events
//! the vEVENTQ lost (LOST_EVENTS, a gap in its sequence numbers) are an Event queue overflow
//! in the guest ([`Smmu::discard_event`]). Stage-2 faults stay with the VMM
//! ([`Iommufd::take_host_faults`]). Page request groups arrive on the fault queue and go into
//! the guest's PRI queue ([`Smmu::page_request`]) with the virtual StreamID; the guest's
//! CMD_PRI_RESP, and the responses its model sends by itself (a full PRI queue's automatic
//! Success), go back to the fault queue and through the host to the device.
//!
//! DEVIATION: a legal guest STE the host refuses (a field `arm_smmu_validate_vste()` rejects,
//! after the VMM masked the guest's STE to the fields a guest may set) aborts the device's DMA
//! without an error in the guest.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use sviommu_core::driver::HwInfo;
use sviommu_core::Model;
use sviommu_memory::{GuestPhys, GuestRam, HostMemory, Mmio};
use sviommu_smmuv3::hw::{Forward, Output, Smmu, SmmuParams, StreamLookup};
use sviommu_smmuv3::spec::regs::{idr0, idr1, idr3, StallModel};
use sviommu_smmuv3::spec::ste::StreamConfig;
use sviommu_smmuv3::spec::{CError, Command, EventRecord, Opcode, PageRequest};
use sviommu_uapi::data::{hwpt_flags, TYPE_ARM_SMMUV3};
use sviommu_uapi::object::pgfault;
use sviommu_uapi::{HwptAlloc, HwptData, InvalidateArray, Iommufd, ObjectId, UapiError};

use crate::{lock, ViommuError};

/// The guest's RAM as the vSMMU's physical memory.
pub type GuestMemory = GuestPhys<Arc<HostMemory>>;

/// The VMM's iommufd context, shared by the VMM and its vIOMMUs.
pub type SharedFd = Arc<Mutex<Iommufd>>;

/// StreamID bits of the vSMMU (IMPDEF: a linear Stream table of 256 STEs fits any guest).
pub const GUEST_SIDSIZE: u8 = 8;

/// The SMMU the guest sees: the default model with stage 1 only, terminate-only faults and
/// [`GUEST_SIDSIZE`] StreamID bits.
pub fn guest_params() -> SmmuParams {
    let p = SmmuParams::default().with_stall_model(StallModel::TerminateOnly);
    let i0 = idr0::S2P.with(u64::from(p.idr0), false);
    let i1 = idr1::SIDSIZE.set(u64::from(p.idr1), u64::from(GUEST_SIDSIZE));
    SmmuParams {
        idr0: u32::try_from(i0).unwrap_or(p.idr0),
        idr1: u32::try_from(i1).unwrap_or(p.idr1),
        ..p
    }
}

/// [`guest_params`], plus what the host unit (its SMMU_IDR0..5, from `GET_HW_INFO`) has that a
/// guest can use through iommufd: ATS, and PRI with the host's PRI queue size and PPS (page
/// requests come back through the fault queue).
pub fn guest_params_for(host_idr: &[u32; 6]) -> SmmuParams {
    let p = guest_params();
    let [h0, h1, _, h3, _, _] = host_idr.map(u64::from);
    let mut i0 = u64::from(p.idr0);
    let (mut i1, mut i3) = (u64::from(p.idr1), u64::from(p.idr3));
    i0 = idr0::ATS.with(i0, idr0::ATS.is_set(h0));
    if idr0::PRI.is_set(h0) {
        i0 = idr0::PRI.with(i0, true);
        i1 = idr1::PRIQS.set(i1, idr1::PRIQS.get(h1));
        i3 = idr3::PPS.with(i3, idr3::PPS.is_set(h3));
    }
    SmmuParams {
        idr0: u32::try_from(i0).unwrap_or(p.idr0),
        idr1: u32::try_from(i1).unwrap_or(p.idr1),
        idr3: u32::try_from(i3).unwrap_or(p.idr3),
        ..p
    }
}

/// How the VMM builds a vSMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VSmmuConfig {
    /// Events the host's vEVENTQ for this vSMMU holds before it loses some.
    pub veventq_depth: u32,
}

impl Default for VSmmuConfig {
    fn default() -> Self {
        Self { veventq_depth: 64 }
    }
}

/// What the vSMMU delivered to its guest, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VSmmuStats {
    /// Host events written to the guest's Event queue.
    pub events_delivered: u64,
    /// Host events the guest's Event queue did not take (full, disabled, aborted: the model
    /// counts which in its `stats()`).
    pub events_refused: u64,
    /// Events the host's vEVENTQ lost (by the gaps in its sequence numbers), each made a
    /// guest Event queue overflow.
    pub events_lost: u64,
    /// Page requests written to the guest's PRI queue (or answered by its model).
    pub page_requests: u64,
    /// Page responses that reached the host's fault queue.
    pub responses: u64,
    /// PRG responses of the guest for no group the host asked about: dropped.
    pub stray_responses: u64,
    /// Guest TLBI_NH_* / TLBI_NSNH_ALL / CFGI_CD(_ALL) / ATC_INV sent to the vIOMMU's
    /// invalidate (as `VVtdStats::invalidations`, refused ones included).
    pub invalidations: u64,
    /// Of those, the ones the host refused (CERROR_ILL at the command in the guest).
    pub invalidations_refused: u64,
}

/// What one [`VSmmu::service`] pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Serviced {
    /// Host events written to the guest's Event queue.
    pub events: u64,
    /// Events the host lost for this guest (LOST_EVENTS).
    pub lost: u64,
    /// Page requests handed to the guest's PRI queue.
    pub page_requests: u64,
    /// What the guest's SMMU sent that is the VMM's to deliver: its interrupts and MSIs.
    pub interrupts: Vec<Output>,
}

/// A guest-visible SMMUv3 whose programming reaches the host through `uapi`.
pub struct VSmmu {
    smmu: Smmu<GuestMemory>,
    host: Arc<Host>,
}

impl fmt::Debug for VSmmu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VSmmu").field("smmu", &self.smmu).field("host", &self.host).finish()
    }
}

/// The host objects a vSMMU is built on.
struct Built {
    parent: ObjectId,
    viommu: ObjectId,
    veventq: ObjectId,
    fault: Option<ObjectId>,
    streams: BTreeMap<u32, Stream>,
}

impl VSmmu {
    /// [`VSmmu::with_config`] with the default [`VSmmuConfig`].
    pub fn new(
        fd: SharedFd,
        ram: GuestRam<Arc<HostMemory>>,
        ioas: ObjectId,
        devices: &[(u32, ObjectId)],
    ) -> Result<Self, ViommuError> {
        Self::with_config(fd, ram, ioas, devices, VSmmuConfig::default())
    }

    /// A vSMMU for the guest whose RAM is `ram` and whose stage 2 is `ioas` (the VMM mapped
    /// guest RAM there), with `devices` assigned as (virtual StreamID, device object). The
    /// host gets a NEST_PARENT HWPT over `ioas`, a vIOMMU over it with a vEVENTQ, a fault
    /// queue if the unit takes page requests, and per device a vDEVICE and an abort vSTE the
    /// device is attached to until the guest configures its STE.
    ///
    /// Refused with [`ViommuError::ModelMismatch`] before anything is made if a device's unit
    /// is not an SMMUv3. A host call that fails part way undoes every call before it: the
    /// host's objects and hardware are as they were.
    pub fn with_config(
        fd: SharedFd,
        ram: GuestRam<Arc<HostMemory>>,
        ioas: ObjectId,
        devices: &[(u32, ObjectId)],
        config: VSmmuConfig,
    ) -> Result<Self, ViommuError> {
        let Some(&(_, first)) = devices.first() else {
            return Err(ViommuError::NoDevice);
        };
        let (built, host_idr) = {
            let mut f = lock(&fd);
            let mut host_idr = None;
            for (i, &(vsid, dev)) in devices.iter().enumerate() {
                let host = match f.get_hw_info(dev)?.data {
                    HwInfo::Smmuv3 { idr, .. } => {
                        host_idr.get_or_insert(idr);
                        Model::Smmuv3
                    }
                    HwInfo::Vtd { .. } => Model::Vtd,
                };
                if host != Model::Smmuv3 {
                    return Err(ViommuError::ModelMismatch {
                        guest: Model::Smmuv3,
                        host,
                        device: dev,
                    });
                }
                if devices.iter().take(i).any(|&(v, _)| v == vsid) {
                    return Err(ViommuError::DuplicateVirtualId(vsid));
                }
            }
            let host_idr = host_idr.unwrap_or_default();
            let pri = idr0::PRI.is_set(u64::from(host_idr[0]));
            let (mut made, mut attached) = (Vec::new(), Vec::new());
            match build(&mut f, &mut made, &mut attached, ioas, first, devices, pri, config) {
                Ok(b) => (b, host_idr),
                Err(e) => {
                    // Undo in reverse: detach, then destroy what was made last first.
                    for dev in attached {
                        let _ = f.detach(dev, None);
                    }
                    for id in made.into_iter().rev() {
                        let _ = f.destroy(id);
                    }
                    return Err(e.into());
                }
            }
        };
        let host = Arc::new(Host {
            fd,
            parent: built.parent,
            viommu: built.viommu,
            veventq: built.veventq,
            fault: built.fault,
            streams: Mutex::new(built.streams),
            cookies: Mutex::new(BTreeMap::new()),
            pending_prq: Mutex::new(VecDeque::new()),
            next_sequence: Mutex::new(None),
            stats: Mutex::new(VSmmuStats::default()),
        });
        let hook: Arc<dyn Forward> = host.clone();
        let smmu = Smmu::new(GuestPhys(ram), guest_params_for(&host_idr)).with_forward(hook);
        Ok(Self { smmu, host })
    }

    /// The hardware model the guest programs.
    pub fn smmu(&self) -> &Smmu<GuestMemory> {
        &self.smmu
    }

    /// The host's vIOMMU object.
    pub fn viommu_id(&self) -> ObjectId {
        self.host.viommu
    }

    /// The host's nesting parent (the guest's stage 2).
    pub fn parent_id(&self) -> ObjectId {
        self.host.parent
    }

    /// The host's vEVENTQ of this vSMMU.
    pub fn veventq_id(&self) -> ObjectId {
        self.host.veventq
    }

    /// The host's fault queue of this vSMMU (when the host unit takes page requests).
    pub fn fault_queue_id(&self) -> Option<ObjectId> {
        self.host.fault
    }

    /// The HWPT the device of virtual StreamID `vsid` is attached to on the host.
    pub fn host_hwpt(&self, vsid: u32) -> Option<ObjectId> {
        lock(&self.host.streams).get(&vsid).map(|s| match s.current {
            Current::Abort => s.abort,
            Current::Bypass => self.host.parent,
            Current::Nested(h) => h,
        })
    }

    /// What the vSMMU delivered so far.
    pub fn stats(&self) -> VSmmuStats {
        *lock(&self.host.stats)
    }

    /// The VMM's event loop, one pass: the host's interrupt thread runs
    /// ([`Iommufd::handle_host_events`]); this vSMMU's vEVENTQ is read into the guest's Event
    /// queue (the model records each as it records its own events, §7.2, §7.4; a LOST_EVENTS
    /// is an Event queue overflow in the guest) and its fault queue into the guest's PRI queue
    /// with the virtual StreamID; then what the guest's SMMU sent is delivered: PRG responses
    /// (its own automatic ones too) go to the host's fault queue, and its interrupts are
    /// returned for the VMM to inject.
    pub fn service(&self) -> Serviced {
        let h = &*self.host;
        let (vevents, faults) = {
            let mut fd = lock(&h.fd);
            fd.handle_host_events();
            let v = fd.veventq_read(h.veventq, usize::MAX).unwrap_or_default();
            let f = h.fault.map(|q| fd.fault_read(q).unwrap_or_default()).unwrap_or_default();
            (v, f)
        };
        let mut out = Serviced::default();
        for v in vevents {
            let lost = h.lost_before(v.sequence, v.data.is_none());
            if lost > 0 {
                // §7.4: the guest sees the overflow the host had.
                self.smmu.discard_event();
                out.lost += lost;
                lock(&h.stats).events_lost += lost;
            }
            if let Some(words) = v.data {
                let written = self.smmu.record_event(&EventRecord(words));
                let mut st = lock(&h.stats);
                if written {
                    out.events += 1;
                    st.events_delivered += 1;
                } else {
                    st.events_refused += 1;
                }
            }
        }
        let mut reqs = Vec::new();
        {
            let streams = lock(&h.streams);
            let mut cookies = lock(&h.cookies);
            for f in faults {
                let Some(vsid) = streams.iter().find(|(_, s)| s.dev == f.dev_id).map(|(&v, _)| v)
                else {
                    continue;
                };
                let ssid = (f.flags & pgfault::PASID_VALID != 0).then_some(f.pasid);
                let mut req = PageRequest::default();
                req.set_sid(vsid);
                req.set_ssv(ssid.is_some());
                req.set_ssid(ssid.unwrap_or(0));
                req.set_r(f.perm & pgfault::PERM_READ != 0);
                req.set_w(f.perm & pgfault::PERM_WRITE != 0);
                req.set_last(f.flags & pgfault::LAST_PAGE != 0);
                let prg = u16::try_from(f.grpid).unwrap_or(u16::MAX);
                req.set_prgindex(prg);
                req.set_page_address(f.addr & !0xfff);
                cookies.insert((vsid, ssid, prg), f.cookie);
                reqs.push(req);
            }
        }
        {
            // Not under `streams` or `cookies`: the model's register file comes first.
            let mut pending = lock(&h.pending_prq);
            pending.extend(reqs);
            // The guest's port takes what its outbox has room to answer; the rest waits.
            while let Some(req) = pending.front() {
                if !self.smmu.page_request(req) {
                    break;
                }
                pending.pop_front();
                out.page_requests += 1;
                lock(&h.stats).page_requests += 1;
            }
        }
        for o in self.smmu.drain_outputs() {
            match o {
                Output::PriResponse { sid, ssid, prg_index, response_code } => {
                    h.respond(sid, ssid, prg_index, response_code);
                }
                // ATS invalidations went to the host as commands (the hook).
                Output::AtcInvalidate { .. } => {}
                other => out.interrupts.push(other),
            }
        }
        out
    }
}

/// Makes the host objects, recording each in `made` (and each attached device in
/// `attached`) so that the caller can undo them.
#[allow(clippy::too_many_arguments)]
fn build(
    f: &mut Iommufd,
    made: &mut Vec<ObjectId>,
    attached: &mut Vec<ObjectId>,
    ioas: ObjectId,
    first: ObjectId,
    devices: &[(u32, ObjectId)],
    pri: bool,
    config: VSmmuConfig,
) -> Result<Built, UapiError> {
    let parent = f.hwpt_alloc(&HwptAlloc {
        flags: hwpt_flags::NEST_PARENT,
        dev_id: first,
        pt_id: ioas,
        ..HwptAlloc::default()
    })?;
    made.push(parent);
    let viommu = f.viommu_alloc(0, TYPE_ARM_SMMUV3, first, parent)?;
    made.push(viommu);
    let veventq = f.veventq_alloc(0, viommu, TYPE_ARM_SMMUV3, config.veventq_depth)?;
    made.push(veventq);
    let fault = if pri {
        let q = f.fault_queue_alloc(0)?;
        made.push(q);
        Some(q)
    } else {
        None
    };
    let mut streams = BTreeMap::new();
    for &(vsid, dev) in devices {
        let vdevice = f.vdevice_alloc(viommu, dev, u64::from(vsid))?;
        made.push(vdevice);
        let abort = f.hwpt_alloc(&nested(dev, viommu, [0, 0], None))?;
        made.push(abort);
        f.attach(dev, None, abort)?;
        attached.push(dev);
        streams.insert(vsid, Stream { dev, vdevice, abort, current: Current::Abort });
    }
    Ok(Built { parent, viommu, veventq, fault, streams })
}

impl VSmmu {
    /// Takes the vSMMU's host objects down in dependency order (each device detached, its
    /// nested HWPTs, vDEVICEs, the vEVENTQ, the fault queue, the vIOMMU, the parent), so the
    /// host's objects are as before [`VSmmu::new`]; page request groups still waiting are
    /// answered Invalid by the host as their devices leave. Called by `Drop`; a second call
    /// does nothing. Returns the host objects it could not destroy (none unless the VMM
    /// attached something else to them).
    pub fn destroy(&self) -> Vec<ObjectId> {
        self.host.destroy()
    }
}

impl Drop for VSmmu {
    fn drop(&mut self) {
        self.host.destroy();
    }
}

impl Mmio for VSmmu {
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.smmu.mmio_read(offset, size)
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        self.smmu.mmio_write(offset, size, value);
    }
}

/// `IOMMU_HWPT_ALLOC` of a nested HWPT on the vIOMMU with vSTE `words`, its page requests
/// to `fault`.
fn nested(dev: ObjectId, viommu: ObjectId, words: [u64; 2], fault: Option<ObjectId>) -> HwptAlloc {
    HwptAlloc {
        flags: if fault.is_some() { hwpt_flags::FAULT_ID_VALID } else { 0 },
        dev_id: dev,
        pt_id: viommu,
        data: HwptData::arm_smmuv3(words),
        fault_id: fault.unwrap_or(0),
    }
}

/// A page request group as the guest names it: virtual StreamID, SubstreamID, PRG index.
type PageGroup = (u32, Option<u32>, u16);

/// What the host runs a virtual StreamID's device on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Current {
    /// The device's abort vSTE.
    Abort,
    /// The nesting parent (the guest's STE bypasses).
    Bypass,
    /// A nested HWPT carrying the guest's stage-1 STE.
    Nested(ObjectId),
}

/// One assigned device.
#[derive(Debug)]
struct Stream {
    dev: ObjectId,
    /// Its vDEVICE.
    vdevice: ObjectId,
    /// Its abort vSTE HWPT (made once, kept).
    abort: ObjectId,
    current: Current,
}

/// The forwarding hook: the VMM's side of the vSMMU, owning the host objects it made.
/// Lock order: the guest model's register file (the hook runs under it), then `streams`,
/// `cookies`, `fd`; `pending_prq` only before the register file; `next_sequence` and `stats`
/// last.
struct Host {
    fd: SharedFd,
    parent: ObjectId,
    viommu: ObjectId,
    veventq: ObjectId,
    fault: Option<ObjectId>,
    /// By virtual StreamID.
    streams: Mutex<BTreeMap<u32, Stream>>,
    /// The host fault queue's cookie of each page request group handed to the guest, by
    /// (virtual StreamID, SubstreamID, PRG index): where its response goes.
    cookies: Mutex<BTreeMap<PageGroup, u32>>,
    /// Page requests the guest's PRI queue port has not taken yet (its outbox was full).
    pending_prq: Mutex<VecDeque<PageRequest>>,
    /// The vEVENTQ sequence number expected next (`None` before the first).
    next_sequence: Mutex<Option<u32>>,
    stats: Mutex<VSmmuStats>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("parent", &self.parent)
            .field("viommu", &self.viommu)
            .field("streams", &*lock(&self.streams))
            .finish_non_exhaustive()
    }
}

/// What the guest's STE asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Abort,
    Bypass,
    Stage1([u64; 2]),
}

impl Host {
    /// §4.3.1, §4.3.2: the guest changed the STEs `sel` selects; each assigned one is read
    /// with the model's checks and its device moved to what it asks for.
    fn streams_changed(
        &self,
        sel: impl Fn(u32) -> bool,
        lookup: &mut dyn StreamLookup,
    ) -> Result<(), CError> {
        let mut streams = lock(&self.streams);
        for (&vsid, s) in streams.iter_mut().filter(|(&v, _)| sel(v)) {
            let target = match lookup.ste(vsid) {
                Ok(ste) => match ste.config() {
                    Ok(StreamConfig::Bypass) => Target::Bypass,
                    Ok(StreamConfig::Stage1) => {
                        // The VMM masks the guest's STE as QEMU does; the host checks the rest.
                        let m = sviommu_uapi::data::vste_allowed();
                        Target::Stage1([ste.0[0] & m[0], ste.0[1] & m[1]])
                    }
                    // Abort; stage 2 and nested are ILLEGAL here (no S2P) and never get here.
                    _ => Target::Abort,
                },
                // ILLEGAL (recorded in the guest's Event queue by the model) or Config abort:
                // the host only ever sees an abort.
                Err(_) => Target::Abort,
            };
            self.apply(s, target);
        }
        Ok(())
    }

    /// Moves a device to `target`: a failed step keeps or falls back to the abort vSTE.
    fn apply(&self, s: &mut Stream, target: Target) {
        let mut fd = lock(&self.fd);
        let next = match target {
            Target::Abort => Current::Abort,
            Target::Bypass => Current::Bypass,
            Target::Stage1(words) => {
                match fd.hwpt_alloc(&nested(s.dev, self.viommu, words, self.fault)) {
                    Ok(h) => Current::Nested(h),
                    // DEVIATION (module doc): the host refused the vSTE.
                    Err(_) => Current::Abort,
                }
            }
        };
        if next == s.current && !matches!(next, Current::Nested(_)) {
            return;
        }
        let hwpt = match next {
            Current::Abort => s.abort,
            Current::Bypass => self.parent,
            Current::Nested(h) => h,
        };
        let old = s.current;
        s.current = match fd.replace(s.dev, None, hwpt) {
            Ok(()) => next,
            Err(_) => {
                if let Current::Nested(h) = next {
                    let _ = fd.destroy(h);
                }
                // A failed replace keeps the old HWPT; abort instead, which cannot fail for
                // an attached device's own abort vSTE.
                match fd.replace(s.dev, None, s.abort) {
                    Ok(()) => Current::Abort,
                    Err(_) => old,
                }
            }
        };
        if let Current::Nested(h) = old {
            if s.current != old {
                let _ = fd.destroy(h);
            }
        }
    }

    /// A guest invalidation iommufd passes: the vIOMMU invalidate with the raw command.
    fn invalidate(&self, cmd: &Command) -> Result<(), CError> {
        let done = lock(&self.fd).invalidate(self.viommu, &InvalidateArray::arm_smmuv3(&[*cmd]));
        let mut st = lock(&self.stats);
        st.invalidations += 1;
        match done {
            Ok(_) => Ok(()),
            Err(_) => {
                // IMPDEF: whatever the host refuses is CERROR_ILL at the command in the guest.
                st.invalidations_refused += 1;
                Err(CError::Ill)
            }
        }
    }

    /// How many events the host lost before the vEVENT with `sequence`: the gap in sequence
    /// numbers (`[0, INT_MAX]`, wrapping), and the LOST_EVENTS header's own number.
    fn lost_before(&self, sequence: u32, header: bool) -> u64 {
        let mut next = lock(&self.next_sequence);
        let gap = next.map_or(0, |n| sequence.wrapping_sub(n) & (i32::MAX as u32));
        *next = Some(sequence.wrapping_add(1) & (i32::MAX as u32));
        u64::from(gap) + u64::from(header)
    }

    /// A PRG response of the guest for (`vsid`, `ssid`, `prg`): to the host's fault queue with
    /// the group's cookie, once (CMD_PRI_RESP through the hook, and the message the model then
    /// sends, are one response).
    fn respond(&self, vsid: u32, ssid: Option<u32>, prg: u16, response_code: u8) {
        let cookie = lock(&self.cookies).remove(&(vsid, ssid, prg));
        let (Some(cookie), Some(fq)) = (cookie, self.fault) else {
            // Already answered through the hook, or never asked.
            return;
        };
        // iommufd has Success and Invalid; PCIe's Response Failure becomes Invalid.
        let code = if response_code == 0 { pgfault::RESP_SUCCESS } else { pgfault::RESP_INVALID };
        let ok = lock(&self.fd).fault_respond(fq, cookie, code).is_ok();
        let mut st = lock(&self.stats);
        if ok {
            st.responses += 1;
        } else {
            st.stray_responses += 1;
        }
    }

    /// See [`VSmmu::destroy`].
    fn destroy(&self) -> Vec<ObjectId> {
        let streams = std::mem::take(&mut *lock(&self.streams));
        if streams.is_empty() && lock(&self.fd).object(self.viommu).is_none() {
            return Vec::new();
        }
        let mut fd = lock(&self.fd);
        let mut order = Vec::new();
        for s in streams.values() {
            let _ = fd.detach(s.dev, None);
            if let Current::Nested(h) = s.current {
                order.push(h);
            }
            order.push(s.abort);
        }
        order.extend(streams.values().map(|s| s.vdevice));
        order.push(self.veventq);
        order.extend(self.fault);
        order.extend([self.viommu, self.parent]);
        order.into_iter().filter(|&id| fd.object(id).is_some() && fd.destroy(id).is_err()).collect()
    }

    /// Whether `vsid` is an assigned device's.
    fn assigned(&self, vsid: u32) -> bool {
        lock(&self.streams).contains_key(&vsid)
    }
}

impl Forward for Host {
    fn command(&self, cmd: &Command, lookup: &mut dyn StreamLookup) -> Result<(), CError> {
        let Ok(op) = cmd.opcode() else { return Err(CError::Ill) };
        match op {
            Opcode::CfgiSte => {
                let sid = cmd.sid();
                self.streams_changed(|v| v == sid, lookup)
            }
            // §4.3.2, §4.3.6: 2^(Range + 1) StreamIDs from StreamID aligned down; 31 is all.
            Opcode::CfgiSteRange => {
                let span = u32::from(cmd.range()).saturating_add(1);
                let first = u64::from(cmd.sid()).checked_shr(span).unwrap_or(0);
                let sel = |v: u32| span >= 32 || u64::from(v) >> span == first;
                self.streams_changed(sel, lookup)
            }
            Opcode::TlbiNhAll
            | Opcode::TlbiNhAsid
            | Opcode::TlbiNhVa
            | Opcode::TlbiNhVaa
            | Opcode::TlbiNsnhAll => self.invalidate(cmd),
            // A StreamID without an assigned device has nothing cached on the host.
            Opcode::CfgiCd | Opcode::CfgiCdAll | Opcode::AtcInv => {
                if self.assigned(cmd.sid()) {
                    self.invalidate(cmd)
                } else {
                    Ok(())
                }
            }
            // §4.5.2: the model checked it (ILLEGAL without PRI or with Resp 0b11).
            Opcode::PriResp => {
                let code = cmd.resp().map(|r| r.response_code()).unwrap_or(u8::MAX);
                let ssid = cmd.ssv().then(|| cmd.ssid());
                let key = (cmd.sid(), ssid, cmd.prgindex());
                if lock(&self.cookies).contains_key(&key) {
                    self.respond(key.0, key.1, key.2, code);
                } else {
                    lock(&self.stats).stray_responses += 1;
                }
                Ok(())
            }
            // IMPDEF: the vSMMU has no stage 2, and iommufd passes no stage-2 invalidation.
            Opcode::TlbiS12Vmall | Opcode::TlbiS2Ipa => Err(CError::Ill),
            // Everything else is the model's alone (CMD_SYNC: forwarding is synchronous).
            _ => Ok(()),
        }
    }
}

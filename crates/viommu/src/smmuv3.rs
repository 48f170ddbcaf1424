//! A guest-visible SMMUv3 (Arm IHI 0070 G.b) over the host's iommufd-shaped API, as QEMU's
//! accelerated SMMUv3 and the Rust VMMs build it.
//!
//! The guest sees [`Smmu`], the hardware model, over its own RAM: its drivers program registers,
//! the Stream table, CD tables and queues exactly as on the host. The model's Command queue
//! hands every legal command to [`Host`] (a [`Forward`] hook) where the hardware acts on it:
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
//! DEVIATION: a legal guest STE the host refuses (a field `arm_smmu_validate_vste()` rejects,
//! after the VMM masked the guest's STE to the fields a guest may set) aborts the device's DMA
//! without an error in the guest. Host events, page requests and the vEVENTQ are not forwarded
//! to the guest yet (issue 12 step 4).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sviommu_core::driver::HwInfo;
use sviommu_core::Model;
use sviommu_memory::{GuestPhys, GuestRam, HostMemory, Mmio};
use sviommu_smmuv3::hw::{Forward, Smmu, SmmuParams, StreamLookup};
use sviommu_smmuv3::spec::regs::{idr0, idr1, StallModel};
use sviommu_smmuv3::spec::ste::StreamConfig;
use sviommu_smmuv3::spec::{CError, Command, Opcode};
use sviommu_uapi::data::{hwpt_flags, TYPE_ARM_SMMUV3};
use sviommu_uapi::{HwptAlloc, HwptData, InvalidateArray, Iommufd, ObjectId};

use crate::ViommuError;

/// The guest's RAM as the vSMMU's physical memory.
pub type GuestMemory = GuestPhys<Arc<HostMemory>>;

/// The VMM's iommufd context, shared by the VMM and its vIOMMUs.
pub type SharedFd = Arc<Mutex<Iommufd>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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

impl VSmmu {
    /// A vSMMU for the guest whose RAM is `ram` and whose stage 2 is `ioas` (the VMM mapped
    /// guest RAM there), with `devices` assigned as (virtual StreamID, device object). The
    /// host gets a NEST_PARENT HWPT over `ioas`, a vIOMMU over it, and per device a vDEVICE
    /// and an abort vSTE the device is attached to until the guest configures its STE.
    ///
    /// Refused with [`ViommuError::ModelMismatch`] before anything is made if a device's unit
    /// is not an SMMUv3.
    pub fn new(
        fd: SharedFd,
        ram: GuestRam<Arc<HostMemory>>,
        ioas: ObjectId,
        devices: &[(u32, ObjectId)],
    ) -> Result<Self, ViommuError> {
        let Some(&(_, first)) = devices.first() else {
            return Err(ViommuError::NoDevice);
        };
        let mut streams = BTreeMap::new();
        let (parent, viommu) = {
            let mut f = lock(&fd);
            for (i, &(vsid, dev)) in devices.iter().enumerate() {
                let host = match f.get_hw_info(dev)?.data {
                    HwInfo::Smmuv3 { .. } => Model::Smmuv3,
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
            let parent = f.hwpt_alloc(&HwptAlloc {
                flags: hwpt_flags::NEST_PARENT,
                dev_id: first,
                pt_id: ioas,
                ..HwptAlloc::default()
            })?;
            let viommu = f.viommu_alloc(0, TYPE_ARM_SMMUV3, first, parent)?;
            for &(vsid, dev) in devices {
                f.vdevice_alloc(viommu, dev, u64::from(vsid))?;
                let abort = f.hwpt_alloc(&nested(dev, viommu, [0, 0]))?;
                f.attach(dev, None, abort)?;
                streams.insert(vsid, Stream { dev, abort, current: Current::Abort });
            }
            (parent, viommu)
        };
        let host = Arc::new(Host { fd, parent, viommu, streams: Mutex::new(streams) });
        let hook: Arc<dyn Forward> = host.clone();
        let smmu = Smmu::new(GuestPhys(ram), guest_params()).with_forward(hook);
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

    /// The HWPT the device of virtual StreamID `vsid` is attached to on the host.
    pub fn host_hwpt(&self, vsid: u32) -> Option<ObjectId> {
        lock(&self.host.streams).get(&vsid).map(|s| match s.current {
            Current::Abort => s.abort,
            Current::Bypass => self.host.parent,
            Current::Nested(h) => h,
        })
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

/// `IOMMU_HWPT_ALLOC` of a nested HWPT on the vIOMMU with vSTE `words`.
fn nested(dev: ObjectId, viommu: ObjectId, words: [u64; 2]) -> HwptAlloc {
    HwptAlloc {
        dev_id: dev,
        pt_id: viommu,
        data: HwptData::arm_smmuv3(words),
        ..HwptAlloc::default()
    }
}

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
    /// Its abort vSTE HWPT (made once, kept).
    abort: ObjectId,
    current: Current,
}

/// The forwarding hook: the VMM's side of the vSMMU, owning the host objects it made.
struct Host {
    fd: SharedFd,
    parent: ObjectId,
    viommu: ObjectId,
    /// By virtual StreamID (taken before `fd`).
    streams: Mutex<BTreeMap<u32, Stream>>,
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
            Target::Stage1(words) => match fd.hwpt_alloc(&nested(s.dev, self.viommu, words)) {
                Ok(h) => Current::Nested(h),
                // DEVIATION (module doc): the host refused the vSTE.
                Err(_) => Current::Abort,
            },
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
        let mut fd = lock(&self.fd);
        // IMPDEF: whatever the host refuses is CERROR_ILL at the command in the guest.
        fd.invalidate(self.viommu, &InvalidateArray::arm_smmuv3(&[*cmd]))
            .map(|_| ())
            .map_err(|_| CError::Ill)
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
            // IMPDEF: the vSMMU has no stage 2, and iommufd passes no stage-2 invalidation.
            Opcode::TlbiS12Vmall | Opcode::TlbiS2Ipa => Err(CError::Ill),
            // Everything else is the model's alone (CMD_SYNC: forwarding is synchronous).
            _ => Ok(()),
        }
    }
}

//! The VT-d driver: programs a remapping unit as an operating system does, through its MMIO
//! registers ([`Mmio`]) and the memory it shares with it, and through nothing else.
//!
//! It allocates and fills root, context, PASID-directory and PASID-table entries, builds
//! second-stage and first-stage tables with `sviommu-pgtable`, submits invalidations through the
//! invalidation queue and waits for them, and drains fault records and page requests. It is
//! generic over the memory it writes (`M::Addr` is `Hpa` on a host, `Gpa` when a guest runs it
//! over its own RAM), and knows nothing of `sviommu-core`, whose adapter wraps it.
//!
//! | module | what |
//! |---|---|
//! | `caps` | VER/CAP/ECAP decoded ([`Capabilities`]) |
//! | `queue` | §6.5.2 the invalidation queue: descriptors, one wait each batch, polled; guests' invalidations ([`InvalidateRequest`]) |
//! | `context` | §9.1–§9.4 root and context entries, legacy and scalable |
//! | `pasid` | §9.5–§9.6 PASID directories and tables; attach and detach ([`PasidConfig`]) |
//! | `domain` | domains: a DID and the tables the driver owns; map, unmap, flush |
//! | `fault` | §7.2 fault records, §7.5 page requests, §7.7 page group responses |
//!
//! Entries are written with `PhysMemory::write_u64`, one atomic word at a time, in the order that
//! keeps a concurrent hardware walk safe: a present bit is written last when an entry becomes
//! present and first when it is torn down (§6.5.3.3). A change of a present entry clears it,
//! invalidates what the unit may have cached of it and only then writes the new one.
//!
//! Every refused call (bad input, a feature the unit does not advertise) returns a typed
//! [`DriverError`] and writes and allocates nothing.

use std::collections::BTreeMap;

use sviommu_memory::{Address, FrameAllocator, FrameError, MemoryError, PhysMemory};
use sviommu_pgtable::MapError;

use crate::spec::regs::{self, eaddr, ectl, edata, gcmd, gsts, rtaddr, rtaddr::Ttm};
use crate::spec::{Aw, Reg32, Reg64};

mod caps;
mod context;
mod domain;
mod fault;
mod pasid;
mod queue;

pub use caps::Capabilities;
pub use domain::{DomainConfig, Prot};
pub use fault::{FaultDrain, PageRequestDrain};
pub use pasid::PasidConfig;
pub use queue::InvalidateRequest;

use context::ContextTables;
use domain::Domain;
use pasid::Attached;
use queue::Queue;

/// The register window the driver programs a unit through; `hw::Vtd` implements it.
pub use sviommu_memory::Mmio;

/// A domain ID (the DID field of context and PASID-table entries, §9.3, §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Did(pub u16);

/// The translation table mode the driver runs the unit in (RTADDR_REG.TTM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Legacy root and context entries: second stage or pass-through per requester.
    Legacy,
    /// Scalable-mode root and context entries, PASID directories and tables.
    Scalable,
}

/// Which mode to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ModeChoice {
    /// Scalable mode if the unit has it (ECAP.SMTS), else legacy.
    #[default]
    Auto,
    /// Legacy mode even on a scalable-mode unit.
    Legacy,
    /// Scalable mode; refused if the unit lacks it.
    Scalable,
}

/// What the fault event sends (§7.3): FEADDR/FEUADDR and FEDATA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsiConfig {
    /// The message address.
    pub addr: u64,
    /// The message data.
    pub data: u32,
}

/// How the driver sets the unit up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Legacy or scalable mode.
    pub mode: ModeChoice,
    /// The host address width (the ACPI DMAR table's HAW + 1): no register says it. Table
    /// pointers and mapped outputs must lie below it.
    pub haw: u8,
    /// The invalidation queue is `2^queue_pages_lg2` 4 KiB pages (IQA.QS, at most 7).
    pub queue_pages_lg2: u8,
    /// The page request queue is `2^page_request_pages_lg2` 4 KiB pages (PQA.PQS, at most 7).
    pub page_request_pages_lg2: u8,
    /// PASID bits the driver's PASID directories cover (capped by ECAP.PSS): a directory has
    /// `2^(bits - 6)` entries.
    pub pasid_bits: u8,
    /// The fault event's message; `None` leaves it masked (FECTL.IM), for a driver that polls.
    pub fault_msi: Option<MsiConfig>,
    /// How many times a status register or a wait descriptor's status word is polled before
    /// the driver gives up with [`DriverError::Timeout`].
    pub poll_limit: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            mode: ModeChoice::Auto,
            haw: 52,
            queue_pages_lg2: 0,
            page_request_pages_lg2: 0,
            pasid_bits: crate::spec::pasid::PASID_BITS,
            fault_msi: None,
            poll_limit: 1000,
        }
    }
}

/// A feature a call needs and the unit does not advertise (or the driver's mode lacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// ECAP.QI.
    QueuedInvalidation,
    /// ECAP.SMTS.
    ScalableMode,
    /// ECAP.PT.
    PassThrough,
    /// ECAP.SSTS (scalable mode).
    SecondStage,
    /// ECAP.FSTS.
    FirstStage,
    /// CAP.FS5LP.
    FiveLevelFirstStage,
    /// ECAP.NEST.
    Nesting,
    /// ECAP.PASID.
    Pasid,
    /// ECAP.SRS.
    SupervisorRequests,
    /// ECAP.DT.
    DeviceTlb,
    /// ECAP.PRS.
    PageRequests,
    /// CAP.SAGAW is empty.
    SecondStageWidth,
}

/// Why the driver refused or failed a call. A refusal changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The unit (or the mode the driver runs it in) lacks what the call needs.
    #[error("the unit does not support {0:?}")]
    Unsupported(Feature),
    /// A register did not report what the command asked for within the poll limit.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
    },
    /// The unit reported an invalidation queue error (FSTS.IQE) for a descriptor the driver
    /// submitted; the descriptor was skipped and the queue restarted.
    #[error("invalidation queue error {iqei:#x} at head {head:#x}")]
    InvalidationQueue {
        /// IQER.IQEI.
        iqei: u64,
        /// IQH: the offset of the descriptor.
        head: u64,
    },
    /// A device-TLB invalidation of the batch timed out (FSTS.ITE) on every try: the driver
    /// cleared ITE and resubmitted the batch, as Linux does, and gave up after
    /// [`DEVTLB_TRIES`] tries. The device's TLB may still hold what the batch invalidated.
    #[error("device-TLB invalidation of {sid:#06x} timed out {tries} times")]
    DeviceTlbTimeout {
        /// IQER.ITESID of the last time-out: the device (0 if the unit did not say).
        sid: u16,
        /// Tries made.
        tries: u32,
    },
    /// No domain has that DID.
    #[error("no domain {0:?}")]
    NoSuchDomain(Did),
    /// The domain has attachments.
    #[error("domain {0:?} is still attached")]
    DomainAttached(Did),
    /// The domain is not of the kind the call needs.
    #[error("domain {did:?} is not a {wanted} domain")]
    WrongDomainKind {
        /// The domain.
        did: Did,
        /// What was needed.
        wanted: &'static str,
    },
    /// Every DID the unit has (CAP.ND) is in use.
    #[error("no domain ID left")]
    NoDomainIds,
    /// The AW is not in CAP.SAGAW.
    #[error("AW {0:?} is not in CAP.SAGAW")]
    AwNotSupported(Aw),
    /// The PASID is beyond what the unit (ECAP.PSS) or the driver's directories cover.
    #[error("PASID {pasid:#x} is beyond the {bits} bits supported")]
    PasidOutOfRange {
        /// The PASID.
        pasid: u32,
        /// Bits supported.
        bits: u8,
    },
    /// The PASID is the RID_PASID that requests without PASID use.
    #[error("PASID {0:#x} is RID_PASID; attach without a PASID instead")]
    PasidReserved(u32),
    /// A request with PASID, or a first-stage or nested attach, in legacy mode.
    #[error("{0} needs scalable mode")]
    NeedsScalableMode(&'static str),
    /// A page size the domain's format or the unit does not have.
    #[error("no {size:#x}-byte pages in this domain")]
    PageSize {
        /// The size asked for.
        size: u64,
    },
    /// The protection cannot be expressed by the domain's format.
    #[error("protection {0:?} cannot be encoded in this domain's tables")]
    Prot(Prot),
    /// A table pointer that is not 4 KiB aligned or is beyond the host address width.
    #[error("table address {addr:#x} is not usable")]
    BadTableAddress {
        /// The address.
        addr: u64,
    },
    /// An address range that wraps or is empty.
    #[error("range {iova:#x} + {size:#x} is not valid")]
    Range {
        /// Start.
        iova: u64,
        /// Bytes.
        size: u64,
    },
    /// Device features can be set only before the device's first attach.
    #[error("device {0:#06x} already has a context entry")]
    DeviceInUse(u16),
    /// The page request queue's tail register names no entry of the queue.
    #[error("page request queue tail {0:#x} is not an entry of the queue")]
    PageRequestTail(u64),
    /// Building or tearing down tables failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// No memory for a table or a queue.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Memory the driver writes is not there.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// What the driver has done so far: nothing is dropped without being counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Invalidation descriptors submitted, wait descriptors included.
    pub descriptors: u64,
    /// Wait descriptors submitted (one per batch).
    pub waits: u64,
    /// Invalidation queue errors the unit reported (FSTS.IQE).
    pub queue_errors: u64,
    /// Fault records drained.
    pub faults: u64,
    /// Drains that found FSTS.PFO set: faults the unit dropped.
    pub fault_overflows: u64,
    /// Page requests drained.
    pub page_requests: u64,
    /// Drains that found PRS.PRO set: page requests the unit dropped.
    pub page_request_overflows: u64,
    /// Page group responses submitted.
    pub page_responses: u64,
    /// Device-TLB invalidation time-outs the unit reported (FSTS.ITE), each followed by a
    /// resubmission or, after the last try, [`DriverError::DeviceTlbTimeout`].
    pub devtlb_timeouts: u64,
    /// Unexpected device-TLB invalidation completions the unit reported (FSTS.ICE), cleared.
    pub completion_errors: u64,
}

/// How many times a batch is submitted while its device-TLB invalidations time out (ITE)
/// before the driver reports [`DriverError::DeviceTlbTimeout`].
pub const DEVTLB_TRIES: u32 = 3;

/// Features of a device behind the unit, which its context entry enables (§9.3 TT, §9.4 DTE,
/// PRE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeviceFeatures {
    /// The device has a device-TLB (ATS): translation requests are allowed, and every teardown
    /// and flush invalidates its device-TLB too.
    pub ats: bool,
    /// The device sends page requests (PRI); scalable mode only.
    pub page_requests: bool,
}

/// The PASID that requests without PASID are translated with (context entry RID_PASID, §9.4).
/// The driver keeps it 0, as ECAP.RPS is optional.
pub const RID_PASID: u32 = 0;

/// The DID 0, which caching mode reserves (§6.1: not-present entries are cached as DID 0); the
/// driver never hands it out.
const RESERVED_DID: u16 = 0;

/// One VT-d remapping unit driven through `R` over memory `M`.
pub struct VtdDriver<R: Mmio, M: PhysMemory> {
    regs: R,
    mem: M,
    frames: FrameAllocator<M::Addr>,
    config: DriverConfig,
    caps: Capabilities,
    mode: Mode,
    root: M::Addr,
    queue: Queue<M::Addr>,
    /// The page request queue (ECAP.PRS in scalable mode): base and bytes.
    prq: Option<(M::Addr, u64)>,
    contexts: ContextTables<M::Addr>,
    domains: BTreeMap<u16, Domain>,
    /// Every attachment, by requester ID and PASID (`None`: requests without PASID).
    attached: BTreeMap<(u16, Option<u32>), Attached>,
    /// The DID pass-through entries carry.
    passthrough_did: u16,
    stats: DriverStats,
}

impl<R: Mmio, M: PhysMemory> std::fmt::Debug for VtdDriver<R, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VtdDriver")
            .field("mode", &self.mode)
            .field("root", &self.root)
            .field("domains", &self.domains.len())
            .field("attached", &self.attached.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// `base + offset` in `A`'s space.
fn offset<A: Address>(base: A, off: u64) -> Result<A, DriverError> {
    base.checked_add(off)
        .ok_or(DriverError::Memory(MemoryError::Outside { addr: base.raw(), len: off }))
}

impl<R: Mmio, M: PhysMemory> VtdDriver<R, M> {
    /// Brings the unit up: reads VER/CAP/ECAP, allocates the root table, the invalidation queue
    /// and (scalable mode with ECAP.PRS) the page request queue, programs the fault event,
    /// latches the root table (SRTP), enables the queue (QIE), invalidates every cache
    /// globally and turns translation on (TE). Expects a unit out of reset.
    ///
    /// Refused, before anything is written or allocated, if the unit has no queued
    /// invalidation (this driver uses no other interface) or scalable mode is asked of a unit
    /// without it.
    pub fn new(
        regs: R,
        mem: M,
        frames: FrameAllocator<M::Addr>,
        config: DriverConfig,
    ) -> Result<Self, DriverError> {
        let caps = Capabilities::decode(
            regs.read(regs::VER.0, 4),
            regs.read(regs::CAP.0, 8),
            regs.read(regs::ECAP.0, 8),
        );
        if !caps.queued_invalidation {
            return Err(DriverError::Unsupported(Feature::QueuedInvalidation));
        }
        let mode = match config.mode {
            ModeChoice::Auto if caps.scalable_mode => Mode::Scalable,
            ModeChoice::Auto | ModeChoice::Legacy => Mode::Legacy,
            ModeChoice::Scalable if caps.scalable_mode => Mode::Scalable,
            ModeChoice::Scalable => return Err(DriverError::Unsupported(Feature::ScalableMode)),
        };
        let mut frames = frames;
        let root = frames.alloc(&mem, 12)?;
        let queue = Queue::create(&mem, &mut frames, &config, mode)?;
        let prq = if mode == Mode::Scalable && caps.page_requests {
            let lg2 = config.page_request_pages_lg2.min(7);
            Some((frames.alloc(&mem, 12 + lg2)?, 4096u64 << lg2))
        } else {
            None
        };
        let mut this = Self {
            regs,
            mem,
            frames,
            config,
            caps,
            mode,
            root,
            queue,
            prq,
            contexts: ContextTables::default(),
            domains: BTreeMap::new(),
            attached: BTreeMap::new(),
            passthrough_did: RESERVED_DID,
            stats: DriverStats::default(),
        };
        this.passthrough_did = this.free_did()?;
        this.program_events();
        // §11.4.6: RTA and TTM, latched by SRTP (§11.4.4).
        let ttm = match mode {
            Mode::Legacy => Ttm::Legacy,
            Mode::Scalable => Ttm::Scalable,
        };
        this.write64(regs::RTADDR, rtaddr::TTM.set(rtaddr::RTA.in_place(root.raw()), ttm.into()));
        this.command(gcmd::SRTP, true, gsts::RTPS, "GSTS.RTPS after SRTP")?;
        this.queue.enable(&this.regs, this.config.poll_limit)?;
        if let Some((base, bytes)) = this.prq {
            this.write64(regs::PQH, 0);
            this.write64(regs::PQT, 0);
            let lg2 = u64::from(bytes.trailing_zeros().saturating_sub(12));
            this.write64(regs::PQA, regs::pqa::PQS.set(regs::pqa::PQA.in_place(base.raw()), lg2));
        }
        this.invalidate_everything()?;
        this.command(gcmd::TE, true, gsts::TES, "GSTS.TES after TE")?;
        Ok(this)
    }

    /// §7.3: the fault event's message, or the mask left on.
    fn program_events(&self) {
        if let Some(msi) = self.config.fault_msi {
            let data_mask = edata::IMD.mask() | edata::EIMD.mask();
            self.write32(regs::FEDATA, u64::from(msi.data) & data_mask);
            self.write32(regs::FEADDR, eaddr::MA.in_place(msi.addr));
            self.write32(regs::FEUADDR, msi.addr >> 32);
            self.write32(regs::FECTL, 0);
        } else {
            self.write32(regs::FECTL, ectl::IM.mask());
        }
    }

    /// §11.4.4: one GCMD command, keeping the enables GSTS reports, then polls GSTS until
    /// `status` reads `on`.
    fn command(
        &self,
        cmd: crate::spec::Field32,
        on: bool,
        status: crate::spec::Field32,
        what: &'static str,
    ) -> Result<(), DriverError> {
        command(&self.regs, cmd, on, status, what, self.config.poll_limit)
    }

    /// Global context-cache, PASID-cache and IOTLB invalidation, then a wait: what bring-up
    /// does before TE (§6.5).
    fn invalidate_everything(&mut self) -> Result<(), DriverError> {
        let descs = queue::global_invalidations(self.mode);
        self.submit(&descs)
    }

    /// Submits `descs` and a wait, and waits.
    fn submit(&mut self, descs: &[[u64; 4]]) -> Result<(), DriverError> {
        let r = self.queue.submit(
            &self.regs,
            &self.mem,
            descs,
            &mut self.stats,
            self.config.poll_limit,
        );
        if matches!(r, Err(DriverError::InvalidationQueue { .. })) {
            self.stats.queue_errors += 1;
        }
        r
    }

    fn read32(&self, r: Reg32) -> u64 {
        self.regs.read(r.0, 4)
    }
    fn write32(&self, r: Reg32, v: u64) {
        self.regs.write(r.0, 4, v);
    }
    fn read64(&self, r: Reg64) -> u64 {
        self.regs.read(r.0, 8)
    }
    fn write64(&self, r: Reg64, v: u64) {
        self.regs.write(r.0, 8, v);
    }

    /// The lowest DID neither in use nor reserved.
    fn free_did(&self) -> Result<u16, DriverError> {
        let limit = self.caps.domains.min(1 << 16);
        (1..limit)
            .filter_map(|d| u16::try_from(d).ok())
            .find(|d| *d != self.passthrough_did && !self.domains.contains_key(d))
            .ok_or(DriverError::NoDomainIds)
    }

    /// Writes an entry that becomes present: every word but the first, then the first, which
    /// holds the present bit of every VT-d structure (§6.5.3.3).
    fn write_present(&self, at: M::Addr, words: &[u64]) -> Result<(), DriverError> {
        for (i, w) in words.iter().enumerate().skip(1) {
            self.mem.write_u64(offset(at, 8 * i as u64)?, *w)?;
        }
        if let Some(w) = words.first() {
            self.mem.write_u64(at, *w)?;
        }
        Ok(())
    }

    /// Clears an entry of `words` words: the first word (present bit) first.
    fn clear_entry(&self, at: M::Addr, words: usize) -> Result<(), DriverError> {
        for i in 0..words {
            self.mem.write_u64(offset(at, 8 * i as u64)?, 0)?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Introspection (tests, the core's audit)
    // ---------------------------------------------------------------------------------------

    /// What the unit advertises.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The mode the unit runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// What the driver has done so far.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// The register interface.
    pub fn regs(&self) -> &R {
        &self.regs
    }

    /// The memory the driver writes.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The allocator the driver's tables come from.
    pub fn frames(&self) -> &FrameAllocator<M::Addr> {
        &self.frames
    }

    /// The root table (RTADDR).
    pub fn root_table_addr(&self) -> M::Addr {
        self.root
    }

    /// The invalidation queue's base (IQA).
    pub fn queue_addr(&self) -> M::Addr {
        self.queue.base()
    }

    /// The page request queue's base and size in bytes (PQA), if the driver set one up.
    pub fn page_request_queue(&self) -> Option<(M::Addr, u64)> {
        self.prq
    }

    /// The DID pass-through entries are tagged with.
    pub fn passthrough_did(&self) -> Did {
        Did(self.passthrough_did)
    }

    /// What `(rid, pasid)` is attached to, if anything.
    pub fn attachment(&self, rid: u16, pasid: Option<u32>) -> Option<PasidConfig> {
        self.attached.get(&(rid, pasid)).map(|a| a.config)
    }
}

/// [`VtdDriver::command`] for a register interface alone (the queue uses it too).
fn command<R: Mmio>(
    regs: &R,
    cmd: crate::spec::Field32,
    on: bool,
    status: crate::spec::Field32,
    what: &'static str,
    poll_limit: u32,
) -> Result<(), DriverError> {
    // §11.4.4: software writes the enables it keeps as GSTS reports them, and changes one.
    let keep = gcmd::TE.mask() | gcmd::QIE.mask() | gcmd::IRE.mask() | gcmd::CFI.mask();
    let current = regs.read(regs::GSTS.0, 4) & keep;
    regs.write(regs::GCMD.0, 4, cmd.with(current, on));
    poll(|| status.is_set(regs.read(regs::GSTS.0, 4)) == on, what, poll_limit)
}

/// Polls `done` up to `limit` times.
fn poll(mut done: impl FnMut() -> bool, what: &'static str, limit: u32) -> Result<(), DriverError> {
    for _ in 0..limit.max(1) {
        if done() {
            return Ok(());
        }
        std::hint::spin_loop();
    }
    Err(DriverError::Timeout { what })
}

//! The SMMUv3 driver: programs an SMMU as an operating system does, through its registers and
//! the memory it reads (Arm IHI 0070 G.b).
//!
//! The driver's only ways to the unit are [`Mmio`] (register reads and writes) and the memory
//! `M` it writes structures and queues into. It knows nothing of `hw` (which implements [`Mmio`]
//! for [`crate::hw::Smmu`]), so the same driver
//! runs against any SMMU that answers those, and, generic over `M::Addr`, a guest OS can run it
//! over its own guest-physical memory.
//!
//! | module | what |
//! |---|---|
//! | `caps` | SMMU_IDR0..5 read once into [`Capabilities`] |
//! | `cmdq` | §3.5, §4: the Command queue, CMD_SYNC (polled or MSI), CERROR recovery |
//! | `queues` | §3.5, §7.4, §8: the Event and PRI queues as the consumer sees them |
//! | `stream` | §3.3.1, §5.1, §5.2: the Stream table (linear or two-level) and the STE update sequence |
//! | `cd` | §3.3.2, §5.3, §5.4: CD tables (linear or two-level), the CD update sequence, reach |
//! | `domain` | stage-1 / stage-2 domains over pgtable's VMSA builders, map / unmap / TLB flush |
//! | `events` | draining events and page requests, PRI responses, guest invalidations |
//! | `nested` | per-PASID nesting: a host CD table reached through the parent's stage 2 |
//!
//! The CD table policy ([`CdTablePolicy`]) decides who shares a CD table. With `PerDomain`
//! (the 2017 seed's arm-smmu-v3) every StreamID attached to a stage-1 domain points at the
//! domain's one table, so a PASID bound for one of them is bound for all: the driver reports
//! that reach as data ([`SmmuDriver::cd_tables`], and the StreamIDs every CD write reached).

use std::collections::{BTreeMap, BTreeSet};

use sviommu_memory::{Address, FrameAllocator, FrameError, MemoryError, PhysMemory};
use sviommu_pgtable::MapError;

use crate::spec::{CError, Command, Granule};

mod caps;
mod cd;
mod cmdq;
mod domain;
mod events;
mod nested;
mod queues;
mod stream;

pub use attrs::MAIR_NORMAL_WB;
pub use caps::Capabilities;
pub use cd::{CdTableOwner, CdTableReach, PasidAttach, SvaContext};
pub use domain::{DomainConfig, DomainId, Prot};
pub use events::{DrainedEvent, Invalidation};
pub use nested::NestedCd;
pub use stream::{Attach, GuestCdTable};

/// The register window the driver programs an SMMU through; `hw::Smmu` implements it.
pub use sviommu_memory::Mmio;

/// Who shares a CD table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CdTablePolicy {
    /// One CD table per stage-1 domain; every StreamID attached to the domain points at it
    /// (CD 0 is the domain's CD). A PASID bound through one StreamID reaches all of them: the
    /// seed's arm-smmu-v3.
    #[default]
    PerDomain,
    /// One CD table per StreamID (Linux since 2023): a PASID bound for a StreamID reaches it
    /// alone.
    PerDevice,
}

/// The Stream table's format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StreamTableFormat {
    /// Two levels when SMMU_IDR0.ST_LEVEL offers them and StreamIDs are wider than one
    /// level-2 span, linear otherwise.
    #[default]
    Auto,
    /// One linear table covering every StreamID (2^SIDSIZE STEs).
    Linear,
    /// Two levels; refused without SMMU_IDR0.ST_LEVEL.
    TwoLevel,
}

/// How the driver learns that a CMD_SYNC has completed (§4.7.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SyncMode {
    /// CS = SIG_NONE: poll SMMU_CMDQ_CONS until it passes the CMD_SYNC.
    #[default]
    Poll,
    /// CS = SIG_IRQ with an MSI to a word the driver owns: poll that word for the CMD_SYNC's
    /// sequence number. Whoever delivers the SMMU's MSIs must write them to memory. Refused
    /// without SMMU_IDR0.MSI.
    Msi,
}

/// What the driver is asked to set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Who shares CD tables.
    pub cd_table_policy: CdTablePolicy,
    /// The Stream table's format.
    pub stream_table: StreamTableFormat,
    /// log2 of the Command queue's entries (capped at SMMU_IDR1.CMDQS).
    pub cmdq_log2: u8,
    /// log2 of the Event queue's entries (capped at SMMU_IDR1.EVENTQS).
    pub eventq_log2: u8,
    /// log2 of the PRI queue's entries (capped at SMMU_IDR1.PRIQS; no PRI queue without PRI).
    pub priq_log2: u8,
    /// CMD_SYNC completion.
    pub sync: SyncMode,
    /// SubstreamID bits of the CD tables the driver makes (capped at SMMU_IDR1.SSIDSIZE).
    pub ssid_bits: u8,
    /// How many times a register or the MSI word is read before waiting is given up.
    pub poll_limit: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            cd_table_policy: CdTablePolicy::PerDomain,
            stream_table: StreamTableFormat::Auto,
            cmdq_log2: 8,
            eventq_log2: 7,
            priq_log2: 6,
            sync: SyncMode::Poll,
            ssid_bits: 20,
            poll_limit: 1000,
        }
    }
}

/// Why a driver call was refused or failed. A refusal (everything but `Memory`, `Frame` during
/// a write sequence, `SyncTimeout`, `EnableTimeout` and `Command`) writes and allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The SMMU does not advertise what the call needs.
    #[error("the SMMU does not support {0}")]
    Unsupported(&'static str),
    /// The configuration asks for something impossible.
    #[error("bad driver configuration: {0}")]
    BadConfig(&'static str),
    /// A StreamID beyond SMMU_IDR1.SIDSIZE.
    #[error("StreamID {sid:#x} is beyond the {sidsize}-bit StreamIDs")]
    SidOutOfRange {
        /// The StreamID.
        sid: u32,
        /// SMMU_IDR1.SIDSIZE.
        sidsize: u8,
    },
    /// A SubstreamID beyond the CD table's size, or 0 (the CD of transactions without one).
    #[error(
        "SubstreamID {ssid:#x} is not usable (CD tables have {ssid_bits} bits, 0 is reserved)"
    )]
    SsidOutOfRange {
        /// The SubstreamID.
        ssid: u32,
        /// The bits of SubstreamID the CD tables cover.
        ssid_bits: u8,
    },
    /// A granule SMMU_IDR5 does not advertise.
    #[error("granule {0:?} is not supported")]
    Granule(Granule),
    /// An input size (T0SZ, S2T0SZ) the SMMU cannot configure.
    #[error("an input size of {bits} bits is not supported here")]
    InputSize {
        /// The bits asked for.
        bits: u8,
    },
    /// No domain has that id.
    #[error("no domain {0:?}")]
    NoSuchDomain(DomainId),
    /// The domain has the wrong stage for the call.
    #[error("domain {domain:?} is not a {expected} domain")]
    WrongStage {
        /// The domain.
        domain: DomainId,
        /// What was needed: "stage-1" or "stage-2".
        expected: &'static str,
    },
    /// The domain is still in use (attached to StreamIDs or bound to PASIDs).
    #[error("domain {domain:?} is in use by StreamIDs {sids:?}")]
    DomainInUse {
        /// The domain.
        domain: DomainId,
        /// The StreamIDs that use it.
        sids: Vec<u32>,
    },
    /// The StreamID has no CD table to bind a PASID in (not attached to stage 1).
    #[error("StreamID {sid:#x} has no CD table")]
    NoCdTable {
        /// The StreamID.
        sid: u32,
    },
    /// The StreamID's configuration does not allow the call (a PASID on a nested stream, an
    /// unbind of a stream that is not nested, ATS on a stream that does not translate).
    #[error("StreamID {sid:#x} is not configured for this ({reason})")]
    WrongStreamConfig {
        /// The StreamID.
        sid: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The PASID is already bound in that CD table.
    #[error("SubstreamID {ssid:#x} of StreamID {sid:#x} is already bound")]
    PasidInUse {
        /// The StreamID.
        sid: u32,
        /// The SubstreamID.
        ssid: u32,
    },
    /// Nothing is bound at that PASID.
    #[error("SubstreamID {ssid:#x} of StreamID {sid:#x} is not bound")]
    PasidNotBound {
        /// The StreamID.
        sid: u32,
        /// The SubstreamID.
        ssid: u32,
    },
    /// An ASID some other context already uses (it would share TLB entries).
    #[error("ASID {0:#x} is already in use")]
    AsidInUse(u16),
    /// Every ASID or VMID is taken.
    #[error("no free {0}")]
    IdsExhausted(&'static str),
    /// A field of a caller-supplied configuration is out of range.
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    /// A map or unmap touching the IPA window the driver reserves in a nesting parent
    /// ([`SmmuDriver::reserved_ipa_window`]).
    #[error("domain {domain:?} reserves IPA [{start:#x}, +{size:#x}) for the driver")]
    ReservedWindow {
        /// The stage-2 domain.
        domain: DomainId,
        /// The window's first IPA.
        start: u64,
        /// The window's size in bytes.
        size: u64,
    },
    /// pgtable refused a map or unmap (bad size, alignment, overlap, ...).
    #[error(transparent)]
    Map(#[from] MapError),
    /// No frames for a table or queue.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A structure could not be written.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// CR0ACK did not follow CR0.
    #[error("SMMU_CR0ACK did not acknowledge {wanted:#x} (reads {ack:#x})")]
    EnableTimeout {
        /// CR0 as written.
        wanted: u32,
        /// CR0ACK as last read.
        ack: u32,
    },
    /// CMD_SYNC did not complete within the poll limit.
    #[error("CMD_SYNC did not complete (PROD {prod:#x}, CONS {cons:#x})")]
    SyncTimeout {
        /// SMMU_CMDQ_PROD as written.
        prod: u32,
        /// SMMU_CMDQ_CONS as last read.
        cons: u32,
    },
    /// The Command queue stopped on a command (GERROR.CMDQ_ERR). The driver replaced it with a
    /// CMD_SYNC and restarted the queue; the commands after it were executed.
    #[error("command {command:?} failed with {error:?}")]
    Command {
        /// SMMU_CMDQ_CONS.ERR.
        error: Result<CError, u8>,
        /// The offending command as it was in the queue.
        command: Command,
    },
    /// A CMD_SYNC failed with CERROR_ATC_INV_SYNC on every try (§3.9.1.4: an ATC invalidation
    /// before it did not complete in time): the driver acknowledged each failure, so the SMMU
    /// consumed the CMD_SYNC again, as Linux's `arm_smmu_cmdq_skip_err` does, and gave up after
    /// [`ATC_SYNC_TRIES`]. A device's ATC may still hold what was invalidated; the CMD_SYNC
    /// stays in the queue and completes if the device answers later.
    #[error("CMD_SYNC failed to complete ATC invalidations {tries} times")]
    AtcInvalidationTimeout {
        /// Tries made.
        tries: u32,
    },
}

/// How many times a CMD_SYNC that fails with CERROR_ATC_INV_SYNC is consumed before the driver
/// reports [`DriverError::AtcInvalidationTimeout`].
pub const ATC_SYNC_TRIES: u32 = 3;

/// What the driver did and saw, since it was made. Nothing it drops goes uncounted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Commands written to the Command queue (CMD_SYNC included).
    pub commands: u64,
    /// CMD_SYNCs issued.
    pub syncs: u64,
    /// Commands the SMMU refused (CERROR).
    pub command_errors: u64,
    /// CMD_SYNCs that did not complete in time.
    pub sync_timeouts: u64,
    /// Event records drained.
    pub events: u64,
    /// Event queue overflows seen (OVFLG toggled): records the SMMU had to discard.
    pub event_overflows: u64,
    /// Page requests drained.
    pub page_requests: u64,
    /// PRI queue overflows seen.
    pub priq_overflows: u64,
    /// CMD_SYNCs that failed with CERROR_ATC_INV_SYNC (each acknowledged and retried, or,
    /// after the last try, reported as [`DriverError::AtcInvalidationTimeout`]).
    pub atc_sync_errors: u64,
}

/// The SMMUv3 driver over registers `R` and memory `M`.
#[derive(Debug)]
pub struct SmmuDriver<R: Mmio, M: PhysMemory> {
    regs: R,
    mem: M,
    frames: FrameAllocator<M::Addr>,
    caps: Capabilities,
    config: DriverConfig,
    /// SubstreamID bits of the CD tables the driver makes.
    ssid_bits: u8,
    cmdq: cmdq::Cmdq,
    eventq: queues::Queue,
    priq: Option<queues::Queue>,
    strtab: stream::StreamTable,
    /// Every StreamID the driver configured; absent ones are Config abort (or have no STE).
    streams: BTreeMap<u32, stream::StreamState>,
    domains: BTreeMap<DomainId, domain::Domain>,
    /// CD tables by their address.
    cd_tables: BTreeMap<u64, cd::CdTable>,
    /// StreamIDs with ATS enabled (STE.EATS = Full).
    ats: BTreeSet<u32>,
    next_domain: u32,
    stats: DriverStats,
}

/// A block the driver allocated directly (tables of its own and queues; pgtable's inner tables
/// are not listed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    /// Start address.
    pub addr: u64,
    /// log2 of the size in bytes.
    pub size_lg2: u8,
}

impl<R: Mmio, M: PhysMemory> SmmuDriver<R, M> {
    /// Probes and brings up the SMMU: reads its ID registers, allocates the Stream table and
    /// the queues from `frames`, programs them, enables the queues and then translation
    /// (CR0 / CR0ACK handshake, §6.3.9), and invalidates every cached structure and TLB.
    pub fn new(
        regs: R,
        mem: M,
        frames: FrameAllocator<M::Addr>,
        config: DriverConfig,
    ) -> Result<Self, DriverError> {
        let caps = Capabilities::read(&regs);
        caps.check_usable()?;
        if config.sync == SyncMode::Msi && !caps.msi {
            return Err(DriverError::Unsupported("MSIs (CMD_SYNC completion by MSI)"));
        }
        let mut frames = frames;
        let strtab = stream::StreamTable::alloc(&mem, &mut frames, &caps, config.stream_table)?;
        let cmdq = cmdq::Cmdq::alloc(&mem, &mut frames, &caps, &config)?;
        let eventq = queues::Queue::alloc(&mem, &mut frames, queues::Kind::Event, &caps, &config)?;
        let priq = if caps.pri {
            Some(queues::Queue::alloc(&mem, &mut frames, queues::Kind::Pri, &caps, &config)?)
        } else {
            None
        };
        let mut this = Self {
            ssid_bits: config.ssid_bits.min(caps.ssidsize),
            regs,
            mem,
            frames,
            caps,
            config,
            cmdq,
            eventq,
            priq,
            strtab,
            streams: BTreeMap::new(),
            domains: BTreeMap::new(),
            cd_tables: BTreeMap::new(),
            ats: BTreeSet::new(),
            next_domain: 1,
            stats: DriverStats::default(),
        };
        this.reset()?;
        Ok(this)
    }

    /// What the SMMU advertises.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The configuration the driver runs with.
    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// The memory the driver writes.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The registers the driver programs.
    pub fn registers(&self) -> &R {
        &self.regs
    }

    /// Bytes the frame allocator has not handed out.
    pub fn free_frame_bytes(&self) -> u64 {
        self.frames.free_bytes()
    }

    /// Every block the driver allocated itself: the Stream table and its level-2 arrays, CD
    /// tables and their level-2 tables, the queues, the MSI word, stage-1/stage-2 root tables.
    pub fn blocks(&self) -> Vec<Block> {
        let mut out = self.strtab.blocks();
        out.extend(self.cmdq.blocks());
        out.push(self.eventq.block());
        out.extend(self.priq.as_ref().map(queues::Queue::block));
        out.extend(self.cd_tables.values().flat_map(cd::CdTable::blocks));
        out.extend(self.domains.values().map(domain::Domain::root_block));
        out.sort_unstable();
        out
    }

    /// §6.3.9, §6.3.10: writes CR0 and waits for CR0ACK to match.
    fn write_cr0(&mut self, value: u32) -> Result<(), DriverError> {
        use crate::spec::regs::{CR0, CR0ACK};
        self.regs.write(CR0.0, 4, u64::from(value));
        let mut ack = 0;
        for _ in 0..self.config.poll_limit.max(1) {
            ack = low32(self.regs.read(CR0ACK.0, 4));
            if ack == value {
                return Ok(());
            }
        }
        Err(DriverError::EnableTimeout { wanted: value, ack })
    }

    /// The bring-up sequence (§6.3.9, §3.5, §4.3.6): disable, program the table and queue
    /// registers, enable the Command queue, invalidate everything the SMMU may have cached,
    /// enable the Event and PRI queues, then translation.
    fn reset(&mut self) -> Result<(), DriverError> {
        use crate::spec::regs::{self, cr0, cr1, cr2};
        // A unit left enabled (by firmware, or an earlier driver) is disabled first.
        if self.cr0() != 0 {
            self.write_cr0(0)?;
        }
        let mut c1 = cr1::QUEUE_IC.set(0, u64::from(attrs::WB));
        c1 = cr1::QUEUE_OC.set(c1, u64::from(attrs::WB));
        c1 = cr1::QUEUE_SH.set(c1, u64::from(attrs::INNER_SHAREABLE));
        c1 = cr1::TABLE_IC.set(c1, u64::from(attrs::WB));
        c1 = cr1::TABLE_OC.set(c1, u64::from(attrs::WB));
        c1 = cr1::TABLE_SH.set(c1, u64::from(attrs::INNER_SHAREABLE));
        self.regs.write(regs::CR1.0, 4, c1);
        // §6.3.12: record C_BAD_STREAMID, so a StreamID without an STE is reported.
        self.regs.write(regs::CR2.0, 4, cr2::RECINVSID.with(0, true));
        let (base, cfg) = self.strtab.registers();
        self.regs.write(regs::STRTAB_BASE.0, 8, base);
        self.regs.write(regs::STRTAB_BASE_CFG.0, 4, cfg);

        self.regs.write(regs::CMDQ_BASE.0, 8, self.cmdq.base_reg());
        self.regs.write(regs::CMDQ_PROD.0, 4, 0);
        self.regs.write(regs::CMDQ_CONS.0, 4, 0);
        let mut en = cr0::CMDQEN.with(0, true);
        self.write_cr0(low32(en))?;
        // §4.3.6, §4.4.4.1: nothing cached from before the driver is trusted.
        let mut cmds = vec![Command::cfgi_all(), Command::new(crate::spec::Opcode::TlbiNsnhAll)];
        if self.caps.hyp {
            cmds.push(Command::new(crate::spec::Opcode::TlbiEl2All));
        }
        self.submit(&cmds)?;

        self.regs.write(regs::EVENTQ_BASE.0, 8, self.eventq.base_reg());
        self.regs.write(regs::EVENTQ_PROD.0, 4, 0);
        self.regs.write(regs::EVENTQ_CONS.0, 4, 0);
        en = cr0::EVENTQEN.with(en, true);
        self.write_cr0(low32(en))?;
        if let Some(q) = &self.priq {
            self.regs.write(regs::PRIQ_BASE.0, 8, q.base_reg());
            self.regs.write(regs::PRIQ_PROD.0, 4, 0);
            self.regs.write(regs::PRIQ_CONS.0, 4, 0);
            en = cr0::PRIQEN.with(en, true);
            self.write_cr0(low32(en))?;
        }
        // The queues run before translation starts, so the first fault has somewhere to go.
        en = cr0::SMMUEN.with(en, true);
        self.write_cr0(low32(en))
    }

    fn cr0(&self) -> u32 {
        low32(self.regs.read(crate::spec::regs::CR0.0, 4))
    }
}

/// Bits 31:0 of a 32-bit register read.
fn low32(v: u64) -> u32 {
    u32::try_from(v & u64::from(u32::MAX)).unwrap_or(u32::MAX)
}

/// Writes `words` little-endian from `addr`.
fn write_words<M: PhysMemory + ?Sized>(
    mem: &M,
    addr: u64,
    words: &[u64],
) -> Result<(), MemoryError> {
    for (i, w) in (0u64..).zip(words) {
        let at = addr.checked_add(8 * i).ok_or(MemoryError::Outside { addr, len: 8 })?;
        mem.write_u64(M::Addr::new(at), *w)?;
    }
    Ok(())
}

/// Reads `N` words from `addr`.
fn read_words<M: PhysMemory + ?Sized, const N: usize>(
    mem: &M,
    addr: u64,
) -> Result<[u64; N], MemoryError> {
    let mut out = [0u64; N];
    for (i, w) in (0u64..).zip(out.iter_mut()) {
        let at = addr.checked_add(8 * i).ok_or(MemoryError::Outside { addr, len: 8 })?;
        *w = mem.read_u64(M::Addr::new(at))?;
    }
    Ok(out)
}

/// Cacheability and shareability encodings of SMMU_CR1 and the STE/CD walk attributes
/// (§6.3.11, §5.2 S1CIR/S2IR0, §5.4 IR0): the driver asks for write-back, inner shareable.
mod attrs {
    /// 0b01: Write-Back cacheable, read/write-allocate.
    pub const WB: u8 = 0b01;
    /// 0b11: Inner Shareable.
    pub const INNER_SHAREABLE: u8 = 0b11;
    /// MAIR Attr0 for Normal memory, Inner/Outer Write-Back non-transient, read/write
    /// allocate (Arm ARM D19.2 MAIR_EL1.Attr<n>, 0b1111_1111): what every leaf the driver maps
    /// uses (pgtable maps with AttrIndx 0).
    pub const MAIR_NORMAL_WB: u64 = 0b1111_1111;
}

//! The VT-d hardware model: one DMA-remapping unit as software and devices see it.
//!
//! Its inputs are the hardware's only: MMIO accesses ([`Vtd::mmio_read`], [`Vtd::mmio_write`]),
//! the host memory it reads root, context and PASID structures and page tables from, and DMA
//! requests ([`Vtd::translate`]). No driver hands it a Rust struct: a driver writes tables into
//! memory and registers through MMIO, as it would on the silicon.
//!
//! | module | what |
//! |---|---|
//! | `regs` | §11.4 register file: reset values, read-only and write-1-to-clear fields, the GCMD/GSTS handshake |
//! | `translate` | §3.4–§3.8 the request path: root, context, PASID directory and table, then the walks |
//! | `fetch` | §3.8 nested: every first-stage table read translated by the second stage |
//! | `reasons` | pgtable faults onto fault reasons (§7.1.3, Appendix A): the one table to review |
//! | `cache` | §6.2 context, PASID, IOTLB, paging-structure and second-stage leaf caches |
//! | `inval` | §6.5.1 register-based and §6.5.2 queued invalidation: the queue, every descriptor; the [`Forward`] hook a virtual VT-d forwards through |
//! | `record` | §7.2 fault recording registers and the fault event |
//! | `ats` | §4.2 ATS: translation requests ([`Vtd::translation_request`]) and translated requests ([`Vtd::translated_request`]) |
//! | `prq` | §7.5–§7.7 page requests ([`Vtd::page_request`]): the page request queue, overflow, auto-responses, the page request event |
//!
//! Outputs that are not memory writes (interrupt messages, messages to devices) go to a bounded
//! outbox the embedder drains ([`Vtd::drain_outputs`], [`Output`]): interrupt messages
//! coalesce per source, and a device message that finds it full waits where it was made.
//!
//! Every fault [`Vtd::translate`] returns is also recorded in the fault recording registers
//! (unless its FPD says not to), and raises the fault event. The recoverable path (§7.5) is the
//! device's: a translation request that fails gets a completion with no access
//! ([`TranslationCompletion::NoAccess`], nothing recorded), the device sends a page request
//! that lands in the page request queue, software answers with a page group response descriptor
//! that the unit forwards to the device ([`Output::PageGroupResponse`]), and the device retries.
//! Everything the unit refuses or drops on that path is counted ([`Vtd::ats_stats`]).
//!
//! Device-TLB invalidations complete at once unless [`VtdParams::ats`] says the devices answer
//! late or never: then a wait descriptor waits for them, a time-out latches ITE and an
//! unexpected completion ICE (`inval`).
//!
//! Not modelled at all: interrupt remapping (the interrupt entry cache invalidation is accepted
//! and has nothing to invalidate), advanced fault logging (deprecated), fault compression.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sviommu_memory::{Hpa, Mmio, Outbox, PhysMemory};
pub use sviommu_pgtable::{Access, Perms};
use sviommu_tlb::Deferred;
pub use sviommu_tlb::{Apply, AtsCompletion, AtsPolicy, AtsTrackerStats, DeferredStats, Profile};

use crate::spec::regs::{cap, ecap, ver};
use crate::spec::{AddressType, Aw, FaultReason, PageGroupResponse, RequestType};

mod ats;
mod cache;
mod inval;
mod prq;
mod reasons;
mod record;
mod regs;
mod sanitize;
mod translate;

pub use ats::{AtsTranslation, TranslationCompletion, TranslationRequest};
pub use cache::{CacheGeometry, CacheParams, VtdCacheStats};
pub use inval::{Context, EntryLookup, Forward, FoundPasid};
pub use prq::{AtsStats, PageRequestMsg, PageRequestOutcome};
pub use sanitize::Missing;
pub use sviommu_tlb::sanitize::{Origin, SanitizerStats, Word};

/// What the invalidation sanitizer reports (strict profile): a cache answered from an entry
/// built from a word that has changed, and the command the driver owed (see
/// [`Vtd::violations`]).
pub type Violation = sviommu_tlb::sanitize::Violation<Missing>;
pub use sviommu_memory::OutboxStats;

/// What the unit is: its capability registers, its host address width and its version. The
/// model honours what these advertise (an AW outside SAGAW is an invalid entry, PGTT nested
/// needs ECAP.NEST, and so on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdParams {
    /// CAP_REG (§11.4.2).
    pub cap: u64,
    /// ECAP_REG (§11.4.3).
    pub ecap: u64,
    /// Host address width in bits (the ACPI DMAR table's HAW + 1), 12 to 52: pointer and
    /// address bits at and above it are reserved.
    pub haw: u8,
    /// VER_REG (§11.4.1).
    pub ver: u32,
    /// The sizes of the unit's caches.
    pub caches: CacheParams,
    /// IMPDEF: how many device messages (device-TLB invalidations, page group responses) the
    /// unit holds until the embedder delivers them ([`Vtd::drain_outputs`]); interrupt
    /// messages coalesce and need no room.
    pub outbox_capacity: usize,
    /// How strictly the unit holds its driver to the invalidation rules (§6.5): forgiving
    /// (each invalidation takes effect when the queue reads it; a page-selective IOTLB
    /// invalidation removes every nested translation of the domain) or strict (each takes
    /// effect when the next invalidation wait descriptor completes, and a page-selective one
    /// removes nested translations only by their guest physical page).
    pub profile: Profile,
    /// How the devices answer device-TLB invalidations and how long the unit waits
    /// (`inval`): at once by default; late or never to raise ITE (§6.5.2.10), in ticks of the
    /// unit's clock ([`Vtd::tick`], and one per register read).
    pub ats: AtsPolicy,
}

/// Device messages the default unit holds before its queue waits (IMPDEF).
pub const DEFAULT_OUTBOX_CAPACITY: usize = 64;

/// Byte offset of the first fault recording register the default unit places (CAP.FRO).
// IMPDEF: FRO and IRO are the implementation's; these leave room after the fixed registers.
const DEFAULT_FRCD_OFFSET: u64 = 0x400;
/// Fault recording registers of the default unit (CAP.NFR + 1).
const DEFAULT_FRCD_COUNT: u64 = 8;
/// Byte offset of the IOTLB registers the default unit places (ECAP.IRO).
const DEFAULT_IOTLB_OFFSET: u64 = 0x500;

impl Default for VtdParams {
    /// A unit supporting every mode the model has: legacy and scalable mode; second-stage
    /// 39/48/57-bit AGAW with 2M and 1G pages; 4- and 5-level first stage with 1G pages;
    /// nested and pass-through; 20-bit PASIDs, RID_PASID and RID_PRIV; supervisor and execute
    /// requests; second-stage A/D; snoop control and coherent page walks; 2^16 domain IDs.
    ///
    /// Queued invalidation with 256-bit descriptors, page-selective invalidation up to 2^18
    /// pages (MAMV); the caches of [`CacheParams::default`]. Device-TLBs (DT: translation and
    /// translated requests), page requests (PRS) and page request draining (PDS). Caching mode
    /// is off (a vIOMMU turns it on). An outbox of [`DEFAULT_OUTBOX_CAPACITY`] device messages.
    fn default() -> Self {
        let sagaw = Aw::Bits39.sagaw_bit() | Aw::Bits48.sagaw_bit() | Aw::Bits57.sagaw_bit();
        let mut c = 0;
        c = cap::ND.set(c, 6);
        c = cap::SAGAW.set(c, sagaw);
        c = cap::MGAW.set(c, 57 - 1);
        c = cap::FRO.set(c, DEFAULT_FRCD_OFFSET / 16);
        c = cap::NFR.set(c, DEFAULT_FRCD_COUNT - 1);
        c = cap::SSLPS.set(c, cap::SSLPS_2M | cap::SSLPS_1G);
        c = cap::FS1GP.with(c, true);
        c = cap::FS5LP.with(c, true);
        c = cap::PSI.with(c, true);
        // IMPDEF: up to 2^18 pages (1G) in one page-selective invalidation.
        c = cap::MAMV.set(c, 18);

        let mut e = 0;
        e = ecap::C.with(e, true);
        e = ecap::QI.with(e, true);
        e = ecap::DT.with(e, true);
        e = ecap::PT.with(e, true);
        e = ecap::SC.with(e, true);
        e = ecap::IRO.set(e, DEFAULT_IOTLB_OFFSET / 16);
        e = ecap::NEST.with(e, true);
        e = ecap::PRS.with(e, true);
        e = ecap::ERS.with(e, true);
        e = ecap::SRS.with(e, true);
        e = ecap::PSS.set(e, u64::from(crate::spec::pasid::PASID_BITS) - 1);
        e = ecap::PASID.with(e, true);
        // The model writes page requests synchronously, so a drain has nothing to wait for.
        e = ecap::PDS.with(e, true);
        e = ecap::SMTS.with(e, true);
        e = ecap::SSADS.with(e, true);
        e = ecap::SSTS.with(e, true);
        e = ecap::FSTS.with(e, true);
        e = ecap::SMPWCS.with(e, true);
        e = ecap::RPS.with(e, true);
        e = ecap::RPRIVS.with(e, true);

        // IMPDEF: version 1.0, what most units report.
        let v = ver::MIN.set(ver::MAX.set(0, 1), 0);
        Self {
            cap: c,
            ecap: e,
            haw: 52,
            ver: u32::try_from(v).unwrap_or_default(),
            caches: CacheParams::default(),
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
            profile: Profile::Forgiving,
            ats: AtsPolicy::default(),
        }
    }
}

/// A DMA request as it arrives at the unit: untranslated ([`Vtd::translate`]) or, from a device
/// with a device-TLB, translated ([`Vtd::translated_request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmaRequest {
    /// Requester ID: bus in bits 15:8, device and function (devfn) in bits 7:0.
    pub rid: u16,
    /// The PASID of the request's PASID TLP prefix, if it has one.
    pub pasid: Option<u32>,
    /// The input address.
    pub addr: u64,
    /// Write or read; execute and privileged come from the PASID prefix (ER, PMR), so the unit
    /// ignores them on a request without PASID.
    pub access: Access,
}

impl DmaRequest {
    /// A request without PASID.
    #[must_use]
    pub const fn new(rid: u16, addr: u64, access: Access) -> Self {
        Self { rid, pasid: None, addr, access }
    }

    /// The same request with a PASID prefix.
    #[must_use]
    pub const fn with_pasid(self, pasid: u32) -> Self {
        Self { pasid: Some(pasid), ..self }
    }
}

/// A request the unit let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The output (host physical) address of the request's address.
    pub output: u64,
    /// Size of the page the translation holds for. IMPDEF: 4K when nothing was walked
    /// (pass-through, translation disabled, interrupt requests).
    pub page_lg2: u8,
    /// What this translation allows, after the PASID-table entry's SRE and ERE.
    pub perms: Perms,
    /// Memory reads it cost: each root, context, PASID-directory and PASID-table entry read
    /// (one each, fetched whole) and every page-table entry read of both stages.
    pub reads: u32,
    /// §3.14: the request was a request without PASID to the interrupt address range
    /// (FEEx_xxxxh). It is an interrupt request, not DMA: it was not remapped, and goes to the
    /// platform's interrupt controller at `output` (interrupt remapping is not modelled).
    pub interrupt: bool,
}

/// A request the unit blocked, with its architected reason. `Copy`: the hot path never
/// allocates for a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The fault reason (FR) the unit records.
    pub reason: FaultReason,
    /// Requester ID of the request.
    pub rid: u16,
    /// The request's PASID, if it had one (not RID_PASID).
    pub pasid: Option<u32>,
    /// The request's input address.
    pub addr: u64,
    /// The request's access.
    pub access: Access,
    /// Fault processing is disabled for this fault: the FPD bit of a context, PASID-directory
    /// or PASID-table entry the request used was set (each is evaluated even when the entry is
    /// not present). Faults found while reading an entry (access errors) are not covered by
    /// that entry's FPD, which could not be read. Such a fault is not recorded (§7.2).
    pub fpd: bool,
    /// What kind of request faulted: the record's AT and T2/T1 fields.
    pub kind: RequestKind,
}

/// The kinds of request the unit takes from a device (§4.1, §7.5): what a fault record's AT
/// and T2/T1 fields say about the faulted request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// An untranslated read or write (AT = 00b).
    #[default]
    Untranslated,
    /// An ATS translation request (AT = 01b).
    TranslationRequest,
    /// A translated read or write, from a device's TLB (AT = 10b).
    Translated,
    /// A page request message (T2 = 1, T1 = 0).
    PageRequest,
}

impl RequestKind {
    /// The AT field of a fault record for this kind (a page request has none: 00b).
    #[must_use]
    pub const fn address_type(self) -> AddressType {
        match self {
            Self::Untranslated | Self::PageRequest => AddressType::Untranslated,
            Self::TranslationRequest => AddressType::TranslationRequest,
            Self::Translated => AddressType::Translated,
        }
    }

    /// The T2/T1 request type of a fault record for this kind and a write (`write`) or read.
    #[must_use]
    pub const fn request_type(self, write: bool) -> RequestType {
        match self {
            Self::PageRequest => RequestType::PageRequest,
            // A translation request is a read of the translation, whatever it asks for.
            Self::TranslationRequest => RequestType::Read,
            Self::Untranslated | Self::Translated if write => RequestType::Write,
            Self::Untranslated | Self::Translated => RequestType::Read,
        }
    }
}

/// Where an interrupt message comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsiSource {
    /// The invalidation completion event (§6.5.2.9, IECTL/IEDATA/IEADDR/IEUADDR): a wait
    /// descriptor with IF completed.
    InvalidationCompletion,
    /// The fault event (§7.2, FECTL/FEDATA/FEADDR/FEUADDR): a fault recorded, an overflow, an
    /// invalidation queue error.
    Fault,
    /// The page request event (§7.6, PECTL/PEDATA/PEADDR/PEUADDR): a page request written to
    /// the page request queue (PRS.PPR) or dropped by its overflow (PRS.PRO).
    PageRequest,
}

/// A device-TLB invalidation the unit sends to a device: an ATS Invalidate Request (PCIe
/// §10.3.1), from a device-TLB (§6.5.2.5) or PASID-based device-TLB (§6.5.2.6) descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevTlbInvalidation {
    /// The device (SID).
    pub sid: u16,
    /// Its SR-IOV physical function (PFSID).
    pub pfsid: u16,
    /// The PASID the invalidation is for (PASID-based descriptors), or `None`.
    pub pasid: Option<u32>,
    /// PASID-based: the device's global translations go too, for every PASID (G).
    pub global: bool,
    /// First byte of the range.
    pub addr: u64,
    /// log2 of the range's size (12 for one page; 64 for everything).
    pub size_lg2: u8,
    /// The device's maximum outstanding invalidations (MIP), as the descriptor gave it.
    pub mip: u8,
}

/// What the unit sends that is not a memory write. The embedder drains these with
/// [`Vtd::drain_outputs`], in the order the unit produced them, and delivers them: MSIs to the
/// interrupt controller, messages to the devices they name.
///
/// The outbox is bounded ([`VtdParams::outbox_capacity`]): an interrupt message is pending at
/// most once per [`MsiSource`] (a repeat is counted in [`Vtd::outbox_stats`]), and a device
/// message that finds it full waits where it was made: the invalidation queue stops at its
/// descriptor (`inval`), a page request that may need an answer is not taken (`prq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// An interrupt message: a 32-bit write of `data` to `addr`, from the event registers of
    /// `source`.
    Msi {
        /// Which event.
        source: MsiSource,
        /// The message address (the upper and lower address registers).
        addr: u64,
        /// The message data (the data register).
        data: u32,
    },
    /// An invalidation for a device's TLB. With [`AtsCompletion::Immediate`] (the default)
    /// the model treats it as completed when it is put here; otherwise a wait descriptor
    /// behind it waits for the device's completion, which arrives as [`VtdParams::ats`] says
    /// or when the embedder sends it ([`Vtd::invalidation_completion`]), and times out (ITE).
    DevTlbInvalidation(DevTlbInvalidation),
    /// A page group response (§7.7.1) for the device its RID names: as software queued it, or
    /// one the unit made itself for a page request it could not queue (`prq`).
    PageGroupResponse(PageGroupResponse),
}

/// One VT-d remapping unit over host memory `M`.
///
/// `Send + Sync`: [`translate`](Self::translate) takes `&self` and reads the latched root-table
/// pointer and the enable bits from atomics, so many threads may translate while another
/// programs registers.
pub struct Vtd<M: PhysMemory<Addr = Hpa>> {
    mem: M,
    params: VtdParams,
    /// The stored registers (MMIO is not the hot path; a write holds this lock).
    regs: Mutex<regs::RegFile>,
    /// GSTS_REG: what translate reads of it, lock-free.
    gsts: AtomicU32,
    /// The root-table pointer and TTM latched by the last SRTP (§11.4.4, §11.4.6).
    root: AtomicU64,
    /// Context, PASID, IOTLB, paging-structure and leaf caches.
    caches: cache::Caches,
    /// Invalidations read and not yet carried out (strict profile only).
    deferred: Deferred<cache::Caches>,
    /// What the sanitizer found (strict profile only).
    violations: sviommu_tlb::sanitize::ViolationLog<Missing>,
    /// Outputs that are not memory writes, until the embedder drains them.
    outbox: Outbox<Output, MsiSource>,
    /// What the ATS and page request paths refused, dropped or answered by themselves.
    ats_counters: prq::Counters,
    /// Where legal invalidation descriptors are forwarded (a virtual VT-d's host), if anywhere.
    forward: Option<Arc<dyn Forward>>,
    /// Invalidation descriptors carried out, by type code (§6.5.2: 7-bit types; 0 to 9 used).
    descriptors: [AtomicU64; 16],
}

impl<M: PhysMemory<Addr = Hpa>> Vtd<M> {
    /// A unit out of reset over `mem`. `params.haw` is clamped to 12..=52, what an address field
    /// can hold.
    pub fn new(mem: M, params: VtdParams) -> Self {
        let params = VtdParams { haw: params.haw.clamp(12, 52), ..params };
        let sslps = cap::SSLPS.get(params.cap);
        let ss = (sslps & cap::SSLPS_2M != 0, sslps & cap::SSLPS_1G != 0);
        // x86 first-stage paging always has 2M pages; 1G with CAP.FS1GP.
        let fs = ecap::FSTS.is_set(params.ecap) && ecap::SMTS.is_set(params.ecap);
        let large = (ss.0 || fs, ss.1 || (fs && cap::FS1GP.is_set(params.cap)));
        Self {
            mem,
            params,
            regs: Mutex::new(regs::RegFile::reset(
                usize::try_from(cap::nfr_count(params.cap)).unwrap_or(1),
                params.ats,
            )),
            gsts: AtomicU32::new(0),
            root: AtomicU64::new(0),
            caches: cache::Caches::new(&params.caches, large, ss, params.profile.is_strict()),
            deferred: Deferred::new(params.profile),
            violations: sviommu_tlb::sanitize::ViolationLog::default(),
            outbox: Outbox::new(params.outbox_capacity),
            ats_counters: prq::Counters::default(),
            forward: None,
            descriptors: Default::default(),
        }
    }

    /// The same unit, forwarding every legal descriptor its invalidation queue processes to
    /// `hook` (see [`Forward`]).
    #[must_use]
    pub fn with_forward(mut self, hook: Arc<dyn Forward>) -> Self {
        self.forward = Some(hook);
        self
    }

    /// Takes every output the unit has produced since the last call, oldest first: the
    /// devices and the interrupt controller have taken them. If the invalidation queue was
    /// waiting for room, it goes on now (`inval`), so the outbox may hold new outputs when
    /// this returns.
    pub fn drain_outputs(&self) -> Vec<Output> {
        let (out, waiting) = self.outbox.drain();
        if waiting {
            let mut regs = self.lock_regs();
            self.run_queue(&mut regs);
        }
        out
    }

    /// What the outbox has sent, coalesced and waited for so far.
    pub fn outbox_stats(&self) -> OutboxStats {
        self.outbox.stats()
    }

    /// What each cache has done so far.
    pub fn cache_stats(&self) -> VtdCacheStats {
        self.caches.stats()
    }

    /// What the strict profile held back, and when it let each invalidation take effect.
    pub fn deferred_stats(&self) -> DeferredStats {
        self.deferred.stats()
    }

    /// The invalidation sanitizer's reports since the last call, oldest first (strict profile;
    /// always empty in forgiving). The queue holds
    /// [`VIOLATION_QUEUE`](sviommu_tlb::sanitize::VIOLATION_QUEUE); more are counted as
    /// dropped in [`sanitizer_stats`](Self::sanitizer_stats).
    pub fn violations(&self) -> Vec<Violation> {
        self.violations.drain()
    }

    /// Violations found and dropped, and the words the sanitizer re-read (not counted as any
    /// translation's table reads).
    pub fn sanitizer_stats(&self) -> SanitizerStats {
        self.violations.stats()
    }

    /// Invalidation descriptors the queue has carried out so far, by type (every type, zeros
    /// included; a descriptor refused with IQE is not counted).
    pub fn invalidation_stats(&self) -> Vec<(crate::spec::DescriptorType, u64)> {
        crate::spec::DescriptorType::ALL
            .iter()
            .map(|&t| {
                let n = self
                    .descriptors
                    .get(usize::from(t as u8))
                    .map_or(0, |c| c.load(Ordering::Relaxed));
                (t, n)
            })
            .collect()
    }

    /// Sends the interrupt message of `source`, `data` to `addr`: coalesced with one still
    /// pending.
    fn send_msi(&self, source: MsiSource, addr: u64, data: u32) {
        self.outbox.interrupt(source, Output::Msi { source, addr, data });
    }

    /// Sends a device message if the outbox has room; `false` if it is full (the caller
    /// waits, and is resumed by the next drain).
    fn send_message(&self, o: Output) -> bool {
        self.outbox.message(o).is_ok()
    }

    /// Whether CAP.CM is set: not-present entries may be cached.
    fn caching_mode(&self) -> bool {
        cap::CM.is_set(self.params.cap)
    }

    /// The unit's parameters (HAW clamped as [`new`](Self::new) says).
    pub fn params(&self) -> &VtdParams {
        &self.params
    }

    /// The memory the unit reads.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The one place a fault is made: recorded (FRCD, FSTS, the fault event, `record`) unless
    /// fault processing is disabled for it.
    fn fault(&self, req: &DmaRequest, kind: RequestKind, reason: FaultReason, fpd: bool) -> Fault {
        let f = Self::fault_of(req, kind, reason, fpd);
        if !fpd {
            self.record(&f);
        }
        f
    }

    /// The fault `req` of `kind` gets for `reason`, not yet recorded.
    fn fault_of(req: &DmaRequest, kind: RequestKind, reason: FaultReason, fpd: bool) -> Fault {
        Fault {
            reason,
            rid: req.rid,
            pasid: req.pasid,
            addr: req.addr,
            access: req.access,
            fpd,
            kind,
        }
    }

    /// The register file, locked (MMIO, the queue, fault recording).
    fn lock_regs(&self) -> std::sync::MutexGuard<'_, regs::RegFile> {
        self.regs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn gsts(&self) -> u64 {
        u64::from(self.gsts.load(Ordering::Acquire))
    }
}

/// A driver's way to the unit: its register page (`regs`: [`Vtd::mmio_read`],
/// [`Vtd::mmio_write`]).
impl<M: PhysMemory<Addr = Hpa>> Mmio for Vtd<M> {
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.mmio_read(offset, size)
    }

    fn write(&self, offset: u64, size: u8, value: u64) {
        self.mmio_write(offset, size, value);
    }
}

impl<M: PhysMemory<Addr = Hpa>> fmt::Debug for Vtd<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vtd")
            .field("params", &self.params)
            .field("gsts", &format_args!("{:#x}", self.gsts()))
            .field("root", &format_args!("{:#x}", self.root.load(Ordering::Acquire)))
            .finish_non_exhaustive()
    }
}

//! The SMMUv3 hardware model: one SMMU's Non-secure programming interface as software and
//! devices see it (Arm IHI 0070 G.b).
//!
//! Its inputs are the hardware's only: register accesses ([`Smmu::mmio_read`],
//! [`Smmu::mmio_write`]), the host memory it reads the Stream table, CD tables and translation
//! tables from, and transactions ([`Smmu::translate`]). No driver hands it a Rust struct: a driver
//! writes structures into memory and registers through MMIO, as it would on the silicon.
//!
//! | module | what |
//! |---|---|
//! | `mmio` | §6.2, §6.3 the register file: ID registers, CR0/CR0ACK, GBPA, GERROR/GERRORN, STRTAB_BASE(_CFG), queue registers as storage |
//! | `stream` | §3.3.1, §5.1, §5.2: linear and two-level Stream tables, the STE and its validity (§5.2.2) |
//! | `context` | §3.3.2, §5.3, §5.4: linear and two-level CD tables, substreams, the CD and its validity (§5.4.2) |
//! | `translate` | §3.3, §3.4: the transaction path, bypass, stage 1, stage 2 and nested walks |
//! | `fetch` | nested: every stage-1 table read translated by stage 2, remembering read or write |
//! | `events` | pgtable faults onto event numbers, S2 and CLASS (§7.3): the one table to review |
//! | `cache` | §16.2: STE and CD caches, TLB, stage-1/stage-2 walk caches, stage-2 leaf cache; the epochs |
//! | `cmdq` | §3.5, §4, §7.1: the Command queue, every Non-secure command, CMD_SYNC, CERROR |
//! | `eventq` | §3.5, §7.2, §7.4: the Event queue, overflow, EVENTQ_ABT_ERR, its interrupt; [`QueueStats`] |
//! | `pri` | §3.9.1, §8: ATS Translation Requests ([`Smmu::translation_request`]), the PRI queue ([`Smmu::page_request`]), auto-responses |
//! | `stall` | §3.12.2, §4.7.1, §4.7.2: the stall model, the table of stalled transactions, CMD_RESUME, CMD_STALL_TERM |
//! | `translated` | §3.9.1.3: ATS Translated transactions ([`Transaction::translated`]) and SMMU_CR0.ATSCHK |
//!
//! `translate` returns every event as data, and every termination passes through one function
//! (`Smmu::report`), which writes the recorded ones to the Event queue and turns a fault whose
//! stage is configured to stall (CD.S, STE.S2S) into a stalled transaction
//! ([`Abort::Stalled`]); its outcome reaches the device later as
//! [`Output::StallResolved`]. A global error becoming active raises the GERROR interrupt (an
//! MSI from SMMU_GERROR_IRQ_CFG0/1, or [`Output::GerrorIrq`]); E_PAGE_REQUEST hints arrive
//! through [`Smmu::page_in_hint`].
//!
//! IMPDEF: MSIs are [`Output`]s, not memory writes, so they never abort:
//! GERROR.MSI_*_ABT_ERR are never activated.
//!
//! DEVIATION: not modelled at all: memory types and attributes (MAIR, MemAttr, SHCFG,
//! ALLOCCFG, GBPA's attribute fields, so also STE.S2PTW's Device-memory check), Secure and
//! Realm state, EL2/EL3 StreamWorlds (SMMU_IDR0.HYP is not advertised), VMSAv8-32 LPAE and
//! VMSAv9-128 tables, big-endian tables, FEAT_LPA2 (DS), small translation tables (STT),
//! FEAT_HAFT, permission indirection and overlays, MPAM, DPT, event merging (never merged, as
//! permitted) and the IMPLEMENTATION DEFINED Reason fields (zero).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sviommu_memory::{Hpa, Outbox, PhysMemory};
use sviommu_pgtable::vmsa::Oa52;
pub use sviommu_pgtable::{Access, Perms};
use sviommu_tlb::Deferred;
pub use sviommu_tlb::{Apply, AtsCompletion, AtsPolicy, AtsTrackerStats, DeferredStats, Profile};

use crate::spec::regs::{aidr, idr0, idr1, idr3, idr5, StallModel};
use crate::spec::{address_size_bits, CError, Class, Command, EventId, EventRecord, Granule, Ste};

mod cache;
mod cmdq;
mod context;
mod eventq;
mod events;
mod mmio;
mod pri;
mod sanitize;

pub use cache::{CacheSizes, SmmuCacheStats};
pub use sanitize::Missing;
pub use sviommu_tlb::sanitize::{Origin, SanitizerStats, Word};

/// What the invalidation sanitizer reports (strict profile): a cache answered from an entry
/// built from a word that has changed, and the command the driver owed (see
/// [`Smmu::violations`]).
pub type Violation = sviommu_tlb::sanitize::Violation<Missing>;
pub use eventq::QueueStats;
pub use pri::{AtsResult, AtsTranslation};
pub use stall::{PageInHint, StallResult};
pub use sviommu_memory::OutboxStats;
mod stall;
mod stream;
mod translate;
mod translated;

/// What the SMMU is: the ID register values it advertises, and the IMPLEMENTATION DEFINED
/// reset state. The model honours what these advertise (a Config needing an unadvertised
/// stage, a granule not in SMMU_IDR5, a second-level CD table without CD2L are ILLEGAL, and so
/// on). Advertising a feature the model does not have (see [`SmmuParams::default`]) does not
/// make it appear: such settings are outside the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuParams {
    /// SMMU_IDR0 (§6.3.1).
    pub idr0: u32,
    /// SMMU_IDR1 (§6.3.2).
    pub idr1: u32,
    /// SMMU_IDR3 (§6.3.4).
    pub idr3: u32,
    /// SMMU_IDR5 (§6.3.6).
    pub idr5: u32,
    /// SMMU_IIDR (§6.3.7).
    pub iidr: u32,
    /// SMMU_AIDR (§6.3.8).
    pub aidr: u32,
    /// SMMU_GBPA.ABORT out of reset (§6.3.14: IMPLEMENTATION DEFINED; 1 is a default-deny
    /// policy).
    pub gbpa_abort_at_reset: bool,
    /// IMPDEF: the sizes of the configuration caches, the TLB and the walk caches.
    pub caches: CacheSizes,
    /// IMPDEF: how many device messages (ATC invalidations, PRG responses, stall responses,
    /// CMD_SYNC MSI writes) the SMMU holds until the embedder delivers them
    /// ([`Smmu::drain_outputs`]); interrupts coalesce and need no room.
    pub outbox_capacity: usize,
    /// How strictly the SMMU holds its driver to the invalidation rules: forgiving (each
    /// CFGI / TLBI takes effect when consumed; TG and TTL are ignored) or strict (each takes
    /// effect when the next CMD_SYNC completes, §3.21, and a TLBI removes only the TG granule
    /// and TTL level it names, §4.4.1.1).
    pub profile: Profile,
    /// How the devices answer CMD_ATC_INV and how long the SMMU waits (`cmdq`): at once by
    /// default; late or never to make a CMD_SYNC wait or fail with CERROR_ATC_INV_SYNC
    /// (§3.9.1.4), in ticks of the SMMU's clock ([`Smmu::tick`], and one per register read).
    pub ats: AtsPolicy,
}

/// Device messages the default SMMU holds before its Command queue waits (IMPDEF).
pub const DEFAULT_OUTBOX_CAPACITY: usize = 64;

/// 16-bit StreamIDs: the default SMMU's SIDSIZE.
const DEFAULT_SIDSIZE: u64 = 16;
/// 20-bit SubstreamIDs (PCIe PASIDs): the default SMMU's SSIDSIZE.
const DEFAULT_SSIDSIZE: u64 = 20;
/// IMPDEF: the default SMMU holds up to 64 stalled transactions (SMMU_IDR5.STALL_MAX).
pub const DEFAULT_STALL_MAX: u16 = 64;

impl Default for SmmuParams {
    /// An SMMUv3.1 with everything the model does: stage 1 and stage 2 (VMSAv8-64 only,
    /// little-endian tables), linear and two-level Stream tables, two-level CD tables,
    /// 16-bit StreamIDs, 20-bit SubstreamIDs, 16-bit ASIDs and VMIDs, hardware Access flag and
    /// dirty state (HTTU 0b10), hierarchical attribute disables, the 4K/16K/64K granules, a
    /// 52-bit OAS (FEAT_LPA with the 64K granule) and 52-bit VAs with the 64K granule (VAX),
    /// attribute overrides of PRIVCFG/INSTCFG, both the stall and the terminate fault models
    /// (SMMU_IDR0.STALL_MODEL == 0b00) with up to [`DEFAULT_STALL_MAX`] stalled transactions,
    /// terminated transactions always aborted (TERM_MODEL == 1), coherent table walks.
    ///
    /// Command and Event queues of up to 2^19 entries, range invalidations (SMMU_IDR3.RIL) and
    /// stage 2's EL0/EL1 execute-never (SMMU_IDR3.XNX).
    /// An outbox of [`DEFAULT_OUTBOX_CAPACITY`] device messages.
    ///
    /// Not advertised until the steps that model them: ATS, PRI, MSIs, SEV, broadcast TLB
    /// maintenance, VMID wildcards, hypervisor (EL2) StreamWorlds, and the PRI queue size
    /// (PRIQS is 0). (A test may advertise MSI, SEV, ATS or
    /// PRI: the Command queue then produces their [`Output`]s.) Never: Secure state, VMSAv8-32 LPAE, VMSAv9-128,
    /// FEAT_LPA2 (IDR5.DS), small translation tables (STT), MPAM, RME, DPT, permission
    /// indirection and overlays, memory-type overrides (ATTR_TYPES_OVR).
    fn default() -> Self {
        let mut i0 = 0;
        i0 = idr0::S2P.with(i0, true);
        i0 = idr0::S1P.with(i0, true);
        i0 = idr0::TTF.set(i0, 0b10); // VMSAv8-64 only
        i0 = idr0::COHACC.with(i0, true);
        i0 = idr0::HTTU.set(i0, 0b10); // Access flag and dirty state
        i0 = idr0::ASID16.with(i0, true);
        i0 = idr0::VMID16.with(i0, true);
        i0 = idr0::CD2L.with(i0, true);
        i0 = idr0::TTENDIAN.set(i0, 0b10); // little-endian tables only
        i0 = idr0::STALL_MODEL.set(i0, StallModel::StallAndTerminate as u64);
        i0 = idr0::TERM_MODEL.with(i0, true); // terminated transactions always abort
        i0 = idr0::ST_LEVEL.set(i0, 0b01); // two-level Stream tables

        let mut i1 = 0;
        i1 = idr1::SIDSIZE.set(i1, DEFAULT_SIDSIZE);
        i1 = idr1::SSIDSIZE.set(i1, DEFAULT_SSIDSIZE);
        i1 = idr1::ATTR_PERMS_OVR.with(i1, true);
        // IMPDEF: the largest Command and Event queues (2^19 entries).
        i1 = idr1::CMDQS.set(i1, 19);
        i1 = idr1::EVENTQS.set(i1, 19);

        // Range invalidation and TTL hints (§4.4.1.1); XNX, which SMMUv3.1 requires with stage
        // 2 (§6.3.4).
        let i3 = idr3::XNX.with(idr3::RIL.with(idr3::HAD.with(0, true), true), true);

        let mut i5 = 0;
        i5 = idr5::OAS.set(i5, 0b110); // 52 bits
        i5 = idr5::GRAN4K.with(i5, true);
        i5 = idr5::GRAN16K.with(i5, true);
        i5 = idr5::GRAN64K.with(i5, true);
        i5 = idr5::VAX.set(i5, 0b01); // 52-bit VAs (64K granule)
        i5 = idr5::STALL_MAX.set(i5, u64::from(DEFAULT_STALL_MAX));

        // SMMUv3.1: 52-bit addresses; out-of-range S2T0SZ/TxSZ, S1ContextPtr and L2Ptr values
        // are ILLEGAL rather than CONSTRAINED UNPREDICTABLE (§5.2.2, §5.4.2, §3.4.3).
        let a = aidr::ARCHMINORREV.set(0, 1);

        Self {
            idr0: low32(i0),
            idr1: low32(i1),
            idr3: low32(i3),
            idr5: low32(i5),
            // IMPDEF: no JEP106 implementer code, product or revision.
            iidr: 0,
            aidr: low32(a),
            // IMPDEF: bypass out of reset, as QEMU's SMMU does.
            gbpa_abort_at_reset: false,
            caches: CacheSizes::default(),
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
            profile: Profile::Forgiving,
            ats: AtsPolicy::default(),
        }
    }
}

impl SmmuParams {
    /// The same SMMU with a different output address size in bits (32, 36, 40, 42, 44, 48 or
    /// 52; anything else keeps the current one). SMMU_IDR5.VAX follows: 52-bit VAs only with a
    /// 52-bit OAS.
    #[must_use]
    pub fn with_oas_bits(self, bits: u8) -> Self {
        let Some(enc) = (0u64..=6).find(|&e| address_size_bits(e) == Ok(bits)) else {
            return self;
        };
        let mut i5 = u64::from(self.idr5);
        i5 = idr5::OAS.set(i5, enc);
        i5 = idr5::VAX.set(i5, u64::from(bits == 52));
        Self { idr5: low32(i5), ..self }
    }

    /// The same SMMU with another fault model (SMMU_IDR0.STALL_MODEL, §3.12): stall and
    /// terminate, terminate only, or stall forced. SMMU_IDR5.STALL_MAX follows: RES0 without
    /// the stall model, [`DEFAULT_STALL_MAX`] if it was 0.
    #[must_use]
    pub fn with_stall_model(self, model: StallModel) -> Self {
        let i0 = idr0::STALL_MODEL.set(u64::from(self.idr0), model as u64);
        let mut i5 = u64::from(self.idr5);
        if model == StallModel::TerminateOnly {
            i5 = idr5::STALL_MAX.set(i5, 0);
        } else if idr5::STALL_MAX.get(i5) == 0 {
            i5 = idr5::STALL_MAX.set(i5, u64::from(DEFAULT_STALL_MAX));
        }
        Self { idr0: low32(i0), idr5: low32(i5), ..self }
    }

    /// The same SMMU holding at most `n` stalled transactions (SMMU_IDR5.STALL_MAX, §6.3.6;
    /// IMPDEF, ignored with the terminate-only model).
    #[must_use]
    pub fn with_stall_max(self, n: u16) -> Self {
        let i5 = idr5::STALL_MAX.set(u64::from(self.idr5), u64::from(n));
        Self { idr5: low32(i5), ..self }
    }
}

/// Bits 31:0 of a 32-bit register value built in a `u64` (the register fields fit).
fn low32(v: u64) -> u32 {
    u32::try_from(v & u64::from(u32::MAX)).unwrap_or(u32::MAX)
}

/// What the model reads out of the ID registers, decoded once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Caps {
    s1p: bool,
    s2p: bool,
    /// SMMU_IDR0.TTF[1]: VMSAv8-64 tables.
    aa64: bool,
    httu: u64,
    hyp: bool,
    ats: bool,
    ns1ats: bool,
    pri: bool,
    msi: bool,
    sev: bool,
    btm: bool,
    vmw: bool,
    asid16: bool,
    vmid16: bool,
    cd2l: bool,
    two_level_st: bool,
    ttendian: u64,
    stall_model: u64,
    /// SMMU_IDR5.STALL_MAX: the size of the stalled-transaction table (0 without stalls).
    stall_max: u16,
    term_model: bool,
    sidsize: u8,
    ssidsize: u8,
    attr_perms_ovr: bool,
    had: bool,
    /// SMMU_IDR3.RIL: range invalidations.
    ril: bool,
    /// SMMU_IDR3.XNX: stage 2's `XN[1:0]` tells EL0 from EL1 execution.
    xnx: bool,
    /// OAS in bits (also the IAS: there is no VMSAv8-32 LPAE, §3.4).
    oas_bits: u8,
    /// The 3-bit encoding of `oas_bits`, the cap of CD.IPS and STE.S2PS.
    oas_enc: u8,
    oa52: Oa52,
    /// 52-bit VAs with the 64K granule.
    vax52: bool,
    gran4k: bool,
    gran16k: bool,
    gran64k: bool,
}

impl Caps {
    fn new(p: &SmmuParams) -> Self {
        let (i0, i1, i3, i5) =
            (u64::from(p.idr0), u64::from(p.idr1), u64::from(p.idr3), u64::from(p.idr5));
        // IMPDEF: the model implements at most a 52-bit OAS (no VMSAv9-128); a larger or
        // Reserved IDR5.OAS is taken as 52.
        let oas_enc = idr5::OAS.get(i5).min(0b110);
        let oas_bits = address_size_bits(oas_enc).unwrap_or(52);
        let field_u8 = |v: u64| u8::try_from(v).unwrap_or(u8::MAX);
        Self {
            s1p: idr0::S1P.is_set(i0),
            s2p: idr0::S2P.is_set(i0),
            aa64: idr0::TTF.get(i0) & 0b10 != 0,
            httu: idr0::HTTU.get(i0),
            hyp: idr0::HYP.is_set(i0),
            ats: idr0::ATS.is_set(i0),
            ns1ats: idr0::NS1ATS.is_set(i0),
            pri: idr0::PRI.is_set(i0),
            msi: idr0::MSI.is_set(i0),
            sev: idr0::SEV.is_set(i0),
            btm: idr0::BTM.is_set(i0),
            vmw: idr0::VMW.is_set(i0),
            asid16: idr0::ASID16.is_set(i0),
            vmid16: idr0::VMID16.is_set(i0),
            cd2l: idr0::CD2L.is_set(i0),
            two_level_st: idr0::ST_LEVEL.get(i0) != 0,
            ttendian: idr0::TTENDIAN.get(i0),
            stall_model: idr0::STALL_MODEL.get(i0),
            stall_max: if idr0::STALL_MODEL.get(i0) == StallModel::TerminateOnly as u64 {
                0
            } else {
                u16::try_from(idr5::STALL_MAX.get(i5)).unwrap_or(u16::MAX)
            },
            term_model: idr0::TERM_MODEL.is_set(i0),
            // §6.3.2: SIDSIZE is at most 32, SSIDSIZE at most 20.
            sidsize: field_u8(idr1::SIDSIZE.get(i1)).min(32),
            ssidsize: field_u8(idr1::SSIDSIZE.get(i1)).min(20),
            attr_perms_ovr: idr1::ATTR_PERMS_OVR.is_set(i1),
            had: idr3::HAD.is_set(i3),
            ril: idr3::RIL.is_set(i3),
            xnx: idr3::XNX.is_set(i3),
            oas_bits,
            oas_enc: field_u8(oas_enc),
            oa52: if oas_bits == 52 { Oa52::Lpa } else { Oa52::Off },
            // IMPDEF: pgtable takes 52-bit inputs with the 64K granule only together with
            // FEAT_LPA, so VAX is honoured only with a 52-bit OAS.
            vax52: idr5::VAX.get(i5) == 0b01 && oas_bits == 52,
            gran4k: idr5::GRAN4K.is_set(i5),
            gran16k: idr5::GRAN16K.is_set(i5),
            gran64k: idr5::GRAN64K.is_set(i5),
        }
    }

    /// Whether SMMU_IDR5 advertises the granule.
    fn granule(&self, g: Granule) -> bool {
        match g {
            Granule::Size4K => self.gran4k,
            Granule::Size16K => self.gran16k,
            Granule::Size64K => self.gran64k,
        }
    }
}

/// A transaction as it arrives at the SMMU from a client device: Untranslated, or an ATS
/// Translated transaction (`translated`). ATS Translation Requests are
/// [`Smmu::translation_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transaction {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID, if the transaction has one (SSV == 1; a PCIe PASID).
    pub ssid: Option<u32>,
    /// The 64-bit input address.
    pub addr: u64,
    /// Write or read, instruction or data, privileged or not, before the STE's PRIVCFG and
    /// INSTCFG overrides. A write is always data (§13.1.2).
    pub access: Access,
    /// An ATS Translated transaction (PCIe AT == 0b10): `addr` is what an earlier Translation
    /// Completion returned (§3.9.1.3).
    pub translated: bool,
}

impl Transaction {
    /// A transaction without a SubstreamID.
    #[must_use]
    pub const fn new(sid: u32, addr: u64, access: Access) -> Self {
        Self { sid, ssid: None, addr, access, translated: false }
    }

    /// An ATS Translated transaction without a PASID.
    #[must_use]
    pub const fn translated(sid: u32, addr: u64, access: Access) -> Self {
        Self { sid, ssid: None, addr, access, translated: true }
    }

    /// The same transaction with a SubstreamID.
    #[must_use]
    pub const fn with_ssid(self, ssid: u32) -> Self {
        Self { ssid: Some(ssid), ..self }
    }
}

/// A transaction the SMMU let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// The output (physical) address of the transaction's address.
    pub output: u64,
    /// Size of the page or block the translation holds for (the smaller of the two stages').
    /// IMPDEF: 4K when nothing was walked (bypass).
    pub page_lg2: u8,
    /// What this translation allows (both stages together; everything when bypassing).
    pub perms: Perms,
    /// Memory reads it cost: each L1STD, STE, L1CD and CD read (one each; a CD or L1CD fetch
    /// through stage 2 also costs that stage-2 walk) and every translation table entry read of
    /// both stages.
    pub reads: u32,
}

/// An architected event (§7.3) as data: what the Event queue record of `id` carries. `Copy`:
/// the hot path never allocates for a fault.
///
/// The struct has every field any record has; [`EventId::layout`] says which ones `id`'s record
/// has, and [`Event::to_record`] writes only those. Fields a record does not have are `None` or
/// `false` here, except `ssid`, `addr` and the attributes, which are always the transaction's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// The event number.
    pub id: EventId,
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (SSV == 1), as the transaction had it; C_BAD_SUBSTREAMID carries the
    /// SubstreamID whose CD was looked for (0 for a transaction without one, §7.3.9).
    pub ssid: Option<u32>,
    /// InputAddr: the transaction's 64-bit address, unmodified (§7.3).
    pub addr: u64,
    /// RnW: the transaction was a read.
    pub rnw: bool,
    /// PnU: privileged, after the STE.PRIVCFG override.
    pub pnu: bool,
    /// InD: instruction, after the STE.INSTCFG override (always 0 for a write).
    pub ind: bool,
    /// S2: the fault happened at stage 2.
    pub s2: bool,
    /// CLASS: which access faulted, for the events whose record has the field.
    pub class: Option<Class>,
    /// TTRnW (F_PERMISSION with CLASS == TT): the stage-1 table access stage 2 refused was a
    /// read (true) or a write (an Access flag or dirty state update).
    pub ttrnw: bool,
    /// IPA of a stage-2 fault: the CD or L1CD address (CLASS == CD), the stage-1 descriptor
    /// address (CLASS == TT), or the IPA being translated (CLASS == IN).
    pub ipa: Option<u64>,
    /// FetchAddr: the physical address whose fetch aborted (F_STE_FETCH, F_CD_FETCH,
    /// F_WALK_EABT).
    pub fetch_addr: Option<u64>,
    /// Whether the SMMU records this event in the Event queue: CD.R for stage-1
    /// Translation-related faults, STE.S2R for stage-2 ones (§5.5), SMMU_CR2.RECINVSID for
    /// C_BAD_STREAMID (§7.3.3); always otherwise. The transaction is terminated either way,
    /// unless it stalls: a stall is always recorded (§5.5 S).
    pub record: bool,
    /// STAG, with Stall == 1 in the record: the transaction is stalled, and CMD_RESUME with this
    /// StreamID and STAG resolves it (§3.12.2). `None` for a terminated transaction.
    pub stag: Option<u16>,
}

impl Event {
    /// An event of `id` for transaction `t` with effective attributes `access`, every
    /// event-specific field empty.
    fn new(id: EventId, t: &Transaction, access: Access) -> Self {
        let write = access.write;
        Self {
            id,
            sid: t.sid,
            ssid: t.ssid,
            addr: t.addr,
            rnw: !write,
            pnu: access.privileged,
            // §7.3: InD == 0 when RnW == 0.
            ind: access.exec && !write,
            s2: false,
            class: None,
            ttrnw: false,
            ipa: None,
            fetch_addr: None,
            record: true,
            stag: None,
        }
    }

    /// The 32-byte Event queue record (§7.3), with the fields `id`'s record has.
    #[must_use]
    pub fn to_record(&self) -> EventRecord {
        let mut rec = EventRecord::new(self.id);
        for field in self.id.layout() {
            match field.name {
                "SSV" => rec.set_ssv(self.ssid.is_some()),
                "SubstreamID" => rec.set_ssid(self.ssid.unwrap_or(0)),
                "StreamID" => rec.set_sid(self.sid),
                "PnU" => rec.set_pnu(self.pnu),
                "InD" => rec.set_ind(self.ind),
                "RnW" => rec.set_rnw(self.rnw),
                "S2" => rec.set_s2(self.s2),
                "CLASS" => {
                    if let Some(c) = self.class {
                        rec.set_class(c);
                    }
                }
                "TTRnW" => rec.set_ttrnw(self.ttrnw),
                "InputAddr" => rec.set_input_addr(self.addr),
                "IPA" => rec.set_ipa(self.ipa.unwrap_or(0)),
                "FetchAddr" => rec.set_fetch_addr(self.fetch_addr.unwrap_or(0)),
                "STAG" => rec.set_stag(self.stag.unwrap_or(0)),
                "Stall" => rec.set_stall(self.stag.is_some()),
                // Reason, GPCF, NSIPA: zero in this model (no IMPDEF reasons, no GPC,
                // Non-secure only).
                _ => {}
            }
        }
        rec
    }
}

/// Why a transaction did not complete: terminated with an architected event, terminated where
/// the architecture records nothing, or stalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Abort {
    /// Terminated with an abort and the event (recorded when [`Event::record`]).
    Event(Event),
    /// Terminated with an abort, no event recorded.
    Silent(Silent),
    /// Not terminated: stalled (§3.12.2), the event (with its STAG) recorded. No response
    /// goes to the device until software resolves the stall; the device then receives
    /// [`Output::StallResolved`] with the same StreamID and STAG.
    Stalled(Event),
}

impl Abort {
    /// The event, if the termination has one.
    #[must_use]
    pub fn event(&self) -> Option<&Event> {
        match self {
            Abort::Event(e) | Abort::Stalled(e) => Some(e),
            Abort::Silent(_) => None,
        }
    }

    /// The event number, if the termination has one.
    #[must_use]
    pub fn id(&self) -> Option<EventId> {
        self.event().map(|e| e.id)
    }
}

/// The terminations that record no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Silent {
    /// SMMU_CR0.SMMUEN == 0 and SMMU_GBPA.ABORT == 1 (§6.3.14).
    GbpaAbort,
    /// SMMU_CR0.SMMUEN == 0, bypassing, and the address exceeds the OAS (§3.4).
    DisabledBeyondOas,
    /// STE.Config == 0b000, or a Reserved 0b0xx that behaves as it (§5.2 Config).
    SteAbort,
}

/// What the SMMU sends that is not a memory write of its own structures: the embedder drains
/// these with [`Smmu::drain_outputs`] and delivers them.
///
/// The outbox is bounded ([`SmmuParams::outbox_capacity`]). An interrupt (a queue's or
/// GERROR's MSI or wired interrupt, the wired CMD_SYNC interrupt, SEV) is pending at most once
/// per source, a repeat counted in [`Smmu::outbox_stats`]. Every other output is a device
/// message, never dropped: one that finds the outbox full waits where it was made (the Command
/// queue at its command, a page request at the port, a stall response in its STAG).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// An MSI: a 32-bit write of `data` to `addr` (CMD_SYNC with CS == SIG_IRQ and a non-zero
    /// MSIAddress, §4.7.3; a queue interrupt from its IRQ_CFG0/1, §3.18).
    Msi {
        /// The doorbell address (`MSIAddress[55:2]`, in place).
        addr: u64,
        /// The payload.
        data: u32,
    },
    /// The wired CMD_SYNC completion interrupt (CS == SIG_IRQ without SMMU_IDR0.MSI).
    CmdSyncIrq,
    /// The wired Event queue interrupt (§3.18; without SMMU_IDR0.MSI).
    EventqIrq,
    /// The wired PRI queue interrupt (§3.18; without SMMU_IDR0.MSI).
    PriqIrq,
    /// The wired global error interrupt (§7.5.1; without SMMU_IDR0.MSI).
    GerrorIrq,
    /// The response to a stalled transaction, once software resolved it (CMD_RESUME,
    /// CMD_STALL_TERM, SMMUEN cleared) or a retry completed it (§3.12.2).
    StallResolved {
        /// The transaction's StreamID.
        sid: u32,
        /// The STAG [`Abort::Stalled`] carried.
        stag: u16,
        /// What the device gets.
        result: StallResult,
    },
    /// A WFE wake-up event (CMD_SYNC with CS == SIG_SEV and SMMU_IDR0.SEV).
    Sev,
    /// An ATS Invalidate Request to the device's ATC (CMD_ATC_INV, §4.5.1). IMPDEF: the
    /// device's completion is assumed, so CMD_SYNC never raises CERROR_ATC_INV_SYNC
    /// (§3.9.1.4).
    AtcInvalidate {
        /// The device's StreamID.
        sid: u32,
        /// The PASID, when SSV == 1.
        ssid: Option<u32>,
        /// Global: every PASID's global entries too.
        global: bool,
        /// The address, `Address[63:12]` in place.
        addr: u64,
        /// The span is 4K << `size_lg2` bytes, aligned; 52 is everything.
        size_lg2: u8,
    },
    /// A PRG Response message to the device (CMD_PRI_RESP, §4.5.2, §8.3).
    PriResponse {
        /// The device's StreamID.
        sid: u32,
        /// The PASID, when SSV == 1.
        ssid: Option<u32>,
        /// The Page Request Group index.
        prg_index: u16,
        /// The PCIe Response Code.
        response_code: u8,
    },
}

/// The SMMU's interrupt sources: at most one interrupt of each is pending in the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Irq {
    /// The Event queue's MSI or wired interrupt.
    Eventq,
    /// The PRI queue's MSI or wired interrupt.
    Priq,
    /// The GERROR MSI or wired interrupt.
    Gerror,
    /// The wired CMD_SYNC completion interrupt.
    CmdSync,
    /// The WFE wake-up event.
    Sev,
}

/// Where the hardware acts on a command it has checked, besides its own caches: the hook a
/// virtual SMMU forwards its guest's commands through (`sviommu-viommu`). The model calls it
/// for every legal command the Command queue consumes, after its own checks and effects and
/// before CONS moves past the command, so a CMD_SYNC behind it completes only after the hook
/// returned (the forwarding is synchronous). The register file is held during the call: the
/// hook reaches the model only through `streams`.
pub trait Forward: Send + Sync {
    /// Acts on `cmd`. `streams` reads a StreamID's STE as a transaction would. An error stops
    /// the Command queue with that CERROR at the command (§7.1), as the model's own checks do.
    fn command(&self, cmd: &Command, streams: &mut dyn StreamLookup) -> Result<(), CError>;
}

/// A StreamID's STE, fetched and checked as a transaction's is (§5.2.2), for a [`Forward`]
/// hook.
pub trait StreamLookup {
    /// The valid STE of `sid`, or how a transaction of `sid` would end (the event recorded in
    /// the Event queue as the transaction path records it: C_BAD_STE, F_STE_FETCH, ...; or the
    /// silent abort of Config abort).
    fn ste(&mut self, sid: u32) -> Result<Ste, Abort>;
}

/// One SMMUv3 over host memory `M`.
///
/// `Send + Sync`: [`translate`](Self::translate) takes `&self` and reads the enable bits, GBPA
/// and the Stream table registers from atomics, so many threads may translate while another
/// programs registers. Several SMMUs may exist side by side; nothing is global.
pub struct Smmu<M: PhysMemory<Addr = Hpa>> {
    mem: M,
    params: SmmuParams,
    caps: Caps,
    /// The register file (MMIO is not the hot path; an access holds this lock).
    regs: Mutex<mmio::RegFile>,
    /// SMMU_CR0ACK: what translate reads of it, lock-free.
    cr0ack: AtomicU32,
    /// SMMU_CR2, lock-free (RECINVSID).
    cr2: AtomicU32,
    /// SMMU_GBPA, lock-free.
    gbpa: AtomicU32,
    /// SMMU_STRTAB_BASE, lock-free.
    strtab_base: AtomicU64,
    /// SMMU_STRTAB_BASE_CFG, lock-free.
    strtab_base_cfg: AtomicU32,
    /// The configuration caches, TLB and walk caches.
    caches: cache::Caches,
    /// What the embedder drains: MMIO side, and the fault path (queue interrupts).
    outbox: Outbox<Output, Irq>,
    /// What the Event and PRI queues wrote, discarded and lost, and what became of stalls.
    counters: eventq::Counters,
    /// The stalled transactions, by STAG (taken after `regs` when both are held).
    stalls: Mutex<stall::Table>,
    /// Where legal commands are forwarded (a virtual SMMU's host), if anywhere.
    forward: Option<Arc<dyn Forward>>,
    /// Commands the Command queue consumed, by opcode (§4: 8-bit opcodes).
    commands: [AtomicU64; 256],
    /// Invalidations consumed and not yet carried out (strict profile only).
    deferred: Deferred<cache::Caches>,
    /// What the sanitizer found (strict profile only).
    violations: sviommu_tlb::sanitize::ViolationLog<Missing>,
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// An SMMU out of reset over `mem`: disabled (SMMUEN == 0), so transactions follow GBPA.
    pub fn new(mem: M, params: SmmuParams) -> Self {
        let caps = Caps::new(&params);
        let regs = mmio::RegFile::reset(&params);
        let gbpa = regs.gbpa;
        Self {
            mem,
            params,
            caps,
            regs: Mutex::new(regs),
            cr0ack: AtomicU32::new(0),
            cr2: AtomicU32::new(0),
            gbpa: AtomicU32::new(gbpa),
            strtab_base: AtomicU64::new(0),
            strtab_base_cfg: AtomicU32::new(0),
            caches: cache::Caches::new(&params.caches, params.profile.is_strict()),
            violations: sviommu_tlb::sanitize::ViolationLog::default(),
            outbox: Outbox::new(params.outbox_capacity),
            counters: eventq::Counters::default(),
            stalls: Mutex::new(stall::Table::default()),
            forward: None,
            commands: [const { AtomicU64::new(0) }; 256],
            deferred: Deferred::new(params.profile),
        }
    }

    /// The same SMMU, forwarding every legal command it consumes to `hook` (see [`Forward`]).
    #[must_use]
    pub fn with_forward(mut self, hook: Arc<dyn Forward>) -> Self {
        self.forward = Some(hook);
        self
    }

    /// Takes everything the SMMU has sent since the last call, oldest first: the devices and
    /// the interrupt controller have taken them. What waited for room goes on now (stall
    /// responses, stalls to retry, the Command queue), so the outbox may hold new outputs when
    /// this returns.
    pub fn drain_outputs(&self) -> Vec<Output> {
        let (out, waiting) = self.outbox.drain();
        if waiting {
            let mut r = self.lock();
            self.send_stall_responses();
            self.retry_unrecorded_stalls(&mut r);
            self.process_cmdq(&mut r);
        }
        out
    }

    /// What the outbox has sent, coalesced and waited for so far.
    pub fn outbox_stats(&self) -> OutboxStats {
        self.outbox.stats()
    }

    /// Sends interrupt `o` of `source`: coalesced with one still pending.
    fn interrupt(&self, source: Irq, o: Output) {
        self.outbox.interrupt(source, o);
    }

    /// Whether the outbox has room for a device message now (it stays there while the
    /// register file is held).
    fn room_for_message(&self) -> bool {
        self.outbox.room() > 0
    }

    /// Sends a device message if the outbox has room; `false` if it is full (the caller
    /// waits, and goes on at the next drain). Every caller holds the register file, so room
    /// it has seen stays there.
    fn message(&self, o: Output) -> bool {
        self.outbox.message(o).is_ok()
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

    /// What the strict profile held back, and when it let each invalidation take effect.
    pub fn deferred_stats(&self) -> DeferredStats {
        self.deferred.stats()
    }

    /// What each cache has done so far.
    pub fn cache_stats(&self) -> SmmuCacheStats {
        self.caches.stats()
    }

    /// Commands the Command queue has consumed so far, by opcode (every opcode, zeros
    /// included; a command that raised CERROR is not counted).
    pub fn command_stats(&self) -> Vec<(crate::spec::Opcode, u64)> {
        crate::spec::Opcode::ALL
            .iter()
            .map(|&op| {
                let n = self
                    .commands
                    .get(usize::from(op as u8))
                    .map_or(0, |c| c.load(Ordering::Relaxed));
                (op, n)
            })
            .collect()
    }

    /// The SMMU's parameters.
    pub fn params(&self) -> &SmmuParams {
        &self.params
    }

    /// The memory the SMMU reads.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The one place every termination passes: a recorded event goes to the Event queue
    /// (§7.2; `eventq`), a fault configured to stall becomes a stalled transaction (`stall`).
    fn report(&self, t: &Transaction, abort: Abort) -> Abort {
        match abort {
            Abort::Event(e) if !e.record => abort,
            Abort::Silent(_) => abort,
            Abort::Event(_) | Abort::Stalled(_) => {
                let mut r = self.lock();
                self.report_locked(&mut r, t, abort)
            }
        }
    }

    /// [`report`](Self::report) with the register file held.
    fn report_locked(&self, r: &mut mmio::RegFile, t: &Transaction, abort: Abort) -> Abort {
        match abort {
            Abort::Event(e) if e.record => {
                self.record_locked(r, &e.to_record(), false);
                abort
            }
            Abort::Stalled(e) => self.stall_locked(r, t, e, None),
            Abort::Event(_) | Abort::Silent(_) => abort,
        }
    }

    fn cr0ack(&self) -> u64 {
        u64::from(self.cr0ack.load(Ordering::Acquire))
    }
}

impl<M: PhysMemory<Addr = Hpa>> fmt::Debug for Smmu<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smmu")
            .field("params", &self.params)
            .field("cr0ack", &format_args!("{:#x}", self.cr0ack()))
            .field("gbpa", &format_args!("{:#x}", self.gbpa.load(Ordering::Acquire)))
            .field("strtab_base", &format_args!("{:#x}", self.strtab_base.load(Ordering::Acquire)))
            .field(
                "strtab_base_cfg",
                &format_args!("{:#x}", self.strtab_base_cfg.load(Ordering::Acquire)),
            )
            .field("forward", &self.forward.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use sviommu_memory::HostMemory;

    use super::*;

    #[test]
    fn the_model_is_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Smmu<HostMemory>>();
        send_sync::<Smmu<&HostMemory>>();
    }

    #[test]
    fn default_params_decode_to_what_the_model_does() {
        let c = Caps::new(&SmmuParams::default());
        assert!(c.s1p && c.s2p && c.aa64 && c.cd2l && c.two_level_st && c.asid16 && c.vmid16);
        assert_eq!((c.sidsize, c.ssidsize, c.oas_bits, c.oas_enc), (16, 20, 52, 0b110));
        assert_eq!((c.httu, c.ttendian, c.stall_model, c.stall_max), (0b10, 0b10, 0b00, 64));
        let t = Caps::new(&SmmuParams::default().with_stall_model(StallModel::TerminateOnly));
        assert_eq!((t.stall_model, t.stall_max), (0b01, 0));
        let f = Caps::new(&t_params_forced());
        assert_eq!((f.stall_model, f.stall_max), (0b10, 64));
        assert!(c.term_model && c.had && c.vax52 && c.attr_perms_ovr);
        assert!(!c.ats && !c.pri && !c.msi && !c.hyp);
        let c48 = Caps::new(&SmmuParams::default().with_oas_bits(48));
        assert_eq!((c48.oas_bits, c48.oa52, c48.vax52), (48, Oa52::Off, false));
    }

    fn t_params_forced() -> SmmuParams {
        SmmuParams::default()
            .with_stall_model(StallModel::TerminateOnly)
            .with_stall_model(StallModel::StallForced)
    }

    #[test]
    fn event_records_carry_only_their_layouts_fields() {
        let t = Transaction::new(7, 0xdead_b000, Access::WRITE).with_ssid(3);
        let mut e = Event::new(EventId::FStreamDisabled, &t, Access::WRITE);
        e.ipa = Some(0x1000);
        let r = e.to_record();
        assert_eq!((r.id(), r.sid(), r.ssv(), r.input_addr(), r.ipa()), (Ok(e.id), 7, false, 0, 0));
        let mut e = Event::new(EventId::FPermission, &t, Access::WRITE);
        e.s2 = true;
        e.class = Some(Class::Tt);
        e.ipa = Some(0x4000_1000);
        let r = e.to_record();
        assert_eq!(
            (r.ssv(), r.ssid(), r.input_addr(), r.ipa()),
            (true, 3, 0xdead_b000, 0x4000_1000)
        );
        assert_eq!((r.s2(), r.class(), r.rnw()), (true, Ok(Class::Tt), false));
    }
}

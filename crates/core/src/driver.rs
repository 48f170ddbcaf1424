//! The one interface through which the core drives an IOMMU unit.
//!
//! Everything that differs between VT-d and SMMUv3 sits behind [`IommuDriver`]; its two
//! implementations are the thin adapters in [`crate::arch`] over each crate's `driver` module.
//! The trait speaks the core's language (stages, domains, PASIDs, the request IDs a unit sees)
//! and differences come back as data: which request IDs a bind reached, which stage-1 formats a
//! unit runs, whether it can take a whole guest PASID table.

use std::ops::Range;

use serde::Serialize;
pub use sviommu_pgtable::Mapped;

use crate::pasid_alloc::Pasid;

/// The IOMMU architecture a unit implements, and so the model a guest's configuration must be
/// written for (the seed's "model" field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// Intel VT-d.
    Vtd,
    /// Arm SMMUv3.
    Smmuv3,
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vtd => "Intel VT-d",
            Self::Smmuv3 => "Arm SMMUv3",
        })
    }
}

/// A page-table format a stage-1 (guest- or process-owned) table can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage1Format {
    /// x86-64 paging, 4 or 5 levels (VT-d first stage, an x86 process).
    X86 {
        /// 4 or 5.
        levels: u8,
    },
    /// VMSAv8-64 stage 1 through TTB0 (an SMMUv3 CD, an Arm process).
    Vmsa {
        /// Translation granule, log2 bytes: 12, 14 or 16.
        granule_lg2: u8,
        /// Input address bits (64 - T0SZ).
        ias_bits: u8,
    },
}

impl Stage1Format {
    /// The architecture whose stage 1 this is.
    pub const fn model(self) -> Model {
        match self {
            Self::X86 { .. } => Model::Vtd,
            Self::Vmsa { .. } => Model::Smmuv3,
        }
    }
}

/// A stage-1 table that someone else owns: a guest's (its root is a guest physical address,
/// translated by the parent's stage 2) or a process's (its root is host physical).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Stage1Config {
    /// How the table is written.
    pub format: Stage1Format,
    /// The root table's address.
    pub root: u64,
    /// The address-space tag the table's owner uses (a process's or guest's ASID on Arm; VT-d
    /// tags first-stage entries by domain and PASID and ignores it).
    pub asid: u16,
}

/// How a guest's whole PASID table is laid out (the seed's `bind_pasid_table` config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasidTableFormat {
    /// A VT-d scalable-mode PASID directory and tables.
    VtdScalable,
    /// An SMMUv3 linear CD table (STE.S1Fmt = linear).
    SmmuLinear,
    /// An SMMUv3 two-level CD table with 4K or 64K leaf tables (S1Fmt = 4K / 64K L2).
    SmmuTwoLevel {
        /// log2 of the leaf table's bytes: 12 or 16.
        leaf_lg2: u8,
    },
}

impl PasidTableFormat {
    /// The architecture whose table this is.
    pub const fn model(self) -> Model {
        match self {
            Self::VtdScalable => Model::Vtd,
            Self::SmmuLinear | Self::SmmuTwoLevel { .. } => Model::Smmuv3,
        }
    }
}

/// The seed's `PasidTableConfig`: a guest's whole PASID (CD) table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct PasidTableConfig {
    /// The architecture the guest wrote the table for.
    pub model: Model,
    /// Guest physical address of the table (or of its first level).
    pub base: u64,
    /// How many PASIDs the table covers, log2 (SMMUv3 S1CDMax).
    pub pasid_bits: u8,
    /// Its layout.
    pub format: PasidTableFormat,
}

/// What a unit can do, as its driver read it from the unit's capability registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitCaps {
    /// Its architecture.
    pub model: Model,
    /// Page sizes the core's paging domains can map, one bit per log2 size.
    pub page_sizes: u64,
    /// Input address bits of a paging domain.
    pub ias_bits: u8,
    /// Output (host physical) address bits.
    pub oas_bits: u8,
    /// PASID (SubstreamID) bits the unit takes; 0 without PASID support.
    pub pasid_bits: u8,
    /// Stage 1 over stage 2.
    pub nesting: bool,
    /// Requests may bypass translation (identity domains).
    pub identity: bool,
    /// Stage-1 formats the unit walks.
    pub stage1_formats: Vec<Stage1Format>,
    /// A guest's whole PASID table can be handed to the unit (SMMUv3: a nested STE's CD
    /// table pointer; never on VT-d scalable mode, whose PASID tables live in host memory).
    pub pasid_table_bind: bool,
    /// Recoverable faults: page requests (PRI) reach the driver.
    pub page_requests: bool,
    /// A nested domain can translate requests without PASID (VT-d scalable mode: the
    /// RID_PASID entry with PGTT nested, §9.6). SMMUv3 nests a device's requests without
    /// SubstreamID only with the guest's whole CD table (`bind_pasid_table`).
    pub rid_nesting: bool,
    /// A device's PASIDs are bound in the PASID (CD) table of the domain its requests without
    /// PASID are attached to (SMMUv3 with one CD table per domain), so a change of that domain
    /// must carry them into the new domain's table (the core does), and a device with PASIDs
    /// cannot leave for a domain without a table.
    pub pasid_table_follows_domain: bool,
}

impl UnitCaps {
    /// Whether `format` is one this unit walks.
    pub fn runs(&self, format: Stage1Format) -> bool {
        self.stage1_formats.contains(&format)
    }
}

/// A domain as the driver knows it: the handle of its hardware state (tables, DID/ASID/VMID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct HwDomain(pub u32);

/// What the driver is asked to point a device's requests (with one PASID, or without) at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwTarget {
    /// Nothing: every request faults.
    Blocked,
    /// Untranslated (pass-through / bypass).
    Identity,
    /// A paging domain the driver built.
    Paging(HwDomain),
    /// A stage 1 someone else owns over a paging parent's stage 2.
    Nested {
        /// The nested domain's own tag (from [`IommuDriver::alloc_tag`]).
        tag: HwDomain,
        /// The stage-2 parent.
        parent: HwDomain,
        /// The guest's stage 1.
        s1: Stage1Config,
    },
    /// A process's CPU page table, used directly (shared virtual addressing).
    Sva {
        /// The SVA domain's tag (from [`IommuDriver::alloc_tag`]).
        tag: HwDomain,
        /// The process's page table.
        s1: Stage1Config,
    },
}

/// The request IDs a unit sees one device's requests under: on VT-d its Requester IDs (its own
/// and its DMA aliases); on SMMUv3 its StreamIDs.
pub type RequestIds = [u32];

/// The request IDs a driver call reached beyond those it named, as the hardware sees it (an
/// SMMUv3 CD table shared by every device of a domain).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Every request ID whose translation the call changed.
    pub request_ids: Vec<u32>,
}

/// Which caches a guest invalidation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    /// The unit's TLB (stage-1 entries of the address space).
    Iotlb,
    /// Devices' TLBs (ATS).
    DevIotlb,
    /// The unit's PASID / CD cache.
    Pasid,
}

/// One invalidation the core hands the driver, after checking it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwInvalidation {
    /// Which cache.
    pub cache: CacheKind,
    /// The domain whose tags it selects (the nested or SVA domain's hardware tag).
    pub domain: HwDomain,
    /// The PASID, when it selects one.
    pub pasid: Option<Pasid>,
    /// The address range, when it selects one.
    pub range: Option<Range<u64>>,
    /// Only leaf entries changed (the walk caches may stay).
    pub leaf: bool,
    /// The guest's own tag for its tables (its ASID on SMMUv3), when it named one.
    pub arch_id: Option<u32>,
    /// The request IDs of the devices behind it (for device-TLB and PASID-cache invalidation).
    pub request_ids: Vec<u32>,
}

/// Read, write: what a DMA asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DmaAccess {
    /// A read.
    Read,
    /// A write.
    Write,
}

/// A request the unit blocked, as data: the architecture's own name and code for the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FaultReason {
    /// The architected code (VT-d fault reason, SMMUv3 event type).
    pub code: u16,
    /// Its name in the spec (`"DMA remapping: first-stage entry not present"`, `"F_TRANSLATION"`).
    pub name: &'static str,
}

/// Why a DMA the audit issued reached no memory. Only [`DmaFault::Fault`] has an architected
/// code: the others say what happened instead of inventing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DmaFault {
    /// The unit faulted the request with an architected reason (recorded unless the
    /// configuration says not to).
    Fault(FaultReason),
    /// The unit terminated the request where the architecture defines no fault record (SMMUv3:
    /// STE.Config abort, SMMU_GBPA.ABORT): what terminated it.
    Terminated {
        /// The configuration that terminated it, in the spec's words.
        by: &'static str,
    },
    /// The request never reaches the unit as such: its request ID is not one the unit's
    /// requests can carry (wider than a PCI requester ID on VT-d).
    NotSeen {
        /// Why the unit cannot see it.
        why: &'static str,
    },
}

/// What a DMA the audit issued came back as: the output address, or why it got none.
pub type DmaResult = Result<u64, DmaFault>;

/// A fault or page request the driver collected from the unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HwFault {
    /// An untranslated request faulted: unrecoverable, reported with its reason.
    Unrecoverable {
        /// The request ID it came with.
        request_id: u32,
        /// Its PASID.
        pasid: Option<Pasid>,
        /// The address it asked for.
        addr: u64,
        /// The architected reason.
        reason: FaultReason,
        /// The record as the unit wrote it, for a consumer that forwards it whole (iommufd's
        /// vEVENTQ hands a guest the SMMUv3 event record): SMMUv3's 32-byte event record;
        /// `None` on VT-d, whose fault records a VMM does not forward.
        raw: Option<[u64; 4]>,
    },
    /// A page request (PRI): recoverable once software answers its group.
    PageRequest {
        /// The request ID it came with.
        request_id: u32,
        /// Its PASID.
        pasid: Option<Pasid>,
        /// The page asked for.
        addr: u64,
        /// Write access asked.
        write: bool,
        /// The page request group index.
        group: u16,
        /// Last request of its group: the group is complete and waits for a response.
        last: bool,
    },
}

/// A page response code (PCIe r6.0 §10.4.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageResponseCode {
    /// The pages are there now: retry.
    Success,
    /// The request was invalid: the device must not retry.
    Invalid,
    /// A catastrophic failure: the device disables its PRI.
    Failure,
}

/// What the driver counted that the core reports on: nothing is lost silently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DriverCounters {
    /// Fault records lost to a full fault log / event queue (primary fault overflow, EVENTQ
    /// overflow).
    pub faults_overflowed: u64,
    /// Page requests lost to a full page request queue.
    pub page_requests_overflowed: u64,
    /// Invalidation descriptors / commands submitted.
    pub invalidations: u64,
    /// Waits for their completion (wait descriptors, CMD_SYNCs).
    pub syncs: u64,
}

/// A driver refused or failed. The driver's own error, reduced to what the core can act on;
/// `detail` keeps the driver's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct DriverError {
    /// What kind of refusal.
    pub kind: DriverErrorKind,
    /// The driver's account.
    pub detail: String,
}

/// The kinds of driver refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DriverErrorKind {
    /// The unit does not have the feature asked for.
    #[error("not supported by the unit")]
    Unsupported,
    /// An argument the unit cannot take (an address out of range, an unaligned size).
    #[error("invalid argument")]
    Invalid,
    /// Out of table memory, DIDs, ASIDs or VMIDs.
    #[error("out of resources")]
    NoResources,
    /// The range is already mapped, or the tag (ASID, PASID) already in use.
    #[error("already in use")]
    Busy,
    /// The unit did not complete a command in time, or reported a queue error.
    #[error("the unit failed")]
    Hardware,
}

impl DriverError {
    /// An error of `kind` with the driver's account.
    pub fn new(kind: DriverErrorKind, detail: impl std::fmt::Display) -> Self {
        Self { kind, detail: detail.to_string() }
    }
}

/// The core's view of one IOMMU unit's driver. The arch adapters implement it; the core calls
/// it only after checking a request against everything it knows (domains, groups, PASIDs), so
/// a call that reaches the driver is well-formed and any refusal it returns must leave the
/// unit as it was.
pub trait IommuDriver: Send {
    /// The adapter itself, for callers that know which one it is (tests, `inspect`, the
    /// simulator reaching the unit's hardware model).
    fn as_any(&self) -> &dyn std::any::Any;

    /// What the unit can do.
    fn caps(&self) -> &UnitCaps;

    /// Address ranges a device's DMA may never be mapped at (the VT-d interrupt window,
    /// the SMMU's MSI doorbell, identity-mapped firmware ranges), as `(range, why)`.
    fn reserved_regions(&self, ids: &RequestIds) -> Vec<(Range<u64>, &'static str)>;

    /// A new paging domain: a page table the driver owns, empty. `nesting_parent` asks for a
    /// stage-2 table a nested domain can sit on.
    fn alloc_paging(&mut self, nesting_parent: bool) -> Result<HwDomain, DriverError>;

    /// A hardware tag (DID) for a stage 1 the driver does not own: a nested or SVA domain.
    fn alloc_tag(&mut self, s1: &Stage1Config) -> Result<HwDomain, DriverError>;

    /// Tells the driver what a device behind the unit can do, before anything is attached
    /// for it (Linux `probe_device`): ATS, and page requests.
    fn probe_device(&mut self, ids: &RequestIds, ats: bool, pri: bool) -> Result<(), DriverError>;

    /// Gives back a domain's tables and tags. Called only when nothing uses it.
    fn free(&mut self, domain: HwDomain) -> Result<(), DriverError>;

    /// Maps `iova..iova + 2^page_lg2` to `pa` in a paging domain, with `write` permission or
    /// read-only. Returns what the map linked and allocated, for [`undo_map`](Self::undo_map).
    fn map(
        &mut self,
        domain: HwDomain,
        iova: u64,
        pa: u64,
        page_lg2: u8,
        write: bool,
    ) -> Result<Mapped, DriverError>;

    /// Takes back the maps (`maps`, oldest first) of `range` that a larger operation could not
    /// complete, before any other map of the domain: their leaves and the tables they
    /// allocated go, after the invalidation that makes freeing those tables safe, so the
    /// domain's tables are byte for byte what they were before them.
    fn undo_map(
        &mut self,
        domain: HwDomain,
        range: Range<u64>,
        maps: &[Mapped],
    ) -> Result<(), DriverError>;

    /// Unmaps what lies in `range` of a paging domain; returns the bytes unmapped. Does not
    /// invalidate: the core decides when with [`flush`](Self::flush).
    fn unmap(&mut self, domain: HwDomain, range: Range<u64>) -> Result<u64, DriverError>;

    /// Invalidates the unit's TLB entries of a paging domain in `range` (all of them for
    /// `None`) and waits for the invalidation to complete.
    fn flush(&mut self, domain: HwDomain, range: Option<Range<u64>>) -> Result<(), DriverError>;

    /// Gives back what configuring `ids` for the first time set up (a two-level Stream
    /// table's level-2 array), if nothing behind it was attached since: undoing a first attach
    /// that failed, so their requests are answered as before it. Units that set up nothing
    /// per device have nothing to give back.
    fn release_unattached(&mut self, ids: &RequestIds) -> Result<(), DriverError> {
        let _ = ids;
        Ok(())
    }

    /// Points requests from `ids` with `pasid` (or without a PASID) at `target`, with every
    /// invalidation the change needs. Returns every request ID the change reached.
    fn attach(
        &mut self,
        ids: &RequestIds,
        pasid: Option<Pasid>,
        target: HwTarget,
    ) -> Result<Reach, DriverError>;

    /// Hands a guest's whole PASID table to the unit for requests from `ids`, over the stage 2
    /// of `parent`. Returns every request ID it reached.
    fn bind_pasid_table(
        &mut self,
        ids: &RequestIds,
        parent: HwDomain,
        config: &PasidTableConfig,
    ) -> Result<Reach, DriverError>;

    /// The request IDs whose requests with a PASID use the same PASID (CD) table as those of
    /// `ids`, `ids` included. A per-device table reaches only its device; an SMMUv3 CD table
    /// kept per domain reaches every device attached to that domain.
    fn pasid_table_sharers(&self, ids: &RequestIds) -> Vec<u32> {
        ids.to_vec()
    }

    /// Turns one checked guest invalidation into the unit's commands, and waits for them.
    fn invalidate(&mut self, inv: &HwInvalidation) -> Result<(), DriverError>;

    /// Everything the unit has reported since the last call: fault records, page requests.
    fn poll_faults(&mut self) -> Vec<HwFault>;

    /// Answers a page request group.
    fn page_response(
        &mut self,
        request_id: u32,
        pasid: Option<Pasid>,
        group: u16,
        code: PageResponseCode,
    ) -> Result<(), DriverError>;

    /// What the driver counted.
    fn counters(&self) -> DriverCounters;

    /// Plays a device: one DMA from `request_id` (with `pasid`) to `addr`, answered by the
    /// hardware model's `translate`, not by anything the driver remembers. The dynamic audit
    /// decides reach by this alone.
    fn dma(&self, request_id: u32, pasid: Option<Pasid>, addr: u64, access: DmaAccess)
        -> DmaResult;

    /// The unit's capability registers as its hardware model reports them through MMIO (what
    /// iommufd's `IOMMU_GET_HW_INFO` hands a VMM to build a matching vIOMMU).
    fn hw_info(&self) -> HwInfo;
}

/// A unit's capability registers, raw: the VMM decodes them with the architecture's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HwInfo {
    /// VT-d §11.4.2 CAP_REG and §11.4.3 ECAP_REG.
    Vtd {
        /// CAP_REG.
        cap: u64,
        /// ECAP_REG.
        ecap: u64,
    },
    /// SMMUv3 §6.3.1-§6.3.8: SMMU_IDR0..5, SMMU_IIDR, SMMU_AIDR.
    Smmuv3 {
        /// SMMU_IDR0..SMMU_IDR5.
        idr: [u32; 6],
        /// SMMU_IIDR.
        iidr: u32,
        /// SMMU_AIDR.
        aidr: u32,
    },
}

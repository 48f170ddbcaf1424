//! The C-visible types: parameters, requests, answers, messages and statistics.
//!
//! Every field a C caller fills is an integer: flags are `uint8_t` (0 or 1) and enumerations are
//! `uint32_t` constants, so a bad value is an error code the call returns, never an invalid Rust
//! `bool` or `enum`. Nothing here holds a pointer the crate dereferences, except the callbacks.

use core::ffi::c_void;

/// The call did what it was asked.
pub const SVIOMMU_OK: i32 = 0;
/// A pointer argument that must not be null was null.
pub const SVIOMMU_ERR_NULL: i32 = -1;
/// A parameter was out of range: a flag other than 0 or 1, an unknown constant, a width or size
/// the model cannot have, or a combination the architecture forbids. Nothing was changed.
pub const SVIOMMU_ERR_INVALID: i32 = -2;
/// An MMIO access of a size or alignment the unit does not take (see `sviommu_mmio_write`).
/// Nothing was changed; the refusal is counted (`SviommuAbiStats::mmio_refused`).
pub const SVIOMMU_ERR_ACCESS: i32 = -3;
/// The call does not apply to this unit's architecture.
pub const SVIOMMU_ERR_ARCH: i32 = -4;
/// The model panicked (a bug in the model): the panic was caught at the boundary and counted
/// (`SviommuAbiStats::panics`, `sviommu_panics`). The unit may be used again.
pub const SVIOMMU_ERR_PANIC: i32 = -5;

/// The unit is an Intel VT-d remapping unit.
pub const SVIOMMU_ARCH_VTD: u32 = 1;
/// The unit is an Arm SMMUv3.
pub const SVIOMMU_ARCH_SMMUV3: u32 = 2;

/// The VT-d unit's capabilities (CAP_REG, ECAP_REG) and sizes, as knobs. Fill it with
/// `sviommu_vtd_params_default`, change what matters, and pass it to `sviommu_vtd_create`.
/// Flags are 0 or 1. Capability bits no knob names keep the default unit's values (coherent
/// walks, snoop control, supervisor and execute requests, RID_PASID and RID_PRIV, second-stage
/// A/D, page-selective invalidation, page request draining); interrupt remapping (ECAP.IR) is
/// never advertised: it is not modelled.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuVtdParams {
    /// ECAP.SMTS: scalable-mode translation (else legacy mode only).
    pub scalable_mode: u8,
    /// CAP.CM: caching mode (not-present entries may be cached; what a virtual IOMMU sets).
    pub caching_mode: u8,
    /// ECAP.FSTS: first-stage translation (needs scalable mode).
    pub first_stage: u8,
    /// ECAP.SSTS: second-stage translation in scalable mode (needs scalable mode).
    pub second_stage: u8,
    /// ECAP.NEST: nested translation (needs first and second stage).
    pub nested: u8,
    /// ECAP.PT: pass-through.
    pub pass_through: u8,
    /// ECAP.QI: queued invalidation (else register-based invalidation only).
    pub queued_invalidation: u8,
    /// ECAP.DT: device-TLBs (ATS).
    pub device_tlb: u8,
    /// ECAP.PRS: page requests (needs device-TLBs).
    pub page_requests: u8,
    /// CAP.SAGAW bit 1: 39-bit AGAW, 3-level second-stage tables.
    pub agaw_39: u8,
    /// CAP.SAGAW bit 2: 48-bit AGAW, 4-level second-stage tables.
    pub agaw_48: u8,
    /// CAP.SAGAW bit 3: 57-bit AGAW, 5-level second-stage tables.
    pub agaw_57: u8,
    /// CAP.SSLPS bit 0: 2 MiB second-stage pages.
    pub ss_2m_pages: u8,
    /// CAP.SSLPS bit 1: 1 GiB second-stage pages.
    pub ss_1g_pages: u8,
    /// CAP.FS1GP: 1 GiB first-stage pages.
    pub fs_1g_pages: u8,
    /// CAP.FS5LP: 5-level first-stage paging.
    pub fs_5level: u8,
    /// CAP.MGAW + 1: the maximum guest address width in bits, 12 to 64.
    pub mgaw_bits: u8,
    /// The host address width in bits (the ACPI DMAR table's HAW + 1), 12 to 52.
    pub haw_bits: u8,
    /// ECAP.PASID and ECAP.PSS + 1: bits of PASID, 1 to 20; 0 for no PASID support.
    pub pasid_bits: u8,
    /// CAP.ND: `2^(4 + 2 * nd)` domain IDs, 0 to 6.
    pub nd: u8,
    /// 1: the default cache sizes; 0: no caches at all (every translation reads its tables).
    pub caches: u8,
    /// Device messages the unit holds until they are delivered (at least 1).
    pub outbox_capacity: u32,
}

/// The SMMU's ID registers and sizes, as knobs. Fill it with `sviommu_smmu_params_default`,
/// change what matters, and pass it to `sviommu_smmu_create`. Flags are 0 or 1. ID fields no
/// knob names keep the default SMMU's values (VMSAv8-64 little-endian tables, 16-bit ASIDs and
/// VMIDs, coherent walks, range invalidation, permission overrides).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuSmmuParams {
    /// SMMU_IDR0.S1P: stage 1.
    pub stage1: u8,
    /// SMMU_IDR0.S2P: stage 2.
    pub stage2: u8,
    /// SMMU_IDR0.ST_LEVEL = 0b01: two-level Stream tables (else linear only).
    pub two_level_stream_table: u8,
    /// SMMU_IDR0.CD2L: two-level CD tables.
    pub two_level_cd_table: u8,
    /// SMMU_IDR0.MSI: message-signalled interrupts (else wired interrupts, delivered as
    /// `SVIOMMU_MSG_WIRED_IRQ` messages).
    pub msi: u8,
    /// SMMU_IDR0.ATS: PCIe ATS.
    pub ats: u8,
    /// SMMU_IDR0.PRI: PCIe PRI (needs ATS).
    pub pri: u8,
    /// SMMU_IDR0.SEV: WFE wake-up events.
    pub sev: u8,
    /// SMMU_IDR0.HTTU: 0 none, 1 Access flag, 2 Access flag and dirty state.
    pub httu: u8,
    /// SMMU_IDR0.STALL_MODEL: one of `SVIOMMU_STALL_*`.
    pub stall_model: u8,
    /// SMMU_IDR1.SIDSIZE: bits of StreamID, 0 to 32.
    pub sid_bits: u8,
    /// SMMU_IDR1.SSIDSIZE: bits of SubstreamID, 0 to 20.
    pub ssid_bits: u8,
    /// SMMU_IDR1.CMDQS: log2 of the largest Command queue, 0 to 19.
    pub cmdq_lg2: u8,
    /// SMMU_IDR1.EVENTQS: log2 of the largest Event queue, 0 to 19.
    pub eventq_lg2: u8,
    /// SMMU_IDR1.PRIQS: log2 of the largest PRI queue, 0 to 19.
    pub priq_lg2: u8,
    /// SMMU_IDR5.OAS in bits: 32, 36, 40, 42, 44, 48 or 52.
    pub oas_bits: u8,
    /// SMMU_IDR5.GRAN4K.
    pub granule_4k: u8,
    /// SMMU_IDR5.GRAN16K.
    pub granule_16k: u8,
    /// SMMU_IDR5.GRAN64K.
    pub granule_64k: u8,
    /// SMMU_GBPA.ABORT out of reset: 1 aborts transactions until software enables the SMMU.
    pub gbpa_abort_at_reset: u8,
    /// 1: the default cache sizes; 0: no caches at all.
    pub caches: u8,
    /// Device messages the SMMU holds until they are delivered (at least 1).
    pub outbox_capacity: u32,
}

/// SMMU_IDR0.STALL_MODEL 0b00: both the stall and the terminate fault models.
pub const SVIOMMU_STALL_AND_TERMINATE: u8 = 0;
/// SMMU_IDR0.STALL_MODEL 0b01: terminate only.
pub const SVIOMMU_STALL_TERMINATE_ONLY: u8 = 1;
/// SMMU_IDR0.STALL_MODEL 0b10: stall forced.
pub const SVIOMMU_STALL_FORCED: u8 = 2;

/// The request writes (else it reads).
pub const SVIOMMU_ACCESS_WRITE: u32 = 1 << 0;
/// The request is an instruction fetch (VT-d: ER in the PASID prefix; SMMU: InD).
pub const SVIOMMU_ACCESS_EXEC: u32 = 1 << 1;
/// The request is privileged (VT-d: PMR in the PASID prefix; SMMU: PnU).
pub const SVIOMMU_ACCESS_PRIV: u32 = 1 << 2;
/// An ATS Translated request: `addr` came from a device's TLB (VT-d `translated_request`,
/// SMMU AT == 0b10).
pub const SVIOMMU_ACCESS_TRANSLATED: u32 = 1 << 3;

/// A DMA request as it arrives at the unit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuRequest {
    /// VT-d: the requester ID (source-id), bus in bits 15:8 and devfn in 7:0 (at most 0xffff).
    /// SMMUv3: the StreamID.
    pub requester: u32,
    /// The PASID / SubstreamID (at most 20 bits), if `has_pasid`.
    pub pasid: u32,
    /// 1: the request carries a PASID TLP prefix / SubstreamID.
    pub has_pasid: u8,
    /// `SVIOMMU_ACCESS_*` flags; other bits are refused.
    pub access: u32,
    /// The input address.
    pub addr: u64,
}

/// The unit let the request through: `output` and the other translation fields are valid.
pub const SVIOMMU_OUTCOME_TRANSLATED: u32 = 0;
/// The unit blocked the request with an architected fault: `fault_code` is the VT-d fault
/// reason (FR) or the SMMUv3 event number.
pub const SVIOMMU_OUTCOME_FAULT: u32 = 1;
/// SMMUv3: the transaction was terminated where the architecture records nothing;
/// `fault_code` is one of `SVIOMMU_SILENT_*`.
pub const SVIOMMU_OUTCOME_ABORTED: u32 = 2;
/// SMMUv3: the transaction stalled (its event is recorded, `fault_code` is its number and
/// `stag` its STAG); the answer comes later as an `SVIOMMU_MSG_STALL_RESOLVED` message.
pub const SVIOMMU_OUTCOME_STALLED: u32 = 3;

/// Silent abort: SMMU_CR0.SMMUEN == 0 and SMMU_GBPA.ABORT == 1.
pub const SVIOMMU_SILENT_GBPA_ABORT: u32 = 1;
/// Silent abort: the SMMU is disabled and bypassing, and the address exceeds the OAS.
pub const SVIOMMU_SILENT_DISABLED_BEYOND_OAS: u32 = 2;
/// Silent abort: STE.Config is abort.
pub const SVIOMMU_SILENT_STE_ABORT: u32 = 3;

/// Permission bit: privileged read.
pub const SVIOMMU_PERM_PRIV_R: u8 = 1 << 0;
/// Permission bit: privileged write.
pub const SVIOMMU_PERM_PRIV_W: u8 = 1 << 1;
/// Permission bit: privileged execute.
pub const SVIOMMU_PERM_PRIV_X: u8 = 1 << 2;
/// Permission bit: unprivileged read.
pub const SVIOMMU_PERM_USER_R: u8 = 1 << 3;
/// Permission bit: unprivileged write.
pub const SVIOMMU_PERM_USER_W: u8 = 1 << 4;
/// Permission bit: unprivileged execute.
pub const SVIOMMU_PERM_USER_X: u8 = 1 << 5;

/// The unit's answer to one request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuResult {
    /// One of `SVIOMMU_OUTCOME_*`.
    pub outcome: u32,
    /// Translated: the output address of the request's address.
    pub output: u64,
    /// Translated: log2 of the size of the page the translation holds for.
    pub page_lg2: u8,
    /// Translated: what the translation allows, `SVIOMMU_PERM_*` bits.
    pub perms: u8,
    /// VT-d, translated: the request was an interrupt request (a request without PASID to
    /// FEEx_xxxxh), not DMA; `output` is where it goes (interrupt remapping is not modelled).
    pub interrupt: u8,
    /// Fault or stall: the unit recorded it (VT-d: in a fault recording register, unless an
    /// FPD bit covered it; SMMUv3: in the Event queue, unless CD.R / STE.S2R said not to).
    pub recorded: u8,
    /// Memory reads the request cost (tables and configuration structures).
    pub reads: u32,
    /// Fault: the VT-d fault reason or the SMMUv3 event number; aborted: `SVIOMMU_SILENT_*`.
    pub fault_code: u32,
    /// SMMUv3 fault: the fault happened at stage 2 (the event's S2 bit).
    pub fault_s2: u8,
    /// SMMUv3 stalled: the STAG.
    pub stag: u16,
    /// SMMUv3 fault: the event's IPA (stage-2 faults) or FetchAddr (fetch aborts), else 0.
    pub fault_addr: u64,
}

/// A message to a device: a device-TLB / ATC invalidation (ATS Invalidate Request).
pub const SVIOMMU_MSG_DEVTLB_INVALIDATION: u32 = 1;
/// A message to a device: a page group / PRG response.
pub const SVIOMMU_MSG_PAGE_RESPONSE: u32 = 2;
/// SMMUv3: the answer to a stalled transaction (`stall_result`, and the translation fields).
pub const SVIOMMU_MSG_STALL_RESOLVED: u32 = 3;
/// SMMUv3: a wired interrupt (`irq` is one of `SVIOMMU_IRQ_*`), when SMMU_IDR0.MSI is clear.
pub const SVIOMMU_MSG_WIRED_IRQ: u32 = 4;
/// SMMUv3: a WFE wake-up event (CMD_SYNC with CS == SIG_SEV).
pub const SVIOMMU_MSG_SEV: u32 = 5;

/// Wired interrupt: the Event queue's.
pub const SVIOMMU_IRQ_EVENTQ: u32 = 0;
/// Wired interrupt: the PRI queue's.
pub const SVIOMMU_IRQ_PRIQ: u32 = 1;
/// Wired interrupt: global errors (GERROR).
pub const SVIOMMU_IRQ_GERROR: u32 = 2;
/// Wired interrupt: CMD_SYNC completion.
pub const SVIOMMU_IRQ_CMD_SYNC: u32 = 3;

/// Stall resolved: retried and translated (`output`, `page_lg2`, `perms` hold the answer).
pub const SVIOMMU_STALL_TRANSLATED: u32 = 0;
/// Stall resolved: terminated with an abort.
pub const SVIOMMU_STALL_ABORTED: u32 = 1;
/// Stall resolved: terminated with RAZ/WI behaviour.
pub const SVIOMMU_STALL_RAZ_WI: u32 = 2;

/// A message from the unit to a device or to the platform that is not an MSI write. Fields a
/// kind does not use are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuMessage {
    /// One of `SVIOMMU_MSG_*`.
    pub kind: u32,
    /// The device: VT-d source-id, SMMUv3 StreamID.
    pub requester: u32,
    /// The PASID / SubstreamID, if `has_pasid`.
    pub pasid: u32,
    /// 1: `pasid` is valid.
    pub has_pasid: u8,
    /// Invalidation: global (every PASID's global entries too).
    pub global: u8,
    /// Invalidation: log2 of the range's size in bytes (12 for one page, 64 for everything).
    /// Stall resolved, translated: log2 of the page size.
    pub size_lg2: u8,
    /// Page response: last page in group (VT-d LPIG).
    pub last_in_group: u8,
    /// Invalidation: the first byte of the range. Stall resolved, translated: the output.
    pub addr: u64,
    /// Page response: the PCIe response code.
    pub response_code: u32,
    /// Page response: the page request group index.
    pub prg_index: u32,
    /// VT-d invalidation: the SR-IOV physical function (PFSID).
    pub pfsid: u32,
    /// VT-d invalidation: the device's maximum outstanding invalidations (MIP).
    pub mip: u8,
    /// Stall resolved, translated: `SVIOMMU_PERM_*` bits.
    pub perms: u8,
    /// Stall resolved: the STAG.
    pub stag: u16,
    /// Stall resolved: one of `SVIOMMU_STALL_TRANSLATED`, `_ABORTED`, `_RAZ_WI`.
    pub stall_result: u32,
    /// Wired interrupt: one of `SVIOMMU_IRQ_*`.
    pub irq: u32,
    /// VT-d page response: 1 if `private_data` holds the request's private data (PDP).
    pub has_private_data: u8,
    /// VT-d page response: the private data, low then high 64 bits.
    pub private_data: [u64; 2],
}

/// Reads `len` bytes of guest memory at `addr` into `buf`. Returns 0, or non-zero if any byte
/// is not backed by memory (the unit then raises the architected fault; nothing is read).
pub type SviommuMemRead =
    Option<unsafe extern "C" fn(opaque: *mut c_void, addr: u64, buf: *mut u8, len: u64) -> i32>;
/// Writes `len` bytes from `buf` to guest memory at `addr`. Returns 0, or non-zero if any byte
/// is not backed by memory.
pub type SviommuMemWrite =
    Option<unsafe extern "C" fn(opaque: *mut c_void, addr: u64, buf: *const u8, len: u64) -> i32>;
/// Atomically replaces the little-endian 64-bit word at `addr` (8-byte aligned) with `desired`
/// if it equals `expected`, and stores the value it found in `*found`. Returns 0, or non-zero if
/// the word is not backed by memory.
pub type SviommuMemCmpxchg64 = Option<
    unsafe extern "C" fn(
        opaque: *mut c_void,
        addr: u64,
        expected: u64,
        desired: u64,
        found: *mut u64,
    ) -> i32,
>;
/// An MSI: a 32-bit write of `data` to `addr`.
pub type SviommuMsi = Option<unsafe extern "C" fn(opaque: *mut c_void, addr: u64, data: u32)>;
/// A message (`SviommuMessage`), valid only during the call.
pub type SviommuMessageFn =
    Option<unsafe extern "C" fn(opaque: *mut c_void, msg: *const SviommuMessage)>;

/// What the embedder provides: guest memory and the delivery of outputs. Every callback gets
/// `opaque`. They are called from whichever thread calls into the unit, with no lock of the
/// unit held, so a callback may call back into the unit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SviommuCallbacks {
    /// Passed to every callback.
    pub opaque: *mut c_void,
    /// Required: reads guest memory (QEMU: `address_space_rw`, or `address_space_read`).
    pub mem_read: SviommuMemRead,
    /// Required: writes guest memory.
    pub mem_write: SviommuMemWrite,
    /// Optional: an atomic compare-exchange, for Access/Dirty flag updates. Without it the
    /// unit reads, compares and writes under its own lock: atomic with respect to the unit's
    /// own accesses, not to CPUs writing the same word meanwhile.
    pub mem_cmpxchg64: SviommuMemCmpxchg64,
    /// Optional: delivers MSIs. Without it MSIs are dropped and counted
    /// (`SviommuAbiStats::outputs_discarded`).
    pub msi: SviommuMsi,
    /// Optional: delivers device and platform messages. Without it they are dropped and
    /// counted, as MSIs are.
    pub message: SviommuMessageFn,
}

/// What one cache has done.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuCacheStats {
    /// Lookups that found their key.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries pushed out by a full set.
    pub evictions: u64,
    /// Inserts refused because an invalidation completed after their walk began.
    pub stale_inserts: u64,
    /// Entries removed by invalidations.
    pub invalidated: u64,
}

/// What the unit's outbox has done.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuOutboxStats {
    /// Device messages queued.
    pub messages: u64,
    /// Interrupt messages queued.
    pub interrupts: u64,
    /// Interrupt messages coalesced with one already pending.
    pub interrupts_coalesced: u64,
    /// Times a device message found the outbox full and its producer waited for a drain.
    pub full: u64,
    /// The most device messages pending at once.
    pub max_messages: u64,
}

/// VT-d: what the ATS and page request paths refused, dropped or answered by themselves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuVtdAtsStats {
    /// Translation requests received.
    pub translation_requests: u64,
    /// Translation requests answered with Unsupported Request.
    pub translation_unsupported: u64,
    /// Translation requests answered with Completer Abort.
    pub translation_aborted: u64,
    /// Translation requests answered with R = W = 0.
    pub translation_no_access: u64,
    /// Translated requests blocked.
    pub translated_blocked: u64,
    /// Page requests written into the page request queue.
    pub page_requests_queued: u64,
    /// Page requests dropped because the queue was full or in overflow.
    pub page_requests_overflowed: u64,
    /// Page requests refused.
    pub page_requests_refused: u64,
    /// Page requests discarded for lack of ECAP.PRS.
    pub page_requests_unsupported: u64,
    /// Page requests whose descriptor write found no memory.
    pub page_requests_lost: u64,
    /// Page group responses the unit sent on its own.
    pub auto_responses: u64,
    /// Page requests not taken because the outbox had no room for an answer.
    pub page_requests_busy: u64,
}

/// SMMUv3: what the Event and PRI queues wrote, discarded and lost, and what became of stalls.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuSmmuQueueStats {
    /// Event records written to the Event queue.
    pub events_written: u64,
    /// Recordable events discarded because the Event queue was full.
    pub events_overflowed: u64,
    /// Recordable events discarded because the Event queue was disabled.
    pub events_disabled: u64,
    /// Recordable events lost because the record write aborted.
    pub events_aborted: u64,
    /// Page requests written to the PRI queue.
    pub page_requests_written: u64,
    /// Page requests discarded (PRI queue full, in overflow, or disabled).
    pub page_requests_dropped: u64,
    /// Page requests lost because the entry write aborted.
    pub page_requests_aborted: u64,
    /// Page requests not taken for lack of outbox room.
    pub page_requests_busy: u64,
    /// Transactions stalled.
    pub stalls: u64,
    /// Faults configured to stall that were terminated because every STAG was in use.
    pub stalls_refused: u64,
    /// Stall records deferred because the Event queue was not writable.
    pub stall_records_deferred: u64,
    /// Stalled transactions retried.
    pub stalls_retried: u64,
    /// Stalled transactions terminated.
    pub stalls_terminated: u64,
    /// E_PAGE_REQUEST hints dropped.
    pub page_in_hints_dropped: u64,
}

/// What the C boundary itself counted for a unit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuAbiStats {
    /// Requests translated (`SVIOMMU_OUTCOME_TRANSLATED`).
    pub translated: u64,
    /// Requests that faulted, aborted or stalled.
    pub faulted: u64,
    /// Requests refused with an error code (bad fields), never seen by the model.
    pub requests_refused: u64,
    /// MMIO reads and writes that reached the model.
    pub mmio_accesses: u64,
    /// MMIO accesses refused for their size or alignment (`SVIOMMU_ERR_ACCESS`).
    pub mmio_refused: u64,
    /// MSIs and messages handed to the embedder's callbacks.
    pub outputs_delivered: u64,
    /// MSIs and messages dropped because their callback was null.
    pub outputs_discarded: u64,
    /// Guest memory accesses the embedder's callbacks refused (non-zero return).
    pub memory_errors: u64,
    /// Panics caught at the boundary (model bugs).
    pub panics: u64,
}

/// The size of `SviommuStats::vtd_invalidations`: one counter for each 4-bit descriptor type
/// code (§6.5.2, bits 3:0 of the descriptor).
pub const SVIOMMU_VTD_DESCRIPTOR_TYPES: usize = 16;

/// Everything a unit counts. `caches` are in the architecture's order: VT-d context, PASID,
/// IOTLB, first-stage paging-structure, second-stage paging-structure, second-stage leaf;
/// SMMUv3 STE, CD, TLB, stage-1 walk, stage-2 walk, stage-2 leaf. `vtd_ats` is zero for an
/// SMMU, `smmu_queues` zero for a VT-d unit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuStats {
    /// `SVIOMMU_ARCH_VTD` or `SVIOMMU_ARCH_SMMUV3`.
    pub arch: u32,
    /// The caches, as above.
    pub caches: [SviommuCacheStats; 6],
    /// The outbox.
    pub outbox: SviommuOutboxStats,
    /// VT-d only.
    pub vtd_ats: SviommuVtdAtsStats,
    /// SMMUv3 only.
    pub smmu_queues: SviommuSmmuQueueStats,
    /// The C boundary's own counts.
    pub abi: SviommuAbiStats,
    /// VT-d: invalidation descriptors the invalidation queue carried out, indexed by the
    /// descriptor's type code (§6.5.2: 1 context-cache, 2 IOTLB, 3 device-TLB, 4 interrupt
    /// entry cache, 5 wait, 6 PASID-based IOTLB, 7 PASID-cache, 8 PASID-based device-TLB, 9 page
    /// group response); a descriptor refused with IQE is not counted. Zero for an SMMU.
    pub vtd_invalidations: [u64; SVIOMMU_VTD_DESCRIPTOR_TYPES],
}

/// What the unit recorded about the requests it saw (`sviommu_record_stats`): faults by code
/// and the structures and table entries its walks read. Apart from `SviommuStats`, whose
/// layout embedders already compiled against.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SviommuRecordStats {
    /// Faults the unit recorded (`faults.by_code`), by their architected code: the VT-d fault reason (FR, §7.2) or
    /// the SMMUv3 event number (§7.3). Faults not recorded (FPD set, a disabled Event queue,
    /// silent aborts) are not counted here.
    pub faults: SviommuFaultCounts,
    /// VT-d: present legacy context entries the unit read from memory (cache misses), by their
    /// TT field (§9.3: 0 second stage, 1 second stage with device-TLB, 2 pass-through).
    pub vtd_context_tt: [u64; 4],
    /// VT-d: present scalable-mode PASID-table entries the unit read from memory, by their PGTT
    /// field (§9.6: 1 first stage, 2 second stage, 3 nested, 4 pass-through).
    pub vtd_pasid_pgtt: [u64; 8],
    /// Page-table entries the walks read, by stage (0: VT-d first stage / SMMU stage 1; 1:
    /// VT-d second stage / SMMU stage 2) and spec level number + 1 (VT-d levels 1 to 5,
    /// VMSAv8-64 levels -1 to 3).
    pub walk_reads: [[u64; SVIOMMU_WALK_LEVELS]; 2],
    /// SMMUv3: valid STEs the unit read from memory (cache misses), by their Config field
    /// (§5.2: 0b000 abort, 0b100 bypass, 0b101 stage 1, 0b110 stage 2, 0b111 nested).
    pub smmu_ste_config: [u64; 8],
    /// SMMUv3: valid CDs the unit read from memory (cache misses).
    pub smmu_cds: u64,
    /// SMMUv3: commands the Command queue consumed, by opcode (§4.1); a command that raised
    /// CERROR is not counted. Zero for a VT-d unit.
    pub smmu_commands: SviommuOpcodeCounts,
}

/// The size of `SviommuOpcodeCounts::by_opcode`: every 8-bit SMMUv3 command opcode.
pub const SVIOMMU_SMMU_OPCODES: usize = 256;

/// SMMUv3 commands, indexed by their 8-bit opcode.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SviommuOpcodeCounts {
    /// `by_opcode[op]`: commands consumed with opcode `op`.
    pub by_opcode: [u64; SVIOMMU_SMMU_OPCODES],
}

impl Default for SviommuOpcodeCounts {
    fn default() -> Self {
        Self { by_opcode: [0; SVIOMMU_SMMU_OPCODES] }
    }
}

/// The size of `SviommuFaultCounts::by_code`: every 8-bit fault reason or event number.
pub const SVIOMMU_FAULT_CODES: usize = 256;

/// Recorded faults, indexed by their 8-bit architected code.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SviommuFaultCounts {
    /// `by_code[c]`: faults recorded with code `c`.
    pub by_code: [u64; SVIOMMU_FAULT_CODES],
}

impl Default for SviommuFaultCounts {
    fn default() -> Self {
        Self { by_code: [0; SVIOMMU_FAULT_CODES] }
    }
}
/// The size of each row of `SviommuStats::walk_reads`: levels -1 to 5.
pub const SVIOMMU_WALK_LEVELS: usize = 7;

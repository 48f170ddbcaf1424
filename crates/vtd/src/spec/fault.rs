//! Non-recoverable faults: the fault reasons (§7.1.3, Appendix A "Non-Recoverable Fault Reason
//! Encodings") and the 128-bit fault recording record (§9.9 Fault Record, §11.4 FRCD_REG) the
//! hardware writes them into.
//!
//! The codes are architected data: [`FaultReason`]'s discriminants are the values hardware
//! writes into FRCD_REG.FR. A model bug is never a fault reason; it belongs to the model's own
//! error type.

use core::fmt;

use sviommu_memory::bits::{bitfields, WideField};

use super::{any_set, Reserved};

spec_enum! {
    /// A non-recoverable fault reason (FR), legacy mode (01h–0Eh), interrupt remapping
    /// (20h–26h, declared but not produced: interrupt remapping is not modelled) and scalable
    /// mode (30h–91h).
    pub enum FaultReason {
        // Legacy mode (RTADDR_REG.TTM = 00b).
        /// The root entry's P is 0.
        RootEntryNotPresent = 0x01,
        /// The context entry's P is 0.
        ContextEntryNotPresent = 0x02,
        /// A present context entry is programmed invalidly: AW not advertised in CAP.SAGAW, TT
        /// reserved or not supported (pass-through without ECAP.PT, 01b without ECAP.DT).
        ContextEntryInvalid = 0x03,
        /// The input address is above `2^X - 1`, X the smaller of the AGAW the context entry
        /// selects and CAP.MGAW.
        AddressBeyondAgaw = 0x04,
        /// A write to a page whose second-stage entries do not all grant write.
        WriteDenied = 0x05,
        /// A read to a page whose second-stage entries do not all grant read.
        ReadDenied = 0x06,
        /// Accessing a second-stage paging entry through the previous entry's address failed.
        SsEntryAccess = 0x07,
        /// Accessing the root entry through RTADDR_REG failed.
        RootTableAccess = 0x08,
        /// Accessing the context entry through the root entry's CTP failed.
        ContextTableAccess = 0x09,
        /// A present root entry has a reserved bit set.
        RootEntryReserved = 0x0a,
        /// A present context entry has a reserved bit set.
        ContextEntryReserved = 0x0b,
        /// A second-stage paging entry with R or W set has a reserved bit set.
        SsEntryReserved = 0x0c,
        /// A translation request or translated request is blocked by the context entry's TT.
        TranslationBlocked = 0x0d,
        /// A request's output address lies in the interrupt address range (FEEx_xxxxh).
        InterruptAddressRange = 0x0e,

        // Interrupt remapping.
        /// An interrupt request has a reserved field set.
        IrRequestReserved = 0x20,
        /// The interrupt index is beyond the interrupt-remapping table's size.
        IrIndexBeyondTable = 0x21,
        /// The interrupt-remapping table entry's P is 0.
        IrteNotPresent = 0x22,
        /// Accessing the interrupt-remapping table through IRTA_REG failed.
        IrTableAccess = 0x23,
        /// A present interrupt-remapping table entry has a reserved bit set.
        IrteReserved = 0x24,
        /// A compatibility-format interrupt is blocked.
        IrCompatibilityBlocked = 0x25,
        /// The interrupt's source-id fails the entry's source validation.
        IrSourceIdInvalid = 0x26,

        // Scalable mode (RTADDR_REG.TTM = 01b): root and context.
        /// The root-table address in RTADDR_REG is invalid.
        SmRootTableAddressInvalid = 0x30,
        /// A request with PASID arrived while RTADDR_REG.TTM selects legacy mode.
        SmLegacyRequestWithPasid = 0x31,
        /// A page request arrived while RTADDR_REG.TTM selects legacy mode.
        SmLegacyPageRequest = 0x32,
        /// Accessing the scalable-mode root entry failed.
        SmRootEntryAccess = 0x38,
        /// The root entry's LP or UP (the half that serves the devfn) is 0.
        SmRootEntryNotPresent = 0x39,
        /// The used half of the root entry has a reserved bit set.
        SmRootEntryReserved = 0x3a,
        /// Accessing the scalable-mode context entry failed.
        SmContextEntryAccess = 0x40,
        /// The scalable-mode context entry's P is 0.
        SmContextEntryNotPresent = 0x41,
        /// A present scalable-mode context entry has a reserved bit set.
        SmContextEntryReserved = 0x42,
        /// A present scalable-mode context entry is programmed invalidly (a feature enabled that
        /// the hardware does not advertise).
        SmContextEntryInvalid = 0x43,
        /// A translation request or translated request while the context entry's DTE is 0.
        SmContextDteClear = 0x44,
        /// A request with PASID while the context entry's PASIDE is 0.
        SmContextPasideClear = 0x45,
        /// The PASID's directory index is beyond the directory size PDTS gives.
        SmPasidBeyondDirectory = 0x46,
        /// A page request while the context entry's PRE is 0.
        SmContextPreClear = 0x47,
        /// The context entry's RID_PASID is invalid.
        SmRidPasidInvalid = 0x48,

        // Scalable mode: PASID directory and table.
        /// Accessing the PASID directory entry failed.
        SmPasidDirEntryAccess = 0x50,
        /// The PASID directory entry's P is 0.
        SmPasidDirEntryNotPresent = 0x51,
        /// A present PASID directory entry has a reserved bit set.
        SmPasidDirEntryReserved = 0x52,
        /// Accessing the PASID-table entry failed.
        SmPasidEntryAccess = 0x58,
        /// The PASID-table entry's P is 0.
        SmPasidEntryNotPresent = 0x59,
        /// A present PASID-table entry has a reserved bit set.
        SmPasidEntryReserved = 0x5a,
        /// A present PASID-table entry is programmed invalidly: reserved or unsupported PGTT,
        /// AW not in CAP.SAGAW, FSPM unsupported.
        SmPasidEntryInvalid = 0x5b,
        /// A request with execute permission while the PASID-table entry's ERE is 0.
        SmPasidEreClear = 0x5c,
        /// A supervisor request while the PASID-table entry's SRE is 0.
        SmPasidSreClear = 0x5d,

        // Scalable mode: first stage.
        /// Accessing a first-stage paging entry failed.
        SmFsEntryAccess = 0x70,
        /// A first-stage paging entry's P is 0.
        SmFsEntryNotPresent = 0x71,
        /// A present first-stage paging entry has a reserved bit set.
        SmFsEntryReserved = 0x72,
        /// Accessing the first-stage root table through FSPTPTR failed.
        SmFsptptrAccess = 0x73,
        /// Nested: a first-stage table address (FSPTPTR or an entry's address) is beyond the
        /// second stage's input width.
        SmNestedFsAddressBeyondSs = 0x74,
        /// Nested: the second stage denies the read of the first-stage root table.
        SmNestedFsRootReadDenied = 0x75,
        /// Nested: the second stage denies the read of a first-stage paging entry.
        SmNestedFsEntryReadDenied = 0x76,
        /// Nested: the second stage denies the write that sets a first-stage entry's A/D bit.
        SmNestedFsEntryWriteDenied = 0x77,

        // Scalable mode: second stage.
        /// Accessing a second-stage paging entry failed.
        SmSsEntryAccess = 0x78,
        /// A second-stage paging entry grants neither read nor write (not present).
        SmSsEntryNotPresent = 0x79,
        /// A present second-stage paging entry has a reserved bit set.
        SmSsEntryReserved = 0x7a,
        /// The PASID-table entry's SSPTPTR is invalid.
        SmSsptptrInvalid = 0x7b,
        /// A second-stage A/D update is needed but page-walk accesses are not snooped.
        SmSsAdUpdateNoSnoop = 0x7c,

        // Scalable mode: general.
        /// The input address is not canonical for the first-stage paging mode.
        SmNonCanonical = 0x80,
        /// A user request reaches a page a first-stage entry makes supervisor-only (U/S = 0).
        SmUserAccessDenied = 0x81,
        /// A request with execute permission reaches a page that does not grant execute.
        SmExecuteDenied = 0x82,
        /// The input address is beyond what the translation supports (MGAW, AW or FSPM).
        SmAddressBeyondMgaw = 0x83,
        /// A second-stage entry's output address is beyond the host address width.
        SmSsOutputBeyondHaw = 0x84,
        /// A write or AtomicOp request without write permission.
        SmWriteDenied = 0x85,
        /// A read or AtomicOp request without read permission.
        SmReadDenied = 0x86,
        /// A request's output address lies in the interrupt address range (FEEx_xxxxh).
        SmInterruptAddressRange = 0x87,
        /// A first-stage A/D update is needed but page-walk accesses are not snooped.
        SmFsAdUpdateNoSnoop = 0x90,
        /// The atomic update of a first-stage entry's A/D bits failed.
        SmFsAdUpdateFailed = 0x91,
    }
}

impl FaultReason {
    /// The FR code.
    #[must_use]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The reason for an FR code; reserved codes stay visible.
    pub fn from_code(code: u8) -> Result<Self, Reserved> {
        Self::try_from(u64::from(code))
    }

    /// A scalable-mode reason (30h and up).
    #[must_use]
    pub const fn is_scalable(self) -> bool {
        self.code() >= 0x30
    }

    /// An interrupt-remapping reason (20h–2Fh).
    #[must_use]
    pub const fn is_interrupt_remapping(self) -> bool {
        matches!(self.code(), 0x20..=0x2f)
    }

    /// A short name of the condition, for logs and reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        use FaultReason as F;
        match self {
            F::RootEntryNotPresent => "root entry not present",
            F::ContextEntryNotPresent => "context entry not present",
            F::ContextEntryInvalid => "context entry invalid",
            F::AddressBeyondAgaw => "address beyond AGAW",
            F::WriteDenied => "write denied",
            F::ReadDenied => "read denied",
            F::SsEntryAccess => "second-stage entry access error",
            F::RootTableAccess => "root table access error",
            F::ContextTableAccess => "context table access error",
            F::RootEntryReserved => "root entry reserved bit set",
            F::ContextEntryReserved => "context entry reserved bit set",
            F::SsEntryReserved => "second-stage entry reserved bit set",
            F::TranslationBlocked => "translation blocked by TT",
            F::InterruptAddressRange => "address in interrupt range",
            F::IrRequestReserved => "IR: request reserved field set",
            F::IrIndexBeyondTable => "IR: index beyond table",
            F::IrteNotPresent => "IR: IRTE not present",
            F::IrTableAccess => "IR: table access error",
            F::IrteReserved => "IR: IRTE reserved bit set",
            F::IrCompatibilityBlocked => "IR: compatibility interrupt blocked",
            F::IrSourceIdInvalid => "IR: source-id invalid",
            F::SmRootTableAddressInvalid => "SM: root table address invalid",
            F::SmLegacyRequestWithPasid => "SM: request with PASID in legacy mode",
            F::SmLegacyPageRequest => "SM: page request in legacy mode",
            F::SmRootEntryAccess => "SM: root entry access error",
            F::SmRootEntryNotPresent => "SM: root entry not present",
            F::SmRootEntryReserved => "SM: root entry reserved bit set",
            F::SmContextEntryAccess => "SM: context entry access error",
            F::SmContextEntryNotPresent => "SM: context entry not present",
            F::SmContextEntryReserved => "SM: context entry reserved bit set",
            F::SmContextEntryInvalid => "SM: context entry invalid",
            F::SmContextDteClear => "SM: context entry DTE clear",
            F::SmContextPasideClear => "SM: context entry PASIDE clear",
            F::SmPasidBeyondDirectory => "SM: PASID beyond directory size",
            F::SmContextPreClear => "SM: context entry PRE clear",
            F::SmRidPasidInvalid => "SM: RID_PASID invalid",
            F::SmPasidDirEntryAccess => "SM: PASID directory entry access error",
            F::SmPasidDirEntryNotPresent => "SM: PASID directory entry not present",
            F::SmPasidDirEntryReserved => "SM: PASID directory entry reserved bit set",
            F::SmPasidEntryAccess => "SM: PASID entry access error",
            F::SmPasidEntryNotPresent => "SM: PASID entry not present",
            F::SmPasidEntryReserved => "SM: PASID entry reserved bit set",
            F::SmPasidEntryInvalid => "SM: PASID entry invalid",
            F::SmPasidEreClear => "SM: PASID entry ERE clear",
            F::SmPasidSreClear => "SM: PASID entry SRE clear",
            F::SmFsEntryAccess => "SM: first-stage entry access error",
            F::SmFsEntryNotPresent => "SM: first-stage entry not present",
            F::SmFsEntryReserved => "SM: first-stage entry reserved bit set",
            F::SmFsptptrAccess => "SM: first-stage root access error",
            F::SmNestedFsAddressBeyondSs => "SM: nested first-stage address beyond second stage",
            F::SmNestedFsRootReadDenied => "SM: nested first-stage root read denied",
            F::SmNestedFsEntryReadDenied => "SM: nested first-stage entry read denied",
            F::SmNestedFsEntryWriteDenied => "SM: nested first-stage A/D write denied",
            F::SmSsEntryAccess => "SM: second-stage entry access error",
            F::SmSsEntryNotPresent => "SM: second-stage entry not present",
            F::SmSsEntryReserved => "SM: second-stage entry reserved bit set",
            F::SmSsptptrInvalid => "SM: second-stage pointer invalid",
            F::SmSsAdUpdateNoSnoop => "SM: second-stage A/D update without snoop",
            F::SmNonCanonical => "SM: address not canonical",
            F::SmUserAccessDenied => "SM: user access to supervisor page",
            F::SmExecuteDenied => "SM: execute denied",
            F::SmAddressBeyondMgaw => "SM: address beyond MGAW",
            F::SmSsOutputBeyondHaw => "SM: second-stage output beyond HAW",
            F::SmWriteDenied => "SM: write denied",
            F::SmReadDenied => "SM: read denied",
            F::SmInterruptAddressRange => "SM: address in interrupt range",
            F::SmFsAdUpdateNoSnoop => "SM: first-stage A/D update without snoop",
            F::SmFsAdUpdateFailed => "SM: first-stage A/D update failed",
        }
    }
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} {}", self.code(), self.name())
    }
}

spec_enum! {
    /// AT, the PCIe address type of the faulted request. 11b is reserved.
    pub enum AddressType {
        /// 00b: untranslated request.
        Untranslated = 0,
        /// 01b: translation request (ATS).
        TranslationRequest = 1,
        /// 10b: translated request.
        Translated = 2,
    }
}

/// The faulted request's type, from the record's T2 and T1 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestType {
    /// T2 = 0, T1 = 0.
    Write,
    /// T2 = 0, T1 = 1.
    Read,
    /// T2 = 1, T1 = 0.
    PageRequest,
    /// T2 = 1, T1 = 1.
    AtomicOp,
}

/// §9.9 Fault Record: the 128-bit layout of a fault recording register (FRCD_REG, at
/// `CAP.FRO * 16 + 16 * index`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct FaultRecord([u64; 2]);

view_words!(FaultRecord, 2);

bitfields! {
    impl FaultRecord: debug(reserved_set) {
        /// Fault information: the page address of the faulted request: the page address of the
        /// faulted request.
        FI = bits(63, 12) => fi, set_fi: addr;
        /// Source identifier (requester ID): the requester ID of the faulted request.
        SID = bits(79, 64) => sid, set_sid: u16;
        /// Type bit 2: 0 write/read, 1 page request/AtomicOp: see [`Self::request_type`].
        T2 = bit(92) => t2, set_t2: bool;
        /// Privilege mode requested: the faulted request had supervisor privilege.
        PRIV = bit(93) => priv_, set_priv: bool;
        /// Execute permission requested: the faulted request asked for execute permission.
        EXE = bit(94) => exe, set_exe: bool;
        /// PASID present: the faulted request carried a PASID (PV is valid).
        PP = bit(95) => pp, set_pp: bool;
        /// Fault reason: the fault reason.
        FR = bits(103, 96) => fr, set_fr, fr_raw, set_fr_raw: enum(FaultReason);
        /// PASID value: the PASID of the faulted request, if PP.
        PV = bits(123, 104) => pv, set_pv: u32;
        /// Address type: the faulted request's address type.
        AT = bits(125, 124) => at, set_at, at_raw, set_at_raw: enum(AddressType);
        /// Type bit 1: 0 write/page request, 1 read/AtomicOp: see [`Self::request_type`].
        T1 = bit(126) => t1, set_t1: bool;
        /// Fault: the record holds a fault (write 1 to clear): the record holds a fault.
        F = bit(127) => f, set_f: bool;
    }
}

impl FaultRecord {
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(11, 0), WideField::bits(91, 80)];

    /// The faulted request's type (T2, T1).
    #[must_use]
    pub fn request_type(&self) -> RequestType {
        match (self.t2(), self.t1()) {
            (false, false) => RequestType::Write,
            (false, true) => RequestType::Read,
            (true, false) => RequestType::PageRequest,
            (true, true) => RequestType::AtomicOp,
        }
    }

    /// Sets T2 and T1 for `t`.
    pub fn set_request_type(&mut self, t: RequestType) {
        let (t2, t1) = match t {
            RequestType::Write => (false, false),
            RequestType::Read => (false, true),
            RequestType::PageRequest => (true, false),
            RequestType::AtomicOp => (true, true),
        };
        self.set_t2(t2);
        self.set_t1(t1);
    }

    /// Whether a reserved bit is set (hardware never sets one).
    #[must_use]
    pub fn reserved_bits_set(&self) -> bool {
        any_set(&self.0, &Self::fixed_reserved_mask())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_reserved_codes_stay_visible() {
        for &r in FaultReason::ALL {
            assert_eq!(FaultReason::from_code(r.code()), Ok(r));
            assert!(!r.name().is_empty());
        }
        assert_eq!(FaultReason::from_code(0), Err(Reserved(0)), "0 is reserved");
        assert_eq!(FaultReason::from_code(0x0f), Err(Reserved(0x0f)));
        assert_eq!(FaultReason::from_code(0x49), Err(Reserved(0x49)));
        assert!(FaultReason::SmContextPreClear.is_scalable());
        assert!(!FaultReason::ContextEntryInvalid.is_scalable());
        assert!(FaultReason::IrteNotPresent.is_interrupt_remapping());
        assert_eq!(FaultReason::SmContextPreClear.to_string(), "0x47 SM: context entry PRE clear");
    }

    #[test]
    fn request_type_round_trips() {
        let mut r = FaultRecord::default();
        for t in
            [RequestType::Write, RequestType::Read, RequestType::PageRequest, RequestType::AtomicOp]
        {
            r.set_request_type(t);
            assert_eq!(r.request_type(), t);
        }
    }
}

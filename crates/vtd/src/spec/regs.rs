//! §11.4 Register Descriptions: the remapping unit's MMIO registers.
//!
//! Each register is a typed offset ([`Reg32`] or [`Reg64`], so the type checks the access
//! width) and a module of the same name, lowercased, holding its fields named after the spec
//! mnemonics and a `FIELDS` list, both from one `bitfields!` declaration:
//! [`Field32`](super::Field32)s for a 32-bit register, [`Field`](super::Field)s for a 64-bit
//! one. Two register blocks float: the fault recording registers start at `CAP.FRO * 16` and
//! the IOTLB registers at `ECAP.IRO * 16`; [`frcd`],
//! [`iva`] and [`iotlb`] compute them from the capability values.
//!
//! Not declared: the advanced fault log (AFLOG_REG, deprecated), the MTRR registers (memory
//! type support is not modelled), the performance-monitoring and enhanced-command registers.

use super::{Reg32, Reg64};

/// §11.4.1 Version Register.
pub const VER: Reg32 = Reg32(0x00);
/// §11.4.2 Capability Register.
pub const CAP: Reg64 = Reg64(0x08);
/// §11.4.3 Extended Capability Register.
pub const ECAP: Reg64 = Reg64(0x10);
/// §11.4.4 Global Command Register.
pub const GCMD: Reg32 = Reg32(0x18);
/// §11.4.5 Global Status Register.
pub const GSTS: Reg32 = Reg32(0x1c);
/// §11.4.6 Root Table Address Register.
pub const RTADDR: Reg64 = Reg64(0x20);
/// §11.4.7 Context Command Register.
pub const CCMD: Reg64 = Reg64(0x28);
/// Fault Status Register.
pub const FSTS: Reg32 = Reg32(0x34);
/// Fault Event Control Register.
pub const FECTL: Reg32 = Reg32(0x38);
/// Fault Event Data Register.
pub const FEDATA: Reg32 = Reg32(0x3c);
/// Fault Event Address Register.
pub const FEADDR: Reg32 = Reg32(0x40);
/// Fault Event Upper Address Register.
pub const FEUADDR: Reg32 = Reg32(0x44);
/// Protected Memory Enable Register.
pub const PMEN: Reg32 = Reg32(0x64);
/// Protected Low-Memory Base Register.
pub const PLMBASE: Reg32 = Reg32(0x68);
/// Protected Low-Memory Limit Register.
pub const PLMLIMIT: Reg32 = Reg32(0x6c);
/// Protected High-Memory Base Register.
pub const PHMBASE: Reg64 = Reg64(0x70);
/// Protected High-Memory Limit Register.
pub const PHMLIMIT: Reg64 = Reg64(0x78);
/// Invalidation Queue Head Register.
pub const IQH: Reg64 = Reg64(0x80);
/// Invalidation Queue Tail Register.
pub const IQT: Reg64 = Reg64(0x88);
/// Invalidation Queue Address Register.
pub const IQA: Reg64 = Reg64(0x90);
/// Invalidation Completion Status Register.
pub const ICS: Reg32 = Reg32(0x9c);
/// Invalidation Event Control Register.
pub const IECTL: Reg32 = Reg32(0xa0);
/// Invalidation Event Data Register.
pub const IEDATA: Reg32 = Reg32(0xa4);
/// Invalidation Event Address Register.
pub const IEADDR: Reg32 = Reg32(0xa8);
/// Invalidation Event Upper Address Register.
pub const IEUADDR: Reg32 = Reg32(0xac);
/// Invalidation Queue Error Record Register.
pub const IQER: Reg64 = Reg64(0xb0);
/// Interrupt Remapping Table Address Register (declared; interrupt remapping is not modelled).
pub const IRTA: Reg64 = Reg64(0xb8);
/// Page Request Queue Head Register.
pub const PQH: Reg64 = Reg64(0xc0);
/// Page Request Queue Tail Register.
pub const PQT: Reg64 = Reg64(0xc8);
/// Page Request Queue Address Register.
pub const PQA: Reg64 = Reg64(0xd0);
/// Page Request Status Register.
pub const PRS: Reg32 = Reg32(0xdc);
/// Page Request Event Control Register.
pub const PECTL: Reg32 = Reg32(0xe0);
/// Page Request Event Data Register.
pub const PEDATA: Reg32 = Reg32(0xe4);
/// Page Request Event Address Register.
pub const PEADDR: Reg32 = Reg32(0xe8);
/// Page Request Event Upper Address Register.
pub const PEUADDR: Reg32 = Reg32(0xec);

/// Every fixed-offset register: name, offset, width in bytes.
pub const FIXED: &[(&str, u64, u8)] = &[
    ("VER", VER.0, 4),
    ("CAP", CAP.0, 8),
    ("ECAP", ECAP.0, 8),
    ("GCMD", GCMD.0, 4),
    ("GSTS", GSTS.0, 4),
    ("RTADDR", RTADDR.0, 8),
    ("CCMD", CCMD.0, 8),
    ("FSTS", FSTS.0, 4),
    ("FECTL", FECTL.0, 4),
    ("FEDATA", FEDATA.0, 4),
    ("FEADDR", FEADDR.0, 4),
    ("FEUADDR", FEUADDR.0, 4),
    ("PMEN", PMEN.0, 4),
    ("PLMBASE", PLMBASE.0, 4),
    ("PLMLIMIT", PLMLIMIT.0, 4),
    ("PHMBASE", PHMBASE.0, 8),
    ("PHMLIMIT", PHMLIMIT.0, 8),
    ("IQH", IQH.0, 8),
    ("IQT", IQT.0, 8),
    ("IQA", IQA.0, 8),
    ("ICS", ICS.0, 4),
    ("IECTL", IECTL.0, 4),
    ("IEDATA", IEDATA.0, 4),
    ("IEADDR", IEADDR.0, 4),
    ("IEUADDR", IEUADDR.0, 4),
    ("IQER", IQER.0, 8),
    ("IRTA", IRTA.0, 8),
    ("PQH", PQH.0, 8),
    ("PQT", PQT.0, 8),
    ("PQA", PQA.0, 8),
    ("PRS", PRS.0, 4),
    ("PECTL", PECTL.0, 4),
    ("PEDATA", PEDATA.0, 4),
    ("PEADDR", PEADDR.0, 4),
    ("PEUADDR", PEUADDR.0, 4),
];

/// Bytes per fault recording register.
pub const FRCD_BYTES: u64 = 16;

/// The fault recording register `index` (0-based, below `cap::nfr_count(cap)`): the low and
/// high 64-bit halves of the 128-bit record (§9.9), at `CAP.FRO * 16 + 16 * index`.
#[must_use]
pub const fn frcd(cap: u64, index: u64) -> (Reg64, Reg64) {
    let at = cap::fro_bytes(cap) + index * FRCD_BYTES;
    (Reg64(at), Reg64(at + 8))
}

/// §11.4.8.1 Invalidate Address Register, at `ECAP.IRO * 16`.
#[must_use]
pub const fn iva(ecap: u64) -> Reg64 {
    Reg64(ecap::iro_bytes(ecap))
}

/// §11.4.8.2 IOTLB Invalidate Register, at `ECAP.IRO * 16 + 8`.
#[must_use]
pub const fn iotlb(ecap: u64) -> Reg64 {
    Reg64(ecap::iro_bytes(ecap) + 8)
}

/// Version Register fields.
pub mod ver {
    sviommu_memory::bitfields! { reg32;
        /// Minor version.
        MIN = bits(3, 0);
        /// Major version.
        MAX = bits(7, 4);
    }
}

/// Capability Register fields.
pub mod cap {
    sviommu_memory::bitfields! { reg64;
        /// Number of domains supported: `2^(4 + 2 * ND)` domain IDs (111b reserved).
        ND = bits(2, 0);
        /// Advanced fault logging (deprecated).
        AFL = bit(3);
        /// Required write-buffer flushing.
        RWBF = bit(4);
        /// Protected low-memory region.
        PLMR = bit(5);
        /// Protected high-memory region.
        PHMR = bit(6);
        /// Caching mode: not-present and erroneous entries may be cached, so software invalidates
        /// after making an entry present (what a virtual IOMMU advertises).
        CM = bit(7);
        /// Supported adjusted guest address widths: bit `n` set means AW encoding `n`
        /// ([`Aw::sagaw_bit`](crate::spec::Aw::sagaw_bit)).
        SAGAW = bits(12, 8);
        /// Maximum guest address width, minus one.
        MGAW = bits(21, 16);
        /// Zero-length read.
        ZLR = bit(22);
        /// Fault-recording register offset, in 16-byte units.
        FRO = bits(33, 24);
        /// Second-stage large page support: bit 0 2 MiB, bit 1 1 GiB (bits 2 and 3 reserved).
        #[doc(alias = "SLLPS")]
        SSLPS = bits(37, 34);
        /// Page-selective invalidation.
        PSI = bit(39);
        /// Number of fault-recording registers, minus one.
        NFR = bits(47, 40);
        /// Maximum address mask value for page-selective invalidations.
        MAMV = bits(53, 48);
        /// Write draining.
        DWD = bit(54);
        /// Read draining.
        DRD = bit(55);
        /// First-stage 1 GiB pages.
        #[doc(alias = "FL1GP")]
        FS1GP = bit(56);
        /// Posted interrupts.
        PI = bit(59);
        /// First-stage 5-level paging.
        #[doc(alias = "FL5LP")]
        FS5LP = bit(60);
        /// Enhanced command support.
        ECMDS = bit(61);
        /// Enhanced set interrupt-remap-table pointer.
        ESIRTPS = bit(62);
        /// Enhanced set root-table pointer: SRTP also invalidates the caches.
        ESRTPS = bit(63);
    }

    /// SSLPS bit for 2 MiB second-stage pages.
    pub const SSLPS_2M: u64 = 1 << 0;
    /// SSLPS bit for 1 GiB second-stage pages.
    pub const SSLPS_1G: u64 = 1 << 1;

    /// Domain IDs supported, `2^(4 + 2 * ND)` (ND = 111b is reserved and reads as 0).
    #[must_use]
    pub const fn domains(cap: u64) -> u64 {
        match ND.get(cap) {
            nd @ 0..=6 => 1 << (4 + 2 * nd),
            _ => 0,
        }
    }

    /// The maximum guest address width in bits, MGAW + 1.
    #[must_use]
    pub const fn mgaw_bits(cap: u64) -> u64 {
        MGAW.get(cap) + 1
    }

    /// Byte offset of the first fault recording register.
    #[must_use]
    pub const fn fro_bytes(cap: u64) -> u64 {
        FRO.get(cap) * 16
    }

    /// Number of fault recording registers, NFR + 1.
    #[must_use]
    pub const fn nfr_count(cap: u64) -> u64 {
        NFR.get(cap) + 1
    }
}

/// Extended Capability Register fields.
pub mod ecap {
    sviommu_memory::bitfields! { reg64;
        /// Page-walk coherency (legacy mode).
        C = bit(0);
        /// Queued invalidation.
        QI = bit(1);
        /// Device-TLB (ATS).
        DT = bit(2);
        /// Interrupt remapping.
        IR = bit(3);
        /// Extended interrupt mode (x2APIC).
        EIM = bit(4);
        /// Pass-through.
        PT = bit(6);
        /// Snoop control.
        SC = bit(7);
        /// IOTLB register offset, in 16-byte units.
        IRO = bits(17, 8);
        /// Maximum handle mask value (interrupt entry cache invalidation).
        MHMV = bits(23, 20);
        /// Memory type support.
        MTS = bit(25);
        /// Nested translation.
        NEST = bit(26);
        /// Page requests.
        PRS = bit(29);
        /// Execute requests.
        ERS = bit(30);
        /// Supervisor requests.
        SRS = bit(31);
        /// No-write flag.
        NWFS = bit(33);
        /// Extended accessed flag.
        EAFS = bit(34);
        /// PASID size supported, minus one (bits of PASID).
        PSS = bits(39, 35);
        /// PASID support.
        PASID = bit(40);
        /// Device-TLB invalidation throttle.
        DIT = bit(41);
        /// Page-request drain.
        PDS = bit(42);
        /// Scalable-mode translation.
        SMTS = bit(43);
        /// Virtual command.
        VCS = bit(44);
        /// Second-stage accessed/dirty.
        #[doc(alias = "SLADS")]
        SSADS = bit(45);
        /// Second-stage translation (in scalable mode).
        #[doc(alias = "SLTS")]
        SSTS = bit(46);
        /// First-stage translation.
        #[doc(alias = "FLTS")]
        FSTS = bit(47);
        /// Scalable-mode page-walk coherency.
        #[doc(alias = "SMPWC")]
        SMPWCS = bit(48);
        /// RID_PASID support.
        RPS = bit(49);
        /// Performance monitoring.
        PMS = bit(51);
        /// Abort-DMA mode (RTADDR.TTM = 11b).
        ADMS = bit(52);
        /// RID_PRIV support.
        RPRIVS = bit(53);
    }

    /// Byte offset of the IOTLB registers.
    #[must_use]
    pub const fn iro_bytes(ecap: u64) -> u64 {
        IRO.get(ecap) * 16
    }

    /// Bits of PASID supported, PSS + 1.
    #[must_use]
    pub const fn pasid_bits(ecap: u64) -> u64 {
        PSS.get(ecap) + 1
    }
}

/// Global Command Register fields (each a one-shot or enable command; GSTS reports it).
pub mod gcmd {
    sviommu_memory::bitfields! { reg32;
        /// Compatibility format interrupt.
        CFI = bit(23);
        /// Set interrupt-remap-table pointer.
        SIRTP = bit(24);
        /// Interrupt remapping enable.
        IRE = bit(25);
        /// Queued invalidation enable.
        QIE = bit(26);
        /// Write-buffer flush.
        WBF = bit(27);
        /// Enable advanced fault logging (deprecated).
        EAFL = bit(28);
        /// Set fault log (deprecated).
        SFL = bit(29);
        /// Set root-table pointer: latch RTADDR_REG.
        SRTP = bit(30);
        /// Translation enable.
        TE = bit(31);
    }
}

/// Global Status Register fields (same bit positions as their GCMD commands).
pub mod gsts {
    sviommu_memory::bitfields! { reg32;
        /// Compatibility format interrupt status.
        CFIS = bit(23);
        /// Interrupt-remap-table pointer status.
        IRTPS = bit(24);
        /// Interrupt remapping enable status.
        IRES = bit(25);
        /// Queued invalidation enable status.
        QIES = bit(26);
        /// Write-buffer flush status (1 while a flush is in progress).
        WBFS = bit(27);
        /// Advanced fault logging status.
        AFLS = bit(28);
        /// Fault log status.
        FLS = bit(29);
        /// Root-table pointer status.
        RTPS = bit(30);
        /// Translation enable status.
        TES = bit(31);
    }
}

/// Root Table Address Register fields.
pub mod rtaddr {
    sviommu_memory::bitfields! { reg64;
        /// Translation table mode.
        TTM = bits(11, 10);
        /// Root table address (4 KiB aligned; bits at and above HAW reserved).
        RTA = bits(63, 12);
    }

    spec_enum! {
        /// TTM, the translation table mode. 10b (revision 2's extended mode) is reserved.
        pub enum Ttm {
            /// 00b: legacy root and context entries.
            Legacy = 0,
            /// 01b: scalable-mode root and context entries (needs ECAP.SMTS).
            Scalable = 1,
            /// 11b: abort-DMA mode: every DMA request is blocked (needs ECAP.ADMS).
            AbortDma = 3,
        }
    }
}

/// Context Command Register fields (register-based context-cache invalidation).
pub mod ccmd {
    sviommu_memory::bitfields! { reg64;
        /// Domain ID.
        DID = bits(15, 0);
        /// Source ID.
        SID = bits(31, 16);
        /// Function mask.
        FM = bits(33, 32);
        /// Context actual invalidation granularity (written by hardware).
        CAIG = bits(60, 59);
        /// Context invalidation request granularity
        /// ([`CcGranularity`](crate::spec::inv::CcGranularity)).
        CIRG = bits(62, 61);
        /// Invalidate context cache: set to request, hardware clears it when done.
        ICC = bit(63);
    }
}

/// Fault Status Register fields.
pub mod fsts {
    sviommu_memory::bitfields! { reg32;
        /// Primary fault overflow (write 1 to clear).
        PFO = bit(0);
        /// Primary pending fault: some fault recording register has F set.
        PPF = bit(1);
        /// Invalidation queue error (write 1 to clear).
        IQE = bit(4);
        /// Invalidation completion error (write 1 to clear).
        ICE = bit(5);
        /// Invalidation time-out error (write 1 to clear).
        ITE = bit(6);
        /// Fault record index: the first pending fault recording register.
        FRI = bits(15, 8);
    }
}

/// Interrupt-message control fields, shared by FECTL, IECTL and PECTL.
pub mod ectl {
    sviommu_memory::bitfields! { reg32;
        /// Interrupt pending (read-only): an event is held back.
        IP = bit(30);
        /// Interrupt mask.
        IM = bit(31);
    }
}

/// Fault Event Control Register fields.
pub mod fectl {
    pub use super::ectl::{FIELDS, IM, IP};
}

/// Invalidation Event Control Register fields.
pub mod iectl {
    pub use super::ectl::{FIELDS, IM, IP};
}

/// Page Request Event Control Register fields.
pub mod pectl {
    pub use super::ectl::{FIELDS, IM, IP};
}

/// Interrupt-message data fields, shared by FEDATA, IEDATA and PEDATA.
pub mod edata {
    sviommu_memory::bitfields! { reg32;
        /// Interrupt message data.
        IMD = bits(15, 0);
        /// Extended interrupt message data (with 32-bit message data).
        EIMD = bits(31, 16);
    }
}

/// Interrupt-message address fields, shared by FEADDR, IEADDR and PEADDR (the upper-address
/// registers hold bits 63:32 whole).
pub mod eaddr {
    sviommu_memory::bitfields! { reg32;
        /// Message address, bits 31:2.
        MA = bits(31, 2);
    }
}

/// Protected Memory Enable Register fields.
pub mod pmen {
    sviommu_memory::bitfields! { reg32;
        /// Protected region status.
        PRS = bit(0);
        /// Enable protected memory.
        EPM = bit(31);
    }
}

/// Invalidate Address Register fields (register-based page-selective IOTLB invalidation).
pub mod iva_reg {
    sviommu_memory::bitfields! { reg64;
        /// Address mask: `2^AM` pages.
        AM = bits(5, 0);
        /// Invalidation hint.
        IH = bit(6);
        /// Address.
        ADDR = bits(63, 12);
    }
}

/// IOTLB Invalidate Register fields.
pub mod iotlb_reg {
    sviommu_memory::bitfields! { reg64;
        /// Domain ID.
        DID = bits(47, 32);
        /// Drain writes.
        DW = bit(48);
        /// Drain reads.
        DR = bit(49);
        /// IOTLB actual invalidation granularity (written by hardware).
        IAIG = bits(58, 57);
        /// IOTLB invalidation request granularity
        /// ([`IotlbGranularity`](crate::spec::inv::IotlbGranularity)).
        IIRG = bits(61, 60);
        /// Invalidate IOTLB: set to request, hardware clears it when done.
        IVT = bit(63);
    }
}

/// Invalidation Queue Head Register fields.
pub mod iqh {
    sviommu_memory::bitfields! { reg64;
        /// Queue head: byte offset of the next descriptor hardware fetches (bit 4 is 0 with
        /// 256-bit descriptors).
        QH = bits(18, 4);
    }
}

/// Invalidation Queue Tail Register fields.
pub mod iqt {
    sviommu_memory::bitfields! { reg64;
        /// Queue tail: byte offset of the next descriptor software writes (bit 4 set with 256-bit
        /// descriptors is an invalidation queue error).
        QT = bits(18, 4);
    }
}

/// Invalidation Queue Address Register fields.
pub mod iqa {
    sviommu_memory::bitfields! { reg64;
        /// Queue size: `2^QS` 4 KiB pages.
        QS = bits(2, 0);
        /// Descriptor width: 0 128-bit, 1 256-bit.
        DW = bit(11);
        /// Queue base address (4 KiB aligned).
        IQA = bits(63, 12);
    }

    /// Bytes in the queue, `4 KiB * 2^QS`.
    #[must_use]
    pub const fn queue_bytes(iqa: u64) -> u64 {
        4096 << QS.get(iqa)
    }
}

/// Invalidation Completion Status Register fields.
pub mod ics {
    sviommu_memory::bitfields! { reg32;
        /// Invalidation wait descriptor complete (write 1 to clear).
        IWC = bit(0);
    }
}

/// Invalidation Queue Error Record Register fields.
pub mod iqer {
    sviommu_memory::bitfields! { reg64;
        /// Invalidation queue error information.
        IQEI = bits(3, 0);
        /// Source ID of the device that timed out (ITE).
        ITESID = bits(47, 32);
        /// Source ID of the unexpected completion (ICE).
        ICESID = bits(63, 48);
    }

    spec_enum! {
        /// IQEI: why FSTS.IQE was set. Valid only while IQE is set.
        pub enum Iqei {
            /// 0h: no information (older implementations).
            NotAvailable = 0,
            /// 1h: an invalid tail pointer (beyond the queue, or bit 4 set with 256-bit
            /// descriptors).
            TailPointer = 1,
            /// 2h: fetching the descriptor failed.
            Fetch = 2,
            /// 3h: an invalid (reserved or unsupported) descriptor type.
            DescriptorType = 3,
            /// 4h: a reserved field of a valid descriptor type is set (or holds a reserved
            /// encoding).
            ReservedField = 4,
            /// 5h: the descriptor width IQA_REG.DW programs is invalid for the descriptor.
            DescriptorWidth = 5,
        }
    }
}

/// Page Request Queue Head Register fields.
pub mod pqh {
    sviommu_memory::bitfields! { reg64;
        /// Queue head: byte offset of the next request software reads (32-byte entries).
        PQH = bits(18, 5);
    }
}

/// Page Request Queue Tail Register fields.
pub mod pqt {
    sviommu_memory::bitfields! { reg64;
        /// Queue tail: byte offset where hardware writes the next request.
        PQT = bits(18, 5);
    }
}

/// Page Request Queue Address Register fields.
pub mod pqa {
    sviommu_memory::bitfields! { reg64;
        /// Queue size: `2^PQS` 4 KiB pages.
        PQS = bits(2, 0);
        /// Queue base address (4 KiB aligned).
        PQA = bits(63, 12);
    }

    /// Bytes in the queue, `4 KiB * 2^PQS`.
    #[must_use]
    pub const fn queue_bytes(pqa: u64) -> u64 {
        4096 << PQS.get(pqa)
    }
}

/// Page Request Status Register fields.
pub mod prs {
    sviommu_memory::bitfields! { reg32;
        /// Pending page request (write 1 to clear).
        PPR = bit(0);
        /// Page request overflow (write 1 to clear).
        PRO = bit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floating_blocks_follow_the_capabilities() {
        // FRO = 22h (offset 220h), NFR = 0 (one register).
        let cap = 0x22 << 24;
        assert_eq!(frcd(cap, 0), (Reg64(0x220), Reg64(0x228)));
        assert_eq!(frcd(cap, 2).0, Reg64(0x240));
        assert_eq!(cap::nfr_count(cap), 1);
        // IRO = 0Fh (offset F0h).
        let ecap = 0x0f << 8;
        assert_eq!(iva(ecap), Reg64(0xf0));
        assert_eq!(iotlb(ecap), Reg64(0xf8));
    }

    #[test]
    fn capability_helpers() {
        assert_eq!(cap::domains(6), 1 << 16);
        assert_eq!(cap::domains(0), 16);
        assert_eq!(cap::domains(7), 0);
        assert_eq!(cap::mgaw_bits(47 << 16), 48);
        assert_eq!(ecap::pasid_bits(19 << 35), 20);
        assert_eq!(iqa::queue_bytes(0), 4096);
        assert_eq!(pqa::queue_bytes(2), 16384);
        assert_eq!(rtaddr::Ttm::try_from(2), Err(crate::spec::Reserved(2)));
    }
}

//! The PASID directory entry (§9.5) and the 512-bit PASID-table entry (§9.6).
//!
//! A scalable-mode context entry points at a PASID directory of `2^(PDTS + 7)` 64-bit entries,
//! indexed by PASID bits 19:6; each present directory entry points at a 4 KiB PASID table of 64
//! 512-bit entries, indexed by PASID bits 5:0. The PASID-table entry says how the PASID's
//! requests are translated (PGTT): first stage only, second stage only, nested, or
//! pass-through.

use sviommu_memory::bits::{bitfields, WideField};

use super::{any_set, bits_from, Aw};

/// Entries in one PASID table (one 4 KiB page of 64-byte entries).
pub const PASID_TABLE_ENTRIES: u32 = 64;

/// Bits of a PASID.
pub const PASID_BITS: u8 = 20;

/// The PASID-directory index of `pasid` (PASID bits 19:6).
#[must_use]
pub const fn dir_index(pasid: u32) -> u32 {
    (pasid >> 6) & 0x3fff
}

/// The PASID-table index of `pasid` (PASID bits 5:0).
#[must_use]
pub const fn table_index(pasid: u32) -> u32 {
    pasid & 0x3f
}

// ---------------------------------------------------------------------------------------------
// §9.5 Scalable-Mode PASID Directory Entry
// ---------------------------------------------------------------------------------------------

/// §9.5 Scalable-Mode PASID Directory Entry: points at one PASID table (64 PASIDs).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PasidDirEntry([u64; 1]);

view_words!(PasidDirEntry, 1);

bitfields! {
    impl PasidDirEntry: debug(reserved_set) {
        /// Present: the PASID table is present.
        P = bit(0) => p, set_p: bool;
        /// Fault processing disable: faults for requests that use this entry are not recorded.
        FPD = bit(1) => fpd, set_fpd: bool;
        /// Scalable-mode PASID-table pointer: the PASID table's address.
        SMPTBLPTR = bits(63, 12) => smptblptr, set_smptblptr: addr;
    }
}

impl PasidDirEntry {
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(11, 2)];

    /// Reserved bits for a host address width of `haw` bits.
    #[must_use]
    pub fn reserved_mask(haw: u8) -> [u64; 1] {
        let mut m = Self::fixed_reserved_mask();
        m[0] |= Self::SMPTBLPTR.field.mask() & bits_from(haw);
        m
    }

    /// Whether a reserved bit is set (fault reason 52h when the entry is present).
    #[must_use]
    pub fn reserved_bits_set(&self, haw: u8) -> bool {
        any_set(&self.0, &Self::reserved_mask(haw))
    }
}

// ---------------------------------------------------------------------------------------------
// §9.6 Scalable-Mode PASID Table Entry
// ---------------------------------------------------------------------------------------------

spec_enum! {
    /// PGTT, the PASID-granular translation type (§9.6). 000b and 101b–111b are reserved.
    pub enum Pgtt {
        /// 001b: first-stage translation only (FSPTPTR, FSPM).
        FirstStage = 1,
        /// 010b: second-stage translation only (SSPTPTR, AW).
        SecondStage = 2,
        /// 011b: nested: first-stage output, and every first-stage table address, goes through
        /// the second stage.
        Nested = 3,
        /// 100b: pass-through: the input address is the output address.
        PassThrough = 4,
    }
}

impl Pgtt {
    /// The first-stage table (FSPTPTR, FSPM) is walked.
    #[must_use]
    pub const fn uses_first_stage(self) -> bool {
        matches!(self, Pgtt::FirstStage | Pgtt::Nested)
    }

    /// The second-stage table (SSPTPTR, AW) is walked.
    #[must_use]
    pub const fn uses_second_stage(self) -> bool {
        matches!(self, Pgtt::SecondStage | Pgtt::Nested)
    }
}

spec_enum! {
    /// FSPM, the first-stage paging mode (§9.6). 10b and 11b are reserved.
    pub enum Fspm {
        /// 00b: 4-level paging (48-bit input).
        FourLevel = 0,
        /// 01b: 5-level paging (57-bit input; needs CAP.FS5LP).
        FiveLevel = 1,
    }
}

impl Fspm {
    /// Levels of the first-stage table.
    #[must_use]
    pub const fn levels(self) -> u8 {
        match self {
            Fspm::FourLevel => 4,
            Fspm::FiveLevel => 5,
        }
    }
}

/// §9.6 Scalable-Mode PASID Table Entry (512-bit): how one PASID's requests are translated.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PasidEntry([u64; 8]);

view_words!(PasidEntry, 8);

bitfields! {
    impl PasidEntry: debug(reserved_set) {
        /// Present: the entry is present.
        P = bit(0) => p, set_p: bool;
        /// Fault processing disable: faults for requests that use this entry are not recorded.
        FPD = bit(1) => fpd, set_fpd: bool;
        /// Address width of the second-stage table: the second-stage table's width (must be
        /// advertised in CAP.SAGAW).
        AW = bits(4, 2) => aw, set_aw, aw_raw, set_aw_raw: enum(Aw);
        /// Second-stage execute enable.
        #[doc(alias = "SLEE")]
        ///
        /// SSEE: the second stage's X bit is honoured for execute requests.
        SSEE = bit(5) => ssee, set_ssee: bool;
        /// PASID-granular translation type: how this PASID's requests are translated.
        PGTT = bits(8, 6) => pgtt, set_pgtt, pgtt_raw, set_pgtt_raw: enum(Pgtt);
        /// Second-stage accessed/dirty enable.
        #[doc(alias = "SLADE")]
        ///
        /// SSADE: the second stage's accessed/dirty bits are set by hardware (needs ECAP.SSADS).
        SSADE = bit(9) => ssade, set_ssade: bool;
        /// Second-stage page-table pointer.
        #[doc(alias = "SLPTPTR")]
        ///
        /// SSPTPTR: the second-stage table's root (a host physical address).
        SSPTPTR = bits(63, 12) => ssptptr, set_ssptptr: addr;
        /// Domain identifier: the domain this PASID's translations are tagged with.
        DID = bits(79, 64) => did, set_did: u16;
        /// Page-walk snoop: page-walk accesses snoop the processor caches.
        PWSNP = bit(87) => pwsnp, set_pwsnp: bool;
        /// Page snoop: every access translated through this entry snoops.
        PGSNP = bit(88) => pgsnp, set_pgsnp: bool;
        /// Cache disable: cache disable for first-stage accesses (with ECAP.MTS).
        CD = bit(89) => cd, set_cd: bool;
        /// Extended memory type enable: EMT is used for first-stage accesses.
        EMTE = bit(90) => emte, set_emte: bool;
        /// Extended memory type: the extended memory type (IA-32 memory type encodings).
        EMT = bits(93, 91) => emt, set_emt: u8;
        /// Page-level write-through (of the first-stage table root): page-level write-through for
        /// the first-stage root table access.
        PWT = bit(94) => pwt, set_pwt: bool;
        /// Page-level cache disable (of the first-stage table root): page-level cache disable for
        /// the first-stage root table access.
        PCD = bit(95) => pcd, set_pcd: bool;
        /// Page attribute table: eight 3-bit page attribute entries, one per byte (IA32_PAT
        /// format).
        PAT = bits(127, 96) => pat, set_pat: u32;
        /// Supervisor request enable: requests with supervisor privilege are allowed (needs
        /// ECAP.SRS).
        SRE = bit(128) => sre, set_sre: bool;
        /// Execute request enable: requests with execute permission are allowed (needs ECAP.ERS).
        ERE = bit(129) => ere, set_ere: bool;
        /// First-stage paging mode.
        #[doc(alias = "FLPM")]
        ///
        /// FSPM: the first-stage table's depth.
        FSPM = bits(131, 130) => fspm, set_fspm, fspm_raw, set_fspm_raw: enum(Fspm);
        /// Write protect enable: supervisor writes honour first-stage read-only pages (CR0.WP).
        WPE = bit(132) => wpe, set_wpe: bool;
        /// No-execute enable: the first stage's XD bit is honoured (IA32_EFER.NXE).
        NXE = bit(133) => nxe, set_nxe: bool;
        /// Supervisor mode execute prevention: supervisor execute requests to user pages fault
        /// (CR4.SMEP).
        SMEP = bit(134) => smep, set_smep: bool;
        /// Extended accessed flag enable: the first stage's extended accessed flag is set by
        /// hardware (needs ECAP.EAFS).
        EAFE = bit(135) => eafe, set_eafe: bool;
        /// First-stage page-table pointer.
        #[doc(alias = "FLPTPTR")]
        ///
        /// FSPTPTR: the first-stage table's root (host physical when PGTT is first-stage only;
        /// guest physical, translated by the second stage, when nested).
        FSPTPTR = bits(191, 140) => fsptptr, set_fsptptr: addr;
    }
}

impl PasidEntry {
    /// Always-reserved bits: 11:10, 86:80, 139:136 and everything from bit 192 up.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(11, 10),
        WideField::bits(86, 80),
        WideField::bits(139, 136),
        WideField::bits(255, 192),
        WideField::bits(319, 256),
        WideField::bits(383, 320),
        WideField::bits(447, 384),
        WideField::bits(511, 448),
    ];

    /// Reserved bits for a host address width of `haw` bits. The pointer bits at and above HAW
    /// are reserved only for the pointers the entry's PGTT uses: SSPTPTR for second-stage and
    /// nested, FSPTPTR for first-stage only. A nested entry's FSPTPTR is a guest physical
    /// address, limited by the second stage instead (fault reason 74h), and a reserved PGTT is
    /// reported as an invalid entry (fault reason 5Bh), not here.
    #[must_use]
    pub fn reserved_mask(&self, haw: u8) -> [u64; 8] {
        let mut m = Self::fixed_reserved_mask();
        let above = bits_from(haw);
        match self.pgtt() {
            Ok(Pgtt::SecondStage | Pgtt::Nested) => m[0] |= Self::SSPTPTR.field.mask() & above,
            Ok(Pgtt::FirstStage) => m[2] |= Self::FSPTPTR.field.mask() & above,
            Ok(Pgtt::PassThrough) | Err(_) => {}
        }
        m
    }

    /// Whether a reserved bit is set (fault reason 5Ah when the entry is present).
    #[must_use]
    pub fn reserved_bits_set(&self, haw: u8) -> bool {
        any_set(&self.0, &self.reserved_mask(haw))
    }
}

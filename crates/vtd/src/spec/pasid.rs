//! The PASID directory entry (§9.5) and the 512-bit PASID-table entry (§9.6).
//!
//! A scalable-mode context entry points at a PASID directory of `2^(PDTS + 7)` 64-bit entries,
//! indexed by PASID bits 19:6; each present directory entry points at a 4 KiB PASID table of 64
//! 512-bit entries, indexed by PASID bits 5:0. The PASID-table entry says how the PASID's
//! requests are translated (PGTT): first stage only, second stage only, nested, or
//! pass-through.

use core::fmt;

use sviommu_memory::bits::WideField;

use super::{any_set, bits_from, Aw, Hex};

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

impl PasidDirEntry {
    /// Present.
    pub const P: WideField = WideField::bit(0);
    /// Fault processing disable.
    pub const FPD: WideField = WideField::bit(1);
    /// Scalable-mode PASID-table pointer.
    pub const SMPTBLPTR: WideField = WideField::bits(63, 12);
    /// Every named field.
    pub const FIELDS: &'static [(&'static str, WideField)] =
        &[("P", Self::P), ("FPD", Self::FPD), ("SMPTBLPTR", Self::SMPTBLPTR)];
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(11, 2)];

    flag_fields! {
        /// P: the PASID table is present.
        p, set_p = Self::P;
        /// FPD: faults for requests that use this entry are not recorded.
        fpd, set_fpd = Self::FPD;
    }
    addr_fields! {
        /// SMPTBLPTR: the PASID table's address.
        smptblptr, set_smptblptr = Self::SMPTBLPTR;
    }

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

impl fmt::Debug for PasidDirEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasidDirEntry")
            .field("p", &self.p())
            .field("fpd", &self.fpd())
            .field("smptblptr", &Hex(self.smptblptr()))
            .finish()
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

impl PasidEntry {
    /// Present.
    pub const P: WideField = WideField::bit(0);
    /// Fault processing disable.
    pub const FPD: WideField = WideField::bit(1);
    /// Address width of the second-stage table.
    pub const AW: WideField = WideField::bits(4, 2);
    /// Second-stage execute enable.
    #[doc(alias = "SLEE")]
    pub const SSEE: WideField = WideField::bit(5);
    /// PASID-granular translation type.
    pub const PGTT: WideField = WideField::bits(8, 6);
    /// Second-stage accessed/dirty enable.
    #[doc(alias = "SLADE")]
    pub const SSADE: WideField = WideField::bit(9);
    /// Second-stage page-table pointer.
    #[doc(alias = "SLPTPTR")]
    pub const SSPTPTR: WideField = WideField::bits(63, 12);
    /// Domain identifier.
    pub const DID: WideField = WideField::bits(79, 64);
    /// Page-walk snoop.
    pub const PWSNP: WideField = WideField::bit(87);
    /// Page snoop.
    pub const PGSNP: WideField = WideField::bit(88);
    /// Cache disable.
    pub const CD: WideField = WideField::bit(89);
    /// Extended memory type enable.
    pub const EMTE: WideField = WideField::bit(90);
    /// Extended memory type.
    pub const EMT: WideField = WideField::bits(93, 91);
    /// Page-level write-through (of the first-stage table root).
    pub const PWT: WideField = WideField::bit(94);
    /// Page-level cache disable (of the first-stage table root).
    pub const PCD: WideField = WideField::bit(95);
    /// Page attribute table.
    pub const PAT: WideField = WideField::bits(127, 96);
    /// Supervisor request enable.
    pub const SRE: WideField = WideField::bit(128);
    /// Execute request enable.
    pub const ERE: WideField = WideField::bit(129);
    /// First-stage paging mode.
    #[doc(alias = "FLPM")]
    pub const FSPM: WideField = WideField::bits(131, 130);
    /// Write protect enable.
    pub const WPE: WideField = WideField::bit(132);
    /// No-execute enable.
    pub const NXE: WideField = WideField::bit(133);
    /// Supervisor mode execute prevention.
    pub const SMEP: WideField = WideField::bit(134);
    /// Extended accessed flag enable.
    pub const EAFE: WideField = WideField::bit(135);
    /// First-stage page-table pointer.
    #[doc(alias = "FLPTPTR")]
    pub const FSPTPTR: WideField = WideField::bits(191, 140);
    /// Every named field.
    pub const FIELDS: &'static [(&'static str, WideField)] = &[
        ("P", Self::P),
        ("FPD", Self::FPD),
        ("AW", Self::AW),
        ("SSEE", Self::SSEE),
        ("PGTT", Self::PGTT),
        ("SSADE", Self::SSADE),
        ("SSPTPTR", Self::SSPTPTR),
        ("DID", Self::DID),
        ("PWSNP", Self::PWSNP),
        ("PGSNP", Self::PGSNP),
        ("CD", Self::CD),
        ("EMTE", Self::EMTE),
        ("EMT", Self::EMT),
        ("PWT", Self::PWT),
        ("PCD", Self::PCD),
        ("PAT", Self::PAT),
        ("SRE", Self::SRE),
        ("ERE", Self::ERE),
        ("FSPM", Self::FSPM),
        ("WPE", Self::WPE),
        ("NXE", Self::NXE),
        ("SMEP", Self::SMEP),
        ("EAFE", Self::EAFE),
        ("FSPTPTR", Self::FSPTPTR),
    ];
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

    flag_fields! {
        /// P: the entry is present.
        p, set_p = Self::P;
        /// FPD: faults for requests that use this entry are not recorded.
        fpd, set_fpd = Self::FPD;
        /// SSEE: the second stage's X bit is honoured for execute requests.
        ssee, set_ssee = Self::SSEE;
        /// SSADE: the second stage's accessed/dirty bits are set by hardware (needs ECAP.SSADS).
        ssade, set_ssade = Self::SSADE;
        /// PWSNP: page-walk accesses snoop the processor caches.
        pwsnp, set_pwsnp = Self::PWSNP;
        /// PGSNP: every access translated through this entry snoops.
        pgsnp, set_pgsnp = Self::PGSNP;
        /// CD: cache disable for first-stage accesses (with ECAP.MTS).
        cd, set_cd = Self::CD;
        /// EMTE: EMT is used for first-stage accesses.
        emte, set_emte = Self::EMTE;
        /// PWT: page-level write-through for the first-stage root table access.
        pwt, set_pwt = Self::PWT;
        /// PCD: page-level cache disable for the first-stage root table access.
        pcd, set_pcd = Self::PCD;
        /// SRE: requests with supervisor privilege are allowed (needs ECAP.SRS).
        sre, set_sre = Self::SRE;
        /// ERE: requests with execute permission are allowed (needs ECAP.ERS).
        ere, set_ere = Self::ERE;
        /// WPE: supervisor writes honour first-stage read-only pages (CR0.WP).
        wpe, set_wpe = Self::WPE;
        /// NXE: the first stage's XD bit is honoured (IA32_EFER.NXE).
        nxe, set_nxe = Self::NXE;
        /// SMEP: supervisor execute requests to user pages fault (CR4.SMEP).
        smep, set_smep = Self::SMEP;
        /// EAFE: the first stage's extended accessed flag is set by hardware (needs ECAP.EAFS).
        eafe, set_eafe = Self::EAFE;
    }
    enum_fields! {
        /// AW: the second-stage table's width (must be advertised in CAP.SAGAW).
        aw, set_aw, aw_raw, set_aw_raw: Aw = Self::AW;
        /// PGTT: how this PASID's requests are translated.
        pgtt, set_pgtt, pgtt_raw, set_pgtt_raw: Pgtt = Self::PGTT;
        /// FSPM: the first-stage table's depth.
        fspm, set_fspm, fspm_raw, set_fspm_raw: Fspm = Self::FSPM;
    }
    int_fields! {
        /// DID: the domain this PASID's translations are tagged with.
        did, set_did: u16 = Self::DID;
        /// EMT: the extended memory type (IA-32 memory type encodings).
        emt, set_emt: u8 = Self::EMT;
        /// PAT: eight 3-bit page attribute entries, one per byte (IA32_PAT format).
        pat, set_pat: u32 = Self::PAT;
    }
    addr_fields! {
        /// SSPTPTR: the second-stage table's root (a host physical address).
        ssptptr, set_ssptptr = Self::SSPTPTR;
        /// FSPTPTR: the first-stage table's root (host physical when PGTT is first-stage only;
        /// guest physical, translated by the second stage, when nested).
        fsptptr, set_fsptptr = Self::FSPTPTR;
    }

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

impl fmt::Debug for PasidEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasidEntry")
            .field("p", &self.p())
            .field("fpd", &self.fpd())
            .field("pgtt", &self.pgtt())
            .field("did", &self.did())
            .field("aw", &self.aw())
            .field("ssptptr", &Hex(self.ssptptr()))
            .field("ssee", &self.ssee())
            .field("ssade", &self.ssade())
            .field("fspm", &self.fspm())
            .field("fsptptr", &Hex(self.fsptptr()))
            .field("sre", &self.sre())
            .field("ere", &self.ere())
            .field("wpe", &self.wpe())
            .field("nxe", &self.nxe())
            .field("smep", &self.smep())
            .field("eafe", &self.eafe())
            .field("pwsnp", &self.pwsnp())
            .field("pgsnp", &self.pgsnp())
            .field("cd", &self.cd())
            .field("emte", &self.emte())
            .field("emt", &self.emt())
            .field("pwt", &self.pwt())
            .field("pcd", &self.pcd())
            .field("pat", &Hex(self.pat().into()))
            .finish()
    }
}

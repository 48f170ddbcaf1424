//! Root and context entries (§9.1–§9.4).
//!
//! RTADDR_REG.TTM selects the format. In legacy mode (TTM = 00b) the root table has one 128-bit
//! entry per bus pointing at a context table of 256 128-bit entries, one per devfn. In scalable
//! mode (TTM = 01b) each 128-bit root entry points at two context tables, the lower one for
//! devfn 0–127 and the upper one for devfn 128–255, each of 128 256-bit scalable-mode context
//! entries, which point at a PASID directory.

use core::fmt;

use sviommu_memory::bits::WideField;

use super::{any_set, bits_from, Aw, Hex};

/// Root-table entries per 4 KiB table (one per bus).
pub const ROOT_ENTRIES: u64 = 256;

/// The index into a scalable-mode context table (lower or upper) for `devfn`.
#[must_use]
pub const fn scalable_context_index(devfn: u8) -> u8 {
    devfn & 0x7f
}

// ---------------------------------------------------------------------------------------------
// §9.1 Root Entry (legacy mode)
// ---------------------------------------------------------------------------------------------

/// §9.1 Root Entry: the legacy-mode entry for one bus.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct RootEntry([u64; 2]);

view_words!(RootEntry, 2);

impl RootEntry {
    /// Present.
    pub const P: WideField = WideField::bit(0);
    /// Context-table pointer: bits `HAW-1:12` of the bus's context table (bits above HAW
    /// reserved).
    pub const CTP: WideField = WideField::bits(63, 12);
    /// Every named field.
    pub const FIELDS: &'static [(&'static str, WideField)] = &[("P", Self::P), ("CTP", Self::CTP)];
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(11, 1), WideField::bits(127, 64)];

    flag_fields! {
        /// P: the bus has a context table.
        p, set_p = Self::P;
    }
    addr_fields! {
        /// CTP: the context table's address.
        ctp, set_ctp = Self::CTP;
    }

    /// Reserved bits for a host address width of `haw` bits.
    #[must_use]
    pub fn reserved_mask(haw: u8) -> [u64; 2] {
        let mut m = Self::fixed_reserved_mask();
        m[0] |= Self::CTP.field.mask() & bits_from(haw);
        m
    }

    /// Whether a reserved bit is set (fault reason 0Ah when the entry is present).
    #[must_use]
    pub fn reserved_bits_set(&self, haw: u8) -> bool {
        any_set(&self.0, &Self::reserved_mask(haw))
    }
}

impl fmt::Debug for RootEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootEntry").field("p", &self.p()).field("ctp", &Hex(self.ctp())).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// §9.2 Scalable-Mode Root Entry
// ---------------------------------------------------------------------------------------------

/// §9.2 Scalable-Mode Root Entry: one bus, two context tables (lower: devfn 0–127, upper:
/// devfn 128–255).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ScalableRootEntry([u64; 2]);

view_words!(ScalableRootEntry, 2);

impl ScalableRootEntry {
    /// Lower present.
    pub const LP: WideField = WideField::bit(0);
    /// Lower context-table pointer.
    pub const LCTP: WideField = WideField::bits(63, 12);
    /// Upper present.
    pub const UP: WideField = WideField::bit(64);
    /// Upper context-table pointer.
    pub const UCTP: WideField = WideField::bits(127, 76);
    /// Every named field.
    pub const FIELDS: &'static [(&'static str, WideField)] =
        &[("LP", Self::LP), ("LCTP", Self::LCTP), ("UP", Self::UP), ("UCTP", Self::UCTP)];
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(11, 1), WideField::bits(75, 65)];

    flag_fields! {
        /// LP: the lower context table (devfn 0–127) is present.
        lp, set_lp = Self::LP;
        /// UP: the upper context table (devfn 128–255) is present.
        up, set_up = Self::UP;
    }
    addr_fields! {
        /// LCTP: the lower context table's address.
        lctp, set_lctp = Self::LCTP;
        /// UCTP: the upper context table's address.
        uctp, set_uctp = Self::UCTP;
    }

    /// Whether `devfn` uses the upper half.
    #[must_use]
    pub const fn is_upper(devfn: u8) -> bool {
        devfn >= 0x80
    }

    /// The present bit of the half that serves `devfn`.
    #[must_use]
    pub fn present_for(&self, devfn: u8) -> bool {
        if Self::is_upper(devfn) {
            self.up()
        } else {
            self.lp()
        }
    }

    /// The context-table pointer of the half that serves `devfn`.
    #[must_use]
    pub fn ctp_for(&self, devfn: u8) -> u64 {
        if Self::is_upper(devfn) {
            self.uctp()
        } else {
            self.lctp()
        }
    }

    /// Reserved bits for a host address width of `haw` bits, both halves.
    #[must_use]
    pub fn reserved_mask(haw: u8) -> [u64; 2] {
        let mut m = Self::fixed_reserved_mask();
        m[0] |= Self::LCTP.field.mask() & bits_from(haw);
        m[1] |= Self::UCTP.field.mask() & bits_from(haw);
        m
    }

    /// Whether a reserved bit is set in the half that serves `devfn` (the spec checks the lower
    /// 64 bits when LP is used and the upper 64 bits when UP is used: fault reason 3Ah).
    #[must_use]
    pub fn reserved_bits_set_for(&self, devfn: u8, haw: u8) -> bool {
        let m = Self::reserved_mask(haw);
        if Self::is_upper(devfn) {
            self.0[1] & m[1] != 0
        } else {
            self.0[0] & m[0] != 0
        }
    }

    /// Whether any reserved bit is set in either half.
    #[must_use]
    pub fn reserved_bits_set(&self, haw: u8) -> bool {
        any_set(&self.0, &Self::reserved_mask(haw))
    }
}

impl fmt::Debug for ScalableRootEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScalableRootEntry")
            .field("lp", &self.lp())
            .field("lctp", &Hex(self.lctp()))
            .field("up", &self.up())
            .field("uctp", &Hex(self.uctp()))
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// §9.3 Context Entry (legacy mode)
// ---------------------------------------------------------------------------------------------

spec_enum! {
    /// TT, the translation type of a legacy context entry (§9.3). 11b is reserved.
    pub enum TranslationType {
        /// 00b: untranslated requests go through the second-stage table at SSPTPTR; translation
        /// requests and translated requests are blocked.
        UntranslatedOnly = 0,
        /// 01b: as 00b, and translation requests (ATS) and translated requests are allowed: the
        /// device may have a device-TLB.
        All = 1,
        /// 10b: untranslated requests pass through untranslated (needs ECAP.PT); SSPTPTR is
        /// ignored.
        PassThrough = 2,
    }
}

/// §9.3 Context Entry: the legacy-mode entry for one devfn.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ContextEntry([u64; 2]);

view_words!(ContextEntry, 2);

impl ContextEntry {
    /// Present.
    pub const P: WideField = WideField::bit(0);
    /// Fault processing disable.
    pub const FPD: WideField = WideField::bit(1);
    /// Translation type.
    pub const TT: WideField = WideField::bits(3, 2);
    /// Second-stage page-table pointer.
    #[doc(alias = "SLPTPTR")]
    pub const SSPTPTR: WideField = WideField::bits(63, 12);
    /// Address width.
    pub const AW: WideField = WideField::bits(66, 64);
    /// Ignored by hardware: available to software.
    pub const AVAIL: WideField = WideField::bits(70, 67);
    /// Domain identifier.
    pub const DID: WideField = WideField::bits(87, 72);
    /// Every named field.
    pub const FIELDS: &'static [(&'static str, WideField)] = &[
        ("P", Self::P),
        ("FPD", Self::FPD),
        ("TT", Self::TT),
        ("SSPTPTR", Self::SSPTPTR),
        ("AW", Self::AW),
        ("AVAIL", Self::AVAIL),
        ("DID", Self::DID),
    ];
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] =
        &[WideField::bits(11, 4), WideField::bit(71), WideField::bits(127, 88)];

    flag_fields! {
        /// P: the entry is present.
        p, set_p = Self::P;
        /// FPD: faults for requests that use this entry are not recorded.
        fpd, set_fpd = Self::FPD;
    }
    enum_fields! {
        /// TT: the translation type.
        tt, set_tt, tt_raw, set_tt_raw: TranslationType = Self::TT;
        /// AW: the second-stage table's width (must be advertised in CAP.SAGAW).
        aw, set_aw, aw_raw, set_aw_raw: Aw = Self::AW;
    }
    addr_fields! {
        /// SSPTPTR: the second-stage table's root.
        ssptptr, set_ssptptr = Self::SSPTPTR;
    }
    int_fields! {
        /// AVAIL: software's bits; hardware ignores them.
        avail, set_avail: u8 = Self::AVAIL;
        /// DID: the domain this device's translations are tagged with.
        did, set_did: u16 = Self::DID;
    }

    /// Reserved bits for a host address width of `haw` bits. SSPTPTR's bits at and above HAW are
    /// reserved unless TT is pass-through, where the field is ignored.
    #[must_use]
    pub fn reserved_mask(&self, haw: u8) -> [u64; 2] {
        let mut m = Self::fixed_reserved_mask();
        if self.tt() != Ok(TranslationType::PassThrough) {
            m[0] |= Self::SSPTPTR.field.mask() & bits_from(haw);
        }
        m
    }

    /// Whether a reserved bit is set (fault reason 0Bh when the entry is present).
    #[must_use]
    pub fn reserved_bits_set(&self, haw: u8) -> bool {
        any_set(&self.0, &self.reserved_mask(haw))
    }
}

impl fmt::Debug for ContextEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextEntry")
            .field("p", &self.p())
            .field("fpd", &self.fpd())
            .field("tt", &self.tt())
            .field("ssptptr", &Hex(self.ssptptr()))
            .field("aw", &self.aw())
            .field("did", &self.did())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// §9.4 Scalable-Mode Context-Entry
// ---------------------------------------------------------------------------------------------

/// §9.4 Scalable-Mode Context-Entry (256-bit): one devfn's PASID directory and the rules for its
/// requests.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ScalableContextEntry([u64; 4]);

view_words!(ScalableContextEntry, 4);

impl ScalableContextEntry {
    /// Present.
    pub const P: WideField = WideField::bit(0);
    /// Fault processing disable.
    pub const FPD: WideField = WideField::bit(1);
    /// Device-TLB enable.
    pub const DTE: WideField = WideField::bit(2);
    /// PASID enable.
    pub const PASIDE: WideField = WideField::bit(3);
    /// Page request enable.
    pub const PRE: WideField = WideField::bit(4);
    /// PASID directory size.
    pub const PDTS: WideField = WideField::bits(11, 9);
    /// PASID directory pointer.
    pub const PASIDDIRPTR: WideField = WideField::bits(63, 12);
    /// The PASID that requests without PASID use.
    pub const RID_PASID: WideField = WideField::bits(83, 64);
    /// The privilege that requests without PASID use.
    pub const RID_PRIV: WideField = WideField::bit(84);
    /// Every named field.
    pub const FIELDS: &'static [(&'static str, WideField)] = &[
        ("P", Self::P),
        ("FPD", Self::FPD),
        ("DTE", Self::DTE),
        ("PASIDE", Self::PASIDE),
        ("PRE", Self::PRE),
        ("PDTS", Self::PDTS),
        ("PASIDDIRPTR", Self::PASIDDIRPTR),
        ("RID_PASID", Self::RID_PASID),
        ("RID_PRIV", Self::RID_PRIV),
    ];
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(8, 5),
        WideField::bits(127, 85),
        WideField::bits(191, 128),
        WideField::bits(255, 192),
    ];

    flag_fields! {
        /// P: the entry is present.
        p, set_p = Self::P;
        /// FPD: faults for requests that use this entry are not recorded.
        fpd, set_fpd = Self::FPD;
        /// DTE: translation requests (ATS) and translated requests are allowed.
        dte, set_dte = Self::DTE;
        /// PASIDE: requests with PASID are allowed.
        paside, set_paside = Self::PASIDE;
        /// PRE: page requests are allowed.
        pre, set_pre = Self::PRE;
        /// RID_PRIV: requests without PASID are treated as supervisor requests (needs
        /// ECAP.RPRIVS).
        rid_priv, set_rid_priv = Self::RID_PRIV;
    }
    int_fields! {
        /// PDTS: the PASID directory has `2^(PDTS + 7)` entries.
        pdts, set_pdts: u8 = Self::PDTS;
        /// RID_PASID: the PASID that requests without PASID are translated with (must be 0
        /// unless ECAP.RPS).
        rid_pasid, set_rid_pasid: u32 = Self::RID_PASID;
    }
    addr_fields! {
        /// PASIDDIRPTR: the PASID directory's address.
        pasiddirptr, set_pasiddirptr = Self::PASIDDIRPTR;
    }

    /// Entries in the PASID directory, `2^(PDTS + 7)`.
    #[must_use]
    pub fn pasid_dir_entries(&self) -> u32 {
        1 << (u32::from(self.pdts()) + 7)
    }

    /// Reserved bits for a host address width of `haw` bits.
    #[must_use]
    pub fn reserved_mask(haw: u8) -> [u64; 4] {
        let mut m = Self::fixed_reserved_mask();
        m[0] |= Self::PASIDDIRPTR.field.mask() & bits_from(haw);
        m
    }

    /// Whether a reserved bit is set (fault reason 42h when the entry is present).
    #[must_use]
    pub fn reserved_bits_set(&self, haw: u8) -> bool {
        any_set(&self.0, &Self::reserved_mask(haw))
    }
}

impl fmt::Debug for ScalableContextEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScalableContextEntry")
            .field("p", &self.p())
            .field("fpd", &self.fpd())
            .field("dte", &self.dte())
            .field("paside", &self.paside())
            .field("pre", &self.pre())
            .field("pdts", &self.pdts())
            .field("pasiddirptr", &Hex(self.pasiddirptr()))
            .field("rid_pasid", &Hex(self.rid_pasid().into()))
            .field("rid_priv", &self.rid_priv())
            .finish()
    }
}

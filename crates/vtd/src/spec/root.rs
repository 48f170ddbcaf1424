//! Root and context entries (§9.1–§9.4).
//!
//! RTADDR_REG.TTM selects the format. In legacy mode (TTM = 00b) the root table has one 128-bit
//! entry per bus pointing at a context table of 256 128-bit entries, one per devfn. In scalable
//! mode (TTM = 01b) each 128-bit root entry points at two context tables, the lower one for
//! devfn 0–127 and the upper one for devfn 128–255, each of 128 256-bit scalable-mode context
//! entries, which point at a PASID directory.

use sviommu_memory::bits::{bitfields, WideField};

use super::{any_set, bits_from, Aw};

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

bitfields! {
    impl RootEntry: debug(reserved_set) {
        /// Present: the bus has a context table.
        P = bit(0) => p, set_p: bool;
        /// Context-table pointer: bits `HAW-1:12` of the bus's context table (bits above HAW
        /// reserved): the context table's address.
        CTP = bits(63, 12) => ctp, set_ctp: addr;
    }
}

impl RootEntry {
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(11, 1), WideField::bits(127, 64)];

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

// ---------------------------------------------------------------------------------------------
// §9.2 Scalable-Mode Root Entry
// ---------------------------------------------------------------------------------------------

/// §9.2 Scalable-Mode Root Entry: one bus, two context tables (lower: devfn 0–127, upper:
/// devfn 128–255).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ScalableRootEntry([u64; 2]);

view_words!(ScalableRootEntry, 2);

bitfields! {
    impl ScalableRootEntry: debug(reserved_set) {
        /// Lower present: the lower context table (devfn 0–127) is present.
        LP = bit(0) => lp, set_lp: bool;
        /// Lower context-table pointer: the lower context table's address.
        LCTP = bits(63, 12) => lctp, set_lctp: addr;
        /// Upper present: the upper context table (devfn 128–255) is present.
        UP = bit(64) => up, set_up: bool;
        /// Upper context-table pointer: the upper context table's address.
        UCTP = bits(127, 76) => uctp, set_uctp: addr;
    }
}

impl ScalableRootEntry {
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(11, 1), WideField::bits(75, 65)];

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

bitfields! {
    impl ContextEntry: debug(reserved_set) {
        /// Present: the entry is present.
        P = bit(0) => p, set_p: bool;
        /// Fault processing disable: faults for requests that use this entry are not recorded.
        FPD = bit(1) => fpd, set_fpd: bool;
        /// Translation type: the translation type.
        TT = bits(3, 2) => tt, set_tt, tt_raw, set_tt_raw: enum(TranslationType);
        /// Second-stage page-table pointer.
        #[doc(alias = "SLPTPTR")]
        ///
        /// SSPTPTR: the second-stage table's root.
        SSPTPTR = bits(63, 12) => ssptptr, set_ssptptr: addr;
        /// Address width: the second-stage table's width (must be advertised in CAP.SAGAW).
        AW = bits(66, 64) => aw, set_aw, aw_raw, set_aw_raw: enum(Aw);
        /// Ignored by hardware: available to software: software's bits; hardware ignores them.
        AVAIL = bits(70, 67) => avail, set_avail: u8;
        /// Domain identifier: the domain this device's translations are tagged with.
        DID = bits(87, 72) => did, set_did: u16;
    }
}

impl ContextEntry {
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] =
        &[WideField::bits(11, 4), WideField::bit(71), WideField::bits(127, 88)];

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

// ---------------------------------------------------------------------------------------------
// §9.4 Scalable-Mode Context-Entry
// ---------------------------------------------------------------------------------------------

/// §9.4 Scalable-Mode Context-Entry (256-bit): one devfn's PASID directory and the rules for its
/// requests.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ScalableContextEntry([u64; 4]);

view_words!(ScalableContextEntry, 4);

bitfields! {
    impl ScalableContextEntry: debug(reserved_set) {
        /// Present: the entry is present.
        P = bit(0) => p, set_p: bool;
        /// Fault processing disable: faults for requests that use this entry are not recorded.
        FPD = bit(1) => fpd, set_fpd: bool;
        /// Device-TLB enable: translation requests (ATS) and translated requests are allowed.
        DTE = bit(2) => dte, set_dte: bool;
        /// PASID enable: requests with PASID are allowed.
        PASIDE = bit(3) => paside, set_paside: bool;
        /// Page request enable: page requests are allowed.
        PRE = bit(4) => pre, set_pre: bool;
        /// PASID directory size: the PASID directory has `2^(PDTS + 7)` entries.
        PDTS = bits(11, 9) => pdts, set_pdts: u8;
        /// PASID directory pointer: the PASID directory's address.
        PASIDDIRPTR = bits(63, 12) => pasiddirptr, set_pasiddirptr: addr;
        /// The PASID that requests without PASID use: the PASID that requests without PASID are
        /// translated with (must be 0 unless ECAP.RPS).
        RID_PASID = bits(83, 64) => rid_pasid, set_rid_pasid: u32;
        /// The privilege that requests without PASID use: requests without PASID are treated as
        /// supervisor requests (needs ECAP.RPRIVS).
        RID_PRIV = bit(84) => rid_priv, set_rid_priv: bool;
    }
}

impl ScalableContextEntry {
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(8, 5),
        WideField::bits(127, 85),
        WideField::bits(191, 128),
        WideField::bits(255, 192),
    ];

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

//! Context descriptors: §5.4 CD (Context Descriptor, 64 bytes) and §5.3 L1CD (Level 1
//! Context Descriptor, 8 bytes) of IHI 0070 G.b.
//!
//! A CD is the stage 1 configuration of one substream (PASID): the two translation table bases
//! with their TCR-like controls, the ASID, MAIR, and the stage 1 fault model. An STE with stage
//! 1 enabled points at one CD, a linear CD table, or a level-1 table of [`L1Cd`]s.
//!
//! Where G.b gives a bit two meanings depending on SMMU_IDR5.D128 (DisCH0/HAD0 at bit 65,
//! SKL0/HWU061..62 at `[127:126]`, and likewise for TTB1), the VMSAv8-64 meaning is declared: this
//! model has no 128-bit descriptors.

use std::fmt;

use sviommu_memory::bits::WideField;

use super::{accessors, debug_fields, masked, Granule, Reserved};

// ---- Word 0: the TCR-like controls ---------------------------------------------------------

/// Size of the VA region of TTB0 (TCR_ELx.T0SZ).
pub const T0SZ: WideField = WideField::bits(5, 0);
/// TTB0 granule, TG0 encoding.
pub const TG0: WideField = WideField::bits(7, 6);
/// Inner cacheability of TTB0 walks.
pub const IR0: WideField = WideField::bits(9, 8);
/// Outer cacheability of TTB0 walks.
pub const OR0: WideField = WideField::bits(11, 10);
/// Shareability of TTB0 walks.
pub const SH0: WideField = WideField::bits(13, 12);
/// TTB0 walk disable: a TLB miss through TTB0 is a Translation fault.
pub const EPD0: WideField = WideField::bit(14);
/// Translation table endianness: 1 big-endian.
pub const ENDI: WideField = WideField::bit(15);
/// Size of the VA region of TTB1.
pub const T1SZ: WideField = WideField::bits(21, 16);
/// TTB1 granule, TG1 encoding (differs from TG0).
pub const TG1: WideField = WideField::bits(23, 22);
/// Inner cacheability of TTB1 walks.
pub const IR1: WideField = WideField::bits(25, 24);
/// Outer cacheability of TTB1 walks.
pub const OR1: WideField = WideField::bits(27, 26);
/// Shareability of TTB1 walks.
pub const SH1: WideField = WideField::bits(29, 28);
/// TTB1 walk disable.
pub const EPD1: WideField = WideField::bit(30);
/// CD Valid.
pub const V: WideField = WideField::bit(31);
/// Intermediate physical address size (see [`super::address_size_bits`]).
pub const IPS: WideField = WideField::bits(34, 32);
/// Access Flag Fault Disable.
pub const AFFD: WideField = WideField::bit(35);
/// Write Execute Never.
pub const WXN: WideField = WideField::bit(36);
/// Unprivileged Write Execute Never.
pub const UWXN: WideField = WideField::bit(37);
/// Top Byte Ignore for TTB0.
pub const TBI0: WideField = WideField::bit(38);
/// Top Byte Ignore for TTB1.
pub const TBI1: WideField = WideField::bit(39);
/// Privileged Access Never.
pub const PAN: WideField = WideField::bit(40);
/// Tables are VMSAv8-64 (1) rather than VMSAv8-32 LPAE or VMSAv9-128 (0).
pub const AA64: WideField = WideField::bit(41);
/// Hardware update of dirty state.
pub const HD: WideField = WideField::bit(42);
/// Hardware update of Access flags.
pub const HA: WideField = WideField::bit(43);
/// Stage 1 fault behaviour: Stall.
pub const S: WideField = WideField::bit(44);
/// Stage 1 fault behaviour: Record.
pub const R: WideField = WideField::bit(45);
/// Stage 1 fault behaviour: Abort (1) or RAZ/WI (0) for terminated transactions.
pub const A: WideField = WideField::bit(46);
/// ASID Set: 1 excludes this ASID from broadcast TLB maintenance.
pub const ASET: WideField = WideField::bit(47);
/// Address Space Identifier.
pub const ASID: WideField = WideField::bits(63, 48);

// ---- Word 1: TTB0 -------------------------------------------------------------------------

/// NS bit of TTB0 walks (Secure streams).
pub const NSCFG0: WideField = WideField::bit(64);
/// Hierarchical Attribute Disable for TTB0.
pub const HAD0: WideField = WideField::bit(65);
/// Unprivileged access through TTB0 is a Translation fault (E0PD).
pub const E0PD0: WideField = WideField::bit(66);
/// Hardware update of the Access flag in table descriptors.
pub const HAFT: WideField = WideField::bit(67);
/// TTB0 translation table base, address bits `[55:4]`.
pub const TTB0: WideField = WideField::bits(119, 68);
/// Stage 1 Protected attribute enable (TCR2_ELx.PnCH).
pub const PNCH: WideField = WideField::bit(122);
/// Enhanced PAN.
pub const EPAN: WideField = WideField::bit(123);
/// Descriptor bit 59 has hardware use through TTB0.
pub const HWU059: WideField = WideField::bit(124);
/// Descriptor bit 60 has hardware use through TTB0.
pub const HWU060: WideField = WideField::bit(125);
/// Descriptor bit 61 has hardware use through TTB0.
pub const HWU061: WideField = WideField::bit(126);
/// Descriptor bit 62 has hardware use through TTB0.
pub const HWU062: WideField = WideField::bit(127);

// ---- Word 2: TTB1 -------------------------------------------------------------------------

/// NS bit of TTB1 walks (Secure streams).
pub const NSCFG1: WideField = WideField::bit(128);
/// Hierarchical Attribute Disable for TTB1.
pub const HAD1: WideField = WideField::bit(129);
/// Unprivileged access through TTB1 is a Translation fault.
pub const E0PD1: WideField = WideField::bit(130);
/// Stage 1 attribute extension enable.
pub const AIE: WideField = WideField::bit(131);
/// TTB1 translation table base, address bits `[55:4]`.
pub const TTB1: WideField = WideField::bits(183, 132);
/// 52-bit addresses with 4KB and 16KB granules (TCR_ELx.DS).
pub const DS: WideField = WideField::bit(186);
/// Stage 1 permission indirection enable.
pub const PIE: WideField = WideField::bit(187);
/// Descriptor bit 59 has hardware use through TTB1.
pub const HWU159: WideField = WideField::bit(188);
/// Descriptor bit 60 has hardware use through TTB1.
pub const HWU160: WideField = WideField::bit(189);
/// Descriptor bit 61 has hardware use through TTB1.
pub const HWU161: WideField = WideField::bit(190);
/// Descriptor bit 62 has hardware use through TTB1.
pub const HWU162: WideField = WideField::bit(191);

// ---- Words 3 to 7 -------------------------------------------------------------------------

/// MAIR_ELx bits `[31:0]`.
pub const MAIR0: WideField = WideField::bits(223, 192);
/// MAIR_ELx bits `[63:32]`.
pub const MAIR1: WideField = WideField::bits(255, 224);
/// AMAIR_ELx bits `[31:0]`.
pub const AMAIR0: WideField = WideField::bits(287, 256);
/// AMAIR_ELx bits `[63:32]`.
pub const AMAIR1: WideField = WideField::bits(319, 288);
/// IMPLEMENTATION DEFINED.
pub const IMPDEF_351_320: WideField = WideField::bits(351, 320);
/// MPAM partition ID.
pub const PARTID: WideField = WideField::bits(367, 352);
/// MPAM performance monitoring group.
pub const PMG: WideField = WideField::bits(375, 368);
/// Permission indirection, unprivileged: `PIIU<p>` at `[3p+386:3p+384]`, p = 0..15.
pub const PIIU: WideField = WideField::bits(431, 384);
/// Permission indirection, privileged: `PIIP<p>` at `[3p+450:3p+448]`, p = 0..15.
pub const PIIP: WideField = WideField::bits(495, 448);

/// IHI 0070 G.b §5.4 CD, Context Descriptor: 64 bytes, eight little-endian words.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Cd(pub [u64; 8]);

/// Bytes in a CD.
pub const CD_BYTES: u64 = 64;

accessors!(Cd {
    /// CD.T0SZ.
    "T0SZ" => t0sz, set_t0sz: T0SZ as u8;
    /// CD.TG0 raw bits; see [`Cd::tg0`].
    "TG0" => tg0_raw, set_tg0_raw: TG0 as u8;
    /// CD.IR0.
    "IR0" => ir0, set_ir0: IR0 as u8;
    /// CD.OR0.
    "OR0" => or0, set_or0: OR0 as u8;
    /// CD.SH0.
    "SH0" => sh0, set_sh0: SH0 as u8;
    /// CD.EPD0.
    "EPD0" => epd0, set_epd0: EPD0 as bool;
    /// CD.ENDI.
    "ENDI" => endi, set_endi: ENDI as bool;
    /// CD.T1SZ.
    "T1SZ" => t1sz, set_t1sz: T1SZ as u8;
    /// CD.TG1 raw bits; see [`Cd::tg1`].
    "TG1" => tg1_raw, set_tg1_raw: TG1 as u8;
    /// CD.IR1.
    "IR1" => ir1, set_ir1: IR1 as u8;
    /// CD.OR1.
    "OR1" => or1, set_or1: OR1 as u8;
    /// CD.SH1.
    "SH1" => sh1, set_sh1: SH1 as u8;
    /// CD.EPD1.
    "EPD1" => epd1, set_epd1: EPD1 as bool;
    /// CD.V: the CD is valid (otherwise C_BAD_CD for a transaction).
    "V" => v, set_v: V as bool;
    /// CD.IPS (decode with [`super::address_size_bits`]).
    "IPS" => ips, set_ips: IPS as u8;
    /// CD.AFFD.
    "AFFD" => affd, set_affd: AFFD as bool;
    /// CD.WXN.
    "WXN" => wxn, set_wxn: WXN as bool;
    /// CD.UWXN.
    "UWXN" => uwxn, set_uwxn: UWXN as bool;
    /// CD.TBI0.
    "TBI0" => tbi0, set_tbi0: TBI0 as bool;
    /// CD.TBI1.
    "TBI1" => tbi1, set_tbi1: TBI1 as bool;
    /// CD.PAN.
    "PAN" => pan, set_pan: PAN as bool;
    /// CD.AA64.
    "AA64" => aa64, set_aa64: AA64 as bool;
    /// CD.HD.
    "HD" => hd, set_hd: HD as bool;
    /// CD.HA.
    "HA" => ha, set_ha: HA as bool;
    /// CD.S.
    "S" => s, set_s: S as bool;
    /// CD.R.
    "R" => r, set_r: R as bool;
    /// CD.A.
    "A" => a, set_a: A as bool;
    /// CD.ASET.
    "ASET" => aset, set_aset: ASET as bool;
    /// CD.ASID.
    "ASID" => asid, set_asid: ASID as u16;
    /// CD.NSCFG0.
    "NSCFG0" => nscfg0, set_nscfg0: NSCFG0 as bool;
    /// CD.HAD0.
    "HAD0" => had0, set_had0: HAD0 as bool;
    /// CD.E0PD0.
    "E0PD0" => e0pd0, set_e0pd0: E0PD0 as bool;
    /// CD.HAFT.
    "HAFT" => haft, set_haft: HAFT as bool;
    /// CD.TTB0: the TTB0 translation table base address.
    "TTB0" => ttb0, set_ttb0: TTB0 as addr;
    /// CD.PnCH.
    "PnCH" => pnch, set_pnch: PNCH as bool;
    /// CD.EPAN.
    "EPAN" => epan, set_epan: EPAN as bool;
    /// CD.HWU059.
    "HWU059" => hwu059, set_hwu059: HWU059 as bool;
    /// CD.HWU060.
    "HWU060" => hwu060, set_hwu060: HWU060 as bool;
    /// CD.HWU061.
    "HWU061" => hwu061, set_hwu061: HWU061 as bool;
    /// CD.HWU062.
    "HWU062" => hwu062, set_hwu062: HWU062 as bool;
    /// CD.NSCFG1.
    "NSCFG1" => nscfg1, set_nscfg1: NSCFG1 as bool;
    /// CD.HAD1.
    "HAD1" => had1, set_had1: HAD1 as bool;
    /// CD.E0PD1.
    "E0PD1" => e0pd1, set_e0pd1: E0PD1 as bool;
    /// CD.AIE.
    "AIE" => aie, set_aie: AIE as bool;
    /// CD.TTB1: the TTB1 translation table base address.
    "TTB1" => ttb1, set_ttb1: TTB1 as addr;
    /// CD.DS.
    "DS" => ds, set_ds: DS as bool;
    /// CD.PIE.
    "PIE" => pie, set_pie: PIE as bool;
    /// CD.HWU159.
    "HWU159" => hwu159, set_hwu159: HWU159 as bool;
    /// CD.HWU160.
    "HWU160" => hwu160, set_hwu160: HWU160 as bool;
    /// CD.HWU161.
    "HWU161" => hwu161, set_hwu161: HWU161 as bool;
    /// CD.HWU162.
    "HWU162" => hwu162, set_hwu162: HWU162 as bool;
    /// CD.MAIR0 (MAIR bits `[31:0]`).
    "MAIR0" => mair0, set_mair0: MAIR0 as u32;
    /// CD.MAIR1 (MAIR bits `[63:32]`).
    "MAIR1" => mair1, set_mair1: MAIR1 as u32;
    /// CD.AMAIR0.
    "AMAIR0" => amair0, set_amair0: AMAIR0 as u32;
    /// CD.AMAIR1.
    "AMAIR1" => amair1, set_amair1: AMAIR1 as u32;
    /// CD bits `[351:320]`, IMPLEMENTATION DEFINED.
    "IMPLEMENTATION DEFINED [351:320]" => impdef_351_320, set_impdef_351_320: IMPDEF_351_320 as u32;
    /// CD.PARTID.
    "PARTID" => partid, set_partid: PARTID as u16;
    /// CD.PMG.
    "PMG" => pmg, set_pmg: PMG as u8;
    /// CD.`PIIU<15..0>` as one 48-bit value (`PIIU<p>` is bits `[3p+2:3p]`).
    "PIIU" => piiu, set_piiu: PIIU as u64;
    /// CD.`PIIP<15..0>` as one 48-bit value (`PIIP<p>` is bits `[3p+2:3p]`).
    "PIIP" => piip, set_piip: PIIP as u64;
});

impl Cd {
    /// The bits §5.4 marks "Reserved, RES0" in every configuration, per word: `[121:120]`,
    /// `[185:184]`, `[383:376]`, `[447:432]`, `[511:496]`.
    pub const RES0: [u64; 8] = [
        0,
        0x0300_0000_0000_0000,
        0x0300_0000_0000_0000,
        0,
        0,
        0xff00_0000_0000_0000,
        0xffff_0000_0000_0000,
        0xffff_0000_0000_0000,
    ];

    /// Wraps eight little-endian words as read from the CD table.
    pub const fn from_words(words: [u64; 8]) -> Self {
        Self(words)
    }

    /// The eight words, to be written little-endian.
    pub const fn words(&self) -> [u64; 8] {
        self.0
    }

    /// CD.TG0 decoded; 0b11 is Reserved (ILLEGAL unless EPD0 makes TG0 IGNORED).
    pub fn tg0(&self) -> Result<Granule, Reserved> {
        Granule::from_tg0(u64::from(self.tg0_raw()))
    }

    /// Sets CD.TG0.
    pub fn set_tg0(&mut self, granule: Granule) {
        self.set_tg0_raw(granule.tg0());
    }

    /// CD.TG1 decoded; 0b00 is Reserved (ILLEGAL unless EPD1 makes TG1 IGNORED).
    pub fn tg1(&self) -> Result<Granule, Reserved> {
        Granule::from_tg1(u64::from(self.tg1_raw()))
    }

    /// Sets CD.TG1.
    pub fn set_tg1(&mut self, granule: Granule) {
        self.set_tg1_raw(granule.tg1());
    }

    /// MAIR0 and MAIR1 as the 64-bit MAIR_ELx value.
    pub fn mair(&self) -> u64 {
        u64::from(self.mair1()) << 32 | u64::from(self.mair0())
    }

    /// Sets MAIR0 and MAIR1 from a 64-bit MAIR_ELx value.
    pub fn set_mair(&mut self, mair: u64) {
        MAIR0.set(&mut self.0, mair);
        MAIR1.set(&mut self.0, mair >> 32);
    }

    /// The RES0 bits this CD sets, per word.
    pub fn res0_set(&self) -> [u64; 8] {
        masked(&self.0, &Self::RES0)
    }

    /// Whether any always-RES0 bit is set (the model may then treat the CD as ILLEGAL).
    pub fn has_res0_set(&self) -> bool {
        self.res0_set().iter().any(|&w| w != 0)
    }
}

impl fmt::Debug for Cd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Cd");
        s.field("V", &self.v()).field("ASID", &format_args!("{:#x}", self.asid()));
        let fields = Self::FIELDS.iter().map(|a| &a.named);
        debug_fields(&mut s, &self.0, fields, &["V", "ASID"], &self.res0_set());
        s.finish()
    }
}

// ---- §5.3 L1CD ----------------------------------------------------------------------------

/// L1CD.V: L2Ptr is valid.
pub const L1CD_V: WideField = WideField::bit(0);
/// L1CD.L2Ptr: address bits `[55:12]` of a level-2 CD table.
pub const L1CD_L2PTR: WideField = WideField::bits(55, 12);

/// IHI 0070 G.b §5.3 L1CD, Level 1 Context Descriptor: 8 bytes, in the level-1 table of a two-level
/// CD table (STE.S1Fmt != 0b00).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct L1Cd(pub [u64; 1]);

/// Bytes in an L1CD.
pub const L1CD_BYTES: u64 = 8;

accessors!(L1Cd {
    /// L1CD.V: CDs are reached through L2Ptr (otherwise C_BAD_SUBSTREAMID).
    "V" => v, set_v: L1CD_V as bool;
    /// L1CD.L2Ptr: address of the level-2 CD table.
    "L2Ptr" => l2ptr, set_l2ptr: L1CD_L2PTR as addr;
});

impl L1Cd {
    /// Bits `[11:1]` and `[63:56]` are RES0 (§5.3).
    pub const RES0: [u64; 1] = [0xff00_0000_0000_0ffe];

    /// Wraps the descriptor word as read from the level-1 table.
    pub const fn from_word(word: u64) -> Self {
        Self([word])
    }

    /// The descriptor word.
    pub const fn word(&self) -> u64 {
        self.0[0]
    }

    /// The RES0 bits this descriptor sets.
    pub fn res0_set(&self) -> [u64; 1] {
        masked(&self.0, &Self::RES0)
    }
}

impl fmt::Debug for L1Cd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("L1Cd");
        let fields = Self::FIELDS.iter().map(|a| &a.named);
        debug_fields(&mut s, &self.0, fields, &[], &self.res0_set());
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::test_support::*;

    #[test]
    fn fields_are_disjoint_fit_and_res0_is_their_complement() {
        assert_disjoint(Cd::FIELDS);
        assert_widths(Cd::FIELDS);
        let cd_defined: [u64; 8] = defined(Cd::FIELDS);
        for (w, (d, r)) in cd_defined.iter().zip(Cd::RES0.iter()).enumerate() {
            assert_eq!(!d, *r, "word {w}");
        }
        assert_disjoint(L1Cd::FIELDS);
        let l1_defined: [u64; 1] = defined(L1Cd::FIELDS);
        assert_eq!(!l1_defined[0], L1Cd::RES0[0]);
    }

    #[test]
    fn tg1_encoding_differs_from_tg0() {
        let mut cd = Cd::default();
        for (raw, g0, g1) in [
            (0u8, Ok(Granule::Size4K), Err(Reserved(0))),
            (1, Ok(Granule::Size64K), Ok(Granule::Size16K)),
            (2, Ok(Granule::Size16K), Ok(Granule::Size4K)),
            (3, Err(Reserved(3)), Ok(Granule::Size64K)),
        ] {
            cd.set_tg0_raw(raw);
            cd.set_tg1_raw(raw);
            assert_eq!(cd.tg0(), g0);
            assert_eq!(cd.tg1(), g1);
        }
    }

    proptest! {
        #[test]
        fn every_cd_accessor_round_trips(words in any::<[u64; 8]>(), value in any::<u64>()) {
            assert_round_trip(Cd::FIELDS, Cd(words), |c| c.0, value);
        }

        #[test]
        fn every_l1cd_accessor_round_trips(word in any::<u64>(), value in any::<u64>()) {
            assert_round_trip(L1Cd::FIELDS, L1Cd([word]), |c| c.0, value);
        }

        #[test]
        fn mair_and_granules_round_trip(words in any::<[u64; 8]>(), mair in any::<u64>()) {
            let mut cd = Cd(words);
            cd.set_mair(mair);
            prop_assert_eq!(cd.mair(), mair);
            for g in [Granule::Size4K, Granule::Size16K, Granule::Size64K] {
                cd.set_tg0(g);
                cd.set_tg1(g);
                prop_assert_eq!(cd.tg0(), Ok(g));
                prop_assert_eq!(cd.tg1(), Ok(g));
            }
        }

        #[test]
        fn debug_never_panics(words in any::<[u64; 8]>()) {
            let _ = format!("{:?}", Cd(words));
        }
    }
}

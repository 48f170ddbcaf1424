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

use sviommu_memory::bits::bitfields;

use super::{Granule, Reserved};

/// IHI 0070 G.b §5.4 CD, Context Descriptor: 64 bytes, eight little-endian words.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Cd(pub [u64; 8]);

/// Bytes in a CD.
pub const CD_BYTES: u64 = 64;

bitfields! {
    impl Cd: debug(res0_set) {
        // ---- Word 0: the TCR-like controls
        /// Size of the VA region of TTB0 (TCR_ELx.T0SZ).
        T0SZ = bits(5, 0) => t0sz, set_t0sz: u8;
        /// TTB0 granule, TG0 encoding.
        ///
        /// CD.TG0 raw bits; see [`Cd::tg0`].
        TG0 = bits(7, 6) => tg0_raw, set_tg0_raw: u8;
        /// Inner cacheability of TTB0 walks.
        IR0 = bits(9, 8) => ir0, set_ir0: u8;
        /// Outer cacheability of TTB0 walks.
        OR0 = bits(11, 10) => or0, set_or0: u8;
        /// Shareability of TTB0 walks.
        SH0 = bits(13, 12) => sh0, set_sh0: u8;
        /// TTB0 walk disable: a TLB miss through TTB0 is a Translation fault.
        EPD0 = bit(14) => epd0, set_epd0: bool;
        /// Translation table endianness: 1 big-endian.
        ENDI = bit(15) => endi, set_endi: bool;
        /// Size of the VA region of TTB1.
        T1SZ = bits(21, 16) => t1sz, set_t1sz: u8;
        /// TTB1 granule, TG1 encoding (differs from TG0).
        ///
        /// CD.TG1 raw bits; see [`Cd::tg1`].
        TG1 = bits(23, 22) => tg1_raw, set_tg1_raw: u8;
        /// Inner cacheability of TTB1 walks.
        IR1 = bits(25, 24) => ir1, set_ir1: u8;
        /// Outer cacheability of TTB1 walks.
        OR1 = bits(27, 26) => or1, set_or1: u8;
        /// Shareability of TTB1 walks.
        SH1 = bits(29, 28) => sh1, set_sh1: u8;
        /// TTB1 walk disable.
        EPD1 = bit(30) => epd1, set_epd1: bool;
        /// CD Valid: the CD is valid (otherwise C_BAD_CD for a transaction).
        V = bit(31) => v, set_v: bool;
        /// Intermediate physical address size (see [`super::address_size_bits`]).
        ///
        /// CD.IPS (decode with [`super::address_size_bits`]).
        IPS = bits(34, 32) => ips, set_ips: u8;
        /// Access Flag Fault Disable.
        AFFD = bit(35) => affd, set_affd: bool;
        /// Write Execute Never.
        WXN = bit(36) => wxn, set_wxn: bool;
        /// Unprivileged Write Execute Never.
        UWXN = bit(37) => uwxn, set_uwxn: bool;
        /// Top Byte Ignore for TTB0.
        TBI0 = bit(38) => tbi0, set_tbi0: bool;
        /// Top Byte Ignore for TTB1.
        TBI1 = bit(39) => tbi1, set_tbi1: bool;
        /// Privileged Access Never.
        PAN = bit(40) => pan, set_pan: bool;
        /// Tables are VMSAv8-64 (1) rather than VMSAv8-32 LPAE or VMSAv9-128 (0).
        AA64 = bit(41) => aa64, set_aa64: bool;
        /// Hardware update of dirty state.
        HD = bit(42) => hd, set_hd: bool;
        /// Hardware update of Access flags.
        HA = bit(43) => ha, set_ha: bool;
        /// Stage 1 fault behaviour: Stall.
        S = bit(44) => s, set_s: bool;
        /// Stage 1 fault behaviour: Record.
        R = bit(45) => r, set_r: bool;
        /// Stage 1 fault behaviour: Abort (1) or RAZ/WI (0) for terminated transactions.
        A = bit(46) => a, set_a: bool;
        /// ASID Set: 1 excludes this ASID from broadcast TLB maintenance.
        ASET = bit(47) => aset, set_aset: bool;
        /// Address Space Identifier.
        ASID = bits(63, 48) => asid, set_asid: u16;

        // ---- Word 1: TTB0
        /// NS bit of TTB0 walks (Secure streams).
        NSCFG0 = bit(64) => nscfg0, set_nscfg0: bool;
        /// Hierarchical Attribute Disable for TTB0.
        HAD0 = bit(65) => had0, set_had0: bool;
        /// Unprivileged access through TTB0 is a Translation fault (E0PD).
        E0PD0 = bit(66) => e0pd0, set_e0pd0: bool;
        /// Hardware update of the Access flag in table descriptors.
        HAFT = bit(67) => haft, set_haft: bool;
        /// TTB0 translation table base, address bits `[55:4]`: the TTB0 translation table base
        /// address.
        TTB0 = bits(119, 68) => ttb0, set_ttb0: addr;
        /// Stage 1 Protected attribute enable (TCR2_ELx.PnCH).
        PNCH "PnCH" = bit(122) => pnch, set_pnch: bool;
        /// Enhanced PAN.
        EPAN = bit(123) => epan, set_epan: bool;
        /// Descriptor bit 59 has hardware use through TTB0.
        HWU059 = bit(124) => hwu059, set_hwu059: bool;
        /// Descriptor bit 60 has hardware use through TTB0.
        HWU060 = bit(125) => hwu060, set_hwu060: bool;
        /// Descriptor bit 61 has hardware use through TTB0.
        HWU061 = bit(126) => hwu061, set_hwu061: bool;
        /// Descriptor bit 62 has hardware use through TTB0.
        HWU062 = bit(127) => hwu062, set_hwu062: bool;

        // ---- Word 2: TTB1
        /// NS bit of TTB1 walks (Secure streams).
        NSCFG1 = bit(128) => nscfg1, set_nscfg1: bool;
        /// Hierarchical Attribute Disable for TTB1.
        HAD1 = bit(129) => had1, set_had1: bool;
        /// Unprivileged access through TTB1 is a Translation fault.
        E0PD1 = bit(130) => e0pd1, set_e0pd1: bool;
        /// Stage 1 attribute extension enable.
        AIE = bit(131) => aie, set_aie: bool;
        /// TTB1 translation table base, address bits `[55:4]`: the TTB1 translation table base
        /// address.
        TTB1 = bits(183, 132) => ttb1, set_ttb1: addr;
        /// 52-bit addresses with 4KB and 16KB granules (TCR_ELx.DS).
        DS = bit(186) => ds, set_ds: bool;
        /// Stage 1 permission indirection enable.
        PIE = bit(187) => pie, set_pie: bool;
        /// Descriptor bit 59 has hardware use through TTB1.
        HWU159 = bit(188) => hwu159, set_hwu159: bool;
        /// Descriptor bit 60 has hardware use through TTB1.
        HWU160 = bit(189) => hwu160, set_hwu160: bool;
        /// Descriptor bit 61 has hardware use through TTB1.
        HWU161 = bit(190) => hwu161, set_hwu161: bool;
        /// Descriptor bit 62 has hardware use through TTB1.
        HWU162 = bit(191) => hwu162, set_hwu162: bool;

        // ---- Words 3 to 7
        /// MAIR_ELx bits `[31:0]`.
        ///
        /// CD.MAIR0 (MAIR bits `[31:0]`).
        MAIR0 = bits(223, 192) => mair0, set_mair0: u32;
        /// MAIR_ELx bits `[63:32]`.
        ///
        /// CD.MAIR1 (MAIR bits `[63:32]`).
        MAIR1 = bits(255, 224) => mair1, set_mair1: u32;
        /// AMAIR_ELx bits `[31:0]`.
        AMAIR0 = bits(287, 256) => amair0, set_amair0: u32;
        /// AMAIR_ELx bits `[63:32]`.
        AMAIR1 = bits(319, 288) => amair1, set_amair1: u32;
        /// IMPLEMENTATION DEFINED.
        ///
        /// CD bits `[351:320]`, IMPLEMENTATION DEFINED.
        IMPDEF_351_320 "IMPLEMENTATION DEFINED [351:320]" = bits(351, 320)
            => impdef_351_320, set_impdef_351_320: u32;
        /// MPAM partition ID.
        PARTID = bits(367, 352) => partid, set_partid: u16;
        /// MPAM performance monitoring group.
        PMG = bits(375, 368) => pmg, set_pmg: u8;
        /// Permission indirection, unprivileged: `PIIU<p>` at `[3p+386:3p+384]`, p = 0..15.
        ///
        /// CD.`PIIU<15..0>` as one 48-bit value (`PIIU<p>` is bits `[3p+2:3p]`).
        PIIU = bits(431, 384) => piiu, set_piiu: u64;
        /// Permission indirection, privileged: `PIIP<p>` at `[3p+450:3p+448]`, p = 0..15.
        ///
        /// CD.`PIIP<15..0>` as one 48-bit value (`PIIP<p>` is bits `[3p+2:3p]`).
        PIIP = bits(495, 448) => piip, set_piip: u64;
    }
}

bitfields!(words Cd, 8);
bitfields!(res0 Cd);

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
        Cd::MAIR0.set(&mut self.0, mair);
        Cd::MAIR1.set(&mut self.0, mair >> 32);
    }
}

// ---- §5.3 L1CD ----------------------------------------------------------------------------

/// IHI 0070 G.b §5.3 L1CD, Level 1 Context Descriptor: 8 bytes, in the level-1 table of a two-level
/// CD table (STE.S1Fmt != 0b00).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct L1Cd(pub [u64; 1]);

/// Bytes in an L1CD.
pub const L1CD_BYTES: u64 = 8;

bitfields! {
    impl L1Cd: debug(res0_set) {
        /// L1CD.V: L2Ptr is valid: CDs are reached through L2Ptr (otherwise C_BAD_SUBSTREAMID).
        V = bit(0) => v, set_v: bool;
        /// L1CD.L2Ptr: address bits `[55:12]` of a level-2 CD table: address of the level-2 CD
        /// table.
        L2PTR "L2Ptr" = bits(55, 12) => l2ptr, set_l2ptr: addr;
    }
}

bitfields!(words L1Cd, 1);
bitfields!(res0 L1Cd);

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
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::test_support::*;

    #[test]
    fn fields_are_disjoint_fit_and_res0_is_their_complement() {
        assert_layout(Cd::FIELDS, &Cd::RES0);
        assert_layout(L1Cd::FIELDS, &L1Cd::RES0);
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

//! The Stream Table: §5.2 STE (Stream Table Entry, 64 bytes) and §5.1 L1STD (Level 1 Stream
//! Table Descriptor, 8 bytes) of IHI 0070 G.b.
//!
//! Field positions are whole-structure bit numbers as in §5.2 (`S2T0SZ` is `[165:160]`: bits
//! `[37:32]` of word 2). Every field G.b defines is declared, including the Secure-, Realm-,
//! MPAM-, DPT- and permission-indirection fields this model does not implement: declaring them
//! is what makes [`Ste::RES0`] exactly the bits §5.2 marks "Reserved, RES0".

use sviommu_memory::bits::bitfields;

use super::{Granule, Reserved};

/// IHI 0070 G.b §5.2 STE, Stream Table Entry: 64 bytes, eight little-endian words. One per
/// StreamID, found through SMMU_STRTAB_BASE (linearly or through an [`L1Std`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Ste(pub [u64; 8]);

/// Bytes in an STE.
pub const STE_BYTES: u64 = 64;

bitfields! {
    impl Ste: debug(res0_set) {
        // ---- Word 0
        /// STE Valid: the entry is valid (otherwise C_BAD_STE for a transaction).
        V = bit(0) => v, set_v: bool;
        /// Stream configuration, see [`StreamConfig`].
        ///
        /// STE.Config raw bits; see [`Ste::config`].
        CONFIG "Config" = bits(3, 1) => config_raw, set_config_raw: u8;
        /// Stage 1 format of the CD table, see [`S1Fmt`].
        ///
        /// STE.S1Fmt raw bits; see [`Ste::s1fmt`].
        S1FMT "S1Fmt" = bits(5, 4) => s1fmt_raw, set_s1fmt_raw: u8;
        /// Pointer to the CD or CD table, address bits `[55:6]` (an IPA when stage 2 is enabled):
        /// address of the CD or CD table.
        S1CONTEXTPTR "S1ContextPtr" = bits(55, 6) => s1contextptr, set_s1contextptr: addr;
        /// log2 of the number of CDs at S1ContextPtr; 0 disables substreams: log2 of the number of
        /// CDs (0: one CD, substreams disabled).
        S1CDMAX "S1CDMax" = bits(63, 59) => s1cdmax, set_s1cdmax: u8;

        // ---- Word 1
        /// Default substream behaviour for transactions without a SubstreamID, see [`S1Dss`].
        ///
        /// STE.S1DSS raw bits; see [`Ste::s1dss`].
        S1DSS = bits(65, 64) => s1dss_raw, set_s1dss_raw: u8;
        /// Inner cacheability of CD and L1CD fetches.
        S1CIR = bits(67, 66) => s1cir, set_s1cir: u8;
        /// Outer cacheability of CD and L1CD fetches.
        S1COR = bits(69, 68) => s1cor, set_s1cor: u8;
        /// Shareability of CD and L1CD fetches.
        S1CSH = bits(71, 70) => s1csh, set_s1csh: u8;
        /// Stage 2 descriptor bit 59 has IMPLEMENTATION DEFINED hardware use (PBHA).
        S2HWU59 = bit(72) => s2hwu59, set_s2hwu59: bool;
        /// Stage 2 descriptor bit 60 has IMPLEMENTATION DEFINED hardware use (PBHA).
        S2HWU60 = bit(73) => s2hwu60, set_s2hwu60: bool;
        /// Stage 2 descriptor bit 61 has IMPLEMENTATION DEFINED hardware use (PBHA).
        S2HWU61 = bit(74) => s2hwu61, set_s2hwu61: bool;
        /// Stage 2 descriptor bit 62 has IMPLEMENTATION DEFINED hardware use (PBHA).
        S2HWU62 = bit(75) => s2hwu62, set_s2hwu62: bool;
        /// Destructive Read Enable.
        DRE = bit(76) => dre, set_dre: bool;
        /// Contiguous hint: this STE is identical to its neighbours in a span of 2^CONT StreamIDs.
        CONT = bits(80, 77) => cont, set_cont: u8;
        /// Directed Cache Prefetch.
        DCP = bit(81) => dcp, set_dcp: bool;
        /// PRI Page request Auto Responses carry a PASID.
        PPAR = bit(82) => ppar, set_ppar: bool;
        /// Merge Events from this stream may be merged.
        MEV = bit(83) => mev, set_mev: bool;
        /// Reserved for software use; IGNORED by the SMMU.
        SW_RESERVED = bits(87, 84) => sw_reserved, set_sw_reserved: u8;
        /// Stage 1 permission indirection enable.
        S1PIE = bit(88) => s1pie, set_s1pie: bool;
        /// Stage 2 forced write-back (HCR_EL2.FWB behaviour).
        S2FWB = bit(89) => s2fwb, set_s2fwb: bool;
        /// MPAM IDs come from the CD.
        S1MPAM = bit(90) => s1mpam, set_s1mpam: bool;
        /// Stage 1 Stall Disable: CDs may not select the stall fault model.
        S1STALLD = bit(91) => s1stalld, set_s1stalld: bool;
        /// Enable PCIe ATS translation and traffic, see [`Eats`].
        ///
        /// STE.EATS raw bits; see [`Ste::eats`].
        EATS = bits(93, 92) => eats_raw, set_eats_raw: u8;
        /// StreamWorld control, see [`Strw`].
        ///
        /// STE.STRW raw bits; see [`Ste::strw`].
        STRW = bits(95, 94) => strw_raw, set_strw_raw: u8;
        /// Memory attribute override value (VMSAv8-64 stage 2 MemAttr encoding).
        MEMATTR "MemAttr" = bits(99, 96) => memattr, set_memattr: u8;
        /// Memory type configuration: replace the incoming type with MemAttr.
        MTCFG = bit(100) => mtcfg, set_mtcfg: bool;
        /// Allocation hints override.
        ALLOCCFG = bits(104, 101) => alloccfg, set_alloccfg: u8;
        /// Shareability configuration.
        SHCFG = bits(109, 108) => shcfg, set_shcfg: u8;
        /// Non-secure attribute configuration (Secure and Realm streams).
        NSCFG = bits(111, 110) => nscfg, set_nscfg: u8;
        /// User/privileged attribute configuration: 0b00 incoming, 0b10 unprivileged, 0b11
        /// privileged.
        PRIVCFG = bits(113, 112) => privcfg, set_privcfg: u8;
        /// Inst/Data attribute configuration: 0b00 incoming, 0b10 data, 0b11 instruction.
        INSTCFG = bits(115, 114) => instcfg, set_instcfg: u8;
        /// IMPLEMENTATION DEFINED per-stream configuration.
        ///
        /// STE bits `[127:116]`, IMPLEMENTATION DEFINED.
        IMPDEF_127_116 "IMPLEMENTATION DEFINED [127:116]" = bits(127, 116)
            => impdef_127_116, set_impdef_127_116: u16;

        // ---- Word 2
        /// Virtual Machine Identifier tagging this stream's TLB entries.
        S2VMID = bits(143, 128) => s2vmid, set_s2vmid: u16;
        /// IMPLEMENTATION DEFINED.
        ///
        /// STE bits `[159:144]`, IMPLEMENTATION DEFINED.
        IMPDEF_159_144 "IMPLEMENTATION DEFINED [159:144]" = bits(159, 144)
            => impdef_159_144, set_impdef_159_144: u16;
        /// Size of the IPA input region of stage 2 (VTCR_EL2.T0SZ).
        S2T0SZ = bits(165, 160) => s2t0sz, set_s2t0sz: u8;
        /// Starting level of the stage 2 walk (VTCR_EL2.SL0).
        S2SL0 = bits(167, 166) => s2sl0, set_s2sl0: u8;
        /// Inner cacheability of stage 2 table walks.
        S2IR0 = bits(169, 168) => s2ir0, set_s2ir0: u8;
        /// Outer cacheability of stage 2 table walks.
        S2OR0 = bits(171, 170) => s2or0, set_s2or0: u8;
        /// Shareability of stage 2 table walks.
        S2SH0 = bits(173, 172) => s2sh0, set_s2sh0: u8;
        /// Stage 2 translation granule, TG0 encoding (see [`Granule::from_tg0`]).
        ///
        /// STE.S2TG raw bits; see [`Ste::s2tg`].
        S2TG = bits(175, 174) => s2tg_raw, set_s2tg_raw: u8;
        /// Stage 2 physical address size (see [`super::address_size_bits`]).
        ///
        /// STE.S2PS (decode with [`super::address_size_bits`]).
        S2PS = bits(178, 176) => s2ps, set_s2ps: u8;
        /// Stage 2 tables are VMSAv8-64 (1) rather than VMSAv8-32 LPAE or VMSAv9-128 (0).
        S2AA64 = bit(179) => s2aa64, set_s2aa64: bool;
        /// Stage 2 table endianness: 1 big-endian.
        S2ENDI = bit(180) => s2endi, set_s2endi: bool;
        /// Stage 2 Access Flag Fault Disable.
        S2AFFD = bit(181) => s2affd, set_s2affd: bool;
        /// Protected Table Walk: stage 1 walks and CD fetches to stage 2 Device memory fault.
        S2PTW = bit(182) => s2ptw, set_s2ptw: bool;
        /// Hardware update of stage 2 dirty state.
        S2HD = bit(183) => s2hd, set_s2hd: bool;
        /// Hardware update of stage 2 Access flags.
        S2HA = bit(184) => s2ha, set_s2ha: bool;
        /// Stage 2 fault behaviour: Stall.
        S2S = bit(185) => s2s, set_s2s: bool;
        /// Stage 2 fault behaviour: Record.
        S2R = bit(186) => s2r, set_s2r: bool;
        /// Hardware update of the Access flag in stage 2 table descriptors.
        S2HAFT = bit(187) => s2haft, set_s2haft: bool;
        /// Stage 2 permission indirection enable.
        S2PIE = bit(188) => s2pie, set_s2pie: bool;
        /// Stage 2 permission overlay enable.
        S2POE = bit(189) => s2poe, set_s2poe: bool;
        /// VMID matching requirement for DPT checks.
        DPT_VMATCH = bits(191, 190) => dpt_vmatch, set_dpt_vmatch: u8;

        // ---- Word 3
        /// NS bit of stage 2 walks through S2TTB (Secure STEs).
        S2NSW = bit(192) => s2nsw, set_s2nsw: bool;
        /// NS bit output for Secure-stream Non-secure IPA translations (Secure STEs).
        S2NSA = bit(193) => s2nsa, set_s2nsa: bool;
        /// Bit `[2]` of S2SL0 (FEAT_LPA2).
        S2SL0_2 = bit(194) => s2sl0_2, set_s2sl0_2: bool;
        /// 52-bit addresses with 4KB and 16KB granules (VTCR_EL2.DS).
        S2DS = bit(195) => s2ds, set_s2ds: bool;
        /// Stage 2 translation table base, address bits `[55:4]` (`[51:4]` in SMMUv3.1 to v3.3 with
        /// VMSAv8-64 tables, bits above RES0): the stage 2 translation table base address.
        S2TTB = bits(247, 196) => s2ttb, set_s2ttb: addr;
        /// Skip-level for the initial stage 2 lookup (VMSAv9-128).
        S2SKL = bits(254, 253) => s2skl, set_s2skl: u8;

        // ---- Word 4
        /// IMPLEMENTATION DEFINED.
        ///
        /// STE bits `[271:256]`, IMPLEMENTATION DEFINED.
        IMPDEF_271_256 "IMPLEMENTATION DEFINED [271:256]" = bits(271, 256)
            => impdef_271_256, set_impdef_271_256: u16;
        /// MPAM partition ID.
        PARTID = bits(287, 272) => partid, set_partid: u16;
        /// Secure stage 2 T0SZ (Secure IPA space).
        S_S2T0SZ = bits(293, 288) => s_s2t0sz, set_s_s2t0sz: u8;
        /// Secure stage 2 SL0.
        S_S2SL0 = bits(295, 294) => s_s2sl0, set_s_s2sl0: u8;
        /// Secure stage 2 granule.
        S_S2TG = bits(303, 302) => s_s2tg, set_s_s2tg: u8;
        /// Memory Encryption Context identifier (Realm).
        MECID = bits(319, 304) => mecid, set_mecid: u16;

        // ---- Word 5
        /// MPAM performance monitoring group.
        PMG = bits(327, 320) => pmg, set_pmg: u8;
        /// MPAM_NS: the MPAM PARTID space of this stream's accesses.
        MPAM_NS = bit(328) => mpam_ns, set_mpam_ns: bool;
        /// Stage 2 AssuredOnly behaviour enable.
        ASSUREDONLY "AssuredOnly" = bit(329) => assuredonly, set_assuredonly: bool;
        /// Stage 2 TopLevel 0 check enable (VTCR_EL2.TL0).
        TL0 = bit(330) => tl0, set_tl0: bool;
        /// Stage 2 TopLevel 1 check enable (VTCR_EL2.TL1).
        TL1 = bit(331) => tl1, set_tl1: bool;
        /// Pointer to the Virtual Machine Structure, address bits `[55:12]`: the Virtual Machine
        /// Structure's address.
        VMSPTR "VMSPtr" = bits(375, 332) => vmsptr, set_vmsptr: addr;

        // ---- Word 6
        /// Secure stage 2 walks through S_S2TTB are Secure.
        S2SW = bit(384) => s2sw, set_s2sw: bool;
        /// Secure stage 2 output is Secure.
        S2SA = bit(385) => s2sa, set_s2sa: bool;
        /// Bit `[2]` of S_S2SL0.
        S_S2SL0_2 = bit(386) => s_s2sl0_2, set_s_s2sl0_2: bool;
        /// Secure stage 2 translation table base, address bits `[55:4]`: the Secure stage 2
        /// translation table base address.
        S_S2TTB = bits(439, 388) => s_s2ttb, set_s_s2ttb: addr;
        /// Skip-level for the initial Secure stage 2 lookup.
        S_S2SKL = bits(446, 445) => s_s2skl, set_s_s2skl: u8;

        // ---- Word 7
        /// Stage 2 permission overlay indices `S2POI<p>`, p = 0..15, 4 bits each at
        /// `[4p+451:4p+448]`.
        ///
        /// STE.`S2POI<15..0>` as one 64-bit value (`S2POI<p>` is bits `[4p+3:4p]`).
        S2POI = bits(511, 448) => s2poi, set_s2poi: u64;
    }
}

bitfields!(words Ste, 8);
bitfields!(res0 Ste);

impl Ste {
    /// The bits §5.2 marks "Reserved, RES0" in every configuration, per word: `[58:56]`,
    /// `[107:105]`, `[252:248]`, `[255]`, `[301:296]`, `[383:376]`, `[387]`, `[444:440]`, `[447]`.
    pub const RES0: [u64; 8] = [
        0x0700_0000_0000_0000,
        0x0000_0e00_0000_0000,
        0,
        0x9f00_0000_0000_0000,
        0x0000_3f00_0000_0000,
        0xff00_0000_0000_0000,
        0x9f00_0000_0000_0008,
        0,
    ];

    /// STE.Config decoded; 0b001..=0b011 are Reserved ("behave as 0b000").
    pub fn config(&self) -> Result<StreamConfig, Reserved> {
        StreamConfig::try_from(self.config_raw())
    }

    /// Sets STE.Config.
    pub fn set_config(&mut self, config: StreamConfig) {
        self.set_config_raw(config as u8);
    }

    /// STE.S1Fmt decoded; 0b11 is Reserved ("behaves as 0b00").
    pub fn s1fmt(&self) -> Result<S1Fmt, Reserved> {
        S1Fmt::try_from(self.s1fmt_raw())
    }

    /// Sets STE.S1Fmt.
    pub fn set_s1fmt(&mut self, fmt: S1Fmt) {
        self.set_s1fmt_raw(fmt as u8);
    }

    /// STE.S1DSS decoded; 0b11 is Reserved ("behaves as 0b00").
    pub fn s1dss(&self) -> Result<S1Dss, Reserved> {
        S1Dss::try_from(self.s1dss_raw())
    }

    /// Sets STE.S1DSS.
    pub fn set_s1dss(&mut self, dss: S1Dss) {
        self.set_s1dss_raw(dss as u8);
    }

    /// STE.EATS decoded (every encoding is defined; 0b11 needs SMMU_IDR3.DPT).
    pub fn eats(&self) -> Eats {
        Eats::from_raw(self.eats_raw())
    }

    /// Sets STE.EATS.
    pub fn set_eats(&mut self, eats: Eats) {
        self.set_eats_raw(eats as u8);
    }

    /// STE.STRW decoded; 0b11 is Reserved (ILLEGAL).
    pub fn strw(&self) -> Result<Strw, Reserved> {
        Strw::try_from(self.strw_raw())
    }

    /// Sets STE.STRW.
    pub fn set_strw(&mut self, strw: Strw) {
        self.set_strw_raw(strw as u8);
    }

    /// STE.S2TG decoded (TG0 encoding); 0b11 is Reserved.
    pub fn s2tg(&self) -> Result<Granule, Reserved> {
        Granule::from_tg0(u64::from(self.s2tg_raw()))
    }

    /// Sets STE.S2TG.
    pub fn set_s2tg(&mut self, granule: Granule) {
        self.set_s2tg_raw(granule.tg0());
    }
}

/// STE.Config (§5.2): whether traffic passes and which stages translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StreamConfig {
    /// 0b000: no traffic; an abort is reported to the device and no event is recorded.
    Abort = 0b000,
    /// 0b100: both stages bypass.
    Bypass = 0b100,
    /// 0b101: stage 1 translates, stage 2 bypasses.
    Stage1 = 0b101,
    /// 0b110: stage 1 bypasses, stage 2 translates.
    Stage2 = 0b110,
    /// 0b111: both stages translate (nested).
    Nested = 0b111,
}

impl StreamConfig {
    /// Stage 1 translates (Config == 0b1x1).
    pub const fn stage1(self) -> bool {
        matches!(self, StreamConfig::Stage1 | StreamConfig::Nested)
    }

    /// Stage 2 translates (Config == 0b11x).
    pub const fn stage2(self) -> bool {
        matches!(self, StreamConfig::Stage2 | StreamConfig::Nested)
    }
}

impl TryFrom<u8> for StreamConfig {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0b000 => Ok(StreamConfig::Abort),
            0b100 => Ok(StreamConfig::Bypass),
            0b101 => Ok(StreamConfig::Stage1),
            0b110 => Ok(StreamConfig::Stage2),
            0b111 => Ok(StreamConfig::Nested),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

/// STE.S1Fmt (§5.2): layout of the CD table when substreams are enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum S1Fmt {
    /// 0b00: a linear table of 2^S1CDMax CDs.
    Linear = 0b00,
    /// 0b01: two levels, 4KB level-2 tables of 64 CDs indexed by `SubstreamID[5:0]`.
    TwoLevel4K = 0b01,
    /// 0b10: two levels, 64KB level-2 tables of 1024 CDs indexed by `SubstreamID[9:0]`.
    TwoLevel64K = 0b10,
}

impl S1Fmt {
    /// log2 of the number of CDs in one level-2 table (`None` for a linear table).
    pub const fn l2_index_bits(self) -> Option<u8> {
        match self {
            S1Fmt::Linear => None,
            S1Fmt::TwoLevel4K => Some(6),
            S1Fmt::TwoLevel64K => Some(10),
        }
    }
}

impl TryFrom<u8> for S1Fmt {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0b00 => Ok(S1Fmt::Linear),
            0b01 => Ok(S1Fmt::TwoLevel4K),
            0b10 => Ok(S1Fmt::TwoLevel64K),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

/// STE.S1DSS (§5.2): what a transaction without a SubstreamID does when substreams are enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum S1Dss {
    /// 0b00: terminate with abort, F_STREAM_DISABLED.
    Terminate = 0b00,
    /// 0b01: bypass stage 1 as though Config == 0b1x0.
    Bypass = 0b01,
    /// 0b10: use the CD of substream 0 (which transactions with a SubstreamID then cannot use).
    Substream0 = 0b10,
}

impl TryFrom<u8> for S1Dss {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0b00 => Ok(S1Dss::Terminate),
            0b01 => Ok(S1Dss::Bypass),
            0b10 => Ok(S1Dss::Substream0),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

/// STE.EATS (§5.2): ATS translation requests and Translated traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Eats {
    /// 0b00: Translation Requests get UR and F_BAD_ATS_TREQ; Translated traffic aborts when
    /// SMMU_CR0.ATSCHK == 1.
    Abort = 0b00,
    /// 0b01: Full ATS: requests translate at every enabled stage.
    Full = 0b01,
    /// 0b10: Split-stage ATS: requests return the stage 1 output (IPA).
    SplitStage = 0b10,
    /// 0b11: Full ATS with DPT checks (Reserved, behaving as 0b00, without SMMU_IDR3.DPT).
    FullDpt = 0b11,
}

impl Eats {
    /// Decodes the two-bit field (every value is an encoding).
    pub const fn from_raw(raw: u8) -> Self {
        match raw & 0b11 {
            0b00 => Eats::Abort,
            0b01 => Eats::Full,
            0b10 => Eats::SplitStage,
            _ => Eats::FullDpt,
        }
    }
}

/// STE.STRW (§5.2): the StreamWorld of a stage-1-only stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Strw {
    /// 0b00: EL1 (NS-EL1 from the Non-secure Stream table).
    El1 = 0b00,
    /// 0b01: EL3; only for Secure STEs (ILLEGAL in the Non-secure Stream table).
    El3 = 0b01,
    /// 0b10: EL2, or EL2-E2H when SMMU_CR2.E2H == 1.
    El2 = 0b10,
}

impl TryFrom<u8> for Strw {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0b00 => Ok(Strw::El1),
            0b01 => Ok(Strw::El3),
            0b10 => Ok(Strw::El2),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

// ---- §5.1 L1STD ---------------------------------------------------------------------------

/// IHI 0070 G.b §5.1 L1STD, Level 1 Stream Table Descriptor: 8 bytes, in the level-1 table of a
/// two-level Stream table (SMMU_STRTAB_BASE_CFG.FMT == 0b01), one per 2^SPLIT StreamIDs.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct L1Std(pub [u64; 1]);

/// Bytes in an L1STD.
pub const L1STD_BYTES: u64 = 8;

bitfields! {
    impl L1Std: debug(res0_set) {
        /// L1STD.Span: size of the level-2 array and validity of L2Ptr: 0 invalid; 1..=11 the array
        /// holds 2^(Span-1) STEs; 12..=31 Reserved (behave as 0).
        SPAN "Span" = bits(4, 0) => span, set_span: u8;
        /// L1STD.L2Ptr: address bits `[55:6]` of the level-2 array of STEs: address of the level-2
        /// array.
        L2PTR "L2Ptr" = bits(55, 6) => l2ptr, set_l2ptr: addr;
    }
}

bitfields!(words L1Std, 1);
bitfields!(res0 L1Std);

impl L1Std {
    /// Bit 5 and bits `[63:56]` are RES0 (§5.1).
    pub const RES0: [u64; 1] = [0xff00_0000_0000_0020];

    /// Wraps the descriptor word as read from the level-1 table.
    pub const fn from_word(word: u64) -> Self {
        Self([word])
    }

    /// The descriptor word.
    pub const fn word(&self) -> u64 {
        self.0[0]
    }

    /// Number of STEs in the level-2 array: `None` when Span is 0 or Reserved (the StreamIDs
    /// of this descriptor are invalid).
    pub fn l2_ste_count(&self) -> Option<u32> {
        match self.span() {
            span @ 1..=11 => 1u32.checked_shl(u32::from(span) - 1),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::test_support::*;

    #[test]
    fn fields_are_disjoint_fit_and_res0_is_their_complement() {
        assert_layout(Ste::FIELDS, &Ste::RES0);
        assert_layout(L1Std::FIELDS, &L1Std::RES0);
    }

    #[test]
    fn config_encodings() {
        for raw in 0u8..8 {
            let mut ste = Ste::default();
            ste.set_config_raw(raw);
            let want = matches!(raw, 0 | 4..=7);
            assert_eq!(ste.config().is_ok(), want, "Config {raw:#05b}");
            if let Ok(c) = ste.config() {
                assert_eq!(c as u8, raw);
                assert_eq!(c.stage1(), raw & 0b101 == 0b101);
                assert_eq!(c.stage2(), raw & 0b110 == 0b110);
            }
        }
    }

    #[test]
    fn l2_ste_count_follows_span() {
        let mut d = L1Std::default();
        for span in 0u8..32 {
            d.set_span(span);
            let want = (1..=11).contains(&span).then(|| 1u32 << (span - 1));
            assert_eq!(d.l2_ste_count(), want);
        }
    }

    proptest! {
        #[test]
        fn every_ste_accessor_round_trips(words in any::<[u64; 8]>(), value in any::<u64>()) {
            assert_round_trip(Ste::FIELDS, Ste(words), |s| s.0, value);
        }

        #[test]
        fn every_l1std_accessor_round_trips(word in any::<u64>(), value in any::<u64>()) {
            assert_round_trip(L1Std::FIELDS, L1Std([word]), |s| s.0, value);
        }

        #[test]
        fn typed_setters_round_trip(words in any::<[u64; 8]>()) {
            let mut ste = Ste(words);
            for c in [StreamConfig::Abort, StreamConfig::Bypass, StreamConfig::Stage1,
                      StreamConfig::Stage2, StreamConfig::Nested] {
                ste.set_config(c);
                prop_assert_eq!(ste.config(), Ok(c));
            }
            for f in [S1Fmt::Linear, S1Fmt::TwoLevel4K, S1Fmt::TwoLevel64K] {
                ste.set_s1fmt(f);
                prop_assert_eq!(ste.s1fmt(), Ok(f));
            }
            for d in [S1Dss::Terminate, S1Dss::Bypass, S1Dss::Substream0] {
                ste.set_s1dss(d);
                prop_assert_eq!(ste.s1dss(), Ok(d));
            }
            for e in [Eats::Abort, Eats::Full, Eats::SplitStage, Eats::FullDpt] {
                ste.set_eats(e);
                prop_assert_eq!(ste.eats(), e);
            }
            for s in [Strw::El1, Strw::El3, Strw::El2] {
                ste.set_strw(s);
                prop_assert_eq!(ste.strw(), Ok(s));
            }
            for g in [Granule::Size4K, Granule::Size16K, Granule::Size64K] {
                ste.set_s2tg(g);
                prop_assert_eq!(ste.s2tg(), Ok(g));
            }
        }

        #[test]
        fn debug_never_panics(words in any::<[u64; 8]>()) {
            let _ = format!("{:?}", Ste(words));
        }
    }
}

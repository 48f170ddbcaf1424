//! The Stream Table: §5.2 STE (Stream Table Entry, 64 bytes) and §5.1 L1STD (Level 1 Stream
//! Table Descriptor, 8 bytes) of IHI 0070 G.b.
//!
//! Field positions are whole-structure bit numbers as in §5.2 (`S2T0SZ` is `[165:160]`: bits
//! `[37:32]` of word 2). Every field G.b defines is declared, including the Secure-, Realm-,
//! MPAM-, DPT- and permission-indirection fields this model does not implement: declaring them
//! is what makes [`Ste::RES0`] exactly the bits §5.2 marks "Reserved, RES0".

use std::fmt;

use sviommu_memory::bits::WideField;

use super::{accessors, debug_fields, masked, Granule, Reserved};

// ---- Word 0 -------------------------------------------------------------------------------

/// STE Valid.
pub const V: WideField = WideField::bit(0);
/// Stream configuration, see [`StreamConfig`].
pub const CONFIG: WideField = WideField::bits(3, 1);
/// Stage 1 format of the CD table, see [`S1Fmt`].
pub const S1FMT: WideField = WideField::bits(5, 4);
/// Pointer to the CD or CD table, address bits `[55:6]` (an IPA when stage 2 is enabled).
pub const S1CONTEXTPTR: WideField = WideField::bits(55, 6);
/// log2 of the number of CDs at S1ContextPtr; 0 disables substreams.
pub const S1CDMAX: WideField = WideField::bits(63, 59);

// ---- Word 1 -------------------------------------------------------------------------------

/// Default substream behaviour for transactions without a SubstreamID, see [`S1Dss`].
pub const S1DSS: WideField = WideField::bits(65, 64);
/// Inner cacheability of CD and L1CD fetches.
pub const S1CIR: WideField = WideField::bits(67, 66);
/// Outer cacheability of CD and L1CD fetches.
pub const S1COR: WideField = WideField::bits(69, 68);
/// Shareability of CD and L1CD fetches.
pub const S1CSH: WideField = WideField::bits(71, 70);
/// Stage 2 descriptor bit 59 has IMPLEMENTATION DEFINED hardware use (PBHA).
pub const S2HWU59: WideField = WideField::bit(72);
/// Stage 2 descriptor bit 60 has IMPLEMENTATION DEFINED hardware use (PBHA).
pub const S2HWU60: WideField = WideField::bit(73);
/// Stage 2 descriptor bit 61 has IMPLEMENTATION DEFINED hardware use (PBHA).
pub const S2HWU61: WideField = WideField::bit(74);
/// Stage 2 descriptor bit 62 has IMPLEMENTATION DEFINED hardware use (PBHA).
pub const S2HWU62: WideField = WideField::bit(75);
/// Destructive Read Enable.
pub const DRE: WideField = WideField::bit(76);
/// Contiguous hint: this STE is identical to its neighbours in a span of 2^CONT StreamIDs.
pub const CONT: WideField = WideField::bits(80, 77);
/// Directed Cache Prefetch.
pub const DCP: WideField = WideField::bit(81);
/// PRI Page request Auto Responses carry a PASID.
pub const PPAR: WideField = WideField::bit(82);
/// Merge Events from this stream may be merged.
pub const MEV: WideField = WideField::bit(83);
/// Reserved for software use; IGNORED by the SMMU.
pub const SW_RESERVED: WideField = WideField::bits(87, 84);
/// Stage 1 permission indirection enable.
pub const S1PIE: WideField = WideField::bit(88);
/// Stage 2 forced write-back (HCR_EL2.FWB behaviour).
pub const S2FWB: WideField = WideField::bit(89);
/// MPAM IDs come from the CD.
pub const S1MPAM: WideField = WideField::bit(90);
/// Stage 1 Stall Disable: CDs may not select the stall fault model.
pub const S1STALLD: WideField = WideField::bit(91);
/// Enable PCIe ATS translation and traffic, see [`Eats`].
pub const EATS: WideField = WideField::bits(93, 92);
/// StreamWorld control, see [`Strw`].
pub const STRW: WideField = WideField::bits(95, 94);
/// Memory attribute override value (VMSAv8-64 stage 2 MemAttr encoding).
pub const MEMATTR: WideField = WideField::bits(99, 96);
/// Memory type configuration: replace the incoming type with MemAttr.
pub const MTCFG: WideField = WideField::bit(100);
/// Allocation hints override.
pub const ALLOCCFG: WideField = WideField::bits(104, 101);
/// Shareability configuration.
pub const SHCFG: WideField = WideField::bits(109, 108);
/// Non-secure attribute configuration (Secure and Realm streams).
pub const NSCFG: WideField = WideField::bits(111, 110);
/// User/privileged attribute configuration: 0b00 incoming, 0b10 unprivileged, 0b11 privileged.
pub const PRIVCFG: WideField = WideField::bits(113, 112);
/// Inst/Data attribute configuration: 0b00 incoming, 0b10 data, 0b11 instruction.
pub const INSTCFG: WideField = WideField::bits(115, 114);
/// IMPLEMENTATION DEFINED per-stream configuration.
pub const IMPDEF_127_116: WideField = WideField::bits(127, 116);

// ---- Word 2 -------------------------------------------------------------------------------

/// Virtual Machine Identifier tagging this stream's TLB entries.
pub const S2VMID: WideField = WideField::bits(143, 128);
/// IMPLEMENTATION DEFINED.
pub const IMPDEF_159_144: WideField = WideField::bits(159, 144);
/// Size of the IPA input region of stage 2 (VTCR_EL2.T0SZ).
pub const S2T0SZ: WideField = WideField::bits(165, 160);
/// Starting level of the stage 2 walk (VTCR_EL2.SL0).
pub const S2SL0: WideField = WideField::bits(167, 166);
/// Inner cacheability of stage 2 table walks.
pub const S2IR0: WideField = WideField::bits(169, 168);
/// Outer cacheability of stage 2 table walks.
pub const S2OR0: WideField = WideField::bits(171, 170);
/// Shareability of stage 2 table walks.
pub const S2SH0: WideField = WideField::bits(173, 172);
/// Stage 2 translation granule, TG0 encoding (see [`Granule::from_tg0`]).
pub const S2TG: WideField = WideField::bits(175, 174);
/// Stage 2 physical address size (see [`super::address_size_bits`]).
pub const S2PS: WideField = WideField::bits(178, 176);
/// Stage 2 tables are VMSAv8-64 (1) rather than VMSAv8-32 LPAE or VMSAv9-128 (0).
pub const S2AA64: WideField = WideField::bit(179);
/// Stage 2 table endianness: 1 big-endian.
pub const S2ENDI: WideField = WideField::bit(180);
/// Stage 2 Access Flag Fault Disable.
pub const S2AFFD: WideField = WideField::bit(181);
/// Protected Table Walk: stage 1 walks and CD fetches to stage 2 Device memory fault.
pub const S2PTW: WideField = WideField::bit(182);
/// Hardware update of stage 2 dirty state.
pub const S2HD: WideField = WideField::bit(183);
/// Hardware update of stage 2 Access flags.
pub const S2HA: WideField = WideField::bit(184);
/// Stage 2 fault behaviour: Stall.
pub const S2S: WideField = WideField::bit(185);
/// Stage 2 fault behaviour: Record.
pub const S2R: WideField = WideField::bit(186);
/// Hardware update of the Access flag in stage 2 table descriptors.
pub const S2HAFT: WideField = WideField::bit(187);
/// Stage 2 permission indirection enable.
pub const S2PIE: WideField = WideField::bit(188);
/// Stage 2 permission overlay enable.
pub const S2POE: WideField = WideField::bit(189);
/// VMID matching requirement for DPT checks.
pub const DPT_VMATCH: WideField = WideField::bits(191, 190);

// ---- Word 3 -------------------------------------------------------------------------------

/// NS bit of stage 2 walks through S2TTB (Secure STEs).
pub const S2NSW: WideField = WideField::bit(192);
/// NS bit output for Secure-stream Non-secure IPA translations (Secure STEs).
pub const S2NSA: WideField = WideField::bit(193);
/// Bit `[2]` of S2SL0 (FEAT_LPA2).
pub const S2SL0_2: WideField = WideField::bit(194);
/// 52-bit addresses with 4KB and 16KB granules (VTCR_EL2.DS).
pub const S2DS: WideField = WideField::bit(195);
/// Stage 2 translation table base, address bits `[55:4]` (`[51:4]` in SMMUv3.1 to v3.3 with
/// VMSAv8-64 tables, bits above RES0).
pub const S2TTB: WideField = WideField::bits(247, 196);
/// Skip-level for the initial stage 2 lookup (VMSAv9-128).
pub const S2SKL: WideField = WideField::bits(254, 253);

// ---- Word 4 -------------------------------------------------------------------------------

/// IMPLEMENTATION DEFINED.
pub const IMPDEF_271_256: WideField = WideField::bits(271, 256);
/// MPAM partition ID.
pub const PARTID: WideField = WideField::bits(287, 272);
/// Secure stage 2 T0SZ (Secure IPA space).
pub const S_S2T0SZ: WideField = WideField::bits(293, 288);
/// Secure stage 2 SL0.
pub const S_S2SL0: WideField = WideField::bits(295, 294);
/// Secure stage 2 granule.
pub const S_S2TG: WideField = WideField::bits(303, 302);
/// Memory Encryption Context identifier (Realm).
pub const MECID: WideField = WideField::bits(319, 304);

// ---- Word 5 -------------------------------------------------------------------------------

/// MPAM performance monitoring group.
pub const PMG: WideField = WideField::bits(327, 320);
/// MPAM_NS: the MPAM PARTID space of this stream's accesses.
pub const MPAM_NS: WideField = WideField::bit(328);
/// Stage 2 AssuredOnly behaviour enable.
pub const ASSUREDONLY: WideField = WideField::bit(329);
/// Stage 2 TopLevel 0 check enable (VTCR_EL2.TL0).
pub const TL0: WideField = WideField::bit(330);
/// Stage 2 TopLevel 1 check enable (VTCR_EL2.TL1).
pub const TL1: WideField = WideField::bit(331);
/// Pointer to the Virtual Machine Structure, address bits `[55:12]`.
pub const VMSPTR: WideField = WideField::bits(375, 332);

// ---- Word 6 -------------------------------------------------------------------------------

/// Secure stage 2 walks through S_S2TTB are Secure.
pub const S2SW: WideField = WideField::bit(384);
/// Secure stage 2 output is Secure.
pub const S2SA: WideField = WideField::bit(385);
/// Bit `[2]` of S_S2SL0.
pub const S_S2SL0_2: WideField = WideField::bit(386);
/// Secure stage 2 translation table base, address bits `[55:4]`.
pub const S_S2TTB: WideField = WideField::bits(439, 388);
/// Skip-level for the initial Secure stage 2 lookup.
pub const S_S2SKL: WideField = WideField::bits(446, 445);

// ---- Word 7 -------------------------------------------------------------------------------

/// Stage 2 permission overlay indices `S2POI<p>`, p = 0..15, 4 bits each at `[4p+451:4p+448]`.
pub const S2POI: WideField = WideField::bits(511, 448);

/// IHI 0070 G.b §5.2 STE, Stream Table Entry: 64 bytes, eight little-endian words. One per
/// StreamID, found through SMMU_STRTAB_BASE (linearly or through an [`L1Std`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Ste(pub [u64; 8]);

/// Bytes in an STE.
pub const STE_BYTES: u64 = 64;

accessors!(Ste {
    /// STE.V: the entry is valid (otherwise C_BAD_STE for a transaction).
    "V" => v, set_v: V as bool;
    /// STE.Config raw bits; see [`Ste::config`].
    "Config" => config_raw, set_config_raw: CONFIG as u8;
    /// STE.S1Fmt raw bits; see [`Ste::s1fmt`].
    "S1Fmt" => s1fmt_raw, set_s1fmt_raw: S1FMT as u8;
    /// STE.S1ContextPtr: address of the CD or CD table.
    "S1ContextPtr" => s1contextptr, set_s1contextptr: S1CONTEXTPTR as addr;
    /// STE.S1CDMax: log2 of the number of CDs (0: one CD, substreams disabled).
    "S1CDMax" => s1cdmax, set_s1cdmax: S1CDMAX as u8;
    /// STE.S1DSS raw bits; see [`Ste::s1dss`].
    "S1DSS" => s1dss_raw, set_s1dss_raw: S1DSS as u8;
    /// STE.S1CIR.
    "S1CIR" => s1cir, set_s1cir: S1CIR as u8;
    /// STE.S1COR.
    "S1COR" => s1cor, set_s1cor: S1COR as u8;
    /// STE.S1CSH.
    "S1CSH" => s1csh, set_s1csh: S1CSH as u8;
    /// STE.S2HWU59.
    "S2HWU59" => s2hwu59, set_s2hwu59: S2HWU59 as bool;
    /// STE.S2HWU60.
    "S2HWU60" => s2hwu60, set_s2hwu60: S2HWU60 as bool;
    /// STE.S2HWU61.
    "S2HWU61" => s2hwu61, set_s2hwu61: S2HWU61 as bool;
    /// STE.S2HWU62.
    "S2HWU62" => s2hwu62, set_s2hwu62: S2HWU62 as bool;
    /// STE.DRE.
    "DRE" => dre, set_dre: DRE as bool;
    /// STE.CONT.
    "CONT" => cont, set_cont: CONT as u8;
    /// STE.DCP.
    "DCP" => dcp, set_dcp: DCP as bool;
    /// STE.PPAR.
    "PPAR" => ppar, set_ppar: PPAR as bool;
    /// STE.MEV.
    "MEV" => mev, set_mev: MEV as bool;
    /// STE.SW_RESERVED.
    "SW_RESERVED" => sw_reserved, set_sw_reserved: SW_RESERVED as u8;
    /// STE.S1PIE.
    "S1PIE" => s1pie, set_s1pie: S1PIE as bool;
    /// STE.S2FWB.
    "S2FWB" => s2fwb, set_s2fwb: S2FWB as bool;
    /// STE.S1MPAM.
    "S1MPAM" => s1mpam, set_s1mpam: S1MPAM as bool;
    /// STE.S1STALLD.
    "S1STALLD" => s1stalld, set_s1stalld: S1STALLD as bool;
    /// STE.EATS raw bits; see [`Ste::eats`].
    "EATS" => eats_raw, set_eats_raw: EATS as u8;
    /// STE.STRW raw bits; see [`Ste::strw`].
    "STRW" => strw_raw, set_strw_raw: STRW as u8;
    /// STE.MemAttr.
    "MemAttr" => memattr, set_memattr: MEMATTR as u8;
    /// STE.MTCFG.
    "MTCFG" => mtcfg, set_mtcfg: MTCFG as bool;
    /// STE.ALLOCCFG.
    "ALLOCCFG" => alloccfg, set_alloccfg: ALLOCCFG as u8;
    /// STE.SHCFG.
    "SHCFG" => shcfg, set_shcfg: SHCFG as u8;
    /// STE.NSCFG.
    "NSCFG" => nscfg, set_nscfg: NSCFG as u8;
    /// STE.PRIVCFG.
    "PRIVCFG" => privcfg, set_privcfg: PRIVCFG as u8;
    /// STE.INSTCFG.
    "INSTCFG" => instcfg, set_instcfg: INSTCFG as u8;
    /// STE bits `[127:116]`, IMPLEMENTATION DEFINED.
    "IMPLEMENTATION DEFINED [127:116]" => impdef_127_116, set_impdef_127_116: IMPDEF_127_116 as u16;
    /// STE.S2VMID.
    "S2VMID" => s2vmid, set_s2vmid: S2VMID as u16;
    /// STE bits `[159:144]`, IMPLEMENTATION DEFINED.
    "IMPLEMENTATION DEFINED [159:144]" => impdef_159_144, set_impdef_159_144: IMPDEF_159_144 as u16;
    /// STE.S2T0SZ.
    "S2T0SZ" => s2t0sz, set_s2t0sz: S2T0SZ as u8;
    /// STE.S2SL0.
    "S2SL0" => s2sl0, set_s2sl0: S2SL0 as u8;
    /// STE.S2IR0.
    "S2IR0" => s2ir0, set_s2ir0: S2IR0 as u8;
    /// STE.S2OR0.
    "S2OR0" => s2or0, set_s2or0: S2OR0 as u8;
    /// STE.S2SH0.
    "S2SH0" => s2sh0, set_s2sh0: S2SH0 as u8;
    /// STE.S2TG raw bits; see [`Ste::s2tg`].
    "S2TG" => s2tg_raw, set_s2tg_raw: S2TG as u8;
    /// STE.S2PS (decode with [`super::address_size_bits`]).
    "S2PS" => s2ps, set_s2ps: S2PS as u8;
    /// STE.S2AA64.
    "S2AA64" => s2aa64, set_s2aa64: S2AA64 as bool;
    /// STE.S2ENDI.
    "S2ENDI" => s2endi, set_s2endi: S2ENDI as bool;
    /// STE.S2AFFD.
    "S2AFFD" => s2affd, set_s2affd: S2AFFD as bool;
    /// STE.S2PTW.
    "S2PTW" => s2ptw, set_s2ptw: S2PTW as bool;
    /// STE.S2HD.
    "S2HD" => s2hd, set_s2hd: S2HD as bool;
    /// STE.S2HA.
    "S2HA" => s2ha, set_s2ha: S2HA as bool;
    /// STE.S2S.
    "S2S" => s2s, set_s2s: S2S as bool;
    /// STE.S2R.
    "S2R" => s2r, set_s2r: S2R as bool;
    /// STE.S2HAFT.
    "S2HAFT" => s2haft, set_s2haft: S2HAFT as bool;
    /// STE.S2PIE.
    "S2PIE" => s2pie, set_s2pie: S2PIE as bool;
    /// STE.S2POE.
    "S2POE" => s2poe, set_s2poe: S2POE as bool;
    /// STE.DPT_VMATCH.
    "DPT_VMATCH" => dpt_vmatch, set_dpt_vmatch: DPT_VMATCH as u8;
    /// STE.S2NSW.
    "S2NSW" => s2nsw, set_s2nsw: S2NSW as bool;
    /// STE.S2NSA.
    "S2NSA" => s2nsa, set_s2nsa: S2NSA as bool;
    /// STE.S2SL0_2.
    "S2SL0_2" => s2sl0_2, set_s2sl0_2: S2SL0_2 as bool;
    /// STE.S2DS.
    "S2DS" => s2ds, set_s2ds: S2DS as bool;
    /// STE.S2TTB: the stage 2 translation table base address.
    "S2TTB" => s2ttb, set_s2ttb: S2TTB as addr;
    /// STE.S2SKL.
    "S2SKL" => s2skl, set_s2skl: S2SKL as u8;
    /// STE bits `[271:256]`, IMPLEMENTATION DEFINED.
    "IMPLEMENTATION DEFINED [271:256]" => impdef_271_256, set_impdef_271_256: IMPDEF_271_256 as u16;
    /// STE.PARTID.
    "PARTID" => partid, set_partid: PARTID as u16;
    /// STE.S_S2T0SZ.
    "S_S2T0SZ" => s_s2t0sz, set_s_s2t0sz: S_S2T0SZ as u8;
    /// STE.S_S2SL0.
    "S_S2SL0" => s_s2sl0, set_s_s2sl0: S_S2SL0 as u8;
    /// STE.S_S2TG.
    "S_S2TG" => s_s2tg, set_s_s2tg: S_S2TG as u8;
    /// STE.MECID.
    "MECID" => mecid, set_mecid: MECID as u16;
    /// STE.PMG.
    "PMG" => pmg, set_pmg: PMG as u8;
    /// STE.MPAM_NS.
    "MPAM_NS" => mpam_ns, set_mpam_ns: MPAM_NS as bool;
    /// STE.AssuredOnly.
    "AssuredOnly" => assuredonly, set_assuredonly: ASSUREDONLY as bool;
    /// STE.TL0.
    "TL0" => tl0, set_tl0: TL0 as bool;
    /// STE.TL1.
    "TL1" => tl1, set_tl1: TL1 as bool;
    /// STE.VMSPtr: the Virtual Machine Structure's address.
    "VMSPtr" => vmsptr, set_vmsptr: VMSPTR as addr;
    /// STE.S2SW.
    "S2SW" => s2sw, set_s2sw: S2SW as bool;
    /// STE.S2SA.
    "S2SA" => s2sa, set_s2sa: S2SA as bool;
    /// STE.S_S2SL0_2.
    "S_S2SL0_2" => s_s2sl0_2, set_s_s2sl0_2: S_S2SL0_2 as bool;
    /// STE.S_S2TTB: the Secure stage 2 translation table base address.
    "S_S2TTB" => s_s2ttb, set_s_s2ttb: S_S2TTB as addr;
    /// STE.S_S2SKL.
    "S_S2SKL" => s_s2skl, set_s_s2skl: S_S2SKL as u8;
    /// STE.`S2POI<15..0>` as one 64-bit value (`S2POI<p>` is bits `[4p+3:4p]`).
    "S2POI" => s2poi, set_s2poi: S2POI as u64;
});

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

    /// Wraps eight little-endian words as read from the Stream table.
    pub const fn from_words(words: [u64; 8]) -> Self {
        Self(words)
    }

    /// The eight words, to be written little-endian.
    pub const fn words(&self) -> [u64; 8] {
        self.0
    }

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

    /// The RES0 bits this STE sets, per word (all zero for a well-formed STE).
    pub fn res0_set(&self) -> [u64; 8] {
        masked(&self.0, &Self::RES0)
    }

    /// Whether any always-RES0 bit is set (the model may then treat the STE as ILLEGAL).
    pub fn has_res0_set(&self) -> bool {
        self.res0_set().iter().any(|&w| w != 0)
    }
}

impl fmt::Debug for Ste {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Ste");
        s.field("V", &self.v()).field("Config", &self.config());
        let fields = Self::FIELDS.iter().map(|a| &a.named);
        debug_fields(&mut s, &self.0, fields, &["V", "Config"], &self.res0_set());
        s.finish()
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

/// L1STD.Span: size of the level-2 array and validity of L2Ptr.
pub const L1STD_SPAN: WideField = WideField::bits(4, 0);
/// L1STD.L2Ptr: address bits `[55:6]` of the level-2 array of STEs.
pub const L1STD_L2PTR: WideField = WideField::bits(55, 6);

/// IHI 0070 G.b §5.1 L1STD, Level 1 Stream Table Descriptor: 8 bytes, in the level-1 table of a
/// two-level Stream table (SMMU_STRTAB_BASE_CFG.FMT == 0b01), one per 2^SPLIT StreamIDs.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct L1Std(pub [u64; 1]);

/// Bytes in an L1STD.
pub const L1STD_BYTES: u64 = 8;

accessors!(L1Std {
    /// L1STD.Span: 0 invalid; 1..=11 the array holds 2^(Span-1) STEs; 12..=31 Reserved
    /// (behave as 0).
    "Span" => span, set_span: L1STD_SPAN as u8;
    /// L1STD.L2Ptr: address of the level-2 array.
    "L2Ptr" => l2ptr, set_l2ptr: L1STD_L2PTR as addr;
});

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

    /// The RES0 bits this descriptor sets.
    pub fn res0_set(&self) -> [u64; 1] {
        masked(&self.0, &Self::RES0)
    }
}

impl fmt::Debug for L1Std {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("L1Std");
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
        assert_disjoint(Ste::FIELDS);
        assert_widths(Ste::FIELDS);
        let ste_defined: [u64; 8] = defined(Ste::FIELDS);
        for (w, (d, r)) in ste_defined.iter().zip(Ste::RES0.iter()).enumerate() {
            assert_eq!(!d, *r, "word {w}");
        }
        assert_disjoint(L1Std::FIELDS);
        let l1_defined: [u64; 1] = defined(L1Std::FIELDS);
        assert_eq!(!l1_defined[0], L1Std::RES0[0]);
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

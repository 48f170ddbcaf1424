//! Raw vectors typed by hand from the field tables of Arm IHI 0070 G.b, decoded field by field
//! through `spec`. Each word was composed from the cited section's bit positions, not produced by
//! our setters; the comment beside it says which fields it holds.

use sviommu_memory::bits::{Reg32, Reg64};
use sviommu_smmuv3::spec::cd::{Cd, L1Cd};
use sviommu_smmuv3::spec::cmd::{CError, Command, Opcode, PriResp, ResumeAction, SyncCs};
use sviommu_smmuv3::spec::event::{Class, EventId, EventRecord};
use sviommu_smmuv3::spec::priq::PageRequest;
use sviommu_smmuv3::spec::regs::{self, QueuePointer, StallModel, StrtabFmt};
use sviommu_smmuv3::spec::ste::{Eats, L1Std, S1Dss, S1Fmt, Ste, StreamConfig, Strw};
use sviommu_smmuv3::spec::{address_size_bits, Granule, Reserved};

// =============================================================================================
// §6.2 register map
// =============================================================================================

/// §6.2, Non-secure registers, typed from the map: (name, offset from the SMMU base, bits).
/// Page 1 starts at 0x10000; 0x000A8/AC/C8/CC in page 0 are the optional aliases.
const REGISTER_MAP: &[(&str, u64, u8)] = &[
    ("SMMU_IDR0", 0x0000, 32),
    ("SMMU_IDR1", 0x0004, 32),
    ("SMMU_IDR2", 0x0008, 32),
    ("SMMU_IDR3", 0x000C, 32),
    ("SMMU_IDR4", 0x0010, 32),
    ("SMMU_IDR5", 0x0014, 32),
    ("SMMU_IIDR", 0x0018, 32),
    ("SMMU_AIDR", 0x001C, 32),
    ("SMMU_CR0", 0x0020, 32),
    ("SMMU_CR0ACK", 0x0024, 32),
    ("SMMU_CR1", 0x0028, 32),
    ("SMMU_CR2", 0x002C, 32),
    ("SMMU_STATUSR", 0x0040, 32),
    ("SMMU_GBPA", 0x0044, 32),
    ("SMMU_IRQ_CTRL", 0x0050, 32),
    ("SMMU_IRQ_CTRLACK", 0x0054, 32),
    ("SMMU_GERROR", 0x0060, 32),
    ("SMMU_GERRORN", 0x0064, 32),
    ("SMMU_GERROR_IRQ_CFG0", 0x0068, 64),
    ("SMMU_GERROR_IRQ_CFG1", 0x0070, 32),
    ("SMMU_GERROR_IRQ_CFG2", 0x0074, 32),
    ("SMMU_STRTAB_BASE", 0x0080, 64),
    ("SMMU_STRTAB_BASE_CFG", 0x0088, 32),
    ("SMMU_CMDQ_BASE", 0x0090, 64),
    ("SMMU_CMDQ_PROD", 0x0098, 32),
    ("SMMU_CMDQ_CONS", 0x009C, 32),
    ("SMMU_EVENTQ_BASE", 0x00A0, 64),
    ("alias of SMMU_EVENTQ_PROD", 0x00A8, 32),
    ("alias of SMMU_EVENTQ_CONS", 0x00AC, 32),
    ("SMMU_EVENTQ_IRQ_CFG0", 0x00B0, 64),
    ("SMMU_EVENTQ_IRQ_CFG1", 0x00B8, 32),
    ("SMMU_EVENTQ_IRQ_CFG2", 0x00BC, 32),
    ("SMMU_PRIQ_BASE", 0x00C0, 64),
    ("alias of SMMU_PRIQ_PROD", 0x00C8, 32),
    ("alias of SMMU_PRIQ_CONS", 0x00CC, 32),
    ("SMMU_PRIQ_IRQ_CFG0", 0x00D0, 64),
    ("SMMU_PRIQ_IRQ_CFG1", 0x00D8, 32),
    ("SMMU_PRIQ_IRQ_CFG2", 0x00DC, 32),
    ("SMMU_EVENTQ_PROD", 0x100A8, 32),
    ("SMMU_EVENTQ_CONS", 0x100AC, 32),
    ("SMMU_PRIQ_PROD", 0x100C8, 32),
    ("SMMU_PRIQ_CONS", 0x100CC, 32),
];

enum R {
    W32(Reg32),
    W64(Reg64),
}

fn ours(name: &str) -> Option<R> {
    use regs::*;
    use R::{W32, W64};
    Some(match name {
        "SMMU_IDR0" => W32(IDR0),
        "SMMU_IDR1" => W32(IDR1),
        "SMMU_IDR2" => W32(IDR2),
        "SMMU_IDR3" => W32(IDR3),
        "SMMU_IDR4" => W32(IDR4),
        "SMMU_IDR5" => W32(IDR5),
        "SMMU_IIDR" => W32(IIDR),
        "SMMU_AIDR" => W32(AIDR),
        "SMMU_CR0" => W32(CR0),
        "SMMU_CR0ACK" => W32(CR0ACK),
        "SMMU_CR1" => W32(CR1),
        "SMMU_CR2" => W32(CR2),
        "SMMU_STATUSR" => W32(STATUSR),
        "SMMU_GBPA" => W32(GBPA),
        "SMMU_IRQ_CTRL" => W32(IRQ_CTRL),
        "SMMU_IRQ_CTRLACK" => W32(IRQ_CTRLACK),
        "SMMU_GERROR" => W32(GERROR),
        "SMMU_GERRORN" => W32(GERRORN),
        "SMMU_GERROR_IRQ_CFG0" => W64(GERROR_IRQ_CFG0),
        "SMMU_GERROR_IRQ_CFG1" => W32(GERROR_IRQ_CFG1),
        "SMMU_GERROR_IRQ_CFG2" => W32(GERROR_IRQ_CFG2),
        "SMMU_STRTAB_BASE" => W64(STRTAB_BASE),
        "SMMU_STRTAB_BASE_CFG" => W32(STRTAB_BASE_CFG),
        "SMMU_CMDQ_BASE" => W64(CMDQ_BASE),
        "SMMU_CMDQ_PROD" => W32(CMDQ_PROD),
        "SMMU_CMDQ_CONS" => W32(CMDQ_CONS),
        "SMMU_EVENTQ_BASE" => W64(EVENTQ_BASE),
        "alias of SMMU_EVENTQ_PROD" => W32(EVENTQ_PROD_PAGE0_ALIAS),
        "alias of SMMU_EVENTQ_CONS" => W32(EVENTQ_CONS_PAGE0_ALIAS),
        "SMMU_EVENTQ_IRQ_CFG0" => W64(EVENTQ_IRQ_CFG0),
        "SMMU_EVENTQ_IRQ_CFG1" => W32(EVENTQ_IRQ_CFG1),
        "SMMU_EVENTQ_IRQ_CFG2" => W32(EVENTQ_IRQ_CFG2),
        "SMMU_PRIQ_BASE" => W64(PRIQ_BASE),
        "alias of SMMU_PRIQ_PROD" => W32(PRIQ_PROD_PAGE0_ALIAS),
        "alias of SMMU_PRIQ_CONS" => W32(PRIQ_CONS_PAGE0_ALIAS),
        "SMMU_PRIQ_IRQ_CFG0" => W64(PRIQ_IRQ_CFG0),
        "SMMU_PRIQ_IRQ_CFG1" => W32(PRIQ_IRQ_CFG1),
        "SMMU_PRIQ_IRQ_CFG2" => W32(PRIQ_IRQ_CFG2),
        "SMMU_EVENTQ_PROD" => W32(EVENTQ_PROD),
        "SMMU_EVENTQ_CONS" => W32(EVENTQ_CONS),
        "SMMU_PRIQ_PROD" => W32(PRIQ_PROD),
        "SMMU_PRIQ_CONS" => W32(PRIQ_CONS),
        _ => return None,
    })
}

#[test]
fn register_offsets_match_the_register_map() {
    for &(name, offset, bits) in REGISTER_MAP {
        let (ours_offset, ours_bits) = match ours(name) {
            Some(R::W32(r)) => (r.0, 32),
            Some(R::W64(r)) => (r.0, 64),
            None => panic!("{name} is not declared"),
        };
        assert_eq!((ours_offset, ours_bits), (offset, bits), "{name}");
    }
    assert_eq!(regs::PAGE1, 0x1_0000);
    // Page 1 registers sit at their page 0 alias offset, one page up.
    assert_eq!(regs::EVENTQ_PROD.0, regs::PAGE1 + regs::EVENTQ_PROD_PAGE0_ALIAS.0);
    assert_eq!(regs::PRIQ_CONS.0, regs::PAGE1 + regs::PRIQ_CONS_PAGE0_ALIAS.0);
}

// =============================================================================================
// §6.3 register formats
// =============================================================================================

#[test]
fn idr0_fields() {
    // §6.3.1: S2P, S1P, TTF = 0b10 (VMSAv8-64), COHACC, Hyp, ATS, ASID16, MSI, PRI, VMID16,
    // CD2L, TTENDIAN = 0b10 (little-endian), STALL_MODEL = 0b00, ST_LEVEL = 0b01.
    let v = 0x084d_361b_u64;
    use regs::idr0::*;
    assert!(S2P.is_set(v) && S1P.is_set(v));
    assert_eq!(TTF.get(v), 0b10);
    assert!(COHACC.is_set(v) && !BTM.is_set(v));
    assert_eq!(HTTU.get(v), 0);
    assert!(!DORMHINT.is_set(v) && HYP.is_set(v) && ATS.is_set(v) && !NS1ATS.is_set(v));
    assert!(ASID16.is_set(v) && MSI.is_set(v) && !SEV.is_set(v) && !ATOS.is_set(v));
    assert!(PRI.is_set(v) && !VMW.is_set(v) && VMID16.is_set(v) && CD2L.is_set(v));
    assert!(!VATOS.is_set(v));
    assert_eq!(TTENDIAN.get(v), 0b10);
    assert_eq!(
        StallModel::try_from(u8::try_from(STALL_MODEL.get(v)).unwrap()),
        Ok(StallModel::StallAndTerminate)
    );
    assert!(!TERM_MODEL.is_set(v));
    assert_eq!(ST_LEVEL.get(v), 0b01);
    assert_eq!(StallModel::try_from(0b11), Err(Reserved(0b11)));
}

#[test]
fn idr1_fields_of_a_published_implementation() {
    // The reset value 0x0E739D18 that the Intel Agilex 5 HPS manual gives for its TCU's
    // SMMU_IDR1, with its field table: ATTR_TYPES_OVR = 1, ATTR_PERMS_OVR = 1, CMDQS = 0x13,
    // EVENTQS = 0x13, PRIQS = 0x13, SSIDSIZE = 0x14, SIDSIZE = 0x18 (§6.3.2 positions).
    let v = 0x0e73_9d18_u64;
    use regs::idr1::*;
    assert!(!TABLES_PRESET.is_set(v) && !QUEUES_PRESET.is_set(v) && !REL.is_set(v));
    assert!(ATTR_TYPES_OVR.is_set(v) && ATTR_PERMS_OVR.is_set(v));
    assert_eq!((CMDQS.get(v), EVENTQS.get(v), PRIQS.get(v)), (0x13, 0x13, 0x13));
    assert_eq!((SSIDSIZE.get(v), SIDSIZE.get(v)), (0x14, 0x18));
}

#[test]
fn idr5_and_address_sizes() {
    // §6.3.6: OAS = 0b101 (48 bits), GRAN4K, GRAN64K, VAX = 0b01, STALL_MAX = 0x40.
    let v = 0x0040_0455_u64;
    use regs::idr5::*;
    assert_eq!(address_size_bits(OAS.get(v)), Ok(48));
    assert!(GRAN4K.is_set(v) && !GRAN16K.is_set(v) && GRAN64K.is_set(v));
    assert!(!DS.is_set(v) && !D128.is_set(v));
    assert_eq!(VAX.get(v), 0b01);
    assert_eq!(STALL_MAX.get(v), 0x40);
    let sizes: Vec<_> = (0..8).map(|e| address_size_bits(e).ok()).collect();
    let want = [32, 36, 40, 42, 44, 48, 52, 56].map(Some);
    assert_eq!(sizes, want);
}

#[test]
fn control_and_error_registers() {
    // §6.3.9: SMMUEN | PRIQEN | EVENTQEN | CMDQEN | ATSCHK.
    use regs::{cr0, gbpa, gerror, irq_ctrl};
    let v = 0x1f;
    for f in [cr0::SMMUEN, cr0::PRIQEN, cr0::EVENTQEN, cr0::CMDQEN, cr0::ATSCHK] {
        assert!(f.is_set(v));
    }
    assert_eq!(cr0::VMW.get(v), 0);
    // §6.3.14: Update | ABORT.
    let v = 0x8010_0000;
    assert!(gbpa::UPDATE.is_set(v) && gbpa::ABORT.is_set(v));
    assert_eq!(gbpa::SHCFG.get(v), 0);
    // §6.3.19: CMDQ_ERR and SFM_ERR active.
    let v = 0x101;
    assert!(gerror::CMDQ_ERR.is_set(v) && gerror::SFM_ERR.is_set(v));
    assert!(!gerror::EVENTQ_ABT_ERR.is_set(v) && !gerror::MSI_GERROR_ABT_ERR.is_set(v));
    // §6.3.16: EVENTQ_IRQEN | GERROR_IRQEN.
    let v = 0x5;
    assert!(irq_ctrl::EVENTQ_IRQEN.is_set(v) && !irq_ctrl::PRIQ_IRQEN.is_set(v));
    assert!(irq_ctrl::GERROR_IRQEN.is_set(v));
}

#[test]
fn table_and_queue_registers() {
    use regs::{cons, irq_cfg0, irq_cfg2, prod, queue_base, strtab_base, strtab_base_cfg};
    // §6.3.24: RA, ADDR = 0x8_1234_5000.
    let v = 0x4000_0008_1234_5000_u64;
    assert!(strtab_base::RA.is_set(v));
    assert_eq!(strtab_base::ADDR.in_place(v), 0x8_1234_5000);
    // §6.3.25: FMT = 0b01 (2-level), SPLIT = 8, LOG2SIZE = 16.
    let v = 0x0001_0210;
    assert_eq!(
        StrtabFmt::try_from(u8::try_from(strtab_base_cfg::FMT.get(v)).unwrap()),
        Ok(StrtabFmt::TwoLevel)
    );
    assert_eq!((strtab_base_cfg::SPLIT.get(v), strtab_base_cfg::LOG2SIZE.get(v)), (8, 16));
    // §6.3.26: RA, ADDR = 0x8000_0000, LOG2SIZE = 8.
    let v = 0x4000_0000_8000_0008_u64;
    assert!(queue_base::RA.is_set(v));
    assert_eq!(queue_base::ADDR.in_place(v), 0x8000_0000);
    assert_eq!(queue_base::LOG2SIZE.get(v), 8);
    // §6.3.28: ERR = CERROR_ILL, RD = 5 with the wrap flag (bit 8 for LOG2SIZE 8).
    let v = 0x0100_0105_u32;
    assert_eq!(CError::try_from(u8::try_from(cons::ERR.get(v.into())).unwrap()), Ok(CError::Ill));
    let rd = QueuePointer::from_reg(u32::try_from(cons::RD.get(v.into())).unwrap(), 8);
    assert_eq!(rd, QueuePointer { index: 5, wrap: true });
    // §6.3.95: OVFLG, WR = 3.
    let v = 0x8000_0003_u64;
    assert!(prod::OVFLG.is_set(v));
    assert_eq!(prod::WR.get(v), 3);
    assert!(!cons::OVACKFLG.is_set(0x3));
    // §6.3.21 / §6.3.23: an MSI to 0xFEE0_0040, Device-nGnRE (0b0001), Outer Shareable.
    assert_eq!(irq_cfg0::ADDR.in_place(0xfee0_0040), 0xfee0_0040);
    assert_eq!((irq_cfg2::MEMATTR.get(0x21), irq_cfg2::SH.get(0x21)), (0b0001, 0b10));
}

// =============================================================================================
// §5.2 STE
// =============================================================================================

fn ste(words: [u64; 8]) -> Ste {
    Ste::from_words(words)
}

#[test]
fn ste_abort_and_bypass() {
    // §5.2: V = 1, Config = 0b000.
    let s = ste([0x1, 0, 0, 0, 0, 0, 0, 0]);
    assert!(s.v());
    assert_eq!(s.config(), Ok(StreamConfig::Abort));
    // V = 1, Config = 0b100.
    let s = ste([0x9, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(s.config(), Ok(StreamConfig::Bypass));
    let c = StreamConfig::Bypass;
    assert!(!c.stage1() && !c.stage2());
    // V = 0: the rest is IGNORED, but still decodes.
    let s = ste([0x8, 0, 0, 0, 0, 0, 0, 0]);
    assert!(!s.v());
    assert!(!s.has_res0_set());
}

#[test]
fn ste_reserved_config() {
    // §5.2: Config = 0b010 is Reserved ("0b0xx: behaves as 0b000").
    let s = ste([0x5, 0, 0, 0, 0, 0, 0, 0]);
    assert!(s.v());
    assert_eq!(s.config_raw(), 0b010);
    assert_eq!(s.config(), Err(Reserved(0b010)));
    // 0b001 and 0b011 too.
    assert_eq!(ste([0x3, 0, 0, 0, 0, 0, 0, 0]).config(), Err(Reserved(0b001)));
    assert_eq!(ste([0x7, 0, 0, 0, 0, 0, 0, 0]).config(), Err(Reserved(0b011)));
}

#[test]
fn ste_stage1_with_two_level_cd_table() {
    // Word 0: V, Config = 0b101, S1Fmt = 0b01 ([5:4]), S1ContextPtr = 0x4567_8000 ([55:6]),
    //         S1CDMax = 8 ([63:59]).
    // Word 1: S1DSS = 0b10 ([65:64]), S1CIR = 0b01 ([67:66]), S1COR = 0b01 ([69:68]),
    //         S1CSH = 0b11 ([71:70]), S1STALLD ([91]), EATS = 0b01 ([93:92]),
    //         STRW = 0b10 ([95:94]).
    let s = ste([0x4000_0000_4567_801b, 0x0000_0000_9800_00d6, 0, 0, 0, 0, 0, 0]);
    assert!(s.v());
    assert_eq!(s.config(), Ok(StreamConfig::Stage1));
    assert!(StreamConfig::Stage1.stage1() && !StreamConfig::Stage1.stage2());
    assert_eq!(s.s1fmt(), Ok(S1Fmt::TwoLevel4K));
    assert_eq!(S1Fmt::TwoLevel4K.l2_index_bits(), Some(6));
    assert_eq!(s.s1contextptr(), 0x4567_8000);
    assert_eq!(s.s1cdmax(), 8);
    assert_eq!(s.s1dss(), Ok(S1Dss::Substream0));
    assert_eq!((s.s1cir(), s.s1cor(), s.s1csh()), (0b01, 0b01, 0b11));
    assert!(s.s1stalld());
    assert_eq!(s.eats(), Eats::Full);
    assert_eq!(s.strw(), Ok(Strw::El2));
    assert!(!s.mev() && !s.dre() && s.cont() == 0);
    assert!(!s.has_res0_set());
}

#[test]
fn ste_stage2() {
    // Word 0: V, Config = 0b110.
    // Word 2: S2VMID = 0x42 ([143:128]), S2T0SZ = 24 ([165:160]), S2SL0 = 0b01 ([167:166]),
    //         S2IR0 = S2OR0 = 0b01 ([169:168], [171:170]), S2SH0 = 0b11 ([173:172]),
    //         S2TG = 0b00 ([175:174]), S2PS = 0b101 ([178:176]), S2AA64 ([179]),
    //         S2PTW ([182]), S2HA ([184]), S2R ([186]).
    // Word 3: S2TTB = 0x8_8000_0000 ([247:196]).
    let s = ste([0xd, 0, 0x054d_3558_0000_0042, 0x0000_0008_8000_0000, 0, 0, 0, 0]);
    assert_eq!(s.config(), Ok(StreamConfig::Stage2));
    assert!(StreamConfig::Stage2.stage2() && !StreamConfig::Stage2.stage1());
    assert_eq!(s.s2vmid(), 0x42);
    assert_eq!(s.s2t0sz(), 24);
    assert_eq!(s.s2sl0(), 0b01);
    assert_eq!((s.s2ir0(), s.s2or0(), s.s2sh0()), (0b01, 0b01, 0b11));
    assert_eq!(s.s2tg(), Ok(Granule::Size4K));
    assert_eq!(address_size_bits(s.s2ps().into()), Ok(48));
    assert!(s.s2aa64() && !s.s2endi() && !s.s2affd() && s.s2ptw());
    assert!(!s.s2hd() && s.s2ha() && !s.s2s() && s.s2r());
    assert_eq!(s.s2ttb(), 0x8_8000_0000);
    assert!(!s.has_res0_set());
    // S2TG = 0b01 is 64KB, 0b10 16KB, 0b11 Reserved.
    let tg = |t: u64| ste([0xd, 0, t << 46, 0, 0, 0, 0, 0]).s2tg();
    assert_eq!(tg(0b01), Ok(Granule::Size64K));
    assert_eq!(tg(0b10), Ok(Granule::Size16K));
    assert_eq!(tg(0b11), Err(Reserved(0b11)));
}

#[test]
fn ste_nested() {
    // Word 0: V, Config = 0b111, S1ContextPtr = 0x4000_0000 (an IPA when nested).
    let s = ste([0x0000_0000_4000_000f, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(s.config(), Ok(StreamConfig::Nested));
    assert!(StreamConfig::Nested.stage1() && StreamConfig::Nested.stage2());
    assert_eq!(s.s1contextptr(), 0x4000_0000);
    assert_eq!(s.s1cdmax(), 0);
}

#[test]
fn ste_reserved_bits_are_reported() {
    // §5.2: bits [58:56] and [107:105] are RES0.
    let s = ste([0x0100_0000_0000_0009, 0x0000_0200_0000_0000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(s.config(), Ok(StreamConfig::Bypass));
    assert!(s.has_res0_set());
    assert_eq!(s.res0_set(), [0x0100_0000_0000_0000, 0x0000_0200_0000_0000, 0, 0, 0, 0, 0, 0]);
    // The IMPLEMENTATION DEFINED and SW_RESERVED fields are not RES0: [87:84], [127:116].
    let s = ste([0x9, 0xfff0_0000_00f0_0000, 0, 0, 0, 0, 0, 0]);
    assert!(!s.has_res0_set());
    assert_eq!((s.sw_reserved(), s.impdef_127_116()), (0xf, 0xfff));
    let dbg = format!("{:?}", ste([0x0100_0000_0000_0009, 0, 0, 0, 0, 0, 0, 0]));
    assert!(dbg.contains("RES0 set"), "{dbg}");
}

#[test]
fn l1std() {
    // §5.1: Span = 9 ([4:0]), L2Ptr = 0x1_2340_0000 ([55:6]).
    let d = L1Std::from_word(0x0000_0001_2340_0009);
    assert_eq!(d.span(), 9);
    assert_eq!(d.l2_ste_count(), Some(256));
    assert_eq!(d.l2ptr(), 0x1_2340_0000);
    assert_eq!(d.res0_set(), [0]);
    // Span 0 is invalid; 12 is Reserved and behaves as 0.
    assert_eq!(L1Std::from_word(0x1_2340_0000).l2_ste_count(), None);
    assert_eq!(L1Std::from_word(0x1_2340_000c).l2_ste_count(), None);
    // Bit 5 is RES0.
    assert_eq!(L1Std::from_word(0x21).res0_set(), [0x20]);
}

// =============================================================================================
// §5.4 CD, §5.3 L1CD
// =============================================================================================

#[test]
fn cd_stage1_vmsav8_64() {
    // Word 0: T0SZ = 16 ([5:0]), TG0 = 0b00 ([7:6]), IR0 = OR0 = 0b01 ([9:8], [11:10]),
    //         SH0 = 0b11 ([13:12]), TG1 = 0b10 ([23:22], 4KB in TG1's encoding), EPD1 ([30]),
    //         V ([31]), IPS = 0b101 ([34:32]), AA64 ([41]), HD ([42]), HA ([43]), R ([45]),
    //         A ([46]), ASET ([47]), ASID = 0x1234 ([63:48]).
    // Word 1: TTB0 = 0x8123_4000 ([119:68]).
    // Word 3: MAIR0 = 0x0044_04ff ([223:192]).
    let c = Cd::from_words([
        0x1234_ee05_c080_3510,
        0x0000_0000_8123_4000,
        0,
        0x0000_0000_0044_04ff,
        0,
        0,
        0,
        0,
    ]);
    assert!(c.v());
    assert_eq!(c.t0sz(), 16);
    assert_eq!(c.tg0(), Ok(Granule::Size4K));
    assert_eq!((c.ir0(), c.or0(), c.sh0()), (0b01, 0b01, 0b11));
    assert!(!c.epd0() && !c.endi() && c.epd1());
    assert_eq!(c.tg1(), Ok(Granule::Size4K));
    assert_eq!(address_size_bits(c.ips().into()), Ok(48));
    assert!(!c.affd() && !c.wxn() && !c.uwxn() && !c.tbi0() && !c.tbi1() && !c.pan());
    assert!(c.aa64() && c.hd() && c.ha());
    assert!(!c.s() && c.r() && c.a() && c.aset());
    assert_eq!(c.asid(), 0x1234);
    assert_eq!(c.ttb0(), 0x8123_4000);
    assert!(!c.nscfg0() && !c.had0());
    assert_eq!(c.mair(), 0x0044_04ff);
    assert_eq!(c.ttb1(), 0);
    assert!(!c.has_res0_set());
}

#[test]
fn cd_invalid_and_reserved() {
    // V = 0 (bit 31 clear); TG0 = 0b11 Reserved; bit [120] RES0.
    let c = Cd::from_words([0x0000_0000_0000_00d0, 0x0100_0000_0000_0000, 0, 0, 0, 0, 0, 0]);
    assert!(!c.v());
    assert_eq!(c.t0sz(), 0x10);
    assert_eq!(c.tg0(), Err(Reserved(0b11)));
    assert_eq!(c.tg1(), Err(Reserved(0b00)));
    assert_eq!(c.res0_set()[1], 0x0100_0000_0000_0000);
}

#[test]
fn l1cd() {
    // §5.3: V ([0]), L2Ptr = 0x7654_3000 ([55:12]).
    let d = L1Cd::from_word(0x0000_0000_7654_3001);
    assert!(d.v());
    assert_eq!(d.l2ptr(), 0x7654_3000);
    assert_eq!(d.res0_set(), [0]);
    // Bits [11:1] are RES0.
    assert_eq!(L1Cd::from_word(0x7654_3ffe).res0_set(), [0xffe]);
    assert!(!L1Cd::from_word(0x7654_3000).v());
}

// =============================================================================================
// §4 commands
// =============================================================================================

fn cmd(w0: u64, w1: u64) -> Command {
    Command::from_words([w0, w1])
}

fn no_res0(c: &Command) {
    assert_eq!(c.res0_set(), Some([0, 0]), "{c:?}");
}

#[test]
fn cmd_prefetch() {
    // §4.2.1 CMD_PREFETCH_CONFIG: SSV ([11]), SubstreamID = 3 ([31:12]), StreamID = 9.
    let c = cmd(0x0000_0009_0000_3801, 0);
    assert_eq!(c.opcode(), Ok(Opcode::PrefetchConfig));
    assert!(c.ssv() && !c.ssec());
    assert_eq!((c.sid(), c.ssid()), (9, 3));
    no_res0(&c);
    // §4.2.2 CMD_PREFETCH_ADDR: StreamID = 9, Size = 2 ([68:64]), Addr = 0x7fff_0000_1000.
    let c = cmd(0x0000_0009_0000_0002, 0x0000_7fff_0000_1002);
    assert_eq!(c.opcode(), Ok(Opcode::PrefetchAddr));
    assert_eq!((c.sid(), c.prefetch_size(), c.prefetch_stride()), (9, 2, 0));
    assert_eq!(c.address(), 0x7fff_0000_1000);
    no_res0(&c);
}

#[test]
fn cmd_cfgi() {
    // §4.3.1 CMD_CFGI_STE: StreamID = 0x1234, Leaf ([64]).
    let c = cmd(0x0000_1234_0000_0003, 0x1);
    assert_eq!(c.opcode(), Ok(Opcode::CfgiSte));
    assert_eq!(c.name(), Some("CMD_CFGI_STE"));
    assert_eq!(c.sid(), 0x1234);
    assert!(c.leaf());
    no_res0(&c);
    // §4.3.2 CMD_CFGI_STE_RANGE: StreamID = 0x100, Range = 7 ([68:64]).
    let c = cmd(0x0000_0100_0000_0004, 0x7);
    assert_eq!(c.opcode(), Ok(Opcode::CfgiSteRange));
    assert_eq!(c.name(), Some("CMD_CFGI_STE_RANGE"));
    assert!(!c.is_cfgi_all());
    assert_eq!((c.sid(), c.range()), (0x100, 7));
    no_res0(&c);
    // §4.3.6 CMD_CFGI_ALL: CMD_CFGI_STE_RANGE with Range = 31.
    let c = cmd(0x4, 0x1f);
    assert!(c.is_cfgi_all());
    assert_eq!(c.name(), Some("CMD_CFGI_ALL"));
    assert_eq!(c, Command::cfgi_all());
    // §4.3.3 CMD_CFGI_CD: SubstreamID = 0x42, StreamID = 5, Leaf.
    let c = cmd(0x0000_0005_0004_2005, 0x1);
    assert_eq!(c.opcode(), Ok(Opcode::CfgiCd));
    assert_eq!((c.sid(), c.ssid(), c.leaf()), (5, 0x42, true));
    no_res0(&c);
    // §4.3.4 CMD_CFGI_CD_ALL: StreamID = 7.
    let c = cmd(0x0000_0007_0000_0006, 0);
    assert_eq!(c.opcode(), Ok(Opcode::CfgiCdAll));
    assert_eq!(c.sid(), 7);
    no_res0(&c);
    // A Leaf bit in CMD_CFGI_CD_ALL is not one of its fields.
    assert_eq!(cmd(0x0000_0007_0000_0006, 1).res0_set(), Some([0, 1]));
    // §4.3.5 CMD_CFGI_VMS_PIDM: VMID = 3.
    let c = cmd(0x0000_0003_0000_0007, 0);
    assert_eq!((c.opcode(), c.vmid()), (Ok(Opcode::CfgiVmsPidm), 3));
}

#[test]
fn cmd_tlbi_stage1() {
    // §4.4.2.1 CMD_TLBI_NH_ALL: VMID = 0x11 ([47:32]).
    let c = cmd(0x0000_0011_0000_0010, 0);
    assert_eq!((c.opcode(), c.vmid()), (Ok(Opcode::TlbiNhAll), 0x11));
    no_res0(&c);
    // §4.4.2.2 CMD_TLBI_NH_ASID: VMID = 1, ASID = 0xabcd ([63:48]).
    let c = cmd(0xabcd_0001_0000_0011, 0);
    assert_eq!(c.opcode(), Ok(Opcode::TlbiNhAsid));
    assert_eq!((c.vmid(), c.asid()), (1, 0xabcd));
    no_res0(&c);
    // §4.4.2.4 CMD_TLBI_NH_VA: NUM = 3 ([16:12]), SCALE = 1 ([25:20]), VMID = 1, ASID = 2,
    // Leaf ([64]), TTL = 0b11 ([73:72]), TG = 0b01 ([75:74]), Address = 0xffff_8000_1234_5000.
    let c = cmd(0x0002_0001_0010_3012, 0xffff_8000_1234_5701);
    assert_eq!(c.opcode(), Ok(Opcode::TlbiNhVa));
    assert_eq!((c.num(), c.scale(), c.vmid(), c.asid()), (3, 1, 1, 2));
    assert!(c.leaf() && !c.ttl128());
    assert_eq!(c.ttl(), 0b11);
    assert_eq!(c.tg(), Ok(Some(Granule::Size4K)));
    assert_eq!(c.address(), 0xffff_8000_1234_5000);
    no_res0(&c);
    // §4.4.2.3 CMD_TLBI_NH_VAA: VMID = 3, Address = 0x4000_0000, TG = 0b00 (no range).
    let c = cmd(0x0000_0003_0000_0013, 0x4000_0000);
    assert_eq!(c.opcode(), Ok(Opcode::TlbiNhVaa));
    assert_eq!((c.vmid(), c.address(), c.leaf()), (3, 0x4000_0000, false));
    assert_eq!(c.tg(), Ok(None));
    no_res0(&c);
    // An ASID in CMD_TLBI_NH_VAA is outside its layout.
    assert_eq!(cmd(0x0005_0003_0000_0013, 0).res0_set(), Some([0x0005_0000_0000_0000, 0]));
    // §4.4.2.5 CMD_TLBI_EL3_ALL, §4.4.2.6 CMD_TLBI_EL3_VA (Address = 0x1000, Leaf).
    assert_eq!(cmd(0x18, 0).opcode(), Ok(Opcode::TlbiEl3All));
    let c = cmd(0x1a, 0x1001);
    assert_eq!((c.opcode(), c.address(), c.leaf()), (Ok(Opcode::TlbiEl3Va), 0x1000, true));
    no_res0(&c);
    // §4.4.2.7 CMD_TLBI_EL2_ALL; §4.4.2.10 CMD_TLBI_EL2_ASID (ASID = 7);
    // §4.4.2.8 CMD_TLBI_EL2_VA (ASID = 7, Address = 0x2000); §4.4.2.9 CMD_TLBI_EL2_VAA.
    assert_eq!(cmd(0x20, 0).opcode(), Ok(Opcode::TlbiEl2All));
    let c = cmd(0x0007_0000_0000_0021, 0);
    assert_eq!((c.opcode(), c.asid()), (Ok(Opcode::TlbiEl2Asid), 7));
    no_res0(&c);
    let c = cmd(0x0007_0000_0000_0022, 0x2000);
    assert_eq!((c.opcode(), c.asid(), c.address()), (Ok(Opcode::TlbiEl2Va), 7, 0x2000));
    no_res0(&c);
    let c = cmd(0x23, 0x3000);
    assert_eq!((c.opcode(), c.address()), (Ok(Opcode::TlbiEl2Vaa), 0x3000));
    no_res0(&c);
    // A VMID in CMD_TLBI_EL2_ASID is outside its layout.
    assert!(cmd(0x0007_0001_0000_0021, 0).res0_set() != Some([0, 0]));
}

#[test]
fn cmd_tlbi_stage2_and_all() {
    // §4.4.3.2 CMD_TLBI_S12_VMALL: VMID = 0x22.
    let c = cmd(0x0000_0022_0000_0028, 0);
    assert_eq!((c.opcode(), c.vmid()), (Ok(Opcode::TlbiS12Vmall), 0x22));
    no_res0(&c);
    // §4.4.3.1 CMD_TLBI_S2_IPA: VMID = 0x22, Leaf, Address = 0x8_0000_2000 (Address[55:12]).
    let c = cmd(0x0000_0022_0000_002a, 0x0000_0008_0000_2001);
    assert_eq!(c.opcode(), Ok(Opcode::TlbiS2Ipa));
    assert_eq!((c.vmid(), c.ipa(), c.leaf()), (0x22, 0x8_0000_2000, true));
    no_res0(&c);
    // Address bits [63:56] are outside an IPA.
    assert_eq!(cmd(0x2a, 0x0100_0000_0000_0000).res0_set(), Some([0, 0x0100_0000_0000_0000]));
    // §4.4.4.1 CMD_TLBI_NSNH_ALL: no fields.
    let c = cmd(0x30, 0);
    assert_eq!(c.opcode(), Ok(Opcode::TlbiNsnhAll));
    no_res0(&c);
    assert_eq!(cmd(0x30, 0).name(), Some("CMD_TLBI_NSNH_ALL"));
}

#[test]
fn cmd_ats_and_pri() {
    // §4.5.1 CMD_ATC_INV: Global ([9]), SSV, SubstreamID = 5, StreamID = 0x10, Size = 4
    // ([69:64]), Address = 0x1000_0000.
    let c = cmd(0x0000_0010_0000_5a40, 0x1000_0004);
    assert_eq!(c.opcode(), Ok(Opcode::AtcInv));
    assert!(c.global() && c.ssv());
    assert_eq!((c.ssid(), c.sid(), c.atc_size()), (5, 0x10, 4));
    assert_eq!(c.address(), 0x1000_0000);
    no_res0(&c);
    // §4.5.2 CMD_PRI_RESP: SSV, SubstreamID = 5, StreamID = 0x10, PRGIndex = 0x1ab ([72:64]),
    // Resp = 0b10 Success ([77:76]).
    let c = cmd(0x0000_0010_0000_5841, 0x21ab);
    assert_eq!(c.opcode(), Ok(Opcode::PriResp));
    assert_eq!((c.sid(), c.ssid(), c.prgindex()), (0x10, 5, 0x1ab));
    assert_eq!(c.resp(), Ok(PriResp::Success));
    assert_eq!(PriResp::Success.response_code(), 0b0000);
    no_res0(&c);
    // Resp 0b00 ResponseFailure, 0b01 InvalidRequest, 0b11 Reserved (ILLEGAL).
    assert_eq!(cmd(0x41, 0x0000).resp(), Ok(PriResp::ResponseFailure));
    assert_eq!(cmd(0x41, 0x1000).resp(), Ok(PriResp::InvalidRequest));
    assert_eq!(cmd(0x41, 0x3000).resp(), Err(Reserved(0b11)));
    assert_eq!(PriResp::ResponseFailure.response_code(), 0b1111);
    assert_eq!(PriResp::InvalidRequest.response_code(), 0b0001);
}

#[test]
fn cmd_resume_stall_term_sync() {
    // §4.7.1 CMD_RESUME: Ac = 1 Retry ([12]), StreamID = 0x20, STAG = 0xbeef ([79:64]).
    let c = cmd(0x0000_0020_0000_1044, 0xbeef);
    assert_eq!(c.opcode(), Ok(Opcode::Resume));
    assert_eq!((c.sid(), c.stag()), (0x20, 0xbeef));
    assert_eq!(c.resume_action(), ResumeAction::Retry);
    no_res0(&c);
    // Ac = 0, Ab = 1 ([13]): terminate with abort; Ac = 0, Ab = 0: terminate with RAZ/WI.
    assert_eq!(cmd(0x0000_0020_0000_2044, 0).resume_action(), ResumeAction::TerminateAbort);
    assert_eq!(cmd(0x0000_0020_0000_0044, 0).resume_action(), ResumeAction::TerminateRazWi);
    // §4.7.2 CMD_STALL_TERM: StreamID = 0x20.
    let c = cmd(0x0000_0020_0000_0045, 0);
    assert_eq!((c.opcode(), c.sid()), (Ok(Opcode::StallTerm), 0x20));
    no_res0(&c);
    // §4.7.3 CMD_SYNC: CS = 0b01 SIG_IRQ ([13:12]), MSH = 0b11 ([23:22]), MSIAttr = 0xf
    // ([27:24]), MSIData = 0xdead_beef ([63:32]), MSIAddress = 0xfee0_0004 ([119:66]).
    let c = cmd(0xdead_beef_0fc0_1046, 0x0000_0000_fee0_0004);
    assert_eq!(c.opcode(), Ok(Opcode::Sync));
    assert_eq!(c.cs(), Ok(SyncCs::SigIrq));
    assert_eq!((c.msh(), c.msiattr(), c.msidata()), (0b11, 0xf, 0xdead_beef));
    assert_eq!(c.msiaddress(), 0xfee0_0004);
    no_res0(&c);
    assert_eq!(cmd(0x2046, 0).cs(), Ok(SyncCs::SigSev));
    assert_eq!(cmd(0x0046, 0).cs(), Ok(SyncCs::SigNone));
    assert_eq!(cmd(0x3046, 0).cs(), Err(Reserved(0b11)));
    // MSIAddress bits [1:0] are below the field.
    assert_eq!(cmd(0x46, 0x3).res0_set(), Some([0, 0x3]));
}

#[test]
fn cmd_reserved_and_secure_opcodes() {
    // §4.1.1: 0x00, 0x08..0x0F, 0x14, 0x19, 0x47, 0x90.. are Reserved; 0x80..0x8F IMPDEF.
    for raw in [0x00u64, 0x08, 0x0a, 0x14, 0x19, 0x24, 0x42, 0x47, 0x80, 0x8f, 0x90, 0xff] {
        let c = cmd(raw, 0);
        assert_eq!(c.opcode(), Err(Reserved(raw)));
        assert_eq!(c.name(), None);
        assert_eq!(c.res0_set(), None);
    }
    // §4.1.1 opcodes of the Secure and DPT commands.
    for (raw, op) in [
        (0x50, Opcode::TlbiSEl2All),
        (0x51, Opcode::TlbiSEl2Asid),
        (0x52, Opcode::TlbiSEl2Va),
        (0x53, Opcode::TlbiSEl2Vaa),
        (0x58, Opcode::TlbiSS12Vmall),
        (0x5a, Opcode::TlbiSS2Ipa),
        (0x60, Opcode::TlbiSnhAll),
        (0x70, Opcode::DptiAll),
        (0x73, Opcode::DptiPa),
    ] {
        assert_eq!(cmd(raw, 0).opcode(), Ok(op));
    }
}

#[test]
fn cerror_codes() {
    // §7.1: CERROR_NONE 0x00, CERROR_ILL 0x01, CERROR_ABT 0x02, CERROR_ATC_INV_SYNC 0x03.
    for (raw, e, name) in [
        (0x00, CError::None, "CERROR_NONE"),
        (0x01, CError::Ill, "CERROR_ILL"),
        (0x02, CError::Abt, "CERROR_ABT"),
        (0x03, CError::AtcInvSync, "CERROR_ATC_INV_SYNC"),
    ] {
        assert_eq!(CError::try_from(raw), Ok(e));
        assert_eq!(e.name(), name);
    }
    assert_eq!(CError::try_from(0x7f), Err(Reserved(0x7f)));
}

// =============================================================================================
// §7.3 event records
// =============================================================================================

fn evt(words: [u64; 4]) -> EventRecord {
    EventRecord::from_words(words)
}

#[test]
fn event_numbers() {
    // §7.3.2 to §7.3.20.
    let table = [
        (0x01, "F_UUT"),
        (0x02, "C_BAD_STREAMID"),
        (0x03, "F_STE_FETCH"),
        (0x04, "C_BAD_STE"),
        (0x05, "F_BAD_ATS_TREQ"),
        (0x06, "F_STREAM_DISABLED"),
        (0x07, "F_TRANSL_FORBIDDEN"),
        (0x08, "C_BAD_SUBSTREAMID"),
        (0x09, "F_CD_FETCH"),
        (0x0a, "C_BAD_CD"),
        (0x0b, "F_WALK_EABT"),
        (0x10, "F_TRANSLATION"),
        (0x11, "F_ADDR_SIZE"),
        (0x12, "F_ACCESS"),
        (0x13, "F_PERMISSION"),
        (0x20, "F_TLB_CONFLICT"),
        (0x21, "F_CFG_CONFLICT"),
        (0x24, "E_PAGE_REQUEST"),
        (0x25, "F_VMS_FETCH"),
    ];
    assert_eq!(table.len(), EventId::ALL.len());
    for (code, name) in table {
        let id = EventId::try_from(code).unwrap_or_else(|r| panic!("{name}: {r}"));
        assert_eq!((id.code(), id.name()), (code, name));
    }
    // §7.3.21: 0xE0..0xEF are IMPLEMENTATION DEFINED; everything else is Reserved.
    for code in [0x00, 0x0c, 0x0f, 0x14, 0x22, 0x23, 0x26, 0xe0, 0xef, 0xff] {
        assert_eq!(EventId::try_from(code), Err(Reserved(code.into())));
    }
}

#[test]
fn event_configuration_errors() {
    // §7.3.3 C_BAD_STREAMID: StreamID = 0x1_0000.
    let e = evt([0x0001_0000_0000_0002, 0, 0, 0]);
    assert_eq!(e.id(), Ok(EventId::CBadStreamid));
    assert_eq!((e.sid(), e.ssv()), (0x1_0000, false));
    // §7.3.5 C_BAD_STE: StreamID = 0x99.
    let e = evt([0x0000_0099_0000_0004, 0, 0, 0]);
    assert_eq!((e.id(), e.sid()), (Ok(EventId::CBadSte), 0x99));
    // §7.3.9 C_BAD_SUBSTREAMID: SubstreamID = 0xfffff ([31:12], no SSV), StreamID = 0x42.
    let e = evt([0x0000_0042_ffff_f008, 0, 0, 0]);
    assert_eq!(e.id(), Ok(EventId::CBadSubstreamid));
    assert_eq!((e.sid(), e.ssid()), (0x42, 0xfffff));
    // §7.3.11 C_BAD_CD: SSV, SubstreamID = 1, StreamID = 3.
    let e = evt([0x0000_0003_0000_180a, 0, 0, 0]);
    assert_eq!(e.id(), Ok(EventId::CBadCd));
    assert_eq!((e.sid(), e.ssv(), e.ssid()), (3, true, 1));
    // §7.3.7 F_STREAM_DISABLED: StreamID = 0x42.
    let e = evt([0x0000_0042_0000_0006, 0, 0, 0]);
    assert_eq!((e.id(), e.sid()), (Ok(EventId::FStreamDisabled), 0x42));
    // §7.3.18 F_CFG_CONFLICT: StreamID = 1, Reason = 0xabcd_0123 ([95:64]).
    let e = evt([0x0000_0001_0000_0021, 0xabcd_0123, 0, 0]);
    assert_eq!(e.id(), Ok(EventId::FCfgConflict));
    assert_eq!(e.conflict_reason(), 0xabcd_0123);
}

#[test]
fn event_fetch_aborts() {
    // §7.3.4 F_STE_FETCH: StreamID = 0x99, Reason = 2 ([79:64]), GPCF ([80]),
    // FetchAddr = 0x8000_0fc0 ([247:195]).
    let e = evt([0x0000_0099_0000_0003, 0x0000_0000_0001_0002, 0, 0x0000_0000_8000_0fc0]);
    assert_eq!(e.id(), Ok(EventId::FSteFetch));
    assert_eq!((e.sid(), e.reason(), e.gpcf()), (0x99, 2, true));
    assert_eq!(e.fetch_addr(), 0x8000_0fc0);
    // §7.3.10 F_CD_FETCH: SSV, SubstreamID = 1, StreamID = 3, FetchAddr = 0x9000_0040.
    let e = evt([0x0000_0003_0000_1809, 0, 0, 0x0000_0000_9000_0040]);
    assert_eq!(e.id(), Ok(EventId::FCdFetch));
    assert_eq!((e.sid(), e.ssid(), e.fetch_addr()), (3, 1, 0x9000_0040));
    // §7.3.20 F_VMS_FETCH: StreamID = 1, FetchAddr = 0x1_0000_1000.
    let e = evt([0x0000_0001_0000_0025, 0, 0, 0x0000_0001_0000_1000]);
    assert_eq!((e.id(), e.fetch_addr()), (Ok(EventId::FVmsFetch), 0x1_0000_1000));
    // §7.3.12 F_WALK_EABT: StreamID = 1, Reason = 1, RnW ([99]), S2 = 0, CLASS = TT ([105:104]),
    // InputAddr = 0x5000, FetchAddr = 0x4000_1238 (an 8-byte descriptor).
    let e = evt([0x0000_0001_0000_000b, 0x0000_0108_0000_0001, 0x5000, 0x4000_1238]);
    assert_eq!(e.id(), Ok(EventId::FWalkEabt));
    assert_eq!(e.reason(), 1);
    assert!(e.rnw() && !e.s2() && !e.ind() && !e.pnu());
    assert_eq!(e.class(), Ok(Class::Tt));
    assert_eq!((e.input_addr(), e.fetch_addr()), (0x5000, 0x4000_1238));
}

#[test]
fn event_translation_faults() {
    // §7.3.13 F_TRANSLATION at stage 1, stalled: SSV, SubstreamID = 3, StreamID = 0x12,
    // STAG = 0x55 ([79:64]), Stall ([95]), PnU ([97]), RnW ([99]), CLASS = IN,
    // InputAddr = 0xffff_0000_dead_b000 ([191:128]).
    let e = evt([0x0000_0012_0000_3810, 0x0000_020a_8000_0055, 0xffff_0000_dead_b000, 0]);
    assert_eq!(e.id(), Ok(EventId::FTranslation));
    assert!(EventId::FTranslation.can_stall());
    assert_eq!((e.sid(), e.ssv(), e.ssid()), (0x12, true, 3));
    assert_eq!((e.stag(), e.stall()), (0x55, true));
    assert!(e.pnu() && !e.ind() && e.rnw() && !e.s2() && !e.nsipa());
    assert_eq!(e.class(), Ok(Class::In));
    assert_eq!(e.input_addr(), 0xffff_0000_dead_b000);
    // F_TRANSLATION at stage 2 on a stage 1 walk: S2 ([103]), CLASS = TT, RnW,
    // IPA = 0x8765_4000 ([247:204]).
    let e = evt([0x0000_0007_0000_0010, 0x0000_0188_0000_0000, 0x1000, 0x8765_4000]);
    assert!(e.s2() && e.rnw() && !e.stall());
    assert_eq!(e.class(), Ok(Class::Tt));
    assert_eq!((e.input_addr(), e.ipa()), (0x1000, 0x8765_4000));
    // §7.3.14 F_ADDR_SIZE: StreamID = 1, InD ([98]), RnW, CLASS = IN,
    // InputAddr = 0x1_0000_0000_0000.
    let e = evt([0x0000_0001_0000_0011, 0x0000_020c_0000_0000, 0x0001_0000_0000_0000, 0]);
    assert_eq!(e.id(), Ok(EventId::FAddrSize));
    assert!(e.ind() && e.rnw() && !e.s2());
    assert_eq!(e.class(), Ok(Class::In));
    assert_eq!(e.input_addr(), 0x0001_0000_0000_0000);
    // §7.3.15 F_ACCESS at stage 2: S2, CLASS = IN, IPA = 0x4_0000_0000.
    let e = evt([0x0000_0001_0000_0012, 0x0000_0280_0000_0000, 0, 0x0000_0004_0000_0000]);
    assert_eq!(e.id(), Ok(EventId::FAccess));
    assert!(e.s2() && !e.rnw());
    assert_eq!((e.class(), e.ipa()), (Ok(Class::In), 0x4_0000_0000));
    // §7.3.16 F_PERMISSION at stage 2 on a stage 1 walk read: TTRnW ([108]), CLASS = TT, S2,
    // RnW.
    let e = evt([0x0000_0001_0000_0013, 0x0000_1188_0000_0000, 0x7000, 0x0000_0000_0003_0000]);
    assert_eq!(e.id(), Ok(EventId::FPermission));
    assert!(e.ttrnw() && e.s2() && e.rnw());
    assert_eq!((e.class(), e.ipa()), (Ok(Class::Tt), 0x3_0000));
    // CLASS = 0b11 is Reserved.
    assert_eq!(evt([0x10, 0x0000_0300_0000_0000, 0, 0]).class(), Err(Reserved(0b11)));
}

#[test]
fn event_other_faults() {
    // §7.3.2 F_UUT: StreamID = 5, Reason = 7 ([79:64]), PnU, InD, InputAddr = 0x1234_5000.
    let e = evt([0x0000_0005_0000_0001, 0x0000_0006_0000_0007, 0x1234_5000, 0]);
    assert_eq!(e.id(), Ok(EventId::FUut));
    assert_eq!((e.sid(), e.reason()), (5, 7));
    assert!(e.pnu() && e.ind() && !e.rnw());
    assert_eq!(e.input_addr(), 0x1234_5000);
    // §7.3.6 F_BAD_ATS_TREQ: SSV, SubstreamID = 9, StreamID = 0x100.
    let e = evt([0x0000_0100_0000_9805, 0, 0, 0]);
    assert_eq!(e.id(), Ok(EventId::FBadAtsTreq));
    assert_eq!((e.sid(), e.ssv(), e.ssid()), (0x100, true, 9));
    // §7.3.8 F_TRANSL_FORBIDDEN: StreamID = 0x42, RnW = 0 (write), InputAddr = 0xfee0_0000.
    let e = evt([0x0000_0042_0000_0007, 0, 0xfee0_0000, 0]);
    assert_eq!(e.id(), Ok(EventId::FTranslForbidden));
    assert!(!e.rnw());
    assert_eq!(e.input_addr(), 0xfee0_0000);
    // §7.3.17 F_TLB_CONFLICT: StreamID = 1, S2, RnW, IPA = 0x2000.
    let e = evt([0x0000_0001_0000_0020, 0x0000_0088_0000_0000, 0x2000, 0x2000]);
    assert_eq!(e.id(), Ok(EventId::FTlbConflict));
    assert!(e.s2() && e.rnw());
    assert_eq!(e.ipa(), 0x2000);
    // §7.3.19 E_PAGE_REQUEST: SSV, SubstreamID = 4, StreamID = 0x20, Span = 16 ([115:108]),
    // pR ([103]), pW ([102]), uR ([99]), InputAddr[63:12] = 0x7f00_1234_5000 ([191:140]).
    let e = evt([0x0000_0020_0000_4824, 0x0001_00c8_0000_0000, 0x0000_7f00_1234_5000, 0]);
    assert_eq!(e.id(), Ok(EventId::EPageRequest));
    assert_eq!((e.sid(), e.ssid(), e.span()), (0x20, 4, 16));
    assert!(e.pr() && e.pw() && !e.px() && e.ur() && !e.uw() && !e.ux());
    assert_eq!(e.input_addr(), 0x7f00_1234_5000);
    let dbg = format!("{e:?}");
    assert!(dbg.starts_with("E_PAGE_REQUEST") && dbg.contains("Span: 0x10"), "{dbg}");
}

// =============================================================================================
// §8 PRI queue
// =============================================================================================

#[test]
fn page_request() {
    // StreamID = 0x300 ([31:0]), SubstreamID = 0x1f ([51:32]), R ([60]), W ([61]),
    // Last ([62]), SSV ([63]); PRGIndex = 0x1ab ([72:64]), Page address = 0x7fff_f000_0000.
    let p = PageRequest::from_words([0xf000_001f_0000_0300, 0x0000_7fff_f000_01ab]);
    assert_eq!((p.sid(), p.ssid()), (0x300, 0x1f));
    assert!(p.ssv() && p.last() && p.w() && p.r() && !p.x() && !p.privileged());
    assert_eq!(p.prgindex(), 0x1ab);
    assert_eq!(p.page_address(), 0x7fff_f000_0000);
    assert!(!p.is_stop_marker());
    // A Stop PASID marker: SSV = 1, {Last, W, R} = 0b100.
    let p = PageRequest::from_words([0xc000_0001_0000_0300, 0]);
    assert!(p.is_stop_marker());
    // Without a PASID the same bits are an ordinary request.
    assert!(!PageRequest::from_words([0x4000_0000_0000_0300, 0]).is_stop_marker());
}

//! VMSAv8-64 translation tables: stage 1 ([`VmsaS1`]) and stage 2 ([`VmsaS2`]), as an SMMUv3
//! context descriptor (stage 1) and stream table entry (stage 2) configure them.
//!
//! Arm ARM (DDI 0487 K.a) chapter D8, "The AArch64 Virtual Memory System Architecture":
//! D8.2 "Translation process" (granules, input size TnSZ, starting level, concatenated stage-2
//! starting tables), D8.3 "Translation table descriptor formats", D8.4 "Memory access control"
//! (AP, XN, hierarchical permissions), D8.5 "Hardware updates to the translation tables"
//! (AF, dirty state). Where the rule is a pseudocode function, its name is cited too.
//!
//! Levels are numbered 0 (top) to 3 (last), as the Arm ARM numbers them; a walk starts at the
//! level the input size (and, at stage 2, SL0) selects. Index bits per level are 9, 11 and 13
//! for the 4K, 16K and 64K granules.
//!
//! DEVIATION: level -1 (52-bit input with the 4K granule and FEAT_LPA2, stage-2 SL2) is not
//! modelled: such a configuration is a [`FaultKind::Config`](crate::FaultKind::Config).
//! DEVIATION: FEAT_TTST (small translation tables, TnSZ above 39, 4K stage-2 SL0 = 3) is not
//! modelled either; those values are configuration faults too.
//! DEVIATION: TBI, the Secure state (NS, NSTable), FEAT_D128, FEAT_S1PIE/S2PIE, FEAT_HAFT (AF
//! in table descriptors) and the contiguous hint are not modelled; the contiguous bit and every
//! RES0 bit are ignored (see [`Granule`] for the address fields).

pub mod s1;
pub mod s2;

pub use s1::{S1Acc, S1Attrs, VmsaS1};
pub use s2::{S2Attrs, VmsaS2};

use crate::bits::{low_mask, Field};
use crate::radix::{Quick, Shape};

/// A field value the architecture reserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved(pub u8);

/// D8.3: valid. Clear: the descriptor is invalid, whatever the other bits hold.
pub const VALID: Field = Field::bit(0);
/// D8.3: descriptor type. Set: table (levels 0-2) or page (level 3). Clear: block (levels 0-2,
/// where the granule allows one) or reserved (level 3, treated as invalid).
pub const TYPE: Field = Field::bit(1);
/// D8.3: shareability in a block or page descriptor; `OA[51:50]` instead under FEAT_LPA2 (DS = 1),
/// when shareability comes from the TCR (SMMU: the CD's SH0, or the STE's S2SH0).
pub const SH: Field = Field::bits(9, 8);
/// D8.5: access flag.
pub const AF: Field = Field::bit(10);
/// D8.5: dirty bit modifier: with hardware dirty-state management, a write to a read-only
/// descriptor with DBM set makes it writable instead of faulting.
pub const DBM: Field = Field::bit(51);
/// D8.3: contiguous hint (ignored: IMPDEF, a TLB may but need not use it).
pub const CONTIGUOUS: Field = Field::bit(52);
/// D8.3: `OA[51:48]` in bits 15:12 with the 64K granule and FEAT_LPA when the output size is 52
/// bits; RES0 (ignored) otherwise.
pub const OA_HI_LPA: Field = Field::bits(15, 12);
/// D8.3: `OA[51:50]` in bits 9:8 with the 4K/16K granules and FEAT_LPA2 (DS = 1).
pub const OA_HI_LPA2: Field = Field::bits(9, 8);

/// Inner shareable: what the builders put in [`SH`] when it is not an address field.
const SH_INNER: u64 = 0b11;

/// The translation granule (D8.2 "Translation granule"): the page size, and the size of every
/// table but the starting one.
///
/// The output address (or next-table address) of a descriptor is bits 47 down to the granule's
/// page bits (see [`Oa52`] for bits 51:48). IMPDEF: RES0 bits below it, and the block-offset
/// bits of a block descriptor's address field, are ignored rather than faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4KB granule: 9 index bits per level; blocks of 1G (level 1) and 2M (level 2).
    K4,
    /// 16KB granule: 11 index bits per level; blocks of 32M (level 2).
    K16,
    /// 64KB granule: 13 index bits per level; blocks of 512M (level 2).
    K64,
}

impl Granule {
    /// Page size, as a power of two.
    pub const fn lg2(self) -> u8 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    /// Index bits a full table resolves: the page bits less 3 (eight-byte descriptors).
    pub const fn stride(self) -> u8 {
        self.lg2() - 3
    }

    /// From a TCR.TG0 / VTCR.TG0 / CD.TG0 / STE.S2TG encoding: 0b00 4K, 0b01 64K, 0b10 16K.
    pub const fn from_tg0(tg0: u8) -> Result<Self, Reserved> {
        match tg0 {
            0b00 => Ok(Granule::K4),
            0b01 => Ok(Granule::K64),
            0b10 => Ok(Granule::K16),
            v => Err(Reserved(v)),
        }
    }
}

/// Physical (or, at stage 1 under stage 2, intermediate physical) address size: TCR.IPS,
/// VTCR.PS, CD.IPS, STE.S2PS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ps {
    /// 0b000: 4GB.
    Bits32,
    /// 0b001: 64GB.
    Bits36,
    /// 0b010: 1TB.
    Bits40,
    /// 0b011: 4TB.
    Bits42,
    /// 0b100: 16TB.
    Bits44,
    /// 0b101: 256TB.
    Bits48,
    /// 0b110: 4PB (FEAT_LPA / FEAT_LPA2).
    Bits52,
}

impl Ps {
    /// From the 3-bit field; 0b111 (56 bits, FEAT_D128) is reserved here.
    pub const fn from_field(v: u8) -> Result<Self, Reserved> {
        match v {
            0 => Ok(Ps::Bits32),
            1 => Ok(Ps::Bits36),
            2 => Ok(Ps::Bits40),
            3 => Ok(Ps::Bits42),
            4 => Ok(Ps::Bits44),
            5 => Ok(Ps::Bits48),
            6 => Ok(Ps::Bits52),
            v => Err(Reserved(v)),
        }
    }

    /// The size in bits.
    pub const fn bits(self) -> u8 {
        match self {
            Ps::Bits32 => 32,
            Ps::Bits36 => 36,
            Ps::Bits40 => 40,
            Ps::Bits42 => 42,
            Ps::Bits44 => 44,
            Ps::Bits48 => 48,
            Ps::Bits52 => 52,
        }
    }
}

/// Which 52-bit output-address extension is in force. The model's PAMax (implemented physical
/// address size) is 48 bits with [`Oa52::Off`] and 52 bits otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Oa52 {
    /// 48-bit output addresses at most.
    Off,
    /// FEAT_LPA: with the 64K granule and a 52-bit PS, `OA[51:48]` is in descriptor bits 15:12;
    /// level-1 blocks (4TB) are allowed. IMPDEF: FEAT_LVA comes with it, so the 64K granule
    /// also takes 52-bit inputs (TnSZ down to 12). No effect on the 4K/16K granules, whose
    /// output stays at 48 bits without DS.
    Lpa,
    /// FEAT_LPA2 with TCR.DS = 1: with the 4K/16K granules `OA[49:12]` is in bits 49:12 and
    /// `OA[51:50]` in bits 9:8 (so SH comes from the TCR); 4K level-0 (512GB) and 16K level-1
    /// (64GB) blocks are allowed; the 16K granule takes 52-bit inputs. With the 64K granule it
    /// acts as [`Oa52::Lpa`] (FEAT_LPA2 implies FEAT_LPA).
    Lpa2,
}

/// D8.3 "Output address fields": the output (or next-table) address a block, page or table
/// descriptor holds under granule `tg` and 52-bit extension `oa_52`, taking the output size at
/// its largest (PS of 52 bits), as a reader without the TCR's PS (a debugger) sees it. The
/// walker decodes with the same rule.
#[inline]
pub fn descriptor_addr(raw: u64, tg: Granule, oa_52: Oa52) -> u64 {
    let oa_bits = Regime::oa_bits(tg, Ps::Bits52, oa_52);
    Regime { tg, oa_52, start: 3, ia_bits: tg.lg2(), oa_bits }.addr(raw)
}

/// Where a descriptor keeps its output address (D8.3, "Output address fields").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OaLayout {
    /// `OA[47:p]` in bits 47:p.
    Base,
    /// `OA[47:16]` in bits 47:16, `OA[51:48]` in bits 15:12 (64K, FEAT_LPA, PS = 52).
    Lpa,
    /// `OA[49:p]` in bits 49:p, `OA[51:50]` in bits 9:8 (4K/16K, FEAT_LPA2, DS = 1).
    Lpa2,
}

/// The shape and address rules both stages share, derived from their configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Regime {
    pub tg: Granule,
    pub oa_52: Oa52,
    /// Level of the starting table (0..=3).
    pub start: i8,
    /// Input address bits: 64 - TnSZ.
    pub ia_bits: u8,
    /// Effective output address bits.
    pub oa_bits: u8,
}

impl Regime {
    /// AArch64.PAMax() of the model.
    pub const fn pa_max(oa_52: Oa52) -> u8 {
        match oa_52 {
            Oa52::Off => 48,
            Oa52::Lpa | Oa52::Lpa2 => 52,
        }
    }

    /// D8.2 "Input address size": the largest input size the granule takes (smallest TnSZ).
    /// 52 bits needs FEAT_LVA (64K) or FEAT_LPA2 (16K); 4K needs level -1 for it (DEVIATION).
    pub const fn max_ia_bits(tg: Granule, oa_52: Oa52) -> u8 {
        match (tg, oa_52) {
            (Granule::K64, Oa52::Lpa | Oa52::Lpa2) | (Granule::K16, Oa52::Lpa2) => 52,
            _ => 48,
        }
    }

    /// The smallest input size: TnSZ at most 39 without FEAT_TTST (DEVIATION: not modelled).
    pub const MIN_IA_BITS: u8 = 25;

    /// Effective output size: PS limited by PAMax, and to 48 bits for the 4K/16K granules
    /// unless DS = 1 (D8.2 "Output address size"; AArch64.PAMax, TCR.DS).
    #[inline]
    pub fn oa_bits(tg: Granule, ps: Ps, oa_52: Oa52) -> u8 {
        let bits = ps.bits().min(Self::pa_max(oa_52));
        match (tg, oa_52) {
            (Granule::K64, _) | (_, Oa52::Lpa2) => bits,
            _ => bits.min(48),
        }
    }

    /// `64 - tnsz` when TnSZ is in range for the granule, else `None`.
    #[inline]
    pub fn ia_bits_checked(tg: Granule, oa_52: Oa52, tnsz: u8) -> Option<u8> {
        let ia = 64u8.checked_sub(tnsz)?;
        (Self::MIN_IA_BITS..=Self::max_ia_bits(tg, oa_52)).contains(&ia).then_some(ia)
    }

    /// Stage-1 starting level (D8.2 "Starting level"): as many full strides as the input bits
    /// above the page offset need, the top one possibly partial.
    #[inline]
    pub fn s1_start(tg: Granule, ia_bits: u8) -> i8 {
        let above_page = ia_bits.saturating_sub(tg.lg2());
        let levels = above_page.div_ceil(tg.stride()).clamp(1, 4);
        // `levels` is 1..=4.
        4 - i8::try_from(levels).unwrap_or(4)
    }

    #[inline]
    pub fn depth(&self) -> usize {
        usize::try_from(4 - self.start.clamp(0, 3)).unwrap_or(1)
    }

    #[inline]
    pub fn level(&self, d: usize) -> i8 {
        let d = i8::try_from(d.min(3)).unwrap_or(3);
        self.start.clamp(0, 3).saturating_add(d)
    }

    #[inline]
    pub fn shift(&self, d: usize) -> u8 {
        let below = u8::try_from(3 - self.level(d).clamp(0, 3)).unwrap_or(0);
        self.tg.lg2() + self.tg.stride() * below
    }

    /// The starting table resolves what is left of the input above its shift: fewer bits than
    /// a full table, or at stage 2 up to 4 more (up to 16 concatenated tables).
    #[inline]
    pub fn index_bits(&self, d: usize) -> u8 {
        if d == 0 {
            self.ia_bits.saturating_sub(self.shift(0)).min(self.tg.stride() + 4)
        } else {
            self.tg.stride()
        }
    }

    /// The table base from the TTB field: bits 51:0, aligned to the starting table's size and
    /// at least 64 bytes (IMPDEF: low bits are treated as zero, as the SMMU does).
    #[inline]
    pub fn table_base(&self, ttb: u64) -> u64 {
        let align = (self.index_bits(0) + 3).max(6);
        ttb & low_mask(52) & !low_mask(align)
    }

    /// AArch64.BlockDescSupported: which levels may hold a block descriptor.
    #[inline]
    pub fn block_allowed(&self, level: i8) -> bool {
        match self.tg {
            Granule::K4 => level == 1 || level == 2 || (level == 0 && self.oa_52 == Oa52::Lpa2),
            Granule::K16 => level == 2 || (level == 1 && self.oa_52 == Oa52::Lpa2),
            Granule::K64 => level == 2 || (level == 1 && self.oa_52 != Oa52::Off),
        }
    }

    #[inline]
    pub fn leaf_allowed(&self, d: usize) -> bool {
        let level = self.level(d);
        level == 3 || self.block_allowed(level)
    }

    #[inline]
    pub fn layout(&self) -> OaLayout {
        match (self.tg, self.oa_52) {
            (Granule::K64, Oa52::Lpa | Oa52::Lpa2) if self.oa_bits == 52 => OaLayout::Lpa,
            (Granule::K4 | Granule::K16, Oa52::Lpa2) => OaLayout::Lpa2,
            _ => OaLayout::Base,
        }
    }

    /// The (table or output) address a descriptor holds, aligned to the granule.
    #[inline]
    pub fn addr(&self, raw: u64) -> u64 {
        let p = self.tg.lg2();
        match self.layout() {
            OaLayout::Base => Field::bits(47, p).in_place(raw),
            OaLayout::Lpa => Field::bits(47, p).in_place(raw) | (OA_HI_LPA.get(raw) << 48),
            OaLayout::Lpa2 => Field::bits(49, p).in_place(raw) | (OA_HI_LPA2.get(raw) << 50),
        }
    }

    /// The descriptor bits that hold `addr` (granule-aligned, below 2^52).
    pub fn encode_addr(&self, addr: u64) -> u64 {
        let p = self.tg.lg2();
        match self.layout() {
            OaLayout::Base => Field::bits(47, p).in_place(addr),
            OaLayout::Lpa => {
                Field::bits(47, p).in_place(addr) | OA_HI_LPA.set(0, Field::bits(51, 48).get(addr))
            }
            OaLayout::Lpa2 => {
                Field::bits(49, p).in_place(addr) | OA_HI_LPA2.set(0, Field::bits(51, 50).get(addr))
            }
        }
    }

    /// SH for a new leaf: inner shareable, unless the field holds address bits.
    pub fn leaf_sh(&self) -> u64 {
        if self.layout() == OaLayout::Lpa2 {
            0
        } else {
            SH.set(0, SH_INNER)
        }
    }

    /// The walk's geometry ([`Shape`]): from the starting level down to level 3.
    #[inline]
    pub fn shape(&self) -> Shape {
        Shape {
            depth: self.depth(),
            top_level: self.start.clamp(0, 3),
            step: 1,
            page_shift: self.tg.lg2(),
            stride: self.tg.stride(),
            top_bits: self.index_bits(0),
        }
    }

    /// The [`Quick`] tests of both stages: `0b11` descriptors whose address fits the output
    /// size, and `0b01` blocks where the granule has them; pages and blocks with the
    /// `page_flags` set (AF) and, when `dbm_general`, DBM clear. Only for the base address
    /// layout (the 52-bit ones take the general path).
    #[inline]
    pub fn quick(&self, page_flags: u64, dbm_general: bool) -> Quick {
        if self.layout() != OaLayout::Base {
            return Quick::NONE;
        }
        let addr = Field::bits(47, self.tg.lg2()).mask();
        let beyond = addr & !low_mask(self.oa_bits);
        let want = VALID.mask() | TYPE.mask();
        let dbm = if dbm_general { DBM.mask() } else { 0 };
        Quick {
            table: (want | beyond, want),
            page: (want | page_flags | beyond | dbm, want | page_flags),
            addr,
        }
    }

    /// The block test at depth `d` of a walk whose page test is `quick.page`: `0b01` where
    /// the granule has blocks; the address bits below the block's size are ignored (IMPDEF,
    /// above).
    #[inline]
    pub fn quick_block(&self, quick: &Quick, d: usize) -> (u64, u64) {
        if quick.page == Quick::NEVER || !self.block_allowed(self.level(d)) {
            return Quick::NEVER;
        }
        (quick.page.0, quick.page.1 & !TYPE.mask())
    }

    /// D8.3: a descriptor's address with bits at or above the output size is an Address size
    /// fault at its level, for table and block/page descriptors alike.
    #[inline]
    pub fn oa_fits(&self, addr: u64) -> bool {
        addr >> self.oa_bits == 0
    }
}

/// What decoding one descriptor's type bits says (AArch64.DecodeDescriptorType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Invalid,
    Table,
    Leaf,
}

impl Regime {
    /// D8.3: bit 0 clear is invalid; `0b11` is a table above level 3 and a page at level 3;
    /// `0b01` is a block where the granule has blocks, and invalid at level 3 or where it has
    /// none (a Translation fault either way).
    #[inline]
    pub fn kind(&self, d: usize, raw: u64) -> Kind {
        let level = self.level(d);
        if !VALID.is_set(raw) {
            Kind::Invalid
        } else if TYPE.is_set(raw) {
            if level == 3 {
                Kind::Leaf
            } else {
                Kind::Table
            }
        } else if level != 3 && self.block_allowed(level) {
            Kind::Leaf
        } else {
            Kind::Invalid
        }
    }
}

//! VMSAv8-64 stage 2: the tables an SMMUv3 STE's S2TTB points at (VTTBR/VTCR on a PE).

use sviommu_memory::{Address, FrameAllocator, PhysMemory};

use super::{Granule, Kind, Oa52, Ps, Regime, AF, DBM, TYPE, VALID};
use crate::bits::{low_mask, Field};
use crate::radix::{self, Entry, Format, MapError, Quick, Shape};
use crate::walk::{Access, FaultKind, Perms, Stage};

/// D8.3, stage-2 block/page: `MemAttr[3:0]`.
pub const MEM_ATTR: Field = Field::bits(5, 2);
/// D8.4 "Stage 2 access permissions": `S2AP[1:0]` in bits 7:6; `S2AP[0]` (bit 6) grants read,
/// `S2AP[1]` (bit 7) grants write.
pub const S2AP: Field = Field::bits(7, 6);
/// D8.4 "Stage 2 execute-never": `XN[1:0]` in bits 54:53 (`XN[0]` only with FEAT_XNX).
pub const XN: Field = Field::bits(54, 53);

/// `S2AP[0]`: read.
const S2AP_R: u64 = 0b01;
/// `S2AP[1]`: write.
const S2AP_W: u64 = 0b10;
/// Normal memory, inner and outer write-back: what the builders put in MemAttr.
const MEM_ATTR_NORMAL_WB: u8 = 0b1111;

/// One set of stage-2 tables and the STE (VTCR) fields that govern their walk.
///
/// `ttb` is the (possibly concatenated) starting table's address, as STE.S2TTB holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmsaS2 {
    /// S2TTB: the starting table.
    pub ttb: u64,
    /// S2TG: the granule.
    pub tg: Granule,
    /// S2T0SZ: the input (IPA) size is `64 - t0sz` bits.
    pub t0sz: u8,
    /// S2SL0: with the granule, selects the starting level (see
    /// [`start_level`](Self::start_level)).
    pub sl0: u8,
    /// S2PS: the output size.
    pub ps: Ps,
    /// 52-bit output addresses.
    pub oa_52: Oa52,
    /// S2HA: hardware sets AF (else an AF = 0 leaf is an Access flag fault).
    pub ha: bool,
    /// S2HD: hardware dirty-state management through DBM (needs `ha`).
    pub hd: bool,
    /// S2AFFD: without `ha`, an AF = 0 leaf is taken as AF = 1 instead of an Access flag fault
    /// (and is not written).
    pub affd: bool,
    /// FEAT_XNX (SMMU_IDR3.XNX): `XN[1:0]` tells privileged from unprivileged execution;
    /// without it `XN[0]` is RES0 and `XN[1]` alone forbids execution.
    pub xnx: bool,
}

impl VmsaS2 {
    /// Tables rooted at `ttb`: 48-bit output, hardware AF and dirty state, FEAT_XNX.
    pub const fn new(ttb: u64, tg: Granule, t0sz: u8, sl0: u8) -> Self {
        Self {
            ttb,
            tg,
            t0sz,
            sl0,
            ps: Ps::Bits48,
            oa_52: Oa52::Off,
            ha: true,
            hd: true,
            affd: false,
            xnx: true,
        }
    }

    /// Allocates an empty starting table for `config`: up to 16 concatenated tables, aligned to
    /// their total size. An invalid configuration (SL0 against T0SZ) translates nothing and is
    /// refused as [`MapError::InputRange`].
    pub fn create<M: PhysMemory + ?Sized>(
        mem: &M,
        alloc: &mut FrameAllocator<M::Addr>,
        config: Self,
    ) -> Result<Self, MapError> {
        if config.check_config().is_err() {
            return Err(MapError::Config);
        }
        let root = alloc.alloc(mem, radix::table_size_lg2(&config, 0))?;
        Ok(Self { ttb: root.raw(), ..config })
    }

    /// AArch64.S2StartLevel, with AArch64.S2InvalidSL: the starting level SL0 selects for the
    /// granule, or `None` where the encoding is invalid (4K SL0 = 3 needs FEAT_TTST, not
    /// modelled; 16K SL0 = 3 needs DS = 1; 64K SL0 = 3 is reserved). Levels 0 and 1 need a
    /// PAMax of 42 or 44 bits, which the model always has.
    #[inline]
    pub fn start_level_checked(&self) -> Option<i8> {
        match (self.tg, self.sl0) {
            (Granule::K4, 0) => Some(2),
            (Granule::K4, 1) => Some(1),
            (Granule::K4, 2) => Some(0),
            (Granule::K16 | Granule::K64, 0) => Some(3),
            (Granule::K16 | Granule::K64, 1) => Some(2),
            (Granule::K16 | Granule::K64, 2) => Some(1),
            (Granule::K16, 3) if self.oa_52 == Oa52::Lpa2 => Some(0),
            _ => None,
        }
    }

    /// The starting level; for an invalid SL0, the level the encoding would name (4K SL0 = 3
    /// is level 3, 16K/64K SL0 = 3 is level 0), so that its Config fault has a level to report.
    #[inline]
    pub fn start_level(&self) -> i8 {
        self.start_level_checked().unwrap_or(match self.tg {
            Granule::K4 => 3,
            Granule::K16 | Granule::K64 => 0,
        })
    }

    /// Input address bits, `64 - t0sz` (whether or not in range).
    #[inline]
    pub fn input_bits(&self) -> u8 {
        64u8.saturating_sub(self.t0sz)
    }

    /// Concatenated tables at the starting level (1 when it is a single table or less).
    pub fn concatenated(&self) -> u32 {
        let r = self.regime();
        1 << r.index_bits(0).saturating_sub(self.tg.stride())
    }

    #[inline]
    fn regime(&self) -> Regime {
        Regime {
            tg: self.tg,
            oa_52: self.oa_52,
            start: self.start_level(),
            ia_bits: self.input_bits(),
            oa_bits: Regime::oa_bits(self.tg, self.ps, self.oa_52),
        }
    }

    #[inline]
    fn hd_effective(&self) -> bool {
        self.hd && self.ha
    }

    /// D8.4 "Stage 2 execute-never": the executions a leaf's `XN[1:0]` forbids. With FEAT_XNX,
    /// 0b01 forbids EL1 (privileged), 0b11 EL0 (unprivileged), 0b10 both; without it, `XN[0]`
    /// is RES0 and ignored, and `XN[1]` forbids both.
    #[inline]
    fn execute_never(&self, xn: u64) -> Perms {
        match (self.xnx, xn) {
            (_, 0b00) | (false, 0b01) => Perms::NONE,
            (true, 0b01) => Perms::PRIV_X,
            (true, 0b11) => Perms::USER_X,
            _ => Perms::PRIV_X.union(Perms::USER_X),
        }
    }
}

/// What a stage-2 leaf grants, for a builder. Every leaf is mapped with AF set, inner shareable
/// (unless SH holds address bits), and the given MemAttr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Attrs {
    /// `S2AP[0]`.
    pub read: bool,
    /// `S2AP[1]`.
    pub write: bool,
    /// XN clear.
    pub exec: bool,
    /// DBM: with `write` clear, a writable-clean page that hardware dirties on first write.
    pub dbm: bool,
    /// `MemAttr[3:0]`.
    pub mem_attr: u8,
}

impl S2Attrs {
    /// Read, write, execute; normal write-back memory.
    pub const ALL: Self =
        Self { read: true, write: true, exec: true, dbm: false, mem_attr: MEM_ATTR_NORMAL_WB };
    /// Read-only, execute-never; normal write-back memory.
    pub const READ_ONLY: Self =
        Self { read: true, write: false, exec: false, dbm: false, mem_attr: MEM_ATTR_NORMAL_WB };
}

impl VmsaS2 {
    /// D8.4: what a leaf's S2AP and XN grant (a DBM page under HD as though already dirty, as
    /// its first write makes it).
    #[inline(always)]
    fn leaf_perms(&self, raw: u64) -> Perms {
        let s2ap = S2AP.get(raw);
        let dirty_ok = self.hd_effective() && DBM.is_set(raw);
        Perms::rwx(s2ap & S2AP_R != 0, s2ap & S2AP_W != 0 || dirty_ok, true)
            .without(self.execute_never(XN.get(raw)))
    }
}

impl Format for VmsaS2 {
    type Attrs = S2Attrs;
    /// Stage-2 table descriptors carry no hierarchical attributes (D8.3).
    type Acc = ();

    #[inline]
    fn stage(&self) -> Stage {
        Stage::S2
    }
    #[inline]
    fn root(&self) -> u64 {
        self.regime().table_base(self.ttb)
    }
    #[inline]
    fn depth(&self) -> usize {
        self.regime().depth()
    }
    #[inline]
    fn level(&self, d: usize) -> i8 {
        self.regime().level(d)
    }
    #[inline]
    fn shift(&self, d: usize) -> u8 {
        self.regime().shift(d)
    }
    #[inline]
    fn index_bits(&self, d: usize) -> u8 {
        self.regime().index_bits(d)
    }
    #[inline]
    fn output_bits(&self) -> u8 {
        self.regime().oa_bits
    }

    /// D8.2 "Concatenated translation tables", AArch64.S2InvalidSL and
    /// AArch64.S2InconsistentSL: SL0 must name a valid starting level, and the input size must
    /// leave that level at least one bit and at most a full stride plus four (16 concatenated
    /// tables). T0SZ must be in the granule's range. A bad pair is a configuration fault (SMMU:
    /// C_BAD_STE). A TTB beyond the output size is an Address size fault (DEVIATION: reported
    /// at the starting level, where the Arm ARM says level 0).
    #[inline]
    fn check_config(&self) -> Result<(), FaultKind> {
        let start = self.start_level_checked().ok_or(FaultKind::Config)?;
        let ia =
            Regime::ia_bits_checked(self.tg, self.oa_52, self.t0sz).ok_or(FaultKind::Config)?;
        let below = u8::try_from(3 - start).map_err(|_| FaultKind::Config)?;
        let stride = self.tg.stride();
        let min_ia = below * stride + self.tg.lg2() + 1;
        let max_ia = min_ia + (stride - 1) + 4;
        if !(min_ia..=max_ia).contains(&ia) {
            return Err(FaultKind::Config);
        }
        let r = self.regime();
        if !r.oa_fits(r.table_base(self.ttb)) {
            return Err(FaultKind::AddressSize);
        }
        Ok(())
    }

    /// D8.2: an IPA at or above `2^(64 - T0SZ)` is out of range.
    #[inline]
    fn check_input(&self, input: u64) -> Result<(), FaultKind> {
        let ia =
            Regime::ia_bits_checked(self.tg, self.oa_52, self.t0sz).ok_or(FaultKind::Config)?;
        if input >> ia == 0 {
            Ok(())
        } else {
            Err(FaultKind::InputRange)
        }
    }

    #[inline(always)]
    fn decode(&self, d: usize, raw: u64, _acc: &mut ()) -> Result<Entry, FaultKind> {
        let r = self.regime();
        let kind = r.kind(d, raw);
        if kind == Kind::Invalid {
            return Ok(Entry::Invalid);
        }
        let addr = r.addr(raw);
        if !r.oa_fits(addr) {
            return Err(FaultKind::AddressSize);
        }
        if kind == Kind::Table {
            return Ok(Entry::Table { next: addr });
        }
        Ok(Entry::Leaf {
            output: addr & !low_mask(r.shift(d)),
            perms: self.leaf_perms(raw),
            // Stage 2 is tagged by VMID only, never by ASID.
            global: true,
        })
    }

    /// D8.5: AF = 0 is set by hardware with HA, else an Access flag fault (unless AFFD takes it
    /// as 1); a write to a DBM = 1 leaf sets `S2AP[1]` with HD.
    #[inline(always)]
    fn update(&self, _d: usize, raw: u64, leaf: bool, access: Access) -> Result<u64, FaultKind> {
        if !leaf {
            return Ok(raw);
        }
        let mut new = raw;
        if !AF.is_set(raw) {
            if self.ha {
                new = AF.with(new, true);
            } else if !self.affd {
                return Err(FaultKind::AccessFlag);
            }
        }
        if access.write && self.hd_effective() && DBM.is_set(raw) {
            new = S2AP.set(new, S2AP.get(new) | S2AP_W);
        }
        Ok(new)
    }

    /// D8.5: a DBM page under HD is dirty once `S2AP[1]` is set; other pages are not tracked.
    #[inline]
    fn dirty(&self, _d: usize, raw: u64) -> bool {
        !(self.hd_effective() && DBM.is_set(raw)) || S2AP.get(raw) & S2AP_W != 0
    }

    #[inline]
    fn leaf_allowed(&self, d: usize) -> bool {
        self.regime().leaf_allowed(d)
    }

    fn encode_table(&self, _d: usize, next: u64) -> u64 {
        VALID.mask() | TYPE.mask() | self.regime().encode_addr(next)
    }

    /// As stage 1's: `0b11` descriptors whose address fits, pages and blocks with AF set and,
    /// for a write under HD, DBM clear.
    #[inline]
    fn shape(&self) -> Shape {
        self.regime().shape()
    }

    #[inline]
    fn quick(&self, access: Access) -> Quick {
        self.regime().quick(AF.mask(), self.hd_effective() && access.write)
    }

    #[inline]
    fn quick_block(&self, quick: &Quick, d: usize) -> (u64, u64) {
        self.regime().quick_block(quick, d)
    }

    #[inline(always)]
    fn quick_fold(&self, _d: usize, _raw: u64, _acc: &mut ()) {}

    #[inline(always)]
    fn quick_page(&self, _d: usize, raw: u64, _acc: ()) -> (Perms, bool) {
        (self.leaf_perms(raw), true)
    }

    fn encode_leaf(&self, d: usize, output: u64, attrs: S2Attrs) -> u64 {
        let r = self.regime();
        let mut e = VALID.mask() | AF.mask() | r.encode_addr(output) | r.leaf_sh();
        e = TYPE.with(e, r.level(d) == 3);
        e = MEM_ATTR.set(e, u64::from(attrs.mem_attr));
        let mut s2ap = 0;
        if attrs.read {
            s2ap |= S2AP_R;
        }
        if attrs.write {
            s2ap |= S2AP_W;
        }
        e = S2AP.set(e, s2ap);
        // XN[1] only: the encoding that means "never" with and without FEAT_XNX.
        e = XN.set(e, if attrs.exec { 0 } else { 0b10 });
        DBM.with(e, attrs.dbm)
    }
}

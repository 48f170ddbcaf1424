//! VMSAv8-64 stage 1: the EL1&0 regime's tables, as an SMMUv3 CD's TTB0 (or TTB1) points at.

use sviommu_memory::{Address, FrameAllocator, PhysMemory};

use super::{Granule, Kind, Oa52, Ps, Regime, AF, DBM, TYPE, VALID};
use crate::bits::{low_mask, Field};
use crate::radix::{self, Entry, Format, MapError, Quick, Shape};
use crate::walk::{Access, FaultKind, Perms, Stage};

/// D8.3, stage-1 block/page: AttrIndx, the MAIR index of the memory attributes.
pub const ATTR_INDX: Field = Field::bits(4, 2);
/// D8.4 "Access permissions": `AP[2:1]` in bits 7:6. `AP[1]` (bit 6) grants EL0 the access EL1
/// has; `AP[2]` (bit 7) makes the page read-only at both.
pub const AP: Field = Field::bits(7, 6);
/// D8.3: not global: the translation is tagged with the ASID.
pub const NG: Field = Field::bit(11);
/// D8.4 "Execute-never controls": privileged execute-never.
pub const PXN: Field = Field::bit(53);
/// D8.4: unprivileged execute-never (XN in one-privilege regimes).
pub const UXN: Field = Field::bit(54);
/// D8.4 "Hierarchical control of instruction fetching": PXN for everything below.
pub const PXN_TABLE: Field = Field::bit(59);
/// D8.4: UXN for everything below.
pub const UXN_TABLE: Field = Field::bit(60);
/// D8.4 "Hierarchical control of data access permissions": `APTable[1:0]` in bits 62:61.
/// `APTable[0]` (bit 61) denies EL0 data access below; `APTable[1]` (bit 62) denies writes below.
pub const AP_TABLE: Field = Field::bits(62, 61);

/// D8.2 (two VA ranges): `VA[55]` selects the range, and so the tables, of a regime with two:
/// TTB1's when set, TTB0's when clear, whatever TBI makes of bits 63:56 (SMMUv3 §3.4.1 applies
/// it to a CD's TTB0 and TTB1).
pub const VA_RANGE_SELECT: Field = Field::bit(55);

/// Whether `va` is in the upper VA range, the one TTB1's tables translate ([`VA_RANGE_SELECT`]).
#[inline]
pub fn selects_ttb1(va: u64) -> bool {
    VA_RANGE_SELECT.is_set(va)
}

/// `AP[1]`: EL0 has access.
const AP_EL0: u64 = 0b01;
/// `AP[2]`: read-only.
const AP_RO: u64 = 0b10;
/// `APTable[0]`: no EL0 access below.
const AP_TABLE_NO_EL0: u64 = 0b01;
/// `APTable[1]`: no write access below.
const AP_TABLE_RO: u64 = 0b10;

/// One set of stage-1 tables and the CD (TCR) fields that govern their walk.
///
/// `ttb` is the starting table's address as an SMMU CD holds it (a plain address, not the
/// CPU's TTBR encoding with `BADDR[51:48]` in bits 5:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmsaS1 {
    /// TTB0 (or TTB1 when [`ttb1`](Self::ttb1)): the starting table.
    pub ttb: u64,
    /// TG0 (TG1): the granule.
    pub tg: Granule,
    /// T0SZ (T1SZ): the input size is `64 - t0sz` bits.
    pub t0sz: u8,
    /// IPS: the output size (an IPA size when a stage 2 follows).
    pub ips: Ps,
    /// 52-bit output addresses.
    pub oa_52: Oa52,
    /// HA: hardware sets AF (else an AF = 0 leaf is an Access flag fault).
    pub ha: bool,
    /// HD: hardware dirty-state management through DBM (needs `ha`).
    pub hd: bool,
    /// HPD0 (HPD1; SMMU CD.HAD0): APTable, UXNTable and PXNTable are ignored.
    pub hpd: bool,
    /// SCTLR.WXN (SMMU CD.WXN): a region writable at a privilege level is execute-never there.
    pub wxn: bool,
    /// SCTLR.nAFFD inverted (SMMU CD.AFFD): without `ha`, an AF = 0 leaf is taken as AF = 1
    /// instead of an Access flag fault (and is not written).
    pub affd: bool,
    /// PSTATE.PAN (SMMU CD.PAN), D8.4.1.4 "Privileged Access Never": a privileged data access
    /// to a page EL0 may access for data is a Permission fault.
    pub pan: bool,
    /// These tables are TTB1's: inputs are the top of the address space (bits 63 down to the
    /// input size all ones) rather than the bottom. A CD with both halves is two of these.
    pub ttb1: bool,
}

impl VmsaS1 {
    /// Tables rooted at `ttb`: TTB0, 48-bit output, hardware AF and dirty state, no HPD, no WXN.
    pub const fn new(ttb: u64, tg: Granule, t0sz: u8) -> Self {
        Self {
            ttb,
            tg,
            t0sz,
            ips: Ps::Bits48,
            oa_52: Oa52::Off,
            ha: true,
            hd: true,
            hpd: false,
            wxn: false,
            affd: false,
            pan: false,
            ttb1: false,
        }
    }

    /// Allocates an empty starting table for `config` (sized for its T0SZ, aligned to its
    /// size) and returns `config` rooted there. An invalid configuration translates nothing and
    /// is refused as [`MapError::Config`].
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

    /// Sets APTable, UXNTable or PXNTable in the table descriptor at spec `level` on `va`'s
    /// path, so that everything below allows at most `allow` (a cleared right restricts; a set
    /// one changes nothing). `Ok(false)` if the path has no table descriptor at that level.
    pub fn restrict<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        va: u64,
        level: i8,
        allow: S1Attrs,
    ) -> Result<bool, MapError> {
        let Some(d) = (0..self.depth()).find(|&d| self.level(d) == level) else {
            return Ok(false);
        };
        let Some((at, raw)) = radix::entry_at(self, mem, va, d)? else {
            return Ok(false);
        };
        if self.regime().kind(d, raw) != Kind::Table {
            return Ok(false);
        }
        let mut ap_table = AP_TABLE.get(raw);
        if !allow.writable {
            ap_table |= AP_TABLE_RO;
        }
        if !allow.user {
            ap_table |= AP_TABLE_NO_EL0;
        }
        let mut new = AP_TABLE.set(raw, ap_table);
        new = UXN_TABLE.with(new, UXN_TABLE.is_set(raw) || !allow.user_exec);
        new = PXN_TABLE.with(new, PXN_TABLE.is_set(raw) || !allow.priv_exec);
        mem.write_u64(at, new)?;
        Ok(true)
    }

    /// Level of the starting table.
    #[inline]
    pub fn start_level(&self) -> i8 {
        self.regime().start
    }

    /// Input address bits, `64 - t0sz` (whether or not in range).
    #[inline]
    pub fn input_bits(&self) -> u8 {
        64u8.saturating_sub(self.t0sz)
    }

    #[inline]
    fn regime(&self) -> Regime {
        let ia_bits = self.input_bits();
        Regime {
            tg: self.tg,
            oa_52: self.oa_52,
            start: Regime::s1_start(self.tg, ia_bits),
            ia_bits,
            oa_bits: Regime::oa_bits(self.tg, self.ips, self.oa_52),
        }
    }

    /// D8.4: a table descriptor's APTable, UXNTable and PXNTable folded into `acc`, unless HPD.
    #[inline(always)]
    fn fold(&self, raw: u64, acc: &mut S1Acc) {
        if !self.hpd {
            let ap_table = AP_TABLE.get(raw);
            acc.no_write |= ap_table & AP_TABLE_RO != 0;
            acc.no_el0 |= ap_table & AP_TABLE_NO_EL0 != 0;
            acc.uxn |= UXN_TABLE.is_set(raw);
            acc.pxn |= PXN_TABLE.is_set(raw);
        }
    }

    /// D8.5: dirty-state management needs the access flag managed too.
    #[inline]
    fn hd_effective(&self) -> bool {
        self.hd && self.ha
    }

    /// D8.4: what a leaf with `raw`'s AP, UXN and PXN grants under the table restrictions.
    ///
    /// IMPDEF: with HD, a DBM = 1 descriptor is judged as though its dirty state were already
    /// set (`AP[2]` clear), since the first write makes it so: it is writable, and so (under WXN,
    /// or EL0-writable for EL1 execution) not executable, before and after.
    #[inline]
    fn perms(&self, raw: u64, acc: S1Acc) -> Perms {
        let ap = AP.get(raw);
        let dirty_ok = self.hd_effective() && DBM.is_set(raw);
        let writable = (ap & AP_RO == 0 || dirty_ok) && !acc.no_write;
        let el0 = ap & AP_EL0 != 0 && !acc.no_el0;
        // PAN takes away privileged data access (not execution) where EL0 has data access
        // (D8.4.1.4).
        let pan = self.pan && el0;
        let priv_w = writable && !pan;
        let user_w = el0 && writable;
        // D8.4 "Execute-never controls": EL1 may not execute what EL0 may write (in a regime
        // with two privilege levels); WXN makes what a level may write execute-never for it.
        let user_xn = UXN.is_set(raw) || acc.uxn || (self.wxn && user_w);
        let priv_xn = PXN.is_set(raw) || acc.pxn || user_w || (self.wxn && writable);
        let mut p = Perms::NONE;
        for (granted, perm) in [
            (!pan, Perms::PRIV_R),
            (priv_w, Perms::PRIV_W),
            (!priv_xn, Perms::PRIV_X),
            (el0, Perms::USER_R),
            (user_w, Perms::USER_W),
            (!user_xn, Perms::USER_X),
        ] {
            if granted {
                p = p.union(perm);
            }
        }
        p
    }
}

/// What a leaf grants, for a builder. Every leaf is mapped with AF set, inner shareable (unless
/// SH holds address bits), and the given MAIR index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S1Attrs {
    /// `AP[2]` clear.
    pub writable: bool,
    /// `AP[1]`: EL0 has the same data access as EL1.
    pub user: bool,
    /// UXN clear.
    pub user_exec: bool,
    /// PXN clear.
    pub priv_exec: bool,
    /// nG clear.
    pub global: bool,
    /// DBM: with `writable` clear, a writable-clean page that hardware dirties on first write.
    pub dbm: bool,
    /// AttrIndx.
    pub attr_indx: u8,
}

impl S1Attrs {
    /// Read and write at both levels, EL0 execute, not global.
    pub const ALL: Self = Self {
        writable: true,
        user: true,
        user_exec: true,
        priv_exec: true,
        global: false,
        dbm: false,
        attr_indx: 0,
    };
    /// Read-only, execute-never EL0 data.
    pub const READ_ONLY: Self = Self {
        writable: false,
        user: true,
        user_exec: false,
        priv_exec: false,
        global: false,
        dbm: false,
        attr_indx: 0,
    };
}

/// Restrictions the table descriptors above the leaf impose (D8.4 "Hierarchical ...").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct S1Acc {
    no_write: bool,
    no_el0: bool,
    uxn: bool,
    pxn: bool,
}

radix::acc_bits!(S1Acc { no_write, no_el0, uxn, pxn });

impl Format for VmsaS1 {
    type Attrs = S1Attrs;
    type Acc = S1Acc;

    #[inline]
    fn stage(&self) -> Stage {
        Stage::S1
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

    /// D8.2: T0SZ must be in the granule's range. IMPDEF: out of range is a configuration
    /// fault (SMMU: C_BAD_CD) rather than a clamp. A TTB beyond the output size is an Address
    /// size fault (DEVIATION: reported at the starting level, where the Arm ARM says level 0).
    #[inline]
    fn check_config(&self) -> Result<(), FaultKind> {
        Regime::ia_bits_checked(self.tg, self.oa_52, self.t0sz).ok_or(FaultKind::Config)?;
        let r = self.regime();
        if !r.oa_fits(r.table_base(self.ttb)) {
            return Err(FaultKind::AddressSize);
        }
        Ok(())
    }

    /// D8.2: bits 63 down to the input size must be all zeros (TTB0) or all ones (TTB1).
    #[inline]
    fn check_input(&self, input: u64) -> Result<(), FaultKind> {
        let ia =
            Regime::ia_bits_checked(self.tg, self.oa_52, self.t0sz).ok_or(FaultKind::Config)?;
        let top = input >> ia;
        let want = if self.ttb1 { u64::MAX >> ia } else { 0 };
        if top == want {
            Ok(())
        } else {
            Err(FaultKind::InputRange)
        }
    }

    #[inline(always)]
    fn decode(&self, d: usize, raw: u64, acc: &mut S1Acc) -> Result<Entry, FaultKind> {
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
            self.fold(raw, acc);
            return Ok(Entry::Table { next: addr });
        }
        Ok(Entry::Leaf {
            output: addr & !low_mask(r.shift(d)),
            perms: self.perms(raw, *acc),
            global: !NG.is_set(raw),
        })
    }

    /// D8.5: AF = 0 is set by hardware with HA, else an Access flag fault (unless AFFD takes it
    /// as 1); a write to a DBM = 1 leaf clears `AP[2]` with HD. Table descriptors are not
    /// updated (no FEAT_HAFT).
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
            new = AP.set(new, AP.get(new) & !AP_RO);
        }
        Ok(new)
    }

    /// D8.5: a DBM page under HD is dirty once `AP[2]` is clear; other pages are not tracked.
    #[inline]
    fn dirty(&self, _d: usize, raw: u64) -> bool {
        !(self.hd_effective() && DBM.is_set(raw)) || AP.get(raw) & AP_RO == 0
    }

    #[inline]
    fn leaf_allowed(&self, d: usize) -> bool {
        self.regime().leaf_allowed(d)
    }

    fn encode_table(&self, _d: usize, next: u64) -> u64 {
        VALID.mask() | TYPE.mask() | self.regime().encode_addr(next)
    }

    /// A table descriptor (`0b11` above level 3), a page (`0b11` at level 3) or a block (`0b01`
    /// where allowed) with AF set, whose address fits the output size; a write takes a DBM
    /// page the general way, as it may have to clear `AP[2]`. The 52-bit address layouts take
    /// the general path.
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
    fn quick_fold(&self, _d: usize, raw: u64, acc: &mut S1Acc) {
        self.fold(raw, acc);
    }

    #[inline(always)]
    fn quick_page(&self, _d: usize, raw: u64, acc: S1Acc) -> (Perms, bool) {
        (self.perms(raw, acc), !NG.is_set(raw))
    }

    fn encode_leaf(&self, d: usize, output: u64, attrs: S1Attrs) -> u64 {
        let r = self.regime();
        let mut e = VALID.mask() | AF.mask() | r.encode_addr(output) | r.leaf_sh();
        e = TYPE.with(e, r.level(d) == 3);
        e = ATTR_INDX.set(e, u64::from(attrs.attr_indx));
        let mut ap = 0;
        if !attrs.writable {
            ap |= AP_RO;
        }
        if attrs.user {
            ap |= AP_EL0;
        }
        e = AP.set(e, ap);
        e = NG.with(e, !attrs.global);
        e = UXN.with(e, !attrs.user_exec);
        e = PXN.with(e, !attrs.priv_exec);
        DBM.with(e, attrs.dbm)
    }
}

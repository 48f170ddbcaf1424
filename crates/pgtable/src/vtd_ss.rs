//! Intel VT-d second-stage paging: the GPA (or IOVA) to HPA tables of a VT-d domain, 3, 4 or 5
//! levels deep.
//!
//! VT-d spec rev 4.x §9.8 (second-stage paging entries), §3.7 (second-stage translation) and §3.8
//! (nested translation); the faults are the second-stage conditions of §7. Spec levels:
//! 5 = SS-PML5E, 4 = SS-PML4E, 3 = SS-PDPE (1G page with PS), 2 = SS-PDE (2M page with PS),
//! 1 = SS-PTE (4K page). A 3-level table (AW = 1, 39-bit AGAW) starts at an SS-PDPE table.
//!
//! The layout is the one in rev 3.2 and later, where TM (bit 62) became reserved:
//!
//! | bits | SS-PML5E, SS-PML4E | SS-PDPE, SS-PDE (table) | leaf (SS-PTE, or PS = 1) |
//! |---|---|---|---|
//! | 0, 1 | R, W | R, W | R, W |
//! | 2 | X | X | X |
//! | 6:3 | ignored | ignored | EMT, IPAT (not modelled) |
//! | 7 | reserved | PS = 0 | PS = 1 (ignored in an SS-PTE) |
//! | 8 | A (SSADE), else ignored | A, else ignored | A, else ignored |
//! | 9, 10 | ignored | ignored | D (SSADE), else ignored; 10 ignored |
//! | 11 | reserved | reserved | SNP (snoop control), else reserved |
//! | HAW-1:12 | table address | table address | page address; its low bits below the page size reserved |
//! | 51:HAW | reserved | reserved | reserved |
//! | 61:52, 63 | ignored | ignored | ignored |
//! | 62 | reserved | reserved | reserved (TM before rev 3.2) |
//!
//! There is no present bit: an entry with R, W (and X, when execute requests are supported) all
//! clear is not present, and none of its other bits are checked. The reserved-field fault is
//! defined for entries "with at least one of R, W or X set", which is why X counts.

use sviommu_memory::{Address, FrameAllocator, PhysMemory};

use crate::bits::{low_mask, Field};
use crate::radix::{self, Entry, Format, MapError, Quick, Shape};
use crate::walk::{Access, FaultKind, Perms, Stage};

/// Read: 0 denies reads to everything below.
pub const R: Field = Field::bit(0);
/// Write: 0 makes everything below read-only.
pub const W: Field = Field::bit(1);
/// Execute: 0 denies execute requests to everything below (only with execute support; else
/// ignored).
pub const X: Field = Field::bit(2);
/// Page size: this SS-PDPE/SS-PDE maps a 1G/2M page (reserved in SS-PML5E/SS-PML4E, ignored in
/// an SS-PTE).
pub const PS: Field = Field::bit(7);
/// Accessed: set by hardware in every entry a walk uses, when SSADE is on (else ignored).
pub const A: Field = Field::bit(8);
/// Dirty: set by hardware in the leaf on a write, when SSADE is on (else ignored).
pub const D: Field = Field::bit(9);
/// Snoop: the page's accesses snoop the processor caches (leaf entries only, when the remapping
/// unit supports snoop control; reserved otherwise).
pub const SNP: Field = Field::bit(11);
/// Transient mapping before rev 3.2; reserved since.
pub const TM: Field = Field::bit(62);
/// The address field, `51:12`; bits at and above HAW are reserved.
pub const ADDR: Field = Field::bits(51, 12);

/// CAP.SLLPS bit: 2M pages (21-bit offset) are supported.
pub const SLLPS_2M: u8 = 1 << 0;
/// CAP.SLLPS bit: 1G pages (30-bit offset) are supported.
pub const SLLPS_1G: u8 = 1 << 1;

/// Table depth, as the context entry's or PASID entry's AW field selects it (§9.3, §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Levels {
    /// AW = 1: 39-bit AGAW.
    Three,
    /// AW = 2: 48-bit AGAW.
    Four,
    /// AW = 3: 57-bit AGAW.
    Five,
}

impl Levels {
    /// The AW encoding; `None` for the encodings this model does not walk: 0 (the 30-bit,
    /// 2-level AGAW) and 4 to 7 (reserved).
    pub const fn from_aw(aw: u8) -> Option<Self> {
        match aw {
            1 => Some(Levels::Three),
            2 => Some(Levels::Four),
            3 => Some(Levels::Five),
            _ => None,
        }
    }
    /// The AW field value.
    pub const fn aw(self) -> u8 {
        match self {
            Levels::Three => 1,
            Levels::Four => 2,
            Levels::Five => 3,
        }
    }
    /// Levels walked.
    pub const fn count(self) -> usize {
        match self {
            Levels::Three => 3,
            Levels::Four => 4,
            Levels::Five => 5,
        }
    }
    /// Adjusted guest address width: input bits the tables can index.
    pub const fn input_bits(self) -> u8 {
        match self {
            Levels::Three => 39,
            Levels::Four => 48,
            Levels::Five => 57,
        }
    }
}

/// One set of VT-d second-stage tables and the remapping unit's settings that govern their walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdSecondStage {
    /// Address of the top-level table: the scalable-mode PASID entry's SSPTPTR, or the legacy
    /// context entry's SLPTPTR. Bits 11:0 are not part of the pointer.
    pub root: u64,
    /// The AW field: how many levels, and the AGAW.
    pub levels: Levels,
    /// CAP.MGAW + 1: the unit's maximum guest address width. Inputs at or above
    /// `2^min(mgaw, agaw)` fault.
    pub mgaw: u8,
    /// Host address width (the ACPI DMAR table's HAW + 1, at most 52): address bits at and
    /// above it are reserved in every entry.
    pub haw: u8,
    /// CAP.SLLPS: which superpage sizes PS may map ([`SLLPS_2M`], [`SLLPS_1G`]). PS at a level
    /// without support is a reserved bit.
    pub sllps: u8,
    /// Execute requests are supported and enabled (ECAP.ERS and the context or PASID entry's
    /// execute controls, which later revisions removed): X is honoured and is a presence bit.
    /// Without it X is ignored.
    pub execute: bool,
    /// Snoop control (ECAP.SC; always in scalable mode): SNP is a leaf attribute. Without it,
    /// bit 11 of a leaf is reserved.
    pub snoop: bool,
    /// Scalable-mode SSADE: the walk sets A in every entry it uses and D in the leaf on a write.
    /// Without it A and D are ignored.
    pub ad: bool,
}

impl VtdSecondStage {
    /// Tables rooted at `root` with a current scalable-mode unit's settings: the AGAW of
    /// `levels` as MGAW, 52-bit HAW, 2M and 1G pages, snoop control, no execute requests, and
    /// SSADE off (the PASID entry's default).
    pub const fn new(root: u64, levels: Levels) -> Self {
        Self {
            root,
            levels,
            mgaw: levels.input_bits(),
            haw: 52,
            sllps: SLLPS_2M | SLLPS_1G,
            execute: false,
            snoop: true,
            ad: false,
        }
    }

    /// Allocates an empty top-level table and returns tables rooted there.
    pub fn create<M: PhysMemory + ?Sized>(
        mem: &M,
        alloc: &mut FrameAllocator<M::Addr>,
        levels: Levels,
    ) -> Result<Self, MapError> {
        Ok(Self::new(alloc.alloc(mem, 12)?.raw(), levels))
    }

    /// Clears R, W or X in the table entry at spec `level` (above the leaf) on `gpa`'s path,
    /// keeping each only where `keep` grants it, so everything below is restricted. Clearing
    /// every permission bit makes the entry not present. `Ok(false)` if the path does not reach
    /// a table entry at that level.
    pub fn restrict<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        gpa: u64,
        level: i8,
        keep: VtdSsAttrs,
    ) -> Result<bool, MapError> {
        let Some(d) = (0..self.depth()).find(|&d| self.level(d) == level) else {
            return Ok(false);
        };
        let Some((at, raw)) = radix::entry_at(self, mem, gpa, d)? else {
            return Ok(false);
        };
        let mut acc = Acc::default();
        if !matches!(self.decode(d, raw, &mut acc), Ok(Entry::Table { .. })) {
            return Ok(false);
        }
        let mut new = R.with(raw, R.is_set(raw) && keep.read);
        new = W.with(new, W.is_set(new) && keep.write);
        new = X.with(new, X.is_set(new) && keep.exec);
        mem.write_u64(at, new)?;
        Ok(true)
    }

    /// The bits that are part of an entry's permission and presence: R, W, and X when execute
    /// requests are supported.
    #[inline]
    fn access_mask(&self) -> u64 {
        let x = if self.execute { X.mask() } else { 0 };
        R.mask() | W.mask() | x
    }

    #[inline]
    fn has_superpage(&self, level: i8) -> bool {
        match level {
            2 => self.sllps & SLLPS_2M != 0,
            3 => self.sllps & SLLPS_1G != 0,
            _ => false,
        }
    }

    #[inline]
    fn reserved_mask(&self, d: usize, leaf: bool, large: bool) -> u64 {
        // §9.8: address bits at and above HAW, and TM since rev 3.2.
        let mut mask = (ADDR.mask() & !low_mask(self.haw.min(52))) | TM.mask();
        if self.level(d) >= 4 {
            mask |= PS.mask();
        }
        // SNP is a leaf attribute with snoop control; bit 11 is reserved everywhere else.
        if !(leaf && self.snoop) {
            mask |= SNP.mask();
        }
        if large {
            mask |= low_mask(self.shift(d)) & !low_mask(12);
        }
        mask
    }

    #[inline]
    fn perms(&self, acc: Acc) -> Perms {
        let read = !acc.no_read;
        // IMPDEF: without execute support X is ignored and an execute request is checked as the
        // read it rides on (PCIe ER qualifies a read).
        let exec = if self.execute { !acc.no_exec } else { read };
        Perms::rwx(read, !acc.no_write, exec)
    }
}

/// What a leaf grants, for a builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdSsAttrs {
    /// R.
    pub read: bool,
    /// W.
    pub write: bool,
    /// X (written only when the tables honour it).
    pub exec: bool,
    /// SNP (written only when the unit has snoop control).
    pub snoop: bool,
}

impl VtdSsAttrs {
    /// Read, write and execute, no forced snoop.
    pub const ALL: Self = Self { read: true, write: true, exec: true, snoop: false };
    /// Read only.
    pub const READ_ONLY: Self = Self { read: true, write: false, exec: false, snoop: false };
}

/// Restrictions gathered from the table entries above the leaf (§3.7: the access rights of a
/// translation combine those of every second-stage entry used to reach it).
#[derive(Clone, Copy, Debug, Default)]
pub struct Acc {
    no_read: bool,
    no_write: bool,
    no_exec: bool,
}

radix::acc_bits!(Acc { no_read, no_write, no_exec });

/// §3.7: one entry's R, W and X folded into `acc`.
#[inline(always)]
fn fold(raw: u64, acc: &mut Acc) {
    acc.no_read |= !R.is_set(raw);
    acc.no_write |= !W.is_set(raw);
    acc.no_exec |= !X.is_set(raw);
}

impl Format for VtdSecondStage {
    type Attrs = VtdSsAttrs;
    type Acc = Acc;

    #[inline]
    fn stage(&self) -> Stage {
        Stage::S2
    }
    #[inline]
    fn root(&self) -> u64 {
        self.root & ADDR.mask()
    }
    #[inline]
    fn depth(&self) -> usize {
        self.levels.count()
    }
    #[inline]
    fn level(&self, d: usize) -> i8 {
        i8::try_from(self.levels.count().saturating_sub(d)).unwrap_or(0)
    }
    #[inline]
    fn shift(&self, d: usize) -> u8 {
        let below = self.levels.count().saturating_sub(d + 1);
        12 + 9 * u8::try_from(below).unwrap_or(0)
    }
    #[inline]
    fn index_bits(&self, _d: usize) -> u8 {
        9
    }
    #[inline]
    fn output_bits(&self) -> u8 {
        self.haw.min(52)
    }

    /// A table pointer above HAW is a reserved field of the context or PASID entry that holds
    /// it: an invalid configuration rather than a walk fault. So is a HAW the address field
    /// cannot hold.
    #[inline]
    fn check_config(&self) -> Result<(), FaultKind> {
        if !(12..=52).contains(&self.haw) || self.root >> self.haw != 0 {
            return Err(FaultKind::Config);
        }
        Ok(())
    }

    /// §3.7: an input at or above `2^X`, X the smaller of MGAW and the AGAW, faults before any
    /// table is read. There is no sign extension.
    #[inline]
    fn check_input(&self, input: u64) -> Result<(), FaultKind> {
        let bits = self.levels.input_bits().min(self.mgaw);
        if input & !low_mask(bits) == 0 {
            Ok(())
        } else {
            Err(FaultKind::InputRange)
        }
    }

    #[inline(always)]
    fn decode(&self, d: usize, raw: u64, acc: &mut Acc) -> Result<Entry, FaultKind> {
        // §9.8: not present when every permission bit is clear; nothing else is checked then.
        // IMPDEF: with execute support an X-only entry is present (and an X-only leaf is an
        // execute-only page), following the reserved-field fault's "R, W or X set" wording.
        if raw & self.access_mask() == 0 {
            return Ok(Entry::Invalid);
        }
        let level = self.level(d);
        let large = PS.is_set(raw) && (level == 2 || level == 3);
        if large && !self.has_superpage(level) {
            // §9.8: PS at a level SLLPS does not list is a reserved bit.
            return Err(FaultKind::Reserved);
        }
        let leaf = level == 1 || large;
        if raw & self.reserved_mask(d, leaf, large) != 0 {
            return Err(FaultKind::Reserved);
        }
        fold(raw, acc);
        if leaf {
            // DEVIATION: EMT/IPAT and SNP do not change the translation here; memory type and
            // snoop behaviour (§3.9, §3.10) are not modelled, so EMTE is not either and EMT's
            // reserved encodings are not checked.
            Ok(Entry::Leaf {
                output: ADDR.in_place(raw) & !low_mask(self.shift(d)),
                perms: self.perms(*acc),
                // IMPDEF: second-stage mappings have no global bit; report them as tagged.
                global: false,
            })
        } else {
            Ok(Entry::Table { next: ADDR.in_place(raw) })
        }
    }

    /// §3.7 with SSADE: A in every entry used, D in the leaf on a write.
    #[inline(always)]
    fn update(&self, _d: usize, raw: u64, leaf: bool, access: Access) -> Result<u64, FaultKind> {
        if !self.ad {
            return Ok(raw);
        }
        let mut new = A.with(raw, true);
        if leaf && access.write {
            new = D.with(new, true);
        }
        Ok(new)
    }

    #[inline]
    fn dirty(&self, _d: usize, raw: u64) -> bool {
        !self.ad || D.is_set(raw)
    }

    fn encodable(&self, attrs: &VtdSsAttrs) -> bool {
        attrs.read || attrs.write || (self.execute && attrs.exec)
    }

    #[inline]
    fn leaf_allowed(&self, d: usize) -> bool {
        let level = self.level(d);
        level == 1 || self.has_superpage(level)
    }

    fn encode_table(&self, _d: usize, next: u64) -> u64 {
        R.mask() | W.mask() | (X.mask() & self.access_mask()) | ADDR.in_place(next)
    }

    /// A readable table entry (PS clear) with no reserved bit set and A already set (with
    /// SSADE); a readable SS-PTE or large page (PS set, where SLLPS allows) likewise, with D set
    /// too for a write. Entries without R take the general path.
    /// Nine index bits per level, counted down to level 1 (4K).
    #[inline]
    fn shape(&self) -> Shape {
        let depth = self.levels.count();
        let top_level = i8::try_from(depth).unwrap_or(0);
        Shape { depth, top_level, step: -1, page_shift: 12, stride: 9, top_bits: 9 }
    }

    #[inline]
    fn quick(&self, access: Access) -> Quick {
        let reserved = (ADDR.mask() & !low_mask(self.output_bits())) | TM.mask();
        let snp = if self.snoop { 0 } else { SNP.mask() };
        let flags = if self.ad { A.mask() } else { 0 };
        let dirty = if self.ad && access.write { D.mask() } else { 0 };
        let want = R.mask() | flags;
        Quick {
            table: (want | PS.mask() | SNP.mask() | reserved, want),
            page: (want | dirty | snp | reserved, want | dirty),
            addr: ADDR.mask(),
        }
    }

    /// PS set where SLLPS allows a large page; the page address's bits below its alignment
    /// are reserved.
    #[inline]
    fn quick_block(&self, quick: &Quick, d: usize) -> (u64, u64) {
        if !self.leaf_allowed(d) {
            return Quick::NEVER;
        }
        quick.ps_block(PS.mask(), self.shift(d), 12)
    }

    #[inline(always)]
    fn quick_fold(&self, _d: usize, raw: u64, acc: &mut Acc) {
        fold(raw, acc);
    }

    #[inline(always)]
    fn quick_page(&self, _d: usize, raw: u64, acc: Acc) -> (Perms, bool) {
        let mut acc = acc;
        fold(raw, &mut acc);
        (self.perms(acc), false)
    }

    fn encode_leaf(&self, d: usize, output: u64, attrs: VtdSsAttrs) -> u64 {
        let mut e = ADDR.in_place(output);
        e = R.with(e, attrs.read);
        e = W.with(e, attrs.write);
        e = X.with(e, attrs.exec && self.execute);
        e = SNP.with(e, attrs.snoop && self.snoop);
        PS.with(e, self.level(d) > 1)
    }
}

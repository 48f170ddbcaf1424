//! x86-64 4-level and 5-level paging: CPU page tables, and VT-d first-stage tables, which use
//! the same format.
//!
//! Intel SDM Vol. 3A §4.5 (4-level and 5-level paging), Tables 4-15 to 4-20; VT-d spec §9.7
//! (first-stage paging entries) for the IOMMU's use. Spec levels: 5 = PML5E, 4 = PML4E,
//! 3 = PDPTE (1G page with PS), 2 = PDE (2M page with PS), 1 = PTE (4K page).

use sviommu_memory::{Address, FrameAllocator, PhysMemory};

use crate::bits::{low_mask, Field};
use crate::radix::{self, Entry, Format, MapError, Quick, Shape};
use crate::walk::{Access, FaultKind, Perms, Stage};

/// Present.
pub const P: Field = Field::bit(0);
/// Read/write: 0 makes everything below read-only.
pub const RW: Field = Field::bit(1);
/// User/supervisor: 0 makes everything below supervisor-only.
pub const US: Field = Field::bit(2);
/// Page-level write-through.
pub const PWT: Field = Field::bit(3);
/// Page-level cache disable.
pub const PCD: Field = Field::bit(4);
/// Accessed: set by hardware in every entry a walk uses.
pub const A: Field = Field::bit(5);
/// Dirty: set by hardware in the leaf on a write (leaf entries only).
pub const D: Field = Field::bit(6);
/// Page size: this PDPTE/PDE maps a 1G/2M page (reserved in PML5E/PML4E; PAT in a PTE).
pub const PS: Field = Field::bit(7);
/// Global (leaf entries only).
pub const G: Field = Field::bit(8);
/// Execute-disable (reserved unless IA32_EFER.NXE).
pub const XD: Field = Field::bit(63);
/// The address field, `51:12`; bits at and above MAXPHYADDR are reserved.
pub const ADDR: Field = Field::bits(51, 12);

/// 4-level (48-bit input) or 5-level (57-bit input) paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Levels {
    /// CR4.LA57 = 0, VT-d FSPM 4-level.
    Four,
    /// CR4.LA57 = 1, VT-d FSPM 5-level.
    Five,
}

impl Levels {
    /// Levels walked.
    pub const fn count(self) -> usize {
        match self {
            Levels::Four => 4,
            Levels::Five => 5,
        }
    }
    /// Input address bits (before sign extension).
    pub const fn input_bits(self) -> u8 {
        match self {
            Levels::Four => 48,
            Levels::Five => 57,
        }
    }
}

/// One set of x86-64 tables and the control bits that govern their walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X86Paging {
    /// Physical (or, nested, guest-physical) address of the PML4 / PML5 table (CR3, FSPTPTR).
    pub root: u64,
    /// Paging mode.
    pub levels: Levels,
    /// MAXPHYADDR: entry address bits at and above it are reserved (at most 52).
    pub phys_bits: u8,
    /// 1G pages are supported (CPUID Page1GB; VT-d CAP.FL1GP). Without it, PS in a PDPTE is
    /// reserved.
    pub page_1g: bool,
    /// IA32_EFER.NXE: XD is honoured (else bit 63 is reserved).
    pub nxe: bool,
    /// CR0.WP / VT-d WPE: supervisor writes honour read-only pages.
    pub wp: bool,
    /// CR4.SMEP: supervisor instruction fetches from user pages fault.
    pub smep: bool,
    /// The walk sets A and D, as the hardware does. Off only for observers that must not write
    /// (offline inspection of a memory image).
    pub set_ad: bool,
}

impl X86Paging {
    /// Tables rooted at `root`, with a modern CPU's / VT-d first stage's settings: 52-bit
    /// physical addresses, 1G pages, NXE, WP, no SMEP, hardware A/D.
    pub const fn new(root: u64, levels: Levels) -> Self {
        Self {
            root,
            levels,
            phys_bits: 52,
            page_1g: true,
            nxe: true,
            wp: true,
            smep: false,
            set_ad: true,
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

    /// Clears R/W or U/S, or sets XD, in the table entry at spec `level` (above the leaf) on
    /// `va`'s path, restricting everything below it. `Ok(false)` if the path does not reach.
    pub fn restrict<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        va: u64,
        level: i8,
        restrict: X86Attrs,
    ) -> Result<bool, MapError> {
        let Some(d) = (0..self.depth()).find(|&d| self.level(d) == level) else {
            return Ok(false);
        };
        let Some((at, raw)) = radix::entry_at(self, mem, va, d)? else {
            return Ok(false);
        };
        let mut acc = Acc::default();
        if !matches!(self.decode(d, raw, &mut acc), Ok(Entry::Table { .. })) {
            return Ok(false);
        }
        let mut new = RW.with(raw, RW.is_set(raw) && restrict.writable);
        new = US.with(new, US.is_set(new) && restrict.user);
        if self.nxe {
            new = XD.with(new, XD.is_set(new) || !restrict.exec);
        }
        mem.write_u64(at, new)?;
        Ok(true)
    }

    #[inline]
    fn input_bits(&self) -> u8 {
        self.levels.input_bits()
    }
}

/// What a leaf grants, for a builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X86Attrs {
    /// R/W.
    pub writable: bool,
    /// U/S.
    pub user: bool,
    /// Not XD.
    pub exec: bool,
    /// G.
    pub global: bool,
}

impl X86Attrs {
    /// Read, write, execute, user, not global.
    pub const ALL: Self = Self { writable: true, user: true, exec: true, global: false };
    /// Read-only user data.
    pub const READ_ONLY: Self = Self { writable: false, user: true, exec: false, global: false };
}

/// Restrictions gathered from the table entries above the leaf (SDM §4.6.1: the access rights
/// of a linear address combine those of every entry used to translate it).
#[derive(Clone, Copy, Debug, Default)]
pub struct Acc {
    read_only: bool,
    supervisor: bool,
    no_exec: bool,
}

radix::acc_bits!(Acc { read_only, supervisor, no_exec });

impl X86Paging {
    #[inline]
    fn reserved_mask(&self, d: usize, large: bool) -> u64 {
        let mut mask = ADDR.mask() & !low_mask(self.phys_bits.min(52));
        let level = self.level(d);
        if level >= 4 {
            mask |= PS.mask();
        }
        if large {
            // Bit 12 is PAT; bits between it and the page's alignment are reserved.
            mask |= low_mask(self.shift(d)) & !low_mask(13);
        }
        if !self.nxe {
            mask |= XD.mask();
        }
        mask
    }

    /// The restrictions of one entry (SDM §4.6.1) folded into `acc`.
    #[inline(always)]
    fn fold(&self, raw: u64, acc: &mut Acc) {
        acc.read_only |= !RW.is_set(raw);
        acc.supervisor |= !US.is_set(raw);
        acc.no_exec |= self.nxe && XD.is_set(raw);
    }

    #[inline]
    fn perms(&self, acc: Acc) -> Perms {
        let user = !acc.supervisor;
        let write = !acc.read_only;
        let exec = !acc.no_exec;
        let mut p = Perms::PRIV_R;
        if write || !self.wp {
            p = p.union(Perms::PRIV_W);
        }
        if exec && !(self.smep && user) {
            p = p.union(Perms::PRIV_X);
        }
        if user {
            p = p.union(Perms::USER_R);
            if write {
                p = p.union(Perms::USER_W);
            }
            if exec {
                p = p.union(Perms::USER_X);
            }
        }
        p
    }
}

impl Format for X86Paging {
    type Attrs = X86Attrs;
    type Acc = Acc;

    #[inline]
    fn stage(&self) -> Stage {
        Stage::S1
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
        self.phys_bits.min(52)
    }

    /// SDM §4.5: an address is canonical when bits 63 down to the top input bit are all equal.
    #[inline]
    fn check_input(&self, input: u64) -> Result<(), FaultKind> {
        let top = self.input_bits() - 1;
        let upper = input >> top;
        if upper == 0 || upper == (u64::MAX >> top) {
            Ok(())
        } else {
            Err(FaultKind::InputRange)
        }
    }

    #[inline(always)]
    fn decode(&self, d: usize, raw: u64, acc: &mut Acc) -> Result<Entry, FaultKind> {
        if !P.is_set(raw) {
            return Ok(Entry::Invalid);
        }
        let level = self.level(d);
        let large = PS.is_set(raw) && (level == 2 || level == 3);
        if large && level == 3 && !self.page_1g {
            return Err(FaultKind::Reserved);
        }
        if raw & self.reserved_mask(d, large) != 0 {
            return Err(FaultKind::Reserved);
        }
        self.fold(raw, acc);
        if level == 1 || large {
            let output = ADDR.in_place(raw) & !low_mask(self.shift(d));
            Ok(Entry::Leaf { output, perms: self.perms(*acc), global: G.is_set(raw) })
        } else {
            Ok(Entry::Table { next: ADDR.in_place(raw) })
        }
    }

    /// SDM §4.8: A in every entry used, D in the leaf on a write.
    #[inline(always)]
    fn update(&self, _d: usize, raw: u64, leaf: bool, access: Access) -> Result<u64, FaultKind> {
        if !self.set_ad {
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
        !self.set_ad || D.is_set(raw)
    }

    #[inline]
    fn leaf_allowed(&self, d: usize) -> bool {
        match self.level(d) {
            1 | 2 => true,
            3 => self.page_1g,
            _ => false,
        }
    }

    /// A present table entry (PS clear) with no reserved bit set (MAXPHYADDR, XD without NXE)
    /// and A already set; a present 4K PTE or large page (PS set, where allowed) likewise, with
    /// D set too for a write.
    /// Nine index bits per level, counted down to level 1 (4K).
    #[inline]
    fn shape(&self) -> Shape {
        let depth = self.levels.count();
        let top_level = i8::try_from(depth).unwrap_or(0);
        Shape { depth, top_level, step: -1, page_shift: 12, stride: 9, top_bits: 9 }
    }

    #[inline]
    fn quick(&self, access: Access) -> Quick {
        let reserved =
            ADDR.mask() & !low_mask(self.output_bits()) | if self.nxe { 0 } else { XD.mask() };
        let flags = if self.set_ad { A.mask() } else { 0 };
        let dirty = if self.set_ad && access.write { D.mask() } else { 0 };
        let want = P.mask() | flags;
        Quick {
            table: (want | PS.mask() | reserved, want),
            page: (want | dirty | reserved, want | dirty),
            addr: ADDR.mask(),
        }
    }

    /// PS set where a large page is allowed; bit 12 is PAT, the bits above it up to the
    /// page's alignment are reserved.
    #[inline]
    fn quick_block(&self, quick: &Quick, d: usize) -> (u64, u64) {
        if !self.leaf_allowed(d) {
            return Quick::NEVER;
        }
        quick.ps_block(PS.mask(), self.shift(d), 13)
    }

    #[inline(always)]
    fn quick_fold(&self, _d: usize, raw: u64, acc: &mut Acc) {
        self.fold(raw, acc);
    }

    #[inline(always)]
    fn quick_page(&self, _d: usize, raw: u64, acc: Acc) -> (Perms, bool) {
        let mut acc = acc;
        self.fold(raw, &mut acc);
        (self.perms(acc), G.is_set(raw))
    }

    fn encode_table(&self, _d: usize, next: u64) -> u64 {
        P.mask() | RW.mask() | US.mask() | ADDR.in_place(next)
    }

    fn encode_leaf(&self, d: usize, output: u64, attrs: X86Attrs) -> u64 {
        let mut e = P.mask() | ADDR.in_place(output);
        e = RW.with(e, attrs.writable);
        e = US.with(e, attrs.user);
        e = G.with(e, attrs.global);
        e = PS.with(e, self.level(d) > 1);
        if self.nxe {
            e = XD.with(e, !attrs.exec);
        }
        e
    }
}

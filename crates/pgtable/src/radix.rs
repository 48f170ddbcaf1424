//! The radix-table engine: one walk loop, one map and one unmap for every format.
//!
//! A [`Format`] says how its levels index the input address and what its entry bits mean; the
//! engine does the rest. Depth `d` counts from the start table (`d = 0`) down to the last level;
//! each format reports its own spec level numbers (x86 counts 4 down to 1, VMSA 0 up to 3).

use std::fmt;

use sviommu_memory::{Address, FrameAllocator, FrameError, MemoryError, PhysMemory};

use crate::bits::low_mask;
use crate::walk::{
    AccBits, Access, Fault, FaultKind, Leaf, Located, Perms, ResumePoint, Stage, TableFetch,
    WalkCtx, WalkObserver,
};

/// What one entry means once decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Not present / invalid.
    Invalid,
    /// Points to the next-level table.
    Table {
        /// Address of the next table (in the walk's table space).
        next: u64,
    },
    /// Maps a page or block.
    Leaf {
        /// Output address of the page or block (aligned to its size).
        output: u64,
        /// What this leaf and the tables above it allow together.
        perms: Perms,
        /// Not tagged by ASID/PASID.
        global: bool,
    },
}

/// One page-table format with its configuration (root, levels, sizes, hardware A/D).
pub trait Format {
    /// Leaf attributes a builder maps with.
    type Attrs: Copy + fmt::Debug;
    /// What table entries contribute to the leaf's permissions as a walk descends.
    type Acc: AccBits;

    /// Which stage these tables are.
    fn stage(&self) -> Stage;
    /// Address of the start table, in the walk's table space.
    fn root(&self) -> u64;
    /// Number of levels a walk visits from the start table.
    fn depth(&self) -> usize;
    /// Spec level number at depth `d`.
    fn level(&self, d: usize) -> i8;
    /// Lowest input-address bit that depth `d` indexes; a leaf there maps `2^shift` bytes.
    fn shift(&self, d: usize) -> u8;
    /// Index bits at depth `d` (the start table may have more, when concatenated, or fewer).
    fn index_bits(&self, d: usize) -> u8;
    /// Output address size in bits: nothing at or beyond `2^output_bits` can be mapped.
    fn output_bits(&self) -> u8;

    /// Whether the configuration itself can be walked (a bad one is a [`FaultKind::Config`]).
    fn check_config(&self) -> Result<(), FaultKind> {
        Ok(())
    }
    /// Whether the input address is in the translatable range.
    fn check_input(&self, input: u64) -> Result<(), FaultKind>;
    /// Decodes the entry at depth `d`, folding table-entry restrictions into `acc`.
    fn decode(&self, d: usize, raw: u64, acc: &mut Self::Acc) -> Result<Entry, FaultKind>;
    /// The entry as this access leaves it (A/D, AF, dirty state set), or the fault an unmanaged
    /// flag raises. Called for table entries (`leaf == false`) and for the leaf; for the leaf it
    /// runs before the permission check, as the access-flag fault takes priority over it.
    fn update(&self, _d: usize, raw: u64, _leaf: bool, _access: Access) -> Result<u64, FaultKind> {
        Ok(raw)
    }

    /// Whether the leaf entry `raw` at depth `d` (as the walk left it) records the page as written,
    /// or the configuration does not track dirty state.
    fn dirty(&self, _d: usize, _raw: u64) -> bool {
        true
    }
    /// Whether a leaf with these attributes can be written as a valid entry (VT-d second stage
    /// has no present bit, so a leaf granting nothing cannot).
    fn encodable(&self, _attrs: &Self::Attrs) -> bool {
        true
    }
    /// Whether a leaf may sit at depth `d`.
    fn leaf_allowed(&self, d: usize) -> bool;
    /// A table entry at depth `d` pointing at `next`, with no restrictions.
    fn encode_table(&self, d: usize, next: u64) -> u64;
    /// A leaf entry at depth `d` mapping `output`.
    fn encode_leaf(&self, d: usize, output: u64, attrs: Self::Attrs) -> u64;

    /// The levels' geometry for one walk ([`Shape`]), which must agree with
    /// [`depth`](Self::depth), [`level`](Self::level), [`shift`](Self::shift) and
    /// [`index_bits`](Self::index_bits). The default asks them; a format whose geometry is
    /// derived from its configuration works it out once here.
    #[inline]
    fn shape(&self) -> Shape {
        let depth = self.depth();
        let top_level = self.level(0);
        let step = if depth > 1 { self.level(1).wrapping_sub(top_level) } else { -1 };
        let last = depth.saturating_sub(1);
        let stride = if depth > 1 { self.index_bits(last) } else { 0 };
        Shape {
            depth,
            top_level,
            step,
            page_shift: self.shift(last),
            stride,
            top_bits: self.index_bits(0),
        }
    }

    /// The quick path's tests for one walk of `access` ([`Quick`]); the default has none, so
    /// every entry takes the general path.
    #[inline]
    fn quick(&self, _access: Access) -> Quick {
        Quick::NONE
    }
    /// The `(mask, want)` of a block (large page) at depth `d` above the last that the walk
    /// can return as it is, derived from this walk's `quick` tests ([`Quick`]); the default
    /// takes none.
    #[inline]
    fn quick_block(&self, _quick: &Quick, _d: usize) -> (u64, u64) {
        Quick::NEVER
    }
    /// Folds the restrictions of a table entry that passed [`Quick::table`] into `acc`, as
    /// [`decode`](Self::decode) does.
    #[inline]
    fn quick_fold(&self, d: usize, raw: u64, acc: &mut Self::Acc) {
        let _ = self.decode(d, raw, acc);
    }
    /// What a last-level entry that passed [`Quick::page`] grants under `acc`, and whether it is
    /// global, as [`decode`](Self::decode) says.
    #[inline]
    fn quick_page(&self, d: usize, raw: u64, acc: Self::Acc) -> (Perms, bool) {
        let mut acc = acc;
        match self.decode(d, raw, &mut acc) {
            Ok(Entry::Leaf { perms, global, .. }) => (perms, global),
            _ => (Perms::NONE, false),
        }
    }
}

/// Where a walk's levels index the input, as every format here lays them out: the start table
/// indexes `top_bits` bits, each level below it `stride` bits, and the last level's entries map
/// `2^page_shift` bytes; spec level numbers go from `top_level` by `step` per level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Levels a walk visits from the start table.
    pub depth: usize,
    /// Spec level number of the start table.
    pub top_level: i8,
    /// Added to the level number per level down (x86 counts down, VMSA up).
    pub step: i8,
    /// Lowest input bit the last level indexes.
    pub page_shift: u8,
    /// Index bits of every level below the start table.
    pub stride: u8,
    /// Index bits of the start table.
    pub top_bits: u8,
}

impl Shape {
    /// Spec level number at depth `d`.
    #[inline(always)]
    pub fn level(&self, d: usize) -> i8 {
        let d = i8::try_from(d).unwrap_or(i8::MAX);
        self.top_level.wrapping_add(self.step.wrapping_mul(d))
    }
    /// Lowest input-address bit depth `d` indexes.
    #[inline(always)]
    pub fn shift(&self, d: usize) -> u8 {
        let below = u8::try_from(self.depth.saturating_sub(d + 1)).unwrap_or(0);
        self.page_shift.wrapping_add(self.stride.wrapping_mul(below))
    }
    /// Index bits at depth `d`.
    #[inline(always)]
    pub fn index_bits(&self, d: usize) -> u8 {
        if d == 0 {
            self.top_bits
        } else {
            self.stride
        }
    }
}

/// The entries a walk meets most, each recognised by one mask-and-compare on the raw word: a
/// table entry above the last level to follow, and a page at the last level. A format works
/// them out once per walk from its configuration and the access ([`Format::quick`]), so that the
/// walk checks every reserved bit of such an entry in one test instead of decoding it; anything
/// else (not present, a block, a reserved bit, a flag to set, a refused access) fails the test
/// and takes the general path, which decodes and reports the fault.
///
/// What a format promises, checked for every format by the `quick` property tests: at depth
/// `d` above the last, `raw & table.0 == table.1` means [`decode`](Format::decode) gives
/// `Entry::Table { next: raw & addr }` (folding what [`quick_fold`](Format::quick_fold) folds)
/// and [`update`](Format::update) leaves `raw` as it is; at the last depth,
/// `raw & page.0 == page.1` means `decode` gives `Entry::Leaf { output: raw & addr, .. }` with
/// the rights and global bit of [`quick_page`](Format::quick_page), and `update` leaves `raw`
/// as it is for this access; above the last depth, the same holds of
/// [`quick_block`](Format::quick_block)'s test, with `output: raw & addr & !low_mask(shift(d))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quick {
    /// `(mask, want)` of a table entry to follow as it is.
    pub table: (u64, u64),
    /// `(mask, want)` of a last-level page to return as it is.
    pub page: (u64, u64),
    /// The address bits of both: the next table, or the output.
    pub addr: u64,
}

impl Quick {
    /// A test no entry passes.
    pub const NEVER: (u64, u64) = (0, 1);
    /// Tests nothing passes: every entry takes the general path.
    pub const NONE: Self = Self { table: Self::NEVER, page: Self::NEVER, addr: 0 };

    /// The large-page test of the formats that mark one with a PS bit (x86-64, VT-d second
    /// stage): the page test with `ps` set, and the address bits from `first_reserved` up to the
    /// page's alignment `2^span` reserved.
    #[inline]
    pub fn ps_block(&self, ps: u64, span: u8, first_reserved: u8) -> (u64, u64) {
        let offset = low_mask(span) & !low_mask(first_reserved);
        (self.page.0 | ps | offset, self.page.1 | ps)
    }
}

/// How many times a walk re-reads an entry that changed under its A/D update before giving up.
const UPDATE_RETRIES: u32 = 8;

/// Walks `fmt` for `input`. Bounded by `fmt.depth()`; every read goes through `cx`.
///
/// Each entry read is first tried against the format's [`Quick`] tests (a table to follow, a
/// page to return, with nothing to update); any other entry goes through [`general`], which
/// decodes it, updates its flags and raises its fault. Both count, observe and bound-check the
/// read the same way, and give the same result for the same entry.
pub fn walk<Fm, M, F, O>(
    fmt: &Fm,
    cx: &mut WalkCtx<'_, M, O>,
    fetch: &F,
    input: u64,
    access: Access,
) -> Result<Leaf, Fault>
where
    Fm: Format + ?Sized,
    M: PhysMemory + ?Sized,
    F: TableFetch<M>,
    O: WalkObserver,
{
    let stage = fmt.stage();
    let fault = |d: usize, kind| Fault {
        stage,
        level: fmt.level(d),
        kind,
        input,
        s1_fetch: None,
        granted: None,
    };
    fmt.check_config().map_err(|k| fault(0, k))?;
    fmt.check_input(input).map_err(|k| fault(0, k))?;
    let shape = fmt.shape();
    let depth = shape.depth;
    let mut table = fmt.root();
    let mut acc = Fm::Acc::default();
    let mut start = 0;
    if let Some(hints) = cx.hints.as_deref_mut() {
        if let Some(leaf) = hints.leaf(stage, input) {
            if leaf.perms.allows(access) && (!access.write || leaf.dirty) {
                return Ok(leaf);
            }
        }
        // A paging-structure cache hit: start at the cached table with its restrictions.
        if let Some(p) = hints.resume(stage, input).filter(|p| usize::from(p.depth) < depth) {
            start = usize::from(p.depth);
            table = p.table;
            acc = Fm::Acc::unpack(p.acc);
        }
    }
    let quick = fmt.quick(access);
    let last = depth.saturating_sub(1);
    // Level number and shift go down the levels a step at a time.
    let mut level = shape.level(start);
    let mut shift = shape.shift(start);
    for d in start..depth {
        if d > start {
            level = level.wrapping_add(shape.step);
            shift = shift.wrapping_sub(shape.stride);
        }
        let index = (input >> shift) & low_mask(shape.index_bits(d));
        let table_addr =
            table.checked_add(index * 8).ok_or_else(|| fault(d, FaultKind::AddressSize))?;
        let loc = fetch.locate(cx, table_addr, level)?;
        let raw = cx.read_entry(stage, level, table_addr, loc.addr, input)?;
        let step = if d < last && raw & quick.table.0 == quick.table.1 {
            fmt.quick_fold(d, raw, &mut acc);
            Step::Table(raw & quick.addr)
        } else {
            let (mask, want) = if d < last { fmt.quick_block(&quick, d) } else { quick.page };
            let granted = (raw & mask == want)
                .then(|| fmt.quick_page(d, raw, acc))
                .filter(|(perms, _)| perms.allows(access));
            match granted {
                Some((perms, global)) => {
                    let output = raw & quick.addr & !low_mask(shift);
                    let dirty = fmt.dirty(d, raw);
                    Step::Leaf(Leaf { output, page_lg2: shift, level, perms, global, dirty })
                }
                None => general(fmt, cx, &At { d, table_addr, loc }, raw, &mut acc, access, input)?,
            }
        };
        match step {
            Step::Table(next) => {
                table = next;
                if let Some(hints) = cx.hints.as_deref_mut() {
                    let depth = u8::try_from(d + 1).unwrap_or(u8::MAX);
                    let point = ResumePoint { depth, table, acc: acc.pack(), span_lg2: shift };
                    hints.learned_table(stage, input, point);
                }
            }
            Step::Leaf(leaf) => {
                let leaf = Leaf { output: leaf.output | (input & low_mask(shift)), ..leaf };
                if let Some(hints) = cx.hints.as_deref_mut() {
                    hints.learned_leaf(stage, input, &leaf);
                }
                return Ok(leaf);
            }
        }
    }
    // Depth 0 with no levels: a format that walks nothing translates nothing.
    Err(fault(0, FaultKind::Translation))
}

/// Where a walk goes after one entry.
enum Step {
    /// To the table at this address.
    Table(u64),
    /// Nowhere: this leaf translates the input (its output without the page offset).
    Leaf(Leaf),
}

/// Where the entry a walk handles sits: its depth, its address in the walk's table space, and
/// where it is in memory.
struct At<A> {
    d: usize,
    table_addr: u64,
    loc: Located<A>,
}

/// Any entry the quick tests did not take: decodes `raw` (read at `at`),
/// folds its restrictions into `acc`, sets its flags with a compare-exchange (re-reading and
/// starting over when the entry changed under it), and raises the fault it calls for.
#[inline(never)]
fn general<Fm, M, O>(
    fmt: &Fm,
    cx: &mut WalkCtx<'_, M, O>,
    at: &At<M::Addr>,
    raw: u64,
    acc: &mut Fm::Acc,
    access: Access,
    input: u64,
) -> Result<Step, Fault>
where
    Fm: Format + ?Sized,
    M: PhysMemory + ?Sized,
    O: WalkObserver,
{
    let d = at.d;
    let fault = |kind| Fault {
        stage: fmt.stage(),
        level: fmt.level(d),
        kind,
        input,
        s1_fetch: None,
        granted: None,
    };
    let mut raw = raw;
    let mut tries = 0;
    loop {
        let mut acc_here = *acc;
        let next = match fmt.decode(d, raw, &mut acc_here).map_err(fault)? {
            Entry::Invalid => return Err(fault(FaultKind::Translation)),
            Entry::Table { .. } if d + 1 == fmt.depth() => {
                return Err(fault(FaultKind::Reserved));
            }
            Entry::Table { next } => Next::Table(next),
            Entry::Leaf { output, perms, global } => Next::Leaf { output, perms, global },
        };
        let is_leaf = matches!(next, Next::Leaf { .. });
        // Flags first: an access-flag fault outranks a permission fault.
        let new = fmt.update(d, raw, is_leaf, access).map_err(fault)?;
        if let Next::Leaf { perms, .. } = next {
            if !perms.allows(access) {
                // The rights this read found go with the fault: they decide its reason.
                return Err(Fault { granted: Some(perms), ..fault(FaultKind::Permission) });
            }
        }
        if new != raw {
            match write_back(cx, &at.loc, raw, new).map_err(fault)? {
                WriteBack::Done => {}
                WriteBack::Changed(seen) if tries < UPDATE_RETRIES => {
                    tries += 1;
                    raw = seen;
                    continue;
                }
                WriteBack::Changed(_) => {
                    return Err(fault(FaultKind::ExternalAbort { addr: at.table_addr }));
                }
                WriteBack::Denied(f) => return Err(f),
            }
        }
        *acc = acc_here;
        return Ok(match next {
            Next::Leaf { output, perms, global } => Step::Leaf(Leaf {
                output,
                page_lg2: fmt.shift(d),
                level: fmt.level(d),
                perms,
                global,
                dirty: fmt.dirty(d, new),
            }),
            Next::Table(next) => Step::Table(next),
        });
    }
}

/// Packs and unpacks a restriction accumulator whose fields are all `bool`, one bit each in
/// declaration order.
macro_rules! acc_bits {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        impl $crate::walk::AccBits for $ty {
            fn pack(self) -> u64 {
                let mut bits = 0u64;
                let mut bit = 0u32;
                $(
                    bits |= u64::from(self.$field) << bit;
                    bit += 1;
                )*
                let _ = bit;
                bits
            }
            fn unpack(bits: u64) -> Self {
                let mut bit = 0u32;
                $(
                    let $field = bits >> bit & 1 != 0;
                    bit += 1;
                )*
                let _ = bit;
                Self { $($field),* }
            }
        }
    };
}
pub(crate) use acc_bits;

/// What one decoded entry says.
enum Next {
    Table(u64),
    Leaf { output: u64, perms: Perms, global: bool },
}

enum WriteBack {
    Done,
    /// The entry changed since it was read; here is what it holds now.
    Changed(u64),
    /// The walk may not write the entry (stage-2 read-only stage-1 table).
    Denied(Fault),
}

/// Writes an updated entry back, as one atomic read-modify-write like the hardware's.
fn write_back<M: PhysMemory + ?Sized, O: WalkObserver>(
    cx: &mut WalkCtx<'_, M, O>,
    loc: &Located<M::Addr>,
    old: u64,
    new: u64,
) -> Result<WriteBack, FaultKind> {
    if let Some(f) = loc.write_fault {
        return Ok(WriteBack::Denied(f));
    }
    let abort = FaultKind::ExternalAbort { addr: loc.addr.raw() };
    match cx.reader.update_entry(loc.addr, old, new) {
        Ok(true) => Ok(WriteBack::Done),
        Ok(false) => cx.reader.read_entry(loc.addr).map(WriteBack::Changed).map_err(|_| abort),
        Err(_) => Err(abort),
    }
}

/// Why a map or unmap was refused. A refused call leaves the tables as they were.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The format has no leaf of that size.
    #[error("no page or block of 2^{size_lg2} bytes in this format")]
    PageSize {
        /// The size asked for.
        size_lg2: u8,
    },
    /// Input or output is not aligned to the page size.
    #[error("{input:#x} -> {output:#x} is not aligned to 2^{size_lg2}")]
    Misaligned {
        /// Input address.
        input: u64,
        /// Output address.
        output: u64,
        /// Page size.
        size_lg2: u8,
    },
    /// The input range is not translatable by this configuration.
    #[error("input {input:#x} is outside the translatable range")]
    InputRange {
        /// Input address.
        input: u64,
    },
    /// The output is beyond the configured output size.
    #[error("output {output:#x} is beyond the output address size")]
    OutputRange {
        /// Output address.
        output: u64,
    },
    /// Something is already mapped there (a leaf, or a table under a requested block).
    #[error("{input:#x} is already mapped")]
    Overlap {
        /// Input address.
        input: u64,
    },
    /// The attributes grant nothing, which this format can only write as a not-present entry.
    #[error("a mapping at {input:#x} must grant some access")]
    NoAccess {
        /// Input address.
        input: u64,
    },
    /// An unmap range cuts a block or page in two.
    #[error("unmap range splits the 2^{size_lg2}-byte leaf at {input:#x}")]
    SplitsLeaf {
        /// Start of the leaf.
        input: u64,
        /// Its size.
        size_lg2: u8,
    },
    /// The configuration cannot translate anything (a bad TnSZ/SL0 pair, a table address
    /// beyond the output size).
    #[error("the table configuration is invalid")]
    Config,
    /// An existing entry on the path does not decode.
    #[error("malformed entry {raw:#x} at level {level}")]
    Corrupt {
        /// Spec level number.
        level: i8,
        /// The entry.
        raw: u64,
    },
    /// No memory for a new table.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A table could not be read or written.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// What an unmap removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unmapped {
    /// Bytes of input address space no longer mapped.
    pub bytes: u64,
    /// Leaf entries cleared.
    pub leaves: u32,
}

fn entry_addr<A: Address>(table: u64, index: u64) -> Result<A, MapError> {
    table
        .checked_add(index * 8)
        .map(A::new)
        .ok_or(MapError::Memory(MemoryError::Outside { addr: table, len: 8 }))
}

fn index_at<Fm: Format + ?Sized>(fmt: &Fm, d: usize, input: u64) -> u64 {
    (input >> fmt.shift(d)) & low_mask(fmt.index_bits(d))
}

fn decode_for_build<Fm: Format + ?Sized>(fmt: &Fm, d: usize, raw: u64) -> Result<Entry, MapError> {
    let mut acc = Fm::Acc::default();
    fmt.decode(d, raw, &mut acc).map_err(|_| MapError::Corrupt { level: fmt.level(d), raw })
}

/// Bytes of a table at depth `d`, at least one 4K page.
pub fn table_size_lg2<Fm: Format + ?Sized>(fmt: &Fm, d: usize) -> u8 {
    (fmt.index_bits(d) + 3).max(12)
}

/// Building tables of any format: map and unmap, once for every format.
pub trait Build: Format {
    /// Maps `[input, input + 2^size_lg2)` to `output` with one leaf; see [`map`].
    fn map<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        alloc: &mut FrameAllocator<M::Addr>,
        input: u64,
        output: u64,
        size_lg2: u8,
        attrs: Self::Attrs,
    ) -> Result<(), MapError> {
        map(self, mem, alloc, input, output, size_lg2, attrs)
    }

    /// As [`map`](Self::map), reporting what it linked and allocated; see [`map_recorded`].
    fn map_recorded<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        alloc: &mut FrameAllocator<M::Addr>,
        input: u64,
        output: u64,
        size_lg2: u8,
        attrs: Self::Attrs,
    ) -> Result<Mapped, MapError> {
        map_recorded(self, mem, alloc, input, output, size_lg2, attrs)
    }

    /// Unmaps every leaf in `[input, input + len_bytes)`; see [`unmap`].
    fn unmap<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        input: u64,
        len_bytes: u64,
    ) -> Result<Unmapped, MapError> {
        unmap(self, mem, input, len_bytes)
    }
}

impl<Fm: Format + ?Sized> Build for Fm {}

/// What one map changed in tables that existed before it, and what it allocated: enough to
/// take it back exactly. Undoing maps (newest first, before any other map of the same tables):
/// [`unmap`] their range, [`unlink`] them, invalidate what the unit may cache of the tables,
/// then [`release`] them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapped {
    /// The entry, in a table that existed before, that now links the first table the map
    /// allocated (it was invalid before); `None` when the map allocated no table.
    pub link: Option<u64>,
    /// The tables the map allocated, top first, with their sizes (lg2 bytes).
    pub created: Vec<(u64, u8)>,
    /// Table pages, emptied by earlier unmaps, that a block took the place of and that were
    /// freed: their link cannot be put back, so an undo leaves that entry invalid.
    pub replaced: u32,
}

/// Maps `[input, input + 2^size_lg2)` to `output`, allocating tables as needed.
///
/// New tables are filled bottom-up and linked last, so a concurrent walk sees either nothing or
/// the whole new path. A block may replace tables that map nothing (they are freed); anything
/// mapped in its range refuses the call. A refused map allocates and writes nothing.
pub fn map<Fm, M>(
    fmt: &Fm,
    mem: &M,
    alloc: &mut FrameAllocator<M::Addr>,
    input: u64,
    output: u64,
    size_lg2: u8,
    attrs: Fm::Attrs,
) -> Result<(), MapError>
where
    Fm: Format + ?Sized,
    M: PhysMemory + ?Sized,
{
    map_recorded(fmt, mem, alloc, input, output, size_lg2, attrs).map(drop)
}

/// [`map`], reporting the entry it linked new tables at and the tables it allocated, so that a
/// caller whose larger operation fails can take it back ([`Mapped`]).
pub fn map_recorded<Fm, M>(
    fmt: &Fm,
    mem: &M,
    alloc: &mut FrameAllocator<M::Addr>,
    input: u64,
    output: u64,
    size_lg2: u8,
    attrs: Fm::Attrs,
) -> Result<Mapped, MapError>
where
    Fm: Format + ?Sized,
    M: PhysMemory + ?Sized,
{
    let target = (0..fmt.depth())
        .find(|&d| fmt.shift(d) == size_lg2 && fmt.leaf_allowed(d))
        .ok_or(MapError::PageSize { size_lg2 })?;
    if input & low_mask(size_lg2) != 0 || output & low_mask(size_lg2) != 0 {
        return Err(MapError::Misaligned { input, output, size_lg2 });
    }
    if !fmt.encodable(&attrs) {
        return Err(MapError::NoAccess { input });
    }
    let last = input.checked_add(low_mask(size_lg2)).ok_or(MapError::InputRange { input })?;
    if fmt.check_input(input).is_err() || fmt.check_input(last).is_err() {
        return Err(MapError::InputRange { input });
    }
    if output.checked_add(low_mask(size_lg2)).is_none_or(|l| l >> fmt.output_bits() != 0) {
        return Err(MapError::OutputRange { output });
    }

    // Find how far the existing path goes, changing nothing.
    let mut table = fmt.root();
    let mut first_new = target;
    let mut emptied: Vec<(M::Addr, u8)> = Vec::new();
    for d in 0..=target {
        let at: M::Addr = entry_addr(table, index_at(fmt, d, input))?;
        let raw = mem.read_u64(at)?;
        match decode_for_build(fmt, d, raw)? {
            Entry::Invalid => {
                first_new = d;
                break;
            }
            Entry::Table { next } if d < target => table = next,
            // A block over tables that map nothing (left behind by unmaps) takes their place.
            Entry::Table { next } => {
                emptied =
                    empty_subtree(fmt, mem, next, d + 1)?.ok_or(MapError::Overlap { input })?;
                break;
            }
            Entry::Leaf { .. } => return Err(MapError::Overlap { input }),
        }
    }

    // Allocate every missing table before writing anything.
    let mut new_tables: Vec<M::Addr> = Vec::with_capacity(target - first_new);
    for d in first_new + 1..=target {
        match alloc.alloc(mem, table_size_lg2(fmt, d)) {
            Ok(t) => new_tables.push(t),
            Err(e) => {
                for (t, dd) in new_tables.iter().zip(first_new + 1..) {
                    // Freeing what we just allocated cannot fail.
                    let _ = alloc.free(*t, table_size_lg2(fmt, dd));
                }
                return Err(e.into());
            }
        }
    }

    // Fill bottom-up: the leaf first, then each new table's link, the existing table's last.
    let leaf_table = new_tables.last().map_or(table, |t| t.raw());
    mem.write_u64(
        entry_addr(leaf_table, index_at(fmt, target, input))?,
        fmt.encode_leaf(target, output, attrs),
    )?;
    for d in (first_new..target).rev() {
        let parent = if d == first_new {
            table
        } else {
            new_tables.get(d - first_new - 1).map_or(table, |t| t.raw())
        };
        let child = new_tables.get(d - first_new).map_or(0, |t| t.raw());
        mem.write_u64(entry_addr(parent, index_at(fmt, d, input))?, fmt.encode_table(d, child))?;
    }
    let replaced = u32::try_from(emptied.len()).unwrap_or(u32::MAX);
    for (t, size_lg2) in emptied {
        // These came from `alloc` when they were linked in; a table someone else placed is
        // simply not returned.
        let _ = alloc.free(t, size_lg2);
    }
    let link = match new_tables.first() {
        Some(_) => Some(entry_addr::<M::Addr>(table, index_at(fmt, first_new, input))?.raw()),
        None => None,
    };
    let created =
        new_tables.iter().zip(first_new + 1..).map(|(t, d)| (t.raw(), table_size_lg2(fmt, d)));
    Ok(Mapped { link, created: created.collect(), replaced })
}

/// Takes undone maps' new tables out of the tables that existed before them: each one's
/// [`link`](Mapped::link) becomes invalid, newest map first. Their leaves must be unmapped
/// already; the unit may still cache the tables until it is invalidated.
pub fn unlink<M: PhysMemory + ?Sized>(mem: &M, maps: &[Mapped]) -> Result<(), MapError> {
    for at in maps.iter().rev().filter_map(|m| m.link) {
        mem.write_u64(M::Addr::new(at), 0)?;
    }
    Ok(())
}

/// Zeroes and frees the tables undone maps allocated, once [`unlink`]ed and invalidated. The
/// pages go back as the allocator handed them out.
pub fn release<M: PhysMemory + ?Sized>(
    mem: &M,
    alloc: &mut FrameAllocator<M::Addr>,
    maps: &[Mapped],
) -> Result<(), MapError> {
    for &(t, size_lg2) in maps.iter().rev().flat_map(|m| m.created.iter().rev()) {
        mem.zero(M::Addr::new(t), 1 << size_lg2)?;
        alloc.free(M::Addr::new(t), size_lg2)?;
    }
    Ok(())
}

/// Table pages with their sizes.
type TablePages<A> = Vec<(A, u8)>;

/// The tables of the subtree at `table` (depth `d`) if no entry in it is valid, else `None`.
fn empty_subtree<Fm, M>(
    fmt: &Fm,
    mem: &M,
    table: u64,
    d: usize,
) -> Result<Option<TablePages<M::Addr>>, MapError>
where
    Fm: Format + ?Sized,
    M: PhysMemory + ?Sized,
{
    let mut tables: Vec<(M::Addr, u8)> = Vec::new();
    // Explicit stack: depth is bounded by the format, and a table seen twice (a malformed
    // self-reference) is not followed again.
    let mut stack = vec![(table, d)];
    while let Some((t, d)) = stack.pop() {
        if d >= fmt.depth() || tables.iter().any(|&(a, _)| a.raw() == t) {
            return Ok(None);
        }
        tables.push((M::Addr::new(t), table_size_lg2(fmt, d)));
        for index in 0..(1u64 << fmt.index_bits(d)) {
            let raw = mem.read_u64(entry_addr(t, index)?)?;
            match decode_for_build(fmt, d, raw)? {
                Entry::Invalid => {}
                Entry::Leaf { .. } => return Ok(None),
                Entry::Table { next } => stack.push((next, d + 1)),
            }
        }
    }
    Ok(Some(tables))
}

/// The entry at depth `d` on `input`'s path, if the path reaches that deep.
pub fn entry_at<Fm, M>(
    fmt: &Fm,
    mem: &M,
    input: u64,
    depth: usize,
) -> Result<Option<(M::Addr, u64)>, MapError>
where
    Fm: Format + ?Sized,
    M: PhysMemory + ?Sized,
{
    let mut table = fmt.root();
    for d in 0..fmt.depth() {
        let at: M::Addr = entry_addr(table, index_at(fmt, d, input))?;
        let raw = mem.read_u64(at)?;
        if d == depth {
            return Ok(Some((at, raw)));
        }
        match decode_for_build(fmt, d, raw)? {
            Entry::Table { next } => table = next,
            Entry::Invalid | Entry::Leaf { .. } => return Ok(None),
        }
    }
    Ok(None)
}

/// Unmaps every leaf in `[input, input + len_bytes)`. A leaf that the range cuts in two refuses
/// the whole call. Tables emptied by the unmap stay allocated.
pub fn unmap<Fm, M>(fmt: &Fm, mem: &M, input: u64, len_bytes: u64) -> Result<Unmapped, MapError>
where
    Fm: Format + ?Sized,
    M: PhysMemory + ?Sized,
{
    let Some(len_less_one) = len_bytes.checked_sub(1) else {
        return Ok(Unmapped::default());
    };
    // Inclusive bound, so a range may end at the very top of the address space.
    let last = input.checked_add(len_less_one).ok_or(MapError::InputRange { input })?;
    let mut found: Vec<(M::Addr, u8)> = Vec::new();
    let mut cursor = Some(input);
    'range: while let Some(va) = cursor.filter(|&va| va <= last) {
        let mut table = fmt.root();
        for d in 0..fmt.depth() {
            let shift = fmt.shift(d);
            if fmt.check_input(va).is_err() {
                return Err(MapError::InputRange { input: va });
            }
            let at: M::Addr = entry_addr(table, index_at(fmt, d, va))?;
            let raw = mem.read_u64(at)?;
            match decode_for_build(fmt, d, raw)? {
                Entry::Table { next } if d + 1 < fmt.depth() => table = next,
                Entry::Table { .. } => {
                    return Err(MapError::Corrupt { level: fmt.level(d), raw });
                }
                Entry::Invalid => {
                    cursor = (va | low_mask(shift)).checked_add(1);
                    continue 'range;
                }
                Entry::Leaf { .. } => {
                    let base = va & !low_mask(shift);
                    let leaf_last = base | low_mask(shift);
                    if base < input || leaf_last > last {
                        return Err(MapError::SplitsLeaf { input: base, size_lg2: shift });
                    }
                    found.push((at, shift));
                    cursor = leaf_last.checked_add(1);
                    continue 'range;
                }
            }
        }
        break;
    }
    let mut done = Unmapped::default();
    for (at, shift) in found {
        mem.write_u64(at, 0)?;
        done.bytes += 1 << shift;
        done.leaves += 1;
    }
    Ok(done)
}

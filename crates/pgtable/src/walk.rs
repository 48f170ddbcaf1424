//! What every walk takes and gives: accesses, permissions, leaves, faults, observers, and the
//! way a walk finds its tables.

use std::fmt;

use sviommu_memory::{Address, MemoryError, PhysMemory, TableReader};

/// Which stage of translation a table belongs to. The IOMMU crates map these onto their own
/// names (VT-d first/second stage, SMMU stage 1/2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Input address (IOVA, GVA) to intermediate (GPA, IPA), or to physical when alone.
    S1,
    /// Intermediate (GPA, IPA) to physical.
    S2,
}

/// The request a walk is checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Access {
    /// A write (else a read).
    pub write: bool,
    /// An instruction fetch (execute request).
    pub exec: bool,
    /// Supervisor / privileged (EL1) rather than user (EL0).
    pub privileged: bool,
}

impl Access {
    /// An unprivileged data read.
    pub const READ: Self = Self { write: false, exec: false, privileged: false };
    /// An unprivileged data write.
    pub const WRITE: Self = Self { write: true, exec: false, privileged: false };
    /// An unprivileged instruction fetch.
    pub const EXEC: Self = Self { write: false, exec: true, privileged: false };

    /// The same access, privileged.
    #[inline]
    pub const fn privileged(self) -> Self {
        Self { privileged: true, ..self }
    }
}

/// What a translation allows, for privileged and unprivileged requests separately.
///
/// A stage-2 leaf (no privilege notion) grants the same to both.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Perms(u8);

impl Perms {
    /// Privileged read.
    pub const PRIV_R: Self = Self(1 << 0);
    /// Privileged write.
    pub const PRIV_W: Self = Self(1 << 1);
    /// Privileged execute.
    pub const PRIV_X: Self = Self(1 << 2);
    /// Unprivileged read.
    pub const USER_R: Self = Self(1 << 3);
    /// Unprivileged write.
    pub const USER_W: Self = Self(1 << 4);
    /// Unprivileged execute.
    pub const USER_X: Self = Self(1 << 5);
    /// Nothing.
    pub const NONE: Self = Self(0);
    /// Everything.
    pub const ALL: Self = Self(0x3f);
    /// Read, write and execute for both privilege levels (what a stage-2 RWX leaf grants).
    pub const RWX: Self = Self::ALL;

    /// Permissions from read / write / execute bits, the same at both privilege levels.
    #[inline]
    pub const fn rwx(read: bool, write: bool, exec: bool) -> Self {
        let one = (read as u8) | ((write as u8) << 1) | ((exec as u8) << 2);
        Self(one | (one << 3))
    }

    /// Both sets, as the raw 6-bit value (for display and serialisation).
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The permissions whose raw 6-bit value is `bits` (what [`bits`](Self::bits) returned);
    /// bits above the six are dropped.
    #[inline]
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & 0x3f)
    }

    /// The union.
    #[inline]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The intersection: what two stages together allow.
    #[inline]
    pub const fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Without the given permissions.
    #[inline]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether all of `other` is granted.
    #[inline]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `access` is allowed.
    #[inline]
    pub const fn allows(self, access: Access) -> bool {
        let shift = if access.privileged { 0 } else { 3 };
        let need = if access.exec {
            1 << 2
        } else if access.write {
            1 << 1
        } else {
            1
        };
        (self.0 >> shift) & need != 0
    }
}

impl fmt::Debug for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Perms {
    /// `priv:rwx user:r--` style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |bit: u8, ch: char| if self.0 & (1 << bit) != 0 { ch } else { '-' };
        write!(
            f,
            "priv:{}{}{} user:{}{}{}",
            c(0, 'r'),
            c(1, 'w'),
            c(2, 'x'),
            c(3, 'r'),
            c(4, 'w'),
            c(5, 'x')
        )
    }
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The output address of the input address (page offset included).
    pub output: u64,
    /// Size of the page or block that maps it.
    pub page_lg2: u8,
    /// Spec level number of the leaf entry.
    pub level: i8,
    /// What the leaf and every table above it allow together.
    pub perms: Perms,
    /// Whether the mapping is global (x86 G; VMSA nG clear), i.e. not tagged by ASID/PASID.
    pub global: bool,
    /// Whether a write needs no further table update: the leaf records the page as written
    /// (x86 / VT-d D, VMSA dirty state), or the tables do not track it. A TLB that caches a
    /// translation with `dirty == false` must walk again for a write, as the hardware does.
    pub dirty: bool,
}

impl Leaf {
    /// The translation of two stages in sequence: `s1`, whose output `s2` translated (`s2`'s
    /// input is `s1.output`). The output is the second stage's; the page is the smaller of the
    /// two; the rights are what both allow; a write needs no table update only if neither stage
    /// needs one; the level and the global bit are the first stage's (VT-d's G bit, VMSA nG).
    #[inline]
    pub fn nested(s1: &Leaf, s2: &Leaf) -> Leaf {
        Leaf {
            output: s2.output,
            page_lg2: s1.page_lg2.min(s2.page_lg2),
            level: s1.level,
            perms: s1.perms.intersect(s2.perms),
            global: s1.global,
            dirty: s1.dirty && s2.dirty,
        }
    }
}

/// Why a walk failed, in terms every format shares. The IOMMU crates map these onto their
/// architected codes (VT-d fault reasons, SMMU event ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The entry is not present / invalid.
    Translation,
    /// A reserved bit is set, or a reserved encoding is used.
    Reserved,
    /// The output (or a table) address is beyond the configured output size.
    AddressSize,
    /// The input address is outside the translatable range (non-canonical, beyond TnSZ).
    InputRange,
    /// The access flag is clear and hardware does not manage it.
    AccessFlag,
    /// The access is not allowed.
    Permission,
    /// A table read (or A/D update) hit memory that does not exist.
    ExternalAbort {
        /// The address of the failed access, in memory.
        addr: u64,
    },
    /// The stage's configuration itself is invalid (e.g. VMSA SL0 against T0SZ).
    Config,
}

/// A failed walk: which stage, which level, why, and what was being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The stage whose walk faulted.
    pub stage: Stage,
    /// Spec level number of the entry (for configuration faults, the start level).
    pub level: i8,
    /// The reason.
    pub kind: FaultKind,
    /// The address that stage was translating (an IPA/GPA for stage 2).
    pub input: u64,
    /// Set when a stage-2 fault happened while accessing a stage-1 table entry (SMMU `S2` +
    /// `CLASS=TT`; VT-d's nested first-stage-table faults): which entry, and which access.
    pub s1_fetch: Option<S1Fetch>,
    /// For a [`FaultKind::Permission`] fault: what the entry the walk checked granted, with the
    /// restrictions of the tables above it, as the walk read it. The missing right is the one
    /// the access asked for; architectures that name it (VT-d 81h/82h/85h/86h) decide from
    /// this, never from a second read of tables the guest may have changed since.
    pub granted: Option<Perms>,
}

/// The stage-1 table entry access a nested walk was making when stage 2 faulted.
///
/// The architectures name the two apart: VT-d reports a refused read of a first-stage entry
/// (75h, 76h) differently from a refused A/D write-back to it (77h), and an SMMU
/// `F_PERMISSION` with `CLASS == TT` says which in `TTRnW`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S1Fetch {
    /// Spec level number of the stage-1 entry.
    pub level: i8,
    /// The write that sets the entry's flags (A/D, AF, dirty state) rather than its read.
    pub write: bool,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:?} fault at level {} translating {:#x}",
            self.stage, self.kind, self.level, self.input
        )?;
        match self.s1_fetch {
            Some(S1Fetch { level, write: false }) => {
                write!(f, " (fetching the stage-1 level-{level} table)")?;
            }
            Some(S1Fetch { level, write: true }) => {
                write!(f, " (updating the stage-1 level-{level} table entry)")?;
            }
            None => {}
        }
        Ok(())
    }
}

/// One entry read by a walk, for an observer such as `sviommu inspect --walk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkStep {
    /// Which stage's table the entry is in.
    pub stage: Stage,
    /// Spec level number.
    pub level: i8,
    /// The entry's address in its table space (a GPA for a nested stage-1 table).
    pub table_addr: u64,
    /// Where it was read in memory.
    pub mem_addr: u64,
    /// The raw entry.
    pub raw: u64,
}

/// Sees every entry a walk reads. `()` sees nothing and compiles away.
pub trait WalkObserver {
    /// Called after each successful entry read.
    fn step(&mut self, step: WalkStep);
    /// Called by a hardware model after it reads a configuration structure (a root, context
    /// or PASID entry; an STE or CD, and the L1STD / L1CD before them in two-level tables) as
    /// one block: its name, where it was read, its words.
    fn structure(&mut self, _what: &'static str, _mem_addr: u64, _words: &[u64]) {}
}

impl WalkObserver for () {
    #[inline(always)]
    fn step(&mut self, _step: WalkStep) {}
}

/// A borrowed observer sees what it would see owned: a context built for one walk
/// ([`WalkCtx::hinted`]) lends it the translation's observer.
impl<O: WalkObserver + ?Sized> WalkObserver for &mut O {
    fn step(&mut self, step: WalkStep) {
        (**self).step(step);
    }
    fn structure(&mut self, what: &'static str, mem_addr: u64, words: &[u64]) {
        (**self).structure(what, mem_addr, words);
    }
}

impl WalkObserver for Vec<WalkStep> {
    fn step(&mut self, step: WalkStep) {
        self.push(step);
    }
}

/// A table below the root where a walk can resume: what a paging-structure cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResumePoint {
    /// Depth (counted from the start table, 0) of the table to read next.
    pub depth: u8,
    /// That table's address in the walk's table space.
    pub table: u64,
    /// The restrictions the entries above it impose, packed by the format ([`AccBits`]).
    pub acc: u64,
    /// The table covers `2^span_lg2` bytes of input: the input bits above that name it.
    pub span_lg2: u8,
}

/// Restrictions gathered from table entries, packed into a word so caches can hold them
/// whatever the format.
pub trait AccBits: Copy + Default {
    /// The restrictions as bits.
    fn pack(self) -> u64;
    /// Restrictions from [`pack`](Self::pack)'s bits.
    fn unpack(bits: u64) -> Self;
}

impl AccBits for () {
    fn pack(self) -> u64 {
        0
    }
    fn unpack(_bits: u64) -> Self {}
}

/// The caches a walk may consult and fill: paging-structure caches (resume below the root)
/// and leaf caches (a stage-2 TLB that serves the table fetches of a nested walk). A hardware
/// model implements this over its own caches, keyed by whatever tags the walk's context has
/// (DID / PASID, VMID / ASID); the walker knows only stages and inputs. Every method defaults
/// to "nothing cached, nothing kept".
pub trait WalkHints {
    /// The translation of exactly `input` at `stage`, if cached. Used only when it allows the
    /// access and, for a write, is already dirty; otherwise the walk runs.
    fn leaf(&mut self, _stage: Stage, _input: u64) -> Option<Leaf> {
        None
    }
    /// The deepest cached table on `input`'s path at `stage`.
    fn resume(&mut self, _stage: Stage, _input: u64) -> Option<ResumePoint> {
        None
    }
    /// The walk descended into a table.
    fn learned_table(&mut self, _stage: Stage, _input: u64, _point: ResumePoint) {}
    /// The walk translated `input` (the leaf's output is `input`'s, offset included).
    fn learned_leaf(&mut self, _stage: Stage, _input: u64, _leaf: &Leaf) {}
}

/// The state one walk carries: its counting memory view, its observer, and the caches it may
/// use.
pub struct WalkCtx<'m, M: PhysMemory + ?Sized, O: WalkObserver = ()> {
    /// Counts every read and update.
    pub reader: TableReader<'m, M>,
    /// Sees every entry read.
    pub observer: O,
    /// Paging-structure and leaf caches, when the model has them.
    pub hints: Option<&'m mut dyn WalkHints>,
}

impl<M: PhysMemory + ?Sized, O: WalkObserver + fmt::Debug> fmt::Debug for WalkCtx<'_, M, O>
where
    M: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalkCtx")
            .field("reader", &self.reader)
            .field("observer", &self.observer)
            .field("hints", &self.hints.is_some())
            .finish()
    }
}

impl<'m, M: PhysMemory + ?Sized, O: WalkObserver> WalkCtx<'m, M, O> {
    /// A fresh context over `mem`, with no caches.
    #[inline]
    pub fn new(mem: &'m M, observer: O) -> Self {
        Self { reader: TableReader::new(mem), observer, hints: None }
    }

    /// A fresh context over `mem` that consults and fills `hints`.
    pub fn with_hints(mem: &'m M, observer: O, hints: &'m mut dyn WalkHints) -> Self {
        Self { reader: TableReader::new(mem), observer, hints: Some(hints) }
    }

    /// Runs `f` with `hints` as the caches of the walks it makes: the hints a model builds for
    /// one walk, with that walk's tags (VT-d DID / PASID, SMMU VMID / ASID), so the tags reach
    /// the caches in the order the path learns them and need no shared cell. Reads, updates and
    /// observed entries go on counting in this context.
    pub fn hinted<R>(
        &mut self,
        hints: &mut dyn WalkHints,
        f: impl FnOnce(&mut WalkCtx<'_, M, &mut O>) -> R,
    ) -> R {
        let mut inner = WalkCtx {
            reader: TableReader::new(self.reader.memory()),
            observer: &mut self.observer,
            hints: Some(hints),
        };
        let out = f(&mut inner);
        let counted = inner.reader;
        self.reader.absorb(&counted);
        out
    }

    /// Reads a configuration structure of `N` words (a root, context or PASID entry; an STE,
    /// CD, L1STD or L1CD) at physical address `addr` as one counted read, and shows it to the
    /// observer as `what`. `None` if any byte of it is outside memory: each model raises its
    /// own architected fault for that.
    pub fn read_structure<const N: usize>(
        &mut self,
        what: &'static str,
        addr: u64,
    ) -> Option<[u64; N]> {
        let words = self.reader.read_words::<N>(M::Addr::new(addr)).ok()?;
        self.observer.structure(what, addr, &words);
        Some(words)
    }

    /// Reads one entry, reports it to the observer, and turns a bad address into an
    /// external-abort fault of this stage and level.
    #[inline(always)]
    pub fn read_entry(
        &mut self,
        stage: Stage,
        level: i8,
        table_addr: u64,
        at: M::Addr,
        input: u64,
    ) -> Result<u64, Fault> {
        match self.reader.read_entry(at) {
            Ok(raw) => {
                self.observer.step(WalkStep { stage, level, table_addr, mem_addr: at.raw(), raw });
                Ok(raw)
            }
            Err(e) => Err(Fault {
                stage,
                level,
                kind: FaultKind::ExternalAbort { addr: memory_error_addr(e, at.raw()) },
                input,
                s1_fetch: None,
                granted: None,
            }),
        }
    }
}

fn memory_error_addr(e: MemoryError, fallback: u64) -> u64 {
    match e {
        MemoryError::Outside { addr, .. } | MemoryError::Misaligned { addr, .. } => addr,
        MemoryError::Layout(_) => fallback,
    }
}

/// Where a table entry is in memory, and whether the walk may write it (A/D updates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located<A> {
    /// The entry's address in memory.
    pub addr: A,
    /// `None` if the walk may update the entry in place; else the fault an update raises (a
    /// stage-2 permission fault on a read-only stage-1 table page).
    pub write_fault: Option<Fault>,
}

/// How a walk turns the address of one of its table entries into a memory address.
pub trait TableFetch<M: PhysMemory + ?Sized> {
    /// Locates the entry at `table_addr` (in the walk's table space) that a level-`level`
    /// lookup of `stage` is about to read.
    fn locate<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        table_addr: u64,
        level: i8,
    ) -> Result<Located<M::Addr>, Fault>;
}

/// Tables are in memory at the addresses the entries name: a single-stage walk, or the
/// stage-2 walk itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Direct;

impl<M: PhysMemory + ?Sized> TableFetch<M> for Direct {
    #[inline(always)]
    fn locate<O: WalkObserver>(
        &self,
        _cx: &mut WalkCtx<'_, M, O>,
        table_addr: u64,
        _level: i8,
    ) -> Result<Located<M::Addr>, Fault> {
        Ok(Located { addr: M::Addr::new(table_addr), write_fault: None })
    }
}

/// A walk's result with what it cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walked {
    /// The translation or the fault.
    pub outcome: Result<Leaf, Fault>,
    /// Page-table entries read (both stages when nested).
    pub reads: u32,
    /// Entries written back (A/D, AF, dirty state).
    pub updates: u32,
}

/// Something that translates an input address by reading tables: one format's configured
/// tables, or a nested composition of two.
pub trait Walk {
    /// Walks `input` for `access`, reading through `cx`, finding tables through `fetch`.
    fn walk<M, F, O>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        fetch: &F,
        input: u64,
        access: Access,
    ) -> Result<Leaf, Fault>
    where
        M: PhysMemory + ?Sized,
        F: TableFetch<M>,
        O: WalkObserver;

    /// One walk over `mem` with no observer, returning the result and its read count.
    fn translate<M: PhysMemory + ?Sized>(&self, mem: &M, input: u64, access: Access) -> Walked {
        self.translate_observed(mem, input, access, ()).0
    }

    /// One walk over `mem`, reporting every entry read to `observer`.
    fn translate_observed<M: PhysMemory + ?Sized, O: WalkObserver>(
        &self,
        mem: &M,
        input: u64,
        access: Access,
        observer: O,
    ) -> (Walked, O) {
        let mut cx = WalkCtx::new(mem, observer);
        let outcome = self.walk(&mut cx, &Direct, input, access);
        let walked = Walked { outcome, reads: cx.reader.reads(), updates: cx.reader.updates() };
        (walked, cx.observer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_check_each_privilege_level() {
        let p = Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::USER_R);
        assert!(p.allows(Access::READ));
        assert!(!p.allows(Access::WRITE));
        assert!(p.allows(Access::WRITE.privileged()));
        assert!(!p.allows(Access::EXEC.privileged()));
        assert_eq!(Perms::rwx(true, false, true).to_string(), "priv:r-x user:r-x");
        assert!(Perms::ALL.contains(p));
        assert_eq!(p.intersect(Perms::rwx(true, false, false)), Perms::rwx(true, false, false));
    }
}

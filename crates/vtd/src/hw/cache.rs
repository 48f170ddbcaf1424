//! The unit's caches (§6.2): context cache, PASID cache, IOTLB, first- and second-stage
//! paging-structure caches and a second-stage leaf cache, each a bounded `sviommu_tlb::Cache`.
//!
//! | cache | key | tags invalidations select on | value |
//! |---|---|---|---|
//! | context | source-id | DID (legacy entries) | the context entry as read |
//! | PASID | source-id, PASID | DID (of the entry), PASID | the PASID-table entry, the directory entry's FPD |
//! | IOTLB | DID, PASID (none in legacy mode), page number, page size | + the walk kind, the G bit | output page, rights, dirty; or "second stage not present" (CM) |
//! | FS paging-structure | DID, PASID, depth, input bits above the table's span | DID, PASID, span | resume point |
//! | SS paging-structure | DID, depth, input bits above the table's span | DID, span | resume point |
//! | SS leaf | DID, page number, page size | DID, page | second-stage leaf |
//!
//! An entry leaves by eviction or by invalidation and is never changed in place, so a driver
//! that forgets to invalidate keeps seeing what was cached. Every insert carries the epoch its
//! cache had when the translation began (read before any table read), so a walk that began
//! before an invalidation completed cannot insert what it read.
//!
//! IMPDEF: entries are not shared between PASIDs (a global first-stage mapping is cached per
//! PASID, and found by PASID), and pass-through translations are not cached in the IOTLB (they
//! read nothing once the context and PASID entries are cached).

use sviommu_memory::bits::low_mask;
use sviommu_pgtable::{vtd_ss, x86, Leaf, Perms, ResumePoint, Stage, WalkHints};
use sviommu_tlb::sanitize::{Recorder, Stale, Word};
use sviommu_tlb::{
    worth_naming, CacheStats, Dep, Memo, MemoInfo, MemoKey, MemoTrail, TagRegistry, TagStats,
    Tracked,
};

use crate::spec::root::{ContextEntry, ScalableContextEntry};
use sviommu_tlb::sanitize::Origin;

/// The name the request path gives a scalable-mode root entry (`translate`).
pub(super) const SCALABLE_ROOT: &str = "scalable-mode root entry";
use crate::spec::PasidEntry;

/// The shape of one cache: `sets` sets of `ways` ways. Zero in either means the unit has no
/// such cache (everything it would hold is read again), for measuring what the caches save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheGeometry {
    /// Sets (rounded up to a power of two).
    pub sets: usize,
    /// Ways per set.
    pub ways: usize,
}

impl CacheGeometry {
    /// No cache.
    pub const NONE: Self = Self { sets: 0, ways: 0 };

    /// `sets` sets of `ways` ways.
    #[must_use]
    pub const fn new(sets: usize, ways: usize) -> Self {
        Self { sets, ways }
    }
}

/// The sizes of the unit's caches (part of [`VtdParams`](super::VtdParams)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheParams {
    /// Context cache (one entry per source-id).
    pub context: CacheGeometry,
    /// PASID cache (one entry per source-id and PASID).
    pub pasid: CacheGeometry,
    /// IOTLB (one entry per domain, PASID and page).
    pub iotlb: CacheGeometry,
    /// First-stage paging-structure cache.
    pub fs_psc: CacheGeometry,
    /// Second-stage paging-structure cache.
    pub ss_psc: CacheGeometry,
    /// Second-stage leaf cache: the second-stage translations of nested walks (first-stage
    /// table fetches and the final output).
    pub ss_leaf: CacheGeometry,
    /// The translation memo (`sviommu_tlb::Memo`): a repeated hit answered in one probe,
    /// counted as the lookups it stands for. It changes no answer and no statistic, only the
    /// time a hit takes; off, to compare. Forgiving profile only (strict checks every hit).
    pub memo: bool,
}

impl Default for CacheParams {
    /// IMPDEF: sizes of the order of a server part's: 256 context and PASID entries, a
    /// 1024-entry 8-way IOTLB, 256-entry paging-structure and leaf caches.
    fn default() -> Self {
        Self {
            context: CacheGeometry::new(64, 4),
            pasid: CacheGeometry::new(64, 4),
            iotlb: CacheGeometry::new(128, 8),
            fs_psc: CacheGeometry::new(64, 4),
            ss_psc: CacheGeometry::new(64, 4),
            ss_leaf: CacheGeometry::new(64, 4),
            memo: true,
        }
    }
}

impl CacheParams {
    /// A unit without caches: every translation reads every structure and table entry.
    pub const NONE: Self = Self {
        context: CacheGeometry::NONE,
        pasid: CacheGeometry::NONE,
        iotlb: CacheGeometry::NONE,
        fs_psc: CacheGeometry::NONE,
        ss_psc: CacheGeometry::NONE,
        ss_leaf: CacheGeometry::NONE,
        memo: false,
    };
}

/// What each cache has done so far (`sviommu_tlb::CacheStats`: hits, misses, evictions,
/// refused stale inserts, invalidated entries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtdCacheStats {
    /// Context cache.
    pub context: CacheStats,
    /// PASID cache.
    pub pasid: CacheStats,
    /// IOTLB.
    pub iotlb: CacheStats,
    /// First-stage paging-structure cache.
    pub fs_psc: CacheStats,
    /// Second-stage paging-structure cache.
    pub ss_psc: CacheStats,
    /// Second-stage leaf cache.
    pub ss_leaf: CacheStats,
    /// The PASIDs kept per domain for page-selective invalidations (`sviommu_tlb::TagStats`):
    /// tags recorded, domains that began to have every IOTLB set searched (nested
    /// translations, more PASIDs than it keeps, no room), invalidations that searched them.
    pub tags: TagStats,
}

/// A cache the unit may not have; sanitized (strict), it keeps each entry's words.
#[derive(Debug)]
pub(super) struct Maybe<K, V>(Option<Tracked<K, V>>);

impl<K: Copy + Eq + std::hash::Hash, V: Copy> Maybe<K, V> {
    fn new(g: CacheGeometry, sanitized: bool) -> Self {
        Self((g.sets > 0 && g.ways > 0).then(|| Tracked::new(g.sets, g.ways, sanitized)))
    }

    fn epoch(&self) -> u64 {
        self.0.as_ref().map_or(0, Tracked::epoch)
    }

    pub(super) fn get(&self, key: &K) -> Option<V> {
        self.0.as_ref()?.get(key)
    }

    /// [`get`](Self::get), with the entry's [`Dep`] for the translation memo.
    #[inline]
    pub(super) fn get_dep(&self, key: &K) -> Option<(V, Dep)> {
        self.0.as_ref()?.get_dep(key)
    }

    /// Inserts, recording (sanitized, with a recorder) the words `words` takes from it.
    pub(super) fn insert_recorded(
        &self,
        key: K,
        value: V,
        epoch: u64,
        rec: Option<&Recorder>,
        words: impl FnOnce(&Recorder) -> Vec<Word>,
    ) {
        if let Some(c) = &self.0 {
            match rec {
                Some(r) => c.insert_recorded(key, value, epoch, || words(r)),
                None => c.insert(key, value, epoch),
            };
        }
    }

    /// The first changed word of `key`'s entry, and the words re-read (see `Tracked::check`).
    pub(super) fn check(
        &self,
        key: &K,
        read: impl Fn(u64) -> Option<u64>,
        hw_wrote: impl Fn(&Word, u64) -> bool,
    ) -> (Option<Stale>, u64) {
        self.0.as_ref().map_or((None, 0), |c| c.check(key, read, hw_wrote))
    }

    /// The words `key`'s entry was built from.
    pub(super) fn words(&self, key: &K) -> Vec<Word> {
        self.0.as_ref().and_then(|c| c.words(key)).unwrap_or_default()
    }

    pub(super) fn invalidate(&self, selects: impl Fn(&K, &V) -> bool) {
        if let Some(c) = &self.0 {
            c.invalidate(selects);
        }
    }

    /// A range invalidation: `keys` names every key a selected entry can have, or `None`
    /// (see [`Cache::invalidate_keys`]).
    fn invalidate_keys<I: IntoIterator<Item = K>>(
        &self,
        keys: impl FnOnce() -> Option<I>,
        selects: impl Fn(&K, &V) -> bool,
    ) {
        if let Some(c) = &self.0 {
            c.invalidate_keys(keys, selects);
        }
    }

    fn stats(&self) -> CacheStats {
        self.0.as_ref().map(Tracked::stats).unwrap_or_default()
    }
}

/// A context entry as the context cache holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CachedContext {
    /// A legacy-mode context entry.
    Legacy(ContextEntry),
    /// A scalable-mode context entry.
    Scalable(ScalableContextEntry),
}

impl CachedContext {
    /// The DID a domain-selective invalidation selects the entry by. §6.1 (CAP.CM): a
    /// not-present entry cached under caching mode is tagged with DID 0. Scalable-mode
    /// context entries have no DID.
    pub(super) fn did(&self) -> Option<u16> {
        match self {
            CachedContext::Legacy(ce) if ce.p() => Some(ce.did()),
            CachedContext::Legacy(_) => Some(0),
            CachedContext::Scalable(_) => None,
        }
    }
}

/// PASID-cache key: the requester and the PASID (RID_PASID for requests without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct PasidKey {
    pub(super) rid: u16,
    pub(super) pasid: u32,
}

/// A PASID-table entry as the PASID cache holds it, with the FPD of the directory entry that
/// led to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CachedPasid {
    pub(super) pe: PasidEntry,
    pub(super) dir_fpd: bool,
}

/// Which walk made an IOTLB entry: which invalidations reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Legacy mode, second stage.
    Legacy,
    /// Scalable mode, PGTT first-stage only.
    FirstStage,
    /// Scalable mode, PGTT second-stage only.
    SecondStage,
    /// Scalable mode, PGTT nested.
    Nested,
}

/// IOTLB key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct IotlbKey {
    pub(super) did: u16,
    /// `None` in legacy mode; the request's PASID (or RID_PASID) in scalable mode.
    pub(super) pasid: Option<u32>,
    /// Input address >> `lg2`.
    pub(super) page: u64,
    pub(super) lg2: u8,
}

/// What an IOTLB entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IotlbResult {
    /// A translation: the output page (its first byte), what it allows, and whether a write
    /// needs no table update (`Leaf::dirty`).
    Mapped { out_page: u64, perms: Perms, dirty: bool },
    /// CAP.CM = 1 only: a second-stage entry for the page was not present (§6.1: first-stage
    /// not-present results are never cached).
    NotPresent,
}

/// An IOTLB entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct IotlbEntry {
    pub(super) kind: Kind,
    /// The first-stage G bit: PASID-selective invalidations keep it.
    pub(super) global: bool,
    /// Nested entries: the first and last guest physical address the walk depended on (the
    /// first-stage tables it read through the second stage, the page its first stage mapped
    /// the input to), what a strict page-selective invalidation of the domain selects them
    /// by. `(u64::MAX, 0)`, an empty range, for other kinds.
    pub(super) gpa: (u64, u64),
    pub(super) result: IotlbResult,
}

/// An IOTLB lookup's hit (`Caches::iotlb_lookup`).
#[derive(Clone, Copy, Debug)]
pub(super) struct IotlbHit {
    pub(super) entry: IotlbEntry,
    pub(super) lg2: u8,
    pub(super) dep: Dep,
    /// Page sizes probed (and missed) before this one.
    pub(super) misses: u8,
}

/// Memo slots per IOTLB entry's worth: two (a read and a write of a page are two requests),
/// between these bounds.
const MEMO_LEAST: usize = 64;
const MEMO_MOST: usize = 1 << 16;

/// Paging-structure cache key: the table at `depth` on the path of every input whose bits above
/// the table's span are `prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct PscKey {
    pub(super) did: u16,
    /// First stage: the PASID. Second stage: `None` (its tables belong to the domain).
    pub(super) pasid: Option<u32>,
    pub(super) depth: u8,
    pub(super) prefix: u64,
}

/// Second-stage leaf cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct LeafKey {
    pub(super) did: u16,
    pub(super) page: u64,
    pub(super) lg2: u8,
}

/// An inclusive range of input addresses an invalidation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) first: u64,
    pub(super) last: u64,
}

impl Span {
    /// The naturally aligned `2^(12 + am)` bytes around `addr` (§6.5.2.3 AM: software aligns
    /// ADDR to the range; the unit ignores the low bits).
    pub(super) fn pages(addr: u64, am: u8) -> Self {
        let mask = low_mask(am.saturating_add(12));
        Self { first: addr & !mask, last: addr | mask }
    }

    /// The numbers of the `2^lg2`-byte pages that meet the span (`lg2` < 64).
    fn page_numbers(self, lg2: u8) -> std::ops::RangeInclusive<u64> {
        (self.first >> lg2)..=(self.last >> lg2)
    }

    /// Whether the `2^lg2` bytes at `index << lg2` meet the span.
    fn meets(self, index: u64, lg2: u8) -> bool {
        let first = if lg2 >= 64 { 0 } else { index << lg2 };
        let last = first | low_mask(lg2);
        first <= self.last && self.first <= last
    }
}

/// Every cache of the unit.
#[derive(Debug)]
pub(super) struct Caches {
    pub(super) context: Maybe<u16, CachedContext>,
    pub(super) pasid: Maybe<PasidKey, CachedPasid>,
    pub(super) iotlb: Maybe<IotlbKey, IotlbEntry>,
    pub(super) fs_psc: Maybe<PscKey, ResumePoint>,
    pub(super) ss_psc: Maybe<PscKey, ResumePoint>,
    pub(super) ss_leaf: Maybe<LeafKey, Leaf>,
    /// Page sizes (log2) a translation can have, smallest first: what an IOTLB lookup probes.
    iotlb_sizes: [Option<u8>; 3],
    /// The IOTLB's sets (0: none), against which a range invalidation weighs its keys.
    iotlb_sets: usize,
    /// Second-stage leaf sizes the unit supports (CAP.SSLPS).
    ss_sizes: [Option<u8>; 3],
    /// The translation memo (forgiving only: a strict hit is checked by the sanitizer), when
    /// the unit has a context cache and an IOTLB.
    memo: Option<Memo>,
    /// Per DID, the PASIDs its second-stage-only translations are tagged with (scalable
    /// mode: each carries the PASID that used it), so that a page-selective invalidation,
    /// which names no PASID, can name a key per PASID; a DID with nested translations
    /// (selected by guest-physical address, keyed by first-stage input) or with more PASIDs
    /// than the registry keeps has every set searched. Legacy entries carry no PASID and are
    /// always named.
    tags: TagRegistry,
}

/// Domains the tag registry keeps apart (IMPDEF): beyond them, every set is searched for a
/// domain without room.
const TAGGED_DOMAINS: usize = 64;

/// The epoch of every cache, read when a translation begins.
#[derive(Clone, Copy, Debug)]
pub(super) struct Epochs {
    context: u64,
    pasid: u64,
    iotlb: u64,
    fs_psc: u64,
    ss_psc: u64,
    ss_leaf: u64,
}

impl Caches {
    /// Caches of the sizes `p` gives. `large_2m` / `large_1g`: whether any translation (first
    /// or second stage) can be 2M / 1G; `ss_2m` / `ss_1g`: whether the second stage can.
    /// `sanitized`: every cache keeps its entries' words (strict profile).
    pub(super) fn new(
        p: &CacheParams,
        large: (bool, bool),
        ss: (bool, bool),
        sanitized: bool,
    ) -> Self {
        let sizes = |(m2, g1): (bool, bool)| [Some(12), m2.then_some(21), g1.then_some(30)];
        Self {
            context: Maybe::new(p.context, sanitized),
            pasid: Maybe::new(p.pasid, sanitized),
            iotlb: Maybe::new(p.iotlb, sanitized),
            fs_psc: Maybe::new(p.fs_psc, sanitized),
            ss_psc: Maybe::new(p.ss_psc, sanitized),
            ss_leaf: Maybe::new(p.ss_leaf, sanitized),
            memo: (p.memo && !sanitized && p.context.sets * p.context.ways > 0)
                .then(|| p.iotlb.sets * p.iotlb.ways)
                .filter(|&n| n > 0)
                .map(|n| Memo::new((2 * n).clamp(MEMO_LEAST, MEMO_MOST))),
            iotlb_sizes: sizes(large),
            iotlb_sets: if p.iotlb.ways > 0 { p.iotlb.sets.next_power_of_two() } else { 0 },
            ss_sizes: sizes(ss),
            tags: TagRegistry::new(TAGGED_DOMAINS),
        }
    }

    /// Every cache's epoch, read before any table read.
    pub(super) fn epochs(&self) -> Epochs {
        Epochs {
            context: self.context.epoch(),
            pasid: self.pasid.epoch(),
            iotlb: self.iotlb.epoch(),
            fs_psc: self.fs_psc.epoch(),
            ss_psc: self.ss_psc.epoch(),
            ss_leaf: self.ss_leaf.epoch(),
        }
    }

    pub(super) fn stats(&self) -> VtdCacheStats {
        VtdCacheStats {
            context: self.context.stats(),
            pasid: self.pasid.stats(),
            iotlb: self.iotlb.stats(),
            fs_psc: self.fs_psc.stats(),
            ss_psc: self.ss_psc.stats(),
            ss_leaf: self.ss_leaf.stats(),
            tags: self.tags.stats(),
        }
    }

    /// Caches `rid`'s context entry; sanitized, with the root and context entry words read
    /// for it (of a scalable-mode root entry, only the half `rid`'s devfn uses).
    pub(super) fn insert_context(
        &self,
        rid: u16,
        ce: CachedContext,
        e: &Epochs,
        rec: Option<&Recorder>,
    ) {
        let upper = u8::from(rid & 0x80 != 0);
        self.context.insert_recorded(rid, ce, e.context, rec, |r| {
            let mut words = r.take_structures();
            words.retain(|w| match w.origin {
                Origin::Structure { what: SCALABLE_ROOT, index } => index == upper,
                _ => true,
            });
            words
        });
    }

    /// Caches a PASID-table entry; sanitized, with the directory and table entry words.
    pub(super) fn insert_pasid(
        &self,
        key: PasidKey,
        value: CachedPasid,
        e: &Epochs,
        rec: Option<&Recorder>,
    ) {
        self.pasid.insert_recorded(key, value, e.pasid, rec, Recorder::take_structures);
    }

    /// The IOTLB entry for `addr` in (`did`, `pasid`), probing each page size, smallest
    /// first: the entry, its page size, its [`Dep`] and how many sizes missed before it.
    /// Allocates nothing; takes only read locks.
    pub(super) fn iotlb_lookup(&self, did: u16, pasid: Option<u32>, addr: u64) -> Option<IotlbHit> {
        self.iotlb_sizes.iter().flatten().enumerate().find_map(|(misses, &lg2)| {
            let key = IotlbKey { did, pasid, page: addr >> lg2, lg2 };
            let (entry, dep) = self.iotlb.get_dep(&key)?;
            Some(IotlbHit { entry, lg2, dep, misses: u8::try_from(misses).unwrap_or(0) })
        })
    }

    // -----------------------------------------------------------------------------------------
    // The translation memo (`sviommu_tlb::Memo`): a repeated IOTLB hit in one probe
    // -----------------------------------------------------------------------------------------

    /// Retires every remembered answer (a command changed what translations read first).
    pub(super) fn memo_advance(&self) {
        if let Some(m) = &self.memo {
            m.advance();
        }
    }

    /// A trail for an untranslated request's translation that begins now.
    pub(super) fn memo_trail(&self, key: MemoKey) -> Option<MemoTrail> {
        self.memo.as_ref().map(|m| m.trail(key))
    }

    /// The answer remembered for `key`, if the context, PASID and IOTLB entries it came from
    /// are all still cached unchanged (counted as the lookups it stands for: `Memo::recall`):
    /// the output of the request's 4K page, the page size and the rights.
    #[inline]
    pub(super) fn recall(&self, key: MemoKey) -> Option<(u64, MemoInfo)> {
        self.memo.as_ref()?.recall(key, (&self.context.0, &self.pasid.0, &self.iotlb.0))
    }

    /// Remembers an answer from the IOTLB entry `iotlb` that `trail`'s translation reached
    /// (`pasid_entry`: in scalable mode, through a PASID-table entry).
    pub(super) fn remember(
        &self,
        trail: &MemoTrail,
        pasid_entry: bool,
        answer: (u64, MemoInfo),
        iotlb: Dep,
    ) {
        if let Some(m) = &self.memo {
            m.remember(trail, pasid_entry, answer, iotlb);
        }
    }

    /// Caches a translation (or, under CM, a not-present result) of `addr` as one `2^lg2` page;
    /// sanitized, with every table entry the translation read or borrowed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_iotlb(
        &self,
        did: u16,
        pasid: Option<u32>,
        addr: u64,
        lg2: u8,
        entry: IotlbEntry,
        e: &Epochs,
        rec: Option<&Recorder>,
    ) {
        if lg2 >= 64 {
            return;
        }
        // What a page-selective invalidation of the domain must find: the PASID of a
        // second-stage translation, or that the domain has nested ones (no key names them).
        // The registry's fence pairs with the one in `invalidate_ss_pages`: either that
        // invalidation sees the tag, or this insert sees its epoch and is refused.
        match (entry.kind, pasid) {
            // No IOTLB: nothing to name.
            _ if self.iotlb_sets == 0 => {}
            (Kind::Legacy | Kind::SecondStage, Some(p)) => {
                self.tags.record(u64::from(did), u64::from(p));
            }
            (Kind::Nested, _) => self.tags.record_unnamed(u64::from(did)),
            (Kind::Legacy | Kind::SecondStage, None) | (Kind::FirstStage, _) => {}
        }
        let key = IotlbKey { did, pasid, page: addr >> lg2, lg2 };
        self.iotlb.insert_recorded(key, entry, e.iotlb, rec, Recorder::steps);
    }

    // -----------------------------------------------------------------------------------------
    // Invalidations (§6.5): what each granularity removes. Each goes through
    // `Cache::invalidate`, which advances the epoch before removing.
    // -----------------------------------------------------------------------------------------

    /// Context-cache entries `selects` picks (by source-id and the entry).
    pub(super) fn invalidate_context(&self, selects: impl Fn(u16, &CachedContext) -> bool) {
        self.context.invalidate(|&rid, ce| selects(rid, ce));
    }

    /// PASID-cache entries `selects` picks (by PASID and the entry's DID). §6.1: a not-present
    /// entry cached under caching mode has no meaningful DID; IMPDEF: it is selected by any DID.
    pub(super) fn invalidate_pasid(&self, selects: impl Fn(u32, Option<u16>) -> bool) {
        self.pasid.invalidate(|k, v| selects(k.pasid, v.pe.p().then(|| v.pe.did())));
    }

    /// Everything every cache holds (CAP.ESRTPS: the SRTP flow's invalidation).
    pub(super) fn invalidate_everything(&self) {
        self.context.invalidate(|_, _| true);
        self.pasid.invalidate(|_, _| true);
        self.invalidate_translations();
    }

    /// Everything the IOTLB, paging-structure and leaf caches hold (global IOTLB invalidation).
    pub(super) fn invalidate_translations(&self) {
        // Before the epoch advances (see `sviommu_tlb::TagRegistry`).
        self.tags.forget_all();
        self.iotlb.invalidate(|_, _| true);
        self.fs_psc.invalidate(|_, _| true);
        self.ss_psc.invalidate(|_, _| true);
        self.ss_leaf.invalidate(|_, _| true);
    }

    /// Domain-selective IOTLB invalidation: every translation of `did`, whatever its PASID.
    pub(super) fn invalidate_domain(&self, did: u16) {
        self.tags.forget_group(u64::from(did));
        self.iotlb.invalidate(|k, _| k.did == did);
        self.fs_psc.invalidate(|k, _| k.did == did);
        self.ss_psc.invalidate(|k, _| k.did == did);
        self.ss_leaf.invalidate(|k, _| k.did == did);
    }

    /// Every IOTLB key of (`did`, `pasid`) whose page meets `span`, at each page size.
    fn iotlb_keys(
        &self,
        did: u16,
        pasid: Option<u32>,
        span: Span,
    ) -> impl Iterator<Item = IotlbKey> + '_ {
        self.iotlb_sizes.iter().flatten().flat_map(move |&lg2| {
            span.page_numbers(lg2).map(move |page| IotlbKey { did, pasid, page, lg2 })
        })
    }

    /// Whether naming the IOTLB keys of `tags` tags whose pages meet `span` is cheaper than
    /// searching every set.
    fn iotlb_worth_naming(&self, span: Span, tags: usize) -> bool {
        let per_tag = self.iotlb_sizes.iter().flatten().map(|&lg2| {
            let pages = span.page_numbers(lg2);
            (pages.end() - pages.start()).saturating_add(1)
        });
        let keys = per_tag.fold(0u64, u64::saturating_add).saturating_mul(tags as u64);
        worth_naming(keys, self.iotlb_sets)
    }

    /// Page-selective-within-domain IOTLB invalidation (§6.5.2.3): the address is a
    /// second-stage input. Second-stage and legacy translations and second-stage leaves in the
    /// span go; nested translations of the domain go whatever their input (the unit cannot tell
    /// which went through the span); second-stage paging-structure entries on the span's path
    /// go unless `ih` (only leaves changed).
    ///
    /// IMPDEF: the first-stage paging-structure cache holds guest-physical table addresses,
    /// which a second-stage change does not make stale, so it is kept; first-stage-only
    /// translations do not use the second stage and are kept.
    ///
    /// `strict`: a nested translation goes only if the span meets the guest physical
    /// addresses it depended on (its first-stage tables and output page, kept as one range:
    /// a superset, never less). Linux flushes a nesting parent with a page-selective
    /// invalidation of a GPA range on the nested DID; the entry's input address, a first-stage
    /// input, is never what selects it.
    pub(super) fn invalidate_ss_pages(&self, did: u16, span: Span, ih: bool, strict: bool) {
        let selects = |k: &IotlbKey, e: &IotlbEntry| {
            k.did == did
                && match e.kind {
                    Kind::Legacy | Kind::SecondStage => span.meets(k.page, k.lg2),
                    Kind::Nested if strict => span.first <= e.gpa.1 && e.gpa.0 <= span.last,
                    Kind::Nested => true,
                    Kind::FirstStage => false,
                }
        };
        // The keys of each PASID the domain's second-stage translations carry, and of none
        // (legacy). Read after the epoch has advanced, behind the registry's fence that pairs
        // with the one in `insert_iotlb`: a tagged entry this misses was inserted with a stale
        // epoch. `None` (nested translations, too many PASIDs): every set.
        let keys = || {
            let pasids = self.tags.tags(u64::from(did))?;
            if !self.iotlb_worth_naming(span, 1 + pasids.len()) {
                return None;
            }
            let tagged = pasids.into_iter().filter_map(|p| u32::try_from(p).ok().map(Some));
            let all = std::iter::once(None).chain(tagged);
            Some(all.flat_map(move |pasid| self.iotlb_keys(did, pasid, span)))
        };
        self.iotlb.invalidate_keys(keys, selects);
        let leaf_keys = self.ss_sizes.iter().flatten().flat_map(move |&lg2| {
            span.page_numbers(lg2).map(move |page| LeafKey { did, page, lg2 })
        });
        self.ss_leaf
            .invalidate_keys(|| Some(leaf_keys), |k, _| k.did == did && span.meets(k.page, k.lg2));
        if !ih {
            self.ss_psc.invalidate_keys(
                || Some(psc_keys(did, None, span, ss_levels())),
                |k, p| k.did == did && span.meets(k.prefix, p.span_lg2),
            );
        }
    }

    /// PASID-selective PASID-based IOTLB invalidation (§6.5.2.4, G = 10b): the first-stage and
    /// nested translations of (`did`, `pasid`) except global ones, and the first-stage
    /// paging-structure entries of (`did`, `pasid`).
    pub(super) fn invalidate_pasid_translations(&self, did: u16, pasid: u32) {
        self.iotlb.invalidate(|k, e| {
            k.did == did
                && k.pasid == Some(pasid)
                && matches!(e.kind, Kind::FirstStage | Kind::Nested)
                && !e.global
        });
        self.fs_psc.invalidate(|k, _| k.did == did && k.pasid == Some(pasid));
    }

    /// Page-selective PASID-based IOTLB invalidation (§6.5.2.4, G = 11b): the first-stage and
    /// nested translations of (`did`, `pasid`) in the span, global ones too; the first-stage
    /// paging-structure entries on the span's path unless `ih`.
    pub(super) fn invalidate_pasid_pages(&self, did: u16, pasid: u32, span: Span, ih: bool) {
        self.iotlb.invalidate_keys(
            || self.iotlb_worth_naming(span, 1).then(|| self.iotlb_keys(did, Some(pasid), span)),
            |k, e| {
                k.did == did
                    && k.pasid == Some(pasid)
                    && matches!(e.kind, Kind::FirstStage | Kind::Nested)
                    && span.meets(k.page, k.lg2)
            },
        );
        if !ih {
            self.fs_psc.invalidate_keys(
                || Some(psc_keys(did, Some(pasid), span, fs_levels())),
                |k, p| k.did == did && k.pasid == Some(pasid) && span.meets(k.prefix, p.span_lg2),
            );
        }
    }
}

/// The tags of one walk: what its caches are keyed by (the translation knows them once it has
/// the context and PASID-table entries, and builds the walk's [`Hints`] with them).
#[derive(Clone, Copy, Debug)]
pub(super) struct WalkTags {
    pub(super) did: u16,
    pub(super) pasid: Option<u32>,
    /// Levels of the first-stage table (0: none).
    pub(super) fs_levels: u8,
    /// Levels of the second-stage table (0: none).
    pub(super) ss_levels: u8,
    /// Nested: the second-stage leaf cache serves the walk.
    pub(super) nested: bool,
}

/// The level counts a second-stage table can have (AW: 39, 48, 57 bits) and a first-stage one
/// (4- and 5-level paging): the shapes a paging-structure cache entry can have.
fn ss_levels() -> [u8; 3] {
    [vtd_ss::Levels::Three, vtd_ss::Levels::Four, vtd_ss::Levels::Five]
        .map(|l| u8::try_from(l.count()).unwrap_or(u8::MAX))
}

fn fs_levels() -> [u8; 2] {
    [x86::Levels::Four, x86::Levels::Five].map(|l| u8::try_from(l.count()).unwrap_or(u8::MAX))
}

/// Every paging-structure cache key of (`did`, `pasid`) whose table meets `span`: each depth
/// below the root of a table of each of `levels` levels, at that depth's span (a walk's
/// `learned_table` keys a table by its depth and the input bits above its span). A handful
/// per depth for a range of pages; `Cache::invalidate_keys` searches every set once they
/// outnumber the sets.
fn psc_keys<const N: usize>(
    did: u16,
    pasid: Option<u32>,
    span: Span,
    levels: [u8; N],
) -> impl Iterator<Item = PscKey> {
    let shapes = levels
        .into_iter()
        .flat_map(|n| (1..n).filter_map(move |depth| Some((depth, table_span(n, depth)?))));
    shapes.flat_map(move |(depth, lg2)| {
        span.page_numbers(lg2).map(move |prefix| PscKey { did, pasid, depth, prefix })
    })
}

/// The span (log2) of the table at `depth` of a `levels`-level table with 9 index bits per level
/// over 4K pages (both VT-d formats).
fn table_span(levels: u8, depth: u8) -> Option<u8> {
    let below = levels.checked_sub(depth)?;
    below.checked_mul(9)?.checked_add(12)
}

/// The caches one walk consults and fills, through pgtable's `WalkHints`: paging-structure
/// caches of both stages and, for nested walks, the second-stage leaf cache, under that walk's
/// tags and the epochs its translation read first.
pub(super) struct Hints<'a> {
    caches: &'a Caches,
    tags: WalkTags,
    epochs: Epochs,
    /// Strict: where the walk's words go, and the check of every hit.
    san: Option<Sanitizing<'a>>,
}

/// A walk-cache or leaf-cache hit for the sanitizer to check.
#[derive(Clone, Copy, Debug)]
pub(super) enum WalkHit {
    /// The key and the span (log2) of the cached table.
    FsPsc(PscKey, u8),
    SsPsc(PscKey, u8),
    Leaf(LeafKey),
}

/// What a strict walk's hints record into and check with.
#[derive(Clone, Copy)]
pub(super) struct Sanitizing<'a> {
    pub(super) rec: &'a Recorder,
    pub(super) check: &'a dyn Fn(WalkHit),
}

impl<'a> Hints<'a> {
    pub(super) fn new(
        caches: &'a Caches,
        tags: WalkTags,
        epochs: Epochs,
        san: Option<Sanitizing<'a>>,
    ) -> Self {
        Self { caches, tags, epochs, san }
    }

    /// The paging-structure cache of `stage`, the key's PASID and the table's levels.
    fn psc(
        &self,
        stage: Stage,
        t: &WalkTags,
    ) -> (&'a Maybe<PscKey, ResumePoint>, Option<u32>, u8, u64) {
        match stage {
            Stage::S1 => (&self.caches.fs_psc, t.pasid, t.fs_levels, self.epochs.fs_psc),
            Stage::S2 => (&self.caches.ss_psc, None, t.ss_levels, self.epochs.ss_psc),
        }
    }
}

impl WalkHints for Hints<'_> {
    fn leaf(&mut self, stage: Stage, input: u64) -> Option<Leaf> {
        // Every walk asks here first: where its own words begin.
        if let Some(s) = self.san {
            s.rec.begin_walk(stage);
        }
        let t = self.tags;
        if stage != Stage::S2 || !t.nested {
            return None;
        }
        self.caches.ss_sizes.iter().flatten().find_map(|&lg2| {
            let key = LeafKey { did: t.did, page: input >> lg2, lg2 };
            let l = self.caches.ss_leaf.get(&key)?;
            if let Some(s) = self.san {
                (s.check)(WalkHit::Leaf(key));
                s.rec.used(&self.caches.ss_leaf.words(&key));
            }
            Some(Leaf { output: l.output | (input & low_mask(lg2)), ..l })
        })
    }

    fn resume(&mut self, stage: Stage, input: u64) -> Option<ResumePoint> {
        let t = self.tags;
        let (cache, pasid, levels, _) = self.psc(stage, &t);
        // The deepest cached table first.
        (1..levels).rev().find_map(|depth| {
            let span = table_span(levels, depth)?;
            let prefix = input.checked_shr(u32::from(span)).unwrap_or(0);
            let key = PscKey { did: t.did, pasid, depth, prefix };
            let p = cache.get(&key)?;
            let found = (p.span_lg2 == span && p.depth == depth).then_some(p)?;
            if let Some(s) = self.san {
                (s.check)(match stage {
                    Stage::S1 => WalkHit::FsPsc(key, span),
                    Stage::S2 => WalkHit::SsPsc(key, span),
                });
                s.rec.resumed(stage, &cache.words(&key));
            }
            Some(found)
        })
    }

    fn learned_table(&mut self, stage: Stage, input: u64, point: ResumePoint) {
        let t = self.tags;
        let (cache, pasid, _, epoch) = self.psc(stage, &t);
        let prefix = input.checked_shr(u32::from(point.span_lg2)).unwrap_or(0);
        let key = PscKey { did: t.did, pasid, depth: point.depth, prefix };
        let rec = self.san.map(|s| s.rec);
        cache.insert_recorded(key, point, epoch, rec, |r| r.walk_words(stage));
    }

    fn learned_leaf(&mut self, stage: Stage, input: u64, leaf: &Leaf) {
        let t = self.tags;
        if stage != Stage::S2 || !t.nested || leaf.page_lg2 >= 64 {
            return;
        }
        let lg2 = leaf.page_lg2;
        let key = LeafKey { did: t.did, page: input >> lg2, lg2 };
        let value = Leaf { output: leaf.output & !low_mask(lg2), ..*leaf };
        let rec = self.san.map(|s| s.rec);
        self.caches
            .ss_leaf
            .insert_recorded(key, value, self.epochs.ss_leaf, rec, |r| r.walk_words(Stage::S2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_meet_what_they_overlap() {
        let s = Span::pages(0x20_3000, 0);
        assert_eq!((s.first, s.last), (0x20_3000, 0x20_3fff));
        assert!(s.meets(0x203, 12));
        assert!(!s.meets(0x204, 12));
        // The 2M page around it, and the 1G one.
        assert!(s.meets(1, 21) && s.meets(0, 30));
        assert!(!s.meets(2, 21));
        // AM = 9: a 2M span.
        let s = Span::pages(0x20_0000, 9);
        assert_eq!((s.first, s.last), (0x20_0000, 0x3f_ffff));
        assert!(s.meets(0x3ff, 12) && !s.meets(0x400, 12));
        // An absurd AM covers everything.
        let s = Span::pages(0x1234, 63);
        assert_eq!((s.first, s.last), (0, u64::MAX));
    }

    #[test]
    fn table_spans() {
        assert_eq!(table_span(4, 1), Some(39));
        assert_eq!(table_span(4, 3), Some(21));
        assert_eq!(table_span(5, 1), Some(48));
        assert_eq!(table_span(3, 4), None);
    }

    #[test]
    fn a_unit_may_have_no_cache() {
        let c: Maybe<u64, u64> = Maybe::new(CacheGeometry::NONE, true);
        c.insert_recorded(1, 1, c.epoch(), None, |_| Vec::new());
        assert_eq!(c.get(&1), None);
        assert_eq!(c.stats(), CacheStats::default());
    }
}

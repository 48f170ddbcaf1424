//! The SMMU's caches (§16.2 "Caching", §3.21 structure and TLB invalidation), all bounded
//! `sviommu_tlb::Cache`s:
//!
//! | cache | key | value | invalidated by |
//! |---|---|---|---|
//! | STE | StreamID | the decoded, valid STE (L1STD included) | CMD_CFGI_STE(_RANGE), CMD_CFGI_ALL |
//! | CD | (StreamID, CD index) | the decoded, valid CD and its ASID | CMD_CFGI_CD(_ALL), CMD_CFGI_STE of the StreamID, CMD_CFGI_ALL |
//! | TLB | VMID, ASID (none: stage 2 only or nG == 0), VA or IPA, page, page size | output page, perms, dirty | CMD_TLBI_* |
//! | stage-1 walk cache | VMID, ASID, table span, input bits above it | a [`ResumePoint`] | NH_ALL/ASID/VA(A) (Leaf == 0), S12_VMALL, NSNH_ALL |
//! | stage-2 walk cache | VMID, span, IPA bits above it | a [`ResumePoint`] | S2_IPA (Leaf == 0), S12_VMALL, NSNH_ALL |
//! | stage-2 leaf cache | VMID, IPA page, page size | a stage-2 [`Leaf`] (serves nested table and CD fetches) | S2_IPA, S12_VMALL, NSNH_ALL |
//!
//! Entries leave by eviction or invalidation only: a driver that changes tables in memory and
//! does not invalidate keeps seeing the cached result, as on the silicon.
//!
//! Concurrency: a translation reads every cache's invalidation epoch ([`Epochs::read`]) before
//! it reads any structure or table, and inserts with those epochs; `Cache::insert` refuses a
//! value that an invalidation completed in the meantime has made stale. Hits take one set's
//! read lock and allocate nothing.
//!
//! IMPDEF: the VMID tag is STE.S2VMID whenever stage 2 is implemented, also for stage-1-only
//! streams (§5.2 S2VMID); 0 when it is not.

use sviommu_pgtable::{Leaf, Perms, ResumePoint, Stage, WalkHints};
use sviommu_tlb::sanitize::Recorder;
use sviommu_tlb::{
    CacheStats, Dep, Memo, MemoInfo, MemoKey, MemoTrail, TagRegistry, TagStats, Tracked,
};

use super::context::Context;
use super::stream::Stream;

/// Sizes of the caches, in entries (rounded up to whole sets of [`CacheSizes::WAYS`] ways).
/// 0 disables a cache: every lookup misses, as in an SMMU without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSizes {
    /// STE cache entries.
    pub ste: usize,
    /// CD cache entries.
    pub cd: usize,
    /// TLB entries (combined stage-1 + stage-2, or single stage).
    pub tlb: usize,
    /// Stage-1 walk cache entries (tables below the root).
    pub s1_walk: usize,
    /// Stage-2 walk cache entries.
    pub s2_walk: usize,
    /// Stage-2 leaf cache entries (nested table and CD fetches).
    pub s2_leaf: usize,
    /// The translation memo (`sviommu_tlb::Memo`): a repeated hit answered in one probe,
    /// counted as the lookups it stands for. It changes no answer and no statistic, only the
    /// time a hit takes; off, to compare. Forgiving profile only (strict checks every hit).
    pub memo: bool,
}

impl CacheSizes {
    /// Ways per set (IMPDEF).
    pub const WAYS: usize = 4;

    /// Every cache disabled.
    pub const NONE: Self =
        Self { ste: 0, cd: 0, tlb: 0, s1_walk: 0, s2_walk: 0, s2_leaf: 0, memo: false };
}

impl Default for CacheSizes {
    /// IMPDEF: sizes of a small SMMU (QEMU's IOTLB holds 256 entries).
    fn default() -> Self {
        Self { ste: 64, cd: 64, tlb: 256, s1_walk: 64, s2_walk: 64, s2_leaf: 64, memo: true }
    }
}

/// TLB tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct TlbKey {
    pub vmid: u16,
    /// `None`: not tagged by ASID (stage 2 only, or a global stage-1 entry).
    pub asid: Option<u16>,
    /// The input is a VA (stage 1 or nested) rather than an IPA (stage 2 only).
    pub va: bool,
    /// Input address >> `page_lg2`.
    pub page: u64,
    pub page_lg2: u8,
}

/// What a TLB hit needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TlbEntry {
    /// Output address of the page (low `page_lg2` bits zero).
    pub out_page: u64,
    pub perms: Perms,
    /// A write needs no table update (see [`Leaf::dirty`]).
    pub dirty: bool,
    /// The granule and level of the walk the entry was inserted from, what a TLBI's TG and
    /// TTL select on (§4.4.1.1).
    pub hint: LeafHint,
}

/// The translation granule (log2) and the level of the leaf descriptor a TLB entry was
/// inserted from: for a combined stage-1 + stage-2 entry, the stage-1 walk's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LeafHint {
    pub granule_lg2: u8,
    pub level: i8,
}

/// Walk-cache tag: stage-1 entries have an ASID, stage-2 entries do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct WalkKey {
    pub vmid: u16,
    pub asid: Option<u16>,
    pub span_lg2: u8,
    /// Input bits above `span_lg2`.
    pub prefix: u64,
}

/// Stage-2 leaf cache tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct S2LeafKey {
    pub vmid: u16,
    pub page: u64,
    pub page_lg2: u8,
}

/// Every cache of one SMMU.
#[derive(Debug)]
pub(super) struct Caches {
    pub ste: Option<Tracked<u32, Stream>>,
    pub cd: Option<Tracked<(u32, u32), Context>>,
    pub tlb: Option<Tracked<TlbKey, TlbEntry>>,
    pub s1_walk: Option<Tracked<WalkKey, ResumePoint>>,
    pub s2_walk: Option<Tracked<WalkKey, ResumePoint>>,
    pub s2_leaf: Option<Tracked<S2LeafKey, Leaf>>,
    /// The translation memo (forgiving only: a strict hit is checked by the sanitizer), when
    /// the SMMU has an STE cache and a TLB.
    pub memo: Option<Memo>,
    /// Per VMID, the ASIDs its stage-1 TLB and walk-cache entries carry, so that
    /// CMD_TLBI_NH_VAA, which names no ASID, can name a key per ASID (`TagRegistry`: a VMID
    /// with more ASIDs than it keeps has every set searched). Global entries carry none and
    /// are always named.
    pub tags: TagRegistry,
    /// The TLB's sets (0: none), against which a range invalidation weighs its keys.
    pub tlb_sets: usize,
}

/// VMIDs the tag registry keeps apart (IMPDEF): beyond them, every set is searched for a VMID
/// without room.
const TAGGED_VMIDS: usize = 64;

/// Memo slots: two per TLB entry (a read and a write of a page are two requests), between
/// these bounds.
const MEMO_LEAST: usize = 64;
const MEMO_MOST: usize = 1 << 16;

/// A cache of `entries` entries (none for 0); `sanitized`: it keeps its entries' words.
fn make<K: Copy + Eq + std::hash::Hash, V: Copy>(
    entries: usize,
    sanitized: bool,
) -> Option<Tracked<K, V>> {
    (entries != 0)
        .then(|| Tracked::new(entries.div_ceil(CacheSizes::WAYS), CacheSizes::WAYS, sanitized))
}

fn epoch<K: Copy + Eq + std::hash::Hash, V: Copy>(c: &Option<Tracked<K, V>>) -> u64 {
    c.as_ref().map_or(0, Tracked::epoch)
}

/// A TLB lookup's hit (`Caches::tlb_lookup`).
#[derive(Clone, Copy, Debug)]
pub(super) struct TlbHit {
    pub entry: TlbEntry,
    pub page_lg2: u8,
    pub key: TlbKey,
    pub dep: Dep,
    /// Lookups (sizes and tags) that missed before this one.
    pub misses: u8,
}

/// Every cache's invalidation epoch, read before a translation reads anything.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Epochs {
    pub ste: u64,
    pub cd: u64,
    pub tlb: u64,
    pub s1_walk: u64,
    pub s2_walk: u64,
    pub s2_leaf: u64,
}

impl Caches {
    /// `sanitized`: every cache keeps its entries' words (strict profile).
    pub fn new(s: &CacheSizes, sanitized: bool) -> Self {
        Self {
            ste: make(s.ste, sanitized),
            cd: make(s.cd, sanitized),
            tlb: make(s.tlb, sanitized),
            s1_walk: make(s.s1_walk, sanitized),
            s2_walk: make(s.s2_walk, sanitized),
            s2_leaf: make(s.s2_leaf, sanitized),
            memo: (s.memo && !sanitized && s.ste != 0 && s.tlb != 0)
                .then(|| Memo::new((2 * s.tlb).clamp(MEMO_LEAST, MEMO_MOST))),
            tags: TagRegistry::new(TAGGED_VMIDS),
            tlb_sets: s.tlb.div_ceil(CacheSizes::WAYS).next_power_of_two(),
        }
    }

    /// Records the ASID of a stage-1 TLB entry about to be inserted under `k` (the miss
    /// path, after the translation read its epochs, before the insert: `TagRegistry`).
    pub fn tag_tlb(&self, k: &TlbKey) {
        if let (true, Some(asid)) = (k.va, k.asid) {
            self.tags.record(u64::from(k.vmid), u64::from(asid));
        }
    }

    /// Retires every remembered answer (a register that selects what translations read
    /// first was written).
    pub fn memo_advance(&self) {
        if let Some(m) = &self.memo {
            m.advance();
        }
    }

    /// The answer remembered for `key`, if the STE, CD and TLB entries it came from are all
    /// still cached unchanged (counted as the lookups it stands for: `Memo::recall`).
    #[inline]
    pub fn recall(&self, key: MemoKey) -> Option<(u64, MemoInfo)> {
        self.memo.as_ref()?.recall(key, (&self.ste, &self.cd, &self.tlb))
    }

    /// Remembers an answer from the TLB entry `tlb` that `trail`'s translation reached (`cd`:
    /// through a CD).
    pub fn remember(&self, trail: &MemoTrail, cd: bool, answer: (u64, MemoInfo), tlb: Dep) {
        if let Some(m) = &self.memo {
            m.remember(trail, cd, answer, tlb);
        }
    }

    pub fn epochs(&self) -> Epochs {
        Epochs {
            ste: epoch(&self.ste),
            cd: epoch(&self.cd),
            tlb: epoch(&self.tlb),
            s1_walk: epoch(&self.s1_walk),
            s2_walk: epoch(&self.s2_walk),
            s2_leaf: epoch(&self.s2_leaf),
        }
    }

    /// A cached TLB entry for `input` under `vmid` and (for stage-1 inputs) `asid`, probing
    /// each page size in `sizes` (0 ends the list), ASID-tagged before global.
    pub fn tlb_lookup(
        &self,
        vmid: u16,
        asid: Option<u16>,
        va: bool,
        input: u64,
        sizes: &[u8; 6],
    ) -> Option<TlbHit> {
        let tlb = self.tlb.as_ref()?;
        let mut misses = 0u8;
        for &page_lg2 in sizes.iter().take_while(|&&s| s != 0) {
            let page = input >> page_lg2;
            let tags = [asid, None];
            let n = if asid.is_some() { 2 } else { 1 };
            for &a in tags.iter().take(n) {
                let key = TlbKey { vmid, asid: a, va, page, page_lg2 };
                if let Some((entry, dep)) = tlb.get_dep(&key) {
                    return Some(TlbHit { entry, page_lg2, key, dep, misses });
                }
                misses = misses.saturating_add(1);
            }
        }
        None
    }
}

/// The leaf and table sizes of a granule of `lg2` bytes: the page, and blocks one and two
/// levels up (§3.4; larger blocks need FEAT_LPA2 or the 64K level-1 block, both included).
pub(super) const fn granule_sizes(lg2: u8) -> [u8; 3] {
    let stride = lg2.saturating_sub(3);
    [lg2, lg2.saturating_add(stride), lg2.saturating_add(stride.saturating_mul(2))]
}

/// The tags one walk's hints use: VMID and the stage-2 granule from the STE, ASID and the
/// stage-1 granule from the CD (0 before it is known).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tags {
    pub vmid: u16,
    pub asid: u16,
    /// Stage-1 granule log2 (0 until the CD is known).
    pub s1_granule: u8,
    /// Stage-2 granule log2 (0 when stage 2 is off).
    pub s2_granule: u8,
}

/// The model's [`WalkHints`]: the walk caches and the stage-2 leaf cache, under one walk's
/// tags and its translation's epochs.
pub(super) struct Hints<'a> {
    pub caches: &'a Caches,
    pub tags: Tags,
    pub epochs: Epochs,
    /// Strict: where the walk's words go, and the check of every hit.
    pub san: Option<Sanitizing<'a>>,
}

/// A walk-cache or leaf-cache hit for the sanitizer to check.
#[derive(Clone, Copy, Debug)]
pub(super) enum WalkHit {
    S1Walk(WalkKey),
    S2Walk(WalkKey),
    S2Leaf(S2LeafKey),
}

/// What a strict walk's hints record into and check with.
#[derive(Clone, Copy)]
pub(super) struct Sanitizing<'a> {
    pub rec: &'a Recorder,
    pub check: &'a dyn Fn(WalkHit),
}

impl Hints<'_> {
    fn walk_cache(
        &self,
        stage: Stage,
    ) -> Option<(&Tracked<WalkKey, ResumePoint>, Option<u16>, u8)> {
        let t = self.tags;
        match stage {
            Stage::S1 => Some((self.caches.s1_walk.as_ref()?, Some(t.asid), t.s1_granule)),
            Stage::S2 => Some((self.caches.s2_walk.as_ref()?, None, t.s2_granule)),
        }
    }
}

impl WalkHints for Hints<'_> {
    fn leaf(&mut self, stage: Stage, input: u64) -> Option<Leaf> {
        // Every walk asks here first: where its own words begin.
        if let Some(s) = self.san {
            s.rec.begin_walk(stage);
        }
        if stage != Stage::S2 {
            return None;
        }
        let cache = self.caches.s2_leaf.as_ref()?;
        let t = self.tags;
        if t.s2_granule == 0 {
            return None;
        }
        for page_lg2 in granule_sizes(t.s2_granule) {
            let key = S2LeafKey { vmid: t.vmid, page: input >> page_lg2, page_lg2 };
            if let Some(l) = cache.get(&key) {
                if let Some(s) = self.san {
                    (s.check)(WalkHit::S2Leaf(key));
                    s.rec.used(&cache.words(&key).unwrap_or_default());
                }
                let offset = input & low_mask(page_lg2);
                return Some(Leaf { output: (l.output & !low_mask(page_lg2)) | offset, ..l });
            }
        }
        None
    }

    fn resume(&mut self, stage: Stage, input: u64) -> Option<ResumePoint> {
        let (cache, asid, granule) = self.walk_cache(stage)?;
        if granule == 0 {
            return None;
        }
        let vmid = self.tags.vmid;
        let stride = granule.saturating_sub(3);
        // The deepest table first: it covers granule + stride bits.
        (1..=4u8).find_map(|k| {
            let span_lg2 = granule.saturating_add(stride.saturating_mul(k));
            if span_lg2 >= 64 {
                return None;
            }
            let key = WalkKey { vmid, asid, span_lg2, prefix: input >> span_lg2 };
            let point = cache.get(&key)?;
            if let Some(s) = self.san {
                (s.check)(match stage {
                    Stage::S1 => WalkHit::S1Walk(key),
                    Stage::S2 => WalkHit::S2Walk(key),
                });
                s.rec.resumed(stage, &cache.words(&key).unwrap_or_default());
            }
            Some(point)
        })
    }

    fn learned_table(&mut self, stage: Stage, input: u64, point: ResumePoint) {
        let epoch = match stage {
            Stage::S1 => self.epochs.s1_walk,
            Stage::S2 => self.epochs.s2_walk,
        };
        if let Some((cache, asid, _)) = self.walk_cache(stage) {
            if point.span_lg2 < 64 {
                let key = WalkKey {
                    vmid: self.tags.vmid,
                    asid,
                    span_lg2: point.span_lg2,
                    prefix: input >> point.span_lg2,
                };
                if let Some(a) = asid {
                    self.caches.tags.record(u64::from(key.vmid), u64::from(a));
                }
                match self.san {
                    Some(s) => cache.insert_recorded(key, point, epoch, || s.rec.walk_words(stage)),
                    None => cache.insert(key, point, epoch),
                };
            }
        }
    }

    fn learned_leaf(&mut self, stage: Stage, input: u64, leaf: &Leaf) {
        if stage != Stage::S2 || leaf.page_lg2 >= 64 {
            return;
        }
        if let Some(cache) = self.caches.s2_leaf.as_ref() {
            let key = S2LeafKey {
                vmid: self.tags.vmid,
                page: input >> leaf.page_lg2,
                page_lg2: leaf.page_lg2,
            };
            let epoch = self.epochs.s2_leaf;
            match self.san {
                Some(s) => cache.insert_recorded(key, *leaf, epoch, || s.rec.walk_words(Stage::S2)),
                None => cache.insert(key, *leaf, epoch),
            };
        }
    }
}

/// Bits `[n-1:0]` set (all 64 for n >= 64).
pub(super) const fn low_mask(n: u8) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// What each cache has done so far (`sviommu_tlb::CacheStats`: hits, misses, evictions,
/// refused stale inserts, invalidated entries); a disabled cache reads all zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmmuCacheStats {
    /// STE cache.
    pub ste: CacheStats,
    /// CD cache.
    pub cd: CacheStats,
    /// TLB.
    pub tlb: CacheStats,
    /// Stage-1 walk cache.
    pub s1_walk: CacheStats,
    /// Stage-2 walk cache.
    pub s2_walk: CacheStats,
    /// Stage-2 leaf cache.
    pub s2_leaf: CacheStats,
    /// The ASIDs kept per VMID for CMD_TLBI_NH_VAA (`sviommu_tlb::TagStats`): tags recorded,
    /// VMIDs that began to have every TLB set searched (more ASIDs than it keeps, no room),
    /// invalidations that searched them.
    pub tags: TagStats,
}

fn stats_of<K: Copy + Eq + std::hash::Hash, V: Copy>(c: &Option<Tracked<K, V>>) -> CacheStats {
    c.as_ref().map(Tracked::stats).unwrap_or_default()
}

impl Caches {
    /// Every cache's figures.
    pub fn stats(&self) -> SmmuCacheStats {
        SmmuCacheStats {
            ste: stats_of(&self.ste),
            cd: stats_of(&self.cd),
            tlb: stats_of(&self.tlb),
            s1_walk: stats_of(&self.s1_walk),
            s2_walk: stats_of(&self.s2_walk),
            s2_leaf: stats_of(&self.s2_leaf),
            tags: self.tags.stats(),
        }
    }
}

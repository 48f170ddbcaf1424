//! Bounded caches for the IOMMU models: IOTLBs, paging-structure caches, context / PASID / STE /
//! CD caches.
//!
//! A [`Cache`] is set-associative like the silicon: a key hashes to one set of a few ways, a
//! full set evicts one of its entries (CLOCK: the first way not referenced since the hand last
//! passed), and nothing is ever flushed wholesale because the cache is full. An entry leaves by
//! eviction or by invalidation; it is never changed in place, so a driver that forgets to
//! invalidate sees the stale value, as it would on hardware.
//!
//! The contract that makes it safe under concurrency is the **invalidation epoch**. A lookup
//! that misses reads [`Cache::epoch`] *before* it reads the tables, and inserts its result with
//! that epoch. [`Cache::invalidate`] advances the epoch before it removes entries, and both the
//! insert's check and the removal happen under the set's lock. So a walk that began before an
//! invalidation completed either inserts before the removal (and is removed) or is refused: once
//! `invalidate` has returned, no lookup that starts afterwards sees a value from before it.
//! `tests/loom.rs` checks this over every interleaving.
//!
//! A hit takes one set's read lock, allocates nothing, writes the way's referenced bit only when
//! it is clear, and counts itself in the calling thread's own counter shard (a line no other
//! thread writes while there are no more threads than shards); [`Cache::stats`] sums the shards,
//! so the figures stay exact. Keys hash with a multiply-rotate fold ([`FoldHasher`]): the model
//! chooses every key, so nothing needs SipHash's resistance to chosen inputs.

#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

mod deferred;
pub use deferred::{Apply, BadProfile, Deferred, DeferredStats, Profile};

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::RwLock;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::RwLock;

/// A fast, fixed-key hash for keys the model itself builds (ids, page numbers, sizes): each word
/// is folded in by a rotate, an xor and a multiply by an odd constant (FxHash's scheme). The
/// high bits are the well-mixed ones: the cache indexes its sets with the top bits.
/// Deterministic, so the same traffic evicts the same entries on every run.
#[derive(Clone, Copy, Debug, Default)]
pub struct FoldHasher(u64);

/// The multiplier: 2^64 / φ, odd.
const FOLD: u64 = 0x9e37_79b9_7f4a_7c15;

impl FoldHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(FOLD);
    }
}

impl Hasher for FoldHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            for (to, from) in word.iter_mut().zip(chunk) {
                *to = *from;
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i.to_ne_bytes()[0]);
    }

    #[inline]
    fn write_i16(&mut self, i: i16) {
        self.write_u16(u16::from_ne_bytes(i.to_ne_bytes()));
    }

    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.write_u32(u32::from_ne_bytes(i.to_ne_bytes()));
    }

    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(u64::from_ne_bytes(i.to_ne_bytes()));
    }

    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.add(u64::from_ne_bytes((i as i64).to_ne_bytes()));
    }
}

/// Counter shards per cache: threads beyond this many share shards (still exact: the
/// increments are atomic), so scaling is measured with at most this many translating threads.
const SHARDS: usize = 16;

/// One thread's hit and miss counters, alone on its cache lines (128 bytes: the adjacent-line
/// prefetcher pairs 64-byte lines).
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The calling thread's shard index: threads are numbered in the order they first look
/// anything up, and take the shards round-robin.
#[inline]
fn shard_index() -> usize {
    use std::cell::Cell;
    // Not loom's: the numbering is not part of the protocol loom checks (any shard is
    // correct; the shards only spread the writes).
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let mut index = i.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS;
            i.set(index);
        }
        index
    })
}

/// One way of a set.
#[derive(Debug)]
struct Way<K, V> {
    key: K,
    value: V,
    /// CLOCK's referenced bit: set on every hit, cleared as the hand passes.
    referenced: AtomicBool,
}

#[derive(Debug)]
struct Set<K, V> {
    ways: Vec<Way<K, V>>,
    /// Where the CLOCK hand starts its next search.
    hand: usize,
}

/// Counters, so nothing the cache drops goes unnoticed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found their key.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries pushed out by a full set.
    pub evictions: u64,
    /// Inserts refused because an invalidation completed after their walk began.
    pub stale_inserts: u64,
    /// Entries removed by invalidations.
    pub invalidated: u64,
}

/// What [`Cache::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored (possibly evicting another entry, or replacing the same key).
    Stored,
    /// Refused: an invalidation completed since `epoch` was read, so the value may be stale.
    Stale,
}

/// A bounded, set-associative cache. See the crate documentation for the invalidation contract.
#[derive(Debug)]
pub struct Cache<K, V> {
    sets: Box<[RwLock<Set<K, V>>]>,
    ways: usize,
    epoch: AtomicU64,
    /// Fixed keys, so that the same traffic evicts the same entries on every run (silicon
    /// indexes its sets by address bits; a per-process random seed would make a scenario's
    /// figures differ between two runs).
    hasher: BuildHasherDefault<FoldHasher>,
    /// Hits and misses, one shard per thread (summed by [`stats`](Self::stats)).
    shards: Box<[Shard]>,
    evictions: AtomicU64,
    stale_inserts: AtomicU64,
    invalidated: AtomicU64,
}

impl<K: Copy + Eq + Hash, V: Copy> Cache<K, V> {
    /// A cache of `sets` sets (rounded up to a power of two, at least 1) of `ways` ways (at
    /// least 1): at most `sets * ways` entries.
    pub fn new(sets: usize, ways: usize) -> Self {
        let sets = sets.max(1).next_power_of_two();
        let ways = ways.max(1);
        Self {
            sets: (0..sets)
                .map(|_| RwLock::new(Set { ways: Vec::with_capacity(ways), hand: 0 }))
                .collect(),
            ways,
            epoch: AtomicU64::new(0),
            hasher: BuildHasherDefault::default(),
            shards: (0..SHARDS)
                .map(|_| Shard { hits: AtomicU64::new(0), misses: AtomicU64::new(0) })
                .collect(),
            evictions: AtomicU64::new(0),
            stale_inserts: AtomicU64::new(0),
            invalidated: AtomicU64::new(0),
        }
    }

    /// Entries the cache can hold.
    pub fn capacity(&self) -> usize {
        self.sets.len() * self.ways
    }

    /// The invalidation epoch. Read it before walking the tables whose result you will insert.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The index of `key`'s set.
    #[inline]
    fn set_index(&self, key: &K) -> usize {
        // The top bits, the best mixed of a multiplicative hash; `sets` is a non-empty power
        // of two, so the shift leaves an index in range (and 64 bits shifted out leave 0).
        let bits = self.sets.len().trailing_zeros();
        let index = self.hasher.hash_one(key).checked_shr(64 - bits).unwrap_or(0);
        usize::try_from(index).unwrap_or(0)
    }

    #[inline]
    fn set(&self, key: &K) -> &RwLock<Set<K, V>> {
        match self.sets.get(self.set_index(key)) {
            Some(set) => set,
            None => unreachable_set(),
        }
    }

    /// The cached value for `key`, if any.
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        let set = match self.set(key).read() {
            Ok(set) => set,
            // A panic while holding the lock cannot leave a set half-written (every write is
            // a whole-way push or swap); keep serving.
            Err(poisoned) => poisoned.into_inner(),
        };
        let found = set.ways.iter().find(|w| w.key == *key).map(|w| {
            // Written only when clear: a hit on a referenced way leaves its line shared.
            if !w.referenced.load(Ordering::Relaxed) {
                w.referenced.store(true, Ordering::Relaxed);
            }
            w.value
        });
        drop(set);
        if let Some(shard) = self.shards.get(shard_index()) {
            let counter = if found.is_some() { &shard.hits } else { &shard.misses };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Stores `value` for `key` if no invalidation has completed since `epoch` was read.
    pub fn insert(&self, key: K, value: V, epoch: u64) -> Inserted {
        let mut set = match self.set(&key).write() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        if self.epoch.load(Ordering::Acquire) != epoch {
            self.stale_inserts.fetch_add(1, Ordering::Relaxed);
            return Inserted::Stale;
        }
        let way = Way { key, value, referenced: AtomicBool::new(false) };
        if let Some(slot) = set.ways.iter_mut().find(|w| w.key == key) {
            *slot = way;
        } else if set.ways.len() < self.ways {
            set.ways.push(way);
        } else {
            let victim = clock_victim(&mut set);
            if let Some(slot) = set.ways.get_mut(victim) {
                *slot = way;
            }
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        Inserted::Stored
    }

    /// Removes every entry `selects` picks, after advancing the epoch so that walks already
    /// under way cannot insert what they read before. Returns how many were removed.
    pub fn invalidate(&self, selects: impl Fn(&K, &V) -> bool) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut removed = 0;
        for set in self.sets.iter() {
            let mut set = match set.write() {
                Ok(set) => set,
                Err(poisoned) => poisoned.into_inner(),
            };
            let before = set.ways.len();
            set.ways.retain(|w| !selects(&w.key, &w.value));
            removed += before - set.ways.len();
            set.hand = 0;
        }
        self.invalidated.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Removes everything (the spec's global invalidations).
    pub fn invalidate_all(&self) -> usize {
        self.invalidate(|_, _| true)
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.sets
            .iter()
            .map(|s| match s.read() {
                Ok(s) => s.ways.len(),
                Err(poisoned) => poisoned.into_inner().ways.len(),
            })
            .sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every entry, for inspection and for tests (not for the hot path).
    pub fn entries(&self) -> Vec<(K, V)> {
        let mut all = Vec::new();
        for set in self.sets.iter() {
            let set = match set.read() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            all.extend(set.ways.iter().map(|w| (w.key, w.value)));
        }
        all
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.shards.iter().map(|s| s.hits.load(Ordering::Relaxed)).sum(),
            misses: self.shards.iter().map(|s| s.misses.load(Ordering::Relaxed)).sum(),
            evictions: self.evictions.load(Ordering::Relaxed),
            stale_inserts: self.stale_inserts.load(Ordering::Relaxed),
            invalidated: self.invalidated.load(Ordering::Relaxed),
        }
    }
}

/// CLOCK: starting at the hand, clear referenced bits until a way without one is found.
/// Terminates within two passes: the first pass clears every bit it sees.
fn clock_victim<K, V>(set: &mut Set<K, V>) -> usize {
    let n = set.ways.len();
    for step in 0..2 * n {
        let i = (set.hand + step) % n;
        if let Some(way) = set.ways.get(i) {
            if !way.referenced.swap(false, Ordering::Relaxed) {
                set.hand = (i + 1) % n;
                return i;
            }
        }
    }
    set.hand
}

#[cold]
fn unreachable_set() -> ! {
    unreachable!("set index is masked to the number of sets")
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn full_sets_evict_one_way_not_everything() {
        let c: Cache<u64, u64> = Cache::new(1, 4);
        let e = c.epoch();
        for k in 0..4 {
            assert_eq!(c.insert(k, k * 10, e), Inserted::Stored);
        }
        // Touch 0..3 except 2: the hand clears 0, 1, 3 and takes 2.
        for k in [0, 1, 3] {
            assert_eq!(c.get(&k), Some(k * 10));
        }
        c.insert(9, 90, e);
        assert_eq!(c.len(), 4);
        assert_eq!(c.get(&2), None, "the unreferenced way was the victim");
        assert_eq!(c.get(&9), Some(90));
        assert_eq!(c.stats().evictions, 1);
    }

    /// The fold hash spreads what the models key by (an id, a PASID, consecutive page numbers,
    /// a size) over the sets about evenly: no set gets more than twice its share.
    #[test]
    fn consecutive_pages_spread_over_the_sets() {
        let c: Cache<(u16, Option<u32>, u64, u8), u64> = Cache::new(128, 8);
        let mut per_set = vec![0usize; 128];
        for page in 0x40000..0x40000 + 1024u64 {
            let key = (7u16, Some(1u32), page, 12u8);
            per_set[c.set_index(&key)] += 1;
        }
        let most = per_set.iter().copied().max().unwrap_or(0);
        assert!(most <= 16, "a set got {most} of 1024 keys (8 each on average): {per_set:?}");
    }

    #[test]
    fn inserts_from_before_an_invalidation_are_refused_and_counted() {
        let c: Cache<u64, u64> = Cache::new(4, 2);
        let before = c.epoch();
        assert_eq!(c.invalidate(|_, _| true), 0);
        assert_eq!(c.insert(1, 1, before), Inserted::Stale);
        assert_eq!(c.get(&1), None);
        assert_eq!(c.stats().stale_inserts, 1);
        assert_eq!(c.insert(1, 2, c.epoch()), Inserted::Stored);
        assert_eq!(c.get(&1), Some(2));
    }

    #[test]
    fn invalidation_removes_exactly_what_it_selects() {
        let c: Cache<(u16, u64), u64> = Cache::new(1, 16);
        let e = c.epoch();
        for did in 0..3u16 {
            for page in 0..5u64 {
                c.insert((did, page), page, e);
            }
        }
        assert_eq!(c.invalidate(|&(did, _), _| did == 1), 5);
        assert!(c.entries().iter().all(|&((did, _), _)| did != 1));
        assert_eq!(c.len(), 10);
        assert_eq!(c.stats().invalidated, 5);
    }
}

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
//! insert's check and the removal happen under the set's locks (every copy's, see [`Cache`]). So
//! a walk that began before an invalidation completed either inserts before the removal (and is
//! removed) or is refused: once `invalidate` has returned, no lookup that starts afterwards, on
//! any thread, sees a value from before it. `tests/loom.rs` checks this over every interleaving;
//! `tests/stress.rs` under real threads.
//!
//! A hit read-locks its own thread's copy of one set (so threads on different cores write no
//! common lock word), allocates nothing, writes the way's referenced bit only when it is clear,
//! and counts itself in the calling thread's own counter shard (a line no other thread writes
//! while there are no more threads than shards); [`Cache::stats`] sums the shards, so the
//! figures stay exact. Keys hash with a multiply-rotate fold ([`FoldHasher`]): the model
//! chooses every key, so nothing needs SipHash's resistance to chosen inputs.
//!
//! In front of the caches a model may keep a [`Memo`]: whole answers it gave before, found in
//! one lock-free probe and accepted only while every cache entry they came from still holds
//! (each way position's version, a [`Dep`]); see the `memo` module.

#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

mod deferred;
mod memo;
pub mod sanitize;
mod tags;
mod tracked;
pub use deferred::{
    Apply, AtsCompletion, AtsPolicy, AtsTracker, AtsTrackerStats, BadAtsCompletion, BadProfile,
    Deferred, DeferredStats, Profile, DEFAULT_ATS_TIMEOUT_TICKS,
};
pub use memo::{DepCache, Memo, MemoInfo, MemoKey, MemoTrail, Memoized};
pub use tags::{worth_naming, TagList, TagRegistry, TagStats, TAGS_PER_GROUP};
pub use tracked::Tracked;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::{RwLock, RwLockReadGuard as ReadGuard, RwLockWriteGuard as WriteGuard};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::{RwLock, RwLockReadGuard as ReadGuard, RwLockWriteGuard as WriteGuard};

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

/// Counter shards per cache a thread can own: up to this many threads each count in a shard no
/// other thread writes (a plain load and store); threads beyond them share one more shard, with
/// atomic increments. Either way the sums are exact.
const SHARDS: usize = 16;

/// One thread's hit and miss counters, alone on its cache lines (128 bytes: the adjacent-line
/// prefetcher pairs 64-byte lines).
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The calling thread's counter shard in every cache: its index, and whether the thread owns it
/// (then it is the only writer, and counts with a load and a store instead of a locked
/// increment). A caller that counts in several caches at once looks it up once
/// ([`current`](Self::current)) and passes it to each.
#[derive(Clone, Copy, Debug)]
pub struct ThreadShard {
    index: usize,
    owned: bool,
}

impl ThreadShard {
    /// The calling thread's shard (taken at the thread's first count).
    #[inline]
    pub fn current() -> Self {
        claim()
    }
}

/// Under loom: the thread's number in the execution (the same in every execution, as loom
/// needs), so two loom threads use two copies of the sets; never owned.
#[cfg(loom)]
fn claim() -> ThreadShard {
    let id = format!("{:?}", loom::thread::current().id());
    let digits: String = id.chars().filter(char::is_ascii_digit).collect();
    ThreadShard { index: digits.parse::<usize>().unwrap_or(0) % SHARDS, owned: false }
}

/// Which shards living threads own (bit `i`: shard `i`).
#[cfg(not(loom))]
static OWNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A thread's ownership of its shard, given back when the thread ends.
#[cfg(not(loom))]
struct Owner(ThreadShard);

#[cfg(not(loom))]
impl Owner {
    /// The lowest shard no living thread owns, else the shared one.
    fn take() -> Self {
        use std::sync::atomic::Ordering::{Acquire, Relaxed};
        let mut owned = OWNED.load(Relaxed);
        loop {
            let free = (!owned).trailing_zeros() as usize;
            if free >= SHARDS {
                return Self(ThreadShard { index: SHARDS, owned: false });
            }
            // Acquire: the counts the shard's last owner stored are seen before this thread adds.
            match OWNED.compare_exchange_weak(owned, owned | 1 << free, Acquire, Relaxed) {
                Ok(_) => return Self(ThreadShard { index: free, owned: true }),
                Err(now) => owned = now,
            }
        }
    }
}

#[cfg(not(loom))]
impl Drop for Owner {
    fn drop(&mut self) {
        if self.0.owned {
            // Release: this thread's last counts are seen by the shard's next owner.
            OWNED.fetch_and(!(1 << self.0.index), std::sync::atomic::Ordering::Release);
        }
    }
}

/// The calling thread's shard, taken at its first lookup. A thread whose ownership has already
/// been given back (a lookup from another thread-local's destructor) uses the shared shard.
#[cfg(not(loom))]
#[inline]
fn claim() -> ThreadShard {
    thread_local! {
        static OWNER: Owner = Owner::take();
    }
    OWNER.try_with(|o| o.0).unwrap_or(ThreadShard { index: SHARDS, owned: false })
}

/// Which of a shard's counters.
#[derive(Clone, Copy, Debug)]
enum Counter {
    Hits,
    Misses,
}

/// One way of a set.
#[derive(Debug)]
struct Way<K, V> {
    key: K,
    value: V,
}

/// A way's mark (one word per way position, shared by every copy of the set): bit 0 is CLOCK's
/// referenced bit (set on every hit, cleared as the hand passes), bits 63:1 the position's
/// version, advanced whenever the way at that position is replaced or removed, so that a
/// [`Dep`] taken from it stops holding.
const REFERENCED: u64 = 1;

/// The next version of a mark, referenced bit clear.
#[inline]
fn next_version(mark: u64) -> u64 {
    ((mark >> 1).wrapping_add(1)) << 1
}

/// Bits of a way position in a [`Dep`]: a cache holds fewer than `2^DEP_SLOT_BITS` entries.
const DEP_SLOT_BITS: u32 = 24;

/// Bits of a position's version a [`Dep`] keeps.
const DEP_VERSION_BITS: u32 = 64 - DEP_SLOT_BITS;

/// The low `n` bits set (`n` < 64).
const fn low_bits(n: u32) -> u64 {
    (1 << n) - 1
}

/// A cache entry a [`Dep`] still names, as [`Cache::held`] found it: its way position and
/// the position's mark then.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    slot: usize,
    mark: u64,
}

/// What a cached entry a hit used was, to check later that it is still there unchanged: its
/// way position and the position's version (the low 40 bits: a position would have to be
/// rewritten 2^40 times between the two looks for a changed entry to pass as the same).
/// Taken by [`Cache::get_dep`], checked by [`Cache::held`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dep(u64);

impl Dep {
    /// The position plus one in the top bits, so that the word is never 0.
    fn new(slot: usize, mark: u64) -> Self {
        let position = (slot as u64).wrapping_add(1) << DEP_VERSION_BITS;
        Self(position | ((mark >> 1) & low_bits(DEP_VERSION_BITS)))
    }

    fn slot(self) -> usize {
        usize::try_from((self.0 >> DEP_VERSION_BITS).wrapping_sub(1)).unwrap_or(usize::MAX)
    }

    fn matches(self, mark: u64) -> bool {
        (mark >> 1) & low_bits(DEP_VERSION_BITS) == self.0 & low_bits(DEP_VERSION_BITS)
    }

    /// As one word, never 0 (for structures that keep words).
    pub fn to_word(self) -> u64 {
        self.0
    }

    /// From [`to_word`](Self::to_word); 0 is none.
    pub fn from_word(word: u64) -> Option<Self> {
        (word != 0).then_some(Self(word))
    }
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

/// Most copies of the sets a cache keeps (see [`Cache`]).
const MAX_REPLICAS: usize = 4;

/// Most ways a set can have (an invalidation marks the ways it removes in one word).
pub const MAX_WAYS: usize = 64;

/// One copy of every set, apart from the other copies' lines.
#[derive(Debug)]
#[repr(align(128))]
struct Replica<K, V> {
    sets: Box<[RwLock<Set<K, V>>]>,
}

/// A bounded, set-associative cache. See the crate documentation for the invalidation contract.
///
/// Each set is kept in one copy per core (up to [`MAX_REPLICAS`], a power of two): a lookup
/// read-locks its thread's copy only, so threads on different cores never write the same lock
/// word, while an insert or an invalidation write-locks every copy of a set, in copy order, and
/// changes them all alike. The copies are one set to everything but the lookups: the same ways
/// in the same order, one CLOCK hand, and one mark per way position (its referenced bit and a
/// version that changes with the position's occupant, see [`Dep`]).
#[derive(Debug)]
pub struct Cache<K, V> {
    replicas: Box<[Replica<K, V>]>,
    /// `replicas.len() - 1`: a thread's shard index masked by it picks its copy.
    replica_mask: usize,
    /// Sets per copy (a power of two).
    sets: usize,
    ways: usize,
    epoch: AtomicU64,
    /// Fixed keys, so that the same traffic evicts the same entries on every run (silicon
    /// indexes its sets by address bits; a per-process random seed would make a scenario's
    /// figures differ between two runs).
    hasher: BuildHasherDefault<FoldHasher>,
    /// One mark per way position (`sets * ways`), shared by every copy: referenced bit and
    /// version.
    marks: Box<[AtomicU64]>,
    /// Hits and misses, one shard per thread (summed by [`stats`](Self::stats)).
    shards: Box<[Shard]>,
    evictions: AtomicU64,
    stale_inserts: AtomicU64,
    invalidated: AtomicU64,
}

/// Copies of the sets to keep: one per core the process may run on, at most [`MAX_REPLICAS`],
/// rounded down to a power of two. Loom checks two.
fn replica_count() -> usize {
    #[cfg(loom)]
    let cores = 2;
    #[cfg(not(loom))]
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let n = cores.clamp(1, MAX_REPLICAS);
    1 << n.ilog2()
}

fn write_set<K, V>(set: &RwLock<Set<K, V>>) -> WriteGuard<'_, Set<K, V>> {
    match set.write() {
        Ok(set) => set,
        // A panic while holding the lock cannot leave a set half-written (every write is a
        // whole-way push or swap, applied to each copy in turn under all their locks).
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn read_set<K, V>(set: &RwLock<Set<K, V>>) -> ReadGuard<'_, Set<K, V>> {
    match set.read() {
        Ok(set) => set,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Copies 1.. of one set, write-locked (`None` past the cache's copies).
type Others<'a, K, V> = [Option<WriteGuard<'a, Set<K, V>>>; MAX_REPLICAS - 1];

/// What an insert does to every copy of its set.
#[derive(Clone, Copy)]
enum Place {
    Replace(usize),
    Push,
    Evict(usize),
}

impl<K: Copy + Eq + Hash, V: Copy> Cache<K, V> {
    /// A cache of `sets` sets (rounded up to a power of two, at least 1, fewer than 2^24
    /// entries in all) of `ways` ways (at least 1, at most [`MAX_WAYS`]): at most
    /// `sets * ways` entries.
    pub fn new(sets: usize, ways: usize) -> Self {
        let ways = ways.clamp(1, MAX_WAYS);
        let most_sets = (1usize << (DEP_SLOT_BITS - 1)) / MAX_WAYS;
        let sets = sets.clamp(1, most_sets).next_power_of_two();
        let replicas = replica_count();
        Self {
            replicas: (0..replicas)
                .map(|_| Replica {
                    sets: (0..sets)
                        .map(|_| RwLock::new(Set { ways: Vec::with_capacity(ways), hand: 0 }))
                        .collect(),
                })
                .collect(),
            replica_mask: replicas - 1,
            sets,
            ways,
            epoch: AtomicU64::new(0),
            hasher: BuildHasherDefault::default(),
            marks: (0..sets * ways).map(|_| AtomicU64::new(0)).collect(),
            shards: (0..=SHARDS)
                .map(|_| Shard { hits: AtomicU64::new(0), misses: AtomicU64::new(0) })
                .collect(),
            evictions: AtomicU64::new(0),
            stale_inserts: AtomicU64::new(0),
            invalidated: AtomicU64::new(0),
        }
    }

    /// Entries the cache can hold.
    pub fn capacity(&self) -> usize {
        self.sets * self.ways
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
        let bits = self.sets.trailing_zeros();
        let index = self.hasher.hash_one(key).checked_shr(64 - bits).unwrap_or(0);
        usize::try_from(index).unwrap_or(0)
    }

    /// Copy `replica` of set `index`.
    #[inline]
    fn copy(&self, replica: usize, index: usize) -> &RwLock<Set<K, V>> {
        match self.replicas.get(replica).and_then(|r| r.sets.get(index)) {
            Some(set) => set,
            None => unreachable_set(),
        }
    }

    /// Copies 1.. of set `index`, write-locked in copy order, by a writer that holds copy 0's
    /// lock (so two writers never wait on each other crosswise). Holding copy 0's write lock
    /// excludes every other writer of the set, so while it is held the copies are alike.
    fn lock_others(&self, index: usize) -> Others<'_, K, V> {
        std::array::from_fn(|r| {
            self.replicas.get(r + 1).and_then(|c| c.sets.get(index)).map(write_set)
        })
    }

    /// The cached value for `key`, if any.
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_dep(key).map(|(value, _)| value)
    }

    /// [`get`](Self::get), with what the hit used, so that a later look can check it is still
    /// there ([`held`](Self::held)) and count a hit on it ([`hit_at`](Self::hit_at)).
    #[inline]
    pub fn get_dep(&self, key: &K) -> Option<(V, Dep)> {
        let claim = claim();
        let index = self.set_index(key);
        let set = read_set(self.copy(claim.index & self.replica_mask, index));
        let found = set.ways.iter().position(|w| w.key == *key).and_then(|i| {
            let slot = index * self.ways + i;
            let mark = self.marks.get(slot)?;
            // The mark is written under every copy's write lock, which this read lock excludes.
            let seen = mark.load(Ordering::Relaxed);
            // Written only when clear: a hit on a referenced way leaves its line shared.
            if seen & REFERENCED == 0 {
                mark.fetch_or(REFERENCED, Ordering::Relaxed);
            }
            Some((set.ways.get(i)?.value, Dep::new(slot, seen)))
        });
        drop(set);
        let counter = if found.is_some() { Counter::Hits } else { Counter::Misses };
        self.count(claim, counter, 1);
        found
    }

    /// Adds `n` to one of the calling thread's counters: a plain load and store in a shard it
    /// owns, an atomic increment in the shared one.
    #[inline]
    fn count(&self, claim: ThreadShard, counter: Counter, n: u64) {
        if let Some(shard) = self.shards.get(claim.index) {
            let c = match counter {
                Counter::Hits => &shard.hits,
                Counter::Misses => &shard.misses,
            };
            if claim.owned {
                c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
            } else {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The entry `dep` was taken from, if it is still cached unchanged (no lock: a lookup
    /// concurrent with its invalidation may see it either way, as it may any cached entry).
    #[inline]
    pub fn held(&self, dep: Dep) -> Option<Held> {
        let slot = dep.slot();
        let mark = self.marks.get(slot)?.load(Ordering::Acquire);
        dep.matches(mark).then_some(Held { slot, mark })
    }

    /// A hit on an entry [`held`](Self::held) found: what [`get`](Self::get) would have done
    /// for its key (the way referenced, a hit counted), without the lookup.
    #[inline]
    pub fn hit_at(&self, held: Held, shard: ThreadShard) {
        // Written only when clear, as a lookup does (the mark as `held` saw it).
        if held.mark & REFERENCED == 0 {
            if let Some(mark) = self.marks.get(held.slot) {
                mark.fetch_or(REFERENCED, Ordering::Relaxed);
            }
        }
        self.count(shard, Counter::Hits, 1);
    }

    /// `n` lookups that missed, as [`get`](Self::get) counts them (a caller that knows the
    /// answer without looking: a size probed before the one that hit).
    #[inline]
    pub fn count_misses(&self, n: u64, shard: ThreadShard) {
        if n > 0 {
            self.count(shard, Counter::Misses, n);
        }
    }

    /// The marks of set `index`.
    fn set_marks(&self, index: usize) -> &[AtomicU64] {
        let first = index * self.ways;
        self.marks.get(first..first + self.ways).unwrap_or(&[])
    }

    /// Stores `value` for `key` if no invalidation has completed since `epoch` was read.
    pub fn insert(&self, key: K, value: V, epoch: u64) -> Inserted {
        self.insert_evicting(key, value, epoch).0
    }

    /// [`insert`](Self::insert), also returning the key of the entry it evicted, if any.
    pub fn insert_evicting(&self, key: K, value: V, epoch: u64) -> (Inserted, Option<K>) {
        let index = self.set_index(&key);
        let mut first = write_set(self.copy(0, index));
        if self.epoch.load(Ordering::Acquire) != epoch {
            self.stale_inserts.fetch_add(1, Ordering::Relaxed);
            return (Inserted::Stale, None);
        }
        let mut others = self.lock_others(index);
        // Every copy holds the same ways in the same order: decide on the first.
        let marks = self.set_marks(index);
        let place = match first.ways.iter().position(|w| w.key == key) {
            Some(i) => Place::Replace(i),
            None if first.ways.len() < self.ways => Place::Push,
            None => Place::Evict(clock_victim(&mut first, &mut others, marks)),
        };
        // The position's new occupant: a new version, not referenced.
        let at = match place {
            Place::Replace(i) | Place::Evict(i) => i,
            Place::Push => first.ways.len(),
        };
        if let Some(mark) = marks.get(at) {
            mark.store(next_version(mark.load(Ordering::Relaxed)), Ordering::Release);
        }
        let evicted = match place {
            Place::Evict(i) => first.ways.get(i).map(|w| w.key),
            Place::Replace(_) | Place::Push => None,
        };
        for set in std::iter::once(&mut first).chain(others.iter_mut().flatten()) {
            let way = Way { key, value };
            match place {
                Place::Push => set.ways.push(way),
                Place::Replace(i) | Place::Evict(i) => {
                    if let Some(slot) = set.ways.get_mut(i) {
                        *slot = way;
                    }
                }
            }
        }
        if let Place::Evict(_) = place {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        (Inserted::Stored, evicted)
    }

    /// Removes every entry `selects` picks, after advancing the epoch so that walks already
    /// under way cannot insert what they read before. Returns how many were removed.
    pub fn invalidate(&self, selects: impl Fn(&K, &V) -> bool) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let removed = (0..self.sets).map(|index| self.remove_selected(index, &selects)).sum();
        self.invalidated.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// [`invalidate`](Self::invalidate) for a range: `keys` names every key an entry that
    /// `selects` picks can have (each page of the range at each page size the cache may hold),
    /// and only those keys' sets are searched, so the cost grows with the range, not with the
    /// cache. `keys` is called after the epoch has advanced, so that whatever it decides from
    /// (a flag an insert sets, say) covers every insert that is not refused; `None`, or as
    /// many keys as the cache has sets, searches every set. Returns how many entries went.
    pub fn invalidate_keys<I: IntoIterator<Item = K>>(
        &self,
        keys: impl FnOnce() -> Option<I>,
        selects: impl Fn(&K, &V) -> bool,
    ) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        // The sets the keys hash to, unless there is no list or it is as long as the cache.
        let sets = keys().and_then(|keys| {
            let mut sets = Vec::new();
            for key in keys {
                if sets.len() == self.sets {
                    return None;
                }
                sets.push(self.set_index(&key));
            }
            sets.sort_unstable();
            sets.dedup();
            Some(sets)
        });
        let removed = match sets {
            Some(sets) => sets.into_iter().map(|index| self.remove_selected(index, &selects)).sum(),
            None => (0..self.sets).map(|index| self.remove_selected(index, &selects)).sum(),
        };
        self.invalidated.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Removes what `selects` picks from every copy of set `index`; how many went. The caller
    /// has advanced the epoch.
    fn remove_selected(&self, index: usize, selects: &impl Fn(&K, &V) -> bool) -> usize {
        // Which ways go, decided on the first copy (`ways` <= 64); the other copies are
        // locked and changed only if any does.
        let mut first = write_set(self.copy(0, index));
        let mut going = 0u64;
        for (i, w) in first.ways.iter().enumerate() {
            if selects(&w.key, &w.value) {
                going |= 1u64.checked_shl(u32::try_from(i).unwrap_or(u32::MAX)).unwrap_or(0);
            }
        }
        if going == 0 {
            return 0;
        }
        let mut others = self.lock_others(index);
        let held = first.ways.len();
        for set in std::iter::once(&mut first).chain(others.iter_mut().flatten()) {
            let mut i = 0u32;
            set.ways.retain(|_| {
                let keep = going.checked_shr(i).unwrap_or(0) & 1 == 0;
                i += 1;
                keep
            });
            set.hand = 0;
        }
        // Every position from the first removed way on has a new occupant (or none): each
        // takes a new version, and the referenced bit of the way that moved into it.
        let marks = self.set_marks(index);
        let bit = |word: u64, i: usize| {
            word.checked_shr(u32::try_from(i).unwrap_or(u32::MAX)).unwrap_or(0) & 1
        };
        let mut referenced = 0u64;
        let mut kept = 0usize;
        for (i, mark) in marks.iter().enumerate().take(held) {
            if bit(going, i) == 0 {
                let r = mark.load(Ordering::Relaxed) & REFERENCED;
                referenced |= r.checked_shl(u32::try_from(kept).unwrap_or(u32::MAX)).unwrap_or(0);
                kept += 1;
            }
        }
        let from = going.trailing_zeros() as usize;
        for (p, mark) in marks.iter().enumerate().take(held).skip(from) {
            let now = next_version(mark.load(Ordering::Relaxed));
            mark.store(now | bit(referenced, p), Ordering::Release);
        }
        going.count_ones() as usize
    }

    /// Removes everything (the spec's global invalidations).
    pub fn invalidate_all(&self) -> usize {
        self.invalidate(|_, _| true)
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        (0..self.sets).map(|i| read_set(self.copy(0, i)).ways.len()).sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every entry, for inspection and for tests (not for the hot path).
    pub fn entries(&self) -> Vec<(K, V)> {
        let mut all = Vec::new();
        for i in 0..self.sets {
            all.extend(read_set(self.copy(0, i)).ways.iter().map(|w| (w.key, w.value)));
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

/// CLOCK over a full set: starting at the hand, clear each way's referenced bit (one mark,
/// whichever copy a lookup went through) until a way that was not referenced is found; that is
/// the victim, and the hand moves past it in every copy. Terminates within two passes: the
/// first clears every bit.
fn clock_victim<K, V>(
    first: &mut Set<K, V>,
    others: &mut Others<'_, K, V>,
    marks: &[AtomicU64],
) -> usize {
    let (n, hand) = (first.ways.len(), first.hand);
    for step in 0..2 * n {
        let i = (hand + step) % n;
        let referenced = marks
            .get(i)
            .is_some_and(|m| m.fetch_and(!REFERENCED, Ordering::Relaxed) & REFERENCED != 0);
        if !referenced {
            first.hand = (i + 1) % n;
            for set in others.iter_mut().flatten() {
                set.hand = (i + 1) % n;
            }
            return i;
        }
    }
    hand
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

    /// A way referenced through another thread's copy of the set is not the victim either.
    #[test]
    fn references_through_any_copy_spare_a_way() {
        let c: Cache<u64, u64> = Cache::new(1, 4);
        let e = c.epoch();
        for k in 0..4 {
            c.insert(k, k * 10, e);
        }
        std::thread::scope(|s| {
            for k in [0, 1, 3] {
                let c = &c;
                s.spawn(move || assert_eq!(c.get(&k), Some(k * 10)));
            }
        });
        c.insert(9, 90, e);
        assert_eq!(c.get(&2), None, "the way no copy referenced was the victim");
        for k in [0, 1, 3, 9] {
            assert!(c.get(&k).is_some(), "{k} was evicted");
        }
        assert_eq!(c.stats().hits, 3 + 4);
    }

    /// Counts stay exact when threads outnumber the shards they can own (the rest share one
    /// with atomic increments) and when ended threads' shards are taken by new ones.
    #[test]
    fn counts_are_exact_with_more_threads_than_shards() {
        let c: Cache<u64, u64> = Cache::new(4, 4);
        c.insert(1, 1, c.epoch());
        std::thread::scope(|s| {
            for _ in 0..2 * SHARDS {
                s.spawn(|| {
                    for _ in 0..500 {
                        assert_eq!(c.get(&1), Some(1));
                        assert_eq!(c.get(&2), None);
                    }
                });
            }
        });
        for _ in 0..3 * SHARDS {
            std::thread::scope(|s| {
                s.spawn(|| c.get(&1));
            });
        }
        let stats = c.stats();
        assert_eq!(
            (stats.hits, stats.misses),
            (2 * SHARDS as u64 * 500 + 3 * SHARDS as u64, 2 * SHARDS as u64 * 500)
        );
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

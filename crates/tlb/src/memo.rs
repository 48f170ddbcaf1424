//! The translation memo: a model's whole answer for a request it has answered from its caches
//! before, found with one probe and no lock.
//!
//! A cache hit in an IOMMU model takes one lookup per cache on the request path (VT-d: context,
//! PASID, IOTLB; SMMUv3: STE, CD, TLB), each a hash, a read lock and a search of a set. The
//! memo remembers, per request (requester, PASID or SubstreamID, access, 4K input page), the
//! translation those lookups produced and the [`Dep`] of every cache entry they used. A memo
//! entry answers only while every one of those entries is still cached unchanged
//! ([`Cache::held`](crate::Cache::held)) and the unit's configuration registers have not been
//! written since ([`Memo::advance`]); the model then counts the hits (and the misses of the
//! page sizes probed first) and marks the entries referenced exactly as the lookups would have
//! ([`Cache::hit_at`](crate::Cache::hit_at)), so the statistics, the replacement and every
//! stale entry a driver relies on are what they are without the memo. It adds no behaviour:
//! it is how the model answers a repeated hit quickly.
//!
//! Each entry is eight words under its own sequence word (a seqlock: a reader that sees the
//! sequence odd or changed across its reads treats the probe as a miss; writers take the
//! sequence with a compare-exchange and give up if another writer holds it). A probe writes
//! nothing. `tests/loom.rs` checks that a reader never takes one entry's key with another's
//! value.

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicU64, Ordering};

use std::cell::Cell;

use sviommu_pgtable::{Access, Perms};

use crate::{Cache, Dep, Held, ThreadShard, Tracked};

/// What a memo entry is found by: the model packs the requester, PASID / SubstreamID and the
/// access into `id`, and the 4K input page number into `page`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoKey {
    /// Requester, PASID, access, as the model packs them.
    pub id: u64,
    /// Input address >> 12.
    pub page: u64,
}

impl MemoKey {
    /// The key of an untranslated request from `requester` (VT-d source-id, SMMUv3 StreamID)
    /// at `pasid` (PASID, SubstreamID; 20 bits) with `access` to `addr`: requester in bits
    /// 31:0 of `id`, the PASID and a valid bit in 52:32, write / exec / privileged in 55:53.
    /// `None` for a PASID wider than 20 bits (two such requests could not be told apart; both
    /// models refuse them anyway).
    #[inline]
    pub fn new(requester: u32, pasid: Option<u32>, access: Access, addr: u64) -> Option<Self> {
        let p = match pasid {
            Some(p) if p >> 20 != 0 => return None,
            Some(p) => u64::from(p) | 1 << 20,
            None => 0,
        };
        let flags = u64::from(access.write)
            | u64::from(access.exec) << 1
            | u64::from(access.privileged) << 2;
        Some(Self { id: u64::from(requester) | p << 32 | flags << 53, page: addr >> 12 })
    }
}

/// What a memo entry answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memoized {
    /// The output address of the 4K page's first byte.
    pub out: u64,
    /// The translation's page size and rights, and the TLB lookups that missed before its hit.
    pub info: MemoInfo,
    /// The cache entries the answer was built from: the first configuration structure (VT-d
    /// context entry, STE), the second if the request path used one (PASID-table entry, CD),
    /// the TLB entry.
    pub deps: [Option<Dep>; 3],
}

/// What a remembered translation holds besides its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoInfo {
    /// The page size (log2) the translation reports.
    pub lg2: u8,
    /// What it allows.
    pub perms: Perms,
    /// TLB lookups that missed before the one that hit (the smaller page sizes, other tags).
    pub misses: u8,
}

impl MemoInfo {
    fn pack(self) -> u32 {
        u32::from_le_bytes([self.lg2, self.perms.bits(), self.misses, 0])
    }

    fn unpack(info: u32) -> Self {
        let [lg2, perms, misses, _] = info.to_le_bytes();
        Self { lg2, perms: Perms::from_bits(perms), misses }
    }
}

/// A cache a remembered answer's entries come from: [`Cache`], [`Tracked`], or either where a
/// unit may not have one.
pub trait DepCache {
    /// [`Cache::held`] (an absent cache holds nothing).
    fn held(&self, dep: Dep) -> Option<Held>;
    /// [`Cache::hit_at`].
    fn hit_at(&self, held: Held, shard: ThreadShard);
    /// [`Cache::count_misses`].
    fn count_misses(&self, n: u64, shard: ThreadShard);
}

impl<K: Copy + Eq + std::hash::Hash, V: Copy> DepCache for Cache<K, V> {
    #[inline]
    fn held(&self, dep: Dep) -> Option<Held> {
        Cache::held(self, dep)
    }
    #[inline]
    fn hit_at(&self, held: Held, shard: ThreadShard) {
        Cache::hit_at(self, held, shard);
    }
    #[inline]
    fn count_misses(&self, n: u64, shard: ThreadShard) {
        Cache::count_misses(self, n, shard);
    }
}

impl<K: Copy + Eq + std::hash::Hash, V: Copy> DepCache for Tracked<K, V> {
    #[inline]
    fn held(&self, dep: Dep) -> Option<Held> {
        Tracked::held(self, dep)
    }
    #[inline]
    fn hit_at(&self, held: Held, shard: ThreadShard) {
        Tracked::hit_at(self, held, shard);
    }
    #[inline]
    fn count_misses(&self, n: u64, shard: ThreadShard) {
        Tracked::count_misses(self, n, shard);
    }
}

impl<C: DepCache> DepCache for Option<C> {
    #[inline]
    fn held(&self, dep: Dep) -> Option<Held> {
        self.as_ref()?.held(dep)
    }
    #[inline]
    fn hit_at(&self, held: Held, shard: ThreadShard) {
        if let Some(c) = self {
            c.hit_at(held, shard);
        }
    }
    #[inline]
    fn count_misses(&self, n: u64, shard: ThreadShard) {
        if let Some(c) = self {
            c.count_misses(n, shard);
        }
    }
}

/// What one translation gathers for the memo on its way through the caches: its key, the
/// memo's generation before anything was looked up, and the configuration entries' [`Dep`]s
/// as the lookups find them (none for an entry read from memory: only an answer wholly from
/// the caches is remembered).
#[derive(Debug)]
pub struct MemoTrail {
    key: MemoKey,
    generation: u64,
    config: [Cell<Option<Dep>>; 2],
}

impl MemoTrail {
    /// The first (`0`: VT-d context entry, STE) or second (`1`: PASID-table entry, CD)
    /// configuration entry came from its cache.
    pub fn found(&self, which: usize, dep: Dep) {
        if let Some(c) = self.config.get(which) {
            c.set(Some(dep));
        }
    }
}

/// Words of one entry after its sequence word: id, page, out, info and generation, three deps.
const WORDS: usize = 7;

/// One entry, on its own cache line.
#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    /// Even when stable; odd while a writer holds the entry.
    seq: AtomicU64,
    words: [AtomicU64; WORDS],
}

/// A two-way set-associative table of [`Memoized`] answers: a key may sit in either slot of its
/// pair, so two keys that hash alike do not evict each other on every request (with one slot
/// per key, 128 pages in 2048 slots would expect four such pairs).
#[derive(Debug)]
pub struct Memo {
    slots: Box<[Slot]>,
    /// Bits of the slot index (`slots.len()` is `1 << bits`).
    bits: u32,
    /// Advanced by every configuration change the entries do not name as a [`Dep`]; an entry
    /// keeps the low 32 bits of the generation it was made in.
    generation: AtomicU64,
}

/// Multiplier of the slot hash (2^64 / φ, odd).
const FOLD: u64 = 0x9e37_79b9_7f4a_7c15;

impl Memo {
    /// A memo of `entries` slots (rounded up to a power of two, at least 2).
    pub fn new(entries: usize) -> Self {
        let n = entries.max(2).next_power_of_two();
        Self {
            slots: (0..n)
                .map(|_| Slot {
                    seq: AtomicU64::new(0),
                    words: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
            bits: n.trailing_zeros(),
            generation: AtomicU64::new(0),
        }
    }

    /// Slots held (a power of two).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The generation: read it before the lookups whose answer you will [`insert`](Self::insert).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Retires every entry made before now: call it after a change the entries depend on and
    /// do not name as a [`Dep`] (a register that selects the translation mode, say), once the
    /// change is visible.
    pub fn advance(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The two slots `key` may sit in.
    #[inline]
    fn pair(&self, key: MemoKey) -> Option<&[Slot]> {
        let h = (key.id.rotate_left(26) ^ key.page).wrapping_mul(FOLD);
        let index = usize::try_from(h.checked_shr(64 - self.bits).unwrap_or(0)).ok()? & !1;
        self.slots.get(index..index + 2)
    }

    /// The answer remembered for `key`, if it was made in the current generation. The caller
    /// still checks its deps.
    #[inline]
    pub fn get(&self, key: MemoKey) -> Option<Memoized> {
        let generation = self.generation();
        self.pair(key)?.iter().find_map(|slot| Self::read(slot, key, generation))
    }

    /// `slot`'s entry if it is `key`'s, made in `generation`, and was not being written.
    #[inline]
    fn read(slot: &Slot, key: MemoKey, generation: u64) -> Option<Memoized> {
        let seq = slot.seq.load(Ordering::Acquire);
        let word = |i: usize| slot.words.get(i).map_or(0, |w| w.load(Ordering::Relaxed));
        // Another key (or a torn read of one, which is a miss too): no more loads.
        if seq & 1 != 0 || seq == 0 || word(0) != key.id || word(1) != key.page {
            return None;
        }
        let [out, info_gen, d0, d1, d2] = [word(2), word(3), word(4), word(5), word(6)];
        // The words above were read before the sequence is read again (a seqlock's reader).
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != seq || info_gen >> 32 != generation & 0xffff_ffff {
            return None;
        }
        Some(Memoized {
            out,
            info: MemoInfo::unpack(u32::try_from(info_gen & 0xffff_ffff).unwrap_or(0)),
            deps: [Dep::from_word(d0), Dep::from_word(d1), Dep::from_word(d2)],
        })
    }

    /// A trail for a translation of `key` that begins now (the generation is read here, so
    /// make it before any lookup).
    pub fn trail(&self, key: MemoKey) -> MemoTrail {
        MemoTrail { key, generation: self.generation(), config: Default::default() }
    }

    /// The answer remembered for `key`, if the entries it came from are all still cached
    /// unchanged in `first` (VT-d context cache, STE cache), `second` (PASID cache, CD cache;
    /// used only if the answer named an entry of it) and `tlb`; counted and marked referenced
    /// in each as the lookups it stands for would have been, the TLB's misses included.
    #[inline]
    pub fn recall<A: DepCache, B: DepCache, C: DepCache>(
        &self,
        key: MemoKey,
        (first, second, tlb): (&A, &B, &C),
    ) -> Option<(u64, MemoInfo)> {
        let m = self.get(key)?;
        let [Some(d0), d1, Some(d2)] = m.deps else { return None };
        let h0 = first.held(d0)?;
        let h1 = match d1 {
            Some(d) => Some(second.held(d)?),
            None => None,
        };
        let h2 = tlb.held(d2)?;
        let shard = ThreadShard::current();
        first.hit_at(h0, shard);
        if let Some(h) = h1 {
            second.hit_at(h, shard);
        }
        tlb.count_misses(u64::from(m.info.misses), shard);
        tlb.hit_at(h2, shard);
        Some((m.out, m.info))
    }

    /// Remembers the answer of the translation `trail` followed, which hit `tlb` (the TLB
    /// entry's [`Dep`]), with `out` the output of the request's 4K page; `second`: whether its
    /// request path used a second configuration entry (then it must have come from its cache).
    pub fn remember(
        &self,
        trail: &MemoTrail,
        second: bool,
        (out, info): (u64, MemoInfo),
        tlb: Dep,
    ) {
        let [Some(d0), d1] = [trail.config[0].get(), trail.config[1].get()] else { return };
        if second && d1.is_none() {
            return;
        }
        let deps = [Some(d0), d1.filter(|_| second), Some(tlb)];
        self.insert(trail.key, Memoized { out, info, deps }, trail.generation);
    }

    /// Remembers `value` for `key`, made in `generation` (read before the lookups it came
    /// from). Gives up, remembering nothing, if another thread is writing the same slot or the
    /// generation has moved on.
    pub fn insert(&self, key: MemoKey, value: Memoized, generation: u64) {
        if self.generation() != generation {
            return;
        }
        let Some(pair) = self.pair(key) else { return };
        // The slot holding the key already, else the one written fewer times (a heuristic:
        // racing writers may both pick one, and the loser gives up below).
        let holds = |s: &Slot| {
            s.words.first().is_some_and(|w| w.load(Ordering::Relaxed) == key.id)
                && s.words.get(1).is_some_and(|w| w.load(Ordering::Relaxed) == key.page)
        };
        let writes = |s: &Slot| s.seq.load(Ordering::Relaxed) >> 1;
        let slot = match pair {
            [a, b] if holds(b) && !holds(a) => b,
            [a, b] if !holds(a) && writes(b) < writes(a) => b,
            [a, _] => a,
            _ => return,
        };
        let seq = slot.seq.load(Ordering::Relaxed);
        if seq & 1 != 0
            || slot
                .seq
                .compare_exchange(seq, seq | 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // The odd sequence is visible before any word changes (a seqlock's writer).
        fence(Ordering::Release);
        let dep = |d: Option<Dep>| d.map_or(0, Dep::to_word);
        let [d0, d1, d2] = value.deps;
        let info_gen = ((generation & 0xffff_ffff) << 32) | u64::from(value.info.pack());
        let w = [key.id, key.page, value.out, info_gen, dep(d0), dep(d1), dep(d2)];
        for (word, v) in slot.words.iter().zip(w) {
            word.store(v, Ordering::Relaxed);
        }
        slot.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Cache;

    fn deps_of(c: &Cache<u64, u64>, key: u64) -> Option<Dep> {
        c.get_dep(&key).map(|(_, d)| d)
    }

    #[test]
    fn an_entry_answers_its_key_in_its_generation_only() {
        let c: Cache<u64, u64> = Cache::new(4, 2);
        c.insert(7, 70, c.epoch());
        let m = Memo::new(16);
        let key = MemoKey { id: 1, page: 0x1234 };
        let info = MemoInfo { lg2: 12, perms: Perms::ALL, misses: 1 };
        let value = Memoized { out: 0x9000, info, deps: [deps_of(&c, 7), None, None] };
        let g = m.generation();
        m.insert(key, value, g);
        assert_eq!(m.get(key), Some(value));
        assert_eq!(m.get(MemoKey { id: 2, page: 0x1234 }), None);
        assert_eq!(m.get(MemoKey { id: 1, page: 0x1235 }), None);
        m.advance();
        assert_eq!(m.get(key), None, "a configuration change retires it");
        m.insert(key, value, g);
        assert_eq!(m.get(key), None, "an answer from the old generation is not remembered");
    }

    /// Requests that differ in any field the key holds get different keys.
    #[test]
    fn keys_tell_requests_apart() {
        let read = Access::READ;
        let key = |r: u32, p: Option<u32>, a: Access, addr: u64| MemoKey::new(r, p, a, addr);
        let base = key(u32::MAX, Some(0), read, 0x1234_5000);
        let others = [
            key(u32::MAX - 1, Some(0), read, 0x1234_5000),
            key(u32::MAX, None, read, 0x1234_5000),
            key(u32::MAX, Some(0xf_ffff), read, 0x1234_5000),
            key(u32::MAX, Some(0), Access::WRITE, 0x1234_5000),
            key(u32::MAX, Some(0), Access { exec: true, ..read }, 0x1234_5000),
            key(u32::MAX, Some(0), Access { privileged: true, ..read }, 0x1234_5000),
            key(u32::MAX, Some(0), read, 0x1234_6000),
        ];
        assert!(base.is_some());
        for (i, k) in others.iter().enumerate() {
            assert!(k.is_some() && *k != base, "request {i} shares the base's key");
        }
        assert_eq!(
            key(7, Some(0), read, 0x1234_5fff),
            base.map(|b| MemoKey { id: b.id & !0xffff_ffff | 7, ..b })
        );
        assert_eq!(key(0, Some(1 << 20), read, 0), None, "a PASID wider than 20 bits");
    }

    /// Two keys of one pair both stay; a third takes the slot written no more often.
    #[test]
    fn a_pair_holds_two_keys() {
        let m = Memo::new(2);
        let g = m.generation();
        let info = MemoInfo { lg2: 12, perms: Perms::ALL, misses: 0 };
        let entry =
            |n: u64| (MemoKey { id: n, page: n }, Memoized { out: n, info, deps: [None; 3] });
        let [(k1, v1), (k2, v2), (k3, v3)] = [entry(1), entry(2), entry(3)];
        m.insert(k1, v1, g);
        m.insert(k2, v2, g);
        m.insert(k1, v1, g);
        assert_eq!((m.get(k1), m.get(k2)), (Some(v1), Some(v2)), "one evicted the other");
        // 1 was written twice, 2 once: 3 takes 2's slot.
        m.insert(k3, v3, g);
        assert_eq!((m.get(k1), m.get(k2), m.get(k3)), (Some(v1), None, Some(v3)));
    }

    #[test]
    fn deps_stop_holding_when_their_entry_goes_or_changes() {
        let c: Cache<u64, u64> = Cache::new(1, 4);
        let e = c.epoch();
        for k in 0..4 {
            c.insert(k, k, e);
        }
        let d: Vec<Dep> = (0..4).filter_map(|k| deps_of(&c, k)).collect();
        assert!(d.iter().all(|&d| c.held(d).is_some()));
        // Removing key 1 moves keys 2 and 3 down: their positions' occupants change too.
        c.invalidate(|&k, _| k == 1);
        let holds: Vec<bool> = d.iter().map(|&d| c.held(d).is_some()).collect();
        assert_eq!(holds, [true, false, false, false]);
        // Replacing a key's value is a new occupant.
        let d0 = deps_of(&c, 0).unwrap_or(Dep(0));
        c.insert(0, 99, c.epoch());
        assert!(c.held(d0).is_none());
        // hit_at counts a hit exactly as a lookup does.
        let before = c.stats().hits;
        let d = deps_of(&c, 0).unwrap_or(Dep(0));
        let held = c.held(d).expect("the entry is cached");
        c.hit_at(held, ThreadShard::current());
        assert_eq!(c.stats().hits, before + 2);
    }

    /// A way found through a dep is as referenced as one found by a lookup: CLOCK spares it.
    #[test]
    fn hit_at_spares_a_way_from_clock() {
        let c: Cache<u64, u64> = Cache::new(1, 2);
        let e = c.epoch();
        c.insert(0, 0, e);
        c.insert(1, 1, e);
        let d1 = deps_of(&c, 1).unwrap_or(Dep(0));
        // 2 evicts 0 (not referenced); 3 clears 1's bit and evicts 2. Now neither is referenced
        // and the hand points at 1.
        c.insert(2, 2, e);
        c.insert(3, 3, e);
        let held = c.held(d1).expect("1 is cached");
        c.hit_at(held, ThreadShard::current());
        c.insert(4, 4, e);
        assert_eq!(c.get(&3), None, "the way not hit was the victim");
        assert_eq!(c.get(&1), Some(1), "the way hit through its dep was evicted");
    }
}

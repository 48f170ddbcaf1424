//! A [`Cache`] that, when sanitized (strict profile), also keeps the words each entry was
//! built from (see [`sanitize`](crate::sanitize)). Unsanitized, it is the cache: a lookup is
//! the cache's lookup and nothing else.

use std::hash::Hash;

use crate::sanitize::{is_marking, Provenances, Stale, Word};
use crate::{Cache, CacheStats, Inserted};

/// A bounded cache with, when sanitized, each entry's provenance.
#[derive(Debug)]
pub struct Tracked<K, V> {
    cache: Cache<K, V>,
    prov: Option<Provenances<K>>,
}

impl<K: Copy + Eq + Hash, V: Copy> Tracked<K, V> {
    /// `Cache::new(sets, ways)`, keeping provenances if `sanitized`.
    pub fn new(sets: usize, ways: usize, sanitized: bool) -> Self {
        Self { cache: Cache::new(sets, ways), prov: sanitized.then(Provenances::default) }
    }

    /// Whether entries keep their provenance.
    pub fn sanitized(&self) -> bool {
        self.prov.is_some()
    }

    /// The invalidation epoch ([`Cache::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.cache.epoch()
    }

    /// [`Cache::get`].
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        self.cache.get(key)
    }

    /// [`Cache::get_dep`].
    #[inline]
    pub fn get_dep(&self, key: &K) -> Option<(V, crate::Dep)> {
        self.cache.get_dep(key)
    }

    /// [`Cache::held`].
    #[inline]
    pub fn held(&self, dep: crate::Dep) -> Option<crate::Held> {
        self.cache.held(dep)
    }

    /// [`Cache::hit_at`].
    #[inline]
    pub fn hit_at(&self, held: crate::Held, shard: crate::ThreadShard) {
        self.cache.hit_at(held, shard);
    }

    /// [`Cache::count_misses`].
    #[inline]
    pub fn count_misses(&self, n: u64, shard: crate::ThreadShard) {
        self.cache.count_misses(n, shard);
    }

    /// [`Cache::insert`]; a sanitized cache records no words for the entry.
    pub fn insert(&self, key: K, value: V, epoch: u64) -> Inserted {
        self.insert_recorded(key, value, epoch, Vec::new)
    }

    /// [`Cache::insert`], recording the words `words` gives (called only when sanitized and
    /// the entry was stored).
    pub fn insert_recorded(
        &self,
        key: K,
        value: V,
        epoch: u64,
        words: impl FnOnce() -> Vec<Word>,
    ) -> Inserted {
        let (inserted, evicted) = self.cache.insert_evicting(key, value, epoch);
        if let Some(p) = &self.prov {
            p.forget(evicted);
            if inserted == Inserted::Stored {
                p.record(key, words());
            }
        }
        inserted
    }

    /// [`Cache::invalidate`]. Inside [`marking`](crate::sanitize::marking), a sanitized cache
    /// removes nothing: it marks what `selects` picks as waiting for its synchronisation.
    pub fn invalidate(&self, selects: impl Fn(&K, &V) -> bool) -> usize {
        let Some(p) = &self.prov else {
            return self.cache.invalidate(selects);
        };
        let picked = || self.cache.entries().into_iter().filter(|(k, v)| selects(k, v));
        if is_marking() {
            p.mark_pending(picked().map(|(k, _)| k));
            return 0;
        }
        // The keys are collected before the removal: an entry inserted between the two
        // keeps its (new) provenance unless the removal takes it, which the next insert of
        // the key replaces anyway.
        let keys: Vec<K> = picked().map(|(k, _)| k).collect();
        let removed = self.cache.invalidate(selects);
        p.forget(keys);
        removed
    }

    /// [`Cache::invalidate_keys`]: only the sets of the keys `keys` names. A sanitized cache
    /// (strict) searches every entry instead, as [`invalidate`](Self::invalidate) does, since
    /// its provenances and marks follow every entry picked; strict is not where speed is kept.
    pub fn invalidate_keys<I: IntoIterator<Item = K>>(
        &self,
        keys: impl FnOnce() -> Option<I>,
        selects: impl Fn(&K, &V) -> bool,
    ) -> usize {
        match &self.prov {
            None => self.cache.invalidate_keys(keys, selects),
            Some(_) => self.invalidate(selects),
        }
    }

    /// Removes everything.
    pub fn invalidate_all(&self) -> usize {
        self.invalidate(|_, _| true)
    }

    /// The first word of `key`'s entry that changed (see [`Provenances::check`]), and the words
    /// re-read; nothing when not sanitized.
    pub fn check(
        &self,
        key: &K,
        read: impl Fn(u64) -> Option<u64>,
        hw_wrote: impl Fn(&Word, u64) -> bool,
    ) -> (Option<Stale>, u64) {
        match &self.prov {
            Some(p) => p.check(key, read, hw_wrote),
            None => (None, 0),
        }
    }

    /// The words `key`'s entry was built from (none when not sanitized).
    pub fn words(&self, key: &K) -> Option<Vec<Word>> {
        self.prov.as_ref()?.words(key)
    }

    /// [`Cache::stats`].
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// [`Cache::entries`].
    pub fn entries(&self) -> Vec<(K, V)> {
        self.cache.entries()
    }

    /// [`Cache::len`].
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// [`Cache::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// [`Cache::capacity`].
    pub fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    /// Entries with a recorded provenance (0 when not sanitized).
    pub fn recorded(&self) -> usize {
        self.prov.as_ref().map_or(0, Provenances::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanitize::{marking, Origin};
    use sviommu_pgtable::Stage;

    fn w(addr: u64) -> Vec<Word> {
        vec![Word { addr, value: 1, origin: Origin::Table { stage: Stage::S2, level: 1 } }]
    }

    #[test]
    fn provenance_follows_inserts_evictions_and_invalidations() {
        let c: Tracked<u64, u64> = Tracked::new(1, 2, true);
        let e = c.epoch();
        c.insert_recorded(1, 1, e, || w(0x10));
        c.insert_recorded(2, 2, e, || w(0x20));
        c.insert_recorded(3, 3, e, || w(0x30));
        assert_eq!((c.len(), c.recorded()), (2, 2), "the evicted entry's words are forgotten");
        marking(|| {
            assert_eq!(c.invalidate(|&k, _| k == 3), 0);
        });
        assert_eq!(c.len(), 2, "marking removes nothing");
        let (stale, _) = c.check(&3, |_| Some(0), |_, _| false);
        assert!(stale.is_some_and(|s| s.pending));
        c.invalidate(|_, _| true);
        assert_eq!((c.len(), c.recorded()), (0, 0));
        let plain: Tracked<u64, u64> = Tracked::new(1, 2, false);
        plain.insert_recorded(1, 1, plain.epoch(), || unreachable!("not sanitized"));
        assert_eq!(plain.check(&1, |_| None, |_, _| false), (None, 0));
    }
}

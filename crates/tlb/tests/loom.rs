//! The invalidation contract over every interleaving loom can find: a walk that read the tables
//! before an invalidation completed never leaves its old value behind for later lookups.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p sviommu-tlb --test loom --release`.

#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use sviommu_tlb::Cache;

/// "Memory" holds the mapping; the driver changes it and then invalidates, while a walker reads
/// it and inserts what it read. Afterwards the cache may hold the new value or nothing.
#[test]
fn a_walk_racing_an_invalidation_never_leaves_the_old_value() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u64, u64>::new(1, 2));
        let memory = Arc::new(AtomicU64::new(1));

        let walker = {
            let (cache, memory) = (cache.clone(), memory.clone());
            thread::spawn(move || {
                let epoch = cache.epoch();
                let value = memory.load(Ordering::Acquire);
                cache.insert(7, value, epoch);
            })
        };
        // The driver: change the table, then invalidate. When `invalidate` returns, the
        // invalidation has completed.
        memory.store(2, Ordering::Release);
        cache.invalidate(|&k, _| k == 7);
        let after_completion = cache.get(&7);
        assert_ne!(after_completion, Some(1), "a lookup after completion saw the old mapping");

        walker.join().unwrap();
        assert_ne!(cache.get(&7), Some(1), "the old mapping was left behind");
    });
}

/// A lookup through one copy of the sets races an invalidation; once the invalidation has
/// completed, lookups through either copy find the entry gone. (Loom threads take copies by
/// their number: the main thread and the racer copy 0, the invalidator and the late reader 1.)
#[test]
fn an_invalidation_removes_the_entry_from_every_copy() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u64, u64>::new(1, 2));
        cache.insert(7, 1, cache.epoch());
        let invalidator = {
            let cache = cache.clone();
            thread::spawn(move || cache.invalidate(|&k, _| k == 7))
        };
        let racer = {
            let cache = cache.clone();
            thread::spawn(move || {
                let seen = cache.get(&7);
                assert!(seen.is_none() || seen == Some(1));
            })
        };
        assert_eq!(invalidator.join().unwrap(), 1);
        let late = {
            let cache = cache.clone();
            thread::spawn(move || cache.get(&7))
        };
        assert_eq!(late.join().unwrap(), None, "the other copy kept the old entry");
        assert_eq!(cache.get(&7), None, "this copy kept the old entry");
        racer.join().unwrap();
        let stats = cache.stats();
        assert_eq!(stats.hits + stats.misses, 3);
    });
}

/// Two walkers and an eviction-sized set: a hit never sees a half-written way.
#[test]
fn concurrent_inserts_into_a_full_set_keep_whole_entries() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u64, (u64, u64)>::new(1, 1));
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                let cache = cache.clone();
                thread::spawn(move || {
                    let e = cache.epoch();
                    cache.insert(t, (t, t * 100), e);
                    if let Some((a, b)) = cache.get(&t) {
                        assert_eq!((a, b), (t, t * 100));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(cache.len(), 1);
    });
}

/// A range invalidation that searches only the sets its keys name keeps the contract: a walk
/// of a key in the range that races it leaves no old value.
#[test]
fn a_walk_racing_a_range_invalidation_never_leaves_the_old_value() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u64, u64>::new(4, 1));
        let memory = Arc::new(AtomicU64::new(1));
        let walker = {
            let (cache, memory) = (cache.clone(), memory.clone());
            thread::spawn(move || {
                let epoch = cache.epoch();
                let value = memory.load(Ordering::Acquire);
                cache.insert(7, value, epoch);
            })
        };
        memory.store(2, Ordering::Release);
        cache.invalidate_keys(|| Some([6, 7]), |&k, _| (6..=7).contains(&k));
        assert_ne!(cache.get(&7), Some(1), "a lookup after completion saw the old mapping");
        walker.join().unwrap();
        assert_ne!(cache.get(&7), Some(1), "the old mapping was left behind");
    });
}

/// The VT-d unit's pattern: an insert sets a flag (behind a fence) that makes range
/// invalidations search every set, and the invalidation reads it after the epoch has advanced
/// (behind a fence). Either the invalidation sees the flag, or the insert is refused.
#[test]
fn a_flag_read_after_the_epoch_covers_every_insert_it_misses() {
    use loom::sync::atomic::{fence, AtomicBool};
    loom::model(|| {
        let cache = Arc::new(Cache::<u64, u64>::new(4, 1));
        let memory = Arc::new(AtomicU64::new(1));
        let tagged = Arc::new(AtomicBool::new(false));
        let walker = {
            let (cache, memory, tagged) = (cache.clone(), memory.clone(), tagged.clone());
            thread::spawn(move || {
                let epoch = cache.epoch();
                let value = memory.load(Ordering::Acquire);
                tagged.store(true, Ordering::Relaxed);
                fence(Ordering::SeqCst);
                // A key the invalidation's list does not name.
                cache.insert(99, value, epoch);
            })
        };
        memory.store(2, Ordering::Release);
        let keys = || {
            fence(Ordering::SeqCst);
            (!tagged.load(Ordering::Relaxed)).then_some([7])
        };
        cache.invalidate_keys(keys, |_, _| true);
        walker.join().unwrap();
        assert_ne!(cache.get(&99), Some(1), "the old mapping was left behind");
    });
}

/// The tag registry (`TagRegistry`): a walker records its entry's tag, then inserts a key the
/// invalidation can name only through the registry; the invalidation advances the epoch, then
/// reads the tags and searches the named keys' sets. Either it names the walker's key, or the
/// walker's insert is refused.
#[test]
fn a_tag_read_after_the_epoch_covers_every_insert_it_misses() {
    use sviommu_tlb::TagRegistry;
    loom::model(|| {
        // Key (tag, page); four sets, so an unnamed key's set is likely not searched.
        let cache = Arc::new(Cache::<(u64, u64), u64>::new(4, 1));
        let tags = Arc::new(TagRegistry::new(1));
        let memory = Arc::new(AtomicU64::new(1));
        let walker = tagged_walker(&cache, &tags, &memory);
        memory.store(2, Ordering::Release);
        let keys = || Some(tags.tags(0)?.into_iter().map(|tag| (tag, 7)));
        cache.invalidate_keys(keys, |_, _| true);
        walker.join().unwrap();
        assert_ne!(cache.get(&(5, 7)), Some(1), "the old mapping was left behind");
    });
}

/// A walker of group 0: reads the epoch, then "memory", records tag 5 and inserts key (5, 7).
fn tagged_walker(
    cache: &Arc<Cache<(u64, u64), u64>>,
    tags: &Arc<sviommu_tlb::TagRegistry>,
    memory: &Arc<AtomicU64>,
) -> thread::JoinHandle<()> {
    let (cache, tags, memory) = (cache.clone(), tags.clone(), memory.clone());
    thread::spawn(move || {
        let epoch = cache.epoch();
        let value = memory.load(Ordering::Acquire);
        tags.record(0, 5);
        cache.insert((5, 7), value, epoch);
    })
}

/// Forgetting a group's tags before an invalidation that removes all its entries: a walk that
/// began after that invalidation records into the emptied registry, so the next range
/// invalidation still names its key (or refuses its insert).
#[test]
fn a_walk_after_a_forgetting_invalidation_is_named_by_the_next() {
    use sviommu_tlb::TagRegistry;
    bounded().check(|| {
        let cache = Arc::new(Cache::<(u64, u64), u64>::new(4, 1));
        let tags = Arc::new(TagRegistry::new(1));
        let memory = Arc::new(AtomicU64::new(1));
        tags.record(0, 5);
        let walker = tagged_walker(&cache, &tags, &memory);
        memory.store(2, Ordering::Release);
        tags.forget_group(0);
        cache.invalidate(|&(tag, _), _| tag == 5);
        memory.store(3, Ordering::Release);
        let keys = || Some(tags.tags(0)?.into_iter().map(|tag| (tag, 7)));
        cache.invalidate_keys(keys, |_, _| true);
        walker.join().unwrap();
        let left = cache.get(&(5, 7));
        assert!(left.is_none() || left == Some(3), "an old mapping was left behind: {left:?}");
    });
}

/// The memo's entries are eight words each, every access a point where loom may switch
/// threads: its models explore schedules of up to two preemptions (the seqlock's races need
/// one or two), which keeps them to seconds.
fn bounded() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(1);
    b
}

/// The translation memo's seqlock: a reader racing a writer that rewrites the one slot with
/// another key never takes the old key with the new answer (every relaxed word load may see
/// either entry's word in loom's model: one probe is 2^7 cases per schedule).
#[test]
fn a_memo_probe_never_pairs_one_key_with_another_answer() {
    use sviommu_pgtable::Perms;
    use sviommu_tlb::{Memo, MemoInfo, MemoKey, Memoized};
    bounded().check(|| {
        // One pair of slots: 1 and 3 fill it, so 2 overwrites 1's (the one written no more).
        let memo = Arc::new(Memo::new(2));
        let entry = |n: u64| {
            (
                MemoKey { id: n, page: n },
                Memoized {
                    out: n << 12,
                    info: MemoInfo { lg2: 12, perms: Perms::ALL, misses: 0 },
                    deps: [None; 3],
                },
            )
        };
        let (k1, v1) = entry(1);
        let (k2, v2) = entry(2);
        let (k3, v3) = entry(3);
        memo.insert(k1, v1, memo.generation());
        memo.insert(k3, v3, memo.generation());
        let writer = {
            let memo = memo.clone();
            thread::spawn(move || memo.insert(k2, v2, memo.generation()))
        };
        // The entry being overwritten: its key with the new answer would be a torn read.
        if let Some(found) = memo.get(k1) {
            assert_eq!(found, v1, "a probe of the old key answered the new entry's value");
        }
        writer.join().unwrap();
    });
}

/// The invalidation contract through the memo: a translation remembered from a cache entry
/// answers no lookup once the invalidation that removed the entry has completed, even when
/// it was remembered while the invalidation ran.
#[test]
fn a_memo_entry_does_not_outlive_the_cache_entry_it_came_from() {
    use sviommu_pgtable::Perms;
    use sviommu_tlb::{Memo, MemoInfo, MemoKey};
    bounded().check(|| {
        let cache = Arc::new(Cache::<u64, u64>::new(1, 2));
        let memo = Arc::new(Memo::new(1));
        cache.insert(7, 1, cache.epoch());
        let key = MemoKey { id: 7, page: 0 };
        let info = MemoInfo { lg2: 12, perms: Perms::ALL, misses: 0 };
        let translator = {
            let (cache, memo) = (cache.clone(), memo.clone());
            thread::spawn(move || {
                // The configuration entry and the TLB entry are the same one here.
                let trail = memo.trail(key);
                if let Some((out, dep)) = cache.get_dep(&7) {
                    trail.found(0, dep);
                    memo.remember(&trail, false, (out, info), dep);
                }
            })
        };
        cache.invalidate(|&k, _| k == 7);
        // A translation that starts after the invalidation completed.
        let caches = (&*cache, &*cache, &*cache);
        assert_eq!(memo.recall(key, caches), None, "the memo answered from a removed entry");
        translator.join().unwrap();
        assert_eq!(memo.recall(key, caches), None, "the memo kept an answer from a removed entry");
    });
}

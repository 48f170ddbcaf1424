//! The invalidation contract under real threads: several translating threads look keys up
//! (walking "tables" and inserting on a miss) while one thread rewrites the tables and
//! invalidates. Every translation's result is logged with the completion it started after, and
//! checked once all threads have stopped: a translation that began after the invalidation of a
//! rewrite completed never returns a value from before that rewrite. Bounded iterations, a
//! small cache (evictions race the hits and inserts), and the hit/miss figures must add up to
//! exactly the lookups made.

#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;

use sviommu_tlb::Cache;

const KEYS: usize = 24;
const TRANSLATORS: usize = 3;
const LOOKUPS: usize = 6_000;
const REWRITES: u64 = 1_000;

/// One translation: the key, the newest completed rewrite of it when the translation began
/// (its generation), and the generation of the value it returned.
#[derive(Clone, Copy, Debug)]
struct Logged {
    key: usize,
    floor: u64,
    got: u64,
}

#[test]
fn no_translation_after_an_invalidation_completes_returns_the_old_mapping() {
    // 4 sets of 2 ways for 24 keys: most lookups of a hot key race an eviction or an insert.
    let cache: Cache<usize, u64> = Cache::new(4, 2);
    // The tables: each key's current value is the generation of the rewrite that wrote it.
    let tables: Vec<AtomicU64> = (0..KEYS).map(|_| AtomicU64::new(0)).collect();
    // For each key, the generation of its newest rewrite whose invalidation has completed.
    let completed: Vec<AtomicU64> = (0..KEYS).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let start = Barrier::new(TRANSLATORS + 1);

    let logs: Vec<Vec<Logged>> = std::thread::scope(|s| {
        let translators: Vec<_> = (0..TRANSLATORS)
            .map(|t| {
                let (cache, tables, completed, start) = (&cache, &tables, &completed, &start);
                s.spawn(move || {
                    let mut log = Vec::with_capacity(LOOKUPS);
                    // A small xorshift per thread: which keys, in what order.
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                    start.wait();
                    for _ in 0..LOOKUPS {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = usize::try_from(x % KEYS as u64).unwrap_or(0);
                        let floor = completed[key].load(Ordering::Acquire);
                        let got = match cache.get(&key) {
                            Some(v) => v,
                            None => {
                                // A walk: the epoch first, then the tables, then the insert.
                                let epoch = cache.epoch();
                                let v = tables[key].load(Ordering::Acquire);
                                // A walk takes time: let the rewriter run inside it.
                                std::thread::yield_now();
                                cache.insert(key, v, epoch);
                                v
                            }
                        };
                        log.push(Logged { key, floor, got });
                    }
                    log
                })
            })
            .collect();

        let (cache, tables, completed, stop, start) = (&cache, &tables, &completed, &stop, &start);
        let rewriter = s.spawn(move || {
            start.wait();
            for generation in 1..=REWRITES {
                let key = usize::try_from(generation.wrapping_mul(7) % KEYS as u64).unwrap_or(0);
                // The driver: rewrite the entry, invalidate it, and only then call it done.
                tables[key].store(generation, Ordering::Release);
                match generation % 3 {
                    0 => cache.invalidate(|&k, _| k == key),
                    1 => cache.invalidate(|&k, _| k % 2 == key % 2),
                    _ => cache.invalidate_all(),
                };
                completed[key].store(generation, Ordering::Release);
                std::thread::yield_now();
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        });
        let logs = translators.into_iter().map(|h| h.join().expect("a translator")).collect();
        stop.store(true, Ordering::Relaxed);
        rewriter.join().expect("the rewriter");
        logs
    });

    let mut stale = Vec::new();
    for (t, log) in logs.iter().enumerate() {
        assert_eq!(log.len(), LOOKUPS);
        stale.extend(log.iter().filter(|l| l.got < l.floor).map(|l| (t, *l)));
        // And every value is one the rewriter wrote to that key (or its first).
        for l in log {
            let written_here = l.got == 0 || l.got.wrapping_mul(7) % KEYS as u64 == l.key as u64;
            assert!(written_here, "key {} returned another key's value: {l:?}", l.key);
        }
    }
    assert!(stale.is_empty(), "{} stale translations, first: {:?}", stale.len(), stale.first());

    // A rewrite that happened during the run was seen by someone: the log is not all zeros.
    assert!(logs.iter().flatten().any(|l| l.got > 0), "the rewriter never raced a lookup");
    let stats = cache.stats();
    assert_eq!(stats.hits + stats.misses, (TRANSLATORS * LOOKUPS) as u64, "{stats:?}");
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
}

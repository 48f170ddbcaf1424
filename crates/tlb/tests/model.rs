//! The cache against a model with no capacity limit: a lookup finds the latest value stored for
//! its key since that key was last invalidated, or nothing (evicted); never anything else.

use std::collections::HashMap;

use proptest::prelude::*;
use sviommu_tlb::Cache;

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, u32),
    Get(u8),
    InvalidateKey(u8),
    InvalidateEven,
    /// A range invalidation naming its keys: `len` keys from `first`.
    InvalidateRange(u8, u8),
    StaleInsert(u8, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        4 => (0u8..24).prop_map(Op::Get),
        1 => (0u8..24).prop_map(Op::InvalidateKey),
        1 => Just(Op::InvalidateEven),
        1 => (0u8..24, 0u8..6).prop_map(|(k, n)| Op::InvalidateRange(k, n)),
        1 => (0u8..24, any::<u32>()).prop_map(|(k, v)| Op::StaleInsert(k, v)),
    ]
}

proptest! {
    #[test]
    fn lookups_never_return_a_value_the_model_does_not_hold(
        sets in 1usize..4, ways in 1usize..4, ops in prop::collection::vec(op(), 1..200),
    ) {
        let cache: Cache<u8, u32> = Cache::new(sets, ways);
        let mut model: HashMap<u8, u32> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    cache.insert(k, v, cache.epoch());
                    model.insert(k, v);
                }
                Op::Get(k) => {
                    if let Some(v) = cache.get(&k) {
                        prop_assert_eq!(Some(&v), model.get(&k));
                    }
                }
                Op::InvalidateKey(k) => {
                    cache.invalidate(|&key, _| key == k);
                    model.remove(&k);
                }
                Op::InvalidateEven => {
                    cache.invalidate(|&key, _| key % 2 == 0);
                    model.retain(|k, _| k % 2 != 0);
                }
                Op::InvalidateRange(first, len) => {
                    let range = first..first.saturating_add(len);
                    cache.invalidate_keys(|| Some(range.clone()), |key, _| range.contains(key));
                    model.retain(|k, _| !range.contains(k));
                }
                Op::StaleInsert(k, v) => {
                    // A walk that began before an invalidation that has since completed.
                    let epoch = cache.epoch();
                    cache.invalidate(|_, _| false);
                    cache.insert(k, v, epoch);
                }
            }
            prop_assert!(cache.len() <= cache.capacity());
        }
    }
}

proptest! {
    /// A range invalidation over a large cache removes every entry in the range, whether it
    /// searched only the range's sets or (a range as long as the cache has sets) all of them,
    /// and leaves every other entry where it was.
    #[test]
    fn range_invalidation_removes_the_range_and_nothing_else(
        sets in 1usize..64,
        keys in prop::collection::vec(0u32..2048, 1..256),
        first in 0u32..2048,
        len in 0u32..80,
    ) {
        let cache: Cache<u32, u32> = Cache::new(sets, 4);
        for &k in &keys {
            cache.insert(k, k ^ 0x5a5a, cache.epoch());
        }
        let before: HashMap<u32, u32> = cache.entries().into_iter().collect();
        let range = first..first + len;
        let removed = cache.invalidate_keys(|| Some(range.clone()), |k, _| range.contains(k));
        let after: HashMap<u32, u32> = cache.entries().into_iter().collect();
        let expected: HashMap<u32, u32> =
            before.iter().filter(|(k, _)| !range.contains(k)).map(|(&k, &v)| (k, v)).collect();
        prop_assert_eq!(removed, before.len() - expected.len());
        prop_assert_eq!(after, expected);
        prop_assert_eq!(cache.stats().invalidated, removed as u64);
    }
}

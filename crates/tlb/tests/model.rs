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
    StaleInsert(u8, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        4 => (0u8..24).prop_map(Op::Get),
        1 => (0u8..24).prop_map(Op::InvalidateKey),
        1 => Just(Op::InvalidateEven),
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

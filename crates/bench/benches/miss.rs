//! Translations with every cache off: a cold walk each time, the structures included (issue 15:
//! a cold nested 4K miss, as a ratio to the lookup, and its reads, which the models count).
//!
//! `cargo bench -p sviommu-bench --bench miss` prints, before timing, each configuration's
//! reads per translation (machine-independent), then times one batch of cold translations.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sviommu_bench::{baseline, baseline_batch, Config, Rig, PAGES};
use sviommu_smmuv3::hw::CacheSizes;
use sviommu_vtd::hw::CacheParams;

fn bench_cold(c: &mut Criterion) {
    let mut g = c.benchmark_group("cold_miss");
    let table = baseline();
    g.bench_function("hashmap_baseline", |b| {
        b.iter(|| black_box(baseline_batch(black_box(&table))))
    });
    for config in Config::ALL {
        let rig = Rig::with_caches(config, Some(CacheParams::NONE), Some(CacheSizes::NONE));
        let once = rig.batch();
        assert_eq!(once.faults, 0, "{config:?}");
        println!(
            "{}: {:.1} reads per translation, caches off",
            config.name(),
            once.reads as f64 / PAGES as f64
        );
        g.bench_function(config.name(), |b| b.iter(|| black_box(rig.batch())));
    }
    g.finish();
}

criterion_group!(benches, bench_cold);
criterion_main!(benches);

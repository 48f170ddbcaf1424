//! IOTLB hits through each model's public `translate`, beside a std `HashMap<u64, u64>` lookup
//! of the same page numbers in the same run (issue 15's target: at most 1.5x the lookup).
//!
//! `cargo bench -p sviommu-bench --bench hit`: each bench times one warm batch of
//! [`PAGES`](sviommu_bench::PAGES) translations; the figure to report is
//! `configuration / hashmap_baseline`. `NAME/no_memo` times the same hits with the translation
//! memo off (every hit through the caches' lookups), for the memo's share.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sviommu_bench::{baseline, baseline_batch, Config, Rig};

fn bench_hits(c: &mut Criterion) {
    let mut g = c.benchmark_group("iotlb_hit");
    let table = baseline();
    g.bench_function("hashmap_baseline", |b| {
        b.iter(|| black_box(baseline_batch(black_box(&table))))
    });
    for config in Config::ALL {
        let rig = Rig::new(config);
        let warm = rig.batch();
        assert_eq!((warm.faults, rig.batch().reads), (0, 0), "{config:?}: a warm batch must hit");
        g.bench_function(config.name(), |b| b.iter(|| black_box(rig.batch())));
        // The same hits through the caches' lookups alone: what the memo saves.
        let rig = Rig::without_memo(config);
        assert_eq!((rig.batch().faults, rig.batch().reads), (0, 0), "{config:?}: must hit");
        g.bench_function(format!("{}/no_memo", config.name()), |b| {
            b.iter(|| black_box(rig.batch()))
        });
    }
    g.finish();
}

/// Page-selective invalidations (descriptor or command plus its wait, through the driver) of
/// 1, 16 and 128 pages with the TLB holding 256, 1024 and 4096 entries of the domain: the cost
/// should follow the pages in the range and stay flat in the TLB's size (issue 15's two
/// curves; before range invalidation it grew with the size: every set was searched). The
/// tagged rows spread the entries over four PASIDs (VT-d scalable mode, second stage) or four
/// ASIDs (SMMUv3, invalidated by CMD_TLBI_NH_VAA), tags the invalidation does not name.
fn bench_invalidation(c: &mut Criterion) {
    use sviommu_smmuv3::hw::CacheSizes;
    use sviommu_vtd::hw::{CacheGeometry, CacheParams};
    let mut g = c.benchmark_group("page_invalidation");
    for entries in [256u64, 1024, 4096] {
        let ways = 8;
        let sets = usize::try_from(entries).unwrap_or(usize::MAX) / ways;
        let vtd = CacheParams { iotlb: CacheGeometry::new(sets, ways), ..CacheParams::default() };
        let smmu = CacheSizes { tlb: sets * ways, ..CacheSizes::default() };
        let configs = [
            Config::VtdLegacySecondStage,
            Config::SmmuStage2,
            Config::VtdScalableSecondStage,
            Config::SmmuStage1Asids,
        ];
        for config in configs {
            let mut rig = Rig::with_caches(config, Some(vtd), Some(smmu));
            rig.fill(entries);
            for pages in [1u64, 16, 128] {
                g.bench_function(format!("{}/{entries}/{pages}", config.name()), |b| {
                    b.iter(|| rig.invalidate_pages(pages));
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench_hits, bench_invalidation);
criterion_main!(benches);

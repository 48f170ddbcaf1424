//! IOTLB hits from one and from two threads (issue 15's target: two threads at least 1.8x the
//! throughput of one on a 2-core machine; the baseline's own scaling is the ceiling).
//!
//! `cargo bench -p sviommu-bench --bench scale`: `NAME/T` is the wall time for every one of T
//! threads to translate one warm batch; throughput scaling is `2 * time(NAME/1) / time(NAME/2)`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sviommu_bench::{baseline, baseline_batch, Config, Rig};

/// Runs `work` `iters` times on each of `threads` threads at once; the wall time from the
/// common start to the last thread's end.
fn concurrently(threads: usize, iters: u64, work: &(dyn Fn() + Sync)) -> Duration {
    let start = Barrier::new(threads);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        work();
                    }
                    t0.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a bench thread")).collect()
    });
    times.into_iter().max().unwrap_or_default()
}

fn bench_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("hit_scaling");
    let table = baseline();
    let rigs: Vec<(Config, Rig)> =
        [Config::VtdNested, Config::VtdLegacySecondStage, Config::SmmuNested]
            .into_iter()
            .map(|config| {
                let rig = Rig::new(config);
                rig.batch();
                (config, rig)
            })
            .collect();
    for threads in [1usize, 2] {
        g.bench_function(format!("hashmap_baseline/{threads}"), |b| {
            b.iter_custom(|iters| {
                concurrently(threads, iters, &|| {
                    black_box(baseline_batch(black_box(&table)));
                })
            });
        });
        for (config, rig) in &rigs {
            g.bench_function(format!("{}/{threads}", config.name()), |b| {
                b.iter_custom(|iters| {
                    concurrently(threads, iters, &|| {
                        black_box(rig.batch());
                    })
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_scaling);
criterion_main!(benches);

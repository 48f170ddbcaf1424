//! A VMSAv8-64 stage-1 walk (4K granule, 48-bit VA, start level 0) by `sviommu-pgtable`
//! against the `aarch64-paging` crate's own walk of the tables it built, over the same table
//! bytes, beside the `HashMap` baseline.
//!
//! `cargo bench -p sviommu-bench --bench vmsa_walk`. The crate has no one-address translate:
//! its walk is `walk_range` over one page with a callback (what `sviommu-testsupport`'s
//! `crate_walk` wraps), and it finds a table's memory through the test's `Translation`, a
//! search over the few tables this map has. `pgtable` reads through a bounds-checked
//! `PhysMemory`, checks what the architecture faults on (reserved encodings, output size, the
//! access flag, permissions), and counts its reads. The ratio keeps those differences; the
//! `walk_instructions` example counts instructions per walk of both.

mod vmsa_fixture;

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use vmsa_fixture::{pages, VmsaFixture};

fn bench_vmsa(c: &mut Criterion) {
    let fixture = VmsaFixture::new();
    let map: HashMap<u64, u64> = pages().map(|va| (va >> 12, va >> 12)).collect();
    let mut g = c.benchmark_group("vmsa_s1_4k_walk");
    g.bench_function("hashmap_baseline", |b| {
        b.iter(|| {
            pages().map(|va| map.get(&(black_box(va) >> 12)).copied().unwrap_or(0)).sum::<u64>()
        })
    });
    g.bench_function("aarch64_paging_walk_range", |b| {
        b.iter(|| {
            pages()
                .map(|va| fixture.aarch64_paging(black_box(va)).unwrap_or(0))
                .fold(0, u64::wrapping_add)
        })
    });
    g.bench_function("pgtable_walk", |b| {
        b.iter(|| {
            pages().map(|va| fixture.pgtable(black_box(va)).unwrap_or(0)).fold(0, u64::wrapping_add)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_vmsa);
criterion_main!(benches);

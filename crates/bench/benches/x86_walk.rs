//! An x86-64 4-level walk by `sviommu-pgtable` against the `x86_64` crate's `translate_addr`
//! over the very same table bytes (issue 15's target: at most 1.0x the crate), beside the
//! `HashMap` baseline.
//!
//! `cargo bench -p sviommu-bench --bench x86_walk`. The crate reads tables through a pointer
//! offset into process memory and checks nothing the hardware would fault on (reserved bits,
//! MAXPHYADDR); `pgtable` reads through a bounds-checked `PhysMemory` and does check them, and
//! counts its reads. The comparison keeps those differences: they are the gap to state. The
//! `walk_instructions` example counts instructions per walk of both, which no machine's load
//! moves (BENCHMARKS.md).

#![allow(unsafe_code)]

mod x86_fixture;

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sviommu_pgtable::{Access, Walk};
use x86_64::structures::paging::Translate;
use x86_64::VirtAddr;
use x86_fixture::{pages, X86Fixture};

fn bench_x86(c: &mut Criterion) {
    let mut fixture = X86Fixture::new();
    let map: HashMap<u64, u64> = pages().map(|va| (va >> 12, va >> 12)).collect();
    let mut g = c.benchmark_group("x86_4level_walk");
    g.bench_function("hashmap_baseline", |b| {
        b.iter(|| {
            pages().map(|va| map.get(&(black_box(va) >> 12)).copied().unwrap_or(0)).sum::<u64>()
        })
    });
    let (host, tables, crate_view) = fixture.walkers();
    g.bench_function("x86_64_crate_translate_addr", |b| {
        b.iter(|| {
            pages()
                .map(|va| {
                    crate_view
                        .translate_addr(VirtAddr::new(black_box(va)))
                        .map_or(0, |p| p.as_u64())
                })
                .fold(0, u64::wrapping_add)
        })
    });
    g.bench_function("pgtable_walk", |b| {
        b.iter(|| {
            pages()
                .map(|va| {
                    tables
                        .translate(host, black_box(va), Access::READ)
                        .outcome
                        .map_or(0, |l| l.output)
                })
                .fold(0, u64::wrapping_add)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_x86);
criterion_main!(benches);

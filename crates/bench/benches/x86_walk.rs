//! An x86-64 4-level walk by `sviommu-pgtable` against the `x86_64` crate's `translate_addr`
//! over the very same table bytes (issue 15's target: at most 1.0x the crate), beside the
//! `HashMap` baseline.
//!
//! `cargo bench -p sviommu-bench --bench x86_walk`. The crate reads tables through a pointer
//! offset into process memory and checks nothing the hardware would fault on (reserved bits,
//! MAXPHYADDR); `pgtable` reads through a bounds-checked `PhysMemory` and does check them, and
//! counts its reads. The comparison keeps those differences: they are the gap to state.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sviommu_memory::{FrameAllocator, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, Walk};
use x86_64::structures::paging::{OffsetPageTable, PageTable, Translate};
use x86_64::VirtAddr;

const PAGES: u64 = 512;
const TABLES_HPA: u64 = 0x10_0000;
/// Table frames: 256 tables is far more than 512 pages in one 1G region need.
const TABLE_FRAMES: usize = 256;

fn pages() -> impl Iterator<Item = u64> {
    (0..PAGES).map(|i| 0x4000_0000 + i * 0x1000)
}

fn bench_x86(c: &mut Criterion) {
    let len = (TABLE_FRAMES * 0x1000) as u64;
    let host = HostMemory::new(&[(Hpa(TABLES_HPA), len)]).expect("one region");
    let mut frames = FrameAllocator::new(&[(Hpa(TABLES_HPA), len)]);
    let tables = X86Paging::create(&host, &mut frames, Levels::Four).expect("root");
    for va in pages() {
        tables.map(&host, &mut frames, va, va, 12, X86Attrs::ALL).expect("map");
    }

    // The same bytes in process memory, one 4K-aligned `PageTable` per frame, for the crate.
    let mut copy: Vec<PageTable> = (0..TABLE_FRAMES).map(|_| PageTable::new()).collect();
    for (i, t) in copy.iter_mut().enumerate() {
        let mut bytes = [0u8; 0x1000];
        host.read(Hpa(TABLES_HPA + i as u64 * 0x1000), &mut bytes).expect("inside the region");
        for (e, word) in t.iter_mut().zip(bytes.chunks_exact(8)) {
            let v = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            e.set_addr(
                x86_64::PhysAddr::new(v & 0x000f_ffff_ffff_f000),
                x86_64::structures::paging::PageTableFlags::from_bits_retain(
                    v & !0x000f_ffff_ffff_f000,
                ),
            );
        }
    }
    let base = copy.as_mut_ptr();
    let root_index = usize::try_from((tables.root - TABLES_HPA) / 0x1000).expect("small");
    let offset = (base as u64).wrapping_sub(TABLES_HPA);
    // SAFETY: `base` points at `TABLE_FRAMES` live, 4K-aligned page tables that `copy` owns and
    // nothing else touches until the end of this function; the crate reads table `pa` at
    // `pa + offset`, which for every table address the walk can meet (all inside
    // [TABLES_HPA, TABLES_HPA + len), built by `pgtable` above) is one of them.
    let crate_tables =
        unsafe { OffsetPageTable::new(&mut *base.add(root_index), VirtAddr::new(offset)) };

    for va in pages() {
        let ours = tables.translate(&host, va, Access::READ).outcome.map(|l| l.output);
        let theirs = crate_tables.translate_addr(VirtAddr::new(va)).map(|p| p.as_u64());
        assert_eq!(ours.ok(), theirs, "both walks agree on {va:#x}");
    }

    let map: HashMap<u64, u64> = pages().map(|va| (va >> 12, va >> 12)).collect();
    let mut g = c.benchmark_group("x86_4level_walk");
    g.bench_function("hashmap_baseline", |b| {
        b.iter(|| {
            pages().map(|va| map.get(&(black_box(va) >> 12)).copied().unwrap_or(0)).sum::<u64>()
        })
    });
    g.bench_function("x86_64_crate_translate_addr", |b| {
        b.iter(|| {
            pages()
                .map(|va| {
                    crate_tables
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
                        .translate(&host, black_box(va), Access::READ)
                        .outcome
                        .map_or(0, |l| l.output)
                })
                .fold(0, u64::wrapping_add)
        })
    });
    g.finish();
    // The crate's view of `copy` is not used past this point; only now may `copy` go.
    drop(copy);
}

criterion_group!(benches, bench_x86);
criterion_main!(benches);

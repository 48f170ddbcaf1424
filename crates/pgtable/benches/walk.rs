//! Walk cost per format, as a ratio to a `HashMap` lookup of the same pages measured in the same
//! run (the machine-independent figure is the read count, which the tests pin).
//!
//! `cargo bench -p sviommu-pgtable --bench walk` prints ns per walk for each group member; the
//! ratio is `format / hashmap_baseline`.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa};
use sviommu_pgtable::vmsa::{Granule, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, Nested, Walk};

const PAGES: u64 = 512;
const GUEST_HPA: u64 = 0x1000_0000;
const GUEST_LEN: u64 = 0x100_0000;

fn pages() -> impl Iterator<Item = u64> {
    (0..PAGES).map(|i| 0x4000_0000 + i * 0x1000)
}

fn bench_walks(c: &mut Criterion) {
    let host =
        HostMemory::new(&[(Hpa(0x10_0000), 0x100_0000), (Hpa(GUEST_HPA), GUEST_LEN)]).unwrap();
    let mut frames = FrameAllocator::new(&[(Hpa(0x10_0000), 0x100_0000)]);

    // Baseline: the same page -> frame map as a hash table.
    let table: HashMap<u64, u64> = pages().map(|va| (va >> 12, va >> 12)).collect();

    let x86_4 = X86Paging::create(&host, &mut frames, Levels::Four).unwrap();
    let x86_5 = X86Paging::create(&host, &mut frames, Levels::Five).unwrap();
    for va in pages() {
        x86_4.map(&host, &mut frames, va, va, 12, X86Attrs::ALL).unwrap();
        x86_5.map(&host, &mut frames, va, va, 12, X86Attrs::ALL).unwrap();
    }

    let vtd_ss: Vec<VtdSecondStage> =
        [vtd_ss::Levels::Three, vtd_ss::Levels::Four, vtd_ss::Levels::Five]
            .into_iter()
            .map(|levels| {
                let t = VtdSecondStage::create(&host, &mut frames, levels).unwrap();
                for va in pages() {
                    t.map(&host, &mut frames, va, va, 12, VtdSsAttrs::ALL).unwrap();
                }
                t
            })
            .collect();

    // VMSAv8-64 stage 1 with each granule (48-bit inputs: 4, 4 and 3 levels) and stage 2 with a
    // 4K granule starting at level 0.
    let vmsa_s1: Vec<(VmsaS1, &str)> =
        [(Granule::K4, "vmsa_s1_4k"), (Granule::K16, "vmsa_s1_16k"), (Granule::K64, "vmsa_s1_64k")]
            .into_iter()
            .map(|(tg, name)| {
                let t = VmsaS1::create(&host, &mut frames, VmsaS1::new(0, tg, 16)).unwrap();
                for va in pages() {
                    // Each granule maps its own page size; probe addresses stay inside them.
                    let base = va & !((1u64 << tg.lg2()) - 1);
                    let _ = t.map(&host, &mut frames, base, base, tg.lg2(), S1Attrs::ALL);
                }
                (t, name)
            })
            .collect();
    let vmsa_s2 = VmsaS2::create(&host, &mut frames, VmsaS2::new(0, Granule::K4, 16, 2)).unwrap();
    for va in pages() {
        vmsa_s2.map(&host, &mut frames, va, va, 12, S2Attrs::ALL).unwrap();
    }

    // Nested: x86 stage 1 (VT-d first stage) in guest RAM over VT-d second stage, 4K pages.
    let s2 = VtdSecondStage::create(&host, &mut frames, vtd_ss::Levels::Four).unwrap();
    let mut gpa = 0;
    while gpa < GUEST_LEN {
        s2.map(&host, &mut frames, gpa, GUEST_HPA + gpa, 12, VtdSsAttrs::ALL).unwrap();
        gpa += 0x1000;
    }
    let ram = GuestRam::new(
        &host,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_LEN, hpa: Hpa(GUEST_HPA) }],
    );
    let mut guest_frames = FrameAllocator::new(&[(Gpa(0), 0x40_0000)]);
    let s1 = X86Paging::create(&ram, &mut guest_frames, Levels::Four).unwrap();
    for (i, va) in pages().enumerate() {
        s1.map(&ram, &mut guest_frames, va, 0x80_0000 + i as u64 * 0x1000, 12, X86Attrs::ALL)
            .unwrap();
    }
    let nested = Nested { s1: &s1, s2: &s2 };

    // Nested on Arm: VMSAv8-64 4K stage 1 in guest RAM over a 4K stage 2 (4 + 4 levels).
    let arm_s2 = VmsaS2::create(&host, &mut frames, VmsaS2::new(0, Granule::K4, 16, 2)).unwrap();
    let mut ipa = 0;
    while ipa < GUEST_LEN {
        arm_s2.map(&host, &mut frames, ipa, GUEST_HPA + ipa, 12, S2Attrs::ALL).unwrap();
        ipa += 0x1000;
    }
    let mut arm_guest_frames = FrameAllocator::new(&[(Gpa(0x40_0000), 0x40_0000)]);
    let arm_s1 =
        VmsaS1::create(&ram, &mut arm_guest_frames, VmsaS1::new(0, Granule::K4, 16)).unwrap();
    for (i, va) in pages().enumerate() {
        arm_s1
            .map(&ram, &mut arm_guest_frames, va, 0x80_0000 + i as u64 * 0x1000, 12, S1Attrs::ALL)
            .unwrap();
    }
    let arm_nested = Nested { s1: &arm_s1, s2: &arm_s2 };

    let mut group = c.benchmark_group("walk_4k");
    group.bench_function("hashmap_baseline", |b| {
        b.iter(|| pages().map(|va| table[&black_box(va >> 12)]).sum::<u64>())
    });
    group.bench_function("x86_4level", |b| {
        b.iter(|| walk_all(&x86_4, &host));
    });
    group.bench_function("x86_5level", |b| {
        b.iter(|| walk_all(&x86_5, &host));
    });
    for (t, name) in vtd_ss.iter().zip(["vtd_ss_3level", "vtd_ss_4level", "vtd_ss_5level"]) {
        group.bench_function(name, |b| {
            b.iter(|| walk_all(t, &host));
        });
    }
    for (t, name) in &vmsa_s1 {
        group.bench_function(*name, |b| {
            b.iter(|| walk_all(t, &host));
        });
    }
    group.bench_function("vmsa_s2_4k", |b| {
        b.iter(|| walk_all(&vmsa_s2, &host));
    });
    group.bench_function("nested_x86_over_vtd_ss", |b| {
        b.iter(|| walk_all(&nested, &host));
    });
    group.bench_function("nested_vmsa_s1_over_s2_4k", |b| {
        b.iter(|| walk_all(&arm_nested, &host));
    });
    group.finish();
}

fn walk_all<W: Walk>(w: &W, mem: &HostMemory) -> u64 {
    pages()
        .map(|va| w.translate(mem, black_box(va), Access::READ).outcome.map_or(0, |l| l.output))
        .sum()
}

criterion_group!(benches, bench_walks);
criterion_main!(benches);

//! Walks that consult and fill caches (paging-structure caches, a stage-2 leaf cache) read
//! less when warm and translate exactly as cold walks do.

use std::collections::HashMap;

use proptest::prelude::*;
use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{
    Access, Build, Direct, Leaf, Nested, ResumePoint, Stage, Walk, WalkCtx, WalkHints,
};

/// A toy model of the caches a hardware model keeps: one paging-structure cache per stage
/// keyed by the input bits above each table's span, and a stage-2 leaf cache by page.
#[derive(Default)]
struct Caches {
    tables: HashMap<(Stage, u8, u64), ResumePoint>,
    s2_leaves: HashMap<u64, Leaf>,
    leaf_hits: u32,
    resumes: u32,
}

impl WalkHints for Caches {
    fn leaf(&mut self, stage: Stage, input: u64) -> Option<Leaf> {
        if stage != Stage::S2 {
            return None;
        }
        let cached = self.s2_leaves.get(&(input >> 12))?;
        self.leaf_hits += 1;
        Some(Leaf { output: cached.output & !0xfff | input & 0xfff, ..*cached })
    }
    fn resume(&mut self, stage: Stage, input: u64) -> Option<ResumePoint> {
        // The deepest table cached for this input.
        let best = self
            .tables
            .iter()
            .filter(|(&(s, _, prefix), p)| s == stage && input >> p.span_lg2 == prefix)
            .map(|(_, p)| *p)
            .max_by_key(|p| p.depth);
        self.resumes += u32::from(best.is_some());
        best
    }
    fn learned_table(&mut self, stage: Stage, input: u64, point: ResumePoint) {
        self.tables.insert((stage, point.depth, input >> point.span_lg2), point);
    }
    fn learned_leaf(&mut self, stage: Stage, input: u64, leaf: &Leaf) {
        // Only 4K stage-2 leaves, to keep the toy simple.
        if stage == Stage::S2 && leaf.page_lg2 == 12 {
            self.s2_leaves.insert(input >> 12, *leaf);
        }
    }
}

const GUEST_HPA: u64 = 0x1000_0000;
const GUEST_LEN: u64 = 0x100_0000;

fn nested_setup() -> (HostMemory, X86Paging, VtdSecondStage) {
    let host =
        HostMemory::new(&[(Hpa(0x10_0000), 0x40_0000), (Hpa(GUEST_HPA), GUEST_LEN)]).unwrap();
    let mut frames = FrameAllocator::new(&[(Hpa(0x10_0000), 0x40_0000)]);
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
    for page in 0..64u64 {
        s1.map(&ram, &mut guest_frames, page << 12, 0x80_0000 + (page << 12), 12, X86Attrs::ALL)
            .unwrap();
    }
    (host, s1, s2)
}

fn cached_walk<W: Walk>(w: &W, host: &HostMemory, caches: &mut Caches, va: u64) -> (Leaf, u32) {
    let mut cx = WalkCtx::with_hints(host, (), caches);
    let leaf = w.walk(&mut cx, &Direct, va, Access::READ).unwrap();
    (leaf, cx.reader.reads())
}

#[test]
fn warm_single_stage_walk_reads_only_the_leaf() {
    let (host, _, s2) = nested_setup();
    let mut caches = Caches::default();
    let (cold, reads) = cached_walk(&s2, &host, &mut caches, 0x5123);
    assert_eq!((cold.output, reads), (GUEST_HPA + 0x5123, 4));
    // Same 2M region: the PDE-level table is cached, only the PTE is read.
    caches.s2_leaves.clear();
    let (warm, reads) = cached_walk(&s2, &host, &mut caches, 0x6123);
    assert_eq!((warm.output, reads), (GUEST_HPA + 0x6123, 1));
    assert_eq!(caches.resumes, 1);
}

#[test]
fn caches_fill_during_the_first_nested_walk_and_serve_the_next() {
    let (host, s1, s2) = nested_setup();
    let nested = Nested { s1: &s1, s2: &s2 };
    assert_eq!(nested.translate(&host, 0x1123, Access::READ).reads, 24, "no caches: 24");
    let mut caches = Caches::default();
    // Even the first walk profits: the guest's four tables sit in one 2M region of guest RAM,
    // so after the first stage-2 walk (4 reads) each later table fetch resumes at the stage-2
    // PT (1 read). 4 + 1, then 3 x (1 + 1), then the output's stage-2 walk resumes at the PD
    // it shares with nothing yet cached below (2): 13.
    let (cold, reads) = cached_walk(&nested, &host, &mut caches, 0x1123);
    assert_eq!((cold.output, reads), (GUEST_HPA + 0x80_1123, 13));
    // Another page under the same stage-1 page table: resume at the stage-1 PT, whose GPA's
    // stage-2 translation is cached; read the PTE; the output's stage-2 walk resumes at its PT.
    let (warm, reads) = cached_walk(&nested, &host, &mut caches, 0x2123);
    assert_eq!((warm.output, reads), (GUEST_HPA + 0x80_2123, 2));
    // The same page again: everything but the stage-1 PTE is cached.
    let (again, reads) = cached_walk(&nested, &host, &mut caches, 0x2456);
    assert_eq!((again.output, reads), (GUEST_HPA + 0x80_2456, 1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Whatever the caches hold (filled by earlier walks of the same tables), a cached walk
    /// translates every address exactly as a cold one.
    #[test]
    fn cached_walks_agree_with_cold_walks(vas in prop::collection::vec(0u64..0x50_000, 1..40)) {
        let (host, s1, s2) = nested_setup();
        let nested = Nested { s1: &s1, s2: &s2 };
        let mut caches = Caches::default();
        for va in vas {
            let cold = nested.translate(&host, va, Access::READ);
            let mut cx = WalkCtx::with_hints(&host, (), &mut caches);
            let warm = nested.walk(&mut cx, &Direct, va, Access::READ);
            prop_assert_eq!(warm.map(|l| l.output), cold.outcome.map(|l| l.output));
            prop_assert!(cx.reader.reads() <= cold.reads);
        }
    }
}

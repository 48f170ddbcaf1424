//! The nested composition counts its reads: x86-64 tables as both stages (the composition does
//! not care which format each stage uses; the per-format nested tests pair real stage-2 formats).

use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, FaultKind, Nested, S1Fetch, Stage, Walk, WalkStep};

const GUEST_RAM_HPA: u64 = 0x1000_0000;
const GUEST_RAM_LEN: u64 = 0x100_0000;

struct Setup {
    host: HostMemory,
    s1: X86Paging,
    s2: X86Paging,
}

/// Guest RAM is GPA [0, 16M) at HPA 256M; stage 2 maps it with pages of `s2_lg2`. The guest maps
/// GVA 0x4000_0000 to GPA 0x80_0000 with a page of `s1_lg2`.
fn setup(s1_lg2: u8, s2_lg2: u8) -> Setup {
    let host = HostMemory::new(&[(Hpa(0x10_0000), 0x10_0000), (Hpa(GUEST_RAM_HPA), GUEST_RAM_LEN)])
        .unwrap();
    let mut host_frames = FrameAllocator::new(&[(Hpa(0x10_0000), 0x10_0000)]);
    let s2 = X86Paging::create(&host, &mut host_frames, Levels::Four).unwrap();
    let mut gpa = 0;
    while gpa < GUEST_RAM_LEN {
        s2.map(&host, &mut host_frames, gpa, GUEST_RAM_HPA + gpa, s2_lg2, X86Attrs::ALL).unwrap();
        gpa += 1 << s2_lg2;
    }
    let ram = GuestRam::new(
        &host,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_RAM_LEN, hpa: Hpa(GUEST_RAM_HPA) }],
    );
    // The guest's tables come from the low 4M of its RAM; its data page is at 8M.
    let mut guest_frames = FrameAllocator::new(&[(Gpa(0), 0x40_0000)]);
    let s1 = X86Paging::create(&ram, &mut guest_frames, Levels::Four).unwrap();
    s1.map(&ram, &mut guest_frames, 0x4000_0000, 0x80_0000, s1_lg2, X86Attrs::ALL).unwrap();
    Setup { host, s1, s2 }
}

#[test]
fn cold_4k_over_4k_reads_24_entries() {
    let t = setup(12, 12);
    let nested = Nested { s1: &t.s1, s2: &t.s2 };
    let (w, steps) =
        nested.translate_observed(&t.host, 0x4000_0123, Access::READ, Vec::<WalkStep>::new());
    let leaf = w.outcome.unwrap();
    assert_eq!(leaf.output, GUEST_RAM_HPA + 0x80_0123);
    assert_eq!(leaf.page_lg2, 12);
    assert_eq!(w.reads, 24);
    assert_eq!(steps.len(), 24);
    // The order is the 2D walk's: 4 stage-2 reads for each stage-1 entry, then the output.
    let first_s1 = steps.iter().position(|s| s.level == 4 && s.table_addr == t.s1.root).unwrap();
    assert_eq!(first_s1, 4);
}

#[test]
fn large_pages_in_either_stage_read_less() {
    // Stage 2 in 2M pages: each stage-2 walk reads 3, so 4 x (3 + 1) + 3 = 19.
    let t = setup(12, 21);
    let w = Nested { s1: &t.s1, s2: &t.s2 }.translate(&t.host, 0x4000_0123, Access::READ);
    assert_eq!((w.reads, w.outcome.unwrap().page_lg2), (19, 12));
    // Stage 1 in a 2M page: 3 stage-1 entries, so 3 x (4 + 1) + 4 = 19, page size 4K from stage 2.
    let t = setup(21, 12);
    let w = Nested { s1: &t.s1, s2: &t.s2 }.translate(&t.host, 0x4000_0123, Access::READ);
    assert_eq!((w.reads, w.outcome.unwrap().page_lg2), (19, 12));
    // Both 2M: 3 x (3 + 1) + 3 = 15, and the translation is a 2M one.
    let t = setup(21, 21);
    let w = Nested { s1: &t.s1, s2: &t.s2 }.translate(&t.host, 0x4000_0123, Access::READ);
    assert_eq!((w.reads, w.outcome.unwrap().page_lg2), (15, 21));
}

#[test]
fn stage_2_hole_under_a_stage_1_table_names_the_stage_1_level() {
    let t = setup(12, 12);
    // Find the GPA of the guest's level-2 table (the PD; its entries are the steps read from
    // guest RAM) and unmap it from stage 2.
    let (_, steps) = Nested { s1: &t.s1, s2: &t.s2 }.translate_observed(
        &t.host,
        0x4000_0000,
        Access::READ,
        Vec::<WalkStep>::new(),
    );
    let pd_entry_gpa =
        steps.iter().find(|s| s.level == 2 && s.mem_addr >= GUEST_RAM_HPA).unwrap().table_addr;
    t.s2.unmap(&t.host, pd_entry_gpa & !0xfff, 0x1000).unwrap();
    let w = Nested { s1: &t.s1, s2: &t.s2 }.translate(&t.host, 0x4000_0000, Access::READ);
    let f = w.outcome.unwrap_err();
    assert_eq!(
        (f.kind, f.level, f.s1_fetch, f.input),
        (FaultKind::Translation, 1, Some(S1Fetch { level: 2, write: false }), pd_entry_gpa)
    );
    assert!(f.to_string().ends_with("(fetching the stage-1 level-2 table)"), "{f}");
    // Stage-1 PML4E, PDPTE walks (5 reads each) and the failed stage-2 walk of the PD entry (4).
    assert_eq!(w.reads, 14);
}

#[test]
fn read_only_stage_2_table_page_refuses_the_accessed_flag_update() {
    let t = setup(12, 12);
    let root_gpa = t.s1.root;
    t.s2.unmap(&t.host, root_gpa, 0x1000).unwrap();
    let mut frames = FrameAllocator::new(&[(Hpa(0x18_0000), 0x8_0000)]);
    t.s2.map(
        &t.host,
        &mut frames,
        root_gpa,
        GUEST_RAM_HPA + root_gpa,
        12,
        X86Attrs { writable: false, ..X86Attrs::ALL },
    )
    .unwrap();
    let w = Nested { s1: &t.s1, s2: &t.s2 }.translate(&t.host, 0x4000_0000, Access::READ);
    let f = w.outcome.unwrap_err();
    assert_eq!(
        (f.kind, f.s1_fetch, f.stage),
        (FaultKind::Permission, Some(S1Fetch { level: 4, write: true }), Stage::S2)
    );
    assert!(f.to_string().ends_with("(updating the stage-1 level-4 table entry)"), "{f}");
}

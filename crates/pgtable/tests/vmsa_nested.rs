//! VMSAv8-64 stage 1 over stage 2, both 4K with four levels: read counts of the 2D walk, and
//! stage-2 faults while fetching stage-1 tables.

use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa};
use sviommu_pgtable::vmsa::{Granule, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::{Access, Build, FaultKind, Nested, S1Fetch, Stage, Walk, WalkStep};

/// Host tables live at HPA 1M..2M; guest RAM is IPA [0, 16M) at HPA 256M.
const HOST_TABLES: u64 = 0x10_0000;
const RAM_HPA: u64 = 0x1000_0000;
const RAM_LEN: u64 = 0x100_0000;
/// The guest maps this VA to IPA 8M.
const VA: u64 = 0x4000_0000;
const DATA_IPA: u64 = 0x80_0000;

struct Setup {
    host: HostMemory,
    s1: VmsaS1,
    s2: VmsaS2,
    host_frames: FrameAllocator<Hpa>,
}

/// Stage 2 (T0SZ = 16, SL0 = 2: level 0, four levels) maps guest RAM with leaves of `s2_lg2`;
/// stage 1 (T0SZ = 16, four levels) maps `VA` with a leaf of `s1_lg2`.
fn setup(s1_lg2: u8, s2_lg2: u8) -> Setup {
    let host = HostMemory::new(&[(Hpa(HOST_TABLES), 0x10_0000), (Hpa(RAM_HPA), RAM_LEN)]).unwrap();
    let mut host_frames = FrameAllocator::new(&[(Hpa(HOST_TABLES), 0x10_0000)]);
    let s2 = VmsaS2::create(&host, &mut host_frames, VmsaS2::new(0, Granule::K4, 16, 2)).unwrap();
    assert_eq!(s2.start_level(), 0);
    let mut ipa = 0;
    while ipa < RAM_LEN {
        s2.map(&host, &mut host_frames, ipa, RAM_HPA + ipa, s2_lg2, S2Attrs::ALL).unwrap();
        ipa += 1 << s2_lg2;
    }
    let ram = GuestRam::new(
        &host,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: RAM_LEN, hpa: Hpa(RAM_HPA) }],
    );
    // The guest builds its tables in the low 4M of its RAM, with the same builders.
    let mut guest_frames = FrameAllocator::new(&[(Gpa(0), 0x40_0000)]);
    let s1 = VmsaS1::create(&ram, &mut guest_frames, VmsaS1::new(0, Granule::K4, 16)).unwrap();
    assert_eq!(s1.start_level(), 0);
    s1.map(&ram, &mut guest_frames, VA, DATA_IPA, s1_lg2, S1Attrs::ALL).unwrap();
    Setup { host, s1, s2, host_frames }
}

fn nested(t: &Setup) -> Nested<'_, VmsaS1, VmsaS2> {
    Nested { s1: &t.s1, s2: &t.s2 }
}

#[test]
fn cold_4k_over_4k_reads_24_entries() {
    let t = setup(12, 12);
    let (w, steps) =
        nested(&t).translate_observed(&t.host, VA | 0x123, Access::READ, Vec::<WalkStep>::new());
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.page_lg2), (RAM_HPA + DATA_IPA + 0x123, 12));
    assert_eq!((w.reads, steps.len()), (24, 24));
    // 4 stage-2 reads before each stage-1 read, 4 more for the output.
    let stages: Vec<Stage> = steps.iter().map(|s| s.stage).collect();
    for (i, stage) in stages.iter().enumerate() {
        let want = if i < 20 && i % 5 == 4 { Stage::S1 } else { Stage::S2 };
        assert_eq!(*stage, want, "step {i}");
    }
    let s1_levels: Vec<i8> =
        steps.iter().filter(|s| s.stage == Stage::S1).map(|s| s.level).collect();
    assert_eq!(s1_levels, [0, 1, 2, 3]);
}

#[test]
fn a_2m_block_in_either_stage_reads_less() {
    // Stage 2 in 2M blocks: 4 x (3 + 1) + 3 = 19.
    let t = setup(12, 21);
    let w = nested(&t).translate(&t.host, VA | 0x123, Access::READ);
    assert_eq!((w.reads, w.outcome.unwrap().page_lg2), (19, 12));
    // Stage 1 in a 2M block: 3 x (4 + 1) + 4 = 19.
    let t = setup(21, 12);
    let w = nested(&t).translate(&t.host, VA | 0x123, Access::READ);
    let leaf = w.outcome.unwrap();
    assert_eq!((w.reads, leaf.page_lg2, leaf.level), (19, 12, 2));
    assert_eq!(leaf.output, RAM_HPA + DATA_IPA + 0x123);
    // Both: 3 x (3 + 1) + 3 = 15, a 2M translation.
    let t = setup(21, 21);
    let w = nested(&t).translate(&t.host, VA | 0x123, Access::READ);
    assert_eq!((w.reads, w.outcome.unwrap().page_lg2), (15, 21));
}

#[test]
fn stage_2_fault_on_a_stage_1_table_names_its_level() {
    let t = setup(12, 12);
    let (_, steps) =
        nested(&t).translate_observed(&t.host, VA, Access::READ, Vec::<WalkStep>::new());
    // The IPA of the stage-1 level-2 descriptor; take its page out of stage 2.
    let l2_ipa = steps.iter().find(|s| s.stage == Stage::S1 && s.level == 2).unwrap().table_addr;
    t.s2.unmap(&t.host, l2_ipa & !0xfff, 0x1000).unwrap();
    let w = nested(&t).translate(&t.host, VA, Access::READ);
    let f = w.outcome.unwrap_err();
    assert_eq!(
        (f.stage, f.kind, f.level, f.s1_fetch, f.input),
        (Stage::S2, FaultKind::Translation, 3, Some(S1Fetch { level: 2, write: false }), l2_ipa)
    );
    // Levels 0 and 1 (5 reads each), then the failing 4-read stage-2 walk.
    assert_eq!(w.reads, 14);
}

#[test]
fn stage_2_read_only_table_page_refuses_the_access_flag_update() {
    let mut t = setup(12, 12);
    let root_ipa = t.s1.ttb;
    // Clear AF in the stage-1 leaf, so the walk has to write it back.
    let ram = GuestRam::new(
        &t.host,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: RAM_LEN, hpa: Hpa(RAM_HPA) }],
    );
    let (_, steps) =
        nested(&t).translate_observed(&t.host, VA, Access::READ, Vec::<WalkStep>::new());
    let leaf_step = steps.iter().find(|s| s.stage == Stage::S1 && s.level == 3).unwrap();
    let leaf_ipa = leaf_step.table_addr;
    sviommu_memory::PhysMemory::write_u64(&ram, Gpa(leaf_ipa), leaf_step.raw & !(1 << 10)).unwrap();
    // Stage 2 maps the page holding that descriptor read-only.
    t.s2.unmap(&t.host, leaf_ipa & !0xfff, 0x1000).unwrap();
    t.s2.map(
        &t.host,
        &mut t.host_frames,
        leaf_ipa & !0xfff,
        RAM_HPA + (leaf_ipa & !0xfff),
        12,
        S2Attrs::READ_ONLY,
    )
    .unwrap();
    let f = nested(&t).translate(&t.host, VA, Access::READ).outcome.unwrap_err();
    assert_eq!(
        (f.stage, f.kind, f.s1_fetch),
        (Stage::S2, FaultKind::Permission, Some(S1Fetch { level: 3, write: true }))
    );
    // Without hardware AF management the stage-1 walk reports the flag itself.
    let s1 = VmsaS1 { ha: false, ..t.s1 };
    let f = Nested { s1: &s1, s2: &t.s2 }.translate(&t.host, VA, Access::READ).outcome.unwrap_err();
    assert_eq!((f.stage, f.kind, f.level), (Stage::S1, FaultKind::AccessFlag, 3));
    assert_ne!(root_ipa, leaf_ipa & !0xfff);
}

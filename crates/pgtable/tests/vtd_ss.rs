//! VT-d second-stage tables, checked four ways: descriptor words typed from the spec (VT-d rev
//! 4.x §9.8) and walked; a flat-map oracle against random map/unmap/restrict sequences; random
//! bytes as tables; and nested walks under an x86-64 first stage.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::select;
use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vtd_ss::{Levels, VtdSecondStage, VtdSsAttrs, SLLPS_1G, SLLPS_2M};
use sviommu_pgtable::x86::{self, X86Attrs, X86Paging};
use sviommu_pgtable::{
    radix, Access, Build, Fault, FaultKind, Leaf, MapError, Nested, Perms, S1Fetch, Stage, Walk,
    WalkStep,
};

// ---------------------------------------------------------------------------------------------
// Spec vectors: every descriptor word below is typed from the §9.8 entry formats, not produced
// by the encoder. Bits used: 0 R, 1 W, 2 X, 7 PS, 8 A, 9 D, 11 SNP, 62 reserved (was TM),
// HAW-1:12 address, 51:HAW reserved.
// ---------------------------------------------------------------------------------------------

/// 1 MiB of host memory at 1 MiB: room for hand-built tables and nothing else.
fn table_mem() -> HostMemory {
    HostMemory::new(&[(Hpa(0x10_0000), 0x10_0000)]).unwrap()
}

fn put(mem: &HostMemory, words: &[(u64, u64)]) {
    for &(addr, raw) in words {
        mem.write_u64(Hpa(addr), raw).unwrap();
    }
}

fn word(mem: &HostMemory, addr: u64) -> u64 {
    mem.read_u64(Hpa(addr)).unwrap()
}

fn s2_fault(level: i8, kind: FaultKind, input: u64) -> Fault {
    Fault { stage: Stage::S2, level, kind, input, s1_fetch: None, granted: None }
}

fn leaf(output: u64, page_lg2: u8, level: i8, perms: Perms) -> Leaf {
    Leaf { output, page_lg2, level, perms, global: false, dirty: true }
}

const RWX: Perms = Perms::rwx(true, true, true);

/// Index 1 at every level of a 4-level table (bits 47:39, 38:30, 29:21, 20:12), offset 0x123.
const IN4: u64 = 0x0000_0080_4020_1123;
/// Entry 1 of SS-PML4 at 0x10_0000, SS-PDPT at 0x10_1000, SS-PD at 0x10_2000, SS-PT at 0x10_3000.
const PML4E4: u64 = 0x10_0008;
const PDPE4: u64 = 0x10_1008;
const PDE4: u64 = 0x10_2008;
const PTE4: u64 = 0x10_3008;

/// SS-PML4E -> SS-PDPT, SS-PDPE -> SS-PD, SS-PDE -> SS-PT, each R=W=1, PS=0.
const TABLES4: [(u64, u64); 3] = [
    (PML4E4, 0x0000_0000_0010_1003),
    (PDPE4, 0x0000_0000_0010_2003),
    (PDE4, 0x0000_0000_0010_3003),
];

fn four_level(mem: &HostMemory, pte: u64) -> VtdSecondStage {
    put(mem, &TABLES4);
    put(mem, &[(PTE4, pte)]);
    VtdSecondStage::new(0x10_0000, Levels::Four)
}

#[test]
fn vector_4k_page_in_a_4_level_table() {
    let mem = table_mem();
    // SS-PTE: R=W=1, 4K page at 0xabcd_e000.
    let ss = four_level(&mem, 0x0000_0000_abcd_e003);
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, RWX)));
    assert_eq!((w.reads, w.updates), (4, 0));
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, RWX)));
}

#[test]
fn vector_2m_and_1g_superpages() {
    let mem = table_mem();
    put(&mem, &TABLES4[..2]);
    // SS-PDE with PS=1: R=W=1, 2M page at 0x4000_0000.
    put(&mem, &[(PDE4, 0x0000_0000_4000_0083)]);
    let ss = VtdSecondStage::new(0x10_0000, Levels::Four);
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert_eq!(w.outcome, Ok(leaf(0x4000_1123, 21, 2, RWX)));
    assert_eq!(w.reads, 3);

    // SS-PDPE with PS=1: R=W=1, 1G page at 0x8000_0000.
    put(&mem, &[(PDPE4, 0x0000_0000_8000_0083)]);
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Ok(leaf(0x8020_1123, 30, 3, RWX)));
    assert_eq!(w.reads, 2);
}

#[test]
fn vector_3_level_table_starts_at_an_ss_pdpt() {
    let mem = table_mem();
    put(
        &mem,
        &[
            // AW=1: the root is an SS-PDPT; entry 1 -> SS-PD 0x10_1000 -> SS-PT 0x10_2000.
            (0x10_0008, 0x0000_0000_0010_1003),
            (0x10_1008, 0x0000_0000_0010_2003),
            (0x10_2008, 0x0000_0001_2345_6003),
            // Entry 2 of the root: a 1G page at 0xc000_0000, read-only.
            (0x10_0010, 0x0000_0000_c000_0081),
        ],
    );
    let ss = VtdSecondStage::new(0x10_0000, Levels::Three);
    let w = ss.translate(&mem, 0x4020_1123, Access::READ);
    assert_eq!(w.outcome, Ok(leaf(0x1_2345_6123, 12, 1, RWX)));
    assert_eq!(w.reads, 3);
    let w = ss.translate(&mem, 0x8000_0123, Access::READ);
    let ro = Perms::rwx(true, false, true);
    assert_eq!(w.outcome, Ok(leaf(0xc000_0123, 30, 3, ro)));
    assert_eq!(w.reads, 1);
    // 39-bit AGAW: bit 39 is beyond it.
    let w = ss.translate(&mem, 1 << 39, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(3, FaultKind::InputRange, 1 << 39)));
    assert_eq!(w.reads, 0);
}

/// Index 1 at every level of a 5-level table, offset 0x123.
const IN5: u64 = 0x0001_0080_4020_1123;
/// SS-PML5 0x10_0000 -> SS-PML4 0x10_1000 -> SS-PDPT 0x10_2000 -> SS-PD 0x10_3000 -> SS-PT
/// 0x10_4000, entry 1 of each, R=W=1; the SS-PTE maps 0xabcd_e000.
const PATH5: [(u64, u64); 5] = [
    (0x10_0008, 0x0000_0000_0010_1003),
    (0x10_1008, 0x0000_0000_0010_2003),
    (0x10_2008, 0x0000_0000_0010_3003),
    (0x10_3008, 0x0000_0000_0010_4003),
    (0x10_4008, 0x0000_0000_abcd_e003),
];

#[test]
fn vector_5_level_table_and_the_largest_output() {
    let mem = table_mem();
    put(&mem, &PATH5);
    // SS-PTE: the top page below 2^52 (HAW 52: bits 51:12 are all address).
    put(&mem, &[(0x10_4008, 0x000f_ffff_ffff_f003)]);
    let ss = VtdSecondStage::new(0x10_0000, Levels::Five);
    let w = ss.translate(&mem, IN5, Access::READ);
    assert_eq!(w.outcome, Ok(leaf(0x000f_ffff_ffff_f123, 12, 1, RWX)));
    assert_eq!(w.reads, 5);
    let w = ss.translate(&mem, 1 << 57, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(5, FaultKind::InputRange, 1 << 57)));
    // 4-level: bit 48 is beyond the 48-bit AGAW although a 5-level table would index it.
    let ss4 = VtdSecondStage::new(0x10_0000, Levels::Four);
    let w = ss4.translate(&mem, IN5, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(4, FaultKind::InputRange, IN5)));
    assert_eq!(w.reads, 0);
}

#[test]
fn vector_input_is_checked_against_the_smaller_of_mgaw_and_agaw() {
    let mem = table_mem();
    let mut ss = four_level(&mem, 0x0000_0000_abcd_e003);
    ss.mgaw = 40;
    // IN4 has bit 39 set: inside 40 bits.
    assert!(ss.translate(&mem, IN4, Access::READ).outcome.is_ok());
    let beyond = IN4 | (1 << 40);
    let w = ss.translate(&mem, beyond, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(4, FaultKind::InputRange, beyond)));
    assert_eq!(w.reads, 0);
}

#[test]
fn vector_read_only_and_write_only_pages() {
    let mem = table_mem();
    // SS-PTE R=1 W=0.
    let ss = four_level(&mem, 0x0000_0000_abcd_e001);
    let ro = Perms::rwx(true, false, true);
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, ro)));
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert_eq!(
        w.outcome,
        Err(granting(s2_fault(1, FaultKind::Permission, IN4), Perms::rwx(true, false, true)))
    );
    assert_eq!(w.reads, 4);

    // SS-PTE R=0 W=1: second stage allows write-only pages (§9.8 has no R-implies rule).
    put(&mem, &[(PTE4, 0x0000_0000_abcd_e002)]);
    let wo = Perms::rwx(false, true, false);
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, wo)));
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(
        w.outcome,
        Err(granting(s2_fault(1, FaultKind::Permission, IN4), Perms::rwx(false, true, false)))
    );
}

#[test]
fn vector_table_entries_restrict_everything_below() {
    let mem = table_mem();
    let ss = four_level(&mem, 0x0000_0000_abcd_e003);
    // SS-PDE W=0: the RW page below it is read-only.
    put(&mem, &[(PDE4, 0x0000_0000_0010_3001)]);
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert_eq!(
        w.outcome,
        Err(granting(s2_fault(1, FaultKind::Permission, IN4), Perms::rwx(true, false, true)))
    );
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, Perms::rwx(true, false, true))));
    // SS-PML4E R=0 as well: nothing below is readable.
    put(&mem, &[(PML4E4, 0x0000_0000_0010_1002)]);
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(
        w.outcome,
        Err(granting(s2_fault(1, FaultKind::Permission, IN4), Perms::rwx(false, false, false)))
    );
}

#[test]
fn vector_not_present_entries_have_no_other_bits_checked() {
    let mem = table_mem();
    let mut ss = four_level(&mem, 0x0000_0000_abcd_e003);
    // SS-PDE with every bit set except R and W: not present (X is ignored without execute
    // support), so the reserved bits in it do not matter.
    put(&mem, &[(PDE4, 0xffff_ffff_ffff_fffc)]);
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(2, FaultKind::Translation, IN4)));
    assert_eq!(w.reads, 3);
    // With execute requests, X makes the entry present, and then its reserved bits fault.
    ss.execute = true;
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(2, FaultKind::Reserved, IN4)));
    // An all-zero SS-PML4E.
    put(&mem, &[(PML4E4, 0)]);
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(4, FaultKind::Translation, IN4)));
    assert_eq!(w.reads, 1);
}

#[test]
fn vector_reserved_bits_fault_at_their_level() {
    // (level, entry address, word, what is wrong with it); HAW 48, no snoop control.
    let cases: [(i8, u64, u64, &str); 14] = [
        (5, 0x10_0008, 0x0000_0000_0010_1083, "PS in an SS-PML5E"),
        (5, 0x10_0008, 0x4000_0000_0010_1003, "bit 62 in an SS-PML5E"),
        (5, 0x10_0008, 0x0001_0000_0010_1003, "address bit 48 = HAW"),
        (4, 0x10_1008, 0x0000_0000_0010_2083, "PS in an SS-PML4E"),
        (4, 0x10_1008, 0x0000_0000_0010_2803, "bit 11 in an SS-PML4E"),
        (3, 0x10_2008, 0x0000_0000_0010_3803, "bit 11 in a table SS-PDPE"),
        (3, 0x10_2008, 0x0008_0000_0010_3003, "address bit 51 in an SS-PDPE"),
        (3, 0x10_2008, 0x0000_0000_a000_0083, "bit 29 in a 1G page's address"),
        (2, 0x10_3008, 0x4000_0000_0010_4003, "bit 62 in a table SS-PDE"),
        (2, 0x10_3008, 0x0000_0000_4000_1083, "bit 12 in a 2M page's address"),
        (2, 0x10_3008, 0x0004_0000_0010_4003, "address bit 50 in an SS-PDE"),
        (1, 0x10_4008, 0x4000_0000_abcd_e003, "bit 62 (TM before rev 3.2)"),
        (1, 0x10_4008, 0x0000_0000_abcd_e803, "SNP without snoop control"),
        (1, 0x10_4008, 0x0001_0000_abcd_e003, "address bit 48 in an SS-PTE"),
    ];
    let mut ss = VtdSecondStage::new(0x10_0000, Levels::Five);
    ss.haw = 48;
    ss.snoop = false;
    {
        let mem = table_mem();
        put(&mem, &PATH5);
        let w = ss.translate(&mem, IN5, Access::READ);
        assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, RWX)));
    }
    for (level, at, raw, what) in cases {
        let mem = table_mem();
        put(&mem, &PATH5);
        put(&mem, &[(at, raw)]);
        let w = ss.translate(&mem, IN5, Access::READ);
        assert_eq!(w.outcome, Err(s2_fault(level, FaultKind::Reserved, IN5)), "{what}");
        assert_eq!(w.reads, u32::try_from(6 - level).unwrap(), "{what}");
    }
}

#[test]
fn vector_ignored_bits_do_not_fault() {
    let mem = table_mem();
    // SS-PML4E with bits 63, 61:52, 10, 9, 8, 6:3 and 2 set: all ignored here (no SSADE, no
    // execute support).
    put(&mem, &TABLES4);
    put(&mem, &[(PML4E4, 0xbff0_0000_0010_177f)]);
    // SS-PTE with the same plus bit 7 (ignored in an SS-PTE), bits 6:3 (EMT, IPAT) and SNP.
    put(&mem, &[(PTE4, 0xbff0_0000_abcd_efff)]);
    let ss = VtdSecondStage::new(0x10_0000, Levels::Four);
    assert!(ss.snoop);
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, RWX)));
    // Snoop control makes bit 11 SNP in a leaf only; in a table entry it stays reserved.
    put(&mem, &[(PDE4, 0x0000_0000_0010_3803)]);
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert_eq!(w.outcome, Err(s2_fault(2, FaultKind::Reserved, IN4)));
}

#[test]
fn vector_ps_needs_sllps_support() {
    let mem = table_mem();
    put(&mem, &TABLES4[..2]);
    // SS-PDE with PS=1: a 2M page at 0x4000_0000.
    put(&mem, &[(PDE4, 0x0000_0000_4000_0083)]);
    let mut ss = VtdSecondStage::new(0x10_0000, Levels::Four);
    ss.sllps = 0;
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(2, FaultKind::Reserved, IN4)));
    ss.sllps = SLLPS_2M;
    assert!(ss.translate(&mem, IN4, Access::READ).outcome.is_ok());
    // SS-PDPE with PS=1: a 1G page, without 1G support.
    put(&mem, &[(PDPE4, 0x0000_0000_8000_0083)]);
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(3, FaultKind::Reserved, IN4)));
    ss.sllps = SLLPS_2M | SLLPS_1G;
    assert!(ss.translate(&mem, IN4, Access::READ).outcome.is_ok());
}

#[test]
fn vector_table_outside_memory_is_an_external_abort() {
    let mem = table_mem();
    put(&mem, &TABLES4);
    // SS-PDPE -> an SS-PD at 0x4000_0000, where no memory is.
    put(&mem, &[(PDPE4, 0x0000_0000_4000_0003)]);
    let ss = VtdSecondStage::new(0x10_0000, Levels::Four);
    let w = ss.translate(&mem, IN4, Access::READ);
    let abort = FaultKind::ExternalAbort { addr: 0x4000_0008 };
    assert_eq!(w.outcome, Err(s2_fault(2, abort, IN4)));
    assert_eq!(w.reads, 3);
    // The root itself outside memory.
    let ss = VtdSecondStage::new(0x8000_0000, Levels::Four);
    let w = ss.translate(&mem, IN4, Access::READ);
    let abort = FaultKind::ExternalAbort { addr: 0x8000_0008 };
    assert_eq!(w.outcome, Err(s2_fault(4, abort, IN4)));
    assert_eq!(w.reads, 1);
}

#[test]
fn vector_addresses_beyond_haw_are_reserved_fields() {
    let mem = table_mem();
    let mut ss = four_level(&mem, 0x0000_000f_ffff_f003);
    ss.haw = 36;
    // The top page below 2^36 is fine.
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Ok(leaf(0x000f_ffff_f123, 12, 1, RWX)));
    // SS-PTE naming 2^36: bit 36 is at HAW, a reserved bit; VT-d has no address-size fault.
    put(&mem, &[(PTE4, 0x0000_0010_0000_0003)]);
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(1, FaultKind::Reserved, IN4)));
    // A table address at 2^36 likewise.
    put(&mem, &[(PDE4, 0x0000_0010_0000_0003)]);
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(2, FaultKind::Reserved, IN4)));
    // A root pointer beyond HAW is a bad context/PASID entry: nothing is read.
    ss.root = 0x0000_0010_0000_0000;
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(4, FaultKind::Config, IN4)));
    assert_eq!(w.reads, 0);
}

#[test]
fn vector_access_and_dirty_flags_only_with_ssade() {
    let mem = table_mem();
    let mut ss = four_level(&mem, 0x0000_0000_abcd_e003);
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert!(w.outcome.is_ok());
    assert_eq!(w.updates, 0);
    assert_eq!(word(&mem, PML4E4), 0x0000_0000_0010_1003);
    assert_eq!(word(&mem, PTE4), 0x0000_0000_abcd_e003);

    ss.ad = true;
    let w = ss.translate(&mem, IN4, Access::READ);
    assert!(w.outcome.is_ok());
    assert_eq!((w.reads, w.updates), (4, 4));
    // A (bit 8) in every entry used, no D on a read.
    assert_eq!(word(&mem, PML4E4), 0x0000_0000_0010_1103);
    assert_eq!(word(&mem, PDPE4), 0x0000_0000_0010_2103);
    assert_eq!(word(&mem, PDE4), 0x0000_0000_0010_3103);
    assert_eq!(word(&mem, PTE4), 0x0000_0000_abcd_e103);
    // A write sets D (bit 9) in the leaf only.
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert!(w.outcome.is_ok());
    assert_eq!(w.updates, 1);
    assert_eq!(word(&mem, PDE4), 0x0000_0000_0010_3103);
    assert_eq!(word(&mem, PTE4), 0x0000_0000_abcd_e303);

    // A write to a read-only page faults and leaves the leaf alone; the tables it used get A.
    let mem = table_mem();
    let mut ss = four_level(&mem, 0x0000_0000_abcd_e001);
    ss.ad = true;
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert_eq!(
        w.outcome,
        Err(granting(s2_fault(1, FaultKind::Permission, IN4), Perms::rwx(true, false, true)))
    );
    assert_eq!(word(&mem, PDE4), 0x0000_0000_0010_3103);
    assert_eq!(word(&mem, PTE4), 0x0000_0000_abcd_e001);
}

#[test]
fn vector_x_is_honoured_only_with_execute_support() {
    let mem = table_mem();
    put(
        &mem,
        &[
            (PML4E4, 0x0000_0000_0010_1007),
            (PDPE4, 0x0000_0000_0010_2007),
            // SS-PDE: R=W=1, X=0.
            (PDE4, 0x0000_0000_0010_3003),
            (PTE4, 0x0000_0000_abcd_e007),
        ],
    );
    let mut ss = VtdSecondStage::new(0x10_0000, Levels::Four);
    // Without execute support, X is ignored and an execute request is checked as a read.
    let w = ss.translate(&mem, IN4, Access::EXEC);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, RWX)));

    ss.execute = true;
    let w = ss.translate(&mem, IN4, Access::EXEC);
    assert_eq!(
        w.outcome,
        Err(granting(s2_fault(1, FaultKind::Permission, IN4), Perms::rwx(true, true, false)))
    );
    let w = ss.translate(&mem, IN4, Access::READ);
    let rw = Perms::rwx(true, true, false);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, rw)));
    put(&mem, &[(PDE4, 0x0000_0000_0010_3007)]);
    let w = ss.translate(&mem, IN4, Access::EXEC);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, RWX)));

    // SS-PTE X=1 only: an execute-only page with execute support, not present without.
    put(&mem, &[(PTE4, 0x0000_0000_abcd_e004)]);
    let w = ss.translate(&mem, IN4, Access::EXEC);
    let xo = Perms::rwx(false, false, true);
    assert_eq!(w.outcome, Ok(leaf(0xabcd_e123, 12, 1, xo)));
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(
        w.outcome,
        Err(granting(s2_fault(1, FaultKind::Permission, IN4), Perms::rwx(false, false, true)))
    );
    ss.execute = false;
    let w = ss.translate(&mem, IN4, Access::EXEC);
    assert_eq!(w.outcome, Err(s2_fault(1, FaultKind::Translation, IN4)));
}

// ---------------------------------------------------------------------------------------------
// The builder writes the spec's words.
// ---------------------------------------------------------------------------------------------

/// Table words name a 4K-aligned table inside `mem` and carry exactly `low` in bits 11:0.
fn table_word(mem: &HostMemory, raw: u64, low: u64) -> u64 {
    assert_eq!(raw & 0xfff, low, "{raw:#x}");
    let next = raw & !0xfff;
    assert!(mem.contains(Hpa(next), 0x1000), "{raw:#x}");
    next
}

#[test]
fn builder_writes_the_spec_words() {
    let mem = table_mem();
    let mut alloc = FrameAllocator::new(&mem.regions());
    let mut ss = VtdSecondStage::create(&mem, &mut alloc, Levels::Four).unwrap();
    let rw = VtdSsAttrs { read: true, write: true, exec: false, snoop: false };
    ss.map(&mem, &mut alloc, IN4 & !0xfff, 0xabcd_e000, 12, rw).unwrap();
    let pdpt = table_word(&mem, word(&mem, ss.root + 8), 0x003);
    let pd = table_word(&mem, word(&mem, pdpt + 8), 0x003);
    let pt = table_word(&mem, word(&mem, pd + 8), 0x003);
    assert_eq!(word(&mem, pt + 8), 0x0000_0000_abcd_e003);

    // 2M (PS), read-only with SNP, at PD index 2.
    let ro_snp = VtdSsAttrs { read: true, write: false, exec: false, snoop: true };
    let gpa_2m = (1 << 39) | (1 << 30) | (2 << 21);
    ss.map(&mem, &mut alloc, gpa_2m, 0x4000_0000, 21, ro_snp).unwrap();
    assert_eq!(word(&mem, pd + 16), 0x0000_0000_4000_0881);
    // 1G (PS), write-only, at PDPT index 3.
    let wo = VtdSsAttrs { read: false, write: true, exec: false, snoop: false };
    ss.map(&mem, &mut alloc, (1 << 39) | (3 << 30), 0x8000_0000, 30, wo).unwrap();
    assert_eq!(word(&mem, pdpt + 24), 0x0000_0000_8000_0082);

    // With execute support, new tables and X leaves carry X.
    ss.execute = true;
    ss.map(&mem, &mut alloc, 5 << 39, 0x1_0000_0000, 30, VtdSsAttrs::ALL).unwrap();
    let pdpt5 = table_word(&mem, word(&mem, ss.root + 40), 0x007);
    assert_eq!(word(&mem, pdpt5), 0x0000_0001_0000_0087);

    // A page granting nothing would be a not-present entry: refused, nothing written.
    let none = VtdSsAttrs { read: false, write: false, exec: false, snoop: false };
    let r = ss.map(&mem, &mut alloc, 7 << 39, 0x2000, 12, none);
    assert!(matches!(r, Err(MapError::NoAccess { .. })), "{r:?}");
    assert_eq!(word(&mem, ss.root + 56), 0);
    // A size the format does not have is still a page-size error.
    let r = ss.map(&mem, &mut alloc, 7 << 39, 0x2000, 13, none);
    assert_eq!(r, Err(MapError::PageSize { size_lg2: 13 }));
}

#[test]
fn restrict_clears_bits_and_can_make_a_table_not_present() {
    let mem = table_mem();
    let mut alloc = FrameAllocator::new(&mem.regions());
    let ss = VtdSecondStage::create(&mem, &mut alloc, Levels::Four).unwrap();
    ss.map(&mem, &mut alloc, IN4 & !0xfff, 0xabcd_e000, 12, VtdSsAttrs::ALL).unwrap();
    let keep_r = VtdSsAttrs::READ_ONLY;
    assert_eq!(ss.restrict(&mem, IN4, 3, keep_r), Ok(true));
    assert_eq!(word(&mem, ss.root + 8) & 0xfff, 0x003);
    let pdpt = word(&mem, ss.root + 8) & !0xfff;
    assert_eq!(word(&mem, pdpt + 8) & 0xfff, 0x001);
    let w = ss.translate(&mem, IN4, Access::WRITE);
    assert_eq!(
        w.outcome,
        Err(granting(s2_fault(1, FaultKind::Permission, IN4), Perms::rwx(true, false, true)))
    );
    // The leaf level and levels that do not exist are not table entries.
    assert_eq!(ss.restrict(&mem, IN4, 1, keep_r), Ok(false));
    assert_eq!(ss.restrict(&mem, IN4, 5, keep_r), Ok(false));
    assert_eq!(ss.restrict(&mem, 0, 3, keep_r), Ok(false));
    // Clearing R too leaves R=W=0: the SS-PDPE is no longer present.
    let nothing = VtdSsAttrs { read: false, write: false, exec: false, snoop: false };
    assert_eq!(ss.restrict(&mem, IN4, 3, nothing), Ok(true));
    let w = ss.translate(&mem, IN4, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(3, FaultKind::Translation, IN4)));
    assert_eq!(ss.restrict(&mem, IN4, 2, keep_r), Ok(false));
}

// ---------------------------------------------------------------------------------------------
// Nested: x86-64 4-level first stage over a VT-d 4-level second stage.
// ---------------------------------------------------------------------------------------------

/// Guest RAM: GPA 0..4M is host memory at 0x1100_0000. The guest's tables are in GPA 0..1M.
const GUEST_HPA: u64 = 0x1100_0000;
const GUEST_LEN: u64 = 0x40_0000;
const IOVA_4K: u64 = 0x0000_1234_5678_9000;
const GPA_4K: u64 = 0x30_0000;
const IOVA_2M: u64 = 0x0000_4000_0020_0000;
const GPA_2M: u64 = 0x20_0000;

struct Rig {
    host: HostMemory,
    s1: X86Paging,
    s2: VtdSecondStage,
}

fn guest_ram(host: &HostMemory) -> GuestRam<&HostMemory> {
    GuestRam::new(
        host,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_LEN, hpa: Hpa(GUEST_HPA) }],
    )
}

/// Second stage maps guest RAM with `s2_page_lg2` pages; the guest maps IOVA_4K to GPA_4K
/// with a 4K page and IOVA_2M to GPA_2M with a 2M page.
fn rig(s2_page_lg2: u8) -> Rig {
    let host = HostMemory::new(&[(Hpa(0x1000_0000), 0x200_0000)]).unwrap();
    let mut halloc = FrameAllocator::new(&[(Hpa(0x1000_0000), 0x40_0000)]);
    let s2 = VtdSecondStage::create(&host, &mut halloc, Levels::Four).unwrap();
    let rw = VtdSsAttrs { read: true, write: true, exec: false, snoop: true };
    let mut gpa = 0;
    while gpa < GUEST_LEN {
        s2.map(&host, &mut halloc, gpa, GUEST_HPA + gpa, s2_page_lg2, rw).unwrap();
        gpa += 1 << s2_page_lg2;
    }
    let s1 = {
        let ram = guest_ram(&host);
        let mut galloc = FrameAllocator::new(&[(Gpa(0), 0x10_0000)]);
        let s1 = X86Paging::create(&ram, &mut galloc, x86::Levels::Four).unwrap();
        s1.map(&ram, &mut galloc, IOVA_4K, GPA_4K, 12, X86Attrs::ALL).unwrap();
        s1.map(&ram, &mut galloc, IOVA_2M, GPA_2M, 21, X86Attrs::ALL).unwrap();
        s1
    };
    Rig { host, s1, s2 }
}

#[test]
fn nested_4k_translation_reads_24_entries() {
    let r = rig(12);
    let nested = Nested { s1: &r.s1, s2: &r.s2 };
    let (w, steps) = nested.translate_observed(&r.host, IOVA_4K + 0x45, Access::READ, Vec::new());
    let got = w.outcome.unwrap();
    assert_eq!(got.output, GUEST_HPA + GPA_4K + 0x45);
    assert_eq!((got.page_lg2, got.level), (12, 1));
    assert_eq!(w.reads, 24);
    // Four times: a 4-level second-stage walk, then the first-stage entry it located; then one
    // more second-stage walk for the output.
    let stages: Vec<(Stage, i8)> = steps.iter().map(|s: &WalkStep| (s.stage, s.level)).collect();
    let mut want = Vec::new();
    for s1_level in (1..=4).rev() {
        want.extend((1..=4).rev().map(|l| (Stage::S2, l)));
        want.push((Stage::S1, s1_level));
    }
    want.extend((1..=4).rev().map(|l| (Stage::S2, l)));
    assert_eq!(stages, want);
    // No caches: the same count again.
    assert_eq!(nested.translate(&r.host, IOVA_4K, Access::READ).reads, 24);
}

#[test]
fn nested_superpages_in_either_stage_read_fewer_entries() {
    // First stage 2M: 3 x (4 + 1) + 4.
    let r = rig(12);
    let nested = Nested { s1: &r.s1, s2: &r.s2 };
    let w = nested.translate(&r.host, IOVA_2M + 0x1_2345, Access::READ);
    assert_eq!(w.outcome.unwrap().output, GUEST_HPA + GPA_2M + 0x1_2345);
    assert_eq!(w.reads, 19);

    // Second stage 2M: 4 x (3 + 1) + 3.
    let r = rig(21);
    let nested = Nested { s1: &r.s1, s2: &r.s2 };
    let w = nested.translate(&r.host, IOVA_4K + 0x45, Access::READ);
    assert_eq!(w.outcome.unwrap().output, GUEST_HPA + GPA_4K + 0x45);
    assert_eq!(w.reads, 19);
    // Both 2M: 3 x (3 + 1) + 3.
    let w = nested.translate(&r.host, IOVA_2M + 0x1_2345, Access::READ);
    let got = w.outcome.unwrap();
    assert_eq!(got.output, GUEST_HPA + GPA_2M + 0x1_2345);
    assert_eq!(got.page_lg2, 21);
    assert_eq!(w.reads, 15);
}

#[test]
fn nested_second_stage_fault_on_a_first_stage_table_fetch() {
    for s1_level in (1i8..=4).rev() {
        let r = rig(12);
        // The GPA of the first-stage table at `s1_level` on IOVA_4K's path.
        let table = if s1_level == 4 {
            r.s1.root
        } else {
            let ram = guest_ram(&r.host);
            let d = usize::try_from(3 - s1_level).unwrap();
            let (_, raw) = radix::entry_at(&r.s1, &ram, IOVA_4K, d).unwrap().unwrap();
            x86::ADDR.in_place(raw)
        };
        let gone = r.s2.unmap(&r.host, table, 0x1000).unwrap();
        assert_eq!(gone.leaves, 1);
        let nested = Nested { s1: &r.s1, s2: &r.s2 };
        let w = nested.translate(&r.host, IOVA_4K, Access::READ);
        let shift = 12 + 9 * (s1_level - 1);
        let entry = table + ((IOVA_4K >> shift) & 511) * 8;
        assert_eq!(
            w.outcome,
            Err(Fault {
                stage: Stage::S2,
                level: 1,
                kind: FaultKind::Translation,
                input: entry,
                s1_fetch: Some(S1Fetch { level: s1_level, write: false }),
                granted: None,
            }),
            "first-stage level {s1_level}"
        );
        let fetched = u32::try_from(4 - s1_level).unwrap();
        assert_eq!(w.reads, 5 * fetched + 4);
    }
}

#[test]
fn nested_read_only_second_stage_blocks_first_stage_accessed_updates() {
    let r = rig(12);
    // The SS-PDE over GPA 0..2M, where the guest's tables are: keep R only.
    assert_eq!(r.s2.restrict(&r.host, 0, 2, VtdSsAttrs::READ_ONLY), Ok(true));
    let nested = Nested { s1: &r.s1, s2: &r.s2 };
    let w = nested.translate(&r.host, IOVA_4K, Access::READ);
    let pml4e = r.s1.root + ((IOVA_4K >> 39) & 511) * 8;
    assert_eq!(
        w.outcome,
        Err(Fault {
            stage: Stage::S2,
            level: 1,
            kind: FaultKind::Permission,
            input: pml4e,
            s1_fetch: Some(S1Fetch { level: 4, write: true }),
            granted: Some(Perms::rwx(true, false, true)),
        })
    );
    // A first stage that sets no A/D bits only reads its tables, which is allowed.
    let mut quiet = r.s1;
    quiet.set_ad = false;
    let nested = Nested { s1: &quiet, s2: &r.s2 };
    let w = nested.translate(&r.host, IOVA_4K, Access::READ);
    assert_eq!(w.outcome.unwrap().output, GUEST_HPA + GPA_4K);
}

#[test]
fn nested_second_stage_fault_on_the_output_is_not_a_table_fetch() {
    let r = rig(12);
    r.s2.unmap(&r.host, GPA_4K, 0x1000).unwrap();
    let nested = Nested { s1: &r.s1, s2: &r.s2 };
    let w = nested.translate(&r.host, IOVA_4K + 0x45, Access::READ);
    assert_eq!(w.outcome, Err(s2_fault(1, FaultKind::Translation, GPA_4K + 0x45)));
    assert_eq!(w.reads, 24);
}

// ---------------------------------------------------------------------------------------------
// Oracle: a flat map of leaves by page address plus the table entries that exist, sharing no
// code with pgtable. It predicts every map, unmap and restrict result and every walk's output
// or fault (kind and level).
// ---------------------------------------------------------------------------------------------

/// Which permission bits a table entry has had cleared.
#[derive(Clone, Copy, Debug, Default)]
struct Cleared {
    r: bool,
    w: bool,
    x: bool,
}

#[derive(Clone, Copy, Debug)]
struct OracleLeaf {
    size_lg2: u8,
    output: u64,
    r: bool,
    w: bool,
    x: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum MapResult {
    Mapped,
    Overlap,
    /// No permission at all: the builder refuses it.
    Refused,
}

struct Oracle {
    levels: i8,
    input_bits: u8,
    execute: bool,
    /// Table entries that exist, by (spec level, first address they cover).
    tables: BTreeMap<(i8, u64), Cleared>,
    /// Leaves by the page address they start at.
    leaves: BTreeMap<u64, OracleLeaf>,
    /// Leaves whose D bit a permitted write has set (with SSADE).
    written: std::collections::BTreeSet<u64>,
}

/// Bytes one entry at `level` covers, as a power of two.
fn span_lg2(level: i8) -> u8 {
    12 + 9 * (level as u8 - 1)
}

fn align(addr: u64, lg2: u8) -> u64 {
    addr & !((1u64 << lg2) - 1)
}

impl Oracle {
    fn new(levels: i8, execute: bool) -> Self {
        Self {
            levels,
            input_bits: 12 + 9 * levels as u8,
            execute,
            tables: BTreeMap::new(),
            leaves: BTreeMap::new(),
            written: Default::default(),
        }
    }

    /// A table entry is present unless every permission bit the unit looks at is clear.
    fn present(&self, c: Cleared) -> bool {
        !(c.r && c.w && (c.x || !self.execute))
    }

    /// Forgets everything under the table entry at (level, base): once it is not present
    /// nothing can reach it again, and a map through it starts a fresh table.
    fn drop_below(&mut self, level: i8, base: u64) {
        let end = base + (1u64 << span_lg2(level));
        let inside = |l: i8, b: u64| l < level && base <= b && b < end;
        self.tables.retain(|&(l, b), _| !inside(l, b));
        self.leaves.retain(|&b, leaf| !inside((leaf.size_lg2 as i8 - 12) / 9 + 1, b));
        let leaves = &self.leaves;
        self.written.retain(|b| leaves.contains_key(b));
    }

    fn map(
        &mut self,
        base: u64,
        size_lg2: u8,
        output: u64,
        r: bool,
        w: bool,
        x: bool,
    ) -> MapResult {
        if !(r || w || (self.execute && x)) {
            return MapResult::Refused;
        }
        let target = (size_lg2 as i8 - 12) / 9 + 1;
        let mut first_new = target;
        for level in (target..=self.levels).rev() {
            let b = align(base, span_lg2(level));
            match self.tables.get(&(level, b)).copied() {
                Some(c) if self.present(c) => {
                    if level == target {
                        // A block may replace tables that map nothing, and only those.
                        let end = b + (1u64 << span_lg2(level));
                        if self.leaves.range(b..end).next().is_some() {
                            return MapResult::Overlap;
                        }
                        self.drop_below(level, b);
                        first_new = level;
                        break;
                    }
                }
                Some(_) => {
                    first_new = level;
                    break;
                }
                None => {
                    if self.leaves.contains_key(&b) {
                        return MapResult::Overlap;
                    }
                    first_new = level;
                    break;
                }
            }
        }
        self.tables.remove(&(first_new, align(base, span_lg2(first_new))));
        for level in target + 1..=first_new {
            self.tables.insert((level, align(base, span_lg2(level))), Cleared::default());
        }
        self.leaves.insert(base, OracleLeaf { size_lg2, output, r, w, x });
        self.written.remove(&base);
        MapResult::Mapped
    }

    /// `Ok((bytes, leaves))`, or `Err((base, size_lg2))` of the first leaf the range cuts.
    fn unmap(&mut self, start: u64, len: u64) -> Result<(u64, u32), (u64, u8)> {
        let end = start + len;
        let hit: Vec<(u64, u8)> = self
            .leaves
            .iter()
            .filter(|(&b, l)| b < end && b + (1u64 << l.size_lg2) > start)
            .map(|(&b, l)| (b, l.size_lg2))
            .collect();
        if let Some(&cut) = hit.iter().find(|&&(b, s)| b < start || b + (1u64 << s) > end) {
            return Err(cut);
        }
        let mut bytes = 0;
        for &(b, s) in &hit {
            self.leaves.remove(&b);
            self.written.remove(&b);
            bytes += 1u64 << s;
        }
        Ok((bytes, hit.len() as u32))
    }

    fn restrict(&mut self, addr: u64, level: i8, keep: (bool, bool, bool)) -> bool {
        if level < 2 || level > self.levels {
            return false;
        }
        for above in level + 1..=self.levels {
            match self.tables.get(&(above, align(addr, span_lg2(above)))) {
                Some(&c) if self.present(c) => {}
                _ => return false,
            }
        }
        let b = align(addr, span_lg2(level));
        let Some(mut c) = self.tables.get(&(level, b)).copied() else {
            return false;
        };
        if !self.present(c) {
            return false;
        }
        c.r |= !keep.0;
        c.w |= !keep.1;
        c.x |= !keep.2;
        self.tables.insert((level, b), c);
        if !self.present(c) {
            self.drop_below(level, b);
        }
        true
    }

    /// `Ok((output, level, page_lg2, perms))` or `Err((kind, level, granted))`.
    fn translate(&self, addr: u64, access: Access) -> Result<(u64, i8, u8, Perms), OracleFault> {
        if addr >> self.input_bits != 0 {
            return Err((FaultKind::InputRange, self.levels, None));
        }
        let mut above = Cleared::default();
        for level in (1..=self.levels).rev() {
            let b = align(addr, span_lg2(level));
            if let Some(&c) = self.tables.get(&(level, b)) {
                if !self.present(c) {
                    return Err((FaultKind::Translation, level, None));
                }
                above.r |= c.r;
                above.w |= c.w;
                above.x |= c.x;
                continue;
            }
            let Some(leaf) = self.leaves.get(&b) else {
                return Err((FaultKind::Translation, level, None));
            };
            assert_eq!(leaf.size_lg2, span_lg2(level), "oracle invariant");
            let r = leaf.r && !above.r;
            let w = leaf.w && !above.w;
            let x = if self.execute { leaf.x && !above.x } else { r };
            let allowed = if access.exec {
                x
            } else if access.write {
                w
            } else {
                r
            };
            if !allowed {
                return Err((FaultKind::Permission, level, Some(Perms::rwx(r, w, x))));
            }
            return Ok((leaf.output + (addr - b), level, leaf.size_lg2, Perms::rwx(r, w, x)));
        }
        unreachable!("level 1 is always a leaf or a hole")
    }
}

/// What the oracle expects of a walk that faults: the kind, the level, the rights found.
type OracleFault = (FaultKind, i8, Option<Perms>);

/// Table indices per level (index 0 = level 1), from a few values so that paths collide.
type Spot = [u64; 5];

fn spot() -> impl Strategy<Value = Spot> {
    prop::array::uniform5(select(vec![0u64, 1, 2, 511]))
}

fn addr_of(spot: Spot, levels: i8) -> u64 {
    (0..levels as usize).map(|k| spot[k] << (12 + 9 * k)).sum()
}

#[derive(Clone, Debug)]
enum Op {
    Map { at: Spot, size_lg2: u8, frame: u64, r: bool, w: bool, x: bool },
    Unmap { at: Spot, len: u64 },
    Restrict { at: Spot, level: i8, keep: (bool, bool, bool) },
}

fn op() -> impl Strategy<Value = Op> {
    let map = (
        spot(),
        select(vec![12u8, 12, 21, 30]),
        any::<u64>(),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.7),
        any::<bool>(),
    )
        .prop_map(|(at, size_lg2, frame, r, w, x)| Op::Map { at, size_lg2, frame, r, w, x });
    let lens = vec![1u64 << 12, 2 << 12, 1 << 21, (1 << 21) + (1 << 12), 1 << 30, 2 << 30];
    let unmap = (spot(), select(lens)).prop_map(|(at, len)| Op::Unmap { at, len });
    let restrict = (
        spot(),
        2i8..=5,
        (prop::bool::weighted(0.7), prop::bool::weighted(0.6), prop::bool::weighted(0.7)),
    )
        .prop_map(|(at, level, keep)| Op::Restrict { at, level, keep });
    prop_oneof![5 => map, 2 => unmap, 2 => restrict]
}

const ORACLE_HAW: u8 = 46;

fn check_walks(
    ss: &VtdSecondStage,
    mem: &HostMemory,
    oracle: &mut Oracle,
    addrs: &[u64],
) -> Result<(), TestCaseError> {
    for &addr in addrs {
        for access in [Access::READ, Access::WRITE, Access::EXEC] {
            let w = ss.translate(mem, addr, access);
            let (want, reads) = match oracle.translate(addr, access) {
                Ok((output, level, page_lg2, perms)) => {
                    // With SSADE the leaf is dirty once a permitted write has set D.
                    let base = addr & !((1u64 << page_lg2) - 1);
                    if access.write {
                        oracle.written.insert(base);
                    }
                    let dirty = !ss.ad || oracle.written.contains(&base);
                    let want = Leaf { dirty, ..leaf(output, page_lg2, level, perms) };
                    (Ok(want), oracle.levels - level + 1)
                }
                Err((kind, level, granted)) => {
                    let reads =
                        if kind == FaultKind::InputRange { 0 } else { oracle.levels - level + 1 };
                    (Err(Fault { granted, ..s2_fault(level, kind, addr) }), reads)
                }
            };
            prop_assert_eq!(w.outcome, want, "{:#x} {:?}", addr, access);
            prop_assert_eq!(w.reads, reads as u32, "{:#x} {:?}", addr, access);
        }
    }
    Ok(())
}

fn run_oracle(
    levels: Levels,
    execute: bool,
    ad: bool,
    ops: &[Op],
    probes: &[Spot],
) -> Result<(), TestCaseError> {
    let mem = HostMemory::new(&[(Hpa(0x100_0000), 0x80_0000)]).unwrap();
    let mut alloc = FrameAllocator::new(&mem.regions());
    let mut ss = VtdSecondStage::create(&mem, &mut alloc, levels).unwrap();
    ss.haw = ORACLE_HAW;
    ss.execute = execute;
    ss.ad = ad;
    let n = levels.count() as i8;
    let mut oracle = Oracle::new(n, execute);
    let top = 1u64 << oracle.input_bits;
    let mut touched = vec![top, top - 0x1000];
    for op in ops {
        let here: Vec<u64> = match *op {
            Op::Map { at, size_lg2, frame, r, w, x } => {
                let base = align(addr_of(at, n), size_lg2);
                let output = (frame % (1 << (ORACLE_HAW - size_lg2))) << size_lg2;
                let attrs = VtdSsAttrs { read: r, write: w, exec: x, snoop: false };
                let got = ss.map(&mem, &mut alloc, base, output, size_lg2, attrs);
                let want = oracle.map(base, size_lg2, output, r, w, x);
                let agree = matches!(
                    (&got, &want),
                    (Ok(()), MapResult::Mapped)
                        | (Err(MapError::Overlap { .. }), MapResult::Overlap)
                        | (Err(MapError::NoAccess { .. }), MapResult::Refused)
                );
                prop_assert!(agree, "map {:#x}/{}: {:?} vs oracle {:?}", base, size_lg2, got, want);
                let size = 1u64 << size_lg2;
                vec![base, base + size - 0x1000, base + size / 2 + 0x48]
            }
            Op::Unmap { at, len } => {
                let start = addr_of(at, n);
                let len = len.min(top - start);
                let got = ss.unmap(&mem, start, len);
                match (got, oracle.unmap(start, len)) {
                    (Ok(u), Ok((bytes, leaves))) => {
                        prop_assert_eq!((u.bytes, u.leaves), (bytes, leaves));
                    }
                    (Err(MapError::SplitsLeaf { input, size_lg2 }), Err(cut)) => {
                        prop_assert_eq!((input, size_lg2), cut);
                    }
                    (g, o) => {
                        prop_assert!(false, "unmap {:#x}+{:#x}: {:?} vs {:?}", start, len, g, o)
                    }
                }
                vec![start, start + len - 0x1000]
            }
            Op::Restrict { at, level, keep } => {
                let addr = addr_of(at, n);
                let k = VtdSsAttrs { read: keep.0, write: keep.1, exec: keep.2, snoop: false };
                let got = ss.restrict(&mem, addr, level, k).unwrap();
                prop_assert_eq!(
                    got,
                    oracle.restrict(addr, level, keep),
                    "restrict {:#x} L{}",
                    addr,
                    level
                );
                vec![addr]
            }
        };
        check_walks(&ss, &mem, &mut oracle, &here)?;
        touched.extend(here);
    }
    touched.extend(probes.iter().map(|&s| addr_of(s, n) | 0x7f8));
    check_walks(&ss, &mem, &mut oracle, &touched)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn oracle_agrees_3_levels(
        ops in prop::collection::vec(op(), 1..32),
        probes in prop::collection::vec(spot(), 8),
        execute in any::<bool>(),
        ad in any::<bool>(),
    ) {
        run_oracle(Levels::Three, execute, ad, &ops, &probes)?;
    }

    #[test]
    fn oracle_agrees_4_levels(
        ops in prop::collection::vec(op(), 1..32),
        probes in prop::collection::vec(spot(), 8),
        execute in any::<bool>(),
        ad in any::<bool>(),
    ) {
        run_oracle(Levels::Four, execute, ad, &ops, &probes)?;
    }

    #[test]
    fn oracle_agrees_5_levels(
        ops in prop::collection::vec(op(), 1..32),
        probes in prop::collection::vec(spot(), 8),
        execute in any::<bool>(),
        ad in any::<bool>(),
    ) {
        run_oracle(Levels::Five, execute, ad, &ops, &probes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Random bytes as tables: any walk ends in a leaf or a fault, reading at most one entry a level.
// ---------------------------------------------------------------------------------------------

/// Four table pages at 0x20_0000; nothing else is memory.
const JUNK_BASE: u64 = 0x20_0000;
const JUNK_PAGES: u64 = 4;

fn junk_word() -> impl Strategy<Value = u64> {
    let high = select(vec![0u64, 0, 1 << 62, 1 << 51, 1 << 45, 0xbff0_0000_0000_0000]);
    let pointer = (0..JUNK_PAGES, 0..0x1000u64, high)
        .prop_map(|(page, low, high)| (JUNK_BASE + page * 0x1000) | low | high);
    prop_oneof![4 => pointer, 1 => any::<u64>(), 1 => Just(0u64)]
}

fn junk_config() -> impl Strategy<Value = VtdSecondStage> {
    let levels = select(vec![Levels::Three, Levels::Four, Levels::Five]);
    let haw = prop_oneof![4 => select(vec![36u8, 39, 46, 52]), 1 => 0u8..=70];
    let mgaw = prop_oneof![4 => select(vec![39u8, 48, 57, 64]), 1 => 0u8..=70];
    let root = prop_oneof![
        4 => (0..JUNK_PAGES, 0..0x1000u64).prop_map(|(p, low)| (JUNK_BASE + p * 0x1000) | low),
        1 => any::<u64>(),
    ];
    (levels, haw, mgaw, 0u8..4, any::<[bool; 3]>(), root).prop_map(
        |(levels, haw, mgaw, sllps, [execute, snoop, ad], root)| VtdSecondStage {
            root,
            levels,
            mgaw,
            haw,
            sllps,
            execute,
            snoop,
            ad,
        },
    )
}

fn junk_input() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>().prop_map(|v| v & ((1 << 39) - 1)),
        2 => any::<u64>().prop_map(|v| v & ((1 << 57) - 1)),
        1 => any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_tables_end_in_a_leaf_or_a_fault(
        words in prop::collection::vec(junk_word(), (JUNK_PAGES * 512) as usize),
        ss in junk_config(),
        inputs in prop::collection::vec(junk_input(), 8),
        accesses in prop::collection::vec(select(vec![Access::READ, Access::WRITE, Access::EXEC]), 8),
    ) {
        let mem = HostMemory::new(&[(Hpa(JUNK_BASE), JUNK_PAGES * 0x1000)]).unwrap();
        for (i, &w) in words.iter().enumerate() {
            mem.write_u64(Hpa(JUNK_BASE + 8 * i as u64), w).unwrap();
        }
        let top = ss.levels.count() as i8;
        for (&input, &access) in inputs.iter().zip(&accesses) {
            let (w, steps) = ss.translate_observed(&mem, input, access, Vec::new());
            prop_assert!(w.reads as usize <= ss.levels.count());
            prop_assert!(w.updates <= w.reads);
            let aborted = matches!(w.outcome, Err(Fault { kind: FaultKind::ExternalAbort { .. }, .. }));
            prop_assert_eq!(steps.len() as u32 + u32::from(aborted), w.reads);
            for (i, s) in steps.iter().enumerate() {
                prop_assert_eq!((s.stage, s.level), (Stage::S2, top - i as i8));
            }
            match w.outcome {
                Ok(l) => {
                    prop_assert!(l.perms.allows(access));
                    prop_assert!((1..=3).contains(&l.level));
                    prop_assert_eq!(l.page_lg2, span_lg2(l.level));
                    prop_assert!(l.output >> ss.haw.min(52) == 0, "{:?}", l);
                    prop_assert_eq!(l.output & ((1 << l.page_lg2) - 1), input & ((1 << l.page_lg2) - 1));
                    prop_assert!(!ss.execute || !access.exec || l.perms.contains(Perms::rwx(false, false, true)));
                }
                Err(f) => {
                    prop_assert_eq!(f.stage, Stage::S2);
                    prop_assert_eq!(f.s1_fetch, None);
                    prop_assert_eq!(f.input, input);
                    prop_assert!((1..=top).contains(&f.level), "{:?}", f);
                    match f.kind {
                        FaultKind::Config | FaultKind::InputRange => prop_assert_eq!(w.reads, 0),
                        FaultKind::ExternalAbort { addr } => {
                            prop_assert!(!mem.contains(Hpa(addr), 8), "{:?}", f);
                        }
                        FaultKind::Translation | FaultKind::Reserved | FaultKind::Permission => {}
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
            }
            // A/D updates touch only bits the walk ignores: a second walk agrees.
            let again = ss.translate(&mem, input, access);
            prop_assert_eq!(again.outcome, w.outcome);
        }
    }
}

/// `f` with the rights its permission check found.
fn granting(f: Fault, granted: Perms) -> Fault {
    Fault { granted: Some(granted), ..f }
}

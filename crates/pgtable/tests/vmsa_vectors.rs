//! VMSAv8-64 hand-typed vectors: descriptor words written from the Arm ARM (DDI 0487 K.a) D8.3
//! descriptor figures, not from our encoder, and the walk's expected answers.
//!
//! Stage-1 block/page bits (D8.3): 0 valid, 1 type (table/page = 1, block = 0), 4:2 AttrIndx,
//! 7:6 AP[2:1], 9:8 SH, 10 AF, 11 nG, 47:12 OA, 51 DBM, 53 PXN, 54 UXN. Table descriptors: 47:12
//! next-level table address, 59 PXNTable, 60 UXNTable, 62:61 APTable. Stage 2 (D8.3): 5:2
//! MemAttr, 7:6 S2AP, 54:53 XN.

use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule, Ps, VmsaS1, VmsaS2};
use sviommu_pgtable::{Access, Fault, FaultKind, Perms, Stage, Walk};

const TABLES: u64 = 0x10_0000;

fn memory() -> HostMemory {
    HostMemory::new(&[(Hpa(TABLES), 0x100_0000)]).unwrap()
}

fn put(mem: &HostMemory, addr: u64, raw: u64) {
    mem.write_u64(Hpa(addr), raw).unwrap();
}

fn get(mem: &HostMemory, addr: u64) -> u64 {
    mem.read_u64(Hpa(addr)).unwrap()
}

fn fault(stage: Stage, level: i8, kind: FaultKind, input: u64) -> Fault {
    Fault { stage, level, kind, input, s1_fetch: None, granted: None }
}

fn s1f(level: i8, kind: FaultKind, input: u64) -> Fault {
    fault(Stage::S1, level, kind, input)
}

fn s2f(level: i8, kind: FaultKind, input: u64) -> Fault {
    fault(Stage::S2, level, kind, input)
}

const PRIV_RWX: Perms = Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::PRIV_X);
const USER_RW: Perms = Perms::USER_R.union(Perms::USER_W);

// ---------------------------------------------------------------------------------------------
// 4K stage 1. L0 0x100000 -> L1 0x101000 -> L2 0x102000 -> L3 0x103000.
// ---------------------------------------------------------------------------------------------

fn s1_4k_tables(mem: &HostMemory) {
    put(mem, 0x10_0000, 0x0000_0000_0010_1003); // L0[0]: table -> L1
    put(mem, 0x10_1000, 0x0000_0000_0010_2003); // L1[0]: table -> L2
    put(mem, 0x10_2000, 0x0000_0000_0010_3003); // L2[0]: table -> L3
    put(mem, 0x10_3008, 0x0000_0000_0050_0703); // L3[1]: page, AF SH=11 AP=00 -> 0x500000
    put(mem, 0x10_3010, 0x0060_0000_0050_17c3); // L3[2]: page, UXN PXN AP=11 -> 0x501000
    put(mem, 0x10_3018, 0x0000_0000_0050_2743); // L3[3]: page, AP=01 (EL0 RW) -> 0x502000
    put(mem, 0x10_3020, 0x0000_0000_0050_3f03); // L3[4]: page, nG -> 0x503000
    put(mem, 0x10_3028, 0x0000_0000_0050_4303); // L3[5]: page, AF = 0 -> 0x504000
    put(mem, 0x10_3030, 0x0008_0000_0050_5783); // L3[6]: page, DBM AP=10 (RO) -> 0x505000
    put(mem, 0x10_3038, 0x0000_0000_0050_6701); // L3[7]: 0b01 at level 3: reserved
    put(mem, 0x10_2008, 0x0000_0000_0060_0701); // L2[1]: 2M block -> 0x600000
    put(mem, 0x10_1008, 0x0000_0000_4000_0701); // L1[1]: 1G block -> 0x40000000
    put(mem, 0x10_0008, 0x0000_0080_0000_0701); // L0[1]: block at level 0: invalid for 4K
                                                // L1[2]: table, APTable = 0b10 (no write below) -> L2 0x104000; its [0] is an EL0-RW block.
    put(mem, 0x10_1010, 0x4000_0000_0010_4003);
    put(mem, 0x10_4000, 0x0000_0000_0080_0741);
    // L1[3]: table, APTable = 0b01 (no EL0), UXNTable, PXNTable -> L2 0x105000; [0] EL0-RW block.
    put(mem, 0x10_1018, 0x3800_0000_0010_5003);
    put(mem, 0x10_5000, 0x0000_0000_00a0_0741);
}

fn s1_4k(mem: &HostMemory) -> VmsaS1 {
    s1_4k_tables(mem);
    VmsaS1::new(TABLES, Granule::K4, 16)
}

#[test]
fn s1_4k_page_walk_from_level_0() {
    let mem = memory();
    let pt = s1_4k(&mem);
    assert_eq!(pt.start_level(), 0);
    let w = pt.translate(&mem, 0x1abc, Access::READ.privileged());
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.page_lg2, leaf.level, w.reads), (0x50_0abc, 12, 3, 4));
    // D8.4: AP = 00 is EL1 RW and no EL0 data access; UXN = 0 still lets EL0 execute
    // (execute-only memory).
    assert_eq!(leaf.perms, PRIV_RWX.union(Perms::USER_X));
    assert!(leaf.global);
    assert_eq!(
        pt.translate(&mem, 0x1abc, Access::READ).outcome,
        Err(granting(
            s1f(3, FaultKind::Permission, 0x1abc),
            Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::PRIV_X).union(Perms::USER_X)
        ))
    );
    assert!(pt.translate(&mem, 0x1abc, Access::EXEC).outcome.is_ok());
}

#[test]
fn s1_4k_ap_uxn_pxn() {
    let mem = memory();
    let pt = s1_4k(&mem);
    // AP = 11, UXN, PXN: read-only at both levels, no execution.
    let leaf = pt.translate(&mem, 0x2000, Access::READ).outcome.unwrap();
    assert_eq!(leaf.output, 0x50_1000);
    assert_eq!(leaf.perms, Perms::PRIV_R.union(Perms::USER_R));
    assert_eq!(
        pt.translate(&mem, 0x2000, Access::WRITE.privileged()).outcome,
        Err(granting(s1f(3, FaultKind::Permission, 0x2000), Perms::rwx(true, false, false)))
    );
    // AP = 01: EL0 read/write, so EL1 may not execute it although PXN is clear.
    let leaf = pt.translate(&mem, 0x3008, Access::WRITE).outcome.unwrap();
    assert_eq!(leaf.output, 0x50_2008);
    assert_eq!(leaf.perms, Perms::PRIV_R.union(Perms::PRIV_W).union(USER_RW).union(Perms::USER_X));
    assert_eq!(
        pt.translate(&mem, 0x3008, Access::EXEC.privileged()).outcome,
        Err(granting(
            s1f(3, FaultKind::Permission, 0x3008),
            Perms::PRIV_R
                .union(Perms::PRIV_W)
                .union(Perms::USER_R)
                .union(Perms::USER_W)
                .union(Perms::USER_X)
        ))
    );
    // nG: not global.
    let leaf = pt.translate(&mem, 0x4000, Access::READ.privileged()).outcome.unwrap();
    assert!(!leaf.global);
}

#[test]
fn s1_4k_wxn_makes_writable_execute_never() {
    let mem = memory();
    let pt = VmsaS1 { wxn: true, ..s1_4k(&mem) };
    // AP = 00: writable at EL1, so not executable there; EL0 cannot write it, so still may
    // execute it.
    let leaf = pt.translate(&mem, 0x1000, Access::READ.privileged()).outcome.unwrap();
    assert_eq!(leaf.perms, Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::USER_X));
    // AP = 01: writable at both, executable at neither.
    let leaf = pt.translate(&mem, 0x3000, Access::READ).outcome.unwrap();
    assert_eq!(leaf.perms, Perms::PRIV_R.union(Perms::PRIV_W).union(USER_RW));
}

#[test]
fn s1_4k_blocks_at_levels_1_and_2() {
    let mem = memory();
    let pt = s1_4k(&mem);
    let w = pt.translate(&mem, 0x2f_1234, Access::WRITE.privileged());
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.page_lg2, leaf.level, w.reads), (0x6f_1234, 21, 2, 3));
    let w = pt.translate(&mem, 0x7fff_fff8, Access::READ.privileged());
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.page_lg2, leaf.level, w.reads), (0x7fff_fff8, 30, 1, 2));
    // D8.3: no level-0 block with the 4K granule unless DS = 1: the descriptor is invalid.
    let va = 1u64 << 39;
    let w = pt.translate(&mem, va, Access::READ.privileged());
    assert_eq!(w.outcome, Err(s1f(0, FaultKind::Translation, va)));
    assert_eq!(w.reads, 1);
}

#[test]
fn s1_4k_reserved_level_3_encoding_is_a_translation_fault() {
    let mem = memory();
    let pt = s1_4k(&mem);
    assert_eq!(
        pt.translate(&mem, 0x7000, Access::READ.privileged()).outcome,
        Err(s1f(3, FaultKind::Translation, 0x7000))
    );
    assert_eq!(
        pt.translate(&mem, 0x9000, Access::READ.privileged()).outcome,
        Err(s1f(3, FaultKind::Translation, 0x9000))
    );
}

#[test]
fn s1_4k_hierarchical_permissions_and_hpd() {
    let mem = memory();
    let pt = s1_4k(&mem);
    // APTable[1]: nothing below may be written; EL0 RW becomes EL0 RO, so EL1 may execute.
    let va = 0x8000_0000;
    let leaf = pt.translate(&mem, va, Access::READ).outcome.unwrap();
    assert_eq!(leaf.output, 0x80_0000);
    assert_eq!(
        leaf.perms,
        Perms::PRIV_R.union(Perms::PRIV_X).union(Perms::USER_R).union(Perms::USER_X)
    );
    assert_eq!(
        pt.translate(&mem, va, Access::WRITE.privileged()).outcome,
        Err(granting(s1f(2, FaultKind::Permission, va), Perms::rwx(true, false, true)))
    );
    // APTable[0], UXNTable, PXNTable: EL1 read/write only.
    let va = 0xc000_0000;
    let leaf = pt.translate(&mem, va, Access::WRITE.privileged()).outcome.unwrap();
    assert_eq!(leaf.output, 0xa0_0000);
    assert_eq!(leaf.perms, Perms::PRIV_R.union(Perms::PRIV_W));
    // HPD: the table bits are ignored.
    let hpd = VmsaS1 { hpd: true, ..pt };
    let leaf = hpd.translate(&mem, va, Access::READ).outcome.unwrap();
    assert_eq!(leaf.perms, Perms::PRIV_R.union(Perms::PRIV_W).union(USER_RW).union(Perms::USER_X));
}

#[test]
fn s1_4k_access_flag_with_and_without_ha() {
    let mem = memory();
    let pt = VmsaS1 { ha: false, ..s1_4k(&mem) };
    let w = pt.translate(&mem, 0x5000, Access::READ.privileged());
    assert_eq!(w.outcome, Err(s1f(3, FaultKind::AccessFlag, 0x5000)));
    assert_eq!((w.updates, get(&mem, 0x10_3028)), (0, 0x0000_0000_0050_4303));
    // D8.5: the access flag fault takes priority over a permission fault.
    assert_eq!(
        pt.translate(&mem, 0x5000, Access::READ).outcome,
        Err(s1f(3, FaultKind::AccessFlag, 0x5000))
    );
    let pt = VmsaS1 { ha: true, ..pt };
    let w = pt.translate(&mem, 0x5000, Access::READ.privileged());
    assert_eq!(w.outcome.unwrap().output, 0x50_4000);
    assert_eq!((w.updates, get(&mem, 0x10_3028)), (1, 0x0000_0000_0050_4703));
}

#[test]
fn s1_4k_dirty_state_with_hd() {
    let mem = memory();
    let pt = VmsaS1 { hd: false, ..s1_4k(&mem) };
    // Without HD, DBM is ignored: AP[2] = 1 is read-only.
    assert_eq!(
        pt.translate(&mem, 0x6000, Access::WRITE.privileged()).outcome,
        Err(granting(
            s1f(3, FaultKind::Permission, 0x6000),
            Perms::PRIV_R.union(Perms::PRIV_X).union(Perms::USER_X)
        ))
    );
    // A read with HD changes nothing.
    let pt = VmsaS1 { hd: true, ..pt };
    let w = pt.translate(&mem, 0x6000, Access::READ.privileged());
    assert!(!w.outcome.unwrap().dirty, "writable-clean until the first write");
    assert_eq!((w.updates, get(&mem, 0x10_3030)), (0, 0x0008_0000_0050_5783));
    // EL0 has no access (AP[1] = 0): its write faults and dirties nothing.
    assert_eq!(
        pt.translate(&mem, 0x6000, Access::WRITE).outcome,
        Err(granting(
            s1f(3, FaultKind::Permission, 0x6000),
            Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::PRIV_X).union(Perms::USER_X)
        ))
    );
    assert_eq!(get(&mem, 0x10_3030), 0x0008_0000_0050_5783);
    // A write clears AP[2].
    let w = pt.translate(&mem, 0x6000, Access::WRITE.privileged());
    assert_eq!(w.outcome.unwrap().output, 0x50_5000);
    assert_eq!((w.updates, get(&mem, 0x10_3030)), (1, 0x0008_0000_0050_5703));
    // HD without HA is no dirty-state management.
    put(&mem, 0x10_3030, 0x0008_0000_0050_5783);
    let no_ha = VmsaS1 { ha: false, ..pt };
    assert_eq!(
        no_ha.translate(&mem, 0x6000, Access::WRITE.privileged()).outcome,
        Err(granting(
            s1f(3, FaultKind::Permission, 0x6000),
            Perms::PRIV_R.union(Perms::PRIV_X).union(Perms::USER_X)
        ))
    );
}

#[test]
fn s1_4k_t0sz_selects_the_starting_level() {
    let mem = memory();
    s1_4k_tables(&mem);
    // T0SZ = 25: 39-bit input, starting at level 1 (the L1 table above).
    let pt = VmsaS1::new(0x10_1000, Granule::K4, 25);
    assert_eq!(pt.start_level(), 1);
    let w = pt.translate(&mem, 0x1abc, Access::READ.privileged());
    assert_eq!((w.outcome.unwrap().output, w.reads), (0x50_0abc, 3));
    let va = 1u64 << 39;
    let w = pt.translate(&mem, va, Access::READ.privileged());
    assert_eq!((w.outcome, w.reads), (Err(s1f(1, FaultKind::InputRange, va)), 0));
    // T0SZ = 20: 44-bit input, level 0 with 5 index bits; entry 1 of L0 is at 0x100008.
    let pt = VmsaS1::new(TABLES, Granule::K4, 20);
    assert_eq!(pt.start_level(), 0);
    let w = pt.translate(&mem, 0x1abc, Access::READ.privileged());
    assert_eq!((w.outcome.unwrap().output, w.reads), (0x50_0abc, 4));
    let va = 1u64 << 44;
    assert_eq!(
        pt.translate(&mem, va, Access::READ).outcome,
        Err(s1f(0, FaultKind::InputRange, va))
    );
    // T0SZ = 33: 31-bit input, level 1 with 1 index bit: 0x40000000 is L1[1], the 1G block.
    let pt = VmsaS1::new(0x10_1000, Granule::K4, 33);
    let w = pt.translate(&mem, 0x4000_0010, Access::READ.privileged());
    assert_eq!((w.outcome.unwrap().output, w.reads), (0x4000_0010, 1));
    // 48-bit input at level 0: bits 47:39 index it.
    let pt = VmsaS1::new(TABLES, Granule::K4, 16);
    let va = 0x0000_ff80_0000_0000;
    let w = pt.translate(&mem, va, Access::READ.privileged());
    assert_eq!((w.outcome, w.reads), (Err(s1f(0, FaultKind::Translation, va)), 1));
}

#[test]
fn s1_t0sz_out_of_range_is_a_config_fault() {
    let mem = memory();
    s1_4k_tables(&mem);
    // D8.2: 16..=39 without FEAT_TTST or 52-bit input (4K needs level -1 for 52 bits).
    for t0sz in [0, 12, 15, 40, 64, 70] {
        let pt = VmsaS1::new(TABLES, Granule::K4, t0sz);
        let w = pt.translate(&mem, 0, Access::READ);
        assert_eq!(w.outcome.unwrap_err().kind, FaultKind::Config, "t0sz {t0sz}");
        assert_eq!(w.reads, 0);
    }
}

#[test]
fn s1_ttb1_takes_the_top_of_the_address_space() {
    let mem = memory();
    s1_4k_tables(&mem);
    let pt = VmsaS1 { ttb1: true, ..VmsaS1::new(0x10_1000, Granule::K4, 25) };
    let va = 0xffff_ff80_0000_1abc;
    let w = pt.translate(&mem, va, Access::READ.privileged());
    assert_eq!((w.outcome.unwrap().output, w.reads), (0x50_0abc, 3));
    assert_eq!(
        pt.translate(&mem, 0x1abc, Access::READ).outcome,
        Err(s1f(1, FaultKind::InputRange, 0x1abc))
    );
}

#[test]
fn s1_4k_output_beyond_ips_is_an_address_size_fault() {
    let mem = memory();
    s1_4k_tables(&mem);
    put(&mem, 0x10_3040, 0x0000_0100_0000_0703); // L3[8]: page at 2^40
    put(&mem, 0x10_2010, 0x0000_1000_0000_0003); // L2[2]: table at 2^44
    put(&mem, 0x10_2018, 0x0000_0100_0000_0701); // L2[3]: 2M block at 2^40
    let pt = VmsaS1 { ips: Ps::Bits40, ..VmsaS1::new(TABLES, Granule::K4, 16) };
    assert_eq!(
        pt.translate(&mem, 0x8000, Access::READ.privileged()).outcome,
        Err(s1f(3, FaultKind::AddressSize, 0x8000))
    );
    let va = 0x40_0000;
    let w = pt.translate(&mem, va, Access::READ.privileged());
    assert_eq!((w.outcome, w.reads), (Err(s1f(2, FaultKind::AddressSize, va)), 3));
    let va = 0x60_0000;
    assert_eq!(
        pt.translate(&mem, va, Access::READ.privileged()).outcome,
        Err(s1f(2, FaultKind::AddressSize, va))
    );
    // With a 48-bit IPS the same page is fine, and the table at 2^44 is outside memory.
    let wide = VmsaS1 { ips: Ps::Bits48, ..pt };
    assert_eq!(
        wide.translate(&mem, 0x8000, Access::READ.privileged()).outcome.unwrap().output,
        1 << 40
    );
    assert_eq!(
        wide.translate(&mem, 0x40_0000, Access::READ.privileged()).outcome.unwrap_err().kind,
        FaultKind::ExternalAbort { addr: 1 << 44 }
    );
    // A TTB beyond the output size faults before any read.
    let high_ttb = VmsaS1 { ttb: 1 << 41, ..pt };
    let w = high_ttb.translate(&mem, 0, Access::READ);
    assert_eq!((w.outcome, w.reads), (Err(s1f(0, FaultKind::AddressSize, 0)), 0));
}

// ---------------------------------------------------------------------------------------------
// 4K stage 2. T0SZ = 24 (40-bit IPA), SL0 = 1: level 1 with 10 index bits, two concatenated
// tables at 0x200000 (8K, aligned to 8K). IPA 2^39 is entry 512, the second table's first.
// ---------------------------------------------------------------------------------------------

fn s2_4k(mem: &HostMemory) -> VmsaS2 {
    put(mem, 0x20_1000, 0x0000_0000_0020_2003); // L1[512]: table -> L2 0x202000
    put(mem, 0x20_2000, 0x0000_0000_0020_3003); // L2[0]: table -> L3 0x203000
    put(mem, 0x20_3000, 0x0000_0000_0070_07c3); // L3[0]: page, AF SH S2AP=11 -> 0x700000
    put(mem, 0x20_3008, 0x0000_0000_0070_1743); // L3[1]: S2AP=01 (read)
    put(mem, 0x20_3010, 0x0040_0000_0070_27c3); // L3[2]: S2AP=11, XN[1]
    put(mem, 0x20_3018, 0x0000_0000_0070_3703); // L3[3]: S2AP=00 (none)
    put(mem, 0x20_3020, 0x0008_0000_0070_4743); // L3[4]: S2AP=01, DBM
    put(mem, 0x20_3028, 0x0000_0000_0070_53c3); // L3[5]: S2AP=11, AF = 0
    put(mem, 0x20_3030, 0x0020_0000_0070_67c3); // L3[6]: S2AP=11, XN[0] only
    put(mem, 0x20_3038, 0x0000_0000_0070_77c1); // L3[7]: 0b01 at level 3: reserved
    put(mem, 0x20_3040, 0x0060_0000_0070_87c3); // L3[8]: S2AP=11, XN[1:0] = 0b11
    put(mem, 0x20_1008, 0x0000_0000_4000_07c1); // L1[513]: 1G block -> 0x40000000
    put(mem, 0x20_2008, 0x0000_0000_0060_07c1); // L2[1]: 2M block -> 0x600000
    put(mem, 0x20_0008, 0x0000_0000_8000_07c1); // L1[1]: 1G block -> 0x80000000 (first table)
    VmsaS2::new(0x20_0000, Granule::K4, 24, 1)
}

const IPA: u64 = 1 << 39;

#[test]
fn s2_4k_concatenated_start_and_s2ap() {
    let mem = memory();
    let pt = s2_4k(&mem);
    assert_eq!((pt.start_level(), pt.concatenated()), (1, 2));
    let w = pt.translate(&mem, IPA | 0x123, Access::WRITE);
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.level, w.reads), (0x70_0123, 3, 3));
    assert_eq!(leaf.perms, Perms::RWX);
    assert!(leaf.global);
    // S2AP = 01: read only.
    let leaf = pt.translate(&mem, IPA | 0x1000, Access::READ).outcome.unwrap();
    assert_eq!(leaf.perms, Perms::rwx(true, false, true));
    assert_eq!(
        pt.translate(&mem, IPA | 0x1000, Access::WRITE.privileged()).outcome,
        Err(granting(s2f(3, FaultKind::Permission, IPA | 0x1000), Perms::rwx(true, false, true)))
    );
    // D8.4 "Stage 2 execute-never". XN[1:0] = 0b10 forbids execution at both levels, with
    // FEAT_XNX or without.
    let rw = Perms::rwx(true, true, false);
    let no_x = |pt: &VmsaS2, off: u64, a: Access, granted: Perms| {
        assert_eq!(
            pt.translate(&mem, IPA | off, a).outcome,
            Err(granting(s2f(3, FaultKind::Permission, IPA | off), granted)),
            "XN at {off:#x} for {a:?}"
        );
    };
    let runs = |pt: &VmsaS2, off: u64, a: Access| {
        assert!(pt.translate(&mem, IPA | off, a).outcome.is_ok(), "XN at {off:#x} for {a:?}");
    };
    for xnx in [true, false] {
        let pt = VmsaS2 { xnx, ..pt };
        assert_eq!(pt.translate(&mem, IPA | 0x2000, Access::READ).outcome.unwrap().perms, rw);
        no_x(&pt, 0x2000, Access::EXEC.privileged(), rw);
        no_x(&pt, 0x2000, Access::EXEC, rw);
    }
    // With FEAT_XNX, 0b01 forbids EL1 only and 0b11 EL0 only.
    let el0_only = Perms::RWX.without(Perms::PRIV_X);
    let el1_only = Perms::RWX.without(Perms::USER_X);
    no_x(&pt, 0x6000, Access::EXEC.privileged(), el0_only);
    runs(&pt, 0x6000, Access::EXEC);
    no_x(&pt, 0x8000, Access::EXEC, el1_only);
    runs(&pt, 0x8000, Access::EXEC.privileged());
    // Without it XN[0] is RES0, ignored: 0b01 executes everywhere, 0b11 nowhere.
    let pt = VmsaS2 { xnx: false, ..pt };
    runs(&pt, 0x6000, Access::EXEC.privileged());
    runs(&pt, 0x6000, Access::EXEC);
    no_x(&pt, 0x8000, Access::EXEC, rw);
    no_x(&pt, 0x8000, Access::EXEC.privileged(), rw);
    // S2AP = 00: no access.
    assert_eq!(
        pt.translate(&mem, IPA | 0x3000, Access::READ).outcome,
        Err(granting(s2f(3, FaultKind::Permission, IPA | 0x3000), Perms::rwx(false, false, true)))
    );
    // Reserved level-3 encoding.
    assert_eq!(
        pt.translate(&mem, IPA | 0x7000, Access::READ).outcome,
        Err(s2f(3, FaultKind::Translation, IPA | 0x7000))
    );
}

#[test]
fn s2_4k_blocks() {
    let mem = memory();
    let pt = s2_4k(&mem);
    let ipa = (513u64 << 30) | 0x1234_5678;
    let w = pt.translate(&mem, ipa, Access::READ);
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.page_lg2, leaf.level, w.reads), (0x5234_5678, 30, 1, 1));
    let ipa = IPA | 0x2f_0000;
    let leaf = pt.translate(&mem, ipa, Access::READ).outcome.unwrap();
    assert_eq!((leaf.output, leaf.page_lg2, leaf.level), (0x6f_0000, 21, 2));
    // The first concatenated table holds entries 0..512.
    let leaf = pt.translate(&mem, 0x4000_0008, Access::READ).outcome.unwrap();
    assert_eq!(leaf.output, 0x8000_0008);
    let ipa = 1u64 << 40;
    let w = pt.translate(&mem, ipa, Access::READ);
    assert_eq!((w.outcome, w.reads), (Err(s2f(1, FaultKind::InputRange, ipa)), 0));
}

#[test]
fn s2_4k_access_flag_and_dirty_state() {
    let mem = memory();
    let pt = VmsaS2 { ha: false, hd: false, ..s2_4k(&mem) };
    assert_eq!(
        pt.translate(&mem, IPA | 0x5000, Access::READ).outcome,
        Err(s2f(3, FaultKind::AccessFlag, IPA | 0x5000))
    );
    assert_eq!(
        pt.translate(&mem, IPA | 0x4000, Access::WRITE).outcome,
        Err(granting(s2f(3, FaultKind::Permission, IPA | 0x4000), Perms::rwx(true, false, true)))
    );
    let pt = VmsaS2 { ha: true, hd: true, ..pt };
    assert!(pt.translate(&mem, IPA | 0x5000, Access::READ).outcome.is_ok());
    assert_eq!(get(&mem, 0x20_3028), 0x0000_0000_0070_57c3);
    // D8.5: a write to DBM = 1 sets S2AP[1].
    assert!(!pt.translate(&mem, IPA | 0x4000, Access::READ).outcome.unwrap().dirty);
    let w = pt.translate(&mem, IPA | 0x4000, Access::WRITE);
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.dirty), (0x70_4000, true));
    assert_eq!((w.updates, get(&mem, 0x20_3020)), (1, 0x0008_0000_0070_47c3));
}

#[test]
fn s2_bad_sl0_t0sz_pairs_are_config_faults() {
    let mem = memory();
    s2_4k(&mem);
    // (granule, T0SZ, SL0, starting level reported). AArch64.S2InconsistentSL: the input must
    // leave the starting level 1..=stride+4 bits.
    let bad = [
        (Granule::K4, 16, 1, 1), // 48 bits at level 1: 18 bits, more than 16 tables
        (Granule::K4, 24, 0, 2), // 40 bits at level 2: 19 bits
        (Granule::K4, 34, 2, 0), // 30 bits at level 0: none left for it
        (Granule::K4, 36, 1, 1), // 28 bits at level 1: none left
        (Granule::K4, 25, 3, 3), // SL0 = 3 needs FEAT_TTST
        (Granule::K4, 12, 2, 0), // 52 bits: needs level -1 (not modelled)
        (Granule::K4, 40, 0, 2), // T0SZ above 39
    ];
    for (tg, t0sz, sl0, level) in bad {
        let pt = VmsaS2::new(0x20_0000, tg, t0sz, sl0);
        let w = pt.translate(&mem, 0, Access::READ);
        assert_eq!(
            (w.outcome, w.reads),
            (Err(s2f(level, FaultKind::Config, 0)), 0),
            "{tg:?} T0SZ {t0sz} SL0 {sl0}"
        );
    }
    // The edges of the consistent ranges for SL0 = 1 (level 1): 31..=43 bits.
    for t0sz in [21u8, 33] {
        let pt = VmsaS2::new(0x20_0000, Granule::K4, t0sz, 1);
        assert_ne!(
            pt.translate(&mem, 0, Access::READ).outcome.map_err(|f| f.kind),
            Err(FaultKind::Config),
            "T0SZ {t0sz}"
        );
    }
    for t0sz in [20u8, 34] {
        let pt = VmsaS2::new(0x20_0000, Granule::K4, t0sz, 1);
        assert_eq!(
            pt.translate(&mem, 0, Access::READ).outcome.map_err(|f| f.kind),
            Err(FaultKind::Config),
            "T0SZ {t0sz}"
        );
    }
    // 16 concatenated level-2 tables: T0SZ = 30 (34 bits) with SL0 = 0.
    let pt = VmsaS2::new(0x20_0000, Granule::K4, 30, 0);
    assert_eq!((pt.start_level(), pt.concatenated()), (2, 16));
}

#[test]
fn s2_4k_output_beyond_ps_is_an_address_size_fault() {
    let mem = memory();
    let pt = VmsaS2 { ps: Ps::Bits40, ..s2_4k(&mem) };
    put(&mem, 0x20_3040, 0x0000_0100_0000_07c3); // L3[8]: page at 2^40
    assert_eq!(
        pt.translate(&mem, IPA | 0x8000, Access::READ).outcome,
        Err(s2f(3, FaultKind::AddressSize, IPA | 0x8000))
    );
    let pt = VmsaS2 { ps: Ps::Bits42, ..pt };
    assert_eq!(pt.translate(&mem, IPA | 0x8000, Access::READ).outcome.unwrap().output, 1 << 40);
}

#[test]
fn s1_4k_affd_takes_af_as_set_without_writing_it() {
    let mem = memory();
    // L3[5] has AF = 0.
    let pt = VmsaS1 { ha: false, affd: true, ..s1_4k(&mem) };
    let w = pt.translate(&mem, 0x5000, Access::READ.privileged());
    assert_eq!(w.outcome.unwrap().output, 0x50_4000);
    assert_eq!((w.updates, get(&mem, 0x10_3028)), (0, 0x0000_0000_0050_4303));
    // With HA, AFFD is ignored: the flag is set.
    let pt = VmsaS1 { ha: true, ..pt };
    let w = pt.translate(&mem, 0x5000, Access::READ.privileged());
    assert_eq!((w.updates, get(&mem, 0x10_3028)), (1, 0x0000_0000_0050_4703));
}

#[test]
fn s1_4k_pan_denies_privileged_data_access_to_el0_pages() {
    let mem = memory();
    let pt = VmsaS1 { pan: true, ..s1_4k(&mem) };
    // L3[3]: AP = 01, EL0 RW: privileged reads and writes fault, EL0 ones do not.
    assert_eq!(
        pt.translate(&mem, 0x3008, Access::READ.privileged()).outcome,
        Err(granting(
            s1f(3, FaultKind::Permission, 0x3008),
            Perms::USER_R.union(Perms::USER_W).union(Perms::USER_X)
        ))
    );
    assert_eq!(
        pt.translate(&mem, 0x3008, Access::WRITE.privileged()).outcome,
        Err(granting(
            s1f(3, FaultKind::Permission, 0x3008),
            Perms::USER_R.union(Perms::USER_W).union(Perms::USER_X)
        ))
    );
    let leaf = pt.translate(&mem, 0x3008, Access::WRITE).outcome.unwrap();
    assert_eq!(leaf.perms, USER_RW.union(Perms::USER_X));
    // L3[1]: AP = 00, EL1 only: PAN does not apply.
    assert!(pt.translate(&mem, 0x1abc, Access::WRITE.privileged()).outcome.is_ok());
}

#[test]
fn s2_4k_affd_takes_af_as_set() {
    let mem = memory();
    // T0SZ 34 (30-bit IPA), SL0 0: a two-level walk from level 2.
    // L2 0x100000[0] -> L3 0x101000; L3[0] page with AF = 0, S2AP RW.
    put(&mem, 0x10_0000, 0x0000_0000_0010_1003);
    put(&mem, 0x10_1000, 0x0000_0000_0050_03c3);
    let pt = VmsaS2 { ha: false, ..VmsaS2::new(TABLES, Granule::K4, 34, 0) };
    assert_eq!(
        pt.translate(&mem, 0x123, Access::READ).outcome,
        Err(s2f(3, FaultKind::AccessFlag, 0x123))
    );
    let pt = VmsaS2 { affd: true, ..pt };
    let w = pt.translate(&mem, 0x123, Access::READ);
    assert_eq!((w.outcome.unwrap().output, w.updates), (0x50_0123, 0));
}

/// D8.3 "Output address fields", read without a walk (as a debugger shows a descriptor): bits
/// 47 down to the granule's page bits, plus `OA[51:48]` from bits 15:12 with the 64K granule
/// under FEAT_LPA, or `OA[51:50]` from bits 9:8 with 4K/16K under FEAT_LPA2.
#[test]
fn descriptor_addresses_read_without_a_walk() {
    use sviommu_pgtable::vmsa::{descriptor_addr, Oa52};
    let raw = 0x0000_f123_4567_f743;
    assert_eq!(descriptor_addr(raw, Granule::K4, Oa52::Off), 0x0000_f123_4567_f000);
    assert_eq!(descriptor_addr(raw, Granule::K16, Oa52::Lpa), 0x0000_f123_4567_c000);
    assert_eq!(descriptor_addr(raw, Granule::K64, Oa52::Off), 0x0000_f123_4567_0000);
    assert_eq!(descriptor_addr(raw, Granule::K64, Oa52::Lpa), 0x000f_f123_4567_0000);
    // LPA2: bits 49:48 are address bits too, bits 9:8 (0b11 here) are OA[51:50].
    let raw = 0x0003_0000_4000_0343;
    assert_eq!(descriptor_addr(raw, Granule::K4, Oa52::Lpa2), 0x000f_0000_4000_0000);
}

/// D8.2: VA[55] picks TTB1's tables, whatever bits 63:56 hold.
#[test]
fn va_bit_55_selects_ttb1() {
    use sviommu_pgtable::vmsa::s1::selects_ttb1;
    assert!(selects_ttb1(0xffff_8000_0000_0000));
    assert!(selects_ttb1(0x0080_0000_0000_0000));
    assert!(!selects_ttb1(0xff7f_ffff_ffff_ffff));
    assert!(!selects_ttb1(0x0000_7fff_ffff_f000));
}

/// `f` with the rights its permission check found.
fn granting(f: Fault, granted: Perms) -> Fault {
    Fault { granted: Some(granted), ..f }
}

//! VMSAv8-64 hand-typed vectors for the 16K and 64K granules and for 52-bit output addresses
//! (FEAT_LPA with 64K, FEAT_LPA2 with 4K/16K), written from the Arm ARM (DDI 0487 K.a) D8.3
//! descriptor figures.
//!
//! D8.3 address fields: 16K: OA in bits 47:14, 64K: bits 47:16; with FEAT_LPA and a 52-bit PS
//! the 64K OA[51:48] is in bits 15:12; with FEAT_LPA2 (DS = 1) the 4K/16K OA[49:p] is in bits
//! 49:p and OA[51:50] in bits 9:8 (the SH field). D8.2 strides: 11 (16K), 13 (64K) index bits.

use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule, Oa52, Ps, VmsaS1, VmsaS2};
use sviommu_pgtable::{Access, Build, Fault, FaultKind, Perms, Stage, Walk};

const TABLES: u64 = 0x10_0000;

fn memory() -> HostMemory {
    HostMemory::new(&[(Hpa(TABLES), 0x100_0000)]).unwrap()
}

fn put(mem: &HostMemory, addr: u64, raw: u64) {
    mem.write_u64(Hpa(addr), raw).unwrap();
}

fn fault(stage: Stage, level: i8, kind: FaultKind, input: u64) -> Fault {
    Fault { stage, level, kind, input, s1_fetch: None, granted: None }
}

const R: Access = Access::READ.privileged();

/// `(output, page_lg2, level, reads)` of a successful walk.
fn leaf<W: Walk>(pt: &W, mem: &HostMemory, va: u64) -> (u64, u8, i8, u32) {
    let w = pt.translate(mem, va, R);
    let l = w.outcome.unwrap_or_else(|f| panic!("{va:#x}: {f}"));
    (l.output, l.page_lg2, l.level, w.reads)
}

// ---------------------------------------------------------------------------------------------
// 16K stage 1: L0 0x100000 (2 entries at 48 bits) -> L1 0x104000 -> L2 0x108000 -> L3 0x10c000.
// Entry spans: L3 16K (bit 14), L2 32M (bit 25), L1 64G (bit 36), L0 128T (bit 47).
// ---------------------------------------------------------------------------------------------

fn s1_16k_tables(mem: &HostMemory) {
    put(mem, 0x10_0000, 0x0000_0000_0010_4003); // L0[0]: table -> L1
    put(mem, 0x10_4000, 0x0000_0000_0010_8003); // L1[0]: table -> L2
    put(mem, 0x10_8000, 0x0000_0000_0010_c003); // L2[0]: table -> L3
    put(mem, 0x10_c008, 0x0000_0000_0050_4743); // L3[1]: page, AP=01 -> 0x504000
    put(mem, 0x10_c010, 0x0000_0000_0050_b743); // L3[2]: page -> 0x508000, RES0 bits 13:12 set
    put(mem, 0x10_8008, 0x0000_0000_0400_0741); // L2[1]: 32M block -> 0x4000000
    put(mem, 0x10_4008, 0x0000_0010_0000_0741); // L1[1]: 64G block: only with DS = 1
}

#[test]
fn s1_16k_walks_from_levels_0_and_1() {
    let mem = memory();
    s1_16k_tables(&mem);
    // T0SZ = 16: 48 bits, level 0 resolves one bit.
    let pt = VmsaS1::new(TABLES, Granule::K16, 16);
    assert_eq!(pt.start_level(), 0);
    assert_eq!(leaf(&pt, &mem, 0x4abc), (0x50_4abc, 14, 3, 4));
    let va = 1u64 << 47;
    assert_eq!(
        pt.translate(&mem, va, R).outcome,
        Err(fault(Stage::S1, 0, FaultKind::Translation, va))
    );
    // T0SZ = 17: 47 bits, starting at level 1 with a full table.
    let pt = VmsaS1::new(0x10_4000, Granule::K16, 17);
    assert_eq!(pt.start_level(), 1);
    assert_eq!(leaf(&pt, &mem, 0x4abc), (0x50_4abc, 14, 3, 3));
    // IMPDEF: RES0 bits 13:12 of a 16K page descriptor are ignored.
    assert_eq!(leaf(&pt, &mem, 0x8010), (0x50_8010, 14, 3, 3));
    // 32M block at level 2.
    assert_eq!(leaf(&pt, &mem, 0x3ff_fff0), (0x5ff_fff0, 25, 2, 2));
    // No 64G level-1 block without DS: invalid, a Translation fault.
    let va = 1u64 << 36;
    assert_eq!(
        pt.translate(&mem, va, R).outcome,
        Err(fault(Stage::S1, 1, FaultKind::Translation, va))
    );
    // T0SZ = 28: 36 bits, starting at level 2.
    let pt = VmsaS1::new(0x10_8000, Granule::K16, 28);
    assert_eq!(pt.start_level(), 2);
    assert_eq!(leaf(&pt, &mem, 0x4abc), (0x50_4abc, 14, 3, 2));
}

#[test]
fn s1_16k_52_bit_input_and_64g_block_with_lpa2() {
    let mem = memory();
    // T0SZ = 12 with DS = 1: 52 bits, level 0 resolves 5 bits (32 entries, 256 bytes).
    // L0[16] (input bit 51) -> L1 0x104000, whose [0] is a 64G block at 0x1000000000.
    put(&mem, 0x10_0080, 0x0000_0000_0010_4003);
    put(&mem, 0x10_4000, 0x0000_0010_0000_0401);
    let pt = VmsaS1 { oa_52: Oa52::Lpa2, ips: Ps::Bits52, ..VmsaS1::new(TABLES, Granule::K16, 12) };
    assert_eq!(pt.start_level(), 0);
    let va = (1u64 << 51) | 0x5_0000_1234;
    assert_eq!(leaf(&pt, &mem, va), (0x15_0000_1234, 36, 1, 2));
    // Without FEAT_LPA2 a 52-bit input is out of range for 16K.
    let off = VmsaS1 { oa_52: Oa52::Off, ..pt };
    assert_eq!(off.translate(&mem, va, R).outcome.unwrap_err().kind, FaultKind::Config);
}

// ---------------------------------------------------------------------------------------------
// 64K stage 1: L1 0x100000 (64 entries at 48 bits) -> L2 0x110000 -> L3 0x120000.
// Entry spans: L3 64K (bit 16), L2 512M (bit 29), L1 4T (bit 42).
// ---------------------------------------------------------------------------------------------

fn s1_64k_tables(mem: &HostMemory) {
    put(mem, 0x10_0000, 0x0000_0000_0011_0003); // L1[0]: table -> L2
    put(mem, 0x11_0000, 0x0000_0000_0012_0003); // L2[0]: table -> L3
    put(mem, 0x12_0008, 0x0000_0000_0050_0743); // L3[1]: page -> 0x500000
    put(mem, 0x12_0010, 0x0000_0000_0051_f743); // L3[2]: page -> 0x510000, bits 15:12 = 0xf
    put(mem, 0x12_0018, 0x0000_0000_0052_a743); // L3[3]: page -> 0x520000, bits 15:12 = 0xa
    put(mem, 0x11_0008, 0x0000_0000_4000_0741); // L2[1]: 512M block -> 0x40000000
    put(mem, 0x10_0008, 0x0000_0400_0000_0741); // L1[1]: 4T block: only with FEAT_LPA
    put(mem, 0x11_0010, 0x0000_0000_0000_1003); // L2[2]: table, bits 15:12 = 1
    put(mem, 0x12_0020, 0x0000_2000_0000_0743); // L3[4]: page at 2^45
}

#[test]
fn s1_64k_walks_and_blocks() {
    let mem = memory();
    s1_64k_tables(&mem);
    // T0SZ = 16: 48 bits, level 1 resolves 6 bits.
    let pt = VmsaS1::new(TABLES, Granule::K64, 16);
    assert_eq!(pt.start_level(), 1);
    assert_eq!(leaf(&pt, &mem, 0x1_2345), (0x50_2345, 16, 3, 3));
    assert_eq!(leaf(&pt, &mem, 0x3fff_0000), (0x5fff_0000, 29, 2, 2));
    // Without LPA, bits 15:12 are RES0 and ignored.
    assert_eq!(leaf(&pt, &mem, 0x2_0010), (0x51_0010, 16, 3, 3));
    // No 4T block without FEAT_LPA.
    let va = 1u64 << 42;
    assert_eq!(
        pt.translate(&mem, va, R).outcome,
        Err(fault(Stage::S1, 1, FaultKind::Translation, va))
    );
    let va = 1u64 << 48;
    assert_eq!(
        pt.translate(&mem, va, R).outcome,
        Err(fault(Stage::S1, 1, FaultKind::InputRange, va))
    );
    // T0SZ = 22: 42 bits, starting at level 2 with a full table.
    let pt = VmsaS1::new(0x11_0000, Granule::K64, 22);
    assert_eq!(pt.start_level(), 2);
    assert_eq!(leaf(&pt, &mem, 0x1_2345), (0x50_2345, 16, 3, 2));
    // A 44-bit IPS faults the page at 2^45.
    let narrow = VmsaS1 { ips: Ps::Bits44, ..pt };
    assert_eq!(
        narrow.translate(&mem, 0x4_0000, R).outcome,
        Err(fault(Stage::S1, 3, FaultKind::AddressSize, 0x4_0000))
    );
    assert_eq!(leaf(&pt, &mem, 0x4_0000).0, 1 << 45);
}

#[test]
fn s1_64k_lpa_output_bits_51_48() {
    let mem = memory();
    s1_64k_tables(&mem);
    let pt = VmsaS1 { oa_52: Oa52::Lpa, ips: Ps::Bits52, ..VmsaS1::new(TABLES, Granule::K64, 16) };
    // Bits 15:12 are OA[51:48].
    assert_eq!(leaf(&pt, &mem, 0x3_0042), (0x000a_0000_0052_0042, 16, 3, 3));
    assert_eq!(leaf(&pt, &mem, 0x2_0010), (0x000f_0000_0051_0010, 16, 3, 3));
    // The 4T level-1 block.
    let va = (1u64 << 42) | 0x123_4567_8000;
    assert_eq!(leaf(&pt, &mem, va), (va, 42, 1, 1));
    // A table at 2^48 (bits 15:12 = 1): outside memory.
    let va = 0x4000_0000;
    assert_eq!(
        pt.translate(&mem, va, R).outcome.unwrap_err().kind,
        FaultKind::ExternalAbort { addr: 1 << 48 }
    );
    // With a 48-bit PS the LPA layout is not in force: bits 15:12 are ignored again.
    let ps48 = VmsaS1 { ips: Ps::Bits48, ..pt };
    assert_eq!(leaf(&ps48, &mem, 0x3_0042), (0x52_0042, 16, 3, 3));
    assert_eq!(
        ps48.translate(&mem, va, R).outcome.unwrap_err().kind,
        FaultKind::ExternalAbort { addr: 0 }
    );
    // 52-bit input with 64K (FEAT_LVA, with FEAT_LPA here): level 1 resolves 10 bits.
    let wide_in = VmsaS1 { t0sz: 12, ..pt };
    assert_eq!(wide_in.start_level(), 1);
    let va = (1u64 << 51) | 0x1_0000;
    assert_eq!(
        wide_in.translate(&mem, va, R).outcome,
        Err(fault(Stage::S1, 1, FaultKind::Translation, va))
    );
    assert_eq!(leaf(&wide_in, &mem, 0x3_0042).0, 0x000a_0000_0052_0042);
}

// ---------------------------------------------------------------------------------------------
// 4K with FEAT_LPA2 (DS = 1): L0 0x100000 -> L1 0x101000 -> L2 0x102000 -> L3 0x103000.
// ---------------------------------------------------------------------------------------------

#[test]
fn s1_4k_lpa2_output_bits_51_48() {
    let mem = memory();
    put(&mem, 0x10_0000, 0x0000_0000_0010_1003); // L0[0] -> L1
    put(&mem, 0x10_1000, 0x0000_0000_0010_2003); // L1[0] -> L2
    put(&mem, 0x10_2000, 0x0000_0000_0010_3003); // L2[0] -> L3
                                                 // L3[1]: OA 0x000f_0123_4567_8000: OA[49:48] = 0b11 in place, OA[51:50] = 0b11 in bits 9:8.
    put(&mem, 0x10_3008, 0x0003_0123_4567_8743);
    // L0[1]: 512G block at OA 2^51: OA[51:50] = 0b10 in bits 9:8.
    put(&mem, 0x10_0008, 0x0000_0000_0000_0601);
    // L2[2]: table at NLTA 2^50 + 0x104000: NLTA[51:50] = 0b01 in bits 9:8.
    put(&mem, 0x10_2010, 0x0000_0000_0010_4103);
    let pt = VmsaS1 { oa_52: Oa52::Lpa2, ips: Ps::Bits52, ..VmsaS1::new(TABLES, Granule::K4, 16) };
    assert_eq!(leaf(&pt, &mem, 0x1abc), (0x000f_0123_4567_8abc, 12, 3, 4));
    let va = (1u64 << 39) | 0x1234;
    assert_eq!(leaf(&pt, &mem, va), (0x0008_0000_0000_1234, 39, 0, 1));
    assert_eq!(
        pt.translate(&mem, 0x40_0000, R).outcome.unwrap_err().kind,
        FaultKind::ExternalAbort { addr: (1 << 50) | 0x10_4000 }
    );
    // DS = 1 with a 48-bit PS: the same page is beyond the output size.
    let ps48 = VmsaS1 { ips: Ps::Bits48, ..pt };
    assert_eq!(
        ps48.translate(&mem, 0x1abc, R).outcome,
        Err(fault(Stage::S1, 3, FaultKind::AddressSize, 0x1abc))
    );
    // Without LPA2, bits 9:8 are SH and bits 49:48 RES0: the output is bits 47:12.
    let off = VmsaS1 { oa_52: Oa52::Off, ..pt };
    assert_eq!(leaf(&off, &mem, 0x1abc), (0x0123_4567_8abc, 12, 3, 4));
    assert_eq!(
        off.translate(&mem, va, R).outcome,
        Err(fault(Stage::S1, 0, FaultKind::Translation, va))
    );
    // FEAT_LPA (not LPA2) does nothing for 4K: still 48-bit output, no level-0 block.
    let lpa = VmsaS1 { oa_52: Oa52::Lpa, ..pt };
    assert_eq!(leaf(&lpa, &mem, 0x1abc).0, 0x0123_4567_8abc);
}

// ---------------------------------------------------------------------------------------------
// Stage 2, 16K and 64K.
// ---------------------------------------------------------------------------------------------

#[test]
fn s2_16k_eight_concatenated_level_2_tables() {
    let mem = memory();
    // T0SZ = 25 (39 bits), SL0 = 1: level 2 resolves 14 bits, 8 tables of 2048 entries at
    // 0x120000 (128K, aligned to 128K). IPA 2^38 is entry 8192: table 4, entry 0, at 0x130000.
    put(&mem, 0x13_0000, 0x0000_0000_0600_07c1); // 32M block -> 0x6000000
    put(&mem, 0x12_0008, 0x0000_0000_0014_0003); // entry 1: table -> L3 0x140000
    put(&mem, 0x14_0000, 0x0000_0000_0070_47c3); // L3[0]: page -> 0x704000
    let pt = VmsaS2::new(0x12_0000, Granule::K16, 25, 1);
    assert_eq!((pt.start_level(), pt.concatenated()), (2, 8));
    assert_eq!(leaf(&pt, &mem, 0x40_0012_3456), (0x612_3456, 25, 2, 1));
    assert_eq!(leaf(&pt, &mem, 0x200_0abc), (0x70_4abc, 14, 3, 2));
    // SL0 = 0 starts at level 3: T0SZ = 39 (25 bits) leaves it 11 bits.
    let l3 = VmsaS2::new(0x14_0000, Granule::K16, 39, 0);
    assert_eq!(l3.start_level(), 3);
    assert_eq!(leaf(&l3, &mem, 0xabc), (0x70_4abc, 14, 3, 1));
}

#[test]
fn s2_64k_sixteen_concatenated_level_2_tables() {
    let mem = memory();
    // T0SZ = 18 (46 bits), SL0 = 1: level 2 resolves 17 bits, 16 tables of 8192 entries at
    // 0x200000 (1M, aligned). IPA 2^45 is entry 65536: table 8, entry 0, at 0x280000.
    put(&mem, 0x28_0000, 0x0000_0001_2000_07c1); // 512M block -> 0x120000000
    let pt = VmsaS2::new(0x20_0000, Granule::K64, 18, 1);
    assert_eq!((pt.start_level(), pt.concatenated()), (2, 16));
    assert_eq!(leaf(&pt, &mem, 0x2000_0000_1234), (0x1_2000_1234, 29, 2, 1));
    // FEAT_LPA with a 52-bit PS: bits 15:12 of the block are OA[51:48].
    put(&mem, 0x28_0008, 0x0000_0001_4000_37c1);
    let lpa = VmsaS2 { oa_52: Oa52::Lpa, ps: Ps::Bits52, ..pt };
    assert_eq!(leaf(&lpa, &mem, 0x2000_2000_0042), (0x0003_0001_4000_0042, 29, 2, 1));
    assert_eq!(leaf(&pt, &mem, 0x2000_2000_0042).0, 0x1_4000_0042);
}

#[test]
fn s2_16k_and_64k_bad_sl0_t0sz_pairs_are_config_faults() {
    let mem = memory();
    let s2f = |level, input| Err(fault(Stage::S2, level, FaultKind::Config, input));
    // (granule, T0SZ, SL0, level the fault names)
    let bad = [
        (Granule::K16, 16, 3, 0), // level 0 needs DS = 1
        (Granule::K16, 23, 1, 2), // 41 bits at level 2: 16 bits, more than 16 tables
        (Granule::K16, 28, 2, 1), // 36 bits at level 1: nothing left for it
        (Granule::K64, 16, 3, 0), // SL0 = 3 is reserved for 64K
        (Granule::K64, 22, 2, 1), // 42 bits at level 1: nothing left
        (Granule::K64, 17, 1, 2), // 47 bits at level 2: 18 bits
        (Granule::K64, 12, 2, 1), // 52 bits needs FEAT_LPA
    ];
    for (tg, t0sz, sl0, level) in bad {
        let pt = VmsaS2::new(0x20_0000, tg, t0sz, sl0);
        let w = pt.translate(&mem, 0, Access::READ);
        assert_eq!((w.outcome, w.reads), (s2f(level, 0), 0), "{tg:?} {t0sz} {sl0}");
    }
    // The same pairs made good: 16K SL0 = 3 with DS = 1; 64K 52 bits with FEAT_LPA.
    let ok = [
        VmsaS2 { oa_52: Oa52::Lpa2, ..VmsaS2::new(0x20_0000, Granule::K16, 16, 3) },
        VmsaS2 { oa_52: Oa52::Lpa, ..VmsaS2::new(0x20_0000, Granule::K64, 12, 2) },
        VmsaS2::new(0x20_0000, Granule::K64, 36, 0),
        // 40 bits at 16K level 2: 15 bits, exactly 16 tables.
        VmsaS2::new(0x20_0000, Granule::K16, 24, 1),
    ];
    for pt in ok {
        let kind = pt.translate(&mem, 0, Access::READ).outcome.unwrap_err().kind;
        assert_eq!(kind, FaultKind::Translation, "{pt:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Builders: what they write, checked against hand-typed words, and what they refuse.
// ---------------------------------------------------------------------------------------------

mod builders {
    use sviommu_memory::FrameAllocator;
    use sviommu_pgtable::vmsa::{S1Attrs, S2Attrs};
    use sviommu_pgtable::{MapError, WalkStep};

    use super::*;

    fn frames() -> FrameAllocator<Hpa> {
        FrameAllocator::new(&[(Hpa(TABLES), 0x100_0000)])
    }

    /// The raw descriptors a walk of `va` reads.
    fn raws<W: Walk>(pt: &W, mem: &HostMemory, va: u64) -> Vec<u64> {
        let (_, steps) = pt.translate_observed(mem, va, R, Vec::<WalkStep>::new());
        steps.iter().map(|s| s.raw).collect()
    }

    #[test]
    fn leaves_are_encoded_as_the_arm_arm_lays_them_out() {
        let mem = memory();
        let mut fa = frames();
        let pt = VmsaS1::create(
            &mem,
            &mut fa,
            VmsaS1 { oa_52: Oa52::Lpa2, ips: Ps::Bits52, ..VmsaS1::new(0, Granule::K4, 16) },
        )
        .unwrap();
        let attrs = S1Attrs {
            writable: true,
            user: true,
            user_exec: true,
            priv_exec: false,
            global: true,
            dbm: false,
            attr_indx: 0,
        };
        pt.map(&mem, &mut fa, 0x1000, 0x000f_0123_4567_8000, 12, attrs).unwrap();
        // PXN (53), OA[49:48] in place, OA[51:50] in 9:8, AF, AP = 01, page.
        assert_eq!(raws(&pt, &mem, 0x1000).last(), Some(&0x0023_0123_4567_8743));
        // 64K with FEAT_LPA: a 512M block at OA 0xa_0000_4000_0000, read-only, not global,
        // UXN, DBM, AttrIndx 2: OA[51:48] in 15:12, SH = 11.
        let pt = VmsaS1::create(
            &mem,
            &mut fa,
            VmsaS1 { oa_52: Oa52::Lpa, ips: Ps::Bits52, ..VmsaS1::new(0, Granule::K64, 16) },
        )
        .unwrap();
        let attrs = S1Attrs {
            writable: false,
            user: false,
            user_exec: false,
            priv_exec: true,
            global: false,
            dbm: true,
            attr_indx: 2,
        };
        pt.map(&mem, &mut fa, 0x2000_0000, 0x000a_0000_4000_0000, 29, attrs).unwrap();
        assert_eq!(raws(&pt, &mem, 0x2000_0000).last(), Some(&0x0048_0000_4000_af89));
        // Stage 2, 16K: a page, read + write, XN, MemAttr 0b1111, SH = 11, AF.
        let pt = VmsaS2::create(&mem, &mut fa, VmsaS2::new(0, Granule::K16, 28, 1)).unwrap();
        let attrs = S2Attrs { read: true, write: true, exec: false, dbm: false, mem_attr: 0b1111 };
        pt.map(&mem, &mut fa, 0x4000, 0x70_4000, 14, attrs).unwrap();
        assert_eq!(raws(&pt, &mem, 0x4000).last(), Some(&0x0040_0000_0070_47ff));
    }

    #[test]
    fn refused_maps_change_nothing() {
        let mem = memory();
        let mut fa = frames();
        let pt = VmsaS1::create(&mem, &mut fa, VmsaS1::new(0, Granule::K16, 17)).unwrap();
        let free = fa.free_bytes();
        let a = S1Attrs::ALL;
        // 16K has pages and 32M blocks; no 2M, no 64G without DS.
        for size_lg2 in [12, 21, 36] {
            assert_eq!(
                pt.map(&mem, &mut fa, 0, 0, size_lg2, a),
                Err(MapError::PageSize { size_lg2 })
            );
        }
        assert!(matches!(
            pt.map(&mem, &mut fa, 0x2000, 0x4000, 14, a),
            Err(MapError::Misaligned { .. })
        ));
        assert_eq!(
            pt.map(&mem, &mut fa, 1 << 47, 0, 14, a),
            Err(MapError::InputRange { input: 1 << 47 })
        );
        assert!(matches!(
            pt.map(&mem, &mut fa, 0, 1 << 48, 14, a),
            Err(MapError::OutputRange { .. })
        ));
        assert_eq!(fa.free_bytes(), free, "refused maps allocate nothing");
        pt.map(&mem, &mut fa, 0x200_4000, 0x8000, 14, a).unwrap();
        assert_eq!(
            pt.map(&mem, &mut fa, 0x200_0000, 0, 25, a),
            Err(MapError::Overlap { input: 0x200_0000 })
        );
        assert!(matches!(pt.unmap(&mem, 0x200_6000, 0x1000), Err(MapError::SplitsLeaf { .. })));
        // 64K: no 4T block without FEAT_LPA, and an output beyond 48 bits.
        let pt = VmsaS1::create(&mem, &mut fa, VmsaS1::new(0, Granule::K64, 16)).unwrap();
        assert_eq!(pt.map(&mem, &mut fa, 0, 0, 42, a), Err(MapError::PageSize { size_lg2: 42 }));
        // An invalid configuration creates nothing.
        let before = fa.free_bytes();
        assert_eq!(
            VmsaS2::create(&mem, &mut fa, VmsaS2::new(0, Granule::K4, 16, 1)),
            Err(MapError::Config)
        );
        assert_eq!(
            VmsaS1::create(&mem, &mut fa, VmsaS1::new(0, Granule::K4, 12)),
            Err(MapError::Config)
        );
        assert_eq!(fa.free_bytes(), before);
    }

    #[test]
    fn stage_2_create_allocates_the_concatenated_start_table_aligned() {
        let mem = memory();
        let mut fa = frames();
        // Take a 4K page first so the next free block is not naturally 64K-aligned by luck.
        let _ = fa.alloc(&mem, 12).unwrap();
        let before = fa.free_bytes();
        let pt = VmsaS2::create(&mem, &mut fa, VmsaS2::new(0, Granule::K4, 30, 0)).unwrap();
        assert_eq!(pt.concatenated(), 16);
        assert_eq!(pt.ttb % 0x1_0000, 0);
        assert_eq!(before - fa.free_bytes(), 0x1_0000);
        // Both ends of the 34-bit IPA space land in it.
        for ipa in [0u64, (1 << 34) - 0x1000] {
            pt.map(&mem, &mut fa, ipa, 0x9000_0000, 12, S2Attrs::ALL).unwrap();
            assert_eq!(leaf(&pt, &mem, ipa | 0x10), (0x9000_0010, 12, 3, 2));
        }
        // 64K with 16 tables: 1M.
        let before = fa.free_bytes();
        let pt = VmsaS2::create(&mem, &mut fa, VmsaS2::new(0, Granule::K64, 18, 1)).unwrap();
        assert_eq!(pt.ttb % 0x10_0000, 0);
        assert_eq!(before - fa.free_bytes(), 0x10_0000);
    }

    #[test]
    fn restrict_marks_table_descriptors_only() {
        let mem = memory();
        let mut fa = frames();
        let pt = VmsaS1::create(&mem, &mut fa, VmsaS1::new(0, Granule::K4, 25)).unwrap();
        pt.map(&mem, &mut fa, 0x20_1000, 0x9000, 12, S1Attrs::ALL).unwrap();
        pt.map(&mem, &mut fa, 0x4000_0000, 0x4000_0000, 30, S1Attrs::ALL).unwrap();
        let no_write = S1Attrs { writable: false, ..S1Attrs::ALL };
        // Level 1 on the 1G block's path is the block itself: nothing to restrict.
        assert!(!pt.restrict(&mem, 0x4000_0000, 1, no_write).unwrap());
        assert!(!pt.restrict(&mem, 0x20_1000, 3, no_write).unwrap());
        assert!(!pt.restrict(&mem, 0x20_1000, 0, no_write).unwrap());
        assert!(pt.restrict(&mem, 0x20_1000, 1, no_write).unwrap());
        // APTable[1] is bit 62 of the level-1 descriptor.
        assert_eq!(raws(&pt, &mem, 0x20_1000)[0] >> 61, 0b10);
        let w = pt.translate(&mem, 0x20_1000, Access::WRITE.privileged());
        assert_eq!(
            w.outcome,
            Err(granting(
                fault(Stage::S1, 3, FaultKind::Permission, 0x20_1000),
                Perms::rwx(true, false, true)
            ))
        );
    }
}

/// `f` with the rights its permission check found.
fn granting(f: Fault, granted: Perms) -> Fault {
    Fault { granted: Some(granted), ..f }
}

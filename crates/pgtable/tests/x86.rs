//! x86-64 4- and 5-level paging: hand-typed vectors, tables built by the `x86_64` crate, an
//! oracle property test, and random bytes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sviommu_memory::{FrameAllocator, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, Fault, FaultKind, MapError, Perms, Stage, Walk};

const TABLES: u64 = 0x10_0000;

fn memory() -> HostMemory {
    // Tables live in 1 MiB..17 MiB; everything else is a hole.
    HostMemory::new(&[(Hpa(TABLES), 0x100_0000)]).unwrap()
}

fn put(mem: &HostMemory, addr: u64, raw: u64) {
    mem.write_u64(Hpa(addr), raw).unwrap();
}

fn fault(level: i8, kind: FaultKind, input: u64) -> Fault {
    Fault { stage: Stage::S1, level, kind, input, s1_fetch: None, granted: None }
}

// ---------------------------------------------------------------------------------------------
// Hand-typed vectors. Words follow SDM Vol. 3A §4.5, Tables 4-15 (PML4E), 4-17 (PDPTE
// referencing a page directory), 4-18 (PDE mapping 2M), 4-19 (PDE referencing a page table),
// 4-20 (PTE): bit 0 P, 1 R/W, 2 U/S, 5 A, 6 D, 7 PS, 8 G, 63 XD.
// ---------------------------------------------------------------------------------------------

/// PML4 at 0x100000 -> PDPT 0x101000 -> PD 0x102000 -> PT 0x103000.
fn four_level_vectors(mem: &HostMemory) -> X86Paging {
    put(mem, 0x10_0000, 0x0000_0000_0010_1007); // PML4E[0]: P RW US -> PDPT
    put(mem, 0x10_1000, 0x0000_0000_0010_2007); // PDPTE[0]: P RW US -> PD
    put(mem, 0x10_2000, 0x0000_0000_0010_3007); // PDE[0]:   P RW US -> PT
    put(mem, 0x10_3008, 0x0000_0000_0050_0003); // PTE[1]:   P RW, supervisor -> 0x500000
    put(mem, 0x10_3010, 0x8000_0000_0050_1005); // PTE[2]:   P US XD, read-only -> 0x501000
    put(mem, 0x10_2008, 0x0000_0000_0060_0087); // PDE[1]:   P RW US PS -> 2M at 0x600000
    put(mem, 0x10_1008, 0x0000_0000_4000_0087); // PDPTE[1]: P RW US PS -> 1G at 0x40000000
    X86Paging::new(TABLES, Levels::Four)
}

#[test]
fn vector_4k_page_supervisor_only() {
    let mem = memory();
    let pt = four_level_vectors(&mem);
    let w = pt.translate(&mem, 0x1abc, Access::READ.privileged());
    let leaf = w.outcome.unwrap();
    assert_eq!(leaf.output, 0x50_0abc);
    assert_eq!((leaf.page_lg2, leaf.level, w.reads), (12, 1, 4));
    assert_eq!(leaf.perms, Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::PRIV_X));
    // U/S = 0 in the PTE: a user access faults at the leaf.
    let w = pt.translate(&mem, 0x1abc, Access::READ);
    assert_eq!(
        w.outcome,
        Err(granting(
            fault(1, FaultKind::Permission, 0x1abc),
            Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::PRIV_X)
        ))
    );
}

#[test]
fn vector_accessed_and_dirty_are_set_by_the_walk() {
    let mem = memory();
    let pt = four_level_vectors(&mem);
    let read = pt.translate(&mem, 0x1000, Access::READ.privileged()).outcome.unwrap();
    assert!(read.perms.allows(Access::WRITE.privileged()));
    assert!(!read.dirty, "writable but clean: a cached copy must not serve a write");
    // §4.8: A in every entry used; no D on a read.
    assert_eq!(mem.read_u64(Hpa(0x10_0000)).unwrap(), 0x0000_0000_0010_1027);
    assert_eq!(mem.read_u64(Hpa(0x10_3008)).unwrap(), 0x0000_0000_0050_0023);
    let w = pt.translate(&mem, 0x1000, Access::WRITE.privileged());
    assert!(w.outcome.unwrap().dirty);
    assert_eq!(mem.read_u64(Hpa(0x10_3008)).unwrap(), 0x0000_0000_0050_0063);
    // A faulting write sets no D.
    let w = pt.translate(&mem, 0x2000, Access::WRITE);
    assert_eq!(
        w.outcome,
        Err(granting(fault(1, FaultKind::Permission, 0x2000), Perms::rwx(true, false, false)))
    );
    assert_eq!(mem.read_u64(Hpa(0x10_3010)).unwrap() & 0x40, 0);
    // With A/D management off (an offline observer) nothing is written.
    let quiet = X86Paging { set_ad: false, ..pt };
    put(&mem, 0x10_3008, 0x0000_0000_0050_0003);
    quiet.translate(&mem, 0x1000, Access::WRITE.privileged()).outcome.unwrap();
    assert_eq!(mem.read_u64(Hpa(0x10_3008)).unwrap(), 0x0000_0000_0050_0003);
}

#[test]
fn vector_xd_and_read_only() {
    let mem = memory();
    let pt = four_level_vectors(&mem);
    let leaf = pt.translate(&mem, 0x2010, Access::READ).outcome.unwrap();
    assert_eq!(leaf.output, 0x50_1010);
    assert_eq!(leaf.perms, Perms::PRIV_R.union(Perms::USER_R));
    assert_eq!(
        pt.translate(&mem, 0x2010, Access::EXEC).outcome,
        Err(granting(fault(1, FaultKind::Permission, 0x2010), Perms::rwx(true, false, false)))
    );
    // CR0.WP = 0: supervisor writes ignore R/W.
    let no_wp = X86Paging { wp: false, ..pt };
    assert!(no_wp.translate(&mem, 0x2010, Access::WRITE.privileged()).outcome.is_ok());
    // NXE = 0: bit 63 is reserved (§4.5, Table 4-20 note).
    let no_nxe = X86Paging { nxe: false, ..pt };
    assert_eq!(
        no_nxe.translate(&mem, 0x2010, Access::READ).outcome,
        Err(fault(1, FaultKind::Reserved, 0x2010))
    );
}

#[test]
fn vector_large_pages() {
    let mem = memory();
    let pt = four_level_vectors(&mem);
    let w = pt.translate(&mem, 0x2f_1234, Access::WRITE);
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.page_lg2, leaf.level, w.reads), (0x6f_1234, 21, 2, 3));
    let w = pt.translate(&mem, 0x7fff_fff8, Access::EXEC);
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.page_lg2, leaf.level, w.reads), (0x7fff_fff8, 30, 3, 2));
    // Without 1G-page support, PS in a PDPTE is a reserved bit.
    let no_1g = X86Paging { page_1g: false, ..pt };
    assert_eq!(
        no_1g.translate(&mem, 0x4000_0000, Access::READ).outcome,
        Err(fault(3, FaultKind::Reserved, 0x4000_0000))
    );
}

#[test]
fn vector_reserved_bits_by_level() {
    let mem = memory();
    let pt = four_level_vectors(&mem);
    // PS is reserved in a PML4E (Table 4-15).
    put(&mem, 0x10_0008, 0x0000_0000_0010_1087);
    let va = 1u64 << 39;
    assert_eq!(
        pt.translate(&mem, va, Access::READ).outcome,
        Err(fault(4, FaultKind::Reserved, va))
    );
    // Bits 20:13 of a 2M PDE are reserved (Table 4-18).
    put(&mem, 0x10_2010, 0x0000_0000_0080_2087);
    assert_eq!(
        pt.translate(&mem, 0x40_0000, Access::READ).outcome,
        Err(fault(2, FaultKind::Reserved, 0x40_0000))
    );
    // An address bit at or above MAXPHYADDR is reserved.
    let narrow = X86Paging { phys_bits: 39, ..pt };
    put(&mem, 0x10_3018, 0x0000_0080_0000_0007);
    assert_eq!(
        narrow.translate(&mem, 0x3000, Access::READ).outcome,
        Err(fault(1, FaultKind::Reserved, 0x3000))
    );
    assert!(pt.translate(&mem, 0x3000, Access::READ).outcome.is_ok());
}

#[test]
fn vector_not_present_non_canonical_and_outside_memory() {
    let mem = memory();
    let pt = four_level_vectors(&mem);
    assert_eq!(
        pt.translate(&mem, 0x5000, Access::READ).outcome,
        Err(fault(1, FaultKind::Translation, 0x5000))
    );
    let va = 0x0000_8000_0000_0000;
    let w = pt.translate(&mem, va, Access::READ);
    assert_eq!(w.outcome, Err(fault(4, FaultKind::InputRange, va)));
    assert_eq!(w.reads, 0);
    // A PDE pointing into the hole: the PT read is an external abort at level 1.
    put(&mem, 0x10_2018, 0x0000_0000_4000_0007);
    assert_eq!(
        pt.translate(&mem, 0x60_0000, Access::READ).outcome,
        Err(fault(1, FaultKind::ExternalAbort { addr: 0x4000_0000 }, 0x60_0000))
    );
}

#[test]
fn vector_five_level() {
    let mem = memory();
    // PML5E[1] -> PML4 0x104000; PML4E[0] -> the PDPT of the 4-level vectors.
    four_level_vectors(&mem);
    put(&mem, 0x10_5008, 0x0000_0000_0010_4007);
    put(&mem, 0x10_4000, 0x0000_0000_0010_1007);
    let pt = X86Paging::new(0x10_5000, Levels::Five);
    let va = (1u64 << 48) | 0x1234;
    let w = pt.translate(&mem, va, Access::READ.privileged());
    let leaf = w.outcome.unwrap();
    assert_eq!((leaf.output, leaf.level, w.reads), (0x50_0234, 1, 5));
    // Bit 56 set with 63:57 clear is non-canonical under 5-level paging; bit 47 is not.
    let bad = 1u64 << 56;
    assert_eq!(
        pt.translate(&mem, bad, Access::READ).outcome,
        Err(fault(5, FaultKind::InputRange, bad))
    );
    let high = 0xff00_0000_0000_0000;
    assert_eq!(
        pt.translate(&mem, high, Access::READ).outcome,
        Err(fault(5, FaultKind::Translation, high))
    );
}

// ---------------------------------------------------------------------------------------------
// Builder errors.
// ---------------------------------------------------------------------------------------------

#[test]
fn builder_refuses_bad_maps_and_changes_nothing() {
    let mem = memory();
    let mut fa = FrameAllocator::new(&[(Hpa(TABLES), 0x100_0000)]);
    let pt = X86Paging::create(&mem, &mut fa, Levels::Four).unwrap();
    let free = fa.free_bytes();
    let a = X86Attrs::ALL;
    assert_eq!(
        pt.map(&mem, &mut fa, 0x1000, 0x2000, 13, a),
        Err(MapError::PageSize { size_lg2: 13 })
    );
    assert!(matches!(
        pt.map(&mem, &mut fa, 0x1000, 0x20_0000, 21, a),
        Err(MapError::Misaligned { .. })
    ));
    assert_eq!(
        pt.map(&mem, &mut fa, 0x0000_8000_0000_0000, 0, 12, a),
        Err(MapError::InputRange { input: 0x0000_8000_0000_0000 })
    );
    assert!(matches!(pt.map(&mem, &mut fa, 0, 1 << 52, 12, a), Err(MapError::OutputRange { .. })));
    assert_eq!(fa.free_bytes(), free, "refused maps allocate nothing");
    pt.map(&mem, &mut fa, 0x20_1000, 0x9000, 12, a).unwrap();
    assert_eq!(
        pt.map(&mem, &mut fa, 0x20_1000, 0xa000, 12, a),
        Err(MapError::Overlap { input: 0x20_1000 })
    );
    assert_eq!(
        pt.map(&mem, &mut fa, 0x20_0000, 0, 21, a),
        Err(MapError::Overlap { input: 0x20_0000 })
    );
    assert!(matches!(pt.unmap(&mem, 0x20_1800, 0x1000), Err(MapError::SplitsLeaf { .. })));
    assert_eq!(pt.unmap(&mem, 0x20_0000, 0x20_0000).unwrap().bytes, 0x1000);
    // The emptied page table gives way to a 2M block and goes back to the allocator.
    let before = fa.free_bytes();
    pt.map(&mem, &mut fa, 0x20_0000, 0x40_0000, 21, a).unwrap();
    assert_eq!(fa.free_bytes(), before + 0x1000);
    assert_eq!(pt.translate(&mem, 0x20_0042, Access::READ).outcome.unwrap().output, 0x40_0042);
}

#[test]
fn exhausted_allocator_leaves_tables_unchanged() {
    let mem = memory();
    // Room for the root and exactly one more table.
    let mut fa = FrameAllocator::new(&[(Hpa(TABLES), 0x2000)]);
    let pt = X86Paging::create(&mem, &mut fa, Levels::Four).unwrap();
    let before: Vec<u64> = (0..512).map(|i| mem.read_u64(Hpa(TABLES + i * 8)).unwrap()).collect();
    assert!(matches!(
        pt.map(&mem, &mut fa, 0x1000, 0x1000, 12, X86Attrs::ALL),
        Err(MapError::Frame(_))
    ));
    let after: Vec<u64> = (0..512).map(|i| mem.read_u64(Hpa(TABLES + i * 8)).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(fa.free_bytes(), 0x1000);
}

// ---------------------------------------------------------------------------------------------
// Tables built by the `x86_64` crate, translated by it and by us.
// ---------------------------------------------------------------------------------------------

mod other_crate {
    use sviommu_testsupport::x86::{flags, X86Tables};
    use x86_64::structures::paging::mapper::TranslateResult;
    use x86_64::structures::paging::PageTableFlags as F;

    use super::*;

    fn copy_into(tables: &X86Tables, mem: &HostMemory) {
        for (pa, words) in tables.tables() {
            for (i, raw) in words.into_iter().enumerate() {
                mem.write_u64(Hpa(pa + 8 * i as u64), raw).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn walker_agrees_with_the_x86_64_crate(
            maps in prop::collection::vec((0u64..4, 0u64..8, 0u64..512, any::<(bool, bool, bool)>()), 1..24),
            probes in prop::collection::vec(0u64..(1 << 33), 32),
        ) {
            let root_pa = TABLES;
            let mut mapper = X86Tables::new(root_pa);
            let mut touched = Vec::new();
            for (kind, gig, slot, (w, u, x)) in maps {
                touched.push(mapper.map_kind(kind, gig, slot, flags(w, u, x)));
            }
            let mem = memory();
            copy_into(&mapper, &mem);
            let ours = X86Paging::new(root_pa, Levels::Four);
            for va in touched.into_iter().chain(probes) {
                let theirs = mapper.translate(va);
                let walked = ours.translate(&mem, va, Access::READ.privileged()).outcome;
                match theirs {
                    TranslateResult::Mapped { frame, offset, flags } => {
                        let leaf = walked.unwrap();
                        prop_assert_eq!(leaf.output, frame.start_address().as_u64() + offset);
                        prop_assert_eq!(leaf.page_lg2 as u64, frame.size().trailing_zeros() as u64);
                        prop_assert_eq!(leaf.perms.allows(Access::WRITE), flags.contains(F::WRITABLE) && flags.contains(F::USER_ACCESSIBLE));
                        prop_assert_eq!(leaf.perms.allows(Access::READ), flags.contains(F::USER_ACCESSIBLE));
                        prop_assert_eq!(leaf.perms.allows(Access::EXEC.privileged()), !flags.contains(F::NO_EXECUTE));
                    }
                    TranslateResult::NotMapped => {
                        prop_assert_eq!(walked.map_err(|f| f.kind), Err(FaultKind::Translation));
                    }
                    TranslateResult::InvalidFrameAddress(_) => prop_assert!(false, "the crate built a bad frame"),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Oracle: a flat map from page to (frame, rights), with restrictions above the leaf.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rights {
    write: bool,
    user: bool,
    exec: bool,
}

#[derive(Default)]
struct Oracle {
    /// start -> (size_lg2, output, rights)
    maps: BTreeMap<u64, (u8, u64, Rights)>,
    /// (start, size_lg2) of a table entry -> restriction (false = cleared)
    restrictions: Vec<(u64, u8, Rights)>,
}

impl Oracle {
    fn find(&self, va: u64) -> Option<(u64, u8, u64, Rights)> {
        let (&start, &(lg2, out, r)) = self.maps.range(..=va).next_back()?;
        (va - start < (1u64 << lg2)).then_some((start, lg2, out, r))
    }
    fn overlaps(&self, start: u64, len: u64) -> bool {
        let (start, len) = (u128::from(start), u128::from(len));
        self.maps.iter().any(|(&s, &(lg2, _, _))| {
            u128::from(s) < start + len && start < u128::from(s) + (1u128 << lg2)
        })
    }
    fn expect(&self, va: u64, access: Access) -> Result<u64, FaultKind> {
        let (start, _, out, mut r) = self.find(va).ok_or(FaultKind::Translation)?;
        for &(s, lg2, limit) in &self.restrictions {
            if va >> lg2 == s >> lg2 {
                r.write &= limit.write;
                r.user &= limit.user;
                r.exec &= limit.exec;
            }
        }
        let allowed = if access.exec {
            r.exec && (r.user || access.privileged)
        } else if access.write {
            r.write && (r.user || access.privileged)
        } else {
            r.user || access.privileged
        };
        if allowed {
            Ok(out + (va - start))
        } else {
            Err(FaultKind::Permission)
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Map { va: u64, pa: u64, lg2: u8, r: Rights },
    Unmap { va: u64, len: u64 },
    Restrict { va: u64, level: i8, r: Rights },
}

fn rights() -> impl Strategy<Value = Rights> {
    any::<(bool, bool, bool)>().prop_map(|(write, user, exec)| Rights { write, user, exec })
}

fn ops(top_bits: u8) -> impl Strategy<Value = Vec<Op>> {
    // Addresses are drawn from a few 1G slots spread over the input range (both halves), so maps
    // collide often enough to exercise overlap and unmap.
    let slot = prop::sample::select(vec![0u64, 1, 2, 0x1ff, (1u64 << (top_bits - 30)) - 1]);
    let sign = move |va: u64| {
        if va >> (top_bits - 1) & 1 == 1 {
            va | !((1u64 << top_bits) - 1)
        } else {
            va
        }
    };
    let op = prop_oneof![
        4 => (slot.clone(), 0u64..4, 0u64..512, prop::sample::select(vec![12u8, 12, 21, 30]), rights())
            .prop_map(move |(g, mb, page, lg2, r)| {
                let raw = (g << 30) | (mb << 21) | (page << 12);
                let va = sign(raw & !((1u64 << lg2) - 1));
                Op::Map { va, pa: (0x1234u64 << 30) | (raw & ((1 << 30) - 1) & !((1u64 << lg2) - 1)), lg2, r }
            }),
        1 => (slot.clone(), 0u64..4, prop::sample::select(vec![12u8, 21, 30])).prop_map(move |(g, mb, lg2)| {
            Op::Unmap { va: sign(((g << 30) | (mb << 21)) & !((1u64 << lg2) - 1)), len: 1 << lg2 }
        }),
        1 => (slot, 0u64..4, 2i8..5, rights()).prop_map(move |(g, mb, level, r)| Op::Restrict { va: sign((g << 30) | (mb << 21)), level, r }),
    ];
    prop::collection::vec(op, 1..40)
}

fn check_against_oracle(
    levels: Levels,
    ops: Vec<Op>,
    extra: Vec<u64>,
) -> Result<(), TestCaseError> {
    let mem = memory();
    let mut fa = FrameAllocator::new(&[(Hpa(TABLES), 0x100_0000)]);
    let pt = X86Paging::create(&mem, &mut fa, levels).unwrap();
    let mut oracle = Oracle::default();
    let mut probes = extra;
    for op in ops {
        match op {
            Op::Map { va, pa, lg2, r } => {
                let attrs =
                    X86Attrs { writable: r.write, user: r.user, exec: r.exec, global: false };
                let got = pt.map(&mem, &mut fa, va, pa, lg2, attrs);
                if oracle.overlaps(va, 1 << lg2) {
                    prop_assert!(matches!(got, Err(MapError::Overlap { .. })), "{got:?}");
                } else {
                    prop_assert_eq!(got, Ok(()));
                    oracle.maps.insert(va, (lg2, pa, r));
                    // A block that replaced tables also dropped the restrictions inside it.
                    oracle.restrictions.retain(|&(s, l, _)| !(l <= lg2 && s >> lg2 == va >> lg2));
                }
                probes.extend([va, va.wrapping_add((1 << lg2) - 8), va + ((1 << lg2) >> 1)]);
            }
            Op::Unmap { va, len } => {
                let got = pt.unmap(&mem, va, len);
                let end = u128::from(va) + u128::from(len);
                let cut = oracle.maps.iter().any(|(&s, &(lg2, _, _))| {
                    let (s, e) = (u128::from(s), u128::from(s) + (1u128 << lg2));
                    s < end && u128::from(va) < e && (s < u128::from(va) || e > end)
                });
                if cut {
                    prop_assert!(matches!(got, Err(MapError::SplitsLeaf { .. })), "{got:?}");
                } else {
                    let inside = |s: u64| s >= va && u128::from(s) < end;
                    let before: u64 = oracle
                        .maps
                        .iter()
                        .filter(|(&s, _)| inside(s))
                        .map(|(_, &(l, _, _))| 1u64 << l)
                        .sum();
                    prop_assert_eq!(got.unwrap().bytes, before);
                    oracle.maps.retain(|&s, _| !inside(s));
                }
                probes.push(va);
            }
            Op::Restrict { va, level, r } => {
                let attrs =
                    X86Attrs { writable: r.write, user: r.user, exec: r.exec, global: false };
                if pt.restrict(&mem, va, level, attrs).unwrap() {
                    let span = 12 + 9 * (level as u8 - 1);
                    oracle.restrictions.push((va & !((1u64 << span) - 1), span, r));
                }
            }
        }
    }
    for va in probes {
        for access in [
            Access::READ,
            Access::WRITE,
            Access::EXEC,
            Access::READ.privileged(),
            Access::WRITE.privileged(),
            Access::EXEC.privileged(),
        ] {
            let got = pt.translate(&mem, va, access).outcome.map(|l| l.output).map_err(|f| f.kind);
            prop_assert_eq!(got, oracle.expect(va, access), "va {:#x} {:?}", va, access);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn four_level_agrees_with_oracle(ops in ops(48), extra in prop::collection::vec(0u64..(1 << 33), 8)) {
        check_against_oracle(Levels::Four, ops, extra)?;
    }

    #[test]
    fn five_level_agrees_with_oracle(ops in ops(57), extra in prop::collection::vec(0u64..(1 << 33), 8)) {
        check_against_oracle(Levels::Five, ops, extra)?;
    }

    /// Random bytes as tables: the walk ends in a translation or a fault, reads at most one entry
    /// per level, and never touches memory outside the regions.
    #[test]
    fn random_tables_only_fault(
        words in prop::collection::vec(any::<u64>(), 4 * 512),
        pointer_bias in prop::collection::vec((0usize..2048, 0u64..4), 0..64),
        root in 0u64..4,
        inputs in prop::collection::vec(any::<u64>(), 16),
        five in any::<bool>(),
    ) {
        let mem = memory();
        for (i, w) in words.iter().enumerate() {
            put(&mem, TABLES + 8 * i as u64, *w);
        }
        // Make some entries present pointers into the random pages so walks go deep.
        for &(i, page) in &pointer_bias {
            put(&mem, TABLES + 8 * i as u64, (TABLES + page * 0x1000) | 0x7);
        }
        let levels = if five { Levels::Five } else { Levels::Four };
        let pt = X86Paging::new(TABLES + root * 0x1000, levels);
        for va in inputs {
            for access in [Access::READ, Access::WRITE.privileged(), Access::EXEC] {
                let w = pt.translate(&mem, va, access);
                prop_assert!(w.reads as usize <= levels.count());
            }
        }
    }
}

/// `f` with the rights its permission check found.
fn granting(f: Fault, granted: Perms) -> Fault {
    Fault { granted: Some(granted), ..f }
}

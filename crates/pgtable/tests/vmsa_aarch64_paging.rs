//! Tables built by other people's code: the `aarch64-paging` crate builds 4K stage-1 (EL1&0)
//! and stage-2 tables, with every table page at a physical address this test chooses; the bytes
//! are copied into our memory at those addresses, and our walker must give the answers the
//! crate's own walk gives (and the mapping that was asked of it).

use aarch64_paging::descriptor::{El1Attributes as E1, PhysicalAddress, Stage2Attributes as S2};
use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, Stage2, Translation, VaRange};
use aarch64_paging::Mapping;
use proptest::prelude::*;
use sviommu_memory::{HostMemory, Hpa};
use sviommu_pgtable::vmsa::{Granule, VmsaS1, VmsaS2};
use sviommu_pgtable::{Access, FaultKind, Leaf, Perms, Walk};
use sviommu_testsupport::aarch64::{crate_walk, s1_perms, s2_perms, ChosenAddresses};

const TABLES: u64 = 0x10_0000;
const TABLE_PAGES: u64 = 256;

fn memory() -> HostMemory {
    HostMemory::new(&[(Hpa(TABLES), TABLE_PAGES * 0x1000)]).unwrap()
}

/// Table pages at addresses in a shuffled order.
fn chosen_pages() -> impl Strategy<Value = Vec<u64>> {
    Just((0..TABLE_PAGES).map(|i| TABLES + i * 0x1000).collect::<Vec<_>>()).prop_shuffle()
}

/// What the crate's walk finds for one page: `(output, page_lg2, flag bits)` or unmapped.
fn their_walk<T: Translation<R::Attributes>, R: aarch64_paging::paging::TranslationRegime>(
    m: &Mapping<T, R>,
    va: u64,
    bits: impl Fn(&R::Attributes) -> usize,
) -> Option<(u64, u8, usize)> {
    crate_walk(m, va).unwrap().map(|(output, lg2, flags, _)| (output, lg2, bits(&flags)))
}

/// One `map_range` call: `[va, va + len)` to `pa`, or an unmap when `flags` is `None`.
#[derive(Clone, Debug)]
struct Op {
    va: u64,
    len: u64,
    pa: u64,
    flags: Option<usize>,
}

/// The last op covering `va` decides what it maps.
fn asked(ops: &[Op], va: u64) -> Option<(u64, usize)> {
    let op = ops.iter().rev().find(|o| o.va <= va && va < o.va + o.len)?;
    Some((op.pa + (va - op.va), op.flags?))
}

/// Ranges in a few 1G slots under `top_bits` of input: single pages, runs of pages, 2M blocks,
/// 1G blocks and ranges that start and end mid-block; a few are unmaps.
fn ops(top_bits: u8) -> impl Strategy<Value = Vec<(Op, u8)>> {
    let slot = prop::sample::select(vec![0u64, 1, 3, (1u64 << (top_bits - 30)) - 1]);
    let op = (slot, 0u64..4, 0u64..512, 0u8..5, 1u64..5, any::<u8>(), 0u8..8).prop_map(
        |(g, mb, page, kind, n, flag_bits, unmap)| {
            let base = (g << 30) | (mb << 21);
            let (va, len) = match kind {
                0 => (base | (page << 12), n << 12),
                1 => (base, n << 21),
                2 => (g << 30, 1 << 30),
                3 => (base | (page << 12), (n << 21) + 0x3000),
                _ => (base | (page << 12), 1 << 12),
            };
            let pa = 0x80_0000_0000 + (va & ((1 << 36) - 1));
            let flags = (unmap != 0).then_some(usize::from(flag_bits));
            (Op { va, len, pa, flags }, flag_bits)
        },
    );
    prop::collection::vec(op, 1..16)
}

/// The flags an op's code stands for: bit 0 READ_ONLY, 1 USER, 2 UXN, 3 PXN, 4 NON_GLOBAL.
const E1_CODE: [E1; 5] = [E1::READ_ONLY, E1::USER, E1::UXN, E1::PXN, E1::NON_GLOBAL];

/// The code of a walked descriptor's flags.
fn e1_code(bits: usize) -> usize {
    E1_CODE.iter().enumerate().filter(|(_, f)| bits & f.bits() != 0).map(|(i, _)| 1 << i).sum()
}

fn e1_flags(bits: usize) -> E1 {
    let mut f = E1::VALID | E1::ACCESSED | E1::INNER_SHAREABLE | E1::ATTRIBUTE_INDEX_1;
    for (bit, flag) in E1_CODE.iter().enumerate() {
        if bits >> bit & 1 == 1 {
            f |= *flag;
        }
    }
    f
}

fn s2_flags(bits: usize) -> S2 {
    let mut f = S2::VALID
        | S2::ACCESS_FLAG
        | S2::SH_INNER
        | S2::MEMATTR_NORMAL_INNER_WB
        | S2::MEMATTR_NORMAL_OUTER_WB;
    for (bit, flag) in [(0, S2::S2AP_ACCESS_RO), (1, S2::S2AP_ACCESS_WO), (2, S2::XN)] {
        if bits >> bit & 1 == 1 {
            f |= flag;
        }
    }
    f
}

/// Addresses to compare: the edges and middle of every op, just past it, and `extra`; all
/// below `2^top_bits` (the crate's walk refuses the rest).
fn probes(ops: &[(Op, u8)], extra: &[u64], top_bits: u8) -> Vec<u64> {
    let mut v: Vec<u64> = extra.to_vec();
    for (op, _) in ops {
        v.extend([op.va, op.va + op.len - 1, op.va + op.len / 2, op.va + op.len]);
    }
    v.retain(|&va| va >> top_bits == 0);
    v
}

/// Compares our walk of `va` with the crate's walk and with what was asked. `walk` runs our
/// walker for an access; the access is one the expected permissions allow, if any.
fn check(
    walk: impl Fn(Access) -> Result<Leaf, sviommu_pgtable::Fault>,
    theirs: Option<(u64, u8, usize)>,
    asked: Option<(u64, usize)>,
    perms: impl Fn(usize) -> Perms,
    global: impl Fn(usize) -> bool,
) -> Result<(), TestCaseError> {
    let Some((out, lg2, bits)) = theirs else {
        prop_assert_eq!(walk(Access::READ).map_err(|f| f.kind), Err(FaultKind::Translation));
        prop_assert!(asked.is_none());
        return Ok(());
    };
    let want = perms(bits);
    let (want_out, want_bits) = asked.ok_or_else(|| TestCaseError::fail("not asked"))?;
    prop_assert_eq!(out, want_out);
    prop_assert_eq!(want, perms(want_bits));
    let access = [Access::READ, Access::WRITE, Access::EXEC]
        .into_iter()
        .map(Access::privileged)
        .find(|&a| want.allows(a));
    let Some(access) = access else {
        prop_assert_eq!(walk(Access::READ).map_err(|f| f.kind), Err(FaultKind::Permission));
        return Ok(());
    };
    let leaf = walk(access).map_err(|f| TestCaseError::fail(format!("{f}")))?;
    prop_assert_eq!((leaf.output, leaf.page_lg2), (out, lg2));
    prop_assert_eq!(leaf.perms, want);
    prop_assert_eq!(leaf.global, global(bits));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn stage_1_4k_agrees_with_aarch64_paging(
        pages in chosen_pages(),
        (start_level_1, ops) in any::<bool>().prop_flat_map(|l1| (Just(l1), ops(if l1 { 39 } else { 48 }))),
        extra in prop::collection::vec(0u64..(1 << 39), 16),
    ) {
        let root_level = usize::from(start_level_1);
        let mut m = Mapping::with_asid_and_va_range(
            ChosenAddresses::<E1>::new(pages), 1, root_level, El1And0, VaRange::Lower,
        );
        for (op, _) in &ops {
            let range = MemoryRegion::new(op.va as usize, (op.va + op.len) as usize);
            let flags = op.flags.map_or(E1::empty(), e1_flags);
            m.map_range(&range, PhysicalAddress(op.pa as usize), flags, Constraints::empty()).unwrap();
        }
        let mem = memory();
        m.translation().copy_into(&mem);
        let root = m.root_address().0 as u64;
        let ours = VmsaS1::new(root, Granule::K4, if start_level_1 { 25 } else { 16 });
        prop_assert_eq!(ours.start_level(), if start_level_1 { 1 } else { 0 });
        let plain: Vec<Op> = ops.iter().map(|(o, _)| o.clone()).collect();
        for va in probes(&ops, &extra, if start_level_1 { 39 } else { 48 }) {
            let walk = |a| ours.translate(&mem, va, a).outcome;
            let theirs = their_walk(&m, va, E1::bits).map(|(o, l, b)| (o, l, e1_code(b)));
            let asked = asked(&plain, va).map(|(o, b)| (o, b & 0x1f));
            check(
                walk,
                theirs,
                asked,
                |b| s1_perms(e1_flags(b)),
                |b| b & 0x10 == 0,
            )?;
        }
    }

    #[test]
    fn stage_2_4k_agrees_with_aarch64_paging(
        pages in chosen_pages(),
        (start_level_1, ops) in any::<bool>().prop_flat_map(|l1| (Just(l1), ops(if l1 { 39 } else { 48 }))),
        extra in prop::collection::vec(0u64..(1 << 39), 16),
    ) {
        let root_level = usize::from(start_level_1);
        let mut m = Mapping::new(ChosenAddresses::<S2>::new(pages), root_level, Stage2);
        for (op, _) in &ops {
            let range = MemoryRegion::new(op.va as usize, (op.va + op.len) as usize);
            let flags = op.flags.map_or(S2::empty(), s2_flags);
            m.map_range(&range, PhysicalAddress(op.pa as usize), flags, Constraints::empty()).unwrap();
        }
        let mem = memory();
        m.translation().copy_into(&mem);
        let root = m.root_address().0 as u64;
        // SL0 = 1 with T0SZ = 25 starts at level 1; SL0 = 2 with T0SZ = 16 at level 0.
        let ours = if start_level_1 {
            VmsaS2::new(root, Granule::K4, 25, 1)
        } else {
            VmsaS2::new(root, Granule::K4, 16, 2)
        };
        prop_assert_eq!(ours.concatenated(), 1);
        let plain: Vec<Op> = ops.iter().map(|(o, _)| o.clone()).collect();
        for va in probes(&ops, &extra, if start_level_1 { 39 } else { 48 }) {
            let walk = |a| ours.translate(&mem, va, a).outcome;
            // The crate's flags for a walked descriptor carry S2AP and XN in place; rebuild the
            // small code the ops were made from.
            let code = |b: usize| {
                usize::from(b & S2::S2AP_ACCESS_RO.bits() != 0)
                    | usize::from(b & S2::S2AP_ACCESS_WO.bits() != 0) << 1
                    | usize::from(b & S2::XN.bits() != 0) << 2
            };
            let theirs = their_walk(&m, va, S2::bits).map(|(o, l, b)| (o, l, code(b)));
            let asked = asked(&plain, va).map(|(o, b)| (o, b & 0x7));
            check(walk, theirs, asked, |b| s2_perms(s2_flags(b)), |_| true)?;
        }
    }
}

#[test]
fn stage_1_upper_range_agrees_with_aarch64_paging() {
    let pages: Vec<u64> = (0..TABLE_PAGES).map(|i| TABLES + i * 0x1000).collect();
    let mut m = Mapping::with_asid_and_va_range(
        ChosenAddresses::<E1>::new(pages),
        1,
        1,
        El1And0,
        VaRange::Upper,
    );
    let top = 0xffff_ff80_0000_0000u64;
    let flags = e1_flags(0b0_0011);
    for (va, pa) in [(top, 0x4000_0000u64), (top + 0x4020_0000, 0x9000_0000)] {
        let range = MemoryRegion::new(va as usize, (va + 0x20_1000) as usize);
        m.map_range(&range, PhysicalAddress(pa as usize), flags, Constraints::empty()).unwrap();
    }
    let mem = memory();
    m.translation().copy_into(&mem);
    let ours = VmsaS1 { ttb1: true, ..VmsaS1::new(m.root_address().0 as u64, Granule::K4, 25) };
    for va in [top, top + 0x1f_fff8, top + 0x20_0010, top + 0x4020_1000, top + 0x40_0000] {
        let theirs = their_walk(&m, va, E1::bits);
        let walked = ours.translate(&mem, va, Access::READ).outcome;
        match theirs {
            Some((out, lg2, bits)) => {
                let leaf = walked.unwrap();
                assert_eq!((leaf.output, leaf.page_lg2), (out, lg2), "{va:#x}");
                assert_eq!(leaf.perms, s1_perms(E1::from_bits_retain(bits)));
            }
            None => assert_eq!(walked.unwrap_err().kind, FaultKind::Translation),
        }
    }
}

//! The walk's quick path against each format's own decode: for every configuration, access and
//! depth, an entry that passes a [`Quick`] test decodes to the table, page or block the quick path
//! takes, with the same rights, global bit and dirty state, and needs no update; and the walk's
//! [`Shape`] agrees with the format's per-level geometry. Entries are drawn both at random and
//! built to pass the tests, so the implication is exercised, not just vacuously true.

use proptest::prelude::*;
use sviommu_pgtable::radix::{Entry, Format, Quick};
use sviommu_pgtable::vmsa::{Granule, Oa52, Ps, VmsaS1, VmsaS2};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage};
use sviommu_pgtable::x86::{self, X86Paging};
use sviommu_pgtable::Access;

/// An entry that passes `(mask, want)`, with `noise` in every bit the test leaves free.
fn passing((mask, want): (u64, u64), noise: u64) -> u64 {
    (noise & !mask) | want
}

/// Checks the quick-path promises of `fmt` for `access` on `raw` at every depth, and its shape.
fn check<Fm: Format>(fmt: &Fm, access: Access, raw: u64) -> Result<(), TestCaseError> {
    if fmt.check_config().is_err() {
        return Ok(());
    }
    let shape = fmt.shape();
    prop_assert_eq!(shape.depth, fmt.depth());
    for d in 0..fmt.depth() {
        prop_assert_eq!(shape.level(d), fmt.level(d), "level at depth {}", d);
        prop_assert_eq!(shape.shift(d), fmt.shift(d), "shift at depth {}", d);
        prop_assert_eq!(shape.index_bits(d), fmt.index_bits(d), "index bits at depth {}", d);
    }
    let q: Quick = fmt.quick(access);
    let last = fmt.depth() - 1;
    for d in 0..fmt.depth() {
        let block = if d < last { fmt.quick_block(&q, d) } else { Quick::NEVER };
        for raw in [raw, passing(q.table, raw), passing(q.page, raw), passing(block, raw)] {
            let acc = Fm::Acc::default();
            let mut decoded_acc = acc;
            let decoded = fmt.decode(d, raw, &mut decoded_acc);
            if d < last && raw & q.table.0 == q.table.1 {
                prop_assert_eq!(decoded, Ok(Entry::Table { next: raw & q.addr }), "{:#x}", raw);
                prop_assert_eq!(fmt.update(d, raw, false, access), Ok(raw));
                let mut folded = acc;
                fmt.quick_fold(d, raw, &mut folded);
                prop_assert_eq!(
                    sviommu_pgtable::AccBits::pack(folded),
                    sviommu_pgtable::AccBits::pack(decoded_acc)
                );
            }
            let page = if d == last { q.page } else { block };
            if raw & page.0 == page.1 {
                prop_assert!(d == last || raw & q.table.0 != q.table.1, "table or block");
                let (perms, global) = fmt.quick_page(d, raw, acc);
                let output = raw & q.addr & !((1u64 << fmt.shift(d)) - 1);
                prop_assert_eq!(decoded, Ok(Entry::Leaf { output, perms, global }), "{:#x}", raw);
                prop_assert_eq!(fmt.update(d, raw, true, access), Ok(raw));
            }
        }
    }
    Ok(())
}

fn access() -> impl Strategy<Value = Access> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(write, exec, privileged)| Access {
        write: write && !exec,
        exec,
        privileged,
    })
}

fn granule() -> impl Strategy<Value = Granule> {
    prop_oneof![Just(Granule::K4), Just(Granule::K16), Just(Granule::K64)]
}

fn oa_52() -> impl Strategy<Value = Oa52> {
    prop_oneof![Just(Oa52::Off), Just(Oa52::Lpa), Just(Oa52::Lpa2)]
}

fn ps() -> impl Strategy<Value = Ps> {
    (0u8..7).prop_map(|v| Ps::from_field(v).unwrap_or(Ps::Bits48))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn x86_quick_agrees_with_decode(
        five in any::<bool>(),
        phys_bits in 32u8..=52,
        flags in any::<[bool; 5]>(),
        access in access(),
        raw in any::<u64>(),
    ) {
        let levels = if five { x86::Levels::Five } else { x86::Levels::Four };
        let [page_1g, nxe, wp, smep, set_ad] = flags;
        let fmt = X86Paging {
            phys_bits, page_1g, nxe, wp, smep, set_ad, ..X86Paging::new(0x1000, levels)
        };
        check(&fmt, access, raw)?;
    }

    #[test]
    fn vtd_ss_quick_agrees_with_decode(
        levels in 0usize..3,
        haw in 36u8..=52,
        sllps in 0u8..4,
        flags in any::<[bool; 3]>(),
        access in access(),
        raw in any::<u64>(),
    ) {
        let levels = [vtd_ss::Levels::Three, vtd_ss::Levels::Four, vtd_ss::Levels::Five][levels];
        let [execute, snoop, ad] = flags;
        let fmt = VtdSecondStage {
            haw, sllps, execute, snoop, ad, ..VtdSecondStage::new(0x1000, levels)
        };
        check(&fmt, access, raw)?;
    }

    #[test]
    fn vmsa_s1_quick_agrees_with_decode(
        tg in granule(),
        t0sz in 12u8..=39,
        ips in ps(),
        oa_52 in oa_52(),
        flags in any::<[bool; 8]>(),
        access in access(),
        raw in any::<u64>(),
    ) {
        let [ha, hd, hpd, wxn, affd, pan, ttb1, _] = flags;
        let fmt = VmsaS1 {
            ips, oa_52, ha, hd, hpd, wxn, affd, pan, ttb1, ..VmsaS1::new(0x1_0000, tg, t0sz)
        };
        check(&fmt, access, raw)?;
    }

    #[test]
    fn vmsa_s2_quick_agrees_with_decode(
        tg in granule(),
        t0sz in 12u8..=39,
        sl0 in 0u8..4,
        ps in ps(),
        oa_52 in oa_52(),
        flags in any::<[bool; 4]>(),
        access in access(),
        raw in any::<u64>(),
    ) {
        let [ha, hd, affd, xnx] = flags;
        let fmt = VmsaS2 { ps, oa_52, ha, hd, affd, xnx, ..VmsaS2::new(0x1_0000, tg, t0sz, sl0) };
        check(&fmt, access, raw)?;
    }
}

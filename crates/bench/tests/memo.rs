//! The translation memo changes no answer and no statistic: two units built alike, one with the
//! memo and one without, driven through the same random history of translations, maps, unmaps
//! (with and without the flush that should follow), flushes and finally a register write that
//! turns translation off, answer every request alike and end with the same cache statistics
//! (hits, misses, evictions, invalidated entries: CLOCK's choices depend on every hit). The
//! caches are small, so entries are evicted and replaced all the time.

use proptest::prelude::*;
use sviommu_bench::{Config, Rig, PAGES};
use sviommu_smmuv3::hw::{CacheSizes, Transaction};
use sviommu_vtd::driver::Prot as VtdProt;
use sviommu_vtd::hw::{Access, CacheGeometry, CacheParams, DmaRequest};

/// One step of the history.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// A request to page `page` of the batch (some beyond what is mapped).
    Translate { page: u64, write: bool },
    /// Unmap one page, without flushing.
    Unmap { page: u64 },
    /// Map one page to another frame, without flushing.
    Remap { page: u64, frame: u64 },
    /// A range flush of `pages` pages from `page`.
    Flush { page: u64, pages: u64 },
    /// The whole domain.
    FlushAll,
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly a few hot pages (a memo answer needs a page asked for a third time while its
    // entries are still cached), sometimes any page of the batch or beyond it.
    let page = prop_oneof![3 => 0..12u64, 1 => 0..PAGES + 4];
    prop_oneof![
        8 => (page.clone(), prop::bool::weighted(0.1)).prop_map(|(page, write)| Op::Translate { page, write }),
        1 => page.clone().prop_map(|page| Op::Unmap { page }),
        1 => (page.clone(), 0..64u64).prop_map(|(page, frame)| Op::Remap { page, frame }),
        1 => (page, 1..8u64).prop_map(|(page, pages)| Op::Flush { page, pages }),
        1 => Just(Op::FlushAll),
    ]
}

/// The batch's first input address (the rigs map [`PAGES`] pages from it).
const INPUT_BASE: u64 = 0x4000_0000;
/// Where remapped pages go (inside the rigs' RAM).
const FRAMES: u64 = 0x1000_0000;

/// Small caches, with or without the memo.
fn rig(config: Config, memo: bool) -> Rig {
    let vtd = CacheParams {
        context: CacheGeometry::new(1, 1),
        pasid: CacheGeometry::new(1, 1),
        iotlb: CacheGeometry::new(4, 2),
        memo,
        ..CacheParams::default()
    };
    let smmu = CacheSizes { ste: 4, cd: 4, tlb: 8, memo, ..CacheSizes::default() };
    Rig::with_caches(config, Some(vtd), Some(smmu))
}

/// Runs `op` on `rig`; what it answered, as text.
fn apply(rig: &mut Rig, op: Op) -> String {
    let iova = |page: u64| INPUT_BASE + page * 0x1000;
    let access = |write| if write { Access::WRITE } else { Access::READ };
    match rig {
        Rig::Vtd(r) => match op {
            Op::Translate { page, write } => {
                let req =
                    DmaRequest { addr: iova(page) + 8, access: access(write), ..r.requests[0] };
                format!("{:?}", r.unit.translate(&req))
            }
            Op::Unmap { page } => format!("{:?}", r.driver.unmap(r.did, iova(page), 0x1000)),
            Op::Remap { page, frame } => {
                let _ = r.driver.unmap(r.did, iova(page), 0x1000);
                let pa = FRAMES + frame * 0x1000;
                format!("{:?}", r.driver.map(r.did, iova(page), pa, 0x1000, VtdProt::RW))
            }
            Op::Flush { page, pages } => {
                format!("{:?}", r.driver.flush_iotlb(r.did, Some((iova(page), pages * 0x1000))))
            }
            Op::FlushAll => format!("{:?}", r.driver.flush_iotlb(r.did, None)),
        },
        Rig::Smmu(r) => match op {
            Op::Translate { page, write } => {
                let t =
                    Transaction { addr: iova(page) + 8, access: access(write), ..r.requests[0] };
                format!("{:?}", r.unit.translate(&t))
            }
            Op::Unmap { page } => format!("{:?}", r.driver.unmap(r.domain, iova(page), 0x1000)),
            Op::Remap { page, frame } => {
                let _ = r.driver.unmap(r.domain, iova(page), 0x1000);
                let pa = FRAMES + frame * 0x1000;
                let prot = sviommu_smmuv3::driver::Prot::RW;
                format!("{:?}", r.driver.map(r.domain, iova(page), pa, 0x1000, prot))
            }
            Op::Flush { page, pages } => {
                format!("{:?}", r.driver.flush_tlb(r.domain, Some((iova(page), pages * 0x1000))))
            }
            Op::FlushAll => format!("{:?}", r.driver.flush_tlb(r.domain, None)),
        },
    }
}

/// Turns translation off through the registers, as a driver shutting the unit down would
/// (VT-d: GCMD with TE clear and the other enables kept, §10.4.4; SMMUv3: CR0 with SMMUEN
/// clear, §6.3.9).
fn disable(rig: &Rig) {
    match rig {
        Rig::Vtd(r) => {
            const GCMD: u64 = 0x18;
            const GSTS: u64 = 0x1c;
            // QIES, IRES, CFIS: the status bits whose commands are enables, not one-shots.
            const KEPT: u64 = 1 << 26 | 1 << 25 | 1 << 23;
            let status = r.unit.mmio_read(GSTS, 4);
            r.unit.mmio_write(GCMD, 4, status & KEPT);
        }
        Rig::Smmu(r) => {
            const CR0: u64 = 0x20;
            let cr0 = r.unit.mmio_read(CR0, 4);
            r.unit.mmio_write(CR0, 4, cr0 & !1);
        }
    }
}

fn stats(rig: &Rig) -> String {
    match rig {
        Rig::Vtd(r) => format!("{:?}", r.unit.cache_stats()),
        Rig::Smmu(r) => format!("{:?}", r.unit.cache_stats()),
    }
}

fn check(config: Config, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut with = rig(config, true);
    let mut without = rig(config, false);
    for (i, &op) in ops.iter().enumerate() {
        let (a, b) = (apply(&mut with, op), apply(&mut without, op));
        prop_assert_eq!(a, b, "step {} {:?} of {:?}", i, op, config);
    }
    prop_assert_eq!(stats(&with), stats(&without), "statistics after the history");
    disable(&with);
    disable(&without);
    for page in 0..PAGES {
        let op = Op::Translate { page, write: false };
        let (a, b) = (apply(&mut with, op), apply(&mut without, op));
        prop_assert_eq!(a, b, "page {} after translation was turned off", page);
    }
    prop_assert_eq!(stats(&with), stats(&without), "statistics at the end");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn vtd_answers_alike_with_and_without_the_memo(
        config in prop_oneof![
            Just(Config::VtdLegacySecondStage),
            Just(Config::VtdFirstStage),
            Just(Config::VtdNested),
        ],
        ops in prop::collection::vec(op(), 1..160),
    ) {
        check(config, &ops)?;
    }

    #[test]
    fn smmuv3_answers_alike_with_and_without_the_memo(
        config in prop_oneof![
            Just(Config::SmmuStage1),
            Just(Config::SmmuStage2),
            Just(Config::SmmuNested),
        ],
        ops in prop::collection::vec(op(), 1..160),
    ) {
        check(config, &ops)?;
    }
}

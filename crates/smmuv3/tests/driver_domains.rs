//! Stage-1 and stage-2 domains through the device's view: map, unmap, the stale translation a
//! cached SMMU keeps until the flush, and random map/unmap against a flat oracle.

mod driver_common;

use std::collections::BTreeMap;

use driver_common::*;
use proptest::prelude::*;
use sviommu_smmuv3::driver::{Attach, DomainConfig, DomainId, DriverConfig, Prot};
use sviommu_smmuv3::hw::Smmu;
use sviommu_smmuv3::spec::{EventId, Granule};

const SID: u32 = 5;
const IOVA: u64 = 0x40_0000;
const PA: u64 = 0x8000_0000;

fn configs() -> [DomainConfig; 2] {
    [
        DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 39 },
        DomainConfig::S2 { granule: Granule::Size4K, ias_bits: 40 },
    ]
}

#[test]
fn map_translate_unmap_stale_until_flushed() {
    for config in configs() {
        let mem = memory();
        let smmu = Smmu::new(&mem, params());
        let _clean = CleanAtEnd(&smmu);
        let mut drv = driver(&smmu, &mem, DriverConfig::default());
        let dom = drv.alloc_domain(config).unwrap();
        drv.map(dom, IOVA, PA, 0x1000, Prot::RW).unwrap();
        drv.map(dom, 0x20_0000, PA + 0x20_0000, 0x20_0000, Prot::RO).unwrap();
        drv.attach(SID, Attach::Domain(dom)).unwrap();
        assert_eq!(output(smmu.translate(&write(SID, IOVA + 0x18))), PA + 0x18, "{config:?}");
        assert_eq!(output(smmu.translate(&read(SID, 0x30_0010))), PA + 0x30_0010);
        assert_eq!(event(smmu.translate(&write(SID, 0x30_0010))).id, EventId::FPermission);

        // Unmapped but not flushed: the SMMU's TLB still has it, as the silicon's would.
        assert_eq!(drv.unmap(dom, IOVA, 0x1000).unwrap(), 0x1000);
        assert_eq!(output(smmu.translate(&read(SID, IOVA))), PA, "{config:?}: stale entry");
        assert!(expect_stale(&smmu, 1).iter().all(|v| v.cache == "TLB" && !v.unsynced));
        drv.flush_tlb(dom, Some((IOVA, 0x1000))).unwrap();
        let e = event(smmu.translate(&read(SID, IOVA)));
        assert_eq!(
            (e.id, e.s2),
            (EventId::FTranslation, matches!(config, DomainConfig::S2 { .. }))
        );
        // The block too, with a whole-domain flush.
        assert_eq!(drv.unmap(dom, 0x20_0000, 0x20_0000).unwrap(), 0x20_0000);
        assert_eq!(output(smmu.translate(&read(SID, 0x30_0010))), PA + 0x30_0010);
        expect_stale(&smmu, 1);
        drv.flush_tlb(dom, None).unwrap();
        assert_eq!(event(smmu.translate(&read(SID, 0x30_0010))).id, EventId::FTranslation);
        // The faults were recorded and drain with their StreamID.
        let evs = drv.drain_events().unwrap();
        assert!(evs.iter().all(|e| e.sid == SID), "{evs:?}");
        assert_eq!(
            evs.iter().map(|e| e.id).collect::<Vec<_>>(),
            [Ok(EventId::FPermission), Ok(EventId::FTranslation), Ok(EventId::FTranslation)]
        );
        assert_eq!(evs[1].input_addr, IOVA);
    }
}

#[test]
fn a_domain_is_freed_only_when_nothing_uses_it() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let free_before = drv.free_frame_bytes();
    let dom = drv.alloc_domain(configs()[0]).unwrap();
    drv.attach(SID, Attach::Domain(dom)).unwrap();
    assert!(drv.free_domain(dom).is_err());
    drv.attach(SID, Attach::Abort).unwrap();
    drv.free_domain(dom).unwrap();
    assert!(drv.cd_tables().is_empty());
    // The root and the CD table came back (the level-2 Stream table array stays).
    assert_eq!(drv.free_frame_bytes(), free_before - 0x4000);
    assert!(drv.map(dom, 0, 0, 0x1000, Prot::RW).is_err());
}

#[derive(Clone, Debug)]
enum Op {
    Map { page: u64, block: bool, target: u64, write: bool },
    Unmap { page: u64, block: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..16, any::<bool>(), 0u64..0x1000, any::<bool>())
            .prop_map(|(page, block, target, write)| Op::Map { page, block, target, write }),
        (0u64..16, any::<bool>()).prop_map(|(page, block)| Op::Unmap { page, block }),
    ]
}

/// Where an op's page is: 4K pages in [0, 64K), 2M blocks from 1G.
fn span(page: u64, block: bool) -> (u64, u64) {
    if block {
        (0x4000_0000 + (page << 21), 0x20_0000)
    } else {
        (page << 12, 0x1000)
    }
}

fn check(
    smmu: &Smmu<&sviommu_memory::HostMemory>,
    oracle: &BTreeMap<u64, (u64, u64, bool)>,
    iova: u64,
) {
    let hit = oracle.range(..=iova).next_back().filter(|(&start, &(_, len, _))| iova < start + len);
    match hit {
        Some((&start, &(pa, _, w))) => {
            assert_eq!(output(smmu.translate(&read(SID, iova))), pa + (iova - start));
            let wr = smmu.translate(&write(SID, iova));
            if w {
                assert_eq!(output(wr), pa + (iova - start));
            } else {
                assert_eq!(event(wr).id, EventId::FPermission);
            }
        }
        None => assert_eq!(event(smmu.translate(&read(SID, iova))).id, EventId::FTranslation),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_map_unmap_matches_a_flat_oracle(ops in prop::collection::vec(op(), 1..24), s2 in any::<bool>()) {
        let mem = memory();
        let smmu = Smmu::new(&mem, params());
        let _clean = CleanAtEnd(&smmu);
        let mut drv = driver(&smmu, &mem, DriverConfig::default());
        let dom: DomainId = drv.alloc_domain(configs()[usize::from(s2)]).unwrap();
        drv.attach(SID, Attach::Domain(dom)).unwrap();
        let mut oracle: BTreeMap<u64, (u64, u64, bool)> = BTreeMap::new();
        let mut touched = Vec::new();
        for op in ops {
            match op {
                Op::Map { page, block, target, write } => {
                    let (iova, len) = span(page, block);
                    let pa = 0x1_0000_0000 + target * len;
                    let prot = if write { Prot::RW } else { Prot::RO };
                    let r = drv.map(dom, iova, pa, len, prot);
                    prop_assert_eq!(r.is_ok(), !oracle.contains_key(&iova), "{:?}", r);
                    if r.is_ok() {
                        oracle.insert(iova, (pa, len, write));
                    }
                    touched.push(iova);
                }
                Op::Unmap { page, block } => {
                    let (iova, len) = span(page, block);
                    let bytes = drv.unmap(dom, iova, len).unwrap();
                    let had = oracle.remove(&iova).map_or(0, |(_, l, _)| l);
                    prop_assert_eq!(bytes, had);
                    drv.flush_tlb(dom, Some((iova, len))).unwrap();
                    touched.push(iova);
                }
            }
            for &iova in &touched {
                check(&smmu, &oracle, iova);
                check(&smmu, &oracle, iova + 0xff8);
            }
        }
        prop_assert_eq!(drv.stats().command_errors, 0);
    }
}

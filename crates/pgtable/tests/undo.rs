//! Taking maps back exactly (`map_recorded`, `unlink`, `release`): after any history of maps
//! and unmaps, a batch of maps undone leaves every table byte and the allocator as they were,
//! including when the batch reused a table an earlier unmap emptied (which must stay linked)
//! and allocated tables below it (which must go).

use proptest::prelude::*;
use sviommu_memory::{FrameAllocator, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::radix::{release, unlink};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Build, Mapped};

const TABLES: u64 = 0x10_0000;
const TABLE_BYTES: u64 = 0x40_0000;

fn bytes(mem: &HostMemory) -> Vec<u8> {
    let mut b = vec![0; TABLE_BYTES as usize];
    mem.read(Hpa(TABLES), &mut b).unwrap();
    b
}

/// Input addresses spread over a few 1G and 2M regions, so paths share upper tables.
fn input(region: u8, page: u8) -> u64 {
    const BASES: [u64; 4] = [0, 0x20_0000, 0x4000_0000, 0x80_0000_0000];
    BASES[usize::from(region % 4)] + u64::from(page % 8) * 0x1000
}

/// Maps `batch` (4K pages), then undoes it as a driver does; returns how many maps linked a
/// new table below an existing one.
fn undo_batch(
    mem: &HostMemory,
    fa: &mut FrameAllocator<Hpa>,
    pt: &X86Paging,
    batch: &[u64],
) -> usize {
    let mut maps: Vec<(u64, Mapped)> = Vec::new();
    for &at in batch {
        if let Ok(m) = pt.map_recorded(mem, fa, at, 0x5000_0000 + at, 12, X86Attrs::ALL) {
            maps.push((at, m));
        }
    }
    for (at, _) in maps.iter().rev() {
        pt.unmap(mem, *at, 0x1000).unwrap();
    }
    let maps: Vec<Mapped> = maps.into_iter().map(|(_, m)| m).collect();
    unlink(mem, &maps).unwrap();
    release(mem, fa, &maps).unwrap();
    maps.iter().filter(|m| m.link.is_some()).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn undone_maps_leave_every_table_byte_and_page_as_they_were(
        history in prop::collection::vec((any::<bool>(), 0u8..4, 0u8..8), 0..24),
        batch in prop::collection::vec((0u8..4, 0u8..8), 1..12),
    ) {
        let mem = HostMemory::new(&[(Hpa(TABLES), TABLE_BYTES)]).unwrap();
        let mut fa = FrameAllocator::new(&[(Hpa(TABLES), TABLE_BYTES)]);
        let pt = X86Paging::create(&mem, &mut fa, Levels::Four).unwrap();
        for (map, region, page) in history {
            let at = input(region, page);
            if map {
                let _ = pt.map(&mem, &mut fa, at, 0x6000_0000 + at, 12, X86Attrs::ALL);
            } else {
                pt.unmap(&mem, at, 0x1000).unwrap();
            }
        }
        let (before, free) = (bytes(&mem), fa.free_bytes());
        let batch: Vec<u64> = batch.into_iter().map(|(r, p)| input(r, p)).collect();
        undo_batch(&mem, &mut fa, &pt, &batch);
        prop_assert!(bytes(&mem) == before, "a table byte changed");
        prop_assert_eq!(fa.free_bytes(), free);
    }
}

#[test]
fn a_map_that_reused_an_emptied_table_is_undone_without_freeing_it() {
    let mem = HostMemory::new(&[(Hpa(TABLES), TABLE_BYTES)]).unwrap();
    let mut fa = FrameAllocator::new(&[(Hpa(TABLES), TABLE_BYTES)]);
    let pt = X86Paging::create(&mem, &mut fa, Levels::Four).unwrap();
    // An unmap empties the page table under 0x20_0000 and the tables above it stay linked.
    pt.map(&mem, &mut fa, 0x20_0000, 0x6000_0000, 12, X86Attrs::ALL).unwrap();
    pt.unmap(&mem, 0x20_0000, 0x1000).unwrap();
    let (before, free) = (bytes(&mem), fa.free_bytes());
    // One map reuses the emptied tables (no table allocated), one allocates a PDPT, PD, PT.
    let reused = pt.map_recorded(&mem, &mut fa, 0x20_1000, 0x6000_1000, 12, X86Attrs::ALL);
    assert_eq!(reused.unwrap(), Mapped::default());
    assert_eq!(undo_batch(&mem, &mut fa, &pt, &[0x80_0000_0000]), 1);
    pt.unmap(&mem, 0x20_1000, 0x1000).unwrap();
    assert!(bytes(&mem) == before);
    assert_eq!(fa.free_bytes(), free);
    // The emptied tables are still linked: a map through them allocates nothing.
    let again = pt.map_recorded(&mem, &mut fa, 0x20_2000, 0x6000_2000, 12, X86Attrs::ALL);
    assert_eq!(again.unwrap().created, vec![]);
}

//! The VMSAv8-64 map both walkers read: stage-1 tables (4K granule, 48-bit VA, start level 0)
//! that the `aarch64-paging` crate built, and the very same bytes in host memory for
//! `pgtable`. Shared by the `vmsa_walk` bench and the `walk_instructions` example (`#[path]`).

use aarch64_paging::descriptor::{El1Attributes as E1, PhysicalAddress};
use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, VaRange};
use aarch64_paging::Mapping;
use sviommu_memory::{HostMemory, Hpa};
use sviommu_pgtable::vmsa::{Granule, VmsaS1};
use sviommu_pgtable::{Access, Walk};
use sviommu_testsupport::aarch64::{crate_walk, ChosenAddresses};

/// Pages mapped, 4K each, identity, from 1G up.
pub const PAGES: u64 = 512;
const TABLES_HPA: u64 = 0x10_0000;
const TABLE_PAGES: u64 = 16;
/// T0SZ for a 48-bit input: the walk starts at level 0.
const T0SZ: u8 = 16;

/// The input addresses, one per mapped page.
pub fn pages() -> impl Iterator<Item = u64> {
    (0..PAGES).map(|i| 0x4000_0000 + i * 0x1000)
}

/// Both copies of the map.
pub struct VmsaFixture {
    /// The crate's tables and walk.
    pub theirs: Mapping<ChosenAddresses<E1>, El1And0>,
    /// Where `pgtable` reads.
    pub host: HostMemory,
    /// `pgtable`'s configuration of the same tables.
    pub ours: VmsaS1,
}

impl VmsaFixture {
    /// Maps [`pages`] with the crate (EL0-readable, accessed, not global), copies its table
    /// pages, and checks that both walkers agree on every page.
    pub fn new() -> Self {
        let free = (0..TABLE_PAGES).map(|i| TABLES_HPA + i * 0x1000).rev().collect();
        let mut theirs = Mapping::with_asid_and_va_range(
            ChosenAddresses::<E1>::new(free),
            1,
            0,
            El1And0,
            VaRange::Lower,
        );
        let first = pages().next().expect("pages") as usize;
        let region = MemoryRegion::new(first, first + (PAGES * 0x1000) as usize);
        let flags = E1::VALID | E1::ACCESSED | E1::NON_GLOBAL | E1::USER;
        theirs
            .map_range(&region, PhysicalAddress(first), flags, Constraints::empty())
            .expect("map");
        let host = HostMemory::new(&[(Hpa(TABLES_HPA), TABLE_PAGES * 0x1000)]).expect("region");
        theirs.translation().copy_into(&host);
        let ours = VmsaS1::new(theirs.root_address().0 as u64, Granule::K4, T0SZ);
        let fixture = Self { theirs, host, ours };
        for va in pages() {
            assert_eq!(fixture.pgtable(va), fixture.aarch64_paging(va), "both agree on {va:#x}");
        }
        fixture
    }

    /// `pgtable`'s walk of `va` for an EL0 read: its output, or `None` on a fault.
    #[inline]
    pub fn pgtable(&self, va: u64) -> Option<u64> {
        self.ours.translate(&self.host, va, Access::READ).outcome.ok().map(|l| l.output)
    }

    /// The crate's walk of `va`: its output, or `None` if unmapped.
    #[inline]
    pub fn aarch64_paging(&self, va: u64) -> Option<u64> {
        crate_walk(&self.theirs, va).ok().flatten().map(|(out, ..)| out)
    }
}

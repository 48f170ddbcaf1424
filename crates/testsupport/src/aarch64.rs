//! VMSAv8-64 tables the `aarch64-paging` crate builds, every table page at a physical address
//! the test chooses, and the crate's own walk of them.

#![allow(unsafe_code)]

use std::ptr::NonNull;

use aarch64_paging::descriptor::{
    El1Attributes as E1, PagingAttributes, PhysicalAddress, Stage2Attributes as S2,
};
use aarch64_paging::paging::{MemoryRegion, PageTable, Translation, TranslationRegime};
use aarch64_paging::{MapError, Mapping};
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::Perms;

/// Hands out table pages at the physical addresses in `free` (last first), and remembers where
/// each one lives on the heap.
#[derive(Debug)]
pub struct ChosenAddresses<A: PagingAttributes> {
    free: Vec<u64>,
    tables: Vec<(u64, NonNull<PageTable<A>>)>,
}

impl<A: PagingAttributes> ChosenAddresses<A> {
    /// Table pages at the addresses in `free`, taken from the end.
    pub fn new(free: Vec<u64>) -> Self {
        Self { free, tables: Vec::new() }
    }

    /// Copies every table page into `mem` at its chosen address.
    pub fn copy_into(&self, mem: &HostMemory) {
        self.copy_into_at(mem, |pa| pa);
    }

    /// Copies every table page into `mem` at `to_pa` of its chosen address (an IPA, for tables
    /// a stage 2 places).
    pub fn copy_into_at(&self, mem: &HostMemory, to_pa: impl Fn(u64) -> u64) {
        let mut page = vec![0u8; 4096];
        for &(pa, table) in &self.tables {
            // SAFETY: `table` came from `Box::leak` in `allocate_table` and is freed only by
            // `deallocate_table`, which also drops it from `tables`; the crate is not mutating
            // it while we hold `&self` through `Mapping::translation`.
            let table = unsafe { table.as_ref() };
            table.write_to(&mut page).unwrap();
            mem.write(Hpa(to_pa(pa)), &page).unwrap();
        }
    }
}

impl<A: PagingAttributes> Translation<A> for ChosenAddresses<A> {
    fn allocate_table(&mut self) -> (NonNull<PageTable<A>>, PhysicalAddress) {
        let pa = self.free.pop().expect("out of chosen table pages");
        let table = NonNull::from(Box::leak(Box::new(PageTable::<A>::EMPTY)));
        self.tables.push((pa, table));
        (table, PhysicalAddress(usize::try_from(pa).unwrap()))
    }

    unsafe fn deallocate_table(&mut self, page_table: NonNull<PageTable<A>>) {
        self.tables.retain(|&(_, t)| t != page_table);
        // SAFETY: the caller promises `page_table` came from `allocate_table` (a leaked Box)
        // and is not yet freed; it is no longer in `tables`, so nothing reads it after this.
        unsafe { drop(Box::from_raw(page_table.as_ptr())) };
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<A>> {
        self.tables
            .iter()
            .find(|&&(p, _)| p == pa.0 as u64)
            .map(|&(_, t)| t)
            .expect("a table address the crate never allocated")
    }
}

/// What the crate's walk finds for `va`: `(output, page_lg2, flags, leaf level)`, or `None` if
/// unmapped; an error if `va` is outside the range its root level covers.
#[allow(clippy::type_complexity)]
pub fn crate_walk<T: Translation<R::Attributes>, R: TranslationRegime>(
    m: &Mapping<T, R>,
    va: u64,
) -> Result<Option<(u64, u8, R::Attributes, usize)>, MapError> {
    let page = usize::try_from(va & !0xfff).unwrap();
    let mut found = None;
    m.walk_range(&MemoryRegion::new(page, page + 1), &mut |_, desc, level| {
        if desc.is_valid() {
            let lg2 = 12 + 9 * (3 - level as u8);
            let base = desc.output_address().0 as u64;
            found = Some((base + (va & ((1 << lg2) - 1)), lg2, desc.flags(), level));
        }
        Ok(())
    })?;
    Ok(found)
}

/// D8.4, stage 1 of EL1&0: what a leaf with the crate's flags grants.
pub fn s1_perms(f: E1) -> Perms {
    let ro = f.contains(E1::READ_ONLY);
    let user = f.contains(E1::USER);
    let mut p = Perms::PRIV_R;
    if !ro {
        p = p.union(Perms::PRIV_W);
    }
    if user {
        p = p.union(Perms::USER_R);
        if !ro {
            p = p.union(Perms::USER_W);
        }
    }
    if !f.contains(E1::UXN) {
        p = p.union(Perms::USER_X);
    }
    // EL1 never executes what EL0 may write.
    let el0_writable = user && !ro;
    if !f.contains(E1::PXN) && !el0_writable {
        p = p.union(Perms::PRIV_X);
    }
    p
}

/// D8.4, stage 2: what a leaf with the crate's flags grants (S2AP read, write; XN).
pub fn s2_perms(f: S2) -> Perms {
    Perms::rwx(f.contains(S2::S2AP_ACCESS_RO), f.contains(S2::S2AP_ACCESS_WO), !f.contains(S2::XN))
}

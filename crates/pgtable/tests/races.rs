//! A/D updates race with whoever else writes the tables: the walk's read-modify-write must see
//! the entry as it is now, never write back a stale one.

use std::sync::atomic::{AtomicU32, Ordering};

use sviommu_memory::{FrameAllocator, HostMemory, Hpa, MemoryError, PhysMemory};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, FaultKind, Walk};

/// Host memory that, on the first A/D compare-exchange, lets "the driver" replace the entry
/// first, as a CPU clearing a PTE between the walker's read and its update would.
struct RacingMemory {
    inner: HostMemory,
    raced: AtomicU32,
    replacement: u64,
}

impl PhysMemory for RacingMemory {
    type Addr = Hpa;
    fn read_u64(&self, addr: Hpa) -> Result<u64, MemoryError> {
        self.inner.read_u64(addr)
    }
    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemoryError> {
        self.inner.write_u64(addr, value)
    }
    fn compare_exchange_u64(
        &self,
        addr: Hpa,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        if self.raced.fetch_add(1, Ordering::SeqCst) == 0 {
            self.inner.write_u64(addr, self.replacement)?;
        }
        self.inner.compare_exchange_u64(addr, current, new)
    }
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read(addr, buf)
    }
    fn write(&self, addr: Hpa, buf: &[u8]) -> Result<(), MemoryError> {
        self.inner.write(addr, buf)
    }
}

fn one_page(replacement: u64) -> (RacingMemory, X86Paging) {
    let inner = HostMemory::new(&[(Hpa(0x10_0000), 0x10_0000)]).unwrap();
    let mut fa = FrameAllocator::new(&[(Hpa(0x10_0000), 0x10_0000)]);
    // A 1G page: one PML4E (A set by a first walk) and the leaf PDPTE.
    let pt = X86Paging::create(&inner, &mut fa, Levels::Four).unwrap();
    pt.map(&inner, &mut fa, 0x4000_0000, 0x8000_0000, 30, X86Attrs::ALL).unwrap();
    let mem = RacingMemory { inner, raced: AtomicU32::new(0), replacement };
    (mem, pt)
}

#[test]
fn entry_cleared_under_the_update_faults_instead_of_resurrecting() {
    let (mem, pt) = one_page(0);
    let w = pt.translate(&mem, 0x4000_0000, Access::READ);
    // The PML4E update raced with a clear: the walk re-reads, finds it not present, and faults.
    assert_eq!(w.outcome.unwrap_err().kind, FaultKind::Translation);
    assert_eq!(mem.inner.read_u64(Hpa(pt.root)).unwrap(), 0, "the cleared entry stays cleared");
}

#[test]
fn entry_made_read_only_under_a_write_refuses_the_write() {
    let (mem, pt) = one_page(0);
    // Take the first walk's PML4E update out of the race, then race the leaf's D update with a
    // change to read-only.
    pt.translate(&mem.inner, 0x4000_0000, Access::READ).outcome.unwrap();
    let leaf_addr = (mem.inner.read_u64(Hpa(pt.root)).unwrap() & 0x000f_ffff_ffff_f000) + 8;
    let read_only = mem.inner.read_u64(Hpa(leaf_addr)).unwrap() & !0x2;
    let mem = RacingMemory { replacement: read_only, ..mem };
    let w = pt.translate(&mem, 0x4000_0000, Access::WRITE);
    assert_eq!(w.outcome.unwrap_err().kind, FaultKind::Permission);
    assert_eq!(mem.inner.read_u64(Hpa(leaf_addr)).unwrap() & 0x40, 0, "no D on a refused write");
}

#[test]
fn concurrent_walkers_all_translate_and_leave_a_and_d_set() {
    let inner = HostMemory::new(&[(Hpa(0x10_0000), 0x10_0000)]).unwrap();
    let mut fa = FrameAllocator::new(&[(Hpa(0x10_0000), 0x10_0000)]);
    let pt = X86Paging::create(&inner, &mut fa, Levels::Four).unwrap();
    for page in 0..64u64 {
        pt.map(&inner, &mut fa, page << 12, 0x1_0000_0000 + (page << 12), 12, X86Attrs::ALL)
            .unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (inner, pt) = (&inner, &pt);
            s.spawn(move || {
                for i in 0..256u64 {
                    let page = (i * 7 + t) % 64;
                    let access = if (i + t) % 3 == 0 { Access::WRITE } else { Access::READ };
                    let leaf = pt.translate(inner, page << 12, access).outcome.unwrap();
                    assert_eq!(leaf.output, 0x1_0000_0000 + (page << 12));
                }
            });
        }
    });
    for page in 0..64u64 {
        let steps = pt.translate_observed(&inner, page << 12, Access::READ, Vec::new()).1;
        let pte = steps.last().unwrap().raw;
        assert_ne!(pte & 0x20, 0, "A set on page {page}");
    }
}

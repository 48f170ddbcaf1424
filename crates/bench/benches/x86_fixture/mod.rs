//! The x86-64 map both walkers read: `pgtable`'s 4-level tables in host memory, and the very
//! same bytes copied into process memory for the `x86_64` crate's `translate_addr`. Shared by
//! the `x86_walk` bench and the `walk_instructions` example (`#[path]`), so both measure the
//! same thing.

use sviommu_memory::{FrameAllocator, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, Walk};
use x86_64::structures::paging::{OffsetPageTable, PageTable, PageTableFlags, Translate};
use x86_64::{PhysAddr, VirtAddr};

/// Pages mapped, 4K each, identity, from 1G up.
pub const PAGES: u64 = 512;
const TABLES_HPA: u64 = 0x10_0000;
/// Table frames: 256 tables is far more than 512 pages in one 1G region need.
const TABLE_FRAMES: usize = 256;
/// An x86 entry's address bits (51:12).
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The input addresses, one per mapped page.
pub fn pages() -> impl Iterator<Item = u64> {
    (0..PAGES).map(|i| 0x4000_0000 + i * 0x1000)
}

/// Both copies of the map.
pub struct X86Fixture {
    /// Where `pgtable` reads.
    host: HostMemory,
    /// `pgtable`'s configured tables.
    tables: X86Paging,
    /// The crate's copy: one 4K-aligned `PageTable` per table frame of `host`.
    copy: Vec<PageTable>,
}

impl X86Fixture {
    /// Maps [`pages`] with `pgtable`, copies the table frames, and checks that both walkers
    /// agree on every page.
    pub fn new() -> Self {
        let len = (TABLE_FRAMES * 0x1000) as u64;
        let host = HostMemory::new(&[(Hpa(TABLES_HPA), len)]).expect("one region");
        let mut frames = FrameAllocator::new(&[(Hpa(TABLES_HPA), len)]);
        let tables = X86Paging::create(&host, &mut frames, Levels::Four).expect("root");
        for va in pages() {
            tables.map(&host, &mut frames, va, va, 12, X86Attrs::ALL).expect("map");
        }
        let mut copy: Vec<PageTable> = (0..TABLE_FRAMES).map(|_| PageTable::new()).collect();
        for (i, t) in copy.iter_mut().enumerate() {
            let mut bytes = [0u8; 0x1000];
            host.read(Hpa(TABLES_HPA + i as u64 * 0x1000), &mut bytes).expect("inside the region");
            for (e, word) in t.iter_mut().zip(bytes.chunks_exact(8)) {
                let v = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                e.set_addr(
                    PhysAddr::new(v & ADDR_MASK),
                    PageTableFlags::from_bits_retain(v & !ADDR_MASK),
                );
            }
        }
        let mut fixture = Self { host, tables, copy };
        let (host, tables, crate_view) = fixture.walkers();
        for va in pages() {
            let ours = tables.translate(host, va, Access::READ).outcome;
            let theirs = crate_view.translate_addr(VirtAddr::new(va)).map(|p| p.as_u64());
            assert_eq!(ours.ok().map(|l| l.output), theirs, "both walks agree on {va:#x}");
        }
        fixture
    }

    /// Both walkers: `pgtable`'s memory and tables, and the crate's walker over the copy.
    pub fn walkers(&mut self) -> (&HostMemory, &X86Paging, OffsetPageTable<'_>) {
        let root_index =
            usize::try_from((self.tables.root - TABLES_HPA) / 0x1000).expect("a small index");
        let base = self.copy.as_mut_ptr();
        let offset = (base as u64).wrapping_sub(TABLES_HPA);
        assert!(root_index < self.copy.len(), "the root is one of the copied frames");
        // SAFETY: `base` points at `TABLE_FRAMES` live, 4K-aligned page tables that `self.copy`
        // owns; the returned view borrows `self` mutably, so nothing else touches them while it
        // lives. The crate reads table `pa` at `pa + offset`, which for every table address the
        // walk can meet (all inside [TABLES_HPA, TABLES_HPA + len), built by `pgtable`) is one
        // of them; `root_index` is in bounds (checked above).
        let view =
            unsafe { OffsetPageTable::new(&mut *base.add(root_index), VirtAddr::new(offset)) };
        (&self.host, &self.tables, view)
    }
}

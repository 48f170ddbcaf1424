//! x86-64 page tables the `x86_64` crate writes with its own mapper, each table at a
//! (table-space) address the test chose.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use x86_64::structures::paging::mapper::{
    MappedPageTable, Mapper, PageTableFrameMapping, TranslateResult,
};
use x86_64::structures::paging::{
    FrameAllocator as X86FrameAllocator, Page, PageSize, PageTable, PageTableFlags as F, PhysFrame,
    Size1GiB, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

/// Page tables the `x86_64` crate writes, each at a (table-space) address we chose.
#[derive(Debug, Default)]
struct Frames {
    tables: RefCell<HashMap<u64, Box<PageTable>>>,
    next: RefCell<u64>,
}

/// The crate's view of our frames: each frame is its own boxed table.
#[derive(Debug)]
pub struct Mapping(Rc<Frames>);

// SAFETY: every frame maps to its own boxed, 4K-aligned `PageTable`, which lives as long as
// `Frames` and is never moved (the Box owns it).
unsafe impl PageTableFrameMapping for Mapping {
    fn frame_to_pointer(&self, frame: PhysFrame) -> *mut PageTable {
        let mut tables = self.0.tables.borrow_mut();
        let table = tables
            .entry(frame.start_address().as_u64())
            .or_insert_with(|| Box::new(PageTable::new()));
        &mut **table as *mut PageTable
    }
}

#[derive(Debug)]
struct Alloc(Rc<Frames>);

// SAFETY: each frame is handed out once, never reused, and is 4K aligned.
unsafe impl X86FrameAllocator<Size4KiB> for Alloc {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let mut next = self.0.next.borrow_mut();
        let frame = PhysFrame::from_start_address(PhysAddr::new(*next)).ok()?;
        *next += 0x1000;
        Some(frame)
    }
}

/// 4-level tables built by the `x86_64` crate's `MappedPageTable`: the root at the address the
/// test chose, every further table in the 4K frames after it.
#[derive(Debug)]
pub struct X86Tables {
    mapper: MappedPageTable<'static, Mapping>,
    alloc: Alloc,
    frames: Rc<Frames>,
}

impl X86Tables {
    /// Empty tables with the root at `root`, further tables from `root + 4K` up.
    pub fn new(root: u64) -> Self {
        let frames = Rc::new(Frames::default());
        *frames.next.borrow_mut() = root + 0x1000;
        let table = Mapping(frames.clone())
            .frame_to_pointer(PhysFrame::containing_address(PhysAddr::new(root)));
        // SAFETY: `table` points at a boxed table owned by `frames`, which the mapper keeps
        // alive (its `Mapping` holds an `Rc`), never moved or freed; nothing else holds a
        // reference to it.
        let mapper = unsafe { MappedPageTable::new(&mut *table, Mapping(frames.clone())) };
        Self { mapper, alloc: Alloc(frames.clone()), frames }
    }

    /// Maps one page with the crate's own mapper; a refused map (overlap) is simply skipped.
    pub fn map<S: PageSize>(&mut self, va: u64, pa: u64, flags: F)
    where
        MappedPageTable<'static, Mapping>: Mapper<S>,
    {
        let parent = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
        let page = Page::<S>::containing_address(VirtAddr::new(va));
        let frame = PhysFrame::<S>::containing_address(PhysAddr::new(pa));
        // SAFETY: the mapped frames are never accessed; only the tables are, and they are
        // owned by `Frames`.
        let mapped = unsafe {
            self.mapper.map_to_with_table_flags(page, frame, flags, parent, &mut self.alloc)
        };
        if let Ok(flush) = mapped {
            flush.ignore();
        }
    }

    /// One mapping of a random case, by `kind`: a 4K page (0) `slot` pages into GB `gig`, to
    /// 4G up; a 2M page (1 or 2) `slot % 512` blocks into it, to 8G up; a 1G page (any other)
    /// at GB `gig`, to itself. Returns the page's address.
    pub fn map_kind(&mut self, kind: u64, gig: u64, slot: u64, flags: F) -> u64 {
        let va = gig << 30;
        match kind {
            0 => {
                let v = va | slot << 12;
                self.map::<Size4KiB>(v, 0x1_0000_0000 + (slot << 12), flags);
                v
            }
            1 | 2 => {
                let v = va | (slot % 512) << 21;
                self.map::<Size2MiB>(v, 0x2_0000_0000 + ((slot % 512) << 21), flags);
                v
            }
            _ => {
                self.map::<Size1GiB>(va, va, flags);
                va
            }
        }
    }

    /// What the crate's own walk finds for `va`.
    pub fn translate(&self, va: u64) -> TranslateResult {
        self.mapper.translate(VirtAddr::new(va))
    }

    /// Every table: its address and its 512 entries as the hardware reads them.
    pub fn tables(&self) -> Vec<(u64, Vec<u64>)> {
        let tables = self.frames.tables.borrow();
        tables
            .iter()
            .map(|(&pa, table)| {
                (pa, table.iter().map(|e| e.addr().as_u64() | e.flags().bits()).collect())
            })
            .collect()
    }
}

/// Leaf flags: present, and writable, user and executable as asked.
pub fn flags(writable: bool, user: bool, exec: bool) -> F {
    let mut f = F::PRESENT;
    f.set(F::WRITABLE, writable);
    f.set(F::USER_ACCESSIBLE, user);
    f.set(F::NO_EXECUTE, !exec);
    f
}

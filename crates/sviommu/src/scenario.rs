//! The built-in default scenario.
//!
//! A guest has 64 MiB of RAM (GPA 0 up) backed by host memory at HPA 1 GiB. A process in the
//! guest has an address space on x86-64 4-level tables that the guest built in its own RAM: code,
//! a heap in 4K pages and a 2M buffer. The requests are what a device bound to that process
//! would send with its PASID: reads, writes, an instruction fetch, and a few that must fault.
//!
//! The host maps guest RAM with VT-d second-stage tables in 4K pages and write-protects one
//! page (as a VMM does to track dirty pages). The same requests are then walked alone (what the
//! guest's CPU sees, GVA -> GPA) and nested (what the IOMMU does, GVA -> GPA -> HPA).

use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, MemoryError};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Direct, MapError, Nested, Walk, WalkCtx};

use crate::report::{Report, Row, Section};

/// Host memory for the host's own tables.
const HOST_TABLES: (Hpa, u64) = (Hpa(0x10_0000), 0x100_0000);
/// Guest RAM: GPA 0 .. 64 MiB at HPA 1 GiB.
const GUEST_RAM: GuestRamRegion =
    GuestRamRegion { gpa: Gpa(0), len_bytes: 0x400_0000, hpa: Hpa(0x4000_0000) };
/// The guest allocates its page tables from 4 MiB above its first megabyte.
const GUEST_TABLE_POOL: (Gpa, u64) = (Gpa(0x10_0000), 0x40_0000);

const CODE: u64 = 0x40_0000;
const HEAP: u64 = 0x7f00_0000_0000;
const BUFFER: u64 = 0x7f00_4000_0000;
const WINDOW: u64 = 0x7f00_8000_0000;
/// Guest-physical frames of the heap's first page, and of a page outside guest RAM.
const HEAP_GPA: u64 = 0x110_0000;
const BEYOND_RAM_GPA: u64 = 0x8000_0000;

/// Why the scenario could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("memory: {0}")]
    Memory(#[from] MemoryError),
    #[error("building tables: {0}")]
    Map(#[from] MapError),
}

/// One request the device sends.
struct Request {
    what: &'static str,
    input: u64,
    access: Access,
}

fn requests() -> Vec<Request> {
    let r = |what, input, access| Request { what, input, access };
    vec![
        r("code fetch", CODE + 0x123, Access::EXEC),
        r("heap write", HEAP + 0x1_0040, Access::WRITE),
        r("heap read, last page", HEAP + 0xf_fff8, Access::READ),
        r("buffer write (2M page)", BUFFER + 0x1a_2b3c, Access::WRITE),
        r("write to code", CODE + 0x10, Access::WRITE),
        r("unmapped heap page", HEAP + 0x10_0000, Access::READ),
        r("non-canonical address", 0x0000_8000_0000_0000, Access::READ),
        r("read beyond guest RAM", WINDOW + 0x40, Access::READ),
        r("write, page write-protected by host", HEAP + 0x3_0008, Access::WRITE),
    ]
}

/// Builds the layout and translates every request.
pub fn default_scenario() -> Result<Report, ScenarioError> {
    let host = HostMemory::new(&[HOST_TABLES, (GUEST_RAM.hpa, GUEST_RAM.len_bytes)])?;
    let ram = GuestRam::new(&host, vec![GUEST_RAM]);
    let mut guest_frames = FrameAllocator::new(&[GUEST_TABLE_POOL]);

    // The guest process: its tables in guest RAM, pointing at guest-physical frames.
    let process = X86Paging::create(&ram, &mut guest_frames, Levels::Four)?;
    let code = X86Attrs { writable: false, user: true, exec: true, global: false };
    let data = X86Attrs { writable: true, user: true, exec: false, global: false };
    process.map(&ram, &mut guest_frames, CODE, 0x100_0000, 12, code)?;
    for page in 0..16 {
        process.map(
            &ram,
            &mut guest_frames,
            HEAP + page * 0x1_0000,
            0x110_0000 + page * 0x1000,
            12,
            data,
        )?;
    }
    // Sixteen pages 64K apart, and the last 4K page of the first megabyte.
    process.map(&ram, &mut guest_frames, HEAP + 0xf_f000, 0x111_0000, 12, data)?;
    process.map(&ram, &mut guest_frames, BUFFER, 0x120_0000, 21, data)?;
    // The guest maps a page it has no RAM behind; only stage 2 can tell.
    process.map(&ram, &mut guest_frames, WINDOW, BEYOND_RAM_GPA, 12, data)?;

    // The host: guest RAM in second-stage 4K pages, heap page 3 write-protected.
    let mut host_frames = FrameAllocator::new(&[HOST_TABLES]);
    let host_s2 = VtdSecondStage::create(&host, &mut host_frames, vtd_ss::Levels::Four)?;
    let mut gpa = 0;
    while gpa < GUEST_RAM.len_bytes {
        let protected = gpa == HEAP_GPA + 0x3000;
        let attrs = if protected { VtdSsAttrs::READ_ONLY } else { VtdSsAttrs::ALL };
        host_s2.map(&host, &mut host_frames, gpa, GUEST_RAM.hpa.0 + gpa, 12, attrs)?;
        gpa += 0x1000;
    }

    let stage1 = Section {
        title: "The guest process's address space, walked alone (stage 1: GVA -> GPA)".into(),
        stages: vec![format!(
            "stage 1: x86-64 4-level tables built by the guest in its RAM, root at GPA {:#x}",
            process.root
        )],
        translations: requests()
            .iter()
            .map(|r| {
                let w = process.translate(&ram, r.input, r.access);
                Row::new(r.what, r.input, r.access, w.outcome.map(|l| (None, l)), w.reads)
            })
            .collect(),
    };

    let nested = Nested { s1: &process, s2: &host_s2 };
    let both = Section {
        title: "The same requests through the IOMMU, nested (GVA -> GPA -> HPA)".into(),
        stages: vec![
            format!(
                "stage 1: the guest's x86-64 4-level tables (VT-d first stage), root at GPA {:#x}; \
                 every table read is itself translated by stage 2",
                process.root
            ),
            format!(
                "stage 2: the host's VT-d second-stage 4-level tables, root at HPA {:#x}, \
                 guest RAM in 4K pages",
                host_s2.root
            ),
        ],
        translations: requests()
            .iter()
            .map(|r| {
                let mut cx = WalkCtx::new(&host, ());
                let outcome = nested.walk_stages(&mut cx, &Direct, r.input, r.access);
                let outcome = outcome.map(|(s1, leaf)| (Some(s1), leaf));
                Row::new(r.what, r.input, r.access, outcome, cx.reader.reads())
            })
            .collect(),
    };

    Ok(Report { scenario: "built-in default scenario".into(), sections: vec![stage1, both] })
}

//! The built-in default scenario.
//!
//! A guest has 64 MiB of RAM (GPA 0 up) backed by host memory at HPA 1 GiB. A process in the
//! guest has an address space whose tables the guest built in its own RAM: code, a heap in 4K
//! pages, a 2M buffer, and a page the guest maps but has no RAM behind. The host maps guest RAM
//! with stage-2 tables in 4K pages and write-protects one heap page, as a VMM does to track dirty
//! pages. The requests are what a device bound to that process would send with its PASID:
//! reads, writes, an instruction fetch, and some that must fault.
//!
//! The same process and the same requests run twice: on Intel VT-d (x86-64 first stage over
//! VT-d second stage) and on Arm SMMUv3 (VMSAv8-64 stage 1 over stage 2 with a 40-bit IPA space
//! and a concatenated starting table).

use sviommu_memory::{
    FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, MemoryError, PhysMemory,
};
use sviommu_pgtable::vmsa::{Granule, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, Direct, MapError, Nested, Walk, WalkCtx};

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
/// The heap page the host write-protects.
const PROTECTED_GPA: u64 = HEAP_GPA + 0x3000;

/// Why the scenario could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("memory: {0}")]
    Memory(#[from] MemoryError),
    #[error("building tables: {0}")]
    Map(#[from] MapError),
}

/// What a process mapping holds.
#[derive(Clone, Copy)]
enum Kind {
    Code,
    Data,
}

/// One mapping of the guest process: `2^size_lg2` bytes at `va` to guest-physical `gpa`.
struct Mapping {
    va: u64,
    gpa: u64,
    size_lg2: u8,
    kind: Kind,
}

fn process_mappings() -> Vec<Mapping> {
    let m = |va, gpa, size_lg2, kind| Mapping { va, gpa, size_lg2, kind };
    let mut all = vec![m(CODE, 0x100_0000, 12, Kind::Code)];
    // Sixteen heap pages 64K apart, and the last 4K page of the heap's first megabyte.
    all.extend((0..16).map(|p| m(HEAP + p * 0x1_0000, HEAP_GPA + p * 0x1000, 12, Kind::Data)));
    all.push(m(HEAP + 0xf_f000, HEAP_GPA + 0x1_0000, 12, Kind::Data));
    all.push(m(BUFFER, 0x120_0000, 21, Kind::Data));
    // A page the guest has no RAM behind: only stage 2 can tell.
    all.push(m(WINDOW, BEYOND_RAM_GPA, 12, Kind::Data));
    all
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
        // Bit 48: non-canonical on x86-64 4-level, beyond a 48-bit VMSA input range.
        r("beyond the input range", 0x0001_0000_0000_0000, Access::READ),
        r("read beyond guest RAM", WINDOW + 0x40, Access::READ),
        r("write, page write-protected by host", HEAP + 0x3_0008, Access::WRITE),
    ]
}

/// Maps guest RAM into a stage 2 in 4K pages, the protected page read-only.
fn map_guest_ram(
    mut map: impl FnMut(u64, u64, bool) -> Result<(), MapError>,
) -> Result<(), MapError> {
    let mut gpa = 0;
    while gpa < GUEST_RAM.len_bytes {
        map(gpa, GUEST_RAM.hpa.0 + gpa, gpa != PROTECTED_GPA)?;
        gpa += 0x1000;
    }
    Ok(())
}

/// Translates every request through stage 1 alone over guest RAM (what the guest's CPU sees)
/// and through the nested pair over host memory (what the IOMMU does).
fn rows<S1: Walk, S2: Walk, G: PhysMemory>(
    s1: &S1,
    s2: &S2,
    ram: &G,
    host: &HostMemory,
) -> Vec<Row> {
    let nested = Nested { s1, s2 };
    requests()
        .iter()
        .map(|r| {
            let gpa = s1.translate(ram, r.input, r.access).outcome.ok().map(|l| l.output);
            let mut cx = WalkCtx::new(host, ());
            let outcome = nested.walk_stages(&mut cx, &Direct, r.input, r.access);
            Row::new(r.what, r.input, r.access, gpa, outcome.map(|(_, l)| l), cx.reader.reads())
        })
        .collect()
}

fn vtd(host: &HostMemory) -> Result<Section, ScenarioError> {
    let ram = GuestRam::new(host, vec![GUEST_RAM]);
    let mut guest_frames = FrameAllocator::new(&[GUEST_TABLE_POOL]);
    let process = X86Paging::create(&ram, &mut guest_frames, Levels::Four)?;
    for m in process_mappings() {
        let attrs = match m.kind {
            Kind::Code => X86Attrs { writable: false, user: true, exec: true, global: false },
            Kind::Data => X86Attrs { writable: true, user: true, exec: false, global: false },
        };
        process.map(&ram, &mut guest_frames, m.va, m.gpa, m.size_lg2, attrs)?;
    }

    let mut host_frames = FrameAllocator::new(&[HOST_TABLES]);
    let s2 = VtdSecondStage::create(host, &mut host_frames, vtd_ss::Levels::Four)?;
    map_guest_ram(|gpa, hpa, writable| {
        let attrs = if writable { VtdSsAttrs::ALL } else { VtdSsAttrs::READ_ONLY };
        s2.map(host, &mut host_frames, gpa, hpa, 12, attrs)
    })?;

    Ok(Section {
        title: "Intel VT-d, scalable mode, nested PASID entry (PGTT = nested)".into(),
        stages: vec![
            format!(
                "first stage:  the guest's x86-64 4-level tables, root at GPA {:#x}; every table \
                 read is itself translated by second stage",
                process.root
            ),
            format!(
                "second stage: the host's VT-d 4-level tables, root at HPA {:#x}, guest RAM in \
                 4K pages",
                s2.root
            ),
        ],
        address_names: ["IOVA (GVA)", "GPA", "HPA"],
        translations: rows(&process, &s2, &ram, host),
    })
}

fn smmuv3(host: &HostMemory) -> Result<Section, ScenarioError> {
    let ram = GuestRam::new(host, vec![GUEST_RAM]);
    // The Arm guest's tables come from the top of the same pool; the two guests never meet.
    let mut guest_frames = FrameAllocator::new(&[GUEST_TABLE_POOL]);
    let process = VmsaS1::create(&ram, &mut guest_frames, VmsaS1::new(0, Granule::K4, 16))?;
    for m in process_mappings() {
        let attrs = match m.kind {
            Kind::Code => S1Attrs { writable: false, priv_exec: false, ..S1Attrs::ALL },
            Kind::Data => S1Attrs { user_exec: false, priv_exec: false, ..S1Attrs::ALL },
        };
        process.map(&ram, &mut guest_frames, m.va, m.gpa, m.size_lg2, attrs)?;
    }

    // A 40-bit IPA space starting at level 1 (SL0 = 1): two concatenated level-1 tables.
    let mut host_frames = FrameAllocator::new(&[HOST_TABLES]);
    let s2 = VmsaS2::create(host, &mut host_frames, VmsaS2::new(0, Granule::K4, 24, 1))?;
    map_guest_ram(|ipa, pa, writable| {
        let attrs = if writable { S2Attrs::ALL } else { S2Attrs::READ_ONLY };
        s2.map(host, &mut host_frames, ipa, pa, 12, attrs)
    })?;

    Ok(Section {
        title: "Arm SMMUv3, nested STE (Config = S1 + S2) over the guest's CD".into(),
        stages: vec![
            format!(
                "stage 1: the guest's VMSAv8-64 4K-granule tables (T0SZ 16, 4 levels), TTB0 at \
                 IPA {:#x}; every table read is itself translated by stage 2",
                process.ttb
            ),
            format!(
                "stage 2: the host's VMSAv8-64 4K-granule tables (S2T0SZ 24, SL0 1: 3 levels, \
                 2 concatenated level-1 tables) at PA {:#x}, guest RAM in 4K pages",
                s2.ttb
            ),
        ],
        address_names: ["VA", "IPA", "PA"],
        translations: rows(&process, &s2, &ram, host),
    })
}

/// Builds both layouts and translates every request.
pub fn default_scenario() -> Result<Report, ScenarioError> {
    // Each architecture gets fresh memory: the same guest layout, built twice.
    let vtd_host = HostMemory::new(&[HOST_TABLES, (GUEST_RAM.hpa, GUEST_RAM.len_bytes)])?;
    let smmu_host = HostMemory::new(&[HOST_TABLES, (GUEST_RAM.hpa, GUEST_RAM.len_bytes)])?;
    Ok(Report {
        scenario: "built-in default scenario".into(),
        sections: vec![vtd(&vtd_host)?, smmuv3(&smmu_host)?],
    })
}

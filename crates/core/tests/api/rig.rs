//! A system to run the API suite on: host memory, one unit of either architecture with its
//! real driver and hardware model, and the tables other people own (process page tables, a
//! guest's stage 1) built with pgtable as a CPU or a guest would.

use std::sync::Arc;

use sviommu_core::arch::smmuv3::SmmuUnit;
use sviommu_core::arch::vtd::VtdUnit;
use sviommu_core::driver::{DmaAccess, DmaResult};
use sviommu_core::topology::{Acs, DeviceId, Scope, Topology, TopologyBuilder, UnitId, UnitKind};
use sviommu_core::{
    AddressSpace, AddressSpaceId, DomainId, Iommu, Pasid, Stage1Config, Stage1Format,
};
use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::s1::{S1Attrs, VmsaS1};
use sviommu_pgtable::vmsa::Granule as PtGranule;
use sviommu_pgtable::x86::{self, X86Attrs, X86Paging};
use sviommu_pgtable::Build;
use sviommu_smmuv3::driver::{CdTablePolicy, DriverConfig as SmmuConfig};
use sviommu_smmuv3::hw::SmmuParams;
use sviommu_vtd::driver::DriverConfig as VtdConfig;
use sviommu_vtd::hw::VtdParams;

/// The unit's table memory (the driver's frames).
pub const TABLES: u64 = 0x100_0000;
pub const TABLES_LEN: u64 = 0x100_0000;
/// Process page tables (host memory a CPU's kernel would own).
pub const CPU: u64 = 0x400_0000;
pub const CPU_LEN: u64 = 0x40_0000;
/// A guest's RAM: GPA 0 up is host memory from here.
pub const GUEST: u64 = 0x1000_0000;
pub const GUEST_LEN: u64 = 0x40_0000;
/// The unit the rig's devices sit behind.
pub const UNIT: UnitId = UnitId(0);

/// Which unit the rig runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Vtd,
    Smmu(CdTablePolicy),
}

pub struct Rig {
    pub arch: Arch,
    pub iommu: Iommu,
    pub mem: Arc<HostMemory>,
    cpu_frames: FrameAllocator<Hpa>,
    guest_frames: FrameAllocator<Gpa>,
}

/// A topology builder with the rig's unit.
pub fn builder(arch: Arch) -> TopologyBuilder {
    let mut b = Topology::builder();
    match arch {
        Arch::Vtd => {
            b.unit(UNIT, UnitKind::VtdDrhd).scope(Scope::Segment(0));
            b.root_bus(0, 0);
        }
        Arch::Smmu(_) => {
            b.unit(UNIT, UnitKind::SmmuV3).scope(Scope::StreamIds { first: 0, last: 0xff });
        }
    }
    b
}

/// The seed's picture: A and B in one group (VT-d: B also sends as A; SMMUv3: one StreamID),
/// both able to send PASIDs; C alone; D alone.
pub fn seed(arch: Arch) -> (Topology, [DeviceId; 4]) {
    let mut b = builder(arch);
    let names = match arch {
        Arch::Vtd => {
            b.endpoint("00:02.0").pasid(20).ats().pri();
            b.endpoint("00:03.0").pasid(20).dma_alias(0x02, 0);
            b.endpoint("00:04.0").pasid(20);
            b.root_port("00:1c.0", 0x01).acs(Acs::isolated());
            b.endpoint("01:00.0").pasid(16);
            ["00:02.0", "00:03.0", "00:04.0", "01:00.0"].map(|s| DeviceId::pci(s).unwrap())
        }
        Arch::Smmu(_) => {
            b.platform("A").stream_id(0x10).pasid(20);
            b.platform("B").stream_id(0x10).pasid(20);
            b.platform("C").stream_id(0x11).pasid(20);
            b.platform("D").stream_id(0x12).pasid(16);
            ["A", "B", "C", "D"].map(DeviceId::platform)
        }
    };
    (b.build().unwrap(), names)
}

impl Rig {
    pub fn new(arch: Arch, topology: Topology) -> Self {
        let mem = Arc::new(
            HostMemory::new(&[
                (Hpa(TABLES), TABLES_LEN),
                (Hpa(CPU), CPU_LEN),
                (Hpa(GUEST), GUEST_LEN),
            ])
            .unwrap(),
        );
        let frames = FrameAllocator::new(&[(Hpa(TABLES), TABLES_LEN)]);
        let mut iommu = Iommu::new(topology);
        match arch {
            Arch::Vtd => {
                let unit = VtdUnit::new(
                    Arc::clone(&mem),
                    VtdParams { profile: profile(), ..VtdParams::default() },
                    frames,
                    VtdConfig { haw: 48, ..VtdConfig::default() },
                )
                .unwrap();
                iommu.add_driver(UNIT, Box::new(unit)).unwrap();
            }
            Arch::Smmu(policy) => {
                // Six SubstreamID bits keep CD tables linear, so a test can find a CD.
                let config =
                    SmmuConfig { cd_table_policy: policy, ssid_bits: 6, ..Default::default() };
                let unit = SmmuUnit::new(
                    Arc::clone(&mem),
                    SmmuParams { profile: profile(), ..SmmuParams::default() },
                    frames,
                    config,
                )
                .unwrap();
                iommu.add_driver(UNIT, Box::new(unit)).unwrap();
            }
        }
        Self {
            arch,
            iommu,
            mem,
            cpu_frames: FrameAllocator::new(&[(Hpa(CPU), CPU_LEN)]),
            guest_frames: FrameAllocator::new(&[(Gpa(0), GUEST_LEN / 2)]),
        }
    }

    /// What the unit's invalidation sanitizer reported since the last call (strict profile;
    /// nothing under forgiving), as the model words it.
    pub fn violations(&self) -> Vec<String> {
        let driver = self.iommu.driver(UNIT).unwrap().as_any();
        if let Some(u) = driver.downcast_ref::<VtdUnit>() {
            return u.hw().violations().iter().map(ToString::to_string).collect();
        }
        let u: &SmmuUnit = driver.downcast_ref().unwrap();
        u.hw().violations().iter().map(ToString::to_string).collect()
    }

    /// After a DMA a test made through a stale entry on purpose: under strict the sanitizer
    /// reported it, naming the command that was missing; under forgiving nothing is reported.
    #[track_caller]
    pub fn stale_reported(&self) {
        let v = self.violations();
        if profile().is_strict() {
            assert!(!v.is_empty(), "a deliberately stale DMA went unreported");
            assert!(v.iter().all(|r| r.contains(": missing ")), "{v:#?}");
        } else {
            assert!(v.is_empty(), "forgiving reports nothing: {v:#?}");
        }
    }

    pub fn vtd(&self) -> &VtdUnit {
        self.iommu.driver(UNIT).unwrap().as_any().downcast_ref().unwrap()
    }

    pub fn smmu(&self) -> &SmmuUnit {
        self.iommu.driver(UNIT).unwrap().as_any().downcast_ref().unwrap()
    }

    /// One DMA from `dev`'s own request ID, answered by the hardware model.
    pub fn dma(&self, dev: &DeviceId, pasid: Option<u32>, addr: u64, write: bool) -> DmaResult {
        let id = self.iommu.request_ids(dev).unwrap()[0];
        let access = if write { DmaAccess::Write } else { DmaAccess::Read };
        self.iommu.driver(UNIT).unwrap().dma(id, pasid.map(Pasid), addr, access)
    }

    /// The stage-1 format of this architecture's CPUs.
    pub fn cpu_format(&self) -> Stage1Format {
        match self.arch {
            Arch::Vtd => Stage1Format::X86 { levels: 4 },
            Arch::Smmu(_) => Stage1Format::Vmsa { granule_lg2: 12, ias_bits: 48 },
        }
    }

    /// A stage-1 table of this architecture's format in `mem`, with `pages` mapped.
    fn stage1<M: PhysMemory>(
        arch: Arch,
        mem: &M,
        frames: &mut FrameAllocator<M::Addr>,
        pages: &[(u64, u64)],
    ) -> Table {
        match arch {
            Arch::Vtd => {
                let pt = X86Paging::create(mem, frames, x86::Levels::Four).unwrap();
                for &(va, pa) in pages {
                    pt.map(mem, frames, va, pa, 12, X86Attrs::ALL).unwrap();
                }
                Table::X86(pt)
            }
            Arch::Smmu(_) => {
                let pt = VmsaS1::create(mem, frames, VmsaS1::new(0, PtGranule::K4, 16)).unwrap();
                for &(va, pa) in pages {
                    pt.map(mem, frames, va, pa, 12, S1Attrs::ALL).unwrap();
                }
                Table::Vmsa(pt)
            }
        }
    }

    /// A process with `pages` (VA, HPA) mapped in a CPU page table of this architecture.
    pub fn process(&mut self, id: u32, pages: &[(u64, u64)]) -> AddressSpace {
        self.process_with_table(id, pages).0
    }

    /// A process and its CPU page table, which the test maps into later (a page fault served).
    pub fn process_with_table(&mut self, id: u32, pages: &[(u64, u64)]) -> (AddressSpace, Table) {
        let table = Self::stage1(self.arch, &*self.mem, &mut self.cpu_frames, pages);
        let asid = 0x100 + u16::try_from(id).unwrap();
        let s1 = Stage1Config { format: self.cpu_format(), root: table.root(), asid };
        (AddressSpace { id: AddressSpaceId(id), s1 }, table)
    }

    /// Maps one 4K page into a process's table, as its kernel would on a fault.
    pub fn cpu_map(&mut self, table: &Table, va: u64, pa: u64) {
        match table {
            Table::X86(t) => t.map(&*self.mem, &mut self.cpu_frames, va, pa, 12, X86Attrs::ALL),
            Table::Vmsa(t) => t.map(&*self.mem, &mut self.cpu_frames, va, pa, 12, S1Attrs::ALL),
        }
        .unwrap();
    }

    /// The guest's RAM as the guest sees it.
    pub fn guest_ram(&self) -> GuestRam<&HostMemory> {
        guest_ram(&self.mem)
    }

    /// Maps the guest's RAM into `parent` (GPA 0 -> `GUEST`), as a VMM does.
    pub fn map_guest_ram(&mut self, parent: DomainId) {
        self.iommu.map(parent, 0, GUEST, GUEST_LEN, true).unwrap();
    }

    /// A guest stage 1 in guest RAM with `pages` (GVA, GPA) mapped.
    pub fn guest_stage1(&mut self, pages: &[(u64, u64)]) -> (Stage1Config, Table) {
        let ram = guest_ram(&self.mem);
        let table = Self::stage1(self.arch, &ram, &mut self.guest_frames, pages);
        (Stage1Config { format: self.cpu_format(), root: table.root(), asid: 0x42 }, table)
    }

    /// Every byte of the unit's table memory.
    pub fn table_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; TABLES_LEN as usize];
        self.mem.read(Hpa(TABLES), &mut v).unwrap();
        v
    }
}

/// The guest's RAM over host memory `mem`.
pub fn guest_ram(mem: &HostMemory) -> GuestRam<&HostMemory> {
    GuestRam::new(mem, vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_LEN, hpa: Hpa(GUEST) }])
}

/// A stage-1 table someone else (a CPU, a guest) owns.
pub enum Table {
    X86(X86Paging),
    Vmsa(VmsaS1),
}

impl Table {
    pub fn root(&self) -> u64 {
        match self {
            Table::X86(t) => t.root,
            Table::Vmsa(t) => t.ttb,
        }
    }

    /// Unmaps `[va, va + len)`, as its owner would.
    pub fn unmap<M: PhysMemory>(&self, mem: &M, va: u64, len: u64) {
        match self {
            Table::X86(t) => t.unmap(mem, va, len).map(|_| ()).unwrap(),
            Table::Vmsa(t) => t.unmap(mem, va, len).map(|_| ()).unwrap(),
        }
    }
}

/// The core drives the hardware as the spec asks: whatever a test did, under the strict
/// profile the sanitizer found no hit on an entry whose words changed without the invalidation
/// they needed.
impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let v = self.violations();
        assert!(v.is_empty(), "the core left stale cache entries in use:\n{}", v.join("\n"));
    }
}

/// The models' behaviour profile the suite runs under: `SVIOMMU_PROFILE` (`forgiving`,
/// `strict`, `strict:SEED`), forgiving when unset.
fn profile() -> sviommu_vtd::hw::Profile {
    std::env::var("SVIOMMU_PROFILE")
        .map(|s| s.parse().expect("SVIOMMU_PROFILE: forgiving, strict or strict:SEED"))
        .unwrap_or_default()
}

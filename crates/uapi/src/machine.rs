//! A ready-made host for trying call sequences: host memory, one unit of either architecture
//! with its real driver and hardware model, four devices, and a VMM whose memory is the
//! guest's RAM. The call script (`sviommu uapi`) and the tests run on it.
//!
//! | what | where |
//! |---|---|
//! | the unit's table memory | HPA [`TABLES`], [`TABLES_LEN`] bytes |
//! | guest RAM = the VMM's memory | HPA [`GUEST_RAM_HPA`], user VA [`VMM_VA`], GPA 0, [`GUEST_RAM_LEN`] bytes |
//! | guest page tables the helpers build | the upper half of guest RAM |
//!
//! Devices, in IOMMU groups of their own: VT-d `00:02.0` (PASID 20 bits, ATS, PRI),
//! `00:03.0` (20 bits), `00:04.0` (4 bits), `00:05.0` (no PASID); SMMUv3 platform masters `A`
//! (StreamID 0x10, 20 bits), `B` (0x11, 20 bits), `C` (0x12, 4 bits), `D` (0x13, no PASID).

use std::sync::Arc;

use sviommu_core::arch::smmuv3::SmmuUnit;
use sviommu_core::arch::vtd::VtdUnit;
use sviommu_core::topology::{DeviceId, Scope, Topology, UnitId, UnitKind};
use sviommu_core::{Iommu, Model};
use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::s1::{S1Attrs, VmsaS1};
use sviommu_pgtable::vmsa::Granule as PtGranule;
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::Build;
use sviommu_smmuv3::driver::DriverConfig as SmmuConfig;
use sviommu_smmuv3::hw::SmmuParams;
use sviommu_smmuv3::spec::{Cd, Granule};
use sviommu_vtd::driver::DriverConfig as VtdConfig;
use sviommu_vtd::hw::VtdParams;

use crate::iommufd::{Iommufd, VmmRegion};

/// The unit's table memory.
pub const TABLES: u64 = 0x100_0000;
/// Its size.
pub const TABLES_LEN: u64 = 0x100_0000;
/// Guest RAM in host memory.
pub const GUEST_RAM_HPA: u64 = 0x1000_0000;
/// Guest RAM's size.
pub const GUEST_RAM_LEN: u64 = 0x40_0000;
/// Guest RAM in the VMM's address space.
pub const VMM_VA: u64 = 0x7f00_0000_0000;
/// Where guest page tables built by the helpers start (GPA).
pub const GUEST_TABLES_GPA: u64 = GUEST_RAM_LEN / 2;
/// The unit.
pub const UNIT: UnitId = UnitId(0);

/// Why the machine could not be built or a helper refused (never a guest's doing).
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Host memory.
    #[error(transparent)]
    Memory(#[from] sviommu_memory::MemoryError),
    /// The topology.
    #[error("topology: {0}")]
    Topology(String),
    /// A driver did not come up.
    #[error("driver: {0}")]
    Driver(String),
    /// The core refused.
    #[error(transparent)]
    Core(#[from] sviommu_core::CoreError),
    /// A guest table could not be built.
    #[error("guest page table: {0}")]
    Map(#[from] sviommu_pgtable::MapError),
    /// No guest table the helpers built has that root.
    #[error("no guest table at GPA {0:#x}")]
    NoTable(u64),
    /// Guest page-table memory is used up.
    #[error("guest page-table memory: {0}")]
    Frames(String),
}

/// The host, the VMM's iommufd context and the guest's page-table memory.
#[derive(Debug)]
pub struct Machine {
    /// The architecture.
    pub model: Model,
    /// The VMM's iommufd context.
    pub fd: Iommufd,
    guest_frames: FrameAllocator<Gpa>,
    /// The guest tables the helpers built, by root GPA.
    guest_tables: Vec<(u64, GuestTable)>,
}

/// A guest stage-1 table the helpers built.
#[derive(Debug)]
enum GuestTable {
    X86(X86Paging),
    Vmsa(VmsaS1),
}

impl Machine {
    /// The machine for `model`.
    pub fn new(model: Model) -> Result<Self, MachineError> {
        Self::build(model, SmmuParams::default())
    }

    /// The SMMUv3 machine with a unit advertising `params` (e.g. PRI, for page requests).
    pub fn smmuv3_with(params: SmmuParams) -> Result<Self, MachineError> {
        Self::build(Model::Smmuv3, params)
    }

    fn build(model: Model, smmu_params: SmmuParams) -> Result<Self, MachineError> {
        let mem = Arc::new(HostMemory::new(&[
            (Hpa(TABLES), TABLES_LEN),
            (Hpa(GUEST_RAM_HPA), GUEST_RAM_LEN),
        ])?);
        let frames = FrameAllocator::new(&[(Hpa(TABLES), TABLES_LEN)]);
        let mut b = Topology::builder();
        match model {
            Model::Vtd => {
                b.unit(UNIT, UnitKind::VtdDrhd).scope(Scope::Segment(0));
                b.root_bus(0, 0);
                b.endpoint("00:02.0").pasid(20).ats().pri();
                b.endpoint("00:03.0").pasid(20);
                b.endpoint("00:04.0").pasid(4);
                b.endpoint("00:05.0");
            }
            Model::Smmuv3 => {
                b.unit(UNIT, UnitKind::SmmuV3).scope(Scope::StreamIds { first: 0, last: 0xff });
                b.platform("A").stream_id(0x10).pasid(20);
                b.platform("B").stream_id(0x11).pasid(20);
                b.platform("C").stream_id(0x12).pasid(4);
                b.platform("D").stream_id(0x13);
            }
        }
        let topology = b.build().map_err(|e| MachineError::Topology(e.to_string()))?;
        let mut iommu = Iommu::new(topology);
        match model {
            Model::Vtd => {
                let config = VtdConfig { haw: 48, ..VtdConfig::default() };
                let unit = VtdUnit::new(Arc::clone(&mem), VtdParams::default(), frames, config)
                    .map_err(|e| MachineError::Driver(e.to_string()))?;
                iommu.add_driver(UNIT, Box::new(unit))?;
            }
            Model::Smmuv3 => {
                // Six SubstreamID bits: linear CD tables.
                let config = SmmuConfig { ssid_bits: 6, ..SmmuConfig::default() };
                let unit = SmmuUnit::new(Arc::clone(&mem), smmu_params, frames, config)
                    .map_err(|e| MachineError::Driver(e.to_string()))?;
                iommu.add_driver(UNIT, Box::new(unit))?;
            }
        }
        let vmm = vec![VmmRegion { user_va: VMM_VA, hpa: GUEST_RAM_HPA, len: GUEST_RAM_LEN }];
        let guest_frames =
            FrameAllocator::new(&[(Gpa(GUEST_TABLES_GPA), GUEST_RAM_LEN - GUEST_TABLES_GPA)]);
        Ok(Self {
            model,
            fd: Iommufd::new(iommu, mem, vmm),
            guest_frames,
            guest_tables: Vec::new(),
        })
    }

    /// The VMM's iommufd context alone, for a VMM that hands it to its vIOMMUs
    /// (`sviommu-viommu`); the layout constants above still describe the machine.
    pub fn into_fd(self) -> Iommufd {
        self.fd
    }

    /// The machine's devices, in order.
    pub fn devices(&self) -> Vec<DeviceId> {
        self.fd.iommu().topology().devices().iter().map(|d| d.id.clone()).collect()
    }

    /// The guest's RAM as the guest sees it.
    pub fn guest_ram(&self) -> GuestRam<Arc<HostMemory>> {
        let region =
            GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_RAM_LEN, hpa: Hpa(GUEST_RAM_HPA) };
        GuestRam::new(Arc::clone(self.fd.memory()), vec![region])
    }

    /// The guest writes a 64-bit word at `gpa`.
    pub fn guest_write(&self, gpa: u64, value: u64) -> Result<(), MachineError> {
        Ok(self.guest_ram().write_u64(Gpa(gpa), value)?)
    }

    /// The guest reads a 64-bit word at `gpa`.
    pub fn guest_read(&self, gpa: u64) -> Result<u64, MachineError> {
        Ok(self.guest_ram().read_u64(Gpa(gpa))?)
    }

    /// A guest stage-1 table of the machine's architecture (x86-64 4-level; VMSAv8-64 4K,
    /// 48-bit) in guest RAM with `pages` (GVA, GPA) mapped 4K each, read-write; returns the
    /// root's GPA.
    pub fn guest_s1(&mut self, pages: &[(u64, u64)]) -> Result<u64, MachineError> {
        let ram = self.guest_ram();
        match self.model {
            Model::Vtd => {
                let pt = X86Paging::create(&ram, &mut self.guest_frames, Levels::Four)?;
                for &(va, pa) in pages {
                    pt.map(&ram, &mut self.guest_frames, va, pa, 12, X86Attrs::ALL)?;
                }
                let root = pt.root;
                self.guest_tables.push((root, GuestTable::X86(pt)));
                Ok(root)
            }
            Model::Smmuv3 => {
                let pt = VmsaS1::create(
                    &ram,
                    &mut self.guest_frames,
                    VmsaS1::new(0, PtGranule::K4, 16),
                )?;
                for &(va, pa) in pages {
                    pt.map(&ram, &mut self.guest_frames, va, pa, 12, S1Attrs::ALL)?;
                }
                let root = pt.ttb;
                self.guest_tables.push((root, GuestTable::Vmsa(pt)));
                Ok(root)
            }
        }
    }

    /// The guest maps one more 4K page in the table whose root is `root`.
    pub fn guest_map(&mut self, root: u64, gva: u64, gpa: u64) -> Result<(), MachineError> {
        let ram = self.guest_ram();
        match self.guest_tables.iter().find(|(r, _)| *r == root) {
            Some((_, GuestTable::X86(t))) => {
                t.map(&ram, &mut self.guest_frames, gva, gpa, 12, X86Attrs::ALL)?
            }
            Some((_, GuestTable::Vmsa(t))) => {
                t.map(&ram, &mut self.guest_frames, gva, gpa, 12, S1Attrs::ALL)?
            }
            None => return Err(MachineError::NoTable(root)),
        }
        Ok(())
    }

    /// The guest unmaps `gva..gva + len` from the table whose root is `root` (and, as a guest
    /// must, invalidates afterwards through its vIOMMU).
    pub fn guest_unmap(&mut self, root: u64, gva: u64, len: u64) -> Result<(), MachineError> {
        let ram = self.guest_ram();
        match self.guest_tables.iter().find(|(r, _)| *r == root) {
            Some((_, GuestTable::X86(t))) => drop(t.unmap(&ram, gva, len)?),
            Some((_, GuestTable::Vmsa(t))) => drop(t.unmap(&ram, gva, len)?),
            None => return Err(MachineError::NoTable(root)),
        }
        Ok(())
    }

    /// A zeroed 4K page of guest RAM (a linear CD table of 64 CDs); returns its GPA.
    pub fn guest_page(&mut self) -> Result<u64, MachineError> {
        let ram = self.guest_ram();
        let page =
            self.guest_frames.alloc(&ram, 12).map_err(|e| MachineError::Frames(e.to_string()))?;
        Ok(page.0)
    }

    /// The guest writes a CD at index `ssid` of the linear CD table at `table` (IHI 0070
    /// §5.4): stage 1 at `ttb0` (VMSAv8-64, 4K granule, 48-bit), tagged `asid`.
    pub fn guest_cd(
        &self,
        table: u64,
        ssid: u32,
        ttb0: u64,
        asid: u16,
    ) -> Result<(), MachineError> {
        let mut cd = Cd::default();
        cd.set_v(true);
        cd.set_t0sz(16);
        cd.set_tg0(Granule::Size4K);
        cd.set_ips(5);
        cd.set_aa64(true);
        cd.set_r(true);
        cd.set_a(true);
        cd.set_asid(asid);
        cd.set_ttb0(ttb0);
        cd.set_epd1(true);
        let ram = self.guest_ram();
        let base = table + 64 * u64::from(ssid);
        for (i, w) in (0u64..).zip(cd.0) {
            ram.write_u64(Gpa(base + 8 * i), w)?;
        }
        Ok(())
    }
}

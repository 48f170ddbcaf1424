//! The driver run by a guest over its own RAM (`GuestRam`, `Addr = Gpa`), as a guest OS runs
//! it against a virtual IOMMU. The unit here is a guest-side one: it sees the guest's physical
//! addresses as its memory (`GuestPhys`), as a vIOMMU does before the host translates them.
//! Checked: the driver's writes land where the GPA says in host memory, and the unit translates
//! with the tables the guest built.

mod driver_common;

use std::sync::Arc;

use driver_common::*;
use sviommu_memory::{
    FrameAllocator, Gpa, GuestPhys, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory,
};
use sviommu_vtd::driver::{DomainConfig, DriverConfig, PasidConfig, Prot, VtdDriver};
use sviommu_vtd::hw::Vtd;
use sviommu_vtd::spec::root::ScalableRootEntry;

type Ram = GuestRam<Mem>;

fn ram(mem: &Mem) -> Ram {
    GuestRam::new(
        mem.clone(),
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_RAM_LEN, hpa: Hpa(GUEST_RAM_HPA) }],
    )
}

#[test]
fn a_guest_runs_the_driver_over_its_own_ram() {
    let mem = memory();
    let unit = Arc::new(Vtd::new(GuestPhys(ram(&mem)), params()));
    // The guest's driver allocates its tables from GPA 4M up.
    let frames = FrameAllocator::new(&[(Gpa(0x40_0000), 0x80_0000)]);
    let mut drv: VtdDriver<_, Ram> =
        VtdDriver::new(unit.clone(), ram(&mem), frames, DriverConfig::default()).unwrap();
    let root: Gpa = drv.root_table_addr();
    assert!((0x40_0000..0xc0_0000).contains(&root.0), "{root:?}");

    let dom = drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    drv.map(dom, 0x10_0000, 0x20_0000, 0x1000, Prot::RW).unwrap();
    drv.attach(0x0310, None, PasidConfig::SecondStage { did: dom }).unwrap();

    // The root entry for bus 3 sits at GPA root + 48, which is host address GUEST_RAM_HPA +
    // root + 48, and points at the context table the driver recorded.
    let host = |gpa: u64| HostMemory::read_u64(&mem, Hpa(GUEST_RAM_HPA + gpa)).unwrap();
    let re = ScalableRootEntry::from_words([host(root.0 + 48), host(root.0 + 56)]);
    assert!(re.lp());
    let ce = drv.context_entry_addr(0x0310).unwrap();
    assert_eq!(re.lctp(), ce.0 & !0xfff);
    assert_eq!(drv.memory().read_u64(Gpa(root.0 + 48)).unwrap(), host(root.0 + 48));

    // The guest-side unit translates with the guest's tables (output: a GPA, for the host's
    // stage to translate next).
    let req = sviommu_vtd::hw::DmaRequest::new(0x0310, 0x10_0123, sviommu_vtd::hw::Access::READ);
    assert_eq!(unit.translate(&req).map(|t| t.output), Ok(0x20_0123));
    drv.unmap(dom, 0x10_0000, 0x1000).unwrap();
    drv.flush_iotlb(dom, None).unwrap();
    assert!(unit.translate(&req).is_err());
    assert_eq!(
        drv.stats().waits,
        2,
        "bring-up and the flush: each wait's status write landed in guest RAM"
    );
}

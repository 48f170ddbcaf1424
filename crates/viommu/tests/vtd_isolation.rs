//! Two guests on one VT-d host, each with its own half of the VMM's memory, IOAS, vIOMMU
//! (scalable mode, caching mode), driver and device: whatever guest A writes to its vIOMMU's
//! registers, its invalidation queue, its PASID table and its process's page tables, every DMA
//! of A's device faults or lands in A's half, and B's DMAs end exactly as before (issue 12's
//! isolation property, VT-d side; `smmuv3.rs` holds the SMMUv3 side).

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use sviommu_core::driver::{DmaAccess, DmaFault};
use sviommu_core::topology::DeviceId;
use sviommu_core::Model;
use sviommu_memory::{
    FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, Mmio, PhysMemory,
};
use sviommu_testsupport::x86::{flags, X86Tables};
use sviommu_uapi::data::map_flags;
use sviommu_uapi::machine::{Machine, GUEST_RAM_HPA, GUEST_RAM_LEN, VMM_VA};
use sviommu_viommu::smmuv3::SharedFd;
use sviommu_viommu::VVtd;
use sviommu_vtd::driver::{
    DomainConfig, DriverConfig, InvalidateRequest, ModeChoice, PasidConfig, VtdDriver,
};
use sviommu_vtd::spec::regs::{iqa, iqt, IQA, IQT};
use sviommu_vtd::spec::Fspm;
use x86_64::structures::paging::Size4KiB;

/// The requester ID each guest knows its device by.
const GRID: u16 = 0x0018;
/// The PASID each guest binds its process at.
const PASID_N: u32 = 5;
/// Guest RAM (GPA) for the guest driver's structures, and for its process's page tables.
const DRIVER_FRAMES: (u64, u64) = (0x10_0000, 0x8_0000);
const PROCESS_ROOT: u64 = 0x18_0000;
const PROCESS_TABLES_LEN: u64 = 0x4_0000;
/// The process's data page (GPA) and where it sees it (GVA).
const DATA_GPA: u64 = 0x1c_3000;
const GVA: u64 = 0x7f12_3456_7000;
/// Half of the VMM's guest memory each.
const HALF: u64 = GUEST_RAM_LEN / 2;
/// The vIOMMU's register page.
const REG_BYTES: u64 = 0x1000;

type Ram = GuestRam<Arc<HostMemory>>;

/// A guest's RAM: GPA 0 up is host `hpa` up.
fn ram_of(mem: &Arc<HostMemory>, hpa: u64) -> Ram {
    GuestRam::new(
        Arc::clone(mem),
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: HALF, hpa: Hpa(hpa) }],
    )
}

struct Guest {
    fd: SharedFd,
    mem: Arc<HostMemory>,
    /// Where its RAM starts in host memory.
    hpa: u64,
    dev: DeviceId,
    vvtd: Arc<VVtd>,
    driver: VtdDriver<Arc<VVtd>, Ram>,
    /// The DID its process's PASID is tagged with.
    did: u16,
}

/// A guest on the VMM's memory `[offset, offset + HALF)`: device `dev` bound, an IOAS mapping
/// that memory at IOVA 0 (= GPA 0), a vIOMMU with `dev` at [`GRID`], its driver brought up in
/// scalable mode, and its process bound at [`PASID_N`] through the driver (SVA in the guest).
fn guest_on(fd: &SharedFd, dev: &DeviceId, offset: u64) -> Guest {
    let (mem, dev_id, ioas) = {
        let mut fd = fd.lock().unwrap();
        let mem = Arc::clone(fd.memory());
        let dev_id = fd.device_bind(dev).unwrap();
        let ioas = fd.ioas_alloc().unwrap();
        let rw = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;
        fd.ioas_map(ioas, rw, VMM_VA + offset, HALF, 0).unwrap();
        (mem, dev_id, ioas)
    };
    let hpa = GUEST_RAM_HPA + offset;
    let vvtd =
        Arc::new(VVtd::new(Arc::clone(fd), ram_of(&mem, hpa), ioas, &[(GRID, dev_id)]).unwrap());
    let frames = FrameAllocator::new(&[(Gpa(DRIVER_FRAMES.0), DRIVER_FRAMES.1)]);
    let config = DriverConfig { mode: ModeChoice::Scalable, ..DriverConfig::default() };
    let mut driver = VtdDriver::new(Arc::clone(&vvtd), ram_of(&mem, hpa), frames, config).unwrap();
    // The process: GVA -> DATA_GPA, user read-write, in tables the `x86_64` crate writes.
    let mut p = X86Tables::new(PROCESS_ROOT);
    p.map::<Size4KiB>(GVA, DATA_GPA, flags(true, true, false));
    let ram = ram_of(&mem, hpa);
    for (at, entries) in p.tables() {
        for (i, e) in (0u64..).zip(entries) {
            ram.write_u64(Gpa(at + 8 * i), e).unwrap();
        }
    }
    let did = driver.alloc_domain(DomainConfig::External).unwrap();
    let bind = PasidConfig::FirstStageExternal {
        did,
        fs_root: PROCESS_ROOT,
        levels: Fspm::FourLevel,
        sre: false,
    };
    driver.attach(GRID, Some(PASID_N), bind).unwrap();
    Guest { fd: Arc::clone(fd), mem, hpa, dev: dev.clone(), vvtd, driver, did: did.0 }
}

/// One write guest A makes.
#[derive(Clone, Debug)]
enum Poke {
    /// A register write anywhere in its vIOMMU's register page (4 or 8 bytes).
    Mmio { offset: u64, wide: bool, value: u64 },
    /// A 64-bit write into its driver's structures or its process's page tables.
    Table { at: u64, value: u64 },
    /// A word of the PASID-table entry of its device at PASID n, then a PASID-cache
    /// invalidation for it through the driver.
    PasidWord { word: u64, value: u64 },
    /// A raw 256-bit descriptor (a type in the low nibble, random operands) at the queue's
    /// tail, and the tail moved past it.
    Descriptor { words: [u64; 4] },
}

fn poke() -> impl Strategy<Value = Poke> {
    let table_words = (DRIVER_FRAMES.1 + PROCESS_TABLES_LEN) / 8;
    prop_oneof![
        (0..REG_BYTES / 4, any::<bool>(), any::<u64>()).prop_map(|(o, wide, value)| {
            Poke::Mmio { offset: if wide { (o * 4) & !7 } else { o * 4 }, wide, value }
        }),
        (0..table_words, any::<u64>())
            .prop_map(|(i, value)| Poke::Table { at: DRIVER_FRAMES.0 + i * 8, value }),
        (0..8u64, any::<u64>()).prop_map(|(word, value)| Poke::PasidWord { word, value }),
        (0..16u64, any::<[u64; 4]>()).prop_map(|(ty, mut words)| {
            words[0] = (words[0] & !0xf) | ty;
            Poke::Descriptor { words }
        }),
    ]
}

impl Guest {
    fn ram(&self) -> Ram {
        ram_of(&self.mem, self.hpa)
    }

    /// A DMA write by the guest's device through the HOST model.
    fn dma(&self, pasid: Option<u32>, addr: u64) -> Result<u64, DmaFault> {
        self.fd.lock().unwrap().dma(&self.dev, pasid, addr, DmaAccess::Write).unwrap()
    }

    /// What its device's DMAs give: with and without PASID n, at the process's GVA, at guest
    /// RAM addresses and beyond its RAM.
    fn probe(&self) -> Vec<Result<u64, DmaFault>> {
        let addrs = [GVA, GVA + 0x1000, 0, DATA_GPA, HALF - 8, HALF, GUEST_RAM_LEN + 0x1000];
        addrs.iter().flat_map(|&a| [self.dma(None, a), self.dma(Some(PASID_N), a)]).collect()
    }

    fn poke(&mut self, p: &Poke) {
        let v = &*self.vvtd;
        let ram = self.ram();
        match *p {
            Poke::Mmio { offset, wide, value } => v.write(offset, if wide { 8 } else { 4 }, value),
            // A write outside its RAM (through a garbage pointer) is its own bus error: ignored.
            Poke::Table { at, value } => {
                let _ = ram.write_u64(Gpa(at), value);
            }
            Poke::PasidWord { word, value } => {
                if let Some(at) = self.driver.pasid_entry_addr(GRID, Some(PASID_N)) {
                    let _ = ram.write_u64(Gpa(at.0 + 8 * word), value);
                }
                // The driver may find the queue broken by earlier pokes: an error is the guest's.
                let _ = self.driver.invalidate(&[InvalidateRequest::PasidCache {
                    did: self.did,
                    pasid: Some(PASID_N),
                }]);
            }
            Poke::Descriptor { words } => {
                let base = iqa::IQA.in_place(v.read(IQA.0, 8));
                let tail = iqt::QT.in_place(v.read(IQT.0, 8));
                for (i, w) in (0u64..).zip(words) {
                    let _ = ram.write_u64(Gpa(base.wrapping_add(tail).wrapping_add(8 * i)), w);
                }
                v.write(IQT.0, 8, tail + 32);
            }
        }
        v.service();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn guest_a_cannot_reach_guest_b_whatever_it_writes(pokes in prop::collection::vec(poke(), 1..24)) {
        let m = Machine::new(Model::Vtd).unwrap();
        let devs = m.devices();
        let fd: SharedFd = Arc::new(Mutex::new(m.into_fd()));
        let mut a = guest_on(&fd, &devs[0], 0);
        let mut b = guest_on(&fd, &devs[1], HALF);
        let b_before = (b.probe(), b.driver.drain_faults().records);
        prop_assert_eq!(b_before.0[1], Ok(GUEST_RAM_HPA + HALF + DATA_GPA), "B's process works");
        prop_assert_eq!(a.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + DATA_GPA), "A's process works");
        let a_range = GUEST_RAM_HPA..GUEST_RAM_HPA + HALF;
        for p in &pokes {
            a.poke(p);
            for out in a.probe().into_iter().flatten() {
                prop_assert!(a_range.contains(&out), "{:?}: A reached {:#x}", p, out);
            }
        }
        // The same DMAs with the same results, and nothing new in B's fault records.
        prop_assert_eq!((b.probe(), b.driver.drain_faults().records), b_before);
        b.vvtd.service();
    }
}

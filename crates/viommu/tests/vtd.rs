//! A guest's VT-d, end to end (issue 12 step 3): the guest's own driver programs the vIOMMU
//! (the hardware model over guest RAM, scalable mode, caching mode) through MMIO; the vIOMMU
//! forwards through `uapi`; every device DMA goes through the host model's `translate`. And
//! step 4 on VT-d: page requests to the guest's page request queue and its responses back;
//! host faults stay with the VMM.

use std::sync::{Arc, Mutex};

use sviommu_core::arch::vtd::{HostVtd, VtdUnit};
use sviommu_core::driver::{DmaAccess, DmaFault};
use sviommu_core::topology::DeviceId;
use sviommu_core::Model;
use sviommu_core::{FaultEvent, Pasid};
use sviommu_memory::{
    FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, Mmio, PhysMemory,
};
use sviommu_testsupport::x86::{flags, X86Tables};
use sviommu_uapi::data::map_flags;
use sviommu_uapi::machine::{Machine, GUEST_RAM_HPA, GUEST_RAM_LEN, UNIT, VMM_VA};
use sviommu_uapi::{HwptAlloc, Iommufd, Object, ObjectId};
use sviommu_viommu::smmuv3::SharedFd;
use sviommu_viommu::vtd::{guest_params, guest_params_for};
use sviommu_viommu::{VVtd, ViommuError};
use sviommu_vtd::driver::{
    DeviceFeatures, Did, DomainConfig, DriverConfig, InvalidateRequest, ModeChoice, PasidConfig,
    VtdDriver,
};
use sviommu_vtd::hw::{Output, PageRequestMsg, PageRequestOutcome, VtdParams};
use sviommu_vtd::spec::fault::FaultRecord;
use sviommu_vtd::spec::pasid::PasidEntry;
use sviommu_vtd::spec::prq::ResponseCode;
use sviommu_vtd::spec::regs::iqer::Iqei;
use sviommu_vtd::spec::regs::{
    ecap, fsts, gcmd, iqa, iqer, iqh, iqt, FSTS, GCMD, IQA, IQER, IQH, IQT,
};
use sviommu_vtd::spec::{FaultReason, Fspm, Pgtt};
use x86_64::structures::paging::Size4KiB;

/// The requester ID the guest knows device X (the host's `00:02.0`) by: 00:03.0.
const GRID: u16 = 0x0018;
/// Device X's requester ID on the host: 00:02.0.
const HOST_RID: u16 = 0x0010;
/// The PASID the guest binds process P at.
const PASID_N: u32 = 5;
/// Guest RAM for the guest driver's structures (GPA).
const DRIVER_FRAMES: (u64, u64) = (0x10_0000, 0x8_0000);
/// P's page tables (the `x86_64` crate's, root here and further tables after it), and Q's.
const P_ROOT: u64 = 0x18_0000;
const Q_ROOT: u64 = 0x1a_0000;
/// P's data page (GPA) and where P sees it (GVA); Q maps the same GVA to another page.
const DATA_GPA: u64 = 0x1c_3000;
const Q_DATA_GPA: u64 = 0x1c_8000;
const GVA: u64 = 0x7f12_3456_7000;

type Ram = GuestRam<Arc<HostMemory>>;

fn ram(mem: &Arc<HostMemory>) -> Ram {
    let region = GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_RAM_LEN, hpa: Hpa(GUEST_RAM_HPA) };
    GuestRam::new(Arc::clone(mem), vec![region])
}

struct Guest {
    fd: SharedFd,
    mem: Arc<HostMemory>,
    dev: DeviceId,
    vvtd: Arc<VVtd>,
    driver: VtdDriver<Arc<VVtd>, Ram>,
}

/// A VT-d host and the VMM's context on it: device `00:02.0` bound, guest RAM mapped at IOVA 0
/// = GPA 0 in an IOAS. Returns the context, host memory, the device, its object, the IOAS.
fn vmm() -> (Iommufd, Arc<HostMemory>, DeviceId, ObjectId, ObjectId) {
    let m = Machine::new(Model::Vtd).unwrap();
    let dev = m.devices()[0].clone();
    let mut fd: Iommufd = m.into_fd();
    let mem = Arc::clone(fd.memory());
    let dev_id = fd.device_bind(&dev).unwrap();
    let ioas = fd.ioas_alloc().unwrap();
    let rw = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;
    fd.ioas_map(ioas, rw, VMM_VA, GUEST_RAM_LEN, 0).unwrap();
    (fd, mem, dev, dev_id, ioas)
}

/// The host (a VT-d machine), the VMM (guest RAM mapped at IOVA 0 = GPA 0 in an IOAS, the
/// vIOMMU with device `00:02.0` at guest requester ID [`GRID`]) and the guest's driver brought
/// up on it, with X's device-TLB (ATS) and page requests (PRE) enabled.
fn boot() -> Guest {
    let (fd, mem, dev, dev_id, ioas) = vmm();
    let fd = Arc::new(Mutex::new(fd));
    let vvtd = Arc::new(VVtd::new(Arc::clone(&fd), ram(&mem), ioas, &[(GRID, dev_id)]).unwrap());
    let frames = FrameAllocator::new(&[(Gpa(DRIVER_FRAMES.0), DRIVER_FRAMES.1)]);
    let config = DriverConfig { mode: ModeChoice::Scalable, ..DriverConfig::default() };
    let mut driver = VtdDriver::new(Arc::clone(&vvtd), ram(&mem), frames, config).unwrap();
    assert!(driver.capabilities().caching_mode);
    assert!(driver.capabilities().page_requests, "the host takes page requests");
    driver.set_device_features(GRID, DeviceFeatures { ats: true, page_requests: true }).unwrap();
    Guest { fd, mem, dev, vvtd, driver }
}

/// A process address space in guest RAM built by the `x86_64` crate (not by the code the
/// models walk with): `GVA` -> `data`, user read-write.
fn process(mem: &Arc<HostMemory>, root: u64, data: u64) -> X86Tables {
    let mut t = X86Tables::new(root);
    map(mem, &mut t, GVA, data);
    t
}

/// The guest maps `gva` -> `gpa` (user read-write) in `t` and writes its tables out.
fn map(mem: &Arc<HostMemory>, t: &mut X86Tables, gva: u64, gpa: u64) {
    t.map::<Size4KiB>(gva, gpa, flags(true, true, false));
    let ram = ram(mem);
    for (at, entries) in t.tables() {
        for (i, e) in (0u64..).zip(entries) {
            ram.write_u64(Gpa(at + 8 * i), e).unwrap();
        }
    }
}

/// The guest unmaps `GVA` from `p`: it clears the leaf entry (in the last-level table, the one
/// whose entry for `GVA` is a page).
fn clear_leaf(mem: &Arc<HostMemory>, p: &X86Tables) {
    let index = (GVA >> 12) & 511;
    let leaf = |e: &u64| e & !0xfff & (u64::MAX >> 12) == DATA_GPA;
    let (table, _) =
        p.tables().into_iter().find(|(_, e)| e.get(index as usize).is_some_and(leaf)).unwrap();
    ram(mem).write_u64(Gpa(table + 8 * index), 0).unwrap();
}

impl Guest {
    /// A DMA write by device X through the HOST model.
    fn dma(&self, pasid: Option<u32>, addr: u64) -> Result<u64, DmaFault> {
        self.fd.lock().unwrap().dma(&self.dev, pasid, addr, DmaAccess::Write).unwrap()
    }

    fn snapshot(&self) -> HostState {
        host_state(&self.fd.lock().unwrap())
    }

    /// Binds the address space rooted at `root` to X at `pasid` through the guest's driver
    /// (SVA in the guest): an external first-stage domain, attached with the §6.5.3.3 and
    /// caching-mode sequences the driver runs. Returns the guest's DID.
    fn bind(&mut self, root: u64, pasid: u32) -> Did {
        let did = self.driver.alloc_domain(DomainConfig::External).unwrap();
        let config = PasidConfig::FirstStageExternal {
            did,
            fs_root: root,
            levels: Fspm::FourLevel,
            sre: false,
        };
        self.driver.attach(GRID, Some(pasid), config).unwrap();
        did
    }

    /// Writes `pe` as the guest's PASID-table entry of X at `pasid` (in place) and invalidates
    /// the PASID cache for it with the guest's DID `did`.
    fn write_pasid_entry(&mut self, pasid: u32, pe: &PasidEntry, did: u16) {
        let at = self.driver.pasid_entry_addr(GRID, Some(pasid)).unwrap();
        for (i, w) in (0u64..).zip(pe.words()) {
            ram(&self.mem).write_u64(Gpa(at.0 + 8 * i), w).unwrap();
        }
        let inv = InvalidateRequest::PasidCache { did, pasid: Some(pasid) };
        self.driver.invalidate(&[inv]).unwrap();
    }

    /// The guest's fault records, drained.
    fn faults(&mut self) -> Vec<FaultRecord> {
        self.driver.drain_faults().records
    }

    /// The vIOMMU's invalidation queue error: IQER.IQEI if FSTS.IQE is set.
    fn queue_error(&self) -> Option<u64> {
        let v = &*self.vvtd;
        fsts::IQE.is_set(v.read(FSTS.0, 4)).then(|| iqer::IQEI.get(v.read(IQER.0, 8)))
    }
}

/// Host memory outside guest RAM, and the host unit's registers.
type HostState = (Vec<(u64, Vec<u8>)>, Vec<(sviommu_core::topology::UnitId, Vec<u32>)>);

fn host_state(fd: &Iommufd) -> HostState {
    let s = fd.hardware_snapshot();
    let memory = s.memory.into_iter().filter(|(start, _)| *start != GUEST_RAM_HPA).collect();
    (memory, s.registers)
}

/// The seed's flow, byte-exact: the guest binds P to X at PASID n through its own driver; X
/// writes at a GVA with PASID n through the host model; the bytes land in the host page that
/// the guest's first stage and the host's second stage together select.
#[test]
fn guest_sva_bind_reaches_the_host_page_the_two_stages_select() {
    let mut g = boot();
    // Until the guest programs a PASID, the host blocks X there.
    assert!(g.dma(Some(PASID_N), GVA).is_err());
    let p = process(&g.mem, P_ROOT, DATA_GPA);
    g.bind(P_ROOT, PASID_N);
    assert!(g.vvtd.host_hwpt(GRID, PASID_N).is_some());
    let offset = 0x9a8;
    let hpa = g.dma(Some(PASID_N), GVA + offset).unwrap();
    // Independently: the page the `x86_64` crate's own walk gives, plus where the VMM put
    // guest RAM.
    let gpa = match p.translate(GVA + offset) {
        x86_64::structures::paging::mapper::TranslateResult::Mapped { frame, offset, .. } => {
            frame.start_address().as_u64() + offset
        }
        other => panic!("{other:?}"),
    };
    let expected = GUEST_RAM_HPA + gpa;
    assert_eq!(hpa, expected);
    let payload = b"seed: sva_bind in the guest, end to end";
    g.fd.lock().unwrap().write_host(hpa, payload).unwrap();
    let mut seen = [0u8; 39];
    ram(&g.mem).read(Gpa(DATA_GPA + offset), &mut seen).unwrap();
    assert_eq!(&seen, payload, "P sees it at its GPA in guest RAM");
    // Requests without PASID use the guest's RID_PASID entry, which is not present: blocked.
    assert!(g.dma(None, DATA_GPA).is_err());
    // Other PASIDs are blocked on the host.
    assert!(g.dma(Some(PASID_N + 1), GVA).is_err());
    assert_eq!(g.queue_error(), None);
    assert!(g.faults().is_empty(), "the guest saw no fault");
    let s = g.vvtd.stats();
    assert_eq!((s.attached, s.replaced, s.host_refused), (1, 0, 0), "{s:?}");
}

/// The guest unmaps and invalidates through its own driver (PASID-based IOTLB and device-TLB
/// invalidation, then a wait): the next DMA faults with the architected reason. Before the
/// invalidation the host's IOTLB still holds the old page, so the invalidation is what
/// reached the host.
#[test]
fn guest_unmap_and_piotlb_invalidation_make_the_next_dma_fault() {
    let mut g = boot();
    let p = process(&g.mem, P_ROOT, DATA_GPA);
    let did = g.bind(P_ROOT, PASID_N);
    let hpa = g.dma(Some(PASID_N), GVA).unwrap();
    assert_eq!(hpa, GUEST_RAM_HPA + DATA_GPA);
    clear_leaf(&g.mem, &p);
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(hpa), "the host's IOTLB holds the old page");
    let before = g.vvtd.stats().invalidations;
    g.driver.flush_iotlb(did, Some((GVA, 0x1000))).unwrap();
    // The PASID-based IOTLB and the PASID-based device-TLB descriptors each reached the host.
    assert_eq!(g.vvtd.stats().invalidations - before, 2);
    match g.dma(Some(PASID_N), GVA) {
        Err(DmaFault::Fault(r)) => assert_eq!(r.code, FaultReason::SmFsEntryNotPresent as u16),
        other => panic!("expected fault reason 71h, got {other:?}"),
    }
}

/// Malformed PASID-table entries (a reserved bit set; a PGTT the vIOMMU does not run, second
/// stage) become their fault reasons in the guest's fault recording registers; the host is
/// unchanged, byte for byte.
#[test]
fn malformed_pasid_entries_are_fault_reasons_in_the_guest_and_never_reach_the_host() {
    let mut g = boot();
    process(&g.mem, P_ROOT, DATA_GPA);
    let did = g.bind(P_ROOT, PASID_N);
    let _ = g.faults();
    let before = g.snapshot();
    let mut good = PasidEntry::default();
    good.set_pgtt(Pgtt::FirstStage);
    good.set_fsptptr(Q_ROOT);
    good.set_fspm(Fspm::FourLevel);
    good.set_did(did.0);
    good.set_p(true);
    // Bit 80 (word 1, bit 16): reserved (§9.6).
    let mut words = good.words();
    words[1] |= 1 << 16;
    let reserved = PasidEntry::from_words(words);
    let mut second_stage = good;
    second_stage.set_pgtt(Pgtt::SecondStage);
    g.write_pasid_entry(7, &reserved, did.0);
    g.write_pasid_entry(8, &second_stage, did.0);
    let got: Vec<_> = g.faults().iter().map(|r| (r.sid(), r.pp(), r.pv(), r.fr())).collect();
    assert_eq!(
        got,
        [
            (GRID, true, 7, Ok(FaultReason::SmPasidEntryReserved)),
            (GRID, true, 8, Ok(FaultReason::SmPasidEntryInvalid)),
        ]
    );
    assert_eq!(g.queue_error(), None, "the invalidations themselves are legal");
    assert_eq!(g.vvtd.host_hwpt(GRID, 7), None);
    assert_eq!(g.vvtd.host_hwpt(GRID, 8), None);
    assert!(before == g.snapshot(), "the host's hardware-visible state changed");
    assert!(g.dma(Some(7), GVA).is_err());
}

/// The guest programs its RID_PASID entry (requests without PASID) with a first stage: the
/// host gets a nested HWPT attached to the device itself, not to (device, PASID), as Linux's
/// VMM flow does; DMA without PASID goes through both stages; the guest's invalidations of
/// that entry (the PASID-based IOTLB of RID_PASID, device-TLB without PASID, a changed and a
/// cleared entry) take effect on the host; an erroneous entry is a fault in the guest and
/// leaves nothing attached on the host.
#[test]
fn guest_rid_pasid_first_stage_is_nested_on_the_device_itself() {
    let mut g = boot();
    let dev_id = g.fd.lock().unwrap().device_object(&g.dev).unwrap();
    let p = process(&g.mem, P_ROOT, DATA_GPA);
    process(&g.mem, Q_ROOT, Q_DATA_GPA);
    assert!(g.dma(None, GVA).is_err(), "blocked until the guest programs RID_PASID");
    let did = g.driver.alloc_domain(DomainConfig::External).unwrap();
    let fs = |root| PasidConfig::FirstStageExternal {
        did,
        fs_root: root,
        levels: Fspm::FourLevel,
        sre: false,
    };
    g.driver.attach(GRID, None, fs(P_ROOT)).unwrap();
    let hwpt = g.vvtd.host_hwpt(GRID, 0).expect("RID_PASID forwarded");
    {
        let fd = g.fd.lock().unwrap();
        assert_eq!(fd.attached_hwpt(dev_id, None), Some(hwpt), "attached to the device");
        assert_eq!(fd.attached_hwpt(dev_id, Some(0)), None);
        assert!(matches!(fd.object(hwpt), Some(Object::HwptNested(_))));
    }
    assert_eq!(g.dma(None, GVA + 0x10), Ok(GUEST_RAM_HPA + DATA_GPA + 0x10), "both stages");
    assert!(g.dma(Some(PASID_N), GVA).is_err(), "no PASID is attached");
    // A PASID beside it.
    g.bind(Q_ROOT, PASID_N);
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + Q_DATA_GPA));
    // The guest unmaps and invalidates through its own driver: the host's IOTLB held the old
    // page until then; the PASID's translation is untouched.
    clear_leaf(&g.mem, &p);
    assert_eq!(g.dma(None, GVA), Ok(GUEST_RAM_HPA + DATA_GPA), "the host's IOTLB, stale");
    let before = g.vvtd.stats().invalidations;
    g.driver.flush_iotlb(did, Some((GVA, 0x1000))).unwrap();
    // The PASID-based IOTLB of RID_PASID and the device-TLB invalidation without PASID.
    assert_eq!(g.vvtd.stats().invalidations - before, 2);
    match g.dma(None, GVA) {
        Err(DmaFault::Fault(r)) => assert_eq!(r.code, FaultReason::SmFsEntryNotPresent as u16),
        other => panic!("{other:?}"),
    }
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + Q_DATA_GPA));
    // A changed entry: the guest's driver clears it, invalidates, writes the new one
    // (§6.5.3.3), so the host detaches and attaches a new HWPT; the old one is destroyed.
    g.driver.attach(GRID, None, fs(Q_ROOT)).unwrap();
    let second = g.vvtd.host_hwpt(GRID, 0).unwrap();
    assert_ne!(second, hwpt);
    assert!(g.fd.lock().unwrap().object(hwpt).is_none());
    assert_eq!(g.dma(None, GVA), Ok(GUEST_RAM_HPA + Q_DATA_GPA));
    // An erroneous entry (PGTT second-stage, which the vIOMMU does not run): 5Bh in the
    // guest; on the host the device is blocked and the HWPT gone.
    let _ = g.faults();
    let mut bad = PasidEntry::default();
    bad.set_pgtt(Pgtt::SecondStage);
    bad.set_did(did.0);
    bad.set_p(true);
    let at = g.driver.pasid_entry_addr(GRID, None).unwrap();
    for (i, w) in (0u64..).zip(bad.words()) {
        ram(&g.mem).write_u64(Gpa(at.0 + 8 * i), w).unwrap();
    }
    g.driver.invalidate(&[InvalidateRequest::PasidCache { did: did.0, pasid: Some(0) }]).unwrap();
    let got: Vec<_> = g.faults().iter().map(|r| (r.sid(), r.pp(), r.fr())).collect();
    assert_eq!(got, [(GRID, false, Ok(FaultReason::SmPasidEntryInvalid))]);
    assert_eq!(g.vvtd.host_hwpt(GRID, 0), None);
    assert_eq!(g.fd.lock().unwrap().attached_hwpt(dev_id, None), None);
    assert!(g.fd.lock().unwrap().object(second).is_none());
    assert!(g.dma(None, GVA).is_err());
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + Q_DATA_GPA), "the PASID stays");
    assert_eq!(g.queue_error(), None);
    let s = g.vvtd.stats();
    assert_eq!((s.attached, s.replaced, s.detached, s.host_refused), (3, 0, 2, 0), "{s:?}");
}

/// A descriptor of a reserved type is an invalidation queue error in the guest (IQE, IQEI 3h,
/// IQH on it); a queue whose base lies outside guest RAM is a fetch error (IQEI 2h). The host
/// is unchanged either way.
#[test]
fn guest_queue_garbage_is_iqe_in_the_guest() {
    let g = boot();
    let before = g.snapshot();
    let v = &*g.vvtd;
    let base = iqa::IQA.in_place(v.read(IQA.0, 8));
    let tail = iqt::QT.in_place(v.read(IQT.0, 8));
    // Type 0xf: reserved (§6.5.2).
    ram(&g.mem).write_u64(Gpa(base + tail), 0xf).unwrap();
    v.write(IQT.0, 8, tail + 32);
    assert_eq!(g.queue_error(), Some(Iqei::DescriptorType as u64));
    assert_eq!(iqh::QH.in_place(v.read(IQH.0, 8)), tail);
    assert!(before == g.snapshot());

    // A fresh vIOMMU whose queue the guest puts beyond its RAM.
    let g = boot();
    let before = g.snapshot();
    let v = &*g.vvtd;
    v.write(GCMD.0, 4, u64::from(gcmd::TE.mask32())); // QIE off, TE kept
    v.write(IQA.0, 8, iqa::IQA.in_place(GUEST_RAM_LEN * 4));
    v.write(GCMD.0, 4, u64::from(gcmd::TE.mask32() | gcmd::QIE.mask32()));
    v.write(IQT.0, 8, 32);
    assert_eq!(g.queue_error(), Some(Iqei::Fetch as u64));
    assert!(before == g.snapshot());
}

/// A VT-d vIOMMU over an SMMUv3 host is refused with a typed error, and nothing is made.
#[test]
fn a_vtd_viommu_over_an_smmuv3_host_is_refused() {
    let m = Machine::new(Model::Smmuv3).unwrap();
    let dev = m.devices()[0].clone();
    let mut fd = m.into_fd();
    let mem = Arc::clone(fd.memory());
    let dev_id: ObjectId = fd.device_bind(&dev).unwrap();
    let ioas = fd.ioas_alloc().unwrap();
    let before = host_state(&fd);
    let fd = Arc::new(Mutex::new(fd));
    let e = VVtd::new(Arc::clone(&fd), ram(&mem), ioas, &[(GRID, dev_id)]).unwrap_err();
    assert!(
        matches!(e, ViommuError::ModelMismatch { guest: Model::Vtd, host: Model::Smmuv3, device }
            if device == dev_id),
        "{e}"
    );
    let fd = fd.lock().unwrap();
    assert!(before == host_state(&fd));
    assert!(fd.users(ioas).is_empty(), "no HWPT was made");
}

/// A changed PASID-table entry changes the host's HWPT, and the old one is destroyed: through
/// the guest's driver (§6.5.3.3: clear, invalidate, write, invalidate: the host detaches, then
/// attaches the new first stage), and in place (one PASID-cache invalidation: the host
/// replaces). DMA follows the guest's current tables.
#[test]
fn a_changed_pasid_entry_replaces_the_host_hwpt() {
    let mut g = boot();
    process(&g.mem, P_ROOT, DATA_GPA);
    process(&g.mem, Q_ROOT, Q_DATA_GPA);
    let did = g.bind(P_ROOT, PASID_N);
    let first = g.vvtd.host_hwpt(GRID, PASID_N).unwrap();
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + DATA_GPA));
    // The driver's sequence.
    let config = PasidConfig::FirstStageExternal {
        did,
        fs_root: Q_ROOT,
        levels: Fspm::FourLevel,
        sre: false,
    };
    g.driver.attach(GRID, Some(PASID_N), config).unwrap();
    let second = g.vvtd.host_hwpt(GRID, PASID_N).unwrap();
    assert_ne!(second, first);
    assert!(g.fd.lock().unwrap().object(first).is_none(), "the old nested HWPT was destroyed");
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + Q_DATA_GPA));
    // In place: FSPTPTR back to P, one PASID-cache invalidation.
    let at = g.driver.pasid_entry_addr(GRID, Some(PASID_N)).unwrap();
    let mut words = [0u64; 8];
    for (i, w) in (0u64..).zip(words.iter_mut()) {
        *w = ram(&g.mem).read_u64(Gpa(at.0 + 8 * i)).unwrap();
    }
    let mut pe = PasidEntry::from_words(words);
    pe.set_fsptptr(P_ROOT);
    g.write_pasid_entry(PASID_N, &pe, did.0);
    let third = g.vvtd.host_hwpt(GRID, PASID_N).unwrap();
    assert!(g.fd.lock().unwrap().object(second).is_none());
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + DATA_GPA));
    let s = g.vvtd.stats();
    assert_eq!((s.attached, s.detached, s.replaced), (2, 1, 1), "{s:?}");
    // The guest detaches: the host blocks the PASID and destroys the HWPT.
    g.driver.detach(GRID, Some(PASID_N)).unwrap();
    assert_eq!(g.vvtd.host_hwpt(GRID, PASID_N), None);
    assert!(g.fd.lock().unwrap().object(third).is_none());
    assert!(g.dma(Some(PASID_N), GVA).is_err());
    assert!(g.faults().is_empty(), "not-present entries record nothing in the guest");
}

/// The contract of a wait descriptor, across threads: while device threads translate through
/// the host model without pause, the guest unmaps and invalidates; no translation that starts
/// after the guest's wait descriptor completed (its driver returned) gives the old page.
#[test]
fn no_translation_after_the_guests_wait_returns_the_old_page() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use sviommu_core::arch::vtd::{HostVtd, VtdUnit};
    use sviommu_vtd::hw::{Access, DmaRequest};

    let mut g = boot();
    let p = process(&g.mem, P_ROOT, DATA_GPA);
    let did = g.bind(P_ROOT, PASID_N);
    let hw: Arc<HostVtd> = {
        let fd = g.fd.lock().unwrap();
        let drv = fd.iommu().driver(sviommu_uapi::machine::UNIT).unwrap();
        Arc::clone(drv.as_any().downcast_ref::<VtdUnit>().unwrap().hw())
    };
    let req = DmaRequest::new(HOST_RID, GVA, Access::READ).with_pasid(PASID_N);
    let old = GUEST_RAM_HPA + DATA_GPA;
    assert_eq!(hw.translate(&req).map(|t| t.output), Ok(old));
    let done = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let (after, stale) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    let started_after = done.load(Ordering::Acquire);
                    let r = hw.translate(&req);
                    if started_after {
                        after.fetch_add(1, Ordering::Relaxed);
                        if r.is_ok_and(|t| t.output == old) {
                            stale.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        clear_leaf(&g.mem, &p);
        g.driver.flush_iotlb(did, Some((GVA, 0x1000))).unwrap();
        done.store(true, Ordering::Release);
        while after.load(Ordering::Relaxed) < 2000 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Release);
    });
    assert_eq!(stale.load(Ordering::Relaxed), 0, "a translation after the wait gave the old page");
}

/// The host unit's hardware model, which device X's requests reach.
fn host_hw(fd: &SharedFd) -> Arc<HostVtd> {
    let fd = fd.lock().unwrap();
    let unit = fd.iommu().driver(UNIT).unwrap();
    Arc::clone(unit.as_any().downcast_ref::<VtdUnit>().unwrap().hw())
}

/// Device X's page request for the page at `addr` with `pasid`, the last of group `prgi`.
fn page_request(pasid: Option<u32>, addr: u64, prgi: u16) -> PageRequestMsg {
    PageRequestMsg {
        rid: HOST_RID,
        pasid,
        addr,
        read: true,
        write: true,
        prgi,
        lpig: true,
        ..PageRequestMsg::default()
    }
}

/// A page group response as (RID, PASID, PRGI, RC).
type Response = (u16, Option<u32>, u16, Result<ResponseCode, u64>);

/// The page group responses among a unit's outputs.
fn responses(out: &[Output]) -> Vec<Response> {
    out.iter()
        .filter_map(|o| match o {
            Output::PageGroupResponse(r) => {
                Some((r.rid(), r.pp().then(|| r.pasid()), r.prgi(), r.rc().map_err(|e| e.0)))
            }
            _ => None,
        })
        .collect()
}

/// ECAP.PRS reaches the guest exactly when the host unit has it; page drain never does.
#[test]
fn the_guest_sees_page_requests_only_when_the_host_takes_them() {
    let host = VtdParams::default().ecap;
    assert!(ecap::PRS.is_set(host));
    let with = guest_params_for(host).ecap;
    let without = guest_params_for(ecap::PRS.with(host, false)).ecap;
    assert!(ecap::PRS.is_set(with));
    assert!(!ecap::PRS.is_set(without));
    assert!(!ecap::PDS.is_set(with) && !ecap::PDS.is_set(without));
    // Nothing else depends on the host's ECAP.
    assert_eq!(ecap::PRS.with(with, false), guest_params().ecap);
    assert_eq!(without, guest_params().ecap);
}

/// A page request of device X (PASID n, a GVA P has not mapped) reaches the guest's page
/// request queue through the host's fault queue with the guest's requester ID and the PASID;
/// the guest maps the page and answers with a page group response descriptor; the response
/// reaches X through the host unit with X's physical requester ID, once, and X's retried DMA
/// lands in the page the guest mapped.
#[test]
fn a_page_request_reaches_the_guest_prq_and_its_response_the_device() {
    let mut g = boot();
    let fq = g.vvtd.fault_queue_id().expect("the host takes page requests");
    let mut p = process(&g.mem, P_ROOT, DATA_GPA);
    g.bind(P_ROOT, PASID_N);
    let gva = GVA + 0x5000;
    let gpa = 0x1c_6000;
    assert!(g.dma(Some(PASID_N), gva).is_err(), "not mapped yet");
    g.vvtd.service();
    let hw = host_hw(&g.fd);
    hw.drain_outputs();
    assert_eq!(hw.page_request(&page_request(Some(PASID_N), gva, 7)), PageRequestOutcome::Queued);
    let served = g.vvtd.service();
    assert_eq!((served.page_requests, served.waiting), (1, 0));
    let drain = g.driver.drain_page_requests().unwrap();
    let [r] = &drain.requests[..] else { panic!("{drain:?}") };
    assert_eq!((r.rid(), r.pp(), r.pasid()), (GRID, true, PASID_N));
    assert_eq!((r.addr(), r.prgi(), r.lpig(), r.rr(), r.wr()), (gva, 7, true, true, true));
    // The guest's kernel faults the page in and answers.
    map(&g.mem, &mut p, gva, gpa);
    assert!(responses(&hw.drain_outputs()).is_empty(), "no response before the guest's");
    g.driver.page_group_response(GRID, Some(PASID_N), 7, ResponseCode::Success).unwrap();
    let sent = responses(&hw.drain_outputs());
    assert_eq!(sent, [(HOST_RID, Some(PASID_N), 7, Ok(ResponseCode::Success))]);
    assert_eq!(g.vvtd.stats().responses, 1);
    // The device retries, and writes.
    let hpa = g.dma(Some(PASID_N), gva + 0x10).unwrap();
    assert_eq!(hpa, GUEST_RAM_HPA + gpa + 0x10);
    g.fd.lock().unwrap().write_host(hpa, b"retried").unwrap();
    let mut seen = [0u8; 7];
    ram(&g.mem).read(Gpa(gpa + 0x10), &mut seen).unwrap();
    assert_eq!(&seen, b"retried");
    // The guest model's copy of the response is not sent twice.
    g.vvtd.service();
    assert!(responses(&hw.drain_outputs()).is_empty());
    let s = g.vvtd.stats();
    assert_eq!((s.page_requests, s.responses, s.stray_responses), (1, 1, 0), "{s:?}");
    let fd = g.fd.lock().unwrap();
    let Some(Object::Fault(q)) = fd.object(fq) else { panic!() };
    assert_eq!((q.groups, q.answered, q.response.len()), (1, 1, 0));
}

/// A guest device whose context entry does not allow page requests (PRE clear): the guest's
/// unit blocks the request with fault reason 47h in the guest and answers Invalid Request by
/// itself, and that answer reaches the device through the host.
#[test]
fn a_page_request_the_guest_context_refuses_is_answered_invalid_at_the_device() {
    let mut g = boot();
    g.driver.set_device_features(GRID, DeviceFeatures { ats: true, page_requests: false }).unwrap();
    process(&g.mem, P_ROOT, DATA_GPA);
    g.bind(P_ROOT, PASID_N);
    let hw = host_hw(&g.fd);
    hw.drain_outputs();
    let gva = GVA + 0x5000;
    assert_eq!(hw.page_request(&page_request(Some(PASID_N), gva, 3)), PageRequestOutcome::Queued);
    g.vvtd.service();
    let sent = responses(&hw.drain_outputs());
    assert_eq!(sent, [(HOST_RID, Some(PASID_N), 3, Ok(ResponseCode::InvalidRequest))]);
    assert!(g.driver.drain_page_requests().unwrap().requests.is_empty());
    let f = g.faults();
    let got: Vec<_> = f.iter().map(|r| (r.sid(), r.fr())).collect();
    assert_eq!(got, [(GRID, Ok(FaultReason::SmContextPreClear))]);
    assert_eq!(g.vvtd.stats().responses, 1);
}

/// A first-stage fault at the host for the guest's device (the guest's first stage does not
/// map the GVA) stays with the VMM with the physical device, and the guest's fault recording
/// registers stay clean: iommufd v6.19 has no VT-d vEVENTQ to carry it.
#[test]
fn a_host_stage1_fault_stays_with_the_vmm_and_the_guest_fault_registers_stay_clean() {
    let mut g = boot();
    process(&g.mem, P_ROOT, DATA_GPA);
    g.bind(P_ROOT, PASID_N);
    let gva = GVA + 0x10_0000;
    match g.dma(Some(PASID_N), gva) {
        Err(DmaFault::Fault(r)) => assert_eq!(r.code, FaultReason::SmFsEntryNotPresent as u16),
        other => panic!("expected a first-stage fault, got {other:?}"),
    }
    let served = g.vvtd.service();
    assert_eq!(served.page_requests, 0);
    let faults = g.fd.lock().unwrap().take_host_faults();
    let got: Vec<_> = faults
        .iter()
        .map(|f| match f {
            FaultEvent::Unrecoverable { device, pasid, addr, reason, .. } => {
                (device.clone(), *pasid, *addr & !0xfff, reason.code)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let code = FaultReason::SmFsEntryNotPresent as u16;
    assert_eq!(got, [(g.dev.clone(), Some(Pasid(PASID_N)), gva, code)]);
    assert!(!fsts::PPF.is_set(g.vvtd.read(FSTS.0, 4)), "the guest's FSTS is clean");
    assert!(g.faults().is_empty());
    assert!(g.driver.drain_page_requests().unwrap().requests.is_empty());
    assert_eq!(g.queue_error(), None);
}

/// `VVtd::new` with each of its host calls' internal steps failing in turn
/// (`Iommufd::fail_nth`) until it succeeds: each failure is the injected one (ENOMEM) and leaves
/// the host's objects, registers (queue indexes aside) and the device's attachment as they were
/// (memory is not compared byte for byte: a freed stage-2 page is not scrubbed; nor is the
/// next ID: uapi never reuses the ID of the parent the undo destroyed).
#[test]
fn every_injected_failure_in_vvtd_new_leaves_the_host_as_it_was() {
    let (fd, mem, _, dev_id, ioas) = vmm();
    let state = |fd: &Iommufd| {
        let mut regs = host_state(fd).1;
        for (_, words) in &mut regs {
            for r in [IQH.0, IQH.0 + 4, IQT.0, IQT.0 + 4] {
                words[usize::try_from(r / 4).unwrap()] = 0;
            }
        }
        // VVtd::new attaches nothing, so the device's DMA is not probed (a probe's fault would
        // move the fault recording registers).
        let attached = fd.attached_hwpt(dev_id, None);
        (fd.object_ids(), regs, attached)
    };
    let fd = Arc::new(Mutex::new(fd));
    let mut failures = 0;
    for n in 1..=64 {
        let before = state(&fd.lock().unwrap());
        fd.lock().unwrap().fail_nth(Some(n));
        let made = VVtd::new(Arc::clone(&fd), ram(&mem), ioas, &[(GRID, dev_id)]);
        let seen = fd.lock().unwrap().fail_nth_seen();
        fd.lock().unwrap().fail_nth(None);
        match made {
            Ok(v) => {
                assert!(seen < n, "point {n}: an injected failure was swallowed");
                assert!(fd.lock().unwrap().object(v.parent_id()).is_some());
                break;
            }
            Err(ViommuError::Uapi(e)) => {
                assert_eq!(e.errno(), sviommu_uapi::Errno::ENOMEM, "point {n}: {e}");
                failures += 1;
                assert!(before == state(&fd.lock().unwrap()), "point {n} ({e}): the host changed");
            }
            Err(e) => panic!("point {n}: {e}"),
        }
    }
    // The parent's ID, domain and map, and the fault queue's ID.
    assert_eq!(failures, 4);
}

/// Dropping the vIOMMU takes its host objects down: after a bound PASID, the host holds what
/// the VMM had made before the VVtd (the device and the IOAS) and nothing else, and the device's
/// PASID no longer reaches guest memory.
#[test]
fn dropping_the_vvtd_leaves_the_host_objects_as_before() {
    let mut g = boot();
    process(&g.mem, P_ROOT, DATA_GPA);
    g.bind(P_ROOT, PASID_N);
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + DATA_GPA));
    let (fd, dev) = (Arc::clone(&g.fd), g.dev.clone());
    let before_vvtd: Vec<ObjectId> = {
        let f = fd.lock().unwrap();
        let kept = |k: Option<&Object>| matches!(k, Some(Object::Device(_) | Object::Ioas(_)));
        f.object_ids().into_iter().filter(|&i| kept(f.object(i))).collect()
    };
    assert!(fd.lock().unwrap().object_ids().len() > before_vvtd.len());
    drop(g);
    let mut f = fd.lock().unwrap();
    assert_eq!(f.object_ids(), before_vvtd);
    assert!(f.dma(&dev, Some(PASID_N), GVA, DmaAccess::Write).unwrap().is_err());
    // Nothing of the VVtd holds the device: the VMM attaches it to a paging HWPT again.
    let dev_id = f.device_object(&dev).unwrap();
    let ioas = before_vvtd.iter().copied().find(|&i| matches!(f.object(i), Some(Object::Ioas(_))));
    let alloc = HwptAlloc { dev_id, pt_id: ioas.unwrap(), ..HwptAlloc::default() };
    let paging = f.hwpt_alloc(&alloc).unwrap();
    f.attach(dev_id, None, paging).unwrap();
    let gpa = DATA_GPA + 0x10;
    assert_eq!(f.dma(&dev, None, gpa, DmaAccess::Write).unwrap(), Ok(GUEST_RAM_HPA + gpa));
}

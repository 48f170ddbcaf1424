//! A guest's SMMUv3, end to end (issue 12 step 2): the guest's own driver programs the vSMMU
//! (the hardware model over guest RAM) through MMIO; the vSMMU forwards through `uapi`; every
//! device DMA goes through the host model's `translate`.

use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sviommu_core::arch::smmuv3::{HostSmmu, SmmuUnit};
use sviommu_core::driver::{DmaAccess, DmaFault};
use sviommu_core::topology::DeviceId;
use sviommu_core::{FaultEvent, Model};
use sviommu_memory::bits::Field32;
use sviommu_memory::{
    FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, Mmio, PhysMemory,
};
use sviommu_pgtable::vmsa::s1::{S1Attrs, VmsaS1};
use sviommu_pgtable::vmsa::Granule as PtGranule;
use sviommu_pgtable::Build;
use sviommu_smmuv3::driver::{
    Attach, CdTablePolicy, DriverConfig, Invalidation, PasidAttach, SmmuDriver, StreamTableFormat,
    SvaContext,
};
use sviommu_smmuv3::hw::{Access, Output, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{
    cons, cr0, gerror, idr0, idr1, idr3, irq_ctrl, prod, queue_base, strtab_base, CMDQ_BASE,
    CMDQ_CONS, CMDQ_PROD, CR0, CR0ACK, EVENTQ_BASE, EVENTQ_CONS, EVENTQ_PROD, GERROR, GERRORN,
    IRQ_CTRL, IRQ_CTRLACK, STRTAB_BASE, STRTAB_BASE_CFG,
};
use sviommu_smmuv3::spec::ste::StreamConfig;
use sviommu_smmuv3::spec::{
    CError, Class, Command, EventId, EventRecord, Granule, Opcode, PageRequest, PriResp, Ste,
};
use sviommu_uapi::data::map_flags;
use sviommu_uapi::machine::{Machine, GUEST_RAM_HPA, GUEST_RAM_LEN, UNIT, VMM_VA};
use sviommu_uapi::object::VEVENTQ_FLAG_LOST_EVENTS;
use sviommu_uapi::{HwptAlloc, Iommufd, Object, ObjectId};
use sviommu_viommu::smmuv3::{SharedFd, VSmmuConfig};
use sviommu_viommu::{VSmmu, ViommuError};

/// The virtual StreamID the guest knows device X (the host's `A`, StreamID 0x10) by.
const VSID: u32 = 3;
/// Device A's StreamID on the host (the machine's topology).
const HOST_SID_A: u32 = 0x10;
/// The PASID the guest binds process P at.
const PASID_N: u32 = 5;
/// P's ASID in the guest.
const ASID_P: u16 = 9;
/// Guest RAM for the guest driver's structures (GPA).
const DRIVER_FRAMES: (u64, u64) = (0x10_0000, 0x8_0000);
/// Guest RAM for P's page tables.
const PROCESS_FRAMES: (u64, u64) = (0x18_0000, 0x4_0000);
/// P's data page (GPA) and where P sees it (GVA).
const DATA_GPA: u64 = 0x1c_3000;
const GVA: u64 = 0x7f12_3456_7000;

type Ram = GuestRam<Arc<HostMemory>>;

fn ram(mem: &Arc<HostMemory>) -> Ram {
    ram_of(mem, (GUEST_RAM_HPA, GUEST_RAM_LEN))
}

/// Guest RAM from GPA 0: `len` bytes at host physical `hpa`.
fn ram_of(mem: &Arc<HostMemory>, (hpa, len): (u64, u64)) -> Ram {
    let region = GuestRamRegion { gpa: Gpa(0), len_bytes: len, hpa: Hpa(hpa) };
    GuestRam::new(Arc::clone(mem), vec![region])
}

struct Guest {
    fd: SharedFd,
    mem: Arc<HostMemory>,
    /// This guest's RAM: its host physical address and length.
    ram_at: (u64, u64),
    dev: DeviceId,
    ioas: ObjectId,
    vsmmu: Arc<VSmmu>,
    driver: SmmuDriver<Arc<VSmmu>, Ram>,
}

/// The host (an SMMUv3 machine), the VMM (guest RAM mapped at IOVA 0 = GPA 0 in an IOAS, the
/// vSMMU with device `A` at virtual StreamID [`VSID`]) and the guest's driver brought up on it.
fn boot() -> Guest {
    boot_with(Machine::new(Model::Smmuv3).unwrap(), VSmmuConfig::default())
}

fn boot_with(m: Machine, config: VSmmuConfig) -> Guest {
    let dev = m.devices()[0].clone();
    let fd = Arc::new(Mutex::new(m.into_fd()));
    guest_on(&fd, &dev, 0, GUEST_RAM_LEN, config)
}

/// A guest whose RAM is the `len` bytes of the VMM's guest memory from `offset`, with `dev`
/// assigned at [`VSID`].
fn guest_on(fd: &SharedFd, dev: &DeviceId, offset: u64, len: u64, config: VSmmuConfig) -> Guest {
    let (mem, dev_id, ioas) = {
        let mut fd = fd.lock().unwrap();
        let mem = Arc::clone(fd.memory());
        let dev_id = fd.device_bind(dev).unwrap();
        let ioas = fd.ioas_alloc().unwrap();
        let rw = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;
        fd.ioas_map(ioas, rw, VMM_VA + offset, len, 0).unwrap();
        (mem, dev_id, ioas)
    };
    let ram_at = (GUEST_RAM_HPA + offset, len);
    let vsmmu =
        VSmmu::with_config(Arc::clone(fd), ram_of(&mem, ram_at), ioas, &[(VSID, dev_id)], config);
    let vsmmu = Arc::new(vsmmu.unwrap());
    let frames = FrameAllocator::new(&[(Gpa(DRIVER_FRAMES.0), DRIVER_FRAMES.1)]);
    let config = DriverConfig {
        cd_table_policy: CdTablePolicy::PerDevice,
        stream_table: StreamTableFormat::Linear,
        ssid_bits: 6,
        ..DriverConfig::default()
    };
    let mut driver =
        SmmuDriver::new(Arc::clone(&vsmmu), ram_of(&mem, ram_at), frames, config).unwrap();
    driver.attach(VSID, Attach::Abort).unwrap();
    Guest { fd: Arc::clone(fd), mem, ram_at, dev: dev.clone(), ioas, vsmmu, driver }
}

impl Guest {
    /// This guest's RAM.
    fn ram(&self) -> Ram {
        ram_of(&self.mem, self.ram_at)
    }

    /// A DMA write by device X through the HOST model.
    fn dma(&self, pasid: Option<u32>, addr: u64) -> Result<u64, DmaFault> {
        self.fd.lock().unwrap().dma(&self.dev, pasid, addr, DmaAccess::Write).unwrap()
    }

    /// What the host's hardware sees apart from guest RAM (which the guest writes itself):
    /// the host unit's tables and registers.
    fn snapshot(&self) -> HostState {
        host_state(&self.fd.lock().unwrap())
    }

    /// P: a VMSAv8-64 stage-1 address space in guest RAM (4K granule, 48-bit) with `GVA` ->
    /// `DATA_GPA`, bound to device X at PASID n through the guest's driver (SVA in the guest).
    fn bind_process(&mut self) -> VmsaS1 {
        let ram = self.ram();
        let mut frames = FrameAllocator::new(&[(Gpa(PROCESS_FRAMES.0), PROCESS_FRAMES.1)]);
        let pt = VmsaS1::create(&ram, &mut frames, VmsaS1::new(0, PtGranule::K4, 16)).unwrap();
        pt.map(&ram, &mut frames, GVA, DATA_GPA, 12, S1Attrs::ALL).unwrap();
        let ctx = SvaContext {
            asid: ASID_P,
            ttb0: pt.ttb,
            t0sz: 16,
            granule: Granule::Size4K,
            ips_bits: 48,
            mair: 0,
            ha: false,
            hd: false,
        };
        let reached = self.driver.attach_pasid(VSID, PASID_N, PasidAttach::Sva(ctx)).unwrap();
        assert_eq!(reached, [VSID]);
        pt
    }

    /// The guest writes commands straight into its Command queue and PROD (a guest kernel
    /// that does not use the driver's helpers).
    fn raw_commands(&self, cmds: &[Command]) {
        let v = &*self.vsmmu;
        let ram = self.ram();
        let base_reg = v.read(CMDQ_BASE.0, 8);
        let base = queue_base::ADDR.in_place(base_reg);
        let log2 = queue_base::LOG2SIZE.get(base_reg).min(19);
        let mut prod = v.read(CMDQ_PROD.0, 4);
        for c in cmds {
            // A queue outside RAM loses the stores, as the guest's own would be lost.
            let at = base.wrapping_add(16 * (prod & ((1 << log2) - 1)));
            let _ = ram.write_u64(Gpa(at), c.0[0]);
            let _ = ram.write_u64(Gpa(at.wrapping_add(8)), c.0[1]);
            prod = (prod + 1) & ((2 << log2) - 1);
        }
        v.write(CMDQ_PROD.0, 4, prod);
    }

    /// The guest's STE for [`VSID`] (a linear Stream table).
    fn ste_gpa(&self) -> u64 {
        strtab_base::ADDR.in_place(self.vsmmu.read(STRTAB_BASE.0, 8)) + 64 * u64::from(VSID)
    }

    /// The vSMMU's command error: CONS.ERR if GERROR.CMDQ_ERR is active.
    fn cmdq_error(&self) -> Option<u64> {
        let v = &*self.vsmmu;
        let active = gerror::CMDQ_ERR.is_set(v.read(GERROR.0, 4) ^ v.read(GERRORN.0, 4));
        active.then(|| cons::ERR.get(v.read(CMDQ_CONS.0, 4)))
    }
}

/// Host memory outside guest RAM, and the host unit's registers.
type HostState = (Vec<(u64, Vec<u8>)>, Vec<(sviommu_core::topology::UnitId, Vec<u32>)>);

fn host_state(fd: &Iommufd) -> HostState {
    let s = fd.hardware_snapshot();
    let memory = s.memory.into_iter().filter(|(start, _)| *start != GUEST_RAM_HPA).collect();
    (memory, s.registers)
}

fn sync() -> Command {
    Command::new(Opcode::Sync)
}

/// The seed's flow, byte-exact: the guest binds P to X at PASID n through its own driver; X
/// writes at a GVA with PASID n through the host model; the bytes land in the host page that
/// the guest's stage 1 and the host's stage 2 together select.
#[test]
fn guest_sva_bind_reaches_the_host_page_the_two_stages_select() {
    let mut g = boot();
    // Until the guest configures its STE, the host aborts X (the abort vSTE).
    assert!(matches!(g.dma(Some(PASID_N), GVA), Err(DmaFault::Terminated { .. })));
    g.bind_process();
    assert_ne!(g.vsmmu.host_hwpt(VSID), None);
    let offset = 0x9a8;
    let hpa = g.dma(Some(PASID_N), GVA + offset).unwrap();
    // Independently: the guest's page GPA, plus where the VMM put guest RAM.
    let expected = GUEST_RAM_HPA + DATA_GPA + offset;
    assert_eq!(hpa, expected);
    let payload = b"seed: bind_pasid_table, end to end";
    g.fd.lock().unwrap().write_host(hpa, payload).unwrap();
    let mut back = [0u8; 34];
    g.mem.read(Hpa(expected), &mut back).unwrap();
    assert_eq!(&back, payload);
    // P sees it at its GPA in guest RAM.
    let mut seen = [0u8; 34];
    ram(&g.mem).read(Gpa(DATA_GPA + offset), &mut seen).unwrap();
    assert_eq!(&seen, payload);
    // Without a PASID the guest's STE says terminate (S1DSS): no access to the page.
    assert!(g.dma(None, GVA).is_err());
    // The guest's driver saw no error and no event.
    assert_eq!(g.cmdq_error(), None);
    assert!(g.driver.drain_events().unwrap().is_empty());
}

/// The guest unmaps and invalidates through its own driver (TLBI + CMD_SYNC): the next DMA
/// faults. Before the invalidation the host still has the old translation cached, so the
/// TLBI is what reached the host.
#[test]
fn guest_unmap_and_tlbi_make_the_next_dma_fault() {
    let mut g = boot();
    let pt = g.bind_process();
    let hpa = g.dma(Some(PASID_N), GVA).unwrap();
    assert_eq!(hpa, GUEST_RAM_HPA + DATA_GPA);
    pt.unmap(&ram(&g.mem), GVA, 0x1000).unwrap();
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(hpa), "the host's TLB holds the old page");
    let inv = Invalidation::NhVa {
        parent: None,
        asid: ASID_P,
        iova: GVA,
        size: 0x1000,
        granule: Granule::Size4K,
        leaf: true,
    };
    let sent = g.vsmmu.stats().invalidations;
    g.driver.invalidate(&[inv]).unwrap();
    // One TLBI_NH_VA for the one page, forwarded and completed.
    assert_eq!(g.vsmmu.stats().invalidations, sent + 1);
    assert_eq!(g.vsmmu.stats().invalidations_refused, 0);
    match g.dma(Some(PASID_N), GVA) {
        Err(DmaFault::Fault(r)) => assert_eq!(r.code, EventId::FTranslation as u16),
        other => panic!("expected F_TRANSLATION, got {other:?}"),
    }
}

/// A guest STE the model finds ILLEGAL (stage 2 on a vSMMU without it) is C_BAD_STE in the
/// guest's Event queue; the host never sees it.
#[test]
fn an_illegal_guest_ste_is_c_bad_ste_in_the_guest_and_never_reaches_the_host() {
    let mut g = boot();
    let hwpt = g.vsmmu.host_hwpt(VSID);
    let before = g.snapshot();
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Stage2);
    let ram = ram(&g.mem);
    let at = g.ste_gpa();
    for (i, w) in (0u64..).zip(ste.0) {
        ram.write_u64(Gpa(at + 8 * i), w).unwrap();
    }
    let mut cfgi = Command::new(Opcode::CfgiSte);
    cfgi.set_sid(VSID);
    g.raw_commands(&[cfgi, sync()]);
    assert_eq!(g.cmdq_error(), None, "CFGI_STE itself is legal");
    let events = g.driver.drain_events().unwrap();
    assert!(events.iter().any(|e| e.id == Ok(EventId::CBadSte) && e.sid == VSID), "{events:?}");
    assert_eq!(g.vsmmu.host_hwpt(VSID), hwpt);
    let after = g.snapshot();
    assert!(before == after, "the host's hardware-visible state changed");
}

/// A command a guest may not pass (a stage-2 TLBI: the vSMMU has no stage 2, iommufd passes
/// none) is CERROR_ILL in the guest, refused by the hook; an unknown opcode is refused by the
/// model itself. The host is unchanged either way.
#[test]
fn commands_a_guest_may_not_pass_are_cerror_ill_in_the_guest() {
    for cmd in [Command::new(Opcode::TlbiS12Vmall), Command([0x7f, 0])] {
        let g = boot();
        let before = g.snapshot();
        g.raw_commands(&[cmd, sync()]);
        assert_eq!(g.cmdq_error(), Some(CError::Ill as u64), "{cmd:?}");
        let after = g.snapshot();
        assert!(before == after, "{cmd:?}: the host's hardware-visible state changed");
    }
}

/// An SMMUv3 vIOMMU over a VT-d host is refused with a typed error, and nothing is made.
#[test]
fn an_smmuv3_viommu_over_a_vtd_host_is_refused() {
    let m = Machine::new(Model::Vtd).unwrap();
    let dev = m.devices()[0].clone();
    let mut fd = m.into_fd();
    let mem = Arc::clone(fd.memory());
    let dev_id: ObjectId = fd.device_bind(&dev).unwrap();
    let ioas = fd.ioas_alloc().unwrap();
    let before = host_state(&fd);
    let fd = Arc::new(Mutex::new(fd));
    let e = VSmmu::new(Arc::clone(&fd), ram(&mem), ioas, &[(VSID, dev_id)]).unwrap_err();
    assert!(
        matches!(e, ViommuError::ModelMismatch { guest: Model::Smmuv3, host: Model::Vtd, device }
            if device == dev_id),
        "{e}"
    );
    let fd = fd.lock().unwrap();
    assert!(before == host_state(&fd));
    assert!(fd.users(ioas).is_empty(), "no HWPT was made");
}

/// A changed guest STE replaces the device's HWPT on the host (iommufd has no CFGI_STE
/// pass-through): stage 1 -> bypass (the parent: GPA -> HPA) -> a Reserved Config, which §5.2
/// says behaves as abort (no event), so the host aborts too; the replaced nested HWPT is gone.
#[test]
fn a_changed_guest_ste_replaces_the_host_hwpt() {
    let mut g = boot();
    g.bind_process();
    let nested = g.vsmmu.host_hwpt(VSID).unwrap();
    let ram = ram(&g.mem);
    let at = g.ste_gpa();
    let mut cfgi = Command::new(Opcode::CfgiSte);
    cfgi.set_sid(VSID);
    let write_ste = |ste: &Ste| {
        for (i, w) in (0u64..).zip(ste.0) {
            ram.write_u64(Gpa(at + 8 * i), w).unwrap();
        }
    };
    let mut bypass = Ste::default();
    bypass.set_v(true);
    bypass.set_config(StreamConfig::Bypass);
    write_ste(&bypass);
    g.raw_commands(&[cfgi, sync()]);
    assert_eq!(g.vsmmu.host_hwpt(VSID), Some(g.vsmmu.parent_id()));
    assert_eq!(g.dma(None, DATA_GPA + 8), Ok(GUEST_RAM_HPA + DATA_GPA + 8));
    assert!(g.fd.lock().unwrap().object(nested).is_none(), "the old nested HWPT was destroyed");
    // Config 0b001: Reserved.
    let mut reserved = bypass;
    reserved.0[0] = (reserved.0[0] & !0b1110) | (0b001 << 1);
    write_ste(&reserved);
    g.raw_commands(&[cfgi, sync()]);
    assert!(matches!(g.dma(None, DATA_GPA), Err(DmaFault::Terminated { .. })));
    assert_eq!(g.cmdq_error(), None);
    assert!(g.driver.drain_events().unwrap().is_empty(), "Config abort records nothing");
}

/// A guest stage-1 fault (device X writes at a GVA P has not mapped) is recorded by the host
/// model, goes to the vSMMU's vEVENTQ with the virtual StreamID, and lands in the guest's
/// Event queue as its SMMU would have written it, with the Event queue interrupt.
#[test]
fn a_guest_stage1_fault_reaches_the_guest_event_queue_with_the_virtual_streamid() {
    let mut g = boot();
    g.bind_process();
    // The guest enables its Event queue interrupt (wired: the vSMMU has no MSI).
    let irq = irq_ctrl::EVENTQ_IRQEN.mask();
    g.vsmmu.write(IRQ_CTRL.0, 4, irq);
    assert_eq!(g.vsmmu.read(IRQ_CTRLACK.0, 4), irq);
    let hole = GVA + 0x20_0000 + 0x48;
    match g.dma(Some(PASID_N), hole) {
        Err(DmaFault::Fault(r)) => assert_eq!(r.code, EventId::FTranslation as u16),
        other => panic!("expected F_TRANSLATION, got {other:?}"),
    }
    let served = g.vsmmu.service();
    assert_eq!((served.events, served.lost), (1, 0));
    assert_eq!(served.interrupts, [Output::EventqIrq]);
    let events = g.driver.drain_events().unwrap();
    let [e] = &events[..] else { panic!("{events:?}") };
    assert_eq!(e.id, Ok(EventId::FTranslation));
    assert_eq!((e.sid, e.ssid, e.input_addr), (VSID, Some(PASID_N), hole));
    // A stage-1 write fault on the transaction's address (§7.3.13): S2 == 0, CLASS == IN.
    assert!(!e.record.s2() && !e.record.rnw());
    assert_eq!(e.record.class(), Ok(Class::In));
    // The host's own list holds nothing: the event was the guest's.
    assert!(g.fd.lock().unwrap().take_host_faults().is_empty());
    assert_eq!(g.vsmmu.stats().events_delivered, 1);
}

/// The VMM unmaps guest RAM from the IOAS under a live guest mapping: the host model records
/// a stage-2 fault with the physical StreamID and the IPA, the VMM gets it, and the guest's
/// Event queue stays clean (iommufd forwards no stage-2 event).
#[test]
fn a_host_stage2_unmap_is_the_vmms_fault_and_the_guest_queue_stays_clean() {
    let mut g = boot();
    g.bind_process();
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + DATA_GPA));
    {
        // iommufd unmaps whole areas: guest RAM again, less P's data page.
        let mut fd = g.fd.lock().unwrap();
        fd.ioas_unmap(g.ioas, 0, GUEST_RAM_LEN).unwrap();
        let rw = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;
        fd.ioas_map(g.ioas, rw, VMM_VA, DATA_GPA, 0).unwrap();
        let rest = DATA_GPA + 0x1000;
        fd.ioas_map(g.ioas, rw, VMM_VA + rest, GUEST_RAM_LEN - rest, rest).unwrap();
    }
    match g.dma(Some(PASID_N), GVA + 8) {
        Err(DmaFault::Fault(r)) => assert_eq!(r.code, EventId::FTranslation as u16),
        other => panic!("expected a stage-2 F_TRANSLATION, got {other:?}"),
    }
    let served = g.vsmmu.service();
    assert_eq!((served.events, served.lost), (0, 0));
    assert!(g.driver.drain_events().unwrap().is_empty(), "the guest's queue stays clean");
    let host = g.fd.lock().unwrap().take_host_faults();
    let [FaultEvent::Unrecoverable { device, pasid, addr, raw: Some(words), .. }] = &host[..]
    else {
        panic!("{host:?}")
    };
    assert_eq!((device, pasid.map(|p| p.0), *addr), (&g.dev, Some(PASID_N), GVA + 8));
    let rec = EventRecord(*words);
    // The physical StreamID of device A, and the IPA stage 2 could not translate.
    assert_eq!(rec.sid(), HOST_SID_A);
    assert!(rec.s2());
    assert_eq!(rec.ipa(), DATA_GPA);
    assert_eq!(g.fd.lock().unwrap().host_event_counts().host, 1);
}

/// A vEVENTQ of depth 2 given five stage-1 faults keeps two, loses three behind one
/// LOST_EVENTS header (each took a sequence number), and the guest sees its Event queue
/// overflow: two records and OVFLG toggled, which its driver counts.
#[test]
fn a_veventq_overflow_is_lost_events_and_a_guest_event_queue_overflow() {
    let mut g = boot_with(Machine::new(Model::Smmuv3).unwrap(), VSmmuConfig { veventq_depth: 2 });
    g.bind_process();
    for i in 0..5u64 {
        assert!(g.dma(Some(PASID_N), GVA + 0x10_0000 + (i << 12)).is_err());
    }
    {
        let mut fd = g.fd.lock().unwrap();
        let routed = fd.handle_host_events();
        assert_eq!((routed.vevents, routed.lost, routed.host), (2, 3, 0));
        let Some(Object::Veventq(q)) = fd.object(g.vsmmu.veventq_id()) else { panic!() };
        assert_eq!((q.lost, q.reported, q.sequence), (3, 2, 5));
        let seen: Vec<_> =
            q.deliver.iter().map(|v| (v.flags, v.sequence, v.data.is_some())).collect();
        assert_eq!(seen, [(0, 0, true), (0, 1, true), (VEVENTQ_FLAG_LOST_EVENTS, 4, false)]);
    }
    let served = g.vsmmu.service();
    assert_eq!((served.events, served.lost), (2, 3));
    let prod = g.vsmmu.read(EVENTQ_PROD.0, 4);
    let cons = g.vsmmu.read(EVENTQ_CONS.0, 4);
    assert_ne!(prod::OVFLG.get(prod), cons::OVACKFLG.get(cons), "the guest's queue overflowed");
    let events = g.driver.drain_events().unwrap();
    let got: Vec<_> = events.iter().map(|e| (e.sid, e.input_addr)).collect();
    assert_eq!(got, [(VSID, GVA + 0x10_0000), (VSID, GVA + 0x10_1000)]);
    assert_eq!(g.driver.stats().event_overflows, 1);
    assert_eq!(g.vsmmu.stats().events_lost, 3);
    assert_eq!(g.vsmmu.smmu().stats().events_overflowed, 1);
}

/// The host SMMU with ATS, PRI (an 8-entry PRI queue) and PPS.
fn pri_host() -> Machine {
    let d = SmmuParams::default();
    let i0 = [idr0::ATS, idr0::PRI].iter().fold(u64::from(d.idr0), |v, f| f.with(v, true));
    let params = SmmuParams {
        idr0: u32::try_from(i0).unwrap(),
        idr1: u32::try_from(idr1::PRIQS.set(u64::from(d.idr1), 3)).unwrap(),
        idr3: u32::try_from(idr3::PPS.with(u64::from(d.idr3), true)).unwrap(),
        ..d
    };
    Machine::smmuv3_with(params).unwrap()
}

/// The host unit's hardware model, which device A's requests reach.
fn host_hw(fd: &SharedFd) -> Arc<HostSmmu> {
    let fd = fd.lock().unwrap();
    let unit = fd.iommu().driver(UNIT).unwrap();
    Arc::clone(unit.as_any().downcast_ref::<SmmuUnit>().unwrap().hw())
}

/// A page request of device X (PASID n, a GVA P has not mapped) reaches the guest's PRI queue
/// through the host's fault queue with the virtual StreamID; the guest maps the page and
/// answers with CMD_PRI_RESP; the response reaches X through the host SMMU with X's physical
/// StreamID, and X's retried DMA lands in the page the guest mapped.
#[test]
fn a_page_request_reaches_the_guest_priq_and_its_response_the_device() {
    let mut g = boot_with(pri_host(), VSmmuConfig::default());
    assert!(g.vsmmu.fault_queue_id().is_some(), "the host takes page requests");
    let pt = g.bind_process();
    let gva = GVA + 0x5000;
    let gpa = DATA_GPA + 0x2000;
    assert!(g.dma(Some(PASID_N), gva).is_err(), "not mapped yet");
    g.vsmmu.service();
    g.driver.drain_events().unwrap();
    let hw = host_hw(&g.fd);
    let mut req = PageRequest::default();
    req.set_sid(HOST_SID_A);
    req.set_ssv(true);
    req.set_ssid(PASID_N);
    req.set_w(true);
    req.set_r(true);
    req.set_last(true);
    req.set_prgindex(7);
    req.set_page_address(gva);
    assert!(hw.page_request(&req));
    let served = g.vsmmu.service();
    assert_eq!(served.page_requests, 1);
    let reqs = g.driver.drain_page_requests().unwrap();
    let [r] = &reqs[..] else { panic!("{reqs:?}") };
    assert_eq!((r.sid(), r.ssv(), r.ssid()), (VSID, true, PASID_N));
    assert_eq!((r.page_address(), r.prgindex(), r.last(), r.w()), (gva, 7, true, true));
    // The guest's kernel faults the page in and answers.
    let ram = ram(&g.mem);
    let mut frames = FrameAllocator::new(&[(Gpa(PROCESS_FRAMES.0 + 0x2_0000), 0x1_0000)]);
    pt.map(&ram, &mut frames, gva, gpa, 12, S1Attrs::ALL).unwrap();
    assert!(hw.drain_outputs().is_empty(), "no response before the guest's");
    g.driver.pri_response(VSID, Some(PASID_N), 7, PriResp::Success).unwrap();
    let out = hw.drain_outputs();
    let response = Output::PriResponse {
        sid: HOST_SID_A,
        ssid: Some(PASID_N),
        prg_index: 7,
        response_code: 0,
    };
    assert!(out.contains(&response), "{out:?}");
    assert_eq!(g.vsmmu.stats().responses, 1);
    // The device retries.
    assert_eq!(g.dma(Some(PASID_N), gva + 0x10), Ok(GUEST_RAM_HPA + gpa + 0x10));
    // The model's copy of the guest's response is not sent twice.
    g.vsmmu.service();
    assert!(hw.drain_outputs().is_empty());
    assert_eq!(g.vsmmu.stats().stray_responses, 0);
    let fd = g.fd.lock().unwrap();
    let Some(Object::Fault(q)) = fd.object(g.vsmmu.fault_queue_id().unwrap()) else { panic!() };
    assert_eq!((q.groups, q.answered, q.response.len()), (1, 1, 0));
}

/// No translation that starts after the guest's CMD_SYNC completed returns the old page:
/// three threads translate X's GVA through the host model, each stamping when it started
/// from one clock, while the guest unmaps the page and invalidates (TLBI + CMD_SYNC through
/// its driver); the clock is read once the driver saw the CMD_SYNC complete.
#[test]
fn no_translation_after_the_guest_cmd_sync_returns_the_old_page() {
    let mut g = boot();
    let pt = g.bind_process();
    let hw = host_hw(&g.fd);
    let clock = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let old = GUEST_RAM_HPA + DATA_GPA;
    let t = Transaction::new(HOST_SID_A, GVA, Access::WRITE).with_ssid(PASID_N);
    let (logs, synced) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut log = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let start = clock.fetch_add(1, Ordering::SeqCst);
                        log.push((start, hw.translate(&t).map(|x| x.output).ok()));
                    }
                    log
                })
            })
            .collect();
        while clock.load(Ordering::SeqCst) < 200 {
            std::thread::yield_now();
        }
        pt.unmap(&g.ram(), GVA, 0x1000).unwrap();
        let inv = Invalidation::NhVa {
            parent: None,
            asid: ASID_P,
            iova: GVA,
            size: 0x1000,
            granule: Granule::Size4K,
            leaf: true,
        };
        g.driver.invalidate(&[inv]).unwrap();
        let synced = clock.fetch_add(1, Ordering::SeqCst);
        while clock.load(Ordering::SeqCst) < synced + 300 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::SeqCst);
        let logs: Vec<_> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        (logs, synced)
    });
    assert!(logs.iter().any(|&(at, out)| at < synced && out == Some(old)), "it was mapped");
    let after: Vec<_> = logs.iter().filter(|&&(at, _)| at > synced).collect();
    assert!(after.len() >= 299);
    assert!(after.iter().all(|(_, out)| out.is_none()), "the old page after the sync");
}

/// The guest's CMD_SYNC completes only after the host completed what came before it: when
/// the guest sees CONS past its TLBI and CMD_SYNC, the host's driver has issued its own
/// CMD_SYNC and the host's Command queue is empty.
#[test]
fn the_guest_cmd_sync_completes_after_the_host() {
    let mut g = boot();
    g.bind_process();
    let hw = host_hw(&g.fd);
    let host_syncs = |g: &Guest| g.fd.lock().unwrap().iommu().unit_counters()[&UNIT].syncs;
    let before = host_syncs(&g);
    let mut tlbi = Command::new(Opcode::TlbiNhAsid);
    tlbi.set_asid(ASID_P);
    g.raw_commands(&[tlbi, sync()]);
    assert_eq!(g.vsmmu.read(CMDQ_CONS.0, 4), g.vsmmu.read(CMDQ_PROD.0, 4));
    assert_eq!(g.cmdq_error(), None);
    assert!(host_syncs(&g) > before, "the host synced");
    assert_eq!(hw.mmio_read(CMDQ_CONS.0, 4), hw.mmio_read(CMDQ_PROD.0, 4));
}

impl Guest {
    /// Sets or clears `bit` of the vSMMU's SMMU_CR0 and checks CR0ACK follows.
    fn cr0(&self, bit: Field32, on: bool) {
        let v = &*self.vsmmu;
        let cr0 = bit.with(v.read(CR0.0, 4), on);
        v.write(CR0.0, 4, cr0);
        assert_eq!(v.read(CR0ACK.0, 4), cr0);
    }
}

/// A guest queue or Stream table outside its RAM: the architected error in the guest
/// (command fetch abort, Event queue write abort, STE fetch abort) and nothing on the host.
#[test]
fn queue_and_table_bases_outside_guest_ram_are_guest_errors_only() {
    let outside = GUEST_RAM_LEN + 0x10_0000;
    // The Command queue: CERROR_ABT at the first command.
    let g = boot();
    let before = g.snapshot();
    g.cr0(cr0::CMDQEN, false);
    g.vsmmu.write(CMDQ_BASE.0, 8, outside | 4);
    g.vsmmu.write(CMDQ_PROD.0, 4, 0);
    g.vsmmu.write(CMDQ_CONS.0, 4, 0);
    g.cr0(cr0::CMDQEN, true);
    g.vsmmu.write(CMDQ_PROD.0, 4, 1);
    assert_eq!(g.cmdq_error(), Some(CError::Abt as u64));
    assert!(before == g.snapshot(), "the host changed");

    // The Event queue: the host's event for the guest is lost to EVENTQ_ABT_ERR.
    let mut g = boot();
    g.bind_process();
    g.cr0(cr0::EVENTQEN, false);
    g.vsmmu.write(EVENTQ_BASE.0, 8, outside | 4);
    g.cr0(cr0::EVENTQEN, true);
    assert!(g.dma(Some(PASID_N), GVA + 0x40_0000).is_err());
    // The host's interrupt thread takes the event (its own queue moves) into the vEVENTQ.
    assert_eq!(g.fd.lock().unwrap().handle_host_events().vevents, 1);
    let before = g.snapshot();
    let served = g.vsmmu.service();
    assert_eq!(served.events, 0);
    let v = &*g.vsmmu;
    assert!(gerror::EVENTQ_ABT_ERR.is_set(v.read(GERROR.0, 4) ^ v.read(GERRORN.0, 4)));
    assert_eq!((v.stats().events_refused, v.smmu().stats().events_aborted), (1, 1));
    assert!(before == g.snapshot(), "the host changed");

    // The Stream table: CMD_CFGI_STE reads nothing there; F_STE_FETCH in the guest, and the
    // host keeps the device's HWPT.
    let g = boot();
    let hwpt = g.vsmmu.host_hwpt(VSID);
    let before = g.snapshot();
    g.cr0(cr0::SMMUEN, false);
    let cfg = g.vsmmu.read(STRTAB_BASE_CFG.0, 4);
    g.vsmmu.write(STRTAB_BASE.0, 8, outside);
    g.vsmmu.write(STRTAB_BASE_CFG.0, 4, cfg);
    g.cr0(cr0::SMMUEN, true);
    let mut cfgi = Command::new(Opcode::CfgiSte);
    cfgi.set_sid(VSID);
    g.raw_commands(&[cfgi, sync()]);
    assert_eq!(g.cmdq_error(), None);
    let mut driver = g.driver;
    let events = driver.drain_events().unwrap();
    assert!(events.iter().any(|e| e.id == Ok(EventId::FSteFetch) && e.sid == VSID), "{events:?}");
    assert_eq!(g.vsmmu.host_hwpt(VSID), hwpt);
    let fd = g.fd.lock().unwrap();
    assert!(before == host_state(&fd), "the host changed");
}

/// `VSmmu::new` that fails part way (device B is already attached, so its abort vSTE cannot
/// be attached) undoes every host call it made: the host's objects are as they were, its
/// registers too but for the Command queue pointers (the undoing issued commands), and every
/// device's DMA ends as before. (Not byte-identical memory: the core scrubs neither the
/// freed stage-2 table pages nor a detached STE's fields behind V == 0.)
#[test]
fn a_failed_vsmmu_new_leaves_the_host_as_it_was() {
    let m = Machine::new(Model::Smmuv3).unwrap();
    let devs = m.devices();
    let mut fd = m.into_fd();
    let mem = Arc::clone(fd.memory());
    let a = fd.device_bind(&devs[0]).unwrap();
    let b = fd.device_bind(&devs[1]).unwrap();
    let ioas = fd.ioas_alloc().unwrap();
    let rw = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;
    fd.ioas_map(ioas, rw, VMM_VA, GUEST_RAM_LEN, 0).unwrap();
    let paging = fd.hwpt_alloc(&HwptAlloc { dev_id: b, pt_id: ioas, ..HwptAlloc::default() });
    fd.attach(b, None, paging.unwrap()).unwrap();
    let dmas = |fd: &Iommufd| -> Vec<_> {
        let addrs = [0, DATA_GPA, GVA, GUEST_RAM_LEN - 8];
        let pasids = [None, Some(PASID_N)];
        devs.iter()
            .flat_map(|d| addrs.iter().flat_map(move |&x| pasids.map(|p| (d, p, x))))
            .map(|(d, p, x)| fd.dma(d, p, x, DmaAccess::Write).unwrap())
            .collect()
    };
    let queue_pointers = [CMDQ_PROD.0, CMDQ_CONS.0];
    let regs = |fd: &Iommufd| {
        let mut r = host_state(fd).1;
        for (_, words) in &mut r {
            for p in queue_pointers {
                words[usize::try_from(p / 4).unwrap()] = 0;
            }
        }
        r
    };
    // The probes' faults move the host's Event queue: they come before each register read.
    let (ids, reach, registers) = (fd.object_ids(), dmas(&fd), regs(&fd));
    let fd = Arc::new(Mutex::new(fd));
    let e = VSmmu::new(Arc::clone(&fd), ram(&mem), ioas, &[(VSID, a), (VSID + 1, b)]).unwrap_err();
    assert!(matches!(e, ViommuError::Uapi(_)), "{e}");
    let fd = fd.lock().unwrap();
    assert_eq!(fd.object_ids(), ids, "no object left behind");
    assert_eq!(fd.attached_hwpt(a, None), None);
    assert!(registers == regs(&fd), "the host's registers changed");
    assert_eq!(dmas(&fd), reach);
}

/// Half of the VMM's guest memory each: guests A and B on one host.
const HALF: u64 = GUEST_RAM_LEN / 2;

/// One write guest A makes.
#[derive(Clone, Debug)]
enum Poke {
    /// A register write anywhere in the vSMMU's two register pages.
    Mmio { offset: u64, wide: bool, value: u64 },
    /// A 64-bit write into its driver's structures or P's page tables.
    Table { at: u64, value: u64 },
    /// A word of its STE for X.
    SteWord { word: u64, value: u64 },
    /// A command (a likely opcode, random operands) and CMD_SYNC.
    Command { op: u8, words: [u64; 2] },
}

fn poke() -> impl Strategy<Value = Poke> {
    let reg_bytes = 2 * sviommu_smmuv3::spec::regs::PAGE_BYTES;
    prop_oneof![
        (0..reg_bytes / 4, any::<bool>(), any::<u64>()).prop_map(|(o, wide, value)| {
            Poke::Mmio { offset: if wide { (o * 4) & !7 } else { o * 4 }, wide, value }
        }),
        (0..(DRIVER_FRAMES.1 + PROCESS_FRAMES.1) / 8, any::<u64>())
            .prop_map(|(i, value)| Poke::Table { at: DRIVER_FRAMES.0 + i * 8, value }),
        (0..8u64, any::<u64>()).prop_map(|(word, value)| Poke::SteWord { word, value }),
        (0..6u8, any::<[u64; 2]>()).prop_map(|(op, words)| Poke::Command { op, words }),
    ]
}

impl Guest {
    fn poke(&self, p: &Poke) {
        let v = &*self.vsmmu;
        let ram = self.ram();
        match *p {
            Poke::Mmio { offset, wide, value } => v.write(offset, if wide { 8 } else { 4 }, value),
            // A write outside RAM (a garbage base) is the guest's own bus error: ignored.
            Poke::Table { at, value } => {
                let _ = ram.write_u64(Gpa(at), value);
            }
            Poke::SteWord { word, value } => {
                let _ = ram.write_u64(Gpa(self.ste_gpa().wrapping_add(8 * word)), value);
            }
            Poke::Command { op, words } => {
                let ops = [
                    Opcode::CfgiSte,
                    Opcode::CfgiSteRange,
                    Opcode::CfgiCdAll,
                    Opcode::TlbiNhAll,
                    Opcode::TlbiNsnhAll,
                    Opcode::AtcInv,
                ];
                let mut c = Command::new(ops[usize::from(op) % ops.len()]);
                c.0[0] |= words[0] & !0xff;
                c.0[1] = words[1];
                if op % 2 == 0 {
                    c.set_sid(VSID);
                }
                self.raw_commands(&[c, sync()]);
            }
        }
    }
}

/// X's DMAs an isolation check issues: with and without PASID n, at P's GVA, at guest RAM
/// addresses and beyond.
fn probes() -> Vec<(Option<u32>, u64)> {
    let addrs = [GVA, GVA + 0x1000, 0, DATA_GPA, HALF - 8, HALF, GUEST_RAM_LEN + 0x1000];
    addrs.iter().flat_map(|&a| [(None, a), (Some(PASID_N), a)]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Two guests on one host, each with its own half of guest memory, IOAS, vSMMU and
    /// device. Whatever guest A writes to its registers, queues and tables, every DMA of A's
    /// device either faults or lands in A's half, and B's DMAs end exactly as before.
    #[test]
    fn guest_a_cannot_reach_guest_b_whatever_it_writes(pokes in prop::collection::vec(poke(), 1..24)) {
        let m = Machine::new(Model::Smmuv3).unwrap();
        let devs = m.devices();
        let fd = Arc::new(Mutex::new(m.into_fd()));
        let mut a = guest_on(&fd, &devs[0], 0, HALF, VSmmuConfig::default());
        let mut b = guest_on(&fd, &devs[1], HALF, HALF, VSmmuConfig::default());
        a.bind_process();
        b.bind_process();
        // B's probes and the events they give B's own queue.
        let b_probe = |b: &mut Guest| {
            let results: Vec<_> = probes().iter().map(|&(p, x)| b.dma(p, x)).collect();
            b.vsmmu.service();
            let events: Vec<_> = b
                .driver
                .drain_events()
                .unwrap()
                .iter()
                .map(|e| (e.id, e.sid, e.ssid, e.input_addr))
                .collect();
            (results, events)
        };
        let b_before = b_probe(&mut b);
        prop_assert_eq!(b_before.0[1], Ok(GUEST_RAM_HPA + HALF + DATA_GPA), "B's P works");
        prop_assert_eq!(a.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + DATA_GPA), "A's P works");
        let a_range = GUEST_RAM_HPA..GUEST_RAM_HPA + HALF;
        for p in &pokes {
            a.poke(p);
            a.vsmmu.service();
            for &(pasid, x) in &probes() {
                if let Ok(hpa) = a.dma(pasid, x) {
                    prop_assert!(a_range.contains(&hpa), "{:?}: A reached {:#x}", p, hpa);
                }
            }
        }
        // The same DMAs, the same results, and the same events in B's queue: none of A's.
        prop_assert_eq!(b_probe(&mut b), b_before);
    }
}

/// The host's nested HWPTs of a vSMMU: one abort vSTE per assigned device (made once, kept)
/// plus one per device whose guest STE is stage 1. A guest that re-issues CFGI_STE, or moves
/// its STE to bypass and back, leaves exactly that many (each replaced HWPT is destroyed).
#[test]
fn host_nested_hwpts_are_what_the_guest_configuration_implies() {
    let mut g = boot();
    let nested = |g: &Guest| {
        let fd = g.fd.lock().unwrap();
        let ids = fd.object_ids();
        ids.into_iter().filter(|&i| matches!(fd.object(i), Some(Object::HwptNested(_)))).count()
    };
    assert_eq!(nested(&g), 1, "the abort vSTE only");
    g.bind_process();
    assert_eq!(nested(&g), 2, "abort vSTE + the guest's stage-1 STE");
    let mut cfgi = Command::new(Opcode::CfgiSte);
    cfgi.set_sid(VSID);
    let mut all = Command::new(Opcode::CfgiSteRange);
    all.set_range(31);
    for _ in 0..3 {
        g.raw_commands(&[cfgi, all, sync()]);
        assert_eq!(nested(&g), 2, "a re-issued CFGI_STE replaces, never adds");
    }
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + DATA_GPA));
    let at = g.ste_gpa();
    let ram = g.ram();
    let stage1: Vec<u64> = (0..8).map(|i| ram.read_u64(Gpa(at + 8 * i)).unwrap()).collect();
    let mut bypass = Ste::default();
    bypass.set_v(true);
    bypass.set_config(StreamConfig::Bypass);
    let write = |words: &[u64]| {
        for (i, w) in (0u64..).zip(words) {
            ram.write_u64(Gpa(at + 8 * i), *w).unwrap();
        }
    };
    write(&bypass.0);
    g.raw_commands(&[cfgi, sync()]);
    assert_eq!(nested(&g), 1, "bypass runs on the parent");
    write(&Ste::default().0);
    g.raw_commands(&[cfgi, sync()]);
    assert_eq!(nested(&g), 1, "abort runs on the kept abort vSTE");
    write(&stage1);
    g.raw_commands(&[cfgi, sync()]);
    assert_eq!(nested(&g), 2);
    assert_eq!(g.dma(Some(PASID_N), GVA), Ok(GUEST_RAM_HPA + DATA_GPA));
    assert_eq!(g.cmdq_error(), None);
}

/// `VSmmu::new` with each of its host calls' internal steps failing in turn
/// (`Iommufd::fail_nth`) until it succeeds: each failure is the injected one (ENOMEM), and
/// leaves the host's objects, attachments, registers (queue indexes aside)
/// and every device's DMA as they were (checked as `a_failed_vsmmu_new_leaves_the_host_as_it_was`
/// does: a freed stage-2 page is not scrubbed, so memory is not compared byte for byte). The
/// next object ID is not compared: uapi never reuses an ID, so the objects made before the
/// failure and destroyed by its undo took theirs (iommufd's `xa_alloc` would hand the lowest
/// free one out again).
#[test]
fn every_injected_failure_in_vsmmu_new_leaves_the_host_as_it_was() {
    let m = pri_host();
    let devs = m.devices();
    let mut fd = m.into_fd();
    let mem = Arc::clone(fd.memory());
    let a = fd.device_bind(&devs[0]).unwrap();
    let c = fd.device_bind(&devs[2]).unwrap();
    let ioas = fd.ioas_alloc().unwrap();
    let rw = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;
    fd.ioas_map(ioas, rw, VMM_VA, GUEST_RAM_LEN, 0).unwrap();
    let dmas = |fd: &Iommufd| -> Vec<_> {
        let addrs = [0, DATA_GPA, GUEST_RAM_LEN - 8];
        devs.iter()
            .flat_map(|d| addrs.iter().flat_map(move |&x| [None, Some(PASID_N)].map(|p| (d, p, x))))
            // DEVIATION: where each request lands, or that it is blocked. A device whose first
            // attach is undone stays on an abort STE in a level-2 Stream table the driver
            // keeps, where before its StreamID had none (C_BAD_STREAMID becomes a silent
            // Config abort: still blocked, but the host's Event queue no longer hears of it).
            .map(|(d, p, x)| fd.dma(d, p, x, DmaAccess::Write).unwrap().ok())
            .collect()
    };
    let regs = |fd: &Iommufd| {
        let mut r = host_state(fd).1;
        for (_, words) in &mut r {
            for p in [CMDQ_PROD.0, CMDQ_CONS.0, EVENTQ_PROD.0, EVENTQ_CONS.0] {
                if let Some(w) = words.get_mut(usize::try_from(p / 4).unwrap()) {
                    *w = 0;
                }
            }
        }
        r
    };
    let fd = Arc::new(Mutex::new(fd));
    let mut failures = 0;
    for n in 1..=64 {
        let state = {
            let f = fd.lock().unwrap();
            (f.object_ids(), dmas(&f), regs(&f), f.attached_hwpt(a, None))
        };
        fd.lock().unwrap().fail_nth(Some(n));
        let made = VSmmu::new(Arc::clone(&fd), ram(&mem), ioas, &[(VSID, a), (VSID + 1, c)]);
        let seen = fd.lock().unwrap().fail_nth_seen();
        fd.lock().unwrap().fail_nth(None);
        match made {
            Ok(v) => {
                assert!(seen < n, "point {n}: an injected failure was swallowed");
                assert_eq!(v.host_hwpt(VSID).map(|h| h > 0), Some(true));
                break;
            }
            Err(ViommuError::Uapi(e)) => {
                assert_eq!(e.errno(), sviommu_uapi::Errno::ENOMEM, "point {n}: {e}");
                failures += 1;
                let f = fd.lock().unwrap();
                let after = (f.object_ids(), dmas(&f), regs(&f), f.attached_hwpt(a, None));
                assert_eq!(state.0, after.0, "point {n} ({e}): objects");
                assert_eq!(state.1, after.1, "point {n} ({e}): DMA");
                assert!(state.2 == after.2, "point {n} ({e}): registers");
                assert_eq!(state.3, after.3, "point {n} ({e}): attachment");
            }
            Err(e) => panic!("point {n}: {e}"),
        }
    }
    // Parent, vIOMMU, vEVENTQ, fault queue; per device a vDEVICE, an abort vSTE, its attach.
    assert!(failures >= 10, "{failures}");
}

/// Dropping the vSMMU takes its host objects down in dependency order: after a guest bind,
/// the host holds what the VMM had made before the vSMMU (the device and the IOAS) and
/// nothing else, and the device's DMA is blocked.
#[test]
fn dropping_the_vsmmu_leaves_the_host_objects_as_before() {
    let mut g = boot_with(pri_host(), VSmmuConfig::default());
    g.bind_process();
    let (fd, dev, ioas) = (Arc::clone(&g.fd), g.dev.clone(), g.ioas);
    let dev_id = fd.lock().unwrap().device_object(&dev).unwrap();
    assert!(fd.lock().unwrap().object_ids().len() > 2);
    assert_eq!(g.vsmmu.destroy(), Vec::<ObjectId>::new());
    assert_eq!(fd.lock().unwrap().object_ids(), [dev_id, ioas]);
    drop(g);
    let mut f = fd.lock().unwrap();
    assert_eq!(f.object_ids(), [dev_id, ioas], "a second destroy (Drop) does nothing");
    assert!(f.dma(&dev, Some(PASID_N), GVA, DmaAccess::Write).unwrap().is_err());
    // Nothing of the vSMMU holds the device: the VMM attaches it to a paging HWPT again.
    let paging = f.hwpt_alloc(&HwptAlloc { dev_id, pt_id: ioas, ..HwptAlloc::default() }).unwrap();
    f.attach(dev_id, None, paging).unwrap();
    let gpa = 0x1c_3010;
    assert_eq!(f.dma(&dev, None, gpa, DmaAccess::Write).unwrap(), Ok(GUEST_RAM_HPA + gpa));
}

/// A page request group the VMM has not answered when its device leaves the nested HWPT (the
/// guest aborts its STE) is answered Invalid by the host, as iommufd does, and counted.
#[test]
fn an_unanswered_page_request_is_answered_invalid_when_its_device_leaves() {
    let mut g = boot_with(pri_host(), VSmmuConfig::default());
    let fq = g.vsmmu.fault_queue_id().unwrap();
    g.bind_process();
    let hw = host_hw(&g.fd);
    let mut req = PageRequest::default();
    req.set_sid(HOST_SID_A);
    req.set_ssv(true);
    req.set_ssid(PASID_N);
    req.set_r(true);
    req.set_last(true);
    req.set_prgindex(4);
    req.set_page_address(GVA + 0x7000);
    assert!(hw.page_request(&req));
    g.fd.lock().unwrap().handle_host_events();
    hw.drain_outputs();
    let abandoned = |g: &Guest| match g.fd.lock().unwrap().object(fq) {
        Some(Object::Fault(q)) => (q.groups, q.abandoned, q.response.len(), q.deliver.len()),
        other => panic!("{other:?}"),
    };
    assert_eq!(abandoned(&g), (1, 0, 1, 1), "queued, not read");
    // The guest aborts X's STE: the host replaces the nested HWPT with the abort vSTE.
    let ram = g.ram();
    for i in 0..8 {
        ram.write_u64(Gpa(g.ste_gpa() + 8 * i), 0).unwrap();
    }
    let mut cfgi = Command::new(Opcode::CfgiSte);
    cfgi.set_sid(VSID);
    g.raw_commands(&[cfgi, sync()]);
    assert_eq!(abandoned(&g), (1, 1, 0, 0));
    let invalid = Output::PriResponse {
        sid: HOST_SID_A,
        ssid: Some(PASID_N),
        prg_index: 4,
        response_code: 1,
    };
    let out = hw.drain_outputs();
    assert!(out.contains(&invalid), "{out:?}");
}

//! Fault injection in the shape of iommufd's `fail_nth` selftest: every call kind of a
//! realistic VMM sequence, on both architectures, is run with its 1st, 2nd, ... internal step
//! failing (`Iommufd::fail_nth`) until it succeeds. After each injected failure the call's error
//! is the injected one (ENOMEM), the hardware-visible state is byte-identical, the context's
//! objects and attachments are as they were, and the next object ID is the one it would have
//! been (no leaked ID).
//!
//! **The hardware-visible state**, precisely: each unit's register file (32 bits at a time
//! over its whole MMIO space) except the command / invalidation queue's producer and consumer
//! indexes, and every byte of host memory except the bytes the queues' completed commands own
//! (the command / invalidation ring itself, located from CMDQ_BASE / IQA, and the completion
//! words its CMD_SYNC MSIs and wait descriptors' status writes target, read from the ring's
//! own entries with the spec's views). Undoing a step that succeeded issues invalidations, so
//! those indexes, ring slots and completion words move: they are history the unit never acts
//! on again. Stricter than walking only the structures reachable from the registers (root,
//! context and PASID tables and second-stage tables on VT-d; Stream table, CDs and stage
//! tables on SMMUv3): every other byte of host memory is compared, so a stale byte in a page
//! no register reaches counts too. A failed map takes back the tables it allocated (unlinked,
//! invalidated, zeroed, freed), so an undo leaves no emptied table linked; unmap frees none,
//! so undoing an unmap writes the same entries back into the same pages.
//!
//! **No leak**: besides the next object ID, each unit's table-page allocator has as many free
//! bytes after a failed call as before it.

use std::collections::BTreeMap;

use sviommu_core::arch::smmuv3::SmmuUnit;
use sviommu_core::arch::vtd::VtdUnit;
use sviommu_core::driver::{DmaAccess, DmaFault, DmaResult};
use sviommu_core::topology::UnitId;
use sviommu_core::Model;
use sviommu_smmuv3::spec::regs::{
    queue_base, strtab_base, strtab_base_cfg, StrtabFmt, CMDQ_BASE, CMDQ_CONS, CMDQ_PROD,
    STRTAB_BASE, STRTAB_BASE_CFG,
};
use sviommu_smmuv3::spec::ste::{S1Fmt, StreamConfig};
use sviommu_smmuv3::spec::{Command, Opcode, Ste};
use sviommu_uapi::data::{hwpt_flags, map_flags, TYPE_ARM_SMMUV3};
use sviommu_uapi::machine::{Machine, GUEST_RAM_LEN, VMM_VA};
use sviommu_uapi::{
    Errno, HwptAlloc, HwptData, InvalidateArray, Iommufd, ObjectId, UapiError, VtdS1Invalidate,
};
use sviommu_vtd::spec::regs::{iqa, IQA, IQH, IQT};
use sviommu_vtd::spec::{InvDesc, Invalidation};

const RW: u32 = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;

/// Host memory (start, bytes) and registers, masked as the module doc says.
type Visible = (Vec<(u64, Vec<u8>)>, Vec<(UnitId, Vec<u32>)>);

fn reg64(words: &[u32], offset: u64) -> u64 {
    let at = usize::try_from(offset / 4).unwrap();
    u64::from(words[at]) | (u64::from(words[at + 1]) << 32)
}

/// The host memory ranges the queues' completed commands own, and the register words of their
/// indexes.
fn queue_history(model: Model, words: &[u32], fd: &Iommufd) -> (Vec<(u64, u64)>, Vec<u64>) {
    let read = |at: u64| {
        let mut b = [0u8; 8];
        sviommu_memory::PhysMemory::read(&**fd.memory(), sviommu_memory::Hpa(at), &mut b)
            .map(|()| u64::from_le_bytes(b))
            .unwrap_or(0)
    };
    let mut ranges = Vec::new();
    match model {
        Model::Smmuv3 => {
            let base_reg = reg64(words, CMDQ_BASE.0);
            let base = queue_base::ADDR.in_place(base_reg);
            let entries = 1u64 << queue_base::LOG2SIZE.get(base_reg).min(19);
            ranges.push((base, 16 * entries));
            for i in 0..entries {
                let cmd = Command([read(base + 16 * i), read(base + 16 * i + 8)]);
                if cmd.opcode() == Ok(Opcode::Sync) && cmd.msiaddress() != 0 {
                    ranges.push((cmd.msiaddress(), 4));
                }
            }
            (ranges, vec![CMDQ_PROD.0 / 4, CMDQ_CONS.0 / 4])
        }
        Model::Vtd => {
            let iqa_reg = reg64(words, IQA.0);
            let base = iqa::IQA.in_place(iqa_reg);
            let bytes = iqa::queue_bytes(iqa_reg);
            let width = if iqa::DW.is_set(iqa_reg) { 32 } else { 16 };
            ranges.push((base, bytes));
            for at in (base..base + bytes).step_by(width) {
                let w = [read(at), read(at + 8), 0, 0];
                if let Ok(Invalidation::Wait(wait)) = InvDesc::from_words(w).decode() {
                    if wait.sw() {
                        ranges.push((wait.status_addr(), 4));
                    }
                }
            }
            let idx = |r: u64| [r / 4, r / 4 + 1];
            (ranges, [idx(IQH.0), idx(IQT.0)].concat())
        }
    }
}

fn visible(model: Model, fd: &Iommufd) -> Visible {
    let mut s = fd.hardware_snapshot();
    for (_, words) in &mut s.registers {
        let (ranges, indexes) = queue_history(model, words, fd);
        for i in indexes {
            words[usize::try_from(i).unwrap()] = 0;
        }
        for (start, bytes) in &mut s.memory {
            let end = *start + bytes.len() as u64;
            for &(r, len) in &ranges {
                let (lo, hi) = (r.max(*start), (r + len).min(end));
                if lo < hi {
                    let (lo, hi) = ((lo - *start) as usize, (hi - *start) as usize);
                    bytes[lo..hi].fill(0);
                }
            }
        }
    }
    (s.memory, s.registers)
}

/// The first address at which two memory snapshots differ.
fn first_difference(a: &Visible, b: &Visible) -> String {
    for ((sa, ba), (_, bb)) in a.0.iter().zip(&b.0) {
        if let Some(i) = ba.iter().zip(bb).position(|(x, y)| x != y) {
            return format!("memory at {:#x}", sa + i as u64);
        }
    }
    for ((u, ra), (_, rb)) in a.1.iter().zip(&b.1) {
        if let Some(i) = ra.iter().zip(rb).position(|(x, y)| x != y) {
            return format!("unit {u:?} register {:#x}", 4 * i);
        }
    }
    "nothing".into()
}

/// Each unit's table-page allocator's free bytes.
fn free_frames(fd: &Iommufd) -> Vec<u64> {
    fd.iommu()
        .topology()
        .units()
        .iter()
        .map(|u| {
            let any = fd.iommu().driver(u.id).unwrap().as_any();
            if let Some(v) = any.downcast_ref::<VtdUnit>() {
                v.driver().frames().free_bytes()
            } else {
                any.downcast_ref::<SmmuUnit>().unwrap().driver().free_frame_bytes()
            }
        })
        .collect()
}

/// Whether `e` is the injected failure (an invalidation array's wraps it in its entry).
fn injected(e: &UapiError) -> bool {
    match e {
        UapiError::Injected { .. } => true,
        UapiError::Entry { source, .. } => injected(source),
        _ => false,
    }
}

/// Runs every call with its 1st, 2nd, ... injection point failing until it succeeds.
struct FailNth {
    model: Model,
    /// Injected failures per call, by the call's name.
    failures: BTreeMap<String, u32>,
}

impl FailNth {
    fn call<T: std::fmt::Debug>(
        &mut self,
        fd: &mut Iommufd,
        name: &str,
        mut call: impl FnMut(&mut Iommufd) -> Result<T, UapiError>,
    ) -> T {
        // What the call must leave as it was; a failure leaves it so, so it is taken once.
        let hw = visible(self.model, fd);
        let frames = free_frames(fd);
        let objects = format!("{fd:?}");
        let next = fd.next_object_id();
        for n in 1..=64 {
            fd.fail_nth(Some(n));
            let r = call(fd);
            let seen = fd.fail_nth_seen();
            fd.fail_nth(None);
            match r {
                Ok(v) => {
                    assert!(seen < n, "{name}: the injected failure at point {n} was swallowed");
                    *self.failures.entry(name.to_string()).or_default() += n - 1;
                    return v;
                }
                Err(e) => {
                    assert!(injected(&e), "{name}, point {n}: {e} instead of the injected failure");
                    assert_eq!(e.errno(), Errno::ENOMEM, "{name}, point {n}");
                    let after = visible(self.model, fd);
                    assert!(
                        hw == after,
                        "{name}, point {n} ({e}): the hardware-visible state changed: {}",
                        first_difference(&hw, &after)
                    );
                    assert_eq!(free_frames(fd), frames, "{name}, point {n}: table pages leaked");
                    assert_eq!(format!("{fd:?}"), objects, "{name}, point {n}: objects changed");
                    assert_eq!(fd.next_object_id(), next, "{name}, point {n}: an ID leaked");
                }
            }
        }
        panic!("{name}: still failing after 64 injection points");
    }
}

fn paging(dev_id: ObjectId, pt_id: ObjectId, flags: u32) -> HwptAlloc {
    HwptAlloc { flags, dev_id, pt_id, ..HwptAlloc::default() }
}

/// The sequence both architectures share up to nesting: IOAS alloc / map / copy / unmap,
/// paging HWPTs (a NEST_PARENT one), attach / replace / detach of a device and of a
/// (device, PASID). Returns (devices, IOAS, parent).
fn common(t: &mut FailNth, m: &mut Machine) -> (Vec<ObjectId>, ObjectId, ObjectId) {
    let devs = m.devices();
    let fd = &mut m.fd;
    let ids: Vec<ObjectId> =
        devs.iter().take(3).map(|d| t.call(fd, "DEVICE_BIND", |fd| fd.device_bind(d))).collect();
    let ioas = t.call(fd, "IOAS_ALLOC", Iommufd::ioas_alloc);
    t.call(fd, "IOAS_MAP", |fd| fd.ioas_map(ioas, RW, VMM_VA, GUEST_RAM_LEN, 0));
    let flags = hwpt_flags::NEST_PARENT | hwpt_flags::PASID;
    let parent = t.call(fd, "HWPT_ALLOC paging", |fd| fd.hwpt_alloc(&paging(ids[0], ioas, flags)));
    let h2 = t.call(fd, "HWPT_ALLOC paging", |fd| {
        fd.hwpt_alloc(&paging(ids[1], ioas, hwpt_flags::PASID))
    });
    t.call(fd, "attach", |fd| fd.attach(ids[1], None, h2));
    // A second area reaches both HWPTs of the IOAS: two maps, two unmaps.
    let extra = 0x100_0000;
    t.call(fd, "IOAS_MAP", |fd| fd.ioas_map(ioas, RW, VMM_VA + 0x1000, 0x3000, extra));
    let ioas2 = t.call(fd, "IOAS_ALLOC", Iommufd::ioas_alloc);
    let h3 = t.call(fd, "HWPT_ALLOC paging", |fd| fd.hwpt_alloc(&paging(ids[2], ioas2, 0)));
    t.call(fd, "attach", |fd| fd.attach(ids[2], None, h3));
    t.call(fd, "IOAS_COPY", |fd| fd.ioas_copy(ioas2, ioas, RW, 0x2000, 0x80_0000, extra));
    t.call(fd, "IOAS_UNMAP", |fd| fd.ioas_unmap(ioas, extra, 0x3000));
    t.call(fd, "IOAS_UNMAP", |fd| fd.ioas_unmap(ioas2, 0x80_0000, 0x2000));
    // (device, PASID) on a paging HWPT, then the device moves.
    t.call(fd, "attach pasid", |fd| fd.attach(ids[1], Some(3), h2));
    let h4 = t.call(fd, "HWPT_ALLOC paging", |fd| {
        fd.hwpt_alloc(&paging(ids[1], ioas, hwpt_flags::PASID))
    });
    t.call(fd, "replace pasid", |fd| fd.replace(ids[1], Some(3), h4));
    t.call(fd, "detach pasid", |fd| fd.detach(ids[1], Some(3)));
    t.call(fd, "replace", |fd| fd.replace(ids[1], None, parent));
    t.call(fd, "replace", |fd| fd.replace(ids[1], None, h2));
    t.call(fd, "detach", |fd| fd.detach(ids[2], None));
    t.call(fd, "DESTROY", |fd| fd.destroy(h3));
    t.call(fd, "DESTROY", |fd| fd.destroy(h4));
    t.call(fd, "DESTROY", |fd| fd.destroy(ioas2));
    (ids, ioas, parent)
}

fn vtd_sequence(t: &mut FailNth) {
    let mut m = Machine::new(Model::Vtd).unwrap();
    let (ids, _ioas, parent) = common(t, &mut m);
    let root = m.guest_s1(&[(0x4000_0000, 0x3000)]).unwrap();
    let fd = &mut m.fd;
    t.call(fd, "attach", |fd| fd.attach(ids[0], None, parent));
    let nested_alloc = HwptAlloc {
        flags: hwpt_flags::PASID,
        dev_id: ids[0],
        pt_id: parent,
        data: HwptData::vtd_s1(0, root, 48),
        fault_id: 0,
    };
    let nested = t.call(fd, "HWPT_ALLOC nested", |fd| fd.hwpt_alloc(&nested_alloc));
    let other = t.call(fd, "HWPT_ALLOC nested", |fd| fd.hwpt_alloc(&nested_alloc));
    t.call(fd, "attach pasid", |fd| fd.attach(ids[0], Some(5), nested));
    t.call(fd, "attach pasid", |fd| fd.attach(ids[0], Some(6), nested));
    let entries = [
        VtdS1Invalidate { addr: 0x4000_0000, npages: 1, flags: 0 },
        VtdS1Invalidate { addr: 0, npages: u64::MAX, flags: 0 },
    ];
    t.call(fd, "HWPT_INVALIDATE", |fd| fd.invalidate(nested, &InvalidateArray::vtd_s1(&entries)));
    t.call(fd, "replace pasid", |fd| fd.replace(ids[0], Some(5), other));
    let fault = t.call(fd, "FAULT_QUEUE_ALLOC", |fd| fd.fault_queue_alloc(0));
    t.call(fd, "detach pasid", |fd| fd.detach(ids[0], Some(5)));
    t.call(fd, "detach pasid", |fd| fd.detach(ids[0], Some(6)));
    for id in [nested, other, fault] {
        t.call(fd, "DESTROY", |fd| fd.destroy(id));
    }
    t.call(fd, "detach", |fd| fd.detach(ids[0], None));
    t.call(fd, "DESTROY", |fd| fd.destroy(parent));
}

fn smmu_sequence(t: &mut FailNth) {
    let mut m = Machine::new(Model::Smmuv3).unwrap();
    let (ids, _ioas, parent) = common(t, &mut m);
    let s1 = m.guest_s1(&[(0x4000_0000, 0x3000)]).unwrap();
    let cdt = m.guest_page().unwrap();
    m.guest_cd(cdt, 0, s1, 7).unwrap();
    let fd = &mut m.fd;
    let viommu =
        t.call(fd, "VIOMMU_ALLOC", |fd| fd.viommu_alloc(0, TYPE_ARM_SMMUV3, ids[0], parent));
    t.call(fd, "VDEVICE_ALLOC", |fd| fd.vdevice_alloc(viommu, ids[0], 0x42));
    let fault = t.call(fd, "FAULT_QUEUE_ALLOC", |fd| fd.fault_queue_alloc(0));
    t.call(fd, "VEVENTQ_ALLOC", |fd| fd.veventq_alloc(0, viommu, TYPE_ARM_SMMUV3, 16));
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Stage1);
    ste.set_s1fmt(S1Fmt::Linear);
    ste.set_s1contextptr(cdt);
    ste.set_s1cdmax(6);
    let mut bypass = Ste::default();
    bypass.set_v(true);
    bypass.set_config(StreamConfig::Bypass);
    let vste = |words: [u64; 8], fault_id| HwptAlloc {
        flags: hwpt_flags::FAULT_ID_VALID,
        dev_id: ids[0],
        pt_id: viommu,
        data: HwptData::arm_smmuv3([words[0], words[1]]),
        fault_id,
    };
    let abort = t.call(fd, "HWPT_ALLOC nested", |fd| fd.hwpt_alloc(&vste([0; 8], fault)));
    let s1_hwpt = t.call(fd, "HWPT_ALLOC nested", |fd| fd.hwpt_alloc(&vste(ste.0, fault)));
    let bypass_hwpt = t.call(fd, "HWPT_ALLOC nested", |fd| fd.hwpt_alloc(&vste(bypass.0, fault)));
    t.call(fd, "attach", |fd| fd.attach(ids[0], None, abort));
    t.call(fd, "replace", |fd| fd.replace(ids[0], None, s1_hwpt));
    let mut asid = Command::new(Opcode::TlbiNhAsid);
    asid.set_asid(7);
    let mut cd = Command::new(Opcode::CfgiCd);
    cd.set_sid(0x42);
    let cmds = [asid, cd, Command::new(Opcode::TlbiNsnhAll)];
    t.call(fd, "HWPT_INVALIDATE", |fd| fd.invalidate(viommu, &InvalidateArray::arm_smmuv3(&cmds)));
    t.call(fd, "replace", |fd| fd.replace(ids[0], None, bypass_hwpt));
    t.call(fd, "replace", |fd| fd.replace(ids[0], None, s1_hwpt));
    t.call(fd, "replace", |fd| fd.replace(ids[0], None, abort));
    t.call(fd, "replace", |fd| fd.replace(ids[0], None, s1_hwpt));
    t.call(fd, "detach", |fd| fd.detach(ids[0], None));
    for id in [s1_hwpt, bypass_hwpt, abort, fault] {
        t.call(fd, "DESTROY", |fd| fd.destroy(id));
    }
}

fn report(t: &FailNth) -> u32 {
    let total: u32 = t.failures.values().sum();
    println!("{:?}: {total} injected failures: {:?}", t.model, t.failures);
    total
}

#[test]
fn every_injected_failure_of_the_vtd_sequence_changes_nothing() {
    let mut t = FailNth { model: Model::Vtd, failures: BTreeMap::new() };
    vtd_sequence(&mut t);
    // Every call that makes a core call or an ID had a point to fail at.
    assert!(t.failures.values().all(|n| *n > 0), "{:?}", t.failures);
    assert!(report(&t) > 40);
}

#[test]
fn every_injected_failure_of_the_smmuv3_sequence_changes_nothing() {
    let mut t = FailNth { model: Model::Smmuv3, failures: BTreeMap::new() };
    smmu_sequence(&mut t);
    assert!(t.failures.values().all(|n| *n > 0), "{:?}", t.failures);
    assert!(report(&t) > 40);
}

/// Each SMMUv3 device's answer to a read without PASID.
fn answers(fd: &Iommufd, devs: &[sviommu_core::topology::DeviceId]) -> Vec<DmaResult> {
    devs.iter().map(|d| fd.dma(d, None, 0x1000, DmaAccess::Read).unwrap()).collect()
}

#[test]
fn a_failed_first_attach_on_a_two_level_stream_table_leaves_its_span_unprovided() {
    let mut m = Machine::new(Model::Smmuv3).unwrap();
    let devs = m.devices();
    let s1 = m.guest_s1(&[(0x4000_0000, 0x1000)]).unwrap();
    let cdt = m.guest_page().unwrap();
    m.guest_cd(cdt, 0, s1, 7).unwrap();
    let fd = &mut m.fd;
    // §6.3.25: the machine's Stream table is two-level, and A..D (0x10..0x13) share one
    // level-2 span that nothing provided yet.
    let cfg = fd.iommu().driver(sviommu_uapi::machine::UNIT).unwrap().as_any();
    let cfg = cfg.downcast_ref::<SmmuUnit>().unwrap().hw().mmio_read(STRTAB_BASE_CFG.0, 4);
    assert_eq!(strtab_base_cfg::FMT.get(cfg), StrtabFmt::TwoLevel as u64);
    let a = fd.device_bind(&devs[0]).unwrap();
    let ioas = fd.ioas_alloc().unwrap();
    fd.ioas_map(ioas, RW, VMM_VA, GUEST_RAM_LEN, 0).unwrap();
    let parent = fd.hwpt_alloc(&paging(a, ioas, hwpt_flags::NEST_PARENT)).unwrap();
    let viommu = fd.viommu_alloc(0, TYPE_ARM_SMMUV3, a, parent).unwrap();
    fd.vdevice_alloc(viommu, a, 0x42).unwrap();
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Stage1);
    ste.set_s1fmt(S1Fmt::Linear);
    ste.set_s1contextptr(cdt);
    ste.set_s1cdmax(6);
    let nested = fd
        .hwpt_alloc(&HwptAlloc {
            flags: 0,
            dev_id: a,
            pt_id: viommu,
            data: HwptData::arm_smmuv3([ste.0[0], ste.0[1]]),
            fault_id: 0,
        })
        .unwrap();
    let before = answers(fd, &devs);
    for r in &before {
        assert!(matches!(r, Err(DmaFault::Fault(f)) if f.code == 0x02), "C_BAD_STREAMID: {r:?}");
    }
    let mut failures = 0;
    for n in 1..=16 {
        let (hw, frames) = (visible(Model::Smmuv3, fd), free_frames(fd));
        fd.fail_nth(Some(n));
        let r = fd.attach(a, None, nested);
        fd.fail_nth(None);
        if r.is_ok() {
            break;
        }
        failures += 1;
        let after = visible(Model::Smmuv3, fd);
        assert!(hw == after, "point {n}: {}", first_difference(&hw, &after));
        assert_eq!(free_frames(fd), frames, "point {n}: the level-2 array leaked");
        assert_eq!(answers(fd, &devs), before, "point {n}");
    }
    assert!(failures >= 1);
    // Attached, the span is provided: B, C, D abort silently (their STEs abort).
    let after = answers(fd, &devs);
    for r in &after[1..] {
        assert!(matches!(r, Err(DmaFault::Terminated { .. })), "{r:?}");
    }
}

#[test]
fn an_undone_first_attach_gives_back_a_level_2_array_its_detach_made() {
    // The driver-level undo on its own: a detach of a device nothing was attached to makes
    // its span's level-2 array (abort STEs); releasing it puts C_BAD_STREAMID back.
    let mut m = Machine::new(Model::Smmuv3).unwrap();
    let devs = m.devices();
    let fd = &mut m.fd;
    let before = answers(fd, &devs);
    let frames = free_frames(fd);
    let target = sviommu_core::Target::Device(devs[0].clone());
    let l1std = |fd: &Iommufd| {
        let any = fd.iommu().driver(sviommu_uapi::machine::UNIT).unwrap().as_any();
        let smmu = any.downcast_ref::<SmmuUnit>().unwrap().hw();
        let base = smmu.mmio_read(STRTAB_BASE.0, 4) | (smmu.mmio_read(STRTAB_BASE.0 + 4, 4) << 32);
        // §3.3.2: StreamID 0x10's L1STD is the first one (SPLIT 8).
        let mut w = [0u8; 8];
        let at = sviommu_memory::Hpa(strtab_base::ADDR.in_place(base));
        sviommu_memory::PhysMemory::read(&**fd.memory(), at, &mut w).unwrap();
        u64::from_le_bytes(w)
    };
    assert_eq!(l1std(fd), 0);
    fd.iommu_mut().detach(&target).unwrap();
    assert_ne!(l1std(fd), 0);
    assert_ne!(answers(fd, &devs), before, "the detach provided the span");
    fd.iommu_mut().release_unattached(&target).unwrap();
    assert_eq!(l1std(fd), 0);
    assert_eq!(answers(fd, &devs), before);
    assert_eq!(free_frames(fd), frames);
}

//! The driver against the hardware model: bring-up, every attach configuration in legacy and
//! scalable mode, and what a flush does and does not remove. Every check is a request the unit
//! translates (the device's view), never a look at the driver's own records.

mod driver_common;

use driver_common::*;
use sviommu_memory::{FrameAllocator, Gpa, Hpa};
use sviommu_pgtable::x86::{self, X86Attrs, X86Paging};
use sviommu_pgtable::Build;
use sviommu_vtd::driver::{
    DeviceFeatures, DomainConfig, DriverConfig, DriverError, Feature, Mode, ModeChoice,
    PasidConfig, Prot, VtdDriver,
};
use sviommu_vtd::hw::{Access, Output, VtdParams};
use sviommu_vtd::spec::regs::{self, cap, ecap, gsts, rtaddr};
use sviommu_vtd::spec::{Aw, FaultReason as R, Fspm};

const RID: u16 = 0x0310;
const RID_UPPER: u16 = 0x0390;
const IOVA: u64 = 0x1234_5000;
const PA: u64 = 0x7_6543_2000;

fn params(f: impl FnOnce(&mut VtdParams)) -> VtdParams {
    let mut p = driver_common::params();
    f(&mut p);
    p
}

#[test]
fn bring_up_latches_the_root_enables_the_queue_and_translation() {
    for (mode, rig, unattached) in [
        (Mode::Scalable, rig(), R::SmRootEntryNotPresent),
        (Mode::Legacy, legacy_rig(), R::RootEntryNotPresent),
    ] {
        let r = rig;
        assert_eq!(r.drv.mode(), mode);
        let status = r.vtd.mmio_read(regs::GSTS.0, 4);
        for f in [gsts::TES, gsts::QIES, gsts::RTPS] {
            assert!(f.is_set(status), "{mode:?}: {f:?} in {status:#x}");
        }
        let rta = r.vtd.mmio_read(regs::RTADDR.0, 8);
        assert_eq!(rtaddr::RTA.in_place(rta), r.drv.root_table_addr().0);
        assert_eq!(rtaddr::TTM.get(rta), u64::from(mode == Mode::Scalable));
        assert_eq!(reason(&r.vtd, read(RID, IOVA)), unattached, "{mode:?}");
        // One batch of global invalidations, one wait.
        let s = r.drv.stats();
        assert_eq!((s.descriptors, s.waits), (if mode == Mode::Scalable { 4 } else { 3 }, 1));
        assert_eq!(r.vtd.mmio_read(regs::IQH.0, 8), r.vtd.mmio_read(regs::IQT.0, 8));
    }
}

#[test]
fn capabilities_are_what_the_unit_advertises() {
    let r = rig();
    let c = r.drv.capabilities();
    assert!(c.scalable_mode && c.nesting && c.pass_through && c.first_stage && c.second_stage);
    assert!(c.supports_aw(Aw::Bits39) && c.supports_aw(Aw::Bits48) && c.supports_aw(Aw::Bits57));
    assert_eq!((c.mgaw_bits, c.pasid_bits, c.fault_records), (57, 20, 8));
    assert_eq!(c.ss_page_sizes, (1 << 12) | (1 << 21) | (1 << 30));
    let e = driver_common::params().ecap;
    assert_eq!((c.device_tlb, c.page_requests), (ecap::DT.is_set(e), ecap::PRS.is_set(e)));
    assert!(!c.caching_mode);
    assert_eq!(c.domains, 1 << 16);
}

#[test]
fn bring_up_refuses_units_it_cannot_drive_before_touching_them() {
    let no_qi = params(|p| p.ecap = ecap::QI.with(p.ecap, false));
    let mem = memory();
    let vtd = std::sync::Arc::new(sviommu_vtd::hw::Vtd::new(mem.clone(), no_qi));
    let e =
        VtdDriver::new(vtd.clone(), mem.clone(), frames(), DriverConfig::default()).unwrap_err();
    assert_eq!(e, DriverError::Unsupported(Feature::QueuedInvalidation));
    assert_eq!(vtd.mmio_read(regs::GSTS.0, 4), 0, "nothing enabled");
    assert_eq!(vtd.mmio_read(regs::RTADDR.0, 8), 0, "nothing written");

    let no_sm = params(|p| p.ecap = ecap::SMTS.with(p.ecap, false));
    let vtd = std::sync::Arc::new(sviommu_vtd::hw::Vtd::new(mem.clone(), no_sm));
    let config = DriverConfig { mode: ModeChoice::Scalable, ..Default::default() };
    let e = VtdDriver::new(vtd.clone(), mem.clone(), frames(), config).unwrap_err();
    assert_eq!(e, DriverError::Unsupported(Feature::ScalableMode));
    assert_eq!(vtd.mmio_read(regs::GSTS.0, 4), 0);
    // Auto falls back to legacy on that unit.
    let drv = VtdDriver::new(vtd, mem, frames(), DriverConfig::default()).unwrap();
    assert_eq!(drv.mode(), Mode::Legacy);
}

/// Maps, translates, unmaps: the unit keeps a stale translation until the flush, and loses it
/// after.
fn map_unmap_flush(mut r: Rig, not_present: R, write_denied: R) {
    let dom = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    r.drv.attach(RID, None, PasidConfig::SecondStage { did: dom }).unwrap();
    r.drv.map(dom, IOVA, PA, 0x1000, Prot::RW).unwrap();
    r.drv.map(dom, IOVA + 0x1000, PA + 0x5000, 0x1000, Prot::READ).unwrap();
    r.drv.map(dom, 0x4000_0000, 0x8000_0000, 1 << 21, Prot::RW).unwrap();
    assert_eq!(out(&r.vtd, read(RID, IOVA + 0x123)), PA + 0x123);
    assert_eq!(out(&r.vtd, write(RID, IOVA)), PA);
    assert_eq!(out(&r.vtd, read(RID, IOVA + 0x1008)), PA + 0x5008);
    assert_eq!(reason(&r.vtd, write(RID, IOVA + 0x1000)), write_denied);
    assert_eq!(ok(&r.vtd, read(RID, 0x4012_3456)).page_lg2, 21);
    assert_eq!(out(&r.vtd, read(RID, 0x4012_3456)), 0x8012_3456);

    // Unmapped but not flushed: the IOTLB still answers, as the silicon's would.
    assert_eq!(r.drv.unmap(dom, IOVA, 0x2000).unwrap(), 0x2000);
    assert_eq!(out(&r.vtd, read(RID, IOVA + 0x123)), PA + 0x123, "stale until flushed");
    assert_eq!(out(&r.vtd, read(RID, IOVA + 0x1008)), PA + 0x5008, "stale until flushed");
    for v in expect_stale(&r, 2) {
        assert!(v.to_string().contains("IOTLB invalidation, page-selective-within-domain"), "{v}");
    }
    // A page-selective flush of the first page removes only that page.
    r.drv.flush_iotlb(dom, Some((IOVA, 0x1000))).unwrap();
    assert_eq!(reason(&r.vtd, read(RID, IOVA + 0x123)), not_present);
    assert_eq!(out(&r.vtd, read(RID, IOVA + 0x1008)), PA + 0x5008, "outside the flushed page");
    r.drv.flush_iotlb(dom, None).unwrap();
    assert_eq!(reason(&r.vtd, read(RID, IOVA + 0x1008)), not_present);
    assert_eq!(out(&r.vtd, read(RID, 0x4000_0000)), 0x8000_0000, "the 2M page stays");
}

#[test]
fn legacy_second_stage_map_unmap_flush() {
    map_unmap_flush(legacy_rig(), R::ReadDenied, R::WriteDenied);
}

#[test]
fn scalable_second_stage_map_unmap_flush() {
    map_unmap_flush(rig(), R::SmSsEntryNotPresent, R::SmWriteDenied);
}

#[test]
fn a_unit_without_page_selective_invalidation_gets_domain_selective_flushes() {
    let mut r = rig_with(params(|p| p.cap = cap::PSI.with(p.cap, false)), DriverConfig::default());
    let dom = r.drv.alloc_domain(DomainConfig::SecondStage { aw: Some(Aw::Bits39) }).unwrap();
    r.drv.attach(RID, None, PasidConfig::SecondStage { did: dom }).unwrap();
    r.drv.map(dom, IOVA, PA, 0x1000, Prot::RW).unwrap();
    r.drv.map(dom, IOVA + 0x1000, PA, 0x1000, Prot::RW).unwrap();
    out(&r.vtd, read(RID, IOVA));
    out(&r.vtd, read(RID, IOVA + 0x1000));
    r.drv.unmap(dom, IOVA, 0x2000).unwrap();
    r.drv.flush_iotlb(dom, Some((IOVA, 0x1000))).unwrap();
    assert_eq!(reason(&r.vtd, read(RID, IOVA + 0x1000)), R::SmSsEntryNotPresent, "the domain went");
}

#[test]
fn every_upper_and_lower_devfn_and_bus_gets_its_own_context_entry() {
    for mut r in [rig(), legacy_rig()] {
        let a = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
        let b = r.drv.alloc_domain(DomainConfig::SecondStage { aw: Some(Aw::Bits57) }).unwrap();
        r.drv.map(a, IOVA, PA, 0x1000, Prot::RW).unwrap();
        r.drv.map(b, IOVA, PA + 0x10_0000, 0x1000, Prot::RW).unwrap();
        r.drv.attach(RID, None, PasidConfig::SecondStage { did: a }).unwrap();
        r.drv.attach(RID_UPPER, None, PasidConfig::SecondStage { did: b }).unwrap();
        r.drv.attach(0xff07, None, PasidConfig::SecondStage { did: b }).unwrap();
        assert_eq!(out(&r.vtd, read(RID, IOVA)), PA);
        assert_eq!(out(&r.vtd, read(RID_UPPER, IOVA)), PA + 0x10_0000);
        assert_eq!(out(&r.vtd, read(0xff07, IOVA)), PA + 0x10_0000);
        assert!(r.vtd.translate(&read(0x0311, IOVA)).is_err(), "a neighbour is not attached");
    }
}

#[test]
fn replacing_an_attachment_takes_effect_at_once() {
    for mut r in [rig(), legacy_rig()] {
        let a = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
        let b = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
        r.drv.map(a, IOVA, PA, 0x1000, Prot::RW).unwrap();
        r.drv.map(b, IOVA, PA + 0x3000, 0x1000, Prot::RW).unwrap();
        r.drv.attach(RID, None, PasidConfig::SecondStage { did: a }).unwrap();
        assert_eq!(out(&r.vtd, read(RID, IOVA)), PA, "cached now");
        r.drv.attach(RID, None, PasidConfig::SecondStage { did: b }).unwrap();
        assert_eq!(out(&r.vtd, read(RID, IOVA)), PA + 0x3000, "the old entry was invalidated");
        // The old domain is free to go, the new one is not.
        r.drv.free_domain(a).unwrap();
        assert_eq!(r.drv.free_domain(b), Err(DriverError::DomainAttached(b)));
        r.drv.detach(RID, None).unwrap();
        let blocked = if r.drv.mode() == Mode::Legacy {
            R::ContextEntryNotPresent
        } else {
            R::SmPasidEntryNotPresent
        };
        assert_eq!(reason(&r.vtd, read(RID, IOVA)), blocked);
        r.drv.free_domain(b).unwrap();
    }
}

#[test]
fn pass_through_with_and_without_pasid() {
    let mut r = rig();
    r.drv.attach(RID, None, PasidConfig::PassThrough).unwrap();
    r.drv.attach(RID, Some(5), PasidConfig::PassThrough).unwrap();
    assert_eq!(out(&r.vtd, write(RID, PA)), PA);
    assert_eq!(out(&r.vtd, write(RID, PA).with_pasid(5)), PA);
    assert_eq!(reason(&r.vtd, read(RID, PA).with_pasid(6)), R::SmPasidEntryNotPresent);

    let mut l = legacy_rig();
    l.drv.attach(RID, None, PasidConfig::PassThrough).unwrap();
    assert_eq!(out(&l.vtd, write(RID, PA)), PA);
}

#[test]
fn blocked_detaches() {
    for mut r in [rig(), legacy_rig()] {
        r.drv.attach(RID, None, PasidConfig::PassThrough).unwrap();
        assert_eq!(out(&r.vtd, read(RID, PA)), PA);
        r.drv.attach(RID, None, PasidConfig::Blocked).unwrap();
        assert!(r.vtd.translate(&read(RID, PA)).is_err());
        assert_eq!(r.drv.attachment(RID, None), None);
    }
}

#[test]
fn first_stage_domain_with_pasid_and_as_rid_pasid() {
    let mut r = rig();
    let dom = r.drv.alloc_domain(DomainConfig::FirstStage { levels: Fspm::FourLevel }).unwrap();
    r.drv.map(dom, IOVA, PA, 0x1000, Prot::RW).unwrap();
    r.drv.map(dom, 0x4000_0000, 0x8000_0000, 1 << 30, Prot::READ).unwrap();
    r.drv.attach(RID, Some(7), PasidConfig::FirstStage { did: dom }).unwrap();
    assert_eq!(out(&r.vtd, write(RID, IOVA + 8).with_pasid(7)), PA + 8);
    assert_eq!(ok(&r.vtd, read(RID, 0x5000_0000).with_pasid(7)).page_lg2, 30);
    assert_eq!(reason(&r.vtd, write(RID, 0x5000_0000).with_pasid(7)), R::SmWriteDenied);
    // Requests without PASID use RID_PASID, which is not attached yet.
    assert_eq!(reason(&r.vtd, read(RID, IOVA)), R::SmPasidEntryNotPresent);
    r.drv.attach(RID, None, PasidConfig::FirstStage { did: dom }).unwrap();
    assert_eq!(out(&r.vtd, read(RID, IOVA)), PA);

    // Stale until the PASID-based flush, for both PASIDs.
    r.drv.unmap(dom, IOVA, 0x1000).unwrap();
    assert_eq!(out(&r.vtd, read(RID, IOVA).with_pasid(7)), PA);
    assert_eq!(out(&r.vtd, read(RID, IOVA)), PA);
    for v in expect_stale(&r, 2) {
        assert!(v.to_string().contains("PASID-based IOTLB invalidation"), "{v}");
    }
    r.drv.flush_iotlb(dom, Some((IOVA, 0x1000))).unwrap();
    assert_eq!(reason(&r.vtd, read(RID, IOVA).with_pasid(7)), R::SmFsEntryNotPresent);
    assert_eq!(reason(&r.vtd, read(RID, IOVA)), R::SmFsEntryNotPresent);
    assert_eq!(out(&r.vtd, read(RID, 0x4000_1000).with_pasid(7)), 0x8000_1000);
}

/// A process's page table, built by someone else (here pgtable, into guest RAM's host pages as
/// if a CPU's), bound to a PASID for SVA.
#[test]
fn first_stage_external_tables_for_sva() {
    let mut r = rig();
    let mut cpu_frames = FrameAllocator::new(&[(Hpa(GUEST_RAM_HPA), 0x10_0000)]);
    let cpu = X86Paging::create(&*r.mem, &mut cpu_frames, x86::Levels::Four).unwrap();
    let user = X86Attrs::ALL;
    let kernel = X86Attrs { user: false, ..X86Attrs::ALL };
    cpu.map(&*r.mem, &mut cpu_frames, 0x7f00_0000_0000, 0x2_0000_0000, 12, user).unwrap();
    cpu.map(&*r.mem, &mut cpu_frames, 0x7f00_0000_1000, 0x2_0000_1000, 12, kernel).unwrap();
    let did = r.drv.alloc_domain(DomainConfig::External).unwrap();
    let sva = PasidConfig::FirstStageExternal {
        did,
        fs_root: cpu.root,
        levels: Fspm::FourLevel,
        sre: true,
    };
    r.drv.attach(RID, Some(0x99), sva).unwrap();
    let req = read(RID, 0x7f00_0000_0010).with_pasid(0x99);
    assert_eq!(out(&r.vtd, req), 0x2_0000_0010);
    let sup = sviommu_vtd::hw::DmaRequest {
        access: Access::READ.privileged(),
        ..read(RID, 0x7f00_0000_1000)
    };
    assert_eq!(out(&r.vtd, sup.with_pasid(0x99)), 0x2_0000_1000);
    assert_eq!(reason(&r.vtd, read(RID, 0x7f00_0000_1000).with_pasid(0x99)), R::SmUserAccessDenied);
    assert_eq!(r.drv.table_root(did), None, "the driver owns no tables there");
}

/// Nested: a guest's first stage (in guest RAM, GPAs) over a second-stage parent that maps
/// guest RAM; the unit translates GVA -> GPA -> HPA.
#[test]
fn nested_guest_first_stage_over_a_second_stage_parent() {
    let mut r = rig();
    let parent = r.drv.alloc_domain(DomainConfig::SecondStage { aw: Some(Aw::Bits48) }).unwrap();
    for gpa in (0..GUEST_RAM_LEN).step_by(1 << 21) {
        r.drv.map(parent, gpa, GUEST_RAM_HPA + gpa, 1 << 21, Prot::RW).unwrap();
    }
    let ram = guest_ram(&r.mem);
    let mut guest_frames = FrameAllocator::new(&[(Gpa(0), 0x40_0000)]);
    let gfs = X86Paging::create(&ram, &mut guest_frames, x86::Levels::Four).unwrap();
    gfs.map(&ram, &mut guest_frames, 0x7000_0000, 0x80_0000, 12, X86Attrs::ALL).unwrap();
    gfs.map(&ram, &mut guest_frames, 0x7000_1000, 0xa0_0000, 12, X86Attrs::ALL).unwrap();
    let s1 = r.drv.alloc_domain(DomainConfig::External).unwrap();
    let nested = |s1_did| PasidConfig::Nested {
        parent,
        s1_did,
        fs_root_gpa: gfs.root,
        levels: Fspm::FourLevel,
        sre: false,
    };
    r.drv.attach(RID, Some(3), nested(Some(s1))).unwrap();
    r.drv.attach(RID_UPPER, None, nested(None)).unwrap();
    assert_eq!(out(&r.vtd, write(RID, 0x7000_0040).with_pasid(3)), GUEST_RAM_HPA + 0x80_0040);
    assert_eq!(out(&r.vtd, read(RID_UPPER, 0x7000_1040)), GUEST_RAM_HPA + 0xa0_0040);

    // The host takes a guest page away: stale until the parent is flushed, which reaches the
    // nested translations tagged with the guest's DID too.
    r.drv.unmap(parent, 0x80_0000, 1 << 21).unwrap();
    assert_eq!(out(&r.vtd, read(RID, 0x7000_0040).with_pasid(3)), GUEST_RAM_HPA + 0x80_0040);
    expect_stale(&r, 1);
    r.drv.flush_iotlb(parent, Some((0x80_0000, 1 << 21))).unwrap();
    assert_eq!(reason(&r.vtd, read(RID, 0x7000_0040).with_pasid(3)), R::SmSsEntryNotPresent);
    assert_eq!(out(&r.vtd, read(RID_UPPER, 0x7000_1040)), GUEST_RAM_HPA + 0xa0_0040);
    // Both domains are held by the attachments.
    assert_eq!(r.drv.free_domain(s1), Err(DriverError::DomainAttached(s1)));
    assert_eq!(r.drv.free_domain(parent), Err(DriverError::DomainAttached(parent)));
}

#[test]
fn caching_mode_entries_made_present_are_invalidated_too() {
    let mut r = rig_with(params(|p| p.cap = cap::CM.with(p.cap, true)), DriverConfig::default());
    let dom = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    r.drv.attach(RID, None, PasidConfig::SecondStage { did: dom }).unwrap();
    // Not present, and cached as such under caching mode.
    assert_eq!(reason(&r.vtd, read(RID + 1, IOVA)), R::SmContextEntryNotPresent);
    assert_eq!(reason(&r.vtd, read(RID, IOVA)), R::SmSsEntryNotPresent);
    r.drv.attach(RID + 1, None, PasidConfig::SecondStage { did: dom }).unwrap();
    r.drv.map(dom, IOVA, PA, 0x1000, Prot::RW).unwrap();
    assert_eq!(out(&r.vtd, read(RID, IOVA)), PA);
    assert_eq!(out(&r.vtd, read(RID + 1, IOVA)), PA);

    let mut l = rig_with(
        params(|p| p.cap = cap::CM.with(p.cap, true)),
        DriverConfig { mode: ModeChoice::Legacy, ..Default::default() },
    );
    let dom = l.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    l.drv.attach(RID, None, PasidConfig::SecondStage { did: dom }).unwrap();
    assert_eq!(reason(&l.vtd, read(RID + 1, IOVA)), R::ContextEntryNotPresent);
    l.drv.attach(RID + 1, None, PasidConfig::PassThrough).unwrap();
    assert_eq!(out(&l.vtd, read(RID + 1, IOVA)), IOVA);
}

#[test]
fn device_tlbs_are_invalidated_on_flush_and_teardown() {
    let dt = params(|p| p.ecap = ecap::DT.with(p.ecap, true));
    for config in
        [DriverConfig::default(), DriverConfig { mode: ModeChoice::Legacy, ..Default::default() }]
    {
        let mut r = rig_with(dt, config);
        r.drv.set_device_features(RID, DeviceFeatures { ats: true, page_requests: false }).unwrap();
        let dom = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
        r.drv.attach(RID, None, PasidConfig::SecondStage { did: dom }).unwrap();
        assert_eq!(
            r.drv.set_device_features(RID, DeviceFeatures::default()),
            Err(DriverError::DeviceInUse(RID))
        );
        r.vtd.drain_outputs();
        r.drv.flush_iotlb(dom, Some((0x20_0000, 0x4000))).unwrap();
        let outs = r.vtd.drain_outputs();
        let [Output::DevTlbInvalidation(inv)] = outs.as_slice() else { panic!("{outs:?}") };
        assert_eq!((inv.sid, inv.addr, inv.size_lg2, inv.pasid), (RID, 0x20_0000, 14, None));
        r.drv.detach(RID, None).unwrap();
        let outs = r.vtd.drain_outputs();
        let [Output::DevTlbInvalidation(inv)] = outs.as_slice() else { panic!("{outs:?}") };
        assert_eq!(inv.size_lg2, 64, "everything");
    }
}

#[test]
fn guest_invalidation_requests_become_descriptors_and_one_wait() {
    use sviommu_vtd::driver::InvalidateRequest as I;
    let mut r = rig_with(params(|p| p.ecap = ecap::DT.with(p.ecap, true)), DriverConfig::default());
    let dom = r.drv.alloc_domain(DomainConfig::FirstStage { levels: Fspm::FourLevel }).unwrap();
    r.drv.map(dom, IOVA, PA, 0x1000, Prot::RW).unwrap();
    r.drv.attach(RID, Some(9), PasidConfig::FirstStage { did: dom }).unwrap();
    assert_eq!(out(&r.vtd, read(RID, IOVA).with_pasid(9)), PA);
    r.drv.unmap(dom, IOVA, 0x1000).unwrap();
    let before = r.drv.stats();
    r.vtd.drain_outputs();
    r.drv
        .invalidate(&[
            I::PasidIotlb { did: dom.0, pasid: 9, range: Some((IOVA, 0x1000)), ih: true },
            I::PasidCache { did: dom.0, pasid: Some(9) },
            I::DevTlb { sid: RID, pasid: Some(9), range: None },
        ])
        .unwrap();
    let after = r.drv.stats();
    assert_eq!((after.descriptors - before.descriptors, after.waits - before.waits), (4, 1));
    assert_eq!(reason(&r.vtd, read(RID, IOVA).with_pasid(9)), R::SmFsEntryNotPresent);
    assert!(
        matches!(r.vtd.drain_outputs().as_slice(), [Output::DevTlbInvalidation(d)] if d.pasid == Some(9))
    );
}

/// The README's sanitizer report is this sequence's: a legacy driver unmaps a page and a device
/// reads it before the flush, under strict.
#[test]
fn the_readme_shows_a_real_sanitizer_report() {
    let config =
        DriverConfig { mode: sviommu_vtd::driver::ModeChoice::Legacy, ..Default::default() };
    let strict = VtdParams { profile: sviommu_vtd::hw::Profile::STRICT, ..VtdParams::default() };
    let mut r = rig_with(strict, config);
    let dom = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    r.drv.attach(RID, None, PasidConfig::SecondStage { did: dom }).unwrap();
    r.drv.map(dom, IOVA, PA, 0x1000, Prot::RW).unwrap();
    assert_eq!(out(&r.vtd, read(RID, IOVA)), PA);
    r.drv.unmap(dom, IOVA, 0x1000).unwrap();
    assert_eq!(out(&r.vtd, read(RID, IOVA)), PA, "stale: the driver has not flushed");
    let v = r.vtd.violations();
    assert_eq!(v.len(), 1);
    let report = v[0].to_string();
    let readme = include_str!("../../../README.md");
    assert!(readme.contains(&report), "README.md should show:\n{report}");
    r.drv.flush_iotlb(dom, Some((IOVA, 0x1000))).unwrap();
    assert_eq!(reason(&r.vtd, read(RID, IOVA)), R::ReadDenied);
}

//! Every documented call and every errno of the issue, on both architectures, through the
//! hardware models: a DMA decides whether a call took effect, and every refused call leaves
//! every byte of host memory and every unit register as it was.

use sviommu_core::driver::{DmaAccess, DmaFault, HwInfo};
use sviommu_core::topology::DeviceId;
use sviommu_core::Model;
use sviommu_smmuv3::spec::ste::{Eats, S1Fmt, StreamConfig};
use sviommu_smmuv3::spec::{Command, Granule, Opcode, Ste};
use sviommu_uapi::data::{data_type, hwpt_flags, map_flags, TYPE_ARM_SMMUV3, VTD_INV_FLAGS_LEAF};
use sviommu_uapi::machine::{Machine, GUEST_RAM_HPA, GUEST_RAM_LEN, VMM_VA};
use sviommu_uapi::{
    Errno, HwptAlloc, HwptData, InvalidateArray, Iommufd, ObjectId, UapiError, VtdS1Invalidate,
};

const RW: u32 = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;

/// Runs a call that must be refused; checks the hardware-visible state did not change and
/// returns the error.
fn refused<T: std::fmt::Debug>(
    m: &mut Machine,
    call: impl FnOnce(&mut Iommufd) -> Result<T, UapiError>,
) -> UapiError {
    let before = m.fd.hardware_snapshot();
    let e = call(&mut m.fd).expect_err("the call was accepted");
    let after = m.fd.hardware_snapshot();
    assert!(before.memory == after.memory, "{e}: host memory changed");
    assert!(before.registers == after.registers, "{e}: registers changed");
    e
}

fn errno<T: std::fmt::Debug>(
    m: &mut Machine,
    call: impl FnOnce(&mut Iommufd) -> Result<T, UapiError>,
) -> Errno {
    refused(m, call).errno()
}

/// The output address, or the architected code (`None`: blocked where the architecture records
/// no fault, such as an SMMUv3 STE with Config abort).
fn dma(m: &Machine, dev: &DeviceId, pasid: Option<u32>, addr: u64) -> Result<u64, Option<u16>> {
    m.fd.dma(dev, pasid, addr, DmaAccess::Write).unwrap().map_err(|f| match f {
        DmaFault::Fault(r) => Some(r.code),
        DmaFault::Terminated { .. } | DmaFault::NotSeen { .. } => None,
    })
}

struct Rig {
    m: Machine,
    devs: Vec<DeviceId>,
    ids: Vec<ObjectId>,
}

fn rig(model: Model) -> Rig {
    let mut m = Machine::new(model).unwrap();
    let devs = m.devices();
    let ids = devs.iter().map(|d| m.fd.device_bind(d).unwrap()).collect();
    Rig { m, devs, ids }
}

fn paging(r: &mut Rig, ioas: ObjectId, flags: u32) -> ObjectId {
    r.m.fd
        .hwpt_alloc(&HwptAlloc { flags, dev_id: r.ids[0], pt_id: ioas, ..Default::default() })
        .unwrap()
}

/// A reserved region every device of the model has.
fn reserved(model: Model) -> u64 {
    match model {
        Model::Vtd => 0xfee0_0000,
        Model::Smmuv3 => 0x0800_0000,
    }
}

fn ioas_calls(model: Model) {
    let mut r = rig(model);
    let ioas = r.m.fd.ioas_alloc().unwrap();
    // A fresh IOAS allows everything.
    assert_eq!(r.m.fd.ioas_iova_ranges(ioas).unwrap().ranges, [(0, u64::MAX)]);
    let h1 = paging(&mut r, ioas, 0);
    let ranges = r.m.fd.ioas_iova_ranges(ioas).unwrap();
    assert_eq!(ranges.ranges, [(0, (1 << 48) - 1)], "the HWPT's aperture");
    assert_eq!(ranges.alignment, 4096);
    r.m.fd.attach(r.ids[0], None, h1).unwrap();
    // The device's reserved region leaves the IOAS.
    let rsv = reserved(model);
    let ranges = r.m.fd.ioas_iova_ranges(ioas).unwrap().ranges;
    assert!(ranges.iter().all(|(s, l)| rsv < *s || rsv > *l), "{ranges:x?}");
    assert!(ranges.iter().any(|(s, _)| *s == 0));
    // Map a page of the VMM's memory; DMA lands in its host page.
    let iova = r.m.fd.ioas_map(ioas, RW, VMM_VA + 0x3000, 0x2000, 0x10_0000).unwrap();
    assert_eq!(iova, 0x10_0000);
    assert_eq!(dma(&r.m, &r.devs[0], None, 0x10_1008), Ok(GUEST_RAM_HPA + 0x4008));
    // A second HWPT of the IOAS gets the mappings made before it, and later ones.
    let h2 = paging(&mut r, ioas, 0);
    r.m.fd.attach(r.ids[1], None, h2).unwrap();
    assert_eq!(dma(&r.m, &r.devs[1], None, 0x10_0000), Ok(GUEST_RAM_HPA + 0x3000));
    let auto =
        r.m.fd
            .ioas_map(ioas, map_flags::READABLE | map_flags::WRITEABLE, VMM_VA, 0x1000, 0)
            .unwrap();
    assert_eq!(auto, 0, "the first free IOVA");
    assert_eq!(dma(&r.m, &r.devs[0], None, 0), Ok(GUEST_RAM_HPA));
    assert_eq!(dma(&r.m, &r.devs[1], None, 0), Ok(GUEST_RAM_HPA));
    // Copy into another IOAS, and through it into its HWPT.
    let ioas2 = r.m.fd.ioas_alloc().unwrap();
    let h3 = paging(&mut r, ioas2, 0);
    r.m.fd.attach(r.ids[2], None, h3).unwrap();
    r.m.fd.ioas_copy(ioas2, ioas, RW, 0x2000, 0x80_0000, 0x10_0000).unwrap();
    assert_eq!(dma(&r.m, &r.devs[2], None, 0x80_1000), Ok(GUEST_RAM_HPA + 0x4000));
    // Refusals.
    let e = errno(&mut r.m, |fd| fd.ioas_map(ioas, RW, VMM_VA, 0x1000, rsv));
    assert_eq!(e, Errno::EINVAL, "a reserved region");
    assert_eq!(
        errno(&mut r.m, |fd| fd.ioas_map(ioas, RW, VMM_VA, 0x1000, 0x10_1000)),
        Errno::EEXIST
    );
    let e = errno(&mut r.m, |fd| fd.ioas_map(ioas, RW, VMM_VA + GUEST_RAM_LEN, 0x1000, 0x20_0000));
    assert_eq!(e, Errno::EFAULT, "not the VMM's memory");
    assert_eq!(
        errno(&mut r.m, |fd| fd.ioas_map(ioas, RW | 0x100, VMM_VA, 0x1000, 0x20_0000)),
        Errno::EOPNOTSUPP
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.ioas_map(ioas, RW, VMM_VA, 0x1000, 0x20_0800)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.ioas_map(ioas, RW, VMM_VA, 0x1000, 1 << 48)),
        Errno::EINVAL,
        "beyond the aperture"
    );
    assert_eq!(errno(&mut r.m, |fd| fd.ioas_map(99, RW, VMM_VA, 0x1000, 0)), Errno::ENOENT);
    assert_eq!(
        errno(&mut r.m, |fd| fd.ioas_unmap(ioas, 0x10_0000, 0x1000)),
        Errno::ENOENT,
        "splits a mapping"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.ioas_unmap(ioas, 0x70_0000, 0x1000)),
        Errno::ENOENT,
        "nothing there"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.ioas_copy(ioas2, ioas, RW, 0x1000, 0x90_0000, 0x60_0000)),
        Errno::ENOENT
    );
    // A device whose reserved region an IOAS maps cannot join it.
    let ioas3 = r.m.fd.ioas_alloc().unwrap();
    r.m.fd.ioas_map(ioas3, RW, VMM_VA, 0x1000, rsv).unwrap();
    let h4 = paging(&mut r, ioas3, 0);
    assert_eq!(errno(&mut r.m, |fd| fd.attach(r.ids[3], None, h4)), Errno::EADDRINUSE);
    // Unmap: DMA faults again.
    assert_eq!(r.m.fd.ioas_unmap(ioas, 0x10_0000, 0x2000).unwrap(), 0x2000);
    assert!(dma(&r.m, &r.devs[0], None, 0x10_1008).is_err());
    assert!(dma(&r.m, &r.devs[1], None, 0x10_1008).is_err());
    assert_eq!(r.m.fd.ioas_unmap(ioas, 0, u64::MAX).unwrap(), 0x1000, "everything");
}

fn hw_info(model: Model) {
    let r = rig(model);
    let info = r.m.fd.get_hw_info(r.ids[0]).unwrap();
    assert_eq!(info.model, model);
    assert_eq!(
        info.max_pasid_log2,
        match model {
            Model::Vtd => 20,
            Model::Smmuv3 => 6,
        }
    );
    assert_eq!(r.m.fd.get_hw_info(r.ids[3]).unwrap().max_pasid_log2, 0, "no PASID");
    let drv = r.m.fd.iommu().driver(sviommu_uapi::machine::UNIT).unwrap();
    match (model, info.data) {
        (Model::Vtd, HwInfo::Vtd { cap, ecap }) => {
            let u: &sviommu_core::arch::vtd::VtdUnit = drv.as_any().downcast_ref().unwrap();
            assert_eq!(cap, u.hw().mmio_read(0x08, 8));
            assert_eq!(ecap, u.hw().mmio_read(0x10, 8));
            assert_ne!(ecap, 0);
        }
        (Model::Smmuv3, HwInfo::Smmuv3 { idr, .. }) => {
            let u: &sviommu_core::arch::smmuv3::SmmuUnit = drv.as_any().downcast_ref().unwrap();
            for (i, v) in (0u64..).zip(idr) {
                assert_eq!(u64::from(v), u.hw().mmio_read(4 * i, 4));
            }
            assert_ne!(idr[0], 0);
        }
        other => panic!("{other:?}"),
    }
    let mut m = r.m;
    assert_eq!(errno(&mut m, |fd| fd.get_hw_info(77)), Errno::ENOENT);
}

/// The rules of `IOMMU_DESTROY` and PASID attach, the same on both architectures.
fn destroy_and_pasid_rules(model: Model) {
    let mut r = rig(model);
    let ioas = r.m.fd.ioas_alloc().unwrap();
    r.m.fd.ioas_map(ioas, RW, VMM_VA, 0x10_0000, 0).unwrap();
    let plain = paging(&mut r, ioas, 0);
    let with_pasid = paging(&mut r, ioas, hwpt_flags::PASID);
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(ioas)), Errno::EBUSY, "an IOAS with HWPTs");
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(r.ids[0])), Errno::EBUSY, "a bound device");
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(1000)), Errno::ENOENT);
    // PASID attach needs a PASID-capable HWPT and a PASID the device can send.
    assert_eq!(errno(&mut r.m, |fd| fd.attach(r.ids[0], Some(5), plain)), Errno::EINVAL);
    assert_eq!(
        errno(&mut r.m, |fd| fd.attach(r.ids[2], Some(16), with_pasid)),
        Errno::EINVAL,
        "4 bits"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.attach(r.ids[3], Some(1), with_pasid)),
        Errno::EINVAL,
        "no PASID"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.attach(r.ids[0], Some(0), with_pasid)),
        Errno::EINVAL,
        "PASID 0 is the RID"
    );
    // (SMMUv3 needs the RID on a CD table before a PASID can be attached.)
    r.m.fd.attach(r.ids[2], None, with_pasid).unwrap();
    r.m.fd.attach(r.ids[2], Some(15), with_pasid).unwrap();
    assert_eq!(dma(&r.m, &r.devs[2], Some(15), 0x5000), Ok(GUEST_RAM_HPA + 0x5000));
    assert_eq!(
        errno(&mut r.m, |fd| fd.attach(r.ids[2], Some(15), with_pasid)),
        Errno::EBUSY,
        "a second attach"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.attach(r.ids[2], None, with_pasid)),
        Errno::EINVAL,
        "attached: replace instead"
    );
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(with_pasid)), Errno::EBUSY, "attached");
    // With PASIDs attached, the RID needs a PASID-capable HWPT: a failed replace keeps the
    // old HWPT.
    assert_eq!(errno(&mut r.m, |fd| fd.replace(r.ids[2], None, plain)), Errno::EINVAL);
    assert_eq!(r.m.fd.attached_hwpt(r.ids[2], None), Some(with_pasid));
    assert_eq!(dma(&r.m, &r.devs[2], None, 0x5000), Ok(GUEST_RAM_HPA + 0x5000));
    assert_eq!(
        errno(&mut r.m, |fd| fd.replace(r.ids[1], None, plain)),
        Errno::EINVAL,
        "nothing to replace"
    );
    let before = r.m.fd.hardware_snapshot();
    r.m.fd.detach(r.ids[1], Some(3)).unwrap();
    assert!(before == r.m.fd.hardware_snapshot(), "detaching nothing does nothing");
    // Replace, then detach everything, then destroy.
    r.m.fd.attach(r.ids[1], None, plain).unwrap();
    let ioas2 = r.m.fd.ioas_alloc().unwrap();
    r.m.fd.ioas_map(ioas2, RW, VMM_VA + 0x20_0000, 0x10_0000, 0).unwrap();
    let other = paging(&mut r, ioas2, 0);
    r.m.fd.replace(r.ids[1], None, other).unwrap();
    assert_eq!(dma(&r.m, &r.devs[1], None, 0x5000), Ok(GUEST_RAM_HPA + 0x20_5000));
    r.m.fd.detach(r.ids[2], Some(15)).unwrap();
    assert!(dma(&r.m, &r.devs[2], Some(15), 0x5000).is_err());
    r.m.fd.detach(r.ids[2], None).unwrap();
    assert!(dma(&r.m, &r.devs[2], None, 0x5000).is_err());
    r.m.fd.destroy(with_pasid).unwrap();
    r.m.fd.destroy(plain).unwrap();
    r.m.fd.destroy(ioas).unwrap();
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(ioas)), Errno::ENOENT);
    // Flags and data of paging HWPTs.
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&HwptAlloc {
            flags: 1 << 9,
            dev_id: r.ids[0],
            pt_id: ioas2,
            ..Default::default()
        })),
        Errno::EOPNOTSUPP
    );
    let data = HwptData { data_type: 7, bytes: vec![1; 16] };
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&HwptAlloc {
            dev_id: r.ids[0],
            pt_id: ioas2,
            data,
            ..Default::default()
        })),
        Errno::EOPNOTSUPP,
        "data on an IOAS"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&HwptAlloc {
            dev_id: r.ids[0],
            pt_id: r.ids[1],
            ..Default::default()
        })),
        Errno::EINVAL,
        "a device is no page table"
    );
    // Fault queues: allocation, in-use and ENOENT rules.
    let fault = r.m.fd.fault_queue_alloc(0).unwrap();
    assert_eq!(errno(&mut r.m, |fd| fd.fault_queue_alloc(1)), Errno::EOPNOTSUPP);
    let h =
        r.m.fd
            .hwpt_alloc(&HwptAlloc {
                flags: hwpt_flags::FAULT_ID_VALID,
                dev_id: r.ids[0],
                pt_id: ioas2,
                fault_id: fault,
                ..Default::default()
            })
            .unwrap();
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(fault)), Errno::EBUSY);
    let e = errno(&mut r.m, |fd| {
        fd.hwpt_alloc(&HwptAlloc {
            flags: hwpt_flags::FAULT_ID_VALID,
            dev_id: r.ids[0],
            pt_id: ioas2,
            fault_id: h,
            ..Default::default()
        })
    });
    assert_eq!(e, Errno::ENOENT, "not a fault queue");
    r.m.fd.destroy(h).unwrap();
    r.m.fd.destroy(fault).unwrap();
}

/// VT-d: a NEST_PARENT HWPT over the guest's RAM, a nested HWPT with the guest's first stage
/// attached per (device, PASID), invalidated through the nested HWPT's ID.
#[test]
fn vtd_nested() {
    let mut r = rig(Model::Vtd);
    let ioas = r.m.fd.ioas_alloc().unwrap();
    r.m.fd.ioas_map(ioas, RW, VMM_VA, GUEST_RAM_LEN, 0).unwrap();
    let parent = paging(&mut r, ioas, hwpt_flags::NEST_PARENT);
    let plain = paging(&mut r, ioas, 0);
    let root = r.m.guest_s1(&[(0x4000_0000, 0x3000), (0x4000_1000, 0x4000)]).unwrap();
    let s1 = HwptData::vtd_s1(0, root, 48);
    let alloc = |pt_id, data: HwptData, flags| HwptAlloc {
        flags,
        dev_id: r.ids[0],
        pt_id,
        data,
        fault_id: 0,
    };
    let nested = r.m.fd.hwpt_alloc(&alloc(parent, s1.clone(), hwpt_flags::PASID)).unwrap();
    // Refusals of nested allocation.
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(plain, s1.clone(), 0))),
        Errno::EINVAL,
        "not NEST_PARENT"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(nested, s1.clone(), 0))),
        Errno::EINVAL,
        "nested on nested"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(parent, s1.clone().with_len(20), 0))),
        Errno::EINVAL,
        "short data"
    );
    let mut trailing = s1.clone().with_len(32);
    trailing.bytes[30] = 1;
    assert_eq!(errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(parent, trailing, 0))), Errno::E2BIG);
    let other_type = HwptData { data_type: data_type::ARM_SMMUV3, ..s1.clone() };
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(parent, other_type, 0))),
        Errno::EOPNOTSUPP,
        "data type"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(parent, HwptData::vtd_s1(0, root, 39), 0))),
        Errno::EINVAL,
        "width"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(parent, s1.clone(), hwpt_flags::NEST_PARENT))),
        Errno::EOPNOTSUPP,
        "flags"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.viommu_alloc(0, TYPE_ARM_SMMUV3, r.ids[0], parent)),
        Errno::EOPNOTSUPP,
        "no vIOMMU on VT-d"
    );
    // Attach the guest's stage 1 to (device, PASID 5): GVA -> GPA -> HPA.
    r.m.fd.attach(r.ids[0], Some(5), nested).unwrap();
    assert_eq!(dma(&r.m, &r.devs[0], Some(5), 0x4000_0123), Ok(GUEST_RAM_HPA + 0x3123));
    assert_eq!(dma(&r.m, &r.devs[0], Some(5), 0x4000_1123), Ok(GUEST_RAM_HPA + 0x4123));
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(parent)), Errno::EBUSY, "a parent in use");
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(nested)), Errno::EBUSY, "attached");
    // The guest unmaps: stale until it invalidates through the nested HWPT.
    r.m.guest_unmap(root, 0x4000_0000, 0x1000).unwrap();
    assert_eq!(dma(&r.m, &r.devs[0], Some(5), 0x4000_0123), Ok(GUEST_RAM_HPA + 0x3123), "stale");
    let good = VtdS1Invalidate { addr: 0x4000_0000, npages: 1, flags: VTD_INV_FLAGS_LEAF };
    let bad_flags = VtdS1Invalidate { flags: 0x10, ..good };
    let e = refused(&mut r.m, |fd| fd.invalidate(nested, &InvalidateArray::vtd_s1(&[bad_flags])));
    assert!(matches!(e, UapiError::Entry { handled: 0, .. }), "{e}");
    assert_eq!(e.errno(), Errno::EOPNOTSUPP);
    let unaligned = VtdS1Invalidate { addr: 0x4000_0800, ..good };
    let e = r.m.fd.invalidate(nested, &InvalidateArray::vtd_s1(&[good, unaligned])).unwrap_err();
    assert!(matches!(e, UapiError::Entry { handled: 1, .. }), "{e}");
    assert_eq!(e.errno(), Errno::EINVAL);
    assert!(dma(&r.m, &r.devs[0], Some(5), 0x4000_0123).is_err(), "the first entry was handled");
    assert_eq!(
        dma(&r.m, &r.devs[0], Some(5), 0x4000_1123),
        Ok(GUEST_RAM_HPA + 0x4123),
        "not selected"
    );
    let all = VtdS1Invalidate { addr: 0, npages: u64::MAX, flags: 0 };
    assert_eq!(r.m.fd.invalidate(nested, &InvalidateArray::vtd_s1(&[all])).unwrap(), 1);
    let wrong = InvalidateArray { data_type: 1, ..InvalidateArray::vtd_s1(&[all]) };
    assert_eq!(errno(&mut r.m, |fd| fd.invalidate(nested, &wrong)), Errno::EINVAL);
    assert_eq!(
        errno(&mut r.m, |fd| fd.invalidate(parent, &InvalidateArray::vtd_s1(&[all]))),
        Errno::EINVAL,
        "a paging HWPT"
    );
    // Detach, destroy in order.
    r.m.fd.detach(r.ids[0], Some(5)).unwrap();
    assert!(dma(&r.m, &r.devs[0], Some(5), 0x4000_1123).is_err());
    r.m.fd.destroy(nested).unwrap();
    r.m.fd.destroy(parent).unwrap();
}

/// VT-d: a nested HWPT attached to the device itself (its RID_PASID entry, as Linux's
/// `intel_nested_attach_dev()`): DMA without PASID goes through both stages, the guest's
/// invalidation through the nested HWPT takes effect, refused calls change nothing.
#[test]
fn vtd_nested_rid() {
    let mut r = rig(Model::Vtd);
    let ioas = r.m.fd.ioas_alloc().unwrap();
    r.m.fd.ioas_map(ioas, RW, VMM_VA, GUEST_RAM_LEN, 0).unwrap();
    let parent = paging(&mut r, ioas, hwpt_flags::NEST_PARENT);
    let root = r.m.guest_s1(&[(0x4000_0000, 0x3000), (0x4000_1000, 0x4000)]).unwrap();
    let other = r.m.guest_s1(&[(0x4000_0000, 0x5000)]).unwrap();
    let alloc = |root| HwptAlloc {
        flags: hwpt_flags::PASID,
        dev_id: r.ids[0],
        pt_id: parent,
        data: HwptData::vtd_s1(0, root, 48),
        fault_id: 0,
    };
    let (nested, nested2) =
        (r.m.fd.hwpt_alloc(&alloc(root)).unwrap(), r.m.fd.hwpt_alloc(&alloc(other)).unwrap());
    // Device 0 has ATS: the device-TLB invalidations are sent too.
    for dev in [0, 1] {
        r.m.fd.attach(r.ids[dev], None, nested).unwrap();
        assert_eq!(dma(&r.m, &r.devs[dev], None, 0x4000_0123), Ok(GUEST_RAM_HPA + 0x3123));
        assert_eq!(dma(&r.m, &r.devs[dev], None, 0x4000_1123), Ok(GUEST_RAM_HPA + 0x4123));
        // The interrupt window is still not DMA, and a GVA the guest did not map faults
        // (first-stage not present, 71h).
        assert_eq!(dma(&r.m, &r.devs[dev], None, 0x5000_0000), Err(Some(0x71)));
    }
    // A PASID beside the nested RID: the RID's HWPT is PASID-capable.
    r.m.fd.attach(r.ids[0], Some(7), nested2).unwrap();
    assert_eq!(dma(&r.m, &r.devs[0], Some(7), 0x4000_0123), Ok(GUEST_RAM_HPA + 0x5123));
    // Refusals change nothing.
    assert_eq!(errno(&mut r.m, |fd| fd.attach(r.ids[0], None, nested2)), Errno::EINVAL);
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(nested)), Errno::EBUSY, "attached");
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(parent)), Errno::EBUSY, "a parent in use");
    let bad = VtdS1Invalidate { addr: 0x4000_0800, npages: 1, flags: 0 };
    let e = refused(&mut r.m, |fd| fd.invalidate(nested, &InvalidateArray::vtd_s1(&[bad])));
    assert!(matches!(e, UapiError::Entry { handled: 0, .. }), "{e}");
    // The guest unmaps: stale until it invalidates through the nested HWPT; then only the
    // page it named goes, for both devices, and PASID 7's HWPT is untouched.
    r.m.guest_unmap(root, 0x4000_0000, 0x1000).unwrap();
    r.m.guest_unmap(other, 0x4000_0000, 0x1000).unwrap();
    for dev in [0, 1] {
        assert_eq!(dma(&r.m, &r.devs[dev], None, 0x4000_0123), Ok(GUEST_RAM_HPA + 0x3123));
    }
    let good = VtdS1Invalidate { addr: 0x4000_0000, npages: 1, flags: VTD_INV_FLAGS_LEAF };
    assert_eq!(r.m.fd.invalidate(nested, &InvalidateArray::vtd_s1(&[good])).unwrap(), 1);
    for dev in [0, 1] {
        assert_eq!(dma(&r.m, &r.devs[dev], None, 0x4000_0123), Err(Some(0x71)));
        assert_eq!(dma(&r.m, &r.devs[dev], None, 0x4000_1123), Ok(GUEST_RAM_HPA + 0x4123));
    }
    assert_eq!(dma(&r.m, &r.devs[0], Some(7), 0x4000_0123), Ok(GUEST_RAM_HPA + 0x5123), "stale");
    // Everything: the guest's whole first stage at RID_PASID.
    r.m.guest_unmap(root, 0x4000_1000, 0x1000).unwrap();
    let all = VtdS1Invalidate { addr: 0, npages: u64::MAX, flags: 0 };
    assert_eq!(r.m.fd.invalidate(nested, &InvalidateArray::vtd_s1(&[all])).unwrap(), 1);
    assert_eq!(dma(&r.m, &r.devs[0], None, 0x4000_1123), Err(Some(0x71)));
    // Replace with the other first stage, then detach: blocked again.
    r.m.fd.replace(r.ids[0], None, nested2).unwrap();
    r.m.guest_map(other, 0x4000_2000, 0x6000).unwrap();
    assert_eq!(dma(&r.m, &r.devs[0], None, 0x4000_2123), Ok(GUEST_RAM_HPA + 0x6123));
    r.m.fd.detach(r.ids[0], None).unwrap();
    r.m.fd.detach(r.ids[0], Some(7)).unwrap();
    r.m.fd.detach(r.ids[1], None).unwrap();
    assert!(dma(&r.m, &r.devs[0], None, 0x4000_2123).is_err());
    r.m.fd.destroy(nested).unwrap();
    r.m.fd.destroy(nested2).unwrap();
    r.m.fd.destroy(parent).unwrap();
}

/// SMMUv3: a vIOMMU over a NEST_PARENT HWPT, a vDEVICE, a nested HWPT carrying the guest's
/// STE whose CD table is in guest RAM (the seed's PASID table), invalidated through the
/// vIOMMU with raw commands.
#[test]
fn smmuv3_nested() {
    let mut r = rig(Model::Smmuv3);
    let ioas = r.m.fd.ioas_alloc().unwrap();
    r.m.fd.ioas_map(ioas, RW, VMM_VA, GUEST_RAM_LEN, 0).unwrap();
    let parent = paging(&mut r, ioas, hwpt_flags::NEST_PARENT);
    let plain = paging(&mut r, ioas, 0);
    assert_eq!(
        errno(&mut r.m, |fd| fd.viommu_alloc(0, TYPE_ARM_SMMUV3, r.ids[0], plain)),
        Errno::EINVAL,
        "not NEST_PARENT"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.viommu_alloc(0, 0, r.ids[0], parent)),
        Errno::EOPNOTSUPP,
        "default type"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.viommu_alloc(1, TYPE_ARM_SMMUV3, r.ids[0], parent)),
        Errno::EOPNOTSUPP,
        "flags"
    );
    let viommu = r.m.fd.viommu_alloc(0, TYPE_ARM_SMMUV3, r.ids[0], parent).unwrap();
    // The guest: CD 0 and CD 3 over stage-1 tables of its own.
    let s1a = r.m.guest_s1(&[(0x4000_0000, 0x3000), (0x4000_1000, 0x4000)]).unwrap();
    let s1b = r.m.guest_s1(&[(0x4000_0000, 0x5000)]).unwrap();
    let cdt = r.m.guest_page().unwrap();
    r.m.guest_cd(cdt, 0, s1a, 7).unwrap();
    r.m.guest_cd(cdt, 3, s1b, 8).unwrap();
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Stage1);
    ste.set_s1fmt(S1Fmt::Linear);
    ste.set_s1contextptr(cdt);
    ste.set_s1cdmax(6);
    let vste = HwptData::arm_smmuv3([ste.0[0], ste.0[1]]);
    let alloc = |pt_id, data: HwptData, flags| HwptAlloc {
        flags,
        dev_id: r.ids[0],
        pt_id,
        data,
        fault_id: 0,
    };
    let nested = r.m.fd.hwpt_alloc(&alloc(viommu, vste.clone(), 0)).unwrap();
    // Refusals of nested allocation.
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(nested, vste.clone(), 0))),
        Errno::EINVAL,
        "nested on nested"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(viommu, vste.clone().with_len(12), 0))),
        Errno::EINVAL,
        "short"
    );
    let other_type = HwptData { data_type: data_type::VTD_S1, ..vste.clone() };
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(viommu, other_type, 0))),
        Errno::EOPNOTSUPP
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(viommu, vste.clone(), hwpt_flags::PASID))),
        Errno::EOPNOTSUPP
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(parent, vste.clone(), 0))),
        Errno::EOPNOTSUPP,
        "no nesting without vIOMMU"
    );
    let mut s2 = ste;
    s2.set_config(StreamConfig::Nested);
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(
            viommu,
            HwptData::arm_smmuv3([s2.0[0], s2.0[1]]),
            0
        ))),
        Errno::EIO,
        "Config"
    );
    let mut extra = ste;
    extra.set_mev(true);
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(
            viommu,
            HwptData::arm_smmuv3([extra.0[0], extra.0[1]]),
            0
        ))),
        Errno::EIO,
        "MEV"
    );
    let mut split = ste;
    split.set_eats(Eats::SplitStage);
    assert_eq!(
        errno(&mut r.m, |fd| fd.hwpt_alloc(&alloc(
            viommu,
            HwptData::arm_smmuv3([split.0[0], split.0[1]]),
            0
        ))),
        Errno::EIO,
        "EATS"
    );
    // A nested attach needs the device's vDEVICE.
    assert_eq!(errno(&mut r.m, |fd| fd.attach(r.ids[0], None, nested)), Errno::ENOENT);
    r.m.fd.vdevice_alloc(viommu, r.ids[0], 0x42).unwrap();
    assert_eq!(
        errno(&mut r.m, |fd| fd.vdevice_alloc(viommu, r.ids[0], 0x43)),
        Errno::EEXIST,
        "the device has one"
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.vdevice_alloc(viommu, r.ids[1], 0x42)),
        Errno::EEXIST,
        "the virtual ID has one"
    );
    let q = r.m.fd.veventq_alloc(0, viommu, TYPE_ARM_SMMUV3, 64).unwrap();
    assert_eq!(
        errno(&mut r.m, |fd| fd.veventq_alloc(0, viommu, TYPE_ARM_SMMUV3, 64)),
        Errno::EEXIST
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.veventq_alloc(0, viommu, TYPE_ARM_SMMUV3 + 1, 64)),
        Errno::EOPNOTSUPP
    );
    assert_eq!(
        errno(&mut r.m, |fd| fd.veventq_alloc(0, viommu, TYPE_ARM_SMMUV3, 0)),
        Errno::EINVAL
    );
    r.m.fd.attach(r.ids[0], None, nested).unwrap();
    // Requests without SubstreamID use CD 0; with one, its CD. GVA -> IPA -> PA.
    assert_eq!(dma(&r.m, &r.devs[0], None, 0x4000_0123), Ok(GUEST_RAM_HPA + 0x3123));
    assert_eq!(dma(&r.m, &r.devs[0], Some(3), 0x4000_0123), Ok(GUEST_RAM_HPA + 0x5123));
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(viommu)), Errno::EBUSY);
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(parent)), Errno::EBUSY);
    assert_eq!(
        errno(&mut r.m, |fd| fd.attach(r.ids[0], Some(3), parent)),
        Errno::EINVAL,
        "the guest owns the CD table"
    );
    // The guest unmaps a page and invalidates by its ASID through the vIOMMU.
    r.m.guest_unmap(s1a, 0x4000_0000, 0x1000).unwrap();
    assert_eq!(dma(&r.m, &r.devs[0], None, 0x4000_0123), Ok(GUEST_RAM_HPA + 0x3123), "stale");
    let mut va = Command::new(Opcode::TlbiNhVa);
    va.set_asid(7);
    va.set_address(0x4000_0000);
    va.set_leaf(true);
    va.set_vmid(0x3ff); // whatever the guest writes, the VMID is the host's
    let mut ste_cmd = Command::new(Opcode::CfgiSte);
    ste_cmd.set_sid(0x42);
    let e = r.m.fd.invalidate(viommu, &InvalidateArray::arm_smmuv3(&[va, ste_cmd])).unwrap_err();
    assert!(matches!(e, UapiError::Entry { handled: 1, .. }), "{e}");
    assert_eq!(e.errno(), Errno::EIO, "CFGI_STE is not a guest's");
    assert!(dma(&r.m, &r.devs[0], None, 0x4000_0123).is_err(), "TLBI_NH_VA was handled");
    assert_eq!(dma(&r.m, &r.devs[0], None, 0x4000_1123), Ok(GUEST_RAM_HPA + 0x4123));
    let mut bad_vsid = Command::new(Opcode::CfgiCdAll);
    bad_vsid.set_sid(0x99);
    let e =
        refused(&mut r.m, |fd| fd.invalidate(viommu, &InvalidateArray::arm_smmuv3(&[bad_vsid])));
    assert_eq!(e.errno(), Errno::EIO, "unknown vSID");
    let e = refused(&mut r.m, |fd| fd.invalidate(nested, &InvalidateArray::arm_smmuv3(&[va])));
    assert_eq!(e.errno(), Errno::EOPNOTSUPP, "a vIOMMU's nested HWPT");
    // The guest rewrites CD 3 to point at another table and invalidates the CD by its vSID.
    r.m.guest_cd(cdt, 3, s1a, 9).unwrap();
    assert_eq!(
        dma(&r.m, &r.devs[0], Some(3), 0x4000_1123),
        Err(Some(0x10)),
        "stale CD: s1b maps only 0x4000_0000"
    );
    let mut cfgi = Command::new(Opcode::CfgiCd);
    cfgi.set_sid(0x42);
    cfgi.set_ssid(3);
    let mut nsnh = Command::new(Opcode::TlbiNsnhAll);
    nsnh.set_vmid(1);
    let mut range = Command::new(Opcode::TlbiNhVa);
    range.set_asid(9);
    range.set_tg(Some(Granule::Size4K));
    range.set_num(1);
    let mut atc = Command::new(Opcode::AtcInv);
    atc.set_sid(0x42);
    atc.set_atc_size(52);
    let mut cd_all = Command::new(Opcode::CfgiCdAll);
    cd_all.set_sid(0x42);
    let mut asid = Command::new(Opcode::TlbiNhAsid);
    asid.set_asid(9);
    let cmds = [cfgi, nsnh, range, cd_all, asid];
    assert_eq!(r.m.fd.invalidate(viommu, &InvalidateArray::arm_smmuv3(&cmds)).unwrap(), 5);
    // This SMMU has no ATS: the unit refuses ATC_INV, and nothing changes.
    let e = refused(&mut r.m, |fd| fd.invalidate(viommu, &InvalidateArray::arm_smmuv3(&[atc])));
    assert!(matches!(e, UapiError::Entry { handled: 0, .. }), "{e}");
    assert_eq!(dma(&r.m, &r.devs[0], Some(3), 0x4000_1123), Ok(GUEST_RAM_HPA + 0x4123));
    // Replace with the parent (stage 2 only): GPA -> PA.
    r.m.fd.replace(r.ids[0], None, parent).unwrap();
    assert_eq!(dma(&r.m, &r.devs[0], None, 0x3123), Ok(GUEST_RAM_HPA + 0x3123));
    // Detach, destroy in order.
    r.m.fd.detach(r.ids[0], None).unwrap();
    assert!(dma(&r.m, &r.devs[0], None, 0x3123).is_err());
    r.m.fd.destroy(nested).unwrap();
    assert_eq!(errno(&mut r.m, |fd| fd.destroy(viommu)), Errno::EBUSY, "vDEVICE and vEVENTQ");
    r.m.fd.destroy(q).unwrap();
    let vdev = r.m.fd.users(viommu)[0];
    r.m.fd.destroy(vdev).unwrap();
    r.m.fd.destroy(viommu).unwrap();
    r.m.fd.destroy(parent).unwrap();
}

/// A vSTE that aborts, and one that bypasses stage 1, on SMMUv3.
#[test]
fn smmuv3_vste_abort_and_bypass() {
    let mut r = rig(Model::Smmuv3);
    let ioas = r.m.fd.ioas_alloc().unwrap();
    r.m.fd.ioas_map(ioas, RW, VMM_VA, GUEST_RAM_LEN, 0).unwrap();
    let parent = paging(&mut r, ioas, hwpt_flags::NEST_PARENT);
    let viommu = r.m.fd.viommu_alloc(0, TYPE_ARM_SMMUV3, r.ids[1], parent).unwrap();
    r.m.fd.vdevice_alloc(viommu, r.ids[1], 1).unwrap();
    let mut bypass = Ste::default();
    bypass.set_v(true);
    bypass.set_config(StreamConfig::Bypass);
    let alloc = |data| HwptAlloc { dev_id: r.ids[1], pt_id: viommu, data, ..Default::default() };
    let hb = r.m.fd.hwpt_alloc(&alloc(HwptData::arm_smmuv3([bypass.0[0], bypass.0[1]]))).unwrap();
    let ha = r.m.fd.hwpt_alloc(&alloc(HwptData::arm_smmuv3([0, 0]))).unwrap();
    r.m.fd.attach(r.ids[1], None, hb).unwrap();
    assert_eq!(dma(&r.m, &r.devs[1], None, 0x2000), Ok(GUEST_RAM_HPA + 0x2000));
    r.m.fd.replace(r.ids[1], None, ha).unwrap();
    assert!(dma(&r.m, &r.devs[1], None, 0x2000).is_err());
}

fn vtd() -> Model {
    Model::Vtd
}

fn smmu() -> Model {
    Model::Smmuv3
}

#[test]
fn ioas_calls_vtd() {
    ioas_calls(vtd());
}

#[test]
fn ioas_calls_smmuv3() {
    ioas_calls(smmu());
}

#[test]
fn hw_info_vtd() {
    hw_info(vtd());
}

#[test]
fn hw_info_smmuv3() {
    hw_info(smmu());
}

#[test]
fn destroy_and_pasid_rules_vtd() {
    destroy_and_pasid_rules(vtd());
}

#[test]
fn destroy_and_pasid_rules_smmuv3() {
    destroy_and_pasid_rules(smmu());
}

#[test]
fn errno_names_and_numbers() {
    for (e, n) in [
        (Errno::ENOENT, 2),
        (Errno::EBUSY, 16),
        (Errno::EEXIST, 17),
        (Errno::EINVAL, 22),
        (Errno::EOPNOTSUPP, 95),
        (Errno::EIO, 5),
    ] {
        assert_eq!(e.number(), n);
        assert_eq!(Errno::from_name(e.name()), Some(e));
    }
}

/// The snapshot sees what a call changes: table bytes and registers.
#[test]
fn snapshot_sees_changes() {
    for model in [vtd(), smmu()] {
        let mut r = rig(model);
        let ioas = r.m.fd.ioas_alloc().unwrap();
        let h = paging(&mut r, ioas, 0);
        let s0 = r.m.fd.hardware_snapshot();
        r.m.fd.ioas_map(ioas, RW, VMM_VA, 0x1000, 0x10_0000).unwrap();
        let s1 = r.m.fd.hardware_snapshot();
        assert!(s0.memory != s1.memory, "a mapping writes table bytes");
        r.m.fd.attach(r.ids[0], None, h).unwrap();
        let s2 = r.m.fd.hardware_snapshot();
        assert!(s1 != s2, "an attach writes a context entry or STE");
        // An unmap invalidates: the queue's producer index moves.
        r.m.fd.ioas_unmap(ioas, 0x10_0000, 0x1000).unwrap();
        let s3 = r.m.fd.hardware_snapshot();
        assert!(s2.registers != s3.registers, "the invalidation queue ran");
    }
}

//! iommufd's `iommufd_auto_response_faults()` (drivers/iommu/iommufd/fault.c, v6.19): when a
//! device or a (device, PASID) leaves a HWPT with a fault queue, every page request group of
//! that attachment the queue still holds, read by the VMM or not, is answered Invalid, so the
//! device never waits for a response that will not come. Groups of other attachments stay.

use sviommu_core::arch::vtd::VtdUnit;
use sviommu_core::Model;
use sviommu_uapi::data::{hwpt_flags, map_flags};
use sviommu_uapi::machine::{Machine, GUEST_RAM_LEN, UNIT, VMM_VA};
use sviommu_uapi::{HwptAlloc, HwptData, Iommufd, Object, ObjectId};
use sviommu_vtd::hw::{Output, PageRequestMsg, PageRequestOutcome};
use sviommu_vtd::spec::prq::ResponseCode;

const RW: u32 = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;

/// (PASID, PRGI, response code) of each page group response the unit sent.
fn responses(fd: &Iommufd) -> Vec<(Option<u32>, u16, Result<ResponseCode, u64>)> {
    let any = fd.iommu().driver(UNIT).unwrap().as_any();
    let out = any.downcast_ref::<VtdUnit>().unwrap().hw().drain_outputs();
    out.iter()
        .filter_map(|o| match o {
            Output::PageGroupResponse(r) => {
                Some((r.pp().then(|| r.pasid()), r.prgi(), r.rc().map_err(|e| e.0)))
            }
            _ => None,
        })
        .collect()
}

fn request(fd: &Iommufd, rid: u16, pasid: u32, prgi: u16) {
    let any = fd.iommu().driver(UNIT).unwrap().as_any();
    let msg = PageRequestMsg {
        rid,
        pasid: Some(pasid),
        addr: 0x4000_5000,
        read: true,
        write: true,
        prgi,
        lpig: true,
        ..PageRequestMsg::default()
    };
    let hw = any.downcast_ref::<VtdUnit>().unwrap().hw();
    assert_eq!(hw.page_request(&msg), PageRequestOutcome::Queued);
}

/// (groups, abandoned, waiting for a response, not yet read) of a fault queue.
fn counts(fd: &Iommufd, fq: ObjectId) -> (u64, u64, usize, usize) {
    match fd.object(fq) {
        Some(Object::Fault(q)) => (q.groups, q.abandoned, q.response.len(), q.deliver.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn detaching_a_pasid_answers_its_outstanding_page_requests_invalid() {
    let mut m = Machine::new(Model::Vtd).unwrap();
    let dev = m.devices()[0].clone(); // 00:02.0: PASID, ATS, PRI
    let root = m.guest_s1(&[(0x4000_0000, 0x1000)]).unwrap();
    let fd = &mut m.fd;
    let rid = u16::try_from(fd.iommu().request_ids(&dev).unwrap()[0]).unwrap();
    let id = fd.device_bind(&dev).unwrap();
    let ioas = fd.ioas_alloc().unwrap();
    fd.ioas_map(ioas, RW, VMM_VA, GUEST_RAM_LEN, 0).unwrap();
    let parent = fd
        .hwpt_alloc(&HwptAlloc {
            flags: hwpt_flags::NEST_PARENT | hwpt_flags::PASID,
            dev_id: id,
            pt_id: ioas,
            ..HwptAlloc::default()
        })
        .unwrap();
    let fq = fd.fault_queue_alloc(0).unwrap();
    let nested = fd
        .hwpt_alloc(&HwptAlloc {
            flags: hwpt_flags::FAULT_ID_VALID | hwpt_flags::PASID,
            dev_id: id,
            pt_id: parent,
            data: HwptData::vtd_s1(0, root, 48),
            fault_id: fq,
        })
        .unwrap();
    fd.attach(id, Some(5), nested).unwrap();
    fd.attach(id, Some(6), nested).unwrap();
    // Group 7 of PASID 5 is read by the VMM, group 8 of PASID 5 is not; group 9 is PASID 6's.
    request(fd, rid, 5, 7);
    fd.handle_host_events();
    assert_eq!(fd.fault_read(fq).unwrap().len(), 1);
    request(fd, rid, 5, 8);
    request(fd, rid, 6, 9);
    fd.handle_host_events();
    assert_eq!(counts(fd, fq), (3, 0, 3, 2));
    assert_eq!(responses(fd), [], "nothing answered yet");

    fd.detach(id, Some(5)).unwrap();
    let invalid = Ok(ResponseCode::InvalidRequest);
    let mut sent = responses(fd);
    sent.sort_by_key(|r| r.1);
    assert_eq!(sent, [(Some(5), 7, invalid), (Some(5), 8, invalid)]);
    assert_eq!(counts(fd, fq), (3, 2, 1, 1), "PASID 6's group stays");

    // The other PASID's group is the VMM's to answer, and a replace answers it too.
    let other = fd
        .hwpt_alloc(&HwptAlloc {
            flags: hwpt_flags::FAULT_ID_VALID | hwpt_flags::PASID,
            dev_id: id,
            pt_id: parent,
            data: HwptData::vtd_s1(0, root, 48),
            fault_id: fq,
        })
        .unwrap();
    fd.replace(id, Some(6), other).unwrap();
    assert_eq!(responses(fd), [(Some(6), 9, invalid)]);
    assert_eq!(counts(fd, fq), (3, 3, 0, 0));
}

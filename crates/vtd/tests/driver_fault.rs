//! Faults and page requests as the driver services them: records drained from the unit's fault
//! recording registers with their reasons and source-ids, overflow reported, the fault event's
//! message; page requests drained from the queue and answered.
//!
//! Page requests come from the model's own queue in one test; the others put a register shim in
//! front of the unit, which keeps PQH, PQT, PQA and PRS itself and passes every other access on,
//! so the test can place requests where the model would not (wrapping at the queue's end) and
//! hand the driver a tail outside the queue.

mod driver_common;

use std::sync::{Arc, Mutex};

use driver_common::*;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_vtd::driver::{DriverConfig, DriverError, Mmio, MsiConfig, VtdDriver};
use sviommu_vtd::hw::{MsiSource, Output, Vtd};
use sviommu_vtd::spec::fault::RequestType;
use sviommu_vtd::spec::prq::{PageRequest, ResponseCode};
use sviommu_vtd::spec::regs::{self, ecap, fsts, pqa, prs};
use sviommu_vtd::spec::FaultReason as R;

#[test]
fn faults_are_drained_with_their_reasons_and_source_ids() {
    let mut r = rig();
    r.drv.attach(0x0100, None, sviommu_vtd::driver::PasidConfig::PassThrough).unwrap();
    assert_eq!(reason(&r.vtd, read(0x0203, 0x5000)), R::SmRootEntryNotPresent);
    assert_eq!(
        reason(&r.vtd, write(0x0100, 0x7000).with_pasid(0x42)),
        R::SmPasidDirEntryNotPresent,
        "another PASID table"
    );
    let drain = r.drv.drain_faults();
    assert!(!drain.overflow);
    let got: Vec<_> = drain
        .records
        .iter()
        .map(|f| (f.fr(), f.sid(), f.fi(), f.request_type(), f.pp().then(|| f.pv())))
        .collect();
    assert_eq!(
        got,
        [
            (Ok(R::SmRootEntryNotPresent), 0x0203, 0x5000, RequestType::Read, None),
            (Ok(R::SmPasidDirEntryNotPresent), 0x0100, 0x7000, RequestType::Write, Some(0x42)),
        ]
    );
    assert!(!fsts::PPF.is_set(r.vtd.mmio_read(regs::FSTS.0, 4)), "every F cleared");
    assert!(r.drv.drain_faults().records.is_empty());
    // The next fault goes to the next record, and is drained from FRI.
    assert_eq!(reason(&r.vtd, read(0x0300, 0x9000)), R::SmRootEntryNotPresent);
    let again = r.drv.drain_faults();
    assert_eq!(again.records.iter().map(|f| f.sid()).collect::<Vec<_>>(), [0x0300]);
    assert_eq!(r.drv.stats().faults, 3);
}

#[test]
fn overflow_is_reported_and_recording_resumes() {
    let mut r = legacy_rig();
    // Eight records: the ninth and tenth fault are dropped (PFO).
    for i in 0..10u16 {
        assert_eq!(reason(&r.vtd, read(i, 0x1000)), R::RootEntryNotPresent);
    }
    let drain = r.drv.drain_faults();
    assert!(drain.overflow);
    assert_eq!(
        drain.records.iter().map(|f| f.sid()).collect::<Vec<_>>(),
        (0..8).collect::<Vec<u16>>()
    );
    assert_eq!(r.drv.stats().fault_overflows, 1);
    assert!(!fsts::PFO.is_set(r.vtd.mmio_read(regs::FSTS.0, 4)));
    reason(&r.vtd, read(0x77, 0x1000));
    let drain = r.drv.drain_faults();
    assert!(!drain.overflow);
    assert_eq!(drain.records.iter().map(|f| f.sid()).collect::<Vec<_>>(), [0x77]);
}

#[test]
fn the_fault_event_sends_the_configured_message() {
    let msi = MsiConfig { addr: 0x1_fee0_1000, data: 0x4321 };
    let mut r = rig_with(params(), DriverConfig { fault_msi: Some(msi), ..Default::default() });
    r.vtd.drain_outputs();
    reason(&r.vtd, read(0x0203, 0x5000));
    assert_eq!(
        r.vtd.drain_outputs(),
        [Output::Msi { source: MsiSource::Fault, addr: msi.addr, data: msi.data }]
    );
    r.drv.drain_faults();
    // Without a message the event stays masked.
    let q = rig();
    q.vtd.drain_outputs();
    reason(&q.vtd, read(0x0203, 0x5000));
    assert!(q.vtd.drain_outputs().is_empty());
}

/// The unit with the page request queue's registers in front (see the module's doc).
struct PrqShim {
    vtd: Unit,
    /// PQH, PQT, PQA, PRS.
    regs: Mutex<[u64; 4]>,
}

impl PrqShim {
    fn slot(offset: u64) -> Option<usize> {
        [regs::PQH.0, regs::PQT.0, regs::PQA.0, regs::PRS.0].iter().position(|&o| o == offset)
    }
    fn get(&self, i: usize) -> u64 {
        self.regs.lock().unwrap()[i]
    }
    fn set(&self, i: usize, v: u64) {
        self.regs.lock().unwrap()[i] = v;
    }
}

impl Mmio for PrqShim {
    fn read(&self, offset: u64, size: u8) -> u64 {
        match Self::slot(offset) {
            Some(i) => self.get(i),
            None => self.vtd.mmio_read(offset, size),
        }
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        match Self::slot(offset) {
            // PRS is write-1-to-clear.
            Some(3) => self.set(3, self.get(3) & !value),
            Some(i) => self.set(i, value),
            None => self.vtd.mmio_write(offset, size, value),
        }
    }
}

fn prq_rig() -> (Arc<PrqShim>, Mem, VtdDriver<Arc<PrqShim>, Mem>) {
    let mut params = params();
    params.ecap = ecap::PRS.with(params.ecap, true);
    let mem = memory();
    let vtd = Arc::new(Vtd::new(mem.clone(), params));
    let shim = Arc::new(PrqShim { vtd, regs: Mutex::new([0; 4]) });
    let drv = VtdDriver::new(shim.clone(), mem.clone(), frames(), DriverConfig::default()).unwrap();
    (shim, mem, drv)
}

fn page_request(rid: u16, pasid: Option<u32>, addr: u64, prgi: u16, last: bool) -> PageRequest {
    let mut p = PageRequest::new();
    p.set_rid(rid);
    if let Some(v) = pasid {
        p.set_pp(true);
        p.set_pasid(v);
    }
    p.set_addr(addr);
    p.set_rr(true);
    p.set_prgi(prgi);
    p.set_lpig(last);
    p
}

#[test]
fn page_requests_are_drained_and_answered() {
    let (shim, mem, mut drv) = prq_rig();
    let (base, bytes) = drv.page_request_queue().unwrap();
    assert_eq!(shim.get(2), pqa::PQA.in_place(base.0), "PQA programmed, one page");
    assert_eq!(bytes, 4096);
    // The unit writes three requests, wrapping around the end of the queue.
    let start = bytes - 64;
    shim.set(0, start);
    let reqs = [
        page_request(0x0310, Some(5), 0x7000_0000, 3, false),
        page_request(0x0310, Some(5), 0x7000_1000, 3, true),
        page_request(0x0400, None, 0x1000, 9, true),
    ];
    for (i, p) in reqs.iter().enumerate() {
        let at = (start + 32 * i as u64) % bytes;
        mem.write(Hpa(base.0 + at), &p.to_le_bytes()).unwrap();
    }
    shim.set(1, (start + 96) % bytes);
    shim.set(3, prs::PPR.mask());
    let drain = drv.drain_page_requests().unwrap();
    assert_eq!(drain.requests, reqs);
    assert!(!drain.overflow);
    assert_eq!(shim.get(0), 32, "PQH moved to PQT");
    assert_eq!(shim.get(3), 0, "PPR cleared");
    assert!(drv.drain_page_requests().unwrap().requests.is_empty());

    // Overflow is reported and cleared.
    shim.set(3, prs::PPR.mask() | prs::PRO.mask());
    let drain = drv.drain_page_requests().unwrap();
    assert!(drain.overflow && drain.requests.is_empty());
    assert_eq!(
        (shim.get(3), drv.stats().page_request_overflows, drv.stats().page_requests),
        (0, 1, 3)
    );

    // A tail outside the queue is refused.
    shim.set(1, bytes);
    assert_eq!(drv.drain_page_requests(), Err(DriverError::PageRequestTail(bytes)));
    shim.set(1, 32);

    // The answer goes through the invalidation queue to the device.
    shim.vtd.drain_outputs();
    drv.page_group_response(0x0310, Some(5), 3, ResponseCode::Success).unwrap();
    let outs = shim.vtd.drain_outputs();
    let [Output::PageGroupResponse(resp)] = outs.as_slice() else { panic!("{outs:?}") };
    assert_eq!(
        (resp.rid(), resp.pp(), resp.pasid(), resp.prgi(), resp.rc()),
        (0x0310, true, 5, 3, Ok(ResponseCode::Success))
    );
}

/// The model's own page request queue (ECAP.PRS): a device's page requests reach the driver's
/// drain, overflow is reported, and the answer reaches the device.
#[test]
fn page_requests_from_the_model_round_trip() {
    use sviommu_vtd::driver::{DeviceFeatures, DomainConfig, PasidConfig};
    use sviommu_vtd::hw::{PageRequestMsg, PageRequestOutcome};
    use sviommu_vtd::spec::Fspm;
    let mut r = rig();
    assert!(r.drv.capabilities().page_requests, "the default unit has page requests");
    r.drv.set_device_features(0x0310, DeviceFeatures { ats: true, page_requests: true }).unwrap();
    let dom = r.drv.alloc_domain(DomainConfig::FirstStage { levels: Fspm::FourLevel }).unwrap();
    r.drv.attach(0x0310, Some(5), PasidConfig::FirstStage { did: dom }).unwrap();
    let msg = |prgi: u16| PageRequestMsg {
        rid: 0x0310,
        pasid: Some(5),
        addr: 0x7000_0000,
        read: true,
        write: true,
        exec: false,
        privileged: false,
        prgi,
        lpig: true,
        private_data: None,
    };
    assert_eq!(r.vtd.page_request(&msg(3)), PageRequestOutcome::Queued);
    let drain = r.drv.drain_page_requests().unwrap();
    assert_eq!(drain.requests, [msg(3).descriptor()]);
    assert!(!drain.overflow);
    r.vtd.drain_outputs();
    r.drv.page_group_response(0x0310, Some(5), 3, ResponseCode::Success).unwrap();
    let outs = r.vtd.drain_outputs();
    assert!(
        matches!(outs.as_slice(), [Output::PageGroupResponse(p)] if p.prgi() == 3 && p.rc() == Ok(ResponseCode::Success)),
        "{outs:?}"
    );
    // Fill the one-page queue (128 entries, one kept empty) and one more.
    let mut queued = 0;
    for i in 0..130u16 {
        if r.vtd.page_request(&msg(i % 512)) == PageRequestOutcome::Queued {
            queued += 1;
        }
    }
    assert_eq!(queued, 127);
    let drain = r.drv.drain_page_requests().unwrap();
    assert_eq!(drain.requests.len(), 127);
    assert!(drain.overflow);
    assert_eq!(r.drv.stats().page_request_overflows, 1);
    assert_eq!(r.vtd.page_request(&msg(1)), PageRequestOutcome::Queued, "room again");
}

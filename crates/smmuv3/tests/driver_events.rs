//! Events and page requests drained by the driver: records carry their event number and
//! StreamID, an Event queue overflow is counted and acknowledged, and the PRI round trip (a
//! failed ATS request, a page request, the driver mapping and answering, the retry).

mod driver_common;

use driver_common::*;
use sviommu_smmuv3::driver::{Attach, DomainConfig, DriverConfig, Prot};
use sviommu_smmuv3::hw::{Access, AtsResult, Output, Smmu, Transaction};
use sviommu_smmuv3::spec::regs::{self, cons, prod};
use sviommu_smmuv3::spec::{EventId, Granule, PageRequest, PriResp};

const SID: u32 = 0x21;
const S1: DomainConfig = DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 39 };

#[test]
fn events_drain_with_their_ids_and_an_overflow_is_counted_and_acknowledged() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    // A 2-entry Event queue.
    let mut drv = driver(&smmu, &mem, DriverConfig { eventq_log2: 1, ..Default::default() });
    let dom = drv.alloc_domain(S1).unwrap();
    drv.attach(SID, Attach::Domain(dom)).unwrap();
    for i in 0..4u64 {
        assert_eq!(event(smmu.translate(&read(SID, i << 12))).id, EventId::FTranslation);
    }
    assert!(prod::OVFLG.is_set(smmu.mmio_read(regs::EVENTQ_PROD.0, 4)));
    let evs = drv.drain_events().unwrap();
    assert_eq!(
        evs.iter().map(|e| (e.id, e.sid, e.input_addr)).collect::<Vec<_>>(),
        [(Ok(EventId::FTranslation), SID, 0), (Ok(EventId::FTranslation), SID, 0x1000)]
    );
    assert_eq!((drv.stats().events, drv.stats().event_overflows), (2, 1));
    // Acknowledged: CONS.OVACKFLG equals PROD.OVFLG, and new records land again.
    let c = smmu.mmio_read(regs::EVENTQ_CONS.0, 4);
    assert!(cons::OVACKFLG.is_set(c));
    assert_eq!(smmu.stats().events_overflowed, 2);
    smmu.translate(&read(SID, 0x9000)).unwrap_err();
    let evs = drv.drain_events().unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].input_addr, 0x9000);
    assert_eq!(drv.stats().event_overflows, 1, "one overflow, counted once");
}

#[test]
fn pri_round_trip_through_the_driver() {
    let mem = memory();
    let smmu = Smmu::new(&mem, ats_pri_params());
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let dom = drv.alloc_domain(S1).unwrap();
    drv.attach(SID, Attach::Domain(dom)).unwrap();
    drv.set_ats(SID, true).unwrap();
    const VA: u64 = 0x40_0000;
    let t = Transaction::new(SID, VA + 0x10, Access::READ);
    // The device asks; nothing is mapped.
    assert_eq!(smmu.translation_request(&t), AtsResult::NoAccess);
    // It sends a page request, which the driver drains.
    let mut req = PageRequest::default();
    req.set_sid(SID);
    req.set_page_address(VA);
    req.set_r(true);
    req.set_last(true);
    req.set_prgindex(5);
    smmu.page_request(&req);
    let reqs = drv.drain_page_requests().unwrap();
    assert_eq!(reqs, [req]);
    assert_eq!(drv.stats().page_requests, 1);
    // The OS pages it in, maps it and answers the group.
    drv.map(dom, reqs[0].page_address(), 0x8800_0000, 0x1000, Prot::RW).unwrap();
    assert!(smmu.drain_outputs().is_empty());
    drv.pri_response(SID, None, reqs[0].prgindex(), PriResp::Success).unwrap();
    let resp = Output::PriResponse { sid: SID, ssid: None, prg_index: 5, response_code: 0 };
    assert_eq!(smmu.drain_outputs(), [resp]);
    // The retry succeeds.
    match smmu.translation_request(&t) {
        AtsResult::Translated(x) => assert_eq!((x.output, x.size_lg2), (0x8800_0000, 12)),
        other => panic!("expected a translation, got {other:?}"),
    }
    // Unmap + flush: the device's ATC is invalidated too.
    drv.unmap(dom, VA, 0x1000).unwrap();
    drv.flush_tlb(dom, Some((VA, 0x1000))).unwrap();
    let atc = smmu.drain_outputs();
    assert!(
        matches!(
            atc.as_slice(),
            [Output::AtcInvalidate { sid: SID, ssid: None, addr: VA, size_lg2: 0, .. }]
        ),
        "{atc:?}"
    );
    assert_eq!(smmu.translation_request(&t), AtsResult::NoAccess);
}

/// Unbinding a PASID reaches the device's ATC: a translation it was given for that PASID must
/// not outlive the CD (§3.9.1.2).
#[test]
fn detaching_a_pasid_invalidates_the_devices_atc_for_it() {
    let mem = memory();
    let smmu = Smmu::new(&mem, ats_pri_params());
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let dom = drv.alloc_domain(S1).unwrap();
    let other = drv.alloc_domain(S1).unwrap();
    drv.attach(SID, Attach::Domain(dom)).unwrap();
    drv.set_ats(SID, true).unwrap();
    let pasid = sviommu_smmuv3::driver::PasidAttach::Domain(other);
    drv.attach_pasid(SID, 3, pasid).unwrap();
    smmu.drain_outputs();
    drv.detach_pasid(SID, 3).unwrap();
    let atc = smmu.drain_outputs();
    assert!(
        matches!(atc.as_slice(), [Output::AtcInvalidate { sid: SID, ssid: Some(3), .. }]),
        "{atc:?}"
    );
}

//! The driver against device-TLB invalidations that complete late or never (`VtdParams::ats`):
//! a late completion is waited for; a time-out (FSTS.ITE) is cleared, the batch resubmitted as
//! Linux's `qi_submit_sync` does, and after the last try reported as a typed error; an
//! unexpected completion (FSTS.ICE) is cleared and counted. Later invalidations work.

mod driver_common;

use driver_common::*;
use sviommu_vtd::driver::{
    DeviceFeatures, DomainConfig, DriverConfig, DriverError, PasidConfig, DEVTLB_TRIES,
};
use sviommu_vtd::hw::{AtsCompletion, AtsPolicy, Output, VtdParams};
use sviommu_vtd::spec::regs::{self, ecap, fsts};

const RID: u16 = 0x0310;
const OTHER: u16 = 0x0318;

/// A rig whose unit has device-TLBs and `ats`; RID has ATS and a second-stage domain, OTHER
/// the same domain without ATS.
fn ats_rig(ats: AtsPolicy) -> (Rig, sviommu_vtd::driver::Did) {
    let p = params();
    let p = VtdParams { ecap: ecap::DT.with(p.ecap, true), ats, ..p };
    let mut r = rig_with(p, DriverConfig::default());
    r.drv.set_device_features(RID, DeviceFeatures { ats: true, page_requests: false }).unwrap();
    let dom = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    r.drv.attach(RID, None, PasidConfig::SecondStage { did: dom }).unwrap();
    r.vtd.drain_outputs();
    (r, dom)
}

fn devtlb_messages(r: &Rig) -> usize {
    r.vtd.drain_outputs().iter().filter(|o| matches!(o, Output::DevTlbInvalidation(_))).count()
}

#[test]
fn a_late_completion_is_waited_for() {
    let (mut r, dom) =
        ats_rig(AtsPolicy { completion: AtsCompletion::After(20), timeout_ticks: 50 });
    r.drv.flush_iotlb(dom, Some((0x20_0000, 0x1000))).unwrap();
    assert_eq!(devtlb_messages(&r), 1);
    let s = r.vtd.devtlb_stats();
    assert_eq!((s.waited, s.completed, s.timed_out), (1, 1, 0));
    assert_eq!(r.drv.stats().devtlb_timeouts, 0);
}

#[test]
fn a_device_that_never_answers_is_resubmitted_then_reported_and_later_invalidations_work() {
    let (mut r, dom) = ats_rig(AtsPolicy { completion: AtsCompletion::Never, timeout_ticks: 16 });
    let before = r.drv.stats();
    assert_eq!(
        r.drv.flush_iotlb(dom, Some((0x20_0000, 0x1000))),
        Err(DriverError::DeviceTlbTimeout { sid: RID, tries: DEVTLB_TRIES })
    );
    let after = r.drv.stats();
    assert_eq!(after.devtlb_timeouts - before.devtlb_timeouts, u64::from(DEVTLB_TRIES));
    assert_eq!(after.waits - before.waits, u64::from(DEVTLB_TRIES), "one wait per try");
    assert_eq!(devtlb_messages(&r), DEVTLB_TRIES as usize, "each try sent the request again");
    assert_eq!(r.vtd.devtlb_stats().timed_out, u64::from(DEVTLB_TRIES));
    assert_eq!(r.vtd.mmio_read(regs::FSTS.0, 4) & fsts::ITE.mask(), 0, "ITE cleared");
    // The queue goes on: a domain without ATS devices invalidates as before.
    let other = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    r.drv.attach(OTHER, None, PasidConfig::SecondStage { did: other }).unwrap();
    r.drv.flush_iotlb(other, None).unwrap();
    assert_eq!(r.drv.stats().devtlb_timeouts, after.devtlb_timeouts, "no new time-out");
}

#[test]
fn an_unexpected_completion_is_cleared_and_counted() {
    let (mut r, dom) = ats_rig(AtsPolicy::default());
    assert!(!r.vtd.invalidation_completion(RID), "nothing outstanding: ICE");
    assert!(fsts::ICE.is_set(r.vtd.mmio_read(regs::FSTS.0, 4)));
    r.drv.flush_iotlb(dom, None).unwrap();
    assert_eq!(r.drv.stats().completion_errors, 1);
    assert_eq!(r.vtd.mmio_read(regs::FSTS.0, 4) & fsts::ICE.mask(), 0, "cleared by the driver");
}

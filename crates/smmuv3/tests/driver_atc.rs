//! The driver against ATC invalidations that complete late or never (`SmmuParams::ats`): a
//! CMD_SYNC that fails with CERROR_ATC_INV_SYNC is acknowledged and consumed again, as Linux's
//! `arm_smmu_cmdq_skip_err` leaves it, counted, and after the last try reported as a typed
//! error; it completes once the device answers, and later commands work.

mod driver_common;

use driver_common::*;
use sviommu_smmuv3::driver::{Attach, DomainConfig, DriverConfig, DriverError, ATC_SYNC_TRIES};
use sviommu_smmuv3::hw::{AtsCompletion, AtsPolicy, Output, Smmu, SmmuParams};
use sviommu_smmuv3::spec::regs::{self, gerror};
use sviommu_smmuv3::spec::Granule;

const SID: u32 = 0x21;
const OTHER: u32 = 0x22;
const S1: DomainConfig = DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 39 };

fn ats_params(ats: AtsPolicy) -> SmmuParams {
    let p = ats_pri_params();
    SmmuParams { ats, ..p }
}

fn atc_messages(s: &Smmu<&sviommu_memory::HostMemory>) -> usize {
    s.drain_outputs().iter().filter(|o| matches!(o, Output::AtcInvalidate { .. })).count()
}

#[test]
fn a_late_completion_is_retried_until_it_arrives() {
    let mem = memory();
    let smmu = Smmu::new(
        &mem,
        ats_params(AtsPolicy { completion: AtsCompletion::After(12), timeout_ticks: 8 }),
    );
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let dom = drv.alloc_domain(S1).unwrap();
    drv.attach(SID, Attach::Domain(dom)).unwrap();
    drv.set_ats(SID, true).unwrap();
    smmu.drain_outputs();
    drv.flush_tlb(dom, Some((0x40_0000, 0x1000))).unwrap();
    assert_eq!(drv.stats().atc_sync_errors, 1, "failed once, then completed");
    assert_eq!(atc_messages(&smmu), 1);
    let st = smmu.atc_stats();
    assert_eq!((st.completed, st.timed_out, st.outstanding), (1, 1, 0));
}

#[test]
fn a_device_that_never_answers_is_reported_and_the_queue_goes_on_once_it_does() {
    let mem = memory();
    let smmu = Smmu::new(
        &mem,
        ats_params(AtsPolicy { completion: AtsCompletion::Never, timeout_ticks: 8 }),
    );
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let dom = drv.alloc_domain(S1).unwrap();
    drv.attach(SID, Attach::Domain(dom)).unwrap();
    drv.set_ats(SID, true).unwrap();
    let other = drv.alloc_domain(S1).unwrap();
    drv.attach(OTHER, Attach::Domain(other)).unwrap();
    smmu.drain_outputs();
    assert_eq!(
        drv.flush_tlb(dom, Some((0x40_0000, 0x1000))),
        Err(DriverError::AtcInvalidationTimeout { tries: ATC_SYNC_TRIES })
    );
    assert_eq!(drv.stats().atc_sync_errors, u64::from(ATC_SYNC_TRIES));
    // The CMD_SYNC is still in the queue: a later one behind it fails the same way.
    assert_eq!(
        drv.flush_tlb(other, None),
        Err(DriverError::AtcInvalidationTimeout { tries: ATC_SYNC_TRIES })
    );
    // The device answers at last: the queue goes on, and later invalidations work.
    assert!(smmu.atc_completion(SID));
    drv.flush_tlb(other, None).unwrap();
    let g = smmu.mmio_read(regs::GERROR.0, 4) ^ smmu.mmio_read(regs::GERRORN.0, 4);
    assert!(!gerror::CMDQ_ERR.is_set(g), "no error left active");
    assert_eq!(drv.stats().atc_sync_errors, 2 * u64::from(ATC_SYNC_TRIES));
}

#[test]
fn immediate_completions_cost_no_retry() {
    let mem = memory();
    let smmu = Smmu::new(&mem, ats_params(AtsPolicy::default()));
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let dom = drv.alloc_domain(S1).unwrap();
    drv.attach(SID, Attach::Domain(dom)).unwrap();
    drv.set_ats(SID, true).unwrap();
    drv.flush_tlb(dom, None).unwrap();
    assert_eq!((drv.stats().atc_sync_errors, drv.stats().command_errors), (0, 0));
    assert_eq!(smmu.atc_stats().waited, 0);
}

//! ATS invalidations whose completions come late or never (§3.9.1.4), configured by
//! `SmmuParams::ats`: a CMD_SYNC behind an outstanding CMD_ATC_INV waits with CONS on it; a
//! time-out fails it with CERROR_ATC_INV_SYNC (CONS.ERR, CONS still at the CMD_SYNC,
//! GERROR.CMDQ_ERR); acknowledged, the CMD_SYNC is consumed again. Time passes one tick per
//! register read and per `Smmu::tick`. The default (immediate) changes nothing.

mod common;

use common::*;
use sviommu_memory::HostMemory;
use sviommu_smmuv3::hw::{AtsCompletion, AtsPolicy, Output, Profile, Smmu, SmmuParams};
use sviommu_smmuv3::spec::regs::{self, cons, gerror, idr0};
use sviommu_smmuv3::spec::{CError, Command, Opcode, SyncCs};

const QBASE: u64 = 0x8000;
const SID: u32 = 5;
const PROFILES: [Profile; 2] = [Profile::Forgiving, Profile::STRICT];

fn smmu_with(mem: &HostMemory, profile: Profile, ats: AtsPolicy) -> Smmu<&HostMemory> {
    let d = SmmuParams::default();
    let i0 = [idr0::ATS, idr0::MSI].iter().fold(u64::from(d.idr0), |v, f| f.with(v, true));
    Smmu::new(mem, SmmuParams { idr0: u32::try_from(i0).unwrap(), profile, ats, ..d })
}

fn policy(completion: AtsCompletion, timeout_ticks: u32) -> AtsPolicy {
    AtsPolicy { completion, timeout_ticks }
}

fn atc_inv(sid: u32) -> Command {
    let mut c = Command::new(Opcode::AtcInv);
    c.set_sid(sid);
    c.set_address(0x4000);
    c
}

fn msi_sync(data: u32) -> Command {
    let mut c = sync();
    c.set_cs(SyncCs::SigIrq);
    c.set_msiaddress(0x1000);
    c.set_msidata(data);
    c
}

fn cmdq_error(s: &Smmu<&HostMemory>) -> Option<u64> {
    let g = s.mmio_read(regs::GERROR.0, 4) ^ s.mmio_read(regs::GERRORN.0, 4);
    gerror::CMDQ_ERR.is_set(g).then(|| cons::ERR.get(Cmdq::cons(s)))
}

fn acknowledge(s: &Smmu<&HostMemory>) {
    let n = s.mmio_read(regs::GERRORN.0, 4);
    s.mmio_write(regs::GERRORN.0, 4, n ^ gerror::CMDQ_ERR.mask());
}

fn msis(s: &Smmu<&HostMemory>) -> Vec<u32> {
    s.drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Msi { data, .. } => Some(data),
            _ => None,
        })
        .collect()
}

#[test]
fn a_late_completion_holds_the_cmd_sync() {
    for profile in PROFILES {
        let mem = memory();
        let s = smmu_with(&mem, profile, policy(AtsCompletion::After(3), 10));
        let mut q = Cmdq::enable(&s, QBASE, 3);
        q.submit(&mem, &s, &[atc_inv(SID), msi_sync(1)]);
        // One tick (this read): CONS on the CMD_SYNC, no error.
        assert_eq!(cons::RD.get(Cmdq::cons(&s)), 1, "{profile}: CONS at the CMD_SYNC");
        let outs = s.drain_outputs();
        assert!(matches!(outs.as_slice(), [Output::AtcInvalidate { sid: SID, .. }]), "{outs:?}");
        s.tick();
        assert_eq!(cmdq_error(&s), None, "{profile}");
        // Three reads / ticks so far: the completion arrived at the third.
        assert_eq!(msis(&s), [1], "{profile}: the CMD_SYNC completed");
        assert_eq!(cons::RD.get(Cmdq::cons(&s)), 2);
        let st = s.atc_stats();
        assert_eq!((st.waited, st.completed, st.timed_out), (1, 1, 0), "{profile}");
    }
}

#[test]
fn a_time_out_fails_the_cmd_sync_which_is_retried_after_the_acknowledgement() {
    for profile in PROFILES {
        let mem = memory();
        let s = smmu_with(&mem, profile, policy(AtsCompletion::Never, 20));
        let mut q = Cmdq::enable(&s, QBASE, 3);
        q.submit(&mem, &s, &[atc_inv(SID), msi_sync(1)]);
        s.drain_outputs();
        for _ in 0..20 {
            s.tick();
        }
        assert_eq!(cmdq_error(&s), Some(CError::AtcInvSync as u64), "{profile}");
        assert_eq!(cons::RD.get(Cmdq::cons(&s)), 1, "{profile}: CONS still at the CMD_SYNC");
        assert!(msis(&s).is_empty(), "{profile}: not completed");
        // Acknowledged: the CMD_SYNC waits again, and fails again after another time-out.
        acknowledge(&s);
        assert_eq!(cmdq_error(&s), None, "{profile}: waiting again");
        for _ in 0..20 {
            s.tick();
        }
        assert_eq!(cmdq_error(&s), Some(CError::AtcInvSync as u64), "{profile}: again");
        // The device answers at last; acknowledged, the CMD_SYNC completes.
        assert!(s.atc_completion(SID));
        acknowledge(&s);
        assert_eq!(cmdq_error(&s), None, "{profile}");
        assert_eq!(msis(&s), [1], "{profile}");
        // Later commands work.
        q.submit(&mem, &s, &[Command::new(Opcode::TlbiNsnhAll), msi_sync(2)]);
        assert_eq!(msis(&s), [2], "{profile}");
        let st = s.atc_stats();
        assert_eq!((st.waited, st.completed, st.timed_out, st.outstanding), (1, 1, 2, 0));
    }
}

#[test]
fn a_time_out_with_no_cmd_sync_waiting_fails_the_next_one() {
    let mem = memory();
    let s = smmu_with(&mem, Profile::Forgiving, policy(AtsCompletion::Never, 2));
    let mut q = Cmdq::enable(&s, QBASE, 3);
    q.submit(&mem, &s, &[atc_inv(SID)]);
    for _ in 0..3 {
        s.tick();
    }
    assert_eq!(cmdq_error(&s), None, "nothing reports it yet");
    q.submit(&mem, &s, &[msi_sync(7)]);
    assert_eq!(cmdq_error(&s), Some(CError::AtcInvSync as u64), "the next CMD_SYNC fails");
    assert_eq!(cons::RD.get(Cmdq::cons(&s)), 1);
}

#[test]
fn immediate_completions_never_wait_and_a_stray_completion_is_counted() {
    let mem = memory();
    let s = smmu_with(&mem, Profile::Forgiving, AtsPolicy::default());
    let mut q = Cmdq::enable(&s, QBASE, 3);
    q.submit(&mem, &s, &[atc_inv(SID), msi_sync(3)]);
    assert_eq!(msis(&s), [3]);
    for _ in 0..500 {
        s.tick();
    }
    assert!(!s.atc_completion(SID), "nothing outstanding");
    assert_eq!(cmdq_error(&s), None);
    let st = s.atc_stats();
    assert_eq!((st.waited, st.unexpected, st.timed_out), (0, 1, 0));
}

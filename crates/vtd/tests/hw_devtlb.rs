//! Device-TLB invalidations whose completions come late or never (§6.5.2.10), configured by
//! `VtdParams::ats`: a wait descriptor behind one waits for it (fetched, IQH past it), a
//! time-out latches ITE with IQER.ITESID, aborts the wait and stops the queue until software
//! clears ITE, and a completion nothing waits for latches ICE with IQER.ICESID. Time passes one
//! tick per register read and per `Vtd::tick`. The default (immediate) changes nothing.

mod common;

use common::*;
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSsAttrs};
use sviommu_pgtable::{Access, Build};
use sviommu_vtd::hw::{
    AtsCompletion, AtsPolicy, DmaRequest, MsiSource, Output, Profile, Vtd, VtdParams,
};
use sviommu_vtd::spec::inv::{DevTlbInv, InvWait};
use sviommu_vtd::spec::regs::{self, ecap, fsts, iqer, iqh, iqt, rtaddr::Ttm};
use sviommu_vtd::spec::root::{ContextEntry, TranslationType};
use sviommu_vtd::spec::Aw;

const RID: u16 = 0x0310;
const DID: u16 = 7;
const IOVA: u64 = 0x1000;
const HPA: u64 = 0x4000_0000;
const STATUS2: u64 = STATUS_HPA + 0x100;

/// RID's context entry and IOVA -> HPA in a second stage: the root table and the tables.
fn tables(m: &mut Machine) -> (u64, sviommu_pgtable::vtd_ss::VtdSecondStage) {
    let rta = m.page();
    let ss = m.ss(vtd_ss::Levels::Three);
    ss.map(&m.mem, &mut m.frames, IOVA, HPA, 12, VtdSsAttrs::ALL).unwrap();
    let mut ce = ContextEntry::default();
    ce.set_p(true);
    ce.set_tt(TranslationType::UntranslatedOnly);
    ce.set_ssptptr(ss.root);
    ce.set_aw(Aw::Bits39);
    ce.set_did(DID);
    m.legacy_context(rta, RID, ce);
    (rta, ss)
}

/// A legacy unit with device-TLBs over `tables`, its queue enabled, the fault event unmasked,
/// under `profile` and `ats`.
fn unit_with(m: &Machine, rta: u64, profile: Profile, ats: AtsPolicy) -> Vtd<&HostMemory> {
    let p = VtdParams::default();
    let vtd = unit(m, VtdParams { ecap: ecap::DT.with(p.ecap, true), profile, ats, ..p });
    enable(&vtd, rta, Ttm::Legacy);
    enable_queue(&vtd);
    vtd.mmio_write(regs::FECTL.0, 4, 0);
    vtd
}

fn policy(completion: AtsCompletion, timeout_ticks: u32) -> AtsPolicy {
    AtsPolicy { completion, timeout_ticks }
}

fn devtlb() -> [u64; 4] {
    let mut d = DevTlbInv::new();
    d.set_sid(RID);
    d.set_pfsid(RID);
    d.set_addr(IOVA);
    d.words()
}

fn wait_sw(addr: u64, data: u32) -> [u64; 4] {
    let mut w = InvWait::new();
    w.set_sw(true);
    w.set_fn(true);
    w.set_status_addr(addr);
    w.set_status_data(data);
    w.words()
}

fn status(vtd: &Vtd<&HostMemory>, addr: u64) -> u64 {
    vtd.memory().read_u64(Hpa(addr)).unwrap()
}

/// FSTS without counting as a tick of the test's own: the read is one, which the tests count.
fn fsts(vtd: &Vtd<&HostMemory>) -> u64 {
    vtd.mmio_read(regs::FSTS.0, 4)
}

fn head_tail(vtd: &Vtd<&HostMemory>) -> (u64, u64) {
    (
        iqh::QH.in_place(vtd.mmio_read(regs::IQH.0, 8)),
        iqt::QT.in_place(vtd.mmio_read(regs::IQT.0, 8)),
    )
}

fn read(addr: u64) -> DmaRequest {
    DmaRequest::new(RID, addr, Access::READ)
}

const PROFILES: [Profile; 2] = [Profile::Forgiving, Profile::STRICT];

#[test]
fn a_late_completion_holds_the_wait_and_the_invalidations_before_it() {
    for profile in PROFILES {
        let mut m = Machine::new();
        let (rta, ss) = tables(&mut m);
        let vtd = unit_with(&m, rta, profile, policy(AtsCompletion::After(3), 10));
        assert_eq!(ok(&vtd, read(IOVA)).output, HPA, "{profile}: cached");
        // The page goes; the driver invalidates the IOTLB and the device-TLB, then waits.
        ss.unmap(&m.mem, IOVA, 0x1000).unwrap();
        submit(
            &vtd,
            &[desc::iotlb_domain(DID), devtlb(), wait_sw(STATUS_HPA, 1), wait_sw(STATUS2, 2)],
        );
        // The wait is fetched (IQH past it) and waits; the one after it is not fetched.
        let (head, tail) = head_tail(&vtd);
        assert_eq!(tail - head, 32, "{profile}: IQH just past the first wait");
        assert_eq!(status(&vtd, STATUS_HPA), 0, "{profile}: not complete");
        assert!(
            matches!(vtd.drain_outputs().as_slice(), [Output::DevTlbInvalidation(d)] if d.sid == RID)
        );
        if profile.is_strict() {
            assert_eq!(ok(&vtd, read(IOVA)).output, HPA, "strict: still cached until the wait");
        }
        // The head/tail reads above were two ticks; the third completes.
        vtd.tick();
        assert_eq!((status(&vtd, STATUS_HPA), status(&vtd, STATUS2)), (1, 2), "{profile}");
        assert_eq!(fsts(&vtd) & (fsts::ITE.mask() | fsts::ICE.mask()), 0, "{profile}");
        let (head, tail) = head_tail(&vtd);
        assert_eq!(head, tail, "{profile}: the queue ran to its tail");
        let s = vtd.devtlb_stats();
        assert_eq!((s.waited, s.completed, s.timed_out, s.outstanding), (1, 1, 0, 0));
    }
}

#[test]
fn a_completion_that_never_comes_is_ite_and_the_queue_resumes_when_it_is_cleared() {
    for profile in PROFILES {
        let mut m = Machine::new();
        let (rta, _ss) = tables(&mut m);
        let vtd = unit_with(&m, rta, profile, policy(AtsCompletion::Never, 4));
        vtd.drain_outputs();
        submit(&vtd, &[devtlb(), wait_sw(STATUS_HPA, 1), wait_sw(STATUS2, 2)]);
        let fetched = head_tail(&vtd).0;
        for _ in 0..8 {
            vtd.tick();
        }
        let f = fsts(&vtd);
        assert!(fsts::ITE.is_set(f), "{profile}: ITE after the time-out: {f:#x}");
        assert_eq!(iqer::ITESID.get(vtd.mmio_read(regs::IQER.0, 8)), u64::from(RID));
        assert_eq!((status(&vtd, STATUS_HPA), status(&vtd, STATUS2)), (0, 0), "aborted, stopped");
        assert_eq!(head_tail(&vtd).0, fetched, "{profile}: IQH stays past the aborted wait");
        let outs = vtd.drain_outputs();
        assert!(
            outs.iter().any(|o| matches!(o, Output::Msi { source: MsiSource::Fault, .. })),
            "{profile}: the fault event: {outs:?}"
        );
        // Software clears ITE: the unit fetches again from IQH (the second wait completes).
        vtd.mmio_write(regs::FSTS.0, 4, fsts::ITE.mask());
        assert_eq!(status(&vtd, STATUS2), 2, "{profile}");
        assert_eq!(status(&vtd, STATUS_HPA), 0, "{profile}: the aborted wait never writes");
        // Later invalidations work; a later device-TLB one times out again.
        submit_and_wait(&vtd, &[desc::iotlb_global()]);
        let s = vtd.devtlb_stats();
        assert_eq!((s.waited, s.timed_out, s.outstanding), (1, 1, 0), "{profile}");
    }
}

#[test]
fn an_unexpected_completion_is_ice_and_an_expected_one_completes_the_wait() {
    let mut m = Machine::new();
    let (rta, _ss) = tables(&mut m);
    let vtd = unit_with(&m, rta, Profile::Forgiving, policy(AtsCompletion::Never, 1000));
    vtd.drain_outputs();
    assert!(!vtd.invalidation_completion(0x0542), "nothing outstanding");
    let f = fsts(&vtd);
    assert!(fsts::ICE.is_set(f) && !fsts::ITE.is_set(f), "{f:#x}");
    assert_eq!(iqer::ICESID.get(vtd.mmio_read(regs::IQER.0, 8)), 0x0542);
    assert!(
        matches!(vtd.drain_outputs().as_slice(), [Output::Msi { source: MsiSource::Fault, .. }]),
        "the fault event"
    );
    // ICE does not stop the queue.
    submit(&vtd, &[devtlb(), wait_sw(STATUS_HPA, 5)]);
    assert_eq!(status(&vtd, STATUS_HPA), 0);
    assert!(!vtd.invalidation_completion(RID + 1), "another device's completion matches nothing");
    assert!(vtd.invalidation_completion(RID), "the device answers");
    assert_eq!(status(&vtd, STATUS_HPA), 5, "the wait completes with it");
    vtd.mmio_write(regs::FSTS.0, 4, fsts::ICE.mask());
    assert_eq!(fsts(&vtd) & fsts::ICE.mask(), 0, "RW1C");
    let s = vtd.devtlb_stats();
    assert_eq!((s.waited, s.completed, s.unexpected, s.timed_out), (1, 1, 2, 0));
}

#[test]
fn immediate_completions_never_wait_or_raise_anything() {
    let mut m = Machine::new();
    let (rta, _ss) = tables(&mut m);
    let vtd = unit_with(&m, rta, Profile::Forgiving, AtsPolicy::default());
    for _ in 0..3 {
        submit_and_wait(&vtd, &[devtlb()]);
    }
    for _ in 0..500 {
        vtd.tick();
    }
    assert_eq!(fsts(&vtd) & (fsts::ITE.mask() | fsts::ICE.mask() | fsts::IQE.mask()), 0);
    let s = vtd.devtlb_stats();
    assert_eq!((s.waited, s.timed_out, s.outstanding), (0, 0, 0));
}

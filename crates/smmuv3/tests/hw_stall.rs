//! Step (e): the stall model (IHI 0070 G.b §3.12.2, §4.7.1, §4.7.2, §5.5), ATS Translated
//! transactions with SMMU_CR0.ATSCHK (§3.9.1.3), GERROR interrupts (§7.5.1) and E_PAGE_REQUEST
//! (§7.3.19), by raw register, queue and structure writes, with the test playing the device.

mod common;

use common::*;
use sviommu_memory::{FrameAllocator, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::Build;
use sviommu_smmuv3::hw::{
    Abort, Access, AtsResult, Event, Output, PageInHint, Smmu, SmmuParams, StallResult, Transaction,
};
use sviommu_smmuv3::spec::regs::{
    self, cons, cr0, gerror, idr0, irq_ctrl, prod, queue_base, StallModel,
};
use sviommu_smmuv3::spec::{
    CError, Class, Command, Eats, EventId, EventRecord, Opcode, ResumeAction, StreamConfig,
};

const EQ: u64 = 0x2000;
const CQ: u64 = 0x8000;
const VA: u64 = 0x40_0000;
const PA: u64 = 0x20_0000;
const IPA: u64 = 0x4000_0000;
const PA2: u64 = 0x30_0000;

/// Stage 1, CD.S == 1 and CD.R == 0: stalls, recorded all the same.
const SID_S1_STALL: u32 = 0;
/// Stage 1, CD.S == 0, CD.R == 1: terminates.
const SID_S1_TERM: u32 = 1;
/// Stage 2 only, STE.S2S == 1.
const SID_S2_STALL: u32 = 2;
/// Stage 1 (terminating), STE.EATS == Full.
const SID_ATS: u32 = 3;
/// Stage 1 (terminating), STE.EATS == 0b00.
const SID_NO_ATS: u32 = 4;
/// STE.Config == bypass.
const SID_BYPASS: u32 = 5;

fn with_idr0(p: SmmuParams, fields: &[sviommu_memory::bits::Field32]) -> SmmuParams {
    let i0 = fields.iter().fold(u64::from(p.idr0), |v, f| f.with(v, true));
    SmmuParams { idr0: u32::try_from(i0).unwrap(), ..p }
}

struct Rig<'m> {
    mem: &'m HostMemory,
    s: Smmu<&'m HostMemory>,
    s1: VmsaS1,
    s2: VmsaS2,
    fr: FrameAllocator<Hpa>,
    q: Cmdq,
    eq_log2: u8,
}

/// The six streams above over empty stage-1 and stage-2 tables; the Event queue (2^`eq_log2`
/// entries) and the Command queue enabled.
fn rig(mem: &HostMemory, params: SmmuParams, eq_log2: u8) -> Rig<'_> {
    let s = Smmu::new(mem, params);
    let mut fr = frames();
    let st = alloc(mem, &mut fr, 12);
    let s1 = VmsaS1::create(mem, &mut fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    let s2 = VmsaS2::create(mem, &mut fr, VmsaS2::new(0, PtGranule::K4, 25, 1)).unwrap();
    let cd_stall = alloc(mem, &mut fr, 12);
    let mut cd = cd_for(&s1, 1);
    cd.set_s(true);
    cd.set_r(false);
    write_cd(mem, cd_stall, &cd);
    let cd_term = alloc(mem, &mut fr, 12);
    write_cd(mem, cd_term, &cd_for(&s1, 2));
    let mut s2_stall = ste_s2(&s2);
    s2_stall.set_s2s(true);
    let mut ats = ste_s1(cd_term, 0, None);
    ats.set_eats(Eats::Full);
    let stes = [
        (SID_S1_STALL, ste_s1(cd_stall, 0, None)),
        (SID_S1_TERM, ste_s1(cd_term, 0, None)),
        (SID_S2_STALL, s2_stall),
        (SID_ATS, ats),
        (SID_NO_ATS, ste_s1(cd_term, 0, None)),
        (SID_BYPASS, ste_with_config(StreamConfig::Bypass)),
    ];
    for (sid, ste) in stes {
        write_ste(mem, st + 64 * u64::from(sid), &ste);
    }
    enable_linear(&s, st, 3);
    let b = queue_base::LOG2SIZE.set(queue_base::ADDR.set(0, EQ >> 5), u64::from(eq_log2));
    s.mmio_write(regs::EVENTQ_BASE.0, 8, b);
    set_cr0(&s, cr0::EVENTQEN, true);
    let q = Cmdq::enable(&s, CQ, 3);
    Rig { mem, s, s1, s2, fr, q, eq_log2 }
}

fn set_cr0(s: &Smmu<&HostMemory>, f: sviommu_memory::bits::Field32, on: bool) {
    let v = s.mmio_read(regs::CR0.0, 4);
    s.mmio_write(regs::CR0.0, 4, f.with(v, on));
}

impl Rig<'_> {
    fn map_s1(&mut self, va: u64, pa: u64) {
        self.s1.map(self.mem, &mut self.fr, va, pa, 12, S1Attrs::ALL).unwrap();
    }

    fn submit(&mut self, cmds: &[Command]) {
        let mut all = cmds.to_vec();
        all.push(sync());
        self.q.submit(self.mem, &self.s, &all);
    }

    /// Every record from CONS to PROD, consumed (CONS written, which may retry stalls).
    fn events(&self) -> Vec<EventRecord> {
        consume_events(self.mem, &self.s, EQ, self.eq_log2, true)
    }

    fn cmd_error(&self) -> u64 {
        cons::ERR.get(Cmdq::cons(&self.s))
    }
}

fn resume(sid: u32, stag: u16, action: ResumeAction) -> Command {
    let mut c = Command::new(Opcode::Resume);
    c.set_sid(sid);
    c.set_stag(stag);
    c.set_resume_action(action);
    c
}

fn stall_term(sid: u32) -> Command {
    let mut c = Command::new(Opcode::StallTerm);
    c.set_sid(sid);
    c
}

#[track_caller]
fn stalled(r: Result<sviommu_smmuv3::hw::Translation, Abort>) -> Event {
    match r {
        Err(Abort::Stalled(e)) => e,
        other => panic!("expected a stall, got {other:?}"),
    }
}

fn resolved(sid: u32, stag: u16, result: StallResult) -> Output {
    Output::StallResolved { sid, stag, result }
}

#[test]
fn a_stage1_fault_with_cd_s_stalls_and_resume_retry_completes_it() {
    let mem = memory();
    let mut r = rig(&mem, SmmuParams::default(), 3);
    let t = Transaction::new(SID_S1_STALL, VA + 0x10, Access::WRITE);
    let e = stalled(r.s.translate(&t));
    assert_eq!(
        (e.id, e.s2, e.class, e.stag, e.record),
        (EventId::FTranslation, false, Some(Class::In), Some(0), true)
    );
    // §5.5 S: recorded although CD.R == 0, with Stall and STAG.
    let recs = r.events();
    assert_eq!(recs.len(), 1);
    assert_eq!(
        (recs[0].id(), recs[0].sid(), recs[0].stall(), recs[0].stag()),
        (Ok(EventId::FTranslation), SID_S1_STALL, true, 0)
    );
    assert_eq!(recs[0].input_addr(), VA + 0x10);
    assert!(r.s.drain_outputs().is_empty(), "no response while stalled");
    assert_eq!(r.s.stalled_transactions(), 1);
    // A retry with nothing fixed faults again: stalled again with the same STAG, a new record.
    r.submit(&[resume(SID_S1_STALL, 0, ResumeAction::Retry)]);
    assert!(r.s.drain_outputs().is_empty());
    let recs = r.events();
    assert_eq!((recs.len(), recs[0].stall(), recs[0].stag()), (1, true, 0));
    // Software maps the page and resumes: the device gets the translation.
    r.map_s1(VA, PA);
    r.submit(&[resume(SID_S1_STALL, 0, ResumeAction::Retry)]);
    match r.s.drain_outputs().as_slice() {
        [Output::StallResolved { sid, stag: 0, result: StallResult::Translated(x) }] => {
            assert_eq!((*sid, x.output), (SID_S1_STALL, PA + 0x10));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.s.stalled_transactions(), 0);
    assert!(r.events().is_empty());
    let st = r.s.stats();
    assert_eq!((st.stalls, st.stalls_retried, st.stalls_terminated), (2, 2, 0));
    // The STAG was returned: a later stall may use it again.
    let t2 = Transaction::new(SID_S1_STALL, VA + 0x1000, Access::READ);
    assert_eq!(stalled(r.s.translate(&t2)).stag, Some(0));
}

#[test]
fn resume_terminate_aborts_and_a_resume_that_matches_nothing_is_ignored() {
    let mem = memory();
    let mut r = rig(&mem, SmmuParams::default(), 3);
    let e = stalled(r.s.translate(&read(SID_S1_STALL, VA)));
    let stag = e.stag.unwrap();
    // §4.7.1: the STAG of another StreamID, or a STAG holding nothing: no effect, no error.
    r.submit(&[
        resume(SID_S1_TERM, stag, ResumeAction::TerminateAbort),
        resume(SID_S1_STALL, stag + 5, ResumeAction::TerminateAbort),
    ]);
    assert_eq!(r.cmd_error(), 0);
    assert!(r.s.drain_outputs().is_empty());
    assert_eq!(r.s.stalled_transactions(), 1);
    // Terminate with Ab == 0: TERM_MODEL == 1 ignores Ab, the device gets an abort.
    r.submit(&[resume(SID_S1_STALL, stag, ResumeAction::TerminateRazWi)]);
    assert_eq!(r.s.drain_outputs(), [resolved(SID_S1_STALL, stag, StallResult::Aborted)]);
    // A second resume of the same STAG matches nothing.
    r.submit(&[resume(SID_S1_STALL, stag, ResumeAction::Retry)]);
    assert!(r.s.drain_outputs().is_empty());
    assert_eq!(r.s.stats().stalls_terminated, 1);

    // With TERM_MODEL == 0, Ab == 0 completes with RAZ/WI and Ab == 1 aborts.
    let mem = memory();
    let i0 = idr0::TERM_MODEL.with(u64::from(SmmuParams::default().idr0), false);
    let p = SmmuParams { idr0: u32::try_from(i0).unwrap(), ..SmmuParams::default() };
    let mut r = rig(&mem, p, 3);
    let a = stalled(r.s.translate(&read(SID_S1_STALL, VA))).stag.unwrap();
    let b = stalled(r.s.translate(&read(SID_S1_STALL, VA + 0x1000))).stag.unwrap();
    assert_ne!(a, b);
    r.submit(&[
        resume(SID_S1_STALL, a, ResumeAction::TerminateRazWi),
        resume(SID_S1_STALL, b, ResumeAction::TerminateAbort),
    ]);
    assert_eq!(
        r.s.drain_outputs(),
        [
            resolved(SID_S1_STALL, a, StallResult::RazWi),
            resolved(SID_S1_STALL, b, StallResult::Aborted)
        ]
    );
}

#[test]
fn stall_term_ends_every_stall_of_its_stream_and_smmuen_clear_ends_the_rest() {
    let mem = memory();
    let mut r = rig(&mem, SmmuParams::default(), 3);
    let stags: Vec<u16> = (0..3)
        .map(|i| stalled(r.s.translate(&read(SID_S1_STALL, VA + i * 0x1000))).stag.unwrap())
        .collect();
    assert_eq!(stags, [0, 1, 2]);
    let other = stalled(r.s.translate(&read(SID_S2_STALL, IPA))).stag.unwrap();
    assert_eq!(other, 3);
    r.submit(&[stall_term(SID_S1_STALL)]);
    let want: Vec<Output> =
        stags.iter().map(|&t| resolved(SID_S1_STALL, t, StallResult::Aborted)).collect();
    assert_eq!(r.s.drain_outputs(), want);
    assert_eq!(r.s.stalled_transactions(), 1, "the other stream's stall stays");
    // §6.3.9.6: SMMUEN 1 -> 0 terminates every stalled transaction.
    set_cr0(&r.s, cr0::SMMUEN, false);
    assert_eq!(r.s.drain_outputs(), [resolved(SID_S2_STALL, other, StallResult::Aborted)]);
    assert_eq!(r.s.stalled_transactions(), 0);
    assert_eq!(r.s.stats().stalls_terminated, 4);
}

#[test]
fn a_stage2_fault_with_s2s_stalls_and_retries_through_stage_2() {
    let mem = memory();
    let mut r = rig(&mem, SmmuParams::default(), 3);
    let e = stalled(r.s.translate(&read(SID_S2_STALL, IPA + 0x24)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa),
        (EventId::FTranslation, true, Some(Class::In), Some(IPA + 0x24))
    );
    let rec = &r.events()[0];
    assert_eq!((rec.stall(), rec.s2(), rec.ipa()), (true, true, IPA));
    r.s2.map(r.mem, &mut r.fr, IPA, PA2, 12, S2Attrs::ALL).unwrap();
    r.submit(&[resume(SID_S2_STALL, e.stag.unwrap(), ResumeAction::Retry)]);
    match r.s.drain_outputs().as_slice() {
        [Output::StallResolved { result: StallResult::Translated(x), .. }] => {
            assert_eq!(x.output, PA2 + 0x24)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_retry_that_meets_a_terminating_configuration_is_aborted_and_recorded() {
    let mem = memory();
    let mut r = rig(&mem, SmmuParams::default(), 3);
    let e = stalled(r.s.translate(&read(SID_S1_STALL, VA)));
    let _ = r.events();
    // §3.12.2: software makes the stream terminate (CD.S = 0), invalidates, then retries.
    let st = regs::STRTAB_BASE.0;
    let st_base = r.s.mmio_read(st, 8) & !0x3f;
    let ste = sviommu_smmuv3::spec::Ste(std::array::from_fn(|i| {
        mem.read_u64(Hpa(st_base + 8 * i as u64)).unwrap()
    }));
    let cd_addr = ste.s1contextptr();
    let mut cd = sviommu_smmuv3::spec::Cd(std::array::from_fn(|i| {
        mem.read_u64(Hpa(cd_addr + 8 * i as u64)).unwrap()
    }));
    cd.set_s(false);
    cd.set_r(true);
    write_cd(&mem, cd_addr, &cd);
    let mut cfgi = Command::new(Opcode::CfgiCdAll);
    cfgi.set_sid(SID_S1_STALL);
    r.submit(&[cfgi, resume(SID_S1_STALL, e.stag.unwrap(), ResumeAction::Retry)]);
    assert_eq!(r.s.drain_outputs(), [resolved(SID_S1_STALL, 0, StallResult::Aborted)]);
    let recs = r.events();
    assert_eq!((recs.len(), recs[0].id(), recs[0].stall()), (1, Ok(EventId::FTranslation), false));
}

#[test]
fn cd_s_0_terminates_and_each_model_refuses_the_bits_it_lacks() {
    let mem = memory();
    let r = rig(&mem, SmmuParams::default(), 3);
    // CD.S == 0: terminated, recorded with Stall == 0.
    let e = event(r.s.translate(&read(SID_S1_TERM, VA)));
    assert_eq!((e.id, e.stag), (EventId::FTranslation, None));
    assert!(!r.events()[0].stall());

    // §5.5: which CD.S / STE.S2S / STE.S1STALLD settings are ILLEGAL under each model, and
    // what a fault does under the legal ones: `None` is a stall, `Some(id)` a termination.
    use EventId::{CBadCd, CBadSte, FTranslation};
    use StallModel::{StallAndTerminate, StallForced, TerminateOnly};
    let cases = [
        // (model, CD.S, S1STALLD, S2S on the stage-2 stream, stage 1 gets, stage 2 gets)
        (StallAndTerminate, true, false, true, None, None),
        (StallAndTerminate, true, true, false, Some(CBadCd), Some(FTranslation)),
        (StallAndTerminate, false, true, false, Some(FTranslation), Some(FTranslation)),
        (TerminateOnly, true, false, false, Some(CBadCd), Some(FTranslation)),
        (TerminateOnly, false, true, true, Some(CBadSte), Some(CBadSte)),
        (TerminateOnly, false, false, false, Some(FTranslation), Some(FTranslation)),
        (StallForced, false, false, true, Some(CBadCd), None),
        (StallForced, true, true, false, Some(CBadSte), Some(CBadSte)),
        (StallForced, true, false, true, None, None),
    ];
    let outcome = |r: Result<_, Abort>| match r {
        Err(Abort::Stalled(_)) => None,
        Err(a) => a.id(),
        Ok(x) => panic!("translated {x:?}"),
    };
    for (n, (model, cd_s, stalld, s2s, want1, want2)) in cases.into_iter().enumerate() {
        let mem = memory();
        let mut fr = frames();
        let s = Smmu::new(&mem, SmmuParams::default().with_stall_model(model));
        let st = alloc(&mem, &mut fr, 12);
        let s1 = VmsaS1::create(&mem, &mut fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
        let s2 = VmsaS2::create(&mem, &mut fr, VmsaS2::new(0, PtGranule::K4, 25, 1)).unwrap();
        let cd_addr = alloc(&mem, &mut fr, 12);
        let mut cd = cd_for(&s1, 1);
        cd.set_s(cd_s);
        write_cd(&mem, cd_addr, &cd);
        let mut ste1 = ste_s1(cd_addr, 0, None);
        ste1.set_s1stalld(stalld);
        let mut ste2 = ste_s2(&s2);
        ste2.set_s2s(s2s);
        write_ste(&mem, st, &ste1);
        write_ste(&mem, st + 64, &ste2);
        enable_linear(&s, st, 1);
        assert_eq!(outcome(s.translate(&read(0, VA))), want1, "case {n}: stage 1");
        assert_eq!(outcome(s.translate(&read(1, IPA))), want2, "case {n}: stage 2");
    }
}

#[test]
fn resume_and_stall_term_are_illegal_with_the_terminate_only_model() {
    let mem = memory();
    let p = SmmuParams::default().with_stall_model(StallModel::TerminateOnly);
    for cmd in [resume(0, 0, ResumeAction::Retry), stall_term(0)] {
        let mut r = rig(&mem, p, 3);
        r.q.submit(&mem, &r.s, &[cmd]);
        assert_eq!(r.cmd_error(), u64::from(CError::Ill as u8), "{cmd:?}");
        assert_eq!(
            r.s.mmio_read(regs::GERROR.0, 4) ^ r.s.mmio_read(regs::GERRORN.0, 4),
            gerror::CMDQ_ERR.mask()
        );
    }
}

#[test]
fn a_full_stall_table_terminates_with_stall_0_and_counts() {
    let mem = memory();
    let r = rig(&mem, SmmuParams::default().with_stall_max(2), 3);
    for i in 0..2 {
        assert_eq!(
            stalled(r.s.translate(&read(SID_S1_STALL, VA + i * 0x1000))).stag,
            Some(u16::try_from(i).unwrap())
        );
    }
    let e = event(r.s.translate(&read(SID_S1_STALL, VA + 0x2000)));
    assert_eq!((e.id, e.stag, e.record), (EventId::FTranslation, None, true));
    let recs = r.events();
    assert_eq!(recs.iter().map(EventRecord::stall).collect::<Vec<_>>(), [true, true, false]);
    let st = r.s.stats();
    assert_eq!((st.stalls, st.stalls_refused), (2, 1));
}

#[test]
fn a_stall_whose_record_cannot_be_written_waits_for_the_queue_then_retries() {
    // The Event queue disabled: the transaction stalls without a record.
    let mem = memory();
    let mut r = rig(&mem, SmmuParams::default(), 3);
    set_cr0(&r.s, cr0::EVENTQEN, false);
    let e = stalled(r.s.translate(&read(SID_S1_STALL, VA + 8)));
    assert_eq!(r.s.stats().stall_records_deferred, 1);
    assert_eq!(r.s.stats().events_disabled, 0, "a stall record is not discarded");
    // Software fixes the page meanwhile; enabling the queue retries the transaction, which
    // now completes: no record at all (§7.2.1).
    r.map_s1(VA, PA);
    set_cr0(&r.s, cr0::EVENTQEN, true);
    match r.s.drain_outputs().as_slice() {
        [Output::StallResolved { sid: SID_S1_STALL, stag, result: StallResult::Translated(x) }] => {
            assert_eq!((Some(*stag), x.output), (e.stag, PA + 8));
        }
        other => panic!("{other:?}"),
    }
    assert!(r.events().is_empty());

    // A one-entry queue: the second stall finds it full; no overflow, the record comes when
    // software consumes the first, from a retry that stalls again (same STAG).
    let mem = memory();
    let r = rig(&mem, SmmuParams::default(), 0);
    let a = stalled(r.s.translate(&read(SID_S1_STALL, VA))).stag.unwrap();
    let b = stalled(r.s.translate(&read(SID_S1_STALL, VA + 0x1000))).stag.unwrap();
    assert!(!prod::OVFLG.is_set(r.s.mmio_read(regs::EVENTQ_PROD.0, 4)));
    let first = r.events();
    assert_eq!((first.len(), first[0].stag()), (1, a));
    let second = r.events();
    assert_eq!((second.len(), second[0].stag(), second[0].input_addr()), (1, b, VA + 0x1000));
    let st = r.s.stats();
    assert_eq!((st.stall_records_deferred, st.stalls_retried, st.events_overflowed), (1, 1, 0));
    assert_eq!(r.s.stalled_transactions(), 2);
}

#[test]
fn atschk_checks_translated_transactions_against_ste_eats() {
    let mem = memory();
    let r = rig(&mem, with_idr0(SmmuParams::default(), &[idr0::ATS]), 3);
    let tx = |sid| Transaction::translated(sid, 0x1234_5678, Access::WRITE);
    // ATSCHK == 0: Translated traffic bypasses unchecked, even where EATS == 0b00.
    assert_eq!(r.s.translate(&tx(SID_NO_ATS)).unwrap().output, 0x1234_5678);
    set_cr0(&r.s, cr0::ATSCHK, true);
    assert!(cr0::ATSCHK.is_set(r.s.mmio_read(regs::CR0ACK.0, 4)));
    assert_eq!(r.s.translate(&tx(SID_ATS)).unwrap().output, 0x1234_5678);
    for sid in [SID_NO_ATS, SID_BYPASS] {
        let e = event(r.s.translate(&tx(sid)));
        assert_eq!((e.id, e.record), (EventId::FTranslForbidden, true));
    }
    // A configuration error aborts without a record (no REC_CFG_ATS); an Untranslated
    // transaction of the same stream still translates as usual.
    let e = event(r.s.translate(&tx(40)));
    assert_eq!((e.id, e.record), (EventId::CBadStreamid, false));
    assert_eq!(id(r.s.translate(&read(SID_NO_ATS, VA))), EventId::FTranslation);
    let recs = r.events();
    let got: Vec<_> = recs.iter().map(|x| (x.id(), x.sid(), x.rnw(), x.input_addr())).collect();
    assert_eq!(
        got,
        [
            (Ok(EventId::FTranslForbidden), SID_NO_ATS, false, 0x1234_5678),
            (Ok(EventId::FTranslForbidden), SID_BYPASS, false, 0x1234_5678),
            (Ok(EventId::FTranslation), SID_NO_ATS, true, VA),
        ]
    );
    // SMMUEN == 0: forbidden, recorded (§7.3.8).
    set_cr0(&r.s, cr0::SMMUEN, false);
    assert_eq!(id(r.s.translate(&tx(SID_ATS))), EventId::FTranslForbidden);
    // Without SMMU_IDR0.ATS the AT field is not seen: an ordinary transaction.
    let mem = memory();
    let r = rig(&mem, SmmuParams::default(), 3);
    assert_eq!(
        id(r.s.translate(&Transaction::translated(SID_BYPASS + 1, 0, Access::READ))),
        EventId::CBadSte
    );
}

#[test]
fn a_translation_request_never_stalls() {
    let mem = memory();
    let mut r = rig(&mem, with_idr0(SmmuParams::default(), &[idr0::ATS]), 3);
    // Make the stalling stream ATS-capable.
    let st_base = r.s.mmio_read(regs::STRTAB_BASE.0, 8) & !0x3f;
    let mut ste = sviommu_smmuv3::spec::Ste(std::array::from_fn(|i| {
        mem.read_u64(Hpa(st_base + 8 * i as u64)).unwrap()
    }));
    ste.set_eats(Eats::Full);
    write_ste(&mem, st_base, &ste);
    let mut cfgi = Command::new(Opcode::CfgiSte);
    cfgi.set_sid(SID_S1_STALL);
    r.submit(&[cfgi]);
    assert_eq!(r.s.translation_request(&read(SID_S1_STALL, VA)), AtsResult::NoAccess);
    assert_eq!(r.s.stalled_transactions(), 0);
    assert!(r.events().is_empty());
}

#[test]
fn gerror_activations_raise_the_gerror_interrupt() {
    let mem = memory();
    let mut r = rig(&mem, with_idr0(SmmuParams::default(), &[idr0::MSI]), 3);
    r.s.mmio_write(regs::GERROR_IRQ_CFG0.0, 8, 0xfee0_2000);
    r.s.mmio_write(regs::GERROR_IRQ_CFG1.0, 4, 0x77);
    r.s.mmio_write(regs::IRQ_CTRL.0, 4, irq_ctrl::GERROR_IRQEN.with(0, true));
    // An illegal command: CMDQ_ERR becomes active, the MSI goes out once.
    r.q.submit(&mem, &r.s, &[Command::from_words([0xff, 0])]);
    let msi = Output::Msi { addr: 0xfee0_2000, data: 0x77 };
    assert_eq!(r.s.drain_outputs(), [msi]);
    // An Event queue abort: EVENTQ_ABT_ERR, another MSI; while active, no second one.
    let b = queue_base::LOG2SIZE.set(queue_base::ADDR.set(0, HOLE >> 5), 2);
    set_cr0(&r.s, cr0::EVENTQEN, false);
    r.s.mmio_write(regs::EVENTQ_BASE.0, 8, b);
    set_cr0(&r.s, cr0::EVENTQEN, true);
    let _ = r.s.translate(&read(SID_S1_TERM, VA));
    let _ = r.s.translate(&read(SID_S1_TERM, VA));
    assert_eq!(r.s.drain_outputs(), [msi]);
    let active = r.s.mmio_read(regs::GERROR.0, 4) ^ r.s.mmio_read(regs::GERRORN.0, 4);
    assert_eq!(active, gerror::CMDQ_ERR.mask() | gerror::EVENTQ_ABT_ERR.mask());
    // Without SMMU_IDR0.MSI: the wired interrupt; nothing with GERROR_IRQEN clear.
    let mem = memory();
    let mut r = rig(&mem, SmmuParams::default(), 3);
    r.q.submit(&mem, &r.s, &[Command::from_words([0xff, 0])]);
    assert!(r.s.drain_outputs().is_empty());
    // Enabled, then acknowledged: the queue retries the bad command, CMDQ_ERR again.
    r.s.mmio_write(regs::IRQ_CTRL.0, 4, irq_ctrl::GERROR_IRQEN.with(0, true));
    r.s.mmio_write(regs::GERRORN.0, 4, r.s.mmio_read(regs::GERROR.0, 4));
    assert_eq!(r.s.drain_outputs(), [Output::GerrorIrq]);
}

#[test]
fn e_page_request_hints_are_recorded() {
    let mem = memory();
    let r = rig(&mem, SmmuParams::default(), 3);
    let h = PageInHint {
        sid: 9,
        ssid: Some(3),
        addr: 0x7654_3210,
        span_pages: 4,
        pr: true,
        uw: true,
        ..PageInHint::default()
    };
    r.s.page_in_hint(&h);
    let recs = r.events();
    let x = &recs[0];
    assert_eq!(
        (x.id(), x.sid(), x.ssv(), x.ssid(), x.span()),
        (Ok(EventId::EPageRequest), 9, true, 3, 4)
    );
    assert_eq!(
        (x.pr(), x.pw(), x.px(), x.ur(), x.uw(), x.ux()),
        (true, false, false, false, true, false)
    );
    assert_eq!(x.input_addr(), 0x7654_3000);
    // Hand-checked against §7.3.19: event 0x24, SSV [11], SubstreamID [31:12], StreamID
    // [63:32]; pR [103], uW [98], Span [115:108]; InputAddr[63:12] in [191:140].
    assert_eq!(x.words()[0], 0x24 | 1 << 11 | 3 << 12 | 9 << 32);
    assert_eq!(x.words()[1], 1 << 39 | 1 << 34 | 4 << 44);
    assert_eq!(x.words()[2], 0x7654_3000);
    // SMMUEN == 0: dropped, counted.
    set_cr0(&r.s, cr0::SMMUEN, false);
    r.s.page_in_hint(&h);
    assert!(r.events().is_empty());
    assert_eq!(r.s.stats().page_in_hints_dropped, 1);
}

//! The bounded outbox: device messages (ATC invalidations, PRG responses, CMD_SYNC MSI writes)
//! are never dropped and make the Command queue wait while the outbox is full; interrupts
//! (SEV, wired interrupts) coalesce while one is pending; page requests that may need an
//! answer are not taken while there is no room for one.

mod common;

use common::*;
use sviommu_memory::HostMemory;
use sviommu_smmuv3::hw::{Abort, Output, Smmu, SmmuParams, DEFAULT_OUTBOX_CAPACITY};
use sviommu_smmuv3::spec::regs::{self, cons, gerror, idr0};
use sviommu_smmuv3::spec::{Command, Opcode, PageRequest, SyncCs};

const QBASE: u64 = 0x8000;
/// 2^7 commands in the tests' Command queue.
const QLOG2: u8 = 7;
const SID: u32 = 5;
/// Where the tests' CMD_SYNCs write their MSI.
const SYNC_WORD: u64 = 0x1000;

fn params(capacity: usize) -> SmmuParams {
    let d = SmmuParams::default();
    let fields = [idr0::ATS, idr0::PRI, idr0::MSI, idr0::SEV];
    let i0 = fields.iter().fold(u64::from(d.idr0), |v, f| f.with(v, true));
    SmmuParams { idr0: u32::try_from(i0).unwrap(), outbox_capacity: capacity, ..d }
}

fn atc_inv(page: u64) -> Command {
    let mut c = Command::new(Opcode::AtcInv);
    c.set_sid(SID);
    c.set_address(page << 12);
    c
}

fn msi_sync(data: u32) -> Command {
    let mut c = sync();
    c.set_cs(SyncCs::SigIrq);
    c.set_msiaddress(SYNC_WORD);
    c.set_msidata(data);
    c
}

fn sev_sync() -> Command {
    let mut c = sync();
    c.set_cs(SyncCs::SigSev);
    c
}

/// Commands between CONS and PROD.
fn in_flight(s: &Smmu<&HostMemory>, q: &Cmdq) -> u64 {
    let wrap = 2u64 << QLOG2;
    let c = Cmdq::cons(s) & (wrap - 1);
    (u64::from(q.prod.to_reg(QLOG2)) + wrap - c) % wrap
}

#[test]
fn a_full_outbox_holds_cons_on_the_command_and_a_drain_resumes_it() {
    let mem = memory();
    let s = Smmu::new(&mem, params(2));
    let mut q = Cmdq::enable(&s, QBASE, QLOG2);
    q.submit(&mem, &s, &[atc_inv(1), atc_inv(2), atc_inv(3), msi_sync(9)]);
    // The third ATC_INV finds the outbox full: CONS stays on it, no CERROR.
    assert_eq!(Cmdq::cons(&s), 2);
    let g = s.mmio_read(regs::GERROR.0, 4) ^ s.mmio_read(regs::GERRORN.0, 4);
    assert!(!gerror::CMDQ_ERR.is_set(g) && cons::ERR.get(Cmdq::cons(&s)) == 0);
    assert_eq!(s.drain_outputs().len(), 2);
    // The drain let the queue go on; the CMD_SYNC's MSI comes after the third message.
    assert_eq!(Cmdq::cons(&s), 4);
    let rest = s.drain_outputs();
    assert!(matches!(rest[0], Output::AtcInvalidate { addr: 0x3000, .. }), "{rest:?}");
    assert_eq!(rest[1], Output::Msi { addr: SYNC_WORD, data: 9 });
}

/// What the embedder received.
#[derive(Default)]
struct Tally {
    pages: Vec<u64>,
    /// Pages received when each CMD_SYNC's MSI arrived, by its data.
    synced: Vec<(u32, usize)>,
    sevs: u64,
    drains: u64,
}

impl Tally {
    fn drain(&mut self, s: &Smmu<&HostMemory>, cap: usize) {
        self.drains += 1;
        let out = s.drain_outputs();
        let sevs = out.iter().filter(|o| matches!(o, Output::Sev)).count();
        assert!(sevs <= 1, "one SEV pending at most: {out:?}");
        assert!(out.len() <= cap + 1, "bounded: {}", out.len());
        for o in out {
            match o {
                Output::AtcInvalidate { addr, .. } => self.pages.push(addr >> 12),
                Output::Msi { addr: SYNC_WORD, data } => self.synced.push((data, self.pages.len())),
                Output::Sev => self.sevs += 1,
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn a_flood_of_atc_invalidations_loses_nothing_and_stays_bounded() {
    const CAP: usize = 16;
    const BATCHES: u32 = 200;
    let mem = memory();
    let s = Smmu::new(&mem, params(CAP));
    let mut q = Cmdq::enable(&s, QBASE, QLOG2);
    let mut tally = Tally::default();
    // Every eighth batch is larger than the outbox; the small ones between fit.
    let per_batch = |b: u32| if b % 8 == 0 { 20 } else { 2 };
    let mut first = 0;
    let mut ends = Vec::new();
    for batch in 0..BATCHES {
        let mut cmds: Vec<_> = (first..first + per_batch(batch)).map(atc_inv).collect();
        first += per_batch(batch);
        ends.push(first);
        cmds.extend([sev_sync(), msi_sync(batch + 1)]);
        // The driver waits for room in the queue, which moves only as the devices take
        // their messages.
        while (1u64 << QLOG2) - in_flight(&s, &q) < cmds.len() as u64 {
            tally.drain(&s, CAP);
        }
        q.submit(&mem, &s, &cmds);
        if batch % 4 == 3 {
            tally.drain(&s, CAP);
        }
    }
    while in_flight(&s, &q) != 0 {
        tally.drain(&s, CAP);
    }
    tally.drain(&s, CAP);
    assert_eq!(tally.pages, (0..first).collect::<Vec<_>>(), "none lost, in order");
    // Every CMD_SYNC completed, in order, each after the invalidations before it.
    let want: Vec<_> = (1..=BATCHES).collect();
    assert_eq!(tally.synced.iter().map(|&(d, _)| d).collect::<Vec<_>>(), want);
    for &(data, pages) in &tally.synced {
        let end = ends[usize::try_from(data).unwrap() - 1];
        assert!(pages as u64 >= end, "sync {data} after {pages} of {end} invalidations");
    }
    let st = s.outbox_stats();
    assert_eq!(st.messages, first + u64::from(BATCHES));
    assert!(st.max_messages <= CAP as u64);
    assert_eq!(st.interrupts, tally.sevs);
    assert_eq!(st.interrupts + st.interrupts_coalesced, u64::from(BATCHES));
    assert!(st.interrupts_coalesced > 0, "SEVs coalesced while one was pending: {st:?}");
    assert!(st.full > 0 && tally.drains >= u64::from(BATCHES / 4));
}

#[test]
fn a_page_request_waiting_for_an_answer_is_not_taken_without_room() {
    let mem = memory();
    let s = Smmu::new(&mem, params(1));
    let mut q = Cmdq::enable(&s, QBASE, QLOG2);
    q.submit(&mem, &s, &[atc_inv(1)]);
    let req = |last| {
        let mut p = PageRequest::default();
        p.set_sid(SID);
        p.set_page_address(0x5000);
        p.set_r(true);
        p.set_last(last);
        p.set_prgindex(3);
        p
    };
    // The PRI queue is disabled: a Last request is answered with Response Failure. With the
    // outbox full it is not taken; one that needs no answer is.
    assert!(!s.page_request(&req(true)));
    assert!(s.page_request(&req(false)));
    assert_eq!((s.stats().page_requests_busy, s.stats().page_requests_dropped), (1, 1));
    assert_eq!(s.drain_outputs().len(), 1);
    assert!(s.page_request(&req(true)));
    let out = s.drain_outputs();
    assert!(matches!(out.as_slice(), [Output::PriResponse { prg_index: 3, .. }]), "{out:?}");
    assert_eq!(SmmuParams::default().outbox_capacity, DEFAULT_OUTBOX_CAPACITY);
}

/// An SMMU holding `capacity` device messages whose StreamID 0 stalls its stage-1 faults
/// (CD.S, empty tables), with the Event queue and the Command queue enabled.
fn stalling(mem: &HostMemory, capacity: usize) -> (Smmu<&HostMemory>, Cmdq) {
    use sviommu_pgtable::vmsa::{Granule as PtGranule, VmsaS1};
    let s = Smmu::new(mem, params(capacity));
    let mut fr = frames();
    let s1 = VmsaS1::create(mem, &mut fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    let cd_at = alloc(mem, &mut fr, 12);
    let mut cd = cd_for(&s1, 1);
    cd.set_s(true);
    write_cd(mem, cd_at, &cd);
    let eq = alloc(mem, &mut fr, 12);
    single_ste(mem, &mut fr, &s, &ste_s1(cd_at, 0, None));
    let b = regs::queue_base::ADDR.set(0, eq >> 5);
    s.mmio_write(regs::EVENTQ_BASE.0, 8, regs::queue_base::LOG2SIZE.set(b, 7));
    let v = s.mmio_read(regs::CR0.0, 4);
    s.mmio_write(regs::CR0.0, 4, regs::cr0::EVENTQEN.with(v, true));
    let q = Cmdq::enable(&s, QBASE, QLOG2);
    (s, q)
}

fn stall_three(s: &Smmu<&HostMemory>) {
    for va in [0x1000, 0x2000, 0x3000] {
        assert!(matches!(s.translate(&read(0, va)), Err(Abort::Stalled(_))));
    }
}

fn stall_responses(out: &[Output]) -> usize {
    out.iter().filter(|o| matches!(o, Output::StallResolved { .. })).count()
}

#[test]
fn stall_responses_wait_for_room_and_none_is_lost() {
    let mem = memory();
    let (s, mut q) = stalling(&mem, 1);
    stall_three(&s);
    // CMD_STALL_TERM answers as many stalls as the outbox has room for and waits on the rest.
    let mut term = Command::new(Opcode::StallTerm);
    term.set_sid(0);
    q.submit(&mem, &s, &[term, msi_sync(1)]);
    let mut answered = 0;
    let mut synced = false;
    for _ in 0..8 {
        let out = s.drain_outputs();
        answered += stall_responses(&out);
        synced |= out.contains(&Output::Msi { addr: SYNC_WORD, data: 1 });
        // CONS stays on CMD_STALL_TERM until its last response is in the outbox.
        assert!(answered + 1 >= 3 || Cmdq::cons(&s) == 0, "{answered}");
    }
    assert_eq!((answered, synced, s.stalled_transactions()), (3, true, 0));
    // Clearing SMMUEN terminates every stall; responses without room wait in their STAGs.
    stall_three(&s);
    q.submit(&mem, &s, &[atc_inv(1)]);
    let v = s.mmio_read(regs::CR0.0, 4);
    s.mmio_write(regs::CR0.0, 4, regs::cr0::SMMUEN.with(v, false));
    assert_eq!(s.stalled_transactions(), 0);
    let answered: usize = (0..8).map(|_| stall_responses(&s.drain_outputs())).sum();
    assert_eq!(answered, 3, "every terminated stall answered once");
    assert_eq!(s.stats().stalls_terminated, 6);
    assert!(s.outbox_stats().max_messages <= 1);
}

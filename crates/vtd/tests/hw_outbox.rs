//! The bounded outbox: device messages (device-TLB invalidations, page group responses) are
//! never dropped and make the invalidation queue wait while the outbox is full; interrupt
//! messages coalesce while one is pending; page requests that may need an answer are not taken
//! while there is no room for one.

mod common;

use common::*;
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_vtd::hw::{
    MsiSource, Output, PageRequestMsg, PageRequestOutcome, Vtd, VtdParams, DEFAULT_OUTBOX_CAPACITY,
};
use sviommu_vtd::spec::inv::{DevTlbInv, InvWait};
use sviommu_vtd::spec::regs::{self, ecap, fsts, iqh, iqt, rtaddr::Ttm};

const RID: u16 = 0x0310;
/// Descriptors in the tests' one-page queue of 256-bit descriptors.
const QUEUE_SLOTS: u64 = 4096 / 32;

/// A legacy-mode unit with device-TLBs, holding `capacity` device messages, its queue enabled.
fn unit_with(m: &mut Machine, capacity: usize) -> Vtd<&HostMemory> {
    let rta = m.page();
    let p = VtdParams::default();
    let vtd =
        unit(m, VtdParams { ecap: ecap::DT.with(p.ecap, true), outbox_capacity: capacity, ..p });
    enable(&vtd, rta, Ttm::Legacy);
    enable_queue(&vtd);
    // Unmask the invalidation completion and fault events (IM is set out of reset).
    vtd.mmio_write(regs::IECTL.0, 4, 0);
    vtd.mmio_write(regs::FECTL.0, 4, 0);
    vtd
}

/// A device-TLB invalidation of page `n` of RID.
fn devtlb(n: u64) -> [u64; 4] {
    let mut d = DevTlbInv::new();
    d.set_sid(RID);
    d.set_addr(n << 12);
    d.words()
}

/// A wait descriptor writing `data` at STATUS_HPA and raising the completion event.
fn wait(data: u32) -> [u64; 4] {
    let mut w = InvWait::new();
    w.set_sw(true);
    w.set_if(true);
    w.set_status_addr(STATUS_HPA);
    w.set_status_data(data);
    w.words()
}

fn status(vtd: &Vtd<&HostMemory>) -> u64 {
    vtd.memory().read_u64(Hpa(STATUS_HPA)).unwrap() & 0xffff_ffff
}

/// Descriptor index of IQH and IQT.
fn head_tail(vtd: &Vtd<&HostMemory>) -> (u64, u64) {
    let h = iqh::QH.in_place(vtd.mmio_read(regs::IQH.0, 8)) / 32;
    let t = iqt::QT.in_place(vtd.mmio_read(regs::IQT.0, 8)) / 32;
    (h, t)
}

#[test]
fn a_full_outbox_holds_the_queue_at_the_descriptor_and_a_drain_resumes_it() {
    let mut m = Machine::new();
    let vtd = unit_with(&mut m, 2);
    submit(&vtd, &[devtlb(1), devtlb(2), devtlb(3), wait(7)]);
    // The third message finds the outbox full: IQH stays on it, no error, no status write.
    assert_eq!(head_tail(&vtd), (2, 4));
    assert_eq!(fsts::IQE.get(vtd.mmio_read(regs::FSTS.0, 4)), 0);
    assert_eq!(status(&vtd), 0, "the wait behind a waiting message has not completed");
    let first = vtd.drain_outputs();
    assert_eq!(first.len(), 2, "{first:?}");
    // The drain let the queue go on: the third message and the wait.
    assert_eq!((head_tail(&vtd), status(&vtd)), ((4, 4), 7));
    let rest = vtd.drain_outputs();
    assert!(matches!(rest[0], Output::DevTlbInvalidation(d) if d.addr == 3 << 12), "{rest:?}");
    assert!(matches!(rest[1], Output::Msi { source: MsiSource::InvalidationCompletion, .. }));
    assert_eq!(vtd.outbox_stats().max_messages, 2);
}

/// What the embedder received.
#[derive(Default)]
struct Tally {
    pages: Vec<u64>,
    interrupts: u64,
    drains: u64,
}

impl Tally {
    fn drain(&mut self, vtd: &Vtd<&HostMemory>, cap: usize) {
        self.drains += 1;
        let out = vtd.drain_outputs();
        let msis = out.iter().filter(|o| matches!(o, Output::Msi { .. })).count();
        assert!(msis <= 1, "one completion interrupt pending at most: {out:?}");
        assert!(out.len() <= cap + 1, "bounded: {}", out.len());
        self.interrupts += msis as u64;
        for o in out {
            match o {
                Output::DevTlbInvalidation(d) => self.pages.push(d.addr >> 12),
                Output::Msi { source: MsiSource::InvalidationCompletion, .. } => {}
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn a_flood_of_device_tlb_invalidations_loses_nothing_and_stays_bounded() {
    const CAP: usize = 16;
    const BATCHES: u64 = 200;
    // Every eighth batch is larger than the outbox; the small ones between fit.
    let per_batch = |b: u64| if b % 8 == 0 { 20 } else { 2 };
    let mut first = 0;
    let mut ends = Vec::new();
    let mut m = Machine::new();
    let vtd = unit_with(&mut m, CAP);
    let mut tally = Tally::default();
    for batch in 0..BATCHES {
        let mut descs: Vec<_> = (first..first + per_batch(batch)).map(devtlb).collect();
        first += per_batch(batch);
        ends.push(first);
        descs.push(wait(u32::try_from(batch + 1).unwrap()));
        // The driver waits for room in the queue, which moves only as the devices take
        // their messages.
        loop {
            let (h, t) = head_tail(&vtd);
            let free = (h + QUEUE_SLOTS - t - 1) % QUEUE_SLOTS;
            if free >= descs.len() as u64 {
                break;
            }
            tally.drain(&vtd, CAP);
        }
        submit(&vtd, &descs);
        // A wait completes only once every message before it was sent.
        let done = usize::try_from(status(&vtd)).unwrap();
        let sent = vtd.outbox_stats().messages;
        assert!(done == 0 || sent >= ends[done - 1], "batch {batch}: {sent} sent");
        // Software acknowledges the completion status, so the next wait raises the event again.
        vtd.mmio_write(regs::ICS.0, 4, 1);
        if batch % 4 == 3 {
            tally.drain(&vtd, CAP);
        }
    }
    while head_tail(&vtd).0 != head_tail(&vtd).1 {
        tally.drain(&vtd, CAP);
    }
    tally.drain(&vtd, CAP);
    assert_eq!(status(&vtd), BATCHES, "the queue completed once drained");
    assert_eq!(tally.pages, (0..first).collect::<Vec<_>>(), "none lost, in order");
    let s = vtd.outbox_stats();
    assert_eq!(s.messages, first);
    assert!(s.max_messages <= CAP as u64);
    assert_eq!(s.interrupts, tally.interrupts);
    assert!(s.interrupts_coalesced > 0, "completions coalesced while one was pending: {s:?}");
    assert!(s.full > 0 && tally.drains >= BATCHES / 4);
}

#[test]
fn a_page_request_waiting_for_an_answer_is_not_taken_without_room() {
    let mut m = Machine::new();
    let vtd = unit_with(&mut m, 1);
    submit(&vtd, &[devtlb(1)]);
    let msg = |lpig| PageRequestMsg {
        rid: RID,
        addr: 0x5000,
        read: true,
        prgi: 3,
        lpig,
        ..Default::default()
    };
    // Legacy mode refuses page requests (32h) and answers those that wait; with the outbox
    // full the one that waits is not taken at all, and nothing is recorded for it.
    assert_eq!(vtd.page_request(&msg(true)), PageRequestOutcome::Busy);
    assert!(matches!(vtd.page_request(&msg(false)), PageRequestOutcome::Blocked(_)));
    assert_eq!(vtd.ats_stats().page_requests_busy, 1);
    assert_eq!(vtd.drain_outputs().len(), 2, "the invalidation and the fault event");
    assert!(matches!(vtd.page_request(&msg(true)), PageRequestOutcome::Blocked(_)));
    let out = vtd.drain_outputs();
    assert!(matches!(out.as_slice(), [Output::PageGroupResponse(r)] if r.prgi() == 3), "{out:?}");
    assert_eq!(VtdParams::default().outbox_capacity, DEFAULT_OUTBOX_CAPACITY);
}

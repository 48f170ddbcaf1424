//! The stall model (§3.12.2): a Translation-related fault of a stage configured to stall
//! (CD.S at stage 1, STE.S2S at stage 2, §5.5) holds the transaction instead of terminating it,
//! and records the event with Stall == 1 and a STAG. Software resolves it with CMD_RESUME
//! (§4.7.1: retry as though it had just arrived, or terminate) or CMD_STALL_TERM (§4.7.2: every
//! stalled transaction of a StreamID); clearing SMMUEN terminates them all (§6.3.9.6). The
//! device gets its response then, as [`Output::StallResolved`].
//!
//! The table: one slot per STAG, at most SMMU_IDR5.STALL_MAX slots; the STAG is the slot's
//! index (the format is IMPLEMENTATION SPECIFIC, §3.12.2). A STAG is reused only after its
//! transaction was resumed or terminated, as §3.12.2 requires.
//!
//! IMPDEF choices, each also marked where it is made:
//! - A retried transaction that stalls again keeps its STAG (its slot was just freed).
//! - Resolution is immediate: CMD_RESUME retries or terminates when it is consumed, so no
//!   transaction early-retries (§3.12.2.2 permits, never requires, early retry).
//! - Duplicate stall records are never suppressed (§3.12.2.1 permits suppression).
//! - A stall whose record the Event queue cannot take (§7.2.1: disabled, full, or
//!   EVENTQ_ABT_ERR active; or the write aborted) stays stalled without a record and is
//!   retried as though it had just arrived when the queue is writable again, so its record, if
//!   any, reflects the configuration of that time (what §4.7.3 requires after a CMD_SYNC).
//! - DEVIATION: with every STAG in use, the SMMU would exert backpressure on its ingress port
//!   (§3.12.2.3); the model cannot hold a caller, so such a fault is terminated with an abort
//!   and recorded with Stall == 0, as §3.12 permits for streams an implementation treats as
//!   terminating, and counted ([`super::QueueStats::stalls_refused`]).
//!
//! - A response to a device is a device message in the bounded outbox, never dropped. CMD_RESUME
//!   and CMD_STALL_TERM wait in the Command queue while the outbox is full (`cmdq`); a retry
//!   of an unrecorded stall waits until the next drain; the responses of stalls that clearing
//!   SMMUEN terminated wait in their STAGs (still in use, §3.12.2, until the device has its
//!   response) and go out as the embedder drains.
//!
//! E_PAGE_REQUEST (§3.12.4.1, §7.3.19) is a hint a client device sends through an
//! IMPLEMENTATION DEFINED mechanism, here [`Smmu::page_in_hint`].

use std::sync::MutexGuard;

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::WalkCtx;

use super::cmdq::Step;
use super::eventq::bump;
use super::mmio::RegFile;
use super::translate::Tr;
use super::{Abort, Event, Output, Smmu, Transaction, Translation};
use crate::spec::regs::cr0;
use crate::spec::{EventId, EventRecord, ResumeAction};

/// What a device receives for a stalled transaction once it is resolved (§4.7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StallResult {
    /// Retried and translated: the transaction proceeds with this translation.
    Translated(Translation),
    /// Terminated with an abort: CMD_RESUME terminate (with Ab == 1, or always with
    /// SMMU_IDR0.TERM_MODEL == 1), CMD_STALL_TERM, SMMUEN cleared, or a retry that faulted
    /// with a terminating fault (whose event is recorded as for any transaction).
    Aborted,
    /// Terminated with RAZ/WI behaviour: CMD_RESUME terminate with Ab == 0, when
    /// SMMU_IDR0.TERM_MODEL == 0.
    RazWi,
}

/// A stalled transaction.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stalled {
    /// The transaction as it arrived, to retry it.
    t: Transaction,
    /// Whether its stall record reached the Event queue.
    recorded: bool,
    /// Resolved, with this response waiting for room in the outbox: no longer stalled.
    answer: Option<StallResult>,
}

impl Stalled {
    /// Still stalled (not resolved with its response waiting).
    fn stalled(&self) -> bool {
        self.answer.is_none()
    }
}

/// The stalled transactions, one slot per STAG.
#[derive(Debug, Default)]
pub(super) struct Table {
    slots: Vec<Option<Stalled>>,
}

impl Table {
    /// A free STAG below `max`: `prefer` if it is free, else the lowest.
    fn alloc(&mut self, max: u16, prefer: Option<u16>) -> Option<u16> {
        let free = |slots: &[Option<Stalled>], i: usize| slots.get(i).is_none_or(Option::is_none);
        if let Some(p) = prefer.filter(|&p| p < max && free(&self.slots, usize::from(p))) {
            return Some(p);
        }
        let first = (0..max).find(|&i| free(&self.slots, usize::from(i)))?;
        Some(first)
    }

    fn put(&mut self, stag: u16, s: Stalled) {
        let i = usize::from(stag);
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(s);
        }
    }

    /// Takes the transaction at `stag` if it belongs to StreamID `sid` (§4.7.1: the STAG is
    /// checked against the StreamID).
    fn take(&mut self, sid: u32, stag: u16) -> Option<Stalled> {
        let slot = self.slots.get_mut(usize::from(stag))?;
        if slot.is_some_and(|s| s.stalled() && s.t.sid == sid) {
            return slot.take();
        }
        None
    }

    /// Whether a transaction of StreamID `sid` is stalled with `stag`.
    fn holds(&self, sid: u32, stag: u16) -> bool {
        let slot = self.slots.get(usize::from(stag));
        slot.is_some_and(|s| s.is_some_and(|s| s.stalled() && s.t.sid == sid))
    }

    /// Takes the transaction at `stag` if its record was not written.
    fn take_unrecorded(&mut self, stag: u16) -> Option<Stalled> {
        let slot = self.slots.get_mut(usize::from(stag))?;
        if slot.is_some_and(|s| s.stalled() && !s.recorded) {
            return slot.take();
        }
        None
    }

    /// Takes up to `max` stalled transactions `sel` selects, with their STAGs.
    fn take_where(&mut self, max: usize, sel: impl Fn(&Stalled) -> bool) -> Vec<(u16, Stalled)> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if out.len() >= max {
                break;
            }
            if slot.is_some_and(|s| s.stalled() && sel(&s)) {
                if let (Ok(stag), Some(s)) = (u16::try_from(i), slot.take()) {
                    out.push((stag, s));
                }
            }
        }
        out
    }

    /// The STAGs of the stalls `sel` selects.
    fn stags(&self, sel: impl Fn(&Stalled) -> bool) -> Vec<u16> {
        let pick = |(i, s): (usize, &Option<Stalled>)| {
            s.filter(|s| sel(s)).and_then(|_| u16::try_from(i).ok())
        };
        self.slots.iter().enumerate().filter_map(pick).collect()
    }

    /// How many transactions are stalled.
    fn len(&self) -> usize {
        self.slots.iter().flatten().filter(|s| s.stalled()).count()
    }
}

/// An E_PAGE_REQUEST hint (§3.12.4.1, §7.3.19): a client device expects to access `span_pages`
/// 4KB pages from `addr` soon, with the listed accesses. The names are the record's fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PageInHint {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID, if the hint has one.
    pub ssid: Option<u32>,
    /// The first address (`InputAddr[63:12]` is recorded).
    pub addr: u64,
    /// Span: the number of 4KB pages.
    pub span_pages: u8,
    /// pR, pW, pX: privileged read, write, execute anticipated.
    pub pr: bool,
    /// pW.
    pub pw: bool,
    /// pX.
    pub px: bool,
    /// uR, uW, uX: unprivileged read, write, execute anticipated.
    pub ur: bool,
    /// uW.
    pub uw: bool,
    /// uX.
    pub ux: bool,
}

impl PageInHint {
    /// The E_PAGE_REQUEST record.
    #[must_use]
    pub fn to_record(&self) -> EventRecord {
        let mut rec = EventRecord::new(EventId::EPageRequest);
        rec.set_sid(self.sid);
        rec.set_ssv(self.ssid.is_some());
        rec.set_ssid(self.ssid.unwrap_or(0));
        // §7.3.19: the record holds InputAddr[63:12].
        rec.set_input_addr(self.addr & !low_mask(12));
        rec.set_span(self.span_pages);
        rec.set_pr(self.pr);
        rec.set_pw(self.pw);
        rec.set_px(self.px);
        rec.set_ur(self.ur);
        rec.set_uw(self.uw);
        rec.set_ux(self.ux);
        rec
    }
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    fn stall_table(&self) -> MutexGuard<'_, Table> {
        self.stalls.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many transactions are stalled now.
    pub fn stalled_transactions(&self) -> usize {
        self.stall_table().len()
    }

    /// Stalls transaction `t` for fault `e` (its stage is configured to stall), in slot
    /// `prefer` if it is free: records the event with Stall == 1 and the STAG. The register
    /// file is held.
    pub(super) fn stall_locked(
        &self,
        r: &mut RegFile,
        t: &Transaction,
        mut e: Event,
        prefer: Option<u16>,
    ) -> Abort {
        let c = &self.counters;
        let mut table = self.stall_table();
        let Some(stag) = table.alloc(self.caps.stall_max, prefer) else {
            drop(table);
            // DEVIATION: every STAG is in use; terminated, recorded with Stall == 0 (see the
            // module documentation).
            bump(&c.stalls_refused);
            e.stag = None;
            e.record = true;
            self.record_locked(r, &e.to_record(), false);
            return Abort::Event(e);
        };
        e.stag = Some(stag);
        e.record = true;
        bump(&c.stalls);
        // §7.2.1: a stall record is not discarded: kept unrecorded, and retried later.
        let recorded = self.record_locked(r, &e.to_record(), true);
        if !recorded {
            bump(&c.stall_records_deferred);
        }
        table.put(stag, Stalled { t: *t, recorded, answer: None });
        Abort::Stalled(e)
    }

    /// CMD_RESUME (§4.7.1): retries or terminates the transaction stalled with `stag` on
    /// StreamID `sid`; nothing if there is none. It waits while the outbox has no room for the
    /// response. The register file is held.
    pub(super) fn resume(
        &self,
        r: &mut RegFile,
        sid: u32,
        stag: u16,
        action: ResumeAction,
    ) -> Step {
        if !self.stall_table().holds(sid, stag) {
            return Step::Done;
        }
        if !self.room_for_message() {
            self.outbox.wait();
            return Step::Waiting;
        }
        let Some(s) = self.stall_table().take(sid, stag) else {
            return Step::Done;
        };
        match action {
            ResumeAction::Retry => {
                bump(&self.counters.stalls_retried);
                self.retry_locked(r, stag, &s.t);
            }
            ResumeAction::TerminateAbort | ResumeAction::TerminateRazWi => {
                bump(&self.counters.stalls_terminated);
                // §4.7.1: Ab is IGNORED with TERM_MODEL == 1: always an abort.
                let razwi = action == ResumeAction::TerminateRazWi && !self.caps.term_model;
                let result = if razwi { StallResult::RazWi } else { StallResult::Aborted };
                self.respond(sid, stag, result);
            }
        }
        Step::Done
    }

    /// CMD_STALL_TERM (§4.7.2): terminates every transaction stalled on StreamID `sid`, as
    /// many as the outbox has room to answer; it waits for the rest.
    pub(super) fn stall_term(&self, sid: u32) -> Step {
        let room = self.outbox.room();
        let taken = self.stall_table().take_where(room, |s| s.t.sid == sid);
        for (stag, _) in &taken {
            bump(&self.counters.stalls_terminated);
            self.respond(sid, *stag, StallResult::Aborted);
        }
        if self.stall_table().stags(|s| s.stalled() && s.t.sid == sid).is_empty() {
            Step::Done
        } else {
            self.outbox.wait();
            Step::Waiting
        }
    }

    /// §6.3.9.6: SMMUEN cleared terminates every stalled transaction. Responses the outbox
    /// has no room for wait in their STAGs until a drain ([`Self::send_stall_responses`]).
    pub(super) fn terminate_all_stalls(&self) {
        let mut table = self.stall_table();
        for slot in table.slots.iter_mut().flatten().filter(|s| s.stalled()) {
            bump(&self.counters.stalls_terminated);
            slot.answer = Some(StallResult::Aborted);
        }
        drop(table);
        self.send_stall_responses();
    }

    /// Sends the responses that wait in their STAGs, in STAG order, while the outbox has room;
    /// each STAG is free once its response is sent.
    pub(super) fn send_stall_responses(&self) {
        let mut table = self.stall_table();
        for stag in table.stags(|s| !s.stalled()) {
            if !self.room_for_message() {
                self.outbox.wait();
                return;
            }
            let slot = table.slots.get_mut(usize::from(stag)).and_then(Option::take);
            if let Some(Stalled { t, answer: Some(result), .. }) = slot {
                self.respond(t.sid, stag, result);
            }
        }
    }

    /// Sends a stalled transaction's response; every caller has made sure of room in the
    /// outbox with the register file held.
    fn respond(&self, sid: u32, stag: u16, result: StallResult) {
        let sent = self.message(Output::StallResolved { sid, stag, result });
        debug_assert!(sent, "a stall response without room in the outbox");
    }

    /// §7.2.1: while the Event queue is writable, retries the stalls whose record it could
    /// not take, as though they had just arrived; each waits for room for its response in
    /// the outbox. The register file is held.
    pub(super) fn retry_unrecorded_stalls(&self, r: &mut RegFile) {
        if !self.eventq_writable(r) || !cr0::SMMUEN.is_set(u64::from(r.cr0ack)) {
            return;
        }
        // Each stall once, in STAG order; each retry may fill the queue again.
        let stags = self.stall_table().stags(|s| s.stalled() && !s.recorded);
        for stag in stags {
            if !self.eventq_writable(r) {
                break;
            }
            if !self.room_for_message() {
                self.outbox.wait();
                break;
            }
            let taken = self.stall_table().take_unrecorded(stag);
            if let Some(s) = taken {
                bump(&self.counters.stalls_retried);
                self.retry_locked(r, stag, &s.t);
            }
        }
    }

    /// Retries stalled transaction `t` (its slot `stag` already freed) as though it had just
    /// arrived (§3.12.2); the device gets the result, or it stalls again. The register file is
    /// held: the translation itself takes no register lock.
    fn retry_locked(&self, r: &mut RegFile, stag: u16, t: &Transaction) {
        let tr = Tr::new(self.caches.epochs());
        let mut cx = WalkCtx::new(&self.mem, ());
        let sid = t.sid;
        let result = match self.translate_inner(&mut cx, t, &tr) {
            Ok(x) => StallResult::Translated(x),
            // IMPDEF: stalled again, in the same slot (so with the same STAG).
            Err(Abort::Stalled(e)) => match self.stall_locked(r, t, e, Some(stag)) {
                Abort::Stalled(_) => return,
                _ => StallResult::Aborted,
            },
            Err(a) => {
                self.report_locked(r, t, a);
                StallResult::Aborted
            }
        };
        self.respond(sid, stag, result);
    }

    /// An E_PAGE_REQUEST hint from a client device (§3.12.4.1): recorded in the Event queue
    /// like any event. IMPDEF: with SMMUEN == 0 the hint is dropped (and counted); a hint for a
    /// StreamID the Stream table does not hold is recorded all the same (hints are not checked
    /// against configuration).
    pub fn page_in_hint(&self, h: &PageInHint) {
        let mut r = self.lock();
        if !cr0::SMMUEN.is_set(u64::from(r.cr0ack)) {
            bump(&self.counters.page_in_hints_dropped);
            return;
        }
        self.record_locked(&mut r, &h.to_record(), false);
    }
}

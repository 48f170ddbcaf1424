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
//! E_PAGE_REQUEST (§3.12.4.1, §7.3.19) is a hint a client device sends through an
//! IMPLEMENTATION DEFINED mechanism, here [`Smmu::page_in_hint`].

use std::sync::MutexGuard;

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::WalkCtx;

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
        if slot.is_some_and(|s| s.t.sid == sid) {
            return slot.take();
        }
        None
    }

    /// Takes the transaction at `stag` if its record was not written.
    fn take_unrecorded(&mut self, stag: u16) -> Option<Stalled> {
        let slot = self.slots.get_mut(usize::from(stag))?;
        if slot.is_some_and(|s| !s.recorded) {
            return slot.take();
        }
        None
    }

    /// Takes every transaction `sel` selects, with its STAG.
    fn take_where(&mut self, sel: impl Fn(&Stalled) -> bool) -> Vec<(u16, Stalled)> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.is_some_and(|s| sel(&s)) {
                if let (Ok(stag), Some(s)) = (u16::try_from(i), slot.take()) {
                    out.push((stag, s));
                }
            }
        }
        out
    }

    /// The STAGs of the stalls whose record was not written.
    fn unrecorded(&self) -> Vec<u16> {
        let unrec = |(i, s): (usize, &Option<Stalled>)| {
            s.filter(|s| !s.recorded).and_then(|_| u16::try_from(i).ok())
        };
        self.slots.iter().enumerate().filter_map(unrec).collect()
    }

    /// How many transactions are stalled.
    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
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
        table.put(stag, Stalled { t: *t, recorded });
        Abort::Stalled(e)
    }

    /// CMD_RESUME (§4.7.1): retries or terminates the transaction stalled with `stag` on
    /// StreamID `sid`; nothing if there is none. The register file is held.
    pub(super) fn resume(&self, r: &mut RegFile, sid: u32, stag: u16, action: ResumeAction) {
        let Some(s) = self.stall_table().take(sid, stag) else {
            return;
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
                self.push(Output::StallResolved { sid, stag, result });
            }
        }
    }

    /// CMD_STALL_TERM (§4.7.2): terminates every transaction stalled on StreamID `sid`.
    pub(super) fn stall_term(&self, sid: u32) {
        let taken = self.stall_table().take_where(|s| s.t.sid == sid);
        self.abort_stalls(&taken);
    }

    /// §6.3.9.6: SMMUEN cleared terminates every stalled transaction.
    pub(super) fn terminate_all_stalls(&self) {
        let taken = self.stall_table().take_where(|_| true);
        self.abort_stalls(&taken);
    }

    fn abort_stalls(&self, taken: &[(u16, Stalled)]) {
        for (stag, s) in taken {
            bump(&self.counters.stalls_terminated);
            let (sid, stag) = (s.t.sid, *stag);
            self.push(Output::StallResolved { sid, stag, result: StallResult::Aborted });
        }
    }

    /// §7.2.1: while the Event queue is writable, retries the stalls whose record it could
    /// not take, as though they had just arrived. The register file is held.
    pub(super) fn retry_unrecorded_stalls(&self, r: &mut RegFile) {
        if !self.eventq_writable(r) || !cr0::SMMUEN.is_set(u64::from(r.cr0ack)) {
            return;
        }
        // Each stall once, in STAG order; each retry may fill the queue again.
        let stags = self.stall_table().unrecorded();
        for stag in stags {
            if !self.eventq_writable(r) {
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
        self.push(Output::StallResolved { sid, stag, result });
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

//! The Event queue (§3.5, §7.2, §7.4): recorded events written as 32-byte records at
//! SMMU_EVENTQ_PROD, the overflow flag, queue access aborts, and the queue interrupt.
//!
//! Every termination passes through `Smmu::report`, which hands the events the SMMU records
//! ([`super::Event::record`]) to `Smmu::record_locked`. This is the fault path, not the hot path: it
//! takes the register-file lock.
//!
//! - §3.5.1, §6.3.29: the queue holds 2^LOG2SIZE entries (LOG2SIZE capped at SMMU_IDR1.EVENTQS)
//!   at EVENTQ_BASE.ADDR, aligned down to the queue's size (at least 32 bytes).
//! - §7.4: a record for a full queue is discarded. If no overflow is active
//!   (EVENTQ_PROD.OVFLG == EVENTQ_CONS.OVACKFLG) OVFLG toggles; an active overflow does not
//!   toggle it again. The queue keeps accepting records once software frees entries, whether
//!   or not it has acknowledged the overflow (the Event queue, unlike the PRI queue, does not
//!   stop). Every discarded record is counted ([`QueueStats`]).
//! - §7.2.2: a record write that aborts activates GERROR.EVENTQ_ABT_ERR; the record is lost and
//!   PROD does not move (IMPDEF: the abort is synchronous). §7.2.1, §7.5: while the error is
//!   active the queue is not writable, so later records are discarded (counted with the
//!   aborted ones) until software acknowledges it through GERRORN.
//! - With SMMU_CR0.EVENTQEN == 0 events are not recorded (§6.3.9); they are counted too.
//! - §7.2.1: the record of a stall is never discarded. If the queue is not writable (disabled,
//!   full, or EVENTQ_ABT_ERR active) the transaction stays stalled without a record, and is
//!   retried as though it had just arrived once the queue is writable again (`stall`); a full
//!   queue does not enter overflow for it.
//! - §3.18: the Event queue interrupt fires when a record makes the queue non-empty and
//!   SMMU_IRQ_CTRL.EVENTQ_IRQEN is set: an MSI from EVENTQ_IRQ_CFG0/1 with SMMU_IDR0.MSI (none
//!   while the address is 0), otherwise the wired interrupt ([`Output::EventqIrq`]).
//!   IMPDEF: the MSI write always succeeds (MSI_EVENTQ_ABT_ERR is never raised): the outbox is
//!   not memory.

use std::sync::atomic::{AtomicU64, Ordering};

use sviommu_memory::bits::{low_mask, Field32};
use sviommu_memory::{Hpa, PhysMemory};

use super::mmio::RegFile;
use super::{low32, Irq, Output, Smmu};
use crate::spec::event::EVENT_BYTES;
use crate::spec::regs::{
    cons, cr0, gerror, idr1, irq_cfg0, irq_cfg1, irq_ctrl, prod, queue_base, QueuePointer,
};
use crate::spec::EventRecord;

/// What happened to the events and page requests the SMMU had to record, since reset. Nothing
/// the SMMU should have recorded disappears without being counted here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Event records written to the Event queue.
    pub events_written: u64,
    /// Recordable events discarded because the Event queue was full (§7.4).
    pub events_overflowed: u64,
    /// Recordable events discarded because SMMU_CR0.EVENTQEN was 0.
    pub events_disabled: u64,
    /// Recordable events lost because the record write aborted (GERROR.EVENTQ_ABT_ERR).
    pub events_aborted: u64,
    /// Page requests written to the PRI queue.
    pub page_requests_written: u64,
    /// Page requests discarded: the PRI queue was full, in overflow, or disabled (§8.1).
    pub page_requests_dropped: u64,
    /// Page requests lost because the entry write aborted (GERROR.PRIQ_ABT_ERR).
    pub page_requests_aborted: u64,
    /// Page requests not taken because the outbox had no room for an answer the SMMU might
    /// owe (the device sends them again).
    pub page_requests_busy: u64,
    /// Transactions stalled (a retry that stalls again counts again).
    pub stalls: u64,
    /// Faults configured to stall that were terminated instead because every STAG
    /// (SMMU_IDR5.STALL_MAX) held a stalled transaction; recorded with Stall == 0.
    pub stalls_refused: u64,
    /// Stall records not written because the Event queue was not writable (§7.2.1): the
    /// transaction stayed stalled and is retried once the queue is writable.
    pub stall_records_deferred: u64,
    /// Stalled transactions retried (CMD_RESUME Retry, or a deferred record's retry).
    pub stalls_retried: u64,
    /// Stalled transactions terminated: CMD_RESUME Terminate, CMD_STALL_TERM, SMMUEN cleared.
    pub stalls_terminated: u64,
    /// E_PAGE_REQUEST hints ignored because the SMMU was disabled (§3.12.4.1: a hint may be
    /// dropped).
    pub page_in_hints_dropped: u64,
}

/// The counters behind [`QueueStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    events_written: AtomicU64,
    events_overflowed: AtomicU64,
    events_disabled: AtomicU64,
    events_aborted: AtomicU64,
    pub(super) page_requests_written: AtomicU64,
    pub(super) page_requests_dropped: AtomicU64,
    pub(super) page_requests_aborted: AtomicU64,
    pub(super) page_requests_busy: AtomicU64,
    pub(super) stalls: AtomicU64,
    pub(super) stalls_refused: AtomicU64,
    pub(super) stall_records_deferred: AtomicU64,
    pub(super) stalls_retried: AtomicU64,
    pub(super) stalls_terminated: AtomicU64,
    pub(super) page_in_hints_dropped: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// An output queue's place in memory and its size, from its BASE register.
#[derive(Clone, Copy, Debug)]
pub(super) struct QueueGeometry {
    pub base: u64,
    pub log2size: u8,
}

impl QueueGeometry {
    /// §6.3.29, §6.3.33: LOG2SIZE capped at the ID register's maximum `max_log2size`; the base
    /// aligned down to the queue's size, and to at least 32 bytes.
    pub fn from_base(base_reg: u64, max_log2size: u64, entry_lg2: u8) -> Self {
        let qs64 = queue_base::LOG2SIZE.get(base_reg).min(max_log2size);
        let log2size = u8::try_from(qs64).unwrap_or(QueuePointer::MAX_LOG2SIZE);
        let align = log2size.saturating_add(entry_lg2).max(5);
        Self { base: queue_base::ADDR.in_place(base_reg) & !low_mask(align), log2size }
    }

    /// The address of entry `p.index`.
    pub fn entry(&self, p: QueuePointer, entry_bytes: u64) -> u64 {
        self.base.saturating_add(u64::from(p.index).saturating_mul(entry_bytes))
    }
}

/// What one attempt to put an entry on an output queue did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Put {
    /// Written; `was_empty` says whether the queue was empty before.
    Written { was_empty: bool },
    /// The queue was full: discarded, OVFLG toggled unless an overflow was already active.
    Overflowed,
    /// The write aborted.
    Aborted,
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// What the SMMU recorded, discarded and lost so far.
    pub fn stats(&self) -> QueueStats {
        let c = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        QueueStats {
            events_written: ld(&c.events_written),
            events_overflowed: ld(&c.events_overflowed),
            events_disabled: ld(&c.events_disabled),
            events_aborted: ld(&c.events_aborted),
            page_requests_written: ld(&c.page_requests_written),
            page_requests_dropped: ld(&c.page_requests_dropped),
            page_requests_aborted: ld(&c.page_requests_aborted),
            page_requests_busy: ld(&c.page_requests_busy),
            stalls: ld(&c.stalls),
            stalls_refused: ld(&c.stalls_refused),
            stall_records_deferred: ld(&c.stall_records_deferred),
            stalls_retried: ld(&c.stalls_retried),
            stalls_terminated: ld(&c.stalls_terminated),
            page_in_hints_dropped: ld(&c.page_in_hints_dropped),
        }
    }

    /// The Event queue's place and size.
    fn eventq_geometry(&self, r: &RegFile) -> QueueGeometry {
        let eventqs = idr1::EVENTQS.get(u64::from(self.params.idr1));
        QueueGeometry::from_base(r.eventq_base, eventqs, 5)
    }

    /// §7.2.1: the Event queue is writable: enabled, not full, no EVENTQ_ABT_ERR active.
    pub(super) fn eventq_writable(&self, r: &RegFile) -> bool {
        let qs = self.eventq_geometry(r).log2size;
        let wr = QueuePointer::from_reg(low32(prod::WR.get(u64::from(r.eventq_prod))), qs);
        let rd = QueuePointer::from_reg(low32(cons::RD.get(u64::from(r.eventq_cons))), qs);
        cr0::EVENTQEN.is_set(u64::from(r.cr0ack))
            && !active(r, gerror::EVENTQ_ABT_ERR)
            && !QueuePointer::is_full(wr, rd)
    }

    /// Records `rec` in the Event queue as the SMMU records an event it raised itself (§7.2,
    /// §7.4): written at PROD with the queue interrupt, or discarded and counted when the
    /// queue is disabled, full (entering overflow) or its EVENTQ_ABT_ERR is active. Whether
    /// it was written. For an embedder whose events come from elsewhere: a virtual SMMU
    /// delivers the host's events for its guest's streams here.
    pub fn record_event(&self, rec: &EventRecord) -> bool {
        let mut r = self.lock();
        self.record_locked(&mut r, rec, false)
    }

    /// §7.4: an event the SMMU had to discard for want of room, though this queue is not full:
    /// the overflow condition (EVENTQ_PROD.OVFLG toggles unless an overflow is active) and its
    /// count. A virtual SMMU reports here that its host dropped events for the guest (iommufd's
    /// LOST_EVENTS), so the guest sees an overflow as it would on the hardware. Nothing
    /// happens while the queue is disabled (the event would not have been recorded: counted
    /// as such).
    pub fn discard_event(&self) {
        let mut r = self.lock();
        if !cr0::EVENTQEN.is_set(u64::from(r.cr0ack)) {
            bump(&self.counters.events_disabled);
            return;
        }
        bump(&self.counters.events_overflowed);
        let (p, c) = (u64::from(r.eventq_prod), u64::from(r.eventq_cons));
        if prod::OVFLG.get(p) == cons::OVACKFLG.get(c) {
            r.eventq_prod = low32(p ^ prod::OVFLG.mask());
        }
    }

    /// Writes `rec` to the Event queue, with the register file held; whether it was written.
    /// A record that is not written is counted, except a stall's (`stall`), which the caller
    /// keeps (§7.2.1: stall records are not discarded).
    pub(super) fn record_locked(&self, r: &mut RegFile, rec: &EventRecord, stall: bool) -> bool {
        let c = &self.counters;
        if !cr0::EVENTQEN.is_set(u64::from(r.cr0ack)) {
            if !stall {
                bump(&c.events_disabled);
            }
            return false;
        }
        if active(r, gerror::EVENTQ_ABT_ERR) {
            if !stall {
                bump(&c.events_aborted);
            }
            return false;
        }
        if stall && !self.eventq_writable(r) {
            // Full: no overflow for a record that is kept.
            return false;
        }
        let geo = self.eventq_geometry(r);
        let cons_reg = r.eventq_cons;
        let put = self.put_entry(geo, &mut r.eventq_prod, cons_reg, &rec.words(), EVENT_BYTES);
        match put {
            Put::Written { was_empty } => {
                bump(&c.events_written);
                if was_empty {
                    self.queue_irq(r, irq_ctrl::EVENTQ_IRQEN, r.eventq_irq_cfg0, r.eventq_irq_cfg1);
                }
                true
            }
            Put::Overflowed => {
                bump(&c.events_overflowed);
                false
            }
            Put::Aborted => {
                bump(&c.events_aborted);
                self.raise_locked(r, gerror::EVENTQ_ABT_ERR);
                false
            }
        }
    }

    /// Writes `words` at PROD of the queue `geo` and advances PROD (in `prod_reg`, with its
    /// wrap flag), or handles a full queue as §7.4 and §8.1 say: discarded, and OVFLG toggled
    /// unless PROD.OVFLG != CONS.OVACKFLG already.
    pub(super) fn put_entry(
        &self,
        geo: QueueGeometry,
        prod_reg: &mut u32,
        cons_reg: u32,
        words: &[u64],
        entry_bytes: u64,
    ) -> Put {
        let (p, c) = (u64::from(*prod_reg), u64::from(cons_reg));
        let qs = geo.log2size;
        let wr = QueuePointer::from_reg(low32(prod::WR.get(p)), qs);
        let rd = QueuePointer::from_reg(low32(cons::RD.get(c)), qs);
        if QueuePointer::is_full(wr, rd) {
            if prod::OVFLG.get(p) == cons::OVACKFLG.get(c) {
                *prod_reg = low32(p ^ prod::OVFLG.mask());
            }
            return Put::Overflowed;
        }
        let addr = geo.entry(wr, entry_bytes);
        let mut at = addr;
        for w in words {
            if self.mem.write_u64(Hpa(at), *w).is_err() {
                return Put::Aborted;
            }
            at = at.saturating_add(8);
        }
        let was_empty = QueuePointer::is_empty(wr, rd);
        *prod_reg = low32(prod::WR.set(p, u64::from(wr.next(qs).to_reg(qs))));
        Put::Written { was_empty }
    }

    /// A queue's interrupt, if `irqen` is set in SMMU_IRQ_CTRLACK: the MSI its IRQ_CFG0/1
    /// describe (none while the address is 0), or the wired interrupt without SMMU_IDR0.MSI.
    pub(super) fn queue_irq(&self, r: &RegFile, irqen: Field32, cfg0: u64, cfg1: u32) {
        if !irqen.is_set(u64::from(r.irq_ctrlack)) {
            return;
        }
        let source = if irqen == irq_ctrl::EVENTQ_IRQEN { Irq::Eventq } else { Irq::Priq };
        if self.caps.msi {
            let addr = irq_cfg0::ADDR.in_place(cfg0);
            if addr != 0 {
                let data = low32(irq_cfg1::DATA.get(u64::from(cfg1)));
                self.interrupt(source, Output::Msi { addr, data });
            }
        } else if source == Irq::Eventq {
            self.interrupt(source, Output::EventqIrq);
        } else {
            self.interrupt(source, Output::PriqIrq);
        }
    }
}

/// §6.3.19: whether the global error `bit` is active (GERROR differs from GERRORN).
pub(super) fn active(r: &RegFile, bit: Field32) -> bool {
    bit.get(u64::from(r.gerror)) != bit.get(u64::from(r.gerrorn))
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// §6.3.19: activates the global error `bit` unless it is active already; returns whether
    /// it became active. §7.5.1: activating any error but MSI_GERROR_ABT_ERR raises the GERROR
    /// interrupt when SMMU_IRQ_CTRL.GERROR_IRQEN is set: the MSI SMMU_GERROR_IRQ_CFG0/1
    /// describe (none while the address is 0), or the wired interrupt without SMMU_IDR0.MSI.
    pub(super) fn raise_locked(&self, r: &mut RegFile, bit: Field32) -> bool {
        if active(r, bit) {
            return false;
        }
        r.gerror = low32(u64::from(r.gerror) ^ bit.mask());
        let irqen = irq_ctrl::GERROR_IRQEN.is_set(u64::from(r.irq_ctrlack));
        if irqen && bit != gerror::MSI_GERROR_ABT_ERR {
            if self.caps.msi {
                let addr = irq_cfg0::ADDR.in_place(r.gerror_irq_cfg0);
                if addr != 0 {
                    let data = low32(irq_cfg1::DATA.get(u64::from(r.gerror_irq_cfg1)));
                    self.interrupt(Irq::Gerror, Output::Msi { addr, data });
                }
            } else {
                self.interrupt(Irq::Gerror, Output::GerrorIrq);
            }
        }
        true
    }
}

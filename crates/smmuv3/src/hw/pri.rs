//! ATS Translation Requests (§3.9.1) and the PRI queue (§8): the recoverable path of PCIe
//! devices. A device's translation request fails with no access, the device sends a page
//! request to the PRI queue, software answers with CMD_PRI_RESP (`cmdq`), and the device
//! retries.
//!
//! ATS: only with SMMU_IDR0.ATS and SMMUEN == 1 (otherwise Unsupported Request). STE.EATS ==
//! 0b00 (and 0b11 without DPT) refuses the request with F_BAD_ATS_TREQ (§7.3.6). A
//! Translation-related fault (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION) is not
//! recorded: the device gets a completion with no access, its cue to issue a page request.
//! Configuration errors are recorded as for a transaction, and the completion is a Completer
//! Abort.
//! DEVIATION: split-stage ATS (EATS == 0b10) is refused as EATS == 0b00 is; the completion
//! carries the permissions of the requested access only (the request is translated for the
//! access the device asks for, so a write to a read-only page is "no access").
//!
//! PRI queue (§8.1, §8.2): entries are written at PRIQ_PROD like event records. With PRIQEN ==
//! 0 (SMMUEN == 0 too) or GERROR.PRIQ_ABT_ERR active, nothing is written and every page request
//! (not Stop Markers) gets an automatic Response Failure without PASID. A full queue enters the
//! overflow condition (OVFLG toggles), which, unlike the Event queue's, inhibits every new entry
//! until software acknowledges it; a request with Last == 1 discarded by it gets an automatic
//! Success, with the PASID when SMMU_IDR3.PPS == 1. A write that aborts activates
//! PRIQ_ABT_ERR and (IMPDEF: the abort is synchronous) gets an automatic Response Failure.
//! DEVIATION: with PPS == 0 the overflow auto-response carries no PASID (STE.PPAR is not
//! checked), and PRIQ_IRQ_CFG2.LO is ignored: the interrupt fires on empty to non-empty.

use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::{Perms, WalkCtx};

use super::cache::low_mask;
use super::eventq::{bump, Put, QueueGeometry};
use super::translate::{Req, Tr};
use super::{Abort, Event, Output, Smmu, Transaction};
use crate::spec::priq::PRIQ_ENTRY_BYTES;
use crate::spec::regs::{cons, cr0, gerror, idr1, idr3, irq_ctrl, prod};
use crate::spec::{Eats, EventId, PageRequest, PriResp};

/// A translation an ATS Translation Completion returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtsTranslation {
    /// The translated address of the start of the range.
    pub output: u64,
    /// The range is 2^`size_lg2` bytes, aligned.
    pub size_lg2: u8,
    /// What the range allows.
    pub perms: Perms,
}

/// The answer to an ATS Translation Request (§3.9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtsResult {
    /// A successful completion with a translation.
    Translated(AtsTranslation),
    /// A successful completion with no access (R == W == 0): the page is not there, or not
    /// with the access asked for; the device may issue a page request.
    NoAccess,
    /// Unsupported Request: ATS not enabled for the stream (F_BAD_ATS_TREQ) or the SMMU.
    UnsupportedRequest,
    /// Completer Abort: a configuration error, recorded as its event.
    CompleterAbort,
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// A device's ATS Translation Request for `t` (its StreamID, PASID, address and the access
    /// it wants), answered as §3.9.1 says.
    pub fn translation_request(&self, t: &Transaction) -> AtsResult {
        // A request carries an Untranslated address, whatever `t.translated` says.
        let t = &Transaction { translated: false, ..*t };
        if !self.caps.ats || !cr0::SMMUEN.is_set(self.cr0ack()) {
            return AtsResult::UnsupportedRequest;
        }
        let tr = Tr::new(self.caches.epochs());
        let mut cx = WalkCtx::new(&self.mem, ());
        let pre = Req { t, access: t.access };
        let s = match self.stream(&mut cx, &pre, &tr) {
            Ok(s) => s,
            Err(a) => {
                self.report(t, a);
                return AtsResult::CompleterAbort;
            }
        };
        if s.ste.eats() != Eats::Full {
            self.report(t, Abort::Event(Event::new(EventId::FBadAtsTreq, t, t.access)));
            return AtsResult::UnsupportedRequest;
        }
        match self.translate_inner(&mut cx, t, &tr) {
            Ok(x) => AtsResult::Translated(AtsTranslation {
                output: x.output & !low_mask(x.page_lg2),
                size_lg2: x.page_lg2,
                perms: x.perms,
            }),
            // §5.5 S: a translation request never stalls.
            Err(Abort::Stalled(_)) => AtsResult::NoAccess,
            Err(Abort::Event(e))
                if matches!(
                    e.id,
                    EventId::FTranslation
                        | EventId::FAddrSize
                        | EventId::FAccess
                        | EventId::FPermission
                ) =>
            {
                AtsResult::NoAccess
            }
            Err(a) => {
                self.report(t, a);
                AtsResult::CompleterAbort
            }
        }
    }

    /// A PCIe Page Request (or Stop Marker) from a device, as the 16-byte PRI queue entry it
    /// becomes (§8). Ignored without SMMU_IDR0.PRI. `false`: not taken, because the outbox
    /// has no room for the answer the SMMU might owe (IMPDEF: the port withholds flow-control
    /// credits; nothing changed, and the device sends the request again after a drain).
    pub fn page_request(&self, req: &PageRequest) -> bool {
        if !self.caps.pri {
            return true;
        }
        let c = &self.counters;
        let mut r = self.lock();
        let answered = req.last() && !req.is_stop_marker();
        if answered && !self.room_for_message() {
            bump(&c.page_requests_busy);
            return false;
        }
        let auto = |resp: PriResp, pasid: bool| {
            // §8.2: no response to Stop Markers; §8.1: only Last == 1 requests get one.
            if answered {
                self.message(Output::PriResponse {
                    sid: req.sid(),
                    ssid: (pasid && req.ssv()).then_some(req.ssid()),
                    prg_index: req.prgindex(),
                    response_code: resp.response_code(),
                });
            }
        };
        let ack = u64::from(r.cr0ack);
        let (g, n) = (u64::from(r.gerror), u64::from(r.gerrorn));
        let abt = gerror::PRIQ_ABT_ERR.get(g) != gerror::PRIQ_ABT_ERR.get(n);
        // §8.2: PRIQEN == 0 (SMMUEN == 0 implies it) or PRIQ_ABT_ERR: Response Failure.
        if !cr0::PRIQEN.is_set(ack) || !cr0::SMMUEN.is_set(ack) || abt {
            bump(&c.page_requests_dropped);
            auto(PriResp::ResponseFailure, false);
            return true;
        }
        let pps = idr3::PPS.is_set(u64::from(self.params.idr3));
        let (p, cn) = (u64::from(r.priq_prod), u64::from(r.priq_cons));
        // §8.1: an active overflow inhibits new entries.
        if prod::OVFLG.get(p) != cons::OVACKFLG.get(cn) {
            bump(&c.page_requests_dropped);
            auto(PriResp::Success, pps);
            return true;
        }
        let priqs = idr1::PRIQS.get(u64::from(self.params.idr1));
        let geo = QueueGeometry::from_base(r.priq_base, priqs, 4);
        let cons_reg = r.priq_cons;
        match self.put_entry(geo, &mut r.priq_prod, cons_reg, &req.words(), PRIQ_ENTRY_BYTES) {
            Put::Written { was_empty } => {
                bump(&c.page_requests_written);
                if was_empty {
                    self.queue_irq(&r, irq_ctrl::PRIQ_IRQEN, r.priq_irq_cfg0, r.priq_irq_cfg1);
                }
            }
            Put::Overflowed => {
                bump(&c.page_requests_dropped);
                auto(PriResp::Success, pps);
            }
            Put::Aborted => {
                bump(&c.page_requests_aborted);
                self.raise_locked(&mut r, gerror::PRIQ_ABT_ERR);
                auto(PriResp::ResponseFailure, false);
            }
        }
        true
    }
}

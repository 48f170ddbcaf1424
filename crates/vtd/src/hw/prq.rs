//! §7.5 to §7.7 recoverable faults: page requests, the page request queue (PQH, PQT, PQA), its
//! status (PRS: PPR, PRO) and the page request event (PECTL, PEDATA, PEADDR, PEUADDR).
//!
//! A page request from a device (§7.5.1) is checked against the structures that say whether the
//! device may send one: legacy mode has none (32h), and in scalable mode the context entry must
//! be usable and have PRE set (47h). A blocked request is recorded as a fault (unless FPD) and,
//! when the device waits for an answer (LPIG, or PDP), answered by the unit with Invalid
//! Request. IMPDEF: the PASID and its PASID-table entry are not checked: software services the
//! request and refuses what it does not know.
//!
//! An allowed request is written as a 32-byte page request descriptor at PQT, and PQT moves on.
//! The queue is full when the next PQT would equal PQH: then PRO is set and the request is
//! dropped; while PRO stays set every page request is dropped. A dropped request the device
//! waits for is answered by the unit with Success, so the device retries its translation and
//! asks again once software has made room (§7.5.1, the PCIe recovery path for a full queue).
//!
//! The page request event (§7.6) is raised when PPR or PRO is set while neither was: an
//! interrupt message from PEDATA / PEADDR / PEUADDR, or held as PECTL.IP while PECTL.IM is set,
//! sent when software clears IM, dropped when software clears both PPR and PRO.
//!
//! IMPDEF: the unit's answers are device messages in its bounded outbox, and it never drops
//! one. So a page request that waits for an answer (LPIG or PDP) is taken only while the outbox
//! has room for the answer the unit may have to make itself: otherwise it is refused at the
//! port ([`PageRequestOutcome::Busy`], as a root port withholds flow-control credits), nothing
//! changes, it is counted, and the device sends it again once the embedder has drained the
//! outbox.
//!
//! IMPDEF: PQH and PQT are taken modulo the queue's size (the unit implements the offset bits
//! PQS needs); a descriptor write to an address no memory backs is dropped as the fabric drops
//! it, PQT advances all the same, and the loss is counted. Without ECAP.PRS the unit knows no
//! page requests: each one is discarded (an Unsupported Request message) and counted; nothing
//! answers it. With translation disabled a page request is answered with Invalid Request.

use std::sync::atomic::{AtomicU64, Ordering};

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::{Access, WalkCtx};

use super::regs::RegFile;
use super::{DmaRequest, Fault, MsiSource, Output, RequestKind, Vtd};
use crate::spec::prq::{PageGroupResponse, PageRequest, ResponseCode, PAGE_REQUEST_BYTES};
use crate::spec::regs::rtaddr::{self, Ttm};
use crate::spec::regs::{self, ecap, ectl, gsts, pqa, pqh, pqt, prs};
use crate::spec::{bits_from, FaultReason};

/// A PCIe Page Request Message from a device (PCIe §10.4.1), with the private data VT-d lets a
/// device attach (§7.5.1.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PageRequestMsg {
    /// Requester ID.
    pub rid: u16,
    /// The PASID of the request's PASID prefix, if it has one.
    pub pasid: Option<u32>,
    /// The page the device asks for (bits 11:0 are ignored).
    pub addr: u64,
    /// R: read access is requested.
    pub read: bool,
    /// W: write access is requested.
    pub write: bool,
    /// ER in the PASID prefix: execute access is requested.
    pub exec: bool,
    /// PMR in the PASID prefix: supervisor access is requested.
    pub privileged: bool,
    /// The page request group index (9 bits).
    pub prgi: u16,
    /// L: the last request of its group; the device waits for one response to the group.
    pub lpig: bool,
    /// Private data the response must return (the device waits for a response to this request
    /// even when it is not the last of its group).
    pub private_data: Option<[u64; 2]>,
}

impl PageRequestMsg {
    /// The request as the descriptor hardware writes into the page request queue (§7.5.1.1).
    #[must_use]
    pub fn descriptor(&self) -> PageRequest {
        let mut d = PageRequest::new();
        d.set_rid(self.rid);
        if let Some(p) = self.pasid {
            d.set_pp(true);
            d.set_pasid(p);
            d.set_er(self.exec);
            d.set_pmr(self.privileged);
        }
        d.set_rr(self.read);
        d.set_wr(self.write);
        d.set_lpig(self.lpig);
        d.set_prgi(self.prgi);
        d.set_addr(self.addr);
        if let Some([lo, hi]) = self.private_data {
            d.set_pdp(true);
            d.set_priv_data_lo(lo);
            d.set_priv_data_hi(hi);
        }
        d
    }

    /// Whether the device waits for a response to this request: the last of its group, or one
    /// carrying private data.
    #[must_use]
    pub const fn needs_response(&self) -> bool {
        self.lpig || self.private_data.is_some()
    }

    /// The response the unit itself sends for this request with `rc`.
    fn auto_response(&self, rc: ResponseCode) -> PageGroupResponse {
        let mut r = PageGroupResponse::new();
        r.set_rid(self.rid);
        r.set_rc(rc);
        if let Some(p) = self.pasid {
            r.set_pp(true);
            r.set_pasid(p);
        }
        r.set_lpig(self.lpig);
        r.set_prgi(self.prgi);
        if let Some([lo, hi]) = self.private_data {
            r.set_pdp(true);
            r.set_priv_data_lo(lo);
            r.set_priv_data_hi(hi);
        }
        r
    }
}

/// What became of a page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageRequestOutcome {
    /// Written into the page request queue.
    Queued,
    /// Dropped: the queue was full, or in overflow (PRS.PRO). Answered with Success if the
    /// device waits for an answer.
    Overflow,
    /// Refused by the structures, with the fault the unit recorded (unless its FPD); answered
    /// with Invalid Request if the device waits for an answer.
    Blocked(Fault),
    /// Refused because translation is disabled; answered with Invalid Request if the device
    /// waits for an answer.
    Disabled,
    /// Discarded: the unit does not support page requests (ECAP.PRS clear).
    Unsupported,
    /// Not taken: the request waits for an answer and the outbox has no room for one the unit
    /// might make (see the module doc). Nothing changed; the device sends it again later.
    Busy,
}

/// What the ATS and page request paths have done since reset: everything refused, dropped or
/// answered by the unit itself is counted here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AtsStats {
    /// Translation requests received.
    pub translation_requests: u64,
    /// Translation requests answered with Unsupported Request.
    pub translation_unsupported: u64,
    /// Translation requests answered with Completer Abort.
    pub translation_aborted: u64,
    /// Translation requests answered with R = W = 0.
    pub translation_no_access: u64,
    /// Translated requests blocked.
    pub translated_blocked: u64,
    /// Page requests written into the page request queue.
    pub page_requests_queued: u64,
    /// Page requests dropped because the queue was full or in overflow.
    pub page_requests_overflowed: u64,
    /// Page requests refused (blocked by the structures, or translation disabled).
    pub page_requests_refused: u64,
    /// Page requests discarded because the unit does not support them (ECAP.PRS clear).
    pub page_requests_unsupported: u64,
    /// Page requests whose descriptor write went to an address no memory backs.
    pub page_requests_lost: u64,
    /// Page group responses the unit sent on its own (for dropped or refused requests).
    pub auto_responses: u64,
    /// Page requests not taken because the outbox had no room for an answer.
    pub page_requests_busy: u64,
}

/// The counters behind [`AtsStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) translation_requests: AtomicU64,
    pub(super) translation_unsupported: AtomicU64,
    pub(super) translation_aborted: AtomicU64,
    pub(super) translation_no_access: AtomicU64,
    pub(super) translated_blocked: AtomicU64,
    page_requests_queued: AtomicU64,
    page_requests_overflowed: AtomicU64,
    page_requests_refused: AtomicU64,
    page_requests_unsupported: AtomicU64,
    page_requests_lost: AtomicU64,
    auto_responses: AtomicU64,
    page_requests_busy: AtomicU64,
}

/// Counts one.
pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// PRS bits that are conditions of the page request event.
const EVENT_CONDITIONS: u64 = prs::PPR.mask() | prs::PRO.mask();

impl<M: PhysMemory<Addr = Hpa>> Vtd<M> {
    /// What the ATS and page request paths have refused, dropped and answered so far.
    pub fn ats_stats(&self) -> AtsStats {
        let c = &self.ats_counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AtsStats {
            translation_requests: ld(&c.translation_requests),
            translation_unsupported: ld(&c.translation_unsupported),
            translation_aborted: ld(&c.translation_aborted),
            translation_no_access: ld(&c.translation_no_access),
            translated_blocked: ld(&c.translated_blocked),
            page_requests_queued: ld(&c.page_requests_queued),
            page_requests_overflowed: ld(&c.page_requests_overflowed),
            page_requests_refused: ld(&c.page_requests_refused),
            page_requests_unsupported: ld(&c.page_requests_unsupported),
            page_requests_lost: ld(&c.page_requests_lost),
            auto_responses: ld(&c.auto_responses),
            page_requests_busy: ld(&c.page_requests_busy),
        }
    }

    /// A device's page request (§7.5.1), handled as the module's doc says.
    pub fn page_request(&self, msg: &PageRequestMsg) -> PageRequestOutcome {
        let c = &self.ats_counters;
        if !self.ecap_has(ecap::PRS) {
            bump(&c.page_requests_unsupported);
            return PageRequestOutcome::Unsupported;
        }
        // Room for the answer the unit may owe, before anything changes (the module doc).
        let answer = if msg.needs_response() {
            let Some(room) = self.outbox.reserve() else {
                bump(&c.page_requests_busy);
                return PageRequestOutcome::Busy;
            };
            Some(room)
        } else {
            None
        };
        let (outcome, rc) = self.take_page_request(msg);
        if let (Some(rc), Some(room)) = (rc, answer) {
            bump(&c.auto_responses);
            room.send(Output::PageGroupResponse(msg.auto_response(rc)));
        }
        outcome
    }

    /// What becomes of a page request the unit takes, and the answer it makes itself, if any
    /// (sent only if the device waits for one).
    fn take_page_request(
        &self,
        msg: &PageRequestMsg,
    ) -> (PageRequestOutcome, Option<ResponseCode>) {
        let c = &self.ats_counters;
        if !gsts::TES.is_set(self.gsts()) {
            bump(&c.page_requests_refused);
            return (PageRequestOutcome::Disabled, Some(ResponseCode::InvalidRequest));
        }
        if let Err(f) = self.page_request_allowed(msg) {
            bump(&c.page_requests_refused);
            return (PageRequestOutcome::Blocked(f), Some(ResponseCode::InvalidRequest));
        }
        let mut regs = self.lock_regs();
        let before = u64::from(regs.reg32(regs::PRS));
        if prs::PRO.is_set(before) {
            drop(regs);
            bump(&c.page_requests_overflowed);
            return (PageRequestOutcome::Overflow, Some(ResponseCode::Success));
        }
        let size = pqa::queue_bytes(regs.pqa);
        let head = pqh::PQH.in_place(regs.pqh) % size;
        let tail = pqt::PQT.in_place(regs.pqt) % size;
        let next = (tail + PAGE_REQUEST_BYTES) % size;
        if next == head {
            // §7.5.1: the queue is full.
            regs.set_bits(regs::PRS, prs::PRO.mask32());
            self.page_request_event(&mut regs, before);
            drop(regs);
            bump(&c.page_requests_overflowed);
            return (PageRequestOutcome::Overflow, Some(ResponseCode::Success));
        }
        let at = pqa::PQA.in_place(regs.pqa).checked_add(tail);
        let mut bytes = [0u8; 32];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(msg.descriptor().words()) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        if at.is_none_or(|a| self.mem.write(Hpa(a), &bytes).is_err()) {
            bump(&c.page_requests_lost);
        }
        regs.pqt = pqt::PQT.in_place(next);
        regs.set_bits(regs::PRS, prs::PPR.mask32());
        self.page_request_event(&mut regs, before);
        bump(&c.page_requests_queued);
        (PageRequestOutcome::Queued, None)
    }

    /// §7.5.1: whether `msg`'s device may send page requests; else the fault, recorded.
    fn page_request_allowed(&self, msg: &PageRequestMsg) -> Result<(), Fault> {
        let req = DmaRequest {
            rid: msg.rid,
            pasid: msg.pasid,
            addr: msg.addr & !low_mask(12),
            access: Access { write: msg.write, exec: msg.exec, privileged: msg.privileged },
        };
        let kind = RequestKind::PageRequest;
        let fault = |reason: FaultReason, fpd: bool| self.fault(&req, kind, reason, fpd);
        let root = self.root.load(Ordering::Acquire);
        let rta = rtaddr::RTA.in_place(root);
        let rta_valid = rta & bits_from(self.params.haw) == 0;
        match Ttm::try_from(rtaddr::TTM.get(root)) {
            // Legacy context entries have no PRE: no device may send page requests.
            Ok(Ttm::Legacy) if rta_valid => Err(fault(FaultReason::SmLegacyPageRequest, false)), // 32h
            Ok(Ttm::Scalable) if rta_valid && self.ecap_has(ecap::SMTS) => {
                let mut cx = WalkCtx::new(&self.mem, ());
                let ce = self
                    .read_scalable_context(&mut cx, rta, msg.rid)
                    .map_err(|b| fault(b.reason, b.fpd))?;
                let fpd = ce.fpd();
                self.check_scalable_context(&ce).map_err(|r| fault(r, fpd))?;
                if ce.pre() {
                    Ok(())
                } else {
                    Err(fault(FaultReason::SmContextPreClear, fpd)) // 47h
                }
            }
            // IMPDEF: abort-DMA mode blocks page requests as it blocks DMA.
            Ok(Ttm::AbortDma) if self.ecap_has(ecap::ADMS) => {
                Err(fault(FaultReason::RootEntryNotPresent, false))
            }
            _ => Err(fault(FaultReason::SmRootTableAddressInvalid, false)),
        }
    }

    /// §7.6: PPR or PRO was just set, PRS being `before` it. Unless one was already set, the
    /// event goes out (PECTL.IM clear) or is held as PECTL.IP.
    fn page_request_event(&self, regs: &mut RegFile, before: u64) {
        if before & EVENT_CONDITIONS != 0 {
            return;
        }
        if ectl::IM.is_set(u64::from(regs.reg32(regs::PECTL))) {
            regs.set_bits(regs::PECTL, ectl::IP.mask32());
        } else {
            self.send_page_request_msi(regs);
        }
    }

    /// Software wrote PRS or PECTL: a held message goes out once IM is clear, and is dropped
    /// once PPR and PRO are both clear.
    pub(super) fn page_request_status_changed(&self, regs: &mut RegFile) {
        let pectl = u64::from(regs.reg32(regs::PECTL));
        if !ectl::IP.is_set(pectl) {
            return;
        }
        if u64::from(regs.reg32(regs::PRS)) & EVENT_CONDITIONS == 0 {
            regs.clear_bits(regs::PECTL, ectl::IP.mask32());
        } else if !ectl::IM.is_set(pectl) {
            regs.clear_bits(regs::PECTL, ectl::IP.mask32());
            self.send_page_request_msi(regs);
        }
    }

    fn send_page_request_msi(&self, regs: &RegFile) {
        let addr =
            (u64::from(regs.reg32(regs::PEUADDR)) << 32) | u64::from(regs.reg32(regs::PEADDR));
        let data = regs.reg32(regs::PEDATA);
        self.send_msi(MsiSource::PageRequest, addr, data);
    }
}

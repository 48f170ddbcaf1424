//! ATS and page requests (§4.2, §7.5–§7.7) through raw MMIO and hand-written tables: which
//! context entries let a device-TLB translate, what a translation completion carries, the fault
//! reasons only translation, translated and page requests produce (0Dh, 32h, 44h, 47h), the
//! device's whole recoverable round trip, the page request queue's overflow and auto-responses,
//! the page request event and its mask, and page request queue registers software got wrong.

mod common;

use common::*;
use proptest::prelude::*;
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSsAttrs};
use sviommu_pgtable::x86::{self, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build};
use sviommu_vtd::hw::{
    AtsTranslation, DmaRequest, MsiSource, Output, PageRequestMsg, PageRequestOutcome, RequestKind,
    TranslationCompletion, TranslationRequest, Vtd, VtdParams,
};
use sviommu_vtd::spec::fault::{AddressType, FaultRecord, RequestType};
use sviommu_vtd::spec::pasid::{Fspm, PasidEntry, Pgtt};
use sviommu_vtd::spec::prq::{PageGroupResponse, PageRequest, ResponseCode};
use sviommu_vtd::spec::regs::{self, ecap, ectl, fsts, pqa, prs, rtaddr::Ttm};
use sviommu_vtd::spec::root::{ContextEntry, ScalableContextEntry, TranslationType};
use sviommu_vtd::spec::{Aw, FaultReason as R};

const RID: u16 = 0x0310;
const PASID: u32 = 0x345;
/// First stage: read-write user page, read-only user page, 2M page, supervisor-only page.
const VA: u64 = 0x4000_0000;
const VA_RO: u64 = 0x4000_1000;
const VA_SUP: u64 = 0x4000_2000;
const VA_2M: u64 = 0x4020_0000;
/// Not mapped until software services the page request.
const VA_MISS: u64 = 0x4001_0000;
const FS_OUT: u64 = 0x5000_0000;
/// Legacy second stage: IOVA read-write.
const IOVA: u64 = 0x1000;
const SS_OUT: u64 = 0x6000_0000;
const PEADDR: u64 = 0xfee0_1000;
const PEDATA: u64 = 0x0042;

const PR_MSI: Output =
    Output::Msi { source: MsiSource::PageRequest, addr: PEADDR, data: PEDATA as u32 };

// ---------------------------------------------------------------------------------------------
// Set-ups
// ---------------------------------------------------------------------------------------------

struct Sm {
    m: Machine,
    rta: u64,
    dir: u64,
    ce_at: u64,
    fs: X86Paging,
    /// The page request queue (one page, PQS = 0: 128 entries).
    pq: u64,
}

fn sm_context(dir: u64, dte: bool, pre: bool) -> ScalableContextEntry {
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pasiddirptr(dir);
    ce.set_dte(dte);
    ce.set_pre(pre);
    ce
}

/// A scalable-mode unit whose RID has PASID first-stage tables, its context entry's DTE and PRE
/// as asked.
fn sm(dte: bool, pre: bool) -> Sm {
    let mut m = Machine::new();
    let rta = m.page();
    let dir = m.page();
    let pq = m.page();
    let fs = m.fs(x86::Levels::Four);
    let ro = X86Attrs { exec: false, ..X86Attrs::READ_ONLY };
    let sup = X86Attrs { user: false, ..X86Attrs::ALL };
    for (va, pa, lg2, a) in [
        (VA, FS_OUT, 12, X86Attrs::ALL),
        (VA_RO, FS_OUT + 0x1000, 12, ro),
        (VA_SUP, FS_OUT + 0x2000, 12, sup),
        (VA_2M, FS_OUT + 0x20_0000, 21, X86Attrs::ALL),
    ] {
        fs.map(&m.mem, &mut m.frames, va, pa, lg2, a).unwrap();
    }
    let ce_at = m.sm_context(rta, RID, sm_context(dir, dte, pre));
    let mut pe = PasidEntry::default();
    pe.set_p(true);
    pe.set_pgtt(Pgtt::FirstStage);
    pe.set_did(9);
    pe.set_sre(true);
    pe.set_ere(true);
    pe.set_nxe(true);
    pe.set_fspm(Fspm::FourLevel);
    pe.set_fsptptr(fs.root);
    m.pasid_entry(dir, PASID, pe);
    Sm { m, rta, dir, ce_at, fs, pq }
}

impl Sm {
    /// The default unit on, the page request queue at `pq` (PQS = 0), the event unmasked.
    fn on(&self) -> Vtd<&HostMemory> {
        let vtd = self.on_with(VtdParams::default());
        vtd.mmio_write(regs::PECTL.0, 4, 0);
        vtd
    }

    fn on_with(&self, p: VtdParams) -> Vtd<&HostMemory> {
        let vtd = unit(&self.m, p);
        enable(&vtd, self.rta, Ttm::Scalable);
        vtd.mmio_write(regs::PQH.0, 8, 0);
        vtd.mmio_write(regs::PQT.0, 8, 0);
        vtd.mmio_write(regs::PQA.0, 8, pqa::PQA.in_place(self.pq));
        vtd.mmio_write(regs::PEDATA.0, 4, PEDATA);
        vtd.mmio_write(regs::PEADDR.0, 4, PEADDR);
        vtd
    }
}

/// A legacy unit whose RID translates IOVA read-write through a second stage, TT as asked.
fn legacy(tt: TranslationType) -> (Machine, u64) {
    let mut m = Machine::new();
    let rta = m.page();
    let ss = m.ss(vtd_ss::Levels::Three);
    ss.map(&m.mem, &mut m.frames, IOVA, SS_OUT, 12, VtdSsAttrs::ALL).unwrap();
    let mut ce = ContextEntry::default();
    ce.set_p(true);
    ce.set_tt(tt);
    ce.set_ssptptr(ss.root);
    ce.set_aw(Aw::Bits39);
    ce.set_did(3);
    m.legacy_context(rta, RID, ce);
    (m, rta)
}

fn legacy_on(m: &Machine, rta: u64) -> Vtd<&HostMemory> {
    let vtd = unit(m, VtdParams::default());
    enable(&vtd, rta, Ttm::Legacy);
    vtd
}

fn treq(addr: u64) -> TranslationRequest {
    TranslationRequest::new(RID, addr).with_pasid(PASID)
}

fn frcd(vtd: &Vtd<&HostMemory>, i: u64) -> FaultRecord {
    let (lo, hi) = regs::frcd(vtd.params().cap, i);
    FaultRecord::from_words([vtd.mmio_read(lo.0, 8), vtd.mmio_read(hi.0, 8)])
}

fn prs(vtd: &Vtd<&HostMemory>) -> u64 {
    vtd.mmio_read(regs::PRS.0, 4)
}

fn pq_read(vtd: &Vtd<&HostMemory>, at: u64) -> [u64; 4] {
    let m = vtd.memory();
    [0, 8, 16, 24].map(|o| m.read_u64(Hpa(at + o)).unwrap())
}

/// A read-write page request for `addr` in group `prgi`.
fn preq(addr: u64, prgi: u16, lpig: bool) -> PageRequestMsg {
    PageRequestMsg {
        rid: RID,
        pasid: Some(PASID),
        addr,
        read: true,
        write: true,
        prgi,
        lpig,
        ..PageRequestMsg::default()
    }
}

fn response(rc: ResponseCode, prgi: u16) -> PageGroupResponse {
    let mut r = PageGroupResponse::new();
    r.set_rid(RID);
    r.set_rc(rc);
    r.set_pp(true);
    r.set_pasid(PASID);
    r.set_lpig(true);
    r.set_prgi(prgi);
    r
}

// ---------------------------------------------------------------------------------------------
// Translation requests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_translation_request_gets_the_translation_its_size_and_its_permissions() {
    let t = sm(true, false);
    let vtd = t.on();
    let full = AtsTranslation {
        output: FS_OUT,
        size_lg2: 12,
        read: true,
        write: true,
        exec: false,
        privileged: false,
        untranslated_only: false,
    };
    assert_eq!(vtd.translation_request(&treq(VA + 0x123)), TranslationCompletion::Translated(full));
    // A 2M page: the range is the page, its translated address the page's.
    assert_eq!(
        vtd.translation_request(&treq(VA_2M + 0x1_2345)),
        TranslationCompletion::Translated(AtsTranslation {
            output: FS_OUT + 0x20_0000,
            size_lg2: 21,
            ..full
        })
    );
    // A read-only page asked for write: readable, W = 0 (no fault).
    let ro = AtsTranslation { output: FS_OUT + 0x1000, write: false, ..full };
    assert_eq!(vtd.translation_request(&treq(VA_RO)), TranslationCompletion::Translated(ro));
    // NW: no write asked, none granted.
    let nw = AtsTranslation { write: false, ..full };
    assert_eq!(
        vtd.translation_request(&treq(VA).read_only()),
        TranslationCompletion::Translated(nw)
    );
    // ER: the page grants execute (ERE set); PMR: supervisor rights.
    assert_eq!(
        vtd.translation_request(&treq(VA).exec().privileged()),
        TranslationCompletion::Translated(AtsTranslation { exec: true, privileged: true, ..full })
    );
    // A supervisor-only page gives a user request nothing: R = W = 0, nothing recorded.
    assert_eq!(vtd.translation_request(&treq(VA_SUP)), TranslationCompletion::NoAccess);
    assert_eq!(vtd.mmio_read(regs::FSTS.0, 4), 0, "no fault recorded");
    let s = vtd.ats_stats();
    assert_eq!((s.translation_requests, s.translation_no_access), (6, 1));
}

#[test]
fn a_translation_request_for_write_sets_the_dirty_flag() {
    // §4.2.3.1: the device may write through the translation unseen, so D is set now.
    let t = sm(true, false);
    let vtd = t.on();
    let leaf = |m: &Machine| m.read(entry_at(m, t.fs.root, VA, 3, host));
    let dirty = 1 << 6;
    vtd.translation_request(&treq(VA).read_only());
    assert_eq!(leaf(&t.m) & dirty, 0, "NW: D stays clear");
    vtd.translation_request(&treq(VA));
    assert_ne!(leaf(&t.m) & dirty, 0, "write asked and granted: D set");
}

#[test]
fn a_translation_fault_is_a_completion_without_access_and_is_not_recorded() {
    let t = sm(true, false);
    let vtd = t.on();
    vtd.mmio_write(regs::FECTL.0, 4, 0);
    assert_eq!(vtd.translation_request(&treq(VA_MISS)), TranslationCompletion::NoAccess);
    assert_eq!(vtd.mmio_read(regs::FSTS.0, 4), 0);
    assert!(vtd.drain_outputs().is_empty(), "no fault event");
    // The same address untranslated is a recorded fault.
    assert_eq!(
        reason(&vtd, DmaRequest::new(RID, VA_MISS, Access::READ).with_pasid(PASID)),
        R::SmFsEntryNotPresent
    );
}

#[test]
fn fault_44_a_translation_request_with_dte_clear_is_unsupported_and_recorded() {
    let t = sm(false, false);
    let vtd = t.on();
    let c = vtd.translation_request(&treq(VA + 0x10));
    let f = c.fault().expect("recorded");
    assert!(matches!(c, TranslationCompletion::UnsupportedRequest(Some(_))));
    assert_eq!((f.reason, f.kind), (R::SmContextDteClear, RequestKind::TranslationRequest));
    let r = frcd(&vtd, 0);
    assert_eq!((r.f(), r.fr(), r.sid(), r.fi()), (true, Ok(R::SmContextDteClear), RID, VA));
    assert_eq!(r.at(), Ok(AddressType::TranslationRequest));
    assert_eq!((r.pp(), r.pv()), (true, PASID));
    // Untranslated requests still translate: DTE is about the device's TLB only.
    assert_eq!(ok(&vtd, DmaRequest::new(RID, VA, Access::READ).with_pasid(PASID)).output, FS_OUT);
    assert_eq!(vtd.ats_stats().translation_unsupported, 1);
}

#[test]
fn fault_44_a_translated_request_with_dte_clear() {
    let t = sm(false, false);
    let vtd = t.on();
    let req = DmaRequest::new(RID, FS_OUT + 8, Access::WRITE);
    let f = vtd.translated_request(&req).unwrap_err();
    assert_eq!((f.reason, f.kind), (R::SmContextDteClear, RequestKind::Translated));
    let r = frcd(&vtd, 0);
    assert_eq!(r.at(), Ok(AddressType::Translated));
    assert_eq!(r.request_type(), RequestType::Write);
    // With DTE set the translated address goes through as it is.
    t.m.write(t.ce_at, sm_context(t.dir, true, false).words());
    let vtd = t.on();
    assert_eq!(vtd.translated_request(&req).unwrap().output, FS_OUT + 8);
    assert_eq!(vtd.ats_stats().translated_blocked, 0);
}

#[test]
fn fault_0d_legacy_tt_blocks_translation_and_translated_requests() {
    for tt in [TranslationType::UntranslatedOnly, TranslationType::PassThrough] {
        let (m, rta) = legacy(tt);
        let vtd = legacy_on(&m, rta);
        let c = vtd.translation_request(&TranslationRequest::new(RID, IOVA));
        assert!(matches!(c, TranslationCompletion::UnsupportedRequest(Some(_))), "{tt:?}");
        assert_eq!(c.fault().unwrap().reason, R::TranslationBlocked, "{tt:?}");
        let f = vtd.translated_request(&DmaRequest::new(RID, SS_OUT, Access::READ)).unwrap_err();
        assert_eq!(f.reason, R::TranslationBlocked, "{tt:?}");
        assert_eq!(frcd(&vtd, 0).fr(), Ok(R::TranslationBlocked));
        assert_eq!(frcd(&vtd, 0).at(), Ok(AddressType::TranslationRequest));
        assert_eq!(frcd(&vtd, 1).at(), Ok(AddressType::Translated));
        // Untranslated requests are the context entry's business as before.
        assert!(vtd.translate(&DmaRequest::new(RID, IOVA, Access::READ)).is_ok());
    }
    // TT = 01b: both allowed.
    let (m, rta) = legacy(TranslationType::All);
    let vtd = legacy_on(&m, rta);
    let c = vtd.translation_request(&TranslationRequest::new(RID, IOVA + 0x10));
    let TranslationCompletion::Translated(x) = c else { panic!("{c:?}") };
    assert_eq!((x.output, x.size_lg2, x.read, x.write), (SS_OUT, 12, true, true));
    let tr = vtd.translated_request(&DmaRequest::new(RID, SS_OUT, Access::WRITE)).unwrap();
    assert_eq!(tr.output, SS_OUT);
}

#[test]
fn without_device_tlb_support_or_translation_a_translation_request_is_unsupported() {
    let t = sm(true, false);
    let mut p = VtdParams::default();
    // A unit without DT cannot have DTE set (43h), so clear it too.
    p.ecap = ecap::DT.with(p.ecap, false);
    t.m.write(t.ce_at, sm_context(t.dir, false, false).words());
    let vtd = t.on_with(p);
    assert_eq!(vtd.translation_request(&treq(VA)), TranslationCompletion::UnsupportedRequest(None));
    assert_eq!(vtd.mmio_read(regs::FSTS.0, 4), 0, "nothing recorded");
    let vtd = unit(&t.m, VtdParams::default());
    assert_eq!(vtd.translation_request(&treq(VA)), TranslationCompletion::UnsupportedRequest(None));
    assert_eq!(vtd.ats_stats().translation_unsupported, 1);
}

#[test]
fn a_translation_request_to_structures_in_error_is_a_completer_abort() {
    let t = sm(true, false);
    // A context entry with a reserved bit set (word 2, bit 0 is reserved).
    let mut w = sm_context(t.dir, true, false).words();
    w[2] |= 1;
    t.m.write(t.ce_at, w);
    let vtd = t.on();
    let c = vtd.translation_request(&treq(VA));
    assert!(matches!(c, TranslationCompletion::CompleterAbort(_)), "{c:?}");
    assert_eq!(frcd(&vtd, 0).fr(), Ok(R::SmContextEntryReserved));
    assert_eq!(vtd.ats_stats().translation_aborted, 1);
}

#[test]
fn a_translation_request_to_the_interrupt_range_is_untranslated_only() {
    let (m, rta) = legacy(TranslationType::All);
    let vtd = legacy_on(&m, rta);
    let c = vtd.translation_request(&TranslationRequest::new(RID, 0xfee0_0010));
    let TranslationCompletion::Translated(x) = c else { panic!("{c:?}") };
    assert_eq!((x.output, x.read, x.write, x.untranslated_only), (0xfee0_0000, false, true, true));
}

// ---------------------------------------------------------------------------------------------
// Page requests
// ---------------------------------------------------------------------------------------------

#[test]
fn the_device_round_trip() {
    let t = sm(true, true);
    let vtd = t.on();
    // 1. The translation request fails: no access, nothing recorded.
    let req = treq(VA_MISS + 0x40);
    assert_eq!(vtd.translation_request(&req), TranslationCompletion::NoAccess);
    // 2. The device sends a page request; it lands at PQT with the bytes §7.5.1.1 gives.
    assert_eq!(vtd.page_request(&preq(VA_MISS, 0x1a, true)), PageRequestOutcome::Queued);
    let expected = [0x0000_0345_0310_0101, 0x4001_00d7, 0, 0];
    assert_eq!(pq_read(&vtd, t.pq), expected);
    assert_eq!(vtd.mmio_read(regs::PQT.0, 8), 32, "PQT moved on");
    assert_eq!(prs(&vtd), prs::PPR.mask());
    assert_eq!(vtd.drain_outputs(), [PR_MSI]);
    // 3. Software reads the request, maps the page, consumes the entry and answers.
    let d = PageRequest::from_words(pq_read(&vtd, t.pq));
    assert_eq!(
        (d.rid(), d.pasid(), d.addr(), d.prgi(), d.lpig()),
        (RID, PASID, VA_MISS, 0x1a, true)
    );
    // The leaf by hand: P, R/W, U/S (VA_MISS shares VA's last-level table).
    let leaf = entry_at(&t.m, t.fs.root, VA_MISS, 3, host);
    assert_eq!(t.m.read(leaf), 0);
    t.m.write(leaf, [(FS_OUT + 0x10_0000) | 0x7]);
    vtd.mmio_write(regs::PQH.0, 8, 32);
    vtd.mmio_write(regs::PRS.0, 4, prs::PPR.mask());
    let resp = response(ResponseCode::Success, d.prgi());
    enable_queue(&vtd);
    submit_and_wait(&vtd, &[resp.words()]);
    // 4. The device receives the response and retries: now it translates.
    assert_eq!(vtd.drain_outputs(), [Output::PageGroupResponse(resp)]);
    let TranslationCompletion::Translated(x) = vtd.translation_request(&req) else { panic!() };
    assert_eq!((x.output, x.read, x.write), (FS_OUT + 0x10_0000, true, true));
    assert_eq!(vtd.ats_stats().page_requests_queued, 1);
}

#[test]
fn private_data_and_supervisor_execute_requests_are_written_as_asked() {
    let t = sm(true, true);
    let vtd = t.on();
    let msg = PageRequestMsg {
        exec: true,
        privileged: true,
        write: false,
        private_data: Some([0x1111, 0x2222]),
        ..preq(VA_MISS, 3, false)
    };
    assert_eq!(vtd.page_request(&msg), PageRequestOutcome::Queued);
    // ER (bit 52), PMR (bit 53), PDP (bit 9); RR only, PRGI 3, L clear.
    let expected = [0x0030_0345_0310_0301, 0x4001_0019, 0x1111, 0x2222];
    assert_eq!(pq_read(&vtd, t.pq), expected);
}

#[test]
fn fault_47_a_page_request_with_pre_clear_is_refused_with_invalid_request() {
    let t = sm(true, false);
    let vtd = t.on();
    let msg = preq(VA_MISS + 0x123, 7, true);
    let PageRequestOutcome::Blocked(f) = vtd.page_request(&msg) else { panic!() };
    assert_eq!((f.reason, f.kind), (R::SmContextPreClear, RequestKind::PageRequest));
    let r = frcd(&vtd, 0);
    assert_eq!(
        (r.fr(), r.fi(), r.request_type()),
        (Ok(R::SmContextPreClear), VA_MISS, RequestType::PageRequest)
    );
    assert_eq!(
        vtd.drain_outputs(),
        [Output::PageGroupResponse(response(ResponseCode::InvalidRequest, 7))]
    );
    assert_eq!(vtd.mmio_read(regs::PQT.0, 8), 0, "nothing queued");
    // Not the last of its group: no response.
    vtd.page_request(&preq(VA_MISS, 7, false));
    assert!(vtd.drain_outputs().is_empty());
    assert_eq!(vtd.ats_stats().page_requests_refused, 2);
}

#[test]
fn fault_32_a_page_request_in_legacy_mode() {
    let (m, rta) = legacy(TranslationType::All);
    let vtd = legacy_on(&m, rta);
    let msg = PageRequestMsg { pasid: None, ..preq(IOVA, 1, true) };
    let PageRequestOutcome::Blocked(f) = vtd.page_request(&msg) else { panic!() };
    assert_eq!(f.reason, R::SmLegacyPageRequest);
    assert_eq!(frcd(&vtd, 0).fr(), Ok(R::SmLegacyPageRequest));
    let mut resp = PageGroupResponse::new();
    resp.set_rid(RID);
    resp.set_rc(ResponseCode::InvalidRequest);
    resp.set_lpig(true);
    resp.set_prgi(1);
    assert_eq!(vtd.drain_outputs(), [Output::PageGroupResponse(resp)]);
}

#[test]
fn untranslated_dma_that_faults_is_unrecoverable() {
    // The device that sent an untranslated request gets no completion to act on: the fault is
    // recorded, and nothing reaches the page request queue.
    let t = sm(true, true);
    let vtd = t.on();
    let f = fault(&vtd, DmaRequest::new(RID, VA_MISS, Access::WRITE).with_pasid(PASID));
    assert_eq!((f.reason, f.kind), (R::SmFsEntryNotPresent, RequestKind::Untranslated));
    assert!(fsts::PPF.is_set(vtd.mmio_read(regs::FSTS.0, 4)));
    assert_eq!((vtd.mmio_read(regs::PQT.0, 8), prs(&vtd)), (0, 0));
}

#[test]
fn a_full_queue_overflows_drops_and_answers_success_until_pro_is_cleared() {
    let t = sm(true, true);
    let vtd = t.on();
    // 4K of 32-byte entries, one kept empty: 127 fit.
    for i in 0..127 {
        assert_eq!(vtd.page_request(&preq(VA_MISS, i, true)), PageRequestOutcome::Queued, "{i}");
    }
    assert_eq!(vtd.drain_outputs(), [PR_MSI], "one event for PPR");
    assert_eq!(vtd.page_request(&preq(VA_MISS, 200, true)), PageRequestOutcome::Overflow);
    assert_eq!(prs(&vtd), prs::PPR.mask() | prs::PRO.mask());
    assert_eq!(
        vtd.drain_outputs(),
        [Output::PageGroupResponse(response(ResponseCode::Success, 200))],
        "PPR was pending: no second event; the device is told to retry"
    );
    // Software consumes everything; PRO still set: still dropped.
    vtd.mmio_write(regs::PQH.0, 8, vtd.mmio_read(regs::PQT.0, 8));
    assert_eq!(vtd.page_request(&preq(VA_MISS, 201, false)), PageRequestOutcome::Overflow);
    assert!(vtd.drain_outputs().is_empty(), "not the last: no auto-response");
    // Clearing PRO (and PPR) lets requests in again, with a new event.
    vtd.mmio_write(regs::PRS.0, 4, prs::PPR.mask() | prs::PRO.mask());
    assert_eq!(vtd.page_request(&preq(VA_MISS, 202, true)), PageRequestOutcome::Queued);
    assert_eq!(vtd.drain_outputs(), [PR_MSI]);
    let s = vtd.ats_stats();
    assert_eq!((s.page_requests_queued, s.page_requests_overflowed, s.auto_responses), (128, 2, 1));
    // The queue wrapped: entry 127 is at offset 127 * 32, the next at 0.
    assert_eq!(vtd.mmio_read(regs::PQT.0, 8), 0);
    assert_eq!(PageRequest::from_words(pq_read(&vtd, t.pq + 127 * 32)).prgi(), 202);
}

#[test]
fn the_page_request_event_is_held_while_masked() {
    let t = sm(true, true);
    let vtd = t.on_with(VtdParams::default());
    assert_eq!(vtd.mmio_read(regs::PECTL.0, 4), ectl::IM.mask(), "IM set out of reset");
    vtd.page_request(&preq(VA_MISS, 1, true));
    assert!(vtd.drain_outputs().is_empty());
    assert_eq!(vtd.mmio_read(regs::PECTL.0, 4), ectl::IM.mask() | ectl::IP.mask());
    // Unmasking sends the held message.
    vtd.mmio_write(regs::PECTL.0, 4, 0);
    assert_eq!(vtd.drain_outputs(), [PR_MSI]);
    assert_eq!(vtd.mmio_read(regs::PECTL.0, 4), 0);
    // Masked again, a new condition is held; clearing PPR drops it.
    vtd.mmio_write(regs::PRS.0, 4, prs::PPR.mask());
    vtd.mmio_write(regs::PECTL.0, 4, ectl::IM.mask());
    vtd.page_request(&preq(VA_MISS, 2, true));
    assert!(ectl::IP.is_set(vtd.mmio_read(regs::PECTL.0, 4)));
    vtd.mmio_write(regs::PRS.0, 4, prs::PPR.mask());
    assert_eq!(vtd.mmio_read(regs::PECTL.0, 4), ectl::IM.mask(), "IP dropped");
    vtd.mmio_write(regs::PECTL.0, 4, 0);
    assert!(vtd.drain_outputs().is_empty(), "nothing was pending");
}

#[test]
fn without_prs_page_requests_are_discarded_and_the_registers_absent() {
    let t = sm(true, false);
    let p = VtdParams::default();
    let vtd = t.on_with(VtdParams { ecap: ecap::PRS.with(p.ecap, false), ..p });
    assert_eq!(vtd.mmio_read(regs::PQA.0, 8), 0, "PQA reads 0");
    assert_eq!(vtd.page_request(&preq(VA_MISS, 1, true)), PageRequestOutcome::Unsupported);
    assert!(vtd.drain_outputs().is_empty());
    assert_eq!(vtd.ats_stats().page_requests_unsupported, 1);
}

#[test]
fn with_translation_disabled_a_page_request_gets_invalid_request() {
    let t = sm(true, true);
    let vtd = unit(&t.m, VtdParams::default());
    assert_eq!(vtd.page_request(&preq(VA_MISS, 4, true)), PageRequestOutcome::Disabled);
    assert_eq!(
        vtd.drain_outputs(),
        [Output::PageGroupResponse(response(ResponseCode::InvalidRequest, 4))]
    );
}

#[test]
fn a_page_group_response_with_a_reserved_code_is_a_queue_error() {
    let t = sm(true, true);
    let vtd = t.on();
    let mut r = response(ResponseCode::Success, 1);
    r.set_rc_raw(5);
    enable_queue(&vtd);
    submit(&vtd, &[r.words()]);
    assert!(fsts::IQE.is_set(vtd.mmio_read(regs::FSTS.0, 4)));
    assert_eq!(vtd.mmio_read(regs::IQH.0, 8), 0, "stopped at the descriptor");
    assert!(vtd.drain_outputs().iter().all(|o| !matches!(o, Output::PageGroupResponse(_))));
}

#[test]
fn a_queue_no_memory_backs_loses_requests_and_counts_them() {
    let t = sm(true, true);
    let vtd = t.on();
    vtd.mmio_write(regs::PQA.0, 8, pqa::PQA.in_place(HOLE));
    assert_eq!(vtd.page_request(&preq(VA_MISS, 1, true)), PageRequestOutcome::Queued);
    assert_eq!(vtd.ats_stats().page_requests_lost, 1);
    assert_eq!(vtd.mmio_read(regs::PQT.0, 8), 32);
    // Address bits at and above HAW are not stored.
    vtd.mmio_write(regs::PQA.0, 8, u64::MAX);
    assert_eq!(vtd.mmio_read(regs::PQA.0, 8), pqa::PQA.mask() & ((1 << 52) - 1) | pqa::PQS.mask());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random queue registers and requests: the unit never panics, takes PQT modulo the queue
    /// PQA and PQS describe, writes each queued request there and moves PQT to the next entry.
    #[test]
    fn hostile_page_request_queue_registers(
        base in 0u64..0x20,
        pqs in 0u64..8,
        head in any::<u64>(),
        tail in any::<u64>(),
        reqs in prop::collection::vec((any::<u64>(), any::<u16>(), any::<bool>()), 1..20),
    ) {
        let t = sm(true, true);
        let vtd = t.on();
        let at = TABLES_HPA + base * 0x1_0000;
        vtd.mmio_write(regs::PQA.0, 8, pqa::PQA.in_place(at) | pqs);
        vtd.mmio_write(regs::PQH.0, 8, head);
        vtd.mmio_write(regs::PQT.0, 8, tail);
        let size = 4096u64 << pqs;
        for (addr, prgi, lpig) in reqs {
            let before = vtd.mmio_read(regs::PQT.0, 8) % size;
            let out = vtd.page_request(&preq(addr, prgi, lpig));
            let pqt = vtd.mmio_read(regs::PQT.0, 8);
            if out == PageRequestOutcome::Queued {
                // The unit wrote PQT: the next entry inside the queue.
                prop_assert_eq!(pqt, (before + 32) % size);
                let d = PageRequest::from_words(pq_read(&vtd, at + before));
                prop_assert_eq!(d.prgi(), prgi & 0x1ff);
            }
        }
    }
}

//! Step (e): ATS Translation Requests (IHI 0070 G.b §3.9.1) and the PRI queue (§8) by raw
//! register writes, with the test playing the device: a failed translation request, a page
//! request, software mapping the page and answering with CMD_PRI_RESP, the retry succeeding.

mod common;

use common::*;
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, VmsaS1};
use sviommu_pgtable::Build;
use sviommu_smmuv3::hw::{Access, AtsResult, Output, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{self, cons, cr0, gerror, idr0, idr1, idr3, prod, queue_base};
use sviommu_smmuv3::spec::{Command, Eats, EventId, EventRecord, Opcode, PageRequest, PriResp};

const EQ: u64 = 0x2000;
const PQ: u64 = 0x4000;
const CQ: u64 = 0x8000;
const VA: u64 = 0x40_0000;
const PA: u64 = 0x20_0000;
/// EATS == Full.
const SID_ATS: u32 = 1;
/// EATS == 0b00.
const SID_NO_ATS: u32 = 2;

fn params() -> SmmuParams {
    let d = SmmuParams::default();
    let i0 = [idr0::ATS, idr0::PRI].iter().fold(u64::from(d.idr0), |v, f| f.with(v, true));
    let i1 = idr1::PRIQS.set(u64::from(d.idr1), 3);
    let i3 = idr3::PPS.with(u64::from(d.idr3), true);
    SmmuParams {
        idr0: u32::try_from(i0).unwrap(),
        idr1: u32::try_from(i1).unwrap(),
        idr3: u32::try_from(i3).unwrap(),
        ..d
    }
}

fn base(addr: u64, log2size: u64) -> u64 {
    queue_base::LOG2SIZE.set(queue_base::ADDR.set(0, addr >> 5), log2size)
}

/// Two stage-1 streams over empty tables (EATS Full and Abort), the Event queue, the PRI queue
/// (2^`priq_log2` entries at `pq`) and the Command queue, all enabled.
fn rig(mem: &HostMemory, pq: u64, priq_log2: u64) -> (Smmu<&HostMemory>, VmsaS1, Cmdq) {
    let s = Smmu::new(mem, params());
    let mut fr = frames();
    let st = alloc(mem, &mut fr, 12);
    let s1 = VmsaS1::create(mem, &mut fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    let cd_addr = alloc(mem, &mut fr, 12);
    write_cd(mem, cd_addr, &cd_for(&s1, 1));
    for (sid, eats) in [(SID_ATS, Eats::Full), (SID_NO_ATS, Eats::Abort)] {
        let mut ste = ste_s1(cd_addr, 0, None);
        ste.set_eats(eats);
        write_ste(mem, st + 64 * u64::from(sid), &ste);
    }
    enable_linear(&s, st, 2);
    s.mmio_write(regs::EVENTQ_BASE.0, 8, base(EQ, 3));
    s.mmio_write(regs::PRIQ_BASE.0, 8, base(pq, priq_log2));
    let v = s.mmio_read(regs::CR0.0, 4);
    s.mmio_write(regs::CR0.0, 4, cr0::EVENTQEN.with(cr0::PRIQEN.with(v, true), true));
    let q = Cmdq::enable(&s, CQ, 3);
    (s, s1, q)
}

fn page_req(sid: u32, ssid: Option<u32>, addr: u64, prg: u16, last: bool) -> PageRequest {
    let mut p = PageRequest::default();
    p.set_sid(sid);
    p.set_ssv(ssid.is_some());
    p.set_ssid(ssid.unwrap_or(0));
    p.set_page_address(addr);
    p.set_r(true);
    p.set_last(last);
    p.set_prgindex(prg);
    p
}

fn pri_resp(sid: u32, prg: u16, resp: PriResp) -> Command {
    let mut c = Command::new(Opcode::PriResp);
    c.set_sid(sid);
    c.set_prgindex(prg);
    c.set_resp(resp);
    c
}

fn read_entry(mem: &HostMemory, addr: u64) -> PageRequest {
    PageRequest::from_words([0, 8].map(|o| mem.read_u64(Hpa(addr + o)).unwrap()))
}

#[test]
fn a_failed_translation_request_page_request_pri_resp_and_retry() {
    let mem = memory();
    let (s, s1, mut q) = rig(&mem, PQ, 3);
    let t = Transaction::new(SID_ATS, VA + 0x10, Access::READ);
    // The device asks; nothing is mapped: a completion without access, and no event recorded
    // even though CD.R == 1.
    assert_eq!(s.translation_request(&t), AtsResult::NoAccess);
    assert_eq!(s.mmio_read(regs::EVENTQ_PROD.0, 4), 0);
    // The device sends a page request; it lands in the PRI queue as its 16-byte entry.
    let req = page_req(SID_ATS, None, VA, 5, true);
    s.page_request(&req);
    assert_eq!(s.mmio_read(regs::PRIQ_PROD.0, 4), 1);
    assert_eq!(read_entry(&mem, PQ), req);
    assert_eq!(read_entry(&mem, PQ).words()[1] >> 12, VA >> 12, "Page address in [127:76]");
    // Software maps the page, consumes the entry and answers the group.
    let mut fr = sviommu_memory::FrameAllocator::new(&[(Hpa(0x80_0000), 0x10_0000)]);
    s1.map(&mem, &mut fr, VA, PA, 12, S1Attrs::ALL).unwrap();
    s.mmio_write(regs::PRIQ_CONS.0, 4, 1);
    q.submit(&mem, &s, &[pri_resp(SID_ATS, 5, PriResp::Success), sync()]);
    let resp = Output::PriResponse { sid: SID_ATS, ssid: None, prg_index: 5, response_code: 0 };
    assert_eq!(s.drain_outputs(), [resp]);
    // The device retries and gets the page.
    match s.translation_request(&t) {
        AtsResult::Translated(x) => assert_eq!((x.output, x.size_lg2), (PA, 12)),
        other => panic!("expected a translation, got {other:?}"),
    }
}

#[test]
fn a_stream_without_ats_gets_ur_and_f_bad_ats_treq() {
    let mem = memory();
    let (s, _, _) = rig(&mem, PQ, 3);
    let t = Transaction::new(SID_NO_ATS, VA, Access::READ);
    assert_eq!(s.translation_request(&t), AtsResult::UnsupportedRequest);
    let words: [u64; 4] = std::array::from_fn(|i| mem.read_u64(Hpa(EQ + 8 * i as u64)).unwrap());
    let r = EventRecord::from_words(words);
    assert_eq!((r.id(), r.sid()), (Ok(EventId::FBadAtsTreq), SID_NO_ATS));
    // A StreamID beyond the table: a configuration error, Completer Abort.
    let t = Transaction::new(9, VA, Access::READ);
    assert_eq!(s.translation_request(&t), AtsResult::CompleterAbort);
    // Without SMMU_IDR0.ATS the SMMU answers UR to everything.
    let plain = Smmu::new(&mem, SmmuParams::default());
    assert_eq!(plain.translation_request(&t), AtsResult::UnsupportedRequest);
}

#[test]
fn pri_overflow_inhibits_entries_until_acknowledged_and_auto_responds_to_last() {
    let mem = memory();
    let (s, _, _) = rig(&mem, PQ, 1); // 2 entries
    s.page_request(&page_req(SID_ATS, None, VA, 1, false));
    s.page_request(&page_req(SID_ATS, None, VA, 1, true));
    assert!(s.drain_outputs().is_empty());
    // Full: dropped, OVFLG toggles, the Last == 1 request is answered Success with its PASID
    // (SMMU_IDR3.PPS); a Last == 0 one is dropped silently.
    s.page_request(&page_req(SID_ATS, Some(7), VA, 2, false));
    s.page_request(&page_req(SID_ATS, Some(7), VA, 2, true));
    let p = s.mmio_read(regs::PRIQ_PROD.0, 4);
    assert!(prod::OVFLG.is_set(p));
    let auto = Output::PriResponse { sid: SID_ATS, ssid: Some(7), prg_index: 2, response_code: 0 };
    assert_eq!(s.drain_outputs(), [auto]);
    // Software consumes without acknowledging: the overflow still inhibits new entries.
    s.mmio_write(regs::PRIQ_CONS.0, 4, prod::WR.get(p));
    s.page_request(&page_req(SID_ATS, None, VA, 3, false));
    assert_eq!(s.mmio_read(regs::PRIQ_PROD.0, 4), p);
    // Acknowledged: entries are written again.
    s.mmio_write(regs::PRIQ_CONS.0, 4, cons::OVACKFLG.set(prod::WR.get(p), 1));
    s.page_request(&page_req(SID_ATS, None, VA, 4, true));
    assert_eq!(prod::WR.get(s.mmio_read(regs::PRIQ_PROD.0, 4)), 0b11);
    let st = s.stats();
    assert_eq!((st.page_requests_written, st.page_requests_dropped), (3, 3));
}

#[test]
fn a_disabled_or_aborting_pri_queue_answers_failure() {
    let mem = memory();
    let (s, _, _) = rig(&mem, HOLE, 2);
    // The write aborts: PRIQ_ABT_ERR, Response Failure without PASID.
    s.page_request(&page_req(SID_ATS, Some(3), VA, 9, true));
    let active = s.mmio_read(regs::GERROR.0, 4) ^ s.mmio_read(regs::GERRORN.0, 4);
    assert_eq!(active, gerror::PRIQ_ABT_ERR.mask());
    let fail = Output::PriResponse { sid: SID_ATS, ssid: None, prg_index: 9, response_code: 0xf };
    assert_eq!(s.drain_outputs(), [fail]);
    // While PRIQ_ABT_ERR is active, every request is refused; Stop Markers get no response.
    s.page_request(&page_req(SID_ATS, None, VA, 9, true));
    let mut stop = page_req(SID_ATS, Some(3), 0, 0, true);
    stop.set_r(false);
    s.page_request(&stop);
    assert_eq!(s.drain_outputs(), [fail]);
    let st = s.stats();
    assert_eq!((st.page_requests_aborted, st.page_requests_dropped), (1, 2));
}

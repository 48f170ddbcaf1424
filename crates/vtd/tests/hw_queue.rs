//! The invalidation queue (§6.5.2) through raw MMIO and descriptors written into memory: the
//! GCMD.QIE handshake, every descriptor type and what it does, the wait descriptor's status
//! write and completion interrupt, queue errors (IQE with IQH left at the bad descriptor and
//! the queue stopped until software clears it), wrap-around, and hostile queues.

mod common;

use std::sync::Mutex;

use common::*;
use proptest::prelude::*;
use sviommu_memory::{HostMemory, Hpa, MemoryError, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSsAttrs};
use sviommu_pgtable::{Access, Build};
use sviommu_vtd::hw::{DevTlbInvalidation, DmaRequest, MsiSource, Output, Vtd, VtdParams};
use sviommu_vtd::spec::inv::{
    ContextCacheInv, DescWidth, DescriptorType, DevTlbInv, IecInv, InvWait, IotlbInv,
    PasidCacheInv, PasidDevTlbInv, PasidIotlbInv,
};
use sviommu_vtd::spec::regs::iqer::Iqei;
use sviommu_vtd::spec::regs::{
    self, ecap, ectl, fsts, gcmd, gsts, ics, iqa, iqer, iqh, rtaddr::Ttm,
};
use sviommu_vtd::spec::root::{ContextEntry, TranslationType};
use sviommu_vtd::spec::{Aw, FaultReason as R, PageGroupResponse};

const RID: u16 = 0x0310;
const DID: u16 = 7;
const IOVA: u64 = 0x1000;
const HPA: u64 = 0x4000_0000;
/// Where the tests' wait descriptors write (besides STATUS_HPA).
const STATUS2: u64 = STATUS_HPA + 0x100;

fn r32(vtd: &Vtd<&HostMemory>, r: sviommu_vtd::spec::Reg32) -> u64 {
    vtd.mmio_read(r.0, 4)
}

fn fsts(vtd: &Vtd<&HostMemory>) -> u64 {
    r32(vtd, regs::FSTS)
}

fn iqh(vtd: &Vtd<&HostMemory>) -> u64 {
    iqh::QH.in_place(vtd.mmio_read(regs::IQH.0, 8))
}

fn iqei(vtd: &Vtd<&HostMemory>) -> u64 {
    iqer::IQEI.get(vtd.mmio_read(regs::IQER.0, 8))
}

fn with_ecap(f: sviommu_vtd::spec::Field) -> VtdParams {
    let p = VtdParams::default();
    VtdParams { ecap: f.with(p.ecap, true), ..p }
}

/// A wait descriptor writing `data` at `addr`.
fn wait_sw(addr: u64, data: u32) -> [u64; 4] {
    let mut w = InvWait::new();
    w.set_sw(true);
    w.set_status_addr(addr);
    w.set_status_data(data);
    w.words()
}

/// A wait descriptor raising the completion event.
fn wait_if() -> [u64; 4] {
    let mut w = InvWait::new();
    w.set_if(true);
    w.words()
}

/// A legacy-mode unit translating RID's IOVA -> HPA through a 3-level second stage (domain
/// DID); its queue enabled with 256-bit descriptors.
struct Legacy {
    m: Machine,
    rta: u64,
    ce_at: u64,
    ce: ContextEntry,
}

fn legacy() -> Legacy {
    let mut m = Machine::new();
    let rta = m.page();
    let ss = m.ss(vtd_ss::Levels::Three);
    ss.map(&m.mem, &mut m.frames, IOVA, HPA, 12, VtdSsAttrs::ALL).unwrap();
    let mut ce = ContextEntry::default();
    ce.set_p(true);
    ce.set_tt(TranslationType::UntranslatedOnly);
    ce.set_ssptptr(ss.root);
    ce.set_aw(Aw::Bits39);
    ce.set_did(DID);
    let ce_at = m.legacy_context(rta, RID, ce);
    Legacy { m, rta, ce_at, ce }
}

impl Legacy {
    fn unit(&self, params: VtdParams) -> Vtd<&HostMemory> {
        let vtd = unit(&self.m, params);
        enable(&vtd, self.rta, Ttm::Legacy);
        enable_queue(&vtd);
        vtd
    }

    /// Makes RID's context entry not present (without invalidating).
    fn drop_context(&self) {
        let mut ce = self.ce;
        ce.set_p(false);
        self.m.write(self.ce_at, ce.words());
    }
}

fn read(addr: u64) -> DmaRequest {
    DmaRequest::new(RID, addr, Access::READ)
}

// ---------------------------------------------------------------------------------------------
// Enabling the queue
// ---------------------------------------------------------------------------------------------

#[test]
fn qie_handshake_and_the_queue_registers() {
    let m = Machine::new();
    let vtd = unit(&m, VtdParams::default());
    assert_eq!(vtd.mmio_read(regs::IQH.0, 8), 0);
    // IQA: the base (bits above HAW dropped), DW, QS.
    vtd.mmio_write(regs::IQA.0, 8, u64::MAX);
    let a = vtd.mmio_read(regs::IQA.0, 8);
    assert_eq!(iqa::IQA.in_place(a), (1 << 52) - 0x1000, "below HAW only");
    assert!(iqa::DW.is_set(a));
    assert_eq!(iqa::QS.get(a), 7);
    assert_eq!(a & 0x7f8, 0, "reserved bits read 0");
    let queue = iqa::DW.with(QUEUE_HPA, true);
    vtd.mmio_write(regs::IQA.0, 8, queue);
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::QIE.mask());
    assert_eq!(r32(&vtd, regs::GSTS), gsts::QIES.mask());
    // IQA cannot change under an enabled queue.
    vtd.mmio_write(regs::IQA.0, 8, 0x1234_5000);
    assert_eq!(vtd.mmio_read(regs::IQA.0, 8), queue);
    // Run something so IQH moves; disabling resets it.
    submit_and_wait(&vtd, &[]);
    assert_eq!(iqh(&vtd), 32);
    vtd.mmio_write(regs::GCMD.0, 4, 0);
    assert_eq!(r32(&vtd, regs::GSTS), 0);
    assert_eq!(iqh(&vtd), 0, "IQH resets when the queue is disabled");
}

#[test]
fn without_ecap_qi_there_is_no_queue() {
    let m = Machine::new();
    let p = VtdParams::default();
    let vtd = unit(&m, VtdParams { ecap: ecap::QI.with(p.ecap, false), ..p });
    vtd.mmio_write(regs::IQA.0, 8, QUEUE_HPA);
    vtd.mmio_write(regs::IECTL.0, 4, 0);
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::QIE.mask());
    assert_eq!(r32(&vtd, regs::GSTS), 0, "QIE ignored");
    for r in [regs::IQH.0, regs::IQT.0, regs::IQA.0, regs::IQER.0] {
        assert_eq!(vtd.mmio_read(r, 8), 0, "{r:#x}");
    }
    assert_eq!(r32(&vtd, regs::IECTL), 0);
}

#[test]
fn descriptors_written_while_the_queue_is_off_run_when_it_is_enabled() {
    let t = legacy();
    let vtd = unit(&t.m, VtdParams::default());
    enable(&vtd, t.rta, Ttm::Legacy);
    vtd.mmio_write(regs::IQA.0, 8, iqa::DW.with(QUEUE_HPA, true));
    t.m.write(QUEUE_HPA, wait_sw(STATUS_HPA, 5));
    vtd.mmio_write(regs::IQT.0, 8, 32);
    assert_eq!(t.m.read(STATUS_HPA), 0, "nothing runs while QIES is clear");
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask() | gcmd::QIE.mask());
    assert_eq!(t.m.read(STATUS_HPA), 5);
    assert_eq!(iqh(&vtd), 32);
}

// ---------------------------------------------------------------------------------------------
// Every descriptor type
// ---------------------------------------------------------------------------------------------

#[test]
fn context_cache_descriptor() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    assert_eq!(ok(&vtd, read(IOVA)).output, HPA);
    t.drop_context();
    submit_and_wait(&vtd, &[desc::cc_device(DID, RID + 1, 0), desc::cc_domain(DID + 1)]);
    assert_eq!(ok(&vtd, read(IOVA)).output, HPA, "not selected");
    submit_and_wait(&vtd, &[desc::cc_domain(DID)]);
    assert_eq!(reason(&vtd, read(IOVA)), R::ContextEntryNotPresent);
    t.m.write(t.ce_at, t.ce.words());
    submit_and_wait(&vtd, &[desc::cc_global()]);
    assert_eq!(ok(&vtd, read(IOVA)).output, HPA);
}

#[test]
fn iotlb_descriptor_granularities() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    let pte_at = entry_at_3(&t.m, t.ce.ssptptr(), IOVA);
    for (i, (miss, hit)) in [
        (desc::iotlb_domain(DID + 1), desc::iotlb_domain(DID)),
        (desc::iotlb_pages(DID, IOVA + 0x1000, 0, false), desc::iotlb_pages(DID, IOVA, 0, true)),
        (desc::iotlb_pages(DID + 1, IOVA, 0, false), desc::iotlb_global()),
    ]
    .into_iter()
    .enumerate()
    {
        let before = ok(&vtd, read(IOVA)).output;
        let after = HPA + (i as u64 + 1) * 0x10_0000;
        repoint(&t.m, pte_at, after);
        submit_and_wait(&vtd, &[miss]);
        assert_eq!(ok(&vtd, read(IOVA)).output, before, "case {i}: not selected");
        submit_and_wait(&vtd, &[hit]);
        assert_eq!(ok(&vtd, read(IOVA)).output, after, "case {i}");
    }
}

/// The PTE of `iova` in a 3-level host table.
fn entry_at_3(m: &Machine, root: u64, iova: u64) -> u64 {
    let mut table = root;
    for shift in [30, 21] {
        table = m.read(table + 8 * ((iova >> shift) & 0x1ff)) & ENTRY_ADDR;
    }
    table + 8 * ((iova >> 12) & 0x1ff)
}

#[test]
fn device_tlb_descriptors_go_to_the_device() {
    let t = legacy();
    let vtd = t.unit(with_ecap(ecap::DT));
    let mut d = DevTlbInv::new();
    d.set_sid(RID);
    d.set_pfsid(0x0300);
    d.set_mip(3);
    d.set_s(true);
    d.set_addr(0x12_5000); // S with bits 13:12 = 01b: 16K at 0x12_4000
    let mut p = PasidDevTlbInv::new();
    p.set_sid(RID);
    p.set_pasid(0x345);
    p.set_g(true);
    p.set_addr(0x7000);
    submit_and_wait(&vtd, &[d.words(), p.words()]);
    assert_eq!(
        vtd.drain_outputs(),
        [
            Output::DevTlbInvalidation(DevTlbInvalidation {
                sid: RID,
                pfsid: 0x0300,
                pasid: None,
                global: false,
                addr: 0x12_4000,
                size_lg2: 14,
                mip: 3,
            }),
            Output::DevTlbInvalidation(DevTlbInvalidation {
                sid: RID,
                pfsid: 0,
                pasid: Some(0x345),
                global: true,
                addr: 0x7000,
                size_lg2: 12,
                mip: 0,
            }),
        ]
    );
    assert!(vtd.drain_outputs().is_empty(), "drained");
    // Without ECAP.DT the type is not supported: an invalid descriptor type.
    let p = VtdParams::default();
    let vtd = t.unit(VtdParams { ecap: ecap::DT.with(p.ecap, false), ..p });
    submit(&vtd, &[d.words()]);
    assert_eq!((fsts(&vtd) & fsts::IQE.mask(), iqei(&vtd)), (fsts::IQE.mask(), 3));
}

#[test]
fn interrupt_entry_cache_descriptors_are_accepted_and_do_nothing() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    let mut d = IecInv::new();
    d.set_g_raw(1);
    d.set_iidx(0x40);
    d.set_im(3);
    submit_and_wait(&vtd, &[d.words(), IecInv::new().words()]);
    assert_eq!(fsts(&vtd), 0);
    assert!(vtd.drain_outputs().is_empty());
}

#[test]
fn pasid_cache_and_pasid_iotlb_descriptors_are_exercised_in_hw_cache() {
    // Their granularities' effects are hw_cache's (pasid_cache_*, iotlb_*, *_paging_structure_*);
    // here: each one is accepted in a 256-bit queue and needs ECAP.SMTS.
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    let all = [
        desc::pc_global(),
        desc::pc_domain(DID),
        desc::pc_pasid(DID, 5),
        desc::piotlb_pasid(DID, 5),
        desc::piotlb_pages(DID, 5, 0x1000, 2, true),
    ];
    submit_and_wait(&vtd, &all);
    let p = VtdParams::default();
    let vtd = t.unit(VtdParams { ecap: ecap::SMTS.with(p.ecap, false), ..p });
    enable_queue(&vtd);
    submit(&vtd, &all[..1]);
    assert_eq!(iqei(&vtd), 3, "PASID descriptors need scalable-mode support");
}

#[test]
fn page_group_responses_go_to_the_device_with_ecap_prs() {
    let t = legacy();
    let mut r = PageGroupResponse::new();
    r.set_rid(RID);
    r.set_prgi(0x42);
    let vtd = t.unit(with_ecap(ecap::PRS));
    submit_and_wait(&vtd, &[r.words()]);
    assert_eq!(vtd.drain_outputs(), [Output::PageGroupResponse(r)]);
    let p = VtdParams::default();
    let vtd = t.unit(VtdParams { ecap: ecap::PRS.with(p.ecap, false), ..p });
    submit(&vtd, &[r.words()]);
    assert_eq!(iqei(&vtd), 3);
}

// ---------------------------------------------------------------------------------------------
// The wait descriptor
// ---------------------------------------------------------------------------------------------

#[test]
fn wait_status_write_touches_only_its_dword() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    t.m.write(STATUS2, [0x1111_1111_2222_2222]);
    submit_and_wait(&vtd, &[wait_sw(STATUS2 + 4, 0xabcd_ef01)]);
    assert_eq!(t.m.read(STATUS2), 0xabcd_ef01_2222_2222);
    submit_and_wait(&vtd, &[wait_sw(STATUS2, 7)]);
    assert_eq!(t.m.read(STATUS2), 0xabcd_ef01_0000_0007);
    // A status address no memory backs: the write is dropped, the queue goes on.
    submit_and_wait(&vtd, &[wait_sw(HOLE, 1)]);
    assert_eq!(fsts(&vtd), 0);
}

#[test]
fn wait_with_if_raises_the_invalidation_completion_event() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    vtd.mmio_write(regs::IEDATA.0, 4, 0x4041);
    vtd.mmio_write(regs::IEADDR.0, 4, 0xfee0_1000);
    vtd.mmio_write(regs::IEUADDR.0, 4, 0);
    // Out of reset IM is set: the event is held as IP.
    assert_eq!(r32(&vtd, regs::IECTL), ectl::IM.mask());
    submit_and_wait(&vtd, &[wait_if()]);
    assert_eq!(r32(&vtd, regs::ICS), ics::IWC.mask());
    assert_eq!(r32(&vtd, regs::IECTL), ectl::IM.mask() | ectl::IP.mask());
    assert!(vtd.drain_outputs().is_empty(), "masked");
    // Unmasking sends the held message and clears IP.
    vtd.mmio_write(regs::IECTL.0, 4, 0);
    let msi =
        Output::Msi { source: MsiSource::InvalidationCompletion, addr: 0xfee0_1000, data: 0x4041 };
    assert_eq!(vtd.drain_outputs(), [msi]);
    assert_eq!(r32(&vtd, regs::IECTL), 0);
    // While IWC stays set, another completion sends nothing.
    submit_and_wait(&vtd, &[wait_if()]);
    assert!(vtd.drain_outputs().is_empty());
    // Software clears IWC (write 1); the next completion sends at once.
    vtd.mmio_write(regs::ICS.0, 4, ics::IWC.mask());
    assert_eq!(r32(&vtd, regs::ICS), 0);
    submit_and_wait(&vtd, &[wait_if(), wait_sw(STATUS2, 9)]);
    assert_eq!(vtd.drain_outputs(), [msi]);
    // Masked again: clearing IWC while IP is held clears IP, and unmasking sends nothing.
    vtd.mmio_write(regs::ICS.0, 4, ics::IWC.mask());
    vtd.mmio_write(regs::IECTL.0, 4, ectl::IM.mask());
    submit_and_wait(&vtd, &[wait_if()]);
    assert_eq!(r32(&vtd, regs::IECTL), ectl::IM.mask() | ectl::IP.mask());
    vtd.mmio_write(regs::ICS.0, 4, ics::IWC.mask());
    assert_eq!(r32(&vtd, regs::IECTL), ectl::IM.mask());
    vtd.mmio_write(regs::IECTL.0, 4, 0);
    assert!(vtd.drain_outputs().is_empty());
}

#[test]
fn a_wait_is_a_fence_everything_before_it_is_done() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    assert_eq!(ok(&vtd, read(IOVA)).output, HPA);
    t.drop_context();
    // The status write of a wait after the invalidation means the invalidation is complete:
    // a translation that starts afterwards sees the new entry.
    submit(&vtd, &[desc::cc_global(), wait_sw(STATUS2, 1)]);
    assert_eq!(t.m.read(STATUS2), 1);
    assert_eq!(reason(&vtd, read(IOVA)), R::ContextEntryNotPresent);
}

// ---------------------------------------------------------------------------------------------
// Queue errors (§6.5.2.10)
// ---------------------------------------------------------------------------------------------

/// Submits `good`, `bad`, then a wait writing 1 at STATUS2: checks IQE with `why`, IQH at the
/// bad descriptor, the wait not run, and the queue stopped; then replaces the bad descriptor
/// with a harmless one, clears IQE and checks that the queue runs on to the end.
#[track_caller]
fn stops_at(vtd: &Vtd<&HostMemory>, bad: [u64; 4], why: Iqei) {
    t_clear(vtd);
    let width = if iqa::DW.is_set(vtd.mmio_read(regs::IQA.0, 8)) { 32 } else { 16 };
    let start = iqh(vtd);
    submit(vtd, &[desc::cc_global(), bad, wait_sw(STATUS2, 1)]);
    assert_eq!(fsts(vtd) & fsts::IQE.mask(), fsts::IQE.mask(), "IQE");
    assert_eq!(iqei(vtd), u64::from(why), "IQEI");
    let bad_at = (start + width) % 4096;
    assert_eq!(iqh(vtd), bad_at, "IQH points at the bad descriptor");
    assert_eq!(vtd.memory().read_u64(Hpa(STATUS2)).unwrap(), 0, "nothing after it ran");
    // Stopped: more descriptors do not run while IQE is set.
    submit(vtd, &[wait_sw(STATUS2 + 8, 1)]);
    assert_eq!(iqh(vtd), bad_at);
    // Software fixes the descriptor (a wait that does nothing) and clears IQE.
    let fix = InvWait::new().words();
    let base = iqa::IQA.in_place(vtd.mmio_read(regs::IQA.0, 8));
    for (i, w) in fix.iter().take(width as usize / 8).enumerate() {
        vtd.memory().write_u64(Hpa(base + bad_at + 8 * i as u64), *w).unwrap();
    }
    vtd.mmio_write(regs::FSTS.0, 4, fsts::IQE.mask());
    assert_eq!(fsts(vtd), 0);
    assert_eq!(vtd.memory().read_u64(Hpa(STATUS2)).unwrap(), 1, "the queue ran on");
    assert_eq!(vtd.memory().read_u64(Hpa(STATUS2 + 8)).unwrap(), 1);
    assert_eq!(iqh(vtd), iqt::QT.in_place(vtd.mmio_read(regs::IQT.0, 8)));
}

use sviommu_vtd::spec::regs::iqt;

/// Zeroes the status words `stops_at` uses.
fn t_clear(vtd: &Vtd<&HostMemory>) {
    vtd.memory().write_u64(Hpa(STATUS2), 0).unwrap();
    vtd.memory().write_u64(Hpa(STATUS2 + 8), 0).unwrap();
}

#[test]
fn iqe_for_a_reserved_descriptor_type() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    for ty in [0u64, 0xa, 0xf, 0x10, 0x7f] {
        let words = [(ty & 0xf) | ((ty >> 4) << 9), 0, 0, 0];
        stops_at(&vtd, words, Iqei::DescriptorType);
    }
}

#[test]
fn iqe_for_reserved_bits_and_reserved_encodings() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    // A reserved bit of each type's 128-bit form, and of the upper half in 256-bit mode.
    let mut cc = ContextCacheInv::new().words();
    cc[0] |= 1 << 6;
    stops_at(&vtd, cc, Iqei::ReservedField);
    let mut io = IotlbInv::new().words();
    io[1] |= 1 << (71 - 64);
    stops_at(&vtd, io, Iqei::ReservedField);
    let mut wait = InvWait::new().words();
    wait[3] = 1;
    stops_at(&vtd, wait, Iqei::ReservedField);
    let mut pc = PasidCacheInv::new().words();
    pc[0] |= 1 << 63;
    stops_at(&vtd, pc, Iqei::ReservedField);
    // Reserved granularities: context-cache and IOTLB 00b, PASID-based IOTLB 00b and 01b,
    // PASID-cache 10b.
    stops_at(&vtd, ContextCacheInv::new().words(), Iqei::ReservedField);
    stops_at(&vtd, IotlbInv::new().words(), Iqei::ReservedField);
    for g in [0, 1] {
        let mut d = PasidIotlbInv::new();
        d.set_g_raw(g);
        stops_at(&vtd, d.words(), Iqei::ReservedField);
    }
    let mut d = PasidCacheInv::new();
    d.set_g_raw(2);
    stops_at(&vtd, d.words(), Iqei::ReservedField);
    // An address mask above CAP.MAMV (18).
    stops_at(&vtd, desc::iotlb_pages(DID, 0, 19, false), Iqei::ReservedField);
    stops_at(&vtd, desc::piotlb_pages(DID, 1, 0, 19, false), Iqei::ReservedField);
    // A status address at or above HAW.
    let mut w = InvWait::new();
    w.set_sw(true);
    w.set_status_addr(1 << 52);
    stops_at(&vtd, w.words(), Iqei::ReservedField);
}

#[test]
fn iqe_for_a_scalable_mode_descriptor_in_a_128_bit_queue() {
    let t = legacy();
    let vtd = unit(&t.m, VtdParams::default());
    enable(&vtd, t.rta, Ttm::Legacy);
    vtd.mmio_write(regs::IQA.0, 8, QUEUE_HPA);
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask() | gcmd::QIE.mask());
    // 128-bit descriptors work...
    submit_and_wait(&vtd, &[desc::cc_global(), desc::iotlb_global()]);
    assert_eq!(iqh(&vtd), 3 * 16);
    // ...and the PASID-granular ones cannot be carried.
    for d in [desc::pc_global(), desc::piotlb_pasid(DID, 1)] {
        stops_at(&vtd, d, Iqei::DescriptorWidth);
    }
    let mut p = PasidDevTlbInv::new();
    p.set_sid(RID);
    let vtd = unit(&t.m, with_ecap(ecap::DT));
    vtd.mmio_write(regs::IQA.0, 8, QUEUE_HPA);
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::QIE.mask());
    stops_at(&vtd, p.words(), Iqei::DescriptorWidth);
}

#[test]
fn iqe_for_an_invalid_tail() {
    let t = legacy();
    let vtd = t.unit(VtdParams::default());
    // 256-bit descriptors: bit 4 of the tail must be clear.
    vtd.mmio_write(regs::IQT.0, 8, 0x10);
    assert_eq!((fsts(&vtd), iqei(&vtd)), (fsts::IQE.mask(), u64::from(Iqei::TailPointer)));
    assert_eq!(iqh(&vtd), 0);
    // Clearing IQE with the tail still invalid: the error again.
    vtd.mmio_write(regs::FSTS.0, 4, fsts::IQE.mask());
    assert_eq!(fsts(&vtd), fsts::IQE.mask());
    // A tail beyond the queue (QS = 0: 4K).
    vtd.mmio_write(regs::IQT.0, 8, 0x1000);
    vtd.mmio_write(regs::FSTS.0, 4, fsts::IQE.mask());
    assert_eq!(iqei(&vtd), u64::from(Iqei::TailPointer));
    vtd.mmio_write(regs::IQT.0, 8, 0);
    vtd.mmio_write(regs::FSTS.0, 4, fsts::IQE.mask());
    assert_eq!(fsts(&vtd), 0);
    submit_and_wait(&vtd, &[]);
}

#[test]
fn iqe_when_the_descriptor_cannot_be_fetched() {
    let t = legacy();
    let vtd = unit(&t.m, VtdParams::default());
    vtd.mmio_write(regs::IQA.0, 8, iqa::DW.with(HOLE, true));
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::QIE.mask());
    vtd.mmio_write(regs::IQT.0, 8, 32);
    assert_eq!((fsts(&vtd), iqei(&vtd)), (fsts::IQE.mask(), u64::from(Iqei::Fetch)));
    assert_eq!(iqh(&vtd), 0);
}

#[test]
fn a_descriptor_type_needs_the_width_and_support_it_declares() {
    for t in DescriptorType::ALL {
        assert_eq!(
            t.scalable_only(),
            matches!(
                t,
                DescriptorType::PasidIotlb
                    | DescriptorType::PasidCache
                    | DescriptorType::PasidDevTlb
                    | DescriptorType::PageGroupResponse
            )
        );
    }
    assert_eq!(DescWidth::W256.bytes(), 32);
}

// ---------------------------------------------------------------------------------------------
// Wrap-around
// ---------------------------------------------------------------------------------------------

#[test]
fn the_queue_wraps_around() {
    for dw in [false, true] {
        let t = legacy();
        let vtd = unit(&t.m, VtdParams::default());
        enable(&vtd, t.rta, Ttm::Legacy);
        vtd.mmio_write(regs::IQA.0, 8, iqa::DW.with(QUEUE_HPA, dw));
        vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask() | gcmd::QIE.mask());
        let width = if dw { 32 } else { 16 };
        let slots = 4096 / width;
        // Batches of 7 descriptors (6 + a wait) until the tail has gone round three times.
        let mut sent = 0;
        let mut n = 0u32;
        while sent < 3 * slots {
            n += 1;
            let batch: Vec<[u64; 4]> = (0..6)
                .map(|i| if i % 2 == 0 { desc::cc_global() } else { desc::iotlb_global() })
                .collect();
            let mut all = batch;
            all.push(wait_sw(STATUS2, n));
            submit(&vtd, &all);
            sent += 7;
            assert_eq!(t.m.read(STATUS2), u64::from(n), "batch {n}");
            assert_eq!(iqh(&vtd), (sent * width) % 4096);
        }
        assert_eq!(fsts(&vtd), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile queues
// ---------------------------------------------------------------------------------------------

/// One memory access the unit made.
#[derive(Clone, Copy, Debug)]
enum Touch {
    Read {
        addr: u64,
        len: u64,
    },
    /// A quadword read, and whether memory backed it.
    ReadU64 {
        addr: u64,
        backed: bool,
    },
    Cas(u64),
    Write,
}

/// Host memory that logs every access.
struct Watched<'a> {
    mem: &'a HostMemory,
    log: Mutex<Vec<Touch>>,
}

impl Watched<'_> {
    fn note(&self, t: Touch) {
        self.log.lock().unwrap().push(t);
    }
}

impl PhysMemory for Watched<'_> {
    type Addr = Hpa;
    fn read_u64(&self, addr: Hpa) -> Result<u64, MemoryError> {
        let read = self.mem.read_u64(addr);
        self.note(Touch::ReadU64 { addr: addr.0, backed: read.is_ok() });
        read
    }
    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemoryError> {
        self.note(Touch::Write);
        self.mem.write_u64(addr, value)
    }
    fn compare_exchange_u64(
        &self,
        addr: Hpa,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.note(Touch::Cas(addr.0));
        self.mem.compare_exchange_u64(addr, current, new)
    }
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.note(Touch::Read { addr: addr.0, len: buf.len() as u64 });
        self.mem.read(addr, buf)
    }
    fn write(&self, addr: Hpa, buf: &[u8]) -> Result<(), MemoryError> {
        self.note(Touch::Write);
        self.mem.write(addr, buf)
    }
}

const MEM: u64 = 0x10_0000;
const MEM_LEN: u64 = 0x10_0000;

#[derive(Clone, Debug)]
enum Op {
    /// Write a descriptor at the tail and move the tail past it, as a driver does.
    Push([u64; 4]),
    /// Write descriptor words into queue slot `slot`.
    Desc { slot: u16, words: [u64; 4] },
    /// Write IQT.
    Tail(u64),
    /// Clear FSTS.IQE.
    ClearIqe,
    /// Write IQA (queue disabled around it).
    Iqa(u64),
    /// Toggle the interrupt mask / clear IWC.
    Event(bool),
}

/// Descriptor words: a valid type with random fields (reserved bits cleared or not), or noise.
fn desc_words() -> impl Strategy<Value = [u64; 4]> {
    let sparse = (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c)| a & b & c);
    let ty = prop_oneof![4 => 1u64..=9, 1 => 0u64..0x80];
    (ty, prop::array::uniform4(sparse), prop::bool::weighted(0.75), any::<[u64; 4]>(), 0u8..8)
        .prop_map(|(ty, mut w, clean, noise, pick)| {
            if pick == 0 {
                return noise;
            }
            w[0] = (w[0] & !0xe0f) | (ty & 0xf) | ((ty >> 4) << 9);
            // Status writes land in memory (or a hole just below it) most of the time.
            if ty == 5 {
                w[1] = (MEM - 0x1000 + (w[1] % (MEM_LEN + 0x2000))) & !3;
            }
            if clean {
                let mask = reserved_mask(ty);
                for (x, m) in w.iter_mut().zip(mask) {
                    *x &= !m;
                }
            }
            w
        })
}

/// The reserved bits of type `ty`'s 256-bit form (none for reserved types).
fn reserved_mask(ty: u64) -> [u64; 4] {
    let w = DescWidth::W256;
    match DescriptorType::try_from(ty) {
        Ok(DescriptorType::ContextCache) => ContextCacheInv::reserved_mask(w),
        Ok(DescriptorType::Iotlb) => IotlbInv::reserved_mask(w),
        Ok(DescriptorType::DevTlb) => DevTlbInv::reserved_mask(w),
        Ok(DescriptorType::InterruptEntryCache) => IecInv::reserved_mask(w),
        Ok(DescriptorType::Wait) => InvWait::reserved_mask(w),
        Ok(DescriptorType::PasidIotlb) => PasidIotlbInv::reserved_mask(w),
        Ok(DescriptorType::PasidCache) => PasidCacheInv::reserved_mask(w),
        Ok(DescriptorType::PasidDevTlb) => PasidDevTlbInv::reserved_mask(w),
        Ok(DescriptorType::PageGroupResponse) => PageGroupResponse::reserved_mask(w),
        Err(_) => [0; 4],
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => desc_words().prop_map(Op::Push),
        2 => (any::<u16>(), desc_words()).prop_map(|(slot, words)| Op::Desc { slot, words }),
        2 => prop_oneof![
            6 => (0u64..128).prop_map(|i| i * 32),
            1 => (0u64..0x2000).prop_map(|t| t & !0xf),
            1 => any::<u64>(),
        ]
        .prop_map(Op::Tail),
        2 => Just(Op::ClearIqe),
        1 => (any::<u64>(), 0u8..3).prop_map(|(v, base)| {
            // The queue at the start of memory, in its last page (so larger queues run off
            // its end), or in a hole.
            let at = [MEM, MEM + MEM_LEN - 0x1000, 0][usize::from(base)];
            Op::Iqa(at | (v & 0xfff))
        }),
        1 => any::<bool>().prop_map(Op::Event),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random descriptors, tails, queue addresses and sizes: the unit processes or reports a
    /// queue error, never panics, and reads nothing but its queue (and the status words it
    /// writes with a compare-exchange).
    #[test]
    fn hostile_queues_give_queue_errors_or_effects(
        ops in prop::collection::vec(op(), 1..40),
        flips in any::<[bool; 3]>(),
    ) {
        let host = HostMemory::new(&[(Hpa(MEM), MEM_LEN)]).unwrap();
        let watched = Watched { mem: &host, log: Mutex::new(Vec::new()) };
        let mut p = VtdParams::default();
        for (on, f) in flips.iter().zip([ecap::DT, ecap::PRS, ecap::SMTS]) {
            p.ecap = f.with(p.ecap, *on != (f == ecap::SMTS));
        }
        let vtd = Vtd::new(&watched, p);
        vtd.mmio_write(regs::IQA.0, 8, iqa::DW.with(MEM, true));
        vtd.mmio_write(regs::GCMD.0, 4, gcmd::QIE.mask());
        for op in &ops {
            match *op {
                Op::Push(words) => {
                    let a = vtd.mmio_read(regs::IQA.0, 8);
                    let width: u64 = if iqa::DW.is_set(a) { 32 } else { 16 };
                    let size = iqa::queue_bytes(a);
                    let tail = iqt::QT.in_place(vtd.mmio_read(regs::IQT.0, 8)) % size;
                    let at = iqa::IQA.in_place(a) + tail;
                    for (i, w) in words.iter().take(width as usize / 8).enumerate() {
                        let _ = host.write_u64(Hpa(at + 8 * i as u64), *w);
                    }
                    vtd.mmio_write(regs::IQT.0, 8, (tail + width) % size);
                }
                Op::Desc { slot, words } => {
                    let a = vtd.mmio_read(regs::IQA.0, 8);
                    let width: u64 = if iqa::DW.is_set(a) { 32 } else { 16 };
                    let at = iqa::IQA.in_place(a) + (u64::from(slot) * width) % iqa::queue_bytes(a);
                    for (i, w) in words.iter().enumerate() {
                        let _ = host.write_u64(Hpa(at + 8 * i as u64), *w);
                    }
                }
                Op::Tail(t) => vtd.mmio_write(regs::IQT.0, 8, t),
                Op::ClearIqe => vtd.mmio_write(regs::FSTS.0, 4, fsts::IQE.mask()),
                Op::Iqa(v) => {
                    vtd.mmio_write(regs::GCMD.0, 4, 0);
                    vtd.mmio_write(regs::IQT.0, 8, 0);
                    vtd.mmio_write(regs::IQA.0, 8, v);
                    vtd.mmio_write(regs::GCMD.0, 4, gcmd::QIE.mask());
                }
                Op::Event(mask) => {
                    vtd.mmio_write(regs::IECTL.0, 4, if mask { ectl::IM.mask() } else { 0 });
                    vtd.mmio_write(regs::ICS.0, 4, ics::IWC.mask());
                }
            }
            let a = vtd.mmio_read(regs::IQA.0, 8);
            let (base, size) = (iqa::IQA.in_place(a), iqa::queue_bytes(a));
            let width: u64 = if iqa::DW.is_set(a) { 32 } else { 16 };
            let head = iqh::QH.in_place(vtd.mmio_read(regs::IQH.0, 8));
            prop_assert!(head < size && head % width == 0, "IQH {head:#x}");
            let tail = iqt::QT.in_place(vtd.mmio_read(regs::IQT.0, 8));
            let stopped = fsts::IQE.is_set(vtd.mmio_read(regs::FSTS.0, 4));
            prop_assert!(stopped || head == tail, "an error-free queue runs to its tail");
            // Every read was a descriptor fetch inside the queue, or the read half of a status
            // write's compare-exchange (which is dropped when no memory backs its address).
            let log = std::mem::take(&mut *watched.log.lock().unwrap());
            for (i, t) in log.iter().enumerate() {
                match *t {
                    Touch::Read { addr, len } => prop_assert!(
                        addr >= base && addr + len <= base + size,
                        "fetch at {addr:#x} outside the queue {base:#x}+{size:#x}"
                    ),
                    Touch::ReadU64 { addr, backed } => prop_assert!(
                        !backed || matches!(log.get(i + 1), Some(Touch::Cas(a)) if *a == addr),
                        "a read at {addr:#x} that is not a status write"
                    ),
                    Touch::Cas(_) | Touch::Write => {}
                }
            }
        }
        let _ = vtd.drain_outputs();
    }
}

//! Fault recording (§7.2) and the fault event through raw MMIO: every fault translate
//! returns lands in the next fault recording register (FRCD at CAP.FRO) with its fields, FSTS
//! reports PPF and FRI, a full set of records overflows into PFO, FPD suppresses recording, and
//! the fault event goes out as an MSI from FEDATA/FEADDR unless FECTL.IM holds it as IP.

mod common;

use common::*;
use sviommu_memory::HostMemory;
use sviommu_pgtable::vtd_ss::{self, VtdSsAttrs};
use sviommu_pgtable::x86::{self, X86Attrs};
use sviommu_pgtable::{Access, Build};
use sviommu_vtd::hw::{DmaRequest, MsiSource, Output, Vtd, VtdParams};
use sviommu_vtd::spec::fault::{AddressType, FaultRecord, RequestType};
use sviommu_vtd::spec::inv::InvWait;
use sviommu_vtd::spec::pasid::{Fspm, PasidEntry, Pgtt};
use sviommu_vtd::spec::regs::{self, cap, ectl, fsts, rtaddr::Ttm};
use sviommu_vtd::spec::root::{ContextEntry, ScalableContextEntry, TranslationType};
use sviommu_vtd::spec::{Aw, FaultReason as R};

const RID: u16 = 0x0310;
const PASID: u32 = 0x345;
/// Mapped (read-only in legacy mode); everything else faults.
const IOVA: u64 = 0x1000;
const HOLE_IOVA: u64 = 0x7_0000;
const FEADDR: u64 = 0xfee0_0000;
const FEDATA: u64 = 0x0021;

/// A legacy unit over a second stage mapping IOVA read-only; RID's context entry is
/// `fpd`-flagged as asked. The fault event is unmasked and aimed at FEADDR/FEDATA.
fn legacy(fpd: bool) -> (Machine, u64) {
    let mut m = Machine::new();
    let rta = m.page();
    let ss = m.ss(vtd_ss::Levels::Three);
    ss.map(&m.mem, &mut m.frames, IOVA, 0x4000_0000, 12, VtdSsAttrs::READ_ONLY).unwrap();
    let mut ce = ContextEntry::default();
    ce.set_p(true);
    ce.set_tt(TranslationType::UntranslatedOnly);
    ce.set_ssptptr(ss.root);
    ce.set_aw(Aw::Bits39);
    ce.set_did(3);
    ce.set_fpd(fpd);
    m.legacy_context(rta, RID, ce);
    (m, rta)
}

fn on(m: &Machine, rta: u64, ttm: Ttm, unmask: bool) -> Vtd<&HostMemory> {
    let vtd = unit(m, VtdParams::default());
    enable(&vtd, rta, ttm);
    vtd.mmio_write(regs::FEDATA.0, 4, FEDATA);
    vtd.mmio_write(regs::FEADDR.0, 4, FEADDR);
    if unmask {
        vtd.mmio_write(regs::FECTL.0, 4, 0);
    }
    vtd
}

/// Fault recording register `i`, read as software does (two 64-bit reads).
fn frcd(vtd: &Vtd<&HostMemory>, i: u64) -> FaultRecord {
    let (lo, hi) = regs::frcd(vtd.params().cap, i);
    FaultRecord::from_words([vtd.mmio_read(lo.0, 8), vtd.mmio_read(hi.0, 8)])
}

/// Clears F of record `i` (write 1 to bit 127).
fn clear_f(vtd: &Vtd<&HostMemory>, i: u64) {
    let (_, hi) = regs::frcd(vtd.params().cap, i);
    vtd.mmio_write(hi.0 + 4, 4, 1 << 31);
}

fn fsts(vtd: &Vtd<&HostMemory>) -> u64 {
    vtd.mmio_read(regs::FSTS.0, 4)
}

fn fectl(vtd: &Vtd<&HostMemory>) -> u64 {
    vtd.mmio_read(regs::FECTL.0, 4)
}

fn write(addr: u64) -> DmaRequest {
    DmaRequest::new(RID, addr, Access::WRITE)
}

fn read(addr: u64) -> DmaRequest {
    DmaRequest::new(RID, addr, Access::READ)
}

const FAULT_MSI: Output =
    Output::Msi { source: MsiSource::Fault, addr: FEADDR, data: FEDATA as u32 };

#[test]
fn a_fault_is_recorded_with_its_fields_and_raises_the_fault_event() {
    let (m, rta) = legacy(false);
    let vtd = on(&m, rta, Ttm::Legacy, true);
    assert_eq!(reason(&vtd, write(IOVA + 0x123)), R::WriteDenied);
    let r = frcd(&vtd, 0);
    assert!(r.f());
    assert_eq!(r.fr(), Ok(R::WriteDenied));
    assert_eq!((r.fi(), r.sid()), (IOVA, RID), "the page address and the requester");
    assert_eq!(r.request_type(), RequestType::Write);
    assert_eq!(r.at(), Ok(AddressType::Untranslated));
    assert!(!r.pp() && !r.priv_() && !r.exe());
    assert!(!r.reserved_bits_set());
    // PPF, FRI = 0, and the event.
    assert_eq!(fsts(&vtd), fsts::PPF.mask());
    assert_eq!(vtd.drain_outputs(), [FAULT_MSI]);
    assert_eq!(fectl(&vtd), 0, "sent: IP clear");
    // A second fault goes to the next record; PPF was already set, so no new event.
    assert_eq!(reason(&vtd, read(HOLE_IOVA)), R::ReadDenied);
    let r = frcd(&vtd, 1);
    assert_eq!((r.f(), r.fr(), r.fi()), (true, Ok(R::ReadDenied), HOLE_IOVA));
    assert_eq!(r.request_type(), RequestType::Read);
    assert!(vtd.drain_outputs().is_empty());
    assert_eq!(fsts::FRI.get(fsts(&vtd)), 0, "FRI: the first pending record");
}

#[test]
fn f_is_write_1_to_clear_and_ppf_follows_the_records() {
    let (m, rta) = legacy(false);
    let vtd = on(&m, rta, Ttm::Legacy, true);
    reason(&vtd, write(IOVA));
    reason(&vtd, write(IOVA));
    // Writing 0, or to the other fields, changes nothing.
    let (lo, hi) = regs::frcd(vtd.params().cap, 0);
    vtd.mmio_write(hi.0 + 4, 4, 0x7fff_ffff);
    vtd.mmio_write(lo.0, 8, u64::MAX);
    assert_eq!(frcd(&vtd, 0), {
        let mut r = frcd(&vtd, 1);
        r.set_f(true);
        r
    });
    clear_f(&vtd, 0);
    assert!(!frcd(&vtd, 0).f());
    assert_eq!(fsts(&vtd) & fsts::PPF.mask(), fsts::PPF.mask(), "record 1 still pending");
    // A 64-bit write of the upper half clears F too.
    vtd.mmio_write(hi.0 + 16, 8, 1 << 63);
    assert_eq!(fsts(&vtd), 0, "no record pending: PPF clear");
    // The interrupt is delivered (a second one would coalesce with it while it is pending).
    assert_eq!(vtd.drain_outputs(), [FAULT_MSI]);
    // The next fault goes to record 2 (the internal index goes round), and FRI says so.
    reason(&vtd, write(IOVA));
    assert!(frcd(&vtd, 2).f());
    assert_eq!(fsts(&vtd), fsts::PPF.mask() | fsts::FRI.set(0, 2));
    assert_eq!(vtd.drain_outputs(), [FAULT_MSI], "a new event each time PPF rose");
}

#[test]
fn a_full_set_of_records_overflows_into_pfo() {
    let (m, rta) = legacy(false);
    let vtd = on(&m, rta, Ttm::Legacy, true);
    let n = cap::nfr_count(vtd.params().cap);
    for i in 0..n {
        reason(&vtd, write(IOVA + (i << 12)));
    }
    assert!((0..n).all(|i| frcd(&vtd, i).f()));
    assert_eq!(fsts(&vtd) & fsts::PFO.mask(), 0);
    // The next one finds record 0 still pending: dropped, PFO.
    reason(&vtd, read(HOLE_IOVA));
    assert_eq!(fsts(&vtd) & fsts::PFO.mask(), fsts::PFO.mask());
    assert_eq!(frcd(&vtd, 0).fi(), IOVA, "record 0 kept");
    // While PFO is set nothing is recorded, even with a free record.
    clear_f(&vtd, 0);
    reason(&vtd, read(HOLE_IOVA));
    assert!(!frcd(&vtd, 0).f());
    // Software clears PFO: the next fault goes to record 0.
    vtd.mmio_write(regs::FSTS.0, 4, fsts::PFO.mask());
    reason(&vtd, read(HOLE_IOVA));
    assert_eq!((frcd(&vtd, 0).f(), frcd(&vtd, 0).fi()), (true, HOLE_IOVA));
    // One event: when the first fault was recorded (PPF stayed set after).
    assert_eq!(vtd.drain_outputs(), [FAULT_MSI]);
}

#[test]
fn fpd_suppresses_recording_but_not_the_fault() {
    let (m, rta) = legacy(true);
    let vtd = on(&m, rta, Ttm::Legacy, true);
    let f = fault(&vtd, write(IOVA));
    assert_eq!((f.reason, f.fpd), (R::WriteDenied, true));
    assert!(!frcd(&vtd, 0).f());
    assert_eq!(fsts(&vtd), 0);
    assert!(vtd.drain_outputs().is_empty());
    // A fault found before the context entry (no FPD to consult) is recorded.
    reason(&vtd, DmaRequest::new(0x0410, IOVA, Access::READ));
    assert_eq!(frcd(&vtd, 0).fr(), Ok(R::RootEntryNotPresent));
}

#[test]
fn a_masked_event_is_held_as_ip_until_unmasked_or_serviced() {
    let (m, rta) = legacy(false);
    let vtd = on(&m, rta, Ttm::Legacy, false);
    assert_eq!(fectl(&vtd), ectl::IM.mask(), "masked out of reset");
    reason(&vtd, write(IOVA));
    assert_eq!(fectl(&vtd), ectl::IM.mask() | ectl::IP.mask());
    assert!(vtd.drain_outputs().is_empty());
    // Unmasking sends the held message.
    vtd.mmio_write(regs::FECTL.0, 4, 0);
    assert_eq!(vtd.drain_outputs(), [FAULT_MSI]);
    assert_eq!(fectl(&vtd), 0);
    // Masked again; a new condition after software serviced the first one.
    vtd.mmio_write(regs::FECTL.0, 4, ectl::IM.mask());
    clear_f(&vtd, 0);
    reason(&vtd, write(IOVA));
    assert_eq!(fectl(&vtd), ectl::IM.mask() | ectl::IP.mask());
    // Servicing every condition (the record's F) drops the held message: unmasking sends
    // nothing.
    clear_f(&vtd, 1);
    assert_eq!(fectl(&vtd), ectl::IM.mask());
    vtd.mmio_write(regs::FECTL.0, 4, 0);
    assert!(vtd.drain_outputs().is_empty());
}

#[test]
fn fedata_and_the_upper_address_make_the_message() {
    let (m, rta) = legacy(false);
    let vtd = on(&m, rta, Ttm::Legacy, true);
    vtd.mmio_write(regs::FEDATA.0, 4, 0xabcd_0042);
    vtd.mmio_write(regs::FEUADDR.0, 4, 0x1);
    reason(&vtd, write(IOVA));
    assert_eq!(
        vtd.drain_outputs(),
        [Output::Msi { source: MsiSource::Fault, addr: 0x1_0000_0000 | FEADDR, data: 0xabcd_0042 }]
    );
}

#[test]
fn an_invalidation_queue_error_raises_the_fault_event() {
    let (m, rta) = legacy(false);
    let vtd = on(&m, rta, Ttm::Legacy, true);
    enable_queue(&vtd);
    submit(&vtd, &[[0, 0, 0, 0]]); // type 0: reserved
    assert_eq!(fsts(&vtd), fsts::IQE.mask());
    assert_eq!(vtd.drain_outputs(), [FAULT_MSI]);
    // While IQE is pending a recorded fault raises no new event...
    reason(&vtd, write(IOVA));
    assert!(vtd.drain_outputs().is_empty());
    // ...and once every condition is serviced (the bad descriptor replaced first, or the
    // queue would stop on it again), the next one does.
    m.write(QUEUE_HPA, InvWait::new().words());
    vtd.mmio_write(regs::FSTS.0, 4, fsts::IQE.mask());
    clear_f(&vtd, 0);
    assert_eq!(fsts(&vtd), 0);
    reason(&vtd, write(IOVA));
    assert_eq!(vtd.drain_outputs(), [FAULT_MSI]);
}

#[test]
fn scalable_mode_records_carry_the_pasid_privilege_and_execute() {
    let mut m = Machine::new();
    let rta = m.page();
    let dir = m.page();
    let fs = m.fs(x86::Levels::Four);
    let sup = X86Attrs { user: false, ..X86Attrs::ALL };
    fs.map(&m.mem, &mut m.frames, 0x4000_0000, 0x5000_0000, 12, sup).unwrap();
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pasiddirptr(dir);
    m.sm_context(rta, RID, ce);
    let mut pe = PasidEntry::default();
    pe.set_p(true);
    pe.set_pgtt(Pgtt::FirstStage);
    pe.set_fspm(Fspm::FourLevel);
    pe.set_fsptptr(fs.root);
    pe.set_sre(true);
    pe.set_ere(true);
    m.pasid_entry(dir, PASID, pe);
    let vtd = on(&m, rta, Ttm::Scalable, true);
    // A user execute fetch from a supervisor page.
    let req = DmaRequest::new(RID, 0x4000_0010, Access::EXEC).with_pasid(PASID);
    assert_eq!(reason(&vtd, req), R::SmUserAccessDenied);
    let r = frcd(&vtd, 0);
    assert_eq!((r.pp(), r.pv(), r.priv_(), r.exe()), (true, PASID, false, true));
    assert_eq!(r.request_type(), RequestType::Read, "an execute request is a read");
    // A privileged write to an unmapped page.
    let req = DmaRequest::new(RID, 0x4020_0000, Access::WRITE.privileged()).with_pasid(PASID);
    assert_eq!(reason(&vtd, req), R::SmFsEntryNotPresent);
    let r = frcd(&vtd, 1);
    assert_eq!((r.pp(), r.priv_(), r.exe()), (true, true, false));
    assert_eq!(r.request_type(), RequestType::Write);
    // Without a PASID (RID_PASID 0 has no entry): PP clear, and PRIV/EXE with it.
    let req = DmaRequest::new(RID, 0x4000_0010, Access::EXEC.privileged());
    assert_eq!(reason(&vtd, req), R::SmPasidDirEntryNotPresent);
    let r = frcd(&vtd, 2);
    assert_eq!((r.pp(), r.pv(), r.priv_(), r.exe()), (false, 0, false, false));
}

#[test]
fn disabling_translation_resets_the_recording_index() {
    let (m, rta) = legacy(false);
    let vtd = on(&m, rta, Ttm::Legacy, true);
    reason(&vtd, write(IOVA));
    clear_f(&vtd, 0);
    // TE off and on again: the next fault goes to record 0, not 1.
    vtd.mmio_write(regs::GCMD.0, 4, 0);
    vtd.mmio_write(regs::GCMD.0, 4, sviommu_vtd::spec::regs::gcmd::TE.mask());
    reason(&vtd, read(HOLE_IOVA));
    assert_eq!(
        (frcd(&vtd, 0).f(), frcd(&vtd, 0).fi(), frcd(&vtd, 1).f()),
        (true, HOLE_IOVA, false)
    );
}

//! §11.4 the register file.
//!
//! Every register is handled as 32-bit halves: a 64-bit register may be accessed whole or as two
//! 32-bit accesses (§11.4: software accesses 64-bit registers as one 64-bit access or two 32-bit
//! accesses), and an 8-byte access is the access to its two halves, low first.
//!
//! | register | behaviour |
//! |---|---|
//! | VER, CAP, ECAP | read-only, from [`VtdParams`](super::VtdParams) |
//! | GCMD | write-only (reads 0); each write is a command, see `global_command` |
//! | GSTS | read-only status |
//! | RTADDR | RTA and TTM read-write; bits 9:0 reserved (read 0); latched by SRTP |
//! | CCMD | a write of the upper half with ICC set runs the context-cache invalidation (`inval`) |
//! | IVA, IOTLB (at ECAP.IRO) | a write of IOTLB's upper half with IVT set runs the IOTLB invalidation |
//! | FSTS | PFO, IQE, ICE, ITE write-1-to-clear; PPF (any record's F) and FRI read-only; clearing IQE restarts the queue |
//! | FECTL, FEDATA, FEADDR, FEUADDR | the fault event (FECTL.IM resets to 1; clearing IM with IP set sends the held message; `record`) |
//! | FRCD (at CAP.FRO) | the fault records (`record`): read-only but F, write-1-to-clear |
//! | IQH, IQER | read-only (hardware's) |
//! | IQT | QT read-write; a write of the lower half runs the queue (`inval`) |
//! | IQA | IQA (below HAW), DW (with ECAP.SMTS) and QS; ignored while GSTS.QIES |
//! | ICS | IWC write-1-to-clear (clearing it clears IECTL.IP) |
//! | IECTL, IEDATA, IEADDR, IEUADDR | the invalidation event (IECTL.IM resets to 1; clearing IM with IP set sends the held message) |
//! | PQH | PQH read-write (software consumes) |
//! | PQT | PQT read-write (software initialises it; the unit advances it, `prq`) |
//! | PQA | PQA (below HAW) and PQS |
//! | PRS | PPR and PRO write-1-to-clear; clearing both drops a held page request event |
//! | PECTL, PEDATA, PEADDR, PEUADDR | the page request event (PECTL.IM resets to 1; clearing IM with IP set sends the held message) |
//!
//! The queue registers exist only with ECAP.QI, the page request registers only with ECAP.PRS.
//! Every other offset reads 0 and ignores writes: the interrupt-remapping, protected-memory and
//! MTRR registers are not modelled.

use std::sync::atomic::Ordering;

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};

use super::Vtd;
use crate::spec::regs::{
    self, cap, ccmd, eaddr, ecap, ectl, edata, fsts, gcmd, gsts, ics, iotlb_reg, iqa, iqt, iva_reg,
    pqa, pqh, pqt, prs, rtaddr,
};
use crate::spec::{bits_from, FaultRecord, Reg32};

/// The low 32 bits of `v`.
const fn lo32(v: u64) -> u32 {
    let [a, b, c, d, _, _, _, _] = v.to_le_bytes();
    u32::from_le_bytes([a, b, c, d])
}

/// The high 32 bits of `v`.
const fn hi32(v: u64) -> u32 {
    let [_, _, _, _, a, b, c, d] = v.to_le_bytes();
    u32::from_le_bytes([a, b, c, d])
}

/// One stored 32-bit register or half of a 64-bit one.
#[derive(Clone, Copy)]
struct Stored {
    /// Byte offset.
    off: u64,
    /// Value after reset.
    reset: u32,
    /// Bits software writes.
    rw: u32,
    /// Bits a written 1 clears (RW1C).
    w1c: u32,
}

impl Stored {
    const fn reg32(r: Reg32, reset: u64, rw: u64, w1c: u64) -> Self {
        Self { off: r.0, reset: lo32(reset), rw: lo32(rw), w1c: lo32(w1c) }
    }
}

/// RTADDR_REG's writable bits: RTA and TTM (§11.4.6); bits 9:0 are reserved.
const RTADDR_RW: u64 = rtaddr::RTA.mask() | rtaddr::TTM.mask();

/// §11.4.9.1 FSTS_REG: the write-1-to-clear bits.
const FSTS_W1C: u64 = fsts::PFO.mask() | fsts::IQE.mask() | fsts::ICE.mask() | fsts::ITE.mask();

/// The registers the model stores, in 32-bit halves.
const STORED: [Stored; 17] = [
    Stored { off: regs::RTADDR.0, reset: 0, rw: lo32(RTADDR_RW), w1c: 0 },
    Stored { off: regs::RTADDR.0 + 4, reset: 0, rw: hi32(RTADDR_RW), w1c: 0 },
    // PPF and FRI are hardware-written (`record`): software can neither set nor clear them.
    Stored::reg32(regs::FSTS, 0, 0, FSTS_W1C),
    // §11.4.9.2: IM is set on reset, so no fault event goes out before software programs one.
    Stored::reg32(regs::FECTL, ectl::IM.mask(), ectl::IM.mask(), 0),
    Stored::reg32(regs::FEDATA, 0, edata::IMD.mask() | edata::EIMD.mask(), 0),
    Stored::reg32(regs::FEADDR, 0, eaddr::MA.mask(), 0),
    // The upper address bits 63:32, all writable.
    Stored::reg32(regs::FEUADDR, 0, low_mask(32), 0),
    // §11.4 ICS, IECTL, IEDATA, IEADDR, IEUADDR: the invalidation event registers, laid out as the fault event's.
    Stored::reg32(regs::ICS, 0, 0, ics::IWC.mask()),
    Stored::reg32(regs::IECTL, ectl::IM.mask(), ectl::IM.mask(), 0),
    Stored::reg32(regs::IEDATA, 0, edata::IMD.mask() | edata::EIMD.mask(), 0),
    Stored::reg32(regs::IEADDR, 0, eaddr::MA.mask(), 0),
    Stored::reg32(regs::IEUADDR, 0, low_mask(32), 0),
    // §11.4 PRS, PECTL, PEDATA, PEADDR, PEUADDR: the page request status and event registers.
    Stored::reg32(regs::PRS, 0, 0, prs::PPR.mask() | prs::PRO.mask()),
    Stored::reg32(regs::PECTL, ectl::IM.mask(), ectl::IM.mask(), 0),
    Stored::reg32(regs::PEDATA, 0, edata::IMD.mask() | edata::EIMD.mask(), 0),
    Stored::reg32(regs::PEADDR, 0, eaddr::MA.mask(), 0),
    Stored::reg32(regs::PEUADDR, 0, low_mask(32), 0),
];

/// CCMD_REG's software-written bits (CAIG is hardware's).
const CCMD_RW: u64 =
    ccmd::DID.mask() | ccmd::SID.mask() | ccmd::FM.mask() | ccmd::CIRG.mask() | ccmd::ICC.mask();
/// IOTLB_REG's software-written bits (IAIG is hardware's).
const IOTLB_RW: u64 = iotlb_reg::DID.mask()
    | iotlb_reg::DW.mask()
    | iotlb_reg::DR.mask()
    | iotlb_reg::IIRG.mask()
    | iotlb_reg::IVT.mask();
/// IVA_REG's bits.
const IVA_RW: u64 = iva_reg::AM.mask() | iva_reg::IH.mask() | iva_reg::ADDR.mask();

/// The 64-bit registers held whole, with side effects or hardware-written fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wide {
    Ccmd,
    Iva,
    Iotlb,
    Iqh,
    Iqt,
    Iqa,
    Iqer,
    Pqh,
    Pqt,
    Pqa,
}

/// What an offset holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// A stored 32-bit register (or half).
    Stored,
    /// Half of a whole 64-bit register; `true` for the upper half.
    Wide(Wide, bool),
    /// Dword `1` of fault record `0`.
    Frcd(usize, u64),
    /// Nothing the model has (reads 0, writes ignored).
    Nothing,
}

/// The stored register words.
#[derive(Debug)]
pub(super) struct RegFile {
    words: [u32; STORED.len()],
    /// CCMD_REG.
    pub(super) ccmd: u64,
    /// IVA_REG.
    pub(super) iva: u64,
    /// IOTLB_REG.
    pub(super) iotlb: u64,
    /// IQA_REG.
    pub(super) iqa: u64,
    /// IQH_REG: the byte offset of the next descriptor the unit fetches.
    pub(super) iqh: u64,
    /// IQT_REG.
    pub(super) iqt: u64,
    /// IQER_REG.
    pub(super) iqer: u64,
    /// PQH_REG: the byte offset of the next page request software reads.
    pub(super) pqh: u64,
    /// PQT_REG: the byte offset where the unit writes the next page request.
    pub(super) pqt: u64,
    /// PQA_REG.
    pub(super) pqa: u64,
    /// The fault recording registers (CAP.NFR + 1 of them), as 128-bit records.
    pub(super) frcd: Vec<[u64; 2]>,
    /// §7.2: the internal index of the fault recording register the next fault goes to.
    pub(super) fault_index: usize,
    /// Device-TLB invalidations sent and not completed, and the unit's clock (`inval`).
    pub(super) ats: sviommu_tlb::AtsTracker,
    /// A wait descriptor the queue has fetched (IQH is past it) that waits for device-TLB
    /// invalidations before it to complete (`inval`).
    pub(super) pending_wait: Option<crate::spec::inv::InvWait>,
}

/// Half `hi` of `v`.
const fn half(v: u64, hi: bool) -> u32 {
    if hi {
        hi32(v)
    } else {
        lo32(v)
    }
}

/// `v` with half `hi` replaced by `x`.
fn with_half(v: u64, hi: bool, x: u32) -> u64 {
    if hi {
        (v & low_mask(32)) | (u64::from(x) << 32)
    } else {
        (v & !low_mask(32)) | u64::from(x)
    }
}

impl RegFile {
    /// Every stored register at its reset value, with `records` fault recording registers.
    pub(super) fn reset(records: usize, ats: sviommu_tlb::AtsPolicy) -> Self {
        let mut words = [0; STORED.len()];
        for (w, s) in words.iter_mut().zip(STORED.iter()) {
            *w = s.reset;
        }
        Self {
            words,
            ccmd: 0,
            iva: 0,
            iotlb: 0,
            iqa: 0,
            iqh: 0,
            iqt: 0,
            iqer: 0,
            pqh: 0,
            pqt: 0,
            pqa: 0,
            frcd: vec![[0; 2]; records.max(1)],
            fault_index: 0,
            ats: sviommu_tlb::AtsTracker::new(ats),
            pending_wait: None,
        }
    }

    fn wide(&self, w: Wide) -> u64 {
        match w {
            Wide::Ccmd => self.ccmd,
            Wide::Iva => self.iva,
            Wide::Iotlb => self.iotlb,
            Wide::Iqh => self.iqh,
            Wide::Iqt => self.iqt,
            Wide::Iqa => self.iqa,
            Wide::Iqer => self.iqer,
            Wide::Pqh => self.pqh,
            Wide::Pqt => self.pqt,
            Wide::Pqa => self.pqa,
        }
    }

    /// The 32-bit register at `off` (0 if the model does not store it).
    pub(super) fn reg32(&self, off: Reg32) -> u32 {
        self.get(off.0).unwrap_or(0)
    }

    /// Sets `bits` of the stored 32-bit register `off` (hardware's side: read-only bits too).
    pub(super) fn set_bits(&mut self, off: Reg32, bits: u32) {
        if let Some((w, _)) = self.slot(off.0) {
            *w |= bits;
        }
    }

    /// Clears `bits` of the stored 32-bit register `off` (hardware's side).
    pub(super) fn clear_bits(&mut self, off: Reg32, bits: u32) {
        if let Some((w, _)) = self.slot(off.0) {
            *w &= !bits;
        }
    }

    fn slot(&mut self, off: u64) -> Option<(&mut u32, Stored)> {
        self.words.iter_mut().zip(STORED.iter()).find(|(_, s)| s.off == off).map(|(w, s)| (w, *s))
    }

    fn get(&self, off: u64) -> Option<u32> {
        self.words.iter().zip(STORED.iter()).find(|(_, s)| s.off == off).map(|(w, _)| *w)
    }

    /// RTADDR_REG as software last wrote it.
    fn rtaddr(&self) -> u64 {
        let lo = self.get(regs::RTADDR.0).unwrap_or(0);
        let hi = self.get(regs::RTADDR.0 + 4).unwrap_or(0);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Sets write-1-to-clear status bits in FSTS (the hardware side of RW1C): IQE/ICE/ITE and
    /// PFO.
    pub(super) fn latch_fsts(&mut self, bits: u32) {
        if let Some((w, s)) = self.slot(regs::FSTS.0) {
            *w |= bits & s.w1c;
        }
    }
}

impl<M: PhysMemory<Addr = Hpa>> Vtd<M> {
    /// Reads `size` bytes (4 or 8) at `offset` of the unit's register page. Undefined offsets,
    /// other sizes and misaligned accesses read 0.
    pub fn mmio_read(&self, offset: u64, size: u8) -> u64 {
        // IMPDEF: a register read takes one tick of the unit's clock (`inval`).
        self.tick();
        match size {
            4 if offset % 4 == 0 => u64::from(self.read32(offset)),
            8 if offset % 8 == 0 => {
                let hi = offset.checked_add(4).map_or(0, |o| self.read32(o));
                (u64::from(hi) << 32) | u64::from(self.read32(offset))
            }
            _ => 0,
        }
    }

    /// Writes `size` bytes (4 or 8) of `value` at `offset`. Writes to undefined offsets or
    /// read-only bits, other sizes and misaligned writes are ignored.
    pub fn mmio_write(&self, offset: u64, size: u8, value: u64) {
        match size {
            4 if offset % 4 == 0 => self.write32(offset, lo32(value)),
            8 if offset % 8 == 0 => {
                self.write32(offset, lo32(value));
                if let Some(o) = offset.checked_add(4) {
                    self.write32(o, hi32(value));
                }
            }
            _ => {}
        }
    }

    fn read32(&self, off: u64) -> u32 {
        let p = &self.params;
        match off {
            o if o == regs::VER.0 => p.ver,
            o if o == regs::CAP.0 => lo32(p.cap),
            o if o == regs::CAP.0 + 4 => hi32(p.cap),
            o if o == regs::ECAP.0 => lo32(p.ecap),
            o if o == regs::ECAP.0 + 4 => hi32(p.ecap),
            // §11.4.4: GCMD_REG is write-only.
            o if o == regs::GCMD.0 => 0,
            o if o == regs::GSTS.0 => self.gsts.load(Ordering::Acquire),
            o => {
                let regs = self.lock_regs();
                match self.classify(o) {
                    At::Stored => regs.get(o).unwrap_or(0),
                    At::Wide(w, hi) => half(regs.wide(w), hi),
                    At::Frcd(index, dword) => {
                        let [lo, hi] = regs.frcd.get(index).copied().unwrap_or_default();
                        half(if dword >= 2 { hi } else { lo }, dword % 2 == 1)
                    }
                    At::Nothing => 0,
                }
            }
        }
    }

    /// What the 32-bit register (or half) at `off` is. The fixed registers come first; the
    /// floating blocks (IOTLB registers at ECAP.IRO, fault records at CAP.FRO) only where no
    /// fixed register is, so capability values that make them overlap cannot hide one.
    fn classify(&self, off: u64) -> At {
        let fixed =
            regs::FIXED.iter().any(|&(_, at, width)| off >= at && off < at + u64::from(width));
        if fixed {
            if self.queue_event_reg(off) && !self.ecap_has(ecap::QI) {
                return At::Nothing;
            }
            if self.page_request_reg(off) && !self.ecap_has(ecap::PRS) {
                return At::Nothing;
            }
            if STORED.iter().any(|s| s.off == off) {
                return At::Stored;
            }
            return self.wide_at(off, true).map_or(At::Nothing, |(w, hi)| At::Wide(w, hi));
        }
        if let Some((w, hi)) = self.wide_at(off, false) {
            return At::Wide(w, hi);
        }
        self.frcd_at(off).map_or(At::Nothing, |(i, d)| At::Frcd(i, d))
    }

    /// The whole 64-bit register `off` is half of, and whether it is the upper half: among the
    /// fixed ones (`fixed`) or the floating IOTLB registers.
    fn wide_at(&self, off: u64, fixed: bool) -> Option<(Wide, bool)> {
        let e = self.params.ecap;
        let queue = self.ecap_has(ecap::QI);
        let prq = self.ecap_has(ecap::PRS);
        let table = [
            (regs::CCMD.0, Wide::Ccmd, fixed),
            (regs::iva(e).0, Wide::Iva, !fixed),
            (regs::iotlb(e).0, Wide::Iotlb, !fixed),
            (regs::IQH.0, Wide::Iqh, fixed && queue),
            (regs::IQT.0, Wide::Iqt, fixed && queue),
            (regs::IQA.0, Wide::Iqa, fixed && queue),
            (regs::IQER.0, Wide::Iqer, fixed && queue),
            (regs::PQH.0, Wide::Pqh, fixed && prq),
            (regs::PQT.0, Wide::Pqt, fixed && prq),
            (regs::PQA.0, Wide::Pqa, fixed && prq),
        ];
        table.iter().find_map(|&(at, w, present)| {
            if !present {
                None
            } else if off == at {
                Some((w, false))
            } else if Some(off) == at.checked_add(4) {
                Some((w, true))
            } else {
                None
            }
        })
    }

    /// The fault recording register `off` is in (§11.4 FRCD_REG at CAP.FRO), and which of its
    /// four dwords.
    fn frcd_at(&self, off: u64) -> Option<(usize, u64)> {
        let first = cap::fro_bytes(self.params.cap);
        let rel = off.checked_sub(first)?;
        let index = rel / regs::FRCD_BYTES;
        (index < cap::nfr_count(self.params.cap))
            .then(|| (usize::try_from(index).ok(), (rel % regs::FRCD_BYTES) / 4))
            .and_then(|(i, d)| Some((i?, d)))
    }

    /// Whether `off` is one of the invalidation event registers (present with ECAP.QI).
    fn queue_event_reg(&self, off: u64) -> bool {
        [regs::ICS, regs::IECTL, regs::IEDATA, regs::IEADDR, regs::IEUADDR]
            .iter()
            .any(|r| r.0 == off)
    }

    /// Whether `off` is one of the page request status and event registers (present with
    /// ECAP.PRS).
    fn page_request_reg(&self, off: u64) -> bool {
        [regs::PRS, regs::PECTL, regs::PEDATA, regs::PEADDR, regs::PEUADDR]
            .iter()
            .any(|r| r.0 == off)
    }

    fn write32(&self, off: u64, value: u32) {
        let mut regs = self.lock_regs();
        if off == regs::GCMD.0 {
            self.global_command(&mut regs, value);
            // TE and SRTP decide what every translation reads first, and the memo names
            // no register: its answers from before this command retire.
            self.caches.memo_advance();
            return;
        }
        match self.classify(off) {
            At::Stored => {
                if let Some((w, s)) = regs.slot(off) {
                    let before = *w;
                    *w = ((*w & !s.rw) | (value & s.rw)) & !(value & s.w1c);
                    let after = *w;
                    self.after_write(&mut regs, off, before, after);
                }
            }
            At::Wide(w, hi) => self.write_wide(&mut regs, w, hi, value),
            At::Frcd(index, dword) => {
                // Every field is read-only but F (bit 127), which a written 1 clears.
                let f = (u64::from(value) << 32) & FaultRecord::F.field.mask();
                if let (3, Some(r)) = (dword, regs.frcd.get_mut(index)) {
                    if f != 0 {
                        FaultRecord::F.set(r, 0);
                    }
                    self.fault_status_changed(&mut regs);
                }
            }
            At::Nothing => {}
        }
    }

    /// What a write of half `hi` of a whole 64-bit register does.
    fn write_wide(&self, regs: &mut RegFile, w: Wide, hi: bool, value: u32) {
        let store = |old: u64, rw: u64| {
            let merged = with_half(old, hi, value);
            (old & !rw) | (merged & rw)
        };
        match w {
            Wide::Ccmd => {
                regs.ccmd = store(regs.ccmd, CCMD_RW);
                // ICC is bit 63: the command runs when the upper half is written.
                if hi && ccmd::ICC.is_set(regs.ccmd) {
                    self.context_command(regs);
                }
            }
            Wide::Iva => regs.iva = store(regs.iva, IVA_RW),
            Wide::Iotlb => {
                regs.iotlb = store(regs.iotlb, IOTLB_RW);
                if hi && iotlb_reg::IVT.is_set(regs.iotlb) {
                    self.iotlb_command(regs);
                }
            }
            // Hardware's.
            Wide::Iqh | Wide::Iqer => {}
            Wide::Iqt => {
                regs.iqt = store(regs.iqt, iqt::QT.mask());
                // QT is in the lower half (the upper half is reserved).
                if !hi {
                    self.run_queue(regs);
                }
            }
            Wide::Iqa => {
                // IMPDEF: software must not change the queue while it is enabled (§6.5.2); the
                // unit ignores such writes.
                if gsts::QIES.is_set(self.gsts()) {
                    return;
                }
                // §11.4 IQA_REG: hardware ignores address bits at and above HAW; DW exists only
                // with scalable-mode support.
                let mut rw = (iqa::IQA.mask() & !bits_from(self.params.haw)) | iqa::QS.mask();
                if self.ecap_has(ecap::SMTS) {
                    rw |= iqa::DW.mask();
                }
                regs.iqa = store(regs.iqa, rw);
            }
            Wide::Pqh => regs.pqh = store(regs.pqh, pqh::PQH.mask()),
            Wide::Pqt => regs.pqt = store(regs.pqt, pqt::PQT.mask()),
            Wide::Pqa => {
                // §11.4 PQA_REG: as IQA, hardware ignores address bits at and above HAW.
                let rw = (pqa::PQA.mask() & !bits_from(self.params.haw)) | pqa::PQS.mask();
                regs.pqa = store(regs.pqa, rw);
            }
        }
    }

    /// Side effects of a write to a stored 32-bit register, given its value before and after.
    fn after_write(&self, regs: &mut RegFile, off: u64, before: u32, after: u32) {
        let cleared = |f: crate::spec::Field32| {
            u64::from(before) & f.mask() != 0 && u64::from(after) & f.mask() == 0
        };
        if off == regs::FSTS.0 {
            self.fault_status_changed(regs);
            if cleared(fsts::IQE) || cleared(fsts::ITE) {
                // §6.5.2.10: the unit resumes fetching at IQH once software clears IQE / ITE.
                self.run_queue(regs);
            }
        } else if off == regs::FECTL.0 {
            self.fault_status_changed(regs);
        } else if off == regs::ICS.0 && cleared(ics::IWC) {
            self.iwc_cleared(regs);
        } else if off == regs::IECTL.0 && cleared(ectl::IM) {
            self.iectl_unmasked(regs);
        } else if off == regs::PRS.0 || off == regs::PECTL.0 {
            self.page_request_status_changed(regs);
        }
    }

    /// §11.4.4 GCMD_REG. Software writes the enables it wants kept (TE, QIE, IRE, CFI) as they
    /// are in GSTS and changes one field per write: one enable toggled or one one-shot command
    /// (SRTP, SIRTP, WBF, SFL) set. The model acts on TE, QIE and SRTP and reports them in GSTS
    /// at once; commands for features it does not advertise are ignored.
    ///
    /// IMPDEF: a write that asks for more than one command (both SRTP and a TE change) is
    /// ignored whole; the spec leaves it undefined, and a driver that does it has a bug its
    /// users want to see.
    fn global_command(&self, regs: &mut RegFile, value: u32) {
        let value = u64::from(value);
        let status = self.gsts();
        let set_root = gcmd::SRTP.is_set(value);
        let te = gcmd::TE.is_set(value);
        let toggle_te = te != gsts::TES.is_set(status);
        let qie = gcmd::QIE.is_set(value);
        let toggle_qie = qie != gsts::QIES.is_set(status) && self.ecap_has(ecap::QI);
        if [set_root, toggle_te, toggle_qie].iter().filter(|&&c| c).count() > 1 {
            return;
        }
        if toggle_qie {
            self.queue_enable(regs, qie);
        } else if set_root {
            // §11.4.4 SRTP: latch RTADDR_REG (address and TTM) and report it through RTPS.
            // The pointer is stored before RTPS, so a translation that sees RTPS sees it too.
            self.root.store(regs.rtaddr(), Ordering::Release);
            // §11.4.2 CAP.ESRTPS: the SRTP flow also invalidates every DMA-remapping cache
            // (context, PASID, IOTLB, paging-structure), complete when RTPS is reported, in
            // both profiles. CAP.ESIRTPS asks the same of SIRTP for the interrupt entry cache,
            // which the model does not have (interrupt remapping is not modelled): honoured
            // trivially.
            if self.cap_has(cap::ESRTPS) {
                self.caches.invalidate_everything();
            }
            self.gsts.fetch_or(gsts::RTPS.mask32(), Ordering::AcqRel);
        } else if toggle_te {
            // §11.4.4 TE: translation starts (or stops) for requests that arrive from now on.
            if te {
                self.gsts.fetch_or(gsts::TES.mask32(), Ordering::AcqRel);
            } else {
                self.gsts.fetch_and(!gsts::TES.mask32(), Ordering::AcqRel);
                // §7.2: the internal fault recording index resets when remapping is disabled
                // (interrupt remapping is never enabled here).
                regs.fault_index = 0;
            }
        }
    }

    /// Whether the capability field `f` (a one-bit field of CAP_REG) is set.
    pub(super) fn cap_has(&self, f: crate::spec::Field) -> bool {
        f.is_set(self.params.cap)
    }

    /// Whether the capability field `f` (a one-bit field of ECAP_REG) is set.
    pub(super) fn ecap_has(&self, f: crate::spec::Field) -> bool {
        f.is_set(self.params.ecap)
    }

    /// CAP.MGAW + 1, the maximum guest address width in bits.
    pub(super) fn mgaw_bits(&self) -> u8 {
        u8::try_from(cap::mgaw_bits(self.params.cap)).unwrap_or(u8::MAX)
    }

    /// CAP.SSLPS, the second-stage large page sizes.
    pub(super) fn sslps(&self) -> u8 {
        u8::try_from(cap::SSLPS.get(self.params.cap)).unwrap_or(0)
    }

    /// Whether AW encoding `aw` is advertised in CAP.SAGAW.
    pub(super) fn sagaw_has(&self, aw: crate::spec::Aw) -> bool {
        cap::SAGAW.get(self.params.cap) & aw.sagaw_bit() != 0
    }

    /// ECAP.PSS + 1, the PASID width in bits.
    pub(super) fn pasid_bits(&self) -> u64 {
        ecap::pasid_bits(self.params.ecap)
    }
}

#[cfg(test)]
mod tests {
    use sviommu_memory::{HostMemory, Hpa};

    use super::*;
    use crate::hw::VtdParams;

    #[test]
    fn fsts_status_bits_clear_only_when_written_with_one() {
        let mem = HostMemory::new(&[(Hpa(0), 0x1000)]).unwrap();
        let vtd = Vtd::new(&mem, VtdParams::default());
        let all = lo32(FSTS_W1C);
        vtd.regs.lock().unwrap().latch_fsts(all | lo32(fsts::PPF.mask() | fsts::FRI.mask()));
        let fsts = regs::FSTS.0;
        assert_eq!(
            u64::from(lo32(vtd.mmio_read(fsts, 4))),
            FSTS_W1C,
            "PPF and FRI are not latched"
        );
        // Writing 0s changes nothing; writing 1 to IQE clears only IQE.
        vtd.mmio_write(fsts, 4, 0);
        assert_eq!(vtd.mmio_read(fsts, 4), FSTS_W1C);
        vtd.mmio_write(fsts, 4, fsts::IQE.mask());
        assert_eq!(vtd.mmio_read(fsts, 4), FSTS_W1C & !fsts::IQE.mask());
        // PFO, ICE and ITE together.
        vtd.mmio_write(fsts, 4, u64::from(u32::MAX));
        assert_eq!(vtd.mmio_read(fsts, 4), 0);
    }
}

//! §7.2 primary fault logging and the fault event (FECTL, §11.4.9.2).
//!
//! Every fault `translate` returns is recorded, unless fault processing is disabled for it
//! (`Fault::fpd`): in the fault recording register the unit's internal index names, if its F
//! bit is clear; otherwise the fault is dropped and FSTS.PFO set. While PFO is set nothing is
//! recorded. The fault event (an interrupt message from FEDATA / FEADDR / FEUADDR) is raised when
//! a fault is recorded, PFO is set, or an invalidation error (IQE, ICE, ITE) is latched, unless
//! an earlier condition is still pending software's attention. With FECTL.IM set it is held as
//! FECTL.IP until software unmasks it or services every condition.
//!
//! IMPDEF: no fault compression (a second fault from the same requester is recorded too).
//! Recording takes the register lock, on the fault path only: a translation that succeeds
//! never does.

use sviommu_memory::{Hpa, PhysMemory};

use super::regs::RegFile;
use super::{Fault, MsiSource, Vtd};
use crate::spec::fault::FaultRecord;
use crate::spec::regs::{self, ectl, fsts};

/// FSTS bits that are interrupt conditions of the fault event (§7.2): a pending fault, an
/// overflow, an invalidation error.
pub(super) const EVENT_CONDITIONS: u64 =
    fsts::PFO.mask() | fsts::PPF.mask() | fsts::IQE.mask() | fsts::ICE.mask() | fsts::ITE.mask();

/// The record for `f`: §9.9 / §11.4 FRCD_REG. PRIV and EXE are meaningful with a PASID only
/// (they come from the PASID prefix); AT and T2/T1 say which kind of request faulted.
pub(super) fn fault_record(f: &Fault) -> FaultRecord {
    let mut r = FaultRecord::default();
    r.set_f(true);
    r.set_fi(f.addr);
    r.set_sid(f.rid);
    r.set_fr(f.reason);
    r.set_at(f.kind.address_type());
    r.set_request_type(f.kind.request_type(f.access.write));
    if let Some(pasid) = f.pasid {
        r.set_pp(true);
        r.set_pv(pasid);
        r.set_priv(f.access.privileged);
        r.set_exe(f.access.exec);
    }
    r
}

impl<M: PhysMemory<Addr = Hpa>> Vtd<M> {
    /// §7.2: records `f` in the next fault recording register, or sets PFO.
    pub(super) fn record(&self, f: &Fault) {
        self.record_in(&mut self.lock_regs(), f);
    }

    /// [`record`](Self::record) with the register file already held.
    pub(super) fn record_in(&self, regs: &mut RegFile, f: &Fault) {
        let before = u64::from(regs.reg32(regs::FSTS));
        if fsts::PFO.is_set(before) {
            // An overflow software has not cleared: the fault is not recorded.
            return;
        }
        let index = regs.fault_index;
        let Some(slot) = regs.frcd.get_mut(index) else { return };
        if FaultRecord::F.is_set(slot) {
            regs.latch_fsts(fsts::PFO.mask32());
            self.fault_event(regs, before);
            return;
        }
        *slot = fault_record(f).words();
        if !fsts::PPF.is_set(before) {
            // The first pending fault: FRI names it.
            let fri = fsts::FRI.set32(0, u32::try_from(index).unwrap_or(0));
            regs.clear_bits(regs::FSTS, fsts::FRI.mask32());
            regs.set_bits(regs::FSTS, fri | fsts::PPF.mask32());
        }
        regs.fault_index = (index + 1) % regs.frcd.len().max(1);
        self.fault_event(regs, before);
    }

    /// §7.2, FECTL: an event condition was just raised, with FSTS `before` it as it was. Unless an
    /// earlier condition is still pending, the event goes out (FECTL.IM clear) or is held as
    /// FECTL.IP.
    pub(super) fn fault_event(&self, regs: &mut RegFile, before: u64) {
        if before & EVENT_CONDITIONS != 0 {
            return;
        }
        if ectl::IM.is_set(u64::from(regs.reg32(regs::FECTL))) {
            regs.set_bits(regs::FECTL, ectl::IP.mask32());
        } else {
            self.send_fault_msi(regs);
        }
    }

    /// Software changed FSTS, FECTL or a fault record: recompute PPF from the F bits, send a
    /// held message if FECTL.IM is now clear, and drop it if every condition is serviced.
    pub(super) fn fault_status_changed(&self, regs: &mut RegFile) {
        let pending = regs.frcd.iter().any(|r| FaultRecord::F.is_set(r));
        if pending {
            regs.set_bits(regs::FSTS, fsts::PPF.mask32());
        } else {
            regs.clear_bits(regs::FSTS, fsts::PPF.mask32());
        }
        let fectl = u64::from(regs.reg32(regs::FECTL));
        if !ectl::IP.is_set(fectl) {
            return;
        }
        if u64::from(regs.reg32(regs::FSTS)) & EVENT_CONDITIONS == 0 {
            regs.clear_bits(regs::FECTL, ectl::IP.mask32());
        } else if !ectl::IM.is_set(fectl) {
            regs.clear_bits(regs::FECTL, ectl::IP.mask32());
            self.send_fault_msi(regs);
        }
    }

    fn send_fault_msi(&self, regs: &RegFile) {
        let addr =
            (u64::from(regs.reg32(regs::FEUADDR)) << 32) | u64::from(regs.reg32(regs::FEADDR));
        let data = regs.reg32(regs::FEDATA);
        self.send_msi(MsiSource::Fault, addr, data);
    }
}

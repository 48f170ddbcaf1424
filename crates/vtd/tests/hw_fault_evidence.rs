//! A fault's reason is what the faulting walk read (§7.1.3): a first-stage permission fault
//! picks 81h, 82h, 85h or 86h from the rights of the entry the walk checked, never from a second
//! look at tables the guest may have changed in between.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use sviommu_memory::{HostMemory, Hpa, MemoryError, PhysMemory};
use sviommu_pgtable::x86::{self, X86Attrs};
use sviommu_pgtable::{radix, Access, Build};
use sviommu_vtd::hw::{CacheParams, DmaRequest, Vtd, VtdParams};
use sviommu_vtd::spec::fault::FaultRecord;
use sviommu_vtd::spec::pasid::{Fspm, PasidEntry, Pgtt};
use sviommu_vtd::spec::regs::{self, rtaddr::Ttm};
use sviommu_vtd::spec::root::ScalableContextEntry;
use sviommu_vtd::spec::FaultReason as R;

const RID: u16 = 0x0310;
const PASID: u32 = 0x345;
/// Mapped supervisor-only, read-write.
const VA: u64 = 0x4000_2000;

/// Host memory in which the entry at `at`, the first time it is read, is rewritten to `then`
/// right after the read returns what it held: the guest changing it under the walk.
struct RewriteAfterRead<'a> {
    mem: &'a HostMemory,
    at: Hpa,
    then: u64,
    armed: AtomicBool,
}

impl PhysMemory for RewriteAfterRead<'_> {
    type Addr = Hpa;

    fn read_u64(&self, addr: Hpa) -> Result<u64, MemoryError> {
        let seen = self.mem.read_u64(addr)?;
        if addr == self.at && self.armed.swap(false, Ordering::SeqCst) {
            self.mem.write_u64(addr, self.then)?;
        }
        Ok(seen)
    }

    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemoryError> {
        self.mem.write_u64(addr, value)
    }

    fn compare_exchange_u64(
        &self,
        addr: Hpa,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.mem.compare_exchange_u64(addr, current, new)
    }

    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.mem.read(addr, buf)
    }

    fn write(&self, addr: Hpa, buf: &[u8]) -> Result<(), MemoryError> {
        self.mem.write(addr, buf)
    }
}

#[test]
fn a_first_stage_permission_fault_keeps_the_reason_of_the_entry_it_read() {
    let mut m = Machine::new();
    let rta = m.page();
    let dir = m.page();
    let fs = m.fs(x86::Levels::Four);
    let sup = X86Attrs { user: false, ..X86Attrs::ALL };
    fs.map(&m.mem, &mut m.frames, VA, 0x5000_0000, 12, sup).unwrap();
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pasiddirptr(dir);
    m.sm_context(rta, RID, ce);
    let mut pe = PasidEntry::default();
    pe.set_p(true);
    pe.set_pgtt(Pgtt::FirstStage);
    pe.set_did(9);
    pe.set_fspm(Fspm::FourLevel);
    pe.set_fsptptr(fs.root);
    m.pasid_entry(dir, PASID, pe);

    // Right after the walk reads the supervisor-only PTE, the guest makes it user-accessible
    // and read-only. A user write to the entry the walk read is 81h; to the new one, 85h.
    let (pte_at, pte) = radix::entry_at(&fs, &m.mem, VA, 3).unwrap().unwrap();
    assert!(!x86::US.is_set(pte) && x86::RW.is_set(pte));
    let user_ro = x86::RW.with(x86::US.with(pte, true), false);
    let mem = RewriteAfterRead { mem: &m.mem, at: pte_at, then: user_ro, armed: true.into() };
    let vtd = Vtd::new(&mem, VtdParams { caches: CacheParams::NONE, ..VtdParams::default() });
    enable(&vtd, rta, Ttm::Scalable);

    let req = DmaRequest::new(RID, VA, Access::WRITE).with_pasid(PASID);
    let f = vtd.translate(&req).expect_err("a user write to a supervisor page");
    assert_eq!(m.mem.read_u64(pte_at), Ok(user_ro), "the guest rewrote the PTE during the walk");
    assert_eq!(f.reason, R::SmUserAccessDenied);
    let (lo, hi) = regs::frcd(vtd.params().cap, 0);
    let record = FaultRecord::from_words([vtd.mmio_read(lo.0, 8), vtd.mmio_read(hi.0, 8)]);
    assert!(record.f());
    assert_eq!(record.fr(), Ok(R::SmUserAccessDenied));

    // The next walk reads the new PTE, and its reason follows.
    assert_eq!(
        vtd.translate(&req).expect_err("a write to a read-only page").reason,
        R::SmWriteDenied
    );
}

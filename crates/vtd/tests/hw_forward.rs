//! The forwarding hook (`hw::Forward`): every legal descriptor reaches it, in order, after the
//! model acted on it and before IQH moves past it, so a wait descriptor behind it completes
//! only after the hook returned; a refusal is the descriptor's IQE; the hook reads context and
//! PASID-table entries with the model's own reads and checks (§9.4, §9.6), recording faults as
//! a request would, except for entries that are not present.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_vtd::hw::{Context, EntryLookup, Forward, Vtd, VtdParams};
use sviommu_vtd::spec::fault::FaultRecord;
use sviommu_vtd::spec::inv::{DescriptorType, InvDesc, InvWait, Invalidation};
use sviommu_vtd::spec::pasid::PasidEntry;
use sviommu_vtd::spec::regs::iqer::Iqei;
use sviommu_vtd::spec::regs::{self, fsts, iqer, rtaddr::Ttm};
use sviommu_vtd::spec::root::ScalableContextEntry;
use sviommu_vtd::spec::{FaultReason, Fspm, Pgtt};

const RID: u16 = 0x0310;
const DID: u16 = 9;

/// What the lookup gave for a PASID: the PGTT, nothing (not present) or the fault reason.
type Found = Result<Option<Pgtt>, FaultReason>;

/// Records every descriptor's type, and for a PASID-selective PASID-cache invalidation what the
/// lookup of `RID`'s entry gave; refuses global IOTLB invalidation.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(DescriptorType, Option<Found>)>>,
}

impl Forward for Recorder {
    fn descriptor(&self, inv: &Invalidation, e: &mut dyn EntryLookup) -> Result<(), Iqei> {
        let t = InvDesc::from_words(inv.words()).desc_type().unwrap();
        let found = match inv {
            Invalidation::PasidCache(c) => match e.context(RID).unwrap() {
                Context::Scalable(ce) => Some(
                    e.pasid_entry(RID, &ce, Some(c.pasid()))
                        .map(|f| f.map(|f| f.pgtt))
                        .map_err(|f| f.reason),
                ),
                other => panic!("{other:?}"),
            },
            _ => None,
        };
        self.seen.lock().unwrap().push((t, found));
        match inv {
            Invalidation::Iotlb(_) => Err(Iqei::ReservedField),
            _ => Ok(()),
        }
    }
}

fn first_stage(root: u64) -> PasidEntry {
    let mut pe = PasidEntry::default();
    pe.set_pgtt(Pgtt::FirstStage);
    pe.set_fsptptr(root);
    pe.set_fspm(Fspm::FourLevel);
    pe.set_did(DID);
    pe.set_p(true);
    pe
}

fn wait(data: u32) -> [u64; 4] {
    let mut w = InvWait::new();
    w.set_sw(true);
    w.set_status_data(data);
    w.set_status_addr(STATUS_HPA);
    w.words()
}

#[test]
fn legal_descriptors_reach_the_hook_in_order_and_its_refusal_is_iqe() {
    let mut m = Machine::new();
    let rta = m.page();
    let dir = m.page();
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pasiddirptr(dir);
    m.sm_context(rta, RID, ce);
    let root = m.page();
    m.pasid_entry(dir, 3, first_stage(root));
    // PASID 4: a reserved bit (word 1 bit 16, bit 80 of the entry).
    let mut w = first_stage(root).words();
    w[1] |= 1 << 16;
    m.pasid_entry(dir, 4, PasidEntry::from_words(w));
    // PASID 6: the same, with FPD: not recorded.
    let mut fpd = PasidEntry::from_words(w);
    fpd.set_fpd(true);
    m.pasid_entry(dir, 6, fpd);
    let rec = Arc::new(Recorder::default());
    let hook: Arc<dyn Forward> = rec.clone();
    let vtd: Vtd<_> = Vtd::new(&m.mem, VtdParams::default()).with_forward(hook);
    enable(&vtd, rta, Ttm::Scalable);
    enable_queue(&vtd);
    submit(
        &vtd,
        &[
            desc::cc_device(0, RID, 0),
            desc::pc_pasid(DID, 3),
            desc::pc_pasid(DID, 4),
            desc::pc_pasid(DID, 5),
            desc::pc_pasid(DID, 6),
            wait(1),
            desc::iotlb_global(),
            wait(2),
        ],
    );
    let seen = rec.seen.lock().unwrap().clone();
    use DescriptorType as T;
    assert_eq!(
        seen,
        [
            (T::ContextCache, None),
            (T::PasidCache, Some(Ok(Some(Pgtt::FirstStage)))),
            (T::PasidCache, Some(Err(FaultReason::SmPasidEntryReserved))),
            (T::PasidCache, Some(Ok(None))),
            (T::PasidCache, Some(Err(FaultReason::SmPasidEntryReserved))),
            (T::Wait, None),
            (T::Iotlb, None),
        ]
    );
    // The first wait completed; the refused IOTLB invalidation stopped the queue at it, so
    // the second wait never ran.
    assert_eq!(vtd.memory().read_u64(Hpa(STATUS_HPA)).unwrap(), 1);
    let fsts = vtd.mmio_read(regs::FSTS.0, 4);
    assert!(fsts::IQE.is_set(fsts));
    assert_eq!(iqer::IQEI.get(vtd.mmio_read(regs::IQER.0, 8)), Iqei::ReservedField as u64);
    assert_eq!(vtd.mmio_read(regs::IQH.0, 8), 6 * 32);
    // Exactly one fault recorded: PASID 4's (PASID 5 was not present, PASID 6 has FPD).
    assert!(fsts::PPF.is_set(fsts));
    let (lo, hi) = regs::frcd(vtd.params().cap, 0);
    let r = FaultRecord::from_words([vtd.mmio_read(lo.0, 8), vtd.mmio_read(hi.0, 8)]);
    assert_eq!(
        (r.sid(), r.pp(), r.pv(), r.fr()),
        (RID, true, 4, Ok(FaultReason::SmPasidEntryReserved))
    );
    let (lo, hi) = regs::frcd(vtd.params().cap, 1);
    let r = FaultRecord::from_words([vtd.mmio_read(lo.0, 8), vtd.mmio_read(hi.0, 8)]);
    assert!(!r.f());
}

/// A descriptor the model refuses (a reserved type) never reaches the hook.
#[test]
fn illegal_descriptors_never_reach_the_hook() {
    let m = Machine::new();
    let rec = Arc::new(Recorder::default());
    let hook: Arc<dyn Forward> = rec.clone();
    let vtd: Vtd<_> = Vtd::new(&m.mem, VtdParams::default()).with_forward(hook);
    enable_queue(&vtd);
    submit(&vtd, &[[0xf, 0, 0, 0], wait(1)]);
    assert!(rec.seen.lock().unwrap().is_empty());
    assert_eq!(iqer::IQEI.get(vtd.mmio_read(regs::IQER.0, 8)), Iqei::DescriptorType as u64);
}

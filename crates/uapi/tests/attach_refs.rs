//! Attach, replace and detach of a device's RID and PASIDs: a PASID stays attached (and
//! translating) across a replace of the RID's HWPT, and every HWPT a device left can be
//! destroyed. On SMMUv3 with one CD table per domain the PASIDs live in the RID domain's CD
//! table, so a replace must carry them into the new one.

use sviommu_core::driver::{DmaAccess, DmaFault};
use sviommu_core::topology::DeviceId;
use sviommu_core::Model;
use sviommu_uapi::data::{hwpt_flags, map_flags};
use sviommu_uapi::machine::{Machine, GUEST_RAM_HPA, VMM_VA};
use sviommu_uapi::{Errno, HwptAlloc, ObjectId};

const RW: u32 = map_flags::FIXED_IOVA | map_flags::READABLE | map_flags::WRITEABLE;

fn dma(m: &Machine, dev: &DeviceId, pasid: Option<u32>, addr: u64) -> Result<u64, DmaFault> {
    m.fd.dma(dev, pasid, addr, DmaAccess::Read).unwrap()
}

/// A machine with its first device bound, and `n` PASID-capable paging HWPTs over IOASes
/// that map the same IOVA 0 to different host pages (HWPT `i` -> guest RAM page `i`).
fn setup(model: Model, n: u64) -> (Machine, DeviceId, ObjectId, Vec<ObjectId>) {
    let mut m = Machine::new(model).unwrap();
    let dev = m.devices()[0].clone();
    let id = m.fd.device_bind(&dev).unwrap();
    let mut hwpts = Vec::new();
    for i in 0..n {
        let ioas = m.fd.ioas_alloc().unwrap();
        m.fd.ioas_map(ioas, RW, VMM_VA + i * 0x1000, 0x1000, 0).unwrap();
        let h =
            m.fd.hwpt_alloc(&HwptAlloc {
                flags: hwpt_flags::PASID,
                dev_id: id,
                pt_id: ioas,
                ..Default::default()
            })
            .unwrap();
        hwpts.push(h);
    }
    (m, dev, id, hwpts)
}

fn replace_rid_keeps_pasid(model: Model) {
    let (mut m, dev, id, h) = setup(model, 3);
    m.fd.attach(id, None, h[0]).unwrap();
    m.fd.attach(id, Some(1), h[0]).unwrap();
    m.fd.attach(id, Some(2), h[2]).unwrap();
    m.fd.replace(id, None, h[1]).unwrap();
    assert_eq!(dma(&m, &dev, None, 0x10), Ok(GUEST_RAM_HPA + 0x1010), "the new RID HWPT");
    assert_eq!(dma(&m, &dev, Some(1), 0x10), Ok(GUEST_RAM_HPA + 0x10), "PASID 1 stays");
    assert_eq!(dma(&m, &dev, Some(2), 0x10), Ok(GUEST_RAM_HPA + 0x2010), "PASID 2 stays");
    m.fd.detach(id, Some(1)).unwrap();
    assert!(dma(&m, &dev, Some(1), 0x10).is_err());
    // h[0] is used by nothing now (neither the RID nor PASID 1).
    m.fd.destroy(h[0]).unwrap();
    m.fd.replace(id, None, h[2]).unwrap();
    assert_eq!(dma(&m, &dev, Some(2), 0x10), Ok(GUEST_RAM_HPA + 0x2010));
    m.fd.detach(id, Some(2)).unwrap();
    m.fd.detach(id, None).unwrap();
    m.fd.destroy(h[1]).unwrap();
    m.fd.destroy(h[2]).unwrap();
}

#[test]
fn replace_rid_keeps_pasid_smmuv3() {
    replace_rid_keeps_pasid(Model::Smmuv3);
}

#[test]
fn replace_rid_keeps_pasid_vtd() {
    replace_rid_keeps_pasid(Model::Vtd);
}

/// SMMUv3 with CD tables per domain: a RID with PASIDs cannot go to blocked (no table would
/// hold them); refused, changing nothing.
#[test]
fn smmuv3_rid_detach_with_pasids_is_refused() {
    let (mut m, dev, id, h) = setup(Model::Smmuv3, 1);
    m.fd.attach(id, None, h[0]).unwrap();
    m.fd.attach(id, Some(1), h[0]).unwrap();
    let before = m.fd.hardware_snapshot();
    assert_eq!(m.fd.detach(id, None).unwrap_err().errno(), Errno::EBUSY);
    assert!(before == m.fd.hardware_snapshot());
    assert_eq!(m.fd.attached_hwpt(id, None), Some(h[0]));
    assert_eq!(dma(&m, &dev, Some(1), 0x10), Ok(GUEST_RAM_HPA + 0x10));
}

/// One call of the property test: HWPT indexes 0..3, PASIDs 1..=2.
#[derive(Clone, Copy, Debug)]
enum Op {
    AttachRid(usize),
    ReplaceRid(usize),
    DetachRid,
    AttachPasid(u32, usize),
    ReplacePasid(u32, usize),
    DetachPasid(u32),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (0..3usize).prop_map(Op::AttachRid),
        (0..3usize).prop_map(Op::ReplaceRid),
        Just(Op::DetachRid),
        (1..=2u32, 0..3usize).prop_map(|(p, h)| Op::AttachPasid(p, h)),
        (1..=2u32, 0..3usize).prop_map(|(p, h)| Op::ReplacePasid(p, h)),
        (1..=2u32).prop_map(Op::DetachPasid),
    ]
}

/// The model: which HWPT (index) the RID and each PASID are attached to, and whether a call
/// must succeed. iommufd's rules; SMMUv3 (CD tables per domain) adds that a PASID needs the
/// RID on a CD table and the RID cannot leave for blocked while PASIDs are attached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RefModel {
    at: std::collections::BTreeMap<Option<u32>, usize>,
}

impl RefModel {
    fn accepts(&self, model: Model, op: Op) -> bool {
        let has_pasids = self.at.keys().any(Option::is_some);
        match op {
            Op::AttachRid(_) => !self.at.contains_key(&None),
            Op::ReplaceRid(_) => self.at.contains_key(&None),
            Op::DetachRid => !(model == Model::Smmuv3 && has_pasids),
            Op::AttachPasid(p, _) => {
                !self.at.contains_key(&Some(p))
                    && (model == Model::Vtd || self.at.contains_key(&None))
            }
            Op::ReplacePasid(p, _) => self.at.contains_key(&Some(p)),
            Op::DetachPasid(_) => true,
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::AttachRid(h) | Op::ReplaceRid(h) => drop(self.at.insert(None, h)),
            Op::DetachRid => drop(self.at.remove(&None)),
            Op::AttachPasid(p, h) | Op::ReplacePasid(p, h) => drop(self.at.insert(Some(p), h)),
            Op::DetachPasid(p) => drop(self.at.remove(&Some(p))),
        }
    }
}

fn run_ops(model: Model, ops: &[Op]) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::prop_assert_eq;
    let (mut m, dev, id, h) = setup(model, 3);
    let mut refs = RefModel::default();
    for &op in ops {
        let result = match op {
            Op::AttachRid(i) => m.fd.attach(id, None, h[i]),
            Op::ReplaceRid(i) => m.fd.replace(id, None, h[i]),
            Op::DetachRid => m.fd.detach(id, None),
            Op::AttachPasid(p, i) => m.fd.attach(id, Some(p), h[i]),
            Op::ReplacePasid(p, i) => m.fd.replace(id, Some(p), h[i]),
            Op::DetachPasid(p) => m.fd.detach(id, Some(p)),
        };
        prop_assert_eq!(result.is_ok(), refs.accepts(model, op), "{:?}: {:?}", op, result);
        if result.is_ok() {
            refs.apply(op);
        }
        // The hardware translates exactly what the model has attached; users() agrees.
        for (i, hwpt) in h.iter().enumerate() {
            let users = if refs.at.values().any(|&x| x == i) { vec![id] } else { vec![] };
            prop_assert_eq!(m.fd.users(*hwpt), users, "HWPT {} after {:?}", i, op);
        }
        for pasid in [None, Some(1), Some(2)] {
            let want = refs.at.get(&pasid).map(|&i| GUEST_RAM_HPA + 0x1000 * i as u64 + 0x10);
            prop_assert_eq!(dma(&m, &dev, pasid, 0x10).ok(), want, "{:?} after {:?}", pasid, op);
        }
    }
    // Everything can be taken down: PASIDs, the RID, then every HWPT.
    for p in [1, 2] {
        m.fd.detach(id, Some(p)).unwrap();
    }
    m.fd.detach(id, None).unwrap();
    for hwpt in h {
        prop_assert_eq!(m.fd.destroy(hwpt).map_err(|e| e.errno()), Ok(()));
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(48))]

    #[test]
    fn attach_sequences_match_the_model_smmuv3(ops in proptest::collection::vec(op(), 1..12)) {
        run_ops(Model::Smmuv3, &ops)?;
    }

    #[test]
    fn attach_sequences_match_the_model_vtd(ops in proptest::collection::vec(op(), 1..12)) {
        run_ops(Model::Vtd, &ops)?;
    }
}

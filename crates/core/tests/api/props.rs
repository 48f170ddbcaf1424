//! Static and dynamic audits agree on random systems: random topologies (groups from DMA
//! aliases, multifunction devices and ports without ACS on VT-d; shared StreamIDs on SMMUv3),
//! random attachments and random SVA binds, on each driver.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sviommu_core::audit::{Sentinel, SpaceKey};
use sviommu_core::topology::{Acs, DeviceId};
use sviommu_core::{DomainKind, FlushPolicy, Target};
use sviommu_smmuv3::driver::CdTablePolicy;

use crate::rig::{builder, Arch, Rig, UNIT};

/// One random device: PASID bits (0 = none) and, on VT-d, which other root-bus device it also
/// sends as (a DMA alias); on SMMUv3, which StreamID of a small pool it has.
#[derive(Clone, Debug)]
struct Dev {
    pasid_bits: u8,
    alias_or_sid: usize,
    aliased: bool,
}

#[derive(Clone, Debug)]
struct Plan {
    devices: Vec<Dev>,
    /// A root port without ACS above a two-function device (VT-d), making one more group.
    unisolated_port: bool,
    domains: usize,
    /// For each device: attach its group to this domain (index), or not.
    attach: Vec<Option<usize>>,
    /// (process, device index) SVA binds.
    binds: Vec<(u32, usize)>,
}

fn plan() -> impl Strategy<Value = Plan> {
    let dev = (prop_oneof![Just(0u8), Just(8), Just(20)], 0usize..5, prop::bool::weighted(0.25))
        .prop_map(|(pasid_bits, alias_or_sid, aliased)| Dev { pasid_bits, alias_or_sid, aliased });
    (prop::collection::vec(dev, 2..6), any::<bool>(), 1usize..4).prop_flat_map(
        |(devices, unisolated_port, domains)| {
            let n = devices.len() + 2;
            (
                Just(devices),
                Just(unisolated_port),
                Just(domains),
                prop::collection::vec(prop::option::of(0..domains), n),
                prop::collection::vec((1u32..3, 0..n), 0..4),
            )
                .prop_map(|(devices, unisolated_port, domains, attach, binds)| Plan {
                    devices,
                    unisolated_port,
                    domains,
                    attach,
                    binds,
                })
        },
    )
}

fn build(arch: Arch, plan: &Plan) -> (Rig, Vec<DeviceId>) {
    let mut b = builder(arch);
    let mut names = Vec::new();
    match arch {
        Arch::Vtd => {
            let n = plan.devices.len();
            for (i, d) in plan.devices.iter().enumerate() {
                let slot = 2 + i as u8;
                let f = b.endpoint(format!("00:{slot:02x}.0").as_str());
                if d.pasid_bits > 0 {
                    f.pasid(d.pasid_bits);
                }
                let other = 2 + (d.alias_or_sid % n) as u8;
                if d.aliased && other != slot {
                    f.dma_alias(other, 0);
                }
                names.push(DeviceId::pci(&format!("00:{slot:02x}.0")).unwrap());
            }
            let port = b.root_port("00:1c.0", 0x01);
            if !plan.unisolated_port {
                port.acs(Acs::isolated());
            }
            b.endpoint("01:00.0").pasid(20).multifunction();
            b.endpoint("01:00.1").pasid(20).multifunction();
            names.push(DeviceId::pci("01:00.0").unwrap());
            names.push(DeviceId::pci("01:00.1").unwrap());
        }
        Arch::Smmu(_) => {
            for (i, d) in plan.devices.iter().enumerate() {
                let name = format!("m{i}");
                let p = b.platform(&name);
                p.stream_id(0x10 + d.alias_or_sid as u32);
                if d.pasid_bits > 0 {
                    p.pasid(d.pasid_bits);
                }
                names.push(DeviceId::platform(&name));
            }
            for name in ["x0", "x1"] {
                b.platform(name).stream_id(if name == "x0" { 0x20 } else { 0x21 }).pasid(20);
                names.push(DeviceId::platform(name));
            }
        }
    }
    (Rig::new(arch, b.build().unwrap()), names)
}

fn agree(arch: Arch, plan: &Plan) -> Result<(), TestCaseError> {
    let (mut r, names) = build(arch, plan);
    let strict = DomainKind::Paging { nesting_parent: false, flush: FlushPolicy::Strict };
    let mut domains = Vec::new();
    for i in 0..plan.domains {
        let d = r.iommu.alloc_domain(UNIT, strict).unwrap();
        r.iommu.map(d, 0x10_0000, 0x3000_0000 + ((i as u64) << 20), 0x1000, true).unwrap();
        domains.push(d);
    }
    for (dev, choice) in names.iter().zip(&plan.attach) {
        if let Some(i) = choice {
            r.iommu.attach(domains[*i], &Target::Device(dev.clone())).unwrap();
        }
    }
    let mut sentinels = BTreeMap::new();
    let mut processes = BTreeMap::new();
    for &(pid, dev) in &plan.binds {
        let hpa = 0x3800_0000 + (u64::from(pid) << 20);
        let space = *processes.entry(pid).or_insert_with(|| r.process(pid, &[(0x7f00_0000, hpa)]));
        // Refusals (no PASID, a path without ACS, no CD table to bind in) are fine here.
        if r.iommu.sva_bind(&Target::Device(names[dev].clone()), &space).is_ok() {
            sentinels
                .insert(SpaceKey::Sva(space.id), Sentinel { pasid: None, input: 0x7f00_0000, hpa });
        }
    }
    let report = r.iommu.audit(&sentinels);
    prop_assert!(report.agrees(), "{:#?}", report);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn vtd_static_and_dynamic_audits_agree(plan in plan()) {
        agree(Arch::Vtd, &plan)?;
    }

    #[test]
    fn smmu_per_domain_static_and_dynamic_audits_agree(plan in plan()) {
        agree(Arch::Smmu(CdTablePolicy::PerDomain), &plan)?;
    }

    #[test]
    fn smmu_per_device_static_and_dynamic_audits_agree(plan in plan()) {
        agree(Arch::Smmu(CdTablePolicy::PerDevice), &plan)?;
    }
}

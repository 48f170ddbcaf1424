//! The CD table policies and what they reach, seen by devices: with PerDomain (the seed's
//! arm-smmu-v3) a PASID bound through one StreamID is bound for every StreamID of the domain,
//! and the driver says so; with PerDevice it reaches one. And nesting over a guest's CD table.

mod common;
mod driver_common;

use driver_common::*;
use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, VmsaS1};
use sviommu_pgtable::Build;
use sviommu_smmuv3::driver::{
    Attach, CdTableOwner, CdTablePolicy, DomainConfig, DriverConfig, GuestCdTable, PasidAttach,
    Prot,
};
use sviommu_smmuv3::hw::Smmu;
use sviommu_smmuv3::spec::{EventId, Granule, S1Dss, S1Fmt};

const A: u32 = 0x10;
const B: u32 = 0x11;
const PASID: u32 = 7;
const S1: DomainConfig = DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 39 };

/// A CD table as `cd_tables()` reports it: owner, StreamIDs, SubstreamIDs.
type Reach = (CdTableOwner, Vec<u32>, Vec<u32>);

/// Two StreamIDs attached to one stage-1 domain, a second domain bound at PASID for A.
fn pasid_for_one(policy: CdTablePolicy, ssid_bits: u8) -> (Vec<u32>, Vec<Reach>, [bool; 2]) {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    let config = DriverConfig { cd_table_policy: policy, ssid_bits, ..Default::default() };
    let mut drv = driver(&smmu, &mem, config);
    let dev = drv.alloc_domain(S1).unwrap();
    let pasid_dom = drv.alloc_domain(S1).unwrap();
    drv.map(dev, 0x1000, 0x7000_0000, 0x1000, Prot::RW).unwrap();
    drv.map(pasid_dom, 0x1000, 0x9000_0000, 0x1000, Prot::RW).unwrap();
    drv.attach(A, Attach::Domain(dev)).unwrap();
    drv.attach(B, Attach::Domain(dev)).unwrap();
    // Without a SubstreamID both use CD 0: the domain.
    for sid in [A, B] {
        assert_eq!(output(smmu.translate(&read(sid, 0x1000))), 0x7000_0000);
    }
    let reached = drv.attach_pasid(A, PASID, PasidAttach::Domain(pasid_dom)).unwrap();
    assert_eq!(output(smmu.translate(&read(A, 0x1000).with_ssid(PASID))), 0x9000_0000);
    let b = smmu.translate(&read(B, 0x1000).with_ssid(PASID));
    let b_reached = match b {
        Ok(t) => {
            assert_eq!(t.output, 0x9000_0000);
            true
        }
        Err(a) => {
            assert_eq!(a.id(), Some(EventId::CBadCd), "B has no CD at the PASID");
            false
        }
    };
    let tables =
        drv.cd_tables().into_iter().map(|t| (t.owner, t.sids, t.ssids)).collect::<Vec<_>>();
    // Detaching undoes it for whoever it reached.
    assert_eq!(drv.detach_pasid(A, PASID).unwrap(), reached);
    assert_eq!(event(smmu.translate(&read(A, 0x1000).with_ssid(PASID))).id, EventId::CBadCd);
    (reached, tables, [true, b_reached])
}

#[test]
fn per_domain_a_pasid_bound_for_one_stream_reaches_every_stream_of_the_domain() {
    // Two-level (the default 20 SubstreamID bits) and linear (4 bits) CD tables.
    for bits in [20, 4] {
        let (reached, tables, seen) = pasid_for_one(CdTablePolicy::PerDomain, bits);
        assert_eq!(reached, [A, B]);
        assert_eq!(seen, [true, true], "B translates A's PASID: the seed's reach");
        assert_eq!(tables.len(), 1);
        let (owner, sids, ssids) = &tables[0];
        assert!(matches!(owner, CdTableOwner::Domain(_)));
        assert_eq!((sids.as_slice(), ssids.as_slice()), (&[A, B][..], &[0, PASID][..]));
    }
}

#[test]
fn per_device_a_pasid_bound_for_one_stream_reaches_it_alone() {
    for bits in [20, 4] {
        let (reached, tables, seen) = pasid_for_one(CdTablePolicy::PerDevice, bits);
        assert_eq!(reached, [A]);
        assert_eq!(seen, [true, false]);
        assert_eq!(
            tables,
            [
                (CdTableOwner::Device(A), vec![A], vec![0, PASID]),
                (CdTableOwner::Device(B), vec![B], vec![0]),
            ]
        );
    }
}

#[test]
fn per_device_gives_a_bypassing_stream_its_own_table_for_sva() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    let config = DriverConfig { cd_table_policy: CdTablePolicy::PerDevice, ..Default::default() };
    let mut drv = driver(&smmu, &mem, config);
    // A process's page table, built elsewhere (here in test-owned memory below the driver's).
    let mut own = FrameAllocator::new(&[(Hpa(0x10_0000), 0x10_0000)]);
    let pt = VmsaS1::create(&mem, &mut own, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    pt.map(&mem, &mut own, 0x5000, 0x6000_0000, 12, S1Attrs::ALL).unwrap();
    let sva = sviommu_smmuv3::driver::SvaContext {
        asid: 0x99,
        ttb0: pt.ttb,
        t0sz: 25,
        granule: Granule::Size4K,
        ips_bits: 48,
        mair: 0,
        ha: true,
        hd: true,
    };
    drv.attach(A, Attach::Bypass).unwrap();
    // PerDomain would refuse (no CD table); PerDevice makes one, keeping bypass for DMA
    // without a PASID (S1DSS).
    assert_eq!(drv.attach_pasid(A, 3, PasidAttach::Sva(sva)).unwrap(), [A]);
    assert_eq!(output(smmu.translate(&read(A, 0x5010).with_ssid(3))), 0x6000_0010);
    assert_eq!(output(smmu.translate(&read(A, 0x5010))), 0x5010);
    drv.detach_pasid(A, 3).unwrap();
    // The table stays while the stream is stage 1 with nothing bound: reattaching bypass
    // frees it.
    drv.attach(A, Attach::Bypass).unwrap();
    assert!(drv.cd_tables().is_empty());
    assert_eq!(output(smmu.translate(&read(A, 0x5010))), 0x5010);
}

#[test]
fn nesting_translates_through_the_guests_cd_table_and_stage_1_over_the_hosts_stage_2() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    // Guest RAM: IPA [1G, 1G + 2M) is host [2M, 4M), outside the driver's frames.
    const IPA: u64 = 0x4000_0000;
    const HPA: u64 = 0x20_0000;
    let s2 = drv.alloc_domain(DomainConfig::S2 { granule: Granule::Size4K, ias_bits: 40 }).unwrap();
    drv.map(s2, IPA, HPA, 0x20_0000, Prot::RW).unwrap();
    let ram = GuestRam::new(
        &mem,
        vec![GuestRamRegion { gpa: Gpa(IPA), len_bytes: 0x20_0000, hpa: Hpa(HPA) }],
    );
    // The guest builds its stage 1 and its CD table in its own RAM.
    let mut gframes = FrameAllocator::new(&[(Gpa(IPA), 0x10_0000)]);
    let gs1 = VmsaS1::create(&ram, &mut gframes, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    gs1.map(&ram, &mut gframes, 0x1000, IPA + 0x18_0000, 12, S1Attrs::ALL).unwrap();
    let cd_table = gframes.alloc(&ram, 12).unwrap().0;
    let cd = common::cd_for(&gs1, 3);
    for (i, w) in (0u64..).zip(cd.words()) {
        ram.write_u64(Gpa(cd_table + 64 * 2 + 8 * i), w).unwrap();
    }
    let guest = GuestCdTable {
        s1_context_ptr_ipa: cd_table,
        s1cdmax: 4,
        s1fmt: S1Fmt::Linear,
        s1dss: S1Dss::Terminate,
    };
    drv.attach(A, Attach::Domain(s2)).unwrap();
    drv.bind_pasid_table(A, s2, guest).unwrap();
    // GVA 0x1000 -> IPA 1G + 1.5M -> HPA 2M + 1.5M.
    assert_eq!(output(smmu.translate(&read(A, 0x1234).with_ssid(2))), HPA + 0x18_0234);
    // No SubstreamID: S1DSS terminates.
    assert_eq!(event(smmu.translate(&read(A, 0x1234))).id, EventId::FStreamDisabled);
    // The host's stage-2 unmap + flush reaches the nested walk's combined entry.
    drv.unmap(s2, IPA, 0x20_0000).unwrap();
    drv.flush_tlb(s2, Some((IPA, 0x20_0000))).unwrap();
    let e = event(smmu.translate(&read(A, 0x1234).with_ssid(2)));
    assert!(e.s2, "{e:?}");
    drv.map(s2, IPA, HPA, 0x20_0000, Prot::RW).unwrap();
    // Unbinding goes back to stage 2 alone.
    drv.unbind_pasid_table(A).unwrap();
    assert_eq!(output(smmu.translate(&read(A, IPA + 0x10))), HPA + 0x10);
    assert_eq!(event(smmu.translate(&read(A, IPA).with_ssid(2))).id, EventId::CBadSubstreamid);
}

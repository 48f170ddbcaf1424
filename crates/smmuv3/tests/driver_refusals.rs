//! Refused calls change nothing: every byte of memory, the frame allocator, the commands
//! issued, the CD table report and what devices see are as before.

mod driver_common;

use driver_common::*;
use sviommu_smmuv3::driver::{
    Attach, DomainConfig, DomainId, DriverConfig, DriverError, GuestCdTable, Invalidation,
    PasidAttach, Prot, SvaContext,
};
use sviommu_smmuv3::hw::{Smmu, SmmuParams};
use sviommu_smmuv3::spec::regs::{idr0, idr5};
use sviommu_smmuv3::spec::{Granule, S1Dss, S1Fmt};

#[test]
fn refused_calls_write_and_allocate_nothing() {
    let mem = memory();
    // No 16K granule.
    let d = params();
    let params = SmmuParams {
        idr5: u32::try_from(idr5::GRAN16K.with(u64::from(d.idr5), false)).unwrap(),
        ..d
    };
    let smmu = Smmu::new(&mem, params);
    let _clean = CleanAtEnd(&smmu);
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let s1 = drv.alloc_domain(DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 39 }).unwrap();
    let s2 = drv.alloc_domain(DomainConfig::S2 { granule: Granule::Size4K, ias_bits: 40 }).unwrap();
    drv.map(s1, 0x1000, 0x7000_0000, 0x1000, Prot::RW).unwrap();
    drv.attach(1, Attach::Domain(s1)).unwrap();
    drv.attach(2, Attach::Domain(s2)).unwrap();
    let asid_of_s1 = 1; // the first ASID the driver hands out

    let before =
        (snapshot(&mem), drv.free_frame_bytes(), drv.stats(), drv.cd_tables(), drv.blocks());
    let sva = SvaContext {
        asid: 0x40,
        ttb0: 0x10_0000,
        t0sz: 25,
        granule: Granule::Size4K,
        ips_bits: 48,
        mair: 0,
        ha: false,
        hd: false,
    };
    let guest = GuestCdTable {
        s1_context_ptr_ipa: 0x4000_0000,
        s1cdmax: 4,
        s1fmt: S1Fmt::Linear,
        s1dss: S1Dss::Terminate,
    };
    let refusals: Vec<(&str, Result<(), DriverError>)> = vec![
        (
            "granule",
            drv.alloc_domain(DomainConfig::S1 { granule: Granule::Size16K, ias_bits: 39 })
                .map(drop),
        ),
        (
            "input size",
            drv.alloc_domain(DomainConfig::S2 { granule: Granule::Size4K, ias_bits: 60 }).map(drop),
        ),
        ("sid", drv.attach(1 << 16, Attach::Bypass)),
        ("domain", drv.attach(3, Attach::Domain(DomainId(99)))),
        ("ssid 0", drv.attach_pasid(1, 0, PasidAttach::Domain(s1)).map(drop)),
        ("ssid beyond", drv.attach_pasid(1, 1 << 20, PasidAttach::Domain(s1)).map(drop)),
        ("pasid on stage 2", drv.attach_pasid(2, 5, PasidAttach::Domain(s1)).map(drop)),
        ("pasid without table", drv.attach_pasid(3, 5, PasidAttach::Domain(s1)).map(drop)),
        ("stage-2 domain at a pasid", drv.attach_pasid(1, 5, PasidAttach::Domain(s2)).map(drop)),
        (
            "asid in use",
            drv.attach_pasid(1, 5, PasidAttach::Sva(SvaContext { asid: asid_of_s1, ..sva }))
                .map(drop),
        ),
        (
            "sva granule",
            drv.attach_pasid(
                1,
                5,
                PasidAttach::Sva(SvaContext { granule: Granule::Size16K, ..sva }),
            )
            .map(drop),
        ),
        (
            "sva ttb0",
            drv.attach_pasid(1, 5, PasidAttach::Sva(SvaContext { ttb0: 0x10_0010, ..sva }))
                .map(drop),
        ),
        ("pasid not bound", drv.detach_pasid(1, 5).map(drop)),
        ("nesting parent stage 1", drv.bind_pasid_table(2, s1, guest)),
        ("guest s1cdmax", drv.bind_pasid_table(2, s2, GuestCdTable { s1cdmax: 21, ..guest })),
        (
            "guest pointer",
            drv.bind_pasid_table(2, s2, GuestCdTable { s1_context_ptr_ipa: 1 << 41, ..guest }),
        ),
        ("not nested", drv.unbind_pasid_table(2)),
        ("free attached", drv.free_domain(s1)),
        ("map size", drv.map(s1, 0x3000, 0x3000, 0x3000, Prot::RW)),
        ("map overlap", drv.map(s1, 0x1000, 0x8000, 0x1000, Prot::RW)),
        ("map misaligned", drv.map(s2, 0x1000, 0x800, 0x1000, Prot::RW)),
        (
            "stage-1 write-only",
            drv.map(s1, 0x5000, 0x5000, 0x1000, Prot { read: false, write: true, exec: false }),
        ),
        ("ats unsupported", drv.set_ats(1, true)),
        (
            "one bad invalidation",
            drv.invalidate(&[
                Invalidation::NhAsid { parent: None, asid: 1 },
                Invalidation::CfgiCd { sid: 1 << 20, ssid: 0, leaf: true },
            ]),
        ),
        (
            "guest tlbi parent",
            drv.invalidate(&[Invalidation::NhAsid { parent: Some(s1), asid: 1 }]),
        ),
    ];
    for (what, r) in &refusals {
        assert!(r.is_err(), "{what} was not refused");
    }
    let after =
        (snapshot(&mem), drv.free_frame_bytes(), drv.stats(), drv.cd_tables(), drv.blocks());
    assert!(before.0 == after.0, "a refused call wrote memory");
    assert_eq!((before.1, before.2, before.3, before.4), (after.1, after.2, after.3, after.4));
    // The devices see what they saw.
    assert_eq!(output(smmu.translate(&read(1, 0x1010))), 0x7000_0010);
}

#[test]
fn nesting_needs_both_stages() {
    let mem = memory();
    let d = params();
    let params =
        SmmuParams { idr0: u32::try_from(idr0::S2P.with(u64::from(d.idr0), false)).unwrap(), ..d };
    let smmu = Smmu::new(&mem, params);
    let _clean = CleanAtEnd(&smmu);
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let before = snapshot(&mem);
    let guest = GuestCdTable {
        s1_context_ptr_ipa: 0,
        s1cdmax: 0,
        s1fmt: S1Fmt::Linear,
        s1dss: S1Dss::Terminate,
    };
    assert_eq!(
        drv.bind_pasid_table(1, DomainId(1), guest),
        Err(DriverError::Unsupported("nesting (S1P and S2P)"))
    );
    assert_eq!(
        drv.alloc_domain(DomainConfig::S2 { granule: Granule::Size4K, ias_bits: 40 }),
        Err(DriverError::Unsupported("stage 2"))
    );
    assert!(before == snapshot(&mem));
}

//! A refused call changes nothing: every byte of the driver's table memory, the frame
//! allocator's free bytes, the descriptors it submitted, and what the unit translates are the
//! same before and after.

mod driver_common;

use driver_common::*;
use sviommu_pgtable::MapError;
use sviommu_vtd::driver::{
    DomainConfig, DriverConfig, DriverError as E, Feature, InvalidateRequest, ModeChoice,
    PasidConfig, Prot,
};
use sviommu_vtd::hw::VtdParams;
use sviommu_vtd::spec::regs::{cap, ecap};
use sviommu_vtd::spec::{Aw, Fspm};

const RID: u16 = 0x0310;
const IOVA: u64 = 0x1234_5000;
const PA: u64 = 0x7_6543_2000;

/// Runs `call`, which must be refused with `expected`, and checks that nothing changed.
#[track_caller]
fn refused<T: std::fmt::Debug>(
    r: &mut Rig,
    expected: E,
    call: impl FnOnce(&mut Rig) -> Result<T, E>,
) {
    let before = snapshot(r);
    let stats = r.drv.stats();
    // Warm, then the baseline: a refused call invalidates nothing either, so a cached answer
    // stays cached (the same reads).
    let _ = r.vtd.translate(&read(RID, IOVA));
    let probe = r.vtd.translate(&read(RID, IOVA));
    let got = call(r);
    assert_eq!(got.unwrap_err(), expected);
    assert!(snapshot(r) == before, "memory or allocator changed by a refused call ({expected:?})");
    assert_eq!(r.drv.stats(), stats, "descriptors submitted by a refused call");
    assert_eq!(r.vtd.translate(&read(RID, IOVA)), probe);
}

/// A scalable rig with a second-stage domain (4K at IOVA, 2M at 0x4000_0000) attached to RID,
/// an external domain and a first-stage domain.
fn populated(params: VtdParams) -> (Rig, [sviommu_vtd::driver::Did; 3]) {
    let mut r = rig_with(params, DriverConfig::default());
    let ss = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    r.drv.map(ss, IOVA, PA, 0x1000, Prot::RW).unwrap();
    r.drv.map(ss, 0x4000_0000, 0x8000_0000, 1 << 21, Prot::RW).unwrap();
    r.drv.attach(RID, None, PasidConfig::SecondStage { did: ss }).unwrap();
    let ext = if params.ecap & ecap::FSTS.mask() != 0 {
        r.drv.alloc_domain(DomainConfig::External).unwrap()
    } else {
        ss
    };
    let fs = if params.ecap & ecap::FSTS.mask() != 0 {
        r.drv.alloc_domain(DomainConfig::FirstStage { levels: Fspm::FourLevel }).unwrap()
    } else {
        ss
    };
    (r, [ss, ext, fs])
}

/// The default unit without device-TLBs and page requests.
fn without_ats() -> VtdParams {
    let mut p = params();
    p.ecap = ecap::DT.with(p.ecap, false);
    p.ecap = ecap::PRS.with(p.ecap, false);
    p
}

#[test]
fn bad_input_is_refused_without_a_trace() {
    let (mut r, [ss, ext, fs]) = populated(without_ats());
    let nested = |parent, fs_root_gpa| PasidConfig::Nested {
        parent,
        s1_did: None,
        fs_root_gpa,
        levels: Fspm::FourLevel,
        sre: false,
    };
    refused(&mut r, E::PasidReserved(0), |r| r.drv.attach(RID, Some(0), PasidConfig::PassThrough));
    refused(&mut r, E::PasidOutOfRange { pasid: 1 << 20, bits: 20 }, |r| {
        r.drv.attach(RID, Some(1 << 20), PasidConfig::PassThrough)
    });
    let ghost = sviommu_vtd::driver::Did(999);
    refused(&mut r, E::NoSuchDomain(ghost), |r| {
        r.drv.attach(RID, Some(4), PasidConfig::SecondStage { did: ghost })
    });
    refused(&mut r, E::WrongDomainKind { did: ss, wanted: "first-stage" }, |r| {
        r.drv.attach(RID, Some(4), PasidConfig::FirstStage { did: ss })
    });
    refused(&mut r, E::WrongDomainKind { did: fs, wanted: "second-stage" }, |r| {
        r.drv.attach(RID, Some(4), nested(fs, 0x1000))
    });
    refused(&mut r, E::BadTableAddress { addr: 0x1234 }, |r| {
        r.drv.attach(RID, Some(4), nested(ss, 0x1234))
    });
    let sva = |fs_root| PasidConfig::FirstStageExternal {
        did: ext,
        fs_root,
        levels: Fspm::FourLevel,
        sre: false,
    };
    refused(&mut r, E::BadTableAddress { addr: 1 << 52 }, |r| {
        r.drv.attach(RID, Some(4), sva(1 << 52))
    });
    refused(&mut r, E::DomainAttached(ss), |r| r.drv.free_domain(ss));
    // Mapping: sizes, protections, alignment, overlap, range.
    refused(&mut r, E::PageSize { size: 0x3000 }, |r| r.drv.map(ss, 0, 0, 0x3000, Prot::RW));
    refused(&mut r, E::PageSize { size: 1 << 39 }, |r| r.drv.map(ss, 0, 0, 1 << 39, Prot::RW));
    let none = Prot { read: false, write: false, exec: false };
    refused(&mut r, E::Prot(none), |r| r.drv.map(ss, 0, 0, 0x1000, none));
    let write_only = Prot { read: false, write: true, exec: false };
    refused(&mut r, E::Prot(write_only), |r| r.drv.map(fs, 0, 0, 0x1000, write_only));
    refused(&mut r, E::Map(MapError::Overlap { input: IOVA }), |r| {
        r.drv.map(ss, IOVA, PA, 0x1000, Prot::RW)
    });
    refused(&mut r, E::Map(MapError::Overlap { input: 0x4010_0000 }), |r| {
        r.drv.map(ss, 0x4010_0000, PA, 0x1000, Prot::RW)
    });
    refused(
        &mut r,
        E::Map(MapError::Misaligned { input: 0x20_1000, output: 0, size_lg2: 21 }),
        |r| r.drv.map(ss, 0x20_1000, 0, 1 << 21, Prot::RW),
    );
    refused(&mut r, E::Map(MapError::InputRange { input: 1 << 48 }), |r| {
        r.drv.map(ss, 1 << 48, 0, 0x1000, Prot::RW)
    });
    refused(&mut r, E::Map(MapError::OutputRange { output: 1 << 52 }), |r| {
        r.drv.map(ss, 0x9000, 1 << 52, 0x1000, Prot::RW)
    });
    refused(&mut r, E::WrongDomainKind { did: ext, wanted: "paging" }, |r| {
        r.drv.map(ext, 0, 0, 0x1000, Prot::RW)
    });
    refused(&mut r, E::Map(MapError::SplitsLeaf { input: 0x4000_0000, size_lg2: 21 }), |r| {
        r.drv.unmap(ss, 0x4000_0000, 0x1000)
    });
    refused(&mut r, E::Range { iova: 0x1000, size: 0 }, |r| {
        r.drv.flush_iotlb(ss, Some((0x1000, 0)))
    });
    // Guests' invalidations: refused whole, nothing queued.
    refused(&mut r, E::Unsupported(Feature::DeviceTlb), |r| {
        r.drv.invalidate(&[
            InvalidateRequest::Iotlb { did: ss.0, range: None, ih: false },
            InvalidateRequest::DevTlb { sid: RID, pasid: None, range: None },
        ])
    });
    refused(&mut r, E::PasidOutOfRange { pasid: 1 << 21, bits: 20 }, |r| {
        r.drv.invalidate(&[InvalidateRequest::PasidCache { did: ss.0, pasid: Some(1 << 21) }])
    });
    refused(&mut r, E::Unsupported(Feature::PageRequests), |r| {
        r.drv.page_group_response(RID, None, 1, sviommu_vtd::spec::ResponseCode::Success)
    });
    refused(&mut r, E::Unsupported(Feature::PageRequests), |r| r.drv.drain_page_requests());
    // And the state is still what it was.
    assert_eq!(out(&r.vtd, read(RID, IOVA)), PA);
}

#[test]
fn what_the_unit_does_not_advertise_is_refused() {
    let mut p = without_ats();
    p.ecap = ecap::NEST.with(p.ecap, false);
    p.ecap = ecap::PT.with(p.ecap, false);
    p.ecap = ecap::SRS.with(p.ecap, false);
    p.cap = cap::FS5LP.with(p.cap, false);
    p.cap = cap::SAGAW.set(p.cap, Aw::Bits48.sagaw_bit());
    p.ecap = ecap::PSS.set(p.ecap, 7);
    p.cap = cap::SSLPS.set(p.cap, cap::SSLPS_2M);
    let (mut r, [ss, ext, _]) = populated(p);
    refused(&mut r, E::Unsupported(Feature::PassThrough), |r| {
        r.drv.attach(RID, Some(4), PasidConfig::PassThrough)
    });
    refused(&mut r, E::Unsupported(Feature::Nesting), |r| {
        r.drv.attach(
            RID,
            Some(4),
            PasidConfig::Nested {
                parent: ss,
                s1_did: None,
                fs_root_gpa: 0,
                levels: Fspm::FourLevel,
                sre: false,
            },
        )
    });
    refused(&mut r, E::Unsupported(Feature::SupervisorRequests), |r| {
        r.drv.attach(
            RID,
            Some(4),
            PasidConfig::FirstStageExternal {
                did: ext,
                fs_root: 0x1000,
                levels: Fspm::FourLevel,
                sre: true,
            },
        )
    });
    refused(&mut r, E::Unsupported(Feature::FiveLevelFirstStage), |r| {
        r.drv.alloc_domain(DomainConfig::FirstStage { levels: Fspm::FiveLevel })
    });
    refused(&mut r, E::AwNotSupported(Aw::Bits57), |r| {
        r.drv.alloc_domain(DomainConfig::SecondStage { aw: Some(Aw::Bits57) })
    });
    refused(&mut r, E::PasidOutOfRange { pasid: 0x100, bits: 8 }, |r| {
        r.drv.attach(RID, Some(0x100), PasidConfig::SecondStage { did: ss })
    });
    refused(&mut r, E::PageSize { size: 1 << 30 }, |r| {
        r.drv.map(ss, 1 << 30, 0, 1 << 30, Prot::RW)
    });

    let mut l = rig_with(p, DriverConfig { mode: ModeChoice::Legacy, ..Default::default() });
    let dom = l.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    refused(&mut l, E::NeedsScalableMode("a request with PASID"), |r| {
        r.drv.attach(RID, Some(4), PasidConfig::SecondStage { did: dom })
    });
    refused(&mut l, E::NeedsScalableMode("first-stage translation"), |r| {
        r.drv.attach(RID, None, PasidConfig::FirstStage { did: dom })
    });
    refused(&mut l, E::NeedsScalableMode("a first-stage domain"), |r| {
        r.drv.alloc_domain(DomainConfig::FirstStage { levels: Fspm::FourLevel })
    });
    refused(&mut l, E::Unsupported(Feature::PassThrough), |r| {
        r.drv.attach(RID, None, PasidConfig::PassThrough)
    });
    refused(&mut l, E::NeedsScalableMode("PASID-cache invalidation"), |r| {
        r.drv.invalidate(&[InvalidateRequest::PasidCache { did: dom.0, pasid: None }])
    });
}

#[test]
fn running_out_of_frames_mid_attach_gives_back_what_it_took() {
    // 24K of table memory: bring-up takes 12K (root, queue, status; no page request queue on
    // this unit), the domain 4K; a new
    // device then needs a context table (4K, there), a PASID directory (128K for 20-bit
    // PASIDs, not there) and a PASID table.
    let mem = memory();
    let vtd = std::sync::Arc::new(sviommu_vtd::hw::Vtd::new(mem.clone(), without_ats()));
    let frames = sviommu_memory::FrameAllocator::new(&[(sviommu_memory::Hpa(TABLES_HPA), 0x6000)]);
    let drv = sviommu_vtd::driver::VtdDriver::new(
        vtd.clone(),
        mem.clone(),
        frames,
        DriverConfig::default(),
    )
    .unwrap();
    let mut r = Rig { mem, vtd, drv };
    let dom = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    assert_eq!(r.drv.frames().free_bytes(), 0x2000);
    refused(&mut r, E::Frame(sviommu_memory::FrameError::Exhausted { size_lg2: 17 }), |r| {
        r.drv.attach(RID, None, PasidConfig::SecondStage { did: dom })
    });
    // A driver whose directories cover 6-bit PASIDs needs only 4K for one: 32K is all it takes.
    let mem = memory();
    let vtd = std::sync::Arc::new(sviommu_vtd::hw::Vtd::new(mem.clone(), without_ats()));
    let frames = sviommu_memory::FrameAllocator::new(&[(sviommu_memory::Hpa(TABLES_HPA), 0x8000)]);
    let config = DriverConfig { pasid_bits: 6, ..Default::default() };
    let drv =
        sviommu_vtd::driver::VtdDriver::new(vtd.clone(), mem.clone(), frames, config).unwrap();
    let mut r = Rig { mem, vtd, drv };
    let dom = r.drv.alloc_domain(DomainConfig::SecondStage { aw: None }).unwrap();
    r.drv.map(dom, 0, 1 << 32, 1 << 30, Prot::RW).unwrap();
    r.drv.attach(RID, None, PasidConfig::SecondStage { did: dom }).unwrap();
    assert_eq!(out(&r.vtd, read(RID, IOVA)), (1 << 32) + IOVA);
    assert_eq!(r.drv.frames().free_bytes(), 0);
    refused(&mut r, E::PasidOutOfRange { pasid: 64, bits: 6 }, |r| {
        r.drv.attach(RID, Some(64), PasidConfig::PassThrough)
    });
}

//! Per-PASID nesting, seen by the device (the model's `translate`): a guest's stage 1 at one
//! SubstreamID over a host stage-2 parent, through a host CD table the driver maps into the
//! parent's reserved IPA window.

mod driver_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use driver_common::*;
use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::Build;
use sviommu_smmuv3::driver::{
    Attach, CdTableOwner, DomainConfig, DomainId, DriverConfig, DriverError, GuestCdTable,
    Invalidation, Mmio, NestedCd, PasidAttach, Prot, SmmuDriver, StreamTableFormat,
};
use sviommu_smmuv3::hw::{Abort, Smmu, SmmuParams};
use sviommu_smmuv3::spec::regs::{idr5, strtab_base, STRTAB_BASE};
use sviommu_smmuv3::spec::{Class, EventId, Granule, S1Dss, S1Fmt, Ste};

const A: u32 = 0x10;
/// Guest RAM: IPA [1G, 1G + 2M) is host [2M, 4M), outside the driver's frames.
const IPA: u64 = 0x4000_0000;
const HPA: u64 = 0x20_0000;
const S2: DomainConfig = DomainConfig::S2 { granule: Granule::Size4K, ias_bits: 40 };
/// Where the two guest address spaces map GVA 0x1000 (IPA offsets in guest RAM).
const DATA_A: u64 = 0x18_0000;
const DATA_B: u64 = 0x19_0000;

/// A guest with two stage-1 address spaces built in its own RAM (IPA space).
struct Guest {
    a: VmsaS1,
    b: VmsaS1,
}

impl Guest {
    fn build(mem: &HostMemory) -> Self {
        let ram = GuestRam::new(
            mem,
            vec![GuestRamRegion { gpa: Gpa(IPA), len_bytes: 0x20_0000, hpa: Hpa(HPA) }],
        );
        let mut frames = FrameAllocator::new(&[(Gpa(IPA), 0x10_0000)]);
        let mut space = |data: u64| {
            let s1 = VmsaS1::create(&ram, &mut frames, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
            s1.map(&ram, &mut frames, 0x1000, IPA + data, 12, S1Attrs::ALL).unwrap();
            s1
        };
        Self { a: space(DATA_A), b: space(DATA_B) }
    }
}

fn nested_cd(s1: &VmsaS1, asid: u16) -> NestedCd {
    NestedCd {
        asid,
        ttb0_ipa: s1.ttb,
        t0sz: s1.t0sz,
        granule: Granule::Size4K,
        ips_bits: s1.ips.bits(),
        mair: 0xff,
        ha: false,
        hd: false,
    }
}

/// A stage-2 parent mapping guest RAM, with A attached to it.
fn parent(drv: &mut Driver<'_>) -> DomainId {
    let s2 = drv.alloc_domain(S2).unwrap();
    drv.map(s2, IPA, HPA, 0x20_0000, Prot::RW).unwrap();
    drv.attach(A, Attach::Domain(s2)).unwrap();
    s2
}

/// Two PASIDs over one parent translate as guest stage 1 composed with host stage 2; DMA
/// without a PASID keeps stage 2 alone; detach faults the PASID with the architected event;
/// the last detach gives back everything the driver made. With a two-level CD table (CD2L,
/// 20 SubstreamID bits: L1CD.L2Ptr is an IPA too) and a linear one (6 bits).
#[test]
fn pasids_translate_as_guest_stage_1_composed_with_host_stage_2() {
    for ssid_bits in [20, 6] {
        let mem = memory();
        let smmu = Smmu::new(&mem, params());
        let _clean = CleanAtEnd(&smmu);
        let mut drv = driver(&smmu, &mem, DriverConfig { ssid_bits, ..Default::default() });
        let guest = Guest::build(&mem);
        let s2 = parent(&mut drv);
        let window = drv.reserved_ipa_window(s2).unwrap();
        // IMPDEF: the top 16MB of the 40-bit IPA space.
        assert_eq!(window, ((1 << 40) - (1 << 24), 1 << 24));
        let before = (drv.blocks(), drv.cd_tables());

        assert_eq!(drv.attach_nested_pasid(A, 5, s2, nested_cd(&guest.a, 3)), Ok(vec![A]));
        assert_eq!(drv.attach_nested_pasid(A, 9, s2, nested_cd(&guest.b, 4)), Ok(vec![A]));
        // GVA 0x1000 -> IPA 1G + 1.5M (or + 1.5625M) -> HPA 2M + the same offset.
        assert_eq!(output(smmu.translate(&read(A, 0x1234).with_ssid(5))), HPA + DATA_A + 0x234);
        assert_eq!(output(smmu.translate(&read(A, 0x1234).with_ssid(9))), HPA + DATA_B + 0x234);
        assert_eq!(output(smmu.translate(&write(A, 0x1008).with_ssid(9))), HPA + DATA_B + 8);
        // No SubstreamID: S1DSS bypass, stage 2 alone (IPA -> HPA).
        assert_eq!(output(smmu.translate(&read(A, IPA + 0x10))), HPA + 0x10);
        assert_eq!(output(smmu.translate(&write(A, IPA + DATA_A))), HPA + DATA_A);
        // A GVA the guest did not map: a stage-1 fault (S2 == 0, recorded: the CD's R).
        let e = event(smmu.translate(&read(A, 0x5000).with_ssid(5)));
        assert_eq!((e.id, e.s2, e.class), (EventId::FTranslation, false, Some(Class::In)));

        // The table is the stream's, reached through the window.
        let tables = drv.cd_tables();
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].owner, CdTableOwner::Nested { sid: A, parent: s2 });
        assert_eq!((tables[0].sids.clone(), tables[0].ssids.clone()), (vec![A], vec![5, 9]));
        assert_eq!(drv.pasid_reach(A), vec![A]);

        // Detach: the PASID's CD is invalid (C_BAD_CD), the other PASID and stage 2 are kept.
        assert_eq!(drv.detach_nested_pasid(A, 5), Ok(vec![A]));
        assert_eq!(event(smmu.translate(&read(A, 0x1234).with_ssid(5))).id, EventId::CBadCd);
        assert_eq!(output(smmu.translate(&read(A, 0x1234).with_ssid(9))), HPA + DATA_B + 0x234);
        assert_eq!(output(smmu.translate(&read(A, IPA + 0x10))), HPA + 0x10);
        // The last one returns the stream to stage 2: SubstreamIDs are C_BAD_SUBSTREAMID.
        assert_eq!(drv.detach_nested_pasid(A, 9), Ok(vec![A]));
        let e = event(smmu.translate(&read(A, 0x1234).with_ssid(9)));
        assert_eq!((e.id, e.ssid), (EventId::CBadSubstreamid, Some(9)));
        assert_eq!(output(smmu.translate(&read(A, IPA + 0x10))), HPA + 0x10);
        // The window is empty again (stage 2 faults there) and the CD table freed.
        let e = event(smmu.translate(&read(A, window.0)));
        assert_eq!((e.id, e.s2), (EventId::FTranslation, true));
        assert_eq!((drv.blocks(), drv.cd_tables()), before);
        // And it can all be done again (the window slot is reused).
        drv.attach_nested_pasid(A, 9, s2, nested_cd(&guest.b, 4)).unwrap();
        assert_eq!(output(smmu.translate(&read(A, 0x1234).with_ssid(9))), HPA + DATA_B + 0x234);
    }
}

/// The device can read its CD table through the window (the SMMU must, to fetch CDs) but
/// neither write it nor reach anything beside it.
#[test]
fn the_window_is_read_only_to_the_device() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let guest = Guest::build(&mem);
    let s2 = parent(&mut drv);
    let (start, _) = drv.reserved_ipa_window(s2).unwrap();
    drv.attach_nested_pasid(A, 5, s2, nested_cd(&guest.a, 3)).unwrap();
    let table = drv.cd_tables()[0].table;
    assert_eq!(output(smmu.translate(&read(A, start + 8))), table + 8);
    let e = event(smmu.translate(&write(A, start + 8)));
    assert_eq!((e.id, e.s2, e.class), (EventId::FPermission, true, Some(Class::In)));
}

/// The driver's own map and unmap refuse the window of a nesting parent; just below it is
/// the caller's.
#[test]
fn the_reserved_window_is_refused_to_map_and_unmap() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let s2 = drv.alloc_domain(S2).unwrap();
    let s1 = drv.alloc_domain(DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 40 }).unwrap();
    let (start, size) = drv.reserved_ipa_window(s2).unwrap();
    assert_eq!(drv.reserved_ipa_window(s1), None);
    let refused = Err(DriverError::ReservedWindow { domain: s2, start, size });
    let snap = snapshot(&mem);
    assert_eq!(drv.map(s2, start, HPA, 0x1000, Prot::RO), refused);
    assert_eq!(drv.map(s2, start + size - 0x1000, HPA, 0x1000, Prot::RO), refused);
    // Straddling its start.
    assert_eq!(drv.map(s2, start - 0x20_0000, HPA, 0x40_0000, Prot::RO), refused);
    assert_eq!(drv.unmap(s2, start - 0x1000, 0x2000).map(drop), refused);
    assert!(snap == snapshot(&mem));
    drv.map(s2, start - 0x1000, HPA, 0x1000, Prot::RO).unwrap();
    // A stage-1 domain has no window.
    drv.map(s1, start, HPA, 0x1000, Prot::RO).unwrap();
}

/// Registers that, after every write (each Command queue submission among them), play a
/// device sending a read without SubstreamID, so every state the STE passes through between
/// two commands is seen.
struct Probe<'a> {
    smmu: &'a Smmu<&'a HostMemory>,
    armed: AtomicBool,
    seen: Mutex<Vec<Result<u64, Abort>>>,
}

impl Mmio for Probe<'_> {
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.smmu.mmio_read(offset, size)
    }

    fn write(&self, offset: u64, size: u8, value: u64) {
        self.smmu.mmio_write(offset, size, value);
        if self.armed.load(Ordering::Relaxed) {
            let r = self.smmu.translate(&read(A, IPA + 0x10)).map(|t| t.output);
            self.seen.lock().unwrap().push(r);
        }
    }
}

/// Switching the stream between stage 2 and nested (first attach, last detach) never makes
/// DMA without a SubstreamID abort: the STE changes without passing through Config abort.
#[test]
fn dma_without_a_pasid_keeps_stage_2_while_the_ste_changes() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    let probe = Probe { smmu: &smmu, armed: AtomicBool::new(false), seen: Mutex::new(Vec::new()) };
    let mut drv = SmmuDriver::new(&probe, &mem, frames(), DriverConfig::default()).unwrap();
    let guest = Guest::build(&mem);
    let s2 = drv.alloc_domain(S2).unwrap();
    drv.map(s2, IPA, HPA, 0x20_0000, Prot::RW).unwrap();
    drv.attach(A, Attach::Domain(s2)).unwrap();
    probe.armed.store(true, Ordering::Relaxed);
    drv.attach_nested_pasid(A, 5, s2, nested_cd(&guest.a, 3)).unwrap();
    drv.detach_nested_pasid(A, 5).unwrap();
    let seen = std::mem::take(&mut *probe.seen.lock().unwrap());
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| *r == Ok(HPA + 0x10)), "{seen:?}");
    // The probe translated between the driver's STE writes and their CMD_SYNC, on purpose:
    // strict's sanitizer sees the cached STE used after it changed, with its CMD_CFGI_STE
    // issued and only the sync pending, which is what the hitless update allows.
    assert!(smmu.violations().iter().all(|v| v.unsynced && v.cache == "STE cache"));
    // The same probe sees the abort of a change that cannot be made in place (stage 2 to
    // bypass), so it would have seen one here.
    drv.attach(A, Attach::Bypass).unwrap();
    let seen = std::mem::take(&mut *probe.seen.lock().unwrap());
    assert!(seen.iter().any(Result::is_err), "{seen:?}");
    assert!(smmu.violations().iter().all(|v| v.unsynced && v.cache == "STE cache"));
}

/// After the host's stage-2 unmap and flush, what the nested walk reads through stage 2
/// faults with the architected event: a stage-1 table fetch is F_TRANSLATION with S2 == 1,
/// CLASS == TT and the IPA fetched (§7.3.12); a CD fetch is the same with CLASS == CD.
#[test]
fn stage_2_faults_of_table_and_cd_fetches_are_reported_as_such() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    // Linear Stream table, so the test can find the STE.
    let config = DriverConfig { stream_table: StreamTableFormat::Linear, ..Default::default() };
    let mut drv = driver(&smmu, &mem, config);
    let guest = Guest::build(&mem);
    let s2 = parent(&mut drv);
    drv.attach_nested_pasid(A, 5, s2, nested_cd(&guest.a, 3)).unwrap();
    assert_eq!(output(smmu.translate(&read(A, 0x1234).with_ssid(5))), HPA + DATA_A + 0x234);

    // Guest RAM (holding the guest's stage-1 tables) leaves stage 2.
    drv.unmap(s2, IPA, 0x20_0000).unwrap();
    drv.flush_tlb(s2, Some((IPA, 0x20_0000))).unwrap();
    let e = event(smmu.translate(&read(A, 0x1234).with_ssid(5)));
    assert_eq!((e.id, e.s2, e.class), (EventId::FTranslation, true, Some(Class::Tt)), "{e:?}");
    // The level-0 descriptor for GVA 0x1234 is the first of the guest's root table.
    assert_eq!(e.ipa, Some(guest.a.ttb), "{e:?}");
    drv.map(s2, IPA, HPA, 0x20_0000, Prot::RW).unwrap();
    assert_eq!(output(smmu.translate(&read(A, 0x1234).with_ssid(5))), HPA + DATA_A + 0x234);

    // The window page holding the CD table's level 1 leaves stage 2 (the test plays a host
    // whose stage 2 lost it: the driver refuses to unmap it), then TLBs and CDs are flushed.
    let base = strtab_base::ADDR.get(smmu.mmio_read(STRTAB_BASE.0, 8)) << strtab_base::ADDR.lo;
    let ste_addr = base + 64 * u64::from(A);
    let mut words = [0u64; 8];
    for (i, w) in (0u64..).zip(words.iter_mut()) {
        *w = mem.read_u64(Hpa(ste_addr + 8 * i)).unwrap();
    }
    let ste = Ste::from_words(words);
    assert_eq!(ste.s1dss(), Ok(S1Dss::Bypass));
    let cd_ipa = ste.s1contextptr();
    assert_eq!(Some(cd_ipa), drv.reserved_ipa_window(s2).map(|w| w.0));
    let pt = VmsaS2::new(ste.s2ttb(), PtGranule::K4, ste.s2t0sz(), ste.s2sl0());
    assert_eq!(pt.unmap(&mem, cd_ipa, 0x1000).unwrap().bytes, 0x1000);
    drv.flush_tlb(s2, None).unwrap();
    drv.invalidate(&[Invalidation::CfgiCdAll { sid: A }]).unwrap();
    let e = event(smmu.translate(&read(A, 0x1234).with_ssid(5)));
    assert_eq!((e.id, e.s2, e.class), (EventId::FTranslation, true, Some(Class::Cd)), "{e:?}");
    assert_eq!(e.ipa, Some(cd_ipa), "{e:?}");
    // Stage 2 alone still serves DMA without a SubstreamID.
    assert_eq!(output(smmu.translate(&read(A, IPA + 0x10))), HPA + 0x10);
}

/// What was refused, what the call returned, and the error it should have.
type Refusal<T> = (&'static str, Result<T, DriverError>, DriverError);

/// Refused calls change nothing: memory, frames, commands, the CD table report, and what the
/// device sees.
#[test]
fn refused_nested_attaches_write_and_allocate_nothing() {
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
    let guest = Guest::build(&mem);
    let s2 = parent(&mut drv);
    let other_s2 = drv.alloc_domain(S2).unwrap();
    let s1 = drv.alloc_domain(DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 39 }).unwrap();
    const ON_OTHER: u32 = 0x20;
    const GUEST_TABLE: u32 = 0x21;
    const ON_S1: u32 = 0x22;
    drv.attach(ON_OTHER, Attach::Domain(other_s2)).unwrap();
    drv.attach(ON_S1, Attach::Domain(s1)).unwrap();
    let table = GuestCdTable {
        s1_context_ptr_ipa: IPA + 0x10_0000,
        s1cdmax: 4,
        s1fmt: S1Fmt::Linear,
        s1dss: S1Dss::Terminate,
    };
    drv.attach(GUEST_TABLE, Attach::Domain(s2)).unwrap();
    drv.bind_pasid_table(GUEST_TABLE, s2, table).unwrap();
    drv.attach_nested_pasid(A, 5, s2, nested_cd(&guest.a, 3)).unwrap();
    let (window, _) = drv.reserved_ipa_window(s2).unwrap();

    let before =
        (snapshot(&mem), drv.free_frame_bytes(), drv.stats(), drv.cd_tables(), drv.blocks());
    let cd = nested_cd(&guest.b, 4);
    let refusals: Vec<Refusal<Vec<u32>>> = vec![
        (
            "sid",
            drv.attach_nested_pasid(1 << 16, 5, s2, cd),
            DriverError::SidOutOfRange { sid: 1 << 16, sidsize: 16 },
        ),
        (
            "ssid 0",
            drv.attach_nested_pasid(A, 0, s2, cd),
            DriverError::SsidOutOfRange { ssid: 0, ssid_bits: 20 },
        ),
        (
            "ssid beyond",
            drv.attach_nested_pasid(A, 1 << 20, s2, cd),
            DriverError::SsidOutOfRange { ssid: 1 << 20, ssid_bits: 20 },
        ),
        (
            "no domain",
            drv.attach_nested_pasid(A, 6, DomainId(99), cd),
            DriverError::NoSuchDomain(DomainId(99)),
        ),
        (
            "stage-1 parent",
            drv.attach_nested_pasid(ON_S1, 6, s1, cd),
            DriverError::WrongStage { domain: s1, expected: "stage-2" },
        ),
        (
            "not attached",
            drv.attach_nested_pasid(0x30, 6, s2, cd),
            DriverError::WrongStreamConfig {
                sid: 0x30,
                reason: "it is not attached to the nesting parent",
            },
        ),
        (
            "another parent",
            drv.attach_nested_pasid(ON_OTHER, 6, s2, cd),
            DriverError::WrongStreamConfig {
                sid: ON_OTHER,
                reason: "it is attached to another stage-2 domain",
            },
        ),
        (
            "nested over another parent",
            drv.attach_nested_pasid(A, 6, other_s2, cd),
            DriverError::WrongStreamConfig {
                sid: A,
                reason: "it is attached to another stage-2 domain",
            },
        ),
        (
            "whole guest table bound",
            drv.attach_nested_pasid(GUEST_TABLE, 6, s2, cd),
            DriverError::WrongStreamConfig {
                sid: GUEST_TABLE,
                reason: "a guest CD table is bound to it",
            },
        ),
        (
            "pasid in use",
            drv.attach_nested_pasid(A, 5, s2, cd),
            DriverError::PasidInUse { sid: A, ssid: 5 },
        ),
        (
            "granule",
            drv.attach_nested_pasid(A, 6, s2, NestedCd { granule: Granule::Size16K, ..cd }),
            DriverError::Granule(Granule::Size16K),
        ),
        (
            "t0sz",
            drv.attach_nested_pasid(A, 6, s2, NestedCd { t0sz: 8, ..cd }),
            DriverError::InputSize { bits: 56 },
        ),
        (
            "ttb0 misaligned",
            drv.attach_nested_pasid(A, 6, s2, NestedCd { ttb0_ipa: IPA + 8, ..cd }),
            DriverError::OutOfRange("TTB0"),
        ),
        (
            "ttb0 beyond the parent",
            drv.attach_nested_pasid(A, 6, s2, NestedCd { ttb0_ipa: 1 << 41, ..cd }),
            DriverError::OutOfRange("TTB0 (beyond the parent's IPA space)"),
        ),
        (
            "ttb0 in the window",
            drv.attach_nested_pasid(A, 6, s2, NestedCd { ttb0_ipa: window, ..cd }),
            DriverError::OutOfRange("TTB0 (in the reserved IPA window)"),
        ),
        (
            "ips",
            drv.attach_nested_pasid(A, 6, s2, NestedCd { ips_bits: 39, ..cd }),
            DriverError::OutOfRange("IPS"),
        ),
        (
            "guest asid with other tables",
            drv.attach_nested_pasid(A, 6, s2, NestedCd { asid: 3, ..cd }),
            DriverError::AsidInUse(3),
        ),
        (
            "detach not attached",
            drv.detach_nested_pasid(A, 6),
            DriverError::PasidNotBound { sid: A, ssid: 6 },
        ),
        (
            "detach on a stage-2 stream",
            drv.detach_nested_pasid(ON_OTHER, 5),
            DriverError::PasidNotBound { sid: ON_OTHER, ssid: 5 },
        ),
        (
            "host pasid on a nested stream",
            drv.attach_pasid(A, 6, PasidAttach::Domain(s1)),
            DriverError::WrongStreamConfig { sid: A, reason: "its stage 1 is not the host's" },
        ),
        (
            "host detach on a nested stream",
            drv.detach_pasid(A, 5),
            DriverError::WrongStreamConfig {
                sid: A,
                reason: "its PASIDs are nested (detach_nested_pasid)",
            },
        ),
    ];
    let nested_stream =
        DriverError::WrongStreamConfig { sid: A, reason: "nested PASIDs are attached" };
    let unit: Vec<Refusal<()>> = vec![
        ("reattach", drv.attach(A, Attach::Bypass), nested_stream.clone()),
        ("bind a guest table", drv.bind_pasid_table(A, s2, table), nested_stream),
        (
            "free the parent",
            drv.free_domain(s2),
            DriverError::DomainInUse { domain: s2, sids: vec![A, GUEST_TABLE] },
        ),
    ];
    for (what, r, want) in refusals.into_iter().map(|(w, r, e)| (w, r.map(drop), e)).chain(unit) {
        assert_eq!(r, Err(want), "{what}");
    }
    let after =
        (snapshot(&mem), drv.free_frame_bytes(), drv.stats(), drv.cd_tables(), drv.blocks());
    assert!(before.0 == after.0, "a refused call wrote memory");
    assert_eq!((before.1, before.2, before.3, before.4), (after.1, after.2, after.3, after.4));
    assert_eq!(output(smmu.translate(&read(A, 0x1234).with_ssid(5))), HPA + DATA_A + 0x234);
}

/// A unit or configuration that cannot nest PASIDs reserves nothing and refuses the attach.
#[test]
fn no_substreams_no_nested_pasids() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    let mut drv = driver(&smmu, &mem, DriverConfig { ssid_bits: 0, ..Default::default() });
    let guest = Guest::build(&mem);
    let s2 = parent(&mut drv);
    assert_eq!(drv.reserved_ipa_window(s2), None);
    let snap = snapshot(&mem);
    assert_eq!(
        drv.attach_nested_pasid(A, 1, s2, nested_cd(&guest.a, 3)),
        Err(DriverError::Unsupported("substreams"))
    );
    assert!(snap == snapshot(&mem));
    // Without a window the whole IPA space is the caller's.
    drv.map(s2, (1 << 40) - 0x1000, HPA, 0x1000, Prot::RO).unwrap();
}

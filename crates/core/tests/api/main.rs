//! One API suite, run per driver: VT-d, and SMMUv3 with each CD table policy. Expectations
//! differ only where the architecture does, and say so. Every check of reach goes through the
//! hardware model's `translate`, never through the core's own bookkeeping.

mod props;
mod rig;

use std::collections::BTreeMap;

use rig::{seed, Arch, Rig, GUEST, UNIT};
use sviommu_core::audit::{ReachReason, Sentinel, SpaceKey};
use sviommu_core::driver::{CacheKind, DmaFault, PageResponseCode, PasidTableFormat};
use sviommu_core::{
    CoreError, DomainKind, FlushPolicy, Granularity, InvalidateInfo, Model, Pasid,
    PasidTableConfig, Stage1Config, Stage1Format, Target,
};
use sviommu_smmuv3::driver::CdTablePolicy;

const STRICT: DomainKind = DomainKind::Paging { nesting_parent: false, flush: FlushPolicy::Strict };
const PARENT: DomainKind = DomainKind::Paging { nesting_parent: true, flush: FlushPolicy::Strict };

fn dev(t: &Target) -> &sviommu_core::topology::DeviceId {
    match t {
        Target::Device(d) => d,
        _ => unreachable!(),
    }
}

/// Map, translate, unmap: strict domains invalidate before `unmap` returns.
fn map_translate_unmap_strict(arch: Arch) {
    let (t, [a, b, c, _]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let d = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    let reached = r.iommu.attach(d, &Target::Device(a.clone())).unwrap();
    // Attaching A attached its group: B is reached too, and said to be.
    assert_eq!(reached.devices, [a.clone(), b.clone()]);
    r.iommu.map(d, 0x10_0000, 0x3000_0000, 0x4000, true).unwrap();
    assert_eq!(r.dma(&a, None, 0x10_2345, true), Ok(0x3000_2345));
    assert_eq!(r.dma(&b, None, 0x10_0010, false), Ok(0x3000_0010));
    let unattached = r.dma(&c, None, 0x10_0010, false).unwrap_err();
    match (arch, unattached) {
        // A context entry that is not present is an architected fault; an SMMU's unattached
        // StreamID has a Config-abort STE, which records nothing and has no code.
        (Arch::Vtd, DmaFault::Fault(f)) => assert!(f.code > 0, "{f:?}"),
        (Arch::Smmu(_), DmaFault::Terminated { by }) => assert_eq!(by, "STE.Config abort"),
        (_, other) => panic!("C is attached to nothing: {other:?}"),
    }
    assert_eq!(r.iommu.unmap(d, 0x10_0000, 0x4000).unwrap(), 0x4000);
    assert!(r.dma(&a, None, 0x10_2345, false).is_err(), "strict: gone at once");
}

/// Identity lets requests through untranslated; blocked stops them; detach is blocked.
fn identity_and_blocked_domains(arch: Arch) {
    let (t, [a, b, c, _]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let identity = r.iommu.alloc_domain(UNIT, DomainKind::Identity).unwrap();
    let blocked = r.iommu.alloc_domain(UNIT, DomainKind::Blocked).unwrap();
    let reached = r.iommu.attach(identity, &Target::Device(a.clone())).unwrap();
    assert_eq!(reached.devices, [a.clone(), b.clone()]);
    assert_eq!(r.dma(&a, None, 0x1234_5678, true), Ok(0x1234_5678));
    assert_eq!(r.dma(&b, None, 0x1234_5678, false), Ok(0x1234_5678));
    r.iommu.attach(blocked, &Target::Device(b.clone())).unwrap();
    assert!(r.dma(&a, None, 0x1234_5678, false).is_err(), "B's group is A's");
    assert!(r.iommu.map(blocked, 0x10_0000, 0x3000_0000, 0x1000, true).is_err());
    r.iommu.attach(identity, &Target::Device(c.clone())).unwrap();
    assert_eq!(r.dma(&c, None, 0x42_0000, false), Ok(0x42_0000));
    r.iommu.detach(&Target::Device(c.clone())).unwrap();
    assert!(r.dma(&c, None, 0x42_0000, false).is_err());
    assert_eq!(r.iommu.free_domain(blocked), Err(CoreError::DomainInUse(blocked)));
}

/// A flush-queue domain keeps unmapped IOVAs in the IOTLB until the batch is flushed: the
/// window Linux's lazy mode accepts, made visible.
fn flush_queue_leaves_a_visible_window(arch: Arch) {
    let (t, [a, ..]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let lazy =
        DomainKind::Paging { nesting_parent: false, flush: FlushPolicy::FlushQueue { batch: 3 } };
    let d = r.iommu.alloc_domain(UNIT, lazy).unwrap();
    r.iommu.attach(d, &Target::Device(a.clone())).unwrap();
    for i in 0..3u64 {
        r.iommu.map(d, 0x10_0000 + i * 0x1000, 0x3000_0000 + i * 0x1000, 0x1000, false).unwrap();
        // Warm the IOTLB.
        assert!(r.dma(&a, None, 0x10_0000 + i * 0x1000, false).is_ok());
    }
    r.iommu.unmap(d, 0x10_0000, 0x1000).unwrap();
    assert_eq!(r.iommu.domain(d).unwrap().pending_flush().len(), 1);
    assert_eq!(r.dma(&a, None, 0x10_0000, false), Ok(0x3000_0000), "stale until the flush");
    r.stale_reported();
    r.iommu.unmap(d, 0x10_1000, 0x1000).unwrap();
    r.iommu.unmap(d, 0x10_2000, 0x1000).unwrap();
    // The third range filled the batch: everything was flushed.
    assert!(r.iommu.domain(d).unwrap().pending_flush().is_empty());
    for i in 0..3u64 {
        assert!(r.dma(&a, None, 0x10_0000 + i * 0x1000, false).is_err());
    }
}

/// Reserved regions are reported and enforced; usable ranges leave them out.
fn reserved_regions_are_enforced(arch: Arch) {
    let (t, [a, ..]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let d = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.attach(d, &Target::Device(a.clone())).unwrap();
    let regions = r.iommu.reserved_regions(&a).unwrap();
    let (window, _) = regions.first().cloned().unwrap();
    match arch {
        Arch::Vtd => assert_eq!(window, 0xfee0_0000..0xfef0_0000),
        Arch::Smmu(_) => assert_eq!(window, 0x0800_0000..0x0810_0000),
    }
    let before = r.table_bytes();
    let err = r.iommu.map(d, window.start, 0x3000_0000, 0x1000, true).unwrap_err();
    assert!(matches!(err, CoreError::Reserved { .. }), "{err}");
    assert_eq!(r.table_bytes(), before, "a refused map writes nothing");
    let ranges = r.iommu.iova_ranges(d).unwrap();
    assert!(ranges.iter().all(|x| x.end <= window.start || x.start >= window.end));
    assert_eq!(ranges.first().map(|x| x.start), Some(0));
}

/// The seed's model check: a configuration for the other architecture is refused, typed, and
/// changes nothing; VT-d refuses a whole guest PASID table and names the per-PASID path.
fn model_check_refuses_the_other_architecture(arch: Arch) {
    let (t, [a, ..]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let parent = r.iommu.alloc_domain(UNIT, PARENT).unwrap();
    r.iommu.attach(parent, &Target::Device(a.clone())).unwrap();
    let (mine, theirs) = match arch {
        Arch::Vtd => (Model::Vtd, Model::Smmuv3),
        Arch::Smmu(_) => (Model::Smmuv3, Model::Vtd),
    };
    let foreign_s1 = Stage1Config {
        format: match arch {
            Arch::Vtd => Stage1Format::Vmsa { granule_lg2: 12, ias_bits: 48 },
            Arch::Smmu(_) => Stage1Format::X86 { levels: 4 },
        },
        root: 0x1000,
        asid: 1,
    };
    let before = r.table_bytes();
    let e = r.iommu.alloc_domain(UNIT, DomainKind::Nested { parent, s1: foreign_s1 }).unwrap_err();
    assert_eq!(e, CoreError::ModelMismatch { unit: UNIT, unit_model: mine, config: theirs });
    let foreign_table = PasidTableConfig {
        model: theirs,
        base: 0x2000,
        pasid_bits: 4,
        format: match arch {
            Arch::Vtd => PasidTableFormat::SmmuLinear,
            Arch::Smmu(_) => PasidTableFormat::VtdScalable,
        },
    };
    let e =
        r.iommu.bind_pasid_table(&Target::Device(a.clone()), parent, foreign_table).unwrap_err();
    assert_eq!(e, CoreError::ModelMismatch { unit: UNIT, unit_model: mine, config: theirs });
    if arch == Arch::Vtd {
        let own = PasidTableConfig {
            model: Model::Vtd,
            base: 0x2000,
            pasid_bits: 4,
            format: PasidTableFormat::VtdScalable,
        };
        let e = r.iommu.bind_pasid_table(&Target::Device(a.clone()), parent, own).unwrap_err();
        assert_eq!(e, CoreError::PasidTableInHostMemory { unit: UNIT });
        assert!(e.to_string().contains("attach a nested domain to (device, PASID)"));
    }
    let space = rig_process_of_other_arch(&r);
    let e = r.iommu.sva_bind(&Target::Device(a.clone()), &space).unwrap_err();
    assert!(matches!(e, CoreError::ModelMismatch { .. }), "{e}");
    assert_eq!(r.table_bytes(), before);
    assert!(r.iommu.pasid_tables().is_empty());
}

fn rig_process_of_other_arch(r: &Rig) -> sviommu_core::AddressSpace {
    let format = match r.arch {
        Arch::Vtd => Stage1Format::Vmsa { granule_lg2: 12, ias_bits: 48 },
        Arch::Smmu(_) => Stage1Format::X86 { levels: 4 },
    };
    sviommu_core::AddressSpace {
        id: sviommu_core::AddressSpaceId(99),
        s1: Stage1Config { format, root: rig::CPU, asid: 9 },
    }
}

/// SVA: one PASID per address space, the same one when bound again; unbind blocks it, and the
/// last unbind frees the PASID for reuse.
fn sva_bind_and_unbind(arch: Arch) {
    let (t, [a, _, c, d]) = seed(arch);
    let mut r = Rig::new(arch, t);
    // SMMUv3 with per-domain CD tables binds PASIDs into a stage-1 domain's table.
    for x in [&a, &c, &d] {
        let dom = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
        r.iommu.attach(dom, &Target::Device(x.clone())).unwrap();
    }
    let task = r.process(1, &[(0x7f00_0000, 0x3100_0000)]);
    let p = r.iommu.sva_bind(&Target::Device(a.clone()), &task).unwrap();
    assert_eq!(p, Pasid(1));
    assert_eq!(r.iommu.sva_bind(&Target::Device(a.clone()), &task).unwrap(), p);
    assert_eq!(r.dma(&a, Some(p.0), 0x7f00_0010, true), Ok(0x3100_0010));
    // Bound to D too: the same PASID, D's own table.
    assert_eq!(r.iommu.sva_bind(&Target::Device(d.clone()), &task).unwrap(), p);
    assert_eq!(r.dma(&d, Some(p.0), 0x7f00_0010, false), Ok(0x3100_0010));
    // A second process gets the next PASID.
    let other = r.process(2, &[(0x7f00_0000, 0x3200_0000)]);
    assert_eq!(r.iommu.sva_bind(&Target::Device(c.clone()), &other).unwrap(), Pasid(2));
    assert_eq!(r.dma(&c, Some(2), 0x7f00_0010, false), Ok(0x3200_0010));

    // Two binds to A: the first unbind keeps it.
    r.iommu.sva_unbind(&a, task.id).unwrap();
    assert_eq!(r.dma(&a, Some(p.0), 0x7f00_0010, false), Ok(0x3100_0010));
    r.iommu.sva_unbind(&a, task.id).unwrap();
    assert!(r.dma(&a, Some(p.0), 0x7f00_0010, false).is_err());
    assert_eq!(r.iommu.sva_pasid(task.id), Some(p), "D still holds it");
    r.iommu.sva_unbind(&d, task.id).unwrap();
    assert_eq!(r.iommu.sva_pasid(task.id), None);
    assert!(matches!(r.iommu.sva_unbind(&d, task.id), Err(CoreError::NotBound { .. })));
    // The PASID is free again.
    let third = r.process(3, &[(0x7f00_0000, 0x3300_0000)]);
    assert_eq!(r.iommu.sva_bind(&Target::Device(a.clone()), &third).unwrap(), p);
}

/// A device that may not use PASIDs is refused, typed, and nothing changes.
fn sva_refuses_devices_without_pasid(arch: Arch) {
    let mut b = rig::builder(arch);
    let e = match arch {
        Arch::Vtd => {
            b.endpoint("00:05.0");
            sviommu_core::topology::DeviceId::pci("00:05.0").unwrap()
        }
        Arch::Smmu(_) => {
            b.platform("E").stream_id(0x20);
            sviommu_core::topology::DeviceId::platform("E")
        }
    };
    let mut r = Rig::new(arch, b.build().unwrap());
    let dom = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.attach(dom, &Target::Device(e.clone())).unwrap();
    let task = r.process(1, &[(0x7f00_0000, 0x3100_0000)]);
    let before = r.table_bytes();
    let err = r.iommu.sva_bind(&Target::Device(e.clone()), &task).unwrap_err();
    assert!(matches!(err, CoreError::PasidRefused(_)), "{err}");
    assert_eq!(r.table_bytes(), before);
    assert_eq!(r.iommu.sva_pasid(task.id), None, "no PASID was kept");
}

/// An unrecoverable fault reaches the device's handler with its architected reason; a page
/// response for a group nobody waits on is an error.
fn faults_reach_the_handler(arch: Arch) {
    let (t, [a, ..]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let d = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.attach(d, &Target::Device(a.clone())).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    r.iommu.set_fault_handler(&a, Box::new(move |e| sink.lock().unwrap().push(e.clone()))).unwrap();
    let DmaFault::Fault(reason) = r.dma(&a, None, 0x50_0000, true).unwrap_err() else {
        panic!("an architected fault")
    };
    let events = r.iommu.process_faults();
    assert_eq!(events.len(), 1, "{events:?}");
    let got = seen.lock().unwrap().clone();
    match &got[..] {
        [sviommu_core::FaultEvent::Unrecoverable {
            device, addr, reason: rr, pasid: None, ..
        }] => {
            assert_eq!(device, &a);
            assert_eq!(*addr & !0xfff, 0x50_0000);
            assert_eq!(*rr, reason, "the handler sees what translate returned");
        }
        other => panic!("{other:?}"),
    }
    match arch {
        // Second-stage entry not present (scalable mode, §7.1.3 Table 30: 0x5A? the model's).
        Arch::Vtd => assert!(reason.name.contains("not present") || reason.code > 0, "{reason:?}"),
        Arch::Smmu(_) => assert_eq!(reason.name, "F_TRANSLATION"),
    }
    let e = r.iommu.page_response(&a, None, 7, PageResponseCode::Success).unwrap_err();
    assert!(matches!(e, CoreError::UnknownPageGroup { group: 7, .. }), "{e}");
}

/// Nothing is lost silently: faults the unit could not record (a full fault log or event
/// queue) are counted by the driver and reported by the core.
fn fault_overflow_is_counted(arch: Arch) {
    let (t, [a, ..]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let d = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.attach(d, &Target::Device(a.clone())).unwrap();
    // More faults than VT-d's 8 fault recording registers or the SMMU's 128-entry event queue.
    for i in 0..300u64 {
        assert!(r.dma(&a, None, 0x100_0000 + (i << 12), false).is_err());
    }
    let delivered = r.iommu.process_faults().len() as u64;
    let counted = r.iommu.fault_counters().unrecoverable;
    assert_eq!(delivered, counted);
    assert!(counted > 0 && counted < 300, "{counted} of 300 recorded");
    let units = r.iommu.unit_counters();
    assert!(units[&UNIT].faults_overflowed >= 1, "{units:?}");
    // After the drain the unit records again.
    assert!(r.dma(&a, None, 0x900_0000, false).is_err());
    assert_eq!(r.iommu.process_faults().len(), 1);
}

/// Guest invalidations: a guest changes its stage 1; the stale translation stays until the
/// guest's invalidation is passed down. Bad combinations are refused before any driver call.
fn invalidate_passes_guest_invalidations_down(arch: Arch) {
    let (t, [a, ..]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let parent = r.iommu.alloc_domain(UNIT, PARENT).unwrap();
    r.iommu.attach(parent, &Target::Device(a.clone())).unwrap();
    r.map_guest_ram(parent);
    let d = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    let target = Target::Domain(d);
    let bad = InvalidateInfo {
        cache: CacheKind::Pasid,
        granularity: Granularity::Addr { range: 0..0x1000, leaf: true },
        pasid: Some(Pasid(1)),
        arch_id: None,
    };
    assert!(matches!(r.iommu.invalidate(&target, &bad), Err(CoreError::BadInvalidation(_))));
    let bad = InvalidateInfo {
        cache: CacheKind::Iotlb,
        granularity: Granularity::Domain,
        pasid: Some(Pasid(1)),
        arch_id: None,
    };
    assert!(matches!(r.iommu.invalidate(&target, &bad), Err(CoreError::BadInvalidation(_))));
    // A domain with nothing attached: the invalidation reaches no device, and that is fine.
    let ok = InvalidateInfo {
        cache: CacheKind::Iotlb,
        granularity: Granularity::Domain,
        pasid: None,
        arch_id: None,
    };
    assert!(r.iommu.invalidate(&target, &ok).unwrap().devices.is_empty());
    let _ = dev(&Target::Device(a));
}

/// The seed's picture, audited: B reaches Task 1 through its group on both architectures; C
/// through the shared CD table on SMMUv3 with per-domain tables only; D never. The dynamic
/// audit (DMA through the model) agrees.
fn seed_audit(arch: Arch) {
    let (t, [a, b, c, d]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let shared = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.attach(shared, &Target::Device(a.clone())).unwrap();
    r.iommu.attach(shared, &Target::Device(c.clone())).unwrap();
    r.iommu.map(shared, 0x10_0000, 0x3000_0000, 0x1000, true).unwrap();
    let other = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.attach(other, &Target::Device(d.clone())).unwrap();
    r.iommu.map(other, 0x10_0000, 0x3010_0000, 0x1000, true).unwrap();
    let task = r.process(1, &[(0x7f00_0000, 0x3100_0000)]);
    let p = r.iommu.sva_bind(&Target::Device(a.clone()), &task).unwrap();

    let mut sentinels = BTreeMap::new();
    sentinels.insert(
        SpaceKey::Sva(task.id),
        Sentinel { pasid: None, input: 0x7f00_0000, hpa: 0x3100_0000 },
    );
    let report = r.iommu.audit(&sentinels);
    assert!(report.agrees(), "{report:#?}");
    let sva = report.space("sva 1").unwrap();
    let reach: Vec<(String, ReachReason)> =
        sva.reachable_by.iter().map(|e| (e.device.to_string(), e.reason)).collect();
    let mut want =
        vec![(a.to_string(), ReachReason::Explicit), (b.to_string(), ReachReason::SameGroup)];
    if arch == Arch::Smmu(CdTablePolicy::PerDomain) {
        want.push((c.to_string(), ReachReason::SharedDomainTable));
    }
    assert_eq!(reach, want);
    assert!(sva.reachable_by.iter().all(|e| e.pasid == Some(p)));
    // What the CLI prints.
    let json = serde_json::to_value(&report).unwrap();
    let unit = &json["audits"][0];
    assert_eq!(unit["iommu"], if arch == Arch::Vtd { "vtd" } else { "smmuv3" });
    assert_eq!(unit["agrees_with_dma"], true);
    let spaces = unit["address_spaces"].as_array().unwrap();
    assert!(spaces
        .iter()
        .any(|s| s["kind"] == "sva" && s["reachable_by"][0]["reason"] == "explicit"));
    assert!(spaces.iter().any(|s| s["kind"] == "domain"));

    // Tamper: copy A's PASID-p entry into D's table behind the core's back. D now reaches
    // Task 1 by DMA, which the static audit cannot know: the two disagree.
    tamper_copy_pasid_entry(&r, &a, &d, p);
    let report = r.iommu.audit(&sentinels);
    assert!(!report.agrees(), "{report:#?}");
    let sva = report.space("sva 1").unwrap();
    let by_dma = sva.reached_by_dma.as_ref().unwrap();
    assert!(by_dma.contains(&(d.clone(), Some(p))), "{by_dma:?}");
}

/// The seed's argument about targets, settled by DMA: `sva_bind` and `invalidate` name a device,
/// its group or its domain, and each reaches exactly the devices the audit names. A device
/// reaches its whole group (B through A's alias); on SMMUv3 with per-domain CD tables a bind
/// also reaches the other devices of the domain (C, through the shared CD table).
fn each_target_reaches_what_the_audit_names(arch: Arch) {
    let (t, [a, b, c, d]) = seed(arch);
    let group_of_a = t.group_of(&a).unwrap().id;
    let process_page = (0x7f00_0000, 0x3100_0000);
    for which in ["device", "group", "domain"] {
        let mut r = Rig::new(arch, t.clone());
        let shared = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
        r.iommu.attach(shared, &Target::Device(a.clone())).unwrap();
        r.iommu.attach(shared, &Target::Device(c.clone())).unwrap();
        let apart = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
        r.iommu.attach(apart, &Target::Device(d.clone())).unwrap();
        let task = r.process(1, &[process_page]);
        let target = match which {
            "device" => Target::Device(a.clone()),
            "group" => Target::Group(group_of_a),
            _ => Target::Domain(shared),
        };
        let p = r.iommu.sva_bind(&target, &task).unwrap();

        let mut want = vec![a.clone(), b.clone()];
        if which == "domain" || arch == Arch::Smmu(CdTablePolicy::PerDomain) {
            want.push(c.clone());
        }
        let by_dma: Vec<_> = [&a, &b, &c, &d]
            .into_iter()
            .filter(|x| {
                r.dma(x, Some(p.0), process_page.0 + 0x10, false) == Ok(process_page.1 + 0x10)
            })
            .cloned()
            .collect();
        assert_eq!(by_dma, want, "sva_bind to the {which}");

        let mut sentinels = BTreeMap::new();
        sentinels.insert(
            SpaceKey::Sva(task.id),
            Sentinel { pasid: None, input: process_page.0, hpa: process_page.1 },
        );
        let report = r.iommu.audit(&sentinels);
        assert!(report.agrees(), "{report:#?}");
        let audited: Vec<_> =
            report.space("sva 1").unwrap().reachable_by.iter().map(|e| e.device.clone()).collect();
        assert_eq!(audited, want, "the audit of a bind to the {which}");

        // An invalidation of the process's PASID through the same target reaches the devices
        // of the groups it names (and a domain's), never D.
        let info = InvalidateInfo {
            cache: CacheKind::Iotlb,
            granularity: Granularity::Pasid,
            pasid: Some(p),
            arch_id: None,
        };
        let reached = r.iommu.invalidate(&target, &info).unwrap();
        let mut named = vec![a.clone(), b.clone()];
        if which == "domain" {
            named.push(c.clone());
        }
        for dev in &named {
            assert!(reached.devices.contains(dev), "invalidate via the {which} missed {dev}");
        }
        assert!(!reached.devices.contains(&d), "invalidate via the {which} reached D");
    }
}

/// The seed's `bind_pasid_table` with each target the thread argues about: A (whose group
/// holds B), A's group, and the nesting parent A and C are attached to. On SMMUv3 each call
/// reaches exactly the devices the audit names (a device or its group: A and B; the domain: C
/// too), checked by a PASID-tagged DMA from every device; D, on a domain of its own, never.
/// On VT-d every target is refused (the PASID table is the host's) and no device reaches the
/// guest's page.
fn bind_pasid_table_targets(arch: Arch) {
    let (t, [a, b, c, d]) = seed(arch);
    let group_of_a = t.group_of(&a).unwrap().id;
    let (gva, gpa) = (0x4000_0000u64, 0x31_0000u64);
    for which in ["device", "group", "domain"] {
        let mut r = Rig::new(arch, t.clone());
        let parent = r.iommu.alloc_domain(UNIT, PARENT).unwrap();
        r.iommu.attach(parent, &Target::Device(a.clone())).unwrap();
        r.iommu.attach(parent, &Target::Device(c.clone())).unwrap();
        r.map_guest_ram(parent);
        let apart = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
        r.iommu.attach(apart, &Target::Device(d.clone())).unwrap();
        let (s1, _table) = r.guest_stage1(&[(gva, gpa)]);
        let cd_table = 0x20_0000u64;
        let format = match arch {
            Arch::Vtd => PasidTableFormat::VtdScalable,
            Arch::Smmu(_) => {
                write_guest_cd(&r, cd_table, 3, &s1);
                PasidTableFormat::SmmuLinear
            }
        };
        let model = match arch {
            Arch::Vtd => Model::Vtd,
            Arch::Smmu(_) => Model::Smmuv3,
        };
        let config = PasidTableConfig { model, base: cd_table, pasid_bits: 4, format };
        let target = match which {
            "device" => Target::Device(a.clone()),
            "group" => Target::Group(group_of_a),
            _ => Target::Domain(parent),
        };
        let reaches = |r: &Rig| -> Vec<_> {
            [&a, &b, &c, &d]
                .into_iter()
                .filter(|x| r.dma(x, Some(3), gva + 0x40, true) == Ok(GUEST + gpa + 0x40))
                .cloned()
                .collect()
        };
        let bound = r.iommu.bind_pasid_table(&target, parent, config);
        if arch == Arch::Vtd {
            let e = bound.unwrap_err();
            assert!(matches!(e, CoreError::PasidTableInHostMemory { .. }), "{which}: {e}");
            assert!(reaches(&r).is_empty(), "a refused bind to the {which} reached a device");
            continue;
        }
        let reached = bound.unwrap();
        let mut want = vec![a.clone(), b.clone()];
        if which == "domain" {
            want.push(c.clone());
        }
        assert_eq!(reached.devices, want, "what bind_pasid_table to the {which} says it reached");
        assert_eq!(reaches(&r), want, "DMA after bind_pasid_table to the {which}");
        // C, when not bound, still runs on the parent without PASID (GPA -> HPA); bound,
        // its requests without PASID take CD 0, which the guest left invalid.
        let c_plain = r.dma(&c, None, gpa, false);
        match which {
            "domain" => assert!(c_plain.is_err(), "{c_plain:?}"),
            _ => assert_eq!(c_plain, Ok(GUEST + gpa)),
        }

        let mut sentinels = BTreeMap::new();
        for g in [group_of_a, t.group_of(&c).unwrap().id] {
            let probe = Sentinel { pasid: Some(Pasid(3)), input: gva, hpa: GUEST + gpa };
            sentinels.insert(SpaceKey::PasidTable(g), probe);
        }
        let report = r.iommu.audit(&sentinels);
        assert!(report.agrees(), "{which}: {report:#?}");
        let mut audited: Vec<_> = report
            .audits
            .iter()
            .flat_map(|u| &u.address_spaces)
            .filter(|s| s.id.starts_with("pasid_table"))
            .flat_map(|s| s.reachable_by.iter().map(|e| e.device.clone()))
            .collect();
        audited.sort();
        audited.dedup();
        assert_eq!(audited, want, "the audit of bind_pasid_table to the {which}");

        // Unbinding through the same target takes it back from exactly those devices.
        r.iommu.unbind_pasid_table(&target).unwrap();
        assert!(reaches(&r).is_empty(), "unbind via the {which} left a device on the table");
    }
}

/// Writes, with plain memory writes, `from`'s translation entry for `pasid` over `to`'s.
fn tamper_copy_pasid_entry(
    r: &Rig,
    from: &sviommu_core::topology::DeviceId,
    to: &sviommu_core::topology::DeviceId,
    pasid: Pasid,
) {
    use sviommu_memory::{Hpa, PhysMemory};
    let id = |x| r.iommu.request_ids(x).unwrap()[0];
    let (src, dst, len) = match r.arch {
        Arch::Vtd => {
            let drv = r.vtd().driver();
            let s = drv.pasid_entry_addr(id(from) as u16, Some(pasid.0)).unwrap().0;
            let d = drv.pasid_entry_addr(id(to) as u16, Some(pasid.0)).unwrap().0;
            (s, d, 64)
        }
        Arch::Smmu(_) => {
            let tables = r.smmu().driver().cd_tables();
            let of = |sid| tables.iter().find(|t| t.sids.contains(&sid)).unwrap().table;
            let off = 64 * u64::from(pasid.0);
            (of(id(from)) + off, of(id(to)) + off, 64)
        }
    };
    let mut buf = vec![0u8; len];
    r.mem.read(Hpa(src), &mut buf).unwrap();
    r.mem.write(Hpa(dst), &buf).unwrap();
}

/// A guest's stage 1 over the host's stage 2, per PASID on both architectures; then, on
/// SMMUv3, the guest's whole CD table (the seed's bind_pasid_table).
fn nesting(arch: Arch) {
    let (t, [a, b, ..]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let parent = r.iommu.alloc_domain(UNIT, PARENT).unwrap();
    r.iommu.attach(parent, &Target::Device(a.clone())).unwrap();
    r.map_guest_ram(parent);
    let (s1, table) = r.guest_stage1(&[(0x4000_0000, 0x30_0000)]);
    let nested = r.iommu.alloc_domain(UNIT, DomainKind::Nested { parent, s1 }).unwrap();
    let reached = r.iommu.attach_pasid(nested, &Target::Device(a.clone()), Pasid(5)).unwrap();
    assert_eq!(reached.devices, [a.clone(), b.clone()]);
    assert_eq!(r.dma(&a, Some(5), 0x4000_0123, true), Ok(GUEST + 0x30_0123));
    // Requests without PASID still go to the parent (GPA -> HPA).
    assert_eq!(r.dma(&a, None, 0x30_0123, false), Ok(GUEST + 0x30_0123));
    // The guest unmaps its page; stale until it invalidates that PASID.
    table.unmap(&r.guest_ram(), 0x4000_0000, 0x1000);
    assert_eq!(r.dma(&a, Some(5), 0x4000_0123, false), Ok(GUEST + 0x30_0123));
    r.stale_reported();
    let inv = InvalidateInfo {
        cache: CacheKind::Iotlb,
        granularity: Granularity::Addr { range: 0x4000_0000..0x4000_1000, leaf: true },
        pasid: Some(Pasid(5)),
        arch_id: None,
    };
    r.iommu.invalidate(&Target::Domain(nested), &inv).unwrap();
    assert!(r.dma(&a, Some(5), 0x4000_0123, false).is_err());
    // The parent's usable IOVA ranges leave out whatever the unit reserves for nesting (the
    // SMMU's host CD table window), and a map there is refused.
    for (window, _) in r.iommu.reserved_regions(&a).unwrap() {
        let e = r.iommu.map(parent, window.start, 0x3000_0000, 0x1000, true).unwrap_err();
        assert!(matches!(e, CoreError::Reserved { .. }), "{e}");
    }
    r.iommu.detach_pasid(&Target::Device(a.clone()), Pasid(5)).unwrap();
    assert!(r.dma(&a, Some(5), 0x4000_0123, false).is_err());
    r.iommu.free_domain(nested).unwrap();
    if arch == Arch::Vtd {
        return;
    }
    // The guest's whole CD table, in guest RAM: CD 3 points at a stage 1 of its own.
    let (s1, t2) = r.guest_stage1(&[(0x4000_0000, 0x31_0000), (0x4000_1000, 0x31_1000)]);
    let cd_table = 0x20_0000u64;
    write_guest_cd(&r, cd_table, 3, &s1);
    let config = PasidTableConfig {
        model: Model::Smmuv3,
        base: cd_table,
        pasid_bits: 4,
        format: PasidTableFormat::SmmuLinear,
    };
    let reached = r.iommu.bind_pasid_table(&Target::Device(a.clone()), parent, config).unwrap();
    assert_eq!(reached.devices, [a.clone(), b.clone()]);
    assert_eq!(r.dma(&a, Some(3), 0x4000_0123, true), Ok(GUEST + 0x31_0123));
    assert_eq!(r.dma(&b, Some(3), 0x4000_0123, true), Ok(GUEST + 0x31_0123));
    let mut sentinels = BTreeMap::new();
    let g = r.iommu.topology().group_of(&a).unwrap().id;
    let probe = Sentinel { pasid: Some(Pasid(3)), input: 0x4000_0000, hpa: GUEST + 0x31_0000 };
    sentinels.insert(SpaceKey::PasidTable(g), probe);
    let report = r.iommu.audit(&sentinels);
    assert!(report.agrees(), "{report:#?}");
    // The guest unmaps a page of its own table and invalidates by its own ASID (which only it
    // knows: the CD is in its table); the other page stays cached.
    assert_eq!(r.dma(&a, Some(3), 0x4000_1000, false), Ok(GUEST + 0x31_1000));
    t2.unmap(&r.guest_ram(), 0x4000_0000, 0x2000);
    assert_eq!(r.dma(&a, Some(3), 0x4000_0123, false), Ok(GUEST + 0x31_0123), "stale");
    r.stale_reported();
    let inv = InvalidateInfo {
        cache: CacheKind::Iotlb,
        granularity: Granularity::Addr { range: 0x4000_0000..0x4000_1000, leaf: true },
        pasid: Some(Pasid(3)),
        arch_id: Some(u32::from(s1.asid)),
    };
    r.iommu.invalidate(&Target::Device(a.clone()), &inv).unwrap();
    assert!(r.dma(&a, Some(3), 0x4000_0123, false).is_err());
    assert_eq!(r.dma(&a, Some(3), 0x4000_1000, false), Ok(GUEST + 0x31_1000), "not selected");
    r.stale_reported();
    r.iommu.unbind_pasid_table(&Target::Device(a.clone())).unwrap();
    assert!(r.dma(&a, Some(3), 0x4000_0123, false).is_err());
    assert_eq!(r.dma(&a, None, 0x30_0123, false), Ok(GUEST + 0x30_0123));
}

/// A CD for `s1` (VMSA, 4K granule, 48-bit) at index `ssid` of a linear CD table in guest RAM,
/// written through the spec's view as a guest kernel would.
fn write_guest_cd(r: &Rig, table: u64, ssid: u64, s1: &Stage1Config) {
    use sviommu_memory::{Gpa, PhysMemory};
    use sviommu_smmuv3::spec::Cd;
    let mut cd = Cd::default();
    cd.set_v(true);
    cd.set_t0sz(16);
    cd.set_tg0(sviommu_smmuv3::spec::Granule::Size4K);
    cd.set_ips(5);
    cd.set_aa64(true);
    cd.set_r(true);
    cd.set_a(true);
    cd.set_asid(s1.asid);
    cd.set_ttb0(s1.root);
    cd.set_epd1(true);
    let ram = r.guest_ram();
    for (i, w) in (0u64..).zip(cd.0) {
        ram.write_u64(Gpa(table + 64 * ssid + 8 * i), w).unwrap();
    }
}

/// Every refused call leaves every table byte, the unit's caches and the core's lists as they
/// were.
fn refusals_change_nothing(arch: Arch) {
    let (t, [a, b, c, d]) = seed(arch);
    let mut r = Rig::new(arch, t);
    let dom = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.attach(dom, &Target::Device(a.clone())).unwrap();
    r.iommu.attach(dom, &Target::Device(c.clone())).unwrap();
    r.iommu.map(dom, 0x10_0000, 0x3000_0000, 0x2000, true).unwrap();
    let parent = r.iommu.alloc_domain(UNIT, PARENT).unwrap();
    r.iommu.attach(parent, &Target::Device(d.clone())).unwrap();
    let task = r.process(1, &[(0x7f00_0000, 0x3100_0000)]);
    let p = r.iommu.sva_bind(&Target::Device(a.clone()), &task).unwrap();
    let sva = r.iommu.current_domain(r.iommu.topology().group_of(&a).unwrap().id, Some(p)).unwrap();
    assert!(r.dma(&a, None, 0x10_0000, false).is_ok());

    let snapshot = |r: &Rig| {
        let caches = match r.arch {
            Arch::Vtd => format!("{:?}", r.vtd().hw().cache_stats()),
            Arch::Smmu(_) => format!("{:?}", r.smmu().hw().stats()),
        };
        (r.table_bytes(), caches, format!("{:?}", r.iommu))
    };
    let before = snapshot(&r);
    let inv = |cache, granularity, pasid: Option<u32>| InvalidateInfo {
        cache,
        granularity,
        pasid: pasid.map(Pasid),
        arch_id: None,
    };
    let attempts: Vec<(&str, Result<(), CoreError>)> = vec![
        (
            "attach to no domain",
            r.iommu.attach(sviommu_core::DomainId(99), &Target::Device(b.clone())).map(drop),
        ),
        (
            "attach an SVA domain without PASID",
            r.iommu.attach(sva, &Target::Device(d.clone())).map(drop),
        ),
        ("map over a mapping", r.iommu.map(dom, 0x10_1000, 0x3000_0000, 0x1000, true)),
        ("map unaligned", r.iommu.map(dom, 0x20_0800, 0x3000_0000, 0x1000, true)),
        ("map zero bytes", r.iommu.map(dom, 0x20_0000, 0x3000_0000, 0, true)),
        ("map beyond the aperture", r.iommu.map(dom, 1 << 60, 0x3000_0000, 0x1000, true)),
        (
            "map a nested-parent-less SVA domain",
            r.iommu.map(sva, 0x20_0000, 0x3000_0000, 0x1000, true),
        ),
        ("unmap an SVA domain", r.iommu.unmap(sva, 0x20_0000, 0x1000).map(drop)),
        ("free a domain in use", r.iommu.free_domain(dom)),
        ("PASID 0", r.iommu.attach_pasid(dom, &Target::Device(a.clone()), Pasid(0)).map(drop)),
        (
            "a PASID wider than D sends",
            r.iommu.attach_pasid(dom, &Target::Device(d.clone()), Pasid(1 << 16)).map(drop),
        ),
        (
            "detach a PASID nothing uses",
            r.iommu.detach_pasid(&Target::Device(c.clone()), Pasid(9)).map(drop),
        ),
        ("unbind what is not bound", r.iommu.sva_unbind(&d, task.id)),
        (
            "a response nobody waits for",
            r.iommu.page_response(&a, Some(p), 3, PageResponseCode::Success),
        ),
        (
            "invalidate PASID cache by address",
            r.iommu
                .invalidate(
                    &Target::Device(a.clone()),
                    &inv(
                        CacheKind::Pasid,
                        Granularity::Addr { range: 0..0x1000, leaf: false },
                        Some(1),
                    ),
                )
                .map(drop),
        ),
        (
            "invalidate an unaligned range",
            r.iommu
                .invalidate(
                    &Target::Device(a.clone()),
                    &inv(
                        CacheKind::Iotlb,
                        Granularity::Addr { range: 0x800..0x1000, leaf: false },
                        None,
                    ),
                )
                .map(drop),
        ),
        (
            "bind a PASID table over a non-parent",
            r.iommu
                .bind_pasid_table(
                    &Target::Device(b.clone()),
                    dom,
                    PasidTableConfig {
                        model: Model::Smmuv3,
                        base: 0,
                        pasid_bits: 4,
                        format: PasidTableFormat::SmmuLinear,
                    },
                )
                .map(drop),
        ),
    ];
    for (what, result) in &attempts {
        assert!(result.is_err(), "{what} was accepted");
    }
    assert!(snapshot(&r) == before, "a refused call changed something");
}

/// Recoverable faults end to end (VT-d, whose default unit has ATS and PRI): the device's
/// translation request fails, it sends a page request, the group reaches the handler, the
/// page is mapped, the response reaches the device, and its retry translates.
#[test]
fn page_requests_round_trip_through_the_core() {
    use sviommu_vtd::hw::{Output, PageRequestMsg, TranslationCompletion, TranslationRequest};
    let (t, [a, ..]) = seed(Arch::Vtd);
    let mut r = Rig::new(Arch::Vtd, t);
    let (task, table) = r.process_with_table(1, &[]);
    let p = r.iommu.sva_bind(&Target::Device(a.clone()), &task).unwrap();
    let rid = r.iommu.request_ids(&a).unwrap()[0] as u16;
    let treq = TranslationRequest { pasid: Some(p.0), ..TranslationRequest::new(rid, 0x7f00_0000) };
    assert_eq!(r.vtd().hw().translation_request(&treq), TranslationCompletion::NoAccess);
    let msg = PageRequestMsg {
        rid,
        pasid: Some(p.0),
        addr: 0x7f00_0000,
        read: true,
        write: true,
        exec: false,
        privileged: false,
        prgi: 5,
        lpig: true,
        private_data: None,
    };
    r.vtd().hw().page_request(&msg);
    let events = r.iommu.process_faults();
    assert_eq!(
        events,
        [sviommu_core::FaultEvent::PageRequestGroup {
            device: a.clone(),
            pasid: Some(p),
            group: 5,
            pages: vec![sviommu_core::fault::PageRequest { addr: 0x7f00_0000, write: true }],
        }]
    );
    assert_eq!(r.iommu.unanswered_page_groups(), [(a.clone(), Some(p), 5)]);
    r.cpu_map(&table, 0x7f00_0000, 0x3400_0000);
    r.iommu.page_response(&a, Some(p), 5, PageResponseCode::Success).unwrap();
    assert!(r.iommu.unanswered_page_groups().is_empty());
    let delivered = r.vtd().hw().drain_outputs();
    assert!(
        delivered.iter().any(|o| matches!(o, Output::PageGroupResponse(g) if g.prgi() == 5)),
        "{delivered:?}"
    );
    match r.vtd().hw().translation_request(&treq) {
        TranslationCompletion::Translated(t) => assert_eq!(t.output & !0xfff, 0x3400_0000),
        other => panic!("{other:?}"),
    }
    // Answering twice is an error: nobody waits any more.
    let e = r.iommu.page_response(&a, Some(p), 5, PageResponseCode::Success).unwrap_err();
    assert!(matches!(e, CoreError::UnknownPageGroup { .. }));
}

/// Unbind drains: a page request group outstanding for the PASID is answered (Invalid) before
/// the PASID can be reused.
#[test]
fn sva_unbind_drains_outstanding_page_requests() {
    use sviommu_vtd::hw::{Output, PageRequestMsg};
    let (t, [a, ..]) = seed(Arch::Vtd);
    let mut r = Rig::new(Arch::Vtd, t);
    let task = r.process(1, &[]);
    let p = r.iommu.sva_bind(&Target::Device(a.clone()), &task).unwrap();
    let rid = r.iommu.request_ids(&a).unwrap()[0] as u16;
    let msg = PageRequestMsg {
        rid,
        pasid: Some(p.0),
        addr: 0x7f00_0000,
        read: true,
        write: false,
        exec: false,
        privileged: false,
        prgi: 9,
        lpig: true,
        private_data: None,
    };
    r.vtd().hw().page_request(&msg);
    r.iommu.sva_unbind(&a, task.id).unwrap();
    assert_eq!(r.iommu.fault_counters().drained, 1);
    assert!(r.iommu.unanswered_page_groups().is_empty());
    let delivered = r.vtd().hw().drain_outputs();
    assert!(delivered.iter().any(|o| matches!(o, Output::PageGroupResponse(g) if g.prgi() == 9)));
    assert_eq!(r.iommu.sva_pasid(task.id), None);
}

/// An RMRR (VT-d firmware DMA range) is reported, mapped one to one in every paging domain the
/// device is attached to before the switch, and closed to other mappings.
#[test]
fn rmrr_ranges_are_identity_mapped_and_reserved() {
    let mut b = rig::builder(Arch::Vtd);
    b.endpoint("00:02.0").rmrr(0xe000_0000, 0x2_0000);
    let dev = sviommu_core::topology::DeviceId::pci("00:02.0").unwrap();
    let mut r = Rig::new(Arch::Vtd, b.build().unwrap());
    let regions = r.iommu.reserved_regions(&dev).unwrap();
    assert!(regions
        .iter()
        .any(|(x, why)| *x == (0xe000_0000..0xe002_0000) && why.starts_with("RMRR")));
    let d = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.attach(d, &Target::Device(dev.clone())).unwrap();
    assert_eq!(r.dma(&dev, None, 0xe001_0040, true), Ok(0xe001_0040));
    let e = r.iommu.map(d, 0xe000_0000, 0x3000_0000, 0x1000, true).unwrap_err();
    assert!(matches!(e, CoreError::Reserved { .. }), "{e}");
    assert!(r
        .iommu
        .iova_ranges(d)
        .unwrap()
        .iter()
        .all(|x| x.end <= 0xe000_0000 || x.start >= 0xe002_0000));
    // A second domain gets the same identity map when the device moves to it.
    let d2 = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.map(d2, 0x10_0000, 0x3000_0000, 0x1000, true).unwrap();
    r.iommu.attach(d2, &Target::Device(dev.clone())).unwrap();
    assert_eq!(r.dma(&dev, None, 0xe000_0000, false), Ok(0xe000_0000));
    // A domain that maps something else there cannot take the device.
    let d3 = r.iommu.alloc_domain(UNIT, STRICT).unwrap();
    r.iommu.map(d3, 0xe000_0000, 0x3000_0000, 0x1000, true).unwrap();
    let e = r.iommu.attach(d3, &Target::Device(dev.clone())).unwrap_err();
    assert!(matches!(e, CoreError::ReservedMapped { .. }), "{e}");
    assert_eq!(r.dma(&dev, None, 0xe000_0000, false), Ok(0xe000_0000), "still on d2");
}

/// A guest's device-TLB invalidation reaches the device as an ATS invalidation (VT-d: A has
/// ATS), for every request ID of its group and the PASID named.
#[test]
fn device_tlb_invalidations_reach_the_devices() {
    use sviommu_vtd::hw::Output;
    let (t, [a, ..]) = seed(Arch::Vtd);
    let mut r = Rig::new(Arch::Vtd, t);
    let parent = r.iommu.alloc_domain(UNIT, PARENT).unwrap();
    r.iommu.attach(parent, &Target::Device(a.clone())).unwrap();
    r.map_guest_ram(parent);
    let (s1, _) = r.guest_stage1(&[(0x4000_0000, 0x30_0000)]);
    let nested = r.iommu.alloc_domain(UNIT, DomainKind::Nested { parent, s1 }).unwrap();
    r.iommu.attach_pasid(nested, &Target::Device(a.clone()), Pasid(5)).unwrap();
    r.vtd().hw().drain_outputs();
    let inv = InvalidateInfo {
        cache: CacheKind::DevIotlb,
        granularity: Granularity::Addr { range: 0x4000_0000..0x4000_2000, leaf: true },
        pasid: Some(Pasid(5)),
        arch_id: None,
    };
    let reached = r.iommu.invalidate(&Target::Device(a.clone()), &inv).unwrap();
    assert_eq!(reached.groups.len(), 1);
    let sent: Vec<_> = r
        .vtd()
        .hw()
        .drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::DevTlbInvalidation(d) => Some((d.sid, d.pasid, d.addr, d.size_lg2)),
            _ => None,
        })
        .collect();
    // Only A has a device-TLB (B, in its group, has no ATS): one invalidation, 8K at the
    // address, for A's Requester ID.
    assert_eq!(sent, [(0x0010, Some(5), 0x4000_0000, 13)]);
}

macro_rules! suite {
    ($name:ident, $arch:expr) => {
        mod $name {
            use super::*;
            const ARCH: Arch = $arch;
            #[test]
            fn map_translate_unmap_strict() {
                super::map_translate_unmap_strict(ARCH)
            }
            #[test]
            fn identity_and_blocked_domains() {
                super::identity_and_blocked_domains(ARCH)
            }
            #[test]
            fn flush_queue_leaves_a_visible_window() {
                super::flush_queue_leaves_a_visible_window(ARCH)
            }
            #[test]
            fn reserved_regions_are_enforced() {
                super::reserved_regions_are_enforced(ARCH)
            }
            #[test]
            fn model_check_refuses_the_other_architecture() {
                super::model_check_refuses_the_other_architecture(ARCH)
            }
            #[test]
            fn sva_bind_and_unbind() {
                super::sva_bind_and_unbind(ARCH)
            }
            #[test]
            fn sva_refuses_devices_without_pasid() {
                super::sva_refuses_devices_without_pasid(ARCH)
            }
            #[test]
            fn faults_reach_the_handler() {
                super::faults_reach_the_handler(ARCH)
            }
            #[test]
            fn invalidate_passes_guest_invalidations_down() {
                super::invalidate_passes_guest_invalidations_down(ARCH)
            }
            #[test]
            fn seed_audit() {
                super::seed_audit(ARCH)
            }
            #[test]
            fn each_target_reaches_what_the_audit_names() {
                super::each_target_reaches_what_the_audit_names(ARCH)
            }
            #[test]
            fn bind_pasid_table_targets() {
                super::bind_pasid_table_targets(ARCH)
            }
            #[test]
            fn nesting() {
                super::nesting(ARCH)
            }
            #[test]
            fn fault_overflow_is_counted() {
                super::fault_overflow_is_counted(ARCH)
            }
            #[test]
            fn refusals_change_nothing() {
                super::refusals_change_nothing(ARCH)
            }
        }
    };
}

suite!(vtd, Arch::Vtd);
suite!(smmu_per_domain, Arch::Smmu(CdTablePolicy::PerDomain));
suite!(smmu_per_device, Arch::Smmu(CdTablePolicy::PerDevice));

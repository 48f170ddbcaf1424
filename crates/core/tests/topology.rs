//! Topology and IOMMU groups: hand-built systems with the groups and reasons Linux's rules give,
//! `pasid_allowed` refusals, malformed descriptions, the JSON report, and property tests over
//! random topologies.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sviommu_core::topology::{
    Acs, AcsFlags, AcsLack, AcsShortfall, Bdf, BusOwner, DeviceId, Group, PasidRefused, PasidWidth,
    PciType, Reason, Role, Scope, Topology, TopologyBuilder, TopologyError, UnitId, UnitKind,
};

fn pci(s: &str) -> DeviceId {
    DeviceId::pci(s).unwrap()
}

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

fn plat(s: &str) -> DeviceId {
    DeviceId::platform(s)
}

/// One VT-d unit covering segment 0, whose root bus is 00.
fn vtd_system() -> TopologyBuilder {
    let mut b = Topology::builder();
    b.unit(UnitId(0), UnitKind::VtdDrhd).scope(Scope::Segment(0));
    b.root_bus(0, 0x00);
    b
}

/// One SMMUv3 covering StreamIDs 0..=0xff.
fn smmu_system() -> TopologyBuilder {
    let mut b = Topology::builder();
    b.unit(UnitId(1), UnitKind::SmmuV3).scope(Scope::StreamIds { first: 0, last: 0xff });
    b
}

fn group<'a>(t: &'a Topology, d: &DeviceId) -> &'a Group {
    t.group_of(d).unwrap_or_else(|| panic!("{d} has no group"))
}

fn members(t: &Topology, d: &str) -> Vec<String> {
    group(t, &pci(d)).members.iter().map(ToString::to_string).collect()
}

fn alone(t: &Topology, d: &DeviceId) -> bool {
    let g = group(t, d);
    g.members == [d.clone()] && g.reasons.is_empty()
}

fn lacks(device: &str, lack: AcsLack) -> AcsShortfall {
    AcsShortfall { device: pci(device), lack }
}

// ---------------------------------------------------------------- groups

#[test]
fn root_ports_with_acs_give_each_endpoint_its_own_group() {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    b.root_port("00:02.0", 0x02).acs(Acs::isolated());
    b.endpoint("01:00.0");
    b.endpoint("02:00.0");
    let t = b.build().unwrap();
    assert_eq!(t.groups().len(), 4);
    for d in ["00:01.0", "00:02.0", "01:00.0", "02:00.0"] {
        assert!(alone(&t, &pci(d)), "{d}: {:?}", group(&t, &pci(d)));
    }
    assert_eq!(t.device(&pci("01:00.0")).unwrap().pci().unwrap().pci_type, PciType::Endpoint);
}

#[test]
fn root_port_without_acs_shares_with_the_endpoint_below() {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01);
    b.endpoint("01:00.0");
    let t = b.build().unwrap();
    assert_eq!(members(&t, "01:00.0"), ["0000:00:01.0", "0000:01:00.0"]);
    assert_eq!(
        group(&t, &pci("01:00.0")).reasons,
        [Reason::AcsPath {
            port: pci("00:01.0"),
            lacking: lacks("00:01.0", AcsLack::NoCapability),
            devices: vec![pci("01:00.0")],
        }]
    );
}

#[test]
fn acs_implemented_but_not_enabled_names_the_missing_controls() {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::new(AcsFlags::ISOLATED, AcsFlags::SV | AcsFlags::CR));
    b.endpoint("01:00.0");
    let t = b.build().unwrap();
    let Reason::AcsPath { lacking, .. } = &group(&t, &pci("01:00.0")).reasons[0] else {
        panic!("{:?}", group(&t, &pci("01:00.0")))
    };
    assert_eq!(lacking.lack, AcsLack::NotEnabled(AcsFlags::RR | AcsFlags::UF));
}

#[test]
fn acs_controls_a_port_does_not_implement_count_as_hardwired() {
    // pci_acs_flags_enabled(): acs_flags &= (cap | EC). A root port implementing only SV and RR,
    // both enabled, provides REQ_ACS_FLAGS.
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::enabled(AcsFlags::SV | AcsFlags::RR));
    b.endpoint("01:00.0");
    let t = b.build().unwrap();
    assert!(alone(&t, &pci("01:00.0")));
}

/// RP(ACS) -> USP 01:00.0 -> DSPs 02:00.0 (-> 03:00.0) and 02:01.0 (-> 04:00.0).
fn switch(dsp_acs: [Option<Acs>; 2]) -> Topology {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    b.switch_upstream("01:00.0", 0x02);
    for (i, acs) in dsp_acs.into_iter().enumerate() {
        let dsp = b.switch_downstream(format!("02:0{i}.0"), 0x03 + i as u8);
        if let Some(acs) = acs {
            dsp.acs(acs);
        }
        b.endpoint(format!("0{}:00.0", 3 + i));
    }
    b.build().unwrap()
}

#[test]
fn switch_without_acs_puts_the_endpoints_below_it_in_one_group() {
    let t = switch([None, None]);
    let below = ["0000:02:00.0", "0000:02:01.0", "0000:03:00.0", "0000:04:00.0"];
    assert_eq!(members(&t, "03:00.0"), below);
    assert_eq!(members(&t, "04:00.0"), below);
    let reasons = &group(&t, &pci("03:00.0")).reasons;
    assert!(reasons.contains(&Reason::SwitchNotIsolated {
        upstream_port: pci("01:00.0"),
        lacking: vec![
            lacks("02:00.0", AcsLack::NoCapability),
            lacks("02:01.0", AcsLack::NoCapability)
        ],
        devices: below.iter().map(|d| pci(d)).collect(),
    }));
    assert!(reasons.contains(&Reason::AcsPath {
        port: pci("02:00.0"),
        lacking: lacks("02:00.0", AcsLack::NoCapability),
        devices: vec![pci("03:00.0")],
    }));
    // The upstream port and the root port stay isolated.
    assert!(alone(&t, &pci("01:00.0")));
    assert!(alone(&t, &pci("00:01.0")));
}

#[test]
fn one_permissive_downstream_port_spoils_the_whole_switch() {
    // ACS is egress control: 04:00.0's requests enter 02:01.0, which does not redirect them, and
    // can go down 02:00.0 to 03:00.0 although 02:00.0 has full ACS. (Mainline Linux gives
    // 03:00.0 its own group here; linux-next's pcie_switch_isolated() does not.)
    let t = switch([Some(Acs::isolated()), None]);
    assert_eq!(members(&t, "03:00.0"), members(&t, "04:00.0"));
    let g = group(&t, &pci("03:00.0"));
    assert!(g.reasons.iter().any(|r| matches!(r,
        Reason::SwitchNotIsolated { lacking, .. } if *lacking == [lacks("02:01.0", AcsLack::NoCapability)])));
    assert!(!g
        .reasons
        .iter()
        .any(|r| matches!(r, Reason::AcsPath { port, .. } if *port == pci("02:00.0"))));
}

#[test]
fn switch_with_acs_on_every_downstream_port_isolates() {
    let t = switch([Some(Acs::isolated()), Some(Acs::isolated())]);
    assert_eq!(t.groups().len(), 6);
    for g in t.groups() {
        assert_eq!(g.members.len(), 1, "{g:?}");
    }
}

#[test]
fn root_port_without_acs_above_a_switch_takes_everything_below() {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01);
    b.switch_upstream("01:00.0", 0x02);
    b.switch_downstream("02:00.0", 0x03).acs(Acs::isolated());
    b.switch_downstream("02:01.0", 0x04).acs(Acs::isolated());
    b.endpoint("03:00.0");
    b.endpoint("04:00.0");
    let t = b.build().unwrap();
    assert_eq!(t.groups().len(), 1);
    // Every hop names the root port as where isolation stops.
    for r in &t.groups()[0].reasons {
        let Reason::AcsPath { lacking, .. } = r else { panic!("{r:?}") };
        assert_eq!(lacking.device, pci("00:01.0"));
    }
}

fn multifunction(acs: [Option<Acs>; 3]) -> Topology {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    for (f, acs) in acs.into_iter().enumerate() {
        let func = b.endpoint(format!("01:00.{f}"));
        if let Some(acs) = acs {
            func.acs(acs);
        }
    }
    b.build().unwrap()
}

#[test]
fn multifunction_device_without_acs_shares_its_functions() {
    let t = multifunction([None, None, None]);
    assert_eq!(members(&t, "01:00.1"), ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2"]);
    assert_eq!(
        group(&t, &pci("01:00.0")).reasons,
        [Reason::MultifunctionNoAcs {
            functions: ["01:00.0", "01:00.1", "01:00.2"]
                .iter()
                .map(|d| lacks(d, AcsLack::NoCapability))
                .collect(),
        }]
    );
    assert!(alone(&t, &pci("00:01.0")));
    assert!(t.device(&pci("01:00.2")).unwrap().pci().unwrap().multifunction);
}

#[test]
fn multifunction_device_with_acs_on_its_functions_separates_them() {
    let t = multifunction([Some(Acs::isolated()), Some(Acs::isolated()), Some(Acs::isolated())]);
    for f in ["01:00.0", "01:00.1", "01:00.2"] {
        assert!(alone(&t, &pci(f)), "{f}");
    }
    // Only the functions without ACS share.
    let t = multifunction([None, Some(Acs::isolated()), None]);
    assert_eq!(members(&t, "01:00.0"), ["0000:01:00.0", "0000:01:00.2"]);
    assert!(alone(&t, &pci("01:00.1")));
}

#[test]
fn pcie_to_pci_bridge_makes_its_conventional_bus_one_group() {
    for pci_x in [false, true] {
        let mut b = vtd_system();
        b.root_port("00:1c.0", 0x01).acs(Acs::isolated());
        let bridge = b.pcie_to_pci_bridge("01:00.0", 0x02);
        if pci_x {
            bridge.pci_x();
        }
        for d in ["02:00.0", "02:01.0", "02:02.0"] {
            b.endpoint(d);
        }
        let t = b.build().unwrap();
        let expect = ["0000:01:00.0", "0000:02:00.0", "0000:02:01.0", "0000:02:02.0"];
        assert_eq!(members(&t, "02:01.0"), expect);
        assert_eq!(
            group(&t, &pci("02:01.0")).reasons,
            [Reason::BridgeAlias {
                bridge: pci("01:00.0"),
                alias: bdf("02:00.0"),
                devices: vec![pci("02:00.0"), pci("02:01.0"), pci("02:02.0")],
            }]
        );
        assert_eq!(
            t.device(&pci("02:02.0")).unwrap().pci().unwrap().pci_type,
            PciType::ConventionalEndpoint
        );
        assert_eq!(t.dma_aliases(&pci("02:02.0")).unwrap(), [bdf("02:02.0"), bdf("02:00.0")]);
        assert!(alone(&t, &pci("00:1c.0")));
    }
}

#[test]
fn conventional_bridge_behind_a_pcie_bridge_aliases_to_itself_then_to_the_pcie_bridge() {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    b.pcie_to_pci_bridge("01:00.0", 0x02);
    b.pci_bridge("02:03.0", 0x03);
    b.endpoint("03:04.0");
    let t = b.build().unwrap();
    assert_eq!(
        t.dma_aliases(&pci("03:04.0")).unwrap(),
        [bdf("03:04.0"), bdf("02:03.0"), bdf("02:00.0")]
    );
    assert_eq!(members(&t, "03:04.0"), ["0000:01:00.0", "0000:02:03.0", "0000:03:04.0"]);
}

/// The seed's picture on VT-d: A and B in one group because B also sends requests as A (a DMA
/// alias quirk); C isolated on the same root bus; D below its own root port.
#[test]
fn seed_a_and_b_share_through_a_dma_alias_and_a_keeps_its_pasids() {
    let mut b = vtd_system();
    b.endpoint("00:02.0").pasid(20).ats().pri(); // A
    b.endpoint("00:03.0").dma_alias(0x02, 0); // B
    b.endpoint("00:04.0").pasid(20); // C
    b.root_port("00:1c.0", 0x01).acs(Acs::isolated());
    b.endpoint("01:00.0").pasid(16); // D
    let t = b.build().unwrap();
    let (a, bb, c, d) = (pci("00:02.0"), pci("00:03.0"), pci("00:04.0"), pci("01:00.0"));

    assert_eq!(group(&t, &a).members, [a.clone(), bb.clone()]);
    assert_eq!(
        group(&t, &a).reasons,
        [Reason::DmaAlias { device: bb.clone(), alias: bdf("00:02.0"), aliased: a.clone() }]
    );
    assert!(alone(&t, &c));
    assert!(alone(&t, &d));
    assert_eq!(t.device(&a).unwrap().pci().unwrap().pci_type, PciType::RcEndpoint);
    // The alias makes B's requests arrive as A's: both RIDs must be programmed for B.
    assert_eq!(t.dma_aliases(&bb).unwrap(), [bdf("00:03.0"), bdf("00:02.0")]);

    // Sharing a group takes nothing from A's PASID path.
    assert_eq!(t.pasid_allowed(&a), Ok(PasidWidth::new(20).unwrap()));
    assert_eq!(t.pasid_allowed(&d), Ok(PasidWidth::new(16).unwrap()));
    assert_eq!(t.pasid_allowed(&bb), Err(PasidRefused::NoPasidCapability));
}

#[test]
fn dma_alias_between_functions_of_an_acs_device_joins_only_those_two() {
    // A phantom-function quirk (like Linux's Marvell/Ricoh ones) on an otherwise isolated device.
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    b.endpoint("01:00.0").acs(Acs::isolated()).pasid(20);
    b.endpoint("01:00.1").acs(Acs::isolated()).dma_alias(0, 0);
    b.endpoint("01:00.2").acs(Acs::isolated());
    let t = b.build().unwrap();
    assert_eq!(members(&t, "01:00.0"), ["0000:01:00.0", "0000:01:00.1"]);
    assert!(alone(&t, &pci("01:00.2")));
    assert_eq!(t.pasid_allowed(&pci("01:00.0")).map(PasidWidth::bits), Ok(20));
}

/// The seed's picture on SMMUv3: A and B are masters the SMMU cannot tell apart.
#[test]
fn seed_a_and_b_share_a_stream_id_on_smmuv3() {
    let mut b = smmu_system();
    b.platform("A").stream_id(0x10).pasid(20);
    b.platform("B").stream_id(0x10);
    b.platform("C").stream_id(0x11).pasid(8);
    b.platform("D").stream_id(0x12).stream_id(0x13);
    let t = b.build().unwrap();
    assert_eq!(group(&t, &plat("A")).members, [plat("A"), plat("B")]);
    assert_eq!(
        group(&t, &plat("A")).reasons,
        [Reason::SharedStreamId { stream_id: 0x10, masters: vec![plat("A"), plat("B")] }]
    );
    assert!(alone(&t, &plat("C")));
    assert!(alone(&t, &plat("D")));
    assert_eq!(group(&t, &plat("A")).unit, UnitId(1));
    assert_eq!(t.pasid_allowed(&plat("A")).map(PasidWidth::bits), Ok(20));
    assert_eq!(t.pasid_allowed(&plat("B")), Err(PasidRefused::NoPasidCapability));
}

#[test]
fn masters_behind_a_merging_interconnect_share() {
    let mut b = smmu_system();
    b.interconnect("noc0", 0x20);
    b.platform("gpu").behind("noc0");
    b.platform("vpu").behind("noc0");
    b.platform("dma").stream_id(0x21);
    let t = b.build().unwrap();
    assert_eq!(
        group(&t, &plat("gpu")).reasons,
        [Reason::MergedByInterconnect {
            interconnect: "noc0".into(),
            stream_id: 0x20,
            masters: vec![plat("gpu"), plat("vpu")],
        }]
    );
    assert!(alone(&t, &plat("dma")));
}

#[test]
fn devices_behind_two_units_never_share() {
    // Two segments, one DRHD each, both with a root port lacking ACS; two SMMUs whose masters
    // use the same StreamID.
    let mut b = Topology::builder();
    b.unit(UnitId(0), UnitKind::VtdDrhd).scope(Scope::Segment(0));
    b.unit(UnitId(1), UnitKind::VtdDrhd).scope(Scope::Segment(1));
    b.unit(UnitId(2), UnitKind::SmmuV3).scope(Scope::StreamIds { first: 0, last: 0xf });
    b.unit(UnitId(3), UnitKind::SmmuV3).scope(Scope::StreamIds { first: 0x10, last: 0x1f });
    for seg in ["0000", "0001"] {
        b.root_bus(if seg == "0000" { 0 } else { 1 }, 0);
        b.root_port(format!("{seg}:00:01.0"), 1);
        b.endpoint(format!("{seg}:01:00.0"));
    }
    b.platform("m0").stream_id(3);
    b.platform("m1").stream_id(3).unit(UnitId(3));
    let t = b.build().unwrap();
    for g in t.groups() {
        for m in &g.members {
            assert_eq!(t.device(m).unwrap().unit, g.unit, "{m} in {g:?}");
        }
    }
    assert_eq!(members(&t, "0000:01:00.0"), ["0000:00:01.0", "0000:01:00.0"]);
    assert_eq!(members(&t, "0001:01:00.0"), ["0001:00:01.0", "0001:01:00.0"]);
    assert!(alone(&t, &plat("m0")));
    assert!(alone(&t, &plat("m1")));
    assert_eq!(t.group_of(&plat("m1")).unwrap().unit, UnitId(3));
}

#[test]
fn a_group_split_across_units_is_refused_naming_both_devices() {
    // The root port (bus 00) is behind unit 0, the endpoint below it (bus 01) behind unit 1,
    // but without ACS they cannot be isolated.
    let mut b = vtd_system();
    b.unit(UnitId(1), UnitKind::VtdDrhd).scope(Scope::Buses { segment: 0, first: 1, last: 0x1f });
    b.root_port("00:01.0", 0x01);
    b.endpoint("01:00.0");
    assert_eq!(
        b.build().unwrap_err(),
        TopologyError::GroupSpansUnits {
            first: pci("00:01.0"),
            first_unit: UnitId(0),
            second: pci("01:00.0"),
            second_unit: UnitId(1),
        }
    );
    // With ACS on the root port the same scopes are fine.
    let mut b = vtd_system();
    b.unit(UnitId(1), UnitKind::VtdDrhd).scope(Scope::Buses { segment: 0, first: 1, last: 0x1f });
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    b.endpoint("01:00.0");
    let t = b.build().unwrap();
    assert_eq!(t.device(&pci("01:00.0")).unwrap().unit, UnitId(1));
}

#[test]
fn explicit_unit_assignment_beats_scopes() {
    let mut b = vtd_system();
    b.unit(UnitId(7), UnitKind::VtdDrhd);
    b.endpoint("00:05.0").unit(UnitId(7));
    b.endpoint("00:06.0");
    let t = b.build().unwrap();
    assert_eq!(t.device(&pci("00:05.0")).unwrap().unit, UnitId(7));
    assert_eq!(t.device(&pci("00:06.0")).unwrap().unit, UnitId(0));
}

// ---------------------------------------------------------------- pasid_allowed

#[test]
fn pasid_refused_without_the_capability() {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    b.endpoint("01:00.0").ats();
    let t = b.build().unwrap();
    assert_eq!(t.pasid_allowed(&pci("01:00.0")), Err(PasidRefused::NoPasidCapability));
}

#[test]
fn pasid_refused_when_the_path_lacks_acs_rr_uf() {
    // No ACS at all on the root port.
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01);
    b.endpoint("01:00.0").pasid(20);
    let t = b.build().unwrap();
    assert_eq!(
        t.pasid_allowed(&pci("01:00.0")),
        Err(PasidRefused::AcsPath { at: pci("00:01.0"), missing: AcsLack::NoCapability })
    );

    // A switch downstream port with SV|CR but not RR|UF enabled, under a good root port.
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    b.switch_upstream("01:00.0", 0x02);
    b.switch_downstream("02:00.0", 0x03)
        .acs(Acs::new(AcsFlags::ISOLATED, AcsFlags::SV | AcsFlags::CR));
    b.endpoint("03:00.0").pasid(20);
    let t = b.build().unwrap();
    assert_eq!(
        t.pasid_allowed(&pci("03:00.0")),
        Err(PasidRefused::AcsPath {
            at: pci("02:00.0"),
            missing: AcsLack::NotEnabled(AcsFlags::RR | AcsFlags::UF)
        })
    );

    // RR|UF is all PASID needs: a path without SV or CR still passes.
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::enabled(AcsFlags::RR | AcsFlags::UF));
    b.endpoint("01:00.0").pasid(20);
    assert!(b.build().unwrap().pasid_allowed(&pci("01:00.0")).is_ok());
}

#[test]
fn pasid_refused_behind_a_conventional_bridge() {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    b.pcie_to_pci_bridge("01:00.0", 0x02);
    b.endpoint("02:01.0").pasid(20);
    b.endpoint("02:02.0");
    let t = b.build().unwrap();
    for d in ["02:01.0", "02:02.0"] {
        assert_eq!(
            t.pasid_allowed(&pci(d)),
            Err(PasidRefused::BehindConventionalBridge { bridge: pci("01:00.0") })
        );
    }
}

#[test]
fn pasid_refused_on_a_multifunction_device_without_acs_rr() {
    let t = multifunction([None, None, None]);
    // (multifunction() gives no PASID capability; rebuild with one.)
    assert_eq!(t.pasid_allowed(&pci("01:00.0")), Err(PasidRefused::NoPasidCapability));
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated());
    b.endpoint("01:00.0").pasid(20);
    b.endpoint("01:00.1").pasid(20).acs(Acs::new(AcsFlags::SV | AcsFlags::RR, AcsFlags::SV));
    b.endpoint("01:00.2").pasid(20).acs(Acs::enabled(AcsFlags::RR));
    let t = b.build().unwrap();
    assert_eq!(
        t.pasid_allowed(&pci("01:00.0")),
        Err(PasidRefused::MultifunctionWithoutAcs { missing: AcsLack::NoCapability })
    );
    assert_eq!(
        t.pasid_allowed(&pci("01:00.1")),
        Err(PasidRefused::MultifunctionWithoutAcs { missing: AcsLack::NotEnabled(AcsFlags::RR) })
    );
    // UF is not implemented by an endpoint function, so RR alone is enough.
    assert!(t.pasid_allowed(&pci("01:00.2")).is_ok());
}

#[test]
fn pasid_refused_where_end_end_tlp_prefixes_stop() {
    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01).acs(Acs::isolated()).no_tlp_prefix();
    b.endpoint("01:00.0").pasid(20);
    let t = b.build().unwrap();
    assert_eq!(
        t.pasid_allowed(&pci("01:00.0")),
        Err(PasidRefused::NoTlpPrefixPath { at: pci("00:01.0") })
    );
}

#[test]
fn pasid_refused_for_an_unknown_device() {
    let t = vtd_system().build().unwrap();
    assert_eq!(
        t.pasid_allowed(&pci("07:00.0")),
        Err(PasidRefused::NoSuchDevice { device: pci("07:00.0") })
    );
}

// ---------------------------------------------------------------- malformed descriptions

fn refused(b: &TopologyBuilder) -> TopologyError {
    let e = b.build().unwrap_err();
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn malformed_descriptions_name_the_offending_element() {
    let mut b = vtd_system();
    b.endpoint("00:02.0");
    b.endpoint("0000:00:02.0");
    assert_eq!(refused(&b), TopologyError::DuplicateDevice { device: pci("00:02.0") });

    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01);
    b.endpoint("05:00.0");
    let e = refused(&b);
    assert_eq!(e, TopologyError::NoSuchBus { device: bdf("05:00.0"), segment: 0, bus: 5 });
    assert!(e.to_string().contains("0000:05:00.0"), "{e}");

    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01);
    b.root_port("00:02.0", 0x01);
    let e = refused(&b);
    assert_eq!(
        e,
        TopologyError::BusReused {
            segment: 0,
            bus: 1,
            first: BusOwner::Bridge { bridge: bdf("00:01.0"), role: Role::RootPort },
            second: BusOwner::Bridge { bridge: bdf("00:02.0"), role: Role::RootPort },
        }
    );
    assert!(e.to_string().contains("0000:00:02.0"), "{e}");

    let mut b = vtd_system();
    b.root_port("00:01.0", 0x00);
    assert!(matches!(refused(&b), TopologyError::BusReused { first: BusOwner::RootBus, .. }));

    let mut b = Topology::builder();
    b.root_bus(0, 0);
    b.endpoint("00:03.0");
    assert_eq!(refused(&b), TopologyError::NotCovered { device: pci("00:03.0") });

    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01);
    b.switch_downstream("01:00.0", 0x02);
    assert_eq!(
        refused(&b),
        TopologyError::Misplaced {
            device: bdf("01:00.0"),
            role: Role::SwitchDownstream,
            on: BusOwner::Bridge { bridge: bdf("00:01.0"), role: Role::RootPort },
        }
    );

    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01);
    b.switch_upstream("01:00.0", 0x02);
    b.endpoint("02:00.0");
    assert!(
        matches!(refused(&b), TopologyError::Misplaced { device, .. } if device == bdf("02:00.0"))
    );

    let mut b = vtd_system();
    b.root_port("00:01.0", 0x01);
    b.endpoint("01:01.0");
    assert_eq!(
        refused(&b),
        TopologyError::NotOnLink { device: bdf("01:01.0"), port: bdf("00:01.0") }
    );

    let mut b = vtd_system();
    b.endpoint("00:20.0");
    assert!(matches!(refused(&b), TopologyError::BadBdf(e) if e.0 == "00:20.0"));

    let mut b = vtd_system();
    b.pci_bridge("05:00.0", 0x06);
    b.pci_bridge("06:00.0", 0x05);
    assert!(matches!(refused(&b), TopologyError::NotBelowRoot { .. }));

    let mut b = vtd_system();
    b.endpoint("00:02.0").pasid(21);
    assert_eq!(refused(&b), TopologyError::BadPasidWidth { device: pci("00:02.0"), bits: 21 });

    let mut b = vtd_system();
    b.endpoint("00:02.0").dma_alias(0x20, 0);
    assert!(
        matches!(refused(&b), TopologyError::BadDmaAlias { device, .. } if device == bdf("00:02.0"))
    );

    let mut b = vtd_system();
    b.endpoint("00:02.0").unit(UnitId(9));
    assert_eq!(refused(&b), TopologyError::NoSuchUnit { device: pci("00:02.0"), unit: UnitId(9) });

    let mut b = vtd_system();
    b.unit(UnitId(1), UnitKind::VtdDrhd).scope(Scope::Segment(0));
    assert_eq!(
        refused(&b),
        TopologyError::ScopesOverlap {
            first: UnitId(0),
            second: UnitId(1),
            scope: Scope::Segment(0)
        }
    );

    let mut b = vtd_system();
    b.unit(UnitId(0), UnitKind::SmmuV3);
    assert_eq!(refused(&b), TopologyError::DuplicateUnit { unit: UnitId(0) });

    let mut b = vtd_system();
    b.unit(UnitId(1), UnitKind::VtdDrhd).scope(Scope::StreamIds { first: 0, last: 1 });
    assert!(matches!(refused(&b), TopologyError::BadScope { unit: UnitId(1), .. }));

    let mut b = vtd_system();
    b.platform("dma0").stream_id(1).unit(UnitId(0));
    assert_eq!(refused(&b), TopologyError::WrongUnitKind { device: plat("dma0"), unit: UnitId(0) });

    let mut b = smmu_system();
    b.platform("dma0");
    assert_eq!(refused(&b), TopologyError::NoStreamId { device: plat("dma0") });

    let mut b = smmu_system();
    b.platform("dma0").stream_id(0x100);
    assert_eq!(refused(&b), TopologyError::NotCovered { device: plat("dma0") });

    let mut b = smmu_system();
    b.platform("dma0").behind("noc9");
    assert_eq!(
        refused(&b),
        TopologyError::NoSuchInterconnect { device: plat("dma0"), interconnect: "noc9".into() }
    );

    let mut b = smmu_system();
    b.platform("00:01.0").stream_id(1);
    assert_eq!(refused(&b), TopologyError::BadPlatformName { name: "00:01.0".into() });

    let mut b = smmu_system();
    b.platform("x").stream_id(1);
    b.platform("x").stream_id(2);
    assert_eq!(refused(&b), TopologyError::DuplicateDevice { device: plat("x") });
}

// ---------------------------------------------------------------- report

#[test]
fn report_serialises_groups_with_members_and_reasons() {
    let mut b = vtd_system();
    b.endpoint("00:02.0").pasid(20);
    b.endpoint("00:03.0").dma_alias(0x02, 0);
    b.root_port("00:1c.0", 0x01);
    b.endpoint("01:00.0");
    let t = b.build().unwrap();
    let json = serde_json::to_value(t.report()).unwrap();
    let expected = serde_json::json!({"groups": [
        {"id": 0, "unit": 0, "members": ["0000:00:02.0", "0000:00:03.0"], "reasons": [
            {"kind": "dma_alias", "device": "0000:00:03.0", "alias": "0000:00:02.0",
             "aliased": "0000:00:02.0"}]},
        {"id": 1, "unit": 0, "members": ["0000:00:1c.0", "0000:01:00.0"], "reasons": [
            {"kind": "acs_path", "port": "0000:00:1c.0",
             "lacking": {"device": "0000:00:1c.0", "lack": "no_capability"},
             "devices": ["0000:01:00.0"]}]},
    ]});
    assert_eq!(json, expected);

    let t = switch([Some(Acs::new(AcsFlags::ISOLATED, AcsFlags::SV)), Some(Acs::isolated())]);
    let json = serde_json::to_value(t.report()).unwrap();
    let reasons = &json["groups"][2]["reasons"];
    assert!(
        reasons.as_array().unwrap().iter().any(|r| r["kind"] == "switch_not_isolated"
            && r["lacking"][0]["lack"]["not_enabled"] == serde_json::json!(["RR", "CR", "UF"])),
        "{json:#}"
    );
}

#[test]
fn reasons_read_as_sentences() {
    let t = switch([None, Some(Acs::isolated())]);
    let text: Vec<String> =
        group(&t, &pci("03:00.0")).reasons.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|s| s.contains("0000:01:00.0") && s.contains("0000:02:00.0")),
        "{text:?}"
    );
}

// ---------------------------------------------------------------- random topologies

/// An ACS setting for a port or function.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AcsChoice {
    /// No capability.
    Absent,
    /// The REQ_ACS_FLAGS capability with only some of them enabled (bit i of the mask = i-th of
    /// SV, RR, CR, UF).
    Partial(u8),
    /// REQ_ACS_FLAGS implemented and enabled.
    Full,
}

impl AcsChoice {
    fn acs(self) -> Option<Acs> {
        let pick = |m: u8| {
            [AcsFlags::SV, AcsFlags::RR, AcsFlags::CR, AcsFlags::UF]
                .into_iter()
                .enumerate()
                .filter(|(i, _)| m & (1 << i) != 0)
                .fold(AcsFlags::NONE, |a, (_, f)| a | f)
        };
        match self {
            AcsChoice::Absent => None,
            AcsChoice::Partial(m) => Some(Acs::new(AcsFlags::ISOLATED, pick(m))),
            AcsChoice::Full => Some(Acs::isolated()),
        }
    }

    /// Sufficient (not necessary) for Linux to call the function isolating.
    fn full(self) -> bool {
        self.acs().is_some_and(|a| a.control.contains(AcsFlags::ISOLATED))
    }
}

#[derive(Clone, Debug)]
struct Func {
    acs: AcsChoice,
    /// A DMA alias quirk: device offset / function on the same bus.
    alias: Option<(u8, u8)>,
}

#[derive(Clone, Debug)]
enum Below {
    Nothing,
    /// One (multi)function device.
    Device(Vec<Func>),
    /// A switch: per downstream port its ACS and maybe a device.
    Switch(Vec<(AcsChoice, Option<Vec<Func>>)>),
    /// A PCIe-to-PCI bridge with this many conventional devices.
    Bridge(u8),
}

#[derive(Clone, Debug)]
struct Segment {
    /// Root complex integrated endpoints, each a (multi)function device.
    rcieps: Vec<Vec<Func>>,
    /// Root ports: ACS and what is below.
    root_ports: Vec<(AcsChoice, Below)>,
    /// Whether the root ports are functions of one multifunction device.
    root_ports_multifunction: bool,
}

#[derive(Clone, Debug)]
struct Recipe {
    segments: Vec<Segment>,
    /// Platform masters on the SMMU: their StreamIDs, and whether they sit behind the merging
    /// interconnect `noc` (StreamID 7).
    masters: Vec<(Vec<u32>, bool)>,
}

impl Recipe {
    fn acs_slots(&mut self) -> Vec<&mut AcsChoice> {
        let mut out = Vec::new();
        for s in &mut self.segments {
            for d in &mut s.rcieps {
                out.extend(d.iter_mut().map(|f| &mut f.acs));
            }
            for (acs, below) in &mut s.root_ports {
                out.push(acs);
                match below {
                    Below::Device(fs) => out.extend(fs.iter_mut().map(|f| &mut f.acs)),
                    Below::Switch(dsps) => {
                        for (acs, dev) in dsps {
                            out.push(acs);
                            if let Some(fs) = dev {
                                out.extend(fs.iter_mut().map(|f| &mut f.acs));
                            }
                        }
                    }
                    Below::Nothing | Below::Bridge(_) => {}
                }
            }
        }
        out
    }
}

fn acs_choice() -> impl Strategy<Value = AcsChoice> {
    prop_oneof![
        Just(AcsChoice::Absent),
        (0u8..16).prop_map(AcsChoice::Partial),
        Just(AcsChoice::Full)
    ]
}

fn func() -> impl Strategy<Value = Func> {
    (acs_choice(), prop::option::weighted(0.15, (0u8..3, 0u8..3)))
        .prop_map(|(acs, alias)| Func { acs, alias })
}

fn below() -> impl Strategy<Value = Below> {
    prop_oneof![
        Just(Below::Nothing),
        prop::collection::vec(func(), 1..=3).prop_map(Below::Device),
        prop::collection::vec(
            (acs_choice(), prop::option::weighted(0.8, prop::collection::vec(func(), 1..=2))),
            1..=3
        )
        .prop_map(Below::Switch),
        (1u8..=3).prop_map(Below::Bridge),
    ]
}

fn recipe() -> impl Strategy<Value = Recipe> {
    let segment = (
        prop::collection::vec(prop::collection::vec(func(), 1..=3), 0..=3),
        prop::collection::vec((acs_choice(), below()), 1..=4),
        any::<bool>(),
    )
        .prop_map(|(rcieps, root_ports, root_ports_multifunction)| Segment {
            rcieps,
            root_ports,
            root_ports_multifunction,
        });
    (
        prop::collection::vec(segment, 1..=2),
        prop::collection::vec((prop::collection::vec(0u32..6, 0..=2), any::<bool>()), 0..=4),
    )
        .prop_map(|(segments, masters)| Recipe { segments, masters })
}

/// One builder call, so a recipe can be described in any order.
#[derive(Clone, Debug)]
enum Op {
    RootBus(u16),
    RootPort(Bdf, u8, AcsChoice),
    Upstream(Bdf, u8),
    Downstream(Bdf, u8, AcsChoice),
    PciBridge(Bdf, u8),
    Endpoint(Bdf, AcsChoice, Option<(u8, u8)>),
    Master(String, Vec<u32>, bool),
}

/// What the recipe says, independently of the library, about a device's grouping.
#[derive(Debug, Default)]
struct Oracle {
    /// Endpoints with a fully ACS-isolated path, no alias quirk, and full ACS if multifunction
    /// (before looking at other devices' aliases onto them).
    isolated: Vec<Bdf>,
    /// Pairs the rules must put in one group.
    must_share: Vec<(DeviceId, DeviceId)>,
    /// (segment, bus, devfn) some alias quirk points at.
    alias_targets: BTreeSet<Bdf>,
}

fn at(seg: u16, bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::from_parts(seg, bus, dev, func).unwrap()
}

fn plan(r: &Recipe) -> (Vec<Op>, Oracle) {
    let mut ops = Vec::new();
    let mut o = Oracle::default();
    for (s, seg) in r.segments.iter().enumerate() {
        let s = s as u16;
        ops.push(Op::RootBus(s));
        let mut next_bus = 1u8;
        // A multifunction device: every function's facts.
        let device =
            |ops: &mut Vec<Op>, o: &mut Oracle, bus: u8, dev: u8, fs: &[Func], path_ok: bool| {
                let mf = fs.len() > 1;
                let none: Vec<Bdf> = (0..fs.len())
                    .filter(|&f| fs[f].acs == AcsChoice::Absent)
                    .map(|f| at(s, bus, dev, f as u8))
                    .collect();
                if mf {
                    for w in none.windows(2) {
                        o.must_share.push((w[0].into(), w[1].into()));
                    }
                }
                for (f, func) in fs.iter().enumerate() {
                    let b = at(s, bus, dev, f as u8);
                    let alias = func.alias.map(|(d, f)| (dev.wrapping_add(d) % 32, f));
                    if let Some((d, f)) = alias {
                        let target = at(s, bus, d, f);
                        o.alias_targets.insert(target);
                        if target != b && (d == dev && (f as usize) < fs.len()) {
                            o.must_share.push((b.into(), target.into()));
                        }
                    }
                    if path_ok && alias.is_none() && (!mf || func.acs.full()) {
                        o.isolated.push(b);
                    }
                    ops.push(Op::Endpoint(b, func.acs, alias));
                }
            };
        for (j, fs) in seg.rcieps.iter().enumerate() {
            device(&mut ops, &mut o, 0, 0x10 + j as u8, fs, true);
        }
        for (i, (rp_acs, below)) in seg.root_ports.iter().enumerate() {
            let rp = if seg.root_ports_multifunction {
                at(s, 0, 1, i as u8)
            } else {
                at(s, 0, 1 + i as u8, 0)
            };
            let sec = next_bus;
            next_bus += 1;
            ops.push(Op::RootPort(rp, sec, *rp_acs));
            match below {
                Below::Nothing => {}
                Below::Device(fs) => {
                    if *rp_acs == AcsChoice::Absent {
                        o.must_share.push((rp.into(), at(s, sec, 0, 0).into()));
                    }
                    device(&mut ops, &mut o, sec, 0, fs, rp_acs.full());
                }
                Below::Switch(dsps) => {
                    let usp = at(s, sec, 0, 0);
                    let internal = next_bus;
                    next_bus += 1;
                    ops.push(Op::Upstream(usp, internal));
                    let switch_ok = dsps.iter().all(|(a, _)| a.full());
                    let any_absent = dsps.iter().any(|(a, _)| *a == AcsChoice::Absent);
                    for (k, (dsp_acs, dev)) in dsps.iter().enumerate() {
                        let dsp = at(s, internal, k as u8, 0);
                        let dsec = next_bus;
                        next_bus += 1;
                        ops.push(Op::Downstream(dsp, dsec, *dsp_acs));
                        if any_absent && k > 0 {
                            o.must_share.push((at(s, internal, 0, 0).into(), dsp.into()));
                        }
                        if let Some(fs) = dev {
                            device(&mut ops, &mut o, dsec, 0, fs, rp_acs.full() && switch_ok);
                        }
                    }
                }
                Below::Bridge(n) => {
                    let bridge = at(s, sec, 0, 0);
                    let conv = next_bus;
                    next_bus += 1;
                    ops.push(Op::PciBridge(bridge, conv));
                    for k in 0..*n {
                        let d = at(s, conv, k, 0);
                        ops.push(Op::Endpoint(d, AcsChoice::Absent, None));
                        o.must_share.push((bridge.into(), d.into()));
                    }
                }
            }
        }
    }
    let mut by_sid: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (m, (sids, behind)) in r.masters.iter().enumerate() {
        let name = format!("m{m}");
        // A master needs a StreamID: its own or the interconnect's.
        let sids = if sids.is_empty() && !behind { vec![m as u32] } else { sids.clone() };
        for &sid in sids.iter().chain(behind.then_some(&7)) {
            by_sid.entry(sid).or_default().push(name.clone());
        }
        ops.push(Op::Master(name, sids, *behind));
    }
    for names in by_sid.values() {
        for w in names.windows(2) {
            o.must_share.push((plat(&w[0]), plat(&w[1])));
        }
    }
    (ops, o)
}

fn build(ops: impl IntoIterator<Item = Op>) -> Result<Topology, TopologyError> {
    let mut b = Topology::builder();
    b.unit(UnitId(0), UnitKind::VtdDrhd).scope(Scope::Segment(0));
    b.unit(UnitId(1), UnitKind::SmmuV3)
        .scope(Scope::Segment(1))
        .scope(Scope::StreamIds { first: 0, last: 15 });
    b.interconnect("noc", 7);
    let with = |f: &mut sviommu_core::topology::FunctionSpec, acs: AcsChoice| {
        if let Some(a) = acs.acs() {
            f.acs(a);
        }
    };
    for op in ops {
        match op {
            Op::RootBus(s) => {
                b.root_bus(s, 0);
            }
            Op::RootPort(d, sec, acs) => with(b.root_port(d, sec), acs),
            Op::Upstream(d, internal) => {
                b.switch_upstream(d, internal);
            }
            Op::Downstream(d, sec, acs) => with(b.switch_downstream(d, sec), acs),
            Op::PciBridge(d, sec) => {
                b.pcie_to_pci_bridge(d, sec);
            }
            Op::Endpoint(d, acs, alias) => {
                let f = b.endpoint(d);
                with(f, acs);
                if let Some((dev, func)) = alias {
                    f.dma_alias(dev, func);
                }
            }
            Op::Master(name, sids, behind) => {
                let m = b.platform(&name);
                for sid in sids {
                    m.stream_id(sid);
                }
                if behind {
                    m.behind("noc");
                }
            }
        }
    }
    b.build()
}

/// Checks that what a reason claims is true of the topology.
fn check_reason(t: &Topology, r: &Reason) -> Result<(), String> {
    let f = |d: &DeviceId| t.device(d).and_then(|x| x.pci()).ok_or(format!("{d} is not PCI"));
    let above = |d: &DeviceId| {
        let mut v = Vec::new();
        let mut cur = t.upstream(d);
        while let Some(u) = cur {
            v.push(u.clone());
            cur = t.upstream(u);
        }
        v
    };
    match r {
        Reason::BridgeAlias { bridge, alias, devices } => {
            let b = f(bridge)?;
            let expect = match b.pci_type {
                PciType::PcieToPciBridge => {
                    Bdf::from_parts(b.bdf.segment, b.secondary_bus.unwrap(), 0, 0)
                }
                PciType::ConventionalBridge => Some(b.bdf),
                _ => None,
            };
            if expect != Some(*alias) {
                return Err(format!("{bridge} does not alias as {alias}"));
            }
            for d in devices {
                if !above(d).contains(bridge) {
                    return Err(format!("{d} is not behind {bridge}"));
                }
            }
        }
        Reason::AcsPath { port, lacking, devices } => {
            for d in devices {
                if t.upstream(d) != Some(port) {
                    return Err(format!("{d} is not directly below {port}"));
                }
            }
            if t.acs_path_enabled(port, AcsFlags::ISOLATED) != Err(lacking.clone()) {
                return Err(format!("path from {port} does not lack at {lacking}"));
            }
        }
        Reason::SwitchNotIsolated { upstream_port, lacking, devices } => {
            if f(upstream_port)?.pci_type != PciType::SwitchUpstream {
                return Err(format!("{upstream_port} is no upstream port"));
            }
            for l in lacking {
                if t.upstream(&l.device) != Some(upstream_port)
                    || t.acs_enabled(&l.device, AcsFlags::ISOLATED) != Err(l.lack)
                {
                    return Err(format!("{l} is not a lacking port of {upstream_port}"));
                }
            }
            for d in devices {
                if !above(d).contains(upstream_port) {
                    return Err(format!("{d} is not below {upstream_port}"));
                }
            }
        }
        Reason::MultifunctionNoAcs { functions } => {
            let slots: BTreeSet<_> =
                functions.iter().map(|s| f(&s.device).map(|x| x.bdf.slot())).collect();
            if slots.len() != 1 || functions.len() < 2 {
                return Err("not functions of one device".into());
            }
            for s in functions {
                if t.acs_enabled(&s.device, AcsFlags::ISOLATED) != Err(s.lack) {
                    return Err(format!("{s} has ACS"));
                }
            }
        }
        Reason::DmaAlias { device, alias, aliased } => {
            let d = f(device)?;
            if !d.dma_alias_devfns.contains(&alias.devfn) || *aliased != DeviceId::Pci(*alias) {
                return Err(format!("{device} does not alias {aliased}"));
            }
        }
        Reason::SharedStreamId { stream_id, masters }
        | Reason::MergedByInterconnect { stream_id, masters, .. } => {
            for m in masters {
                let p =
                    t.device(m).and_then(|x| x.platform()).ok_or(format!("{m} is not platform"))?;
                if !p.stream_ids.contains(stream_id) {
                    return Err(format!("{m} does not use {stream_id}"));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn groups_partition_the_devices_and_every_member_is_justified(r in recipe()) {
        let (ops, oracle) = plan(&r);
        let t = build(ops).map_err(|e| TestCaseError::fail(e.to_string()))?;

        // Partition.
        let total: usize = t.groups().iter().map(|g| g.members.len()).sum();
        prop_assert_eq!(total, t.devices().len());
        for d in t.devices() {
            let g = t.group_of(&d.id).unwrap();
            prop_assert!(g.contains(&d.id));
            prop_assert_eq!(t.groups().iter().filter(|g| g.contains(&d.id)).count(), 1);
            prop_assert_eq!(g.unit, d.unit);
        }

        // Each group is connected by its reasons, each of which is true.
        for g in t.groups() {
            let mut reach: BTreeSet<&DeviceId> = g.members.first().into_iter().collect();
            loop {
                let before = reach.len();
                for r in &g.reasons {
                    let ds = r.devices();
                    if ds.iter().any(|d| reach.contains(d)) {
                        reach.extend(ds);
                    }
                }
                if reach.len() == before { break; }
            }
            prop_assert_eq!(reach.len(), g.members.len(), "group {:?} not connected by its reasons", g);
            for r in &g.reasons {
                for d in r.devices() {
                    prop_assert!(g.contains(d), "{} named by {:?} is outside {:?}", d, r, g.id);
                }
                if let Err(e) = check_reason(&t, r) {
                    prop_assert!(false, "false reason {:?}: {}", r, e);
                }
            }
        }

        // Devices the rules must join are joined.
        for (a, b) in &oracle.must_share {
            prop_assert_eq!(t.group_of(a).map(|g| g.id), t.group_of(b).map(|g| g.id), "{} / {}", a, b);
        }
    }

    #[test]
    fn isolated_endpoints_are_alone(r in recipe()) {
        let (ops, oracle) = plan(&r);
        let t = build(ops).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for b in oracle.isolated.iter().filter(|b| !oracle.alias_targets.contains(b)) {
            let id = DeviceId::Pci(*b);
            let g = t.group_of(&id).unwrap();
            prop_assert_eq!(&g.members, &vec![id.clone()], "{} should be isolated: {:?}", b, g);
        }
    }

    #[test]
    fn adding_acs_never_merges_groups(r in recipe(), pick in any::<prop::sample::Index>()) {
        let before = build(plan(&r).0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut more = r.clone();
        let mut slots = more.acs_slots();
        let n = slots.len();
        if let Some(slot) = slots.get_mut(pick.index(n.max(1))) {
            **slot = AcsChoice::Full;
        }
        let after = build(plan(&more).0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for g in after.groups() {
            let old: BTreeSet<_> = g.members.iter().map(|m| before.group_of(m).unwrap().id).collect();
            prop_assert_eq!(old.len(), 1, "{:?} was split across {:?} before", g.members, old);
        }
        prop_assert!(after.groups().len() >= before.groups().len());
    }

    #[test]
    fn grouping_is_deterministic_whatever_the_description_order(r in recipe()) {
        let (ops, _) = plan(&r);
        let a = build(ops.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = build(ops.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let c = build(ops.into_iter().rev()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(a.groups(), b.groups());
        prop_assert_eq!(a.groups(), c.groups());
        prop_assert_eq!(
            serde_json::to_string(&a.report()).unwrap(),
            serde_json::to_string(&c.report()).unwrap()
        );
    }
}

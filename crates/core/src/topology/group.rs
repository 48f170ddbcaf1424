//! IOMMU groups, computed from isolation rules.
//!
//! A group is a set of devices the IOMMU cannot isolate from one another: whatever one of them
//! is given (a domain, a PASID table, a bound process), all of them can reach. The rules below
//! are Linux's, each an edge between devices that cannot be separated; groups are the
//! connected components, and each edge is kept as a [`Reason`].
//!
//! | rule | [`Reason`] | source |
//! |---|---|---|
//! | a device behind a PCIe-to-PCI (or conventional PCI-to-PCI) bridge reaches the IOMMU with the bridge's alias Requester ID, so it joins the bridge; a conventional bus is one group | [`Reason::BridgeAlias`] | `pci_for_each_dma_alias()` (drivers/pci/search.c), `get_pci_alias_or_group()` in `pci_device_group()` (drivers/iommu/iommu.c) |
//! | a device whose upstream bridge path lacks `REQ_ACS_FLAGS` (SV, RR, CR, UF) joins that bridge, and so on upwards to where isolation starts | [`Reason::AcsPath`] | the `pci_acs_path_enabled(bus->self, NULL, REQ_ACS_FLAGS)` loop of `pci_device_group()`; `pci_acs_enabled()` (drivers/pci/pci.c) |
//! | a switch whose downstream ports do not all have `REQ_ACS_FLAGS` lets traffic from one port come back down another: everything below the switch's internal bus is one group | [`Reason::SwitchNotIsolated`] | `pcie_switch_isolated()` of the linux-next series "iommu: Compute iommu_groups properly for PCIe switches" (J. Gunthorpe, 2025); mainline misses this case |
//! | functions of a multifunction device without `REQ_ACS_FLAGS` share | [`Reason::MultifunctionNoAcs`] | `get_pci_function_alias_group()` |
//! | DMA alias quirks join a device and the function it aliases on its bus | [`Reason::DmaAlias`] | `pci_add_dma_alias()` (drivers/pci/quirks.c), `pci_devs_are_dma_aliases()`, `get_pci_alias_group()` |
//! | platform masters arriving at one SMMU with the same StreamID share | [`Reason::SharedStreamId`], [`Reason::MergedByInterconnect`] | `arm_smmu_device_group()` in drivers/iommu/arm/arm-smmu/arm-smmu.c (stream map entries shared between masters) |
//!
//! Linux computes a group when a device is probed, finding the groups of devices probed before
//! it (bridges before what is below them). Here the same edges are collected for every device
//! and joined at once, so the result does not depend on the order devices were described in.
//!
//! DEVIATION: arm-smmu-v3 itself refuses a second master whose StreamID is already taken
//! (`arm_smmu_insert_master()`, "stream %u already in tree"); we group them as arm-smmu (v2)
//! does, because two masters the SMMU cannot tell apart are one group whatever the driver does.
//!
//! Groups never span IOMMU units: a description whose rules join devices behind two units is
//! refused ([`TopologyError::GroupSpansUnits`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::{
    bridge_alias, AcsFlags, Bdf, DeviceId, DeviceKind, PciType, Topology, TopologyError, UnitId,
};

/// Names a group; numbered by unit, then by the group's first member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GroupId(pub u32);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {}", self.0)
    }
}

/// Why a function does not provide the ACS controls asked of it (Linux `pci_acs_enabled()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AcsLack {
    /// It has no ACS Extended Capability.
    NoCapability,
    /// It implements these controls but they are not enabled.
    NotEnabled(AcsFlags),
    /// It can never provide ACS: conventional PCI (a shared bus, any device can claim or snoop
    /// any transaction) or a PCIe-to-PCI bridge (PCIe r3.0 §6.12.1 excludes ACS on them).
    NotApplicable,
}

impl fmt::Display for AcsLack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCapability => f.write_str("no ACS capability"),
            Self::NotEnabled(flags) => write!(f, "ACS {flags} not enabled"),
            Self::NotApplicable => f.write_str("no ACS possible (conventional PCI)"),
        }
    }
}

/// A function and what ACS it lacks.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AcsShortfall {
    /// The function.
    pub device: DeviceId,
    /// What it lacks.
    pub lack: AcsLack,
}

impl fmt::Display for AcsShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.device, self.lack)
    }
}

/// Why devices could not be separated: one isolation rule, naming every device it joins.
/// The rules and their kernel sources are in the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// `devices` sit behind `bridge`, which forwards their requests as `alias`: the IOMMU sees
    /// one requester.
    BridgeAlias {
        /// The PCIe-to-PCI or conventional PCI bridge.
        bridge: DeviceId,
        /// The Requester ID it puts on forwarded requests.
        alias: Bdf,
        /// The devices directly behind it.
        devices: Vec<DeviceId>,
    },
    /// `devices` sit on the secondary bus of `port`, and the path from `port` to the root lacks
    /// `REQ_ACS_FLAGS` at `lacking`: their requests can reach `port`'s side of the hierarchy
    /// without passing the IOMMU.
    AcsPath {
        /// The bridge or port they join (`bus->self`).
        port: DeviceId,
        /// The first function on the path from `port` upwards that lacks the controls.
        lacking: AcsShortfall,
        /// The devices directly below `port`.
        devices: Vec<DeviceId>,
    },
    /// Downstream ports of the switch whose upstream port is `upstream_port` lack
    /// `REQ_ACS_FLAGS`. ACS is an egress control: a request entering a permissive downstream
    /// port can go back down any other, so nothing below the switch's internal bus is isolated
    /// from anything else there.
    SwitchNotIsolated {
        /// The switch's upstream port (not itself joined).
        upstream_port: DeviceId,
        /// The downstream ports without the controls.
        lacking: Vec<AcsShortfall>,
        /// Every device below the internal bus: the downstream ports and their subtrees.
        devices: Vec<DeviceId>,
    },
    /// Functions of one multifunction device that lack `REQ_ACS_FLAGS`: the device may route
    /// between its functions internally.
    MultifunctionNoAcs {
        /// The functions without the controls.
        functions: Vec<AcsShortfall>,
    },
    /// `device` also sends requests as `alias`, the Requester ID of `aliased` (a DMA alias
    /// quirk): the IOMMU cannot tell their requests apart.
    DmaAlias {
        /// The device with the quirk.
        device: DeviceId,
        /// The Requester ID it also uses.
        alias: Bdf,
        /// The function that owns that Requester ID.
        aliased: DeviceId,
    },
    /// Platform masters that arrive at the SMMU with the same StreamID.
    SharedStreamId {
        /// The StreamID.
        stream_id: u32,
        /// The masters using it.
        masters: Vec<DeviceId>,
    },
    /// Platform masters behind one interconnect that gives all of them its StreamID.
    MergedByInterconnect {
        /// The interconnect.
        interconnect: String,
        /// The StreamID they arrive with.
        stream_id: u32,
        /// The masters behind it.
        masters: Vec<DeviceId>,
    },
}

impl Reason {
    /// Every device this reason makes inseparable. (For [`Reason::AcsPath`] the lacking
    /// function is joined by the reasons above it, not by this one.)
    pub fn devices(&self) -> Vec<&DeviceId> {
        match self {
            Self::BridgeAlias { bridge, devices, .. } => {
                std::iter::once(bridge).chain(devices).collect()
            }
            Self::AcsPath { port, devices, .. } => std::iter::once(port).chain(devices).collect(),
            Self::SwitchNotIsolated { devices, .. } => devices.iter().collect(),
            Self::MultifunctionNoAcs { functions } => functions.iter().map(|s| &s.device).collect(),
            Self::DmaAlias { device, aliased, .. } => vec![device, aliased],
            Self::SharedStreamId { masters, .. } | Self::MergedByInterconnect { masters, .. } => {
                masters.iter().collect()
            }
        }
    }
}

struct List<'a, T>(&'a [T]);

impl<T: fmt::Display> fmt::Display for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            x.fmt(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BridgeAlias { bridge, alias, devices } => write!(
                f,
                "{} reach the IOMMU as {alias}, the requester ID bridge {bridge} gives them",
                List(devices)
            ),
            Self::AcsPath { port, lacking, devices } => {
                write!(f, "{} not isolated from {port}: {lacking}", List(devices))
            }
            Self::SwitchNotIsolated { upstream_port, lacking, devices } => write!(
                f,
                "switch {upstream_port} does not isolate its downstream ports ({}): {} reach one another",
                List(lacking),
                List(devices)
            ),
            Self::MultifunctionNoAcs { functions } => {
                write!(f, "functions of one device without ACS: {}", List(functions))
            }
            Self::DmaAlias { device, alias, aliased } => {
                write!(f, "{device} also sends requests as {aliased} (requester ID {:#06x}, a DMA alias quirk)", alias.rid())
            }
            Self::SharedStreamId { stream_id, masters } => {
                write!(f, "{} share StreamID {stream_id:#x}", List(masters))
            }
            Self::MergedByInterconnect { interconnect, stream_id, masters } => write!(
                f,
                "{} reach the SMMU through {interconnect} as StreamID {stream_id:#x}",
                List(masters)
            ),
        }
    }
}

/// An IOMMU group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Its number.
    pub id: GroupId,
    /// The unit all its members are behind.
    pub unit: UnitId,
    /// Its members, by id.
    pub members: Vec<DeviceId>,
    /// Why the members could not be separated; empty for a group of one.
    pub reasons: Vec<Reason>,
}

impl Group {
    /// Whether `device` is a member.
    pub fn contains(&self, device: &DeviceId) -> bool {
        self.members.binary_search(device).is_ok()
    }
}

/// The groups as the CLI prints them: `{"groups":[{"id","unit","members","reasons"}]}`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct GroupsReport<'a> {
    /// Every group.
    pub groups: &'a [Group],
}

/// Union-find over device indices; the smaller index becomes the root.
struct Dsu(Vec<usize>);

impl Dsu {
    fn new(n: usize) -> Self {
        Self((0..n).collect())
    }

    fn find(&mut self, x: usize) -> usize {
        let mut root = x;
        while let Some(&p) = self.0.get(root) {
            if p == root {
                break;
            }
            root = p;
        }
        let mut cur = x;
        while cur != root {
            match self.0.get_mut(cur) {
                Some(p) => cur = std::mem::replace(p, root),
                None => break,
            }
        }
        root
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        if let Some(p) = self.0.get_mut(hi) {
            *p = lo;
        }
    }
}

/// The groups of `topo` and, per device index, the index of its group: every rule's edges
/// (in this order, so each group lists its reasons in it), then the connected components.
pub(crate) fn compute(topo: &Topology) -> Result<(Vec<Group>, Vec<usize>), TopologyError> {
    let mut e = Edges { topo, dsu: Dsu::new(topo.devices.len()), reasons: Vec::new() };
    e.bridge_aliases_and_acs_paths();
    e.switches_not_isolated();
    e.multifunction_without_acs();
    e.dma_alias_quirks();
    e.shared_stream_ids();
    e.into_groups()
}

/// The edges found so far: who is joined to whom, and why.
struct Edges<'t> {
    topo: &'t Topology,
    dsu: Dsu,
    /// (a device the reason joins, the reason)
    reasons: Vec<(usize, Reason)>,
}

impl Edges<'_> {
    fn ids(&self, v: &[usize]) -> Vec<DeviceId> {
        v.iter().map(|&i| self.topo.id_at(i)).collect()
    }

    /// Bridge aliases, then the ACS walk: pci_device_group() first follows the DMA alias walk;
    /// only a device no bridge aliases starts the ACS loop from its own bus.
    fn bridge_aliases_and_acs_paths(&mut self) {
        let topo = self.topo;
        let mut behind_bridge: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut below_port: BTreeMap<usize, (usize, super::AcsLack, Vec<usize>)> = BTreeMap::new();
        for i in 0..topo.devices.len() {
            if topo.pci_at(i).is_none() {
                continue;
            }
            let aliasing =
                topo.ancestors(i).find(|&a| topo.pci_at(a).and_then(bridge_alias).is_some());
            if let Some(bridge) = aliasing {
                behind_bridge.entry(bridge).or_default().push(i);
                self.dsu.union(i, bridge);
            } else if let Some(port) = topo.upstream_at(i) {
                if let Err((at, lack)) = topo.acs_path_at(port, AcsFlags::ISOLATED) {
                    below_port.entry(port).or_insert_with(|| (at, lack, Vec::new())).2.push(i);
                    self.dsu.union(i, port);
                }
            }
        }
        for (bridge, devices) in behind_bridge {
            if let Some(alias) = topo.pci_at(bridge).and_then(bridge_alias) {
                let (bridge_id, devices) = (topo.id_at(bridge), self.ids(&devices));
                let reason = Reason::BridgeAlias { bridge: bridge_id, alias, devices };
                self.reasons.push((bridge, reason));
            }
        }
        for (port, (at, lack, devices)) in below_port {
            let lacking = AcsShortfall { device: topo.id_at(at), lack };
            let reason =
                Reason::AcsPath { port: topo.id_at(port), lacking, devices: self.ids(&devices) };
            self.reasons.push((port, reason));
        }
    }

    /// Switch internal buses (linux-next pcie_switch_isolated()).
    fn switches_not_isolated(&mut self) {
        let topo = self.topo;
        let n = topo.devices.len();
        for u in 0..n {
            if topo.pci_at(u).map(|f| f.pci_type) != Some(PciType::SwitchUpstream) {
                continue;
            }
            let lacking: Vec<AcsShortfall> = (0..n)
                .filter(|&d| topo.upstream_at(d) == Some(u))
                .filter_map(|d| {
                    topo.acs_enabled_at(d, AcsFlags::ISOLATED)
                        .err()
                        .map(|lack| AcsShortfall { device: topo.id_at(d), lack })
                })
                .collect();
            if lacking.is_empty() {
                continue;
            }
            let below: Vec<usize> = (0..n).filter(|&d| topo.ancestors(d).any(|a| a == u)).collect();
            if let Some(&first) = below.first() {
                for &d in &below {
                    self.dsu.union(first, d);
                }
                let reason = Reason::SwitchNotIsolated {
                    upstream_port: topo.id_at(u),
                    lacking,
                    devices: self.ids(&below),
                };
                self.reasons.push((first, reason));
            }
        }
    }

    /// Multifunction devices (get_pci_function_alias_group()).
    fn multifunction_without_acs(&mut self) {
        let topo = self.topo;
        let mut slots: BTreeMap<(u16, u8, u8), Vec<usize>> = BTreeMap::new();
        for i in 0..topo.devices.len() {
            if let Some(f) = topo.pci_at(i).filter(|f| f.multifunction) {
                slots.entry(f.bdf.slot()).or_default().push(i);
            }
        }
        for functions in slots.values() {
            let lacking: Vec<(usize, super::AcsLack)> = functions
                .iter()
                .filter_map(|&i| topo.acs_enabled_at(i, AcsFlags::ISOLATED).err().map(|l| (i, l)))
                .collect();
            if let [(first, _), _, ..] = lacking.as_slice() {
                for &(i, _) in &lacking {
                    self.dsu.union(*first, i);
                }
                let functions = lacking
                    .iter()
                    .map(|&(i, lack)| AcsShortfall { device: topo.id_at(i), lack })
                    .collect();
                self.reasons.push((*first, Reason::MultifunctionNoAcs { functions }));
            }
        }
    }

    /// DMA alias quirks (get_pci_alias_group(), pci_devs_are_dma_aliases()).
    fn dma_alias_quirks(&mut self) {
        let topo = self.topo;
        for i in 0..topo.devices.len() {
            let Some(f) = topo.pci_at(i) else { continue };
            for &devfn in &f.dma_alias_devfns {
                let alias = Bdf::new(f.bdf.segment, f.bdf.bus, devfn);
                let Some(&j) = topo.index.get(&DeviceId::Pci(alias)) else { continue };
                if j != i {
                    self.dsu.union(i, j);
                    let reason =
                        Reason::DmaAlias { device: topo.id_at(i), alias, aliased: topo.id_at(j) };
                    self.reasons.push((i, reason));
                }
            }
        }
    }

    /// Platform masters the SMMU cannot tell apart (arm-smmu arm_smmu_device_group()).
    fn shared_stream_ids(&mut self) {
        let topo = self.topo;
        let mut by_stream: BTreeMap<(UnitId, u32), Vec<usize>> = BTreeMap::new();
        for (i, d) in topo.devices.iter().enumerate() {
            if let DeviceKind::Platform(p) = &d.kind {
                let sids: BTreeSet<u32> = p.stream_ids.iter().copied().collect();
                for sid in sids {
                    by_stream.entry((d.unit, sid)).or_default().push(i);
                }
            }
        }
        for ((_, stream_id), masters) in by_stream {
            let [first, _, ..] = masters.as_slice() else { continue };
            for &m in &masters {
                self.dsu.union(*first, m);
            }
            let merged_by = |i: &usize| {
                let p = topo.devices.get(*i).and_then(|d| d.platform());
                p.and_then(|p| p.interconnect.clone())
            };
            let interconnects: BTreeSet<_> =
                masters.iter().map(|i| merged_by(i).map(|ic| (ic.name, ic.stream_id))).collect();
            let masters_ids = self.ids(&masters);
            let reason = match interconnects.into_iter().collect::<Vec<_>>().as_slice() {
                [Some((name, sid))] if *sid == stream_id => Reason::MergedByInterconnect {
                    interconnect: name.clone(),
                    stream_id,
                    masters: masters_ids,
                },
                _ => Reason::SharedStreamId { stream_id, masters: masters_ids },
            };
            self.reasons.push((*first, reason));
        }
    }

    /// The connected components as groups, each behind one unit, ordered by unit and first
    /// member, with their reasons; and each device's group index.
    fn into_groups(mut self) -> Result<(Vec<Group>, Vec<usize>), TopologyError> {
        let topo = self.topo;
        let n = topo.devices.len();
        let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..n {
            components.entry(self.dsu.find(i)).or_default().push(i);
        }
        let unit_at = |i: usize| topo.devices.get(i).map(|d| d.unit);
        let mut ordered: Vec<(UnitId, Vec<usize>)> = Vec::new();
        for members in components.into_values() {
            let Some(&first) = members.first() else { continue };
            let Some(unit) = unit_at(first) else { continue };
            if let Some(&other) = members.iter().find(|&&m| unit_at(m) != Some(unit)) {
                return Err(TopologyError::GroupSpansUnits {
                    first: topo.id_at(first),
                    first_unit: unit,
                    second: topo.id_at(other),
                    second_unit: unit_at(other).unwrap_or(unit),
                });
            }
            ordered.push((unit, members));
        }
        // Members are sorted and device indices follow ids, so this orders by unit, first member.
        ordered.sort();

        let mut group_index = vec![0; n];
        let mut root_to_group = BTreeMap::new();
        let mut groups = Vec::with_capacity(ordered.len());
        for (g, (unit, members)) in ordered.into_iter().enumerate() {
            for &m in &members {
                if let Some(slot) = group_index.get_mut(m) {
                    *slot = g;
                }
            }
            if let Some(&first) = members.first() {
                root_to_group.insert(self.dsu.find(first), g);
            }
            let id = GroupId(u32::try_from(g).unwrap_or(u32::MAX));
            groups.push(Group { id, unit, members: self.ids(&members), reasons: Vec::new() });
        }
        for (anchor, reason) in std::mem::take(&mut self.reasons) {
            let root = self.dsu.find(anchor);
            if let Some(group) = root_to_group.get(&root).and_then(|&g| groups.get_mut(g)) {
                group.reasons.push(reason);
            }
        }
        Ok((groups, group_index))
    }
}

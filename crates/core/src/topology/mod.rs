//! The system the IOMMU API works on: IOMMU units, the PCI hierarchy and platform masters, and
//! the IOMMU groups computed from them.
//!
//! A [`Topology`] is described with a [`TopologyBuilder`] and is immutable once built. Building
//! checks the description (every bus has one owner, every device sits where the PCI hierarchy
//! allows it, every device has a unit) and then *computes* the IOMMU groups: the smallest sets
//! of devices the IOMMU can isolate from one another. Groups are never declared, because the
//! point of a group is that the hardware decides it: a bind or an attach that names one device
//! reaches every device of its group (the seed thread's A+B picture), so the group must follow
//! from ACS, DMA aliases, bridges and StreamIDs exactly as the kernel derives it. Each group
//! carries the [`Reason`]s its members could not be separated.
//!
//! The rules and where they come from are in [`group`]'s documentation; what
//! [`Topology::pasid_allowed`] checks is in [`pasid`].

mod builder;
pub mod group;
pub mod pasid;
pub mod pci;
pub mod unit;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

pub use builder::{
    BusOwner, FunctionSpec, IntoBdf, PlatformSpec, Role, TopologyBuilder, TopologyError, UnitSpec,
};
pub use group::{AcsLack, AcsShortfall, Group, GroupId, GroupsReport, Reason};
pub use pasid::{PasidRefused, PasidWidth};
pub use pci::{Acs, AcsFlags, Bdf, DevFn, ParseBdfError, PciType, SecondaryInterface};
pub use unit::{Scope, Unit, UnitId, UnitKind};

/// Names a device (a DMA master): a PCI function by its address, a platform master by the
/// unique name it was given.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceId {
    /// A PCI function.
    Pci(Bdf),
    /// A platform (non-PCI) master behind an SMMUv3.
    Platform(String),
}

impl DeviceId {
    /// The platform master called `name`.
    pub fn platform(name: &str) -> Self {
        Self::Platform(name.to_owned())
    }

    /// The PCI function `bdf`, if it parses.
    pub fn pci(bdf: &str) -> Result<Self, ParseBdfError> {
        bdf.parse().map(Self::Pci)
    }
}

impl From<Bdf> for DeviceId {
    fn from(bdf: Bdf) -> Self {
        Self::Pci(bdf)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(bdf) => bdf.fmt(f),
            Self::Platform(name) => f.write_str(name),
        }
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One PCI function as the topology sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PciFunction {
    /// Its address.
    pub bdf: Bdf,
    /// What it is (derived from where it sits: behind a PCIe-to-PCI bridge everything is
    /// conventional PCI).
    pub pci_type: PciType,
    /// Whether it is one function of a multifunction device (more than one function in its
    /// slot, or declared so: the header type's multifunction bit).
    pub multifunction: bool,
    /// ACS Extended Capability, if implemented.
    pub acs: Option<Acs>,
    /// Extra devfns on its own bus that it also sends requests with (Linux
    /// `pci_add_dma_alias()` quirks: phantom functions, broken DMA engines).
    pub dma_alias_devfns: Vec<DevFn>,
    /// PASID Extended Capability: Max PASID Width.
    pub pasid: Option<PasidWidth>,
    /// Address Translation Services capability.
    pub ats: bool,
    /// Page Request Interface capability.
    pub pri: bool,
    /// Device Capabilities 2 "End-End TLP Prefix Supported": a PASID travels in an End-End TLP
    /// prefix, so every function on the path must pass them.
    pub ee_tlp_prefix: bool,
    /// A bridge's secondary bus (for a switch upstream port, the switch's internal bus).
    pub secondary_bus: Option<u8>,
    /// A PCIe-to-PCI bridge's secondary interface.
    pub secondary_interface: Option<SecondaryInterface>,
    /// Firmware DMA ranges (RMRRs) naming it: identity-mapped in every domain it is attached
    /// to.
    pub rmrrs: Vec<std::ops::Range<u64>>,
}

/// One platform master behind an SMMUv3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlatformMaster {
    /// Its name.
    pub name: String,
    /// The StreamIDs its transactions carry at the SMMU, its own and those an interconnect
    /// gives it.
    pub stream_ids: Vec<u32>,
    /// The merging interconnect it sits behind, if any.
    pub interconnect: Option<MergingInterconnect>,
    /// SubstreamID width (the PASID width on SMMUv3), if it can send SubstreamIDs.
    pub pasid: Option<PasidWidth>,
}

/// An interconnect that replaces the StreamIDs of the masters behind it with its own, so the
/// SMMU cannot tell them apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MergingInterconnect {
    /// Its name.
    pub name: String,
    /// The StreamID every master behind it arrives with.
    pub stream_id: u32,
}

/// What kind of master a device is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A PCI function.
    Pci(PciFunction),
    /// A platform master.
    Platform(PlatformMaster),
}

/// One device of the topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Its name.
    pub id: DeviceId,
    /// The IOMMU unit its requests go through.
    pub unit: UnitId,
    /// What it is.
    pub kind: DeviceKind,
}

impl Device {
    /// The PCI function, if it is one.
    pub fn pci(&self) -> Option<&PciFunction> {
        match &self.kind {
            DeviceKind::Pci(f) => Some(f),
            DeviceKind::Platform(_) => None,
        }
    }

    /// The platform master, if it is one.
    pub fn platform(&self) -> Option<&PlatformMaster> {
        match &self.kind {
            DeviceKind::Platform(p) => Some(p),
            DeviceKind::Pci(_) => None,
        }
    }
}

/// A described system with its computed IOMMU groups. Built by [`TopologyBuilder::build`].
#[derive(Clone, Debug)]
pub struct Topology {
    units: Vec<Unit>,
    /// Sorted by id.
    devices: Vec<Device>,
    index: BTreeMap<DeviceId, usize>,
    /// The bridge whose secondary bus a PCI function sits on (Linux `bus->self`); `None` on a
    /// root bus and for platform masters.
    upstream: Vec<Option<usize>>,
    groups: Vec<Group>,
    /// Device index to group index.
    group_index: Vec<usize>,
}

impl Topology {
    /// Start describing a system.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// The IOMMU units, by id.
    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// One unit.
    pub fn unit(&self, id: UnitId) -> Option<&Unit> {
        self.units.iter().find(|u| u.id == id)
    }

    /// Every device, PCI functions (ports and bridges included) first, by id.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// One device.
    pub fn device(&self, id: &DeviceId) -> Option<&Device> {
        self.index.get(id).and_then(|&i| self.devices.get(i))
    }

    /// The bridge or port whose secondary bus the PCI function `id` sits on (Linux
    /// `pdev->bus->self`); `None` on a root bus, for platform masters and unknown ids.
    pub fn upstream(&self, id: &DeviceId) -> Option<&DeviceId> {
        let i = *self.index.get(id)?;
        let up = (*self.upstream.get(i)?)?;
        self.devices.get(up).map(|d| &d.id)
    }

    /// The IOMMU groups, numbered by unit and then by their first member.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The group `id` belongs to.
    pub fn group_of(&self, id: &DeviceId) -> Option<&Group> {
        let i = *self.index.get(id)?;
        self.group_index.get(i).and_then(|&g| self.groups.get(g))
    }

    /// The serialisable report the CLI prints: `{"groups":[{"id","unit","members","reasons"}]}`.
    pub fn report(&self) -> GroupsReport<'_> {
        GroupsReport { groups: &self.groups }
    }

    /// Every Requester ID the IOMMU may see on DMA from the PCI function `id`, the way Linux's
    /// `pci_for_each_dma_alias()` (drivers/pci/search.c) lists them: its own, its DMA alias
    /// quirks, then the alias each bridge above it introduces. A driver must program all of
    /// them. `None` for platform masters and unknown ids.
    pub fn dma_aliases(&self, id: &DeviceId) -> Option<Vec<Bdf>> {
        let i = *self.index.get(id)?;
        let f = self.pci_at(i)?;
        let mut out = vec![f.bdf];
        for devfn in &f.dma_alias_devfns {
            out.push(Bdf::new(f.bdf.segment, f.bdf.bus, *devfn));
        }
        for up in self.ancestors(i) {
            if let Some(alias) = self.pci_at(up).and_then(bridge_alias) {
                out.push(alias);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|b| seen.insert(*b));
        Some(out)
    }

    /// Linux `pci_acs_enabled(pdev, flags)` (drivers/pci/pci.c): whether the function
    /// *effectively* provides `flags`. Conventional functions and PCIe-to-PCI bridges never do;
    /// root and downstream ports need the controls (PCIe r3.0 §6.12.1.1); endpoints and upstream
    /// ports need them only as functions of a multifunction device (§6.12.1.2), a single
    /// function having no peer to redirect to (§6.12.1.3). Flags the function does not
    /// implement count as hardwired on, except EC. Device-specific ACS quirks
    /// (`pci_dev_specific_acs_enabled`) are not modelled: describe their effect as [`Acs`].
    pub fn acs_enabled(&self, id: &DeviceId, flags: AcsFlags) -> Result<(), AcsLack> {
        match self.index.get(id) {
            Some(&i) => self.acs_enabled_at(i, flags),
            None => Err(AcsLack::NotApplicable),
        }
    }

    /// Linux `pci_acs_path_enabled(pdev, NULL, flags)`: [`Self::acs_enabled`] for the function
    /// and every bridge above it up to the root bus. The error names the first one that lacks.
    pub fn acs_path_enabled(&self, id: &DeviceId, flags: AcsFlags) -> Result<(), AcsShortfall> {
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => return Err(AcsShortfall { device: id.clone(), lack: AcsLack::NotApplicable }),
        };
        self.acs_path_at(i, flags)
            .map_err(|(at, lack)| AcsShortfall { device: self.id_at(at), lack })
    }

    // ---- index-level helpers for the rules ----

    pub(crate) fn pci_at(&self, i: usize) -> Option<&PciFunction> {
        self.devices.get(i).and_then(Device::pci)
    }

    pub(crate) fn id_at(&self, i: usize) -> DeviceId {
        match self.devices.get(i) {
            Some(d) => d.id.clone(),
            // Unreachable for indices the topology handed out; a name that says so.
            None => DeviceId::Platform(format!("<device #{i}>")),
        }
    }

    pub(crate) fn upstream_at(&self, i: usize) -> Option<usize> {
        self.upstream.get(i).copied().flatten()
    }

    /// The bridges above a PCI function, nearest first. Bounded by the device count, so a
    /// (rejected at build) loop could not hang it.
    pub(crate) fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let mut next = self.upstream_at(i);
        let mut budget = self.devices.len();
        std::iter::from_fn(move || {
            let cur = next?;
            budget = budget.checked_sub(1)?;
            next = self.upstream_at(cur);
            Some(cur)
        })
    }

    pub(crate) fn acs_enabled_at(&self, i: usize, flags: AcsFlags) -> Result<(), AcsLack> {
        let f = self.pci_at(i).ok_or(AcsLack::NotApplicable)?;
        let flags_enabled = || {
            // pci_acs_flags_enabled(): missing capability bits are hardwired enabled, but
            // without the capability at all nothing is.
            let acs = f.acs.ok_or(AcsLack::NoCapability)?;
            let needed = flags & (acs.capability | AcsFlags::EC);
            let missing = needed - acs.control;
            if missing.is_empty() {
                Ok(())
            } else {
                Err(AcsLack::NotEnabled(missing))
            }
        };
        match f.pci_type {
            PciType::ConventionalEndpoint
            | PciType::ConventionalBridge
            | PciType::PcieToPciBridge => Err(AcsLack::NotApplicable),
            PciType::RootPort | PciType::SwitchDownstream => flags_enabled(),
            PciType::Endpoint | PciType::RcEndpoint | PciType::SwitchUpstream => {
                if f.multifunction {
                    flags_enabled()
                } else {
                    Ok(())
                }
            }
        }
    }

    pub(crate) fn acs_path_at(&self, i: usize, flags: AcsFlags) -> Result<(), (usize, AcsLack)> {
        std::iter::once(i)
            .chain(self.ancestors(i))
            .try_for_each(|j| self.acs_enabled_at(j, flags).map_err(|lack| (j, lack)))
    }
}

/// The Requester ID a bridge puts on requests it forwards from its secondary side, per
/// `pci_for_each_dma_alias()`: a PCIe-to-PCI/PCI-X bridge uses (secondary bus, 00.0) (PCI
/// Express to PCI/PCI-X Bridge Spec r1.0 §2.3); a conventional bridge its own; PCIe ports
/// forward the Requester ID unchanged.
pub(crate) fn bridge_alias(bridge: &PciFunction) -> Option<Bdf> {
    match bridge.pci_type {
        PciType::PcieToPciBridge => {
            bridge.secondary_bus.map(|bus| Bdf::new(bridge.bdf.segment, bus, DevFn::from_raw(0)))
        }
        PciType::ConventionalBridge => Some(bridge.bdf),
        _ => None,
    }
}

//! Describing a system, and what a description must satisfy: see [`TopologyBuilder`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{
    group, Acs, Bdf, DevFn, Device, DeviceId, DeviceKind, MergingInterconnect, ParseBdfError,
    PasidWidth, PciFunction, PciType, PlatformMaster, Scope, SecondaryInterface, Topology, Unit,
    UnitId, UnitKind,
};

/// The role a PCI function is described with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A root port on a root bus.
    RootPort,
    /// A switch upstream port, below a root port or downstream port.
    SwitchUpstream,
    /// A switch downstream port, on a switch's internal bus.
    SwitchDownstream,
    /// A PCIe-to-PCI/PCI-X bridge on a root bus or below a port.
    PcieToPciBridge,
    /// A conventional PCI-to-PCI bridge on a conventional bus.
    PciBridge,
    /// Anything that is not a bridge: an endpoint, an RCiEP, a conventional device.
    Endpoint,
}

impl Role {
    fn is_bridge(self) -> bool {
        self != Role::Endpoint
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::RootPort => "root port",
            Role::SwitchUpstream => "switch upstream port",
            Role::SwitchDownstream => "switch downstream port",
            Role::PcieToPciBridge => "PCIe-to-PCI bridge",
            Role::PciBridge => "PCI-to-PCI bridge",
            Role::Endpoint => "device",
        })
    }
}

/// Who provides a bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusOwner {
    /// A host bridge: the bus is a root bus.
    RootBus,
    /// A bridge or port: the bus is its secondary bus.
    Bridge {
        /// The bridge.
        bridge: Bdf,
        /// What it was described as.
        role: Role,
    },
}

impl fmt::Display for BusOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusOwner::RootBus => f.write_str("a root bus"),
            BusOwner::Bridge { bridge, role } => write!(f, "the bus below {role} {bridge}"),
        }
    }
}

/// A malformed description. Every variant names the element at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// A PCI address that does not parse.
    #[error(transparent)]
    BadBdf(#[from] ParseBdfError),
    /// Two devices with one address or name.
    #[error("{device} is described twice")]
    DuplicateDevice {
        /// The address or name.
        device: DeviceId,
    },
    /// Two units with one id.
    #[error("{unit} is described twice")]
    DuplicateUnit {
        /// The id.
        unit: UnitId,
    },
    /// Two interconnects with one name.
    #[error("interconnect {name} is described twice")]
    DuplicateInterconnect {
        /// The name.
        name: String,
    },
    /// A platform master name that is empty or reads as a PCI address (names are device ids).
    #[error("{name:?} cannot name a platform master: empty or a PCI address")]
    BadPlatformName {
        /// The name.
        name: String,
    },
    /// A bus number provided twice (two root buses, a bridge's secondary bus that is already a
    /// root bus or another bridge's).
    #[error("bus {segment:04x}:{bus:02x} is both {first} and {second}")]
    BusReused {
        /// Segment.
        segment: u16,
        /// Bus.
        bus: u8,
        /// Who claimed it first.
        first: BusOwner,
        /// Who claimed it again.
        second: BusOwner,
    },
    /// A function on a bus that no root bus or bridge provides: behind a port that does not
    /// exist.
    #[error("{device} sits on bus {segment:04x}:{bus:02x}, which no root bus or bridge provides")]
    NoSuchBus {
        /// The function.
        device: Bdf,
        /// Its segment.
        segment: u16,
        /// Its bus.
        bus: u8,
    },
    /// A function where the PCI hierarchy does not allow its role (an endpoint on a switch's
    /// internal bus, a downstream port below a root port, a root port below a bridge...).
    #[error("{role} {device} cannot sit on {on}")]
    Misplaced {
        /// The function.
        device: Bdf,
        /// Its role.
        role: Role,
        /// Where it was put.
        on: BusOwner,
    },
    /// A function other than device 0 on the link below a root or downstream port. A PCIe link
    /// is point to point: only device 0 is below it (Linux `only_one_child()`,
    /// drivers/pci/probe.c; ARI is not modelled).
    #[error("{device} is below {port} but is not device 0 of the link")]
    NotOnLink {
        /// The function.
        device: Bdf,
        /// The port.
        port: Bdf,
    },
    /// A bridge chain that never reaches a root bus (secondary buses loop).
    #[error("{device} is not below any root bus: its bridges form a loop")]
    NotBelowRoot {
        /// A function on the loop.
        device: Bdf,
    },
    /// A DMA alias that is not a devfn.
    #[error("{device}: DMA alias {alias_device:#x}.{alias_function} is not a device/function")]
    BadDmaAlias {
        /// The function with the quirk.
        device: Bdf,
        /// The alias's device number.
        alias_device: u8,
        /// The alias's function number.
        alias_function: u8,
    },
    /// An RMRR that is empty, wraps, or is not 4K aligned.
    #[error("{device}: RMRR {base:#x} + {len_bytes:#x} is not a 4K-aligned range")]
    BadRmrr {
        /// The function.
        device: Bdf,
        /// Its base.
        base: u64,
        /// Its length.
        len_bytes: u64,
    },
    /// A PASID width outside 1..=20.
    #[error("{device}: PASID width {bits} is outside 1..=20")]
    BadPasidWidth {
        /// The device.
        device: DeviceId,
        /// The width given.
        bits: u8,
    },
    /// An explicit assignment to a unit that does not exist.
    #[error("{device} is assigned to {unit}, which is not described")]
    NoSuchUnit {
        /// The device.
        device: DeviceId,
        /// The unit.
        unit: UnitId,
    },
    /// A device no unit covers.
    #[error("no IOMMU unit covers {device}")]
    NotCovered {
        /// The device.
        device: DeviceId,
    },
    /// A platform master assigned to a VT-d unit, which translates only PCI requests.
    #[error("{device} is a platform master but {unit} is a VT-d unit")]
    WrongUnitKind {
        /// The master.
        device: DeviceId,
        /// The unit.
        unit: UnitId,
    },
    /// A scope with `first > last`, or StreamIDs on a VT-d unit.
    #[error("{unit}: {scope:?} is not a scope this unit can have")]
    BadScope {
        /// The unit.
        unit: UnitId,
        /// The scope.
        scope: Scope,
    },
    /// Two units covering a common bus, segment or StreamID at the same precedence.
    #[error("{first} and {second} both cover {scope:?}")]
    ScopesOverlap {
        /// The unit described first.
        first: UnitId,
        /// The other.
        second: UnitId,
        /// The second unit's scope that overlaps.
        scope: Scope,
    },
    /// A platform master with no StreamID.
    #[error("{device} has no StreamID")]
    NoStreamId {
        /// The master.
        device: DeviceId,
    },
    /// A master behind an interconnect that is not described.
    #[error("{device} is behind interconnect {interconnect}, which is not described")]
    NoSuchInterconnect {
        /// The master.
        device: DeviceId,
        /// The name given.
        interconnect: String,
    },
    /// The isolation rules join devices behind different units. Groups are per unit, so the
    /// description's unit scopes split something the hardware cannot split.
    #[error(
        "{first} ({first_unit}) and {second} ({second_unit}) cannot be isolated from each other \
         but are behind different IOMMU units"
    )]
    GroupSpansUnits {
        /// A device of the would-be group.
        first: DeviceId,
        /// Its unit.
        first_unit: UnitId,
        /// A device of the same would-be group behind another unit.
        second: DeviceId,
        /// That unit.
        second_unit: UnitId,
    },
}

/// Something that names a PCI function: a [`Bdf`] or its text (`"01:00.0"`,
/// `"0001:01:00.0"`). Text that does not parse is reported by [`TopologyBuilder::build`].
pub trait IntoBdf {
    /// The address, or the text that did not parse.
    fn into_bdf(self) -> Result<Bdf, ParseBdfError>;
}

impl IntoBdf for Bdf {
    fn into_bdf(self) -> Result<Bdf, ParseBdfError> {
        Ok(self)
    }
}

impl IntoBdf for &str {
    fn into_bdf(self) -> Result<Bdf, ParseBdfError> {
        self.parse()
    }
}

impl IntoBdf for &String {
    fn into_bdf(self) -> Result<Bdf, ParseBdfError> {
        self.parse()
    }
}

impl IntoBdf for String {
    fn into_bdf(self) -> Result<Bdf, ParseBdfError> {
        self.parse()
    }
}

/// An IOMMU unit being described.
#[derive(Clone, Debug)]
pub struct UnitSpec {
    id: UnitId,
    kind: UnitKind,
    scopes: Vec<Scope>,
}

impl UnitSpec {
    /// Adds something the unit covers.
    pub fn scope(&mut self, scope: Scope) -> &mut Self {
        self.scopes.push(scope);
        self
    }
}

/// A PCI function being described.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    bdf: Result<Bdf, ParseBdfError>,
    role: Role,
    secondary_bus: Option<u8>,
    acs: Option<Acs>,
    dma_aliases: Vec<(u8, u8)>,
    pasid_bits: Option<u8>,
    ats: bool,
    pri: bool,
    no_tlp_prefix: bool,
    multifunction: bool,
    unit: Option<UnitId>,
    pci_x: bool,
    rmrrs: Vec<(u64, u64)>,
}

impl FunctionSpec {
    /// A firmware DMA range the platform names for this function (an ACPI DMAR RMRR, an IORT
    /// RMR): the device may DMA there at any time, so every domain it is attached to maps the
    /// range one to one, and nothing else may be mapped there.
    pub fn rmrr(&mut self, base: u64, len_bytes: u64) -> &mut Self {
        self.rmrrs.push((base, len_bytes));
        self
    }

    /// Gives it an ACS Extended Capability (without one it has none).
    pub fn acs(&mut self, acs: Acs) -> &mut Self {
        self.acs = Some(acs);
        self
    }

    /// A DMA alias quirk: it also sends requests as `device.function` on its own bus
    /// (Linux `pci_add_dma_alias()`).
    pub fn dma_alias(&mut self, device: u8, function: u8) -> &mut Self {
        self.dma_aliases.push((device, function));
        self
    }

    /// A PASID capability with Max PASID Width `bits` (1..=20).
    pub fn pasid(&mut self, bits: u8) -> &mut Self {
        self.pasid_bits = Some(bits);
        self
    }

    /// An ATS capability.
    pub fn ats(&mut self) -> &mut Self {
        self.ats = true;
        self
    }

    /// A PRI capability.
    pub fn pri(&mut self) -> &mut Self {
        self.pri = true;
        self
    }

    /// Clears Device Capabilities 2 End-End TLP Prefix Supported (set by default on PCIe
    /// functions), so PASIDs cannot pass it.
    pub fn no_tlp_prefix(&mut self) -> &mut Self {
        self.no_tlp_prefix = true;
        self
    }

    /// Sets the header's multifunction bit even if it is the only function in its slot.
    pub fn multifunction(&mut self) -> &mut Self {
        self.multifunction = true;
        self
    }

    /// Puts it behind `unit`, whatever the units' scopes say.
    pub fn unit(&mut self, unit: UnitId) -> &mut Self {
        self.unit = Some(unit);
        self
    }

    /// Makes a PCIe-to-PCI bridge's secondary interface PCI-X (no effect on other roles).
    pub fn pci_x(&mut self) -> &mut Self {
        self.pci_x = true;
        self
    }
}

/// A platform master being described.
#[derive(Clone, Debug)]
pub struct PlatformSpec {
    name: String,
    stream_ids: Vec<u32>,
    interconnect: Option<String>,
    pasid_bits: Option<u8>,
    unit: Option<UnitId>,
}

impl PlatformSpec {
    /// A StreamID its transactions carry.
    pub fn stream_id(&mut self, sid: u32) -> &mut Self {
        self.stream_ids.push(sid);
        self
    }

    /// Puts it behind a merging interconnect, which gives it the interconnect's StreamID.
    pub fn behind(&mut self, interconnect: &str) -> &mut Self {
        self.interconnect = Some(interconnect.to_owned());
        self
    }

    /// SubstreamID (PASID) width `bits` (1..=20).
    pub fn pasid(&mut self, bits: u8) -> &mut Self {
        self.pasid_bits = Some(bits);
        self
    }

    /// Puts it behind `unit`, whatever the units' StreamID scopes say.
    pub fn unit(&mut self, unit: UnitId) -> &mut Self {
        self.unit = Some(unit);
        self
    }
}

/// Describes a system; [`TopologyBuilder::build`] checks it and computes the groups.
///
/// The PCI hierarchy is described the way it is enumerated: root buses, then bridges and ports
/// each with the secondary bus it provides, then functions by address. Where a function sits
/// follows from its bus number, so "a device behind a port that does not exist" is a device on
/// a bus nobody provides. What a function *is* (PCIe or conventional, multifunction or not)
/// follows from where it sits and what sits beside it. Elements may be described in any order.
///
/// ```
/// use sviommu_core::topology::{Acs, Scope, Topology, UnitId, UnitKind};
///
/// let mut b = Topology::builder();
/// b.unit(UnitId(0), UnitKind::VtdDrhd).scope(Scope::Segment(0));
/// b.root_bus(0, 0x00);
/// b.root_port("00:01.0", 0x01).acs(Acs::isolated());
/// b.endpoint("01:00.0").pasid(20).ats().pri();
/// let topo = b.build()?;
/// assert_eq!(topo.groups().len(), 2);
/// # Ok::<(), sviommu_core::topology::TopologyError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TopologyBuilder {
    // Keyed by insertion number: the map's entry API hands back the new element without an
    // Option to unwrap.
    units: BTreeMap<usize, UnitSpec>,
    root_buses: Vec<(u16, u8)>,
    functions: BTreeMap<usize, FunctionSpec>,
    platforms: BTreeMap<usize, PlatformSpec>,
    interconnects: Vec<(String, u32)>,
}

impl TopologyBuilder {
    /// An IOMMU unit; give it scopes with [`UnitSpec::scope`].
    pub fn unit(&mut self, id: UnitId, kind: UnitKind) -> &mut UnitSpec {
        let key = self.units.len();
        self.units.entry(key).or_insert(UnitSpec { id, kind, scopes: Vec::new() })
    }

    /// A root bus of a segment (the bus a host bridge provides).
    pub fn root_bus(&mut self, segment: u16, bus: u8) -> &mut Self {
        self.root_buses.push((segment, bus));
        self
    }

    fn function(
        &mut self,
        bdf: impl IntoBdf,
        role: Role,
        secondary: Option<u8>,
    ) -> &mut FunctionSpec {
        let key = self.functions.len();
        self.functions.entry(key).or_insert(FunctionSpec {
            bdf: bdf.into_bdf(),
            role,
            secondary_bus: secondary,
            acs: None,
            dma_aliases: Vec::new(),
            pasid_bits: None,
            ats: false,
            pri: false,
            no_tlp_prefix: false,
            multifunction: false,
            unit: None,
            pci_x: false,
            rmrrs: Vec::new(),
        })
    }

    /// A root port on a root bus, providing `secondary_bus`.
    pub fn root_port(&mut self, bdf: impl IntoBdf, secondary_bus: u8) -> &mut FunctionSpec {
        self.function(bdf, Role::RootPort, Some(secondary_bus))
    }

    /// A switch upstream port below a root or downstream port; `internal_bus` is the switch's
    /// internal bus, where its downstream ports sit.
    pub fn switch_upstream(&mut self, bdf: impl IntoBdf, internal_bus: u8) -> &mut FunctionSpec {
        self.function(bdf, Role::SwitchUpstream, Some(internal_bus))
    }

    /// A switch downstream port on a switch's internal bus, providing `secondary_bus`.
    pub fn switch_downstream(&mut self, bdf: impl IntoBdf, secondary_bus: u8) -> &mut FunctionSpec {
        self.function(bdf, Role::SwitchDownstream, Some(secondary_bus))
    }

    /// A PCIe-to-PCI/PCI-X bridge providing the conventional bus `secondary_bus`.
    pub fn pcie_to_pci_bridge(
        &mut self,
        bdf: impl IntoBdf,
        secondary_bus: u8,
    ) -> &mut FunctionSpec {
        self.function(bdf, Role::PcieToPciBridge, Some(secondary_bus))
    }

    /// A conventional PCI-to-PCI bridge on a conventional bus, providing `secondary_bus`.
    pub fn pci_bridge(&mut self, bdf: impl IntoBdf, secondary_bus: u8) -> &mut FunctionSpec {
        self.function(bdf, Role::PciBridge, Some(secondary_bus))
    }

    /// A non-bridge function: a PCIe endpoint below a port, an RCiEP on a root bus, or a
    /// conventional device behind a bridge (which one follows from its bus).
    pub fn endpoint(&mut self, bdf: impl IntoBdf) -> &mut FunctionSpec {
        self.function(bdf, Role::Endpoint, None)
    }

    /// A platform master behind an SMMUv3, named `name`.
    pub fn platform(&mut self, name: &str) -> &mut PlatformSpec {
        let key = self.platforms.len();
        self.platforms.entry(key).or_insert(PlatformSpec {
            name: name.to_owned(),
            stream_ids: Vec::new(),
            interconnect: None,
            pasid_bits: None,
            unit: None,
        })
    }

    /// An interconnect that gives every master behind it the StreamID `stream_id`.
    pub fn interconnect(&mut self, name: &str, stream_id: u32) -> &mut Self {
        self.interconnects.push((name.to_owned(), stream_id));
        self
    }

    /// Checks the description and computes the groups.
    pub fn build(&self) -> Result<Topology, TopologyError> {
        let units = self.check_units()?;
        let interconnects = self.check_interconnects()?;
        let (mut devices, upstream) = self.pci_devices(&units)?;
        devices.extend(self.platform_devices(&units, &interconnects)?);

        let mut index = BTreeMap::new();
        for (i, d) in devices.iter().enumerate() {
            if index.insert(d.id.clone(), i).is_some() {
                return Err(TopologyError::DuplicateDevice { device: d.id.clone() });
            }
        }
        let mut upstream = upstream;
        upstream.resize(devices.len(), None);
        let mut topo = Topology {
            units,
            devices,
            index,
            upstream,
            groups: Vec::new(),
            group_index: Vec::new(),
        };
        let (groups, group_index) = group::compute(&topo)?;
        topo.groups = groups;
        topo.group_index = group_index;
        Ok(topo)
    }

    fn check_units(&self) -> Result<Vec<Unit>, TopologyError> {
        let mut units: Vec<Unit> = Vec::new();
        for spec in self.units.values() {
            if units.iter().any(|u| u.id == spec.id) {
                return Err(TopologyError::DuplicateUnit { unit: spec.id });
            }
            for scope in &spec.scopes {
                let stream_on_vtd =
                    matches!(scope, Scope::StreamIds { .. }) && spec.kind == UnitKind::VtdDrhd;
                if !scope.well_formed() || stream_on_vtd {
                    return Err(TopologyError::BadScope { unit: spec.id, scope: *scope });
                }
                if let Some(other) =
                    units.iter().find(|u| u.scopes.iter().any(|s| s.overlaps(scope)))
                {
                    return Err(TopologyError::ScopesOverlap {
                        first: other.id,
                        second: spec.id,
                        scope: *scope,
                    });
                }
            }
            units.push(Unit { id: spec.id, kind: spec.kind, scopes: spec.scopes.clone() });
        }
        units.sort_by_key(|u| u.id);
        Ok(units)
    }

    fn check_interconnects(&self) -> Result<BTreeMap<String, u32>, TopologyError> {
        let mut out = BTreeMap::new();
        for (name, sid) in &self.interconnects {
            if out.insert(name.clone(), *sid).is_some() {
                return Err(TopologyError::DuplicateInterconnect { name: name.clone() });
            }
        }
        Ok(out)
    }

    /// The PCI functions, sorted by address, and each one's upstream bridge index.
    fn pci_devices(
        &self,
        units: &[Unit],
    ) -> Result<(Vec<Device>, Vec<Option<usize>>), TopologyError> {
        let mut specs: Vec<(Bdf, &FunctionSpec)> = Vec::new();
        for spec in self.functions.values() {
            let bdf = spec.bdf.clone()?;
            specs.push((bdf, spec));
        }
        specs.sort_by_key(|(bdf, _)| *bdf);
        if let Some(w) = specs.windows(2).find(|w| matches!(w, [(a, _), (b, _)] if a == b)) {
            if let Some((bdf, _)) = w.first() {
                return Err(TopologyError::DuplicateDevice { device: DeviceId::Pci(*bdf) });
            }
        }

        // Who provides each bus: root buses first, then bridges in address order.
        let mut buses: BTreeMap<(u16, u8), (BusOwner, Option<usize>)> = BTreeMap::new();
        let mut claim = |segment: u16, bus: u8, owner: BusOwner, idx: Option<usize>| {
            if let Some((first, _)) = buses.get(&(segment, bus)) {
                return Err(TopologyError::BusReused {
                    segment,
                    bus,
                    first: *first,
                    second: owner,
                });
            }
            buses.insert((segment, bus), (owner, idx));
            Ok(())
        };
        for &(segment, bus) in &self.root_buses {
            claim(segment, bus, BusOwner::RootBus, None)?;
        }
        for (i, (bdf, spec)) in specs.iter().enumerate() {
            if let (true, Some(secondary)) = (spec.role.is_bridge(), spec.secondary_bus) {
                claim(
                    bdf.segment,
                    secondary,
                    BusOwner::Bridge { bridge: *bdf, role: spec.role },
                    Some(i),
                )?;
            }
        }

        // Where each function sits and what that makes it.
        let mut upstream = Vec::with_capacity(specs.len());
        let mut types = Vec::with_capacity(specs.len());
        for (bdf, spec) in &specs {
            let (owner, parent) =
                *buses.get(&(bdf.segment, bdf.bus)).ok_or(TopologyError::NoSuchBus {
                    device: *bdf,
                    segment: bdf.segment,
                    bus: bdf.bus,
                })?;
            let parent_role = match owner {
                BusOwner::RootBus => None,
                BusOwner::Bridge { role, .. } => Some(role),
            };
            let misplaced =
                || TopologyError::Misplaced { device: *bdf, role: spec.role, on: owner };
            let pci_type = place(spec.role, parent_role).ok_or_else(misplaced)?;
            if let BusOwner::Bridge { bridge, role: Role::RootPort | Role::SwitchDownstream } =
                owner
            {
                if bdf.devfn.device() != 0 {
                    return Err(TopologyError::NotOnLink { device: *bdf, port: bridge });
                }
            }
            upstream.push(parent);
            types.push(pci_type);
        }
        for (i, (bdf, _)) in specs.iter().enumerate() {
            let mut cur = Some(i);
            let mut budget = specs.len() + 1;
            while let Some(c) = cur {
                budget =
                    budget.checked_sub(1).ok_or(TopologyError::NotBelowRoot { device: *bdf })?;
                cur = upstream.get(c).copied().flatten();
            }
        }

        let mut per_slot: BTreeMap<(u16, u8, u8), usize> = BTreeMap::new();
        for (bdf, _) in &specs {
            *per_slot.entry(bdf.slot()).or_default() += 1;
        }

        let mut devices = Vec::with_capacity(specs.len());
        for ((bdf, spec), pci_type) in specs.iter().zip(types) {
            let id = DeviceId::Pci(*bdf);
            let mut dma_alias_devfns = Vec::new();
            for &(d, f) in &spec.dma_aliases {
                let devfn = DevFn::new(d, f).ok_or(TopologyError::BadDmaAlias {
                    device: *bdf,
                    alias_device: d,
                    alias_function: f,
                })?;
                if !dma_alias_devfns.contains(&devfn) {
                    dma_alias_devfns.push(devfn);
                }
            }
            let mut rmrrs = Vec::new();
            for &(base, len_bytes) in &spec.rmrrs {
                let bad = TopologyError::BadRmrr { device: *bdf, base, len_bytes };
                let end = base.checked_add(len_bytes).ok_or(bad.clone())?;
                if len_bytes == 0 || (base | len_bytes) & 0xfff != 0 {
                    return Err(bad);
                }
                rmrrs.push(base..end);
            }
            let pasid = match spec.pasid_bits {
                None => None,
                Some(bits) => Some(
                    PasidWidth::new(bits)
                        .ok_or_else(|| TopologyError::BadPasidWidth { device: id.clone(), bits })?,
                ),
            };
            let unit = pci_unit(units, &id, *bdf, spec.unit)?;
            let secondary_interface =
                (pci_type == PciType::PcieToPciBridge).then_some(if spec.pci_x {
                    SecondaryInterface::PciX
                } else {
                    SecondaryInterface::Pci
                });
            let function = PciFunction {
                bdf: *bdf,
                pci_type,
                multifunction: spec.multifunction
                    || per_slot.get(&bdf.slot()).is_some_and(|&n| n > 1),
                acs: spec.acs,
                dma_alias_devfns,
                pasid,
                ats: spec.ats,
                pri: spec.pri,
                ee_tlp_prefix: pci_type.is_pcie() && !spec.no_tlp_prefix,
                secondary_bus: spec.secondary_bus,
                secondary_interface,
                rmrrs,
            };
            devices.push(Device { id, unit, kind: DeviceKind::Pci(function) });
        }
        Ok((devices, upstream))
    }

    /// The platform masters, sorted by name.
    fn platform_devices(
        &self,
        units: &[Unit],
        interconnects: &BTreeMap<String, u32>,
    ) -> Result<Vec<Device>, TopologyError> {
        let mut specs: Vec<&PlatformSpec> = self.platforms.values().collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.name.is_empty() || spec.name.parse::<Bdf>().is_ok() {
                return Err(TopologyError::BadPlatformName { name: spec.name.clone() });
            }
            let id = DeviceId::Platform(spec.name.clone());
            if !seen.insert(spec.name.clone()) {
                return Err(TopologyError::DuplicateDevice { device: id });
            }
            let interconnect = match &spec.interconnect {
                None => None,
                Some(name) => {
                    let sid = interconnects.get(name).ok_or_else(|| {
                        TopologyError::NoSuchInterconnect {
                            device: id.clone(),
                            interconnect: name.clone(),
                        }
                    })?;
                    Some(MergingInterconnect { name: name.clone(), stream_id: *sid })
                }
            };
            let mut stream_ids: Vec<u32> = spec.stream_ids.clone();
            stream_ids.extend(interconnect.as_ref().map(|ic| ic.stream_id));
            stream_ids.sort_unstable();
            stream_ids.dedup();
            let Some(&first_sid) = stream_ids.first() else {
                return Err(TopologyError::NoStreamId { device: id });
            };
            let unit = match spec.unit {
                Some(u) => {
                    let unit = units
                        .iter()
                        .find(|x| x.id == u)
                        .ok_or_else(|| TopologyError::NoSuchUnit { device: id.clone(), unit: u })?;
                    if unit.kind != UnitKind::SmmuV3 {
                        return Err(TopologyError::WrongUnitKind { device: id, unit: u });
                    }
                    u
                }
                None => {
                    let unit = units
                        .iter()
                        .find(|u| u.covers_stream_id(first_sid))
                        .ok_or_else(|| TopologyError::NotCovered { device: id.clone() })?;
                    if !stream_ids.iter().all(|&s| unit.covers_stream_id(s)) {
                        return Err(TopologyError::NotCovered { device: id });
                    }
                    unit.id
                }
            };
            let pasid = match spec.pasid_bits {
                None => None,
                Some(bits) => Some(
                    PasidWidth::new(bits)
                        .ok_or_else(|| TopologyError::BadPasidWidth { device: id.clone(), bits })?,
                ),
            };
            let master =
                PlatformMaster { name: spec.name.clone(), stream_ids, interconnect, pasid };
            out.push(Device { id, unit, kind: DeviceKind::Platform(master) });
        }
        Ok(out)
    }
}

/// What a function described as `role` is when it sits below `parent` (`None`: a root bus), or
/// `None` if the PCI hierarchy does not allow it there.
fn place(role: Role, parent: Option<Role>) -> Option<PciType> {
    use Role::*;
    Some(match (role, parent) {
        (RootPort, None) => PciType::RootPort,
        (Endpoint, None) => PciType::RcEndpoint,
        (Endpoint, Some(RootPort | SwitchDownstream)) => PciType::Endpoint,
        (Endpoint, Some(PcieToPciBridge | PciBridge)) => PciType::ConventionalEndpoint,
        (SwitchUpstream, Some(RootPort | SwitchDownstream)) => PciType::SwitchUpstream,
        (SwitchDownstream, Some(SwitchUpstream)) => PciType::SwitchDownstream,
        (PcieToPciBridge, None | Some(RootPort | SwitchDownstream)) => PciType::PcieToPciBridge,
        (PciBridge, Some(PcieToPciBridge | PciBridge)) => PciType::ConventionalBridge,
        _ => return None,
    })
}

/// The unit of a PCI function: explicit, else a bus-range scope, else a segment scope.
fn pci_unit(
    units: &[Unit],
    id: &DeviceId,
    bdf: Bdf,
    explicit: Option<UnitId>,
) -> Result<UnitId, TopologyError> {
    if let Some(u) = explicit {
        return units
            .iter()
            .find(|x| x.id == u)
            .map(|x| x.id)
            .ok_or_else(|| TopologyError::NoSuchUnit { device: id.clone(), unit: u });
    }
    units
        .iter()
        .find(|u| u.covers_bus(bdf.segment, bdf.bus))
        .or_else(|| units.iter().find(|u| u.covers_segment(bdf.segment)))
        .map(|u| u.id)
        .ok_or_else(|| TopologyError::NotCovered { device: id.clone() })
}

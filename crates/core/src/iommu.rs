//! [`Iommu`]: the system's IOMMU API: domains, attach, map and unmap over the units' drivers.
//!
//! Every call checks everything the core knows before the first driver call, so a refused
//! call changes nothing: no table, cache or list.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::domain::{Domain, DomainId, DomainKind, DomainKindName, FlushPolicy, Mapping};
use crate::driver::{HwTarget, IommuDriver, Model, Reach};
use crate::error::CoreError;
use crate::topology::{DeviceId, DeviceKind, Group, GroupId, Topology, UnitId};

/// What a call names: the seed's targets. A device resolves to its group; a domain to every
/// group attached to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One device (its whole group is reached).
    Device(DeviceId),
    /// One IOMMU group.
    Group(GroupId),
    /// Every group attached to a domain.
    Domain(DomainId),
}

impl From<DeviceId> for Target {
    fn from(d: DeviceId) -> Self {
        Self::Device(d)
    }
}

impl From<GroupId> for Target {
    fn from(g: GroupId) -> Self {
        Self::Group(g)
    }
}

/// What an attach, bind or invalidation reached: every group and device, named or not.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reached {
    /// The groups.
    pub groups: Vec<GroupId>,
    /// Every device of those groups, and any other device the hardware change reached (an
    /// SMMUv3 CD table shared by a domain's devices).
    pub devices: Vec<DeviceId>,
}

/// One unit's driver and what the core keeps about it.
pub(crate) struct UnitState {
    pub(crate) driver: Box<dyn IommuDriver>,
}

/// A mapping [`Iommu::map_undoable`] made, with what its driver maps linked and allocated:
/// [`Iommu::undo_map`] takes it back exactly.
#[derive(Debug)]
pub struct MapUndo {
    domain: DomainId,
    iova: u64,
    len: u64,
    maps: Vec<crate::driver::Mapped>,
}

/// The IOMMU API over a whole system: its topology, one driver per unit, the domains.
pub struct Iommu {
    pub(crate) topology: Topology,
    pub(crate) units: BTreeMap<UnitId, UnitState>,
    pub(crate) domains: BTreeMap<DomainId, Domain>,
    next_domain: u32,
    /// The domain translating each group's requests without PASID; a group absent here is
    /// blocked (Linux's blocking domain is the default here: nothing is reachable until
    /// attached).
    pub(crate) group_domain: BTreeMap<GroupId, DomainId>,
    /// PASIDs, one global number space.
    pub(crate) pasids: crate::pasid_alloc::PasidAllocator,
    /// Guest PASID tables bound with `bind_pasid_table`, by group.
    pub(crate) pasid_tables: BTreeMap<GroupId, crate::bind::BoundPasidTable>,
    /// Process address spaces bound with `sva_bind`.
    pub(crate) spaces: BTreeMap<crate::AddressSpaceId, crate::bind::SvaSpace>,
    /// Faults and page requests on their way to the devices' handlers.
    pub(crate) faults: crate::fault::FaultState,
}

impl std::fmt::Debug for Iommu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iommu")
            .field("units", &self.units.keys().collect::<Vec<_>>())
            .field("domains", &self.domains)
            .field("group_domain", &self.group_domain)
            .finish_non_exhaustive()
    }
}

impl Iommu {
    /// The API over `topology`, with no drivers yet.
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            units: BTreeMap::new(),
            domains: BTreeMap::new(),
            next_domain: 1,
            group_domain: BTreeMap::new(),
            pasids: crate::pasid_alloc::PasidAllocator::default(),
            pasid_tables: BTreeMap::new(),
            spaces: BTreeMap::new(),
            faults: crate::fault::FaultState::default(),
        }
    }

    /// Gives the unit `unit` its driver. The driver's architecture must be the unit's.
    pub fn add_driver(
        &mut self,
        unit: UnitId,
        driver: Box<dyn IommuDriver>,
    ) -> Result<(), CoreError> {
        let u = self.topology.unit(unit).ok_or(CoreError::NoSuchUnit(unit))?;
        let unit_model = model_of(u.kind);
        let driver_model = driver.caps().model;
        if unit_model != driver_model {
            return Err(CoreError::ModelMismatch { unit, unit_model, config: driver_model });
        }
        let mut driver = driver;
        // Linux's probe_device: the driver learns each device's ATS and PRI before any attach.
        for dev in self.topology.devices().iter().filter(|d| d.unit == unit) {
            let (ats, pri) = match &dev.kind {
                DeviceKind::Pci(f) => (f.ats, f.pri),
                DeviceKind::Platform(_) => (false, false),
            };
            if ats || pri {
                let ids = self.request_ids(&dev.id)?;
                driver
                    .probe_device(&ids, ats, pri)
                    .map_err(|source| CoreError::Driver { unit, source })?;
            }
        }
        self.units.insert(unit, UnitState { driver });
        Ok(())
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// One domain.
    pub fn domain(&self, id: DomainId) -> Result<&Domain, CoreError> {
        self.domains.get(&id).ok_or(CoreError::NoSuchDomain(id))
    }

    /// The domain a group's requests without PASID go to (`None`: blocked).
    pub fn group_domain(&self, group: GroupId) -> Option<DomainId> {
        self.group_domain.get(&group).copied()
    }

    /// A unit's driver.
    pub fn driver(&self, unit: UnitId) -> Result<&dyn IommuDriver, CoreError> {
        self.units.get(&unit).map(|u| &*u.driver).ok_or(CoreError::NoSuchUnit(unit))
    }

    pub(crate) fn driver_mut(&mut self, unit: UnitId) -> Result<&mut dyn IommuDriver, CoreError> {
        match self.units.get_mut(&unit) {
            Some(u) => Ok(&mut *u.driver),
            None => Err(CoreError::NoSuchUnit(unit)),
        }
    }

    // --- domains -----------------------------------------------------------------------------

    /// A new domain of `kind` on `unit`. Nested and SVA domains come from
    /// [`attach_pasid`](Self::attach_pasid) and `sva_bind`'s own paths, which check their
    /// stage-1 configuration; this takes any kind but checks it the same way.
    pub fn alloc_domain(&mut self, unit: UnitId, kind: DomainKind) -> Result<DomainId, CoreError> {
        let caps = self.driver(unit)?.caps().clone();
        let model = caps.model;
        match kind {
            DomainKind::Blocked => {}
            DomainKind::Identity if !caps.identity => {
                return Err(CoreError::Unsupported { unit, model, what: "pass requests through" });
            }
            DomainKind::Identity => {}
            DomainKind::Paging { nesting_parent: true, .. } if !caps.nesting => {
                return Err(CoreError::Unsupported {
                    unit,
                    model,
                    what: "nest stage 1 over stage 2",
                });
            }
            DomainKind::Paging { flush: FlushPolicy::FlushQueue { batch: 0 }, .. } => {
                return Err(CoreError::BadRange);
            }
            DomainKind::Paging { .. } => {}
            DomainKind::Nested { parent, s1 } => {
                self.check_nested(unit, parent, s1)?;
            }
            DomainKind::Sva { s1, .. } => {
                self.check_stage1(unit, s1, "share a process's page table")?
            }
        }
        let hw = match kind {
            DomainKind::Blocked | DomainKind::Identity => None,
            DomainKind::Paging { nesting_parent, .. } => {
                Some(self.driver_op(unit, |d| d.alloc_paging(nesting_parent))?)
            }
            DomainKind::Nested { s1, .. } | DomainKind::Sva { s1, .. } => {
                Some(self.driver_op(unit, |d| d.alloc_tag(&s1))?)
            }
        };
        let id = DomainId(self.next_domain);
        self.next_domain += 1;
        self.domains.insert(id, Domain::new(id, unit, kind, hw));
        Ok(id)
    }

    /// Frees a domain nothing uses (and that no nested domain sits on).
    pub fn free_domain(&mut self, id: DomainId) -> Result<(), CoreError> {
        let d = self.domain(id)?;
        let parent_of_some = self
            .domains
            .values()
            .any(|o| matches!(o.kind, DomainKind::Nested { parent, .. } if parent == id));
        if d.in_use() || parent_of_some {
            return Err(CoreError::DomainInUse(id));
        }
        let (unit, hw) = (d.unit, d.hw);
        if let Some(hw) = hw {
            self.driver_op(unit, |drv| drv.free(hw))?;
        }
        self.domains.remove(&id);
        Ok(())
    }

    /// The stage-1 configuration is one the unit runs: the seed's model check first, then the
    /// format.
    pub(crate) fn check_stage1(
        &self,
        unit: UnitId,
        s1: crate::driver::Stage1Config,
        what: &'static str,
    ) -> Result<(), CoreError> {
        let caps = self.driver(unit)?.caps();
        if s1.format.model() != caps.model {
            return Err(CoreError::ModelMismatch {
                unit,
                unit_model: caps.model,
                config: s1.format.model(),
            });
        }
        if !caps.runs(s1.format) {
            return Err(CoreError::Unsupported { unit, model: caps.model, what });
        }
        Ok(())
    }

    fn check_nested(
        &self,
        unit: UnitId,
        parent: DomainId,
        s1: crate::driver::Stage1Config,
    ) -> Result<(), CoreError> {
        let p = self.domain(parent)?;
        if !matches!(p.kind, DomainKind::Paging { nesting_parent: true, .. }) || p.unit != unit {
            return Err(CoreError::WrongDomainKind {
                domain: parent,
                is: p.kind.name(),
                needs: DomainKindName::Paging,
            });
        }
        self.check_stage1(unit, s1, "walk this stage-1 format nested")
    }

    pub(crate) fn hw_of(&self, id: DomainId) -> Result<crate::driver::HwDomain, CoreError> {
        let d = self.domain(id)?;
        d.hw.ok_or(CoreError::WrongDomainKind {
            domain: id,
            is: d.kind.name(),
            needs: DomainKindName::Paging,
        })
    }

    /// Runs one driver call, naming the unit in its error.
    pub(crate) fn driver_op<T>(
        &mut self,
        unit: UnitId,
        op: impl FnOnce(&mut dyn IommuDriver) -> Result<T, crate::driver::DriverError>,
    ) -> Result<T, CoreError> {
        op(self.driver_mut(unit)?).map_err(|source| CoreError::Driver { unit, source })
    }

    /// What a domain's hardware target is.
    pub(crate) fn hw_target(&self, id: DomainId) -> Result<HwTarget, CoreError> {
        let d = self.domain(id)?;
        Ok(match d.kind {
            DomainKind::Blocked => HwTarget::Blocked,
            DomainKind::Identity => HwTarget::Identity,
            DomainKind::Paging { .. } => HwTarget::Paging(self.hw_of(id)?),
            DomainKind::Nested { parent, s1 } => {
                HwTarget::Nested { tag: self.hw_of(id)?, parent: self.hw_of(parent)?, s1 }
            }
            DomainKind::Sva { s1, .. } => HwTarget::Sva { tag: self.hw_of(id)?, s1 },
        })
    }

    // --- groups, devices, request IDs --------------------------------------------------------

    /// The groups `target` names.
    pub fn resolve(&self, target: &Target) -> Result<Vec<GroupId>, CoreError> {
        match target {
            Target::Device(dev) => {
                let g = self
                    .topology
                    .group_of(dev)
                    .ok_or_else(|| CoreError::NoSuchDevice(dev.clone()))?;
                Ok(vec![g.id])
            }
            Target::Group(g) => {
                self.group(*g)?;
                Ok(vec![*g])
            }
            Target::Domain(d) => {
                let d = self.domain(*d)?;
                let mut gs: Vec<GroupId> = d.groups.iter().copied().collect();
                gs.extend(d.pasids.iter().map(|(g, _)| *g));
                gs.sort();
                gs.dedup();
                Ok(gs)
            }
        }
    }

    pub(crate) fn group(&self, id: GroupId) -> Result<&Group, CoreError> {
        self.topology.groups().iter().find(|g| g.id == id).ok_or(CoreError::NoSuchGroup(id))
    }

    /// The request IDs the device's unit sees its requests under: on VT-d its Requester IDs
    /// (its own, its quirk aliases, the alias a PCIe-to-PCI bridge gives it); on SMMUv3 its
    /// StreamIDs (IMPDEF: PCI StreamID = Requester ID, an identity IORT ID mapping).
    pub fn request_ids(&self, device: &DeviceId) -> Result<Vec<u32>, CoreError> {
        let dev =
            self.topology.device(device).ok_or_else(|| CoreError::NoSuchDevice(device.clone()))?;
        Ok(match &dev.kind {
            DeviceKind::Pci(_) => self
                .topology
                .dma_aliases(device)
                .unwrap_or_default()
                .into_iter()
                .map(|b| u32::from(b.rid()))
                .collect(),
            DeviceKind::Platform(p) => p.stream_ids.clone(),
        })
    }

    /// The device a request ID belongs to on `unit`: the device whose own ID it is, else the
    /// first whose alias it is.
    pub fn device_of(&self, unit: UnitId, request_id: u32) -> Option<DeviceId> {
        let on_unit = self.topology.devices().iter().filter(|d| d.unit == unit);
        let mut alias_owner = None;
        for d in on_unit {
            let ids = self.request_ids(&d.id).unwrap_or_default();
            if ids.first() == Some(&request_id) {
                return Some(d.id.clone());
            }
            if alias_owner.is_none() && ids.contains(&request_id) {
                alias_owner = Some(d.id.clone());
            }
        }
        alias_owner
    }

    /// Every device on `unit` that sends requests with `request_id` (as its own or as an alias):
    /// masters the unit cannot tell apart all do.
    pub fn devices_with(&self, unit: UnitId, request_id: u32) -> Vec<DeviceId> {
        self.topology
            .devices()
            .iter()
            .filter(|d| d.unit == unit)
            .filter(|d| self.request_ids(&d.id).is_ok_and(|ids| ids.contains(&request_id)))
            .map(|d| d.id.clone())
            .collect()
    }

    /// Turns a driver's reach (request IDs) into devices, with the groups they are in.
    pub(crate) fn reached(&self, unit: UnitId, groups: &[GroupId], reach: &Reach) -> Reached {
        let mut out = Reached { groups: groups.to_vec(), devices: Vec::new() };
        for g in groups {
            if let Ok(group) = self.group(*g) {
                out.devices.extend(group.members.iter().cloned());
            }
        }
        for id in &reach.request_ids {
            out.devices.extend(self.devices_with(unit, *id));
        }
        out.devices.sort();
        out.devices.dedup();
        out
    }

    // --- attach ------------------------------------------------------------------------------

    /// Attaches `domain` to the requests without PASID of every group `target` names (a device
    /// names its group): a paging, blocked or identity domain, or a nested one where the unit
    /// nests requests without PASID (`UnitCaps::rid_nesting`: VT-d's RID_PASID entry, as
    /// Linux's `intel_nested_attach_dev()`). Returns every device reached.
    pub fn attach(&mut self, domain: DomainId, target: &Target) -> Result<Reached, CoreError> {
        let groups = self.resolve(target)?;
        let d = self.domain(domain)?;
        let rid_nesting = self.driver(d.unit)?.caps().rid_nesting;
        let nested_ok = rid_nesting && matches!(d.kind, DomainKind::Nested { .. });
        if matches!(d.kind, DomainKind::Nested { .. } | DomainKind::Sva { .. }) && !nested_ok {
            return Err(CoreError::WrongDomainKind {
                domain,
                is: d.kind.name(),
                needs: DomainKindName::Paging,
            });
        }
        let unit = d.unit;
        for g in &groups {
            self.check_group_on_unit(domain, *g)?;
            self.check_reserved_unmapped(domain, *g)?;
        }
        let hw = self.hw_target(domain)?;
        if matches!(self.domain(domain)?.kind, DomainKind::Paging { .. }) {
            // The firmware's DMA must keep working the moment the device is switched over.
            for g in &groups {
                for dev in self.group(*g)?.members.clone() {
                    for r in self.direct_regions(&dev) {
                        if self.domain(domain)?.mapped_in(&r).is_none() {
                            self.map_pages(domain, r.start, r.start, r.end - r.start, true)?;
                        }
                    }
                }
            }
        }
        let mut reach = Reach::default();
        for g in &groups {
            let r = self.program_rid(*g, hw)?;
            reach.request_ids.extend(r.request_ids);
            self.forget_group(*g, None);
            self.group_domain.insert(*g, domain);
            let named = self.named_in(target, *g)?;
            if let Some(d) = self.domains.get_mut(&domain) {
                d.groups.insert(*g);
                d.named.extend(named.into_iter().map(|n| (n, None)));
            }
        }
        Ok(self.reached(unit, &groups, &reach))
    }

    /// Returns every group `target` names to blocked: their requests without PASID fault.
    pub fn detach(&mut self, target: &Target) -> Result<Reached, CoreError> {
        let groups = self.resolve(target)?;
        let mut unit = None;
        for g in &groups {
            let u = self.group(*g)?.unit;
            self.driver(u)?;
            unit = Some(u);
        }
        let mut reach = Reach::default();
        for g in &groups {
            let r = self.program_rid(*g, HwTarget::Blocked)?;
            reach.request_ids.extend(r.request_ids);
            self.forget_group(*g, None);
        }
        Ok(match unit {
            Some(u) => self.reached(u, &groups, &reach),
            None => Reached::default(),
        })
    }

    /// Undoes a first attach of `target` that failed: for each of its groups that nothing is
    /// attached to (with or without PASID), the unit gives back what configuring its request
    /// IDs set up, so they are answered as before (a two-level Stream table's level-2 array
    /// goes, and C_BAD_STREAMID comes back). Groups with an attachment are left alone.
    pub fn release_unattached(&mut self, target: &Target) -> Result<(), CoreError> {
        for g in self.resolve(target)? {
            let used = self.group_domain.contains_key(&g)
                || self.domains.values().any(|d| d.pasids.iter().any(|(pg, _)| *pg == g));
            if used {
                continue;
            }
            let (unit, ids) = (self.group(g)?.unit, self.group_request_ids(g)?);
            self.driver_op(unit, |d| d.release_unattached(&ids))?;
        }
        Ok(())
    }

    /// Points `group`'s requests without PASID at `target`. Where the unit binds a device's
    /// PASIDs in the table of that domain (`UnitCaps::pasid_table_follows_domain`), the
    /// group's PASIDs leave the old table first and are bound in the new one after, so every
    /// PASID the core records as attached stays attached in the hardware; a target without a
    /// table is refused while the group has PASIDs, and a failure puts everything back.
    fn program_rid(&mut self, group: GroupId, target: HwTarget) -> Result<Reach, CoreError> {
        let unit = self.group(group)?.unit;
        let mut pasids = Vec::new();
        if self.driver(unit)?.caps().pasid_table_follows_domain {
            for d in self.domains.values() {
                for (g, p) in &d.pasids {
                    if *g == group {
                        pasids.push((*p, d.id, matches!(d.kind, DomainKind::Nested { .. })));
                    }
                }
            }
        }
        // Nested PASIDs sit in a table of the device's own, not of its domain: the driver
        // decides about them.
        if pasids.is_empty() || pasids.iter().any(|(_, _, nested)| *nested) {
            return self.program_group(group, None, target);
        }
        if !matches!(target, HwTarget::Paging(_)) {
            return Err(CoreError::PasidsAttached { device: self.group_device(group) });
        }
        let pasids: Vec<(crate::Pasid, DomainId)> =
            pasids.into_iter().map(|(p, d, _)| (p, d)).collect();
        let previous = self.current_target(group, None)?;
        let mut taken = Vec::new();
        for &(p, d) in &pasids {
            if let Err(e) = self.program_group(group, Some(p), HwTarget::Blocked) {
                self.rebind_pasids(group, &taken);
                return Err(e);
            }
            taken.push((p, d));
        }
        let reach = match self.program_group(group, None, target) {
            Ok(r) => r,
            Err(e) => {
                self.rebind_pasids(group, &pasids);
                return Err(e);
            }
        };
        for (i, &(p, d)) in pasids.iter().enumerate() {
            let bound = self.hw_target(d).and_then(|t| self.program_group(group, Some(p), t));
            if let Err(e) = bound {
                // Best effort, as every undo here: out of the new table, the old domain back,
                // the PASIDs back in its table.
                for &(q, _) in pasids.iter().take(i + 1) {
                    let _ = self.program_group(group, Some(q), HwTarget::Blocked);
                }
                let _ = self.program_group(group, None, previous);
                self.rebind_pasids(group, &pasids);
                return Err(e);
            }
        }
        Ok(reach)
    }

    /// Binds each of `pasids` of `group` to its domain again (undoing `program_rid`).
    fn rebind_pasids(&mut self, group: GroupId, pasids: &[(crate::Pasid, DomainId)]) {
        for &(p, d) in pasids {
            if let Ok(t) = self.hw_target(d) {
                let _ = self.program_group(group, Some(p), t);
            }
        }
    }

    /// Points every device of `group` (with `pasid`, or without) at `target`. On a driver
    /// failure the devices already done go back to what the core had them at.
    pub(crate) fn program_group(
        &mut self,
        group: GroupId,
        pasid: Option<crate::Pasid>,
        target: HwTarget,
    ) -> Result<Reach, CoreError> {
        self.program_group_after(group, pasid, target, &[])
    }

    /// [`program_group`](Self::program_group) after a change that reached `already` (request
    /// IDs) through a table they share with this group.
    pub(crate) fn program_group_after(
        &mut self,
        group: GroupId,
        pasid: Option<crate::Pasid>,
        target: HwTarget,
        already: &[u32],
    ) -> Result<Reach, CoreError> {
        let unit = self.group(group)?.unit;
        let previous = self.current_target(group, pasid)?;
        let mut reach = Reach::default();
        let mut done: Vec<u32> = Vec::new();
        // Each request ID once: members the unit cannot tell apart share theirs.
        for id in self.group_request_ids(group)? {
            // A PASID change the unit made through a table shared with an earlier ID (one
            // SMMUv3 CD table per domain) has reached this ID already; writing it again would
            // find the PASID taken.
            if pasid.is_some() && (reach.request_ids.contains(&id) || already.contains(&id)) {
                continue;
            }
            match self.driver_op(unit, |d| d.attach(&[id], pasid, target)) {
                Ok(r) => {
                    reach.request_ids.extend(r.request_ids);
                    done.push(id);
                }
                Err(e) => {
                    // Best effort: the driver refused a well-formed call (out of memory, a
                    // unit that stopped); put the others back.
                    let _ = self.driver_op(unit, |d| d.attach(&done, pasid, previous));
                    return Err(e);
                }
            }
        }
        Ok(reach)
    }

    /// Every request ID the unit sees `group`'s members under, each once.
    pub(crate) fn group_request_ids(&self, group: GroupId) -> Result<Vec<u32>, CoreError> {
        let mut ids = Vec::new();
        for dev in &self.group(group)?.members {
            ids.extend(self.request_ids(dev)?);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Removes `group` (with `pasid`, or without) from whatever domain had it.
    pub(crate) fn forget_group(&mut self, group: GroupId, pasid: Option<crate::Pasid>) {
        let members = self.group(group).map(|g| g.members.clone()).unwrap_or_default();
        match pasid {
            None => {
                if let Some(old) = self.group_domain.remove(&group) {
                    if let Some(o) = self.domains.get_mut(&old) {
                        o.groups.remove(&group);
                        o.named.retain(|(d, p)| p.is_some() || !members.contains(d));
                    }
                }
            }
            Some(p) => {
                for o in self.domains.values_mut() {
                    if o.pasids.remove(&(group, p)) {
                        o.named.retain(|(d, q)| *q != Some(p) || !members.contains(d));
                    }
                }
            }
        }
    }

    /// The members of `group` that `target` named: one device, or all of them.
    pub(crate) fn named_in(
        &self,
        target: &Target,
        group: GroupId,
    ) -> Result<Vec<DeviceId>, CoreError> {
        Ok(match target {
            Target::Device(d) => vec![d.clone()],
            Target::Group(_) | Target::Domain(_) => self.group(group)?.members.clone(),
        })
    }

    /// What the core has `group`'s requests (with `pasid`, or without) pointed at.
    pub(crate) fn current_target(
        &self,
        group: GroupId,
        pasid: Option<crate::Pasid>,
    ) -> Result<HwTarget, CoreError> {
        let dom = self.current_domain(group, pasid);
        match dom {
            Some(d) => self.hw_target(d),
            None => Ok(HwTarget::Blocked),
        }
    }

    fn check_group_on_unit(&self, domain: DomainId, group: GroupId) -> Result<(), CoreError> {
        self.check_group_unit(group, self.domain(domain)?.unit)
    }

    /// `group` is behind `unit`.
    pub(crate) fn check_group_unit(&self, group: GroupId, unit: UnitId) -> Result<(), CoreError> {
        let g = self.group(group)?;
        if g.unit != unit {
            let device = self.group_device(group);
            return Err(CoreError::WrongUnit { unit, device, device_unit: g.unit });
        }
        Ok(())
    }

    /// A device to name a group by in an error: its first member (groups are never empty).
    pub(crate) fn group_device(&self, group: GroupId) -> DeviceId {
        self.group(group)
            .ok()
            .and_then(|g| g.members.first().cloned())
            .unwrap_or_else(|| DeviceId::platform("?"))
    }

    /// A paging domain may not be attached where a device's reserved region is mapped.
    fn check_reserved_unmapped(&self, domain: DomainId, group: GroupId) -> Result<(), CoreError> {
        let d = self.domain(domain)?;
        if d.mappings.is_empty() {
            return Ok(());
        }
        for dev in &self.group(group)?.members {
            for (reserved, why) in self.reserved_regions(dev)? {
                let identity = why == RMRR
                    && d.mappings
                        .range(..=reserved.start)
                        .next_back()
                        .is_some_and(|(iova, m)| *iova == m.pa && *iova + m.len >= reserved.end);
                if d.mapped_in(&reserved).is_some() && !identity {
                    return Err(CoreError::ReservedMapped {
                        device: dev.clone(),
                        domain,
                        reserved,
                        why,
                    });
                }
            }
        }
        Ok(())
    }

    /// A device's reserved regions: IOVAs no domain it is attached to may map.
    pub fn reserved_regions(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<(Range<u64>, &'static str)>, CoreError> {
        let dev =
            self.topology.device(device).ok_or_else(|| CoreError::NoSuchDevice(device.clone()))?;
        let ids = self.request_ids(device)?;
        let mut out = self.driver(dev.unit)?.reserved_regions(&ids);
        out.extend(self.direct_regions(device).into_iter().map(|r| (r, RMRR)));
        Ok(out)
    }

    /// A device's firmware DMA ranges (RMRRs): mapped one to one in every paging domain it is
    /// attached to (Linux `iommu_create_device_direct_mappings()`).
    pub fn direct_regions(&self, device: &DeviceId) -> Vec<Range<u64>> {
        self.topology
            .device(device)
            .and_then(|d| d.pci())
            .map(|f| f.rmrrs.clone())
            .unwrap_or_default()
    }

    /// The IOVA ranges a paging domain can map now: its input range less the reserved regions
    /// of every device attached to it.
    pub fn iova_ranges(&self, domain: DomainId) -> Result<Vec<Range<u64>>, CoreError> {
        let d = self.domain(domain)?;
        let caps = self.driver(d.unit)?.caps();
        let top = 1u64.checked_shl(u32::from(caps.ias_bits)).unwrap_or(u64::MAX);
        let mut holes = Vec::new();
        for (_, dev) in self.attached_devices(domain)? {
            holes.extend(self.reserved_regions(&dev)?.into_iter().map(|(r, _)| r));
        }
        holes.sort_by_key(|r| r.start);
        let mut out = Vec::new();
        let mut at = 0;
        for h in holes {
            if h.start > at {
                out.push(at..h.start.min(top));
            }
            at = at.max(h.end);
        }
        if at < top {
            out.push(at..top);
        }
        out.retain(|r| r.start < r.end);
        Ok(out)
    }

    /// Every device attached to `domain` (by group, with or without PASID).
    pub(crate) fn attached_devices(
        &self,
        domain: DomainId,
    ) -> Result<Vec<(GroupId, DeviceId)>, CoreError> {
        let d = self.domain(domain)?;
        let mut out = Vec::new();
        let groups = d.groups.iter().copied().chain(d.pasids.iter().map(|(g, _)| *g));
        for g in groups {
            for m in &self.group(g)?.members {
                out.push((g, m.clone()));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    // --- map / unmap -------------------------------------------------------------------------

    /// Maps `iova..iova + len` to `pa..pa + len` in a paging domain, with the largest pages
    /// the unit supports that fit (Linux `iommu_pgsize()`).
    pub fn map(
        &mut self,
        domain: DomainId,
        iova: u64,
        pa: u64,
        len: u64,
        write: bool,
    ) -> Result<(), CoreError> {
        self.map_undoable(domain, iova, pa, len, write).map(drop)
    }

    /// [`map`](Self::map), returning what it takes to take the mapping back exactly with
    /// [`undo_map`](Self::undo_map), as a caller whose larger operation fails after it must
    /// (iommufd's IOAS_MAP into several HWPTs).
    pub fn map_undoable(
        &mut self,
        domain: DomainId,
        iova: u64,
        pa: u64,
        len: u64,
        write: bool,
    ) -> Result<MapUndo, CoreError> {
        let range = self.check_map_range(domain, iova, pa, len)?;
        if let Some(at) = self.domain(domain)?.mapped_in(&range) {
            return Err(CoreError::AlreadyMapped { iova: at });
        }
        self.map_pages(domain, iova, pa, len, write)
    }

    /// Takes back a mapping [`map_undoable`](Self::map_undoable) made, before any other map
    /// of its domain: the leaves, and the tables it allocated (after invalidating), so the
    /// domain's tables are byte for byte what they were before it. Undo several newest first.
    pub fn undo_map(&mut self, undo: MapUndo) -> Result<(), CoreError> {
        let MapUndo { domain, iova, len, maps } = undo;
        let (unit, hw) = (self.domain(domain)?.unit, self.hw_of(domain)?);
        if let Some(d) = self.domains.get_mut(&domain) {
            d.mappings.remove(&iova);
        }
        self.driver_op(unit, |d| d.undo_map(hw, iova..iova + len, &maps))
    }

    /// Maps a checked range with the largest pages that fit, undoing it all on a failure.
    fn map_pages(
        &mut self,
        domain: DomainId,
        iova: u64,
        pa: u64,
        len: u64,
        write: bool,
    ) -> Result<MapUndo, CoreError> {
        let d = self.domain(domain)?;
        let (unit, hw) = (d.unit, self.hw_of(domain)?);
        let sizes = self.driver(unit)?.caps().page_sizes;
        let mut done = 0;
        let mut maps = Vec::new();
        while done < len {
            let lg2 = page_lg2_for(sizes, iova + done, pa + done, len - done);
            match self.driver_op(unit, |d| d.map(hw, iova + done, pa + done, lg2, write)) {
                Ok(m) => maps.push(m),
                Err(e) => {
                    if done > 0 {
                        // Undo the part mapped, tables included: nothing is left behind that
                        // the core does not know.
                        let _ = self.driver_op(unit, |d| d.undo_map(hw, iova..iova + done, &maps));
                    }
                    return Err(e);
                }
            }
            done += 1 << lg2;
        }
        if let Some(d) = self.domains.get_mut(&domain) {
            d.mappings.insert(iova, Mapping { pa, len, write });
        }
        Ok(MapUndo { domain, iova, len, maps })
    }

    fn check_map_range(
        &self,
        domain: DomainId,
        iova: u64,
        pa: u64,
        len: u64,
    ) -> Result<Range<u64>, CoreError> {
        let d = self.domain(domain)?;
        if !matches!(d.kind, DomainKind::Paging { .. }) {
            return Err(CoreError::WrongDomainKind {
                domain,
                is: d.kind.name(),
                needs: DomainKindName::Paging,
            });
        }
        let caps = self.driver(d.unit)?.caps();
        let align = 1u64 << caps.page_sizes.trailing_zeros().min(63);
        for (what, value) in [("IOVA", iova), ("physical address", pa), ("length", len)] {
            if value % align != 0 {
                return Err(CoreError::Unaligned { what, value, align });
            }
        }
        let end = iova.checked_add(len).filter(|_| len > 0).ok_or(CoreError::BadRange)?;
        pa.checked_add(len).ok_or(CoreError::BadRange)?;
        let range = iova..end;
        for (_, dev) in self.attached_devices(domain)? {
            for (reserved, why) in self.reserved_regions(&dev)? {
                if reserved.start < range.end && range.start < reserved.end {
                    return Err(CoreError::Reserved { range, device: dev, reserved, why });
                }
            }
        }
        if !self.iova_ranges(domain)?.iter().any(|r| r.start <= range.start && range.end <= r.end) {
            return Err(CoreError::OutOfAperture { range });
        }
        Ok(range)
    }

    /// Unmaps whole mappings in `iova..iova + len` (Linux: a mapping is never split; one that
    /// reaches outside the range is unmapped whole only if it starts inside it). Returns the
    /// bytes unmapped. Strict domains invalidate before returning; flush-queue domains queue the
    /// range and invalidate once the batch is full.
    pub fn unmap(&mut self, domain: DomainId, iova: u64, len: u64) -> Result<u64, CoreError> {
        let d = self.domain(domain)?;
        let DomainKind::Paging { flush, .. } = d.kind else {
            return Err(CoreError::WrongDomainKind {
                domain,
                is: d.kind.name(),
                needs: DomainKindName::Paging,
            });
        };
        let end = iova.checked_add(len).filter(|_| len > 0).ok_or(CoreError::BadRange)?;
        let victims: Vec<(u64, Mapping)> =
            d.mappings.range(iova..end).map(|(k, v)| (*k, *v)).collect();
        let (unit, hw) = (d.unit, self.hw_of(domain)?);
        let mut unmapped = 0;
        for (at, m) in &victims {
            let r = *at..*at + m.len;
            unmapped += self.driver_op(unit, |d| d.unmap(hw, r))?;
            if let Some(d) = self.domains.get_mut(&domain) {
                d.mappings.remove(at);
                d.pending_flush.push(*at..*at + m.len);
            }
        }
        match flush {
            FlushPolicy::Strict => self.flush(domain)?,
            FlushPolicy::FlushQueue { batch } => {
                if self.domain(domain)?.pending_flush.len() >= batch {
                    self.flush(domain)?;
                }
            }
        }
        Ok(unmapped)
    }

    /// Invalidates every range waiting in a paging domain's flush queue.
    pub fn flush(&mut self, domain: DomainId) -> Result<(), CoreError> {
        let d = self.domain(domain)?;
        if d.pending_flush.is_empty() {
            return Ok(());
        }
        let (unit, hw) = (d.unit, self.hw_of(domain)?);
        let start = d.pending_flush.iter().map(|r| r.start).min().unwrap_or(0);
        let end = d.pending_flush.iter().map(|r| r.end).max().unwrap_or(0);
        // One invalidation covering the queue: the driver turns a wide range into a
        // domain-wide one where that is cheaper.
        let range = if d.pending_flush.len() == 1 { Some(start..end) } else { None };
        self.driver_op(unit, |drv| drv.flush(hw, range))?;
        if let Some(d) = self.domains.get_mut(&domain) {
            d.pending_flush.clear();
        }
        Ok(())
    }
}

/// What a firmware DMA range is called among a device's reserved regions.
pub const RMRR: &str = "RMRR: firmware DMA, identity-mapped";

/// The architecture a unit kind implements.
pub(crate) fn model_of(kind: crate::topology::UnitKind) -> Model {
    match kind {
        crate::topology::UnitKind::VtdDrhd => Model::Vtd,
        crate::topology::UnitKind::SmmuV3 => Model::Smmuv3,
    }
}

/// The largest page size in `sizes` that both addresses are aligned to and `left` holds.
fn page_lg2_for(sizes: u64, iova: u64, pa: u64, left: u64) -> u8 {
    let smallest = sizes.trailing_zeros();
    let best = (smallest..64)
        .rev()
        .find(|&lg2| {
            let size = 1u64 << lg2;
            sizes & size != 0 && (iova | pa) % size == 0 && size <= left
        })
        .unwrap_or(smallest);
    u8::try_from(best).unwrap_or(12)
}

#[cfg(test)]
mod tests {
    use super::page_lg2_for;

    #[test]
    fn page_size_is_the_largest_that_fits_and_aligns() {
        let sizes = (1 << 12) | (1 << 21) | (1 << 30);
        assert_eq!(page_lg2_for(sizes, 0, 0, 1 << 30), 30);
        assert_eq!(page_lg2_for(sizes, 1 << 21, 0, 1 << 30), 21);
        assert_eq!(page_lg2_for(sizes, 0, 1 << 12, 1 << 30), 12);
        assert_eq!(page_lg2_for(sizes, 0, 0, (1 << 21) - 4096), 12);
    }
}

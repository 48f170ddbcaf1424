//! The seed's calls that reach PASIDs: per-PASID attach (nesting, SVA), `bind_pasid_table`
//! for a guest's whole PASID table, and `sva_bind` for a process address space.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::domain::{AddressSpaceId, DomainId, DomainKind, DomainKindName};
use crate::driver::{HwTarget, Model, PasidTableConfig, Reach, Stage1Config};
use crate::error::CoreError;
use crate::iommu::{Iommu, Reached, Target};
use crate::pasid_alloc::Pasid;
use crate::topology::{DeviceId, GroupId, UnitId};

/// A guest's PASID table bound to a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BoundPasidTable {
    /// The stage-2 parent its stage-1 tables sit on.
    pub parent: DomainId,
    /// The guest's table.
    pub config: PasidTableConfig,
    /// The devices the call named.
    pub named: BTreeSet<DeviceId>,
}

/// A process address space as `sva_bind` takes it: the CPU page table the devices share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AddressSpace {
    /// Which process (Linux's `mm`).
    pub id: AddressSpaceId,
    /// Its page table.
    pub s1: Stage1Config,
}

/// A bound address space: its one PASID and its SVA domain per unit, with how many times
/// each device bound it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SvaSpace {
    pub(crate) pasid: Pasid,
    pub(crate) domains: BTreeMap<UnitId, DomainId>,
    pub(crate) bonds: BTreeMap<DeviceId, u32>,
}

impl Iommu {
    /// Attaches `domain` to the requests with `pasid` of every group `target` names: a nested
    /// domain (per-PASID nesting, both architectures), an SVA domain, or a paging domain.
    /// Returns every device reached.
    pub fn attach_pasid(
        &mut self,
        domain: DomainId,
        target: &Target,
        pasid: Pasid,
    ) -> Result<Reached, CoreError> {
        let groups = self.resolve(target)?;
        self.attach_pasid_in(domain, target, &groups, pasid)
    }

    /// [`attach_pasid`](Self::attach_pasid) for `groups`, those of `target` still to change.
    fn attach_pasid_in(
        &mut self,
        domain: DomainId,
        target: &Target,
        groups: &[GroupId],
        pasid: Pasid,
    ) -> Result<Reached, CoreError> {
        let d = self.domain(domain)?;
        let unit = d.unit;
        if matches!(d.kind, DomainKind::Blocked | DomainKind::Identity) {
            return Err(CoreError::WrongDomainKind {
                domain,
                is: d.kind.name(),
                needs: DomainKindName::Nested,
            });
        }
        for g in groups {
            self.check_pasid_for(target, *g, unit, pasid)?;
            if self.pasid_tables.contains_key(g) {
                // The guest owns every PASID of a group whose PASID table it bound.
                return Err(CoreError::Unsupported {
                    unit,
                    model: self.driver(unit)?.caps().model,
                    what: "attach a PASID of a group whose guest PASID table is bound",
                });
            }
        }
        let hw = self.hw_target(domain)?;
        let mut reach = Reach::default();
        for g in groups {
            // A change through a table shared with an earlier group (one SMMUv3 CD table per
            // domain) has reached this group's IDs already.
            let r = self.program_group_after(*g, Some(pasid), hw, &reach.request_ids)?;
            reach.request_ids.extend(r.request_ids);
            self.forget_group(*g, Some(pasid));
            let named = self.named_in(target, *g)?;
            if let Some(d) = self.domains.get_mut(&domain) {
                d.pasids.insert((*g, pasid));
                d.named.extend(named.into_iter().map(|n| (n, Some(pasid))));
            }
        }
        Ok(self.reached(unit, groups, &reach))
    }

    /// Blocks `pasid` of every group `target` names.
    pub fn detach_pasid(&mut self, target: &Target, pasid: Pasid) -> Result<Reached, CoreError> {
        let groups = self.resolve(target)?;
        let mut unit = None;
        for g in &groups {
            if self.current_domain(*g, Some(pasid)).is_none() {
                return Err(CoreError::PasidNotAttached { device: self.group_device(*g), pasid });
            }
            unit = Some(self.group(*g)?.unit);
        }
        let mut reach = Reach::default();
        for g in &groups {
            let r =
                self.program_group_after(*g, Some(pasid), HwTarget::Blocked, &reach.request_ids)?;
            reach.request_ids.extend(r.request_ids);
            self.forget_group(*g, Some(pasid));
        }
        Ok(unit.map(|u| self.reached(u, &groups, &reach)).unwrap_or_default())
    }

    /// The domain `group`'s requests with `pasid` (or without) go to.
    pub fn current_domain(&self, group: GroupId, pasid: Option<Pasid>) -> Option<DomainId> {
        match pasid {
            None => self.group_domain.get(&group).copied(),
            Some(p) => self.domains.values().find(|d| d.pasids.contains(&(group, p))).map(|d| d.id),
        }
    }

    /// `pasid` may be used on `group`: not 0, within the unit's and the named devices' widths,
    /// and each named device may use PASIDs at all (Linux `pci_enable_pasid()`).
    fn check_pasid_for(
        &self,
        target: &Target,
        group: GroupId,
        unit: UnitId,
        pasid: Pasid,
    ) -> Result<(), CoreError> {
        if pasid.0 == 0 {
            return Err(CoreError::PasidZero);
        }
        self.check_group_unit(group, unit)?;
        let unit_bits = self.driver(unit)?.caps().pasid_bits;
        for dev in self.named_in(target, group)? {
            let width = self.topology.pasid_allowed(&dev)?;
            let bits = width.bits().min(unit_bits);
            if u64::from(pasid.0) >= 1u64 << bits {
                return Err(CoreError::PasidTooWide { device: dev, pasid, bits });
            }
        }
        Ok(())
    }

    // --- bind_pasid_table --------------------------------------------------------------------

    /// The seed's `bind_pasid_table`: hands the guest's whole PASID table to the unit for
    /// every group `target` names, over the stage 2 of `parent`. On SMMUv3 that is a nested
    /// STE over the guest's CD table. Refused with a typed error, changing nothing, when the
    /// table is written for the other architecture, in a format or size the unit does not
    /// take, or on VT-d scalable mode (which keeps PASID tables in host memory: nest per
    /// PASID with [`attach_pasid`](Self::attach_pasid)).
    pub fn bind_pasid_table(
        &mut self,
        target: &Target,
        parent: DomainId,
        config: PasidTableConfig,
    ) -> Result<Reached, CoreError> {
        let groups = self.resolve(target)?;
        let p = self.domain(parent)?;
        let unit = p.unit;
        let caps = self.driver(unit)?.caps().clone();
        if config.model != caps.model || config.format.model() != caps.model {
            let config =
                if config.model == caps.model { config.format.model() } else { config.model };
            return Err(CoreError::ModelMismatch { unit, unit_model: caps.model, config });
        }
        if !caps.pasid_table_bind {
            return Err(match caps.model {
                Model::Vtd => CoreError::PasidTableInHostMemory { unit },
                Model::Smmuv3 => CoreError::Unsupported {
                    unit,
                    model: caps.model,
                    what: "take a guest's CD table (no nesting)",
                },
            });
        }
        if config.pasid_bits > caps.pasid_bits {
            return Err(CoreError::Unsupported {
                unit,
                model: caps.model,
                what: "take a PASID table that wide",
            });
        }
        if !matches!(p.kind, DomainKind::Paging { nesting_parent: true, .. }) {
            return Err(CoreError::WrongDomainKind {
                domain: parent,
                is: p.kind.name(),
                needs: DomainKindName::Paging,
            });
        }
        for g in &groups {
            self.check_group_unit(*g, unit)?;
            for dev in self.named_in(target, *g)? {
                self.topology.pasid_allowed(&dev)?;
            }
            if self.domains.values().any(|d| d.pasids.iter().any(|(dg, _)| dg == g)) {
                return Err(CoreError::Unsupported {
                    unit,
                    model: caps.model,
                    what: "bind a PASID table over PASIDs the host attached",
                });
            }
        }
        let parent_hw = self.hw_of(parent)?;
        let mut reach = Reach::default();
        for g in &groups {
            let mut done = Vec::new();
            for id in self.group_request_ids(*g)? {
                match self.driver_op(unit, |d| d.bind_pasid_table(&[id], parent_hw, &config)) {
                    Ok(r) => {
                        reach.request_ids.extend(r.request_ids);
                        done.push(id);
                    }
                    Err(e) => {
                        let previous = self.current_target(*g, None)?;
                        let _ = self.driver_op(unit, |d| d.attach(&done, None, previous));
                        return Err(e);
                    }
                }
            }
            let named = self.named_in(target, *g)?.into_iter().collect();
            self.pasid_tables.insert(*g, BoundPasidTable { parent, config, named });
        }
        Ok(self.reached(unit, &groups, &reach))
    }

    /// Undoes `bind_pasid_table`: the groups go back to their domain for requests without PASID
    /// (or blocked).
    pub fn unbind_pasid_table(&mut self, target: &Target) -> Result<Reached, CoreError> {
        let groups = self.resolve(target)?;
        for g in &groups {
            if !self.pasid_tables.contains_key(g) {
                return Err(CoreError::NoPasidTable(*g));
            }
        }
        let mut reach = Reach::default();
        let mut unit = None;
        for g in &groups {
            unit = Some(self.group(*g)?.unit);
            let back = self.current_target(*g, None)?;
            let r = self.program_group(*g, None, back)?;
            reach.request_ids.extend(r.request_ids);
            self.pasid_tables.remove(g);
        }
        Ok(unit.map(|u| self.reached(u, &groups, &reach)).unwrap_or_default())
    }

    /// The guest PASID tables bound, by group.
    pub fn pasid_tables(&self) -> &BTreeMap<GroupId, BoundPasidTable> {
        &self.pasid_tables
    }

    // --- SVA ---------------------------------------------------------------------------------

    /// Binds a process address space to every group `target` names and returns its PASID. An
    /// address space has one PASID on every device (from the global allocator, below every
    /// named device's width); binding it again to a device returns the same PASID.
    pub fn sva_bind(&mut self, target: &Target, space: &AddressSpace) -> Result<Pasid, CoreError> {
        let groups = self.resolve(target)?;
        let unit = match groups.first() {
            Some(g) => self.group(*g)?.unit,
            None => return Err(CoreError::BadRange),
        };
        self.check_stage1(unit, space.s1, "share a process's page table")?;
        let existing = self.spaces.get(&space.id).map(|s| s.pasid);
        let pasid = match existing {
            Some(p) => p,
            None => {
                let limit = self.pasid_limit(target, &groups, unit)?;
                self.pasids.alloc(limit)?
            }
        };
        let undo_alloc = existing.is_none();
        let result = self.sva_bind_with(target, &groups, unit, space, pasid);
        if result.is_err() && undo_alloc {
            self.pasids.free(pasid);
        }
        result.map(|()| pasid)
    }

    fn sva_bind_with(
        &mut self,
        target: &Target,
        groups: &[GroupId],
        unit: UnitId,
        space: &AddressSpace,
        pasid: Pasid,
    ) -> Result<(), CoreError> {
        for g in groups {
            self.check_pasid_for(target, *g, unit, pasid)?;
        }
        let known = self.spaces.get(&space.id).and_then(|s| s.domains.get(&unit)).copied();
        let domain = match known {
            Some(d) => d,
            None => self.alloc_domain(unit, DomainKind::Sva { space: space.id, s1: space.s1 })?,
        };
        let mut to_attach = Vec::new();
        for g in groups {
            match self.current_domain(*g, Some(pasid)) {
                Some(d) if d == domain => {}
                Some(_) => {
                    return Err(CoreError::PasidNotAttached {
                        device: self.group_device(*g),
                        pasid,
                    });
                }
                None => to_attach.push(*g),
            }
        }
        if !to_attach.is_empty() {
            if let Err(e) = self.attach_pasid_in(domain, target, &to_attach, pasid) {
                if known.is_none() {
                    let _ = self.free_domain(domain);
                }
                return Err(e);
            }
        }
        let mut named = Vec::new();
        for g in groups {
            named.extend(self.named_in(target, *g)?);
        }
        let s = self.spaces.entry(space.id).or_insert_with(|| SvaSpace {
            pasid,
            domains: BTreeMap::new(),
            bonds: BTreeMap::new(),
        });
        s.domains.insert(unit, domain);
        for dev in named {
            *s.bonds.entry(dev).or_insert(0) += 1;
        }
        Ok(())
    }

    /// The exclusive PASID bound for a bind: the narrowest of the unit and the named devices.
    fn pasid_limit(
        &self,
        target: &Target,
        groups: &[GroupId],
        unit: UnitId,
    ) -> Result<u32, CoreError> {
        let mut bits = self.driver(unit)?.caps().pasid_bits;
        for g in groups {
            for dev in self.named_in(target, *g)? {
                bits = bits.min(self.topology.pasid_allowed(&dev)?.bits());
            }
        }
        Ok(1u32.checked_shl(u32::from(bits)).unwrap_or(0))
    }

    /// Undoes one `sva_bind` of `space` to `device`. The last unbind from a device blocks the
    /// PASID on its group, answering the group's outstanding page requests first (as Invalid),
    /// so no response for the old address space reaches a later user of the PASID; the last
    /// unbind anywhere frees the PASID.
    pub fn sva_unbind(
        &mut self,
        device: &DeviceId,
        space: AddressSpaceId,
    ) -> Result<(), CoreError> {
        let s = self
            .spaces
            .get(&space)
            .ok_or_else(|| CoreError::NotBound { space: space.0, device: device.clone() })?;
        let count = *s
            .bonds
            .get(device)
            .ok_or_else(|| CoreError::NotBound { space: space.0, device: device.clone() })?;
        let pasid = s.pasid;
        if count > 1 {
            if let Some(s) = self.spaces.get_mut(&space) {
                s.bonds.insert(device.clone(), count - 1);
            }
            return Ok(());
        }
        let group = self
            .topology
            .group_of(device)
            .map(|g| g.id)
            .ok_or_else(|| CoreError::NoSuchDevice(device.clone()))?;
        // Another bound device of the same group keeps the PASID attached.
        let group_still_bound = self
            .spaces
            .get(&space)
            .map(|s| {
                s.bonds.keys().any(|d| {
                    d != device && self.topology.group_of(d).is_some_and(|g| g.id == group)
                })
            })
            .unwrap_or(false);
        self.drain_page_requests(group, pasid)?;
        if !group_still_bound {
            self.detach_pasid(&Target::Group(group), pasid)?;
        }
        if let Some(d) = self.current_domain_of_space(space) {
            if let Some(dom) = self.domains.get_mut(&d) {
                dom.named.remove(&(device.clone(), Some(pasid)));
            }
        }
        let s = self.spaces.get_mut(&space);
        let now_empty = match s {
            Some(s) => {
                s.bonds.remove(device);
                s.bonds.is_empty()
            }
            None => true,
        };
        if now_empty {
            if let Some(s) = self.spaces.remove(&space) {
                for d in s.domains.values() {
                    let _ = self.free_domain(*d);
                }
            }
            self.pasids.free(pasid);
        }
        Ok(())
    }

    fn current_domain_of_space(&self, space: AddressSpaceId) -> Option<DomainId> {
        self.spaces.get(&space).and_then(|s| s.domains.values().next().copied())
    }

    /// The PASID `space` is bound with, if it is bound.
    pub fn sva_pasid(&self, space: AddressSpaceId) -> Option<Pasid> {
        self.spaces.get(&space).map(|s| s.pasid)
    }
}

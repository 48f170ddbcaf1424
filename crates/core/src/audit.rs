//! Honest isolation: for every address space, the devices that can reach it and why.
//!
//! The static audit reads the core's own state (attachments, binds, groups) and what the
//! drivers say about shared PASID tables. The dynamic audit trusts none of that: it plays
//! every device, issuing a DMA with every PASID the device can send to each address space's
//! sentinel page, and records whose host page the hardware model returns. The two must agree;
//! an entry changed behind the core's back makes them disagree.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::domain::{AddressSpaceId, DomainId, DomainKind};
use crate::driver::{DmaAccess, Model};
use crate::iommu::Iommu;
use crate::pasid_alloc::Pasid;
use crate::topology::{DeviceId, GroupId, UnitId};

/// Why a device reaches an address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReachReason {
    /// A call named it: it was bound or attached.
    Explicit,
    /// A call named a device it could not be isolated from (its IOMMU group).
    SameGroup,
    /// It uses the same PASID (CD) table as a device that was bound: SMMUv3 with one CD table
    /// per domain.
    SharedDomainTable,
}

/// An address space the audit looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum SpaceKey {
    /// A paging or nested domain's tables.
    Domain(DomainId),
    /// A guest's PASID table bound to a group.
    PasidTable(GroupId),
    /// A process address space.
    Sva(AddressSpaceId),
}

/// A page only one address space maps: the dynamic audit's probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Sentinel {
    /// The PASID to probe with, for a guest PASID table (which PASID's tables hold the page).
    pub pasid: Option<Pasid>,
    /// Its address in the space.
    pub input: u64,
    /// The host page it maps to.
    pub hpa: u64,
}

/// One device reaching an address space.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ReachEntry {
    /// The device.
    pub device: DeviceId,
    /// With this PASID (`None`: requests without PASID; for a guest PASID table, every PASID
    /// the guest's table holds).
    pub pasid: Option<Pasid>,
    /// Why.
    pub reason: ReachReason,
}

/// One address space's audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpaceAudit {
    /// Its name, e.g. `domain 3`, `pasid_table group 1`, `sva 7`.
    pub id: String,
    /// `domain`, `pasid_table` or `sva`.
    pub kind: &'static str,
    /// Who reaches it, by the static audit.
    pub reachable_by: Vec<ReachEntry>,
    /// Who reached its sentinel by DMA (device, PASID); `None` when it had no sentinel.
    pub reached_by_dma: Option<Vec<(DeviceId, Option<Pasid>)>>,
}

/// One unit's audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitAudit {
    /// `vtd` or `smmuv3`.
    pub iommu: Model,
    /// The unit.
    pub unit: UnitId,
    /// Its address spaces.
    pub address_spaces: Vec<SpaceAudit>,
    /// The static and dynamic audits agree on every space with a sentinel.
    pub agrees_with_dma: bool,
    /// Faults the probes raised (recorded by the unit, then taken out of the fault path).
    pub probe_faults: usize,
}

/// The whole system's audit: `{"audits": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// One per unit.
    pub audits: Vec<UnitAudit>,
}

impl AuditReport {
    /// Every unit's audits agree with the DMA probes.
    pub fn agrees(&self) -> bool {
        self.audits.iter().all(|a| a.agrees_with_dma)
    }

    /// The audit of the space named `id` (as [`SpaceKey::name`] names it), if any unit has it.
    pub fn space(&self, id: &str) -> Option<&SpaceAudit> {
        self.audits.iter().flat_map(|a| &a.address_spaces).find(|s| s.id == id)
    }
}

impl SpaceKey {
    /// The name the report gives it.
    pub fn name(&self) -> String {
        match self {
            Self::Domain(d) => format!("domain {}", d.0),
            Self::PasidTable(g) => format!("pasid_table group {}", g.0),
            Self::Sva(s) => format!("sva {}", s.0),
        }
    }
}

impl Iommu {
    /// The static audit alone: who reaches each address space, by the core's state.
    pub fn audit_static(&self) -> BTreeMap<SpaceKey, BTreeSet<ReachEntry>> {
        let mut out: BTreeMap<SpaceKey, BTreeSet<ReachEntry>> = BTreeMap::new();
        for d in self.domains.values() {
            let key = match d.kind {
                DomainKind::Paging { .. } | DomainKind::Nested { .. } => SpaceKey::Domain(d.id),
                DomainKind::Sva { space, .. } => SpaceKey::Sva(space),
                DomainKind::Blocked | DomainKind::Identity => continue,
            };
            let set = out.entry(key).or_default();
            // A group whose guest PASID table is bound reaches its domain only through the
            // guest's tables: that reach is the PASID table's, below.
            let attachments =
                d.groups.iter().filter(|g| !self.pasid_tables.contains_key(g)).map(|g| (*g, None));
            let attachments = attachments.chain(d.pasids.iter().map(|(g, p)| (*g, Some(*p))));
            for (g, pasid) in attachments {
                let Ok(group) = self.group(g) else { continue };
                for m in &group.members {
                    if !self.can_send(m, pasid) {
                        continue;
                    }
                    let reason = if d.named.contains(&(m.clone(), pasid)) {
                        ReachReason::Explicit
                    } else {
                        ReachReason::SameGroup
                    };
                    set.insert(ReachEntry { device: m.clone(), pasid, reason });
                }
                if pasid.is_some() {
                    for dev in self.table_sharers(group.unit, &group.members) {
                        if !group.members.contains(&dev) && self.can_send(&dev, pasid) {
                            let reason = ReachReason::SharedDomainTable;
                            set.insert(ReachEntry { device: dev, pasid, reason });
                        }
                    }
                }
            }
            // A device reached both explicitly and otherwise is listed once, explicitly.
            let explicit: BTreeSet<(DeviceId, Option<Pasid>)> = set
                .iter()
                .filter(|e| e.reason == ReachReason::Explicit)
                .map(|e| (e.device.clone(), e.pasid))
                .collect();
            set.retain(|e| {
                e.reason == ReachReason::Explicit
                    || !explicit.contains(&(e.device.clone(), e.pasid))
            });
        }
        for (g, t) in &self.pasid_tables {
            let set = out.entry(SpaceKey::PasidTable(*g)).or_default();
            // One guest table over one stage 2 is one address space, whichever groups it is
            // bound to (a bind to a domain binds each of the domain's groups to it).
            let same = self.pasid_tables.iter().filter(|(_, o)| o.parent == t.parent);
            for (sg, st) in same.filter(|(_, o)| o.config == t.config) {
                let Ok(group) = self.group(*sg) else { continue };
                for m in &group.members {
                    let reason = if st.named.contains(m) {
                        ReachReason::Explicit
                    } else {
                        ReachReason::SameGroup
                    };
                    set.insert(ReachEntry { device: m.clone(), pasid: None, reason });
                }
            }
        }
        out
    }

    /// The devices whose PASID-tagged requests use the PASID tables of `members`.
    fn table_sharers(&self, unit: UnitId, members: &[DeviceId]) -> Vec<DeviceId> {
        let Ok(driver) = self.driver(unit) else { return Vec::new() };
        let mut ids = Vec::new();
        for m in members {
            ids.extend(self.request_ids(m).unwrap_or_default());
        }
        let mut out: Vec<DeviceId> = driver
            .pasid_table_sharers(&ids)
            .into_iter()
            .flat_map(|id| self.devices_with(unit, id))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether `device` can send requests with `pasid` (always, without one).
    pub(crate) fn can_send(&self, device: &DeviceId, pasid: Option<Pasid>) -> bool {
        let Some(p) = pasid else { return true };
        let Some(unit) = self.topology.device(device).map(|d| d.unit) else { return false };
        let unit_bits = self.driver(unit).map(|d| d.caps().pasid_bits).unwrap_or(0);
        match self.topology.pasid_allowed(device) {
            Ok(w) => u64::from(p.0) < 1u64 << w.bits().min(unit_bits),
            Err(_) => false,
        }
    }

    /// The static audit beside the dynamic one, per unit. Paging domains get their first
    /// mapping as sentinel unless `sentinels` names one; other spaces are probed only where
    /// `sentinels` gives a page.
    pub fn audit(&mut self, sentinels: &BTreeMap<SpaceKey, Sentinel>) -> AuditReport {
        // What the units reported before the probes goes to the devices as usual.
        self.process_faults();
        let statics = self.audit_static();
        let mut sentinels = sentinels.clone();
        for d in self.domains.values() {
            if let (DomainKind::Paging { .. }, Some((iova, m))) = (d.kind, d.mappings.iter().next())
            {
                sentinels.entry(SpaceKey::Domain(d.id)).or_insert(Sentinel {
                    pasid: None,
                    input: *iova,
                    hpa: m.pa,
                });
            }
        }
        let mut audits = Vec::new();
        let units: Vec<UnitId> = self.units.keys().copied().collect();
        for unit in units {
            let spaces: Vec<SpaceKey> =
                statics.keys().filter(|k| self.space_unit(k) == Some(unit)).copied().collect();
            let pasids = self.probe_pasids(&spaces, &sentinels);
            let mut address_spaces = Vec::new();
            let mut agrees = true;
            for key in spaces {
                let reach = statics.get(&key).cloned().unwrap_or_default();
                let dma = sentinels.get(&key).map(|s| self.probe(unit, s, &pasids));
                if let Some(dma) = &dma {
                    let expect: BTreeSet<(DeviceId, Option<Pasid>)> = match key {
                        SpaceKey::PasidTable(_) => reach
                            .iter()
                            .filter(|e| {
                                self.can_send(&e.device, sentinels.get(&key).and_then(|s| s.pasid))
                            })
                            .map(|e| (e.device.clone(), sentinels.get(&key).and_then(|s| s.pasid)))
                            .collect(),
                        _ => reach.iter().map(|e| (e.device.clone(), e.pasid)).collect(),
                    };
                    let got: BTreeSet<(DeviceId, Option<Pasid>)> = dma.iter().cloned().collect();
                    agrees &= expect == got;
                }
                address_spaces.push(SpaceAudit {
                    id: key.name(),
                    kind: match key {
                        SpaceKey::Domain(_) => "domain",
                        SpaceKey::PasidTable(_) => "pasid_table",
                        SpaceKey::Sva(_) => "sva",
                    },
                    reachable_by: reach.into_iter().collect(),
                    reached_by_dma: dma,
                });
            }
            // The probes' own faults are the audit's, not the devices'.
            let probe_faults =
                self.units.get_mut(&unit).map(|u| u.driver.poll_faults().len()).unwrap_or(0);
            let iommu = self.driver(unit).map_or(Model::Vtd, |d| d.caps().model);
            audits.push(UnitAudit {
                iommu,
                unit,
                address_spaces,
                agrees_with_dma: agrees,
                probe_faults,
            });
        }
        AuditReport { audits }
    }

    fn space_unit(&self, key: &SpaceKey) -> Option<UnitId> {
        match key {
            SpaceKey::Domain(d) => self.domains.get(d).map(|d| d.unit),
            SpaceKey::PasidTable(g) => self.group(*g).ok().map(|g| g.unit),
            SpaceKey::Sva(s) => self.spaces.get(s).and_then(|s| s.domains.keys().next().copied()),
        }
    }

    /// Every PASID worth sending: none, each PASID attached anywhere on the unit, and each a
    /// sentinel names.
    fn probe_pasids(
        &self,
        spaces: &[SpaceKey],
        sentinels: &BTreeMap<SpaceKey, Sentinel>,
    ) -> Vec<Option<Pasid>> {
        let mut out = BTreeSet::new();
        out.insert(None);
        for d in self.domains.values() {
            out.extend(d.pasids.iter().map(|(_, p)| Some(*p)));
        }
        for k in spaces {
            if let Some(p) = sentinels.get(k).and_then(|s| s.pasid) {
                out.insert(Some(p));
            }
        }
        out.into_iter().collect()
    }

    /// Every (device, PASID) of `unit` whose DMA to the sentinel's address comes back as the
    /// sentinel's host page.
    fn probe(
        &self,
        unit: UnitId,
        s: &Sentinel,
        pasids: &[Option<Pasid>],
    ) -> Vec<(DeviceId, Option<Pasid>)> {
        let Ok(driver) = self.driver(unit) else { return Vec::new() };
        let mut out = Vec::new();
        for dev in self.topology.devices().iter().filter(|d| d.unit == unit) {
            let ids = self.request_ids(&dev.id).unwrap_or_default();
            for &pasid in pasids {
                if !self.can_send(&dev.id, pasid) {
                    continue;
                }
                let hit = ids
                    .iter()
                    .any(|&rid| driver.dma(rid, pasid, s.input, DmaAccess::Read) == Ok(s.hpa));
                if hit {
                    out.push((dev.id.clone(), pasid));
                }
            }
        }
        out
    }
}

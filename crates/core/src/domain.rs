//! Domains: what a device's DMA (with one PASID, or without) is translated by.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::driver::{HwDomain, Stage1Config};
use crate::pasid_alloc::Pasid;
use crate::topology::{DeviceId, GroupId, UnitId};

/// Names a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DomainId(pub u32);

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain {}", self.0)
    }
}

/// Names a process address space bound with `sva_bind` (Linux's `mm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AddressSpaceId(pub u32);

/// When a paging domain's unmapped IOVAs leave the IOTLB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushPolicy {
    /// Before `unmap` returns (Linux `iommu.strict=1`).
    #[default]
    Strict,
    /// Batched: unmapped ranges wait in a flush queue, invalidated together once `batch`
    /// ranges wait or on [`crate::Iommu::flush`]. Until then the IOTLB may still translate them,
    /// which is the window Linux's lazy mode accepts for speed.
    FlushQueue {
        /// Ranges that trigger a flush.
        batch: usize,
    },
}

/// What kind of domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DomainKind {
    /// Every request faults.
    Blocked,
    /// Requests pass untranslated.
    Identity,
    /// A page table the core maps and unmaps (DMA API or unmanaged).
    Paging {
        /// It may be the stage-2 parent of nested domains.
        nesting_parent: bool,
        /// When unmapped IOVAs are invalidated.
        flush: FlushPolicy,
    },
    /// A guest-owned stage 1 over a paging parent's stage 2.
    Nested {
        /// The stage-2 parent (a paging domain with `nesting_parent`).
        parent: DomainId,
        /// The guest's stage 1.
        s1: Stage1Config,
    },
    /// A process address space (shared virtual addressing).
    Sva {
        /// Which one.
        space: AddressSpaceId,
        /// Its CPU page table.
        s1: Stage1Config,
    },
}

/// A domain kind's name, for errors and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainKindName {
    /// [`DomainKind::Blocked`].
    Blocked,
    /// [`DomainKind::Identity`].
    Identity,
    /// [`DomainKind::Paging`].
    Paging,
    /// [`DomainKind::Nested`].
    Nested,
    /// [`DomainKind::Sva`].
    Sva,
}

impl fmt::Display for DomainKindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Blocked => "blocked",
            Self::Identity => "identity",
            Self::Paging => "paging",
            Self::Nested => "nested",
            Self::Sva => "SVA",
        })
    }
}

impl DomainKind {
    /// Its name.
    pub const fn name(&self) -> DomainKindName {
        match self {
            Self::Blocked => DomainKindName::Blocked,
            Self::Identity => DomainKindName::Identity,
            Self::Paging { .. } => DomainKindName::Paging,
            Self::Nested { .. } => DomainKindName::Nested,
            Self::Sva { .. } => DomainKindName::Sva,
        }
    }
}

/// One mapping of a paging domain, as the core asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// Output address.
    pub pa: u64,
    /// Bytes.
    pub len: u64,
    /// Writable.
    pub write: bool,
}

/// A domain and who uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Its number.
    pub id: DomainId,
    /// The unit whose driver built it.
    pub unit: UnitId,
    /// What it is.
    pub kind: DomainKind,
    /// Its hardware state (none for blocked and identity).
    pub(crate) hw: Option<HwDomain>,
    /// Groups whose requests without PASID it translates.
    pub groups: BTreeSet<GroupId>,
    /// (group, PASID) pairs whose requests with that PASID it translates.
    pub pasids: BTreeSet<(GroupId, Pasid)>,
    /// The devices a call named (with the PASID it named): the audit's `explicit` reach. The
    /// other members of their groups are reached too, as `same_group`.
    pub named: BTreeSet<(DeviceId, Option<Pasid>)>,
    /// What the core mapped (paging domains), by IOVA.
    pub(crate) mappings: BTreeMap<u64, Mapping>,
    /// Unmapped ranges waiting for the flush queue.
    pub(crate) pending_flush: Vec<Range<u64>>,
}

impl Domain {
    pub(crate) fn new(id: DomainId, unit: UnitId, kind: DomainKind, hw: Option<HwDomain>) -> Self {
        Self {
            id,
            unit,
            kind,
            hw,
            groups: BTreeSet::new(),
            pasids: BTreeSet::new(),
            named: BTreeSet::new(),
            mappings: BTreeMap::new(),
            pending_flush: Vec::new(),
        }
    }

    /// Whether any group or PASID uses it.
    pub fn in_use(&self) -> bool {
        !self.groups.is_empty() || !self.pasids.is_empty()
    }

    /// What the core mapped, by IOVA.
    pub fn mappings(&self) -> impl Iterator<Item = (u64, &Mapping)> + '_ {
        self.mappings.iter().map(|(k, v)| (*k, v))
    }

    /// The first mapping that meets `range`.
    pub(crate) fn mapped_in(&self, range: &Range<u64>) -> Option<u64> {
        // The mapping that starts at or before `range.start` may reach into it.
        if let Some((&iova, m)) = self.mappings.range(..=range.start).next_back() {
            if iova + m.len > range.start {
                return Some(range.start.max(iova));
            }
        }
        self.mappings.range(range.start..range.end).next().map(|(&iova, _)| iova)
    }

    /// Ranges waiting in the flush queue.
    pub fn pending_flush(&self) -> &[Range<u64>] {
        &self.pending_flush
    }
}

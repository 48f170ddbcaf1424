//! IOMMU units and what each one translates for.

use std::fmt;

use serde::Serialize;

/// Names one IOMMU unit of the system (a VT-d DRHD, an SMMUv3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UnitId(pub u32);

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unit {}", self.0)
    }
}

/// The architecture of a unit. The core knows no bits of either; the kind decides which
/// devices may sit behind the unit and, later, which driver adapter runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// An Intel VT-d remapping hardware unit (ACPI DMAR DRHD). Translates PCI requests only.
    VtdDrhd,
    /// An Arm SMMUv3. Translates PCI requests (StreamID from the Requester ID through the IORT
    /// ID mapping) and platform masters (StreamIDs from firmware).
    SmmuV3,
}

/// What a unit covers. A function's unit is chosen most specific first: an explicit assignment
/// on the device, then a [`Scope::Buses`] range, then a [`Scope::Segment`]; this is how a DMAR
/// table's device scopes take precedence over a DRHD with `INCLUDE_PCI_ALL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every PCI function of a segment not claimed by a narrower scope (VT-d DRHD with
    /// `INCLUDE_PCI_ALL`; an IORT root complex node).
    Segment(u16),
    /// PCI functions on buses `first..=last` of a segment.
    Buses {
        /// PCI segment.
        segment: u16,
        /// First bus covered.
        first: u8,
        /// Last bus covered (inclusive).
        last: u8,
    },
    /// Platform masters whose StreamIDs lie in `first..=last` (SMMUv3 only).
    StreamIds {
        /// First StreamID covered.
        first: u32,
        /// Last StreamID covered (inclusive).
        last: u32,
    },
}

impl Scope {
    /// Whether two scopes claim a common PCI bus or StreamID at the same precedence.
    pub(crate) fn overlaps(&self, other: &Scope) -> bool {
        match (*self, *other) {
            (Scope::Segment(a), Scope::Segment(b)) => a == b,
            (
                Scope::Buses { segment: sa, first: fa, last: la },
                Scope::Buses { segment: sb, first: fb, last: lb },
            ) => sa == sb && fa <= lb && fb <= la,
            (
                Scope::StreamIds { first: fa, last: la },
                Scope::StreamIds { first: fb, last: lb },
            ) => fa <= lb && fb <= la,
            _ => false,
        }
    }

    /// Whether `first <= last` where the scope is a range.
    pub(crate) fn well_formed(&self) -> bool {
        match *self {
            Scope::Segment(_) => true,
            Scope::Buses { first, last, .. } => first <= last,
            Scope::StreamIds { first, last } => first <= last,
        }
    }
}

/// One IOMMU unit of the system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unit {
    /// Its name.
    pub id: UnitId,
    /// Its architecture.
    pub kind: UnitKind,
    /// What it covers.
    pub scopes: Vec<Scope>,
}

impl Unit {
    pub(crate) fn covers_bus(&self, segment: u16, bus: u8) -> bool {
        self.scopes.iter().any(|s| {
            matches!(*s, Scope::Buses { segment: sg, first, last }
                if sg == segment && first <= bus && bus <= last)
        })
    }

    pub(crate) fn covers_segment(&self, segment: u16) -> bool {
        self.scopes.contains(&Scope::Segment(segment))
    }

    pub(crate) fn covers_stream_id(&self, sid: u32) -> bool {
        self.scopes
            .iter()
            .any(|s| matches!(*s, Scope::StreamIds { first, last } if first <= sid && sid <= last))
    }
}

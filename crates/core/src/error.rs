//! Why a core call was refused. Every refusal leaves every table, cache and list as it was.

use std::ops::Range;

use crate::domain::{DomainId, DomainKindName};
use crate::driver::{DriverError, Model};
use crate::pasid_alloc::{Pasid, PasidExhausted};
use crate::topology::{DeviceId, GroupId, PasidRefused, UnitId};

/// A refused core call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// No device of that name.
    #[error("no device {0}")]
    NoSuchDevice(DeviceId),
    /// No group of that number.
    #[error("no group {0:?}")]
    NoSuchGroup(GroupId),
    /// No domain of that number.
    #[error("no domain {0}")]
    NoSuchDomain(DomainId),
    /// No unit of that number, or no driver for it.
    #[error("no driver for {0}")]
    NoSuchUnit(UnitId),
    /// The call works on one unit (its domain's, or its first group's); the device is behind
    /// another.
    #[error("{device} is behind {device_unit}, not {unit}")]
    WrongUnit {
        /// The unit the call works on.
        unit: UnitId,
        /// The device.
        device: DeviceId,
        /// The device's unit.
        device_unit: UnitId,
    },
    /// The call needs another kind of domain.
    #[error("{domain} is a {is} domain; this needs a {needs} domain")]
    WrongDomainKind {
        /// The domain.
        domain: DomainId,
        /// What it is.
        is: DomainKindName,
        /// What the call needs.
        needs: DomainKindName,
    },
    /// A domain still in use cannot be freed (or a parent under a nested domain).
    #[error("{0} is still in use")]
    DomainInUse(DomainId),
    /// The unit does not have what the call needs.
    #[error("{unit} ({model}) cannot {what}")]
    Unsupported {
        /// The unit.
        unit: UnitId,
        /// Its architecture.
        model: Model,
        /// What it cannot do.
        what: &'static str,
    },
    /// The seed's model check: a configuration written for one architecture handed to a unit
    /// of the other.
    #[error("a {config} configuration cannot run on {unit}, an {unit_model}")]
    ModelMismatch {
        /// The unit.
        unit: UnitId,
        /// What it is.
        unit_model: Model,
        /// What the configuration was written for.
        config: Model,
    },
    /// VT-d scalable mode keeps PASID tables in host memory: a guest's whole table cannot be
    /// handed to the unit. Nest per PASID instead, as iommufd and QEMU do.
    #[error(
        "{unit} is VT-d scalable mode: its PASID tables live in host memory and a guest's whole \
         PASID table cannot be bound; attach a nested domain to (device, PASID) instead \
         (Iommu::attach_pasid)"
    )]
    PasidTableInHostMemory {
        /// The unit.
        unit: UnitId,
    },
    /// The device may not use PASIDs (Linux `pci_enable_pasid()` would refuse).
    #[error(transparent)]
    PasidRefused(#[from] PasidRefused),
    /// A PASID beyond what the device or the unit can send or take.
    #[error("PASID {pasid} is beyond {device}'s {bits} bits")]
    PasidTooWide {
        /// The device.
        device: DeviceId,
        /// The PASID.
        pasid: Pasid,
        /// Bits the device and unit both take.
        bits: u8,
    },
    /// PASID 0 stands for requests without a PASID; it is not attached to by number.
    #[error("PASID 0 is reserved for requests without a PASID")]
    PasidZero,
    /// No PASID left.
    #[error(transparent)]
    PasidExhausted(#[from] PasidExhausted),
    /// Nothing is attached to that PASID of that device.
    #[error("nothing is attached to PASID {pasid} of {device}")]
    PasidNotAttached {
        /// The device.
        device: DeviceId,
        /// The PASID.
        pasid: Pasid,
    },
    /// The device's PASIDs live in the PASID (CD) table of the domain its requests without
    /// PASID use, and the new target has no such table (blocked, identity): detach them first.
    #[error("{device} has PASIDs attached through its domain's PASID table; detach them first")]
    PasidsAttached {
        /// The device.
        device: DeviceId,
    },
    /// An address or size not aligned to the smallest page the unit maps.
    #[error("{what} {value:#x} is not aligned to {align:#x}")]
    Unaligned {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The alignment needed.
        align: u64,
    },
    /// An empty or wrapping range.
    #[error("empty or wrapping range")]
    BadRange,
    /// An IOVA range outside the domain's usable ranges.
    #[error("IOVA range {range:x?} is outside the domain's usable ranges")]
    OutOfAperture {
        /// The range asked for.
        range: Range<u64>,
    },
    /// An IOVA range that meets a reserved region of an attached device.
    #[error("IOVA range {range:x?} meets {device}'s reserved region {reserved:x?} ({why})")]
    Reserved {
        /// The range asked for.
        range: Range<u64>,
        /// The device whose region it is.
        device: DeviceId,
        /// The region.
        reserved: Range<u64>,
        /// What the region is.
        why: &'static str,
    },
    /// Part of the range is already mapped.
    #[error("IOVA {iova:#x} is already mapped")]
    AlreadyMapped {
        /// The first mapped address met.
        iova: u64,
    },
    /// Attaching would put a device's reserved region over a domain's existing mapping.
    #[error("{device}'s reserved region {reserved:x?} ({why}) is mapped in {domain}")]
    ReservedMapped {
        /// The device.
        device: DeviceId,
        /// The domain.
        domain: DomainId,
        /// The region.
        reserved: Range<u64>,
        /// What the region is.
        why: &'static str,
    },
    /// A guest invalidation Linux's uAPI would refuse.
    #[error("invalid invalidation: {0}")]
    BadInvalidation(&'static str),
    /// A page response for a group nobody is waiting on.
    #[error("no page request group {group} of {device} (PASID {pasid:?}) is waiting")]
    UnknownPageGroup {
        /// The device.
        device: DeviceId,
        /// The PASID.
        pasid: Option<Pasid>,
        /// The group index.
        group: u16,
    },
    /// The address space is not bound to that device.
    #[error("address space {space} is not bound to {device}")]
    NotBound {
        /// The address space.
        space: u32,
        /// The device.
        device: DeviceId,
    },
    /// No guest PASID table is bound there.
    #[error("no PASID table is bound to {0:?}")]
    NoPasidTable(GroupId),
    /// The driver refused or failed.
    #[error("{unit}: {source}")]
    Driver {
        /// The unit.
        unit: UnitId,
        /// What its driver said.
        source: DriverError,
    },
}

//! The objects an iommufd context holds, by ID (one ID space, as iommufd has).

use std::collections::BTreeMap;

use serde::Serialize;
use sviommu_core::topology::{DeviceId, UnitId};
use sviommu_core::DomainId;

use crate::data::NestedData;

/// An object's ID (iommufd's `__u32` IDs; 0 is never one).
pub type ObjectId = u32;

/// What kind of object an ID names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// `IOMMUFD_OBJ_IOAS`.
    Ioas,
    /// `IOMMUFD_OBJ_DEVICE`.
    Device,
    /// `IOMMUFD_OBJ_HWPT_PAGING`.
    HwptPaging,
    /// `IOMMUFD_OBJ_HWPT_NESTED`.
    HwptNested,
    /// `IOMMUFD_OBJ_VIOMMU`.
    Viommu,
    /// `IOMMUFD_OBJ_VDEVICE`.
    Vdevice,
    /// `IOMMUFD_OBJ_FAULT`.
    Fault,
    /// `IOMMUFD_OBJ_VEVENTQ`.
    Veventq,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ioas => "IOAS",
            Self::Device => "device",
            Self::HwptPaging => "paging HWPT",
            Self::HwptNested => "nested HWPT",
            Self::Viommu => "vIOMMU",
            Self::Vdevice => "vDEVICE",
            Self::Fault => "fault queue",
            Self::Veventq => "vEVENTQ",
        })
    }
}

/// One piece of an IOAS mapping: IOVA, host physical address, bytes (a user VA range may span
/// several host ranges of the VMM's memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Piece {
    /// IOVA.
    pub iova: u64,
    /// Host physical address.
    pub hpa: u64,
    /// Bytes.
    pub len: u64,
}

/// A mapping of an IOAS (iommufd's area).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Area {
    /// First IOVA.
    pub iova: u64,
    /// Bytes.
    pub length: u64,
    /// The VMM's address it maps.
    pub user_va: u64,
    /// DMA may write.
    pub write: bool,
    /// Where it lands in host memory.
    pub pieces: Vec<Piece>,
}

/// An IO address space: the VMM's mappings, replayed into every paging HWPT made from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ioas {
    /// Mappings by first IOVA.
    pub areas: BTreeMap<u64, Area>,
}

/// A physical device bound to the context (VFIO_DEVICE_BIND_IOMMUFD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its name in the topology.
    pub id: DeviceId,
    /// The unit it is behind.
    pub unit: UnitId,
}

/// A paging HWPT: a core paging domain holding its IOAS's mappings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwptPaging {
    /// The IOAS.
    pub ioas: ObjectId,
    /// The core domain.
    pub domain: DomainId,
    /// The unit.
    pub unit: UnitId,
    /// Allocated with NEST_PARENT.
    pub nest_parent: bool,
    /// Allocated with PASID.
    pub pasid: bool,
    /// Its fault queue.
    pub fault: Option<ObjectId>,
}

/// A nested HWPT: the guest's stage-1 data over a parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwptNested {
    /// The paging parent (NEST_PARENT).
    pub parent: ObjectId,
    /// The vIOMMU it was allocated on (SMMUv3).
    pub viommu: Option<ObjectId>,
    /// The unit.
    pub unit: UnitId,
    /// Allocated with PASID.
    pub pasid: bool,
    /// The guest's data.
    pub data: NestedData,
    /// The core nested domain (VT-d: a stage 1 per (device, PASID)); SMMUv3 binds the guest's
    /// CD table at attach instead.
    pub domain: Option<DomainId>,
    /// Its fault queue.
    pub fault: Option<ObjectId>,
}

/// A vIOMMU: the VM's slice of one SMMUv3, over a nesting parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viommu {
    /// The nesting parent HWPT.
    pub hwpt: ObjectId,
    /// The unit.
    pub unit: UnitId,
}

/// A vDEVICE: the device as the VM's vIOMMU names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vdevice {
    /// The vIOMMU.
    pub viommu: ObjectId,
    /// The bound device.
    pub device: ObjectId,
    /// The virtual ID (SMMUv3: the virtual StreamID).
    pub virt_id: u64,
}

/// A vEVENTQ: events of one vIOMMU for the VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Veventq {
    /// The vIOMMU.
    pub viommu: ObjectId,
    /// Its type.
    pub kind: u32,
    /// Entries it holds.
    pub depth: u32,
}

/// Every kind of object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    /// An IOAS.
    Ioas(Ioas),
    /// A bound device.
    Device(Device),
    /// A paging HWPT.
    HwptPaging(HwptPaging),
    /// A nested HWPT.
    HwptNested(HwptNested),
    /// A vIOMMU.
    Viommu(Viommu),
    /// A vDEVICE.
    Vdevice(Vdevice),
    /// A fault queue.
    Fault,
    /// A vEVENTQ.
    Veventq(Veventq),
}

impl Object {
    /// Its kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Ioas(_) => ObjectKind::Ioas,
            Self::Device(_) => ObjectKind::Device,
            Self::HwptPaging(_) => ObjectKind::HwptPaging,
            Self::HwptNested(_) => ObjectKind::HwptNested,
            Self::Viommu(_) => ObjectKind::Viommu,
            Self::Vdevice(_) => ObjectKind::Vdevice,
            Self::Fault => ObjectKind::Fault,
            Self::Veventq(_) => ObjectKind::Veventq,
        }
    }
}

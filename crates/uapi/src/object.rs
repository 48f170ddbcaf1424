//! The objects an iommufd context holds, by ID (one ID space, as iommufd has).

use std::collections::{BTreeMap, VecDeque};

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

/// A vEVENTQ: events of one vIOMMU for the VM (iommufd's `struct iommufd_veventq`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Veventq {
    /// The vIOMMU.
    pub viommu: ObjectId,
    /// Its type.
    pub kind: u32,
    /// Entries it holds.
    pub depth: u32,
    /// What the VMM has not read yet, oldest first; at most one LOST_EVENTS header, and
    /// only at the tail.
    pub deliver: VecDeque<Vevent>,
    /// The next event's sequence number (`[0, INT_MAX]`, wrapping to 0).
    pub sequence: u32,
    /// Events dropped because the queue held `depth` of them (each took a sequence number).
    pub lost: u64,
    /// Events queued since allocation.
    pub reported: u64,
}

/// `IOMMU_VEVENTQ_FLAG_LOST_EVENTS`: events were lost before this header.
pub const VEVENTQ_FLAG_LOST_EVENTS: u32 = 1 << 0;

/// One vEVENT as `read()` returns it: `struct iommufd_vevent_header` and, unless it is the
/// LOST_EVENTS header, the type's data (`struct iommu_vevent_arm_smmuv3`: the event record
/// with the virtual StreamID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Vevent {
    /// `flags`: [`VEVENTQ_FLAG_LOST_EVENTS`] or 0.
    pub flags: u32,
    /// `sequence`.
    pub sequence: u32,
    /// `evt[4]`, little-endian words; `None` for the LOST_EVENTS header.
    pub data: Option<[u64; 4]>,
}

/// `struct iommu_hwpt_pgfault`: one page request as the fault queue's `read()` returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PageFault {
    /// `IOMMU_PGFAULT_FLAGS_PASID_VALID`, `IOMMU_PGFAULT_FLAGS_LAST_PAGE`.
    pub flags: u32,
    /// `dev_id`: the device object.
    pub dev_id: ObjectId,
    /// `pasid` (valid with PASID_VALID).
    pub pasid: u32,
    /// `grpid`: the page request group index.
    pub grpid: u32,
    /// `perm`: `IOMMU_PGFAULT_PERM_*`.
    pub perm: u32,
    /// `addr`: the page's address.
    pub addr: u64,
    /// `length`: a hint of the bytes wanted (a page).
    pub length: u32,
    /// `cookie`: what the page response names the group by.
    pub cookie: u32,
}

/// `iommu_hwpt_pgfault` flags and permissions, `iommufd_page_response_code`.
pub mod pgfault {
    /// `IOMMU_PGFAULT_FLAGS_PASID_VALID`.
    pub const PASID_VALID: u32 = 1 << 0;
    /// `IOMMU_PGFAULT_FLAGS_LAST_PAGE`.
    pub const LAST_PAGE: u32 = 1 << 1;
    /// `IOMMU_PGFAULT_PERM_READ`.
    pub const PERM_READ: u32 = 1 << 0;
    /// `IOMMU_PGFAULT_PERM_WRITE`.
    pub const PERM_WRITE: u32 = 1 << 1;
    /// `IOMMUFD_PAGE_RESP_SUCCESS`.
    pub const RESP_SUCCESS: u32 = 0;
    /// `IOMMUFD_PAGE_RESP_INVALID`.
    pub const RESP_INVALID: u32 = 1;
}

/// A fault queue (`IOMMUFD_OBJ_FAULT`): page request groups of the devices attached to the
/// HWPTs allocated with it, for the VMM to read and answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultQueue {
    /// Complete groups not read yet, oldest first: their cookie and pages.
    pub deliver: VecDeque<(u32, Vec<PageFault>)>,
    /// Groups read and not answered yet, by cookie: the device, PASID and group index the
    /// response goes to.
    pub response: BTreeMap<u32, (DeviceId, Option<u32>, u16)>,
    /// The next cookie.
    pub next_cookie: u32,
    /// Groups queued since allocation.
    pub groups: u64,
    /// Groups answered by the VMM.
    pub answered: u64,
    /// Groups the host answered Invalid itself because the (device, PASID) they came from was
    /// detached or replaced, or the queue destroyed, before the VMM answered
    /// (`iommufd_auto_response_faults()`).
    pub abandoned: u64,
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
    Fault(FaultQueue),
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
            Self::Fault(_) => ObjectKind::Fault,
            Self::Veventq(_) => ObjectKind::Veventq,
        }
    }
}

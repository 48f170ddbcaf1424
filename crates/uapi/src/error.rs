//! Why a call was refused, and the errno iommufd returns for it.
//!
//! Every refusal leaves the hardware-visible state (table memory, the units' registers) as it
//! was; an invalidation array stops at the first entry it cannot handle and says how many it
//! handled before it.

use sviommu_core::topology::DeviceId;
use sviommu_core::CoreError;

use crate::object::{ObjectId, ObjectKind};

/// The errnos iommufd answers with (Linux's numbers, as `include/uapi/asm-generic/errno*.h`
/// defines them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[repr(u16)]
pub enum Errno {
    /// An ID or IOVA that does not exist.
    ENOENT = 2,
    /// Driver data the driver refuses (a bad vSTE, an unknown command).
    EIO = 5,
    /// Trailing bytes of a structure the kernel does not understand are not zero.
    E2BIG = 7,
    /// Out of memory (table pages, IDs).
    ENOMEM = 12,
    /// A user address outside the process's memory.
    EFAULT = 14,
    /// The object or PASID is in use.
    EBUSY = 16,
    /// It exists already (a mapping, a vDEVICE, a vEVENTQ).
    EEXIST = 17,
    /// A field is not correct.
    EINVAL = 22,
    /// No IOVA space left for an automatic mapping.
    ENOSPC = 28,
    /// Arithmetic overflowed.
    EOVERFLOW = 75,
    /// A known field has a value not supported.
    EOPNOTSUPP = 95,
    /// The range is in use by a reserved region.
    EADDRINUSE = 98,
}

impl Errno {
    /// Its name, as `strerrorname_np` gives it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ENOENT => "ENOENT",
            Self::EIO => "EIO",
            Self::E2BIG => "E2BIG",
            Self::ENOMEM => "ENOMEM",
            Self::EFAULT => "EFAULT",
            Self::EBUSY => "EBUSY",
            Self::EEXIST => "EEXIST",
            Self::EINVAL => "EINVAL",
            Self::ENOSPC => "ENOSPC",
            Self::EOVERFLOW => "EOVERFLOW",
            Self::EOPNOTSUPP => "EOPNOTSUPP",
            Self::EADDRINUSE => "EADDRINUSE",
        }
    }

    /// Its number.
    pub const fn number(self) -> u16 {
        self as u16
    }

    /// The errno of that name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::ENOENT,
            Self::EIO,
            Self::E2BIG,
            Self::ENOMEM,
            Self::EFAULT,
            Self::EBUSY,
            Self::EEXIST,
            Self::EINVAL,
            Self::ENOSPC,
            Self::EOVERFLOW,
            Self::EOPNOTSUPP,
            Self::EADDRINUSE,
        ]
        .into_iter()
        .find(|e| e.name() == name)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

/// A refused call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UapiError {
    /// A failure injected at an internal step ([`Iommufd::fail_nth`](crate::Iommufd::fail_nth),
    /// as iommufd's `fail_nth` injects an allocation failure).
    #[error("injected failure at {step}")]
    Injected {
        /// The step that failed.
        step: &'static str,
    },
    /// No object with that ID, or not of the kind the field takes.
    #[error("no {needs} with ID {id}")]
    NoSuchObject {
        /// The ID given.
        id: ObjectId,
        /// What the field takes.
        needs: &'static str,
    },
    /// A page-table ID (`pt_id`) naming an object that cannot be one here.
    #[error("object {id} is a {is}, which cannot be {what}")]
    WrongObject {
        /// The ID given.
        id: ObjectId,
        /// What it is.
        is: ObjectKind,
        /// What the call wanted it for.
        what: &'static str,
    },
    /// The object is used by others (listed).
    #[error("object {id} is in use by {users:?}")]
    InUse {
        /// The object.
        id: ObjectId,
        /// Who uses it.
        users: Vec<ObjectId>,
    },
    /// The device is bound to the context already.
    #[error("{device} is bound already, as object {id}")]
    AlreadyBound {
        /// The device.
        device: DeviceId,
        /// Its device object.
        id: ObjectId,
    },
    /// A device object is bound by its owner (VFIO) and unbound by it, not destroyed.
    #[error("object {0} is a bound device; its owner unbinds it")]
    BoundDevice(ObjectId),
    /// Flags the call does not know or does not support.
    #[error("{call}: flags {flags:#x} are not supported")]
    Flags {
        /// The call.
        call: &'static str,
        /// The flags refused.
        flags: u64,
    },
    /// A data, object or queue type the call does not support here.
    #[error("{what} type {value} is not supported here")]
    Type {
        /// Which type field.
        what: &'static str,
        /// Its value.
        value: u32,
    },
    /// The unit cannot do what was asked (no nesting, no vIOMMU on VT-d, a 5-level stage 1).
    #[error("the unit cannot {0}")]
    Unsupported(&'static str),
    /// Driver data shorter than its structure's last mandatory field.
    #[error("driver data of {len} bytes is shorter than the {needs} bytes of its structure")]
    ShortData {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needs: usize,
    },
    /// Bytes beyond the structure the kernel knows are not zero.
    #[error("driver data has non-zero bytes beyond its {known} known bytes")]
    TrailingData {
        /// Bytes of the known structure.
        known: usize,
    },
    /// A nested HWPT's parent is itself nested.
    #[error("HWPT {0} is nested: a nested HWPT cannot be a parent")]
    NestedOnNested(ObjectId),
    /// A parent that was not allocated with NEST_PARENT.
    #[error("HWPT {0} was not allocated with NEST_PARENT")]
    NotNestParent(ObjectId),
    /// A field value the call refuses.
    #[error("{field} = {value:#x} is not valid: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Why not.
        why: &'static str,
    },
    /// The guest's STE words are not a vSTE iommufd takes (IHI 0070 §5.2 fields outside
    /// those a guest may set, a Config other than abort / bypass / stage 1).
    #[error("vSTE refused: {0}")]
    BadVste(&'static str),
    /// A user address range outside the VMM's memory.
    #[error("user VA {user_va:#x} + {length:#x} is not the VMM's memory")]
    BadUserVa {
        /// Its start.
        user_va: u64,
        /// Its length.
        length: u64,
    },
    /// `start + length` overflows.
    #[error("{start:#x} + {length:#x} overflows")]
    Overflow {
        /// The start.
        start: u64,
        /// The length.
        length: u64,
    },
    /// The range is not inside the IOAS's allowed IOVA ranges (reserved regions, apertures).
    #[error("IOVA {iova:#x} + {length:#x} is outside the allowed ranges")]
    NotAllowed {
        /// The IOVA.
        iova: u64,
        /// The length.
        length: u64,
    },
    /// The range meets an existing mapping.
    #[error("IOVA {0:#x} is already mapped")]
    AlreadyMapped(u64),
    /// Nothing is mapped there, or the range would split a mapping.
    #[error("IOVA {iova:#x} + {length:#x} does not cover whole mappings")]
    NotMapped {
        /// The IOVA.
        iova: u64,
        /// The length.
        length: u64,
    },
    /// No free IOVA range of that length.
    #[error("no free IOVA range of {0:#x} bytes")]
    NoIovaSpace(u64),
    /// Attaching would put a device's reserved region over an IOAS mapping.
    #[error("{device}'s reserved region {start:#x}..{end:#x} is mapped in the IOAS")]
    ReservedInUse {
        /// The device.
        device: DeviceId,
        /// The region's start.
        start: u64,
        /// Its end (exclusive).
        end: u64,
    },
    /// A HWPT's aperture does not hold every mapping of its IOAS.
    #[error("the IOAS maps {0:#x}, outside the new HWPT's aperture")]
    Aperture(u64),
    /// The device (with the PASID) already has a HWPT: replace it instead.
    #[error("{device} is already attached{}; use replace", pasid_suffix(*.pasid))]
    AlreadyAttached {
        /// The device.
        device: DeviceId,
        /// The PASID.
        pasid: Option<u32>,
    },
    /// The PASID of the device is attached to something else already.
    #[error("PASID {pasid} of {device} is attached already")]
    PasidBusy {
        /// The device.
        device: DeviceId,
        /// The PASID.
        pasid: u32,
    },
    /// Nothing is attached there.
    #[error("nothing is attached to {device}{}", pasid_suffix(*.pasid))]
    NotAttached {
        /// The device.
        device: DeviceId,
        /// The PASID.
        pasid: Option<u32>,
    },
    /// PASID attach rules: the HWPT (or the device's RID HWPT) was not allocated with PASID.
    #[error("HWPT {0} was not allocated for PASID use")]
    PasidIncompatible(ObjectId),
    /// PASIDs are attached to the device while a HWPT without PASID support goes to its RID.
    #[error("{0} has PASIDs attached; its RID HWPT must be PASID-capable")]
    PasidsAttached(DeviceId),
    /// The PASID is 0 (the RID's) or beyond what the device and the unit take.
    #[error("PASID {pasid} is beyond {device}'s {bits} bits")]
    PasidWidth {
        /// The device.
        device: DeviceId,
        /// The PASID.
        pasid: u32,
        /// Bits the device and unit both take.
        bits: u8,
    },
    /// Another device of the same IOMMU group is attached to another HWPT.
    #[error("{device} shares its IOMMU group with {peer}, attached elsewhere")]
    GroupSplit {
        /// The device.
        device: DeviceId,
        /// The group peer.
        peer: DeviceId,
    },
    /// Objects of two different units.
    #[error("{device} is not behind the unit of object {object}")]
    WrongUnit {
        /// The device.
        device: DeviceId,
        /// The object.
        object: ObjectId,
    },
    /// A nested attach on SMMUv3 needs the device's vDEVICE on the vIOMMU first.
    #[error("{device} has no vDEVICE on vIOMMU {viommu}")]
    NoVdevice {
        /// The device.
        device: DeviceId,
        /// The vIOMMU.
        viommu: ObjectId,
    },
    /// A device or virtual ID that has a vDEVICE already.
    #[error("a vDEVICE exists already for {0}")]
    VdeviceExists(String),
    /// A vEVENTQ of that type exists on the vIOMMU.
    #[error("vIOMMU {0} has a vEVENTQ of that type already")]
    VeventqExists(ObjectId),
    /// One entry of an invalidation array failed; `handled` entries before it were done.
    #[error("invalidation entry {handled} refused: {source}")]
    Entry {
        /// Entries handled before the one refused.
        handled: u32,
        /// Why that entry was refused.
        source: Box<UapiError>,
    },
    /// An SMMUv3 command a guest may not pass (only TLBI_NSNH_ALL, TLBI_NH_*, ATC_INV,
    /// CFGI_CD and CFGI_CD_ALL).
    #[error("command {0} is not one a guest may pass")]
    Command(&'static str),
    /// An SMMUv3 command naming a virtual StreamID with no vDEVICE.
    #[error("no vDEVICE with virtual StreamID {0:#x}")]
    UnknownVsid(u64),
    /// The core refused a call the checks let through (out of table memory, a driver error).
    #[error(transparent)]
    Core(#[from] CoreError),
}

fn pasid_suffix(pasid: Option<u32>) -> String {
    pasid.map(|p| format!(" at PASID {p}")).unwrap_or_default()
}

impl UapiError {
    /// The errno iommufd returns for this refusal.
    pub fn errno(&self) -> Errno {
        use Errno::*;
        match self {
            Self::NoSuchObject { .. } | Self::NotMapped { .. } | Self::NoVdevice { .. } => ENOENT,
            Self::WrongObject { .. }
            | Self::ShortData { .. }
            | Self::NestedOnNested(_)
            | Self::NotNestParent(_)
            | Self::Invalid { .. }
            | Self::NotAllowed { .. }
            | Self::Aperture(_)
            | Self::AlreadyAttached { .. }
            | Self::NotAttached { .. }
            | Self::PasidIncompatible(_)
            | Self::PasidsAttached(_)
            | Self::PasidWidth { .. }
            | Self::GroupSplit { .. }
            | Self::WrongUnit { .. } => EINVAL,
            Self::InUse { .. }
            | Self::BoundDevice(_)
            | Self::AlreadyBound { .. }
            | Self::PasidBusy { .. } => EBUSY,
            Self::Flags { .. } | Self::Type { .. } | Self::Unsupported(_) => EOPNOTSUPP,
            Self::TrailingData { .. } => E2BIG,
            Self::BadVste(_) | Self::Command(_) | Self::UnknownVsid(_) => EIO,
            Self::BadUserVa { .. } => EFAULT,
            Self::Overflow { .. } => EOVERFLOW,
            Self::AlreadyMapped(_) | Self::VdeviceExists(_) | Self::VeventqExists(_) => EEXIST,
            Self::NoIovaSpace(_) => ENOSPC,
            Self::Injected { .. } => ENOMEM,
            Self::ReservedInUse { .. } => EADDRINUSE,
            Self::Entry { source, .. } => source.errno(),
            Self::Core(e) => core_errno(e),
        }
    }
}

/// The errno for a core refusal that got past the uapi's own checks.
fn core_errno(e: &CoreError) -> Errno {
    use sviommu_core::driver::DriverErrorKind;
    match e {
        CoreError::NoSuchDevice(_)
        | CoreError::NoSuchDomain(_)
        | CoreError::NoSuchGroup(_)
        | CoreError::PasidNotAttached { .. }
        | CoreError::NoPasidTable(_)
        | CoreError::NotBound { .. } => Errno::ENOENT,
        CoreError::Unsupported { .. }
        | CoreError::ModelMismatch { .. }
        | CoreError::PasidTableInHostMemory { .. } => Errno::EOPNOTSUPP,
        CoreError::DomainInUse(_) | CoreError::PasidsAttached { .. } => Errno::EBUSY,
        CoreError::AlreadyMapped { .. } => Errno::EEXIST,
        CoreError::Reserved { .. } | CoreError::ReservedMapped { .. } => Errno::EADDRINUSE,
        CoreError::PasidExhausted(_) => Errno::ENOSPC,
        CoreError::Driver { source, .. } => match source.kind {
            DriverErrorKind::NoResources => Errno::ENOMEM,
            DriverErrorKind::Unsupported => Errno::EOPNOTSUPP,
            DriverErrorKind::Busy => Errno::EBUSY,
            DriverErrorKind::Hardware => Errno::EIO,
            DriverErrorKind::Invalid => Errno::EINVAL,
        },
        _ => Errno::EINVAL,
    }
}

//! An object model in the shape of Linux's iommufd (`include/uapi/linux/iommufd.h`, v6.19)
//! over the sviommu IOMMU core, so a VMM developer can try a call sequence here and port it to
//! a kernel (or the reverse).
//!
//! | module | what |
//! |---|---|
//! | [`iommufd`] | [`Iommufd`]: IOAS, device, HWPT (paging, nested), vIOMMU, vDEVICE, fault queue, vEVENTQ; attach / replace / detach; invalidate; destroy |
//! | [`object`] | the objects and their IDs (one ID space) |
//! | [`data`] | driver data as bytes (`iommu_hwpt_vtd_s1`, `iommu_hwpt_arm_smmuv3`, invalidation arrays) and their checks |
//! | [`error`] | [`UapiError`], each with the [`Errno`] iommufd returns |
//! | [`machine`] | a ready-made host of either architecture to run calls on |
//!
//! Objects map onto the core: a paging HWPT is a core paging domain (NEST_PARENT makes it a
//! nesting parent) holding its IOAS's mappings; a VT-d nested HWPT is a core nested domain
//! over the parent, attached per (device, PASID); an SMMUv3 nested HWPT carries the guest's
//! STE and, attached, binds the guest's CD table with `bind_pasid_table`. Invalidations become
//! the core's `invalidate`.
//!
//! What the units report reaches the VMM through [`Iommufd::handle_host_events`]: SMMUv3
//! stage-1 events of a vIOMMU's devices into its vEVENTQ with the virtual StreamID, page
//! request groups into fault queues, everything else kept for the host with physical IDs.
//!
//! Not yet: dirty tracking, `IOAS_ALLOW_IOVAS`, `OPTION` and
//! automatic HWPTs (attaching a device straight to an IOAS) are not modelled.

#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

pub mod data;
pub mod error;
pub mod iommufd;
pub mod machine;
pub mod object;

pub use data::{HwptData, InvalidateArray, VtdS1Invalidate};
pub use error::{Errno, UapiError};
pub use iommufd::{
    HardwareSnapshot, HostEvents, HwInfoReply, HwptAlloc, Iommufd, IovaRanges, VmmRegion,
};
pub use object::{Object, ObjectId, ObjectKind, PageFault, Vevent};

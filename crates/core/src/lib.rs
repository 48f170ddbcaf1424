//! The IOMMU API of the seed thread ("iommu: Introduce bind_pasid_table API function"), built
//! on the sviommu hardware models.
//!
//! | module | what |
//! |---|---|
//! | [`topology`] | the system: units, the PCI hierarchy (ACS, aliases, PASID), platform masters; IOMMU groups computed from it, each with the reasons its devices cannot be separated |
//! | [`driver`] | [`IommuDriver`], the one interface down, and the data it answers with |
//! | [`arch`] | the two thin adapters over `sviommu_vtd::driver` and `sviommu_smmuv3::driver` |
//! | `iommu` | [`Iommu`]: domains, attach by group, map/unmap, reserved regions, flush policy |
//! | [`bind`] | per-PASID attach (nesting, SVA), `bind_pasid_table`, `sva_bind` / `sva_unbind` |
//! | [`invalidate`] | guests' invalidations, with the uAPI's refusals |
//! | [`fault`] | fault handlers per device, page request groups and responses, counters |
//! | [`audit`] | who can reach each address space and why, checked by DMA through the models |
//!
//! Groups decide what every call reaches: a bind, an attach or an invalidation that names one
//! device reaches its whole group (and, on SMMUv3 with one CD table per domain, every device of
//! the domain), and the API reports that rather than hiding it. The core knows no architecture
//! bits; PCI(e) facts such as ACS are not IOMMU architecture and live in `topology`. Every call
//! checks what the core knows before its first driver call, so a refused call changes nothing.

#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

pub mod arch;
pub mod audit;
pub mod bind;
pub mod domain;
pub mod driver;
pub mod error;
pub mod fault;
pub mod invalidate;
mod iommu;
pub mod pasid_alloc;
pub mod topology;

pub use audit::{AuditReport, ReachReason, Sentinel, SpaceKey};
pub use bind::AddressSpace;
pub use domain::{AddressSpaceId, Domain, DomainId, DomainKind, FlushPolicy};
pub use driver::{IommuDriver, Model, PasidTableConfig, Stage1Config, Stage1Format};
pub use error::CoreError;
pub use fault::{FaultEvent, FaultHandler};
pub use invalidate::{Granularity, InvalidateInfo};
pub use iommu::{Iommu, MapUndo, Reached, Target};
pub use pasid_alloc::Pasid;

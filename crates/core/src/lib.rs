//! The IOMMU API of the seed thread ("iommu: Introduce bind_pasid_table API function"), built
//! on the sviommu hardware models.
//!
//! This first piece is [`topology`]: the system the API works on (IOMMU units, the PCI
//! hierarchy with its ACS, DMA alias and PASID capabilities, platform masters with StreamIDs)
//! and the IOMMU groups computed from it. Groups come first because they decide what every
//! later call reaches: a bind, an attach or an invalidation that names one device reaches its
//! whole group, and the API reports that rather than hiding it.
//!
//! Domains, attach, map/unmap, `bind_pasid_table`, `sva_bind`, `invalidate`, faults and the
//! isolation audit follow, with the `IommuDriver` trait through which the core drives the VT-d
//! and SMMUv3 models. The core knows no architecture bits; PCI(e) facts such as ACS are not
//! IOMMU architecture and live here.

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
pub use iommu::{Iommu, Reached, Target};
pub use pasid_alloc::Pasid;

//! Scenarios for sviommu: a machine described in a TOML file (a PCI hierarchy, processes,
//! domains, binds, DMA), built on each IOMMU architecture through the IOMMU API
//! (`sviommu_core::Iommu` over the real drivers and hardware models), with devices whose DMA goes
//! to the hardware model's `translate` as a VMM's device models send it.
//!
//! | module | what |
//! |---|---|
//! | [`scenario`] | the file format, checked field by field, errors with file, line and column |
//! | [`machine`] | a scenario built on one architecture |
//! | [`run`] | DMA through the models, the audit, the statistics the models counted |
//! | [`ats`] | a device with ATS and PRI: translation requests, page requests, retries |
//! | [`stream`] | generated DMA streams: the page each request touches, from a seed |
//! | [`report`] | text and JSON |
//! | [`topology`] | groups and domains as a tree, with their reasons and PASID eligibility |
//! | [`trace`] | traces of what a scenario issued: binary and CSV forms |
//! | [`replay`] | a trace through the models, with a chosen configuration, on threads |
//! | [`vguest`] | a guest that runs its own driver against a vIOMMU (VT-d or SMMUv3) over its RAM |

#![forbid(unsafe_code)]

pub mod ats;
pub mod machine;
pub mod replay;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stream;
pub mod topology;
pub mod trace;
pub mod vguest;

pub use run::{run, run_source, Report};
pub use scenario::{Scenario, ScenarioError, Source};

//! Page-table formats the IOMMU models build and walk.
//!
//! | module | format | used by |
//! |---|---|---|
//! | [`x86`] | x86-64 4- and 5-level paging | CPU tables; VT-d first stage |
//! | [`vtd_ss`] | VT-d second-stage 3-, 4- and 5-level paging | VT-d second stage (GPA to HPA) |
//! | [`vmsa`] | VMSAv8-64 stage 1 and stage 2, 4K/16K/64K granules | SMMUv3 CD and STE tables |
//!
//! Each format describes its levels and entry bits once, as a [`Format`]; the radix engine in
//! [`radix`] builds (map, unmap) and walks every format with the same loop. A walk reads memory
//! only through a [`TableReader`](sviommu_memory::TableReader), which counts the reads, and finds
//! each table through a [`TableFetch`]: [`Direct`] for one stage, or a stage-2 walk when nested
//! ([`Nested`]), so a two-dimensional walk is two walkers composed.
//!
//! Walkers are hostile-input safe: tables may be guest-owned. Every read may fail, depth is
//! fixed by the format, and a malformed table yields a typed [`Fault`] naming the stage, level
//! and reason; never a panic, a loop or a read outside memory.

#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod bits;
mod nested;
pub mod radix;
pub mod vmsa;
pub mod vtd_ss;
mod walk;
pub mod x86;

pub use nested::{Nested, ThroughStage2};
pub use radix::{Build, Entry, Format, MapError, Mapped, Unmapped};
pub use sviommu_memory::bits::Field;
pub use walk::{
    AccBits, Access, Direct, Fault, FaultKind, Leaf, Located, Perms, ResumePoint, S1Fetch, Stage,
    TableFetch, Walk, WalkCtx, WalkHints, WalkObserver, WalkStep, Walked,
};

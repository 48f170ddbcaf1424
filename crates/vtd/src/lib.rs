//! Intel VT-d, one crate per architecture as DESIGN.md lays it out.
//!
//! | module | what |
//! |---|---|
//! | [`spec`] | register offsets and fields, root/context/PASID structures, invalidation and page-request descriptors, fault records and fault reasons: the one place that knows VT-d's bits |
//! | [`hw`] | the hardware model: registers through MMIO, tables in memory, DMA requests translated or blocked with their fault reason |
//!
//! The driver (`driver`) builds on [`spec`] and comes in a later step; it never calls [`hw`]
//! except through MMIO and memory.

#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

pub mod hw;
pub mod spec;

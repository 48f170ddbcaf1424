//! Intel VT-d, one crate per architecture as DESIGN.md lays it out.
//!
//! | module | what |
//! |---|---|
//! | [`spec`] | register offsets and fields, root/context/PASID structures, invalidation and page-request descriptors, fault records and fault reasons: the one place that knows VT-d's bits |
//!
//! The hardware model (`hw`) and the driver (`driver`) build on [`spec`] and come in later steps.

#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

pub mod spec;

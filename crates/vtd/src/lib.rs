//! Intel VT-d, one crate per architecture as DESIGN.md lays it out.
//!
//! | module | what |
//! |---|---|
//! | [`spec`] | register offsets and fields, root/context/PASID structures, invalidation and page-request descriptors, fault records and fault reasons: the one place that knows VT-d's bits |
//! | [`hw`] | the hardware model: registers through MMIO, tables in memory, DMA requests translated or blocked with their fault reason |
//! | [`driver`] | programs a unit as an OS does, through MMIO ([`driver::Mmio`]) and memory only: tables, domains, attach, the invalidation queue, faults and page requests |
//!
//! The driver builds on [`spec`]; it reaches [`hw`] only through MMIO and memory (the one
//! `hw` item it names is [`hw::Vtd`], to forward [`driver::Mmio`] to its registers).

#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

pub mod driver;
pub mod hw;
pub mod spec;

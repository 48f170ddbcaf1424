//! Arm SMMUv3: the architecture's bits ([`spec`]), the hardware model ([`hw`]) and the driver
//! that programs it through registers and memory only ([`driver`]).
//!
//! Arm IHI 0070 G.b, "Arm System Memory Management Unit Architecture Specification, SMMU
//! architecture version 3", is the edition followed throughout.

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

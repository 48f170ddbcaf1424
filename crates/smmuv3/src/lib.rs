//! Arm SMMUv3: the architecture's bits ([`spec`]) and the hardware model ([`hw`]); its driver
//! (`driver`) comes in a later step of the SMMUv3 issue.
//!
//! Arm IHI 0070 G.b, "Arm System Memory Management Unit Architecture Specification, SMMU
//! architecture version 3", is the issue followed throughout.

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

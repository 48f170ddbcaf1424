//! A C ABI over the sviommu hardware models, `vtd::hw::Vtd` and `smmuv3::hw::Smmu`, so that a
//! C emulator (QEMU's device shim, issue 16) can present them to a guest.
//!
//! The header is `include/sviommu.h`, generated from this crate by cbindgen
//! (`cbindgen.toml`); `tests/header.rs` fails when the committed header differs from what
//! cbindgen makes now. The README beside `Cargo.toml` documents the ABI.
//!
//! | module | what |
//! |---|---|
//! | `types` | the C structs and constants: parameters, requests, results, messages, statistics |
//! | `params` | the C parameter structs to and from `VtdParams` / `SmmuParams` (defaults are the models') |
//! | `callbacks` | the embedder's callbacks: guest memory as `PhysMemory`, MSI and message delivery (unsafe calls out) |
//! | `unit` | a unit behind the handle: the model, MMIO of any width, translate, drain, statistics (safe) |
//! | `text` | the statistics as `name value` lines (`sviommu_stats_text`) |
//! | `abi` | the exported functions: pointers to references, null checks, the panic guard (unsafe) |
//!
//! Only `callbacks` and `abi` may use `unsafe`; everything else is safe Rust over the models.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

#[allow(unsafe_code)]
mod abi;
#[allow(unsafe_code)]
mod callbacks;
mod params;
mod text;
mod types;
mod unit;

pub use abi::*;
pub use types::*;
pub use unit::SviommuUnit;

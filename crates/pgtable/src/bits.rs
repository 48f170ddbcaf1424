//! The bit helpers the formats use (declared in `sviommu_memory::bits`).

pub use sviommu_memory::bits::{low_mask, Field};

//! The two thin adapters that put each architecture's driver behind [`crate::IommuDriver`].
//! Each owns its unit's hardware model beside the driver: the driver programs it through
//! registers and memory only; the model answers the DMA that devices (and the audit) issue.

pub mod smmuv3;
pub mod vtd;

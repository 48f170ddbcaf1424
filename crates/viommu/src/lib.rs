//! Guest-visible virtual IOMMUs that forward to the host through the iommufd-shaped `uapi`.
//!
//! Not a second implementation: a vIOMMU is the hardware model itself (its registers, queues
//! and structure decoding) running over the guest's RAM ([`sviommu_memory::GuestPhys`]), plus a
//! forwarding hook at the points where the hardware acts on what the guest wrote. Every `uapi`
//! call comes from the vIOMMU; every device DMA goes through the host model's `translate`.
//!
//! | module | what |
//! |---|---|
//! | [`smmuv3`] | [`VSmmu`]: an SMMUv3 for the guest, one vIOMMU and a vDEVICE per assigned device on the host |
//! | [`vtd`] | [`VVtd`]: a scalable-mode VT-d with caching mode for the guest, a nested HWPT per (device, PASID) on the host |
//!
//! [`VSmmu::service`] is the VMM's event loop: host events for the guest's streams (the
//! vEVENTQ) into the guest's Event queue, page requests (the fault queue) into its PRI queue,
//! the guest's page responses back to the host. [`VVtd::service`] is the VT-d one: page
//! requests into the guest's page request queue, its page group responses back; faults stay
//! with the VMM (iommufd v6.19 has no VT-d vEVENTQ).

#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

pub mod smmuv3;
pub mod vtd;

pub use smmuv3::{GuestMemory, VSmmu};
pub use vtd::VVtd;

use sviommu_core::Model;
use sviommu_uapi::{ObjectId, UapiError};

/// Why a vIOMMU could not be made. Nothing a guest does later is an error here: a guest's
/// mistakes become the architected errors in that guest.
#[derive(Debug, thiserror::Error)]
pub enum ViommuError {
    /// The host unit behind an assigned device is of another architecture than the vIOMMU
    /// (the model check at the boundary).
    #[error("a {guest:?} vIOMMU cannot run over the {host:?} unit of device object {device}")]
    ModelMismatch {
        /// The vIOMMU's architecture.
        guest: Model,
        /// The host unit's.
        host: Model,
        /// The device object that was offered.
        device: ObjectId,
    },
    /// No device was assigned.
    #[error("a vIOMMU needs at least one assigned device")]
    NoDevice,
    /// Two devices were given the same virtual ID.
    #[error("virtual StreamID {0:#x} is assigned twice")]
    DuplicateVirtualId(u32),
    /// Two devices were given the same requester ID in the guest.
    #[error("guest requester ID {0:#06x} is assigned twice")]
    DuplicateRequesterId(u16),
    /// The host refused a call the VMM makes while building the vIOMMU.
    #[error(transparent)]
    Uapi(#[from] UapiError),
}

/// The VMM's context and a vIOMMU's own state are plain data: a thread that panicked while
/// holding one left nothing half-written that a later call could trip on, so keep serving.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! Physical memory for the sviommu models.
//!
//! Everything an IOMMU model reads (tables, queues) and writes (A/D bits, queue heads, fault
//! records) goes through [`PhysMemory`]. The host's memory is [`HostMemory`], a set of
//! `vm-memory` regions with holes between them, so that "outside memory" is a real case a walker
//! must handle. A VMM hands us its own `GuestMemoryMmap` through [`HostMemory::from_guest_memory`].
//!
//! [`image`] loads memory images (raw files, sparse pieces, QEMU ELF cores) as `HostMemory`
//! with holes wherever the image has nothing.
//!
//! [`FrameAllocator`] hands out naturally aligned, zeroed power-of-two blocks for table pages,
//! stream tables and queues. [`TableReader`] is the per-walk view of memory that counts every
//! table read: that count, returned with each walk's result, is the project's machine-independent
//! performance figure.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod addr;
pub mod bits;
mod frame;
mod guest;
mod host;
pub mod image;
mod mmio;
mod outbox;
mod reader;

pub use addr::{Address, Gpa, Hpa, Iova};
pub use frame::{FrameAllocator, FrameError};
pub use guest::{GuestPhys, GuestRam, GuestRamRegion};
pub use host::{HostMemory, MemoryError, PhysMemory};
pub use image::{ImageError, ImageKind, ImagePiece};
pub use mmio::Mmio;
pub use outbox::{Outbox, OutboxStats, Reservation};
pub use reader::TableReader;

/// 4 KiB, the smallest table page of every format here.
pub const PAGE_4K_LG2: u8 = 12;

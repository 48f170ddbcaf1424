//! A device's register window, as the software that drives it sees it.

use std::sync::Arc;

/// 4- and 8-byte register accesses at byte offsets from a unit's register base: the only way a
/// driver reaches the hardware model it programs (the VT-d and SMMUv3 drivers both take one).
pub trait Mmio {
    /// Reads `size` bytes (4 or 8) at `offset`.
    fn read(&self, offset: u64, size: u8) -> u64;
    /// Writes the low `size` bytes (4 or 8) of `value` at `offset`.
    fn write(&self, offset: u64, size: u8, value: u64);
}

/// Forwards a pointer's register accesses to the window it points at.
macro_rules! forward_mmio {
    ($($ptr:ty),*) => {$(
        impl<T: Mmio + ?Sized> Mmio for $ptr {
            fn read(&self, offset: u64, size: u8) -> u64 {
                (**self).read(offset, size)
            }
            fn write(&self, offset: u64, size: u8, value: u64) {
                (**self).write(offset, size, value);
            }
        }
    )*};
}

forward_mmio!(&T, Arc<T>);

//! The memory the models read and write.

use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
    VolatileMemory,
};

use crate::addr::{Address, Hpa};

/// A failed access. Models turn these into architected faults (a walk's external abort, a queue
/// fetch error); nothing here panics on a bad address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// Some byte of `[addr, addr + len)` is not backed by memory.
    #[error("{len} bytes at {addr:#x} are not all backed by memory")]
    Outside {
        /// First byte of the access.
        addr: u64,
        /// Length of the access.
        len: u64,
    },
    /// An atomic access that is not naturally aligned.
    #[error("access at {addr:#x} is not {align}-byte aligned")]
    Misaligned {
        /// Address of the access.
        addr: u64,
        /// Required alignment in bytes.
        align: u64,
    },
    /// Memory regions could not be set up.
    #[error("cannot create memory regions: {0}")]
    Layout(&'static str),
}

/// Physical memory as a model or a driver sees it.
///
/// `Addr` is the address space the memory is indexed by: [`Hpa`] for the host's memory, `Gpa`
/// for a guest's RAM (see [`crate::GuestRam`]). 64-bit accesses are single-copy atomic, as
/// descriptor reads and A/D updates are on the hardware.
pub trait PhysMemory: Send + Sync {
    /// The address space this memory is indexed by.
    type Addr: Address;

    /// Reads an aligned 64-bit little-endian word with acquire ordering.
    fn read_u64(&self, addr: Self::Addr) -> Result<u64, MemoryError>;
    /// Writes an aligned 64-bit little-endian word with release ordering.
    fn write_u64(&self, addr: Self::Addr, value: u64) -> Result<(), MemoryError>;
    /// Atomically replaces `current` with `new`; `Ok(Err(seen))` when the word was not `current`.
    fn compare_exchange_u64(
        &self,
        addr: Self::Addr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError>;
    /// Reads `buf.len()` bytes. Fails without a partial read if any byte is outside memory.
    fn read(&self, addr: Self::Addr, buf: &mut [u8]) -> Result<(), MemoryError>;
    /// Writes `buf`. Fails without a partial write if any byte is outside memory.
    fn write(&self, addr: Self::Addr, buf: &[u8]) -> Result<(), MemoryError>;

    /// Zeroes `len_bytes` from `addr`.
    fn zero(&self, addr: Self::Addr, len_bytes: u64) -> Result<(), MemoryError> {
        const CHUNK: [u8; 4096] = [0; 4096];
        let mut done = 0u64;
        while done < len_bytes {
            let step = (len_bytes - done).min(CHUNK.len() as u64);
            let at = addr
                .checked_add(done)
                .ok_or(MemoryError::Outside { addr: addr.raw(), len: len_bytes })?;
            // `step` is at most 4096, so the slice is in bounds.
            write_prefix(self, at, &CHUNK, step)?;
            done += step;
        }
        Ok(())
    }
}

fn write_prefix<M: PhysMemory + ?Sized>(
    mem: &M,
    at: M::Addr,
    chunk: &[u8; 4096],
    len: u64,
) -> Result<(), MemoryError> {
    let len = usize::try_from(len).unwrap_or(chunk.len()).min(chunk.len());
    mem.write(at, chunk.get(..len).unwrap_or(chunk))
}

/// Forwards every access of a pointer type to the memory it points at.
macro_rules! forward_phys_memory {
    ($($ptr:ty),*) => {$(
        impl<M: PhysMemory + ?Sized> PhysMemory for $ptr {
            type Addr = M::Addr;
            fn read_u64(&self, addr: Self::Addr) -> Result<u64, MemoryError> {
                (**self).read_u64(addr)
            }
            fn write_u64(&self, addr: Self::Addr, value: u64) -> Result<(), MemoryError> {
                (**self).write_u64(addr, value)
            }
            fn compare_exchange_u64(
                &self,
                addr: Self::Addr,
                current: u64,
                new: u64,
            ) -> Result<Result<u64, u64>, MemoryError> {
                (**self).compare_exchange_u64(addr, current, new)
            }
            fn read(&self, addr: Self::Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
                (**self).read(addr, buf)
            }
            fn write(&self, addr: Self::Addr, buf: &[u8]) -> Result<(), MemoryError> {
                (**self).write(addr, buf)
            }
        }
    )*};
}

// A reference lends memory to one walk; an `Arc` lets a unit and the driver programming it
// share one memory, as the silicon and the OS do.
forward_phys_memory!(&M, std::sync::Arc<M>);

/// The host's physical memory: `vm-memory` regions, with holes wherever no region is.
#[derive(Debug)]
pub struct HostMemory {
    inner: GuestMemoryMmap<()>,
}

impl HostMemory {
    /// Anonymous memory for each `(start, len_bytes)` range; ranges must not overlap.
    pub fn new(ranges: &[(Hpa, u64)]) -> Result<Self, MemoryError> {
        let mut sorted: Vec<(GuestAddress, usize)> = Vec::with_capacity(ranges.len());
        for &(start, len) in ranges {
            let len = usize::try_from(len).map_err(|_| MemoryError::Layout("region too large"))?;
            sorted.push((GuestAddress(start.raw()), len));
        }
        sorted.sort_by_key(|r| r.0);
        let inner = GuestMemoryMmap::from_ranges(&sorted)
            .map_err(|_| MemoryError::Layout("overlapping, empty or unmappable regions"))?;
        Ok(Self { inner })
    }

    /// Wraps memory a VMM already has, so its guest RAM can serve as the models' memory.
    pub fn from_guest_memory(inner: GuestMemoryMmap<()>) -> Self {
        Self { inner }
    }

    /// The underlying `vm-memory` object.
    pub fn guest_memory(&self) -> &GuestMemoryMmap<()> {
        &self.inner
    }

    /// The `(start, len_bytes)` of every region, in address order.
    pub fn regions(&self) -> Vec<(Hpa, u64)> {
        self.inner.iter().map(|r| (Hpa(r.start_addr().0), r.len())).collect()
    }

    /// Whether every byte of `[addr, addr + len)` is backed.
    pub fn contains(&self, addr: Hpa, len: u64) -> bool {
        usize::try_from(len).is_ok_and(|len| self.inner.check_range(GuestAddress(addr.0), len))
    }

    #[inline]
    fn with_atomic<R>(
        &self,
        addr: Hpa,
        op: impl FnOnce(&AtomicU64) -> R,
    ) -> Result<R, MemoryError> {
        if !addr.is_aligned(3) {
            return Err(MemoryError::Misaligned { addr: addr.0, align: 8 });
        }
        let outside = MemoryError::Outside { addr: addr.0, len: 8 };
        let (region, offset) = self.region_of(addr).ok_or(outside)?;
        let slice = region.as_volatile_slice().map_err(|_| outside)?;
        let word = slice.get_atomic_ref::<AtomicU64>(offset).map_err(|_| outside)?;
        Ok(op(word))
    }

    /// The region that holds `addr`, and `addr`'s offset in it. The first region is tried
    /// before the search: most memories have one, or keep their tables in the lowest (a walk
    /// reads through here once per level).
    #[inline]
    fn region_of(&self, addr: Hpa) -> Option<(&GuestRegionMmap<()>, usize)> {
        if let Some(first) = self.inner.iter().next() {
            let offset = addr.0.wrapping_sub(first.start_addr().0);
            if offset < first.len() {
                return usize::try_from(offset).ok().map(|o| (first, o));
            }
        }
        let (region, offset) = self.inner.to_region_addr(GuestAddress(addr.0))?;
        Some((region, usize::try_from(offset.0).ok()?))
    }

    fn check(&self, addr: Hpa, len: usize) -> Result<GuestAddress, MemoryError> {
        let outside = MemoryError::Outside { addr: addr.0, len: len as u64 };
        if self.inner.check_range(GuestAddress(addr.0), len) {
            Ok(GuestAddress(addr.0))
        } else {
            Err(outside)
        }
    }
}

impl PhysMemory for HostMemory {
    type Addr = Hpa;

    #[inline]
    fn read_u64(&self, addr: Hpa) -> Result<u64, MemoryError> {
        // Tables are little-endian; the host may not be.
        self.with_atomic(addr, |w| u64::from_le(w.load(Ordering::Acquire)))
    }

    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemoryError> {
        self.with_atomic(addr, |w| w.store(value.to_le(), Ordering::Release))
    }

    fn compare_exchange_u64(
        &self,
        addr: Hpa,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.with_atomic(addr, |w| {
            w.compare_exchange(current.to_le(), new.to_le(), Ordering::AcqRel, Ordering::Acquire)
                .map(u64::from_le)
                .map_err(u64::from_le)
        })
    }

    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let at = self.check(addr, buf.len())?;
        self.inner
            .read_slice(buf, at)
            .map_err(|_| MemoryError::Outside { addr: addr.0, len: buf.len() as u64 })
    }

    fn write(&self, addr: Hpa, buf: &[u8]) -> Result<(), MemoryError> {
        let at = self.check(addr, buf.len())?;
        self.inner
            .write_slice(buf, at)
            .map_err(|_| MemoryError::Outside { addr: addr.0, len: buf.len() as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_regions() -> HostMemory {
        HostMemory::new(&[(Hpa(0x10_0000), 0x1_0000), (Hpa(0x40_0000), 0x2000)]).unwrap()
    }

    #[test]
    fn holes_are_outside_memory() {
        let mem = two_regions();
        assert_eq!(mem.read_u64(Hpa(0x10_0000)), Ok(0));
        assert_eq!(
            mem.read_u64(Hpa(0x20_0000)),
            Err(MemoryError::Outside { addr: 0x20_0000, len: 8 })
        );
        // Last word of the first region is in; the next one is in the hole.
        assert!(mem.read_u64(Hpa(0x10_fff8)).is_ok());
        assert!(mem.read_u64(Hpa(0x11_0000)).is_err());
        assert!(mem.contains(Hpa(0x40_0000), 0x2000));
        assert!(!mem.contains(Hpa(0x40_0000), 0x2001));
        assert!(mem.read_u64(Hpa(u64::MAX - 7)).is_err());
    }

    #[test]
    fn words_are_little_endian_and_atomic_ops_work() {
        let mem = two_regions();
        mem.write_u64(Hpa(0x40_0008), 0x1122_3344_5566_7788).unwrap();
        let mut bytes = [0u8; 8];
        mem.read(Hpa(0x40_0008), &mut bytes).unwrap();
        assert_eq!(bytes, [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(
            mem.compare_exchange_u64(Hpa(0x40_0008), 1, 2).unwrap(),
            Err(0x1122_3344_5566_7788)
        );
        assert_eq!(
            mem.compare_exchange_u64(Hpa(0x40_0008), 0x1122_3344_5566_7788, 7).unwrap(),
            Ok(0x1122_3344_5566_7788)
        );
        assert_eq!(mem.read_u64(Hpa(0x40_0008)), Ok(7));
        assert_eq!(
            mem.read_u64(Hpa(0x40_0004)),
            Err(MemoryError::Misaligned { addr: 0x40_0004, align: 8 })
        );
    }

    #[test]
    fn byte_access_never_straddles_a_hole() {
        let mem = two_regions();
        let mut buf = [0u8; 16];
        assert!(mem.read(Hpa(0x10_fff8), &mut buf).is_err());
        assert!(mem.write(Hpa(0x40_1ff8), &buf).is_err());
        mem.write(Hpa(0x40_1ff0), &[0xab; 16]).unwrap();
        mem.zero(Hpa(0x40_0000), 0x2000).unwrap();
        assert_eq!(mem.read_u64(Hpa(0x40_1ff8)), Ok(0));
    }
}

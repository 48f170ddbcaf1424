//! A buddy allocator for table pages, stream tables and queues.

use std::collections::{BTreeMap, BTreeSet};

use crate::addr::Address;
use crate::bits::low_mask;
use crate::host::{MemoryError, PhysMemory};

/// Smallest block: a 4 KiB table page.
const MIN_LG2: u8 = 12;
/// Largest block we track (1 TiB); larger requests are refused.
const MAX_LG2: u8 = 40;

/// Why an allocation or a free failed. The allocator is unchanged by a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No free block of `2^size_lg2` bytes is left.
    #[error("out of frames: no free block of 2^{size_lg2} bytes")]
    Exhausted {
        /// The size asked for.
        size_lg2: u8,
    },
    /// The size is below 4 KiB or above what the allocator tracks.
    #[error("block size 2^{size_lg2} is not between 2^12 and 2^40")]
    BadSize {
        /// The size asked for.
        size_lg2: u8,
    },
    /// `free` of a block that this allocator did not hand out with that size.
    #[error("{addr:#x} (2^{size_lg2} bytes) was not allocated here")]
    NotAllocated {
        /// Start of the block.
        addr: u64,
        /// Its size.
        size_lg2: u8,
    },
    /// The new block could not be zeroed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// Hands out naturally aligned, zeroed power-of-two blocks from the ranges it was given.
///
/// A block never spans two of those ranges, so a block is always contiguous memory even where
/// two regions happen to touch.
#[derive(Debug, Clone)]
pub struct FrameAllocator<A: Address> {
    /// Free blocks by order (index = size_lg2 - MIN_LG2), each keyed by start address.
    free: Vec<BTreeSet<u64>>,
    /// Ranges `(start, end)` the blocks come from; a merge never crosses one.
    ranges: Vec<(u64, u64)>,
    allocated: BTreeMap<u64, u8>,
    _addr: std::marker::PhantomData<A>,
}

impl<A: Address> FrameAllocator<A> {
    /// An allocator over `(start, len_bytes)` ranges. Parts of a range that are not 4K-aligned
    /// are left unused.
    pub fn new(ranges: &[(A, u64)]) -> Self {
        let mut this = Self {
            free: vec![BTreeSet::new(); usize::from(MAX_LG2 - MIN_LG2) + 1],
            ranges: Vec::new(),
            allocated: BTreeMap::new(),
            _addr: std::marker::PhantomData,
        };
        for &(start, len) in ranges {
            let start = start.raw();
            let Some(end) = start.checked_add(len) else {
                continue;
            };
            let first = start.div_ceil(1 << MIN_LG2) << MIN_LG2;
            let last_end = end & !low_mask(MIN_LG2);
            if first >= last_end {
                continue;
            }
            this.ranges.push((first, last_end));
            // Carve the range into the largest naturally aligned blocks that fit.
            let mut at = first;
            while at < last_end {
                let mut lg2 = MAX_LG2;
                while lg2 > MIN_LG2 && (at & low_mask(lg2) != 0 || at + (1 << lg2) > last_end) {
                    lg2 -= 1;
                }
                this.list(lg2).insert(at);
                at += 1 << lg2;
            }
        }
        this
    }

    fn list(&mut self, lg2: u8) -> &mut BTreeSet<u64> {
        let index = usize::from(lg2 - MIN_LG2);
        // `lg2` is checked against MIN_LG2..=MAX_LG2 by every caller; the Vec has that length.
        match self.free.get_mut(index) {
            Some(list) => list,
            None => unreachable_list(),
        }
    }

    /// Allocates `2^size_lg2` bytes aligned to their size, and zeroes them in `mem`.
    pub fn alloc<M: PhysMemory<Addr = A> + ?Sized>(
        &mut self,
        mem: &M,
        size_lg2: u8,
    ) -> Result<A, FrameError> {
        if !(MIN_LG2..=MAX_LG2).contains(&size_lg2) {
            return Err(FrameError::BadSize { size_lg2 });
        }
        let order = (size_lg2..=MAX_LG2)
            .find(|&lg2| !self.list(lg2).is_empty())
            .ok_or(FrameError::Exhausted { size_lg2 })?;
        let block = self.list(order).first().copied().unwrap_or_default();
        // Zero before committing, so a failure leaves the allocator as it was.
        mem.zero(A::new(block), 1 << size_lg2)?;
        self.list(order).remove(&block);
        let mut lg2 = order;
        while lg2 > size_lg2 {
            lg2 -= 1;
            self.list(lg2).insert(block + (1 << lg2));
        }
        self.allocated.insert(block, size_lg2);
        Ok(A::new(block))
    }

    /// Returns a block that [`alloc`](Self::alloc) handed out, merging it with its free buddies.
    pub fn free(&mut self, addr: A, size_lg2: u8) -> Result<(), FrameError> {
        let mut block = addr.raw();
        if self.allocated.get(&block) != Some(&size_lg2) {
            return Err(FrameError::NotAllocated { addr: block, size_lg2 });
        }
        self.allocated.remove(&block);
        let range = self
            .ranges
            .iter()
            .copied()
            .find(|&(s, e)| s <= block && block < e)
            .unwrap_or((block, block));
        let mut lg2 = size_lg2;
        while lg2 < MAX_LG2 {
            let buddy = block ^ (1 << lg2);
            let merged = block.min(buddy);
            let fits = merged >= range.0 && merged + (2 << lg2) <= range.1;
            if !fits || !self.list(lg2).remove(&buddy) {
                break;
            }
            block = merged;
            lg2 += 1;
        }
        self.list(lg2).insert(block);
        Ok(())
    }

    /// Bytes not handed out.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().zip(MIN_LG2..).map(|(list, lg2)| list.len() as u64 * (1u64 << lg2)).sum()
    }
}

#[cold]
fn unreachable_list() -> ! {
    // Every caller range-checks the order first.
    unreachable!("frame allocator order out of range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostMemory, Hpa};

    fn mem() -> HostMemory {
        HostMemory::new(&[(Hpa(0x10_0000), 0x10_0000), (Hpa(0x80_0000), 0x3000)]).unwrap()
    }

    #[test]
    fn blocks_are_aligned_zeroed_and_disjoint() {
        let mem = mem();
        mem.write_u64(Hpa(0x10_0000), 0xdead).unwrap();
        let mut fa = FrameAllocator::new(&mem.regions());
        let total = fa.free_bytes();
        let mut got = Vec::new();
        for lg2 in [12u8, 16, 12, 14, 13, 12] {
            let a = fa.alloc(&mem, lg2).unwrap();
            assert!(a.is_aligned(lg2), "{a:?} not aligned to 2^{lg2}");
            assert_eq!(mem.read_u64(a), Ok(0));
            got.push((a.0, lg2));
        }
        got.sort();
        for w in got.windows(2) {
            assert!(w[0].0 + (1 << w[0].1) <= w[1].0, "overlap {w:?}");
        }
        for &(a, lg2) in &got {
            fa.free(Hpa(a), lg2).unwrap();
        }
        assert_eq!(fa.free_bytes(), total);
        // Everything merged back: the 1 MiB region is one block again.
        assert_eq!(fa.alloc(&mem, 20).unwrap(), Hpa(0x10_0000));
    }

    #[test]
    fn exhaustion_and_bad_frees_are_typed_errors_that_change_nothing() {
        let mem = mem();
        let mut fa = FrameAllocator::new(&[(Hpa(0x80_0000), 0x3000)]);
        assert_eq!(fa.alloc(&mem, 14), Err(FrameError::Exhausted { size_lg2: 14 }));
        assert_eq!(fa.alloc(&mem, 11), Err(FrameError::BadSize { size_lg2: 11 }));
        let a = fa.alloc(&mem, 13).unwrap();
        assert_eq!(a, Hpa(0x80_0000));
        let before = fa.free_bytes();
        assert!(matches!(fa.free(a, 12), Err(FrameError::NotAllocated { .. })));
        assert!(fa.free(Hpa(0x90_0000), 12).is_err());
        assert_eq!(fa.free_bytes(), before);
        fa.free(a, 13).unwrap();
        assert!(fa.free(a, 13).is_err(), "double free must be refused");
    }

    #[test]
    fn zeroing_failure_leaves_allocator_unchanged() {
        let mem = mem();
        // A range the allocator believes in but memory does not back.
        let mut fa = FrameAllocator::new(&[(Hpa(0x4000_0000), 0x1000)]);
        assert!(matches!(fa.alloc(&mem, 12), Err(FrameError::Memory(_))));
        assert_eq!(fa.free_bytes(), 0x1000);
    }
}

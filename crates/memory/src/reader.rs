//! The per-walk view of memory that counts table reads.

use crate::addr::Address;
use crate::host::{MemoryError, PhysMemory};

/// Memory as one walk sees it: every table read and every A/D update goes through here and is
/// counted, and the counts are returned with the walk's result.
///
/// A nested walk shares one reader between its stages, so the count is the whole 2D walk's.
#[derive(Debug)]
pub struct TableReader<'m, M: PhysMemory + ?Sized> {
    mem: &'m M,
    reads: u32,
    updates: u32,
}

impl<'m, M: PhysMemory + ?Sized> TableReader<'m, M> {
    /// A reader with zero counts.
    pub fn new(mem: &'m M) -> Self {
        Self { mem, reads: 0, updates: 0 }
    }

    /// Reads one 64-bit table entry. An attempt outside memory counts too: the hardware issued it.
    #[inline]
    pub fn read_entry(&mut self, addr: M::Addr) -> Result<u64, MemoryError> {
        self.reads = self.reads.saturating_add(1);
        self.mem.read_u64(addr)
    }

    /// Reads a structure wider than one word (a 512-bit PASID entry, a 64-byte STE or CD) as
    /// one read, as the hardware fetches it.
    pub fn read_block(&mut self, addr: M::Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.reads = self.reads.saturating_add(1);
        self.mem.read(addr, buf)
    }

    /// Reads the `N`-word structure at `addr` (`N` at most 8: the widest, an STE, a CD or a
    /// PASID-table entry, is 64 bytes) as one counted block read, as little-endian words.
    pub fn read_words<const N: usize>(&mut self, addr: M::Addr) -> Result<[u64; N], MemoryError> {
        const { assert!(N <= 8, "a structure is at most 64 bytes") };
        let mut bytes = [0u8; 64];
        let (buf, _) = bytes.split_at_mut(N * 8);
        self.read_block(addr, buf)?;
        let mut words = [0u64; N];
        for (w, chunk) in words.iter_mut().zip(buf.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(chunk);
            *w = u64::from_le_bytes(le);
        }
        Ok(words)
    }

    /// Atomically sets bits in an entry (A/D, AF, DBM dirty state) if it still holds
    /// `expected`. Returns whether the update took; a lost race means the walk must re-read.
    pub fn update_entry(
        &mut self,
        addr: M::Addr,
        expected: u64,
        new: u64,
    ) -> Result<bool, MemoryError> {
        self.updates = self.updates.saturating_add(1);
        Ok(self.mem.compare_exchange_u64(addr, expected, new)?.is_ok())
    }

    /// Adds `other`'s counts to this reader's: the reads a nested context made on this
    /// walk's behalf.
    pub fn absorb(&mut self, other: &TableReader<'_, M>) {
        self.reads = self.reads.saturating_add(other.reads);
        self.updates = self.updates.saturating_add(other.updates);
    }

    /// Table reads so far.
    pub fn reads(&self) -> u32 {
        self.reads
    }

    /// Entry updates (A/D writes) so far.
    pub fn updates(&self) -> u32 {
        self.updates
    }

    /// The memory behind this reader.
    pub fn memory(&self) -> &'m M {
        self.mem
    }

    /// Converts a raw table address from a descriptor into this memory's address space.
    pub fn addr(raw: u64) -> M::Addr {
        M::Addr::new(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostMemory, Hpa};

    #[test]
    fn counts_every_attempt() {
        let mem = HostMemory::new(&[(Hpa(0), 0x1000)]).unwrap();
        let mut rd = TableReader::new(&mem);
        assert_eq!(rd.read_entry(Hpa(8)), Ok(0));
        assert!(rd.read_entry(Hpa(0x2000)).is_err());
        let mut buf = [0u8; 64];
        rd.read_block(Hpa(0x40), &mut buf).unwrap();
        assert!(rd.update_entry(Hpa(8), 0, 0x20).unwrap());
        assert!(!rd.update_entry(Hpa(8), 0, 0x40).unwrap());
        assert_eq!((rd.reads(), rd.updates()), (3, 2));
        // A structure is one read, its words little-endian; one running off memory counts too.
        mem.write_u64(Hpa(0x48), 0x1122).unwrap();
        assert_eq!(rd.read_words::<2>(Hpa(0x40)), Ok([0, 0x1122]));
        assert!(rd.read_words::<8>(Hpa(0xfe0)).is_err());
        assert_eq!(rd.reads(), 5);
        assert_eq!(mem.read_u64(Hpa(8)), Ok(0x20));
    }
}

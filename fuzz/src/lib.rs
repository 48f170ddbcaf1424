//! What the fuzz targets share: memory the input fills, addresses that land in it often, and
//! accesses.
//!
//! Every input is used: these helpers shape bytes into values (an address near the memory or
//! anywhere, a word written at an offset taken modulo the memory) and never reject one.

use arbitrary::Arbitrary;
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::Access;

/// The first backed range: `[0, LOW_LEN)`, so that small table pointers land in memory.
pub const LOW_LEN: u64 = 0x1_0000;
/// The second backed range starts here; between the two is a hole.
pub const HIGH: u64 = 0x2_0000;
/// Bytes in the second range.
pub const HIGH_LEN: u64 = 0x1_0000;
/// Addresses `Addr::Near` picks from: both ranges, the hole between them, and a hole above.
pub const NEAR_SPAN: u64 = 0x4_0000;

/// An address: mostly near the memory (in it, or in a hole next to it), sometimes any.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum Addr {
    /// Within `[0, NEAR_SPAN)`.
    Near(u32),
    /// Any 64-bit value.
    Any(u64),
}

impl Addr {
    /// The address.
    pub fn get(self) -> u64 {
        match self {
            Addr::Near(a) => u64::from(a) % NEAR_SPAN,
            Addr::Any(a) => a,
        }
    }
}

/// One word the input places in memory.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub struct Word {
    /// Where, as a word index taken modulo the backed words.
    pub at: u16,
    /// The value.
    pub value: u64,
}

/// The contents of memory: raw bytes from address 0 on, then single words anywhere.
#[derive(Clone, Debug, Arbitrary)]
pub struct Contents {
    /// Copied to address 0 on (as far as the low range goes).
    pub dense: Vec<u8>,
    /// Written after the bytes.
    pub words: Vec<Word>,
}

/// The backed address of word index `at` (modulo the words of both ranges).
pub fn word_addr(at: u16) -> u64 {
    let words = (LOW_LEN + HIGH_LEN) / 8;
    let byte = (u64::from(at) % words) * 8;
    if byte < LOW_LEN {
        byte
    } else {
        HIGH + (byte - LOW_LEN)
    }
}

/// Two ranges of memory with a hole between them, filled as `contents` says.
pub fn memory(contents: &Contents) -> HostMemory {
    let mem = HostMemory::new(&[(Hpa(0), LOW_LEN), (Hpa(HIGH), HIGH_LEN)])
        .unwrap_or_else(|e| panic!("fuzz harness: cannot map its memory: {e}"));
    let n = contents.dense.len().min(LOW_LEN as usize);
    if let Some(bytes) = contents.dense.get(..n) {
        mem.write(Hpa(0), bytes)
            .unwrap_or_else(|e| panic!("fuzz harness: the low range refused a write: {e}"));
    }
    for w in &contents.words {
        mem.write_u64(Hpa(word_addr(w.at)), w.value)
            .unwrap_or_else(|e| panic!("fuzz harness: a backed word refused a write: {e}"));
    }
    mem
}

/// An access: write or read, execute, privileged.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub struct Acc {
    /// A write.
    pub write: bool,
    /// An instruction fetch.
    pub exec: bool,
    /// Privileged.
    pub privileged: bool,
}

impl From<Acc> for Access {
    fn from(a: Acc) -> Access {
        Access { write: a.write, exec: a.exec, privileged: a.privileged }
    }
}

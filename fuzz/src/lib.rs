//! What the fuzz targets share: memory the input fills, addresses that land in it often, and
//! accesses.
//!
//! Every input is used: these helpers shape bytes into values (an address near the memory or
//! anywhere, a word written at an offset taken modulo the memory) and never reject one.

use arbitrary::Arbitrary;
use sviommu_memory::{HostMemory, Hpa, Mmio, PhysMemory};
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
    pub value: Value,
}

/// A word's value: any, or shaped like a table entry or structure word whose pointer lands near
/// the memory, so that walks and structure fetches go deep.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum Value {
    /// Any 64-bit value.
    Any(u64),
    /// A 4K-aligned address within `[0, NEAR_SPAN)` with flag bits 11:0 and bits 63:52.
    Entry { addr: u32, low: u16, high: u16 },
}

impl Value {
    /// The word.
    pub fn get(self) -> u64 {
        match self {
            Value::Any(v) => v,
            Value::Entry { addr, low, high } => {
                (u64::from(addr) % NEAR_SPAN & !0xfff)
                    | u64::from(low & 0xfff)
                    | (u64::from(high & 0xfff) << 52)
            }
        }
    }
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
        mem.write_u64(Hpa(word_addr(w.at)), w.value.get())
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

/// What software does to a unit besides requests: register accesses and memory stores.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum RegOp {
    /// A register write at a 4-byte step of the unit's window (`Window::offset`), 4 or 8 bytes.
    Write { at: u16, wide: bool, value: u64 },
    /// One of the registers the programming sequences use, by index (`Window::known`), so
    /// that queues and tables come up often.
    WriteKnown { which: u8, value: u64 },
    /// A register read.
    Read { at: u16, wide: bool },
    /// Software changes memory between requests (a table, a descriptor, a command).
    Store { at: u16, value: Value },
}

/// Where a unit's registers are.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// The offset of register step `at`.
    pub offset: fn(u16) -> u64,
    /// The registers `RegOp::WriteKnown` picks from: offset and size.
    pub known: &'static [(u64, u8)],
}

/// Does `op` to `unit` and the memory it reads.
pub fn apply<U: Mmio, M: PhysMemory<Addr = Hpa>>(unit: &U, mem: &M, window: Window, op: RegOp) {
    let size = |wide| if wide { 8 } else { 4 };
    match op {
        RegOp::Write { at, wide, value } => unit.write((window.offset)(at), size(wide), value),
        RegOp::WriteKnown { which, value } => {
            if let Some(&(off, sz)) = window.known.get(usize::from(which) % window.known.len()) {
                unit.write(off, sz, value);
            }
        }
        RegOp::Read { at, wide } => {
            unit.read((window.offset)(at), size(wide));
        }
        RegOp::Store { at, value } => {
            let _ = mem.write_u64(Hpa(word_addr(at)), value.get());
        }
    }
}

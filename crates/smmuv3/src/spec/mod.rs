//! The one place that knows SMMUv3's bits: register offsets and fields, the in-memory structures
//! the SMMU reads (stream table, context descriptors), the queue entries it reads and writes
//! (commands, event records, PRI page requests), and the architected codes.
//!
//! Arm IHI 0070 G.b is the issue followed; every declaration cites its section.
//!
//! | module | declares | spec |
//! |---|---|---|
//! | [`regs`] | page 0 / page 1 register offsets and fields, queue pointers | §6.2, §6.3 |
//! | [`ste`] | Stream Table Entry, level-1 stream table descriptor | §5.2, §5.1 |
//! | [`cd`] | Context Descriptor, level-1 CD table descriptor | §5.4, §5.3 |
//! | [`cmd`] | command opcodes, the 16-byte command, CERROR codes | §4, §7.1 |
//! | [`event`] | event numbers and the 32-byte event record | §7.3 |
//! | [`priq`] | the 16-byte PRI queue entry (page request) | §8 |
//!
//! Conventions:
//! - Every layout is declared once with [`bitfields!`](sviommu_memory::bitfields), the same
//!   macro VT-d's `spec` uses: one line per field gives its name, its bits and its accessors, and
//!   the macro makes the field const, the getter and setter, the `FIELDS` table and `Debug`.
//! - Structures are little-endian 64-bit words viewed through `#[repr(transparent)]` types.
//!   Fields are associated [`WideField`]s (`Ste::S2T0SZ`) numbered as the spec numbers the bits
//!   of the whole structure (bits `[165:160]`), so a declaration can be checked against the spec
//!   by eye. A 32-bit register's fields are [`Field32`](sviommu_memory::bits::Field32)s.
//! - Getters and setters are named for the spec mnemonic, lowercased. A field whose encodings
//!   include Reserved values has a typed getter returning `Result<_, Reserved>`, so `hw` can raise
//!   the architected error (C_BAD_STE, C_BAD_CD, CERROR_ILL) instead of guessing; its raw bits are
//!   still available through the `*_raw` accessors.
//! - Address fields (`S1ContextPtr`, `S2TTB`, `TTB0`, `L2Ptr`, ...) are read and written in
//!   place: the getter returns the address, the setter takes the address and drops the bits the
//!   field does not hold.
//! - Bits the spec marks "Reserved, RES0" in every configuration are given as per-word masks
//!   (`RES0`), so `hw` can treat a structure that sets them as invalid. Fields that are RES0 only
//!   when a feature is absent are declared as fields; whether they are allowed depends on the ID
//!   registers and is for `hw` to decide.

pub mod cd;
pub mod cmd;
pub mod event;
pub mod priq;
pub mod regs;
pub mod ste;

pub use sviommu_memory::bits::{debug_fields, FieldAccess, NamedField, WideField};

pub use cd::{Cd, L1Cd};
pub use cmd::{CError, Command, Opcode, PriResp, ResumeAction, SyncCs};
pub use event::{Class, EventId, EventRecord};
pub use priq::PageRequest;
pub use ste::{Eats, L1Std, S1Dss, S1Fmt, Ste, StreamConfig, Strw};

/// A raw field value that the spec reserves (or leaves undefined) for the field being decoded.
/// `hw` turns it into the architected error for the structure it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("reserved encoding {0:#x}")]
pub struct Reserved(pub u64);

/// A translation granule, as selected by CD.TG0/TG1, STE.S2TG and the TLBI commands' TG.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4KB.
    Size4K,
    /// 16KB.
    Size16K,
    /// 64KB.
    Size64K,
}

impl Granule {
    /// log2 of the granule size in bytes.
    pub const fn lg2(self) -> u8 {
        match self {
            Granule::Size4K => 12,
            Granule::Size16K => 14,
            Granule::Size64K => 16,
        }
    }

    /// Decodes the TG0 encoding, also used by STE.S2TG (§5.4 CD.TG0, §5.2 STE.S2TG):
    /// 0b00 4KB, 0b01 64KB, 0b10 16KB, 0b11 Reserved.
    pub const fn from_tg0(raw: u64) -> Result<Self, Reserved> {
        match raw {
            0b00 => Ok(Granule::Size4K),
            0b01 => Ok(Granule::Size64K),
            0b10 => Ok(Granule::Size16K),
            _ => Err(Reserved(raw)),
        }
    }

    /// The TG0 / S2TG encoding.
    pub const fn tg0(self) -> u8 {
        match self {
            Granule::Size4K => 0b00,
            Granule::Size64K => 0b01,
            Granule::Size16K => 0b10,
        }
    }

    /// Decodes the TG1 encoding, which differs from TG0 as in the A-profile TCR (§5.4 CD.TG1):
    /// 0b00 Reserved, 0b01 16KB, 0b10 4KB, 0b11 64KB.
    pub const fn from_tg1(raw: u64) -> Result<Self, Reserved> {
        match raw {
            0b01 => Ok(Granule::Size16K),
            0b10 => Ok(Granule::Size4K),
            0b11 => Ok(Granule::Size64K),
            _ => Err(Reserved(raw)),
        }
    }

    /// The TG1 encoding.
    pub const fn tg1(self) -> u8 {
        match self {
            Granule::Size16K => 0b01,
            Granule::Size4K => 0b10,
            Granule::Size64K => 0b11,
        }
    }

    /// Decodes a TLB invalidation command's TG (§4.4.1.1): 0b00 means "any granule" (no range
    /// and no TTL hint), otherwise 0b01 4KB, 0b10 16KB, 0b11 64KB.
    pub const fn from_tlbi_tg(raw: u64) -> Result<Option<Self>, Reserved> {
        match raw {
            0b00 => Ok(None),
            0b01 => Ok(Some(Granule::Size4K)),
            0b10 => Ok(Some(Granule::Size16K)),
            0b11 => Ok(Some(Granule::Size64K)),
            _ => Err(Reserved(raw)),
        }
    }

    /// The TLBI TG encoding of a known granule.
    pub const fn tlbi_tg(self) -> u8 {
        match self {
            Granule::Size4K => 0b01,
            Granule::Size16K => 0b10,
            Granule::Size64K => 0b11,
        }
    }
}

/// The size in bits encoded by a 3-bit physical address size field: SMMU_IDR5.OAS (§6.3.6),
/// CD.IPS (§5.4) and STE.S2PS (§5.2) share the encoding 32, 36, 40, 42, 44, 48, 52, 56 bits.
/// G.b notes that 0b110 is Reserved in SMMUv3.0 and 0b111 before SMMUv3.4, behaving as the
/// largest supported size; capping the value to the implemented OAS is `hw`'s job.
pub const fn address_size_bits(encoding: u64) -> Result<u8, Reserved> {
    match encoding {
        0b000 => Ok(32),
        0b001 => Ok(36),
        0b010 => Ok(40),
        0b011 => Ok(42),
        0b100 => Ok(44),
        0b101 => Ok(48),
        0b110 => Ok(52),
        0b111 => Ok(56),
        _ => Err(Reserved(encoding)),
    }
}

/// Checks shared by the unit tests of every view: each accessor round-trips, leaves the other
/// bits alone, and fits its getter's type; and the RES0 masks are exactly the bits no field
/// covers.
#[cfg(test)]
pub(crate) mod test_support {
    use super::FieldAccess;

    /// The union of the fields' masks, per word.
    pub fn defined<T, const N: usize>(fields: &[FieldAccess<T>]) -> [u64; N] {
        let mut out = [0u64; N];
        for fa in fields {
            if let Some(w) = out.get_mut(fa.named.field.word) {
                *w |= fa.named.field.field.mask();
            }
        }
        out
    }

    /// No two fields share a bit.
    pub fn assert_disjoint<T>(fields: &[FieldAccess<T>]) {
        for (i, a) in fields.iter().enumerate() {
            for b in fields.iter().skip(i + 1) {
                let (fa, fb) = (a.named.field, b.named.field);
                assert!(
                    fa.word != fb.word || fa.field.mask() & fb.field.mask() == 0,
                    "{} overlaps {}",
                    a.named.name,
                    b.named.name
                );
            }
        }
    }

    /// The fields are disjoint, fit their getters, and `res0` is exactly the bits they leave.
    pub fn assert_layout<T, const N: usize>(fields: &[FieldAccess<T>], res0: &[u64; N]) {
        assert_disjoint(fields);
        assert_widths(fields);
        let d: [u64; N] = defined(fields);
        for (w, (d, r)) in d.iter().zip(res0.iter()).enumerate() {
            assert_eq!(!d, *r, "word {w}");
        }
    }

    /// Every field fits its getter's type.
    pub fn assert_widths<T>(fields: &[FieldAccess<T>]) {
        for fa in fields {
            assert!(
                u32::from(fa.named.field.field.width) <= fa.value_bits,
                "{} is wider than its getter's type",
                fa.named.name
            );
        }
    }

    /// `set(value)` then `get()` gives the value back (cut to the field), and no other bit of
    /// `view` changed.
    pub fn assert_round_trip<T: Copy, const N: usize>(
        fields: &[FieldAccess<T>],
        mut view: T,
        words: impl Fn(&T) -> [u64; N],
        value: u64,
    ) {
        for fa in fields {
            let nf = fa.named;
            let before = words(&view);
            // A value that fits the field (an address keeps its other bits: the setter drops
            // them).
            let (given, want) = if nf.address {
                (value, value & nf.field.field.mask())
            } else {
                let v = value & (nf.field.field.mask() >> nf.field.field.lo);
                (v, v)
            };
            (fa.set)(&mut view, given);
            assert_eq!((fa.get)(&view), want, "{} did not round-trip", nf.name);
            let after = words(&view);
            for (w, (b, a)) in before.iter().zip(after.iter()).enumerate() {
                let outside = if w == nf.field.word { !nf.field.field.mask() } else { u64::MAX };
                assert_eq!(b & outside, a & outside, "setting {} changed other bits", nf.name);
            }
        }
    }
}

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
//! - Structures are little-endian 64-bit words viewed through `#[repr(transparent)]` types.
//!   Fields are [`WideField`]s numbered as the spec numbers the bits of the whole structure
//!   (STE.S2T0SZ is bits `[165:160]`), so a declaration can be checked against the spec by eye.
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

use std::fmt;

use sviommu_memory::bits::WideField;

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

/// A field of a multi-word structure with its spec name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedField {
    /// The spec mnemonic, as the spec spells it (`S2T0SZ`, `InputAddr`).
    pub name: &'static str,
    /// Where it is, in whole-structure bit numbers.
    pub field: WideField,
    /// The field holds address bits in place (`S2TTB` holds address bits `[55:4]` in bits
    /// `[55:4]` of its word), so it reads as an address rather than a shifted-down number.
    pub address: bool,
}

impl NamedField {
    /// A numeric field.
    pub const fn value(name: &'static str, field: WideField) -> Self {
        Self { name, field, address: false }
    }

    /// An address field, read in place.
    pub const fn address(name: &'static str, field: WideField) -> Self {
        Self { name, field, address: true }
    }

    /// The field's value in `words`: shifted down, or in place for an address field.
    pub fn read(&self, words: &[u64]) -> u64 {
        if self.address {
            self.field.in_place(words)
        } else {
            self.field.get(words)
        }
    }
}

/// A named field of a view `T` together with its typed getter and setter, both seen through
/// `u64` (a one-bit field reads 0 or 1; an address field reads in place). Generic code uses
/// these: `Debug`, inspection tools, and the round-trip tests over every accessor.
pub struct FieldAccess<T> {
    /// Name and position.
    pub named: NamedField,
    /// Calls the field's getter.
    pub get: fn(&T) -> u64,
    /// Calls the field's setter.
    pub set: fn(&mut T, u64),
    /// Bits in the getter's return type (1 for `bool`); the field is never wider.
    pub value_bits: u32,
}

impl<T> Clone for FieldAccess<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for FieldAccess<T> {}

impl<T> fmt::Debug for FieldAccess<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldAccess")
            .field("named", &self.named)
            .field("value_bits", &self.value_bits)
            .finish_non_exhaustive()
    }
}

/// How a field's shifted-down bits become a getter's value and back. The field widths are
/// checked against `BITS` by the unit tests, so `from_raw` never loses bits in practice.
pub(crate) trait FieldValue: Copy {
    const BITS: u32;
    fn from_raw(raw: u64) -> Self;
    fn into_raw(self) -> u64;
}

impl FieldValue for bool {
    const BITS: u32 = 1;
    fn from_raw(raw: u64) -> Self {
        raw != 0
    }
    fn into_raw(self) -> u64 {
        u64::from(self)
    }
}

macro_rules! field_value_int {
    ($($ty:ty),*) => {$(
        impl FieldValue for $ty {
            const BITS: u32 = <$ty>::BITS;
            fn from_raw(raw: u64) -> Self {
                // The field is at most BITS wide (unit-tested), so this never saturates.
                <$ty>::try_from(raw).unwrap_or(<$ty>::MAX)
            }
            fn into_raw(self) -> u64 {
                u64::from(self)
            }
        }
    )*};
}
field_value_int!(u8, u16, u32, u64);

/// Declares a getter and a setter for each listed field of a `[u64; N]` view, and the view's
/// `FIELDS` table. An entry is
/// `"Spec name" => getter, setter: FIELD_CONST as type;` where `type` is `bool`, `u8`, `u16`,
/// `u32`, `u64`, or `addr` (an address field read and written in place).
macro_rules! accessors {
    ($view:ty {
        $( $(#[$doc:meta])* $name:literal => $get:ident, $set:ident : $field:ident as $kind:tt ; )*
    }) => {
        impl $view {
            $( accessors!(@one $(#[$doc])* $name, $get, $set, $field, $kind); )*

            /// Every named field of this structure in spec order, with its getter and setter.
            pub const FIELDS: &'static [$crate::spec::FieldAccess<Self>] = &[
                $( accessors!(@entry $name, $get, $set, $field, $kind) ),*
            ];
        }
    };
    (@one $(#[$doc:meta])* $name:literal, $get:ident, $set:ident, $field:ident, addr) => {
        $(#[$doc])*
        #[must_use]
        pub fn $get(&self) -> u64 {
            $field.in_place(&self.0)
        }
        #[doc = concat!(
            "Sets `", $name, "` from an address; address bits the field does not hold are dropped."
        )]
        pub fn $set(&mut self, addr: u64) {
            $field.set(&mut self.0, addr >> $field.field.lo)
        }
    };
    (@one $(#[$doc:meta])* $name:literal, $get:ident, $set:ident, $field:ident, $ty:ty) => {
        $(#[$doc])*
        #[must_use]
        pub fn $get(&self) -> $ty {
            <$ty as $crate::spec::FieldValue>::from_raw($field.get(&self.0))
        }
        #[doc = concat!("Sets `", $name, "`; bits beyond the field's width are dropped.")]
        pub fn $set(&mut self, value: $ty) {
            $field.set(&mut self.0, $crate::spec::FieldValue::into_raw(value))
        }
    };
    (@entry $name:literal, $get:ident, $set:ident, $field:ident, addr) => {
        $crate::spec::FieldAccess {
            named: $crate::spec::NamedField::address($name, $field),
            get: |v: &Self| v.$get(),
            set: |v: &mut Self, raw: u64| v.$set(raw),
            value_bits: 64,
        }
    };
    (@entry $name:literal, $get:ident, $set:ident, $field:ident, $ty:ty) => {
        $crate::spec::FieldAccess {
            named: $crate::spec::NamedField::value($name, $field),
            get: |v: &Self| $crate::spec::FieldValue::into_raw(v.$get()),
            set: |v: &mut Self, raw: u64| v.$set(<$ty as $crate::spec::FieldValue>::from_raw(raw)),
            value_bits: <$ty as $crate::spec::FieldValue>::BITS,
        }
    };
}
pub(crate) use accessors;

/// `words` with every bit outside `mask` cleared: the RES0 bits a structure sets.
pub(crate) fn masked<const N: usize>(words: &[u64; N], mask: &[u64; N]) -> [u64; N] {
    let mut out = [0; N];
    for ((o, w), m) in out.iter_mut().zip(words).zip(mask) {
        *o = w & m;
    }
    out
}

/// Prints the non-zero fields of `words` named in `fields` (after whatever the caller printed
/// first), then any set RES0 bits.
pub(crate) fn debug_fields<'a>(
    s: &mut fmt::DebugStruct<'_, '_>,
    words: &[u64],
    fields: impl Iterator<Item = &'a NamedField>,
    skip: &[&str],
    res0: &[u64],
) {
    for nf in fields.filter(|nf| !skip.contains(&nf.name)) {
        let v = nf.read(words);
        if v != 0 {
            s.field(nf.name, &format_args!("{v:#x}"));
        }
    }
    if res0.iter().any(|&w| w != 0) {
        s.field("RES0 set", &format_args!("{res0:#x?}"));
    }
}

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

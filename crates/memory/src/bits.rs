//! Bit layouts declared once: a field of a 64-bit word ([`Field`]) or of a 32-bit register
//! ([`Field32`]), a field of a multi-word descriptor ([`WideField`]), and typed register offsets.
//! Every `spec` module and page-table format declares its layouts with these.
//!
//! [`bitfields!`](crate::bitfields) is the one way a `spec` declares a layout: each field's name
//! and bits are written once, and the macro makes from that line the field constant, its getter
//! and setter, the view's [`FieldAccess`] table (`FIELDS`) and, if asked, its `Debug`.

/// Bits `[lo, lo + width)` of a 64-bit word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Lowest bit.
    pub lo: u8,
    /// Number of bits (1..=64).
    pub width: u8,
}

impl Field {
    /// Bits `hi:lo` inclusive, as the manuals write them.
    #[inline]
    pub const fn bits(hi: u8, lo: u8) -> Self {
        Self { lo, width: hi - lo + 1 }
    }

    /// A single bit.
    #[inline]
    pub const fn bit(n: u8) -> Self {
        Self { lo: n, width: 1 }
    }

    /// The field's mask in place.
    #[inline]
    pub const fn mask(self) -> u64 {
        let ones = if self.width >= 64 { u64::MAX } else { (1u64 << self.width) - 1 };
        ones << self.lo
    }

    /// The field's value, shifted down.
    #[inline]
    pub const fn get(self, word: u64) -> u64 {
        (word & self.mask()) >> self.lo
    }

    /// Whether a one-bit field is set.
    #[inline]
    pub const fn is_set(self, word: u64) -> bool {
        word & self.mask() != 0
    }

    /// `word` with the field replaced by `value` (excess bits of `value` are dropped).
    #[inline]
    pub const fn set(self, word: u64, value: u64) -> u64 {
        (word & !self.mask()) | ((value << self.lo) & self.mask())
    }

    /// `word` with a one-bit field set or cleared.
    #[inline]
    pub const fn with(self, word: u64, on: bool) -> u64 {
        self.set(word, on as u64)
    }

    /// The field's bits of `word` left in place (for address fields such as `51:12`).
    #[inline]
    pub const fn in_place(self, word: u64) -> u64 {
        word & self.mask()
    }
}

/// Bits `[lo, lo + width)` of a 32-bit register. The constructors refuse (at compile time, since
/// fields are consts) a field that reaches past bit 31, so the `u32` mask and value are exact:
/// a 32-bit register's field can never turn into 0 on the way to a `u32`.
///
/// The `u64` methods match [`Field`]'s, for register values carried in a `u64` as the MMIO
/// interface carries every width; the `*32` methods work on the register's own `u32`.
///
/// ```compile_fail
/// // Bit 32 is not in a 32-bit register: the const does not compile.
/// const WRONG: sviommu_memory::bits::Field32 = sviommu_memory::bits::Field32::bits(32, 31);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field32 {
    /// Lowest bit.
    pub lo: u8,
    /// Number of bits (1..=32).
    pub width: u8,
}

impl Field32 {
    /// Bits `hi:lo` inclusive; `hi` must be below 32.
    #[inline]
    pub const fn bits(hi: u8, lo: u8) -> Self {
        assert!(hi < 32 && hi >= lo, "a 32-bit register's field lies in bits 31:0");
        Self { lo, width: hi - lo + 1 }
    }

    /// A single bit, below 32.
    #[inline]
    pub const fn bit(n: u8) -> Self {
        Self::bits(n, n)
    }

    /// The same bits as a field of a 64-bit word.
    #[inline]
    pub const fn wide(self) -> Field {
        Field { lo: self.lo, width: self.width }
    }

    /// The field's mask in place, as the register's `u32`.
    #[inline]
    pub const fn mask32(self) -> u32 {
        // width is 1..=32 and lo + width <= 32 (checked by the constructors).
        (u32::MAX >> (32 - self.width)) << self.lo
    }

    /// The field's value in a `u32` register value, shifted down.
    #[inline]
    pub const fn get32(self, reg: u32) -> u32 {
        (reg & self.mask32()) >> self.lo
    }

    /// Whether a one-bit field is set in a `u32` register value.
    #[inline]
    pub const fn is_set32(self, reg: u32) -> bool {
        reg & self.mask32() != 0
    }

    /// `reg` with the field replaced by `value` (excess bits of `value` are dropped).
    #[inline]
    pub const fn set32(self, reg: u32, value: u32) -> u32 {
        (reg & !self.mask32()) | ((value << self.lo) & self.mask32())
    }

    /// The field's mask in place, widened to `u64`.
    #[inline]
    pub const fn mask(self) -> u64 {
        self.wide().mask()
    }

    /// The field's value in a register value carried as `u64`.
    #[inline]
    pub const fn get(self, word: u64) -> u64 {
        self.wide().get(word)
    }

    /// Whether a one-bit field is set in a register value carried as `u64`.
    #[inline]
    pub const fn is_set(self, word: u64) -> bool {
        self.wide().is_set(word)
    }

    /// `word` with the field replaced by `value` (excess bits of `value` are dropped).
    #[inline]
    pub const fn set(self, word: u64, value: u64) -> u64 {
        self.wide().set(word, value)
    }

    /// `word` with a one-bit field set or cleared.
    #[inline]
    pub const fn with(self, word: u64, on: bool) -> u64 {
        self.wide().with(word, on)
    }

    /// The field's bits of `word` left in place (for address fields such as `31:2`).
    #[inline]
    pub const fn in_place(self, word: u64) -> u64 {
        self.wide().in_place(word)
    }
}

/// A mask of the low `lg2` bits (all ones from 64 up).
#[inline]
pub const fn low_mask(lg2: u8) -> u64 {
    if lg2 >= 64 {
        u64::MAX
    } else {
        (1u64 << lg2) - 1
    }
}

/// A field of a descriptor made of several little-endian 64-bit words, numbered as the specs
/// number the bits of the whole descriptor (bit 130 is bit 2 of word 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WideField {
    /// The word the field is in.
    pub word: usize,
    /// The bits within that word.
    pub field: Field,
}

impl WideField {
    /// Bits `hi:lo` of the descriptor; both must be in the same 64-bit word.
    #[inline]
    pub const fn bits(hi: u16, lo: u16) -> Self {
        assert!(hi / 64 == lo / 64 && hi >= lo, "a field may not cross a 64-bit word");
        // Both fit in a u8 after the remainder.
        Self { word: (lo / 64) as usize, field: Field::bits((hi % 64) as u8, (lo % 64) as u8) }
    }

    /// Bit `n` of the descriptor.
    #[inline]
    pub const fn bit(n: u16) -> Self {
        Self::bits(n, n)
    }

    /// The field's value; 0 if the descriptor is shorter than the field's word.
    #[inline]
    pub fn get(self, words: &[u64]) -> u64 {
        words.get(self.word).map_or(0, |&w| self.field.get(w))
    }

    /// Whether a one-bit field is set.
    #[inline]
    pub fn is_set(self, words: &[u64]) -> bool {
        self.get(words) != 0
    }

    /// Replaces the field; does nothing if the descriptor is shorter than the field's word.
    #[inline]
    pub fn set(self, words: &mut [u64], value: u64) {
        if let Some(w) = words.get_mut(self.word) {
            *w = self.field.set(*w, value);
        }
    }

    /// The field's bits left in place within their word (for address fields).
    #[inline]
    pub fn in_place(self, words: &[u64]) -> u64 {
        words.get(self.word).map_or(0, |&w| self.field.in_place(w))
    }
}

/// A 32-bit register at a byte offset in an MMIO page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reg32(pub u64);

/// A 64-bit register at a byte offset in an MMIO page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reg64(pub u64);

/// The `bit(n)` / `bits(hi, lo)` shorthands [`bitfields!`](crate::bitfields) puts in scope for a
/// declaration, one module per field type.
pub mod at {
    /// Fields of a multi-word descriptor, in whole-descriptor bit numbers.
    pub mod wide {
        use super::super::WideField;
        /// Bit `n` of the descriptor.
        #[inline]
        pub const fn bit(n: u16) -> WideField {
            WideField::bit(n)
        }
        /// Bits `hi:lo` of the descriptor.
        #[inline]
        pub const fn bits(hi: u16, lo: u16) -> WideField {
            WideField::bits(hi, lo)
        }
    }
    /// Fields of a 64-bit register.
    pub mod r64 {
        use super::super::Field;
        /// Bit `n`.
        #[inline]
        pub const fn bit(n: u8) -> Field {
            Field::bit(n)
        }
        /// Bits `hi:lo`.
        #[inline]
        pub const fn bits(hi: u8, lo: u8) -> Field {
            Field::bits(hi, lo)
        }
    }
    /// Fields of a 32-bit register.
    pub mod r32 {
        use super::super::Field32;
        /// Bit `n`, below 32.
        #[inline]
        pub const fn bit(n: u8) -> Field32 {
            Field32::bit(n)
        }
        /// Bits `hi:lo`, below 32.
        #[inline]
        pub const fn bits(hi: u8, lo: u8) -> Field32 {
            Field32::bits(hi, lo)
        }
    }
}

/// How a field's shifted-down bits become a getter's value and back. [`bitfields!`]
/// (crate::bitfields) checks at compile time that each field is no wider than `BITS`, so
/// `from_raw` never meets a value that does not fit.
pub trait FieldValue: Copy {
    /// Bits of the type (1 for `bool`).
    const BITS: u32;
    /// The value of a field's raw bits.
    fn from_raw(raw: u64) -> Self;
    /// The raw bits of a value.
    fn into_raw(self) -> u64;
}

impl FieldValue for bool {
    const BITS: u32 = 1;
    #[inline]
    fn from_raw(raw: u64) -> Self {
        raw != 0
    }
    #[inline]
    fn into_raw(self) -> u64 {
        u64::from(self)
    }
}

macro_rules! field_value_int {
    ($($ty:ty),*) => {$(
        impl FieldValue for $ty {
            const BITS: u32 = <$ty>::BITS;
            #[inline]
            fn from_raw(raw: u64) -> Self {
                // The field fits (checked when it was declared): never saturates.
                <$ty>::try_from(raw).unwrap_or(<$ty>::MAX)
            }
            #[inline]
            fn into_raw(self) -> u64 {
                u64::from(self)
            }
        }
    )*};
}
field_value_int!(u8, u16, u32, u64);

/// A field of a multi-word structure with its spec name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedField {
    /// The spec mnemonic, as the spec spells it (`S2T0SZ`, `InputAddr`, `SSPTPTR`).
    pub name: &'static str,
    /// Where it is, in whole-structure bit numbers.
    pub field: WideField,
    /// The field holds address bits in place (`S2TTB` holds address bits `[55:4]` in bits
    /// `[55:4]` of its word), so it reads as an address rather than a shifted-down number.
    pub address: bool,
}

impl NamedField {
    /// A numeric field.
    #[inline]
    pub const fn value(name: &'static str, field: WideField) -> Self {
        Self { name, field, address: false }
    }

    /// An address field, read in place.
    #[inline]
    pub const fn address(name: &'static str, field: WideField) -> Self {
        Self { name, field, address: true }
    }

    /// The field's value in `words`: shifted down, or in place for an address field.
    #[inline]
    pub fn read(&self, words: &[u64]) -> u64 {
        if self.address {
            self.field.in_place(words)
        } else {
            self.field.get(words)
        }
    }
}

/// A named field of a view `T` together with its getter and setter, both seen through `u64` (a
/// one-bit field reads 0 or 1; an address field reads in place; an enumerated field reads its raw
/// encoding). Generic code uses these: `Debug`, inspection tools, and the round-trip tests.
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
    #[inline]
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for FieldAccess<T> {}

impl<T> core::fmt::Debug for FieldAccess<T> {
    #[inline]
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FieldAccess")
            .field("named", &self.named)
            .field("value_bits", &self.value_bits)
            .finish_non_exhaustive()
    }
}

/// Prints the non-zero fields of `words` named in `fields` into `s`, in hex, then any set bits of
/// `res0` (the reserved bits the structure sets) as `RES0 set`.
#[inline]
pub fn debug_fields<'a>(
    s: &mut core::fmt::DebugStruct<'_, '_>,
    words: &[u64],
    fields: impl Iterator<Item = &'a NamedField>,
    res0: &[u64],
) {
    for nf in fields {
        let v = nf.read(words);
        if v != 0 {
            s.field(nf.name, &format_args!("{v:#x}"));
        }
    }
    if res0.iter().any(|&w| w != 0) {
        s.field("RES0 set", &format_args!("{res0:#x?}"));
    }
}

/// The `Debug` that [`bitfields!`](crate::bitfields) generates: the view's name, its non-zero
/// fields and the reserved bits it sets.
#[inline]
pub fn debug_view<T>(
    f: &mut core::fmt::Formatter<'_>,
    name: &str,
    words: &[u64],
    fields: &[FieldAccess<T>],
    res0: &[u64],
) -> core::fmt::Result {
    let mut s = f.debug_struct(name);
    debug_fields(&mut s, words, fields.iter().map(|a| &a.named), res0);
    s.finish()
}

/// Declares a bit layout once.
///
/// **A view** over little-endian `u64` words (a tuple struct whose `.0` is `[u64; N]`):
///
/// ```ignore
/// bitfields! {
///     impl RootEntry: debug(reserved_set) {
///         /// Present.
///         P = bit(0) => p, set_p: bool;
///         /// Context-table pointer.
///         CTP = bits(63, 12) => ctp, set_ctp: addr;
///         /// Translation type.
///         TT = bits(3, 2) => tt, set_tt, tt_raw, set_tt_raw: enum(TranslationType);
///         /// A field named differently in the spec, with no accessors.
///         S1CONTEXTPTR "S1ContextPtr" = bits(55, 6);
///     }
/// }
/// ```
///
/// Each line gives the field's const name (and, when the spec spells it otherwise, its spec
/// name), its bits in whole-structure numbers (`bit`/`bits`, or any `WideField` expression), and
/// optionally a getter and setter: `bool`, an unsigned integer type (checked at compile time to
/// be wide enough), `addr` (read and written in place), or `enum(T)` (a typed getter returning
/// `Result<T, _>` through `T: TryFrom<u64>`, a setter from `T: Into<u64>`, and a raw pair). The
/// macro generates the associated `WideField` const with the line's doc comment, the accessors,
/// the `FIELDS` table of [`FieldAccess`]es in declaration order, and with `: debug` (or
/// `: debug(method)`, where `method` returns the reserved bits the view sets) a `Debug` impl.
///
/// **A register's fields**, inside the register's module:
///
/// ```ignore
/// pub mod gsts {
///     bitfields! { reg32;
///         /// Translation enable status.
///         TES = bit(31);
///     }
/// }
/// ```
///
/// `reg32` declares [`Field32`]s (the constructor refuses bits above 31 at compile time) and
/// `reg64` [`Field`]s; both add `FIELDS: &[(&str, _)]`, every field by name.
///
/// **A view's plumbing**: `bitfields!(words View, N);` gives `WORDS`, `BYTES`, `from_words`,
/// `words`, `from_le_bytes` and `to_le_bytes`; `bitfields!(res0 View);` gives `res0_set` and
/// `has_res0_set` from the view's `RES0: [u64; WORDS]` mask.
///
/// A getter type narrower than its field does not compile:
///
/// ```compile_fail
/// #[derive(Clone, Copy, Default)]
/// struct Entry([u64; 1]);
/// sviommu_memory::bitfields! {
///     impl Entry {
///         /// Nine bits do not fit a `u8`.
///         WIDE = bits(8, 0) => wide, set_wide: u8;
///     }
/// }
/// ```
#[macro_export]
macro_rules! bitfields {
    (impl $view:ident $(: $dbg:ident $(($res0:ident))?)? {
        $( $(#[$m:meta])* $c:ident $($name:literal)? = $at:expr
           $(=> $get:ident, $set:ident $(, $get_raw:ident, $set_raw:ident)?
               : $kind:tt $(($ety:ty))?)? ; )*
    }) => {
        impl $view {
            $(
                $(#[$m])*
                pub const $c: $crate::bits::WideField = {
                    #[allow(unused_imports)]
                    use $crate::bits::at::wide::*;
                    $at
                };
                $( $crate::bitfields!(
                    @acc $c, $get, $set, [$($get_raw, $set_raw)?], $kind $(($ety))?
                ); )?
            )*

            /// Every named field in declaration order, with its getter and setter.
            pub const FIELDS: &'static [$crate::bits::FieldAccess<Self>] = &[$(
                $crate::bitfields!(@entry $c, $crate::bitfields!(@name $c $($name)?),
                    [$($get, $set $(, $get_raw, $set_raw)?, $kind $(($ety))?)?])
            ),*];
        }
        $( $( $crate::bitfields!(@check $view, $c, $kind $(($ety))?); )? )*
        $( $crate::bitfields!(@debug $view, $dbg $(, $res0)?); )?
    };

    (words $view:ident, $n:literal) => {
        impl $view {
            /// Number of 64-bit words in the structure.
            pub const WORDS: usize = $n;
            /// Size of the structure in bytes.
            pub const BYTES: u64 = $n * 8;

            /// The view over `words` (word 0 holds bits 63:0), as read from memory.
            #[must_use]
            pub const fn from_words(words: [u64; $n]) -> Self {
                Self(words)
            }

            /// The raw words, to be written little-endian.
            #[must_use]
            pub const fn words(&self) -> [u64; $n] {
                self.0
            }

            /// The view over `N * 8` little-endian bytes, as the structure sits in memory.
            #[must_use]
            pub fn from_le_bytes(bytes: [u8; $n * 8]) -> Self {
                let mut words = [0u64; $n];
                for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(chunk);
                    *w = u64::from_le_bytes(b);
                }
                Self(words)
            }

            /// The structure as it sits in memory.
            #[must_use]
            pub fn to_le_bytes(&self) -> [u8; $n * 8] {
                let mut bytes = [0u8; $n * 8];
                for (chunk, w) in bytes.chunks_exact_mut(8).zip(self.0.iter()) {
                    chunk.copy_from_slice(&w.to_le_bytes());
                }
                bytes
            }
        }
    };

    (res0 $view:ident) => {
        impl $view {
            /// The bits of `RES0` this structure sets, per word (all zero when well formed).
            #[must_use]
            pub fn res0_set(&self) -> [u64; Self::WORDS] {
                let mut set = Self::RES0;
                for (s, w) in set.iter_mut().zip(self.0.iter()) {
                    *s &= w;
                }
                set
            }

            /// Whether any `RES0` bit is set (the model may then treat the structure as
            /// ILLEGAL).
            #[must_use]
            pub fn has_res0_set(&self) -> bool {
                self.res0_set().iter().any(|&w| w != 0)
            }
        }
    };

    (reg32; $( $(#[$m:meta])* $c:ident = $at:expr; )*) => {
        $crate::bitfields!(@reg Field32, r32; $( $(#[$m])* $c = $at; )*);
    };
    (reg64; $( $(#[$m:meta])* $c:ident = $at:expr; )*) => {
        $crate::bitfields!(@reg Field, r64; $( $(#[$m])* $c = $at; )*);
    };
    (@reg $ty:ident, $at_mod:ident; $( $(#[$m:meta])* $c:ident = $at:expr; )*) => {
        $(
            $(#[$m])*
            pub const $c: $crate::bits::$ty = {
                #[allow(unused_imports)]
                use $crate::bits::at::$at_mod::*;
                $at
            };
        )*
        /// Every field, by name.
        pub const FIELDS: &[(&str, $crate::bits::$ty)] = &[$( (stringify!($c), $c) ),*];
    };

    (@name $c:ident) => { stringify!($c) };
    (@name $c:ident $name:literal) => { $name };

    (@acc $c:ident, $get:ident, $set:ident, [], addr) => {
        #[doc = concat!("The address [`Self::", stringify!($c), "`] holds, in place.")]
        #[must_use]
        pub fn $get(&self) -> u64 {
            Self::$c.in_place(&self.0)
        }
        #[doc = concat!(
            "Sets [`Self::", stringify!($c), "`] from an address; ",
            "address bits the field does not hold are dropped."
        )]
        pub fn $set(&mut self, addr: u64) {
            Self::$c.set(&mut self.0, addr >> Self::$c.field.lo)
        }
    };
    (@acc $c:ident, $get:ident, $set:ident, [$get_raw:ident, $set_raw:ident], enum($ety:ty)) => {
        #[doc = concat!("[`Self::", stringify!($c), "`] decoded; a reserved encoding is `Err`.")]
        pub fn $get(&self) -> Result<$ety, <$ety as TryFrom<u64>>::Error> {
            <$ety>::try_from(Self::$c.get(&self.0))
        }
        #[doc = concat!("Sets [`Self::", stringify!($c), "`].")]
        pub fn $set(&mut self, value: $ety) {
            Self::$c.set(&mut self.0, u64::from(value))
        }
        #[doc = concat!("The raw encoding in [`Self::", stringify!($c), "`].")]
        #[must_use]
        pub fn $get_raw(&self) -> u64 {
            Self::$c.get(&self.0)
        }
        #[doc = concat!(
            "Writes any encoding, reserved ones included, into [`Self::", stringify!($c), "`]."
        )]
        pub fn $set_raw(&mut self, raw: u64) {
            Self::$c.set(&mut self.0, raw)
        }
    };
    (@acc $c:ident, $get:ident, $set:ident, [], $t:ty) => {
        #[doc = concat!("The value of [`Self::", stringify!($c), "`].")]
        #[must_use]
        pub fn $get(&self) -> $t {
            <$t as $crate::bits::FieldValue>::from_raw(Self::$c.get(&self.0))
        }
        #[doc = concat!(
            "Sets [`Self::", stringify!($c), "`]; bits beyond the field's width are dropped."
        )]
        pub fn $set(&mut self, value: $t) {
            Self::$c.set(&mut self.0, $crate::bits::FieldValue::into_raw(value))
        }
    };

    (@entry $c:ident, $name:expr, []) => {
        $crate::bits::FieldAccess {
            named: $crate::bits::NamedField::value($name, Self::$c),
            get: |v: &Self| Self::$c.get(&v.0),
            set: |v: &mut Self, raw: u64| Self::$c.set(&mut v.0, raw),
            value_bits: 64,
        }
    };
    (@entry $c:ident, $name:expr, [$get:ident, $set:ident, addr]) => {
        $crate::bits::FieldAccess {
            named: $crate::bits::NamedField::address($name, Self::$c),
            get: |v: &Self| v.$get(),
            set: |v: &mut Self, raw: u64| v.$set(raw),
            value_bits: 64,
        }
    };
    (@entry $c:ident, $name:expr,
        [$get:ident, $set:ident, $get_raw:ident, $set_raw:ident, enum($ety:ty)]) => {
        $crate::bits::FieldAccess {
            named: $crate::bits::NamedField::value($name, Self::$c),
            get: |v: &Self| v.$get_raw(),
            set: |v: &mut Self, raw: u64| v.$set_raw(raw),
            value_bits: 64,
        }
    };
    (@entry $c:ident, $name:expr, [$get:ident, $set:ident, $t:ty]) => {
        $crate::bits::FieldAccess {
            named: $crate::bits::NamedField::value($name, Self::$c),
            get: |v: &Self| $crate::bits::FieldValue::into_raw(v.$get()),
            set: |v: &mut Self, raw: u64| v.$set(<$t as $crate::bits::FieldValue>::from_raw(raw)),
            value_bits: <$t as $crate::bits::FieldValue>::BITS,
        }
    };

    (@check $view:ident, $c:ident, addr) => {};
    (@check $view:ident, $c:ident, enum($ety:ty)) => {};
    (@check $view:ident, $c:ident, $t:ty) => {
        const _: () = assert!(
            <$view>::$c.field.width as u32 <= <$t as $crate::bits::FieldValue>::BITS,
            concat!(stringify!($view), "::", stringify!($c), " is wider than its getter's type"),
        );
    };

    (@debug $view:ident, debug) => {
        impl ::core::fmt::Debug for $view {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                $crate::bits::debug_view(f, stringify!($view), &self.0, Self::FIELDS, &[])
            }
        }
    };
    (@debug $view:ident, debug, $res0:ident) => {
        impl ::core::fmt::Debug for $view {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                $crate::bits::debug_view(f, stringify!($view), &self.0, Self::FIELDS, &self.$res0())
            }
        }
    };
}
pub use crate::bitfields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let oa = Field::bits(51, 12);
        assert_eq!(oa.mask(), 0x000f_ffff_ffff_f000);
        assert_eq!(oa.in_place(0xffff_ffff_ffff_ffff), 0x000f_ffff_ffff_f000);
        assert_eq!(Field::bits(7, 6).set(0, 0b10), 0x80);
        assert_eq!(Field::bits(7, 6).get(0xc0), 3);
        assert!(Field::bit(63).is_set(1 << 63));
        assert_eq!(Field::bits(63, 0).mask(), u64::MAX);
        assert_eq!(Field::bit(0).with(0xff, false), 0xfe);
    }

    #[test]
    fn field32_masks_are_exact() {
        let top = Field32::bit(31);
        assert_eq!(top.mask32(), 0x8000_0000);
        assert_eq!(top.mask(), 0x8000_0000);
        assert_eq!(Field32::bits(31, 0).mask32(), u32::MAX);
        let f = Field32::bits(15, 8);
        assert_eq!(f.set32(0xffff_ffff, 0x12), 0xffff_12ff);
        assert_eq!(f.get32(0x00ab_cd00), 0xcd);
        assert!(top.is_set32(0x8000_0000) && !top.is_set32(0x7fff_ffff));
        // The u64 methods see the same bits.
        assert_eq!(f.get(0xffff_ffff_00ab_cd00), 0xcd);
        assert_eq!(f.wide(), Field::bits(15, 8));
        assert_eq!(u64::from(f.set32(0, 0x12)), f.set(0, 0x12));
    }

    mod demo {
        /// A test encoding: 1 and 2 are defined, everything else reserved.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Mode {
            One = 1,
            Two = 2,
        }
        impl TryFrom<u64> for Mode {
            type Error = u64;
            fn try_from(raw: u64) -> Result<Self, u64> {
                match raw {
                    1 => Ok(Mode::One),
                    2 => Ok(Mode::Two),
                    _ => Err(raw),
                }
            }
        }
        impl From<Mode> for u64 {
            fn from(m: Mode) -> u64 {
                m as u64
            }
        }

        #[derive(Clone, Copy, Default)]
        pub struct Demo(pub [u64; 2]);

        impl Demo {
            pub fn res0(&self) -> [u64; 2] {
                [self.0[0] & 0xf00, 0]
            }
        }

        crate::bitfields! {
            impl Demo: debug(res0) {
                /// A flag.
                A = bit(0) => a, set_a: bool;
                /// An encoding.
                MODE "Mode" = bits(3, 1) => mode, set_mode, mode_raw, set_mode_raw: enum(Mode);
                /// An address, bits 63:12 in place.
                PTR "Ptr" = bits(63, 12) => ptr, set_ptr: addr;
                /// A number in the second word.
                NUM = bits(79, 64) => num, set_num: u16;
                /// No accessors: reached through `FIELDS` only.
                TOP = bits(127, 120);
            }
        }

        pub mod reg {
            crate::bitfields! { reg32;
                /// Low byte.
                LO = bits(7, 0);
                /// Enable.
                EN = bit(31);
            }
        }
    }

    #[test]
    fn one_declaration_gives_consts_accessors_table_and_debug() {
        use demo::{Demo, Mode};
        let mut d = Demo::default();
        d.set_a(true);
        d.set_mode(Mode::Two);
        d.set_ptr(0x1234_5fff);
        d.set_num(0xbeef);
        assert_eq!(d.0, [0x1234_5000 | 0b100 | 1, 0xbeef]);
        assert!(d.a());
        assert_eq!(d.mode(), Ok(Mode::Two));
        d.set_mode_raw(7);
        assert_eq!((d.mode(), d.mode_raw()), (Err(7), 7));
        assert_eq!(d.ptr(), 0x1234_5000);
        assert_eq!(d.num(), 0xbeef);
        assert_eq!(Demo::NUM, WideField::bits(79, 64));

        let names: Vec<_> = Demo::FIELDS.iter().map(|a| a.named.name).collect();
        assert_eq!(names, ["A", "Mode", "Ptr", "NUM", "TOP"]);
        let bits: Vec<_> = Demo::FIELDS.iter().map(|a| a.value_bits).collect();
        assert_eq!(bits, [1, 64, 64, 16, 64]);
        assert!(Demo::FIELDS.iter().all(|a| a.named.address == (a.named.name == "Ptr")));
        for a in Demo::FIELDS {
            let mut v = Demo::default();
            (a.set)(&mut v, 1);
            let want = if a.named.address { 0 } else { 1 };
            assert_eq!((a.get)(&v), want, "{}", a.named.name);
        }
        let top = Demo::FIELDS.iter().find(|a| a.named.name == "TOP").map(|a| a.set);
        if let Some(set) = top {
            set(&mut d, 0xab);
        }
        assert_eq!(d.0[1] >> 56, 0xab);

        d.0[0] |= 0x100;
        let dbg = format!("{d:?}");
        assert!(dbg.starts_with("Demo { A: 0x1, Mode: 0x7, Ptr: 0x12345000"), "{dbg}");
        assert!(dbg.contains("RES0 set"), "{dbg}");

        assert_eq!(demo::reg::EN.mask32(), 0x8000_0000);
        assert_eq!(demo::reg::FIELDS, [("LO", demo::reg::LO), ("EN", demo::reg::EN)]);
    }

    #[test]
    fn wide_fields_index_the_whole_descriptor() {
        // VT-d PASID-table entry: DID is bits 79:64, i.e. bits 15:0 of word 1.
        let did = WideField::bits(79, 64);
        let mut words = [0u64; 8];
        did.set(&mut words, 0x1234);
        assert_eq!(words, [0, 0x1234, 0, 0, 0, 0, 0, 0]);
        assert_eq!(did.get(&words), 0x1234);
        assert!(WideField::bit(130).word == 2 && WideField::bit(130).field == Field::bit(2));
        assert_eq!(WideField::bit(600).get(&words), 0, "beyond the descriptor reads as 0");
    }
}

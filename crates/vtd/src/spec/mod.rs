//! VT-d's bits, declared once: register offsets and fields, translation structures, queue
//! descriptors, fault records and fault reasons. The hardware model decodes with this module and
//! the driver encodes with it; nothing else in the workspace knows a VT-d bit position.
//!
//! Source: *Intel® Virtualization Technology for Directed I/O, Architecture Specification*,
//! revision 4.1. Section numbers in the doc comments are that revision's; it uses the
//! "first-stage / second-stage" names that revision 3.4 introduced (FSPTPTR, SSPTPTR, FS1GP, ...),
//! so the older "first-level / second-level" mnemonics (FLPTPTR, SLPTPTR, FL1GP) do not appear.
//!
//! | module | layouts |
//! |---|---|
//! | [`regs`] | §11.4 registers: offsets as [`Reg32`]/[`Reg64`], one module of [`Field`]s per register |
//! | [`root`] | §9.1–§9.4 root and context entries, legacy and scalable mode |
//! | [`pasid`] | §9.5 PASID directory entry, §9.6 the 512-bit PASID-table entry |
//! | [`inv`] | §6.5.2 invalidation descriptors (128- and 256-bit) and their granularities |
//! | [`fault`] | §9.9 / §11.4 fault recording record, §7.1.3 and Appendix A fault reasons |
//! | [`prq`] | §7.5 page request descriptor, §7.7 page group response descriptor |
//!
//! Conventions:
//! * Every layout is declared once with [`bitfields!`](sviommu_memory::bitfields), the same
//!   macro SMMUv3's `spec` uses: one line per field gives its name, its bits and its accessors.
//! * A memory structure is a typed view, `#[repr(transparent)]` over its little-endian 64-bit
//!   words. Its fields are associated [`WideField`] consts named after the spec mnemonic
//!   (`PasidEntry::PGTT`), and the getter/setter pair is the mnemonic lowercased (`pgtt()`,
//!   `set_pgtt()`). Bit numbers are the spec's, counted across the whole structure.
//! * A register's fields live in a module named after the register (`regs::cap::SAGAW`): a
//!   32-bit register's are [`Field32`]s, which cannot name a bit above 31.
//! * A field whose encodings include reserved values reads as `Result<_, Reserved>`; a raw
//!   getter and setter (`pgtt_raw()`, `set_pgtt_raw()`) reach every encoding, so a test or a
//!   hostile guest can write a reserved one and the model can raise the architected fault.
//! * Each structure lists its named fields with their accessors (`FIELDS`, made by the macro,
//!   which also makes `Debug`) and its always-reserved bits (`RESERVED`); `reserved_bits_set`
//!   adds the bits the spec reserves relative to the host address width.
//! * Nothing here panics, whatever the input: getters mask, setters drop excess bits.

use sviommu_memory::bits::low_mask;
pub use sviommu_memory::bits::{Field, Field32, FieldAccess, NamedField, Reg32, Reg64, WideField};

/// An enum whose discriminants are a field's spec encodings; every other value is
/// `Err(Reserved(v))`.
macro_rules! spec_enum {
    ($(#[$m:meta])* pub enum $name:ident { $( $(#[$vm:meta])* $v:ident = $code:literal, )* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $( $(#[$vm])* $v = $code, )* }

        impl $name {
            /// Every encoding the spec defines, in ascending order.
            pub const ALL: &'static [Self] = &[$(Self::$v),*];
        }

        impl TryFrom<u64> for $name {
            type Error = $crate::spec::Reserved;
            fn try_from(raw: u64) -> Result<Self, $crate::spec::Reserved> {
                match raw {
                    $( $code => Ok(Self::$v), )*
                    _ => Err($crate::spec::Reserved(raw)),
                }
            }
        }

        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                u64::from(v as u8)
            }
        }
    };
}

/// Construction and raw access shared by every view over `[u64; N]`.
macro_rules! view_words {
    ($name:ident, $n:literal) => {
        sviommu_memory::bitfields!(words $name, $n);

        impl $name {
            /// The always-reserved bits ([`Self::RESERVED`]) as a mask per word.
            #[must_use]
            pub fn fixed_reserved_mask() -> [u64; $n] {
                $crate::spec::mask_of(Self::RESERVED)
            }

            /// The always-reserved bits this structure sets, per word.
            #[must_use]
            pub fn reserved_set(&self) -> [u64; $n] {
                let mut set = Self::fixed_reserved_mask();
                for (s, w) in set.iter_mut().zip(self.0.iter()) {
                    *s &= w;
                }
                set
            }
        }
    };
}

pub mod fault;
pub mod inv;
pub mod pasid;
pub mod prq;
pub mod regs;
pub mod root;

pub use fault::{AddressType, FaultReason, FaultRecord, RequestType};
pub use inv::{DescWidth, DescriptorType, InvDesc, Invalidation};
pub use pasid::{Fspm, PasidDirEntry, PasidEntry, Pgtt};
pub use prq::{PageGroupResponse, PageRequest, ResponseCode};
pub use root::{ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry, TranslationType};

/// A field held an encoding the specification reserves (the raw value is kept, so the model can
/// report the architected fault and a test can see what was read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("reserved encoding {0:#x}")]
pub struct Reserved(pub u64);

spec_enum! {
    /// Adjusted guest address width: the AW field of a context entry (§9.3) and of a PASID-table
    /// entry (§9.6), which selects the second-stage table depth. Bit `n` of CAP.SAGAW advertises
    /// encoding `n`. 000b (30-bit, 2-level) and 100b (64-bit, 6-level) were defined by early
    /// revisions and are reserved now, as are 101b–111b.
    pub enum Aw {
        /// 39-bit AGAW, 3-level second-stage table.
        Bits39 = 1,
        /// 48-bit AGAW, 4-level second-stage table.
        Bits48 = 2,
        /// 57-bit AGAW, 5-level second-stage table.
        Bits57 = 3,
    }
}

impl Aw {
    /// Levels of the second-stage table.
    #[must_use]
    pub const fn levels(self) -> u8 {
        match self {
            Aw::Bits39 => 3,
            Aw::Bits48 => 4,
            Aw::Bits57 => 5,
        }
    }

    /// Input address bits the table translates.
    #[must_use]
    pub const fn input_bits(self) -> u8 {
        match self {
            Aw::Bits39 => 39,
            Aw::Bits48 => 48,
            Aw::Bits57 => 57,
        }
    }

    /// The bit of CAP.SAGAW that advertises this width.
    #[must_use]
    pub const fn sagaw_bit(self) -> u64 {
        1 << (self as u8)
    }
}

/// First address of the interrupt address range, FEE0_0000h (§3.14, Handling Requests to
/// Interrupt Address Range).
pub const INTERRUPT_ADDR_FIRST: u64 = 0xfee0_0000;

/// Last address of the interrupt address range, FEEF_FFFFh: the range is FEEx_xxxxh.
pub const INTERRUPT_ADDR_LAST: u64 = 0xfeef_ffff;

/// Whether `addr` lies in the interrupt address range FEEx_xxxxh. A request without PASID there
/// is an interrupt request, not DMA, and is not remapped; an untranslated request whose
/// translation lands there is blocked (fault reason 0Eh legacy, 87h scalable).
#[must_use]
pub const fn is_interrupt_address(addr: u64) -> bool {
    addr >= INTERRUPT_ADDR_FIRST && addr <= INTERRUPT_ADDR_LAST
}

/// Mask of the bits at and above `width` (bits `63:width`); empty from 64 up. A pointer field's
/// bits at and above the host address width (HAW) are reserved.
#[must_use]
pub const fn bits_from(width: u8) -> u64 {
    !low_mask(width)
}

/// The words of a structure with every bit of `fields` set.
#[must_use]
pub fn mask_of<const N: usize>(fields: &[WideField]) -> [u64; N] {
    let mut words = [0u64; N];
    for f in fields {
        if let Some(w) = words.get_mut(f.word) {
            *w |= f.field.mask();
        }
    }
    words
}

/// Whether `words` has any bit of `mask` set.
#[must_use]
pub fn any_set<const N: usize>(words: &[u64; N], mask: &[u64; N]) -> bool {
    words.iter().zip(mask.iter()).any(|(w, m)| w & m != 0)
}

/// A field value converted to the getter's type. Every getter's type is at least as wide as its
/// field, so the fallback never happens; it exists so no conversion can panic or truncate.
pub(crate) fn narrow<T: TryFrom<u64> + Default>(value: u64) -> T {
    T::try_from(value).unwrap_or_default()
}

/// Prints a value in hex inside `Debug` output.
pub(crate) struct Hex(pub u64);

impl core::fmt::Debug for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aw_encodings_keep_reserved_values_visible() {
        assert_eq!(Aw::try_from(2), Ok(Aw::Bits48));
        assert_eq!(Aw::try_from(0), Err(Reserved(0)), "30-bit AGAW is gone");
        assert_eq!(Aw::try_from(4), Err(Reserved(4)), "64-bit AGAW is gone");
        assert_eq!(Aw::Bits57.sagaw_bit(), 1 << 3);
        assert_eq!(Aw::Bits39.levels(), 3);
        assert_eq!(u64::from(Aw::Bits57), 3);
    }

    #[test]
    fn masks() {
        assert_eq!(bits_from(48), 0xffff_0000_0000_0000);
        assert_eq!(bits_from(64), 0);
        let m: [u64; 2] = mask_of(&[WideField::bits(11, 1), WideField::bits(127, 64)]);
        assert_eq!(m, [0xffe, u64::MAX]);
        assert!(any_set(&[0, 1], &[0, 1]));
        assert!(!any_set(&[1, 0], &[0, 1]));
    }
}

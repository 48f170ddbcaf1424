//! Address newtypes. Every address is a `u64`, never a `usize`: a 32-bit host still models a
//! 52-bit physical address space.

use std::fmt;

use crate::bits::low_mask;

/// An address in some physical or I/O virtual space.
pub trait Address: Copy + Eq + Ord + fmt::Debug + fmt::LowerHex + Send + Sync + 'static {
    /// Wraps a raw address.
    fn new(raw: u64) -> Self;
    /// The raw address.
    fn raw(self) -> u64;

    /// `self + offset`, or `None` on overflow.
    fn checked_add(self, offset: u64) -> Option<Self> {
        self.raw().checked_add(offset).map(Self::new)
    }
    /// Clears the low `lg2` bits.
    fn align_down(self, lg2: u8) -> Self {
        Self::new(self.raw() & !low_mask(lg2))
    }
    /// Whether the low `lg2` bits are clear.
    fn is_aligned(self, lg2: u8) -> bool {
        self.raw() & low_mask(lg2) == 0
    }
}

macro_rules! address {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl Address for $name {
            fn new(raw: u64) -> Self {
                Self(raw)
            }
            fn raw(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address!(
    /// A host physical address: where the bytes really are.
    Hpa
);
address!(
    /// A guest physical address (VT-d: the output of first stage; SMMU: an IPA).
    Gpa
);
address!(
    /// An I/O virtual address as a device sends it (a GVA under SVA).
    Iova
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        assert!(Hpa(0x20_0000).is_aligned(21));
        assert!(!Hpa(0x20_1000).is_aligned(21));
        assert_eq!(Gpa(0x1234_5678).align_down(12), Gpa(0x1234_5000));
        assert_eq!(Iova(u64::MAX).checked_add(1), None);
        assert_eq!(format!("{}", Hpa(0x1000)), "0x1000");
        assert_eq!(format!("{:?}", Gpa(0x1000)), "Gpa(0x1000)");
        assert_eq!(low_mask(64), u64::MAX);
    }
}

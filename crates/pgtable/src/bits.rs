//! A bit field of a 64-bit descriptor word, declared once and used by getter and setter.

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
    pub const fn bits(hi: u8, lo: u8) -> Self {
        Self { lo, width: hi - lo + 1 }
    }

    /// A single bit.
    pub const fn bit(n: u8) -> Self {
        Self { lo: n, width: 1 }
    }

    /// The field's mask in place.
    pub const fn mask(self) -> u64 {
        let ones = if self.width >= 64 { u64::MAX } else { (1u64 << self.width) - 1 };
        ones << self.lo
    }

    /// The field's value, shifted down.
    pub const fn get(self, word: u64) -> u64 {
        (word & self.mask()) >> self.lo
    }

    /// Whether a one-bit field is set.
    pub const fn is_set(self, word: u64) -> bool {
        word & self.mask() != 0
    }

    /// `word` with the field replaced by `value` (excess bits of `value` are dropped).
    pub const fn set(self, word: u64, value: u64) -> u64 {
        (word & !self.mask()) | ((value << self.lo) & self.mask())
    }

    /// `word` with a one-bit field set or cleared.
    pub const fn with(self, word: u64, on: bool) -> u64 {
        self.set(word, on as u64)
    }

    /// The field's bits of `word` left in place (for address fields such as `51:12`).
    pub const fn in_place(self, word: u64) -> u64 {
        word & self.mask()
    }
}

/// A mask of the low `lg2` bits.
pub(crate) const fn low_mask(lg2: u8) -> u64 {
    if lg2 >= 64 {
        u64::MAX
    } else {
        (1u64 << lg2) - 1
    }
}

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
}

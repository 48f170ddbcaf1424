//! Bit layouts declared once: a field of a 64-bit word, a field of a multi-word descriptor, and
//! typed register offsets. Every `spec` module and page-table format declares its layouts with
//! these, and getters and setters use the declarations.

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

/// A mask of the low `lg2` bits (all ones from 64 up).
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
    pub const fn bits(hi: u16, lo: u16) -> Self {
        assert!(hi / 64 == lo / 64 && hi >= lo, "a field may not cross a 64-bit word");
        // Both fit in a u8 after the remainder.
        Self { word: (lo / 64) as usize, field: Field::bits((hi % 64) as u8, (lo % 64) as u8) }
    }

    /// Bit `n` of the descriptor.
    pub const fn bit(n: u16) -> Self {
        Self::bits(n, n)
    }

    /// The field's value; 0 if the descriptor is shorter than the field's word.
    pub fn get(self, words: &[u64]) -> u64 {
        words.get(self.word).map_or(0, |&w| self.field.get(w))
    }

    /// Whether a one-bit field is set.
    pub fn is_set(self, words: &[u64]) -> bool {
        self.get(words) != 0
    }

    /// Replaces the field; does nothing if the descriptor is shorter than the field's word.
    pub fn set(self, words: &mut [u64], value: u64) {
        if let Some(w) = words.get_mut(self.word) {
            *w = self.field.set(*w, value);
        }
    }

    /// The field's bits left in place within their word (for address fields).
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

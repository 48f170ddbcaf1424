//! The PRI queue entry: §8 of IHI 0070 G.b. A PCIe Page Request (PPR) arriving from an endpoint is
//! written to the PRI queue as a 16-byte record; software answers the Page Request Group with
//! CMD_PRI_RESP ([`super::cmd::PriResp`]).
//!
//! The §8 figure is an image in our copy of G.b; its field list (`StreamID[31:0]`, SSV,
//! `SubstreamID[19:0]`, `Page address[63:12]`, `PRGIndex[8:0]`, Last/W/R/X/Priv) survives as text
//! and the positions below are the figure's as widely implemented.

use std::fmt;

use sviommu_memory::bits::WideField;

use super::{accessors, debug_fields};

/// StreamID of the requester (`StreamID[15:0]` is the PCIe RequesterID).
pub const STREAMID: WideField = WideField::bits(31, 0);
/// SubstreamID (the PASID), UNKNOWN when SSV == 0.
pub const SUBSTREAMID: WideField = WideField::bits(51, 32);
/// Priv: privileged access requested (0 when SSV == 0).
pub const PRIV: WideField = WideField::bit(58);
/// X: execute access requested (0 when SSV == 0).
pub const X: WideField = WideField::bit(59);
/// R: read access requested.
pub const R: WideField = WideField::bit(60);
/// W: write access requested.
pub const W: WideField = WideField::bit(61);
/// Last: the last request of its Page Request Group.
pub const LAST: WideField = WideField::bit(62);
/// SSV: the request carried a PASID TLP prefix.
pub const SSV: WideField = WideField::bit(63);
/// PRGIndex: the Page Request Group.
pub const PRGINDEX: WideField = WideField::bits(72, 64);
/// Page address, bits `[63:12]` in place.
pub const PAGE_ADDRESS: WideField = WideField::bits(127, 76);

/// Bytes in a PRI queue entry.
pub const PRIQ_ENTRY_BYTES: u64 = 16;

/// IHI 0070 G.b §8 PRI queue entry: 16 bytes, two little-endian words.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PageRequest(pub [u64; 2]);

accessors!(PageRequest {
    /// StreamID.
    "StreamID" => sid, set_sid: STREAMID as u32;
    /// SubstreamID.
    "SubstreamID" => ssid, set_ssid: SUBSTREAMID as u32;
    /// Priv (`priv` is a Rust keyword).
    "Priv" => privileged, set_privileged: PRIV as bool;
    /// X.
    "X" => x, set_x: X as bool;
    /// R.
    "R" => r, set_r: R as bool;
    /// W.
    "W" => w, set_w: W as bool;
    /// Last.
    "Last" => last, set_last: LAST as bool;
    /// SSV.
    "SSV" => ssv, set_ssv: SSV as bool;
    /// PRGIndex.
    "PRGIndex" => prgindex, set_prgindex: PRGINDEX as u16;
    /// Page address.
    "Page address" => page_address, set_page_address: PAGE_ADDRESS as addr;
});

impl PageRequest {
    /// Bits no field covers, `[57:52]` and `[75:73]` (software should ignore them).
    pub const UNUSED: [u64; 2] = [0x03f0_0000_0000_0000, 0x0000_0000_0000_0e00];

    /// Wraps the two words as read from the PRI queue.
    pub const fn from_words(words: [u64; 2]) -> Self {
        Self(words)
    }

    /// The two words, to be written little-endian.
    pub const fn words(&self) -> [u64; 2] {
        self.0
    }

    /// A PCIe Stop PASID marker: SSV == 1 and {Last, W, R} == 0b100 (§8). A request without a
    /// PASID and the same bits is an ordinary page request.
    pub fn is_stop_marker(&self) -> bool {
        self.ssv() && self.last() && !self.w() && !self.r()
    }
}

impl fmt::Debug for PageRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("PageRequest");
        s.field("StreamID", &format_args!("{:#x}", self.sid()));
        let fields = Self::FIELDS.iter().map(|a| &a.named);
        let res0 = super::masked(&self.0, &Self::UNUSED);
        debug_fields(&mut s, &self.0, fields, &["StreamID"], &res0);
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::test_support::*;

    #[test]
    fn fields_are_disjoint_and_unused_is_their_complement() {
        assert_disjoint(PageRequest::FIELDS);
        assert_widths(PageRequest::FIELDS);
        let d: [u64; 2] = defined(PageRequest::FIELDS);
        assert_eq!([!d[0], !d[1]], PageRequest::UNUSED);
    }

    proptest! {
        #[test]
        fn every_accessor_round_trips(words in any::<[u64; 2]>(), value in any::<u64>()) {
            assert_round_trip(PageRequest::FIELDS, PageRequest(words), |p| p.0, value);
        }
    }
}

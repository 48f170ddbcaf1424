//! The PRI queue entry: §8 of IHI 0070 G.b. A PCIe Page Request (PPR) arriving from an endpoint is
//! written to the PRI queue as a 16-byte record; software answers the Page Request Group with
//! CMD_PRI_RESP ([`super::cmd::PriResp`]).
//!
//! The §8 figure is an image in our copy of G.b; its field list (`StreamID[31:0]`, SSV,
//! `SubstreamID[19:0]`, `Page address[63:12]`, `PRGIndex[8:0]`, Last/W/R/X/Priv) survives as text
//! and the positions below are the figure's as widely implemented.

use sviommu_memory::bits::bitfields;

/// Bytes in a PRI queue entry.
pub const PRIQ_ENTRY_BYTES: u64 = 16;

/// IHI 0070 G.b §8 PRI queue entry: 16 bytes, two little-endian words.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PageRequest(pub [u64; 2]);

bitfields! {
    impl PageRequest: debug {
        /// StreamID of the requester (`StreamID[15:0]` is the PCIe RequesterID).
        STREAMID "StreamID" = bits(31, 0) => sid, set_sid: u32;
        /// SubstreamID (the PASID), UNKNOWN when SSV == 0.
        SUBSTREAMID "SubstreamID" = bits(51, 32) => ssid, set_ssid: u32;
        /// Priv: privileged access requested (0 when SSV == 0).
        ///
        /// Priv (`priv` is a Rust keyword).
        PRIV "Priv" = bit(58) => privileged, set_privileged: bool;
        /// X: execute access requested (0 when SSV == 0).
        X = bit(59) => x, set_x: bool;
        /// R: read access requested.
        R = bit(60) => r, set_r: bool;
        /// W: write access requested.
        W = bit(61) => w, set_w: bool;
        /// Last: the last request of its Page Request Group.
        LAST "Last" = bit(62) => last, set_last: bool;
        /// SSV: the request carried a PASID TLP prefix.
        SSV = bit(63) => ssv, set_ssv: bool;
        /// PRGIndex: the Page Request Group.
        PRGINDEX "PRGIndex" = bits(72, 64) => prgindex, set_prgindex: u16;
        /// Page address, bits `[63:12]` in place.
        PAGE_ADDRESS "Page address" = bits(127, 76) => page_address, set_page_address: addr;
    }
}

bitfields!(words PageRequest, 2);

impl PageRequest {
    /// Bits no field covers, `[57:52]` and `[75:73]` (software should ignore them).
    pub const UNUSED: [u64; 2] = [0x03f0_0000_0000_0000, 0x0000_0000_0000_0e00];

    /// A PCIe Stop PASID marker: SSV == 1 and {Last, W, R} == 0b100 (§8). A request without a
    /// PASID and the same bits is an ordinary page request.
    pub fn is_stop_marker(&self) -> bool {
        self.ssv() && self.last() && !self.w() && !self.r()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::test_support::*;

    #[test]
    fn fields_are_disjoint_and_unused_is_their_complement() {
        assert_layout(PageRequest::FIELDS, &PageRequest::UNUSED);
    }

    proptest! {
        #[test]
        fn every_accessor_round_trips(words in any::<[u64; 2]>(), value in any::<u64>()) {
            assert_round_trip(PageRequest::FIELDS, PageRequest(words), |p| p.0, value);
        }
    }
}

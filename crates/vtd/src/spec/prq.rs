//! Recoverable faults: the page request descriptor hardware writes into the page request queue
//! (§7.5.1.1) and the page group response descriptor software answers with through the
//! invalidation queue (§7.7.1).
//!
//! A device with ATS and PRI whose translation request failed sends a page request; requests
//! with the same PRG index form a group, the last one flagged LPIG, and one response answers the
//! whole group. Revision 2's page stream response and the SRR (streaming response requested)
//! bit went with extended mode; revision 4.1 has page group responses only.

use sviommu_memory::bits::{bitfields, WideField};

use super::any_set;
use super::inv::{descriptor, DescriptorType, TYPE_HI, TYPE_LO};

/// Bytes per page request queue entry.
pub const PAGE_REQUEST_BYTES: u64 = 32;

/// The page request descriptor's type value (bits 7:0).
pub const PAGE_REQUEST_TYPE: u64 = 0x1;

// ---------------------------------------------------------------------------------------------
// §7.5.1.1 Page Request Descriptor
// ---------------------------------------------------------------------------------------------

/// §7.5.1.1 Page Request Descriptor (256-bit), as hardware writes it into the page request queue.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PageRequest([u64; 4]);

view_words!(PageRequest, 4);

bitfields! {
    impl PageRequest: debug(reserved_set) {
        /// Descriptor type (01h): 01h for a page request.
        TYPE = bits(7, 0) => type_, set_type: u64;
        /// PASID present: the request carries a PASID.
        PP = bit(8) => pp, set_pp: bool;
        /// Private data present: the request carries private data, which the response must return.
        PDP = bit(9) => pdp, set_pdp: bool;
        /// Requester ID: the requesting device.
        RID = bits(31, 16) => rid, set_rid: u16;
        /// PASID: the address space, if PP.
        PASID = bits(51, 32) => pasid, set_pasid: u32;
        /// Execute requested: execute permission requested.
        ER = bit(52) => er, set_er: bool;
        /// Privilege mode requested: supervisor privilege requested.
        PMR = bit(53) => pmr, set_pmr: bool;
        /// Read requested: read permission requested.
        RR = bit(64) => rr, set_rr: bool;
        /// Write requested: write permission requested.
        WR = bit(65) => wr, set_wr: bool;
        /// Last page in group: the last request of its group.
        LPIG = bit(66) => lpig, set_lpig: bool;
        /// Page request group index: the page request group this request belongs to.
        PRGI = bits(75, 67) => prgi, set_prgi: u16;
        /// Page address: the page the device asks for.
        ADDR = bits(127, 76) => addr, set_addr: addr;
        /// Private data, bits 63:0.
        ///
        /// Private data, low 64 bits (valid if PDP).
        PRIV_DATA_LO = bits(191, 128) => priv_data_lo, set_priv_data_lo: u64;
        /// Private data, bits 127:64.
        ///
        /// Private data, high 64 bits (valid if PDP).
        PRIV_DATA_HI = bits(255, 192) => priv_data_hi, set_priv_data_hi: u64;
    }
}

impl PageRequest {
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(15, 10), WideField::bits(63, 54)];

    /// An all-zero page request (type 01h).
    #[must_use]
    pub fn new() -> Self {
        let mut d = Self([0; 4]);
        d.set_type(PAGE_REQUEST_TYPE);
        d
    }

    /// Whether a reserved bit is set (hardware never sets one).
    #[must_use]
    pub fn reserved_bits_set(&self) -> bool {
        any_set(&self.0, &Self::fixed_reserved_mask())
    }
}

// ---------------------------------------------------------------------------------------------
// §7.7.1 Page Group Response Descriptor
// ---------------------------------------------------------------------------------------------

spec_enum! {
    /// The response code of a page group response (PCIe PRG response codes). Other values are
    /// reserved.
    pub enum ResponseCode {
        /// 0h: the pages are resident; the device retries its translation requests.
        Success = 0x0,
        /// 1h: invalid request: the device must not retry.
        InvalidRequest = 0x1,
        /// Fh: response failure: the device disables its page request interface.
        ResponseFailure = 0xf,
    }
}

/// §7.7.1 Page Group Response Descriptor: software's answer to a page request group, submitted
/// through the invalidation queue and forwarded to the device.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PageGroupResponse([u64; 4]);

descriptor!(PageGroupResponse, DescriptorType::PageGroupResponse, upper_used = true);

bitfields! {
    impl PageGroupResponse: debug(reserved_set) {
        TYPE_LO = TYPE_LO;
        /// PASID present: the response carries a PASID.
        PP = bit(4) => pp, set_pp: bool;
        /// Private data present: the response returns the request's private data.
        PDP = bit(5) => pdp, set_pdp: bool;
        TYPE_HI = TYPE_HI;
        /// Response code: the response.
        RC = bits(15, 12) => rc, set_rc, rc_raw, set_rc_raw: enum(ResponseCode);
        /// Requester ID of the device: the device.
        RID = bits(31, 16) => rid, set_rid: u16;
        /// PASID: the address space, if PP.
        PASID = bits(51, 32) => pasid, set_pasid: u32;
        /// Last page in group: copied from the group's last request.
        LPIG = bit(66) => lpig, set_lpig: bool;
        /// Page request group index: the group being answered.
        PRGI = bits(75, 67) => prgi, set_prgi: u16;
        /// Private data, bits 63:0 (256-bit descriptors only).
        ///
        /// Private data, low 64 bits.
        PRIV_DATA_LO = bits(191, 128) => priv_data_lo, set_priv_data_lo: u64;
        /// Private data, bits 127:64 (256-bit descriptors only).
        ///
        /// Private data, high 64 bits.
        PRIV_DATA_HI = bits(255, 192) => priv_data_hi, set_priv_data_hi: u64;
    }
}

impl PageGroupResponse {
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(8, 6),
        WideField::bits(63, 52),
        WideField::bits(65, 64),
        WideField::bits(127, 76),
    ];
}

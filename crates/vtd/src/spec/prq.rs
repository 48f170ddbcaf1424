//! Recoverable faults: the page request descriptor hardware writes into the page request queue
//! (§7.5.1.1) and the page group response descriptor software answers with through the
//! invalidation queue (§7.7.1).
//!
//! A device with ATS and PRI whose translation request failed sends a page request; requests
//! with the same PRG index form a group, the last one flagged LPIG, and one response answers the
//! whole group. Revision 2's page stream response and the SRR (streaming response requested)
//! bit went with extended mode; revision 4.1 has page group responses only.

use core::fmt;

use sviommu_memory::bits::WideField;

use super::inv::{descriptor, DescriptorType, TYPE_HI, TYPE_LO};
use super::{any_set, Hex};

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

impl PageRequest {
    /// Descriptor type (01h).
    pub const TYPE: WideField = WideField::bits(7, 0);
    /// PASID present.
    pub const PP: WideField = WideField::bit(8);
    /// Private data present.
    pub const PDP: WideField = WideField::bit(9);
    /// Requester ID.
    pub const RID: WideField = WideField::bits(31, 16);
    /// PASID.
    pub const PASID: WideField = WideField::bits(51, 32);
    /// Execute requested.
    pub const ER: WideField = WideField::bit(52);
    /// Privilege mode requested.
    pub const PMR: WideField = WideField::bit(53);
    /// Read requested.
    pub const RR: WideField = WideField::bit(64);
    /// Write requested.
    pub const WR: WideField = WideField::bit(65);
    /// Last page in group.
    pub const LPIG: WideField = WideField::bit(66);
    /// Page request group index.
    pub const PRGI: WideField = WideField::bits(75, 67);
    /// Page address.
    pub const ADDR: WideField = WideField::bits(127, 76);
    /// Private data, bits 63:0.
    pub const PRIV_DATA_LO: WideField = WideField::bits(191, 128);
    /// Private data, bits 127:64.
    pub const PRIV_DATA_HI: WideField = WideField::bits(255, 192);
    /// Every named field.
    pub const FIELDS: &'static [(&'static str, WideField)] = &[
        ("TYPE", Self::TYPE),
        ("PP", Self::PP),
        ("PDP", Self::PDP),
        ("RID", Self::RID),
        ("PASID", Self::PASID),
        ("ER", Self::ER),
        ("PMR", Self::PMR),
        ("RR", Self::RR),
        ("WR", Self::WR),
        ("LPIG", Self::LPIG),
        ("PRGI", Self::PRGI),
        ("ADDR", Self::ADDR),
        ("PRIV_DATA_LO", Self::PRIV_DATA_LO),
        ("PRIV_DATA_HI", Self::PRIV_DATA_HI),
    ];
    /// Always-reserved bits.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(15, 10), WideField::bits(63, 54)];

    /// An all-zero page request (type 01h).
    #[must_use]
    pub fn new() -> Self {
        let mut d = Self([0; 4]);
        d.set_type(PAGE_REQUEST_TYPE);
        d
    }

    int_fields! {
        /// TYPE: 01h for a page request.
        type_, set_type: u64 = Self::TYPE;
        /// RID: the requesting device.
        rid, set_rid: u16 = Self::RID;
        /// PASID: the address space, if PP.
        pasid, set_pasid: u32 = Self::PASID;
        /// PRGI: the page request group this request belongs to.
        prgi, set_prgi: u16 = Self::PRGI;
        /// Private data, low 64 bits (valid if PDP).
        priv_data_lo, set_priv_data_lo: u64 = Self::PRIV_DATA_LO;
        /// Private data, high 64 bits (valid if PDP).
        priv_data_hi, set_priv_data_hi: u64 = Self::PRIV_DATA_HI;
    }
    flag_fields! {
        /// PP: the request carries a PASID.
        pp, set_pp = Self::PP;
        /// PDP: the request carries private data, which the response must return.
        pdp, set_pdp = Self::PDP;
        /// ER: execute permission requested.
        er, set_er = Self::ER;
        /// PMR: supervisor privilege requested.
        pmr, set_pmr = Self::PMR;
        /// RR: read permission requested.
        rr, set_rr = Self::RR;
        /// WR: write permission requested.
        wr, set_wr = Self::WR;
        /// LPIG: the last request of its group.
        lpig, set_lpig = Self::LPIG;
    }
    addr_fields! {
        /// ADDR: the page the device asks for.
        addr, set_addr = Self::ADDR;
    }

    /// Whether a reserved bit is set (hardware never sets one).
    #[must_use]
    pub fn reserved_bits_set(&self) -> bool {
        any_set(&self.0, &Self::fixed_reserved_mask())
    }
}

impl fmt::Debug for PageRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageRequest")
            .field("type", &self.type_())
            .field("rid", &Hex(self.rid().into()))
            .field("pp", &self.pp())
            .field("pasid", &Hex(self.pasid().into()))
            .field("addr", &Hex(self.addr()))
            .field("rr", &self.rr())
            .field("wr", &self.wr())
            .field("er", &self.er())
            .field("pmr", &self.pmr())
            .field("lpig", &self.lpig())
            .field("prgi", &self.prgi())
            .field("pdp", &self.pdp())
            .field("priv_data", &(Hex(self.priv_data_lo()), Hex(self.priv_data_hi())))
            .finish()
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

impl PageGroupResponse {
    /// PASID present.
    pub const PP: WideField = WideField::bit(4);
    /// Private data present.
    pub const PDP: WideField = WideField::bit(5);
    /// Response code.
    pub const RC: WideField = WideField::bits(15, 12);
    /// Requester ID of the device.
    pub const RID: WideField = WideField::bits(31, 16);
    /// PASID.
    pub const PASID: WideField = WideField::bits(51, 32);
    /// Last page in group.
    pub const LPIG: WideField = WideField::bit(66);
    /// Page request group index.
    pub const PRGI: WideField = WideField::bits(75, 67);
    /// Private data, bits 63:0 (256-bit descriptors only).
    pub const PRIV_DATA_LO: WideField = WideField::bits(191, 128);
    /// Private data, bits 127:64 (256-bit descriptors only).
    pub const PRIV_DATA_HI: WideField = WideField::bits(255, 192);
    /// Every named field.
    pub const FIELDS: &'static [(&'static str, WideField)] = &[
        ("TYPE_LO", TYPE_LO),
        ("PP", Self::PP),
        ("PDP", Self::PDP),
        ("TYPE_HI", TYPE_HI),
        ("RC", Self::RC),
        ("RID", Self::RID),
        ("PASID", Self::PASID),
        ("LPIG", Self::LPIG),
        ("PRGI", Self::PRGI),
        ("PRIV_DATA_LO", Self::PRIV_DATA_LO),
        ("PRIV_DATA_HI", Self::PRIV_DATA_HI),
    ];
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(8, 6),
        WideField::bits(63, 52),
        WideField::bits(65, 64),
        WideField::bits(127, 76),
    ];

    flag_fields! {
        /// PP: the response carries a PASID.
        pp, set_pp = Self::PP;
        /// PDP: the response returns the request's private data.
        pdp, set_pdp = Self::PDP;
        /// LPIG: copied from the group's last request.
        lpig, set_lpig = Self::LPIG;
    }
    enum_fields! {
        /// RC: the response.
        rc, set_rc, rc_raw, set_rc_raw: ResponseCode = Self::RC;
    }
    int_fields! {
        /// RID: the device.
        rid, set_rid: u16 = Self::RID;
        /// PASID: the address space, if PP.
        pasid, set_pasid: u32 = Self::PASID;
        /// PRGI: the group being answered.
        prgi, set_prgi: u16 = Self::PRGI;
        /// Private data, low 64 bits.
        priv_data_lo, set_priv_data_lo: u64 = Self::PRIV_DATA_LO;
        /// Private data, high 64 bits.
        priv_data_hi, set_priv_data_hi: u64 = Self::PRIV_DATA_HI;
    }
}

impl fmt::Debug for PageGroupResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageGroupResponse")
            .field("rc", &self.rc())
            .field("rid", &Hex(self.rid().into()))
            .field("pp", &self.pp())
            .field("pasid", &Hex(self.pasid().into()))
            .field("prgi", &self.prgi())
            .field("lpig", &self.lpig())
            .field("pdp", &self.pdp())
            .field("priv_data", &(Hex(self.priv_data_lo()), Hex(self.priv_data_hi())))
            .finish()
    }
}

//! Invalidation descriptors (§6.5.2) as they sit in the invalidation queue.
//!
//! IQA_REG.DW selects the queue's descriptor width: 128-bit descriptors, or 256-bit ones, which
//! scalable mode needs. Every descriptor type has the same bits 127:0 in both widths; bits
//! 255:128 are reserved except in the page group response, which carries private data there.
//! Every view here is four words wide; a 128-bit descriptor is the first two with the rest zero.
//!
//! The type is seven bits split in two: bits 3:0 hold `type[3:0]` and bits 11:9 hold `type[6:4]`.

use core::fmt;

use sviommu_memory::bits::{bitfields, WideField};

use super::prq::PageGroupResponse;
use super::{mask_of, Hex, Reserved};

/// Descriptor type, bits 3:0.
pub const TYPE_LO: WideField = WideField::bits(3, 0);
/// Descriptor type, bits 6:4, held in bits 11:9.
pub const TYPE_HI: WideField = WideField::bits(11, 9);

/// Bits 255:128: reserved in every descriptor but the page group response.
const UPPER_HALF: &[WideField] = &[WideField::bits(191, 128), WideField::bits(255, 192)];

spec_enum! {
    /// The invalidation descriptor types (§6.5.2). Type 0 and 0Ah–7Fh are reserved (0Ah was
    /// revision 2's page stream response, removed with extended mode).
    pub enum DescriptorType {
        /// §6.5.2.1 context-cache invalidate.
        ContextCache = 0x1,
        /// §6.5.2.3 IOTLB invalidate.
        Iotlb = 0x2,
        /// §6.5.2.5 device-TLB invalidate.
        DevTlb = 0x3,
        /// §6.5.2.7 interrupt entry cache invalidate.
        InterruptEntryCache = 0x4,
        /// §6.5.2.8 invalidation wait.
        Wait = 0x5,
        /// §6.5.2.4 PASID-based IOTLB invalidate.
        PasidIotlb = 0x6,
        /// §6.5.2.2 PASID-cache invalidate.
        PasidCache = 0x7,
        /// §6.5.2.6 PASID-based device-TLB invalidate.
        PasidDevTlb = 0x8,
        /// §7.7.1 page group response.
        PageGroupResponse = 0x9,
    }
}

impl DescriptorType {
    /// Whether the type is a scalable-mode descriptor, which a queue of 128-bit descriptors
    /// cannot carry (§6.5.2: scalable mode uses 256-bit descriptors). The PASID-granular
    /// descriptors and the page group response (whose private data sits in bits 255:128).
    #[must_use]
    pub const fn scalable_only(self) -> bool {
        matches!(
            self,
            DescriptorType::PasidIotlb
                | DescriptorType::PasidCache
                | DescriptorType::PasidDevTlb
                | DescriptorType::PageGroupResponse
        )
    }
}

/// The SID bits a context-cache invalidation with function mask `fm` compares (§6.5.2.1 FM;
/// CCMD_REG.FM): 00b all of them, 01b all but bit 2 of the function number, 10b all but bits
/// 2:1, 11b all but bits 2:0.
#[must_use]
pub const fn fm_sid_mask(fm: u8) -> u16 {
    match fm & 3 {
        0 => 0xffff,
        1 => !0b100,
        2 => !0b110,
        _ => !0b111,
    }
}

/// The range of an address with the ATS size bit `s` (PCIe ATS Invalidate Request, as the
/// device-TLB descriptors carry it, §6.5.2.5): without S the 4 KiB page at `addr`; with S, the
/// lowest clear bit of `addr[63:12]` at position `12 + n` makes it a `2^(13 + n)`-byte range.
/// Returns the first byte and log2 of the size (64 when every address bit is set: everything).
#[must_use]
pub fn ats_range(addr: u64, s: bool) -> (u64, u8) {
    let page = addr >> 12;
    if !s {
        return (page << 12, 12);
    }
    let ones = page.trailing_ones();
    if ones >= 51 {
        return (0, 64);
    }
    // ones <= 50, so the size is at most 2^63.
    let lg2 = u8::try_from(13 + ones).unwrap_or(64);
    (addr & !sviommu_memory::bits::low_mask(lg2), lg2)
}

/// The queue's descriptor width (IQA_REG.DW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DescWidth {
    /// DW = 0: 128-bit descriptors.
    W128,
    /// DW = 1: 256-bit descriptors.
    W256,
}

impl DescWidth {
    /// The width IQA_REG.DW selects.
    #[must_use]
    pub const fn from_dw(dw: bool) -> Self {
        if dw {
            DescWidth::W256
        } else {
            DescWidth::W128
        }
    }

    /// Bytes per descriptor.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        match self {
            DescWidth::W128 => 16,
            DescWidth::W256 => 32,
        }
    }
}

/// The type of the descriptor in `words`.
pub(crate) fn type_of(words: &[u64]) -> u64 {
    TYPE_LO.get(words) | (TYPE_HI.get(words) << 4)
}

/// Writes type `t` into `words`.
pub(crate) fn set_type(words: &mut [u64], t: u64) {
    TYPE_LO.set(words, t & 0xf);
    TYPE_HI.set(words, t >> 4);
}

/// The reserved mask of a descriptor with fixed reserved bits `reserved`: bits 255:128 too
/// unless `upper_used`.
pub(crate) fn desc_reserved_mask(reserved: &[WideField], upper_used: bool) -> [u64; 4] {
    let mut m: [u64; 4] = mask_of(reserved);
    if !upper_used {
        let upper: [u64; 4] = mask_of(UPPER_HALF);
        for (a, b) in m.iter_mut().zip(upper) {
            *a |= b;
        }
    }
    m
}

/// A raw descriptor of any type, as read from the queue.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct InvDesc([u64; 4]);

view_words!(InvDesc, 4);

bitfields! {
    impl InvDesc {
        TYPE_LO = TYPE_LO;
        TYPE_HI = TYPE_HI;
    }
}

impl InvDesc {
    /// Nothing is reserved before the type is known.
    pub const RESERVED: &'static [WideField] = &[];

    /// A 128-bit descriptor (the upper words read as zero).
    #[must_use]
    pub const fn from_words128(words: [u64; 2]) -> Self {
        Self([words[0], words[1], 0, 0])
    }

    /// The seven-bit type, reserved values included.
    #[must_use]
    pub fn type_raw(&self) -> u64 {
        type_of(&self.0)
    }

    /// The type.
    pub fn desc_type(&self) -> Result<DescriptorType, Reserved> {
        DescriptorType::try_from(self.type_raw())
    }

    /// The typed view this descriptor's type selects.
    pub fn decode(&self) -> Result<Invalidation, Reserved> {
        let w = self.0;
        Ok(match self.desc_type()? {
            DescriptorType::ContextCache => Invalidation::ContextCache(ContextCacheInv(w)),
            DescriptorType::Iotlb => Invalidation::Iotlb(IotlbInv(w)),
            DescriptorType::DevTlb => Invalidation::DevTlb(DevTlbInv(w)),
            DescriptorType::InterruptEntryCache => Invalidation::InterruptEntryCache(IecInv(w)),
            DescriptorType::Wait => Invalidation::Wait(InvWait(w)),
            DescriptorType::PasidIotlb => Invalidation::PasidIotlb(PasidIotlbInv(w)),
            DescriptorType::PasidCache => Invalidation::PasidCache(PasidCacheInv(w)),
            DescriptorType::PasidDevTlb => Invalidation::PasidDevTlb(PasidDevTlbInv(w)),
            DescriptorType::PageGroupResponse => {
                Invalidation::PageGroupResponse(PageGroupResponse::from_words(w))
            }
        })
    }
}

impl fmt::Debug for InvDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decode() {
            Ok(d) => d.fmt(f),
            Err(r) => f
                .debug_struct("InvDesc")
                .field("type", &r)
                .field("words", &self.0.map(Hex))
                .finish(),
        }
    }
}

/// A decoded invalidation descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// Context-cache invalidate.
    ContextCache(ContextCacheInv),
    /// IOTLB invalidate.
    Iotlb(IotlbInv),
    /// Device-TLB invalidate.
    DevTlb(DevTlbInv),
    /// Interrupt entry cache invalidate.
    InterruptEntryCache(IecInv),
    /// Invalidation wait.
    Wait(InvWait),
    /// PASID-based IOTLB invalidate.
    PasidIotlb(PasidIotlbInv),
    /// PASID-cache invalidate.
    PasidCache(PasidCacheInv),
    /// PASID-based device-TLB invalidate.
    PasidDevTlb(PasidDevTlbInv),
    /// Page group response.
    PageGroupResponse(PageGroupResponse),
}

impl Invalidation {
    /// The descriptor's raw words.
    #[must_use]
    pub fn words(&self) -> [u64; 4] {
        match self {
            Invalidation::ContextCache(d) => d.words(),
            Invalidation::Iotlb(d) => d.words(),
            Invalidation::DevTlb(d) => d.words(),
            Invalidation::InterruptEntryCache(d) => d.words(),
            Invalidation::Wait(d) => d.words(),
            Invalidation::PasidIotlb(d) => d.words(),
            Invalidation::PasidCache(d) => d.words(),
            Invalidation::PasidDevTlb(d) => d.words(),
            Invalidation::PageGroupResponse(d) => d.words(),
        }
    }

    /// Whether a reserved bit is set for a queue of `width` (an invalidation queue error).
    #[must_use]
    pub fn reserved_bits_set(&self, width: DescWidth) -> bool {
        match self {
            Invalidation::ContextCache(d) => d.reserved_bits_set(width),
            Invalidation::Iotlb(d) => d.reserved_bits_set(width),
            Invalidation::DevTlb(d) => d.reserved_bits_set(width),
            Invalidation::InterruptEntryCache(d) => d.reserved_bits_set(width),
            Invalidation::Wait(d) => d.reserved_bits_set(width),
            Invalidation::PasidIotlb(d) => d.reserved_bits_set(width),
            Invalidation::PasidCache(d) => d.reserved_bits_set(width),
            Invalidation::PasidDevTlb(d) => d.reserved_bits_set(width),
            Invalidation::PageGroupResponse(d) => d.reserved_bits_set(width),
        }
    }
}

/// What every typed descriptor view shares: its type, a constructor that sets it, and the
/// reserved check.
macro_rules! descriptor {
    ($name:ident, $ty:expr, upper_used = $upper:expr) => {
        view_words!($name, 4);

        impl $name {
            /// The descriptor type this view is for.
            pub const TYPE: $crate::spec::inv::DescriptorType = $ty;

            /// An all-zero descriptor of this type.
            #[must_use]
            pub fn new() -> Self {
                let mut words = [0u64; 4];
                $crate::spec::inv::set_type(&mut words, u64::from(Self::TYPE));
                Self(words)
            }

            /// The seven-bit type field, raw.
            #[must_use]
            pub fn type_raw(&self) -> u64 {
                $crate::spec::inv::type_of(&self.0)
            }

            /// Reserved bits for a queue of `width`.
            #[must_use]
            pub fn reserved_mask(width: $crate::spec::inv::DescWidth) -> [u64; 4] {
                $crate::spec::inv::desc_reserved_mask(
                    Self::RESERVED,
                    $upper && width == $crate::spec::inv::DescWidth::W256,
                )
            }

            /// Whether a reserved bit is set for a queue of `width` (an invalidation queue
            /// error, FSTS.IQE).
            #[must_use]
            pub fn reserved_bits_set(&self, width: $crate::spec::inv::DescWidth) -> bool {
                $crate::spec::any_set(&self.0, &Self::reserved_mask(width))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}
pub(crate) use descriptor;

// ---------------------------------------------------------------------------------------------
// Granularities
// ---------------------------------------------------------------------------------------------

spec_enum! {
    /// Context-cache invalidation granularity: the descriptor's G (§6.5.2.1) and CCMD_REG's
    /// CIRG/CAIG (§11.4). 00b is reserved.
    pub enum CcGranularity {
        /// 01b: every context-cache entry.
        Global = 1,
        /// 10b: the entries tagged with DID.
        Domain = 2,
        /// 11b: the entries for SID (masked by FM) and DID.
        Device = 3,
    }
}

spec_enum! {
    /// IOTLB invalidation granularity: the descriptor's G (§6.5.2.3) and IOTLB_REG's IIRG/IAIG
    /// (§11.4). 00b is reserved.
    pub enum IotlbGranularity {
        /// 01b: every IOTLB entry.
        Global = 1,
        /// 10b: the entries tagged with DID.
        Domain = 2,
        /// 11b: the entries for DID and the `2^AM` pages at ADDR.
        Page = 3,
    }
}

spec_enum! {
    /// Interrupt entry cache invalidation granularity (§6.5.2.7).
    pub enum IecGranularity {
        /// 0: every interrupt entry.
        Global = 0,
        /// 1: the `2^IM` entries from IIDX.
        Index = 1,
    }
}

spec_enum! {
    /// PASID-based IOTLB invalidation granularity (§6.5.2.4). 00b and 01b are reserved.
    pub enum PasidIotlbGranularity {
        /// 10b: the non-global entries for DID and PASID.
        Pasid = 2,
        /// 11b: the entries for DID, PASID and the `2^AM` pages at ADDR.
        Page = 3,
    }
}

spec_enum! {
    /// PASID-cache invalidation granularity (§6.5.2.2). 10b is reserved.
    pub enum PasidCacheGranularity {
        /// 00b: the entries tagged with DID.
        Domain = 0,
        /// 01b: the entries for DID and PASID.
        Pasid = 1,
        /// 11b: every PASID-cache entry.
        Global = 3,
    }
}

// ---------------------------------------------------------------------------------------------
// §6.5.2.1 Context-cache Invalidate Descriptor
// ---------------------------------------------------------------------------------------------

/// §6.5.2.1 Context-cache Invalidate Descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ContextCacheInv([u64; 4]);

descriptor!(ContextCacheInv, DescriptorType::ContextCache, upper_used = false);

bitfields! {
    impl ContextCacheInv: debug(reserved_set) {
        TYPE_LO = TYPE_LO;
        /// Granularity: which entries go.
        G = bits(5, 4) => g, set_g, g_raw, set_g_raw: enum(CcGranularity);
        TYPE_HI = TYPE_HI;
        /// Domain ID: the domain (domain- and device-selective).
        DID = bits(31, 16) => did, set_did: u16;
        /// Source ID: the device (device-selective).
        SID = bits(47, 32) => sid, set_sid: u16;
        /// Function mask: how many low SID bits to ignore (00b none, 01b bit 2, 10b bits 2:1, 11b
        /// bits 2:0 of the function number).
        FM = bits(49, 48) => fm, set_fm: u8;
    }
}

impl ContextCacheInv {
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(8, 6),
        WideField::bits(15, 12),
        WideField::bits(63, 50),
        WideField::bits(127, 64),
    ];
}

// ---------------------------------------------------------------------------------------------
// §6.5.2.3 IOTLB Invalidate Descriptor
// ---------------------------------------------------------------------------------------------

/// §6.5.2.3 IOTLB Invalidate Descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct IotlbInv([u64; 4]);

descriptor!(IotlbInv, DescriptorType::Iotlb, upper_used = false);

bitfields! {
    impl IotlbInv: debug(reserved_set) {
        TYPE_LO = TYPE_LO;
        /// Granularity: which entries go.
        G = bits(5, 4) => g, set_g, g_raw, set_g_raw: enum(IotlbGranularity);
        /// Drain writes: drain writes before completing.
        DW = bit(6) => dw, set_dw: bool;
        /// Drain reads: drain reads before completing.
        DR = bit(7) => dr, set_dr: bool;
        TYPE_HI = TYPE_HI;
        /// Domain ID: the domain.
        DID = bits(31, 16) => did, set_did: u16;
        /// Address mask: `2^AM` pages: the range is `2^AM` 4 KiB pages, naturally aligned.
        AM = bits(69, 64) => am, set_am: u8;
        /// Invalidation hint: only leaf entries changed: only leaf entries changed;
        /// paging-structure caches may be kept.
        IH = bit(70) => ih, set_ih: bool;
        /// Address: the first page (page-selective).
        ADDR = bits(127, 76) => addr, set_addr: addr;
    }
}

impl IotlbInv {
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bit(8),
        WideField::bits(15, 12),
        WideField::bits(63, 32),
        WideField::bits(75, 71),
    ];
}

// ---------------------------------------------------------------------------------------------
// §6.5.2.5 Device-TLB Invalidate Descriptor
// ---------------------------------------------------------------------------------------------

/// The PFSID shared by both device-TLB descriptors: bits 3:0 in bits 15:12, bits 15:4 in bits
/// 63:52.
const PFSID_LO: WideField = WideField::bits(15, 12);
const PFSID_HI: WideField = WideField::bits(63, 52);

fn pfsid_of(words: &[u64]) -> u16 {
    super::narrow(PFSID_LO.get(words) | (PFSID_HI.get(words) << 4))
}

fn set_pfsid(words: &mut [u64], pfsid: u16) {
    PFSID_LO.set(words, u64::from(pfsid) & 0xf);
    PFSID_HI.set(words, u64::from(pfsid) >> 4);
}

/// §6.5.2.5 Device-TLB Invalidate Descriptor (ATS invalidation for requests without PASID).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct DevTlbInv([u64; 4]);

descriptor!(DevTlbInv, DescriptorType::DevTlb, upper_used = false);

bitfields! {
    impl DevTlbInv: debug(reserved_set) {
        TYPE_LO = TYPE_LO;
        TYPE_HI = TYPE_HI;
        /// Physical-function source ID, bits 3:0.
        PFSID_LO = PFSID_LO;
        /// Maximum invalidations pending: the device's maximum outstanding invalidations.
        MIP = bits(20, 16) => mip, set_mip: u8;
        /// Source ID of the device: the device.
        SID = bits(47, 32) => sid, set_sid: u16;
        /// Physical-function source ID, bits 15:4.
        PFSID_HI = PFSID_HI;
        /// Size: the range is encoded in ADDR's low bits (ATS invalidate request S bit): the
        /// invalidation covers more than one page, its size encoded in ADDR.
        S = bit(64) => s, set_s: bool;
        /// Address: the address (with S, its low bits encode the size).
        ADDR = bits(127, 76) => addr, set_addr: addr;
    }
}

impl DevTlbInv {
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(8, 4),
        WideField::bits(31, 21),
        WideField::bits(51, 48),
        WideField::bits(75, 65),
    ];

    /// PFSID: the SR-IOV physical function's source ID.
    #[must_use]
    pub fn pfsid(&self) -> u16 {
        pfsid_of(&self.0)
    }

    /// Sets PFSID.
    pub fn set_pfsid(&mut self, pfsid: u16) {
        set_pfsid(&mut self.0, pfsid);
    }
}

// ---------------------------------------------------------------------------------------------
// §6.5.2.7 Interrupt Entry Cache Invalidate Descriptor
// ---------------------------------------------------------------------------------------------

/// §6.5.2.7 Interrupt Entry Cache Invalidate Descriptor (declared; interrupt remapping is not
/// modelled).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct IecInv([u64; 4]);

descriptor!(IecInv, DescriptorType::InterruptEntryCache, upper_used = false);

bitfields! {
    impl IecInv: debug(reserved_set) {
        TYPE_LO = TYPE_LO;
        /// Granularity: global or index-selective.
        G = bit(4) => g, set_g, g_raw, set_g_raw: enum(IecGranularity);
        TYPE_HI = TYPE_HI;
        /// Index mask: `2^IM` entries: the range is `2^IM` entries.
        IM = bits(31, 27) => im, set_im: u8;
        /// Interrupt index: the first interrupt index.
        IIDX = bits(47, 32) => iidx, set_iidx: u16;
    }
}

impl IecInv {
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(8, 5),
        WideField::bits(26, 12),
        WideField::bits(63, 48),
        WideField::bits(127, 64),
    ];
}

// ---------------------------------------------------------------------------------------------
// §6.5.2.8 Invalidation Wait Descriptor
// ---------------------------------------------------------------------------------------------

/// §6.5.2.8 Invalidation Wait Descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct InvWait([u64; 4]);

descriptor!(InvWait, DescriptorType::Wait, upper_used = false);

bitfields! {
    impl InvWait: debug(reserved_set) {
        TYPE_LO = TYPE_LO;
        /// Interrupt flag: raise the invalidation completion event (ICS.IWC): signal completion
        /// through ICS.IWC and the invalidation event.
        IF = bit(4) => if_, set_if: bool;
        /// Status write: write STATUS_DATA to STATUS_ADDR: write STATUS_DATA to STATUS_ADDR on
        /// completion.
        SW = bit(5) => sw, set_sw: bool;
        /// Fence: later descriptors wait for this one: fence: descriptors after this one wait until
        /// it completes.
        FN = bit(6) => fn_, set_fn: bool;
        /// Page-request drain: drain page requests and responses first (needs ECAP.PDS).
        PD = bit(7) => pd, set_pd: bool;
        TYPE_HI = TYPE_HI;
        /// Status data: the 32 bits written with SW.
        STATUS_DATA = bits(63, 32) => status_data, set_status_data: u32;
        /// Status address (4-byte aligned): where SW writes (dword aligned).
        STATUS_ADDR = bits(127, 66) => status_addr, set_status_addr: addr;
    }
}

impl InvWait {
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] =
        &[WideField::bit(8), WideField::bits(31, 12), WideField::bits(65, 64)];
}

// ---------------------------------------------------------------------------------------------
// §6.5.2.4 PASID-based-IOTLB Invalidate Descriptor
// ---------------------------------------------------------------------------------------------

/// §6.5.2.4 PASID-based-IOTLB Invalidate Descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PasidIotlbInv([u64; 4]);

descriptor!(PasidIotlbInv, DescriptorType::PasidIotlb, upper_used = false);

bitfields! {
    impl PasidIotlbInv: debug(reserved_set) {
        TYPE_LO = TYPE_LO;
        /// Granularity: which entries go.
        G = bits(5, 4) => g, set_g, g_raw, set_g_raw: enum(PasidIotlbGranularity);
        TYPE_HI = TYPE_HI;
        /// Domain ID: the domain.
        DID = bits(31, 16) => did, set_did: u16;
        /// PASID: the address space.
        PASID = bits(51, 32) => pasid, set_pasid: u32;
        /// Address mask: the range is `2^AM` 4 KiB pages.
        AM = bits(69, 64) => am, set_am: u8;
        /// Invalidation hint: only leaf entries changed.
        IH = bit(70) => ih, set_ih: bool;
        /// Address: the first page (page-selective).
        ADDR = bits(127, 76) => addr, set_addr: addr;
    }
}

impl PasidIotlbInv {
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(8, 6),
        WideField::bits(15, 12),
        WideField::bits(63, 52),
        WideField::bits(75, 71),
    ];
}

// ---------------------------------------------------------------------------------------------
// §6.5.2.2 PASID-cache Invalidate Descriptor
// ---------------------------------------------------------------------------------------------

/// §6.5.2.2 PASID-cache Invalidate Descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PasidCacheInv([u64; 4]);

descriptor!(PasidCacheInv, DescriptorType::PasidCache, upper_used = false);

bitfields! {
    impl PasidCacheInv: debug(reserved_set) {
        TYPE_LO = TYPE_LO;
        /// Granularity: which entries go.
        G = bits(5, 4) => g, set_g, g_raw, set_g_raw: enum(PasidCacheGranularity);
        TYPE_HI = TYPE_HI;
        /// Domain ID: the domain.
        DID = bits(31, 16) => did, set_did: u16;
        /// PASID: the address space (PASID-selective).
        PASID = bits(51, 32) => pasid, set_pasid: u32;
    }
}

impl PasidCacheInv {
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] = &[
        WideField::bits(8, 6),
        WideField::bits(15, 12),
        WideField::bits(63, 52),
        WideField::bits(127, 64),
    ];
}

// ---------------------------------------------------------------------------------------------
// §6.5.2.6 PASID-based-Device-TLB Invalidate Descriptor
// ---------------------------------------------------------------------------------------------

/// §6.5.2.6 PASID-based-Device-TLB Invalidate Descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PasidDevTlbInv([u64; 4]);

descriptor!(PasidDevTlbInv, DescriptorType::PasidDevTlb, upper_used = false);

bitfields! {
    impl PasidDevTlbInv: debug(reserved_set) {
        TYPE_LO = TYPE_LO;
        /// Maximum invalidations pending: the device's maximum outstanding invalidations.
        MIP = bits(8, 4) => mip, set_mip: u8;
        TYPE_HI = TYPE_HI;
        /// Physical-function source ID, bits 3:0.
        PFSID_LO = PFSID_LO;
        /// Source ID of the device: the device.
        SID = bits(31, 16) => sid, set_sid: u16;
        /// PASID: the address space.
        PASID = bits(51, 32) => pasid, set_pasid: u32;
        /// Physical-function source ID, bits 15:4.
        PFSID_HI = PFSID_HI;
        /// Global: invalidate the device's global translations for every PASID: global translations
        /// for every PASID go too.
        G = bit(64) => g, set_g: bool;
        /// Size: the invalidation covers more than one page, its size encoded in ADDR.
        S = bit(75) => s, set_s: bool;
        /// Address: the address (with S, its low bits encode the size).
        ADDR = bits(127, 76) => addr, set_addr: addr;
    }
}

impl PasidDevTlbInv {
    /// Always-reserved bits of the 128-bit form.
    pub const RESERVED: &'static [WideField] = &[WideField::bits(74, 65)];

    /// PFSID: the SR-IOV physical function's source ID.
    #[must_use]
    pub fn pfsid(&self) -> u16 {
        pfsid_of(&self.0)
    }

    /// Sets PFSID.
    pub fn set_pfsid(&mut self, pfsid: u16) {
        set_pfsid(&mut self.0, pfsid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_is_split_across_two_fields() {
        let mut w = [0u64; 4];
        set_type(&mut w, 0x19);
        assert_eq!(w[0], 0x9 | (0x1 << 9));
        assert_eq!(type_of(&w), 0x19);
        assert_eq!(InvDesc::from_words(w).desc_type(), Err(Reserved(0x19)));
        assert_eq!(InvDesc::from_words128([0, 0]).desc_type(), Err(Reserved(0)));
        assert_eq!(InvDesc::from_words128([0xa, 0]).desc_type(), Err(Reserved(0xa)));
    }

    #[test]
    fn new_descriptors_carry_their_type_and_no_reserved_bits() {
        for &t in DescriptorType::ALL {
            let mut w = [0u64; 4];
            set_type(&mut w, u64::from(t));
            let d = InvDesc::from_words(w).decode();
            assert!(matches!(d, Ok(ref inv) if inv.words() == w), "{t:?}");
            if let Ok(inv) = d {
                assert!(!inv.reserved_bits_set(DescWidth::W128));
                assert!(!inv.reserved_bits_set(DescWidth::W256));
            }
        }
        assert_eq!(IotlbInv::new().type_raw(), 2);
        assert_eq!(DescWidth::from_dw(true).bytes(), 32);
    }

    #[test]
    fn ats_size_encoding() {
        assert_eq!(ats_range(0x1234_5fff, false), (0x1234_5000, 12));
        // Bit 12 clear: 8K.
        assert_eq!(ats_range(0x1234_4000, true), (0x1234_4000, 13));
        // Bits 13:12 = 01b: 16K; bits 14:12 = 011b: 32K.
        assert_eq!(ats_range(0x1234_5000, true), (0x1234_4000, 14));
        assert_eq!(ats_range(0x1234_3000, true), (0x1234_0000, 15));
        // Every address bit set: the whole space.
        assert_eq!(ats_range(u64::MAX, true), (0, 64));
        assert_eq!(ats_range(u64::MAX >> 2, true), (0, 63));
    }

    #[test]
    fn function_masks() {
        assert_eq!(fm_sid_mask(0), 0xffff);
        assert_eq!(0x0312 & fm_sid_mask(1), 0x0312 & 0xfffb);
        assert_eq!(0x0317 & fm_sid_mask(3), 0x0310);
        assert!(DescriptorType::PasidCache.scalable_only());
        assert!(!DescriptorType::Wait.scalable_only());
    }

    #[test]
    fn upper_half_is_reserved_except_for_page_group_responses() {
        let mut w = IotlbInv::new().words();
        w[3] = 1;
        assert!(IotlbInv::from_words(w).reserved_bits_set(DescWidth::W256));
        let mut p = PageGroupResponse::new().words();
        p[3] = 1;
        assert!(!PageGroupResponse::from_words(p).reserved_bits_set(DescWidth::W256));
        assert!(PageGroupResponse::from_words(p).reserved_bits_set(DescWidth::W128));
    }
}

//! Event records: §7.3 of IHI 0070 G.b, the 32-byte entries the SMMU writes to the Event
//! queue, and their event numbers.
//!
//! Architected faults are data: an [`EventId`]'s discriminant is the number §7.3 assigns, and
//! `hw` records exactly these. Model bugs never get a number here.
//!
//! All records share the first word (event number, SSV, SubstreamID, StreamID); the rest
//! depends on the event, so the field positions are declared once and each event lists the ones
//! it has ([`EventId::layout`]). Positions come from the §7.3 figures where our text copy of
//! G.b kept them (F_UUT, C_BAD_STREAMID, F_STE_FETCH, F_TRANSL_FORBIDDEN, C_BAD_SUBSTREAMID,
//! F_CFG_CONFLICT, E_PAGE_REQUEST, F_VMS_FETCH) and from the common-field definitions otherwise.
//! Not checked against G.b text: NSIPA at bit 100 (zero on a Non-secure Event queue anyway);
//! E_PAGE_REQUEST.Span at `[115:108]`, read from a garbled figure. Not declared: the
//! F_BAD_ATS_TREQ fields other than the common ones, F_TLB_CONFLICT.Reason, and the
//! F_PERMISSION Overlay / AssuredOnly / DirtyBit flags, whose positions are not in our copy.

use std::fmt;

use sviommu_memory::bits::{bitfields, WideField};

use super::{debug_fields, NamedField, Reserved};

/// `InputAddr[63:12]` of E_PAGE_REQUEST.
pub const PAGE_INPUTADDR: WideField = WideField::bits(191, 140);

/// Bytes in an event record.
pub const EVENT_BYTES: u64 = 32;

/// §7.3 event numbers; the discriminants are the spec's. 0xE0..=0xEF are IMPLEMENTATION
/// DEFINED and all others Reserved: both decode as `Err(Reserved)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventId {
    /// F_UUT (§7.3.2): unsupported upstream transaction.
    FUut = 0x01,
    /// C_BAD_STREAMID (§7.3.3): StreamID out of range of the Stream table.
    CBadStreamid = 0x02,
    /// F_STE_FETCH (§7.3.4): the STE fetch aborted.
    FSteFetch = 0x03,
    /// C_BAD_STE (§7.3.5): the STE is invalid (V == 0, Reserved field, ILLEGAL configuration).
    CBadSte = 0x04,
    /// F_BAD_ATS_TREQ (§7.3.6): ATS Translation Request disallowed.
    FBadAtsTreq = 0x05,
    /// F_STREAM_DISABLED (§7.3.7): non-substream traffic disabled by STE.S1DSS.
    FStreamDisabled = 0x06,
    /// F_TRANSL_FORBIDDEN (§7.3.8): a Translated transaction may not bypass.
    FTranslForbidden = 0x07,
    /// C_BAD_SUBSTREAMID (§7.3.9): SubstreamID out of range or not allowed.
    CBadSubstreamid = 0x08,
    /// F_CD_FETCH (§7.3.10): the CD fetch aborted.
    FCdFetch = 0x09,
    /// C_BAD_CD (§7.3.11): the CD is invalid.
    CBadCd = 0x0a,
    /// F_WALK_EABT (§7.3.12): a translation table walk access aborted.
    FWalkEabt = 0x0b,
    /// F_TRANSLATION (§7.3.13): translation fault.
    FTranslation = 0x10,
    /// F_ADDR_SIZE (§7.3.14): address size fault.
    FAddrSize = 0x11,
    /// F_ACCESS (§7.3.15): access flag fault.
    FAccess = 0x12,
    /// F_PERMISSION (§7.3.16): permission fault.
    FPermission = 0x13,
    /// F_TLB_CONFLICT (§7.3.17): TLB conflict.
    FTlbConflict = 0x20,
    /// F_CFG_CONFLICT (§7.3.18): configuration cache conflict.
    FCfgConflict = 0x21,
    /// E_PAGE_REQUEST (§7.3.19): speculative page request hint.
    EPageRequest = 0x24,
    /// F_VMS_FETCH (§7.3.20): the VMS fetch aborted.
    FVmsFetch = 0x25,
}

impl EventId {
    /// Every architected event, in numeric order.
    pub const ALL: [EventId; 19] = [
        EventId::FUut,
        EventId::CBadStreamid,
        EventId::FSteFetch,
        EventId::CBadSte,
        EventId::FBadAtsTreq,
        EventId::FStreamDisabled,
        EventId::FTranslForbidden,
        EventId::CBadSubstreamid,
        EventId::FCdFetch,
        EventId::CBadCd,
        EventId::FWalkEabt,
        EventId::FTranslation,
        EventId::FAddrSize,
        EventId::FAccess,
        EventId::FPermission,
        EventId::FTlbConflict,
        EventId::FCfgConflict,
        EventId::EPageRequest,
        EventId::FVmsFetch,
    ];

    /// The spec's name.
    pub const fn name(self) -> &'static str {
        match self {
            EventId::FUut => "F_UUT",
            EventId::CBadStreamid => "C_BAD_STREAMID",
            EventId::FSteFetch => "F_STE_FETCH",
            EventId::CBadSte => "C_BAD_STE",
            EventId::FBadAtsTreq => "F_BAD_ATS_TREQ",
            EventId::FStreamDisabled => "F_STREAM_DISABLED",
            EventId::FTranslForbidden => "F_TRANSL_FORBIDDEN",
            EventId::CBadSubstreamid => "C_BAD_SUBSTREAMID",
            EventId::FCdFetch => "F_CD_FETCH",
            EventId::CBadCd => "C_BAD_CD",
            EventId::FWalkEabt => "F_WALK_EABT",
            EventId::FTranslation => "F_TRANSLATION",
            EventId::FAddrSize => "F_ADDR_SIZE",
            EventId::FAccess => "F_ACCESS",
            EventId::FPermission => "F_PERMISSION",
            EventId::FTlbConflict => "F_TLB_CONFLICT",
            EventId::FCfgConflict => "F_CFG_CONFLICT",
            EventId::EPageRequest => "E_PAGE_REQUEST",
            EventId::FVmsFetch => "F_VMS_FETCH",
        }
    }

    /// The event number.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Whether the record has Stall and STAG, so that the transaction may be stalled (§7.3.21:
    /// F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION).
    pub const fn can_stall(self) -> bool {
        matches!(
            self,
            EventId::FTranslation | EventId::FAddrSize | EventId::FAccess | EventId::FPermission
        )
    }

    /// The fields of this event's record besides the event number, in bit order. Complete
    /// except for the fields the module documentation lists as not declared.
    #[rustfmt::skip] // one event per line reads better than one field per line
    pub const fn layout(self) -> &'static [NamedField] {
        use layout::*;
        match self {
            EventId::FUut => &[F_SSV, F_SSID, F_SID, F_REASON, F_PNU, F_IND, F_RNW, F_INPUTADDR],
            EventId::CBadStreamid | EventId::CBadSte | EventId::CBadCd | EventId::FBadAtsTreq => {
                &[F_SSV, F_SSID, F_SID]
            }
            EventId::FSteFetch | EventId::FCdFetch | EventId::FVmsFetch => {
                &[F_SSV, F_SSID, F_SID, F_REASON, F_GPCF, F_FETCHADDR]
            }
            EventId::FStreamDisabled => &[F_SID],
            EventId::FTranslForbidden => &[F_SID, F_RNW, F_INPUTADDR],
            EventId::CBadSubstreamid => &[F_SSID, F_SID],
            EventId::FWalkEabt => &[
                F_SSV, F_SSID, F_SID, F_REASON, F_GPCF, F_PNU, F_IND, F_RNW, F_S2, F_CLASS,
                F_INPUTADDR, F_FETCHADDR,
            ],
            EventId::FTranslation | EventId::FAddrSize | EventId::FAccess => &[
                F_SSV, F_SSID, F_SID, F_STAG, F_STALL, F_PNU, F_IND, F_RNW, F_NSIPA, F_S2, F_CLASS,
                F_INPUTADDR, F_IPA,
            ],
            EventId::FPermission => &[
                F_SSV, F_SSID, F_SID, F_STAG, F_STALL, F_PNU, F_IND, F_RNW, F_NSIPA, F_S2, F_CLASS,
                F_TTRNW, F_INPUTADDR, F_IPA,
            ],
            EventId::FTlbConflict => {
                &[F_SSV, F_SSID, F_SID, F_PNU, F_IND, F_RNW, F_NSIPA, F_S2, F_INPUTADDR, F_IPA]
            }
            EventId::FCfgConflict => &[F_SSV, F_SSID, F_SID, F_CONFLICT_REASON],
            EventId::EPageRequest => &[
                F_SSV, F_SSID, F_SID, F_UX, F_UW, F_UR, F_PX, F_PW, F_PR, F_SPAN, F_PAGE_INPUTADDR,
            ],
        }
    }
}

impl TryFrom<u8> for EventId {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        EventId::ALL.into_iter().find(|id| id.code() == raw).ok_or(Reserved(u64::from(raw)))
    }
}

impl From<EventId> for u8 {
    fn from(id: EventId) -> u8 {
        id.code()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The named fields the event layouts are made of.
mod layout {
    use super::*;

    pub const F_SSV: NamedField = NamedField::value("SSV", EventRecord::SSV);
    pub const F_SSID: NamedField = NamedField::value("SubstreamID", EventRecord::SUBSTREAMID);
    pub const F_SID: NamedField = NamedField::value("StreamID", EventRecord::STREAMID);
    pub const F_STAG: NamedField = NamedField::value("STAG", EventRecord::STAG);
    pub const F_REASON: NamedField = NamedField::value("Reason", EventRecord::REASON);
    pub const F_GPCF: NamedField = NamedField::value("GPCF", EventRecord::GPCF);
    pub const F_STALL: NamedField = NamedField::value("Stall", EventRecord::STALL);
    pub const F_CONFLICT_REASON: NamedField =
        NamedField::value("Reason", EventRecord::CONFLICT_REASON);
    pub const F_PNU: NamedField = NamedField::value("PnU", EventRecord::PNU);
    pub const F_IND: NamedField = NamedField::value("InD", EventRecord::IND);
    pub const F_RNW: NamedField = NamedField::value("RnW", EventRecord::RNW);
    pub const F_NSIPA: NamedField = NamedField::value("NSIPA", EventRecord::NSIPA);
    pub const F_S2: NamedField = NamedField::value("S2", EventRecord::S2);
    pub const F_CLASS: NamedField = NamedField::value("CLASS", EventRecord::CLASS);
    pub const F_TTRNW: NamedField = NamedField::value("TTRnW", EventRecord::TTRNW);
    pub const F_UX: NamedField = NamedField::value("uX", EventRecord::UX);
    pub const F_UW: NamedField = NamedField::value("uW", EventRecord::UW);
    pub const F_UR: NamedField = NamedField::value("uR", EventRecord::UR);
    pub const F_PX: NamedField = NamedField::value("pX", EventRecord::PX);
    pub const F_PW: NamedField = NamedField::value("pW", EventRecord::PW);
    pub const F_PR: NamedField = NamedField::value("pR", EventRecord::PR);
    pub const F_SPAN: NamedField = NamedField::value("Span", EventRecord::SPAN);
    pub const F_INPUTADDR: NamedField = NamedField::value("InputAddr", EventRecord::INPUTADDR);
    pub const F_PAGE_INPUTADDR: NamedField = NamedField::address("InputAddr", PAGE_INPUTADDR);
    pub const F_IPA: NamedField = NamedField::address("IPA", EventRecord::IPA);
    pub const F_FETCHADDR: NamedField = NamedField::address("FetchAddr", EventRecord::FETCHADDR);
}

/// CLASS (§7.3): which access of the transaction faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Class {
    /// 0b00 CD: the CD fetch.
    Cd = 0b00,
    /// 0b01 TTD: a stage 1 translation table fetch.
    Tt = 0b01,
    /// 0b10 IN: the input address.
    In = 0b10,
}

impl TryFrom<u8> for Class {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0b00 => Ok(Class::Cd),
            0b01 => Ok(Class::Tt),
            0b10 => Ok(Class::In),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

/// IHI 0070 G.b §7.3 event record: 32 bytes, four little-endian words. The accessors read any field
/// regardless of the event; which ones an event has is [`EventId::layout`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct EventRecord(pub [u64; 4]);

bitfields! {
    impl EventRecord {
        /// The event number.
        ///
        /// The event number; see [`EventRecord::id`].
        EVENT "Event number" = bits(7, 0) => id_raw, set_id_raw: u8;
        /// SSV: the transaction had a SubstreamID.
        SSV = bit(11) => ssv, set_ssv: bool;
        /// SubstreamID (valid when SSV == 1, or always in C_BAD_SUBSTREAMID).
        SUBSTREAMID "SubstreamID" = bits(31, 12) => ssid, set_ssid: u32;
        /// StreamID.
        STREAMID "StreamID" = bits(63, 32) => sid, set_sid: u32;
        /// STAG: the token CMD_RESUME uses to find a stalled transaction.
        ///
        /// STAG (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION).
        STAG = bits(79, 64) => stag, set_stag: u16;
        /// IMPLEMENTATION DEFINED Reason of F_UUT, F_STE_FETCH, F_CD_FETCH, F_WALK_EABT,
        /// F_VMS_FETCH.
        ///
        /// Reason `[79:64]` (F_UUT and the fetch aborts); same bits as STAG.
        REASON "Reason" = bits(79, 64) => reason, set_reason: u16;
        /// GPCF: the fetch abort arose from a Granule Protection Check fault.
        GPCF = bit(80) => gpcf, set_gpcf: bool;
        /// Stall: the transaction is stalled, waiting for CMD_RESUME or CMD_STALL_TERM.
        STALL "Stall" = bit(95) => stall, set_stall: bool;
        /// IMPLEMENTATION DEFINED Reason of F_CFG_CONFLICT.
        ///
        /// Reason `[95:64]` of F_CFG_CONFLICT.
        CONFLICT_REASON "Reason (F_CFG_CONFLICT)" = bits(95, 64)
            => conflict_reason, set_conflict_reason: u32;
        /// PnU: privileged (1) or unprivileged.
        PNU "PnU" = bit(97) => pnu, set_pnu: bool;
        /// InD: instruction (1) or data.
        IND "InD" = bit(98) => ind, set_ind: bool;
        /// RnW: read (1) or write.
        RNW "RnW" = bit(99) => rnw, set_rnw: bool;
        /// NSIPA: the IPA is Non-secure (Secure Event queue, stage 2 faults only).
        NSIPA = bit(100) => nsipa, set_nsipa: bool;
        /// S2: the fault happened at stage 2.
        S2 = bit(103) => s2, set_s2: bool;
        /// CLASS of the access that faulted, see [`Class`].
        ///
        /// CLASS raw bits; see [`EventRecord::class`].
        CLASS = bits(105, 104) => class_raw, set_class_raw: u8;
        /// TTRnW (F_PERMISSION with CLASS == TT): the stage 1 walk access was a read (1) or a
        /// write.
        TTRNW "TTRnW" = bit(108) => ttrnw, set_ttrnw: bool;
        /// E_PAGE_REQUEST: unprivileged execute anticipated.
        UX "uX" = bit(97) => ux, set_ux: bool;
        /// E_PAGE_REQUEST: unprivileged write anticipated.
        UW "uW" = bit(98) => uw, set_uw: bool;
        /// E_PAGE_REQUEST: unprivileged read anticipated.
        UR "uR" = bit(99) => ur, set_ur: bool;
        /// E_PAGE_REQUEST: privileged execute anticipated.
        PX "pX" = bit(101) => px, set_px: bool;
        /// E_PAGE_REQUEST: privileged write anticipated.
        PW "pW" = bit(102) => pw, set_pw: bool;
        /// E_PAGE_REQUEST: privileged read anticipated.
        PR "pR" = bit(103) => pr, set_pr: bool;
        /// E_PAGE_REQUEST: the span is Span * 4096 bytes (position unchecked, see module docs).
        ///
        /// E_PAGE_REQUEST Span (in 4KB units).
        SPAN "Span" = bits(115, 108) => span, set_span: u8;
        /// InputAddr: the 64-bit address the transaction presented.
        INPUTADDR "InputAddr" = bits(191, 128) => input_addr, set_input_addr: u64;
        /// IPA bits `[55:12]` in place (stage 2 faults).
        ///
        /// IPA (stage 2 faults).
        IPA = bits(247, 204) => ipa, set_ipa: addr;
        /// FetchAddr bits `[55:3]` in place: the structure or descriptor whose fetch aborted.
        ///
        /// FetchAddr (F_STE_FETCH, F_CD_FETCH, F_WALK_EABT, F_VMS_FETCH).
        FETCHADDR "FetchAddr" = bits(247, 195) => fetch_addr, set_fetch_addr: addr;
    }
}

bitfields!(words EventRecord, 4);

impl EventRecord {
    /// A record of the given event with every other field zero.
    pub fn new(id: EventId) -> Self {
        let mut rec = Self::default();
        rec.set_id_raw(id.code());
        rec
    }

    /// The event; IMPLEMENTATION DEFINED and Reserved numbers are `Err`.
    pub fn id(&self) -> Result<EventId, Reserved> {
        EventId::try_from(self.id_raw())
    }

    /// CLASS decoded; 0b11 is Reserved.
    pub fn class(&self) -> Result<Class, Reserved> {
        Class::try_from(self.class_raw())
    }

    /// Sets CLASS.
    pub fn set_class(&mut self, class: Class) {
        self.set_class_raw(class as u8);
    }
}

impl fmt::Debug for EventRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(id) = self.id() else {
            return write!(f, "EventRecord(event {:#04x}, {:#018x?})", self.id_raw(), self.0);
        };
        let mut s = f.debug_struct(id.name());
        debug_fields(&mut s, &self.0, id.layout().iter(), &[]);
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::test_support::*;

    #[test]
    fn numbers_decode_only_to_themselves() {
        for raw in 0u8..=255 {
            match EventId::try_from(raw) {
                Ok(id) => assert_eq!(u8::from(id), raw),
                Err(r) => assert_eq!(r, Reserved(u64::from(raw))),
            }
        }
        assert!(EventId::ALL.windows(2).all(|w| matches!(w, [a, b] if a < b)));
        assert!((0xe0..=0xef).all(|n| EventId::try_from(n).is_err()));
    }

    #[test]
    fn layouts_are_disjoint_and_leave_the_number_alone() {
        assert_widths(EventRecord::FIELDS);
        for id in EventId::ALL {
            let layout = id.layout();
            for (i, a) in layout.iter().enumerate() {
                assert!(
                    a.field.word != 0
                        || a.field.field.mask() & EventRecord::EVENT.field.mask() == 0
                );
                for b in layout.iter().skip(i + 1) {
                    assert!(
                        a.field.word != b.field.word
                            || a.field.field.mask() & b.field.field.mask() == 0,
                        "{id}: {} overlaps {}",
                        a.name,
                        b.name
                    );
                }
            }
            assert_eq!(id.can_stall(), layout.iter().any(|nf| nf.name == "Stall"), "{id}");
        }
    }

    proptest! {
        #[test]
        fn every_event_accessor_round_trips(words in any::<[u64; 4]>(), value in any::<u64>()) {
            assert_round_trip(EventRecord::FIELDS, EventRecord(words), |e| e.0, value);
        }

        #[test]
        fn decoding_never_panics(words in any::<[u64; 4]>()) {
            let e = EventRecord(words);
            let _ = (e.id(), e.class());
            let _ = format!("{e:?}");
        }
    }
}

//! Commands: §4 of IHI 0070 G.b (the 16-byte Command queue entry, its opcodes and fields) and
//! the §7.1 CERROR codes a malformed or unreadable command leaves in SMMU_CMDQ_CONS.ERR.
//!
//! Every command starts with an 8-bit opcode (§4.1.1). Which of the other fields a command has
//! depends on the opcode, so the field positions are declared once here and each opcode lists
//! the ones it uses ([`Opcode::layout`]); bits outside that list are RES0 (§4.1.5) and an
//! implementation may report a command that sets them as CERROR_ILL ([`Command::res0_set`]).
//!
//! In our copy of G.b the per-command figures are images, so positions were taken from the
//! field tables that survive as text (§4.4.1.1 for NUM, SCALE, TTL128, TTL, TG; the
//! CMD_TLBI_NH_ASID figure for VMID and ASID; §4.1.6 for the address forms) and otherwise from
//! the figures as widely implemented. Two positions could not be checked against G.b text:
//! CMD_PREFETCH_ADDR.Stride `[73:69]` and CMD_CFGI_VMS_PIDM.VMID `[47:32]`; and three fields are
//! not declared at all because only Secure or Realm queues use them (CMD_PREFETCH_ADDR.NS,
//! CMD_TLBI_S_S2_IPA.NS, CMD_SYNC.MSI_NS) or their layout is unknown here (CMD_DPTI_PA).

use std::fmt;

use sviommu_memory::bits::bitfields;

use super::{debug_fields, Granule, NamedField, Reserved};

/// Bytes in a command.
pub const CMD_BYTES: u64 = 16;

/// §4.1.1 command opcodes. Every opcode G.b assigns is here; the others (and the
/// IMPLEMENTATION DEFINED range 0x80..=0x8F, which this model does not implement) decode as
/// `Err(Reserved)`, which the Command queue reports as CERROR_ILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Opcode {
    /// CMD_PREFETCH_CONFIG (§4.2.1).
    PrefetchConfig = 0x01,
    /// CMD_PREFETCH_ADDR (§4.2.2).
    PrefetchAddr = 0x02,
    /// CMD_CFGI_STE (§4.3.1).
    CfgiSte = 0x03,
    /// CMD_CFGI_STE_RANGE (§4.3.2); with Range == 31 it is CMD_CFGI_ALL (§4.3.6).
    CfgiSteRange = 0x04,
    /// CMD_CFGI_CD (§4.3.3).
    CfgiCd = 0x05,
    /// CMD_CFGI_CD_ALL (§4.3.4).
    CfgiCdAll = 0x06,
    /// CMD_CFGI_VMS_PIDM (§4.3.5).
    CfgiVmsPidm = 0x07,
    /// CMD_TLBI_NH_ALL (§4.4.2.1).
    TlbiNhAll = 0x10,
    /// CMD_TLBI_NH_ASID (§4.4.2.2).
    TlbiNhAsid = 0x11,
    /// CMD_TLBI_NH_VA (§4.4.2.4).
    TlbiNhVa = 0x12,
    /// CMD_TLBI_NH_VAA (§4.4.2.3).
    TlbiNhVaa = 0x13,
    /// CMD_TLBI_EL3_ALL (§4.4.2.5).
    TlbiEl3All = 0x18,
    /// CMD_TLBI_EL3_VA (§4.4.2.6).
    TlbiEl3Va = 0x1a,
    /// CMD_TLBI_EL2_ALL (§4.4.2.7).
    TlbiEl2All = 0x20,
    /// CMD_TLBI_EL2_ASID (§4.4.2.10).
    TlbiEl2Asid = 0x21,
    /// CMD_TLBI_EL2_VA (§4.4.2.8).
    TlbiEl2Va = 0x22,
    /// CMD_TLBI_EL2_VAA (§4.4.2.9).
    TlbiEl2Vaa = 0x23,
    /// CMD_TLBI_S12_VMALL (§4.4.3.2).
    TlbiS12Vmall = 0x28,
    /// CMD_TLBI_S2_IPA (§4.4.3.1).
    TlbiS2Ipa = 0x2a,
    /// CMD_TLBI_NSNH_ALL (§4.4.4.1).
    TlbiNsnhAll = 0x30,
    /// CMD_ATC_INV (§4.5.1).
    AtcInv = 0x40,
    /// CMD_PRI_RESP (§4.5.2).
    PriResp = 0x41,
    /// CMD_RESUME (§4.7.1).
    Resume = 0x44,
    /// CMD_STALL_TERM (§4.7.2).
    StallTerm = 0x45,
    /// CMD_SYNC (§4.7.3).
    Sync = 0x46,
    /// CMD_TLBI_S_EL2_ALL (§4.4.2.11), Secure queue only.
    TlbiSEl2All = 0x50,
    /// CMD_TLBI_S_EL2_ASID (§4.4.2.14), Secure queue only.
    TlbiSEl2Asid = 0x51,
    /// CMD_TLBI_S_EL2_VA (§4.4.2.12), Secure queue only.
    TlbiSEl2Va = 0x52,
    /// CMD_TLBI_S_EL2_VAA (§4.4.2.13), Secure queue only.
    TlbiSEl2Vaa = 0x53,
    /// CMD_TLBI_S_S12_VMALL (§4.4.3.4), Secure queue only.
    TlbiSS12Vmall = 0x58,
    /// CMD_TLBI_S_S2_IPA (§4.4.3.3), Secure queue only.
    TlbiSS2Ipa = 0x5a,
    /// CMD_TLBI_SNH_ALL (§4.4.4.2), Secure queue only.
    TlbiSnhAll = 0x60,
    /// CMD_DPTI_ALL (§4.6.1).
    DptiAll = 0x70,
    /// CMD_DPTI_PA (§4.6.2).
    DptiPa = 0x73,
}

impl Opcode {
    /// Every opcode, in numeric order.
    pub const ALL: [Opcode; 34] = [
        Opcode::PrefetchConfig,
        Opcode::PrefetchAddr,
        Opcode::CfgiSte,
        Opcode::CfgiSteRange,
        Opcode::CfgiCd,
        Opcode::CfgiCdAll,
        Opcode::CfgiVmsPidm,
        Opcode::TlbiNhAll,
        Opcode::TlbiNhAsid,
        Opcode::TlbiNhVa,
        Opcode::TlbiNhVaa,
        Opcode::TlbiEl3All,
        Opcode::TlbiEl3Va,
        Opcode::TlbiEl2All,
        Opcode::TlbiEl2Asid,
        Opcode::TlbiEl2Va,
        Opcode::TlbiEl2Vaa,
        Opcode::TlbiS12Vmall,
        Opcode::TlbiS2Ipa,
        Opcode::TlbiNsnhAll,
        Opcode::AtcInv,
        Opcode::PriResp,
        Opcode::Resume,
        Opcode::StallTerm,
        Opcode::Sync,
        Opcode::TlbiSEl2All,
        Opcode::TlbiSEl2Asid,
        Opcode::TlbiSEl2Va,
        Opcode::TlbiSEl2Vaa,
        Opcode::TlbiSS12Vmall,
        Opcode::TlbiSS2Ipa,
        Opcode::TlbiSnhAll,
        Opcode::DptiAll,
        Opcode::DptiPa,
    ];

    /// The spec's name (`CMD_CFGI_STE_RANGE`; see [`Command::name`] for CMD_CFGI_ALL).
    pub const fn name(self) -> &'static str {
        match self {
            Opcode::PrefetchConfig => "CMD_PREFETCH_CONFIG",
            Opcode::PrefetchAddr => "CMD_PREFETCH_ADDR",
            Opcode::CfgiSte => "CMD_CFGI_STE",
            Opcode::CfgiSteRange => "CMD_CFGI_STE_RANGE",
            Opcode::CfgiCd => "CMD_CFGI_CD",
            Opcode::CfgiCdAll => "CMD_CFGI_CD_ALL",
            Opcode::CfgiVmsPidm => "CMD_CFGI_VMS_PIDM",
            Opcode::TlbiNhAll => "CMD_TLBI_NH_ALL",
            Opcode::TlbiNhAsid => "CMD_TLBI_NH_ASID",
            Opcode::TlbiNhVa => "CMD_TLBI_NH_VA",
            Opcode::TlbiNhVaa => "CMD_TLBI_NH_VAA",
            Opcode::TlbiEl3All => "CMD_TLBI_EL3_ALL",
            Opcode::TlbiEl3Va => "CMD_TLBI_EL3_VA",
            Opcode::TlbiEl2All => "CMD_TLBI_EL2_ALL",
            Opcode::TlbiEl2Asid => "CMD_TLBI_EL2_ASID",
            Opcode::TlbiEl2Va => "CMD_TLBI_EL2_VA",
            Opcode::TlbiEl2Vaa => "CMD_TLBI_EL2_VAA",
            Opcode::TlbiS12Vmall => "CMD_TLBI_S12_VMALL",
            Opcode::TlbiS2Ipa => "CMD_TLBI_S2_IPA",
            Opcode::TlbiNsnhAll => "CMD_TLBI_NSNH_ALL",
            Opcode::AtcInv => "CMD_ATC_INV",
            Opcode::PriResp => "CMD_PRI_RESP",
            Opcode::Resume => "CMD_RESUME",
            Opcode::StallTerm => "CMD_STALL_TERM",
            Opcode::Sync => "CMD_SYNC",
            Opcode::TlbiSEl2All => "CMD_TLBI_S_EL2_ALL",
            Opcode::TlbiSEl2Asid => "CMD_TLBI_S_EL2_ASID",
            Opcode::TlbiSEl2Va => "CMD_TLBI_S_EL2_VA",
            Opcode::TlbiSEl2Vaa => "CMD_TLBI_S_EL2_VAA",
            Opcode::TlbiSS12Vmall => "CMD_TLBI_S_S12_VMALL",
            Opcode::TlbiSS2Ipa => "CMD_TLBI_S_S2_IPA",
            Opcode::TlbiSnhAll => "CMD_TLBI_SNH_ALL",
            Opcode::DptiAll => "CMD_DPTI_ALL",
            Opcode::DptiPa => "CMD_DPTI_PA",
        }
    }

    /// The fields this command has besides the opcode, in bit order; `None` where this module
    /// does not know the whole layout (CMD_TLBI_S_S2_IPA's NS bit, CMD_DPTI_PA).
    pub const fn layout(self) -> Option<&'static [NamedField]> {
        use layout::*;
        Some(match self {
            Opcode::PrefetchConfig => &[F_SSEC, F_SSV, F_SSID, F_SID],
            Opcode::PrefetchAddr => &[F_SSEC, F_SSV, F_SSID, F_SID, F_SIZE, F_STRIDE, F_ADDR],
            Opcode::CfgiSte => &[F_SSEC, F_SID, F_LEAF],
            Opcode::CfgiSteRange => &[F_SSEC, F_SID, F_RANGE],
            Opcode::CfgiCd => &[F_SSEC, F_SSID, F_SID, F_LEAF],
            Opcode::CfgiCdAll | Opcode::StallTerm => &[F_SSEC, F_SID],
            Opcode::CfgiVmsPidm => &[F_SSEC, F_VMID],
            Opcode::TlbiNhAll | Opcode::TlbiS12Vmall | Opcode::TlbiSS12Vmall => &[F_VMID],
            Opcode::TlbiNhAsid => &[F_VMID, F_ASID],
            Opcode::TlbiNhVa => {
                &[F_NUM, F_SCALE, F_VMID, F_ASID, F_LEAF, F_TTL128, F_TTL, F_TG, F_ADDRESS]
            }
            Opcode::TlbiNhVaa => {
                &[F_NUM, F_SCALE, F_VMID, F_LEAF, F_TTL128, F_TTL, F_TG, F_ADDRESS]
            }
            Opcode::TlbiEl3All
            | Opcode::TlbiEl2All
            | Opcode::TlbiNsnhAll
            | Opcode::TlbiSEl2All
            | Opcode::TlbiSnhAll
            | Opcode::DptiAll => &[],
            Opcode::TlbiEl3Va | Opcode::TlbiEl2Vaa | Opcode::TlbiSEl2Vaa => {
                &[F_NUM, F_SCALE, F_LEAF, F_TTL128, F_TTL, F_TG, F_ADDRESS]
            }
            Opcode::TlbiEl2Asid | Opcode::TlbiSEl2Asid => &[F_ASID],
            Opcode::TlbiEl2Va | Opcode::TlbiSEl2Va => {
                &[F_NUM, F_SCALE, F_ASID, F_LEAF, F_TTL128, F_TTL, F_TG, F_ADDRESS]
            }
            Opcode::TlbiS2Ipa => &[F_NUM, F_SCALE, F_VMID, F_LEAF, F_TTL128, F_TTL, F_TG, F_IPA],
            Opcode::AtcInv => &[F_GLOBAL, F_SSV, F_SSID, F_SID, F_ATC_SIZE, F_ADDRESS],
            Opcode::PriResp => &[F_SSV, F_SSID, F_SID, F_PRGINDEX, F_RESP],
            Opcode::Resume => &[F_SSEC, F_AC, F_AB, F_SID, F_STAG],
            Opcode::Sync => &[F_CS, F_MSH, F_MSIATTR, F_MSIDATA, F_MSIADDRESS],
            Opcode::TlbiSS2Ipa | Opcode::DptiPa => return None,
        })
    }
}

impl TryFrom<u8> for Opcode {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        Opcode::ALL.into_iter().find(|op| *op as u8 == raw).ok_or(Reserved(u64::from(raw)))
    }
}

/// The named fields the opcode layouts are made of.
mod layout {
    use super::*;

    pub const F_SSEC: NamedField = NamedField::value("SSec", Command::SSEC);
    pub const F_SSV: NamedField = NamedField::value("SSV", Command::SSV);
    pub const F_SSID: NamedField = NamedField::value("SubstreamID", Command::SUBSTREAMID);
    pub const F_SID: NamedField = NamedField::value("StreamID", Command::STREAMID);
    pub const F_NUM: NamedField = NamedField::value("NUM", Command::NUM);
    pub const F_SCALE: NamedField = NamedField::value("SCALE", Command::SCALE);
    pub const F_VMID: NamedField = NamedField::value("VMID", Command::VMID);
    pub const F_ASID: NamedField = NamedField::value("ASID", Command::ASID);
    pub const F_LEAF: NamedField = NamedField::value("Leaf", Command::LEAF);
    pub const F_TTL128: NamedField = NamedField::value("TTL128", Command::TTL128);
    pub const F_TTL: NamedField = NamedField::value("TTL", Command::TTL);
    pub const F_TG: NamedField = NamedField::value("TG", Command::TG);
    pub const F_ADDRESS: NamedField = NamedField::address("Address", Command::ADDRESS);
    pub const F_ADDR: NamedField = NamedField::address("Addr", Command::ADDRESS);
    pub const F_IPA: NamedField = NamedField::address("Address", Command::IPA);
    pub const F_RANGE: NamedField = NamedField::value("Range", Command::RANGE);
    pub const F_SIZE: NamedField = NamedField::value("Size", Command::PREFETCH_SIZE);
    pub const F_STRIDE: NamedField = NamedField::value("Stride", Command::PREFETCH_STRIDE);
    pub const F_GLOBAL: NamedField = NamedField::value("Global", Command::GLOBAL);
    pub const F_ATC_SIZE: NamedField = NamedField::value("Size", Command::ATC_SIZE);
    pub const F_PRGINDEX: NamedField = NamedField::value("PRGIndex", Command::PRGINDEX);
    pub const F_RESP: NamedField = NamedField::value("Resp", Command::RESP);
    pub const F_AC: NamedField = NamedField::value("Ac", Command::AC);
    pub const F_AB: NamedField = NamedField::value("Ab", Command::AB);
    pub const F_STAG: NamedField = NamedField::value("STAG", Command::STAG);
    pub const F_CS: NamedField = NamedField::value("CS", Command::CS);
    pub const F_MSH: NamedField = NamedField::value("MSH", Command::MSH);
    pub const F_MSIATTR: NamedField = NamedField::value("MSIAttr", Command::MSIATTR);
    pub const F_MSIDATA: NamedField = NamedField::value("MSIData", Command::MSIDATA);
    pub const F_MSIADDRESS: NamedField = NamedField::address("MSIAddress", Command::MSIADDRESS);
}

/// One Command queue entry (IHI 0070 G.b §4.1.1): 16 bytes, two little-endian words. The accessors
/// read any field regardless of the opcode; which ones a command has is [`Opcode::layout`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Command(pub [u64; 2]);

bitfields! {
    impl Command {
        /// Command opcode.
        ///
        /// The opcode byte; see [`Command::opcode`].
        OPCODE "Opcode" = bits(7, 0) => opcode_raw, set_opcode_raw: u8;
        /// SSec: the StreamID is Secure (only on the Secure Command queue).
        SSEC "SSec" = bit(10) => ssec, set_ssec: bool;
        /// SSV: SubstreamID is supplied.
        SSV = bit(11) => ssv, set_ssv: bool;
        /// SubstreamID.
        SUBSTREAMID "SubstreamID" = bits(31, 12) => ssid, set_ssid: u32;
        /// StreamID.
        STREAMID "StreamID" = bits(63, 32) => sid, set_sid: u32;
        /// Range invalidation: granule multiplier NUM (§4.4.1.1).
        NUM = bits(16, 12) => num, set_num: u8;
        /// Range invalidation: SCALE; bit 25 only with SMMU_IDR5.DS (§4.4.1.1).
        SCALE = bits(25, 20) => scale, set_scale: u8;
        /// VMID of TLB invalidations.
        VMID = bits(47, 32) => vmid, set_vmid: u16;
        /// ASID of TLB invalidations.
        ASID = bits(63, 48) => asid, set_asid: u16;
        /// Leaf: only last-level entries (TLBI), or not the intermediate descriptors (CFGI).
        LEAF "Leaf" = bit(64) => leaf, set_leaf: bool;
        /// TTL128: the TTL hint is for 128-bit descriptors (§4.4.1.1).
        TTL128 = bit(71) => ttl128, set_ttl128: bool;
        /// TTL: level hint of the leaf entries (§4.4.1.1).
        TTL = bits(73, 72) => ttl, set_ttl: u8;
        /// TG: granule of the entries to invalidate, 0b00 any (§4.4.1.1).
        ///
        /// TG raw bits; see [`Command::tg`].
        TG = bits(75, 74) => tg_raw, set_tg_raw: u8;
        /// Virtual address parameter, `Address[63:12]` in place (§4.1.6): the virtual address
        /// parameter (`Address[63:12]`).
        ADDRESS "Address" = bits(127, 76) => address, set_address: addr;
        /// Physical or IPA address parameter, `Address[55:12]` in place (§4.1.6).
        ///
        /// The IPA or PA address parameter (`Address[55:12]`) of CMD_TLBI_S2_IPA.
        IPA "Address[55:12]" = bits(119, 76) => ipa, set_ipa: addr;
        /// CMD_CFGI_STE_RANGE: invalidate 2^(Range+1) StreamIDs; 31 is CMD_CFGI_ALL.
        RANGE "Range" = bits(68, 64) => range, set_range: u8;
        /// CMD_PREFETCH_ADDR: prefetch 2^Size translations.
        PREFETCH_SIZE "Size (prefetch)" = bits(68, 64) => prefetch_size, set_prefetch_size: u8;
        /// CMD_PREFETCH_ADDR: prefetch stride 2^(12+Stride) bytes (position not checked against G.b
        /// text, see the module documentation).
        PREFETCH_STRIDE "Stride" = bits(73, 69) => prefetch_stride, set_prefetch_stride: u8;
        /// CMD_ATC_INV: Global invalidate flag (with SSV == 1).
        GLOBAL "Global" = bit(9) => global, set_global: bool;
        /// CMD_ATC_INV: span of 4096 * 2^Size bytes; 52 means everything.
        ATC_SIZE "Size (ATC)" = bits(69, 64) => atc_size, set_atc_size: u8;
        /// CMD_PRI_RESP: Page Request Group index.
        PRGINDEX "PRGIndex" = bits(72, 64) => prgindex, set_prgindex: u16;
        /// CMD_PRI_RESP: response, see [`PriResp`].
        ///
        /// CMD_PRI_RESP Resp raw bits; see [`Command::resp`].
        RESP "Resp" = bits(77, 76) => resp_raw, set_resp_raw: u8;
        /// CMD_RESUME: Action, 1 retry, 0 terminate (see [`ResumeAction`]).
        AC "Ac" = bit(12) => ac, set_ac: bool;
        /// CMD_RESUME: Abort, for a terminate: 1 abort, 0 RAZ/WI.
        AB "Ab" = bit(13) => ab, set_ab: bool;
        /// CMD_RESUME: the stall tag from the event record.
        STAG = bits(79, 64) => stag, set_stag: u16;
        /// CMD_SYNC: ComplSignal, see [`SyncCs`].
        ///
        /// CMD_SYNC CS raw bits; see [`Command::cs`].
        CS = bits(13, 12) => cs_raw, set_cs_raw: u8;
        /// CMD_SYNC: shareability of the MSI write.
        MSH = bits(23, 22) => msh, set_msh: u8;
        /// CMD_SYNC: memory attributes of the MSI write (STE.MemAttr encoding).
        MSIATTR "MSIAttr" = bits(27, 24) => msiattr, set_msiattr: u8;
        /// CMD_SYNC: the 32-bit MSI payload.
        MSIDATA "MSIData" = bits(63, 32) => msidata, set_msidata: u32;
        /// CMD_SYNC: MSI address bits `[55:2]` in place; 0 means no MSI.
        MSIADDRESS "MSIAddress" = bits(119, 66) => msiaddress, set_msiaddress: addr;
    }
}

bitfields!(words Command, 2);

impl Command {
    /// A command with the given opcode and every other field zero.
    pub fn new(opcode: Opcode) -> Self {
        let mut cmd = Self::default();
        cmd.set_opcode_raw(opcode as u8);
        cmd
    }

    /// CMD_CFGI_ALL: CMD_CFGI_STE_RANGE with Range == 31 (§4.3.6).
    pub fn cfgi_all() -> Self {
        let mut cmd = Self::new(Opcode::CfgiSteRange);
        cmd.set_range(31);
        cmd
    }

    /// The opcode; a Reserved or IMPLEMENTATION DEFINED opcode is CERROR_ILL.
    pub fn opcode(&self) -> Result<Opcode, Reserved> {
        Opcode::try_from(self.opcode_raw())
    }

    /// Whether this is CMD_CFGI_ALL (CMD_CFGI_STE_RANGE with Range == 31).
    pub fn is_cfgi_all(&self) -> bool {
        self.opcode() == Ok(Opcode::CfgiSteRange) && self.range() == 31
    }

    /// The command's spec name, telling CMD_CFGI_ALL from CMD_CFGI_STE_RANGE; `None` for a
    /// Reserved opcode.
    pub fn name(&self) -> Option<&'static str> {
        if self.is_cfgi_all() {
            return Some("CMD_CFGI_ALL");
        }
        self.opcode().ok().map(Opcode::name)
    }

    /// The TLBI granule: `Ok(None)` for TG == 0b00 (any granule, no range, no TTL hint).
    pub fn tg(&self) -> Result<Option<Granule>, Reserved> {
        Granule::from_tlbi_tg(u64::from(self.tg_raw()))
    }

    /// Sets TG; `None` is 0b00.
    pub fn set_tg(&mut self, granule: Option<Granule>) {
        self.set_tg_raw(granule.map_or(0, Granule::tlbi_tg));
    }

    /// CMD_PRI_RESP Resp decoded; 0b11 is Reserved (ILLEGAL, so CERROR_ILL).
    pub fn resp(&self) -> Result<PriResp, Reserved> {
        PriResp::try_from(self.resp_raw())
    }

    /// Sets CMD_PRI_RESP Resp.
    pub fn set_resp(&mut self, resp: PriResp) {
        self.set_resp_raw(resp as u8);
    }

    /// CMD_RESUME Ac and Ab decoded.
    pub fn resume_action(&self) -> ResumeAction {
        ResumeAction::from_bits(self.ac(), self.ab())
    }

    /// Sets CMD_RESUME Ac and Ab.
    pub fn set_resume_action(&mut self, action: ResumeAction) {
        let (ac, ab) = action.bits();
        self.set_ac(ac);
        self.set_ab(ab);
    }

    /// CMD_SYNC CS decoded; 0b11 is Reserved (CERROR_ILL).
    pub fn cs(&self) -> Result<SyncCs, Reserved> {
        SyncCs::try_from(self.cs_raw())
    }

    /// Sets CMD_SYNC CS.
    pub fn set_cs(&mut self, cs: SyncCs) {
        self.set_cs_raw(cs as u8);
    }

    /// The bits outside the opcode and its layout that this command sets (RES0, §4.1.5): an
    /// implementation may treat a non-zero result as CERROR_ILL. `None` when the opcode is
    /// Reserved or its layout is not declared here.
    pub fn res0_set(&self) -> Option<[u64; 2]> {
        let layout = self.opcode().ok()?.layout()?;
        let mut defined = [Command::OPCODE.field.mask(), 0];
        for nf in layout {
            if let Some(w) = defined.get_mut(nf.field.word) {
                *w |= nf.field.field.mask();
            }
        }
        Some([self.0[0] & !defined[0], self.0[1] & !defined[1]])
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(op) = self.opcode() else {
            return write!(
                f,
                "Command(reserved opcode {:#04x}, {:#018x?})",
                self.opcode_raw(),
                self.0
            );
        };
        let name = self.name().unwrap_or(op.name());
        let mut s = f.debug_struct(name);
        match op.layout() {
            Some(layout) => {
                debug_fields(&mut s, &self.0, layout.iter(), &self.res0_set().unwrap_or([0; 2]));
            }
            None => {
                s.field("words", &format_args!("{:#018x?}", self.0));
            }
        }
        s.finish()
    }
}

/// §7.1 Command queue error codes, reported in SMMU_CMDQ_CONS.ERR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CError {
    /// CERROR_NONE: no error (never reported by the SMMU).
    None = 0x00,
    /// CERROR_ILL: Reserved opcode, invalid parameters, or (optionally) non-zero RES0 fields.
    Ill = 0x01,
    /// CERROR_ABT: an external abort on command fetch.
    Abt = 0x02,
    /// CERROR_ATC_INV_SYNC: a CMD_SYNC could not complete earlier CMD_ATC_INV commands (ATS
    /// invalidation completion timeout).
    AtcInvSync = 0x03,
}

impl CError {
    /// The spec's name.
    pub const fn name(self) -> &'static str {
        match self {
            CError::None => "CERROR_NONE",
            CError::Ill => "CERROR_ILL",
            CError::Abt => "CERROR_ABT",
            CError::AtcInvSync => "CERROR_ATC_INV_SYNC",
        }
    }
}

impl TryFrom<u8> for CError {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0x00 => Ok(CError::None),
            0x01 => Ok(CError::Ill),
            0x02 => Ok(CError::Abt),
            0x03 => Ok(CError::AtcInvSync),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

/// CMD_PRI_RESP Resp (§4.5.2), with the PCIe PRG Response code it sends (§8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PriResp {
    /// 0b00 ResponseFailure: a permanent, non-paging error (ATS or PRI disabled). Linux calls
    /// this PRI_RESP_DENY.
    ResponseFailure = 0b00,
    /// 0b01 InvalidRequest: one or more pages of the group could not be paged in. Linux calls
    /// this PRI_RESP_FAIL.
    InvalidRequest = 0b01,
    /// 0b10 Success: the whole group was paged in.
    Success = 0b10,
}

impl PriResp {
    /// The PRG Response Message ResponseCode sent to the endpoint (§8.3).
    pub const fn response_code(self) -> u8 {
        match self {
            PriResp::Success => 0b0000,
            PriResp::InvalidRequest => 0b0001,
            PriResp::ResponseFailure => 0b1111,
        }
    }
}

impl TryFrom<u8> for PriResp {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0b00 => Ok(PriResp::ResponseFailure),
            0b01 => Ok(PriResp::InvalidRequest),
            0b10 => Ok(PriResp::Success),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

/// What CMD_RESUME does to the stalled transaction (§4.7.1, Ac and Ab).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResumeAction {
    /// Ac == 1: retry as though the transaction had just arrived (Ab is IGNORED).
    Retry,
    /// Ac == 0, Ab == 0: terminate, completing with RAZ/WI semantics (an abort anyway if
    /// SMMU_IDR0.TERM_MODEL == 1).
    TerminateRazWi,
    /// Ac == 0, Ab == 1: terminate with an abort to the client.
    TerminateAbort,
}

impl ResumeAction {
    /// Decodes Ac and Ab.
    pub const fn from_bits(ac: bool, ab: bool) -> Self {
        match (ac, ab) {
            (true, _) => ResumeAction::Retry,
            (false, false) => ResumeAction::TerminateRazWi,
            (false, true) => ResumeAction::TerminateAbort,
        }
    }

    /// (Ac, Ab).
    pub const fn bits(self) -> (bool, bool) {
        match self {
            ResumeAction::Retry => (true, false),
            ResumeAction::TerminateRazWi => (false, false),
            ResumeAction::TerminateAbort => (false, true),
        }
    }
}

/// CMD_SYNC ComplSignal (§4.7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SyncCs {
    /// 0b00 SIG_NONE: no signal; software polls SMMU_CMDQ_CONS.
    SigNone = 0b00,
    /// 0b01 SIG_IRQ: an interrupt; an MSI of MSIData to MSIAddress when MSIAddress != 0.
    SigIrq = 0b01,
    /// 0b10 SIG_SEV: a WFE wake-up event (SIG_NONE if SMMU_IDR0.SEV == 0).
    SigSev = 0b10,
}

impl TryFrom<u8> for SyncCs {
    type Error = Reserved;

    fn try_from(raw: u8) -> Result<Self, Reserved> {
        match raw {
            0b00 => Ok(SyncCs::SigNone),
            0b01 => Ok(SyncCs::SigIrq),
            0b10 => Ok(SyncCs::SigSev),
            _ => Err(Reserved(u64::from(raw))),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::test_support::*;

    #[test]
    fn opcodes_decode_only_to_themselves() {
        for raw in 0u8..=255 {
            match Opcode::try_from(raw) {
                Ok(op) => assert_eq!(op as u8, raw),
                Err(r) => {
                    assert_eq!(r, Reserved(u64::from(raw)));
                    assert!(!Opcode::ALL.iter().any(|op| *op as u8 == raw));
                }
            }
        }
        let names: std::collections::BTreeSet<_> = Opcode::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Opcode::ALL.len());
        assert!(Opcode::ALL.windows(2).all(|w| matches!(w, [a, b] if a < b)));
    }

    #[test]
    fn layouts_are_disjoint_and_leave_the_opcode_alone() {
        assert_widths(Command::FIELDS);
        for op in Opcode::ALL {
            let Some(layout) = op.layout() else { continue };
            for (i, a) in layout.iter().enumerate() {
                assert!(
                    a.field.word != 0 || a.field.field.mask() & Command::OPCODE.field.mask() == 0
                );
                for b in layout.iter().skip(i + 1) {
                    assert!(
                        a.field.word != b.field.word
                            || a.field.field.mask() & b.field.field.mask() == 0,
                        "{}: {} overlaps {}",
                        op.name(),
                        a.name,
                        b.name
                    );
                }
            }
        }
    }

    #[test]
    fn small_enums() {
        for raw in 0u8..4 {
            assert_eq!(PriResp::try_from(raw).is_ok(), raw < 3);
            assert_eq!(SyncCs::try_from(raw).is_ok(), raw < 3);
            assert_eq!(CError::try_from(raw).map(|c| c as u8), Ok(raw));
        }
        assert!(CError::try_from(4).is_err());
        for a in [ResumeAction::Retry, ResumeAction::TerminateRazWi, ResumeAction::TerminateAbort] {
            let (ac, ab) = a.bits();
            assert_eq!(ResumeAction::from_bits(ac, ab), a);
        }
        assert_eq!(ResumeAction::from_bits(true, true), ResumeAction::Retry);
    }

    proptest! {
        #[test]
        fn every_command_accessor_round_trips(words in any::<[u64; 2]>(), value in any::<u64>()) {
            assert_round_trip(Command::FIELDS, Command(words), |c| c.0, value);
        }

        #[test]
        fn decoding_never_panics(words in any::<[u64; 2]>()) {
            let c = Command(words);
            let _ = (c.opcode(), c.name(), c.res0_set(), c.tg(), c.resp(), c.cs());
            let _ = format!("{c:?}");
        }

        #[test]
        fn a_command_with_only_its_fields_has_no_res0(
            words in any::<[u64; 2]>(),
            op_index in 0usize..34,
        ) {
            let op = Opcode::ALL.get(op_index).copied().unwrap_or(Opcode::Sync);
            if let Some(layout) = op.layout() {
                let mut c = Command::new(op);
                for nf in layout {
                    nf.field.set(&mut c.0, nf.field.get(&words));
                }
                prop_assert_eq!(c.res0_set(), Some([0, 0]));
                prop_assert_eq!(c.opcode(), Ok(op));
            }
        }
    }
}

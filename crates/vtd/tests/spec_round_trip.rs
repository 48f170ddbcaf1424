//! Every layout's declarations checked against themselves: each structure's named and reserved
//! bits cover it exactly once, register fields do not overlap, every setter round-trips through
//! its getter and touches only its own field, and no decoder panics on random words.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sviommu_memory::bits::low_mask;
use sviommu_vtd::spec::fault::{AddressType, FaultReason, FaultRecord, RequestType};
use sviommu_vtd::spec::inv::{
    CcGranularity, ContextCacheInv, DescWidth, DevTlbInv, IecGranularity, IecInv, InvDesc, InvWait,
    IotlbGranularity, IotlbInv, PasidCacheGranularity, PasidCacheInv, PasidDevTlbInv,
    PasidIotlbGranularity, PasidIotlbInv,
};
use sviommu_vtd::spec::pasid::{Fspm, PasidDirEntry, PasidEntry, Pgtt};
use sviommu_vtd::spec::prq::{PageGroupResponse, PageRequest, ResponseCode};
use sviommu_vtd::spec::regs;
use sviommu_vtd::spec::root::{
    ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry, TranslationType,
};
use sviommu_vtd::spec::{mask_of, Aw, Field, Field32, FieldAccess, WideField};

// ---------------------------------------------------------------------------------------------
// Coverage: every bit is named or reserved, once.
// ---------------------------------------------------------------------------------------------

fn covers<T, const N: usize>(name: &str, fields: &[FieldAccess<T>], reserved: [u64; N]) {
    let mut seen = [0u64; N];
    for (fname, f) in fields.iter().map(|a| (a.named.name, &a.named.field)) {
        assert!(f.word < N, "{name}.{fname} is outside the structure");
        let m: [u64; N] = mask_of(&[*f]);
        for (i, (s, m)) in seen.iter_mut().zip(m).enumerate() {
            assert_eq!(*s & m, 0, "{name}.{fname} overlaps another field in word {i}");
            *s |= m;
        }
    }
    for (i, (s, r)) in seen.iter_mut().zip(reserved).enumerate() {
        assert_eq!(*s & r, 0, "{name}: a field overlaps reserved bits in word {i}");
        *s |= r;
    }
    assert_eq!(seen, [u64::MAX; N], "{name}: bits neither named nor reserved");
}

#[test]
fn every_bit_is_named_or_reserved_once() {
    covers("RootEntry", RootEntry::FIELDS, RootEntry::fixed_reserved_mask());
    covers(
        "ScalableRootEntry",
        ScalableRootEntry::FIELDS,
        ScalableRootEntry::fixed_reserved_mask(),
    );
    covers("ContextEntry", ContextEntry::FIELDS, ContextEntry::fixed_reserved_mask());
    covers(
        "ScalableContextEntry",
        ScalableContextEntry::FIELDS,
        ScalableContextEntry::fixed_reserved_mask(),
    );
    covers("PasidDirEntry", PasidDirEntry::FIELDS, PasidDirEntry::fixed_reserved_mask());
    covers("PasidEntry", PasidEntry::FIELDS, PasidEntry::fixed_reserved_mask());
    covers("FaultRecord", FaultRecord::FIELDS, FaultRecord::fixed_reserved_mask());
    covers("PageRequest", PageRequest::FIELDS, PageRequest::fixed_reserved_mask());
    let w = DescWidth::W256;
    covers("ContextCacheInv", ContextCacheInv::FIELDS, ContextCacheInv::reserved_mask(w));
    covers("IotlbInv", IotlbInv::FIELDS, IotlbInv::reserved_mask(w));
    covers("DevTlbInv", DevTlbInv::FIELDS, DevTlbInv::reserved_mask(w));
    covers("IecInv", IecInv::FIELDS, IecInv::reserved_mask(w));
    covers("InvWait", InvWait::FIELDS, InvWait::reserved_mask(w));
    covers("PasidIotlbInv", PasidIotlbInv::FIELDS, PasidIotlbInv::reserved_mask(w));
    covers("PasidCacheInv", PasidCacheInv::FIELDS, PasidCacheInv::reserved_mask(w));
    covers("PasidDevTlbInv", PasidDevTlbInv::FIELDS, PasidDevTlbInv::reserved_mask(w));
    covers("PageGroupResponse", PageGroupResponse::FIELDS, PageGroupResponse::reserved_mask(w));
}

#[test]
fn register_fields_do_not_overlap() {
    // A register's fields by name and mask, whichever the register's width.
    fn r32<'a>(fields: &[(&'a str, Field32)]) -> Vec<(&'a str, u64)> {
        fields.iter().map(|(n, f)| (*n, f.mask())).collect()
    }
    fn r64<'a>(fields: &[(&'a str, Field)]) -> Vec<(&'a str, u64)> {
        fields.iter().map(|(n, f)| (*n, f.mask())).collect()
    }
    let all = [
        ("VER", r32(regs::ver::FIELDS)),
        ("CAP", r64(regs::cap::FIELDS)),
        ("ECAP", r64(regs::ecap::FIELDS)),
        ("GCMD", r32(regs::gcmd::FIELDS)),
        ("GSTS", r32(regs::gsts::FIELDS)),
        ("RTADDR", r64(regs::rtaddr::FIELDS)),
        ("CCMD", r64(regs::ccmd::FIELDS)),
        ("FSTS", r32(regs::fsts::FIELDS)),
        ("FECTL", r32(regs::fectl::FIELDS)),
        ("IECTL", r32(regs::iectl::FIELDS)),
        ("PECTL", r32(regs::pectl::FIELDS)),
        ("xEDATA", r32(regs::edata::FIELDS)),
        ("xEADDR", r32(regs::eaddr::FIELDS)),
        ("PMEN", r32(regs::pmen::FIELDS)),
        ("IVA", r64(regs::iva_reg::FIELDS)),
        ("IOTLB", r64(regs::iotlb_reg::FIELDS)),
        ("IQH", r64(regs::iqh::FIELDS)),
        ("IQT", r64(regs::iqt::FIELDS)),
        ("IQA", r64(regs::iqa::FIELDS)),
        ("ICS", r32(regs::ics::FIELDS)),
        ("IQER", r64(regs::iqer::FIELDS)),
        ("PQH", r64(regs::pqh::FIELDS)),
        ("PQT", r64(regs::pqt::FIELDS)),
        ("PQA", r64(regs::pqa::FIELDS)),
        ("PRS", r32(regs::prs::FIELDS)),
    ];
    for (reg, fields) in &all {
        let mut seen = 0u64;
        for (name, mask) in fields {
            assert_eq!(seen & mask, 0, "{reg}.{name} overlaps");
            seen |= mask;
        }
    }
    // 32-bit registers keep their fields in the low 32 bits.
    for (reg, fields) in [("GCMD", regs::gcmd::FIELDS), ("FSTS", regs::fsts::FIELDS)] {
        for (name, f) in fields {
            assert!(u32::try_from(f.mask()).is_ok(), "{reg}.{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

/// Only the bits of `f` differ between `before` and `after`.
fn only_field_changed<const N: usize>(
    before: [u64; N],
    after: [u64; N],
    f: WideField,
    what: &str,
) -> Result<(), TestCaseError> {
    let m: [u64; N] = mask_of(&[f]);
    for i in 0..N {
        prop_assert_eq!((before[i] ^ after[i]) & !m[i], 0, "{} touched word {}", what, i);
    }
    Ok(())
}

/// A property test per view: every flag, integer, address and enum field round-trips through
/// its setter and getter from random starting words, and the setter touches nothing else.
macro_rules! round_trips {
    (
        $test:ident: $view:ty, $n:literal;
        flags { $($fget:ident / $fset:ident = $fc:expr),* $(,)? }
        ints { $($iget:ident / $iset:ident: $ity:ty = $ic:expr),* $(,)? }
        addrs { $($aget:ident / $aset:ident = $ac:expr),* $(,)? }
        enums { $($eget:ident / $eset:ident / $erg:ident / $ers:ident: $ety:ty = $ec:expr),* $(,)? }
    ) => {
        proptest! {
            #[test]
            fn $test(words in any::<[u64; $n]>(), value in any::<u64>(), on in any::<bool>()) {
                let _ = (value, on);
                $(
                    let mut v = <$view>::from_words(words);
                    v.$fset(on);
                    prop_assert_eq!(v.$fget(), on, "{}", stringify!($fget));
                    only_field_changed(words, v.words(), $fc, stringify!($fset))?;
                )*
                $(
                    let mut v = <$view>::from_words(words);
                    let x: $ity = (value & low_mask($ic.field.width)).try_into().unwrap();
                    v.$iset(x);
                    prop_assert_eq!(v.$iget(), x, "{}", stringify!($iget));
                    only_field_changed(words, v.words(), $ic, stringify!($iset))?;
                )*
                $(
                    let mut v = <$view>::from_words(words);
                    v.$aset(value);
                    prop_assert_eq!(v.$aget(), value & $ac.field.mask(), "{}", stringify!($aget));
                    only_field_changed(words, v.words(), $ac, stringify!($aset))?;
                )*
                $(
                    let mut v = <$view>::from_words(words);
                    let raw = value & low_mask($ec.field.width);
                    v.$ers(raw);
                    prop_assert_eq!(v.$erg(), raw, "{}", stringify!($erg));
                    prop_assert_eq!(v.$eget(), <$ety>::try_from(raw), "{}", stringify!($eget));
                    only_field_changed(words, v.words(), $ec, stringify!($ers))?;
                    for &e in <$ety>::ALL {
                        v.$eset(e);
                        prop_assert_eq!(v.$eget(), Ok(e), "{}", stringify!($eset));
                        only_field_changed(words, v.words(), $ec, stringify!($eset))?;
                    }
                )*
            }
        }
    };
}

round_trips! {
    root_entry: RootEntry, 2;
    flags { p / set_p = RootEntry::P }
    ints {}
    addrs { ctp / set_ctp = RootEntry::CTP }
    enums {}
}

round_trips! {
    scalable_root_entry: ScalableRootEntry, 2;
    flags { lp / set_lp = ScalableRootEntry::LP, up / set_up = ScalableRootEntry::UP }
    ints {}
    addrs {
        lctp / set_lctp = ScalableRootEntry::LCTP,
        uctp / set_uctp = ScalableRootEntry::UCTP,
    }
    enums {}
}

round_trips! {
    context_entry: ContextEntry, 2;
    flags { p / set_p = ContextEntry::P, fpd / set_fpd = ContextEntry::FPD }
    ints {
        avail / set_avail: u8 = ContextEntry::AVAIL,
        did / set_did: u16 = ContextEntry::DID,
    }
    addrs { ssptptr / set_ssptptr = ContextEntry::SSPTPTR }
    enums {
        tt / set_tt / tt_raw / set_tt_raw: TranslationType = ContextEntry::TT,
        aw / set_aw / aw_raw / set_aw_raw: Aw = ContextEntry::AW,
    }
}

round_trips! {
    scalable_context_entry: ScalableContextEntry, 4;
    flags {
        p / set_p = ScalableContextEntry::P,
        fpd / set_fpd = ScalableContextEntry::FPD,
        dte / set_dte = ScalableContextEntry::DTE,
        paside / set_paside = ScalableContextEntry::PASIDE,
        pre / set_pre = ScalableContextEntry::PRE,
        rid_priv / set_rid_priv = ScalableContextEntry::RID_PRIV,
    }
    ints {
        pdts / set_pdts: u8 = ScalableContextEntry::PDTS,
        rid_pasid / set_rid_pasid: u32 = ScalableContextEntry::RID_PASID,
    }
    addrs { pasiddirptr / set_pasiddirptr = ScalableContextEntry::PASIDDIRPTR }
    enums {}
}

round_trips! {
    pasid_dir_entry: PasidDirEntry, 1;
    flags { p / set_p = PasidDirEntry::P, fpd / set_fpd = PasidDirEntry::FPD }
    ints {}
    addrs { smptblptr / set_smptblptr = PasidDirEntry::SMPTBLPTR }
    enums {}
}

round_trips! {
    pasid_entry: PasidEntry, 8;
    flags {
        p / set_p = PasidEntry::P,
        fpd / set_fpd = PasidEntry::FPD,
        ssee / set_ssee = PasidEntry::SSEE,
        ssade / set_ssade = PasidEntry::SSADE,
        pwsnp / set_pwsnp = PasidEntry::PWSNP,
        pgsnp / set_pgsnp = PasidEntry::PGSNP,
        cd / set_cd = PasidEntry::CD,
        emte / set_emte = PasidEntry::EMTE,
        pwt / set_pwt = PasidEntry::PWT,
        pcd / set_pcd = PasidEntry::PCD,
        sre / set_sre = PasidEntry::SRE,
        ere / set_ere = PasidEntry::ERE,
        wpe / set_wpe = PasidEntry::WPE,
        nxe / set_nxe = PasidEntry::NXE,
        smep / set_smep = PasidEntry::SMEP,
        eafe / set_eafe = PasidEntry::EAFE,
    }
    ints {
        did / set_did: u16 = PasidEntry::DID,
        emt / set_emt: u8 = PasidEntry::EMT,
        pat / set_pat: u32 = PasidEntry::PAT,
    }
    addrs {
        ssptptr / set_ssptptr = PasidEntry::SSPTPTR,
        fsptptr / set_fsptptr = PasidEntry::FSPTPTR,
    }
    enums {
        aw / set_aw / aw_raw / set_aw_raw: Aw = PasidEntry::AW,
        pgtt / set_pgtt / pgtt_raw / set_pgtt_raw: Pgtt = PasidEntry::PGTT,
        fspm / set_fspm / fspm_raw / set_fspm_raw: Fspm = PasidEntry::FSPM,
    }
}

round_trips! {
    fault_record: FaultRecord, 2;
    flags {
        t2 / set_t2 = FaultRecord::T2,
        priv_ / set_priv = FaultRecord::PRIV,
        exe / set_exe = FaultRecord::EXE,
        pp / set_pp = FaultRecord::PP,
        t1 / set_t1 = FaultRecord::T1,
        f / set_f = FaultRecord::F,
    }
    ints {
        sid / set_sid: u16 = FaultRecord::SID,
        pv / set_pv: u32 = FaultRecord::PV,
    }
    addrs { fi / set_fi = FaultRecord::FI }
    enums {
        fr / set_fr / fr_raw / set_fr_raw: FaultReason = FaultRecord::FR,
        at / set_at / at_raw / set_at_raw: AddressType = FaultRecord::AT,
    }
}

round_trips! {
    page_request: PageRequest, 4;
    flags {
        pp / set_pp = PageRequest::PP,
        pdp / set_pdp = PageRequest::PDP,
        er / set_er = PageRequest::ER,
        pmr / set_pmr = PageRequest::PMR,
        rr / set_rr = PageRequest::RR,
        wr / set_wr = PageRequest::WR,
        lpig / set_lpig = PageRequest::LPIG,
    }
    ints {
        type_ / set_type: u64 = PageRequest::TYPE,
        rid / set_rid: u16 = PageRequest::RID,
        pasid / set_pasid: u32 = PageRequest::PASID,
        prgi / set_prgi: u16 = PageRequest::PRGI,
        priv_data_lo / set_priv_data_lo: u64 = PageRequest::PRIV_DATA_LO,
        priv_data_hi / set_priv_data_hi: u64 = PageRequest::PRIV_DATA_HI,
    }
    addrs { addr / set_addr = PageRequest::ADDR }
    enums {}
}

round_trips! {
    context_cache_inv: ContextCacheInv, 4;
    flags {}
    ints {
        did / set_did: u16 = ContextCacheInv::DID,
        sid / set_sid: u16 = ContextCacheInv::SID,
        fm / set_fm: u8 = ContextCacheInv::FM,
    }
    addrs {}
    enums { g / set_g / g_raw / set_g_raw: CcGranularity = ContextCacheInv::G }
}

round_trips! {
    iotlb_inv: IotlbInv, 4;
    flags {
        dw / set_dw = IotlbInv::DW,
        dr / set_dr = IotlbInv::DR,
        ih / set_ih = IotlbInv::IH,
    }
    ints {
        did / set_did: u16 = IotlbInv::DID,
        am / set_am: u8 = IotlbInv::AM,
    }
    addrs { addr / set_addr = IotlbInv::ADDR }
    enums { g / set_g / g_raw / set_g_raw: IotlbGranularity = IotlbInv::G }
}

round_trips! {
    dev_tlb_inv: DevTlbInv, 4;
    flags { s / set_s = DevTlbInv::S }
    ints {
        mip / set_mip: u8 = DevTlbInv::MIP,
        sid / set_sid: u16 = DevTlbInv::SID,
    }
    addrs { addr / set_addr = DevTlbInv::ADDR }
    enums {}
}

round_trips! {
    iec_inv: IecInv, 4;
    flags {}
    ints {
        im / set_im: u8 = IecInv::IM,
        iidx / set_iidx: u16 = IecInv::IIDX,
    }
    addrs {}
    enums { g / set_g / g_raw / set_g_raw: IecGranularity = IecInv::G }
}

round_trips! {
    inv_wait: InvWait, 4;
    flags {
        if_ / set_if = InvWait::IF,
        sw / set_sw = InvWait::SW,
        fn_ / set_fn = InvWait::FN,
        pd / set_pd = InvWait::PD,
    }
    ints { status_data / set_status_data: u32 = InvWait::STATUS_DATA }
    addrs { status_addr / set_status_addr = InvWait::STATUS_ADDR }
    enums {}
}

round_trips! {
    pasid_iotlb_inv: PasidIotlbInv, 4;
    flags { ih / set_ih = PasidIotlbInv::IH }
    ints {
        did / set_did: u16 = PasidIotlbInv::DID,
        pasid / set_pasid: u32 = PasidIotlbInv::PASID,
        am / set_am: u8 = PasidIotlbInv::AM,
    }
    addrs { addr / set_addr = PasidIotlbInv::ADDR }
    enums { g / set_g / g_raw / set_g_raw: PasidIotlbGranularity = PasidIotlbInv::G }
}

round_trips! {
    pasid_cache_inv: PasidCacheInv, 4;
    flags {}
    ints {
        did / set_did: u16 = PasidCacheInv::DID,
        pasid / set_pasid: u32 = PasidCacheInv::PASID,
    }
    addrs {}
    enums { g / set_g / g_raw / set_g_raw: PasidCacheGranularity = PasidCacheInv::G }
}

round_trips! {
    pasid_dev_tlb_inv: PasidDevTlbInv, 4;
    flags {
        g / set_g = PasidDevTlbInv::G,
        s / set_s = PasidDevTlbInv::S,
    }
    ints {
        mip / set_mip: u8 = PasidDevTlbInv::MIP,
        sid / set_sid: u16 = PasidDevTlbInv::SID,
        pasid / set_pasid: u32 = PasidDevTlbInv::PASID,
    }
    addrs { addr / set_addr = PasidDevTlbInv::ADDR }
    enums {}
}

round_trips! {
    page_group_response: PageGroupResponse, 4;
    flags {
        pp / set_pp = PageGroupResponse::PP,
        pdp / set_pdp = PageGroupResponse::PDP,
        lpig / set_lpig = PageGroupResponse::LPIG,
    }
    ints {
        rid / set_rid: u16 = PageGroupResponse::RID,
        pasid / set_pasid: u32 = PageGroupResponse::PASID,
        prgi / set_prgi: u16 = PageGroupResponse::PRGI,
        priv_data_lo / set_priv_data_lo: u64 = PageGroupResponse::PRIV_DATA_LO,
        priv_data_hi / set_priv_data_hi: u64 = PageGroupResponse::PRIV_DATA_HI,
    }
    addrs {}
    enums { rc / set_rc / rc_raw / set_rc_raw: ResponseCode = PageGroupResponse::RC }
}

proptest! {
    /// PFSID is split across two fields; the pair round-trips as one 16-bit value.
    #[test]
    fn pfsid_round_trips(words in any::<[u64; 4]>(), pfsid in any::<u16>()) {
        let mut d = DevTlbInv::from_words(words);
        d.set_pfsid(pfsid);
        prop_assert_eq!(d.pfsid(), pfsid);
        let m: [u64; 4] = mask_of(&[DevTlbInv::PFSID_LO, DevTlbInv::PFSID_HI]);
        prop_assert_eq!((d.words()[0] ^ words[0]) & !m[0], 0);

        let mut p = PasidDevTlbInv::from_words(words);
        p.set_pfsid(pfsid);
        prop_assert_eq!(p.pfsid(), pfsid);
        prop_assert_eq!((p.words()[0] ^ words[0]) & !m[0], 0);
    }

    /// The request type is T2:T1, and setting it touches only those bits.
    #[test]
    fn request_type_round_trips(words in any::<[u64; 2]>(), t in 0usize..4) {
        let types =
            [RequestType::Write, RequestType::Read, RequestType::PageRequest, RequestType::AtomicOp];
        let mut r = FaultRecord::from_words(words);
        r.set_request_type(types[t]);
        prop_assert_eq!(r.request_type(), types[t]);
        let m: [u64; 2] = mask_of(&[FaultRecord::T1, FaultRecord::T2]);
        prop_assert_eq!((r.words()[1] ^ words[1]) & !m[1], 0);
    }

    /// Random words never make a decoder, a reserved check or `Debug` panic, and bytes
    /// round-trip.
    #[test]
    fn hostile_words_decode_without_panicking(w in any::<[u64; 8]>(), haw in any::<u8>()) {
        let w2 = [w[0], w[1]];
        let w4 = [w[0], w[1], w[2], w[3]];
        let _ = format!("{:?}", RootEntry::from_words(w2));
        let _ = RootEntry::from_words(w2).reserved_bits_set(haw);
        let sr = ScalableRootEntry::from_words(w2);
        let _ = (format!("{sr:?}"), sr.reserved_bits_set(haw), sr.reserved_bits_set_for(0x80, haw));
        let ce = ContextEntry::from_words(w2);
        let _ = (format!("{ce:?}"), ce.reserved_bits_set(haw));
        let sce = ScalableContextEntry::from_words(w4);
        let _ = (format!("{sce:?}"), sce.reserved_bits_set(haw), sce.pasid_dir_entries());
        let de = PasidDirEntry::from_words([w[0]]);
        let _ = (format!("{de:?}"), de.reserved_bits_set(haw));
        let pe = PasidEntry::from_words(w);
        let _ = (format!("{pe:?}"), pe.reserved_bits_set(haw));
        prop_assert_eq!(PasidEntry::from_le_bytes(pe.to_le_bytes()), pe);
        let fr = FaultRecord::from_words(w2);
        let _ = (format!("{fr:?}"), fr.reserved_bits_set());
        let pr = PageRequest::from_words(w4);
        let _ = (format!("{pr:?}"), pr.reserved_bits_set());
        let d = InvDesc::from_words(w4);
        let _ = format!("{d:?}");
        if let Ok(inv) = d.decode() {
            prop_assert_eq!(inv.words(), w4);
            let _ = (inv.reserved_bits_set(DescWidth::W128), inv.reserved_bits_set(DescWidth::W256));
        }
    }
}

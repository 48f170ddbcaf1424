//! The C parameter structs to and from the models' own parameters.
//!
//! The defaults are the models' defaults read back through the `spec` register fields, and a
//! C struct becomes the default parameters with the knobs' fields replaced, so this module
//! knows no bit positions and no default of its own.

use sviommu_smmuv3::hw::{CacheSizes, SmmuParams};
use sviommu_smmuv3::spec::address_size_bits;
use sviommu_smmuv3::spec::regs::{idr0, idr1, idr5};
use sviommu_vtd::hw::{CacheParams, VtdParams};
use sviommu_vtd::spec::regs::{cap, ecap};
use sviommu_vtd::spec::Aw;

use crate::types::{SviommuSmmuParams, SviommuVtdParams};

/// Why a parameter struct was refused: the field that was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadParam(pub &'static str);

/// A flag field as a `bool`: only 0 and 1 are flags.
fn flag(v: u8, name: &'static str) -> Result<bool, BadParam> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(BadParam(name)),
    }
}

/// `v` if it lies in `range`.
fn within(v: u8, range: std::ops::RangeInclusive<u8>, name: &'static str) -> Result<u64, BadParam> {
    if range.contains(&v) {
        Ok(u64::from(v))
    } else {
        Err(BadParam(name))
    }
}

fn narrow(v: u64) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

fn low32(v: u64) -> u32 {
    u32::try_from(v & u64::from(u32::MAX)).unwrap_or(u32::MAX)
}

/// The default VT-d unit's knobs.
pub fn vtd_default() -> SviommuVtdParams {
    let p = VtdParams::default();
    let (c, e) = (p.cap, p.ecap);
    let sagaw = cap::SAGAW.get(c);
    let sslps = cap::SSLPS.get(c);
    let pasid = ecap::PASID.is_set(e);
    SviommuVtdParams {
        scalable_mode: ecap::SMTS.is_set(e).into(),
        caching_mode: cap::CM.is_set(c).into(),
        first_stage: ecap::FSTS.is_set(e).into(),
        second_stage: ecap::SSTS.is_set(e).into(),
        nested: ecap::NEST.is_set(e).into(),
        pass_through: ecap::PT.is_set(e).into(),
        queued_invalidation: ecap::QI.is_set(e).into(),
        device_tlb: ecap::DT.is_set(e).into(),
        page_requests: ecap::PRS.is_set(e).into(),
        agaw_39: (sagaw & Aw::Bits39.sagaw_bit() != 0).into(),
        agaw_48: (sagaw & Aw::Bits48.sagaw_bit() != 0).into(),
        agaw_57: (sagaw & Aw::Bits57.sagaw_bit() != 0).into(),
        ss_2m_pages: (sslps & cap::SSLPS_2M != 0).into(),
        ss_1g_pages: (sslps & cap::SSLPS_1G != 0).into(),
        fs_1g_pages: cap::FS1GP.is_set(c).into(),
        fs_5level: cap::FS5LP.is_set(c).into(),
        mgaw_bits: narrow(cap::mgaw_bits(c)),
        haw_bits: p.haw,
        pasid_bits: if pasid { narrow(ecap::pasid_bits(e)) } else { 0 },
        nd: narrow(cap::ND.get(c)),
        caches: u8::from(p.caches != CacheParams::NONE),
        outbox_capacity: u32::try_from(p.outbox_capacity).unwrap_or(u32::MAX),
    }
}

/// The model's parameters for `k`, or the first field that is out of range or contradicts
/// another (§11.4.2, §11.4.3: what the capability registers may advertise together).
pub fn vtd_params(k: &SviommuVtdParams) -> Result<VtdParams, BadParam> {
    let sm = flag(k.scalable_mode, "scalable_mode")?;
    let fs = flag(k.first_stage, "first_stage")?;
    let ss = flag(k.second_stage, "second_stage")?;
    let nest = flag(k.nested, "nested")?;
    let dt = flag(k.device_tlb, "device_tlb")?;
    let prs = flag(k.page_requests, "page_requests")?;
    let agaw = [
        (flag(k.agaw_39, "agaw_39")?, Aw::Bits39),
        (flag(k.agaw_48, "agaw_48")?, Aw::Bits48),
        (flag(k.agaw_57, "agaw_57")?, Aw::Bits57),
    ];
    let sagaw = agaw.iter().filter(|(on, _)| *on).fold(0, |s, (_, aw)| s | aw.sagaw_bit());
    let mut sslps = 0;
    if flag(k.ss_2m_pages, "ss_2m_pages")? {
        sslps |= cap::SSLPS_2M;
    }
    if flag(k.ss_1g_pages, "ss_1g_pages")? {
        sslps |= cap::SSLPS_1G;
    }
    // Scalable-mode stages exist only in scalable mode; nesting needs both stages; a page
    // request needs the device's ATS (§4.2, §7.5); legacy mode and the second stage walk with
    // an advertised AGAW.
    if (fs || ss) && !sm {
        return Err(BadParam(if fs { "first_stage" } else { "second_stage" }));
    }
    if nest && !(fs && ss) {
        return Err(BadParam("nested"));
    }
    if prs && !dt {
        return Err(BadParam("page_requests"));
    }
    if sagaw == 0 {
        return Err(BadParam("agaw_39"));
    }
    let mgaw = within(k.mgaw_bits, 12..=64, "mgaw_bits")?;
    let haw = within(k.haw_bits, 12..=52, "haw_bits")?;
    let pasid_bits = within(k.pasid_bits, 0..=20, "pasid_bits")?;
    let nd = within(k.nd, 0..=6, "nd")?;
    let caches = flag(k.caches, "caches")?;
    let outbox = usize::try_from(k.outbox_capacity).map_err(|_| BadParam("outbox_capacity"))?;
    if outbox == 0 {
        return Err(BadParam("outbox_capacity"));
    }

    let d = VtdParams::default();
    let mut c = d.cap;
    c = cap::CM.with(c, flag(k.caching_mode, "caching_mode")?);
    c = cap::SAGAW.set(c, sagaw);
    c = cap::MGAW.set(c, mgaw - 1);
    c = cap::SSLPS.set(c, sslps);
    c = cap::FS1GP.with(c, flag(k.fs_1g_pages, "fs_1g_pages")?);
    c = cap::FS5LP.with(c, flag(k.fs_5level, "fs_5level")?);
    c = cap::ND.set(c, nd);
    let mut e = d.ecap;
    e = ecap::SMTS.with(e, sm);
    e = ecap::FSTS.with(e, fs);
    e = ecap::SSTS.with(e, ss);
    e = ecap::NEST.with(e, nest);
    e = ecap::PT.with(e, flag(k.pass_through, "pass_through")?);
    e = ecap::QI.with(e, flag(k.queued_invalidation, "queued_invalidation")?);
    e = ecap::DT.with(e, dt);
    e = ecap::PRS.with(e, prs);
    e = ecap::PASID.with(e, pasid_bits > 0);
    e = ecap::PSS.set(e, pasid_bits.saturating_sub(1));
    // Interrupt remapping is not modelled: never advertised (the default has it clear too).
    e = ecap::IR.with(e, false);
    Ok(VtdParams {
        cap: c,
        ecap: e,
        haw: narrow(haw),
        caches: if caches { d.caches } else { CacheParams::NONE },
        outbox_capacity: outbox,
        ..d
    })
}

/// The default SMMU's knobs.
pub fn smmu_default() -> SviommuSmmuParams {
    let p = SmmuParams::default();
    let (i0, i1, i5) = (u64::from(p.idr0), u64::from(p.idr1), u64::from(p.idr5));
    SviommuSmmuParams {
        stage1: idr0::S1P.is_set(i0).into(),
        stage2: idr0::S2P.is_set(i0).into(),
        two_level_stream_table: (idr0::ST_LEVEL.get(i0) != 0).into(),
        two_level_cd_table: idr0::CD2L.is_set(i0).into(),
        msi: idr0::MSI.is_set(i0).into(),
        ats: idr0::ATS.is_set(i0).into(),
        pri: idr0::PRI.is_set(i0).into(),
        sev: idr0::SEV.is_set(i0).into(),
        httu: narrow(idr0::HTTU.get(i0)),
        stall_model: narrow(idr0::STALL_MODEL.get(i0)),
        sid_bits: narrow(idr1::SIDSIZE.get(i1)),
        ssid_bits: narrow(idr1::SSIDSIZE.get(i1)),
        cmdq_lg2: narrow(idr1::CMDQS.get(i1)),
        eventq_lg2: narrow(idr1::EVENTQS.get(i1)),
        priq_lg2: narrow(idr1::PRIQS.get(i1)),
        oas_bits: address_size_bits(idr5::OAS.get(i5)).unwrap_or(0),
        granule_4k: idr5::GRAN4K.is_set(i5).into(),
        granule_16k: idr5::GRAN16K.is_set(i5).into(),
        granule_64k: idr5::GRAN64K.is_set(i5).into(),
        gbpa_abort_at_reset: p.gbpa_abort_at_reset.into(),
        caches: u8::from(p.caches != CacheSizes::NONE),
        outbox_capacity: u32::try_from(p.outbox_capacity).unwrap_or(u32::MAX),
    }
}

/// The model's parameters for `k`, or the first field that is out of range or contradicts
/// another (§6.3.1, §6.3.2, §6.3.6).
pub fn smmu_params(k: &SviommuSmmuParams) -> Result<SmmuParams, BadParam> {
    let s1 = flag(k.stage1, "stage1")?;
    let s2 = flag(k.stage2, "stage2")?;
    if !s1 && !s2 {
        return Err(BadParam("stage1"));
    }
    let ats = flag(k.ats, "ats")?;
    let pri = flag(k.pri, "pri")?;
    if pri && !ats {
        return Err(BadParam("pri"));
    }
    let grans = [
        flag(k.granule_4k, "granule_4k")?,
        flag(k.granule_16k, "granule_16k")?,
        flag(k.granule_64k, "granule_64k")?,
    ];
    if !grans.contains(&true) {
        return Err(BadParam("granule_4k"));
    }
    let stall = within(k.stall_model, 0..=2, "stall_model")?;
    let oas_enc = (0u64..=6)
        .find(|&enc| address_size_bits(enc) == Ok(k.oas_bits))
        .ok_or(BadParam("oas_bits"))?;
    let caches = flag(k.caches, "caches")?;
    let outbox = usize::try_from(k.outbox_capacity).map_err(|_| BadParam("outbox_capacity"))?;
    if outbox == 0 {
        return Err(BadParam("outbox_capacity"));
    }

    let d = SmmuParams::default();
    let mut i0 = u64::from(d.idr0);
    i0 = idr0::S1P.with(i0, s1);
    i0 = idr0::S2P.with(i0, s2);
    i0 = idr0::ST_LEVEL
        .set(i0, u64::from(flag(k.two_level_stream_table, "two_level_stream_table")?));
    i0 = idr0::CD2L.with(i0, flag(k.two_level_cd_table, "two_level_cd_table")?);
    i0 = idr0::MSI.with(i0, flag(k.msi, "msi")?);
    i0 = idr0::ATS.with(i0, ats);
    i0 = idr0::PRI.with(i0, pri);
    i0 = idr0::SEV.with(i0, flag(k.sev, "sev")?);
    i0 = idr0::HTTU.set(i0, within(k.httu, 0..=2, "httu")?);
    let mut i1 = u64::from(d.idr1);
    i1 = idr1::SIDSIZE.set(i1, within(k.sid_bits, 0..=32, "sid_bits")?);
    i1 = idr1::SSIDSIZE.set(i1, within(k.ssid_bits, 0..=20, "ssid_bits")?);
    i1 = idr1::CMDQS.set(i1, within(k.cmdq_lg2, 0..=19, "cmdq_lg2")?);
    i1 = idr1::EVENTQS.set(i1, within(k.eventq_lg2, 0..=19, "eventq_lg2")?);
    i1 = idr1::PRIQS.set(i1, within(k.priq_lg2, 0..=19, "priq_lg2")?);
    let mut i5 = u64::from(d.idr5);
    i5 = idr5::GRAN4K.with(i5, grans[0]);
    i5 = idr5::GRAN16K.with(i5, grans[1]);
    i5 = idr5::GRAN64K.with(i5, grans[2]);
    let base = SmmuParams {
        idr0: low32(i0),
        idr1: low32(i1),
        idr5: low32(i5),
        gbpa_abort_at_reset: flag(k.gbpa_abort_at_reset, "gbpa_abort_at_reset")?,
        caches: if caches { d.caches } else { CacheSizes::NONE },
        outbox_capacity: outbox,
        ..d
    };
    // The model's own setters keep the fields that follow these in step (VAX with the OAS,
    // STALL_MAX with the stall model).
    let model = match stall {
        0 => sviommu_smmuv3::spec::regs::StallModel::StallAndTerminate,
        1 => sviommu_smmuv3::spec::regs::StallModel::TerminateOnly,
        _ => sviommu_smmuv3::spec::regs::StallModel::StallForced,
    };
    let with_oas = base.with_oas_bits(address_size_bits(oas_enc).unwrap_or(52));
    Ok(with_oas.with_stall_model(model))
}

/// The behaviour profile the process environment asks for: `SVIOMMU_PROFILE` (`forgiving`,
/// `strict` or `strict:SEED`, as the test suites take it), or `None` when it is unset. The
/// parameter structs keep their layout, so an embedder built against them (the QEMU shim)
/// chooses the profile without a rebuild.
pub fn profile_from_env() -> Result<Option<sviommu_tlb::Profile>, BadParam> {
    match std::env::var("SVIOMMU_PROFILE") {
        Ok(p) => p.parse().map(Some).map_err(|_| BadParam("SVIOMMU_PROFILE")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(BadParam("SVIOMMU_PROFILE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_give_back_the_models_defaults() {
        assert_eq!(vtd_params(&vtd_default()), Ok(VtdParams::default()));
        assert_eq!(smmu_params(&smmu_default()), Ok(SmmuParams::default()));
    }

    #[test]
    fn a_flag_other_than_0_or_1_names_its_field() {
        let mut k = vtd_default();
        k.caching_mode = 2;
        assert_eq!(vtd_params(&k), Err(BadParam("caching_mode")));
        let mut s = smmu_default();
        s.msi = 0xff;
        assert_eq!(smmu_params(&s), Err(BadParam("msi")));
    }

    #[test]
    fn contradictions_are_refused() {
        let mut k = vtd_default();
        k.scalable_mode = 0;
        assert_eq!(vtd_params(&k), Err(BadParam("first_stage")));
        k.first_stage = 0;
        k.nested = 0;
        assert_eq!(vtd_params(&k), Err(BadParam("second_stage")));
        k.second_stage = 0;
        assert!(vtd_params(&k).is_ok(), "legacy mode with no scalable stages");
        let (mut a, mut b) = (vtd_default(), vtd_default());
        a.pasid_bits = 21;
        b.haw_bits = 53;
        assert_eq!(
            (vtd_params(&a), vtd_params(&b)),
            (Err(BadParam("pasid_bits")), Err(BadParam("haw_bits")))
        );
        let mut s = smmu_default();
        s.oas_bits = 50;
        assert_eq!(smmu_params(&s), Err(BadParam("oas_bits")));
        s = smmu_default();
        s.stage1 = 0;
        s.stage2 = 0;
        assert_eq!(smmu_params(&s), Err(BadParam("stage1")));
    }

    #[test]
    fn knobs_reach_the_registers() {
        let mut k = vtd_default();
        k.caching_mode = 1;
        k.agaw_57 = 0;
        k.agaw_48 = 0;
        k.pasid_bits = 0;
        let p = vtd_params(&k).unwrap();
        assert!(cap::CM.is_set(p.cap) && !ecap::PASID.is_set(p.ecap));
        assert_eq!(cap::SAGAW.get(p.cap), Aw::Bits39.sagaw_bit());
        let mut s = smmu_default();
        s.two_level_stream_table = 0;
        s.oas_bits = 48;
        s.stall_model = 1;
        let q = smmu_params(&s).unwrap();
        let (i0, i5) = (u64::from(q.idr0), u64::from(q.idr5));
        assert_eq!(idr0::ST_LEVEL.get(i0), 0);
        assert_eq!(idr0::STALL_MODEL.get(i0), 1);
        // §6.3.6: OAS 0b101 is 48 bits.
        assert_eq!(idr5::OAS.get(i5), 0b101);
    }
}

//! The Stream table (§3.3.1): finding a StreamID's STE through a linear table or a level-1
//! table of L1STDs (§5.1), fetching it, and deciding whether it is ILLEGAL (§5.2.2 SteIllegal).
//!
//! IMPDEF choices, each also marked where it is made:
//! - A set bit §5.2 marks "Reserved, RES0" in every configuration makes the STE ILLEGAL. Fields
//!   that are RES0 only because a feature is not implemented (S2HAFT, S2DS, MPAM, Secure ...)
//!   are ignored unless SteIllegal names them.
//! - RES0 bits of an L1STD are ignored.
//! - An STE fetch address beyond memory is F_STE_FETCH (§3.4.3 permits it or truncation).

use std::sync::atomic::Ordering;

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Ps, VmsaS2};
use sviommu_pgtable::{Format, WalkCtx, WalkObserver};

use super::translate::{pt_granule, Req};
use super::{Abort, Silent, Smmu};
use crate::spec::regs::{cr2, strtab_base, strtab_base_cfg, StrtabFmt};
use crate::spec::ste::STE_BYTES;
use crate::spec::{Eats, EventId, Granule, L1Std, Ste, StreamConfig};

/// A valid STE and what the transaction path needs of it, decoded.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stream {
    pub ste: Ste,
    pub config: StreamConfig,
    /// The stage-2 tables, when Config enables stage 2.
    pub s2: Option<VmsaS2>,
}

/// §6.3.25: the SPLIT values a two-level Stream table can have; others behave as 6.
fn effective_split(raw: u64) -> u8 {
    match raw {
        6 | 8 | 10 => u8::try_from(raw).unwrap_or(6),
        _ => 6,
    }
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// §7.3.3 C_BAD_STREAMID: recorded only when SMMU_CR2.RECINVSID == 1.
    fn bad_streamid(&self, req: &Req<'_>) -> Abort {
        let mut e = req.event(EventId::CBadStreamid);
        e.record = cr2::RECINVSID.is_set(u64::from(self.cr2.load(Ordering::Acquire)));
        Abort::Event(e)
    }

    /// §7.3.4 F_STE_FETCH for a fetch (of the STE or its L1STD) at `addr`.
    fn ste_fetch_abort(req: &Req<'_>, addr: u64) -> Abort {
        let mut e = req.event(EventId::FSteFetch);
        e.fetch_addr = Some(addr);
        Abort::Event(e)
    }

    /// The physical address of the transaction's STE (reading its L1STD if the table has two
    /// levels), or the event that ends the transaction.
    fn locate_ste<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
    ) -> Result<u64, Abort> {
        let sid = u64::from(req.t.sid);
        let base_reg = self.strtab_base.load(Ordering::Acquire);
        let cfg = u64::from(self.strtab_base_cfg.load(Ordering::Acquire));
        let log2size = u8::try_from(strtab_base_cfg::LOG2SIZE.get(cfg)).unwrap_or(u8::MAX);
        // §6.3.25: the effective LOG2SIZE is capped at SIDSIZE for the range check and the
        // index calculations; the base alignment uses the literal value (§6.3.24).
        let size = log2size.min(self.caps.sidsize);
        if sid >> size != 0 {
            return Err(self.bad_streamid(req));
        }
        let base = strtab_base::ADDR.in_place(base_reg);
        // §6.3.25: Reserved FMT values behave as linear.
        let fmt = if self.caps.two_level_st {
            u8::try_from(strtab_base_cfg::FMT.get(cfg))
                .ok()
                .and_then(|f| StrtabFmt::try_from(f).ok())
                .unwrap_or(StrtabFmt::Linear)
        } else {
            StrtabFmt::Linear
        };
        let fetch_abort = |addr| Self::ste_fetch_abort(req, addr);
        match fmt {
            StrtabFmt::Linear => {
                // §6.3.24: ADDR[LOG2SIZE + 5:0] are taken as zero.
                let base = base & !low_mask(log2size.saturating_add(6));
                base.checked_add(sid * STE_BYTES).ok_or_else(|| fetch_abort(base))
            }
            StrtabFmt::TwoLevel => {
                let split = effective_split(strtab_base_cfg::SPLIT.get(cfg));
                // §6.3.24: aligned to the level-1 table's size, at least 64 bytes.
                let l1_align = log2size.saturating_sub(split).saturating_add(3).max(6);
                let l1_base = base & !low_mask(l1_align);
                let l1_addr =
                    l1_base.checked_add((sid >> split) * 8).ok_or_else(|| fetch_abort(l1_base))?;
                let raw = cx.reader.read_entry(Hpa(l1_addr)).map_err(|_| fetch_abort(l1_addr))?;
                // §5.1: the L1STD is shown to the observer as a one-word structure (the
                // reader has counted the read).
                cx.observer.structure("L1STD", l1_addr, &[raw]);
                let l1 = L1Std::from_word(raw);
                // §7.3.3: Span 0, Reserved (12 to 31), beyond SPLIT + 1, or a StreamID beyond
                // the level-2 array are out of range.
                let span = l1.span();
                let Some(count) = l1.l2_ste_count() else {
                    return Err(self.bad_streamid(req));
                };
                let l2_index = sid & low_mask(split);
                if span > split + 1 || l2_index >= u64::from(count) {
                    return Err(self.bad_streamid(req));
                }
                // §5.1: the level-2 array is aligned to its size, L2Ptr[5 + Span - 1:0] zero.
                let l2_base = l1.l2ptr() & !low_mask(span.saturating_add(5));
                l2_base.checked_add(l2_index * STE_BYTES).ok_or_else(|| fetch_abort(l2_base))
            }
        }
    }

    /// Fetches the transaction's STE (one read of 64 bytes).
    pub(super) fn fetch_ste<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
    ) -> Result<Ste, Abort> {
        let addr = self.locate_ste(cx, req)?;
        cx.read_structure::<8>("STE", addr).map(Ste).ok_or_else(|| Self::ste_fetch_abort(req, addr))
    }

    /// §5.2.2 SteIllegal, for a Non-secure STE: the decoded stream, C_BAD_STE, or the silent
    /// abort of Config 0b0xx.
    pub(super) fn check_ste(&self, ste: &Ste, req: &Req<'_>) -> Result<Stream, Abort> {
        let c = &self.caps;
        let bad = || Abort::Event(req.event(EventId::CBadSte));
        if !ste.v() {
            return Err(bad());
        }
        // §5.2 Config: 0b000 aborts without an event; Reserved 0b0xx behave as 0b000. Nothing
        // else of such an STE is looked at (§5.2.1).
        let config = match ste.config() {
            Ok(StreamConfig::Abort) | Err(_) => return Err(Abort::Silent(Silent::SteAbort)),
            Ok(config) => config,
        };
        // IMPDEF: Reserved, RES0 bits set make the STE ILLEGAL.
        if ste.has_res0_set() {
            return Err(bad());
        }
        if (config.stage1() && !c.s1p) || (config.stage2() && !c.s2p) {
            return Err(bad());
        }
        // STE.EATS (checked when ATS is implemented and the STE is not bypass).
        if c.ats && config != StreamConfig::Bypass {
            let illegal = match ste.eats() {
                Eats::SplitStage => config != StreamConfig::Nested || ste.s2s() || c.ns1ats,
                Eats::Full => ste.s2s() && config.stage2(),
                // 0b11 needs SMMU_IDR3.DPT (not implemented): Reserved, behaves as 0b00.
                Eats::Abort | Eats::FullDpt => false,
            };
            if illegal {
                return Err(bad());
            }
        }
        // IgnoreSTESTRW: STRW is used only for stage-1-only streams when EL2 is implemented.
        // DEVIATION: with SMMU_IDR0.HYP advertised (not by default), an EL2 StreamWorld is
        // accepted but translated as NS-EL1.
        let strw_used = c.s1p && c.hyp && config == StreamConfig::Stage1;
        if strw_used && ste.strw_raw() & 1 != 0 {
            return Err(bad());
        }
        if config.stage1() {
            let cdmax = ste.s1cdmax();
            let illegal = (ste.s1stalld() && c.stall_model != 0b00)
                || (c.ssidsize != 0 && cdmax > c.ssidsize)
                || (c.ssidsize != 0 && cdmax != 0 && !c.cd2l && matches!(ste.s1fmt_raw(), 1 | 2))
                // STES1ContextPtrOutOfRange: a PA beyond the OAS, or (nested) an IPA beyond the
                // IAS, which equals the OAS here (§3.4, §3.4.3 note 1 and 2a).
                || ste.s1contextptr() >> c.oas_bits != 0;
            if illegal {
                return Err(bad());
            }
        }
        let s2 = if config.stage2() { Some(self.check_s2(ste).ok_or_else(bad)?) } else { None };
        // IgnoreSTES2VMID: 8-bit VMIDs make S2VMID[15:8] != 0 ILLEGAL where S2VMID is used.
        let s2vmid_used =
            c.s2p && config != StreamConfig::Bypass && !(strw_used && ste.strw_raw() != 0);
        if s2vmid_used && !c.vmid16 && ste.s2vmid() >> 8 != 0 {
            return Err(bad());
        }
        Ok(Stream { ste: *ste, config, s2 })
    }

    /// The stage-2 part of SteIllegal: the tables to walk, or `None` if ILLEGAL.
    fn check_s2(&self, ste: &Ste) -> Option<VmsaS2> {
        let c = &self.caps;
        // §5.5: S2S against the stall model.
        if (ste.s2s() && c.stall_model == 0b01) || (!ste.s2s() && c.stall_model == 0b10) {
            return None;
        }
        // S2AA64: only VMSAv8-64 is implemented (no VMSAv8-32 LPAE, no VMSAv9-128).
        if !ste.s2aa64() || !c.aa64 {
            return None;
        }
        // S2HA/S2HD against SMMU_IDR0.HTTU.
        if ((ste.s2ha() || ste.s2hd()) && c.httu == 0) || (ste.s2hd() && c.httu == 1) {
            return None;
        }
        // S2TG: a supported granule.
        let tg = ste.s2tg().ok().filter(|&g| c.granule(g))?;
        // S2PS: eff_S2PS = MIN(S2PS, SMMU_IDR5.OAS), Reserved values included.
        let ps = Ps::from_field(ste.s2ps().min(c.oas_enc)).ok()?;
        // STES2TTBOutOfRange: within eff_S2PS, and 48 bits unless the 64K granule (no S2DS).
        let ttb = ste.s2ttb();
        if ttb >> ps.bits() != 0 || (tg != Granule::Size64K && ttb >> 48 != 0) {
            return None;
        }
        // STES2T0SZInvalid: at most 39 (no STT); at least MAX(16, 64 - IAS), or MAX(12, ...)
        // with the 64K granule.
        let t0sz = ste.s2t0sz();
        let floor = if tg == Granule::Size64K { 12 } else { 16 };
        let min = floor.max(64u8.saturating_sub(c.oas_bits));
        if !(min..=39).contains(&t0sz) {
            return None;
        }
        // DEVIATION: S2PTW is ignored: the model has no memory types, so no stage-2 page is
        // Device memory.
        // S2ENDI against SMMU_IDR0.TTENDIAN (big-endian tables are not implemented).
        if (c.ttendian == 0b10 && ste.s2endi()) || (c.ttendian == 0b11 && !ste.s2endi()) {
            return None;
        }
        let s2 = VmsaS2 {
            ttb,
            tg: pt_granule(tg),
            t0sz,
            sl0: ste.s2sl0(),
            ps,
            oa_52: c.oa52,
            ha: ste.s2ha(),
            // §5.2 S2HA: {S2HA, S2HD} == 0b01 behaves as 0b00.
            hd: ste.s2hd() && ste.s2ha(),
            affd: ste.s2affd(),
            xnx: c.xnx,
        };
        // STEWalkConfigInconsistentAA64: S2SL0 against S2T0SZ and S2TG.
        s2.check_config().ok()?;
        Some(s2)
    }
}

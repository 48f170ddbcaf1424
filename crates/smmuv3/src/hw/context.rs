//! Context descriptors (§3.3.2): finding a substream's CD through a single CD, a linear CD table
//! or a level-1 table of L1CDs (§5.2 S1Fmt, §5.3), fetching it (through stage 2 when the STE
//! nests), and deciding whether it is ILLEGAL (§5.4.2 CdIllegal).
//!
//! IMPDEF choices, each also marked where it is made:
//! - A set bit §5.4 marks "Reserved, RES0" in every configuration makes the CD ILLEGAL; fields
//!   RES0 only because a feature is not implemented (DS, PIE, E0PDx, EPAN, HAFT ...) are ignored.
//! - RES0 bits of an L1CD are ignored, and L1CD.L2Ptr[15:12] of a 64K level-2 table is taken as
//!   zero.
//! - A CD or L1CD IPA beyond the stage-2 input range is a stage-2 F_TRANSLATION with CLASS == CD
//!   (§3.4.3 note 2b and 4b); an L2Ptr beyond the OAS or IAS is C_BAD_SUBSTREAMID (note 3, 4a).

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Ps, VmsaS1};
use sviommu_pgtable::{Access, Direct, Format, Walk, WalkCtx, WalkObserver};

use super::events::{walk_event, WalkFor};
use super::stream::Stream;
use super::translate::{pt_granule, Faults, Req};
use super::{Abort, Smmu};
use crate::spec::cd::{CD_BYTES, L1CD_BYTES};
use crate::spec::{Cd, EventId, Granule, L1Cd, S1Fmt};

/// A valid CD as the stage-1 walk needs it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Context {
    /// The TTB0 tables; `None` when EPD0 disables walks through them.
    pub ttb0: Option<VmsaS1>,
    /// The TTB1 tables; `None` when EPD1 disables walks through them.
    pub ttb1: Option<VmsaS1>,
    /// TBI0: VA[63:56] are ignored for TTB0 addresses.
    pub tbi0: bool,
    /// TBI1.
    pub tbi1: bool,
    /// CD.R and CD.S: what stage-1 Translation-related faults do.
    pub faults: Faults,
    /// CD.ASID: the TLB and walk-cache tag.
    pub asid: u16,
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// The physical address of a CD-table structure at `addr`: itself, or (nested) its IPA
    /// translated by stage 2, a stage-2 fault being reported with CLASS == CD (§7.3.13).
    fn config_pa<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
        s: &Stream,
        addr: u64,
    ) -> Result<u64, Abort> {
        let Some(s2) = &s.s2 else {
            return Ok(addr);
        };
        // §7.3.16: a CD fetch is implicitly a data read.
        s2.walk(cx, &Direct, addr, Access::READ.privileged()).map(|leaf| leaf.output).map_err(|f| {
            // §3.12: a stage-2 fault fetching a CD stalls as STE.S2S says.
            req.walk_abort(&walk_event(&f, WalkFor::Cd), Faults::RECORD, Faults::stage2(&s.ste))
        })
    }

    /// §7.3.10 F_CD_FETCH for a fetch (of the CD or its L1CD) at physical address `pa`.
    fn cd_fetch_abort(req: &Req<'_>, pa: u64) -> Abort {
        let mut e = req.event(EventId::FCdFetch);
        e.fetch_addr = Some(pa);
        Abort::Event(e)
    }

    /// §7.3.9 C_BAD_SUBSTREAMID; the SubstreamID field is the CD index looked for.
    pub(super) fn bad_substreamid(req: &Req<'_>, index: u32) -> Abort {
        let mut e = req.event(EventId::CBadSubstreamid);
        e.ssid = Some(index);
        Abort::Event(e)
    }

    /// Fetches CD `index` (the SubstreamID, or 0) of stream `s`. `index` is below
    /// 2^STE.S1CDMax, or 0 when substreams are disabled.
    pub(super) fn fetch_cd<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
        s: &Stream,
        index: u32,
    ) -> Result<Cd, Abort> {
        let ste = &s.ste;
        let ptr = ste.s1contextptr();
        let substreams = self.caps.ssidsize != 0 && ste.s1cdmax() != 0;
        let cdmax = if substreams { ste.s1cdmax() } else { 0 };
        // §5.2 S1Fmt: IGNORED without substreams; Reserved 0b11 behaves as 0b00 (linear).
        let fmt = if substreams { ste.s1fmt().unwrap_or(S1Fmt::Linear) } else { S1Fmt::Linear };
        let index64 = u64::from(index);
        let overflow = || Self::cd_fetch_abort(req, ptr);
        let cd_addr = match fmt.l2_index_bits() {
            // A linear table is aligned to its size (S1ContextPtr[S1CDMax + 5:6] are RES0,
            // CONSTRAINED UNPREDICTABLE: taken as zero).
            None => (ptr & !low_mask(cdmax.saturating_add(6)))
                .checked_add(index64 * CD_BYTES)
                .ok_or_else(overflow)?,
            Some(l2_bits) => {
                // The level-1 table is aligned to its size or 64 bytes, and indexed by
                // SubstreamID[S1CDMax - 1:l2_bits] (only entry 0 when S1CDMax <= l2_bits).
                let l1_lg2 = cdmax.saturating_sub(l2_bits).saturating_add(3).max(6);
                let l1_addr = (ptr & !low_mask(l1_lg2))
                    .checked_add((index64 >> l2_bits) * L1CD_BYTES)
                    .ok_or_else(overflow)?;
                let l1_pa = self.config_pa(cx, req, s, l1_addr)?;
                let raw = cx
                    .reader
                    .read_entry(Hpa(l1_pa))
                    .map_err(|_| Self::cd_fetch_abort(req, l1_pa))?;
                // §5.3: the L1CD is shown to the observer as a one-word structure (the
                // reader has counted the read).
                cx.observer.structure("L1CD", l1_pa, &[raw]);
                let l1 = L1Cd::from_word(raw);
                if !l1.v() {
                    return Err(Self::bad_substreamid(req, index));
                }
                // §5.2 S1Fmt: L2Ptr[11:0] are taken as zero; with 64K tables [15:12] are RES0
                // (IMPDEF: taken as zero too).
                let l2 = l1.l2ptr() & !low_mask(l2_bits + 6);
                // §3.4.3 note 3 and 4a: an L2Ptr beyond the OAS (or the IAS, which equals it).
                if l2 >> self.caps.oas_bits != 0 {
                    return Err(Self::bad_substreamid(req, index));
                }
                l2.checked_add((index64 & low_mask(l2_bits)) * CD_BYTES).ok_or_else(overflow)?
            }
        };
        let pa = self.config_pa(cx, req, s, cd_addr)?;
        cx.read_structure::<8>("CD", pa).map(Cd).ok_or_else(|| Self::cd_fetch_abort(req, pa))
    }

    /// §5.4.2 CdIllegal for a CD reached from a Non-secure NS-EL1 stream: the stage-1
    /// configuration, or C_BAD_CD.
    pub(super) fn check_cd(&self, cd: &Cd, s: &Stream, req: &Req<'_>) -> Result<Context, Abort> {
        let c = &self.caps;
        let bad = || Abort::Event(req.event(EventId::CBadCd));
        if !cd.v() {
            return Err(bad());
        }
        // IMPDEF: Reserved, RES0 bits set make the CD ILLEGAL.
        if cd.has_res0_set() {
            return Err(bad());
        }
        // §5.5: the fault configuration against the stall and terminate models.
        let stall_illegal = (s.ste.s1stalld() && cd.s())
            || (c.stall_model == 0b01 && cd.s())
            || (c.stall_model == 0b10 && !cd.s());
        if stall_illegal || (c.term_model && !cd.a()) {
            return Err(bad());
        }
        let (epd0, epd1) = (cd.epd0(), cd.epd1());
        // ENDI is IGNORED when both halves are disabled.
        if !(epd0 && epd1)
            && ((c.ttendian == 0b10 && cd.endi()) || (c.ttendian == 0b11 && !cd.endi()))
        {
            return Err(bad());
        }
        // AA64: only VMSAv8-64 is implemented (no VMSAv8-32 LPAE, no VMSAv9-128).
        if !cd.aa64() || !c.aa64 {
            return Err(bad());
        }
        // HA/HD against SMMU_IDR0.HTTU.
        if ((cd.ha() || cd.hd()) && c.httu == 0) || (cd.hd() && c.httu == 1) {
            return Err(bad());
        }
        // 8-bit ASIDs: ASID[15:8] must be zero (the StreamWorld is NS-EL1).
        if !c.asid16 && cd.asid() >> 8 != 0 {
            return Err(bad());
        }
        // §5.4.1.1: validity checks are not made on a half EPDx disables.
        let ttb0 = if epd0 { None } else { Some(self.cd_half(cd, false).ok_or_else(bad)?) };
        let ttb1 = if epd1 { None } else { Some(self.cd_half(cd, true).ok_or_else(bad)?) };
        Ok(Context {
            ttb0,
            ttb1,
            tbi0: cd.tbi0(),
            tbi1: cd.tbi1(),
            // §5.5: CD.S is ILLEGAL unless the stall model allows it (checked above).
            faults: Faults { record: cd.r(), stall: cd.s() },
            asid: cd.asid(),
        })
    }

    /// The tables of one half of a CD (TTB1 if `upper`), or `None` if its TxSZ, TGx or TTBx
    /// make the CD ILLEGAL.
    fn cd_half(&self, cd: &Cd, upper: bool) -> Option<VmsaS1> {
        let c = &self.caps;
        let (tsz, tg, ttb, had) = if upper {
            (cd.t1sz(), cd.tg1().ok()?, cd.ttb1(), cd.had1())
        } else {
            (cd.t0sz(), cd.tg0().ok()?, cd.ttb0(), cd.had0())
        };
        // TGx: a supported granule.
        if !c.granule(tg) {
            return None;
        }
        // CDTxSZInvalid: at most 39 (no STT); at least 16, or 12 with the 64K granule and
        // 52-bit VAs (SMMU_IDR5.VAX).
        let min = if tg == Granule::Size64K && c.vax52 { 12 } else { 16 };
        if !(min..=39).contains(&tsz) {
            return None;
        }
        // IPS: eff_IPS = MIN(IPS, SMMU_IDR5.OAS), Reserved values included.
        let ips = Ps::from_field(cd.ips().min(c.oas_enc)).ok()?;
        // CDTTBxOutOfRange: within eff_IPS, and 48 bits unless the 64K granule (no DS).
        if ttb >> ips.bits() != 0 || (tg != Granule::Size64K && ttb >> 48 != 0) {
            return None;
        }
        let s1 = VmsaS1 {
            ttb,
            tg: pt_granule(tg),
            t0sz: tsz,
            ips,
            oa_52: c.oa52,
            ha: cd.ha(),
            // §5.4 HA: {HD, HA} == 0b10 behaves as 0b00.
            hd: cd.hd() && cd.ha(),
            // HADx is IGNORED unless SMMU_IDR3.HAD.
            hpd: c.had && had,
            wxn: cd.wxn(),
            affd: cd.affd(),
            pan: cd.pan(),
            ttb1: upper,
        };
        s1.check_config().ok()?;
        Some(s1)
    }
}

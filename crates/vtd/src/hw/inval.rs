//! §6.5 cache invalidation: register-based (§6.5.1: CCMD_REG, IOTLB_REG and IVA_REG) and queued
//! (§6.5.2: the invalidation queue and every descriptor type).
//!
//! IMPDEF: the queue is processed synchronously, when software writes IQT_REG (or enables the
//! queue, or clears FSTS.IQE): every descriptor from IQH to IQT has been executed, in order, by
//! the time the write returns. So every invalidation wait descriptor (with or without FN) is a
//! fence: everything before it has completed when its status write or interrupt happens, and
//! nothing after it has started.
//!
//! Profiles ([`VtdParams::profile`](super::VtdParams)): forgiving carries out each
//! invalidation descriptor when the queue reads it. Strict holds the context-cache, IOTLB,
//! PASID-cache and PASID-based IOTLB descriptors until the next wait descriptor (§6.5.2.8: only
//! its completion says the ones before it have completed), or applies each at a seeded point
//! before it (each queue entry and each translation is such a point). Register-based
//! invalidation completes in the write that clears ICC / IVT (§6.5.1), in both profiles.
//!
//! What each invalidation removes is `cache`'s business; here are the interfaces, the
//! granularities they accept and the errors they report: CAIG / IAIG 00b for a request the
//! unit ignored (§11.4.7, §11.4.8.2), FSTS.IQE with IQER.IQEI for a descriptor it cannot
//! process, with IQH left pointing at it and the queue stopped until software clears IQE.
//!
//! Device-TLB invalidations (§6.5.2.5, §6.5.2.6) go to the outbox as ATS Invalidate Requests.
//! Their completions arrive as [`VtdParams::ats`](super::VtdParams) says: at once (the
//! default), some ticks later, or never. The model has no clock of its own: time passes one
//! tick at each register read software makes and at each [`Vtd::tick`] the embedder calls, so
//! a driver polling FSTS lets time pass, and a run repeats exactly. While one is outstanding:
//! - a wait descriptor behind it is fetched (IQH moves past it) and waits: its status write
//!   and interrupt happen when the last outstanding completion arrives, and the queue fetches
//!   nothing after it meanwhile (IMPDEF: every wait descriptor is a fence, with FN or not);
//! - §6.5.2.10 ITE: when the unit's time-out expires, FSTS.ITE is latched with
//!   IQER.ITESID naming the device, the fault event is raised, the pending wait descriptor is
//!   aborted (no status write, no interrupt) and the queue stops, IQH past the aborted wait,
//!   until software clears ITE. IMPDEF: the unit stops waiting for every outstanding
//!   device-TLB invalidation (software resubmits them, as Linux does);
//! - §6.5.2.10 ICE: a completion the embedder sends ([`Vtd::invalidation_completion`]) for
//!   a device with nothing outstanding latches FSTS.ICE with IQER.ICESID and raises the fault
//!   event; the queue goes on.
//!
//! Strict's held invalidations take effect when the wait completes, not when it is fetched; an
//! aborted wait leaves them held for the next one.
//!
//! IMPDEF: the outbox is bounded, and a descriptor whose message (device-TLB invalidation,
//! page group response) finds it full waits, as the unit waits for a device slow to take an
//! ATS Invalidate Request: the queue stops with IQH on that descriptor, no error latched,
//! and goes on when the embedder drains the outbox ([`Vtd::drain_outputs`]) or software
//! writes IQT again. §6.5.2 leaves the pace of fetching to hardware; a wait descriptor behind
//! it completes only once the messages before it were sent (§6.5.2.8), so software polling
//! its status sees the invalidations as done only when the devices have them.

use sviommu_memory::{Hpa, PhysMemory};

use sviommu_pgtable::{Access, WalkCtx};

use super::cache::{self, Span};
use super::regs::RegFile;
use super::translate::{blocked, Blocked};
use super::{DevTlbInvalidation, DmaRequest, Fault, MsiSource, Output, RequestKind, Vtd};
use crate::spec::inv::{
    ats_range, fm_sid_mask, CcGranularity, DescWidth, DescriptorType, InvDesc, InvWait,
    Invalidation, IotlbGranularity, PasidCacheGranularity, PasidIotlbGranularity,
};
use crate::spec::pasid::{PasidEntry, Pgtt};
use crate::spec::regs::iqer::Iqei;
use crate::spec::regs::rtaddr::Ttm;
use crate::spec::regs::{
    self, cap, ccmd, ecap, ectl, fsts, gsts, ics, iotlb_reg, iqa, iqer, iqt, iva_reg, rtaddr,
};
use crate::spec::root::{ContextEntry, ScalableContextEntry};
use crate::spec::FaultReason;
use crate::spec::{bits_from, narrow};

/// Where the hardware acts on a descriptor it has checked, besides its own caches: the hook a
/// virtual VT-d forwards its guest's invalidations through (`sviommu-viommu`). The model calls
/// it for every legal descriptor the invalidation queue processes, after its own checks and
/// effects and before IQH moves past the descriptor, so a wait descriptor behind it completes
/// only after the hook returned (the forwarding is synchronous, §6.5.2.8). The register file
/// is held during the call: the hook reaches the model only through `entries`.
pub trait Forward: Send + Sync {
    /// Acts on `inv`. `entries` reads context and PASID-table entries as a request would. An
    /// error stops the queue with that IQE reason at the descriptor (§6.5.2.10), as the model's
    /// own checks do.
    fn descriptor(&self, inv: &Invalidation, entries: &mut dyn EntryLookup) -> Result<(), Iqei>;
}

/// A requester's context entry, as the latched root table gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// A request would find no entry: the root or context entry is not present, or the root
    /// table is in abort-DMA mode.
    NotPresent,
    /// A present, checked legacy-mode context entry (§9.3).
    Legacy(ContextEntry),
    /// A present, checked scalable-mode context entry (§9.4).
    Scalable(ScalableContextEntry),
}

/// A present, checked PASID-table entry (§9.6) and the PASID that selected it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundPasid {
    /// The PASID (RID_PASID for a request without PASID).
    pub pasid: u32,
    /// The entry.
    pub entry: PasidEntry,
    /// Its PGTT, one the unit runs.
    pub pgtt: Pgtt,
}

/// Context and PASID-table entries read from memory (not the caches: the hook runs where the
/// hardware reads the new configuration) and checked as a request's are, for a [`Forward`]
/// hook. What a request would find not present is `NotPresent` / `None`, recorded nowhere;
/// any other fault is recorded in the fault recording registers as a request's would be
/// (FPD honoured), for a request of the requester and PASID at address 0, and returned.
/// IMPDEF: read whatever GSTS.TES says, from the root table the last SRTP latched.
pub trait EntryLookup {
    /// `rid`'s context entry.
    fn context(&mut self, rid: u16) -> Result<Context, Fault>;
    /// The PASID-table entry under `ce` that a request of `rid` with `pasid` would use
    /// (`None`: a request without PASID, which uses the context entry's RID_PASID, §3.4.3).
    fn pasid_entry(
        &mut self,
        rid: u16,
        ce: &ScalableContextEntry,
        pasid: Option<u32>,
    ) -> Result<Option<FoundPasid>, Fault>;
}

/// The hook's view of the tables, with the register file held.
struct Entries<'a, M: PhysMemory<Addr = Hpa>> {
    vtd: &'a Vtd<M>,
    regs: &'a mut RegFile,
}

impl<M: PhysMemory<Addr = Hpa>> Entries<'_, M> {
    /// A block that a request would take as "no entry" is `Ok(None)`; any other is recorded
    /// (unless its FPD says not to) and returned.
    fn sort<T>(&mut self, rid: u16, pasid: Option<u32>, b: Blocked) -> Result<Option<T>, Fault> {
        use FaultReason as R;
        if matches!(
            b.reason,
            R::RootEntryNotPresent
                | R::ContextEntryNotPresent
                | R::SmRootEntryNotPresent
                | R::SmContextEntryNotPresent
                | R::SmPasidDirEntryNotPresent
                | R::SmPasidEntryNotPresent
        ) {
            return Ok(None);
        }
        let req = DmaRequest { rid, pasid, addr: 0, access: Access::READ };
        let f = Vtd::<M>::fault_of(&req, RequestKind::Untranslated, b.reason, b.fpd);
        if !b.fpd {
            self.vtd.record_in(self.regs, &f);
        }
        Err(f)
    }
}

impl<M: PhysMemory<Addr = Hpa>> EntryLookup for Entries<'_, M> {
    fn context(&mut self, rid: u16) -> Result<Context, Fault> {
        let vtd = self.vtd;
        let root = vtd.root.load(std::sync::atomic::Ordering::Acquire);
        let rta = rtaddr::RTA.in_place(root);
        let mut cx = WalkCtx::new(&vtd.mem, ());
        let found = match Ttm::try_from(rtaddr::TTM.get(root)) {
            _ if rta & bits_from(vtd.params.haw) != 0 => {
                Err(blocked(FaultReason::SmRootTableAddressInvalid, false))
            }
            Ok(Ttm::Legacy) => vtd.read_legacy_context(&mut cx, rta, rid).and_then(|ce| {
                vtd.check_legacy_context(&ce).map_err(|r| blocked(r, ce.fpd()))?;
                Ok(Context::Legacy(ce))
            }),
            Ok(Ttm::Scalable) if vtd.ecap_has(ecap::SMTS) => {
                vtd.read_scalable_context(&mut cx, rta, rid).and_then(|ce| {
                    vtd.check_scalable_context(&ce).map_err(|r| blocked(r, ce.fpd()))?;
                    Ok(Context::Scalable(ce))
                })
            }
            Ok(Ttm::AbortDma) if vtd.ecap_has(ecap::ADMS) => Ok(Context::NotPresent),
            _ => Err(blocked(FaultReason::SmRootTableAddressInvalid, false)),
        };
        match found {
            Ok(c) => Ok(c),
            Err(b) => Ok(self.sort(rid, None, b)?.unwrap_or(Context::NotPresent)),
        }
    }

    fn pasid_entry(
        &mut self,
        rid: u16,
        ce: &ScalableContextEntry,
        pasid: Option<u32>,
    ) -> Result<Option<FoundPasid>, Fault> {
        let vtd = self.vtd;
        let fpd = ce.fpd();
        let p = match pasid {
            Some(_) if !ce.paside() => {
                return self.sort(rid, pasid, blocked(FaultReason::SmContextPasideClear, fpd))
            }
            Some(p) => p,
            None => {
                let p = ce.rid_pasid();
                // §9.4: as a request without PASID checks it (48h).
                if (p != 0 && !vtd.ecap_has(ecap::RPS)) || u64::from(p) >> vtd.pasid_bits() != 0 {
                    return self.sort(rid, None, blocked(FaultReason::SmRidPasidInvalid, fpd));
                }
                p
            }
        };
        let mut cx = WalkCtx::new(&vtd.mem, ());
        let found = vtd.check_pasid_in_directory(ce, p, fpd).and_then(|()| {
            let c = vtd.read_pasid_entry(&mut cx, ce, p, fpd)?;
            let pgtt = vtd.check_pasid_table_entry(&c, fpd)?;
            Ok(FoundPasid { pasid: p, entry: c.pe, pgtt })
        });
        match found {
            Ok(f) => Ok(Some(f)),
            Err(b) => self.sort(rid, pasid, b),
        }
    }
}

/// How many times the status write retries its compare-exchange before writing plainly.
const STATUS_RETRIES: u32 = 8;

/// What became of a descriptor that is not in error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Executed.
    Done,
    /// Not executed: its message finds the outbox full. The queue waits on it.
    Waiting,
    /// A wait descriptor fetched while device-TLB invalidations before it are outstanding:
    /// IQH moves past it, and the queue fetches nothing more until it completes or aborts.
    Fenced,
}

impl<M: PhysMemory<Addr = Hpa>> Vtd<M> {
    /// An invalidation the unit has read: carried out now (forgiving) or when the next
    /// synchronisation completes (strict: an invalidation wait descriptor, §6.5.2.8, or the
    /// register interface's own completion, §6.5.1), or earlier at a seeded point.
    ///
    /// Strict: the invalidation first runs once marking what it selects, so a hit on an entry
    /// it will remove names the missing synchronisation (`sviommu_tlb::sanitize::marking`).
    fn issue(&self, op: impl Fn(&cache::Caches) + Clone + Send + Sync + 'static) {
        if self.params.profile.is_strict() {
            sviommu_tlb::sanitize::marking(|| op(&self.caches));
        }
        self.deferred.issue(&self.caches, op);
    }

    // -----------------------------------------------------------------------------------------
    // What each granularity does (both interfaces)
    // -----------------------------------------------------------------------------------------

    /// §6.5.1 / §6.5.2.1 context-cache invalidation; returns the granularity performed.
    ///
    /// Scalable-mode context entries carry no DID. IMPDEF: a domain-selective invalidation
    /// removes every scalable-mode entry (and reports global granularity while the latched
    /// root table is in scalable mode), and a device-selective one removes the device's
    /// scalable-mode entry whatever the DID.
    fn invalidate_context(&self, g: CcGranularity, did: u16, sid: u16, fm: u8) -> CcGranularity {
        match g {
            CcGranularity::Global => {
                self.issue(|c| c.invalidate_context(|_, _| true));
                CcGranularity::Global
            }
            CcGranularity::Domain => {
                self.issue(move |c| {
                    c.invalidate_context(|_, ce| ce.did().is_none_or(|d| d == did))
                });
                let ttm = rtaddr::TTM.get(self.root.load(std::sync::atomic::Ordering::Acquire));
                if Ttm::try_from(ttm) == Ok(Ttm::Scalable) {
                    CcGranularity::Global
                } else {
                    CcGranularity::Domain
                }
            }
            CcGranularity::Device => {
                let mask = fm_sid_mask(fm);
                self.issue(move |c| {
                    c.invalidate_context(|rid, ce| {
                        rid & mask == sid & mask && ce.did().is_none_or(|d| d == did)
                    });
                });
                CcGranularity::Device
            }
        }
    }

    /// §6.5.1 / §6.5.2.3 IOTLB invalidation (with the paging-structure and leaf caches);
    /// returns the granularity performed, or `None` if the request is invalid (an address mask
    /// above CAP.MAMV).
    fn invalidate_iotlb(
        &self,
        g: IotlbGranularity,
        did: u16,
        addr: u64,
        am: u8,
        ih: bool,
    ) -> Option<IotlbGranularity> {
        match g {
            IotlbGranularity::Global => {
                self.issue(cache::Caches::invalidate_translations);
                Some(IotlbGranularity::Global)
            }
            IotlbGranularity::Domain => {
                self.issue(move |c| c.invalidate_domain(did));
                Some(IotlbGranularity::Domain)
            }
            IotlbGranularity::Page if !self.cap_has(cap::PSI) => {
                // §11.4.8.2: without page-selective support the unit invalidates the domain.
                self.issue(move |c| c.invalidate_domain(did));
                Some(IotlbGranularity::Domain)
            }
            IotlbGranularity::Page => {
                if u64::from(am) > cap::MAMV.get(self.params.cap) {
                    return None;
                }
                let (span, strict) = (Span::pages(addr, am), self.params.profile.is_strict());
                self.issue(move |c| c.invalidate_ss_pages(did, span, ih, strict));
                Some(IotlbGranularity::Page)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // §6.5.1 register-based invalidation
    // -----------------------------------------------------------------------------------------

    /// Whether queued invalidation is enabled: §6.5.2, software must not use the
    /// register-based interface then.
    fn queue_enabled(&self) -> bool {
        gsts::QIES.is_set(self.gsts())
    }

    /// §11.4.7 CCMD_REG written with ICC set: invalidate, then clear ICC and report CAIG.
    /// CAIG 00b: the request was ignored (a reserved CIRG, or the queue is enabled).
    ///
    /// IMPDEF: while queued invalidation is enabled the request is ignored (reported as
    /// CAIG = 00b, so a driver polling ICC sees it finish and can tell); the spec leaves it to
    /// the implementation. Register-based invalidation also acts in scalable mode, where
    /// software is expected to use the queue.
    pub(super) fn context_command(&self, regs: &mut RegFile) {
        let v = regs.ccmd;
        let actual = CcGranularity::try_from(ccmd::CIRG.get(v))
            .ok()
            .filter(|_| !self.queue_enabled())
            .map(|g| {
                let (did, sid, fm) =
                    (narrow(ccmd::DID.get(v)), narrow(ccmd::SID.get(v)), narrow(ccmd::FM.get(v)));
                let g = self.invalidate_context(g, did, sid, fm);
                // §6.5.1: the invalidation has completed when ICC reads clear, which it does
                // when this write returns: the write is its own synchronisation.
                self.deferred.sync(&self.caches);
                g
            });
        regs.ccmd = ccmd::CAIG.set(ccmd::ICC.with(v, false), actual.map_or(0, u64::from));
    }

    /// §11.4.8.2 IOTLB_REG written with IVT set (page-selective takes ADDR, AM and IH from
    /// IVA_REG): invalidate, then clear IVT and report IAIG. IAIG 00b: the request was ignored
    /// (a reserved IIRG, AM above CAP.MAMV, or the queue is enabled, IMPDEF as for CCMD).
    /// DR and DW ask for draining, which a synchronous model has nothing to drain for.
    pub(super) fn iotlb_command(&self, regs: &mut RegFile) {
        let v = regs.iotlb;
        let iva = regs.iva;
        let actual = IotlbGranularity::try_from(iotlb_reg::IIRG.get(v))
            .ok()
            .filter(|_| !self.queue_enabled())
            .and_then(|g| {
                let did = narrow(iotlb_reg::DID.get(v));
                let addr = iva_reg::ADDR.in_place(iva);
                let am = narrow(iva_reg::AM.get(iva));
                let g = self.invalidate_iotlb(g, did, addr, am, iva_reg::IH.is_set(iva));
                // §6.5.1: complete when IVT reads clear, as for CCMD above.
                self.deferred.sync(&self.caches);
                g
            });
        regs.iotlb =
            iotlb_reg::IAIG.set(iotlb_reg::IVT.with(v, false), actual.map_or(0, u64::from));
    }

    // -----------------------------------------------------------------------------------------
    // §6.5.2 the invalidation queue
    // -----------------------------------------------------------------------------------------

    /// GCMD.QIE: enabling reports QIES and processes what is already queued; disabling clears
    /// QIES and resets IQH to 0 (§11.4 IQH_REG).
    pub(super) fn queue_enable(&self, regs: &mut RegFile, on: bool) {
        let bit = gsts::QIES.mask32();
        if on {
            self.gsts.fetch_or(bit, std::sync::atomic::Ordering::AcqRel);
            self.run_queue(regs);
        } else {
            // IMPDEF: descriptors still queued (software must wait until IQH = IQT first) are
            // dropped.
            self.gsts.fetch_and(!bit, std::sync::atomic::Ordering::AcqRel);
            regs.iqh = 0;
            // IMPDEF: so is a wait descriptor waiting for device-TLB invalidations, and the
            // unit stops waiting for them.
            regs.pending_wait = None;
            regs.ats.abandon();
        }
    }

    /// Processes descriptors from IQH up to IQT, unless the queue is disabled or stopped by an
    /// error, or until a descriptor waits for room in the outbox. Bounded by the queue's size.
    pub(super) fn run_queue(&self, regs: &mut RegFile) {
        let stopped = u64::from(regs.reg32(regs::FSTS)) & (fsts::IQE.mask() | fsts::ITE.mask());
        if !self.queue_enabled() || stopped != 0 {
            return;
        }
        // A fetched wait descriptor completes once nothing before it is outstanding.
        if let Some(w) = regs.pending_wait {
            if regs.ats.busy() {
                return;
            }
            regs.pending_wait = None;
            self.complete_wait(regs, &w);
        }
        let width = DescWidth::from_dw(iqa::DW.is_set(regs.iqa));
        let size = iqa::queue_bytes(regs.iqa);
        let base = iqa::IQA.in_place(regs.iqa);
        let tail = iqt::QT.in_place(regs.iqt);
        // §11.4 IQT_REG: with 256-bit descriptors bit 4 must be 0; the tail lies in the queue.
        if tail >= size || tail % width.bytes() != 0 {
            self.queue_error(regs, Iqei::TailPointer);
            return;
        }
        for _ in 0..size / width.bytes() {
            let head = regs.iqh % size;
            if head == tail {
                return;
            }
            self.deferred.tick(&self.caches);
            match self.fetch_and_run(regs, base, head, width) {
                Ok(Step::Done) => regs.iqh = (head + width.bytes()) % size,
                Ok(Step::Fenced) => {
                    regs.iqh = (head + width.bytes()) % size;
                    return;
                }
                // IQH stays at the descriptor that waits (see the module doc), without error.
                Ok(Step::Waiting) => return,
                Err(e) => {
                    // IQH stays at the descriptor that failed.
                    self.queue_error(regs, e);
                    return;
                }
            }
        }
    }

    /// §6.5.2.10 an invalidation queue error: FSTS.IQE, the reason in IQER.IQEI. The queue
    /// stops until software clears IQE.
    fn queue_error(&self, regs: &mut RegFile, why: Iqei) {
        let before = u64::from(regs.reg32(regs::FSTS));
        regs.iqer = iqer::IQEI.set(regs.iqer, u64::from(why));
        regs.latch_fsts(fsts::IQE.mask32());
        // IQE is a fault event condition (FSTS, §11.4.9.1).
        self.fault_event(regs, before);
    }

    /// Fetches the descriptor at `base + head` and runs it.
    fn fetch_and_run(
        &self,
        regs: &mut RegFile,
        base: u64,
        head: u64,
        width: DescWidth,
    ) -> Result<Step, Iqei> {
        let at = base.checked_add(head).ok_or(Iqei::Fetch)?;
        let mut bytes = [0u8; 32];
        let len = usize::try_from(width.bytes()).unwrap_or(32);
        let buf = bytes.get_mut(..len).ok_or(Iqei::Fetch)?;
        self.mem.read(Hpa(at), buf).map_err(|_| Iqei::Fetch)?;
        let mut words = [0u64; 4];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        // A 128-bit descriptor's upper words read as zero (the buffer beyond `len` is).
        let d = InvDesc::from_words(words);
        let step = self.run_descriptor(regs, d, width)?;
        let step = self.forward_descriptor(regs, d, step)?;
        if let (Step::Done | Step::Fenced, Ok(t)) = (step, d.desc_type()) {
            if let Some(c) = self.descriptors.get(usize::from(t as u8)) {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(step)
    }

    /// Hands a descriptor the model has executed to the [`Forward`] hook, if there is one:
    /// where the hardware acts on it, before IQH moves past it. A refusal is the
    /// descriptor's invalidation queue error.
    fn forward_descriptor(&self, regs: &mut RegFile, d: InvDesc, step: Step) -> Result<Step, Iqei> {
        let (Some(hook), Step::Done | Step::Fenced) = (&self.forward, step) else {
            return Ok(step);
        };
        let inv = d.decode().map_err(|_| Iqei::DescriptorType)?;
        hook.descriptor(&inv, &mut Entries { vtd: self, regs })?;
        Ok(step)
    }

    /// Whether the unit supports descriptors of type `t` (an unsupported type is an invalid
    /// type, IQEI 3h). IMPDEF: the interrupt entry cache invalidation is accepted whether or
    /// not interrupt remapping is advertised; it has nothing to invalidate.
    fn descriptor_supported(&self, t: DescriptorType) -> bool {
        let dt = self.ecap_has(ecap::DT);
        let sm = self.ecap_has(ecap::SMTS);
        match t {
            DescriptorType::ContextCache
            | DescriptorType::Iotlb
            | DescriptorType::Wait
            | DescriptorType::InterruptEntryCache => true,
            DescriptorType::DevTlb => dt,
            DescriptorType::PasidIotlb | DescriptorType::PasidCache => sm,
            DescriptorType::PasidDevTlb => sm && dt,
            DescriptorType::PageGroupResponse => self.ecap_has(ecap::PRS),
        }
    }

    /// Runs one descriptor (or finds that its message has to wait), or says why it is invalid.
    fn run_descriptor(
        &self,
        regs: &mut RegFile,
        d: InvDesc,
        width: DescWidth,
    ) -> Result<Step, Iqei> {
        let inv = d.decode().map_err(|_| Iqei::DescriptorType)?;
        let t = d.desc_type().map_err(|_| Iqei::DescriptorType)?;
        if !self.descriptor_supported(t) {
            return Err(Iqei::DescriptorType);
        }
        // IMPDEF: a scalable-mode descriptor in a queue of 128-bit descriptors is reported as
        // an invalid descriptor width (IQEI 5h).
        if width == DescWidth::W128 && t.scalable_only() {
            return Err(Iqei::DescriptorWidth);
        }
        if inv.reserved_bits_set(width) {
            return Err(Iqei::ReservedField);
        }
        let reserved = |_| Iqei::ReservedField;
        match inv {
            Invalidation::ContextCache(c) => {
                self.invalidate_context(c.g().map_err(reserved)?, c.did(), c.sid(), c.fm());
            }
            Invalidation::Iotlb(c) => {
                // IMPDEF: AM above CAP.MAMV is a reserved-field error.
                let g = c.g().map_err(reserved)?;
                self.invalidate_iotlb(g, c.did(), c.addr(), c.am(), c.ih())
                    .ok_or(Iqei::ReservedField)?;
            }
            Invalidation::DevTlb(c) => {
                let (addr, size_lg2) = ats_range(c.addr(), c.s());
                return Ok(self.send_devtlb(
                    regs,
                    DevTlbInvalidation {
                        sid: c.sid(),
                        pfsid: c.pfsid(),
                        pasid: None,
                        global: false,
                        addr,
                        size_lg2,
                        mip: c.mip(),
                    },
                ));
            }
            // Interrupt remapping is not modelled: nothing is cached, nothing to do.
            Invalidation::InterruptEntryCache(_) => {}
            Invalidation::Wait(w) => return self.wait(regs, &w),
            Invalidation::PasidIotlb(c) => match c.g().map_err(reserved)? {
                PasidIotlbGranularity::Pasid => {
                    let (did, pasid) = (c.did(), c.pasid());
                    self.issue(move |ch| ch.invalidate_pasid_translations(did, pasid));
                }
                PasidIotlbGranularity::Page => {
                    if u64::from(c.am()) > cap::MAMV.get(self.params.cap) {
                        return Err(Iqei::ReservedField);
                    }
                    let span = Span::pages(c.addr(), c.am());
                    let (did, pasid, ih) = (c.did(), c.pasid(), c.ih());
                    self.issue(move |ch| ch.invalidate_pasid_pages(did, pasid, span, ih));
                }
            },
            Invalidation::PasidCache(c) => {
                let (did, pasid) = (c.did(), c.pasid());
                let same_did = move |d: Option<u16>| d.is_none_or(|d| d == did);
                match c.g().map_err(reserved)? {
                    PasidCacheGranularity::Domain => {
                        self.issue(move |ch| ch.invalidate_pasid(|_, d| same_did(d)));
                    }
                    PasidCacheGranularity::Pasid => {
                        self.issue(move |ch| ch.invalidate_pasid(|p, d| p == pasid && same_did(d)));
                    }
                    PasidCacheGranularity::Global => {
                        self.issue(|ch| ch.invalidate_pasid(|_, _| true));
                    }
                }
            }
            Invalidation::PasidDevTlb(c) => {
                let (addr, size_lg2) = ats_range(c.addr(), c.s());
                return Ok(self.send_devtlb(
                    regs,
                    DevTlbInvalidation {
                        sid: c.sid(),
                        pfsid: c.pfsid(),
                        pasid: Some(c.pasid()),
                        global: c.g(),
                        addr,
                        size_lg2,
                        mip: c.mip(),
                    },
                ));
            }
            Invalidation::PageGroupResponse(r) => {
                // §7.7.1: RC 2h–Eh are reserved. IMPDEF: reported as a reserved field.
                r.rc().map_err(reserved)?;
                return Ok(self.send_or_wait(Output::PageGroupResponse(r)));
            }
        }
        Ok(Step::Done)
    }

    /// Sends a device-TLB invalidation to its device, or waits for room; once sent, the unit
    /// waits for its completion unless completions are immediate (the module doc).
    fn send_devtlb(&self, regs: &mut RegFile, inv: DevTlbInvalidation) -> Step {
        let step = self.send_or_wait(Output::DevTlbInvalidation(inv));
        if step == Step::Done {
            regs.ats.sent(u32::from(inv.sid));
        }
        step
    }

    /// Sends a descriptor's message to its device, or waits for room (the module doc).
    fn send_or_wait(&self, o: Output) -> Step {
        if self.send_message(o) {
            Step::Done
        } else {
            Step::Waiting
        }
    }

    /// §6.5.2.8 invalidation wait: every earlier descriptor other than a device-TLB
    /// invalidation has completed (processing is synchronous), so the status write and the
    /// completion event happen now, unless a device-TLB invalidation before it is still
    /// outstanding: then it waits, fetched (the module doc).
    ///
    /// IMPDEF: a status address at or above HAW is a reserved-field error; a status write to
    /// an address no memory backs is dropped, as the fabric would drop it. PD (drain page
    /// requests, ECAP.PDS) has nothing to wait for: the unit writes every page request into
    /// the page request queue before the request returns (`prq`).
    fn wait(&self, regs: &mut RegFile, w: &InvWait) -> Result<Step, Iqei> {
        if w.sw() && w.status_addr() & bits_from(self.params.haw) != 0 {
            return Err(Iqei::ReservedField);
        }
        if regs.ats.busy() {
            regs.pending_wait = Some(*w);
            return Ok(Step::Fenced);
        }
        self.complete_wait(regs, w);
        Ok(Step::Done)
    }

    /// A wait descriptor completes: the invalidations before it take effect (strict held
    /// them until now, §6.5.2.8), then its status write and its completion event.
    fn complete_wait(&self, regs: &mut RegFile, w: &InvWait) {
        self.deferred.sync(&self.caches);
        if w.sw() {
            self.status_write(w.status_addr(), w.status_data());
        }
        if w.if_() {
            self.invalidation_event(regs);
        }
    }

    /// One tick of the unit's clock (the module doc): device-TLB invalidation completions that
    /// are due arrive, and a wait descriptor waiting for them completes; or the unit's
    /// time-out expires: ITE. The embedder calls it to let time pass; every register read is
    /// one too.
    pub fn tick(&self) {
        let mut regs = self.lock_regs();
        self.tick_locked(&mut regs);
    }

    fn tick_locked(&self, regs: &mut RegFile) {
        if !regs.ats.busy() {
            // Keep the clock going (a request sent later is timed from now).
            let _ = regs.ats.tick();
            return;
        }
        match regs.ats.tick() {
            Some(sid) => self.invalidation_timeout(regs, sid),
            None => self.run_queue(regs),
        }
    }

    /// §6.5.2.10 ITE: a device-TLB invalidation to `sid` was not completed in time.
    fn invalidation_timeout(&self, regs: &mut RegFile, sid: u32) {
        let before = u64::from(regs.reg32(regs::FSTS));
        regs.iqer = iqer::ITESID.set(regs.iqer, u64::from(sid));
        regs.latch_fsts(fsts::ITE.mask32());
        // The pending wait is aborted: no status write, no interrupt.
        regs.pending_wait = None;
        regs.ats.abandon();
        self.fault_event(regs, before);
    }

    /// A device's ATS Invalidate Completion (PCIe §10.3.2), sent by the embedder playing
    /// device `sid`: it completes the oldest device-TLB invalidation outstanding to `sid`, and
    /// a wait descriptor waiting for it may complete. One that matches nothing outstanding is
    /// §6.5.2.10 ICE: FSTS.ICE, IQER.ICESID = `sid`, the fault event; `false` then.
    pub fn invalidation_completion(&self, sid: u16) -> bool {
        let mut regs = self.lock_regs();
        if regs.ats.complete(u32::from(sid)) {
            self.run_queue(&mut regs);
            return true;
        }
        let before = u64::from(regs.reg32(regs::FSTS));
        regs.iqer = iqer::ICESID.set(regs.iqer, u64::from(sid));
        regs.latch_fsts(fsts::ICE.mask32());
        self.fault_event(&mut regs, before);
        false
    }

    /// What the unit has seen of device-TLB invalidation completions: waited for, completed,
    /// timed out (ITE), unexpected (ICE).
    pub fn devtlb_stats(&self) -> sviommu_tlb::AtsTrackerStats {
        self.lock_regs().ats.stats()
    }

    /// Writes the 32-bit `data` at the dword-aligned `addr` as a release store (a
    /// compare-exchange of the quadword holding it), so software that sees it also sees every
    /// invalidation before it.
    fn status_write(&self, addr: u64, data: u32) {
        let word = Hpa(addr & !7);
        let shift = if addr & 4 != 0 { 32 } else { 0 };
        let mask = u64::from(u32::MAX) << shift;
        let value = u64::from(data) << shift;
        for _ in 0..STATUS_RETRIES {
            let Ok(old) = self.mem.read_u64(word) else { return };
            match self.mem.compare_exchange_u64(word, old, (old & !mask) | value) {
                Ok(Ok(_)) | Err(_) => return,
                Ok(Err(_)) => {}
            }
        }
        // Software kept changing the other half of the quadword: write the dword plainly.
        let _ = self.mem.write(Hpa(addr), &data.to_le_bytes());
    }

    /// §6.5.2.8 IF: the invalidation completion event. ICS.IWC is set; if it was clear, the
    /// interrupt message goes out (IECTL.IM clear) or is held as IECTL.IP until software
    /// unmasks it. While IWC stays set, later completions raise no new message.
    fn invalidation_event(&self, regs: &mut RegFile) {
        let iwc = ics::IWC.mask32();
        if regs.reg32(regs::ICS) & iwc != 0 {
            return;
        }
        regs.set_bits(regs::ICS, iwc);
        if u64::from(regs.reg32(regs::IECTL)) & ectl::IM.mask() != 0 {
            regs.set_bits(regs::IECTL, ectl::IP.mask32());
        } else {
            self.send_invalidation_msi(regs);
        }
    }

    /// Software cleared ICS.IWC: a held message is no longer pending.
    pub(super) fn iwc_cleared(&self, regs: &mut RegFile) {
        regs.clear_bits(regs::IECTL, ectl::IP.mask32());
    }

    /// Software cleared IECTL.IM: a held message goes out now.
    pub(super) fn iectl_unmasked(&self, regs: &mut RegFile) {
        let ip = ectl::IP.mask32();
        if regs.reg32(regs::IECTL) & ip != 0 {
            regs.clear_bits(regs::IECTL, ip);
            self.send_invalidation_msi(regs);
        }
    }

    fn send_invalidation_msi(&self, regs: &RegFile) {
        let addr =
            (u64::from(regs.reg32(regs::IEUADDR)) << 32) | u64::from(regs.reg32(regs::IEADDR));
        let data = regs.reg32(regs::IEDATA);
        self.send_msi(MsiSource::InvalidationCompletion, addr, data);
    }
}

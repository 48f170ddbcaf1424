//! The request path (§3.4 to §3.8): the latched root table, the context entry, in scalable mode
//! the PASID directory and PASID-table entry, then the walk its translation type selects.
//!
//! Every structure is read whole, as one counted read, into a stack buffer; every check raises
//! the reason Appendix A names for it, in the order the structures are used. The caches come
//! first, as on the silicon: the context cache by source-id, the PASID cache by source-id and
//! PASID, then the IOTLB by DID, PASID and page; a walk resumes from the paging-structure
//! caches and, nested, finds second-stage translations in the leaf cache. A translation
//! allocates nothing and a hit takes only read locks; no lock is held across a table read. A
//! fault is recorded (`record`) under the register lock, after the walk.
//!
//! Every cache's invalidation epoch is read before the first table read, and every insert
//! carries it: a translation that began before an invalidation completed cannot insert what it
//! read (`sviommu_tlb::Cache::insert` refuses it).

use std::cell::Cell;
use std::sync::atomic::Ordering;

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage};
use sviommu_pgtable::x86::{self, X86Paging};
use sviommu_pgtable::{
    Access, Direct, Fault as PtFault, Leaf, Located, Perms, Stage, TableFetch, ThroughStage2, Walk,
    WalkCtx, WalkObserver,
};

use super::cache::{
    CachedContext, CachedPasid, Epochs, Hints, IotlbEntry, IotlbHit, IotlbKey, IotlbResult, Kind,
    PasidKey, Sanitizing, WalkTags,
};
use super::reasons::{walk_reason, WalkKind};
use super::sanitize::Hit;
use super::{DmaRequest, Fault, RequestKind, Translation, Vtd};
use crate::spec::pasid::{self, PasidDirEntry, PasidEntry, Pgtt};
use crate::spec::regs::{ecap, gsts, rtaddr, rtaddr::Ttm};
use crate::spec::root::{
    self, ContextEntry, RootEntry, ScalableContextEntry, ScalableRootEntry, TranslationType,
};
use crate::spec::{bits_from, is_interrupt_address, Aw, FaultReason, Fspm};
use sviommu_tlb::sanitize::{Recorder, Tee};
use sviommu_tlb::{MemoInfo, MemoKey, MemoTrail};

/// A blocked request before it becomes a [`Fault`]: the reason and whether fault processing is
/// disabled for it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Blocked {
    pub(super) reason: FaultReason,
    pub(super) fpd: bool,
}

/// Blocked for `reason`, with the FPD state gathered so far.
pub(super) fn blocked(reason: FaultReason, fpd: bool) -> Blocked {
    Blocked { reason, fpd }
}

/// IMPDEF: the page size reported when nothing was walked (pass-through, translation disabled,
/// interrupt requests).
const UNWALKED_PAGE_LG2: u8 = 12;

/// `base + index * size`, the address of a table's entry; `None` on overflow (read as an access
/// error, like an address outside memory).
fn entry_addr(base: u64, index: u64, size: u64) -> Option<u64> {
    base.checked_add(index.checked_mul(size)?)
}

/// Removes what the PASID-table entry withholds from every translation through it: supervisor
/// rights without SRE, execute rights without ERE.
fn restrict(perms: Perms, pe: &PasidEntry) -> Perms {
    let mut p = perms;
    if !pe.sre() {
        p = p.without(Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::PRIV_X));
    }
    if !pe.ere() {
        p = p.without(Perms::PRIV_X.union(Perms::USER_X));
    }
    p
}

const fn ss_levels(aw: Aw) -> vtd_ss::Levels {
    match aw {
        Aw::Bits39 => vtd_ss::Levels::Three,
        Aw::Bits48 => vtd_ss::Levels::Four,
        Aw::Bits57 => vtd_ss::Levels::Five,
    }
}

/// The spec level of a table with `levels` levels' root.
fn top_level(levels: usize) -> i8 {
    i8::try_from(levels).unwrap_or(i8::MAX)
}

/// A level count as the cache tags hold it.
fn level_count(levels: usize) -> u8 {
    u8::try_from(levels).unwrap_or(u8::MAX)
}

/// What a translation shares with the caches while it runs: the epochs read when it began
/// (every insert, and every walk's [`Hints`], carries them).
struct Pass<'r> {
    epochs: Epochs,
    /// Strict: what the translation read, for the sanitizer (`None` in forgiving).
    rec: Option<&'r Recorder>,
    /// What kind of request this is: translation and translated requests need the context
    /// entry's permission for a device-TLB, and a translated request is not walked.
    kind: RequestKind,
    /// An untranslated request in forgiving: where its answer is remembered if the caches
    /// give it.
    memo: Option<MemoTrail>,
}

/// Where a translation's IOTLB entry lives and what kind of walk makes it.
#[derive(Clone, Copy)]
struct Slot {
    did: u16,
    pasid: Option<u32>,
    kind: Kind,
}

/// Whether caching mode caches this walk fault (§6.1): a not-present second-stage entry, for
/// the request's own address or for a first-stage table fetch. Software need not invalidate
/// after making a first-stage entry present ("other than first-stage" entries), so a
/// first-stage not-present result is never cached.
fn cm_caches(f: &sviommu_pgtable::Fault) -> bool {
    f.kind == sviommu_pgtable::FaultKind::Translation && f.stage == Stage::S2
}

/// The configuration-cache sequence (§6.1): the entry `cached` holds, else the one `read`
/// fetches, which is inserted before its checks under caching mode (not-present and erroneous
/// entries may be cached then), and only once `check` accepts it otherwise. Returns the entry
/// and what `check` made of it.
fn cached_or_read<V: Copy, T>(
    cm: bool,
    cached: Option<V>,
    read: impl FnOnce() -> Result<V, Blocked>,
    check: impl FnOnce(&V) -> Result<T, Blocked>,
    insert: impl Fn(V),
) -> Result<(V, T), Blocked> {
    let fresh = cached.is_none();
    let v = match cached {
        Some(v) => v,
        None => read()?,
    };
    if fresh && cm {
        insert(v);
    }
    let checked = check(&v)?;
    if fresh && !cm {
        insert(v);
    }
    Ok((v, checked))
}

/// What the context entry selected for a scalable-mode request: the PASID it is translated
/// with, the access it is checked as, and the FPD state so far.
#[derive(Clone, Copy)]
struct Selected {
    pasid: u32,
    access: Access,
    fpd: bool,
}

/// One stage's walk to run: its tables, how `reasons` names its faults, the caches' tags.
struct Planned<'t, W> {
    tables: &'t W,
    kind: WalkKind,
    tags: WalkTags,
}

impl Pass<'_> {
    /// The context entry came from the context cache.
    fn used_context(&self, dep: sviommu_tlb::Dep) {
        if let Some(t) = &self.memo {
            t.found(0, dep);
        }
    }
}

impl<'t> Planned<'t, VtdSecondStage> {
    /// The second stage alone (legacy mode with `legacy`, else PGTT second-stage only).
    fn second_stage_of(slot: Slot, ss: &'t VtdSecondStage, legacy: bool) -> Self {
        let levels = ss.levels.count();
        let kind = if legacy {
            WalkKind::Legacy
        } else {
            WalkKind::SecondStage { ss_top: top_level(levels) }
        };
        let tags = WalkTags {
            did: slot.did,
            pasid: slot.pasid,
            fs_levels: 0,
            ss_levels: level_count(levels),
            nested: false,
        };
        Self { tables: ss, kind, tags }
    }

    fn second_stage(slot: Slot, ss: &'t VtdSecondStage) -> Self {
        Self::second_stage_of(slot, ss, false)
    }
}

impl<'t> Planned<'t, X86Paging> {
    /// PGTT first-stage only.
    fn first_stage(slot: Slot, fs: &'t X86Paging) -> Self {
        let levels = fs.levels.count();
        let tags = WalkTags {
            did: slot.did,
            pasid: slot.pasid,
            fs_levels: level_count(levels),
            ss_levels: 0,
            nested: false,
        };
        Self { tables: fs, kind: WalkKind::FirstStage { fs_top: top_level(levels) }, tags }
    }
}

impl<M: PhysMemory<Addr = Hpa>> Vtd<M> {
    /// Translates one untranslated DMA request, or blocks it with its architected fault reason.
    ///
    /// §3.14: a request without PASID to the interrupt address range is an interrupt request
    /// and is not remapped ([`Translation::interrupt`]). With translation disabled (GSTS.TES
    /// clear) every request passes untranslated. Otherwise the root table latched by the last
    /// SRTP, in the mode its TTM selects, decides.
    pub fn translate(&self, req: &DmaRequest) -> Result<Translation, Fault> {
        let key = MemoKey::new(req.rid.into(), req.pasid, req.access, req.addr);
        if let Some(hit) = key.and_then(|k| self.recall(k, req.addr)) {
            return Ok(hit);
        }
        self.translate_missed(req, key)
    }

    /// [`translate`](Self::translate) past a memo probe that missed; out of line, so that a
    /// memo hit pays for nothing it does not use.
    #[inline(never)]
    fn translate_missed(
        &self,
        req: &DmaRequest,
        key: Option<MemoKey>,
    ) -> Result<Translation, Fault> {
        let kind = RequestKind::Untranslated;
        let (result, ()) = self.run_probed(req, kind, key, ());
        result.map_err(|b| self.fault(req, kind, b.reason, b.fpd))
    }

    /// [`translate`](Self::translate), reporting every configuration structure and table entry
    /// the model reads to `observer` (what `sviommu inspect --walk` prints).
    pub fn translate_observed<O: WalkObserver>(
        &self,
        req: &DmaRequest,
        observer: O,
    ) -> (Result<Translation, Fault>, O) {
        let kind = RequestKind::Untranslated;
        let (result, observer) = self.run(req, kind, observer);
        (result.map_err(|b| self.fault(req, kind, b.reason, b.fpd)), observer)
    }

    /// The translation the memo remembers for `key` (a request to `addr`), if its entries all
    /// still hold (`Caches::recall`).
    #[inline]
    fn recall(&self, key: MemoKey, addr: u64) -> Option<Translation> {
        let (out, info) = self.caches.recall(key)?;
        let output = out | (addr & low_mask(12));
        let perms = info.perms;
        Some(Translation { output, page_lg2: info.lg2, perms, reads: 0, interrupt: false })
    }

    /// Runs `req` as a request of `kind` through the caches and tables; a block is returned,
    /// not recorded (the caller decides: ATS does not record every block).
    pub(super) fn run<O: WalkObserver>(
        &self,
        req: &DmaRequest,
        kind: RequestKind,
        observer: O,
    ) -> (Result<Translation, Blocked>, O) {
        // A request the caches answered before: one probe. (The memo exists in the forgiving
        // profile only, where `run_probed`'s tick does nothing: probing first changes nothing.)
        let key = (kind == RequestKind::Untranslated)
            .then(|| MemoKey::new(req.rid.into(), req.pasid, req.access, req.addr))
            .flatten();
        if let Some(hit) = key.and_then(|k| self.recall(k, req.addr)) {
            return (Ok(hit), observer);
        }
        self.run_probed(req, kind, key, observer)
    }

    /// [`run`](Self::run) once the memo has been probed for `key` (`None`: not a request the
    /// memo answers) and missed.
    fn run_probed<O: WalkObserver>(
        &self,
        req: &DmaRequest,
        kind: RequestKind,
        key: Option<MemoKey>,
        observer: O,
    ) -> (Result<Translation, Blocked>, O) {
        // Strict, seeded: a held invalidation may take effect here (one flag load otherwise).
        self.deferred.tick(&self.caches);
        if self.params.profile.is_strict() {
            // Before any table read: the epochs every insert of this translation carries.
            let epochs = self.caches.epochs();
            return self.run_sanitized(req, kind, observer, epochs);
        }
        // Before any lookup: the memo's generation (in the trail), then the epochs.
        let memo = key.and_then(|k| self.caches.memo_trail(k));
        let epochs = self.caches.epochs();
        let mut cx = WalkCtx::new(&self.mem, observer);
        let pass = Pass { epochs, kind, rec: None, memo };
        let result = self.translate_inner(&mut cx, req, &pass);
        (result, cx.observer)
    }

    /// Strict: [`run`](Self::run) recording every word it reads, so each entry it caches keeps
    /// the words it was built from and each hit can check them (`sanitize`).
    #[cold]
    fn run_sanitized<O: WalkObserver>(
        &self,
        req: &DmaRequest,
        kind: RequestKind,
        observer: O,
        epochs: Epochs,
    ) -> (Result<Translation, Blocked>, O) {
        let rec = Recorder::default();
        let mut cx = WalkCtx::new(&self.mem, Tee { inner: observer, rec: &rec });
        let pass = Pass { epochs, kind, rec: Some(&rec), memo: None };
        let result = self.translate_inner(&mut cx, req, &pass);
        (result, cx.observer.inner)
    }

    /// Strict: checks a configuration-cache or IOTLB hit.
    fn check_hit(&self, pass: &Pass<'_>, hit: Hit) {
        if pass.rec.is_some() {
            self.sanitize(hit);
        }
    }

    fn translate_inner<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &DmaRequest,
        pass: &Pass<'_>,
    ) -> Result<Translation, Blocked> {
        // §3.14: not DMA, whatever the tables say (and whether or not translation is enabled).
        if req.pasid.is_none() && is_interrupt_address(req.addr) {
            return Ok(Translation {
                output: req.addr,
                page_lg2: UNWALKED_PAGE_LG2,
                perms: Perms::PRIV_W.union(Perms::USER_W),
                reads: 0,
                interrupt: true,
            });
        }
        // §11.4.4 TE = 0: DMA remapping is disabled and requests are not translated.
        // IMPDEF: a request with PASID passes as well, its prefix ignored.
        if !gsts::TES.is_set(self.gsts()) {
            return Ok(self.untranslated(req.addr, Perms::ALL, 0));
        }
        let root = self.root.load(Ordering::Acquire);
        let rta = rtaddr::RTA.in_place(root);
        // §11.4.6: TTM must name a mode the unit supports, and RTA lie below HAW.
        let rta_valid = rta & bits_from(self.params.haw) == 0;
        match Ttm::try_from(rtaddr::TTM.get(root)) {
            Ok(Ttm::Legacy) if rta_valid => self.legacy(cx, rta, req, pass),
            Ok(Ttm::Scalable) if rta_valid && self.ecap_has(ecap::SMTS) => {
                self.scalable(cx, rta, req, pass)
            }
            // IMPDEF: abort-DMA mode blocks every request as if no root entry were present
            // (the mode exists to spare software a table of not-present entries).
            Ok(Ttm::AbortDma) if self.ecap_has(ecap::ADMS) => {
                Err(blocked(FaultReason::RootEntryNotPresent, false))
            }
            // IMPDEF: 30h in legacy mode too; it is the only reason for a bad RTADDR_REG.
            _ => Err(blocked(FaultReason::SmRootTableAddressInvalid, false)),
        }
    }

    /// A request that is not translated: the output is the input.
    fn untranslated(&self, addr: u64, perms: Perms, reads: u32) -> Translation {
        Translation { output: addr, page_lg2: UNWALKED_PAGE_LG2, perms, reads, interrupt: false }
    }

    // -----------------------------------------------------------------------------------------
    // Legacy mode (§3.4.2, §9.1, §9.3)
    // -----------------------------------------------------------------------------------------

    fn legacy<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        rta: u64,
        req: &DmaRequest,
        pass: &Pass<'_>,
    ) -> Result<Translation, Blocked> {
        use FaultReason as R;
        let haw = self.params.haw;
        // Legacy mode has no PASID-granular translation.
        if req.pasid.is_some() {
            return Err(blocked(R::SmLegacyRequestWithPasid, false)); // 31h
        }
        // IMPDEF: a cached scalable-mode entry (software changed modes without the global
        // invalidation §6.5 asks for) is not used; the legacy entry is read instead.
        let cached = match self.caches.context.get_dep(&req.rid) {
            Some((c @ CachedContext::Legacy(ce), dep)) => {
                self.check_hit(pass, Hit::Context(req.rid, c));
                pass.used_context(dep);
                Some(ce)
            }
            _ => None,
        };
        // §9.3: FPD is evaluated whether or not the entry is present.
        let (ce, aw) = cached_or_read(
            self.caching_mode(),
            cached,
            || self.read_legacy_context(cx, rta, req.rid),
            |ce| self.check_legacy_context(ce).map_err(|r| blocked(r, ce.fpd())),
            |ce| {
                let ce = CachedContext::Legacy(ce);
                self.caches.insert_context(req.rid, ce, &pass.epochs, pass.rec);
            },
        )?;
        let fpd = ce.fpd();
        // §9.3 TT: only 01b lets a device-TLB ask for translations and use them; 00b and 10b
        // block translation and translated requests (0Dh).
        if pass.kind != RequestKind::Untranslated && ce.tt() != Ok(TranslationType::All) {
            return Err(blocked(R::TranslationBlocked, fpd)); // 0Dh
        }
        // §4.2.4: a translated request's address is already a host address.
        if pass.kind == RequestKind::Translated {
            return Ok(self.untranslated(req.addr, Perms::ALL, cx.reader.reads()));
        }
        // Execute and privilege ride on the PASID prefix; a request without one has neither.
        let access = Access { write: req.access.write, exec: false, privileged: false };
        let Some(aw) = aw else {
            // Pass-through. IMPDEF: an address the host cannot hold is beyond the (largest)
            // AGAW that pass-through entries are programmed with.
            if req.addr & bits_from(haw) != 0 {
                return Err(blocked(R::AddressBeyondAgaw, fpd)); // 04h
            }
            return Ok(self.untranslated(req.addr, Perms::ALL, cx.reader.reads()));
        };
        let slot = Slot { did: ce.did(), pasid: None, kind: Kind::Legacy };
        if let Some(hit) = self.iotlb_hit(slot, req.addr, access, cx, pass) {
            return hit.map_err(|r| blocked(r, fpd));
        }
        let ss = VtdSecondStage {
            root: ce.ssptptr(),
            levels: ss_levels(aw),
            mgaw: self.mgaw_bits(),
            haw,
            sllps: self.sslps(),
            execute: false,
            snoop: self.ecap_has(ecap::SC),
            ad: false,
        };
        let plan = Planned::second_stage_of(slot, &ss, true);
        let leaf = self.walk_one(cx, slot, plan, req.addr, access, pass);
        let leaf = leaf.map_err(|r| blocked(r, fpd))?;
        if is_interrupt_address(leaf.output) {
            return Err(blocked(R::InterruptAddressRange, fpd)); // 0Eh
        }
        self.cache_translation(slot, req.addr, (&leaf, None), leaf.perms, pass);
        Ok(self.walked(leaf, leaf.perms, cx))
    }

    /// Reads `rid`'s legacy root and context entries.
    pub(super) fn read_legacy_context<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        rta: u64,
        rid: u16,
    ) -> Result<ContextEntry, Blocked> {
        use FaultReason as R;
        let [bus, devfn] = rid.to_be_bytes();
        let at = entry_addr(rta, bus.into(), RootEntry::BYTES);
        let re = at.and_then(|a| cx.read_structure("root entry", a)).map(RootEntry::from_words);
        let re = re.ok_or(blocked(R::RootTableAccess, false))?; // 08h
        if !re.p() {
            return Err(blocked(R::RootEntryNotPresent, false)); // 01h
        }
        if re.reserved_bits_set(self.params.haw) {
            return Err(blocked(R::RootEntryReserved, false)); // 0Ah
        }
        let at = entry_addr(re.ctp(), devfn.into(), ContextEntry::BYTES);
        let ce =
            at.and_then(|a| cx.read_structure("context entry", a)).map(ContextEntry::from_words);
        ce.ok_or(blocked(R::ContextTableAccess, false)) // 09h
    }

    /// The checks of a legacy context entry (§9.3): the AW its second stage uses, or `None` for
    /// pass-through; else the reason.
    pub(super) fn check_legacy_context(
        &self,
        ce: &ContextEntry,
    ) -> Result<Option<Aw>, FaultReason> {
        use FaultReason as R;
        if !ce.p() {
            return Err(R::ContextEntryNotPresent); // 02h
        }
        if ce.reserved_bits_set(self.params.haw) {
            return Err(R::ContextEntryReserved); // 0Bh
        }
        let invalid = R::ContextEntryInvalid; // 03h
        match ce.tt().map_err(|_| invalid)? {
            TranslationType::PassThrough if self.ecap_has(ecap::PT) => Ok(None),
            TranslationType::PassThrough => Err(invalid),
            // TT = 01b allows a device-TLB, which needs ECAP.DT.
            TranslationType::All if !self.ecap_has(ecap::DT) => Err(invalid),
            TranslationType::UntranslatedOnly | TranslationType::All => {
                let aw = ce.aw().map_err(|_| invalid)?;
                if self.sagaw_has(aw) {
                    Ok(Some(aw))
                } else {
                    Err(invalid)
                }
            }
        }
    }

    /// The IOTLB's answer for `addr`, if it has one that serves `access`: a translation that
    /// allows it (and, for a write, is dirty: otherwise the walk runs again to set D), or under
    /// caching mode a cached not-present result.
    ///
    /// IMPDEF: an entry that does not allow the access is not reported from the IOTLB; the walk
    /// runs and reports the architected reason from the tables.
    fn iotlb_hit<O: WalkObserver>(
        &self,
        slot: Slot,
        addr: u64,
        access: Access,
        cx: &WalkCtx<'_, M, O>,
        pass: &Pass<'_>,
    ) -> Option<Result<Translation, FaultReason>> {
        let IotlbHit { entry: e, lg2, dep, misses } =
            self.caches.iotlb_lookup(slot.did, slot.pasid, addr)?;
        // Strict: only an entry that answers is checked (one that does not serve the access
        // is walked again, so the driver relied on nothing).
        let used = || {
            if pass.rec.is_some() {
                let key = IotlbKey { did: slot.did, pasid: slot.pasid, page: addr >> lg2, lg2 };
                self.sanitize(Hit::Iotlb(key, e));
            }
        };
        match e.result {
            IotlbResult::Mapped { out_page, perms, dirty } => {
                if !perms.allows(access) || (access.write && !dirty) {
                    return None;
                }
                used();
                let output = out_page | (addr & low_mask(lg2));
                if let Some(t) = &pass.memo {
                    // Legacy mode has no PASID-table entry.
                    let info = MemoInfo { lg2, perms, misses };
                    let answer = (output & !low_mask(12), info);
                    self.caches.remember(t, slot.kind != Kind::Legacy, answer, dep);
                }
                Some(Ok(Translation {
                    output,
                    page_lg2: lg2,
                    perms,
                    reads: cx.reader.reads(),
                    interrupt: false,
                }))
            }
            IotlbResult::NotPresent => Some(Err({
                used();
                match slot.kind {
                    Kind::Legacy if access.write => FaultReason::WriteDenied, // 05h
                    Kind::Legacy => FaultReason::ReadDenied,                  // 06h
                    _ => FaultReason::SmSsEntryNotPresent,                    // 79h
                }
            })),
        }
    }

    /// Caches a walk's translation (`perms`: what it allows after the PASID-table entry's
    /// restrictions; `gpa`: the first and last guest physical address a nested walk used).
    fn cache_translation(
        &self,
        slot: Slot,
        addr: u64,
        (leaf, gpa): (&Leaf, Option<(u64, u64)>),
        perms: Perms,
        pass: &Pass<'_>,
    ) {
        let lg2 = leaf.page_lg2;
        let page_mask = sviommu_memory::bits::low_mask(lg2);
        let out_page = leaf.output & !page_mask;
        let entry = IotlbEntry {
            kind: slot.kind,
            global: leaf.global,
            gpa: gpa.unwrap_or((u64::MAX, 0)),
            result: IotlbResult::Mapped { out_page, perms, dirty: leaf.dirty },
        };
        self.caches.insert_iotlb(slot.did, slot.pasid, addr, lg2, entry, &pass.epochs, pass.rec);
    }

    /// §6.1: under caching mode, a second-stage not-present result is cached too (as one 4K
    /// page).
    fn cache_not_present(&self, slot: Slot, addr: u64, f: &sviommu_pgtable::Fault, pass: &Pass) {
        if !self.caching_mode() || !cm_caches(f) {
            return;
        }
        let entry = IotlbEntry {
            kind: slot.kind,
            global: false,
            gpa: (u64::MAX, 0),
            result: IotlbResult::NotPresent,
        };
        self.caches.insert_iotlb(slot.did, slot.pasid, addr, 12, entry, &pass.epochs, pass.rec);
    }

    fn walked<O: WalkObserver>(
        &self,
        leaf: Leaf,
        perms: Perms,
        cx: &WalkCtx<'_, M, O>,
    ) -> Translation {
        Translation {
            output: leaf.output,
            page_lg2: leaf.page_lg2,
            perms,
            reads: cx.reader.reads(),
            interrupt: false,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Scalable mode (§3.4.3, §9.2, §9.4–§9.6)
    // -----------------------------------------------------------------------------------------

    fn scalable<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        rta: u64,
        req: &DmaRequest,
        pass: &Pass<'_>,
    ) -> Result<Translation, Blocked> {
        use FaultReason as R;
        // IMPDEF: a cached legacy entry (modes changed without the global invalidation) is not
        // used; the scalable-mode entry is read instead.
        let cached = match self.caches.context.get_dep(&req.rid) {
            Some((c @ CachedContext::Scalable(ce), dep)) => {
                self.check_hit(pass, Hit::Context(req.rid, c));
                pass.used_context(dep);
                Some(ce)
            }
            _ => None,
        };
        // §9.4: FPD is evaluated whether or not the entry is present, here and below.
        let (ce, ()) = cached_or_read(
            self.caching_mode(),
            cached,
            || self.read_scalable_context(cx, rta, req.rid),
            |ce| self.check_scalable_context(ce).map_err(|r| blocked(r, ce.fpd())),
            |ce| {
                let ce = CachedContext::Scalable(ce);
                self.caches.insert_context(req.rid, ce, &pass.epochs, pass.rec);
            },
        )?;
        let fpd = ce.fpd();
        // §9.4 DTE: translation and translated requests need the device-TLB enabled (44h).
        if pass.kind != RequestKind::Untranslated && !ce.dte() {
            return Err(blocked(R::SmContextDteClear, fpd)); // 44h
        }
        // §4.2.4: a translated request's address is already a host address. DEVIATION: its
        // PASID (if any) is not checked against the PASID table.
        if pass.kind == RequestKind::Translated {
            return Ok(self.untranslated(req.addr, Perms::ALL, cx.reader.reads()));
        }
        // §3.4.3: a request without PASID is translated with the context entry's RID_PASID,
        // at the privilege RID_PRIV gives it, never as an execute request.
        let (pasid, access) = match req.pasid {
            Some(p) => {
                if !ce.paside() {
                    return Err(blocked(R::SmContextPasideClear, fpd)); // 45h
                }
                (p, req.access)
            }
            None => {
                let p = ce.rid_pasid();
                // §9.4: RID_PASID must be 0 unless ECAP.RPS, and a PASID the unit supports.
                if (p != 0 && !self.ecap_has(ecap::RPS)) || u64::from(p) >> self.pasid_bits() != 0 {
                    return Err(blocked(R::SmRidPasidInvalid, fpd)); // 48h
                }
                let privileged = ce.rid_priv() && self.ecap_has(ecap::RPRIVS);
                (p, Access { write: req.access.write, exec: false, privileged })
            }
        };
        let sel = Selected { pasid, access, fpd };
        let (pe, pgtt, sel) = self.scalable_pasid(cx, &ce, req.rid, sel, pass)?;
        self.scalable_walk(cx, req, (&pe, pgtt), sel, pass)
    }

    /// The PASID-table entry `sel.pasid` selects under `ce` (§9.5, §9.6), from the PASID cache
    /// or read and checked; with the FPD state it adds.
    fn scalable_pasid<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        ce: &ScalableContextEntry,
        rid: u16,
        sel: Selected,
        pass: &Pass<'_>,
    ) -> Result<(PasidEntry, Pgtt, Selected), Blocked> {
        use FaultReason as R;
        let Selected { pasid, access, fpd } = sel;
        self.check_pasid_in_directory(ce, pasid, fpd)?;
        let key = PasidKey { rid, pasid };
        let cached = self.caches.pasid.get_dep(&key).map(|(v, dep)| {
            self.check_hit(pass, Hit::Pasid(key, v));
            if let Some(t) = &pass.memo {
                t.found(1, dep);
            }
            v
        });
        let (CachedPasid { pe, dir_fpd }, pgtt) = cached_or_read(
            self.caching_mode(),
            cached,
            || self.read_pasid_entry(cx, ce, pasid, fpd),
            |c| self.check_pasid_table_entry(c, fpd),
            |v| self.caches.insert_pasid(key, v, &pass.epochs, pass.rec),
        )?;
        let fpd = fpd | dir_fpd | pe.fpd();
        if access.exec && !pe.ere() {
            return Err(blocked(R::SmPasidEreClear, fpd)); // 5Ch
        }
        if access.privileged && !pe.sre() {
            return Err(blocked(R::SmPasidSreClear, fpd)); // 5Dh
        }
        Ok((pe, pgtt, Selected { fpd, ..sel }))
    }

    /// The translation a checked PASID-table entry's PGTT selects (§9.6): pass-through, or the
    /// IOTLB, else a first-stage, second-stage or nested walk.
    fn scalable_walk<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &DmaRequest,
        (pe, pgtt): (&PasidEntry, Pgtt),
        sel: Selected,
        pass: &Pass<'_>,
    ) -> Result<Translation, Blocked> {
        use FaultReason as R;
        let Selected { pasid, access, fpd } = sel;
        let kind = match pgtt {
            Pgtt::PassThrough => {
                // IMPDEF: the output must be a host address; beyond HAW it is beyond what the
                // translation supports.
                if req.addr & bits_from(self.params.haw) != 0 {
                    return Err(blocked(R::SmAddressBeyondMgaw, fpd)); // 83h
                }
                // §3.14: a translation into the interrupt address range is blocked.
                if is_interrupt_address(req.addr) {
                    return Err(blocked(R::SmInterruptAddressRange, fpd)); // 87h
                }
                let perms = restrict(Perms::ALL, pe);
                return Ok(self.untranslated(req.addr, perms, cx.reader.reads()));
            }
            Pgtt::FirstStage => Kind::FirstStage,
            Pgtt::SecondStage => Kind::SecondStage,
            Pgtt::Nested => Kind::Nested,
        };
        let slot = Slot { did: pe.did(), pasid: Some(pasid), kind };
        if let Some(hit) = self.iotlb_hit(slot, req.addr, access, cx, pass) {
            return hit.map_err(|r| blocked(r, fpd));
        }
        let invalid = blocked(R::SmPasidEntryInvalid, fpd); // 5Bh
        let walked = match kind {
            Kind::SecondStage => {
                let ss = self.second_stage(pe).ok_or(invalid)?;
                self.walk_one(cx, slot, Planned::second_stage(slot, &ss), req.addr, access, pass)
                    .map(|leaf| (leaf, None))
            }
            Kind::FirstStage => {
                let fs = self.first_stage(pe).ok_or(invalid)?;
                self.walk_one(cx, slot, Planned::first_stage(slot, &fs), req.addr, access, pass)
                    .map(|leaf| (leaf, None))
            }
            Kind::Nested | Kind::Legacy => {
                let fs = self.first_stage(pe).ok_or(invalid)?;
                let ss = self.second_stage(pe).ok_or(invalid)?;
                // A nested FSPTPTR is a guest address (not a reserved-bit check); first-stage
                // table addresses end at bit 51, so one above is beyond the second stage.
                // DEVIATION: with a 57-bit AGAW and MGAW the spec would walk the second stage
                // for a root between 2^52 and 2^57; the first-stage format cannot name one.
                if pe.fsptptr() & !x86::ADDR.mask() != 0 {
                    return Err(blocked(R::SmNestedFsAddressBeyondSs, fpd)); // 74h
                }
                self.walk_nested(cx, slot, (&fs, &ss), req.addr, access, pass)
                    .map(|(leaf, gpa)| (leaf, Some(gpa)))
            }
        };
        let (leaf, gpa) = walked.map_err(|r| blocked(r, fpd))?;
        let perms = restrict(leaf.perms, pe);
        // §3.14: a translation into the interrupt address range is blocked.
        if is_interrupt_address(leaf.output) {
            return Err(blocked(R::SmInterruptAddressRange, fpd)); // 87h
        }
        self.cache_translation(slot, req.addr, (&leaf, gpa), perms, pass);
        Ok(self.walked(leaf, perms, cx))
    }

    /// One stage's walk of `addr` in `slot` (legacy, first-stage only or second-stage only).
    fn walk_one<O: WalkObserver, W: Walk>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        slot: Slot,
        plan: Planned<'_, W>,
        addr: u64,
        access: Access,
        pass: &Pass<'_>,
    ) -> Result<Leaf, FaultReason> {
        let check = |h| self.sanitize(Hit::Walk(h));
        let san = pass.rec.map(|rec| Sanitizing { rec, check: &check });
        let mut hints = Hints::new(&self.caches, plan.tags, pass.epochs, san);
        let walked = cx.hinted(&mut hints, |cx| plan.tables.walk(cx, &Direct, addr, access));
        walked.map_err(|f| {
            self.cache_not_present(slot, addr, &f, pass);
            walk_reason(plan.kind, &f, access)
        })
    }

    /// A nested walk (§3.8) of `addr` in `slot`: the first stage through the second, then the
    /// second stage of its output. Returns the translation and the first and last guest
    /// physical address it depended on: the first-stage tables it read through the second
    /// stage and the page its first stage mapped the input to.
    fn walk_nested<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        slot: Slot,
        (fs, ss): (&X86Paging, &VtdSecondStage),
        addr: u64,
        access: Access,
        pass: &Pass<'_>,
    ) -> Result<(Leaf, (u64, u64)), FaultReason> {
        let (fs_top, ss_top) = (top_level(fs.levels.count()), top_level(ss.levels.count()));
        let kind = WalkKind::Nested { fs_top, ss_top };
        let tags = WalkTags {
            did: slot.did,
            pasid: slot.pasid,
            fs_levels: level_count(fs.levels.count()),
            ss_levels: level_count(ss.levels.count()),
            nested: true,
        };
        let check = |h| self.sanitize(Hit::Walk(h));
        let san = pass.rec.map(|rec| Sanitizing { rec, check: &check });
        let mut hints = Hints::new(&self.caches, tags, pass.epochs, san);
        let fault = |f: sviommu_pgtable::Fault| {
            self.cache_not_present(slot, addr, &f, pass);
            walk_reason(kind, &f, access)
        };
        // §3.8: every first-stage table read is a supervisor data read of a guest physical
        // address, translated by the second stage; the fault says whether the second stage
        // refused the read or the A/D write-back (75h/76h or 77h).
        let through = ThroughStage2::new(ss, &Direct);
        let fetch = GpaBounds { inner: &through, first: Cell::new(u64::MAX), last: Cell::new(0) };
        cx.hinted(&mut hints, |cx| {
            let s1 = fs.walk(cx, &fetch, addr, access).map_err(fault)?;
            // §3.8: the first stage's output is a guest physical address, which the second
            // stage translates for the request's own access.
            let s2 = ss.walk(cx, &Direct, s1.output, access).map_err(fault)?;
            let leaf = Leaf::nested(&s1, &s2);
            fetch.note(s1.output & !low_mask(leaf.page_lg2), low_mask(leaf.page_lg2));
            Ok((leaf, (fetch.first.get(), fetch.last.get())))
        })
    }

    /// Reads `rid`'s scalable-mode root and context entries (§9.2, §9.4).
    pub(super) fn read_scalable_context<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        rta: u64,
        rid: u16,
    ) -> Result<ScalableContextEntry, Blocked> {
        use FaultReason as R;
        let [bus, devfn] = rid.to_be_bytes();
        let at = entry_addr(rta, bus.into(), ScalableRootEntry::BYTES);
        let re = at
            .and_then(|a| cx.read_structure("scalable-mode root entry", a))
            .map(ScalableRootEntry::from_words);
        let re = re.ok_or(blocked(R::SmRootEntryAccess, false))?; // 38h
                                                                  // §9.2: each half serves half the devfns and is checked on its own.
        if !re.present_for(devfn) {
            return Err(blocked(R::SmRootEntryNotPresent, false)); // 39h
        }
        if re.reserved_bits_set_for(devfn, self.params.haw) {
            return Err(blocked(R::SmRootEntryReserved, false)); // 3Ah
        }
        let index = root::scalable_context_index(devfn);
        let at = entry_addr(re.ctp_for(devfn), index.into(), ScalableContextEntry::BYTES);
        let ce = at
            .and_then(|a| cx.read_structure("scalable-mode context entry", a))
            .map(ScalableContextEntry::from_words);
        ce.ok_or(blocked(R::SmContextEntryAccess, false)) // 40h
    }

    /// The checks of a scalable-mode context entry itself (§9.4).
    pub(super) fn check_scalable_context(
        &self,
        ce: &ScalableContextEntry,
    ) -> Result<(), FaultReason> {
        use FaultReason as R;
        if !ce.p() {
            return Err(R::SmContextEntryNotPresent); // 41h
        }
        if ce.reserved_bits_set(self.params.haw) {
            return Err(R::SmContextEntryReserved); // 42h
        }
        // §9.4: a feature enabled that the unit does not advertise.
        let unsupported = (ce.dte() && !self.ecap_has(ecap::DT))
            || (ce.paside() && !self.ecap_has(ecap::PASID))
            || (ce.pre() && !self.ecap_has(ecap::PRS))
            || (ce.rid_priv() && !self.ecap_has(ecap::RPRIVS));
        if unsupported {
            return Err(R::SmContextEntryInvalid); // 43h
        }
        Ok(())
    }

    /// §9.4: the directory has 2^(PDTS + 7) entries. IMPDEF: a PASID wider than the 20 bits a
    /// PASID prefix carries is beyond any directory.
    pub(super) fn check_pasid_in_directory(
        &self,
        ce: &ScalableContextEntry,
        pasid: u32,
        fpd: bool,
    ) -> Result<(), Blocked> {
        if pasid >> pasid::PASID_BITS != 0 || pasid::dir_index(pasid) >= ce.pasid_dir_entries() {
            return Err(blocked(FaultReason::SmPasidBeyondDirectory, fpd)); // 46h
        }
        Ok(())
    }

    /// §9.6: the checks of a PASID-table entry as read (with its directory entry's FPD), on
    /// top of `fpd`: present, no reserved bits, a PGTT and features the unit runs.
    pub(super) fn check_pasid_table_entry(
        &self,
        c: &CachedPasid,
        fpd: bool,
    ) -> Result<Pgtt, Blocked> {
        use FaultReason as R;
        let fpd = fpd | c.dir_fpd | c.pe.fpd();
        if !c.pe.p() {
            return Err(blocked(R::SmPasidEntryNotPresent, fpd)); // 59h
        }
        if c.pe.reserved_bits_set(self.params.haw) {
            return Err(blocked(R::SmPasidEntryReserved, fpd)); // 5Ah
        }
        self.check_pasid_entry(&c.pe).ok_or(blocked(R::SmPasidEntryInvalid, fpd))
        // 5Bh
    }

    /// Reads `pasid`'s PASID-directory and PASID-table entries under `ce` (§9.5, §9.6); `fpd`
    /// is the FPD state so far.
    pub(super) fn read_pasid_entry<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        ce: &ScalableContextEntry,
        pasid: u32,
        fpd: bool,
    ) -> Result<CachedPasid, Blocked> {
        use FaultReason as R;
        let dir_index = pasid::dir_index(pasid);
        let at = entry_addr(ce.pasiddirptr(), dir_index.into(), PasidDirEntry::BYTES);
        let de = at
            .and_then(|a| cx.read_structure("PASID directory entry", a))
            .map(PasidDirEntry::from_words);
        let de = de.ok_or(blocked(R::SmPasidDirEntryAccess, fpd))?; // 50h
        let fpd = fpd | de.fpd();
        if !de.p() {
            return Err(blocked(R::SmPasidDirEntryNotPresent, fpd)); // 51h
        }
        if de.reserved_bits_set(self.params.haw) {
            return Err(blocked(R::SmPasidDirEntryReserved, fpd)); // 52h
        }
        let at = entry_addr(de.smptblptr(), pasid::table_index(pasid).into(), PasidEntry::BYTES);
        let pe =
            at.and_then(|a| cx.read_structure("PASID-table entry", a)).map(PasidEntry::from_words);
        let pe = pe.ok_or(blocked(R::SmPasidEntryAccess, fpd))?; // 58h
        Ok(CachedPasid { pe, dir_fpd: de.fpd() })
    }

    /// §9.6: the PGTT of a PASID-table entry the unit can run, or `None` (5Bh): a reserved PGTT
    /// or one the unit does not advertise; AW outside CAP.SAGAW or FSPM reserved or
    /// unsupported, for the stages PGTT uses; a feature enabled that the unit does not
    /// advertise.
    fn check_pasid_entry(&self, pe: &PasidEntry) -> Option<Pgtt> {
        let pgtt = pe.pgtt().ok()?;
        let supported = match pgtt {
            Pgtt::FirstStage => self.ecap_has(ecap::FSTS),
            Pgtt::SecondStage => self.ecap_has(ecap::SSTS),
            Pgtt::Nested => {
                self.ecap_has(ecap::NEST) && self.ecap_has(ecap::FSTS) && self.ecap_has(ecap::SSTS)
            }
            Pgtt::PassThrough => self.ecap_has(ecap::PT),
        };
        if !supported {
            return None;
        }
        if pgtt.uses_second_stage() && !self.sagaw_has(pe.aw().ok()?) {
            return None;
        }
        if pgtt.uses_first_stage() {
            match pe.fspm().ok()? {
                Fspm::FourLevel => {}
                Fspm::FiveLevel if self.cap_has(crate::spec::regs::cap::FS5LP) => {}
                Fspm::FiveLevel => return None,
            }
        }
        let unsupported = (pe.sre() && !self.ecap_has(ecap::SRS))
            || ((pe.ere() || pe.ssee()) && !self.ecap_has(ecap::ERS))
            || (pe.ssade() && !self.ecap_has(ecap::SSADS))
            || (pe.eafe() && !self.ecap_has(ecap::EAFS));
        (!unsupported).then_some(pgtt)
    }

    /// The second-stage tables a checked PASID-table entry names.
    fn second_stage(&self, pe: &PasidEntry) -> Option<VtdSecondStage> {
        let aw = pe.aw().ok()?;
        Some(VtdSecondStage {
            root: pe.ssptptr(),
            levels: ss_levels(aw),
            mgaw: self.mgaw_bits(),
            haw: self.params.haw,
            sllps: self.sslps(),
            // §9.6 SSEE: the second stage's X bit governs execute requests.
            execute: self.ecap_has(ecap::ERS) && pe.ssee(),
            // Scalable mode always has SNP in second-stage leaves.
            snoop: true,
            ad: pe.ssade(),
        })
    }

    /// The first-stage tables a checked PASID-table entry names.
    fn first_stage(&self, pe: &PasidEntry) -> Option<X86Paging> {
        let levels = match pe.fspm().ok()? {
            Fspm::FourLevel => x86::Levels::Four,
            Fspm::FiveLevel => x86::Levels::Five,
        };
        Some(X86Paging {
            root: pe.fsptptr(),
            levels,
            phys_bits: self.params.haw,
            page_1g: self.cap_has(crate::spec::regs::cap::FS1GP),
            nxe: pe.nxe(),
            wp: pe.wpe(),
            smep: pe.smep(),
            // §3.6.2: the unit sets A in every first-stage entry it uses, D in the leaf on a
            // write.
            set_ad: true,
        })
    }
}

/// A first-stage table fetch through the second stage that remembers the lowest and highest
/// guest physical address it read a table from (what a strict page-selective invalidation
/// selects a nested translation by). Cells: one walk, one thread; allocates nothing.
struct GpaBounds<'a, F> {
    inner: &'a F,
    first: Cell<u64>,
    last: Cell<u64>,
}

impl<F> GpaBounds<'_, F> {
    /// Widens the bounds to the bytes `at ..= at | mask`.
    fn note(&self, at: u64, mask: u64) {
        self.first.set(self.first.get().min(at & !mask));
        self.last.set(self.last.get().max(at | mask));
    }
}

impl<M: PhysMemory + ?Sized, F: TableFetch<M>> TableFetch<M> for GpaBounds<'_, F> {
    fn locate<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        table_addr: u64,
        level: i8,
    ) -> Result<Located<M::Addr>, PtFault> {
        // The 4K table page the entry lies in (both VT-d formats use 4K tables).
        self.note(table_addr, low_mask(12));
        self.inner.locate(cx, table_addr, level)
    }
}

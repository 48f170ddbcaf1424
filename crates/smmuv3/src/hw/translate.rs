//! The transaction path (§3.3, §3.4): the enable and GBPA, the STE, the substream and its CD,
//! then the walks the STE's Config selects.
//!
//! Every structure is read whole, as one counted read, into a stack buffer; every check raises
//! the event §5.2.2, §5.4.2 and §7.3 name for it, in the order the structures are used. Nothing
//! here allocates or takes a lock: the registers translate needs are atomics.

use std::sync::atomic::Ordering;

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{self, VmsaS1, VmsaS2};
use sviommu_pgtable::{Access, Direct, Leaf, Perms, ThroughStage2, Walk, WalkCtx, WalkObserver};

use super::cache::{
    granule_sizes, low_mask as mask, Epochs, Hints, LeafHint, Sanitizing, Tags, TlbEntry, TlbHit,
    TlbKey, WalkHit,
};
use super::context::Context;
use super::events::{walk_event, WalkEvent, WalkFor};
use super::sanitize::Hit;
use super::stream::Stream;
use super::{Abort, Event, Silent, Smmu, Transaction, Translation};
use crate::spec::regs::{cr0, gbpa};
use crate::spec::{Class, EventId, Granule, S1Dss, Ste, StreamConfig};
use sviommu_tlb::sanitize::{Recorder, Tee};
use sviommu_tlb::{Dep, MemoInfo, MemoKey, MemoTrail};

/// IMPDEF: the page size reported when nothing was walked (bypass).
const UNWALKED_PAGE_LG2: u8 = 12;

/// The transaction with its attributes after the STE's overrides.
#[derive(Clone, Copy, Debug)]
pub(super) struct Req<'t> {
    pub t: &'t Transaction,
    pub access: Access,
}

impl Req<'_> {
    /// An event of `id` for this transaction.
    pub fn event(&self, id: EventId) -> Event {
        Event::new(id, self.t, self.access)
    }

    /// The event for a walk fault. `s1` is the CD's fault configuration, `s2` the STE's: they
    /// decide whether a Translation-related fault of that stage stalls or is terminated, and
    /// whether a terminated one is recorded (§3.12, §5.5).
    pub fn walk_abort(&self, w: &WalkEvent, s1: Faults, s2: Faults) -> Abort {
        let mut e = self.event(w.id);
        e.s2 = w.s2;
        e.class = w.class;
        e.ipa = w.ipa;
        e.fetch_addr = w.fetch_addr;
        e.ttrnw = w.ttrnw;
        if w.translation_related() {
            return (if w.s2 { s2 } else { s1 }).abort(e);
        }
        Abort::Event(e)
    }
}

/// One stage's configuration for its Translation-related faults (§5.5): stage 1 CD.R and
/// CD.S, stage 2 STE.S2R and STE.S2S.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Faults {
    /// R: a terminated fault is recorded.
    pub record: bool,
    /// S: the transaction stalls (and the fault is always recorded).
    pub stall: bool,
}

impl Faults {
    /// Where no CD configures stage 1 (a stage-2 fault fetching a CD cannot be a stage-1 one).
    pub const RECORD: Self = Self { record: true, stall: false };

    /// Stage 2's configuration in `ste`.
    pub fn stage2(ste: &Ste) -> Self {
        Self { record: ste.s2r(), stall: ste.s2s() }
    }

    /// What a Translation-related fault of this stage becomes: stalled (recorded whatever R
    /// says), or terminated and recorded as R says.
    pub fn abort(self, mut e: Event) -> Abort {
        if self.stall {
            e.record = true;
            return Abort::Stalled(e);
        }
        e.record = self.record;
        Abort::Event(e)
    }
}

/// The pgtable granule of a spec granule.
pub(super) const fn pt_granule(g: Granule) -> vmsa::Granule {
    match g {
        Granule::Size4K => vmsa::Granule::K4,
        Granule::Size16K => vmsa::Granule::K16,
        Granule::Size64K => vmsa::Granule::K64,
    }
}

/// One translation's cache state: the epochs it read before reading anything, which every
/// insert and every walk's [`Hints`] carries.
pub(super) struct Tr<'r> {
    epochs: Epochs,
    /// Strict: what the translation read, for the sanitizer (`None` in forgiving).
    rec: Option<&'r Recorder>,
    /// An untranslated transaction in forgiving: where its answer is remembered if the
    /// caches give it.
    memo: Option<MemoTrail>,
}

impl Tr<'_> {
    /// A translation's state, with `epochs` read before anything.
    pub(super) fn new(epochs: Epochs) -> Self {
        Self { epochs, rec: None, memo: None }
    }

    /// The STE (`0`) or CD (`1`) came from its cache.
    fn found(&self, which: usize, dep: Dep) {
        if let Some(t) = &self.memo {
            t.found(which, dep);
        }
    }

    /// Strict: checks a hit (`sanitize`).
    fn check<M: PhysMemory<Addr = Hpa>>(&self, smmu: &Smmu<M>, hit: Hit) {
        if self.rec.is_some() {
            smmu.sanitize(hit);
        }
    }
}

/// The TLB tags of one lookup.
#[derive(Clone, Copy, Debug)]
struct TlbTag {
    vmid: u16,
    asid: Option<u16>,
    va: bool,
}

/// The page sizes a lookup probes: each the stages' granules allow, smallest first, 0-ended.
fn probe_sizes(s1_granule: u8, s2_granule: u8) -> [u8; 6] {
    let mut out = [0u8; 6];
    let mut n = 0;
    for g in [s1_granule, s2_granule] {
        if g == 0 {
            continue;
        }
        for size in granule_sizes(g) {
            if !out.iter().take(n).any(|&s| s == size) {
                if let Some(slot) = out.get_mut(n) {
                    *slot = size;
                    n += 1;
                }
            }
        }
    }
    if let Some(used) = out.get_mut(..n) {
        used.sort_unstable();
    }
    out
}

/// A transaction that bypasses translation.
pub(super) fn bypass(addr: u64, reads: u32) -> Translation {
    Translation { output: addr, page_lg2: UNWALKED_PAGE_LG2, perms: Perms::ALL, reads }
}

/// A translation from its leaf (both stages' combined, when nested).
fn translated(leaf: &Leaf, reads: u32) -> Translation {
    Translation { output: leaf.output, page_lg2: leaf.page_lg2, perms: leaf.perms, reads }
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// Translates one transaction, or terminates it: with the architected event (§7.3), or
    /// silently where the architecture records nothing ([`Abort::Silent`]).
    ///
    /// With SMMU_CR0.SMMUEN == 0 the transaction follows SMMU_GBPA. Otherwise the Stream table
    /// SMMU_STRTAB_BASE(_CFG) describe (fixed while SMMUEN == 1) gives its STE, whose Config
    /// selects bypass, stage 1, stage 2 or both.
    pub fn translate(&self, t: &Transaction) -> Result<Translation, Abort> {
        let key = memo_key(t);
        if let Some(hit) = key.and_then(|k| self.recall(k, t.addr)) {
            return Ok(hit);
        }
        self.translate_missed(t, key)
    }

    /// [`translate`](Self::translate) past a memo probe that missed; out of line, so that a
    /// memo hit pays for nothing it does not use.
    #[inline(never)]
    fn translate_missed(
        &self,
        t: &Transaction,
        key: Option<MemoKey>,
    ) -> Result<Translation, Abort> {
        self.translate_probed(t, key, ()).0
    }

    /// [`translate`](Self::translate), reporting every STE, CD, descriptor and table entry the
    /// model reads to `observer` (what `sviommu inspect --walk` prints).
    pub fn translate_observed<O: WalkObserver>(
        &self,
        t: &Transaction,
        observer: O,
    ) -> (Result<Translation, Abort>, O) {
        // A transaction the caches answered before: one probe. (The memo exists in the
        // forgiving profile only, where `translate_probed`'s tick does nothing: probing first
        // changes nothing.)
        let key = memo_key(t);
        if let Some(hit) = key.and_then(|k| self.recall(k, t.addr)) {
            return (Ok(hit), observer);
        }
        self.translate_probed(t, key, observer)
    }

    /// The translation the memo remembers for `key` (a transaction to `addr`), if its entries
    /// all still hold (`Caches::recall`).
    #[inline]
    fn recall(&self, key: MemoKey, addr: u64) -> Option<Translation> {
        let (out, info) = self.caches.recall(key)?;
        let output = out | (addr & low_mask(12));
        Some(Translation { output, page_lg2: info.lg2, perms: info.perms, reads: 0 })
    }

    /// [`translate_observed`](Self::translate_observed) once the memo has been probed for `key`
    /// (`None`: not a transaction the memo answers) and missed.
    fn translate_probed<O: WalkObserver>(
        &self,
        t: &Transaction,
        key: Option<MemoKey>,
        observer: O,
    ) -> (Result<Translation, Abort>, O) {
        // Strict, seeded: a held invalidation may take effect here (one flag load otherwise).
        self.deferred.tick(&self.caches);
        if self.params.profile.is_strict() {
            // The invalidation epochs, before any structure or table is read: whatever this
            // translation reads, it may insert only if no invalidation completed since.
            let epochs = self.caches.epochs();
            return self.translate_sanitized(t, observer, epochs);
        }
        // Before any lookup: the memo's generation (in the trail), then the epochs.
        let memo = key.and_then(|k| self.caches.memo.as_ref().map(|m| m.trail(k)));
        let epochs = self.caches.epochs();
        let tr = Tr { memo, ..Tr::new(epochs) };
        let mut cx = WalkCtx::new(&self.mem, observer);
        let result = self.translate_inner(&mut cx, t, &tr).map_err(|a| self.report(t, a));
        (result, cx.observer)
    }

    /// Strict: [`translate_observed`](Self::translate_observed) recording every word it reads,
    /// so each entry it caches keeps the words it was built from and each hit can check them.
    #[cold]
    fn translate_sanitized<O: WalkObserver>(
        &self,
        t: &Transaction,
        observer: O,
        epochs: Epochs,
    ) -> (Result<Translation, Abort>, O) {
        let rec = Recorder::default();
        let tr = Tr { epochs, rec: Some(&rec), memo: None };
        let mut cx = WalkCtx::new(&self.mem, Tee { inner: observer, rec: &rec });
        let result = self.translate_inner(&mut cx, t, &tr).map_err(|a| self.report(t, a));
        (result, cx.observer.inner)
    }

    pub(super) fn translate_inner<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        t: &Transaction,
        tr: &Tr<'_>,
    ) -> Result<Translation, Abort> {
        if t.translated {
            return self.translated_transaction(cx, t, tr);
        }
        if !cr0::SMMUEN.is_set(self.cr0ack()) {
            return self.disabled(t);
        }
        // Before the STE is read the attributes are the incoming ones (and no event recorded
        // before it carries attributes).
        let pre = Req { t, access: t.access };
        let s = self.stream(cx, &pre, tr)?;
        let ste = s.ste;
        let req = Req { t, access: self.effective_access(&ste, t.access) };
        match s.config {
            // §5.2 S1Fmt: a SubstreamID with stage 1 disabled is C_BAD_SUBSTREAMID.
            StreamConfig::Bypass | StreamConfig::Stage2 => match t.ssid {
                Some(ssid) => Err(Self::bad_substreamid(&req, ssid)),
                None => self.stage1_bypassed(cx, &req, &s, tr),
            },
            StreamConfig::Stage1 | StreamConfig::Nested => self.stage1(cx, &req, &s, tr),
            // check_ste returned the silent abort for these.
            StreamConfig::Abort => Err(Abort::Silent(Silent::SteAbort)),
        }
    }

    /// The cache tags the stream decides (a CD adds its ASID and stage-1 granule).
    fn stream_tags(&self, s: &Stream) -> Tags {
        Tags {
            // IMPDEF: stage-1-only streams are tagged with S2VMID too when stage 2 exists.
            vmid: if self.caps.s2p { s.ste.s2vmid() } else { 0 },
            s2_granule: s.s2.map_or(0, |s2| s2.tg.lg2()),
            ..Tags::default()
        }
    }

    /// The caches one walk of this translation consults and fills, under `tags`; strict, with
    /// `check` for their hits.
    fn hints<'a>(&'a self, tr: &Tr<'a>, tags: Tags, check: &'a dyn Fn(WalkHit)) -> Hints<'a> {
        let san = tr.rec.map(|rec| Sanitizing { rec, check });
        Hints { caches: &self.caches, tags, epochs: tr.epochs, san }
    }

    /// What a walk's hints call for a hit, strict.
    fn check_walk(&self, h: WalkHit) {
        self.sanitize(Hit::Walk(h));
    }

    /// §6.3.14, §3.4: SMMUEN == 0. GBPA.ABORT terminates everything; otherwise the address
    /// bypasses, and one beyond the OAS is terminated. No event either way.
    pub(super) fn disabled(&self, t: &Transaction) -> Result<Translation, Abort> {
        let g = u64::from(self.gbpa.load(Ordering::Acquire));
        if gbpa::ABORT.is_set(g) {
            return Err(Abort::Silent(Silent::GbpaAbort));
        }
        if t.addr >> self.caps.oas_bits != 0 {
            return Err(Abort::Silent(Silent::DisabledBeyondOas));
        }
        Ok(bypass(t.addr, 0))
    }

    /// §5.2 PRIVCFG, INSTCFG (with SMMU_IDR1.ATTR_PERMS_OVR): the attributes translation
    /// checks. A write is always data (§13.1.2).
    pub(super) fn effective_access(&self, ste: &Ste, a: Access) -> Access {
        let (mut privileged, mut exec) = (a.privileged, a.exec);
        if self.caps.attr_perms_ovr {
            match ste.privcfg() {
                0b10 => privileged = false,
                0b11 => privileged = true,
                _ => {} // 0b00 incoming; Reserved 0b01 behaves as it
            }
            match ste.instcfg() {
                0b10 => exec = false,
                0b11 => exec = true,
                _ => {}
            }
        }
        Access { write: a.write, exec: exec && !a.write, privileged }
    }

    /// Stage 1 bypassed (Config 0b1x0, or S1DSS == 0b01): §3.4, an address beyond the IAS is a
    /// stage 1 Address Size fault (for Config 0b100, beyond the OAS: the two are equal here);
    /// then stage 2 translates it as an IPA, if enabled.
    pub(super) fn stage1_bypassed<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
        s: &Stream,
        tr: &Tr<'_>,
    ) -> Result<Translation, Abort> {
        let addr = req.t.addr;
        if addr >> self.caps.oas_bits != 0 {
            // §7.3.14: CLASS == IN, S2 == 0; there is no CD whose R bit could suppress it.
            let mut e = req.event(EventId::FAddrSize);
            e.class = Some(Class::In);
            return Err(Abort::Event(e));
        }
        let Some(s2) = &s.s2 else {
            return Ok(bypass(addr, cx.reader.reads()));
        };
        let tags = self.stream_tags(s);
        let key = TlbTag { vmid: tags.vmid, asid: None, va: false };
        let sizes = probe_sizes(0, tags.s2_granule);
        if let Some(hit) = self.tlb_hit(cx, req, key, addr, &sizes, tr) {
            return Ok(hit);
        }
        let check = |h| self.check_walk(h);
        let mut hints = self.hints(tr, tags, &check);
        let leaf =
            cx.hinted(&mut hints, |cx| self.walk_s2(cx, req, s, s2, addr, WalkFor::Input))?;
        let out = translated(&leaf, cx.reader.reads());
        let hint = LeafHint { granule_lg2: tags.s2_granule, level: leaf.level };
        self.tlb_fill(key, addr, &out, (leaf.dirty, hint), tr);
        Ok(out)
    }

    /// Stage 2 of `ipa` for the transaction's access (CLASS == IN).
    fn walk_s2<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
        s: &Stream,
        s2: &VmsaS2,
        ipa: u64,
        walk: WalkFor,
    ) -> Result<Leaf, Abort> {
        s2.walk(cx, &Direct, ipa, req.access).map_err(|f| {
            req.walk_abort(&walk_event(&f, walk), Faults::RECORD, Faults::stage2(&s.ste))
        })
    }

    /// Stage 1 enabled (Config 0b1x1): the substream selects a CD (§3.3.2, §5.2 S1CDMax,
    /// S1DSS), whose tables translate the address, and stage 2 the result when nested.
    fn stage1<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
        s: &Stream,
        tr: &Tr<'_>,
    ) -> Result<Translation, Abort> {
        let ste = &s.ste;
        let substreams = self.caps.ssidsize != 0 && ste.s1cdmax() != 0;
        let stream_disabled = || Abort::Event(req.event(EventId::FStreamDisabled));
        let index = match req.t.ssid {
            Some(ssid) => {
                // §7.3.9: no substreams, or a SubstreamID of 2^S1CDMax or more.
                if !substreams || u64::from(ssid) >> ste.s1cdmax() != 0 {
                    return Err(Self::bad_substreamid(req, ssid));
                }
                // §5.2 S1DSS 0b10: substream 0 belongs to transactions without one (§7.3.7).
                if ssid == 0 && ste.s1dss() == Ok(S1Dss::Substream0) {
                    return Err(stream_disabled());
                }
                ssid
            }
            None if !substreams => 0,
            None => match ste.s1dss() {
                Ok(S1Dss::Bypass) => return self.stage1_bypassed(cx, req, s, tr),
                Ok(S1Dss::Substream0) => 0,
                // Terminate; Reserved 0b11 behaves as 0b00.
                Ok(S1Dss::Terminate) | Err(_) => return Err(stream_disabled()),
            },
        };
        // A nested stream's CD fetch is stage-2 translated, under the stream's tags.
        let check = |h| self.check_walk(h);
        let mut hints = self.hints(tr, self.stream_tags(s), &check);
        let ctx = cx.hinted(&mut hints, |cx| self.context(cx, req, s, index, tr))?;
        self.walk_s1(cx, req, s, &ctx, tr)
    }

    /// The stage-1 walk of the CD's half that VA[55] selects (§3.4.1), then stage 2 of its
    /// output when nested.
    fn walk_s1<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
        s: &Stream,
        ctx: &Context,
        tr: &Tr<'_>,
    ) -> Result<Translation, Abort> {
        let va = req.t.addr;
        let upper = vmsa::s1::selects_ttb1(va);
        let (half, tbi) = if upper { (&ctx.ttb1, ctx.tbi1) } else { (&ctx.ttb0, ctx.tbi0) };
        let Some(s1) = half else {
            // §5.4 EPDx: a walk through a disabled half is a stage-1 Translation fault.
            let mut e = req.event(EventId::FTranslation);
            e.class = Some(Class::In);
            return Err(ctx.faults.abort(e));
        };
        // §3.4.1: with TBI, VA[63:56] are ignored, taken as a sign extension of VA[55]; the
        // event still reports the address as presented.
        let top = !low_mask(56);
        let input = match (tbi, upper) {
            (false, _) => va,
            (true, true) => va | top,
            (true, false) => va & !top,
        };
        let tags = Tags { asid: ctx.asid, s1_granule: s1.tg.lg2(), ..self.stream_tags(s) };
        let key = TlbTag { vmid: tags.vmid, asid: Some(ctx.asid), va: true };
        let sizes = probe_sizes(tags.s1_granule, tags.s2_granule);
        if let Some(hit) = self.tlb_hit(cx, req, key, input, &sizes, tr) {
            return Ok(hit);
        }
        let s2f = Faults::stage2(&s.ste);
        let check = |h| self.check_walk(h);
        let mut hints = self.hints(tr, tags, &check);
        let leaf = cx.hinted(&mut hints, |cx| match &s.s2 {
            None => s1
                .walk(cx, &Direct, input, req.access)
                .map_err(|f| req.walk_abort(&walk_event(&f, WalkFor::Input), ctx.faults, s2f)),
            Some(s2) => {
                let s1_leaf = self.walk_nested_s1(cx, req, s1, s2, input, ctx.faults, s2f)?;
                let s2_leaf = self.walk_s2(cx, req, s, s2, s1_leaf.output, WalkFor::Input)?;
                Ok(Leaf::nested(&s1_leaf, &s2_leaf))
            }
        })?;
        let out = translated(&leaf, cx.reader.reads());
        let key = TlbTag { asid: key.asid.filter(|_| !leaf.global), ..key };
        // The level is the stage-1 leaf's (`Leaf::nested` keeps it): what a stage-1 TLBI's
        // TG and TTL name.
        let hint = LeafHint { granule_lg2: tags.s1_granule, level: leaf.level };
        self.tlb_fill(key, input, &out, (leaf.dirty, hint), tr);
        Ok(out)
    }

    /// The stream's decoded STE: from the STE cache, or fetched, checked and cached (§16.2:
    /// only valid structures are cached here).
    pub(super) fn stream<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        pre: &Req<'_>,
        tr: &Tr<'_>,
    ) -> Result<Stream, Abort> {
        let cache = self.caches.ste.as_ref();
        if let Some((s, dep)) = cache.and_then(|c| c.get_dep(&pre.t.sid)) {
            tr.check(self, Hit::Ste(pre.t.sid));
            tr.found(0, dep);
            return Ok(s);
        }
        let ste = self.fetch_ste(cx, pre)?;
        let s = self.check_ste(&ste, pre)?;
        if let Some(c) = cache {
            match tr.rec {
                // The L1STD and the STE.
                Some(r) => c.insert_recorded(pre.t.sid, s, tr.epochs.ste, || r.take_structures()),
                None => c.insert(pre.t.sid, s, tr.epochs.ste),
            };
        }
        Ok(s)
    }

    /// CD `index` of the stream, decoded: from the CD cache, or fetched, checked and cached.
    fn context<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
        s: &Stream,
        index: u32,
        tr: &Tr<'_>,
    ) -> Result<Context, Abort> {
        let cache = self.caches.cd.as_ref();
        let key = (req.t.sid, index);
        if let Some((ctx, dep)) = cache.and_then(|c| c.get_dep(&key)) {
            tr.check(self, Hit::Cd(key));
            tr.found(1, dep);
            return Ok(ctx);
        }
        let cd = self.fetch_cd(cx, req, s, index)?;
        let ctx = self.check_cd(&cd, s, req)?;
        if let Some(c) = cache {
            match tr.rec {
                // The L1CD and the CD; the stage-2 entries a nested fetch read belong to them
                // (a CD hit reads none), not to the walk that follows.
                Some(r) => {
                    c.insert_recorded(key, ctx, tr.epochs.cd, || r.take_structures());
                    r.clear_steps();
                }
                None => {
                    c.insert(key, ctx, tr.epochs.cd);
                }
            }
        }
        Ok(ctx)
    }

    /// A TLB hit that serves `req`: it allows the access and, for a write, is dirty already
    /// (otherwise the walk runs again, as §3.13 hardware dirty-state update requires).
    fn tlb_hit<O: WalkObserver>(
        &self,
        cx: &WalkCtx<'_, M, O>,
        req: &Req<'_>,
        key: TlbTag,
        input: u64,
        sizes: &[u8; 6],
        tr: &Tr<'_>,
    ) -> Option<Translation> {
        let TlbHit { entry: e, page_lg2, key: k, dep, misses } =
            self.caches.tlb_lookup(key.vmid, key.asid, key.va, input, sizes)?;
        // IMPDEF: a hit that does not allow the access walks again rather than faulting from
        // the TLB, so the fault reported is the tables' current one.
        if !e.perms.allows(req.access) || (req.access.write && !e.dirty) {
            return None;
        }
        // Strict: only an entry that answers is checked.
        tr.check(self, Hit::Tlb(k, e));
        let output = e.out_page | (input & mask(page_lg2));
        if let Some(t) = &tr.memo {
            // A stage-1 input came through a CD; a stage-2-only one did not.
            let info = MemoInfo { lg2: page_lg2, perms: e.perms, misses };
            self.caches.remember(t, key.va, (output & !mask(12), info), dep);
        }
        Some(Translation { output, page_lg2, perms: e.perms, reads: cx.reader.reads() })
    }

    /// Caches a walked translation under `key`, unless an invalidation completed since `epoch`.
    fn tlb_fill(
        &self,
        key: TlbTag,
        input: u64,
        out: &Translation,
        (dirty, hint): (bool, LeafHint),
        tr: &Tr<'_>,
    ) {
        let Some(tlb) = self.caches.tlb.as_ref() else { return };
        let page_lg2 = out.page_lg2;
        if page_lg2 >= 64 {
            return;
        }
        let k = TlbKey {
            vmid: key.vmid,
            asid: key.asid,
            va: key.va,
            page: input >> page_lg2,
            page_lg2,
        };
        let e = TlbEntry { out_page: out.output & !mask(page_lg2), perms: out.perms, dirty, hint };
        self.caches.tag_tlb(&k);
        match tr.rec {
            Some(r) => tlb.insert_recorded(k, e, tr.epochs.tlb, || r.steps()),
            None => tlb.insert(k, e, tr.epochs.tlb),
        };
    }

    /// The stage-1 walk of a nested stream: every table read is stage-2 translated.
    #[allow(clippy::too_many_arguments)]
    fn walk_nested_s1<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        req: &Req<'_>,
        s1: &VmsaS1,
        s2: &VmsaS2,
        input: u64,
        s1f: Faults,
        s2f: Faults,
    ) -> Result<Leaf, Abort> {
        // §3.3.3, §5.4: "The translation table walks performed from TTB0 or TTB1 are always
        // performed in IPA space if stage 2 translations are enabled". pgtable's fetch reads each
        // descriptor as a data read through stage 2 (§7.3.16: "When CLASS == TT, the access is
        // implicitly Data") and, when stage 2 refuses a descriptor update (§3.13.5), says so
        // in the fault, which gives TTRnW.
        let through = ThroughStage2::new(s2, &Direct);
        s1.walk(cx, &through, input, req.access)
            .map_err(|f| req.walk_abort(&walk_event(&f, WalkFor::Input), s1f, s2f))
    }
}

/// The memo's key for `t`; `None` for a translated transaction (the memo holds untranslated
/// ones only) or one whose SubstreamID it cannot hold.
#[inline]
fn memo_key(t: &Transaction) -> Option<MemoKey> {
    if t.translated {
        return None;
    }
    MemoKey::new(t.sid, t.ssid, t.access, t.addr)
}

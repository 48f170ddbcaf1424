//! The Command queue (§3.5, §4, §7.1): SMMU_CMDQ_BASE/PROD/CONS with wrap flags, every
//! Non-secure command, CMD_SYNC completion and CERROR.
//!
//! IMPDEF: commands are consumed synchronously. A write to SMMU_CMDQ_PROD (or an enable of
//! CMDQEN, or an acknowledgement of CMDQ_ERR through GERRORN) processes every command from
//! CONS to PROD before the write returns, so every invalidation has completed when its
//! command is consumed, and CMD_SYNC completes as soon as it is read. The §3.21 contract
//! follows: once CONS has passed a CMD_SYNC, no translation that starts afterwards returns a
//! mapping invalidated before it (the caches' epochs, see `cache`).
//!
//! IMPDEF choices, each also marked where it is made:
//! - RES0 bits set in a command (§4.1.5) make it CERROR_ILL.
//! - Invalidations may remove more than they select (§4.3, §4.4 permit it): in the
//!   forgiving profile TG and TTL are ignored (the range still applies); EL2 TLBIs (only
//!   with SMMU_IDR0.HYP) invalidate every TLB and walk-cache entry. The strict profile
//!   removes only TLB entries of the TG granule and, with TTL, of that leaf level
//!   (§4.4.1.1). CMD_CFGI_STE drops the StreamID's cached CDs in both (§4.3.1 requires it).
//!
//! Profiles (`SmmuParams::profile`): forgiving carries out each invalidation when its
//! command is consumed; strict holds CFGI_* and TLBI_* until the next CMD_SYNC completes
//! (§3.21: completion is only guaranteed then), or applies each at a seeded point before it.
//! IMPDEF: CMD_ATC_INV is sent to the device when consumed in both profiles.
//!
//! ATS invalidation completions (§3.9.1.4) arrive as `SmmuParams::ats` says: at once (the
//! default), some ticks later, or never. The model has no clock of its own: time passes one
//! tick at each register read software makes and at each [`Smmu::tick`] the embedder calls,
//! so a driver polling CMDQ_CONS lets time pass, and a run repeats exactly. A CMD_SYNC behind
//! a CMD_ATC_INV still outstanding waits, CONS on it, without error. When the SMMU's time-out
//! expires, the CMD_SYNC waiting (or, if none waits, the next one) fails with
//! CERROR_ATC_INV_SYNC: CONS.ERR, CONS still at the CMD_SYNC, GERROR.CMDQ_ERR; once software
//! acknowledges it through GERRORN the CMD_SYNC is consumed again. IMPDEF: the SMMU goes on
//! waiting for the timed-out invalidation (a new time-out from the failure), so the retried
//! CMD_SYNC completes if the device answers meanwhile ([`Smmu::atc_completion`]: the embedder
//! playing the device) and fails again otherwise. A completion nothing waits for is counted
//! and ignored (SMMUv3 defines no error for it).
//! - CMD_PREFETCH_* prefetch nothing.
//! - CMD_TLBI_S2_IPA does not remove combined stage-1 + stage-2 TLB entries (tagged by VA):
//!   as on the CPU, software follows it with CMD_TLBI_NH_ALL or CMD_TLBI_S12_VMALL (§4.4.3.1).
//!
//! CMD_RESUME and CMD_STALL_TERM are CERROR_ILL with the terminate-only stall model (§6.3.1
//! STALL_MODEL == 0b01); otherwise they resolve stalled transactions (`stall`). A CMD_RESUME
//! that matches no stalled transaction of its StreamID does nothing (§4.7.1).
//! CMD_PRI_RESP is CERROR_ILL without SMMU_IDR0.PRI, and otherwise sends the PRG response to
//! the device ([`Output::PriResponse`]); CMD_ATC_INV is CERROR_ILL without SMMU_IDR0.ATS and
//! otherwise goes to the device ([`Output::AtcInvalidate`]).
//!
//! IMPDEF: the outbox is bounded, and a command whose device message (ATC invalidation, PRG
//! response, stall response, CMD_SYNC's MSI write) finds it full waits, as the SMMU waits for
//! a device slow to take a message: the queue stops with CONS on that command, no CERROR,
//! and goes on when the embedder drains the outbox ([`Smmu::drain_outputs`]) or software
//! writes CMDQ_PROD again. §3.5 and §4.7.3 let the SMMU consume commands at its own pace; a
//! CMD_SYNC behind a waiting command does not complete until the messages before it were
//! sent, so software that sees it complete knows the devices have them.

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};

use sviommu_pgtable::{Access, WalkCtx};

use super::cache::{low_mask as mask64, S2LeafKey, TlbKey, WalkKey};
use super::mmio::RegFile;
use super::translate::Req;
use super::{low32, Abort, Irq, Output, Smmu, StreamLookup, Transaction};
use crate::spec::regs::{cons, cr0, gerror, idr1, prod, queue_base, QueuePointer, StallModel};
use crate::spec::{CError, Command, Granule, Opcode, Ste, SyncCs};
use sviommu_tlb::worth_naming;

/// Bytes per command.
const CMD_BYTES: u64 = 16;

/// What became of a command that is not illegal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Executed: CONS moves past it.
    Done,
    /// Not executed: a message it sends finds the outbox full. CONS stays on it.
    Waiting,
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// Consumes commands from CONS to PROD while the queue is enabled and no command error is
    /// active (§7.1: a CERROR stops the queue with CONS at the bad command until software
    /// acknowledges GERROR.CMDQ_ERR through GERRORN).
    pub(super) fn process_cmdq(&self, r: &mut RegFile) {
        if !cr0::CMDQEN.is_set(u64::from(r.cr0ack)) {
            return;
        }
        if super::eventq::active(r, gerror::CMDQ_ERR) {
            return;
        }
        // §6.3.26: LOG2SIZE is capped at SMMU_IDR1.CMDQS; the base is aligned to the queue's
        // size, at least 32 bytes.
        let cmdqs = idr1::CMDQS.get(u64::from(self.params.idr1));
        let qs64 = queue_base::LOG2SIZE.get(r.cmdq_base).min(cmdqs);
        let qs = u8::try_from(qs64).unwrap_or(QueuePointer::MAX_LOG2SIZE);
        let base = queue_base::ADDR.in_place(r.cmdq_base) & !low_mask(qs.saturating_add(4).max(5));
        let prod = QueuePointer::from_reg(low32(prod::WR.get(u64::from(r.cmdq_prod))), qs);
        let mut rd = QueuePointer::from_reg(low32(cons::RD.get(u64::from(r.cmdq_cons))), qs);
        let mut err = None;
        // At most every entry twice round (inconsistent pointers included): bounded.
        let bound = 2u64 << qs;
        let mut steps = 0;
        while rd != prod && steps < bound {
            steps += 1;
            self.deferred.tick(&self.caches);
            let addr = base.saturating_add(u64::from(rd.index) * CMD_BYTES);
            let cmd = match (
                self.mem.read_u64(Hpa(addr)),
                self.mem.read_u64(Hpa(addr.saturating_add(8))),
            ) {
                (Ok(w0), Ok(w1)) => Command::from_words([w0, w1]),
                // §7.1: an abort on the command fetch.
                _ => {
                    err = Some(CError::Abt);
                    break;
                }
            };
            match self.execute(r, &cmd).and_then(|step| self.forward_command(r, &cmd, step)) {
                Ok(Step::Done) => {
                    if let Some(n) =
                        cmd.opcode().ok().and_then(|op| self.commands.get(usize::from(op as u8)))
                    {
                        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    rd = rd.next(qs);
                }
                // CONS stays on the command that waits for the outbox, without error.
                Ok(Step::Waiting) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let mut c = cons::RD.set(u64::from(r.cmdq_cons), u64::from(rd.to_reg(qs)));
        if let Some(e) = err {
            // §7.1: CONS.ERR says why, CONS.RD stays at the command; GERROR.CMDQ_ERR toggles.
            c = cons::ERR.set(c, u64::from(e as u8));
            self.raise_locked(r, gerror::CMDQ_ERR);
        }
        r.cmdq_cons = low32(c);
    }

    /// Hands a command the model has executed to the [`Forward`] hook, if there is one: where
    /// the hardware acts on it, before CONS moves past it. A refusal is the command's CERROR.
    fn forward_command(&self, r: &mut RegFile, c: &Command, step: Step) -> Result<Step, CError> {
        let (Some(hook), Step::Done) = (&self.forward, step) else {
            return Ok(step);
        };
        let mut streams = Streams { smmu: self, r };
        hook.command(c, &mut streams)?;
        Ok(Step::Done)
    }

    /// Executes one command (or finds that it must wait for room in the outbox), or says why
    /// it is illegal. `r` is the register file, held.
    fn execute(&self, r: &mut RegFile, c: &Command) -> Result<Step, CError> {
        let op = c.opcode().map_err(|_| CError::Ill)?;
        // IMPDEF: RES0 bits set are CERROR_ILL (§4.1.5 permits either); a layout the spec
        // module does not know is illegal too (Secure-only and DPT commands).
        if c.res0_set() != Some([0, 0]) {
            return Err(CError::Ill);
        }
        let done = |()| Step::Done;
        match op {
            // IMPDEF: nothing is prefetched. StreamID and SubstreamID are hints, unchecked.
            Opcode::PrefetchConfig | Opcode::PrefetchAddr => Ok(Step::Done),
            Opcode::CfgiSte | Opcode::CfgiSteRange | Opcode::CfgiCd | Opcode::CfgiCdAll => {
                self.cfgi(op, c).map(done)
            }
            Opcode::TlbiNhAll | Opcode::TlbiNhAsid | Opcode::TlbiNhVa | Opcode::TlbiNhVaa => {
                self.tlbi_s1(op, c).map(done)
            }
            Opcode::TlbiS12Vmall | Opcode::TlbiS2Ipa => self.tlbi_s2(op, c).map(done),
            Opcode::TlbiNsnhAll
            | Opcode::TlbiEl2All
            | Opcode::TlbiEl2Asid
            | Opcode::TlbiEl2Va
            | Opcode::TlbiEl2Vaa => self.tlbi_all(op).map(done),
            Opcode::AtcInv | Opcode::PriResp => {
                let step = self.to_device(op, c)?;
                if op == Opcode::AtcInv && step == Step::Done {
                    r.atc.sent(c.sid());
                }
                Ok(step)
            }
            Opcode::Resume | Opcode::StallTerm => self.resolve_stalls(r, op, c),
            Opcode::Sync => self.sync(r, c),
            // Secure-only and EL3 commands on the Non-secure queue, VMS and DPT (not
            // implemented): ILLEGAL.
            Opcode::CfgiVmsPidm
            | Opcode::TlbiEl3All
            | Opcode::TlbiEl3Va
            | Opcode::TlbiSEl2All
            | Opcode::TlbiSEl2Asid
            | Opcode::TlbiSEl2Va
            | Opcode::TlbiSEl2Vaa
            | Opcode::TlbiSS12Vmall
            | Opcode::TlbiSS2Ipa
            | Opcode::TlbiSnhAll
            | Opcode::DptiAll
            | Opcode::DptiPa => Err(CError::Ill),
        }
    }

    /// §4.3: the configuration invalidations (STE and CD caches).
    fn cfgi(&self, op: Opcode, c: &Command) -> Result<(), CError> {
        match op {
            // §4.3.1: the STE and every CD cached through it.
            Opcode::CfgiSte => {
                let sid = c.sid();
                self.sid_in_range(sid)?;
                self.issue(move |ch| {
                    inval(&ch.ste, |&k, _| k == sid);
                    inval(&ch.cd, |&(k, _), _| k == sid);
                });
            }
            // §4.3.2, §4.3.6: 2^(Range + 1) StreamIDs from StreamID aligned down; 31 is all.
            Opcode::CfgiSteRange => {
                let span = c.range().saturating_add(1);
                let first = u64::from(c.sid()) >> span;
                let sel = move |k: u32| span >= 32 || u64::from(k) >> span == first;
                self.issue(move |ch| {
                    inval(&ch.ste, |&k, _| sel(k));
                    inval(&ch.cd, |&(k, _), _| sel(k));
                });
            }
            // §4.3.3: one CD (L1CD too, Leaf == 0; the model caches no L1CD apart).
            Opcode::CfgiCd => {
                let (sid, ssid) = (c.sid(), c.ssid());
                self.sid_in_range(sid)?;
                if u64::from(ssid) >> self.caps.ssidsize != 0 {
                    return Err(CError::Ill);
                }
                self.issue(move |ch| inval(&ch.cd, |&k, _| k == (sid, ssid)));
            }
            // §4.3.4.
            _ => {
                let sid = c.sid();
                self.sid_in_range(sid)?;
                self.issue(move |ch| inval(&ch.cd, |&(k, _), _| k == sid));
            }
        }
        Ok(())
    }

    /// §4.4.2: the stage-1 TLB invalidations of a VMID (combined stage-1+2 entries too).
    fn tlbi_s1(&self, op: Opcode, c: &Command) -> Result<(), CError> {
        let vmid = self.vmid_of(c)?;
        match op {
            // §4.4.2.1: every stage-1 entry of the VMID.
            Opcode::TlbiNhAll => self.issue(move |ch| {
                // Before the epochs advance: every entry the VMID's ASIDs tag goes.
                ch.tags.forget_group(u64::from(vmid));
                inval(&ch.tlb, |k, _| k.va && k.vmid == vmid);
                inval(&ch.s1_walk, |k, _| k.vmid == vmid);
            }),
            // §4.4.2.2: non-global stage-1 entries of the ASID.
            Opcode::TlbiNhAsid => {
                let asid = self.asid_of(c)?;
                self.issue(move |ch| {
                    ch.tags.forget_tag(u64::from(vmid), u64::from(asid));
                    inval(&ch.tlb, |k, _| k.va && k.vmid == vmid && k.asid == Some(asid));
                    inval(&ch.s1_walk, |k, _| k.vmid == vmid && k.asid == Some(asid));
                });
            }
            // §4.4.2.4 (ASID and global entries), §4.4.2.3 (every ASID).
            _ => {
                let asid = if op == Opcode::TlbiNhVa { Some(self.asid_of(c)?) } else { None };
                let sel = self.tlbi_select(c, c.address())?;
                let leaf = c.leaf();
                let asid_ok = move |a: Option<u16>| asid.is_none() || a.is_none() || a == asid;
                let (sizes, spans) = (self.tlb_sizes(), self.walk_spans());
                self.issue(move |ch| {
                    // The ASIDs whose entries the command selects: its own, or (NH_VAA) every
                    // ASID the VMID's stage-1 entries carry, from the tag registry, read after
                    // each cache's epoch has advanced (`None`: every set). Global entries carry
                    // no ASID and are always named.
                    let asids = || {
                        let (one, listed) = match asid {
                            Some(a) => (Some(u64::from(a)), Default::default()),
                            None => (None, ch.tags.tags(u64::from(vmid))?),
                        };
                        Some(one.into_iter().chain(listed).filter_map(|a| u16::try_from(a).ok()))
                    };
                    let keys = || {
                        let tags = std::iter::once(None).chain(asids()?.map(Some));
                        let n = sel.page_count(sizes).saturating_mul(tags.clone().count() as u64);
                        worth_naming(n, ch.tlb_sets).then(|| sel.tlb_keys(vmid, tags, true, sizes))
                    };
                    inval_keys(&ch.tlb, keys, |k, e| {
                        k.va && k.vmid == vmid && asid_ok(k.asid) && sel.tlb(k, e)
                    });
                    if !leaf {
                        let keys = || {
                            Some(asids()?.flat_map(move |a| sel.walk_keys(vmid, Some(a), spans)))
                        };
                        inval_keys(&ch.s1_walk, keys, |k, _| {
                            k.vmid == vmid && asid_ok(k.asid) && sel.walk(k)
                        });
                    }
                });
            }
        }
        Ok(())
    }

    /// §4.4.3: the stage-2 TLB invalidations of a VMID.
    fn tlbi_s2(&self, op: Opcode, c: &Command) -> Result<(), CError> {
        if op == Opcode::TlbiS12Vmall {
            // §4.4.3.2: everything of the VMID, both stages.
            let vmid = self.vmid_of(c)?;
            self.issue(move |ch| {
                ch.tags.forget_group(u64::from(vmid));
                inval(&ch.tlb, |k, _| k.vmid == vmid);
                inval(&ch.s1_walk, |k, _| k.vmid == vmid);
                inval(&ch.s2_walk, |k, _| k.vmid == vmid);
                inval(&ch.s2_leaf, |k, _| k.vmid == vmid);
            });
            return Ok(());
        }
        // §4.4.3.1: stage-2 entries of the IPA range.
        if !self.caps.s2p {
            return Err(CError::Ill);
        }
        let vmid = self.vmid_of(c)?;
        let sel = self.tlbi_select(c, c.ipa())?;
        let leaf = c.leaf();
        let (sizes, spans) = (self.tlb_sizes(), self.walk_spans());
        self.issue(move |ch| {
            let keys = || {
                let tags = std::iter::once(None);
                worth_naming(sel.page_count(sizes), ch.tlb_sets)
                    .then(|| sel.tlb_keys(vmid, tags, false, sizes))
            };
            inval_keys(&ch.tlb, keys, |k, e| !k.va && k.vmid == vmid && sel.tlb(k, e));
            // IMPDEF: the stage-2 leaf cache (nested table and CD fetches) is selected by the
            // range only, not by TG / TTL.
            let leaf_keys = || Some(sel.s2_leaf_keys(vmid, sizes));
            inval_keys(&ch.s2_leaf, leaf_keys, |k, _| {
                k.vmid == vmid && hits(k.page, k.page_lg2, sel.lo, sel.hi)
            });
            if !leaf {
                let keys = || Some(sel.walk_keys(vmid, None, spans));
                inval_keys(&ch.s2_walk, keys, |k, _| k.vmid == vmid && sel.walk(k));
            }
        });
        Ok(())
    }

    /// §4.4.4.1 CMD_TLBI_NSNH_ALL: every Non-secure non-hypervisor entry, all of them here;
    /// §4.4.2.7 to §4.4.2.10 the EL2 TLBIs, only with EL2 (IMPDEF: everything, see the
    /// module doc).
    fn tlbi_all(&self, op: Opcode) -> Result<(), CError> {
        if op != Opcode::TlbiNsnhAll && !self.caps.hyp {
            return Err(CError::Ill);
        }
        self.issue(invalidate_all_tlbs);
        Ok(())
    }

    /// §4.5: the commands that send a message to a device: CMD_ATC_INV (§4.5.1, ILLEGAL
    /// without ATS) and CMD_PRI_RESP (§4.5.2, ILLEGAL without PRI or with Resp 0b11). Each
    /// waits while the outbox is full (the module doc).
    fn to_device(&self, op: Opcode, c: &Command) -> Result<Step, CError> {
        let ssid = c.ssv().then_some(c.ssid());
        let o = if op == Opcode::AtcInv {
            if !self.caps.ats {
                return Err(CError::Ill);
            }
            self.sid_in_range(c.sid())?;
            let (global, addr, size_lg2) = (c.global(), c.address(), c.atc_size());
            Output::AtcInvalidate { sid: c.sid(), ssid, global, addr, size_lg2 }
        } else {
            if !self.caps.pri {
                return Err(CError::Ill);
            }
            let response_code = c.resp().map_err(|_| CError::Ill)?.response_code();
            Output::PriResponse { sid: c.sid(), ssid, prg_index: c.prgindex(), response_code }
        };
        Ok(if self.message(o) { Step::Done } else { Step::Waiting })
    }

    /// §4.7.1 CMD_RESUME, §4.7.2 CMD_STALL_TERM: ILLEGAL with the terminate-only model
    /// (SMMU_IDR0.STALL_MODEL == 0b01). Both complete when consumed (§4.7.3: CMD_SYNC adds
    /// nothing for them), which is once the responses they make are in the outbox.
    fn resolve_stalls(&self, r: &mut RegFile, op: Opcode, c: &Command) -> Result<Step, CError> {
        if self.caps.stall_model == StallModel::TerminateOnly as u64 {
            return Err(CError::Ill);
        }
        Ok(if op == Opcode::Resume {
            self.resume(r, c.sid(), c.stag(), c.resume_action())
        } else {
            self.stall_term(c.sid())
        })
    }

    /// §4.7.3 CMD_SYNC: everything before it has completed already (processing is
    /// synchronous, and a command whose message waited stopped the queue before it). Its MSI
    /// is the completion write the command names, so it is a message that waits for room,
    /// never coalesced; the wired interrupt and SEV coalesce.
    fn sync(&self, r: &mut RegFile, c: &Command) -> Result<Step, CError> {
        // §3.9.1.4: an ATC invalidation before it failed (timed out).
        if r.atc_failed {
            r.atc_failed = false;
            r.atc_sync_waiting = false;
            return Err(CError::AtcInvSync);
        }
        // §4.7.3: it completes only once the CMD_ATC_INVs before it have; CONS stays on it.
        r.atc_sync_waiting = r.atc.busy();
        if r.atc_sync_waiting {
            return Ok(Step::Waiting);
        }
        // §3.21, §4.7.3: the invalidations before it have completed when it completes (strict
        // holds them until now; forgiving ran them when read).
        self.deferred.sync(&self.caches);
        match c.cs().map_err(|_| CError::Ill)? {
            SyncCs::SigNone => {}
            // MSIAddress == 0: no MSI.
            SyncCs::SigIrq if self.caps.msi => {
                let addr = c.msiaddress();
                if addr != 0 && !self.message(Output::Msi { addr, data: c.msidata() }) {
                    return Ok(Step::Waiting);
                }
            }
            SyncCs::SigIrq => self.interrupt(Irq::CmdSync, Output::CmdSyncIrq),
            // SIG_SEV is SIG_NONE without SMMU_IDR0.SEV.
            SyncCs::SigSev => {
                if self.caps.sev {
                    self.interrupt(Irq::Sev, Output::Sev);
                }
            }
        }
        Ok(Step::Done)
    }

    /// One tick of the SMMU's clock (the module doc): ATC invalidation completions that are
    /// due arrive, and a CMD_SYNC waiting for them completes; or the time-out expires and the
    /// waiting CMD_SYNC fails with CERROR_ATC_INV_SYNC. The embedder calls it to let time
    /// pass; every register read is one too.
    pub fn tick(&self) {
        let mut r = self.lock();
        self.tick_locked(&mut r);
    }

    pub(super) fn tick_locked(&self, r: &mut RegFile) {
        if !r.atc.busy() {
            let _ = r.atc.tick();
            return;
        }
        if r.atc.tick().is_some() {
            r.atc.rearm();
            r.atc_failed = true;
        }
        if r.atc_sync_waiting {
            self.process_cmdq(r);
        }
    }

    /// A device's ATS Invalidate Completion (PCIe §10.3.2), sent by the embedder playing
    /// StreamID `sid`: completes the oldest CMD_ATC_INV outstanding to it, and a CMD_SYNC
    /// waiting for it may complete. `false` (counted, ignored) if none was outstanding.
    pub fn atc_completion(&self, sid: u32) -> bool {
        let mut r = self.lock();
        let matched = r.atc.complete(sid);
        if matched && r.atc_sync_waiting {
            self.process_cmdq(&mut r);
        }
        matched
    }

    /// What the SMMU has seen of ATC invalidation completions: waited for, completed, timed
    /// out, unexpected.
    pub fn atc_stats(&self) -> sviommu_tlb::AtsTrackerStats {
        self.lock().atc.stats()
    }

    /// IMPDEF: a StreamID beyond SMMU_IDR1.SIDSIZE is CERROR_ILL.
    fn sid_in_range(&self, sid: u32) -> Result<(), CError> {
        if u64::from(sid) >> self.caps.sidsize != 0 {
            return Err(CError::Ill);
        }
        Ok(())
    }

    /// The VMID of a TLBI: VMID[15:8] must be zero with 8-bit VMIDs (IMPDEF: CERROR_ILL);
    /// IGNORED (taken as 0) without stage 2.
    fn vmid_of(&self, c: &Command) -> Result<u16, CError> {
        if !self.caps.s2p {
            return Ok(0);
        }
        let v = c.vmid();
        if !self.caps.vmid16 && v >> 8 != 0 {
            return Err(CError::Ill);
        }
        Ok(v)
    }

    /// The ASID of a TLBI, checked against 8-bit ASIDs as the VMID is.
    fn asid_of(&self, c: &Command) -> Result<u16, CError> {
        let a = c.asid();
        if !self.caps.asid16 && a >> 8 != 0 {
            return Err(CError::Ill);
        }
        Ok(a)
    }

    /// What a VA or IPA TLBI selects (§4.4.1.1): the input range `[lo, hi]`, one address or,
    /// with SMMU_IDR3.RIL and TG != 0, (NUM + 1) * 2^SCALE granules from the address aligned
    /// down; under the strict profile also TG and TTL, which otherwise are only hints.
    fn tlbi_select(&self, c: &Command, addr: u64) -> Result<TlbiSelect, CError> {
        // SCALE[5] needs SMMU_IDR5.DS (not implemented); TTL128 needs 128-bit descriptors.
        if c.scale() >> 5 != 0 || c.ttl128() {
            return Err(CError::Ill);
        }
        let granule = match c.tg() {
            Ok(Some(g)) if self.caps.ril => g,
            _ => return Ok(TlbiSelect { lo: addr, hi: addr, granule_lg2: None, level: None }),
        };
        let g_lg2 = granule.lg2();
        let lo = addr & !mask64(g_lg2);
        let pages = (u64::from(c.num()) + 1) << c.scale();
        let len = pages.checked_shl(u32::from(g_lg2)).unwrap_or(u64::MAX);
        let hi = lo.saturating_add(len.saturating_sub(1));
        if !self.params.profile.is_strict() {
            return Ok(TlbiSelect { lo, hi, granule_lg2: None, level: None });
        }
        // §4.4.1.1: with TG != 0 only entries inserted with that granule need go; with TTL
        // != 0 only those from a walk level equal to TTL. TTL 0b01 with the 16K granule is
        // Reserved without SMMU_IDR5.DS and treated as 0b00.
        let ttl = c.ttl();
        let level = (ttl != 0 && !(ttl == 1 && g_lg2 == 14)).then(|| ttl_level(ttl));
        Ok(TlbiSelect { lo, hi, granule_lg2: Some(g_lg2), level })
    }

    /// Every page size a TLB or stage-2 leaf entry can have: the leaf sizes of each granule
    /// SMMU_IDR5 advertises (0 pads). A range invalidation names its keys at each.
    fn tlb_sizes(&self) -> [u8; 9] {
        let mut sizes = [0; 9];
        let granules = [(Granule::Size4K, 12), (Granule::Size16K, 14), (Granule::Size64K, 16)];
        let advertised = granules.into_iter().filter(|&(g, _)| self.caps.granule(g));
        let each = advertised.flat_map(|(_, lg2)| super::cache::granule_sizes(lg2));
        for (slot, lg2) in sizes.iter_mut().zip(each) {
            *slot = lg2;
        }
        sizes
    }

    /// Every span a walk-cache entry can have: each table level below a root of each granule
    /// SMMU_IDR5 advertises, `granule + k * (granule - 3)` bits for k from 1 to 4 (what the
    /// walk caches' lookups probe; 0 pads).
    fn walk_spans(&self) -> [u8; 12] {
        let mut spans = [0; 12];
        let granules = [(Granule::Size4K, 12u8), (Granule::Size16K, 14), (Granule::Size64K, 16)];
        let advertised = granules.into_iter().filter(|&(g, _)| self.caps.granule(g));
        let each = advertised.flat_map(|(_, lg2)| {
            let stride = lg2 - 3;
            (1..=4u8).map(move |k| lg2 + stride * k).filter(|&span| span < 64)
        });
        for (slot, span) in spans.iter_mut().zip(each) {
            *slot = span;
        }
        spans
    }

    /// A command that invalidates: carried out now (forgiving) or when the next CMD_SYNC
    /// completes (strict, §3.21), or earlier at a seeded point.
    ///
    /// Strict: the command first runs once marking what it selects, so a hit on an entry it
    /// will remove names the missing CMD_SYNC (`sviommu_tlb::sanitize::marking`).
    fn issue(&self, op: impl Fn(&super::cache::Caches) + Clone + Send + Sync + 'static) {
        if self.params.profile.is_strict() {
            sviommu_tlb::sanitize::marking(|| op(&self.caches));
        }
        self.deferred.issue(&self.caches, op);
    }
}

/// The TTL hint as a level number (TTL is two bits: 1 to 3).
fn ttl_level(ttl: u8) -> i8 {
    i8::try_from(ttl).unwrap_or(0)
}

/// What an address-based TLBI selects, decided when the command is read.
#[derive(Clone, Copy, Debug)]
struct TlbiSelect {
    /// The first and last input address.
    lo: u64,
    hi: u64,
    /// Strict only: entries inserted with this granule (TG).
    granule_lg2: Option<u8>,
    /// Strict only: leaf entries from this walk level (TTL).
    level: Option<i8>,
}

impl TlbiSelect {
    /// Whether the TLB entry `k`, `e` is selected.
    fn tlb(&self, k: &super::cache::TlbKey, e: &super::cache::TlbEntry) -> bool {
        hits(k.page, k.page_lg2, self.lo, self.hi)
            && self.granule_lg2.is_none_or(|g| e.hint.granule_lg2 == g)
            && self.level.is_none_or(|l| e.hint.level == l)
    }

    /// Every TLB key of `vmid` tagged with one of `asids` (`None`: no ASID) whose page of one
    /// of `sizes` (0 ends them) meets the range.
    fn tlb_keys(
        self,
        vmid: u16,
        asids: impl Iterator<Item = Option<u16>>,
        va: bool,
        sizes: [u8; 9],
    ) -> impl Iterator<Item = TlbKey> {
        asids.flat_map(move |asid| {
            self.pages(sizes).map(move |(page, page_lg2)| TlbKey { vmid, asid, va, page, page_lg2 })
        })
    }

    /// How many pages of all `sizes` meet the range: a TLB invalidation's keys per tag.
    fn page_count(self, sizes: [u8; 9]) -> u64 {
        let sizes = sizes.into_iter().take_while(|&lg2| lg2 != 0 && lg2 < 64);
        let each = sizes.map(|lg2| ((self.hi >> lg2) - (self.lo >> lg2)).saturating_add(1));
        each.fold(0, u64::saturating_add)
    }

    /// Every walk-cache key of `vmid` and `asid` whose table of one of `spans` (0 ends them)
    /// meets the range: a key per span for a range within one table.
    fn walk_keys(
        self,
        vmid: u16,
        asid: Option<u16>,
        spans: [u8; 12],
    ) -> impl Iterator<Item = WalkKey> {
        let spans = spans.into_iter().take_while(|&lg2| lg2 != 0 && lg2 < 64);
        spans.flat_map(move |span_lg2| {
            ((self.lo >> span_lg2)..=(self.hi >> span_lg2)).map(move |prefix| WalkKey {
                vmid,
                asid,
                span_lg2,
                prefix,
            })
        })
    }

    /// Every stage-2 leaf cache key of `vmid` whose page meets the range.
    fn s2_leaf_keys(self, vmid: u16, sizes: [u8; 9]) -> impl Iterator<Item = S2LeafKey> {
        self.pages(sizes).map(move |(page, page_lg2)| S2LeafKey { vmid, page, page_lg2 })
    }

    /// The numbers of the pages of each of `sizes` that meet the range, with their size.
    fn pages(self, sizes: [u8; 9]) -> impl Iterator<Item = (u64, u8)> {
        let sizes = sizes.into_iter().take_while(|&lg2| lg2 != 0 && lg2 < 64);
        sizes.flat_map(move |lg2| ((self.lo >> lg2)..=(self.hi >> lg2)).map(move |p| (p, lg2)))
    }

    /// Whether the walk-cache entry `k` is selected. IMPDEF: by the range only; TG and TTL do
    /// not narrow walk-cache invalidation.
    fn walk(&self, k: &super::cache::WalkKey) -> bool {
        hits(k.prefix, k.span_lg2, self.lo, self.hi)
    }
}

/// Every TLB and walk-cache entry.
fn invalidate_all_tlbs(ch: &super::cache::Caches) {
    ch.tags.forget_all();
    inval(&ch.tlb, |_, _| true);
    inval(&ch.s1_walk, |_, _| true);
    inval(&ch.s2_walk, |_, _| true);
    inval(&ch.s2_leaf, |_, _| true);
}

/// The hook's view of the Stream table, with the register file held.
struct Streams<'a, M: PhysMemory<Addr = Hpa>> {
    smmu: &'a Smmu<M>,
    r: &'a mut RegFile,
}

impl<M: PhysMemory<Addr = Hpa>> StreamLookup for Streams<'_, M> {
    /// The STE a transaction of `sid` without SubstreamID would use, read from memory (not
    /// the STE cache: the hook runs where the hardware reads the new configuration), with the
    /// event it would end with recorded in the Event queue. IMPDEF: read whatever SMMUEN says,
    /// from the Stream table the registers name.
    fn ste(&mut self, sid: u32) -> Result<Ste, Abort> {
        let t = Transaction::new(sid, 0, Access::READ);
        let req = Req { t: &t, access: t.access };
        let mut cx = WalkCtx::new(&self.smmu.mem, ());
        let found = self.smmu.fetch_ste(&mut cx, &req).and_then(|ste| {
            self.smmu.check_ste(&ste, &req)?;
            Ok(ste)
        });
        found.map_err(|a| self.smmu.report_locked(self.r, &t, a))
    }
}

/// Whether the block `prefix << lg2 .. + 2^lg2` meets `[lo, hi]`.
fn hits(prefix: u64, lg2: u8, lo: u64, hi: u64) -> bool {
    let start = prefix.checked_shl(u32::from(lg2)).unwrap_or(0);
    let end = start | mask64(lg2);
    start <= hi && lo <= end
}

/// Invalidates what `sel` selects, if the cache exists, searching only the sets of the keys
/// `keys` names (`None`: every set; see `Cache::invalidate_keys`).
fn inval_keys<K: Copy + Eq + std::hash::Hash, V: Copy, I: IntoIterator<Item = K>>(
    c: &Option<sviommu_tlb::Tracked<K, V>>,
    keys: impl FnOnce() -> Option<I>,
    sel: impl Fn(&K, &V) -> bool,
) {
    if let Some(c) = c {
        c.invalidate_keys(keys, sel);
    }
}

/// Invalidates what `sel` selects, if the cache exists.
fn inval<K: Copy + Eq + std::hash::Hash, V: Copy>(
    c: &Option<sviommu_tlb::Tracked<K, V>>,
    sel: impl Fn(&K, &V) -> bool,
) {
    if let Some(c) = c {
        c.invalidate(sel);
    }
}

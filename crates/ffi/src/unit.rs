//! A unit behind the C handle: one hardware model over the embedder's memory, and what the
//! boundary counts. Safe Rust: `abi` turns pointers into references and calls these.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sviommu_memory::PAGE_4K_LG2;
use sviommu_pgtable::{Stage, WalkObserver, WalkStep};
use sviommu_smmuv3::hw::{self as smmu, Abort, Silent, Smmu, SmmuCacheStats, StallResult};
use sviommu_smmuv3::spec::cd::Cd;
use sviommu_smmuv3::spec::regs::PAGE_BYTES;
use sviommu_smmuv3::spec::ste::Ste;
use sviommu_tlb::CacheStats;
use sviommu_vtd::hw::{self as vtd, Access, DmaRequest, Vtd, VtdCacheStats};
use sviommu_vtd::spec::pasid::PasidEntry;
use sviommu_vtd::spec::regs::{cap, ecap};
use sviommu_vtd::spec::root::ContextEntry;

use crate::callbacks::{CallbackMemory, Callbacks};
use crate::types::*;

/// The largest PASID / SubstreamID a PCIe PASID TLP prefix carries (20 bits).
const PASID_LAST: u32 = (1 << 20) - 1;

/// How many times one call drains the outbox at most: each drain may let a waiting queue go on
/// and fill it again. What is left stays in the outbox for the next call (nothing is lost).
const DRAIN_ROUNDS: usize = 64;

/// The hardware model.
#[derive(Debug)]
enum Hw {
    Vtd(Box<Vtd<CallbackMemory>>),
    Smmu(Box<Smmu<CallbackMemory>>),
}

/// The boundary's own counters.
#[derive(Debug)]
struct Counters {
    translated: AtomicU64,
    faulted: AtomicU64,
    requests_refused: AtomicU64,
    mmio_accesses: AtomicU64,
    mmio_refused: AtomicU64,
    outputs_delivered: AtomicU64,
    outputs_discarded: AtomicU64,
    panics: AtomicU64,
    /// Recorded faults by code.
    faults_by_code: [AtomicU64; SVIOMMU_FAULT_CODES],
    /// What the walks read (`Seen`, added up).
    context_tt: [AtomicU64; 4],
    pasid_pgtt: [AtomicU64; 8],
    walk_reads: [[AtomicU64; SVIOMMU_WALK_LEVELS]; 2],
    ste_config: [AtomicU64; 8],
    cds: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Self {
            translated: z(),
            faulted: z(),
            requests_refused: z(),
            mmio_accesses: z(),
            mmio_refused: z(),
            outputs_delivered: z(),
            outputs_discarded: z(),
            panics: z(),
            faults_by_code: std::array::from_fn(|_| z()),
            context_tt: std::array::from_fn(|_| z()),
            pasid_pgtt: std::array::from_fn(|_| z()),
            walk_reads: std::array::from_fn(|_| std::array::from_fn(|_| z())),
            ste_config: std::array::from_fn(|_| z()),
            cds: z(),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn add(c: Option<&AtomicU64>, n: u64) {
    if let (Some(c), true) = (c, n > 0) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one translation read from memory: the configuration structures Linux (or any
/// driver) wrote, decoded by the `spec` views, and the page-table entries by stage and level.
/// Plain counts added to the unit's atomics once the translation is done.
#[derive(Default)]
struct Seen {
    context_tt: [u64; 4],
    pasid_pgtt: [u64; 8],
    walk_reads: [[u64; SVIOMMU_WALK_LEVELS]; 2],
    ste_config: [u64; 8],
    cds: u64,
}

impl WalkObserver for Seen {
    fn step(&mut self, step: WalkStep) {
        let stage = match step.stage {
            Stage::S1 => 0,
            Stage::S2 => 1,
        };
        let level = usize::try_from(i16::from(step.level) + 1).ok();
        let slot = self.walk_reads.get_mut(stage).and_then(|r| r.get_mut(level?));
        if let Some(n) = slot {
            *n += 1;
        }
    }

    fn structure(&mut self, what: &'static str, _mem_addr: u64, words: &[u64]) {
        // The names are the ones the models give their reads (vtd's hw::translate, smmuv3's
        // hw::stream and hw::context).
        match what {
            "STE" => {
                if let Ok(w) = <[u64; 8]>::try_from(words) {
                    let ste = Ste(w);
                    if ste.v() {
                        bump_plain(&mut self.ste_config, u64::from(ste.config_raw()));
                    }
                }
            }
            "CD" => {
                if let Ok(w) = <[u64; 8]>::try_from(words) {
                    if Cd(w).v() {
                        self.cds += 1;
                    }
                }
            }
            "context entry" => {
                if let Ok(w) = <[u64; 2]>::try_from(words) {
                    let ce = ContextEntry::from_words(w);
                    if ce.p() {
                        bump_plain(&mut self.context_tt, ce.tt_raw());
                    }
                }
            }
            "PASID-table entry" => {
                if let Ok(w) = <[u64; 8]>::try_from(words) {
                    let pe = PasidEntry::from_words(w);
                    if pe.p() {
                        bump_plain(&mut self.pasid_pgtt, pe.pgtt_raw());
                    }
                }
            }
            _ => {}
        }
    }
}

fn bump_plain(counts: &mut [u64], i: u64) {
    if let Some(n) = usize::try_from(i).ok().and_then(|i| counts.get_mut(i)) {
        *n += 1;
    }
}

/// A VT-d unit or an SMMUv3, made by `sviommu_vtd_create` or `sviommu_smmu_create`; opaque to
/// C, which holds it by pointer until `sviommu_destroy`.
#[derive(Debug)]
pub struct SviommuUnit {
    hw: Hw,
    cb: Callbacks,
    counters: Counters,
    memory_errors: Arc<AtomicU64>,
    /// The sanitizer's reports (strict profile) taken from the model so far, in its words, at
    /// most [`KEPT_VIOLATIONS`] (the model counts every one).
    violations: std::sync::Mutex<Vec<String>>,
}

/// Sanitizer reports a unit keeps for its statistics text.
const KEPT_VIOLATIONS: usize = 64;

/// A request's fields, checked.
struct Checked {
    access: Access,
    translated: bool,
    pasid: Option<u32>,
}

impl SviommuUnit {
    /// A VT-d unit out of reset.
    pub fn vtd(params: vtd::VtdParams, cb: Callbacks) -> Self {
        let errors = Arc::new(AtomicU64::new(0));
        let mem = CallbackMemory::new(cb, Arc::clone(&errors));
        Self::with(Hw::Vtd(Box::new(Vtd::new(mem, params))), cb, errors)
    }

    /// An SMMUv3 out of reset.
    pub fn smmu(params: smmu::SmmuParams, cb: Callbacks) -> Self {
        let errors = Arc::new(AtomicU64::new(0));
        let mem = CallbackMemory::new(cb, Arc::clone(&errors));
        Self::with(Hw::Smmu(Box::new(Smmu::new(mem, params))), cb, errors)
    }

    fn with(hw: Hw, cb: Callbacks, memory_errors: Arc<AtomicU64>) -> Self {
        Self {
            hw,
            cb,
            counters: Counters::default(),
            memory_errors,
            violations: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The sanitizer's counters (found, dropped by the model's queue, words re-read) and the
    /// reports kept so far: the model's queue is drained into the unit's list, which keeps the
    /// first [`KEPT_VIOLATIONS`].
    pub fn violations(&self) -> (sviommu_tlb::sanitize::SanitizerStats, Vec<String>) {
        let (stats, new): (_, Vec<String>) = match &self.hw {
            Hw::Vtd(v) => {
                (v.sanitizer_stats(), v.violations().iter().map(|r| r.to_string()).collect())
            }
            Hw::Smmu(m) => {
                (m.sanitizer_stats(), m.violations().iter().map(|r| r.to_string()).collect())
            }
        };
        let mut kept = match self.violations.lock() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        let room = KEPT_VIOLATIONS.saturating_sub(kept.len());
        kept.extend(new.into_iter().take(room));
        (stats, kept.clone())
    }

    /// `SVIOMMU_ARCH_*`.
    pub fn arch(&self) -> u32 {
        match self.hw {
            Hw::Vtd(_) => SVIOMMU_ARCH_VTD,
            Hw::Smmu(_) => SVIOMMU_ARCH_SMMUV3,
        }
    }

    /// The size in bytes of the unit's register window: VT-d, the 4 KiB pages up to the last
    /// register (the fault recording and IOTLB registers float, §11.4); SMMUv3, pages 0 and 1
    /// (§6.1).
    pub fn mmio_size(&self) -> u64 {
        match &self.hw {
            Hw::Vtd(v) => {
                let (c, e) = (v.params().cap, v.params().ecap);
                // §11.4.10: each fault recording register is 16 bytes; §11.4.8: IVA then IOTLB.
                let frcd_end = cap::fro_bytes(c) + 16 * cap::nfr_count(c);
                let iotlb_end = ecap::iro_bytes(e) + 16;
                let page = 1u64 << PAGE_4K_LG2;
                frcd_end.max(iotlb_end).max(page).div_ceil(page) * page
            }
            Hw::Smmu(_) => 2 * PAGE_BYTES,
        }
    }

    /// Counts a panic caught at the boundary.
    pub fn count_panic(&self) {
        bump(&self.counters.panics);
    }

    /// A register read. 4- and 8-byte accesses go to the model as they are (it reads 0 where
    /// nothing is); 1- and 2-byte reads, naturally aligned, are taken from the aligned 4-byte
    /// register that holds them (register reads have no side effects in either model).
    pub fn mmio_read(&self, offset: u64, size: u32) -> Result<u64, i32> {
        let read = |o: u64, s: u8| match &self.hw {
            Hw::Vtd(v) => v.mmio_read(o, s),
            Hw::Smmu(m) => m.mmio_read(o, s),
        };
        let value = match size {
            4 | 8 if offset % u64::from(size) == 0 => read(offset, if size == 4 { 4 } else { 8 }),
            1 | 2 if offset % u64::from(size) == 0 => {
                let shift = (offset % 4) * 8;
                let mask = (1u64 << (size * 8)) - 1;
                (read(offset - offset % 4, 4) >> shift) & mask
            }
            _ => {
                bump(&self.counters.mmio_refused);
                return Err(SVIOMMU_ERR_ACCESS);
            }
        };
        bump(&self.counters.mmio_accesses);
        Ok(value)
    }

    /// A register write of 4 or 8 bytes, naturally aligned (VT-d §11.4 and SMMUv3 §6.2 define
    /// no narrower register writes; a narrower one is refused rather than guessed at, since a
    /// read-modify-write would rewrite write-1-to-clear and command bits). Then delivers what
    /// the write made the unit send.
    pub fn mmio_write(&self, offset: u64, size: u32, value: u64) -> Result<(), i32> {
        let size = match size {
            4 if offset % 4 == 0 => 4,
            8 if offset % 8 == 0 => 8,
            _ => {
                bump(&self.counters.mmio_refused);
                return Err(SVIOMMU_ERR_ACCESS);
            }
        };
        bump(&self.counters.mmio_accesses);
        match &self.hw {
            Hw::Vtd(v) => v.mmio_write(offset, size, value),
            Hw::Smmu(m) => m.mmio_write(offset, size, value),
        }
        self.drain();
        Ok(())
    }

    fn check(&self, r: &SviommuRequest) -> Result<Checked, i32> {
        let known = SVIOMMU_ACCESS_WRITE
            | SVIOMMU_ACCESS_EXEC
            | SVIOMMU_ACCESS_PRIV
            | SVIOMMU_ACCESS_TRANSLATED;
        let pasid = match r.has_pasid {
            0 => Some(None),
            1 if r.pasid <= PASID_LAST => Some(Some(r.pasid)),
            _ => None,
        };
        let rid_ok = match self.hw {
            Hw::Vtd(_) => u16::try_from(r.requester).is_ok(),
            Hw::Smmu(_) => true,
        };
        match pasid {
            Some(pasid) if r.access & !known == 0 && rid_ok => Ok(Checked {
                access: Access {
                    write: r.access & SVIOMMU_ACCESS_WRITE != 0,
                    exec: r.access & SVIOMMU_ACCESS_EXEC != 0,
                    privileged: r.access & SVIOMMU_ACCESS_PRIV != 0,
                },
                translated: r.access & SVIOMMU_ACCESS_TRANSLATED != 0,
                pasid,
            }),
            _ => {
                bump(&self.counters.requests_refused);
                Err(SVIOMMU_ERR_INVALID)
            }
        }
    }

    /// Translates one request. A fault, abort or stall is an answer, not an error; after one,
    /// what the unit sent (a fault event, an Event queue interrupt) is delivered.
    pub fn translate(&self, r: &SviommuRequest) -> Result<SviommuResult, i32> {
        let c = self.check(r)?;
        let out = match &self.hw {
            Hw::Vtd(v) => {
                let rid = u16::try_from(r.requester).map_err(|_| SVIOMMU_ERR_INVALID)?;
                let req = DmaRequest { rid, pasid: c.pasid, addr: r.addr, access: c.access };
                let answer = if c.translated {
                    v.translated_request(&req)
                } else {
                    let (answer, seen) = v.translate_observed(&req, Seen::default());
                    self.count_seen(&seen);
                    answer
                };
                match answer {
                    Ok(t) => SviommuResult {
                        outcome: SVIOMMU_OUTCOME_TRANSLATED,
                        output: t.output,
                        page_lg2: t.page_lg2,
                        perms: t.perms.bits(),
                        interrupt: t.interrupt.into(),
                        reads: t.reads,
                        ..SviommuResult::default()
                    },
                    Err(f) => SviommuResult {
                        outcome: SVIOMMU_OUTCOME_FAULT,
                        recorded: (!f.fpd).into(),
                        fault_code: u32::try_from(u64::from(f.reason)).unwrap_or(u32::MAX),
                        ..SviommuResult::default()
                    },
                }
            }
            Hw::Smmu(m) => {
                let mut t = smmu::Transaction::new(r.requester, r.addr, c.access);
                t.ssid = c.pasid;
                t.translated = c.translated;
                let (answer, seen) = m.translate_observed(&t, Seen::default());
                self.count_seen(&seen);
                match answer {
                    Ok(x) => SviommuResult {
                        outcome: SVIOMMU_OUTCOME_TRANSLATED,
                        output: x.output,
                        page_lg2: x.page_lg2,
                        perms: x.perms.bits(),
                        reads: x.reads,
                        ..SviommuResult::default()
                    },
                    Err(a) => smmu_abort(&a),
                }
            }
        };
        if out.outcome == SVIOMMU_OUTCOME_TRANSLATED {
            bump(&self.counters.translated);
        } else {
            bump(&self.counters.faulted);
            if out.recorded == 1 {
                let code = usize::try_from(out.fault_code).ok();
                add(code.and_then(|c| self.counters.faults_by_code.get(c)), 1);
            }
            self.drain();
        }
        Ok(out)
    }

    fn count_seen(&self, seen: &Seen) {
        let c = &self.counters;
        for (a, n) in c.context_tt.iter().zip(seen.context_tt) {
            add(Some(a), n);
        }
        for (a, n) in c.pasid_pgtt.iter().zip(seen.pasid_pgtt) {
            add(Some(a), n);
        }
        for (row, seen_row) in c.walk_reads.iter().zip(seen.walk_reads) {
            for (a, n) in row.iter().zip(seen_row) {
                add(Some(a), n);
            }
        }
        for (a, n) in c.ste_config.iter().zip(seen.ste_config) {
            add(Some(a), n);
        }
        add(Some(&c.cds), seen.cds);
    }

    /// Delivers everything the unit has sent, oldest first, through the callbacks; a drain
    /// may let a waiting invalidation queue / Command queue go on, so it drains again, up to
    /// `DRAIN_ROUNDS` times.
    pub fn drain(&self) {
        for _ in 0..DRAIN_ROUNDS {
            let delivered = match &self.hw {
                Hw::Vtd(v) => {
                    let out = v.drain_outputs();
                    out.iter().for_each(|o| self.deliver_vtd(o));
                    out.len()
                }
                Hw::Smmu(m) => {
                    let out = m.drain_outputs();
                    out.iter().for_each(|o| self.deliver_smmu(o));
                    out.len()
                }
            };
            if delivered == 0 {
                return;
            }
        }
    }

    fn delivered(&self, ok: bool) {
        bump(if ok { &self.counters.outputs_delivered } else { &self.counters.outputs_discarded });
    }

    fn deliver_vtd(&self, o: &vtd::Output) {
        let m = match *o {
            vtd::Output::Msi { addr, data, .. } => return self.delivered(self.cb.msi(addr, data)),
            vtd::Output::DevTlbInvalidation(i) => SviommuMessage {
                kind: SVIOMMU_MSG_DEVTLB_INVALIDATION,
                requester: u32::from(i.sid),
                pasid: i.pasid.unwrap_or(0),
                has_pasid: i.pasid.is_some().into(),
                global: i.global.into(),
                size_lg2: i.size_lg2,
                addr: i.addr,
                pfsid: u32::from(i.pfsid),
                mip: i.mip,
                ..SviommuMessage::default()
            },
            vtd::Output::PageGroupResponse(r) => SviommuMessage {
                kind: SVIOMMU_MSG_PAGE_RESPONSE,
                requester: u32::from(r.rid()),
                pasid: if r.pp() { r.pasid() } else { 0 },
                has_pasid: r.pp().into(),
                last_in_group: r.lpig().into(),
                response_code: u32::try_from(r.rc_raw()).unwrap_or(u32::MAX),
                prg_index: u32::from(r.prgi()),
                has_private_data: r.pdp().into(),
                private_data: if r.pdp() { [r.priv_data_lo(), r.priv_data_hi()] } else { [0; 2] },
                ..SviommuMessage::default()
            },
        };
        self.delivered(self.cb.message(&m));
    }

    fn deliver_smmu(&self, o: &smmu::Output) {
        let irq = |irq| SviommuMessage { kind: SVIOMMU_MSG_WIRED_IRQ, irq, ..Default::default() };
        let m = match *o {
            smmu::Output::Msi { addr, data } => return self.delivered(self.cb.msi(addr, data)),
            smmu::Output::CmdSyncIrq => irq(SVIOMMU_IRQ_CMD_SYNC),
            smmu::Output::EventqIrq => irq(SVIOMMU_IRQ_EVENTQ),
            smmu::Output::PriqIrq => irq(SVIOMMU_IRQ_PRIQ),
            smmu::Output::GerrorIrq => irq(SVIOMMU_IRQ_GERROR),
            smmu::Output::Sev => SviommuMessage { kind: SVIOMMU_MSG_SEV, ..Default::default() },
            smmu::Output::StallResolved { sid, stag, result } => {
                let mut m = SviommuMessage {
                    kind: SVIOMMU_MSG_STALL_RESOLVED,
                    requester: sid,
                    stag,
                    ..Default::default()
                };
                match result {
                    StallResult::Translated(t) => {
                        m.stall_result = SVIOMMU_STALL_TRANSLATED;
                        m.addr = t.output;
                        m.size_lg2 = t.page_lg2;
                        m.perms = t.perms.bits();
                    }
                    StallResult::Aborted => m.stall_result = SVIOMMU_STALL_ABORTED,
                    StallResult::RazWi => m.stall_result = SVIOMMU_STALL_RAZ_WI,
                }
                m
            }
            smmu::Output::AtcInvalidate { sid, ssid, global, addr, size_lg2 } => SviommuMessage {
                kind: SVIOMMU_MSG_DEVTLB_INVALIDATION,
                requester: sid,
                pasid: ssid.unwrap_or(0),
                has_pasid: ssid.is_some().into(),
                global: global.into(),
                // §4.5.1: the span is 4K << Size bytes; 52 (2^64 bytes) is everything.
                size_lg2: size_lg2.saturating_add(PAGE_4K_LG2).min(64),
                addr,
                ..Default::default()
            },
            smmu::Output::PriResponse { sid, ssid, prg_index, response_code } => SviommuMessage {
                kind: SVIOMMU_MSG_PAGE_RESPONSE,
                requester: sid,
                pasid: ssid.unwrap_or(0),
                has_pasid: ssid.is_some().into(),
                response_code: u32::from(response_code),
                prg_index: u32::from(prg_index),
                ..Default::default()
            },
        };
        self.delivered(self.cb.message(&m));
    }

    /// Everything the unit and the boundary have counted.
    pub fn stats(&self) -> SviommuStats {
        let mut s = SviommuStats { arch: self.arch(), ..SviommuStats::default() };
        let outbox = match &self.hw {
            Hw::Vtd(v) => {
                // The tag registry's figures (`tags`) are not in the C structure yet.
                let VtdCacheStats { context, pasid, iotlb, fs_psc, ss_psc, ss_leaf, tags: _ } =
                    v.cache_stats();
                s.caches = [context, pasid, iotlb, fs_psc, ss_psc, ss_leaf].map(cache);
                let a = v.ats_stats();
                s.vtd_ats = SviommuVtdAtsStats {
                    translation_requests: a.translation_requests,
                    translation_unsupported: a.translation_unsupported,
                    translation_aborted: a.translation_aborted,
                    translation_no_access: a.translation_no_access,
                    translated_blocked: a.translated_blocked,
                    page_requests_queued: a.page_requests_queued,
                    page_requests_overflowed: a.page_requests_overflowed,
                    page_requests_refused: a.page_requests_refused,
                    page_requests_unsupported: a.page_requests_unsupported,
                    page_requests_lost: a.page_requests_lost,
                    auto_responses: a.auto_responses,
                    page_requests_busy: a.page_requests_busy,
                };
                for (t, n) in v.invalidation_stats() {
                    if let Some(slot) = s.vtd_invalidations.get_mut(usize::from(t as u8)) {
                        *slot = n;
                    }
                }
                v.outbox_stats()
            }
            Hw::Smmu(m) => {
                let SmmuCacheStats { ste, cd, tlb, s1_walk, s2_walk, s2_leaf, tags: _ } =
                    m.cache_stats();
                s.caches = [ste, cd, tlb, s1_walk, s2_walk, s2_leaf].map(cache);
                let q = m.stats();
                s.smmu_queues = SviommuSmmuQueueStats {
                    events_written: q.events_written,
                    events_overflowed: q.events_overflowed,
                    events_disabled: q.events_disabled,
                    events_aborted: q.events_aborted,
                    page_requests_written: q.page_requests_written,
                    page_requests_dropped: q.page_requests_dropped,
                    page_requests_aborted: q.page_requests_aborted,
                    page_requests_busy: q.page_requests_busy,
                    stalls: q.stalls,
                    stalls_refused: q.stalls_refused,
                    stall_records_deferred: q.stall_records_deferred,
                    stalls_retried: q.stalls_retried,
                    stalls_terminated: q.stalls_terminated,
                    page_in_hints_dropped: q.page_in_hints_dropped,
                };
                m.outbox_stats()
            }
        };
        s.outbox = SviommuOutboxStats {
            messages: outbox.messages,
            interrupts: outbox.interrupts,
            interrupts_coalesced: outbox.interrupts_coalesced,
            full: outbox.full,
            max_messages: outbox.max_messages,
        };
        let c = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.abi = SviommuAbiStats {
            translated: ld(&c.translated),
            faulted: ld(&c.faulted),
            requests_refused: ld(&c.requests_refused),
            mmio_accesses: ld(&c.mmio_accesses),
            mmio_refused: ld(&c.mmio_refused),
            outputs_delivered: ld(&c.outputs_delivered),
            outputs_discarded: ld(&c.outputs_discarded),
            memory_errors: ld(&self.memory_errors),
            panics: ld(&c.panics),
        };
        s
    }

    /// Faults by code and what the walks read.
    pub fn record_stats(&self) -> SviommuRecordStats {
        let c = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SviommuRecordStats {
            faults: SviommuFaultCounts { by_code: c.faults_by_code.each_ref().map(ld) },
            vtd_context_tt: c.context_tt.each_ref().map(ld),
            vtd_pasid_pgtt: c.pasid_pgtt.each_ref().map(ld),
            walk_reads: c.walk_reads.each_ref().map(|r| r.each_ref().map(ld)),
            smmu_ste_config: c.ste_config.each_ref().map(ld),
            smmu_cds: ld(&c.cds),
            smmu_commands: self.smmu_commands(),
        }
    }

    /// SMMUv3: the commands the model consumed, by opcode.
    fn smmu_commands(&self) -> SviommuOpcodeCounts {
        let mut out = SviommuOpcodeCounts::default();
        if let Hw::Smmu(m) = &self.hw {
            for (op, n) in m.command_stats() {
                if let Some(slot) = out.by_opcode.get_mut(usize::from(op as u8)) {
                    *slot = n;
                }
            }
        }
        out
    }
}

fn cache(c: CacheStats) -> SviommuCacheStats {
    SviommuCacheStats {
        hits: c.hits,
        misses: c.misses,
        evictions: c.evictions,
        stale_inserts: c.stale_inserts,
        invalidated: c.invalidated,
    }
}

/// An SMMU termination as a result.
fn smmu_abort(a: &Abort) -> SviommuResult {
    match a {
        Abort::Event(e) | Abort::Stalled(e) => SviommuResult {
            outcome: if matches!(a, Abort::Stalled(_)) {
                SVIOMMU_OUTCOME_STALLED
            } else {
                SVIOMMU_OUTCOME_FAULT
            },
            recorded: e.record.into(),
            fault_code: u32::from(e.id as u8),
            fault_s2: e.s2.into(),
            stag: e.stag.unwrap_or(0),
            fault_addr: e.ipa.or(e.fetch_addr).unwrap_or(0),
            ..SviommuResult::default()
        },
        Abort::Silent(s) => SviommuResult {
            outcome: SVIOMMU_OUTCOME_ABORTED,
            fault_code: match s {
                Silent::GbpaAbort => SVIOMMU_SILENT_GBPA_ABORT,
                Silent::DisabledBeyondOas => SVIOMMU_SILENT_DISABLED_BEYOND_OAS,
                Silent::SteAbort => SVIOMMU_SILENT_STE_ABORT,
            },
            ..SviommuResult::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use sviommu_vtd::hw::Perms;

    use super::*;

    #[test]
    fn permission_bits_are_the_models() {
        let pairs = [
            (SVIOMMU_PERM_PRIV_R, Perms::PRIV_R),
            (SVIOMMU_PERM_PRIV_W, Perms::PRIV_W),
            (SVIOMMU_PERM_PRIV_X, Perms::PRIV_X),
            (SVIOMMU_PERM_USER_R, Perms::USER_R),
            (SVIOMMU_PERM_USER_W, Perms::USER_W),
            (SVIOMMU_PERM_USER_X, Perms::USER_X),
        ];
        for (c, p) in pairs {
            assert_eq!(c, p.bits());
        }
    }
}

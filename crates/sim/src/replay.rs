//! Replaying a trace: the trace's scenario is built into a machine by [`machine::build_with`]
//! (the same build `run` uses, with a [`Config`] that may change the unit's caches and the
//! domains' invalidation policy), then every record goes where the scenario sent it: a DMA
//! request to the hardware model's `translate` with its device's request ID, an action to the
//! IOMMU API through [`machine::act`].
//!
//! Threads: the records between two actions are a segment. With one thread the host replays
//! them in order, collecting faults after each blocked request as `run` does. With `N`
//! threads, device `d` replays its own requests of the segment, in order, on thread `d % N`,
//! while the host thread collects faults and delivers the unit's outbox; an action waits
//! until every thread has finished the segment before it. So each device's requests, and
//! every action, happen in the trace's order whatever `N`; only the interleaving of different
//! devices changes. A trace whose translations do not depend on that interleaving (no race:
//! no device's result depends on what another device's requests left in a cache, as a stale
//! entry does) translates the same with any `N`: each device's [`DeviceReplay::digest`] is
//! the same. The caches' figures may differ.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::machine::Invalidation;
use crate::machine::{self, Config, Hw, Machine};
use crate::run::{self, DmaResult, Stats, Tally};
use crate::scenario::{Arch, Scenario, ScenarioError, Source};
use crate::trace::{fnv1a, Record, Trace, TraceError, FNV_START};

/// How to replay.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Only this architecture (every architecture the scenario names when `None`).
    pub arch: Option<Arch>,
    /// Changes to the scenario's unit and domains.
    pub config: Config,
    /// Threads that replay devices (0 and 1: the host replays everything itself).
    pub threads: usize,
}

/// A replay's report.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    /// The scenario's title.
    pub title: String,
    /// The trace file.
    pub trace: String,
    /// Records in the trace.
    pub records: u64,
    /// Threads that replayed devices (1: the host alone).
    pub threads: usize,
    /// The configuration asked for.
    pub config: Config,
    /// Each architecture's replay.
    pub runs: Vec<ReplayRun>,
}

/// A replay on one architecture.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayRun {
    /// `vtd` or `smmuv3`.
    pub arch: Arch,
    /// The unit as people name it.
    pub unit: String,
    /// IOTLB (SMMUv3: TLB) entries the unit had.
    pub iotlb_entries: usize,
    /// Each device that sent DMA.
    pub devices: Vec<DeviceReplay>,
    /// The host actions, in order.
    pub actions: Vec<String>,
    /// The ATS records' exchanges, in order: each translation request's answer, its page
    /// request and the retry, as `run` reports an `ats` step.
    pub ats: Vec<crate::ats::AtsRow>,
    /// What the unit counted.
    pub stats: Stats,
}

/// One device's requests and their answers.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceReplay {
    /// Scenario name.
    pub device: String,
    /// The request ID it sent with.
    pub request_id: u32,
    /// Requests sent.
    pub requests: u64,
    /// Translated.
    pub translated: u64,
    /// Faulted or terminated.
    pub blocked: u64,
    /// ATS exchanges (translation request, page request and retry) it made.
    pub ats_requests: u64,
    /// FNV-1a over every answer in order (address, then output and page size, or the fault
    /// code; for an ATS exchange the first completion, the page response and the retry's
    /// completion): equal digests, equal translations.
    pub digest: String,
}

/// One device's running figures.
#[derive(Clone, Debug)]
struct DeviceState {
    tally: Tally,
    ats: u64,
    digest: u64,
}

impl DeviceState {
    fn add(&mut self, addr: u64, r: &DmaResult) {
        self.tally.add(r);
        let (kind, a, b) = match r {
            DmaResult::Translated { output, page_lg2, .. } => (0u8, *output, u64::from(*page_lg2)),
            DmaResult::Fault { code, .. } => (1, u64::from(*code), 0),
            DmaResult::Terminated { .. } => (2, 0, 0),
        };
        let mut h = fnv1a(self.digest, &addr.to_le_bytes());
        h = fnv1a(h, &[kind]);
        h = fnv1a(h, &a.to_le_bytes());
        self.digest = fnv1a(h, &b.to_le_bytes());
    }

    fn add_ats(&mut self, row: &crate::ats::AtsRow) {
        self.ats += 1;
        let answers = serde_json::to_vec(&(row.addr, row.first, &row.page_request, row.retry));
        self.digest = fnv1a(self.digest, &answers.unwrap_or_default());
    }
}

/// Replays `trace`; `progress(done, total)` is called from the host thread now and then.
pub fn replay(
    trace: &Trace,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplayReport, TraceError> {
    let source = trace.source();
    let scenario = crate::scenario::parse(&source)?;
    let names: Vec<&String> = scenario.devices.iter().map(|d| d.name.get_ref()).collect();
    if names.len() != trace.devices.len() || names.iter().zip(&trace.devices).any(|(a, b)| *a != b)
    {
        return Err(TraceError::Corrupt {
            file: trace.file.clone(),
            offset: 0,
            message: format!(
                "the device table ({}) is not the scenario's devices ({})",
                trace.devices.join(", "),
                names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    check_actions(trace, &scenario)?;
    let archs: Vec<Arch> = match opts.arch {
        Some(a) => vec![a],
        None => scenario.architectures.clone(),
    };
    for &arch in &archs {
        for (key, v) in [("iotlb", opts.config.iotlb), ("walk_cache", opts.config.walk_cache)] {
            if let Some(n) = v {
                machine::check_cache_entries(arch, key, n)
                    .map_err(|message| TraceError::Config { key, message })?;
            }
        }
    }
    let total = trace.records.len() as u64 * archs.len() as u64;
    let mut runs = Vec::new();
    for (i, &arch) in archs.iter().enumerate() {
        let base = i as u64 * trace.records.len() as u64;
        let mut step = |done: u64| progress(base + done, total);
        runs.push(replay_on(trace, &scenario, arch, opts, &mut step)?);
    }
    Ok(ReplayReport {
        title: scenario.title.clone(),
        trace: trace.file.clone(),
        records: trace.records.len() as u64,
        threads: opts.threads.max(1),
        config: opts.config,
        runs,
    })
}

/// Every action record names a step that is a host action.
fn check_actions(trace: &Trace, scenario: &Scenario) -> Result<(), TraceError> {
    for (i, r) in trace.records.iter().enumerate() {
        if let Record::Action { step } = *r {
            let s = usize::try_from(step).ok().and_then(|s| scenario.steps.get(s));
            let ok = s.is_some_and(|s| s.get_ref().dma.is_none() && s.get_ref().stream.is_none());
            if !ok {
                return Err(trace.record_error(
                    i,
                    format!(
                        "action names step {step}, which is not a host action of the scenario \
                         ({} steps)",
                        scenario.steps.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn replay_on(
    trace: &Trace,
    scenario: &Scenario,
    arch: Arch,
    opts: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayRun, TraceError> {
    let source = trace.source();
    let (mut m, mut pool) = machine::build_with(scenario, &source, arch, &opts.config)?;
    // Each device's request ID: its own, as `run` sends it.
    let mut rids = Vec::new();
    for (name, dev) in &m.devices {
        let ids = m
            .iommu()
            .request_ids(dev)
            .map_err(|e| source.error(0..0, "device", format!("{name}: {e}")))?;
        rids.push(ids.first().copied());
    }
    let mut states =
        vec![DeviceState { tally: Tally::default(), ats: 0, digest: FNV_START }; m.devices.len()];
    let mut ats = Vec::new();
    let mut next_group = 0;
    let mut actions = Vec::new();
    let mut faults_recorded = 0u64;
    let threads = opts.threads.max(1);
    let mut at = 0;
    while at < trace.records.len() {
        if let Some(&Record::Action { step }) = trace.records.get(at) {
            let s = usize::try_from(step).ok().and_then(|s| scenario.steps.get(s));
            if let Some(s) = s {
                if let Some(what) = machine::act(&mut m, &source, &mut pool, s)? {
                    actions.push(what);
                }
            }
            m.hw.deliver();
            at += 1;
            continue;
        }
        if let Some(&Record::Ats { device, pasid, addr, access }) = trace.records.get(at) {
            // The device's exchange with the host in the middle: on the host thread, with
            // every request before it done, as an action.
            let d = usize::from(device);
            if let Some(dev) = m.devices.get(d).map(|(_, id)| id.clone()) {
                let asked = crate::ats::Asked { device: &dev, pasid, addr, access };
                let (row, faults) = crate::ats::request(&mut m, &mut pool, asked, &mut next_group)
                    .map_err(|e| trace.record_error(at, e))?;
                faults_recorded += faults;
                if let Some(s) = states.get_mut(d) {
                    s.add_ats(&row);
                }
                ats.push(row);
            }
            at += 1;
            continue;
        }
        let end = trace.records[at..]
            .iter()
            .position(|r| matches!(r, Record::Action { .. } | Record::Ats { .. }))
            .map_or(trace.records.len(), |n| at + n);
        let segment = &trace.records[at..end];
        if threads == 1 {
            for (k, r) in segment.iter().enumerate() {
                if let Some((d, addr, result)) = one(&m.hw, &rids, r) {
                    if !matches!(result, DmaResult::Translated { .. }) {
                        faults_recorded += m.iommu().process_faults().len() as u64;
                        m.hw.deliver();
                    }
                    if let Some(s) = states.get_mut(d) {
                        s.add(addr, &result);
                    }
                }
                if k % 4096 == 0 {
                    progress((at + k) as u64);
                }
            }
        } else {
            faults_recorded += threaded(&mut m, &rids, &mut states, segment, threads, &mut |n| {
                progress(at as u64 + n);
            });
        }
        at = end;
        progress(at as u64);
    }
    faults_recorded += m.iommu().process_faults().len() as u64;
    m.hw.deliver();
    let counters = m.iommu().unit_counters().remove(&machine::UNIT).unwrap_or_default();
    let mut total = Tally::default();
    for s in &states {
        total.merge(&s.tally);
    }
    let stats = run::stats(&m.hw, &total, faults_recorded, &counters, &m.iommu().fault_counters());
    let devices = m
        .devices
        .iter()
        .zip(&states)
        .zip(&rids)
        .filter(|((_, s), _)| s.tally.requests > 0 || s.ats > 0)
        .map(|(((name, _), s), rid)| DeviceReplay {
            device: name.clone(),
            request_id: rid.unwrap_or(0),
            requests: s.tally.requests,
            translated: s.tally.translated,
            blocked: s.tally.blocked,
            ats_requests: s.ats,
            digest: format!("{:016x}", s.digest),
        })
        .collect();
    let iotlb_entries = match &m.hw {
        Hw::Vtd(u) => {
            let g = u.params().caches.iotlb;
            g.sets * g.ways
        }
        Hw::Smmu(u) => u.params().caches.tlb,
    };
    Ok(ReplayRun {
        arch,
        unit: run::unit_name(arch, scenario),
        iotlb_entries,
        devices,
        actions,
        ats,
        stats,
    })
}

/// One record through the model: the device's index, the address and the answer (`None` for
/// an action, or a device without a request ID).
fn one(hw: &Hw, rids: &[Option<u32>], r: &Record) -> Option<(usize, u64, DmaResult)> {
    let Record::Dma { device, pasid, addr, access } = *r else { return None };
    let d = usize::from(device);
    let rid = rids.get(d).copied().flatten()?;
    Some((d, addr, run::send(hw, rid, pasid, addr, access)))
}

/// A segment on `threads` threads, device `d` on thread `d % threads`, the calling thread
/// collecting faults meanwhile. Returns the faults it collected.
fn threaded(
    m: &mut Machine,
    rids: &[Option<u32>],
    states: &mut [DeviceState],
    segment: &[Record],
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> u64 {
    let done = AtomicU64::new(0);
    let start: Vec<u64> = states.iter().map(|s| s.digest).collect();
    let (hw, iommu) = (&m.hw, &mut m.iommu());
    let mut recorded = 0u64;
    let results: Vec<BTreeMap<usize, DeviceState>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (done, start) = (&done, &start);
                sc.spawn(move || {
                    let mut mine: BTreeMap<usize, DeviceState> = BTreeMap::new();
                    for r in segment {
                        let Record::Dma { device, .. } = *r else { continue };
                        if usize::from(device) % threads != t {
                            continue;
                        }
                        if let Some((d, addr, result)) = one(hw, rids, r) {
                            let digest = start.get(d).copied().unwrap_or(FNV_START);
                            mine.entry(d)
                                .or_insert_with(|| DeviceState {
                                    tally: Tally::default(),
                                    ats: 0,
                                    digest,
                                })
                                .add(addr, &result);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    mine
                })
            })
            .collect();
        // The host: its fault handler and the platform's delivery run while devices send.
        while !handles.iter().all(|h| h.is_finished()) {
            recorded += iommu.process_faults().len() as u64;
            hw.deliver();
            progress(done.load(Ordering::Relaxed));
            std::thread::yield_now();
        }
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    recorded += iommu.process_faults().len() as u64;
    hw.deliver();
    for part in results {
        for (d, s) in part {
            if let Some(state) = states.get_mut(d) {
                state.tally.merge(&s.tally);
                state.digest = s.digest;
            }
        }
    }
    recorded
}

/// A replay configuration file (`trace replay --config FILE`, TOML): the settings the flags
/// give, each optional; a flag given on the command line wins over the file.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Only this architecture.
    pub arch: Option<Arch>,
    /// IOTLB (SMMUv3: TLB) entries; several replay once per size.
    #[serde(default)]
    pub iotlb: Vec<usize>,
    /// Paging-structure (walk) cache entries of each stage.
    pub walk_cache: Option<usize>,
    /// `false`: replay without any cache.
    pub caches: Option<bool>,
    /// Every paging domain's invalidation policy, `strict` or `batched`.
    pub invalidation: Option<Invalidation>,
    /// Threads replaying devices (1 to 256).
    pub threads: Option<toml::Spanned<u16>>,
}

impl ConfigFile {
    /// Reads and checks `source`; a mistake names its file, line, column and key.
    pub fn parse(source: &Source) -> Result<Self, ScenarioError> {
        let c: Self = crate::scenario::parse_toml(source)?;
        if let Some(t) = &c.threads {
            if !(1..=256).contains(t.get_ref()) {
                return Err(source.error(t.span(), "threads", "from 1 to 256 threads"));
            }
        }
        Ok(c)
    }

    /// Reads the file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { file: file.clone(), source })?;
        Self::parse(&Source { name: file, text })
    }
}

//! Running a scenario: devices send their DMA to the unit's hardware model, exactly as a VMM's
//! device models call `translate`; the host's IOMMU API then collects the faults the unit
//! recorded, and the audit says who reaches each process and why.

use std::collections::BTreeMap;

use serde::Serialize;
use sviommu_core::audit::{Sentinel, SpaceKey, UnitAudit};
use sviommu_core::driver::DriverCounters;
use sviommu_core::fault::FaultCounters;
use sviommu_core::topology::{DeviceId, GroupId, Reason};
use sviommu_core::Pasid;
use sviommu_pgtable::Access;
use sviommu_smmuv3::hw::{Abort, Transaction};
use sviommu_tlb::CacheStats;
use sviommu_vtd::hw::DmaRequest;

use crate::machine::{self, Hw, Machine};
use crate::scenario::{
    AccessKind, Arch, PasidChoice, Pasids, Scenario, ScenarioError, Source, Stream, StreamKind,
};
use crate::stream::{Pages, PAGE_BYTES};
use crate::trace::Record;

/// A scenario's report: one section per architecture it was built on.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario's title.
    pub title: String,
    /// Where it came from.
    pub source: String,
    /// Each architecture's run.
    pub runs: Vec<ArchReport>,
}

/// What happened on one architecture.
#[derive(Clone, Debug, Serialize)]
pub struct ArchReport {
    /// `vtd` or `smmuv3`.
    pub arch: Arch,
    /// The unit as people name it.
    pub unit: String,
    /// The devices and the request IDs the unit sees them by.
    pub devices: Vec<DeviceRow>,
    /// IOMMU groups, as the core computed them.
    pub groups: Vec<GroupRow>,
    /// Domains and their devices.
    pub domains: Vec<DomainRow>,
    /// Binds and the PASIDs they returned.
    pub binds: Vec<BindRow>,
    /// Guests and their nested PASIDs.
    pub guests: Vec<GuestRow>,
    /// Every DMA, in the order sent.
    pub dma: Vec<DmaRow>,
    /// Generated streams, each one aggregate row.
    pub streams: Vec<StreamRow>,
    /// The host's actions between DMA.
    pub actions: Vec<ActionRow>,
    /// Translation requests of `ats` steps, each with its page request and retry.
    pub ats: Vec<crate::ats::AtsRow>,
    /// Who reaches each address space and why, static beside DMA.
    pub audit: UnitAudit,
    /// What the scenario calls each address space of the audit (`domain 1` -> `shared`).
    pub labels: BTreeMap<String, String>,
    /// What the unit counted.
    pub stats: Stats,
}

/// A device.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceRow {
    /// Scenario name.
    pub name: String,
    /// Its address (BDF).
    pub address: String,
    /// Request IDs the unit may see it by: its own first, then DMA aliases.
    pub request_ids: Vec<u32>,
}

/// An IOMMU group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupRow {
    /// Its number.
    pub id: u32,
    /// Its devices by scenario name (ports and bridges by address).
    pub members: Vec<String>,
    /// Why they cannot be separated.
    pub reasons: Vec<String>,
}

/// A domain.
#[derive(Clone, Debug, Serialize)]
pub struct DomainRow {
    /// Scenario name.
    pub name: String,
    /// The core's number.
    pub id: u32,
    /// Devices named in attaches.
    pub named: Vec<String>,
    /// Every device attached (the named ones' whole groups).
    pub attached: Vec<String>,
}

/// A bind.
#[derive(Clone, Debug, Serialize)]
pub struct BindRow {
    /// Process.
    pub process: String,
    /// Device named.
    pub device: String,
    /// PASID returned.
    pub pasid: u32,
}

/// A guest.
#[derive(Clone, Debug, Serialize)]
pub struct GuestRow {
    /// Scenario name.
    pub name: String,
    /// Its RAM's size.
    pub ram_bytes: u64,
    /// Where its RAM is in host memory.
    pub ram_hpa: u64,
    /// The host's stage-2 domain over its RAM.
    pub stage2_domain: u32,
    /// Assigned devices.
    pub devices: Vec<String>,
    /// Its processes' PASIDs, each a nested domain.
    pub pasids: Vec<GuestPasidRow>,
    /// What its vIOMMU forwarded to the host, if it has one.
    pub viommu: Option<crate::vguest::Forwarded>,
    /// With a vIOMMU: each device's default DMA domain in the guest (requests without PASID).
    pub dma_domains: Vec<GuestDmaRow>,
}

/// A device's default DMA domain in a guest with a vIOMMU.
#[derive(Clone, Debug, Serialize)]
pub struct GuestDmaRow {
    /// The device.
    pub device: String,
    /// The host's nested domain attached to the device itself (VT-d); none on an SMMUv3
    /// vIOMMU, whose nested STE takes the guest's CD table (this domain is its CD 0).
    pub domain: Option<u32>,
    /// The guest's DMA API mappings: IOVA and guest-physical address of each 4K page.
    pub pages: Vec<GuestDmaPage>,
}

/// One page of a guest's DMA domain.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct GuestDmaPage {
    /// The IOVA the device sends.
    pub iova: u64,
    /// The guest-physical page the guest's driver mapped it to.
    pub gpa: u64,
    /// Writes allowed.
    pub writable: bool,
}

/// A guest process on an assigned device.
#[derive(Clone, Debug, Serialize)]
pub struct GuestPasidRow {
    /// The guest's process.
    pub process: String,
    /// The device.
    pub device: String,
    /// The guest's PASID.
    pub pasid: u32,
    /// The host's nested domain (guest stage 1 over the host's stage 2); none for a guest
    /// on an SMMUv3 vIOMMU, whose nested STE takes its whole CD table.
    pub domain: Option<u32>,
    /// The guest-physical address of the process's stage-1 root table.
    pub stage1_root_gpa: u64,
}

/// A host action, between DMA.
#[derive(Clone, Debug, Serialize)]
pub struct ActionRow {
    /// It came before the DMA with this index in `dma` (after all of them when it equals the
    /// number of DMA).
    pub before_dma: usize,
    /// What was done.
    pub what: String,
}

/// One DMA request and the unit's answer.
#[derive(Clone, Debug, Serialize)]
pub struct DmaRow {
    /// Scenario name of the device.
    pub device: String,
    /// The request ID it went out with (Requester ID or StreamID).
    pub request_id: u32,
    /// Its PASID (SubstreamID).
    pub pasid: Option<u32>,
    /// Input address.
    pub addr: u64,
    /// Read or write.
    pub access: AccessKind,
    /// The answer.
    pub result: DmaResult,
}

/// The hardware model's answer to one DMA.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DmaResult {
    /// Translated.
    Translated {
        /// Host physical address.
        output: u64,
        /// The page size, log2.
        page_lg2: u8,
        /// Table and configuration-structure reads this translation cost.
        reads: u32,
    },
    /// Blocked with the architected fault: VT-d fault reason or SMMUv3 event number.
    Fault {
        /// The spec's code.
        code: u8,
        /// Its name.
        name: &'static str,
    },
    /// Terminated without a record (SMMUv3 STE Config abort, GBPA.ABORT).
    Terminated {
        /// Why.
        why: String,
    },
}

/// A generated stream of DMA and the unit's answers, summed.
#[derive(Clone, Debug, Serialize)]
pub struct StreamRow {
    /// It came before the DMA with this index in `dma` (after all of them when it equals the
    /// number of DMA).
    pub before_dma: usize,
    /// Host actions (in `actions`) that came before it.
    pub after_actions: usize,
    /// Scenario name of the device.
    pub device: String,
    /// The request ID it went out with (Requester ID or StreamID).
    pub request_id: u32,
    /// Its PASID (SubstreamID).
    pub pasid: Option<u32>,
    /// How its pages were chosen.
    pub kind: StreamKind,
    /// First input address.
    pub base: u64,
    /// Pages covered.
    pub pages: u64,
    /// The random kinds' seed.
    pub seed: Option<u64>,
    /// The strided kind's step, in pages.
    pub stride: Option<u64>,
    /// The zipf kind's exponent.
    pub exponent: Option<f64>,
    /// Read or write.
    pub access: AccessKind,
    /// Distinct pages its requests touched.
    pub pages_touched: u64,
    /// Requests sent.
    pub requests: u64,
    /// Translated.
    pub translated: u64,
    /// Faulted or terminated.
    pub blocked: u64,
    /// Faults by architected code and name.
    pub faults: BTreeMap<String, u64>,
    /// Table and structure reads per translated request.
    pub reads: ReadsDistribution,
    /// What each cache of the unit counted over this stream alone (its figures after the
    /// stream less those before).
    pub caches: Vec<CacheRow>,
}

/// Table and configuration-structure reads per translated request: how many translations
/// cost how many reads.
#[derive(Clone, Debug, Serialize)]
pub struct ReadsDistribution {
    /// Reads of all translations.
    pub total: u64,
    /// Reads per translation.
    pub mean: f64,
    /// The most one translation read.
    pub max: u32,
    /// Translations per range of reads, in [`READ_BUCKETS`] order.
    pub buckets: Vec<ReadsBucket>,
}

/// Translations that read a number of entries within a range.
#[derive(Clone, Debug, Serialize)]
pub struct ReadsBucket {
    /// The range of reads: `0`, `1-2`, `3-4`, `5-8`, `9-16` or `>16`.
    pub reads: &'static str,
    /// Translations in it.
    pub count: u64,
}

/// The ranges of [`ReadsDistribution::buckets`], each with its largest read count: a cached
/// translation (0), a cached walk's last level or two, a cold 4-level walk, one with its
/// configuration structures, a nested walk, and beyond.
pub const READ_BUCKETS: [(&str, u32); 6] =
    [("0", 0), ("1-2", 2), ("3-4", 4), ("5-8", 8), ("9-16", 16), (">16", u32::MAX)];

/// What a set of answers adds up to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) requests: u64,
    pub(crate) translated: u64,
    pub(crate) blocked: u64,
    reads: u64,
    max_reads: u32,
    buckets: [u64; READ_BUCKETS.len()],
    faults: BTreeMap<String, u64>,
}

impl Tally {
    pub(crate) fn add(&mut self, r: &DmaResult) {
        self.requests += 1;
        match r {
            DmaResult::Translated { reads, .. } => {
                self.translated += 1;
                self.reads += u64::from(*reads);
                self.max_reads = self.max_reads.max(*reads);
                let i = READ_BUCKETS.iter().position(|&(_, last)| *reads <= last).unwrap_or(0);
                if let Some(b) = self.buckets.get_mut(i) {
                    *b += 1;
                }
            }
            DmaResult::Fault { code, name } => {
                self.blocked += 1;
                *self.faults.entry(format!("{code:02X}h {name}")).or_default() += 1;
            }
            DmaResult::Terminated { .. } => {
                self.blocked += 1;
                *self.faults.entry("terminated, no record".to_owned()).or_default() += 1;
            }
        }
    }

    pub(crate) fn merge(&mut self, o: &Tally) {
        self.requests += o.requests;
        self.translated += o.translated;
        self.blocked += o.blocked;
        self.reads += o.reads;
        self.max_reads = self.max_reads.max(o.max_reads);
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        for (f, n) in &o.faults {
            *self.faults.entry(f.clone()).or_default() += n;
        }
    }

    fn mean(&self) -> f64 {
        if self.translated == 0 {
            0.0
        } else {
            self.reads as f64 / self.translated as f64
        }
    }

    fn distribution(&self) -> ReadsDistribution {
        ReadsDistribution {
            total: self.reads,
            mean: self.mean(),
            max: self.max_reads,
            buckets: READ_BUCKETS
                .iter()
                .zip(self.buckets)
                .map(|(&(reads, _), count)| ReadsBucket { reads, count })
                .collect(),
        }
    }
}

/// A cache's figures, as the unit counted them.
#[derive(Clone, Debug, Serialize)]
pub struct CacheRow {
    /// The cache.
    pub cache: &'static str,
    /// Lookups (hits and misses).
    pub lookups: u64,
    /// Lookups that hit.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Entries pushed out by a full set.
    pub evictions: u64,
    /// Entries invalidated.
    pub invalidated: u64,
}

impl CacheRow {
    fn new(cache: &'static str, s: CacheStats) -> Self {
        Self {
            cache,
            lookups: s.hits + s.misses,
            hits: s.hits,
            misses: s.misses,
            evictions: s.evictions,
            invalidated: s.invalidated,
        }
    }
}

/// What the run cost and what the unit and the host saw.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// DMA sent.
    pub requests: u64,
    /// Translated.
    pub translated: u64,
    /// Faulted or terminated.
    pub blocked: u64,
    /// Table and structure reads of the translated requests.
    pub reads: u64,
    /// Reads per translated request.
    pub reads_per_translation: f64,
    /// Reads per translated request, as a distribution.
    pub reads_distribution: ReadsDistribution,
    /// Faults by architected code and name.
    pub faults: BTreeMap<String, u64>,
    /// Faults the host's IOMMU API collected from the unit's fault log / event queue.
    pub faults_recorded: u64,
    /// Fault records the unit lost to a full log or queue.
    pub faults_overflowed: u64,
    /// Each cache of the unit.
    pub caches: Vec<CacheRow>,
    /// Invalidations the unit carried out, by type (VT-d descriptor type, SMMUv3 command);
    /// only the types it saw.
    pub invalidations: Vec<CountRow>,
    /// Records the unit and its driver had to drop or refuse (queue overflows), every counter
    /// named, zeros included.
    pub dropped: Vec<CountRow>,
    /// What the unit sent besides memory writes, as its outbox counted it.
    pub outbox: OutboxRow,
    /// Page requests through the unit and the IOMMU API.
    pub page_requests: PageRequestStats,
    /// The invalidation sanitizer (strict profile only): what it reported.
    pub sanitizer: SanitizerRow,
}

/// The unit's invalidation sanitizer: under the strict profile each cache hit re-reads the
/// words its entry was built from, and a changed one without the invalidation the spec asks
/// for is a violation naming the missing command.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SanitizerRow {
    /// Whether it ran (the unit's profile is strict).
    pub enabled: bool,
    /// Violations found (each cached entry reported once).
    pub violations: u64,
    /// Of those, reports the unit's queue had no room for (counted, not kept).
    pub dropped: u64,
    /// Words re-read to check hits (not counted as the translations' table reads).
    pub reads: u64,
    /// The reports, in the model's words.
    pub reports: Vec<String>,
}

/// Page requests: what the unit queued (the model's count) and what the IOMMU API collected
/// and answered (the core's).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PageRequestStats {
    /// Written into the page request queue (VT-d) or PRI queue (SMMUv3).
    pub queued: u64,
    /// Collected from the queue by the IOMMU API.
    pub received: u64,
    /// Page request groups the host answered with `page_response`.
    pub responses: u64,
}

/// A named count.
#[derive(Clone, Debug, Serialize)]
pub struct CountRow {
    /// What was counted.
    pub what: String,
    /// How many.
    pub count: u64,
}

/// The unit's outputs: interrupts and messages to devices.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct OutboxRow {
    /// Messages to devices (device-TLB / ATC invalidations, page responses, CMD_SYNC MSIs).
    pub messages: u64,
    /// Interrupt messages sent.
    pub interrupts: u64,
    /// Interrupts folded into one still pending from the same source.
    pub interrupts_coalesced: u64,
    /// Times a producer waited for room.
    pub full: u64,
}

/// Reads, checks and runs a scenario.
pub fn run_source(source: &Source) -> Result<Report, ScenarioError> {
    let scenario = crate::scenario::parse(source)?;
    run(&scenario, source)
}

/// Runs `scenario` on each of its architectures.
pub fn run(scenario: &Scenario, source: &Source) -> Result<Report, ScenarioError> {
    let mut runs = Vec::new();
    for &arch in &scenario.architectures {
        let (mut m, mut pool) = machine::build(scenario, source, arch)?;
        runs.push(run_on(&mut m, &mut pool, scenario, source, None)?);
    }
    Ok(Report { title: scenario.title.clone(), source: source.name.clone(), runs })
}

/// Runs `scenario` on its first architecture (or `arch`) and records what it issued: every
/// DMA request (single ones and each request of a stream) and every host action, in order.
pub fn record(
    scenario: &Scenario,
    source: &Source,
    arch: Option<Arch>,
) -> Result<crate::trace::Trace, ScenarioError> {
    let arch = arch.or_else(|| scenario.architectures.first().copied()).unwrap_or(Arch::Vtd);
    let (mut m, mut pool) = machine::build(scenario, source, arch)?;
    let mut records = Vec::new();
    run_on(&mut m, &mut pool, scenario, source, Some(&mut records))?;
    let devices = m.devices.iter().map(|(n, _)| n.clone()).collect();
    Ok(crate::trace::Trace::new(source, devices, records))
}

/// Where a run writes what it issued, when it is recorded.
type Recorder<'a> = Option<&'a mut Vec<Record>>;

/// The index a trace gives the device called `name` (its place in the scenario).
fn device_index(m: &Machine, name: &str) -> u16 {
    m.devices.iter().position(|(n, _)| n == name).and_then(|i| u16::try_from(i).ok()).unwrap_or(0)
}

fn run_on(
    m: &mut Machine,
    pool: &mut machine::DataPool,
    scenario: &Scenario,
    source: &Source,
    mut rec: Recorder<'_>,
) -> Result<ArchReport, ScenarioError> {
    let names = machine::names(m);
    let name = |d: &DeviceId| names.get(d).cloned().unwrap_or_else(|| d.to_string());
    let mut dma = Vec::new();
    let mut faults_recorded = 0;
    let mut actions = Vec::new();
    let mut streams = Vec::new();
    let mut stream_tally = Tally::default();
    let mut ats = Vec::new();
    let mut next_group = 0;
    for (index, step) in scenario.steps.iter().enumerate() {
        if let Some(a) = &step.get_ref().ats {
            if let Some(r) = rec.as_deref_mut() {
                let device = device_index(m, a.device.get_ref());
                let pasid = a.pasid.as_ref().map(|p| *p.get_ref());
                for &addr in &a.addrs {
                    r.push(Record::Ats { device, pasid, addr, access: a.access });
                }
            }
            let (rows, faults) =
                crate::ats::run(m, pool, source, a, (dma.len(), actions.len()), &mut next_group)?;
            ats.extend(rows);
            faults_recorded += faults;
            continue;
        }
        if let Some(what) = machine::act(m, source, pool, step)? {
            if let Some(r) = rec.as_deref_mut() {
                r.push(Record::Action { step: u32::try_from(index).unwrap_or(u32::MAX) });
            }
            m.hw.deliver();
            actions.push(ActionRow { before_dma: dma.len(), what });
            continue;
        }
        if let Some(s) = &step.get_ref().stream {
            let (row, tally, recorded) =
                stream(m, source, s, (dma.len(), actions.len()), rec.as_deref_mut())?;
            streams.push(row);
            stream_tally.merge(&tally);
            faults_recorded += recorded;
            continue;
        }
        let Some(set) = &step.get_ref().dma else { continue };
        let devices = machine::select_devices(m, source, &set.devices)?;
        let mut bound: Vec<u32> = m.binds.iter().map(|b| b.pasid.0).collect();
        bound.extend(m.guests.iter().flat_map(|g| g.binds.iter().map(|b| b.2 .0)));
        bound.sort_unstable();
        bound.dedup();
        let pasids: Vec<Option<u32>> = match &set.pasids {
            Pasids::List(l) => l.iter().copied().map(Some).collect(),
            Pasids::Choice(PasidChoice::None) => vec![None],
            Pasids::Choice(PasidChoice::Bound) => bound.into_iter().map(Some).collect(),
            Pasids::Choice(PasidChoice::All) => {
                std::iter::once(None).chain(bound.into_iter().map(Some)).collect()
            }
        };
        for (dev_name, dev) in &devices {
            let ids = m
                .iommu()
                .request_ids(dev)
                .map_err(|e| source.error(0..0, "dma.devices", e.to_string()))?;
            // A device sends with its own ID; aliases are what the IOMMU may also see.
            let Some(&rid) = ids.first() else { continue };
            for &pasid in &pasids {
                for &addr in &set.addrs {
                    if let Some(r) = rec.as_deref_mut() {
                        let device = device_index(m, dev_name);
                        r.push(Record::Dma { device, pasid, addr, access: set.access });
                    }
                    let result = send(&m.hw, rid, pasid, addr, set.access);
                    dma.push(DmaRow {
                        device: dev_name.clone(),
                        request_id: rid,
                        pasid,
                        addr,
                        access: set.access,
                        result,
                    });
                    // The host kernel's side: its fault interrupt handler takes what the unit
                    // recorded into the IOMMU API.
                    faults_recorded += m.iommu().process_faults().len() as u64;
                    // The platform delivers what the unit sent (interrupts, messages to
                    // devices), so its bounded outbox never holds a queue up.
                    m.hw.deliver();
                }
            }
        }
    }
    // Counted before the audit's probes add their own.
    let counters = m.iommu().unit_counters().remove(&machine::UNIT).unwrap_or_default();
    let mut tally = Tally::default();
    for r in &dma {
        tally.add(&r.result);
    }
    tally.merge(&stream_tally);
    let stats = stats(&m.hw, &tally, faults_recorded, &counters, &m.iommu().fault_counters());

    let mut sentinels = BTreeMap::new();
    for p in &m.processes {
        if let Some((va, hpa)) = p.first_page {
            sentinels.insert(SpaceKey::Sva(p.space.id), Sentinel { pasid: None, input: va, hpa });
        }
    }
    for g in &m.guests {
        for (process, device, pasid, domain) in &g.binds {
            // The space the host holds: a nested domain per (device, PASID), or (SMMUv3 vIOMMU)
            // the guest's whole CD table bound to the device's group, probed at this PASID.
            let key = match domain {
                Some(d) => SpaceKey::Domain(*d),
                None => match guest_table_group(m, device) {
                    Some(g) => SpaceKey::PasidTable(g),
                    None => continue,
                },
            };
            let page = g.processes.iter().find(|p| p.name == *process).and_then(|p| p.first_page);
            if let Some((va, hpa)) = page {
                sentinels.entry(key).or_insert(Sentinel { pasid: Some(*pasid), input: va, hpa });
            }
        }
        for dd in &g.dma {
            // A device's DMA domain: the host's nested domain on the device itself, or
            // (SMMUv3 vIOMMU) CD 0 of the guest's CD table, probed without PASID.
            let key = match dd.domain {
                Some(d) => SpaceKey::Domain(d),
                None => match guest_table_group(m, &dd.device) {
                    Some(grp) => SpaceKey::PasidTable(grp),
                    None => continue,
                },
            };
            if let Some(&(iova, gpa, _)) = dd.pages.first() {
                let hpa = g.ram.hpa.0 + gpa;
                sentinels.entry(key).or_insert(Sentinel { pasid: None, input: iova, hpa });
            }
        }
    }
    let audit = m
        .iommu()
        .audit(&sentinels)
        .audits
        .into_iter()
        .next()
        .ok_or_else(|| source.error(0..0, "(machine)", "the IOMMU API audited no unit"))?;

    let groups = m
        .iommu()
        .topology()
        .groups()
        .iter()
        .map(|g| GroupRow {
            id: g.id.0,
            members: g.members.iter().map(&name).collect(),
            reasons: g.reasons.iter().map(Reason::to_string).collect(),
        })
        .collect();
    let domains = domain_rows(m);
    let guests = m
        .guests
        .iter()
        .map(|g| GuestRow {
            name: g.name.clone(),
            ram_bytes: g.ram.len_bytes,
            ram_hpa: g.ram.hpa.0,
            stage2_domain: g.stage2.0,
            devices: g.devices.clone(),
            viommu: g.viommu.as_ref().map(|v| v.forwarded(&m.fd)),
            dma_domains: g
                .dma
                .iter()
                .map(|d| GuestDmaRow {
                    device: d.device.clone(),
                    domain: d.domain.map(|d| d.0),
                    pages: d
                        .pages
                        .iter()
                        .map(|&(iova, gpa, writable)| GuestDmaPage { iova, gpa, writable })
                        .collect(),
                })
                .collect(),
            pasids: g
                .binds
                .iter()
                .map(|(process, device, pasid, domain)| GuestPasidRow {
                    process: process.clone(),
                    device: device.clone(),
                    pasid: pasid.0,
                    domain: domain.map(|d| d.0),
                    stage1_root_gpa: g
                        .processes
                        .iter()
                        .find(|p| p.name == *process)
                        .map_or(0, |p| p.space.s1.root),
                })
                .collect(),
        })
        .collect();
    let mut labels = BTreeMap::new();
    for d in &m.domains {
        labels.insert(format!("domain {}", d.id.0), format!("{} (domain {})", d.name, d.id.0));
    }
    for p in &m.processes {
        labels
            .insert(format!("sva {}", p.space.id.0), format!("{} (sva {})", p.name, p.space.id.0));
    }
    for g in &m.guests {
        labels.insert(
            format!("domain {}", g.stage2.0),
            format!("{} stage 2 (domain {})", g.name, g.stage2.0),
        );
        for (process, device, _, d) in &g.binds {
            match d {
                Some(d) => labels.insert(
                    format!("domain {}", d.0),
                    format!("{process} in {} (domain {})", g.name, d.0),
                ),
                None => guest_table_group(m, device).and_then(|grp| {
                    let id = SpaceKey::PasidTable(grp).name();
                    labels.insert(id.clone(), format!("{}'s CD table ({id})", g.name))
                }),
            };
        }
        for dd in &g.dma {
            match dd.domain {
                Some(d) => {
                    labels.insert(
                        format!("domain {}", d.0),
                        format!("{}'s DMA domain in {} (domain {})", dd.device, g.name, d.0),
                    );
                }
                None => {
                    if let Some(grp) = guest_table_group(m, &dd.device) {
                        let id = SpaceKey::PasidTable(grp).name();
                        labels.entry(id.clone()).or_insert(format!("{}'s CD table ({id})", g.name));
                    }
                }
            }
        }
    }
    let mut devices = Vec::new();
    for (n, d) in &m.devices {
        let request_ids = m.iommu().request_ids(d).unwrap_or_default();
        devices.push(DeviceRow { name: n.clone(), address: d.to_string(), request_ids });
    }
    let binds = m
        .binds
        .iter()
        .map(|b| BindRow { process: b.process.clone(), device: b.device.clone(), pasid: b.pasid.0 })
        .collect();
    Ok(ArchReport {
        arch: m.arch,
        unit: unit_name(m.arch, scenario),
        devices,
        groups,
        domains,
        binds,
        guests,
        dma,
        streams,
        actions,
        ats,
        audit,
        labels,
        stats,
    })
}

/// The group of the guest's device `device`, whose STE takes the guest's CD table.
fn guest_table_group(m: &Machine, device: &str) -> Option<GroupId> {
    let id = m.device(device)?;
    m.iommu().topology().group_of(id).map(|g| g.id)
}

/// The unit as the report names it, with the table formats this scenario uses on it (only
/// those: a scenario without processes names none).
pub(crate) fn unit_name(arch: Arch, scenario: &Scenario) -> String {
    let processes = !scenario.processes.is_empty();
    let domains = !scenario.domains.is_empty();
    let guests = !scenario.guests.is_empty();
    let (unit, parts) = match arch {
        Arch::Vtd => (
            "Intel VT-d, scalable mode",
            [
                (processes, "processes on x86-64 first-stage tables"),
                (domains, "domains on second-stage tables"),
                (guests, "guests' first stage nested over a second-stage parent"),
            ],
        ),
        Arch::Smmuv3 => (
            match scenario.smmuv3.cd_tables {
                crate::scenario::CdTables::PerDomain => {
                    "Arm SMMUv3, one CD table per domain (the seed's driver)"
                }
                crate::scenario::CdTables::PerDevice => {
                    "Arm SMMUv3, one CD table per device (Linux since 2023)"
                }
            },
            [
                (processes && domains, "processes and domains on VMSAv8-64 stage 1"),
                (
                    processes != domains,
                    if processes {
                        "processes on VMSAv8-64 stage 1"
                    } else {
                        "domains on VMSAv8-64 stage 1"
                    },
                ),
                (guests, "guests' stage 1 nested over stage 2"),
            ],
        ),
    };
    let used: Vec<&str> = parts.iter().filter(|(on, _)| *on).map(|(_, what)| *what).collect();
    if used.is_empty() {
        unit.to_owned()
    } else {
        format!("{unit}: {}", used.join(", "))
    }
}

/// One DMA through the hardware model's `translate`.
pub(crate) fn send(
    hw: &Hw,
    rid: u32,
    pasid: Option<u32>,
    addr: u64,
    access: AccessKind,
) -> DmaResult {
    let access = match access {
        AccessKind::Read => Access::READ,
        AccessKind::Write => Access::WRITE,
    };
    match hw {
        Hw::Vtd(u) => {
            let Ok(rid) = u16::try_from(rid) else {
                return DmaResult::Terminated {
                    why: format!("{rid:#x} is not a PCI requester ID"),
                };
            };
            let mut req = DmaRequest::new(rid, addr, access);
            if let Some(p) = pasid {
                req = req.with_pasid(p);
            }
            match u.translate(&req) {
                Ok(t) => {
                    DmaResult::Translated { output: t.output, page_lg2: t.page_lg2, reads: t.reads }
                }
                Err(f) => DmaResult::Fault { code: f.reason.code(), name: f.reason.name() },
            }
        }
        Hw::Smmu(u) => {
            let mut t = Transaction::new(rid, addr, access);
            if let Some(p) = pasid {
                t = t.with_ssid(p);
            }
            match u.translate(&t) {
                Ok(t) => {
                    DmaResult::Translated { output: t.output, page_lg2: t.page_lg2, reads: t.reads }
                }
                Err(Abort::Event(e) | Abort::Stalled(e)) => {
                    DmaResult::Fault { code: e.id.code(), name: e.id.name() }
                }
                Err(Abort::Silent(s)) => DmaResult::Terminated { why: format!("{s:?}") },
            }
        }
    }
}

/// The statistics of a run: `t` tallied from the model's answers, everything else the model's
/// and the driver's own counters.
pub(crate) fn stats(
    hw: &Hw,
    t: &Tally,
    faults_recorded: u64,
    driver: &DriverCounters,
    core: &FaultCounters,
) -> Stats {
    let o = match hw {
        Hw::Vtd(u) => u.outbox_stats(),
        Hw::Smmu(u) => u.outbox_stats(),
    };
    let row = |what: &str, count: u64| CountRow { what: what.to_owned(), count };
    let (invalidations, mut dropped) = match hw {
        Hw::Vtd(u) => {
            let a = u.ats_stats();
            let inv = u
                .invalidation_stats()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| row(&format!("{t:?}"), n))
                .collect::<Vec<_>>();
            (
                inv,
                vec![
                    row("page requests overflowed (PRS.PRO)", a.page_requests_overflowed),
                    row("page requests lost (write to no memory)", a.page_requests_lost),
                    row("page requests refused", a.page_requests_refused),
                    row("page requests unsupported", a.page_requests_unsupported),
                    row("page requests busy (outbox full)", a.page_requests_busy),
                ],
            )
        }
        Hw::Smmu(u) => {
            let q = u.stats();
            let inv = u
                .command_stats()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(op, n)| row(op.name(), n))
                .collect::<Vec<_>>();
            (
                inv,
                vec![
                    row("events overflowed (Event queue full)", q.events_overflowed),
                    row("events discarded (EVENTQEN 0)", q.events_disabled),
                    row("events aborted (queue write)", q.events_aborted),
                    row("page requests dropped (PRI queue)", q.page_requests_dropped),
                    row("page requests aborted (queue write)", q.page_requests_aborted),
                    row("page requests busy (outbox full)", q.page_requests_busy),
                    row("stalls refused (no STAG)", q.stalls_refused),
                ],
            )
        }
    };
    let queued = match hw {
        Hw::Vtd(u) => u.ats_stats().page_requests_queued,
        Hw::Smmu(u) => u.stats().page_requests_written,
    };
    let page_requests =
        PageRequestStats { queued, received: core.page_requests, responses: core.responses };
    dropped.insert(0, row("fault records overflowed (driver saw)", driver.faults_overflowed));
    dropped
        .insert(1, row("page requests overflowed (driver saw)", driver.page_requests_overflowed));
    dropped.push(row("outbox full (producer waited)", o.full));
    let sanitizer = sanitizer_row(hw);
    dropped.push(row("sanitizer reports dropped (queue full)", sanitizer.dropped));
    Stats {
        requests: t.requests,
        translated: t.translated,
        blocked: t.blocked,
        reads: t.reads,
        reads_per_translation: t.mean(),
        reads_distribution: t.distribution(),
        faults: t.faults.clone(),
        faults_recorded,
        faults_overflowed: driver.faults_overflowed,
        caches: cache_rows(hw),
        invalidations,
        dropped,
        outbox: OutboxRow {
            messages: o.messages,
            interrupts: o.interrupts,
            interrupts_coalesced: o.interrupts_coalesced,
            full: o.full,
        },
        page_requests,
        sanitizer,
    }
}

/// The sanitizer's reports since the last call (they are drained) and its counters.
fn sanitizer_row(hw: &Hw) -> SanitizerRow {
    let (enabled, reports, c) = match hw {
        Hw::Vtd(u) => (
            u.params().profile.is_strict(),
            u.violations().iter().map(ToString::to_string).collect(),
            u.sanitizer_stats(),
        ),
        Hw::Smmu(u) => (
            u.params().profile.is_strict(),
            u.violations().iter().map(ToString::to_string).collect(),
            u.sanitizer_stats(),
        ),
    };
    SanitizerRow { enabled, violations: c.violations, dropped: c.dropped, reads: c.reads, reports }
}

/// Each cache of the unit, as it counted so far.
pub(crate) fn cache_rows(hw: &Hw) -> Vec<CacheRow> {
    match hw {
        Hw::Vtd(u) => {
            let c = u.cache_stats();
            vec![
                CacheRow::new("context", c.context),
                CacheRow::new("PASID", c.pasid),
                CacheRow::new("IOTLB", c.iotlb),
                CacheRow::new("first-stage PSC", c.fs_psc),
                CacheRow::new("second-stage PSC", c.ss_psc),
                CacheRow::new("second-stage leaf", c.ss_leaf),
            ]
        }
        Hw::Smmu(u) => {
            let c = u.cache_stats();
            vec![
                CacheRow::new("STE", c.ste),
                CacheRow::new("CD", c.cd),
                CacheRow::new("TLB", c.tlb),
                CacheRow::new("stage-1 walk", c.s1_walk),
                CacheRow::new("stage-2 walk", c.s2_walk),
                CacheRow::new("stage-2 leaf", c.s2_leaf),
            ]
        }
    }
}

/// What the unit counted between `before` and `after` (two [`cache_rows`] of one unit).
fn cache_delta(before: &[CacheRow], after: &[CacheRow]) -> Vec<CacheRow> {
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.cache == a.cache);
            let less = |f: fn(&CacheRow) -> u64| f(a).saturating_sub(b.map_or(0, f));
            CacheRow {
                cache: a.cache,
                lookups: less(|c| c.lookups),
                hits: less(|c| c.hits),
                misses: less(|c| c.misses),
                evictions: less(|c| c.evictions),
                invalidated: less(|c| c.invalidated),
            }
        })
        .collect()
}

/// Sends a generated stream from its device, each request to the model's `translate` as the
/// other DMA; returns its row, its answers summed, and the faults the host collected.
fn stream(
    m: &mut Machine,
    source: &Source,
    s: &Stream,
    (before_dma, after_actions): (usize, usize),
    mut rec: Recorder<'_>,
) -> Result<(StreamRow, Tally, u64), ScenarioError> {
    let shape = crate::stream::check(source, s)?;
    let dev = machine::device_ref(m, source, &s.device, "step.stream.device")?.clone();
    let ids = m
        .iommu()
        .request_ids(&dev)
        .map_err(|e| source.error(s.device.span(), "step.stream.device", e.to_string()))?;
    let rid = ids.first().copied().ok_or_else(|| {
        source.error(s.device.span(), "step.stream.device", "the device has no request ID")
    })?;
    let pasid = s.pasid.as_ref().map(|p| *p.get_ref());
    let base = *s.base.get_ref();
    let before = cache_rows(&m.hw);
    let mut tally = Tally::default();
    let mut touched = vec![false; usize::try_from(shape.pages).unwrap_or(0)];
    let mut recorded = 0;
    for page in Pages::new(shape) {
        if let Some(t) = usize::try_from(page).ok().and_then(|i| touched.get_mut(i)) {
            *t = true;
        }
        // `check` made sure the stream's last page is an address.
        let addr = base.saturating_add(page.saturating_mul(PAGE_BYTES));
        if let Some(r) = rec.as_deref_mut() {
            let device = device_index(m, s.device.get_ref());
            r.push(Record::Dma { device, pasid, addr, access: s.access });
        }
        let result = send(&m.hw, rid, pasid, addr, s.access);
        let translated = matches!(result, DmaResult::Translated { .. });
        tally.add(&result);
        if !translated {
            // As for single DMA: the host takes what the unit recorded, the platform what it
            // sent. A translation records and sends nothing.
            recorded += m.iommu().process_faults().len() as u64;
            m.hw.deliver();
        }
    }
    let caches = cache_delta(&before, &cache_rows(&m.hw));
    let kind = shape.kind;
    let random = matches!(kind, StreamKind::Uniform | StreamKind::Zipf);
    let row = StreamRow {
        before_dma,
        after_actions,
        device: s.device.get_ref().clone(),
        request_id: rid,
        pasid,
        kind,
        base,
        pages: shape.pages,
        seed: random.then_some(shape.seed),
        stride: (kind == StreamKind::Strided).then_some(shape.stride),
        exponent: (kind == StreamKind::Zipf).then_some(shape.exponent),
        access: s.access,
        pages_touched: touched.iter().filter(|t| **t).count() as u64,
        requests: tally.requests,
        translated: tally.translated,
        blocked: tally.blocked,
        faults: tally.faults.clone(),
        reads: tally.distribution(),
        caches,
    };
    Ok((row, tally, recorded))
}

/// A PASID as the report prints it.
pub fn pasid_text(p: Option<Pasid>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| p.0.to_string())
}

/// The scenario's domains with every device attached (the named ones' whole groups).
pub fn domain_rows(m: &Machine) -> Vec<DomainRow> {
    let names = machine::names(m);
    let name = |d: &DeviceId| names.get(d).cloned().unwrap_or_else(|| d.to_string());
    m.domains
        .iter()
        .map(|d| {
            // One guard: the host's lock is not reentrant.
            let iommu = m.iommu();
            let attached = iommu
                .topology()
                .groups()
                .iter()
                .filter(|g| iommu.group_domain(g.id) == Some(d.id))
                .flat_map(|g| g.members.iter().map(&name))
                .collect();
            DomainRow { name: d.name.clone(), id: d.id.0, named: d.named.clone(), attached }
        })
        .collect()
}

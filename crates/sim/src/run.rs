//! Running a scenario: devices send their DMA to the unit's hardware model, exactly as a VMM's
//! device models call `translate`; the host's IOMMU API then collects the faults the unit
//! recorded, and the audit says who reaches each process and why.

use std::collections::BTreeMap;

use serde::Serialize;
use sviommu_core::audit::{Sentinel, SpaceKey, UnitAudit};
use sviommu_core::topology::{DeviceId, Reason};
use sviommu_core::Pasid;
use sviommu_pgtable::Access;
use sviommu_smmuv3::hw::{Abort, Transaction};
use sviommu_tlb::CacheStats;
use sviommu_vtd::hw::DmaRequest;

use crate::machine::{self, Hw, Machine};
use crate::scenario::{AccessKind, Arch, PasidChoice, Pasids, Scenario, ScenarioError, Source};

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
    /// The host's actions between DMA.
    pub actions: Vec<ActionRow>,
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
    /// The nested domain (guest stage 1 over the host's stage 2).
    pub domain: u32,
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

/// A cache's figures, as the unit counted them.
#[derive(Clone, Debug, Serialize)]
pub struct CacheRow {
    /// The cache.
    pub cache: &'static str,
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
    /// Faults by architected code and name.
    pub faults: BTreeMap<String, u64>,
    /// Faults the host's IOMMU API collected from the unit's fault log / event queue.
    pub faults_recorded: u64,
    /// Fault records the unit lost to a full log or queue.
    pub faults_overflowed: u64,
    /// Each cache of the unit.
    pub caches: Vec<CacheRow>,
    /// What the unit sent besides memory writes, as its outbox counted it.
    pub outbox: OutboxRow,
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
        runs.push(run_on(&mut m, &mut pool, scenario, source)?);
    }
    Ok(Report { title: scenario.title.clone(), source: source.name.clone(), runs })
}

fn run_on(
    m: &mut Machine,
    pool: &mut machine::DataPool,
    scenario: &Scenario,
    source: &Source,
) -> Result<ArchReport, ScenarioError> {
    let names = machine::names(m);
    let name = |d: &DeviceId| names.get(d).cloned().unwrap_or_else(|| d.to_string());
    let mut dma = Vec::new();
    let mut faults_recorded = 0;
    let mut actions = Vec::new();
    for step in &scenario.steps {
        if let Some(what) = machine::act(m, source, pool, step)? {
            m.hw.deliver();
            actions.push(ActionRow { before_dma: dma.len(), what });
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
                .iommu
                .request_ids(dev)
                .map_err(|e| source.error(0..0, "dma.devices", e.to_string()))?;
            // A device sends with its own ID; aliases are what the IOMMU may also see.
            let Some(&rid) = ids.first() else { continue };
            for &pasid in &pasids {
                for &addr in &set.addrs {
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
                    faults_recorded += m.iommu.process_faults().len() as u64;
                    // The platform delivers what the unit sent (interrupts, messages to
                    // devices), so its bounded outbox never holds a queue up.
                    m.hw.deliver();
                }
            }
        }
    }
    // Counted before the audit's probes add their own.
    let counters = m.iommu.unit_counters().remove(&machine::UNIT).unwrap_or_default();
    let stats = stats(&m.hw, &dma, faults_recorded, counters.faults_overflowed);

    let mut sentinels = BTreeMap::new();
    for p in &m.processes {
        if let Some((va, hpa)) = p.first_page {
            sentinels.insert(SpaceKey::Sva(p.space.id), Sentinel { pasid: None, input: va, hpa });
        }
    }
    for g in &m.guests {
        for (process, _, pasid, domain) in &g.binds {
            let page = g.processes.iter().find(|p| p.name == *process).and_then(|p| p.first_page);
            if let Some((va, hpa)) = page {
                sentinels.insert(
                    SpaceKey::Domain(*domain),
                    Sentinel { pasid: Some(*pasid), input: va, hpa },
                );
            }
        }
    }
    let audit = m
        .iommu
        .audit(&sentinels)
        .audits
        .into_iter()
        .next()
        .ok_or_else(|| source.error(0..0, "(machine)", "the IOMMU API audited no unit"))?;

    let groups = m
        .iommu
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
            pasids: g
                .binds
                .iter()
                .map(|(process, device, pasid, domain)| GuestPasidRow {
                    process: process.clone(),
                    device: device.clone(),
                    pasid: pasid.0,
                    domain: domain.0,
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
        for (process, _, _, d) in &g.binds {
            labels.insert(
                format!("domain {}", d.0),
                format!("{process} in {} (domain {})", g.name, d.0),
            );
        }
    }
    let mut devices = Vec::new();
    for (n, d) in &m.devices {
        let request_ids = m.iommu.request_ids(d).unwrap_or_default();
        devices.push(DeviceRow { name: n.clone(), address: d.to_string(), request_ids });
    }
    let binds = m
        .binds
        .iter()
        .map(|b| BindRow { process: b.process.clone(), device: b.device.clone(), pasid: b.pasid.0 })
        .collect();
    let unit = match m.arch {
        Arch::Vtd => "Intel VT-d, scalable mode: processes on x86-64 first-stage tables, domains on second-stage tables",
        Arch::Smmuv3 => match scenario.smmuv3.cd_tables {
            crate::scenario::CdTables::PerDomain => "Arm SMMUv3, one CD table per domain (the seed's driver): VMSAv8-64 stage 1",
            crate::scenario::CdTables::PerDevice => "Arm SMMUv3, one CD table per device (Linux since 2023): VMSAv8-64 stage 1",
        },
    };
    Ok(ArchReport {
        arch: m.arch,
        unit: unit.to_owned(),
        devices,
        groups,
        domains,
        binds,
        guests,
        dma,
        actions,
        audit,
        labels,
        stats,
    })
}

/// One DMA through the hardware model's `translate`.
fn send(hw: &Hw, rid: u32, pasid: Option<u32>, addr: u64, access: AccessKind) -> DmaResult {
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

fn stats(hw: &Hw, dma: &[DmaRow], faults_recorded: u64, faults_overflowed: u64) -> Stats {
    let mut s = Stats {
        requests: dma.len() as u64,
        translated: 0,
        blocked: 0,
        reads: 0,
        reads_per_translation: 0.0,
        faults: BTreeMap::new(),
        faults_recorded,
        faults_overflowed,
        caches: Vec::new(),
        outbox: OutboxRow { messages: 0, interrupts: 0, interrupts_coalesced: 0, full: 0 },
    };
    for r in dma {
        match &r.result {
            DmaResult::Translated { reads, .. } => {
                s.translated += 1;
                s.reads += u64::from(*reads);
            }
            DmaResult::Fault { code, name } => {
                s.blocked += 1;
                *s.faults.entry(format!("{code:02X}h {name}")).or_default() += 1;
            }
            DmaResult::Terminated { .. } => {
                s.blocked += 1;
                *s.faults.entry("terminated, no record".to_owned()).or_default() += 1;
            }
        }
    }
    if s.translated > 0 {
        s.reads_per_translation = s.reads as f64 / s.translated as f64;
    }
    let o = match hw {
        Hw::Vtd(u) => u.outbox_stats(),
        Hw::Smmu(u) => u.outbox_stats(),
    };
    s.outbox = OutboxRow {
        messages: o.messages,
        interrupts: o.interrupts,
        interrupts_coalesced: o.interrupts_coalesced,
        full: o.full,
    };
    s.caches = match hw {
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
    };
    s
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
            let attached = m
                .iommu
                .topology()
                .groups()
                .iter()
                .filter(|g| m.iommu.group_domain(g.id) == Some(d.id))
                .flat_map(|g| g.members.iter().map(&name))
                .collect();
            DomainRow { name: d.name.clone(), id: d.id.0, named: d.named.clone(), attached }
        })
        .collect()
}

//! `sviommu audit`: the seed thread's isolation picture, built on both architectures through the
//! core API with the real drivers and hardware models, and audited statically and by DMA.
//!
//! The picture: A and B in one IOMMU group (on VT-d B also sends requests as A, a DMA alias; on
//! SMMUv3 the two arrive with one StreamID), C alone but attached to the same domain as A and
//! B, D alone in another domain; a process, Task 1, bound to A with `sva_bind`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use sviommu_core::arch::smmuv3::SmmuUnit;
use sviommu_core::arch::vtd::VtdUnit;
use sviommu_core::audit::{AuditReport, Sentinel, SpaceKey, UnitAudit};
use sviommu_core::topology::{Acs, DeviceId, Scope, Topology, UnitId, UnitKind};
use sviommu_core::{
    AddressSpace, AddressSpaceId, CoreError, DomainKind, FlushPolicy, Iommu, Stage1Config,
    Stage1Format, Target,
};
use sviommu_memory::{FrameAllocator, HostMemory, Hpa, MemoryError};
use sviommu_pgtable::vmsa::s1::{S1Attrs, VmsaS1};
use sviommu_pgtable::vmsa::Granule;
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Build, MapError};
use sviommu_smmuv3::driver::{CdTablePolicy, DriverConfig as SmmuConfig};
use sviommu_smmuv3::hw::SmmuParams;
use sviommu_vtd::driver::DriverConfig as VtdConfig;
use sviommu_vtd::hw::VtdParams;

/// Which CD table policy the SMMUv3 driver runs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CdTables {
    /// One CD table per domain, shared by every device attached to it (the seed's driver).
    #[default]
    PerDomain,
    /// One CD table per device (Linux since 2023).
    PerDevice,
}

/// Why the scenario could not be built (a model or driver bug, never the user's input).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The core refused a call.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Host memory could not be made.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A process page table could not be built.
    #[error(transparent)]
    Map(#[from] MapError),
    /// A unit's driver did not come up.
    #[error("bringing up the {0} driver: {1}")]
    Driver(&'static str, String),
    /// The topology was refused.
    #[error("topology: {0}")]
    Topology(String),
}

/// One architecture's audit with the names the picture gives its devices.
#[derive(Clone, Debug, Serialize)]
pub struct SeedAudit {
    /// What ran.
    pub title: String,
    /// Why A and B share a group here.
    pub picture: String,
    /// The picture's names: A, B, C, D and the device each is.
    pub names: Vec<(char, DeviceId)>,
    /// The audit.
    pub audit: UnitAudit,
}

const TABLES: u64 = 0x100_0000;
const TABLES_LEN: u64 = 0x100_0000;
const CPU: u64 = 0x400_0000;
const CPU_LEN: u64 = 0x10_0000;
/// Where Task 1's page and the domains' pages are (never read: only their addresses matter).
const TASK_PAGE: u64 = 0x3100_0000;
const TASK_VA: u64 = 0x7f00_0000;
const DOMAIN_PAGE: [u64; 2] = [0x3000_0000, 0x3010_0000];
const IOVA: u64 = 0x10_0000;
const UNIT: UnitId = UnitId(0);

/// Runs the picture on VT-d and on SMMUv3 with `cd_tables`.
pub fn seed(cd_tables: CdTables) -> Result<Vec<SeedAudit>, AuditError> {
    let policy = match cd_tables {
        CdTables::PerDomain => CdTablePolicy::PerDomain,
        CdTables::PerDevice => CdTablePolicy::PerDevice,
    };
    Ok(vec![one(None)?, one(Some(policy))?])
}

/// The picture on VT-d (`smmu: None`) or on SMMUv3 with a CD table policy.
fn one(smmu: Option<CdTablePolicy>) -> Result<SeedAudit, AuditError> {
    let mem = Arc::new(HostMemory::new(&[(Hpa(TABLES), TABLES_LEN), (Hpa(CPU), CPU_LEN)])?);
    let frames = FrameAllocator::new(&[(Hpa(TABLES), TABLES_LEN)]);
    let mut cpu_frames = FrameAllocator::new(&[(Hpa(CPU), CPU_LEN)]);
    let mut b = Topology::builder();
    let (names, title, format, root) = match smmu {
        None => {
            b.unit(UNIT, UnitKind::VtdDrhd).scope(Scope::Segment(0));
            b.root_bus(0, 0);
            b.endpoint("00:02.0").pasid(20);
            b.endpoint("00:03.0").pasid(20).dma_alias(0x02, 0);
            b.endpoint("00:04.0").pasid(20);
            b.root_port("00:1c.0", 0x01).acs(Acs::isolated());
            b.endpoint("01:00.0").pasid(20);
            let pt = X86Paging::create(&*mem, &mut cpu_frames, Levels::Four)?;
            pt.map(&*mem, &mut cpu_frames, TASK_VA, TASK_PAGE, 12, X86Attrs::ALL)?;
            let names = ["00:02.0", "00:03.0", "00:04.0", "01:00.0"]
                .map(|s| DeviceId::pci(s).map_err(|e| AuditError::Topology(e.to_string())));
            (
                names,
                "Intel VT-d, scalable mode".to_owned(),
                Stage1Format::X86 { levels: 4 },
                pt.root,
            )
        }
        Some(policy) => {
            b.unit(UNIT, UnitKind::SmmuV3).scope(Scope::StreamIds { first: 0, last: 0xff });
            b.platform("A").stream_id(0x10).pasid(20);
            b.platform("B").stream_id(0x10).pasid(20);
            b.platform("C").stream_id(0x11).pasid(20);
            b.platform("D").stream_id(0x12).pasid(20);
            let pt = VmsaS1::create(&*mem, &mut cpu_frames, VmsaS1::new(0, Granule::K4, 16))?;
            pt.map(&*mem, &mut cpu_frames, TASK_VA, TASK_PAGE, 12, S1Attrs::ALL)?;
            let title = match policy {
                CdTablePolicy::PerDomain => {
                    "Arm SMMUv3, one CD table per domain (the seed's driver)"
                }
                CdTablePolicy::PerDevice => {
                    "Arm SMMUv3, one CD table per device (Linux since 2023)"
                }
            };
            let names = ["A", "B", "C", "D"].map(|s| Ok(DeviceId::platform(s)));
            (names, title.to_owned(), Stage1Format::Vmsa { granule_lg2: 12, ias_bits: 48 }, pt.ttb)
        }
    };
    let [a, b_dev, c, d] = names;
    let (a, b_dev, c, d) = (a?, b_dev?, c?, d?);
    let topology = b.build().map_err(|e| AuditError::Topology(e.to_string()))?;
    let mut iommu = Iommu::new(topology);
    match smmu {
        None => {
            let config = VtdConfig { haw: 48, ..VtdConfig::default() };
            let unit = VtdUnit::new(Arc::clone(&mem), VtdParams::default(), frames, config)
                .map_err(|e| AuditError::Driver("VT-d", e.to_string()))?;
            iommu.add_driver(UNIT, Box::new(unit))?;
        }
        Some(policy) => {
            let config = SmmuConfig { cd_table_policy: policy, ..SmmuConfig::default() };
            let unit = SmmuUnit::new(Arc::clone(&mem), SmmuParams::default(), frames, config)
                .map_err(|e| AuditError::Driver("SMMUv3", e.to_string()))?;
            iommu.add_driver(UNIT, Box::new(unit))?;
        }
    }
    let paging = DomainKind::Paging { nesting_parent: false, flush: FlushPolicy::Strict };
    let shared = iommu.alloc_domain(UNIT, paging)?;
    iommu.attach(shared, &Target::Device(a.clone()))?;
    iommu.attach(shared, &Target::Device(c.clone()))?;
    iommu.map(shared, IOVA, DOMAIN_PAGE[0], 0x1000, true)?;
    let other = iommu.alloc_domain(UNIT, paging)?;
    iommu.attach(other, &Target::Device(d.clone()))?;
    iommu.map(other, IOVA, DOMAIN_PAGE[1], 0x1000, true)?;
    let task =
        AddressSpace { id: AddressSpaceId(1), s1: Stage1Config { format, root, asid: 0x100 } };
    iommu.sva_bind(&Target::Device(a.clone()), &task)?;
    let mut sentinels = BTreeMap::new();
    sentinels
        .insert(SpaceKey::Sva(task.id), Sentinel { pasid: None, input: TASK_VA, hpa: TASK_PAGE });
    let AuditReport { audits } = iommu.audit(&sentinels);
    let audit = audits.into_iter().next().ok_or(AuditError::Driver("core", "no unit".into()))?;
    let picture = match smmu {
        None => "A and B: one IOMMU group (B also sends requests as A, a DMA alias)",
        Some(_) => "A and B: one IOMMU group (the SMMU sees one StreamID for both)",
    };
    let picture = format!(
        "{picture}\n  C: its own group, same domain as A and B; D: its own group and domain\n  \
         Task 1, a process, bound to A with sva_bind"
    );
    let names = vec![('A', a), ('B', b_dev), ('C', c), ('D', d)];
    Ok(SeedAudit { title, picture, names, audit })
}

/// `{"audits": [...]}` as the shape has it, each unit's with its title and names.
pub fn json(audits: &[SeedAudit]) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        audits: Vec<&'a UnitAudit>,
        titles: Vec<&'a str>,
    }
    let out = Out {
        audits: audits.iter().map(|s| &s.audit).collect(),
        titles: audits.iter().map(|s| s.title.as_str()).collect(),
    };
    serde_json::to_string_pretty(&out).unwrap_or_default()
}

/// The audits as people read them.
pub fn text(audits: &[SeedAudit]) -> String {
    let mut s = String::new();
    for a in audits {
        let name = |d: &DeviceId| {
            a.names.iter().find(|(_, x)| x == d).map_or_else(
                || d.to_string(),
                |(n, x)| {
                    let x = x.to_string();
                    if x.len() == 1 {
                        x
                    } else {
                        format!("{n} ({x})")
                    }
                },
            )
        };
        let _ = writeln!(s, "{}\n  {}", a.title, a.picture);
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::NOTHING);
        t.set_header(["address space", "reachable by", "PASID", "why", "by DMA"]);
        for space in &a.audit.address_spaces {
            let what = match space.kind {
                "sva" => format!("{} (Task 1)", space.id),
                _ => space.id.clone(),
            };
            for (i, e) in space.reachable_by.iter().enumerate() {
                let dma = match &space.reached_by_dma {
                    Some(v) if v.contains(&(e.device.clone(), e.pasid)) => "yes",
                    Some(_) => "NO",
                    None => "-",
                };
                let pasid = e.pasid.map_or_else(|| "-".to_owned(), |p| p.to_string());
                let why = serde_json::to_value(e.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let first = if i == 0 { what.clone() } else { String::new() };
                t.add_row([first, name(&e.device), pasid, why, dma.to_owned()]);
            }
        }
        let _ = writeln!(s, "{t}");
        let _ = writeln!(
            s,
            "  static and dynamic (DMA) audits agree: {}\n",
            if a.audit.agrees_with_dma { "yes" } else { "NO" }
        );
    }
    s
}

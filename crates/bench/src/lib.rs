//! Machines for the translate-path benchmarks: each hardware model brought up by the project's
//! own driver, as an embedder would, with [`PAGES`] 4K pages mapped in one configuration, and the
//! device requests that reach them.
//!
//! Every figure the benches print is a ratio to a `HashMap<u64, u64>` lookup of the same page
//! numbers measured in the same run ([`baseline`]); the read counts, which do not depend on the
//! machine, come from the models' own `Translation::reads`.

use std::collections::HashMap;
use std::sync::Arc;

use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, VmsaS1};
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::Build;
use sviommu_smmuv3::driver as smmu_drv;
use sviommu_smmuv3::hw::{Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::Granule;
use sviommu_vtd::driver as vtd_drv;
use sviommu_vtd::hw::{Access, DmaRequest, Vtd, VtdParams};
use sviommu_vtd::spec::Fspm;

/// Pages each configuration maps and each batch translates: few enough that the TLBs the rigs
/// build hold them all whatever the set hash does, so a warm batch is all hits.
pub const PAGES: u64 = 128;
/// Where the driver's own tables live (host physical).
const TABLES_HPA: u64 = 0x10_0000;
const TABLES_LEN: u64 = 0x80_0000;
/// The guest's RAM (or the device's data pages) in host memory.
const RAM_HPA: u64 = 0x1000_0000;
const RAM_LEN: u64 = 0x100_0000;
/// Inside guest RAM: first-stage tables below, data pages from here up.
const DATA_OFFSET: u64 = 0x80_0000;
/// The first input address of a batch (IOVA, GVA or VA).
const INPUT_BASE: u64 = 0x4000_0000;
/// The IPA at which an SMMUv3 guest's RAM starts.
const IPA_BASE: u64 = 0x4000_0000;
/// The requester / stream of the benchmarked device, and its PASID.
const RID: u16 = 0x0010;
const PASID: u32 = 1;

/// The input addresses of a batch, one per page.
pub fn inputs() -> impl Iterator<Item = u64> {
    (0..PAGES).map(|i| INPUT_BASE + i * 0x1000)
}

/// The baseline: the same page numbers in a std `HashMap` with its default hasher.
pub fn baseline() -> HashMap<u64, u64> {
    inputs().map(|va| (va >> 12, (RAM_HPA + DATA_OFFSET + (va - INPUT_BASE)) >> 12)).collect()
}

/// Looks every page of a batch up in the baseline; the sum keeps the work observable.
pub fn baseline_batch(table: &HashMap<u64, u64>) -> u64 {
    inputs().map(|va| table.get(&(va >> 12)).copied().unwrap_or(0)).fold(0, u64::wrapping_add)
}

fn memory() -> Arc<HostMemory> {
    let regions = [(Hpa(TABLES_HPA), TABLES_LEN), (Hpa(RAM_HPA), RAM_LEN)];
    Arc::new(HostMemory::new(&regions).expect("two disjoint regions"))
}

fn driver_frames() -> FrameAllocator<Hpa> {
    FrameAllocator::new(&[(Hpa(TABLES_HPA), TABLES_LEN)])
}

/// Guest RAM seen at guest-physical `base` up.
fn guest_ram(mem: &HostMemory, base: u64) -> GuestRam<&HostMemory> {
    GuestRam::new(
        mem,
        vec![GuestRamRegion { gpa: Gpa(base), len_bytes: RAM_LEN, hpa: Hpa(RAM_HPA) }],
    )
}

/// Frames for a guest's tables: guest RAM below its data pages.
fn guest_frames(base: u64) -> FrameAllocator<Gpa> {
    FrameAllocator::new(&[(Gpa(base), DATA_OFFSET)])
}

/// The configurations a bench can ask of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// VT-d legacy mode, second-stage tables (IOVA -> HPA).
    VtdLegacySecondStage,
    /// VT-d scalable mode, first-stage tables at a PASID (IOVA -> HPA).
    VtdFirstStage,
    /// VT-d scalable mode, a guest's first stage over a second-stage parent at a PASID.
    VtdNested,
    /// SMMUv3 stage 1 (a CD's TTB0).
    SmmuStage1,
    /// SMMUv3 stage 2 (the STE's S2TTB).
    SmmuStage2,
    /// SMMUv3 nested: a guest's stage 1 at a SubstreamID over a host stage-2 parent.
    SmmuNested,
    /// VT-d scalable mode, one second-stage domain attached at RID_PASID and at
    /// [`TAGS`]` - 1` more PASIDs, the batch's pages spread over them (for page-selective
    /// invalidation; not in [`ALL`](Self::ALL)).
    VtdScalableSecondStage,
    /// SMMUv3 stage 1 on [`TAGS`] streams, each with its own domain and so its own ASID, all
    /// under VMID 0, the batch's pages spread over them; its invalidation is CMD_TLBI_NH_VAA
    /// (not in [`ALL`](Self::ALL)).
    SmmuStage1Asids,
}

/// PASIDs / ASIDs the tagged configurations spread their pages over.
pub const TAGS: u32 = 4;

impl Config {
    /// Every configuration, VT-d first.
    pub const ALL: [Self; 6] = [
        Self::VtdLegacySecondStage,
        Self::VtdFirstStage,
        Self::VtdNested,
        Self::SmmuStage1,
        Self::SmmuStage2,
        Self::SmmuNested,
    ];

    /// The bench's name for it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::VtdLegacySecondStage => "vtd_legacy_second_stage",
            Self::VtdFirstStage => "vtd_first_stage",
            Self::VtdNested => "vtd_nested",
            Self::SmmuStage1 => "smmuv3_stage1",
            Self::SmmuStage2 => "smmuv3_stage2",
            Self::SmmuNested => "smmuv3_nested",
            Self::VtdScalableSecondStage => "vtd_scalable_second_stage_4_pasids",
            Self::SmmuStage1Asids => "smmuv3_nh_vaa_4_asids",
        }
    }
}

type Mem = Arc<HostMemory>;
type VtdUnit = Arc<Vtd<Mem>>;
type SmmuUnit = Arc<Smmu<Mem>>;

/// A VT-d unit with its driver and the domain the batch goes through.
#[derive(Debug)]
pub struct VtdRig {
    /// The hardware model: what the device's requests go to.
    pub unit: VtdUnit,
    /// The driver that programmed it.
    pub driver: vtd_drv::VtdDriver<VtdUnit, Mem>,
    /// The domain whose IOTLB entries the batch fills (the parent, nested).
    pub did: vtd_drv::Did,
    /// One request per page.
    pub requests: Vec<DmaRequest>,
}

/// An SMMUv3 with its driver and the domain the batch goes through.
#[derive(Debug)]
pub struct SmmuRig {
    /// The hardware model.
    pub unit: SmmuUnit,
    /// The driver that programmed it.
    pub driver: smmu_drv::SmmuDriver<SmmuUnit, Mem>,
    /// The domain whose TLB entries the batch fills (the parent, nested).
    pub domain: smmu_drv::DomainId,
    /// Every domain the batch goes through, one per stream (only [`Config::SmmuStage1Asids`]
    /// has more than `domain`): request `i` goes through `domains[i % domains.len()]`.
    pub domains: Vec<smmu_drv::DomainId>,
    /// One transaction per page.
    pub requests: Vec<Transaction>,
}

/// A rig of either model.
#[derive(Debug)]
pub enum Rig {
    /// VT-d.
    Vtd(VtdRig),
    /// SMMUv3.
    Smmu(SmmuRig),
}

/// What one batch cost: the sum of the outputs (kept so the work is not optimised away), table
/// and structure reads, and faults (zero in every configuration here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Sum of output addresses.
    pub outputs: u64,
    /// Memory reads the model made.
    pub reads: u64,
    /// Requests that faulted.
    pub faults: u64,
}

impl Rig {
    /// `config` on a model with its default parameters, except that the SMMU's TLB has VT-d's
    /// default 1024 entries (its default 256 in 4 ways lets a few of 128 pages collide in one
    /// set, and a hit benchmark must not miss).
    pub fn new(config: Config) -> Self {
        let smmu = sviommu_smmuv3::hw::CacheSizes {
            tlb: 1024,
            ..sviommu_smmuv3::hw::CacheSizes::default()
        };
        Self::with_caches(config, None, Some(smmu))
    }

    /// [`new`](Self::new) with the translation memo off: the same hits through the caches'
    /// lookups alone.
    pub fn without_memo(config: Config) -> Self {
        let vtd = sviommu_vtd::hw::CacheParams { memo: false, ..Default::default() };
        let smmu = sviommu_smmuv3::hw::CacheSizes { tlb: 1024, memo: false, ..Default::default() };
        Self::with_caches(config, Some(vtd), Some(smmu))
    }

    /// `config` with the model's parameters changed by `vtd` / `smmu` (the one that applies).
    pub fn with_caches(
        config: Config,
        vtd: Option<sviommu_vtd::hw::CacheParams>,
        smmu: Option<sviommu_smmuv3::hw::CacheSizes>,
    ) -> Self {
        let mut vp = VtdParams::default();
        if let Some(c) = vtd {
            vp.caches = c;
        }
        let mut sp = SmmuParams::default();
        if let Some(c) = smmu {
            sp.caches = c;
        }
        match config {
            Config::VtdLegacySecondStage
            | Config::VtdFirstStage
            | Config::VtdNested
            | Config::VtdScalableSecondStage => Self::Vtd(VtdRig::new(config, vp)),
            Config::SmmuStage1
            | Config::SmmuStage2
            | Config::SmmuNested
            | Config::SmmuStage1Asids => Self::Smmu(SmmuRig::new(config, sp)),
        }
    }

    /// Translates every request of the batch once through the model's `translate`.
    pub fn batch(&self) -> Batch {
        match self {
            Self::Vtd(r) => r.batch(),
            Self::Smmu(r) => r.batch(),
        }
    }

    /// Invalidates `pages` pages of the domain from the first of the batch, as the driver
    /// sends it (VT-d: one page-selective descriptor of the power-of-two range around them;
    /// SMMUv3: range TLBIs). [`Config::SmmuStage1Asids`]: CMD_TLBI_NH_VAA of VMID 0 instead,
    /// ranges of (NUM + 1) << SCALE pages as the driver cuts them, and CMD_SYNC.
    pub fn invalidate_pages(&mut self, pages: u64) {
        let range = Some((INPUT_BASE, pages * 0x1000));
        match self {
            Self::Smmu(r) if r.domains.len() > 1 => {
                let cmds = nh_vaa(INPUT_BASE >> 12, pages);
                r.driver.submit(&cmds).unwrap_or_else(|e| panic!("CMD_TLBI_NH_VAA: {e}"));
            }
            Self::Vtd(r) => r
                .driver
                .flush_iotlb(r.did, range)
                .unwrap_or_else(|e| panic!("VT-d invalidation: {e}")),
            Self::Smmu(r) => r
                .driver
                .flush_tlb(r.domain, range)
                .unwrap_or_else(|e| panic!("SMMUv3 invalidation: {e}")),
        }
    }

    /// Fills the model's TLB with `n` distinct pages of the batch's domain (beyond the batch's
    /// own), so an invalidation has a full cache to search.
    pub fn fill(&mut self, n: u64) {
        let extra = n.saturating_sub(PAGES);
        match self {
            Self::Vtd(r) => {
                for i in 0..extra {
                    let iova = INPUT_BASE + (PAGES + i) * 0x1000;
                    r.driver
                        .map(r.did, iova, RAM_HPA + (i % 256) * 0x1000, 0x1000, vtd_drv::Prot::RW)
                        .expect("map a filler page");
                    let req = DmaRequest { addr: iova, ..r.requests[spread(i, r.requests.len())] };
                    r.unit.translate(&req).expect("a filler page translates");
                }
            }
            Self::Smmu(r) => {
                for i in 0..extra {
                    let iova = INPUT_BASE + (PAGES + i) * 0x1000;
                    let pa = RAM_HPA + (i % 256) * 0x1000;
                    let d = r.domains[spread(i, r.domains.len())];
                    r.driver
                        .map(d, iova, pa, 0x1000, smmu_drv::Prot::RW)
                        .expect("map a filler page");
                    let t = Transaction { addr: iova, ..r.requests[spread(i, r.requests.len())] };
                    r.unit.translate(&t).expect("a filler page translates");
                }
            }
        }
    }
}

/// `i` modulo `n` (a filler page's request or domain: the batch's own, in turn).
fn spread(i: u64, n: usize) -> usize {
    usize::try_from(i % n.max(1) as u64).unwrap_or(0)
}

/// CMD_TLBI_NH_VAA of VMID 0 for `pages` 4K pages from page number `first`: ranges of
/// (NUM + 1) << SCALE pages (SMMU_IDR3.RIL), the largest aligned run first.
fn nh_vaa(first: u64, pages: u64) -> Vec<sviommu_smmuv3::spec::Command> {
    use sviommu_smmuv3::spec::{Command, Opcode};
    let (mut page, mut left) = (first, pages);
    let mut cmds = Vec::new();
    while left > 0 {
        let scale = left.trailing_zeros().min(31);
        let num = (left >> scale).min(32);
        let mut c = Command::new(Opcode::TlbiNhVaa);
        c.set_vmid(0);
        c.set_address(page << 12);
        c.set_tg(Some(Granule::Size4K));
        c.set_scale(u8::try_from(scale).unwrap_or(31));
        c.set_num(u8::try_from(num - 1).unwrap_or(31));
        cmds.push(c);
        page += num << scale;
        left -= num << scale;
    }
    cmds
}

impl VtdRig {
    fn new(config: Config, params: VtdParams) -> Self {
        use vtd_drv::{DomainConfig, ModeChoice, PasidConfig, Prot};
        let mem = memory();
        let unit = Arc::new(Vtd::new(Arc::clone(&mem), params));
        let mode = if config == Config::VtdLegacySecondStage {
            ModeChoice::Legacy
        } else {
            ModeChoice::Scalable
        };
        let drv_config = vtd_drv::DriverConfig { mode, ..Default::default() };
        let mut driver = vtd_drv::VtdDriver::new(
            Arc::clone(&unit),
            Arc::clone(&mem),
            driver_frames(),
            drv_config,
        )
        .expect("the default unit comes up");
        let map_batch = |driver: &mut vtd_drv::VtdDriver<VtdUnit, Mem>, did| {
            for (i, iova) in inputs().enumerate() {
                let pa = RAM_HPA + DATA_OFFSET + i as u64 * 0x1000;
                driver.map(did, iova, pa, 0x1000, Prot::RW).expect("map a batch page");
            }
        };
        let read = |addr| DmaRequest::new(RID, addr, Access::READ);
        let (did, requests): (_, Vec<_>) = match config {
            Config::VtdLegacySecondStage => {
                let did =
                    driver.alloc_domain(DomainConfig::SecondStage { aw: None }).expect("domain");
                map_batch(&mut driver, did);
                driver.attach(RID, None, PasidConfig::SecondStage { did }).expect("attach");
                (did, inputs().map(read).collect())
            }
            Config::VtdScalableSecondStage => {
                let did =
                    driver.alloc_domain(DomainConfig::SecondStage { aw: None }).expect("domain");
                map_batch(&mut driver, did);
                driver.attach(RID, None, PasidConfig::SecondStage { did }).expect("attach");
                for pasid in 1..TAGS {
                    let ss = PasidConfig::SecondStage { did };
                    driver.attach(RID, Some(pasid), ss).expect("attach at a PASID");
                }
                // Page i at PASID i % TAGS (0: RID_PASID, a request without PASID).
                let at = |(i, a): (usize, u64)| match u32::try_from(i).unwrap_or(0) % TAGS {
                    0 => read(a),
                    p => read(a).with_pasid(p),
                };
                (did, inputs().enumerate().map(at).collect())
            }
            Config::VtdFirstStage => {
                let fs = DomainConfig::FirstStage { levels: Fspm::FourLevel };
                let did = driver.alloc_domain(fs).expect("domain");
                map_batch(&mut driver, did);
                driver.attach(RID, Some(PASID), PasidConfig::FirstStage { did }).expect("attach");
                (did, inputs().map(|a| read(a).with_pasid(PASID)).collect())
            }
            _ => {
                // Guest RAM at GPA 0 is host RAM_HPA up, mapped by the parent with 2M pages.
                let parent =
                    driver.alloc_domain(DomainConfig::SecondStage { aw: None }).expect("parent");
                for off in (0..RAM_LEN).step_by(0x20_0000) {
                    driver.map(parent, off, RAM_HPA + off, 0x20_0000, Prot::RW).expect("map GPA");
                }
                let root = guest_x86_tables(&mem, 0);
                let nested = PasidConfig::Nested {
                    parent,
                    s1_did: None,
                    fs_root_gpa: root,
                    levels: Fspm::FourLevel,
                    sre: false,
                };
                driver.attach(RID, Some(PASID), nested).expect("attach nested");
                (parent, inputs().map(|a| read(a).with_pasid(PASID)).collect())
            }
        };
        Self { unit, driver, did, requests }
    }

    fn batch(&self) -> Batch {
        let mut b = Batch::default();
        for req in &self.requests {
            match self.unit.translate(req) {
                Ok(t) => {
                    b.outputs = b.outputs.wrapping_add(t.output);
                    b.reads += u64::from(t.reads);
                }
                Err(_) => b.faults += 1,
            }
        }
        b
    }
}

/// A guest's 4-level x86 first-stage tables in its RAM (GPA `base` up) mapping the batch's
/// inputs to its data pages; returns the root's GPA.
fn guest_x86_tables(mem: &HostMemory, base: u64) -> u64 {
    let ram = guest_ram(mem, base);
    let mut frames = guest_frames(base);
    let s1 = X86Paging::create(&ram, &mut frames, Levels::Four).expect("guest root");
    for (i, va) in inputs().enumerate() {
        let gpa = base + DATA_OFFSET + i as u64 * 0x1000;
        s1.map(&ram, &mut frames, va, gpa, 12, X86Attrs::ALL).expect("guest map");
    }
    s1.root
}

impl SmmuRig {
    fn new(config: Config, params: SmmuParams) -> Self {
        use smmu_drv::{Attach, DomainConfig, NestedCd, Prot};
        let mem = memory();
        let unit = Arc::new(Smmu::new(Arc::clone(&mem), params));
        let mut driver = smmu_drv::SmmuDriver::new(
            Arc::clone(&unit),
            Arc::clone(&mem),
            driver_frames(),
            smmu_drv::DriverConfig::default(),
        )
        .expect("the default SMMU comes up");
        let sid = u32::from(RID);
        let map_batch = |driver: &mut smmu_drv::SmmuDriver<SmmuUnit, Mem>, d| {
            for (i, iova) in inputs().enumerate() {
                let pa = RAM_HPA + DATA_OFFSET + i as u64 * 0x1000;
                driver.map(d, iova, pa, 0x1000, Prot::RW).expect("map a batch page");
            }
        };
        let read = |addr| Transaction::new(sid, addr, Access::READ);
        let (domains, requests): (Vec<_>, Vec<_>) = match config {
            Config::SmmuStage1 | Config::SmmuStage2 => {
                let dc = if config == Config::SmmuStage1 {
                    DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 48 }
                } else {
                    DomainConfig::S2 { granule: Granule::Size4K, ias_bits: 40 }
                };
                let d = driver.alloc_domain(dc).expect("domain");
                map_batch(&mut driver, d);
                driver.attach(sid, Attach::Domain(d)).expect("attach");
                (vec![d], inputs().map(read).collect())
            }
            Config::SmmuStage1Asids => {
                let s1 = DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 48 };
                let domains: Vec<_> = (0..TAGS)
                    .map(|n| {
                        let d = driver.alloc_domain(s1).expect("domain");
                        map_batch(&mut driver, d);
                        driver.attach(sid + n, Attach::Domain(d)).expect("attach");
                        d
                    })
                    .collect();
                // Page i through stream sid + i % TAGS, whose domain has its own ASID.
                let through = |(i, a): (usize, u64)| {
                    Transaction::new(sid + u32::try_from(i).unwrap_or(0) % TAGS, a, Access::READ)
                };
                (domains, inputs().enumerate().map(through).collect())
            }
            _ => {
                let s2 = DomainConfig::S2 { granule: Granule::Size4K, ias_bits: 40 };
                let parent = driver.alloc_domain(s2).expect("parent");
                for off in (0..RAM_LEN).step_by(0x20_0000) {
                    driver
                        .map(parent, IPA_BASE + off, RAM_HPA + off, 0x20_0000, Prot::RW)
                        .expect("map IPA");
                }
                driver.attach(sid, Attach::Domain(parent)).expect("attach parent");
                let s1 = guest_vmsa_tables(&mem);
                let cd = NestedCd {
                    asid: 1,
                    ttb0_ipa: s1.ttb,
                    t0sz: s1.t0sz,
                    granule: Granule::Size4K,
                    ips_bits: s1.ips.bits(),
                    mair: 0xff,
                    ha: false,
                    hd: false,
                };
                driver.attach_nested_pasid(sid, PASID, parent, cd).expect("attach nested");
                (vec![parent], inputs().map(|a| read(a).with_ssid(PASID)).collect())
            }
        };
        Self { unit, driver, domain: domains[0], domains, requests }
    }

    fn batch(&self) -> Batch {
        let mut b = Batch::default();
        for t in &self.requests {
            match self.unit.translate(t) {
                Ok(t) => {
                    b.outputs = b.outputs.wrapping_add(t.output);
                    b.reads += u64::from(t.reads);
                }
                Err(_) => b.faults += 1,
            }
        }
        b
    }
}

/// A guest's VMSAv8-64 stage-1 tables (4K granule, 39-bit VAs) in its RAM (IPA [`IPA_BASE`]
/// up) mapping the batch's inputs to its data pages.
fn guest_vmsa_tables(mem: &HostMemory) -> VmsaS1 {
    let ram = guest_ram(mem, IPA_BASE);
    let mut frames = guest_frames(IPA_BASE);
    let s1 =
        VmsaS1::create(&ram, &mut frames, VmsaS1::new(0, PtGranule::K4, 25)).expect("guest TTB");
    for (i, va) in inputs().enumerate() {
        let ipa = IPA_BASE + DATA_OFFSET + i as u64 * 0x1000;
        s1.map(&ram, &mut frames, va, ipa, 12, S1Attrs::ALL).expect("guest map");
    }
    s1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every configuration translates its whole batch to the data pages, the warm batch reads
    /// less than the cold one, and the baseline holds the same pages: what the benches time is
    /// what they say.
    #[test]
    fn every_configuration_translates_its_batch_and_then_hits() {
        let expected: u64 =
            (0..PAGES).map(|i| RAM_HPA + DATA_OFFSET + i * 0x1000).fold(0, u64::wrapping_add);
        let tagged = [Config::VtdScalableSecondStage, Config::SmmuStage1Asids];
        for config in Config::ALL.into_iter().chain(tagged) {
            let rig = Rig::new(config);
            let cold = rig.batch();
            let warm = rig.batch();
            assert_eq!(cold.faults, 0, "{config:?}");
            assert_eq!(cold.outputs, expected, "{config:?}");
            assert_eq!(warm.outputs, expected, "{config:?}");
            assert_eq!(warm.reads, 0, "{config:?}: a warm batch is all IOTLB hits");
            assert!(cold.reads >= PAGES, "{config:?}: {} reads cold", cold.reads);
        }
        assert_eq!(baseline().len() as u64, PAGES);
        assert_eq!(baseline_batch(&baseline()) << 12, expected);
    }

    /// A range invalidation of a filled cache removes the range's pages, whatever PASID or
    /// ASID they were cached under, and leaves the next page.
    #[test]
    fn invalidating_pages_of_a_filled_cache_removes_exactly_them() {
        for config in [Config::VtdScalableSecondStage, Config::SmmuStage1Asids] {
            let mut rig = Rig::new(config);
            rig.fill(512);
            rig.batch();
            let reads = |rig: &Rig, i: usize| match rig {
                Rig::Vtd(r) => r.unit.translate(&r.requests[i]).map(|t| t.reads).ok(),
                Rig::Smmu(r) => r.unit.translate(&r.requests[i]).map(|t| t.reads).ok(),
            };
            assert!((0..17).all(|i| reads(&rig, i) == Some(0)), "{config:?}: warm");
            rig.invalidate_pages(16);
            for i in 0..16 {
                assert!(reads(&rig, i).is_some_and(|n| n > 0), "{config:?}: page {i} walks");
            }
            assert_eq!(reads(&rig, 16), Some(0), "{config:?}: page 16 still hits");
        }
    }
}

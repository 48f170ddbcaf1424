//! A scenario built on one architecture: host memory, the topology, one IOMMU unit (the
//! hardware model, its driver, the core's adapter) under the IOMMU API, processes with real CPU
//! page tables, domains, attaches and binds, all through `sviommu_core::Iommu` as a host kernel
//! makes them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sviommu_core::arch::smmuv3::{HostSmmu, SmmuUnit};
use sviommu_core::arch::vtd::{HostVtd, VtdUnit};
use sviommu_core::driver::CacheKind;
use sviommu_core::topology::{Acs, AcsFlags, DeviceId, Scope, Topology, UnitId, UnitKind};
use sviommu_core::{
    AddressSpace, AddressSpaceId, DomainId, DomainKind, FlushPolicy, Granularity, InvalidateInfo,
    Iommu, Pasid, Stage1Config, Stage1Format, Target,
};
use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::s1::{S1Attrs, VmsaS1};
use sviommu_pgtable::vmsa::Granule;
use sviommu_pgtable::x86::{Levels, X86Attrs, X86Paging};
use sviommu_pgtable::{Build, MapError};
use sviommu_smmuv3::driver::{CdTablePolicy, DriverConfig as SmmuConfig};
use sviommu_smmuv3::hw::SmmuParams;
use sviommu_tlb::{AtsCompletion, AtsPolicy, Profile};
use sviommu_uapi::{Iommufd, VmmRegion};
use sviommu_viommu::smmuv3::SharedFd;
use sviommu_vtd::driver::DriverConfig as VtdConfig;
use sviommu_vtd::hw::VtdParams;

use crate::scenario::{
    Arch, Bind, CdTables, DomainRange, Flush, PortKind, Process, Scenario, ScenarioError, Source,
    Step, Unit,
};

/// What a replay changes of the scenario's machine: the unit's caches and every paging
/// domain's invalidation policy. The default changes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// IOTLB (SMMUv3: TLB) entries, over the scenario's `[[unit]]`.
    pub iotlb: Option<usize>,
    /// Paging-structure (walk) cache entries of each stage, over the scenario's.
    pub walk_cache: Option<usize>,
    /// No caches at all: every translation reads every structure and table entry.
    pub caches_off: bool,
    /// Every paging domain's invalidation policy, over the scenario's `flush`.
    pub invalidation: Option<Invalidation>,
}

/// When an unmapped range leaves the IOTLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Invalidation {
    /// Before the unmap returns (the scenario's `flush = "strict"`).
    Strict,
    /// In batches of 16 ranges, or at a `flush` step (`flush = "lazy"`).
    Batched,
}

/// The scenario's `[[unit]]` for `arch`, checked: one per architecture, caps in range.
fn unit_of(s: &Scenario, source: &Source, arch: Arch) -> Result<Unit, ScenarioError> {
    let mut found: Option<Unit> = None;
    for u in &s.units {
        let unit = u.get_ref().clone();
        if unit.arch != arch {
            continue;
        }
        if found.is_some() {
            return Err(source.error(
                u.span(),
                "unit.arch",
                format!("a second `[[unit]]` for {arch}"),
            ));
        }
        if let Some(b) = unit.pasid_bits {
            if !(1..=20).contains(&b) {
                return Err(source.error(
                    u.span(),
                    "unit.pasid_bits",
                    "a PASID width from 1 to 20 bits",
                ));
            }
        }
        check_caps(source, &unit)?;
        for (key, v) in [
            ("context_cache", &unit.context_cache),
            ("pasid_cache", &unit.pasid_cache),
            ("iotlb", &unit.iotlb),
            ("walk_cache", &unit.walk_cache),
            ("leaf_cache", &unit.leaf_cache),
        ] {
            if let Some(v) = v {
                check_cache_entries(arch, key, *v.get_ref())
                    .map_err(|m| source.error(v.span(), &format!("unit.{key}"), m))?;
            }
        }
        found = Some(unit);
    }
    Ok(found.unwrap_or(Unit { arch, ..Unit::default() }))
}

/// The capability caps of `u`: each belongs to its architecture and takes only the values the
/// register field can say.
fn check_caps(source: &Source, u: &Unit) -> Result<(), ScenarioError> {
    // The caps of the other architecture, where the file gave them.
    let (foreign, whose) = match u.arch {
        Arch::Vtd => (
            [
                ("stages", u.stages.as_ref().map(toml::Spanned::span)),
                ("oas_bits", u.oas_bits.as_ref().map(toml::Spanned::span)),
                ("granules", u.granules.as_ref().map(toml::Spanned::span)),
            ],
            "an SMMUv3",
        ),
        Arch::Smmuv3 => (
            [
                ("sagaw", u.sagaw.as_ref().map(toml::Spanned::span)),
                ("first_stage", u.first_stage.as_ref().map(toml::Spanned::span)),
                ("caching_mode", u.caching_mode.as_ref().map(toml::Spanned::span)),
            ],
            "a VT-d",
        ),
    };
    if let Some((key, span)) = foreign.into_iter().find_map(|(k, s)| s.map(|s| (k, s))) {
        let message = format!("`{key}` is {whose} capability");
        return Err(source.error(span, &format!("unit.{key}"), message));
    }
    if let Some(p) = &u.profile {
        if let Err(e) = p.get_ref().parse::<Profile>() {
            return Err(source.error(p.span(), "unit.profile", e.to_string()));
        }
    }
    if let Some(a) = &u.ats_completion {
        if let Err(e) = a.get_ref().parse::<AtsCompletion>() {
            return Err(source.error(a.span(), "unit.ats_completion", e.to_string()));
        }
    }
    if let Some(t) = u.ats_timeout_ticks.as_ref().filter(|t| *t.get_ref() == 0) {
        return Err(source.error(t.span(), "unit.ats_timeout_ticks", "at least 1 tick"));
    }
    if let Some(w) = &u.sagaw {
        if w.get_ref().is_empty() || w.get_ref().iter().any(|b| ![39, 48, 57].contains(b)) {
            let message = "address widths of 39, 48 or 57 bits (at least one)";
            return Err(source.error(w.span(), "unit.sagaw", message));
        }
    }
    if let Some(st) = &u.stages {
        let v = st.get_ref();
        if v.is_empty() || v.iter().any(|x| x != "s1" && x != "s2") {
            let message = "stages `s1` and/or `s2` (at least one)";
            return Err(source.error(st.span(), "unit.stages", message));
        }
    }
    if let Some(o) = &u.oas_bits {
        if oas_encoding(*o.get_ref()).is_none() {
            let message = "an output size of 32, 36, 40, 42, 44, 48 or 52 bits";
            return Err(source.error(o.span(), "unit.oas_bits", message));
        }
    }
    if let Some(g) = &u.granules {
        if g.get_ref().is_empty() || g.get_ref().iter().any(|k| ![4, 16, 64].contains(k)) {
            let message = "granules of 4, 16 or 64 KiB (at least one)";
            return Err(source.error(g.span(), "unit.granules", message));
        }
    }
    Ok(())
}

/// SMMU_IDR5.OAS for an output size in bits (§6.3.6).
fn oas_encoding(bits: u8) -> Option<u32> {
    [32, 36, 40, 42, 44, 48, 52].iter().position(|&b| b == bits).and_then(|i| u32::try_from(i).ok())
}

/// A `[[unit]]` cache size, checked by [`check_caps`].
fn size(key: &Option<toml::Spanned<usize>>) -> Option<usize> {
    key.as_ref().map(|k| *k.get_ref())
}

/// Most entries a sim cache may have: the models allocate every set up front.
pub const MAX_CACHE_ENTRIES: usize = 1 << 20;

/// The ways of each set of the unit's cache a `[[unit]]` key (or a replay's `iotlb` /
/// `walk_cache`) sizes: the models' own geometry (VT-d's default per cache, SMMUv3's
/// [`CacheSizes::WAYS`](sviommu_smmuv3::hw::CacheSizes::WAYS)).
pub fn cache_ways(arch: Arch, key: &str) -> usize {
    match arch {
        Arch::Smmuv3 => sviommu_smmuv3::hw::CacheSizes::WAYS,
        Arch::Vtd => {
            let d = VtdParams::default().caches;
            match key {
                "context_cache" => d.context.ways,
                "pasid_cache" => d.pasid.ways,
                "iotlb" => d.iotlb.ways,
                "walk_cache" => d.fs_psc.ways.max(d.ss_psc.ways),
                _ => d.ss_leaf.ways,
            }
        }
    }
}

/// Whether `entries` is a size the unit's cache `key` has exactly: a cache is a power of two
/// of sets of `ways` ways (or one set of fewer), at most [`MAX_CACHE_ENTRIES`] and never more
/// ways than a set holds (`sviommu_tlb::MAX_WAYS`). Anything else the cache would round up
/// (or clamp) behind the user's back, so it is refused; the message names the nearest sizes.
pub fn check_cache_entries(arch: Arch, key: &str, entries: usize) -> Result<(), String> {
    let ways = cache_ways(arch, key).min(sviommu_tlb::MAX_WAYS);
    let whole = entries % ways == 0 && (entries / ways).is_power_of_two();
    if entries > MAX_CACHE_ENTRIES {
        return Err(format!("{entries} entries: at most {MAX_CACHE_ENTRIES}"));
    }
    if entries <= ways || whole {
        return Ok(());
    }
    let below = ways << (entries / ways).max(1).ilog2();
    Err(format!(
        "{entries} entries: the {arch} {key} is a power of two of sets of {ways} ways, so \
         {below} or {} (or {ways} and fewer in one set)",
        below * 2
    ))
}

/// `entries` as a VT-d cache of `ways` ways (fewer ways for a smaller cache); 0 is none.
fn geometry(entries: usize, ways: usize) -> sviommu_vtd::hw::CacheGeometry {
    use sviommu_vtd::hw::CacheGeometry;
    if entries == 0 {
        return CacheGeometry::NONE;
    }
    let ways = ways.min(entries);
    CacheGeometry::new(entries.div_ceil(ways), ways)
}

fn vtd_params(u: &Unit, c: &Config) -> VtdParams {
    let mut p = VtdParams::default();
    let d = p.caches;
    let entries = |g: sviommu_vtd::hw::CacheGeometry| g.sets * g.ways;
    let iotlb = c.iotlb.or(size(&u.iotlb)).unwrap_or(entries(d.iotlb));
    let walk = c.walk_cache.or(size(&u.walk_cache));
    p.caches = sviommu_vtd::hw::CacheParams {
        context: geometry(size(&u.context_cache).unwrap_or(entries(d.context)), d.context.ways),
        pasid: geometry(size(&u.pasid_cache).unwrap_or(entries(d.pasid)), d.pasid.ways),
        iotlb: geometry(iotlb, d.iotlb.ways),
        fs_psc: geometry(walk.unwrap_or(entries(d.fs_psc)), d.fs_psc.ways),
        ss_psc: geometry(walk.unwrap_or(entries(d.ss_psc)), d.ss_psc.ways),
        ss_leaf: geometry(size(&u.leaf_cache).unwrap_or(entries(d.ss_leaf)), d.ss_leaf.ways),
        memo: d.memo,
    };
    if c.caches_off {
        p.caches = sviommu_vtd::hw::CacheParams::NONE;
    }
    if let Some(b) = u.pasid_bits {
        // §11.4.3 ECAP.PSS: the PASID width less one.
        p.ecap = sviommu_vtd::spec::regs::ecap::PSS.set(p.ecap, u64::from(b.saturating_sub(1)));
    }
    use sviommu_vtd::spec::regs::{cap, ecap};
    if let Some(w) = &u.sagaw {
        // §11.4.2 CAP.SAGAW: bit 1 is 39-bit (3-level), bit 2 48-bit, bit 3 57-bit.
        let bits = w.get_ref().iter().map(|&b| 1u64 << ((b - 30) / 9)).fold(0, |a, b| a | b);
        p.cap = cap::SAGAW.set(p.cap, bits);
    }
    if let Some(f) = &u.first_stage {
        p.ecap = ecap::FSTS.with(p.ecap, *f.get_ref());
    }
    if let Some(c) = &u.caching_mode {
        p.cap = cap::CM.with(p.cap, *c.get_ref());
    }
    p.profile = profile_of(u);
    p.ats = ats_of(u);
    p
}

/// The unit's behaviour profile (checked by [`check_caps`]; the default where absent).
fn profile_of(u: &Unit) -> Profile {
    u.profile.as_ref().and_then(|p| p.get_ref().parse().ok()).unwrap_or_default()
}

/// How the unit's devices answer ATS invalidations (checked by [`check_caps`]).
fn ats_of(u: &Unit) -> AtsPolicy {
    let d = AtsPolicy::default();
    AtsPolicy {
        completion: u
            .ats_completion
            .as_ref()
            .and_then(|a| a.get_ref().parse().ok())
            .unwrap_or(d.completion),
        timeout_ticks: u.ats_timeout_ticks.as_ref().map_or(d.timeout_ticks, |t| *t.get_ref()),
    }
}

/// The SMMUv3 unit; with `pri` (a device of the scenario has ATS or PRI) it also advertises
/// ATS, PRI with a PRI queue, and PASIDs in PRG responses (the default unit has none of them).
fn smmu_params(u: &Unit, c: &Config, pri: bool) -> SmmuParams {
    use sviommu_smmuv3::spec::regs::{idr0, idr1, idr3};
    let mut p = SmmuParams::default();
    if pri {
        p.idr0 = idr0::ATS.set32(idr0::PRI.set32(p.idr0, 1), 1);
        // §6.3.2: a PRI queue of 2^8 entries.
        p.idr1 = idr1::PRIQS.set32(p.idr1, 8);
        p.idr3 = idr3::PPS.set32(p.idr3, 1);
    }
    let d = p.caches;
    let walk = c.walk_cache.or(size(&u.walk_cache));
    p.caches = sviommu_smmuv3::hw::CacheSizes {
        ste: size(&u.context_cache).unwrap_or(d.ste),
        cd: size(&u.pasid_cache).unwrap_or(d.cd),
        tlb: c.iotlb.or(size(&u.iotlb)).unwrap_or(d.tlb),
        s1_walk: walk.unwrap_or(d.s1_walk),
        s2_walk: walk.unwrap_or(d.s2_walk),
        s2_leaf: size(&u.leaf_cache).unwrap_or(d.s2_leaf),
        memo: d.memo,
    };
    if c.caches_off {
        p.caches = sviommu_smmuv3::hw::CacheSizes::NONE;
    }
    if let Some(b) = u.pasid_bits {
        // §6.3.2 SMMU_IDR1.SSIDSIZE: SubstreamID bits.
        p.idr1 = sviommu_smmuv3::spec::regs::idr1::SSIDSIZE.set32(p.idr1, u32::from(b));
    }
    use sviommu_smmuv3::spec::regs::idr5;
    if let Some(st) = &u.stages {
        let has = |x: &str| u32::from(st.get_ref().iter().any(|s| s == x));
        p.idr0 = idr0::S2P.set32(idr0::S1P.set32(p.idr0, has("s1")), has("s2"));
    }
    if let Some(enc) = u.oas_bits.as_ref().and_then(|o| oas_encoding(*o.get_ref())) {
        p.idr5 = idr5::OAS.set32(p.idr5, enc);
    }
    if let Some(g) = &u.granules {
        let has = |k: u8| u32::from(g.get_ref().contains(&k));
        p.idr5 = idr5::GRAN4K.set32(p.idr5, has(4));
        p.idr5 = idr5::GRAN16K.set32(p.idr5, has(16));
        p.idr5 = idr5::GRAN64K.set32(p.idr5, has(64));
    }
    p.profile = profile_of(u);
    p.ats = ats_of(u);
    p
}

/// IOMMU structures and tables: the unit's driver allocates from here.
const TABLES: Range<u64> = 0x100_0000..0x200_0000;
/// Processes' CPU page tables.
const CPU_TABLES: Range<u64> = 0x400_0000..0x480_0000;
/// Pages that domains and processes map: what DMA reaches.
const DATA: Range<u64> = 0x3000_0000..0x3400_0000;
/// Guests' RAM.
const GUESTS: Range<u64> = 0x4000_0000..0x5000_0000;
/// Where the VMM sees guests' RAM (user VA of `GUESTS.start`).
pub const VMM_VA: u64 = 0x7f00_0000_0000;
/// The one unit every device is behind.
pub const UNIT: UnitId = UnitId(0);
const PAGE_LG2: u8 = 12;
/// Ranges a lazy domain's flush queue holds before it invalidates them.
const LAZY_BATCH: usize = 16;

/// The hardware model a device's DMA goes to.
#[derive(Clone, Debug)]
pub enum Hw {
    /// Intel VT-d.
    Vtd(Arc<HostVtd>),
    /// Arm SMMUv3.
    Smmu(Arc<HostSmmu>),
}

impl Hw {
    /// Takes everything the unit sent (interrupts, messages to devices) as the platform
    /// delivers it. The scenario's devices keep no IOTLB of their own, so there is nothing more
    /// to do with most of them than to take them; page group responses are returned, for the
    /// device that waits on one (`ats` steps).
    pub fn deliver(&self) -> Vec<PageResponse> {
        use sviommu_smmuv3::hw::Output as SmmuOutput;
        use sviommu_vtd::hw::Output as VtdOutput;
        match self {
            Self::Vtd(u) => u
                .drain_outputs()
                .into_iter()
                .filter_map(|o| match o {
                    VtdOutput::PageGroupResponse(r) => Some(PageResponse {
                        request_id: u32::from(r.rid()),
                        pasid: r.pp().then(|| r.pasid()),
                        group: r.prgi(),
                        code: u8::try_from(r.rc_raw()).unwrap_or(u8::MAX),
                    }),
                    _ => None,
                })
                .collect(),
            Self::Smmu(u) => u
                .drain_outputs()
                .into_iter()
                .filter_map(|o| match o {
                    SmmuOutput::PriResponse { sid, ssid, prg_index, response_code } => {
                        Some(PageResponse {
                            request_id: sid,
                            pasid: ssid,
                            group: prg_index,
                            code: response_code,
                        })
                    }
                    _ => None,
                })
                .collect(),
        }
    }
}

/// A page group response (PCIe PRG Response) the unit sent to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageResponse {
    /// The device's requester ID / StreamID.
    pub request_id: u32,
    /// The PASID, when the response carries one.
    pub pasid: Option<u32>,
    /// The page request group index answered.
    pub group: u16,
    /// The PCIe response code: 0 Success, 1 Invalid Request, Fh Response Failure.
    pub code: u8,
}

/// A process: its address space and the host pages behind its virtual pages.
#[derive(Clone, Debug)]
pub struct ProcessSpace {
    /// Its scenario name.
    pub name: String,
    /// The address space `sva_bind` takes.
    pub space: AddressSpace,
    /// `(va, hpa)` of its first page, the audit's sentinel.
    pub first_page: Option<(u64, u64)>,
    /// Ranges it has but did not populate, `(va, bytes, writable)`: a page request for a page
    /// in one is answered by faulting the page in.
    pub unpopulated: Vec<(u64, u64, bool)>,
    /// Pages of those ranges faulted in so far, `(va, hpa)`.
    pub faulted: Vec<(u64, u64)>,
}

/// A bind the scenario made.
#[derive(Clone, Debug)]
pub struct BindRecord {
    /// Process name.
    pub process: String,
    /// Device named in the call.
    pub device: String,
    /// The PASID it returned.
    pub pasid: Pasid,
}

/// A domain the scenario made.
#[derive(Clone, Debug)]
pub struct DomainRecord {
    /// Its scenario name.
    pub name: String,
    /// The core's id.
    pub id: DomainId,
    /// Devices the scenario named in attaches.
    pub named: Vec<String>,
}

/// The page allocators of a built machine, for later maps: data pages, and the host
/// processes' page-table pages.
#[derive(Debug)]
pub struct DataPool(DataPages, FrameAllocator<Hpa>);

/// The scenario built on one architecture.
#[derive(Debug)]
pub struct Machine {
    /// Which architecture.
    pub arch: Arch,
    /// Host memory.
    pub mem: Arc<HostMemory>,
    /// The VMM's iommufd context, which owns the IOMMU API (and so the unit's adapter):
    /// shared with the guests' vIOMMUs, which forward through it. The host kernel's own
    /// calls go to the core underneath through [`Machine::iommu`].
    pub fd: SharedFd,
    /// The unit's hardware model, where devices send DMA.
    pub hw: Hw,
    /// Device names to ids, in scenario order.
    pub devices: Vec<(String, DeviceId)>,
    /// Processes, in scenario order.
    pub processes: Vec<ProcessSpace>,
    /// Domains, in scenario order.
    pub domains: Vec<DomainRecord>,
    /// Binds, in scenario order.
    pub binds: Vec<BindRecord>,
    /// Guests, in scenario order.
    pub guests: Vec<GuestRecord>,
}

/// A guest the scenario made.
#[derive(Debug)]
pub struct GuestRecord {
    /// Its scenario name.
    pub name: String,
    /// Its RAM: guest-physical 0 up, at this host address.
    pub ram: GuestRamRegion,
    /// The host's stage-2 domain over its RAM (a nesting parent).
    pub stage2: DomainId,
    /// Assigned devices.
    pub devices: Vec<String>,
    /// Its processes (stage-1 roots are guest-physical).
    pub processes: Vec<ProcessSpace>,
    /// Its PASIDs: process, device, PASID, the host's nested domain (none on an SMMUv3
    /// vIOMMU, where the host's nested STE takes the guest's whole CD table).
    pub binds: Vec<(String, String, Pasid, Option<DomainId>)>,
    /// Its vIOMMU, when the scenario gave it one.
    pub viommu: Option<crate::vguest::VGuest>,
    /// With a vIOMMU: each assigned device's default DMA domain, in device order.
    pub dma: Vec<GuestDmaDomain>,
}

/// A device's default DMA domain in a guest with a vIOMMU.
#[derive(Clone, Debug)]
pub struct GuestDmaDomain {
    /// The device.
    pub device: String,
    /// The host's nested domain attached to the device itself (VT-d); none on SMMUv3, where
    /// the host's nested STE takes the guest's CD table, whose CD 0 this is.
    pub domain: Option<DomainId>,
    /// The guest's DMA API mappings: IOVA, guest-physical page, writable (4K each).
    pub pages: Vec<(u64, u64, bool)>,
}

/// The IOMMU API of a [`Machine`], borrowed from its iommufd context for as long as this lives
/// (a vIOMMU that forwards meanwhile waits).
#[derive(Debug)]
pub struct IommuGuard<'a>(MutexGuard<'a, Iommufd>);

impl Deref for IommuGuard<'_> {
    type Target = Iommu;
    fn deref(&self) -> &Iommu {
        self.0.iommu()
    }
}

impl DerefMut for IommuGuard<'_> {
    fn deref_mut(&mut self) -> &mut Iommu {
        self.0.iommu_mut()
    }
}

impl Machine {
    /// The IOMMU API, as the host kernel calls it.
    pub fn iommu(&self) -> IommuGuard<'_> {
        IommuGuard(self.fd.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The scenario name of `id`, or its address.
    pub fn name_of(&self, id: &DeviceId) -> String {
        self.devices
            .iter()
            .find(|(_, d)| d == id)
            .map_or_else(|| id.to_string(), |(n, _)| n.clone())
    }

    /// The device called `name`.
    pub fn device(&self, name: &str) -> Option<&DeviceId> {
        self.devices.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }
}

/// Host pages for mappings, handed out in order so a scenario's addresses are repeatable.
#[derive(Debug)]
struct DataPages(FrameAllocator<Hpa>);

impl DataPages {
    fn take(&mut self, mem: &HostMemory, bytes: u64) -> Result<u64, String> {
        let lg2 = u8::try_from(bytes.next_power_of_two().trailing_zeros()).unwrap_or(u8::MAX);
        self.0.alloc(mem, lg2.max(PAGE_LG2)).map(|h| h.0).map_err(|e| e.to_string())
    }
}

/// Builds `scenario` on `arch`. Scenario mistakes name their place in `source`.
pub fn build(
    scenario: &Scenario,
    source: &Source,
    arch: Arch,
) -> Result<(Machine, DataPool), ScenarioError> {
    build_with(scenario, source, arch, &Config::default())
}

/// Builds `scenario` on `arch` with `config`'s changes to its unit and domains.
pub fn build_with(
    scenario: &Scenario,
    source: &Source,
    arch: Arch,
    config: &Config,
) -> Result<(Machine, DataPool), ScenarioError> {
    check_steps(scenario, source)?;
    let unit = unit_of(scenario, source, arch)?;
    let mem = Arc::new(
        HostMemory::new(&[
            (Hpa(TABLES.start), TABLES.end - TABLES.start),
            (Hpa(CPU_TABLES.start), CPU_TABLES.end - CPU_TABLES.start),
            (Hpa(DATA.start), DATA.end - DATA.start),
            (Hpa(GUESTS.start), GUESTS.end - GUESTS.start),
        ])
        .map_err(|e| internal(source, format!("host memory: {e}")))?,
    );
    let (topology, devices) = topology(scenario, source, arch)?;
    let mut iommu = Iommu::new(topology);
    let frames = FrameAllocator::new(&[(Hpa(TABLES.start), TABLES.end - TABLES.start)]);
    let hw = match arch {
        Arch::Vtd => {
            let driver = VtdConfig { haw: 48, ..VtdConfig::default() };
            let unit = VtdUnit::new(Arc::clone(&mem), vtd_params(&unit, config), frames, driver)
                .map_err(|e| internal(source, format!("VT-d driver bring-up: {e}")))?;
            let hw = Hw::Vtd(Arc::clone(unit.hw()));
            iommu.add_driver(UNIT, Box::new(unit)).map_err(|e| internal(source, e.to_string()))?;
            hw
        }
        Arch::Smmuv3 => {
            let cd_table_policy = match scenario.smmuv3.cd_tables {
                CdTables::PerDomain => CdTablePolicy::PerDomain,
                CdTables::PerDevice => CdTablePolicy::PerDevice,
            };
            let driver = SmmuConfig { cd_table_policy, ..SmmuConfig::default() };
            let unit = SmmuUnit::new(
                Arc::clone(&mem),
                smmu_params(&unit, config, scenario.devices.iter().any(|d| d.ats || d.pri)),
                frames,
                driver,
            )
            .map_err(|e| internal(source, format!("SMMUv3 driver bring-up: {e}")))?;
            let hw = Hw::Smmu(Arc::clone(unit.hw()));
            iommu.add_driver(UNIT, Box::new(unit)).map_err(|e| internal(source, e.to_string()))?;
            hw
        }
    };
    // Guest RAM is the VMM's memory, at VMM_VA up.
    let vmm =
        vec![VmmRegion { user_va: VMM_VA, hpa: GUESTS.start, len: GUESTS.end - GUESTS.start }];
    let fd = Arc::new(Mutex::new(Iommufd::new(iommu, Arc::clone(&mem), vmm)));
    let mut m = Machine {
        arch,
        mem,
        fd,
        hw,
        devices,
        processes: Vec::new(),
        domains: Vec::new(),
        binds: Vec::new(),
        guests: Vec::new(),
    };
    let mut data = DataPages(FrameAllocator::new(&[(Hpa(DATA.start), DATA.end - DATA.start)]));
    let cpu = processes(&mut m, scenario, source, &mut data)?;
    domains(&mut m, scenario, source, &mut data, config.invalidation)?;
    binds(&mut m, scenario, source)?;
    guests(&mut m, scenario, source)?;
    Ok((m, DataPool(data, cpu)))
}

/// A failure that is not the scenario's fault (memory sizes, a driver that did not come up).
fn internal(source: &Source, message: String) -> ScenarioError {
    source.error(0..0, "(machine)", message)
}

fn acs(
    source: &Source,
    flags: &[toml::Spanned<String>],
    field: &str,
) -> Result<Option<Acs>, ScenarioError> {
    if flags.is_empty() {
        return Ok(None);
    }
    let mut set = AcsFlags::NONE;
    for f in flags {
        let one = match f.get_ref().as_str() {
            "isolated" => AcsFlags::ISOLATED,
            "SV" => AcsFlags::SV,
            "TB" => AcsFlags::TB,
            "RR" => AcsFlags::RR,
            "CR" => AcsFlags::CR,
            "UF" => AcsFlags::UF,
            "EC" => AcsFlags::EC,
            "DT" => AcsFlags::DT,
            other => {
                return Err(source.error(
                    f.span(),
                    field,
                    format!("unknown ACS control `{other}`: expected SV, TB, RR, CR, UF, EC, DT or isolated"),
                ))
            }
        };
        set = set | one;
    }
    Ok(Some(Acs::enabled(set)))
}

/// The topology and the device names, checked.
fn topology(
    s: &Scenario,
    source: &Source,
    arch: Arch,
) -> Result<(Topology, Vec<(String, DeviceId)>), ScenarioError> {
    let mut b = Topology::builder();
    let kind = match arch {
        Arch::Vtd => UnitKind::VtdDrhd,
        Arch::Smmuv3 => UnitKind::SmmuV3,
    };
    b.unit(UNIT, kind).scope(Scope::Segment(0));
    if s.root_buses.is_empty() {
        b.root_bus(0, 0);
    }
    for r in &s.root_buses {
        b.root_bus(r.segment, r.bus);
    }
    for p in &s.ports {
        let bdf = p.bdf.get_ref().as_str();
        let f = match p.kind {
            PortKind::Root => b.root_port(bdf, p.secondary_bus),
            PortKind::SwitchUpstream => b.switch_upstream(bdf, p.secondary_bus),
            PortKind::SwitchDownstream => b.switch_downstream(bdf, p.secondary_bus),
            PortKind::PcieToPciBridge => b.pcie_to_pci_bridge(bdf, p.secondary_bus),
            PortKind::PciBridge => b.pci_bridge(bdf, p.secondary_bus),
        };
        if let Some(a) = acs(source, &p.acs, "port.acs")? {
            f.acs(a);
        }
    }
    let mut names: Vec<(String, DeviceId)> = Vec::new();
    for d in &s.devices {
        let name = d.name.get_ref();
        if names.iter().any(|(n, _)| n == name) || name == "all" {
            return Err(source.error(
                d.name.span(),
                "device.name",
                format!("`{name}` is used twice or reserved"),
            ));
        }
        let id = DeviceId::pci(d.bdf.get_ref())
            .map_err(|e| source.error(d.bdf.span(), "device.bdf", e.to_string()))?;
        let f = b.endpoint(d.bdf.get_ref().as_str());
        if let Some(bits) = &d.pasid_bits {
            f.pasid(*bits.get_ref());
        }
        if d.ats {
            f.ats();
        }
        if d.pri {
            f.pri();
        }
        if let Some(alias) = &d.dma_alias {
            let bad = || {
                source.error(
                    alias.span(),
                    "device.dma_alias",
                    "expected `device.function`, e.g. `02.0`",
                )
            };
            let (dev, func) = alias.get_ref().split_once('.').ok_or_else(bad)?;
            let dev = u8::from_str_radix(dev, 16).map_err(|_| bad())?;
            let func = func.parse::<u8>().map_err(|_| bad())?;
            f.dma_alias(dev, func);
        }
        if let Some(a) = acs(source, &d.acs, "device.acs")? {
            f.acs(a);
        }
        names.push((name.clone(), id));
    }
    let topology = b
        .build()
        .map_err(|e| source.error(0..0, "port/device", format!("the topology is refused: {e}")))?;
    Ok((topology, names))
}

fn check_page(
    source: &Source,
    span: Range<usize>,
    field: &str,
    start: u64,
    size: u64,
) -> Result<(), ScenarioError> {
    let mask = (1u64 << PAGE_LG2) - 1;
    if start & mask != 0 || size & mask != 0 || size == 0 {
        return Err(source.error(span, field, "addresses and sizes must be whole 4K pages"));
    }
    Ok(())
}

/// A process's CPU page table in `mem` (host memory, or a guest's RAM), in the stage-1 format
/// of `arch`, mapping each `(va, pa, writable)` 4K page. Returns its format and root.
fn stage1_tables<M: PhysMemory + ?Sized>(
    arch: Arch,
    mem: &M,
    alloc: &mut FrameAllocator<M::Addr>,
    pages: &[(u64, u64, bool)],
) -> Result<(Stage1Format, u64), String> {
    let e = |e: MapError| e.to_string();
    let (format, root) = match arch {
        Arch::Vtd => (
            Stage1Format::X86 { levels: 4 },
            X86Paging::create(mem, alloc, Levels::Four).map_err(e)?.root,
        ),
        Arch::Smmuv3 => (
            Stage1Format::Vmsa { granule_lg2: 12, ias_bits: 48 },
            VmsaS1::create(mem, alloc, vmsa_s1(0)).map_err(e)?.ttb,
        ),
    };
    for &page in pages {
        map_stage1(arch, mem, alloc, root, page)?;
    }
    Ok((format, root))
}

/// A process's VMSAv8-64 stage 1 at `ttb`: 4K granule, 48-bit VAs.
const fn vmsa_s1(ttb: u64) -> VmsaS1 {
    VmsaS1::new(ttb, Granule::K4, 16)
}

/// Maps one 4K page `(va, pa, writable)` into the process tables at `root`.
fn map_stage1<M: PhysMemory + ?Sized>(
    arch: Arch,
    mem: &M,
    alloc: &mut FrameAllocator<M::Addr>,
    root: u64,
    (va, pa, w): (u64, u64, bool),
) -> Result<(), String> {
    match arch {
        Arch::Vtd => {
            let attrs = if w { X86Attrs::ALL } else { X86Attrs::READ_ONLY };
            X86Paging::new(root, Levels::Four).map(mem, alloc, va, pa, PAGE_LG2, attrs)
        }
        Arch::Smmuv3 => {
            let attrs = S1Attrs { writable: w, ..S1Attrs::ALL };
            vmsa_s1(root).map(mem, alloc, va, pa, PAGE_LG2, attrs)
        }
    }
    .map_err(|e| e.to_string())
}

/// Removes `[va, va + size)` from the process tables at `root`; returns the bytes removed.
fn unmap_stage1<M: PhysMemory + ?Sized>(
    arch: Arch,
    mem: &M,
    root: u64,
    va: u64,
    size: u64,
) -> Result<u64, String> {
    match arch {
        Arch::Vtd => X86Paging::new(root, Levels::Four).unmap(mem, va, size),
        Arch::Smmuv3 => vmsa_s1(root).unmap(mem, va, size),
    }
    .map(|u| u.bytes)
    .map_err(|e| e.to_string())
}

/// A guest unmaps part of its process and, unless told it forgets, invalidates it through
/// its own driver (VT-d: PASID-based IOTLB invalidation per bind; SMMUv3: CMD_TLBI_NH_VA for
/// the process's ASID), which its vIOMMU forwards to the host.
fn guest_unmap(
    m: &mut Machine,
    source: &Source,
    span: Range<usize>,
    u: &crate::scenario::GuestUnmap,
) -> Result<String, ScenarioError> {
    let field = "step.guest_unmap";
    check_page(source, span.clone(), field, u.va, u.size)?;
    let Some(g) = m.guests.iter_mut().find(|g| g.name == *u.guest.get_ref()) else {
        return Err(source.error(
            u.guest.span(),
            "step.guest_unmap.guest",
            format!("no guest `{}`", u.guest.get_ref()),
        ));
    };
    let Some(p) = g.processes.iter().find(|p| p.name == *u.process.get_ref()) else {
        return Err(source.error(
            u.process.span(),
            "step.guest_unmap.process",
            format!("no process `{}` in guest `{}`", u.process.get_ref(), g.name),
        ));
    };
    let (root, asid) = (p.space.s1.root, p.space.s1.asid);
    let pasids: Vec<u32> =
        g.binds.iter().filter(|b| b.0 == *u.process.get_ref()).map(|b| b.2 .0).collect();
    let Some(viommu) = g.viommu.as_mut() else {
        return Err(source.error(
            u.guest.span(),
            "step.guest_unmap.guest",
            "the guest has no vIOMMU to invalidate through (`viommu = true`)",
        ));
    };
    let ram = GuestRam::new(Arc::clone(&m.mem), vec![g.ram]);
    let bytes = unmap_stage1(m.arch, &ram, root, u.va, u.size)
        .map_err(|e| source.error(span.clone(), field, e))?;
    if bytes != u.size {
        return Err(source.error(
            span,
            field,
            format!("unmapped {bytes:#x} of the {:#x} bytes asked", u.size),
        ));
    }
    let how = if u.invalidate {
        viommu
            .invalidate(&pasids, asid, u.va, u.size)
            .map_err(|e| source.error(span, field, format!("the guest's driver: {e}")))?;
        "invalidates through its vIOMMU"
    } else {
        "forgets to invalidate"
    };
    Ok(format!(
        "guest {} unmaps {} {:#x}+{:#x} and {how}",
        g.name,
        u.process.get_ref(),
        u.va,
        u.size
    ))
}

/// How the host answers a page request (PCIe page group response codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultIn {
    /// The page is there now (faulted in at this host address, or there already):
    /// Success.
    Resident(u64),
    /// No process is bound at the PASID, the process has no such range, or not with the
    /// access asked: Invalid Request, as Linux answers when `handle_mm_fault` fails.
    Invalid(&'static str),
}

/// The host's page fault handler for SVA (Linux's `iommu_sva_handle_iopf`): the page at
/// `addr` of the process bound at `pasid`, faulted in when the process has it unpopulated
/// with the access asked. A page faulted in once stays.
pub fn fault_in(
    m: &mut Machine,
    pool: &mut DataPool,
    pasid: Pasid,
    addr: u64,
    write: bool,
) -> FaultIn {
    let Some(b) = m.binds.iter().find(|b| b.pasid == pasid) else {
        return FaultIn::Invalid("no process is bound at the PASID");
    };
    let Some(p) = m.processes.iter_mut().find(|p| p.name == b.process) else {
        return FaultIn::Invalid("no process is bound at the PASID");
    };
    let page = addr & !((1 << PAGE_LG2) - 1);
    if let Some(&(_, hpa)) = p.faulted.iter().find(|(va, _)| *va == page) {
        return FaultIn::Resident(hpa);
    }
    let Some(&(_, _, writable)) = p
        .unpopulated
        .iter()
        .find(|(va, bytes, _)| (*va..va.saturating_add(*bytes)).contains(&page))
    else {
        return FaultIn::Invalid("the process has no unpopulated range there");
    };
    if write && !writable {
        return FaultIn::Invalid("the range is read-only");
    }
    let Ok(hpa) = pool.0.take(&m.mem, 1 << PAGE_LG2) else {
        return FaultIn::Invalid("no memory left for the page");
    };
    let root = p.space.s1.root;
    if map_stage1(m.arch, &*m.mem, &mut pool.1, root, (page, hpa, writable)).is_err() {
        return FaultIn::Invalid("no memory left for its page table");
    }
    p.faulted.push((page, hpa));
    FaultIn::Resident(hpa)
}

/// The 4K pages of `p`, each `(va, backing, writable)`, with backing from `take`.
fn process_pages(
    source: &Source,
    p: &Process,
    field: &str,
    mut take: impl FnMut(u64) -> Result<u64, String>,
) -> Result<Vec<(u64, u64, bool)>, ScenarioError> {
    let mut out = Vec::new();
    for page in &p.pages {
        let g = page.get_ref();
        check_page(source, page.span(), field, g.va, g.size)?;
        if !g.populated {
            continue;
        }
        let base = take(g.size).map_err(|e| source.error(page.span(), field, e))?;
        for off in (0..g.size).step_by(1 << PAGE_LG2) {
            out.push((g.va + off, base + off, g.perms.writable()));
        }
    }
    Ok(out)
}

fn unique(
    source: &Source,
    seen: &mut Vec<String>,
    name: &toml::Spanned<String>,
    field: &str,
) -> Result<(), ScenarioError> {
    if seen.contains(name.get_ref()) {
        return Err(source.error(
            name.span(),
            field,
            format!("`{}` is used twice", name.get_ref()),
        ));
    }
    seen.push(name.get_ref().clone());
    Ok(())
}

/// Builds the host's processes; returns the allocator of their page tables, for the pages
/// faulted in later.
fn processes(
    m: &mut Machine,
    s: &Scenario,
    source: &Source,
    data: &mut DataPages,
) -> Result<FrameAllocator<Hpa>, ScenarioError> {
    let mut cpu =
        FrameAllocator::new(&[(Hpa(CPU_TABLES.start), CPU_TABLES.end - CPU_TABLES.start)]);
    let mut seen = Vec::new();
    for p in &s.processes {
        unique(source, &mut seen, &p.name, "process.name")?;
        let mem = Arc::clone(&m.mem);
        let pages = process_pages(source, p, "process.pages", |bytes| data.take(&mem, bytes))?;
        let (format, root) = stage1_tables(m.arch, &*mem, &mut cpu, &pages)
            .map_err(|e| source.error(p.name.span(), "process", e))?;
        let id = AddressSpaceId(u32::try_from(m.processes.len() + 1).unwrap_or(u32::MAX));
        // ASIDs from 0x100 up, apart from those a driver hands out for its own domains.
        let asid = u16::try_from(0x100 + m.processes.len()).unwrap_or(u16::MAX);
        let space = AddressSpace { id, s1: Stage1Config { format, root, asid } };
        let first_page = pages.first().map(|&(va, hpa, _)| (va, hpa));
        let unpopulated = p
            .pages
            .iter()
            .map(toml::Spanned::get_ref)
            .filter(|g| !g.populated)
            .map(|g| (g.va, g.size, g.perms.writable()))
            .collect();
        m.processes.push(ProcessSpace {
            name: p.name.get_ref().clone(),
            space,
            first_page,
            unpopulated,
            faulted: Vec::new(),
        });
    }
    Ok(cpu)
}

pub(crate) fn device_ref<'m>(
    m: &'m Machine,
    source: &Source,
    name: &toml::Spanned<String>,
    field: &str,
) -> Result<&'m DeviceId, ScenarioError> {
    m.device(name.get_ref()).ok_or_else(|| {
        let known: Vec<&str> = m.devices.iter().map(|(n, _)| n.as_str()).collect();
        source.error(
            name.span(),
            field,
            format!("no device `{}` (devices: {})", name.get_ref(), known.join(", ")),
        )
    })
}

fn domains(
    m: &mut Machine,
    s: &Scenario,
    source: &Source,
    data: &mut DataPages,
    policy: Option<Invalidation>,
) -> Result<(), ScenarioError> {
    for d in &s.domains {
        let flush = match (policy, d.flush) {
            (Some(Invalidation::Strict), _) | (None, Flush::Strict) => FlushPolicy::Strict,
            (Some(Invalidation::Batched), _) | (None, Flush::Lazy) => {
                FlushPolicy::FlushQueue { batch: LAZY_BATCH }
            }
        };
        let paging = DomainKind::Paging { nesting_parent: false, flush };
        let name = d.name.get_ref().clone();
        let refused = |e: sviommu_core::CoreError| {
            source.error(d.name.span(), "domain", format!("the IOMMU API refused: {e}"))
        };
        let id = m.iommu().alloc_domain(UNIT, paging).map_err(refused)?;
        for mp in &d.map {
            let g = mp.get_ref();
            check_page(source, mp.span(), "domain.map", g.iova, g.size)?;
            let hpa =
                data.take(&m.mem, g.size).map_err(|e| source.error(mp.span(), "domain.map", e))?;
            m.iommu().map(id, g.iova, hpa, g.size, g.perms.writable()).map_err(|e| {
                source.error(mp.span(), "domain.map", format!("the IOMMU API refused: {e}"))
            })?;
        }
        let mut named = Vec::new();
        for a in &d.attach {
            let dev = device_ref(m, source, a, "domain.attach")?.clone();
            m.iommu().attach(id, &Target::Device(dev)).map_err(|e| {
                source.error(a.span(), "domain.attach", format!("the IOMMU API refused: {e}"))
            })?;
            named.push(a.get_ref().clone());
        }
        m.domains.push(DomainRecord { name, id, named });
    }
    Ok(())
}

fn binds(m: &mut Machine, s: &Scenario, source: &Source) -> Result<(), ScenarioError> {
    for b in &s.binds {
        bind(m, source, b, "bind")?;
    }
    Ok(())
}

/// The process and device a bind or unbind names.
fn bind_parties(
    m: &Machine,
    source: &Source,
    b: &Bind,
    field: &str,
) -> Result<(AddressSpace, DeviceId), ScenarioError> {
    let space =
        m.processes.iter().find(|p| p.name == *b.process.get_ref()).map(|p| p.space).ok_or_else(
            || {
                source.error(
                    b.process.span(),
                    &format!("{field}.process"),
                    format!("no process `{}`", b.process.get_ref()),
                )
            },
        )?;
    let dev = device_ref(m, source, &b.device, &format!("{field}.device"))?.clone();
    Ok((space, dev))
}

/// `sva_bind` of `b`, recorded in the machine.
fn bind(m: &mut Machine, source: &Source, b: &Bind, field: &str) -> Result<Pasid, ScenarioError> {
    let (space, dev) = bind_parties(m, source, b, field)?;
    let pasid = m.iommu().sva_bind(&Target::Device(dev), &space).map_err(|e| {
        source.error(b.device.span(), field, format!("the IOMMU API refused sva_bind: {e}"))
    })?;
    m.binds.push(BindRecord {
        process: b.process.get_ref().clone(),
        device: b.device.get_ref().clone(),
        pasid,
    });
    Ok(pasid)
}

/// Every device name in a scenario, checked against its devices (`all` expands).
pub fn select_devices(
    m: &Machine,
    source: &Source,
    names: &[toml::Spanned<String>],
) -> Result<Vec<(String, DeviceId)>, ScenarioError> {
    if names.len() == 1 && names.first().is_some_and(|n| n.get_ref() == "all") {
        return Ok(m.devices.clone());
    }
    names
        .iter()
        .map(|n| Ok((n.get_ref().clone(), device_ref(m, source, n, "dma.devices")?.clone())))
        .collect()
}

/// Scenario names by device, for reports.
pub fn names(m: &Machine) -> BTreeMap<DeviceId, String> {
    m.devices.iter().map(|(n, d)| (d.clone(), n.clone())).collect()
}

fn guests(m: &mut Machine, s: &Scenario, source: &Source) -> Result<(), ScenarioError> {
    let mut ram_pool = FrameAllocator::new(&[(Hpa(GUESTS.start), GUESTS.end - GUESTS.start)]);
    let mut seen = Vec::new();
    for (gi, g) in s.guests.iter().enumerate() {
        unique(source, &mut seen, &g.name, "guest.name")?;
        let mib = *g.ram_mib.get_ref();
        if !mib.is_power_of_two() || mib > 64 {
            return Err(source.error(
                g.ram_mib.span(),
                "guest.ram_mib",
                "a power of two from 1 to 64",
            ));
        }
        let bytes = u64::from(mib) << 20;
        let lg2 = u8::try_from(bytes.trailing_zeros()).unwrap_or(u8::MAX);
        let hpa = ram_pool.alloc(&*m.mem, lg2).map_err(|e| {
            source.error(
                g.name.span(),
                "guest.ram_mib",
                format!("no host memory left for guests: {e}"),
            )
        })?;
        let ram = GuestRamRegion { gpa: Gpa(0), len_bytes: bytes, hpa };
        let refused = |span: Range<usize>, field: &str, e: sviommu_core::CoreError| {
            source.error(span, field, format!("the IOMMU API refused: {e}"))
        };
        let mut devices = Vec::new();
        for d in &g.devices {
            device_ref(m, source, d, "guest.devices")?;
            devices.push(d.get_ref().clone());
        }
        // With a vIOMMU the guest's driver takes the upper half of its RAM for its structures.
        let process_ram = if g.viommu { bytes / 2 } else { bytes };
        let (parent, mut vguest) = if g.viommu {
            let mut assigned = Vec::new();
            for (i, d) in g.devices.iter().enumerate() {
                let dev = device_ref(m, source, d, "guest.devices")?.clone();
                assigned.push((dev, guest_id(source, d, i)?));
            }
            let vmm_va = VMM_VA + (hpa.0 - GUESTS.start);
            let v = crate::vguest::bring_up(
                &m.fd,
                m.arch,
                vmm_va,
                ram,
                &assigned,
                (process_ram, bytes - process_ram),
            )
            .map_err(|e| source.error(g.name.span(), "guest.viommu", e))?;
            (v.stage2, Some(v))
        } else {
            (host_stage2(m, source, g, hpa.0, bytes, &refused)?, None)
        };
        // The guest's side: its page tables and pages in its own RAM.
        let gram = GuestRam::new(Arc::clone(&m.mem), vec![ram]);
        let mut galloc = FrameAllocator::new(&[(Gpa(0), process_ram)]);
        let mut processes = Vec::new();
        let mut pseen = Vec::new();
        for p in &g.processes {
            unique(source, &mut pseen, &p.name, "guest.process.name")?;
            let pages = process_pages(source, p, "guest.process.pages", |len| {
                let lg2 = u8::try_from(len.next_power_of_two().trailing_zeros()).unwrap_or(u8::MAX);
                galloc.alloc(&gram, lg2.max(PAGE_LG2)).map(|a| a.0).map_err(|e| e.to_string())
            })?;
            let (format, root) = stage1_tables(m.arch, &gram, &mut galloc, &pages)
                .map_err(|e| source.error(p.name.span(), "guest.process", e))?;
            let id = AddressSpaceId(
                u32::try_from(1000 * (gi + 1) + processes.len()).unwrap_or(u32::MAX),
            );
            // The guest's own ASIDs; the host tags them with the stage-2 domain's VMID / DID.
            // With a vIOMMU its driver takes the lowest ones for the devices' DMA domains.
            let taken = if g.viommu { g.devices.len() } else { 0 };
            let asid = u16::try_from(1 + taken + processes.len()).unwrap_or(u16::MAX);
            let space = AddressSpace { id, s1: Stage1Config { format, root, asid } };
            if let Some(page) = p.pages.iter().find(|g| !g.get_ref().populated) {
                // The guest's page requests go to its vIOMMU, whose page request path the
                // guest kernel here does not run.
                return Err(source.error(
                    page.span(),
                    "guest.process.pages",
                    "a guest's process has every page populated (no `populated = false`)",
                ));
            }
            let first_page = pages.first().map(|&(va, gpa, _)| (va, hpa.0 + gpa));
            let unpopulated = Vec::new();
            processes.push(ProcessSpace {
                name: p.name.get_ref().clone(),
                space,
                first_page,
                unpopulated,
                faulted: Vec::new(),
            });
        }
        let dma = dma_domains(m, source, g, vguest.as_mut(), |len| {
            let lg2 = u8::try_from(len.next_power_of_two().trailing_zeros()).unwrap_or(u8::MAX);
            galloc.alloc(&gram, lg2.max(PAGE_LG2)).map(|a| a.0).map_err(|e| e.to_string())
        })?;
        let mut binds = Vec::new();
        for b in &g.binds {
            let p = processes.iter().find(|p| p.name == *b.process.get_ref()).ok_or_else(|| {
                source.error(
                    b.process.span(),
                    "guest.bind.process",
                    format!("no process `{}` in this guest", b.process.get_ref()),
                )
            })?;
            if !devices.contains(b.device.get_ref()) {
                return Err(source.error(
                    b.device.span(),
                    "guest.bind.device",
                    format!("`{}` is not assigned to this guest", b.device.get_ref()),
                ));
            }
            let dev = device_ref(m, source, &b.device, "guest.bind.device")?.clone();
            let pasid = Pasid(*b.pasid.get_ref());
            let nested = if let Some(v) = vguest.as_mut() {
                let index = devices.iter().position(|n| n == b.device.get_ref()).unwrap_or(0);
                let vid = guest_id(source, &b.device, index)?;
                v.bind(&m.fd, vid, pasid.0, &p.space.s1).map_err(|e| {
                    source.error(b.pasid.span(), "guest.bind", format!("the guest's driver: {e}"))
                })?
            } else {
                let nested = m
                    .iommu()
                    .alloc_domain(UNIT, DomainKind::Nested { parent, s1: p.space.s1 })
                    .map_err(|e| refused(b.process.span(), "guest.bind", e))?;
                m.iommu()
                    .attach_pasid(nested, &Target::Device(dev), pasid)
                    .map_err(|e| refused(b.pasid.span(), "guest.bind.pasid", e))?;
                Some(nested)
            };
            binds.push((p.name.clone(), b.device.get_ref().clone(), pasid, nested));
        }
        m.guests.push(GuestRecord {
            name: g.name.get_ref().clone(),
            ram,
            stage2: parent,
            devices,
            processes,
            binds,
            viommu: vguest,
            dma,
        });
    }
    Ok(())
}

/// The guest kernel's default DMA domain for each device assigned to a guest with a vIOMMU,
/// with the scenario's `dma_map` in it on pages `take` gives (guest-physical); nothing
/// without a vIOMMU, where a `dma_map` is refused.
fn dma_domains(
    m: &Machine,
    source: &Source,
    g: &crate::scenario::Guest,
    vguest: Option<&mut crate::vguest::VGuest>,
    mut take: impl FnMut(u64) -> Result<u64, String>,
) -> Result<Vec<GuestDmaDomain>, ScenarioError> {
    let field = "guest.dma_map";
    let Some(v) = vguest else {
        return match g.dma_map.first() {
            Some(mp) => Err(source.error(
                mp.span(),
                field,
                "a guest without a vIOMMU has no DMA domains: its devices send guest-physical \
                 addresses (set `viommu = true`)",
            )),
            None => Ok(Vec::new()),
        };
    };
    for mp in &g.dma_map {
        check_page(source, mp.span(), field, mp.get_ref().iova, mp.get_ref().size)?;
    }
    let mut out = Vec::new();
    for (i, d) in g.devices.iter().enumerate() {
        let mut pages = Vec::new();
        for mp in &g.dma_map {
            let map = mp.get_ref();
            let base = take(map.size).map_err(|e| source.error(mp.span(), field, e))?;
            for off in (0..map.size).step_by(1 << PAGE_LG2) {
                pages.push((map.iova + off, base + off, map.perms.writable()));
            }
        }
        let vid = guest_id(source, d, i)?;
        let domain = v.dma_domain(&m.fd, vid, &pages).map_err(|e| {
            source.error(d.span(), "guest.devices", format!("the guest's DMA domain: {e}"))
        })?;
        out.push(GuestDmaDomain { device: d.get_ref().clone(), domain, pages });
    }
    Ok(out)
}

/// The host's side of a guest without a vIOMMU, as a VMM does it: a stage-2 domain mapping
/// all of guest RAM, to which the assigned devices are attached and over which guest stage 1s
/// nest.
fn host_stage2(
    m: &mut Machine,
    source: &Source,
    g: &crate::scenario::Guest,
    hpa: u64,
    bytes: u64,
    refused: &dyn Fn(Range<usize>, &str, sviommu_core::CoreError) -> ScenarioError,
) -> Result<DomainId, ScenarioError> {
    let parent = m
        .iommu()
        .alloc_domain(UNIT, DomainKind::Paging { nesting_parent: true, flush: FlushPolicy::Strict })
        .map_err(|e| refused(g.name.span(), "guest", e))?;
    m.iommu()
        .map(parent, 0, hpa, bytes, true)
        .map_err(|e| refused(g.name.span(), "guest.ram_mib", e))?;
    for d in &g.devices {
        let dev = device_ref(m, source, d, "guest.devices")?.clone();
        m.iommu()
            .attach(parent, &Target::Device(dev))
            .map_err(|e| refused(d.span(), "guest.devices", e))?;
    }
    Ok(parent)
}

/// The ID a guest knows its `index`th assigned device by, its requester ID on VT-d and its
/// StreamID on SMMUv3: the VMM puts the devices on the guest's bus 0 from `00:03.0` up, so the
/// IDs fit the vIOMMU's 8-bit StreamIDs.
fn guest_id(
    source: &Source,
    name: &toml::Spanned<String>,
    index: usize,
) -> Result<u32, ScenarioError> {
    u32::try_from(index)
        .ok()
        .filter(|&i| i < 29)
        .map(|i| (3 + i) << 3)
        .ok_or_else(|| source.error(name.span(), "guest.devices", "at most 29 devices per guest"))
}

/// A domain by scenario name.
fn domain_ref(
    m: &Machine,
    source: &Source,
    name: &toml::Spanned<String>,
    field: &str,
) -> Result<DomainId, ScenarioError> {
    m.domains.iter().find(|d| d.name == *name.get_ref()).map(|d| d.id).ok_or_else(|| {
        let known: Vec<&str> = m.domains.iter().map(|d| d.name.as_str()).collect();
        source.error(
            name.span(),
            field,
            format!("no domain `{}` (domains: {})", name.get_ref(), known.join(", ")),
        )
    })
}

/// Carries out a step that is a host action (not DMA); returns what it did, for the report.
pub fn act(
    m: &mut Machine,
    source: &Source,
    pool: &mut DataPool,
    step: &toml::Spanned<Step>,
) -> Result<Option<String>, ScenarioError> {
    let s = step.get_ref();
    let refused = |field: &str, e: sviommu_core::CoreError| {
        source.error(step.span(), field, format!("the IOMMU API refused: {e}"))
    };
    let range = |r: &DomainRange, field: &str| -> Result<DomainId, ScenarioError> {
        check_page(source, step.span(), field, r.iova, r.size)?;
        domain_ref(m, source, &r.domain, field)
    };
    if let Some(u) = &s.guest_unmap {
        return guest_unmap(m, source, step.span(), u).map(Some);
    }
    if let Some(r) = &s.map {
        let d = range(r, "step.map")?;
        let hpa =
            pool.0.take(&m.mem, r.size).map_err(|e| source.error(step.span(), "step.map", e))?;
        m.iommu()
            .map(d, r.iova, hpa, r.size, r.perms.writable())
            .map_err(|e| refused("step.map", e))?;
        return Ok(Some(format!(
            "map {} {:#x}+{:#x} -> {hpa:#x}",
            r.domain.get_ref(),
            r.iova,
            r.size
        )));
    }
    if let Some(r) = &s.unmap {
        let d = range(r, "step.unmap")?;
        let bytes = m.iommu().unmap(d, r.iova, r.size).map_err(|e| refused("step.unmap", e))?;
        // The IOMMU API removes whole mappings only, as Linux's iommu_unmap does: a range that
        // covers none, or part of one, removes less than asked, and the run must not go on as
        // if the pages were gone.
        if bytes != r.size {
            return Err(source.error(
                step.span(),
                "step.unmap",
                format!(
                    "unmapped {bytes:#x} of the {:#x} bytes asked: the range must cover whole \
                     mappings made by `map` steps",
                    r.size
                ),
            ));
        }
        let queued = m.iommu().domain(d).map(|x| !x.pending_flush().is_empty()).unwrap_or(false);
        let note = if queued { ", invalidation queued (lazy)" } else { " (invalidated)" };
        return Ok(Some(format!("unmap {} {:#x}+{bytes:#x}{note}", r.domain.get_ref(), r.iova)));
    }
    if let Some(name) = &s.flush {
        let d = domain_ref(m, source, name, "step.flush")?;
        m.iommu().flush(d).map_err(|e| refused("step.flush", e))?;
        return Ok(Some(format!("flush {}", name.get_ref())));
    }
    if let Some(inv) = &s.invalidate {
        let d = domain_ref(m, source, &inv.domain, "step.invalidate")?;
        let (granularity, what) = match inv.iova {
            None => (Granularity::Domain, "everything".to_owned()),
            Some(iova) => {
                let size = inv.size.unwrap_or(1 << PAGE_LG2);
                check_page(source, step.span(), "step.invalidate", iova, size)?;
                let end = iova.checked_add(size).ok_or_else(|| {
                    source.error(step.span(), "step.invalidate.size", "the range passes 2^64")
                })?;
                (
                    Granularity::Addr { range: iova..end, leaf: false },
                    format!("{iova:#x}+{size:#x}"),
                )
            }
        };
        let info =
            InvalidateInfo { cache: CacheKind::Iotlb, granularity, pasid: None, arch_id: None };
        m.iommu()
            .invalidate(&Target::Domain(d), &info)
            .map_err(|e| refused("step.invalidate", e))?;
        return Ok(Some(format!("invalidate {} {what}", inv.domain.get_ref())));
    }
    if let Some(b) = &s.bind {
        let pasid = bind(m, source, b, "step.bind")?;
        return Ok(Some(format!(
            "sva_bind({}, {}) -> PASID {}",
            b.device.get_ref(),
            b.process.get_ref(),
            pasid.0
        )));
    }
    if let Some(b) = &s.unbind {
        let (space, dev) = bind_parties(m, source, b, "step.unbind")?;
        m.iommu().sva_unbind(&dev, space.id).map_err(|e| refused("step.unbind", e))?;
        let (p, d) = (b.process.get_ref(), b.device.get_ref());
        m.binds.retain(|r| !(r.process == *p && r.device == *d));
        return Ok(Some(format!("sva_unbind({d}, {p})")));
    }
    Ok(None)
}

/// Checks that every step has exactly one key.
pub fn check_steps(s: &Scenario, source: &Source) -> Result<(), ScenarioError> {
    for step in &s.steps {
        let st = step.get_ref();
        let n = [
            st.dma.is_some(),
            st.map.is_some(),
            st.unmap.is_some(),
            st.flush.is_some(),
            st.stream.is_some(),
            st.invalidate.is_some(),
            st.bind.is_some(),
            st.unbind.is_some(),
            st.ats.is_some(),
            st.guest_unmap.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n != 1 {
            return Err(source.error(
                step.span(),
                "step",
                "a step is exactly one of `dma`, `stream`, `ats`, `map`, `unmap`, `flush`, `invalidate`, `bind`, `unbind`, `guest_unmap`",
            ));
        }
        if let Some(s) = &st.stream {
            crate::stream::check(source, s)?;
        }
    }
    Ok(())
}

//! Scenario files: a system, what is set up on it, and the DMA its devices issue, as TOML.
//!
//! A scenario describes one machine in architecture-neutral terms (a PCI hierarchy, processes,
//! domains, binds, DMA) and names the IOMMU architectures to build it on; `run` builds it once
//! per architecture through the IOMMU API. Every field is checked when the file is read: an
//! unknown field, a name that names nothing, a BDF that does not parse is an error that gives
//! the file, line, column and field, and nothing runs.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

pub use crate::stream::StreamKind;

/// A whole scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One line saying what the scenario shows.
    pub title: String,
    /// The IOMMU architectures to build the system on, each separately.
    #[serde(default = "both_architectures")]
    pub architectures: Vec<Arch>,
    /// SMMUv3 driver options.
    #[serde(default)]
    pub smmuv3: SmmuOptions,
    /// The IOMMU unit of each architecture: cache sizes and capability caps (the model's
    /// defaults where absent).
    #[serde(default, rename = "unit")]
    pub units: Vec<Spanned<Unit>>,
    /// Root buses (segment 0 bus 0 when none is given).
    #[serde(default, rename = "root_bus")]
    pub root_buses: Vec<RootBus>,
    /// Ports and bridges, each providing a bus.
    #[serde(default, rename = "port")]
    pub ports: Vec<Port>,
    /// Devices that issue DMA.
    #[serde(default, rename = "device")]
    pub devices: Vec<Device>,
    /// Process address spaces.
    #[serde(default, rename = "process")]
    pub processes: Vec<Process>,
    /// Paging domains.
    #[serde(default, rename = "domain")]
    pub domains: Vec<Domain>,
    /// Processes bound to devices with `sva_bind`.
    #[serde(default, rename = "bind")]
    pub binds: Vec<Bind>,
    /// Guests: virtual machines with assigned devices whose processes' tables nest over the
    /// host's stage 2.
    #[serde(default, rename = "guest")]
    pub guests: Vec<Guest>,
    /// What happens, in order: DMA, and changes the host makes between them.
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<Step>>,
}

/// One step: exactly one of its keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Devices send DMA.
    pub dma: Option<Dma>,
    /// The host maps more of a domain.
    pub map: Option<DomainRange>,
    /// The host unmaps part of a domain (invalidating as the domain's flush policy says).
    pub unmap: Option<DomainRange>,
    /// The host invalidates what a lazy domain's flush queue holds.
    pub flush: Option<Spanned<String>>,
    /// A device sends a generated stream of DMA, reported as one aggregate row.
    pub stream: Option<Stream>,
    /// The host invalidates a domain's translations (all of them, or a range) through the
    /// IOMMU API's `invalidate`.
    pub invalidate: Option<Invalidate>,
    /// The host binds a process to a device with `sva_bind`.
    pub bind: Option<Bind>,
    /// The host unbinds a process from a device with `sva_unbind`.
    pub unbind: Option<Bind>,
    /// A device with ATS and PRI asks the unit to translate addresses (ATS translation
    /// requests); a page that is not there makes it send a page request and, once the host
    /// answered Success, ask again.
    pub ats: Option<Ats>,
    /// A guest with a vIOMMU unmaps pages from one of its processes and (unless it forgets)
    /// invalidates them through its own driver and vIOMMU.
    pub guest_unmap: Option<GuestUnmap>,
}

/// A `guest_unmap` step.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestUnmap {
    /// The guest (it needs `viommu = true`).
    pub guest: Spanned<String>,
    /// Its process.
    pub process: Spanned<String>,
    /// First virtual address (4K-aligned).
    pub va: u64,
    /// Bytes (a multiple of 4K).
    #[serde(default = "page_bytes")]
    pub size: u64,
    /// The guest's driver invalidates the range through its vIOMMU (the default); `false` is a
    /// guest that forgets, so its device keeps the stale translation.
    #[serde(default = "yes")]
    pub invalidate: bool,
}

/// An `ats` step: one device's translation requests, each followed by a page request and a
/// retry when the answer grants no access (see [`crate::ats`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ats {
    /// The device (it needs `ats` and `pri`).
    pub device: Spanned<String>,
    /// The PASID of its requests (a bound process's); none when absent.
    pub pasid: Option<Spanned<u32>>,
    /// The addresses it asks for, in order.
    pub addrs: Vec<u64>,
    /// Read, or write (a translation request without No Write).
    #[serde(default)]
    pub access: AccessKind,
}

/// An `invalidate` step: a domain's IOTLB entries, all or a range.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invalidate {
    /// The domain (every group attached to it is reached).
    pub domain: Spanned<String>,
    /// First IOVA of a range (4K-aligned); the whole domain when absent.
    pub iova: Option<u64>,
    /// Bytes of the range (a multiple of 4K; one page when absent).
    pub size: Option<u64>,
}

/// One architecture's IOMMU unit: the sizes of its caches in entries (0: the unit has no such
/// cache) and caps on what it advertises. Each cache a field names:
///
/// | field | VT-d | SMMUv3 |
/// |---|---|---|
/// | `context_cache` | context cache | STE cache |
/// | `pasid_cache` | PASID cache | CD cache |
/// | `iotlb` | IOTLB | TLB |
/// | `walk_cache` | first- and second-stage paging-structure caches | stage-1 and stage-2 walk caches |
/// | `leaf_cache` | second-stage leaf cache | stage-2 leaf cache |
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    /// Which architecture's unit this is.
    pub arch: Arch,
    /// Configuration cache entries.
    pub context_cache: Option<Spanned<usize>>,
    /// PASID (CD) cache entries.
    pub pasid_cache: Option<Spanned<usize>>,
    /// IOTLB entries.
    pub iotlb: Option<Spanned<usize>>,
    /// Paging-structure (walk) cache entries, each stage.
    pub walk_cache: Option<Spanned<usize>>,
    /// Stage-2 leaf cache entries.
    pub leaf_cache: Option<Spanned<usize>>,
    /// The PASID (SubstreamID) width the unit advertises, in bits (1 to 20): VT-d ECAP.PSS + 1,
    /// SMMUv3 SMMU_IDR1.SSIDSIZE.
    pub pasid_bits: Option<u8>,
    /// VT-d CAP.SAGAW: the second-stage address widths the unit supports, of 39 (3-level), 48
    /// (4-level) and 57 (5-level); the driver uses the widest.
    pub sagaw: Option<Spanned<Vec<u8>>>,
    /// VT-d ECAP.FSTS: first-stage translation (what SVA binds and guests' PASIDs need).
    pub first_stage: Option<Spanned<bool>>,
    /// VT-d CAP.CM: caching mode (not-present entries may be cached).
    pub caching_mode: Option<Spanned<bool>>,
    /// SMMUv3 SMMU_IDR0.S1P / S2P: the stages the unit has, of `s1` and `s2`.
    pub stages: Option<Spanned<Vec<String>>>,
    /// SMMUv3 SMMU_IDR5.OAS: the output address size in bits (32, 36, 40, 42, 44, 48 or 52).
    pub oas_bits: Option<Spanned<u8>>,
    /// SMMUv3 SMMU_IDR5.GRAN4K / 16K / 64K: the translation granules, in KiB (4, 16, 64).
    pub granules: Option<Spanned<Vec<u8>>>,
    /// The model's behaviour profile: `forgiving` (the default), `strict` (invalidations take
    /// effect at their CMD_SYNC / wait descriptor and remove only what they select) or
    /// `strict:SEED` (each at a seeded point before it).
    pub profile: Option<Spanned<String>>,
    /// How the unit's devices answer its ATS invalidations (VT-d device-TLB invalidations,
    /// SMMUv3 CMD_ATC_INV): `immediate` (the default), `after:TICKS` or `never`, in ticks of
    /// the unit's clock (one per register read its driver makes); late past the time-out,
    /// the unit reports ITE / CERROR_ATC_INV_SYNC and the driver recovers or gives up.
    pub ats_completion: Option<Spanned<String>>,
    /// Ticks the unit waits for an ATS invalidation completion before it reports a time-out.
    pub ats_timeout_ticks: Option<Spanned<u32>>,
}

/// A generated DMA stream: `count` requests from one device over `pages` 4K pages from `base`
/// (see [`crate::stream`] for how each kind picks its pages).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    /// The device that sends it.
    pub device: Spanned<String>,
    /// Its PASID (SubstreamID); none when absent.
    pub pasid: Option<Spanned<u32>>,
    /// How pages are chosen.
    pub kind: Spanned<StreamKind>,
    /// First input address (4K-aligned).
    pub base: Spanned<u64>,
    /// Pages covered, from `base`.
    pub pages: Spanned<u64>,
    /// Requests sent.
    pub count: Spanned<u64>,
    /// Seed of the random kinds (`uniform`, `zipf`); refused for the others.
    pub seed: Option<Spanned<u64>>,
    /// Step in pages, for `strided` only.
    pub stride: Option<Spanned<u64>>,
    /// Zipf exponent, for `zipf` only (1.0 when absent).
    pub exponent: Option<Spanned<f64>>,
    /// Read or write.
    #[serde(default)]
    pub access: AccessKind,
}

/// A range of a domain's IOVAs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainRange {
    /// The domain.
    pub domain: Spanned<String>,
    /// First IOVA (4K-aligned).
    pub iova: u64,
    /// Bytes (a multiple of 4K).
    #[serde(default = "page_bytes")]
    pub size: u64,
    /// Access, for a map.
    #[serde(default)]
    pub perms: Perms,
}

fn both_architectures() -> Vec<Arch> {
    vec![Arch::Vtd, Arch::Smmuv3]
}

/// An IOMMU architecture.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Intel VT-d in scalable mode: x86-64 first-stage tables for processes, second-stage
    /// tables for paging domains.
    #[default]
    Vtd,
    /// Arm SMMUv3: VMSAv8-64 stage 1 for processes and paging domains.
    Smmuv3,
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Vtd => "vtd",
            Self::Smmuv3 => "smmuv3",
        })
    }
}

/// How the SMMUv3 driver lays out CD tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmmuOptions {
    /// One CD table per domain (the seed's driver) or per device (Linux since 2023).
    #[serde(default)]
    pub cd_tables: CdTables,
}

/// The SMMUv3 driver's CD table policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CdTables {
    /// Shared by every device attached to a domain.
    #[default]
    PerDomain,
    /// One per device.
    PerDevice,
}

/// A root bus.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootBus {
    /// PCI segment.
    #[serde(default)]
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
}

/// A port or bridge: something that provides a bus.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Where it is, `bus:device.function`.
    pub bdf: Spanned<String>,
    /// What it is.
    pub kind: PortKind,
    /// The bus it provides.
    pub secondary_bus: u8,
    /// ACS controls it implements and enables: flag names (`SV`, `TB`, `RR`, `CR`, `UF`, `EC`,
    /// `DT`) or `isolated` (what Linux needs: SV, RR, CR, UF). None when absent.
    #[serde(default)]
    pub acs: Vec<Spanned<String>>,
}

/// The kinds of port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    /// A root port on a root bus.
    Root,
    /// A switch's upstream port; its secondary bus is the switch's internal bus.
    SwitchUpstream,
    /// A switch's downstream port.
    SwitchDownstream,
    /// A PCIe-to-PCI bridge.
    PcieToPciBridge,
    /// A conventional PCI-to-PCI bridge.
    PciBridge,
}

/// A PCI function that issues DMA.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The name the rest of the scenario uses.
    pub name: Spanned<String>,
    /// Where it is, `bus:device.function`.
    pub bdf: Spanned<String>,
    /// PASID capability width in bits (no PASID capability when absent).
    pub pasid_bits: Option<Spanned<u8>>,
    /// ATS capability.
    #[serde(default)]
    pub ats: bool,
    /// PRI capability.
    #[serde(default)]
    pub pri: bool,
    /// A DMA alias quirk: the function also sends requests as `device.function` on its bus.
    pub dma_alias: Option<Spanned<String>>,
    /// ACS controls of the function itself (see [`Port::acs`]).
    #[serde(default)]
    pub acs: Vec<Spanned<String>>,
}

/// Read-only or read-write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Perms {
    /// Read only.
    R,
    /// Read and write.
    #[default]
    Rw,
}

impl Perms {
    /// Whether writes are allowed.
    pub fn writable(self) -> bool {
        self == Self::Rw
    }
}

/// A process: a CPU page table the scenario fills.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// The name the rest of the scenario uses.
    pub name: Spanned<String>,
    /// Its mapped pages, each backed by fresh host memory.
    #[serde(default)]
    pub pages: Vec<Spanned<Page>>,
}

/// A virtual machine: RAM the host maps with a stage-2 (nesting parent) domain, devices
/// assigned to it, and processes whose page tables the guest builds in its own RAM.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    /// The name the report uses.
    pub name: Spanned<String>,
    /// RAM in MiB, from guest-physical address 0 (a power of two, 1 to 64).
    #[serde(default = "guest_ram_mib")]
    pub ram_mib: Spanned<u32>,
    /// Devices assigned to the guest: attached to its stage-2 domain.
    #[serde(default)]
    pub devices: Vec<Spanned<String>>,
    /// Processes of the guest; their pages are guest RAM.
    #[serde(default, rename = "process")]
    pub processes: Vec<Process>,
    /// PASIDs the guest gives its processes on its devices: each a nested domain (the guest's
    /// stage 1 over the host's stage 2) attached to (device, PASID), as the host does it for a
    /// guest's vIOMMU.
    #[serde(default, rename = "bind")]
    pub binds: Vec<GuestBind>,
    /// The guest kernel's DMA API mappings (needs `viommu = true`): with a vIOMMU every
    /// assigned device gets a default DMA domain of the guest's driver, as Linux gives each
    /// device behind an IOMMU, used by its requests without PASID; these IOVAs are mapped in
    /// each device's domain, each device's onto fresh pages of guest RAM. Without a vIOMMU a
    /// device's requests carry guest-physical addresses, and there is nothing to map.
    #[serde(default)]
    pub dma_map: Vec<Spanned<Mapping>>,
    /// The guest has a vIOMMU of the host's architecture (`VVtd` or `VSmmu`): its own driver
    /// binds its processes through it, and the vIOMMU forwards to the host through the
    /// iommufd-shaped uapi. Without it the host nests each bind directly (`attach_pasid`).
    #[serde(default)]
    pub viommu: bool,
}

fn guest_ram_mib() -> Spanned<u32> {
    Spanned::new(0..0, 16)
}

/// A guest process's PASID on an assigned device.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestBind {
    /// The guest's process.
    pub process: Spanned<String>,
    /// The assigned device.
    pub device: Spanned<String>,
    /// The PASID the guest chose.
    pub pasid: Spanned<u32>,
}

/// Pages of a process.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// First virtual address (4K-aligned).
    pub va: u64,
    /// Bytes (a multiple of 4K).
    #[serde(default = "page_bytes")]
    pub size: u64,
    /// Access.
    #[serde(default)]
    pub perms: Perms,
    /// In the process's page tables from the start (the default). `false`: the process has
    /// the range (as an mmap that was never touched) but no page behind it until a device's
    /// page request makes the host fault it in, as an SVA host does.
    #[serde(default = "yes")]
    pub populated: bool,
}

fn yes() -> bool {
    true
}

fn page_bytes() -> u64 {
    0x1000
}

/// A paging domain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// The name the report uses.
    pub name: Spanned<String>,
    /// Devices to attach (each brings its whole IOMMU group).
    #[serde(default)]
    pub attach: Vec<Spanned<String>>,
    /// Mappings, each backed by fresh host memory.
    #[serde(default)]
    pub map: Vec<Spanned<Mapping>>,
    /// When unmapped IOVAs leave the IOTLB.
    #[serde(default)]
    pub flush: Flush,
}

/// A domain's invalidation policy (Linux `iommu.strict`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flush {
    /// Before an unmap returns.
    #[default]
    Strict,
    /// Queued, invalidated in batches of 16 ranges or by a `flush` step: until then the
    /// IOTLB may still hold unmapped pages.
    Lazy,
}

/// A domain mapping.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// First IOVA (4K-aligned).
    pub iova: u64,
    /// Bytes (a multiple of 4K).
    #[serde(default = "page_bytes")]
    pub size: u64,
    /// Access.
    #[serde(default)]
    pub perms: Perms,
}

/// `sva_bind(device, process)`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    /// The process.
    pub process: Spanned<String>,
    /// The device named in the call (its group, and on SMMUv3 perhaps its domain, come too).
    pub device: Spanned<String>,
}

/// A set of DMA requests: every named device, with every PASID selection, at every address.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dma {
    /// Device names, or `["all"]`.
    pub devices: Vec<Spanned<String>>,
    /// Which PASIDs each device sends: `none` (requests without PASID), `bound` (each PASID a
    /// bind returned), `all` (both), or a list of PASIDs.
    #[serde(default)]
    pub pasids: Pasids,
    /// Input addresses.
    pub addrs: Vec<u64>,
    /// Read or write.
    #[serde(default)]
    pub access: AccessKind,
}

/// Which PASIDs a DMA set uses: a choice, or a list.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "`none`, `bound`, `all` or a list of PASIDs")]
pub enum Pasids {
    /// `none`, `bound` or `all`.
    Choice(PasidChoice),
    /// These PASIDs.
    List(Vec<u32>),
}

impl Default for Pasids {
    fn default() -> Self {
        Self::Choice(PasidChoice::default())
    }
}

/// Which PASIDs a DMA set uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasidChoice {
    /// No PASID.
    None,
    /// Every PASID the binds returned.
    Bound,
    /// No PASID, then every bound PASID.
    #[default]
    All,
}

/// A DMA's direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessKind {
    /// A read.
    #[default]
    Read,
    /// A write.
    Write,
}

impl fmt::Display for AccessKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
        })
    }
}

/// Where a scenario came from, to name it in errors.
#[derive(Clone, Debug)]
pub struct Source {
    /// File name (or `<built-in>`).
    pub name: String,
    /// Its text.
    pub text: String,
}

impl Source {
    /// Line and column (both from 1) of byte `offset`.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    /// An error at `span`, about `field`.
    pub fn error(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ScenarioError {
        let (line, column) = self.line_column(span.start);
        ScenarioError::Invalid {
            file: self.name.clone(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// A scenario that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// Something in the file is wrong.
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
        /// The field (a TOML key path as the file writes it).
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// The built-in default scenario: the seed thread's picture.
pub const DEFAULT: &str = include_str!("../../../examples/seed.toml");

/// Parses `source`; names are checked when the machine is built, before anything runs.
pub fn parse(source: &Source) -> Result<Scenario, ScenarioError> {
    parse_toml(source)
}

/// Reads `source` as a `T` (a scenario, a replay configuration), a mistake named by its file,
/// line, column and key.
pub fn parse_toml<T: serde::de::DeserializeOwned>(source: &Source) -> Result<T, ScenarioError> {
    toml::from_str::<T>(&source.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        source.error(span.clone(), &source.key_path(span.start), e.message().trim_end())
    })
}

impl Source {
    /// The key at byte `offset` as the file writes it, under its table: `port.kind`.
    fn key_path(&self, offset: usize) -> String {
        let before = self.text.get(..offset).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text.get(line_start..).and_then(|t| t.lines().next()).unwrap_or_default();
        let key =
            line.split('=').next().map(str::trim).filter(|k| !k.is_empty() && !k.starts_with('['));
        // Inside an inline table (`stream = { kind = "zipff" }`), the inner key too.
        let inner = offset
            .checked_sub(line_start)
            .and_then(|n| line.get(..n))
            .filter(|head| head.contains('{'))
            .and_then(|head| inline_key(head, line.get(head.len()..).unwrap_or_default()));
        let key = match (key, inner) {
            (Some(k), Some(i)) => Some(format!("{k}.{i}")),
            (k, _) => k.map(str::to_owned),
        };
        let table = self
            .text
            .get(..line_start)
            .unwrap_or_default()
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']'));
        match (table, key) {
            (Some(t), Some(k)) => format!("{t}.{k}"),
            (None, Some(k)) => k,
            (Some(t), None) => t.to_owned(),
            (None, None) => "(file)".to_owned(),
        }
    }
}

/// The inline-table key an error at the end of `head` is about: the key starting there
/// (`tail` begins with `key =`), else the last key before it.
fn inline_key(head: &str, tail: &str) -> Option<String> {
    let is_key = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let here: String = tail.chars().take_while(|&c| is_key(c)).collect();
    if !here.is_empty() && tail.get(here.len()..).is_some_and(|t| t.trim_start().starts_with('=')) {
        return Some(here);
    }
    let inner = head.rsplit('{').next()?;
    let before_value = inner.get(..inner.rfind('=')?)?;
    let key = before_value.rsplit([',', '{']).next()?.trim();
    (!key.is_empty() && key.chars().all(is_key)).then(|| key.to_owned())
}

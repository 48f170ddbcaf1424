//! The driver-specific data of `IOMMU_HWPT_ALLOC` and `IOMMU_HWPT_INVALIDATE`, as the bytes a
//! VMM hands the kernel (little-endian structures of `include/uapi/linux/iommufd.h`), and
//! their checks.

use serde::Serialize;
use sviommu_smmuv3::spec::ste::{Eats, S1Fmt, StreamConfig};
use sviommu_smmuv3::spec::{Command, Opcode, Ste};

use crate::error::UapiError;

/// `enum iommu_hwpt_data_type`.
pub mod data_type {
    /// `IOMMU_HWPT_DATA_NONE`.
    pub const NONE: u32 = 0;
    /// `IOMMU_HWPT_DATA_VTD_S1`.
    pub const VTD_S1: u32 = 1;
    /// `IOMMU_HWPT_DATA_ARM_SMMUV3`.
    pub const ARM_SMMUV3: u32 = 2;
}

/// `enum iommu_hwpt_invalidate_data_type`.
pub mod invalidate_type {
    /// `IOMMU_HWPT_INVALIDATE_DATA_VTD_S1`.
    pub const VTD_S1: u32 = 0;
    /// `IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3`.
    pub const ARM_SMMUV3: u32 = 1;
}

/// `enum iommufd_hwpt_alloc_flags`.
pub mod hwpt_flags {
    /// `IOMMU_HWPT_ALLOC_NEST_PARENT`.
    pub const NEST_PARENT: u32 = 1 << 0;
    /// `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`.
    pub const DIRTY_TRACKING: u32 = 1 << 1;
    /// `IOMMU_HWPT_FAULT_ID_VALID`.
    pub const FAULT_ID_VALID: u32 = 1 << 2;
    /// `IOMMU_HWPT_ALLOC_PASID`.
    pub const PASID: u32 = 1 << 3;
}

/// `enum iommufd_ioas_map_flags`.
pub mod map_flags {
    /// `IOMMU_IOAS_MAP_FIXED_IOVA`.
    pub const FIXED_IOVA: u32 = 1 << 0;
    /// `IOMMU_IOAS_MAP_WRITEABLE`.
    pub const WRITEABLE: u32 = 1 << 1;
    /// `IOMMU_IOAS_MAP_READABLE`.
    pub const READABLE: u32 = 1 << 2;
}

/// `enum iommu_hwpt_vtd_s1_flags`.
pub mod vtd_s1_flags {
    /// `IOMMU_VTD_S1_SRE`: supervisor requests.
    pub const SRE: u64 = 1 << 0;
    /// `IOMMU_VTD_S1_EAFE`: extended accessed flag.
    pub const EAFE: u64 = 1 << 1;
    /// `IOMMU_VTD_S1_WPE`: write protect.
    pub const WPE: u64 = 1 << 2;
}

/// `IOMMU_VTD_INV_FLAGS_LEAF`.
pub const VTD_INV_FLAGS_LEAF: u32 = 1 << 0;

/// `enum iommu_viommu_type` / `enum iommu_veventq_type`: `IOMMU_VIOMMU_TYPE_ARM_SMMUV3` and
/// `IOMMU_VEVENTQ_TYPE_ARM_SMMUV3` (0 is the default type, which no driver takes here).
pub const TYPE_ARM_SMMUV3: u32 = 1;

/// Driver data as handed to `IOMMU_HWPT_ALLOC`: its type and its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HwptData {
    /// `data_type`.
    pub data_type: u32,
    /// The structure's bytes (`data_len` of them).
    pub bytes: Vec<u8>,
}

impl HwptData {
    /// `struct iommu_hwpt_vtd_s1 { flags, pgtbl_addr, addr_width, __reserved }`.
    pub fn vtd_s1(flags: u64, pgtbl_addr: u64, addr_width: u32) -> Self {
        let mut bytes = Vec::with_capacity(VTD_S1_BYTES);
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&pgtbl_addr.to_le_bytes());
        bytes.extend_from_slice(&addr_width.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        Self { data_type: data_type::VTD_S1, bytes }
    }

    /// `struct iommu_hwpt_arm_smmuv3 { ste[2] }`: the guest's STE words 0 and 1.
    pub fn arm_smmuv3(ste: [u64; 2]) -> Self {
        let mut bytes = Vec::with_capacity(SMMUV3_BYTES);
        for w in ste {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        Self { data_type: data_type::ARM_SMMUV3, bytes }
    }

    /// The same data cut to `len` bytes (or zero-padded to it).
    pub fn with_len(mut self, len: usize) -> Self {
        self.bytes.resize(len, 0);
        self
    }
}

const VTD_S1_BYTES: usize = 24;
const SMMUV3_BYTES: usize = 16;
const VTD_INV_BYTES: usize = 24;
const SMMU_CMD_BYTES: usize = 16;

/// `iommu_copy_struct_from_user()`: at least the structure's mandatory bytes; whatever follows
/// the known structure must be zero.
fn copy_struct(bytes: &[u8], known: usize) -> Result<&[u8], UapiError> {
    let known_part =
        bytes.get(..known).ok_or(UapiError::ShortData { len: bytes.len(), needs: known })?;
    if bytes.iter().skip(known).any(|&b| b != 0) {
        return Err(UapiError::TrailingData { known });
    }
    Ok(known_part)
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = bytes.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = bytes.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

/// A nested HWPT's data, decoded and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NestedData {
    /// VT-d: the guest's first-stage table.
    VtdS1 {
        /// SRE / EAFE / WPE.
        flags: u64,
        /// Guest physical address of the first-stage root.
        pgtbl_addr: u64,
        /// 48 (4-level) or 57 (5-level).
        addr_width: u32,
    },
    /// SMMUv3: the guest's STE words 0 and 1, as iommufd keeps them (EATS cleared).
    Smmuv3 {
        /// The words.
        ste: [u64; 2],
        /// The guest asked for ATS (EATS = full).
        ats: bool,
    },
}

/// `struct iommu_hwpt_vtd_s1`, checked as `intel_iommu_domain_alloc_nested()` and
/// `intel_pasid_setup_nested()` check it (the address width and the flags here, at
/// allocation).
pub(crate) fn decode_vtd_s1(data: &HwptData) -> Result<NestedData, UapiError> {
    let b = copy_struct(&data.bytes, VTD_S1_BYTES)?;
    let flags = le64(b, 0);
    let pgtbl_addr = le64(b, 8);
    let addr_width = le32(b, 16);
    let known = vtd_s1_flags::SRE | vtd_s1_flags::EAFE | vtd_s1_flags::WPE;
    if flags & !known != 0 {
        return Err(UapiError::Invalid {
            field: "flags",
            value: flags,
            why: "unknown VT-d stage-1 flags",
        });
    }
    if addr_width != 48 && addr_width != 57 {
        return Err(UapiError::Invalid {
            field: "addr_width",
            value: u64::from(addr_width),
            why: "a first stage is 48 (4-level) or 57 (5-level) bits wide",
        });
    }
    if pgtbl_addr % 4096 != 0 {
        return Err(UapiError::Invalid {
            field: "pgtbl_addr",
            value: pgtbl_addr,
            why: "not 4K aligned",
        });
    }
    Ok(NestedData::VtdS1 { flags, pgtbl_addr, addr_width })
}

/// The vSTE bits a guest may set (iommufd's `STRTAB_STE_{0,1}_NESTING_ALLOWED`): V, Config,
/// S1Fmt, S1ContextPtr, S1CDMax; S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS (IHI 0070 §5.2).
pub fn vste_allowed() -> [u64; 2] {
    let mut w = [0u64; 2];
    for f in [
        Ste::V,
        Ste::CONFIG,
        Ste::S1FMT,
        Ste::S1CONTEXTPTR,
        Ste::S1CDMAX,
        Ste::S1DSS,
        Ste::S1CIR,
        Ste::S1COR,
        Ste::S1CSH,
        Ste::S1STALLD,
        Ste::EATS,
    ] {
        f.set(&mut w, u64::MAX);
    }
    w
}

/// `struct iommu_hwpt_arm_smmuv3`, checked as `arm_smmu_validate_vste()` does: an invalid vSTE
/// is an abort; otherwise only the fields a guest may set, Config abort, bypass or stage 1, and
/// EATS abort or full ATS.
pub(crate) fn decode_smmuv3(data: &HwptData) -> Result<NestedData, UapiError> {
    let b = copy_struct(&data.bytes, SMMUV3_BYTES)?;
    let words = [le64(b, 0), le64(b, 8)];
    let mut full = Ste::default();
    full.0[0] = words[0];
    full.0[1] = words[1];
    if !full.v() {
        return Ok(NestedData::Smmuv3 { ste: [0, 0], ats: false });
    }
    let allowed = vste_allowed();
    if words[0] & !allowed[0] != 0 || words[1] & !allowed[1] != 0 {
        return Err(UapiError::BadVste("a field outside those a guest may set"));
    }
    let config = full.config().map_err(|_| UapiError::BadVste("a Reserved Config"))?;
    if !matches!(config, StreamConfig::Abort | StreamConfig::Bypass | StreamConfig::Stage1) {
        return Err(UapiError::BadVste("Config is not abort, bypass or stage 1"));
    }
    let eats = full.eats();
    if !matches!(eats, Eats::Abort | Eats::Full) {
        return Err(UapiError::BadVste("EATS is not abort or full ATS"));
    }
    let ats = config == StreamConfig::Stage1 && eats == Eats::Full;
    full.set_eats(Eats::Abort);
    Ok(NestedData::Smmuv3 { ste: [full.0[0], full.0[1]], ats })
}

/// What a vSTE asks the host to do with the device's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VsteConfig {
    /// Abort them (also an invalid vSTE).
    Abort,
    /// Stage 2 only (the parent).
    Bypass,
    /// The guest's CD table over the parent's stage 2.
    CdTable {
        /// S1ContextPtr (an IPA).
        base: u64,
        /// S1CDMax.
        cdmax: u8,
        /// S1Fmt.
        fmt: S1Fmt,
    },
}

/// The vSTE's configuration (only from words [`decode_smmuv3`] accepted).
pub(crate) fn vste_config(words: [u64; 2]) -> VsteConfig {
    let mut s = Ste::default();
    s.0[0] = words[0];
    s.0[1] = words[1];
    if !s.v() {
        return VsteConfig::Abort;
    }
    match s.config() {
        Ok(StreamConfig::Stage1) => VsteConfig::CdTable {
            base: s.s1contextptr(),
            cdmax: s.s1cdmax(),
            // §5.2: a Reserved S1Fmt behaves as linear.
            fmt: s.s1fmt().unwrap_or(S1Fmt::Linear),
        },
        Ok(StreamConfig::Bypass) => VsteConfig::Bypass,
        _ => VsteConfig::Abort,
    }
}

/// An invalidation array as handed to `IOMMU_HWPT_INVALIDATE`: its type, each entry's length
/// and the entries' bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvalidateArray {
    /// `data_type`.
    pub data_type: u32,
    /// `entry_len`.
    pub entry_len: u32,
    /// `entry_num * entry_len` bytes.
    pub bytes: Vec<u8>,
}

/// One `struct iommu_hwpt_vtd_s1_invalidate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdS1Invalidate {
    /// 4K-aligned start.
    pub addr: u64,
    /// 4K pages; `u64::MAX` with `addr == 0` is everything.
    pub npages: u64,
    /// `IOMMU_VTD_INV_FLAGS_LEAF`.
    pub flags: u32,
}

impl InvalidateArray {
    /// VT-d stage-1 entries.
    pub fn vtd_s1(entries: &[VtdS1Invalidate]) -> Self {
        let mut bytes = Vec::new();
        for e in entries {
            bytes.extend_from_slice(&e.addr.to_le_bytes());
            bytes.extend_from_slice(&e.npages.to_le_bytes());
            bytes.extend_from_slice(&e.flags.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
        }
        Self { data_type: invalidate_type::VTD_S1, entry_len: 24, bytes }
    }

    /// Raw SMMUv3 commands (`struct iommu_viommu_arm_smmuv3_invalidate`).
    pub fn arm_smmuv3(cmds: &[Command]) -> Self {
        let mut bytes = Vec::new();
        for c in cmds {
            for w in c.words() {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
        }
        Self { data_type: invalidate_type::ARM_SMMUV3, entry_len: 16, bytes }
    }

    /// The same entries with each one cut to, or zero-padded to, `entry_len` bytes. With 0
    /// the bytes stay: a caller passing entries of no length (which iommufd refuses).
    pub fn with_entry_len(&self, entry_len: u32) -> Self {
        if entry_len == 0 {
            return Self { data_type: self.data_type, entry_len, bytes: self.bytes.clone() };
        }
        let mut bytes = Vec::new();
        let old = usize::try_from(self.entry_len).unwrap_or(0);
        let new = usize::try_from(entry_len).unwrap_or(0);
        if old > 0 {
            for e in self.bytes.chunks(old) {
                let mut e = e.to_vec();
                e.resize(new, 0);
                bytes.extend_from_slice(&e);
            }
        }
        Self { data_type: self.data_type, entry_len, bytes }
    }

    /// How many entries (`entry_num`).
    pub fn entry_num(&self) -> u32 {
        match usize::try_from(self.entry_len) {
            Ok(0) | Err(_) => 0,
            Ok(n) => u32::try_from(self.bytes.len() / n).unwrap_or(u32::MAX),
        }
    }

    /// Entry `i`'s bytes, checked as `iommu_copy_struct_from_user_array()` checks them.
    fn entry(&self, i: u32, known: usize) -> Result<&[u8], UapiError> {
        let len = usize::try_from(self.entry_len).unwrap_or(usize::MAX);
        let at = usize::try_from(i).ok().and_then(|i| i.checked_mul(len)).unwrap_or(usize::MAX);
        let e = self.bytes.get(at..at.saturating_add(len)).unwrap_or(&[]);
        copy_struct(e, known)
    }

    pub(crate) fn vtd_entry(&self, i: u32) -> Result<(VtdS1Invalidate, u32), UapiError> {
        let b = self.entry(i, VTD_INV_BYTES)?;
        let e = VtdS1Invalidate { addr: le64(b, 0), npages: le64(b, 8), flags: le32(b, 16) };
        Ok((e, le32(b, 20)))
    }

    pub(crate) fn smmu_entry(&self, i: u32) -> Result<Command, UapiError> {
        let b = self.entry(i, SMMU_CMD_BYTES)?;
        Ok(Command::from_words([le64(b, 0), le64(b, 8)]))
    }
}

/// A guest command, converted: what the host does for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GuestCommand {
    /// Every stage-1 entry of the VM (TLBI_NSNH_ALL, TLBI_NH_ALL; TLBI_NH_VAA, which names no
    /// ASID, is widened to this).
    VmAll,
    /// One guest ASID.
    Asid(u16),
    /// A range of one guest ASID.
    Va {
        /// ASID.
        asid: u16,
        /// Range (4K aligned).
        range: std::ops::Range<u64>,
        /// Leaf only.
        leaf: bool,
    },
    /// A device's ATC.
    Atc {
        /// The virtual StreamID.
        vsid: u64,
        /// SubstreamID.
        ssid: Option<u32>,
        /// Range.
        range: std::ops::Range<u64>,
    },
    /// One CD of a device (`None`: all of them).
    Cd {
        /// The virtual StreamID.
        vsid: u64,
        /// SubstreamID.
        ssid: Option<u32>,
    },
}

const PAGE: u64 = 4096;

/// `arm_vsmmu_convert_user_cmd()`'s choice, decoded with the spec's view: only the commands a
/// guest may pass; anything else is EIO.
pub(crate) fn convert_command(cmd: &Command) -> Result<GuestCommand, UapiError> {
    let op = cmd.opcode().map_err(|_| UapiError::Command("a Reserved opcode"))?;
    Ok(match op {
        Opcode::TlbiNsnhAll | Opcode::TlbiNhAll | Opcode::TlbiNhVaa => GuestCommand::VmAll,
        Opcode::TlbiNhAsid => GuestCommand::Asid(cmd.asid()),
        Opcode::TlbiNhVa => {
            let start = cmd.address() & !(PAGE - 1);
            // §4.4.1.1: with TG != 0 the range is (NUM + 1) * 2^SCALE granules; with TG == 0
            // one address (one page here).
            let len = match cmd.tg() {
                Ok(Some(g)) => u64::from(cmd.num())
                    .checked_add(1)
                    .and_then(|n| n.checked_shl(u32::from(cmd.scale()) + u32::from(g.lg2()))),
                _ => Some(PAGE),
            };
            match len.and_then(|l| start.checked_add(l)) {
                Some(end) => {
                    GuestCommand::Va { asid: cmd.asid(), range: start..end, leaf: cmd.leaf() }
                }
                None => GuestCommand::Asid(cmd.asid()),
            }
        }
        Opcode::AtcInv => {
            // §4.5.1: 4K * 2^Size bytes at an address aligned to the span; 52 or more is all.
            let size = u32::from(cmd.atc_size());
            let range = match 1u64.checked_shl(size + 12).filter(|_| size < 52) {
                Some(span) => {
                    let start = cmd.address() & !(span - 1);
                    start..start.saturating_add(span)
                }
                None => 0..!(PAGE - 1),
            };
            GuestCommand::Atc {
                vsid: u64::from(cmd.sid()),
                ssid: cmd.ssv().then(|| cmd.ssid()),
                range,
            }
        }
        Opcode::CfgiCd => GuestCommand::Cd { vsid: u64::from(cmd.sid()), ssid: Some(cmd.ssid()) },
        Opcode::CfgiCdAll => GuestCommand::Cd { vsid: u64::from(cmd.sid()), ssid: None },
        other => return Err(UapiError::Command(other.name())),
    })
}

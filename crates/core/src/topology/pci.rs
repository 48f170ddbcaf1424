//! PCI names and the PCIe capabilities that decide isolation: Requester IDs, ACS, function types.
//!
//! These are PCI(e) facts, not IOMMU architecture bits: the same values mean the same thing
//! behind a VT-d DRHD and behind an SMMUv3.

use std::fmt;
use std::ops::{BitAnd, BitOr, Sub};
use std::str::FromStr;

use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

/// Device and function number of a PCI function on its bus (5-bit device, 3-bit function; the
/// low byte of a Requester ID, PCIe r6.0 §2.2.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevFn(u8);

impl DevFn {
    /// `device` (0..32) and `function` (0..8); `None` when either is out of range.
    pub const fn new(device: u8, function: u8) -> Option<Self> {
        if device < 32 && function < 8 {
            Some(Self((device << 3) | function))
        } else {
            None
        }
    }

    /// The devfn byte as the Requester ID carries it.
    pub const fn from_raw(raw: u8) -> Self {
        Self(raw)
    }

    /// The devfn byte.
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// Device number (Linux `PCI_SLOT`).
    pub const fn device(self) -> u8 {
        self.0 >> 3
    }

    /// Function number (Linux `PCI_FUNC`).
    pub const fn function(self) -> u8 {
        self.0 & 7
    }
}

impl fmt::Display for DevFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}.{:x}", self.device(), self.function())
    }
}

impl Serialize for DevFn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Segment, bus, device, function: the name of a PCI function. Without the segment it is the
/// Requester ID its requests carry, which is what an IOMMU sees (PCIe r6.0 §2.2.6.2).
///
/// Written and parsed as Linux writes it: `ssss:bb:dd.f`, or `bb:dd.f` in segment 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment (ACPI `_SEG`, Linux's PCI domain).
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device and function.
    pub devfn: DevFn,
}

impl Bdf {
    /// A function from its parts.
    pub const fn new(segment: u16, bus: u8, devfn: DevFn) -> Self {
        Self { segment, bus, devfn }
    }

    /// A function from numbers; `None` when device or function is out of range.
    pub const fn from_parts(segment: u16, bus: u8, device: u8, function: u8) -> Option<Self> {
        match DevFn::new(device, function) {
            Some(devfn) => Some(Self { segment, bus, devfn }),
            None => None,
        }
    }

    /// The 16-bit Requester ID (Linux `PCI_DEVID`).
    pub const fn rid(self) -> u16 {
        ((self.bus as u16) << 8) | self.devfn.raw() as u16
    }

    /// The slot this function belongs to: same segment, bus and device number.
    pub const fn slot(self) -> (u16, u8, u8) {
        (self.segment, self.bus, self.devfn.device())
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{}", self.segment, self.bus, self.devfn)
    }
}

/// A string that is not `ssss:bb:dd.f` or `bb:dd.f` (hex, device < 0x20, function < 8).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a PCI function address (ssss:bb:dd.f or bb:dd.f)")]
pub struct ParseBdfError(pub String);

impl FromStr for Bdf {
    type Err = ParseBdfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseBdfError(s.to_owned());
        let (head, function) = s.rsplit_once('.').ok_or_else(bad)?;
        let mut parts = head.rsplitn(3, ':');
        let device = parts.next().ok_or_else(bad)?;
        let bus = parts.next().ok_or_else(bad)?;
        let segment = parts.next().unwrap_or("0");
        let hex8 = |t: &str, max_len: usize| {
            if t.is_empty() || t.len() > max_len {
                return Err(bad());
            }
            u8::from_str_radix(t, 16).map_err(|_| bad())
        };
        if segment.is_empty() || segment.len() > 4 {
            return Err(bad());
        }
        let segment = u16::from_str_radix(segment, 16).map_err(|_| bad())?;
        let bus = hex8(bus, 2)?;
        let device = hex8(device, 2)?;
        let function = hex8(function, 1)?;
        Bdf::from_parts(segment, bus, device, function).ok_or_else(bad)
    }
}

impl Serialize for Bdf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// ACS controls, as the bits of the ACS Capability and ACS Control registers
/// (PCIe r6.0 §7.7.8.2, §7.7.8.3; Linux `PCI_ACS_*`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AcsFlags(u8);

impl AcsFlags {
    /// No controls.
    pub const NONE: Self = Self(0);
    /// Source Validation: a Downstream Port checks the bus number of requests from below.
    pub const SV: Self = Self(1 << 0);
    /// Translation Blocking: translated (AT=10b) requests from below are blocked.
    pub const TB: Self = Self(1 << 1);
    /// P2P Request Redirect: peer-to-peer requests are sent upstream (to the IOMMU) instead.
    pub const RR: Self = Self(1 << 2);
    /// P2P Completion Redirect.
    pub const CR: Self = Self(1 << 3);
    /// Upstream Forwarding: a switch forwards requests upstream rather than back down.
    pub const UF: Self = Self(1 << 4);
    /// P2P Egress Control (with its egress control vector).
    pub const EC: Self = Self(1 << 5);
    /// Direct Translated P2P.
    pub const DT: Self = Self(1 << 6);

    /// What Linux requires to call a path isolating: `REQ_ACS_FLAGS` in drivers/iommu/iommu.c
    /// (`PCI_ACS_ISOLATED` in linux-next): no spoofed Requester ID, no redirection of
    /// requests or completions, everything forwarded upstream.
    pub const ISOLATED: Self = Self(Self::SV.0 | Self::RR.0 | Self::CR.0 | Self::UF.0);

    /// What `pci_enable_pasid()` (drivers/pci/ats.c) requires on the whole path: the fabric
    /// routes by address and ignores the PASID, so a PASID request must be redirected upstream.
    pub const PASID_PATH: Self = Self(Self::RR.0 | Self::UF.0);

    const NAMES: [(Self, &'static str); 7] = [
        (Self::SV, "SV"),
        (Self::TB, "TB"),
        (Self::RR, "RR"),
        (Self::CR, "CR"),
        (Self::UF, "UF"),
        (Self::EC, "EC"),
        (Self::DT, "DT"),
    ];

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The register bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Flags from register bits; bits above DT are dropped.
    pub const fn from_bits_truncate(bits: u8) -> Self {
        Self(bits & ((1 << 7) - 1))
    }

    fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES.into_iter().filter(move |(f, _)| self.contains(*f)).map(|(_, n)| n)
    }
}

impl BitOr for AcsFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitAnd for AcsFlags {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl Sub for AcsFlags {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 & !rhs.0)
    }
}

impl fmt::Display for AcsFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl fmt::Debug for AcsFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AcsFlags({self})")
    }
}

impl Serialize for AcsFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for name in self.names() {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

/// A function's ACS Extended Capability: what it implements and what is enabled
/// (PCIe r6.0 §7.7.8). A function without the capability has `Option<Acs>::None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Acs {
    /// ACS Capability register: the controls the function implements.
    pub capability: AcsFlags,
    /// ACS Control register: the controls that are enabled. Bits the capability lacks are
    /// hardwired to 0 (§7.7.8.3), so they are dropped.
    pub control: AcsFlags,
}

impl Acs {
    /// Implements and enables `flags`.
    pub const fn enabled(flags: AcsFlags) -> Self {
        Self { capability: flags, control: flags }
    }

    /// Implements and enables what Linux needs for isolation ([`AcsFlags::ISOLATED`]).
    pub const fn isolated() -> Self {
        Self::enabled(AcsFlags::ISOLATED)
    }

    /// Implements `capability`, enables `control` (restricted to what is implemented).
    pub const fn new(capability: AcsFlags, control: AcsFlags) -> Self {
        Self { capability, control: AcsFlags(control.0 & capability.0) }
    }
}

/// What a PCI function is: the Device/Port Type of its PCI Express Capability
/// (PCIe r6.0 §7.5.3.2, Linux `pci_pcie_type()`), or conventional PCI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PciType {
    /// PCI Express Endpoint (`PCI_EXP_TYPE_ENDPOINT`), below a Root Port or switch port.
    Endpoint,
    /// Root Complex Integrated Endpoint on a root bus (`PCI_EXP_TYPE_RC_END`).
    RcEndpoint,
    /// Root Port of a Root Complex (`PCI_EXP_TYPE_ROOT_PORT`).
    RootPort,
    /// Switch Upstream Port (`PCI_EXP_TYPE_UPSTREAM`); its secondary bus is the switch's
    /// internal bus.
    SwitchUpstream,
    /// Switch Downstream Port (`PCI_EXP_TYPE_DOWNSTREAM`).
    SwitchDownstream,
    /// PCI Express to PCI/PCI-X Bridge (`PCI_EXP_TYPE_PCI_BRIDGE`): a conventional bus behind.
    PcieToPciBridge,
    /// Conventional PCI function (no PCI Express Capability) on a conventional bus.
    ConventionalEndpoint,
    /// Conventional PCI-to-PCI bridge on a conventional bus.
    ConventionalBridge,
}

impl PciType {
    /// Whether the function has a PCI Express Capability.
    pub const fn is_pcie(self) -> bool {
        !matches!(self, Self::ConventionalEndpoint | Self::ConventionalBridge)
    }

    /// Whether the function is a bridge (type 1 header) with a secondary bus.
    pub const fn is_bridge(self) -> bool {
        matches!(
            self,
            Self::RootPort
                | Self::SwitchUpstream
                | Self::SwitchDownstream
                | Self::PcieToPciBridge
                | Self::ConventionalBridge
        )
    }

    /// The name used in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint",
            Self::RcEndpoint => "root complex integrated endpoint",
            Self::RootPort => "root port",
            Self::SwitchUpstream => "switch upstream port",
            Self::SwitchDownstream => "switch downstream port",
            Self::PcieToPciBridge => "PCIe-to-PCI bridge",
            Self::ConventionalEndpoint => "conventional PCI device",
            Self::ConventionalBridge => "conventional PCI-to-PCI bridge",
        }
    }
}

/// The secondary interface of a PCIe-to-PCI/PCI-X bridge.
///
/// Both alias the same way in Linux (`pci_for_each_dma_alias`: secondary bus, devfn 00.0, per
/// the PCI Express to PCI/PCI-X Bridge Specification r1.0 §2.3): on PCI the bridge always takes
/// ownership of the request; on PCI-X it may, so devices' own Requester IDs can also arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondaryInterface {
    /// Conventional PCI.
    #[default]
    Pci,
    /// PCI-X.
    PciX,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_parses_and_prints_like_linux() {
        let b: Bdf = "0000:3a:1f.7".parse().unwrap();
        assert_eq!(b, Bdf::from_parts(0, 0x3a, 0x1f, 7).unwrap());
        assert_eq!(b.to_string(), "0000:3a:1f.7");
        assert_eq!(b.rid(), 0x3aff);
        let short: Bdf = "01:00.1".parse().unwrap();
        assert_eq!(short.to_string(), "0000:01:00.1");
        let seg: Bdf = "1:02:03.4".parse().unwrap();
        assert_eq!(seg.segment, 1);
    }

    #[test]
    fn bdf_rejects_out_of_range_and_junk() {
        for bad in
            ["", "00:20.0", "00:00.8", "100:00.0", "00:00", "0:0:0:0.0", "zz:00.0", "00:00.0."]
        {
            assert!(bad.parse::<Bdf>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn acs_flags_are_the_linux_bits() {
        // include/uapi/linux/pci_regs.h PCI_ACS_SV 0x01 .. PCI_ACS_DT 0x40
        assert_eq!(AcsFlags::SV.bits(), 0x01);
        assert_eq!(AcsFlags::RR.bits(), 0x04);
        assert_eq!(AcsFlags::UF.bits(), 0x10);
        assert_eq!(AcsFlags::DT.bits(), 0x40);
        assert_eq!(AcsFlags::ISOLATED.bits(), 0x1d);
        assert_eq!(AcsFlags::ISOLATED.to_string(), "SV|RR|CR|UF");
        assert_eq!(AcsFlags::from_bits_truncate(0xff).bits(), 0x7f);
    }

    #[test]
    fn acs_control_is_limited_to_the_capability() {
        let acs = Acs::new(AcsFlags::SV | AcsFlags::RR, AcsFlags::ISOLATED);
        assert_eq!(acs.control, AcsFlags::SV | AcsFlags::RR);
    }
}

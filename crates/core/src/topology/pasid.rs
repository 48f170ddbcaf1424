//! Whether a device may use PASIDs, the way Linux's `pci_enable_pasid()` decides it.
//!
//! PASID is not isolation: the fabric routes a request by its address and ignores the PASID
//! (PCIe r6.0 §2.2.10.4), so a PASID-tagged write that falls in a peer's BAR goes to the peer
//! unless ACS redirects it to the IOMMU. Linux therefore enables PASID only where every
//! function on the path from the device to the root has ACS P2P Request Redirect and Upstream
//! Forwarding. The group a device is in does not matter here: in the seed's picture A keeps
//! its PASIDs although B, which aliases it, shares its group.

use std::fmt;

use serde::{Serialize, Serializer};

use super::{AcsFlags, AcsLack, DeviceId, DeviceKind, PciType, Topology};

/// Number of PASID bits a device can send: 1..=20 (PCIe PASID Extended Capability Max PASID
/// Width, PCIe r6.0 §7.8.8.2; SMMUv3 SubstreamID width, SSIDSIZE at most 20).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PasidWidth(u8);

impl PasidWidth {
    /// The widest PASID either architecture carries.
    pub const MAX_BITS: u8 = 20;

    /// A width of `bits`; `None` outside 1..=20.
    pub const fn new(bits: u8) -> Option<Self> {
        if bits >= 1 && bits <= Self::MAX_BITS {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// The width in bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// How many PASIDs the device can name: 2^bits (Linux `pci_max_pasids()`).
    pub const fn count(self) -> u32 {
        1 << self.0
    }
}

impl fmt::Display for PasidWidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bits", self.0)
    }
}

impl Serialize for PasidWidth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

/// Why [`Topology::pasid_allowed`] refused, in the order `pci_enable_pasid()` checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "refused", rename_all = "snake_case")]
pub enum PasidRefused {
    /// No device of that name.
    #[error("no device {device}")]
    NoSuchDevice {
        /// The name asked for.
        device: DeviceId,
    },
    /// A conventional PCI function behind a PCIe-to-PCI bridge: conventional PCI has no TLP
    /// prefixes to carry a PASID in (Linux: `eetlp_prefix_max` is never set for a non-PCIe
    /// function, `pci_configure_eetlp_prefix()`).
    #[error("conventional PCI behind bridge {bridge} cannot carry a PASID")]
    BehindConventionalBridge {
        /// The PCIe-to-PCI bridge above it.
        bridge: DeviceId,
    },
    /// A function on the path (the device itself, a port) does not support End-End TLP
    /// Prefixes, in which the PASID travels (Linux `pci_configure_eetlp_prefix()`, checked by
    /// `pci_enable_pasid()` before anything else).
    #[error("{at} does not pass End-End TLP prefixes, which carry the PASID")]
    NoTlpPrefixPath {
        /// The first function from the device upwards without End-End TLP Prefix support.
        at: DeviceId,
    },
    /// The device has no PASID capability (SMMUv3 platform master: no SubstreamID bits).
    #[error("no PASID capability")]
    NoPasidCapability,
    /// The device is a function of a multifunction device and lacks ACS P2P Request Redirect
    /// (and Upstream Forwarding where implemented): a PASID request could reach a sibling
    /// function without reaching the IOMMU (`pci_acs_path_enabled()` starts at the device).
    #[error("multifunction device without ACS {missing}: siblings are reachable past the IOMMU")]
    MultifunctionWithoutAcs {
        /// What it lacks.
        missing: AcsLack,
    },
    /// A port on the path lacks ACS RR / UF (`pci_acs_path_enabled(pdev, NULL, PCI_ACS_RR |
    /// PCI_ACS_UF)` in `pci_enable_pasid()`).
    #[error("ACS {missing} missing at {at} on the path to the root")]
    AcsPath {
        /// The first function from the device upwards that lacks.
        at: DeviceId,
        /// What it lacks.
        missing: AcsLack,
    },
}

impl Topology {
    /// Whether `device` may use PASIDs, and how many bits, following `pci_enable_pasid()`
    /// (drivers/pci/ats.c) in its order: End-End TLP prefix support on the whole path, the
    /// PASID capability, then ACS RR|UF on the whole path. A platform master behind an SMMUv3
    /// needs only SubstreamID bits. Groups are not consulted (see the module documentation).
    ///
    /// Not modelled: SR-IOV VFs (which follow their PF) and `pasid_no_tlp` devices.
    pub fn pasid_allowed(&self, device: &DeviceId) -> Result<PasidWidth, PasidRefused> {
        let no_such = || PasidRefused::NoSuchDevice { device: device.clone() };
        let i = *self.index.get(device).ok_or_else(no_such)?;
        let dev = self.devices.get(i).ok_or_else(no_such)?;
        let f = match &dev.kind {
            DeviceKind::Platform(p) => return p.pasid.ok_or(PasidRefused::NoPasidCapability),
            DeviceKind::Pci(f) => f,
        };
        if !f.pci_type.is_pcie() {
            // The nearest bridge above that is PCIe is the PCIe-to-PCI bridge; a conventional
            // function is always below one.
            let bridge = self
                .ancestors(i)
                .find(|&a| self.pci_at(a).is_some_and(|b| b.pci_type == PciType::PcieToPciBridge))
                .map_or_else(|| device.clone(), |a| self.id_at(a));
            return Err(PasidRefused::BehindConventionalBridge { bridge });
        }
        // pci_configure_eetlp_prefix(): set on a root port or RCiEP that supports it, and on
        // anything else that supports it when its upstream bridge has it.
        if let Some(at) = std::iter::once(i)
            .chain(self.ancestors(i))
            .find(|&j| self.pci_at(j).is_none_or(|g| !g.ee_tlp_prefix))
        {
            return Err(PasidRefused::NoTlpPrefixPath { at: self.id_at(at) });
        }
        let width = f.pasid.ok_or(PasidRefused::NoPasidCapability)?;
        match self.acs_path_at(i, AcsFlags::PASID_PATH) {
            Ok(()) => Ok(width),
            Err((at, missing)) if at == i && f.multifunction => {
                Err(PasidRefused::MultifunctionWithoutAcs { missing })
            }
            Err((at, missing)) => Err(PasidRefused::AcsPath { at: self.id_at(at), missing }),
        }
    }
}

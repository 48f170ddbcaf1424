//! What the unit advertises (§11.4.1–§11.4.3), decoded once at bring-up from VER, CAP and ECAP.

use crate::spec::regs::{cap, ecap, ver};
use crate::spec::Aw;

/// 4 KiB, 2 MiB and 1 GiB, as bits of a page-size bitmap (bit `n` set: `2^n`-byte pages).
const PAGE_4K: u64 = 1 << 12;
const PAGE_2M: u64 = 1 << 21;
const PAGE_1G: u64 = 1 << 30;

/// The capabilities the driver reads at bring-up, decoded from VER_REG, CAP_REG and ECAP_REG.
/// The raw values are kept for whatever the fields below do not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// VER_REG: major and minor version.
    pub version: (u8, u8),
    /// CAP_REG as read.
    pub cap: u64,
    /// ECAP_REG as read.
    pub ecap: u64,
    /// Domain IDs the unit supports (CAP.ND).
    pub domains: u64,
    /// CAP.SAGAW: bit `n` set means AW encoding `n` is supported.
    pub sagaw: u8,
    /// CAP.MGAW + 1: the widest input address the unit translates.
    pub mgaw_bits: u8,
    /// CAP.CM: not-present entries may be cached, so making an entry present needs an
    /// invalidation too.
    pub caching_mode: bool,
    /// CAP.RWBF: the write buffer must be flushed after table updates.
    pub write_buffer_flush: bool,
    /// CAP.PSI: page-selective IOTLB invalidation.
    pub page_selective: bool,
    /// CAP.MAMV: the largest address mask of a page-selective invalidation.
    pub mamv: u8,
    /// CAP.NFR + 1: fault recording registers.
    pub fault_records: u64,
    /// Second-stage page sizes (4K always; 2M, 1G from CAP.SSLPS), as a bitmap of sizes.
    pub ss_page_sizes: u64,
    /// First-stage page sizes (4K and 2M always; 1G with CAP.FS1GP), as a bitmap of sizes.
    pub fs_page_sizes: u64,
    /// CAP.FS5LP: 5-level first-stage paging.
    pub fs_5level: bool,
    /// ECAP.QI: queued invalidation.
    pub queued_invalidation: bool,
    /// ECAP.DT: device-TLBs (ATS).
    pub device_tlb: bool,
    /// ECAP.PT: pass-through.
    pub pass_through: bool,
    /// ECAP.SC: snoop control.
    pub snoop_control: bool,
    /// ECAP.NEST: nested translation.
    pub nesting: bool,
    /// ECAP.PRS: page requests.
    pub page_requests: bool,
    /// ECAP.ERS: execute requests.
    pub execute_requests: bool,
    /// ECAP.SRS: supervisor requests.
    pub supervisor_requests: bool,
    /// ECAP.PASID: requests with PASID.
    pub pasid: bool,
    /// ECAP.PSS + 1: PASID bits.
    pub pasid_bits: u8,
    /// ECAP.SMTS: scalable-mode translation.
    pub scalable_mode: bool,
    /// ECAP.SSTS: second-stage translation in scalable mode.
    pub second_stage: bool,
    /// ECAP.FSTS: first-stage translation.
    pub first_stage: bool,
    /// ECAP.RPS: a RID_PASID other than 0.
    pub rid_pasid: bool,
}

/// A field of a register as a `u8` (every field decoded here is at most 10 bits wide and the
/// ones stored as `u8` at most 6).
fn small(v: u64) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

impl Capabilities {
    /// Decodes the three registers.
    #[must_use]
    pub fn decode(ver_reg: u64, cap_reg: u64, ecap_reg: u64) -> Self {
        let has = |f: crate::spec::Field, r: u64| f.is_set(r);
        let sslps = cap::SSLPS.get(cap_reg);
        let mut ss_page_sizes = PAGE_4K;
        if sslps & cap::SSLPS_2M != 0 {
            ss_page_sizes |= PAGE_2M;
        }
        if sslps & cap::SSLPS_1G != 0 {
            ss_page_sizes |= PAGE_1G;
        }
        // §3.6: first-stage paging is IA-32e paging, which always has 2M pages.
        let mut fs_page_sizes = PAGE_4K | PAGE_2M;
        if has(cap::FS1GP, cap_reg) {
            fs_page_sizes |= PAGE_1G;
        }
        Self {
            version: (small(ver::MAX.get(ver_reg)), small(ver::MIN.get(ver_reg))),
            cap: cap_reg,
            ecap: ecap_reg,
            domains: cap::domains(cap_reg),
            sagaw: small(cap::SAGAW.get(cap_reg)),
            mgaw_bits: small(cap::mgaw_bits(cap_reg)),
            caching_mode: has(cap::CM, cap_reg),
            write_buffer_flush: has(cap::RWBF, cap_reg),
            page_selective: has(cap::PSI, cap_reg),
            mamv: small(cap::MAMV.get(cap_reg)),
            fault_records: cap::nfr_count(cap_reg),
            ss_page_sizes,
            fs_page_sizes,
            fs_5level: has(cap::FS5LP, cap_reg),
            queued_invalidation: has(ecap::QI, ecap_reg),
            device_tlb: has(ecap::DT, ecap_reg),
            pass_through: has(ecap::PT, ecap_reg),
            snoop_control: has(ecap::SC, ecap_reg),
            nesting: has(ecap::NEST, ecap_reg),
            page_requests: has(ecap::PRS, ecap_reg),
            execute_requests: has(ecap::ERS, ecap_reg),
            supervisor_requests: has(ecap::SRS, ecap_reg),
            pasid: has(ecap::PASID, ecap_reg),
            pasid_bits: small(ecap::pasid_bits(ecap_reg)),
            scalable_mode: has(ecap::SMTS, ecap_reg),
            second_stage: has(ecap::SSTS, ecap_reg),
            first_stage: has(ecap::FSTS, ecap_reg),
            rid_pasid: has(ecap::RPS, ecap_reg),
        }
    }

    /// Whether CAP.SAGAW advertises `aw`.
    #[must_use]
    pub fn supports_aw(&self, aw: Aw) -> bool {
        u64::from(self.sagaw) & aw.sagaw_bit() != 0
    }

    /// The AW a second-stage domain gets when none is asked for: 48-bit (4-level) if
    /// advertised, else the widest advertised; `None` if SAGAW is empty.
    #[must_use]
    pub fn default_aw(&self) -> Option<Aw> {
        if self.supports_aw(Aw::Bits48) {
            return Some(Aw::Bits48);
        }
        Aw::ALL.iter().rev().copied().find(|&aw| self.supports_aw(aw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_fields_it_names() {
        let mut c = 0;
        c = cap::SAGAW.set(c, Aw::Bits39.sagaw_bit() | Aw::Bits57.sagaw_bit());
        c = cap::MGAW.set(c, 56);
        c = cap::SSLPS.set(c, cap::SSLPS_2M);
        c = cap::NFR.set(c, 3);
        c = cap::CM.with(c, true);
        let e = ecap::PSS.set(ecap::NEST.with(0, true), 9);
        let caps = Capabilities::decode(0x10, c, e);
        assert_eq!(caps.version, (1, 0));
        assert_eq!(caps.mgaw_bits, 57);
        assert_eq!(caps.ss_page_sizes, PAGE_4K | PAGE_2M);
        assert_eq!(caps.fs_page_sizes, PAGE_4K | PAGE_2M);
        assert_eq!(caps.fault_records, 4);
        assert_eq!(caps.pasid_bits, 10);
        assert!(caps.nesting && caps.caching_mode && !caps.pass_through);
        assert!(caps.supports_aw(Aw::Bits57) && !caps.supports_aw(Aw::Bits48));
        assert_eq!(caps.default_aw(), Some(Aw::Bits57));
        assert_eq!(Capabilities::decode(0, 0, 0).default_aw(), None);
    }
}

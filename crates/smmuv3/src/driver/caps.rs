//! §6.3.1 to §6.3.6: what the SMMU advertises, read once at probe.

use super::{DriverError, Mmio};
use crate::spec::regs::{self, idr0, idr1, idr3, idr5, StallModel};
use crate::spec::{address_size_bits, Granule};

/// The SMMU's features as its ID registers advertise them (SMMU_IDR0, 1, 3, 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// IDR0.S1P: stage-1 translation.
    pub s1p: bool,
    /// IDR0.S2P: stage-2 translation.
    pub s2p: bool,
    /// IDR0.TTF\[1\]: VMSAv8-64 translation tables.
    pub ttf_aa64: bool,
    /// IDR0.COHACC: coherent table and queue accesses.
    pub cohacc: bool,
    /// IDR0.HTTU: 0 none, 1 Access flag, 2 Access flag and dirty state.
    pub httu: u8,
    /// IDR0.HYP: EL2 StreamWorld (and the EL2 TLBIs).
    pub hyp: bool,
    /// IDR0.ATS.
    pub ats: bool,
    /// IDR0.PRI.
    pub pri: bool,
    /// IDR0.MSI.
    pub msi: bool,
    /// IDR0.ASID16: 16-bit ASIDs.
    pub asid16: bool,
    /// IDR0.VMID16: 16-bit VMIDs.
    pub vmid16: bool,
    /// IDR0.CD2L: two-level CD tables.
    pub cd2l: bool,
    /// IDR0.ST_LEVEL: two-level Stream tables.
    pub two_level_st: bool,
    /// IDR0.STALL_MODEL (`Err` holds a Reserved encoding).
    pub stall_model: Result<StallModel, u8>,
    /// IDR0.TERM_MODEL: terminated transactions always abort (CD.A must be 1).
    pub term_model: bool,
    /// IDR1.SIDSIZE: StreamID bits.
    pub sidsize: u8,
    /// IDR1.SSIDSIZE: SubstreamID bits.
    pub ssidsize: u8,
    /// IDR1.CMDQS: log2 of the largest Command queue.
    pub cmdqs: u8,
    /// IDR1.EVENTQS.
    pub eventqs: u8,
    /// IDR1.PRIQS.
    pub priqs: u8,
    /// IDR3.RIL: range invalidations.
    pub ril: bool,
    /// IDR5.OAS in bits (capped at 52: the driver builds no VMSAv9-128 tables).
    pub oas_bits: u8,
    /// IDR5.GRAN4K.
    pub gran4k: bool,
    /// IDR5.GRAN16K.
    pub gran16k: bool,
    /// IDR5.GRAN64K.
    pub gran64k: bool,
    /// IDR5.VAX == 0b01: 52-bit VAs with the 64K granule.
    pub vax52: bool,
}

fn u8_of(v: u64) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

impl Capabilities {
    /// Reads SMMU_IDR0, 1, 3 and 5.
    pub fn read<R: Mmio + ?Sized>(regs: &R) -> Self {
        let i0 = regs.read(regs::IDR0.0, 4);
        let i1 = regs.read(regs::IDR1.0, 4);
        let i3 = regs.read(regs::IDR3.0, 4);
        let i5 = regs.read(regs::IDR5.0, 4);
        let stall = u8_of(idr0::STALL_MODEL.get(i0));
        // §6.3.6: OAS 0b111 (56 bits) needs VMSAv9-128 tables; the driver stays at 52.
        let oas_bits = address_size_bits(idr5::OAS.get(i5)).unwrap_or(48).min(52);
        Self {
            s1p: idr0::S1P.is_set(i0),
            s2p: idr0::S2P.is_set(i0),
            ttf_aa64: idr0::TTF.get(i0) & 0b10 != 0,
            cohacc: idr0::COHACC.is_set(i0),
            httu: u8_of(idr0::HTTU.get(i0)),
            hyp: idr0::HYP.is_set(i0),
            ats: idr0::ATS.is_set(i0),
            pri: idr0::PRI.is_set(i0),
            msi: idr0::MSI.is_set(i0),
            asid16: idr0::ASID16.is_set(i0),
            vmid16: idr0::VMID16.is_set(i0),
            cd2l: idr0::CD2L.is_set(i0),
            two_level_st: idr0::ST_LEVEL.get(i0) == 0b01,
            stall_model: StallModel::try_from(stall).map_err(|_| stall),
            term_model: idr0::TERM_MODEL.is_set(i0),
            // §6.3.2: SIDSIZE is at most 32 and SSIDSIZE at most 20.
            sidsize: u8_of(idr1::SIDSIZE.get(i1)).min(32),
            ssidsize: u8_of(idr1::SSIDSIZE.get(i1)).min(20),
            cmdqs: u8_of(idr1::CMDQS.get(i1)),
            eventqs: u8_of(idr1::EVENTQS.get(i1)),
            priqs: u8_of(idr1::PRIQS.get(i1)),
            ril: idr3::RIL.is_set(i3),
            oas_bits,
            gran4k: idr5::GRAN4K.is_set(i5),
            gran16k: idr5::GRAN16K.is_set(i5),
            gran64k: idr5::GRAN64K.is_set(i5),
            vax52: idr5::VAX.get(i5) == 0b01,
        }
    }

    /// Whether SMMU_IDR5 advertises the granule.
    pub fn granule(&self, g: Granule) -> bool {
        match g {
            Granule::Size4K => self.gran4k,
            Granule::Size16K => self.gran16k,
            Granule::Size64K => self.gran64k,
        }
    }

    /// The ASID width in bits.
    pub fn asid_bits(&self) -> u8 {
        if self.asid16 {
            16
        } else {
            8
        }
    }

    /// The VMID width in bits.
    pub fn vmid_bits(&self) -> u8 {
        if self.vmid16 {
            16
        } else {
            8
        }
    }

    /// Whether this driver can run the SMMU at all: VMSAv8-64 tables, at least one stage, a
    /// stall model that lets CDs and STEs terminate (the driver never stalls).
    pub(super) fn check_usable(&self) -> Result<(), DriverError> {
        if !self.ttf_aa64 {
            return Err(DriverError::Unsupported("VMSAv8-64 translation tables"));
        }
        if !self.s1p && !self.s2p {
            return Err(DriverError::Unsupported("any translation stage"));
        }
        // §6.3.1: with STALL_MODEL 0b10 every CD and STE must stall; this driver only
        // terminates.
        if !matches!(
            self.stall_model,
            Ok(StallModel::TerminateOnly | StallModel::StallAndTerminate)
        ) {
            return Err(DriverError::Unsupported("the terminate fault model"));
        }
        Ok(())
    }
}

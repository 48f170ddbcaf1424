//! The register file through raw MMIO (§11.4): reset values, read-only fields, write-1-to-clear
//! fields, 64-bit registers as two 32-bit halves, and the GCMD/GSTS handshake.

mod common;

use common::*;
use sviommu_memory::HostMemory;
use sviommu_vtd::hw::{Vtd, VtdParams};
use sviommu_vtd::spec::regs::{self, cap, ecap, fectl, fsts, gcmd, gsts, rtaddr, ver};
use sviommu_vtd::spec::{Aw, Reg32, Reg64};

fn r32(vtd: &Vtd<&HostMemory>, r: Reg32) -> u64 {
    vtd.mmio_read(r.0, 4)
}

fn r64(vtd: &Vtd<&HostMemory>, r: Reg64) -> u64 {
    vtd.mmio_read(r.0, 8)
}

#[test]
fn the_model_is_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Vtd<&HostMemory>>();
    both::<Vtd<HostMemory>>();
}

#[test]
fn reset_values() {
    let m = Machine::new();
    let p = VtdParams::default();
    let vtd = unit(&m, p);
    assert_eq!((ver::MAX.get(r32(&vtd, regs::VER)), ver::MIN.get(r32(&vtd, regs::VER))), (1, 0));
    assert_eq!(r64(&vtd, regs::CAP), p.cap);
    assert_eq!(r64(&vtd, regs::ECAP), p.ecap);
    for r in [regs::GCMD, regs::GSTS, regs::FSTS, regs::FEDATA, regs::FEADDR, regs::FEUADDR] {
        assert_eq!(r32(&vtd, r), 0, "{r:?}");
    }
    assert_eq!(r64(&vtd, regs::RTADDR), 0);
    // §11.4.9.2: the fault event is masked out of reset.
    assert_eq!(r32(&vtd, regs::FECTL), fectl::IM.mask());
}

#[test]
fn the_default_unit_advertises_every_mode_the_model_has() {
    let p = VtdParams::default();
    let sagaw = cap::SAGAW.get(p.cap);
    for aw in [Aw::Bits39, Aw::Bits48, Aw::Bits57] {
        assert_ne!(sagaw & aw.sagaw_bit(), 0, "{aw:?}");
    }
    assert_eq!(cap::mgaw_bits(p.cap), 57);
    assert_eq!(cap::SSLPS.get(p.cap), cap::SSLPS_2M | cap::SSLPS_1G);
    assert!(cap::FS1GP.is_set(p.cap) && cap::FS5LP.is_set(p.cap));
    assert!(!cap::CM.is_set(p.cap), "caching mode is a vIOMMU's choice");
    assert_eq!(cap::domains(p.cap), 1 << 16);
    for f in [
        ecap::SMTS,
        ecap::PASID,
        ecap::NEST,
        ecap::FSTS,
        ecap::SSTS,
        ecap::PT,
        ecap::SC,
        ecap::ERS,
        ecap::SRS,
        ecap::RPS,
        ecap::RPRIVS,
    ] {
        assert!(f.is_set(p.ecap), "{f:?}");
    }
    assert_eq!(ecap::pasid_bits(p.ecap), 20);
    // The floating blocks sit past the fixed registers and apart from each other.
    let (frcd0, _) = regs::frcd(p.cap, 0);
    let (last, last_hi) = regs::frcd(p.cap, cap::nfr_count(p.cap) - 1);
    let iva = regs::iva(p.ecap);
    assert!(frcd0.0 >= 0x100 && iva.0 >= 0x100);
    assert!(last_hi.0 + 8 <= iva.0 || regs::iotlb(p.ecap).0 + 8 <= frcd0.0, "{last:?} {iva:?}");
}

#[test]
fn read_only_registers_ignore_writes() {
    let m = Machine::new();
    let vtd = unit(&m, VtdParams::default());
    let before: Vec<u64> =
        [regs::VER.0, regs::CAP.0, regs::CAP.0 + 4, regs::ECAP.0, regs::ECAP.0 + 4, regs::GSTS.0]
            .iter()
            .map(|&o| vtd.mmio_read(o, 4))
            .collect();
    for o in [regs::VER.0, regs::CAP.0, regs::CAP.0 + 4, regs::ECAP.0, regs::ECAP.0 + 4] {
        vtd.mmio_write(o, 4, 0xffff_ffff);
    }
    vtd.mmio_write(regs::CAP.0, 8, 0);
    vtd.mmio_write(regs::GSTS.0, 4, u64::from(u32::MAX));
    let after: Vec<u64> =
        [regs::VER.0, regs::CAP.0, regs::CAP.0 + 4, regs::ECAP.0, regs::ECAP.0 + 4, regs::GSTS.0]
            .iter()
            .map(|&o| vtd.mmio_read(o, 4))
            .collect();
    assert_eq!(before, after);
    // PPF and FRI are read-only; the status bits cannot be set by software.
    vtd.mmio_write(regs::FSTS.0, 4, u64::from(u32::MAX));
    assert_eq!(r32(&vtd, regs::FSTS), 0);
    // FECTL.IP is read-only; IM is not.
    vtd.mmio_write(regs::FECTL.0, 4, fectl::IP.mask());
    assert_eq!(r32(&vtd, regs::FECTL), 0);
    vtd.mmio_write(regs::FECTL.0, 4, fectl::IM.mask());
    assert_eq!(r32(&vtd, regs::FECTL), fectl::IM.mask());
}

#[test]
fn fsts_write_one_to_clear_fields_never_set_from_software() {
    let m = Machine::new();
    let vtd = unit(&m, VtdParams::default());
    for f in [fsts::PFO, fsts::PPF, fsts::IQE, fsts::ICE, fsts::ITE, fsts::FRI] {
        vtd.mmio_write(regs::FSTS.0, 4, f.mask());
        assert_eq!(r32(&vtd, regs::FSTS), 0, "{f:?}");
    }
    // (The crate's unit test latches them from the hardware side and clears them with 1s.)
}

#[test]
fn fault_event_registers_keep_what_software_writes() {
    let m = Machine::new();
    let vtd = unit(&m, VtdParams::default());
    vtd.mmio_write(regs::FEDATA.0, 4, 0x1234_00fe);
    vtd.mmio_write(regs::FEADDR.0, 4, 0xfee0_f00f);
    vtd.mmio_write(regs::FEUADDR.0, 4, 0xdead_beef);
    assert_eq!(r32(&vtd, regs::FEDATA), 0x1234_00fe);
    assert_eq!(r32(&vtd, regs::FEADDR), 0xfee0_f00c, "bits 1:0 are reserved");
    assert_eq!(r32(&vtd, regs::FEUADDR), 0xdead_beef);
}

#[test]
fn rtaddr_is_read_write_in_halves_and_whole() {
    let m = Machine::new();
    let vtd = unit(&m, VtdParams::default());
    // Bits 9:0 are reserved: written as 1, read as 0.
    vtd.mmio_write(regs::RTADDR.0, 8, 0x0000_1234_5678_9fff);
    assert_eq!(r64(&vtd, regs::RTADDR), 0x0000_1234_5678_9c00);
    assert_eq!(rtaddr::RTA.in_place(r64(&vtd, regs::RTADDR)), 0x0000_1234_5678_9000);
    assert_eq!(rtaddr::TTM.get(r64(&vtd, regs::RTADDR)), 3);
    // The two halves, one at a time.
    vtd.mmio_write(regs::RTADDR.0 + 4, 4, 0xabcd);
    assert_eq!(r64(&vtd, regs::RTADDR), 0x0000_abcd_5678_9c00);
    vtd.mmio_write(regs::RTADDR.0, 4, 0x1000);
    assert_eq!(vtd.mmio_read(regs::RTADDR.0, 4), 0x1000);
    assert_eq!(vtd.mmio_read(regs::RTADDR.0 + 4, 4), 0xabcd);
}

#[test]
fn undefined_offsets_sizes_and_alignments_read_zero_and_ignore_writes() {
    let m = Machine::new();
    let p = VtdParams::default();
    let vtd = unit(&m, p);
    for o in [0x30, 0x60, 0x100, 0x300, 0xff8, 0x1_0000] {
        vtd.mmio_write(o, 8, u64::MAX);
        assert_eq!(vtd.mmio_read(o, 8), 0, "{o:#x}");
        assert_eq!(vtd.mmio_read(o, 4), 0, "{o:#x}");
    }
    // Misaligned and odd-sized accesses.
    vtd.mmio_write(regs::RTADDR.0 + 2, 4, u64::MAX);
    vtd.mmio_write(regs::RTADDR.0 + 4, 8, u64::MAX);
    vtd.mmio_write(regs::RTADDR.0, 2, u64::MAX);
    assert_eq!(r64(&vtd, regs::RTADDR), 0);
    assert_eq!(vtd.mmio_read(regs::CAP.0 + 4, 8), 0);
    assert_eq!(vtd.mmio_read(regs::CAP.0, 1), 0);
    assert_eq!(vtd.mmio_read(u64::MAX - 3, 4), 0);
    vtd.mmio_write(u64::MAX - 7, 8, 1);
}

#[test]
fn gcmd_is_write_only_and_srtp_then_te_is_the_handshake() {
    let m = Machine::new();
    let vtd = unit(&m, VtdParams::default());
    vtd.mmio_write(regs::RTADDR.0, 8, 0x10_0000);
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::SRTP.mask());
    assert_eq!(r32(&vtd, regs::GCMD), 0, "GCMD reads 0");
    assert_eq!(r32(&vtd, regs::GSTS), gsts::RTPS.mask());
    // TE, keeping nothing else: TES joins RTPS.
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask());
    assert_eq!(r32(&vtd, regs::GSTS), gsts::RTPS.mask() | gsts::TES.mask());
    // SRTP again with TE kept: still enabled.
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::TE.mask() | gcmd::SRTP.mask());
    assert_eq!(r32(&vtd, regs::GSTS), gsts::RTPS.mask() | gsts::TES.mask());
    // TE cleared: translation off, the root pointer stays latched.
    vtd.mmio_write(regs::GCMD.0, 4, 0);
    assert_eq!(r32(&vtd, regs::GSTS), gsts::RTPS.mask());
    // An 8-byte write at GCMD writes GCMD and the read-only GSTS.
    vtd.mmio_write(regs::GCMD.0, 8, gcmd::TE.mask() | u64::MAX << 32);
    assert_eq!(r32(&vtd, regs::GSTS), gsts::RTPS.mask() | gsts::TES.mask());
}

#[test]
fn gcmd_takes_one_command_per_write() {
    let m = Machine::new();
    let vtd = unit(&m, VtdParams::default());
    // SRTP and TE together: two commands, ignored whole.
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::SRTP.mask() | gcmd::TE.mask());
    assert_eq!(r32(&vtd, regs::GSTS), 0);
    // Commands for features the unit does not advertise change nothing (QIE: see hw_queue).
    for f in [gcmd::IRE, gcmd::SIRTP, gcmd::CFI, gcmd::WBF, gcmd::SFL, gcmd::EAFL] {
        vtd.mmio_write(regs::GCMD.0, 4, f.mask());
        assert_eq!(r32(&vtd, regs::GSTS), 0, "{f:?}");
    }
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::SRTP.mask());
    assert_eq!(r32(&vtd, regs::GSTS), gsts::RTPS.mask());
}

#[test]
fn translation_follows_tes_while_other_threads_translate() {
    use sviommu_pgtable::Access;
    use sviommu_vtd::hw::DmaRequest;
    use sviommu_vtd::spec::FaultReason;

    let mut m = Machine::new();
    let rta = m.page(); // every root entry not present
    let vtd = unit(&m, VtdParams::default());
    vtd.mmio_write(regs::RTADDR.0, 8, rta);
    vtd.mmio_write(regs::GCMD.0, 4, gcmd::SRTP.mask());
    let req = DmaRequest::new(0x100, 0x1000, Access::READ);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..2000 {
                    match vtd.translate(&req) {
                        Ok(t) => assert_eq!((t.output, t.reads), (0x1000, 0)),
                        Err(f) => assert_eq!(f.reason, FaultReason::RootEntryNotPresent),
                    }
                }
            });
        }
        for i in 0..2000u64 {
            vtd.mmio_write(regs::GCMD.0, 4, if i % 2 == 0 { gcmd::TE.mask() } else { 0 });
        }
    });
}

//! The register file through raw MMIO (IHI 0070 G.b §6.2, §6.3): reset values, ID registers
//! built from the parameters, CR0/CR0ACK, GBPA's Update protocol, GERROR/GERRORN, the
//! STRTAB_BASE guard, access sizes, page 1, undefined offsets.

mod common;

use common::*;
use sviommu_smmuv3::hw::{Abort, Access, Silent, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{self, cr0, cr2, gbpa, gerror, idr0, idr1, idr5, strtab_base};

fn r32(s: &Smmu<&sviommu_memory::HostMemory>, o: u64) -> u64 {
    s.mmio_read(o, 4)
}

#[test]
fn reset_values() {
    let mem = memory();
    let s = smmu(&mem);
    for reg in [
        regs::CR0,
        regs::CR0ACK,
        regs::CR1,
        regs::CR2,
        regs::STATUSR,
        regs::IRQ_CTRL,
        regs::IRQ_CTRLACK,
        regs::GERROR,
        regs::GERRORN,
        regs::STRTAB_BASE_CFG,
        regs::IDR2,
        regs::IDR4,
    ] {
        assert_eq!(r32(&s, reg.0), 0, "{reg:?}");
    }
    assert_eq!(s.mmio_read(regs::STRTAB_BASE.0, 8), 0);
    // GBPA: SHCFG = 0b01 (use incoming), ABORT as the parameters say (bypass by default).
    assert_eq!(r32(&s, regs::GBPA.0), 0x1000);
    let deny = Smmu::new(&mem, SmmuParams { gbpa_abort_at_reset: true, ..SmmuParams::default() });
    assert_eq!(deny.mmio_read(regs::GBPA.0, 4), 0x0010_1000);
}

#[test]
fn id_registers_advertise_the_default_smmu() {
    let mem = memory();
    let s = smmu(&mem);
    let i0 = r32(&s, regs::IDR0.0);
    assert!(idr0::S1P.is_set(i0) && idr0::S2P.is_set(i0) && idr0::CD2L.is_set(i0));
    assert_eq!((idr0::TTF.get(i0), idr0::ST_LEVEL.get(i0), idr0::HTTU.get(i0)), (0b10, 1, 0b10));
    assert!(idr0::ASID16.is_set(i0) && idr0::VMID16.is_set(i0) && idr0::TERM_MODEL.is_set(i0));
    assert!(!idr0::ATS.is_set(i0) && !idr0::PRI.is_set(i0) && !idr0::MSI.is_set(i0));
    let i1 = r32(&s, regs::IDR1.0);
    assert_eq!((idr1::SIDSIZE.get(i1), idr1::SSIDSIZE.get(i1)), (16, 20));
    let i5 = r32(&s, regs::IDR5.0);
    assert_eq!((idr5::OAS.get(i5), idr5::VAX.get(i5)), (0b110, 0b01));
    assert!(idr5::GRAN4K.is_set(i5) && idr5::GRAN16K.is_set(i5) && idr5::GRAN64K.is_set(i5));
    // Hand-typed: the whole IDR0 and IDR5 words of the default SMMU.
    // IDR0: ST_LEVEL 01 (27), TERM_MODEL (26), STALL_MODEL 00 (25:24), TTENDIAN 10 (22:21),
    // CD2L (19), VMID16 (18), ASID16 (12), HTTU 10 (7:6), COHACC (4), TTF 10 (3:2), S1P, S2P.
    assert_eq!(i0, 0x0c4c_109b);
    // IDR5: STALL_MAX 64 (31:16), VAX 01 (11:10), GRAN64K/16K/4K (6:4), OAS 0b110.
    assert_eq!(i5, 0x0040_0476);
    // IDR3: RIL (10), XNX (4: SMMUv3.1 requires it with stage 2, §6.3.4), HAD (2).
    assert_eq!(r32(&s, regs::IDR3.0), 0x0000_0414);
    // ID registers are read-only.
    s.mmio_write(regs::IDR0.0, 4, 0);
    assert_eq!(r32(&s, regs::IDR0.0), i0);
    let s48 = Smmu::new(&mem, SmmuParams::default().with_oas_bits(48));
    assert_eq!(idr5::OAS.get(s48.mmio_read(regs::IDR5.0, 4)), 0b101);
}

#[test]
fn cr0_is_acknowledged_in_cr0ack_and_unimplemented_fields_are_res0() {
    let mem = memory();
    let s = smmu(&mem);
    // SMMUEN, EVENTQEN, CMDQEN stick; PRIQEN (no PRI), ATSCHK (no ATS), VMW (no VMW) are RES0.
    s.mmio_write(regs::CR0.0, 4, 0xffff_ffff);
    assert_eq!(r32(&s, regs::CR0.0), 0b1101);
    assert_eq!(r32(&s, regs::CR0ACK.0), 0b1101);
    s.mmio_write(regs::CR0.0, 4, cr0::CMDQEN.mask());
    assert_eq!(r32(&s, regs::CR0ACK.0), cr0::CMDQEN.mask());
    // CR0ACK is read-only.
    s.mmio_write(regs::CR0ACK.0, 4, 1);
    assert_eq!(r32(&s, regs::CR0ACK.0), cr0::CMDQEN.mask());
    // CR2: RECINVSID only (no EL2, no BTM).
    s.mmio_write(regs::CR2.0, 4, 0xf);
    assert_eq!(r32(&s, regs::CR2.0), cr2::RECINVSID.mask());
}

#[test]
fn gbpa_updates_only_with_update_set_and_controls_the_disabled_smmu() {
    let mem = memory();
    let s = smmu(&mem);
    let t = Transaction::new(3, 0x1234_5000, Access::WRITE);
    // SMMUEN == 0, GBPA.ABORT == 0: bypass, whatever the StreamID.
    let tr = s.translate(&t).unwrap();
    assert_eq!((tr.output, tr.reads), (0x1234_5000, 0));
    // §3.4: beyond the OAS, terminated without an event.
    let far = Transaction::new(3, 1 << 52, Access::READ);
    assert_eq!(s.translate(&far), Err(Abort::Silent(Silent::DisabledBeyondOas)));
    // A write without Update is ignored.
    s.mmio_write(regs::GBPA.0, 4, gbpa::ABORT.mask());
    assert_eq!(r32(&s, regs::GBPA.0), 0x1000);
    assert!(s.translate(&t).is_ok());
    // With Update: applied, Update reads 0 (the update completed).
    s.mmio_write(regs::GBPA.0, 4, gbpa::ABORT.mask() | gbpa::UPDATE.mask());
    assert_eq!(r32(&s, regs::GBPA.0), gbpa::ABORT.mask());
    assert_eq!(s.translate(&t), Err(Abort::Silent(Silent::GbpaAbort)));
    // Enabling the SMMU takes GBPA out of the path.
    let base = alloc(&mem, &mut frames(), 12);
    write_ste(&mem, base + 3 * 64, &ste_with_config(sviommu_smmuv3::spec::StreamConfig::Bypass));
    enable_linear(&s, base, 4);
    assert!(s.translate(&t).is_ok());
}

#[test]
fn gerror_is_read_only_and_gerrorn_holds_only_its_fields() {
    let mem = memory();
    let s = smmu(&mem);
    s.mmio_write(regs::GERROR.0, 4, 0x1fd);
    assert_eq!(r32(&s, regs::GERROR.0), 0, "no error is active out of reset");
    // GERRORN has CMDQ_ERR, the abort and MSI abort errors and SFM_ERR; not CMDQP_ERR.
    s.mmio_write(regs::GERRORN.0, 4, 0xffff_ffff);
    let n = r32(&s, regs::GERRORN.0);
    assert_eq!(n, 0x1fd);
    assert!(!gerror::CMDQP_ERR.is_set(n));
    // An acknowledged-but-inactive toggle leaves GERROR alone.
    assert_eq!(r32(&s, regs::GERROR.0), 0);
}

#[test]
fn strtab_base_is_writable_only_while_smmuen_is_clear() {
    let mem = memory();
    let s = smmu(&mem);
    // Reserved bits (63, 61:56, 5:0) read as zero; RA and ADDR stick.
    s.mmio_write(regs::STRTAB_BASE.0, 8, u64::MAX);
    let all = strtab_base::ADDR.mask() | strtab_base::RA.mask();
    assert_eq!(s.mmio_read(regs::STRTAB_BASE.0, 8), all);
    // Two 32-bit halves.
    s.mmio_write(regs::STRTAB_BASE.0, 4, 0x0002_0040);
    s.mmio_write(regs::STRTAB_BASE.0 + 4, 4, 0x1);
    assert_eq!(s.mmio_read(regs::STRTAB_BASE.0, 8), 0x1_0002_0040);
    assert_eq!(s.mmio_read(regs::STRTAB_BASE.0 + 4, 4), 0x1);
    s.mmio_write(regs::STRTAB_BASE_CFG.0, 4, 0xffff_ffff);
    assert_eq!(r32(&s, regs::STRTAB_BASE_CFG.0), 0x3_07ff, "FMT, SPLIT, LOG2SIZE");
    s.mmio_write(regs::STRTAB_BASE_CFG.0, 4, 0x10);
    enable(&s);
    // §6.3.24: Guarded by SMMUEN: ignored now.
    s.mmio_write(regs::STRTAB_BASE.0, 8, 0x8000);
    s.mmio_write(regs::STRTAB_BASE.0, 4, 0x8000);
    s.mmio_write(regs::STRTAB_BASE_CFG.0, 4, 0x4);
    assert_eq!(s.mmio_read(regs::STRTAB_BASE.0, 8), 0x1_0002_0040);
    assert_eq!(r32(&s, regs::STRTAB_BASE_CFG.0), 0x10);
    // Disabled again: writable again.
    s.mmio_write(regs::CR0.0, 4, 0);
    s.mmio_write(regs::STRTAB_BASE.0, 8, 0x8000);
    assert_eq!(s.mmio_read(regs::STRTAB_BASE.0, 8), 0x8000);
}

#[test]
fn illegal_sizes_and_undefined_offsets_are_raz_wi() {
    let mem = memory();
    let s = smmu(&mem);
    s.mmio_write(regs::STRTAB_BASE_CFG.0, 4, 0x6);
    // A 64-bit access to a 32-bit register, a 16-bit or unaligned access: RAZ/WI.
    assert_eq!(s.mmio_read(regs::IDR0.0, 8), 0);
    assert_eq!(s.mmio_read(regs::IDR0.0, 2), 0);
    assert_eq!(s.mmio_read(regs::STRTAB_BASE_CFG.0 + 1, 4), 0);
    s.mmio_write(regs::STRTAB_BASE_CFG.0, 8, 0x7);
    s.mmio_write(regs::STRTAB_BASE_CFG.0, 2, 0x7);
    assert_eq!(r32(&s, regs::STRTAB_BASE_CFG.0), 0x6);
    // Undefined offsets in page 0 and page 1.
    for o in [0x30, 0x3c, 0x100, 0xe00, 0xfffc, regs::PAGE1, regs::PAGE1 + 0x20, 0x2_0000] {
        s.mmio_write(o, 4, 0xffff_ffff);
        assert_eq!(r32(&s, o), 0, "{o:#x}");
    }
}

#[test]
fn queue_registers_are_storage_in_their_pages() {
    let mem = memory();
    let s = smmu(&mem);
    // The Event queue's PROD and CONS are in page 1; the page 0 aliases are not implemented.
    s.mmio_write(regs::EVENTQ_CONS.0, 4, 0x8000_0005);
    assert_eq!(r32(&s, regs::EVENTQ_CONS.0), 0x8000_0005);
    assert_eq!(r32(&s, regs::EVENTQ_CONS_PAGE0_ALIAS.0), 0);
    s.mmio_write(regs::CMDQ_BASE.0, 8, 0xffff_ffff_ffff_ffff);
    assert_eq!(s.mmio_read(regs::CMDQ_BASE.0, 8), 0x40ff_ffff_ffff_ffff);
    s.mmio_write(regs::CMDQ_PROD.0, 4, 0xffff_ffff);
    assert_eq!(r32(&s, regs::CMDQ_PROD.0), 0xf_ffff);
    // CMDQ_BASE is Guarded by CMDQEN.
    s.mmio_write(regs::CR0.0, 4, cr0::CMDQEN.mask());
    s.mmio_write(regs::CMDQ_BASE.0, 8, 0);
    assert_eq!(s.mmio_read(regs::CMDQ_BASE.0, 8), 0x40ff_ffff_ffff_ffff);
    // No PRI: the PRI queue registers are RES0.
    s.mmio_write(regs::PRIQ_BASE.0, 8, 0x1000);
    assert_eq!(s.mmio_read(regs::PRIQ_BASE.0, 8), 0);
}

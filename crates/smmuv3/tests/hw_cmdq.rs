//! Step (d): the Command queue (IHI 0070 G.b §3.5, §4, §7.1) by raw register writes: wrap
//! flags, CMD_SYNC completion signals, CERROR_ILL / CERROR_ABT stopping the queue at the bad
//! command, recovery through GERRORN, hostile commands, and TLBI + CMD_SYNC racing
//! translations.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use proptest::prelude::*;
use sviommu_memory::HostMemory;
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, VmsaS1};
use sviommu_pgtable::Build;
use sviommu_smmuv3::hw::{Access, Output, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{self, cons, gerror, idr0, queue_base, StallModel};
use sviommu_smmuv3::spec::{CError, Command, Opcode, SyncCs};

const QBASE: u64 = 0x8000;

fn params_with(idr0_bits: &[sviommu_memory::bits::Field32]) -> SmmuParams {
    let d = SmmuParams::default();
    let i0 = idr0_bits.iter().fold(u64::from(d.idr0), |v, f| f.with(v, true));
    SmmuParams { idr0: u32::try_from(i0).unwrap(), ..d }
}

fn msi_sync(addr: u64, data: u32) -> Command {
    let mut c = sync();
    c.set_cs(SyncCs::SigIrq);
    c.set_msiaddress(addr);
    c.set_msidata(data);
    c
}

fn gerror_active(s: &Smmu<&HostMemory>) -> bool {
    let g = s.mmio_read(regs::GERROR.0, 4) ^ s.mmio_read(regs::GERRORN.0, 4);
    gerror::CMDQ_ERR.is_set(g)
}

#[test]
fn cons_follows_prod_across_wraps() {
    let mem = memory();
    let s = Smmu::new(&mem, params_with(&[idr0::MSI]));
    let mut q = Cmdq::enable(&s, QBASE, 2); // 4 entries
    for round in 0..5u32 {
        q.submit(&mem, &s, &[sync(), sync(), msi_sync(0x1000, round)]);
        let want = u64::from(q.prod.to_reg(2));
        assert_eq!(Cmdq::cons(&s) & 0xff_ffff, want, "round {round}");
        assert_eq!(s.drain_outputs(), [Output::Msi { addr: 0x1000, data: round }]);
    }
    // 15 commands: index 3, wrap flag toggled three times (set).
    assert_eq!(Cmdq::cons(&s), 0b111);
}

#[test]
fn cmd_sync_signals_msi_wired_irq_or_sev() {
    let mem = memory();
    // With MSIs: an MSI write; MSIAddress 0 means none.
    let s = Smmu::new(&mem, params_with(&[idr0::MSI, idr0::SEV]));
    let mut q = Cmdq::enable(&s, QBASE, 3);
    let mut sev = sync();
    sev.set_cs(SyncCs::SigSev);
    q.submit(&mem, &s, &[msi_sync(0xfee0_0000, 0x42), msi_sync(0, 1), sync(), sev]);
    assert_eq!(s.drain_outputs(), [Output::Msi { addr: 0xfee0_0000, data: 0x42 }, Output::Sev]);
    assert!(s.drain_outputs().is_empty(), "drained");
    // Without MSIs or SEV: the wired interrupt; SIG_SEV behaves as SIG_NONE.
    let s = Smmu::new(&mem, SmmuParams::default());
    let mut q = Cmdq::enable(&s, QBASE, 3);
    q.submit(&mem, &s, &[msi_sync(0xfee0_0000, 0x42), sev]);
    assert_eq!(s.drain_outputs(), [Output::CmdSyncIrq]);
}

#[test]
fn commands_wait_for_cmdqen() {
    let mem = memory();
    let s = Smmu::new(&mem, params_with(&[idr0::MSI]));
    let mut b = queue_base::ADDR.set(0, QBASE >> 5);
    b = queue_base::LOG2SIZE.set(b, 3);
    s.mmio_write(regs::CMDQ_BASE.0, 8, b);
    write_words(&mem, QBASE, &msi_sync(0x1000, 7).words());
    s.mmio_write(regs::CMDQ_PROD.0, 4, 1);
    assert_eq!((Cmdq::cons(&s), s.drain_outputs()), (0, vec![]));
    s.mmio_write(regs::CR0.0, 4, regs::cr0::CMDQEN.with(0, true));
    assert_eq!(
        (Cmdq::cons(&s), s.drain_outputs()),
        (1, vec![Output::Msi { addr: 0x1000, data: 7 }])
    );
}

/// §7.1: an illegal command stops the queue at itself with CERROR_ILL and GERROR.CMDQ_ERR;
/// nothing after it runs until software fixes it and acknowledges through GERRORN.
#[test]
fn an_illegal_command_stops_the_queue_until_acknowledged() {
    let mem = memory();
    let s = Smmu::new(&mem, params_with(&[idr0::MSI]).with_stall_model(StallModel::TerminateOnly));
    let mut q = Cmdq::enable(&s, QBASE, 3);
    let mut res0 = sync();
    res0.0[1] |= 1; // RES0 bit 64 of CMD_SYNC
    let mut bad_cs = sync();
    bad_cs.set_cs_raw(0b11);
    let mut resume = Command::new(Opcode::Resume);
    resume.set_stag(1);
    let atc = Command::new(Opcode::AtcInv);
    let pri = Command::new(Opcode::PriResp);
    let mut cd_ssid = Command::new(Opcode::CfgiCd);
    cd_ssid.set_ssid(0xf_ffff); // in range (SSIDSIZE 20)
    let mut sid = Command::new(Opcode::CfgiSte);
    sid.set_sid(1 << 16); // beyond SIDSIZE 16
    let mut scale = Command::new(Opcode::TlbiNhVaa);
    scale.set_scale(0x20); // SCALE[5] without DS
    let illegal = [
        Command::from_words([0xff, 0]),
        Command::new(Opcode::TlbiEl2All), // no EL2
        Command::new(Opcode::TlbiSnhAll), // Secure only
        Command::new(Opcode::CfgiVmsPidm),
        res0,
        bad_cs,
        resume, // terminate-only stall model
        atc,    // no ATS
        pri,    // no PRI
        sid,
        scale,
    ];
    for (n, bad) in illegal.iter().enumerate() {
        let start = q.prod;
        q.submit(&mem, &s, &[sync(), *bad, msi_sync(0x1000, 1)]);
        let c = Cmdq::cons(&s);
        let at_bad = start.next(3);
        assert_eq!(cons::RD.get(c), u64::from(at_bad.to_reg(3)), "{n}: {bad:?}");
        assert_eq!(cons::ERR.get(c), CError::Ill as u64, "{n}: {bad:?}");
        assert!(gerror_active(&s));
        assert!(s.drain_outputs().is_empty(), "nothing after the bad command ran");
        // More PROD writes do nothing while the error is active.
        q.publish(&s);
        assert_eq!(Cmdq::cons(&s), c);
        // Fix it (CMD_SYNC in its place) and acknowledge: the queue resumes.
        write_words(&mem, QBASE + 16 * u64::from(at_bad.index), &cd_ssid.words());
        let g = s.mmio_read(regs::GERROR.0, 4);
        s.mmio_write(regs::GERRORN.0, 4, g);
        assert!(!gerror_active(&s));
        assert_eq!(cons::RD.get(Cmdq::cons(&s)), u64::from(q.prod.to_reg(3)));
        assert_eq!(s.drain_outputs(), [Output::Msi { addr: 0x1000, data: 1 }]);
    }
}

#[test]
fn a_command_fetch_outside_memory_is_cerror_abt() {
    let mem = memory();
    let s = smmu(&mem);
    let mut q = Cmdq::enable(&s, HOLE, 3);
    q.prod = q.prod.next(3);
    q.publish(&s);
    let c = Cmdq::cons(&s);
    assert_eq!((cons::RD.get(c), cons::ERR.get(c)), (0, CError::Abt as u64));
    assert!(gerror_active(&s));
}

#[test]
fn atc_inv_and_pri_resp_reach_the_device_when_advertised() {
    let mem = memory();
    let s = Smmu::new(&mem, params_with(&[idr0::ATS, idr0::PRI]));
    let mut q = Cmdq::enable(&s, QBASE, 3);
    let mut atc = Command::new(Opcode::AtcInv);
    atc.set_sid(5);
    atc.set_ssv(true);
    atc.set_ssid(9);
    atc.set_address(0x1234_5000);
    atc.set_atc_size(3);
    let mut pri = Command::new(Opcode::PriResp);
    pri.set_sid(5);
    pri.set_prgindex(17);
    pri.set_resp(sviommu_smmuv3::spec::PriResp::Success);
    q.submit(&mem, &s, &[atc, pri, sync()]);
    assert_eq!(
        s.drain_outputs(),
        [
            Output::AtcInvalidate {
                sid: 5,
                ssid: Some(9),
                global: false,
                addr: 0x1234_5000,
                size_lg2: 3
            },
            Output::PriResponse { sid: 5, ssid: None, prg_index: 17, response_code: 0 },
        ]
    );
    assert!(!gerror_active(&s));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Hostile commands (any opcode byte, any bits) never panic (no command reads memory
    /// besides its own fetch from the queue): every batch ends with CONS at PROD, or stopped
    /// with CERROR_ILL at the command.
    #[test]
    fn hostile_commands_give_cerrors_or_effects(
        cmds in prop::collection::vec(
            (prop_oneof![any::<u8>(), prop::sample::select(
                Opcode::ALL.iter().map(|o| *o as u8).collect::<Vec<_>>())], any::<[u64; 2]>(),
             any::<bool>()),
            1..24),
    ) {
        let mem = memory();
        let s = Smmu::new(&mem, params_with(&[idr0::MSI, idr0::ATS]));
        let mut q = Cmdq::enable(&s, QBASE, 3);
        for (op, words, clean) in cmds {
            let mut c = Command::from_words(words);
            if clean {
                // Keep only the fields this opcode has: reach the command's effects.
                c = Command::from_words([u64::from(op), 0]);
                if let Ok(layout) = c.opcode().map(|o| o.layout().unwrap_or(&[])) {
                    for nf in layout {
                        nf.field.set(&mut c.0, nf.field.get(&words));
                    }
                }
            } else {
                c.set_opcode_raw(op);
            }
            let before = q.prod;
            q.submit(&mem, &s, &[c]);
            let r = Cmdq::cons(&s);
            if gerror_active(&s) {
                prop_assert_eq!(cons::RD.get(r), u64::from(before.to_reg(3)));
                prop_assert_eq!(cons::ERR.get(r), CError::Ill as u64);
                // Replace it and acknowledge.
                write_words(&mem, QBASE + 16 * u64::from(before.index), &sync().words());
                let g = s.mmio_read(regs::GERROR.0, 4);
                s.mmio_write(regs::GERRORN.0, 4, g);
            }
            prop_assert!(!gerror_active(&s));
            prop_assert_eq!(cons::RD.get(Cmdq::cons(&s)), u64::from(q.prod.to_reg(3)));
        }
        let _ = s.drain_outputs();
    }
}

/// Threads translate while another remaps a page and runs TLBI + CMD_SYNC: a translation that
/// starts after the PROD write returned (the CMD_SYNC consumed) never sees the old mapping.
#[test]
fn no_translation_after_cmd_sync_sees_an_invalidated_mapping() {
    const VA: u64 = 0x40_0000;
    let mem = memory();
    let mut fr = frames();
    let s1 = VmsaS1::create(&mem, &mut fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    s1.map(&mem, &mut fr, VA, 0x9000_0000, 12, S1Attrs::ALL).unwrap();
    let cd = alloc(&mem, &mut fr, 12);
    write_cd(&mem, cd, &cd_for(&s1, 1));
    let s = Smmu::new(&mem, SmmuParams::default());
    single_ste(&mem, &mut fr, &s, &ste_s1(cd, 0, None));
    let mut q = Cmdq::enable(&s, QBASE, 4);
    let synced = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| {
                let mut n = 0u32;
                while !stop.load(Ordering::Acquire) || n < 100 {
                    let after = synced.load(Ordering::Acquire);
                    // The page is briefly unmapped between invalidations: faults are fine
                    // before the last CMD_SYNC.
                    let out = s.translate(&Transaction::new(0, VA, Access::READ));
                    if after {
                        assert_eq!(out.map(|t| t.output), Ok(0xc000_0000), "after CMD_SYNC");
                    }
                    n += 1;
                }
            });
        }
        for i in 0..50u64 {
            let pa = match i {
                49 => 0xc000_0000,
                _ if i % 2 == 0 => 0xa000_0000,
                _ => 0xb000_0000,
            };
            s1.unmap(&mem, VA, 0x1000).unwrap();
            s1.map(&mem, &mut fr, VA, pa, 12, S1Attrs::ALL).unwrap();
            let mut inv = Command::new(Opcode::TlbiNhVa);
            inv.set_asid(1);
            inv.set_address(VA);
            q.submit(&mem, &s, &[inv, sync()]);
            if i == 49 {
                synced.store(true, Ordering::Release);
            }
        }
        stop.store(true, Ordering::Release);
    });
}

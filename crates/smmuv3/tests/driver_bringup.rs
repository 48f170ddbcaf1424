//! The driver's bring-up and Command queue, seen through the model's registers and the
//! device's view: queues and translation enabled, unattached StreamIDs aborting the architected
//! ways, CMD_SYNC by polling and by MSI, a refused command reported and recovered from.

mod driver_common;

use driver_common::*;
use sviommu_smmuv3::driver::{
    Attach, DomainConfig, DriverConfig, DriverError, Prot, SmmuDriver, StreamTableFormat, SyncMode,
};
use sviommu_smmuv3::hw::{Abort, Silent, Smmu, SmmuParams};
use sviommu_smmuv3::spec::regs::{self, cr0, idr0};
use sviommu_smmuv3::spec::{CError, Command, EventId, Granule};

#[test]
fn bring_up_enables_queues_then_translation_and_unattached_streams_abort() {
    let mem = memory();
    let smmu = Smmu::new(&mem, ats_pri_params());
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    let ack = smmu.mmio_read(regs::CR0ACK.0, 4);
    for f in [cr0::SMMUEN, cr0::CMDQEN, cr0::EVENTQEN, cr0::PRIQEN] {
        assert!(f.is_set(ack), "{f:?} not acknowledged in {ack:#x}");
    }
    let caps = *drv.capabilities();
    assert!(caps.s1p && caps.s2p && caps.pri && caps.ats && caps.two_level_st);
    assert_eq!((caps.sidsize, caps.ssidsize, caps.oas_bits), (16, 20, 52));
    // The bring-up's CFGI_ALL, TLBI_NSNH_ALL and CMD_SYNC went through.
    assert_eq!((drv.stats().commands, drv.stats().syncs, drv.stats().command_errors), (3, 1, 0));

    // A StreamID whose level-2 array exists (because a neighbour is attached) has an abort
    // STE: terminated without an event.
    drv.attach(0x101, Attach::Bypass).unwrap();
    assert_eq!(smmu.translate(&read(0x101, 0x1234)).unwrap().output, 0x1234);
    assert_eq!(smmu.translate(&read(0x102, 0x1234)), Err(Abort::Silent(Silent::SteAbort)));
    // A StreamID in a span nobody attached has no STE: C_BAD_STREAMID, recorded (RECINVSID).
    assert_eq!(event(smmu.translate(&read(0x2345, 0))).id, EventId::CBadStreamid);
    let evs = drv.drain_events().unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!((evs[0].id, evs[0].sid), (Ok(EventId::CBadStreamid), 0x2345));
    // Back to abort: the STE aborts again, no event.
    drv.attach(0x101, Attach::Abort).unwrap();
    assert_eq!(smmu.translate(&read(0x101, 0x1234)), Err(Abort::Silent(Silent::SteAbort)));
    assert!(drv.drain_events().unwrap().is_empty());
}

#[test]
fn a_linear_stream_table_aborts_every_unattached_stream() {
    let mem = memory();
    // 8-bit StreamIDs, linear: 256 STEs, all abort.
    let d = params();
    let i1 = regs::idr1::SIDSIZE.set(u64::from(d.idr1), 8);
    let smmu = Smmu::new(&mem, SmmuParams { idr1: u32::try_from(i1).unwrap(), ..d });
    let config = DriverConfig { stream_table: StreamTableFormat::Linear, ..Default::default() };
    let mut drv = driver(&smmu, &mem, config);
    for sid in [0, 7, 255] {
        assert_eq!(smmu.translate(&read(sid, 0)), Err(Abort::Silent(Silent::SteAbort)));
    }
    let dom =
        drv.alloc_domain(DomainConfig::S2 { granule: Granule::Size4K, ias_bits: 40 }).unwrap();
    drv.map(dom, 0x10_0000, 0x8000_0000, 0x1000, Prot::RW).unwrap();
    drv.attach(255, Attach::Domain(dom)).unwrap();
    assert_eq!(output(smmu.translate(&read(255, 0x10_0123))), 0x8000_0123);
    assert_eq!(
        drv.attach(256, Attach::Bypass),
        Err(DriverError::SidOutOfRange { sid: 256, sidsize: 8 })
    );
}

#[test]
fn cmd_sync_by_msi_waits_for_the_msi_write() {
    let mem = memory();
    let d = params();
    let params =
        SmmuParams { idr0: u32::try_from(idr0::MSI.with(u64::from(d.idr0), true)).unwrap(), ..d };
    let smmu = Smmu::new(&mem, params);
    let _clean = CleanAtEnd(&smmu);
    let bridge = MsiDelivery {
        smmu: &smmu,
        mem: &mem,
        others: Default::default(),
        msis: Default::default(),
    };
    let config = DriverConfig { sync: SyncMode::Msi, ..Default::default() };
    let mut drv = SmmuDriver::new(&bridge, &mem, frames(), config).unwrap();
    assert_eq!(*bridge.msis.lock().unwrap(), 1, "the bring-up's CMD_SYNC signalled by MSI");
    drv.sync().unwrap();
    assert_eq!(*bridge.msis.lock().unwrap(), 2);
    assert!(bridge.others.lock().unwrap().is_empty());
    // Without SMMU_IDR0.MSI the mode is refused.
    let plain = Smmu::new(&mem, driver_common::params());
    let r = SmmuDriver::new(&plain, &mem, frames(), config);
    assert_eq!(r.err(), Some(DriverError::Unsupported("MSIs (CMD_SYNC completion by MSI)")));
}

#[test]
fn cmd_sync_without_delivery_times_out_as_a_typed_error() {
    let mem = memory();
    let d = params();
    let params =
        SmmuParams { idr0: u32::try_from(idr0::MSI.with(u64::from(d.idr0), true)).unwrap(), ..d };
    let smmu = Smmu::new(&mem, params);
    let _clean = CleanAtEnd(&smmu);
    // Nobody writes the MSIs to memory: the wait gives up after the poll limit.
    let config = DriverConfig { sync: SyncMode::Msi, poll_limit: 10, ..Default::default() };
    let r = SmmuDriver::new(&smmu, &mem, frames(), config);
    assert!(matches!(r, Err(DriverError::SyncTimeout { .. })), "{r:?}");
}

#[test]
fn a_refused_command_is_reported_with_its_cerror_and_the_queue_goes_on() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    let mut drv = driver(&smmu, &mem, DriverConfig::default());
    // A Reserved opcode, then a legal command behind it.
    let bad = Command::from_words([0x7f, 0]);
    let r = drv.submit(&[bad, Command::cfgi_all()]);
    assert_eq!(r, Err(DriverError::Command { error: Ok(CError::Ill), command: bad }));
    assert_eq!(drv.stats().command_errors, 1);
    // The error was acknowledged and the queue drained: CONS caught up with PROD.
    let active = smmu.mmio_read(regs::GERROR.0, 4) ^ smmu.mmio_read(regs::GERRORN.0, 4);
    assert_eq!(active, 0);
    assert_eq!(
        regs::cons::RD.get(smmu.mmio_read(regs::CMDQ_CONS.0, 4)),
        regs::prod::WR.get(smmu.mmio_read(regs::CMDQ_PROD.0, 4))
    );
    drv.sync().unwrap();
}

#[test]
fn the_command_queue_wraps() {
    let mem = memory();
    let smmu = Smmu::new(&mem, params());
    let _clean = CleanAtEnd(&smmu);
    // A 4-entry Command queue: every submit with its CMD_SYNC goes round it many times.
    let config = DriverConfig { cmdq_log2: 2, ..Default::default() };
    let mut drv = driver(&smmu, &mem, config);
    let dom =
        drv.alloc_domain(DomainConfig::S1 { granule: Granule::Size4K, ias_bits: 39 }).unwrap();
    for i in 0..20u64 {
        drv.map(dom, i << 12, 0x9000_0000 + (i << 12), 0x1000, Prot::RW).unwrap();
        drv.flush_tlb(dom, Some((i << 12, 0x1000))).unwrap();
    }
    drv.attach(3, Attach::Domain(dom)).unwrap();
    assert_eq!(output(smmu.translate(&read(3, 19 << 12))), 0x9001_3000);
    assert_eq!(drv.stats().command_errors, 0);
}

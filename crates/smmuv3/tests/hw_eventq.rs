//! Step (e): the Event queue (IHI 0070 G.b §3.5, §7.2, §7.4) by raw register writes: records
//! in order as the spec lays them out, PROD's wrap flag, overflow (OVFLG, the drop count,
//! recovery), events the SMMU does not record, the queue interrupt, and a queue outside memory.

mod common;

use common::*;
use proptest::prelude::*;
use sviommu_memory::{FrameAllocator, HostMemory, Hpa};
use sviommu_pgtable::vmsa::{Granule as PtGranule, VmsaS1};
use sviommu_smmuv3::hw::{Abort, Access, Output, QueueStats, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{self, cons, cr0, cr2, gerror, idr0, irq_ctrl, prod, queue_base};
use sviommu_smmuv3::spec::{Class, EventId, EventRecord, StreamConfig};

/// The Event queue lives below the frames the tables come from.
const EQ: u64 = 0x2000;
/// Stage-1 stream with CD.R == 1 (its F_TRANSLATION is recorded).
const SID_S1_R: u32 = 5;
/// Stage-1 stream with CD.R == 0 (its F_TRANSLATION is not recorded).
const SID_S1_NOR: u32 = 4;
/// Bypass: no event.
const SID_BYPASS: u32 = 6;
/// Config abort: terminated silently.
const SID_ABORT: u32 = 7;
/// StreamIDs 0..4 have invalid STEs (V == 0): C_BAD_STE. 8 and up are beyond the table.
const TABLE_LOG2: u64 = 3;
const VA: u64 = 0x40_0000;

fn params(msi: bool) -> SmmuParams {
    let d = SmmuParams::default();
    let i0 = idr0::MSI.with(u64::from(d.idr0), msi);
    SmmuParams { idr0: u32::try_from(i0).unwrap(), ..d }
}

/// Eight STEs: four invalid, stage 1 with and without CD.R, bypass, abort; SMMU enabled.
fn streams(mem: &HostMemory, fr: &mut FrameAllocator<Hpa>, s: &Smmu<&HostMemory>) {
    let st = alloc(mem, fr, 12);
    let s1 = VmsaS1::create(mem, fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    for (sid, r) in [(SID_S1_NOR, false), (SID_S1_R, true)] {
        let cd_addr = alloc(mem, fr, 12);
        let mut cd = cd_for(&s1, 1);
        cd.set_r(r);
        write_cd(mem, cd_addr, &cd);
        write_ste(mem, st + 64 * u64::from(sid), &ste_s1(cd_addr, 0, None));
    }
    write_ste(mem, st + 64 * u64::from(SID_BYPASS), &ste_with_config(StreamConfig::Bypass));
    write_ste(mem, st + 64 * u64::from(SID_ABORT), &ste_with_config(StreamConfig::Abort));
    enable_linear(s, st, TABLE_LOG2);
}

/// Programs SMMU_EVENTQ_BASE and sets SMMU_CR0.EVENTQEN.
fn eventq_enable(s: &Smmu<&HostMemory>, base: u64, log2size: u8) {
    let mut b = queue_base::ADDR.set(0, base >> 5);
    b = queue_base::LOG2SIZE.set(b, u64::from(log2size));
    s.mmio_write(regs::EVENTQ_BASE.0, 8, b);
    let v = s.mmio_read(regs::CR0.0, 4);
    s.mmio_write(regs::CR0.0, 4, cr0::EVENTQEN.with(v, true));
    assert!(cr0::EVENTQEN.is_set(s.mmio_read(regs::CR0ACK.0, 4)));
}

/// A rig: memory, an SMMU with the streams above, an Event queue of 2^`log2size` entries.
fn rig(mem: &HostMemory, msi: bool, log2size: u8) -> Smmu<&HostMemory> {
    let s = Smmu::new(mem, params(msi));
    let mut fr = frames();
    streams(mem, &mut fr, &s);
    eventq_enable(&s, EQ, log2size);
    s
}

fn prod_reg(s: &Smmu<&HostMemory>) -> u64 {
    s.mmio_read(regs::EVENTQ_PROD.0, 4)
}

fn cons_reg(s: &Smmu<&HostMemory>) -> u64 {
    s.mmio_read(regs::EVENTQ_CONS.0, 4)
}

/// What software does: reads every record from CONS to PROD, then writes CONS.
fn consume(mem: &HostMemory, s: &Smmu<&HostMemory>, log2size: u8, ack: bool) -> Vec<EventRecord> {
    consume_events(mem, s, EQ, log2size, ack)
}

fn tx(sid: u32, addr: u64) -> Transaction {
    Transaction::new(sid, addr, Access::READ)
}

#[test]
fn records_are_written_in_order_with_the_spec_layout() {
    let mem = memory();
    let s = rig(&mem, false, 4);
    let mut returned = Vec::new();
    for sid in [2, 0, 3] {
        returned.push(event(s.translate(&tx(sid, 0x1000))));
    }
    let w = Transaction::new(SID_S1_R, VA + 0x123, Access::WRITE);
    returned.push(event(s.translate(&w)));
    assert_eq!(prod_reg(&s), 4);
    let recs = consume(&mem, &s, 4, false);
    assert_eq!(recs.len(), 4);
    // §7.3.5 C_BAD_STE: the event number in [7:0], StreamID in [63:32], nothing else.
    for (r, sid) in recs.iter().zip([2u64, 0, 3]) {
        assert_eq!(r.words(), [0x04 | sid << 32, 0, 0, 0]);
    }
    // §7.3.13 F_TRANSLATION at stage 1 for a write: CLASS == IN, RnW == 0, InputAddr.
    let r = recs[3];
    assert_eq!(r.id(), Ok(EventId::FTranslation));
    assert_eq!((r.ssv(), r.sid(), r.rnw(), r.s2()), (false, SID_S1_R, false, false));
    assert_eq!((r.class(), r.input_addr(), r.stall()), (Ok(Class::In), VA + 0x123, false));
    assert_eq!(r.words()[0], 0x10 | u64::from(SID_S1_R) << 32);
    assert_eq!(r.words()[1] >> 32, 0b10 << 8, "CLASS == IN at [105:104], RnW == 0");
    assert_eq!(r.words()[2], VA + 0x123);
    // What translate returned is what was written.
    let written: Vec<_> = returned.iter().map(|e| e.to_record()).collect();
    assert_eq!(recs, written);
    assert_eq!(s.stats(), QueueStats { events_written: 4, ..QueueStats::default() });
}

#[test]
fn prod_advances_with_its_wrap_flag() {
    let mem = memory();
    let s = rig(&mem, false, 2); // 4 entries
    let mut seen = 0;
    for round in 0..5u64 {
        for _ in 0..3 {
            let _ = s.translate(&tx(1, 0));
        }
        seen += 3;
        // Index seen % 4, wrap flag (bit 2) toggling every 4 records.
        assert_eq!(prod_reg(&s), (seen % 4) | ((seen / 4) % 2) << 2, "round {round}");
        assert_eq!(consume(&mem, &s, 2, false).len(), 3);
        assert_eq!(cons_reg(&s), prod_reg(&s));
    }
    assert_eq!(s.stats().events_overflowed, 0);
}

#[test]
fn a_full_queue_drops_and_counts_toggles_ovflg_once_and_recovers() {
    let mem = memory();
    let s = rig(&mem, false, 1); // 2 entries
    for sid in 0..5 {
        let _ = s.translate(&tx(sid % 4, 0));
    }
    let st = s.stats();
    assert_eq!((st.events_written, st.events_overflowed), (2, 3));
    // One overflow condition: OVFLG toggled once, not per dropped record; PROD full.
    let p = prod_reg(&s);
    assert!(prod::OVFLG.is_set(p));
    assert_eq!(prod::WR.get(p), 0b10);
    // Records are the first two; the dropped ones never reach memory.
    let recs = consume(&mem, &s, 1, false);
    assert_eq!(recs.iter().map(|r| r.sid()).collect::<Vec<_>>(), [0, 1]);
    // §7.4: the Event queue keeps going once there is room, acknowledged or not; a new drop
    // while the overflow is unacknowledged does not toggle OVFLG back.
    for _ in 0..3 {
        let _ = s.translate(&tx(2, 0));
    }
    assert!(prod::OVFLG.is_set(prod_reg(&s)));
    assert_eq!(s.stats().events_overflowed, 4);
    // Software consumes and acknowledges: the condition ends (OVACKFLG == OVFLG) ...
    assert_eq!(consume(&mem, &s, 1, true).len(), 2);
    assert!(cons::OVACKFLG.is_set(cons_reg(&s)));
    let _ = s.translate(&tx(3, 0));
    assert_eq!(consume(&mem, &s, 1, true)[0].sid(), 3);
    assert!(prod::OVFLG.is_set(prod_reg(&s)), "no overflow, no toggle");
    // ... and the next overflow toggles OVFLG again (back to 0).
    for _ in 0..3 {
        let _ = s.translate(&tx(0, 0));
    }
    assert!(!prod::OVFLG.is_set(prod_reg(&s)));
    let st = s.stats();
    assert_eq!((st.events_written, st.events_overflowed), (7, 5));
}

#[test]
fn events_the_smmu_does_not_record_are_not_written() {
    let mem = memory();
    let s = rig(&mem, false, 3);
    // CD.R == 0: the stage-1 F_TRANSLATION is returned with record == false and not written.
    let e = event(s.translate(&tx(SID_S1_NOR, VA)));
    assert_eq!((e.id, e.record), (EventId::FTranslation, false));
    // Silent terminations and bypass write nothing.
    assert!(matches!(s.translate(&tx(SID_ABORT, VA)), Err(Abort::Silent(_))));
    assert!(s.translate(&tx(SID_BYPASS, VA)).is_ok());
    // §7.3.3: C_BAD_STREAMID only with SMMU_CR2.RECINVSID.
    assert_eq!(id(s.translate(&tx(9, 0))), EventId::CBadStreamid);
    assert_eq!(prod_reg(&s), 0);
    assert_eq!(s.stats(), QueueStats::default());
    s.mmio_write(regs::CR2.0, 4, cr2::RECINVSID.with(0, true));
    let _ = s.translate(&tx(9, 0));
    let _ = s.translate(&tx(SID_S1_R, VA));
    let recs = consume(&mem, &s, 3, false);
    let ids: Vec<_> = recs.iter().map(|r| (r.id(), r.sid())).collect();
    assert_eq!(ids, [(Ok(EventId::CBadStreamid), 9), (Ok(EventId::FTranslation), SID_S1_R)]);
}

#[test]
fn the_queue_interrupt_fires_on_empty_to_non_empty() {
    let mem = memory();
    let s = rig(&mem, true, 3);
    s.mmio_write(regs::EVENTQ_IRQ_CFG0.0, 8, 0xfee0_1000);
    s.mmio_write(regs::EVENTQ_IRQ_CFG1.0, 4, 0x55);
    // IRQ_CTRL.EVENTQ_IRQEN == 0: nothing.
    let _ = s.translate(&tx(0, 0));
    assert!(s.drain_outputs().is_empty());
    consume(&mem, &s, 3, false);
    s.mmio_write(regs::IRQ_CTRL.0, 4, irq_ctrl::EVENTQ_IRQEN.with(0, true));
    assert!(irq_ctrl::EVENTQ_IRQEN.is_set(s.mmio_read(regs::IRQ_CTRLACK.0, 4)));
    let _ = s.translate(&tx(0, 0));
    let _ = s.translate(&tx(1, 0));
    let msi = Output::Msi { addr: 0xfee0_1000, data: 0x55 };
    assert_eq!(s.drain_outputs(), [msi], "only the first record makes it non-empty");
    consume(&mem, &s, 3, false);
    let _ = s.translate(&tx(2, 0));
    assert_eq!(s.drain_outputs(), [msi]);
    // Without SMMU_IDR0.MSI: the wired interrupt.
    let s = rig(&mem, false, 3);
    s.mmio_write(regs::IRQ_CTRL.0, 4, irq_ctrl::EVENTQ_IRQEN.with(0, true));
    let _ = s.translate(&tx(0, 0));
    assert_eq!(s.drain_outputs(), [Output::EventqIrq]);
}

#[test]
fn a_queue_outside_memory_raises_eventq_abt_err() {
    let mem = memory();
    let s = Smmu::new(&mem, params(false));
    let mut fr = frames();
    streams(&mem, &mut fr, &s);
    let mut b = queue_base::ADDR.set(0, HOLE >> 5);
    b = queue_base::LOG2SIZE.set(b, 2);
    s.mmio_write(regs::EVENTQ_BASE.0, 8, b);
    let v = s.mmio_read(regs::CR0.0, 4);
    s.mmio_write(regs::CR0.0, 4, cr0::EVENTQEN.with(v, true));
    let _ = s.translate(&tx(0, 0));
    let _ = s.translate(&tx(1, 0));
    let active = s.mmio_read(regs::GERROR.0, 4) ^ s.mmio_read(regs::GERRORN.0, 4);
    assert_eq!(active, gerror::EVENTQ_ABT_ERR.mask(), "one active error, toggled once");
    assert_eq!(prod_reg(&s), 0, "PROD does not move");
    assert_eq!(s.stats(), QueueStats { events_aborted: 2, ..QueueStats::default() });
}

#[test]
fn events_with_the_queue_disabled_are_counted() {
    let mem = memory();
    let s = Smmu::new(&mem, params(false));
    let mut fr = frames();
    streams(&mem, &mut fr, &s);
    let _ = s.translate(&tx(0, 0));
    assert_eq!(s.stats(), QueueStats { events_disabled: 1, ..QueueStats::default() });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random transactions, random queue sizes, software consuming at random: every event the
    /// SMMU records is either in the queue or counted as dropped, and the records read back
    /// are exactly the recorded events that were not dropped, in order.
    #[test]
    fn written_plus_dropped_is_every_recordable_event(
        log2size in 0u8..4,
        recinvsid in any::<bool>(),
        ops in prop::collection::vec((0u32..11, any::<bool>(), any::<bool>()), 1..60),
    ) {
        let mem = memory();
        let s = rig(&mem, true, log2size);
        s.mmio_write(regs::CR2.0, 4, cr2::RECINVSID.with(0, recinvsid));
        let mut recordable = 0u64;
        let mut expected = Vec::new();
        let mut read = Vec::new();
        let capacity = 1usize << log2size;
        let mut queued = 0usize;
        for (sid, write, drain) in ops {
            let access = if write { Access::WRITE } else { Access::READ };
            if let Err(Abort::Event(e)) = s.translate(&Transaction::new(sid, VA, access)) {
                if e.record {
                    recordable += 1;
                    if queued < capacity {
                        queued += 1;
                        expected.push(e.to_record());
                    }
                }
            }
            if drain {
                read.extend(consume(&mem, &s, log2size, true));
                queued = 0;
            }
        }
        read.extend(consume(&mem, &s, log2size, true));
        let st = s.stats();
        prop_assert_eq!(st.events_written + st.events_overflowed, recordable);
        prop_assert_eq!(st.events_written, read.len() as u64);
        prop_assert_eq!(read, expected);
        prop_assert_eq!(st.events_aborted + st.events_disabled, 0);
    }
}

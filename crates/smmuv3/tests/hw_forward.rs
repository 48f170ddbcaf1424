//! The forwarding hook (`hw::Forward`): every legal command reaches it, in order, where the
//! hardware acts on it and before CONS moves past it; a refusal is the command's CERROR; the
//! hook reads STEs with the model's own fetch and checks (§5.2.2).

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use sviommu_smmuv3::hw::{Abort, Forward, Smmu, SmmuParams, StreamLookup};
use sviommu_smmuv3::spec::regs::{self, cons, gerror};
use sviommu_smmuv3::spec::ste::StreamConfig;
use sviommu_smmuv3::spec::{CError, Command, EventId, Opcode};

const QBASE: u64 = 0x8000;

/// What the hook saw: the command, and for CMD_CFGI_STE the STE's Config or the event number.
type Seen = (Command, Option<Result<StreamConfig, Option<EventId>>>);

/// Records every command it is handed and what the STE lookup of its StreamID gave; refuses
/// CMD_TLBI_NH_ALL.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

impl Forward for Recorder {
    fn command(&self, cmd: &Command, streams: &mut dyn StreamLookup) -> Result<(), CError> {
        let ste = (cmd.opcode() == Ok(Opcode::CfgiSte)).then(|| {
            streams.ste(cmd.sid()).map(|s| s.config().unwrap()).map_err(|a: Abort| a.id())
        });
        self.seen.lock().unwrap().push((*cmd, ste));
        if cmd.opcode() == Ok(Opcode::TlbiNhAll) {
            return Err(CError::Ill);
        }
        Ok(())
    }
}

#[test]
fn legal_commands_reach_the_hook_in_order_and_its_refusal_is_cerror() {
    let mem = memory();
    let mut f = frames();
    let rec = Arc::new(Recorder::default());
    let hook: Arc<dyn Forward> = rec.clone();
    let s = Smmu::new(&mem, SmmuParams::default()).with_forward(hook);
    // STE 0 bypass; STE 1 all zero (V == 0: C_BAD_STE).
    let base = alloc(&mem, &mut f, 12);
    write_ste(&mem, base, &ste_with_config(StreamConfig::Bypass));
    enable_linear(&s, base, 1);
    let mut q = Cmdq::enable(&s, QBASE, 3);
    let cfgi = |sid| {
        let mut c = Command::new(Opcode::CfgiSte);
        c.set_sid(sid);
        c
    };
    // An illegal command (unknown opcode) stops the queue before the hook.
    let bad = Command::from_words([0x7f, 0]);
    q.submit(&mem, &s, &[cfgi(0), cfgi(1), sync(), bad, sync()]);
    let seen = rec.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], (cfgi(0), Some(Ok(StreamConfig::Bypass))));
    assert_eq!(seen[1], (cfgi(1), Some(Err(Some(EventId::CBadSte)))));
    assert_eq!(seen[2], (sync(), None));
    let c = Cmdq::cons(&s);
    assert_eq!((cons::RD.get(c), cons::ERR.get(c)), (3, CError::Ill as u64));
    // Acknowledge, skip the bad command by rewriting it as CMD_TLBI_NH_ALL, which the hook
    // refuses: CERROR_ILL at it, the CMD_SYNC behind it not consumed.
    write_words(&mem, QBASE + 16 * 3, &Command::new(Opcode::TlbiNhAll).words());
    let g = s.mmio_read(regs::GERROR.0, 4);
    s.mmio_write(regs::GERRORN.0, 4, g);
    let seen = rec.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[3].0, Command::new(Opcode::TlbiNhAll));
    let c = Cmdq::cons(&s);
    assert_eq!((cons::RD.get(c), cons::ERR.get(c)), (3, CError::Ill as u64));
    let g = s.mmio_read(regs::GERROR.0, 4) ^ s.mmio_read(regs::GERRORN.0, 4);
    assert!(gerror::CMDQ_ERR.is_set(g));
}

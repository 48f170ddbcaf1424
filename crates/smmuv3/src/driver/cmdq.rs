//! The Command queue as its producer sees it (§3.5, §4): commands written at PROD with its
//! wrap flag, PROD published by one register write, CMD_SYNC completion polled on CONS or on
//! an MSI word (§4.7.3), and recovery from a command error (§7.1).

use sviommu_memory::{Address, FrameAllocator, PhysMemory};

use super::{low32, write_words, Block, DriverConfig, DriverError, SmmuDriver, SyncMode};
use super::{Capabilities, Mmio};
use crate::spec::cmd::CMD_BYTES;
use crate::spec::regs::{self, cons, gerror, prod, queue_base, QueuePointer};
use crate::spec::{CError, Command, Opcode, SyncCs};

/// The producer's side of the Command queue.
#[derive(Debug)]
pub(super) struct Cmdq {
    pub base: u64,
    pub log2size: u8,
    /// Software's PROD: where the next command goes.
    pub prod: QueuePointer,
    /// The word CMD_SYNC's MSI writes, in [`SyncMode::Msi`].
    pub msi_word: Option<u64>,
    /// The last MSIData used.
    pub seq: u32,
}

impl Cmdq {
    pub fn alloc<M: PhysMemory>(
        mem: &M,
        frames: &mut FrameAllocator<M::Addr>,
        caps: &Capabilities,
        config: &DriverConfig,
    ) -> Result<Self, DriverError> {
        // §6.3.26: at most SMMU_IDR1.CMDQS; a CMD_SYNC needs a second slot.
        let log2size = config.cmdq_log2.min(caps.cmdqs).clamp(1, QueuePointer::MAX_LOG2SIZE);
        let bytes_lg2 = (log2size + 4).max(12);
        let base = frames.alloc(mem, bytes_lg2)?.raw();
        let msi_word = match config.sync {
            SyncMode::Poll => None,
            SyncMode::Msi => match frames.alloc(mem, 12) {
                Ok(a) => Some(a.raw()),
                Err(e) => {
                    // Give the queue back: a refused bring-up keeps the frames it was given.
                    let _ = frames.free(M::Addr::new(base), bytes_lg2);
                    return Err(e.into());
                }
            },
        };
        Ok(Self { base, log2size, prod: QueuePointer::default(), msi_word, seq: 0 })
    }

    pub fn blocks(&self) -> Vec<Block> {
        let mut out = vec![Block { addr: self.base, size_lg2: (self.log2size + 4).max(12) }];
        out.extend(self.msi_word.map(|addr| Block { addr, size_lg2: 12 }));
        out
    }

    /// SMMU_CMDQ_BASE's value.
    pub fn base_reg(&self) -> u64 {
        let b = queue_base::ADDR.set(0, self.base >> queue_base::ADDR.lo);
        queue_base::LOG2SIZE.set(b, u64::from(self.log2size))
    }

    fn slot(&self, p: QueuePointer) -> u64 {
        self.base + u64::from(p.index) * CMD_BYTES
    }
}

impl<R: Mmio, M: PhysMemory> SmmuDriver<R, M> {
    fn cmdq_cons(&self) -> QueuePointer {
        let c = self.regs.read(regs::CMDQ_CONS.0, 4);
        QueuePointer::from_reg(low32(cons::RD.get(c)), self.cmdq.log2size)
    }

    fn publish(&self) {
        let p = self.cmdq.prod.to_reg(self.cmdq.log2size);
        self.regs.write(regs::CMDQ_PROD.0, 4, prod::WR.set(0, u64::from(p)));
    }

    /// Writes `cmds` at PROD and publishes them; when the queue is full, publishes what is
    /// there and waits for the SMMU to consume.
    pub(super) fn issue(&mut self, cmds: &[Command]) -> Result<(), DriverError> {
        let qs = self.cmdq.log2size;
        for c in cmds {
            let mut tries = 0;
            while QueuePointer::is_full(self.cmdq.prod, self.cmdq_cons()) {
                self.publish();
                self.take_cmdq_error()?;
                tries += 1;
                if tries > self.config.poll_limit {
                    self.stats.sync_timeouts += 1;
                    return Err(self.timeout());
                }
            }
            write_words(&self.mem, self.cmdq.slot(self.cmdq.prod), &c.words())?;
            self.cmdq.prod = self.cmdq.prod.next(qs);
            self.stats.commands += 1;
        }
        self.publish();
        Ok(())
    }

    /// Issues `cmds` as given, followed by one CMD_SYNC, and waits for it. For commands the
    /// driver has no method for, such as a guest's already checked and translated (the
    /// iommufd way of passing SMMUv3 invalidations); a command the SMMU refuses comes back as
    /// [`DriverError::Command`].
    pub fn submit(&mut self, cmds: &[Command]) -> Result<(), DriverError> {
        let result = self.issue(cmds);
        let synced = self.sync();
        result.and(synced)
    }

    /// §4.7.3: CMD_SYNC, and waits until it completes: every command before it has been
    /// consumed and its effects are visible. A command error on the way is recovered from and
    /// returned.
    pub fn sync(&mut self) -> Result<(), DriverError> {
        let mut cmd = Command::new(Opcode::Sync);
        if let Some(word) = self.cmdq.msi_word {
            self.cmdq.seq = self.cmdq.seq.wrapping_add(1);
            cmd.set_cs(SyncCs::SigIrq);
            cmd.set_msiaddress(word);
            cmd.set_msidata(self.cmdq.seq);
        }
        self.stats.syncs += 1;
        self.issue(&[cmd])?;
        let mut failure = None;
        let mut atc_failures = 0;
        for _ in 0..self.config.poll_limit.max(1) {
            match self.take_cmdq_error() {
                Ok(()) => {}
                // §3.9.1.4: the CMD_SYNC is consumed again now that the error is acknowledged.
                Err(DriverError::Command { error: Ok(CError::AtcInvSync), .. }) => {
                    atc_failures += 1;
                    if atc_failures >= super::ATC_SYNC_TRIES {
                        return Err(DriverError::AtcInvalidationTimeout { tries: atc_failures });
                    }
                    continue;
                }
                Err(e) => {
                    failure.get_or_insert(e);
                    continue;
                }
            }
            let done = match self.cmdq.msi_word {
                None => self.cmdq_cons() == self.cmdq.prod,
                Some(word) => {
                    let mut b = [0u8; 4];
                    self.mem.read(M::Addr::new(word), &mut b)?;
                    u32::from_le_bytes(b) == self.cmdq.seq
                }
            };
            if done {
                return failure.map_or(Ok(()), Err);
            }
        }
        self.stats.sync_timeouts += 1;
        Err(failure.unwrap_or_else(|| self.timeout()))
    }

    fn timeout(&self) -> DriverError {
        DriverError::SyncTimeout {
            prod: self.cmdq.prod.to_reg(self.cmdq.log2size),
            cons: low32(self.regs.read(regs::CMDQ_CONS.0, 4)),
        }
    }

    /// §7.1: if GERROR.CMDQ_ERR is active, the queue stopped at the command CONS points at,
    /// with the reason in CONS.ERR. The driver replaces that command with a CMD_SYNC (so the
    /// queue can go on) and acknowledges through GERRORN, which restarts it. For
    /// CERROR_ATC_INV_SYNC CONS is at a CMD_SYNC already: it is left as it is (its MSI
    /// included) and consumed again (counted in `atc_sync_errors`).
    fn take_cmdq_error(&mut self) -> Result<(), DriverError> {
        let g = self.regs.read(regs::GERROR.0, 4);
        let n = self.regs.read(regs::GERRORN.0, 4);
        if gerror::CMDQ_ERR.get(g) == gerror::CMDQ_ERR.get(n) {
            return Ok(());
        }
        let c = self.regs.read(regs::CMDQ_CONS.0, 4);
        let raw = u8::try_from(cons::ERR.get(c)).unwrap_or(u8::MAX);
        let at = self.cmdq.slot(self.cmdq_cons());
        let command = Command::from_words(super::read_words::<M, 2>(&self.mem, at)?);
        if raw == CError::AtcInvSync as u8 {
            self.stats.atc_sync_errors += 1;
        } else {
            write_words(&self.mem, at, &Command::new(Opcode::Sync).words())?;
        }
        self.stats.command_errors += 1;
        self.regs.write(regs::GERRORN.0, 4, n ^ gerror::CMDQ_ERR.mask());
        Err(DriverError::Command { error: CError::try_from(raw).map_err(|_| raw), command })
    }
}

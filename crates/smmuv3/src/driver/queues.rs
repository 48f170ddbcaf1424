//! The Event and PRI queues as their consumer sees them (§3.5, §7.4, §8.1): entries between
//! CONS and PROD (both in register page 1), CONS advanced past what was read, and the overflow
//! flag acknowledged by copying PROD.OVFLG into CONS.OVACKFLG.

use sviommu_memory::{Address, FrameAllocator, PhysMemory};

use super::{low32, Block, Capabilities, DriverConfig, DriverError, Mmio};
use crate::spec::event::EVENT_BYTES;
use crate::spec::priq::PRIQ_ENTRY_BYTES;
use crate::spec::regs::{self, cons, prod, queue_base, QueuePointer};

/// Which queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Event,
    Pri,
}

impl Kind {
    fn entry_bytes(self) -> u64 {
        match self {
            Kind::Event => EVENT_BYTES,
            Kind::Pri => PRIQ_ENTRY_BYTES,
        }
    }

    /// SMMU_*_BASE, SMMU_*_PROD, SMMU_*_CONS.
    pub fn regs(self) -> (u64, u64, u64) {
        match self {
            Kind::Event => (regs::EVENTQ_BASE.0, regs::EVENTQ_PROD.0, regs::EVENTQ_CONS.0),
            Kind::Pri => (regs::PRIQ_BASE.0, regs::PRIQ_PROD.0, regs::PRIQ_CONS.0),
        }
    }
}

/// A queue the SMMU produces into.
#[derive(Debug)]
pub(super) struct Queue {
    pub kind: Kind,
    pub base: u64,
    pub log2size: u8,
    /// Software's CONS.
    pub cons: QueuePointer,
    /// The OVFLG value last acknowledged.
    pub ovack: bool,
}

impl Queue {
    pub fn alloc<M: PhysMemory>(
        mem: &M,
        frames: &mut FrameAllocator<M::Addr>,
        kind: Kind,
        caps: &Capabilities,
        config: &DriverConfig,
    ) -> Result<Self, DriverError> {
        let (want, max) = match kind {
            Kind::Event => (config.eventq_log2, caps.eventqs),
            Kind::Pri => (config.priq_log2, caps.priqs),
        };
        let log2size = want.min(max).min(QueuePointer::MAX_LOG2SIZE);
        let base = frames.alloc(mem, Self::bytes_lg2(kind, log2size))?.raw();
        Ok(Self { kind, base, log2size, cons: QueuePointer::default(), ovack: false })
    }

    fn bytes_lg2(kind: Kind, log2size: u8) -> u8 {
        let entry_lg2 = u8::try_from(kind.entry_bytes().trailing_zeros()).unwrap_or(5);
        (log2size + entry_lg2).max(12)
    }

    pub fn block(&self) -> Block {
        Block { addr: self.base, size_lg2: Self::bytes_lg2(self.kind, self.log2size) }
    }

    /// SMMU_*_BASE's value.
    pub fn base_reg(&self) -> u64 {
        let b = queue_base::ADDR.set(0, self.base >> queue_base::ADDR.lo);
        queue_base::LOG2SIZE.set(b, u64::from(self.log2size))
    }

    /// Reads every entry between CONS and PROD (`N` words each), advances CONS and
    /// acknowledges an overflow. Returns the entries and whether an overflow was seen.
    pub fn drain<R: Mmio, M: PhysMemory, const N: usize>(
        &mut self,
        regs: &R,
        mem: &M,
    ) -> Result<(Vec<[u64; N]>, bool), DriverError> {
        let (_, prod_reg, cons_reg) = self.kind.regs();
        let p = regs.read(prod_reg, 4);
        let prod = QueuePointer::from_reg(low32(prod::WR.get(p)), self.log2size);
        let ovflg = prod::OVFLG.is_set(p);
        let mut out = Vec::new();
        // At most one queue's worth: PROD cannot be further ahead.
        let mut left = 1u64 << self.log2size;
        while self.cons != prod && left > 0 {
            let at = self.base + u64::from(self.cons.index) * self.kind.entry_bytes();
            out.push(super::read_words::<M, N>(mem, at)?);
            self.cons = self.cons.next(self.log2size);
            left -= 1;
        }
        let overflowed = ovflg != self.ovack;
        self.ovack = ovflg;
        let mut c = cons::RD.set(0, u64::from(self.cons.to_reg(self.log2size)));
        c = cons::OVACKFLG.with(c, ovflg);
        regs.write(cons_reg, 4, c);
        Ok((out, overflowed))
    }
}

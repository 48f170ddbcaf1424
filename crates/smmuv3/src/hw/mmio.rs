//! The register file (§6.2 register map, §6.3 formats) of the Non-secure programming
//! interface: pages 0 and 1.
//!
//! Access rules (§6.2): aligned 32-bit accesses to 32-bit registers and to either half of a
//! 64-bit register, aligned 64-bit accesses to 64-bit registers. IMPDEF: any other access (size,
//! alignment, a 64-bit access to a 32-bit register) is RAZ/WI, as are undefined offsets in both
//! pages and the OPTIONAL page 0 aliases of the page 1 queue registers.
//!
//! Reserved bits read as zero: every write is masked to the fields the register has, and to the
//! features SMMU_IDR0 advertises (PRIQEN without PRI is RES0, and so on). The queue and MSI
//! configuration registers are storage here, with their guards (`cmdq` and `eventq` use them): a Guarded register ignores writes while its enable is set (§6.3.24: the
//! SMMUv3.2 rule, one of the permitted SMMUv3.1 behaviours).

use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};

use sviommu_memory::bits::{Field, Field32};
use sviommu_memory::{Hpa, Mmio, PhysMemory};

use super::{low32, Smmu, SmmuParams};
use crate::spec::regs::{
    self, cons, cr0, cr1, cr2, gbpa, gerror, irq_cfg0, irq_cfg1, irq_cfg2, irq_ctrl, prod,
    queue_base, strtab_base, strtab_base_cfg,
};

/// Every register's stored value. ID registers come from the parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RegFile {
    cr0: u32,
    pub(super) cr0ack: u32,
    cr1: u32,
    cr2: u32,
    pub(super) gbpa: u32,
    irq_ctrl: u32,
    pub(super) irq_ctrlack: u32,
    pub(super) gerror: u32,
    pub(super) gerrorn: u32,
    pub(super) gerror_irq_cfg0: u64,
    pub(super) gerror_irq_cfg1: u32,
    gerror_irq_cfg2: u32,
    strtab_base: u64,
    strtab_base_cfg: u32,
    pub(super) cmdq_base: u64,
    pub(super) cmdq_prod: u32,
    pub(super) cmdq_cons: u32,
    pub(super) eventq_base: u64,
    pub(super) eventq_prod: u32,
    pub(super) eventq_cons: u32,
    pub(super) eventq_irq_cfg0: u64,
    pub(super) eventq_irq_cfg1: u32,
    eventq_irq_cfg2: u32,
    pub(super) priq_base: u64,
    pub(super) priq_prod: u32,
    pub(super) priq_cons: u32,
    pub(super) priq_irq_cfg0: u64,
    pub(super) priq_irq_cfg1: u32,
    pub(super) priq_irq_cfg2: u32,
    /// CMD_ATC_INVs sent and not completed, and the SMMU's clock (`cmdq`).
    pub(super) atc: sviommu_tlb::AtsTracker,
    /// The CMD_SYNC at CONS waits for ATC invalidation completions.
    pub(super) atc_sync_waiting: bool,
    /// An ATC invalidation timed out: the CMD_SYNC that waits for it (or the next one) fails
    /// with CERROR_ATC_INV_SYNC.
    pub(super) atc_failed: bool,
}

impl RegFile {
    /// Reset values (§6.3). IMPDEF where the spec leaves them UNKNOWN or IMPLEMENTATION
    /// DEFINED: zero, except GBPA (ABORT from the parameters, SHCFG = 0b01 "use incoming").
    pub(super) fn reset(p: &SmmuParams) -> Self {
        let mut g = gbpa::SHCFG.set(0, 0b01);
        g = gbpa::ABORT.with(g, p.gbpa_abort_at_reset);
        Self { gbpa: low32(g), atc: sviommu_tlb::AtsTracker::new(p.ats), ..Self::default() }
    }
}

/// The mask of the given fields.
fn mask(fields: &[Field]) -> u64 {
    fields.iter().fold(0, |m, f| m | f.mask())
}

/// The mask of the given fields of a 32-bit register.
fn mask32(fields: &[Field32]) -> u32 {
    fields.iter().fold(0, |m, f| m | f.mask32())
}

/// The mask of the given fields of a 32-bit register that are present.
fn mask_present(fields: &[(bool, Field32)]) -> u32 {
    fields.iter().filter(|(present, _)| *present).fold(0, |m, (_, f)| m | f.mask32())
}

/// Register offsets as patterns.
mod off {
    use crate::spec::regs;

    pub const IDR0: u64 = regs::IDR0.0;
    pub const IDR1: u64 = regs::IDR1.0;
    pub const IDR3: u64 = regs::IDR3.0;
    pub const IDR5: u64 = regs::IDR5.0;
    pub const IIDR: u64 = regs::IIDR.0;
    pub const AIDR: u64 = regs::AIDR.0;
    pub const CR0: u64 = regs::CR0.0;
    pub const CR0ACK: u64 = regs::CR0ACK.0;
    pub const CR1: u64 = regs::CR1.0;
    pub const CR2: u64 = regs::CR2.0;
    pub const GBPA: u64 = regs::GBPA.0;
    pub const IRQ_CTRL: u64 = regs::IRQ_CTRL.0;
    pub const IRQ_CTRLACK: u64 = regs::IRQ_CTRLACK.0;
    pub const GERROR: u64 = regs::GERROR.0;
    pub const GERRORN: u64 = regs::GERRORN.0;
    pub const GERROR_IRQ_CFG0: u64 = regs::GERROR_IRQ_CFG0.0;
    pub const GERROR_IRQ_CFG1: u64 = regs::GERROR_IRQ_CFG1.0;
    pub const GERROR_IRQ_CFG2: u64 = regs::GERROR_IRQ_CFG2.0;
    pub const STRTAB_BASE: u64 = regs::STRTAB_BASE.0;
    pub const STRTAB_BASE_CFG: u64 = regs::STRTAB_BASE_CFG.0;
    pub const CMDQ_BASE: u64 = regs::CMDQ_BASE.0;
    pub const CMDQ_PROD: u64 = regs::CMDQ_PROD.0;
    pub const CMDQ_CONS: u64 = regs::CMDQ_CONS.0;
    pub const EVENTQ_BASE: u64 = regs::EVENTQ_BASE.0;
    pub const EVENTQ_PROD: u64 = regs::EVENTQ_PROD.0;
    pub const EVENTQ_CONS: u64 = regs::EVENTQ_CONS.0;
    pub const EVENTQ_IRQ_CFG0: u64 = regs::EVENTQ_IRQ_CFG0.0;
    pub const EVENTQ_IRQ_CFG1: u64 = regs::EVENTQ_IRQ_CFG1.0;
    pub const EVENTQ_IRQ_CFG2: u64 = regs::EVENTQ_IRQ_CFG2.0;
    pub const PRIQ_BASE: u64 = regs::PRIQ_BASE.0;
    pub const PRIQ_PROD: u64 = regs::PRIQ_PROD.0;
    pub const PRIQ_CONS: u64 = regs::PRIQ_CONS.0;
    pub const PRIQ_IRQ_CFG0: u64 = regs::PRIQ_IRQ_CFG0.0;
    pub const PRIQ_IRQ_CFG1: u64 = regs::PRIQ_IRQ_CFG1.0;
    pub const PRIQ_IRQ_CFG2: u64 = regs::PRIQ_IRQ_CFG2.0;
}

/// The 64-bit registers, by offset.
const REG64: [u64; 7] = [
    regs::GERROR_IRQ_CFG0.0,
    regs::STRTAB_BASE.0,
    regs::CMDQ_BASE.0,
    regs::EVENTQ_BASE.0,
    regs::EVENTQ_IRQ_CFG0.0,
    regs::PRIQ_BASE.0,
    regs::PRIQ_IRQ_CFG0.0,
];

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    pub(super) fn lock(&self) -> MutexGuard<'_, RegFile> {
        // A panic while holding the lock cannot leave a register half-written (every update is
        // one assignment), so a poisoned lock is still a consistent register file.
        self.regs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A register read of `size` bytes (4 or 8) at `offset` from the SMMU's base.
    pub fn mmio_read(&self, offset: u64, size: u8) -> u64 {
        let mut r = self.lock();
        // IMPDEF: a register read takes one tick of the SMMU's clock (`cmdq`).
        self.tick_locked(&mut r);
        match (size, offset % 8) {
            (8, 0) if REG64.contains(&offset) => self.read64(&r, offset),
            (4, 0) if REG64.contains(&offset) => self.read64(&r, offset) & u64::from(u32::MAX),
            (4, 4) if REG64.contains(&(offset - 4)) => self.read64(&r, offset - 4) >> 32,
            (4, 0 | 4) => u64::from(self.read32(&r, offset)),
            _ => 0,
        }
    }

    /// A register write of `size` bytes (4 or 8) at `offset` from the SMMU's base.
    pub fn mmio_write(&self, offset: u64, size: u8, value: u64) {
        let mut r = self.lock();
        let was_enabled = cr0::SMMUEN.is_set(u64::from(r.cr0ack));
        match (size, offset % 8) {
            (8, 0) if REG64.contains(&offset) => self.write64(&mut r, offset, value),
            (4, 0) if REG64.contains(&offset) => {
                let old = self.read64(&r, offset);
                let new = (old & !u64::from(u32::MAX)) | (value & u64::from(u32::MAX));
                self.write64(&mut r, offset, new);
            }
            (4, 4) if REG64.contains(&(offset - 4)) => {
                let old = self.read64(&r, offset - 4);
                let new = (old & u64::from(u32::MAX)) | (value << 32);
                self.write64(&mut r, offset - 4, new);
            }
            (4, 0 | 4) => self.write32(&mut r, offset, low32(value)),
            _ => {}
        }
        // What every translation reads first (SMMUEN, GBPA, the Stream table, the event
        // recording CR2 selects): the memo names no register, so its answers retire.
        let selects_translation =
            matches!(offset, off::CR0 | off::CR1 | off::CR2 | off::GBPA | off::STRTAB_BASE_CFG);
        if selects_translation || offset & !7 == off::STRTAB_BASE {
            self.caches.memo_advance();
        }
        // The Command queue runs when software gives it something to do: new commands, the
        // queue enabled, or a command error acknowledged.
        if matches!(offset, off::CMDQ_PROD | off::CR0 | off::GERRORN) {
            self.process_cmdq(&mut r);
        }
        // §6.3.9.6: clearing SMMUEN terminates every stalled transaction.
        if was_enabled && !cr0::SMMUEN.is_set(u64::from(r.cr0ack)) {
            self.terminate_all_stalls();
        }
        // §7.2.1: stalls whose record was not written retry once the Event queue is writable
        // again: entries consumed, the queue enabled, or EVENTQ_ABT_ERR acknowledged.
        if matches!(offset, off::EVENTQ_CONS | off::CR0 | off::GERRORN) {
            self.retry_unrecorded_stalls(&mut r);
        }
    }

    fn read32(&self, r: &RegFile, offset: u64) -> u32 {
        let p = &self.params;
        match offset {
            off::IDR0 => p.idr0,
            off::IDR1 => p.idr1,
            off::IDR3 => p.idr3,
            off::IDR5 => p.idr5,
            off::IIDR => p.iidr,
            off::AIDR => p.aidr,
            off::CR0 => r.cr0,
            off::CR0ACK => r.cr0ack,
            off::CR1 => r.cr1,
            off::CR2 => r.cr2,
            off::GBPA => r.gbpa,
            off::IRQ_CTRL => r.irq_ctrl,
            off::IRQ_CTRLACK => r.irq_ctrlack,
            off::GERROR => r.gerror,
            off::GERRORN => r.gerrorn,
            off::GERROR_IRQ_CFG1 => r.gerror_irq_cfg1,
            off::GERROR_IRQ_CFG2 => r.gerror_irq_cfg2,
            off::STRTAB_BASE_CFG => r.strtab_base_cfg,
            off::CMDQ_PROD => r.cmdq_prod,
            off::CMDQ_CONS => r.cmdq_cons,
            off::EVENTQ_PROD => r.eventq_prod,
            off::EVENTQ_CONS => r.eventq_cons,
            off::EVENTQ_IRQ_CFG1 => r.eventq_irq_cfg1,
            off::EVENTQ_IRQ_CFG2 => r.eventq_irq_cfg2,
            off::PRIQ_PROD => r.priq_prod,
            off::PRIQ_CONS => r.priq_cons,
            off::PRIQ_IRQ_CFG1 => r.priq_irq_cfg1,
            off::PRIQ_IRQ_CFG2 => r.priq_irq_cfg2,
            // IDR2 (no VATOS), IDR4 (IMPDEF, nothing), STATUSR (never dormant), undefined
            // offsets and the page 0 queue aliases.
            _ => 0,
        }
    }

    fn read64(&self, r: &RegFile, offset: u64) -> u64 {
        match offset {
            off::GERROR_IRQ_CFG0 => r.gerror_irq_cfg0,
            off::STRTAB_BASE => r.strtab_base,
            off::CMDQ_BASE => r.cmdq_base,
            off::EVENTQ_BASE => r.eventq_base,
            off::EVENTQ_IRQ_CFG0 => r.eventq_irq_cfg0,
            off::PRIQ_BASE => r.priq_base,
            off::PRIQ_IRQ_CFG0 => r.priq_irq_cfg0,
            _ => 0,
        }
    }

    fn write32(&self, r: &mut RegFile, offset: u64, value: u32) {
        let c = &self.caps;
        let v = u64::from(value);
        let ack = u64::from(r.cr0ack);
        let irq_ack = u64::from(r.irq_ctrlack);
        // Only the fields a register has (and the features it depends on) are stored.
        let masked = |fields: &[Field32]| value & mask32(fields);
        let masked_present = |fields: &[(bool, Field32)]| value & mask_present(fields);
        match offset {
            off::CR0 => {
                r.cr0 = masked_present(&[
                    (true, cr0::SMMUEN),
                    (true, cr0::EVENTQEN),
                    (true, cr0::CMDQEN),
                    (c.pri, cr0::PRIQEN),
                    (c.ats, cr0::ATSCHK),
                    (c.vmw, cr0::VMW),
                ]);
                // §6.3.10: CR0ACK follows CR0 once the change has taken effect. IMPDEF: at
                // once.
                r.cr0ack = r.cr0;
                self.cr0ack.store(r.cr0ack, Ordering::Release);
            }
            off::CR1 => {
                r.cr1 = masked(&[
                    cr1::QUEUE_IC,
                    cr1::QUEUE_OC,
                    cr1::QUEUE_SH,
                    cr1::TABLE_IC,
                    cr1::TABLE_OC,
                    cr1::TABLE_SH,
                ]);
            }
            off::CR2 => {
                r.cr2 =
                    masked_present(&[(true, cr2::RECINVSID), (c.hyp, cr2::E2H), (c.btm, cr2::PTM)]);
                self.cr2.store(r.cr2, Ordering::Release);
            }
            // §6.3.14.1: a write with Update == 1 applies the fields; Update reads 0 again
            // once it has (IMPDEF: at once). A write with Update == 0 is ignored.
            off::GBPA if gbpa::UPDATE.is_set(v) => {
                r.gbpa = masked(&[
                    gbpa::MEMATTR,
                    gbpa::MTCFG,
                    gbpa::ALLOCCFG,
                    gbpa::SHCFG,
                    gbpa::PRIVCFG,
                    gbpa::INSTCFG,
                    gbpa::ABORT,
                ]);
                self.gbpa.store(r.gbpa, Ordering::Release);
            }
            off::IRQ_CTRL => {
                r.irq_ctrl = masked_present(&[
                    (true, irq_ctrl::GERROR_IRQEN),
                    (true, irq_ctrl::EVENTQ_IRQEN),
                    (c.pri, irq_ctrl::PRIQ_IRQEN),
                ]);
                r.irq_ctrlack = r.irq_ctrl;
            }
            // §6.3.20: software toggles GERRORN bits to acknowledge active errors.
            off::GERRORN => r.gerrorn = masked(&gerrorn_fields()),
            off::GERROR_IRQ_CFG1 if c.msi && !irq_ctrl::GERROR_IRQEN.is_set(irq_ack) => {
                r.gerror_irq_cfg1 = masked(&[irq_cfg1::DATA]);
            }
            off::GERROR_IRQ_CFG2 if c.msi && !irq_ctrl::GERROR_IRQEN.is_set(irq_ack) => {
                r.gerror_irq_cfg2 = masked(&[irq_cfg2::MEMATTR, irq_cfg2::SH]);
            }
            // §6.3.25: Guarded by SMMUEN.
            off::STRTAB_BASE_CFG
                if !cr0::SMMUEN.is_set(u64::from(r.cr0)) && !cr0::SMMUEN.is_set(ack) =>
            {
                r.strtab_base_cfg = masked_present(&[
                    (true, strtab_base_cfg::LOG2SIZE),
                    (c.two_level_st, strtab_base_cfg::SPLIT),
                    (c.two_level_st, strtab_base_cfg::FMT),
                ]);
                self.strtab_base_cfg.store(r.strtab_base_cfg, Ordering::Release);
            }
            off::CMDQ_PROD => r.cmdq_prod = masked(&[prod::WR]),
            off::CMDQ_CONS if !cr0::CMDQEN.is_set(u64::from(r.cr0)) && !cr0::CMDQEN.is_set(ack) => {
                r.cmdq_cons = masked(&[cons::RD, cons::ERR]);
            }
            off::EVENTQ_PROD
                if !cr0::EVENTQEN.is_set(u64::from(r.cr0)) && !cr0::EVENTQEN.is_set(ack) =>
            {
                r.eventq_prod = masked(&[prod::WR, prod::OVFLG]);
            }
            off::EVENTQ_CONS => r.eventq_cons = masked(&[cons::RD, cons::OVACKFLG]),
            off::EVENTQ_IRQ_CFG1 if c.msi && !irq_ctrl::EVENTQ_IRQEN.is_set(irq_ack) => {
                r.eventq_irq_cfg1 = masked(&[irq_cfg1::DATA]);
            }
            off::EVENTQ_IRQ_CFG2 if c.msi && !irq_ctrl::EVENTQ_IRQEN.is_set(irq_ack) => {
                r.eventq_irq_cfg2 = masked(&[irq_cfg2::MEMATTR, irq_cfg2::SH]);
            }
            off::PRIQ_PROD
                if c.pri && !cr0::PRIQEN.is_set(u64::from(r.cr0)) && !cr0::PRIQEN.is_set(ack) =>
            {
                r.priq_prod = masked(&[prod::WR, prod::OVFLG]);
            }
            off::PRIQ_CONS if c.pri => {
                r.priq_cons = masked(&[cons::RD, cons::OVACKFLG]);
            }
            off::PRIQ_IRQ_CFG1 if c.msi && c.pri && !irq_ctrl::PRIQ_IRQEN.is_set(irq_ack) => {
                r.priq_irq_cfg1 = masked(&[irq_cfg1::DATA]);
            }
            off::PRIQ_IRQ_CFG2 if c.msi && c.pri && !irq_ctrl::PRIQ_IRQEN.is_set(irq_ack) => {
                r.priq_irq_cfg2 = masked(&[irq_cfg2::MEMATTR, irq_cfg2::SH, irq_cfg2::LO]);
            }
            // RO registers (ID registers, CR0ACK, IRQ_CTRLACK, GERROR, STATUSR) and undefined
            // offsets.
            _ => {}
        }
    }

    fn write64(&self, r: &mut RegFile, offset: u64, v: u64) {
        let c = &self.caps;
        let ack = u64::from(r.cr0ack);
        let cr0v = u64::from(r.cr0);
        let irq_ack = u64::from(r.irq_ctrlack);
        let disabled = |f: Field32| !f.is_set(cr0v) && !f.is_set(ack);
        let base = v & mask(&[queue_base::LOG2SIZE, queue_base::ADDR, queue_base::RA]);
        match offset {
            off::GERROR_IRQ_CFG0 if c.msi && !irq_ctrl::GERROR_IRQEN.is_set(irq_ack) => {
                r.gerror_irq_cfg0 = v & irq_cfg0::ADDR.mask();
            }
            // §6.3.24: Guarded by SMMUEN; a write while enabled is ignored.
            off::STRTAB_BASE if disabled(cr0::SMMUEN) => {
                r.strtab_base = v & mask(&[strtab_base::ADDR, strtab_base::RA]);
                self.strtab_base.store(r.strtab_base, Ordering::Release);
            }
            off::CMDQ_BASE if disabled(cr0::CMDQEN) => {
                r.cmdq_base = base;
            }
            off::EVENTQ_BASE if disabled(cr0::EVENTQEN) => {
                r.eventq_base = base;
            }
            off::EVENTQ_IRQ_CFG0 if c.msi && !irq_ctrl::EVENTQ_IRQEN.is_set(irq_ack) => {
                r.eventq_irq_cfg0 = v & irq_cfg0::ADDR.mask();
            }
            off::PRIQ_BASE if c.pri && disabled(cr0::PRIQEN) => {
                r.priq_base = base;
            }
            off::PRIQ_IRQ_CFG0 if c.msi && c.pri && !irq_ctrl::PRIQ_IRQEN.is_set(irq_ack) => {
                r.priq_irq_cfg0 = v & irq_cfg0::ADDR.mask();
            }
            _ => {}
        }
    }

    /// §6.3.19: makes the global error `bit` active by toggling its GERROR bit, unless it is
    /// active already (GERROR differs from GERRORN). Returns whether it became active.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn raise_gerror(&self, bit: Field32) -> bool {
        let mut r = self.lock();
        self.raise_locked(&mut r, bit)
    }
}

/// The GERRORN fields: GERROR's, except CMDQP_ERR (GERROR only) and DPT_ERR (no DPT).
fn gerrorn_fields() -> [Field32; 8] {
    [
        gerror::CMDQ_ERR,
        gerror::EVENTQ_ABT_ERR,
        gerror::PRIQ_ABT_ERR,
        gerror::MSI_CMDQ_ABT_ERR,
        gerror::MSI_EVENTQ_ABT_ERR,
        gerror::MSI_PRIQ_ABT_ERR,
        gerror::MSI_GERROR_ABT_ERR,
        gerror::SFM_ERR,
    ]
}

/// A driver's way to the SMMU: its register pages ([`Smmu::mmio_read`], [`Smmu::mmio_write`]).
impl<M: PhysMemory<Addr = Hpa>> Mmio for Smmu<M> {
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.mmio_read(offset, size)
    }

    fn write(&self, offset: u64, size: u8, value: u64) {
        self.mmio_write(offset, size, value);
    }
}

#[cfg(test)]
mod tests {
    use sviommu_memory::HostMemory;

    use super::*;

    #[test]
    fn gerror_toggles_only_when_inactive_and_gerrorn_acknowledges() {
        let mem = HostMemory::new(&[(Hpa(0), 0x1000)]).unwrap();
        let smmu = Smmu::new(&mem, SmmuParams::default());
        let read = |o: u64| smmu.mmio_read(o, 4);
        assert!(smmu.raise_gerror(gerror::CMDQ_ERR));
        assert_eq!((read(regs::GERROR.0), read(regs::GERRORN.0)), (1, 0));
        // Already active: no second toggle.
        assert!(!smmu.raise_gerror(gerror::CMDQ_ERR));
        assert_eq!(read(regs::GERROR.0), 1);
        // Another error is independent.
        assert!(smmu.raise_gerror(gerror::SFM_ERR));
        assert_eq!(read(regs::GERROR.0), 0x101);
        // Acknowledge CMDQ_ERR only; it can then be raised again, toggling GERROR back to 0.
        smmu.mmio_write(regs::GERRORN.0, 4, 1);
        assert_eq!(read(regs::GERROR.0) ^ read(regs::GERRORN.0), 0x100);
        assert!(smmu.raise_gerror(gerror::CMDQ_ERR));
        assert_eq!(read(regs::GERROR.0), 0x100);
        assert_eq!(read(regs::GERROR.0) ^ read(regs::GERRORN.0), 0x101);
    }
}

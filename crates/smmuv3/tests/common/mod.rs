//! What the hw tests share: memory with a hole, raw register programming, and STE/CD words
//! built with the spec setters. No driver: tests write structures and registers themselves.

#![allow(dead_code)]

use sviommu_memory::{FrameAllocator, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule as PtGranule, Ps, VmsaS1, VmsaS2};
use sviommu_smmuv3::hw::{Abort, CacheSizes, Event, Smmu, SmmuParams, Transaction, Translation};
use sviommu_smmuv3::spec::regs::{self, cr0, strtab_base_cfg};
use sviommu_smmuv3::spec::{Cd, EventId, Granule, L1Cd, L1Std, Ste, StreamConfig};

/// Memory is [0, 16M); everything at or above 16M is a hole.
pub const MEM_BYTES: u64 = 0x100_0000;
/// Frames for tables come from [1M, 16M).
pub const FRAMES: u64 = 0x10_0000;
/// An address in the hole.
pub const HOLE: u64 = 0x4000_0000;

pub fn memory() -> HostMemory {
    HostMemory::new(&[(Hpa(0), MEM_BYTES)]).unwrap()
}

pub fn frames() -> FrameAllocator<Hpa> {
    FrameAllocator::new(&[(Hpa(FRAMES), MEM_BYTES - FRAMES)])
}

/// A zeroed, naturally aligned block of `2^lg2` bytes.
pub fn alloc(mem: &HostMemory, frames: &mut FrameAllocator<Hpa>, lg2: u8) -> u64 {
    frames.alloc(mem, lg2).unwrap().0
}

/// An SMMU without caches: the step (b) and (c) tests rewrite structures between transactions
/// without invalidating and count every read, which is the uncached path's behaviour.
pub fn smmu(mem: &HostMemory) -> Smmu<&HostMemory> {
    Smmu::new(mem, SmmuParams { caches: CacheSizes::NONE, ..SmmuParams::default() })
}

/// An SMMU with the default caches.
pub fn cached_smmu(mem: &HostMemory) -> Smmu<&HostMemory> {
    Smmu::new(mem, SmmuParams::default())
}

pub fn write_words(mem: &HostMemory, addr: u64, words: &[u64]) {
    for (i, w) in words.iter().enumerate() {
        mem.write_u64(Hpa(addr + 8 * i as u64), *w).unwrap();
    }
}

pub fn write_ste(mem: &HostMemory, addr: u64, ste: &Ste) {
    write_words(mem, addr, &ste.words());
}

pub fn write_cd(mem: &HostMemory, addr: u64, cd: &Cd) {
    write_words(mem, addr, &cd.words());
}

pub fn write_l1std(mem: &HostMemory, addr: u64, d: &L1Std) {
    write_words(mem, addr, &[d.word()]);
}

pub fn write_l1cd(mem: &HostMemory, addr: u64, d: &L1Cd) {
    write_words(mem, addr, &[d.word()]);
}

/// Raw register writes: a linear Stream table of 2^log2size STEs at `base`, then SMMUEN.
pub fn enable_linear<M: PhysMemory<Addr = Hpa>>(smmu: &Smmu<M>, base: u64, log2size: u64) {
    smmu.mmio_write(regs::STRTAB_BASE.0, 8, base);
    smmu.mmio_write(regs::STRTAB_BASE_CFG.0, 4, strtab_base_cfg::LOG2SIZE.set(0, log2size));
    enable(smmu);
}

/// Raw register writes: a two-level Stream table (L1STDs at `base`), then SMMUEN.
pub fn enable_two_level<M: PhysMemory<Addr = Hpa>>(
    smmu: &Smmu<M>,
    base: u64,
    log2size: u64,
    split: u64,
) {
    smmu.mmio_write(regs::STRTAB_BASE.0, 8, base);
    let mut cfg = strtab_base_cfg::LOG2SIZE.set(0, log2size);
    cfg = strtab_base_cfg::SPLIT.set(cfg, split);
    cfg = strtab_base_cfg::FMT.set(cfg, 0b01);
    smmu.mmio_write(regs::STRTAB_BASE_CFG.0, 4, cfg);
    enable(smmu);
}

/// SMMU_CR0.SMMUEN = 1 and wait for CR0ACK, as a driver does.
pub fn enable<M: PhysMemory<Addr = Hpa>>(smmu: &Smmu<M>) {
    let v = smmu.mmio_read(regs::CR0.0, 4);
    smmu.mmio_write(regs::CR0.0, 4, cr0::SMMUEN.with(v, true));
    assert!(cr0::SMMUEN.is_set(smmu.mmio_read(regs::CR0ACK.0, 4)));
}

/// One STE at index 0 of a one-entry linear table, SMMU enabled. Returns the STE's address.
pub fn single_ste<M: PhysMemory<Addr = Hpa>>(
    mem: &HostMemory,
    frames: &mut FrameAllocator<Hpa>,
    smmu: &Smmu<M>,
    ste: &Ste,
) -> u64 {
    let base = alloc(mem, frames, 12);
    write_ste(mem, base, ste);
    enable_linear(smmu, base, 0);
    base
}

/// The 3-bit PS/IPS encoding of a pgtable output size.
pub fn ps_field(ps: Ps) -> u8 {
    match ps {
        Ps::Bits32 => 0,
        Ps::Bits36 => 1,
        Ps::Bits40 => 2,
        Ps::Bits42 => 3,
        Ps::Bits44 => 4,
        Ps::Bits48 => 5,
        Ps::Bits52 => 6,
    }
}

pub fn spec_granule(g: PtGranule) -> Granule {
    match g {
        PtGranule::K4 => Granule::Size4K,
        PtGranule::K16 => Granule::Size16K,
        PtGranule::K64 => Granule::Size64K,
    }
}

pub fn ste_with_config(config: StreamConfig) -> Ste {
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(config);
    ste
}

/// The STE.S2* fields for stage-2 tables `s2` (S2R set: stage-2 faults are recorded).
pub fn set_s2(ste: &mut Ste, s2: &VmsaS2) {
    ste.set_s2vmid(1);
    ste.set_s2t0sz(s2.t0sz);
    ste.set_s2sl0(s2.sl0);
    ste.set_s2tg(spec_granule(s2.tg));
    ste.set_s2ps(ps_field(s2.ps));
    ste.set_s2aa64(true);
    ste.set_s2affd(s2.affd);
    ste.set_s2ha(s2.ha);
    ste.set_s2hd(s2.hd);
    ste.set_s2r(true);
    ste.set_s2ttb(s2.ttb);
}

/// A stage-2-only STE over `s2`.
pub fn ste_s2(s2: &VmsaS2) -> Ste {
    let mut ste = ste_with_config(StreamConfig::Stage2);
    set_s2(&mut ste, s2);
    ste
}

/// A stage-1 STE (nested if `s2`) whose S1ContextPtr is `cd_ptr` with 2^cdmax CDs.
pub fn ste_s1(cd_ptr: u64, cdmax: u8, s2: Option<&VmsaS2>) -> Ste {
    let config = if s2.is_some() { StreamConfig::Nested } else { StreamConfig::Stage1 };
    let mut ste = ste_with_config(config);
    ste.set_s1contextptr(cd_ptr);
    ste.set_s1cdmax(cdmax);
    if let Some(s2) = s2 {
        set_s2(&mut ste, s2);
    }
    ste
}

/// A valid CD whose TTB0 half is `s1` (TTB1 disabled, A and R set).
pub fn cd_for(s1: &VmsaS1, asid: u16) -> Cd {
    let mut cd = Cd::default();
    cd.set_v(true);
    cd.set_aa64(true);
    cd.set_a(true);
    cd.set_r(true);
    cd.set_asid(asid);
    cd.set_t0sz(s1.t0sz);
    cd.set_tg0(spec_granule(s1.tg));
    cd.set_ips(ps_field(s1.ips));
    cd.set_ha(s1.ha);
    cd.set_hd(s1.hd);
    cd.set_affd(s1.affd);
    cd.set_wxn(s1.wxn);
    cd.set_pan(s1.pan);
    cd.set_had0(s1.hpd);
    cd.set_ttb0(s1.ttb);
    cd.set_epd1(true);
    cd
}

/// The event of a termination that has one.
#[track_caller]
pub fn event(r: Result<Translation, Abort>) -> Event {
    match r {
        Err(Abort::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The event number of a termination that has one.
#[track_caller]
pub fn id(r: Result<Translation, Abort>) -> EventId {
    event(r).id
}

pub fn read(sid: u32, addr: u64) -> Transaction {
    Transaction::new(sid, addr, sviommu_smmuv3::hw::Access::READ)
}

/// A Command queue of 2^`log2size` entries at `base`, programmed by raw register writes, and
/// the producer index software keeps.
pub struct Cmdq {
    pub base: u64,
    pub log2size: u8,
    pub prod: sviommu_smmuv3::spec::regs::QueuePointer,
}

impl Cmdq {
    /// Programs SMMU_CMDQ_BASE and sets SMMU_CR0.CMDQEN.
    pub fn enable<M: PhysMemory<Addr = Hpa>>(smmu: &Smmu<M>, base: u64, log2size: u8) -> Self {
        use sviommu_smmuv3::spec::regs::queue_base;
        let mut b = queue_base::ADDR.set(0, base >> 5);
        b = queue_base::LOG2SIZE.set(b, u64::from(log2size));
        smmu.mmio_write(regs::CMDQ_BASE.0, 8, b);
        let v = smmu.mmio_read(regs::CR0.0, 4);
        smmu.mmio_write(regs::CR0.0, 4, cr0::CMDQEN.with(v, true));
        Self { base, log2size, prod: Default::default() }
    }

    /// Writes `cmds` at PROD and publishes them with one SMMU_CMDQ_PROD write.
    pub fn submit<M: PhysMemory<Addr = Hpa>>(
        &mut self,
        mem: &HostMemory,
        smmu: &Smmu<M>,
        cmds: &[sviommu_smmuv3::spec::Command],
    ) {
        for c in cmds {
            self.put(mem, c);
        }
        self.publish(smmu);
    }

    /// Writes one command at PROD and advances PROD (not yet published).
    pub fn put(&mut self, mem: &HostMemory, c: &sviommu_smmuv3::spec::Command) {
        write_words(mem, self.base + 16 * u64::from(self.prod.index), &c.words());
        self.prod = self.prod.next(self.log2size);
    }

    pub fn publish<M: PhysMemory<Addr = Hpa>>(&self, smmu: &Smmu<M>) {
        smmu.mmio_write(regs::CMDQ_PROD.0, 4, u64::from(self.prod.to_reg(self.log2size)));
    }

    /// SMMU_CMDQ_CONS.
    pub fn cons<M: PhysMemory<Addr = Hpa>>(smmu: &Smmu<M>) -> u64 {
        smmu.mmio_read(regs::CMDQ_CONS.0, 4)
    }
}

/// CMD_SYNC with CS = SIG_NONE.
pub fn sync() -> sviommu_smmuv3::spec::Command {
    sviommu_smmuv3::spec::Command::new(sviommu_smmuv3::spec::Opcode::Sync)
}

/// The same as [`smmu`]; named for tests that compare with a cached SMMU.
pub fn smmu_without_caches(mem: &HostMemory) -> Smmu<&HostMemory> {
    smmu(mem)
}

/// What software does with the Event queue at `base` of 2^`log2size` records: reads every record
/// from CONS to PROD, then writes CONS (copying PROD.OVFLG into OVACKFLG when `ack`).
pub fn consume_events<M: PhysMemory<Addr = Hpa>>(
    mem: &HostMemory,
    s: &Smmu<M>,
    base: u64,
    log2size: u8,
    ack: bool,
) -> Vec<sviommu_smmuv3::spec::EventRecord> {
    use sviommu_smmuv3::spec::regs::{cons, prod, QueuePointer};
    let p = s.mmio_read(regs::EVENTQ_PROD.0, 4);
    let c = s.mmio_read(regs::EVENTQ_CONS.0, 4);
    let wr = QueuePointer::from_reg(u32::try_from(prod::WR.get(p)).unwrap(), log2size);
    let mut rd = QueuePointer::from_reg(u32::try_from(cons::RD.get(c)).unwrap(), log2size);
    let mut out = Vec::new();
    while rd != wr {
        let at = base + 32 * u64::from(rd.index);
        let words: [u64; 4] =
            std::array::from_fn(|i| mem.read_u64(Hpa(at + 8 * i as u64)).unwrap());
        out.push(sviommu_smmuv3::spec::EventRecord::from_words(words));
        rd = rd.next(log2size);
    }
    let mut v = cons::RD.set(c, u64::from(rd.to_reg(log2size)));
    if ack {
        v = cons::OVACKFLG.set(v, prod::OVFLG.get(p));
    }
    s.mmio_write(regs::EVENTQ_CONS.0, 4, v);
    out
}

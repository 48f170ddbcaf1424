//! What the driver tests share: memory, an SMMU model, a driver over it, and the device's view
//! (transactions through the model's `translate`).

#![allow(dead_code)]

use std::sync::Mutex;

use sviommu_memory::{FrameAllocator, HostMemory, Hpa, PhysMemory};
use sviommu_smmuv3::driver::{DriverConfig, Mmio, SmmuDriver};
use sviommu_smmuv3::hw::{
    Abort, Access, Event, Output, Profile, Smmu, SmmuParams, Transaction, Translation,
};
use sviommu_smmuv3::spec::regs::{idr0, idr1, idr3};

/// Memory is [0, 16M).
pub const MEM_BYTES: u64 = 0x100_0000;
/// The driver's frames come from [4M, 16M); [1M, 4M) is the test's own (guest RAM).
pub const DRIVER_FRAMES: u64 = 0x40_0000;

pub fn memory() -> HostMemory {
    HostMemory::new(&[(Hpa(0), MEM_BYTES)]).unwrap()
}

pub fn frames() -> FrameAllocator<Hpa> {
    FrameAllocator::new(&[(Hpa(DRIVER_FRAMES), MEM_BYTES - DRIVER_FRAMES)])
}

/// The profile the suite runs under: `SVIOMMU_PROFILE` (`forgiving`, `strict`, `strict:SEED`),
/// forgiving when unset, so `SVIOMMU_PROFILE=strict cargo test` runs the driver suite against
/// the strict model.
pub fn profile() -> Profile {
    std::env::var("SVIOMMU_PROFILE")
        .map(|s| s.parse().expect("SVIOMMU_PROFILE: forgiving, strict or strict:SEED"))
        .unwrap_or_default()
}

/// The default SMMU's parameters, under [`profile`].
pub fn params() -> SmmuParams {
    SmmuParams { profile: profile(), ..SmmuParams::default() }
}

/// The default SMMU with ATS, PRI (an 8-entry PRI queue) and PPS advertised.
pub fn ats_pri_params() -> SmmuParams {
    let d = params();
    let i0 = [idr0::ATS, idr0::PRI].iter().fold(u64::from(d.idr0), |v, f| f.with(v, true));
    let i1 = idr1::PRIQS.set(u64::from(d.idr1), 3);
    let i3 = idr3::PPS.with(u64::from(d.idr3), true);
    SmmuParams {
        idr0: u32::try_from(i0).unwrap(),
        idr1: u32::try_from(i1).unwrap(),
        idr3: u32::try_from(i3).unwrap(),
        ..d
    }
}

/// Ends a driver test's scenario with no sanitizer report: under `SVIOMMU_PROFILE=strict` the
/// driver owes the SMMU no command it forgot (issue 14). Declared after the SMMU, so it checks
/// before the SMMU goes.
pub struct CleanAtEnd<'a>(pub &'a Smmu<&'a HostMemory>);

impl Drop for CleanAtEnd<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let v = self.0.violations();
        let text: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert!(v.is_empty(), "the driver left violations: {text:#?}");
        assert_eq!(self.0.sanitizer_stats().dropped, 0);
    }
}

/// A test that translates on purpose before the driver flushed: under strict the sanitizer
/// reports each of the `n` entries it used, naming the command; under forgiving nothing.
#[track_caller]
pub fn expect_stale(smmu: &Smmu<&HostMemory>, n: usize) -> Vec<sviommu_smmuv3::hw::Violation> {
    let v = smmu.violations();
    let want = if smmu.params().profile.is_strict() { n } else { 0 };
    assert_eq!(v.len(), want, "{:#?}", v.iter().map(ToString::to_string).collect::<Vec<_>>());
    v
}

pub type Driver<'a> = SmmuDriver<&'a Smmu<&'a HostMemory>, &'a HostMemory>;

pub fn driver<'a>(
    smmu: &'a Smmu<&'a HostMemory>,
    mem: &'a HostMemory,
    config: DriverConfig,
) -> Driver<'a> {
    SmmuDriver::new(smmu, mem, frames(), config).unwrap()
}

pub fn read(sid: u32, addr: u64) -> Transaction {
    Transaction::new(sid, addr, Access::READ)
}

pub fn write(sid: u32, addr: u64) -> Transaction {
    Transaction::new(sid, addr, Access::WRITE)
}

/// The output address of a transaction the SMMU let through.
#[track_caller]
pub fn output(r: Result<Translation, Abort>) -> u64 {
    match r {
        Ok(t) => t.output,
        Err(a) => panic!("expected a translation, got {a:?}"),
    }
}

/// The event of a termination that has one.
#[track_caller]
pub fn event(r: Result<Translation, Abort>) -> Event {
    match r {
        Err(Abort::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Every byte of memory, for checking that a refused call wrote nothing.
pub fn snapshot(mem: &HostMemory) -> Vec<u8> {
    let mut buf = vec![0u8; usize::try_from(MEM_BYTES).unwrap()];
    mem.read(Hpa(0), &mut buf).unwrap();
    buf
}

/// Registers as an interrupt controller sees the SMMU: after every register write it delivers
/// the SMMU's MSIs as the memory writes they are and keeps its other outputs.
pub struct MsiDelivery<'a> {
    pub smmu: &'a Smmu<&'a HostMemory>,
    pub mem: &'a HostMemory,
    pub others: Mutex<Vec<Output>>,
    pub msis: Mutex<u32>,
}

impl Mmio for MsiDelivery<'_> {
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.smmu.mmio_read(offset, size)
    }

    fn write(&self, offset: u64, size: u8, value: u64) {
        self.smmu.mmio_write(offset, size, value);
        for o in self.smmu.drain_outputs() {
            match o {
                Output::Msi { addr, data } => {
                    self.mem.write(Hpa(addr), &data.to_le_bytes()).unwrap();
                    *self.msis.lock().unwrap() += 1;
                }
                other => self.others.lock().unwrap().push(other),
            }
        }
    }
}

//! What the driver tests share: host memory shared (through `Arc`) by a unit and the driver that
//! programs it, and the device's side: requests sent to the unit's `translate`, never a look at
//! the driver's own state.

#![allow(dead_code)]

use std::sync::Arc;

use sviommu_memory::{FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory};
use sviommu_vtd::driver::{DriverConfig, VtdDriver};
use sviommu_vtd::hw::{Access, DmaRequest, Profile, Translation, Vtd, VtdParams};
use sviommu_vtd::spec::FaultReason;

/// The driver's table memory.
pub const TABLES_HPA: u64 = 0x10_0000;
/// Bytes of it.
pub const TABLES_LEN: u64 = 0x80_0000;
/// A guest's RAM (GPA 0 up) in host memory.
pub const GUEST_RAM_HPA: u64 = 0x1000_0000;
/// Bytes of guest RAM.
pub const GUEST_RAM_LEN: u64 = 0x100_0000;

pub type Mem = Arc<HostMemory>;
pub type Unit = Arc<Vtd<Mem>>;
pub type Driver = VtdDriver<Unit, Mem>;

/// A unit and the driver that brought it up, over one memory.
pub struct Rig {
    pub mem: Mem,
    pub vtd: Unit,
    pub drv: Driver,
}

pub fn memory() -> Mem {
    Arc::new(
        HostMemory::new(&[(Hpa(TABLES_HPA), TABLES_LEN), (Hpa(GUEST_RAM_HPA), GUEST_RAM_LEN)])
            .unwrap(),
    )
}

pub fn frames() -> FrameAllocator<Hpa> {
    FrameAllocator::new(&[(Hpa(TABLES_HPA), TABLES_LEN)])
}

/// The profile the suite runs under: `SVIOMMU_PROFILE` (`forgiving`, `strict`, `strict:SEED`),
/// forgiving when unset, so `SVIOMMU_PROFILE=strict cargo test` runs the driver suite against
/// the strict model.
pub fn profile() -> Profile {
    std::env::var("SVIOMMU_PROFILE")
        .map(|s| s.parse().expect("SVIOMMU_PROFILE: forgiving, strict or strict:SEED"))
        .unwrap_or_default()
}

/// The default unit's parameters, under [`profile`].
pub fn params() -> VtdParams {
    VtdParams { profile: profile(), ..VtdParams::default() }
}

/// Every driver test's scenario ends with no sanitizer report: under
/// `SVIOMMU_PROFILE=strict` the driver owes the unit no invalidation it forgot (issue 14).
impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let v = self.vtd.violations();
        let text: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert!(v.is_empty(), "the driver left violations: {text:#?}");
        assert_eq!(self.vtd.sanitizer_stats().dropped, 0);
    }
}

/// A test that translates on purpose before the driver flushed: under strict the sanitizer
/// reports each of the `n` entries it used (once each), naming the command the flush will
/// send; under forgiving nothing. Drained, so the scenario can go on.
#[track_caller]
pub fn expect_stale(r: &Rig, n: usize) -> Vec<sviommu_vtd::hw::Violation> {
    let v = r.vtd.violations();
    let want = if r.vtd.params().profile.is_strict() { n } else { 0 };
    assert_eq!(v.len(), want, "{:#?}", v.iter().map(ToString::to_string).collect::<Vec<_>>());
    v
}

/// A unit with `params` and a driver brought up on it with `config`.
pub fn rig_with(params: VtdParams, config: DriverConfig) -> Rig {
    let mem = memory();
    let vtd = Arc::new(Vtd::new(mem.clone(), params));
    let drv = VtdDriver::new(vtd.clone(), mem.clone(), frames(), config).unwrap();
    Rig { mem, vtd, drv }
}

/// The default unit (scalable mode) and driver.
pub fn rig() -> Rig {
    rig_with(params(), DriverConfig::default())
}

/// The default unit, driven in legacy mode.
pub fn legacy_rig() -> Rig {
    let config =
        DriverConfig { mode: sviommu_vtd::driver::ModeChoice::Legacy, ..Default::default() };
    rig_with(params(), config)
}

pub fn read(rid: u16, addr: u64) -> DmaRequest {
    DmaRequest::new(rid, addr, Access::READ)
}

pub fn write(rid: u16, addr: u64) -> DmaRequest {
    DmaRequest::new(rid, addr, Access::WRITE)
}

/// The translation of a request that must translate.
#[track_caller]
pub fn ok(vtd: &Unit, req: DmaRequest) -> Translation {
    match vtd.translate(&req) {
        Ok(t) => t,
        Err(f) => panic!("expected a translation of {req:?}, got {} ", f.reason),
    }
}

/// The output address of a request that must translate.
#[track_caller]
pub fn out(vtd: &Unit, req: DmaRequest) -> u64 {
    ok(vtd, req).output
}

/// The fault reason of a request that must fault.
#[track_caller]
pub fn reason(vtd: &Unit, req: DmaRequest) -> FaultReason {
    match vtd.translate(&req) {
        Err(f) => f.reason,
        Ok(t) => panic!("expected a fault for {req:?}, got {t:?}"),
    }
}

/// Every byte of the driver's table memory and the allocator's free bytes: what a refused
/// call must leave as it was.
pub fn snapshot(r: &Rig) -> (Vec<u8>, u64) {
    let mut bytes = vec![0u8; TABLES_LEN as usize];
    r.mem.read(Hpa(TABLES_HPA), &mut bytes).unwrap();
    (bytes, r.drv.frames().free_bytes())
}

/// The guest's RAM over `mem`: GPA [0, GUEST_RAM_LEN) at GUEST_RAM_HPA.
pub fn guest_ram(mem: &HostMemory) -> GuestRam<&HostMemory> {
    GuestRam::new(
        mem,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_RAM_LEN, hpa: Hpa(GUEST_RAM_HPA) }],
    )
}

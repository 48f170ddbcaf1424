//! The exported functions: the unsafe boundary. Each turns its pointers into references
//! (`input`, `output`, `unit`), refusing null, and calls safe code inside `guard`, which
//! catches a panic (a model bug) and returns `SVIOMMU_ERR_PANIC` instead of unwinding into C.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::callbacks::Callbacks;
use crate::params;
use crate::types::*;
use crate::unit::SviommuUnit;

/// Stores the faults the unit recorded by code, and what its walks read, in `*stats`.
///
/// # Safety
/// `unit` is null or a live handle; `stats` is null or valid for writing one
/// `SviommuRecordStats`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_record_stats(
    unit: *const SviommuUnit,
    stats: *mut SviommuRecordStats,
) -> i32 {
    // SAFETY: the function's contract.
    let out = unsafe { output(stats) };
    // SAFETY: the function's contract.
    unsafe { with_unit(unit, |u| code(out.map(|s| *s = u.record_stats()))) }
}

/// Writes the unit's statistics as text, one `name value` line each (every counter of
/// `SviommuStats` and `SviommuRecordStats`; faults by code as `fault.0xNN`, structures by type and walk reads by level
/// where non-zero), into `buf`: at most `cap - 1` bytes and a terminating NUL (nothing when
/// `cap` is 0). `*len` gets the whole text's length without the NUL, so a caller whose buffer
/// was short (`*len >= cap`) can call again with `*len + 1` bytes.
///
/// # Safety
/// `unit` is null or a live handle; `buf` is valid for writing `cap` bytes (it may be null
/// when `cap` is 0); `len` is null or valid for writing one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_stats_text(
    unit: *const SviommuUnit,
    buf: *mut core::ffi::c_char,
    cap: usize,
    len: *mut usize,
) -> i32 {
    // SAFETY: the function's contract.
    let len = unsafe { output(len) };
    if cap > 0 && buf.is_null() {
        return SVIOMMU_ERR_NULL;
    }
    let fill = |u: &SviommuUnit| {
        let len = len?;
        let text = crate::text::stats_text(&u.stats(), &u.record_stats(), &u.violations());
        *len = text.len();
        if cap > 0 {
            // SAFETY: the function's contract: `buf` is non-null and holds `cap` bytes.
            let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) };
            let n = text.len().min(cap - 1);
            let (body, rest) = out.split_at_mut(n);
            body.copy_from_slice(text.as_bytes().get(..n).unwrap_or_default());
            if let Some(nul) = rest.first_mut() {
                *nul = 0;
            }
        }
        Ok(())
    };
    // SAFETY: the function's contract.
    unsafe { with_unit(unit, |u| code(fill(u))) }
}

/// Panics caught at the boundary since the library was loaded, every unit's and those outside
/// any unit (`sviommu_panics`).
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Runs `f`, catching a panic: counted globally and on `unit`, answered `SVIOMMU_ERR_PANIC`.
fn guard(unit: Option<&SviommuUnit>, f: impl FnOnce() -> i32) -> i32 {
    // The models keep no state a panic could leave half-made that a later call trusts: their
    // locks are taken with `PoisonError::into_inner` and every register write is one
    // assignment. So the unit stays usable, and asserting unwind safety is sound.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        if let Some(u) = unit {
            u.count_panic();
        }
        SVIOMMU_ERR_PANIC
    })
}

/// `p` as a shared reference, or `SVIOMMU_ERR_NULL`.
///
/// # Safety
/// `p` is null or points to a live, aligned, initialised `T` that nothing writes during the
/// call (the header's contract for every pointer argument).
unsafe fn input<'a, T>(p: *const T) -> Result<&'a T, i32> {
    // SAFETY: the caller's contract above; `as_ref` handles null.
    unsafe { p.as_ref() }.ok_or(SVIOMMU_ERR_NULL)
}

/// `p` as an exclusive reference, or `SVIOMMU_ERR_NULL`.
///
/// # Safety
/// `p` is null or points to a live, aligned `T` that nothing else accesses during the call.
/// Every `T` used here is plain integers, so any bit pattern it held is valid.
unsafe fn output<'a, T>(p: *mut T) -> Result<&'a mut T, i32> {
    // SAFETY: the caller's contract above; `as_mut` handles null.
    unsafe { p.as_mut() }.ok_or(SVIOMMU_ERR_NULL)
}

/// Runs `f` on the unit behind `unit`, or answers `SVIOMMU_ERR_NULL`.
///
/// # Safety
/// `unit` is null or a handle a create function returned that has not been destroyed.
unsafe fn with_unit(unit: *const SviommuUnit, f: impl FnOnce(&SviommuUnit) -> i32) -> i32 {
    // SAFETY: the caller's contract above: a live handle is a `Box<SviommuUnit>` we leaked, and
    // the unit is `Sync`, so shared references from several threads are fine.
    match unsafe { input(unit) } {
        Ok(u) => guard(Some(u), || f(u)),
        Err(e) => e,
    }
}

fn code(r: Result<(), i32>) -> i32 {
    r.err().unwrap_or(SVIOMMU_OK)
}

/// Fills `*out` with the default VT-d unit's parameters: scalable and legacy mode, first and
/// second stage, nested, pass-through, 39/48/57-bit AGAW, 20-bit PASIDs, queued invalidation,
/// device-TLBs and page requests; caching mode off.
///
/// # Safety
/// `out` is null (`SVIOMMU_ERR_NULL`) or valid for writing one `SviommuVtdParams`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_vtd_params_default(out: *mut SviommuVtdParams) -> i32 {
    // SAFETY: the function's contract.
    guard(None, || code(unsafe { output(out) }.map(|o| *o = params::vtd_default())))
}

/// Fills `*out` with the default SMMU's parameters: stage 1 and 2, two-level Stream and CD
/// tables, 16-bit StreamIDs, 20-bit SubstreamIDs, 4K/16K/64K granules, 52-bit OAS, wired
/// interrupts (no MSI), no ATS or PRI.
///
/// # Safety
/// `out` is null (`SVIOMMU_ERR_NULL`) or valid for writing one `SviommuSmmuParams`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_smmu_params_default(out: *mut SviommuSmmuParams) -> i32 {
    // SAFETY: the function's contract.
    guard(None, || code(unsafe { output(out) }.map(|o| *o = params::smmu_default())))
}

/// Makes a VT-d unit out of reset and stores its handle in `*unit`. `SVIOMMU_ERR_INVALID` for
/// parameters out of range or contradicting each other; `SVIOMMU_ERR_NULL` for a null
/// argument or a null `mem_read` / `mem_write` callback. On error `*unit` is not written.
/// The behaviour profile is the process environment's `SVIOMMU_PROFILE` (`forgiving`, the
/// default; `strict`; `strict:SEED`), read here (a value it cannot parse is
/// `SVIOMMU_ERR_INVALID`); under strict the statistics text carries the invalidation
/// sanitizer's reports.
///
/// # Safety
/// `params` and `callbacks` are null or point to valid structs; `unit` is null or valid for
/// writing a pointer. The callbacks and their `opaque` must stay usable until the unit is
/// destroyed.
#[no_mangle]
pub unsafe extern "C" fn sviommu_vtd_create(
    params: *const SviommuVtdParams,
    callbacks: *const SviommuCallbacks,
    unit: *mut *mut SviommuUnit,
) -> i32 {
    // SAFETY: the function's contract.
    let args = unsafe { (input(params), input(callbacks), output(unit)) };
    guard(None, || {
        let (p, c, u) = match args {
            (Ok(p), Ok(c), Ok(u)) => (p, c, u),
            _ => return SVIOMMU_ERR_NULL,
        };
        let Some(cb) = Callbacks::new(c) else { return SVIOMMU_ERR_NULL };
        let env = params::profile_from_env();
        match params::vtd_params(p).and_then(|p| Ok((p, env?))) {
            Ok((mut p, env)) => {
                p.profile = env.unwrap_or(p.profile);
                *u = Box::into_raw(Box::new(SviommuUnit::vtd(p, cb)));
                SVIOMMU_OK
            }
            Err(_) => SVIOMMU_ERR_INVALID,
        }
    })
}

/// Makes an SMMUv3 out of reset (disabled, following GBPA) and stores its handle in `*unit`.
/// Errors as for `sviommu_vtd_create`.
///
/// # Safety
/// As for `sviommu_vtd_create`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_smmu_create(
    params: *const SviommuSmmuParams,
    callbacks: *const SviommuCallbacks,
    unit: *mut *mut SviommuUnit,
) -> i32 {
    // SAFETY: the function's contract.
    let args = unsafe { (input(params), input(callbacks), output(unit)) };
    guard(None, || {
        let (p, c, u) = match args {
            (Ok(p), Ok(c), Ok(u)) => (p, c, u),
            _ => return SVIOMMU_ERR_NULL,
        };
        let Some(cb) = Callbacks::new(c) else { return SVIOMMU_ERR_NULL };
        let env = params::profile_from_env();
        match params::smmu_params(p).and_then(|p| Ok((p, env?))) {
            Ok((mut p, env)) => {
                p.profile = env.unwrap_or(p.profile);
                *u = Box::into_raw(Box::new(SviommuUnit::smmu(p, cb)));
                SVIOMMU_OK
            }
            Err(_) => SVIOMMU_ERR_INVALID,
        }
    })
}

/// Destroys a unit. Null is `SVIOMMU_ERR_NULL` and does nothing. Outputs still in the outbox
/// are dropped with it (drain first to deliver them).
///
/// # Safety
/// `unit` is null or a handle a create function returned, not yet destroyed, that no other
/// thread is using; it must not be used again.
#[no_mangle]
pub unsafe extern "C" fn sviommu_destroy(unit: *mut SviommuUnit) -> i32 {
    if unit.is_null() {
        return SVIOMMU_ERR_NULL;
    }
    // SAFETY: the contract: a live handle is the pointer `Box::into_raw` gave out, owned by
    // nobody else now; taking it back once frees it once.
    let boxed = unsafe { Box::from_raw(unit) };
    guard(None, move || {
        drop(boxed);
        SVIOMMU_OK
    })
}

/// Stores the unit's architecture (`SVIOMMU_ARCH_*`) in `*arch`.
///
/// # Safety
/// `unit` is null or a live handle; `arch` is null or valid for writing a `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_arch(unit: *const SviommuUnit, arch: *mut u32) -> i32 {
    // SAFETY: the function's contract.
    let out = unsafe { output(arch) };
    // SAFETY: the function's contract.
    unsafe { with_unit(unit, |u| code(out.map(|a| *a = u.arch()))) }
}

/// Stores the size in bytes of the unit's register window in `*size`: what the embedder maps
/// as its MMIO region (VT-d: 4 KiB for the default unit; SMMUv3: 128 KiB, pages 0 and 1).
///
/// # Safety
/// `unit` is null or a live handle; `size` is null or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_mmio_size(unit: *const SviommuUnit, size: *mut u64) -> i32 {
    // SAFETY: the function's contract.
    let out = unsafe { output(size) };
    // SAFETY: the function's contract.
    unsafe { with_unit(unit, |u| code(out.map(|s| *s = u.mmio_size()))) }
}

/// Reads `size` bytes (1, 2, 4 or 8, naturally aligned) at `offset` of the register window
/// into `*value`. Offsets with no register read 0. Other sizes or misaligned offsets are
/// `SVIOMMU_ERR_ACCESS` (counted).
///
/// # Safety
/// `unit` is null or a live handle; `value` is null or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_mmio_read(
    unit: *const SviommuUnit,
    offset: u64,
    size: u32,
    value: *mut u64,
) -> i32 {
    // SAFETY: the function's contract.
    let out = unsafe { output(value) };
    // SAFETY: the function's contract.
    unsafe {
        with_unit(unit, |u| match out {
            Ok(v) => code(u.mmio_read(offset, size).map(|x| *v = x)),
            Err(e) => e,
        })
    }
}

/// Writes the low `size` bytes (4 or 8, naturally aligned) of `value` at `offset`. Writes to
/// offsets with no register, or to read-only bits, are ignored as the hardware ignores them.
/// 1- and 2-byte writes and misaligned ones are `SVIOMMU_ERR_ACCESS` (counted), since both
/// architectures define registers as 32- and 64-bit. What the write made the unit send (MSIs,
/// device-TLB invalidations, page responses) is delivered through the callbacks before this
/// returns.
///
/// # Safety
/// `unit` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn sviommu_mmio_write(
    unit: *const SviommuUnit,
    offset: u64,
    size: u32,
    value: u64,
) -> i32 {
    // SAFETY: the function's contract.
    unsafe { with_unit(unit, |u| code(u.mmio_write(offset, size, value))) }
}

/// Translates one request into `*result`. A fault is an answer (`SVIOMMU_OUTCOME_FAULT` with
/// its architected code), not an error; errors are for requests no device can send
/// (`SVIOMMU_ERR_INVALID`: unknown access bits, a PASID above 20 bits, a VT-d requester ID
/// above 0xffff, `has_pasid` not 0 or 1). After a fault, what the unit sent (its fault event
/// or Event queue interrupt) is delivered through the callbacks before this returns. May be
/// called from several threads at once.
///
/// # Safety
/// `unit` is null or a live handle; `request` is null or points to a valid request; `result`
/// is null or valid for writing one `SviommuResult`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_translate(
    unit: *const SviommuUnit,
    request: *const SviommuRequest,
    result: *mut SviommuResult,
) -> i32 {
    // SAFETY: the function's contract.
    let (req, out) = unsafe { (input(request), output(result)) };
    // SAFETY: the function's contract.
    unsafe {
        with_unit(unit, |u| match (req, out) {
            (Ok(r), Ok(o)) => code(u.translate(r).map(|x| *o = x)),
            _ => SVIOMMU_ERR_NULL,
        })
    }
}

/// Delivers everything the unit has sent and not yet delivered, through the callbacks. MMIO
/// writes and faulting translations already do this; an embedder calls it when a callback was
/// busy or after changing what the callbacks reach.
///
/// # Safety
/// `unit` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn sviommu_drain(unit: *const SviommuUnit) -> i32 {
    // SAFETY: the function's contract.
    unsafe {
        with_unit(unit, |u| {
            u.drain();
            SVIOMMU_OK
        })
    }
}

/// Stores everything the unit and the boundary have counted in `*stats`.
///
/// # Safety
/// `unit` is null or a live handle; `stats` is null or valid for writing one `SviommuStats`.
#[no_mangle]
pub unsafe extern "C" fn sviommu_stats(unit: *const SviommuUnit, stats: *mut SviommuStats) -> i32 {
    // SAFETY: the function's contract.
    let out = unsafe { output(stats) };
    // SAFETY: the function's contract.
    unsafe { with_unit(unit, |u| code(out.map(|s| *s = u.stats()))) }
}

/// Panics caught at the boundary since the library was loaded, by every unit and by calls
/// outside any unit. A non-zero value is a model bug worth reporting.
#[no_mangle]
pub extern "C" fn sviommu_panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_error_code_and_counted() {
        let before = sviommu_panics();
        assert_eq!(guard(None, || panic!("a model bug")), SVIOMMU_ERR_PANIC);
        assert_eq!(guard(None, || SVIOMMU_OK), SVIOMMU_OK);
        assert_eq!(sviommu_panics(), before + 1);
    }
}

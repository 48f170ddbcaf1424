//! The embedder's callbacks: guest memory as the models' `PhysMemory`, and the delivery of
//! MSIs and messages. This module and `abi` are the only places with `unsafe`: here, the calls
//! through the embedder's function pointers.

use core::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sviommu_memory::{Hpa, MemoryError, PhysMemory};

use crate::types::{
    SviommuCallbacks, SviommuMemCmpxchg64, SviommuMemRead, SviommuMemWrite, SviommuMessage,
    SviommuMessageFn, SviommuMsi,
};

/// The embedder's callbacks, checked: the two memory callbacks are present (`new` refuses
/// them otherwise).
#[derive(Clone, Copy, Debug)]
pub struct Callbacks {
    opaque: *mut c_void,
    read: SviommuMemRead,
    write: SviommuMemWrite,
    cmpxchg: SviommuMemCmpxchg64,
    msi: SviommuMsi,
    message: SviommuMessageFn,
}

// SAFETY: `opaque` is only ever passed back to the embedder's callbacks, never dereferenced
// here. The header's contract for `SviommuCallbacks` is that the callbacks may be called from
// every thread that calls into the unit; an embedder that calls from one thread needs nothing
// more.
unsafe impl Send for Callbacks {}
// SAFETY: as for `Send`: shared references only copy the pointers and pass them back.
unsafe impl Sync for Callbacks {}

impl Callbacks {
    /// The callbacks, or `None` if a required one is null.
    pub fn new(c: &SviommuCallbacks) -> Option<Self> {
        c.mem_read?;
        c.mem_write?;
        Some(Self {
            opaque: c.opaque,
            read: c.mem_read,
            write: c.mem_write,
            cmpxchg: c.mem_cmpxchg64,
            msi: c.msi,
            message: c.message,
        })
    }

    /// Delivers an MSI; `false` if there is no MSI callback.
    pub fn msi(&self, addr: u64, data: u32) -> bool {
        let Some(f) = self.msi else { return false };
        // SAFETY: `f` is the embedder's MSI callback and `opaque` the pointer it asked to get
        // back, as the header's contract says; no pointer of ours is passed.
        unsafe { f(self.opaque, addr, data) };
        true
    }

    /// Delivers a message; `false` if there is no message callback.
    pub fn message(&self, m: &SviommuMessage) -> bool {
        let Some(f) = self.message else { return false };
        // SAFETY: `m` is a valid `SviommuMessage` that lives across the call, which is all the
        // header promises the callback (it must not keep the pointer).
        unsafe { f(self.opaque, m) };
        true
    }
}

/// Guest memory through the embedder's callbacks, as the models' `PhysMemory` (`Hpa`: the
/// unit's physical address space is the guest's physical memory).
#[derive(Debug)]
pub struct CallbackMemory {
    cb: Callbacks,
    /// Serialises the emulated compare-exchange (no `mem_cmpxchg64` callback) with the unit's
    /// other emulated ones.
    rmw: Mutex<()>,
    /// Accesses the embedder refused; shared with the unit's counters.
    errors: Arc<AtomicU64>,
}

impl CallbackMemory {
    pub fn new(cb: Callbacks, errors: Arc<AtomicU64>) -> Self {
        Self { cb, rmw: Mutex::new(()), errors }
    }

    fn refused(&self, addr: u64, len: u64) -> MemoryError {
        self.errors.fetch_add(1, Ordering::Relaxed);
        MemoryError::Outside { addr, len }
    }

    fn len_of(buf: &[u8]) -> u64 {
        u64::try_from(buf.len()).unwrap_or(u64::MAX)
    }

    /// The access `[addr, addr + len)` wraps around the address space: outside memory.
    fn wraps(addr: u64, len: u64) -> bool {
        len > 0 && addr.checked_add(len - 1).is_none()
    }

    fn aligned8(addr: u64) -> Result<(), MemoryError> {
        if addr % 8 == 0 {
            Ok(())
        } else {
            Err(MemoryError::Misaligned { addr, align: 8 })
        }
    }
}

impl PhysMemory for CallbackMemory {
    type Addr = Hpa;

    fn read_u64(&self, addr: Hpa) -> Result<u64, MemoryError> {
        Self::aligned8(addr.0)?;
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemoryError> {
        Self::aligned8(addr.0)?;
        self.write(addr, &value.to_le_bytes())
    }

    fn compare_exchange_u64(
        &self,
        addr: Hpa,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        Self::aligned8(addr.0)?;
        if let Some(f) = self.cb.cmpxchg {
            let mut found = 0u64;
            // SAFETY: `found` is a live, aligned u64 the callback writes once, as its contract
            // says; `opaque` is the embedder's own pointer.
            let rc = unsafe { f(self.cb.opaque, addr.0, current, new, &mut found) };
            if rc != 0 {
                return Err(self.refused(addr.0, 8));
            }
            return Ok(if found == current { Ok(found) } else { Err(found) });
        }
        // DEVIATION: without the embedder's compare-exchange the update is atomic only with
        // respect to this unit's own accesses (QEMU's IOMMUs update A/D flags the same way).
        let _held = self.rmw.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = self.read_u64(addr)?;
        if seen != current {
            return Ok(Err(seen));
        }
        self.write_u64(addr, new)?;
        Ok(Ok(seen))
    }

    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = Self::len_of(buf);
        if len == 0 {
            return Ok(());
        }
        if Self::wraps(addr.0, len) {
            return Err(MemoryError::Outside { addr: addr.0, len });
        }
        let Some(f) = self.cb.read else { return Err(self.refused(addr.0, len)) };
        // SAFETY: `buf` is a live, writable slice of exactly `len` bytes for the whole call;
        // the callback's contract is to write at most `len` bytes there and not keep it.
        let rc = unsafe { f(self.cb.opaque, addr.0, buf.as_mut_ptr(), len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(self.refused(addr.0, len))
        }
    }

    fn write(&self, addr: Hpa, buf: &[u8]) -> Result<(), MemoryError> {
        let len = Self::len_of(buf);
        if len == 0 {
            return Ok(());
        }
        if Self::wraps(addr.0, len) {
            return Err(MemoryError::Outside { addr: addr.0, len });
        }
        let Some(f) = self.cb.write else { return Err(self.refused(addr.0, len)) };
        // SAFETY: `buf` is a live slice of exactly `len` bytes for the whole call; the
        // callback only reads it.
        let rc = unsafe { f(self.cb.opaque, addr.0, buf.as_ptr(), len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(self.refused(addr.0, len))
        }
    }
}

//! A guest's RAM as the guest sees it: guest-physical addresses over host memory.

use crate::addr::{Address, Gpa, Hpa};
use crate::host::{MemoryError, PhysMemory};

/// One contiguous piece of guest RAM and the host memory behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRamRegion {
    /// First guest-physical address.
    pub gpa: Gpa,
    /// Size in bytes.
    pub len_bytes: u64,
    /// Host-physical address of the first byte.
    pub hpa: Hpa,
}

/// Guest RAM laid out as a VMM lays it out: a few contiguous host blocks at guest-physical
/// addresses. A guest driver builds its stage-1 tables through this view, with the same builders
/// the host uses; the host's stage-2 tables map the same layout.
///
/// This is the VMM's view, not the IOMMU's: a device's table fetches go through stage 2.
#[derive(Debug)]
pub struct GuestRam<M: PhysMemory<Addr = Hpa>> {
    host: M,
    regions: Vec<GuestRamRegion>,
}

impl<M: PhysMemory<Addr = Hpa>> GuestRam<M> {
    /// Guest RAM over `host` with the given regions.
    pub fn new(host: M, regions: Vec<GuestRamRegion>) -> Self {
        Self { host, regions }
    }

    /// The regions, as given.
    pub fn regions(&self) -> &[GuestRamRegion] {
        &self.regions
    }

    /// The host memory behind this guest RAM.
    pub fn host(&self) -> &M {
        &self.host
    }

    /// The host address of `[gpa, gpa + len)`, if one region holds all of it.
    pub fn to_hpa(&self, gpa: Gpa, len: u64) -> Result<Hpa, MemoryError> {
        let outside = MemoryError::Outside { addr: gpa.0, len };
        let end = gpa.0.checked_add(len).ok_or(outside)?;
        self.regions
            .iter()
            .find(|r| r.gpa.0 <= gpa.0 && end <= r.gpa.0.saturating_add(r.len_bytes))
            .and_then(|r| r.hpa.checked_add(gpa.0 - r.gpa.0))
            .ok_or(outside)
    }
}

impl<M: PhysMemory<Addr = Hpa>> PhysMemory for GuestRam<M> {
    type Addr = Gpa;

    fn read_u64(&self, addr: Gpa) -> Result<u64, MemoryError> {
        self.host.read_u64(self.to_hpa(addr, 8)?)
    }
    fn write_u64(&self, addr: Gpa, value: u64) -> Result<(), MemoryError> {
        self.host.write_u64(self.to_hpa(addr, 8)?, value)
    }
    fn compare_exchange_u64(
        &self,
        addr: Gpa,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.host.compare_exchange_u64(self.to_hpa(addr, 8)?, current, new)
    }
    fn read(&self, addr: Gpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.host.read(self.to_hpa(addr, buf.len() as u64)?, buf)
    }
    fn write(&self, addr: Gpa, buf: &[u8]) -> Result<(), MemoryError> {
        self.host.write(self.to_hpa(addr, buf.len() as u64)?, buf)
    }
}

/// Guest RAM as the physical memory of a device model that runs inside the guest (a virtual
/// IOMMU): the model's physical addresses (`Hpa`) are the guest's GPAs. The hardware models take
/// `PhysMemory<Addr = Hpa>`; this view lets the same model serve a guest, reading the tables and
/// queues the guest wrote at the addresses the guest wrote into its registers.
#[derive(Debug)]
pub struct GuestPhys<M: PhysMemory<Addr = Hpa>>(pub GuestRam<M>);

impl<M: PhysMemory<Addr = Hpa>> GuestPhys<M> {
    /// The guest RAM behind the view.
    pub fn ram(&self) -> &GuestRam<M> {
        &self.0
    }
}

impl<M: PhysMemory<Addr = Hpa>> PhysMemory for GuestPhys<M> {
    type Addr = Hpa;

    fn read_u64(&self, addr: Hpa) -> Result<u64, MemoryError> {
        self.0.read_u64(Gpa(addr.0))
    }
    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemoryError> {
        self.0.write_u64(Gpa(addr.0), value)
    }
    fn compare_exchange_u64(
        &self,
        addr: Hpa,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.0.compare_exchange_u64(Gpa(addr.0), current, new)
    }
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.read(Gpa(addr.0), buf)
    }
    fn write(&self, addr: Hpa, buf: &[u8]) -> Result<(), MemoryError> {
        self.0.write(Gpa(addr.0), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostMemory;

    #[test]
    fn guest_addresses_land_in_their_host_blocks() {
        let host = HostMemory::new(&[(Hpa(0x100_0000), 0x20_0000)]).unwrap();
        let ram = GuestRam::new(
            &host,
            vec![
                GuestRamRegion { gpa: Gpa(0), len_bytes: 0x10_0000, hpa: Hpa(0x110_0000) },
                GuestRamRegion { gpa: Gpa(0x8000_0000), len_bytes: 0x1000, hpa: Hpa(0x100_0000) },
            ],
        );
        ram.write_u64(Gpa(0x8000_0010), 42).unwrap();
        assert_eq!(host.read_u64(Hpa(0x100_0010)), Ok(42));
        assert_eq!(ram.to_hpa(Gpa(0x20), 8), Ok(Hpa(0x110_0020)));
        assert!(ram.read_u64(Gpa(0x10_0000)).is_err());
        // An access may not run off the end of its region.
        assert!(ram.read(Gpa(0x8000_0ff8), &mut [0u8; 16]).is_err());
        // A model inside the guest indexes the same RAM by GPA.
        let phys = GuestPhys(ram);
        assert_eq!(phys.read_u64(Hpa(0x8000_0010)), Ok(42));
        assert!(phys.read_u64(Hpa(0x10_0000)).is_err());
    }
}

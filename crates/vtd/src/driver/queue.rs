//! §6.5.2 the invalidation queue, as software drives it: descriptors written at the tail, IQT
//! moved past them, and a wait descriptor whose status write the driver polls for. Every batch
//! ends with one wait, so a call returns only once the unit has completed the invalidations.

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Address, FrameAllocator, PhysMemory};

use super::{offset, poll, DriverConfig, DriverError, DriverStats, Feature, Mmio, Mode, VtdDriver};
use crate::spec::inv::{
    CcGranularity, ContextCacheInv, DescWidth, DevTlbInv, InvWait, IotlbGranularity, IotlbInv,
    PasidCacheGranularity, PasidCacheInv, PasidDevTlbInv, PasidIotlbGranularity, PasidIotlbInv,
};
use crate::spec::regs::{self, fsts, gcmd, gsts, iqa, iqer, iqh, iqt};

/// The queue: where it is, how wide its descriptors are, where software writes next, and the
/// status word wait descriptors write.
#[derive(Debug)]
pub(super) struct Queue<A> {
    base: A,
    bytes: u64,
    width: DescWidth,
    tail: u64,
    status: A,
    seq: u32,
}

/// An address range of an invalidation: `2^(12 + am)` bytes at `addr` (§6.5.2.3 ADDR, AM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PageMask {
    pub(super) addr: u64,
    pub(super) am: u8,
}

impl PageMask {
    /// The smallest naturally aligned power-of-two block of pages that covers
    /// `[iova, iova + size)`; `None` for an empty or wrapping range.
    pub(super) fn covering(iova: u64, size: u64) -> Option<Self> {
        let last = iova.checked_add(size.checked_sub(1)?)?;
        let mut am = 0u8;
        while am < 52 && (iova >> (12 + am)) != (last >> (12 + am)) {
            am += 1;
        }
        Some(Self { addr: iova & !low_mask(12 + am), am })
    }

    /// The range as an ATS invalidation address and S bit (PCIe ATS; §6.5.2.5): the inverse of
    /// `spec::inv::ats_range`.
    pub(super) fn ats(self) -> (u64, bool) {
        ats_addr(self.addr, 12 + self.am)
    }
}

/// The ATS address and S bit for the `2^lg2` bytes at `base` (lg2 64: everything): the bits
/// from 12 up to the size's top bit set, the size's top bit clear.
fn ats_addr(base: u64, lg2: u8) -> (u64, bool) {
    if lg2 <= 12 {
        return (base & !low_mask(12), false);
    }
    if lg2 >= 64 {
        return (!low_mask(12), true);
    }
    let ones = low_mask(lg2 - 1) & !low_mask(12);
    ((base & !low_mask(lg2)) | ones, true)
}

/// An invalidation a guest (through a virtual IOMMU) or the core asks for. Turned into queue
/// descriptors, submitted as one batch that ends with one wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidateRequest {
    /// §6.5.2.3 IOTLB invalidation of a domain (second-stage and nested translations), all of
    /// it or a range (`addr`, `size`); `ih`: only leaves changed.
    Iotlb {
        /// The domain.
        did: u16,
        /// The range, or `None` for the whole domain.
        range: Option<(u64, u64)>,
        /// Invalidation hint.
        ih: bool,
    },
    /// §6.5.2.4 PASID-based IOTLB invalidation (first-stage and nested translations).
    PasidIotlb {
        /// The domain.
        did: u16,
        /// The PASID.
        pasid: u32,
        /// The range, or `None` for every non-global translation of the PASID.
        range: Option<(u64, u64)>,
        /// Invalidation hint.
        ih: bool,
    },
    /// §6.5.2.2 PASID-cache invalidation: one PASID of a domain, or the whole domain.
    PasidCache {
        /// The domain.
        did: u16,
        /// The PASID, or `None` for every PASID of the domain.
        pasid: Option<u32>,
    },
    /// §6.5.2.5 / §6.5.2.6 device-TLB invalidation.
    DevTlb {
        /// The device.
        sid: u16,
        /// The PASID (PASID-based device-TLB invalidation), or `None`.
        pasid: Option<u32>,
        /// The range, or `None` for everything.
        range: Option<(u64, u64)>,
    },
}

/// Global context-cache, PASID-cache (scalable mode) and IOTLB invalidation.
pub(super) fn global_invalidations(mode: Mode) -> Vec<[u64; 4]> {
    let mut cc = ContextCacheInv::new();
    cc.set_g(CcGranularity::Global);
    let mut iotlb = IotlbInv::new();
    iotlb.set_g(IotlbGranularity::Global);
    let mut descs = vec![cc.words()];
    if mode == Mode::Scalable {
        let mut pc = PasidCacheInv::new();
        pc.set_g(PasidCacheGranularity::Global);
        descs.push(pc.words());
    }
    descs.push(iotlb.words());
    descs
}

/// Context-cache invalidation of one device (function mask 0).
pub(super) fn context_device(did: u16, sid: u16) -> [u64; 4] {
    let mut d = ContextCacheInv::new();
    d.set_g(CcGranularity::Device);
    d.set_did(did);
    d.set_sid(sid);
    d.words()
}

/// IOTLB invalidation of a domain, page-selective when `range` is given and the unit can.
pub(super) fn iotlb(
    did: u16,
    range: Option<PageMask>,
    ih: bool,
    psi_limit: Option<u8>,
) -> [u64; 4] {
    let mut d = IotlbInv::new();
    d.set_did(did);
    match range.filter(|r| psi_limit.is_some_and(|mamv| r.am <= mamv)) {
        Some(r) => {
            d.set_g(IotlbGranularity::Page);
            d.set_addr(r.addr);
            d.set_am(r.am);
            d.set_ih(ih);
        }
        // §6.5.2.3: without PSI, or a range wider than MAMV, the domain goes whole.
        None => d.set_g(IotlbGranularity::Domain),
    }
    d.words()
}

/// PASID-based IOTLB invalidation, page-selective when `range` is given and fits MAMV.
pub(super) fn piotlb(
    did: u16,
    pasid: u32,
    range: Option<PageMask>,
    ih: bool,
    mamv: u8,
) -> [u64; 4] {
    let mut d = PasidIotlbInv::new();
    d.set_did(did);
    d.set_pasid(pasid);
    match range.filter(|r| r.am <= mamv) {
        Some(r) => {
            d.set_g(PasidIotlbGranularity::Page);
            d.set_addr(r.addr);
            d.set_am(r.am);
            d.set_ih(ih);
        }
        None => d.set_g(PasidIotlbGranularity::Pasid),
    }
    d.words()
}

/// PASID-cache invalidation of one PASID of a domain, or of the domain.
pub(super) fn pasid_cache(did: u16, pasid: Option<u32>) -> [u64; 4] {
    let mut d = PasidCacheInv::new();
    d.set_did(did);
    match pasid {
        Some(p) => {
            d.set_g(PasidCacheGranularity::Pasid);
            d.set_pasid(p);
        }
        None => d.set_g(PasidCacheGranularity::Domain),
    }
    d.words()
}

/// Device-TLB invalidation of `sid` (PASID-based with a PASID), of `range` or everything.
pub(super) fn dev_tlb(sid: u16, pasid: Option<u32>, range: Option<PageMask>) -> [u64; 4] {
    let (addr, s) = range.map_or(ats_addr(0, 64), PageMask::ats);
    match pasid {
        Some(p) => {
            let mut d = PasidDevTlbInv::new();
            d.set_sid(sid);
            d.set_pfsid(sid);
            d.set_pasid(p);
            d.set_addr(addr);
            d.set_s(s);
            d.words()
        }
        None => {
            let mut d = DevTlbInv::new();
            d.set_sid(sid);
            d.set_pfsid(sid);
            d.set_addr(addr);
            d.set_s(s);
            d.words()
        }
    }
}

impl<A: Address> Queue<A> {
    /// Allocates the queue (`2^queue_pages_lg2` pages) and a page for the status words.
    pub(super) fn create<M: PhysMemory<Addr = A>>(
        mem: &M,
        frames: &mut FrameAllocator<A>,
        config: &DriverConfig,
        mode: Mode,
    ) -> Result<Self, DriverError> {
        let lg2 = config.queue_pages_lg2.min(7);
        let base = frames.alloc(mem, 12 + lg2)?;
        let status = match frames.alloc(mem, 12) {
            Ok(s) => s,
            Err(e) => {
                let _ = frames.free(base, 12 + lg2);
                return Err(e.into());
            }
        };
        // §6.5.2: scalable mode needs 256-bit descriptors.
        let width = if mode == Mode::Scalable { DescWidth::W256 } else { DescWidth::W128 };
        Ok(Self { base, bytes: 4096 << lg2, width, tail: 0, status, seq: 0 })
    }

    pub(super) fn base(&self) -> A {
        self.base
    }

    /// §6.5.2: IQT = 0, IQA, then GCMD.QIE and wait for GSTS.QIES.
    pub(super) fn enable<R: Mmio>(&mut self, regs: &R, limit: u32) -> Result<(), DriverError> {
        self.tail = 0;
        regs.write(regs::IQT.0, 8, 0);
        let qs = u64::from((self.bytes >> 12).trailing_zeros());
        let mut v = iqa::QS.set(iqa::IQA.in_place(self.base.raw()), qs);
        v = iqa::DW.with(v, self.width == DescWidth::W256);
        regs.write(regs::IQA.0, 8, v);
        super::command(regs, gcmd::QIE, true, gsts::QIES, "GSTS.QIES after QIE", limit)
    }

    /// Writes `descs` and a wait descriptor, moves IQT and polls the wait's status word. Batches
    /// larger than the queue go in several rounds, each with its own wait.
    pub(super) fn submit<R: Mmio, M: PhysMemory<Addr = A>>(
        &mut self,
        regs: &R,
        mem: &M,
        descs: &[[u64; 4]],
        stats: &mut DriverStats,
        limit: u32,
    ) -> Result<(), DriverError> {
        let slots = self.bytes / self.width.bytes();
        // One slot stays empty (head == tail means empty), one holds the wait.
        let per_round = usize::try_from(slots.saturating_sub(2)).unwrap_or(1).max(1);
        if descs.is_empty() {
            return self.round(regs, mem, &[], stats, limit);
        }
        for chunk in descs.chunks(per_round) {
            self.round(regs, mem, chunk, stats, limit)?;
        }
        Ok(())
    }

    /// One batch and its wait, resubmitted while a device-TLB invalidation times out (ITE),
    /// at most [`DEVTLB_TRIES`](super::DEVTLB_TRIES) times.
    fn round<R: Mmio, M: PhysMemory<Addr = A>>(
        &mut self,
        regs: &R,
        mem: &M,
        descs: &[[u64; 4]],
        stats: &mut DriverStats,
        limit: u32,
    ) -> Result<(), DriverError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.post_and_wait(regs, mem, descs, stats, limit)? {
                None => return Ok(()),
                Some(sid) if tries >= super::DEVTLB_TRIES => {
                    return Err(DriverError::DeviceTlbTimeout { sid, tries })
                }
                Some(_) => {}
            }
        }
    }

    /// Writes `descs` and a wait, moves IQT and polls the wait's status word. `Some(sid)`:
    /// the unit reported a device-TLB invalidation time-out (ITE, IQER.ITESID) and aborted
    /// the wait; ITE is cleared, so the unit fetches again.
    fn post_and_wait<R: Mmio, M: PhysMemory<Addr = A>>(
        &mut self,
        regs: &R,
        mem: &M,
        descs: &[[u64; 4]],
        stats: &mut DriverStats,
        limit: u32,
    ) -> Result<Option<u16>, DriverError> {
        let width = self.width.bytes();
        let needed = (descs.len() as u64 + 1) * width;
        // Wait for room: the unit must have fetched up to where we will write.
        let bytes = self.bytes;
        let tail = self.tail;
        poll(
            || {
                let head = iqh::QH.in_place(regs.read(regs::IQH.0, 8)) % bytes;
                let used = (tail + bytes - head) % bytes;
                bytes - width - used >= needed
            },
            "room in the invalidation queue",
            limit,
        )?;
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut wait = InvWait::new();
        wait.set_sw(true);
        wait.set_fn(true);
        wait.set_status_data(self.seq);
        wait.set_status_addr(self.status.raw());
        let words = usize::try_from(width / 8).unwrap_or(2);
        for d in descs.iter().chain(std::iter::once(&wait.words())) {
            let at = offset(self.base, self.tail)?;
            for (i, w) in d.iter().take(words).enumerate() {
                mem.write_u64(offset(at, 8 * i as u64)?, *w)?;
            }
            self.tail = (self.tail + width) % self.bytes;
        }
        stats.descriptors += descs.len() as u64 + 1;
        stats.waits += 1;
        regs.write(regs::IQT.0, 8, iqt::QT.in_place(self.tail));
        let mut error = None;
        let mut timed_out = None;
        let mut ice = 0;
        let seq = self.seq;
        let status = self.status;
        let done = poll(
            || {
                let f = regs.read(regs::FSTS.0, 4);
                if fsts::IQE.is_set(f) && error.is_none() {
                    error = Some(self.skip_bad_descriptor(regs, mem));
                }
                // §6.5.2.10: an unexpected completion changes nothing the driver waits for.
                if fsts::ICE.is_set(f) {
                    regs.write(regs::FSTS.0, 4, fsts::ICE.mask());
                    ice += 1;
                }
                // §6.5.2.10: ITE aborted the wait (its status will never be written) and
                // stopped the queue; clearing ITE lets the unit fetch again, and the batch
                // is resubmitted.
                if fsts::ITE.is_set(f) {
                    let sid = iqer::ITESID.get(regs.read(regs::IQER.0, 8));
                    regs.write(regs::FSTS.0, 4, fsts::ITE.mask());
                    timed_out = Some(u16::try_from(sid).unwrap_or(u16::MAX));
                    return true;
                }
                mem.read_u64(status).is_ok_and(|w| w & u64::from(u32::MAX) == u64::from(seq))
            },
            "the invalidation wait descriptor's status write",
            limit,
        );
        stats.completion_errors += ice;
        if timed_out.is_some() {
            stats.devtlb_timeouts += 1;
        }
        match (error, timed_out) {
            (Some(e), _) => Err(e),
            (None, Some(sid)) => done.map(|()| Some(sid)),
            (None, None) => done.map(|()| None),
        }
    }

    /// §6.5.2.10: the unit stopped at a descriptor it cannot process (IQH names it). Replace
    /// it with a wait that does nothing and clear IQE, so the unit goes on with the rest of
    /// the batch (the status write among it); report what it said.
    fn skip_bad_descriptor<R: Mmio, M: PhysMemory<Addr = A>>(
        &self,
        regs: &R,
        mem: &M,
    ) -> DriverError {
        let head = iqh::QH.in_place(regs.read(regs::IQH.0, 8)) % self.bytes;
        let iqei = iqer::IQEI.get(regs.read(regs::IQER.0, 8));
        let nop = InvWait::new().words();
        if let Ok(at) = offset(self.base, head) {
            let words = usize::try_from(self.width.bytes() / 8).unwrap_or(2);
            for (i, w) in nop.iter().take(words).enumerate() {
                if let Ok(a) = offset(at, 8 * i as u64) {
                    let _ = mem.write_u64(a, *w);
                }
            }
        }
        regs.write(regs::FSTS.0, 4, fsts::IQE.mask());
        DriverError::InvalidationQueue { iqei, head }
    }
}

impl<R: Mmio, M: PhysMemory> VtdDriver<R, M> {
    /// Submits the invalidations a guest or the core asks for, as one batch ending with one
    /// wait. Refused whole, before anything is queued, if one of them needs what the unit or
    /// the mode lacks (PASID-granular ones need scalable mode, device-TLB ones ECAP.DT) or has
    /// an empty or wrapping range.
    pub fn invalidate(&mut self, reqs: &[InvalidateRequest]) -> Result<(), DriverError> {
        let mut descs = Vec::with_capacity(reqs.len());
        for r in reqs {
            descs.push(self.descriptor(r)?);
        }
        self.submit(&descs)
    }

    fn descriptor(&self, r: &InvalidateRequest) -> Result<[u64; 4], DriverError> {
        let mask = |range: Option<(u64, u64)>| -> Result<Option<PageMask>, DriverError> {
            range
                .map(|(iova, size)| {
                    PageMask::covering(iova, size).ok_or(DriverError::Range { iova, size })
                })
                .transpose()
        };
        let scalable = |what| {
            if self.mode == Mode::Scalable {
                Ok(())
            } else {
                Err(DriverError::NeedsScalableMode(what))
            }
        };
        let pasid_ok = |p: u32| {
            let bits = self.caps.pasid_bits;
            if u64::from(p) >> bits == 0 {
                Ok(())
            } else {
                Err(DriverError::PasidOutOfRange { pasid: p, bits })
            }
        };
        Ok(match *r {
            InvalidateRequest::Iotlb { did, range, ih } => {
                iotlb(did, mask(range)?, ih, self.psi_limit())
            }
            InvalidateRequest::PasidIotlb { did, pasid, range, ih } => {
                scalable("PASID-based IOTLB invalidation")?;
                pasid_ok(pasid)?;
                piotlb(did, pasid, mask(range)?, ih, self.caps.mamv)
            }
            InvalidateRequest::PasidCache { did, pasid } => {
                scalable("PASID-cache invalidation")?;
                if let Some(p) = pasid {
                    pasid_ok(p)?;
                }
                pasid_cache(did, pasid)
            }
            InvalidateRequest::DevTlb { sid, pasid, range } => {
                if !self.caps.device_tlb {
                    return Err(DriverError::Unsupported(Feature::DeviceTlb));
                }
                if let Some(p) = pasid {
                    scalable("PASID-based device-TLB invalidation")?;
                    pasid_ok(p)?;
                }
                dev_tlb(sid, pasid, mask(range)?)
            }
        })
    }

    /// CAP.MAMV if the unit has page-selective invalidation (CAP.PSI).
    pub(super) fn psi_limit(&self) -> Option<u8> {
        self.caps.page_selective.then_some(self.caps.mamv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::inv::ats_range;

    #[test]
    fn page_masks_cover_the_range() {
        assert_eq!(PageMask::covering(0x5000, 0x1000), Some(PageMask { addr: 0x5000, am: 0 }));
        assert_eq!(PageMask::covering(0x5000, 0x2000), Some(PageMask { addr: 0x4000, am: 2 }));
        assert_eq!(
            PageMask::covering(0x20_0000, 0x20_0000),
            Some(PageMask { addr: 0x20_0000, am: 9 })
        );
        assert_eq!(PageMask::covering(0, 0), None);
        assert_eq!(PageMask::covering(u64::MAX, 2), None);
    }

    #[test]
    fn ats_addresses_round_trip_through_the_spec_decoder() {
        for lg2 in 12..=63u8 {
            let base = 0x1234_5678_9000_0000u64 & !low_mask(lg2);
            let (addr, s) = ats_addr(base, lg2);
            assert_eq!(ats_range(addr, s), (base, lg2), "2^{lg2}");
        }
        let (addr, s) = ats_addr(0, 64);
        assert_eq!(ats_range(addr, s), (0, 64));
    }
}

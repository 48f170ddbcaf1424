//! Faults as software services them: the fault recording registers (§7.2, §11.4.9), the page
//! request queue (§7.5) and page group responses (§7.7).

use sviommu_memory::PhysMemory;

use super::{offset, DriverError, Feature, Mmio, VtdDriver};
use crate::spec::prq::{PageGroupResponse, PageRequest, ResponseCode, PAGE_REQUEST_BYTES};
use crate::spec::regs::{self, fsts, pqh, pqt, prs};
use crate::spec::FaultRecord;

/// What a fault drain found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultDrain {
    /// The records, oldest first (decode them with [`FaultRecord`]'s getters).
    pub records: Vec<FaultRecord>,
    /// FSTS.PFO was set: the unit dropped faults because every record was full.
    pub overflow: bool,
}

/// What a page request drain found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequestDrain {
    /// The requests, oldest first.
    pub requests: Vec<PageRequest>,
    /// PRS.PRO was set: the unit dropped page requests because the queue was full.
    pub overflow: bool,
}

impl<R: Mmio, M: PhysMemory> VtdDriver<R, M> {
    /// §7.2: reads every pending fault record from FSTS.FRI on, clearing each F (write 1 to
    /// clear), then clears FSTS.PFO and reports it. Bounded by CAP.NFR + 1 records.
    pub fn drain_faults(&mut self) -> FaultDrain {
        let status = self.read32(regs::FSTS);
        let mut drain = FaultDrain::default();
        let count = self.caps.fault_records.max(1);
        if fsts::PPF.is_set(status) {
            let first = fsts::FRI.get(status) % count;
            for i in 0..count {
                let (lo, hi) = regs::frcd(self.caps.cap, (first + i) % count);
                let high = self.read64(hi);
                let record = FaultRecord::from_words([self.read64(lo), high]);
                if !record.f() {
                    break;
                }
                // F is the top bit of the high half; every other bit there is read-only.
                let mut clear = FaultRecord::default();
                clear.set_f(true);
                let [_, f] = clear.words();
                self.write64(hi, f);
                drain.records.push(record);
            }
        }
        if fsts::PFO.is_set(status) {
            self.write32(regs::FSTS, fsts::PFO.mask());
            drain.overflow = true;
            self.stats.fault_overflows += 1;
        }
        self.stats.faults += drain.records.len() as u64;
        drain
    }

    /// §7.5: reads the page requests between PQH and PQT, moves PQH past them and clears
    /// PRS.PPR (and PRO, reported). Refused without a page request queue (ECAP.PRS in
    /// scalable mode), or if PQT names no entry of the queue.
    pub fn drain_page_requests(&mut self) -> Result<PageRequestDrain, DriverError> {
        let (base, bytes) = self.prq.ok_or(DriverError::Unsupported(Feature::PageRequests))?;
        let tail = pqt::PQT.in_place(self.read64(regs::PQT));
        if tail >= bytes {
            return Err(DriverError::PageRequestTail(tail));
        }
        let mut head = pqh::PQH.in_place(self.read64(regs::PQH)) % bytes;
        let mut drain = PageRequestDrain::default();
        for _ in 0..bytes / PAGE_REQUEST_BYTES {
            if head == tail {
                break;
            }
            let at = offset(base, head)?;
            let mut words = [0u64; PageRequest::WORDS];
            for (i, w) in words.iter_mut().enumerate() {
                *w = self.mem.read_u64(offset(at, 8 * i as u64)?)?;
            }
            drain.requests.push(PageRequest::from_words(words));
            head = (head + PAGE_REQUEST_BYTES) % bytes;
        }
        self.write64(regs::PQH, pqh::PQH.in_place(head));
        let status = self.read32(regs::PRS);
        let overflow = prs::PRO.is_set(status);
        self.write32(regs::PRS, prs::PPR.mask() | if overflow { prs::PRO.mask() } else { 0 });
        if overflow {
            drain.overflow = true;
            self.stats.page_request_overflows += 1;
        }
        self.stats.page_requests += drain.requests.len() as u64;
        Ok(drain)
    }

    /// §7.7.1: answers page request group `prgi` of `rid` (with `pasid` if its requests had
    /// one) with `code`, through the invalidation queue, and waits.
    pub fn page_group_response(
        &mut self,
        rid: u16,
        pasid: Option<u32>,
        prgi: u16,
        code: ResponseCode,
    ) -> Result<(), DriverError> {
        if self.prq.is_none() {
            return Err(DriverError::Unsupported(Feature::PageRequests));
        }
        let mut r = PageGroupResponse::new();
        r.set_rid(rid);
        if let Some(p) = pasid {
            r.set_pp(true);
            r.set_pasid(p);
        }
        r.set_prgi(prgi);
        r.set_lpig(true);
        r.set_rc(code);
        self.submit(&[r.words()])?;
        self.stats.page_responses += 1;
        Ok(())
    }
}

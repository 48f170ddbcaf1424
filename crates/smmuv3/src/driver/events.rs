//! What comes back from the SMMU (events §7.3, page requests §8) and what a guest asks the
//! host to invalidate (§4.3, §4.4, §4.5), turned into commands.

use sviommu_memory::PhysMemory;

use super::domain::{atc_inv, DomainKind};
use super::{DomainId, DriverError, Mmio, SmmuDriver};
use crate::spec::{Command, EventId, EventRecord, Granule, Opcode, PageRequest, PriResp, Reserved};

/// One drained event record, with the fields every consumer looks at decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainedEvent {
    /// The event number (a Reserved one is kept as read).
    pub id: Result<EventId, Reserved>,
    /// StreamID.
    pub sid: u32,
    /// SubstreamID, when SSV == 1.
    pub ssid: Option<u32>,
    /// InputAddr.
    pub input_addr: u64,
    /// The whole record, for the fields `id`'s layout has.
    pub record: EventRecord,
}

/// A guest's (or the core's) invalidation request, turned into one command each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// CMD_TLBI_NH_VA: stage-1 entries of `asid` for `[iova, iova + size)` (one granule's
    /// pages), leaf entries only if `leaf`. `parent` is the nesting parent whose VMID tags a
    /// guest's stage 1; `None` for the host's own stage-1 contexts (VMID 0).
    NhVa {
        /// The nesting parent, if any.
        parent: Option<DomainId>,
        /// The ASID.
        asid: u16,
        /// Start of the range.
        iova: u64,
        /// Bytes.
        size: u64,
        /// The granule the range is in.
        granule: Granule,
        /// Only last-level entries.
        leaf: bool,
    },
    /// CMD_TLBI_NH_ASID: every non-global stage-1 entry of `asid`.
    NhAsid {
        /// The nesting parent, if any.
        parent: Option<DomainId>,
        /// The ASID.
        asid: u16,
    },
    /// CMD_CFGI_CD: the CD of (`sid`, `ssid`) (and its L1CD unless `leaf`).
    CfgiCd {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: u32,
        /// Only the CD.
        leaf: bool,
    },
    /// CMD_CFGI_CD_ALL: every CD of `sid`.
    CfgiCdAll {
        /// StreamID.
        sid: u32,
    },
    /// CMD_ATC_INV: the device's ATC for `sid` (and `ssid`), `range` or everything.
    AtcInv {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: Option<u32>,
        /// `(iova, size)`, or everything.
        range: Option<(u64, u64)>,
    },
}

/// Most pages one CMD_TLBI_NH_VA request is turned into without range invalidation.
const MAX_VA_PAGES: u64 = 256;

impl<R: Mmio, M: PhysMemory> SmmuDriver<R, M> {
    /// Reads every new event record, advances SMMU_EVENTQ_CONS and acknowledges an overflow
    /// (counted in [`super::DriverStats::event_overflows`]).
    pub fn drain_events(&mut self) -> Result<Vec<DrainedEvent>, DriverError> {
        let (words, overflowed) = self.eventq.drain::<R, M, 4>(&self.regs, &self.mem)?;
        self.stats.event_overflows += u64::from(overflowed);
        self.stats.events += words.len() as u64;
        Ok(words
            .into_iter()
            .map(|w| {
                let record = EventRecord::from_words(w);
                DrainedEvent {
                    id: record.id(),
                    sid: record.sid(),
                    ssid: record.ssv().then(|| record.ssid()),
                    input_addr: record.input_addr(),
                    record,
                }
            })
            .collect())
    }

    /// Reads every new page request, advances SMMU_PRIQ_CONS and acknowledges an overflow
    /// (§8.1: the SMMU takes no new requests until then). Empty without PRI.
    pub fn drain_page_requests(&mut self) -> Result<Vec<PageRequest>, DriverError> {
        let Some(q) = self.priq.as_mut() else {
            return Ok(Vec::new());
        };
        let (words, overflowed) = q.drain::<R, M, 2>(&self.regs, &self.mem)?;
        self.stats.priq_overflows += u64::from(overflowed);
        self.stats.page_requests += words.len() as u64;
        Ok(words.into_iter().map(PageRequest::from_words).collect())
    }

    /// §4.5.2: answers Page Request Group `prg_index` of (`sid`, `ssid`) with CMD_PRI_RESP and
    /// CMD_SYNC.
    pub fn pri_response(
        &mut self,
        sid: u32,
        ssid: Option<u32>,
        prg_index: u16,
        resp: PriResp,
    ) -> Result<(), DriverError> {
        if !self.caps.pri {
            return Err(DriverError::Unsupported("PRI"));
        }
        self.check_sid(sid)?;
        if prg_index >> 9 != 0 {
            return Err(DriverError::OutOfRange("PRGIndex"));
        }
        let mut c = Command::new(Opcode::PriResp);
        c.set_sid(sid);
        if let Some(s) = ssid {
            if u64::from(s) >> self.caps.ssidsize != 0 {
                return Err(DriverError::SsidOutOfRange { ssid: s, ssid_bits: self.caps.ssidsize });
            }
            c.set_ssv(true);
            c.set_ssid(s);
        }
        c.set_prgindex(prg_index);
        c.set_resp(resp);
        self.submit(&[c])
    }

    /// Turns `invs` into commands and one CMD_SYNC. Everything is checked before anything is
    /// issued, so a refused list issues nothing.
    pub fn invalidate(&mut self, invs: &[Invalidation]) -> Result<(), DriverError> {
        let mut cmds = Vec::new();
        for inv in invs {
            cmds.extend(self.invalidation_cmds(inv)?);
        }
        self.submit(&cmds)
    }

    fn parent_vmid(&self, parent: Option<DomainId>) -> Result<u16, DriverError> {
        match parent {
            None => Ok(0),
            Some(d) => match self.domain(d)?.kind {
                DomainKind::S2 { vmid, .. } => Ok(vmid),
                DomainKind::S1 { .. } => {
                    Err(DriverError::WrongStage { domain: d, expected: "stage-2" })
                }
            },
        }
    }

    fn check_asid(&self, asid: u16) -> Result<(), DriverError> {
        if u32::from(asid) >> self.caps.asid_bits() != 0 {
            return Err(DriverError::OutOfRange("ASID"));
        }
        Ok(())
    }

    fn check_cfgi_ssid(&self, ssid: u32) -> Result<(), DriverError> {
        if u64::from(ssid) >> self.caps.ssidsize != 0 {
            return Err(DriverError::SsidOutOfRange { ssid, ssid_bits: self.caps.ssidsize });
        }
        Ok(())
    }

    fn invalidation_cmds(&self, inv: &Invalidation) -> Result<Vec<Command>, DriverError> {
        Ok(match *inv {
            Invalidation::NhVa { parent, asid, iova, size, granule, leaf } => {
                let vmid = self.parent_vmid(parent)?;
                self.check_asid(asid)?;
                let g = granule.lg2();
                let first = iova >> g;
                let end = iova
                    .checked_add(size)
                    .and_then(|e| e.checked_add((1 << g) - 1))
                    .ok_or(DriverError::OutOfRange("invalidation range"))?
                    >> g;
                if end.saturating_sub(first) > MAX_VA_PAGES {
                    // Too many pages to name: the whole ASID instead (§3.21 allows more).
                    let mut c = Command::new(Opcode::TlbiNhAsid);
                    c.set_vmid(vmid);
                    c.set_asid(asid);
                    vec![c]
                } else {
                    (first..end)
                        .map(|page| {
                            let mut c = Command::new(Opcode::TlbiNhVa);
                            c.set_vmid(vmid);
                            c.set_asid(asid);
                            c.set_address(page << g);
                            c.set_leaf(leaf);
                            c
                        })
                        .collect()
                }
            }
            Invalidation::NhAsid { parent, asid } => {
                let vmid = self.parent_vmid(parent)?;
                self.check_asid(asid)?;
                let mut c = Command::new(Opcode::TlbiNhAsid);
                c.set_vmid(vmid);
                c.set_asid(asid);
                vec![c]
            }
            Invalidation::CfgiCd { sid, ssid, leaf } => {
                self.check_sid(sid)?;
                self.check_cfgi_ssid(ssid)?;
                let mut c = Command::new(Opcode::CfgiCd);
                c.set_sid(sid);
                c.set_ssid(ssid);
                c.set_leaf(leaf);
                vec![c]
            }
            Invalidation::CfgiCdAll { sid } => {
                self.check_sid(sid)?;
                let mut c = Command::new(Opcode::CfgiCdAll);
                c.set_sid(sid);
                vec![c]
            }
            Invalidation::AtcInv { sid, ssid, range } => {
                if !self.caps.ats {
                    return Err(DriverError::Unsupported("ATS"));
                }
                self.check_sid(sid)?;
                if let Some(s) = ssid {
                    self.check_cfgi_ssid(s)?;
                }
                vec![atc_inv(sid, ssid, range)]
            }
        })
    }
}

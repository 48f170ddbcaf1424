//! A device with ATS and PRI, as an SVA device works (PCIe Address Translation Services and
//! Page Request Interface): it asks the unit to translate an address (a translation request);
//! an answer that grants no access, or no write for a write, makes it send a page request
//! (alone in its page request group, so the last of it) and wait for the page group response;
//! after Success it asks again.
//!
//! The host's side is the IOMMU API's fault path: the core's `process_faults` collects the
//! page request from the unit's page request queue (VT-d) or PRI queue (SMMUv3) and hands the
//! complete group to the host, which faults the page into the process bound at the PASID
//! ([`machine::fault_in`], as Linux's `iommu_sva_handle_iopf` calls `handle_mm_fault`) and
//! answers with `page_response`; the unit sends the response to the device.

use serde::Serialize;
use sviommu_core::driver::PageResponseCode;
use sviommu_core::fault::FaultEvent;
use sviommu_core::topology::DeviceId;
use sviommu_core::Pasid;
use sviommu_pgtable::Access;
use sviommu_smmuv3::hw::{AtsResult, Transaction};
use sviommu_smmuv3::spec::priq::PageRequest as PriRequest;
use sviommu_vtd::hw::{
    PageRequestMsg, PageRequestOutcome, TranslationCompletion, TranslationRequest,
};

use crate::machine::{self, DataPool, FaultIn, Hw, Machine};
use crate::scenario::{AccessKind, Ats, ScenarioError, Source};

/// The unit's answer to a translation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Completion {
    /// A successful completion with a translation.
    Translated {
        /// The translated address of the range's start.
        output: u64,
        /// The range is 2^`size_lg2` bytes.
        size_lg2: u8,
        /// R.
        read: bool,
        /// W.
        write: bool,
    },
    /// A successful completion with R = W = 0: the page is not there (the device's cue for a
    /// page request).
    NoAccess,
    /// Unsupported Request: ATS is not enabled for the device, or the structures block it.
    UnsupportedRequest,
    /// Completer Abort: the structures are in error.
    CompleterAbort,
}

impl Completion {
    /// Whether the device needs a page request before it can make this access.
    const fn wants_page(&self, write: bool) -> bool {
        match *self {
            Self::Translated { read, write: w, .. } => !read || (write && !w),
            Self::NoAccess => true,
            Self::UnsupportedRequest | Self::CompleterAbort => false,
        }
    }
}

/// A PCIe page group response code, as the device received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ResponseRow {
    /// 0h Success, 1h Invalid Request, Fh Response Failure.
    pub code: u8,
    /// Its name.
    pub name: &'static str,
}

impl ResponseRow {
    fn new(code: u8) -> Self {
        let name = match code {
            0x0 => "Success",
            0x1 => "Invalid Request",
            0xf => "Response Failure",
            _ => "reserved",
        };
        Self { code, name }
    }
}

/// A page request the device sent, and what came of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageRequestRow {
    /// Its page request group index.
    pub group: u16,
    /// What the unit did with it: VT-d `queued` (for software) or why it answered itself;
    /// SMMUv3 `taken` (into the PRI queue, or answered by the SMMU, as its statistics count).
    pub unit: String,
    /// What the host's fault handler did, if the request reached it.
    pub host: Option<FaultIn>,
    /// The response the device received, if any.
    pub response: Option<ResponseRow>,
}

/// One address an `ats` step's device asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AtsRow {
    /// Index into the report's DMA rows of the first DMA after it.
    pub before_dma: usize,
    /// Host actions before it.
    pub after_actions: usize,
    /// The device.
    pub device: String,
    /// Its requester ID / StreamID.
    pub request_id: u32,
    /// Its PASID.
    pub pasid: Option<u32>,
    /// The address.
    pub addr: u64,
    /// Read, or write.
    pub access: AccessKind,
    /// The first translation request's answer.
    pub first: Completion,
    /// The page request it made of that answer, if it needed one.
    pub page_request: Option<PageRequestRow>,
    /// The retried translation request's answer, after a Success response.
    pub retry: Option<Completion>,
}

/// Runs an `ats` step: the device asks for each address in turn. Returns the rows and the
/// unrecoverable faults the host's fault path collected meanwhile.
pub fn run(
    m: &mut Machine,
    pool: &mut DataPool,
    source: &Source,
    step: &Ats,
    (before_dma, after_actions): (usize, usize),
    next_group: &mut u16,
) -> Result<(Vec<AtsRow>, u64), ScenarioError> {
    let dev = machine::device_ref(m, source, &step.device, "step.ats.device")?.clone();
    let pasid = step.pasid.as_ref().map(|p| *p.get_ref());
    let mut rows = Vec::new();
    let mut unrecoverable = 0;
    for &addr in &step.addrs {
        let asked = Asked { device: &dev, pasid, addr, access: step.access };
        let (mut row, faults) = request(m, pool, asked, next_group)
            .map_err(|e| source.error(step.device.span(), "step.ats", e))?;
        row.before_dma = before_dma;
        row.after_actions = after_actions;
        unrecoverable += faults;
        rows.push(row);
    }
    Ok((rows, unrecoverable))
}

/// What a device asks of the unit in one ATS exchange.
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    /// The device.
    pub device: &'a DeviceId,
    /// Its PASID.
    pub pasid: Option<u32>,
    /// The address.
    pub addr: u64,
    /// Read, or write.
    pub access: AccessKind,
}

/// One address of an `ats` step (a trace's ATS record): the translation request, and when
/// its answer grants too little, the page request, the host's answer and the retry. Returns
/// the row (placed at DMA 0, after no action: the caller places it) and the unrecoverable
/// faults the host's fault path collected meanwhile; an error says what the host could not do.
pub fn request(
    m: &mut Machine,
    pool: &mut DataPool,
    asked: Asked<'_>,
    next_group: &mut u16,
) -> Result<(AtsRow, u64), String> {
    let Asked { device: dev, pasid, addr, access } = asked;
    let rid = m
        .iommu()
        .request_ids(dev)
        .ok()
        .and_then(|ids| ids.first().copied())
        .ok_or("the device has no request ID")?;
    let device = machine::names(m).get(dev).cloned().unwrap_or_else(|| dev.to_string());
    let write = access == AccessKind::Write;
    let mut unrecoverable = 0;
    let first = translation_request(&m.hw, rid, pasid, addr, write);
    let mut row = AtsRow {
        before_dma: 0,
        after_actions: 0,
        device,
        request_id: rid,
        pasid,
        addr,
        access,
        first,
        page_request: None,
        retry: None,
    };
    if first.wants_page(write) {
        // PCIe: a group index is 9 bits; the device uses each in turn.
        let group = *next_group & 0x1ff;
        *next_group = next_group.wrapping_add(1);
        let mut pr = PageRequestRow {
            group,
            unit: page_request(&m.hw, rid, pasid, addr, write, group),
            host: None,
            response: None,
        };
        // The host's page request interrupt: the IOMMU API collects, the host answers.
        let events = m.iommu().process_faults();
        for e in events {
            match e {
                FaultEvent::PageRequestGroup { device, pasid: p, group: g, pages } => {
                    let answer = host_answer(m, pool, p, &pages);
                    let code = match answer {
                        Some(FaultIn::Resident(_)) => PageResponseCode::Success,
                        _ => PageResponseCode::Invalid,
                    };
                    if device == *dev && g == group {
                        pr.host = answer;
                    }
                    m.iommu()
                        .page_response(&device, p, g, code)
                        .map_err(|e| format!("page_response: {e}"))?;
                }
                FaultEvent::Unrecoverable { .. } => unrecoverable += 1,
            }
        }
        pr.response =
            m.hw.deliver()
                .into_iter()
                .find(|r| r.request_id == rid && r.group == group)
                .map(|r| ResponseRow::new(r.code));
        if pr.response.is_some_and(|r| r.code == 0) {
            row.retry = Some(translation_request(&m.hw, rid, pasid, addr, write));
        }
        row.page_request = Some(pr);
    }
    unrecoverable += m.iommu().process_faults().len() as u64;
    m.hw.deliver();
    Ok((row, unrecoverable))
}

/// The host's answer to a page request group: every page resident, or the first refusal.
fn host_answer(
    m: &mut Machine,
    pool: &mut DataPool,
    pasid: Option<Pasid>,
    pages: &[sviommu_core::fault::PageRequest],
) -> Option<FaultIn> {
    let Some(pasid) = pasid else {
        return Some(FaultIn::Invalid("a page request without PASID has no process"));
    };
    let mut last = None;
    for p in pages {
        let got = machine::fault_in(m, pool, pasid, p.addr, p.write);
        if matches!(got, FaultIn::Invalid(_)) {
            return Some(got);
        }
        last = Some(got);
    }
    last
}

/// A translation request for `addr` (with No Write for a read).
fn translation_request(
    hw: &Hw,
    rid: u32,
    pasid: Option<u32>,
    addr: u64,
    write: bool,
) -> Completion {
    match hw {
        Hw::Vtd(u) => {
            let Ok(rid) = u16::try_from(rid) else { return Completion::UnsupportedRequest };
            let mut req = TranslationRequest::new(rid, addr);
            if let Some(p) = pasid {
                req = req.with_pasid(p);
            }
            if !write {
                req = req.read_only();
            }
            match u.translation_request(&req) {
                TranslationCompletion::Translated(t) => Completion::Translated {
                    output: t.output,
                    size_lg2: t.size_lg2,
                    read: t.read,
                    write: t.write,
                },
                TranslationCompletion::NoAccess => Completion::NoAccess,
                TranslationCompletion::UnsupportedRequest(_) => Completion::UnsupportedRequest,
                TranslationCompletion::CompleterAbort(_) => Completion::CompleterAbort,
            }
        }
        Hw::Smmu(u) => {
            let access = if write { Access::WRITE } else { Access::READ };
            let mut t = Transaction::new(rid, addr, access);
            if let Some(p) = pasid {
                t = t.with_ssid(p);
            }
            match u.translation_request(&t) {
                AtsResult::Translated(x) => Completion::Translated {
                    output: x.output,
                    size_lg2: x.size_lg2,
                    read: x.perms.allows(Access::READ),
                    write: x.perms.allows(Access::WRITE),
                },
                AtsResult::NoAccess => Completion::NoAccess,
                AtsResult::UnsupportedRequest => Completion::UnsupportedRequest,
                AtsResult::CompleterAbort => Completion::CompleterAbort,
            }
        }
    }
}

/// A page request for `addr`'s page, the last (and only) of group `group`. A unit whose port
/// has no room for the answer takes nothing: the platform delivers what it holds and the
/// device sends again, once.
fn page_request(
    hw: &Hw,
    rid: u32,
    pasid: Option<u32>,
    addr: u64,
    write: bool,
    group: u16,
) -> String {
    let page = addr & !0xfff;
    for _ in 0..2 {
        let taken = match hw {
            Hw::Vtd(u) => {
                let Ok(rid) = u16::try_from(rid) else { return "not a PCI requester ID".into() };
                let msg = PageRequestMsg {
                    rid,
                    pasid,
                    addr: page,
                    read: true,
                    write,
                    prgi: group,
                    lpig: true,
                    ..PageRequestMsg::default()
                };
                match u.page_request(&msg) {
                    PageRequestOutcome::Queued => Some("queued".to_owned()),
                    PageRequestOutcome::Busy => None,
                    PageRequestOutcome::Overflow => {
                        Some("the queue overflowed (the unit answered Success)".to_owned())
                    }
                    PageRequestOutcome::Blocked(f) => Some(format!(
                        "blocked: {:02X}h {} (the unit answered Invalid Request)",
                        f.reason.code(),
                        f.reason.name()
                    )),
                    PageRequestOutcome::Disabled => {
                        Some("translation is off (the unit answered Invalid Request)".to_owned())
                    }
                    other => Some(format!("{other:?}")),
                }
            }
            Hw::Smmu(u) => {
                let req = pri_request(rid, pasid, page, write, group);
                // Taken: into the PRI queue, or answered by the SMMU itself (§8.1, counted in
                // its statistics).
                u.page_request(&req).then(|| "taken".to_owned())
            }
        };
        if let Some(t) = taken {
            return t;
        }
        hw.deliver();
    }
    "busy: the unit's port had no room for an answer".to_owned()
}

/// A PCIe page request as the SMMUv3 PRI queue takes it (§8.1): a read (and `write`) of
/// `page`, the last of group `group`.
#[must_use]
pub fn pri_request(sid: u32, pasid: Option<u32>, page: u64, write: bool, group: u16) -> PriRequest {
    let mut req = PriRequest::default();
    req.set_sid(sid);
    if let Some(p) = pasid {
        req.set_ssv(true);
        req.set_ssid(p);
    }
    req.set_r(true);
    req.set_w(write);
    req.set_last(true);
    req.set_prgindex(group);
    req.set_page_address(page);
    req
}

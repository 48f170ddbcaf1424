//! §4.2 device-TLBs (PCIe ATS): translation requests and translated requests.
//!
//! A translation request (§4.2.3) runs the request path of an untranslated request, with two
//! differences: the context entry must allow a device-TLB (legacy TT = 01b, else 0Dh; scalable
//! DTE = 1, else 44h), and a fault is an answer the device acts on, not always a recorded fault.
//! `reasons::ats_answer` sorts the reasons: blocked or absent structures get Unsupported Request
//! and are recorded, structures in error get Completer Abort and are recorded, and a
//! translation fault gets a successful completion with R = W = 0, recorded nowhere: the
//! device's cue to send a page request (`prq`).
//!
//! The request asks for read and, unless it has NW (no write), write: it is walked for a write
//! first, which sets the D flag (§4.2.3.1: the device may write through the translation
//! without the unit seeing it); a page that refuses the write is walked again for a read and
//! returned with W = 0. Execute is never walked for: the completion reports what the
//! translation grants (Exe), after the PASID-table entry's ERE.
//!
//! A translated request (§4.2.4) is let through untranslated where the context entry allows a
//! device-TLB, and blocked with 0Dh / 44h otherwise, recorded with AT = translated.
//!
//! IMPDEF: with translation disabled (GSTS.TES clear) a translation request gets Unsupported
//! Request (ATS belongs to remapping), while a translated request passes as every request does.

use std::sync::atomic::Ordering;

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::{Access, Perms};

use super::prq::bump;
use super::reasons::{ats_answer, AtsAnswer};
use super::{DmaRequest, Fault, RequestKind, Translation, Vtd};
use crate::spec::regs::{ecap, gsts};
use crate::spec::{is_interrupt_address, FaultReason};

/// An ATS Translation Request from a device (PCIe §10.2.2): the device asks for the translation
/// of the page holding `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TranslationRequest {
    /// Requester ID.
    pub rid: u16,
    /// The PASID of the request's PASID prefix, if it has one.
    pub pasid: Option<u32>,
    /// The untranslated address.
    pub addr: u64,
    /// NW: the device asks for read access only (it will not write through the translation).
    pub no_write: bool,
    /// ER in the PASID prefix: the device wants to know about execute permission.
    pub exec: bool,
    /// PMR in the PASID prefix: the translation is for supervisor (privileged) accesses.
    pub privileged: bool,
}

impl TranslationRequest {
    /// A request without PASID for read and write access to `addr`'s page.
    #[must_use]
    pub const fn new(rid: u16, addr: u64) -> Self {
        Self { rid, pasid: None, addr, no_write: false, exec: false, privileged: false }
    }

    /// The same request with a PASID prefix.
    #[must_use]
    pub const fn with_pasid(self, pasid: u32) -> Self {
        Self { pasid: Some(pasid), ..self }
    }

    /// The same request with NW set (read access only).
    #[must_use]
    pub const fn read_only(self) -> Self {
        Self { no_write: true, ..self }
    }

    /// The same request for supervisor accesses (PMR; meaningful with a PASID).
    #[must_use]
    pub const fn privileged(self) -> Self {
        Self { privileged: true, ..self }
    }

    /// The same request asking about execute permission (ER; meaningful with a PASID).
    #[must_use]
    pub const fn exec(self) -> Self {
        Self { exec: true, ..self }
    }

    /// The request as the request path walks it: execute and privilege come from the PASID
    /// prefix, and a request without one has neither.
    fn walked(&self, write: bool) -> DmaRequest {
        let with_pasid = self.pasid.is_some();
        DmaRequest {
            rid: self.rid,
            pasid: self.pasid,
            addr: self.addr,
            access: Access { write, exec: false, privileged: with_pasid && self.privileged },
        }
    }
}

/// The translation a successful Translation Completion carries (PCIe §10.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AtsTranslation {
    /// The translated address of the first byte of the range.
    pub output: u64,
    /// The range is `2^size_lg2` bytes, aligned (the S bit and the address's low bits encode it
    /// on the wire).
    pub size_lg2: u8,
    /// R: reads through the translation are allowed.
    pub read: bool,
    /// W: writes are allowed.
    pub write: bool,
    /// Exe: execute is allowed (requests with a PASID and ER only).
    pub exec: bool,
    /// Priv: the permissions are for supervisor accesses.
    pub privileged: bool,
    /// U: the device must use untranslated requests for this range (the interrupt range).
    pub untranslated_only: bool,
}

/// The answer to a translation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TranslationCompletion {
    /// A successful completion with a translation that allows something.
    Translated(AtsTranslation),
    /// A successful completion with R = W = 0: the page is not there (or not for this device's
    /// privilege). Nothing is recorded; the device may send a page request.
    NoAccess,
    /// Unsupported Request: the structures block the request (with the fault recorded), or
    /// the unit has no device-TLB support or translation disabled (no fault: `None`).
    UnsupportedRequest(Option<Fault>),
    /// Completer Abort: the structures are in error (recorded).
    CompleterAbort(Fault),
}

impl TranslationCompletion {
    /// The fault the unit made of the request, if it made one.
    #[must_use]
    pub const fn fault(&self) -> Option<Fault> {
        match *self {
            Self::UnsupportedRequest(f) => f,
            Self::CompleterAbort(f) => Some(f),
            Self::Translated(_) | Self::NoAccess => None,
        }
    }
}

/// The completion's permission bits for translation `t`, at `req`'s privilege level.
///
/// DEVIATION: a request without PASID is answered with the user rights even where the context
/// entry's RID_PRIV makes its untranslated requests supervisor requests.
fn completion(t: &Translation, req: &TranslationRequest) -> TranslationCompletion {
    let privileged = req.pasid.is_some() && req.privileged;
    let (r, w, x) = if privileged {
        (Perms::PRIV_R, Perms::PRIV_W, Perms::PRIV_X)
    } else {
        (Perms::USER_R, Perms::USER_W, Perms::USER_X)
    };
    let (read, write) = (t.perms.contains(r), t.perms.contains(w) && !req.no_write);
    if !read && !write {
        return TranslationCompletion::NoAccess;
    }
    TranslationCompletion::Translated(AtsTranslation {
        output: t.output & !low_mask(t.page_lg2),
        size_lg2: t.page_lg2,
        read,
        write,
        exec: req.pasid.is_some() && req.exec && t.perms.contains(x),
        privileged,
        untranslated_only: false,
    })
}

impl<M: PhysMemory<Addr = Hpa>> Vtd<M> {
    /// A device's ATS Translation Request, answered as §4.2.3 says (see the module's doc).
    pub fn translation_request(&self, req: &TranslationRequest) -> TranslationCompletion {
        let c = &self.ats_counters;
        bump(&c.translation_requests);
        // §4.2.1: without device-TLB support every translation request is an Unsupported
        // Request; IMPDEF: so is one while translation is disabled.
        let tes = gsts::TES.is_set(u64::from(self.gsts.load(Ordering::Acquire)));
        if !self.ecap_has(ecap::DT) || !tes {
            bump(&c.translation_unsupported);
            return TranslationCompletion::UnsupportedRequest(None);
        }
        // §4.2.3: a request without PASID for the interrupt range gets write access the device
        // must use untranslated (its writes are interrupt requests).
        if req.pasid.is_none() && is_interrupt_address(req.addr) {
            return TranslationCompletion::Translated(AtsTranslation {
                output: req.addr & !low_mask(12),
                size_lg2: 12,
                read: false,
                write: true,
                exec: false,
                privileged: false,
                untranslated_only: true,
            });
        }
        let kind = RequestKind::TranslationRequest;
        let first = self.walked_for(req, !req.no_write);
        // A page that refuses the write may still be readable: ask again for a read.
        let result = match first {
            Err(b)
                if !req.no_write
                    && matches!(
                        b.reason,
                        FaultReason::WriteDenied | FaultReason::SmWriteDenied
                    ) =>
            {
                self.walked_for(req, false)
            }
            other => other,
        };
        match result {
            Ok(t) => {
                let answer = completion(&t, req);
                if answer == TranslationCompletion::NoAccess {
                    bump(&c.translation_no_access);
                }
                answer
            }
            Err(b) => {
                let walked = req.walked(!req.no_write);
                match ats_answer(b.reason) {
                    AtsAnswer::NoAccess => {
                        bump(&c.translation_no_access);
                        TranslationCompletion::NoAccess
                    }
                    AtsAnswer::Unsupported => {
                        bump(&c.translation_unsupported);
                        let f = self.fault(&walked, kind, b.reason, b.fpd);
                        TranslationCompletion::UnsupportedRequest(Some(f))
                    }
                    AtsAnswer::Abort => {
                        bump(&c.translation_aborted);
                        TranslationCompletion::CompleterAbort(
                            self.fault(&walked, kind, b.reason, b.fpd),
                        )
                    }
                }
            }
        }
    }

    /// Runs `req` for a read or a write, as a translation request.
    fn walked_for(
        &self,
        req: &TranslationRequest,
        write: bool,
    ) -> Result<Translation, super::translate::Blocked> {
        self.run(&req.walked(write), RequestKind::TranslationRequest, ()).0
    }

    /// A translated request from a device's TLB (§4.2.4): let through at its own address where
    /// the context entry allows a device-TLB, otherwise blocked with the reason the structures
    /// give (0Dh, 44h, or whatever stops the context entry from being used), recorded with
    /// AT = translated.
    pub fn translated_request(&self, req: &DmaRequest) -> Result<Translation, Fault> {
        let kind = RequestKind::Translated;
        self.run(req, kind, ()).0.map_err(|b| {
            bump(&self.ats_counters.translated_blocked);
            self.fault(req, kind, b.reason, b.fpd)
        })
    }
}

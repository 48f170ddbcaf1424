//! ATS Translated transactions (§3.9.1.3): a device with an ATC sends transactions whose
//! address an earlier Translation Completion gave it ([`Transaction::translated`]).
//!
//! - SMMUEN == 0: F_TRANSL_FORBIDDEN (recordable with SMMUEN == 0, §7.3.8), aborted.
//! - SMMU_CR0.ATSCHK == 0: the transaction bypasses with no check of the STE.
//! - ATSCHK == 1: the STE is fetched and checked. A configuration error aborts it; the event is
//!   recorded only with SMMU_CR2.REC_CFG_ATS, which needs SMMU_IDR0.ATSRECERR (not
//!   implemented), so never (§3.9.1.3). STE.Config abort aborts silently; Config bypass or an
//!   effective EATS of 0b00 (0b11 without DPT behaves as it) is F_TRANSL_FORBIDDEN. Full ATS
//!   bypasses; split-stage ATS (EATS == 0b10) translates the address as an IPA with the
//!   stream's stage 2, checked against the IAS first, as an ordinary transaction's (events
//!   recorded the same way).
//! - SMMU_IDR3.PASIDTT is 0: the transaction is taken as SSV == 0, PnU == 0, InD == 0; the STE's
//!   PRIVCFG/INSTCFG overrides then apply (§13.7, Arm's recommendation).
//!
//! IMPDEF choices:
//! - Without SMMU_IDR0.ATS the SMMU does not see the PCIe AT field: the transaction is handled
//!   as an Untranslated one.
//! - §3.9.1.1: an address beyond the OAS is truncated to it (rather than aborted).

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::{Access, WalkCtx, WalkObserver};

use super::translate::{bypass, Req, Tr};
use super::{Abort, Event, Silent, Smmu, Transaction, Translation};
use crate::spec::regs::cr0;
use crate::spec::{Eats, EventId, StreamConfig};

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// A Translated transaction (see the module documentation).
    pub(super) fn translated_transaction<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        t: &Transaction,
        tr: &Tr,
    ) -> Result<Translation, Abort> {
        let untranslated = Transaction { translated: false, ..*t };
        if !self.caps.ats {
            return self.translate_inner(cx, &untranslated, tr);
        }
        // PASIDTT == 0: no SubstreamID, unprivileged data.
        let access = Access { write: t.access.write, exec: false, privileged: false };
        let plain = Transaction { ssid: None, access, ..untranslated };
        let forbidden = || Abort::Event(Event::new(EventId::FTranslForbidden, &plain, access));
        let ack = self.cr0ack();
        if !cr0::SMMUEN.is_set(ack) {
            return Err(forbidden());
        }
        // §3.9.1.1 (IMPDEF): truncated to the OAS.
        let passed = |reads| bypass(plain.addr & low_mask(self.caps.oas_bits), reads);
        if !cr0::ATSCHK.is_set(ack) {
            return Ok(passed(0));
        }
        let pre = Req { t: &plain, access };
        let s = self.stream(cx, &pre, tr).map_err(|a| match a {
            // Not recorded without REC_CFG_ATS.
            Abort::Event(mut e) => {
                e.record = false;
                Abort::Event(e)
            }
            other => other,
        })?;
        match (s.config, s.ste.eats()) {
            // check_ste returned the silent abort for Config abort.
            (StreamConfig::Abort, _) => Err(Abort::Silent(Silent::SteAbort)),
            (StreamConfig::Bypass, _) | (_, Eats::Abort | Eats::FullDpt) => Err(forbidden()),
            (_, Eats::Full) => Ok(passed(cx.reader.reads())),
            // check_ste allows it only nested, with S2S == 0 and without SMMU_IDR0.NS1ATS.
            (_, Eats::SplitStage) => {
                let req = Req { t: &plain, access: self.effective_access(&s.ste, access) };
                self.stage1_bypassed(cx, &req, &s, tr)
            }
        }
    }
}

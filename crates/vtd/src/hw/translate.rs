//! The request path (§3.4, §3.7): the latched root table, the context entry, then the walk its
//! translation type selects.
//!
//! Every structure is read whole, as one counted read, into a stack buffer; every check raises
//! the reason Appendix A names for it, in the order the structures are used. Nothing here
//! allocates or takes a lock.

use std::sync::atomic::Ordering;

use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage};
use sviommu_pgtable::{Access, Direct, Leaf, Perms, Walk, WalkCtx};

use super::reasons::{walk_reason, WalkKind};
use super::{DmaRequest, Fault, Translation, Vtd};
use crate::spec::regs::{ecap, gsts, rtaddr, rtaddr::Ttm};
use crate::spec::root::{ContextEntry, RootEntry, TranslationType};
use crate::spec::{bits_from, is_interrupt_address, Aw, FaultReason};

/// A blocked request before it becomes a [`Fault`]: the reason and whether fault processing is
/// disabled for it.
#[derive(Clone, Copy, Debug)]
struct Blocked {
    reason: FaultReason,
    fpd: bool,
}

/// Blocked for `reason`, with the FPD state gathered so far.
fn blocked(reason: FaultReason, fpd: bool) -> Blocked {
    Blocked { reason, fpd }
}

type Cx<'m, M> = WalkCtx<'m, M, ()>;

/// IMPDEF: the page size reported when nothing was walked (pass-through, translation disabled,
/// interrupt requests).
const UNWALKED_PAGE_LG2: u8 = 12;

/// Reads the `N`-word structure at `addr` as one counted read. `None` if any byte of it is
/// outside memory (or the address overflows).
fn fetch<M: PhysMemory<Addr = Hpa>, const N: usize>(
    cx: &mut Cx<'_, M>,
    addr: u64,
) -> Option<[u64; N]> {
    let mut bytes = [0u8; 64];
    let buf = bytes.get_mut(..N * 8)?;
    cx.reader.read_block(Hpa(addr), buf).ok()?;
    let mut words = [0u64; N];
    for (w, chunk) in words.iter_mut().zip(buf.chunks_exact(8)) {
        *w = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
    }
    Some(words)
}

/// `base + index * size`, the address of a table's entry; `None` on overflow (read as an access
/// error, like an address outside memory).
fn entry_addr(base: u64, index: u64, size: u64) -> Option<u64> {
    base.checked_add(index.checked_mul(size)?)
}

const fn ss_levels(aw: Aw) -> vtd_ss::Levels {
    match aw {
        Aw::Bits39 => vtd_ss::Levels::Three,
        Aw::Bits48 => vtd_ss::Levels::Four,
        Aw::Bits57 => vtd_ss::Levels::Five,
    }
}

impl<M: PhysMemory<Addr = Hpa>> Vtd<M> {
    /// Translates one untranslated DMA request, or blocks it with its architected fault reason.
    ///
    /// §3.14: a request without PASID to the interrupt address range is an interrupt request
    /// and is not remapped ([`Translation::interrupt`]). With translation disabled (GSTS.TES
    /// clear) every request passes untranslated. Otherwise the root table latched by the last
    /// SRTP, in the mode its TTM selects, decides.
    pub fn translate(&self, req: &DmaRequest) -> Result<Translation, Fault> {
        self.translate_inner(req).map_err(|b| self.fault(req, b.reason, b.fpd))
    }

    fn translate_inner(&self, req: &DmaRequest) -> Result<Translation, Blocked> {
        // §3.14: not DMA, whatever the tables say (and whether or not translation is enabled).
        if req.pasid.is_none() && is_interrupt_address(req.addr) {
            return Ok(Translation {
                output: req.addr,
                page_lg2: UNWALKED_PAGE_LG2,
                perms: Perms::PRIV_W.union(Perms::USER_W),
                reads: 0,
                interrupt: true,
            });
        }
        // §11.4.4 TE = 0: DMA remapping is disabled and requests are not translated.
        // IMPDEF: a request with PASID passes as well, its prefix ignored.
        if !gsts::TES.is_set(self.gsts()) {
            return Ok(self.untranslated(req.addr, Perms::ALL, 0));
        }
        let root = self.root.load(Ordering::Acquire);
        let rta = rtaddr::RTA.in_place(root);
        let mut cx = WalkCtx::new(&self.mem, ());
        // §11.4.6: TTM must name a mode the unit supports, and RTA lie below HAW.
        let rta_valid = rta & bits_from(self.params.haw) == 0;
        match Ttm::try_from(rtaddr::TTM.get(root)) {
            Ok(Ttm::Legacy) if rta_valid => self.legacy(&mut cx, rta, req),
            // IMPDEF: abort-DMA mode blocks every request as if no root entry were present
            // (the mode exists to spare software a table of not-present entries).
            Ok(Ttm::AbortDma) if self.ecap_has(ecap::ADMS) => {
                Err(blocked(FaultReason::RootEntryNotPresent, false))
            }
            // IMPDEF: 30h in legacy mode too; it is the only reason for a bad RTADDR_REG.
            _ => Err(blocked(FaultReason::SmRootTableAddressInvalid, false)),
        }
    }

    /// A request that is not translated: the output is the input.
    fn untranslated(&self, addr: u64, perms: Perms, reads: u32) -> Translation {
        Translation { output: addr, page_lg2: UNWALKED_PAGE_LG2, perms, reads, interrupt: false }
    }

    // -----------------------------------------------------------------------------------------
    // Legacy mode (§3.4.2, §9.1, §9.3)
    // -----------------------------------------------------------------------------------------

    fn legacy(
        &self,
        cx: &mut Cx<'_, M>,
        rta: u64,
        req: &DmaRequest,
    ) -> Result<Translation, Blocked> {
        use FaultReason as R;
        let haw = self.params.haw;
        // Legacy mode has no PASID-granular translation.
        if req.pasid.is_some() {
            return Err(blocked(R::SmLegacyRequestWithPasid, false)); // 31h
        }
        let [bus, devfn] = req.rid.to_be_bytes();

        let at = entry_addr(rta, bus.into(), RootEntry::BYTES);
        let re = at.and_then(|a| fetch(cx, a)).map(RootEntry::from_words);
        let re = re.ok_or(blocked(R::RootTableAccess, false))?; // 08h
        if !re.p() {
            return Err(blocked(R::RootEntryNotPresent, false)); // 01h
        }
        if re.reserved_bits_set(haw) {
            return Err(blocked(R::RootEntryReserved, false)); // 0Ah
        }

        let at = entry_addr(re.ctp(), devfn.into(), ContextEntry::BYTES);
        let ce = at.and_then(|a| fetch(cx, a)).map(ContextEntry::from_words);
        let ce = ce.ok_or(blocked(R::ContextTableAccess, false))?; // 09h
                                                                   // §9.3: FPD is evaluated whether or not the entry is present.
        let fpd = ce.fpd();
        if !ce.p() {
            return Err(blocked(R::ContextEntryNotPresent, fpd)); // 02h
        }
        if ce.reserved_bits_set(haw) {
            return Err(blocked(R::ContextEntryReserved, fpd)); // 0Bh
        }
        let invalid = blocked(R::ContextEntryInvalid, fpd); // 03h
        let tt = ce.tt().map_err(|_| invalid)?;
        // Execute and privilege ride on the PASID prefix; a request without one has neither.
        let access = Access { write: req.access.write, exec: false, privileged: false };
        match tt {
            TranslationType::PassThrough => {
                if !self.ecap_has(ecap::PT) {
                    return Err(invalid);
                }
                // IMPDEF: an address the host cannot hold is beyond the (largest) AGAW that
                // pass-through entries are programmed with.
                if req.addr & bits_from(haw) != 0 {
                    return Err(blocked(R::AddressBeyondAgaw, fpd)); // 04h
                }
                Ok(self.untranslated(req.addr, Perms::ALL, cx.reader.reads()))
            }
            TranslationType::UntranslatedOnly | TranslationType::All => {
                // TT = 01b allows a device-TLB, which needs ECAP.DT.
                if tt == TranslationType::All && !self.ecap_has(ecap::DT) {
                    return Err(invalid);
                }
                let aw = ce.aw().map_err(|_| invalid)?;
                if !self.sagaw_has(aw) {
                    return Err(invalid);
                }
                let ss = VtdSecondStage {
                    root: ce.ssptptr(),
                    levels: ss_levels(aw),
                    mgaw: self.mgaw_bits(),
                    haw,
                    sllps: self.sslps(),
                    execute: false,
                    snoop: self.ecap_has(ecap::SC),
                    ad: false,
                };
                let leaf = ss
                    .walk(cx, &Direct, req.addr, access)
                    .map_err(|f| blocked(walk_reason(WalkKind::Legacy, &f, access), fpd))?;
                if is_interrupt_address(leaf.output) {
                    return Err(blocked(R::InterruptAddressRange, fpd)); // 0Eh
                }
                Ok(self.walked(leaf, leaf.perms, cx))
            }
        }
    }

    fn walked(&self, leaf: Leaf, perms: Perms, cx: &Cx<'_, M>) -> Translation {
        Translation {
            output: leaf.output,
            page_lg2: leaf.page_lg2,
            perms,
            reads: cx.reader.reads(),
            interrupt: false,
        }
    }
}

//! The invalidation sanitizer's SMMUv3 side (issue 14; `sviommu_tlb::sanitize`): which command
//! §3.21 and §4.3 / §4.4 require when a word a cached entry was built from changes, and which
//! bits the SMMU writes itself (AF, and the dirty state of a DBM descriptor, §3.13), so a hit
//! that re-reads them does not blame the driver for them.

use std::fmt;

use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::{vmsa, Stage};
use sviommu_tlb::sanitize::{Command, Origin, Stale, Violation, Word};

use super::cache::{TlbEntry, TlbKey, WalkHit};
use super::Smmu;

/// The command a driver owed the SMMU (§4.3, §4.4), as a [`Violation`](super::Violation) names
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// §4.3.1 CMD_CFGI_STE.
    CfgiSte {
        /// The StreamID.
        sid: u32,
    },
    /// §4.3.3 CMD_CFGI_CD.
    CfgiCd {
        /// The StreamID.
        sid: u32,
        /// The SubstreamID (the CD index).
        ssid: u32,
    },
    /// §4.4.2.4 CMD_TLBI_NH_VA (with an ASID) or §4.4.2.3 CMD_TLBI_NH_VAA (a global entry).
    TlbiNhVa {
        /// VMID.
        vmid: u16,
        /// ASID; `None`: the entry is global, CMD_TLBI_NH_VAA.
        asid: Option<u16>,
        /// Address.
        addr: u64,
        /// The translation granule (log2) TG names; 0: no range hint.
        tg_lg2: u8,
        /// The leaf level TTL names; 0: unknown.
        ttl: i8,
        /// Leaf: only leaf entries went stale.
        leaf: bool,
    },
    /// §4.4.3.1 CMD_TLBI_S2_IPA.
    TlbiS2Ipa {
        /// VMID.
        vmid: u16,
        /// IPA.
        addr: u64,
        /// The translation granule (log2) TG names; 0: no range hint.
        tg_lg2: u8,
        /// The leaf level TTL names; 0: unknown.
        ttl: i8,
        /// Leaf: only leaf entries went stale.
        leaf: bool,
    },
    /// A stage-2 change under a combined stage-1+2 entry: CMD_TLBI_S2_IPA of the IPA and then
    /// §4.4.2.1 CMD_TLBI_NH_ALL of the VMID (CMD_TLBI_S2_IPA leaves combined entries).
    TlbiNhAll {
        /// VMID.
        vmid: u16,
    },
}

/// TG's encoding of a granule (§4.4.1.1): 1 for 4K, 2 for 16K, 3 for 64K, 0 for none.
fn tg(lg2: u8) -> u8 {
    match lg2 {
        12 => 1,
        14 => 2,
        16 => 3,
        _ => 0,
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CfgiSte { sid } => write!(f, "CMD_CFGI_STE (StreamID {sid:#x})"),
            Self::CfgiCd { sid, ssid } => {
                write!(f, "CMD_CFGI_CD (StreamID {sid:#x}, SubstreamID {ssid:#x}, Leaf 1)")
            }
            Self::TlbiNhVa { vmid, asid: Some(asid), addr, tg_lg2, ttl, leaf } => write!(
                f,
                "CMD_TLBI_NH_VA (VMID {vmid}, ASID {asid}, Address {addr:#x}, TG {}, TTL {ttl}, Leaf {})",
                tg(tg_lg2),
                u8::from(leaf)
            ),
            Self::TlbiNhVa { vmid, asid: None, addr, tg_lg2, ttl, leaf } => write!(
                f,
                "CMD_TLBI_NH_VAA (VMID {vmid}, Address {addr:#x}, TG {}, TTL {ttl}, Leaf {})",
                tg(tg_lg2),
                u8::from(leaf)
            ),
            Self::TlbiS2Ipa { vmid, addr, tg_lg2, ttl, leaf } => write!(
                f,
                "CMD_TLBI_S2_IPA (VMID {vmid}, Address {addr:#x}, TG {}, TTL {ttl}, Leaf {})",
                tg(tg_lg2),
                u8::from(leaf)
            ),
            Self::TlbiNhAll { vmid } => {
                write!(f, "CMD_TLBI_S2_IPA and then CMD_TLBI_NH_ALL (VMID {vmid})")
            }
        }
    }
}

impl Command for Missing {
    fn sync_name(&self) -> &'static str {
        "CMD_SYNC"
    }
}

/// Whether the SMMU itself may have changed `w` to `now`: a descriptor's AF, and with DBM set
/// its dirty state (stage 1 AP[2], stage 2 S2AP[1]: bit 7 both), §3.13. Structures the SMMU
/// never writes.
pub(super) fn hw_wrote(w: &Word, now: u64) -> bool {
    let written = match w.origin {
        Origin::Table { .. } if vmsa::DBM.is_set(w.value) => vmsa::AF.mask() | 1 << 7,
        Origin::Table { .. } => vmsa::AF.mask(),
        Origin::Structure { .. } => 0,
    };
    (w.value ^ now) & !written == 0
}

/// A cache hit a strict translation checks: the entry's key and what it holds.
#[derive(Clone, Copy, Debug)]
pub(super) enum Hit {
    Ste(u32),
    Cd((u32, u32)),
    Tlb(TlbKey, TlbEntry),
    Walk(WalkHit),
}

impl<M: PhysMemory<Addr = Hpa>> Smmu<M> {
    /// Strict: re-reads the words `hit`'s entry was built from; one that changed (other than
    /// the SMMU's own AF / dirty-state writes) is a [`Violation`] naming the command owed.
    pub(super) fn sanitize(&self, hit: Hit) {
        let read = |a: u64| self.mem.read_u64(Hpa(a)).ok();
        let c = &self.caches;
        let none = (None, 0);
        let (stale, reads) = match hit {
            Hit::Ste(sid) => c.ste.as_ref().map_or(none, |t| t.check(&sid, read, hw_wrote)),
            Hit::Cd(key) => c.cd.as_ref().map_or(none, |t| t.check(&key, read, hw_wrote)),
            Hit::Tlb(key, _) => c.tlb.as_ref().map_or(none, |t| t.check(&key, read, hw_wrote)),
            Hit::Walk(WalkHit::S1Walk(k)) => {
                c.s1_walk.as_ref().map_or(none, |t| t.check(&k, read, hw_wrote))
            }
            Hit::Walk(WalkHit::S2Walk(k)) => {
                c.s2_walk.as_ref().map_or(none, |t| t.check(&k, read, hw_wrote))
            }
            Hit::Walk(WalkHit::S2Leaf(k)) => {
                c.s2_leaf.as_ref().map_or(none, |t| t.check(&k, read, hw_wrote))
            }
        };
        self.violations.count_reads(reads);
        if let Some(stale) = stale {
            self.violations.push(violation(hit, stale));
        }
    }
}

/// The violation `stale` makes of `hit`: the entry, the word, the command owed.
fn violation(hit: Hit, stale: Stale) -> Violation<Missing> {
    let stage2 = matches!(stale.word.origin, Origin::Table { stage: Stage::S2, .. });
    let shl = |v: u64, n: u8| v.checked_shl(u32::from(n)).unwrap_or(0);
    let (cache, entry, missing) = match hit {
        Hit::Ste(sid) => ("STE cache", format!("StreamID {sid:#x}"), Missing::CfgiSte { sid }),
        Hit::Cd((sid, ssid)) => (
            "CD cache",
            format!("StreamID {sid:#x} SubstreamID {ssid:#x}"),
            Missing::CfgiCd { sid, ssid },
        ),
        Hit::Tlb(k, e) => {
            let addr = shl(k.page, k.page_lg2);
            let (tg_lg2, ttl) = (e.hint.granule_lg2, e.hint.level);
            let missing = match (k.va, stage2) {
                (false, _) => Missing::TlbiS2Ipa { vmid: k.vmid, addr, tg_lg2, ttl, leaf: true },
                (true, false) => {
                    Missing::TlbiNhVa { vmid: k.vmid, asid: k.asid, addr, tg_lg2, ttl, leaf: true }
                }
                (true, true) => Missing::TlbiNhAll { vmid: k.vmid },
            };
            let asid = k.asid.map_or_else(|| "-".to_owned(), |a| a.to_string());
            let input = if k.va { "VA" } else { "IPA" };
            let entry = format!("VMID {} ASID {asid} {input} {addr:#x} (2^{})", k.vmid, k.page_lg2);
            ("TLB", entry, missing)
        }
        Hit::Walk(WalkHit::S1Walk(k)) => {
            let addr = shl(k.prefix, k.span_lg2);
            let missing = Missing::TlbiNhVa {
                vmid: k.vmid,
                asid: k.asid,
                addr,
                tg_lg2: 0,
                ttl: 0,
                leaf: false,
            };
            ("stage-1 walk cache", format!("VMID {} table for VA {addr:#x}", k.vmid), missing)
        }
        Hit::Walk(WalkHit::S2Walk(k)) => {
            let addr = shl(k.prefix, k.span_lg2);
            let missing = Missing::TlbiS2Ipa { vmid: k.vmid, addr, tg_lg2: 0, ttl: 0, leaf: false };
            ("stage-2 walk cache", format!("VMID {} table for IPA {addr:#x}", k.vmid), missing)
        }
        Hit::Walk(WalkHit::S2Leaf(k)) => {
            let addr = shl(k.page, k.page_lg2);
            let missing = Missing::TlbiS2Ipa { vmid: k.vmid, addr, tg_lg2: 0, ttl: 0, leaf: true };
            ("stage-2 leaf cache", format!("VMID {} IPA {addr:#x}", k.vmid), missing)
        }
    };
    Violation { cache, entry, word: stale.word, now: stale.now, missing, unsynced: stale.pending }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_af_and_dbm_dirty_state_are_the_smmus() {
        let t = Origin::Table { stage: Stage::S1, level: 3 };
        let w = Word { addr: 0, value: 0x5003, origin: t };
        assert!(hw_wrote(&w, w.value | 1 << 10));
        assert!(!hw_wrote(&w, w.value | 1 << 7), "AP[2] without DBM is the driver's");
        let dbm = Word { value: w.value | 1 << 51 | 1 << 7, ..w };
        assert!(hw_wrote(&dbm, dbm.value & !(1 << 7)));
        let ste = Word { origin: Origin::Structure { what: "STE", index: 0 }, ..w };
        assert!(!hw_wrote(&ste, ste.value | 1 << 10));
    }
}

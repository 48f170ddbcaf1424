//! The invalidation sanitizer's VT-d side (issue 14; `sviommu_tlb::sanitize`): which command
//! §6.5 requires when a word a cached entry was built from changes, and which bits the
//! unit writes itself (A/D), so a hit that re-reads them does not blame the driver for them.

use std::fmt;

use sviommu_memory::{Hpa, PhysMemory};
use sviommu_pgtable::{vtd_ss, x86, Stage};
use sviommu_tlb::sanitize::{Command, Origin, Stale, Violation, Word};

use super::cache::{CachedContext, CachedPasid, IotlbEntry, IotlbKey, Kind, PasidKey, WalkHit};
use super::Vtd;

/// A cache hit a strict translation checks: the entry's key and what it holds.
#[derive(Clone, Copy, Debug)]
pub(super) enum Hit {
    Context(u16, CachedContext),
    Pasid(PasidKey, CachedPasid),
    Iotlb(IotlbKey, IotlbEntry),
    Walk(WalkHit),
}

impl<M: PhysMemory<Addr = Hpa>> Vtd<M> {
    /// Strict: re-reads the words `hit`'s entry was built from; one that changed (other than
    /// the unit's own A/D writes) is a [`Violation`] naming the invalidation §6.5 requires.
    pub(super) fn sanitize(&self, hit: Hit) {
        let read = |a: u64| self.mem.read_u64(Hpa(a)).ok();
        let c = &self.caches;
        let (stale, reads) = match hit {
            Hit::Context(rid, _) => c.context.check(&rid, read, hw_wrote),
            Hit::Pasid(key, _) => c.pasid.check(&key, read, hw_wrote),
            Hit::Iotlb(key, _) => c.iotlb.check(&key, read, hw_wrote),
            Hit::Walk(WalkHit::FsPsc(key, _)) => c.fs_psc.check(&key, read, hw_wrote),
            Hit::Walk(WalkHit::SsPsc(key, _)) => c.ss_psc.check(&key, read, hw_wrote),
            Hit::Walk(WalkHit::Leaf(key)) => c.ss_leaf.check(&key, read, hw_wrote),
        };
        self.violations.count_reads(reads);
        if let Some(stale) = stale {
            self.violations.push(violation(hit, stale));
        }
    }
}

/// The violation `stale` makes of `hit`: the entry, the word, the command owed.
fn violation(hit: Hit, stale: Stale) -> Violation<Missing> {
    let stage = match stale.word.origin {
        Origin::Table { stage, .. } => Some(stage),
        Origin::Structure { .. } => None,
    };
    let (cache, entry, missing) = match hit {
        Hit::Context(rid, ce) => (
            "context cache",
            format!("SID {rid:#06x}"),
            Missing::ContextCache { sid: rid, did: ce.did() },
        ),
        Hit::Pasid(k, v) => (
            "PASID cache",
            format!("SID {:#06x} PASID {:#x}", k.rid, k.pasid),
            Missing::PasidCache { did: v.pe.p().then(|| v.pe.did()), pasid: k.pasid },
        ),
        Hit::Iotlb(k, e) => {
            let addr = k.page.checked_shl(u32::from(k.lg2)).unwrap_or(0);
            let am = am_of(k.lg2);
            let pasid = k.pasid.unwrap_or(0);
            let missing = match (e.kind, stage) {
                (Kind::Legacy | Kind::SecondStage, _) => {
                    Missing::IotlbPages { did: k.did, addr, am }
                }
                (Kind::FirstStage, _) | (Kind::Nested, Some(Stage::S1) | None) => {
                    Missing::PasidIotlbPages { did: k.did, pasid, addr, am }
                }
                // A nested entry is selected by the guest physical addresses it used.
                (Kind::Nested, Some(Stage::S2)) if e.gpa.0 <= e.gpa.1 => {
                    let (addr, am) = covering(e.gpa.0, e.gpa.1);
                    Missing::IotlbPages { did: k.did, addr, am }
                }
                (Kind::Nested, Some(Stage::S2)) => Missing::IotlbDomain { did: k.did },
            };
            let pasid = k.pasid.map_or_else(|| "-".to_owned(), |p| format!("{p:#x}"));
            ("IOTLB", format!("DID {} PASID {pasid} page {addr:#x} (2^{})", k.did, k.lg2), missing)
        }
        Hit::Walk(WalkHit::FsPsc(k, table)) => {
            let (addr, span) = entry_span(k.prefix, table, stale.word);
            (
                "first-stage paging-structure cache",
                format!("DID {} PASID {:?} depth {} table for {addr:#x}", k.did, k.pasid, k.depth),
                Missing::PasidIotlbPages {
                    did: k.did,
                    pasid: k.pasid.unwrap_or(0),
                    addr,
                    am: am_of(span),
                },
            )
        }
        Hit::Walk(WalkHit::SsPsc(k, table)) => {
            let (addr, span) = entry_span(k.prefix, table, stale.word);
            (
                "second-stage paging-structure cache",
                format!("DID {} depth {} table for {addr:#x}", k.did, k.depth),
                Missing::IotlbPages { did: k.did, addr, am: am_of(span) },
            )
        }
        Hit::Walk(WalkHit::Leaf(k)) => {
            let addr = k.page.checked_shl(u32::from(k.lg2)).unwrap_or(0);
            (
                "second-stage leaf cache",
                format!("DID {} page {addr:#x} (2^{})", k.did, k.lg2),
                Missing::IotlbPages { did: k.did, addr, am: am_of(k.lg2) },
            )
        }
    };
    Violation { cache, entry, word: stale.word, now: stale.now, missing, unsynced: stale.pending }
}

/// The inputs the changed entry `w` maps, above a cached table of `2^table_lg2` bytes named by
/// `prefix`: its first address and span (a level-`l` entry maps `2^(12 + 9 * (l - 1))` bytes
/// in both VT-d formats, §3.6, §3.7).
fn entry_span(prefix: u64, table_lg2: u8, w: Word) -> (u64, u8) {
    let level = match w.origin {
        Origin::Table { level, .. } => u8::try_from(level).unwrap_or(1),
        Origin::Structure { .. } => 1,
    };
    let span = 12u8.saturating_add(9u8.saturating_mul(level.saturating_sub(1))).max(table_lg2);
    let first = prefix.checked_shl(u32::from(table_lg2)).unwrap_or(0);
    (first & !sviommu_memory::bits::low_mask(span), span)
}

/// The invalidation a driver owed the unit (§6.5, §6.5.2), as a [`Violation`](super::Violation)
/// names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// §6.5.2.1 context-cache invalidation, device-selective (FM 0) for `sid`, with the
    /// entry's DID (legacy entries; scalable-mode context entries have none).
    ContextCache {
        /// The source-id.
        sid: u16,
        /// The entry's DID, if it has one.
        did: Option<u16>,
    },
    /// §6.5.2.2 PASID-cache invalidation, PASID-selective.
    PasidCache {
        /// The entry's DID (any, for a not-present entry cached under caching mode).
        did: Option<u16>,
        /// The PASID.
        pasid: u32,
    },
    /// §6.5.2.3 IOTLB invalidation, page-selective-within-domain (with IH = 0 where a
    /// paging-structure entry went stale).
    IotlbPages {
        /// The domain.
        did: u16,
        /// ADDR (a second-stage input).
        addr: u64,
        /// AM.
        am: u8,
    },
    /// §6.5.2.3 IOTLB invalidation, domain-selective.
    IotlbDomain {
        /// The domain.
        did: u16,
    },
    /// §6.5.2.4 PASID-based IOTLB invalidation, page-selective-within-PASID (IH = 0 where a
    /// paging-structure entry went stale).
    PasidIotlbPages {
        /// The domain.
        did: u16,
        /// The PASID.
        pasid: u32,
        /// ADDR (a first-stage input).
        addr: u64,
        /// AM.
        am: u8,
    },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let did = |d: Option<u16>| d.map_or_else(|| "any".to_owned(), |d| d.to_string());
        match *self {
            Self::ContextCache { sid, did: d } => write!(
                f,
                "context-cache invalidation, device-selective (SID {:02x}:{:02x}.{}, FM 0, DID {})",
                sid >> 8,
                (sid >> 3) & 0x1f,
                sid & 7,
                did(d)
            ),
            Self::PasidCache { did: d, pasid } => {
                write!(f, "PASID-cache invalidation, PASID-selective (DID {}, PASID {pasid:#x})", did(d))
            }
            Self::IotlbPages { did, addr, am } => write!(
                f,
                "IOTLB invalidation, page-selective-within-domain (DID {did}, ADDR {addr:#x}, AM {am}, IH 0)"
            ),
            Self::IotlbDomain { did } => {
                write!(f, "IOTLB invalidation, domain-selective (DID {did})")
            }
            Self::PasidIotlbPages { did, pasid, addr, am } => write!(
                f,
                "PASID-based IOTLB invalidation, page-selective-within-PASID (DID {did}, PASID {pasid:#x}, ADDR {addr:#x}, AM {am}, IH 0)"
            ),
        }
    }
}

impl Command for Missing {
    fn sync_name(&self) -> &'static str {
        "invalidation wait descriptor"
    }
}

/// Whether the unit itself may have changed `w` to `now`: only the accessed and dirty bits of a
/// first-stage (§3.6.2) or second-stage (§3.7.2) paging entry. Structures the unit never
/// writes.
pub(super) fn hw_wrote(w: &Word, now: u64) -> bool {
    let written = match w.origin {
        Origin::Table { stage: Stage::S1, .. } => x86::A.mask() | x86::D.mask(),
        Origin::Table { stage: Stage::S2, .. } => vtd_ss::A.mask() | vtd_ss::D.mask(),
        Origin::Structure { .. } => 0,
    };
    (w.value ^ now) & !written == 0
}

/// ADDR and AM of the smallest naturally aligned range of 4K pages holding `first..=last`.
pub(super) fn covering(first: u64, last: u64) -> (u64, u8) {
    let mut am = 0u8;
    while am < 52 && (first >> (12 + am)) != (last >> (12 + am)) {
        am += 1;
    }
    let lg2 = 12 + am;
    (first & !sviommu_memory::bits::low_mask(lg2), am)
}

/// AM for a `2^lg2`-byte page or span.
pub(super) fn am_of(lg2: u8) -> u8 {
    lg2.saturating_sub(12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_accessed_and_dirty_are_the_units() {
        let fs =
            Word { addr: 0, value: 0x1003, origin: Origin::Table { stage: Stage::S1, level: 1 } };
        assert!(hw_wrote(&fs, 0x1063));
        assert!(!hw_wrote(&fs, 0x1001), "a right taken away");
        let ss = Word { origin: Origin::Table { stage: Stage::S2, level: 1 }, ..fs };
        assert!(hw_wrote(&ss, 0x1303) && !hw_wrote(&ss, 0x1063));
        let st = Word { origin: Origin::Structure { what: "context entry", index: 0 }, ..fs };
        assert!(!hw_wrote(&st, 0x1023));
    }

    #[test]
    fn covering_ranges() {
        assert_eq!(covering(0x5000, 0x5fff), (0x5000, 0));
        assert_eq!(covering(0x5000, 0x6fff), (0x4000, 2));
        assert_eq!(covering(0x20_0000, 0x3f_ffff), (0x20_0000, 9));
        assert_eq!(am_of(21), 9);
    }
}

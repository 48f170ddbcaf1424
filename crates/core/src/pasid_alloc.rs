//! PASIDs from one global allocator, as Linux hands them out (`iommu_global_pasid_allocate`):
//! an address space keeps one PASID on every device it is bound to, so the number must be
//! free everywhere, and each device can only use the PASIDs its width lets it send.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

/// A Process Address Space ID (PCIe r6.0 §6.20; an SMMUv3 SubstreamID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Pasid(pub u32);

impl fmt::Display for Pasid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The allocator ran out below the limit asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no free PASID below {limit:#x}")]
pub struct PasidExhausted {
    /// The exclusive bound asked for.
    pub limit: u32,
}

/// Hands out PASIDs from 1 up. PASID 0 is never handed out: VT-d uses it for requests without
/// a PASID (RID_PASID) and SMMUv3 for SubstreamID 0 under S1DSS, the way Linux reserves
/// `IOMMU_NO_PASID`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PasidAllocator {
    used: BTreeSet<u32>,
}

impl PasidAllocator {
    /// The lowest free PASID below `limit` (a device's `2^width`).
    pub fn alloc(&mut self, limit: u32) -> Result<Pasid, PasidExhausted> {
        let mut candidate = 1;
        for &u in self.used.range(1..) {
            if u != candidate {
                break;
            }
            candidate += 1;
        }
        if candidate >= limit {
            return Err(PasidExhausted { limit });
        }
        self.used.insert(candidate);
        Ok(Pasid(candidate))
    }

    /// Gives `pasid` back; `false` if it was not handed out.
    pub fn free(&mut self, pasid: Pasid) -> bool {
        self.used.remove(&pasid.0)
    }

    /// Whether `pasid` is handed out.
    pub fn is_used(&self, pasid: Pasid) -> bool {
        self.used.contains(&pasid.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_from_one_and_bounded() {
        let mut a = PasidAllocator::default();
        assert_eq!(a.alloc(4), Ok(Pasid(1)));
        assert_eq!(a.alloc(4), Ok(Pasid(2)));
        assert_eq!(a.alloc(4), Ok(Pasid(3)));
        assert_eq!(a.alloc(4), Err(PasidExhausted { limit: 4 }));
        assert!(a.free(Pasid(2)));
        assert!(!a.free(Pasid(2)));
        assert_eq!(a.alloc(1 << 20), Ok(Pasid(2)));
        assert_eq!(a.alloc(1 << 20), Ok(Pasid(4)));
    }

    #[test]
    fn a_narrow_device_cannot_take_what_a_wide_one_left() {
        let mut a = PasidAllocator::default();
        for _ in 1..8 {
            a.alloc(1 << 20).unwrap();
        }
        // A device with 3 PASID bits names 1..=7, all taken.
        assert_eq!(a.alloc(8), Err(PasidExhausted { limit: 8 }));
        assert_eq!(a.alloc(16), Ok(Pasid(8)));
    }
}

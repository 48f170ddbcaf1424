//! `invalidate`: a guest's cache invalidations, passed down. The combinations Linux's
//! `iommu_cache_invalidate_info` uAPI refused are refused here, before any driver call.

use std::ops::Range;

use serde::Serialize;

use crate::domain::{DomainId, DomainKind};
use crate::driver::{CacheKind, HwInvalidation};
use crate::error::CoreError;
use crate::iommu::{Iommu, Reached, Target};
use crate::pasid_alloc::Pasid;

/// How much an invalidation covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "granularity", rename_all = "snake_case")]
pub enum Granularity {
    /// Everything the target's domain tags.
    Domain,
    /// Everything of one PASID.
    Pasid,
    /// A range of one PASID's (or the no-PASID) address space.
    Addr {
        /// The range, page aligned.
        range: Range<u64>,
        /// Only leaf entries changed: walk caches may stay.
        leaf: bool,
    },
}

/// The seed's `InvalidateInfo`: what a guest asks to invalidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvalidateInfo {
    /// Which cache.
    pub cache: CacheKind,
    /// How much.
    pub granularity: Granularity,
    /// The PASID (for `Pasid` granularity, and optionally `Addr`).
    pub pasid: Option<Pasid>,
    /// The tag the guest's own tables are cached under, where the architecture has one the
    /// host cannot know (Linux's `archid`): the guest's ASID on SMMUv3 under a bound CD table.
    /// `None` invalidates every tag the target has. VT-d tags by domain and PASID and ignores it.
    pub arch_id: Option<u32>,
}

impl Iommu {
    /// Passes a guest's invalidation down to the units of every group `target` names (a
    /// domain names its groups) and waits for it. Returns the devices it reached.
    pub fn invalidate(
        &mut self,
        target: &Target,
        info: &InvalidateInfo,
    ) -> Result<Reached, CoreError> {
        check(info)?;
        let groups = self.resolve(target)?;
        let mut work: Vec<(crate::topology::UnitId, HwInvalidation)> = Vec::new();
        for g in &groups {
            let unit = self.group(*g)?.unit;
            let domain = self.invalidated_domain(target, *g, info.pasid)?;
            let hw = self.hw_of(domain)?;
            let request_ids = self.group_request_ids(*g)?;
            let (range, leaf) = match &info.granularity {
                Granularity::Addr { range, leaf } => (Some(range.clone()), *leaf),
                _ => (None, false),
            };
            let inv = HwInvalidation {
                cache: info.cache,
                domain: hw,
                pasid: info.pasid,
                range,
                leaf,
                arch_id: info.arch_id,
                request_ids,
            };
            // One invalidation per domain and unit: a domain named through several groups is
            // invalidated once, with every group's devices for the device TLBs.
            match work.iter_mut().find(|(u, w)| *u == unit && w.domain == hw) {
                Some((_, w)) => {
                    w.request_ids.extend(inv.request_ids);
                    w.request_ids.sort_unstable();
                    w.request_ids.dedup();
                }
                None => work.push((unit, inv)),
            }
        }
        let mut unit = None;
        for (u, inv) in &work {
            self.driver_op(*u, |d| d.invalidate(inv))?;
            unit = Some(*u);
        }
        Ok(unit.map(|u| self.reached(u, &groups, &Default::default())).unwrap_or_default())
    }

    /// The domain whose tags an invalidation for `group` selects: the domain named, or the one
    /// attached at the PASID (a bound guest PASID table's parent for any PASID).
    fn invalidated_domain(
        &self,
        target: &Target,
        group: crate::topology::GroupId,
        pasid: Option<Pasid>,
    ) -> Result<DomainId, CoreError> {
        if let Target::Domain(d) = target {
            return Ok(*d);
        }
        if let Some(t) = self.pasid_tables.get(&group) {
            return Ok(t.parent);
        }
        let d = self.current_domain(group, pasid).ok_or_else(|| {
            let device = self.group(group).ok().and_then(|g| g.members.first().cloned());
            match (device, pasid) {
                (Some(device), Some(pasid)) => CoreError::PasidNotAttached { device, pasid },
                _ => CoreError::BadInvalidation("nothing is attached to invalidate"),
            }
        })?;
        if matches!(self.domain(d)?.kind, DomainKind::Blocked | DomainKind::Identity) {
            return Err(CoreError::BadInvalidation("a blocked or identity domain caches nothing"));
        }
        Ok(d)
    }
}

/// The uAPI's validity rules, checked alone so a refusal touches nothing.
fn check(info: &InvalidateInfo) -> Result<(), CoreError> {
    if info.pasid == Some(Pasid(0)) {
        return Err(CoreError::PasidZero);
    }
    match (&info.granularity, info.cache, info.pasid) {
        (Granularity::Domain, _, Some(_)) => {
            Err(CoreError::BadInvalidation("domain granularity takes no PASID"))
        }
        (Granularity::Domain, CacheKind::DevIotlb, _) => Err(CoreError::BadInvalidation(
            "device TLBs are invalidated by PASID or address, not by domain",
        )),
        (Granularity::Pasid, _, None) => {
            Err(CoreError::BadInvalidation("PASID granularity needs a PASID"))
        }
        (Granularity::Addr { .. }, CacheKind::Pasid, _) => Err(CoreError::BadInvalidation(
            "the PASID cache holds no addresses: invalidate it by domain or PASID",
        )),
        (Granularity::Addr { range, .. }, _, _) => {
            if range.start >= range.end {
                return Err(CoreError::BadRange);
            }
            if range.start % 4096 != 0 || range.end % 4096 != 0 {
                return Err(CoreError::Unaligned {
                    what: "invalidation range",
                    value: if range.start % 4096 != 0 { range.start } else { range.end },
                    align: 4096,
                });
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(cache: CacheKind, granularity: Granularity, pasid: Option<u32>) -> InvalidateInfo {
        InvalidateInfo { cache, granularity, pasid: pasid.map(Pasid), arch_id: None }
    }

    #[test]
    fn the_uapi_refusals() {
        let addr = Granularity::Addr { range: 0x1000..0x3000, leaf: true };
        assert!(check(&info(CacheKind::Iotlb, Granularity::Domain, None)).is_ok());
        assert!(check(&info(CacheKind::Iotlb, Granularity::Pasid, Some(3))).is_ok());
        assert!(check(&info(CacheKind::Iotlb, addr.clone(), Some(3))).is_ok());
        assert!(check(&info(CacheKind::DevIotlb, addr.clone(), Some(3))).is_ok());
        assert!(check(&info(CacheKind::Pasid, Granularity::Pasid, Some(3))).is_ok());
        for bad in [
            info(CacheKind::Iotlb, Granularity::Domain, Some(3)),
            info(CacheKind::DevIotlb, Granularity::Domain, None),
            info(CacheKind::Iotlb, Granularity::Pasid, None),
            info(CacheKind::Pasid, addr, Some(3)),
            info(CacheKind::Iotlb, Granularity::Addr { range: 0x1000..0x1000, leaf: false }, None),
            info(CacheKind::Iotlb, Granularity::Addr { range: 0x1800..0x3000, leaf: false }, None),
            info(CacheKind::Iotlb, Granularity::Pasid, Some(0)),
        ] {
            assert!(check(&bad).is_err(), "{bad:?} was accepted");
        }
    }
}

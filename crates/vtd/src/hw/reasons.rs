//! pgtable walk faults onto VT-d fault reasons: the one table to review (§7.1.3 and Appendix A,
//! "Non-Recoverable Fault Reason Encodings", rev 4.1).
//!
//! The root, context and PASID structures raise their own reasons where they are read
//! (`translate`); this module covers what a page-table walk finds. A walk fault says which stage
//! faulted, at which level, why, and (nested) which first-stage level was being fetched when the
//! second stage faulted.

use sviommu_pgtable::{Access, Fault, FaultKind};

use crate::spec::FaultReason;

/// Which walk a fault came from, with what the table needs to tell reasons apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WalkKind {
    /// Legacy mode: the second-stage table of a legacy context entry.
    Legacy,
}

/// The fault reason for a walk fault.
pub(super) fn walk_reason(walk: WalkKind, f: &Fault, access: Access) -> FaultReason {
    match walk {
        WalkKind::Legacy => legacy(f, access),
    }
}

/// Legacy mode (§3.7 with a legacy context entry): second stage only, and no "not present"
/// reason: an entry with R and W clear denies the read or the write that reached it.
fn legacy(f: &Fault, access: Access) -> FaultReason {
    use FaultKind as K;
    use FaultReason as R;
    match f.kind {
        K::InputRange => R::AddressBeyondAgaw, // 04h
        K::Translation | K::Permission | K::AccessFlag if access.write => R::WriteDenied, // 05h
        K::Translation | K::Permission | K::AccessFlag => R::ReadDenied, // 06h
        K::ExternalAbort { .. } | K::AddressSize => R::SsEntryAccess, // 07h
        K::Reserved => R::SsEntryReserved,     // 0Ch
        // SSPTPTR at or above HAW: a reserved field of the context entry (checked before the
        // walk).
        K::Config => R::ContextEntryReserved, // 0Bh
    }
}

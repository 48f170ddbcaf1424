//! pgtable walk faults onto VT-d fault reasons: the one table to review (§7.1.3 and Appendix A,
//! "Non-Recoverable Fault Reason Encodings", rev 4.1).
//!
//! The root, context and PASID structures raise their own reasons where they are read
//! (`translate`); this module covers what a page-table walk finds. A walk fault says which stage
//! faulted, at which level, why, and (nested) which first-stage level was being fetched when the
//! second stage faulted.
//!
//! [`ats_answer`] is the second table: what an ATS translation request that meets each reason
//! gets back (§4.2.3), and whether the reason is recorded.

use sviommu_pgtable::{Access, Fault, FaultKind, Perms, S1Fetch, Stage};

use crate::spec::FaultReason;

/// Which walk a fault came from, with what the table needs to tell reasons apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WalkKind {
    /// Legacy mode: the second-stage table of a legacy context entry.
    Legacy,
    /// Scalable mode, PGTT first-stage only. `fs_top` is the level of the table FSPTPTR names
    /// (4 or 5).
    FirstStage { fs_top: i8 },
    /// Scalable mode, PGTT second-stage only. `ss_top` is the level of the table SSPTPTR names
    /// (3, 4 or 5).
    SecondStage { ss_top: i8 },
    /// Scalable mode, PGTT nested.
    Nested { fs_top: i8, ss_top: i8 },
}

/// The fault reason for a walk fault. A first-stage permission fault's reason comes from the
/// rights the faulting walk found ([`Fault::granted`]), not from reading the tables again.
pub(super) fn walk_reason(walk: WalkKind, f: &Fault, access: Access) -> FaultReason {
    use FaultKind as K;
    use FaultReason as R;
    let (fs_top, ss_top) = match walk {
        WalkKind::Legacy => return legacy(f, access),
        WalkKind::FirstStage { fs_top } => (fs_top, 0),
        WalkKind::SecondStage { ss_top } => (0, ss_top),
        WalkKind::Nested { fs_top, ss_top } => (fs_top, ss_top),
    };
    match (f.stage, f.s1_fetch, f.kind) {
        // First stage (§3.6, §9.7).
        (Stage::S1, _, K::InputRange) => R::SmNonCanonical, // 80h
        (Stage::S1, _, K::Translation) => R::SmFsEntryNotPresent, // 71h
        // The x86 format has no configuration or access-flag faults; a reserved bit or reserved
        // encoding is 72h.
        (Stage::S1, _, K::Reserved | K::Config | K::AccessFlag) => R::SmFsEntryReserved, // 72h
        // The read of the table FSPTPTR names (after second-stage translation, when nested).
        (Stage::S1, _, K::ExternalAbort { .. }) if f.level == fs_top => R::SmFsptptrAccess, // 73h
        (Stage::S1, _, K::ExternalAbort { .. } | K::AddressSize) => R::SmFsEntryAccess,     // 70h
        (Stage::S1, _, K::Permission) => first_stage_permission(access, f.granted),

        // Second stage while fetching a first-stage table (nested, §3.8).
        (Stage::S2, Some(_), K::InputRange) => R::SmNestedFsAddressBeyondSs, // 74h
        // The read of the table FSPTPTR names (75h) or of one below it (76h), or the write that
        // sets a first-stage entry's A/D bits (77h).
        (Stage::S2, Some(S1Fetch { write: true, .. }), K::Permission) => {
            R::SmNestedFsEntryWriteDenied // 77h
        }
        (Stage::S2, Some(S1Fetch { level, .. }), K::Permission) if level == fs_top => {
            R::SmNestedFsRootReadDenied // 75h
        }
        (Stage::S2, Some(_), K::Permission) => R::SmNestedFsEntryReadDenied, // 76h

        // Second stage (§3.7, §9.8), for a first-stage table fetch or for the request itself.
        (Stage::S2, Some(_), K::Translation | K::AccessFlag) => R::SmSsEntryNotPresent, // 79h
        (Stage::S2, None, K::InputRange) => R::SmAddressBeyondMgaw,                     // 83h
        (Stage::S2, None, K::Translation | K::AccessFlag) => R::SmSsEntryNotPresent,    // 79h
        (Stage::S2, _, K::Reserved) => R::SmSsEntryReserved,                            // 7Ah
        // The read of the table SSPTPTR names.
        (Stage::S2, _, K::ExternalAbort { .. }) if f.level == ss_top => R::SmSsptptrInvalid, // 7Bh
        (Stage::S2, _, K::ExternalAbort { .. } | K::AddressSize) => R::SmSsEntryAccess,      // 78h
        // SSPTPTR at or above HAW: a reserved field of the PASID-table entry (checked before the
        // walk, so only reached if the two checks ever disagree).
        (Stage::S2, _, K::Config) => R::SmPasidEntryReserved, // 5Ah
        // The second stage grants the same to both privilege levels; a request is one of
        // execute, write and read.
        (Stage::S2, None, K::Permission) if access.exec => R::SmExecuteDenied, // 82h
        (Stage::S2, None, K::Permission) if access.write => R::SmWriteDenied,  // 85h
        (Stage::S2, None, K::Permission) => R::SmReadDenied,                   // 86h
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

/// A first-stage permission fault: which right the translation lacks (§3.6.1), from `granted`,
/// what the faulting walk found. A user request to a supervisor-only page is 81h whatever it
/// asked for; then execute (82h), write (85h), read (86h).
fn first_stage_permission(access: Access, granted: Option<Perms>) -> FaultReason {
    // Every present first-stage leaf grants a supervisor read; user rights come with U/S.
    let user_page = granted.is_none_or(|p| p.contains(Perms::USER_R));
    if !access.privileged && !user_page {
        FaultReason::SmUserAccessDenied
    } else if access.exec {
        FaultReason::SmExecuteDenied
    } else if access.write {
        FaultReason::SmWriteDenied
    } else {
        FaultReason::SmReadDenied
    }
}

/// How the unit answers a translation request that met a fault condition (§4.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AtsAnswer {
    /// The translation structures block the request or do not exist for it (not present, TT or
    /// DTE, PASIDE, legacy mode with a PASID): Unsupported Request, and the fault is recorded.
    Unsupported,
    /// The structures are in error (access errors, reserved bits, invalid programming, an
    /// output in the interrupt range): Completer Abort, and the fault is recorded.
    Abort,
    /// A translation fault the device may recover from with a page request (not present, no
    /// permission, address out of range): a successful completion with R = W = 0, and nothing
    /// recorded.
    NoAccess,
}

/// §4.2.3: what a translation request meeting `reason` gets. The split follows the spec's three
/// groups; where a reason is not named there, its kind decides (IMPDEF, tagged below).
pub(super) fn ats_answer(reason: FaultReason) -> AtsAnswer {
    use AtsAnswer as A;
    use FaultReason as R;
    match reason {
        R::RootEntryNotPresent
        | R::ContextEntryNotPresent
        | R::TranslationBlocked
        | R::SmLegacyRequestWithPasid
        | R::SmRootEntryNotPresent
        | R::SmContextEntryNotPresent
        | R::SmContextDteClear
        | R::SmContextPasideClear
        | R::SmPasidBeyondDirectory
        // IMPDEF: a missing PASID directory or table entry blocks the PASID like a missing
        // context entry blocks the device, rather than asking for a page request.
        | R::SmPasidDirEntryNotPresent
        | R::SmPasidEntryNotPresent => A::Unsupported,
        // Page-table faults: the device may ask software for the page (§7.5). Nested, the
        // second stage's faults while fetching a first-stage table are the host's to fix.
        R::AddressBeyondAgaw
        | R::WriteDenied
        | R::ReadDenied
        | R::SmPasidEreClear
        | R::SmPasidSreClear
        | R::SmFsEntryNotPresent
        | R::SmNestedFsAddressBeyondSs
        | R::SmNestedFsRootReadDenied
        | R::SmNestedFsEntryReadDenied
        | R::SmNestedFsEntryWriteDenied
        | R::SmSsEntryNotPresent
        | R::SmNonCanonical
        | R::SmUserAccessDenied
        | R::SmExecuteDenied
        | R::SmAddressBeyondMgaw
        | R::SmWriteDenied
        | R::SmReadDenied => A::NoAccess,
        // Everything else is an error in the structures (access, reserved, invalid,
        // interrupt-range output, A/D update failures) or a reason a translation request
        // cannot meet (interrupt remapping, page requests).
        _ => A::Abort,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fetch_faults_tell_root_read_entry_read_and_write_apart() {
        let perm = |s1_fetch| {
            let w = WalkKind::Nested { fs_top: 4, ss_top: 4 };
            let f = Fault {
                stage: Stage::S2,
                level: 1,
                kind: FaultKind::Permission,
                input: 0,
                s1_fetch,
                granted: Some(Perms::NONE),
            };
            walk_reason(w, &f, Access::READ)
        };
        let fetch = |level, write| Some(S1Fetch { level, write });
        assert_eq!(perm(fetch(4, false)), FaultReason::SmNestedFsRootReadDenied);
        assert_eq!(perm(fetch(2, false)), FaultReason::SmNestedFsEntryReadDenied);
        assert_eq!(perm(fetch(4, true)), FaultReason::SmNestedFsEntryWriteDenied);
        assert_eq!(perm(None), FaultReason::SmReadDenied);
    }

    #[test]
    fn ats_answers_for_the_reasons_translation_requests_add() {
        assert_eq!(ats_answer(FaultReason::TranslationBlocked), AtsAnswer::Unsupported);
        assert_eq!(ats_answer(FaultReason::SmContextDteClear), AtsAnswer::Unsupported);
        assert_eq!(ats_answer(FaultReason::SmFsEntryNotPresent), AtsAnswer::NoAccess);
        assert_eq!(ats_answer(FaultReason::SsEntryReserved), AtsAnswer::Abort);
        assert_eq!(ats_answer(FaultReason::SmContextEntryAccess), AtsAnswer::Abort);
    }

    #[test]
    fn first_stage_permission_order() {
        let sup_ro = Perms::PRIV_R;
        let user_ro = Perms::PRIV_R.union(Perms::USER_R);
        let p = |a, perms| first_stage_permission(a, Some(perms));
        assert_eq!(p(Access::WRITE, sup_ro), FaultReason::SmUserAccessDenied);
        assert_eq!(p(Access::WRITE, user_ro), FaultReason::SmWriteDenied);
        assert_eq!(p(Access::EXEC, user_ro), FaultReason::SmExecuteDenied);
        assert_eq!(p(Access::WRITE.privileged(), sup_ro), FaultReason::SmWriteDenied);
    }
}

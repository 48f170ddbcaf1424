//! pgtable walk faults onto SMMUv3 events: the one table to review (IHI 0070 G.b §7.3.12 to
//! §7.3.16, §3.4).
//!
//! The structures the SMMU reads before any walk (STE, CD, their level-1 descriptors) raise their
//! own events where they are read (`stream`, `context`); this module covers what a translation
//! table walk finds. A walk fault says which stage faulted, why, what that stage was translating,
//! and (nested) which stage-1 level was being fetched when stage 2 faulted. The caller says
//! whether the stage-2 walk was for a CD or L1CD fetch.

use sviommu_pgtable::{Fault, FaultKind, Stage};

use crate::spec::{Class, EventId};

/// Which access of the transaction a walk was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WalkFor {
    /// Translating the transaction's address: stage 1, or stage 2 of the transaction's IPA
    /// (or, nested, of a stage-1 table address: the fault's `s1_fetch`).
    Input,
    /// Stage 2 translating the IPA of a CD or L1CD (nested only).
    Cd,
}

/// The event fields a walk fault decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WalkEvent {
    pub id: EventId,
    pub s2: bool,
    pub class: Option<Class>,
    pub ipa: Option<u64>,
    pub fetch_addr: Option<u64>,
    pub ttrnw: bool,
}

impl WalkEvent {
    /// A Translation-related fault (§5.5: recorded only when CD.R or STE.S2R is set).
    pub fn translation_related(&self) -> bool {
        matches!(
            self.id,
            EventId::FTranslation | EventId::FAddrSize | EventId::FAccess | EventId::FPermission
        )
    }
}

/// The event for a walk fault.
pub(super) fn walk_event(f: &Fault, walk: WalkFor) -> WalkEvent {
    use FaultKind as K;
    let s2 = f.stage == Stage::S2;
    let (id, fetch_addr) = match f.kind {
        // §7.3.13: not valid, outside TxSZ (stage 1) or S2T0SZ (stage 2, "check 1" of §3.4),
        // or a Reserved descriptor encoding (VMSA: a Translation fault).
        K::Translation | K::Reserved | K::InputRange => (EventId::FTranslation, None),
        // §7.3.14: a table or output address beyond the stage's effective IPS / S2PS.
        K::AddressSize => (EventId::FAddrSize, None),
        // §7.3.15: AF == 0 without HTTU (and without AFFD).
        K::AccessFlag => (EventId::FAccess, None),
        // §7.3.16.
        K::Permission => (EventId::FPermission, None),
        // §7.3.12: the descriptor fetch (or update) aborted; FetchAddr is its PA.
        K::ExternalAbort { addr } => (EventId::FWalkEabt, Some(addr)),
        // The SMMU checks the CD and STE before it walks (§5.4.2, §5.2.2); a configuration the
        // walker refuses is one those checks missed. Reported as the structure's error.
        K::Config if s2 => (EventId::CBadSte, None),
        K::Config => (EventId::CBadCd, None),
    };
    if matches!(id, EventId::CBadSte | EventId::CBadCd) {
        return WalkEvent { id, s2: false, class: None, ipa: None, fetch_addr: None, ttrnw: false };
    }
    let class = match (s2, walk) {
        // §7.3.12: a stage-1 descriptor fetch that aborts is CLASS == TT with S2 == 0, unlike
        // the other stage-1 faults, which are CLASS == IN (§7.3.13).
        (false, _) if id == EventId::FWalkEabt => Class::Tt,
        (false, _) => Class::In,
        // §7.3.13: stage 2 while fetching a CD, a stage-1 descriptor, or for the input.
        (true, WalkFor::Cd) => Class::Cd,
        (true, WalkFor::Input) if f.s1_fetch.is_some() => Class::Tt,
        (true, WalkFor::Input) => Class::In,
    };
    // §7.3.13: the IPA is the CD address, the stage-1 descriptor address or the IPA, which is
    // what stage 2 was translating. F_WALK_EABT has no IPA field, only FetchAddr.
    let ipa = (s2 && id != EventId::FWalkEabt).then_some(f.input);
    // §7.3.16: TTRnW says whether the stage-1 table access stage 2 refused was a read (rather
    // than the write that sets its Access flag or dirty state).
    let ttrnw = id == EventId::FPermission
        && class == Class::Tt
        && f.s1_fetch.is_some_and(|fetch| !fetch.write);
    WalkEvent { id, s2, class: Some(class), ipa, fetch_addr, ttrnw }
}

#[cfg(test)]
mod tests {
    use sviommu_pgtable::S1Fetch;

    use super::*;

    fn fault(stage: Stage, kind: FaultKind, s1: Option<i8>) -> Fault {
        let s1_fetch = s1.map(|level| S1Fetch { level, write: false });
        Fault { stage, level: 2, kind, input: 0x4000_1000, s1_fetch, granted: None }
    }

    const IN: WalkFor = WalkFor::Input;

    #[test]
    fn every_kind_at_each_stage_and_class() {
        use FaultKind as K;
        let e = walk_event(&fault(Stage::S1, K::InputRange, None), IN);
        assert_eq!(
            (e.id, e.s2, e.class, e.ipa),
            (EventId::FTranslation, false, Some(Class::In), None)
        );
        let e = walk_event(&fault(Stage::S1, K::ExternalAbort { addr: 0x88 }, None), IN);
        assert_eq!(
            (e.id, e.class, e.fetch_addr),
            (EventId::FWalkEabt, Some(Class::Tt), Some(0x88))
        );
        let e = walk_event(&fault(Stage::S2, K::Translation, None), WalkFor::Cd);
        assert_eq!(
            (e.id, e.s2, e.class, e.ipa),
            (EventId::FTranslation, true, Some(Class::Cd), Some(0x4000_1000))
        );
        let e = walk_event(&fault(Stage::S2, K::Permission, Some(1)), IN);
        assert_eq!((e.id, e.class, e.ttrnw), (EventId::FPermission, Some(Class::Tt), true));
        let update = S1Fetch { level: 3, write: true };
        let e = walk_event(
            &Fault { s1_fetch: Some(update), ..fault(Stage::S2, K::Permission, None) },
            IN,
        );
        assert_eq!((e.id, e.class, e.ttrnw), (EventId::FPermission, Some(Class::Tt), false));
        let e = walk_event(&fault(Stage::S2, K::AddressSize, None), IN);
        assert_eq!((e.id, e.class), (EventId::FAddrSize, Some(Class::In)));
        let e = walk_event(&fault(Stage::S2, K::AccessFlag, None), IN);
        assert_eq!(e.id, EventId::FAccess);
        let e = walk_event(&fault(Stage::S2, K::ExternalAbort { addr: 0x10 }, Some(0)), IN);
        assert_eq!((e.id, e.s2, e.class, e.ipa), (EventId::FWalkEabt, true, Some(Class::Tt), None));
        assert_eq!(walk_event(&fault(Stage::S2, K::Config, None), IN).id, EventId::CBadSte);
        assert_eq!(walk_event(&fault(Stage::S1, K::Config, None), IN).id, EventId::CBadCd);
    }
}

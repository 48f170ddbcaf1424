//! Two-stage (nested) translation as two walkers composed.

use sviommu_memory::{Address, PhysMemory};

use crate::radix::{self, Format};
use crate::walk::{
    Access, Fault, FaultKind, Leaf, Located, S1Fetch, Stage, TableFetch, Walk, WalkCtx,
    WalkObserver,
};

impl<Fm: Format> Walk for Fm {
    fn walk<M, F, O>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        fetch: &F,
        input: u64,
        access: Access,
    ) -> Result<Leaf, Fault>
    where
        M: PhysMemory + ?Sized,
        F: TableFetch<M>,
        O: WalkObserver,
    {
        radix::walk(self, cx, fetch, input, access)
    }
}

/// Stage 1 over stage 2: every stage-1 table entry address is itself translated by stage 2
/// before it is read, and so is the stage-1 output.
///
/// With 4 levels in each stage and no caches, a 4K translation reads 4 x (4 + 1) + 4 = 24
/// entries: each of the 4 stage-1 entries costs a 4-level stage-2 walk plus itself, and the
/// output address costs one more stage-2 walk.
#[derive(Clone, Copy, Debug)]
pub struct Nested<'a, S1: ?Sized, S2: ?Sized> {
    /// The guest's tables (input -> GPA/IPA); their table pointers are guest-physical.
    pub s1: &'a S1,
    /// The host's tables (GPA/IPA -> HPA).
    pub s2: &'a S2,
}

/// Finds stage-1 table entries by walking stage 2 for their addresses: the fetch [`Nested`]
/// walks its stage 1 with, public for hardware models that walk the two stages themselves
/// (to tell a stage-1 fault from a stage-2 fault on the request's own IPA, or to keep the
/// stage-1 leaf).
///
/// Stage 2 sees every stage-1 table read as a privileged data read (VT-d §3.8: supervisor
/// data reads; SMMU §7.3.16: "When CLASS == TT, the access is implicitly Data", and stage 2 has
/// no privilege distinction). The stage-2 walk reads through the same [`WalkCtx`], so its
/// reads are counted and observed, and it consults and fills the context's
/// [`WalkHints`](crate::WalkHints) (stage-2 TLB and paging-structure caches) like any other
/// stage-2 walk.
///
/// A fault here carries [`Fault::s1_fetch`]: `write == false` when stage 2 could not translate
/// or refused the read of the entry, `write == true` when it refuses the write that updates
/// the entry's flags (raised by the stage-1 walk only if that update is needed).
#[derive(Debug)]
pub struct ThroughStage2<'a, S2: ?Sized, F> {
    s2: &'a S2,
    fetch: &'a F,
}

impl<'a, S2: ?Sized, F> ThroughStage2<'a, S2, F> {
    /// Stage-1 table addresses translated by `s2`, whose own tables are found by `fetch`
    /// ([`Direct`](crate::Direct) when they are in memory at the addresses they name).
    pub fn new(s2: &'a S2, fetch: &'a F) -> Self {
        Self { s2, fetch }
    }
}

impl<M, S2, F> TableFetch<M> for ThroughStage2<'_, S2, F>
where
    M: PhysMemory + ?Sized,
    S2: Walk + ?Sized,
    F: TableFetch<M>,
{
    fn locate<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        table_addr: u64,
        level: i8,
    ) -> Result<Located<M::Addr>, Fault> {
        let read = Access::READ.privileged();
        let leaf = self
            .s2
            .walk(cx, self.fetch, table_addr, read)
            .map_err(|f| Fault { s1_fetch: Some(S1Fetch { level, write: false }), ..f })?;
        // Setting the entry's flags is a write, which stage 2 may not grant.
        let write_fault = (!leaf.perms.allows(Access::WRITE.privileged())).then_some(Fault {
            stage: Stage::S2,
            level: leaf.level,
            kind: FaultKind::Permission,
            input: table_addr,
            s1_fetch: Some(S1Fetch { level, write: true }),
            granted: Some(leaf.perms),
        });
        Ok(Located { addr: M::Addr::new(leaf.output), write_fault })
    }
}

impl<S1: Walk + ?Sized, S2: Walk + ?Sized> Nested<'_, S1, S2> {
    /// Walks both stages and returns the stage-1 leaf (its output is the GPA/IPA) beside the
    /// combined translation, for callers that show both.
    pub fn walk_stages<M, F, O>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        fetch: &F,
        input: u64,
        access: Access,
    ) -> Result<(Leaf, Leaf), Fault>
    where
        M: PhysMemory + ?Sized,
        F: TableFetch<M>,
        O: WalkObserver,
    {
        let through = ThroughStage2::new(self.s2, fetch);
        let s1 = self.s1.walk(cx, &through, input, access)?;
        let s2 = self.s2.walk(cx, fetch, s1.output, access)?;
        Ok((s1, Leaf::nested(&s1, &s2)))
    }
}

impl<S1: Walk + ?Sized, S2: Walk + ?Sized> Walk for Nested<'_, S1, S2> {
    fn walk<M, F, O>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        fetch: &F,
        input: u64,
        access: Access,
    ) -> Result<Leaf, Fault>
    where
        M: PhysMemory + ?Sized,
        F: TableFetch<M>,
        O: WalkObserver,
    {
        self.walk_stages(cx, fetch, input, access).map(|(_, combined)| combined)
    }
}

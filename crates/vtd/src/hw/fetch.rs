//! §3.8 nested translation: the first stage's table pointers are guest physical addresses, so
//! every first-stage table read is itself translated by the second stage.
//!
//! pgtable's `Nested` composes two walks the same way; the model uses its own fetch because
//! VT-d names the two ways a second stage can refuse a first-stage table access apart: the read
//! of the entry (75h at the root, 76h below) and the write that sets its A/D bits (77h). The
//! walker reports both as a stage-2 permission fault during a stage-1 fetch, so this fetch
//! remembers whether the fault came from the read.

use std::cell::Cell;

use sviommu_memory::{Address, PhysMemory};
use sviommu_pgtable::vtd_ss::VtdSecondStage;
use sviommu_pgtable::{
    Access, Direct, Fault, FaultKind, Located, Stage, TableFetch, Walk, WalkCtx, WalkObserver,
};

/// Finds first-stage table entries by walking the second stage for their addresses.
#[derive(Debug)]
pub(super) struct ThroughSecondStage<'a> {
    ss: &'a VtdSecondStage,
    read_failed: Cell<bool>,
}

impl<'a> ThroughSecondStage<'a> {
    pub(super) fn new(ss: &'a VtdSecondStage) -> Self {
        Self { ss, read_failed: Cell::new(false) }
    }

    /// Whether a second-stage walk for a first-stage table read failed (rather than a later
    /// A/D write-back being refused).
    pub(super) fn read_failed(&self) -> bool {
        self.read_failed.get()
    }
}

impl<M: PhysMemory + ?Sized> TableFetch<M> for ThroughSecondStage<'_> {
    fn locate<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        table_addr: u64,
        level: i8,
    ) -> Result<Located<M::Addr>, Fault> {
        // §3.8: the hardware reads a first-stage table as a supervisor data read through the
        // second stage.
        let leaf =
            self.ss.walk(cx, &Direct, table_addr, Access::READ.privileged()).map_err(|f| {
                self.read_failed.set(true);
                Fault { s1_table_level: Some(level), ..f }
            })?;
        // Setting the entry's A/D bits is a write, which the second stage may not grant.
        let write_fault = (!leaf.perms.allows(Access::WRITE.privileged())).then_some(Fault {
            stage: Stage::S2,
            level: leaf.level,
            kind: FaultKind::Permission,
            input: table_addr,
            s1_table_level: Some(level),
        });
        Ok(Located { addr: M::Addr::new(leaf.output), write_fault })
    }
}

//! Nested translation: stage-1 table pointers are IPAs, so every stage-1 table read is itself
//! translated by stage 2 (§3.3.3, §5.4 "The translation table walks performed from TTB0 or TTB1
//! are always performed in IPA space if stage 2 translations are enabled").
//!
//! pgtable's `Nested` composes two walks the same way; the model uses its own fetch because an
//! F_PERMISSION with CLASS == TT reports whether stage 2 refused the table read or the write
//! that sets its Access flag or dirty state (TTRnW, §7.3.16). The walker reports both as a
//! stage-2 permission fault during a stage-1 fetch, so this fetch remembers which it was.

use std::cell::Cell;

use sviommu_memory::{Address, PhysMemory};
use sviommu_pgtable::vmsa::VmsaS2;
use sviommu_pgtable::{
    Access, Direct, Fault, FaultKind, Located, Stage, TableFetch, Walk, WalkCtx, WalkObserver,
};

/// Finds stage-1 table entries by walking stage 2 for their addresses.
#[derive(Debug)]
pub(super) struct ThroughStage2<'a> {
    s2: &'a VmsaS2,
    read_failed: Cell<bool>,
}

impl<'a> ThroughStage2<'a> {
    pub(super) fn new(s2: &'a VmsaS2) -> Self {
        Self { s2, read_failed: Cell::new(false) }
    }

    /// Whether stage 2 failed a stage-1 table read (rather than refusing a later write-back).
    pub(super) fn read_failed(&self) -> bool {
        self.read_failed.get()
    }
}

impl<M: PhysMemory + ?Sized> TableFetch<M> for ThroughStage2<'_> {
    fn locate<O: WalkObserver>(
        &self,
        cx: &mut WalkCtx<'_, M, O>,
        table_addr: u64,
        level: i8,
    ) -> Result<Located<M::Addr>, Fault> {
        // A stage-1 table fetch is a data read as far as stage 2 is concerned (§7.3.16: "When
        // CLASS == TT, the access is implicitly Data"); stage 2 has no privilege distinction.
        let leaf =
            self.s2.walk(cx, &Direct, table_addr, Access::READ.privileged()).map_err(|f| {
                self.read_failed.set(true);
                Fault { s1_table_level: Some(level), ..f }
            })?;
        // §3.13.5: hardware updates of a stage-1 descriptor are writes, which stage 2 must
        // permit.
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

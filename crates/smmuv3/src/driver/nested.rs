//! Per-PASID nesting: a guest's stage-1 tables at one SubstreamID of a stream, over a stage-2
//! nesting parent (what VT-d does with a PASID-table entry of PGTT = nested).
//!
//! SMMUv3 has no per-CD nesting bit: with STE.Config = 0b111 every CD fetch, and the CD
//! table pointer itself, is an IPA translated by stage 2 (§3.3.2, §5.2 S1ContextPtr, §3.4.3).
//! So the host keeps a CD table of its own for the stream and makes it reachable through the
//! parent's stage 2: its pages are mapped, read-only, at IPAs in a window the driver reserves
//! at the top of every nesting parent's IPA space, and the STE's S1ContextPtr (and every
//! L1CD.L2Ptr) is the window IPA. The CDs the driver writes there hold the guest's TTB0 (an
//! IPA) and the guest's ASID, which tags TLB entries together with the parent's VMID.
//!
//! Choices, each marked where it is made:
//! - IMPDEF: the window is the top 16MB of the parent's IPA space (a quarter of it if that is
//!   smaller), reserved for every stage-2 domain of a unit that can nest PASIDs, from the
//!   domain's creation on: a VMM lays out guest memory once, so a window appearing later
//!   could collide with it. [`SmmuDriver::map`] and [`SmmuDriver::unmap`] refuse it.
//! - One CD table per StreamID (whatever the [`super::CdTablePolicy`]): an attach to (device,
//!   PASID) reaches that device's StreamID alone, as on VT-d.
//! - STE.S1DSS = Bypass: transactions without a SubstreamID skip stage 1 and keep the
//!   parent's stage 2 (§5.2 S1DSS 0b01 "as though Config were 0b1x0"), which is what the
//!   stream's own attachment to the parent means.
//! - Window pages are mapped read-only and each table block is at least one stage-2 granule,
//!   so the device's own DMA through stage 2 can read its CDs but neither change them nor
//!   reach any other host memory.

use std::collections::BTreeMap;

use sviommu_memory::{Address, PhysMemory};
use sviommu_pgtable::vmsa::S2Attrs;
use sviommu_pgtable::Build;

use super::cd::{CdEntry, CdTable, L2_BITS};
use super::domain::{atc_inv, spec_granule, DomainKind};
use super::stream::StreamState;
use super::{CdTableOwner, DomainId, DriverError, Mmio, SmmuDriver, SvaContext};
use crate::spec::{Command, Granule, Opcode};

/// IMPDEF (driver choice): log2 of the bytes of the reserved IPA window (16MB).
const WINDOW_LG2: u8 = 24;

/// A guest's stage-1 context for one PASID of a nested stream: what its CD holds (§5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NestedCd {
    /// The guest's ASID (tagged with the parent's VMID, so it is the guest's to choose).
    pub asid: u16,
    /// TTB0: the guest's starting table, an IPA in the parent's stage 2.
    pub ttb0_ipa: u64,
    /// T0SZ.
    pub t0sz: u8,
    /// TG0.
    pub granule: Granule,
    /// IPS in bits (32, 36, 40, 42, 44, 48 or 52).
    pub ips_bits: u8,
    /// MAIR (the guest's MAIR_EL1).
    pub mair: u64,
    /// Hardware Access flag updates (needs SMMU_IDR0.HTTU).
    pub ha: bool,
    /// Hardware dirty state (needs SMMU_IDR0.HTTU == 0b10).
    pub hd: bool,
}

/// Where a nested stream's CD table is in its parent's IPA space.
#[derive(Debug)]
pub(super) struct Window {
    pub parent: DomainId,
    /// The IPA of each of the table's blocks, by the block's address.
    pub ipa: BTreeMap<u64, u64>,
}

impl<R: Mmio, M: PhysMemory> SmmuDriver<R, M> {
    /// The IPA range `(start, size)` the driver reserves in stage-2 domain `parent` for the
    /// CD tables of nested PASIDs: the caller reports it as a reserved region and maps
    /// nothing there (the driver's [`map`](Self::map) refuses it). `None` for a domain that
    /// is not stage 2, or a unit that cannot nest PASIDs (no S1P, S2P or substreams).
    pub fn reserved_ipa_window(&self, parent: DomainId) -> Option<(u64, u64)> {
        if !(self.caps.s1p && self.caps.s2p && self.ssid_bits != 0) {
            return None;
        }
        let DomainKind::S2 { pt, .. } = self.domains.get(&parent)?.kind else {
            return None;
        };
        let ias = pt.input_bits();
        let size = 1u64.checked_shl(u32::from(WINDOW_LG2.min(ias.saturating_sub(2))))?;
        let end = 1u64.checked_shl(u32::from(ias))?;
        Some((end.checked_sub(size)?, size))
    }

    /// Refuses `[iova, iova + size)` of domain `d` if it touches the reserved window.
    pub(super) fn check_outside_window(
        &self,
        d: DomainId,
        iova: u64,
        size: u64,
    ) -> Result<(), DriverError> {
        match self.reserved_ipa_window(d) {
            Some((start, len)) if iova < start + len && iova.saturating_add(size) > start => {
                Err(DriverError::ReservedWindow { domain: d, start, size: len })
            }
            _ => Ok(()),
        }
    }

    /// Attaches a guest's stage 1 at SubstreamID `ssid` of `sid`, nested over stage-2 domain
    /// `parent`, and returns the StreamIDs reached (`sid` alone: the table is the stream's).
    ///
    /// The stream must be attached to `parent` (stage 2) or already have nested PASIDs over
    /// it. The first one makes the stream's CD table, maps it into `parent`'s reserved window
    /// and switches the STE to nested without passing through abort (transactions without a
    /// SubstreamID keep `parent`'s stage 2); each writes its CD (§3.21.3: CMD_CFGI_CD and
    /// CMD_SYNC). Refused, changing nothing, without S1P, S2P or substreams; for SubstreamID 0
    /// or beyond the CD tables; a parent that is not stage 2; a stream attached otherwise, or
    /// to a guest's whole CD table ([`bind_pasid_table`](Self::bind_pasid_table)); a PASID
    /// already attached; a context the SMMU could not use; a TTB0 outside the parent's IPA
    /// space or inside its window; or an ASID another nested PASID over the same parent uses
    /// with other tables. A Command queue failure after the table was made leaves it listed
    /// in [`cd_tables`](Self::cd_tables), since the SMMU may have seen it.
    pub fn attach_nested_pasid(
        &mut self,
        sid: u32,
        ssid: u32,
        parent: DomainId,
        cd: NestedCd,
    ) -> Result<Vec<u32>, DriverError> {
        self.check_sid(sid)?;
        if !(self.caps.s1p && self.caps.s2p) {
            return Err(DriverError::Unsupported("nesting (S1P and S2P)"));
        }
        if self.ssid_bits == 0 {
            return Err(DriverError::Unsupported("substreams"));
        }
        self.check_ssid(ssid)?;
        let hw_cd = self.nested_cd(parent, &cd)?;
        let state = self.stream(sid);
        let wrong = |reason| Err(DriverError::WrongStreamConfig { sid, reason });
        let table = match state {
            StreamState::S2 { domain } if domain == parent => None,
            StreamState::NestedPasid { parent: p, table } if p == parent => Some(table),
            StreamState::S2 { .. } | StreamState::NestedPasid { .. } => {
                return wrong("it is attached to another stage-2 domain")
            }
            StreamState::Nested { .. } => return wrong("a guest CD table is bound to it"),
            _ => return wrong("it is not attached to the nesting parent"),
        };
        let entry = Some((hw_cd, CdEntry::Nested(cd)));
        if let Some(table) = table {
            if self.cd_tables.get(&table).is_some_and(|t| t.entries.contains_key(&ssid)) {
                return Err(DriverError::PasidInUse { sid, ssid });
            }
            return self.write_cd(table, ssid, entry);
        }
        let table = self.new_nested_cd_table(sid, parent)?;
        // No STE points at the table yet: the CD needs no invalidation.
        if let Err(e) = self.write_cd(table, ssid, entry) {
            let _ = self.free_nested_cd_table(table);
            return Err(e);
        }
        self.switch_stream(sid, state, StreamState::NestedPasid { parent, table })?;
        Ok(vec![sid])
    }

    /// Detaches the nested PASID at `ssid` of `sid` and returns the StreamIDs reached. Its CD
    /// is made invalid (CMD_CFGI_CD, CMD_SYNC), then the guest's ASID is invalidated under
    /// the parent's VMID (CMD_TLBI_NH_ASID) unless another nested PASID over the parent uses
    /// it, and the ATC for the PASID with ATS. The last one returns the stream to the parent's
    /// stage 2 (without passing through abort), then unmaps the CD table from the window
    /// (CMD_TLBI_S2_IPA, CMD_SYNC) and frees it.
    pub fn detach_nested_pasid(&mut self, sid: u32, ssid: u32) -> Result<Vec<u32>, DriverError> {
        self.check_sid(sid)?;
        self.check_ssid(ssid)?;
        let state = self.stream(sid);
        let StreamState::NestedPasid { parent, table } = state else {
            return Err(DriverError::PasidNotBound { sid, ssid });
        };
        let (asid, last) = match self.cd_tables.get(&table) {
            Some(t) => match t.entries.get(&ssid) {
                Some(CdEntry::Nested(n)) => (n.asid, t.entries.len() == 1),
                _ => return Err(DriverError::PasidNotBound { sid, ssid }),
            },
            None => return Err(DriverError::PasidNotBound { sid, ssid }),
        };
        self.write_cd(table, ssid, None)?;
        let mut cmds = Vec::new();
        if !self.nested_asid_users(parent, asid).any(|_| true) {
            let mut c = Command::new(Opcode::TlbiNhAsid);
            c.set_vmid(self.vmid_of(parent));
            c.set_asid(asid);
            cmds.push(c);
        }
        if self.ats.contains(&sid) {
            cmds.push(atc_inv(sid, Some(ssid), None));
        }
        if !cmds.is_empty() {
            self.submit(&cmds)?;
        }
        if last {
            self.switch_stream(sid, state, StreamState::S2 { domain: parent })?;
            self.free_nested_cd_table(table)?;
        }
        Ok(vec![sid])
    }

    /// The CD for `cd` over `parent`, or why the SMMU could not use it.
    fn nested_cd(&self, parent: DomainId, cd: &NestedCd) -> Result<crate::spec::Cd, DriverError> {
        let DomainKind::S2 { pt, .. } = self.domain(parent)?.kind else {
            return Err(DriverError::WrongStage { domain: parent, expected: "stage-2" });
        };
        // The checks of a CD are the same whoever owns its tables; TTB0 is an IPA here, and
        // IPS bounds the stage-1 output (the IPA) as it bounds a PA without stage 2.
        let hw_cd = self.sva_cd(&SvaContext {
            asid: cd.asid,
            ttb0: cd.ttb0_ipa,
            t0sz: cd.t0sz,
            granule: cd.granule,
            ips_bits: cd.ips_bits,
            mair: cd.mair,
            ha: cd.ha,
            hd: cd.hd,
        })?;
        if cd.ttb0_ipa >> pt.input_bits() != 0 {
            return Err(DriverError::OutOfRange("TTB0 (beyond the parent's IPA space)"));
        }
        if self.check_outside_window(parent, cd.ttb0_ipa, 1).is_err() {
            return Err(DriverError::OutOfRange("TTB0 (in the reserved IPA window)"));
        }
        // Guest ASIDs share the parent's VMID: one ASID naming two sets of tables would mix
        // their TLB entries.
        if self.nested_asid_users(parent, cd.asid).any(|ttb0| ttb0 != cd.ttb0_ipa) {
            return Err(DriverError::AsidInUse(cd.asid));
        }
        Ok(hw_cd)
    }

    /// The TTB0 of every nested CD over `parent` with ASID `asid`.
    fn nested_asid_users(&self, parent: DomainId, asid: u16) -> impl Iterator<Item = u64> + '_ {
        self.cd_tables
            .values()
            .filter(move |t| t.window.as_ref().is_some_and(|w| w.parent == parent))
            .flat_map(|t| t.entries.values())
            .filter_map(move |e| match e {
                CdEntry::Nested(n) if n.asid == asid => Some(n.ttb0_ipa),
                _ => None,
            })
    }

    /// A new, empty CD table for nested stream `sid`, mapped into `parent`'s window. Its
    /// blocks are at least a stage-2 granule, so the mapping exposes nothing else.
    fn new_nested_cd_table(&mut self, sid: u32, parent: DomainId) -> Result<u64, DriverError> {
        let granule_lg2 = self.parent_granule_lg2(parent)?;
        let (cdmax, fmt, base_lg2) = self.cd_table_geometry();
        let base_lg2 = base_lg2.max(granule_lg2);
        let base = self.frames.alloc(&self.mem, base_lg2)?.raw();
        let ipa = match self.window_map(parent, base, base_lg2) {
            Ok(ipa) => ipa,
            Err(e) => {
                let _ = self.frames.free(M::Addr::new(base), base_lg2);
                return Err(e);
            }
        };
        self.cd_tables.insert(
            base,
            CdTable {
                owner: CdTableOwner::Nested { sid, parent },
                base,
                cdmax,
                fmt,
                base_lg2,
                l2: BTreeMap::new(),
                l2_lg2: (L2_BITS + 6).max(granule_lg2),
                window: Some(Window { parent, ipa: BTreeMap::from([(base, ipa)]) }),
                entries: BTreeMap::new(),
                sids: std::collections::BTreeSet::new(),
            },
        );
        Ok(base)
    }

    /// Unmaps a nested CD table no STE points at from its window, invalidates the window's
    /// stage-2 TLB entries and frees it. If the invalidation fails the table stays listed
    /// (in [`cd_tables`](Self::cd_tables) and [`blocks`](Self::blocks)), its frames kept,
    /// since the SMMU may still read them.
    fn free_nested_cd_table(&mut self, table: u64) -> Result<(), DriverError> {
        let Some(t) = self.cd_tables.get(&table) else {
            return Ok(());
        };
        let Some(w) = t.window.as_ref() else {
            return Ok(());
        };
        let parent = w.parent;
        let blocks: Vec<(u64, u8)> = t
            .blocks()
            .iter()
            .filter_map(|b| w.ipa.get(&b.addr).map(|&ipa| (ipa, b.size_lg2)))
            .collect();
        self.window_unmap(parent, &blocks)?;
        if let Some(t) = self.cd_tables.remove(&table) {
            for b in t.blocks() {
                // The blocks came from this allocator with these sizes.
                let _ = self.frames.free(M::Addr::new(b.addr), b.size_lg2);
            }
        }
        Ok(())
    }

    /// log2 of the bytes of `parent`'s stage-2 granule.
    fn parent_granule_lg2(&self, parent: DomainId) -> Result<u8, DriverError> {
        match self.domain(parent)?.kind {
            DomainKind::S2 { pt, .. } => Ok(spec_granule(pt.tg).lg2()),
            DomainKind::S1 { .. } => {
                Err(DriverError::WrongStage { domain: parent, expected: "stage-2" })
            }
        }
    }

    /// Maps the `2^size_lg2`-byte block at `addr` read-only into a free, naturally aligned
    /// slot of `parent`'s window, and returns the slot's IPA. Changes nothing if refused.
    pub(super) fn window_map(
        &mut self,
        parent: DomainId,
        addr: u64,
        size_lg2: u8,
    ) -> Result<u64, DriverError> {
        let exhausted = DriverError::IdsExhausted("room in the reserved IPA window");
        let (start, len) = self.reserved_ipa_window(parent).ok_or(exhausted.clone())?;
        let DomainKind::S2 { pt, .. } = self.domain(parent)?.kind else {
            return Err(DriverError::WrongStage { domain: parent, expected: "stage-2" });
        };
        let g = spec_granule(pt.tg).lg2();
        let size = 1u64.checked_shl(u32::from(size_lg2)).ok_or(exhausted.clone())?;
        let used: Vec<(u64, u64)> = self
            .cd_tables
            .values()
            .filter_map(|t| t.window.as_ref().filter(|w| w.parent == parent).map(|w| (t, w)))
            .flat_map(|(t, w)| {
                t.blocks()
                    .into_iter()
                    .filter_map(|b| w.ipa.get(&b.addr).map(|&ipa| (ipa, ipa + (1 << b.size_lg2))))
                    .collect::<Vec<_>>()
            })
            .collect();
        let slot = (0..len / size)
            .map(|i| start + i * size)
            .find(|&at| used.iter().all(|&(lo, hi)| at + size <= lo || at >= hi))
            .ok_or(exhausted)?;
        if size_lg2 < g {
            return Err(DriverError::BadConfig("a window block smaller than a granule"));
        }
        let mut off = 0;
        while off < size {
            let r =
                pt.map(&self.mem, &mut self.frames, slot + off, addr + off, g, S2Attrs::READ_ONLY);
            if let Err(e) = r {
                if off > 0 {
                    let _ = pt.unmap(&self.mem, slot, off);
                }
                return Err(e.into());
            }
            off += 1 << g;
        }
        Ok(slot)
    }

    /// Unmaps `(ipa, size_lg2)` blocks from `parent`'s window and invalidates what stage 2
    /// cached of them (CMD_TLBI_S2_IPA with Leaf == 0, or the VMID's whole TLB), then
    /// CMD_SYNC.
    pub(super) fn window_unmap(
        &mut self,
        parent: DomainId,
        blocks: &[(u64, u8)],
    ) -> Result<(), DriverError> {
        let DomainKind::S2 { pt, vmid } = self.domain(parent)?.kind else {
            return Err(DriverError::WrongStage { domain: parent, expected: "stage-2" });
        };
        let g = spec_granule(pt.tg);
        let mut cmds = Some(Vec::new());
        for &(ipa, lg2) in blocks {
            let size = 1u64 << lg2;
            pt.unmap(&self.mem, ipa, size)?;
            let range = self.range_cmds(Opcode::TlbiS2Ipa, g, (ipa, size));
            cmds = cmds.zip(range).map(|(mut all, v)| {
                all.extend(v);
                all
            });
        }
        let mut cmds = cmds.unwrap_or_else(|| vec![Command::new(Opcode::TlbiS12Vmall)]);
        cmds.iter_mut().for_each(|c| c.set_vmid(vmid));
        self.submit(&cmds)
    }
}

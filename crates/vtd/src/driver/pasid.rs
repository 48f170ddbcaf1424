//! Attach and detach: what a requester (and, in scalable mode, one of its PASIDs) is translated
//! with. Legacy mode writes the context entry (§9.3); scalable mode the PASID-table entry
//! (§9.6) under the device's PASID directory (§9.5), which the driver allocates on demand.
//!
//! §6.5.3.3, §9.6: a present entry is never changed in place. It is cleared (present bit
//! first), the caches that may hold it are invalidated (context or PASID cache, IOTLB, the
//! device-TLB with ATS), and only then is the new entry written, present bit last. Under
//! caching mode (CAP.CM) an entry that becomes present is invalidated too, as not-present
//! entries may be cached.

use sviommu_memory::bits::low_mask;
use sviommu_memory::{Address, PhysMemory};

use super::context::Device;
use super::domain::Tables;
use super::queue::{context_device, dev_tlb, iotlb, pasid_cache, piotlb};
use super::{offset, Did, DriverError, Feature, Mmio, Mode, VtdDriver, RID_PASID};
use crate::spec::pasid::{self, PasidDirEntry, PasidEntry};
use crate::spec::root::{ContextEntry, TranslationType};
use crate::spec::{Fspm, Pgtt};

/// What `(requester, PASID)` is translated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PasidConfig {
    /// Nothing: requests fault (the entry is not present).
    Blocked,
    /// Untranslated: the input address is the output (ECAP.PT).
    PassThrough,
    /// The second-stage tables of a driver-owned domain.
    SecondStage {
        /// A [`DomainConfig::SecondStage`](super::DomainConfig::SecondStage) domain.
        did: Did,
    },
    /// The first-stage tables of a driver-owned domain (scalable mode).
    FirstStage {
        /// A [`DomainConfig::FirstStage`](super::DomainConfig::FirstStage) domain.
        did: Did,
    },
    /// First-stage tables the driver does not own, such as a process's CPU page table (SVA).
    FirstStageExternal {
        /// A [`DomainConfig::External`](super::DomainConfig::External) domain: the DID its
        /// translations are tagged with.
        did: Did,
        /// The table's root (FSPTPTR), a host address.
        fs_root: u64,
        /// 4- or 5-level paging (FSPM).
        levels: Fspm,
        /// Supervisor requests allowed (SRE; needs ECAP.SRS).
        sre: bool,
    },
    /// A guest's first-stage table over a second-stage parent (PGTT nested, ECAP.NEST).
    Nested {
        /// The second-stage domain that translates the guest's physical addresses.
        parent: Did,
        /// The DID the nested translations are tagged with (an
        /// [`External`](super::DomainConfig::External) domain), or `None` for the parent's.
        s1_did: Option<Did>,
        /// The guest's table root (FSPTPTR), a guest physical address.
        fs_root_gpa: u64,
        /// 4- or 5-level paging (FSPM).
        levels: Fspm,
        /// Supervisor requests allowed (SRE).
        sre: bool,
    },
}

/// One attachment as the driver wrote it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Attached {
    pub(super) config: PasidConfig,
    /// The DID the entry carries.
    pub(super) did: u16,
    /// The first stage is walked (first-stage only or nested): PASID-based invalidations reach
    /// its translations.
    pub(super) first_stage: bool,
}

impl PasidConfig {
    /// The domains an attachment keeps alive.
    pub(super) fn domains(&self) -> [Option<Did>; 2] {
        match *self {
            PasidConfig::Blocked | PasidConfig::PassThrough => [None, None],
            PasidConfig::SecondStage { did }
            | PasidConfig::FirstStage { did }
            | PasidConfig::FirstStageExternal { did, .. } => [Some(did), None],
            PasidConfig::Nested { parent, s1_did, .. } => [Some(parent), s1_did],
        }
    }
}

/// What an attach writes.
enum NewEntry {
    Legacy(ContextEntry),
    Scalable(PasidEntry),
}

/// A first-stage table root is a 4 KiB-aligned address the x86 format can hold (bits 51:12).
fn fs_root_ok(addr: u64, below_bits: u8) -> Result<(), DriverError> {
    let limit = below_bits.min(52);
    if addr & low_mask(12) != 0 || addr >> limit != 0 {
        return Err(DriverError::BadTableAddress { addr });
    }
    Ok(())
}

impl<R: Mmio, M: PhysMemory> VtdDriver<R, M> {
    /// Attaches `(rid, pasid)` to `config`. `pasid: None` means requests without PASID: the
    /// context entry in legacy mode, the RID_PASID entry in scalable mode. Structures that are
    /// missing (context table, PASID directory, PASID table) are allocated; an attachment that
    /// exists is replaced with the §6.5.3.3 sequence. [`PasidConfig::Blocked`] detaches.
    ///
    /// Refused, changing nothing, if the unit or the mode lacks what `config` needs (PASIDs,
    /// nesting, pass-through, first stage, 5-level paging, supervisor requests), the PASID is
    /// beyond ECAP.PSS or the driver's directories or is RID_PASID, a domain is missing or of
    /// the wrong kind, or a table root is not usable.
    pub fn attach(
        &mut self,
        rid: u16,
        pasid: Option<u32>,
        config: PasidConfig,
    ) -> Result<(), DriverError> {
        if config == PasidConfig::Blocked {
            self.check_pasid(pasid)?;
            return self.detach(rid, pasid).map(|_| ());
        }
        let (entry, did, first_stage) = self.encode(pasid, &config)?;
        let attached = Attached { config, did, first_stage };
        match entry {
            NewEntry::Legacy(ce) => self.attach_legacy(rid, ce)?,
            NewEntry::Scalable(pe) => self.attach_scalable(rid, pasid.unwrap_or(RID_PASID), pe)?,
        }
        self.forget(rid, pasid);
        for d in config.domains().into_iter().flatten() {
            if let Some(dom) = self.domains.get_mut(&d.0) {
                dom.refs += 1;
            }
        }
        self.attached.insert((rid, pasid), attached);
        Ok(())
    }

    /// Detaches `(rid, pasid)`: its entry is cleared and every cache that may hold it
    /// invalidated. Returns whether something was attached.
    pub fn detach(&mut self, rid: u16, pasid: Option<u32>) -> Result<bool, DriverError> {
        let Some(old) = self.attached.get(&(rid, pasid)).copied() else {
            return Ok(false);
        };
        let at = self.entry_addr(rid, pasid)?;
        self.tear_down(rid, pasid, at, &old)?;
        self.forget(rid, pasid);
        Ok(true)
    }

    /// Drops the record of `(rid, pasid)`'s attachment and its domain references.
    fn forget(&mut self, rid: u16, pasid: Option<u32>) {
        if let Some(old) = self.attached.remove(&(rid, pasid)) {
            for d in old.config.domains().into_iter().flatten() {
                if let Some(dom) = self.domains.get_mut(&d.0) {
                    dom.refs = dom.refs.saturating_sub(1);
                }
            }
        }
    }

    /// Where `(rid, pasid)`'s PASID-table entry is (scalable mode; `None` for RID_PASID), if
    /// its PASID table exists.
    pub fn pasid_entry_addr(&self, rid: u16, pasid: Option<u32>) -> Option<M::Addr> {
        let p = pasid.unwrap_or(RID_PASID);
        let table = *self.contexts.devices.get(&rid)?.pasid_tables.get(&pasid::dir_index(p))?;
        offset(table, u64::from(pasid::table_index(p)) * PasidEntry::BYTES).ok()
    }

    /// The entry of `(rid, pasid)`: the context entry in legacy mode, the PASID-table entry in
    /// scalable mode.
    fn entry_addr(&self, rid: u16, pasid: Option<u32>) -> Result<M::Addr, DriverError> {
        let at = match self.mode {
            Mode::Legacy => self.context_entry_addr(rid),
            Mode::Scalable => self.pasid_entry_addr(rid, pasid),
        };
        // An attachment is recorded only once its entry exists.
        at.ok_or_else(missing)
    }

    /// PASID bits the driver's directories cover.
    fn pasid_bits(&self) -> u8 {
        self.caps.pasid_bits.min(self.config.pasid_bits).min(pasid::PASID_BITS)
    }

    fn check_pasid(&self, pasid: Option<u32>) -> Result<(), DriverError> {
        let Some(p) = pasid else { return Ok(()) };
        if self.mode == Mode::Legacy {
            return Err(DriverError::NeedsScalableMode("a request with PASID"));
        }
        if !self.caps.pasid {
            return Err(DriverError::Unsupported(Feature::Pasid));
        }
        let bits = self.pasid_bits();
        if u64::from(p) >> bits != 0 {
            return Err(DriverError::PasidOutOfRange { pasid: p, bits });
        }
        if p == RID_PASID {
            return Err(DriverError::PasidReserved(p));
        }
        Ok(())
    }

    /// The entry `config` needs, its DID and whether the first stage is walked; or why not.
    fn encode(
        &self,
        pasid: Option<u32>,
        config: &PasidConfig,
    ) -> Result<(NewEntry, u16, bool), DriverError> {
        self.check_pasid(pasid)?;
        match self.mode {
            Mode::Legacy => {
                self.encode_legacy(config).map(|(ce, did)| (NewEntry::Legacy(ce), did, false))
            }
            Mode::Scalable => {
                self.encode_scalable(config).map(|(pe, did, fs)| (NewEntry::Scalable(pe), did, fs))
            }
        }
    }

    fn encode_legacy(&self, config: &PasidConfig) -> Result<(ContextEntry, u16), DriverError> {
        let mut ce = ContextEntry::default();
        let did = match *config {
            PasidConfig::PassThrough => {
                if !self.caps.pass_through {
                    return Err(DriverError::Unsupported(Feature::PassThrough));
                }
                ce.set_tt(TranslationType::PassThrough);
                self.passthrough_did
            }
            PasidConfig::SecondStage { did } => {
                let (root, aw) = self.second_stage_of(did)?;
                ce.set_tt(TranslationType::UntranslatedOnly);
                ce.set_ssptptr(root);
                ce.set_aw(aw);
                did.0
            }
            PasidConfig::Blocked => return Err(DriverError::NeedsScalableMode("blocked")),
            PasidConfig::FirstStage { .. } | PasidConfig::FirstStageExternal { .. } => {
                return Err(DriverError::NeedsScalableMode("first-stage translation"))
            }
            PasidConfig::Nested { .. } => {
                return Err(DriverError::NeedsScalableMode("nested translation"))
            }
        };
        ce.set_did(did);
        ce.set_p(true);
        Ok((ce, did))
    }

    /// The table root and AW of a second-stage domain.
    fn second_stage_of(&self, did: Did) -> Result<(u64, crate::spec::Aw), DriverError> {
        match &self.domains.get(&did.0).ok_or(DriverError::NoSuchDomain(did))?.tables {
            Tables::Ss { tables, aw } => Ok((tables.root, *aw)),
            _ => Err(DriverError::WrongDomainKind { did, wanted: "second-stage" }),
        }
    }

    /// An external domain's DID.
    fn external(&self, did: Did) -> Result<u16, DriverError> {
        match &self.domains.get(&did.0).ok_or(DriverError::NoSuchDomain(did))?.tables {
            Tables::External => Ok(did.0),
            _ => Err(DriverError::WrongDomainKind { did, wanted: "external" }),
        }
    }

    /// FSPM `levels` if the unit has it.
    fn fspm_ok(&self, levels: Fspm) -> Result<(), DriverError> {
        if levels == Fspm::FiveLevel && !self.caps.fs_5level {
            return Err(DriverError::Unsupported(Feature::FiveLevelFirstStage));
        }
        Ok(())
    }

    fn sre_ok(&self, sre: bool) -> Result<(), DriverError> {
        if sre && !self.caps.supervisor_requests {
            return Err(DriverError::Unsupported(Feature::SupervisorRequests));
        }
        Ok(())
    }

    fn encode_scalable(
        &self,
        config: &PasidConfig,
    ) -> Result<(PasidEntry, u16, bool), DriverError> {
        let need = |has: bool, f| if has { Ok(()) } else { Err(DriverError::Unsupported(f)) };
        let mut pe = PasidEntry::default();
        // §9.6: the first stage is x86 paging with NXE and WP as a 64-bit OS runs it, which is
        // what the driver's x86 tables are built for.
        let first_stage = |pe: &mut PasidEntry, root: u64, levels: Fspm, sre: bool| {
            pe.set_pgtt(Pgtt::FirstStage);
            pe.set_fsptptr(root);
            pe.set_fspm(levels);
            pe.set_nxe(true);
            pe.set_wpe(true);
            pe.set_sre(sre);
        };
        let (did, fs) = match *config {
            PasidConfig::Blocked => return Err(DriverError::NeedsScalableMode("blocked")),
            PasidConfig::PassThrough => {
                need(self.caps.pass_through, Feature::PassThrough)?;
                pe.set_pgtt(Pgtt::PassThrough);
                (self.passthrough_did, false)
            }
            PasidConfig::SecondStage { did } => {
                need(self.caps.second_stage, Feature::SecondStage)?;
                let (root, aw) = self.second_stage_of(did)?;
                pe.set_pgtt(Pgtt::SecondStage);
                pe.set_ssptptr(root);
                pe.set_aw(aw);
                (did.0, false)
            }
            PasidConfig::FirstStage { did } => {
                need(self.caps.first_stage, Feature::FirstStage)?;
                let tables =
                    match &self.domains.get(&did.0).ok_or(DriverError::NoSuchDomain(did))?.tables {
                        Tables::Fs { tables, levels } => (tables.root, *levels),
                        _ => {
                            return Err(DriverError::WrongDomainKind { did, wanted: "first-stage" })
                        }
                    };
                first_stage(&mut pe, tables.0, tables.1, false);
                (did.0, true)
            }
            PasidConfig::FirstStageExternal { did, fs_root, levels, sre } => {
                need(self.caps.first_stage, Feature::FirstStage)?;
                self.fspm_ok(levels)?;
                self.sre_ok(sre)?;
                fs_root_ok(fs_root, self.config.haw)?;
                first_stage(&mut pe, fs_root, levels, sre);
                (self.external(did)?, true)
            }
            PasidConfig::Nested { parent, s1_did, fs_root_gpa, levels, sre } => {
                need(
                    self.caps.nesting && self.caps.first_stage && self.caps.second_stage,
                    Feature::Nesting,
                )?;
                self.fspm_ok(levels)?;
                self.sre_ok(sre)?;
                // The guest's root is a guest physical address: only the format bounds it.
                fs_root_ok(fs_root_gpa, 52)?;
                let (root, aw) = self.second_stage_of(parent)?;
                let did = match s1_did {
                    Some(d) => self.external(d)?,
                    None => parent.0,
                };
                first_stage(&mut pe, fs_root_gpa, levels, sre);
                pe.set_pgtt(Pgtt::Nested);
                pe.set_ssptptr(root);
                pe.set_aw(aw);
                (did, true)
            }
        };
        pe.set_did(did);
        pe.set_p(true);
        Ok((pe, did, fs))
    }

    // -----------------------------------------------------------------------------------------
    // Writing
    // -----------------------------------------------------------------------------------------

    fn attach_legacy(&mut self, rid: u16, ce: ContextEntry) -> Result<(), DriverError> {
        let [ctx_table] = self.alloc_all([self.context_table_missing(rid).then_some(12)])?;
        let at = self.context_entry_in(ctx_table, rid)?;
        if let Some(old) = self.attached.get(&(rid, None)).copied() {
            self.tear_down(rid, None, at, &old)?;
        }
        self.write_present(at, &ce.words())?;
        if let Some(t) = ctx_table {
            self.link_context_table(rid, t)?;
        }
        self.contexts.devices.entry(rid).or_insert_with(Device::new).context_present = true;
        if self.caps.caching_mode {
            // §6.1: a not-present entry may be cached, tagged DID 0.
            let descs = [context_device(0, rid), iotlb(ce.did(), None, false, None)];
            self.submit(&descs)?;
        }
        Ok(())
    }

    fn attach_scalable(&mut self, rid: u16, p: u32, pe: PasidEntry) -> Result<(), DriverError> {
        let dir_index = pasid::dir_index(p);
        let dev = self.contexts.devices.get(&rid);
        let old_dir = dev.and_then(|d| d.pasid_dir);
        let old_table = dev.and_then(|d| d.pasid_tables.get(&dir_index).copied());
        // §9.4: 2^(PDTS + 7) directory entries of 8 bytes, each covering 64 PASIDs.
        let dir_entries_lg2 = self.pasid_bits().saturating_sub(6).max(7);
        let dir_lg2 = (dir_entries_lg2 + 3).max(12);
        // Everything missing is allocated first: a failure frees what it took and writes nothing.
        let [ctx_table, new_dir, new_table] = self.alloc_all([
            self.context_table_missing(rid).then_some(12),
            old_dir.is_none().then_some(dir_lg2),
            old_table.is_none().then_some(12),
        ])?;
        let (dir, pdts) = match (new_dir, old_dir) {
            (Some(d), _) => (d, dir_entries_lg2 - 7),
            (None, Some(old)) => old,
            (None, None) => return Err(missing()),
        };
        let table = new_table.or(old_table).ok_or_else(missing)?;
        let at = offset(table, u64::from(pasid::table_index(p)) * PasidEntry::BYTES)?;
        let key = (p != RID_PASID).then_some(p);
        if let Some(old) = self.attached.get(&(rid, key)).copied() {
            self.tear_down(rid, key, at, &old)?;
        }
        // Bottom up, each present bit last: the PASID-table entry, the directory entry, the
        // context entry, the root entry.
        self.write_present(at, &pe.words())?;
        if new_table.is_some() {
            let mut de = PasidDirEntry::default();
            de.set_smptblptr(table.raw());
            de.set_p(true);
            self.write_present(
                offset(dir, u64::from(dir_index) * PasidDirEntry::BYTES)?,
                &de.words(),
            )?;
        }
        let features = self.features(rid);
        let dev = self.contexts.devices.entry(rid).or_insert_with(Device::new);
        dev.pasid_tables.insert(dir_index, table);
        let new_context = new_dir.is_some();
        if new_context {
            dev.pasid_dir = Some((dir, pdts));
            dev.context_present = true;
            let ce = self.scalable_context(dir, pdts, features);
            let ce_at = self.context_entry_in(ctx_table, rid)?;
            self.write_present(ce_at, &ce.words())?;
        }
        if let Some(t) = ctx_table {
            self.link_context_table(rid, t)?;
        }
        if self.caps.caching_mode {
            let did = pe.did();
            let mut descs = Vec::new();
            if new_context {
                // §6.1: not-present context entries are cached as DID 0.
                descs.push(context_device(0, rid));
            }
            descs.push(pasid_cache(did, Some(p)));
            descs.push(if pe.pgtt().is_ok_and(Pgtt::uses_first_stage) {
                piotlb(did, p, None, false, 0)
            } else {
                iotlb(did, None, false, None)
            });
            self.submit(&descs)?;
        }
        Ok(())
    }

    /// Allocates a block of `2^lg2` bytes for each `Some(lg2)`, all or none.
    fn alloc_all<const N: usize>(
        &mut self,
        wants: [Option<u8>; N],
    ) -> Result<[Option<M::Addr>; N], DriverError> {
        let mut got = [None; N];
        for (slot, want) in got.iter_mut().zip(wants) {
            let Some(lg2) = want else { continue };
            match self.frames.alloc(&self.mem, lg2) {
                Ok(a) => *slot = Some(a),
                Err(e) => {
                    for (a, lg2) in got.iter().zip(wants).filter_map(|(a, l)| Some(((*a)?, l?))) {
                        let _ = self.frames.free(a, lg2);
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(got)
    }

    /// Clears `old`'s entry at `at` and invalidates whatever the unit may hold of it.
    fn tear_down(
        &mut self,
        rid: u16,
        pasid: Option<u32>,
        at: M::Addr,
        old: &Attached,
    ) -> Result<(), DriverError> {
        let ats = self.features(rid).ats;
        let mut descs = Vec::new();
        match self.mode {
            Mode::Legacy => {
                self.clear_entry(at, ContextEntry::WORDS)?;
                descs.push(context_device(old.did, rid));
                descs.push(iotlb(old.did, None, false, None));
            }
            Mode::Scalable => {
                self.clear_entry(at, PasidEntry::WORDS)?;
                let p = pasid.unwrap_or(RID_PASID);
                descs.push(pasid_cache(old.did, Some(p)));
                descs.push(if old.first_stage {
                    piotlb(old.did, p, None, false, 0)
                } else {
                    iotlb(old.did, None, false, None)
                });
            }
        }
        if ats {
            descs.push(dev_tlb(rid, pasid, None));
        }
        self.submit(&descs)
    }
}

/// An attachment's structure that the driver's records say exists, and does not: a driver bug,
/// reported rather than panicked on.
fn missing() -> DriverError {
    DriverError::Memory(sviommu_memory::MemoryError::Outside { addr: 0, len: 0 })
}

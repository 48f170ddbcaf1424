//! The Stream table (§3.3.1, §5.1, §5.2): linear or two-level, what each StreamID is attached
//! to, the STE the driver writes for it, and the STE update sequence (§3.21.3).
//!
//! Every STE the driver makes starts as V = 1, Config = abort: a StreamID nobody attached
//! terminates without an event (§5.2 Config 0b000), rather than raising C_BAD_STE (V = 0) for
//! every transaction of a device the OS does not manage. In a two-level table a StreamID whose
//! level-2 array was never needed has no STE: the SMMU answers C_BAD_STREAMID (§7.3.3), the
//! architected answer for a StreamID software did not provide for, recorded because the
//! driver sets SMMU_CR2.RECINVSID.

use std::collections::{BTreeMap, BTreeSet};

use sviommu_memory::{Address, FrameAllocator, PhysMemory};

use super::domain::DomainKind;
use super::{attrs, write_words, Block, Capabilities, DomainId, DriverError, Mmio, SmmuDriver};
use super::{CdTablePolicy, StreamTableFormat};
use crate::spec::regs::{strtab_base, strtab_base_cfg, StrtabFmt};
use crate::spec::ste::{L1STD_BYTES, STE_BYTES};
use crate::spec::{Command, Eats, L1Std, Opcode, S1Dss, S1Fmt, Ste, StreamConfig};

/// §6.3.25: StreamID bits a level-2 array covers (SPLIT 8: 256 STEs, 16KB).
const SPLIT: u8 = 8;

/// Where the STEs are.
#[derive(Debug)]
pub(super) enum StreamTable {
    /// 2^log2size STEs at `base`.
    Linear { base: u64, log2size: u8 },
    /// 2^(log2size - SPLIT) L1STDs at `base`; level-2 arrays by level-1 index, made on
    /// first use; `unused`: the level-1 indexes of arrays no StreamID in them was ever
    /// attached to anything but abort since they were made (an undone first attach gives
    /// those back, [`SmmuDriver::release_stream`]).
    TwoLevel { base: u64, log2size: u8, l2: BTreeMap<u64, u64>, unused: BTreeSet<u64> },
}

impl StreamTable {
    pub fn alloc<M: PhysMemory>(
        mem: &M,
        frames: &mut FrameAllocator<M::Addr>,
        caps: &Capabilities,
        format: StreamTableFormat,
    ) -> Result<Self, DriverError> {
        let log2size = caps.sidsize;
        let two_level = match format {
            StreamTableFormat::Auto => caps.two_level_st && log2size > SPLIT,
            StreamTableFormat::Linear => false,
            StreamTableFormat::TwoLevel if caps.two_level_st => true,
            StreamTableFormat::TwoLevel => {
                return Err(DriverError::Unsupported("two-level Stream tables"))
            }
        };
        if two_level {
            let l1_lg2 = log2size.saturating_sub(SPLIT) + 3;
            let base = frames.alloc(mem, l1_lg2.max(12))?.raw();
            Ok(Self::TwoLevel { base, log2size, l2: BTreeMap::new(), unused: BTreeSet::new() })
        } else {
            let base = frames.alloc(mem, (log2size + 6).max(12))?.raw();
            let table = Self::Linear { base, log2size };
            // Every STE aborts until something is attached.
            let abort = abort_ste().words();
            for sid in 0..1u64 << log2size {
                if let Err(e) = write_words(mem, base + sid * STE_BYTES, &abort) {
                    let _ = frames.free(M::Addr::new(base), (log2size + 6).max(12));
                    return Err(e.into());
                }
            }
            Ok(table)
        }
    }

    pub fn blocks(&self) -> Vec<Block> {
        match self {
            Self::Linear { base, log2size } => {
                vec![Block { addr: *base, size_lg2: (log2size + 6).max(12) }]
            }
            Self::TwoLevel { base, log2size, l2, .. } => {
                let l1 = log2size.saturating_sub(SPLIT) + 3;
                let mut out = vec![Block { addr: *base, size_lg2: l1.max(12) }];
                out.extend(l2.values().map(|&addr| Block { addr, size_lg2: SPLIT + 6 }));
                out
            }
        }
    }

    /// SMMU_STRTAB_BASE and SMMU_STRTAB_BASE_CFG.
    pub fn registers(&self) -> (u64, u64) {
        let (base, cfg) = match self {
            Self::Linear { base, log2size } => {
                (*base, strtab_base_cfg::LOG2SIZE.set(0, u64::from(*log2size)))
            }
            Self::TwoLevel { base, log2size, .. } => {
                let mut cfg = strtab_base_cfg::LOG2SIZE.set(0, u64::from(*log2size));
                cfg = strtab_base_cfg::SPLIT.set(cfg, u64::from(SPLIT));
                (*base, strtab_base_cfg::FMT.set(cfg, StrtabFmt::TwoLevel as u64))
            }
        };
        let b = strtab_base::ADDR.set(0, base >> strtab_base::ADDR.lo);
        (strtab_base::RA.with(b, true), cfg)
    }

    /// The STE's address, if it exists.
    fn ste_addr(&self, sid: u32) -> Option<u64> {
        let sid = u64::from(sid);
        match self {
            Self::Linear { base, .. } => Some(base + sid * STE_BYTES),
            Self::TwoLevel { l2, .. } => {
                let mask = (1u64 << SPLIT) - 1;
                l2.get(&(sid >> SPLIT)).map(|b| b + (sid & mask) * STE_BYTES)
            }
        }
    }
}

/// An STE that aborts every transaction without recording anything.
fn abort_ste() -> Ste {
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Abort);
    ste
}

/// What a StreamID is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attach {
    /// Config abort: every transaction terminates.
    Abort,
    /// Config bypass: addresses pass untranslated.
    Bypass,
    /// A stage-1 domain (through a CD table, as the policy says) or a stage-2 domain.
    Domain(DomainId),
}

/// A guest's CD table for a nested stream (§5.2 S1ContextPtr, S1CDMax, S1Fmt, S1DSS): what the
/// guest wrote into its own STE, which the host copies into the real one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestCdTable {
    /// The CD table's address: an IPA, which the SMMU translates through stage 2.
    pub s1_context_ptr_ipa: u64,
    /// log2 of the number of CDs (0: one CD, no substreams).
    pub s1cdmax: u8,
    /// Linear or two-level.
    pub s1fmt: S1Fmt,
    /// What transactions without a SubstreamID do.
    pub s1dss: S1Dss,
}

/// The driver's record of one StreamID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StreamState {
    Abort,
    Bypass,
    S2 {
        domain: DomainId,
    },
    /// Stage 1 through the CD table at `table`; `domain` is the CD 0 domain, or none when only
    /// PASIDs are bound (then `dss` is Terminate or Bypass).
    S1 {
        domain: Option<DomainId>,
        table: u64,
        dss: S1Dss,
    },
    Nested {
        parent: DomainId,
        guest: GuestCdTable,
    },
    /// Nested over `parent`, through the host's CD table at `table` (mapped in the parent's
    /// reserved window), whose CDs hold guests' stage-1 tables; S1DSS = Bypass, so
    /// transactions without a SubstreamID get `parent`'s stage 2 alone.
    NestedPasid {
        parent: DomainId,
        table: u64,
    },
}

impl StreamState {
    /// The domain this stream's STE names (its CD 0 domain, its stage 2 or nesting parent).
    pub fn domain(&self) -> Option<DomainId> {
        match *self {
            Self::Abort | Self::Bypass => None,
            Self::S2 { domain } => Some(domain),
            Self::S1 { domain, .. } => domain,
            Self::Nested { parent, .. } | Self::NestedPasid { parent, .. } => Some(parent),
        }
    }

    /// Whether the STE enables both stages (a TLB entry of the stream may be tagged by a VA
    /// that stage 2 flushes cannot name).
    pub fn nested(&self) -> bool {
        matches!(self, Self::Nested { .. } | Self::NestedPasid { .. })
    }

    pub fn cd_table(&self) -> Option<u64> {
        match *self {
            Self::S1 { table, .. } | Self::NestedPasid { table, .. } => Some(table),
            _ => None,
        }
    }
}

impl<R: Mmio, M: PhysMemory> SmmuDriver<R, M> {
    pub(super) fn check_sid(&self, sid: u32) -> Result<(), DriverError> {
        if u64::from(sid) >> self.caps.sidsize != 0 {
            return Err(DriverError::SidOutOfRange { sid, sidsize: self.caps.sidsize });
        }
        Ok(())
    }

    pub(super) fn stream(&self, sid: u32) -> StreamState {
        self.streams.get(&sid).copied().unwrap_or(StreamState::Abort)
    }

    /// The STE for `state`.
    fn build_ste(&self, sid: u32, state: &StreamState) -> Ste {
        let mut ste = abort_ste();
        let eats = if self.ats.contains(&sid) { Eats::Full } else { Eats::Abort };
        match *state {
            StreamState::Abort => {}
            StreamState::Bypass => ste.set_config(StreamConfig::Bypass),
            StreamState::S2 { domain } => {
                ste.set_config(StreamConfig::Stage2);
                self.set_s2_fields(&mut ste, domain);
                ste.set_eats(eats);
            }
            StreamState::S1 { table, dss, .. } => {
                ste.set_config(StreamConfig::Stage1);
                if let Some(t) = self.cd_tables.get(&table) {
                    ste.set_s1contextptr(t.base);
                    ste.set_s1cdmax(t.cdmax);
                    ste.set_s1fmt(t.fmt);
                }
                ste.set_s1dss(dss);
                set_s1_walk_attrs(&mut ste);
                // Stage-1-only streams are tagged with VMID 0 (the TLBIs of stage-1 domains
                // say VMID 0; stage-2 domains never get it).
                ste.set_s2vmid(0);
                ste.set_eats(eats);
            }
            StreamState::Nested { parent, guest } => {
                ste.set_config(StreamConfig::Nested);
                ste.set_s1contextptr(guest.s1_context_ptr_ipa);
                ste.set_s1cdmax(guest.s1cdmax);
                ste.set_s1fmt(guest.s1fmt);
                ste.set_s1dss(guest.s1dss);
                set_s1_walk_attrs(&mut ste);
                self.set_s2_fields(&mut ste, parent);
                ste.set_eats(eats);
            }
            StreamState::NestedPasid { parent, table } => {
                ste.set_config(StreamConfig::Nested);
                if let Some(t) = self.cd_tables.get(&table) {
                    // §5.2 S1ContextPtr: with stage 2 enabled, an IPA.
                    let ipa = t.window.as_ref().and_then(|w| w.ipa.get(&t.base));
                    ste.set_s1contextptr(ipa.copied().unwrap_or_default());
                    ste.set_s1cdmax(t.cdmax);
                    ste.set_s1fmt(t.fmt);
                }
                // §5.2 S1DSS 0b01: no SubstreamID, stage 1 bypassed as though Config were
                // 0b110; stage 2 still translates.
                ste.set_s1dss(S1Dss::Bypass);
                set_s1_walk_attrs(&mut ste);
                self.set_s2_fields(&mut ste, parent);
                ste.set_eats(eats);
            }
        }
        ste
    }

    fn set_s2_fields(&self, ste: &mut Ste, domain: DomainId) {
        let Some(DomainKind::S2 { pt, vmid }) = self.domains.get(&domain).map(|d| &d.kind) else {
            return;
        };
        ste.set_s2vmid(*vmid);
        ste.set_s2t0sz(pt.t0sz);
        ste.set_s2sl0(pt.sl0);
        ste.set_s2ir0(attrs::WB);
        ste.set_s2or0(attrs::WB);
        ste.set_s2sh0(attrs::INNER_SHAREABLE);
        ste.set_s2tg(super::domain::spec_granule(pt.tg));
        ste.set_s2ps(super::domain::ps_field(pt.ps));
        ste.set_s2aa64(true);
        ste.set_s2ha(pt.ha);
        ste.set_s2hd(pt.hd);
        // Stage-2 faults are recorded (§5.5 S2R), so the OS hears of them.
        ste.set_s2r(true);
        ste.set_s2ttb(pt.ttb);
    }

    /// Makes sure `sid` has an STE (a two-level table's level-2 array is made on first use,
    /// every STE in it aborting). Returns the STE's address.
    fn ensure_ste(&mut self, sid: u32) -> Result<u64, DriverError> {
        if let Some(a) = self.strtab.ste_addr(sid) {
            return Ok(a);
        }
        let StreamTable::TwoLevel { base, .. } = self.strtab else {
            return Err(DriverError::SidOutOfRange { sid, sidsize: self.caps.sidsize });
        };
        let l1_index = u64::from(sid) >> SPLIT;
        let l2 = self.frames.alloc(&self.mem, SPLIT + 6)?.raw();
        let abort = abort_ste().words();
        let mut result = Ok(());
        for i in 0..1u64 << SPLIT {
            result = result.and(write_words(&self.mem, l2 + i * STE_BYTES, &abort));
        }
        let mut d = L1Std::default();
        // §5.1: Span = SPLIT + 1 makes the level-2 array 2^SPLIT STEs.
        d.set_span(SPLIT + 1);
        d.set_l2ptr(l2);
        // The level-2 array is complete before the L1STD that publishes it.
        result = result.and(write_words(&self.mem, base + l1_index * L1STD_BYTES, &[d.word()]));
        if let Err(e) = result {
            let _ = self.frames.free(M::Addr::new(l2), SPLIT + 6);
            return Err(e.into());
        }
        if let StreamTable::TwoLevel { l2: map, unused, .. } = &mut self.strtab {
            map.insert(l1_index, l2);
            unused.insert(l1_index);
        }
        // §4.3.2: an invalid L1STD may have been cached for the span.
        let mut c = Command::new(Opcode::CfgiSteRange);
        c.set_sid(sid);
        c.set_range(SPLIT - 1);
        self.submit(&[c])?;
        Ok(l2 + (u64::from(sid) & ((1 << SPLIT) - 1)) * STE_BYTES)
    }

    /// §3.21.3.1: replaces `sid`'s STE with the one for `state` and records the state. A
    /// live STE is first made to abort (one 64-bit write of the word holding V and Config),
    /// invalidated and synced, so no transaction sees a mixture; then words 1 to 7 of the new
    /// STE are written, then word 0, then CMD_CFGI_STE and CMD_SYNC.
    pub(super) fn write_ste(&mut self, sid: u32, state: StreamState) -> Result<(), DriverError> {
        let addr = self.ensure_ste(sid)?;
        let new = self.build_ste(sid, &state);
        let old = Ste::from_words(super::read_words::<M, 8>(&self.mem, addr)?);
        let mut cfgi = Command::new(Opcode::CfgiSte);
        cfgi.set_sid(sid);
        if old != new && hitless(&old, &new) {
            // Only word 0 and stage-1 fields change between stage 2 and nested with the same
            // stage 2: the fields the new Config adds are written while the old one ignores
            // them, and word 0 switches in one 64-bit write, so transactions without a
            // SubstreamID never stop getting stage 2.
            let words = new.words();
            let (w0, rest) = (words.get(..1).unwrap_or(&[]), words.get(1..).unwrap_or(&[]));
            if matches!(new.config(), Ok(StreamConfig::Nested)) {
                write_words(&self.mem, addr + 8, rest)?;
                write_words(&self.mem, addr, w0)?;
            } else {
                write_words(&self.mem, addr, w0)?;
                write_words(&self.mem, addr + 8, rest)?;
            }
            self.submit(&[cfgi])?;
        } else if old != new {
            let live = old.v() && !matches!(old.config(), Ok(StreamConfig::Abort) | Err(_));
            if live {
                write_words(&self.mem, addr, &abort_ste().words()[..1])?;
                self.submit(&[cfgi])?;
            }
            let words = new.words();
            write_words(&self.mem, addr + 8, words.get(1..).unwrap_or(&[]))?;
            write_words(&self.mem, addr, words.get(..1).unwrap_or(&[]))?;
            self.submit(&[cfgi])?;
        }
        match state {
            StreamState::Abort => self.streams.remove(&sid),
            s => {
                if let StreamTable::TwoLevel { unused, .. } = &mut self.strtab {
                    unused.remove(&(u64::from(sid) >> SPLIT));
                }
                self.streams.insert(sid, s)
            }
        };
        Ok(())
    }

    /// Takes back what a first attach of `sid` that failed made: in a two-level Stream table,
    /// the level-2 array it allocated, if no StreamID in it was attached to anything but abort
    /// since. The L1STD becomes invalid again, then CMD_CFGI_STE_RANGE over the span and
    /// CMD_SYNC (§4.3.2: the SMMU may have cached the L1STD, §3.21.3.2: a structure is freed
    /// only after its invalidation completed), then the array is zeroed and freed: the span's
    /// StreamIDs answer C_BAD_STREAMID again. Returns whether an array went.
    pub fn release_stream(&mut self, sid: u32) -> Result<bool, DriverError> {
        self.check_sid(sid)?;
        let l1_index = u64::from(sid) >> SPLIT;
        let StreamTable::TwoLevel { base, ref l2, ref unused, .. } = self.strtab else {
            return Ok(false);
        };
        let span = (l1_index << SPLIT)..((l1_index + 1) << SPLIT);
        let attached = self.streams.keys().any(|&s| span.contains(&u64::from(s)));
        let Some(&array) = l2.get(&l1_index).filter(|_| unused.contains(&l1_index) && !attached)
        else {
            return Ok(false);
        };
        write_words(&self.mem, base + l1_index * L1STD_BYTES, &[0])?;
        if let StreamTable::TwoLevel { l2, unused, .. } = &mut self.strtab {
            l2.remove(&l1_index);
            unused.remove(&l1_index);
        }
        let mut c = Command::new(Opcode::CfgiSteRange);
        c.set_sid(sid);
        c.set_range(SPLIT - 1);
        self.submit(&[c])?;
        self.mem.zero(M::Addr::new(array), 1 << (SPLIT + 6))?;
        self.frames.free(M::Addr::new(array), SPLIT + 6)?;
        Ok(true)
    }

    /// Attaches `sid` to `target`. Refused (changing nothing) for a StreamID beyond
    /// SMMU_IDR1.SIDSIZE, an unknown domain, or a stage-2 attach of a stream whose own CD
    /// table still has PASIDs bound.
    pub fn attach(&mut self, sid: u32, target: Attach) -> Result<(), DriverError> {
        self.check_sid(sid)?;
        let old = self.stream(sid);
        if let StreamState::NestedPasid { .. } = old {
            return Err(DriverError::WrongStreamConfig {
                sid,
                reason: "nested PASIDs are attached",
            });
        }
        // With PerDevice, a stream's own CD table carries its PASIDs across a change of its
        // default domain.
        let own_table = old
            .cd_table()
            .filter(|t| self.cd_tables.get(t).is_some_and(|t| t.owned_by_device(sid)));
        let own_pasids =
            own_table.is_some_and(|t| self.cd_tables.get(&t).is_some_and(|t| t.has_pasids()));
        let new = match target {
            Attach::Abort | Attach::Bypass => {
                let (plain, dss) = if target == Attach::Abort {
                    (StreamState::Abort, S1Dss::Terminate)
                } else {
                    (StreamState::Bypass, S1Dss::Bypass)
                };
                match own_table {
                    Some(table) if own_pasids => {
                        self.write_cd(table, 0, None)?;
                        StreamState::S1 { domain: None, table, dss }
                    }
                    _ => plain,
                }
            }
            Attach::Domain(d) => match self.domain(d)?.kind {
                DomainKind::S2 { .. } => {
                    if own_pasids {
                        return Err(DriverError::WrongStreamConfig {
                            sid,
                            reason: "PASIDs are bound in its CD table",
                        });
                    }
                    StreamState::S2 { domain: d }
                }
                DomainKind::S1 { .. } => {
                    let table = match self.config.cd_table_policy {
                        CdTablePolicy::PerDomain => self.domain_cd_table(d)?,
                        CdTablePolicy::PerDevice => match own_table {
                            Some(t) => t,
                            None => self.new_cd_table(super::CdTableOwner::Device(sid))?,
                        },
                    };
                    let cd = self.domain_cd(d)?;
                    if self.config.cd_table_policy == CdTablePolicy::PerDevice {
                        self.write_cd(table, 0, Some((cd, super::cd::CdEntry::Domain(d))))?;
                    }
                    StreamState::S1 { domain: Some(d), table, dss: S1Dss::Substream0 }
                }
            },
        };
        self.switch_stream(sid, old, new)
    }

    /// Writes the STE for `new` and moves `sid` between CD tables' reach lists; a device's
    /// own table nobody uses any more is freed.
    pub(super) fn switch_stream(
        &mut self,
        sid: u32,
        old: StreamState,
        new: StreamState,
    ) -> Result<(), DriverError> {
        if let Some(t) = new.cd_table() {
            if let Some(t) = self.cd_tables.get_mut(&t) {
                t.sids.insert(sid);
            }
        }
        self.write_ste(sid, new)?;
        if let Some(t) = old.cd_table().filter(|&t| Some(t) != new.cd_table()) {
            if let Some(table) = self.cd_tables.get_mut(&t) {
                table.sids.remove(&sid);
                if table.sids.is_empty() && table.owned_by_device(sid) {
                    self.free_cd_table(t);
                }
            }
        }
        Ok(())
    }

    /// Enables or disables ATS for `sid` (STE.EATS = Full or abort, §5.2): the device may
    /// then send Translation Requests and cache the answers in its ATC, which the driver
    /// invalidates with CMD_ATC_INV on every TLB flush that reaches the stream.
    pub fn set_ats(&mut self, sid: u32, enabled: bool) -> Result<(), DriverError> {
        self.check_sid(sid)?;
        if !self.caps.ats {
            return Err(DriverError::Unsupported("ATS"));
        }
        let state = self.stream(sid);
        if enabled && matches!(state, StreamState::Abort | StreamState::Bypass) {
            return Err(DriverError::WrongStreamConfig { sid, reason: "it does not translate" });
        }
        let had = self.ats.contains(&sid);
        if enabled {
            self.ats.insert(sid);
        } else {
            self.ats.remove(&sid);
        }
        let r = self.write_ste(sid, state);
        if r.is_err() && had != enabled {
            if had {
                self.ats.insert(sid);
            } else {
                self.ats.remove(&sid);
            }
        }
        r
    }

    /// Nesting (§3.3.2 with stage 2): points `sid`'s STE at a guest's CD table (an IPA,
    /// translated by `parent`'s stage 2 when the SMMU fetches CDs) with `parent`'s stage-2
    /// fields and VMID. Refused without S1P and S2P, for a parent that is not a stage-2
    /// domain, or for a guest table the SMMU would find ILLEGAL (S1CDMax beyond SSIDSIZE, a
    /// two-level table without CD2L, a pointer beyond the parent's input size or not 64-byte
    /// aligned).
    pub fn bind_pasid_table(
        &mut self,
        sid: u32,
        parent: DomainId,
        guest: GuestCdTable,
    ) -> Result<(), DriverError> {
        self.check_sid(sid)?;
        if !(self.caps.s1p && self.caps.s2p) {
            return Err(DriverError::Unsupported("nesting (S1P and S2P)"));
        }
        let DomainKind::S2 { pt, .. } = self.domain(parent)?.kind else {
            return Err(DriverError::WrongStage { domain: parent, expected: "stage-2" });
        };
        if guest.s1cdmax > self.caps.ssidsize {
            return Err(DriverError::OutOfRange("S1CDMax (beyond SMMU_IDR1.SSIDSIZE)"));
        }
        if guest.s1cdmax != 0 && guest.s1fmt != S1Fmt::Linear && !self.caps.cd2l {
            return Err(DriverError::Unsupported("two-level CD tables"));
        }
        let ptr = guest.s1_context_ptr_ipa;
        if ptr % 64 != 0 || ptr >> pt.input_bits().min(self.caps.oas_bits) != 0 {
            return Err(DriverError::OutOfRange("S1ContextPtr"));
        }
        let old = self.stream(sid);
        if let StreamState::NestedPasid { .. } = old {
            return Err(DriverError::WrongStreamConfig {
                sid,
                reason: "nested PASIDs are attached",
            });
        }
        if old.cd_table().is_some_and(|t| {
            self.cd_tables.get(&t).is_some_and(|t| t.owned_by_device(sid) && t.has_pasids())
        }) {
            return Err(DriverError::WrongStreamConfig {
                sid,
                reason: "PASIDs are bound in its CD table",
            });
        }
        self.switch_stream(sid, old, StreamState::Nested { parent, guest })
    }

    /// Undoes [`bind_pasid_table`](Self::bind_pasid_table): the stream goes back to its
    /// parent's stage 2, and the guest's stage-1 TLB entries under the parent's VMID are
    /// invalidated (CMD_TLBI_NH_ALL).
    pub fn unbind_pasid_table(&mut self, sid: u32) -> Result<(), DriverError> {
        self.check_sid(sid)?;
        let old = self.stream(sid);
        let StreamState::Nested { parent, .. } = old else {
            return Err(DriverError::WrongStreamConfig { sid, reason: "it is not nested" });
        };
        self.switch_stream(sid, old, StreamState::S2 { domain: parent })?;
        let vmid = self.vmid_of(parent);
        let mut c = Command::new(Opcode::TlbiNhAll);
        c.set_vmid(vmid);
        self.submit(&[c])
    }

    /// The StreamIDs whose STE points at a CD table or names `domain` as their stage 2 or
    /// nesting parent.
    pub(super) fn sids_using(&self, domain: DomainId) -> Vec<u32> {
        self.streams
            .iter()
            .filter(|(_, s)| s.domain() == Some(domain))
            .map(|(&sid, _)| sid)
            .collect()
    }
}

/// S1CIR, S1COR, S1CSH: CD fetches are write-back inner shareable.
fn set_s1_walk_attrs(ste: &mut Ste) {
    ste.set_s1cir(attrs::WB);
    ste.set_s1cor(attrs::WB);
    ste.set_s1csh(attrs::INNER_SHAREABLE);
}

/// Whether `old` can become `new` without passing through abort (§3.21.3.1): both valid, one
/// stage 2 and the other nested, with the same stage-2 words and a word 1 that differs only in
/// fields stage 2 alone ignores (S1DSS, S1CIR, S1COR, S1CSH). Then one of the two Configs
/// ignores every stage-1 field while the others are written.
fn hitless(old: &Ste, new: &Ste) -> bool {
    let (s2, nested) = (Ok(StreamConfig::Stage2), Ok(StreamConfig::Nested));
    let configs = (old.config(), new.config());
    if !(old.v() && new.v() && (configs == (s2, nested) || configs == (nested, s2))) {
        return false;
    }
    let mut probe = *old;
    probe.set_s1dss_raw(new.s1dss_raw());
    probe.set_s1cir(new.s1cir());
    probe.set_s1cor(new.s1cor());
    probe.set_s1csh(new.s1csh());
    probe.words().get(1..) == new.words().get(1..)
}

//! CD tables (§3.3.2, §5.3, §5.4): linear, or two-level with 4KB level-2 tables when the
//! SubstreamIDs are many and SMMU_IDR0.CD2L allows; the CDs the driver writes (a domain's, or
//! a process address space's for SVA); the CD update sequence (§3.21.3); and who each table
//! reaches.

use std::collections::{BTreeMap, BTreeSet};

use sviommu_memory::{Address, PhysMemory};

use super::domain::{ps_field, DomainKind};
use super::stream::StreamState;
use super::CdTablePolicy;
use super::{attrs, write_words, Block, DomainId, DriverError, Mmio, SmmuDriver};
use crate::spec::cd::{CD_BYTES, L1CD_BYTES};
use crate::spec::{address_size_bits, Cd, Command, Granule, L1Cd, Opcode, S1Dss, S1Fmt};

/// SubstreamID bits of a 4KB level-2 CD table (§5.2 S1Fmt 0b01: 64 CDs).
pub(super) const L2_BITS: u8 = 6;
/// IMPDEF (driver choice): a linear CD table without CD2L is capped at 2^10 CDs (64KB).
const LINEAR_MAX_BITS: u8 = 10;

/// Who a CD table belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CdTableOwner {
    /// A stage-1 domain's table, shared by every StreamID attached to it (PerDomain).
    Domain(DomainId),
    /// One StreamID's own table (PerDevice).
    Device(u32),
    /// The table of a stream with nested PASIDs, reached by the SMMU through `parent`'s
    /// stage 2 at an IPA in the window the driver reserves there (one table per StreamID,
    /// whatever the [`CdTablePolicy`]).
    Nested {
        /// The StreamID.
        sid: u32,
        /// The nesting parent (stage-2 domain).
        parent: DomainId,
    },
}

/// One CD table and the StreamIDs that reach it: a PASID bound in it is bound for all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdTableReach {
    /// The table's address (S1ContextPtr).
    pub table: u64,
    /// Whose it is.
    pub owner: CdTableOwner,
    /// Every StreamID whose STE points at it.
    pub sids: Vec<u32>,
    /// The SubstreamIDs with a valid CD (0 is the CD of transactions without one).
    pub ssids: Vec<u32>,
}

/// A process address space the driver does not own, for SVA: the CPU's page table as its CD
/// holds it (§5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SvaContext {
    /// The process's ASID (shared with the CPU).
    pub asid: u16,
    /// TTB0: the starting table.
    pub ttb0: u64,
    /// T0SZ.
    pub t0sz: u8,
    /// TG0.
    pub granule: Granule,
    /// IPS in bits (32, 36, 40, 42, 44, 48 or 52).
    pub ips_bits: u8,
    /// MAIR (the CPU's MAIR_EL1).
    pub mair: u64,
    /// Hardware Access flag updates (needs SMMU_IDR0.HTTU).
    pub ha: bool,
    /// Hardware dirty state (needs SMMU_IDR0.HTTU == 0b10).
    pub hd: bool,
}

/// What to bind at a PASID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PasidAttach {
    /// A stage-1 domain's tables and ASID.
    Domain(DomainId),
    /// A process address space (SVA).
    Sva(SvaContext),
}

/// What a CD in a table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CdEntry {
    Domain(DomainId),
    Sva(SvaContext),
    /// A guest's stage 1 (TTB0 an IPA), under the table's nesting parent.
    Nested(super::NestedCd),
}

/// One CD table.
#[derive(Debug)]
pub(super) struct CdTable {
    pub owner: CdTableOwner,
    pub base: u64,
    /// S1CDMax: log2 of the number of CDs.
    pub cdmax: u8,
    pub fmt: S1Fmt,
    /// log2 of the bytes at `base`.
    pub base_lg2: u8,
    /// Two-level: level-2 tables by level-1 index.
    pub l2: BTreeMap<u64, u64>,
    /// log2 of the bytes of each level-2 table's block.
    pub l2_lg2: u8,
    /// Where the SMMU finds the table's blocks when it is reached through a nesting parent's
    /// stage 2 (the block's IPA in the parent's reserved window, by its address).
    pub window: Option<super::nested::Window>,
    /// The CDs that are valid, by SubstreamID.
    pub entries: BTreeMap<u32, CdEntry>,
    /// The StreamIDs whose STE points here.
    pub sids: BTreeSet<u32>,
}

impl CdTable {
    pub fn blocks(&self) -> Vec<Block> {
        let mut out = vec![Block { addr: self.base, size_lg2: self.base_lg2 }];
        out.extend(self.l2.values().map(|&addr| Block { addr, size_lg2: self.l2_lg2 }));
        out
    }

    pub fn owned_by_device(&self, sid: u32) -> bool {
        self.owner == CdTableOwner::Device(sid)
    }

    /// Whether a CD other than CD 0 is valid.
    pub fn has_pasids(&self) -> bool {
        self.entries.keys().any(|&s| s != 0)
    }

    fn cd_addr(&self, ssid: u32) -> Option<u64> {
        let i = u64::from(ssid);
        match self.fmt.l2_index_bits() {
            None => Some(self.base + i * CD_BYTES),
            Some(bits) => {
                let l2 = self.l2.get(&(i >> bits))?;
                Some(l2 + (i & ((1 << bits) - 1)) * CD_BYTES)
            }
        }
    }
}

impl<R: Mmio, M: PhysMemory> SmmuDriver<R, M> {
    /// The geometry of the CD tables the driver makes: S1CDMax, S1Fmt and log2 of the bytes
    /// at S1ContextPtr.
    pub(super) fn cd_table_geometry(&self) -> (u8, S1Fmt, u8) {
        let bits = self.ssid_bits;
        if bits > L2_BITS && self.caps.cd2l {
            // §5.2 S1Fmt 0b01: 2^(S1CDMax - 6) L1CDs, each for a 4KB table of 64 CDs.
            (bits, S1Fmt::TwoLevel4K, (bits - L2_BITS + 3).max(12))
        } else {
            let b = bits.min(LINEAR_MAX_BITS);
            (b, S1Fmt::Linear, (b + 6).max(12))
        }
    }

    /// A new, empty CD table sized for the driver's SubstreamID bits.
    pub(super) fn new_cd_table(&mut self, owner: CdTableOwner) -> Result<u64, DriverError> {
        let (cdmax, fmt, base_lg2) = self.cd_table_geometry();
        let base = self.frames.alloc(&self.mem, base_lg2)?.raw();
        self.cd_tables.insert(
            base,
            CdTable {
                owner,
                base,
                cdmax,
                fmt,
                base_lg2,
                l2: BTreeMap::new(),
                l2_lg2: L2_BITS + 6,
                window: None,
                entries: BTreeMap::new(),
                sids: BTreeSet::new(),
            },
        );
        Ok(base)
    }

    /// Returns a table's frames. Its CDs are unreachable by then (no STE points at it).
    pub(super) fn free_cd_table(&mut self, table: u64) {
        if let Some(t) = self.cd_tables.remove(&table) {
            for b in t.blocks() {
                // The blocks came from this allocator with these sizes.
                let _ = self.frames.free(M::Addr::new(b.addr), b.size_lg2);
            }
        }
    }

    /// The domain's own CD table (PerDomain), made with CD 0 on first use.
    pub(super) fn domain_cd_table(&mut self, d: DomainId) -> Result<u64, DriverError> {
        if let Some(t) = self.domain(d)?.cd_table {
            return Ok(t);
        }
        let cd = self.domain_cd(d)?;
        let table = self.new_cd_table(CdTableOwner::Domain(d))?;
        if let Err(e) = self.write_cd(table, 0, Some((cd, CdEntry::Domain(d)))) {
            self.free_cd_table(table);
            return Err(e);
        }
        if let Some(dom) = self.domains.get_mut(&d) {
            dom.cd_table = Some(table);
        }
        Ok(table)
    }

    /// The CD of a stage-1 domain (§5.4): its tables in TTB0, TTB1 disabled, its ASID, faults
    /// recorded (R) and aborted (A), hardware A/D as the SMMU offers.
    pub(super) fn domain_cd(&self, d: DomainId) -> Result<Cd, DriverError> {
        let DomainKind::S1 { pt, asid } = self.domain(d)?.kind else {
            return Err(DriverError::WrongStage { domain: d, expected: "stage-1" });
        };
        let mut cd = base_cd();
        cd.set_asid(asid);
        cd.set_t0sz(pt.t0sz);
        cd.set_tg0(super::domain::spec_granule(pt.tg));
        cd.set_ips(ps_field(pt.ips));
        cd.set_ha(pt.ha);
        cd.set_hd(pt.hd);
        cd.set_had0(pt.hpd);
        cd.set_ttb0(pt.ttb);
        cd.set_mair(attrs::MAIR_NORMAL_WB);
        Ok(cd)
    }

    /// The CD of a process address space, refused if the SMMU could not use it.
    pub(super) fn sva_cd(&self, s: &SvaContext) -> Result<Cd, DriverError> {
        let c = &self.caps;
        if !c.granule(s.granule) {
            return Err(DriverError::Granule(s.granule));
        }
        // §5.4.1 CD.T0SZ: 16..=39 (12 with the 64K granule and 52-bit VAs).
        let min = if s.granule == Granule::Size64K && c.vax52 { 12 } else { 16 };
        if !(min..=39).contains(&s.t0sz) {
            return Err(DriverError::InputSize { bits: 64u8.saturating_sub(s.t0sz) });
        }
        let ips = (0u8..=6)
            .find(|&e| address_size_bits(u64::from(e)) == Ok(s.ips_bits))
            .filter(|_| s.ips_bits <= c.oas_bits)
            .ok_or(DriverError::OutOfRange("IPS"))?;
        let max_ttb = if s.granule == Granule::Size64K { s.ips_bits } else { s.ips_bits.min(48) };
        if s.ttb0 % 64 != 0 || s.ttb0 >> max_ttb != 0 {
            return Err(DriverError::OutOfRange("TTB0"));
        }
        if u32::from(s.asid) >> c.asid_bits() != 0 {
            return Err(DriverError::OutOfRange("ASID"));
        }
        if (s.ha && c.httu == 0) || (s.hd && (c.httu < 2 || !s.ha)) {
            return Err(DriverError::Unsupported("hardware Access flag / dirty state"));
        }
        let mut cd = base_cd();
        cd.set_asid(s.asid);
        cd.set_t0sz(s.t0sz);
        cd.set_tg0(s.granule);
        cd.set_ips(ips);
        cd.set_ha(s.ha);
        cd.set_hd(s.hd);
        cd.set_ttb0(s.ttb0);
        cd.set_mair(s.mair);
        Ok(cd)
    }

    /// §3.21.3: writes CD `ssid` of `table` (or invalidates it with `None`) and returns every
    /// StreamID the change reached. A valid CD is first made invalid (word 0 holds V and the
    /// ASID), invalidated for every StreamID using the table and synced; then words 1 to 7 of
    /// the new CD, then word 0; then CMD_CFGI_CD for every StreamID and CMD_SYNC.
    pub(super) fn write_cd(
        &mut self,
        table: u64,
        ssid: u32,
        new: Option<(Cd, CdEntry)>,
    ) -> Result<Vec<u32>, DriverError> {
        let (addr, new_l2) = self.ensure_cd(table, ssid, new.is_some())?;
        let Some(t) = self.cd_tables.get(&table) else {
            return Ok(Vec::new());
        };
        let sids: Vec<u32> = t.sids.iter().copied().collect();
        let cfgi: Vec<Command> = sids
            .iter()
            .map(|&sid| {
                let mut c = Command::new(Opcode::CfgiCd);
                c.set_sid(sid);
                c.set_ssid(ssid);
                // Leaf = 0 when an L1CD changed, so its cached copy goes too (§4.3.3).
                c.set_leaf(!new_l2);
                c
            })
            .collect();
        let Some(addr) = addr else {
            return Ok(sids);
        };
        let old = Cd::from_words(super::read_words::<M, 8>(&self.mem, addr)?);
        if old.v() {
            let mut w0 = old;
            w0.set_v(false);
            write_words(&self.mem, addr, w0.words().get(..1).unwrap_or(&[]))?;
            self.submit(&cfgi)?;
        }
        match new {
            Some((cd, entry)) => {
                let words = cd.words();
                write_words(&self.mem, addr + 8, words.get(1..).unwrap_or(&[]))?;
                write_words(&self.mem, addr, words.get(..1).unwrap_or(&[]))?;
                if !cfgi.is_empty() {
                    self.submit(&cfgi)?;
                }
                if let Some(t) = self.cd_tables.get_mut(&table) {
                    t.entries.insert(ssid, entry);
                }
            }
            None => {
                if let Some(t) = self.cd_tables.get_mut(&table) {
                    t.entries.remove(&ssid);
                }
            }
        }
        Ok(sids)
    }

    /// The CD's address, making its level-2 table if `create`; whether an L1CD was written.
    fn ensure_cd(
        &mut self,
        table: u64,
        ssid: u32,
        create: bool,
    ) -> Result<(Option<u64>, bool), DriverError> {
        let Some(t) = self.cd_tables.get(&table) else {
            return Ok((None, false));
        };
        if let Some(a) = t.cd_addr(ssid) {
            return Ok((Some(a), false));
        }
        let Some(bits) = t.fmt.l2_index_bits() else {
            return Ok((None, false));
        };
        if !create {
            return Ok((None, false));
        }
        let l1_index = u64::from(ssid) >> bits;
        let (l2_lg2, parent) = (t.l2_lg2, t.window.as_ref().map(|w| w.parent));
        let l2 = self.frames.alloc(&self.mem, l2_lg2)?.raw();
        // §3.4.3: with stage 2 enabled, L1CD.L2Ptr is an IPA too.
        let l2ptr = match parent {
            None => l2,
            Some(p) => match self.window_map(p, l2, l2_lg2) {
                Ok(ipa) => ipa,
                Err(e) => {
                    let _ = self.frames.free(M::Addr::new(l2), l2_lg2);
                    return Err(e);
                }
            },
        };
        let mut d = L1Cd::default();
        d.set_v(true);
        d.set_l2ptr(l2ptr);
        // The level-2 table (all CDs invalid, as allocated) exists before its L1CD.
        if let Err(e) = write_words(&self.mem, table + l1_index * L1CD_BYTES, &[d.word()]) {
            if let Some(p) = parent {
                // Nothing reached the new IPA yet: no L1CD names it.
                let _ = self.window_unmap(p, &[(l2ptr, l2_lg2)]);
            }
            let _ = self.frames.free(M::Addr::new(l2), l2_lg2);
            return Err(e.into());
        }
        if let Some(t) = self.cd_tables.get_mut(&table) {
            t.l2.insert(l1_index, l2);
            if let Some(w) = t.window.as_mut() {
                w.ipa.insert(l2, l2ptr);
            }
        }
        let addr = l2 + (u64::from(ssid) & ((1 << bits) - 1)) * CD_BYTES;
        Ok((Some(addr), true))
    }

    pub(super) fn check_ssid(&self, ssid: u32) -> Result<(), DriverError> {
        let bits = self.ssid_bits_in_use();
        if ssid == 0 || u64::from(ssid) >> bits != 0 {
            return Err(DriverError::SsidOutOfRange { ssid, ssid_bits: bits });
        }
        Ok(())
    }

    fn ssid_bits_in_use(&self) -> u8 {
        if self.caps.cd2l {
            self.ssid_bits
        } else {
            self.ssid_bits.min(LINEAR_MAX_BITS)
        }
    }

    /// Every ASID a valid CD or a stage-1 domain uses, with the TTB0 of SVA ones.
    pub(super) fn asid_users(&self) -> BTreeMap<u16, Option<u64>> {
        let mut out = BTreeMap::new();
        for d in self.domains.values() {
            if let DomainKind::S1 { asid, .. } = d.kind {
                out.insert(asid, None);
            }
        }
        for t in self.cd_tables.values() {
            for e in t.entries.values() {
                if let CdEntry::Sva(s) = e {
                    out.entry(s.asid).or_insert(Some(s.ttb0));
                }
            }
        }
        out
    }

    /// Binds `what` at SubstreamID `ssid` in the CD table `sid` uses, and returns every
    /// StreamID the bind reached: with [`CdTablePolicy::PerDomain`] that is every StreamID
    /// attached to the same stage-1 domain. With `PerDevice` a stream without a CD table (abort
    /// or bypass) gets its own, with S1DSS keeping its behaviour for transactions without a
    /// SubstreamID. Refused for SubstreamID 0 or beyond the CD tables, a stream on stage 2 or
    /// nested, a PASID already bound, an ASID another address space uses, or a context the
    /// SMMU could not use.
    pub fn attach_pasid(
        &mut self,
        sid: u32,
        ssid: u32,
        what: PasidAttach,
    ) -> Result<Vec<u32>, DriverError> {
        self.check_sid(sid)?;
        if self.ssid_bits == 0 || !self.caps.s1p {
            return Err(DriverError::Unsupported("substreams"));
        }
        self.check_ssid(ssid)?;
        let (cd, entry) = match what {
            PasidAttach::Domain(d) => (self.domain_cd(d)?, CdEntry::Domain(d)),
            PasidAttach::Sva(s) => {
                let cd = self.sva_cd(&s)?;
                match self.asid_users().get(&s.asid) {
                    Some(Some(ttb)) if *ttb == s.ttb0 => {}
                    Some(_) => return Err(DriverError::AsidInUse(s.asid)),
                    None => {}
                }
                (cd, CdEntry::Sva(s))
            }
        };
        let state = self.stream(sid);
        let table = match state {
            StreamState::S1 { table, .. } => Some(table),
            StreamState::Abort | StreamState::Bypass => None,
            StreamState::S2 { .. }
            | StreamState::Nested { .. }
            | StreamState::NestedPasid { .. } => {
                return Err(DriverError::WrongStreamConfig {
                    sid,
                    reason: "its stage 1 is not the host's",
                })
            }
        };
        if let Some(t) = table.and_then(|t| self.cd_tables.get(&t)) {
            if t.entries.contains_key(&ssid) {
                return Err(DriverError::PasidInUse { sid, ssid });
            }
        }
        match table {
            Some(table) => self.write_cd(table, ssid, Some((cd, entry))),
            None if self.config.cd_table_policy == CdTablePolicy::PerDevice => {
                let dss =
                    if state == StreamState::Bypass { S1Dss::Bypass } else { S1Dss::Terminate };
                let table = self.new_cd_table(CdTableOwner::Device(sid))?;
                if let Err(e) = self.write_cd(table, ssid, Some((cd, entry))) {
                    self.free_cd_table(table);
                    return Err(e);
                }
                self.switch_stream(sid, state, StreamState::S1 { domain: None, table, dss })?;
                Ok(vec![sid])
            }
            None => Err(DriverError::NoCdTable { sid }),
        }
    }

    /// Unbinds SubstreamID `ssid` from the CD table `sid` uses; returns every StreamID the
    /// change reached. A process address space's ASID is then invalidated from the TLBs
    /// (CMD_TLBI_NH_ASID) unless another CD still uses it.
    pub fn detach_pasid(&mut self, sid: u32, ssid: u32) -> Result<Vec<u32>, DriverError> {
        self.check_sid(sid)?;
        self.check_ssid(ssid)?;
        let state = self.stream(sid);
        if matches!(state, StreamState::NestedPasid { .. }) {
            return Err(DriverError::WrongStreamConfig {
                sid,
                reason: "its PASIDs are nested (detach_nested_pasid)",
            });
        }
        let entry = state
            .cd_table()
            .and_then(|t| self.cd_tables.get(&t))
            .and_then(|t| t.entries.get(&ssid).copied())
            .ok_or(DriverError::PasidNotBound { sid, ssid })?;
        let table = state.cd_table().unwrap_or_default();
        let reached = self.write_cd(table, ssid, None)?;
        let mut cmds = Vec::new();
        if let CdEntry::Sva(s) = entry {
            if !self.asid_users().contains_key(&s.asid) {
                let mut c = Command::new(Opcode::TlbiNhAsid);
                c.set_asid(s.asid);
                cmds.push(c);
            }
        }
        // §3.9.1.2: the devices' ATCs may hold translations of the PASID too; every StreamID the
        // CD reached with ATS gets a CMD_ATC_INV for it.
        cmds.extend(
            reached
                .iter()
                .filter(|s| self.ats.contains(s))
                .map(|&s| super::domain::atc_inv(s, Some(ssid), None)),
        );
        if !cmds.is_empty() {
            self.submit(&cmds)?;
        }
        Ok(reached)
    }

    /// Every CD table and the StreamIDs that reach it.
    pub fn cd_tables(&self) -> Vec<CdTableReach> {
        self.cd_tables
            .values()
            .map(|t| CdTableReach {
                table: t.base,
                owner: t.owner,
                sids: t.sids.iter().copied().collect(),
                ssids: t.entries.keys().copied().collect(),
            })
            .collect()
    }

    /// The StreamIDs a PASID bound through `sid` reaches: those sharing its CD table.
    pub fn pasid_reach(&self, sid: u32) -> Vec<u32> {
        self.stream(sid)
            .cd_table()
            .and_then(|t| self.cd_tables.get(&t))
            .map(|t| t.sids.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// What every CD the driver writes has: valid, VMSAv8-64, TTB1 disabled, walks write-back
/// inner shareable, faults recorded (R) and terminated with an abort (A, which
/// SMMU_IDR0.TERM_MODEL requires), never stalled (S = 0).
fn base_cd() -> Cd {
    let mut cd = Cd::default();
    cd.set_v(true);
    cd.set_aa64(true);
    cd.set_r(true);
    cd.set_a(true);
    cd.set_epd1(true);
    cd.set_ir0(attrs::WB);
    cd.set_or0(attrs::WB);
    cd.set_sh0(attrs::INNER_SHAREABLE);
    cd
}

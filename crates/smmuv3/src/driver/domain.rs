//! Domains: translation tables the driver owns, built with pgtable's VMSAv8-64 stage-1 (with
//! an ASID, reached through a CD) and stage-2 (with a VMID, in the STE) formats; map, unmap
//! and the TLB maintenance that makes an unmap visible (§4.4).

use sviommu_memory::{Address, PhysMemory};
use sviommu_pgtable::vmsa::{Granule as PtGranule, Oa52, Ps, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::{Build, Format, Mapped};

use super::{Block, DriverError, Mmio, SmmuDriver};
use crate::spec::{Command, Granule, Opcode};

/// A domain's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub u32);

/// What kind of domain to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainConfig {
    /// VMSAv8-64 stage 1 (a CD's TTB0) with an ASID: input `ias_bits` wide (T0SZ = 64 - it).
    S1 {
        /// TG0.
        granule: Granule,
        /// Input address bits.
        ias_bits: u8,
    },
    /// VMSAv8-64 stage 2 (the STE's S2TTB) with a VMID: IPA `ias_bits` wide.
    S2 {
        /// S2TG.
        granule: Granule,
        /// IPA bits.
        ias_bits: u8,
    },
}

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prot {
    /// Reads (stage 1 always allows them).
    pub read: bool,
    /// Writes.
    pub write: bool,
    /// Instruction fetches.
    pub exec: bool,
}

impl Prot {
    /// Read and write, no execute.
    pub const RW: Self = Self { read: true, write: true, exec: false };
    /// Read only.
    pub const RO: Self = Self { read: true, write: false, exec: false };
}

#[derive(Clone, Copy, Debug)]
pub(super) enum DomainKind {
    S1 { pt: VmsaS1, asid: u16 },
    S2 { pt: VmsaS2, vmid: u16 },
}

#[derive(Debug)]
pub(super) struct Domain {
    pub kind: DomainKind,
    /// The domain's CD table, with PerDomain.
    pub cd_table: Option<u64>,
}

impl Domain {
    pub fn root_block(&self) -> Block {
        match self.kind {
            DomainKind::S1 { pt, .. } => {
                Block { addr: pt.ttb, size_lg2: sviommu_pgtable::radix::table_size_lg2(&pt, 0) }
            }
            DomainKind::S2 { pt, .. } => {
                Block { addr: pt.ttb, size_lg2: sviommu_pgtable::radix::table_size_lg2(&pt, 0) }
            }
        }
    }
}

pub(super) fn pt_granule(g: Granule) -> PtGranule {
    match g {
        Granule::Size4K => PtGranule::K4,
        Granule::Size16K => PtGranule::K16,
        Granule::Size64K => PtGranule::K64,
    }
}

pub(super) fn spec_granule(g: PtGranule) -> Granule {
    match g {
        PtGranule::K4 => Granule::Size4K,
        PtGranule::K16 => Granule::Size16K,
        PtGranule::K64 => Granule::Size64K,
    }
}

/// The 3-bit IPS / S2PS encoding (§5.4 CD.IPS, §5.2 STE.S2PS).
pub(super) fn ps_field(ps: Ps) -> u8 {
    match ps {
        Ps::Bits32 => 0b000,
        Ps::Bits36 => 0b001,
        Ps::Bits40 => 0b010,
        Ps::Bits42 => 0b011,
        Ps::Bits44 => 0b100,
        Ps::Bits48 => 0b101,
        Ps::Bits52 => 0b110,
    }
}

/// The largest output size the driver configures: the OAS, and 48 bits with the 4K/16K
/// granules (no FEAT_LPA2: pgtable gives them 52-bit outputs only with DS).
fn output_size(oas_bits: u8, g: Granule) -> Ps {
    let bits = if g == Granule::Size64K { oas_bits } else { oas_bits.min(48) };
    [Ps::Bits52, Ps::Bits48, Ps::Bits44, Ps::Bits42, Ps::Bits40, Ps::Bits36]
        .into_iter()
        .find(|p| p.bits() <= bits)
        .unwrap_or(Ps::Bits32)
}

/// IOVA ranges beyond this many granules are flushed by ASID or VMID, not page by page.
const MAX_TLBI_PAGES: u64 = 256;

impl<R: Mmio, M: PhysMemory> SmmuDriver<R, M> {
    pub(super) fn domain(&self, d: DomainId) -> Result<&Domain, DriverError> {
        self.domains.get(&d).ok_or(DriverError::NoSuchDomain(d))
    }

    pub(super) fn vmid_of(&self, d: DomainId) -> u16 {
        match self.domains.get(&d).map(|d| d.kind) {
            Some(DomainKind::S2 { vmid, .. }) => vmid,
            _ => 0,
        }
    }

    /// Makes an empty domain. Refused for a stage or granule the SMMU does not advertise, an
    /// input size it cannot configure, or when ASIDs / VMIDs run out.
    pub fn alloc_domain(&mut self, config: DomainConfig) -> Result<DomainId, DriverError> {
        let c = self.caps;
        let oa_52 = if c.oas_bits == 52 { Oa52::Lpa } else { Oa52::Off };
        let kind = match config {
            DomainConfig::S1 { granule, ias_bits } => {
                if !c.s1p {
                    return Err(DriverError::Unsupported("stage 1"));
                }
                if !c.granule(granule) {
                    return Err(DriverError::Granule(granule));
                }
                // §5.4.1 CD.T0SZ: 16..=39, 12 with the 64K granule and 52-bit VAs.
                let max = if granule == Granule::Size64K && c.vax52 && oa_52 == Oa52::Lpa {
                    52
                } else {
                    48
                };
                if !(25..=max).contains(&ias_bits) {
                    return Err(DriverError::InputSize { bits: ias_bits });
                }
                let mut pt = VmsaS1::new(0, pt_granule(granule), 64 - ias_bits);
                pt.ips = output_size(c.oas_bits, granule);
                pt.oa_52 = oa_52;
                pt.ha = c.httu >= 1;
                pt.hd = c.httu >= 2;
                let asid = self.free_asid()?;
                DomainKind::S1 { pt: VmsaS1::create(&self.mem, &mut self.frames, pt)?, asid }
            }
            DomainConfig::S2 { granule, ias_bits } => {
                if !c.s2p {
                    return Err(DriverError::Unsupported("stage 2"));
                }
                if !c.granule(granule) {
                    return Err(DriverError::Granule(granule));
                }
                // §5.2 S2T0SZ: 16..=39 and no wider than the OAS (the IAS).
                let max = if granule == Granule::Size64K { c.oas_bits } else { c.oas_bits.min(48) };
                if !(25..=max).contains(&ias_bits) {
                    return Err(DriverError::InputSize { bits: ias_bits });
                }
                let ps = output_size(c.oas_bits, granule);
                // SL0: the deepest starting level whose (concatenated) table covers the IPA.
                let pt = (0u8..=2)
                    .map(|sl0| {
                        let mut pt = VmsaS2::new(0, pt_granule(granule), 64 - ias_bits, sl0);
                        pt.ps = ps;
                        pt.oa_52 = oa_52;
                        pt.ha = c.httu >= 1;
                        pt.hd = c.httu >= 2;
                        pt
                    })
                    .find(|pt| pt.check_config().is_ok())
                    .ok_or(DriverError::InputSize { bits: ias_bits })?;
                let vmid = self.free_vmid()?;
                DomainKind::S2 { pt: VmsaS2::create(&self.mem, &mut self.frames, pt)?, vmid }
            }
        };
        let id = DomainId(self.next_domain);
        self.next_domain = self.next_domain.wrapping_add(1);
        self.domains.insert(id, Domain { kind, cd_table: None });
        Ok(id)
    }

    fn free_asid(&self) -> Result<u16, DriverError> {
        let used = self.asid_users();
        // ASID 0 is left out: it is the one a reset CD table would name.
        (1..=u16::MAX)
            .take_while(|&a| u32::from(a) >> self.caps.asid_bits() == 0)
            .find(|a| !used.contains_key(a))
            .ok_or(DriverError::IdsExhausted("ASID"))
    }

    fn free_vmid(&self) -> Result<u16, DriverError> {
        // VMID 0 tags stage-1-only streams.
        (1..=u16::MAX)
            .take_while(|&v| u32::from(v) >> self.caps.vmid_bits() == 0)
            .find(|&v| {
                !self
                    .domains
                    .values()
                    .any(|d| matches!(d.kind, DomainKind::S2 { vmid, .. } if vmid == v))
            })
            .ok_or(DriverError::IdsExhausted("VMID"))
    }

    /// Frees a domain nothing uses: its TLB entries are invalidated (by ASID or VMID) and its
    /// root table and CD table returned. Refused while a StreamID is attached to it, a PASID
    /// is bound to it, or (PerDomain) PASIDs are still bound in its CD table.
    ///
    /// DEVIATION: pgtable has no teardown, so the domain's inner table pages are not returned
    /// to the allocator (unmap everything first to keep them few).
    pub fn free_domain(&mut self, d: DomainId) -> Result<(), DriverError> {
        let dom = self.domain(d)?;
        let mut users = self.sids_using(d);
        for t in self.cd_tables.values() {
            let bound = t.entries.iter().any(|(&ssid, e)| {
                *e == super::cd::CdEntry::Domain(d)
                    && (ssid != 0 || t.owner != super::CdTableOwner::Domain(d))
            });
            let foreign = t.owner == super::CdTableOwner::Domain(d) && t.has_pasids();
            if bound || foreign {
                users.extend(t.sids.iter().copied());
                if foreign && t.sids.is_empty() {
                    return Err(DriverError::DomainInUse { domain: d, sids: Vec::new() });
                }
            }
        }
        if !users.is_empty() {
            users.sort_unstable();
            users.dedup();
            return Err(DriverError::DomainInUse { domain: d, sids: users });
        }
        let cmd = match dom.kind {
            DomainKind::S1 { asid, .. } => {
                let mut c = Command::new(Opcode::TlbiNhAsid);
                c.set_asid(asid);
                c
            }
            DomainKind::S2 { vmid, .. } => {
                let mut c = Command::new(Opcode::TlbiS12Vmall);
                c.set_vmid(vmid);
                c
            }
        };
        let root = dom.root_block();
        let table = dom.cd_table;
        self.submit(&[cmd])?;
        if let Some(t) = table {
            self.free_cd_table(t);
        }
        self.domains.remove(&d);
        let _ = self.frames.free(M::Addr::new(root.addr), root.size_lg2);
        Ok(())
    }

    /// Maps `[iova, iova + size)` to `pa` with one leaf; `size` must be a page or block size
    /// of the domain's granule. Stage 1 cannot refuse reads: `prot.read == false` is refused
    /// there. Nothing is flushed (a new mapping replaces no valid entry). A range that
    /// touches a stage-2 domain's [reserved IPA window](Self::reserved_ipa_window) is refused.
    pub fn map(
        &mut self,
        d: DomainId,
        iova: u64,
        pa: u64,
        size: u64,
        prot: Prot,
    ) -> Result<(), DriverError> {
        self.map_recorded(d, iova, pa, size, prot).map(drop)
    }

    /// [`map`](Self::map), reporting what it linked and allocated, for
    /// [`undo_maps`](Self::undo_maps).
    pub fn map_recorded(
        &mut self,
        d: DomainId,
        iova: u64,
        pa: u64,
        size: u64,
        prot: Prot,
    ) -> Result<Mapped, DriverError> {
        let kind = self.domain(d)?.kind;
        self.check_outside_window(d, iova, size)?;
        if !size.is_power_of_two() {
            return Err(sviommu_pgtable::MapError::PageSize { size_lg2: 0 }.into());
        }
        let size_lg2 = u8::try_from(size.trailing_zeros()).unwrap_or(u8::MAX);
        match kind {
            DomainKind::S1 { pt, .. } => {
                if !prot.read {
                    return Err(DriverError::Unsupported("write-only stage-1 mappings"));
                }
                let attrs = S1Attrs {
                    writable: prot.write,
                    user: true,
                    user_exec: prot.exec,
                    priv_exec: prot.exec,
                    global: false,
                    dbm: false,
                    attr_indx: 0,
                };
                Ok(pt.map_recorded(&self.mem, &mut self.frames, iova, pa, size_lg2, attrs)?)
            }
            DomainKind::S2 { pt, .. } => {
                let attrs =
                    S2Attrs { read: prot.read, write: prot.write, exec: prot.exec, ..S2Attrs::ALL };
                Ok(pt.map_recorded(&self.mem, &mut self.frames, iova, pa, size_lg2, attrs)?)
            }
        }
    }

    /// Takes back maps of `[iova, iova + size)` that a larger operation could not complete,
    /// leaving the tables as they were before them: unmaps the range, unlinks the tables the
    /// maps allocated, invalidates the whole ASID / VMID (§4.4: CMD_TLBI_NH_ASID and
    /// CMD_TLBI_S12_VMALL drop walk-cache entries too, which a leaf-only range would keep),
    /// then zeroes and frees those tables. `maps` are the
    /// [`map_recorded`](Self::map_recorded) results, oldest first, and no other map of the
    /// domain came after them.
    pub fn undo_maps(
        &mut self,
        d: DomainId,
        iova: u64,
        size: u64,
        maps: &[Mapped],
    ) -> Result<(), DriverError> {
        self.unmap(d, iova, size)?;
        sviommu_pgtable::radix::unlink(&self.mem, maps)?;
        self.flush_tlb(d, None)?;
        sviommu_pgtable::radix::release(&self.mem, &mut self.frames, maps)?;
        Ok(())
    }

    /// Unmaps every leaf in `[iova, iova + size)` and returns the bytes unmapped. The SMMU's
    /// TLBs still hold what they cached until [`flush_tlb`](Self::flush_tlb). The reserved
    /// IPA window is the driver's: a range that touches it is refused.
    pub fn unmap(&mut self, d: DomainId, iova: u64, size: u64) -> Result<u64, DriverError> {
        let kind = self.domain(d)?.kind;
        self.check_outside_window(d, iova, size)?;
        let u = match kind {
            DomainKind::S1 { pt, .. } => pt.unmap(&self.mem, iova, size)?,
            DomainKind::S2 { pt, .. } => pt.unmap(&self.mem, iova, size)?,
        };
        Ok(u.bytes)
    }

    /// Invalidates the domain's TLB entries for `range` (`(iova, size)`) or all of them, then
    /// CMD_SYNC: stage 1 by ASID (CMD_TLBI_NH_VA / CMD_TLBI_NH_ASID, VMID 0), stage 2 by VMID
    /// (CMD_TLBI_S2_IPA / CMD_TLBI_S12_VMALL; a nesting parent's combined entries with
    /// CMD_TLBI_NH_ALL, §4.4.3.1). Streams with ATS get CMD_ATC_INV.
    pub fn flush_tlb(&mut self, d: DomainId, range: Option<(u64, u64)>) -> Result<(), DriverError> {
        let kind = self.domain(d)?.kind;
        let mut cmds = Vec::new();
        match kind {
            DomainKind::S1 { pt, asid } => {
                let g = spec_granule(pt.tg);
                match range.and_then(|r| self.range_cmds(Opcode::TlbiNhVa, g, r)) {
                    Some(mut v) => {
                        v.iter_mut().for_each(|c| c.set_asid(asid));
                        cmds.extend(v);
                    }
                    None => {
                        let mut c = Command::new(Opcode::TlbiNhAsid);
                        c.set_asid(asid);
                        cmds.push(c);
                    }
                }
            }
            DomainKind::S2 { pt, vmid } => {
                let g = spec_granule(pt.tg);
                match range.and_then(|r| self.range_cmds(Opcode::TlbiS2Ipa, g, r)) {
                    Some(mut v) => {
                        v.iter_mut().for_each(|c| c.set_vmid(vmid));
                        cmds.extend(v);
                        let nested =
                            self.streams.values().any(|s| s.nested() && s.domain() == Some(d));
                        if nested {
                            let mut c = Command::new(Opcode::TlbiNhAll);
                            c.set_vmid(vmid);
                            cmds.push(c);
                        }
                    }
                    None => {
                        let mut c = Command::new(Opcode::TlbiS12Vmall);
                        c.set_vmid(vmid);
                        cmds.push(c);
                    }
                }
            }
        }
        cmds.extend(self.atc_cmds_for(d, range));
        self.submit(&cmds)
    }

    /// The TLBI commands (opcode `op`, address fields only) that cover `(iova, size)`, or
    /// `None` when the range is better flushed whole. With SMMU_IDR3.RIL, ranges of
    /// (NUM + 1) * 2^SCALE granules (§4.4.1.1); otherwise one command per granule.
    pub(super) fn range_cmds(
        &self,
        op: Opcode,
        g: Granule,
        (iova, size): (u64, u64),
    ) -> Option<Vec<Command>> {
        let g_lg2 = g.lg2();
        let start = iova >> g_lg2;
        let end = iova.checked_add(size)?.checked_add((1 << g_lg2) - 1)? >> g_lg2;
        let mut pages = end.checked_sub(start)?;
        let addr_cmd = |page: u64| {
            let mut c = Command::new(op);
            let a = page << g_lg2;
            if op == Opcode::TlbiS2Ipa {
                c.set_ipa(a);
            } else {
                c.set_address(a);
            }
            c
        };
        let mut out = Vec::new();
        if self.caps.ril {
            let mut page = start;
            while pages > 0 {
                // Cover the largest 2^SCALE-aligned run the 5-bit NUM can say.
                let scale = pages.trailing_zeros().min(31);
                let num = (pages >> scale).min(32);
                let mut c = addr_cmd(page);
                c.set_tg(Some(g));
                c.set_scale(u8::try_from(scale).unwrap_or(31));
                c.set_num(u8::try_from(num - 1).unwrap_or(31));
                out.push(c);
                let covered = num << scale;
                page += covered;
                pages -= covered;
            }
            Some(out)
        } else if pages <= MAX_TLBI_PAGES {
            Some((start..end).map(addr_cmd).collect())
        } else {
            None
        }
    }

    /// CMD_ATC_INV for every stream with ATS that reaches domain `d` (attached, or through a
    /// PASID).
    fn atc_cmds_for(&self, d: DomainId, range: Option<(u64, u64)>) -> Vec<Command> {
        let mut targets: Vec<(u32, Option<u32>)> = Vec::new();
        let mut cmds = Vec::new();
        for (&sid, s) in &self.streams {
            if self.ats.contains(&sid) && s.domain() == Some(d) {
                if s.nested() {
                    // The ATC holds stage-1 inputs (guest VAs) a stage-2 range cannot name:
                    // everything goes, every PASID included (SSV == 0, §4.5.1).
                    cmds.push(atc_inv(sid, None, None));
                } else {
                    targets.push((sid, None));
                }
            }
        }
        for t in self.cd_tables.values() {
            for (&ssid, e) in &t.entries {
                if ssid != 0 && *e == super::cd::CdEntry::Domain(d) {
                    targets.extend(
                        t.sids.iter().filter(|s| self.ats.contains(s)).map(|&s| (s, Some(ssid))),
                    );
                }
            }
        }
        cmds.extend(targets.into_iter().map(|(sid, ssid)| atc_inv(sid, ssid, range)));
        cmds
    }
}

/// §4.5.1 CMD_ATC_INV: `range` rounded out to one naturally aligned span, or everything.
pub(super) fn atc_inv(sid: u32, ssid: Option<u32>, range: Option<(u64, u64)>) -> Command {
    let mut c = Command::new(Opcode::AtcInv);
    c.set_sid(sid);
    if let Some(s) = ssid {
        c.set_ssv(true);
        c.set_ssid(s);
    }
    // Size 52 (4KB << 52) covers the whole address space.
    let (addr, size_lg2) = match range {
        Some((iova, len)) if len > 0 => {
            let last = iova.saturating_add(len - 1);
            let mut lg2 = 0u8;
            while lg2 < 52 && (iova >> (12 + lg2)) != (last >> (12 + lg2)) {
                lg2 += 1;
            }
            let span_lg2 = 12 + u32::from(lg2);
            (iova.checked_shr(span_lg2).unwrap_or(0).checked_shl(span_lg2).unwrap_or(0), lg2)
        }
        _ => (0, 52),
    };
    c.set_address(addr);
    c.set_atc_size(size_lg2);
    c
}

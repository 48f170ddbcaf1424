//! Domains: a DID, and for paging domains the tables the driver owns, built with
//! `sviommu-pgtable` (VT-d second stage, §9.8; x86 first stage, §9.7).
//!
//! `map` and `unmap` change tables only; [`VtdDriver::flush_iotlb`] invalidates, so the caller
//! chooses strict (flush every unmap) or batched invalidation. One exception: under caching
//! mode (CAP.CM) a not-present result may be cached, so `map` flushes what it mapped itself.

use sviommu_memory::{Address, FrameAllocator, PhysMemory};
use sviommu_pgtable::radix::{table_size_lg2, Entry, Format};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::x86::{self, X86Attrs, X86Paging};
use sviommu_pgtable::{Build, Mapped};

use super::queue::{dev_tlb, iotlb, piotlb, PageMask};
use super::{Did, DriverError, Feature, Mmio, Mode, PasidConfig, VtdDriver, RID_PASID};
use crate::spec::{Aw, Fspm};

/// What kind of domain to allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainConfig {
    /// Second-stage tables (legacy mode, or scalable mode with ECAP.SSTS); `aw` `None` takes
    /// the unit's default (48-bit if advertised).
    SecondStage {
        /// The table's AGAW (must be in CAP.SAGAW).
        aw: Option<Aw>,
    },
    /// First-stage x86 tables (scalable mode, ECAP.FSTS).
    FirstStage {
        /// 4- or 5-level (5-level needs CAP.FS5LP).
        levels: Fspm,
    },
    /// A DID only, for tables the driver does not own (a process's page table for SVA, a
    /// guest's first stage when nested).
    External,
}

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prot {
    /// Reads.
    pub read: bool,
    /// Writes.
    pub write: bool,
    /// Execute requests.
    pub exec: bool,
}

impl Prot {
    /// Read and write.
    pub const RW: Self = Self { read: true, write: true, exec: false };
    /// Read only.
    pub const READ: Self = Self { read: true, write: false, exec: false };
}

/// A domain's tables.
#[derive(Clone, Copy, Debug)]
pub(super) enum Tables {
    Ss { tables: VtdSecondStage, aw: Aw },
    Fs { tables: X86Paging, levels: Fspm },
    External,
}

/// One domain.
#[derive(Debug)]
pub(super) struct Domain {
    pub(super) tables: Tables,
    /// Attachments that use it.
    pub(super) refs: u32,
    /// A map replaced tables with a block since the last flush: paging-structure caches must go
    /// too (no invalidation hint).
    pub(super) tables_freed: bool,
}

const fn ss_levels(aw: Aw) -> vtd_ss::Levels {
    match aw {
        Aw::Bits39 => vtd_ss::Levels::Three,
        Aw::Bits48 => vtd_ss::Levels::Four,
        Aw::Bits57 => vtd_ss::Levels::Five,
    }
}

const fn fs_levels(levels: Fspm) -> x86::Levels {
    match levels {
        Fspm::FourLevel => x86::Levels::Four,
        Fspm::FiveLevel => x86::Levels::Five,
    }
}

/// Frees every table of `fmt` (the root included), bottom-up, reading only through the
/// format's own decoder. Bounded by the format's depth and table sizes.
fn free_tables<Fm: Format, M: PhysMemory>(
    fmt: &Fm,
    mem: &M,
    frames: &mut FrameAllocator<M::Addr>,
) -> Result<(), DriverError> {
    let mut stack = vec![(fmt.root(), 0usize)];
    let mut all = Vec::new();
    while let Some((table, d)) = stack.pop() {
        all.push((table, d));
        if d + 1 >= fmt.depth() {
            continue;
        }
        for i in 0..1u64 << fmt.index_bits(d) {
            let at = super::offset(M::Addr::new(table), 8 * i)?;
            let raw = mem.read_u64(at)?;
            let mut acc = Fm::Acc::default();
            if let Ok(Entry::Table { next }) = fmt.decode(d, raw, &mut acc) {
                stack.push((next, d + 1));
            }
        }
    }
    for (table, d) in all {
        frames.free(M::Addr::new(table), table_size_lg2(fmt, d))?;
    }
    Ok(())
}

impl<R: Mmio, M: PhysMemory> VtdDriver<R, M> {
    /// Allocates a domain: a free DID and, for a paging domain, an empty top-level table.
    /// Refused if the mode or the unit lacks the kind (first stage and external domains need
    /// scalable mode and ECAP.FSTS, second stage in scalable mode ECAP.SSTS, 5-level CAP.FS5LP)
    /// or the AW is not in CAP.SAGAW.
    pub fn alloc_domain(&mut self, config: DomainConfig) -> Result<Did, DriverError> {
        let scalable = self.mode == Mode::Scalable;
        let fs_ok = || {
            if !scalable {
                Err(DriverError::NeedsScalableMode("a first-stage domain"))
            } else if !self.caps.first_stage {
                Err(DriverError::Unsupported(Feature::FirstStage))
            } else {
                Ok(())
            }
        };
        // Check everything before taking a DID or a page.
        let aw = match config {
            DomainConfig::SecondStage { aw } => {
                if scalable && !self.caps.second_stage {
                    return Err(DriverError::Unsupported(Feature::SecondStage));
                }
                let aw = aw
                    .or_else(|| self.caps.default_aw())
                    .ok_or(DriverError::Unsupported(Feature::SecondStageWidth))?;
                if !self.caps.supports_aw(aw) {
                    return Err(DriverError::AwNotSupported(aw));
                }
                Some(aw)
            }
            DomainConfig::FirstStage { levels } => {
                fs_ok()?;
                if levels == Fspm::FiveLevel && !self.caps.fs_5level {
                    return Err(DriverError::Unsupported(Feature::FiveLevelFirstStage));
                }
                None
            }
            DomainConfig::External => {
                fs_ok()?;
                None
            }
        };
        let did = self.free_did()?;
        let tables = match (config, aw) {
            (DomainConfig::SecondStage { .. }, Some(aw)) => {
                let root = self.frames.alloc(&self.mem, 12)?.raw();
                let tables = VtdSecondStage {
                    root,
                    levels: ss_levels(aw),
                    mgaw: self.caps.mgaw_bits,
                    haw: self.config.haw,
                    sllps: u8::try_from(crate::spec::regs::cap::SSLPS.get(self.caps.cap))
                        .unwrap_or(0),
                    execute: false,
                    // Scalable mode always has SNP; legacy with snoop control.
                    snoop: scalable || self.caps.snoop_control,
                    ad: false,
                };
                Tables::Ss { tables, aw }
            }
            (DomainConfig::FirstStage { levels }, _) => {
                let root = self.frames.alloc(&self.mem, 12)?.raw();
                let mut tables = X86Paging::new(root, fs_levels(levels));
                tables.phys_bits = self.config.haw;
                tables.page_1g = crate::spec::regs::cap::FS1GP.is_set(self.caps.cap);
                Tables::Fs { tables, levels }
            }
            _ => Tables::External,
        };
        self.domains.insert(did, Domain { tables, refs: 0, tables_freed: false });
        Ok(Did(did))
    }

    /// Frees a domain and every table page it owns. Refused while something is attached to it.
    pub fn free_domain(&mut self, did: Did) -> Result<(), DriverError> {
        let dom = self.domains.get(&did.0).ok_or(DriverError::NoSuchDomain(did))?;
        if dom.refs != 0 {
            return Err(DriverError::DomainAttached(did));
        }
        match dom.tables {
            Tables::Ss { tables, .. } => free_tables(&tables, &self.mem, &mut self.frames)?,
            Tables::Fs { tables, .. } => free_tables(&tables, &self.mem, &mut self.frames)?,
            Tables::External => {}
        }
        self.domains.remove(&did.0);
        Ok(())
    }

    /// The page sizes a domain maps, as a bitmap (bit `n`: `2^n` bytes).
    pub fn page_sizes(&self, did: Did) -> Result<u64, DriverError> {
        match self.domain(did)?.tables {
            Tables::Ss { .. } => Ok(self.caps.ss_page_sizes),
            Tables::Fs { .. } => Ok(self.caps.fs_page_sizes),
            Tables::External => Err(DriverError::WrongDomainKind { did, wanted: "paging" }),
        }
    }

    /// The root of a paging domain's tables.
    pub fn table_root(&self, did: Did) -> Option<u64> {
        match self.domains.get(&did.0)?.tables {
            Tables::Ss { tables, .. } => Some(tables.root),
            Tables::Fs { tables, .. } => Some(tables.root),
            Tables::External => None,
        }
    }

    fn domain(&self, did: Did) -> Result<&Domain, DriverError> {
        self.domains.get(&did.0).ok_or(DriverError::NoSuchDomain(did))
    }

    /// Maps `size` bytes at `iova` to `pa` with one page of that size, which the domain's
    /// format and the unit must have (`page_sizes`). Refused, changing nothing, for a page size
    /// it lacks, a protection its format cannot express (first-stage pages are always
    /// readable), misalignment, an input beyond the table's width, an output beyond HAW, or an
    /// overlap.
    pub fn map(
        &mut self,
        did: Did,
        iova: u64,
        pa: u64,
        size: u64,
        prot: Prot,
    ) -> Result<(), DriverError> {
        self.map_recorded(did, iova, pa, size, prot).map(drop)
    }

    /// [`map`](Self::map), reporting what it linked and allocated, for
    /// [`undo_maps`](Self::undo_maps).
    pub fn map_recorded(
        &mut self,
        did: Did,
        iova: u64,
        pa: u64,
        size: u64,
        prot: Prot,
    ) -> Result<Mapped, DriverError> {
        let sizes = self.page_sizes(did)?;
        if !size.is_power_of_two() || sizes & size == 0 {
            return Err(DriverError::PageSize { size });
        }
        let lg2 = u8::try_from(size.trailing_zeros()).unwrap_or(u8::MAX);
        let free_before = self.frames.free_bytes();
        let mapped = match self.domain(did)?.tables {
            Tables::Ss { tables, .. } => {
                let attrs = VtdSsAttrs {
                    read: prot.read,
                    write: prot.write,
                    exec: prot.exec,
                    snoop: false,
                };
                if !prot.read && !prot.write {
                    return Err(DriverError::Prot(prot));
                }
                tables.map_recorded(&self.mem, &mut self.frames, iova, pa, lg2, attrs)?
            }
            Tables::Fs { tables, .. } => {
                if !prot.read {
                    return Err(DriverError::Prot(prot));
                }
                // User pages: requests without PASID are user requests (RID_PRIV 0).
                let attrs =
                    X86Attrs { writable: prot.write, user: true, exec: prot.exec, global: false };
                tables.map_recorded(&self.mem, &mut self.frames, iova, pa, lg2, attrs)?
            }
            Tables::External => return Err(DriverError::WrongDomainKind { did, wanted: "paging" }),
        };
        if self.frames.free_bytes() > free_before {
            if let Some(dom) = self.domains.get_mut(&did.0) {
                dom.tables_freed = true;
            }
        }
        if self.caps.caching_mode {
            self.flush_iotlb(did, Some((iova, size)))?;
        }
        Ok(mapped)
    }

    /// Takes back maps of `[iova, iova + size)` that a larger operation could not complete,
    /// leaving the tables as they were before them: unmaps the range, unlinks the tables the
    /// maps allocated, invalidates the domain with the paging-structure caches (§6.5.2.3: a
    /// domain-selective IOTLB invalidation drops them), then zeroes and frees those tables.
    /// `maps` are the [`map_recorded`](Self::map_recorded) results, oldest first, and no other
    /// map of the domain came after them.
    pub fn undo_maps(
        &mut self,
        did: Did,
        iova: u64,
        size: u64,
        maps: &[Mapped],
    ) -> Result<(), DriverError> {
        self.unmap(did, iova, size)?;
        sviommu_pgtable::radix::unlink(&self.mem, maps)?;
        if maps.iter().any(|m| !m.created.is_empty() || m.replaced > 0) {
            if let Some(dom) = self.domains.get_mut(&did.0) {
                dom.tables_freed = true;
            }
        }
        self.flush_iotlb(did, None)?;
        sviommu_pgtable::radix::release(&self.mem, &mut self.frames, maps)?;
        Ok(())
    }

    /// Unmaps every page in `[iova, iova + size)`; returns the bytes unmapped. Does not flush:
    /// until [`flush_iotlb`](Self::flush_iotlb), the unit may still translate them. Refused,
    /// changing nothing, if the range cuts a page in two.
    pub fn unmap(&mut self, did: Did, iova: u64, size: u64) -> Result<u64, DriverError> {
        let done = match self.domain(did)?.tables {
            Tables::Ss { tables, .. } => tables.unmap(&self.mem, iova, size)?,
            Tables::Fs { tables, .. } => tables.unmap(&self.mem, iova, size)?,
            Tables::External => return Err(DriverError::WrongDomainKind { did, wanted: "paging" }),
        };
        Ok(done.bytes)
    }

    /// Invalidates what the unit may cache of a domain's translations, in `range` (`iova`,
    /// `size`) or all of them, then waits. Second-stage domains: IOTLB invalidation
    /// (page-selective with the smallest covering address mask, domain-selective without
    /// CAP.PSI or beyond CAP.MAMV), for the nested attachments over it too; first-stage and
    /// external domains: PASID-based IOTLB invalidation for each PASID attached. Device-TLBs of
    /// attached devices with ATS go too. The invalidation hint is set unless a map replaced
    /// tables since the last flush (unmap only clears leaves).
    pub fn flush_iotlb(&mut self, did: Did, range: Option<(u64, u64)>) -> Result<(), DriverError> {
        let dom = self.domain(did)?;
        let mask = match range {
            Some((iova, size)) => {
                Some(PageMask::covering(iova, size).ok_or(DriverError::Range { iova, size })?)
            }
            None => None,
        };
        let ih = !dom.tables_freed;
        let second_stage = matches!(dom.tables, Tables::Ss { .. });
        let mut descs = Vec::new();
        let mut devices = Vec::new();
        let mut dids = Vec::new();
        if second_stage {
            dids.push(did.0);
        }
        for (&(rid, pasid), a) in &self.attached {
            let (reaches, nested_did) = match a.config {
                PasidConfig::SecondStage { did: d } => (d == did, None),
                PasidConfig::FirstStage { did: d }
                | PasidConfig::FirstStageExternal { did: d, .. } => (d == did, None),
                PasidConfig::Nested { parent, s1_did, .. } => {
                    let as_parent = parent == did;
                    (as_parent || s1_did == Some(did), as_parent.then_some(a.did))
                }
                PasidConfig::Blocked | PasidConfig::PassThrough => (false, None),
            };
            if !reaches {
                continue;
            }
            match nested_did {
                // The parent's second stage changed: the nested translations tagged with
                // another DID go too (§6.5.2.3 reaches nested entries of the DID it names).
                Some(d) if !dids.contains(&d) => dids.push(d),
                Some(_) => {}
                None if a.first_stage => {
                    let p = pasid.unwrap_or(RID_PASID);
                    descs.push(piotlb(a.did, p, mask, ih, self.caps.mamv));
                }
                None => {}
            }
            if self.features(rid).ats {
                devices.push(dev_tlb(rid, pasid, mask));
            }
        }
        let limit = self.psi_limit();
        let mut all: Vec<[u64; 4]> = dids.iter().map(|&d| iotlb(d, mask, ih, limit)).collect();
        // The IOTLB first, then device-TLBs, so a device cannot refill from a stale IOTLB.
        all.extend(descs);
        all.extend(devices);
        self.submit(&all)?;
        if let Some(dom) = self.domains.get_mut(&did.0) {
            dom.tables_freed = false;
        }
        Ok(())
    }
}

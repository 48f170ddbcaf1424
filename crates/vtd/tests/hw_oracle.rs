//! Oracle property test: random scalable-mode configurations (every PGTT, random first-stage and
//! second-stage maps built with pgtable's builders, random PASID-table controls, random requests
//! with and without PASID) against an independent composition of two flat `BTreeMap` oracles.
//! Translations must agree on output, page size and rights; faults on their reason.
//!
//! The oracle knows the rules from the spec, not from the model: x86 paging's rights (§3.6,
//! SDM Vol. 3A §4.6), the second stage's R/W/X (§3.7), SRE/ERE (§9.6), RID_PASID and RID_PRIV
//! (§9.4), the interrupt address range (§3.14), and in which order the checks come.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use sviommu_memory::{FrameAllocator, Gpa, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::x86::{self, X86Attrs, X86Paging};
use sviommu_pgtable::{Access, Build, Perms};
use sviommu_vtd::hw::{DmaRequest, Vtd, VtdParams};
use sviommu_vtd::spec::pasid::{Fspm, PasidEntry, Pgtt};
use sviommu_vtd::spec::regs::rtaddr::Ttm;
use sviommu_vtd::spec::root::ScalableContextEntry;
use sviommu_vtd::spec::{Aw, FaultReason as R};

const RID: u16 = 0x0208;
const PASID: u32 = 0x1_0042;
/// First-stage inputs: 4K pages in the first 2M, 2M pages in the four after it.
const VA_BASE: u64 = 0x40_0000_0000;
/// First-stage outputs in host memory (first-stage only).
const HPA_BASE: u64 = 0x80_0000_0000;
/// First-stage outputs in guest memory (nested), and the second stage's inputs: the same
/// layout, so the two maps meet.
const GPA_BASE: u64 = 0x4000_0000;
/// Second-stage outputs.
const SS_OUT_BASE: u64 = 0x90_0000_0000;
/// The 4K first-stage slot that maps into (or, nested, towards) the interrupt address range.
const INT_SLOT: u64 = 31;
/// The GPA the second stage maps into the interrupt address range: apart from the slots, so a
/// 2M second-stage page may cover the 4K ones.
const INT_GPA: u64 = GPA_BASE + (8 << 21);
const INT: u64 = 0xfee0_0000;

/// A page in a slot layout: 4K pages at `base + slot * 4K`, or 2M pages at
/// `base + (1 + slot % 4) * 2M`.
fn slot_addr(base: u64, slot: u8, big: bool) -> (u64, u8) {
    if big {
        (base + (1 + u64::from(slot % 4)) * (1 << 21), 21)
    } else {
        (base + u64::from(slot % 16) * 0x1000, 12)
    }
}

#[derive(Clone, Copy, Debug)]
struct FsMap {
    slot: u8,
    out: u8,
    big: bool,
    attrs: X86Attrs,
    /// Nested: also map the output GPA in the second stage, with these rights...
    backing: Option<VtdSsAttrs>,
    /// ...with the other page size (a 2M page around a 4K output, the first 4K of a 2M one).
    backing_flip: bool,
}

#[derive(Clone, Copy, Debug)]
struct SsMap {
    slot: u8,
    out: u8,
    big: bool,
    attrs: VtdSsAttrs,
}

#[derive(Clone, Copy, Debug)]
struct Req {
    /// 0: a mapped page (the `slot`-th map, if any); 1: any slot; 2: the interrupt slot;
    /// 3: the interrupt address range itself; 4: a non-canonical (or beyond-AGAW) address.
    kind: u8,
    slot: u8,
    big: bool,
    offset: u16,
    access: Access,
    with_pasid: bool,
}

#[derive(Clone, Debug)]
struct Case {
    pgtt: Pgtt,
    sre: bool,
    ere: bool,
    wpe: bool,
    nxe: bool,
    smep: bool,
    ssee: bool,
    rid_priv: bool,
    fs: Vec<FsMap>,
    ss: Vec<SsMap>,
    reqs: Vec<Req>,
}

fn access() -> impl Strategy<Value = Access> {
    (any::<bool>(), prop::bool::weighted(0.15), prop::bool::weighted(0.3))
        .prop_map(|(w, x, p)| Access { write: w && !x, exec: x, privileged: p })
}

fn ss_attrs() -> impl Strategy<Value = VtdSsAttrs> {
    (prop::bool::weighted(0.8), any::<bool>(), any::<bool>()).prop_map(|(r, w, x)| VtdSsAttrs {
        read: r,
        write: w,
        exec: x,
        snoop: false,
    })
}

fn case() -> impl Strategy<Value = Case> {
    let pgtt = prop::sample::select(vec![
        Pgtt::FirstStage,
        Pgtt::SecondStage,
        Pgtt::Nested,
        Pgtt::PassThrough,
    ]);
    let fs = (
        0u8..16,
        0u8..16,
        prop::bool::weighted(0.2),
        (any::<bool>(), prop::bool::weighted(0.8), any::<bool>()),
        prop::option::weighted(0.8, ss_attrs()),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(slot, out, big, (w, u, x), backing, backing_flip)| FsMap {
            slot,
            out,
            big,
            attrs: X86Attrs { writable: w, user: u, exec: x, global: false },
            backing,
            backing_flip,
        });
    let ss = (0u8..16, 0u8..16, prop::bool::weighted(0.2), ss_attrs())
        .prop_map(|(slot, out, big, attrs)| SsMap { slot, out, big, attrs });
    let req = (
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
        0u8..16,
        prop::bool::weighted(0.2),
        any::<u16>(),
        access(),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(kind, slot, big, offset, access, with_pasid)| Req {
            kind,
            slot,
            big,
            offset,
            access,
            with_pasid,
        });
    (
        pgtt,
        (prop::bool::weighted(0.85), prop::bool::weighted(0.85)),
        any::<[bool; 5]>(),
        prop::collection::vec(fs, 0..12),
        prop::collection::vec(ss, 0..12),
        prop::collection::vec(req, 1..16),
    )
        .prop_map(|(pgtt, (sre, ere), [wpe, nxe, smep, ssee, rid_priv], fs, ss, reqs)| Case {
            pgtt,
            sre,
            ere,
            wpe,
            nxe,
            smep,
            ssee,
            rid_priv,
            fs,
            ss,
            reqs,
        })
}

// ---------------------------------------------------------------------------------------------
// The oracle: two flat maps and the rules
// ---------------------------------------------------------------------------------------------

/// What the oracle expects of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Translated { output: u64, page_lg2: u8, perms: Perms },
    Interrupt,
    Fault(R),
}

#[derive(Default)]
struct Oracle {
    /// VA page -> (output page, size, attrs).
    fs: BTreeMap<u64, (u64, u8, X86Attrs)>,
    /// GPA page -> (HPA page, size, attrs).
    ss: BTreeMap<u64, (u64, u8, VtdSsAttrs)>,
}

fn find<T: Copy>(map: &BTreeMap<u64, (u64, u8, T)>, addr: u64) -> Option<(u64, u8, T)> {
    let (&base, &(out, lg2, attrs)) = map.range(..=addr).next_back()?;
    (addr - base < 1 << lg2).then_some((out + (addr - base), lg2, attrs))
}

impl Oracle {
    /// First stage, x86 rules: rights, then which one a request lacks.
    fn first_stage(&self, c: &Case, va: u64, a: Access) -> Result<(u64, u8, Perms), R> {
        let top = va >> 47;
        if top != 0 && top != (1 << 17) - 1 {
            return Err(R::SmNonCanonical);
        }
        let (out, lg2, at) = find(&self.fs, va).ok_or(R::SmFsEntryNotPresent)?;
        let x = !c.nxe || at.exec;
        let mut p = Perms::PRIV_R;
        if at.writable || !c.wpe {
            p = p.union(Perms::PRIV_W);
        }
        if x && !(c.smep && at.user) {
            p = p.union(Perms::PRIV_X);
        }
        if at.user {
            p = p.union(Perms::USER_R);
            if at.writable {
                p = p.union(Perms::USER_W);
            }
            if x {
                p = p.union(Perms::USER_X);
            }
        }
        if !a.privileged && !at.user {
            return Err(R::SmUserAccessDenied);
        }
        if !p.allows(a) {
            return Err(if a.exec { R::SmExecuteDenied } else { R::SmWriteDenied });
        }
        Ok((out, lg2, p))
    }

    /// Second stage: an input beyond the 48-bit AGAW, a hole, then R/W/X (X only with SSEE,
    /// else execute rides on read).
    fn second_stage(&self, c: &Case, gpa: u64, a: Access) -> Result<(u64, u8, Perms), R> {
        if gpa >> 48 != 0 {
            return Err(R::SmAddressBeyondMgaw);
        }
        let (out, lg2, at) = find(&self.ss, gpa).ok_or(R::SmSsEntryNotPresent)?;
        let p = Perms::rwx(at.read, at.write, if c.ssee { at.exec } else { at.read });
        if !p.allows(a) {
            return Err(if a.exec {
                R::SmExecuteDenied
            } else if a.write {
                R::SmWriteDenied
            } else {
                R::SmReadDenied
            });
        }
        Ok((out, lg2, p))
    }

    fn expect(&self, c: &Case, req: &DmaRequest) -> Expect {
        if req.pasid.is_none() && (INT..=0xfeef_ffff).contains(&req.addr) {
            return Expect::Interrupt;
        }
        // Without PASID: RID_PASID (= PASID here), RID_PRIV, never execute.
        let a = match req.pasid {
            Some(_) => req.access,
            None => Access { write: req.access.write, exec: false, privileged: c.rid_priv },
        };
        if a.exec && !c.ere {
            return Expect::Fault(R::SmPasidEreClear);
        }
        if a.privileged && !c.sre {
            return Expect::Fault(R::SmPasidSreClear);
        }
        let walked = match c.pgtt {
            Pgtt::PassThrough => Ok((req.addr, 12, Perms::ALL)),
            Pgtt::SecondStage => self.second_stage(c, req.addr, a),
            Pgtt::FirstStage => self.first_stage(c, req.addr, a),
            Pgtt::Nested => self.first_stage(c, req.addr, a).and_then(|(gpa, l1, p1)| {
                let (hpa, l2, p2) = self.second_stage(c, gpa, a)?;
                Ok((hpa, l1.min(l2), p1.intersect(p2)))
            }),
        };
        match walked {
            Err(r) => Expect::Fault(r),
            Ok((output, _, _)) if (INT..=0xfeef_ffff).contains(&output) => {
                Expect::Fault(R::SmInterruptAddressRange)
            }
            Ok((output, page_lg2, mut perms)) => {
                if !c.sre {
                    perms = perms.without(Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::PRIV_X));
                }
                if !c.ere {
                    perms = perms.without(Perms::PRIV_X.union(Perms::USER_X));
                }
                Expect::Translated { output, page_lg2, perms }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building the configuration in memory
// ---------------------------------------------------------------------------------------------

/// A configuration in memory, with what later changes need.
struct Built {
    m: Machine,
    rta: u64,
    oracle: Oracle,
    fs: X86Paging,
    ss: VtdSecondStage,
    pe_at: u64,
}

fn build(c: &Case) -> Built {
    let mut m = Machine::new();
    let mut o = Oracle::default();
    let rta = m.page();
    // 2048 directory entries (PDTS = 4): 16K.
    let dir = m.frames.alloc(&m.mem, 14).unwrap().0;
    let nested = c.pgtt == Pgtt::Nested;

    // Second stage: guest RAM's table region for the nested first stage, then the random maps.
    let ss_root = m.page();
    let ss =
        VtdSecondStage { execute: c.ssee, ..VtdSecondStage::new(ss_root, vtd_ss::Levels::Four) };
    if nested {
        let rw = VtdSsAttrs { read: true, write: true, exec: true, snoop: false };
        for gpa in [0, 0x20_0000] {
            ss.map(&m.mem, &mut m.frames, gpa, GUEST_RAM_HPA + gpa, 21, rw).unwrap();
        }
    }
    let int_rw = VtdSsAttrs { read: true, write: true, exec: true, snoop: false };
    let int_gpa = INT_GPA;
    ss.map(&m.mem, &mut m.frames, int_gpa, INT, 12, int_rw).unwrap();
    o.ss.insert(int_gpa, (INT, 12, int_rw));
    for s in &c.ss {
        let (gpa, lg2) = slot_addr(GPA_BASE, s.slot, s.big);
        let (hpa, _) = slot_addr(SS_OUT_BASE, s.out, s.big);
        if ss.map(&m.mem, &mut m.frames, gpa, hpa, lg2, s.attrs).is_ok() {
            o.ss.insert(gpa, (hpa, lg2, s.attrs));
        }
    }

    // First stage: in host memory (first-stage only) or guest RAM (nested).
    let fs_cfg = |root| X86Paging {
        nxe: c.nxe,
        wp: c.wpe,
        smep: c.smep,
        ..X86Paging::new(root, x86::Levels::Four)
    };
    let out_base = if nested { GPA_BASE } else { HPA_BASE };
    let ram = guest_ram(&m.mem);
    let fs_root = if nested {
        m.guest_frames.alloc(&ram, 12).unwrap().0
    } else {
        m.frames.alloc(&m.mem, 12).unwrap().0
    };
    let fs = fs_cfg(fs_root);
    let int_va = VA_BASE + INT_SLOT * 0x1000;
    // First-stage only: straight into the range; nested: to the GPA the second stage sends there.
    let int_out = if nested { int_gpa } else { INT };
    let mut maps: Vec<(u64, u64, u8, X86Attrs)> = vec![(int_va, int_out, 12, X86Attrs::ALL)];
    for f in &c.fs {
        let (va, lg2) = slot_addr(VA_BASE, f.slot, f.big);
        let (out, _) = slot_addr(out_base, f.out, f.big);
        maps.push((va, out, lg2, f.attrs));
        if let (true, Some(attrs)) = (nested, f.backing) {
            let (gpa, hpa, lg2) = match (f.big, f.backing_flip) {
                (false, true) => (out & !0x1f_ffff, SS_OUT_BASE + (16 << 21), 21),
                (big, _) => (
                    out,
                    slot_addr(SS_OUT_BASE, f.slot, big).0,
                    lg2.min(if big && f.backing_flip { 12 } else { 21 }),
                ),
            };
            if ss.map(&m.mem, &mut m.frames, gpa, hpa, lg2, attrs).is_ok() {
                o.ss.insert(gpa, (hpa, lg2, attrs));
            }
        }
    }
    for (va, out, lg2, attrs) in maps {
        let done = if nested {
            fs.map(&ram, &mut m.guest_frames, va, out, lg2, attrs)
        } else {
            fs.map(&m.mem, &mut m.frames, va, out, lg2, attrs)
        };
        if done.is_ok() {
            o.fs.insert(va, (out, lg2, attrs));
        }
    }
    drop(ram);

    // Context entry and PASID-table entry (PASID and RID_PASID share it).
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pdts(4); // 2048 directory entries: PASID 0x1_0042 is directory index 0x401
    ce.set_pasiddirptr(dir);
    ce.set_rid_pasid(PASID);
    ce.set_rid_priv(c.rid_priv);
    m.sm_context(rta, RID, ce);
    let mut pe = PasidEntry::default();
    pe.set_p(true);
    pe.set_pgtt(c.pgtt);
    pe.set_sre(c.sre);
    pe.set_ere(c.ere);
    pe.set_wpe(c.wpe);
    pe.set_nxe(c.nxe);
    pe.set_smep(c.smep);
    pe.set_ssee(c.ssee);
    if c.pgtt.uses_first_stage() {
        pe.set_fspm(Fspm::FourLevel);
        pe.set_fsptptr(fs.root);
    }
    if c.pgtt.uses_second_stage() {
        pe.set_aw(Aw::Bits48);
        pe.set_ssptptr(ss.root);
    }
    let pe_at = m.pasid_entry(dir, PASID, pe);
    Built { m, rta, oracle: o, fs, ss, pe_at }
}

/// The PASID-table entry `c` describes, over the tables at `fs_root` and `ss_root`.
fn pasid_entry(c: &Case, fs_root: u64, ss_root: u64) -> PasidEntry {
    let mut pe = PasidEntry::default();
    pe.set_p(true);
    pe.set_pgtt(c.pgtt);
    pe.set_sre(c.sre);
    pe.set_ere(c.ere);
    pe.set_wpe(c.wpe);
    pe.set_nxe(c.nxe);
    pe.set_smep(c.smep);
    pe.set_ssee(c.ssee);
    if c.pgtt.uses_first_stage() {
        pe.set_fspm(Fspm::FourLevel);
        pe.set_fsptptr(fs_root);
    }
    if c.pgtt.uses_second_stage() {
        pe.set_aw(Aw::Bits48);
        pe.set_ssptptr(ss_root);
    }
    pe
}

/// A live configuration's parts while a unit translates over its memory.
struct Live<'a> {
    mem: &'a HostMemory,
    frames: &'a mut FrameAllocator<Hpa>,
    guest_frames: &'a mut FrameAllocator<Gpa>,
    oracle: &'a mut Oracle,
    fs: &'a mut X86Paging,
    ss: &'a VtdSecondStage,
    pe_at: u64,
}

fn request(c: &Case, r: &Req) -> DmaRequest {
    let base = if c.pgtt == Pgtt::SecondStage { GPA_BASE } else { VA_BASE };
    let (slot, big) = match (c.pgtt, r.kind) {
        (Pgtt::SecondStage, 0) if !c.ss.is_empty() => {
            let s = c.ss[usize::from(r.slot) % c.ss.len()];
            (s.slot, s.big)
        }
        (_, 0) if !c.fs.is_empty() => {
            let f = c.fs[usize::from(r.slot) % c.fs.len()];
            (f.slot, f.big)
        }
        _ => (r.slot, r.big),
    };
    let addr = match r.kind {
        0 | 1 => {
            let (page, lg2) = slot_addr(base, slot, big);
            // Half the requests stay in the page's first 4K.
            let offset = u64::from(r.offset);
            page + if offset & 1 == 0 {
                offset % 0x1000
            } else {
                (offset << (lg2 - 12)) % (1 << lg2)
            }
        }
        2 if c.pgtt == Pgtt::SecondStage => INT_GPA + u64::from(r.offset % 0x1000),
        2 => VA_BASE + INT_SLOT * 0x1000 + u64::from(r.offset % 0x1000),
        3 => INT + (u64::from(r.offset) << 4),
        _ => (1 << 48) | u64::from(r.offset) << 12,
    };
    let req = DmaRequest::new(RID, addr, r.access);
    if r.with_pasid {
        req.with_pasid(PASID)
    } else {
        req
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hw_agrees_with_two_composed_oracle_maps(c in case()) {
        let b = build(&c);
        let vtd = unit(&b.m, VtdParams::default());
        enable(&vtd, b.rta, Ttm::Scalable);
        check_requests(&vtd, &c, &b.oracle)?;
    }

    /// With the caches warm, random changes to both stages' tables (leaves and whole tables)
    /// and to the PASID-table entry, each followed by the invalidation a driver must issue for
    /// it (the narrowest that covers it, through the queue): after each, the unit agrees with
    /// the oracle on every request.
    #[test]
    fn cached_translations_agree_after_every_matching_invalidation(
        c in case(),
        changes in prop::collection::vec(change(), 1..10),
    ) {
        let mut c = c;
        let Built { m, rta, mut oracle, mut fs, ss, pe_at } = build(&c);
        let Machine { mem, mut frames, mut guest_frames } = m;
        let vtd = Vtd::new(&mem, VtdParams::default());
        enable(&vtd, rta, Ttm::Scalable);
        enable_queue(&vtd);
        check_requests(&vtd, &c, &oracle)?;
        for ch in &changes {
            let mut live = Live {
                mem: &mem,
                frames: &mut frames,
                guest_frames: &mut guest_frames,
                oracle: &mut oracle,
                fs: &mut fs,
                ss: &ss,
                pe_at,
            };
            let inv = apply(&mut c, &mut live, ch);
            submit_and_wait(&vtd, &inv);
            check_requests(&vtd, &c, &oracle)?;
        }
    }
}

/// Every request of `c` translated by `vtd` matches `oracle`.
fn check_requests(vtd: &Vtd<&HostMemory>, c: &Case, oracle: &Oracle) -> Result<(), TestCaseError> {
    for r in &c.reqs {
        let req = request(c, r);
        let want = oracle.expect(c, &req);
        let got = match vtd.translate(&req) {
            Ok(t) if t.interrupt => Expect::Interrupt,
            Ok(t) => Expect::Translated { output: t.output, page_lg2: t.page_lg2, perms: t.perms },
            Err(f) => {
                prop_assert_eq!(
                    (f.rid, f.pasid, f.addr, f.access, f.fpd),
                    (req.rid, req.pasid, req.addr, req.access, false)
                );
                Expect::Fault(f.reason)
            }
        };
        prop_assert_eq!(got, want, "{:?} {:?}", c.pgtt, req);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Changes and the invalidations they need
// ---------------------------------------------------------------------------------------------

/// One change a driver makes to a live configuration.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// Remap (or, with `None`, unmap) a first-stage slot: the `pick`-th of the case's maps
    /// (the pages requests use), or any.
    Fs { pick: Option<u8>, slot: u8, out: u8, big: bool, attrs: Option<X86Attrs> },
    /// Remap (or unmap) a second-stage slot: the one the `pick`-th first-stage map sends its
    /// page to (nested) or the `pick`-th second-stage map, or any.
    Ss { pick: Option<u8>, slot: u8, out: u8, big: bool, attrs: Option<VtdSsAttrs> },
    /// Replace the 4K slots' whole 2M region of the first stage with one 2M block (freeing its
    /// page table) or, with `None`, unmap it: a change to the tables, not only to leaves.
    FsArea { out: u8, attrs: Option<X86Attrs> },
    /// The same for the second stage's 4K slots.
    SsArea { out: u8, attrs: Option<VtdSsAttrs> },
    /// New PASID-table entry controls: SRE, ERE, WPE, SMEP. (NXE and SSEE stay: they change
    /// what the existing entries' bits mean, which the oracle does not model.)
    Pe([bool; 4]),
}

fn change() -> impl Strategy<Value = Change> {
    let x86 = (any::<bool>(), prop::bool::weighted(0.8), any::<bool>())
        .prop_map(|(w, u, x)| X86Attrs { writable: w, user: u, exec: x, global: false });
    let pick = prop::option::weighted(0.7, any::<u8>());
    let big = prop::bool::weighted(0.2);
    prop_oneof![
        3 => (pick.clone(), 0u8..16, 0u8..16, big, prop::option::weighted(0.8, x86.clone()))
            .prop_map(|(pick, slot, out, big, attrs)| Change::Fs { pick, slot, out, big, attrs }),
        3 => (pick, 0u8..16, 0u8..16, big, prop::option::weighted(0.8, ss_attrs()))
            .prop_map(|(pick, slot, out, big, attrs)| Change::Ss { pick, slot, out, big, attrs }),
        1 => (0u8..16, prop::option::weighted(0.7, x86))
            .prop_map(|(out, attrs)| Change::FsArea { out, attrs }),
        1 => (0u8..16, prop::option::weighted(0.7, ss_attrs()))
            .prop_map(|(out, attrs)| Change::SsArea { out, attrs }),
        1 => any::<[bool; 4]>().prop_map(Change::Pe),
    ]
}

/// The PASID-table entry's DID (build leaves it 0).
const DID: u16 = 0;

/// Unmaps `[at, at + 2^lg2)` from `fmt`'s tables and from `map` if every leaf there lies
/// inside it (a partial block cannot be unmapped), then maps `to` there. Returns whether
/// anything changed.
fn remap<T: Copy, F: Build, M: PhysMemory>(
    fmt: &F,
    mem: &M,
    frames: &mut FrameAllocator<M::Addr>,
    map: &mut BTreeMap<u64, (u64, u8, T)>,
    at: u64,
    lg2: u8,
    to: Option<(u64, F::Attrs, T)>,
) -> bool {
    let last = at + (1 << lg2) - 1;
    let hit: Vec<u64> = map
        .iter()
        .filter(|(&base, &(_, l, _))| base <= last && at < base + (1 << l))
        .map(|(&base, _)| base)
        .collect();
    if hit.iter().any(|&base| base < at || base + (1 << map[&base].1) - 1 > last) {
        return false;
    }
    if fmt.unmap(mem, at, 1 << lg2).is_err() {
        return false;
    }
    for base in hit {
        map.remove(&base);
    }
    if let Some((out, attrs, o)) = to {
        if fmt.map(mem, frames, at, out, lg2, attrs).is_ok() {
            map.insert(at, (out, lg2, o));
        }
    }
    true
}

/// Remaps `[va, va + 2^lg2)` of the first stage (in guest RAM when nested).
fn remap_fs(c: &Case, b: &mut Live<'_>, va: u64, lg2: u8, to: Option<(u64, X86Attrs)>) -> bool {
    let target = to.map(|(out, a)| (out, a, a));
    if c.pgtt == Pgtt::Nested {
        let ram = guest_ram(b.mem);
        remap(&*b.fs, &ram, b.guest_frames, &mut b.oracle.fs, va, lg2, target)
    } else {
        remap(&*b.fs, b.mem, b.frames, &mut b.oracle.fs, va, lg2, target)
    }
}

/// Applies `ch` to the tables, the oracle and the case; returns the invalidations a driver
/// issues for it.
fn apply(c: &mut Case, b: &mut Live<'_>, ch: &Change) -> Vec<[u64; 4]> {
    let nested = c.pgtt == Pgtt::Nested;
    let fs_base = if nested { GPA_BASE } else { HPA_BASE };
    // IH clear throughout: a map may free tables (a block over emptied ones) or add them.
    let fs_inv = |changed: bool, va: u64, lg2: u8| match (changed, c.pgtt.uses_first_stage()) {
        (true, true) => vec![desc::piotlb_pages(DID, PASID, va, lg2 - 12, false)],
        _ => vec![],
    };
    let ss_inv = |changed: bool, gpa: u64, lg2: u8| match (changed, c.pgtt.uses_second_stage()) {
        (true, true) => vec![desc::iotlb_pages(DID, gpa, lg2 - 12, false)],
        _ => vec![],
    };
    match *ch {
        Change::Fs { pick, slot, out, big, attrs } => {
            let picked = pick.and_then(|i| c.fs.get(usize::from(i) % c.fs.len().max(1)));
            let (slot, big) = picked.map_or((slot, big), |f| (f.slot, f.big));
            let (va, lg2) = slot_addr(VA_BASE, slot, big);
            let (to, _) = slot_addr(fs_base, out, big);
            let changed = remap_fs(c, b, va, lg2, attrs.map(|a| (to, a)));
            fs_inv(changed, va, lg2)
        }
        Change::Ss { pick, slot, out, big, attrs } => {
            let i = pick.map(usize::from);
            let (slot, big) = match (nested, i) {
                (true, Some(i)) if !c.fs.is_empty() => {
                    let f = c.fs[i % c.fs.len()];
                    (f.out, f.big)
                }
                (false, Some(i)) if !c.ss.is_empty() => {
                    let m = c.ss[i % c.ss.len()];
                    (m.slot, m.big)
                }
                _ => (slot, big),
            };
            let (gpa, lg2) = slot_addr(GPA_BASE, slot, big);
            let (to, _) = slot_addr(SS_OUT_BASE, out, big);
            let target = attrs.map(|a| (to, a, a));
            let changed = remap(b.ss, b.mem, b.frames, &mut b.oracle.ss, gpa, lg2, target);
            ss_inv(changed, gpa, lg2)
        }
        Change::FsArea { out, attrs } => {
            let (to, _) = slot_addr(fs_base, out, true);
            let changed = remap_fs(c, b, VA_BASE, 21, attrs.map(|a| (to, a)));
            fs_inv(changed, VA_BASE, 21)
        }
        Change::SsArea { out, attrs } => {
            let (to, _) = slot_addr(SS_OUT_BASE, out, true);
            let target = attrs.map(|a| (to, a, a));
            let changed = remap(b.ss, b.mem, b.frames, &mut b.oracle.ss, GPA_BASE, 21, target);
            ss_inv(changed, GPA_BASE, 21)
        }
        Change::Pe([sre, ere, wpe, smep]) => {
            (c.sre, c.ere, c.wpe, c.smep) = (sre, ere, wpe, smep);
            *b.fs = X86Paging { wp: wpe, smep, ..*b.fs };
            let pe = pasid_entry(c, b.fs.root, b.ss.root);
            for (i, w) in pe.words().iter().enumerate() {
                b.mem.write_u64(Hpa(b.pe_at + 8 * i as u64), *w).unwrap();
            }
            // §6.5: the PASID cache, then the IOTLB of the translations the entry made.
            let iotlb = match c.pgtt {
                Pgtt::FirstStage => desc::piotlb_pasid(DID, PASID),
                _ => desc::iotlb_domain(DID),
            };
            vec![desc::pc_pasid(DID, PASID), iotlb]
        }
    }
}

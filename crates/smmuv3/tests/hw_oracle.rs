//! Oracle property test: random STE/CD configurations (stage 1 only, stage 2 only, nested;
//! 4K/16K/64K granules at each stage; one CD or a table of two with a random S1DSS) and random
//! maps built with pgtable's builders, against an independent composition of two flat
//! `BTreeMap` oracles. Every transaction's output and permissions, or its event number (with S2
//! and CLASS), must be what the oracles compose to.
//!
//! The oracles know only the architecture's rules: page-granular maps, the AArch64 stage-1
//! permission rules (AP[2:1], UXN, PXN, no EL1 execution of EL0-writable pages), stage-2 S2AP
//! and XN, the SubstreamID and S1DSS rules of §5.2 and the faults of §7.3.13/§7.3.16.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use sviommu_memory::{Address, FrameAllocator, Gpa, GuestRam, GuestRamRegion, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::{Access, Build, Perms};
use sviommu_smmuv3::hw::{Abort, Smmu, Transaction};
use sviommu_smmuv3::spec::{Class, EventId, S1Dss};

/// Stage-1 VAs start here; stage-1 outputs (IPAs) and stage-2 inputs in the data window.
const VA_BASE: u64 = 0x40_0000;
const DATA_IPA: u64 = 0x4000_0000;
const PA_BASE: u64 = 0x1_0000_0000;
/// The span of VAs and of data IPAs the maps use.
const WINDOW: u64 = 0x20_0000;
/// Guest RAM for nested streams: IPA [0, 4M) at HPA [8M, 12M). Host frames are [1M, 8M).
const GUEST_HPA: u64 = 0x80_0000;
const GUEST_LEN: u64 = 0x40_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    S1,
    S2,
    Nested,
}

#[derive(Clone, Debug)]
struct Case {
    kind: Kind,
    s1_tg: PtGranule,
    s1_t0sz: u8,
    /// (granule, T0SZ, SL0): combinations valid per AArch64.S2InconsistentSL.
    s2: (PtGranule, u8, u8),
    /// (VA page index, IPA page index, attributes) in pages of the stage-1 granule.
    s1_maps: Vec<(u64, u64, usize)>,
    /// A seed choosing which stage-2 pages of the window are mapped, where, and how.
    s2_seed: u64,
    cdmax: u8,
    s1dss: u8,
    /// (address choice, page choice, offset, SubstreamID choice, access choice).
    txs: Vec<(u8, u64, u64, u8, u8)>,
}

const GRANULES: [PtGranule; 3] = [PtGranule::K4, PtGranule::K16, PtGranule::K64];

fn s2_configs() -> Vec<(PtGranule, u8, u8)> {
    vec![
        (PtGranule::K4, 25, 1),
        (PtGranule::K4, 16, 2),
        (PtGranule::K4, 33, 1),
        (PtGranule::K16, 28, 1),
        (PtGranule::K16, 17, 2),
        (PtGranule::K16, 25, 2),
        (PtGranule::K64, 22, 1),
        (PtGranule::K64, 16, 2),
        (PtGranule::K64, 33, 1),
    ]
}

fn s1_attrs(i: usize) -> S1Attrs {
    let kernel_rw = S1Attrs { user: false, user_exec: false, ..S1Attrs::ALL };
    let kernel_rx = S1Attrs { writable: false, user: false, user_exec: false, ..S1Attrs::ALL };
    let user_rw_xn = S1Attrs { user_exec: false, priv_exec: false, ..S1Attrs::ALL };
    let user_exec_only =
        S1Attrs { writable: false, user: false, user_exec: true, priv_exec: false, ..S1Attrs::ALL };
    [S1Attrs::ALL, S1Attrs::READ_ONLY, kernel_rw, kernel_rx, user_rw_xn, user_exec_only][i % 6]
}

fn s2_attrs(i: u64) -> S2Attrs {
    let rx = S2Attrs { write: false, ..S2Attrs::ALL };
    let wo = S2Attrs { read: false, exec: false, ..S2Attrs::ALL };
    [S2Attrs::ALL, S2Attrs::ALL, S2Attrs::READ_ONLY, rx, wo][(i % 5) as usize]
}

/// §D8.4 (Arm ARM) as the oracle knows it: what a stage-1 leaf grants.
fn s1_perms(a: S1Attrs) -> Perms {
    let user_w = a.user && a.writable;
    let mut p = Perms::PRIV_R;
    let mut add = |on: bool, q: Perms| {
        if on {
            p = p.union(q);
        }
    };
    add(a.writable, Perms::PRIV_W);
    add(a.priv_exec && !user_w, Perms::PRIV_X); // EL1 never executes EL0-writable memory
    add(a.user, Perms::USER_R);
    add(user_w, Perms::USER_W);
    add(a.user_exec, Perms::USER_X);
    p
}

fn s2_perms(a: S2Attrs) -> Perms {
    Perms::rwx(a.read, a.write, a.exec)
}

/// A flat map of one stage: page base -> (output page base, permissions).
#[derive(Debug, Default)]
struct Flat {
    page_lg2: u8,
    pages: BTreeMap<u64, (u64, Perms)>,
}

impl Flat {
    fn get(&self, addr: u64) -> Option<(u64, Perms)> {
        let mask = (1u64 << self.page_lg2) - 1;
        self.pages.get(&(addr & !mask)).map(|&(out, p)| (out | (addr & mask), p))
    }
}

/// What the oracle says a transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Out(u64, Perms),
    Event(EventId, bool, Option<Class>),
}

fn fault(id: EventId, s2: bool) -> Want {
    Want::Event(id, s2, Some(Class::In))
}

struct Oracle<'a> {
    case: &'a Case,
    s1: Flat,
    s2: Flat,
    s1_ia_bits: u8,
    s2_ia_bits: u8,
}

impl Oracle<'_> {
    /// Stage 2 of an IPA (or its absence).
    fn stage2(&self, ipa: u64, access: Access) -> Result<(u64, Perms), Want> {
        if self.case.kind == Kind::S1 {
            return Ok((ipa, Perms::ALL));
        }
        if ipa >> self.s2_ia_bits != 0 {
            return Err(fault(EventId::FTranslation, true));
        }
        let (pa, p) = self.s2.get(ipa).ok_or(fault(EventId::FTranslation, true))?;
        if !p.allows(access) {
            return Err(fault(EventId::FPermission, true));
        }
        Ok((pa, p))
    }

    fn expect(&self, t: &Transaction) -> Want {
        let access = Access { exec: t.access.exec && !t.access.write, ..t.access };
        let c = self.case;
        let result = (|| -> Result<(u64, Perms), Want> {
            if c.kind == Kind::S2 {
                if t.ssid.is_some() {
                    return Err(Want::Event(EventId::CBadSubstreamid, false, None));
                }
                if t.addr >> 52 != 0 {
                    return Err(fault(EventId::FAddrSize, false));
                }
                return self.stage2(t.addr, access);
            }
            // Which CD: Some(index), or None for S1DSS bypass.
            let cd = match (t.ssid, c.cdmax) {
                (Some(_), 0) => return Err(Want::Event(EventId::CBadSubstreamid, false, None)),
                (Some(x), m) if u64::from(x) >> m != 0 => {
                    return Err(Want::Event(EventId::CBadSubstreamid, false, None));
                }
                (Some(0), _) if c.s1dss == S1Dss::Substream0 as u8 => {
                    return Err(Want::Event(EventId::FStreamDisabled, false, None));
                }
                (Some(x), _) => Some(x),
                (None, 0) => Some(0),
                (None, _) => match c.s1dss {
                    0b01 => None,
                    0b10 => Some(0),
                    _ => return Err(Want::Event(EventId::FStreamDisabled, false, None)),
                },
            };
            let Some(cd) = cd else {
                // S1DSS bypass: the address is the IPA.
                if t.addr >> 52 != 0 {
                    return Err(fault(EventId::FAddrSize, false));
                }
                return self.stage2(t.addr, access);
            };
            // CD 1 disables both halves (EPD0, EPD1): every walk is a Translation fault.
            if cd == 1 {
                return Err(fault(EventId::FTranslation, false));
            }
            if t.addr >> self.s1_ia_bits != 0 {
                return Err(fault(EventId::FTranslation, false));
            }
            let (ipa, p1) = self.s1.get(t.addr).ok_or(fault(EventId::FTranslation, false))?;
            if !p1.allows(access) {
                return Err(fault(EventId::FPermission, false));
            }
            let (pa, p2) = self.stage2(ipa, access)?;
            Ok((pa, p1.intersect(p2)))
        })();
        match result {
            Ok((pa, p)) => Want::Out(pa, p),
            Err(w) => w,
        }
    }
}

fn got(r: Result<sviommu_smmuv3::hw::Translation, Abort>) -> Want {
    match r {
        Ok(tr) => Want::Out(tr.output, tr.perms),
        Err(Abort::Event(e)) => Want::Event(e.id, e.s2, e.class),
        Err(a) => panic!("unexpected silent abort {a:?}"),
    }
}

/// A small deterministic hash for the stage-2 map choices.
fn mix(seed: u64, i: u64) -> u64 {
    let mut x = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let mem = memory();
    let mut host = FrameAllocator::new(&[(Hpa(FRAMES), GUEST_HPA - FRAMES)]);
    let ram = GuestRam::new(
        &mem,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_LEN, hpa: Hpa(GUEST_HPA) }],
    );
    let mut guest = FrameAllocator::new(&[(Gpa(0), GUEST_LEN)]);

    // Stage 2: guest RAM (for nested tables and CDs), and a random part of the data window.
    let (s2_tg, s2_t0sz, s2_sl0) = case.s2;
    let s2 = VmsaS2::create(&mem, &mut host, VmsaS2::new(0, s2_tg, s2_t0sz, s2_sl0)).unwrap();
    let mut s2_flat = Flat { page_lg2: s2_tg.lg2(), ..Flat::default() };
    if case.kind != Kind::S1 {
        let page = 1u64 << s2_tg.lg2();
        if case.kind == Kind::Nested {
            for ipa in (0..GUEST_LEN).step_by(page as usize) {
                s2.map(&mem, &mut host, ipa, GUEST_HPA + ipa, s2_tg.lg2(), S2Attrs::ALL).unwrap();
            }
        }
        for i in 0..WINDOW / page {
            let h = mix(case.s2_seed, i);
            if h % 4 == 0 {
                continue;
            }
            let (ipa, pa, attrs) =
                (DATA_IPA + i * page, PA_BASE + ((h >> 8) % 4096) * page, s2_attrs(h >> 4));
            s2.map(&mem, &mut host, ipa, pa, s2_tg.lg2(), attrs).unwrap();
            s2_flat.pages.insert(ipa, (pa, s2_perms(attrs)));
        }
    }

    // Stage 1: tables and CDs in host memory, or (nested) in guest RAM.
    let mut s1_flat = Flat { page_lg2: case.s1_tg.lg2(), ..Flat::default() };
    let s1_page = 1u64 << case.s1_tg.lg2();
    let out_base = if case.kind == Kind::S1 { PA_BASE } else { DATA_IPA };
    let mut cd_ptr = 0;
    if case.kind != Kind::S2 {
        let cfg = VmsaS1::new(0, case.s1_tg, case.s1_t0sz);
        let s1 = if case.kind == Kind::Nested {
            VmsaS1::create(&ram, &mut guest, cfg).unwrap()
        } else {
            VmsaS1::create(&mem, &mut host, cfg).unwrap()
        };
        for &(v, o, a) in &case.s1_maps {
            let (va, out) = (VA_BASE + v * s1_page, out_base + o * s1_page);
            if s1_flat.pages.contains_key(&va) {
                continue;
            }
            let attrs = s1_attrs(a);
            if case.kind == Kind::Nested {
                s1.map(&ram, &mut guest, va, out, case.s1_tg.lg2(), attrs).unwrap();
            } else {
                s1.map(&mem, &mut host, va, out, case.s1_tg.lg2(), attrs).unwrap();
            }
            s1_flat.pages.insert(va, (out, s1_perms(attrs)));
        }
        // One CD, or a table of two: CD 1 has both halves disabled (EPD0, EPD1).
        let mut cd1 = cd_for(&s1, 2);
        cd1.set_epd0(true);
        let cds = [cd_for(&s1, 1), cd1];
        if case.kind == Kind::Nested {
            cd_ptr = guest.alloc(&ram, 12).unwrap().raw();
            for (i, cd) in cds.iter().enumerate() {
                for (j, w) in cd.words().iter().enumerate() {
                    ram.write_u64(Gpa(cd_ptr + 64 * i as u64 + 8 * j as u64), *w).unwrap();
                }
            }
        } else {
            cd_ptr = alloc(&mem, &mut host, 12);
            write_cd(&mem, cd_ptr, &cds[0]);
            write_cd(&mem, cd_ptr + 64, &cds[1]);
        }
    }

    let mut ste = match case.kind {
        Kind::S1 => ste_s1(cd_ptr, case.cdmax, None),
        Kind::S2 => ste_s2(&s2),
        Kind::Nested => ste_s1(cd_ptr, case.cdmax, Some(&s2)),
    };
    ste.set_s1dss_raw(case.s1dss);
    let smmu = Smmu::new(&mem, Default::default());
    let base = alloc(&mem, &mut host, 12);
    write_ste(&mem, base, &ste);
    enable_linear(&smmu, base, 0);

    let oracle = Oracle {
        case,
        s1: s1_flat,
        s2: s2_flat,
        s1_ia_bits: 64 - case.s1_t0sz,
        s2_ia_bits: 64 - s2_t0sz,
    };
    let mapped: Vec<u64> = if case.kind == Kind::S2 {
        oracle.s2.pages.keys().copied().collect()
    } else {
        oracle.s1.pages.keys().copied().collect()
    };
    let page = if case.kind == Kind::S2 { 1u64 << s2_tg.lg2() } else { s1_page };
    let window_base = if case.kind == Kind::S2 { DATA_IPA } else { VA_BASE };
    for &(addr_sel, pick, off, ssid_sel, acc) in &case.txs {
        let addr = match addr_sel % 8 {
            0 => window_base + (pick % (WINDOW / page)) * page + off % page,
            1 => (1u64 << (40 + pick % 24)) | (off % page),
            _ if mapped.is_empty() => window_base + off % WINDOW,
            _ => mapped[(pick % mapped.len() as u64) as usize] + off % page,
        };
        let access = Access { write: acc & 1 != 0, exec: acc & 2 != 0, privileged: acc & 4 != 0 };
        let mut t = Transaction::new(0, addr, access);
        t.ssid = match ssid_sel % 10 {
            0 => Some(0),
            1 => Some(1),
            2 => Some(2),
            _ => None,
        };
        let want = oracle.expect(&t);
        let have = got(smmu.translate(&t));
        prop_assert_eq!(have, want, "{:?} {:#x?}", case.kind, t);
    }
    Ok(())
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Kind::S1), Just(Kind::S2), Just(Kind::Nested)],
        0..3usize,
        prop_oneof![Just(16u8), Just(25), Just(33), Just(39)],
        0..9usize,
        prop::collection::vec((0..32u64, 0..32u64, 0..6usize), 1..24),
        any::<u64>(),
        0..2u8,
        0..4u8,
        prop::collection::vec(
            (any::<u8>(), any::<u64>(), any::<u64>(), any::<u8>(), any::<u8>()),
            24..48,
        ),
    )
        .prop_map(|(kind, g, s1_t0sz, s2i, s1_maps, s2_seed, cdmax, s1dss, txs)| Case {
            kind,
            s1_tg: GRANULES[g],
            s1_t0sz,
            s2: s2_configs()[s2i],
            // Scale indices to the window in pages of the chosen granule.
            s1_maps: s1_maps
                .into_iter()
                .map(|(v, o, a)| {
                    let n = WINDOW >> GRANULES[g].lg2();
                    (v % n, (o * 7 + v) % n, a)
                })
                .collect(),
            s2_seed,
            cdmax,
            s1dss,
            txs,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hw_agrees_with_two_composed_flat_oracles(case in case_strategy()) {
        run(&case)?;
    }
}

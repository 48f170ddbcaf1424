//! VMSAv8-64 against a flat oracle: random maps (every page and block size of the granule),
//! unmaps and (stage 1) table restrictions through the builders, then every touched address
//! walked for every access and compared with a `BTreeMap` that shares no code with pgtable.
//! Also random bytes as tables: never a panic, never more reads than levels.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sviommu_memory::{FrameAllocator, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule, Oa52, Ps, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::{Access, Build, FaultKind, MapError, Nested, Walk};

const TABLES: u64 = 0x100_0000;
const TABLES_LEN: u64 = 0x200_0000;

fn memory() -> HostMemory {
    HostMemory::new(&[(Hpa(TABLES), TABLES_LEN)]).unwrap()
}

/// One configuration under test, with what the oracle needs to know of it, written out here
/// rather than asked of pgtable: the granule's page bits, the starting level, and the leaf sizes
/// (D8.3: 4K blocks at levels 1 and 2, 16K at level 2, 64K at level 2; level 0/1 with 52 bits).
#[derive(Clone, Copy, Debug)]
struct Config {
    tg: Granule,
    page_lg2: u8,
    t0sz: u8,
    /// Stage-2 SL0; `None` for stage 1.
    sl0: Option<u8>,
    start_level: u8,
    leaf_lg2: &'static [u8],
    oa_52: Oa52,
    ps: Ps,
    /// Output addresses start here.
    pa_base: u64,
}

impl Config {
    fn ia_bits(&self) -> u8 {
        64 - self.t0sz
    }
    /// Bytes one entry at `level` spans.
    fn span_lg2(&self, level: u8) -> u8 {
        self.page_lg2 + (self.page_lg2 - 3) * (3 - level)
    }
}

const fn cfg(
    tg: Granule,
    t0sz: u8,
    sl0: Option<u8>,
    start_level: u8,
    leaf_lg2: &'static [u8],
) -> Config {
    let page_lg2 = match tg {
        Granule::K4 => 12,
        Granule::K16 => 14,
        Granule::K64 => 16,
    };
    Config {
        tg,
        page_lg2,
        t0sz,
        sl0,
        start_level,
        leaf_lg2,
        oa_52: Oa52::Off,
        ps: Ps::Bits48,
        pa_base: 0x0000_1230_0000_0000,
    }
}

const fn wide(c: Config, oa_52: Oa52) -> Config {
    Config { oa_52, ps: Ps::Bits52, pa_base: 0x000f_5230_0000_0000, ..c }
}

const S1_CONFIGS: &[Config] = &[
    cfg(Granule::K4, 16, None, 0, &[12, 21, 30]),
    cfg(Granule::K4, 25, None, 1, &[12, 21, 30]),
    cfg(Granule::K16, 16, None, 0, &[14, 25]),
    cfg(Granule::K16, 28, None, 2, &[14, 25]),
    cfg(Granule::K64, 16, None, 1, &[16, 29]),
    cfg(Granule::K64, 22, None, 2, &[16, 29]),
    // 52-bit outputs: 4K with LPA2 (level-0 512G blocks), 16K with LPA2 (52-bit input, level-1
    // 64G blocks), 64K with LPA (52-bit input, level-1 4T blocks).
    wide(cfg(Granule::K4, 16, None, 0, &[12, 21, 30, 39]), Oa52::Lpa2),
    wide(cfg(Granule::K16, 12, None, 0, &[14, 25, 36]), Oa52::Lpa2),
    wide(cfg(Granule::K64, 12, None, 1, &[16, 29, 42]), Oa52::Lpa),
];

const S2_CONFIGS: &[Config] = &[
    cfg(Granule::K4, 16, Some(2), 0, &[12, 21, 30]),
    cfg(Granule::K4, 24, Some(1), 1, &[12, 21, 30]), // 2 concatenated
    cfg(Granule::K4, 30, Some(0), 2, &[12, 21]),     // 16 concatenated
    cfg(Granule::K16, 28, Some(1), 2, &[14, 25]),
    cfg(Granule::K16, 25, Some(1), 2, &[14, 25]), // 8 concatenated
    cfg(Granule::K16, 17, Some(2), 1, &[14, 25]),
    cfg(Granule::K64, 22, Some(1), 2, &[16, 29]),
    cfg(Granule::K64, 18, Some(1), 2, &[16, 29]), // 16 concatenated
    cfg(Granule::K64, 16, Some(2), 1, &[16, 29]),
    wide(cfg(Granule::K4, 16, Some(2), 0, &[12, 21, 30, 39]), Oa52::Lpa2),
    wide(cfg(Granule::K16, 12, Some(3), 0, &[14, 25, 36]), Oa52::Lpa2),
    wide(cfg(Granule::K64, 12, Some(2), 1, &[16, 29, 42]), Oa52::Lpa),
];

/// Leaf rights an op asks for (stage 1 uses all; stage 2 reads `write`, `read` = `user`, and
/// `exec` = `user_exec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rights {
    write: bool,
    user: bool,
    user_exec: bool,
    priv_exec: bool,
    dbm: bool,
}

fn rights() -> impl Strategy<Value = Rights> {
    any::<[bool; 5]>().prop_map(|b| Rights {
        write: b[0],
        user: b[1],
        user_exec: b[2],
        priv_exec: b[3],
        dbm: b[4],
    })
}

#[derive(Clone, Debug)]
enum Op {
    Map { va: u64, lg2: u8, r: Rights },
    Unmap { va: u64, len: u64 },
    Restrict { va: u64, level: u8, r: Rights },
}

/// Inputs in three windows (bottom, middle, top of the input range), built from the leaf sizes
/// so that pages fall inside blocks and blocks over pages often.
fn ops(c: Config) -> impl Strategy<Value = Vec<Op>> {
    let ia = c.ia_bits();
    let sizes = c.leaf_lg2;
    let top = *sizes.last().unwrap();
    let windows = vec![0u64, 1 << (ia - 1), (1u64 << ia) - (4 << top)];
    let addr = (prop::sample::select(windows), 0u64..4, 0u64..4, 0u64..4).prop_map(
        move |(base, a, b, d)| {
            let mut va = base + (a << top);
            if let Some(&mid) = sizes.iter().rev().nth(1) {
                va += b << mid;
            }
            if let Some(&low) = sizes.iter().rev().nth(2) {
                va += d << low;
            }
            va
        },
    );
    let align = |va: u64, lg2: u8| va & !((1u64 << lg2) - 1);
    let levels = c.start_level..3;
    let op = prop_oneof![
        5 => (addr.clone(), prop::sample::select(sizes.to_vec()), rights())
            .prop_map(move |(va, lg2, r)| Op::Map { va: align(va, lg2), lg2, r }),
        2 => (addr.clone(), prop::sample::select(sizes.to_vec()), 1u64..3)
            .prop_map(move |(va, lg2, n)| {
                // Within the input range: past its end an unmap is refused.
                let va = align(va, lg2);
                Op::Unmap { va, len: (n << lg2).min((1u64 << ia) - va) }
            }),
        2 => (addr, levels, rights()).prop_map(|(va, level, r)| Op::Restrict { va, level, r }),
    ];
    prop::collection::vec(op, 1..40)
}

/// What a table descriptor above the leaf takes away.
#[derive(Clone, Copy, Debug, Default)]
struct Restriction {
    no_write: bool,
    no_el0: bool,
    uxn: bool,
    pxn: bool,
}

#[derive(Default)]
struct Oracle {
    /// start -> (size_lg2, output, rights)
    maps: BTreeMap<u64, (u8, u64, Rights)>,
    /// (start, span_lg2) of every table descriptor the builders made.
    tables: BTreeSet<(u64, u8)>,
    /// (start, span_lg2) of a table descriptor -> what it takes away.
    restrictions: BTreeMap<(u64, u8), Restriction>,
}

impl Oracle {
    fn find(&self, va: u64) -> Option<(u64, u8, u64, Rights)> {
        let (&start, &(lg2, out, r)) = self.maps.range(..=va).next_back()?;
        (va - start < (1u64 << lg2)).then_some((start, lg2, out, r))
    }

    fn overlaps(&self, start: u64, lg2: u8) -> bool {
        let (s0, e0) = (u128::from(start), u128::from(start) + (1u128 << lg2));
        self.maps.iter().any(|(&s, &(l, _, _))| {
            let (s1, e1) = (u128::from(s), u128::from(s) + (1u128 << l));
            s1 < e0 && s0 < e1
        })
    }

    /// Drops the table descriptors (and their restrictions) inside `[start, start + 2^lg2)`,
    /// including one at exactly that span: a block took their place.
    fn drop_tables_under(&mut self, start: u64, lg2: u8) {
        let inside = |&(s, l): &(u64, u8)| l <= lg2 && s >> lg2 == start >> lg2;
        self.tables.retain(|k| !inside(k));
        self.restrictions.retain(|k, _| !inside(k));
    }

    fn restriction(&self, va: u64, hpd: bool) -> Restriction {
        let mut acc = Restriction::default();
        if hpd {
            return acc;
        }
        for (&(s, l), r) in &self.restrictions {
            if va >> l == s >> l {
                acc.no_write |= r.no_write;
                acc.no_el0 |= r.no_el0;
                acc.uxn |= r.uxn;
                acc.pxn |= r.pxn;
            }
        }
        acc
    }
}

/// The stage-1 rules restated (D8.4): EL1 always reads; writes need AP[2] clear (or DBM with
/// HD) and no APTable[1]; EL0 has data access with AP[1] and no APTable[0]; EL0 executes unless
/// UXN/UXNTable (or WXN and EL0-writable); EL1 executes unless PXN/PXNTable, EL0-writable, or WXN
/// and writable.
fn s1_allows(r: Rights, x: Restriction, hd: bool, wxn: bool, a: Access) -> bool {
    let writable = (r.write || (hd && r.dbm)) && !x.no_write;
    let el0 = r.user && !x.no_el0;
    let el0_writable = el0 && writable;
    match (a.privileged, a.write, a.exec) {
        (true, _, true) => {
            let wxn_denies = wxn && writable;
            r.priv_exec && !x.pxn && !el0_writable && !wxn_denies
        }
        (false, _, true) => r.user_exec && !x.uxn && !(wxn && el0_writable),
        (true, true, false) => writable,
        (true, false, false) => true,
        (false, true, false) => el0_writable,
        (false, false, false) => el0,
    }
}

/// Stage 2 (D8.4): S2AP[0] read, S2AP[1] (or DBM with HD) write, XN clear execute.
fn s2_allows(r: Rights, hd: bool, a: Access) -> bool {
    if a.exec {
        r.user_exec
    } else if a.write {
        r.write || (hd && r.dbm)
    } else {
        r.user
    }
}

const ACCESSES: [Access; 6] = [
    Access::READ,
    Access::WRITE,
    Access::EXEC,
    Access::READ.privileged(),
    Access::WRITE.privileged(),
    Access::EXEC.privileged(),
];

/// Either stage's tables, behind one interface for the driver loop.
enum Tables {
    S1(VmsaS1),
    S2(VmsaS2),
}

impl Tables {
    fn map(
        &self,
        mem: &HostMemory,
        fa: &mut FrameAllocator<Hpa>,
        va: u64,
        pa: u64,
        lg2: u8,
        r: Rights,
    ) -> Result<(), MapError> {
        match self {
            Tables::S1(t) => {
                let attrs = S1Attrs {
                    writable: r.write,
                    user: r.user,
                    user_exec: r.user_exec,
                    priv_exec: r.priv_exec,
                    global: false,
                    dbm: r.dbm,
                    attr_indx: 1,
                };
                t.map(mem, fa, va, pa, lg2, attrs)
            }
            Tables::S2(t) => {
                let attrs = S2Attrs {
                    read: r.user,
                    write: r.write,
                    exec: r.user_exec,
                    dbm: r.dbm,
                    mem_attr: 0b1111,
                };
                t.map(mem, fa, va, pa, lg2, attrs)
            }
        }
    }

    fn unmap(&self, mem: &HostMemory, va: u64, len: u64) -> Result<u64, MapError> {
        match self {
            Tables::S1(t) => t.unmap(mem, va, len),
            Tables::S2(t) => t.unmap(mem, va, len),
        }
        .map(|u| u.bytes)
    }

    fn translate(&self, mem: &HostMemory, va: u64, a: Access) -> Result<u64, FaultKind> {
        match self {
            Tables::S1(t) => t.translate(mem, va, a),
            Tables::S2(t) => t.translate(mem, va, a),
        }
        .outcome
        .map(|l| l.output)
        .map_err(|f| f.kind)
    }
}

#[derive(Clone, Copy, Debug)]
struct Knobs {
    hd: bool,
    wxn: bool,
    hpd: bool,
}

fn run(c: Config, k: Knobs, ops: Vec<Op>, extra: Vec<u64>) -> Result<(), TestCaseError> {
    let mem = memory();
    let mut fa = FrameAllocator::new(&[(Hpa(TABLES), TABLES_LEN)]);
    let tables = match c.sl0 {
        None => {
            let t = VmsaS1 {
                ips: c.ps,
                oa_52: c.oa_52,
                hd: k.hd,
                wxn: k.wxn,
                hpd: k.hpd,
                ..VmsaS1::new(0, c.tg, c.t0sz)
            };
            let t = VmsaS1::create(&mem, &mut fa, t).unwrap();
            prop_assert_eq!(t.start_level(), c.start_level as i8);
            Tables::S1(t)
        }
        Some(sl0) => {
            let t =
                VmsaS2 { ps: c.ps, oa_52: c.oa_52, hd: k.hd, ..VmsaS2::new(0, c.tg, c.t0sz, sl0) };
            let t = VmsaS2::create(&mem, &mut fa, t).unwrap();
            prop_assert_eq!(t.start_level(), c.start_level as i8);
            // The concatenated starting table is aligned to its size.
            let start_bits = c.ia_bits() - c.span_lg2(c.start_level);
            prop_assert_eq!(t.ttb & ((8u64 << start_bits) - 1), 0);
            Tables::S2(t)
        }
    };
    let mut oracle = Oracle::default();
    let mut probes = extra;
    for op in ops {
        match op {
            Op::Map { va, lg2, r } => {
                let pa =
                    (c.pa_base + ((va ^ (va >> 7)) & ((1u64 << 40) - 1))) & !((1u64 << lg2) - 1);
                let got = tables.map(&mem, &mut fa, va, pa, lg2, r);
                if oracle.overlaps(va, lg2) {
                    prop_assert!(matches!(got, Err(MapError::Overlap { .. })), "{:?}", got);
                    // A block over tables that map nothing replaces them.
                } else {
                    prop_assert_eq!(got, Ok(()));
                    oracle.drop_tables_under(va, lg2);
                    oracle.maps.insert(va, (lg2, pa, r));
                    for level in c.start_level..3 {
                        let span = c.span_lg2(level);
                        if span > lg2 {
                            oracle.tables.insert((va & !((1u64 << span) - 1), span));
                        }
                    }
                }
                probes.extend([va, va + (1 << lg2) - 8, va + ((1 << lg2) >> 1)]);
            }
            Op::Unmap { va, len } => {
                let got = tables.unmap(&mem, va, len);
                let end = u128::from(va) + u128::from(len);
                let cut = oracle.maps.iter().any(|(&s, &(l, _, _))| {
                    let (s, e) = (u128::from(s), u128::from(s) + (1u128 << l));
                    s < end && u128::from(va) < e && (s < u128::from(va) || e > end)
                });
                if cut {
                    prop_assert!(matches!(got, Err(MapError::SplitsLeaf { .. })), "{:?}", got);
                } else {
                    let inside = |s: u64| s >= va && u128::from(s) < end;
                    let bytes: u64 = oracle
                        .maps
                        .iter()
                        .filter(|(&s, _)| inside(s))
                        .map(|(_, &(l, _, _))| 1u64 << l)
                        .sum();
                    prop_assert_eq!(got, Ok(bytes));
                    oracle.maps.retain(|&s, _| !inside(s));
                }
                probes.push(va);
            }
            Op::Restrict { va, level, r } => {
                let Tables::S1(t) = &tables else { continue };
                let allow = S1Attrs {
                    writable: r.write,
                    user: r.user,
                    user_exec: r.user_exec,
                    priv_exec: r.priv_exec,
                    global: false,
                    dbm: false,
                    attr_indx: 0,
                };
                let span = c.span_lg2(level);
                let key = (va & !((1u64 << span) - 1), span);
                let done = t.restrict(&mem, va, level as i8, allow).unwrap();
                prop_assert_eq!(
                    done,
                    oracle.tables.contains(&key),
                    "restrict {:#x} level {}",
                    va,
                    level
                );
                if done {
                    let x = oracle.restrictions.entry(key).or_default();
                    x.no_write |= !r.write;
                    x.no_el0 |= !r.user;
                    x.uxn |= !r.user_exec;
                    x.pxn |= !r.priv_exec;
                }
                probes.push(va);
            }
        }
    }
    for va in probes {
        for a in ACCESSES {
            let want = match oracle.find(va) {
                None => Err(FaultKind::Translation),
                Some((start, _, out, r)) => {
                    let ok = match &tables {
                        Tables::S1(_) => {
                            s1_allows(r, oracle.restriction(va, k.hpd), k.hd, k.wxn, a)
                        }
                        Tables::S2(_) => s2_allows(r, k.hd, a),
                    };
                    if ok {
                        Ok(out + (va - start))
                    } else {
                        Err(FaultKind::Permission)
                    }
                }
            };
            prop_assert_eq!(tables.translate(&mem, va, a), want, "{:#x} {:?}", va, a);
        }
    }
    Ok(())
}

fn knobs() -> impl Strategy<Value = Knobs> {
    any::<[bool; 3]>().prop_map(|b| Knobs { hd: b[0], wxn: b[1], hpd: b[2] })
}

fn case(configs: &'static [Config]) -> impl Strategy<Value = (Config, Knobs, Vec<Op>, Vec<u64>)> {
    prop::sample::select(configs.to_vec()).prop_flat_map(|c| {
        let ia = c.ia_bits();
        (Just(c), knobs(), ops(c), prop::collection::vec(0u64..(1u64 << ia), 8))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn stage_1_agrees_with_oracle((c, k, ops, extra) in case(S1_CONFIGS)) {
        run(c, k, ops, extra)?;
    }

    #[test]
    fn stage_2_agrees_with_oracle((c, k, ops, extra) in case(S2_CONFIGS)) {
        run(c, k, ops, extra)?;
    }
}

/// Every configuration is exercised at least once, whatever the random draw.
#[test]
fn every_configuration_maps_each_leaf_size() {
    for &c in S1_CONFIGS.iter().chain(S2_CONFIGS) {
        let ops: Vec<Op> = c
            .leaf_lg2
            .iter()
            .enumerate()
            .map(|(i, &lg2)| Op::Map {
                va: (1u64 << c.ia_bits()) - ((i as u64 + 1) << c.leaf_lg2.last().unwrap()),
                lg2,
                r: Rights {
                    write: true,
                    user: true,
                    user_exec: false,
                    priv_exec: true,
                    dbm: false,
                },
            })
            .collect();
        let k = Knobs { hd: false, wxn: false, hpd: false };
        run(c, k, ops, vec![0]).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Random bytes as tables.
// ---------------------------------------------------------------------------------------------

/// xorshift64*, so a case's 256K of table bytes come from one shrinkable seed.
fn fill(mem: &HostMemory, base: u64, words: u64, mut seed: u64) {
    seed |= 1;
    for i in 0..words {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        mem.write_u64(Hpa(base + 8 * i), seed.wrapping_mul(0x2545_f491_4f6c_dd1d)).unwrap();
    }
}

const RANDOM_LEN: u64 = 0x4_0000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the bytes, the walk ends in a translation or a typed fault, reads at most one
    /// entry per level (the nested walk: at most the 2D bound), and never panics.
    #[test]
    fn random_tables_only_fault(
        seed in any::<u64>(),
        s1c in prop::sample::select(S1_CONFIGS.to_vec()),
        s2c in prop::sample::select(S2_CONFIGS.to_vec()),
        pointers in prop::collection::vec((0u64..(RANDOM_LEN / 8), 0u64..4, any::<bool>()), 0..64),
        roots in (0u64..4, 0u64..4),
        inputs in prop::collection::vec(any::<u64>(), 16),
        knobs in any::<[bool; 5]>(),
    ) {
        let mem = HostMemory::new(&[(Hpa(TABLES), RANDOM_LEN)]).unwrap();
        fill(&mem, TABLES, RANDOM_LEN / 8, seed);
        // Point some descriptors at the random 64K pages, as tables or blocks, so walks go deep.
        for &(i, page, table) in &pointers {
            let raw = (TABLES + page * 0x1_0000) | if table { 0b11 } else { 0b01 } | 1 << 10;
            mem.write_u64(Hpa(TABLES + 8 * i), raw).unwrap();
        }
        let s1 = VmsaS1 {
            oa_52: s1c.oa_52,
            ips: s1c.ps,
            ha: knobs[0],
            hd: knobs[1],
            hpd: knobs[2],
            wxn: knobs[3],
            ttb1: knobs[4],
            ..VmsaS1::new(TABLES + roots.0 * 0x1_0000, s1c.tg, s1c.t0sz)
        };
        let s2 = VmsaS2 {
            oa_52: s2c.oa_52,
            ps: s2c.ps,
            ha: knobs[0],
            hd: knobs[1],
            ..VmsaS2::new(TABLES + roots.1 * 0x1_0000, s2c.tg, s2c.t0sz, s2c.sl0.unwrap())
        };
        let d1 = u32::from(4 - s1c.start_level);
        let d2 = u32::from(4 - s2c.start_level);
        for &va in &inputs {
            // Inputs in range half the time, so the walks do start.
            let ia = s1c.ia_bits();
            let in_range = va & ((1u64 << ia) - 1);
            let in_range = if knobs[4] { in_range | !((1u64 << ia) - 1) } else { in_range };
            for va in [va, in_range] {
                for a in [Access::READ, Access::WRITE.privileged(), Access::EXEC] {
                    let w = s1.translate(&mem, va, a);
                    prop_assert!(w.reads <= d1, "{} reads", w.reads);
                    prop_assert!(w.updates <= 1);
                    let w = s2.translate(&mem, va & ((1u64 << s2c.ia_bits()) - 1), a);
                    prop_assert!(w.reads <= d2, "{} reads", w.reads);
                    let w = Nested { s1: &s1, s2: &s2 }.translate(&mem, va, a);
                    prop_assert!(w.reads <= d1 * (d2 + 1) + d2, "{} reads", w.reads);
                }
            }
        }
    }
}

//! Step (d): the caches (IHI 0070 G.b §16.2, §3.21). Each test changes a structure or table in
//! memory, sees the cached (stale) result, checks that non-matching or narrower commands leave
//! it, and that the matching command, completed by CMD_SYNC, removes it. Read counts show what
//! each cache saves.

mod common;

use common::*;
use sviommu_memory::{FrameAllocator, HostMemory, Hpa};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::Build;
use sviommu_smmuv3::hw::{Abort, Access, Silent, Smmu, Transaction};
use sviommu_smmuv3::spec::{Command, EventId, Granule, Opcode, StreamConfig};

type Sm<'a> = Smmu<&'a HostMemory>;

const VA: u64 = 0x40_0000;
const PA: u64 = 0x9000_0000;
const NEW_PA: u64 = 0xa000_0000;
const ASID: u16 = 1;

fn t(addr: u64) -> Transaction {
    Transaction::new(0, addr, Access::READ)
}

struct S1<'a> {
    mem: &'a HostMemory,
    fr: FrameAllocator<Hpa>,
    s1: VmsaS1,
    ste: u64,
    cd: u64,
    q: Cmdq,
}

/// A stage-1-only stream (VMID 0, ASID 1, 4K, 3 levels) mapping 16 pages at VA, a cached SMMU
/// and a Command queue.
fn stage1(mem: &HostMemory) -> (S1<'_>, Sm<'_>) {
    let mut fr = frames();
    let s1 = VmsaS1::create(mem, &mut fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    for p in 0..16u64 {
        s1.map(mem, &mut fr, VA + (p << 12), PA + (p << 12), 12, S1Attrs::ALL).unwrap();
    }
    let cd = alloc(mem, &mut fr, 12);
    write_cd(mem, cd, &cd_for(&s1, ASID));
    let ste = alloc(mem, &mut fr, 12);
    write_ste(mem, ste, &ste_s1(cd, 0, None));
    let qbase = alloc(mem, &mut fr, 12);
    let smmu = Smmu::new(mem, Default::default());
    enable_linear(&smmu, ste, 0);
    let q = Cmdq::enable(&smmu, qbase, 4);
    (S1 { mem, fr, s1, ste, cd, q }, smmu)
}

impl S1<'_> {
    fn remap(&mut self, va: u64, pa: u64) {
        self.s1.unmap(self.mem, va, 0x1000).unwrap();
        self.s1.map(self.mem, &mut self.fr, va, pa, 12, S1Attrs::ALL).unwrap();
    }
    fn run(&mut self, smmu: &Sm<'_>, c: Command) {
        self.q.submit(self.mem, smmu, &[c, sync()]);
        assert_eq!(Cmdq::cons(smmu), u64::from(self.q.prod.to_reg(4)), "{c:?} completed");
    }
}

fn out(smmu: &Sm<'_>, addr: u64) -> (u64, u32) {
    let tr = smmu.translate(&t(addr)).unwrap();
    (tr.output, tr.reads)
}

/// Makes `c` a range invalidation of 4K pages (`range`: NUM and SCALE, §4.4.1.1) or leaves it
/// one page; the pages it covers.
fn set_range(c: &mut Command, range: Option<(u8, u8)>) -> u64 {
    match range {
        Some((num, scale)) => {
            c.set_tg(Some(Granule::Size4K));
            c.set_num(num);
            c.set_scale(scale);
            (u64::from(num) + 1) << scale
        }
        None => 1,
    }
}

fn tlbi(op: Opcode, vmid: u16, asid: u16, addr: u64, leaf: bool) -> Command {
    let mut c = Command::new(op);
    c.set_vmid(vmid);
    if matches!(op, Opcode::TlbiNhAsid | Opcode::TlbiNhVa) {
        c.set_asid(asid);
    }
    if matches!(op, Opcode::TlbiNhVa | Opcode::TlbiNhVaa) {
        c.set_address(addr);
        c.set_leaf(leaf);
    }
    if op == Opcode::TlbiS2Ipa {
        c.set_ipa(addr);
        c.set_leaf(leaf);
    }
    c
}

fn cfgi(op: Opcode, sid: u32, ssid: u32) -> Command {
    let mut c = Command::new(op);
    c.set_sid(sid);
    if op == Opcode::CfgiCd {
        c.set_ssid(ssid);
    }
    c
}

#[test]
fn warm_translations_read_less_than_cold_ones() {
    let mem = memory();
    let (mut s, smmu) = stage1(&mem);
    // Cold: STE, CD, three table levels.
    assert_eq!(out(&smmu, VA + 0x10), (PA + 0x10, 5));
    // TLB hit: nothing read.
    assert_eq!(out(&smmu, VA + 0x20), (PA + 0x20, 0));
    // Another page of the same last-level table: STE and CD cached, the walk resumes at the
    // level-3 table (walk cache): one read.
    assert_eq!(out(&smmu, VA + 0x1010), (PA + 0x1010, 1));
    // Without the walk cache entries (NH_VA Leaf == 0 drops the tables on the VA's path): the
    // configuration is still cached, the walk reads all three levels.
    s.run(&smmu, tlbi(Opcode::TlbiNhVa, 0, ASID, VA + 0x2000, false));
    assert_eq!(out(&smmu, VA + 0x2010), (PA + 0x2010, 3));
    // Leaf == 1 keeps the walk caches: one read after the TLB entry is gone.
    s.run(&smmu, tlbi(Opcode::TlbiNhVa, 0, ASID, VA + 0x2000, true));
    assert_eq!(out(&smmu, VA + 0x2010), (PA + 0x2010, 1));
}

/// The STE cache: a changed STE is not seen until CFGI_STE, CFGI_STE_RANGE or CFGI_ALL.
#[test]
fn ste_cache_is_stale_until_cfgi_ste() {
    let mut abort = ste_with_config(StreamConfig::Abort);
    abort.set_v(true);
    let removers = [cfgi(Opcode::CfgiSte, 0, 0), Command::cfgi_all(), {
        let mut c = cfgi(Opcode::CfgiSteRange, 3, 0);
        c.set_range(1); // StreamIDs 0..=3
        c
    }];
    for remover in removers {
        let mem = memory();
        let (mut s, smmu) = stage1(&mem);
        assert_eq!(out(&smmu, VA).0, PA);
        write_ste(s.mem, s.ste, &abort);
        // A TLB miss (another page) still finds the cached STE, and no STE read.
        assert_eq!(out(&smmu, VA + 0x1000), (PA + 0x1000, 1));
        let mut other_range = cfgi(Opcode::CfgiSteRange, 4, 0);
        other_range.set_range(1); // StreamIDs 4..=7
        for narrow in [cfgi(Opcode::CfgiSte, 1, 0), other_range, cfgi(Opcode::CfgiCdAll, 0, 0)] {
            s.run(&smmu, narrow);
            assert_eq!(out(&smmu, VA + 0x2000).0, PA + 0x2000, "{narrow:?} must not remove it");
        }
        s.run(&smmu, remover);
        assert_eq!(smmu.translate(&t(VA + 0x3000)), Err(Abort::Silent(Silent::SteAbort)));
    }
}

/// The CD cache: a changed CD is not seen until CFGI_CD, CFGI_CD_ALL (or CFGI_STE/ALL).
#[test]
fn cd_cache_is_stale_until_cfgi_cd() {
    for remover in [cfgi(Opcode::CfgiCd, 0, 0), cfgi(Opcode::CfgiCdAll, 0, 0), Command::cfgi_all()]
    {
        let mem = memory();
        let (mut s, smmu) = stage1(&mem);
        assert_eq!(out(&smmu, VA).0, PA);
        let mut bad = cd_for(&s.s1, ASID);
        bad.set_v(false);
        write_cd(s.mem, s.cd, &bad);
        assert_eq!(out(&smmu, VA + 0x1000), (PA + 0x1000, 1));
        for narrow in [
            cfgi(Opcode::CfgiCd, 0, 1),
            cfgi(Opcode::CfgiCdAll, 1, 0),
            tlbi(Opcode::TlbiNhAll, 0, 0, 0, false),
        ] {
            s.run(&smmu, narrow);
            assert_eq!(out(&smmu, VA + 0x2000).0, PA + 0x2000, "{narrow:?} must not remove it");
        }
        s.run(&smmu, remover);
        assert_eq!(id(smmu.translate(&t(VA + 0x3000))), EventId::CBadCd);
    }
}

/// The TLB: a remapped page keeps its old output, read from nothing, until a TLBI that selects
/// it; narrower or other-tag TLBIs leave it.
#[test]
fn tlb_is_stale_until_a_matching_tlbi() {
    let removers = [
        tlbi(Opcode::TlbiNhVa, 0, ASID, VA, true),
        tlbi(Opcode::TlbiNhVaa, 0, 0, VA, true),
        tlbi(Opcode::TlbiNhAsid, 0, ASID, 0, false),
        tlbi(Opcode::TlbiNhAll, 0, 0, 0, false),
        tlbi(Opcode::TlbiS12Vmall, 0, 0, 0, false),
        Command::new(Opcode::TlbiNsnhAll),
    ];
    for remover in removers {
        let mem = memory();
        let (mut s, smmu) = stage1(&mem);
        assert_eq!(out(&smmu, VA + 8), (PA + 8, 5));
        s.remap(VA, NEW_PA);
        assert_eq!(out(&smmu, VA + 8), (PA + 8, 0), "stale");
        for narrow in [
            tlbi(Opcode::TlbiNhVa, 0, ASID, VA + 0x1000, false),
            tlbi(Opcode::TlbiNhVa, 0, ASID + 1, VA, false),
            tlbi(Opcode::TlbiNhVaa, 0, 0, VA + 0x1000, false),
            tlbi(Opcode::TlbiNhAsid, 0, ASID + 1, 0, false),
            tlbi(Opcode::TlbiNhAll, 5, 0, 0, false),
            tlbi(Opcode::TlbiS12Vmall, 5, 0, 0, false),
            tlbi(Opcode::TlbiS2Ipa, 0, 0, VA, false),
            cfgi(Opcode::CfgiSte, 0, 0),
        ] {
            s.run(&smmu, narrow);
            assert_eq!(out(&smmu, VA + 8).0, PA + 8, "{narrow:?} must not remove it");
        }
        s.run(&smmu, remover);
        assert_eq!(out(&smmu, VA + 8).0, NEW_PA + 8, "{remover:?}");
    }
}

/// A global (nG == 0) entry is not tagged by ASID: NH_ASID leaves it, NH_VA of any ASID removes
/// it.
#[test]
fn global_entries_survive_asid_invalidation() {
    let mem = memory();
    let (mut s, smmu) = stage1(&mem);
    let global = S1Attrs { global: true, ..S1Attrs::ALL };
    s.s1.unmap(&s.mem, VA, 0x1000).unwrap();
    s.s1.map(&s.mem, &mut s.fr, VA, PA, 12, global).unwrap();
    assert_eq!(out(&smmu, VA).0, PA);
    s.remap(VA, NEW_PA);
    s.run(&smmu, tlbi(Opcode::TlbiNhAsid, 0, ASID, 0, false));
    assert_eq!(out(&smmu, VA), (PA, 0), "global: not selected by ASID");
    s.run(&smmu, tlbi(Opcode::TlbiNhVa, 0, ASID + 7, VA, true));
    assert_eq!(out(&smmu, VA).0, NEW_PA);
}

/// Range invalidation (SMMU_IDR3.RIL): (NUM + 1) << SCALE granules from the address.
#[test]
fn range_tlbi_selects_num_and_scale_granules() {
    let mem = memory();
    let (mut s, smmu) = stage1(&mem);
    for p in 0..8u64 {
        assert_eq!(out(&smmu, VA + (p << 12)).0, PA + (p << 12));
        s.remap(VA + (p << 12), NEW_PA + (p << 12));
    }
    let mut c = tlbi(Opcode::TlbiNhVa, 0, ASID, VA + 0x2000, true);
    c.set_tg(Some(Granule::Size4K));
    c.set_num(1);
    c.set_scale(1); // (1 + 1) << 1 = 4 pages: 2, 3, 4, 5
    s.run(&smmu, c);
    for p in 0..8u64 {
        let want = if (2..6).contains(&p) { NEW_PA } else { PA };
        assert_eq!(out(&smmu, VA + (p << 12)).0, want + (p << 12), "page {p}");
    }
}

struct S2<'a> {
    mem: &'a HostMemory,
    fr: FrameAllocator<Hpa>,
    s2: VmsaS2,
    q: Cmdq,
}

const IPA: u64 = 0x20_0000;
const VMID: u16 = 1;

/// A stage-2-only stream (VMID 1, 4K, 3 levels).
fn stage2(mem: &HostMemory) -> (S2<'_>, Sm<'_>) {
    let mut fr = frames();
    let s2 = VmsaS2::create(mem, &mut fr, VmsaS2::new(0, PtGranule::K4, 25, 1)).unwrap();
    for p in 0..4u64 {
        s2.map(mem, &mut fr, IPA + (p << 12), PA + (p << 12), 12, S2Attrs::ALL).unwrap();
    }
    let ste = alloc(mem, &mut fr, 12);
    write_ste(mem, ste, &ste_s2(&s2));
    let qbase = alloc(mem, &mut fr, 12);
    let smmu = Smmu::new(mem, Default::default());
    enable_linear(&smmu, ste, 0);
    let q = Cmdq::enable(&smmu, qbase, 4);
    (S2 { mem, fr, s2, q }, smmu)
}

#[test]
fn stage_2_tlb_is_stale_until_s2_ipa_or_s12_vmall() {
    for remover in [
        tlbi(Opcode::TlbiS2Ipa, VMID, 0, IPA, true),
        tlbi(Opcode::TlbiS12Vmall, VMID, 0, 0, false),
        Command::new(Opcode::TlbiNsnhAll),
    ] {
        let mem = memory();
        let (mut s, smmu) = stage2(&mem);
        assert_eq!(out(&smmu, IPA + 4), (PA + 4, 4), "STE + 3 levels");
        assert_eq!(out(&smmu, IPA + 0x1004), (PA + 0x1004, 1), "walk cache");
        s.s2.unmap(&s.mem, IPA, 0x1000).unwrap();
        s.s2.map(&s.mem, &mut s.fr, IPA, NEW_PA, 12, S2Attrs::ALL).unwrap();
        assert_eq!(out(&smmu, IPA + 4), (PA + 4, 0), "stale");
        for narrow in [
            tlbi(Opcode::TlbiS2Ipa, VMID, 0, IPA + 0x1000, false),
            tlbi(Opcode::TlbiS2Ipa, VMID + 1, 0, IPA, false),
            tlbi(Opcode::TlbiS12Vmall, VMID + 1, 0, 0, false),
            // Stage-1 invalidations do not select stage-2-only entries.
            tlbi(Opcode::TlbiNhAll, VMID, 0, 0, false),
            tlbi(Opcode::TlbiNhVaa, VMID, 0, IPA, false),
        ] {
            let q = &mut s.q;
            q.submit(s.mem, &smmu, &[narrow, sync()]);
            assert_eq!(out(&smmu, IPA + 4).0, PA + 4, "{narrow:?} must not remove it");
        }
        s.q.submit(s.mem, &smmu, &[remover, sync()]);
        assert_eq!(out(&smmu, IPA + 4).0, NEW_PA + 4, "{remover:?}");
    }
}

/// A write to a page whose cached entry is not dirty walks again (and sets the dirty state);
/// after that, writes hit.
#[test]
fn a_write_hit_on_a_clean_entry_walks_again() {
    let mem = &memory();
    let mut fr = frames();
    let mut s1 = VmsaS1::new(0, PtGranule::K4, 25);
    s1.ha = true;
    s1.hd = true;
    let s1 = VmsaS1::create(mem, &mut fr, s1).unwrap();
    let dbm = S1Attrs { dbm: true, writable: false, ..S1Attrs::ALL };
    s1.map(mem, &mut fr, VA, PA, 12, dbm).unwrap();
    let cd = alloc(mem, &mut fr, 12);
    write_cd(mem, cd, &cd_for(&s1, ASID));
    let smmu = Smmu::new(mem, Default::default());
    single_ste(mem, &mut fr, &smmu, &ste_s1(cd, 0, None));
    let w = Transaction::new(0, VA, Access::WRITE);
    assert_eq!(smmu.translate(&t(VA)).unwrap().reads, 5);
    assert_eq!(smmu.translate(&t(VA)).unwrap().reads, 0, "read hit");
    let first_write = smmu.translate(&w).unwrap();
    assert_eq!((first_write.output, first_write.reads), (PA, 1), "walked again (resumed)");
    assert_eq!(smmu.translate(&w).unwrap().reads, 0, "dirty now: a hit");
}

/// Nested: the stage-2 leaf cache serves the stage-1 table and CD fetches, and the walk caches
/// resume both stages. Combined entries are tagged by VA: CMD_TLBI_S2_IPA leaves them (software
/// follows it with CMD_TLBI_S12_VMALL), and it does remove the stage-2 leaf that served the
/// stage-1 table fetches.
#[test]
fn nested_walks_use_the_stage_2_leaf_cache_and_s2_ipa_leaves_combined_entries() {
    use sviommu_memory::{Address, Gpa, GuestRam, GuestRamRegion, PhysMemory};
    const GUEST_HPA: u64 = 0x80_0000;
    const GUEST_LEN: u64 = 0x40_0000;
    const DATA_IPA: u64 = 0x4000_0000;
    let mem = memory();
    let mut hf = FrameAllocator::new(&[(Hpa(FRAMES), GUEST_HPA - FRAMES)]);
    let s2 = VmsaS2::create(&mem, &mut hf, VmsaS2::new(0, PtGranule::K4, 25, 1)).unwrap();
    for page in (0..GUEST_LEN).step_by(0x1000) {
        s2.map(&mem, &mut hf, page, GUEST_HPA + page, 12, S2Attrs::ALL).unwrap();
    }
    for p in 0..4u64 {
        s2.map(&mem, &mut hf, DATA_IPA + (p << 12), PA + (p << 12), 12, S2Attrs::ALL).unwrap();
    }
    let ram = GuestRam::new(
        &mem,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_LEN, hpa: Hpa(GUEST_HPA) }],
    );
    let mut gf = FrameAllocator::new(&[(Gpa(0x1000), GUEST_LEN - 0x1000)]);
    let s1 = VmsaS1::create(&ram, &mut gf, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    for p in 0..4u64 {
        s1.map(&ram, &mut gf, VA + (p << 12), DATA_IPA + (p << 12), 12, S1Attrs::ALL).unwrap();
    }
    let cd_ipa = gf.alloc(&ram, 12).unwrap().raw();
    for (i, w) in cd_for(&s1, ASID).words().iter().enumerate() {
        ram.write_u64(Gpa(cd_ipa + 8 * i as u64), *w).unwrap();
    }
    let smmu = Smmu::new(&mem, Default::default());
    let ste = alloc(&mem, &mut hf, 12);
    write_ste(&mem, ste, &ste_s1(cd_ipa, 0, Some(&s2)));
    enable_linear(&smmu, ste, 0);
    let mut q = Cmdq::enable(&smmu, alloc(&mem, &mut hf, 12), 4);
    let uncached = {
        let s = smmu_without_caches(&mem);
        let st = alloc(&mem, &mut hf, 12);
        write_ste(&mem, st, &ste_s1(cd_ipa, 0, Some(&s2)));
        enable_linear(&s, st, 0);
        s.translate(&t(VA)).unwrap().reads
    };
    // Without caches: STE 1; CD 3 + 1; stage 1: 3 x (3 + 1); output 3 = 20.
    assert_eq!(uncached, 20);
    // Cold with caches: the CD's and the tables' IPAs share stage-2 tables, so later stage-2
    // walks resume: fewer than 20.
    // STE 1; CD: stage 2 (3) + 1; stage 1: the first table's IPA shares the CD's stage-2
    // level-3 table, so each level costs 1 + 1; output (another 1G region at stage 2): 3.
    let cold = out(&smmu, VA);
    assert_eq!(cold, (PA, 1 + 4 + 3 * 2 + 3));
    assert_eq!(out(&smmu, VA + 8), (PA + 8, 0), "TLB hit");
    // Another page: STE and CD cached; the stage-1 walk resumes at its level-3 table, whose
    // IPA the stage-2 leaf cache translates; the output IPA's stage-2 walk resumes too.
    let warm = out(&smmu, VA + 0x1000);
    assert_eq!(warm, (PA + 0x1000, 2), "stage-1 PTE + output's stage-2 PTE");
    // Remap the data IPA at stage 2: the combined entry is stale, S2_IPA leaves it (it is
    // tagged by VA), S12_VMALL removes it.
    s2.unmap(&mem, DATA_IPA, 0x1000).unwrap();
    s2.map(&mem, &mut hf, DATA_IPA, NEW_PA, 12, S2Attrs::ALL).unwrap();
    let mut ipa = Command::new(Opcode::TlbiS2Ipa);
    ipa.set_vmid(1);
    ipa.set_ipa(DATA_IPA);
    q.submit(&mem, &smmu, &[ipa, sync()]);
    assert_eq!(out(&smmu, VA), (PA, 0), "combined entry survives S2_IPA");
    let mut all = Command::new(Opcode::TlbiS12Vmall);
    all.set_vmid(1);
    q.submit(&mem, &smmu, &[all, sync()]);
    // STE and CD still cached; stage 1: the first table fetch walks stage 2 in full (3 + 1),
    // the next two resume (1 + 1 each); output: 3.
    assert_eq!(out(&smmu, VA), (NEW_PA, 4 + 2 * 2 + 3));
}

/// A stage-1 stream as [`stage1`] makes it, over an SMMU whose TLB holds `tlb` entries.
fn stage1_with_tlb(mem: &HostMemory, tlb: usize) -> (S1<'_>, Sm<'_>) {
    let (mut s, _) = stage1(mem);
    let caches = sviommu_smmuv3::hw::CacheSizes { tlb, ..Default::default() };
    let smmu = Smmu::new(mem, sviommu_smmuv3::hw::SmmuParams { caches, ..Default::default() });
    enable_linear(&smmu, s.ste, 0);
    let qbase = alloc(mem, &mut s.fr, 12);
    s.q = Cmdq::enable(&smmu, qbase, 4);
    (s, smmu)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Sixteen cached pages, one CMD_TLBI_NH_VA (one page, or with TG a range of
    /// (NUM + 1) << SCALE pages) or CMD_TLBI_NH_VAA, in a TLB small enough that the range's
    /// keys outnumber its sets (every set searched) and one large enough that only the
    /// range's sets are: exactly the pages in the range walk again, the others still hit.
    #[test]
    fn va_tlbi_removes_exactly_its_range(
        tlb in proptest::sample::select(vec![64usize, 4096]),
        every_asid in proptest::prelude::any::<bool>(),
        first in 0u64..16,
        range in proptest::option::of((0u8..4, 0u8..3)),
    ) {
        let mem = memory();
        let (mut s, smmu) = stage1_with_tlb(&mem, tlb);
        for p in 0..16u64 {
            out(&smmu, VA + (p << 12));
            proptest::prop_assert_eq!(out(&smmu, VA + (p << 12) + 8).1, 0, "page {} cached", p);
        }
        let op = if every_asid { Opcode::TlbiNhVaa } else { Opcode::TlbiNhVa };
        let mut c = tlbi(op, 0, ASID, VA + (first << 12), true);
        let pages = set_range(&mut c, range);
        s.run(&smmu, c);
        for p in 0..16u64 {
            let inside = (first..first + pages).contains(&p);
            let walked = out(&smmu, VA + (p << 12) + 16).1 > 0;
            proptest::prop_assert_eq!(walked, inside, "page {} ({} pages from {})", p, pages, first);
        }
    }
}

/// Stage-1 streams 0 to `n - 1` (VMID 0) over the same tables as [`stage1`]'s, stream `s` with
/// a CD of its own whose ASID is `ASID + s`; the pages whose bit is set in `globals` mapped
/// global (nG == 0). The SMMU's TLB holds `tlb` entries.
fn stage1_streams(mem: &HostMemory, n: u32, globals: u16, tlb: usize) -> (S1<'_>, Sm<'_>) {
    let mut fr = frames();
    let s1 = VmsaS1::create(mem, &mut fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    for p in 0..16u64 {
        let attrs = S1Attrs { global: globals >> p & 1 != 0, ..S1Attrs::ALL };
        s1.map(mem, &mut fr, VA + (p << 12), PA + (p << 12), 12, attrs).unwrap();
    }
    let table = alloc(mem, &mut fr, 12);
    let mut first_cd = 0;
    for sid in 0..n {
        let cd = alloc(mem, &mut fr, 12);
        write_cd(mem, cd, &cd_for(&s1, ASID + u16::try_from(sid).unwrap()));
        write_ste(mem, table + 64 * u64::from(sid), &ste_s1(cd, 0, None));
        if sid == 0 {
            first_cd = cd;
        }
    }
    let caches = sviommu_smmuv3::hw::CacheSizes { tlb, s1_walk: 1024, ..Default::default() };
    let smmu = Smmu::new(mem, sviommu_smmuv3::hw::SmmuParams { caches, ..Default::default() });
    enable_linear(&smmu, table, 6);
    let qbase = alloc(mem, &mut fr, 12);
    let q = Cmdq::enable(&smmu, qbase, 4);
    (S1 { mem, fr, s1, ste: table, cd: first_cd, q }, smmu)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// CMD_TLBI_NH_VAA names no ASID: with sixteen pages cached through streams of up to ten
    /// ASIDs (more than the SMMU keeps apart per VMID in some cases; some pages global), one
    /// NH_VAA of a page or a range removes exactly the range's pages under every ASID (the
    /// oracle: the range alone), in a TLB whose sets the range's keys outnumber and in one
    /// they do not; with Leaf == 0 the range's walk-cache entries go too, so each ASID's
    /// first walk after it starts at the root.
    #[test]
    fn nh_vaa_removes_exactly_its_range_under_every_asid(
        n in 1u32..11,
        globals in proptest::prelude::any::<u16>(),
        tlb in proptest::sample::select(vec![256usize, 4096]),
        first in 0u64..16,
        range in proptest::option::of((0u8..4, 0u8..3)),
        leaf in proptest::prelude::any::<bool>(),
    ) {
        let mem = memory();
        let (mut s, smmu) = stage1_streams(&mem, n, globals, tlb);
        let reads = |sid: u32, addr: u64| smmu.translate(&Transaction::new(sid, addr, Access::READ)).unwrap().reads;
        // Page p through streams p % n and (p + 1) % n.
        let mut cached: Vec<(u64, u32)> = (0..16u64)
            .flat_map(|p| [(p, (p as u32) % n), (p, (p as u32 + 1) % n)])
            .collect();
        cached.dedup();
        for &(p, sid) in &cached {
            reads(sid, VA + (p << 12));
        }
        // What the TLB holds now (a full set may have evicted one).
        let held: Vec<(u64, u32)> =
            cached.iter().copied().filter(|&(p, sid)| reads(sid, VA + (p << 12) + 8) == 0).collect();
        let mut c = tlbi(Opcode::TlbiNhVaa, 0, 0, VA + (first << 12), leaf);
        let pages = set_range(&mut c, range);
        s.run(&smmu, c);
        let inside = |p: u64| (first..first + pages).contains(&p);
        // The pages outside first (a hit inserts nothing, so nothing is evicted meanwhile).
        for &(p, sid) in held.iter().filter(|&&(p, _)| !inside(p)) {
            proptest::prop_assert_eq!(reads(sid, VA + (p << 12) + 16), 0, "page {} stream {} kept", p, sid);
        }
        let mut walked_from_root = vec![false; n as usize];
        let mut seen = std::collections::HashSet::new();
        for &(p, sid) in held.iter().filter(|&&(p, _)| inside(p)) {
            let global = globals >> p & 1 != 0;
            let r = reads(sid, VA + (p << 12) + 16);
            // A global page's entry is refilled by its first walk, which the next stream hits.
            if !global || seen.insert(p) {
                proptest::prop_assert!(r > 0, "page {} stream {} removed", p, sid);
            }
            // Three levels from the root; one from the cached last-level table.
            if r > 0 && !leaf && !walked_from_root[sid as usize] {
                proptest::prop_assert_eq!(r, 3, "stream {}: its walk-cache entries went", sid);
                walked_from_root[sid as usize] = true;
            }
        }
    }
}

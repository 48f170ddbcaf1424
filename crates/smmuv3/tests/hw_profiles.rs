//! The behaviour profiles (`SmmuParams::profile`): forgiving carries out each CFGI / TLBI when
//! it is consumed; strict only when the next CMD_SYNC completes (§3.21), or at a seeded point
//! before it, and a TLBI removes only the TG granule and TTL level it names (§4.4.1.1). Each
//! test runs one driver sequence in both profiles: the correct sequence passes in both, the
//! faulty one passes in forgiving and is caught in strict by a stale translation.

mod common;

use common::*;
use sviommu_memory::{FrameAllocator, HostMemory, Hpa};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::Build;
use sviommu_smmuv3::hw::{
    Access, Apply, Missing, Profile, Smmu, SmmuParams, Transaction, Violation,
};
use sviommu_smmuv3::spec::{Cd, Command, Granule, Opcode};

type Sm<'a> = Smmu<&'a HostMemory>;

const VA: u64 = 0x40_0000;
const PA: u64 = 0x9000_0000;
const NEW_PA: u64 = 0xa000_0000;
const ASID: u16 = 1;

struct S1<'a> {
    mem: &'a HostMemory,
    fr: FrameAllocator<Hpa>,
    s1: VmsaS1,
    ste: u64,
    cd: u64,
    q: Cmdq,
}

/// A stage-1 stream (VMID 0, ASID 1, 4K granule) mapping one page at VA, under `profile`.
fn stage1(mem: &HostMemory, profile: Profile) -> (S1<'_>, Sm<'_>) {
    let mut fr = frames();
    let s1 = VmsaS1::create(mem, &mut fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    s1.map(mem, &mut fr, VA, PA, 12, S1Attrs::ALL).unwrap();
    let cd = alloc(mem, &mut fr, 12);
    write_cd(mem, cd, &cd_for(&s1, ASID));
    let ste = alloc(mem, &mut fr, 12);
    write_ste(mem, ste, &ste_s1(cd, 0, None));
    let qbase = alloc(mem, &mut fr, 12);
    let smmu = Smmu::new(mem, SmmuParams { profile, ..SmmuParams::default() });
    enable_linear(&smmu, ste, 0);
    let q = Cmdq::enable(&smmu, qbase, 4);
    (S1 { mem, fr, s1, ste, cd, q }, smmu)
}

impl S1<'_> {
    fn remap(&mut self) {
        self.s1.unmap(self.mem, VA, 0x1000).unwrap();
        self.s1.map(self.mem, &mut self.fr, VA, NEW_PA, 12, S1Attrs::ALL).unwrap();
    }
}

fn out(smmu: &Sm<'_>) -> Option<u64> {
    smmu.translate(&Transaction::new(0, VA, Access::READ)).ok().map(|t| t.output)
}

/// CMD_TLBI_NH_VA of VA, ASID 1; with `tg_ttl`, a range of one granule of that TG and TTL.
fn tlbi_va(tg_ttl: Option<(Granule, u8)>) -> Command {
    let mut c = Command::new(Opcode::TlbiNhVa);
    c.set_asid(ASID);
    c.set_address(VA);
    c.set_leaf(true);
    if let Some((g, ttl)) = tg_ttl {
        c.set_tg(Some(g));
        c.set_ttl(ttl);
    }
    c
}

const BOTH: [Profile; 2] = [Profile::Forgiving, Profile::STRICT];

/// Remaps VA, submits `cmds`, and returns what VA translates to afterwards.
fn after(profile: Profile, cmds: &[Command]) -> Option<u64> {
    after_reported(profile, cmds).0
}

/// [`after`], with what the sanitizer reported (nothing under forgiving, checked here).
fn after_reported(profile: Profile, cmds: &[Command]) -> (Option<u64>, Vec<Violation>) {
    let mem = memory();
    let (mut s, smmu) = stage1(&mem, profile);
    assert_eq!(out(&smmu), Some(PA), "cached");
    assert_eq!(out(&smmu), Some(PA), "a hit on the entry whose AF the SMMU set");
    s.remap();
    s.q.submit(&mem, &smmu, cmds);
    let o = out(&smmu);
    (o, reported(&smmu))
}

/// The sanitizer's reports since the last call; none under forgiving.
#[track_caller]
fn reported(smmu: &Sm<'_>) -> Vec<Violation> {
    let v = smmu.violations();
    if !smmu.params().profile.is_strict() {
        assert!(v.is_empty(), "forgiving reports nothing: {v:?}");
    }
    v
}

/// The one report, which names `missing`, `unsynced` or not.
#[track_caller]
fn one(v: &[Violation], missing: Missing, unsynced: bool) {
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!((v[0].missing, v[0].unsynced), (missing, unsynced), "{}", v[0]);
}

/// What the stage-1 page at VA needs: CMD_TLBI_NH_VA, ASID 1, TG 4K, TTL 3, Leaf.
const NH_VA: Missing =
    Missing::TlbiNhVa { vmid: 0, asid: Some(ASID), addr: VA, tg_lg2: 12, ttl: 3, leaf: true };

#[test]
fn tlbi_with_its_sync_removes_the_entry_in_both_profiles() {
    for p in BOTH {
        assert_eq!(after_reported(p, &[tlbi_va(None), sync()]), (Some(NEW_PA), vec![]), "{p}");
        let exact = tlbi_va(Some((Granule::Size4K, 3)));
        assert_eq!(after(p, &[exact, sync()]), Some(NEW_PA), "{p}: TG 4K, TTL 3");
        let any_level = tlbi_va(Some((Granule::Size4K, 0)));
        assert_eq!(after(p, &[any_level, sync()]), Some(NEW_PA), "{p}: TG 4K, TTL 0");
    }
}

#[test]
fn a_tlbi_without_its_sync_is_caught_in_strict() {
    assert_eq!(after_reported(Profile::Forgiving, &[tlbi_va(None)]), (Some(NEW_PA), vec![]));
    let (o, v) = after_reported(Profile::STRICT, &[tlbi_va(None)]);
    assert_eq!(o, Some(PA), "stale until CMD_SYNC");
    one(&v, NH_VA, true);
    assert!(v[0].to_string().contains("missing CMD_SYNC after CMD_TLBI_NH_VA"), "{}", v[0]);
    // A later CMD_SYNC, in another submission, completes it.
    let mem = memory();
    let (mut s, smmu) = stage1(&mem, Profile::STRICT);
    out(&smmu);
    s.remap();
    s.q.submit(&mem, &smmu, &[tlbi_va(None)]);
    assert_eq!(out(&smmu), Some(PA));
    assert_eq!(smmu.deferred_stats().pending, 1);
    s.q.submit(&mem, &smmu, &[sync()]);
    assert_eq!(out(&smmu), Some(NEW_PA));
    assert_eq!(smmu.deferred_stats().applied_at_sync, 1);
}

#[test]
fn a_wrong_ttl_or_tg_is_caught_in_strict() {
    // The page is a level-3 leaf of a 4K-granule table.
    for wrong in [(Granule::Size4K, 2), (Granule::Size16K, 3), (Granule::Size64K, 0)] {
        let cmds = [tlbi_va(Some(wrong)), sync()];
        assert_eq!(after_reported(Profile::Forgiving, &cmds), (Some(NEW_PA), vec![]));
        let (o, v) = after_reported(Profile::STRICT, &cmds);
        assert_eq!(o, Some(PA), "{wrong:?} keeps the entry");
        one(&v, NH_VA, false);
    }
}

#[test]
fn a_cfgi_without_its_sync_is_caught_in_strict() {
    for p in BOTH {
        for with_sync in [true, false] {
            let mem = memory();
            let (mut s, smmu) = stage1(&mem, p);
            assert_eq!(out(&smmu), Some(PA));
            // The STE now aborts the stream (Config 0b000).
            write_ste(&mem, s.ste, &ste_with_config(sviommu_smmuv3::spec::StreamConfig::Abort));
            let mut c = Command::new(Opcode::CfgiSte);
            c.set_sid(0);
            c.set_leaf(true);
            let cmds: &[Command] = if with_sync { &[c, sync()] } else { &[c] };
            s.q.submit(&mem, &smmu, cmds);
            // The TLB entry is not the STE's business (§4.3.1): drop it so the STE is read.
            s.q.submit(&mem, &smmu, &[tlbi_va(None)]);
            let stale = p.is_strict() && !with_sync;
            // Strict: the TLBI is pending too, so the stale STE and TLB entry both serve.
            assert_eq!(out(&smmu).is_some(), stale, "{p}, sync {with_sync}");
            let v = reported(&smmu);
            if stale {
                one(&v, Missing::CfgiSte { sid: 0 }, true);
                assert_eq!((v[0].cache, v[0].word.addr), ("STE cache", s.ste), "{}", v[0]);
            } else {
                assert!(v.is_empty(), "{v:?}");
            }
        }
    }
}

/// The translation after each of `n` translations with a TLBI pending, under `seed`: the
/// index of the first that saw the new mapping, if any did before the sync.
fn first_fresh(seed: u64, n: usize) -> Option<usize> {
    let mem = memory();
    let (mut s, smmu) = stage1(&mem, Profile::Strict(Apply::Seeded(seed)));
    out(&smmu);
    s.remap();
    s.q.submit(&mem, &smmu, &[tlbi_va(None)]);
    let seen: Vec<_> = (0..n).map(|_| out(&smmu)).collect();
    let first = seen.iter().position(|&o| o == Some(NEW_PA));
    if let Some(i) = first {
        assert!(seen.iter().skip(i).all(|&o| o == Some(NEW_PA)), "never back to stale");
    }
    s.q.submit(&mem, &smmu, &[sync()]);
    assert_eq!(out(&smmu), Some(NEW_PA), "seed {seed}: applied by the sync at the latest");
    first
}

#[test]
fn seeded_mode_applies_each_before_its_sync_repeatably() {
    let runs: Vec<_> = (1..=8).map(|seed| first_fresh(seed, 12)).collect();
    for (seed, r) in (1..=8).zip(&runs) {
        assert_eq!(*r, first_fresh(seed, 12), "seed {seed} repeats");
    }
    assert!(runs.iter().any(Option::is_some), "some seed applies early: {runs:?}");
    assert!(runs.windows(2).any(|w| w[0] != w[1]), "seeds differ: {runs:?}");
}

#[test]
fn a_cfgi_cd_without_its_sync_is_caught_in_strict() {
    for p in BOTH {
        for with_sync in [true, false] {
            let mem = memory();
            let (mut s, smmu) = stage1(&mem, p);
            assert_eq!(out(&smmu), Some(PA));
            // The CD goes invalid (V == 0): a fresh read ends in C_BAD_CD.
            write_cd(&mem, s.cd, &Cd::default());
            let mut c = Command::new(Opcode::CfgiCd);
            c.set_sid(0);
            c.set_ssid(0);
            c.set_leaf(true);
            let cmds: &[Command] = if with_sync { &[c, sync()] } else { &[c] };
            s.q.submit(&mem, &smmu, cmds);
            let stale = p.is_strict() && !with_sync;
            assert_eq!(out(&smmu).is_some(), stale, "{p}, sync {with_sync}");
            let v = reported(&smmu);
            if stale {
                one(&v, Missing::CfgiCd { sid: 0, ssid: 0 }, true);
            } else {
                assert!(v.is_empty(), "{v:?}");
            }
        }
    }
}

#[test]
fn a_stage_2_tlbi_without_its_sync_or_with_a_wrong_ttl_is_caught_in_strict() {
    const IPA: u64 = 0x20_0000;
    let run = |p: Profile, tlbi: Command, with_sync: bool| {
        let mem = memory();
        let mut fr = frames();
        let s2 = VmsaS2::create(&mem, &mut fr, VmsaS2::new(0, PtGranule::K4, 25, 1)).unwrap();
        s2.map(&mem, &mut fr, IPA, PA, 12, S2Attrs::ALL).unwrap();
        let ste = alloc(&mem, &mut fr, 12);
        write_ste(&mem, ste, &ste_s2(&s2));
        let qbase = alloc(&mem, &mut fr, 12);
        let smmu = Smmu::new(&mem, SmmuParams { profile: p, ..SmmuParams::default() });
        enable_linear(&smmu, ste, 0);
        let mut q = Cmdq::enable(&smmu, qbase, 4);
        let t = Transaction::new(0, IPA, Access::READ);
        assert_eq!(smmu.translate(&t).unwrap().output, PA);
        s2.unmap(&mem, IPA, 0x1000).unwrap();
        s2.map(&mem, &mut fr, IPA, NEW_PA, 12, S2Attrs::ALL).unwrap();
        let cmds: &[Command] = if with_sync { &[tlbi, sync()] } else { &[tlbi] };
        q.submit(&mem, &smmu, cmds);
        (smmu.translate(&t).unwrap().output, reported(&smmu))
    };
    let s2_ipa_owed = Missing::TlbiS2Ipa { vmid: 1, addr: IPA, tg_lg2: 12, ttl: 3, leaf: true };
    let s2_ipa = |tg_ttl: Option<(Granule, u8)>| {
        let mut c = Command::new(Opcode::TlbiS2Ipa);
        c.set_vmid(1);
        c.set_ipa(IPA);
        c.set_leaf(true);
        if let Some((g, ttl)) = tg_ttl {
            c.set_tg(Some(g));
            c.set_ttl(ttl);
        }
        c
    };
    for p in BOTH {
        assert_eq!(run(p, s2_ipa(None), true), (NEW_PA, vec![]), "{p}");
        assert_eq!(run(p, s2_ipa(Some((Granule::Size4K, 3))), true), (NEW_PA, vec![]), "{p}");
    }
    assert_eq!(run(Profile::Forgiving, s2_ipa(None), false), (NEW_PA, vec![]));
    let (o, v) = run(Profile::STRICT, s2_ipa(None), false);
    assert_eq!(o, PA, "held until CMD_SYNC");
    one(&v, s2_ipa_owed, true);
    let wrong = s2_ipa(Some((Granule::Size4K, 1)));
    assert_eq!(run(Profile::Forgiving, wrong, true), (NEW_PA, vec![]));
    let (o, v) = run(Profile::STRICT, wrong, true);
    assert_eq!(o, PA, "a level-1 TTL keeps a level-3 leaf");
    one(&v, s2_ipa_owed, false);
}

#[test]
fn a_forgotten_or_misaddressed_tlbi_is_stale_in_both_and_reported_in_strict() {
    let mut elsewhere = tlbi_va(None);
    elsewhere.set_address(VA + 0x1000);
    let mut other_asid = tlbi_va(None);
    other_asid.set_asid(ASID + 1);
    for cmds in [vec![], vec![elsewhere, sync()], vec![other_asid, sync()]] {
        assert_eq!(after_reported(Profile::Forgiving, &cmds), (Some(PA), vec![]));
        let (o, v) = after_reported(Profile::STRICT, &cmds);
        assert_eq!(o, Some(PA), "{cmds:?}");
        one(&v, NH_VA, false);
        let w = &v[0].word;
        assert_eq!((v[0].cache, w.value & 0xffff_f000), ("TLB", PA), "{}", v[0]);
        assert_eq!(v[0].now & 0xffff_f000, NEW_PA, "{}", v[0]);
    }
}

//! Step (c) without a driver: CD tables, substreams, stage 1 and nested translation, and every
//! event they produce (IHI 0070 G.b §3.3.2, §3.4, §5.2 S1*, §5.3, §5.4, §7.3). CDs and L1CDs are
//! built with the spec setters, stage-1 and stage-2 tables with pgtable's builders; the SMMU is
//! programmed by raw register writes.

mod common;

use common::*;
use sviommu_memory::{
    Address, FrameAllocator, Gpa, GuestRam, GuestRamRegion, HostMemory, Hpa, PhysMemory,
};
use sviommu_pgtable::vmsa::{Granule as PtGranule, Oa52, Ps, S1Attrs, S2Attrs, VmsaS1, VmsaS2};
use sviommu_pgtable::{Build, Perms, Walk, WalkStep};
use sviommu_smmuv3::hw::{Access, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{idr0, idr1, idr5, StallModel};
use sviommu_smmuv3::spec::{Cd, Class, EventId, Granule, L1Cd, S1Dss, S1Fmt, Ste};

/// Stage-1 VAs and their outputs: VA 0x40_0000 -> 0x9000_0000 (everything), VA 0x40_0000 + one
/// page -> 0x9100_0000 (read-only, execute-never), one page each, of the tables' granule.
const VA: u64 = 0x40_0000;
const PA: u64 = 0x9000_0000;
const RO_PA: u64 = 0x9100_0000;

fn t(addr: u64, access: Access) -> Transaction {
    Transaction::new(0, addr, access)
}

fn s1_tables<M: PhysMemory + ?Sized>(
    mem: &M,
    fr: &mut FrameAllocator<M::Addr>,
    tg: PtGranule,
    t0sz: u8,
    out: u64,
) -> VmsaS1 {
    let s1 = VmsaS1::create(mem, fr, VmsaS1::new(0, tg, t0sz)).unwrap();
    let page = 1u64 << tg.lg2();
    s1.map(mem, fr, VA, out, tg.lg2(), S1Attrs::ALL).unwrap();
    s1.map(mem, fr, VA + page, out + 0x100_0000, tg.lg2(), S1Attrs::READ_ONLY).unwrap();
    s1
}

/// A stage-1-only stream over one CD for `s1`. Returns (STE address, CD address).
fn stage1_stream(
    mem: &HostMemory,
    fr: &mut FrameAllocator<Hpa>,
    s: &Smmu<&HostMemory>,
    s1: &VmsaS1,
) -> (u64, u64) {
    let cd = alloc(mem, fr, 12);
    write_cd(mem, cd, &cd_for(s1, 1));
    let base = single_ste(mem, fr, s, &ste_s1(cd, 0, None));
    (base, cd)
}

// ---- Stage 1 -----------------------------------------------------------------------------------

/// What `inspect --walk` builds on: the STE, the CD and each table entry, in order, as many as
/// the translation's read count says.
#[test]
fn translate_observed_reports_each_structure_and_entry_it_reads() {
    #[derive(Default)]
    struct Seen {
        structures: Vec<(&'static str, u64)>,
        entries: u32,
    }
    impl sviommu_pgtable::WalkObserver for Seen {
        fn step(&mut self, _step: sviommu_pgtable::WalkStep) {
            self.entries += 1;
        }
        fn structure(&mut self, what: &'static str, mem_addr: u64, words: &[u64]) {
            assert_eq!(words.len(), 8, "STEs and CDs are 64 bytes");
            self.structures.push((what, mem_addr));
        }
    }
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s1 = s1_tables(&mem, &mut fr, PtGranule::K4, 25, PA);
    let (ste, cd) = stage1_stream(&mem, &mut fr, &s, &s1);
    let (tr, seen) = s.translate_observed(&t(VA + 0x18, Access::READ), Seen::default());
    let tr = tr.unwrap();
    assert_eq!(seen.structures, [("STE", ste), ("CD", cd)]);
    assert_eq!(seen.entries + 2, tr.reads);
}

#[test]
fn stage_1_translates_with_each_granule() {
    // T0SZ 25 (39-bit VAs): 4K and 16K walk 3 levels, 64K 2.
    for (tg, levels) in [(PtGranule::K4, 3), (PtGranule::K16, 3), (PtGranule::K64, 2)] {
        let mem = memory();
        let mut fr = frames();
        let s = smmu(&mem);
        let s1 = s1_tables(&mem, &mut fr, tg, 25, PA);
        stage1_stream(&mem, &mut fr, &s, &s1);
        let tr = s.translate(&t(VA + 0x18, Access::WRITE)).unwrap();
        assert_eq!((tr.output, tr.page_lg2, tr.reads), (PA + 0x18, tg.lg2(), 2 + levels), "{tg:?}");
        let e = event(s.translate(&t(VA + (2 << tg.lg2()), Access::READ)));
        assert_eq!(
            (e.id, e.s2, e.class, e.ipa),
            (EventId::FTranslation, false, Some(Class::In), None)
        );
    }
}

#[test]
fn stage_1_permissions_follow_the_privileged_instruction_and_write_attributes() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s1 = VmsaS1::create(&mem, &mut fr, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    let kernel = S1Attrs { user: false, user_exec: false, ..S1Attrs::ALL };
    s1.map(&mem, &mut fr, VA, PA, 12, kernel).unwrap();
    s1.map(&mem, &mut fr, VA + 0x1000, PA, 12, S1Attrs::READ_ONLY).unwrap();
    let (ste_addr, cd_addr) = stage1_stream(&mem, &mut fr, &s, &s1);
    // A privileged-only page: the unprivileged read faults, the privileged write and
    // instruction fetch pass.
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!(
        (e.id, e.s2, e.class, e.pnu, e.rnw),
        (EventId::FPermission, false, Some(Class::In), false, true)
    );
    let tr = s.translate(&t(VA, Access::WRITE.privileged())).unwrap();
    assert_eq!(tr.perms, Perms::PRIV_R.union(Perms::PRIV_W).union(Perms::PRIV_X));
    assert!(s.translate(&t(VA, Access::EXEC.privileged())).is_ok());
    // Read-only, execute-never: writes and instruction fetches fault at either level.
    let e = event(s.translate(&t(VA + 0x1000, Access::WRITE.privileged())));
    assert_eq!((e.id, e.rnw, e.pnu, e.ind), (EventId::FPermission, false, true, false));
    let e = event(s.translate(&t(VA + 0x1000, Access::EXEC)));
    assert_eq!((e.id, e.ind), (EventId::FPermission, true));
    // STE.PRIVCFG = privileged makes the unprivileged read pass.
    let mut ste = ste_s1(cd_addr, 0, None);
    ste.set_privcfg(0b11);
    write_ste(&mem, ste_addr, &ste);
    assert!(s.translate(&t(VA, Access::READ)).is_ok());
    // CD.PAN: a privileged data access to an EL0-accessible page faults; execution does not.
    let mut cd = cd_for(&s1, 1);
    cd.set_pan(true);
    write_cd(&mem, cd_addr, &cd);
    assert_eq!(id(s.translate(&t(VA + 0x1000, Access::READ))), EventId::FPermission);
    assert!(s.translate(&t(VA, Access::READ)).is_ok(), "privileged-only page: PAN does not apply");
    // CD.R == 0: stage-1 faults are not recorded.
    cd.set_r(false);
    write_cd(&mem, cd_addr, &cd);
    assert!(!event(s.translate(&t(VA + 0x1000, Access::WRITE))).record);
}

#[test]
fn f_addr_size_for_a_stage_1_output_beyond_ips() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s1 = s1_tables(&mem, &mut fr, PtGranule::K4, 25, 1 << 40);
    let (_, cd_addr) = stage1_stream(&mem, &mut fr, &s, &s1);
    assert_eq!(s.translate(&t(VA, Access::READ)).unwrap().output, 1 << 40);
    let mut cd = cd_for(&s1, 1);
    cd.set_ips(0b010); // 40 bits
    write_cd(&mem, cd_addr, &cd);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!((e.id, e.s2, e.class, e.ipa), (EventId::FAddrSize, false, Some(Class::In), None));
}

#[test]
fn f_access_for_a_stage_1_page_with_af_0_unless_ha_or_affd() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s1 = VmsaS1 { ha: false, hd: false, ..s1_tables(&mem, &mut fr, PtGranule::K4, 25, PA) };
    let steps = s1.translate_observed(&mem, VA, Access::READ, Vec::<WalkStep>::new()).1;
    let leaf = steps.last().unwrap().mem_addr;
    let raw = mem.read_u64(Hpa(leaf)).unwrap();
    mem.write_u64(Hpa(leaf), raw & !(1 << 10)).unwrap();
    let (_, cd_addr) = stage1_stream(&mem, &mut fr, &s, &s1);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!((e.id, e.s2, e.class), (EventId::FAccess, false, Some(Class::In)));
    write_cd(&mem, cd_addr, &cd_for(&VmsaS1 { affd: true, ..s1 }, 1));
    assert!(s.translate(&t(VA, Access::READ)).is_ok());
}

#[test]
fn f_walk_eabt_for_a_stage_1_table_outside_memory_is_class_tt() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s1 = s1_tables(&mem, &mut fr, PtGranule::K4, 25, PA);
    // The level-1 entry (index 0) of VA points into the hole.
    mem.write_u64(Hpa(s1.ttb), HOLE | 0b11).unwrap();
    stage1_stream(&mem, &mut fr, &s, &s1);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!((e.id, e.s2, e.class), (EventId::FWalkEabt, false, Some(Class::Tt)));
    assert_eq!(e.fetch_addr, Some(HOLE + ((VA >> 21) & 0x1ff) * 8));
}

#[test]
fn epd_ttb1_and_tbi() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s1 = s1_tables(&mem, &mut fr, PtGranule::K4, 25, PA);
    let high =
        VmsaS1::create(&mem, &mut fr, VmsaS1 { ttb1: true, ..VmsaS1::new(0, PtGranule::K4, 25) })
            .unwrap();
    let hva = u64::MAX << 39 | VA;
    high.map(&mem, &mut fr, hva, 0xa000_0000, 12, S1Attrs::ALL).unwrap();
    let (_, cd_addr) = stage1_stream(&mem, &mut fr, &s, &s1);
    // TTB1 disabled (EPD1): a walk there is a stage-1 Translation fault.
    let e = event(s.translate(&t(hva, Access::READ)));
    assert_eq!((e.id, e.s2, e.class, e.addr), (EventId::FTranslation, false, Some(Class::In), hva));
    let mut cd = cd_for(&s1, 1);
    cd.set_epd1(false);
    cd.set_t1sz(25);
    cd.set_tg1(Granule::Size4K);
    cd.set_ttb1(high.ttb);
    write_cd(&mem, cd_addr, &cd);
    assert_eq!(s.translate(&t(hva + 4, Access::READ)).unwrap().output, 0xa000_0004);
    assert!(s.translate(&t(VA, Access::READ)).is_ok());
    // EPD0: now TTB0 addresses fault, and a bad T0SZ is not checked.
    cd.set_epd0(true);
    cd.set_t0sz(63);
    write_cd(&mem, cd_addr, &cd);
    assert_eq!(id(s.translate(&t(VA, Access::READ))), EventId::FTranslation);
    assert!(s.translate(&t(hva, Access::READ)).is_ok());
    // TBI0: the top byte is ignored; InputAddr keeps it.
    let tagged = 0xab00_0000_0000_0000 | VA;
    let mut cd = cd_for(&s1, 1);
    write_cd(&mem, cd_addr, &cd);
    let e = event(s.translate(&t(tagged, Access::READ)));
    assert_eq!((e.id, e.addr), (EventId::FTranslation, tagged));
    cd.set_tbi0(true);
    write_cd(&mem, cd_addr, &cd);
    assert_eq!(s.translate(&t(tagged, Access::READ)).unwrap().output, PA);
}

/// A named change to a structure.
type Edit<T> = Box<dyn Fn(&mut T)>;

// ---- C_BAD_CD ----------------------------------------------------------------------------------

#[test]
fn c_bad_cd_for_v_0_and_every_res0_bit() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s1 = s1_tables(&mem, &mut fr, PtGranule::K4, 25, PA);
    let (_, cd_addr) = stage1_stream(&mem, &mut fr, &s, &s1);
    let good = cd_for(&s1, 1);
    let mut cd = good;
    cd.set_v(false);
    write_cd(&mem, cd_addr, &cd);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!((e.id, e.record), (EventId::CBadCd, true));
    let mut n = 0;
    for (w, mask) in Cd::RES0.iter().enumerate() {
        for b in (0..64).filter(|b| mask >> b & 1 == 1) {
            let mut bad = good;
            bad.0[w] |= 1 << b;
            write_cd(&mem, cd_addr, &bad);
            assert_eq!(
                id(s.translate(&t(VA, Access::READ))),
                EventId::CBadCd,
                "bit {}",
                w * 64 + b
            );
            n += 1;
        }
    }
    assert_eq!(n, 44, "§5.4's always-RES0 bits");
}

#[test]
fn c_bad_cd_for_bad_fields() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s1 = s1_tables(&mem, &mut fr, PtGranule::K4, 25, PA);
    let (_, cd_addr) = stage1_stream(&mem, &mut fr, &s, &s1);
    let good = cd_for(&s1, 1);
    let bads: Vec<(&str, Edit<Cd>)> = vec![
        ("T0SZ below 16 (4K)", Box::new(|c: &mut Cd| c.set_t0sz(15))),
        ("T0SZ above 39 (no STT)", Box::new(|c: &mut Cd| c.set_t0sz(40))),
        ("TG0 Reserved", Box::new(|c: &mut Cd| c.set_tg0_raw(0b11))),
        (
            "TTB0 beyond IPS",
            Box::new(|c: &mut Cd| {
                c.set_ips(0b000);
                c.set_ttb0(1 << 32);
            }),
        ),
        (
            "TTB0 beyond 48 bits with 4K",
            Box::new(|c: &mut Cd| {
                c.set_ips(0b110);
                c.set_ttb0(1 << 48);
            }),
        ),
        ("AA64 == 0 (no VMSAv8-32 LPAE)", Box::new(|c: &mut Cd| c.set_aa64(false))),
        ("A == 0 with TERM_MODEL", Box::new(|c: &mut Cd| c.set_a(false))),
        ("ENDI with little-endian tables only", Box::new(|c: &mut Cd| c.set_endi(true))),
        (
            "T1SZ checked when EPD1 == 0",
            Box::new(|c: &mut Cd| {
                c.set_epd1(false);
                c.set_tg1_raw(0b10);
                c.set_t1sz(12);
            }),
        ),
        (
            "TG1 Reserved when EPD1 == 0",
            Box::new(|c: &mut Cd| {
                c.set_epd1(false);
                c.set_t1sz(25);
                c.set_tg1_raw(0b00);
            }),
        ),
    ];
    for (what, f) in bads {
        let mut cd = good;
        f(&mut cd);
        write_cd(&mem, cd_addr, &cd);
        assert_eq!(id(s.translate(&t(VA, Access::READ))), EventId::CBadCd, "{what}");
    }
    // With TTB1 disabled its fields are not checked.
    let mut cd = good;
    cd.set_t1sz(63);
    cd.set_tg1_raw(0);
    write_cd(&mem, cd_addr, &cd);
    assert!(s.translate(&t(VA, Access::READ)).is_ok());
}

#[test]
fn c_bad_cd_and_c_bad_ste_for_features_the_id_registers_do_not_advertise() {
    let mem = memory();
    let mut fr = frames();
    let s1 = s1_tables(&mem, &mut fr, PtGranule::K16, 25, PA);
    let cd_addr = alloc(&mem, &mut fr, 12);
    let base = alloc(&mem, &mut fr, 12);
    let d = SmmuParams::default();
    let (i0, i1, i5) = (u64::from(d.idr0), u64::from(d.idr1), u64::from(d.idr5));
    let p = |i0: u64, i1: u64, i5: u64| SmmuParams {
        idr0: i0 as u32,
        idr1: i1 as u32,
        idr5: i5 as u32,
        ..d
    };
    let mut asid = cd_for(&s1, 0x100);
    asid.set_ha(false);
    asid.set_hd(false);
    let mut hd = cd_for(&s1, 1);
    hd.set_ha(false);
    let mut stalld = ste_s1(cd_addr, 0, None);
    stalld.set_s1stalld(true);
    let mut cdmax = ste_s1(cd_addr, 0, None);
    cdmax.set_s1cdmax(21);
    let cases: [(&str, SmmuParams, Cd, Ste, EventId); 6] = [
        (
            "no 16K granule",
            p(i0, i1, idr5::GRAN16K.with(i5, false)),
            cd_for(&s1, 1),
            ste_s1(cd_addr, 0, None),
            EventId::CBadCd,
        ),
        (
            "8-bit ASIDs",
            p(idr0::ASID16.with(i0, false), i1, i5),
            asid,
            ste_s1(cd_addr, 0, None),
            EventId::CBadCd,
        ),
        (
            "HA without HTTU",
            p(idr0::HTTU.set(i0, 0), i1, i5),
            cd_for(&s1, 1),
            ste_s1(cd_addr, 0, None),
            EventId::CBadCd,
        ),
        (
            "HD with HTTU 0b01",
            p(idr0::HTTU.set(i0, 1), i1, i5),
            hd,
            ste_s1(cd_addr, 0, None),
            EventId::CBadCd,
        ),
        (
            "S1STALLD without the stall model",
            d.with_stall_model(StallModel::TerminateOnly),
            cd_for(&s1, 1),
            stalld,
            EventId::CBadSte,
        ),
        ("S1CDMax beyond SSIDSIZE", d, cd_for(&s1, 1), cdmax, EventId::CBadSte),
    ];
    for (what, params, cd, ste, want) in cases {
        let s = Smmu::new(&mem, params);
        write_cd(&mem, cd_addr, &cd);
        write_ste(&mem, base, &ste);
        enable_linear(&s, base, 0);
        assert_eq!(id(s.translate(&t(VA, Access::READ))), want, "{what}");
    }
}

// ---- CD tables and substreams ------------------------------------------------------------------

/// Four stage-1 configurations: CD i maps VA to PA + i * 1M (ASID i).
fn four_contexts(mem: &HostMemory, fr: &mut FrameAllocator<Hpa>) -> [Cd; 4] {
    [0u64, 1, 2, 3].map(|i| {
        let s1 = s1_tables(mem, fr, PtGranule::K4, 25, PA + i * 0x10_0000);
        cd_for(&s1, u16::try_from(i).unwrap())
    })
}

#[test]
fn linear_cd_table_s1cdmax_and_c_bad_substreamid() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let cds = four_contexts(&mem, &mut fr);
    let table = alloc(&mem, &mut fr, 12);
    for (i, cd) in cds.iter().enumerate() {
        write_cd(&mem, table + 64 * i as u64, cd);
    }
    let mut ste = ste_s1(table, 2, None);
    ste.set_s1dss(S1Dss::Substream0);
    let base = single_ste(&mem, &mut fr, &s, &ste);
    for ssid in 1..4u32 {
        let tr = s.translate(&t(VA, Access::READ).with_ssid(ssid)).unwrap();
        assert_eq!((tr.output, tr.reads), (PA + u64::from(ssid) * 0x10_0000, 5));
    }
    // SubstreamID 4 >= 2^S1CDMax.
    let e = event(s.translate(&t(VA, Access::READ).with_ssid(4)));
    assert_eq!((e.id, e.ssid, e.sid), (EventId::CBadSubstreamid, Some(4), 0));
    // S1CDMax == 0: substreams disabled; a SubstreamID is C_BAD_SUBSTREAMID.
    write_ste(&mem, base, &ste_s1(table, 0, None));
    assert_eq!(id(s.translate(&t(VA, Access::READ).with_ssid(0))), EventId::CBadSubstreamid);
    assert_eq!(s.translate(&t(VA, Access::READ)).unwrap().output, PA);
    // No substreams at all (SSIDSIZE == 0): also C_BAD_SUBSTREAMID, and S1CDMax is IGNORED.
    let d = SmmuParams::default();
    let no_ssid = SmmuParams { idr1: idr1::SSIDSIZE.set(u64::from(d.idr1), 0) as u32, ..d };
    let s = Smmu::new(&mem, no_ssid);
    write_ste(&mem, base, &ste_s1(table, 2, None));
    enable_linear(&s, base, 0);
    assert_eq!(id(s.translate(&t(VA, Access::READ).with_ssid(1))), EventId::CBadSubstreamid);
    assert_eq!(s.translate(&t(VA, Access::READ)).unwrap().output, PA, "CD 0, S1DSS IGNORED");
}

#[test]
fn s1dss_terminate_bypass_and_substream_0() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let cds = four_contexts(&mem, &mut fr);
    let table = alloc(&mem, &mut fr, 12);
    for (i, cd) in cds.iter().enumerate() {
        write_cd(&mem, table + 64 * i as u64, cd);
    }
    let base = single_ste(&mem, &mut fr, &s, &ste_s1(table, 2, None));
    let no_ssid = t(VA + 8, Access::READ);
    for (dss, want) in [
        (0b00, Err(EventId::FStreamDisabled)), // terminate
        (0b11, Err(EventId::FStreamDisabled)), // Reserved: behaves as terminate
        (0b01, Ok(VA + 8)),                    // bypass stage 1 (no stage 2: the address)
        (0b10, Ok(PA + 8)),                    // CD 0
    ] {
        let mut ste = ste_s1(table, 2, None);
        ste.set_s1dss_raw(dss);
        write_ste(&mem, base, &ste);
        match want {
            Ok(out) => {
                let tr = s.translate(&no_ssid).unwrap();
                assert_eq!(tr.output, out, "S1DSS {dss:#b}");
            }
            Err(want) => {
                let e = event(s.translate(&no_ssid));
                assert_eq!((e.id, e.sid, e.ssid), (want, 0, None), "S1DSS {dss:#b}");
            }
        }
    }
    // S1DSS == 0b10: substream 0 is taken; a transaction that names it is terminated.
    let e = event(s.translate(&t(VA, Access::READ).with_ssid(0)));
    assert_eq!(e.id, EventId::FStreamDisabled);
    assert_eq!(s.translate(&t(VA, Access::READ).with_ssid(2)).unwrap().output, PA + 0x20_0000);
    // Bypass reads no CD: one read (the STE).
    let mut ste = ste_s1(table, 2, None);
    ste.set_s1dss(S1Dss::Bypass);
    write_ste(&mem, base, &ste);
    assert_eq!(s.translate(&no_ssid).unwrap().reads, 1);
}

/// A two-level CD table of format `fmt` (S1CDMax 12) whose level-1 entry 1 points at a level-2
/// table holding `cds` from index 1. Returns (level-1 base, level-2 base, STE address).
fn two_level_cds(
    mem: &HostMemory,
    fr: &mut FrameAllocator<Hpa>,
    s: &Smmu<&HostMemory>,
    fmt: S1Fmt,
    cds: &[Cd],
) -> (u64, u64, u64) {
    let l2_lg2 = if fmt == S1Fmt::TwoLevel4K { 12 } else { 16 };
    let l1 = alloc(mem, fr, 12);
    let l2 = alloc(mem, fr, l2_lg2);
    for (i, cd) in cds.iter().enumerate() {
        write_cd(mem, l2 + 64 * (i as u64 + 1), cd);
    }
    let mut d = L1Cd::default();
    d.set_v(true);
    d.set_l2ptr(l2);
    write_l1cd(mem, l1 + 8, &d);
    let mut ste = ste_s1(l1, 12, None);
    ste.set_s1fmt(fmt);
    (l1, l2, single_ste(mem, fr, s, &ste))
}

#[test]
fn two_level_cd_tables_of_4k_and_64k_level_2_tables() {
    for (fmt, l2_bits) in [(S1Fmt::TwoLevel4K, 6u32), (S1Fmt::TwoLevel64K, 10)] {
        let mem = memory();
        let mut fr = frames();
        let s = smmu(&mem);
        let cds = four_contexts(&mem, &mut fr);
        let (l1, _, _) = two_level_cds(&mem, &mut fr, &s, fmt, &cds);
        // SubstreamID (1 << l2_bits) + 2: level-1 entry 1, level-2 entry 2.
        let ssid = (1 << l2_bits) + 2;
        let tr = s.translate(&t(VA, Access::READ).with_ssid(ssid)).unwrap();
        assert_eq!((tr.output, tr.reads), (PA + 0x10_0000, 6), "{fmt:?}: STE, L1CD, CD, 3 levels");
        // Level-1 entry 0 is invalid (V == 0): C_BAD_SUBSTREAMID.
        let e = event(s.translate(&t(VA, Access::READ).with_ssid(5)));
        assert_eq!((e.id, e.ssid), (EventId::CBadSubstreamid, Some(5)));
        // An L2Ptr beyond the OAS: C_BAD_SUBSTREAMID (§3.4.3).
        let mut d = L1Cd::default();
        d.set_v(true);
        d.set_l2ptr(1 << 52);
        write_l1cd(&mem, l1 + 16, &d);
        let e = event(s.translate(&t(VA, Access::READ).with_ssid(2 << l2_bits)));
        assert_eq!(e.id, EventId::CBadSubstreamid);
        // An L2Ptr in the hole: F_CD_FETCH at the CD's address.
        d.set_l2ptr(HOLE);
        write_l1cd(&mem, l1 + 16, &d);
        let e = event(s.translate(&t(VA, Access::READ).with_ssid((2 << l2_bits) + 3)));
        assert_eq!((e.id, e.fetch_addr), (EventId::FCdFetch, Some(HOLE + 3 * 64)));
    }
}

#[test]
fn two_level_cd_tables_need_cd2l() {
    let mem = memory();
    let mut fr = frames();
    let d = SmmuParams::default();
    let s =
        Smmu::new(&mem, SmmuParams { idr0: idr0::CD2L.with(u64::from(d.idr0), false) as u32, ..d });
    let cds = four_contexts(&mem, &mut fr);
    two_level_cds(&mem, &mut fr, &s, S1Fmt::TwoLevel4K, &cds);
    assert_eq!(id(s.translate(&t(VA, Access::READ).with_ssid(65))), EventId::CBadSte);
}

#[test]
fn f_cd_fetch_for_a_cd_or_l1cd_outside_memory() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let base = single_ste(&mem, &mut fr, &s, &ste_s1(HOLE, 0, None));
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!((e.id, e.fetch_addr, e.record), (EventId::FCdFetch, Some(HOLE), true));
    // A linear table of 2^4 CDs in the hole: the CD of SubstreamID 3.
    write_ste(&mem, base, &ste_s1(HOLE, 4, None));
    let e = event(s.translate(&t(VA, Access::READ).with_ssid(3)));
    assert_eq!((e.id, e.fetch_addr, e.ssid), (EventId::FCdFetch, Some(HOLE + 3 * 64), Some(3)));
    // A level-1 CD table in the hole: the L1CD's address.
    let mut ste = ste_s1(HOLE, 12, None);
    ste.set_s1fmt(S1Fmt::TwoLevel4K);
    write_ste(&mem, base, &ste);
    let e = event(s.translate(&t(VA, Access::READ).with_ssid(130)));
    assert_eq!((e.id, e.fetch_addr), (EventId::FCdFetch, Some(HOLE + 2 * 8)));
}

// ---- 52-bit addresses --------------------------------------------------------------------------

#[test]
fn fifty_two_bit_vas_and_pas_with_the_64k_granule() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s1 = VmsaS1::create(
        &mem,
        &mut fr,
        VmsaS1 { oa_52: Oa52::Lpa, ips: Ps::Bits52, ..VmsaS1::new(0, PtGranule::K64, 12) },
    )
    .unwrap();
    let (va, pa) = (0x000f_0000_0001_0000, 0x000e_0000_0002_0000);
    s1.map(&mem, &mut fr, va, pa, 16, S1Attrs::ALL).unwrap();
    let (base, cd_addr) = stage1_stream(&mem, &mut fr, &s, &s1);
    assert_eq!(s.translate(&t(va | 0x44, Access::READ)).unwrap().output, pa | 0x44);
    // With a 48-bit OAS (and so 48-bit VAs), T0SZ 12 is out of range.
    let s48 = Smmu::new(&mem, SmmuParams::default().with_oas_bits(48));
    enable_linear(&s48, base, 0);
    assert_eq!(id(s48.translate(&t(va, Access::READ))), EventId::CBadCd);
    let _ = cd_addr;
}

// ---- Nested ------------------------------------------------------------------------------------

/// Guest RAM: IPA [0, 4M) at HPA [8M, 12M). Host tables come from [1M, 8M).
const GUEST_HPA: u64 = 0x80_0000;
const GUEST_LEN: u64 = 0x40_0000;
/// Stage 1 maps VA to this IPA, which stage 2 maps to PA.
const DATA_IPA: u64 = 0x4000_0000;

struct Nest<'m> {
    ram: GuestRam<&'m HostMemory>,
    s1: VmsaS1,
    s2: VmsaS2,
    cd_ipa: u64,
    host_frames: FrameAllocator<Hpa>,
}

fn nest(mem: &HostMemory) -> Nest<'_> {
    let mut host_frames = FrameAllocator::new(&[(Hpa(FRAMES), GUEST_HPA - FRAMES)]);
    let s2 = VmsaS2::create(mem, &mut host_frames, VmsaS2::new(0, PtGranule::K4, 25, 1)).unwrap();
    for page in (0..GUEST_LEN).step_by(0x1000) {
        s2.map(mem, &mut host_frames, page, GUEST_HPA + page, 12, S2Attrs::ALL).unwrap();
    }
    s2.map(mem, &mut host_frames, DATA_IPA, PA, 12, S2Attrs::ALL).unwrap();
    s2.map(mem, &mut host_frames, DATA_IPA + 0x1000, RO_PA, 12, S2Attrs::READ_ONLY).unwrap();
    let ram = GuestRam::new(
        mem,
        vec![GuestRamRegion { gpa: Gpa(0), len_bytes: GUEST_LEN, hpa: Hpa(GUEST_HPA) }],
    );
    let mut gf = FrameAllocator::new(&[(Gpa(0x1000), GUEST_LEN - 0x1000)]);
    let s1 = VmsaS1::create(&ram, &mut gf, VmsaS1::new(0, PtGranule::K4, 25)).unwrap();
    s1.map(&ram, &mut gf, VA, DATA_IPA, 12, S1Attrs::ALL).unwrap();
    s1.map(&ram, &mut gf, VA + 0x1000, DATA_IPA + 0x1000, 12, S1Attrs::ALL).unwrap();
    s1.map(&ram, &mut gf, VA + 0x2000, DATA_IPA + 0x2000, 12, S1Attrs::ALL).unwrap();
    let cd_ipa = gf.alloc(&ram, 12).unwrap().raw();
    for (i, w) in cd_for(&s1, 1).words().iter().enumerate() {
        ram.write_u64(Gpa(cd_ipa + 8 * i as u64), *w).unwrap();
    }
    Nest { ram, s1, s2, cd_ipa, host_frames }
}

impl Nest<'_> {
    /// The guest-physical address of the stage-1 table page the walk for VA reads at `level`.
    fn s1_table_ipa(&self, level: i8) -> u64 {
        let steps =
            self.s1.translate_observed(&self.ram, VA, Access::READ, Vec::<WalkStep>::new()).1;
        steps.iter().find(|s| s.level == level).unwrap().table_addr & !0xfff
    }

    /// Unmaps one guest page at stage 2.
    fn unmap(&mut self, mem: &HostMemory, ipa: u64) {
        self.s2.unmap(mem, ipa, 0x1000).unwrap();
    }

    /// Maps one guest page at stage 2 anew.
    fn remap(&mut self, mem: &HostMemory, ipa: u64, pa: u64, attrs: S2Attrs) {
        self.unmap(mem, ipa);
        self.s2.map(mem, &mut self.host_frames, ipa, pa, 12, attrs).unwrap();
    }
}

fn nested_stream(mem: &HostMemory, n: &mut Nest<'_>, s: &Smmu<&HostMemory>) -> u64 {
    let base = alloc(mem, &mut n.host_frames, 12);
    write_ste(mem, base, &ste_s1(n.cd_ipa, 0, Some(&n.s2)));
    enable_linear(s, base, 0);
    base
}

#[test]
fn nested_translation_walks_every_stage_1_read_through_stage_2() {
    let mem = memory();
    let mut n = nest(&mem);
    let s = smmu(&mem);
    nested_stream(&mem, &mut n, &s);
    let tr = s.translate(&t(VA + 0x123, Access::WRITE)).unwrap();
    // STE 1; CD: 3 stage-2 reads + 1; stage 1: 3 x (3 + 1); output: 3.
    assert_eq!((tr.output, tr.page_lg2, tr.reads), (PA + 0x123, 12, 20));
    // Stage 2 read-only: the nested permission is the intersection.
    let tr = s.translate(&t(VA + 0x1000, Access::READ)).unwrap();
    assert_eq!((tr.output, tr.perms.allows(Access::WRITE)), (RO_PA, false));
    let e = event(s.translate(&t(VA + 0x1000, Access::WRITE)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa, e.addr),
        (EventId::FPermission, true, Some(Class::In), Some(DATA_IPA + 0x1000), VA + 0x1000)
    );
    // The stage-1 output unmapped at stage 2: F_TRANSLATION at stage 2, CLASS == IN.
    let e = event(s.translate(&t(VA + 0x2008, Access::READ)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa),
        (EventId::FTranslation, true, Some(Class::In), Some(DATA_IPA + 0x2008))
    );
    // A stage-1 fault in a nested stream is still S2 == 0.
    let e = event(s.translate(&t(VA + 0x3000, Access::READ)));
    assert_eq!((e.id, e.s2, e.class, e.ipa), (EventId::FTranslation, false, Some(Class::In), None));
}

#[test]
fn nested_s1dss_bypass_translates_the_input_at_stage_2() {
    let mem = memory();
    let mut n = nest(&mem);
    let s = smmu(&mem);
    let base = alloc(&mem, &mut n.host_frames, 12);
    let mut ste = ste_s1(n.cd_ipa, 1, Some(&n.s2));
    ste.set_s1dss(S1Dss::Bypass);
    write_ste(&mem, base, &ste);
    enable_linear(&s, base, 0);
    let tr = s.translate(&t(DATA_IPA + 4, Access::READ)).unwrap();
    assert_eq!((tr.output, tr.reads), (PA + 4, 4));
}

#[test]
fn nested_cd_fetch_faults_at_stage_2_are_class_cd() {
    let mem = memory();
    let mut n = nest(&mem);
    let s = smmu(&mem);
    let base = nested_stream(&mem, &mut n, &s);
    let cd_ipa = n.cd_ipa;
    // The CD's IPA unmapped: F_TRANSLATION, S2, CLASS == CD, IPA == the CD's address.
    n.unmap(&mem, cd_ipa);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa, e.record),
        (EventId::FTranslation, true, Some(Class::Cd), Some(cd_ipa), true)
    );
    // STE.S2R == 0: not recorded.
    let mut ste = ste_s1(cd_ipa, 0, Some(&n.s2));
    ste.set_s2r(false);
    write_ste(&mem, base, &ste);
    assert!(!event(s.translate(&t(VA, Access::READ))).record);
    write_ste(&mem, base, &ste_s1(cd_ipa, 0, Some(&n.s2)));
    // No read permission: F_PERMISSION, CLASS == CD.
    let none = S2Attrs { read: false, write: false, exec: false, ..S2Attrs::ALL };
    n.remap(&mem, cd_ipa, GUEST_HPA + cd_ipa, none);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa),
        (EventId::FPermission, true, Some(Class::Cd), Some(cd_ipa))
    );
    // Mapped to a PA outside memory: F_CD_FETCH with that PA.
    n.remap(&mem, cd_ipa, HOLE, S2Attrs::ALL);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!((e.id, e.fetch_addr, e.s2), (EventId::FCdFetch, Some(HOLE), false));
    // A CD IPA beyond stage 2's input range: F_TRANSLATION, CLASS == CD (§3.4.3 note 2b).
    write_ste(&mem, base, &ste_s1(1 << 40, 0, Some(&n.s2)));
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!((e.id, e.class, e.ipa), (EventId::FTranslation, Some(Class::Cd), Some(1 << 40)));
    // A stage-2 table outside memory while translating the CD: F_WALK_EABT, S2, CLASS == CD.
    mem.write_u64(Hpa(n.s2.ttb), HOLE | 0b11).unwrap();
    write_ste(&mem, base, &ste_s1(cd_ipa, 0, Some(&n.s2)));
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!((e.id, e.s2, e.class), (EventId::FWalkEabt, true, Some(Class::Cd)));
    assert_eq!(e.fetch_addr, Some(HOLE + ((cd_ipa >> 21) & 0x1ff) * 8));
}

#[test]
fn nested_l1cd_fetch_faults_at_stage_2_are_class_cd() {
    let mem = memory();
    let mut n = nest(&mem);
    let s = smmu(&mem);
    let base = nested_stream(&mem, &mut n, &s);
    // A two-level CD table whose level-1 table is at an unmapped IPA.
    let l1_ipa = 0x3f_0000;
    n.unmap(&mem, l1_ipa);
    let mut ste = ste_s1(l1_ipa, 8, Some(&n.s2));
    ste.set_s1fmt(S1Fmt::TwoLevel4K);
    write_ste(&mem, base, &ste);
    let e = event(s.translate(&t(VA, Access::READ).with_ssid(64 * 3 + 1)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa),
        (EventId::FTranslation, true, Some(Class::Cd), Some(l1_ipa + 3 * 8))
    );
}

#[test]
fn nested_stage_1_table_fetch_faults_at_stage_2_are_class_tt() {
    let mem = memory();
    let mut n = nest(&mem);
    let s = smmu(&mem);
    nested_stream(&mem, &mut n, &s);
    let l2 = n.s1_table_ipa(2);
    let entry = l2 + ((VA >> 21) & 0x1ff) * 8;
    // The level-2 table's page unmapped: F_TRANSLATION, S2, CLASS == TT, IPA == the entry.
    n.unmap(&mem, l2);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa, e.addr),
        (EventId::FTranslation, true, Some(Class::Tt), Some(entry), VA)
    );
    // Not readable at stage 2: F_PERMISSION, CLASS == TT, TTRnW == read.
    let none = S2Attrs { read: false, write: false, exec: false, ..S2Attrs::ALL };
    n.remap(&mem, l2, GUEST_HPA + l2, none);
    let e = event(s.translate(&t(VA, Access::WRITE)));
    assert_eq!(
        (e.id, e.class, e.ttrnw, e.rnw),
        (EventId::FPermission, Some(Class::Tt), true, false)
    );
    // Mapped to a PA outside memory: the stage-1 read aborts after stage 2: F_WALK_EABT with
    // S2 == 0, CLASS == TT, FetchAddr == the PA.
    n.remap(&mem, l2, HOLE, S2Attrs::ALL);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!(
        (e.id, e.s2, e.class, e.fetch_addr),
        (EventId::FWalkEabt, false, Some(Class::Tt), Some(HOLE + (entry & 0xfff)))
    );
}

#[test]
fn nested_access_flag_update_refused_at_stage_2_is_ttrnw_write() {
    let mem = memory();
    let mut n = nest(&mem);
    let s = smmu(&mem);
    nested_stream(&mem, &mut n, &s);
    let l3 = n.s1_table_ipa(3);
    let entry = l3 + ((VA >> 12) & 0x1ff) * 8;
    // Clear the stage-1 leaf's AF; stage 1 has HA, so the walk must write it back, but stage 2
    // maps the table page read-only.
    let raw = n.ram.read_u64(Gpa(entry)).unwrap();
    n.ram.write_u64(Gpa(entry), raw & !(1 << 10)).unwrap();
    n.remap(&mem, l3, GUEST_HPA + l3, S2Attrs::READ_ONLY);
    let e = event(s.translate(&t(VA, Access::READ)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ttrnw, e.ipa),
        (EventId::FPermission, true, Some(Class::Tt), false, Some(entry))
    );
    assert_eq!(n.ram.read_u64(Gpa(entry)).unwrap() & (1 << 10), 0, "nothing written");
    n.remap(&mem, l3, GUEST_HPA + l3, S2Attrs::ALL);
    assert!(s.translate(&t(VA, Access::READ)).is_ok());
    assert_ne!(n.ram.read_u64(Gpa(entry)).unwrap() & (1 << 10), 0, "AF set through stage 2");
}

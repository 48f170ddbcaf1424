//! Step (b) without a driver: Stream tables, the STE, Config abort / bypass / stage 2, and every
//! event they produce (IHI 0070 G.b §3.3.1, §5.1, §5.2, §7.3). STEs, L1STDs and stage-2 tables
//! are written by hand or with the spec setters and pgtable's builder; the SMMU is programmed by
//! raw register writes.

mod common;

use common::*;
use sviommu_memory::{FrameAllocator, HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vmsa::{Granule as PtGranule, S2Attrs, VmsaS2};
use sviommu_pgtable::Build;
use sviommu_pgtable::Perms;
use sviommu_smmuv3::hw::{Abort, Access, Silent, Smmu, SmmuParams, Transaction};
use sviommu_smmuv3::spec::regs::{self, cr2, idr0, idr5};
use sviommu_smmuv3::spec::{Class, EventId, L1Std, Ste, StreamConfig};

/// Stage-2 tables (4K, T0SZ 25: 39-bit IPAs, SL0 1: start at level 1) mapping
/// IPA 0x4000_0000 + i * 4K to PA 0x8000_0000 + i * 4K for i in 0..4 (page 1 read-only).
fn s2_4k(mem: &HostMemory, frames: &mut FrameAllocator<Hpa>) -> VmsaS2 {
    let s2 = VmsaS2::create(mem, frames, VmsaS2::new(0, PtGranule::K4, 25, 1)).unwrap();
    for i in 0..4u64 {
        let attrs = if i == 1 { S2Attrs::READ_ONLY } else { S2Attrs::ALL };
        s2.map(mem, frames, 0x4000_0000 + i * 0x1000, 0x8000_0000 + i * 0x1000, 12, attrs).unwrap();
    }
    s2
}

fn t(sid: u32, addr: u64, access: Access) -> Transaction {
    Transaction::new(sid, addr, access)
}

// ---- Config abort, bypass ---------------------------------------------------------------------

#[test]
fn config_abort_and_reserved_configs_abort_without_an_event() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let base = single_ste(&mem, &mut fr, &s, &ste_with_config(StreamConfig::Abort));
    assert_eq!(s.translate(&read(0, 0x1000)), Err(Abort::Silent(Silent::SteAbort)));
    // §5.2 Config: 0b001..0b011 are Reserved and behave as 0b000 (no C_BAD_STE).
    for raw in 1..=3u8 {
        let mut ste = ste_s2(&s2_4k(&mem, &mut fr));
        ste.set_config_raw(raw);
        write_ste(&mem, base, &ste);
        assert_eq!(s.translate(&read(0, 0x1000)), Err(Abort::Silent(Silent::SteAbort)), "{raw}");
    }
}

#[test]
fn bypass_passes_the_address_through() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    single_ste(&mem, &mut fr, &s, &ste_with_config(StreamConfig::Bypass));
    let tr = s.translate(&t(0, 0xabc_d123, Access::WRITE)).unwrap();
    assert_eq!((tr.output, tr.page_lg2, tr.perms, tr.reads), (0xabc_d123, 12, Perms::ALL, 1));
}

#[test]
fn f_addr_size_for_a_bypass_address_beyond_the_oas() {
    let mem = memory();
    let mut fr = frames();
    let s = Smmu::new(&mem, SmmuParams::default().with_oas_bits(48));
    single_ste(&mem, &mut fr, &s, &ste_with_config(StreamConfig::Bypass));
    let e = event(s.translate(&t(0, 1 << 48, Access::READ)));
    assert_eq!(
        (e.id, e.s2, e.class, e.addr),
        (EventId::FAddrSize, false, Some(Class::In), 1 << 48)
    );
    assert!(e.record);
    assert!(s.translate(&t(0, (1 << 48) - 1, Access::READ)).is_ok());
}

#[test]
fn c_bad_substreamid_for_a_substream_without_stage_1() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let base = single_ste(&mem, &mut fr, &s, &ste_with_config(StreamConfig::Bypass));
    let e = event(s.translate(&read(0, 0x1000).with_ssid(5)));
    assert_eq!((e.id, e.ssid), (EventId::CBadSubstreamid, Some(5)));
    write_ste(&mem, base, &ste_s2(&s2_4k(&mem, &mut fr)));
    assert_eq!(id(s.translate(&read(0, 0x4000_0000).with_ssid(0))), EventId::CBadSubstreamid);
}

// ---- Stream table lookups ---------------------------------------------------------------------

#[test]
fn c_bad_streamid_beyond_a_linear_table_recorded_per_recinvsid() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let base = alloc(&mem, &mut fr, 12);
    for sid in 0..4 {
        write_ste(&mem, base + sid * 64, &ste_with_config(StreamConfig::Bypass));
    }
    enable_linear(&s, base, 2);
    assert!(s.translate(&read(3, 0)).is_ok());
    let e = event(s.translate(&read(4, 0)));
    assert_eq!((e.id, e.sid, e.record), (EventId::CBadStreamid, 4, false));
    s.mmio_write(regs::CR2.0, 4, cr2::RECINVSID.mask());
    let e = event(s.translate(&read(4, 0).with_ssid(9)));
    assert_eq!((e.id, e.ssid, e.record), (EventId::CBadStreamid, Some(9), true));
}

#[test]
fn c_bad_streamid_beyond_sidsize_even_if_log2size_is_larger() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let base = alloc(&mem, &mut fr, 12);
    // §6.3.25: the effective LOG2SIZE is MIN(LOG2SIZE, SIDSIZE) = 16.
    enable_linear(&s, base, 20);
    assert_eq!(id(s.translate(&read(1 << 16, 0))), EventId::CBadStreamid);
    assert_eq!(id(s.translate(&read(0, 0))), EventId::CBadSte, "STE 0 is zero: V == 0");
}

/// A two-level table (LOG2SIZE 16, SPLIT 6 => 1024 L1STDs) with the L1STD of StreamIDs
/// 64..128 set to `l1`. Returns (smmu-ready memory, L1 base, L2 base).
fn two_level(
    mem: &HostMemory,
    fr: &mut FrameAllocator<Hpa>,
    s: &Smmu<&HostMemory>,
    span: u8,
) -> (u64, u64) {
    let l1 = alloc(mem, fr, 13);
    let l2 = alloc(mem, fr, 12);
    for i in 0..64 {
        write_ste(mem, l2 + i * 64, &ste_with_config(StreamConfig::Bypass));
    }
    let mut d = L1Std::default();
    d.set_span(span);
    d.set_l2ptr(l2);
    write_l1std(mem, l1 + 8, &d);
    enable_two_level(s, l1, 16, 6);
    (l1, l2)
}

#[test]
fn two_level_stream_table_reads_the_l1std_then_the_ste() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    two_level(&mem, &mut fr, &s, 7); // 2^6 STEs
    let tr = s.translate(&read(64 + 63, 0x1000)).unwrap();
    assert_eq!((tr.output, tr.reads), (0x1000, 2));
}

#[test]
fn c_bad_streamid_for_l1std_span_0_reserved_too_large_or_beyond_span() {
    let mem = memory();
    let s = smmu(&mem);
    for (span, sid, ok) in [
        (0u8, 64u32, false), // Span 0: invalid L2Ptr
        (12, 64, false),     // Reserved Span (behaves as 0)
        (31, 64, false),
        (8, 64, false), // Span > SPLIT + 1
        (3, 67, true),  // 2^2 STEs: 64..68
        (3, 68, false), // StreamID[5:0] beyond 2^(Span-1)
        (1, 64, true),  // one STE
        (1, 65, false),
    ] {
        let mut fr = frames();
        let s = Smmu::new(&mem, *s.params());
        two_level(&mem, &mut fr, &s, span);
        let r = s.translate(&read(sid, 0));
        if ok {
            assert!(r.is_ok(), "span {span} sid {sid}: {r:?}");
        } else {
            assert_eq!(id(r), EventId::CBadStreamid, "span {span} sid {sid}");
        }
    }
    // The L1STD of StreamIDs 0..64 is zero.
    let mut fr = frames();
    let s = Smmu::new(&mem, *s.params());
    two_level(&mem, &mut fr, &s, 7);
    assert_eq!(id(s.translate(&read(5, 0))), EventId::CBadStreamid);
}

#[test]
fn f_ste_fetch_for_an_ste_outside_memory() {
    let mem = memory();
    let s = smmu(&mem);
    // §6.3.24: the base is aligned to the table's size (2^8 STEs: 16K), so the low bits of
    // STRTAB_BASE.ADDR are not part of the fetch address.
    enable_linear(&s, HOLE + 0x1240, 8);
    let e = event(s.translate(&read(3, 0)));
    assert_eq!((e.id, e.fetch_addr, e.sid), (EventId::FSteFetch, Some(HOLE + 3 * 64), 3));
}

#[test]
fn f_ste_fetch_for_an_l1std_or_level_2_array_outside_memory() {
    let mem = memory();
    let s = smmu(&mem);
    enable_two_level(&s, HOLE, 16, 6);
    let e = event(s.translate(&read(130, 0)));
    assert_eq!((e.id, e.fetch_addr), (EventId::FSteFetch, Some(HOLE + 2 * 8)));
    let mut fr = frames();
    let s = smmu(&mem);
    let l1 = alloc(&mem, &mut fr, 13);
    let mut d = L1Std::default();
    d.set_span(7);
    d.set_l2ptr(HOLE);
    write_l1std(&mem, l1, &d);
    enable_two_level(&s, l1, 16, 6);
    let e = event(s.translate(&read(5, 0)));
    assert_eq!((e.id, e.fetch_addr, e.record), (EventId::FSteFetch, Some(HOLE + 5 * 64), true));
}

/// A named change to a structure.
type Edit<T> = Box<dyn Fn(&mut T)>;

// ---- C_BAD_STE ---------------------------------------------------------------------------------

#[test]
fn c_bad_ste_for_v_0() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let mut ste = ste_with_config(StreamConfig::Bypass);
    ste.set_v(false);
    single_ste(&mem, &mut fr, &s, &ste);
    let e = event(s.translate(&read(0, 0x1000).with_ssid(2)));
    assert_eq!((e.id, e.sid, e.ssid, e.record), (EventId::CBadSte, 0, Some(2), true));
}

#[test]
fn c_bad_ste_for_every_res0_bit() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s2 = s2_4k(&mem, &mut fr);
    let good = ste_s2(&s2);
    let base = single_ste(&mem, &mut fr, &s, &good);
    assert!(s.translate(&read(0, 0x4000_0000)).is_ok());
    let mut n = 0;
    for (w, mask) in Ste::RES0.iter().enumerate() {
        for b in (0..64).filter(|b| mask >> b & 1 == 1) {
            let mut bad = good;
            bad.0[w] |= 1 << b;
            write_ste(&mem, base, &bad);
            assert_eq!(
                id(s.translate(&read(0, 0x4000_0000))),
                EventId::CBadSte,
                "bit {}",
                w * 64 + b
            );
            n += 1;
        }
    }
    assert_eq!(n, 33, "§5.2's always-RES0 bits");
}

#[test]
fn c_bad_ste_for_bad_stage_2_configurations() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s2 = s2_4k(&mem, &mut fr);
    let good = ste_s2(&s2);
    let base = single_ste(&mem, &mut fr, &s, &good);
    let bads: Vec<(&str, Edit<Ste>)> = vec![
        ("S2TG Reserved", Box::new(|x: &mut Ste| x.set_s2tg_raw(0b11))),
        ("S2T0SZ below 16", Box::new(|x: &mut Ste| x.set_s2t0sz(15))),
        ("S2T0SZ above 39 (no STT)", Box::new(|x: &mut Ste| x.set_s2t0sz(40))),
        ("S2SL0 against S2T0SZ", Box::new(|x: &mut Ste| x.set_s2sl0(0))),
        ("S2SL0 3 with 4K (no STT)", Box::new(|x: &mut Ste| x.set_s2sl0(3))),
        (
            "S2TTB beyond S2PS",
            Box::new(|x: &mut Ste| {
                x.set_s2ps(0b000);
                x.set_s2ttb(1 << 32);
            }),
        ),
        (
            "S2TTB beyond 48 bits with 4K",
            Box::new(|x: &mut Ste| {
                x.set_s2ps(0b110);
                x.set_s2ttb(1 << 48);
            }),
        ),
        ("S2AA64 == 0 (no VMSAv8-32 LPAE)", Box::new(|x: &mut Ste| x.set_s2aa64(false))),
        ("S2ENDI with little-endian tables only", Box::new(|x: &mut Ste| x.set_s2endi(true))),
        (
            "S2HD without S2HA behaves as neither: fine",
            Box::new(|x: &mut Ste| {
                x.set_s2ha(false);
                x.set_s2hd(true);
            }),
        ),
    ];
    for (what, f) in bads {
        let mut ste = good;
        f(&mut ste);
        write_ste(&mem, base, &ste);
        let r = s.translate(&read(0, 0x4000_0000));
        if what.ends_with("fine") {
            assert!(r.is_ok(), "{what}: {r:?}");
        } else {
            assert_eq!(id(r), EventId::CBadSte, "{what}");
        }
    }
}

#[test]
fn c_bad_ste_for_features_the_id_registers_do_not_advertise() {
    let mem = memory();
    let mut fr = frames();
    let s2 = s2_4k(&mem, &mut fr);
    let base = alloc(&mem, &mut fr, 12);
    let with = |idr0: u64, idr5: u64| SmmuParams {
        idr0: idr0 as u32,
        idr5: idr5 as u32,
        ..SmmuParams::default()
    };
    let d = SmmuParams::default();
    let (i0, i5) = (u64::from(d.idr0), u64::from(d.idr5));
    let cases = [
        ("no stage 2", with(idr0::S2P.with(i0, false), i5), ste_s2(&s2)),
        ("no stage 1", with(idr0::S1P.with(i0, false), i5), ste_s1(0x2000, 0, None)),
        ("no 4K granule", with(i0, idr5::GRAN4K.with(i5, false)), ste_s2(&s2)),
        ("no HTTU", with(idr0::HTTU.set(i0, 0), i5), ste_s2(&s2)),
        ("HTTU without dirty state", with(idr0::HTTU.set(i0, 1), i5), ste_s2(&s2)),
        ("8-bit VMIDs", with(idr0::VMID16.with(i0, false), i5), {
            let mut x = ste_s2(&VmsaS2 { ha: false, hd: false, ..s2 });
            x.set_s2vmid(0x100);
            x
        }),
    ];
    for (what, params, ste) in cases {
        let s = Smmu::new(&mem, params);
        write_ste(&mem, base, &ste);
        enable_linear(&s, base, 0);
        assert_eq!(id(s.translate(&read(0, 0x4000_0000))), EventId::CBadSte, "{what}");
    }
}

// ---- Stage 2 -----------------------------------------------------------------------------------

#[test]
fn stage_2_translates_with_each_granule() {
    // (granule, T0SZ, SL0, levels walked): 4K from level 1, 16K from level 2, 64K from level 2.
    for (tg, t0sz, sl0, levels) in
        [(PtGranule::K4, 25, 1, 3), (PtGranule::K16, 28, 1, 2), (PtGranule::K64, 22, 1, 2)]
    {
        let mem = memory();
        let mut fr = frames();
        let s = smmu(&mem);
        let s2 = VmsaS2::create(&mem, &mut fr, VmsaS2::new(0, tg, t0sz, sl0)).unwrap();
        let page = 1u64 << tg_lg2(tg);
        s2.map(&mem, &mut fr, 0x4000_0000, 0x9000_0000, tg_lg2(tg), S2Attrs::ALL).unwrap();
        single_ste(&mem, &mut fr, &s, &ste_s2(&s2));
        let tr = s.translate(&t(0, 0x4000_0000 + page - 8, Access::WRITE)).unwrap();
        assert_eq!(tr.output, 0x9000_0000 + page - 8, "{tg:?}");
        assert_eq!((tr.page_lg2, tr.reads, tr.perms), (tg_lg2(tg), 1 + levels, Perms::RWX));
        let e = event(s.translate(&t(0, 0x4000_0000 + page, Access::READ)));
        assert_eq!(
            (e.id, e.s2, e.class, e.ipa),
            (EventId::FTranslation, true, Some(Class::In), Some(0x4000_0000 + page))
        );
    }
}

fn tg_lg2(tg: PtGranule) -> u8 {
    tg.lg2()
}

#[test]
fn hand_typed_stage_2_ste() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s2 = s2_4k(&mem, &mut fr);
    // §5.2: word 0 V | Config 0b110; word 2 S2VMID 1, S2T0SZ 25 [165:160], S2SL0 1 [167:166],
    // S2TG 4K, S2PS 48 bits [178:176], S2AA64 [179], S2HA [184], S2R [186]; word 3 S2TTB.
    let words = [0xd, 0, 0x050d_0059_0000_0001, s2.ttb, 0, 0, 0, 0];
    assert_eq!(Ste(words), ste_s2(&VmsaS2 { hd: false, ..s2 }));
    let base = alloc(&mem, &mut fr, 12);
    write_words(&mem, base, &words);
    enable_linear(&s, base, 0);
    let tr = s.translate(&read(0, 0x4000_2abc)).unwrap();
    assert_eq!((tr.output, tr.reads), (0x8000_2abc, 4));
}

#[test]
fn f_translation_for_an_ipa_beyond_s2t0sz_and_f_addr_size_beyond_the_ias() {
    let mem = memory();
    let mut fr = frames();
    let s = Smmu::new(&mem, SmmuParams::default().with_oas_bits(48));
    let ste = ste_s2(&s2_4k(&mem, &mut fr));
    single_ste(&mem, &mut fr, &s, &ste);
    // 39-bit IPA space: 2^39 fails stage 2's input check (§3.4 stage 2 check 1).
    let e = event(s.translate(&read(0, 1 << 39)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa),
        (EventId::FTranslation, true, Some(Class::In), Some(1 << 39))
    );
    // Beyond the IAS (48 bits): a stage 1 Address Size fault though stage 1 bypasses (§3.4).
    let e = event(s.translate(&read(0, 1 << 50)));
    assert_eq!((e.id, e.s2, e.class, e.ipa), (EventId::FAddrSize, false, Some(Class::In), None));
}

#[test]
fn f_addr_size_for_a_stage_2_output_beyond_s2ps() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s2 = VmsaS2::create(&mem, &mut fr, VmsaS2::new(0, PtGranule::K4, 25, 1)).unwrap();
    s2.map(&mem, &mut fr, 0x4000_0000, 1 << 40, 12, S2Attrs::ALL).unwrap();
    let mut ste = ste_s2(&s2);
    ste.set_s2ps(0b010); // 40 bits
    single_ste(&mem, &mut fr, &s, &ste);
    let e = event(s.translate(&read(0, 0x4000_0010)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa),
        (EventId::FAddrSize, true, Some(Class::In), Some(0x4000_0010))
    );
}

#[test]
fn f_access_for_a_stage_2_page_with_af_0_unless_s2ha_or_s2affd() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s2 = VmsaS2 { ha: false, hd: false, ..s2_4k(&mem, &mut fr) };
    // Clear AF (bit 10) in the leaf of IPA 0x4000_0000: level 3 entry 0.
    let leaf = find_s2_leaf(&mem, &s2, 0x4000_0000);
    let raw = mem.read_u64(Hpa(leaf)).unwrap();
    mem.write_u64(Hpa(leaf), raw & !(1 << 10)).unwrap();
    let base = single_ste(&mem, &mut fr, &s, &ste_s2(&s2));
    let e = event(s.translate(&t(0, 0x4000_0000, Access::WRITE)));
    assert_eq!((e.id, e.s2, e.class, e.rnw), (EventId::FAccess, true, Some(Class::In), false));
    write_ste(&mem, base, &ste_s2(&VmsaS2 { affd: true, ..s2 }));
    assert!(s.translate(&read(0, 0x4000_0000)).is_ok());
    assert_eq!(mem.read_u64(Hpa(leaf)).unwrap() & (1 << 10), 0, "AFFD writes nothing");
    write_ste(&mem, base, &ste_s2(&VmsaS2 { ha: true, ..s2 }));
    assert!(s.translate(&read(0, 0x4000_0000)).is_ok());
    assert_ne!(mem.read_u64(Hpa(leaf)).unwrap() & (1 << 10), 0, "S2HA sets AF");
}

/// The address of the level-3 entry of `ipa` in 4K tables starting at level 1.
fn find_s2_leaf(mem: &HostMemory, s2: &VmsaS2, ipa: u64) -> u64 {
    let mut table = s2.ttb;
    for shift in [30, 21] {
        let e = mem.read_u64(Hpa(table + ((ipa >> shift) & 0x1ff) * 8)).unwrap();
        table = e & 0x0000_ffff_ffff_f000;
    }
    table + ((ipa >> 12) & 0x1ff) * 8
}

#[test]
fn f_permission_at_stage_2_and_the_attribute_overrides() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s2 = s2_4k(&mem, &mut fr);
    let mut ste = ste_s2(&s2);
    let base = single_ste(&mem, &mut fr, &s, &ste);
    // Page 1 is read-only and execute-never.
    let e = event(s.translate(&t(0, 0x4000_1008, Access::WRITE)));
    assert_eq!(
        (e.id, e.s2, e.class, e.ipa),
        (EventId::FPermission, true, Some(Class::In), Some(0x4000_1008))
    );
    assert_eq!((e.rnw, e.pnu, e.ind), (false, false, false));
    let tr = s.translate(&read(0, 0x4000_1008)).unwrap();
    assert_eq!(tr.perms, Perms::rwx(true, false, false));
    assert_eq!(id(s.translate(&t(0, 0x4000_1008, Access::EXEC))), EventId::FPermission);
    // INSTCFG = data: the instruction fetch is a data read, and passes.
    ste.set_instcfg(0b10);
    write_ste(&mem, base, &ste);
    assert!(s.translate(&t(0, 0x4000_1008, Access::EXEC)).is_ok());
    // INSTCFG = instruction, PRIVCFG = privileged: a read becomes a privileged instruction
    // fetch, as the event's InD and PnU say; a write stays data (InD == 0).
    ste.set_instcfg(0b11);
    ste.set_privcfg(0b11);
    write_ste(&mem, base, &ste);
    let e = event(s.translate(&read(0, 0x4000_1008)));
    assert_eq!((e.id, e.rnw, e.pnu, e.ind), (EventId::FPermission, true, true, true));
    let e = event(s.translate(&t(0, 0x4000_1008, Access::WRITE)));
    assert_eq!((e.rnw, e.pnu, e.ind), (false, true, false));
    // S2R == 0: the fault is not recorded (the transaction still aborts).
    ste.set_s2r(false);
    write_ste(&mem, base, &ste);
    let e = event(s.translate(&t(0, 0x4000_1008, Access::WRITE)));
    assert!(!e.record);
}

#[test]
fn f_walk_eabt_for_a_stage_2_table_outside_memory() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s2 = s2_4k(&mem, &mut fr);
    // The level-1 entry of IPA 0x4000_0000 (index 1) points into the hole.
    mem.write_u64(Hpa(s2.ttb + 8), HOLE | 0b11).unwrap();
    single_ste(&mem, &mut fr, &s, &ste_s2(&s2));
    let e = event(s.translate(&read(0, 0x4020_3000)));
    assert_eq!((e.id, e.s2, e.class), (EventId::FWalkEabt, true, Some(Class::In)));
    assert_eq!((e.fetch_addr, e.ipa, e.record), (Some(HOLE + 8), None, true));
}

#[test]
fn the_starting_table_beyond_memory_is_f_walk_eabt_not_an_ste_error() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let s2 = VmsaS2::new(HOLE, PtGranule::K4, 25, 1);
    single_ste(&mem, &mut fr, &s, &ste_s2(&s2));
    let e = event(s.translate(&read(0, 0x4000_0000)));
    assert_eq!((e.id, e.fetch_addr), (EventId::FWalkEabt, Some(HOLE + 8)));
}

#[test]
fn many_threads_translate_while_registers_are_read() {
    let mem = memory();
    let mut fr = frames();
    let s = smmu(&mem);
    let ste = ste_s2(&s2_4k(&mem, &mut fr));
    single_ste(&mem, &mut fr, &s, &ste);
    std::thread::scope(|scope| {
        for i in 0..4u64 {
            let s = &s;
            scope.spawn(move || {
                for n in 0..200u64 {
                    let off = (n * 8 + i) % 0x1000;
                    let tr = s.translate(&read(0, 0x4000_0000 + off)).unwrap();
                    assert_eq!(tr.output, 0x8000_0000 + off);
                    let _ = s.mmio_read(regs::CR0ACK.0, 4);
                }
            });
        }
    });
}

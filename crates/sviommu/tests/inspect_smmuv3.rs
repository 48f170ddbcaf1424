//! `sviommu inspect smmuv3` against tables other code wrote: stage-1 tables the
//! `aarch64-paging` crate builds at physical addresses this test chooses (its own walk is the
//! expected answer), with STEs and CDs around them written with the smmuv3 spec setters; the
//! same memory as a QEMU-layout ELF core; hostile images (random bytes, random anchors); the
//! JSON contract and the errors, through the binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aarch64_paging::descriptor::{El1Attributes as E1, PhysicalAddress};
use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, TranslationRegime, VaRange};
use aarch64_paging::Mapping;
use assert_cmd::Command;
use common::*;
use proptest::prelude::*;
use serde_json::Value;
use sviommu::inspect::image::{self, ImageArgs, ImageSpec};
use sviommu::inspect::record::{FaultInfo, RequestRecord, Step, Stop, Translated};
use sviommu::inspect::run::Report as _;
use sviommu::inspect::smmuv3::{self, dump, Anchors, Request, SmmuInspector};
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::Access;
use sviommu_smmuv3::hw::SmmuParams;
use sviommu_smmuv3::spec::regs::strtab_base_cfg;
use sviommu_smmuv3::spec::{Cd, EventId, Granule, L1Cd, L1Std, S1Dss, S1Fmt, Ste, StreamConfig};
use sviommu_testsupport::aarch64::{self, s1_perms, s2_perms, ChosenAddresses};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Where the crate's table pages go: 256 pages from 1M.
const TABLES: u64 = 0x10_0000;
const TABLE_PAGES: u64 = 256;
/// Where the Stream table and CDs go.
const STRUCTS: u64 = 0x30_0000;
const STRTAB: u64 = STRUCTS;
const CDS: u64 = STRUCTS + 0x1000;
/// The stream with stage-1 tables, its SubstreamID, and a bypass and an abort stream.
const SID: u32 = 3;
const SSID: u32 = 1;
const BYPASS_SID: u32 = 5;
const ABORT_SID: u32 = 6;
/// STRTAB_BASE_CFG: a linear table of 16 STEs.
const CFG: u32 = 4;

fn bin() -> Command {
    Command::cargo_bin("sviommu").unwrap()
}

/// What the crate's walk finds for `va`: `(output, page_lg2, flags, leaf level)`, or `None` if
/// unmapped or outside the range its root level covers.
fn crate_walk<R: TranslationRegime>(
    m: &Mapping<ChosenAddresses<R::Attributes>, R>,
    va: u64,
) -> Option<(u64, u8, R::Attributes, usize)> {
    aarch64::crate_walk(m, va).ok().flatten()
}

/// The crate's stage-1 walk of `va`: `(output, page_lg2, flags)`.
fn their_walk(m: &Mapping<ChosenAddresses<E1>, El1And0>, va: u64) -> Option<(u64, u8, E1)> {
    crate_walk(m, va).map(|(out, lg2, flags, _)| (out, lg2, flags))
}

/// The mappings the crate is asked for: `(va, len, pa, extra flags)`.
const MAPS: [(u64, u64, u64, E1); 5] = [
    (0x7f00_0000_1000, 0x3000, 0x80_4000_0000, E1::USER),
    (0x7f00_0020_0000, 0x20_0000, 0x80_8000_0000, E1::READ_ONLY),
    (0x4000_0000, 0x4000_0000, 0x40_0000_0000, E1::UXN),
    (0x1000, 0x1000, 0x9000, E1::PXN.union(E1::NON_GLOBAL)),
    (0xffff_f000, 0x1000, 0x5000, E1::USER.union(E1::READ_ONLY)),
];

/// Addresses to translate: each mapping's edges, middle and just past it, and an unmapped one.
fn probes() -> Vec<u64> {
    let mut v = vec![0x5555_0000_0000];
    for (va, len, ..) in MAPS {
        v.extend([va, va + len - 1, va + len / 2, va + len]);
    }
    v
}

/// A valid CD whose TTB0 half is the crate's 48-bit, 4K-granule tables at `ttb0` (TTB1's half
/// disabled; faults recorded, terminated).
fn ttb0_cd(asid: u16, ttb0: u64) -> Cd {
    let mut cd = Cd::default();
    cd.set_v(true);
    cd.set_aa64(true);
    cd.set_a(true);
    cd.set_r(true);
    cd.set_asid(asid);
    cd.set_t0sz(16);
    cd.set_tg0(Granule::Size4K);
    cd.set_ips(0b101);
    cd.set_ttb0(ttb0);
    cd.set_epd1(true);
    cd
}

/// The image: the crate's tables, a linear Stream table with a stage-1 stream (SID 3, CDs 0 and
/// 1 over the same tables), a bypass stream and an abort stream. Regions: the tables, then the
/// structures, with a hole between them.
struct Fixture {
    img: Image,
    mapping: Mapping<ChosenAddresses<E1>, El1And0>,
    ste_at: u64,
}

fn fixture() -> Fixture {
    // Table pages in a scrambled order, so the walk cannot be right by accident.
    let mut pages: Vec<u64> = (0..TABLE_PAGES).map(|i| TABLES + i * 0x1000).collect();
    pages.reverse();
    pages.swap(3, 200);
    let mut m =
        Mapping::with_asid_and_va_range(ChosenAddresses::new(pages), 1, 0, El1And0, VaRange::Lower);
    let base = E1::VALID | E1::ACCESSED | E1::INNER_SHAREABLE | E1::ATTRIBUTE_INDEX_1;
    for (va, len, pa, extra) in MAPS {
        let range = MemoryRegion::new(va as usize, (va + len) as usize);
        m.map_range(&range, PhysicalAddress(pa as usize), base | extra, Constraints::empty())
            .unwrap();
    }
    let img = Image::new(&[(TABLES, TABLE_PAGES * 0x1000), (STRUCTS, 0x1_0000)], (STRUCTS, 0));
    m.translation().copy_into(&img.mem);
    let root = m.root_address().0 as u64;

    let cd = ttb0_cd(1, root);
    img.write(CDS + 64 * u64::from(SSID), &cd.words());
    img.write(CDS, &cd.words());

    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Stage1);
    ste.set_s1contextptr(CDS);
    ste.set_s1cdmax(1);
    // Transactions without a SubstreamID use CD 0.
    ste.set_s1dss(S1Dss::Substream0);
    let ste_at = STRTAB + 64 * u64::from(SID);
    img.write(ste_at, &ste.words());
    let mut bypass = Ste::default();
    bypass.set_v(true);
    bypass.set_config(StreamConfig::Bypass);
    img.write(STRTAB + 64 * u64::from(BYPASS_SID), &bypass.words());
    let mut abort = Ste::default();
    abort.set_v(true);
    abort.set_config(StreamConfig::Abort);
    img.write(STRTAB + 64 * u64::from(ABORT_SID), &abort.words());
    Fixture { img, mapping: m, ste_at }
}

/// The fixture as a raw pieces and as an ELF core in a scratch directory.
fn files(name: &str) -> (Fixture, PathBuf, Vec<String>) {
    let f = fixture();
    let dir = scratch_dir(name);
    let core = dir.join("guest.core");
    f.img.write_elf_core(&core);
    let pieces = f.img.write_pieces(&dir);
    (f, core, pieces)
}

fn inspector(images: &[ImageSpec], anchors: Anchors) -> SmmuInspector {
    let args = ImageArgs { images: images.to_vec(), image_base: 0 };
    let (mem, _) = image::load(&args).unwrap();
    SmmuInspector::new(mem, anchors).unwrap()
}

fn anchors() -> Anchors {
    Anchors { strtab_base: STRTAB, strtab_base_cfg: CFG, params: SmmuParams::default() }
}

fn spec(path: &Path) -> ImageSpec {
    ImageSpec { path: path.to_owned(), at: None }
}

fn req(sid: u32, ssid: Option<u32>, addr: u64, access: Access) -> Request {
    Request { line: None, sid, ssid, addr, access }
}

#[track_caller]
fn ok(r: &RequestRecord) -> Translated {
    match r.result {
        Ok(t) => t,
        Err(e) => panic!("{}: expected a translation, got {e:?}", r.request_text()),
    }
}

#[track_caller]
fn fault(r: &RequestRecord) -> FaultInfo {
    match r.result {
        Err(Stop::Fault(f)) => f,
        other => panic!("{}: expected a fault, got {other:?}", r.request_text()),
    }
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    std::str::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn anchor_args(cmd: &mut Command) -> &mut Command {
    cmd.args(["inspect", "smmuv3", "--strtab-base", &format!("{STRTAB:#x}")])
        .args(["--strtab-base-cfg", &CFG.to_string()])
}

// ---------------------------------------------------------------------------------------------
// Tables built by aarch64-paging, from an ELF core
// ---------------------------------------------------------------------------------------------

#[test]
fn aarch64_paging_stage_1_tables_translate_as_the_crate_walks_them_from_an_elf_core() {
    let (f, core, _) = files("smmu-a64p");
    let insp = inspector(&[spec(&core)], anchors());
    let mut mapped = 0;
    for va in probes() {
        for ssid in [Some(SSID), None] {
            let r = insp.translate(&req(SID, ssid, va, Access::READ.privileged()), true);
            match their_walk(&f.mapping, va) {
                Some((out, lg2, flags)) => {
                    mapped += 1;
                    let t = ok(&r);
                    assert_eq!((t.output, t.page_size), (out, 1 << lg2), "{va:#x}");
                    assert_eq!(t.perms, s1_perms(flags), "{va:#x}");
                    // The walk shows the STE, the CD, then one descriptor per level.
                    let walk = r.walk.as_ref().unwrap();
                    assert!(matches!(walk[0], Step::Structure { what: "STE", .. }));
                    assert!(matches!(walk[1], Step::Structure { what: "CD", .. }));
                    let levels = walk.iter().filter(|s| matches!(s, Step::Entry { .. })).count();
                    assert_eq!(levels, usize::from(4 - (lg2 - 12) / 9), "{va:#x}");
                    let Step::Entry { fields, .. } = walk.last().unwrap() else { panic!() };
                    let want = out & !((1 << lg2) - 1);
                    assert_eq!(
                        fields.get("ADDR").map(ToString::to_string),
                        Some(format!("{want:#x}"))
                    );
                    if flags.contains(E1::READ_ONLY) {
                        let w =
                            insp.translate(&req(SID, ssid, va, Access::WRITE.privileged()), false);
                        assert_eq!(fault(&w).code, EventId::FPermission.code());
                    }
                }
                None => {
                    let e = fault(&r);
                    assert_eq!((e.code, e.name), (0x10, "F_TRANSLATION"), "{va:#x}");
                    assert_eq!((e.s2, e.class, e.record), (Some(false), Some("IN"), Some(true)));
                }
            }
        }
    }
    assert!(mapped >= 20, "the probes must hit mappings: {mapped}");
    // The raw pieces give the same answers as the core.
    let dir = scratch_dir("smmu-a64p-pieces");
    let pieces: Vec<ImageSpec> = f
        .img
        .write_pieces(&dir)
        .iter()
        .map(|s| {
            let (p, at) = s.rsplit_once('@').unwrap();
            ImageSpec { path: p.into(), at: Some(u64::from_str_radix(&at[2..], 16).unwrap()) }
        })
        .collect();
    let raw = inspector(&pieces, anchors());
    for va in probes() {
        let r = req(SID, Some(SSID), va, Access::READ);
        assert_eq!(raw.translate(&r, true), insp.translate(&r, true));
    }
}

#[test]
fn terminations_are_events_with_their_fields_or_silent_aborts() {
    let (f, core, _) = files("smmu-events");
    let insp = inspector(&[spec(&core)], anchors());
    // A StreamID beyond the 16-entry table.
    let r = insp.translate(&req(16, None, 0, Access::READ), false);
    assert_eq!(fault(&r).name, "C_BAD_STREAMID");
    // An invalid STE.
    assert_eq!(fault(&insp.translate(&req(0, None, 0, Access::READ), false)).name, "C_BAD_STE");
    // A SubstreamID beyond S1CDMax.
    let r = insp.translate(&req(SID, Some(2), 0x1000, Access::READ), false);
    assert_eq!(fault(&r).name, "C_BAD_SUBSTREAMID");
    // Bypass and abort.
    let t = ok(&insp.translate(&req(BYPASS_SID, None, 0x1234_5000, Access::WRITE), false));
    assert_eq!(t.output, 0x1234_5000);
    let r = insp.translate(&req(ABORT_SID, None, 0, Access::READ), false);
    assert!(matches!(r.result, Err(Stop::Abort(a)) if a.contains("Config")), "{r:?}");
    assert!(r.json().contains(r#""abort":"STE.Config is abort"#), "{}", r.json());
    // A Stream table in the hole: F_STE_FETCH with its FetchAddr, the missed read in the walk.
    let hole = Anchors { strtab_base: 0x20_0000, ..anchors() };
    let r = inspector(&[spec(&core)], hole).translate(&req(SID, None, 0, Access::READ), true);
    let e = fault(&r);
    assert_eq!((e.name, e.fetch_addr.map(|h| h.0)), ("F_STE_FETCH", Some(0x20_0000 + 64 * 3)));
    assert!(matches!(r.walk.as_deref(), Some([Step::Outside { .. }])), "{r:?}");
    drop(f);
}

#[test]
fn dump_shows_the_ste_the_valid_cds_and_the_valid_stream_ids() {
    let (f, core, _) = files("smmu-dump");
    let insp = inspector(&[spec(&core)], anchors());
    let d = dump::dump(&insp, SID);
    let what: Vec<_> = d.entries.iter().map(|e| (e.what, e.ssid, e.mem_addr.0)).collect();
    assert_eq!(what, [("STE", None, f.ste_at), ("CD", Some(0), CDS), ("CD", Some(1), CDS + 64)]);
    assert_eq!(d.stream_ids, [SID, BYPASS_SID, ABORT_SID]);
    assert!(d.notes.is_empty(), "{:?}", d.notes);
    let t = d.text();
    assert!(t.contains("Config=stage 1") && t.contains("S1ContextPtr=0x301000"), "{t}");
    let v: Value = serde_json::from_str(&d.json()).unwrap();
    assert_eq!(v["entries"][1]["fields"]["TTB0"], format!("{:#x}", f.mapping.root_address().0));
    // A stream whose STE is out of range says why.
    let d = dump::dump(&insp, 99);
    assert!(d.entries.is_empty() && d.notes[0].contains("C_BAD_STREAMID"), "{:?}", d.notes);
}

// ---------------------------------------------------------------------------------------------
// Hostile images
// ---------------------------------------------------------------------------------------------

fn junk_image(words: &[u64]) -> HostMemory {
    // 64K of junk at 0, repeated pattern: table pointers into it are likely.
    let mem = HostMemory::new(&[(Hpa(0), 0x1_0000)]).unwrap();
    for i in 0..0x2000u64 {
        let w = words[(i as usize) % words.len()];
        mem.write_u64(Hpa(i * 8), w).unwrap();
    }
    mem
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_with_random_anchors_finish_with_events_or_aborts(
        words in prop::collection::vec(
            prop_oneof![any::<u64>(), (0u64..0x1_0000).prop_map(|a| a | 0x1 | 1 << 31)], 1..64),
        base in prop_oneof![0u64..0x1_0000, any::<u64>()],
        cfg in any::<u32>(),
        small_cfg in 0u32..8,
        sid in 0u32..64,
        ssid in prop::option::of(0u32..8),
        addr in any::<u64>(),
        write in any::<bool>(),
    ) {
        let start = Instant::now();
        let a = Anchors { strtab_base: base, strtab_base_cfg: cfg, params: SmmuParams::default() };
        let insp = SmmuInspector::new(junk_image(&words), a).unwrap();
        let access = if write { Access::WRITE } else { Access::READ };
        let r = insp.translate(&req(sid, ssid, addr, access), true);
        prop_assert!(r.walk.as_ref().is_some_and(|w| w.len() < 64));
        prop_assert!(!r.text(&smmuv3::table_space).is_empty());
        prop_assert!(serde_json::from_str::<Value>(&r.json()).is_ok());
        // --dump over a small table (the scan is 2^LOG2SIZE transactions).
        let a = Anchors { strtab_base_cfg: small_cfg | (cfg & 0x3_07c0), ..a };
        let insp = SmmuInspector::new(junk_image(&words), a).unwrap();
        let d = dump::dump(&insp, sid);
        prop_assert!(d.stream_ids.len() <= dump::MAX_STREAMS);
        prop_assert!(d.entries.len() <= 1 + dump::MAX_CDS as usize);
        prop_assert!(!d.text().is_empty());
        prop_assert!(start.elapsed() < Duration::from_secs(10));
    }
}

// ---------------------------------------------------------------------------------------------
// The binary: JSON contract, README example, errors
// ---------------------------------------------------------------------------------------------

#[test]
fn json_lines_follow_the_documented_contract() {
    let (_f, core, _) = files("smmu-json");
    let dir = scratch_dir("smmu-json-reqs");
    let reqs = dir.join("reqs.csv");
    std::fs::write(
        &reqs,
        format!("# sid,ssid,addr,access\n{SID},{SSID},0x7f0000001040,write\n{SID},,0x5555000000000,read+priv\n{ABORT_SID},,0,read\n"),
    )
    .unwrap();
    let out = anchor_args(&mut bin())
        .args(["--image", core.to_str().unwrap(), "--requests", reqs.to_str().unwrap()])
        .args(["--format", "json", "--walk"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v = json_lines(&out);
    assert_eq!(v.len(), 3);
    let keys = |o: &Value| o.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let mut want = ["line", "sid", "ssid", "addr", "access", "priv", "output", "page_size"]
        .map(String::from)
        .to_vec();
    want.extend(["perms", "interrupt", "reads", "walk"].map(String::from));
    want.sort();
    let mut got = keys(&v[0]);
    got.sort();
    assert_eq!(got, want);
    assert_eq!(
        (&v[0]["line"], &v[0]["sid"], &v[0]["ssid"]),
        (&2.into(), &SID.into(), &SSID.into())
    );
    assert_eq!(
        (&v[0]["output"], &v[0]["perms"]),
        (&"0x8040000040".into(), &"priv:rw- user:rwx".into())
    );
    let walk = v[0]["walk"].as_array().unwrap();
    assert_eq!((&walk[0]["kind"], &walk[0]["what"]), (&"structure".into(), &"STE".into()));
    assert_eq!(walk[0]["fields"]["Config"], "stage 1");
    assert_eq!(walk[1]["what"], "CD");
    assert_eq!(
        (&walk[2]["kind"], &walk[2]["stage"], &walk[2]["level"]),
        (&"entry".into(), &"1".into(), &0.into())
    );
    assert_eq!(walk[5]["fields"]["AF"], true);
    assert_eq!(
        v[1]["fault"],
        serde_json::json!({"code": 16, "name": "F_TRANSLATION", "record": true, "S2": false, "CLASS": "IN"})
    );
    assert!(v[1].get("output").is_none() && v[1]["ssid"].is_null());
    assert_eq!(v[2]["abort"], "STE.Config is abort: no traffic, no event");
    assert!(v[2].get("fault").is_none());
    // --dump as one object.
    let out = anchor_args(&mut bin())
        .args(["--image", core.to_str().unwrap(), "--dump", "3", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let d = &json_lines(&out)[0];
    assert_eq!(d["stream_ids"], serde_json::json!([3, 5, 6]));
    assert_eq!(d["entries"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_inputs_are_clear_errors_with_exit_codes() {
    let (_f, core, _) = files("smmu-errors");
    let core = core.to_str().unwrap().to_owned();
    // Usage: a StreamID that is not a number, a missing anchor, no query.
    let a = anchor_args(&mut bin())
        .args(["--image", &core, "--device", "00:01.0", "--addr", "0"])
        .assert()
        .code(2);
    assert!(String::from_utf8_lossy(&a.get_output().stderr).contains("is not a number"));
    bin()
        .args(["inspect", "smmuv3", "--image", &core, "--strtab-base", "0", "--dump", "1"])
        .assert()
        .code(2);
    anchor_args(&mut bin()).args(["--image", &core]).assert().code(2);
    anchor_args(&mut bin())
        .args(["--image", &core, "--strtab-base-cfg", "0x100000000"])
        .assert()
        .code(2);
    // Unusable input: a missing image, a malformed request line (with its number).
    anchor_args(&mut bin()).args(["--image", "/nonexistent/x.img", "--dump", "1"]).assert().code(1);
    let dir = scratch_dir("smmu-errors-reqs");
    let reqs = dir.join("bad.csv");
    std::fs::write(&reqs, "3,,0x1000,read\n00:01.0,,0x1000,read\n").unwrap();
    let a = anchor_args(&mut bin())
        .args(["--image", &core, "--requests", reqs.to_str().unwrap()])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("sviommu inspect smmuv3:") && err.contains("line 2: sid:"), "{err}");
    // A fault is an answer.
    anchor_args(&mut bin())
        .args(["--image", &core, "--device", "0", "--addr", "0"])
        .assert()
        .success();
}

#[test]
fn help_explains_the_anchors() {
    let out =
        bin().args(["inspect", "smmuv3", "--help"]).assert().success().get_output().stdout.clone();
    let help = String::from_utf8(out).unwrap();
    for s in [
        "STRTAB_BASE",
        "LOG2SIZE",
        "SMMUEN",
        "copy-on-write",
        "F_STE_FETCH",
        "L1STD, L1CD",
        "Exit status",
        "--idr5",
    ] {
        assert!(help.contains(s), "help lacks {s}:\n{help}");
    }
}

/// Stage-2-only streams: tables the `aarch64-paging` crate built for its Stage2 regime, behind
/// an STE with Config = S2, translate as the crate's own walk says; what they refuse is an
/// F_PERMISSION or F_TRANSLATION with S2 = 1.
#[test]
fn aarch64_paging_stage_2_tables_translate_as_the_crate_walks_them() {
    use aarch64_paging::descriptor::Stage2Attributes as S2;
    use aarch64_paging::paging::Stage2;

    const S2_SID: u32 = 9;
    let mut pages: Vec<u64> = (0..64).map(|i| TABLES + i * 0x1000).collect();
    pages.reverse();
    pages.swap(1, 40);
    let mut m = Mapping::new(ChosenAddresses::<S2>::new(pages), 1, Stage2);
    let base = S2::VALID | S2::ACCESS_FLAG | S2::SH_INNER | S2::MEMATTR_NORMAL_INNER_WB;
    let rw = S2::S2AP_ACCESS_RW;
    let maps: [(u64, u64, u64, S2); 4] = [
        (0x1000, 0x1000, 0x9000, rw),
        (0x20_0000, 0x20_0000, 0x80_0000, S2::S2AP_ACCESS_RO),
        (0x4000_0000, 0x4000_0000, 0x1_0000_0000, rw | S2::XN),
        (0x7f_ffff_f000, 0x1000, 0x5000, rw),
    ];
    for (ipa, len, pa, f) in maps {
        let range = MemoryRegion::new(ipa as usize, (ipa + len) as usize);
        m.map_range(&range, PhysicalAddress(pa as usize), base | f, Constraints::empty()).unwrap();
    }
    let img = Image::new(&[(TABLES, TABLE_PAGES * 0x1000), (STRUCTS, 0x1_0000)], (STRUCTS, 0));
    m.translation().copy_into(&img.mem);
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Stage2);
    ste.set_s2vmid(1);
    // A 39-bit IPA space starting at level 1 (SL0 = 1), the crate's root level.
    ste.set_s2t0sz(25);
    ste.set_s2sl0(1);
    ste.set_s2tg(Granule::Size4K);
    ste.set_s2ps(0b101);
    ste.set_s2aa64(true);
    ste.set_s2r(true);
    ste.set_s2ttb(m.root_address().0 as u64);
    img.write(STRTAB + 64 * u64::from(S2_SID), &ste.words());
    let dir = scratch_dir("smmu-a64p-s2");
    let core = dir.join("guest.core");
    img.write_elf_core(&core);
    let insp = inspector(&[spec(&core)], anchors());

    let mut mapped = 0;
    for (ipa, len, ..) in maps {
        for probe in [ipa, ipa + len / 2 + 8, ipa + len - 8, ipa + len] {
            // Beyond the 39-bit IPA space the crate has nothing to say (and the SMMU faults).
            let theirs = crate_walk(&m, probe).map(|(out, lg2, flags, _)| (out, lg2, flags));
            let r = insp.translate(&req(S2_SID, None, probe, Access::READ), true);
            match theirs {
                Some((out, lg2, flags)) => {
                    mapped += 1;
                    let t = ok(&r);
                    assert_eq!((t.output, t.page_size), (out, 1 << lg2), "{probe:#x}");
                    let walk = r.walk.as_ref().unwrap();
                    assert!(matches!(walk[0], Step::Structure { what: "STE", .. }));
                    let levels = walk.iter().filter(|s| matches!(s, Step::Entry { .. })).count();
                    // The walk starts at level 1: a 4K page is three levels down.
                    assert_eq!(levels, usize::from(3 - (lg2 - 12) / 9), "{probe:#x}");
                    let write = insp.translate(&req(S2_SID, None, probe, Access::WRITE), false);
                    if flags.contains(S2::S2AP_ACCESS_WO) {
                        assert!(write.result.is_ok(), "{probe:#x}");
                    } else {
                        let e = fault(&write);
                        assert_eq!((e.code, e.s2), (EventId::FPermission.code(), Some(true)));
                    }
                }
                None => {
                    let e = fault(&r);
                    assert_eq!((e.code, e.s2), (EventId::FTranslation.code(), Some(true)));
                }
            }
        }
    }
    assert!(mapped >= 10, "the probes must hit mappings: {mapped}");
}

// ---------------------------------------------------------------------------------------------
// More modes from aarch64-paging: TTB1, and nested with both stages built by the crate
// ---------------------------------------------------------------------------------------------

/// The upper half (TTB1): tables the crate builds for `VaRange::Upper` from level 1 (a 39-bit
/// VA space, T1SZ 25), behind a CD whose TTB0 half is disabled, translate as the crate walks
/// them; below the upper range, and in the disabled lower half, is F_TRANSLATION.
#[test]
fn aarch64_paging_ttb1_tables_translate_upper_addresses_as_the_crate_walks_them() {
    const UPPER_SID: u32 = 11;
    let mut pages: Vec<u64> = (0..64).map(|i| TABLES + i * 0x1000).collect();
    pages.swap(0, 17);
    let mut m = Mapping::with_asid_and_va_range(
        ChosenAddresses::<E1>::new(pages),
        2,
        1,
        El1And0,
        VaRange::Upper,
    );
    let top: u64 = 0xffff_ff80_0000_0000;
    let maps: [(u64, u64, u64, E1); 4] = [
        (top, 0x2000, 0x9000, E1::empty()),
        (top + 0x40_0000, 0x20_0000, 0x80_0000, E1::READ_ONLY | E1::UXN),
        (top + 0x40_0000_0000, 0x4000_0000, 0x40_0000_0000, E1::PXN),
        (u64::MAX - 0xf_ffff, 0x1000, 0x5000, E1::USER),
    ];
    let base = E1::VALID | E1::ACCESSED | E1::INNER_SHAREABLE | E1::ATTRIBUTE_INDEX_1;
    for (va, len, pa, extra) in maps {
        let range = MemoryRegion::new(va as usize, (va + len) as usize);
        m.map_range(&range, PhysicalAddress(pa as usize), base | extra, Constraints::empty())
            .unwrap();
    }
    let img = Image::new(&[(TABLES, TABLE_PAGES * 0x1000), (STRUCTS, 0x1_0000)], (STRUCTS, 0));
    m.translation().copy_into(&img.mem);
    // TTB1 only: TTB0's half disabled.
    let mut cd = ttb0_cd(2, 0);
    cd.set_epd0(true);
    cd.set_epd1(false);
    cd.set_t1sz(25);
    cd.set_tg1(Granule::Size4K);
    cd.set_ips(0b101);
    cd.set_ttb1(m.root_address().0 as u64);
    let cd_at = CDS + 0x800;
    img.write(cd_at, &cd.words());
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Stage1);
    ste.set_s1contextptr(cd_at);
    img.write(STRTAB + 64 * u64::from(UPPER_SID), &ste.words());
    let dir = scratch_dir("smmu-a64p-ttb1");
    let core = dir.join("guest.core");
    img.write_elf_core(&core);
    let insp = inspector(&[spec(&core)], anchors());

    let mut mapped = 0;
    let mut probes = vec![top - 0x1000, 0x1000, top + 0x1_0000_0000];
    for (va, len, ..) in maps {
        probes.extend([va, va + (len - 1), va + len / 2 + 8]);
    }
    for va in probes {
        let r = insp.translate(&req(UPPER_SID, None, va, Access::READ.privileged()), true);
        // The crate's table covers the top 2^39 bytes only.
        let theirs = if va >= top { crate_walk(&m, va) } else { None };
        match theirs {
            Some((out, lg2, flags, level)) => {
                mapped += 1;
                let t = ok(&r);
                assert_eq!((t.output, t.page_size), (out, 1 << lg2), "{va:#x}");
                assert_eq!(t.perms, s1_perms(flags), "{va:#x}");
                // The STE, the CD, then one entry per level from level 1 down to the leaf.
                let walk = r.walk.as_ref().unwrap();
                assert_eq!(walk.len(), 2 + level, "{va:#x}");
                assert_eq!(r.reads as usize, walk.len());
                let Step::Entry { level: first, mem_addr, .. } = &walk[2] else { panic!() };
                assert_eq!((*first, mem_addr.0 & !0xfff), (1, m.root_address().0 as u64));
                // The leaf's address decoded with TG1's granule.
                let Step::Entry { fields, .. } = walk.last().unwrap() else { panic!() };
                let want = out & !((1 << lg2) - 1);
                assert_eq!(fields.get("ADDR").map(ToString::to_string), Some(format!("{want:#x}")));
            }
            None => {
                let e = fault(&r);
                assert_eq!((e.name, e.s2), ("F_TRANSLATION", Some(false)), "{va:#x}");
            }
        }
    }
    assert!(mapped >= 10, "the probes must hit mappings: {mapped}");
}

/// Nested (STE.Config = S1+S2), both stages built by `aarch64-paging`: the guest's stage-1
/// tables and CD at IPAs in guest RAM (the crate's EL1&0 regime), the host's stage 2 mapping
/// guest RAM (4K pages, then a 2M block) and two more IPA ranges (read-only, execute-never)
/// to PAs (the crate's Stage2 regime). Each probe translates as the composition of the two
/// crates' walks: the output is stage 2's of stage 1's IPA, the page the smaller of the two,
/// the permissions what both allow; a stage-1 miss is F_TRANSLATION with S2 = 0, a stage-2 miss
/// of the output F_TRANSLATION with S2 = 1, CLASS IN and the IPA. The walk is the STE, the CD
/// found through stage 2, then every stage-1 entry at the PA stage 2 gives its table's IPA,
/// each after the stage-2 walk that found it, and the output's stage-2 walk: as many reads as
/// the crates' walks' levels say.
#[test]
fn aarch64_paging_nested_stages_translate_as_the_composition_of_the_crates_walks() {
    use aarch64_paging::descriptor::Stage2Attributes as S2;
    use aarch64_paging::paging::Stage2;

    const NESTED_SID: u32 = 10;
    // Guest RAM: IPA 1G..1G + 4M at PA 16M; its first 2M in 4K pages, the rest one 2M block.
    const RAM_IPA: u64 = 0x4000_0000;
    const RAM_PA: u64 = 0x100_0000;
    const RAM_LEN: u64 = 0x40_0000;
    let ipa_to_pa = |ipa: u64| RAM_PA + (ipa - RAM_IPA);
    // Stage-1 tables at IPAs 1G + 512K.., the CD at 1G + 4K.
    let mut s1_pages: Vec<u64> = (0..64).map(|i| RAM_IPA + 0x8_0000 + i * 0x1000).collect();
    s1_pages.swap(2, 50);
    let cd_ipa = RAM_IPA + 0x1000;

    // Stage 2, from level 1 (39-bit IPAs).
    let mut s2_pages: Vec<u64> = (0..TABLE_PAGES).map(|i| TABLES + i * 0x1000).collect();
    s2_pages.reverse();
    let mut s2 = Mapping::new(ChosenAddresses::<S2>::new(s2_pages), 1, Stage2);
    let s2_base = S2::VALID | S2::ACCESS_FLAG | S2::SH_INNER | S2::MEMATTR_NORMAL_INNER_WB;
    let rw = S2::S2AP_ACCESS_RW;
    let s2_maps: [(u64, u64, u64, S2, Constraints); 4] = [
        (RAM_IPA, 0x20_0000, RAM_PA, rw, Constraints::NO_BLOCK_MAPPINGS),
        (RAM_IPA + 0x20_0000, 0x20_0000, RAM_PA + 0x20_0000, rw, Constraints::empty()),
        (0x8000_0000, 0x20_0000, 0x80_0000_0000, S2::S2AP_ACCESS_RO, Constraints::empty()),
        (0x9000_0000, 0x1000, 0x9000, rw | S2::XN, Constraints::empty()),
    ];
    for (ipa, len, pa, f, c) in s2_maps {
        let range = MemoryRegion::new(ipa as usize, (ipa + len) as usize);
        s2.map_range(&range, PhysicalAddress(pa as usize), s2_base | f, c).unwrap();
    }

    // Stage 1, from level 0 (48-bit VAs), outputs are IPAs.
    let mut s1 = Mapping::with_asid_and_va_range(
        ChosenAddresses::<E1>::new(s1_pages),
        1,
        0,
        El1And0,
        VaRange::Lower,
    );
    let s1_maps: [(u64, u64, u64, E1); 5] = [
        // 4K pages over stage-2 4K pages.
        (0x7f00_0000_1000, 0x3000, RAM_IPA + 0x10_0000, E1::USER),
        // A 2M block over the stage-2 block, read-only.
        (0x7f00_0020_0000, 0x20_0000, RAM_IPA + 0x20_0000, E1::READ_ONLY),
        // A 1G block over guest RAM and the IPA space beyond it that stage 2 leaves unmapped.
        (0x4000_0000, 0x4000_0000, RAM_IPA, E1::UXN),
        // Pages over the read-only and the execute-never stage-2 ranges.
        (0x1000, 0x1000, 0x8000_0000, E1::PXN.union(E1::NON_GLOBAL)),
        (0xffff_f000, 0x1000, 0x9000_0000, E1::USER),
    ];
    let s1_base = E1::VALID | E1::ACCESSED | E1::INNER_SHAREABLE | E1::ATTRIBUTE_INDEX_1;
    for (va, len, ipa, extra) in s1_maps {
        let range = MemoryRegion::new(va as usize, (va + len) as usize);
        s1.map_range(&range, PhysicalAddress(ipa as usize), s1_base | extra, Constraints::empty())
            .unwrap();
    }

    let img = Image::new(
        &[(TABLES, TABLE_PAGES * 0x1000), (STRUCTS, 0x1_0000), (RAM_PA, RAM_LEN)],
        (STRUCTS, 0),
    );
    s2.translation().copy_into(&img.mem);
    s1.translation().copy_into_at(&img.mem, ipa_to_pa);
    let cd = ttb0_cd(1, s1.root_address().0 as u64);
    img.write(ipa_to_pa(cd_ipa), &cd.words());
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Nested);
    ste.set_s1contextptr(cd_ipa);
    ste.set_s2vmid(1);
    ste.set_s2t0sz(25);
    ste.set_s2sl0(1);
    ste.set_s2tg(Granule::Size4K);
    ste.set_s2ps(0b101);
    ste.set_s2aa64(true);
    ste.set_s2r(true);
    ste.set_s2ttb(s2.root_address().0 as u64);
    let ste_at = STRTAB + 64 * u64::from(NESTED_SID);
    img.write(ste_at, &ste.words());
    let dir = scratch_dir("smmu-a64p-nested");
    let core = dir.join("guest.core");
    img.write_elf_core(&core);
    let insp = inspector(&[spec(&core)], anchors());

    // Stage-2 reads to find `ipa`: one per level from level 1 down to the crate's leaf.
    let s2_levels = |ipa: u64| crate_walk(&s2, ipa).map_or(0, |(.., level)| level);
    let (mut both, mut s2_misses) = (0, 0);
    let mut probes = vec![0x5555_0000_0000, 0x2000];
    for (va, len, ..) in s1_maps {
        probes.extend([va, va + len - 8, va + len / 2, va + len]);
    }
    for va in probes {
        let r = insp.translate(&req(NESTED_SID, None, va, Access::READ.privileged()), true);
        let Some((ipa, s1_lg2, s1_flags, s1_level)) = crate_walk(&s1, va) else {
            let e = fault(&r);
            assert_eq!((e.name, e.s2, e.class), ("F_TRANSLATION", Some(false), Some("IN")));
            continue;
        };
        let Some((pa, s2_lg2, s2_flags, _)) = crate_walk(&s2, ipa) else {
            s2_misses += 1;
            let e = fault(&r);
            assert_eq!(
                (e.name, e.s2, e.class, e.ipa.map(|h| h.0)),
                ("F_TRANSLATION", Some(true), Some("IN"), Some(ipa)),
                "{va:#x}"
            );
            continue;
        };
        both += 1;
        let t = ok(&r);
        let perms = s1_perms(s1_flags).intersect(s2_perms(s2_flags));
        assert_eq!(
            (t.output, t.page_size, t.perms),
            (pa, 1 << s1_lg2.min(s2_lg2), perms),
            "{va:#x}"
        );
        // The write the composition refuses is refused by the stage that refuses it.
        let w = insp.translate(&req(NESTED_SID, None, va, Access::WRITE.privileged()), false);
        if perms.allows(Access::WRITE.privileged()) {
            assert_eq!(ok(&w).output, pa);
        } else {
            let e = fault(&w);
            let s1_refuses = !s1_perms(s1_flags).allows(Access::WRITE.privileged());
            assert_eq!((e.name, e.s2), ("F_PERMISSION", Some(!s1_refuses)), "{va:#x}");
        }

        // The walk: STE; the CD's stage-2 walk, the CD; per stage-1 level, the stage-2 walk of
        // its table's IPA, then the entry at the PA it gives; the output's stage-2 walk.
        let walk = r.walk.as_ref().unwrap();
        let mut at = 0;
        let Step::Structure { what: "STE", mem_addr, .. } = &walk[at] else { panic!("{walk:?}") };
        assert_eq!(mem_addr.0, ste_at);
        at += 1 + s2_levels(cd_ipa);
        let Step::Structure { what: "CD", mem_addr, .. } = &walk[at] else { panic!("{walk:?}") };
        assert_eq!(mem_addr.0, crate_walk(&s2, cd_ipa).unwrap().0);
        at += 1;
        let mut s1_entries = 0;
        loop {
            let s2_run = walk[at..]
                .iter()
                .take_while(|s| matches!(s, Step::Entry { stage: "2", .. }))
                .count();
            match walk.get(at + s2_run) {
                Some(Step::Entry { stage: "1", level, table_addr, mem_addr, raw, .. }) => {
                    assert_eq!(s2_run, s2_levels(table_addr.0), "{va:#x}");
                    assert_eq!(*level as usize, s1_entries, "{va:#x}");
                    assert_eq!(mem_addr.0, crate_walk(&s2, table_addr.0).unwrap().0, "{va:#x}");
                    assert_eq!(raw.0, img.read(mem_addr.0), "the entry the crate wrote");
                    s1_entries += 1;
                    at += s2_run + 1;
                }
                None => {
                    assert_eq!(s2_run, s2_levels(ipa), "{va:#x}: the output's stage-2 walk");
                    break;
                }
                Some(other) => panic!("{va:#x}: {other:?}"),
            }
        }
        assert_eq!(s1_entries, s1_level + 1, "{va:#x}: every stage-1 level, from level 0");
        assert_eq!(r.reads as usize, walk.len(), "{va:#x}");
    }
    assert!(both >= 10 && s2_misses >= 2, "probes: {both} translated, {s2_misses} stage-2 misses");
}

// ---------------------------------------------------------------------------------------------
// Two-level Stream and CD tables: the level-1 descriptors in the walk
// ---------------------------------------------------------------------------------------------

/// A two-level Stream table (LOG2SIZE 16, SPLIT 8; its level-1 table at STRUCTS + 8K) and a
/// two-level CD table (S1Fmt 4K leaves, S1CDMax 10) around the fixture's stage-1 tables.
const L1_STRTAB: u64 = STRUCTS + 0x2000;
/// One level-2 array of 64 STEs (Span 7).
const L2_STES: u64 = STRUCTS + 0x3000;
const L1_CDS: u64 = STRUCTS + 0x4000;
/// One level-2 CD table (64 CDs).
const L2_CDS: u64 = STRUCTS + 0x5000;
/// StreamID 0x1234: L1STD 0x12, STE 0x34 of its array; SubstreamID 0x85: L1CD 2, CD 5 of its
/// table. SubstreamID 0x05 goes through L1CD 0, which is invalid.
const TL_SID: u32 = 0x1234;
const TL_SSID: u32 = 0x85;

struct TwoLevel {
    f: Fixture,
    core: PathBuf,
    /// The four structures a transaction from TL_SID / TL_SSID reads: (what, address, words).
    structures: [(&'static str, u64, Vec<u64>); 4],
}

fn two_level_cfg() -> u32 {
    let cfg = strtab_base_cfg::LOG2SIZE.set(0, 16);
    let cfg = strtab_base_cfg::SPLIT.set(cfg, 8);
    u32::try_from(strtab_base_cfg::FMT.set(cfg, 1)).unwrap()
}

fn two_level_anchors() -> Anchors {
    Anchors { strtab_base: L1_STRTAB, strtab_base_cfg: two_level_cfg(), ..anchors() }
}

fn two_level(name: &str) -> TwoLevel {
    let f = fixture();
    let mut l1std = L1Std::default();
    l1std.set_span(7);
    l1std.set_l2ptr(L2_STES);
    let l1std_at = L1_STRTAB + 8 * u64::from(TL_SID >> 8);
    f.img.write(l1std_at, &[l1std.word()]);
    let mut ste = Ste::default();
    ste.set_v(true);
    ste.set_config(StreamConfig::Stage1);
    ste.set_s1contextptr(L1_CDS);
    ste.set_s1cdmax(10);
    ste.set_s1fmt(S1Fmt::TwoLevel4K);
    let ste_at = L2_STES + 64 * u64::from(TL_SID & 0xff);
    f.img.write(ste_at, &ste.words());
    let mut l1cd = L1Cd::default();
    l1cd.set_v(true);
    l1cd.set_l2ptr(L2_CDS);
    let l1cd_at = L1_CDS + 8 * u64::from(TL_SSID >> 6);
    f.img.write(l1cd_at, &[l1cd.word()]);
    // The fixture's CD: the crate's tables.
    let cd: [u64; 8] = std::array::from_fn(|i| f.img.read(CDS + 8 * i as u64));
    let cd_at = L2_CDS + 64 * u64::from(TL_SSID & 0x3f);
    f.img.write(cd_at, &cd);
    let dir = scratch_dir(name);
    let core = dir.join("guest.core");
    f.img.write_elf_core(&core);
    let structures = [
        ("L1STD", l1std_at, vec![l1std.word()]),
        ("STE", ste_at, ste.words().to_vec()),
        ("L1CD", l1cd_at, vec![l1cd.word()]),
        ("CD", cd_at, cd.to_vec()),
    ];
    TwoLevel { f, core, structures }
}

/// `--walk` shows each level-1 descriptor before the structure it leads to, with the words the
/// test wrote and its fields by the spec view (L1STD Span and L2Ptr, L1CD V and L2Ptr); the
/// read count is the walk's length, translated or not.
#[test]
fn two_level_tables_show_l1std_ste_l1cd_cd_then_the_entries_in_the_walk() {
    let t = two_level("smmu-two-level");
    let insp = inspector(&[spec(&t.core)], two_level_anchors());
    let va = MAPS[0].0 + 0x40;
    let r = insp.translate(&req(TL_SID, Some(TL_SSID), va, Access::READ.privileged()), true);
    let (out, lg2, _) = their_walk(&t.f.mapping, va).unwrap();
    assert_eq!((ok(&r).output, ok(&r).page_size), (out, 1 << lg2));
    let walk = r.walk.as_ref().unwrap();
    assert_eq!(walk.len(), 8, "four structures, four levels: {walk:?}");
    assert_eq!(r.reads, 8);
    for (step, (name, addr, written)) in walk.iter().zip(&t.structures) {
        let Step::Structure { what, mem_addr, words, reserved_bits, .. } = step else {
            panic!("{step:?}")
        };
        let words: Vec<u64> = words.iter().map(|w| w.0).collect();
        assert_eq!((*what, mem_addr.0, &words, *reserved_bits), (*name, *addr, written, false));
    }
    let Step::Structure { fields, .. } = &walk[0] else { panic!() };
    assert_eq!(fields.text_all(), format!("Span=7 L2Ptr={L2_STES:#x}"));
    let Step::Structure { fields, .. } = &walk[2] else { panic!() };
    assert_eq!(fields.text_all(), format!("V=1 L2Ptr={L2_CDS:#x}"));
    for (level, step) in walk[4..].iter().enumerate() {
        let Step::Entry { level: l, mem_addr, raw, .. } = step else { panic!("{step:?}") };
        assert_eq!((*l as usize, raw.0), (level, t.f.img.read(mem_addr.0)));
    }

    // Faults count the level-1 reads too: an unmapped address, an invalid L1CD, an L1STD
    // with Span 0.
    let r = insp.translate(&req(TL_SID, Some(TL_SSID), 0x5555_0000_0000, Access::READ), true);
    assert_eq!(fault(&r).name, "F_TRANSLATION");
    assert_eq!(r.reads as usize, r.walk.as_ref().unwrap().len());
    let r = insp.translate(&req(TL_SID, Some(0x05), va, Access::READ), true);
    assert_eq!(fault(&r).name, "C_BAD_SUBSTREAMID");
    let what: Vec<_> = r
        .walk
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| match s {
            Step::Structure { what, words, .. } => (*what, words[0].0),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(what, [("L1STD", t.structures[0].2[0]), ("STE", t.structures[1].2[0]), ("L1CD", 0)]);
    assert_eq!(r.reads, 3);
    let r = insp.translate(&req(0x0100, None, 0, Access::READ), true);
    assert_eq!(fault(&r).name, "C_BAD_STREAMID");
    assert!(matches!(r.walk.as_deref(), Some([Step::Structure { what: "L1STD", .. }])), "{r:?}");
    assert_eq!(r.reads, 1);
}

/// The same through the binary: JSON steps with `what` `"L1STD"` / `"L1CD"`, their words and
/// fields; text blocks like the STE's and CD's.
#[test]
fn two_level_walk_prints_the_level_1_descriptors_as_text_and_json() {
    let t = two_level("smmu-two-level-cli");
    let run = |format: &str| {
        let out = bin()
            .args(["inspect", "smmuv3", "--image", t.core.to_str().unwrap()])
            .args(["--strtab-base", &format!("{L1_STRTAB:#x}")])
            .args(["--strtab-base-cfg", &format!("{:#x}", two_level_cfg())])
            .args(["--device", &TL_SID.to_string(), "--ssid", &TL_SSID.to_string()])
            .args(["--addr", "0x7f0000001040", "--walk", "--format", format])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    let v = json_lines(run("json").as_bytes());
    let walk = v[0]["walk"].as_array().unwrap();
    let whats: Vec<_> = walk.iter().map(|s| s["what"].as_str().unwrap_or("entry")).collect();
    assert_eq!(whats, ["L1STD", "STE", "L1CD", "CD", "entry", "entry", "entry", "entry"]);
    assert_eq!(v[0]["reads"], 8);
    for (step, (_, addr, words)) in walk.iter().zip(&t.structures) {
        assert_eq!(step["kind"], "structure");
        assert_eq!(step["mem_addr"], format!("{addr:#x}"));
        let hex: Vec<String> = words.iter().map(|w| format!("{w:#x}")).collect();
        assert_eq!(step["words"], serde_json::json!(hex));
    }
    assert_eq!(walk[0]["fields"], serde_json::json!({"Span": 7, "L2Ptr": format!("{L2_STES:#x}")}));
    assert_eq!(walk[2]["fields"], serde_json::json!({"V": true, "L2Ptr": format!("{L2_CDS:#x}")}));
    assert_eq!(
        (&walk[0]["reserved_bits"], &walk[2]["reserved_bits"]),
        (&false.into(), &false.into())
    );

    let text = run("text");
    let (_, l1std_at, l1std) = &t.structures[0];
    let (_, l1cd_at, l1cd) = &t.structures[2];
    for block in [
        format!(
            "  L1STD @ {l1std_at:#x}:\n      {:016x}\n      Span=7 L2Ptr={L2_STES:#x}\n  STE @ ",
            l1std[0]
        ),
        format!(
            "  L1CD @ {l1cd_at:#x}:\n      {:016x}\n      V=1 L2Ptr={L2_CDS:#x}\n  CD @ ",
            l1cd[0]
        ),
    ] {
        assert!(text.contains(&block), "{block}\nnot in:\n{text}");
    }
    assert!(text.find("L1STD").unwrap() < text.find("L1CD").unwrap());
    assert!(text.contains("two-level Stream table at 0x302000, LOG2SIZE 16, SPLIT 8"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// The README's example is real.
// ---------------------------------------------------------------------------------------------

#[allow(dead_code)]
#[path = "../examples/smmuv3_demo_image.rs"]
mod smmuv3_demo;

/// The README shows `inspect smmuv3 ... --walk` on the demo image the `smmuv3_demo_image`
/// example writes (a two-level Stream table, a nested stream with a two-level CD table); this
/// runs that command line on that image and compares the output with the README's block, line
/// for line. When the output changes on purpose, regenerate the block with the two commands
/// the README shows.
#[test]
fn the_readme_smmuv3_walk_example_is_what_the_command_prints() {
    let readme = include_str!("../../../README.md");
    assert!(
        readme.contains("cargo run -p sviommu --example smmuv3_demo_image -- /tmp/smmuv3-demo.img")
    );
    let args = "--strtab-base-cfg 0x10210 --device 16 --ssid 1 --addr 0x7f0000001040 --access \
                write --walk";
    let cmd = format!(
        "inspect smmuv3 --image /tmp/smmuv3-demo.img --strtab-base 0x100000 \\\n    {args}"
    );
    let shown = readme_block(readme, &cmd);

    let demo = smmuv3_demo::build();
    assert_eq!((demo.strtab_base, demo.strtab_base_cfg), (0x10_0000, 0x10210));
    let dir = scratch_dir("smmu-readme");
    let path = dir.join("smmuv3-demo.img");
    demo.write_raw(&path);
    let out = bin()
        .args(["inspect", "smmuv3", "--image"])
        .arg(&path)
        .args(["--strtab-base", "0x100000"])
        .args(args.split(' '))
        .output()
        .unwrap();
    let printed = output_as_shown(out, &path, "/tmp/smmuv3-demo.img");
    assert_eq!(shown, printed);
    let _ = std::fs::remove_dir_all(dir);
}

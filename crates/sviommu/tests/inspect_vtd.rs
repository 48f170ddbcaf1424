//! `sviommu inspect vtd` against tables other code wrote: first-stage tables the `x86_64` crate
//! builds (its own translation is the expected answer), legacy second-stage tables from
//! pgtable's builder, the same memory as a raw file, raw pieces and a QEMU-layout ELF core;
//! hostile images (random bytes, self-references, loops); the JSON contract and every error,
//! through the binary.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::*;
use proptest::prelude::*;
use serde_json::Value;
use sviommu::inspect::image::{self, ImageArgs, ImageSpec};
use sviommu::inspect::record::{FaultInfo, RequestRecord, Step, Stop, Translated};
use sviommu::inspect::run::Report as _;
use sviommu::inspect::vtd::{self, dump, Anchors, Request, VtdInspector};
use sviommu_memory::{HostMemory, Hpa, PhysMemory};
use sviommu_pgtable::vtd_ss::{self, VtdSecondStage, VtdSsAttrs};
use sviommu_pgtable::{Access, Build};
use sviommu_vtd::hw::VtdParams;
use sviommu_vtd::spec::pasid::PasidEntry;
use sviommu_vtd::spec::regs::rtaddr::Ttm;
use sviommu_vtd::spec::root::{ContextEntry, ScalableContextEntry, ScalableRootEntry};
use sviommu_vtd::spec::{Aw, FaultReason, Fspm, Pgtt};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn bin() -> Command {
    Command::cargo_bin("sviommu").unwrap()
}

/// The inspector the command builds, over image files.
fn inspector(images: &[ImageSpec], rtaddr: u64) -> VtdInspector {
    let args = ImageArgs { images: images.to_vec(), image_base: 0 };
    let (mem, _) = image::load(&args).unwrap();
    VtdInspector::new(mem, Anchors { rtaddr, params: VtdParams::default() }).unwrap()
}

fn req(rid: u16, pasid: Option<u32>, addr: u64, access: Access) -> Request {
    Request { line: None, rid, pasid, addr, access }
}

#[track_caller]
fn ok(r: &RequestRecord) -> Translated {
    match r.result {
        Ok(t) => t,
        Err(f) => panic!("{}: expected a translation, got {f:?}", r.request_text()),
    }
}

#[track_caller]
fn fault(r: &RequestRecord) -> FaultInfo {
    match r.result {
        Err(Stop::Fault(f)) => f,
        other => panic!("{}: expected a fault, got {other:?}", r.request_text()),
    }
}

fn code(reason: FaultReason) -> u8 {
    reason.code()
}

/// The demo image as a raw file in a scratch directory.
fn demo_file(dir: &Path) -> (Demo, PathBuf) {
    let demo = demo();
    let path = dir.join("demo.img");
    demo.image.write_raw(&path, 0);
    (demo, path)
}

// ---------------------------------------------------------------------------------------------
// First-stage tables built by the `x86_64` crate, inside scalable-mode structures.
// ---------------------------------------------------------------------------------------------

mod other_crate {
    use sviommu_testsupport::x86::{flags, X86Tables};
    use x86_64::structures::paging::mapper::TranslateResult;
    use x86_64::structures::paging::{PageTableFlags as F, Size2MiB, Size4KiB};

    use super::*;

    /// Host memory: structures and (first-stage only) tables at 1 MiB, 1 MiB long.
    const HOST: (u64, u64) = (0x10_0000, 0x10_0000);
    /// Nested: guest RAM, GPA 0..2 MiB at HPA 4 MiB.
    const GUEST: (u64, u64) = (0x40_0000, 0x20_0000);
    /// Where the crate's table frames start, in table space (HPA, or GPA when nested).
    const FS_FRAMES_HOST: u64 = 0x18_0000;
    const FS_FRAMES_GUEST: u64 = 0x10_0000;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// The crate builds 4-level tables with 4K, 2M and (first-stage only) 1G pages; they
        /// sit under a PASID entry (PGTT first-stage, or nested over a second stage mapping
        /// guest RAM), in an image written as two raw pieces. Each touched address and random
        /// probes translate as the crate says, or fault with 71h where it has nothing.
        #[test]
        fn first_stage_tables_from_the_x86_64_crate_translate_as_that_crate_does(
            nested in any::<bool>(),
            maps in prop::collection::vec((0u64..4, 0u64..8, 0u64..256, any::<(bool, bool, bool)>()), 1..16),
            probes in prop::collection::vec(0u64..(1 << 33), 16),
        ) {
            let root_at = if nested { FS_FRAMES_GUEST } else { FS_FRAMES_HOST };
            let mut mapper = X86Tables::new(root_at);
            let mut touched = Vec::new();
            for (kind, gig, slot, (w, u, x)) in maps {
                let f = flags(w, u, x);
                let va = gig << 30;
                match kind {
                    // Nested outputs stay inside guest RAM: 4K pages in its first MiB, the
                    // one 2M page at GPA 0.
                    0 | 3 if nested => {
                        let v = va | slot << 12;
                        touched.push(v);
                        mapper.map::<Size4KiB>(v, slot << 12, f);
                    }
                    1 | 2 if nested => {
                        let v = va | (slot % 512) << 21;
                        touched.push(v + 0x1234);
                        mapper.map::<Size2MiB>(v, 0, f);
                    }
                    0 => touched.push(mapper.map_kind(kind, gig, slot, f)),
                    1 | 2 => touched.push(mapper.map_kind(kind, gig, slot, f) + 0x1234),
                    _ => touched.push(mapper.map_kind(kind, gig, slot, f) + 0x12_3456),
                }
            }

            // The image: structures from the spec's setters, the crate's tables copied in.
            let mut img = Image::new(&[HOST, GUEST], (HOST.0, 0x8_0000));
            let to_mem = |table_addr: u64| if nested { GUEST.0 + table_addr } else { table_addr };
            for (pa, words) in mapper.tables() {
                img.write(to_mem(pa), &words);
            }
            let rta = img.page();
            let dir = img.page();
            let mut ce = ScalableContextEntry::default();
            ce.set_p(true);
            ce.set_paside(true);
            ce.set_pasiddirptr(dir);
            img.sm_context(rta, 0x0300, ce);
            let mut pe = PasidEntry::default();
            pe.set_p(true);
            pe.set_did(9);
            pe.set_fspm(Fspm::FourLevel);
            pe.set_fsptptr(root_at);
            pe.set_nxe(true);
            pe.set_wpe(true);
            pe.set_sre(true);
            pe.set_ere(true);
            if nested {
                let ss = VtdSecondStage::create(&img.mem, &mut img.frames, vtd_ss::Levels::Four).unwrap();
                ss.map(&img.mem, &mut img.frames, 0, GUEST.0, 21, VtdSsAttrs::ALL).unwrap();
                pe.set_pgtt(Pgtt::Nested);
                pe.set_aw(Aw::Bits48);
                pe.set_ssptptr(ss.root);
            } else {
                pe.set_pgtt(Pgtt::FirstStage);
            }
            img.pasid_entry(dir, 7, pe);
            let dir_path = scratch_dir(&format!("x86-{}", nested));
            let pieces: Vec<ImageSpec> = img
                .write_pieces(&dir_path)
                .iter()
                .map(|s| {
                    let (path, at) = s.rsplit_once('@').unwrap();
                    ImageSpec { path: path.into(), at: Some(u64::from_str_radix(&at[2..], 16).unwrap()) }
                })
                .collect();
            let insp = inspector(&pieces, rtaddr_of(rta, Ttm::Scalable));

            for va in touched.into_iter().chain(probes) {
                let record = insp.translate(&req(0x0300, Some(7), va, Access::READ.privileged()), false);
                match mapper.translate(va) {
                    TranslateResult::Mapped { frame, offset, .. }
                        if (0xfee0_0000..0xff00_0000).contains(&(frame.start_address().as_u64() + offset)) =>
                    {
                        // §3.14: an output in the interrupt address range is blocked (a 1G
                        // identity page at 3G covers it).
                        prop_assert!(!nested, "nested outputs stay inside guest RAM");
                        prop_assert_eq!(fault(&record).code, code(FaultReason::SmInterruptAddressRange));
                    }
                    TranslateResult::Mapped { frame, offset, flags } => {
                        let t = ok(&record);
                        let gpa = frame.start_address().as_u64() + offset;
                        let want = if nested { GUEST.0 + gpa } else { gpa };
                        prop_assert_eq!(t.output, want, "{:#x}", va);
                        // Nested: the second stage maps one 2M page, so the page is at most 2M.
                        let size = if nested { frame.size().min(1 << 21) } else { frame.size() };
                        prop_assert_eq!(t.page_size, size);
                        let user = flags.contains(F::USER_ACCESSIBLE);
                        prop_assert_eq!(t.perms.allows(Access::READ), user);
                        prop_assert_eq!(t.perms.allows(Access::WRITE), user && flags.contains(F::WRITABLE));
                        prop_assert_eq!(t.perms.allows(Access::WRITE.privileged()), flags.contains(F::WRITABLE));
                        prop_assert_eq!(t.perms.allows(Access::EXEC.privileged()), !flags.contains(F::NO_EXECUTE));
                        // Four structures, then 4K: 4 entries, 2M: 3, 1G: 2; nested, each
                        // first-stage entry and the output cost a second-stage walk, 3 reads
                        // down to its 2M page.
                        let fs_reads = 4 - (frame.size().trailing_zeros() - 12) / 9;
                        let want_reads = if nested { fs_reads * 4 + 3 } else { fs_reads };
                        prop_assert_eq!(record.reads, 4 + want_reads);
                    }
                    TranslateResult::NotMapped => {
                        prop_assert_eq!(fault(&record).code, code(FaultReason::SmFsEntryNotPresent));
                    }
                    TranslateResult::InvalidFrameAddress(_) => prop_assert!(false, "the crate built a bad frame"),
                }
            }
            let _ = std::fs::remove_dir_all(dir_path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy mode: second-stage tables from pgtable's builder.
// ---------------------------------------------------------------------------------------------

#[test]
fn legacy_second_stage_tables_translate_with_every_read_shown() {
    let mut img = Image::new(&[(0x10_0000, 0x10_0000)], (0x10_0000, 0x10_0000));
    let rta = img.page();
    let ss = VtdSecondStage::create(&img.mem, &mut img.frames, vtd_ss::Levels::Four).unwrap();
    // (iova, hpa, size_lg2, writable)
    let maps = [
        (0x1000, 0x8000_0000, 12, true),
        (0x2000, 0x8000_1000, 12, false),
        (0x4020_0000, 0x9000_0000, 21, true),
        (0x80_0000_0000, 0x1_0000_0000, 30, false),
    ];
    for (iova, hpa, lg2, w) in maps {
        let attrs = if w { VtdSsAttrs::ALL } else { VtdSsAttrs::READ_ONLY };
        ss.map(&img.mem, &mut img.frames, iova, hpa, lg2, attrs).unwrap();
    }
    let mut ce = ContextEntry::default();
    ce.set_p(true);
    ce.set_aw(Aw::Bits48);
    ce.set_did(5);
    ce.set_ssptptr(ss.root);
    img.legacy_context(rta, 0x0108, ce);
    let dir = scratch_dir("legacy");
    let path = dir.join("legacy.img");
    img.write_raw(&path, 0x10_0000);
    let spec = ImageSpec { path: path.clone(), at: Some(0x10_0000) };
    let insp = inspector(&[spec], rtaddr_of(rta, Ttm::Legacy));

    for (iova, hpa, lg2, writable) in maps {
        let off = (1u64 << lg2) / 2 + 8;
        let r = insp.translate(&req(0x0108, None, iova + off, Access::READ), true);
        let t = ok(&r);
        assert_eq!((t.output, t.page_size), (hpa + off, 1 << lg2));
        assert_eq!(t.perms.allows(Access::WRITE), writable);
        // Two structures, then one entry per level down to the leaf.
        let walk = r.walk.unwrap();
        let levels: Vec<i8> = walk
            .iter()
            .filter_map(|s| match s {
                Step::Entry { stage, level, table_addr, mem_addr, .. } => {
                    assert_eq!((*stage, table_addr), ("second", mem_addr));
                    Some(*level)
                }
                _ => None,
            })
            .collect();
        let want: Vec<i8> = (1 + (lg2 as i8 - 12) / 9..=4).rev().collect();
        assert_eq!(levels, want, "{iova:#x}");
        let Step::Structure { what, fields, .. } = &walk[1] else { panic!("{walk:?}") };
        assert_eq!(*what, "context entry");
        assert_eq!(fields.get("DID").map(ToString::to_string).as_deref(), Some("5"));
        assert_eq!(r.reads as usize, walk.len());
        if !writable {
            let w = insp.translate(&req(0x0108, None, iova, Access::WRITE), false);
            assert_eq!(fault(&w).code, code(FaultReason::WriteDenied));
        }
    }
    let unmapped = insp.translate(&req(0x0108, None, 0x3000, Access::READ), false);
    assert_eq!(fault(&unmapped).code, code(FaultReason::ReadDenied));
    let other = insp.translate(&req(0x0109, None, 0x1000, Access::READ), false);
    assert_eq!(fault(&other).code, code(FaultReason::ContextEntryNotPresent));
    let pasid = insp.translate(&req(0x0108, Some(1), 0x1000, Access::READ), false);
    assert_eq!(fault(&pasid).code, code(FaultReason::SmLegacyRequestWithPasid));
    // The dump sees the one device, and its context entry decoded.
    let d = dump::dump(&insp, 0x0108);
    assert_eq!((d.mode, d.devices.as_slice()), ("legacy", ["01:01.0".to_owned()].as_slice()));
    assert_eq!(d.entries.len(), 2);
    assert_eq!(d.entries[1].fields.as_ref().unwrap().get("AW").unwrap().to_string(), "48-bit");
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// The same memory as a raw file, raw pieces and a QEMU ELF core.
// ---------------------------------------------------------------------------------------------

const REQUESTS: &str = "\
# device,pasid,addr,access
00:02.0,1,0x7f0000001040,write
00:02.0,1,0x7f0000002000,write
00:02.0,2,0x7f0000002000,read+priv
00:02.0,,0x1000,read
00:03.0,,0x12345678,write
00:02.0,5,0x1000,read
";

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn a_qemu_elf_core_and_raw_pieces_translate_as_the_raw_dump_does_and_keep_their_holes() {
    let dir = scratch_dir("elf");
    let (d, raw_path) = demo_file(&dir);
    let elf_path = dir.join("demo.core");
    d.image.write_elf_core(&elf_path);
    let pieces = d.image.write_pieces(&dir);
    let requests = dir.join("requests.txt");
    write_file(&requests, REQUESTS.as_bytes());
    let rtaddr = format!("{:#x}", d.rtaddr);
    let run = |images: &[String]| {
        let mut cmd = bin();
        cmd.args(["inspect", "vtd", "--rtaddr", &rtaddr, "--format", "json", "--requests"]);
        cmd.arg(&requests);
        for i in images {
            cmd.args(["--image", i]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout)
    };
    let from_raw = run(&[raw_path.display().to_string()]);
    assert_eq!(from_raw.len(), 6);
    assert_eq!(from_raw[0]["output"], "0x242040");
    assert_eq!(run(&[elf_path.display().to_string()]), from_raw);
    assert_eq!(run(&pieces), from_raw);

    // Below 1 MiB the raw dump has zeros and the core has nothing: a root table there is "not
    // present" in one and an access error in the other.
    let low = [format!("{:#x}", rtaddr_of(0x1000, Ttm::Scalable))];
    let one = |image: &Path| {
        let out = bin()
            .args(["inspect", "vtd", "--format", "json", "--device", "00:02.0", "--addr", "0"])
            .args(["--rtaddr", &low[0], "--image"])
            .arg(image)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout).remove(0)
    };
    assert_eq!(one(&raw_path)["fault"]["code"], code(FaultReason::SmRootEntryNotPresent));
    assert_eq!(one(&elf_path)["fault"]["code"], code(FaultReason::SmRootEntryAccess));
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Hostile images.
// ---------------------------------------------------------------------------------------------

/// Image base and length for the hostile cases.
const JUNK: (u64, u64) = (0x10_0000, 0x4_0000);

/// Random words, half of them aimed back into the image so tables link up.
fn junk_words() -> impl Strategy<Value = Vec<u64>> {
    let word = prop_oneof![
        any::<u64>(),
        (0..JUNK.1 / 8, any::<u16>())
            .prop_map(|(at, low)| (JUNK.0 + at * 8) & !0xfff | u64::from(low) & 0xfff),
        Just(0u64),
    ];
    prop::collection::vec(word, (JUNK.1 / 8) as usize)
}

fn junk_image(words: &[u64]) -> HostMemory {
    let mem = HostMemory::new(&[(Hpa(JUNK.0), JUNK.1)]).unwrap();
    for (i, w) in words.iter().enumerate() {
        mem.write_u64(Hpa(JUNK.0 + 8 * i as u64), *w).unwrap();
    }
    mem
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random bytes, a random root table inside or outside them in any mode, random requests:
    /// every request finishes with an architected fault (or is an interrupt request), the
    /// reports render, and the dump finishes within its caps.
    #[test]
    fn random_bytes_with_random_anchors_finish_with_faults(
        words in junk_words(),
        rta in prop_oneof![JUNK.0..JUNK.0 + JUNK.1, any::<u64>()],
        ttm in 0u64..4,
        reqs in prop::collection::vec((any::<u16>(), prop::option::of(0u32..(1 << 21)), any::<u64>(), 0u8..6), 8),
    ) {
        let insp = VtdInspector::new(
            junk_image(&words),
            Anchors { rtaddr: rta & !0xfff | ttm << 10, params: VtdParams::default() },
        ).unwrap();
        for (rid, pasid, addr, a) in reqs {
            let access = [Access::READ, Access::WRITE, Access::EXEC][usize::from(a % 3)];
            let access = if a >= 3 { access.privileged() } else { access };
            let r = insp.translate(&req(rid, pasid, addr, access), true);
            let interrupt = pasid.is_none() && (0xfee0_0000..=0xfeef_ffff).contains(&addr);
            if !interrupt {
                let f = fault(&r);
                prop_assert_eq!(FaultReason::from_code(f.code).map(FaultReason::name), Ok(f.name));
            }
            let v: Value = serde_json::from_str(&r.json()).unwrap();
            prop_assert_eq!(v["reads"].as_u64(), Some(u64::from(r.reads)));
            prop_assert!(!r.text(&vtd::table_space).is_empty());
        }
        let start = Instant::now();
        let d = dump::dump(&insp, reqs_rid(rta));
        prop_assert!(d.devices.len() <= dump::MAX_DEVICES);
        prop_assert!(!d.text().is_empty() && !d.json().is_empty());
        prop_assert!(start.elapsed() < Duration::from_secs(20));
    }
}

fn reqs_rid(seed: u64) -> u16 {
    (seed >> 12) as u16
}

/// The binary on random bytes (a fixed seed): requests fault with architected reasons, the
/// dump finishes, and a file with the ELF magic and garbage after it is refused.
#[test]
fn the_binary_on_random_bytes_answers_with_faults() {
    let dir = scratch_dir("junk");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let bytes: Vec<u8> = (0..JUNK.1 / 8)
        .flat_map(|_| {
            let w = next();
            // Half the words point back into the image, as table pointers would.
            let w =
                if w & 1 == 0 { (JUNK.0 + (w >> 1) % JUNK.1) & !0xfff | (w & 0xff7) } else { w };
            w.to_le_bytes()
        })
        .collect();
    let junk = dir.join("junk.bin");
    write_file(&junk, &bytes);
    let requests = dir.join("requests.txt");
    write_file(&requests, b"00:00.0,,0x0,read\n00:02.0,1,0x1000,write\nff:1f.7,,0xdead0000,exec\n12:1a.5,99,0x7f0000001000,read+priv\n");
    for ttm in ["0x100000", "0x100400", "0x100c00", "0x120400"] {
        let out = bin()
            .args(["inspect", "vtd", "--image"])
            .arg(&junk)
            .args(["--image-base", "0x100000", "--rtaddr", ttm, "--format", "json", "--walk"])
            .arg("--requests")
            .arg(&requests)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines = json_lines(&out.stdout);
        assert_eq!(lines.len(), 4);
        for v in lines {
            let code = u8::try_from(v["fault"]["code"].as_u64().unwrap()).unwrap();
            assert_eq!(v["fault"]["name"], FaultReason::from_code(code).unwrap().name());
        }
        let out = bin()
            .args(["inspect", "vtd", "--image"])
            .arg(&junk)
            .args(["--image-base", "0x100000", "--rtaddr", ttm, "--dump", "00:02.0"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("device 00:02.0"));
    }
    let mut elf = b"\x7fELF".to_vec();
    elf.extend(&bytes[..4096]);
    let fake = dir.join("fake.core");
    write_file(&fake, &elf);
    let out = bin()
        .args(["inspect", "vtd", "--image"])
        .arg(&fake)
        .args(["--rtaddr", "0x400", "--dump", "00:00.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a usable ELF core"));
    let _ = std::fs::remove_dir_all(dir);
}

/// Every structure points at its own page, and the first-stage table at a page whose entries
/// point back at it: the walks end at their fixed depth with a fault or, where x86 paging
/// allows it (a recursive table), a translation to the table itself; the dump ends too.
#[test]
fn self_referencing_tables_and_loops_end() {
    let mut img = Image::new(&[(0x10_0000, 0x1_0000)], (0x10_0000, 0x1_0000));
    let page = img.page();
    // One page that is at once root table, context table, PASID directory and PASID table.
    let mut re = ScalableRootEntry::default();
    re.set_lp(true);
    re.set_lctp(page);
    re.set_up(true);
    re.set_uctp(page);
    img.write(page, &re.words());
    let loop_table = img.page();
    // A recursive first-stage table: entry 0 points at the table itself.
    img.write(loop_table, &[loop_table | 0x7]);
    let mem = img.mem;
    let insp = VtdInspector::new(
        mem,
        Anchors { rtaddr: rtaddr_of(page, Ttm::Scalable), params: VtdParams::default() },
    )
    .unwrap();
    let r = insp.translate(&req(0x0000, None, 0, Access::READ), true);
    // The context entry read is the root entry itself: its bits 11:1 are clear and LCTP is a
    // pointer, which makes it a present context entry with junk above: reserved bits.
    assert!(r.result.is_err(), "{r:?}");

    // A well-formed chain whose first stage is the recursive table.
    let mut img = Image::new(&[(0x10_0000, 0x1_0000)], (0x10_0000, 0x1_0000));
    let rta = img.page();
    let dir = img.page();
    let fs = img.page();
    img.write(fs, &[fs | 0x7]);
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pasiddirptr(dir);
    img.sm_context(rta, 0x0010, ce);
    let mut pe = PasidEntry::default();
    pe.set_p(true);
    pe.set_pgtt(Pgtt::FirstStage);
    pe.set_fspm(Fspm::FourLevel);
    pe.set_fsptptr(fs);
    let pe_at = img.pasid_entry(dir, 1, pe);
    // And a PASID-directory entry that points at the directory itself.
    img.write(dir + 8, &[dir | 1]);
    let insp = VtdInspector::new(
        img.mem,
        Anchors { rtaddr: rtaddr_of(rta, Ttm::Scalable), params: VtdParams::default() },
    )
    .unwrap();
    let r = insp.translate(&req(0x0010, Some(1), 0x10, Access::READ), true);
    let t = ok(&r);
    assert_eq!(t.output, fs + 0x10, "a recursive table maps itself at VA 0");
    assert_eq!(r.reads, 8);
    // PASID 64 uses directory entry 1, which points at the directory: its PASID "entry" is a
    // directory entry read as 64 bytes.
    let r = insp.translate(&req(0x0010, Some(64), 0, Access::READ), false);
    assert!(r.result.is_err(), "{r:?}");
    let d = dump::dump(&insp, 0x0010);
    assert!(d.entries.iter().any(|e| e.pasid == Some(1) && e.mem_addr.0 == pe_at));
}

/// Every root entry present and aimed at one context table whose every entry is present, with
/// a 16384-entry PASID directory whose entries all share one full PASID table: 65536 devices
/// and a million PASIDs. The dump lists and shows up to its caps and says where it stopped.
#[test]
fn a_hostile_dump_is_capped_and_says_so() {
    let mut img = Image::new(&[(0x10_0000, 0x4_0000)], (0x10_0000, 0x4_0000));
    let rta = img.page();
    let ctx = img.page();
    let table = img.page();
    let dir = img.frames.alloc(&img.mem, 17).unwrap().0; // 16384 entries * 8 bytes
    let mut re = ScalableRootEntry::default();
    re.set_lp(true);
    re.set_lctp(ctx);
    re.set_up(true);
    re.set_uctp(ctx);
    for bus in 0..256 {
        img.write(rta + 16 * bus, &re.words());
    }
    let mut ce = ScalableContextEntry::default();
    ce.set_p(true);
    ce.set_paside(true);
    ce.set_pdts(7);
    ce.set_pasiddirptr(dir);
    for i in 0..128 {
        img.write(ctx + 32 * i, &ce.words());
    }
    for i in 0..16384 {
        img.write(dir + 8 * i, &[table | 1]);
    }
    let mut pe = PasidEntry::default();
    pe.set_p(true);
    pe.set_pgtt(Pgtt::PassThrough);
    for i in 0..64 {
        img.write(table + 64 * i, &pe.words());
    }
    let insp = VtdInspector::new(
        img.mem,
        Anchors { rtaddr: rtaddr_of(rta, Ttm::Scalable), params: VtdParams::default() },
    )
    .unwrap();
    let start = Instant::now();
    let d = dump::dump(&insp, 0x1234);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(d.devices.len(), dump::MAX_DEVICES);
    let pasid_entries = d.entries.iter().filter(|e| e.pasid.is_some()).count();
    assert_eq!(pasid_entries, dump::MAX_PASID_ENTRIES);
    let notes = d.notes.join("\n");
    assert!(notes.contains(&format!("{} more devices", 65536 - dump::MAX_DEVICES)), "{notes}");
    assert!(notes.contains("PASID entries shown up to the cap"), "{notes}");
    assert!(d.text().contains("note: "), "the text says so too");
}

// ---------------------------------------------------------------------------------------------
// The CLI: the JSON contract, the image left alone, and every error.
// ---------------------------------------------------------------------------------------------

/// Every key the README documents for a request record.
const REQUEST_KEYS: &[&str] = &[
    "line",
    "device",
    "pasid",
    "addr",
    "access",
    "priv",
    "output",
    "page_size",
    "perms",
    "interrupt",
    "fault",
    "reads",
    "walk",
];

#[test]
fn json_lines_follow_the_documented_contract() {
    let dir = scratch_dir("json");
    let (d, path) = demo_file(&dir);
    let requests = dir.join("requests.txt");
    write_file(&requests, REQUESTS.as_bytes());
    let out = bin()
        .args(["inspect", "vtd", "--image"])
        .arg(&path)
        .args(["--rtaddr", &d.rtaddr.to_string(), "--format", "json", "--walk", "--requests"])
        .arg(&requests)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 6);
    let readme = include_str!("../../../README.md");
    for key in REQUEST_KEYS {
        assert!(readme.contains(&format!("| `{key}` |")), "the README's schema lacks {key}");
    }
    for v in &lines {
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(keys.iter().all(|k| REQUEST_KEYS.contains(k)), "{keys:?}");
        assert!(v["line"].is_u64() && v["device"].is_string() && v["reads"].is_u64());
        assert!(v["pasid"].is_u64() || v["pasid"].is_null());
        assert!(v["addr"].as_str().unwrap().starts_with("0x"));
        assert!(["read", "write", "exec"].contains(&v["access"].as_str().unwrap()));
        assert!(v["priv"].is_boolean());
        match v.get("fault") {
            Some(f) => {
                assert!(v.get("output").is_none() && v.get("perms").is_none());
                let code = u8::try_from(f["code"].as_u64().unwrap()).unwrap();
                assert_eq!(f["name"], FaultReason::from_code(code).unwrap().name());
                assert!(f["fpd"].is_boolean());
            }
            None => {
                assert!(v["output"].as_str().unwrap().starts_with("0x"));
                assert!(v["page_size"].as_u64().unwrap().is_power_of_two());
                assert!(v["perms"].as_str().unwrap().starts_with("priv:"));
                assert!(v["interrupt"].is_boolean());
            }
        }
        let walk = v["walk"].as_array().unwrap();
        let mut reads = 0;
        for step in walk {
            match step["kind"].as_str().unwrap() {
                "structure" => {
                    let documented = [
                        "scalable-mode root entry",
                        "scalable-mode context entry",
                        "PASID directory entry",
                        "PASID-table entry",
                    ];
                    assert!(documented.contains(&step["what"].as_str().unwrap()), "{step}");
                    assert!(!step["fields"].as_object().unwrap().is_empty(), "decoded: {step}");
                    assert!(step["mem_addr"].is_string() && step["words"].is_array());
                    assert!(step["reserved_bits"].is_boolean());
                }
                "entry" => {
                    assert!(["first", "second"].contains(&step["stage"].as_str().unwrap()));
                    assert!(step["level"].is_i64() && step["raw"].is_string());
                    assert!(step["table_addr"].is_string() && step["mem_addr"].is_string());
                    assert!(step["fields"].is_object());
                }
                other => panic!("unexpected step kind {other}"),
            }
            reads += 1;
        }
        assert_eq!(v["reads"], reads, "{v}");
    }
    // The values of the first two: a nested write, and a write to a read-only page.
    assert_eq!(
        (&lines[0]["output"], &lines[0]["page_size"], &lines[0]["perms"]),
        (&"0x242040".into(), &4096.into(), &"priv:rw- user:rw-".into())
    );
    assert_eq!(lines[1]["fault"]["code"], code(FaultReason::SmWriteDenied));
    assert_eq!(lines[1]["fault"]["name"], "SM: write denied");
    assert_eq!((&lines[2]["access"], &lines[2]["priv"]), (&"read".into(), &true.into()));
    // The nested walk: 4 structures, then 5 second-stage walks of 4 around 4 first-stage reads;
    // a first-stage entry is at a GPA that is not where it is in memory.
    let walk = lines[0]["walk"].as_array().unwrap();
    assert_eq!(walk.len(), 28);
    let fs: Vec<&Value> = walk.iter().filter(|s| s["stage"] == "first").collect();
    assert_eq!(fs.len(), 4);
    assert!(fs.iter().all(|s| s["table_addr"] != s["mem_addr"]));
    assert_eq!(walk[3]["fields"]["PGTT"], "nested");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_image_file_is_never_written_but_the_model_sees_its_own_a_d_updates() {
    let dir = scratch_dir("cow");
    let (d, path) = demo_file(&dir);
    let before = std::fs::read(&path).unwrap();
    let requests = dir.join("twice.txt");
    write_file(
        &requests,
        b"00:02.0,2,0x7f0000001000,read\n00:02.0,2,0x7f0000001000,write\n00:02.0,2,0x7f0000001000,read\n",
    );
    let out = bin()
        .args(["inspect", "vtd", "--image"])
        .arg(&path)
        .args(["--rtaddr", &format!("{:#x}", d.rtaddr), "--format", "json", "--walk"])
        .arg("--requests")
        .arg(&requests)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines = json_lines(&out.stdout);
    let leaf = |v: &Value| v["walk"].as_array().unwrap().last().unwrap()["fields"].clone();
    // Each walk shows the leaf as it read it: untouched, then accessed by the read, then
    // dirtied by the write.
    let ad: Vec<(Value, Value)> =
        lines.iter().map(|v| (leaf(v)["A"].clone(), leaf(v)["D"].clone())).collect();
    let b = |a: bool, d: bool| (Value::from(a), Value::from(d));
    assert_eq!(ad, [b(false, false), b(true, false), b(true, true)]);
    assert!(std::fs::read(&path).unwrap() == before, "the image file changed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_table_read_outside_the_image_is_the_units_access_fault_shown_in_the_walk() {
    let dir = scratch_dir("outside");
    let d = demo();
    // Aim PASID 2's first-stage pointer at a hole (the image ends at 4 MiB).
    let mut pe = PasidEntry::from_words(std::array::from_fn(|i| {
        d.image.read(d.fs_pasid_entry + 8 * i as u64)
    }));
    pe.set_fsptptr(0x80_0000);
    d.image.write(d.fs_pasid_entry, &pe.words());
    let path = dir.join("hole.img");
    d.image.write_raw(&path, 0);
    let out = bin()
        .args(["inspect", "vtd", "--image"])
        .arg(&path)
        .args(["--rtaddr", &format!("{:#x}", d.rtaddr)])
        .args(["--device", "00:02.0", "--pasid", "2", "--addr", "0x7f0000001000", "--walk"])
        .output()
        .unwrap();
    assert!(out.status.success(), "a fault is an answer");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("read of 8 bytes @ 0x8007f0: outside the image"), "{text}");
    assert!(text.contains("fault 0x73 (SM: first-stage root access error)"), "{text}");
    assert!(text.contains("; 5 reads"), "4 structures and the failed attempt: {text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_inputs_are_clear_errors_with_exit_codes() {
    let dir = scratch_dir("errors");
    let (d, img) = demo_file(&dir);
    let rtaddr = format!("{:#x}", d.rtaddr);
    let run = |args: &[&str]| {
        let out = bin().args(["inspect", "vtd", "--rtaddr", &rtaddr]).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), out.stdout)
    };
    let img_s = img.display().to_string();
    let query = ["--device", "00:02.0", "--addr", "0x1000"];

    // An empty file is neither a raw image nor an ELF core.
    let empty = dir.join("empty.img");
    write_file(&empty, b"");
    let (code, err, _) = run(&[&["--image", &empty.display().to_string()][..], &query].concat());
    assert_eq!(code, Some(1));
    assert!(err.contains("empty.img: the image holds no memory"), "{err}");
    // A file that cannot be read.
    let (code, err, _) = run(&[&["--image", "/nonexistent/dump.img"][..], &query].concat());
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/dump.img") && err.contains("No such file"), "{err}");
    // A directory.
    let (code, err, _) = run(&[&["--image", &dir.display().to_string()][..], &query].concat());
    assert_eq!(code, Some(1), "{err}");
    // A broken ELF core.
    let bad_elf = dir.join("bad.core");
    write_file(&bad_elf, b"\x7fELF\x02\x01\x01");
    let (code, err, _) = run(&[&["--image", &bad_elf.display().to_string()][..], &query].concat());
    assert_eq!(code, Some(1));
    assert!(err.contains("not a usable ELF core"), "{err}");
    // An ELF core with @ADDR.
    let core = dir.join("demo.core");
    d.image.write_elf_core(&core);
    let at = format!("{}@0x1000", core.display());
    let (code, err, _) = run(&[&["--image", &at][..], &query].concat());
    assert_eq!(code, Some(1));
    assert!(err.contains("an ELF core carries its own physical addresses"), "{err}");

    // A bad BDF: usage, exit 2, naming the value.
    let (code, err, _) = run(&["--image", &img_s, "--device", "00:20.0", "--addr", "0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`00:20.0` is not a PCI device"), "{err}");
    let (code, err, _) = run(&["--image", &img_s, "--dump", "1:2:3:4"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a PCI device"), "{err}");
    // --device without --addr, no query, two queries.
    assert_eq!(run(&["--image", &img_s, "--device", "00:02.0"]).0, Some(2));
    assert_eq!(run(&["--image", &img_s]).0, Some(2));
    assert_eq!(run(&["--image", &img_s, "--dump", "00:02.0", "--requests", "x"]).0, Some(2));
    // A malformed request line, by number.
    let requests = dir.join("bad.txt");
    write_file(&requests, b"# ok\n00:02.0,1,0x1000,read\n00:02.0,1,0x1000,fetch\n");
    let (code, err, out) = run(&["--image", &img_s, "--requests", &requests.display().to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.txt: line 3: access: `fetch` is not an access"), "{err}");
    assert!(
        out.is_empty() || !String::from_utf8_lossy(&out).contains("fault"),
        "nothing translated"
    );
    write_file(&requests, b"00:02.0,1,0x1000,read\n00:2.0,1,0x1000\n");
    let (code, err, _) = run(&["--image", &img_s, "--requests", &requests.display().to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("line 2: expected `device,pasid-or-empty,addr,access`"), "{err}");
    write_file(&requests, b"00:02.0,1,0x1000,read\n00:20.0,1,0x1000,read\n");
    let (_, err, _) = run(&["--image", &img_s, "--requests", &requests.display().to_string()]);
    assert!(err.contains("line 2: device: `00:20.0` is not a PCI device"), "{err}");
    let (code, err, _) = run(&["--image", &img_s, "--requests", "/nonexistent/requests.txt"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/requests.txt"), "{err}");

    // An address outside the image is the unit's fault, not an error.
    let out = bin()
        .args(["inspect", "vtd", "--image", &img_s, "--format", "json"])
        .args(["--rtaddr", "0x40000400", "--device", "00:02.0", "--addr", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v = json_lines(&out.stdout).remove(0);
    assert_eq!(v["fault"]["code"], FaultReason::SmRootEntryAccess.code());
    assert_eq!(v["fault"]["name"], "SM: root entry access error");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_explains_the_anchors_and_the_copy_on_write_image() {
    let out = bin().args(["inspect", "vtd", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--rtaddr",
        "TTM",
        "--image",
        "FILE[@ADDR]",
        "dump-guest-memory",
        "copy-on-write",
        "never written",
        "--walk",
        "--dump",
        "Exit status",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

// ---------------------------------------------------------------------------------------------
// The README's example is real.
// ---------------------------------------------------------------------------------------------

/// The README shows `inspect vtd ... --walk` on the demo image; this runs that command line on
/// the image the example writes and compares the output with the README's, line for line. When
/// the model's output changes on purpose (a new default CAP/ECAP, a new field), regenerate the
/// block with the two commands the README shows.
#[test]
fn the_readme_walk_example_is_what_the_command_prints() {
    let readme = include_str!("../../../README.md");
    let args = "--device 00:02.0 --pasid 1 --addr 0x7f0000001040 --access write --walk";
    assert!(readme.contains("cargo run -p sviommu --example vtd_demo_image -- /tmp/vtd-demo.img"));
    let cmd = format!("inspect vtd --image /tmp/vtd-demo.img --rtaddr 0x100400 \\\n    {args}");
    let shown = readme_block(readme, &cmd);

    let dir = scratch_dir("readme");
    let (d, path) = demo_file(&dir);
    assert_eq!(d.rtaddr, 0x100400);
    let out = bin()
        .args(["inspect", "vtd", "--image"])
        .arg(&path)
        .args(["--rtaddr", "0x100400"])
        .args(args.split(' '))
        .output()
        .unwrap();
    let printed = output_as_shown(out, &path, "/tmp/vtd-demo.img");
    assert_eq!(shown, printed);
    let _ = std::fs::remove_dir_all(dir);
}

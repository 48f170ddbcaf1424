//! Scenarios through the whole stack: the built-in default gives the seed's answer on both
//! architectures, every DMA answered by the hardware model; bad files name their place.

use sviommu_sim::run::{ArchReport, DmaResult};
use sviommu_sim::scenario::{Arch, Source, DEFAULT};
use sviommu_sim::{run_source, Report, ScenarioError};

fn source(text: &str) -> Source {
    Source { name: "test.toml".to_owned(), text: text.to_owned() }
}

fn default_report() -> Report {
    run_source(&Source { name: "seed.toml".to_owned(), text: DEFAULT.to_owned() }).unwrap()
}

fn arch(r: &Report, a: Arch) -> &ArchReport {
    r.runs.iter().find(|x| x.arch == a).unwrap()
}

fn answer<'a>(a: &'a ArchReport, device: &str, pasid: Option<u32>, addr: u64) -> &'a DmaResult {
    &a.dma
        .iter()
        .find(|d| d.device == device && d.pasid == pasid && d.addr == addr)
        .unwrap_or_else(|| panic!("no DMA from {device} {pasid:?} {addr:#x}"))
        .result
}

fn output(r: &DmaResult) -> Option<u64> {
    match r {
        DmaResult::Translated { output, .. } => Some(*output),
        _ => None,
    }
}

fn fault(r: &DmaResult) -> Option<u8> {
    match r {
        DmaResult::Fault { code, .. } => Some(*code),
        _ => None,
    }
}

/// Who reaches the space the scenario calls `label`, as (device address, PASID, reason).
fn reach(a: &ArchReport, label: &str) -> Vec<(String, Option<u32>, String)> {
    let id = a.labels.iter().find(|(_, v)| v.starts_with(label)).map(|(k, _)| k.clone()).unwrap();
    let space = a.audit.address_spaces.iter().find(|s| s.id == id).unwrap();
    space
        .reachable_by
        .iter()
        .map(|e| {
            let why = serde_json::to_value(e.reason).unwrap().as_str().unwrap().to_owned();
            (e.device.to_string(), e.pasid.map(|p| p.0), why)
        })
        .collect()
}

const TASK1: u64 = 0x7f00_0000;
const TASK2: u64 = 0x5555_0000_1000;

#[test]
fn the_default_scenario_gives_the_seeds_answer_on_vtd() {
    let r = default_report();
    let v = arch(&r, Arch::Vtd);
    assert!(v.audit.agrees_with_dma);
    // The bind reaches A's group: A named, B because it cannot be told apart.
    assert_eq!(
        reach(v, "Task 1"),
        vec![
            ("0000:00:02.0".to_owned(), Some(1), "explicit".to_owned()),
            ("0000:00:03.0".to_owned(), Some(1), "same_group".to_owned()),
        ]
    );
    // PASID tables are per device on VT-d: C's has no PASID 1 (59h), though it shares A's
    // domain.
    assert_eq!(output(answer(v, "A", Some(1), TASK1)), output(answer(v, "B", Some(1), TASK1)));
    assert_eq!(fault(answer(v, "C", Some(1), TASK1)), Some(0x59));
    assert_eq!(fault(answer(v, "D", Some(1), TASK1)), Some(0x59));
}

#[test]
fn the_default_scenario_gives_the_seeds_answer_on_smmuv3() {
    let r = default_report();
    let s = arch(&r, Arch::Smmuv3);
    assert!(s.audit.agrees_with_dma);
    // One CD table per domain: C reaches Task 1 through the table it shares with A.
    assert_eq!(
        reach(s, "Task 1"),
        vec![
            ("0000:00:02.0".to_owned(), Some(1), "explicit".to_owned()),
            ("0000:00:03.0".to_owned(), Some(1), "same_group".to_owned()),
            ("0000:00:04.0".to_owned(), Some(1), "shared_domain_table".to_owned()),
        ]
    );
    let a = output(answer(s, "A", Some(1), TASK1)).unwrap();
    assert_eq!(output(answer(s, "C", Some(1), TASK1)), Some(a));
    // D's domain has its own CD table, with no CD at SubstreamID 1: C_BAD_CD (§7.3.9).
    assert_eq!(fault(answer(s, "D", Some(1), TASK1)), Some(0x0a));
}

#[test]
fn the_guests_pasid_nests_its_stage_1_over_the_hosts_stage_2() {
    let r = default_report();
    for a in &r.runs {
        let g = &a.guests[0];
        assert_eq!((g.ram_hpa, g.ram_bytes), (0x4000_0000, 16 << 20));
        // The guest's first data page is GPA 0 (its allocator's first block, taken before its
        // tables), so Task 2's second page is GPA 0x1000: the host stage 2 maps guest RAM
        // linearly at 0x4000_0000.
        let nested = answer(a, "E", Some(5), TASK2);
        let DmaResult::Translated { output: hpa, page_lg2, reads } = *nested else {
            panic!("{:?}: {nested:?}", a.arch)
        };
        assert_eq!((hpa, page_lg2), (g.ram_hpa + 0x1000, 12), "{:?}", a.arch);
        // Cold: each of the 4 stage-1 tables and the output need a stage-2 walk, but stage 2
        // maps guest RAM with 2M blocks (3 levels), and the unit's caches share what one walk
        // of the same block learned. More than the 4 stage-1 reads alone, fewer than 24.
        assert!((5..=28).contains(&reads), "{:?}: {reads}", a.arch);
        // A has no PASID 5: VT-d 59h (PASID entry not present), SMMUv3 C_BAD_CD.
        let expected = if a.arch == Arch::Vtd { 0x59 } else { 0x0a };
        assert_eq!(fault(answer(a, "A", Some(5), TASK2)), Some(expected));
        // The guest's own driver bound Task 2 through its vIOMMU, which forwarded it: a
        // nested domain for (E, PASID 5) on VT-d, a nested STE over the guest's CD table on
        // SMMUv3, reached by E alone and checked by DMA.
        let fwd = g.viommu.as_ref().expect("VM 1 has a vIOMMU");
        assert_eq!(fwd.refused, 0, "{:?}", a.arch);
        let (space, pasid) = if a.arch == Arch::Vtd {
            // E's RID_PASID entry (its DMA domain) and (E, PASID 5).
            assert_eq!((fwd.attached, fwd.nested_hwpts), (2, 2));
            ("Task 2 in VM 1", Some(5))
        } else {
            ("VM 1's CD table", None)
        };
        assert_eq!(
            reach(a, space),
            vec![("0000:02:00.0".to_owned(), pasid, "explicit".to_owned())]
        );
        // The guest kernel gave E a default DMA domain (its driver's own page table) for
        // requests without PASID: E's DMA at the DMA API's IOVA goes through the guest's
        // stage 1 and the host's stage 2. Its buffer is the guest allocator's next block after
        // Task 2's two pages (GPA 0, 0x1000) and its four tables (root at 0x2000): GPA 0x6000.
        let dd = &g.dma_domains[0];
        assert_eq!(
            (dd.device.as_str(), dd.pages[0].iova, dd.pages[0].gpa),
            ("E", 0x10_0000, 0x6000)
        );
        let rid = answer(a, "E", None, 0x10_0000);
        let DmaResult::Translated { output, page_lg2: 12, reads } = *rid else {
            panic!("{:?}: {rid:?}", a.arch)
        };
        assert_eq!(output, g.ram_hpa + 0x6000, "{:?}", a.arch);
        // The model's count, pinned: a 4-level stage-1 walk (4 reads) plus the configuration
        // and the stage-2 walks of tables in a 2M block no earlier request touched; VT-d also
        // reads the RID_PASID entry's PASID directory and table, SMMUv3 finds the STE cached.
        let pinned = if a.arch == Arch::Vtd { 10 } else { 6 };
        assert_eq!(reads, pinned, "{:?}", a.arch);
        // Forwarded as a nested domain on E itself (VT-d), or CD 0 of the guest's CD table
        // (SMMUv3, whose reach the PASID table row above already checked), checked by DMA.
        if a.arch == Arch::Vtd {
            let d = dd.domain.expect("a nested HWPT on E");
            let name = format!("E's DMA domain in VM 1 (domain {d})");
            assert_eq!(
                reach(a, &name),
                vec![("0000:02:00.0".to_owned(), None, "explicit".to_owned())]
            );
        } else {
            assert_eq!(dd.domain, None);
        }
    }
}

#[test]
fn statistics_are_the_models_own() {
    let r = default_report();
    for a in &r.runs {
        let st = &a.stats;
        assert_eq!(st.requests, a.dma.len() as u64);
        assert_eq!(st.translated + st.blocked, st.requests);
        assert_eq!(st.faults_recorded, st.blocked, "every fault reached the IOMMU API");
        assert_eq!(st.faults_overflowed, 0);
        // The first cache of each model (context / STE) looked up once per request that got
        // past the root table: hits and misses together are at least the requests.
        let first = &st.caches[0];
        assert!(first.hits + first.misses >= st.requests, "{:?}", a.arch);
        assert!(first.hits > 0, "devices send more than once: {:?}", a.arch);
    }
}

#[test]
fn per_device_cd_tables_keep_c_out() {
    let text = DEFAULT.replace("cd_tables = \"per-domain\"", "cd_tables = \"per-device\"");
    let r = run_source(&source(&text)).unwrap();
    let s = arch(&r, Arch::Smmuv3);
    assert_eq!(reach(s, "Task 1").len(), 2);
    assert_eq!(fault(answer(s, "C", Some(1), TASK1)), Some(0x0a));
}

fn error(text: &str) -> (usize, usize, String, String) {
    match run_source(&source(text)) {
        Err(ScenarioError::Invalid { file, line, column, field, message }) => {
            assert_eq!(file, "test.toml");
            (line, column, field, message)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn an_unknown_field_names_its_line_and_column() {
    let (line, column, _, message) =
        error("title = \"x\"\n\n[[device]]\nname = \"A\"\nbfd = \"00:02.0\"\n");
    assert_eq!((line, column), (5, 1), "{message}");
    assert!(message.contains("unknown field `bfd`"), "{message}");
}

#[test]
fn a_name_that_names_nothing_is_refused_where_it_is_written() {
    let text = "title = \"x\"\n[[device]]\nname = \"A\"\nbdf = \"00:02.0\"\n\n[[domain]]\nname = \"d\"\nattach = [\"A\", \"Z\"]\n";
    let (line, column, field, message) = error(text);
    assert_eq!((line, column, field.as_str()), (8, 16, "domain.attach"), "{message}");
    assert!(message.contains("no device `Z`"), "{message}");
}

#[test]
fn malformed_values_are_refused_with_what_was_expected() {
    let bdf = error("title = \"x\"\n[[device]]\nname = \"A\"\nbdf = \"00:2\"\n");
    assert_eq!((bdf.0, bdf.2.as_str()), (4, "device.bdf"), "{bdf:?}");
    let acs = error(
        "title = \"x\"\n[[port]]\nbdf = \"00:1c.0\"\nkind = \"root\"\nsecondary_bus = 1\nacs = [\"XX\"]\n",
    );
    assert_eq!((acs.0, acs.2.as_str()), (6, "port.acs"), "{acs:?}");
    let ram = error("title = \"x\"\n[[guest]]\nname = \"g\"\nram_mib = 3\n");
    assert_eq!((ram.0, ram.2.as_str()), (4, "guest.ram_mib"), "{ram:?}");
    let kind =
        error("title = \"x\"\n[[port]]\nbdf = \"00:1c.0\"\nkind = \"rooot\"\nsecondary_bus = 1\n");
    assert_eq!(kind.0, 4, "{kind:?}");
    assert!(kind.3.contains("root"), "names what was expected: {kind:?}");
    let page = error("title = \"x\"\n[[process]]\nname = \"p\"\npages = [{ va = 0x1001 }]\n");
    assert_eq!((page.0, page.2.as_str()), (4, "process.pages"), "{page:?}");
}

#[test]
fn a_bind_the_api_refuses_names_the_bind() {
    // A device without a PASID capability cannot be bound.
    let text =
        "title = \"x\"\narchitectures = [\"vtd\"]\n[[device]]\nname = \"A\"\nbdf = \"00:02.0\"\n\
                [[process]]\nname = \"p\"\n[[bind]]\nprocess = \"p\"\ndevice = \"A\"\n";
    let (line, _, field, message) = error(text);
    assert_eq!((line, field.as_str()), (10, "bind"), "{message}");
    assert!(message.contains("sva_bind"), "{message}");
}

#[test]
fn a_step_is_exactly_one_thing() {
    let text =
        "title = \"x\"\n[[device]]\nname = \"A\"\nbdf = \"00:02.0\"\n[[domain]]\nname = \"d\"\n\
                [[step]]\nflush = \"d\"\nunmap = { domain = \"d\", iova = 0 }\n";
    let (line, _, field, message) = error(text);
    assert_eq!((line, field.as_str()), (7, "step"), "the step's header: {message}");
    let unknown = "title = \"x\"\n[[step]]\nflush = \"nowhere\"\n";
    let (line, _, field, message) = error(unknown);
    assert_eq!((line, field.as_str()), (3, "step.flush"), "{message}");
    assert!(message.contains("no domain `nowhere`"), "{message}");
}

/// A machine with one device in a domain that maps 4 pages at 0x10_0000, and `steps`.
fn stream_scenario(steps: &str) -> String {
    format!(
        "title = \"streams\"\n\
         [[device]]\nname = \"A\"\nbdf = \"00:02.0\"\n\
         [[domain]]\nname = \"d\"\nattach = [\"A\"]\nmap = [{{ iova = 0x10_0000, size = 0x4000 }}]\n\
         {steps}"
    )
}

fn zipf_step(seed: u64) -> String {
    format!(
        "[[step]]\nstream = {{ device = \"A\", kind = \"zipf\", base = 0x10_0000, pages = 64, count = 500, seed = {seed} }}\n"
    )
}

#[test]
fn the_same_seed_gives_the_same_stream_and_another_seed_another() {
    use sviommu_sim::stream::{Pages, Shape, StreamKind};
    for kind in [StreamKind::Uniform, StreamKind::Zipf] {
        let shape = |seed| Shape { kind, pages: 4096, count: 2000, seed, stride: 1, exponent: 1.1 };
        let a: Vec<u64> = Pages::new(shape(7)).collect();
        assert_eq!(a.len(), 2000);
        assert_eq!(a, Pages::new(shape(7)).collect::<Vec<_>>(), "{kind}");
        assert_ne!(a, Pages::new(shape(8)).collect::<Vec<_>>(), "{kind}");
    }
    // Through a whole run, on each architecture: the domain maps pages 0-3 of the 64, so the
    // requests that translate are exactly those the generator sent to them.
    let run = |seed| run_source(&source(&stream_scenario(&zipf_step(seed)))).unwrap();
    let expected = |seed| {
        let shape =
            Shape { kind: StreamKind::Zipf, pages: 64, count: 500, seed, stride: 1, exponent: 1.0 };
        let pages: Vec<u64> = Pages::new(shape).collect();
        let mut distinct = pages.clone();
        distinct.sort_unstable();
        distinct.dedup();
        (pages.iter().filter(|&&p| p < 4).count() as u64, distinct.len() as u64)
    };
    for seed in [7, 8] {
        let (translated, touched) = expected(seed);
        for r in [run(seed), run(seed)] {
            for a in &r.runs {
                let st = &a.streams[0];
                assert_eq!(
                    (st.translated, st.pages_touched),
                    (translated, touched),
                    "{:?}",
                    a.arch
                );
            }
        }
    }
    assert_ne!(expected(7), expected(8));
}

#[test]
fn a_streams_counts_add_up() {
    // 4 of the 8 pages are mapped: half the sequential stream faults.
    let steps = "[[step]]\nstream = { device = \"A\", kind = \"sequential\", base = 0x10_0000, pages = 8, count = 40 }\n\
                 [[step]]\ndma = { devices = [\"A\"], pasids = \"none\", addrs = [0x10_0000] }\n\
                 [[step]]\nstream = { device = \"A\", kind = \"strided\", base = 0x10_0000, pages = 4, count = 9, stride = 3, access = \"write\" }\n";
    let r = run_source(&source(&stream_scenario(steps))).unwrap();
    for a in &r.runs {
        let (seq, strided) = (&a.streams[0], &a.streams[1]);
        assert_eq!((seq.requests, seq.translated, seq.blocked), (40, 20, 20), "{:?}", a.arch);
        assert_eq!((strided.requests, strided.translated, strided.blocked), (9, 9, 0));
        assert_eq!((seq.before_dma, strided.before_dma), (0, 1), "placed among the DMA");
        // Faults by the architected reason: second-stage / stage-1 translation fault.
        let code = if a.arch == Arch::Vtd { "79h" } else { "10h" };
        assert_eq!(seq.faults.len(), 1, "{:?}", seq.faults);
        assert!(seq.faults.keys().all(|k| k.starts_with(code)), "{:?}", seq.faults);
        for st in [seq, strided] {
            assert_eq!(st.translated + st.blocked, st.requests);
            assert_eq!(st.faults.values().sum::<u64>(), st.blocked);
            let d = &st.reads;
            assert_eq!(d.buckets.iter().map(|b| b.count).sum::<u64>(), st.translated);
            assert!(f64::from(d.max) >= d.mean);
            // Each cache's figures are this stream's alone: no more lookups than requests
            // (times the page sizes an IOTLB probes).
            let first = &st.caches[0];
            assert!(first.hits + first.misses <= st.requests, "{:?}: {first:?}", a.arch);
        }
        // The run's statistics count the streams' requests with the single DMA.
        let s = &a.stats;
        assert_eq!(s.requests, 40 + 1 + 9);
        assert_eq!((s.translated, s.blocked), (20 + 1 + 9, 20));
        assert_eq!(s.faults_recorded, 20, "every fault reached the IOMMU API");
        assert_eq!(s.reads, seq.reads.total + strided.reads.total + dma_reads(a));
        let buckets: u64 = s.reads_distribution.buckets.iter().map(|b| b.count).sum();
        assert_eq!(buckets, s.translated);
        // Sequential over 4 mapped pages, cold: the first walk reads the most.
        assert!(seq.reads.max >= 4, "{:?}: {:?}", a.arch, seq.reads);
    }
}

fn dma_reads(a: &ArchReport) -> u64 {
    a.dma
        .iter()
        .map(|d| match d.result {
            DmaResult::Translated { reads, .. } => u64::from(reads),
            _ => 0,
        })
        .sum()
}

#[test]
fn bad_stream_fields_are_refused_where_they_are_written() {
    let at = |stream: &str| {
        let text = stream_scenario(&format!("[[step]]\nstream = {{ {stream} }}\n"));
        error(&text)
    };
    let base = "device = \"A\", base = 0x10_0000, count = 10";
    // Line 10 is the step's; columns count from the line's start.
    let bad = format!("{base}, kind = \"sequential\", pages = 0");
    let (line, column, field, message) = at(&bad);
    assert_eq!((line, field.as_str()), (10, "step.stream.pages"), "{message}");
    let value = "stream = { ".len() + bad.find("pages = 0").unwrap() + "pages = ".len() + 1;
    assert_eq!(column, value, "at the value: {message}");
    assert!(message.contains("expected 1 to"), "{message}");
    let (line, _, field, message) = at(&format!("{base}, kind = \"zipff\", pages = 4, seed = 1"));
    assert_eq!((line, field.as_str()), (10, "step.stream.kind"), "{message}");
    assert!(message.contains("zipf") && message.contains("sequential"), "{message}");
    let (_, _, field, message) =
        at(&format!("{base}, kind = \"zipf\", pages = 4, seed = 1, stride = 2"));
    assert_eq!(field, "step.stream.stride", "{message}");
    assert!(message.contains("strided"), "{message}");
    let (_, _, field, message) = at(&format!("{base}, kind = \"uniform\", pages = 4"));
    assert_eq!(field, "step.stream.seed", "{message}");
    let (_, _, field, message) = at(&format!("{base}, kind = \"strided\", pages = 4"));
    assert_eq!(field, "step.stream.stride", "{message}");
    let (_, _, field, message) =
        at(&format!("{base}, kind = \"sequential\", pages = 4, strid = 1"));
    assert_eq!(field, "step.stream.strid", "{message}");
    assert!(message.contains("unknown field `strid`"), "{message}");
    let (_, _, field, message) =
        at("device = \"A\", base = 0x10_0001, count = 1, kind = \"sequential\", pages = 1");
    assert_eq!(field, "step.stream.base", "{message}");
    let (_, _, field, message) =
        at(&format!("{base}, kind = \"zipf\", pages = 4, seed = 1, exponent = -1.0"));
    assert_eq!(field, "step.stream.exponent", "{message}");
    let (_, _, field, message) =
        at("device = \"Z\", base = 0, count = 1, kind = \"sequential\", pages = 1");
    assert_eq!(field, "step.stream.device", "{message}");
    assert!(message.contains("no device `Z`"), "{message}");
}

fn with_unit(unit: &str) -> String {
    format!("{DEFAULT}\n[[unit]]\n{unit}\n")
}

fn reads(r: &DmaResult) -> u32 {
    match r {
        DmaResult::Translated { reads, .. } => *reads,
        other => panic!("not translated: {other:?}"),
    }
}

#[test]
fn capability_caps_change_what_the_unit_advertises() {
    // VT-d SAGAW 39 bits only: the driver builds 3-level second-stage tables, so D's cold
    // walk of its domain reads one entry less than with the default (4-level, 48 bits).
    let default = default_report();
    let narrow = run_source(&source(&with_unit("arch = \"vtd\"\nsagaw = [39]"))).unwrap();
    let d = |r: &Report| reads(answer(arch(r, Arch::Vtd), "D", None, 0x10_0000));
    assert_eq!(d(&narrow) + 1, d(&default));
    // Without first-stage translation a process cannot be shared: the bind is refused where
    // the scenario asks for it.
    let text = with_unit("arch = \"vtd\"\nfirst_stage = false");
    let (line, _, field, message) = error(&text);
    assert_eq!((line, field.as_str()), (80, "bind"), "{message}");
    assert!(message.contains("cannot share a process's page table"), "{message}");
    // An SMMUv3 with stage 2 only has no stage-1 domains.
    let (_, _, field, message) = error(&with_unit("arch = \"smmuv3\"\nstages = [\"s2\"]"));
    assert_eq!(field, "domain", "{message}");
    assert!(message.contains("does not support stage 1"), "{message}");
}

#[test]
fn capability_caps_take_only_their_architecture_s_values() {
    let last = DEFAULT.lines().count() + 4;
    for (unit, field, says) in [
        ("arch = \"vtd\"\ngranules = [4]", "unit.granules", "an SMMUv3 capability"),
        ("arch = \"smmuv3\"\ncaching_mode = true", "unit.caching_mode", "a VT-d capability"),
        ("arch = \"vtd\"\nsagaw = [40]", "unit.sagaw", "39, 48 or 57"),
        ("arch = \"smmuv3\"\noas_bits = 33", "unit.oas_bits", "32, 36, 40, 42, 44, 48 or 52"),
        ("arch = \"smmuv3\"\nstages = [\"s3\"]", "unit.stages", "`s1` and/or `s2`"),
        ("arch = \"smmuv3\"\ngranules = []", "unit.granules", "at least one"),
    ] {
        let (line, column, f, message) = error(&with_unit(unit));
        assert_eq!((line, f.as_str()), (last, field), "{unit}: {message}");
        assert!(column > 1, "points at the value: {unit}");
        assert!(message.contains(says), "{unit}: {message}");
    }
}

/// Every DMA answer of the scenario `text` (the default one with `[[unit]]`s added) on both
/// architectures equals the default scenario's.
#[track_caller]
fn answers_as_the_default(text: &str, what: &str) {
    let results = |r: &Report, a| {
        arch(r, a).dma.iter().map(|d| format!("{:?}", d.result)).collect::<Vec<_>>()
    };
    let default = default_report();
    let other = run_source(&source(text)).unwrap();
    for a in [Arch::Vtd, Arch::Smmuv3] {
        assert_eq!(results(&other, a), results(&default, a), "{a} under {what}");
    }
}

/// `profile` in a `[[unit]]` chooses the model's behaviour profile. The project's drivers end
/// every invalidation with its wait descriptor / CMD_SYNC and select exactly what they change,
/// so strict (at the sync, or seeded) answers every DMA of the seed's picture as forgiving
/// does; an unknown profile is refused at its key.
#[test]
fn a_unit_s_behaviour_profile_is_chosen_in_the_scenario() {
    for (vtd, smmu) in [("strict", "strict"), ("strict:5", "strict:9")] {
        let text = format!(
            "{DEFAULT}\n[[unit]]\narch = \"vtd\"\nprofile = \"{vtd}\"\n\n[[unit]]\narch = \"smmuv3\"\nprofile = \"{smmu}\"\n"
        );
        answers_as_the_default(&text, &format!("{vtd} / {smmu}"));
    }
    let last = DEFAULT.lines().count() + 4;
    let (line, column, field, message) = error(&with_unit("arch = \"vtd\"\nprofile = \"lenient\""));
    assert_eq!((line, field.as_str()), (last, "unit.profile"), "{message}");
    assert!(column > 1 && message.contains("forgiving, strict or strict:SEED"), "{message}");
}

/// `ats_completion` / `ats_timeout_ticks` in a `[[unit]]`: devices that answer ATS
/// invalidations late (within the time-out) change no answer of the seed's picture, since
/// the drivers wait for them; a bad value is refused at its key.
#[test]
fn a_unit_s_ats_completion_is_chosen_in_the_scenario() {
    let text = format!(
        "{DEFAULT}\n[[unit]]\narch = \"vtd\"\nats_completion = \"after:3\"\nats_timeout_ticks = 50\n\n[[unit]]\narch = \"smmuv3\"\nats_completion = \"after:3\"\n"
    );
    answers_as_the_default(&text, "after:3");
    let last = DEFAULT.lines().count() + 4;
    let (line, column, field, message) =
        error(&with_unit("arch = \"vtd\"\nats_completion = \"sometimes\""));
    assert_eq!((line, field.as_str()), (last, "unit.ats_completion"), "{message}");
    assert!(column > 1 && message.contains("after:TICKS"), "{message}");
    let (line, _, field, message) = error(&with_unit("arch = \"smmuv3\"\nats_timeout_ticks = 0"));
    assert_eq!((line, field.as_str()), (last, "unit.ats_timeout_ticks"), "{message}");
}

/// A guest without a vIOMMU has no DMA domain to map into: its `dma_map` is refused at its
/// line, and a misaligned IOVA in a vIOMMU guest's `dma_map` likewise.
#[test]
fn a_dma_map_needs_a_viommu_and_whole_pages() {
    let text = DEFAULT.replacen("viommu = true\n", "", 1);
    let (line, _, field, message) = error(&text);
    let want = 1 + text.lines().position(|l| l.starts_with("dma_map")).unwrap();
    assert_eq!((line, field.as_str()), (want, "guest.dma_map"), "{message}");
    assert!(message.contains("viommu = true"), "{message}");
    let text = DEFAULT.replacen(
        "dma_map = [{ iova = 0x10_0000, size = 0x1000 }]",
        "dma_map = [{ iova = 0x10_0800 }]",
        1,
    );
    assert_ne!(text, DEFAULT);
    let (_, _, field, message) = error(&text);
    assert_eq!(field, "guest.dma_map", "{message}");
    assert!(message.contains("whole 4K pages"), "{message}");
}

//! `sviommu trace record | replay | convert` and `sviommu stats` end to end, through the binary.

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

fn sviommu(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("sviommu").unwrap().args(args).output().unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = sviommu(&[args, &["--format", "json"]].concat());
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "nothing but JSON on stdout, nothing on stderr");
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sviommu-trace-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn record(scenario: &str, out: &std::path::Path) -> Value {
    json(&["trace", "record", &example(scenario), "-o", out.to_str().unwrap()])
}

fn digests(replay: &Value) -> Vec<(String, String, String)> {
    replay["runs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["devices"].as_array().unwrap().iter().map(move |d| {
                (
                    r["arch"].to_string(),
                    d["device"].as_str().unwrap().to_owned(),
                    d["digest"].as_str().unwrap().to_owned(),
                )
            })
        })
        .collect()
}

fn cache<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["caches"].as_array().unwrap().iter().find(|c| c["cache"] == name).unwrap()
}

#[test]
fn record_then_replay_gives_the_run_s_translations_and_counts() {
    let d = dir("zipf");
    let bin = d.join("z.trace");
    let w = record("zipf-thrash.toml", &bin);
    assert_eq!(
        (&w["form"], &w["records"], &w["actions"]),
        (&"binary".into(), &22002.into(), &0.into())
    );
    let run = json(&["run", &example("zipf-thrash.toml")]);
    let replay = json(&["trace", "replay", bin.to_str().unwrap()]);
    for (r, p) in run["runs"].as_array().unwrap().iter().zip(replay["runs"].as_array().unwrap()) {
        // The same requests through the same machine: the same answers and the same caches.
        for k in ["requests", "translated", "blocked", "faults", "reads"] {
            assert_eq!(r["stats"][k], p["stats"][k], "{k}");
        }
        assert_eq!(r["stats"]["caches"], p["stats"]["caches"]);
    }
}

#[test]
fn translations_do_not_depend_on_the_threads() {
    let d = dir("threads");
    let bin = d.join("seed.trace");
    record("zipf-thrash.toml", &bin);
    let one = json(&["trace", "replay", bin.to_str().unwrap(), "--threads", "1"]);
    let four = json(&["trace", "replay", bin.to_str().unwrap(), "--threads", "4"]);
    assert_eq!(four["threads"], 4);
    assert_eq!(digests(&one), digests(&four));
    assert_eq!(digests(&one).len(), 4, "two devices on two architectures");
    for (a, b) in one["runs"].as_array().unwrap().iter().zip(four["runs"].as_array().unwrap()) {
        assert_eq!(a["stats"]["translated"], b["stats"]["translated"]);
        assert_eq!(a["stats"]["faults"], b["stats"]["faults"]);
    }
    // A different configuration changes costs, not translations.
    let off = json(&["trace", "replay", bin.to_str().unwrap(), "--no-caches", "--threads", "2"]);
    assert_eq!(digests(&one), digests(&off));
    let run = &off["runs"][0]["stats"];
    assert_eq!(cache(run, "IOTLB")["lookups"], 0, "no IOTLB to look up");
    assert!(run["reads_per_translation"].as_f64().unwrap() >= 4.0, "every walk is cold");
}

#[test]
fn csv_and_binary_convert_both_ways_and_replay_alike() {
    let d = dir("convert");
    let (bin, csv, back) = (d.join("l.trace"), d.join("l.csv"), d.join("back.trace"));
    record("lazy-unmap.toml", &bin);
    let c = json(&["trace", "convert", bin.to_str().unwrap(), csv.to_str().unwrap()]);
    assert_eq!((&c["form"], &c["actions"]), (&"csv".into(), &2.into()));
    json(&["trace", "convert", csv.to_str().unwrap(), back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(&back).unwrap());
    let a = json(&["trace", "replay", bin.to_str().unwrap()]);
    let b = json(&["trace", "replay", csv.to_str().unwrap()]);
    assert_eq!(digests(&a), digests(&b));
    // The lazy domain's stale hit and its flush: the IOTLB gave one entry back.
    assert_eq!(cache(&a["runs"][0]["stats"], "IOTLB")["invalidated"], 1);
    // Strict invalidation instead: the unmap itself invalidates, the stale read faults.
    let strict = json(&["trace", "replay", bin.to_str().unwrap(), "--invalidation", "strict"]);
    let faults = |v: &Value| v["runs"][0]["stats"]["blocked"].as_u64().unwrap();
    assert_eq!(faults(&strict), faults(&a) + 1, "{}", strict["runs"][0]["stats"]["faults"]);
}

#[test]
fn a_damaged_trace_is_an_error_naming_where() {
    let d = dir("damage");
    let bin = d.join("s.trace");
    record("lazy-unmap.toml", &bin);
    let bytes = std::fs::read(&bin).unwrap();
    let cut = d.join("cut.trace");
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    let out = sviommu(&["trace", "replay", cut.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("sviommu trace replay: "), "{err}");
    assert!(err.contains("truncated in record 6 of 7") && err.contains("byte offset"), "{err}");
    let mut flipped = bytes.clone();
    let last = flipped.len() - 8 - 16;
    flipped[last] = 9;
    std::fs::write(&cut, &flipped).unwrap();
    let err =
        String::from_utf8(sviommu(&["trace", "replay", cut.to_str().unwrap()]).stderr).unwrap();
    assert!(err.contains(&format!("record 6 at byte offset {last}: record kind 9")), "{err}");
    // CSV: line and column.
    let csv = d.join("bad.csv");
    let text = String::from_utf8(
        sviommu(&["trace", "convert", bin.to_str().unwrap(), csv.to_str().unwrap()]).stderr,
    )
    .unwrap();
    assert!(text.is_empty(), "{text}");
    let good = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(&csv, good.replacen("read,NIC,,0x100000,", "read,NIC,x,0x100000,", 1)).unwrap();
    let err =
        String::from_utf8(sviommu(&["trace", "replay", csv.to_str().unwrap()]).stderr).unwrap();
    let line = good.lines().position(|l| l == "read,NIC,,0x100000,").unwrap() + 1;
    assert!(err.contains(&format!("bad.csv:{line}:10: pasid: `x` is not a number")), "{err}");
    // An action that names a DMA step.
    std::fs::write(&csv, good.replacen("action,,,,1", "action,,,,0", 1)).unwrap();
    let err =
        String::from_utf8(sviommu(&["trace", "replay", csv.to_str().unwrap()]).stderr).unwrap();
    assert!(err.contains("action names step 0, which is not a host action"), "{err}");
    // Not a trace at all.
    let err =
        String::from_utf8(sviommu(&["trace", "replay", &example("seed.toml")]).stderr).unwrap();
    assert!(err.contains("not an sviommu trace"), "{err}");
}

#[test]
fn a_sweep_plots_hit_rate_and_reads_against_iotlb_size() {
    let d = dir("sweep");
    let (bin, svg) = (d.join("z.trace"), d.join("z.svg"));
    record("zipf-thrash.toml", &bin);
    let s = json(&[
        "trace",
        "replay",
        bin.to_str().unwrap(),
        "--arch",
        "vtd",
        "--iotlb",
        "64,1024,4096",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let points = s["points"].as_array().unwrap();
    let sizes: Vec<u64> = points.iter().map(|p| p["iotlb_entries"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [64, 1024, 4096]);
    let rates: Vec<f64> = points.iter().map(|p| p["iotlb_hit_rate"].as_f64().unwrap()).collect();
    assert!(rates.windows(2).all(|w| w[0] < w[1]), "a larger IOTLB hits more: {rates:?}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"), "an SVG file");
    for text in ["IOTLB hit rate (%) against IOTLB entries", "reads per translation", ">vtd<"] {
        assert!(plot.contains(text) || plot.contains(&text.replace(['>', '<'], "")), "{text}");
    }
}

#[test]
fn stats_reads_a_scenario_or_a_trace() {
    let d = dir("stats");
    let bin = d.join("b.trace");
    record("bind-invalidate.toml", &bin);
    let from_trace = json(&["stats", bin.to_str().unwrap()]);
    let from_scenario = json(&["stats", &example("bind-invalidate.toml")]);
    assert_eq!(
        (&from_trace["kind"], &from_scenario["kind"]),
        (&"trace".into(), &"scenario".into())
    );
    for (a, b) in
        from_trace["runs"].as_array().unwrap().iter().zip(from_scenario["runs"].as_array().unwrap())
    {
        assert_eq!(a["stats"]["faults"], b["stats"]["faults"]);
        assert_eq!(a["stats"]["translated"], b["stats"]["translated"]);
    }
    let vtd = &from_scenario["runs"][0]["stats"];
    let inv: Vec<&str> = vtd["invalidations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["what"].as_str().unwrap())
        .collect();
    assert!(inv.contains(&"Iotlb") && inv.contains(&"PasidCache"), "{inv:?}");
    assert!(vtd["dropped"].as_array().unwrap().iter().all(|d| d["count"] == 0));
    let smmu = &from_scenario["runs"][1]["stats"];
    let inv = smmu["invalidations"].to_string();
    assert!(inv.contains("CMD_TLBI_NH_ALL") || inv.contains("CMD_TLBI_NH_ASID"), "{inv}");
    let text = String::from_utf8(sviommu(&["stats"]).stdout).unwrap();
    assert!(text.contains("statistics of <built-in: examples/seed.toml>"), "{text}");
    assert!(text.contains("lookups"), "{text}");
}

#[test]
fn bind_unbind_and_invalidate_steps_on_a_small_unit() {
    let r = json(&["run", &example("bind-invalidate.toml")]);
    for (run, no_pasid, gone) in [(&r["runs"][0], 0x59, 0x79), (&r["runs"][1], 0x0a, 0x10)] {
        let rows = run["dma"].as_array().unwrap();
        let code = |i: usize| rows[i]["result"]["code"].clone();
        assert_eq!(code(0), no_pasid, "before the bind");
        assert_eq!(rows[1]["result"]["output"], 0x3000_0000u64, "after the bind");
        assert_eq!(rows[3]["result"]["reads"], 0, "an IOTLB hit");
        assert_eq!(code(4), gone, "invalidated by hand before the flush queue ran");
        assert_eq!(code(5), no_pasid, "after the unbind");
        let what: Vec<&str> = run["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["what"].as_str().unwrap())
            .collect();
        assert_eq!(what[0], "sva_bind(ACC, worker) -> PASID 1");
        assert_eq!(what[2], "invalidate dma everything");
        assert_eq!(what[3], "sva_unbind(ACC, worker)");
        // The unit's [[unit]]: no walk caches, so none was looked up.
        let walk = if no_pasid == 0x59 { "first-stage PSC" } else { "stage-1 walk" };
        assert_eq!(cache(&run["stats"], walk)["lookups"], 0);
        assert_eq!(cache(&run["stats"], if no_pasid == 0x59 { "IOTLB" } else { "TLB" })["hits"], 1);
    }
}

#[test]
fn a_bad_unit_or_step_is_refused_with_its_field() {
    let d = dir("badunit");
    let path = d.join("bad.toml");
    std::fs::write(
        &path,
        "title = \"x\"\n[[unit]]\narch = \"vtd\"\npasid_bits = 30\n[[device]]\nname = \"A\"\nbdf = \"00:02.0\"\n",
    )
    .unwrap();
    let out = sviommu(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("bad.toml:2:1: unit.pasid_bits: a PASID width from 1 to 20 bits"),
        "{err}"
    );
    std::fs::write(
        &path,
        "title = \"x\"\n[[device]]\nname = \"A\"\nbdf = \"00:02.0\"\n[[step]]\nunbind = { process = \"p\", device = \"A\" }\n",
    )
    .unwrap();
    let err = String::from_utf8(
        sviommu(&["trace", "record", path.to_str().unwrap(), "-o", d.join("x").to_str().unwrap()])
            .stderr,
    )
    .unwrap();
    assert!(
        err.contains("bad.toml:6:") && err.contains("step.unbind.process: no process `p`"),
        "{err}"
    );
}

/// The README's `stats` and sweep excerpts are what the binary prints.
#[test]
fn the_readme_shows_the_real_stats_and_sweep() {
    let readme = include_str!("../../../README.md");
    let block = |start: &str| {
        let from = &readme[readme.find(start).unwrap()..];
        from[..from.find("```").unwrap()].to_owned()
    };
    let stats = String::from_utf8(sviommu(&["stats", &example("lazy-unmap.toml")]).stdout).unwrap();
    let want = block("statistics of examples/lazy-unmap.toml");
    for line in want.lines().filter(|l| !l.trim().is_empty() && *l != "...") {
        let line = line.replace("examples/lazy-unmap.toml", &example("lazy-unmap.toml"));
        assert!(stats.contains(line.trim_end()), "README line not printed: {line:?}\n{stats}");
    }
    let d = dir("readme");
    let bin = d.join("zipf.trace");
    record("zipf-thrash.toml", &bin);
    let svg = d.join("sweep.svg");
    let sweep = sviommu(&[
        "trace",
        "replay",
        bin.to_str().unwrap(),
        "--iotlb",
        "64,256,1024,4096",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let sweep = String::from_utf8(sweep.stdout).unwrap();
    for line in block("  arch    IOTLB entries").lines().filter(|l| !l.trim().is_empty()) {
        assert!(sweep.contains(line), "README line not printed: {line:?}\n{sweep}");
    }
    // The figure beside it is the same sweep drawn: the README's command regenerates it.
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let shown = include_str!("../../../docs/replay-sweep.svg");
    assert!(drawn == shown, "docs/replay-sweep.svg is stale: run the README's sweep command");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_config_file_gives_what_the_flags_give_and_flags_win() {
    let d = dir("config");
    let bin = d.join("l.trace");
    record("lazy-unmap.toml", &bin);
    let bin = bin.to_str().unwrap();
    let cfg = d.join("replay.toml");
    std::fs::write(
        &cfg,
        "# a replay configuration\narch = \"smmuv3\"\niotlb = [8]\nwalk_cache = 4\n\
         invalidation = \"strict\"\nthreads = 2\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let from_file = json(&["trace", "replay", bin, "--config", cfg]);
    let flags = [
        "trace",
        "replay",
        bin,
        "--arch",
        "smmuv3",
        "--iotlb",
        "8",
        "--walk-cache",
        "4",
        "--invalidation",
        "strict",
        "--threads",
        "2",
    ];
    let from_flags = json(&flags);
    assert_eq!(from_file, from_flags);
    assert_eq!(from_file["threads"], 2);
    assert_eq!(from_file["runs"].as_array().unwrap().len(), 1, "SMMUv3 only");
    // A flag wins over the file; `caches = false` is --no-caches.
    let over = json(&["trace", "replay", bin, "--config", cfg, "--threads", "1"]);
    assert_eq!(over["threads"], 1);
    let off = d.join("off.toml");
    std::fs::write(&off, "caches = false\n").unwrap();
    let off = json(&["trace", "replay", bin, "--config", off.to_str().unwrap()]);
    for run in off["runs"].as_array().unwrap() {
        let tlb = if run["arch"] == "vtd" { "IOTLB" } else { "TLB" };
        assert_eq!(cache(&run["stats"], tlb)["lookups"], 0, "{run}");
    }
    // A mistake names the file, line, column and key, and nothing is replayed.
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "arch = \"vtd\"\ninvalidation = \"sometimes\"\n").unwrap();
    let out = sviommu(&["trace", "replay", bin, "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml:2:16: invalidation:"), "{err}");
    assert!(err.contains("strict"), "says what was expected: {err}");
    let zero = d.join("zero.toml");
    std::fs::write(&zero, "threads = 0\n").unwrap();
    let out = sviommu(&["trace", "replay", bin, "--config", zero.to_str().unwrap()]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("zero.toml:1:11: threads: from 1 to 256 threads"), "{err}");
}

/// The ATS rows without where `run` placed them between its DMA.
fn ats_answers(run: &Value) -> Vec<Value> {
    let rows = run["ats"].as_array().unwrap().iter().cloned();
    rows.map(|mut r| {
        let o = r.as_object_mut().unwrap();
        o.remove("before_dma");
        o.remove("after_actions");
        r
    })
    .collect()
}

/// A scenario with an `ats` step records (version 2: an ATS record per address) and replays,
/// binary or CSV, on one thread or two, with the run's answers: each translation request's
/// completion, page request, the host's fault-in, response and retry, and the same statistics.
#[test]
fn ats_steps_record_and_replay_with_the_run_s_answers() {
    let d = dir("ats");
    let bin = d.join("sva.trace");
    let csv = d.join("sva.csv");
    let w = record("sva-page-requests.toml", &bin);
    assert_eq!((&w["dma"], &w["ats"], &w["actions"]), (&3.into(), &6.into(), &0.into()), "{w}");
    json(&["trace", "convert", bin.to_str().unwrap(), csv.to_str().unwrap()]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("# sviommu trace, version 2\n"), "{text}");
    assert!(text.contains("\nats-write,ACC,1,0x7f100000,\n"), "{text}");
    let run = json(&["run", &example("sva-page-requests.toml")]);
    let runs = run["runs"].as_array().unwrap();
    let mut seen = Vec::new();
    for (file, threads) in [(&bin, "1"), (&csv, "1"), (&bin, "2")] {
        let replay = json(&["trace", "replay", file.to_str().unwrap(), "--threads", threads]);
        for (r, p) in runs.iter().zip(replay["runs"].as_array().unwrap()) {
            let answers = ats_answers(r);
            assert_eq!(answers.len(), 6);
            assert_eq!(answers, ats_answers(p), "{file:?} on {threads} thread(s)");
            // A page faulted in by the host during the ATS exchange, then DMA to it.
            assert!(answers.iter().any(|a| a["retry"]["kind"] == "translated"), "{answers:?}");
            for k in ["requests", "translated", "blocked", "faults", "reads", "page_requests"] {
                assert_eq!(r["stats"][k], p["stats"][k], "{k}");
            }
            assert_eq!(p["devices"][0]["ats_requests"], 6);
        }
        seen.push(digests(&replay));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    let _ = std::fs::remove_dir_all(d);
}

/// A cache size the unit's cache cannot have exactly (not a power of two of whole sets, or
/// too large to allocate) is refused where it was given, instead of being rounded up or
/// clamped silently: a `[[unit]]` key at its line and column, `trace replay --iotlb` before
/// anything replays.
#[test]
fn a_cache_size_the_cache_cannot_have_is_refused() {
    let d = dir("ways");
    let path = d.join("bad.toml");
    let unit = |line: &str| {
        format!(
            "title = \"x\"\n[[unit]]\narch = \"smmuv3\"\n{line}\n[[device]]\nname = \"A\"\nbdf = \"00:02.0\"\n"
        )
    };
    for (line, want) in [
        // SMMUv3 caches are sets of 4 ways: 100 entries would be 32 sets, 128 entries.
        ("iotlb = 100", "bad.toml:4:9: unit.iotlb: 100 entries: the smmuv3 iotlb is a power of two of sets of 4 ways, so 64 or 128"),
        ("walk_cache = 12", "bad.toml:4:14: unit.walk_cache: 12 entries: the smmuv3 walk_cache is a power of two of sets of 4 ways, so 8 or 16"),
        ("leaf_cache = 4194304", "bad.toml:4:14: unit.leaf_cache: 4194304 entries: at most 1048576"),
    ] {
        std::fs::write(&path, unit(line)).unwrap();
        let out = sviommu(&["run", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert!(out.stdout.is_empty(), "nothing runs");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(want), "{line}: {err}");
    }
    // Whole sets, and fewer entries than one set's ways, are what the cache holds.
    for line in ["iotlb = 128", "iotlb = 3", "iotlb = 0"] {
        std::fs::write(&path, unit(line)).unwrap();
        assert!(sviommu(&["run", path.to_str().unwrap()]).status.success(), "{line}");
    }
    let bin = d.join("t.trace");
    record("lazy-unmap.toml", &bin);
    let out = sviommu(&["trace", "replay", bin.to_str().unwrap(), "--iotlb", "64,100"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no sweep is printed");
    let err = String::from_utf8(out.stderr).unwrap();
    // VT-d's IOTLB is sets of 8 ways.
    assert!(err.contains("iotlb (a flag or the replay's config file): 100 entries: the vtd iotlb is a power of two of sets of 8 ways, so 64 or 128"), "{err}");
    let _ = std::fs::remove_dir_all(d);
}

//! `sviommu run` end to end: the built-in scenario and scenario files through the binary.

use assert_cmd::Command;
use serde_json::Value;

fn sviommu(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("sviommu").unwrap().args(args).output().unwrap()
}

fn run_json(args: &[&str]) -> Value {
    let out = sviommu(&[&["run"], args, &["--format", "json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

fn dma<'a>(run: &'a Value, device: &str, pasid: Option<u32>, addr: u64) -> &'a Value {
    run["dma"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["device"] == device && d["pasid"] == serde_json::json!(pasid) && d["addr"] == addr
        })
        .unwrap_or_else(|| panic!("no DMA from {device}"))
}

#[test]
fn the_default_runs_both_architectures_through_the_models() {
    let r = run_json(&[]);
    assert_eq!(r["runs"][0]["arch"], "vtd");
    assert_eq!(r["runs"][1]["arch"], "smmuv3");
    let (vtd, smmu) = (&r["runs"][0], &r["runs"][1]);
    // C shares A's domain: on VT-d its own PASID table has no PASID 1 (fault reason 59h); on
    // SMMUv3 the domain's one CD table gives it Task 1's page.
    let c_vtd = &dma(vtd, "C", Some(1), 0x7f00_0000)["result"];
    assert_eq!((&c_vtd["kind"], &c_vtd["code"]), (&"fault".into(), &0x59.into()));
    let a = &dma(smmu, "A", Some(1), 0x7f00_0000)["result"]["output"];
    assert_eq!(&dma(smmu, "C", Some(1), 0x7f00_0000)["result"]["output"], a);
    for run in [vtd, smmu] {
        assert_eq!(run["audit"]["agrees_with_dma"], true);
        let nested = &dma(run, "E", Some(5), 0x5555_0000_1000)["result"];
        assert_eq!(nested["output"], 0x4000_1000u64, "{nested}");
        assert!(run["stats"]["caches"][0]["hits"].as_u64().unwrap() > 0);
    }
}

#[test]
fn a_scenario_file_gives_the_same_report_as_the_default() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed.toml");
    let mut from_file = run_json(&[file]);
    let mut default = run_json(&[]);
    from_file["source"] = Value::Null;
    default["source"] = Value::Null;
    assert_eq!(from_file, default);
}

#[test]
fn text_shows_groups_dma_reach_and_statistics() {
    let out = sviommu(&["run"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "== Intel VT-d, scalable mode",
        "== Arm SMMUv3, one CD table per domain",
        "sva_bind(A, Task 1) -> PASID 1",
        "fault 59h SM: PASID entry not present",
        "fault 0Ah C_BAD_CD",
        "shared_domain_table",
        "Task 2 on E at PASID 5 (bound by the guest's driver)",
        // E's default DMA domain (its RID_PASID entry) and its PASID 5, each a nested HWPT.
        "vVT-d forwarded: nesting parent HWPT 3, 2 nested HWPT(s) now, 2 attach(es)",
        "E's DMA domain (the guest's driver, requests without PASID): IOVA 0x100000 -> GPA 0x6000",
        "vSMMUv3 forwarded: nesting parent HWPT 3",
        "VM 1's CD table (pasid_table group 5)  E       all    explicit             yes",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(text.matches("static audit and DMA agree: yes").count(), 2, "{text}");
}

#[test]
fn a_bad_scenario_names_file_line_and_field_and_runs_nothing() {
    let dir = std::env::temp_dir().join(format!("sviommu-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "title = \"x\"\n[[device]]\nname = \"A\"\nbdf = \"00:02.0\"\npasid = 20\n",
    )
    .unwrap();
    let out = sviommu(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing runs");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml:5:1: device.pasid: unknown field `pasid`"), "{err}");
    assert!(err.contains("pasid_bits"), "says what was expected: {err}");
}

/// An unmap that covers no mapping (or part of one) removes less than it names: the run stops
/// at that step instead of going on as if the page were gone.
#[test]
fn an_unmap_of_part_of_a_mapping_stops_the_run_at_its_step() {
    let dir = std::env::temp_dir().join(format!("sviommu-unmap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("partial.toml");
    let seed = include_str!("../../../examples/lazy-unmap.toml");
    // Nothing is mapped at 0x200000: the unmap removes nothing.
    let bad = seed.replacen(
        "unmap = { domain = \"dma\", iova = 0x10_0000, size = 0x1000 }",
        "unmap = { domain = \"dma\", iova = 0x20_0000, size = 0x1000 }",
        1,
    );
    assert_ne!(bad, seed);
    std::fs::write(&path, bad).unwrap();
    let out = sviommu(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("step.unmap: unmapped 0x0 of the 0x1000 bytes asked"), "{err}");
    assert!(err.contains("partial.toml:"), "names the file and line: {err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The README's excerpt is what the command prints.
#[test]
fn the_readme_shows_the_real_output() {
    let out = sviommu(&["run"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let readme = include_str!("../../../README.md");
    let start = readme.find("== Intel VT-d, scalable mode").unwrap();
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    for line in block.lines().filter(|l| !l.trim().is_empty() && !l.contains("...")) {
        assert!(text.contains(line.trim_end()), "README line not in the output: {line:?}");
    }
}

#[test]
fn unknown_command_is_a_usage_error() {
    Command::cargo_bin("sviommu").unwrap().arg("frobnicate").assert().failure().code(2);
}

fn example(name: &str) -> Value {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    run_json(&[&path])
}

fn cache<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["stats"]["caches"].as_array().unwrap().iter().find(|c| c["cache"] == name).unwrap()
}

#[test]
fn lazy_unmap_leaves_a_stale_translation_until_the_flush() {
    let r = example("lazy-unmap.toml");
    for (run, iotlb, fault) in [(&r["runs"][0], "IOTLB", 0x79), (&r["runs"][1], "TLB", 0x10)] {
        let rows = run["dma"].as_array().unwrap();
        let first = &rows[0]["result"];
        let stale = &rows[2]["result"];
        // After the unmap, before the flush: the same page, from the IOTLB, no table read.
        assert_eq!(rows[2]["addr"], 0x10_0000);
        assert_eq!((&stale["output"], &stale["reads"]), (&first["output"], &0.into()), "{stale}");
        assert_eq!(stale["output"], 0x3000_0000u64);
        // After the flush: the architected fault (VT-d 79h, SMMUv3 F_TRANSLATION).
        let last = &rows[4]["result"];
        assert_eq!((&last["kind"], &last["code"]), (&"fault".into(), &fault.into()), "{last}");
        assert_eq!(cache(run, iotlb)["invalidated"], 1, "the flush removed the one entry");
        assert_eq!(run["actions"][0]["before_dma"], 2);
    }
}

#[test]
fn a_switch_without_acs_is_one_group() {
    let r = example("acs-switch.toml");
    for (run, fault) in [(&r["runs"][0], 0x39), (&r["runs"][1], 0x02)] {
        let groups = run["groups"].as_array().unwrap();
        let nics = groups.iter().find(|g| g["members"].to_string().contains("NIC0")).unwrap();
        assert!(nics["members"].to_string().contains("NIC1"), "{nics}");
        assert!(!nics["reasons"].as_array().unwrap().is_empty());
        // NIC1 was not named but shares NIC0's page; GPU1 (ACS on its port) was never attached.
        let nic1 = &dma(run, "NIC1", None, 0x10_0000)["result"];
        assert_eq!(nic1["output"], dma(run, "NIC0", None, 0x10_0000)["result"]["output"]);
        let gpu1 = &dma(run, "GPU1", None, 0x10_0000)["result"];
        // VT-d: no root entry for its bus (39h); SMMUv3: no STE for its StreamID (C_BAD_STREAMID).
        assert_eq!(gpu1["code"], fault, "{gpu1}");
        assert!(
            cache(run, if fault == 0x39 { "IOTLB" } else { "TLB" })["hits"].as_u64().unwrap() > 0
        );
    }
}

#[test]
fn topology_shows_groups_reasons_and_pasid_eligibility() {
    let path = format!("{}/../../examples/acs-switch.toml", env!("CARGO_MANIFEST_DIR"));
    let out = sviommu(&["topology", &path, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for unit in v["units"].as_array().unwrap() {
        let member = |name: &str| {
            unit["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["members"].as_array().unwrap().iter().map(move |m| (g, m)))
                .find(|(_, m)| m["name"] == name)
                .unwrap()
        };
        let (group, nic0) = member("NIC0");
        assert_eq!(group["domain"], "vfio");
        assert!(group["reasons"].to_string().contains("does not isolate its downstream ports"));
        // Behind the switch without ACS a PASID request could be routed peer to peer.
        assert!(nic0["pasid"]["Err"].as_str().unwrap().contains("ACS"), "{nic0}");
        let (_, gpu0) = member("GPU0");
        assert_eq!(gpu0["pasid"]["Ok"], 20, "{gpu0}");
    }
    let text = String::from_utf8(sviommu(&["topology"]).stdout).unwrap();
    assert!(text.contains("a DMA alias quirk"), "{text}");
}

fn stream_cache<'a>(stream: &'a Value, name: &str) -> &'a Value {
    stream["caches"].as_array().unwrap().iter().find(|c| c["cache"] == name).unwrap()
}

#[test]
fn a_zipf_stream_thrashes_the_iotlb_and_a_small_buffer_fits() {
    let r = example("zipf-thrash.toml");
    for (run, iotlb, fault) in [(&r["runs"][0], "IOTLB", 0x79), (&r["runs"][1], "TLB", 0x10)] {
        let streams = run["streams"].as_array().unwrap();
        let (disk, nic) = (&streams[0], &streams[1]);
        assert_eq!((&disk["kind"], &nic["kind"]), (&"sequential".into(), &"zipf".into()));
        // Each stream is one row: its requests summed, none of them in `dma`.
        assert_eq!((&disk["requests"], &nic["requests"]), (&2000.into(), &20000.into()));
        assert_eq!(nic["translated"], 20000);
        assert_eq!(run["dma"].as_array().unwrap().len(), 2);
        // 4 pages never leave the IOTLB; the zipf tail over 4096 pages keeps pushing entries out.
        assert_eq!(stream_cache(disk, iotlb)["evictions"], 0, "{disk}");
        assert!(stream_cache(nic, iotlb)["evictions"].as_u64().unwrap() > 0, "{nic}");
        assert_eq!(stream_cache(disk, iotlb)["hits"], 2000 - 4, "one walk per page");
        // Most zipf requests hit the hot pages: a translation that read nothing.
        let buckets = nic["reads"]["buckets"].as_array().unwrap();
        assert_eq!(buckets[0]["reads"], "0");
        assert!(buckets[0]["count"].as_u64().unwrap() > 10_000, "{nic}");
        // The pool's hottest page, and the page past the pool that nothing maps.
        let hot = &dma(run, "NIC", None, 0x100_1000)["result"];
        assert_eq!(hot["output"], 0x3100_0000u64, "{hot}");
        let past = &dma(run, "NIC", None, 0x200_1000)["result"];
        assert_eq!((&past["kind"], &past["code"]), (&"fault".into(), &fault.into()), "{past}");
        // The run's statistics hold the streams' requests too.
        assert_eq!(run["stats"]["requests"], 2000 + 20000 + 2);
        let total: u64 = run["stats"]["reads_distribution"]["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, run["stats"]["translated"].as_u64().unwrap());
    }
}

#[test]
fn a_bad_stream_is_refused_with_its_field() {
    let dir = std::env::temp_dir().join(format!("sviommu-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad-stream.toml");
    std::fs::write(
        &path,
        "title = \"x\"\n[[device]]\nname = \"A\"\nbdf = \"00:02.0\"\n[[step]]\n\
         stream = { device = \"A\", kind = \"zipf\", base = 0, pages = 8, count = 8, seed = 1, stride = 2 }\n",
    )
    .unwrap();
    let out = sviommu(&["run", path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing runs");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad-stream.toml:6:"), "{err}");
    assert!(err.contains("step.stream.stride: `stride` is for `kind = \"strided\"`"), "{err}");
}

#[test]
fn text_shows_each_stream_where_it_was_sent_and_its_figures() {
    let path = format!("{}/../../examples/zipf-thrash.toml", env!("CARGO_MANIFEST_DIR"));
    let out = sviommu(&["run", &path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "stream 1: 2000 sequential over 4 pages (below)",
        "stream 2: 20000 zipf over 4096 pages (below)",
        "stream 2: 20000 reads by NIC: zipf over 4096 pages from 0x1001000, exponent 1.1, seed 7",
    ] {
        assert_eq!(text.matches(want).count(), 2, "{want:?} once per architecture in\n{text}");
    }
    // Each stream's distribution, and the run's.
    assert_eq!(text.matches("translations by table reads: ").count(), 2 * 3, "{text}");
}

#[test]
fn a_guest_on_each_viommu_binds_through_its_own_driver() {
    let r = example("guest-viommu.toml");
    for (run, iotlb, model, denied) in
        [(&r["runs"][0], "IOTLB", "VT-d", 0x85), (&r["runs"][1], "TLB", "SMMUv3", 0x13)]
    {
        let guest = &run["guests"][0];
        let v = &guest["viommu"];
        assert_eq!(v["model"], model, "{guest}");
        // The host holds what the vIOMMU forwarded: the guest's nested HWPT over its stage 2.
        assert!(v["nested_hwpts"].as_u64().unwrap() >= 1, "{v}");
        assert_eq!(v["refused"], 0, "{v}");
        // The worker's second page is the second page of guest RAM the guest handed out
        // (its first, GPA 0x1000): guest RAM's host address plus that.
        let ram = guest["ram_hpa"].as_u64().unwrap();
        let out = &dma(run, "N", Some(7), 0x7f00_1000_1008)["result"];
        assert_eq!(out["output"], ram + 0x1008, "{out}");
        // A write to the read-only page: VT-d 85h (SM: write denied), SMMUv3 F_PERMISSION.
        let ro = &dma(run, "N", Some(7), 0x7f00_1010_0000)["result"];
        assert_eq!((&ro["kind"], &ro["code"]), (&"fault".into(), &denied.into()), "{ro}");
        // The third write reuses the first one's page: the one IOTLB hit.
        assert_eq!(cache(run, iotlb)["hits"], 1);
    }
    // The VT-d vIOMMU forwarded the guest's attaches (N's default DMA domain at RID_PASID,
    // then the bind at PASID 7) and its invalidations.
    let v = &r["runs"][0]["guests"][0]["viommu"];
    assert_eq!(v["attached"], 2, "{v}");
    assert!(v["invalidations"].as_u64().unwrap() > 0, "{v}");
}

fn ats_row<'a>(run: &'a Value, addr: u64, access: &str) -> &'a Value {
    run["ats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["addr"] == addr && r["access"] == access)
        .unwrap_or_else(|| panic!("no ATS row for {addr:#x} {access}"))
}

#[test]
fn sva_page_requests_fault_pages_in_and_the_retry_translates() {
    let r = example("sva-page-requests.toml");
    for (run, iotlb, fault) in [(&r["runs"][0], "IOTLB", 0x71), (&r["runs"][1], "TLB", 0x10)] {
        // A resident page: translated at once, no page request.
        let resident = ats_row(run, 0x7f00_0000, "write");
        assert_eq!(resident["first"]["output"], 0x3000_0000u64, "{resident}");
        assert!(resident["page_request"].is_null(), "{resident}");
        // An untouched page: R = W = 0, a page request, the host faults it in (the next data
        // page after the resident one and the domain's), Success, and the retry gets it.
        let lazy = ats_row(run, 0x7f10_0000, "write");
        assert_eq!(lazy["first"]["kind"], "no_access", "{lazy}");
        let pr = &lazy["page_request"];
        assert_eq!(pr["host"]["resident"], 0x3000_2000u64, "{pr}");
        assert_eq!(
            (&pr["response"]["code"], &pr["response"]["name"]),
            (&0.into(), &"Success".into())
        );
        let retry = &lazy["retry"];
        assert_eq!(
            (&retry["kind"], &retry["output"]),
            (&"translated".into(), &0x3000_2000u64.into())
        );
        assert_eq!((&retry["read"], &retry["write"]), (&true.into(), &true.into()), "{retry}");
        // A write to the read-only range and an address the process never mapped: Invalid
        // Request (1h), no retry.
        for addr in [0x7f20_0000u64, 0x9000_0000] {
            let refused = ats_row(run, addr, "write");
            assert_eq!(refused["page_request"]["response"]["code"], 1, "{refused}");
            assert!(refused["retry"].is_null(), "{refused}");
        }
        // Reading the read-only range is allowed: faulted in read-only.
        let ro = &ats_row(run, 0x7f20_0000, "read")["retry"];
        assert_eq!((&ro["read"], &ro["write"]), (&true.into(), &false.into()), "{ro}");
        // Untranslated DMA reaches a page the host faulted in; one it never did faults (VT-d
        // 71h, SMMUv3 F_TRANSLATION).
        let dma_in = &dma(run, "ACC", Some(1), 0x7f10_3008)["result"];
        assert_eq!(dma_in["output"], 0x3000_3008u64, "{dma_in}");
        let never = &dma(run, "ACC", Some(1), 0x7f10_1000)["result"];
        assert_eq!((&never["kind"], &never["code"]), (&"fault".into(), &fault.into()), "{never}");
        // Five page requests: the unit queued each, the IOMMU API collected and answered each.
        let p = &run["stats"]["page_requests"];
        assert_eq!(
            (&p["queued"], &p["received"], &p["responses"]),
            (&5.into(), &5.into(), &5.into())
        );
        // The retries filled the IOTLB: the DMA to the faulted-in pages hit it.
        assert!(cache(run, iotlb)["hits"].as_u64().unwrap() >= 2, "{run}");
    }
}

#[test]
fn a_guest_invalidates_through_its_viommu_and_a_forgetful_one_keeps_a_stale_translation() {
    let r = example("guest-invalidate.toml");
    for (run, iotlb, fault) in [(&r["runs"][0], "IOTLB", 0x71), (&r["runs"][1], "TLB", 0x10)] {
        let rows = run["dma"].as_array().unwrap();
        let ram = run["guests"][0]["ram_hpa"].as_u64().unwrap();
        // Page A is the guest's first data page (GPA 0), B the next.
        assert_eq!(rows[0]["result"]["output"], ram, "{run}");
        assert_eq!(rows[1]["result"]["output"], ram + 0x1000);
        // A unmapped without an invalidation: the same page, from the IOTLB, nothing read.
        let stale = &rows[2]["result"];
        assert_eq!((&stale["output"], &stale["reads"]), (&ram.into(), &0.into()), "{stale}");
        // B unmapped and invalidated through the vIOMMU: the architected fault (VT-d 71h,
        // SMMUv3 F_TRANSLATION); A, which the invalidation did not name, is still stale.
        let b = &rows[3]["result"];
        assert_eq!((&b["kind"], &b["code"]), (&"fault".into(), &fault.into()), "{b}");
        assert_eq!(rows[4]["result"]["output"], ram);
        assert_eq!(rows[4]["result"]["reads"], 0);
        // The host unit removed exactly the one entry the guest's invalidation named.
        assert_eq!(cache(run, iotlb)["invalidated"], 1, "{run}");
        let actions = run["actions"].as_array().unwrap();
        assert_eq!((&actions[0]["before_dma"], &actions[1]["before_dma"]), (&2.into(), &3.into()));
        assert!(actions[0]["what"].as_str().unwrap().contains("forgets to invalidate"));
    }
    // VT-d: the guest's PASID-based IOTLB invalidation reached the host through the vIOMMU
    // (the guest's bind and its device's DMA domain made one more each); SMMUv3: the host unit ran the forwarded CMD_TLBI_NH_VA.
    let v = &r["runs"][0]["guests"][0]["viommu"];
    assert_eq!(v["invalidations"], 3, "{v}");
    let cmds = r["runs"][1]["stats"]["invalidations"].as_array().unwrap();
    let nh_va = cmds.iter().find(|c| c["what"] == "CMD_TLBI_NH_VA").unwrap();
    assert_eq!(nh_va["count"], 1, "{cmds:?}");
}

#[test]
fn a_guest_unmap_needs_a_guest_with_a_viommu() {
    let dir = std::env::temp_dir().join(format!("sviommu-gunmap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("no-viommu.toml");
    let text =
        include_str!("../../../examples/guest-invalidate.toml").replacen("viommu = true\n", "", 1);
    std::fs::write(&path, text).unwrap();
    let out = sviommu(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no-viommu.toml:"), "{err}");
    assert!(err.contains("step.guest_unmap.guest: the guest has no vIOMMU"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A stream's figure from the JSON report: how many of its translations cost `bucket` reads.
fn bucket(stream: &Value, bucket: &str) -> u64 {
    let buckets = stream["reads"]["buckets"].as_array().unwrap();
    buckets.iter().find(|b| b["reads"] == bucket).unwrap()["count"].as_u64().unwrap()
}

#[test]
fn nested_streams_cost_what_their_pattern_makes_them_cost() {
    let r = example("nested-streams.toml");
    for run in r["runs"].as_array().unwrap() {
        let streams = run["streams"].as_array().unwrap();
        let kinds: Vec<&str> = streams.iter().map(|s| s["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["sequential", "uniform", "zipf"]);
        for s in streams {
            assert_eq!((&s["translated"], &s["blocked"]), (&6000.into(), &0.into()), "{s}");
            let counted: u64 =
                ["0", "1-2", "3-4", "5-8", "9-16", ">16"].into_iter().map(|b| bucket(s, b)).sum();
            assert_eq!(counted, 6000, "every translation in one bucket: {s}");
            // No translation reads more than the silicon would: a cold nested 4K walk is 24
            // page-table entries, plus the configuration structures (and on SMMUv3 the stage-2
            // walk of the CD's IPA).
            assert!(s["reads"]["max"].as_u64().unwrap() <= 32, "{s}");
        }
        // A few hot pages hit where uniform traffic over the same pages misses.
        assert!(bucket(&streams[2], "0") > bucket(&streams[1], "0"), "{}", run["arch"]);
    }
}

/// Each architecture's heading names only the table formats the scenario used, and the
/// statistics say what their figures are: a scenario with domains alone names no processes
/// or guests.
#[test]
fn headings_name_only_what_the_run_did() {
    let out = sviommu(&[
        "run",
        &format!("{}/../../examples/acs-switch.toml", env!("CARGO_MANIFEST_DIR")),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("== Intel VT-d, scalable mode: domains on second-stage tables\n"),
        "{text}"
    );
    assert!(
        text.contains("== Arm SMMUv3, one CD table per domain (the seed's driver): domains on VMSAv8-64 stage 1\n"),
        "{text}"
    );
    assert!(!text.contains("processes on"), "{text}");
    assert!(text.contains("invalidations the unit carried out (the drivers' setup too): "));
    assert!(text.contains("(more IOTLB lookups than requests: "), "{text}");
    let seed = String::from_utf8(sviommu(&["run"]).stdout).unwrap();
    assert!(seed.contains("guests' first stage nested over a second-stage parent"), "{seed}");
    assert!(seed.contains("guests' stage 1 nested over stage 2"), "{seed}");
}

/// The lazy-unmap scenario on strict units: the DMA that reaches the unmapped page through the
/// IOTLB before the flush is what the invalidation sanitizer exists for, and `run` prints the
/// model's report naming the command the driver had not yet sent; forgiving units report
/// nothing and say nothing of a sanitizer.
#[test]
fn run_prints_the_sanitizer_report_of_a_strict_unit() {
    let dir = std::env::temp_dir().join(format!("sviommu-sanitizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lazy-strict.toml");
    let seed = include_str!("../../../examples/lazy-unmap.toml");
    let units = "\n[[unit]]\narch = \"vtd\"\nprofile = \"strict\"\n\n\
                 [[unit]]\narch = \"smmuv3\"\nprofile = \"strict\"\n";
    std::fs::write(&path, format!("{seed}{units}")).unwrap();
    let strict = run_json(&[path.to_str().unwrap()]);
    for (run, command) in [
        (&strict["runs"][0], "missing IOTLB invalidation, page-selective-within-domain"),
        (&strict["runs"][1], "CMD_TLBI"),
    ] {
        let z = &run["stats"]["sanitizer"];
        assert_eq!(z["enabled"], true, "{z}");
        assert_eq!(z["violations"], 1, "one stale entry, reported once: {z}");
        let report = z["reports"][0].as_str().unwrap();
        assert!(report.contains(command), "{report}");
        assert!(z["reads"].as_u64().unwrap() > 0, "{z}");
    }
    let text = sviommu(&["run", path.to_str().unwrap()]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("invalidation sanitizer (strict): violations found 1, not kept 0"),
        "{text}"
    );
    let forgiving = example("lazy-unmap.toml");
    for run in forgiving["runs"].as_array().unwrap() {
        let z = &run["stats"]["sanitizer"];
        assert_eq!((z["enabled"].as_bool(), z["violations"].as_u64()), (Some(false), Some(0)));
    }
    let _ = std::fs::remove_dir_all(dir);
}

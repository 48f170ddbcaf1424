//! `sviommu uapi` end to end: the call scripts under examples/uapi, the README's example, the
//! JSON lines, and how bad lines and broken expectations end a run.

use assert_cmd::Command;
use serde_json::Value;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/uapi");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("sviommu").unwrap().arg("uapi").args(args).output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn example(name: &str) -> String {
    format!("{EXAMPLES}/{name}")
}

/// Every example runs, and every `expect=` in it holds.
#[test]
fn the_examples_hold_their_expectations() {
    for name in [
        "smmuv3_nested.calls",
        "vtd_nested.calls",
        "smmuv3_rules.calls",
        "vtd_rules.calls",
        "smmuv3_events.calls",
    ] {
        let (code, out, err) = run(&[&example(name)]);
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert!(!out.contains("<--"), "{name}: {out}");
    }
}

/// The README's examples are the script files, and their output is what the command prints.
#[test]
fn the_readme_shows_the_real_output() {
    let readme = include_str!("../../../README.md");
    for name in ["smmuv3_nested.calls", "smmuv3_events.calls"] {
        let script = std::fs::read_to_string(example(name)).unwrap();
        assert!(readme.contains(&script), "README's script is not examples/uapi/{name}");
        let (_, out, _) = run(&[&example(name)]);
        let marker = format!("$ sviommu uapi crates/sviommu/examples/uapi/{name}\n");
        let start = readme.find(&marker).unwrap() + marker.len();
        let block = &readme[start..];
        let block = &block[..block.find("```").unwrap()];
        assert_eq!(block, out, "regenerate README's uapi block for {name}");
    }
}

fn json_calls(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A nested guest's stage-1 fault reaches the vEVENTQ with the virtual StreamID and nothing
/// else; the stage-2 fault stays with the host with the physical StreamID; a full vEVENTQ
/// reports LOST_EVENTS at the next sequence number; a page request reaches the fault queue and
/// its cookie is answered once.
#[test]
fn events_reach_the_guest_or_stay_with_the_host() {
    let (code, out, err) = run(&["--format", "json", &example("smmuv3_events.calls")]);
    assert_eq!(code, 0, "{out}{err}");
    let calls = json_calls(&out);
    let of = |call: &str| -> Vec<&Value> { calls.iter().filter(|c| c["call"] == call).collect() };
    let reads = of("read_veventq");
    assert_eq!(reads.len(), 3);
    let first = reads[0]["events"].as_array().unwrap();
    let [ev] = &first[..] else { panic!("one event, the stage-1 fault: {first:?}") };
    assert_eq!(ev["vsid"], 0x42, "the guest's StreamID, not the host's 0x10");
    assert_eq!((ev["event"].as_u64(), ev["name"].as_str()), (Some(0x10), Some("F_TRANSLATION")));
    assert_eq!((ev["addr"].as_u64(), ev["sequence"].as_u64()), (Some(0x5000_0000), Some(0)));
    assert_eq!(ev["lost_events"], false);
    // The raw record the guest would see carries the vSID in word 0 [63:32] (§7.3).
    assert_eq!(ev["words"][0].as_u64().unwrap() >> 32, 0x42);
    assert_eq!(reads[1]["events"].as_array().unwrap().len(), 0, "read() took the event");
    let third = reads[2]["events"].as_array().unwrap();
    let [kept, lost] = &third[..] else { panic!("{third:?}") };
    assert_eq!((kept["sequence"].as_u64(), kept["addr"].as_u64()), (Some(1), Some(0x5000_1000)));
    assert_eq!((lost["sequence"].as_u64(), lost["lost_events"].as_bool()), (Some(2), Some(true)));
    assert!(lost.get("vsid").is_none(), "a LOST_EVENTS header has no record");
    let host = of("host_faults");
    let faults = host[0]["faults"].as_array().unwrap();
    let [f] = &faults[..] else { panic!("one host fault, the stage-2 one: {faults:?}") };
    assert_eq!((f["device"].as_str(), f["rid"].as_u64()), (Some("A"), Some(0x10)));
    assert_eq!((f["stage2"].as_bool(), f["addr"].as_u64()), (Some(true), Some(0x4000_1000)));
    let pri = of("pri");
    assert_eq!(pri[0]["queued"], true);
    let pages = of("read_fault")[0]["faults"].as_array().unwrap().clone();
    let [p] = &pages[..] else { panic!("{pages:?}") };
    assert_eq!((p["grpid"].as_u64(), p["addr"].as_u64()), (Some(5), Some(0x5000_0000)));
    assert_eq!((p["write"].as_bool(), p["last"].as_bool()), (Some(true), Some(true)));
    assert_eq!((p["cookie"].as_u64(), p["dev_id"].as_u64()), (Some(0), Some(1)));
    assert!(p.get("pasid").is_none(), "no PASID was sent");
    let answers = of("write_page_response");
    assert_eq!(answers[0]["result"], "ok");
    assert_eq!(answers[1]["errno"], "EINVAL", "a cookie is answered once");
}

/// VT-d has no vEVENTQ: its faults stay with the host. A unit without PRI takes no page
/// request, and a VT-d page request for a device with no context is refused by the unit.
#[test]
fn vtd_faults_stay_with_the_host_and_page_requests_need_a_unit_that_takes_them() {
    let dir = std::env::temp_dir().join(format!("sviommu-uapi-ev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vtd.calls");
    std::fs::write(
        &path,
        "machine vtd\ndev = DEVICE_BIND dev=00:02.0\nioas = IOAS_ALLOC\n\
         hwpt = HWPT_ALLOC dev_id=dev pt_id=ioas\nDEVICE_ATTACH dev_id=dev pt_id=hwpt\n\
         dma 00:02.0 0x5000 read expect=fault\nhost_faults\nhost_faults\n\
         pri 00:03.0 pasid=1 0x1000 read expect=blocked\n",
    )
    .unwrap();
    let (code, out, err) = run(&["--format", "json", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let calls = json_calls(&out);
    let host: Vec<&Value> = calls.iter().filter(|c| c["call"] == "host_faults").collect();
    let faults = host[0]["faults"].as_array().unwrap();
    let [f] = &faults[..] else { panic!("{faults:?}") };
    assert_eq!((f["device"].as_str(), f["addr"].as_u64()), (Some("0000:00:02.0"), Some(0x5000)));
    assert_eq!(f["rid"], 0x10, "bus 0, device 2, function 0");
    let dma = calls.iter().find(|c| c["call"] == "dma").unwrap();
    assert_eq!(f["code"], dma["code"], "the fault the DMA saw");
    assert_eq!(host[1]["faults"].as_array().unwrap().len(), 0, "taken");
    let pri = calls.iter().find(|c| c["call"] == "pri").unwrap();
    assert_eq!(pri["queued"], false);
    let path = dir.join("smmu.calls");
    std::fs::write(&path, "machine smmuv3\npri A 0x1000 write expect=blocked\n").unwrap();
    let (code, out, _) = run(&[path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ignored: the unit takes no page requests"), "{out}");
}

/// The nested flows translate through both stages, and the guest's invalidation takes effect.
#[test]
fn nested_translations_and_invalidations() {
    let (_, out, _) = run(&["--format", "json", &example("smmuv3_nested.calls")]);
    let calls: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let dmas: Vec<&Value> = calls.iter().filter(|c| c["call"] == "dma").collect();
    assert_eq!(dmas[0]["result"], "translated");
    assert_eq!(dmas[0]["output"], 0x1000_3123u64);
    assert_eq!(dmas[1]["output"], 0x1000_3123u64, "stale until invalidated");
    assert_eq!(dmas[2]["result"], "fault");
    assert_eq!(dmas[2]["name"], "F_TRANSLATION");
    let inv = calls.iter().find(|c| c["call"] == "HWPT_INVALIDATE").unwrap();
    assert_eq!(inv["errno"], "EIO");
    assert_eq!(inv["number"], 5);
    assert_eq!(inv["handled"], 1);
    let (_, out, _) = run(&["--format", "json", &example("vtd_nested.calls")]);
    let calls: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let bind = &calls[0];
    assert_eq!(
        (bind["line"].as_u64(), bind["name"].as_str(), bind["id"].as_u64()),
        (Some(4), Some("dev"), Some(1))
    );
    let info = calls.iter().find(|c| c["call"] == "GET_HW_INFO").unwrap();
    assert_eq!(info["data"]["type"], "vtd");
    assert!(info["data"]["ecap"].as_u64().unwrap() != 0);
    let faults: Vec<&Value> = calls.iter().filter(|c| c["result"] == "fault").collect();
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0]["code"], 0x71);
}

#[test]
fn a_bad_line_names_its_number_and_field() {
    let dir = std::env::temp_dir().join(format!("sviommu-uapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "machine vtd\nioas = IOAS_ALLOC\nIOAS_MAP ioas_id=ioas user_va=nowhere length=0x1000\n",
            "line 3: field `user_va`",
        ),
        ("machine vtd\n\nIOAS_ALLOC color=blue\n", "line 3: field `color`"),
        ("IOAS_ALLOC\n", "line 1:"),
        ("machine vtd\nFROB x=1\n", "line 2: unknown call `FROB`"),
        ("machine smmuv3\ndma Z 0x1000 read\n", "line 2: field `dev`"),
        (
            "machine smmuv3 pri\nf = FAULT_QUEUE_ALLOC\nwrite_page_response fault_id=f cookie=0 code=Maybe\n",
            "line 3: field `code`",
        ),
        ("machine smmuv3 pri\npri A 0x1000 read group=512\n", "line 2: field `group`"),
    ];
    for (i, (script, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.calls"));
        std::fs::write(&path, script).unwrap();
        let (code, _, err) = run(&[path.to_str().unwrap()]);
        assert_eq!(code, 2, "{script}");
        assert!(err.contains(want), "{err} lacks {want}");
    }
    // An expectation that does not hold runs to the end and fails.
    let path = dir.join("expect.calls");
    std::fs::write(
        &path,
        "machine vtd\nioas = IOAS_ALLOC\nDESTROY id=ioas expect=EBUSY\nIOAS_ALLOC\n",
    )
    .unwrap();
    let (code, out, _) = run(&[path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("<-- expected EBUSY, got ok"), "{out}");
    assert!(out.contains("   4  IOAS_ALLOC"), "{out}");
}

/// The selftest ports run with every expectation held, and SELFTESTS.md lists every TEST_F a
/// script ports.
#[test]
fn the_selftest_ports_hold() {
    let dir = format!("{EXAMPLES}/selftests");
    let list = std::fs::read_to_string(format!("{dir}/SELFTESTS.md")).unwrap();
    for name in ["iommufd_ioas.calls", "iommufd_viommu.calls", "iommufd_device_pasid.calls"] {
        let path = format!("{dir}/{name}");
        let (code, out, err) = run(&[&path]);
        assert_eq!(code, 0, "{name}: {out}{err}");
        let script = std::fs::read_to_string(&path).unwrap();
        for line in script.lines().filter_map(|l| l.strip_prefix("# TEST_F(")) {
            let test = line.split(')').next().unwrap().split(", ").nth(1).unwrap();
            assert!(list.contains(&format!("`{test}`")), "SELFTESTS.md does not list {test}");
        }
    }
}

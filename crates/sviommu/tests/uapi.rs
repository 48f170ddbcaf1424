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
    for name in ["smmuv3_nested.calls", "vtd_nested.calls", "smmuv3_rules.calls", "vtd_rules.calls"]
    {
        let (code, out, err) = run(&[&example(name)]);
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert!(!out.contains("<--"), "{name}: {out}");
    }
}

/// The README's example is the script file, and its output is what the command prints.
#[test]
fn the_readme_shows_the_real_output() {
    let readme = include_str!("../../../README.md");
    let script = std::fs::read_to_string(example("smmuv3_nested.calls")).unwrap();
    assert!(readme.contains(&script), "README's script is not examples/uapi/smmuv3_nested.calls");
    let (_, out, _) = run(&[&example("smmuv3_nested.calls")]);
    let marker = "$ sviommu uapi crates/sviommu/examples/uapi/smmuv3_nested.calls\n";
    let start = readme.find(marker).unwrap() + marker.len();
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    assert_eq!(block, out, "regenerate README's uapi block");
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

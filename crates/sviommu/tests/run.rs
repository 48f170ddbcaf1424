//! `sviommu run` end to end: the JSON report's numbers and the text a person reads.

use assert_cmd::Command;
use serde_json::Value;

fn run_json() -> Value {
    let out =
        Command::cargo_bin("sviommu").unwrap().args(["run", "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(section: &'a Value, what: &str) -> &'a Value {
    section["translations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["what"] == what)
        .unwrap_or_else(|| panic!("no row {what}"))
}

#[test]
fn vtd_rows_cost_24_reads_cold_and_name_the_faulting_stage() {
    let report = run_json();
    let vtd = &report["sections"][0];
    assert!(vtd["title"].as_str().unwrap().starts_with("Intel VT-d"));
    let code = row(vtd, "code fetch");
    assert_eq!(
        (&code["intermediate"], &code["output"]),
        (&"0x1000123".into(), &"0x41000123".into())
    );
    assert_eq!(code["reads"], 24);
    let buffer = row(vtd, "buffer write (2M page)");
    assert_eq!(buffer["reads"], 19, "a 2M stage-1 page skips one level and its stage-2 walk");
    assert_eq!(buffer["page_size"], 4096, "stage 2 maps guest RAM in 4K pages");
    let bad = row(vtd, "write to code");
    assert_eq!(
        (&bad["fault"]["stage"], &bad["fault"]["kind"]),
        (&"stage 1".into(), &"Permission".into())
    );
    assert!(bad.get("output").is_none() && bad.get("intermediate").is_none());
    let range = row(vtd, "beyond the input range");
    assert_eq!((&range["fault"]["kind"], &range["reads"]), (&"InputRange".into(), &0.into()));
    // Stage 1 alone is happy with these two; only stage 2 refuses them.
    let beyond = row(vtd, "read beyond guest RAM");
    assert_eq!(beyond["intermediate"], "0x80000040");
    assert_eq!(
        (&beyond["fault"]["stage"], &beyond["fault"]["kind"]),
        (&"stage 2".into(), &"Translation".into())
    );
    assert_eq!(beyond["fault"]["address"], "0x80000040");
    let protected = row(vtd, "write, page write-protected by host");
    assert_eq!(protected["intermediate"], "0x1103008");
    assert_eq!(
        (&protected["fault"]["stage"], &protected["fault"]["kind"]),
        (&"stage 2".into(), &"Permission".into())
    );
}

#[test]
fn smmuv3_rows_walk_a_3_level_concatenated_stage_2() {
    let report = run_json();
    let smmu = &report["sections"][1];
    assert!(smmu["title"].as_str().unwrap().starts_with("Arm SMMUv3"));
    let code = row(smmu, "code fetch");
    assert_eq!(code["output"], "0x41000123");
    // 4 stage-1 levels, each a 3-level stage-2 walk plus itself, then the output: 4 x 4 + 3.
    assert_eq!(code["reads"], 19);
    assert_eq!(code["perms"], "priv:r-- user:r-x", "PXN set, UXN clear");
    let range = row(smmu, "beyond the input range");
    assert_eq!(range["fault"]["kind"], "InputRange");
    let protected = row(smmu, "write, page write-protected by host");
    assert_eq!(
        (&protected["fault"]["stage"], &protected["fault"]["kind"]),
        (&"stage 2".into(), &"Permission".into())
    );
}

#[test]
fn text_report_names_stages_and_reads() {
    let out = Command::cargo_bin("sviommu").unwrap().arg("run").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("first stage:  the guest's x86-64 4-level tables"), "{text}");
    assert!(text.contains("2 concatenated level-1 tables"), "{text}");
    assert!(text.contains("stage 1 Permission fault, level 1"), "{text}");
    assert!(text.contains("a cold 4-level over 4-level walk of a 4K page reads 24"), "{text}");
}

#[test]
fn unknown_command_is_a_usage_error() {
    Command::cargo_bin("sviommu").unwrap().arg("frobnicate").assert().failure().code(2);
}

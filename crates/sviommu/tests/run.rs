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
fn stage_1_rows_translate_and_fault_as_the_tables_say() {
    let report = run_json();
    let s1 = &report["sections"][0];
    let code = row(s1, "code fetch");
    assert_eq!(code["output"], "0x1000123");
    assert_eq!(code["reads"], 4);
    let buffer = row(s1, "buffer write (2M page)");
    assert_eq!(buffer["page_size"], 2 * 1024 * 1024);
    assert_eq!(buffer["reads"], 3);
    let bad = row(s1, "write to code");
    assert_eq!(bad["fault"]["kind"], "Permission");
    assert_eq!(bad["fault"]["level"], 1);
    assert!(bad.get("output").is_none());
    let hole = row(s1, "non-canonical address");
    assert_eq!(hole["fault"]["kind"], "InputRange");
    assert_eq!(hole["reads"], 0);
}

#[test]
fn text_report_names_stages_and_reads() {
    let out = Command::cargo_bin("sviommu").unwrap().arg("run").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("stage 1: x86-64 4-level"), "{text}");
    assert!(text.contains("reads"));
    assert!(text.contains("stage 1 fault: Permission at level 1"), "{text}");
}

#[test]
fn unknown_command_is_a_usage_error() {
    Command::cargo_bin("sviommu").unwrap().arg("frobnicate").assert().failure().code(2);
}

#[test]
fn nested_rows_cost_24_reads_and_name_the_faulting_stage() {
    let report = run_json();
    let nested = &report["sections"][1];
    let code = row(nested, "code fetch");
    assert_eq!(code["intermediate"], "0x1000123");
    assert_eq!(code["output"], "0x41000123");
    assert_eq!(code["reads"], 24);
    let buffer = row(nested, "buffer write (2M page)");
    assert_eq!(
        buffer["reads"], 19,
        "a 2M stage-1 page skips one stage-1 level and its stage-2 walk"
    );
    assert_eq!(buffer["page_size"], 4096, "stage 2 maps guest RAM in 4K pages");
    let beyond = row(nested, "read beyond guest RAM");
    assert_eq!(beyond["fault"]["stage"], "stage 2");
    assert_eq!(beyond["fault"]["kind"], "Translation");
    assert_eq!(beyond["fault"]["address"], "0x80000040");
    let protected = row(nested, "write, page write-protected by host");
    assert_eq!(protected["fault"]["stage"], "stage 2");
    assert_eq!(protected["fault"]["kind"], "Permission");
    // Walked alone, stage 1 sees nothing wrong with either.
    let alone = &report["sections"][0];
    assert_eq!(row(alone, "read beyond guest RAM")["output"], "0x80000040");
    assert!(row(alone, "write, page write-protected by host").get("fault").is_none());
}

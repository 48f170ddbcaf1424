//! `sviommu audit` end to end: the seed's picture as the CLI prints it.

use assert_cmd::Command;
use serde_json::Value;

fn audit(args: &[&str]) -> Value {
    let out = Command::cargo_bin("sviommu").unwrap().arg("audit").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Who reaches Task 1, as (device, reason) pairs, on unit `i` of the report.
fn task1(v: &Value, i: usize) -> Vec<(String, String)> {
    let spaces = v["audits"][i]["address_spaces"].as_array().unwrap();
    let sva = spaces.iter().find(|s| s["kind"] == "sva").unwrap();
    sva["reachable_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["device"].as_str().unwrap().to_owned(), e["reason"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[test]
fn the_seed_picture_per_domain_cd_tables() {
    let v = audit(&["--format", "json"]);
    assert_eq!(v["audits"][0]["iommu"], "vtd");
    assert_eq!(v["audits"][1]["iommu"], "smmuv3");
    for i in 0..2 {
        assert_eq!(v["audits"][i]["agrees_with_dma"], true);
    }
    // VT-d: B through its group, C not (PASID tables are per device), D never.
    assert_eq!(
        task1(&v, 0),
        pairs(&[("0000:00:02.0", "explicit"), ("0000:00:03.0", "same_group")])
    );
    // SMMUv3 with the seed's driver: C too, through the domain's one CD table.
    assert_eq!(
        task1(&v, 1),
        pairs(&[("A", "explicit"), ("B", "same_group"), ("C", "shared_domain_table")])
    );
}

#[test]
fn per_device_cd_tables_keep_c_out() {
    let v = audit(&["--cd-tables", "per-device", "--format", "json"]);
    assert_eq!(task1(&v, 1), pairs(&[("A", "explicit"), ("B", "same_group")]));
    assert_eq!(v["audits"][1]["agrees_with_dma"], true);
}

#[test]
fn text_says_who_and_why() {
    let out = Command::cargo_bin("sviommu").unwrap().arg("audit").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("shared_domain_table"), "{text}");
    assert_eq!(text.matches("static and dynamic (DMA) audits agree: yes").count(), 2, "{text}");
}

/// The README's example is what the command prints.
#[test]
fn the_readme_shows_the_real_output() {
    let out = Command::cargo_bin("sviommu").unwrap().arg("audit").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let readme = include_str!("../../../README.md");
    let start = readme.find("Intel VT-d, scalable mode\n  A and B").unwrap();
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    assert_eq!(block.trim_end(), text.trim_end(), "regenerate README's audit block");
}

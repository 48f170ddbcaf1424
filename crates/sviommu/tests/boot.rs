//! `sviommu boot`: Debian's Linux on QEMU (TCG), with no IOMMU and then on our VT-d model in
//! legacy mode, through the CLI (`--format json`).
//!
//! These boots need the QEMU that qemu/build.sh builds (minutes the first time). They run when
//! it is in the cache (~/.cache/sviommu, for this patch) or when SVIOMMU_BOOT=1 asks for it
//! (then the script builds what is missing); otherwise each test prints why it skipped.

use std::io::Write;
use std::sync::OnceLock;

use assert_cmd::Command;
use serde_json::Value;
use sviommu::boot::{self, Artefacts};

/// Built once for every test in this binary (two scripts relinking QEMU at once would race).
fn artefacts() -> Option<&'static Artefacts> {
    static BUILT: OnceLock<Option<Artefacts>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let asked = std::env::var_os("SVIOMMU_BOOT").is_some_and(|v| v == "1");
            match boot::artefacts(asked) {
                Ok(a) => a,
                Err(e) => panic!("qemu/build.sh: {e}"),
            }
        })
        .as_ref()
}

/// Prints past the test harness's capture, so a skip is seen in `cargo test`'s output.
fn skip(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no QEMU with the sviommu-vtd device is cached for this patch and \
         SVIOMMU_BOOT=1 is unset (set it to build one with {}: several minutes the first time)",
        boot::build_script().display()
    );
}

/// Boots through the CLI and returns its JSON report.
fn boot_json(args: &[&str]) -> Value {
    let out = Command::cargo_bin("sviommu")
        .expect("binary")
        .arg("boot")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("sviommu boot runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "sviommu boot {args:?}: no JSON ({e}); status {:?}\nstdout:\n{text}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "sviommu boot {args:?} exited {:?}: {v:#}", out.status);
    v
}

fn lines(v: &Value, k: &str) -> Vec<String> {
    v[k].as_array()
        .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn stat(v: &Value, k: &str) -> u64 {
    v["stats"][k].as_u64().unwrap_or(0)
}

/// The guest's data checks (the CLI exits 0 only if they hold; checked here field by field).
fn assert_data_intact(v: &Value) {
    let g = &v["guest"];
    assert_eq!(g["status"], "ok", "guest result: {g}");
    assert_eq!(g["read"], v["host_md5"], "the guest read other data than the host wrote");
    assert_eq!(g["wrote"], g["back"], "what the guest wrote read back differently");
    assert_eq!(g["wrote"], v["image_md5"], "the image does not hold what the guest wrote");
}

#[test]
fn linux_boots_without_an_iommu() {
    if artefacts().is_none() {
        return skip("linux_boots_without_an_iommu");
    }
    let v = boot_json(&["--iommu", "none"]);
    assert_data_intact(&v);
    assert!(v["init_secs"].as_f64().is_some(), "the kernel never ran /init");
    // No IOMMU: no DMAR table, no remapping, and no model.
    let iommu = lines(&v, "iommu_lines");
    assert!(!iommu.iter().any(|l| l.contains("DMAR: IOMMU enabled")), "{iommu:#?}");
    assert!(v["stats"].as_object().is_some_and(|m| m.is_empty()), "{}", v["stats"]);
}

#[test]
fn linux_intel_iommu_drives_the_model_in_legacy_mode() {
    if artefacts().is_none() {
        return skip("linux_intel_iommu_drives_the_model_in_legacy_mode");
    }
    let v = boot_json(&["--iommu", "vtd", "--mode", "legacy"]);
    assert_data_intact(&v);
    let iommu = lines(&v, "iommu_lines");
    // The DMAR table the shim built names our unit at the DMAR base; Linux read our CAP/ECAP
    // (the model's default: CAP.SAGAW 39 and 48 bits, ECAP.QI, ECAP.PT, no ECAP.IR) and took
    // the unit in legacy mode.
    let has = |s: &str| iommu.iter().any(|l| l.contains(s));
    assert!(has("DMAR: IOMMU enabled"), "{iommu:#?}");
    assert!(has("DMAR: dmar0: reg_base_addr fed90000"), "{iommu:#?}");
    let regs = iommu.iter().find(|l| l.contains("reg_base_addr")).expect("the unit's line");
    let ecap = regs.split("ecap ").nth(1).and_then(|e| u64::from_str_radix(e.trim(), 16).ok());
    let ecap = ecap.unwrap_or_else(|| panic!("no ecap in {regs}"));
    assert_eq!(ecap & (1 << 3), 0, "ECAP.IR must be clear: {regs}");
    assert_ne!(ecap & (1 << 1), 0, "ECAP.QI: {regs}");
    assert!(has("dmar0: Using Queued invalidation"), "{iommu:#?}");
    assert!(!has("Enabled IRQ remapping"), "interrupt remapping was not advertised: {iommu:#?}");
    // Nothing Linux complained about in the DMAR driver, and no kernel warning or bug at all
    // (the AMD-Vi "not a bug" line Debian's kernel prints on every machine is not ours).
    let warnings = lines(&v, "warnings");
    let iommu_warnings: Vec<_> = warnings
        .iter()
        .filter(|l| {
            l.contains("DMAR")
                || l.contains("WARNING")
                || l.contains("Call Trace")
                || l.contains("BUG")
        })
        .collect();
    assert!(iommu_warnings.is_empty(), "{iommu_warnings:#?}");
    // The model translated the disk's DMA (rings and buffers), walked legacy structures,
    // took invalidations, and never faulted.
    assert!(stat(&v, "translated") > 100, "{}", v["stats"]);
    assert_eq!(stat(&v, "faulted"), 0, "{}", v["stats"]);
    assert_eq!(stat(&v, "panics"), 0, "{}", v["stats"]);
    assert_eq!(stat(&v, "requests_refused"), 0, "{}", v["stats"]);
    assert_eq!(stat(&v, "mmio_refused"), 0, "{}", v["stats"]);
    assert!(stat(&v, "cache.context.misses") > 0, "{}", v["stats"]);
    assert!(stat(&v, "cache.iotlb.hits") + stat(&v, "cache.iotlb.misses") > 0, "{}", v["stats"]);
    assert!(stat(&v, "inv.context_cache") > 0, "{}", v["stats"]);
    assert!(stat(&v, "inv.iotlb") > 0, "{}", v["stats"]);
    assert!(stat(&v, "inv.wait") > 0, "{}", v["stats"]);
    // Legacy mode writes no scalable-mode descriptors.
    assert_eq!(stat(&v, "inv.pasid_iotlb") + stat(&v, "inv.pasid_cache"), 0, "{}", v["stats"]);
}

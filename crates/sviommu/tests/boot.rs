//! `sviommu boot`: Debian's Linux on QEMU (TCG), with no IOMMU and on our VT-d model: legacy
//! mode through the CLI (`--format json`), the mode matrix through the library (several guests
//! at once, at most two QEMUs: CI has two cores), and a corrupted context entry whose fault
//! Linux reports.
//!
//! These boots need the QEMU that qemu/build.sh builds (minutes the first time). They run when
//! it is in the cache (~/.cache/sviommu, for this patch) or when SVIOMMU_BOOT=1 asks for it
//! (then the script builds what is missing); otherwise each test prints why it skipped.

use std::io::Write;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;
use sviommu::boot::{self, Artefacts, Boot, Invalidation, Mode, Setup};

/// QEMUs this binary runs at once (the test harness's threads and the matrix's share it).
const QEMUS: usize = 2;
/// How long one guest may run (a boot takes ~10 s alone on this machine, under TCG).
const TIMEOUT: Duration = Duration::from_secs(240);

/// A counting semaphore over [`QEMUS`] slots.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

static SLOTS: Slots = Slots { free: Mutex::new(QEMUS), freed: Condvar::new() };

/// Runs `f` holding one of the slots.
fn with_slot<T>(f: impl FnOnce() -> T) -> T {
    let mut free = SLOTS.free.lock().unwrap_or_else(|e| e.into_inner());
    while *free == 0 {
        free = SLOTS.freed.wait(free).unwrap_or_else(|e| e.into_inner());
    }
    *free -= 1;
    drop(free);
    let out = f();
    *SLOTS.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    SLOTS.freed.notify_one();
    out
}

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
    let out = with_slot(|| {
        Command::cargo_bin("sviommu")
            .expect("binary")
            .arg("boot")
            .args(args)
            .args(["--format", "json"])
            .output()
            .expect("sviommu boot runs")
    });
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

/// Kernel lines the matrices treat as a model bug: anything the IOMMU driver (its lines carry
/// `driver`: `DMAR`, `smmu`) or the IOMMU core warns about, and any kernel warning, bug or call
/// trace. (The two lines Debian's kernel prints on every q35 guest, the AMD-Vi and `pci=nocrs`
/// "not a bug" notes, are not ours and match none of these.)
fn driver_warnings(b: &Boot, driver: &str) -> Vec<String> {
    b.warnings
        .iter()
        .filter(|l| {
            l.contains(driver)
                || l.contains("iommu")
                || l.contains("WARNING")
                || l.contains("Call Trace")
                || l.contains("BUG")
        })
        .cloned()
        .collect()
}

/// What every translating boot of either matrix must show, pushed through `want`: the data
/// intact, no warning from the driver (`driver`, as [`driver_warnings`]), translations, and no
/// fault, panic, refusal or memory error in the model.
fn common_checks(b: &Boot, driver: &str, want: &mut impl FnMut(bool, String)) {
    want(b.data_intact(), format!("data not intact: {:?}", b.guest));
    let w = driver_warnings(b, driver);
    want(w.is_empty(), format!("kernel warnings: {w:#?}"));
    want(b.stat("translated") > 100, format!("{} translations", b.stat("translated")));
    for k in ["faulted", "panics", "requests_refused", "mmio_refused", "memory_errors"] {
        want(b.stat(k) == 0, format!("{k} = {}", b.stat(k)));
    }
}

/// Boots every setup (at most [`QEMUS`] at once), in order.
fn boot_all(a: &Artefacts, setups: &[Setup]) -> Vec<Result<Boot, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = setups
            .iter()
            .map(|setup| {
                scope.spawn(move || {
                    with_slot(|| boot::boot(a, setup, "", TIMEOUT)).map_err(|e| e.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a boot thread")).collect()
    })
}

/// Boots each expectation's setup, prints a line per boot, and fails with every boot whose
/// `check` found something (with `detail` of the boot) or that did not run.
fn run_matrix<E>(
    a: &Artefacts,
    expects: &[E],
    setup: impl Fn(&E) -> Setup,
    check: impl Fn(&E, &Boot) -> Vec<String>,
    detail: impl Fn(&Boot) -> String,
) {
    let setups: Vec<Setup> = expects.iter().map(&setup).collect();
    let runs = boot_all(a, &setups);
    let mut failures = Vec::new();
    for ((e, s), b) in expects.iter().zip(&setups).zip(&runs) {
        let name = s.name();
        match b {
            Ok(b) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "{name:<32} {:5.1} s wall, /init at {:.2} s, {} translations, {} faults",
                    b.wall_secs,
                    b.init_secs.unwrap_or(f64::NAN),
                    b.stat("translated"),
                    b.stat("faulted"),
                );
                let bad = check(e, b);
                if !bad.is_empty() {
                    failures.push(format!("{name}: {bad:#?}\n{}", detail(b)));
                }
            }
            Err(err) => failures.push(format!("{name}: {err}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What one mode of the matrix must show.
struct Expect {
    setup: Setup,
    /// The kernel line that says how it took the unit (`None`: nothing to look for).
    line: Option<&'static str>,
    /// The structure Linux wrote for the disk: `context_tt.N` or `pasid_pgtt.N`.
    structure: &'static str,
    /// The top level the walks read (`walk.s2.level4`...), or `None` for pass-through.
    top: Option<&'static str>,
    /// Invalidation descriptors Linux must have sent (by the statistics' names).
    invalidations: &'static [&'static str],
}

fn matrix() -> Vec<Expect> {
    let vtd = Setup::default();
    let strict = Invalidation::Strict;
    let lazy = Invalidation::Lazy;
    vec![
        // Debian's kernel's default policy is lazy (a flush queue).
        Expect {
            setup: vtd,
            line: Some("DMA domain TLB invalidation policy: lazy mode"),
            structure: "context_tt.0",
            top: Some("walk.s2.level4"),
            invalidations: &["context_cache", "iotlb", "wait"],
        },
        Expect {
            setup: Setup { invalidation: strict, levels: 3, ..vtd },
            line: Some("DMA domain TLB invalidation policy: strict mode"),
            structure: "context_tt.0",
            top: Some("walk.s2.level3"),
            invalidations: &["context_cache", "iotlb", "wait"],
        },
        Expect {
            setup: Setup { passthrough: true, ..vtd },
            line: Some("Default domain type: Passthrough"),
            structure: "context_tt.2",
            top: None,
            invalidations: &["context_cache", "wait"],
        },
        Expect {
            setup: Setup { mode: Mode::ScalableSs, invalidation: lazy, ..vtd },
            line: Some("DMA domain TLB invalidation policy: lazy mode"),
            structure: "pasid_pgtt.2",
            top: Some("walk.s2.level4"),
            invalidations: &["context_cache", "pasid_cache", "iotlb", "wait"],
        },
        // Caching mode with the second stage: Linux gives up batching (strict).
        Expect {
            setup: Setup { mode: Mode::ScalableSs, caching_mode: true, levels: 3, ..vtd },
            line: Some("IOMMU batching disallowed due to virtualization"),
            structure: "pasid_pgtt.2",
            top: Some("walk.s2.level3"),
            invalidations: &["context_cache", "pasid_cache", "iotlb", "wait"],
        },
        Expect {
            setup: Setup { mode: Mode::ScalableFs, invalidation: strict, ..vtd },
            line: Some("DMA domain TLB invalidation policy: strict mode"),
            structure: "pasid_pgtt.1",
            top: Some("walk.s1.level4"),
            invalidations: &["context_cache", "pasid_cache", "pasid_iotlb", "wait"],
        },
        // Caching mode with the first stage keeps the flush queue.
        Expect {
            setup: Setup { mode: Mode::ScalableFs, invalidation: lazy, caching_mode: true, ..vtd },
            line: Some("DMA domain TLB invalidation policy: lazy mode"),
            structure: "pasid_pgtt.1",
            top: Some("walk.s1.level4"),
            invalidations: &["context_cache", "pasid_cache", "pasid_iotlb", "wait"],
        },
        Expect {
            setup: Setup { mode: Mode::ScalableSs, passthrough: true, ..vtd },
            line: Some("Default domain type: Passthrough"),
            structure: "pasid_pgtt.4",
            top: None,
            invalidations: &["context_cache", "pasid_cache", "wait"],
        },
    ]
}

/// Everything `e` asks of `b`, as a list of what failed.
fn check(e: &Expect, b: &Boot) -> Vec<String> {
    let mut bad = Vec::new();
    let mut want = |ok: bool, what: String| {
        if !ok {
            bad.push(what);
        }
    };
    common_checks(b, "DMAR", &mut want);
    let has = |s: &str| b.iommu_lines.iter().any(|l| l.contains(s));
    want(has("DMAR: IOMMU enabled"), "no `DMAR: IOMMU enabled`".into());
    let sm = e.setup.mode != Mode::Legacy;
    want(
        has("DMAR: Scalable mode is disallowed") != sm,
        format!("scalable mode {}", if sm { "refused" } else { "taken" }),
    );
    if let Some(l) = e.line {
        want(has(l), format!("no kernel line `{l}`"));
    }
    want(b.stat(e.structure) > 0, format!("no {} read", e.structure));
    // Only the structure this mode writes: no other TT or PGTT was read.
    let others: Vec<_> = b
        .stats
        .iter()
        .filter(|(k, &n)| {
            (k.starts_with("context_tt.") || k.starts_with("pasid_pgtt."))
                && n > 0
                && *k != e.structure
        })
        .collect();
    want(others.is_empty(), format!("other structures read: {others:?}"));
    let walks: Vec<_> = b.stats.keys().filter(|k| k.starts_with("walk.")).cloned().collect();
    match e.top {
        Some(top) => {
            want(b.stat(top) > 0, format!("no {top} reads: {walks:?}"));
            // Nothing above the top level, and no stage this mode does not use.
            let (stage, level) = top.rsplit_once(".level").unwrap_or_default();
            let level: i8 = level.parse().unwrap_or(0);
            let stray: Vec<_> = walks
                .iter()
                .filter(|k| {
                    let (s, l) = k.rsplit_once(".level").unwrap_or_default();
                    s != stage || l.parse::<i8>().unwrap_or(i8::MAX) > level
                })
                .collect();
            want(stray.is_empty(), format!("walks beyond {top}: {stray:?}"));
        }
        None => want(walks.is_empty(), format!("pass-through walked: {walks:?}")),
    }
    for i in e.invalidations {
        let k = format!("inv.{i}");
        want(b.stat(&k) > 0, format!("no {k}"));
    }
    if !sm {
        let k = b.stat("inv.pasid_iotlb") + b.stat("inv.pasid_cache");
        want(k == 0, "scalable-mode descriptors in legacy mode".into());
    }
    bad
}

#[test]
fn linux_drives_the_model_in_every_vtd_mode() {
    let Some(a) = artefacts() else {
        return skip("linux_drives_the_model_in_every_vtd_mode");
    };
    run_matrix(a, &matrix(), |e| e.setup, check, |b| format!("stats: {:?}", b.stats));
}

/// Boots `setup` (a `corrupt_context` one) and asserts that the host corrupted the entry, the
/// guest saw its disk fault, Linux printed fault lines naming only `reason` (DMAR fault reason /
/// SMMU event number), that is the only one the model recorded, and nothing panicked. Returns
/// the boot for the caller's own checks.
fn boot_corrupted(a: &Artefacts, setup: Setup, reason: u8) -> Boot {
    let b = with_slot(|| boot::boot(a, &setup, "", TIMEOUT)).expect("the boot runs");
    let report = || format!("{}\nconsole:\n{}", boot::text(&b), b.console);
    assert!(b.corrupted.is_some(), "{}", report());
    assert_eq!(b.guest.as_ref().map(|g| g.status.as_str()), Some("faulted"), "{}", report());
    assert!(!b.kernel_fault_reasons.is_empty(), "{}", report());
    assert!(b.kernel_fault_reasons.iter().all(|&r| r == reason), "{}", report());
    let recorded: Vec<_> = b.stats.iter().filter(|(k, _)| k.starts_with("fault.")).collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}\n{}", report());
    assert!(b.stat(&format!("fault.{reason:#04x}")) > 0, "{}", report());
    assert!(b.fault_seen_by_linux(), "{}", report());
    assert_eq!(b.stat("panics"), 0, "{}", report());
    b
}

#[test]
fn linux_reports_the_fault_the_model_recorded_for_a_corrupted_context_entry() {
    let Some(a) = artefacts() else {
        return skip("linux_reports_the_fault_the_model_recorded_for_a_corrupted_context_entry");
    };
    // §7.2, fault reason 02h: the context entry's Present bit is clear.
    let b = boot_corrupted(a, Setup { corrupt_context: true, ..Setup::default() }, 0x02);
    // The line names the disk and the reason's text.
    let line = b.console.lines().find(|l| l.contains("[fault reason 0x02]")).unwrap_or_default();
    assert!(line.contains("Request device [00:01.0]"), "{line}");
    assert!(line.contains("Present bit in context entry is clear"), "{line}");
}

/// What one SMMUv3 mode must show: the kernel's policy line, the STE Config Linux wrote for
/// the disk (§5.2: 0b101 stage 1, 0b100 bypass), and whether its tables were walked.
struct SmmuExpect {
    setup: Setup,
    line: &'static str,
    ste_config: &'static str,
    translates: bool,
}

fn smmu_matrix() -> Vec<SmmuExpect> {
    let smmu = Setup::smmu();
    vec![
        SmmuExpect {
            setup: Setup { invalidation: Invalidation::Strict, ..smmu },
            line: "DMA domain TLB invalidation policy: strict mode",
            ste_config: "ste_config.5",
            translates: true,
        },
        SmmuExpect {
            setup: Setup { invalidation: Invalidation::Lazy, ..smmu },
            line: "DMA domain TLB invalidation policy: lazy mode",
            ste_config: "ste_config.5",
            translates: true,
        },
        SmmuExpect {
            setup: Setup { passthrough: true, ..smmu },
            line: "Default domain type: Passthrough",
            ste_config: "ste_config.4",
            translates: false,
        },
    ]
}

fn smmu_check(e: &SmmuExpect, b: &Boot) -> Vec<String> {
    let mut bad = Vec::new();
    let mut want = |ok: bool, what: String| {
        if !ok {
            bad.push(what);
        }
    };
    common_checks(b, "smmu", &mut want);
    let has = |s: &str| b.iommu_lines.iter().any(|l| l.contains(s));
    // arm-smmu-v3's probe: the queues it allocated and the sizes it read from the ID registers.
    want(has("arm-smmu-v3") && has("allocated"), "no arm-smmu-v3 probe lines".into());
    // SMMU_IDR5.OAS: the model's default 52 bits (Linux's IAS follows it for stage 1).
    want(has("ias 52-bit, oas 52-bit"), "no `ias 52-bit, oas 52-bit` line".into());
    want(has(e.line), format!("no kernel line `{}`", e.line));
    want(b.stat("queue.events_written") == 0, "events written".into());
    // Only the Config this mode writes.
    let configs: Vec<_> =
        b.stats.iter().filter(|(k, &n)| k.starts_with("ste_config.") && n > 0).collect();
    want(
        configs.len() == 1 && b.stat(e.ste_config) > 0,
        format!("STE Configs {configs:?}, want {}", e.ste_config),
    );
    let walks: Vec<_> = b.stats.keys().filter(|k| k.starts_with("walk.")).cloned().collect();
    if e.translates {
        // 4K granule, 48-bit input: stage 1 starts at level 0 and no stage 2 is walked.
        want(b.stat("cd.valid") > 0, "no valid CD read".into());
        want(b.stat("walk.s1.level0") > 0, format!("no level-0 reads: {walks:?}"));
        want(walks.iter().all(|k| k.starts_with("walk.s1.")), format!("stage 2 walked: {walks:?}"));
        let tlbi = b.stat("cmd.CMD_TLBI_NH_VA") + b.stat("cmd.CMD_TLBI_NH_ASID");
        want(tlbi > 0, "no stage-1 TLB invalidation".into());
    } else {
        want(b.stat("cd.valid") == 0, "a CD read in bypass".into());
        want(walks.is_empty(), format!("bypass walked: {walks:?}"));
    }
    for k in ["cmd.CMD_CFGI_STE", "cmd.CMD_SYNC"] {
        want(b.stat(k) > 0, format!("no {k}"));
    }
    bad
}

#[test]
fn linux_arm_smmu_v3_drives_the_model_in_every_mode() {
    let Some(a) = artefacts() else {
        return skip("linux_arm_smmu_v3_drives_the_model_in_every_mode");
    };
    run_matrix(a, &smmu_matrix(), |e| e.setup, smmu_check, boot::text);
}

#[test]
fn linux_reports_the_event_the_model_recorded_for_a_corrupted_ste() {
    let Some(a) = artefacts() else {
        return skip("linux_reports_the_event_the_model_recorded_for_a_corrupted_ste");
    };
    // §7.3.4, C_BAD_STE (0x04): the STE's V bit is clear.
    boot_corrupted(a, Setup { corrupt_context: true, ..Setup::smmu() }, 0x04);
}

/// Linux's own drivers against the strict model: invalidations take effect only at their wait
/// descriptor / CMD_SYNC, and the invalidation sanitizer re-reads, on every cache hit, the
/// table words the entry was built from. intel-iommu with first-stage tables and lazy
/// invalidation, and arm-smmu-v3 lazy, boot, keep the data intact, and leave no report: every
/// table change they made was invalidated and synchronised before a DMA relied on it.
#[test]
fn linux_drivers_leave_no_sanitizer_report_on_the_strict_model() {
    let Some(a) = artefacts() else {
        return skip("linux_drivers_leave_no_sanitizer_report_on_the_strict_model");
    };
    let setups = [
        Setup {
            mode: Mode::ScalableFs,
            invalidation: Invalidation::Lazy,
            strict_model: true,
            ..Setup::default()
        },
        Setup { invalidation: Invalidation::Lazy, strict_model: true, ..Setup::smmu() },
    ];
    let runs = boot_all(a, &setups);
    for b in runs {
        let b = b.expect("the boot runs");
        let report = boot::text(&b);
        assert!(b.data_intact(), "{report}");
        assert!(b.stat("translated") > 0 && b.stat("faulted") == 0, "{report}");
        assert!(b.stat("sanitizer.reads") > 0, "the sanitizer checked no hit:\n{report}");
        assert_eq!(b.stat("sanitizer.violations"), 0, "{report}");
        assert!(b.violations.is_empty(), "{report}");
        assert!(report.contains("invalidation sanitizer (strict model): violations found 0"));
    }
}

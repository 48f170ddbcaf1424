//! The C test program (`tests/c/abi_test.c`), compiled against the committed header and linked
//! with the crate's static library, run as an embedder would run it.
//!
//! The compiler is `$CC` or `cc`. The static library is the one Cargo built for this test run
//! (beside the test binary, in `deps/`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Cargo put `libsviommu_ffi.a` for this build: the test binary's own directory.
fn staticlib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let lib = deps.join("libsviommu_ffi.a");
    assert!(lib.exists(), "no static library at {}", lib.display());
    lib
}

#[test]
fn the_c_program_drives_both_models_through_the_abi() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sviommu_abi_test");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let built = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(dir.join("include"))
        .arg(dir.join("tests/c/abi_test.c"))
        .arg(staticlib())
        // What a Rust static library needs from the C library on Linux
        // (`rustc --print native-static-libs`).
        .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{cc} failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    // The same program on strict units (the profile comes from the environment, read at
    // create): the ABI behaves the same.
    for profile in [None, Some("strict")] {
        let mut cmd = Command::new(&out);
        if let Some(p) = profile {
            cmd.env("SVIOMMU_PROFILE", p);
        }
        check_summary(&cmd.output().unwrap(), profile);
    }
    // A profile the units cannot parse refuses every create.
    let refused = Command::new(&out).env("SVIOMMU_PROFILE", "sideways").output().unwrap();
    assert!(!refused.status.success(), "units were made with a profile nobody can parse");
}

/// The C program passed, with its own count of checks.
fn check_summary(run: &std::process::Output, profile: Option<&str>) {
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the C test failed (profile {profile:?}):\n{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "unexpected summary: {last}");
    // The program's own count, so a C file that checks nothing cannot pass.
    let n: u32 = last.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n >= 80, "only {n} checks ran");
}

//! The committed header is what cbindgen makes from the crate now.
//!
//! `SVIOMMU_BLESS=1 cargo test -p sviommu-ffi --test header` rewrites it.

use std::path::Path;

#[test]
fn the_committed_header_is_what_cbindgen_makes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new().with_crate(dir).with_config(config).generate().unwrap();
    let mut made = Vec::new();
    bindings.write(&mut made);
    let path = dir.join("include/sviommu.h");
    if std::env::var_os("SVIOMMU_BLESS").is_some() {
        std::fs::write(&path, &made).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == made,
        "include/sviommu.h differs from what cbindgen makes: rerun with SVIOMMU_BLESS=1 and commit it"
    );
}

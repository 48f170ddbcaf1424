//! Writes the VT-d demo image that the README's `sviommu inspect vtd` example reads: a raw
//! memory dump (file offset = physical address) holding a scalable-mode root table at 0x100000,
//! a device 00:02.0 with a second-stage PASID 0, a nested PASID 1 and a first-stage PASID 2,
//! and a pass-through device 00:03.0. The tables are built with the project's page-table
//! builders and the VT-d spec's setters, as a driver would write them.
//!
//! ```sh
//! cargo run -p sviommu --example vtd_demo_image -- /tmp/vtd-demo.img
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: vtd_demo_image FILE");
        std::process::exit(2);
    };
    let demo = common::demo();
    demo.image.write_raw(std::path::Path::new(&path), 0);
    println!("wrote {}: RTADDR {:#x}", std::path::Path::new(&path).display(), demo.rtaddr);
}

//! The scenario parser (`sviommu-sim`'s TOML format) on arbitrary text, as `sviommu run` reads a
//! file: parse, check the steps, and build the machine on each architecture the scenario names
//! (topology, processes, domains, binds, guests through the IOMMU API). The steps are not run:
//! what they do is the models' (fuzzed by their own targets), and a stream may ask for up to a
//! million requests.
//!
//! A mistake is a `ScenarioError` naming its place in the file; never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sviommu_sim::machine::{self, check_steps};
use sviommu_sim::scenario::{parse, Source};

fuzz_target!(|bytes: &[u8]| {
    let source =
        Source { name: "fuzz.toml".to_owned(), text: String::from_utf8_lossy(bytes).into_owned() };
    let scenario = match parse(&source) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    if let Err(e) = check_steps(&scenario, &source) {
        let _ = e.to_string();
        return;
    }
    for &arch in &scenario.architectures {
        if let Err(e) = machine::build(&scenario, &source, arch) {
            let _ = e.to_string();
        }
    }
});

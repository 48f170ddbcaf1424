//! Translates the `hit` bench's warm batch ROUNDS times in one configuration, for an instruction
//! counter:
//!
//! ```text
//! cargo build --release -p sviommu-bench --example hit_instructions
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/hit_instructions CONFIG 200
//! ```
//!
//! CONFIG is a configuration's bench name (`vtd_nested`, `smmuv3_stage1`, ...; `NAME/no_memo`
//! without the memo) or `hashmap_baseline` (the `HashMap` lookups of the same pages). Run it
//! again with ROUNDS 0 to subtract the set-up: instructions per request = (I refs - those of
//! ROUNDS 0) / (ROUNDS x 128). Criterion's times on a shared 2-core machine wander between runs
//! by a third (BENCHMARKS.md); this count does not.

use std::hint::black_box;
use std::process::ExitCode;

use sviommu_bench::{baseline, baseline_batch, Config, Rig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(Ok(rounds))) = (args.get(1), args.get(2).map(|r| r.parse::<u64>()))
    else {
        eprintln!(
            "usage: hit_instructions CONFIG ROUNDS (CONFIG: hashmap_baseline or a bench name)"
        );
        return ExitCode::FAILURE;
    };
    if name == "hashmap_baseline" {
        let table = baseline();
        let sum = (0..rounds).fold(0u64, |s, _| s.wrapping_add(baseline_batch(black_box(&table))));
        println!("{sum:#x}");
        return ExitCode::SUCCESS;
    }
    let (base, memo) = match name.strip_suffix("/no_memo") {
        Some(base) => (base, false),
        None => (name.as_str(), true),
    };
    let Some(config) = Config::ALL.into_iter().find(|c| c.name() == base) else {
        eprintln!("no configuration {base}");
        return ExitCode::FAILURE;
    };
    let rig = if memo { Rig::new(config) } else { Rig::without_memo(config) };
    // Warm: the first batch fills the caches and the memo.
    rig.batch();
    let sum = (0..rounds).fold(0u64, |s, _| s.wrapping_add(black_box(rig.batch()).outputs));
    println!("{sum:#x}");
    ExitCode::SUCCESS
}

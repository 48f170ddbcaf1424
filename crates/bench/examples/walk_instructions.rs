//! Walks the `x86_walk` bench's map ROUNDS times with one walker, for an instruction counter:
//!
//! ```text
//! cargo build --release -p sviommu-bench --example walk_instructions
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/walk_instructions WALKER 200
//! ```
//!
//! WALKER is `pgtable`, `x86_64` (the crate's `translate_addr`) or `none` (the set-up alone, to
//! subtract). Instructions per walk = (I refs - none's) / (ROUNDS x 512): a figure no machine's
//! load moves, where criterion's times on a shared 2-core machine wander (BENCHMARKS.md).

#![allow(unsafe_code)]

#[path = "../benches/x86_fixture/mod.rs"]
mod x86_fixture;

use std::hint::black_box;
use std::process::ExitCode;

use sviommu_pgtable::{Access, Walk};
use x86_64::structures::paging::Translate;
use x86_64::VirtAddr;
use x86_fixture::{pages, X86Fixture};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(walker), Some(Ok(rounds))) = (args.get(1), args.get(2).map(|r| r.parse::<u64>()))
    else {
        eprintln!("usage: walk_instructions pgtable|x86_64|none ROUNDS");
        return ExitCode::FAILURE;
    };
    let mut fixture = X86Fixture::new();
    let (host, tables, view) = fixture.walkers();
    let mut sum = 0u64;
    match walker.as_str() {
        "pgtable" => {
            for _ in 0..rounds {
                for va in pages() {
                    let walked = tables.translate(host, black_box(va), Access::READ);
                    sum = sum.wrapping_add(walked.outcome.map_or(0, |l| l.output));
                }
            }
        }
        "x86_64" => {
            for _ in 0..rounds {
                for va in pages() {
                    let out = view.translate_addr(VirtAddr::new(black_box(va)));
                    sum = sum.wrapping_add(out.map_or(0, |p| p.as_u64()));
                }
            }
        }
        "none" => {}
        other => {
            eprintln!("unknown walker {other:?}: pgtable, x86_64 or none");
            return ExitCode::FAILURE;
        }
    }
    println!("{rounds} rounds of {} walks, checksum {sum:#x}", pages().count());
    ExitCode::SUCCESS
}

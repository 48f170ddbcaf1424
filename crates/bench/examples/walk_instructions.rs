//! Walks one bench map ROUNDS times with one walker, for an instruction counter:
//!
//! ```text
//! cargo build --release -p sviommu-bench --example walk_instructions
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/walk_instructions MAP WALKER 200
//! ```
//!
//! MAP is `x86` (the `x86_walk` bench's 4-level map; WALKER `pgtable` or `x86_64`, the crate's
//! `translate_addr`) or `vmsa` (the `vmsa_walk` bench's stage-1 map; WALKER `pgtable` or
//! `aarch64-paging`); WALKER `none` builds the map and walks nothing, to subtract. Instructions
//! per walk = (I refs - none's) / (ROUNDS x 512): a figure no machine's load moves, where
//! criterion's times on a shared 2-core machine wander (BENCHMARKS.md).

#![allow(unsafe_code)]

#[path = "../benches/vmsa_fixture/mod.rs"]
mod vmsa_fixture;
#[path = "../benches/x86_fixture/mod.rs"]
mod x86_fixture;

use std::hint::black_box;
use std::process::ExitCode;

use sviommu_pgtable::{Access, Walk};
use x86_64::structures::paging::Translate;
use x86_64::VirtAddr;

/// Runs `walk` on every page of the map `rounds` times; returns a checksum of the outputs.
fn rounds_of(rounds: u64, pages: impl Fn() -> Vec<u64>, walk: impl Fn(u64) -> u64) -> u64 {
    let pages = pages();
    let mut sum = 0u64;
    for _ in 0..rounds {
        for &va in &pages {
            sum = sum.wrapping_add(walk(black_box(va)));
        }
    }
    sum
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(map), Some(walker), Some(Ok(rounds))) =
        (args.get(1), args.get(2), args.get(3).map(|r| r.parse::<u64>()))
    else {
        eprintln!("usage: walk_instructions x86|vmsa pgtable|x86_64|aarch64-paging|none ROUNDS");
        return ExitCode::FAILURE;
    };
    let x86_pages = || x86_fixture::pages().collect::<Vec<_>>();
    let vmsa_pages = || vmsa_fixture::pages().collect::<Vec<_>>();
    let sum = match (map.as_str(), walker.as_str()) {
        ("x86", walker) => {
            let mut fixture = x86_fixture::X86Fixture::new();
            let (host, tables, view) = fixture.walkers();
            match walker {
                "pgtable" => rounds_of(rounds, x86_pages, |va| {
                    tables.translate(host, va, Access::READ).outcome.map_or(0, |l| l.output)
                }),
                "x86_64" => rounds_of(rounds, x86_pages, |va| {
                    view.translate_addr(VirtAddr::new(va)).map_or(0, |p| p.as_u64())
                }),
                "none" => 0,
                other => {
                    eprintln!("the x86 map's walkers are pgtable, x86_64 and none, not {other:?}");
                    return ExitCode::FAILURE;
                }
            }
        }
        ("vmsa", walker) => {
            let fixture = vmsa_fixture::VmsaFixture::new();
            match walker {
                "pgtable" => rounds_of(rounds, vmsa_pages, |va| fixture.pgtable(va).unwrap_or(0)),
                "aarch64-paging" => {
                    rounds_of(rounds, vmsa_pages, |va| fixture.aarch64_paging(va).unwrap_or(0))
                }
                "none" => 0,
                other => {
                    eprintln!(
                        "the vmsa map's walkers are pgtable, aarch64-paging and none, not {other:?}"
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        (other, _) => {
            eprintln!("unknown map {other:?}: x86 or vmsa");
            return ExitCode::FAILURE;
        }
    };
    println!("{rounds} rounds of 512 walks, checksum {sum:#x}");
    ExitCode::SUCCESS
}

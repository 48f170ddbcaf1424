//! `sviommu`: the command line. It stays thin: scenarios and reports live in modules that later
//! move into `sviommu-sim`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod report;
mod scenario;

/// A software IOMMU stack for shared virtual memory and nested (two-stage) DMA translation.
#[derive(Debug, Parser)]
#[command(name = "sviommu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the built-in default scenario: build a guest's stage-1 tables and the host's stage-2
    /// tables, translate a handful of DMA addresses through both, and show each translation with
    /// the page-table reads it cost.
    Run {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Tables for people.
    Text,
    /// One JSON document, for scripts.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { format } => match scenario::default_scenario() {
            Ok(report) => {
                match format {
                    Format::Text => print!("{}", report::text(&report)),
                    Format::Json => println!("{}", report::json(&report)),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sviommu run: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

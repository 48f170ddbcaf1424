//! `sviommu`: the command line. It stays thin: scenarios, runs and reports live in
//! `sviommu-sim`, `audit` and `inspect` in the library (`sviommu::audit`, `sviommu::inspect`).

#![forbid(unsafe_code)]

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sviommu::inspect::{self, InspectError};
use sviommu::Format;

/// A software IOMMU stack for shared virtual memory and nested (two-stage) DMA translation.
#[derive(Debug, Parser)]
#[command(name = "sviommu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario through the IOMMU API, the drivers and the hardware models.
    ///
    /// Builds the scenario's machine on each architecture it names (VT-d, SMMUv3): IOMMU groups
    /// computed from the PCI topology, domains, processes bound with sva_bind, guests whose
    /// stage-1 tables nest over the host's stage 2. Every DMA is answered by the hardware model:
    /// the output address or the architected fault, the page size, and the table and structure
    /// reads it cost. Then who reaches each address space and why, and the caches' statistics.
    /// Without a file: the built-in default, the seed thread's picture (examples/seed.toml).
    Run {
        /// A scenario file (TOML); see examples/ for commented ones.
        scenario: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show a scenario's IOMMU groups and domains as a tree, and who may use PASIDs.
    ///
    /// Each group comes with why it is one (the isolation rules the core applied to the PCI
    /// topology: DMA aliases, bridges, ACS on the path, switches), each device with the PASID
    /// width it may use or why not. Without a file: the built-in default.
    Topology {
        /// A scenario file (TOML).
        scenario: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show who can reach each address space and why, checked by DMA through the models.
    ///
    /// Builds the seed thread's picture on VT-d and on SMMUv3 through the IOMMU API: A and B in
    /// one IOMMU group, C in the same domain as A, D in another, a process (Task 1) bound to A
    /// with sva_bind. Exits non-zero if the static audit and the DMA probes disagree.
    Audit {
        /// The SMMUv3 driver's CD table policy.
        #[arg(long, value_enum, default_value_t = sviommu::audit::CdTables::PerDomain)]
        cd_tables: sviommu::audit::CdTables,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Debug real IOMMU tables offline, from a memory image, with the hardware model.
    ///
    /// Load a memory image (raw dump, sparse pieces, or a QEMU dump-guest-memory ELF core),
    /// point the IOMMU model at the tables a driver programmed, and translate requests, see
    /// every entry read, or decode a device's structures.
    Inspect {
        #[command(subcommand)]
        arch: inspect::Arch,
    },
    /// Run a file of iommufd calls (IOAS_ALLOC, IOAS_MAP, HWPT_ALLOC, VIOMMU_ALLOC, ...)
    /// against a built-in VT-d or SMMUv3 machine, and print each call's result or errno.
    ///
    /// One call per line with its fields as key=value; `name = CALL ...` binds the returned ID;
    /// `dma DEV [pasid=N] ADDR read|write` sends a request through the hardware model. The
    /// README documents the format. Exits 1 if an `expect=` does not hold, 2 on a bad line.
    Uapi {
        /// The call script.
        file: std::path::PathBuf,
        /// Output format: a table, or one JSON object per call.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { scenario, format } => match sviommu::run::run(scenario.as_deref()) {
            Ok(report) => {
                match format {
                    Format::Text => print!("{}", sviommu_sim::report::text(&report)),
                    Format::Json => println!("{}", sviommu_sim::report::json(&report)),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sviommu run: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Topology { scenario, format } => {
            match sviommu::run::source(scenario.as_deref())
                .and_then(|s| sviommu_sim::topology::topology(&s))
            {
                Ok(t) => {
                    match format {
                        Format::Text => print!("{}", sviommu_sim::topology::text(&t)),
                        Format::Json => println!("{}", sviommu_sim::topology::json(&t)),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sviommu topology: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit { cd_tables, format } => match sviommu::audit::seed(cd_tables) {
            Ok(audits) => {
                match format {
                    Format::Text => print!("{}", sviommu::audit::text(&audits)),
                    Format::Json => println!("{}", sviommu::audit::json(&audits)),
                }
                if audits.iter().all(|a| a.audit.agrees_with_dma) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("sviommu audit: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Uapi { file, format } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("sviommu uapi: {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            match sviommu::uapi::run(&text) {
                Ok(run) => {
                    match format {
                        Format::Text => print!("{}", sviommu::uapi::text(&run)),
                        Format::Json => print!("{}", sviommu::uapi::json(&run)),
                    }
                    if run.as_expected() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("sviommu uapi: {}: {e}", file.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::Inspect { arch } => {
            let mut out = std::io::stdout().lock();
            match inspect::run(&arch, &mut out).and_then(|()| Ok(out.flush()?)) {
                Ok(()) => ExitCode::SUCCESS,
                // A reader that went away (`| head`) is not an error.
                Err(InspectError::Output(e)) if e.kind() == ErrorKind::BrokenPipe => {
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sviommu inspect {}: {e}", arch.name());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! `sviommu`: the command line. It stays thin: scenarios, runs and reports live in
//! `sviommu-sim`, `audit` and `inspect` in the library (`sviommu::audit`, `sviommu::inspect`).

#![forbid(unsafe_code)]

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sviommu::inspect::{self, InspectError};
use sviommu::Format;
use sviommu_sim::machine::{Config, Invalidation};
use sviommu_sim::replay::{ConfigFile, Options};
use sviommu_sim::scenario::Arch;

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
    /// Record, replay and convert DMA traces.
    ///
    /// A trace is what a scenario issued, in order: every DMA request (single ones and each
    /// request of a generated stream) and every host action (map, unmap, flush, invalidate,
    /// bind, unbind), with the scenario itself, so a replay builds the same machine. Binary
    /// (compact, checked) or CSV (readable); docs/TRACE.md describes both.
    Trace {
        #[command(subcommand)]
        command: TraceCommand,
    },
    /// Show what the models counted for a scenario (run) or a trace (replayed).
    ///
    /// Per cache (VT-d context, PASID, IOTLB, paging-structure caches; SMMUv3 STE, CD, TLB,
    /// walk caches): lookups, hits, misses, evictions, invalidated entries; table reads per
    /// translation (mean and distribution); faults by architected reason; invalidations by
    /// descriptor type or command; records dropped by full queues. Without a file: the
    /// built-in scenario.
    Stats {
        /// A scenario file (TOML) or a trace (binary or CSV, recognised by its first bytes).
        input: Option<PathBuf>,
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
    /// Boot Debian's Linux under QEMU (TCG) on our VT-d model (x86, q35) or our SMMUv3
    /// model (--arch arm, virt) and summarise what both saw.
    ///
    /// Runs the QEMU that qemu/build.sh built and cached (with --build, builds what is
    /// missing: minutes the first time). The guest's init writes and reads a virtio-blk disk
    /// behind the IOMMU; the summary shows boot time, the kernel's IOMMU lines and warnings,
    /// whether the data is intact, and the model's translations, cache hits and invalidations.
    /// Exits 1 if the data is not intact or the model faulted or panicked.
    Boot(sviommu::boot::Args),
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

/// An IOMMU architecture, as options name it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ArchArg {
    /// Intel VT-d.
    Vtd,
    /// Arm SMMUv3.
    Smmuv3,
}

impl From<ArchArg> for Arch {
    fn from(a: ArchArg) -> Self {
        match a {
            ArchArg::Vtd => Arch::Vtd,
            ArchArg::Smmuv3 => Arch::Smmuv3,
        }
    }
}

/// When unmapped ranges leave the IOTLB.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum InvalidationArg {
    /// Before each unmap returns.
    Strict,
    /// Queued, in batches of 16 ranges or at a flush step.
    Batched,
}

#[derive(Debug, Subcommand)]
enum TraceCommand {
    /// Run a scenario and write what it issued to a trace file.
    ///
    /// The scenario runs on its first architecture (or --arch); the requests it issues do not
    /// depend on it. The file is CSV when its name ends in .csv, binary otherwise.
    Record {
        /// A scenario file (TOML); the built-in default without one.
        scenario: Option<PathBuf>,
        /// The trace file to write (.csv: CSV, anything else: binary).
        #[arg(short, long)]
        output: PathBuf,
        /// The architecture to run it on while recording.
        #[arg(long, value_enum)]
        arch: Option<ArchArg>,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Replay a trace through the hardware models and report what they counted.
    ///
    /// Builds the trace's scenario through the IOMMU API, drivers and models, with the
    /// configuration asked for, and sends every request to the model's translate and every
    /// action to the IOMMU API, in the trace's order. With --threads N each device replays on
    /// thread (device index mod N) while the host collects faults; actions wait for every
    /// thread. Translations of a trace without races do not depend on N (each device's digest
    /// says so); cache figures may. A replay that takes longer than a second shows a progress
    /// bar on a terminal.
    Replay {
        /// The trace (binary or CSV).
        file: PathBuf,
        /// Only this architecture (every one the scenario names by default).
        #[arg(long, value_enum)]
        arch: Option<ArchArg>,
        /// IOTLB (SMMUv3: TLB) entries; a comma-separated list replays once per size.
        #[arg(long, value_delimiter = ',')]
        iotlb: Vec<usize>,
        /// Paging-structure (walk) cache entries of each stage.
        #[arg(long)]
        walk_cache: Option<usize>,
        /// Replay without any cache: every translation reads every structure and entry.
        #[arg(long)]
        no_caches: bool,
        /// Every paging domain's invalidation policy (the scenario's `flush` by default).
        #[arg(long, value_enum)]
        invalidation: Option<InvalidationArg>,
        /// Threads replaying devices (1 by default).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: Option<u16>,
        /// A TOML file with any of the settings above (arch, iotlb = [..], walk_cache,
        /// caches = false, invalidation, threads); flags given here win over it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Draw IOTLB hit rate and reads per translation against IOTLB size (SVG).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Convert a trace between the binary and CSV forms (by the output's name: .csv or not).
    Convert {
        /// The trace to read (either form).
        input: PathBuf,
        /// The trace to write.
        output: PathBuf,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Shows a progress bar once a replay has taken a second, if stderr is a terminal.
struct Progress {
    start: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
    terminal: bool,
}

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            start: std::time::Instant::now(),
            bar: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        if self.bar.is_none() && self.terminal && self.start.elapsed().as_secs_f64() > 1.0 {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "replaying {bar:40} {pos}/{len} records ({per_sec}, {eta} left)",
            ) {
                bar.set_style(style);
            }
            self.bar = Some(bar);
        }
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_position(done);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn print<T: serde::Serialize>(format: Format, value: &T, text: impl FnOnce() -> String) {
    match format {
        Format::Text => print!("{}", text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
    }
}

fn trace_command(command: TraceCommand) -> Result<(), sviommu::trace::Error> {
    use sviommu::trace as t;
    let written = |w: &t::Written| {
        format!(
            "{}: {} trace, {} records ({} DMA, {} actions, {} ATS requests) from devices {}, {} bytes\n",
            w.output,
            w.form,
            w.records,
            w.dma,
            w.actions,
            w.ats,
            w.devices.join(", "),
            w.bytes
        )
    };
    match command {
        TraceCommand::Record { scenario, output, arch, format } => {
            let w = t::record(scenario.as_deref(), arch.map(Arch::from), &output)?;
            print(format, &w, || written(&w));
        }
        TraceCommand::Convert { input, output, format } => {
            let w = t::convert(&input, &output)?;
            print(format, &w, || written(&w));
        }
        TraceCommand::Replay {
            file,
            arch,
            iotlb,
            walk_cache,
            no_caches,
            invalidation,
            threads,
            config,
            plot,
            format,
        } => {
            let file_config = match &config {
                Some(path) => ConfigFile::read(path)?,
                None => ConfigFile::default(),
            };
            let trace = sviommu_sim::trace::Trace::read(&file)?;
            let iotlb = if iotlb.is_empty() { file_config.iotlb } else { iotlb };
            let config = Config {
                iotlb: None,
                walk_cache: walk_cache.or(file_config.walk_cache),
                caches_off: no_caches || file_config.caches == Some(false),
                invalidation: invalidation
                    .map(|i| match i {
                        InvalidationArg::Strict => Invalidation::Strict,
                        InvalidationArg::Batched => Invalidation::Batched,
                    })
                    .or(file_config.invalidation),
            };
            let threads = threads
                .or_else(|| file_config.threads.map(|t| *t.get_ref()))
                .map_or(1, usize::from);
            let arch = arch.map(Arch::from).or(file_config.arch);
            let opts = Options { arch, config, threads };
            let mut progress = Progress::new();
            let sweep = t::sweep(&trace, &opts, &iotlb, &mut |d, n| progress.update(d, n))?;
            drop(progress);
            if let Some(p) = &plot {
                t::plot(&sweep, p)?;
            }
            match (format, sweep.replays.as_slice()) {
                (Format::Json, [one]) if iotlb.len() <= 1 => {
                    println!("{}", serde_json::to_string_pretty(one).unwrap_or_default());
                }
                _ => print(format, &sweep, || t::sweep_text(&sweep)),
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Trace { command } => {
            let name = match &command {
                TraceCommand::Record { .. } => "record",
                TraceCommand::Replay { .. } => "replay",
                TraceCommand::Convert { .. } => "convert",
            };
            match trace_command(command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sviommu trace {name}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Stats { input, format } => {
            let mut progress = Progress::new();
            let r = sviommu::trace::stats(input.as_deref(), &mut |d, n| progress.update(d, n));
            drop(progress);
            match r {
                Ok(r) => {
                    print(format, &r, || r.text());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sviommu stats: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
        Command::Boot(args) => sviommu::boot::main(&args),
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

//! `sviommu inspect`: a driver developer's debugger for real IOMMU tables.
//!
//! It reads memory images (raw dumps, sparse pieces, QEMU ELF cores), programs one of the
//! project's hardware models with the register values a driver wrote, and asks the model: how
//! a request translates or why it faults, every structure and entry it read on the way, and
//! what one device's configuration structures hold. One command, one module per architecture:
//!
//! | module | what |
//! |---|---|
//! | [`image`] | the `--image` options, loading, and the view of memory that remembers reads that hit a hole |
//! | [`parse`] | numbers, BDFs, accesses, request files (with line numbers) |
//! | [`record`] | the report every architecture shares: one record per request, as text or JSON lines |
//! | [`run`] | the one run loop: image, model, then `--dump` or each request; request files; what a record counts |
//! | [`vtd`] | Intel VT-d: `--rtaddr`, `--cap`, `--ecap`; decoding through `sviommu_vtd::spec` |
//! | [`smmuv3`] | Arm SMMUv3: `--strtab-base`, `--strtab-base-cfg`, `--idrN`; decoding through `sviommu_smmuv3::spec` |

use std::path::PathBuf;

use sviommu_memory::ImageError;

pub mod image;
pub mod parse;
pub mod record;
pub mod run;
pub mod smmuv3;
pub mod vtd;

/// The architecture to inspect.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Arch {
    /// Intel VT-d: translate requests and decode structures from a unit's root table.
    ///
    /// Give the memory image and RTADDR as the driver wrote it. Translate one request
    /// (--device, --addr) or a file of them (--requests) through the VT-d model, with every
    /// entry it read (--walk), or decode one device's root, context and PASID entries (--dump).
    Vtd(vtd::VtdArgs),
    /// Arm SMMUv3: translate transactions and decode STEs and CDs from a Stream table.
    ///
    /// Give the memory image and SMMU_STRTAB_BASE / SMMU_STRTAB_BASE_CFG as the driver wrote
    /// them. Translate one transaction (--device SID, --addr) or a file of them (--requests)
    /// through the SMMUv3 model, with every STE, CD and descriptor it read (--walk), or decode
    /// one stream's STE and CDs (--dump).
    Smmuv3(smmuv3::SmmuArgs),
}

impl Arch {
    /// The subcommand's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Arch::Vtd(_) => "vtd",
            Arch::Smmuv3(_) => "smmuv3",
        }
    }
}

/// Why `inspect` could not answer. A fault is an answer, never one of these.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// An image could not be loaded.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// `FILE@ADDR` given for an ELF core.
    #[error("{path}: an ELF core carries its own physical addresses; give it without @ADDR")]
    ElfAtAddress {
        /// The file.
        path: PathBuf,
    },
    /// The request file could not be read.
    #[error("{path}: {source}")]
    Requests {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A request file line is malformed.
    #[error("{path}: {error}")]
    RequestLine {
        /// The file.
        path: PathBuf,
        /// Which line and why.
        error: parse::ParseError,
    },
    /// No query was given (the argument parser normally refuses this first).
    #[error("nothing to do: give --device with --addr, --requests or --dump")]
    NoQuery,
    /// The model did not do what its registers promise: a bug in the model, not in the input.
    #[error("the model misbehaved: {0}")]
    Model(&'static str),
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs `sviommu inspect ARCH ...`, writing the report to `out`.
pub fn run(arch: &Arch, out: &mut dyn std::io::Write) -> Result<(), InspectError> {
    match arch {
        Arch::Vtd(args) => run::run::<vtd::VtdInspector>(args, out),
        Arch::Smmuv3(args) => run::run::<smmuv3::SmmuInspector>(args, out),
    }
}

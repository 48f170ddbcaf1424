//! The `sviommu` command line's library: what the commands do, so tests (and other tools) can
//! call it without spawning the binary. `main.rs` only parses arguments and prints.

#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

pub mod audit;
pub mod boot;
pub mod inspect;
pub mod run;
pub mod trace;
pub mod uapi;

/// How a command prints its report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and lines for people.
    #[default]
    Text,
    /// JSON, for scripts.
    Json,
}

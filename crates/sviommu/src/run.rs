//! `sviommu run [SCENARIO]` and `sviommu topology [SCENARIO]`: a scenario file, or the built-in
//! default, through `sviommu-sim`.

use std::path::Path;

use sviommu_sim::scenario::{Source, DEFAULT};
use sviommu_sim::{Report, ScenarioError};

/// Reads the scenario at `path` (the built-in default when `None`) and runs it.
pub fn run(path: Option<&Path>) -> Result<Report, ScenarioError> {
    sviommu_sim::run_source(&source(path)?)
}

/// The scenario at `path`, or the built-in default when `None`.
pub fn source(path: Option<&Path>) -> Result<Source, ScenarioError> {
    Ok(match path {
        None => {
            Source { name: "<built-in: examples/seed.toml>".to_owned(), text: DEFAULT.to_owned() }
        }
        Some(p) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p)
                .map_err(|source| ScenarioError::Read { file: name.clone(), source })?;
            Source { name, text }
        }
    })
}

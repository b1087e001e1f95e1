//! `beamline inspect FILE`: prints [`reconstruct::inspect::summary`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// `beamline inspect FILE`.
#[derive(Debug, Args)]
pub struct Command {
    /// NXtomo file.
    file: PathBuf,
}

impl Command {
    /// Prints the summary; exits 1 when the scan is incomplete, so scripts can test it.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let text = reconstruct::inspect::summary(&self.file)?;
        print!("{text}");
        Ok(if text.contains("verdict: complete") { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}

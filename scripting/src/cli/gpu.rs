//! CLI for this area (placeholder until its issue lands).

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// GPU tools: list devices and compile every kernel with NVRTC.
    Gpu(Placeholder),
}

/// Benchmarks of this area.
#[derive(Debug, Subcommand)]
pub enum Bench {
}

/// Arguments of a subcommand that is not implemented yet.
#[derive(Debug, Args)]
pub struct Placeholder {}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not implemented yet: {self:?}")
    }
}

impl Bench {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not implemented yet: {self:?}")
    }
}

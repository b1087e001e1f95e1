//! CLI for this area (placeholder until its issue lands).

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulated detector: push a tomography series over ZeroMQ.
    Simulate(Placeholder),
    /// Receive series over ZeroMQ and write NXtomo HDF5 files.
    Receive(Placeholder),
}

/// Benchmarks of this area.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Ingest throughput over tcp loopback against this machine's ceilings.
    Ingest(Placeholder),
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

//! `beamline demo`: the whole pipeline in one command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

mod accuracy;
mod pipeline;
mod step;

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on the simulated beamline: a tomography scan whose frames go over ZeroMQ into
    /// the receiver's NXtomo file, the reconstruction (GPU if present, else CPU), a TIFF stack, a live
    /// preview of a few slices while the frames arrive, and the timeline of the run. Everything lands in one
    /// new folder.
    Demo(DemoArgs),
}

/// Options of `beamline demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run folder (created; must be new or empty). Default: a new `beamline-demo-YYYYMMDDTHHMMSSZ` (UTC) folder
    /// in the current directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Detector width and height in pixels (the reconstructed slices are as wide).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=4096))]
    pub size: u32,
    /// Number of projections over 180 degrees.
    #[arg(long, value_name = "N", default_value_t = 360, value_parser = clap::value_parser!(u32).range(8..=20000))]
    pub angles: u32,
    /// Reconstruction backend, passed to `beamline recon` (auto picks a GPU when one is present).
    #[arg(long, default_value = "auto", value_name = "auto|cpu|cuda")]
    pub backend: String,
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Demo(args) => pipeline::run(args),
        }
    }
}

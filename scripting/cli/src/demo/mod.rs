//! `beamline demo` (the whole pipeline in one command) and `beamline stitch` (the master file of a
//! series spread over several writers).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

mod accuracy;
mod fanout;
mod pipeline;
mod preview;
mod run_dir;
mod spread;
mod step;
mod stitch;

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on the simulated beamline: a tomography scan whose frames go over ZeroMQ into
    /// the receiver's NXtomo file, the reconstruction (GPU if present, else CPU), a TIFF stack, a live
    /// preview of a few slices while the frames arrive, and the timeline of the run. Everything lands in one
    /// new folder.
    Demo(DemoArgs),
    /// Build a master NXtomo file from the files of several receivers that shared one series: the frames
    /// become one HDF5 virtual dataset in frame order, after checking that every source file exists and
    /// holds the frames it claims.
    Stitch(StitchArgs),
    /// Simulate a tomography series and deal its frames over several receivers (one `beamline receive`
    /// per writer): the series start and end go to every receiver, frame `i` to receiver `i mod N`.
    Spread(SpreadArgs),
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

/// Options of `beamline stitch`.
#[derive(Debug, Args)]
pub struct StitchArgs {
    /// The files written by every receiver of the series.
    #[arg(required = true, value_name = "SOURCE.h5")]
    pub sources: Vec<PathBuf>,
    /// The master file to write (replaced if it exists).
    #[arg(short, long, value_name = "MASTER.h5")]
    pub output: PathBuf,
}

/// Options of `beamline spread`.
#[derive(Debug, Args)]
pub struct SpreadArgs {
    /// Endpoint of one receiver (repeat for each; they bind, this connects).
    #[arg(long = "to", required = true, value_name = "ENDPOINT")]
    pub to: Vec<String>,
    /// Detector width and height in pixels.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(2..=8192))]
    pub size: u32,
    /// Number of projections.
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub angles: u32,
    /// Dark fields before the flats.
    #[arg(long, default_value_t = 10)]
    pub darks: u32,
    /// Flat fields before the projections.
    #[arg(long, default_value_t = 10)]
    pub flats: u32,
    /// Rotate over 360 degrees instead of 180.
    #[arg(long)]
    pub full_turn: bool,
    /// Series id (names the files in `--output-dir` mode).
    #[arg(long, default_value = "spread")]
    pub series: String,
    /// Seed of the simulated noise (the same seed gives the same frames).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Demo(args) => pipeline::run(args),
            Command::Stitch(args) => stitch::run(args),
            Command::Spread(args) => spread::run(args),
        }
    }
}

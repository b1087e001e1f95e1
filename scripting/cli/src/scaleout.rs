//! Scale-out commands: `beamline spread` (one simulated series dealt over several receivers, through
//! [`acquisition::sender::FanOutSender`]) and `beamline stitch` (the master file over their files,
//! [`acquisition::vds::stitch`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use acquisition::protocol::{BloscParams, Compression, Degrees, Dtype, SeriesStart, SeriesStatus, Shape};
use acquisition::sender::FanOutSender;
use acquisition::sim::{send_frames, Schedule, SimConfig};
use acquisition::vds;

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a master NXtomo file from the files of several receivers that shared one series: the frames
    /// become one HDF5 virtual dataset in frame order, after checking that every source file exists and
    /// holds the frames it claims.
    Stitch(StitchArgs),
    /// Simulate a tomography series and deal its frames over several receivers (one `beamline receive`
    /// per writer): the series start and end go to every receiver, frame `i` to receiver `i mod N`.
    Spread(SpreadArgs),
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
    /// CURVE: this sender's secret key file (from `beamline keys new`); needs --curve-server.
    #[arg(long, value_name = "FILE", requires = "curve_server")]
    pub curve_secret: Option<std::path::PathBuf>,
    /// CURVE: the receivers' public key file (every receiver holds that key pair).
    #[arg(long, value_name = "PUBFILE", requires = "curve_secret")]
    pub curve_server: Option<std::path::PathBuf>,
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Stitch(args) => stitch(args),
            Command::Spread(args) => spread(args),
        }
    }
}

/// Checks every source and writes the master.
fn stitch(args: StitchArgs) -> anyhow::Result<ExitCode> {
    let done = vds::stitch(&args.sources, &args.output)?;
    let per_file: Vec<String> = done.held.iter().map(|(p, n)| format!("{} ({n})", p.display())).collect();
    println!(
        "{}: {} frames of {}x{} in frame order, {} virtual mapping(s) over {} files: {}",
        args.output.display(),
        done.n_frames,
        done.frame_shape[0],
        done.frame_shape[1],
        done.mappings,
        done.held.len(),
        per_file.join(", ")
    );
    println!("next: beamline recon {} -o recon/", args.output.display());
    Ok(ExitCode::SUCCESS)
}

/// Simulates the series and sends it through the fan-out.
fn spread(args: SpreadArgs) -> anyhow::Result<ExitCode> {
    let (size, angles) = (args.size as usize, u64::from(args.angles));
    let mut cfg = SimConfig::new(size, size, Dtype::Uint16);
    cfg.seed = args.seed;
    let schedule = Schedule {
        darks: u64::from(args.darks),
        flats: u64::from(args.flats),
        angles,
        range: Degrees(if args.full_turn { 360.0 } else { 180.0 }),
    };
    let mut start = SeriesStart::new(
        args.series.clone(),
        Shape([args.size, args.size]),
        cfg.dtype,
        Compression::Blosc1(BloscParams::default()),
        schedule.frames(),
    );
    start.metadata = serde_json::json!({
        "source": "beamline spread",
        "writers": args.to.len(),
        "darks": schedule.darks, "flats": schedule.flats, "angles": schedule.angles,
        "range_deg": schedule.range.0, "seed": cfg.seed, "attenuation": cfg.attenuation,
    });
    let curve = match (&args.curve_secret, &args.curve_server) {
        (Some(s), Some(p)) => Some(acquisition::curve::CurveClient::from_files(s, p)?),
        _ => None,
    };
    let mut fan = FanOutSender::connect_secure(&args.to, curve.as_ref()).context("connecting to the receivers")?;
    let t0 = Instant::now();
    fan.start_series(&start).context("sending the series start")?;
    send_frames(&mut fan, &cfg, &schedule, None, |_| {}).context("sending the frames")?;
    let per = fan.end_series(SeriesStatus::Complete).context("ending the series")?;
    let secs = t0.elapsed().as_secs_f64();
    let per: Vec<String> = args.to.iter().zip(&per).map(|(e, n)| format!("{e}: {n}")).collect();
    println!(
        "series {}: {} frames of {size}x{size} spread over {} receivers in {secs:.2} s ({})",
        args.series,
        schedule.frames(),
        fan.width(),
        per.join(", ")
    );
    println!("next: beamline stitch <each receiver's file> -o master.h5");
    Ok(ExitCode::SUCCESS)
}

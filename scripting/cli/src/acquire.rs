//! CLI of the acquisition area: `simulate` (a detector), `receive` (ZeroMQ -> NXtomo) and `bench ingest`.

use std::path::PathBuf;
use std::process::{Command as Process, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acquisition::bench::{self, Measurement};
use acquisition::curve::{CurveClient, CurveServer};
use acquisition::protocol::{BloscParams, Compression, Compressor, Degrees, Dtype, Shuffle};
use acquisition::receiver::{Output, ReceiveSummary, Receiver, ReceiverConfig, DEFAULT_ENDPOINT};
use acquisition::replay::{replay_series, NxtomoSource};
use acquisition::sender::SeriesSender;
use acquisition::sim::{simulate_series, Schedule, SeriesOptions, SimConfig};
use acquisition::writer::SeriesSummary;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use reconstruct::preview::{PreviewFeed, PreviewRows};

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulated detector: push a tomography series (darks, flats, projections of a 3-D Shepp-Logan
    /// phantom) over ZeroMQ, or replay an NXtomo file.
    Simulate(SimulateArgs),
    /// Receive series over ZeroMQ and write NXtomo HDF5 files (one series with --output, many with
    /// --output-dir).
    Receive(ReceiveArgs),
    /// Internal: the sender process of `beamline bench ingest`.
    #[command(hide = true)]
    BenchSender(BenchSenderArgs),
}

/// Benchmarks of this area.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Ingest throughput over tcp loopback (2048x2048 and 512x512 uint16, blosc lz4 + byte shuffle) against
    /// this machine's ceilings: (a) ZeroMQ receive + discard, (b) receive + append to a plain file.
    Ingest(IngestArgs),
}

/// Compression choices on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// blosc1 + LZ4.
    Lz4,
    /// blosc1 + LZ4 HC.
    Lz4hc,
    /// blosc1 + BloscLZ.
    Blosclz,
    /// Raw pixels.
    None,
}

/// Shuffle choices on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShuffleArg {
    /// No shuffle.
    None,
    /// Byte shuffle.
    Byte,
    /// Bit shuffle.
    Bit,
}

/// Pixel types on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// 8-bit unsigned.
    Uint8,
    /// 16-bit unsigned.
    Uint16,
    /// 32-bit unsigned.
    Uint32,
    /// 32-bit float.
    Float32,
}

impl From<DtypeArg> for Dtype {
    fn from(d: DtypeArg) -> Dtype {
        match d {
            DtypeArg::Uint8 => Dtype::Uint8,
            DtypeArg::Uint16 => Dtype::Uint16,
            DtypeArg::Uint32 => Dtype::Uint32,
            DtypeArg::Float32 => Dtype::Float32,
        }
    }
}

/// Arguments of `beamline simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Endpoint to connect to (where `beamline receive` binds).
    #[arg(long, default_value = DEFAULT_ENDPOINT, conflicts_with = "bind")]
    pub connect: String,
    /// Bind this endpoint instead of connecting (then run `beamline receive --connect ...`).
    #[arg(long, value_name = "ENDPOINT")]
    pub bind: Option<String>,
    /// Detector rows and columns (square detector); --rows / --cols override.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Detector rows (height).
    #[arg(long)]
    pub rows: Option<u32>,
    /// Detector columns (width).
    #[arg(long)]
    pub cols: Option<u32>,
    /// Number of projections.
    #[arg(long, default_value_t = 180)]
    pub angles: u64,
    /// Angular range in degrees: 180 or 360.
    #[arg(long, default_value_t = 180, value_parser = parse_range)]
    pub range: u32,
    /// Half-acquisition (offset-axis) scan: the rotation axis projects onto detector column COLS, near one
    /// edge (column c has its centre at c), and the phantom fills the circle the far edge sweeps, so only
    /// opposite projections joined see all of it (`beamline recon --offset-axis`). Needs --range 360.
    #[arg(long, value_name = "COLS")]
    pub offset_axis: Option<f64>,
    /// Number of flat fields (sent before the projections).
    #[arg(long, default_value_t = 10)]
    pub flats: u64,
    /// Number of dark fields (sent first).
    #[arg(long, default_value_t = 10)]
    pub darks: u64,
    /// Frames per second; 0 sends as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub fps: f64,
    /// Photon energy in keV, carried in the series start and stored at /entry/instrument/source/energy (for
    /// `beamline recon --phase paganin`).
    #[arg(long, value_name = "KEV")]
    pub energy: Option<f64>,
    /// Sample-detector distance in metres, stored at /entry/instrument/detector/distance.
    #[arg(long, value_name = "M")]
    pub distance: Option<f64>,
    /// Detector pixel size in micrometres, stored at detector/x_pixel_size and y_pixel_size (in m).
    #[arg(long, value_name = "UM")]
    pub pixel_size: Option<f64>,
    /// Pixel type.
    #[arg(long, value_enum, default_value_t = DtypeArg::Uint16)]
    pub dtype: DtypeArg,
    /// Payload compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Lz4)]
    pub compression: CompressionArg,
    /// blosc compression level 0-9.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub clevel: u8,
    /// blosc shuffle filter.
    #[arg(long, value_enum, default_value_t = ShuffleArg::Byte)]
    pub shuffle: ShuffleArg,
    /// Series id (names the file in `receive --output-dir` mode); default `sim-<unix time>`.
    #[arg(long)]
    pub series: Option<String>,
    /// Seed of the noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// CURVE: this sender's secret key file (from `beamline keys new`); needs --curve-server.
    #[arg(long, value_name = "FILE", requires = "curve_server")]
    pub curve_secret: Option<PathBuf>,
    /// CURVE: the receiver's public key file; only that receiver can read the frames.
    #[arg(long, value_name = "PUBFILE", requires = "curve_secret")]
    pub curve_server: Option<PathBuf>,
    /// Wire format: `beamline` (our protocol) or `stream2` (DECTRIS SIMPLON stream v2, as a detector sends
    /// it: bind with `--bind tcp://127.0.0.1:31001` and run `receive --format stream2 --connect ...`).
    #[arg(long, default_value = "beamline", value_parser = ["beamline", "stream2"])]
    pub format: String,
    /// Image encoding with --format stream2: bslz4 (bitshuffle + LZ4, what detectors send), lz4 or none.
    #[arg(long, default_value = "bslz4", value_parser = ["bslz4", "lz4", "none"])]
    pub encoding: String,
    /// Resend the frames of this NXtomo file instead of simulating (keeps its compression unless
    /// --compression is given explicitly; with --format stream2 as images of --encoding).
    #[arg(long, value_name = "FILE.h5")]
    pub replay: Option<PathBuf>,
    /// c-blosc threads used to compress.
    #[arg(long, default_value_t = 1)]
    pub compress_threads: usize,
    /// Listen for the receiver's acknowledgements on this endpoint (where `beamline receive --ack` binds):
    /// every frame stays in the replay buffer until the receiver has it on disk, a restarted receiver gets
    /// what it lacks, and the sender exits only once the receiver closed the file.
    #[arg(long, value_name = "ENDPOINT")]
    pub ack: Option<String>,
    /// Replay buffer for unacknowledged frames, MiB (with --ack); when full, sending waits.
    #[arg(long, default_value_t = 256, requires = "ack")]
    pub replay_buffer_mib: u64,
    /// Resume a series sent in part before (same --series and settings): ask the receiver which frames it
    /// holds and send only the others (needs --ack).
    #[arg(long, requires = "ack")]
    pub resume: bool,
    /// With --ack: give up after this many seconds without a word from the receiver.
    #[arg(long, default_value_t = 60)]
    pub ack_timeout_s: u64,
    /// Without --ack: wait at most this many seconds at exit for ZeroMQ to deliver the queued frames.
    #[arg(long, default_value_t = 60)]
    pub linger_s: u64,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `beamline receive`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("out").required(true).args(["output", "output_dir"])))]
pub struct ReceiveArgs {
    /// Endpoint to bind (loopback by default; give an interface address to listen beyond this machine).
    #[arg(long, default_value = DEFAULT_ENDPOINT, conflicts_with = "connect")]
    pub bind: String,
    /// Connect to a sender that binds, instead of binding.
    #[arg(long, value_name = "ENDPOINT")]
    pub connect: Option<String>,
    /// Write one series to this file (overwritten), then exit.
    #[arg(long, value_name = "FILE.h5")]
    pub output: Option<PathBuf>,
    /// Write every series to DIR/<series>.h5 until Ctrl-C.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Accepted frames that may wait for the writer (bounds memory).
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// At most this many MiB of accepted payloads wait for the writer (bounds memory for large frames).
    #[arg(long, default_value_t = 256)]
    pub queue_mib: u64,
    /// Flush the file at least this often while frames arrive (ms).
    #[arg(long, default_value_t = 500)]
    pub flush_ms: u64,
    /// Decompress every blosc payload to check it (slower; headers are always checked). Catches only what
    /// blosc1 decoding detects (blosc1 has no checksum); the sender's `xxh3_64` payload checksum catches all.
    #[arg(long)]
    pub verify_payload: bool,
    /// Live preview without the demo: reconstruct these detector rows while the frames arrive (N evenly
    /// spaced rows, or a list R1,R2,...) and write them as float32 TIFFs next to the output when each
    /// series ends: F.preview/ for --output F.h5, DIR/<series>.preview/ with --output-dir.
    #[arg(long, value_name = "ROWS")]
    pub preview: Option<PreviewRows>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Publish acknowledgements (which frames are on disk) on this endpoint, for `simulate --ack`.
    #[arg(long, value_name = "ENDPOINT")]
    pub ack: Option<String>,
    /// If the file holds a series a killed (or stopped) receiver never closed, reopen it and go on receiving
    /// that series (its frames on disk are kept and acknowledged). With --output-dir: the one file of DIR
    /// whose series was never closed (several: refused, naming them), then every later series as usual.
    #[arg(long)]
    pub resume: bool,
    /// When the writer's queue (--queue, --queue-mib) is full: `block` waits for it (nothing is lost here,
    /// the sender is slowed; the time blocked is in the closing line, the file and the trace) or `drop`
    /// drops the frame (counted, listed as dropped and missing; receiving goes on).
    #[arg(long, default_value = "block", value_parser = ["block", "drop"])]
    pub on_full: String,
    /// How frames reach the disk: `direct` writes the frame chunks past the page cache (O_DIRECT, 8 MiB at a
    /// time; the file is the same) where the file system takes it, else as `buffered`; `buffered` writes
    /// everything through the page cache, as HDF5's default driver does.
    #[arg(long, default_value = "direct", value_parser = ["direct", "buffered"])]
    pub write_io: String,
    /// With --output-dir: a series start arriving while the open series has had no frame for SECS seconds
    /// closes the open one as `abandoned` and starts the new one (0: never; the new one is then rejected).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub stale_after: f64,
    /// Wire format: `beamline` (our protocol) or `stream2` (DECTRIS SIMPLON stream v2, CBOR; connect to the
    /// detector with `--connect tcp://DETECTOR:31001`).
    #[arg(long, default_value = "beamline", value_parser = ["beamline", "stream2"])]
    pub format: String,
    /// With --format stream2: one of several receivers on one detector stream (the detector deals each message
    /// to one of them). They share the start and end each receives through this folder (the same for all of
    /// them, one per session); each file holds the images dealt to it, `beamline stitch` joins them.
    #[arg(long, value_name = "DIR")]
    pub peers: Option<PathBuf>,
    /// CURVE: this receiver's secret key file (from `beamline keys new`); only senders listed with
    /// --curve-allow can deliver, every message is encrypted, and refused senders are logged and counted.
    #[arg(long, value_name = "FILE", requires = "curve_allow")]
    pub curve_secret: Option<PathBuf>,
    /// CURVE: public key files of the senders admitted (one or more).
    #[arg(long, value_name = "PUBFILE", num_args = 1.., requires = "curve_secret")]
    pub curve_allow: Vec<PathBuf>,
}

/// Arguments of the hidden benchmark sender.
#[derive(Debug, Args)]
pub struct BenchSenderArgs {
    /// Endpoint to connect to.
    #[arg(long)]
    pub connect: String,
    /// Rows.
    #[arg(long)]
    pub rows: usize,
    /// Columns.
    #[arg(long)]
    pub cols: usize,
    /// Frames to send.
    #[arg(long)]
    pub frames: u64,
    /// Distinct pre-compressed frames cycled through.
    #[arg(long, default_value_t = 8)]
    pub pool: usize,
    /// Send frames without the payload checksum.
    #[arg(long)]
    pub no_checksum: bool,
    /// `beamline` or `stream2` (bslz4 images).
    #[arg(long, default_value = "beamline", value_parser = ["beamline", "stream2"])]
    pub format: String,
    /// CURVE: the sender's secret key file.
    #[arg(long, requires = "curve_server")]
    pub curve_secret: Option<PathBuf>,
    /// CURVE: the receiver's public key file.
    #[arg(long, requires = "curve_secret")]
    pub curve_server: Option<PathBuf>,
    /// Acknowledgements from the receiver's endpoint (as `simulate --ack`).
    #[arg(long, value_name = "ENDPOINT")]
    pub ack: Option<String>,
    /// Replay buffer bound with --ack, in MiB.
    #[arg(long, default_value_t = 256)]
    pub replay_buffer_mib: u64,
}

/// Arguments of `beamline bench ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Frames sent per 2048x2048 run.
    #[arg(long, default_value_t = 400)]
    pub large_frames: u64,
    /// Frames sent per 512x512 run.
    #[arg(long, default_value_t = 20_000)]
    pub small_frames: u64,
    /// Folder for the files written during the runs (deleted afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Receiver queue length in frames.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Receiver queue bound in MiB.
    #[arg(long, default_value_t = 256)]
    pub queue_mib: u64,
    /// Runs of each sink (interleaved); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Run only one frame size.
    #[arg(long, value_parser = ["2048", "512"])]
    pub only: Option<String>,
    /// Print one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// Also run the real receiver with acknowledgements (`receive --ack`) and the sender with its replay buffer
    /// (`simulate --ack`) in the same rounds: the cost of restart without loss.
    #[arg(long)]
    pub ack: bool,
    /// Also run the real receiver over CURVE (keys made for the run) in the same rounds: the cost of
    /// encryption and authentication.
    #[arg(long)]
    pub curve: bool,
    /// `stream2`: also run `receive --format stream2` in the same rounds, fed the same frames as DECTRIS
    /// stream v2 bslz4 images (what a detector sends), to compare the two formats.
    #[arg(long, value_parser = ["beamline", "stream2"])]
    pub format: Option<String>,
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Simulate(a) => simulate(a),
            Command::Receive(a) => receive(a),
            Command::BenchSender(a) => {
                if a.format == "stream2" {
                    bench::run_stream2_sender(&a.connect, a.rows, a.cols, a.frames, a.pool)
                } else {
                    let curve = match (&a.curve_secret, &a.curve_server) {
                        (Some(s), Some(p)) => Some(CurveClient::from_files(s, p)?),
                        _ => None,
                    };
                    bench::run_sender(&bench::SenderRun {
                        endpoint: &a.connect,
                        rows: a.rows,
                        cols: a.cols,
                        frames: a.frames,
                        pool: a.pool,
                        checksum: !a.no_checksum,
                        curve: curve.as_ref(),
                        ack: a.ack.as_deref().map(|e| (e, a.replay_buffer_mib << 20)),
                    })
                }
                .context("benchmark sender")?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

impl Bench {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Bench::Ingest(a) => ingest(a),
        }
    }
}

/// `--offset-axis COLS` checked: a 360-degree scan, the axis inside the detector's outer quarters (what
/// `beamline recon --offset-axis` stitches).
fn offset_axis(a: &SimulateArgs, cols: u32) -> anyhow::Result<Option<f64>> {
    let Some(c) = a.offset_axis else { return Ok(None) };
    anyhow::ensure!(a.range == 360, "--offset-axis {c}: a half-acquisition scan turns 360 degrees; add --range 360");
    let last = cols as f64 - 1.0;
    anyhow::ensure!(
        c.is_finite() && (0.0..=last).contains(&c) && (c <= 0.25 * last || c >= 0.75 * last),
        "--offset-axis {c}: give a column near one edge of the {cols}-column detector (0 to {:.1} or {:.1} to \
         {last}); for an axis in the middle leave out --offset-axis",
        0.25 * last,
        0.75 * last
    );
    Ok(Some(c))
}

fn parse_range(s: &str) -> Result<u32, String> {
    match s {
        "180" => Ok(180),
        "360" => Ok(360),
        _ => Err(format!("{s:?}: use 180 or 360")),
    }
}

fn compression_of(c: CompressionArg, clevel: u8, shuffle: ShuffleArg) -> Compression {
    let shuffle = match shuffle {
        ShuffleArg::None => Shuffle::None,
        ShuffleArg::Byte => Shuffle::Byte,
        ShuffleArg::Bit => Shuffle::Bit,
    };
    let compressor = match c {
        CompressionArg::None => return Compression::None,
        CompressionArg::Lz4 => Compressor::Lz4,
        CompressionArg::Lz4hc => Compressor::Lz4hc,
        CompressionArg::Blosclz => Compressor::Blosclz,
    };
    Compression::Blosc1(BloscParams { compressor, clevel, shuffle })
}

fn bar(quiet: bool, len: u64, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    let style =
        ProgressStyle::with_template(&format!("{what} {{bar:40}} {{pos}}/{{len}} frames  {{per_sec}}  eta {{eta}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b
}

fn simulate(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    let curve = match (&a.curve_secret, &a.curve_server) {
        (Some(s), Some(p)) => Some(CurveClient::from_files(s, p)?),
        _ => None,
    };
    if a.format == "stream2" {
        return simulate_stream2(&a, curve.as_ref());
    }
    let (endpoint, mut sender) = match &a.bind {
        Some(e) => (e.clone(), SeriesSender::open_secure(e, true, curve.as_ref())?),
        None => (a.connect.clone(), SeriesSender::open_secure(&a.connect, false, curve.as_ref())?),
    };
    sender.set_compress_threads(a.compress_threads);
    if let Some(ack) = &a.ack {
        sender.enable_acks(ack, a.bind.is_some(), a.replay_buffer_mib.max(1) << 20)?;
        sender.set_resume(a.resume);
        sender.set_ack_timeout(Duration::from_secs(a.ack_timeout_s.max(1)));
    }
    let series = a.series.clone().unwrap_or_else(|| format!("sim-{}", acquisition::protocol::now_timestamp() as u64));
    let compression = compression_of(a.compression, a.clevel, a.shuffle);
    let fps = (a.fps > 0.0).then_some(a.fps);
    let t0 = Instant::now();
    let sent = if let Some(path) = &a.replay {
        let src = NxtomoSource::open(path)?;
        let explicit = std::env::args().any(|x| x == "--compression" || x.starts_with("--compression="));
        let pb = bar(a.quiet, src.frames().len() as u64, "replay");
        let n =
            replay_series(&mut sender, &src, &series, explicit.then_some(compression), fps, |n, _| pb.set_position(n))
                .with_context(|| format!("replaying {}", path.display()))?;
        pb.finish_and_clear();
        n
    } else {
        let rows = a.rows.unwrap_or(a.size);
        let cols = a.cols.unwrap_or(a.size);
        anyhow::ensure!(rows > 0 && cols > 0 && a.angles > 0, "--size/--rows/--cols and --angles must be at least 1");
        let mut cfg = SimConfig::new(rows as usize, cols as usize, a.dtype.into());
        cfg.seed = a.seed;
        cfg.axis = offset_axis(&a, cols)?;
        let schedule = Schedule { darks: a.darks, flats: a.flats, angles: a.angles, range: Degrees(a.range as f64) };
        let physics =
            acquisition::nexus::Physics { energy_kev: a.energy, distance_m: a.distance, pixel_size_um: a.pixel_size };
        let opts = SeriesOptions { series: series.clone(), compression, fps, physics };
        let pb = bar(a.quiet, schedule.frames(), "simulate");
        let n = simulate_series(&mut sender, &cfg, &schedule, &opts, |n| pb.set_position(n))
            .with_context(|| format!("sending to {endpoint}"))?;
        pb.finish_and_clear();
        n
    };
    let secs = t0.elapsed().as_secs_f64();
    let stats = sender.ack_stats();
    if a.ack.is_some() {
        println!(
            "sent series {series}: {sent} frames to {endpoint} in {secs:.2} s ({:.1} frames/s); all {sent} \
             confirmed on disk by the receiver; replay buffer peak {} of {} bytes, {} frames sent again after \
             {} receiver restarts, {} already held (resume), {:.2} s waiting for room; peak RSS {} bytes",
            sent as f64 / secs.max(1e-9),
            stats.peak_buffered,
            stats.buffer_cap,
            stats.resent,
            stats.restarts,
            stats.skipped,
            stats.blocked.as_secs_f64(),
            bench::peak_rss().unwrap_or(0)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let limit = Duration::from_secs(a.linger_s);
    let delivered = sender
        .close(limit, |t| eprintln!("waiting {} s for ZeroMQ to deliver the last frames to {endpoint}", t.as_secs()));
    if !delivered {
        println!(
            "sent series {series}: {sent} frames to {endpoint}, but the last ones (up to {} frames and the series \
             end) were still queued after {} s and are unconfirmed: is the receiver running? (use --ack to know \
             exactly)",
            acquisition::sender::DEFAULT_SNDHWM,
            a.linger_s
        );
        return Ok(ExitCode::from(3));
    }
    println!(
        "sent series {series}: {sent} frames to {endpoint} in {secs:.2} s ({:.1} frames/s), handed to the \
         connection (not confirmed on disk: use --ack); the receiver's closing line says how many it kept",
        sent as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// `simulate --format stream2`: the simulator's series as DECTRIS stream v2.
fn simulate_stream2(a: &SimulateArgs, curve: Option<&CurveClient>) -> anyhow::Result<ExitCode> {
    use acquisition::stream2::{send, Encoding};
    let encoding = match a.encoding.as_str() {
        "lz4" => Encoding::Lz4,
        "none" => Encoding::Raw,
        _ => Encoding::Bslz4,
    };
    let (endpoint, bind) = match &a.bind {
        Some(e) => (e.clone(), true),
        None => (a.connect.clone(), false),
    };
    let mut sender = send::Stream2Sender::open(&endpoint, bind, curve, encoding)?;
    let series = a.series.clone().unwrap_or_else(|| format!("sim-{}", acquisition::protocol::now_timestamp() as u64));
    let fps = (a.fps > 0.0).then_some(a.fps);
    if let Some(path) = &a.replay {
        let src = NxtomoSource::open(path)?;
        let pb = bar(a.quiet, src.frames().len() as u64, "replay");
        let t0 = Instant::now();
        let sent = send::replay_stream2(&mut sender, &src, path, &series, fps, |n| pb.set_position(n))
            .with_context(|| format!("replaying {} as stream v2 on {endpoint}", path.display()))?;
        pb.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "replayed {} as stream v2 series {series} ({}): {sent} images on {endpoint} in {secs:.2} s",
            path.display(),
            encoding.as_str()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows = a.rows.unwrap_or(a.size);
    let cols = a.cols.unwrap_or(a.size);
    anyhow::ensure!(rows > 0 && cols > 0 && a.angles > 0, "--size/--rows/--cols and --angles must be at least 1");
    let mut cfg = SimConfig::new(rows as usize, cols as usize, a.dtype.into());
    cfg.seed = a.seed;
    cfg.axis = offset_axis(a, cols)?;
    let schedule = Schedule { darks: a.darks, flats: a.flats, angles: a.angles, range: Degrees(a.range as f64) };
    let pb = bar(a.quiet, schedule.frames(), "simulate");
    let t0 = Instant::now();
    let sent = send::simulate_stream2(&mut sender, &cfg, &schedule, &series, fps, |n| pb.set_position(n))
        .with_context(|| format!("sending stream v2 on {endpoint}"))?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "sent stream v2 series {series} ({}): {sent} images on {endpoint} in {secs:.2} s ({:.1} images/s)",
        encoding.as_str(),
        sent as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn receive(a: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let output = match (&a.output, &a.output_dir) {
        (Some(f), _) => Output::File(f.clone()),
        (None, Some(d)) => Output::Dir(d.clone()),
        (None, None) => anyhow::bail!("give --output FILE.h5 or --output-dir DIR"),
    };
    let single = matches!(output, Output::File(_));
    let feed = a.preview.clone().map(|rows| Arc::new(PreviewFeed::with_rows(rows, None).writing_next_to(&output)));
    let mut cfg = ReceiverConfig::new(output);
    if let Some(feed) = &feed {
        cfg.observer = Some(feed.clone());
    }
    match &a.connect {
        Some(e) => {
            cfg.endpoint = e.clone();
            cfg.connect = true;
        }
        None => cfg.endpoint = a.bind.clone(),
    }
    cfg.queue_frames = a.queue;
    cfg.queue_bytes = a.queue_mib << 20;
    cfg.flush_interval = Duration::from_millis(a.flush_ms.max(1));
    cfg.verify_payload = a.verify_payload;
    cfg.ack_endpoint = a.ack.clone();
    cfg.resume = a.resume;
    cfg.on_full = a.on_full.parse().map_err(anyhow::Error::msg)?;
    cfg.write_io = a.write_io.parse().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(a.stale_after.is_finite() && a.stale_after >= 0.0, "--stale-after must be 0 or more seconds");
    cfg.stale_after = (a.stale_after > 0.0).then(|| Duration::from_secs_f64(a.stale_after));
    if let Some(secret) = &a.curve_secret {
        cfg.curve = Some(CurveServer::from_files(secret, &a.curve_allow)?);
    }
    if a.format == "stream2" {
        return receive_stream2(cfg, a.peers.as_deref(), a.quiet, single);
    }
    anyhow::ensure!(
        a.peers.is_none(),
        "--peers is for --format stream2; our own protocol's senders deal shares themselves (`beamline spread`)"
    );
    let receiver = Receiver::bind(cfg)?;
    let endpoint = receiver.endpoint();
    let stop = receiver.stop_handle();
    // Ctrl-C, SIGTERM and SIGHUP (ctrlc's `termination` feature) all stop the same way: the first one
    // writes what is queued and closes the file as incomplete, a second one drops the queue and closes now.
    let _ = ctrlc::set_handler(move || {
        if stop.interrupt() {
            eprintln!("stopping now: frames still queued are not written (listed as missing)");
        } else {
            eprintln!("stopping: writing the frames already received (interrupt again to stop at once)");
        }
    });
    if !a.quiet {
        eprintln!("receiving on {endpoint}{}", if single { "" } else { " (Ctrl-C to stop)" });
    }
    let thread = receiver.spawn()?;
    let live = thread.live();
    let pb = bar(a.quiet, 0, "receive");
    while !thread.is_finished() {
        pb.set_length(live.expected.load(Ordering::Relaxed));
        pb.set_position(live.received.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    pb.finish_and_clear();
    let summary = thread.join()?;
    let code = report(&summary);
    let mut preview_failed = false;
    // The preview thread finishes the frames queued before each series end (the writer never waited for it).
    if let Some(f) = &feed {
        f.finish();
    }
    for written in feed.map(|f| f.written()).unwrap_or_default() {
        match written {
            Ok(w) => {
                let rows: Vec<String> = w
                    .files
                    .iter()
                    .filter_map(|f| f.file_stem()?.to_str()?.strip_prefix("slice_")?.parse::<usize>().ok())
                    .map(|r| r.to_string())
                    .collect();
                println!(
                    "preview of series {} -> {}: rows {} from {} of {} projections, {} frames dropped by the preview",
                    w.series,
                    w.dir.display(),
                    rows.join(", "),
                    w.projections,
                    w.expected,
                    w.dropped
                );
            }
            Err(e) => {
                println!("preview not written: {e}");
                preview_failed = true;
            }
        }
    }
    Ok(if preview_failed { ExitCode::FAILURE } else { code })
}

/// `receive --format stream2`: DECTRIS SIMPLON stream v2 (no preview, no progress bar).
fn receive_stream2(
    cfg: ReceiverConfig,
    peers: Option<&std::path::Path>,
    quiet: bool,
    single: bool,
) -> anyhow::Result<ExitCode> {
    let mut receiver = acquisition::stream2::Stream2Receiver::open(cfg)?;
    if let Some(dir) = peers {
        let peers = acquisition::stream2::Peers::new(dir)
            .with_context(|| format!("creating the --peers folder {}", dir.display()))?;
        receiver = receiver.with_peers(peers);
    }
    let endpoint = receiver.endpoint();
    let stop = receiver.stop_handle();
    let _ = ctrlc::set_handler(move || {
        if stop.interrupt() {
            eprintln!("stopping now: images still queued are not written (listed as missing)");
        } else {
            eprintln!("stopping: writing the images already received (interrupt again to stop at once)");
        }
    });
    if !quiet {
        eprintln!("receiving stream v2 from {endpoint}{}", if single { "" } else { " (Ctrl-C to stop)" });
    }
    let summary = receiver.run()?;
    Ok(report(&summary))
}

fn report(summary: &ReceiveSummary) -> ExitCode {
    let mut complete = true;
    for s in &summary.series {
        println!("{}", closing_line(s));
        complete &= s.missing.is_empty() && s.status.is_some();
    }
    if summary.resent_duplicates > 0 {
        println!(
            "frames sent again that were already held: {} (dropped; expected after a restart, not errors)",
            summary.resent_duplicates
        );
    }
    let outside = summary.rejected_outside_series;
    if outside.total() > 0 {
        println!("rejected outside any series: {outside}");
    }
    if summary.curve_refused > 0 {
        println!("CURVE: refused {} handshakes of senders whose key is not listed", summary.curve_refused);
    }
    if summary.series.is_empty() {
        println!("no series received (rejected {}); is the sender pointed at this endpoint?", summary.rejected_total());
        return ExitCode::from(2);
    }
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn closing_line(s: &SeriesSummary) -> String {
    let missing = if s.missing.is_empty() {
        "0".to_string()
    } else {
        let first: Vec<String> = s.missing.iter().take(10).map(|m| m.to_string()).collect();
        format!("{} ({}{})", s.missing.len(), first.join(", "), if s.missing.len() > 10 { ", ..." } else { "" })
    };
    let status = match (s.status, &s.abandoned) {
        (Some(st), _) => st.as_str().to_string(),
        (None, Some(why)) => format!("abandoned ({why})"),
        (None, None) => "incomplete (no series end)".to_string(),
    };
    let mut queue = String::new();
    if !s.dropped.is_empty() {
        queue += &format!(", dropped {} (queue full)", s.dropped.len());
    }
    // Under 10 ms it would print as 0.00 or 0.01 s: noise, not a finding (the exact time is in the file and trace).
    if s.blocked >= Duration::from_millis(10) {
        queue += &format!(", queue full for {:.2} s", s.blocked.as_secs_f64());
    }
    format!(
        "series {} -> {}: expected {}, received {}, rejected {}, missing {}{queue}; status {}; {:.2} s, {:.1} frames/s",
        s.series,
        s.path.display(),
        s.expected,
        s.received,
        s.rejected,
        missing,
        status,
        s.duration.as_secs_f64(),
        s.received as f64 / s.duration.as_secs_f64().max(1e-9)
    )
}

fn ingest(a: IngestArgs) -> anyhow::Result<ExitCode> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("beamline-bench-ingest-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe().context("locating the beamline binary")?;
    let python = std::env::var_os("BEAMLINE_PYTHON").map(PathBuf::from);
    println!("sender: a separate `beamline bench-sender` process replaying pre-compressed frames (blosc lz4, byte shuffle, clevel 5)");
    match &python {
        Some(p) => println!("peer: tests/py/ingest_peer.py (pyzmq + h5py write_direct_chunk) run by {}", p.display()),
        None => println!("peer: not run (set BEAMLINE_PYTHON to a Python with pyzmq, h5py, hdf5plugin, xxhash)"),
    }
    let curve = if a.curve {
        let keys = dir.join(format!("keys-{}", std::process::id()));
        std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
        let (rx_pub, rx_secret) = acquisition::curve::write_keypair(&keys, "bench-receiver")?;
        let (tx_pub, tx_secret) = acquisition::curve::write_keypair(&keys, "bench-sender")?;
        println!("CURVE: the real receiver also runs as a CURVE server admitting one sender key (made for this run)");
        Some(bench::CurveBench {
            server: CurveServer::from_files(&rx_secret, &[tx_pub])?,
            sender_secret: tx_secret,
            server_public: rx_pub,
        })
    } else {
        None
    };
    let stream2 = a.format.as_deref() == Some("stream2");
    if stream2 {
        println!("stream v2: `receive --format stream2` also runs, fed the same frames as bslz4 images");
    }
    let direct = bench::direct_io_works(&dir);
    if !direct {
        println!("O_DIRECT: not taken by {}: the direct-write ceiling is not run", dir.display());
    }
    let buffered = acquisition::direct::bypasses_page_cache(&dir);
    println!(
        "writer: frame chunks {} the page cache in {}{}",
        if buffered { "bypass" } else { "go through" },
        dir.display(),
        if buffered { " (beamline_receive_buffered: the same receiver through it)" } else { "" }
    );
    let sizes = [(2048usize, a.large_frames), (512usize, a.small_frames)];
    let load_before = profiling::clock::load_average();
    let mut json_runs = Vec::new();
    let mut json_ratios = serde_json::Map::new();
    for (rows, frames) in sizes.into_iter().filter(|(r, _)| a.only.as_ref().is_none_or(|o| *o == r.to_string())) {
        let plan = bench::Plan {
            rows,
            frames,
            rounds: a.repeat.max(1),
            dir: dir.clone(),
            queue_frames: a.queue,
            queue_bytes: a.queue_mib << 20,
            python: python.clone(),
            curve: curve.clone(),
            stream2,
            ack: a.ack,
            direct,
            buffered,
        };
        let spawn = |to: bench::SenderTarget<'_>, sink: &bench::Sink| {
            let n = rows.to_string();
            let mut c = Process::new(&exe);
            c.args(["bench-sender", "--connect", to.endpoint, "--rows", &n, "--cols", &n])
                .args(["--frames", &frames.to_string()]);
            if let Some(ack) = to.ack {
                c.args(["--ack", ack]);
            }
            if !sink.checksum() {
                c.arg("--no-checksum");
            }
            match sink {
                bench::Sink::NxtomoCurve(_, k) => {
                    c.arg("--curve-secret").arg(&k.sender_secret).arg("--curve-server").arg(&k.server_public);
                }
                bench::Sink::Stream2(_) => {
                    c.args(["--format", "stream2"]);
                }
                _ => {}
            }
            c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()
        };
        let rounds = bench::run_rounds(&plan, spawn, |_| {
            if !a.json {
                eprint!(".");
            }
        })
        .with_context(|| format!("{rows}x{rows}"))?;
        eprintln!();
        for sink in plan.sinks() {
            if let Some(st) = bench::stats(&rounds, sink.name()) {
                print_measurement(rows, &st.median, (st.min_fps, st.max_fps));
                json_runs.push(serde_json::json!({
                    "frame": format!("{rows}x{rows}"), "sink": st.median.sink, "frames": st.median.frames,
                    "seconds": st.median.seconds, "frames_per_s_min": st.min_fps, "frames_per_s_max": st.max_fps,
                    "spread": st.spread(), "frames_per_s": st.median.fps(),
                    "gb_per_s_compressed": st.median.gbps_compressed(),
                    "gb_per_s_uncompressed": st.median.gbps_uncompressed(), "peak_rss_bytes": st.median.peak_rss_bytes,
                }));
            }
        }
        for (name, x, y, goal) in bench::RATIOS {
            let r = bench::ratios(&rounds, x, y);
            if r.is_empty() {
                continue;
            }
            let verdict = if goal > 0.0 {
                format!(" goal >= {goal} in every round: {}", if r[0] >= goal { "met" } else { "NOT met" })
            } else {
                String::new()
            };
            let list: Vec<String> = r.iter().map(|x| format!("{x:.2}")).collect();
            println!("{rows}x{rows} {name}: median {:.2}x, rounds [{}]{verdict}", r[r.len() / 2], list.join(" "));
            json_ratios.insert(format!("{rows}x{rows} {name}"), serde_json::json!(r));
        }
        if let (Some(ours), Some(peer)) =
            (bench::stats(&rounds, "beamline_receive"), bench::stats(&rounds, "python_h5py"))
        {
            println!(
                "{rows}x{rows} round-to-round spread: beamline {:.0}%, python {:.0}% (goal: beamline no wider)",
                100.0 * ours.spread(),
                100.0 * peer.spread()
            );
        }
    }
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "median of {} interleaved rounds each; load average {} before, {} after (2 cores)",
        a.repeat.max(1),
        load_before.map_or("n/a".into(), |l| format!("{l:.1}")),
        profiling::clock::load_average().map_or("n/a".into(), |l| format!("{l:.1}"))
    );
    if a.json {
        let out = serde_json::json!({
            "bench": "ingest", "sender": "separate process", "compression": "blosc1 lz4 byte-shuffle clevel 5",
            "repeats": a.repeat, "statistic": "median", "loadavg_before": load_before, "loadavg_after": profiling::clock::load_average(),
            "runs": json_runs, "ratios_per_round": json_ratios,
        });
        println!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_measurement(rows: usize, m: &Measurement, spread: (f64, f64)) {
    let rss = m.peak_rss_bytes.map_or("n/a".to_string(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
    println!(
        "{rows}x{rows} {:<28} {:>6} frames {:>7.2} s {:>9.1} frames/s ({:.0}-{:.0}) {:>6.2} GB/s compressed {:>6.2} GB/s uncompressed  peak RSS {rss}",
        m.sink,
        m.frames,
        m.seconds,
        m.fps(),
        spread.0,
        spread.1,
        m.gbps_compressed(),
        m.gbps_uncompressed()
    );
}

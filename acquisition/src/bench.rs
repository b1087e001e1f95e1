//! Ingest benchmark parts: a sender that replays a pool of pre-compressed noisy frames as fast as ZeroMQ
//! takes them, and three receiving sinks measured the same way — (a) receive and discard, (b) receive and
//! append the payloads to a plain file (the same receive thread + bounded queue + writer thread shape as the
//! real receiver), and (c) the real receiver writing NXtomo.
//!
//! Both (b) and (c) bound their queue by frames and by bytes alike.
//!
//! Each sink is timed from the moment the series start arrives to the moment its file is closed, so the
//! sender's set-up (making the frame pool) is never counted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::blosc::Codec;
use crate::budget::ByteBudget;
use crate::protocol::{
    decode_series_start, now_timestamp, BloscParams, Compression, Degrees, Dtype, FrameHeader, FrameIndex, ImageKey,
    Kind, SeriesStart, SeriesStatus, Shape,
};
use crate::receiver::{Output, Receiver, ReceiverConfig};
use crate::sender::{SendError, SeriesSender};
use crate::sim::{FrameGenerator, SimConfig};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// ZeroMQ failed.
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zmq::Error),
    /// Writing the plain file failed.
    #[error("plain-file sink {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The real receiver failed.
    #[error(transparent)]
    Receive(#[from] crate::receiver::ReceiveError),
    /// The sender process failed or the run lost frames.
    #[error("{0}")]
    Run(String),
}

/// `n` noisy exposures (independent noise, one projection angle) of a `rows x cols` uint16 detector, blosc
/// lz4 + byte shuffle, level 5.
pub fn frame_pool(rows: usize, cols: usize, n: usize) -> Result<Vec<Vec<u8>>, SendError> {
    let mut gen = FrameGenerator::new(&SimConfig::new(rows, cols, Dtype::Uint16));
    let mut codec = Codec::new(BloscParams::default(), 2);
    let mut raw = Vec::new();
    let mut pool = Vec::with_capacity(n);
    for _ in 0..n {
        gen.frame_into(ImageKey::Projection, Degrees(30.0), &mut raw);
        pool.push(codec.compress(&raw)?.to_vec());
    }
    Ok(pool)
}

/// The benchmark sender: connects to `endpoint`, sends `frames` frames cycling through a pool of
/// `pool_size` pre-compressed frames, and ends the series.
pub fn run_sender(endpoint: &str, rows: usize, cols: usize, frames: u64, pool_size: usize) -> Result<(), SendError> {
    let pool = frame_pool(rows, cols, pool_size.max(1))?;
    let mut s = SeriesSender::connect(endpoint)?;
    s.set_linger(-1)?;
    let start = SeriesStart::new(
        "bench",
        Shape([rows as u32, cols as u32]),
        Dtype::Uint16,
        Compression::Blosc1(BloscParams::default()),
        frames,
    );
    s.start_series(&start)?;
    for i in 0..frames {
        let h = FrameHeader {
            index: FrameIndex(i),
            image_key: ImageKey::Projection,
            angle: Degrees(i as f64 * 180.0 / frames as f64),
            timestamp: now_timestamp(),
        };
        s.send_encoded(&h, &pool[i as usize % pool.len()])?;
    }
    s.end_series(SeriesStatus::Complete, None)?;
    Ok(())
}

/// Where received frames go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// (a) Receive and discard.
    Discard,
    /// (b) Receive and append the payload bytes to this plain file.
    Append(PathBuf),
    /// (c) The real receiver writing this NXtomo file.
    Nxtomo(PathBuf),
}

impl Sink {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Discard => "zmq_discard",
            Sink::Append(_) => "zmq_append_file",
            Sink::Nxtomo(_) => "beamline_receive",
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Which sink.
    pub sink: &'static str,
    /// Frames received.
    pub frames: u64,
    /// Seconds from series start to file closed.
    pub seconds: f64,
    /// Payload bytes received (compressed).
    pub compressed_bytes: u64,
    /// Bytes those frames hold uncompressed.
    pub uncompressed_bytes: u64,
    /// Peak resident memory of this process during the run, if the kernel lets us reset and read it.
    pub peak_rss_bytes: Option<u64>,
}

impl Measurement {
    /// Frames per second.
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }
    /// Compressed GB/s (10^9 bytes).
    pub fn gbps_compressed(&self) -> f64 {
        self.compressed_bytes as f64 / self.seconds.max(1e-9) / 1e9
    }
    /// Uncompressed GB/s (10^9 bytes).
    pub fn gbps_uncompressed(&self) -> f64 {
        self.uncompressed_bytes as f64 / self.seconds.max(1e-9) / 1e9
    }
}

/// Returns freed heap memory to the system (so earlier runs do not count), then resets the kernel's peak-RSS
/// mark of this process; false when not permitted.
pub fn reset_peak_rss() -> bool {
    // SAFETY: malloc_trim only releases free memory held by glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// Peak resident memory (VmHWM) of this process in bytes.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Measures one sink: binds a loopback endpoint, starts the sender with `spawn_sender(endpoint)`, receives
/// one series, waits for the sender to exit.
pub fn measure(
    sink: &Sink,
    queue_frames: usize,
    queue_bytes: u64,
    spawn_sender: impl FnOnce(&str) -> std::io::Result<Child>,
) -> Result<Measurement, BenchError> {
    let rss_ok = reset_peak_rss();
    let run = |endpoint: &str| spawn_sender(endpoint).map_err(|e| BenchError::Run(format!("start the sender: {e}")));
    let (frames, seconds, compressed, frame_bytes, child) = match sink {
        Sink::Nxtomo(path) => {
            let mut cfg = ReceiverConfig::new(Output::File(path.clone()));
            cfg.endpoint = "tcp://127.0.0.1:*".into();
            cfg.queue_frames = queue_frames;
            cfg.queue_bytes = queue_bytes;
            let rx = Receiver::bind(cfg)?;
            let child = run(&rx.endpoint())?;
            let summary = rx.run()?;
            let s = summary.series.first().ok_or_else(|| BenchError::Run("no series arrived".into()))?;
            let frame_bytes = file_frame_bytes(path)?;
            (s.received, s.duration.as_secs_f64(), s.bytes_written, frame_bytes, child)
        }
        _ => {
            let ctx = zmq::Context::new();
            let socket = ctx.socket(zmq::PULL)?;
            socket.set_rcvhwm(16)?;
            socket.set_rcvtimeo(1000)?;
            socket.bind("tcp://127.0.0.1:*")?;
            let endpoint = socket.get_last_endpoint()?.unwrap_or_default();
            let child = run(&endpoint)?;
            let (f, secs, bytes, fb) = ceiling(&socket, sink, queue_frames, queue_bytes)?;
            (f, secs, bytes, fb, child)
        }
    };
    let out = child.wait_with_output().map_err(|e| BenchError::Run(format!("wait for the sender: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(BenchError::Run(format!("the sender process failed ({}): {}", out.status, err.trim())));
    }
    Ok(Measurement {
        sink: sink.name(),
        frames,
        seconds,
        compressed_bytes: compressed,
        uncompressed_bytes: frames * frame_bytes as u64,
        peak_rss_bytes: if rss_ok { peak_rss() } else { None },
    })
}

fn file_frame_bytes(path: &Path) -> Result<usize, BenchError> {
    let f = hdf5::File::open(path).map_err(|e| BenchError::Run(format!("reopen {}: {e}", path.display())))?;
    let ds = f.dataset(crate::nexus::path::DATA).map_err(|e| BenchError::Run(e.to_string()))?;
    let sh = ds.shape();
    Ok(sh.get(1).copied().unwrap_or(0) * sh.get(2).copied().unwrap_or(0) * ds.dtype().map(|t| t.size()).unwrap_or(0))
}

/// Receives one series on `socket` into a ceiling sink; returns (frames, seconds, payload bytes, frame bytes).
fn ceiling(
    socket: &zmq::Socket,
    sink: &Sink,
    queue_frames: usize,
    queue_bytes: u64,
) -> Result<(u64, f64, u64, usize), BenchError> {
    let mut p0 = zmq::Message::new();
    let mut p1 = zmq::Message::new();
    let mut payload = zmq::Message::new();
    let (tx, rx) = crossbeam_channel::bounded::<zmq::Message>(queue_frames.max(1));
    let budget = std::sync::Arc::new(ByteBudget::new(queue_bytes));
    let appender = match sink {
        Sink::Append(path) => {
            let path = path.clone();
            let budget = budget.clone();
            let file = File::create(&path).map_err(|source| BenchError::Io { path: path.clone(), cause: source })?;
            Some(std::thread::Builder::new().name("append".into()).spawn(move || {
                // Positioned writes, the same I/O pattern as HDF5's sec2 driver (pwrite at the end of file).
                let mut offset = 0u64;
                for m in rx {
                    let r = std::os::unix::fs::FileExt::write_all_at(&file, &m, offset);
                    offset += m.len() as u64;
                    budget.release(m.len() as u64);
                    r.map_err(|source| BenchError::Io { path: path.clone(), cause: source })?;
                }
                Ok::<(), BenchError>(())
            }))
        }
        _ => {
            drop(rx);
            None
        }
    }
    .transpose()
    .map_err(|e| BenchError::Run(format!("start the append thread: {e}")))?;
    let (mut frames, mut bytes, mut frame_bytes) = (0u64, 0u64, 0usize);
    let mut t0: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match socket.recv(&mut p0, 0) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) if Instant::now() < deadline => continue,
            Err(e) => return Err(e.into()),
        }
        let mut parts = 1;
        if p0.get_more() {
            socket.recv(&mut p1, 0)?;
            parts = 2;
            if p1.get_more() {
                socket.recv(&mut payload, 0)?;
                parts = 3;
            }
        }
        match (Kind::parse(&p0), parts) {
            (Some(Kind::SeriesStart), 2) => {
                t0 = Some(Instant::now());
                frame_bytes = decode_series_start(&p1).map(|s| s.frame_bytes()).unwrap_or(0);
            }
            (Some(Kind::Frame), 3) => {
                frames += 1;
                bytes += payload.len() as u64;
                if appender.is_some() {
                    budget.acquire(payload.len() as u64, || false);
                    let m = std::mem::replace(&mut payload, zmq::Message::new());
                    tx.send(m).map_err(|_| BenchError::Run("append thread stopped".into()))?;
                }
            }
            (Some(Kind::SeriesEnd), 2) => break,
            _ => {}
        }
    }
    drop(tx);
    if let Some(h) = appender {
        h.join().map_err(|_| BenchError::Run("append thread panicked".into()))??;
    }
    let secs = t0.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok((frames, secs, bytes, frame_bytes))
}

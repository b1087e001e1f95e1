//! Ingest benchmark parts: a sender that replays a pool of pre-compressed noisy frames as fast as ZeroMQ
//! takes them, and three receiving sinks measured the same way — (a) receive and discard, (b) receive and
//! append the payloads to a plain file (the same receive thread + bounded queue + writer thread shape as the
//! real receiver), and (c) the real receiver writing NXtomo.
//!
//! Both (b) and (c) bound their queue by frames and by bytes alike. (c) runs twice, with the sender adding the
//! `xxh3_64` payload checksum (the default of every beamline sender; the receiver verifies it) and without.
//! When a Python is given, (d) a plain Python receiver of the protocol (`tests/py/ingest_peer.py`: pyzmq +
//! h5py `write_direct_chunk`) runs as a peer in the same rounds, fed by the same sender.
//! [`run_rounds`] interleaves all sinks round by round, so load changes on a shared machine hit all of them.
//!
//! Each sink is timed from the moment the series start arrives to the moment its file is closed, so the
//! sender's set-up (making the frame pool) is never counted.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::blosc::Codec;
use crate::budget::ByteBudget;
pub use crate::direct::direct_io_works;
use crate::direct::{open_direct, AlignedBuf};
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

/// What [`run_sender`] sends, and how.
#[derive(Debug, Clone, Copy)]
pub struct SenderRun<'a> {
    /// Where to connect.
    pub endpoint: &'a str,
    /// Frame rows.
    pub rows: usize,
    /// Frame columns.
    pub cols: usize,
    /// Frames of the series.
    pub frames: u64,
    /// Distinct pre-compressed frames cycled through.
    pub pool: usize,
    /// Add the `xxh3_64` payload checksum.
    pub checksum: bool,
    /// Connect as this CURVE client.
    pub curve: Option<&'a crate::curve::CurveClient>,
    /// Use acknowledgements from this endpoint, with a replay buffer of this many bytes.
    pub ack: Option<(&'a str, u64)>,
}

/// The benchmark sender: connects to `r.endpoint`, sends `r.frames` frames cycling through a pool of
/// `r.pool` pre-compressed frames (with the `xxh3_64` payload checksum when `r.checksum`), and ends the
/// series; a CURVE client with `r.curve`; with `r.ack`, keeps every frame until the receiver has it on disk
/// and returns only when the receiver closed the series.
pub fn run_sender(r: &SenderRun<'_>) -> Result<(), SendError> {
    let SenderRun { endpoint, rows, cols, frames, pool: pool_size, checksum, curve, ack } = *r;
    // Each pool frame's checksum is computed once, as a detector-side sender computes it right after
    // compressing: the sender's share of the 2 cores is then the same with and without checksums.
    let pool: Vec<(Vec<u8>, u64)> = frame_pool(rows, cols, pool_size.max(1))?
        .into_iter()
        .map(|p| {
            let sum = crate::protocol::payload_checksum(&p);
            (p, sum)
        })
        .collect();
    // libzmq copies each frame into a message it mallocs: reuse those buffers (the receivers do the same).
    crate::frame_memory::keep_frame_buffers(256 << 20);
    let mut s = SeriesSender::open_secure(endpoint, false, curve)?;
    s.set_linger(-1)?;
    s.set_checksum(checksum);
    if let Some((ack_endpoint, buffer)) = ack {
        s.enable_acks(ack_endpoint, false, buffer)?;
    }
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
        let (payload, sum) = &pool[i as usize % pool.len()];
        s.send_encoded_summed(&h, payload, *sum)?;
    }
    s.end_series(SeriesStatus::Complete, None)?;
    Ok(())
}

/// The stream v2 benchmark sender: the same noisy frames as [`run_sender`], each pre-encoded as a `bslz4`
/// chunk (what a detector sends), as DECTRIS stream v2 images to `endpoint`.
pub fn run_stream2_sender(
    endpoint: &str,
    rows: usize,
    cols: usize,
    frames: u64,
    pool_size: usize,
) -> Result<(), SendError> {
    use crate::stream2::send::{bslz4, StartInfo, Stream2Sender};
    let mut gen = FrameGenerator::new(&SimConfig::new(rows, cols, Dtype::Uint16));
    let (mut raw, mut tmp) = (Vec::new(), Vec::new());
    let mut pool = Vec::new();
    for _ in 0..pool_size.max(1) {
        gen.frame_into(ImageKey::Projection, Degrees(30.0), &mut raw);
        let mut chunk = Vec::new();
        bslz4(&raw, 2, &mut chunk, &mut tmp)?;
        pool.push(chunk);
    }
    let mut s = Stream2Sender::open(endpoint, false, None, crate::stream2::Encoding::Bslz4)?;
    s.set_linger(-1)?;
    let start = StartInfo {
        series_id: 1,
        series_unique_id: "bench".into(),
        shape: [rows as u32, cols as u32],
        dtype: Dtype::Uint16,
        images: frames,
        extra: Vec::new(),
    };
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
    s.end_series()?;
    Ok(())
}

/// CURVE keys of a benchmark run: the receiver's settings and the files the sender process reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurveBench {
    /// The receiver's key pair and the admitted sender.
    pub server: crate::curve::CurveServer,
    /// The sender's secret key file.
    pub sender_secret: PathBuf,
    /// The receiver's public key file.
    pub server_public: PathBuf,
}

/// Where received frames go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// (a) Receive and discard.
    Discard,
    /// (b) Receive and append the payload bytes to this plain file.
    Append(PathBuf),
    /// (b') As (b), but written with `O_DIRECT` (each payload copied into a 4 KiB-aligned buffer and padded
    /// to 4 KiB): what a writer that bypasses the page cache could reach on this disk. Runs only where the
    /// file system takes `O_DIRECT`.
    AppendDirect(PathBuf),
    /// (c) The real receiver writing this NXtomo file (the sender adds payload checksums).
    Nxtomo(PathBuf),
    /// (c) without payload checksums from the sender.
    NxtomoNoChecksum(PathBuf),
    /// (c) writing through the page cache (`receive --write-io buffered`, HDF5's `sec2` path) instead of past
    /// it: what [`crate::direct`] changes. Runs only where the writer bypasses the page cache.
    NxtomoBuffered(PathBuf),
    /// (c) with acknowledgements (`receive --ack`, `simulate --ack`): the receiver publishes what is on disk,
    /// the sender keeps every frame in its replay buffer until it is acknowledged (checksums on).
    NxtomoAck(PathBuf),
    /// (c) over CURVE (encrypted and authenticated; the sender adds payload checksums).
    NxtomoCurve(PathBuf, Box<CurveBench>),
    /// (e) `receive --format stream2`: the same frames as DECTRIS stream v2 `bslz4` images.
    Stream2(PathBuf),
    /// (d) The Python peer receiver (`tests/py/ingest_peer.py`) run by this Python, writing this file.
    Python {
        /// The Python interpreter (with pyzmq, h5py, hdf5plugin, xxhash).
        python: PathBuf,
        /// The file it writes.
        file: PathBuf,
    },
}

/// The Python peer receiver, run with `python -c`.
pub const PYTHON_PEER: &str = include_str!("../../tests/py/ingest_peer.py");

impl Sink {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Discard => "zmq_discard",
            Sink::Append(_) => "zmq_append_file",
            Sink::AppendDirect(_) => "zmq_append_direct",
            Sink::Nxtomo(_) => "beamline_receive",
            Sink::NxtomoNoChecksum(_) => "beamline_receive_no_checksum",
            Sink::NxtomoBuffered(_) => "beamline_receive_buffered",
            Sink::NxtomoCurve(..) => "beamline_receive_curve",
            Sink::NxtomoAck(_) => "beamline_receive_ack",
            Sink::Stream2(_) => "beamline_receive_stream2",
            Sink::Python { .. } => "python_h5py",
        }
    }

    /// Whether the sender adds payload checksums for this sink.
    pub fn checksum(&self) -> bool {
        !matches!(self, Sink::NxtomoNoChecksum(_))
    }
}

/// Where a sender process sends: the receiver's endpoint, and its acknowledgement endpoint for
/// [`Sink::NxtomoAck`].
#[derive(Debug, Clone, Copy)]
pub struct SenderTarget<'a> {
    /// The receiver's data endpoint.
    pub endpoint: &'a str,
    /// The receiver's acknowledgement endpoint, when it publishes one.
    pub ack: Option<&'a str>,
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
    /// Peak resident memory of this process during the run, if the kernel lets us reset and read it (`None`
    /// for the Python peer, which runs in its own process).
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

/// Measures one sink: binds a loopback endpoint, starts the sender with `spawn_sender(endpoint, sink)` (which
/// must send what the sink expects: checksums or not, CURVE, stream v2), receives one series, waits for the
/// sender to exit.
pub fn measure(
    sink: &Sink,
    queue_frames: usize,
    queue_bytes: u64,
    spawn_sender: impl FnOnce(SenderTarget<'_>, &Sink) -> std::io::Result<Child>,
) -> Result<Measurement, BenchError> {
    // Every sink in this process runs with the allocator settings the real receiver sets for itself.
    crate::frame_memory::keep_frame_buffers(queue_bytes);
    let rss_ok = reset_peak_rss();
    let run = |endpoint: &str, ack: Option<&str>| {
        spawn_sender(SenderTarget { endpoint, ack }, sink)
            .map_err(|e| BenchError::Run(format!("start the sender: {e}")))
    };
    let (frames, seconds, compressed, frame_bytes, child) = match sink {
        Sink::Python { python, file } => {
            let (frames, seconds, bytes, child) = python_peer(python, file, queue_bytes, |e| run(e, None))?;
            let frame_bytes = file_frame_bytes(file)?;
            (frames, seconds, bytes, frame_bytes, child)
        }
        Sink::Stream2(path) => {
            let mut cfg = ReceiverConfig::new(Output::File(path.clone()));
            cfg.endpoint = "tcp://127.0.0.1:*".into();
            cfg.queue_frames = queue_frames;
            cfg.queue_bytes = queue_bytes;
            let rx = crate::stream2::Stream2Receiver::open(cfg)?;
            let child = run(&rx.endpoint(), None)?;
            let summary = rx.run()?;
            let s = summary.series.first().ok_or_else(|| BenchError::Run("no series arrived".into()))?;
            let frame_bytes = file_frame_bytes(path)?;
            (s.received, s.duration.as_secs_f64(), s.bytes_written, frame_bytes, child)
        }
        Sink::Nxtomo(path)
        | Sink::NxtomoNoChecksum(path)
        | Sink::NxtomoBuffered(path)
        | Sink::NxtomoCurve(path, _)
        | Sink::NxtomoAck(path) => {
            let mut cfg = ReceiverConfig::new(Output::File(path.clone()));
            if let Sink::NxtomoBuffered(_) = sink {
                cfg.write_io = crate::direct::WriteIo::Buffered;
            }
            cfg.endpoint = "tcp://127.0.0.1:*".into();
            cfg.queue_frames = queue_frames;
            cfg.queue_bytes = queue_bytes;
            if let Sink::NxtomoCurve(_, c) = sink {
                cfg.curve = Some(c.server.clone());
            }
            if let Sink::NxtomoAck(_) = sink {
                cfg.ack_endpoint = Some("tcp://127.0.0.1:*".into());
            }
            let rx = Receiver::bind(cfg)?;
            let ack = rx.ack_endpoint();
            let child = run(&rx.endpoint(), ack.as_deref())?;
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
            let child = run(&endpoint, None)?;
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
        // The Python peer's memory is another process's: not measured here.
        peak_rss_bytes: if rss_ok && !matches!(sink, Sink::Python { .. }) { peak_rss() } else { None },
    })
}

/// Runs the Python peer: it binds and prints its endpoint, the sender is started on it, the peer prints
/// `{"frames", "seconds", "bytes"}` when its file is closed. Returns those and the sender.
fn python_peer(
    python: &Path,
    file: &Path,
    queue_bytes: u64,
    run: impl FnOnce(&str) -> Result<Child, BenchError>,
) -> Result<(u64, f64, u64, Child), BenchError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| BenchError::Run(format!("Python peer: {what}: {e}"));
    let mut peer = Command::new(python)
        // The allocator settings our receiver runs with (`frame_memory`), so neither side pays page faults
        // the other does not.
        .env(crate::frame_memory::GLIBC_TUNABLES_VAR, crate::frame_memory::glibc_tunables(queue_bytes))
        .arg("-c")
        .arg(PYTHON_PEER)
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failed(&format!("start {}", python.display()), &e))?;
    let mut out = BufReader::new(peer.stdout.take().ok_or_else(|| failed("stdout", &"not captured"))?);
    let mut endpoint = String::new();
    out.read_line(&mut endpoint).map_err(|e| failed("read its endpoint", &e))?;
    let endpoint = endpoint.trim();
    if !endpoint.starts_with("tcp://") {
        let _ = peer.kill();
        let _ = peer.wait();
        return Err(failed("no endpoint printed", &"is pyzmq, h5py, hdf5plugin and xxhash installed there?"));
    }
    let sender = match run(endpoint) {
        Ok(c) => c,
        Err(e) => {
            let _ = peer.kill();
            let _ = peer.wait();
            return Err(e);
        }
    };
    let mut rest = String::new();
    out.read_to_string(&mut rest).map_err(|e| failed("read its result", &e))?;
    let status = peer.wait().map_err(|e| failed("wait", &e))?;
    if !status.success() {
        return Err(failed("exit status", &status));
    }
    let last = rest.lines().last().unwrap_or("");
    let j: serde_json::Value = serde_json::from_str(last).map_err(|e| failed(&format!("result {last:?}"), &e))?;
    let num = |k: &str| j[k].as_f64().ok_or_else(|| failed("result", &format!("no {k} in {last}")));
    Ok((num("frames")? as u64, num("seconds")?, num("bytes")? as u64, sender))
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
        Sink::Append(path) | Sink::AppendDirect(path) => {
            let direct = matches!(sink, Sink::AppendDirect(_));
            let path = path.clone();
            let budget = budget.clone();
            let file = if direct { open_direct(&path) } else { File::create(&path) }
                .map_err(|source| BenchError::Io { path: path.clone(), cause: source })?;
            Some(std::thread::Builder::new().name("append".into()).spawn(move || {
                // Positioned writes, the same I/O pattern as HDF5's sec2 driver (pwrite at the end of file);
                // O_DIRECT writes go through an aligned, zero-padded copy.
                let mut aligned = AlignedBuf::default();
                let mut offset = 0u64;
                for m in rx {
                    let block: &[u8] = if direct { aligned.fill(&m) } else { &m };
                    let r = std::os::unix::fs::FileExt::write_all_at(&file, block, offset);
                    offset += block.len() as u64;
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

/// One size of `beamline bench ingest`: every sink, `rounds` interleaved rounds.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Frame edge (square frames of uint16).
    pub rows: usize,
    /// Frames per run.
    pub frames: u64,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Folder for the files written (each removed after its run).
    pub dir: PathBuf,
    /// Receiver queue bound in frames.
    pub queue_frames: usize,
    /// Receiver queue bound in bytes.
    pub queue_bytes: u64,
    /// Python for the peer receiver (`None`: the peer is not run).
    pub python: Option<PathBuf>,
    /// Also run the real receiver over CURVE with these keys.
    pub curve: Option<CurveBench>,
    /// Also run `receive --format stream2` fed the same frames as stream v2 bslz4 images.
    pub stream2: bool,
    /// Also run the real receiver with acknowledgements and the sender with its replay buffer.
    pub ack: bool,
    /// Also run the `O_DIRECT` plain-file ceiling ([`Sink::AppendDirect`]; see [`direct_io_works`]).
    pub direct: bool,
    /// Also run the real receiver writing through the page cache ([`Sink::NxtomoBuffered`]; see
    /// [`crate::direct::bypasses_page_cache`]).
    pub buffered: bool,
}

impl Plan {
    /// The sinks of one round, in the order they run.
    pub fn sinks(&self) -> Vec<Sink> {
        let mut v = vec![Sink::Discard, Sink::Append(self.dir.join("ceiling.bin"))];
        if self.direct {
            v.push(Sink::AppendDirect(self.dir.join("ceiling.bin")));
        }
        v.extend([Sink::Nxtomo(self.dir.join("ingest.h5")), Sink::NxtomoNoChecksum(self.dir.join("ingest.h5"))]);
        if self.buffered {
            v.push(Sink::NxtomoBuffered(self.dir.join("ingest.h5")));
        }
        if let Some(c) = &self.curve {
            v.push(Sink::NxtomoCurve(self.dir.join("ingest.h5"), Box::new(c.clone())));
        }
        if self.stream2 {
            v.push(Sink::Stream2(self.dir.join("ingest.h5")));
        }
        if self.ack {
            v.push(Sink::NxtomoAck(self.dir.join("ingest.h5")));
        }
        if let Some(python) = &self.python {
            v.push(Sink::Python { python: python.clone(), file: self.dir.join("peer.h5") });
        }
        v
    }
}

/// Runs `plan.rounds` rounds of every sink; `spawn_sender(endpoint, sink)` starts one sender process;
/// `progress` is called after each run. Every run must receive all frames. Returns the runs, round by round.
pub fn run_rounds(
    plan: &Plan,
    mut spawn_sender: impl FnMut(SenderTarget<'_>, &Sink) -> std::io::Result<Child>,
    mut progress: impl FnMut(&Measurement),
) -> Result<Vec<Vec<Measurement>>, BenchError> {
    let mut rounds = Vec::new();
    let sinks = plan.sinks();
    for r in 0..plan.rounds.max(1) {
        let mut round = Vec::new();
        // Each round starts one sink later, so no sink always runs right after the same other one (the page
        // cache and the disk's writeback carry over from one run to the next).
        for k in 0..sinks.len() {
            let sink = &sinks[(r + k) % sinks.len()];
            settle();
            let m = measure(sink, plan.queue_frames, plan.queue_bytes, &mut spawn_sender)?;
            for f in ["ceiling.bin", "ingest.h5", "peer.h5"] {
                let _ = std::fs::remove_file(plan.dir.join(f));
            }
            if m.frames != plan.frames {
                return Err(BenchError::Run(format!(
                    "{}x{} {}: received {} of {} frames",
                    plan.rows, plan.rows, m.sink, m.frames, plan.frames
                )));
            }
            progress(&m);
            round.push(m);
        }
        rounds.push(round);
    }
    Ok(rounds)
}

/// Before each run: the previous run's files are gone and what the disk still had to write (dirty pages,
/// the journal, discards of the deleted files) is written now, so every run starts from the same state
/// instead of paying for the one before it.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Median and range of one sink's frames/s over the rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkStats {
    /// The run with the median frames/s.
    pub median: Measurement,
    /// Slowest round, frames/s.
    pub min_fps: f64,
    /// Fastest round, frames/s.
    pub max_fps: f64,
}

impl SinkStats {
    /// Round-to-round spread: (fastest - slowest) / median, as a fraction.
    pub fn spread(&self) -> f64 {
        (self.max_fps - self.min_fps) / self.median.fps().max(1e-9)
    }
}

/// The statistics of `sink` over `rounds` (`None` when it did not run).
pub fn stats(rounds: &[Vec<Measurement>], sink: &str) -> Option<SinkStats> {
    let mut mine: Vec<Measurement> = rounds.iter().flatten().filter(|m| m.sink == sink).cloned().collect();
    if mine.is_empty() {
        return None;
    }
    mine.sort_by(|x, y| x.fps().total_cmp(&y.fps()));
    Some(SinkStats {
        median: mine[mine.len() / 2].clone(),
        min_fps: mine[0].fps(),
        max_fps: mine[mine.len() - 1].fps(),
    })
}

/// frames/s of sink `a` over sink `b`, one ratio per round (same round: the same load), sorted.
pub fn ratios(rounds: &[Vec<Measurement>], a: &str, b: &str) -> Vec<f64> {
    let mut v: Vec<f64> = rounds
        .iter()
        .filter_map(|r| {
            let fps = |s: &str| r.iter().find(|m| m.sink == s).map(|m| m.fps());
            Some(fps(a)? / fps(b)?.max(1e-9))
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The ratios the issue sets goals for: (name, sink a, sink b, goal or 0).
pub const RATIOS: [(&str, &str, &str, f64); 9] = [
    ("writes past / through the page cache", "beamline_receive", "beamline_receive_buffered", 0.0),
    ("beamline / O_DIRECT plain-file append (the disk's ceiling)", "beamline_receive", "zmq_append_direct", 0.0),
    ("CURVE cost: with / without", "beamline_receive_curve", "beamline_receive", 0.0),
    ("stream v2 bslz4 / our protocol", "beamline_receive_stream2", "beamline_receive", 0.0),
    ("acknowledgements cost: with / without", "beamline_receive_ack", "beamline_receive", 0.0),
    ("beamline / python", "beamline_receive", "python_h5py", 1.3),
    ("beamline (no checksum) / python", "beamline_receive_no_checksum", "python_h5py", 1.3),
    ("beamline / receive-and-discard", "beamline_receive", "zmq_discard", 0.8),
    ("checksum cost: with / without", "beamline_receive", "beamline_receive_no_checksum", 0.0),
];

//! The receiver: a ZeroMQ PULL socket, validation of every message, a bounded crossbeam queue, and an HDF5
//! writer thread that owns every HDF5 call.
//!
//! Use it in-process: [`Receiver::bind`] a [`ReceiverConfig`], then [`Receiver::run`] on the current thread
//! or [`Receiver::spawn`] a thread; a [`StopHandle`] ends it; the result is a [`ReceiveSummary`].
//!
//! Memory is bounded whatever the sender does: at most `queue_frames` accepted payloads (and at most
//! `queue_bytes` bytes of them) wait for the writer,
//! the socket's receive high-water mark bounds what libzmq buffers, and `max_message_bytes` bounds one part.
//!
//! A [`FrameObserver`] set in [`ReceiverConfig::observer`] sees what the writer thread writes (a live
//! preview, say); with none set the writer does no extra work.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver as ChanRx, RecvTimeoutError, Sender as ChanTx, TrySendError};

use crate::ack::{AckPublisher, IndexRanges};
use crate::blosc::{decompress_validated, validate_chunk, BloscError};
use crate::budget::ByteBudget;
use crate::direct::WriteIo;
use crate::protocol::{
    decode_frame_header, decode_series_end, decode_series_start, payload_checksum, raw_metadata, Compression,
    FrameHeader, FrameIndex, Kind, ProtocolError, SeriesEnd, SeriesStart, Shuffle,
};
use crate::reject::{Reason, Rejections};
use crate::writer::{Closing, NxtomoWriter, Provenance, SeriesSummary, WriteError};

/// What the receiver does with an accepted frame when the writer's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Wait for space (the default): nothing is lost here, the sender is slowed down through ZeroMQ's
    /// high-water marks, and the time waited is reported (summary, file, `wait.queue` trace spans).
    #[default]
    Block,
    /// Drop the frame (odin-style): it is counted, listed as dropped and as missing, and receiving goes on.
    Drop,
}

impl std::str::FromStr for OnFull {
    type Err = String;
    fn from_str(s: &str) -> Result<OnFull, String> {
        match s {
            "block" => Ok(OnFull::Block),
            "drop" => Ok(OnFull::Drop),
            _ => Err(format!("{s:?}: use block or drop")),
        }
    }
}

/// Where files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write one series to this file (overwritten), then stop.
    File(PathBuf),
    /// Write each series to `<dir>/<series id>.h5` (never overwriting: `-1`, `-2`, ... are appended) until
    /// stopped.
    Dir(PathBuf),
}

/// Sees, on the writer thread, every series start, every frame once it is written, and every series end.
///
/// Only accepted messages reach an observer: a rejected one never does. The calls run on the writer thread
/// between HDF5 writes, so a slow observer slows the writer (and, through the bounded queue, the receiver);
/// keep them short or hand the work to another thread. A panic in an observer is caught and logged, and that
/// observer is not called again; the writer and the file carry on.
pub trait FrameObserver: Send + Sync {
    /// A series starts; its file has just been created.
    fn series_start(&self, start: &SeriesStart);
    /// Frame `header` has been written; `payload` is exactly what was received (a blosc1 chunk or raw
    /// little-endian pixels, as the series start's compression says).
    fn frame(&self, header: &FrameHeader, payload: &[u8]);
    /// The open series has been closed: `end` is the sender's series end, or `None` when the series was
    /// closed without one (the receiver stopped, or a new series started first).
    fn series_end(&self, end: Option<&SeriesEnd>);
}

/// Receiver settings.
#[derive(Clone)]
pub struct ReceiverConfig {
    /// Endpoint to bind (or connect, with `connect`), default `tcp://127.0.0.1:5555`.
    pub endpoint: String,
    /// Connect to a binding sender instead of binding.
    pub connect: bool,
    /// Where files go.
    pub output: Output,
    /// Accepted frames that may wait for the writer (bounds memory).
    pub queue_frames: usize,
    /// Payload bytes that may wait for the writer (bounds memory for large frames).
    pub queue_bytes: u64,
    /// ZeroMQ receive high-water mark, in messages.
    pub rcvhwm: i32,
    /// Largest message part accepted; larger ones make libzmq drop the connection.
    pub max_message_bytes: i64,
    /// Flush the file at least this often while frames arrive.
    pub flush_interval: Duration,
    /// Decompress every blosc payload to check it (costs CPU; the header and block table are always checked).
    pub verify_payload: bool,
    /// Provenance written into every file.
    pub provenance: Provenance,
    /// Called on the writer thread for every series start, written frame and series end (default none).
    pub observer: Option<Arc<dyn FrameObserver>>,
    /// Publish acknowledgements (`have` messages, PROTOCOL.md) on a PUB socket bound at this endpoint (or
    /// connected, with `connect`); `None` (the default) sends none.
    pub ack_endpoint: Option<String>,
    /// When the `Output::File` exists and holds a series never closed (a killed receiver's file), or the
    /// `Output::Dir` holds one such file (`unclosed_in`; several are refused), reopen it and go on
    /// receiving that series instead of starting afresh.
    pub resume: bool,
    /// What happens to a frame when the writer's queue is full (default [`OnFull::Block`]).
    pub on_full: OnFull,
    /// In `Output::Dir` mode, a series start arriving while the open series has had no frame for this long
    /// closes the open series as `abandoned` (its sender presumably died) and opens the new one; `None`
    /// never does (the new series is rejected as `series_in_progress`). Default 60 s.
    pub stale_after: Option<Duration>,
    /// Accept only CURVE senders whose public keys are listed (default none: plain ZMTP 3).
    pub curve: Option<crate::curve::CurveServer>,
    /// How the frame chunks reach the disk (default [`WriteIo::Direct`]: past the page cache where the file
    /// system allows it; the file's bytes are the same either way).
    pub write_io: WriteIo,
}

impl std::fmt::Debug for ReceiverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverConfig")
            .field("endpoint", &self.endpoint)
            .field("connect", &self.connect)
            .field("output", &self.output)
            .field("queue_frames", &self.queue_frames)
            .field("queue_bytes", &self.queue_bytes)
            .field("rcvhwm", &self.rcvhwm)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("flush_interval", &self.flush_interval)
            .field("verify_payload", &self.verify_payload)
            .field("provenance", &self.provenance)
            .field("observer", &self.observer.as_ref().map(|_| "set"))
            .field("ack_endpoint", &self.ack_endpoint)
            .field("resume", &self.resume)
            .field("on_full", &self.on_full)
            .field("stale_after", &self.stale_after)
            .field("curve_allowed", &self.curve.as_ref().map(|c| c.allowed.len()))
            .finish()
    }
}

impl ReceiverConfig {
    /// Defaults: bind `tcp://127.0.0.1:5555`, a queue of 64 frames and at most 256 MiB, flush every 500 ms, header-level validation.
    pub fn new(output: Output) -> ReceiverConfig {
        ReceiverConfig {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            connect: false,
            output,
            queue_frames: 64,
            queue_bytes: 256 << 20,
            rcvhwm: 16,
            max_message_bytes: 1 << 31,
            flush_interval: Duration::from_millis(500),
            verify_payload: false,
            provenance: Provenance {
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
                software: format!("beamline {}", env!("CARGO_PKG_VERSION")),
            },
            observer: None,
            ack_endpoint: None,
            resume: false,
            on_full: OnFull::Block,
            stale_after: Some(Duration::from_secs(60)),
            curve: None,
            write_io: WriteIo::Direct,
        }
    }
}

/// ZAP domain set on the receiving socket: it makes libzmq accept only ZMTP 3 peers (see PROTOCOL.md).
pub const ZAP_DOMAIN: &str = "beamline";

/// Default endpoint of both ends (loopback only).
pub const DEFAULT_ENDPOINT: &str = "tcp://127.0.0.1:5555";

/// Errors that end a receiver.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// ZeroMQ failed.
    #[error("ZeroMQ {op} {endpoint}: {cause}{hint}")]
    Zmq {
        /// What was attempted.
        op: &'static str,
        /// The endpoint.
        endpoint: String,
        /// The libzmq error.
        cause: zmq::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// The output cannot be written.
    #[error("cannot write to {path}: {cause}. Choose a writable --output / --output-dir")]
    Output {
        /// The path tried.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The writer failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A thread could not be started or panicked.
    #[error("receiver thread: {0}")]
    Thread(String),
    /// CURVE could not be set up.
    #[error(transparent)]
    Curve(#[from] crate::curve::CurveError),
    /// `--output-dir DIR --resume` found more than one file with an unclosed series.
    #[error(
        "cannot resume in {dir}: several files hold a series never closed: {files}. Resume one with \
         `--output FILE --resume`, or move the others out of the directory"
    )]
    ResumeSeveral {
        /// The directory.
        dir: PathBuf,
        /// The files and their status.
        files: String,
    },
}

/// Ends a running receiver (from any thread, or a signal handler).
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    now: Arc<AtomicBool>,
}

impl StopHandle {
    /// Asks the receiver to stop: it receives no more, the writer writes the frames already queued, an open
    /// series is closed as incomplete and the summary returned.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Asks the receiver to stop at once: as [`StopHandle::stop`], but the writer drops the frames still
    /// queued (they are listed as missing) and closes the file right away, consistent.
    pub fn stop_now(&self) {
        self.now.store(true, Ordering::SeqCst);
        self.stop();
    }

    /// What an interrupt (Ctrl-C, SIGTERM, SIGHUP) does: the first one [`stop`](StopHandle::stop)s, a
    /// later one [`stop_now`](StopHandle::stop_now)s. Returns true when this call stopped at once.
    pub fn interrupt(&self) -> bool {
        if self.stop.swap(true, Ordering::SeqCst) {
            self.now.store(true, Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    /// True once stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// True once a stop at once was asked.
    pub fn is_stopped_now(&self) -> bool {
        self.now.load(Ordering::SeqCst)
    }
}

/// Counters a running receiver updates (for progress bars).
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Frames accepted in the open (or last) series.
    pub received: AtomicU64,
    /// Frames the open (or last) series declared.
    pub expected: AtomicU64,
    /// Messages rejected since start.
    pub rejected: AtomicU64,
    /// Series finished since start.
    pub series_done: AtomicU64,
}

/// Everything a receiver did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiveSummary {
    /// One entry per series file, in order.
    pub series: Vec<SeriesSummary>,
    /// Messages rejected while no series was open.
    pub rejected_outside_series: Rejections,
    /// CURVE handshakes the ZAP handler refused (senders whose key is not listed); 0 without CURVE.
    pub curve_refused: u64,
    /// Frames marked `resent` whose index was already accepted: dropped, expected after a restart, not
    /// rejections.
    pub resent_duplicates: u64,
}

/// The receive high-water mark (in messages) for a series whose frames are `frame_bytes` long: ZeroMQ then
/// buffers no more than about `queue_bytes` of them (and at most `max_messages`, at least one), so the
/// memory bound is in bytes whatever the frame size.
pub fn rcvhwm_for(frame_bytes: usize, queue_bytes: u64, max_messages: i32) -> i32 {
    let fit = queue_bytes / (frame_bytes as u64).max(1);
    fit.clamp(1, max_messages.max(1) as u64) as i32
}

impl ReceiveSummary {
    /// All rejections, in and outside series.
    pub fn rejected_total(&self) -> Rejections {
        let mut r = self.rejected_outside_series;
        for s in &self.series {
            r.merge(&s.rejected);
        }
        r
    }
}

/// A series start for the writer: the parsed start, its file, and the message bytes exactly as received.
struct StartMsg {
    start: SeriesStart,
    path: PathBuf,
    json: String,
    metadata: Option<String>,
}

enum ToWriter {
    Start(Box<StartMsg>),
    Frame(FrameHeader, zmq::Message),
    End(Option<Box<SeriesEnd>>, Box<Closing>),
}

struct OpenSeries {
    start: SeriesStart,
    frame_bytes: usize,
    seen: Vec<bool>,
    rejected: Rejections,
    /// When the series start or the last accepted frame arrived.
    last_frame: Instant,
    dropped: Vec<FrameIndex>,
    blocked: Duration,
}

impl OpenSeries {
    fn closing(self, end_metadata_verbatim: Option<String>, abandoned: Option<String>) -> Box<Closing> {
        if !self.dropped.is_empty() {
            tracing::warn!(
                series = %self.start.series,
                dropped = self.dropped.len(),
                "queue full (--on-full drop): {} frames dropped (listed as missing)",
                self.dropped.len()
            );
        }
        Box::new(Closing {
            rejected: self.rejected,
            end_metadata_verbatim,
            dropped: self.dropped,
            blocked: self.blocked,
            abandoned,
        })
    }
}

/// A bound receiver, ready to run.
pub struct Receiver {
    cfg: ReceiverConfig,
    _ctx: zmq::Context,
    socket: zmq::Socket,
    ack: Option<zmq::Socket>,
    stop: StopHandle,
    live: Arc<LiveCounters>,
    budget: Arc<ByteBudget>,
    zap: Option<crate::curve::ZapHandler>,
}

/// A receiver running on its own thread.
pub struct ReceiverThread {
    handle: JoinHandle<Result<ReceiveSummary, ReceiveError>>,
    stop: StopHandle,
    live: Arc<LiveCounters>,
}

impl ReceiverThread {
    /// The stop handle.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Live counters.
    pub fn live(&self) -> Arc<LiveCounters> {
        self.live.clone()
    }

    /// True when the receiver has returned.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the receiver to return (it returns by itself after one series in `Output::File` mode).
    pub fn join(self) -> Result<ReceiveSummary, ReceiveError> {
        self.handle.join().map_err(|_| ReceiveError::Thread("receiver thread panicked".into()))?
    }

    /// Stops the receiver and waits for its summary.
    pub fn stop_and_join(self) -> Result<ReceiveSummary, ReceiveError> {
        self.stop.stop();
        self.join()
    }
}

pub(crate) fn check_output(output: &Output) -> Result<(), ReceiveError> {
    let oerr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReceiveError::Output { path, cause: source }
    };
    match output {
        Output::File(p) => {
            let existed = p.exists();
            std::fs::OpenOptions::new().append(true).create(true).open(p).map_err(oerr(p))?;
            if !existed {
                let _ = std::fs::remove_file(p);
            }
        }
        Output::Dir(d) => {
            std::fs::create_dir_all(d).map_err(oerr(d))?;
            let probe = d.join(format!(".beamline-write-test-{}", std::process::id()));
            std::fs::write(&probe, b"").map_err(oerr(d))?;
            let _ = std::fs::remove_file(probe);
        }
    }
    Ok(())
}

/// The file of `dir` a receiver started with `--output-dir DIR --resume` reopens: the one `*.h5` regular
/// file (symbolic links are not followed) whose series was never closed (status `receiving` or
/// `incomplete ...`, [`NxtomoWriter::unclosed_status`]). None when there is none; several are refused,
/// naming them: which series the sender will go on with cannot be guessed. Empty files (a name reserved by
/// a receiver killed before HDF5 wrote it) and files that are not NXtomo files of ours are skipped.
pub(crate) fn unclosed_in(dir: &Path) -> Result<Option<PathBuf>, ReceiveError> {
    let entries = std::fs::read_dir(dir).map_err(|cause| ReceiveError::Output { path: dir.to_path_buf(), cause })?;
    let mut found = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0);
        if !regular || path.extension().is_none_or(|x| x != "h5") {
            continue;
        }
        match NxtomoWriter::unclosed_status(&path) {
            Ok(Some(status)) => found.push((path, status)),
            Ok(None) => {}
            Err(e) => tracing::debug!("--resume: skipping {}: {e}", path.display()),
        }
    }
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => {
            let (path, status) = found.remove(0);
            tracing::info!(path = %path.display(), status = %status, "--resume: the unclosed series of the directory");
            Ok(Some(path))
        }
        _ => Err(ReceiveError::ResumeSeveral {
            dir: dir.to_path_buf(),
            files: found.iter().map(|(p, s)| format!("{} ({s})", p.display())).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// The file for a new series. In `Output::Dir` mode the name is reserved by creating it exclusively
/// (`O_CREAT | O_EXCL`, which never follows a symbolic link, dangling or not): an existing file or link of
/// that name, whatever it points to, is left alone and the next free name `-1`, `-2`, ... is taken.
pub(crate) fn file_for(output: &Output, series: &str) -> PathBuf {
    match output {
        Output::File(p) => p.clone(),
        Output::Dir(d) => {
            let mut p = d.join(format!("{series}.h5"));
            let mut k = 1;
            loop {
                match std::fs::OpenOptions::new().write(true).create_new(true).open(&p) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        p = d.join(format!("{series}-{k}.h5"));
                        k += 1;
                    }
                    // Reserved (HDF5 then truncates this empty regular file), or an error that creating
                    // the file will report with its path.
                    _ => return p,
                }
            }
        }
    }
}

impl Receiver {
    /// Checks the output is writable, then binds (or connects) the PULL socket.
    pub fn bind(cfg: ReceiverConfig) -> Result<Receiver, ReceiveError> {
        check_output(&cfg.output)?;
        let ctx = zmq::Context::new();
        let zerr = |op, source, hint| ReceiveError::Zmq { op, endpoint: cfg.endpoint.clone(), cause: source, hint };
        let socket = ctx.socket(zmq::PULL).map_err(|e| zerr("socket", e, ""))?;
        socket.set_rcvhwm(cfg.rcvhwm.max(1)).map_err(|e| zerr("set_rcvhwm", e, ""))?;
        socket.set_maxmsgsize(cfg.max_message_bytes).map_err(|e| zerr("set_maxmsgsize", e, ""))?;
        socket.set_rcvtimeo(100).map_err(|e| zerr("set_rcvtimeo", e, ""))?;
        socket.set_linger(0).map_err(|e| zerr("set_linger", e, ""))?;
        // A ZAP domain makes libzmq refuse peers that speak ZMTP 1.0 or 2.0 (checked by libzmq's handshake):
        // their framing is so loose that any TCP stream (an HTTP POST, a browser's `fetch`) would parse as
        // messages. ZMTP 3 peers with the NULL mechanism are still accepted: no ZAP handler runs in this
        // context and the domain is not enforced, so none is asked.
        socket.set_zap_domain(ZAP_DOMAIN).map_err(|e| zerr("set_zap_domain", e, ""))?;
        let zap = cfg.curve.as_ref().map(|c| crate::curve::ZapHandler::secure(&ctx, &socket, c)).transpose()?;
        if cfg.connect {
            socket.connect(&cfg.endpoint).map_err(|e| zerr("connect", e, ": check the endpoint"))?;
        } else {
            socket
                .bind(&cfg.endpoint)
                .map_err(|e| zerr("bind", e, ": is another receiver running there? choose another --endpoint"))?;
        }
        let ack = match &cfg.ack_endpoint {
            None => None,
            Some(ep) => {
                let aerr = |op, source, hint| ReceiveError::Zmq { op, endpoint: ep.clone(), cause: source, hint };
                let pubs = ctx.socket(zmq::PUB).map_err(|e| aerr("socket", e, ""))?;
                // The last state (a series closed or failed) must reach the sender before the process exits.
                pubs.set_linger(1000).map_err(|e| aerr("set_linger", e, ""))?;
                if cfg.connect {
                    pubs.connect(ep).map_err(|e| aerr("connect", e, ": check the --ack endpoint"))?;
                } else {
                    pubs.bind(ep).map_err(|e| aerr("bind", e, ": is another receiver using this --ack endpoint?"))?;
                }
                Some(pubs)
            }
        };
        let budget = Arc::new(ByteBudget::new(cfg.queue_bytes));
        Ok(Receiver {
            cfg,
            _ctx: ctx,
            socket,
            ack,
            zap,
            stop: StopHandle::default(),
            live: Arc::new(LiveCounters::default()),
            budget,
        })
    }

    /// The acknowledgement endpoint actually bound, when acknowledgements are on.
    pub fn ack_endpoint(&self) -> Option<String> {
        match self.ack.as_ref()?.get_last_endpoint() {
            Ok(Ok(e)) => Some(e),
            _ => self.cfg.ack_endpoint.clone(),
        }
    }

    /// The endpoint actually bound (resolves `tcp://127.0.0.1:*` to the chosen port).
    pub fn endpoint(&self) -> String {
        match self.socket.get_last_endpoint() {
            Ok(Ok(e)) => e,
            _ => self.cfg.endpoint.clone(),
        }
    }

    /// A handle that stops this receiver.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Live counters for progress display.
    pub fn live(&self) -> Arc<LiveCounters> {
        self.live.clone()
    }

    /// Runs on a new thread named `receiver`.
    pub fn spawn(self) -> Result<ReceiverThread, ReceiveError> {
        let stop = self.stop.clone();
        let live = self.live.clone();
        let handle = std::thread::Builder::new()
            .name("receiver".into())
            .spawn(move || self.run())
            .map_err(|e| ReceiveError::Thread(e.to_string()))?;
        Ok(ReceiverThread { handle, stop, live })
    }

    /// Receives until stopped (or, with `Output::File`, until one series ended); returns what happened.
    pub fn run(mut self) -> Result<ReceiveSummary, ReceiveError> {
        crate::frame_memory::keep_frame_buffers(self.cfg.queue_bytes);
        let (tx, rx) = crossbeam_channel::bounded::<ToWriter>(self.cfg.queue_frames.max(1));
        let flush = self.cfg.flush_interval;
        let prov = self.cfg.provenance.clone();
        let (stop, live, budget) = (self.stop.clone(), self.live.clone(), self.budget.clone());
        let observer = Watcher(self.cfg.observer.clone());
        let (resumed, open) = self.reopen()?;
        let mut ack = self.ack.take().map(AckPublisher::new);
        if let (Some(a), Some(w), Some(o)) = (ack.as_mut(), resumed.as_ref(), open.as_ref()) {
            a.open(
                &o.start.series,
                o.start.frames,
                w.held().fold(IndexRanges::new(), |mut r, i| {
                    r.insert(i);
                    r
                }),
            );
        }
        let extras = WriterExtras { ack, current: resumed, io: self.cfg.write_io };
        let writer = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer_loop(rx, flush, prov, stop, live, budget, observer, extras))
            .map_err(|e| ReceiveError::Thread(e.to_string()))?;
        let mut rejected_outside = Rejections::default();
        let mut resent_duplicates = 0;
        let received = self.receive_loop(&tx, &mut rejected_outside, open, &mut resent_duplicates);
        drop(tx);
        let written = writer.join().map_err(|_| ReceiveError::Thread("writer thread panicked".into()))?;
        let series = written?;
        received?;
        let curve_refused = self.zap.as_ref().map_or(0, |z| z.counts().refused());
        if resent_duplicates > 0 {
            tracing::info!(resent_duplicates, "frames sent again that were already held were dropped (not errors)");
        }
        Ok(ReceiveSummary { series, rejected_outside_series: rejected_outside, resent_duplicates, curve_refused })
    }

    /// With `resume`: reopens a file left by a killed receiver (see [`NxtomoWriter::reopen`]): the
    /// `Output::File`, or in `Output::Dir` mode the one file of the directory holding an unclosed series
    /// ([`unclosed_in`]). An absent or empty file, or a directory with none, is no error (nothing to resume).
    fn reopen(&self) -> Result<(Option<NxtomoWriter>, Option<OpenSeries>), ReceiveError> {
        if !self.cfg.resume {
            return Ok((None, None));
        }
        let path = match &self.cfg.output {
            Output::File(path) if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) => path.clone(),
            Output::File(_) => return Ok((None, None)),
            Output::Dir(dir) => match unclosed_in(dir)? {
                Some(path) => path,
                None => {
                    tracing::info!(dir = %dir.display(), "--resume: no unclosed series in the directory");
                    return Ok((None, None));
                }
            },
        };
        let path = &path;
        let (w, start) = NxtomoWriter::reopen(path, self.cfg.write_io)?;
        self.bound_zmq_buffer(&start);
        let mut seen = vec![false; start.frames as usize];
        for i in w.held() {
            if let Some(s) = seen.get_mut(i as usize) {
                *s = true;
            }
        }
        self.live.expected.store(start.frames, Ordering::Relaxed);
        self.live.received.store(w.held().count() as u64, Ordering::Relaxed);
        tracing::info!(series = %start.series, path = %path.display(), "resuming series");
        let open = OpenSeries {
            frame_bytes: start.frame_bytes(),
            seen,
            rejected: Rejections::default(),
            start: start.clone(),
            last_frame: Instant::now(),
            dropped: Vec::new(),
            blocked: Duration::ZERO,
        };
        Ok((Some(w), Some(open)))
    }

    fn receive_loop(
        &self,
        tx: &ChanTx<ToWriter>,
        outside: &mut Rejections,
        mut open: Option<OpenSeries>,
        resent_duplicates: &mut u64,
    ) -> Result<(), ReceiveError> {
        let mut p0 = zmq::Message::new();
        let mut p1 = zmq::Message::new();
        let mut payload = zmq::Message::new();
        let mut extra = zmq::Message::new();
        let mut verify_buf: Vec<u8> = Vec::new();
        let zerr =
            |source| ReceiveError::Zmq { op: "recv", endpoint: self.cfg.endpoint.clone(), cause: source, hint: "" };
        loop {
            if self.stop.is_stopped() {
                break;
            }
            {
                // Inside a series the thread is starved by the sender; between series it is idle, as expected.
                let _w = match open {
                    Some(_) => tracing::debug_span!("wait.queue", queue = "zmq", wants = "data", on = "sender"),
                    None => tracing::debug_span!("wait.idle", until = "next series"),
                }
                .entered();
                match self.socket.recv(&mut p0, 0) {
                    Ok(()) => {}
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => continue,
                    Err(e) => return Err(zerr(e)),
                }
            }
            let span =
                tracing::trace_span!("receive.recv", parts = tracing::field::Empty, bytes = tracing::field::Empty);
            let guard = span.enter();
            let mut parts = 1usize;
            let mut more = p0.get_more();
            if more {
                self.socket.recv(&mut p1, 0).map_err(zerr)?;
                parts = 2;
                more = p1.get_more();
            }
            if more {
                self.socket.recv(&mut payload, 0).map_err(zerr)?;
                parts = 3;
                more = payload.get_more();
            }
            while more {
                self.socket.recv(&mut extra, 0).map_err(zerr)?;
                parts += 1;
                more = extra.get_more();
            }
            span.record("parts", parts);
            span.record("bytes", if parts >= 3 { payload.len() } else { 0 });
            drop(guard);
            let _v = tracing::trace_span!("receive.validate").entered();
            let verdict = match Kind::parse(&p0) {
                None => Err((Reason::UnknownKind, "part 0 names no known message kind".to_string())),
                Some(kind) if kind.parts() != parts => {
                    Err((Reason::Parts, format!("{kind:?} needs {} parts, got {parts}", kind.parts())))
                }
                Some(Kind::SeriesStart) => self.on_start(&p1, &mut open, tx),
                Some(Kind::Frame) => self.on_frame(&p1, &mut payload, &mut open, tx, &mut verify_buf),
                Some(Kind::SeriesEnd) => self.on_end(&p1, &mut open, tx),
            };
            match verdict {
                Ok(Flow::Continue) => {}
                Ok(Flow::SeriesDone) => {
                    if matches!(self.cfg.output, Output::File(_)) {
                        return Ok(());
                    }
                }
                Ok(Flow::WriterGone) => break,
                Ok(Flow::ResentDuplicate) => *resent_duplicates += 1,
                Err((reason, detail)) => {
                    let tally = match open.as_mut() {
                        Some(s) => &mut s.rejected,
                        None => &mut *outside,
                    };
                    tally.add(reason);
                    self.live.rejected.fetch_add(1, Ordering::Relaxed);
                    if tally.get(reason) <= 10 {
                        tracing::warn!(reason = reason.as_str(), "rejected message: {detail}");
                    } else {
                        tracing::debug!(reason = reason.as_str(), "rejected message: {detail}");
                    }
                }
            }
        }
        if let Some(s) = open.take() {
            let _ = tx.send(ToWriter::End(None, s.closing(None, None)));
        }
        Ok(())
    }

    fn on_start(&self, json: &[u8], open: &mut Option<OpenSeries>, tx: &ChanTx<ToWriter>) -> Verdict {
        let start = decode_series_start(json).map_err(protocol_reason)?;
        if let Some(s) = open.as_ref().filter(|s| same_series(&s.start, &start)) {
            // The same series started again: its sender was restarted (`--resume`), or this receiver
            // was, and reopened the file. The series goes on.
            tracing::info!(series = %s.start.series, "series start repeated: the series goes on");
            return Ok(Flow::Continue);
        }
        if let Some(s) = open.as_ref() {
            let idle = s.last_frame.elapsed();
            let stale = matches!(self.cfg.output, Output::Dir(_)) && self.cfg.stale_after.is_some_and(|t| idle >= t);
            if !stale {
                return Err((
                    Reason::SeriesInProgress,
                    format!("series {:?} started while {:?} is open", start.series, s.start.series),
                ));
            }
            let old = open.take().map(|s| {
                let why = format!(
                    "no frame for {:.1} s when series {:?} started; its sender presumably stopped",
                    idle.as_secs_f64(),
                    start.series
                );
                tracing::warn!(series = %s.start.series, new = %start.series, "series abandoned: {why}");
                s.closing(None, Some(why))
            });
            if let Some(closing) = old {
                if let Flow::WriterGone = push(tx, ToWriter::End(None, closing)) {
                    return Ok(Flow::WriterGone);
                }
            }
        }
        let hwm = self.bound_zmq_buffer(&start);
        let path = file_for(&self.cfg.output, &start.series);
        tracing::info!(series = %start.series, frames = start.frames, path = %path.display(), rcvhwm = hwm, "series start");
        self.live.expected.store(start.frames, Ordering::Relaxed);
        self.live.received.store(0, Ordering::Relaxed);
        *open = Some(OpenSeries {
            frame_bytes: start.frame_bytes(),
            seen: vec![false; start.frames as usize],
            rejected: Rejections::default(),
            start: start.clone(),
            last_frame: Instant::now(),
            dropped: Vec::new(),
            blocked: Duration::ZERO,
        });
        // Part 1 passed `decode_series_start`, so it is UTF-8 JSON: stored as it arrived.
        let text = String::from_utf8_lossy(json).into_owned();
        let metadata = raw_metadata(json).map(str::to_string);
        Ok(push(tx, ToWriter::Start(Box::new(StartMsg { start, path, json: text, metadata }))))
    }

    /// ZeroMQ buffers whole messages up to the high-water mark: bound it by bytes for `start`'s frame size.
    /// Returns the mark set.
    fn bound_zmq_buffer(&self, start: &SeriesStart) -> i32 {
        let hwm = rcvhwm_for(start.frame_bytes(), self.cfg.queue_bytes, self.cfg.rcvhwm);
        if let Err(e) = self.socket.set_rcvhwm(hwm) {
            tracing::warn!("cannot set the receive high-water mark to {hwm}: {e}");
        }
        hwm
    }

    fn on_frame(
        &self,
        json: &[u8],
        payload: &mut zmq::Message,
        open: &mut Option<OpenSeries>,
        tx: &ChanTx<ToWriter>,
        verify_buf: &mut Vec<u8>,
    ) -> Verdict {
        let d = decode_frame_header(json).map_err(protocol_reason)?;
        let Some(s) = open.as_mut() else {
            return Err((Reason::NoSeries, format!("frame {} with no series open", d.header.index)));
        };
        if d.series != s.start.series.as_str() {
            return Err((
                Reason::SeriesMismatch,
                format!("frame for {:?} while {:?} is open", d.series, s.start.series),
            ));
        }
        let i = d.header.index.0;
        let seen = s
            .seen
            .get_mut(i as usize)
            .ok_or_else(|| (Reason::IndexOutOfRange, format!("frame index {i} not below {}", s.start.frames)))?;
        if *seen {
            if crate::ack::is_resent(json) {
                return Ok(Flow::ResentDuplicate);
            }
            return Err((Reason::DuplicateFrame, format!("frame {i} already received")));
        }
        if let Some(sent) = d.checksum {
            let got = payload_checksum(payload);
            if got != sent {
                return Err((
                    Reason::Checksum,
                    format!("frame {i}: payload xxh3_64 {got:016x}, header says {sent:016x}"),
                ));
            }
        }
        match s.start.compression {
            Compression::None => {
                if payload.len() != s.frame_bytes {
                    return Err((
                        Reason::PayloadSize,
                        format!("frame {i}: {} bytes, expected {}", payload.len(), s.frame_bytes),
                    ));
                }
            }
            Compression::Blosc1(p) => {
                let typesize = s.start.dtype.size();
                let h = validate_chunk(payload, typesize, s.frame_bytes).map_err(|e| blosc_reason(i, e))?;
                // The file's cd_values declare the series' shuffle for every chunk: a chunk shuffled
                // otherwise would decode to wrong pixels. (A memcpyed chunk is not shuffled at all.)
                let got = match (h.flags & 0x01 != 0, h.flags & 0x04 != 0) {
                    (false, false) => Some(Shuffle::None),
                    (true, false) => Some(Shuffle::Byte),
                    (false, true) => Some(Shuffle::Bit),
                    (true, true) => None,
                };
                if !h.memcpyed() && got != Some(p.shuffle) {
                    return Err((
                        Reason::BloscHeader,
                        format!(
                            "frame {i}: chunk flags 0x{:02x} say shuffle {got:?}, the series declares {:?}",
                            h.flags, p.shuffle
                        ),
                    ));
                }
                if self.cfg.verify_payload {
                    verify_buf.resize(s.frame_bytes, 0);
                    decompress_validated(payload, verify_buf, 1).map_err(|e| blosc_reason(i, e))?;
                }
            }
        }
        let n = payload.len() as u64;
        let msg = match self.cfg.on_full {
            OnFull::Block => {
                if !self.budget.try_acquire(n) {
                    let t = Instant::now();
                    let got = self.budget.acquire(n, || self.stop.is_stopped());
                    s.blocked += t.elapsed();
                    if !got {
                        return Ok(Flow::WriterGone);
                    }
                }
                let msg = ToWriter::Frame(d.header, std::mem::replace(payload, zmq::Message::new()));
                match tx.try_send(msg) {
                    Ok(()) => None,
                    Err(TrySendError::Disconnected(_)) => return Ok(Flow::WriterGone),
                    Err(TrySendError::Full(m)) => Some(m),
                }
            }
            OnFull::Drop => {
                let queued = self.budget.try_acquire(n)
                    && match tx.try_send(ToWriter::Frame(d.header, std::mem::replace(payload, zmq::Message::new()))) {
                        Ok(()) => true,
                        Err(TrySendError::Disconnected(_)) => return Ok(Flow::WriterGone),
                        Err(TrySendError::Full(_)) => {
                            self.budget.release(n);
                            false
                        }
                    };
                if !queued {
                    s.dropped.push(d.header.index);
                    let k = s.dropped.len();
                    if k <= 10 {
                        tracing::warn!(frame = i, "queue full (--on-full drop): frame {i} dropped ({k} so far)");
                    }
                    return Ok(Flow::Continue);
                }
                None
            }
        };
        *seen = true;
        s.last_frame = Instant::now();
        self.live.received.fetch_add(1, Ordering::Relaxed);
        match msg {
            None => Ok(Flow::Continue),
            Some(m) => {
                let t = Instant::now();
                let flow = push(tx, m);
                s.blocked += t.elapsed();
                Ok(flow)
            }
        }
    }

    fn on_end(&self, json: &[u8], open: &mut Option<OpenSeries>, tx: &ChanTx<ToWriter>) -> Verdict {
        let end = decode_series_end(json).map_err(protocol_reason)?;
        let Some(s) = open.as_ref() else {
            return Err((Reason::NoSeries, format!("series end for {:?} with no series open", end.series)));
        };
        if end.series != s.start.series {
            return Err((
                Reason::SeriesMismatch,
                format!("end of {:?} while {:?} is open", end.series, s.start.series),
            ));
        }
        let raw = raw_metadata(json).map(str::to_string);
        let closing = match open.take() {
            Some(s) => s.closing(raw, None),
            None => Box::default(),
        };
        tracing::info!(series = %end.series, frames_sent = end.frames_sent, "series end");
        Ok(match push(tx, ToWriter::End(Some(Box::new(end)), closing)) {
            Flow::Continue => Flow::SeriesDone,
            other => other,
        })
    }
}

enum Flow {
    Continue,
    SeriesDone,
    WriterGone,
    /// A frame marked `resent` whose index is already held: dropped, counted, not a rejection.
    ResentDuplicate,
}

/// Whether two series starts describe the same series (id, shape, dtype, compression, frame count).
fn same_series(a: &SeriesStart, b: &SeriesStart) -> bool {
    a.series == b.series
        && a.shape == b.shape
        && a.dtype == b.dtype
        && a.compression == b.compression
        && a.frames == b.frames
        && a.byte_order == b.byte_order
}

/// What the writer thread gets besides the queue: the acknowledgement publisher and a reopened file.
struct WriterExtras {
    ack: Option<AckPublisher>,
    current: Option<NxtomoWriter>,
    io: WriteIo,
}

type Verdict = Result<Flow, (Reason, String)>;

fn push(tx: &ChanTx<ToWriter>, msg: ToWriter) -> Flow {
    if queue_for_writer(tx, msg) {
        Flow::Continue
    } else {
        Flow::WriterGone
    }
}

/// Queues `msg` for the writer thread, waiting for space (inside a `wait.queue` span) when the queue is
/// full; false when the writer is gone. The receive threads of our protocol and of stream v2 both use it.
pub(crate) fn queue_for_writer<T>(tx: &ChanTx<T>, msg: T) -> bool {
    let msg = match tx.try_send(msg) {
        Ok(()) => return true,
        Err(TrySendError::Disconnected(_)) => return false,
        Err(TrySendError::Full(m)) => m,
    };
    let _w = tracing::debug_span!("wait.queue", queue = "frames", wants = "space", on = "writer", depth = tx.len())
        .entered();
    tx.send(msg).is_ok()
}

fn protocol_reason(e: ProtocolError) -> (Reason, String) {
    let r = match e {
        ProtocolError::Json(_) => Reason::BadJson,
        ProtocolError::Version { .. } => Reason::Version,
        ProtocolError::Field(_) => Reason::InvalidField,
    };
    (r, e.to_string())
}

fn blosc_reason(i: u64, e: BloscError) -> (Reason, String) {
    let r = match e {
        BloscError::Size { .. } => Reason::BloscSize,
        _ => Reason::BloscHeader,
    };
    (r, format!("frame {i}: {e}"))
}

/// The writer thread's hold on the observer: absent, or dropped for good after it panicked.
struct Watcher(Option<Arc<dyn FrameObserver>>);

impl Watcher {
    /// Calls `f` on the observer, if any; a panic drops the observer (logged) and the writer goes on.
    fn notify(&mut self, what: &'static str, f: impl FnOnce(&dyn FrameObserver)) {
        let Some(o) = self.0.as_deref() else { return };
        let _s = tracing::trace_span!("receive.observe", what).entered();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(o))).is_err() {
            tracing::error!("frame observer panicked in {what}; it is not called again (the file is unaffected)");
            self.0 = None;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn writer_loop(
    rx: ChanRx<ToWriter>,
    flush: Duration,
    prov: Provenance,
    stop: StopHandle,
    live: Arc<LiveCounters>,
    budget: Arc<ByteBudget>,
    mut observer: Watcher,
    extras: WriterExtras,
) -> Result<Vec<SeriesSummary>, ReceiveError> {
    let WriterExtras { mut ack, mut current, io } = extras;
    let mut done = Vec::new();
    let mut total = 0u64;
    let mut dropped = 0u64;
    // With acknowledgements the writer wakes at least every heartbeat to publish its state.
    let tick = if ack.is_some() { flush.min(crate::ack::HEARTBEAT) } else { flush };
    let result = (|| -> Result<(), WriteError> {
        loop {
            let msg = {
                let _w = match current {
                    Some(_) => tracing::debug_span!("wait.queue", queue = "frames", wants = "data", on = "receiver"),
                    None => tracing::debug_span!("wait.idle", until = "next series"),
                }
                .entered();
                rx.recv_timeout(tick)
            };
            tracing::trace!(counter.queue_depth = rx.len() as u64);
            match msg {
                Ok(ToWriter::Frame(h, payload)) => {
                    if stop.is_stopped_now() {
                        // Stopped at once: queued frames are dropped (they stay missing in the file).
                        budget.release(payload.len() as u64);
                        dropped += 1;
                        continue;
                    }
                    if let Some(w) = current.as_mut() {
                        let written =
                            w.check_space(h.index, payload.len() as u64).and_then(|()| w.write_frame(&h, &payload));
                        if written.is_ok() {
                            observer.notify("frame", |o| o.frame(&h, &payload));
                            if let Some(a) = ack.as_mut() {
                                a.written(h.index.0);
                            }
                        }
                        budget.release(payload.len() as u64);
                        drop(payload);
                        written?;
                        total += 1;
                        tracing::trace!(counter.frames = total);
                        w.maybe_flush(flush)?;
                        acknowledge(ack.as_mut(), w);
                    }
                }
                Ok(ToWriter::Start(b)) => {
                    let StartMsg { start, path, json, metadata } = *b;
                    if let Some(w) = current.take() {
                        done.push(w.finish(None, Rejections::default())?);
                        observer.notify("series_end", |o| o.series_end(None));
                    }
                    let mut w = NxtomoWriter::create_with(&path, &start, &prov, None, io)?;
                    w.store_start_verbatim(&json, metadata.as_deref())?;
                    current = Some(w);
                    if let Some(a) = ack.as_mut() {
                        a.open(&start.series, start.frames, IndexRanges::new());
                    }
                    observer.notify("series_start", |o| o.series_start(&start));
                }
                Ok(ToWriter::End(end, closing)) => {
                    if let Some(w) = current.take() {
                        let summary = w.finish_with(end.as_deref(), *closing)?;
                        if let Some(a) = ack.as_mut() {
                            a.closed(summary.status.map_or("incomplete", |s| s.as_str()));
                        }
                        done.push(summary);
                        live.series_done.fetch_add(1, Ordering::Relaxed);
                        observer.notify("series_end", |o| o.series_end(end.as_deref()));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(w) = current.as_mut() {
                        w.maybe_flush(flush)?;
                        acknowledge(ack.as_mut(), w);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if let Some(w) = current.take() {
                        done.push(w.finish(None, Rejections::default())?);
                        if let Some(a) = ack.as_mut() {
                            a.closed("incomplete (receiver stopped before series end)");
                        }
                        observer.notify("series_end", |o| o.series_end(None));
                    }
                    return Ok(());
                }
            }
            if let Some(a) = ack.as_mut() {
                a.heartbeat();
            }
        }
    })();
    if dropped > 0 {
        tracing::warn!(dropped, "stopped at once: {dropped} queued frames were not written (listed as missing)");
    }
    match result {
        Ok(()) => {
            if let Some(a) = ack.as_mut() {
                a.linger(ACK_LINGER);
            }
            Ok(done)
        }
        Err(e) => {
            tracing::error!("writer stopped: {e}");
            stop.stop();
            // The series cannot go on: close the file consistent (frames written before intact, status
            // `failed: ...`) and tell the sender.
            let status = match e {
                WriteError::DiskFull { .. } => "failed: disk full",
                _ => "failed: write error",
            };
            if let Some(w) = current.take() {
                let path = w.path().to_path_buf();
                match w.finish_failed(status, Rejections::default()) {
                    Ok(_) => tracing::info!(path = %path.display(), "closed with status `{status}`"),
                    Err(e2) => tracing::error!(path = %path.display(), "could not close the file cleanly: {e2}"),
                }
                observer.notify("series_end", |o| o.series_end(None));
            }
            if let Some(a) = ack.as_mut() {
                a.failed(status, &e.to_string());
                a.linger(ACK_LINGER);
            }
            Err(e.into())
        }
    }
}

/// How long a receiver with acknowledgements goes on publishing its last state before it exits, so that a
/// sender waiting for it (a series closed, a disk full) hears it.
const ACK_LINGER: Duration = Duration::from_millis(600);

/// After a (possible) flush: once nothing written is unflushed, the frames written are held; publishes.
fn acknowledge(ack: Option<&mut AckPublisher>, w: &NxtomoWriter) {
    if let Some(a) = ack {
        if !w.is_dirty() && a.has_pending() {
            a.flushed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Degrees, Dtype, FrameIndex, ImageKey, SeriesStatus, Shape};
    use crate::sender::SeriesSender;

    fn header(i: u64) -> FrameHeader {
        FrameHeader { index: FrameIndex(i), image_key: ImageKey::Projection, angle: Degrees(i as f64), timestamp: 1.0 }
    }

    fn spawn(output: Output) -> (ReceiverThread, String) {
        let mut cfg = ReceiverConfig::new(output);
        cfg.endpoint = "tcp://127.0.0.1:*".into();
        let rx = Receiver::bind(cfg).unwrap();
        let ep = rx.endpoint();
        (rx.spawn().unwrap(), ep)
    }

    #[test]
    fn every_reason_is_counted_and_good_frames_land() {
        let dir = tempfile::tempdir().unwrap();
        let (thread, ep) = spawn(Output::File(dir.path().join("r.h5")));
        let mut tx = SeriesSender::connect(&ep).unwrap();
        let px = vec![7u8; 4 * 5];
        let start = SeriesStart::new("raw", Shape([4, 5]), Dtype::Uint8, Compression::None, 3);
        let f = |i: u64, key: u64, series: &str| {
            format!(r#"{{"protocol":1,"series":"{series}","index":{i},"image_key":{key},"angle":0,"timestamp":0}}"#)
        };
        tx.send_raw(&[b"frame", f(0, 0, "raw").as_bytes(), &px]).unwrap(); // no_series
        tx.start_series(&start).unwrap();
        tx.send_frame(&header(0), &px).unwrap();
        tx.send_raw(&[b"frame", f(0, 0, "raw").as_bytes(), &px]).unwrap(); // duplicate_frame
        tx.send_raw(&[b"frame", f(1, 0, "raw").as_bytes(), &px[1..]]).unwrap(); // payload_size
        tx.send_raw(&[b"frame", f(9, 0, "raw").as_bytes(), &px]).unwrap(); // index_out_of_range
        tx.send_raw(&[b"frame", f(1, 7, "raw").as_bytes(), &px]).unwrap(); // invalid_field
        tx.send_raw(&[b"frame", f(1, 0, "zz").as_bytes(), &px]).unwrap(); // series_mismatch
        tx.send_raw(&[b"frame", b"{not json", &px]).unwrap(); // bad_json
        tx.send_raw(&[b"frame", f(0, 0, "raw").replacen("\"index\":0,", "\"index\":-1,", 1).as_bytes(), &px]).unwrap(); // bad_json
        let nan = f(1, 0, "raw").replace("\"angle\":0", "\"angle\":NaN");
        tx.send_raw(&[b"frame", nan.as_bytes(), &px]).unwrap(); // bad_json: JSON has no NaN
        tx.send_raw(&[b"frame", f(1, 0, "raw").as_bytes()]).unwrap(); // parts
        tx.send_raw(&[b"hello", b"{}"]).unwrap(); // unknown_kind
        let other = SeriesStart::new("raw2", Shape([4, 5]), Dtype::Uint8, Compression::None, 3);
        tx.send_raw(&[b"series_start", &crate::protocol::encode_series_start(&other)]).unwrap(); // series_in_progress
        tx.send_raw(&[b"frame", f(1, 0, "raw").replace("\"protocol\":1", "\"protocol\":9").as_bytes(), &px]).unwrap();
        tx.send_frame(&header(2), &px).unwrap();
        tx.end_series(SeriesStatus::Complete, Some(serde_json::json!({"k": 1}))).unwrap();
        let summary = thread.join().unwrap();
        let s = &summary.series[0];
        assert_eq!((s.expected, s.received), (3, 2));
        assert_eq!(s.missing, vec![FrameIndex(1)]);
        assert_eq!(summary.rejected_outside_series.get(Reason::NoSeries), 1);
        for r in [
            Reason::DuplicateFrame,
            Reason::PayloadSize,
            Reason::IndexOutOfRange,
            Reason::InvalidField,
            Reason::SeriesMismatch,
            Reason::BadJson,
            Reason::Parts,
            Reason::UnknownKind,
            Reason::SeriesInProgress,
            Reason::Version,
        ] {
            let want = if r == Reason::BadJson { 3 } else { 1 };
            assert_eq!(s.rejected.get(r), want, "{r}");
        }
        assert_eq!(s.rejected.total(), 12);
        assert_eq!(s.status, Some(SeriesStatus::Complete));
        assert_eq!(s.frames_sent, Some(2)); // send_raw messages are not counted by the sender
    }

    #[test]
    fn stop_closes_an_open_series_as_incomplete_and_dir_mode_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.h5"), b"keep me").unwrap();
        let (thread, ep) = spawn(Output::Dir(dir.path().to_path_buf()));
        let mut tx = SeriesSender::connect(&ep).unwrap();
        let start = SeriesStart::new("s", Shape([2, 2]), Dtype::Uint16, Compression::Blosc1(Default::default()), 4);
        tx.start_series(&start).unwrap();
        tx.send_frame(&header(1), &[1u8; 8]).unwrap();
        let live = thread.live();
        let t0 = std::time::Instant::now();
        while live.received.load(Ordering::Relaxed) < 1 && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let summary = thread.stop_and_join().unwrap();
        let s = &summary.series[0];
        assert_eq!(s.path, dir.path().join("s-1.h5"));
        assert_eq!(std::fs::read(dir.path().join("s.h5")).unwrap(), b"keep me");
        assert_eq!(s.status, None);
        assert_eq!(s.received, 1);
        assert_eq!(s.missing, vec![FrameIndex(0), FrameIndex(2), FrameIndex(3)]);
    }

    #[test]
    fn a_payload_damaged_after_its_checksum_is_rejected_as_checksum_and_the_file_stays_exact() {
        use crate::blosc::Codec;
        use crate::protocol::{encode_frame_header_with, BloscParams, CHECKSUM_FIELD};
        use crate::sim::{FrameGenerator, SimConfig};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.h5");
        let (thread, ep) = spawn(Output::File(path.clone()));
        let mut tx = SeriesSender::connect(&ep).unwrap();
        let (rows, cols, n) = (32usize, 48usize, 3u64);
        let mut gen = FrameGenerator::new(&SimConfig::new(rows, cols, Dtype::Uint16));
        let mut codec = Codec::new(BloscParams::default(), 2);
        let pixels: Vec<Vec<u8>> = (0..n).map(|_| gen.frame(ImageKey::Projection, Degrees(1.0))).collect();
        let chunks: Vec<Vec<u8>> = pixels.iter().map(|p| codec.compress(p).unwrap().to_vec()).collect();
        let params = BloscParams::default();
        let start =
            SeriesStart::new("c", Shape([rows as u32, cols as u32]), Dtype::Uint16, Compression::Blosc1(params), n);
        tx.start_series(&start).unwrap();
        // Frame 1 as sent: checksum of the good chunk, one byte of the compressed stream (past the header
        // and the block table, so header-level validation cannot see it) damaged on the way.
        let mut hdr = Vec::new();
        encode_frame_header_with("c", &header(1), Some(payload_checksum(&chunks[1])), &mut hdr);
        assert!(String::from_utf8_lossy(&hdr).contains(CHECKSUM_FIELD));
        let mut damaged = chunks[1].clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        validate_chunk(&damaged, 2, rows * cols * 2).expect("the damage is invisible to header validation");
        tx.send_raw(&[b"frame", &hdr, &damaged]).unwrap();
        for i in 0..n {
            tx.send_encoded(&header(i), &chunks[i as usize]).unwrap(); // with checksum (the default)
        }
        tx.end_series(SeriesStatus::Complete, None).unwrap();
        let summary = thread.join().unwrap();
        let s = &summary.series[0];
        assert_eq!(s.rejected.get(Reason::Checksum), 1);
        assert_eq!(s.rejected.total(), 1);
        assert_eq!((s.received, s.missing.len()), (n, 0));
        let f = hdf5::File::open(&path).unwrap();
        let data: Vec<u16> = f.dataset("entry/instrument/detector/data").unwrap().read_raw().unwrap();
        let want: Vec<u16> =
            pixels.iter().flat_map(|p| p.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]))).collect();
        assert!(data == want, "the file holds exactly the good frames");
    }

    #[test]
    fn a_repeated_series_start_goes_on_and_resent_duplicates_are_dropped_not_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (thread, ep) = spawn(Output::File(dir.path().join("rep.h5")));
        let mut tx = SeriesSender::connect(&ep).unwrap();
        let start = SeriesStart::new("rep", Shape([2, 2]), Dtype::Uint8, Compression::None, 2);
        tx.start_series(&start).unwrap();
        tx.send_frame(&header(0), &[1u8; 4]).unwrap();
        // The same start again (a restarted sender): the series goes on.
        tx.send_raw(&[b"series_start", &crate::protocol::encode_series_start(&start)]).unwrap();
        let mut h = Vec::new();
        crate::protocol::encode_frame_header("rep", &header(0), &mut h);
        let plain = h.clone();
        crate::ack::mark_resent(&mut h);
        tx.send_raw(&[b"frame", &h, &[9u8; 4]]).unwrap(); // resent duplicate: dropped, counted
        tx.send_raw(&[b"frame", &plain, &[9u8; 4]]).unwrap(); // plain duplicate: rejected
        tx.send_frame(&header(1), &[2u8; 4]).unwrap();
        tx.end_series(SeriesStatus::Complete, None).unwrap();
        let summary = thread.join().unwrap();
        let s = &summary.series[0];
        assert_eq!((s.received, s.missing.len()), (2, 0));
        assert_eq!(s.rejected.get(Reason::SeriesInProgress), 0);
        assert_eq!(s.rejected.get(Reason::DuplicateFrame), 1);
        assert_eq!(s.rejected.total(), 1);
        assert_eq!(summary.resent_duplicates, 1);
    }

    /// One ZMTP/1.0 frame: length (flags + body) as one byte, or 0xff and 8 bytes big-endian; then flags.
    fn zmtp1_frame(body: &[u8], more: bool, out: &mut Vec<u8>) {
        let len = body.len() as u64 + 1;
        if len < 255 {
            out.push(len as u8);
        } else {
            out.push(0xff);
            out.extend_from_slice(&len.to_be_bytes());
        }
        out.push(u8::from(more));
        out.extend_from_slice(body);
    }

    #[test]
    fn an_http_post_speaking_zmtp_1_0_framing_delivers_nothing() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let (thread, ep) = spawn(Output::Dir(dir.path().to_path_buf()));
        let addr = ep.trim_start_matches("tcp://").to_string();
        // An HTTP request whose first 81 bytes (byte 0, 'P' = 80, is read as a ZMTP/1.0 length) are taken
        // for the peer's identity message; the body then frames a whole series in ZMTP/1.0.
        let mut head = b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nX-Pad: ".to_vec();
        while head.len() < 81 - 4 {
            head.push(b'a');
        }
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head.len(), 81);
        let start = SeriesStart::new("evil", Shape([2, 2]), Dtype::Uint8, Compression::None, 1);
        let mut body = Vec::new();
        zmtp1_frame(b"series_start", true, &mut body);
        zmtp1_frame(&crate::protocol::encode_series_start(&start), false, &mut body);
        let mut fh = Vec::new();
        crate::protocol::encode_frame_header("evil", &header(0), &mut fh);
        zmtp1_frame(b"frame", true, &mut body);
        zmtp1_frame(&fh, true, &mut body);
        zmtp1_frame(&[9u8; 4], false, &mut body);
        zmtp1_frame(b"series_end", true, &mut body);
        zmtp1_frame(br#"{"protocol":1,"series":"evil","frames_sent":1}"#, false, &mut body);
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        // The receiver may refuse the connection before the body is written (a reset): that is the point.
        let _ = tcp.write_all(&head).and_then(|()| tcp.write_all(&body));
        // The receiver answers with its greeting and, refusing the old framing, closes the connection.
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
        // A real sender's series after it is the only one received.
        let mut tx = SeriesSender::connect(&ep).unwrap();
        tx.start_series(&SeriesStart::new("legit", Shape([2, 2]), Dtype::Uint8, Compression::None, 1)).unwrap();
        tx.send_frame(&header(0), &[1u8; 4]).unwrap();
        tx.end_series(SeriesStatus::Complete, None).unwrap();
        let live = thread.live();
        let t0 = std::time::Instant::now();
        while live.series_done.load(Ordering::Relaxed) < 1 && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let summary = thread.stop_and_join().unwrap();
        let names: Vec<&str> = summary.series.iter().map(|s| s.series.as_str()).collect();
        assert_eq!(names, ["legit"], "the injected series must not be received");
        assert_eq!(summary.rejected_total().total(), 0);
        assert!(!dir.path().join("evil.h5").exists());
    }

    #[test]
    fn a_dangling_symlink_in_the_output_dir_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("victim.h5");
        std::os::unix::fs::symlink(&target, dir.path().join("s1.h5")).unwrap();
        let (thread, ep) = spawn(Output::Dir(dir.path().to_path_buf()));
        let mut tx = SeriesSender::connect(&ep).unwrap();
        tx.start_series(&SeriesStart::new("s1", Shape([2, 2]), Dtype::Uint8, Compression::None, 1)).unwrap();
        tx.send_frame(&header(0), &[1u8; 4]).unwrap();
        tx.end_series(SeriesStatus::Complete, None).unwrap();
        let live = thread.live();
        let t0 = std::time::Instant::now();
        while live.series_done.load(Ordering::Relaxed) < 1 && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let summary = thread.stop_and_join().unwrap();
        assert!(!target.exists(), "the receiver wrote through the symlink");
        assert!(std::fs::symlink_metadata(dir.path().join("s1.h5")).unwrap().file_type().is_symlink());
        assert_eq!(summary.series[0].path, dir.path().join("s1-1.h5"));
        assert_eq!(summary.series[0].received, 1);
    }

    /// Records every call it gets.
    #[derive(Default)]
    struct Recorder {
        calls: std::sync::Mutex<Vec<String>>,
        panic_on_frame: bool,
    }

    impl FrameObserver for Recorder {
        fn series_start(&self, start: &SeriesStart) {
            self.calls.lock().unwrap().push(format!("start {}", start.series));
        }
        fn frame(&self, header: &FrameHeader, payload: &[u8]) {
            self.calls.lock().unwrap().push(format!("frame {} {}", header.index, payload.len()));
            assert!(!self.panic_on_frame, "observer panics on purpose");
        }
        fn series_end(&self, end: Option<&SeriesEnd>) {
            self.calls.lock().unwrap().push(format!("end {:?}", end.map(|e| e.frames_sent)));
        }
    }

    fn spawn_observed(output: Output, observer: Arc<Recorder>) -> (ReceiverThread, String) {
        let mut cfg = ReceiverConfig::new(output);
        cfg.endpoint = "tcp://127.0.0.1:*".into();
        cfg.observer = Some(observer);
        let rx = Receiver::bind(cfg).unwrap();
        let ep = rx.endpoint();
        (rx.spawn().unwrap(), ep)
    }

    #[test]
    fn an_observer_sees_every_accepted_frame_once_and_no_rejected_message() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Arc::new(Recorder::default());
        let (thread, ep) = spawn_observed(Output::File(dir.path().join("o.h5")), rec.clone());
        let mut tx = SeriesSender::connect(&ep).unwrap();
        let px = vec![3u8; 4 * 5];
        let f = |i: u64| format!(r#"{{"protocol":1,"series":"o","index":{i},"image_key":0,"angle":0,"timestamp":0}}"#);
        tx.send_raw(&[b"frame", f(0).as_bytes(), &px]).unwrap(); // no series: rejected
        tx.start_series(&SeriesStart::new("o", Shape([4, 5]), Dtype::Uint8, Compression::None, 4)).unwrap();
        tx.send_frame(&header(2), &px).unwrap();
        tx.send_raw(&[b"frame", f(2).as_bytes(), &px]).unwrap(); // duplicate
        tx.send_raw(&[b"frame", f(1).as_bytes(), &px[2..]]).unwrap(); // payload size
        tx.send_raw(&[b"frame", f(7).as_bytes(), &px]).unwrap(); // out of range
        tx.send_frame(&header(0), &px).unwrap();
        tx.send_frame(&header(3), &px).unwrap();
        tx.end_series(SeriesStatus::Complete, None).unwrap();
        let summary = thread.join().unwrap();
        assert_eq!(summary.rejected_total().total(), 4);
        assert_eq!(summary.series[0].received, 3);
        let calls = rec.calls.lock().unwrap().clone();
        assert_eq!(calls, ["start o", "frame 2 20", "frame 0 20", "frame 3 20", "end Some(3)"]);
    }

    #[test]
    fn a_panicking_observer_does_not_stop_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Arc::new(Recorder { panic_on_frame: true, ..Default::default() });
        let (thread, ep) = spawn_observed(Output::File(dir.path().join("p.h5")), rec.clone());
        let mut tx = SeriesSender::connect(&ep).unwrap();
        tx.start_series(&SeriesStart::new("p", Shape([2, 2]), Dtype::Uint8, Compression::None, 3)).unwrap();
        for i in 0..3 {
            tx.send_frame(&header(i), &[1u8; 4]).unwrap();
        }
        tx.end_series(SeriesStatus::Complete, None).unwrap();
        let s = &thread.join().unwrap().series[0];
        assert_eq!((s.received, s.missing.len()), (3, 0));
        // Called once, panicked, then left alone.
        assert_eq!(rec.calls.lock().unwrap().clone(), ["start p", "frame 0 4"]);
    }

    fn read_str(path: &Path, name: &str) -> String {
        let f = hdf5::File::open(path).unwrap();
        let ds = f.dataset(&format!("entry/acquisition/{name}")).unwrap();
        ds.read_scalar::<hdf5::types::VarLenUnicode>().unwrap().to_string()
    }

    #[test]
    fn start_message_and_metadata_are_stored_as_the_bytes_that_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.h5");
        let (thread, ep) = spawn(Output::File(path.clone()));
        let tx = SeriesSender::connect(&ep).unwrap();
        // Keys out of order, an integer beyond 64 bits, floats with 17 digits, an unknown field.
        let meta = r#"{"zeta": 1, "alpha": 123456789012345678901234567890, "e": 25.000000000000004, "x": [0.1, 1e-7]}"#;
        let start = format!(
            r#"{{"series":"v","protocol":1,"shape":[2,2],"dtype":"uint8","compression":{{"codec":"none"}},"frames":1,"future":true,"metadata":{meta}}}"#
        );
        let end_meta = r#"{"script": "a = 1", "big": 18446744073709551617, "order": {"b": 2, "a": 1}}"#;
        let end = format!(r#"{{"protocol":1,"series":"v","frames_sent":1,"metadata":{end_meta}}}"#);
        tx.send_raw(&[b"series_start", start.as_bytes()]).unwrap();
        let mut fh = Vec::new();
        crate::protocol::encode_frame_header("v", &header(0), &mut fh);
        tx.send_raw(&[b"frame", &fh, &[5u8; 4]]).unwrap();
        tx.send_raw(&[b"series_end", end.as_bytes()]).unwrap();
        let s = &thread.join().unwrap().series[0];
        assert_eq!((s.received, s.rejected.total()), (1, 0));
        assert_eq!(read_str(&path, "series_start"), start);
        assert_eq!(read_str(&path, "series_metadata"), meta);
        assert_eq!(read_str(&path, "end_metadata"), end_meta);
    }

    #[test]
    fn a_chunk_shuffled_otherwise_than_the_series_declares_is_rejected() {
        use crate::blosc::Codec;
        use crate::protocol::{BloscParams, Shuffle};
        use crate::sim::{FrameGenerator, SimConfig};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sh.h5");
        let (thread, ep) = spawn(Output::File(path.clone()));
        let mut tx = SeriesSender::connect(&ep).unwrap();
        let (rows, cols) = (32usize, 48usize);
        let mut gen = FrameGenerator::new(&SimConfig::new(rows, cols, Dtype::Uint16));
        let px = gen.frame(ImageKey::Projection, Degrees(1.0));
        let byte = BloscParams { shuffle: Shuffle::Byte, ..BloscParams::default() };
        let bit = BloscParams { shuffle: Shuffle::Bit, ..BloscParams::default() };
        let good = Codec::new(byte, 2).compress(&px).unwrap().to_vec();
        let wrong = Codec::new(bit, 2).compress(&px).unwrap().to_vec();
        validate_chunk(&wrong, 2, px.len()).expect("a valid chunk, only shuffled otherwise");
        let start =
            SeriesStart::new("sh", Shape([rows as u32, cols as u32]), Dtype::Uint16, Compression::Blosc1(byte), 2);
        tx.start_series(&start).unwrap();
        tx.send_encoded(&header(0), &wrong).unwrap();
        tx.send_encoded(&header(0), &good).unwrap();
        tx.send_encoded(&header(1), &good).unwrap();
        tx.end_series(SeriesStatus::Complete, None).unwrap();
        let s = &thread.join().unwrap().series[0];
        assert_eq!(s.rejected.get(Reason::BloscHeader), 1);
        assert_eq!((s.received, s.missing.len()), (2, 0));
        let f = hdf5::File::open(&path).unwrap();
        let data: Vec<u16> = f.dataset("entry/instrument/detector/data").unwrap().read_raw().unwrap();
        let want: Vec<u16> = px.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
        assert!(data[..want.len()] == want[..], "frame 0 reads back as sent");
    }

    #[test]
    fn a_new_series_after_a_stale_one_closes_it_as_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ReceiverConfig::new(Output::Dir(dir.path().to_path_buf()));
        cfg.endpoint = "tcp://127.0.0.1:*".into();
        cfg.stale_after = Some(Duration::from_millis(300));
        let rx = Receiver::bind(cfg).unwrap();
        let ep = rx.endpoint();
        let thread = rx.spawn().unwrap();
        let live = thread.live();
        let wait = |n: u64, what: &dyn Fn() -> u64| {
            let t0 = std::time::Instant::now();
            while what() < n && t0.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        {
            // A sender that dies after 2 of 5 frames (no series end).
            let mut dead = SeriesSender::connect(&ep).unwrap();
            dead.start_series(&SeriesStart::new("old", Shape([2, 2]), Dtype::Uint8, Compression::None, 5)).unwrap();
            dead.send_frame(&header(0), &[1u8; 4]).unwrap();
            dead.send_frame(&header(3), &[1u8; 4]).unwrap();
            wait(2, &|| live.received.load(Ordering::Relaxed));
        }
        let mut tx = SeriesSender::connect(&ep).unwrap();
        // Too soon: the old series is not stale yet.
        tx.start_series(&SeriesStart::new("early", Shape([2, 2]), Dtype::Uint8, Compression::None, 1)).unwrap();
        tx.end_series(SeriesStatus::Aborted, None).unwrap();
        wait(1, &|| live.rejected.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(400));
        tx.start_series(&SeriesStart::new("new", Shape([2, 2]), Dtype::Uint8, Compression::None, 2)).unwrap();
        tx.send_frame(&header(0), &[2u8; 4]).unwrap();
        tx.send_frame(&header(1), &[2u8; 4]).unwrap();
        tx.end_series(SeriesStatus::Complete, None).unwrap();
        wait(2, &|| live.series_done.load(Ordering::Relaxed));
        let summary = thread.stop_and_join().unwrap();
        let names: Vec<&str> = summary.series.iter().map(|s| s.series.as_str()).collect();
        assert_eq!(names, ["old", "new"]);
        let (old, new) = (&summary.series[0], &summary.series[1]);
        assert!(old.abandoned.as_deref().is_some_and(|w| w.contains("\"new\"")), "{:?}", old.abandoned);
        assert_eq!(old.missing, vec![FrameIndex(1), FrameIndex(2), FrameIndex(4)]);
        assert_eq!(old.rejected.get(Reason::SeriesInProgress), 1, "the early start");
        assert_eq!(old.rejected.get(Reason::SeriesMismatch), 1, "the early series' end");
        assert!(read_str(&old.path, "status").starts_with("abandoned (no frame for"));
        assert_eq!((new.received, new.missing.len(), new.status), (2, 0, Some(SeriesStatus::Complete)));
        assert!(new.abandoned.is_none());
    }

    #[test]
    fn the_receive_high_water_mark_follows_the_frame_size() {
        assert_eq!(rcvhwm_for(64 << 20, 128 << 20, 16), 2);
        assert_eq!(rcvhwm_for(512 << 20, 128 << 20, 16), 1);
        assert_eq!(rcvhwm_for(1 << 10, 128 << 20, 16), 16);
    }
}

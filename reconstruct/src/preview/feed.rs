//! The receiver side of the live preview: a [`PreviewFeed`] is an [`acquisition::receiver::FrameObserver`]
//! that turns the frames a receiver accepts (header + payload exactly as received) into [`LivePreview`]
//! updates, and writes the preview slices as float32 TIFFs.
//!
//! The preview runs on a thread of its own (named `preview`), never on the receiver's writer thread. The
//! writer's calls ([`PreviewFeed::series_start`], [`PreviewFeed::frame`], [`PreviewFeed::series_end`]) only
//! copy the compressed payload into a buffer from a small pool and `try_send` it on a bounded channel; they
//! never wait for the preview. When the pool is empty (the preview fell behind) the frame is skipped by the
//! preview, counted ([`PreviewFeed::dropped`], tracing counter `counter.preview_dropped`, a running total per
//! series) and the preview reconstructs from the projections it got ("from K of N projections"). The pool
//! holds at most [`FeedOptions::queue_frames`] buffers and at most [`FeedOptions::queue_bytes`] of frames;
//! the preview thread returns each buffer once it has decompressed, converted and backprojected the frame,
//! so in steady state no frame buffer is allocated. The file the receiver writes is never affected.
//!
//! A frame the preview cannot use (a corrupt payload, a wrong size) is skipped and remembered as
//! [`PreviewFeed::error`]. Reading the preview ([`PreviewFeed::progress`], [`PreviewFeed::slices`]) shows
//! what the preview thread has done so far; [`PreviewFeed::finish`] waits until it has taken every frame
//! already queued (call it once the receiver has finished, before reading the final result).
//!
//! Written by whoever holds the feed ([`PreviewFeed::write`], e.g. `beamline demo` at its end), or, with
//! [`PreviewFeed::writing_next_to`], by the preview thread itself at every series end, after the frames
//! queued before it, into a folder next to the series' file (`beamline receive --preview`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use profiling::lock::{NamedGuard, NamedMutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver as ChanRx, Sender as ChanTx, TrySendError};

use acquisition::blosc::{decompress_validated, validate_chunk};
use acquisition::protocol::{Compression, Dtype, FrameHeader, SeriesEnd, SeriesStart};
use acquisition::receiver::Output;

use super::{LivePreview, Pixels, PreviewError, PreviewGeometry, PreviewProgress};
use crate::output::{tiff_name, write_tiff, TiffDepth, WriteError};

/// Environment variable read by [`FeedOptions::default`]: an artificial delay in milliseconds the preview
/// thread sleeps before each frame. **A test hook only** (it makes a deliberately slow preview, to show that
/// a preview that falls behind drops frames and never stalls the writer); leave it unset otherwise.
pub const TEST_DELAY_ENV: &str = "BEAMLINE_PREVIEW_TEST_DELAY_MS";

/// Control messages (series start and end) that may wait in the channel besides the frames.
const CONTROL_SLOTS: usize = 8;

/// How much a feed may hold for its preview thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedOptions {
    /// Frames that may wait for the preview thread (the pool's size in buffers), at least 1.
    pub queue_frames: usize,
    /// Bytes of frames (uncompressed size, an upper bound of what a buffer holds) that may wait.
    pub queue_bytes: u64,
    /// Test hook: the preview thread sleeps this long before each frame (see [`TEST_DELAY_ENV`]). Zero
    /// outside tests.
    pub test_frame_delay: Duration,
}

impl Default for FeedOptions {
    /// 64 frames and at most 64 MiB (8 frames of 2048x2048 u16); the delay from [`TEST_DELAY_ENV`], else 0.
    fn default() -> FeedOptions {
        let delay = std::env::var(TEST_DELAY_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
        FeedOptions { queue_frames: 64, queue_bytes: 64 << 20, test_frame_delay: Duration::from_millis(delay) }
    }
}

impl FeedOptions {
    /// Buffers a series of `frame_bytes`-byte frames may hold: as many as fit the byte budget, at least 1.
    fn limit(&self, frame_bytes: usize) -> usize {
        let by_bytes = usize::try_from(self.queue_bytes / frame_bytes.max(1) as u64).unwrap_or(usize::MAX);
        by_bytes.clamp(1, self.queue_frames.max(1))
    }
}

/// Which detector rows a feed previews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewRows {
    /// This many evenly spaced rows (`3`: a quarter, the middle, three quarters of the detector).
    Evenly(usize),
    /// These rows.
    Rows(Vec<usize>),
}

impl PreviewRows {
    /// The rows of a `rows`-row detector.
    pub fn choose(&self, rows: usize) -> Vec<usize> {
        match self {
            PreviewRows::Evenly(n) => {
                let n = (*n).max(1);
                (1..=n).map(|k| k * rows / (n + 1)).collect()
            }
            PreviewRows::Rows(r) => r.clone(),
        }
    }
}

impl std::str::FromStr for PreviewRows {
    type Err = String;

    /// `N` (evenly spaced rows) or a comma-separated list of rows `R1,R2,...` (a single row is `R,`).
    fn from_str(s: &str) -> Result<PreviewRows, String> {
        let bad = |p: &str| format!("{p:?} is not a row number: give N (evenly spaced rows) or R1,R2,...");
        if !s.contains(',') {
            let n: usize = s.trim().parse().map_err(|_| bad(s))?;
            return if n == 0 { Err("at least one preview row".into()) } else { Ok(PreviewRows::Evenly(n)) };
        }
        let rows = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().map_err(|_| bad(p)))
            .collect::<Result<Vec<usize>, String>>()?;
        if rows.is_empty() {
            return Err("at least one preview row".into());
        }
        Ok(PreviewRows::Rows(rows))
    }
}

/// What went wrong in a feed. A frame that fails is skipped; the file is unaffected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// The series' frames cannot be previewed (e.g. a chosen row outside the detector).
    #[error("series {series}: {reason}")]
    Layout {
        /// The series id.
        series: String,
        /// Why.
        reason: PreviewError,
    },
    /// A blosc payload did not decompress.
    #[error("frame {index}: {reason}")]
    Decode {
        /// The frame index.
        index: u64,
        /// The codec's words.
        reason: String,
    },
    /// The preview refused a frame.
    #[error("frame {index}: {reason}")]
    Frame {
        /// The frame index.
        index: u64,
        /// Why.
        reason: PreviewError,
    },
    /// Writing the slices is asked before any series reached the preview.
    #[error("no series reached the preview")]
    NoSeries,
    /// A slice file could not be written.
    #[error("writing the preview: {0}")]
    Write(String),
    /// The preview thread could not be started, or it panicked.
    #[error("preview thread: {0}")]
    Thread(String),
    /// The preview thread was so far behind that a series start or end could not be handed to it: the
    /// series is not previewed (its frames count as dropped).
    #[error("series {series}: the preview is too far behind to take it")]
    Behind {
        /// The series id.
        series: String,
    },
}

impl From<WriteError> for FeedError {
    fn from(e: WriteError) -> FeedError {
        FeedError::Write(e.to_string())
    }
}

/// Slices a feed wrote by itself at a series end.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenPreview {
    /// The series id.
    pub series: String,
    /// The folder.
    pub dir: PathBuf,
    /// The slice files, one per previewed row.
    pub files: Vec<PathBuf>,
    /// Projections the slices were made from.
    pub projections: usize,
    /// Projections the series was expected to hold.
    pub expected: usize,
    /// Frames of the series the preview skipped because it was behind.
    pub dropped: u64,
}

/// A live preview of a few rows of whatever series the receiver writes next (see the module documentation).
#[derive(Debug)]
pub struct PreviewFeed {
    rows: PreviewRows,
    projections: Option<usize>,
    next_to: Option<Output>,
    options: FeedOptions,
    shared: Arc<Shared>,
    ingest: Mutex<Ingest>,
}

/// What the preview thread and the readers share.
#[derive(Debug)]
struct Shared {
    /// Held by the preview thread for each frame it folds in (ms), so a reader waiting for it is recorded
    /// as a `wait.lock` on `preview_state` naming the holder.
    state: NamedMutex<State>,
    /// Frames of the current series skipped (set by the writer side).
    dropped: AtomicU64,
    /// Frames the preview thread has taken, since the feed was made.
    handled: AtomicU64,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            state: NamedMutex::new("preview_state", State::default()),
            dropped: AtomicU64::new(0),
            handled: AtomicU64::new(0),
        }
    }
}

/// The preview thread's work: the current series' preview and its scratch buffers.
#[derive(Debug, Default)]
struct State {
    series: String,
    preview: Option<LivePreview>,
    dtype: Option<Dtype>,
    compressed: bool,
    raw: Vec<u8>,
    typed: Typed,
    error: Option<FeedError>,
    written: Vec<Result<WrittenPreview, FeedError>>,
}

/// The writer side: the channel to the preview thread and the pool of frame buffers.
#[derive(Debug, Default)]
struct Ingest {
    worker: Option<Worker>,
    /// Buffers the current series may hold.
    limit: usize,
    /// Buffers made so far (in the channel, on the preview thread, or back in the pool).
    allocated: usize,
    /// Buffers back from a failed send.
    spare: Vec<Vec<u8>>,
    /// Frames of the current series skipped.
    dropped: u64,
    /// The current series' start did not reach the preview thread: its frames are all skipped.
    lost: bool,
    /// Why the writer side could not hand a series over (no thread, or the preview far behind).
    error: Option<FeedError>,
}

#[derive(Debug)]
struct Worker {
    jobs: ChanTx<Job>,
    pool: ChanRx<Vec<u8>>,
    thread: JoinHandle<()>,
}

#[derive(Debug)]
enum Job {
    Start(Box<SeriesStart>),
    Frame(FrameHeader, Vec<u8>),
    End { dropped: u64 },
}

impl PreviewFeed {
    /// A feed previewing `rows` evenly spaced detector rows of a series of `projections` projections.
    pub fn new(rows: usize, projections: usize) -> PreviewFeed {
        PreviewFeed::with_rows(PreviewRows::Evenly(rows), Some(projections))
    }

    /// A feed previewing `rows`. `projections` is how many projections each series holds; `None` takes
    /// it from the series start (the `angles` of its metadata, as `beamline simulate` and `beamline
    /// spread` send, else all its frames: the slices are rescaled by the share of projections received,
    /// so an over-estimate only shows as progress that never reaches its end).
    pub fn with_rows(rows: PreviewRows, projections: Option<usize>) -> PreviewFeed {
        PreviewFeed {
            rows,
            projections,
            next_to: None,
            options: FeedOptions::default(),
            shared: Arc::default(),
            ingest: Mutex::default(),
        }
    }

    /// Sets how much may wait for the preview thread (default [`FeedOptions::default`]).
    pub fn with_options(mut self, options: FeedOptions) -> PreviewFeed {
        self.options = options;
        self
    }

    /// Makes the feed write each series' slices itself when the series ends, into a folder next to the
    /// file the receiver writes to `output`: `F.preview/` for [`Output::File`] `F.h5`, and
    /// `DIR/<series>.preview/` (`-1`, `-2`, ... appended rather than overwriting) for [`Output::Dir`].
    /// What was written is in [`PreviewFeed::written`] (after [`PreviewFeed::finish`]).
    pub fn writing_next_to(mut self, output: &Output) -> PreviewFeed {
        self.next_to = Some(output.clone());
        self
    }

    fn lock(&self) -> NamedGuard<'_, State> {
        self.shared.state.lock()
    }

    fn ingest(&self) -> MutexGuard<'_, Ingest> {
        self.ingest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The preview thread, started on first use.
    fn worker<'a>(&self, ing: &'a mut Ingest) -> Result<&'a Worker, FeedError> {
        if ing.worker.is_none() {
            let (jobs, rx) = crossbeam_channel::bounded(self.options.queue_frames.max(1) + CONTROL_SLOTS);
            let (back, pool) = crossbeam_channel::unbounded();
            let thread = PreviewThread {
                rows: self.rows.clone(),
                projections: self.projections,
                next_to: self.next_to.clone(),
                delay: self.options.test_frame_delay,
                shared: self.shared.clone(),
            };
            let thread = std::thread::Builder::new()
                .name("preview".into())
                .spawn(move || thread.run(rx, back))
                .map_err(|e| FeedError::Thread(e.to_string()))?;
            ing.allocated = 0;
            ing.spare.clear();
            ing.worker = Some(Worker { jobs, pool, thread });
        }
        ing.worker.as_ref().ok_or_else(|| FeedError::Thread("no preview thread".into()))
    }

    /// A series starts: hands it to the preview thread, which lays out the preview for its frame shape.
    pub fn series_start(&self, start: &SeriesStart) {
        let mut guard = self.ingest();
        let ing = &mut *guard;
        let frame_bytes = start.shape.rows() * start.shape.cols() * start.dtype.size();
        ing.limit = self.options.limit(frame_bytes);
        ing.dropped = 0;
        self.shared.dropped.store(0, Ordering::Relaxed);
        let sent = self.worker(ing).and_then(|w| {
            w.jobs
                .try_send(Job::Start(Box::new(start.clone())))
                .map_err(|_| FeedError::Behind { series: start.series.clone() })
        });
        ing.lost = sent.is_err();
        if let Err(e) = sent {
            tracing::warn!(series = %start.series, "live preview: {e}");
            ing.error = Some(e);
        }
    }

    /// One accepted frame, its payload as received (a blosc1 chunk or raw little-endian pixels): copied
    /// into a pooled buffer for the preview thread, or, when the pool is empty, skipped and counted.
    pub fn frame(&self, header: &FrameHeader, payload: &[u8]) {
        let mut guard = self.ingest();
        let ing = &mut *guard;
        let Some(w) = ing.worker.as_ref().filter(|_| !ing.lost) else {
            return Self::skip(&mut ing.dropped, &self.shared);
        };
        // Buffers over this series' limit (made for a series of smaller frames) are freed as they come back.
        while ing.allocated > ing.limit {
            match ing.spare.pop().or_else(|| w.pool.try_recv().ok()) {
                Some(_) => ing.allocated -= 1,
                None => break,
            }
        }
        let buf = match ing.spare.pop().or_else(|| w.pool.try_recv().ok()) {
            Some(b) => Some(b),
            None if ing.allocated < ing.limit => {
                ing.allocated += 1;
                Some(Vec::with_capacity(payload.len()))
            }
            None => None,
        };
        let Some(mut buf) = buf else { return Self::skip(&mut ing.dropped, &self.shared) };
        buf.clear();
        buf.extend_from_slice(payload);
        match w.jobs.try_send(Job::Frame(*header, buf)) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                if let Job::Frame(_, buf) = job {
                    ing.spare.push(buf);
                }
                Self::skip(&mut ing.dropped, &self.shared);
            }
        }
    }

    /// Counts a frame the preview skips (a running total per series, as a tracing counter too).
    fn skip(dropped: &mut u64, shared: &Shared) {
        *dropped += 1;
        shared.dropped.store(*dropped, Ordering::Relaxed);
        tracing::trace!(counter.preview_dropped = *dropped);
    }

    /// The open series has been closed: the preview thread takes the frames queued before, then, with
    /// [`PreviewFeed::writing_next_to`], writes the series' slices.
    pub fn series_end(&self, _end: Option<&SeriesEnd>) {
        let mut ing = self.ingest();
        if ing.lost {
            return;
        }
        let dropped = ing.dropped;
        if let Some(w) = ing.worker.as_ref() {
            if w.jobs.try_send(Job::End { dropped }).is_err() {
                tracing::warn!("live preview: too far behind to take a series end; its slices are not written");
                ing.error = Some(FeedError::Behind { series: "(series end)".into() });
            }
        }
    }

    /// Waits until the preview thread has taken every frame and series end already handed to it (and
    /// written the slices of the series that ended), then stops it; a later series starts a new one. Call
    /// it from anywhere but the receiver's writer thread, e.g. once the receiver has finished.
    pub fn finish(&self) {
        let worker = self.ingest().worker.take();
        if let Some(Worker { jobs, pool, thread }) = worker {
            drop(jobs);
            if thread.join().is_err() {
                self.lock().error = Some(FeedError::Thread("the preview thread panicked".into()));
            }
            drop(pool);
        }
    }

    /// How far the preview has come (`None` before a series started).
    pub fn progress(&self) -> Option<PreviewProgress> {
        self.lock().preview.as_ref().map(LivePreview::progress)
    }

    /// Frames of the current series the preview skipped because it was behind (what the receiver wrote
    /// is unaffected).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Frames the preview thread has taken (previewed or refused) since the feed was made.
    pub fn handled(&self) -> u64 {
        self.shared.handled.load(Ordering::Relaxed)
    }

    /// The last error a frame of the current series caused, if any (or why a series could not be handed
    /// to the preview thread).
    pub fn error(&self) -> Option<FeedError> {
        let handing = self.ingest().error.clone();
        self.lock().error.clone().or(handing)
    }

    /// The current preview slices (one `out_size^2` image per previewed row), `None` before a series.
    pub fn slices(&self) -> Option<Vec<Vec<f32>>> {
        self.lock().preview.as_ref().map(LivePreview::slices)
    }

    /// What the feed wrote by itself at series ends (see [`PreviewFeed::writing_next_to`]), oldest first.
    pub fn written(&self) -> Vec<Result<WrittenPreview, FeedError>> {
        self.lock().written.clone()
    }

    /// Writes the current preview slices as float32 TIFFs `dir/slice_<row>.tif`; returns the files.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, FeedError> {
        write_state(&self.lock(), dir)
    }
}

impl Drop for PreviewFeed {
    fn drop(&mut self) {
        self.finish();
    }
}

/// What the preview thread owns besides the shared state.
struct PreviewThread {
    rows: PreviewRows,
    projections: Option<usize>,
    next_to: Option<Output>,
    delay: Duration,
    shared: Arc<Shared>,
}

impl PreviewThread {
    fn lock(&self) -> NamedGuard<'_, State> {
        self.shared.state.lock()
    }

    /// Takes jobs until the writer side closes the channel; every frame buffer goes back to the pool.
    fn run(self, jobs: ChanRx<Job>, pool: ChanTx<Vec<u8>>) {
        loop {
            let job = {
                // Starved by the writer, which hands every frame it writes to the preview.
                let _w = tracing::debug_span!("wait.queue", queue = "preview", wants = "data", on = "writer").entered();
                jobs.recv()
            };
            let Ok(job) = job else { return };
            match job {
                Job::Start(start) => self.lock().start(&start, &self.rows, self.projections),
                Job::Frame(header, buf) => {
                    if !self.delay.is_zero() {
                        std::thread::sleep(self.delay);
                    }
                    {
                        let _s = tracing::trace_span!("preview.frame", frame = header.index.0).entered();
                        self.lock().frame(&header, &buf);
                    }
                    self.shared.handled.fetch_add(1, Ordering::Relaxed);
                    tracing::trace!(counter.preview_queue = jobs.len() as u64);
                    // The writer side may have gone (finish); the buffer is then freed here.
                    let _ = pool.send(buf);
                }
                Job::End { dropped } => {
                    if let Some(output) = &self.next_to {
                        let _s = tracing::trace_span!("preview.write").entered();
                        self.lock().write_next_to(output, dropped);
                    }
                }
            }
        }
    }
}

impl State {
    /// Lays out the preview of a new series (what was written before is kept).
    fn start(&mut self, start: &SeriesStart, rows: &PreviewRows, projections: Option<usize>) {
        let (n_rows, cols) = (start.shape.rows(), start.shape.cols());
        let chosen = rows.choose(n_rows);
        let projections = projections.unwrap_or_else(|| projections_of(start));
        self.series = start.series.clone();
        self.preview = None;
        self.error = None;
        match LivePreview::new(PreviewGeometry::centered(n_rows, cols, projections), &chosen) {
            Ok(p) => {
                self.preview = Some(p);
                self.dtype = Some(start.dtype);
                self.compressed = matches!(start.compression, Compression::Blosc1(_));
            }
            Err(reason) => self.error = Some(FeedError::Layout { series: start.series.clone(), reason }),
        }
    }

    /// Decompresses, converts and backprojects one frame (scratch buffers reused).
    fn frame(&mut self, header: &FrameHeader, payload: &[u8]) {
        let (Some(preview), Some(dtype)) = (self.preview.as_mut(), self.dtype) else { return };
        // Frames that are not projections, flats or darks (NXtomo's "invalid") are not previewed.
        if !header.image_key.is_valid() {
            return;
        }
        let g = preview.geometry();
        let bytes = g.rows * g.cols * dtype.size();
        let pixels: &[u8] = if self.compressed {
            self.raw.resize(bytes, 0);
            let decoded = validate_chunk(payload, dtype.size(), bytes)
                .and_then(|_| decompress_validated(payload, &mut self.raw, 1));
            if let Err(e) = decoded {
                self.error = Some(FeedError::Decode { index: header.index.0, reason: e.to_string() });
                return;
            }
            &self.raw
        } else {
            payload
        };
        let typed = self.typed.load(dtype, pixels);
        if let Err(reason) = preview.on_frame(header.image_key, header.angle, typed) {
            self.error = Some(FeedError::Frame { index: header.index.0, reason });
        }
    }

    /// Writes the series' slices next to the receiver's `output` and remembers what was written.
    fn write_next_to(&mut self, output: &Output, dropped: u64) {
        let Some(progress) = self.preview.as_ref().map(LivePreview::progress) else { return };
        let dir = match output {
            Output::File(f) => f.with_extension("preview"),
            Output::Dir(d) => {
                let mut p = d.join(format!("{}.preview", self.series));
                let mut k = 1;
                while p.exists() {
                    p = d.join(format!("{}-{k}.preview", self.series));
                    k += 1;
                }
                p
            }
        };
        let result = write_state(self, &dir).map(|files| WrittenPreview {
            series: self.series.clone(),
            dir,
            files,
            projections: progress.projections,
            expected: progress.expected,
            dropped,
        });
        self.written.push(result);
    }
}

/// Projections a series start announces: `metadata.angles` when present, else every frame.
fn projections_of(start: &SeriesStart) -> usize {
    start
        .metadata
        .get("angles")
        .and_then(serde_json::Value::as_u64)
        .filter(|&n| n > 0)
        .unwrap_or(start.frames)
        .try_into()
        .unwrap_or(usize::MAX)
}

fn write_state(st: &State, dir: &Path) -> Result<Vec<PathBuf>, FeedError> {
    let preview = st.preview.as_ref().ok_or(FeedError::NoSeries)?;
    std::fs::create_dir_all(dir).map_err(|e| FeedError::Write(format!("creating {}: {e}", dir.display())))?;
    let size = preview.geometry().out_size;
    let provenance = serde_json::json!({
        "what": "live preview (incremental filtered backprojection while frames arrived)",
        "series": st.series,
        "progress": format!("{:?}", preview.progress()),
    })
    .to_string();
    let mut files = Vec::new();
    for (row, slice) in preview.rows().iter().zip(preview.slices()) {
        let path = dir.join(tiff_name(*row));
        write_tiff(&path, size, &slice, TiffDepth::F32, &provenance)?;
        files.push(path);
    }
    Ok(files)
}

/// The receiver's writer thread drives the feed; each call only hands work to the preview thread.
impl acquisition::receiver::FrameObserver for PreviewFeed {
    fn series_start(&self, start: &SeriesStart) {
        PreviewFeed::series_start(self, start);
    }

    fn frame(&self, header: &FrameHeader, payload: &[u8]) {
        PreviewFeed::frame(self, header, payload);
    }

    fn series_end(&self, end: Option<&SeriesEnd>) {
        PreviewFeed::series_end(self, end);
    }
}

/// Reusable buffers for little-endian pixels in their element type.
#[derive(Debug, Default)]
struct Typed {
    u16: Vec<u16>,
    u32: Vec<u32>,
    f32: Vec<f32>,
}

impl Typed {
    /// `b` as pixels of `dtype` (8-bit pixels are used in place; wider ones decoded into a kept buffer).
    fn load<'a>(&'a mut self, dtype: Dtype, b: &'a [u8]) -> Pixels<'a> {
        match dtype {
            Dtype::Uint8 => Pixels::U8(b),
            Dtype::Uint16 => {
                self.u16.clear();
                self.u16.extend(b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])));
                Pixels::U16(&self.u16)
            }
            Dtype::Uint32 => {
                self.u32.clear();
                self.u32.extend(b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                Pixels::U32(&self.u32)
            }
            Dtype::Float32 => {
                self.f32.clear();
                self.f32.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                Pixels::F32(&self.f32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acquisition::blosc::Codec;
    use acquisition::phantom::{rasterize_3d_slice, shepp_logan_3d, Detector};
    use acquisition::protocol::ImageKey;
    use acquisition::protocol::{BloscParams, Degrees as WireDegrees, FrameIndex, Shape};
    use acquisition::sim::{FrameGenerator, Schedule, SimConfig};

    fn simulated(feed: &PreviewFeed, size: usize, angles: u64, metadata: serde_json::Value) -> SimConfig {
        let cfg = SimConfig::new(size, size, Dtype::Uint16);
        let schedule = Schedule { darks: 4, flats: 4, angles, range: WireDegrees(180.0) };
        let mut start = SeriesStart::new(
            "t",
            Shape([size as u32, size as u32]),
            Dtype::Uint16,
            Compression::Blosc1(BloscParams::default()),
            schedule.frames(),
        );
        start.metadata = metadata;
        feed.series_start(&start);
        let mut gen = FrameGenerator::new(&cfg);
        let mut codec = Codec::new(BloscParams::default(), 2);
        for i in 0..schedule.frames() {
            let (key, angle) = schedule.frame(i);
            let px = gen.frame(key, angle);
            let header = FrameHeader { index: FrameIndex(i), image_key: key, angle, timestamp: 0.0 };
            feed.frame(&header, codec.compress(&px).unwrap());
        }
        cfg
    }

    /// A feed whose preview never falls behind in these tests (the whole series fits its queue).
    fn roomy(feed: PreviewFeed) -> PreviewFeed {
        feed.with_options(FeedOptions { queue_frames: 1 << 16, queue_bytes: u64::MAX, ..FeedOptions::default() })
    }

    /// Relative L2 distance of a preview slice of `row` from the phantom slice.
    fn distance(slice: &[f32], size: usize, row: usize, attenuation: f64) -> f32 {
        let truth = rasterize_3d_slice(&shepp_logan_3d(), &Detector::centered(size, size), row, size);
        let k = (attenuation / size as f64) as f32;
        let (mut num, mut den) = (0f32, 0f32);
        for (t, v) in truth.iter().zip(slice) {
            num += (t * k - v).powi(2);
            den += (t * k).powi(2);
        }
        (num / den).sqrt()
    }

    /// The simulator's frames, blosc-compressed as on the wire, through the feed: the preview of the
    /// middle row looks like the phantom slice, and its TIFF is written.
    #[test]
    fn simulated_blosc_series_previews_the_phantom() {
        let (size, angles) = (48usize, 90u64);
        let feed = roomy(PreviewFeed::new(1, angles as usize));
        let cfg = simulated(&feed, size, angles, serde_json::json!({}));
        feed.finish();
        assert_eq!(feed.error(), None);
        assert_eq!((feed.dropped(), feed.handled()), (0, angles + 8));
        let p = feed.progress().unwrap();
        assert_eq!((p.projections, p.darks, p.flats, p.expected), (angles as usize, 4, 4, angles as usize));

        let row = size / 2;
        let rel = distance(&feed.slices().unwrap()[0], size, row, cfg.attenuation);
        assert!(rel < 0.5, "preview differs from the phantom by {rel} (relative L2)");

        let dir = tempfile::tempdir().unwrap();
        let files = feed.write(dir.path()).unwrap();
        assert_eq!(files, vec![dir.path().join(tiff_name(row))]);
        assert!(files[0].metadata().unwrap().len() as usize > size * size * 4);
        let (w, h, back) = crate::output::read_f32_tiff(&files[0]).unwrap();
        assert_eq!((w, h), (size, size));
        assert_eq!(back, feed.slices().unwrap()[0]);
    }

    /// Without a projection count the feed takes `angles` from the series metadata, or falls back to all
    /// frames; either way the finished slices are the same (the rescaling covers the over-estimate).
    #[test]
    fn projections_come_from_the_series_start_when_not_given() {
        let (size, angles) = (32usize, 60u64);
        let known = roomy(PreviewFeed::new(2, angles as usize));
        simulated(&known, size, angles, serde_json::json!({}));
        let from_meta = roomy(PreviewFeed::with_rows(PreviewRows::Evenly(2), None));
        simulated(&from_meta, size, angles, serde_json::json!({ "angles": angles }));
        let from_frames = roomy(PreviewFeed::with_rows(PreviewRows::Evenly(2), None));
        simulated(&from_frames, size, angles, serde_json::json!({}));
        for f in [&known, &from_meta, &from_frames] {
            f.finish();
        }
        assert_eq!(from_meta.progress().unwrap().expected, angles as usize);
        assert_eq!(from_frames.progress().unwrap().expected, angles as usize + 8);
        let k = known.slices().unwrap();
        assert_eq!(from_meta.slices().unwrap(), k);
        for (a, b) in from_frames.slices().unwrap().iter().zip(&k) {
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            let peak = b.iter().map(|y| y.abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-5 * peak.max(1e-12), "rescaled slice differs by {worst} (peak {peak})");
        }
    }

    /// Writing by itself: at the series end the slices land next to the receiver's file.
    #[test]
    fn writes_next_to_the_output_at_the_series_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scan.h5");
        let feed = roomy(PreviewFeed::with_rows(PreviewRows::Rows(vec![5, 20]), None))
            .writing_next_to(&Output::File(file.clone()));
        simulated(&feed, 32, 30, serde_json::json!({ "angles": 30 }));
        assert!(feed.written().is_empty());
        feed.series_end(None);
        feed.finish();
        let written = feed.written();
        let w = written[0].as_ref().unwrap();
        assert_eq!(w.dir, dir.path().join("scan.preview"));
        assert_eq!(w.files, vec![w.dir.join(tiff_name(5)), w.dir.join(tiff_name(20))]);
        assert_eq!((w.projections, w.expected, w.dropped), (30, 30, 0));
        assert!(w.files.iter().all(|f| f.is_file()));

        let feed = roomy(PreviewFeed::with_rows(PreviewRows::Evenly(1), None))
            .writing_next_to(&Output::Dir(dir.path().into()));
        for _ in 0..2 {
            simulated(&feed, 16, 10, serde_json::json!({}));
            feed.series_end(None);
        }
        feed.finish();
        let dirs: Vec<PathBuf> = feed.written().into_iter().map(|w| w.unwrap().dir).collect();
        assert_eq!(dirs, vec![dir.path().join("t.preview"), dir.path().join("t-1.preview")]);
    }

    #[test]
    fn a_row_outside_the_detector_is_a_layout_error() {
        let feed = PreviewFeed::with_rows(PreviewRows::Rows(vec![40]), Some(10));
        simulated(&feed, 16, 10, serde_json::json!({}));
        feed.finish();
        assert!(matches!(feed.error(), Some(FeedError::Layout { .. })), "{:?}", feed.error());
        assert_eq!(feed.write(Path::new("/nonexistent")), Err(FeedError::NoSeries));
    }

    #[test]
    fn rows_parse_as_a_count_or_a_list() {
        assert_eq!("3".parse::<PreviewRows>(), Ok(PreviewRows::Evenly(3)));
        assert_eq!("10, 64,100".parse::<PreviewRows>(), Ok(PreviewRows::Rows(vec![10, 64, 100])));
        assert_eq!("7,".parse::<PreviewRows>(), Ok(PreviewRows::Rows(vec![7])));
        assert!("0".parse::<PreviewRows>().is_err());
        assert!("a,b".parse::<PreviewRows>().is_err());
        assert_eq!(PreviewRows::Evenly(3).choose(64), vec![16, 32, 48]);
    }

    #[test]
    fn a_corrupt_payload_is_reported_not_fatal() {
        let start = SeriesStart::new("t", Shape([8, 8]), Dtype::Uint16, Compression::Blosc1(BloscParams::default()), 3);
        let feed = PreviewFeed::new(2, 1);
        feed.series_start(&start);
        let header =
            FrameHeader { index: FrameIndex(0), image_key: ImageKey::Dark, angle: WireDegrees(0.0), timestamp: 0.0 };
        feed.frame(&header, &[1, 2, 3]);
        feed.finish();
        assert!(matches!(feed.error(), Some(FeedError::Decode { index: 0, .. })), "{:?}", feed.error());
        assert_eq!(feed.progress().unwrap().darks, 0);
    }

    /// A preview slower than the frames: the writer side never waits, the frames the pool cannot take are
    /// counted as dropped, every frame is either previewed or dropped, and the slices are written from the
    /// projections that were previewed.
    #[test]
    fn a_slow_preview_drops_frames_and_the_writer_side_never_waits() {
        let dir = tempfile::tempdir().unwrap();
        let options =
            FeedOptions { queue_frames: 3, queue_bytes: u64::MAX, test_frame_delay: Duration::from_millis(200) };
        let feed = PreviewFeed::with_rows(PreviewRows::Evenly(1), None)
            .with_options(options)
            .writing_next_to(&Output::File(dir.path().join("s.h5")));
        let (angles, frames) = (40u64, 48u64);
        simulated(&feed, 16, angles, serde_json::json!({ "angles": angles }));
        feed.series_end(None);
        // All 48 frames were handed over in far less than 3 x 200 ms: the preview has not taken them all.
        let dropped = feed.dropped();
        assert!(dropped > 0 && dropped < frames, "dropped {dropped} of {frames}");
        assert!(feed.handled() < frames - dropped, "the preview thread kept up: {} handled", feed.handled());
        assert!(feed.written().is_empty(), "the slices were written before the queued frames were taken");
        feed.finish();
        assert_eq!(feed.handled() + dropped, frames, "every frame is previewed or counted as dropped");
        let written = feed.written();
        let w = written[0].as_ref().unwrap();
        assert_eq!(w.dropped, dropped);
        assert_eq!(w.expected, angles as usize);
        assert!(w.projections < angles as usize, "{} projections", w.projections);
        assert!(w.files.iter().all(|f| f.is_file()));
    }
}

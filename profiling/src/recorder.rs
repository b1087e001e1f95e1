//! The recording layer: spans, instant events and counters go into per-thread buffers; full buffers are
//! handed to one background writer thread over a bounded channel. When the writer falls behind, whole
//! batches are dropped and counted — memory never grows without bound.
//!
//! Records are packed into each batch as bytes ([`Batch`]: about 50 bytes per span plus its fields, half
//! the size of an enum value), so the writer can fall behind for longer (a busy machine that does not
//! schedule it for tens of ms) before anything is dropped.
//!
//! Memory bound: `threads × batch_records` records being filled plus `max_batches_in_flight ×
//! batch_records` waiting for the writer, each about 50 bytes plus its fields.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::clock;
use crate::json::{push_str, CounterVisitor, FieldWriter};
use crate::Error;

/// Sizes of the recording buffers.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Records per thread buffer before it is handed to the writer.
    pub batch_records: usize,
    /// Full batches that may wait for the writer; beyond this, batches are dropped and counted.
    pub max_batches_in_flight: usize,
    /// Size cap of the log, bytes: past it, records are no longer written one by one but summarised (count
    /// and total duration per name, written at the end), with an event saying where the cap was reached.
    pub max_log_bytes: u64,
    /// Record per-frame spans (spans at `TRACE` level) too. Off: their callsites are disabled once, in
    /// `tracing`'s callsite cache, so each costs a few ns (see [`Detail`]).
    pub frames: bool,
}

/// How much a run records: per-stage spans always; per-frame spans (`trace_span!`) only when asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// Spans at `DEBUG` level and above, all events and counters (the default).
    #[default]
    Stages,
    /// Everything, per-frame (`TRACE`) spans included.
    Frames,
}

/// Name of the environment variable that selects the [`Detail`]: `frames` records per-frame spans.
pub const TRACE_ENV: &str = "BEAMLINE_TRACE";

impl Detail {
    /// Parses `stages` or `frames` (case-insensitive); `None` for anything else.
    pub fn parse(s: &str) -> Option<Detail> {
        match s.trim().to_ascii_lowercase().as_str() {
            "frames" | "frame" | "all" => Some(Detail::Frames),
            "stages" | "stage" | "" => Some(Detail::Stages),
            _ => None,
        }
    }

    /// The detail `$BEAMLINE_TRACE` asks for; unset or unknown: [`Detail::Stages`].
    pub fn from_env() -> Detail {
        std::env::var(TRACE_ENV).ok().and_then(|v| Detail::parse(&v)).unwrap_or_default()
    }
}

/// Default [`Config::max_log_bytes`]: 256 MiB (`BEAMLINE_LOG_MAX_MB` overrides it for [`install`]).
pub const DEFAULT_MAX_LOG_BYTES: u64 = 256 << 20;

impl Default for Config {
    fn default() -> Self {
        // 1024 × 256 ≈ 262k records in flight, about 16 MB at most (only what is waiting is allocated): a
        // pipeline's stage spans for minutes, or ~70 ms of a thread recording nothing but spans.
        Config { batch_records: 1024, max_batches_in_flight: 256, max_log_bytes: DEFAULT_MAX_LOG_BYTES, frames: false }
    }
}

/// What the header of a log says about the run.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Subcommand name, e.g. `acquire` or `bench trace`.
    pub command: String,
    /// Full command line.
    pub argv: Vec<String>,
    /// Version of the program.
    pub version: String,
}

/// How a run ended, written to the footer of its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command succeeded.
    Success,
    /// The command failed with this exit code and error text.
    Failure {
        /// Process exit code.
        exit_code: i32,
        /// The error as shown to the user.
        error: String,
        /// The error's chain of causes, outermost first, each cause's own message (`anyhow::Error::chain`);
        /// its last element is the root cause, the error's class in `beamline runs report`. Empty: unknown.
        chain: Vec<String>,
    },
}

/// Counts of what the recorder saw, returned by [`Guard::finish`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Records written to the log (spans, events, counter samples).
    pub written: u64,
    /// Records dropped because the writer could not keep up.
    pub dropped: u64,
    /// Records past the size cap, summarised instead of written.
    pub capped: u64,
}

/// A span's fields as JSON members: inline when short (the common case, no allocation on the
/// instrumented thread), else on the heap.
#[derive(Debug)]
enum Fields {
    Inline { len: u8, buf: [u8; INLINE_FIELDS] },
    Heap(String),
}

const INLINE_FIELDS: usize = 62;

impl Fields {
    fn new(json: &str) -> Fields {
        if json.len() <= INLINE_FIELDS {
            let mut buf = [0u8; INLINE_FIELDS];
            buf[..json.len()].copy_from_slice(json.as_bytes());
            Fields::Inline { len: json.len() as u8, buf }
        } else {
            Fields::Heap(json.to_owned())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // The inline bytes are always a whole `&str` copied in `new`.
            Fields::Inline { len, buf } => std::str::from_utf8(&buf[..usize::from(*len)]).unwrap_or(""),
            Fields::Heap(s) => s,
        }
    }

    /// Appends the members of `values` (from `Span::record`).
    fn record(&mut self, values: &Record<'_>) {
        let mut more = String::new();
        values.record(&mut FieldWriter { out: &mut more, message: None });
        self.append(&more);
    }

    /// Appends more members.
    fn append(&mut self, more: &str) {
        if more.is_empty() {
            return;
        }
        let mut s = self.as_str().to_owned();
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(more);
        *self = Fields::new(&s);
    }
}

thread_local! {
    /// Scratch buffer the fields of a new span are formatted into, reused (no allocation per span).
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Formats `attrs`' fields into [`Fields`] through the thread's scratch buffer.
fn format_fields(record: impl FnOnce(&mut FieldWriter<'_>)) -> Fields {
    SCRATCH
        .try_with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut out) => {
                out.clear();
                record(&mut FieldWriter { out: &mut out, message: None });
                Fields::new(&out)
            }
            Err(_) => {
                let mut out = String::new();
                record(&mut FieldWriter { out: &mut out, message: None });
                Fields::new(&out)
            }
        })
        .unwrap_or(Fields::Inline { len: 0, buf: [0; INLINE_FIELDS] })
}

#[derive(Debug)]
enum Rec {
    Span { id: u64, parent: u64, name: &'static str, start: u64, end: u64, fields: Fields },
    Instant { ts: u64, span: u64, level: &'static str, name: String, fields: String },
    Counter { ts: u64, name: &'static str, value: f64 },
}

/// Records of one thread packed as bytes: per record a tag byte, its numbers (native endian) and its
/// strings (u32 length, then the bytes) in `bytes`; its `&'static str` names in `names`, in order.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    names: Vec<&'static str>,
    len: usize,
}

/// Bytes a packed span takes besides its fields: tag, 4 numbers, fields length.
const PACKED_SPAN: usize = 1 + 4 * 8 + 4;

impl Batch {
    fn with_capacity(records: usize) -> Batch {
        Batch { bytes: Vec::with_capacity(records * (PACKED_SPAN + 16)), names: Vec::with_capacity(records), len: 0 }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn num(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_ne_bytes());
    }

    fn text(&mut self, s: &str) {
        let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&n.to_ne_bytes());
        self.bytes.extend_from_slice(&s.as_bytes()[..n as usize]);
    }

    fn put(&mut self, rec: Rec) {
        match rec {
            Rec::Span { id, parent, name, start, end, fields } => {
                // The fixed part in one copy: this runs on the instrumented thread.
                let f = fields.as_str().as_bytes();
                let mut head = [0u8; PACKED_SPAN];
                for (k, v) in [id, parent, start, end].into_iter().enumerate() {
                    head[1 + 8 * k..9 + 8 * k].copy_from_slice(&v.to_ne_bytes());
                }
                let n = u32::try_from(f.len()).unwrap_or(u32::MAX);
                head[33..].copy_from_slice(&n.to_ne_bytes());
                self.bytes.extend_from_slice(&head);
                self.bytes.extend_from_slice(&f[..n as usize]);
                self.names.push(name);
            }
            Rec::Instant { ts, span, level, name, fields } => {
                self.bytes.push(1);
                self.num(ts);
                self.num(span);
                self.names.push(level);
                self.text(&name);
                self.text(&fields);
            }
            Rec::Counter { ts, name, value } => {
                self.bytes.push(2);
                self.num(ts);
                self.num(value.to_bits());
                self.names.push(name);
            }
        }
        self.len += 1;
    }

    fn iter(&self) -> BatchIter<'_> {
        BatchIter { bytes: &self.bytes, names: self.names.iter() }
    }
}

/// A record read back from a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum RecRef<'a> {
    Span { id: u64, parent: u64, name: &'static str, start: u64, end: u64, fields: &'a str },
    Instant { ts: u64, span: u64, level: &'static str, name: &'a str, fields: &'a str },
    Counter { ts: u64, name: &'static str, value: f64 },
}

struct BatchIter<'a> {
    bytes: &'a [u8],
    names: std::slice::Iter<'a, &'static str>,
}

impl<'a> BatchIter<'a> {
    fn num(&mut self) -> Option<u64> {
        let (h, rest) = self.bytes.split_first_chunk::<8>()?;
        self.bytes = rest;
        Some(u64::from_ne_bytes(*h))
    }

    fn text(&mut self) -> Option<&'a str> {
        let (h, rest) = self.bytes.split_first_chunk::<4>()?;
        let n = u32::from_ne_bytes(*h) as usize;
        if rest.len() < n {
            return None;
        }
        let (t, rest) = rest.split_at(n);
        self.bytes = rest;
        // Written from a whole `&str` by `Batch::text`.
        std::str::from_utf8(t).ok()
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = RecRef<'a>;

    fn next(&mut self) -> Option<RecRef<'a>> {
        let (&tag, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        match tag {
            0 => {
                let (id, parent, start, end) = (self.num()?, self.num()?, self.num()?, self.num()?);
                let name = *self.names.next()?;
                Some(RecRef::Span { id, parent, name, start, end, fields: self.text()? })
            }
            1 => {
                let (ts, span) = (self.num()?, self.num()?);
                let level = *self.names.next()?;
                let (name, fields) = (self.text()?, self.text()?);
                Some(RecRef::Instant { ts, span, level, name, fields })
            }
            2 => {
                let (ts, value) = (self.num()?, f64::from_bits(self.num()?));
                Some(RecRef::Counter { ts, name: self.names.next()?, value })
            }
            _ => None,
        }
    }
}

struct ThreadBuf {
    tid: u64,
    name: String,
    recs: Mutex<Batch>,
}

enum Msg {
    Batch(Arc<ThreadBuf>, Batch),
    Finish(String),
}

struct Shared {
    me: Weak<Shared>,
    key: u64,
    config: Config,
    next_span: AtomicU64,
    dropped: AtomicU64,
    tx: Sender<Msg>,
    threads: Mutex<Vec<Arc<ThreadBuf>>>,
    panic: Arc<OnceLock<String>>,
}

static NEXT_RECORDER: AtomicU64 = AtomicU64::new(1);

struct Local {
    shared: Weak<Shared>,
    key: u64,
    buf: Arc<ThreadBuf>,
}

impl Drop for Local {
    fn drop(&mut self) {
        // Thread exit: hand over what is left and forget this thread's buffer.
        if let Some(shared) = self.shared.upgrade() {
            shared.flush_thread(&self.buf, false);
            if let Ok(mut ts) = shared.threads.lock() {
                ts.retain(|t| !Arc::ptr_eq(t, &self.buf));
            }
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

impl Shared {
    fn push(&self, rec: Rec) {
        let pushed = LOCAL.try_with(|locals| {
            let Ok(mut locals) = locals.try_borrow_mut() else { return false };
            let i = match locals.iter().position(|l| l.key == self.key) {
                Some(i) => i,
                None => {
                    let buf = Arc::new(ThreadBuf {
                        tid: clock::thread_id(),
                        name: std::thread::current().name().unwrap_or("unnamed").to_owned(),
                        recs: Mutex::new(Batch::with_capacity(self.config.batch_records)),
                    });
                    if let Ok(mut ts) = self.threads.lock() {
                        ts.push(buf.clone());
                    }
                    locals.push(Local { shared: self.me.clone(), key: self.key, buf });
                    locals.len() - 1
                }
            };
            let buf = &locals[i].buf;
            let Ok(mut recs) = buf.recs.lock() else { return false };
            recs.put(rec);
            if recs.len() >= self.config.batch_records {
                let full = std::mem::replace(&mut *recs, Batch::with_capacity(self.config.batch_records));
                drop(recs);
                self.send(buf.clone(), full, false);
            }
            true
        });
        if !matches!(pushed, Ok(true)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands a batch to the writer; without `block`, a full channel drops the batch (counted).
    fn send(&self, thread: Arc<ThreadBuf>, recs: Batch, block: bool) {
        if recs.is_empty() {
            return;
        }
        let n = recs.len() as u64;
        let msg = Msg::Batch(thread, recs);
        let ok = if block {
            self.tx.send(msg).is_ok()
        } else {
            match self.tx.try_send(msg) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            }
        };
        if !ok {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn flush_thread(&self, buf: &Arc<ThreadBuf>, block: bool) {
        let recs = match buf.recs.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => return,
        };
        self.send(buf.clone(), recs, block);
    }

    fn span_id(&self) -> u64 {
        self.next_span.fetch_add(1, Ordering::Relaxed)
    }
}

/// Per-span state kept in the registry between creation and close.
struct SpanRec {
    id: u64,
    parent: u64,
    start: u64,
    fields: Fields,
}

/// The `tracing` layer that records into a run log. Build it with [`recorder`] or [`record_to_file`]; the
/// matching [`Guard`] writes the footer and closes the log.
pub struct RecordingLayer {
    shared: Arc<Shared>,
}

impl Shared {
    /// The record of a new span, its parent being the span with log id `parent` (0: none).
    fn open_span(&self, attrs: &Attributes<'_>, parent: u64) -> SpanRec {
        let fields = if attrs.fields().is_empty() {
            Fields::Inline { len: 0, buf: [0; INLINE_FIELDS] }
        } else {
            format_fields(|w| attrs.record(w))
        };
        SpanRec { id: self.span_id(), parent, start: clock::mono_ns(), fields }
    }

    fn close_span(&self, rec: SpanRec, name: &'static str) {
        let end = clock::mono_ns();
        self.push(Rec::Span { id: rec.id, parent: rec.parent, name, start: rec.start, end, fields: rec.fields });
    }

    /// Records `event`, inside the span with log id `span` (0: none).
    fn event(&self, event: &Event<'_>, span: u64) {
        let ts = clock::mono_ns();
        let meta = event.metadata();
        if meta.fields().iter().any(|f| f.name().starts_with(crate::COUNTER_PREFIX)) {
            let mut cv = CounterVisitor::default();
            event.record(&mut cv);
            for (name, value) in cv.samples {
                self.push(Rec::Counter { ts, name, value });
            }
            return;
        }
        let mut fields = String::new();
        let mut fw = FieldWriter { out: &mut fields, message: None };
        event.record(&mut fw);
        let name = fw.message.take().unwrap_or_else(|| meta.name().to_owned());
        self.push(Rec::Instant { ts, span, level: meta.level().as_str(), name, fields });
    }

    /// Whether this recorder records what `meta` describes: per-frame (`TRACE`) spans only with
    /// [`Config::frames`]; everything else always.
    fn wants(&self, meta: &Metadata<'_>) -> bool {
        self.config.frames || !(meta.is_span() && *meta.level() == Level::TRACE)
    }

    fn interest(&self, meta: &Metadata<'_>) -> Interest {
        // `never` is cached in the callsite: a disabled span then costs one atomic load.
        if self.wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
}

impl<S> Layer<S> for RecordingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.shared.interest(meta)
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.shared.wants(meta)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| p.extensions().get::<SpanRec>().map(|r| r.id)).unwrap_or(0);
        let rec = self.shared.open_span(attrs, parent);
        span.extensions_mut().insert(rec);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(rec) = ext.get_mut::<SpanRec>() {
            rec.fields.record(values);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = ctx.event_span(event).and_then(|s| s.extensions().get::<SpanRec>().map(|r| r.id)).unwrap_or(0);
        self.shared.event(event, span);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(rec) = span.extensions_mut().remove::<SpanRec>() else { return };
        self.shared.close_span(rec, span.metadata().name());
    }
}

impl RecordingLayer {
    /// This recorder as a subscriber of its own ([`RecordingSubscriber`], no `tracing_subscriber::Registry`
    /// underneath: the fast path), as a dispatcher (to use with `tracing::dispatcher::with_default`).
    pub fn into_dispatch(self) -> tracing::Dispatch {
        tracing::Dispatch::new(self.into_subscriber(None))
    }

    /// This recorder as a subscriber of its own; events that `stderr` is enabled for are handed to it too
    /// (e.g. a `tracing_subscriber::fmt` subscriber printing warnings). Spans are not: it sees events
    /// outside any span.
    pub fn into_subscriber(self, stderr: Option<Box<dyn Subscriber + Send + Sync>>) -> RecordingSubscriber {
        RecordingSubscriber { shared: self.shared, stderr }
    }
}

/// The recorder as a `tracing` subscriber of its own, without `tracing_subscriber::Registry`: each span
/// is one heap record whose address is its `tracing` id (reference-counted as `tracing` asks), and each
/// thread keeps the stack of spans it has entered. This costs about half of Registry + [`RecordingLayer`]
/// per span (`beamline bench trace`).
pub struct RecordingSubscriber {
    shared: Arc<Shared>,
    stderr: Option<Box<dyn Subscriber + Send + Sync>>,
}

/// A live span of [`RecordingSubscriber`]; its address is the span's `tracing` id.
struct LiveSpan {
    refs: AtomicUsize,
    meta: &'static Metadata<'static>,
    rec: Mutex<SpanRec>,
    /// Log id, a copy of `rec.id` readable without the lock.
    id: u64,
}

thread_local! {
    /// Spans entered on this thread, innermost last: (recorder key, `tracing` id, log id).
    static STACK: RefCell<Vec<(u64, u64, u64)>> = const { RefCell::new(Vec::new()) };
}

impl RecordingSubscriber {
    /// The live span behind `id`.
    ///
    /// # Safety
    /// `id` must come from this subscriber's `new_span` and the span must not be closed yet: `tracing`
    /// guarantees this for the ids it passes to `enter`, `exit`, `record`, `clone_span` and `try_close`
    /// (a handle holding a reference is behind each call), and ids on a thread's [`STACK`] are entered, so
    /// alive.
    unsafe fn live(id: &Id) -> &LiveSpan {
        // SAFETY: see above; the address came from `Box::into_raw` in `new_span`.
        unsafe { &*(id.into_u64() as usize as *const LiveSpan) }
    }

    /// Log id of the innermost span this thread entered (0: none).
    fn current_log_id(&self) -> u64 {
        let key = self.shared.key;
        STACK
            .try_with(|s| s.try_borrow().ok().and_then(|s| s.iter().rev().find(|e| e.0 == key).map(|e| e.2)))
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Log id of the span with `tracing` id `id` when this thread has entered it (an explicit parent is
    /// not dereferenced: its handle may be gone), else 0.
    fn entered_log_id(&self, id: &Id) -> u64 {
        let (key, raw) = (self.shared.key, id.into_u64());
        STACK
            .try_with(|s| {
                s.try_borrow().ok().and_then(|s| s.iter().rev().find(|e| e.0 == key && e.1 == raw).map(|e| e.2))
            })
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

impl Subscriber for RecordingSubscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        let ours = self.shared.interest(meta);
        match &self.stderr {
            Some(e) if meta.is_event() && !ours.is_always() => {
                let theirs = e.register_callsite(meta);
                if theirs.is_never() {
                    ours
                } else {
                    Interest::sometimes()
                }
            }
            _ => ours,
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.shared.wants(meta) || (meta.is_event() && self.stderr.as_ref().is_some_and(|e| e.enabled(meta)))
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let parent = if attrs.is_contextual() {
            self.current_log_id()
        } else {
            attrs.parent().map_or(0, |p| self.entered_log_id(p))
        };
        let rec = self.shared.open_span(attrs, parent);
        let live =
            Box::new(LiveSpan { refs: AtomicUsize::new(1), meta: attrs.metadata(), id: rec.id, rec: Mutex::new(rec) });
        Id::from_u64(Box::into_raw(live) as usize as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        // SAFETY: `tracing` calls this through a live handle of `span`.
        let live = unsafe { Self::live(span) };
        if let Ok(mut rec) = live.rec.lock() {
            rec.fields.record(values);
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event_enabled(&self, _event: &Event<'_>) -> bool {
        true
    }

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        if self.shared.wants(meta) {
            let span = if event.is_contextual() {
                self.current_log_id()
            } else {
                event.parent().map_or(0, |p| self.entered_log_id(p))
            };
            self.shared.event(event, span);
        }
        if let Some(e) = &self.stderr {
            // An explicit parent is one of our ids, unknown to it: such events are not handed on.
            if event.parent().is_none() && e.enabled(meta) && e.event_enabled(event) {
                e.event(event);
            }
        }
    }

    fn enter(&self, span: &Id) {
        // SAFETY: `tracing` calls this through a live handle of `span`.
        let log_id = unsafe { Self::live(span) }.id;
        let entry = (self.shared.key, span.into_u64(), log_id);
        let _ = STACK.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                s.push(entry);
            }
        });
    }

    fn exit(&self, span: &Id) {
        let (key, raw) = (self.shared.key, span.into_u64());
        let _ = STACK.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                if let Some(i) = s.iter().rposition(|e| e.0 == key && e.1 == raw) {
                    s.remove(i);
                }
            }
        });
    }

    fn clone_span(&self, span: &Id) -> Id {
        // SAFETY: `tracing` calls this through a live handle of `span`.
        unsafe { Self::live(span) }.refs.fetch_add(1, Ordering::Relaxed);
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        // SAFETY: `tracing` calls this when a handle of `span` is dropped; that handle's reference is
        // still counted.
        let live = unsafe { Self::live(&span) };
        if live.refs.fetch_sub(1, Ordering::Release) != 1 {
            return false;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: the last reference is gone; the box came from `Box::into_raw` in `new_span`.
        let live = unsafe { Box::from_raw(span.into_u64() as usize as *mut LiveSpan) };
        let name = live.meta.name();
        if let Ok(rec) = live.rec.into_inner() {
            self.shared.close_span(rec, name);
        }
        true
    }

    fn current_span(&self) -> tracing_core::span::Current {
        let key = self.shared.key;
        let top =
            STACK.try_with(|s| s.try_borrow().ok().and_then(|s| s.iter().rev().find(|e| e.0 == key).map(|e| e.1)));
        match top.ok().flatten() {
            Some(raw) => {
                let id = Id::from_u64(raw);
                // SAFETY: an id on this thread's stack is entered, so alive.
                let meta = unsafe { Self::live(&id) }.meta;
                tracing_core::span::Current::new(id, meta)
            }
            None => tracing_core::span::Current::none(),
        }
    }
}

/// A bare `tracing_subscriber::Registry` as a dispatcher: spans enabled, nothing recorded (the baseline
/// for the recording layer's cost).
pub fn registry_dispatch() -> tracing::Dispatch {
    tracing::Dispatch::new(tracing_subscriber::registry())
}

/// Closes a run log: flushes every thread's buffer, writes the footer and stops the writer thread.
///
/// Call [`Guard::finish`] with the outcome of the run. Dropping the guard without it still writes a footer:
/// status `panic` (with the panic message) while unwinding, `unknown` otherwise.
#[must_use = "the log is only complete once the guard is finished or dropped"]
pub struct Guard {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<std::io::Result<(u64, u64)>>>,
    path: Option<std::path::PathBuf>,
}

impl Guard {
    /// Path of the log file, when recording to a file.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Records dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Flushes everything recorded so far, writes the footer with `outcome`, and closes the log.
    pub fn finish(mut self, outcome: &Outcome) -> Result<Totals, Error> {
        match outcome {
            Outcome::Success => self.close("ok", 0, None, &[]),
            Outcome::Failure { exit_code, error, chain } => self.close("error", *exit_code, Some(error), chain),
        }
    }

    fn close(&mut self, status: &str, exit_code: i32, error: Option<&str>, chain: &[String]) -> Result<Totals, Error> {
        let Some(writer) = self.writer.take() else { return Ok(Totals::default()) };
        let threads: Vec<Arc<ThreadBuf>> = match self.shared.threads.lock() {
            Ok(t) => t.clone(),
            Err(_) => Vec::new(),
        };
        for t in &threads {
            self.shared.flush_thread(t, true);
        }
        let dropped = self.dropped();
        let _ = self.shared.tx.send(Msg::Finish(footer(status, exit_code, error, chain, dropped)));
        let (written, capped) = match writer.join() {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(Error::Write(e)),
            Err(_) => return Err(Error::WriterPanicked),
        };
        Ok(Totals { written, dropped, capped })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.writer.is_none() {
            return;
        }
        if std::thread::panicking() {
            let msg = self.shared.panic.get().cloned().unwrap_or_else(|| "unknown panic".to_owned());
            let _ = self.close("panic", 101, Some(&format!("panic: {msg}")), &[]);
        } else {
            let _ = self.close("unknown", -1, Some("the log was closed without an outcome"), &[]);
        }
    }
}

fn header(info: &RunInfo, start_unix: u64, start_mono: u64) -> String {
    let mut h = String::from(r#"{"t":"header","format":"beamline-trace","format_version":1,"version":"#);
    push_str(&mut h, &info.version);
    h.push_str(",\"command\":");
    push_str(&mut h, &info.command);
    h.push_str(",\"argv\":[");
    for (i, a) in info.argv.iter().enumerate() {
        if i > 0 {
            h.push(',');
        }
        push_str(&mut h, a);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let _ = write!(h, "],\"pid\":{},\"host\":", std::process::id());
    push_str(&mut h, host.trim());
    let _ = write!(h, ",\"start_unix_ns\":{start_unix},\"start_mono_ns\":{start_mono}}}");
    h
}

fn footer(status: &str, exit_code: i32, error: Option<&str>, chain: &[String], dropped: u64) -> String {
    let mut f = String::from(r#"{"t":"footer","status":"#);
    push_str(&mut f, status);
    let _ = write!(f, ",\"exit_code\":{exit_code},\"error\":");
    match error {
        Some(e) => push_str(&mut f, e),
        None => f.push_str("null"),
    }
    if !chain.is_empty() {
        f.push_str(",\"error_chain\":[");
        for (i, c) in chain.iter().enumerate() {
            if i > 0 {
                f.push(',');
            }
            push_str(&mut f, c);
        }
        f.push(']');
    }
    let u = clock::usage();
    let _ = write!(
        f,
        ",\"dropped\":{dropped},\"end_unix_ns\":{},\"end_mono_ns\":{},\"cpu_user_ns\":{},\"cpu_sys_ns\":{},\"max_rss_kib\":{}",
        clock::unix_ns(),
        clock::mono_ns(),
        u.user_ns,
        u.sys_ns,
        u.max_rss_kib
    );
    f
}

/// Starts recording into `sink`. Returns the layer to put on a `tracing_subscriber::Registry` and the guard
/// that finishes the log.
pub fn recorder(sink: Box<dyn Write + Send>, info: &RunInfo, config: Config) -> (RecordingLayer, Guard) {
    let (tx, rx) = crossbeam_channel::bounded(config.max_batches_in_flight.max(1));
    let config = Config { batch_records: config.batch_records.max(1), ..config };
    let shared = Arc::new_cyclic(|me| Shared {
        me: me.clone(),
        key: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
        config,
        next_span: AtomicU64::new(1),
        dropped: AtomicU64::new(0),
        tx,
        threads: Mutex::new(Vec::new()),
        panic: Arc::new(OnceLock::new()),
    });
    let head = header(info, clock::unix_ns(), clock::mono_ns());
    let cap = config.max_log_bytes;
    let writer =
        std::thread::Builder::new().name("trace-writer".into()).spawn(move || write_loop(sink, head, rx, cap)).ok();
    let guard = Guard { shared: shared.clone(), writer, path: None };
    (RecordingLayer { shared }, guard)
}

/// Starts recording into the file at `path` (parent folders are created).
pub fn record_to_file(
    path: &std::path::Path,
    info: &RunInfo,
    config: Config,
) -> Result<(RecordingLayer, Guard), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Create(dir.to_path_buf(), e))?;
    }
    let file = std::fs::File::create(path).map_err(|e| Error::Create(path.to_path_buf(), e))?;
    let sink = Box::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let (layer, mut guard) = recorder(sink, info, config);
    guard.path = Some(path.to_path_buf());
    Ok((layer, guard))
}

/// Records every span of this process (per-frame spans only when `$BEAMLINE_TRACE` is `frames`, see
/// [`Detail`]) into `path` for the rest of its life: installs the global default
/// subscriber (this layer, plus warnings and errors on stderr; `BEAMLINE_LOG_LEVEL` takes an `EnvFilter`
/// directive such as `info` to show more) and a panic hook that puts the panic message into the footer.
///
/// Fails when the file cannot be created or a global subscriber is already set.
pub fn install(path: &std::path::Path, info: &RunInfo) -> Result<Guard, Error> {
    use tracing_subscriber::layer::SubscriberExt;
    let mut config = Config { frames: Detail::from_env() == Detail::Frames, ..Config::default() };
    if let Some(mb) = std::env::var("BEAMLINE_LOG_MAX_MB").ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        config.max_log_bytes = mb.saturating_mul(1 << 20);
    }
    let (layer, guard) = record_to_file(path, info, config)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BEAMLINE_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let stderr = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_filter(filter));
    let subscriber = layer.into_subscriber(Some(Box::new(stderr)));
    tracing::subscriber::set_global_default(subscriber).map_err(|_| Error::AlreadyInstalled)?;
    let slot = guard.shared.panic.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_owned()
        };
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let _ = slot.set(format!("{msg}{at}"));
        previous(info);
    }));
    Ok(guard)
}

/// Records past the size cap: count and total span time per (kind, name).
#[derive(Default)]
struct Summary {
    by_name: std::collections::BTreeMap<(&'static str, String), (u64, u64)>,
    records: u64,
}

impl Summary {
    fn add(&mut self, rec: &RecRef<'_>) {
        let (kind, name, ns) = match rec {
            RecRef::Span { name, start, end, .. } => ("span", (*name).to_string(), end.saturating_sub(*start)),
            RecRef::Instant { name, .. } => ("event", (*name).to_string(), 0),
            RecRef::Counter { name, .. } => ("counter", (*name).to_string(), 0),
        };
        let e = self.by_name.entry((kind, name)).or_default();
        e.0 += 1;
        e.1 += ns;
        self.records += 1;
    }

    /// One `run log summary` event per name, at the end of the log.
    fn write(&self, out: &mut String) {
        let ts = clock::mono_ns();
        for ((kind, name), (count, ns)) in &self.by_name {
            out.push_str("{\"t\":\"event\",\"n\":\"run log summary past the size cap\",\"tid\":0");
            let _ = write!(out, ",\"ts\":{ts},\"span\":0,\"level\":\"INFO\",\"f\":{{\"kind\":\"{kind}\",\"name\":");
            push_str(out, name);
            let _ = writeln!(out, ",\"count\":{count},\"total_ns\":{ns}}}}}");
        }
    }
}

fn write_loop(
    mut sink: Box<dyn Write + Send>,
    header: String,
    rx: Receiver<Msg>,
    cap: u64,
) -> std::io::Result<(u64, u64)> {
    let mut line = String::with_capacity(1 << 16);
    let mut seen: std::collections::HashSet<u64> = Default::default();
    let mut written = 0u64;
    let mut bytes = 0u64;
    let mut summary: Option<Summary> = None;
    let mut failed: Option<std::io::Error> = None;
    line.push_str(&header);
    line.push('\n');
    // The header reaches the file at once: a process killed before its first batch still leaves a log.
    flush_into(&mut sink, &mut line, &mut failed);
    if failed.is_none() {
        if let Err(e) = sink.flush() {
            failed = Some(e);
        }
    }
    for msg in rx.iter() {
        match msg {
            Msg::Batch(thread, recs) => {
                if let Some(sum) = summary.as_mut() {
                    recs.iter().for_each(|r| sum.add(&r));
                    continue;
                }
                if seen.insert(thread.tid) {
                    let _ = write!(line, "{{\"t\":\"thread\",\"tid\":{},\"name\":", thread.tid);
                    push_str(&mut line, &thread.name);
                    line.push_str("}\n");
                }
                for rec in recs.iter() {
                    if let Some(sum) = summary.as_mut() {
                        sum.add(&rec);
                        continue;
                    }
                    encode(&mut line, thread.tid, &rec);
                    written += 1;
                    if bytes + line.len() as u64 >= cap {
                        let _ = writeln!(
                            line,
                            "{{\"t\":\"event\",\"n\":\"run log size cap reached\",\"tid\":{},\"ts\":{},\"span\":0,\
                             \"level\":\"WARN\",\"f\":{{\"cap_bytes\":{cap},\"message\":\"later records are summarised \
                             at the end of the log (count and total time per name), not written one by one\"}}}}",
                            thread.tid,
                            clock::mono_ns()
                        );
                        summary = Some(Summary::default());
                    }
                    if line.len() > 1 << 16 {
                        bytes += line.len() as u64;
                        flush_into(&mut sink, &mut line, &mut failed);
                    }
                }
                // Hand every batch to the sink (a file sink is buffered), so a slow sink shows as
                // back-pressure on the channel rather than as memory here.
                bytes += line.len() as u64;
                flush_into(&mut sink, &mut line, &mut failed);
                // Nothing else waiting: push what we have to the file, so a process killed later (kill -9,
                // Ctrl-C) leaves every batch handed over so far, in complete lines.
                if rx.is_empty() && failed.is_none() {
                    if let Err(e) = sink.flush() {
                        failed = Some(e);
                    }
                }
            }
            Msg::Finish(footer) => {
                let capped = summary.as_ref().map_or(0, |s| s.records);
                if let Some(sum) = &summary {
                    sum.write(&mut line);
                }
                let _ = writeln!(line, "{footer},\"written\":{written},\"capped\":{capped}}}");
                flush_into(&mut sink, &mut line, &mut failed);
                if failed.is_none() {
                    if let Err(e) = sink.flush() {
                        failed = Some(e);
                    }
                }
                break;
            }
        }
    }
    let capped = summary.as_ref().map_or(0, |s| s.records);
    match failed {
        Some(e) => Err(e),
        None => Ok((written, capped)),
    }
}

fn flush_into(sink: &mut Box<dyn Write + Send>, line: &mut String, failed: &mut Option<std::io::Error>) {
    if failed.is_none() {
        if let Err(e) = sink.write_all(line.as_bytes()) {
            *failed = Some(e);
        }
    }
    line.clear();
}

/// One record as one JSON line; see the crate documentation for the format.
fn encode(out: &mut String, tid: u64, rec: &RecRef<'_>) {
    match rec {
        RecRef::Span { id, parent, name, start, end, fields } => {
            out.push_str("{\"t\":\"span\",\"n\":");
            push_str(out, name);
            let mut n = itoa::Buffer::new();
            for (key, v) in
                [(",\"id\":", id), (",\"p\":", parent), (",\"tid\":", &tid), (",\"s\":", start), (",\"e\":", end)]
            {
                out.push_str(key);
                out.push_str(n.format(*v));
            }
            push_fields(out, fields);
        }
        RecRef::Instant { ts, span, level, name, fields } => {
            out.push_str("{\"t\":\"event\",\"n\":");
            push_str(out, name);
            let _ = write!(out, ",\"tid\":{tid},\"ts\":{ts},\"span\":{span},\"level\":\"{level}\"");
            push_fields(out, fields);
        }
        RecRef::Counter { ts, name, value } => {
            out.push_str("{\"t\":\"counter\",\"n\":");
            push_str(out, name);
            let _ = write!(out, ",\"tid\":{tid},\"ts\":{ts},\"v\":");
            if value.is_finite() {
                let _ = write!(out, "{value}");
            } else {
                out.push_str("null");
            }
        }
    }
    out.push_str("}\n");
}

fn push_fields(out: &mut String, fields: &str) {
    if !fields.is_empty() {
        out.push_str(",\"f\":{");
        out.push_str(fields);
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::RunLog;
    use tracing_subscriber::layer::SubscriberExt;

    /// A sink shared with the test, optionally blocked until a gate opens.
    #[derive(Clone)]
    struct Sink {
        data: Arc<Mutex<Vec<u8>>>,
        gate: Option<crossbeam_channel::Receiver<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(g) = self.gate.take() {
                let _ = g.recv();
            }
            self.data.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn info() -> RunInfo {
        RunInfo { command: "test".into(), argv: vec!["beamline".into(), "</script>".into()], version: "9".into() }
    }

    fn parse(data: &Arc<Mutex<Vec<u8>>>) -> RunLog {
        let text = String::from_utf8(data.lock().expect("sink").clone()).expect("utf-8");
        RunLog::parse(std::path::Path::new("mem"), &text).expect("log parses")
    }

    #[test]
    fn records_spans_events_counters_threads_header_footer() {
        records_everything(|layer| tracing::Dispatch::new(tracing_subscriber::registry().with(layer)));
    }

    #[test]
    fn its_own_subscriber_records_the_same_as_the_layer_on_a_registry() {
        records_everything(RecordingLayer::into_dispatch);
    }

    #[test]
    fn its_own_subscriber_closes_a_span_on_the_thread_that_drops_it_and_knows_the_current_span() {
        let data = Arc::new(Mutex::new(Vec::new()));
        let (layer, guard) = recorder(Box::new(Sink { data: data.clone(), gate: None }), &info(), Config::default());
        let dispatch = layer.into_dispatch();
        let for_worker = dispatch.clone();
        tracing::dispatcher::with_default(&dispatch, || {
            let moved = tracing::info_span!("test.moved", n = 1u64);
            let copy = moved.clone();
            let outer = tracing::info_span!("test.outer").entered();
            assert_eq!(tracing::Span::current().metadata().map(|m| m.name()), Some("test.outer"));
            let explicit = tracing::info_span!(parent: outer.id(), "test.explicit");
            drop(explicit);
            std::thread::spawn(move || tracing::dispatcher::with_default(&for_worker, || drop(moved)))
                .join()
                .expect("join");
            drop(outer);
            assert!(tracing::Span::current().is_none());
            copy.record("n", 2u64);
            drop(copy);
        });
        guard.finish(&Outcome::Success).expect("finish");
        let log = parse(&data);
        let span = |n: &str| log.spans.iter().find(|s| &*s.name == n).expect("span");
        let (moved, outer, explicit) = (span("test.moved"), span("test.outer"), span("test.explicit"));
        assert_eq!(explicit.parent, outer.id, "an entered explicit parent is found");
        assert_eq!(moved.fields.iter().map(|f| f.1.as_u64()).collect::<Vec<_>>(), [Some(2)], "the value recorded last");
        assert!(moved.end >= outer.end, "closed when its last handle was dropped, after the outer span");
        assert_eq!(log.spans.len(), 3);
    }

    fn records_everything(make: impl Fn(RecordingLayer) -> tracing::Dispatch) {
        let data = Arc::new(Mutex::new(Vec::new()));
        let (layer, guard) = recorder(Box::new(Sink { data: data.clone(), gate: None }), &info(), Config::default());
        let dispatch = make(layer);
        let for_worker = dispatch.clone();
        tracing::dispatcher::with_default(&dispatch, || {
            let outer = tracing::info_span!("test.outer", frame = 3u64, label = "a\"b").entered();
            {
                let _w = tracing::debug_span!("wait.frames").entered();
                tracing::trace!(counter.queue_depth = 5u64);
                let _per_frame = tracing::trace_span!("test.per_frame", frame = 1u64).entered();
            }
            tracing::info!(bytes = 7u64, "frame dropped");
            let h = std::thread::Builder::new()
                .name("worker".into())
                .spawn(move || {
                    tracing::dispatcher::with_default(&for_worker, || {
                        let s = tracing::info_span!("test.work", rows = tracing::field::Empty);
                        s.record("rows", 9u64);
                    })
                })
                .expect("spawn");
            h.join().expect("join");
            drop(outer);
        });
        let totals = guard
            .finish(&Outcome::Failure {
                exit_code: 2,
                error: "bad input: x".into(),
                chain: vec!["bad input".into(), "x".into()],
            })
            .expect("finish");
        assert_eq!(totals, Totals { written: 5, dropped: 0, capped: 0 });
        let log = parse(&data);
        assert_eq!(log.header.command, "test");
        assert_eq!(log.header.argv[1], "</script>");
        assert_eq!(log.header.pid, std::process::id());
        let f = log.footer.as_ref().expect("footer");
        assert_eq!(
            (f.status.as_str(), f.exit_code, f.error.as_deref(), f.written),
            ("error", 2, Some("bad input: x"), 5)
        );
        assert_eq!(f.error_chain, ["bad input", "x"]);
        let mut names: Vec<&str> = log.spans.iter().map(|s| &*s.name).collect();
        names.sort();
        assert_eq!(names, ["test.outer", "test.work", "wait.frames"]);
        let span = |n: &str| log.spans.iter().find(|s| &*s.name == n).expect("span");
        let (outer, wait, work) = (span("test.outer"), span("wait.frames"), span("test.work"));
        assert_eq!(wait.parent, outer.id);
        assert_eq!(outer.fields[0].1, 3);
        assert_eq!(outer.fields[1].1, "a\"b");
        assert!(outer.end > outer.start && outer.start <= wait.start && wait.end <= outer.end);
        assert_eq!(log.thread_name(work.tid), "worker");
        assert_eq!(work.parent, 0, "a span on another thread has no contextual parent");
        assert_eq!((&*work.fields[0].0, work.fields[0].1.as_u64()), ("rows", Some(9)));
        assert_eq!(log.counters[0].name.as_ref(), "queue_depth");
        assert_eq!(log.counters[0].value, 5.0);
        assert_eq!(log.events[0].name.as_ref(), "frame dropped");
        assert_eq!(log.events[0].span, outer.id);
        assert_eq!(log.threads.len(), 2);
    }

    #[test]
    fn slow_writer_drops_and_counts_instead_of_growing() {
        let data = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = crossbeam_channel::bounded(1);
        let config = Config { batch_records: 16, max_batches_in_flight: 2, frames: true, ..Config::default() };
        let (layer, guard) = recorder(Box::new(Sink { data: data.clone(), gate: Some(gate) }), &info(), config);
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            for i in 0..1000u64 {
                let _s = tracing::trace_span!("test.span", i).entered();
            }
        });
        // While the sink is blocked, at most: one batch in the writer, two in the channel, one filling.
        let dropped = guard.dropped();
        assert!(dropped >= 1000 - 16 * 4, "dropped only {dropped}");
        open.send(()).expect("open gate");
        let totals = guard.finish(&Outcome::Success).expect("finish");
        assert_eq!(totals.written + totals.dropped, 1000);
        assert_eq!(totals.dropped, dropped);
        let log = parse(&data);
        assert_eq!(log.spans.len() as u64, totals.written);
        let f = log.footer.expect("footer");
        assert_eq!((f.status.as_str(), f.dropped, f.written), ("ok", dropped, totals.written));
    }

    #[test]
    fn past_the_size_cap_records_are_summarised_and_the_log_says_so() {
        let data = Arc::new(Mutex::new(Vec::new()));
        let config = Config { batch_records: 8, max_batches_in_flight: 1 << 12, max_log_bytes: 4096, frames: true };
        let (layer, guard) = recorder(Box::new(Sink { data: data.clone(), gate: None }), &info(), config);
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            for i in 0..2000u64 {
                let _s = tracing::trace_span!("test.point", i).entered();
            }
        });
        let totals = guard.finish(&Outcome::Success).expect("finish");
        let bytes = data.lock().unwrap().len();
        // The cap plus one batch, the marker, the summary and the footer: far below 2000 spans.
        assert!(bytes < 4096 + 4096, "{bytes} bytes");
        assert_eq!(totals.written + totals.capped + totals.dropped, 2000, "{totals:?}");
        assert!(totals.capped > 1000, "{totals:?}");
        let log = parse(&data);
        let f = log.footer.as_ref().expect("footer");
        assert_eq!((f.written, f.capped), (totals.written, totals.capped));
        assert!(log.events.iter().any(|e| e.name.as_ref() == "run log size cap reached"));
        let text = String::from_utf8(data.lock().unwrap().clone()).unwrap();
        let summary = text.lines().find(|l| l.contains("run log summary past the size cap")).expect("summary");
        let v: serde_json::Value = serde_json::from_str(summary).unwrap();
        assert_eq!(v["f"]["name"], "test.point");
        assert_eq!(v["f"]["count"].as_u64(), Some(totals.capped));
    }

    #[test]
    fn per_frame_spans_are_recorded_only_when_asked_for() {
        for frames in [false, true] {
            let data = Arc::new(Mutex::new(Vec::new()));
            let config = Config { frames, ..Config::default() };
            let (layer, guard) = recorder(Box::new(Sink { data: data.clone(), gate: None }), &info(), config);
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                let _stage = tracing::debug_span!("test.stage").entered();
                for frame in 0..3u64 {
                    let _f = tracing::trace_span!("test.frame", frame).entered();
                    tracing::trace!(counter.frames = frame + 1);
                }
            });
            guard.finish(&Outcome::Success).expect("finish");
            let log = parse(&data);
            let n = |name: &str| log.spans.iter().filter(|s| &*s.name == name).count();
            assert_eq!((n("test.stage"), n("test.frame")), (1, if frames { 3 } else { 0 }), "frames: {frames}");
            // Counters at TRACE level are recorded either way.
            assert_eq!(log.counters.len(), 3);
        }
        assert_eq!(Detail::parse("Frames"), Some(Detail::Frames));
        assert_eq!(Detail::parse("stages"), Some(Detail::Stages));
        assert_eq!(Detail::parse("everything"), None);
    }

    #[test]
    fn a_batch_gives_back_the_records_it_packed() {
        let mut b = Batch::with_capacity(1);
        let long = format!("\"text\":\"{}\"", "é".repeat(80));
        b.put(Rec::Span { id: 7, parent: 3, name: "a.b", start: 5, end: 9, fields: Fields::new("\"x\":1") });
        b.put(Rec::Span { id: 8, parent: 0, name: "c.d", start: 1, end: 2, fields: Fields::new(&long) });
        b.put(Rec::Instant { ts: 4, span: 7, level: "WARN", name: "frame dropped".into(), fields: "\"f\":2".into() });
        b.put(Rec::Counter { ts: 6, name: "queue_depth", value: -2.5 });
        assert_eq!(b.len(), 4);
        let got: Vec<RecRef<'_>> = b.iter().collect();
        assert_eq!(
            got,
            [
                RecRef::Span { id: 7, parent: 3, name: "a.b", start: 5, end: 9, fields: "\"x\":1" },
                RecRef::Span { id: 8, parent: 0, name: "c.d", start: 1, end: 2, fields: &long },
                RecRef::Instant { ts: 4, span: 7, level: "WARN", name: "frame dropped", fields: "\"f\":2" },
                RecRef::Counter { ts: 6, name: "queue_depth", value: -2.5 },
            ]
        );
        // A span with short fields packs into about 50 bytes besides its name reference.
        let mut one = Batch::with_capacity(1);
        one.put(Rec::Span { id: 1, parent: 0, name: "a", start: 0, end: 1, fields: Fields::new("\"frame\":12") });
        assert_eq!(one.bytes.len(), PACKED_SPAN + 10);
    }

    #[test]
    fn dropping_the_guard_writes_an_unknown_footer() {
        let data = Arc::new(Mutex::new(Vec::new()));
        let (_layer, guard) = recorder(Box::new(Sink { data: data.clone(), gate: None }), &info(), Config::default());
        drop(guard);
        assert_eq!(parse(&data).footer.expect("footer").status, "unknown");
    }
}

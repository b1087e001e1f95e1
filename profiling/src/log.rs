//! Reading run logs back: one [`RunLog`] per file, tolerant of a log cut short by a crash (the last
//! partial line is skipped and counted) but strict about damage in the middle.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// The first record of every log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Header {
    /// Program version.
    #[serde(default)]
    pub version: String,
    /// Subcommand, e.g. `acquire`.
    #[serde(default)]
    pub command: String,
    /// Full command line.
    #[serde(default)]
    pub argv: Vec<String>,
    /// Process id.
    #[serde(default)]
    pub pid: u32,
    /// Host name.
    #[serde(default)]
    pub host: String,
    /// Wall-clock start, ns since the Unix epoch.
    #[serde(default)]
    pub start_unix_ns: u64,
    /// Monotonic clock at start, ns.
    #[serde(default)]
    pub start_mono_ns: u64,
}

/// The last record of a complete log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Footer {
    /// `ok`, `error`, `panic` or `unknown`.
    #[serde(default)]
    pub status: String,
    /// Exit code of the process.
    #[serde(default)]
    pub exit_code: i32,
    /// Error text when the run failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The error's causes, outermost first (absent in logs written before it was recorded).
    #[serde(default)]
    pub error_chain: Vec<String>,
    /// Records dropped because the writer could not keep up.
    #[serde(default)]
    pub dropped: u64,
    /// Records written.
    #[serde(default)]
    pub written: u64,
    /// Records past the log's size cap, summarised at its end instead of written.
    #[serde(default)]
    pub capped: u64,
    /// Wall-clock end, ns since the Unix epoch.
    #[serde(default)]
    pub end_unix_ns: u64,
    /// Monotonic clock at the end, ns.
    #[serde(default)]
    pub end_mono_ns: u64,
    /// User CPU time of the process, ns.
    #[serde(default)]
    pub cpu_user_ns: u64,
    /// Kernel CPU time of the process, ns.
    #[serde(default)]
    pub cpu_sys_ns: u64,
    /// Peak resident memory, KiB.
    #[serde(default)]
    pub max_rss_kib: u64,
}

/// Fields of a span or event, in recorded order.
pub type Fields = Vec<(Arc<str>, Value)>;

/// A closed span.
#[derive(Debug, Clone)]
pub struct Span {
    /// Unique id within its log.
    pub id: u64,
    /// Id of the parent span, 0 for none.
    pub parent: u64,
    /// Kernel thread id of the thread that closed it.
    pub tid: u64,
    /// `area.action`.
    pub name: Arc<str>,
    /// Monotonic start, ns.
    pub start: u64,
    /// Monotonic end, ns.
    pub end: u64,
    /// Fields.
    pub fields: Fields,
}

/// An instant event.
#[derive(Debug, Clone)]
pub struct Instant {
    /// Thread id.
    pub tid: u64,
    /// Monotonic time, ns.
    pub ts: u64,
    /// The message, or the callsite name.
    pub name: Arc<str>,
    /// Level (`INFO`, ...).
    pub level: Arc<str>,
    /// Id of the span it happened in, 0 for none.
    pub span: u64,
    /// Fields.
    pub fields: Fields,
}

/// One sample of a counter.
#[derive(Debug, Clone)]
pub struct CounterSample {
    /// Thread id.
    pub tid: u64,
    /// Counter name (without the `counter.` prefix).
    pub name: Arc<str>,
    /// Monotonic time, ns.
    pub ts: u64,
    /// Value.
    pub value: f64,
}

/// Everything in one log file.
#[derive(Debug, Clone, Default)]
pub struct RunLog {
    /// Where it was read from.
    pub path: PathBuf,
    /// The header record.
    pub header: Header,
    /// The footer, absent when the process was killed or crashed hard.
    pub footer: Option<Footer>,
    /// Thread id → thread name.
    pub threads: Vec<(u64, String)>,
    /// Closed spans, in log order.
    pub spans: Vec<Span>,
    /// Instant events.
    pub events: Vec<Instant>,
    /// Counter samples.
    pub counters: Vec<CounterSample>,
    /// Lines that could not be read at the end of a truncated log.
    pub skipped_lines: usize,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    t: Cow<'a, str>,
    #[serde(borrow, default)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    level: Option<Cow<'a, str>>,
    #[serde(default)]
    id: u64,
    #[serde(default)]
    p: u64,
    #[serde(default)]
    tid: u64,
    #[serde(default)]
    s: u64,
    #[serde(default)]
    e: u64,
    #[serde(default)]
    ts: u64,
    #[serde(default)]
    span: u64,
    #[serde(default)]
    v: Option<f64>,
    #[serde(default)]
    f: Option<serde_json::Map<String, Value>>,
}

#[derive(Default)]
struct Interner(HashMap<String, Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(s.to_owned(), a.clone());
        a
    }
    fn fields(&mut self, f: Option<serde_json::Map<String, Value>>) -> Fields {
        f.map(|m| m.into_iter().map(|(k, v)| (self.get(&k), v)).collect()).unwrap_or_default()
    }
}

impl RunLog {
    /// Reads the log at `path`.
    pub fn read(path: &Path) -> Result<RunLog, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_path_buf(), e))?;
        RunLog::parse(path, &text)
    }

    /// Parses the text of a log that was read from `path` (used in error messages).
    pub fn parse(path: &Path, text: &str) -> Result<RunLog, Error> {
        let mut log = RunLog { path: path.to_path_buf(), ..RunLog::default() };
        let mut names = Interner::default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let Some(first) = lines.first() else { return Err(Error::NotALog(path.to_path_buf())) };
        match serde_json::from_str::<Line>(first) {
            Ok(l) if l.t == "header" => {
                log.header = serde_json::from_str(first).map_err(|e| bad(path, 1, e))?;
            }
            _ => return Err(Error::NotALog(path.to_path_buf())),
        }
        let last = lines.len() - 1;
        for (i, raw) in lines.iter().enumerate().skip(1) {
            let line = match serde_json::from_str::<Line>(raw) {
                Ok(l) => l,
                Err(_) if i == last => {
                    log.skipped_lines += 1;
                    continue;
                }
                Err(e) => return Err(bad(path, i + 1, e)),
            };
            match &*line.t {
                "span" => log.spans.push(Span {
                    id: line.id,
                    parent: line.p,
                    tid: line.tid,
                    name: names.get(line.n.as_deref().unwrap_or("?")),
                    start: line.s,
                    end: line.e.max(line.s),
                    fields: names.fields(line.f),
                }),
                "event" => log.events.push(Instant {
                    tid: line.tid,
                    ts: line.ts,
                    name: names.get(line.n.as_deref().unwrap_or("?")),
                    level: names.get(line.level.as_deref().unwrap_or("INFO")),
                    span: line.span,
                    fields: names.fields(line.f),
                }),
                "counter" => {
                    if let Some(v) = line.v {
                        log.counters.push(CounterSample {
                            tid: line.tid,
                            name: names.get(line.n.as_deref().unwrap_or("?")),
                            ts: line.ts,
                            value: v,
                        });
                    }
                }
                "thread" => {
                    let name = line.name.as_deref().unwrap_or("unnamed").to_owned();
                    log.threads.push((line.tid, name));
                }
                "footer" => log.footer = Some(serde_json::from_str(raw).map_err(|e| bad(path, i + 1, e))?),
                _ => {} // newer record kinds: ignored, so old readers keep working
            }
        }
        Ok(log)
    }

    /// Name of thread `tid`, or `thread <tid>`.
    pub fn thread_name(&self, tid: u64) -> String {
        self.threads.iter().find(|(t, _)| *t == tid).map(|(_, n)| n.clone()).unwrap_or_else(|| format!("thread {tid}"))
    }

    /// Monotonic start of the run: the header's clock reading (or the first span).
    pub fn start_mono(&self) -> u64 {
        let first = self.spans.iter().map(|s| s.start).min().unwrap_or(self.header.start_mono_ns);
        first.min(self.header.start_mono_ns.max(1))
    }

    /// Monotonic end of the run: the footer's clock reading, or the last thing recorded.
    pub fn end_mono(&self) -> u64 {
        let last = self
            .spans
            .iter()
            .map(|s| s.end)
            .chain(self.events.iter().map(|e| e.ts))
            .chain(self.counters.iter().map(|c| c.ts))
            .max()
            .unwrap_or(self.header.start_mono_ns);
        self.footer.as_ref().map(|f| f.end_mono_ns).unwrap_or(0).max(last)
    }
}

fn bad(path: &Path, line: usize, e: serde_json::Error) -> Error {
    Error::BadLine { path: path.to_path_buf(), line, message: e.to_string() }
}

//! The timeline model: logs merged onto one time axis, processes made of lanes (one per thread or
//! device), spans nested by time within each lane, counter tracks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::log::{Fields, Footer, Header, RunLog};
use crate::Error;

/// A span placed on a lane. Times are nanoseconds since the Unix epoch (each log's monotonic clock is
/// shifted by its header's wall-clock reading, so logs from several processes or hosts line up).
#[derive(Debug, Clone)]
pub struct LaneSpan {
    /// `area.action`.
    pub name: Arc<str>,
    /// Start, ns since the Unix epoch.
    pub start: u64,
    /// End, ns since the Unix epoch.
    pub end: u64,
    /// Nesting depth within the lane, 0 for outermost.
    pub depth: u32,
    /// Whether the span is a `wait.*` span.
    pub wait: bool,
    /// Fields.
    pub fields: Fields,
}

impl LaneSpan {
    /// Duration in ns.
    pub fn dur(&self) -> u64 {
        self.end - self.start
    }
}

/// An instant event on a lane.
#[derive(Debug, Clone)]
pub struct LaneEvent {
    /// Time, ns since the Unix epoch.
    pub ts: u64,
    /// Message.
    pub name: Arc<str>,
    /// Fields.
    pub fields: Fields,
}

/// One row group of the page: a thread, or a device named by a span's `lane` field.
#[derive(Debug, Clone, Default)]
pub struct Lane {
    /// Thread name (or device name), unique within the process.
    pub name: String,
    /// Kernel thread id; 0 for device lanes.
    pub tid: u64,
    /// Spans sorted by (start, longest first), with depths assigned.
    pub spans: Vec<LaneSpan>,
    /// Instant events sorted by time.
    pub events: Vec<LaneEvent>,
    /// Number of nesting levels (0 when the lane has no spans).
    pub depths: u32,
}

/// A counter's samples within one process.
#[derive(Debug, Clone)]
pub struct CounterTrack {
    /// Counter name.
    pub name: Arc<str>,
    /// (time ns since the Unix epoch, value), sorted by time.
    pub samples: Vec<(u64, f64)>,
}

/// One process (one log).
#[derive(Debug, Clone)]
pub struct Process {
    /// Header of its log.
    pub header: Header,
    /// Footer of its log, if complete.
    pub footer: Option<Footer>,
    /// Where the log came from.
    pub path: PathBuf,
    /// `command (pid N)`.
    pub label: String,
    /// Start of the run, ns since the Unix epoch.
    pub start: u64,
    /// End of the run, ns since the Unix epoch.
    pub end: u64,
    /// Lanes: threads in order of thread id, then devices.
    pub lanes: Vec<Lane>,
    /// Counter tracks by name.
    pub counters: Vec<CounterTrack>,
    /// Unreadable lines at the end of its log that were ignored (a process killed mid-write).
    pub skipped_lines: usize,
}

impl Process {
    /// Wall time of the run in ns (at least 1).
    pub fn wall(&self) -> u64 {
        (self.end - self.start).max(1)
    }
}

/// Several runs on one time axis.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Processes in order of start.
    pub processes: Vec<Process>,
    /// Earliest start, ns since the Unix epoch.
    pub start: u64,
    /// Latest end, ns since the Unix epoch.
    pub end: u64,
    /// Files given among others that were skipped (empty, not a run log, unreadable), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Timeline {
    /// Reads and merges the logs at `paths`.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Timeline, Error> {
        if paths.is_empty() {
            return Err(Error::NoLogs);
        }
        if paths.len() == 1 {
            return Ok(Timeline::from_logs(vec![RunLog::read(&paths[0])?]));
        }
        // Among many (`runs/*.jsonl`), a 0-byte log of a killed process or a foreign file is skipped, not
        // fatal; only when nothing is readable is the first error returned.
        let mut logs = Vec::new();
        let mut skipped = Vec::new();
        let mut first_err = None;
        for p in paths {
            match RunLog::read(p) {
                Ok(l) => logs.push(l),
                Err(e) => {
                    skipped.push((p.clone(), e.to_string()));
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if logs.is_empty() => Err(e),
            _ => {
                let mut tl = Timeline::from_logs(logs);
                tl.skipped = skipped;
                Ok(tl)
            }
        }
    }

    /// Merges already-read logs.
    pub fn from_logs(logs: Vec<RunLog>) -> Timeline {
        let mut processes: Vec<Process> = logs.into_iter().map(process).collect();
        processes.sort_by_key(|p| p.start);
        let start = processes.iter().map(|p| p.start).min().unwrap_or(0);
        let end = processes.iter().map(|p| p.end).max().unwrap_or(start);
        Timeline { processes, start, end, skipped: Vec::new() }
    }

    /// Wall time covered, ns (at least 1).
    pub fn wall(&self) -> u64 {
        (self.end - self.start).max(1)
    }

    /// Total number of spans.
    pub fn span_count(&self) -> usize {
        self.processes.iter().flat_map(|p| &p.lanes).map(|l| l.spans.len()).sum()
    }
}

fn process(log: RunLog) -> Process {
    // Monotonic → wall: shift by the header's pair of readings.
    let shift = log.header.start_unix_ns as i128 - log.header.start_mono_ns as i128;
    let at = move |mono: u64| (mono as i128 + shift).max(0) as u64;
    let start = at(log.start_mono());
    let end = at(log.end_mono()).max(start);

    let mut thread_lanes: BTreeMap<u64, Lane> = BTreeMap::new();
    for (tid, name) in &log.threads {
        thread_lanes.entry(*tid).or_insert_with(|| Lane { name: name.clone(), tid: *tid, ..Lane::default() });
    }
    let mut device_lanes: BTreeMap<String, Lane> = BTreeMap::new();
    for s in log.spans {
        let device = s.fields.iter().find(|(k, _)| &**k == "lane").map(|(_, v)| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let span = LaneSpan {
            wait: s.name.starts_with(crate::WAIT_PREFIX),
            name: s.name,
            start: at(s.start),
            end: at(s.end),
            depth: 0,
            fields: s.fields,
        };
        let lane = match device {
            Some(d) => device_lanes.entry(d.clone()).or_insert_with(|| Lane { name: d, ..Lane::default() }),
            None => thread_lanes.entry(s.tid).or_insert_with(|| Lane {
                name: format!("thread {}", s.tid),
                tid: s.tid,
                ..Lane::default()
            }),
        };
        lane.spans.push(span);
    }
    for e in log.events {
        let lane = thread_lanes.entry(e.tid).or_insert_with(|| Lane {
            name: format!("thread {}", e.tid),
            tid: e.tid,
            ..Lane::default()
        });
        lane.events.push(LaneEvent { ts: at(e.ts), name: e.name, fields: e.fields });
    }
    let mut counters: BTreeMap<Arc<str>, Vec<(u64, f64)>> = BTreeMap::new();
    for c in log.counters {
        counters.entry(c.name).or_default().push((at(c.ts), c.value));
    }
    let mut lanes: Vec<Lane> = thread_lanes.into_values().chain(device_lanes.into_values()).collect();
    unique_names(&mut lanes);
    for lane in &mut lanes {
        nest(lane);
        lane.events.sort_by_key(|e| e.ts);
    }
    let counters = counters
        .into_iter()
        .map(|(name, mut samples)| {
            samples.sort_by_key(|s| s.0);
            CounterTrack { name, samples }
        })
        .collect();
    let label =
        format!("{} (pid {})", if log.header.command.is_empty() { "run" } else { &log.header.command }, log.header.pid);
    let skipped_lines = log.skipped_lines;
    Process {
        header: log.header,
        footer: log.footer,
        path: log.path,
        label,
        start,
        end,
        lanes,
        counters,
        skipped_lines,
    }
}

/// Threads may share a name (`unnamed`, pool workers); lanes get the thread id appended then.
fn unique_names(lanes: &mut [Lane]) {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for l in lanes.iter() {
        *count.entry(l.name.clone()).or_default() += 1;
    }
    for l in lanes.iter_mut() {
        if count[&l.name] > 1 && l.tid != 0 {
            l.name = format!("{} {}", l.name, l.tid);
        }
    }
}

/// Sorts a lane's spans and assigns depths by time containment: a span is nested in every earlier span
/// still open when it starts. Within one depth, spans never overlap and are sorted by start and end.
fn nest(lane: &mut Lane) {
    lane.spans.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut open: Vec<u64> = Vec::new();
    let mut depths = 0;
    for s in &mut lane.spans {
        while open.last().is_some_and(|&end| end <= s.start) {
            open.pop();
        }
        // A span that outlives an open parent (overlap without nesting) is still placed below it.
        s.depth = open.len() as u32;
        open.push(s.end);
        depths = depths.max(open.len() as u32);
    }
    lane.depths = depths;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::log::{RunLog, Span};

    /// A log with the given threads and spans `(tid, name, start, end)`, times relative to a fixed origin.
    pub(crate) fn log_with(threads: &[(u64, &str)], spans: &[(u64, &str, u64, u64)]) -> RunLog {
        RunLog {
            header: Header {
                command: "test".into(),
                pid: 7,
                start_unix_ns: 1_000_000_000_000,
                start_mono_ns: 1_000,
                ..Header::default()
            },
            threads: threads.iter().map(|(t, n)| (*t, n.to_string())).collect(),
            spans: spans
                .iter()
                .enumerate()
                .map(|(i, (tid, name, s, e))| Span {
                    id: i as u64 + 1,
                    parent: 0,
                    tid: *tid,
                    name: Arc::from(*name),
                    start: 1_000 + s,
                    end: 1_000 + e,
                    fields: vec![],
                })
                .collect(),
            ..RunLog::default()
        }
    }

    #[test]
    fn nests_by_time_and_makes_one_lane_per_thread() {
        let log = log_with(
            &[(1, "main"), (2, "writer"), (3, "idle-thread")],
            &[
                (1, "a.outer", 0, 100),
                (1, "a.inner", 10, 20),
                (1, "a.inner2", 30, 90),
                (1, "a.leaf", 40, 50),
                (2, "w.one", 5, 15),
                (2, "w.two", 15, 25),
                (1, "a.next", 100, 120),
            ],
        );
        let tl = Timeline::from_logs(vec![log]);
        assert_eq!(tl.processes.len(), 1);
        let p = &tl.processes[0];
        let names: Vec<&str> = p.lanes.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["main", "writer", "idle-thread"]);
        let main = &p.lanes[0];
        let got: Vec<(&str, u32)> = main.spans.iter().map(|s| (&*s.name, s.depth)).collect();
        assert_eq!(got, [("a.outer", 0), ("a.inner", 1), ("a.inner2", 1), ("a.leaf", 2), ("a.next", 0)]);
        assert_eq!(main.depths, 3);
        assert_eq!(p.lanes[1].depths, 1, "back-to-back spans share a depth");
        assert_eq!(p.start, 1_000_000_000_000, "mono times shifted to wall time");
        assert_eq!(p.wall(), 120);
    }

    #[test]
    fn lane_field_makes_device_lanes_and_duplicate_names_get_tids() {
        let mut log = log_with(&[(1, "worker"), (2, "worker")], &[(1, "gpu.kernel", 0, 10), (2, "x.y", 0, 5)]);
        log.spans[0].fields.push((Arc::from("lane"), serde_json::json!("gpu0")));
        let tl = Timeline::from_logs(vec![log]);
        let names: Vec<&str> = tl.processes[0].lanes.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["worker 1", "worker 2", "gpu0"]);
        assert_eq!(tl.processes[0].lanes[2].spans[0].name.as_ref(), "gpu.kernel");
    }
}

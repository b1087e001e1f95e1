//! Stall analysis: where each lane was idle, and what it was waiting for.
//!
//! Within a lane's active range (its first span's start to its last span's end), idle time is
//! - every outermost `wait.*` span (what it waits for is the rest of its name: `wait.frames` → `frames`),
//! - every gap covered by no span at all ("untraced gap": the thread did something not instrumented, or
//!   slept outside any span).
//!
//! The share of a lane is its idle time over the wall time of its process. Individual stalls (each wait
//! span and each gap) are ranked by duration. Expected waits (motion, exposure, a trigger, idle between
//! series: [`crate::diagnose::expected_wait`]) are idle time marked `expected` in the lane's sentence,
//! never ranked as stalls, and lanes are ranked by their unexpected idle time.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::timeline::{Lane, Timeline};

/// What a gap not covered by any span is called.
pub const UNTRACED: &str = "untraced gap";

/// One idle interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stall {
    /// Index of the process in the timeline.
    pub process: usize,
    /// Index of the lane in its process.
    pub lane: usize,
    /// Lane name.
    pub lane_name: String,
    /// Start, ns since the Unix epoch.
    pub start: u64,
    /// Duration, ns.
    pub dur: u64,
    /// What the lane waited for (`frames`), or [`UNTRACED`].
    pub what: String,
    /// One sentence, e.g. `writer waited 412.0 ms for disk`.
    pub text: String,
}

/// Idle time of one lane.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LaneIdle {
    /// Index of the process in the timeline.
    pub process: usize,
    /// Index of the lane in its process.
    pub lane: usize,
    /// Lane name.
    pub lane_name: String,
    /// Idle time, ns.
    pub idle_ns: u64,
    /// Idle time over the wall time of the process.
    pub share: f64,
    /// Of it, time in expected waits, ns.
    pub expected_ns: u64,
    /// Idle time by what was waited for, largest first.
    pub parts: Vec<(String, u64)>,
    /// One sentence, e.g. `writer idle 42% of the run, waiting for frames (35%), untraced gaps (7%)`.
    pub text: String,
}

/// The analysis of a whole timeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Analysis {
    /// Lanes with idle time, largest share first.
    pub lanes: Vec<LaneIdle>,
    /// The biggest individual stalls, longest first (at most [`TOP`], at most [`PER_LANE`] per lane).
    pub top: Vec<Stall>,
    /// Per process, per lane: idle intervals `(start, end)` worth highlighting (at least 1/20000 of
    /// the process wall time; the page shows smaller ones as plain empty space).
    pub highlight: Vec<Vec<Vec<(u64, u64)>>>,
}

/// How many individual stalls [`Analysis::top`] keeps.
pub const TOP: usize = 40;

/// How many of them may come from one lane.
pub const PER_LANE: usize = 5;

/// Analyses every lane of `tl`.
pub fn analyse(tl: &Timeline) -> Analysis {
    let mut out = Analysis::default();
    let mut all: Vec<Stall> = Vec::new();
    for (pi, p) in tl.processes.iter().enumerate() {
        let wall = p.wall();
        let min_highlight = wall / 20_000;
        let mut proc_hl = Vec::new();
        for (li, lane) in p.lanes.iter().enumerate() {
            let intervals = idle_intervals(lane);
            let mut parts: BTreeMap<&str, u64> = BTreeMap::new();
            let intervals: Vec<(u64, u64, &str)> = intervals.iter().map(|(a, b, w)| (*a, *b, &**w)).collect();
            let mut hl = Vec::new();
            let mut lane_top: Vec<Stall> = Vec::new();
            for (s, e, what) in &intervals {
                let dur = e - s;
                *parts.entry(what).or_default() += dur;
                if dur >= min_highlight.max(1) {
                    hl.push((*s, *e));
                }
                if crate::diagnose::expected_wait(what) {
                    continue;
                }
                lane_top.push(Stall {
                    process: pi,
                    lane: li,
                    lane_name: lane.name.clone(),
                    start: *s,
                    dur,
                    what: what.to_string(),
                    text: String::new(),
                });
            }
            // Keep only each lane's biggest stalls before ranking globally (bounded work on huge logs).
            lane_top.sort_by_key(|s| std::cmp::Reverse(s.dur));
            lane_top.truncate(TOP);
            all.extend(lane_top);
            proc_hl.push(hl);
            let idle_ns: u64 = parts.values().sum();
            if idle_ns == 0 {
                continue;
            }
            let mut parts: Vec<(String, u64)> = parts.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            parts.sort_by_key(|p| std::cmp::Reverse(p.1));
            let share = idle_ns as f64 / wall as f64;
            let expected_ns: u64 =
                parts.iter().filter(|(w, _)| crate::diagnose::expected_wait(w)).map(|(_, ns)| *ns).sum();
            let text = lane_sentence(&lane.name, share, &parts, wall);
            out.lanes.push(LaneIdle {
                process: pi,
                lane: li,
                lane_name: lane.name.clone(),
                idle_ns,
                share,
                expected_ns,
                parts,
                text,
            });
        }
        out.highlight.push(proc_hl);
    }
    let unexpected = |l: &LaneIdle| l.idle_ns.saturating_sub(l.expected_ns) as f64 / l.idle_ns.max(1) as f64 * l.share;
    out.lanes.sort_by(|a, b| unexpected(b).total_cmp(&unexpected(a)).then(b.share.total_cmp(&a.share)));
    all.sort_by(|a, b| b.dur.cmp(&a.dur).then(a.start.cmp(&b.start)));
    // At most PER_LANE entries per lane, so one busy-waiting lane cannot hide the others.
    let mut per_lane: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    all.retain(|s| {
        let n = per_lane.entry((s.process, s.lane)).or_default();
        *n += 1;
        *n <= PER_LANE
    });
    all.truncate(TOP);
    for s in &mut all {
        s.text = if s.what == UNTRACED {
            format!("{} idle {} (no span)", s.lane_name, fmt_ns(s.dur))
        } else {
            format!("{} waited {} for {}", s.lane_name, fmt_ns(s.dur), s.what)
        };
    }
    out.top = all;
    out
}

fn lane_sentence(lane: &str, share: f64, parts: &[(String, u64)], wall: u64) -> String {
    let pct = |ns: u64| ns as f64 * 100.0 / wall as f64;
    let waits: Vec<String> = parts
        .iter()
        .filter(|(what, ns)| what != UNTRACED && pct(*ns) >= 0.5)
        .take(3)
        .map(|(what, ns)| {
            let expected = if crate::diagnose::expected_wait(what) { ", expected" } else { "" };
            format!("{what} ({:.0}%{expected})", pct(*ns))
        })
        .collect();
    let gaps = parts.iter().find(|(what, _)| what == UNTRACED).map(|(_, ns)| pct(*ns)).unwrap_or(0.0);
    let mut text = format!("{lane} idle {:.0}% of the run", share * 100.0);
    if !waits.is_empty() {
        text.push_str(", waiting for ");
        text.push_str(&waits.join(", "));
    }
    if gaps >= 0.5 || waits.is_empty() {
        text.push_str(&format!("{}untraced gaps between spans {gaps:.0}%", if waits.is_empty() { ", " } else { "; " }));
    }
    text
}

/// What a wait span waits for, in the page's words: the rest of its name (`wait.disk` → `disk`), for a
/// queue wait the queue and what it wants (`data on `frames``), for a lock wait the lock (`lock `gil``).
fn waits_for(s: &crate::timeline::LaneSpan) -> Cow<'_, str> {
    let what = s.name.strip_prefix(crate::WAIT_PREFIX).filter(|w| !w.is_empty()).unwrap_or(&s.name);
    let field = |k: &str| s.fields.iter().find(|(n, _)| &**n == k).and_then(|(_, v)| v.as_str());
    match (what, field("queue"), field("lock")) {
        ("queue" | "queue_pop" | "queue_push" | "frames", Some(q), _) => {
            let space = field("wants") == Some("space") || what == "queue_push";
            Cow::Owned(format!("{} on `{q}`", if space { "space" } else { "data" }))
        }
        ("lock", _, Some(l)) => Cow::Owned(format!("lock `{l}`")),
        _ => Cow::Borrowed(what),
    }
}

/// Idle intervals of a lane: outermost wait spans and uncovered gaps, sorted by start.
pub fn idle_intervals(lane: &Lane) -> Vec<(u64, u64, Cow<'_, str>)> {
    let mut out = Vec::new();
    let mut covered_to: Option<u64> = None; // end of the union of all spans seen so far
    let mut wait_to: u64 = 0; // end of the current outermost wait span
    for s in &lane.spans {
        if let Some(c) = covered_to {
            if s.start > c {
                out.push((c, s.start, Cow::Borrowed(UNTRACED)));
            }
        }
        if s.wait && s.start >= wait_to {
            out.push((s.start, s.end, waits_for(s)));
            wait_to = s.end;
        }
        covered_to = Some(covered_to.map_or(s.end, |c| c.max(s.end)));
    }
    out.sort_by_key(|i| i.0);
    out
}

/// `412.0 ms`, `3.20 s`, `850 ns`.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        n if n >= 1_000_000_000 => format!("{:.2} s", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} ms", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} µs", n as f64 / 1e3),
        n => format!("{n} ns"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::log_with;

    #[test]
    fn wait_spans_and_gaps_are_idle() {
        let log = log_with(
            &[(1, "receiver"), (2, "writer")],
            &[
                (1, "receive.recv", 0, 100),
                (2, "hdf5.write_chunk", 0, 10),
                (2, "wait.frames", 10, 50),
                (2, "wait.frames.inner", 20, 30), // nested in a wait: not counted twice
                (2, "hdf5.write_chunk", 50, 60),
                (2, "hdf5.flush", 80, 90), // gap 60..80
                (2, "x.outer", 90, 100),
                (2, "wait.lock", 92, 95), // wait inside work counts
            ],
        );
        let tl = Timeline::from_logs(vec![log]);
        let a = analyse(&tl);
        assert_eq!(a.lanes.len(), 1, "receiver never idle");
        let w = &a.lanes[0];
        assert_eq!(w.lane_name, "writer");
        assert_eq!(w.idle_ns, 40 + 20 + 3);
        assert_eq!(w.parts[0], ("frames".to_owned(), 40));
        assert_eq!(w.parts[1], (UNTRACED.to_owned(), 20));
        assert_eq!(
            w.text,
            "writer idle 63% of the run, waiting for frames (40%), lock (3%); untraced gaps between spans 20%"
        );
        assert_eq!(a.top[0].what, "frames");
        assert_eq!(a.top[0].dur, 40);
        assert_eq!(a.top[1].what, UNTRACED);
        assert_eq!(a.top.len(), 3);
    }

    #[test]
    fn injected_stall_ranks_first() {
        let mut spans = Vec::new();
        for i in 0..1000u64 {
            spans.push((1, "wait.queue_pop", i * 100, i * 100 + 30));
            spans.push((1, "work.step", i * 100 + 30, i * 100 + 100));
        }
        spans.push((2, "wait.injected", 5_000, 9_000));
        let tl = Timeline::from_logs(vec![log_with(&[(1, "a"), (2, "b")], &spans)]);
        let a = analyse(&tl);
        assert_eq!(a.top[0].lane_name, "b");
        assert_eq!(a.top.iter().filter(|s| s.lane_name == "a").count(), PER_LANE);
        assert_eq!(a.top[0].text, "b waited 4.0 µs for injected");
        assert_eq!(a.lanes[0].lane_name, "a", "a waits 30% of the run, b only 4%");
    }

    #[test]
    fn expected_waits_are_marked_and_never_ranked() {
        let spans = [
            (1, "wait.device", 0, 800),
            (1, "scan.point", 800, 1000),
            (2, "wait.queue", 0, 300),
            (2, "work.step", 300, 1000),
        ];
        let a = analyse(&Timeline::from_logs(vec![log_with(&[(1, "scan-script"), (2, "writer")], &spans)]));
        assert!(a.top.iter().all(|s| s.what != "device"), "{:?}", a.top);
        assert_eq!(a.top[0].what, "queue");
        assert_eq!(a.lanes[0].lane_name, "writer", "ranked by unexpected idle time");
        assert_eq!(a.lanes[1].text, "scan-script idle 80% of the run, waiting for device (80%, expected)");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_ns(850), "850 ns");
        assert_eq!(fmt_ns(412_000_000), "412.0 ms");
        assert_eq!(fmt_ns(3_200_000_000), "3.20 s");
    }
}

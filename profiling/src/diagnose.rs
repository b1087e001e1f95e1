//! Diagnosis: which stage limits a run, and why, in one sentence.
//!
//! A run is modelled as stages (lanes: threads or devices) joined by queues, locks and devices. Each
//! outermost `wait.*` span of a lane is classified by its name and fields:
//!
//! - `wait.queue` with `queue = NAME`, `wants = "data"` (starved by its producer) or `"space"` (blocked by
//!   its consumer), and `on = STAGE` (who it waits for). Older names are read too: `wait.queue_pop` and
//!   `wait.frames` (data), `wait.queue_push` (space).
//! - `wait.lock` with `lock = NAME` (and `holder` where known): contention on a lock.
//! - expected waits, never ranked as stalls: `wait.idle` (between series), `wait.exposure`,
//!   `wait.device` / `wait.motor` (motion or counting the scan asked for), `wait.beam`, `wait.pause`,
//!   `wait.trigger`, `wait.children` / `wait.join` (a main thread waiting for its workers), or any wait
//!   with the field `expected = true`.
//! - `wait.frame_rate`: the stage paces itself (a simulator's `--fps`).
//! - any other wait (`wait.gpu_download`, `wait.disk`) is the lane's own work, blocked in that thing.
//!
//! The stage a queue wait waits on is found, in order: a lane of the same process named `on`; a lane
//! whose spans carry `feeds = NAME` (the producer of that queue, in any process); a lane of the same
//! process with the opposite wait on the same queue; else an outside stage named `on`.
//!
//! The bottleneck is the stage others wait on the most (as a share of each waiter's own active time,
//! at least [`THRESHOLD`]); when that stage itself mostly waits on another, the chain is followed. A run
//! in which no stage waits on another for [`THRESHOLD`] of its time has no limiting stage.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::stalls::fmt_ns;
use crate::timeline::{Lane, LaneSpan, Timeline};

/// Share of a waiter's active time spent waiting on one stage that makes that stage a bottleneck.
pub const THRESHOLD: f64 = 0.2;

/// What one wait span is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Expected(String),
    Paced,
    Queue { queue: String, space: bool, on: String },
    Lock { lock: String },
    Own(String),
}

/// Whether a wait named `wait.WHAT` is expected by its name alone (what the run asked for: motion,
/// exposure, a trigger, idle between series, its own frame rate, its child threads); a wait span can
/// also say so with a field `expected = true`.
pub fn expected_wait(what: &str) -> bool {
    EXPECTED_WAITS.contains(&what)
}

/// The `WHAT`s of [`expected_wait`].
pub const EXPECTED_WAITS: [&str; 10] =
    ["idle", "exposure", "device", "motor", "beam", "pause", "trigger", "children", "join", "frame_rate"];

fn field<'a>(s: &'a LaneSpan, k: &str) -> Option<&'a Value> {
    s.fields.iter().find(|(n, _)| &**n == k).map(|(_, v)| v)
}

fn field_str(s: &LaneSpan, k: &str) -> Option<String> {
    field(s, k).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn classify(s: &LaneSpan) -> Class {
    let what = s.name.strip_prefix(crate::WAIT_PREFIX).unwrap_or(&s.name);
    if field(s, "expected").and_then(Value::as_bool) == Some(true) {
        return Class::Expected(what.to_owned());
    }
    let queue = || field_str(s, "queue").unwrap_or_else(|| "queue".to_owned());
    let on = || field_str(s, "on").unwrap_or_default();
    match what {
        "idle" => Class::Expected("idle between series".into()),
        "exposure" => Class::Expected(match field_str(s, "detector") {
            Some(d) => format!("exposure of {d}"),
            None => "exposure".into(),
        }),
        "device" | "motor" => {
            let dev = field_str(s, "device").or_else(|| field_str(s, "motor"));
            Class::Expected(match dev {
                Some(d) => format!("device {d}"),
                None => "devices (motion, counting)".into(),
            })
        }
        "beam" | "pause" | "trigger" => Class::Expected(what.to_owned()),
        "children" | "join" => Class::Expected("its child threads".into()),
        "frame_rate" => Class::Paced,
        "queue" => Class::Queue { queue: queue(), space: field_str(s, "wants").as_deref() == Some("space"), on: on() },
        "queue_pop" | "frames" => Class::Queue { queue: queue(), space: false, on: on() },
        "queue_push" => Class::Queue { queue: queue(), space: true, on: on() },
        "lock" => Class::Lock { lock: field_str(s, "lock").unwrap_or_else(|| "lock".into()) },
        other => Class::Own(format!("blocked in {other}")),
    }
}

/// Time accounting of one lane over its active range.
#[derive(Debug, Clone, Default)]
struct LaneTime {
    window: u64,
    busy: BTreeMap<String, u64>,
    expected: BTreeMap<String, u64>,
    paced: u64,
    /// (class, ns, longest spans (start, end))
    stalls: BTreeMap<Class, (u64, Vec<(u64, u64)>)>,
    /// The lane's own blocking waits (`wait.disk`): (what, (ns, longest spans (start, end))). Counted as
    /// busy too; a run no stage waits on is still limited by a lane blocked this much (see [`no_limit`]).
    blocked: BTreeMap<String, (u64, Vec<(u64, u64)>)>,
    feeds: Vec<String>,
}

impl LaneTime {
    fn busy_ns(&self) -> u64 {
        self.busy.values().sum()
    }
    fn expected_ns(&self) -> u64 {
        self.expected.values().sum()
    }
    /// Time the lane could have worked: its window less expected waits.
    fn active(&self) -> u64 {
        self.window.saturating_sub(self.expected_ns()).max(1)
    }
}

/// Exclusive time per span name, outermost waits classified, untraced gaps counted as busy.
fn account(lane: &Lane) -> LaneTime {
    let mut t = LaneTime::default();
    let (Some(first), Some(last)) = (lane.spans.first(), lane.spans.iter().map(|s| s.end).max()) else {
        return t;
    };
    t.window = last.saturating_sub(first.start);
    // Stack of (end, index, child time); spans are sorted by start, longest first.
    let mut stack: Vec<(u64, usize, u64)> = Vec::new();
    let mut covered = 0u64;
    let mut covered_to = first.start;
    let mut wait_to = 0u64;
    let mut selfs = vec![0u64; lane.spans.len()];
    let close = |stack: &mut Vec<(u64, usize, u64)>, selfs: &mut Vec<u64>, upto: Option<u64>| {
        while let Some(&(end, i, child)) = stack.last() {
            if upto.is_some_and(|u| end > u) {
                break;
            }
            stack.pop();
            let dur = lane.spans[i].dur();
            selfs[i] = dur.saturating_sub(child);
            if let Some(parent) = stack.last_mut() {
                parent.2 += dur.min(parent.0.saturating_sub(lane.spans[i].start));
            }
        }
    };
    for (i, s) in lane.spans.iter().enumerate() {
        close(&mut stack, &mut selfs, Some(s.start));
        if s.start > covered_to {
            covered_to = s.start;
        }
        if s.end > covered_to {
            covered += s.end - covered_to;
            covered_to = s.end;
        }
        if let Some(f) = field_str(s, "feeds") {
            if !t.feeds.contains(&f) {
                t.feeds.push(f);
            }
        }
        stack.push((s.end, i, 0));
    }
    close(&mut stack, &mut selfs, None);
    let untraced = t.window.saturating_sub(covered);
    if untraced > 0 {
        t.busy.insert("untraced".into(), untraced);
    }
    for (i, s) in lane.spans.iter().enumerate() {
        if s.start < wait_to {
            continue; // inside an outermost wait: that wait takes the time
        }
        if s.wait {
            wait_to = s.end;
            match classify(s) {
                Class::Expected(what) => *t.expected.entry(what).or_default() += s.dur(),
                Class::Paced => t.paced += s.dur(),
                Class::Own(what) => {
                    *t.busy.entry(what.clone()).or_default() += s.dur();
                    let e = t.blocked.entry(what).or_default();
                    e.0 += s.dur();
                    e.1.push((s.start, s.end));
                    if e.1.len() > 64 {
                        e.1.sort_by_key(|(a, b)| std::cmp::Reverse(b - a));
                        e.1.truncate(16);
                    }
                }
                c => {
                    let e = t.stalls.entry(c).or_default();
                    e.0 += s.dur();
                    e.1.push((s.start, s.end));
                    if e.1.len() > 64 {
                        e.1.sort_by_key(|(a, b)| std::cmp::Reverse(b - a));
                        e.1.truncate(16);
                    }
                }
            }
        } else if selfs[i] > 0 {
            *t.busy.entry(s.name.to_string()).or_default() += selfs[i];
        }
    }
    t
}

/// A stage of the run: one lane, or something outside (a lock, a stage not in these logs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Lane(usize, usize),
    Lock(String),
    Outside(String),
}

/// One lane's share of its time, as reported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageTime {
    /// Process index in the timeline.
    pub process: usize,
    /// Lane index in its process.
    pub lane: usize,
    /// `writer (receive pid 42)`.
    pub name: String,
    /// Busy share of its active time (window less expected waits).
    pub busy: f64,
    /// Busy time by span name (exclusive time), largest first, as shares of the active time.
    pub busy_by_span: Vec<(String, f64)>,
    /// Stall waits: (what it waited for and on whom, share of the active time), largest first.
    pub waits: Vec<(String, f64)>,
    /// Expected waits: (what, share of the whole window), largest first.
    pub expected: Vec<(String, f64)>,
}

/// A span that supports the verdict.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evidence {
    /// Process index.
    pub process: usize,
    /// Lane index.
    pub lane: usize,
    /// Start, ns since the Unix epoch.
    pub start: u64,
    /// End, ns since the Unix epoch.
    pub end: u64,
    /// What it shows.
    pub what: String,
}

/// The diagnosis of a timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diagnosis {
    /// The verdict sentence.
    pub verdict: String,
    /// Name of the limiting stage (`writer`, `lock gil`, `sender`), `None` when no stage limits.
    pub bottleneck: Option<String>,
    /// `(process, lane)` of the limiting stage when it is a lane.
    pub bottleneck_lane: Option<(usize, usize)>,
    /// Lanes waiting on the bottleneck: (process, lane).
    pub waiters: Vec<(usize, usize)>,
    /// Every lane's time.
    pub stages: Vec<StageTime>,
    /// The longest spans behind the verdict (waits on the bottleneck, the bottleneck's own work).
    pub evidence: Vec<Evidence>,
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn wait_text(c: &Class, on: &str) -> String {
    match c {
        Class::Queue { queue, space: true, .. } => format!("queue space on `{queue}` (blocked by {on})"),
        Class::Queue { queue, space: false, .. } => format!("data on `{queue}` (starved by {on})"),
        Class::Lock { lock } => format!("lock `{lock}`"),
        _ => String::new(),
    }
}

/// The stages a wait of class `c` on lane `l` of process `p` waits on (see the module documentation).
fn resolve(tl: &Timeline, times: &[Vec<LaneTime>], p: usize, l: usize, c: &Class) -> Vec<Stage> {
    match c {
        Class::Lock { lock } => vec![Stage::Lock(lock.clone())],
        Class::Queue { queue, space, on } => {
            let pr = &tl.processes[p];
            let named: Vec<Stage> = pr
                .lanes
                .iter()
                .enumerate()
                .filter(|(i, ln)| *i != l && !on.is_empty() && ln.name == *on)
                .map(|(i, _)| Stage::Lane(p, i))
                .collect();
            if !named.is_empty() {
                return named;
            }
            if !*space {
                // Producers announce themselves with `feeds`, same process first.
                for scope in [true, false] {
                    let found: Vec<Stage> = times
                        .iter()
                        .enumerate()
                        .filter(|(pi, _)| (*pi == p) == scope)
                        .flat_map(|(pi, lanes)| {
                            lanes.iter().enumerate().filter_map(move |(li, t)| {
                                ((pi, li) != (p, l) && t.feeds.contains(queue)).then_some(Stage::Lane(pi, li))
                            })
                        })
                        .collect();
                    if !found.is_empty() {
                        return found;
                    }
                }
            }
            let opposite: Vec<Stage> =
                times[p]
                    .iter()
                    .enumerate()
                    .filter(|(li, t)| {
                        *li != l
                            && (t.stalls.keys().any(
                                |k| matches!(k, Class::Queue { queue: q, space: s, .. } if q == queue && s != space),
                            ) || (*space && t.feeds.contains(queue)))
                    })
                    .map(|(li, _)| Stage::Lane(p, li))
                    .collect();
            if !opposite.is_empty() {
                return opposite;
            }
            vec![Stage::Outside(if on.is_empty() { format!("the other end of `{queue}`") } else { on.clone() })]
        }
        _ => vec![],
    }
}

/// A flow from the stage that released a wait to the lane that waited: the producer that delivered the
/// data a starved lane waited for, or the consumer that made the space a blocked lane waited for.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Flow {
    /// `(process, lane)` of the releasing stage.
    pub from: (usize, usize),
    /// When it released the wait (the end of its last span inside the wait, else the wait's end), ns since
    /// the Unix epoch.
    pub from_ts: u64,
    /// `(process, lane)` of the waiter.
    pub to: (usize, usize),
    /// When the wait ended.
    pub to_ts: u64,
    /// How long the waiter waited, ns.
    pub waited: u64,
    /// The queue, or the lock when [`Flow::lock`] is true.
    pub queue: String,
    /// A lock wait: the arrow goes from the thread that held the lock (`holder` of the `wait.lock` span)
    /// to the thread that waited for it.
    pub lock: bool,
}

/// The lane of the thread holding the lock a `wait.lock` span `s` on lane `l` of process `p` waited for:
/// by its `holder_tid`, else by its `holder` name.
fn holder_lane(tl: &Timeline, p: usize, l: usize, s: &LaneSpan) -> Option<usize> {
    let lanes = &tl.processes[p].lanes;
    let tid = field(s, "holder_tid").and_then(Value::as_u64).filter(|t| *t != 0);
    if let Some(i) = tid.and_then(|t| lanes.iter().position(|x| x.tid == t)) {
        return (i != l).then_some(i);
    }
    let name = field_str(s, "holder").filter(|n| !n.is_empty())?;
    lanes.iter().enumerate().position(|(i, x)| i != l && x.name == name)
}

/// Who held lock `lock` while threads waited for it: (holder, ns waited on it), most first.
fn lock_holders(tl: &Timeline, lock: &str) -> Vec<(String, u64)> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for pr in &tl.processes {
        for lane in &pr.lanes {
            for s in lane.spans.iter().filter(|s| s.wait && &*s.name == "wait.lock") {
                if field_str(s, "lock").as_deref() == Some(lock) {
                    if let Some(h) = field_str(s, "holder").filter(|h| !h.is_empty()) {
                        *by.entry(h).or_default() += s.dur();
                    }
                }
            }
        }
    }
    let mut v: Vec<(String, u64)> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Flows from releaser to waiter for the `max` longest queue and lock waits of `tl` whose releasing stage
/// is a lane of these logs (for a lock: the holder named by the wait), in time order.
pub fn flows(tl: &Timeline, max: usize) -> Vec<Flow> {
    let times: Vec<Vec<LaneTime>> = tl.processes.iter().map(|p| p.lanes.iter().map(account).collect()).collect();
    let mut waits: Vec<(u64, usize, usize, usize)> = Vec::new();
    for (p, pr) in tl.processes.iter().enumerate() {
        for (l, lane) in pr.lanes.iter().enumerate() {
            let mut wait_to = 0u64;
            for (i, s) in lane.spans.iter().enumerate() {
                if s.start < wait_to || !s.wait {
                    continue;
                }
                wait_to = s.end;
                if matches!(classify(s), Class::Queue { .. } | Class::Lock { .. }) {
                    waits.push((s.dur(), p, l, i));
                }
            }
        }
    }
    waits.sort_by_key(|w| std::cmp::Reverse(w.0));
    let mut out = Vec::new();
    let mut cache: BTreeMap<(usize, usize, Class), Option<(usize, usize)>> = BTreeMap::new();
    for &(dur, p, l, i) in &waits {
        if out.len() >= max {
            break;
        }
        let s = &tl.processes[p].lanes[l].spans[i];
        let class = classify(s);
        let target = if let Class::Lock { .. } = class {
            holder_lane(tl, p, l, s).map(|h| (p, h))
        } else {
            *cache.entry((p, l, class.clone())).or_insert_with(|| {
                resolve(tl, &times, p, l, &class).into_iter().find_map(|st| match st {
                    Stage::Lane(tp, tl_) => Some((tp, tl_)),
                    _ => None,
                })
            })
        };
        let Some((tp, tli)) = target else { continue };
        let producer = &tl.processes[tp].lanes[tli];
        // The releaser's last span ending within the wait: spans are sorted by start, so look at those
        // starting before the wait ends.
        let upto = producer.spans.partition_point(|x| x.start <= s.end);
        let from_ts = producer.spans[..upto]
            .iter()
            .rev()
            .take(64)
            .filter(|x| x.end >= s.start && x.end <= s.end)
            .map(|x| x.end)
            .max()
            .unwrap_or(s.end);
        let (queue, lock) = match class {
            Class::Queue { queue, .. } => (queue, false),
            Class::Lock { lock } => (lock, true),
            _ => (String::new(), false),
        };
        out.push(Flow { from: (tp, tli), from_ts, to: (p, l), to_ts: s.end, waited: dur, queue, lock });
    }
    out.sort_by_key(|f| f.to_ts);
    out
}

/// Diagnoses `tl`.
pub fn diagnose(tl: &Timeline) -> Diagnosis {
    let times: Vec<Vec<LaneTime>> = tl.processes.iter().map(|p| p.lanes.iter().map(account).collect()).collect();
    let lane_name = |p: usize, l: usize| lane_label(tl, p, l);
    let stage_name = |s: &Stage| match s {
        Stage::Lane(p, l) => lane_name(*p, *l),
        Stage::Lock(n) => format!("lock `{n}`"),
        Stage::Outside(n) => n.clone(),
    };
    // Resolve every stall class of every lane to the stages it waits on.
    let resolve = |p: usize, l: usize, c: &Class| resolve(tl, &times, p, l, c);
    // blame[stage] = waiters: (p, l, class, share of waiter's active time)
    let mut blame: BTreeMap<Stage, Vec<(usize, usize, Class, f64)>> = BTreeMap::new();
    let mut first_target: BTreeMap<(usize, usize), (Stage, f64)> = BTreeMap::new();
    for (p, lanes) in times.iter().enumerate() {
        for (l, t) in lanes.iter().enumerate() {
            let mut per_stage: BTreeMap<Stage, f64> = BTreeMap::new();
            for (c, (ns, _)) in &t.stalls {
                let targets = resolve(p, l, c);
                let share = *ns as f64 / t.active() as f64;
                for s in &targets {
                    blame.entry(s.clone()).or_default().push((p, l, c.clone(), share));
                    *per_stage.entry(s.clone()).or_default() += share;
                }
            }
            if let Some((s, share)) = per_stage.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
                first_target.insert((p, l), (s, share));
            }
        }
    }
    let stages: Vec<StageTime> = times
        .iter()
        .enumerate()
        .flat_map(|(p, lanes)| lanes.iter().enumerate().map(move |(l, t)| (p, l, t)))
        .filter(|(_, _, t)| t.window > 0)
        .map(|(p, l, t)| {
            let a = t.active() as f64;
            let mut busy_by_span: Vec<(String, f64)> = t.busy.iter().map(|(k, v)| (k.clone(), *v as f64 / a)).collect();
            busy_by_span.sort_by(|x, y| y.1.total_cmp(&x.1));
            let mut waits: Vec<(String, f64)> = t
                .stalls
                .iter()
                .map(|(c, (ns, _))| {
                    let on: Vec<String> = resolve(p, l, c).iter().map(stage_name).collect();
                    (wait_text(c, &on.join(", ")), *ns as f64 / a)
                })
                .collect();
            if t.paced > 0 {
                waits.push(("its own frame rate (paced)".into(), t.paced as f64 / a));
            }
            waits.sort_by(|x, y| y.1.total_cmp(&x.1));
            let mut expected: Vec<(String, f64)> =
                t.expected.iter().map(|(k, v)| (k.clone(), *v as f64 / t.window.max(1) as f64)).collect();
            expected.sort_by(|x, y| y.1.total_cmp(&x.1));
            StageTime {
                process: p,
                lane: l,
                name: lane_name(p, l),
                busy: t.busy_ns() as f64 / a,
                busy_by_span,
                waits,
                expected,
            }
        })
        .collect();

    // The most-waited-on stage: the largest single waiter share.
    let top = blame
        .iter()
        .map(|(s, ws)| (s, ws.iter().map(|w| w.3).fold(0.0f64, f64::max)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0)));
    let Some((mut stage, share)) = top.map(|(s, x)| (s.clone(), x)) else {
        return no_limit(tl, &times, stages);
    };
    if share < THRESHOLD {
        return no_limit(tl, &times, stages);
    }
    // Follow the chain: a stage that itself mostly waits on another is not the limit.
    let mut seen = vec![stage.clone()];
    while let Stage::Lane(p, l) = stage {
        match first_target.get(&(p, l)) {
            Some((next, s)) if *s >= 0.5 && !seen.contains(next) && blame.contains_key(next) => {
                stage = next.clone();
                seen.push(stage.clone());
            }
            _ => break,
        }
    }
    let waiters = &blame[&stage];
    let mut ws: Vec<&(usize, usize, Class, f64)> = waiters.iter().collect();
    ws.sort_by(|a, b| b.3.total_cmp(&a.3));
    let name = stage_name(&stage);
    let short = match &stage {
        Stage::Lane(p, l) => lane_short(tl, *p, *l),
        Stage::Lock(_) => "lock".into(),
        Stage::Outside(n) => n.clone(),
    };
    let mut verdict: String;
    let mut evidence = Vec::new();
    let waits_txt: Vec<String> = ws
        .iter()
        .take(3)
        .map(|(p, l, c, s)| {
            format!("the {} thread waited for {} {} of the time", lane_name(*p, *l), wait_text(c, &name), pct(*s))
        })
        .collect();
    match &stage {
        Stage::Lane(p, l) => {
            let t = &times[*p][*l];
            let a = t.active() as f64;
            if t.paced as f64 > 0.5 * a {
                verdict = format!(
                    "{short}-bound (paced): the {name} thread spent {} of its time holding its set frame rate",
                    pct(t.paced as f64 / a)
                );
            } else if t.expected_ns() as f64 > 0.5 * t.window as f64 {
                // The stage others wait on mostly waits for what the run asked for (motion, exposure):
                // the run went at that pace, unless a stall elsewhere dominates.
                if let Some(d) = blocked_lane(tl, &times, &stages) {
                    return d;
                }
                let mut ex: Vec<(&String, &u64)> = t.expected.iter().collect();
                ex.sort_by(|x, y| y.1.cmp(x.1));
                let w = t.window.max(1) as f64;
                let ex: Vec<String> = ex
                    .iter()
                    .filter(|(_, v)| **v as f64 >= 0.01 * w)
                    .take(3)
                    .map(|(k, v)| format!("{k} {}", pct(**v as f64 / w)))
                    .collect();
                let waiter = ws.first().map(|(p, l, c, s)| {
                    format!(
                        "; the {} thread waited for {} {} of the time",
                        lane_name(*p, *l),
                        wait_text(c, &name),
                        pct(*s)
                    )
                });
                let verdict = format!(
                    "no stage limits: the run went at the pace it asked for; the {name} thread spent {} of its time \
                     in expected waits ({}){}",
                    pct(t.expected_ns() as f64 / w),
                    ex.join(", "),
                    waiter.unwrap_or_default()
                );
                return Diagnosis {
                    verdict,
                    bottleneck: None,
                    bottleneck_lane: None,
                    waiters: vec![],
                    stages,
                    evidence: vec![],
                };
            } else {
                let mut parts: Vec<(&String, &u64)> = t.busy.iter().collect();
                parts.sort_by(|x, y| y.1.cmp(x.1));
                let parts: Vec<String> = parts
                    .iter()
                    .filter(|(_, v)| **v as f64 / a >= 0.02)
                    .take(3)
                    .map(|(k, v)| format!("{k} {}", pct(**v as f64 / a)))
                    .collect();
                verdict = format!(
                    "{short}-bound: the {name} thread was busy {} of its active time ({})",
                    pct(t.busy_ns() as f64 / a),
                    parts.join(", ")
                );
            }
            let lane = &tl.processes[*p].lanes[*l];
            let mut own: Vec<&LaneSpan> = lane.spans.iter().filter(|s| s.depth == 0).collect();
            own.sort_by_key(|s| std::cmp::Reverse(s.dur()));
            evidence.extend(own.iter().take(5).map(|s| Evidence {
                process: *p,
                lane: *l,
                start: s.start,
                end: s.end,
                what: format!("{} {}", s.name, fmt_ns(s.dur())),
            }));
        }
        Stage::Lock(lock) => {
            verdict = format!("lock-bound: {} threads serialised on lock `{lock}`", ws.len());
            let holders = lock_holders(tl, lock);
            let total: u64 = holders.iter().map(|h| h.1).sum();
            if total > 0 {
                let held: Vec<String> =
                    holders.iter().take(3).map(|(h, ns)| format!("{h} {}", pct(*ns as f64 / total as f64))).collect();
                verdict.push_str(&format!(" (held by {} of the time others waited)", held.join(", ")));
            }
        }
        Stage::Outside(n) => {
            verdict = format!("{n}-bound: {n} is outside these logs");
        }
    }
    verdict.push_str("; ");
    verdict.push_str(&waits_txt.join("; "));
    // What the first waiter would manage without waiting: its rate scaled by its non-waiting share.
    if let Some((p, _, _, s)) = ws.first() {
        if let Some(frames) = tl.processes[*p].counters.iter().find(|c| &*c.name == "frames") {
            let n = frames.samples.last().map(|x| x.1).unwrap_or(0.0);
            let (t0, t1) = (frames.samples.first().map(|x| x.0), frames.samples.last().map(|x| x.0));
            if let (Some(t0), Some(t1)) = (t0, t1) {
                let secs = (t1.saturating_sub(t0)) as f64 / 1e9;
                if secs > 0.0 && n > 1.0 && *s < 0.99 {
                    let rate = n / secs;
                    verdict.push_str(&format!(
                        "; {rate:.0} frames/s, expected frame rate without this bottleneck ≈ {:.0} frames/s",
                        rate / (1.0 - s)
                    ));
                }
            }
        }
    }
    for (p, l, c, _) in ws.iter().take(3) {
        if let Some((_, spans)) = times[*p][*l].stalls.get(c) {
            let mut spans = spans.clone();
            spans.sort_by_key(|(a, b)| std::cmp::Reverse(b - a));
            evidence.extend(spans.iter().take(5).map(|(a, b)| Evidence {
                process: *p,
                lane: *l,
                start: *a,
                end: *b,
                what: format!("waited {} for {}", fmt_ns(b - a), wait_text(c, &name)),
            }));
        }
    }
    let mut waiter_lanes: Vec<(usize, usize)> = ws.iter().map(|w| (w.0, w.1)).collect();
    waiter_lanes.dedup();
    Diagnosis {
        verdict,
        bottleneck: Some(short),
        bottleneck_lane: match stage {
            Stage::Lane(p, l) => Some((p, l)),
            _ => None,
        },
        waiters: waiter_lanes,
        stages,
        evidence,
    }
}

/// `writer`, or `writer (receive, pid 42)` when the timeline has several processes.
fn lane_label(tl: &Timeline, p: usize, l: usize) -> String {
    let pr = &tl.processes[p];
    if tl.processes.len() > 1 {
        // The process label is `receive (pid 42)`: one level of parentheses reads better in a sentence.
        let flat = match pr.label.strip_suffix(')') {
            Some(l) if l.contains(" (pid ") => l.replacen(" (pid ", ", pid ", 1),
            _ => pr.label.clone(),
        };
        format!("{} ({flat})", pr.lanes[l].name)
    } else {
        pr.lanes[l].name.clone()
    }
}

/// The stage's short name: a program's main thread is named by its program (`simulate`), not `main`.
fn lane_short(tl: &Timeline, p: usize, l: usize) -> String {
    match (&*tl.processes[p].lanes[l].name, &*tl.processes[p].header.command) {
        ("main", cmd) if !cmd.is_empty() => cmd.to_owned(),
        (name, _) => name.to_owned(),
    }
}

/// A lane blocked in its own wait (`wait.disk`) for at least [`THRESHOLD`] of its process's wall time
/// limits the run even when the queues absorb it and nobody waits on it: the run lasts until it is done.
/// The largest such lane, as a diagnosis.
fn blocked_lane(tl: &Timeline, times: &[Vec<LaneTime>], stages: &[StageTime]) -> Option<Diagnosis> {
    let mut best: Option<(usize, usize, u64, f64)> = None;
    for (p, lanes) in times.iter().enumerate() {
        let wall = tl.processes[p].end.saturating_sub(tl.processes[p].start).max(1);
        for (l, t) in lanes.iter().enumerate() {
            let ns: u64 = t.blocked.values().map(|b| b.0).sum();
            let share = ns as f64 / wall as f64;
            if share >= THRESHOLD && best.is_none_or(|b| share > b.3) {
                best = Some((p, l, ns, share));
            }
        }
    }
    let (p, l, _, share) = best?;
    let t = &times[p][l];
    let mut parts: Vec<_> = t.blocked.iter().collect();
    parts.sort_by_key(|(_, (busy, _))| std::cmp::Reverse(*busy));
    let wall = tl.processes[p].end.saturating_sub(tl.processes[p].start).max(1) as f64;
    let mut longest: Vec<(u64, u64, &str)> =
        parts.iter().flat_map(|(what, (_, spans))| spans.iter().map(move |(a, b)| (*a, *b, what.as_str()))).collect();
    longest.sort_by_key(|(a, b, _)| std::cmp::Reverse(b - a));
    let what: Vec<String> = parts.iter().take(3).map(|(k, v)| format!("{k} {}", pct(v.0 as f64 / wall))).collect();
    let name = lane_label(tl, p, l);
    let short = lane_short(tl, p, l);
    let mut verdict = format!("{short}-bound: the {name} thread was {} of the run", what.join(", "));
    if parts.len() > 1 {
        verdict.push_str(&format!(" ({} in all)", pct(share)));
    }
    if let Some((a, b, _)) = longest.first() {
        verdict.push_str(&format!("; its longest wait lasted {}", fmt_ns(b - a)));
    }
    verdict.push_str("; no other stage waited on it (the queues absorbed it), but the run lasted until it was done");
    let evidence = longest
        .iter()
        .take(5)
        .map(|(a, b, w)| Evidence { process: p, lane: l, start: *a, end: *b, what: format!("{w} {}", fmt_ns(b - a)) })
        .collect();
    Some(Diagnosis {
        verdict,
        bottleneck: Some(short),
        bottleneck_lane: Some((p, l)),
        waiters: vec![],
        stages: stages.to_vec(),
        evidence,
    })
}

fn no_limit(tl: &Timeline, times: &[Vec<LaneTime>], stages: Vec<StageTime>) -> Diagnosis {
    if let Some(d) = blocked_lane(tl, times, &stages) {
        return d;
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut window = 0u64;
    for lanes in times {
        for t in lanes {
            window += t.window;
            for (k, v) in &t.expected {
                *expected.entry(k.clone()).or_default() += v;
            }
        }
    }
    let mut ex: Vec<(String, u64)> = expected.into_iter().collect();
    ex.sort_by_key(|e| std::cmp::Reverse(e.1));
    let mut verdict = "no stage limits: no stage waited on another for a fifth of its time".to_owned();
    let ex: Vec<String> = ex
        .iter()
        .filter(|(_, v)| *v as f64 >= 0.01 * window.max(1) as f64)
        .take(3)
        .map(|(k, v)| format!("{k} {}", pct(*v as f64 / window.max(1) as f64)))
        .collect();
    if !ex.is_empty() {
        verdict.push_str(&format!("; expected waits (not stalls): {}", ex.join(", ")));
    }
    Diagnosis { verdict, bottleneck: None, bottleneck_lane: None, waiters: vec![], stages, evidence: vec![] }
}

/// The diagnosis as text for a terminal: the verdict, then one line per stage.
pub fn render_text(d: &Diagnosis) -> String {
    let mut out =
        format!("verdict: {}\n\nstages (share of active time; expected waits of the whole window):\n", d.verdict);
    for s in &d.stages {
        let busy: Vec<String> = s.busy_by_span.iter().take(3).map(|(k, v)| format!("{k} {}", pct(*v))).collect();
        out.push_str(&format!("  {}: busy {} ({})", s.name, pct(s.busy), busy.join(", ")));
        for (w, v) in s.waits.iter().take(3) {
            out.push_str(&format!("; waited for {w} {}", pct(*v)));
        }
        for (w, v) in s.expected.iter().take(2) {
            out.push_str(&format!("; expected: {w} {}", pct(*v)));
        }
        out.push('\n');
    }
    crate::sanitize::terminal(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::log_with;
    use std::sync::Arc;

    fn with_fields(log: &mut crate::log::RunLog, name: &str, f: &[(&str, &str)]) {
        for s in log.spans.iter_mut().filter(|s| &*s.name == name) {
            for (k, v) in f {
                s.fields.push((Arc::from(*k), Value::String((*v).to_owned())));
            }
        }
    }

    #[test]
    fn writer_bound_pipeline_names_the_writer_and_the_blocked_receiver() {
        let mut spans = Vec::new();
        for i in 0..100u64 {
            let t = i * 100;
            spans.push((1, "receive.recv", t, t + 10));
            spans.push((1, "wait.qpush", t + 10, t + 100));
            spans.push((2, "hdf5.write_chunk", t, t + 95));
        }
        let mut log = log_with(&[(1, "receiver"), (2, "writer")], &spans);
        for s in log.spans.iter_mut().filter(|s| &*s.name == "wait.qpush") {
            s.name = Arc::from("wait.queue");
        }
        with_fields(&mut log, "wait.queue", &[("queue", "frames"), ("wants", "space"), ("on", "writer")]);
        let d = diagnose(&Timeline::from_logs(vec![log]));
        assert_eq!(d.bottleneck.as_deref(), Some("writer"), "{}", d.verdict);
        assert!(d.verdict.starts_with("writer-bound: the writer thread was busy 100%"), "{}", d.verdict);
        assert!(d.verdict.contains("(hdf5.write_chunk 95%"), "{}", d.verdict);
        assert!(d.verdict.contains("receiver thread waited for queue space on `frames`"), "{}", d.verdict);
        assert!(!d.evidence.is_empty());
    }

    #[test]
    fn expected_waits_are_not_stalls_and_a_balanced_run_has_no_limit() {
        let mut spans = Vec::new();
        for i in 0..50u64 {
            let t = i * 100;
            spans.push((1, "scan.point", t, t + 100));
            spans.push((1, "wait.device", t + 10, t + 90));
            spans.push((2, "hdf5.write_chunk", t, t + 30));
            spans.push((2, "wait.idle", t + 30, t + 100));
        }
        let d = diagnose(&Timeline::from_logs(vec![log_with(&[(1, "main"), (2, "writer")], &spans)]));
        assert_eq!(d.bottleneck, None, "{}", d.verdict);
        assert!(d.verdict.starts_with("no stage limits"), "{}", d.verdict);
        assert!(d.verdict.contains("idle between series"), "{}", d.verdict);
    }

    #[test]
    fn chain_of_waits_leads_to_the_slow_reader() {
        let mut spans = Vec::new();
        for i in 0..20u64 {
            let t = i * 100;
            spans.push((1, "recon.read", t, t + 95));
            spans.push((2, "wait.pop", t, t + 90));
            spans.push((2, "recon.slab", t + 90, t + 98));
            spans.push((3, "wait.results", t, t + 97));
        }
        let mut log = log_with(&[(1, "reader"), (2, "cpu"), (3, "main")], &spans);
        for s in log.spans.iter_mut() {
            if &*s.name == "wait.pop" || &*s.name == "wait.results" {
                let q = if &*s.name == "wait.pop" { "slabs" } else { "results" };
                s.name = Arc::from("wait.queue");
                s.fields.push((Arc::from("queue"), Value::String(q.into())));
                s.fields.push((Arc::from("wants"), Value::String("data".into())));
            }
            let feeds = match &*s.name {
                "recon.read" => "slabs",
                "recon.slab" => "results",
                _ => continue,
            };
            s.fields.push((Arc::from("feeds"), Value::String(feeds.into())));
        }
        let d = diagnose(&Timeline::from_logs(vec![log]));
        assert_eq!(d.bottleneck.as_deref(), Some("reader"), "{}", d.verdict);
        assert!(d.verdict.contains("recon.read"), "{}", d.verdict);
    }

    #[test]
    fn a_dominating_stall_nobody_waits_on_is_named() {
        // The queues hold every frame, so nobody waits on the writer; its one 400-unit disk stall still
        // makes the run last until it is done.
        let mut spans = Vec::new();
        for i in 0..20u64 {
            let t = i * 10;
            spans.push((1, "wait.trigger", t, t + 8));
            spans.push((1, "sim.expose", t + 8, t + 10));
            spans.push((2, "sim.write_chunk", t + 10, t + 11));
        }
        spans.push((2, "wait.disk", 100, 500));
        let d = diagnose(&Timeline::from_logs(vec![log_with(&[(1, "camera"), (2, "writer")], &spans)]));
        assert_eq!(d.bottleneck.as_deref(), Some("writer"), "{}", d.verdict);
        assert!(d.verdict.starts_with("writer-bound: the writer thread was blocked in disk"), "{}", d.verdict);
        assert_eq!(d.evidence.first().map(|e| e.end - e.start), Some(400));
    }

    #[test]
    fn a_flow_goes_from_the_producer_that_released_a_wait_to_the_waiter() {
        let mut spans = Vec::new();
        for i in 0..5u64 {
            let t = i * 100;
            spans.push((1, "recon.read", t, t + 80));
            spans.push((2, "wait.queue", t, t + 85 + i));
            spans.push((2, "recon.slab", t + 85 + i, t + 99));
        }
        let mut log = log_with(&[(1, "reader"), (2, "cpu")], &spans);
        with_fields(&mut log, "wait.queue", &[("queue", "slabs"), ("wants", "data")]);
        with_fields(&mut log, "recon.read", &[("feeds", "slabs")]);
        let tl = Timeline::from_logs(vec![log]);
        let f = flows(&tl, 3);
        assert_eq!(f.len(), 3, "the three longest waits: {f:?}");
        let lane = |n: &str| tl.processes[0].lanes.iter().position(|l| l.name == n).expect("lane");
        assert!(f.iter().all(|x| x.from == (0, lane("reader")) && x.to == (0, lane("cpu")) && x.queue == "slabs"));
        // The last three waits (longest), in time order; each released when the read ended.
        let base = tl.processes[0].lanes[lane("cpu")].spans[0].start;
        let rel: Vec<(u64, u64)> = f.iter().map(|x| (x.from_ts - base, x.to_ts - base)).collect();
        assert_eq!(rel, [(280, 287), (380, 388), (480, 489)]);
    }

    #[test]
    fn lock_contention_names_the_lock() {
        let mut spans = Vec::new();
        for i in 0..20u64 {
            let t = i * 100;
            spans.push((1, "py.work", t, t + 50));
            spans.push((1, "wait.lock", t + 50, t + 100));
            spans.push((2, "wait.lock", t, t + 50));
            spans.push((2, "py.work", t + 50, t + 100));
        }
        let mut log = log_with(&[(1, "a"), (2, "b")], &spans);
        with_fields(&mut log, "wait.lock", &[("lock", "gil")]);
        let d = diagnose(&Timeline::from_logs(vec![log]));
        assert_eq!(d.bottleneck.as_deref(), Some("lock"), "{}", d.verdict);
        assert!(d.verdict.starts_with("lock-bound: 2 threads serialised on lock `gil`"), "{}", d.verdict);
    }
}

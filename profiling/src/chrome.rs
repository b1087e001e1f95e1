//! Chrome Trace Event JSON (the format of chrome://tracing, opened by Perfetto): `M` metadata events name
//! processes and threads, `X` complete events are spans, `C` events are counters, `i` are instants, and
//! `s`/`f` flow events join the stage that released a queue or lock wait to the lane that waited (see
//! [`crate::diagnose::flows`]; Perfetto draws them as arrows). Times are microseconds from the start of
//! the timeline.

use serde_json::{json, Map, Value};

use crate::timeline::Timeline;

/// Flow events exported at most (the longest queue waits).
pub const FLOWS: usize = 5000;

/// Renders the timeline as one Chrome Trace Event JSON document.
pub fn render(tl: &Timeline) -> String {
    let mut ev: Vec<Value> = Vec::with_capacity(tl.span_count() + 64);
    let us = |t: u64| (t.saturating_sub(tl.start)) as f64 / 1000.0;
    let pid_of = |pi: usize| {
        let p = &tl.processes[pi];
        if p.header.pid != 0 {
            p.header.pid as u64
        } else {
            pi as u64 + 1
        }
    };
    // Device lanes have no thread id: number them after the threads.
    let tid_of = |pi: usize, li: usize| match tl.processes[pi].lanes[li].tid {
        0 => 1_000_000_000 + li as u64,
        t => t,
    };
    for (pi, p) in tl.processes.iter().enumerate() {
        let pid = pid_of(pi);
        ev.push(json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": p.label}}));
        for (li, lane) in p.lanes.iter().enumerate() {
            let tid = tid_of(pi, li);
            ev.push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": lane.name}}));
            ev.push(
                json!({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": li}}),
            );
            for s in &lane.spans {
                let cat = s.name.split('.').next().unwrap_or("span");
                ev.push(json!({
                    "ph": "X", "name": &*s.name, "cat": cat, "pid": pid, "tid": tid,
                    "ts": us(s.start), "dur": (s.dur()) as f64 / 1000.0, "args": args(&s.fields),
                }));
            }
            for e in &lane.events {
                ev.push(json!({
                    "ph": "i", "s": "t", "name": &*e.name, "pid": pid, "tid": tid, "ts": us(e.ts),
                    "args": args(&e.fields),
                }));
            }
        }
        for c in &p.counters {
            for (t, v) in &c.samples {
                ev.push(json!({"ph": "C", "name": &*c.name, "pid": pid, "ts": us(*t), "args": {&*c.name: v}}));
            }
        }
    }
    for (k, f) in crate::diagnose::flows(tl, FLOWS).iter().enumerate() {
        let name = if f.lock { format!("released lock `{}`", f.queue) } else { format!("released `{}`", f.queue) };
        let (fp, fl, tp, tl_) = (f.from.0, f.from.1, f.to.0, f.to.1);
        ev.push(json!({
            "ph": "s", "id": k, "name": name, "cat": "flow", "pid": pid_of(fp), "tid": tid_of(fp, fl),
            "ts": us(f.from_ts),
        }));
        ev.push(json!({
            "ph": "f", "bp": "e", "id": k, "name": name, "cat": "flow", "pid": pid_of(tp), "tid": tid_of(tp, tl_),
            "ts": us(f.to_ts), "args": {"waited_ns": f.waited},
        }));
    }
    json!({"traceEvents": ev, "displayTimeUnit": "ns"}).to_string()
}

fn args(fields: &crate::log::Fields) -> Value {
    Value::Object(fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<Map<String, Value>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::log_with;

    #[test]
    fn metadata_spans_and_counters() {
        let mut log = log_with(&[(1, "main"), (2, "writer")], &[(1, "a.b", 0, 2000), (2, "wait.frames", 500, 1500)]);
        log.counters.push(crate::log::CounterSample {
            tid: 2,
            name: "queue_depth".into(),
            ts: 1_000 + 700,
            value: 3.0,
        });
        log.spans[0].fields.push(("frame".into(), json!(12)));
        let v: Value = serde_json::from_str(&render(&Timeline::from_logs(vec![log]))).expect("valid JSON");
        let ev = v["traceEvents"].as_array().expect("events");
        let by = |ph: &str| ev.iter().filter(|e| e["ph"] == ph).collect::<Vec<_>>();
        let names: Vec<&str> = by("M")
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(names, ["main", "writer"]);
        assert_eq!(
            by("M").iter().find(|e| e["name"] == "process_name").map(|e| e["args"]["name"].clone()),
            Some(json!("test (pid 7)"))
        );
        let x = by("X");
        assert_eq!(x.len(), 2);
        assert_eq!(
            (x[0]["name"].as_str(), x[0]["ts"].as_f64(), x[0]["dur"].as_f64()),
            (Some("a.b"), Some(0.0), Some(2.0))
        );
        assert_eq!(x[0]["args"]["frame"], 12);
        assert_eq!(x[1]["tid"], 2);
        assert_eq!((x[1]["ts"].as_f64(), x[1]["cat"].as_str()), (Some(0.5), Some("wait")));
        let c = by("C");
        assert_eq!((c[0]["ts"].as_f64(), c[0]["args"]["queue_depth"].as_f64()), (Some(0.7), Some(3.0)));
    }

    #[test]
    fn a_queue_wait_is_a_flow_from_its_producer() {
        let mut log =
            log_with(&[(1, "camera"), (2, "receiver")], &[(1, "sim.expose", 0, 400), (2, "wait.queue", 100, 500)]);
        for (k, v) in [("queue", "camera"), ("wants", "data"), ("on", "camera")] {
            log.spans[1].fields.push((k.into(), json!(v)));
        }
        let v: Value = serde_json::from_str(&render(&Timeline::from_logs(vec![log]))).expect("valid JSON");
        let ev = v["traceEvents"].as_array().expect("events");
        let s: Vec<&Value> = ev.iter().filter(|e| e["ph"] == "s").collect();
        let f: Vec<&Value> = ev.iter().filter(|e| e["ph"] == "f").collect();
        assert_eq!((s.len(), f.len()), (1, 1));
        assert_eq!((s[0]["tid"].as_u64(), s[0]["ts"].as_f64()), (Some(1), Some(0.4)), "from the camera's span end");
        assert_eq!((f[0]["tid"].as_u64(), f[0]["ts"].as_f64(), &f[0]["bp"]), (Some(2), Some(0.5), &json!("e")));
        assert_eq!(s[0]["id"], f[0]["id"]);
        assert_eq!(f[0]["name"], "released `camera`");
    }
}

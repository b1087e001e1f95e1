//! Chrome Trace Event JSON (the format of chrome://tracing, opened by Perfetto): `M` metadata events name
//! processes and threads, `X` complete events are spans, `C` events are counters, `i` are instants.
//! Times are microseconds from the start of the timeline.

use serde_json::{json, Map, Value};

use crate::timeline::Timeline;

/// Renders the timeline as one Chrome Trace Event JSON document.
pub fn render(tl: &Timeline) -> String {
    let mut ev: Vec<Value> = Vec::with_capacity(tl.span_count() + 64);
    let us = |t: u64| (t.saturating_sub(tl.start)) as f64 / 1000.0;
    for (pi, p) in tl.processes.iter().enumerate() {
        let pid = if p.header.pid != 0 { p.header.pid as u64 } else { pi as u64 + 1 };
        ev.push(json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": p.label}}));
        for (li, lane) in p.lanes.iter().enumerate() {
            // Device lanes have no thread id: number them after the threads.
            let tid = if lane.tid != 0 { lane.tid } else { 1_000_000_000 + li as u64 };
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
}

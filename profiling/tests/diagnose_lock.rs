//! (e) Lock contention, the h5py-holds-the-GIL case: two threads that each do their work while holding
//! one named lock are serialised by it; the recorded log's diagnosis names the lock.

use std::time::Duration;

use profiling::lock::NamedMutex;
use profiling::{Config, Outcome, RunInfo};
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn two_threads_serialised_on_one_lock_are_lock_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gil.jsonl");
    let info = RunInfo { command: "gil".into(), argv: vec!["gil".into()], version: "0".into() };
    let (layer, guard) = profiling::record_to_file(&path, &info, Config::default()).expect("record");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let gil = NamedMutex::new("gil", 0u64);
    std::thread::scope(|s| {
        for name in ["python-a", "python-b"] {
            let (d, gil) = (dispatch.clone(), &gil);
            std::thread::Builder::new()
                .name(name.into())
                .spawn_scoped(s, move || {
                    tracing::dispatcher::with_default(&d, || {
                        for _ in 0..40 {
                            {
                                // Pure-Python work that does not need the lock (short).
                                let _c = tracing::info_span!("py.compute").entered();
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            let mut g = gil.lock();
                            let _w = tracing::info_span!("h5py.write").entered();
                            // A write that holds the lock while it waits for the disk (sleeps: the
                            // serialisation shows however loaded the machine is).
                            *g += 1;
                            std::thread::sleep(Duration::from_millis(3));
                        }
                    })
                })
                .expect("spawn");
        }
    });
    drop(dispatch);
    guard.finish(&Outcome::Success).expect("finish");
    let tl = profiling::timeline::Timeline::from_paths(&[path]).expect("read log");
    let d = profiling::diagnose::diagnose(&tl);
    assert_eq!(d.bottleneck.as_deref(), Some("lock"), "{} {:?}", d.verdict, d.stages);
    assert!(d.verdict.starts_with("lock-bound: 2 threads serialised on lock `gil`"), "{}", d.verdict);
    assert!(d.verdict.contains("python-a") && d.verdict.contains("python-b"), "{}", d.verdict);
    assert!(d.evidence.iter().any(|e| e.what.contains("lock `gil`")), "{:?}", d.evidence);
    // The wait spans say who held the lock.
    let log = profiling::log::RunLog::read(&tl.processes[0].path).expect("log");
    let holders: Vec<String> = log
        .spans
        .iter()
        .filter(|s| &*s.name == "wait.lock")
        .filter_map(|s| s.fields.iter().find(|(k, _)| &**k == "holder").map(|(_, v)| v.to_string()))
        .collect();
    assert!(holders.iter().any(|h| h.contains("python-")), "{holders:?}");
    // The verdict names the holders, each holding the lock for part of the others' waits.
    assert!(d.verdict.contains("(held by python-"), "{}", d.verdict);
    // Arrows from the holder that released the lock to the thread that waited, on the page and in the
    // Chrome export: from the end of the holder's write (inside the wait) to the end of the wait.
    let lane = |n: &str| tl.processes[0].lanes.iter().position(|l| l.name == n).expect("lane");
    let (a, b) = ((0, lane("python-a")), (0, lane("python-b")));
    let flows = profiling::diagnose::flows(&tl, 100_000);
    let locks: Vec<_> = flows.iter().filter(|f| f.lock && f.queue == "gil").collect();
    assert!(!locks.is_empty(), "{flows:?}");
    for f in &locks {
        assert!((f.from, f.to) == (a, b) || (f.from, f.to) == (b, a), "between the two threads: {f:?}");
        assert!(f.from_ts <= f.to_ts && f.to_ts - f.from_ts < f.waited, "released within the wait: {f:?}");
    }
    let chrome: serde_json::Value =
        serde_json::from_str(&profiling::chrome::render(&tl)).expect("chrome trace is JSON");
    let ev = chrome["traceEvents"].as_array().expect("events");
    let of = |ph: &str| -> Vec<&serde_json::Value> {
        ev.iter().filter(|e| e["ph"] == ph && e["name"] == "released lock `gil`").collect()
    };
    let (starts, ends) = (of("s"), of("f"));
    assert!(!starts.is_empty() && starts.len() == ends.len() && starts.len() <= locks.len(), "{starts:?}");
    let tids = [tl.processes[0].lanes[a.1].tid, tl.processes[0].lanes[b.1].tid];
    for (s, f) in starts.iter().zip(&ends) {
        assert_eq!(s["id"], f["id"]);
        let (st, ft) = (s["tid"].as_u64().unwrap_or(0), f["tid"].as_u64().unwrap_or(0));
        assert!(tids.contains(&st) && tids.contains(&ft) && st != ft, "from the holder to the waiter: {s} {f}");
    }
    let page = profiling::html::render(&tl, "gil");
    assert!(page.contains("lock: from the holder that released it to the waiter"), "the legend explains the arrow");
    // Kept for a look in a browser.
    let _ = std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("timeline_lock.html"), &page);
}

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
}

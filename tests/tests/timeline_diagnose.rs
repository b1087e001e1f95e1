//! The timeline names the bottleneck: real runs of the real pipeline with an injected bottleneck each,
//! diagnosed by `beamline timeline LOG... --summary --json`.
//!
//! Injections: (a) a slow disk (`BEAMLINE_TEST_WRITE_DELAY_MS`, every chunk write sleeps), (b) slow
//! reconstruction compute (`--threads 1`, reading from a fast file), (c) a slow reader in the
//! reconstruction (`BEAMLINE_TEST_READ_DELAY_MS`), (d) a sender slower than the receiver (`simulate
//! --fps`), (e) two threads serialised on one named lock; and a balanced run (no stage limits).

#[path = "acquisition_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tests::{beamline, free_endpoint};

const LIMIT: Duration = Duration::from_secs(120);

fn ok(out: &Output, what: &str) -> String {
    common::ok(out, what)
}

fn diagnose(logs: &[&Path]) -> Value {
    let out = beamline().arg("timeline").args(logs).args(["--summary", "--json"]).output().expect("run timeline");
    serde_json::from_str(&ok(&out, "timeline --summary --json")).expect("summary is JSON")
}

fn verdict(d: &Value) -> &str {
    d["verdict"].as_str().unwrap_or("")
}

/// simulate → receive into `dir/scan.h5`; returns (receive log, simulate log, file).
fn acquire(dir: &Path, env: &[(&str, &str)], sim: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let ep = free_endpoint();
    let (rlog, slog, file) = (dir.join("receive.jsonl"), dir.join("simulate.jsonl"), dir.join("scan.h5"));
    let rx = beamline()
        .envs(env.iter().copied())
        .arg("--log")
        .arg(&rlog)
        .args(["receive", "--bind", &ep, "--queue", "8", "--output"])
        .arg(&file)
        .arg("-q")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start receive");
    let s = beamline()
        .arg("--log")
        .arg(&slog)
        .args(["simulate", "--connect", &ep, "-q", "--darks", "2", "--flats", "2"])
        .args(sim)
        .output()
        .expect("simulate");
    ok(&s, "simulate");
    ok(&common::wait(rx, LIMIT, "receive"), "receive");
    (rlog, slog, file)
}

#[test]
fn a_slow_disk_is_writer_bound_and_the_receiver_waits_for_queue_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rlog, slog, _) = acquire(
        dir.path(),
        &[("BEAMLINE_TEST_WRITE_DELAY_MS", "15"), ("BEAMLINE_TRACE", "frames")],
        &["--size", "64", "--angles", "80"],
    );
    let d = diagnose(&[&rlog, &slog]);
    assert_eq!(d["bottleneck"], "writer", "{}", verdict(&d));
    let v = verdict(&d);
    assert!(v.starts_with("writer-bound: the writer"), "{v}");
    assert!(v.contains("hdf5.write_chunk"), "the writer's time is its chunk writes: {v}");
    assert!(v.contains("waited for queue space on `frames`"), "{v}");
    assert!(!d["evidence"].as_array().expect("evidence").is_empty());
}

#[test]
fn d_a_sender_slower_than_the_receiver_is_sender_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rlog, slog, _) = acquire(dir.path(), &[], &["--size", "32", "--angles", "40", "--fps", "40"]);
    let d = diagnose(&[&rlog, &slog]);
    let v = verdict(&d);
    assert_eq!(d["bottleneck"], "simulate", "the simulator's main thread paces the run: {v}");
    assert!(v.contains("-bound (paced)"), "{v}");
    assert!(v.contains("waited for data on `zmq`"), "the receive thread is starved by the sender: {v}");
    // Alone, the receiver's log still says who it waits for.
    let alone = diagnose(&[&rlog]);
    assert!(verdict(&alone).starts_with("sender-bound"), "{}", verdict(&alone));
}

fn recon(dir: &Path, input: &Path, env: &[(&str, &str)], threads: &str) -> PathBuf {
    let log = dir.join(format!("recon-{threads}-{}.jsonl", env.len()));
    let out = beamline()
        .envs(env.iter().copied())
        .arg("--log")
        .arg(&log)
        .arg("recon")
        .arg(input)
        .arg("-o")
        .arg(dir.join(format!("out-{threads}-{}", env.len())))
        .args(["--backend", "cpu", "--threads", threads, "--memory", "1M", "--center", "47.5", "--quiet"])
        .output()
        .expect("recon");
    ok(&out, "recon");
    log
}

#[test]
fn b_c_reconstruction_compute_bound_with_one_thread_and_reader_bound_with_a_slow_reader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, _, file) = acquire(dir.path(), &[], &["--size", "96", "--angles", "180"]);
    // (b) one CPU thread: the device worker computes, the reader waits for slab space, the collector
    // waits for results.
    let d = diagnose(&[&recon(dir.path(), &file, &[], "1")]);
    let v = verdict(&d);
    let worker = d["bottleneck"].as_str().unwrap_or("");
    assert!(worker.starts_with("cpu"), "the device worker limits: {v}");
    assert!(v.contains("recon.slab") || v.contains("recon."), "{v}");
    assert!(v.contains("data on `results`"), "the collector is starved by the worker: {v}");
    // (c) a slow reader: the worker starves for slabs, the chain leads to the reader.
    let d = diagnose(&[&recon(dir.path(), &file, &[("BEAMLINE_TEST_READ_DELAY_MS", "150")], "2")]);
    let v = verdict(&d);
    assert_eq!(d["bottleneck"], "reader", "{v}");
    assert!(v.starts_with("reader-bound: the reader thread was busy"), "{v}");
    assert!(v.contains("recon.read"), "{v}");
    assert!(v.contains("data on `slabs`"), "{v}");
}

#[test]
fn balanced_run_has_no_limiting_stage() {
    // The synthetic camera → receiver → writer pipeline runs on a hardware trigger: every stage keeps up,
    // the camera waits for its trigger (expected), nothing waits on anything for long.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("pipe.jsonl");
    let out = beamline()
        .arg("--log")
        .arg(&log)
        .args(["bench", "trace", "--pipeline-only", "--frames", "200"])
        .output()
        .expect("pipeline");
    ok(&out, "bench trace --pipeline-only");
    let d = diagnose(&[&log]);
    assert_eq!(d["bottleneck"], Value::Null, "{}", verdict(&d));
    assert!(verdict(&d).starts_with("no stage limits"), "{}", verdict(&d));
    assert!(verdict(&d).contains("trigger"), "the trigger wait is named as expected: {}", verdict(&d));
}

#[test]
fn an_injected_stall_that_dominates_the_run_is_the_verdict() {
    // The synthetic pipeline's queues hold every frame, so nobody waits on the writer while it sleeps
    // 400 ms in `wait.disk`; the run still lasts until the writer is done, and the stall list ranks it first.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("pipe.jsonl");
    let out = beamline()
        .arg("--log")
        .arg(&log)
        .args(["bench", "trace", "--pipeline-only", "--frames", "200", "--inject-stall-ms", "400"])
        .output()
        .expect("pipeline");
    ok(&out, "bench trace --pipeline-only --inject-stall-ms 400");
    let d = diagnose(&[&log]);
    let v = verdict(&d);
    assert_eq!(d["bottleneck"], "writer", "{v}");
    assert!(v.starts_with("writer-bound: the writer thread was blocked in disk"), "{v}");
    assert!(v.contains("longest wait lasted"), "{v}");
    let first = &d["evidence"][0];
    let dur = first["end"].as_u64().unwrap_or(0).saturating_sub(first["start"].as_u64().unwrap_or(0));
    assert!(dur >= 400_000_000, "the evidence is the injected stall: {first}");
}

#[test]
fn a_scan_summary_names_the_motor_and_the_detector_as_expected_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("line.rhai");
    std::fs::write(&script, "scan(samx, 0.0, 20.0, 5);\n").expect("script");
    let log = dir.path().join("scan.jsonl");
    let out = beamline()
        .arg("--log")
        .arg(&log)
        .arg("scan")
        .arg(&script)
        .args(["--time-scale", "0.05", "-o"])
        .arg(dir.path())
        .output()
        .expect("scan");
    ok(&out, "scan");
    let d = diagnose(&[&log]);
    let expected: Vec<String> = d["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .flat_map(|s| s["expected"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e[0].as_str().map(str::to_owned))
        .collect();
    assert!(expected.iter().any(|e| e == "device samx"), "motion of samx is an expected wait: {expected:?}");
    assert!(expected.iter().any(|e| e.starts_with("exposure of ")), "{expected:?}");
    // The in-process detector is the producer of the receiver's `zmq` queue, seen in this very log: the
    // run went at the pace the scan asked for (motion, exposure), no stage limits it.
    let v = verdict(&d);
    assert!(!v.contains("outside these logs"), "the sender is the scan's own detector: {v}");
    assert_eq!(d["bottleneck"], Value::Null, "{v}");
    assert!(v.starts_with("no stage limits: the run went at the pace it asked for"), "{v}");
    assert!(v.contains("expected waits (device samx"), "motion is named as an expected wait: {v}");
    assert!(v.contains("waited for data on `zmq`"), "{v}");
    assert!(!v.contains("-bound"), "an expected wait is never the verdict: {v}");
    let text = beamline().arg("timeline").arg(&log).arg("--summary").output().expect("timeline");
    assert!(ok(&text, "timeline --summary").contains("samx"), "the text summary names the motor");
}

#[test]
fn per_frame_spans_are_off_by_default_and_waits_stay_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rlog, slog, _) = acquire(dir.path(), &[], &["--size", "32", "--angles", "20"]);
    let (r, s) = (std::fs::read_to_string(rlog).expect("log"), std::fs::read_to_string(slog).expect("log"));
    assert!(r.contains("\"n\":\"wait.queue\"") && s.contains("\"n\":\"sim.series\""), "stage spans are on");
    assert!(!r.contains("\"n\":\"hdf5.write_chunk\"") && !s.contains("\"n\":\"sim.send\""), "per-frame spans are off");
    let dir2 = tempfile::tempdir().expect("tempdir");
    let (rlog, _, _) = acquire(dir2.path(), &[("BEAMLINE_TRACE", "frames")], &["--size", "32", "--angles", "20"]);
    assert!(std::fs::read_to_string(rlog).expect("log").contains("\"n\":\"hdf5.write_chunk\""));
}

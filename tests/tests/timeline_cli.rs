//! `beamline` records a run log for every command, `beamline timeline --format chrome` writes Chrome
//! Trace Event JSON, and `beamline runs report` groups runs and failures.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use tests::beamline;

fn in_run_dir(dir: &Path, args: &[&str]) -> Output {
    beamline().env("BEAMLINE_RUN_DIR", dir).args(args).output().expect("run beamline")
}

fn logs_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("run dir exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

#[test]
fn every_command_leaves_a_log_with_header_and_footer_and_runs_report_groups_failures() {
    let runs = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let ok = in_run_dir(runs.path(), &["bench", "trace", "--pipeline-only", "--frames", "20"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    for missing in ["a.jsonl", "b.jsonl"] {
        let p = work.path().join("nowhere").join(missing);
        let bad = in_run_dir(runs.path(), &["timeline", p.to_str().expect("utf-8 path")]);
        assert!(!bad.status.success());
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(stderr.contains("log: "), "a failed command names its log: {stderr}");
    }
    let logs = logs_in(runs.path());
    assert_eq!(logs.len(), 3, "{logs:?}");
    let first = records(&logs[0]);
    assert_eq!(first[0]["t"], "header");
    assert!(first[0]["pid"].as_u64().is_some());
    let footers: Vec<Value> = logs.iter().map(|l| records(l).pop().expect("records")).collect();
    assert!(footers.iter().all(|f| f["t"] == "footer"));
    let failed: Vec<&Value> = footers.iter().filter(|f| f["status"] == "error").collect();
    assert_eq!(failed.len(), 2);
    assert!(
        failed[0]["error"].as_str().unwrap_or("").contains("a.jsonl")
            || failed[1]["error"].as_str().unwrap_or("").contains("a.jsonl")
    );

    let html = work.path().join("report.html");
    let out = beamline()
        .env("BEAMLINE_RUN_DIR", work.path().join("elsewhere"))
        .args(["runs", "report"])
        .arg(runs.path())
        .arg("-o")
        .arg(&html)
        .output()
        .expect("runs report");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(html.with_extension("json")).expect("json written"))
            .expect("JSON");
    assert_eq!(report["runs"].as_array().map(Vec::len), Some(3));
    assert_eq!(report["per_command"]["timeline"]["runs"], 2);
    assert_eq!(report["per_command"]["timeline"]["failed"], 2);
    assert_eq!(report["per_command"]["bench trace"]["failed"], 0);
    assert_eq!(
        report["failures"].as_array().map(Vec::len),
        Some(1),
        "both failures are one kind: {}",
        report["failures"]
    );
    assert_eq!(report["failures"][0]["count"], 2);
    let bench =
        report["runs"].as_array().expect("runs").iter().find(|r| r["command"] == "bench trace").expect("bench run");
    assert_eq!(bench["frames"], 20.0, "last value of counter.frames");
    assert!(bench["frames_per_s"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(bench["cpu_ns_per_frame"].as_f64().unwrap_or(0.0) > 0.0);
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("<svg") && page.contains("Failures by kind"));
}

#[test]
fn chrome_trace_export_has_thread_names_spans_and_counters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("run.jsonl");
    let out = dir.path().join("trace.json");
    let st = beamline()
        .arg("--log")
        .arg(&log)
        .args(["--trace", "frames", "bench", "trace", "--pipeline-only", "--frames", "30"])
        .status()
        .expect("run");
    assert!(st.success());
    let st = beamline().arg("timeline").arg(&log).args(["--format", "chrome", "-o"]).arg(&out).status().expect("run");
    assert!(st.success());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("valid JSON");
    let ev = v["traceEvents"].as_array().expect("traceEvents");
    let threads: Vec<&str> = ev
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    for t in ["camera", "receiver", "writer"] {
        assert!(threads.contains(&t), "{threads:?}");
    }
    let writes = ev.iter().filter(|e| e["ph"] == "X" && e["name"] == "sim.write_chunk").count();
    assert_eq!(writes, 30);
    let x = ev.iter().find(|e| e["ph"] == "X").expect("a span");
    assert!(x["ts"].is_f64() && x["dur"].is_f64() && x["pid"].is_u64() && x["tid"].is_u64());
    let frames: Vec<f64> = ev
        .iter()
        .filter(|e| e["ph"] == "C" && e["name"] == "frames")
        .filter_map(|e| e["args"]["frames"].as_f64())
        .collect();
    assert_eq!(frames.last(), Some(&30.0));
    // Flow events: each `s` (at the producer) has its `f` (at the waiter, bound to the enclosing wait).
    let tid_of = |name: &str| {
        ev.iter().find(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["args"]["name"] == name).map(|e| &e["tid"])
    };
    let starts: Vec<&Value> = ev.iter().filter(|e| e["ph"] == "s").collect();
    assert!(!starts.is_empty(), "queue waits are exported as flows");
    for s in &starts {
        let f = ev.iter().find(|e| e["ph"] == "f" && e["id"] == s["id"]).expect("each flow ends");
        assert!(f["ts"].as_f64() >= s["ts"].as_f64(), "{s} -> {f}");
        assert_eq!(f["bp"], "e");
    }
    let camera_to_receiver = starts.iter().any(|s| {
        Some(&s["tid"]) == tid_of("camera")
            && ev.iter().any(|f| f["ph"] == "f" && f["id"] == s["id"] && Some(&f["tid"]) == tid_of("receiver"))
    });
    assert!(camera_to_receiver, "the receiver's waits for data were released by the camera");
}

//! The timeline page in real headless Chromium, driven over the DevTools protocol by an independent
//! Python peer (`tests/py/timeline_cdp.py`): loads with no console error and no network request, one
//! lane per thread of the run, the injected stall first, hostile strings inert. Screenshots are kept
//! under `target/test-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tests::{beamline, chromium, python, workspace_root, CHROMIUM_FLAGS};

/// Loads `page` in Chromium; evaluates `exprs` after the load event; returns the peer's report.
fn load_in_chromium(page: &Path, shot: &Path, exprs: Value, dir: &Path) -> Value {
    let exprs_path = dir.join("exprs.json");
    std::fs::write(&exprs_path, exprs.to_string()).expect("write expressions");
    let out = Command::new(python())
        .arg(workspace_root().join("tests/py/timeline_cdp.py"))
        .arg(chromium())
        .arg(page)
        .arg(shot)
        .arg(&exprs_path)
        .args(CHROMIUM_FLAGS)
        .output()
        .expect("start python");
    assert!(
        out.status.success(),
        "CDP peer failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("peer prints one JSON object")
}

fn artifact(name: &str) -> PathBuf {
    let dir = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact folder");
    dir.join(name)
}

fn assert_clean(report: &Value) {
    for key in ["console_errors", "exceptions", "log_errors", "requests"] {
        assert_eq!(report[key], json!([]), "{key} must be empty; whole report: {report}");
    }
    assert_eq!(report["eval"]["ready"], "ok", "page did not finish drawing: {report}");
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).expect("screenshot written");
    assert!(bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"), "{} is not a PNG", path.display());
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run beamline");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Thread names of every thread that recorded something, from the log itself.
fn threads_in_log(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).expect("read log");
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["t"] == "thread")
        .map(|v| v["name"].as_str().unwrap_or("").to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn page_of_a_real_run_loads_clean_with_a_lane_per_thread_and_the_injected_stall_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("run.jsonl");
    let page = dir.path().join("timeline.html");
    run(beamline().arg("--log").arg(&log).args([
        "--trace",
        "frames",
        "bench",
        "trace",
        "--pipeline-only",
        "--frames",
        "200",
        "--inject-stall-ms",
        "400",
    ]));
    let threads = threads_in_log(&log);
    for t in ["camera", "receiver", "writer", "main"] {
        assert!(threads.iter().any(|n| n == t), "thread {t} missing from the log: {threads:?}");
    }
    run(beamline().arg("timeline").arg(&log).arg("-o").arg(&page));
    let shot = artifact("timeline_pipeline.png");
    let report = load_in_chromium(
        &page,
        &shot,
        json!({
            "ready": "document.body.dataset.ready",
            "verdict": "document.getElementById('verdict').textContent",
            "legend": "document.getElementById('legend').textContent",
            "lanes": "[...document.querySelectorAll('#lanes .lane-name')].map(e => e.textContent)",
            "first_stall": "document.querySelector('#stall-list li').textContent",
            "summary_rows": "document.querySelectorAll('#summary tr.name').length",
            "zoom_key": "new Promise(r => { const before = document.body.dataset.view; window.dispatchEvent(new KeyboardEvent('keydown', {key: 'w'})); requestAnimationFrame(() => requestAnimationFrame(() => r([before, document.body.dataset.view]))); })",
            "hover": "(() => { const c = document.getElementById('cv').getBoundingClientRect(); document.getElementById('cv').dispatchEvent(new MouseEvent('mousemove', {clientX: c.left + c.width * 0.6, clientY: c.top + 24 + 22 + 10, bubbles: true})); return document.getElementById('tip').textContent; })()",
            "flows": "document.body.dataset.flowsDrawn",
            "flow_count": "Number(document.body.dataset.flowsTotal)",
            "search": "(() => { const s = document.getElementById('search'); s.value = 'write_chunk'; s.dispatchEvent(new Event('input')); return [document.getElementById('found').textContent, document.body.dataset.lanesShown]; })()",
            "search_cleared": "(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); return document.body.dataset.lanesShown; })()",
            "axis": "document.body.dataset.axis",
            "canvas_drawn": "(() => { const c = document.getElementById('cv'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i+1] !== 255 || d[i+2] !== 255) n++; return n; })()",
        }),
        dir.path(),
    );
    assert_clean(&report);
    let mut lanes: Vec<String> = report["eval"]["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_owned())
        .collect();
    lanes.sort();
    assert_eq!(lanes, threads, "one lane per thread of the run");
    let first = report["eval"]["first_stall"].as_str().expect("a stall list");
    assert!(first.starts_with("writer waited") && first.contains("for disk"), "injected stall not first: {first}");
    let view = |v: &Value| -> f64 {
        let s = v.as_str().unwrap_or("0,0");
        let (a, b) = s.split_once(',').unwrap_or(("0", "0"));
        b.parse::<f64>().unwrap_or(0.0) - a.parse::<f64>().unwrap_or(0.0)
    };
    let (before, after) = (view(&report["eval"]["zoom_key"][0]), view(&report["eval"]["zoom_key"][1]));
    assert!(before > 0.0 && after < before * 0.8, "W zooms in: {before} -> {after}");
    let hover = report["eval"]["hover"].as_str().unwrap_or("");
    assert!(hover.starts_with("sim.pipeline"), "hover over the main lane names its span: {hover:?}");
    // The search filters: only the writer's lane holds `sim.write_chunk` spans; clearing it shows all.
    let found = report["eval"]["search"][0].as_str().unwrap_or("");
    assert!(found.starts_with("200 matching spans"), "{found}");
    assert_eq!(report["eval"]["search"][1], "1", "one lane left: {found}");
    assert_eq!(report["eval"]["search_cleared"].as_str(), Some(threads.len().to_string().as_str()));
    // Flow arrows from the producer that released each queue wait to the waiter, drawn on the canvas.
    assert!(report["eval"]["flow_count"].as_u64().unwrap_or(0) >= 100, "{report}");
    // The painter ran and counted what it drew; in the full view only waits at least 8 px wide get an arrow,
    // which in this short run is 0 to 2 of them (zoom in for the rest), so the number itself is not asserted.
    let drawn: Option<u64> = report["eval"]["flows"].as_str().and_then(|v| v.parse().ok());
    assert!(drawn.is_some(), "the arrow painter ran: {report}");
    assert!(report["eval"]["summary_rows"].as_u64().unwrap_or(0) >= 6, "{report}");
    // The time axis reads in one unit with the precision of its step: "0 s", "0.2 s", … (or ms under 1 s),
    // never "0 ns" next to "5.000 s".
    let axis: Vec<String> = report["eval"]["axis"].as_str().unwrap_or("").split('|').map(str::to_owned).collect();
    assert!(axis.len() >= 3, "axis labels: {axis:?}");
    let unit = axis[0].rsplit(' ').next().unwrap_or("").to_owned();
    assert!(["s", "ms"].contains(&unit.as_str()), "a run of ~1 s reads in s or ms: {axis:?}");
    assert!(axis.iter().all(|l| l.ends_with(&format!(" {unit}"))), "one unit on the axis: {axis:?}");
    assert!(!axis.iter().any(|l| l.contains("ns") || l.contains(".000")), "{axis:?}");
    let values: Vec<f64> = axis.iter().filter_map(|l| l.split(' ').next()?.parse().ok()).collect();
    assert_eq!(values.len(), axis.len(), "{axis:?}");
    assert!(values.windows(2).all(|w| w[1] > w[0]), "{axis:?}");
    assert!(report["eval"]["canvas_drawn"].as_u64().unwrap_or(0) > 10_000, "canvas looks empty: {report}");
    assert_png(&shot);
    // The verdict at the top of the page is the diagnosis `--summary` prints, and the legend is there.
    let summary = run(beamline().arg("timeline").arg(&log).args(["--summary", "--json"]));
    let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
    let verdict = report["eval"]["verdict"].as_str().unwrap_or("");
    assert!(!verdict.is_empty(), "{report}");
    assert_eq!(verdict, summary["verdict"].as_str().unwrap_or("-"));
    let legend = report["eval"]["legend"].as_str().unwrap_or("");
    assert!(legend.contains("wait.* span") && legend.contains("bottleneck lane"), "legend: {legend}");
    assert!(legend.contains("released"), "the arrows are in the legend: {legend}");
    // The injected 400 ms stall ranks first and the verdict names it: they agree.
    assert!(verdict.starts_with("writer-bound") && verdict.contains("disk"), "{verdict}");
    assert_eq!(summary["bottleneck"], "writer");
}

const SCRIPT: &str = "</script><script>window.pwned=1;document.title='PWNED'</script>";
const IMG: &str = "<img src=x onerror=\"window.pwned=2;document.title='PWNED'\">";

#[test]
fn hostile_strings_in_a_log_neither_run_nor_break_the_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("evil.jsonl");
    let both = format!("{SCRIPT}{IMG}");
    let lines = [
        json!({"t": "header", "command": SCRIPT, "argv": [IMG, SCRIPT], "pid": 1, "start_unix_ns": 1_795_318_856_000_000_000u64, "start_mono_ns": 1_000u64}),
        json!({"t": "thread", "tid": 11, "name": IMG}),
        json!({"t": "thread", "tid": 12, "name": SCRIPT}),
        json!({"t": "span", "n": both, "id": 1, "p": 0, "tid": 11, "s": 1_000, "e": 900_000, "f": {SCRIPT: IMG, IMG: 3}}),
        json!({"t": "span", "n": "wait.</script>", "id": 2, "p": 0, "tid": 12, "s": 2_000, "e": 500_000}),
        json!({"t": "event", "n": IMG, "tid": 11, "ts": 5_000, "span": 1, "level": "INFO", "f": {"x": SCRIPT}}),
        json!({"t": "counter", "n": SCRIPT, "tid": 11, "ts": 6_000, "v": 4}),
        json!({"t": "footer", "status": "error", "exit_code": 1, "error": both, "dropped": 0, "end_mono_ns": 1_000_000u64}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, text).expect("write log");
    let page = dir.path().join("evil.html");
    run(beamline().arg("timeline").arg(&log).arg("-o").arg(&page).args(["--title", &both]));
    let shot = artifact("timeline_escaping.png");
    let report = load_in_chromium(
        &page,
        &shot,
        json!({
            "ready": "document.body.dataset.ready",
            "pwned": "window.pwned === undefined ? 'no' : 'yes'",
            "title": "document.title",
            "images": "document.images.length",
            "scripts": "document.scripts.length",
            "first_summary": "document.querySelector('#summary tr.name td').textContent",
            "lanes": "[...document.querySelectorAll('#lanes .lane-name')].map(e => e.textContent)",
        }),
        dir.path(),
    );
    assert_clean(&report);
    let e = &report["eval"];
    assert_eq!(e["pwned"], "no");
    assert_eq!(e["title"], both.as_str(), "the title is shown as text");
    assert_eq!(e["images"], 0);
    assert_eq!(e["scripts"], 2, "only the page's own data and code elements");
    assert_eq!(e["first_summary"], both.as_str(), "span names appear as text, intact");
    let mut lanes: Vec<&str> = e["lanes"].as_array().expect("lanes").iter().filter_map(Value::as_str).collect();
    lanes.sort();
    assert_eq!(lanes, [SCRIPT, IMG]);
    assert_png(&shot);
}

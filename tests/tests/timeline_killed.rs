//! Logs survive kill -9, and hostile logs cannot drive the terminal: a `beamline receive` killed with
//! SIGKILL mid-series leaves a log `beamline timeline` reads; a truncated last line is ignored with a note;
//! a 0-byte or foreign file among many is skipped with one warning; escape sequences in a log (span names)
//! or in the output path are never printed raw.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tests::{beamline, free_endpoint};

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn no_controls(s: &str, what: &str) {
    assert!(!s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{what} has control characters: {s:?}");
}

/// Starts `receive` with frame tracing (many records) and a 40 fps sender, SIGKILLs the receiver mid-series.
fn killed_receive_log(dir: &Path) -> std::path::PathBuf {
    let ep = free_endpoint();
    let (log, file) = (dir.join("receive.jsonl"), dir.join("killed.h5"));
    let mut rx = beamline()
        .env("BEAMLINE_TRACE", "frames")
        .arg("--log")
        .arg(&log)
        .args(["receive", "--bind", &ep, "--flush-ms", "100", "-q", "--output"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("receive");
    let mut tx = beamline()
        .args(["simulate", "--connect", &ep, "--size", "32", "--angles", "2000", "--fps", "400", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("simulate");
    let t0 = Instant::now();
    while !file.exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "receiver never created the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(2000));
    rx.kill().expect("SIGKILL");
    rx.wait().expect("wait");
    let _ = tx.kill();
    let _ = tx.wait();
    log
}

#[test]
fn a_killed_receiver_leaves_a_readable_log_and_damaged_or_foreign_files_are_skipped_with_a_note() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = killed_receive_log(dir.path());
    let body = std::fs::read_to_string(&log).expect("the killed process left a log");
    let first: serde_json::Value = serde_json::from_str(body.lines().next().expect("a header line")).expect("json");
    assert_eq!(first["t"], "header", "the header is written at start");
    assert!(!body.contains("\"t\":\"footer\""), "a killed process writes no footer");
    // Every batch handed to the writer reached the file in complete lines (the writer flushes when idle).
    let lines: Vec<&str> = body.lines().collect();
    for l in &lines[..lines.len() - 1] {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("a complete line: {e}: {l}"));
    }
    assert!(body.contains("\"t\":\"span\""), "spans recorded before the kill are in the log");

    let out = beamline().arg("timeline").arg(&log).args(["--summary", "--json"]).output().expect("timeline");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "timeline reads the killed log: {stderr}");
    serde_json::from_str::<serde_json::Value>(&stdout).expect("summary JSON");

    // A truncated last line (killed mid-write) is ignored, with a note naming the file.
    let cut = dir.path().join("cut.jsonl");
    let complete = if body.ends_with('\n') { body.clone() } else { format!("{body}\n") };
    std::fs::write(&cut, format!("{complete}{{\"t\":\"span\",\"n\":\"recv\",\"id\":")).expect("write");
    let out = beamline().arg("timeline").arg(&cut).args(["--summary"]).output().expect("timeline");
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("note:") && stderr.contains("cut.jsonl") && stderr.contains("truncated"), "{stderr}");

    // Among many: a 0-byte log and a foreign file are skipped with ONE warning, never fatal.
    std::fs::write(dir.path().join("empty.jsonl"), "").expect("write");
    std::fs::write(dir.path().join("notes.jsonl"), "{\"hello\":1}\n").expect("write");
    let out = beamline()
        .arg("timeline")
        .args([&log, &dir.path().join("empty.jsonl"), &dir.path().join("notes.jsonl")])
        .arg("-o")
        .arg(dir.path().join("t.html"))
        .output()
        .expect("timeline");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("warning:").count(), 1, "one warning: {stderr}");
    assert!(stderr.contains("and 1 more"), "{stderr}");
    assert!(stdout.contains("wrote "), "{stdout}");
    // Alone, a 0-byte file is an error with a reason, not a crash.
    let out = beamline().arg("timeline").arg(dir.path().join("empty.jsonl")).output().expect("timeline");
    assert!(!out.status.success());
}

#[test]
fn escape_sequences_in_a_log_and_in_the_output_path_are_not_printed_raw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("hostile.jsonl");
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let esc = |s: &str| serde_json::to_string(s).expect("json");
    let body = format!(
        "{{\"t\":\"header\",\"format\":\"beamline-trace\",\"format_version\":1,\"version\":\"0\",\"command\":{c},\
         \"argv\":[{c}],\"pid\":7,\"host\":\"h\",\"start_unix_ns\":1000,\"start_mono_ns\":1000}}\n\
         {{\"t\":\"thread\",\"tid\":8,\"name\":{c}}}\n\
         {{\"t\":\"span\",\"n\":{c},\"id\":1,\"p\":0,\"tid\":8,\"s\":1000,\"e\":900000000}}\n\
         {{\"t\":\"span\",\"n\":\"wait.queue\",\"id\":2,\"p\":0,\"tid\":8,\"s\":900000000,\"e\":990000000,\
         \"f\":{{\"queue\":{c},\"wants\":\"data\",\"on\":{c}}}}}\n",
        c = esc(evil)
    );
    std::fs::write(&log, body).expect("write");
    let out_path = dir.path().join(format!("page{evil}.html"));
    for args in [vec!["--summary"], vec!["--summary", "--json"], vec![]] {
        let mut cmd = beamline();
        cmd.arg("timeline").arg(&log).args(&args);
        if args.is_empty() {
            cmd.arg("-o").arg(&out_path);
        }
        let out = cmd.output().expect("timeline");
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        no_controls(&stdout, "stdout");
        no_controls(&stderr, "stderr");
        if args.is_empty() {
            assert!(stdout.contains("wrote ") && stdout.contains("page?]0;pwned??[2J.html"), "{stdout}");
            assert!(out_path.exists(), "the page is written under its real name");
        }
    }
}

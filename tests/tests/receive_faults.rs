//! `beamline receive` under faults (issue 11 §4, §6 c, d): the queue-full policy with a slow disk
//! (`--on-full block` reports the time blocked, `--on-full drop` counts and lists the dropped frames as
//! missing), a series whose sender was killed is abandoned when a new series starts (`--stale-after`), and
//! ZeroMQ's buffering is bounded in bytes (peak RSS with large raw frames).

mod acquisition_common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use acquisition::protocol::SeriesStatus;
use acquisition::protocol::{Compression, Degrees, Dtype, FrameHeader, FrameIndex, ImageKey, SeriesStart, Shape};
use acquisition::sender::SeriesSender;
use acquisition_common::wait;
use tests::{beamline, free_endpoint};

fn receiver(ep: &str, out: &[&str], delay_ms: &str, extra: &[&str]) -> Child {
    beamline()
        .env("BEAMLINE_TEST_WRITE_DELAY_MS", delay_ms)
        .args(["receive", "--bind", ep, "-q", "--flush-ms", "100"])
        .args(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beamline receive")
}

fn simulate(ep: &str, series: &str, angles: &str, fps: &str) -> Child {
    beamline()
        .args(["simulate", "--connect", ep, "--size", "32", "--angles", angles, "--flats", "0", "--darks", "0"])
        .args(["--fps", fps, "--series", series, "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start beamline simulate")
}

fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "receiver never created {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn acq_u64s(path: &Path, name: &str) -> Vec<u64> {
    let f = hdf5::File::open(path).expect("the file opens");
    f.dataset(&format!("entry/acquisition/{name}")).unwrap().read_raw().unwrap()
}

fn acq_f64(path: &Path, name: &str) -> f64 {
    let f = hdf5::File::open(path).expect("the file opens");
    f.dataset(&format!("entry/acquisition/{name}")).unwrap().read_scalar().unwrap()
}

fn acq_str(path: &Path, name: &str) -> String {
    let f = hdf5::File::open(path).expect("the file opens");
    let s: hdf5::types::VarLenUnicode = f.dataset(&format!("entry/acquisition/{name}")).unwrap().read_scalar().unwrap();
    s.as_str().to_string()
}

/// A slow disk (40 ms a frame) and a queue of 2 frames, 30 frames sent as fast as possible.
fn slow_receive(policy: &str) -> (std::process::Output, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join(format!("{policy}.h5"));
    let rx = receiver(&ep, &["--output", file.to_str().unwrap()], "40", &["--queue", "2", "--on-full", policy]);
    let tx = simulate(&ep, policy, "30", "0");
    let out = wait(rx, Duration::from_secs(120), "receiver");
    let _ = wait(tx, Duration::from_secs(60), "sender");
    (out, file, dir)
}

#[test]
fn on_full_block_loses_nothing_and_reports_the_time_blocked() {
    let (out, file, _dir) = slow_receive("block");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("received 30") && stdout.contains("missing 0"), "{stdout}");
    assert!(stdout.contains("queue full for "), "the closing line reports the time blocked:\n{stdout}");
    assert!(!stdout.contains("dropped"), "{stdout}");
    assert!(acq_f64(&file, "queue_blocked_seconds") > 0.0);
    assert_eq!(acq_u64s(&file, "dropped_frames"), Vec::<u64>::new());
    assert_eq!(acq_u64s(&file, "missing_frames"), Vec::<u64>::new());
}

#[test]
fn on_full_drop_counts_the_dropped_frames_and_lists_them_as_missing() {
    let (out, file, _dir) = slow_receive("drop");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "frames were lost: exit 2\n{stdout}");
    let dropped = acq_u64s(&file, "dropped_frames");
    assert!(!dropped.is_empty(), "a 2-frame queue in front of a 40 ms/frame disk dropped nothing:\n{stdout}");
    assert!(stdout.contains(&format!("dropped {} (queue full)", dropped.len())), "{stdout}");
    let mut sorted = dropped.clone();
    sorted.sort_unstable();
    assert_eq!(acq_u64s(&file, "missing_frames"), sorted, "every dropped frame is missing, nothing else");
    assert_eq!(acq_u64s(&file, "frames_dropped"), vec![dropped.len() as u64]);
    assert_eq!(acq_u64s(&file, "frames_received"), vec![30 - dropped.len() as u64]);
    assert_eq!(acq_u64s(&file, "frames_sent"), vec![30]);
}

#[test]
fn a_killed_senders_series_is_abandoned_when_a_new_series_starts() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let rx = receiver(&ep, &["--output-dir", dir.path().to_str().unwrap()], "0", &["--stale-after", "1"]);
    let mut dead = simulate(&ep, "first", "100000", "100");
    wait_for(&dir.path().join("first.h5"));
    std::thread::sleep(Duration::from_millis(500));
    dead.kill().unwrap(); // SIGKILL mid-series: no series end ever comes
    let _ = dead.wait();
    std::thread::sleep(Duration::from_millis(1500));
    let next = simulate(&ep, "second", "20", "0");
    let _ = wait(next, Duration::from_secs(60), "second sender");
    let second = dir.path().join("second.h5");
    let t0 = Instant::now();
    // The receiver holds the file (and HDF5's lock on it) until the series end closes it.
    let closed = |p: &Path| -> Option<String> {
        let f = hdf5::File::open(p).ok()?;
        let s: hdf5::types::VarLenUnicode = f.dataset("entry/acquisition/status").ok()?.read_scalar().ok()?;
        Some(s.as_str().to_string())
    };
    while closed(&second).as_deref() != Some("complete") {
        assert!(t0.elapsed() < Duration::from_secs(60), "the second series was not written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = std::process::Command::new("kill").args(["-INT", &rx.id().to_string()]).status().unwrap();
    assert!(st.success());
    let out = wait(rx, Duration::from_secs(60), "receiver after Ctrl-C");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = dir.path().join("first.h5");
    let status = acq_str(&first, "status");
    assert!(status.starts_with("abandoned (no frame for "), "{status}");
    assert!(status.contains("\"second\""), "{status}");
    let received = acq_u64s(&first, "frames_received")[0];
    assert!(received > 0);
    assert_eq!(acq_u64s(&first, "frames_missing"), vec![100_000 - received]);
    assert_eq!(acq_u64s(&second, "frames_received"), vec![20]);
    assert_eq!(acq_u64s(&second, "frames_rejected"), vec![0], "nothing of the new series was rejected");
    assert!(stdout.contains("series first") && stdout.contains("status abandoned"), "{stdout}");
    assert!(stdout.contains("series second") && stdout.contains("status complete"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("series abandoned"), "logged:\n{stderr}");
}

/// Peak resident memory (VmHWM) of a running process, in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

#[test]
fn zeromq_buffering_is_bounded_in_bytes_with_large_raw_frames() {
    // 2048 x 2048 float32 = 16 MiB raw frames, a 32 MiB queue, a slow disk (200 ms a frame): the sender
    // outruns the writer, so whatever ZeroMQ buffers shows in the receiver's peak RSS.
    let (rows, cols, frames, queue_mib) = (2048u32, 2048u32, 24u64, 32u64);
    let frame = (rows * cols * 4) as u64;
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("big.h5");
    let q = queue_mib.to_string();
    let rx = receiver(&ep, &["--output", file.to_str().unwrap()], "200", &["--queue-mib", &q]);
    let pid = rx.id();
    let sender = std::thread::spawn({
        let ep = ep.clone();
        move || {
            let mut tx = SeriesSender::connect(&ep).unwrap();
            let start = SeriesStart::new("big", Shape([rows, cols]), Dtype::Float32, Compression::None, frames);
            tx.start_series(&start).unwrap();
            let mut px = vec![0u8; frame as usize];
            for i in 0..frames {
                px.iter_mut().step_by(4096).for_each(|b| *b = i as u8);
                let h = FrameHeader {
                    index: FrameIndex(i),
                    image_key: ImageKey::Projection,
                    angle: Degrees(i as f64),
                    timestamp: 0.0,
                };
                tx.send_frame(&h, &px).unwrap();
            }
            tx.end_series(SeriesStatus::Complete, None).unwrap();
        }
    });
    let mut peak = 0u64;
    let mut rx = rx;
    let t0 = Instant::now();
    while rx.try_wait().unwrap().is_none() {
        if let Some(v) = vm_hwm(pid) {
            peak = peak.max(v);
        }
        assert!(t0.elapsed() < Duration::from_secs(180), "receiver did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = wait(rx, Duration::from_secs(10), "receiver");
    sender.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(acq_u64s(&file, "frames_received"), vec![frames]);
    // The bound PROTOCOL.md states: about 2 x queue + 3 frames, plus a few tens of MiB for the program.
    let bound = 2 * (queue_mib << 20) + 4 * frame + (48 << 20);
    eprintln!("peak RSS {} MiB, bound {} MiB", peak >> 20, bound >> 20);
    assert!(peak > 0, "VmHWM was read");
    assert!(peak < bound, "peak RSS {} MiB over the bound {} MiB", peak >> 20, bound >> 20);
}

/// One ZMTP/1.0 frame: length (flags + body) in one byte, or 0xff and 8 bytes big-endian; flags; body.
fn zmtp1_frame(body: &[u8], more: bool, out: &mut Vec<u8>) {
    let len = body.len() as u64 + 1;
    if len < 255 {
        out.push(len as u8);
    } else {
        out.push(0xff);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.push(u8::from(more));
    out.extend_from_slice(body);
}

/// How many bytes libzmq's ZMTP/1.0 decoder still owes the frame it is in after reading `bytes` from the
/// start of a connection (0 at a frame boundary).
fn zmtp1_owed(bytes: &[u8]) -> usize {
    let mut i = 0usize;
    while i < bytes.len() {
        let (len, hdr) = if bytes[i] == 0xff {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i + 1..i + 9]);
            (u64::from_be_bytes(b) as usize, 9)
        } else {
            (bytes[i] as usize, 1)
        };
        i += hdr + len;
    }
    i - bytes.len()
}

/// A request body that, sent after `head` on one TCP connection, frames a whole series ("evil", one
/// frame) in ZMTP/1.0 whatever the header bytes were taken for, padded to exactly `len` bytes.
fn injection_body(head: &[u8], len: usize) -> Vec<u8> {
    let mut body = vec![b'a'; zmtp1_owed(head)];
    zmtp1_frame(b"x", false, &mut body); // ends whatever message the header bytes left open
    let start = SeriesStart::new("evil", Shape([2, 2]), Dtype::Uint8, Compression::None, 1);
    zmtp1_frame(b"series_start", true, &mut body);
    zmtp1_frame(&acquisition::protocol::encode_series_start(&start), false, &mut body);
    let h = FrameHeader { index: FrameIndex(0), image_key: ImageKey::Projection, angle: Degrees(0.0), timestamp: 0.0 };
    let mut fh = Vec::new();
    acquisition::protocol::encode_frame_header("evil", &h, &mut fh);
    zmtp1_frame(b"frame", true, &mut body);
    zmtp1_frame(&fh, true, &mut body);
    zmtp1_frame(&[9u8; 4], false, &mut body);
    zmtp1_frame(b"series_end", true, &mut body);
    zmtp1_frame(br#"{"protocol":1,"series":"evil","frames_sent":1}"#, false, &mut body);
    // A last frame (long length form: 0xff, 8 bytes, flags) pads the body to `len`.
    let rest = len.checked_sub(body.len() + 10).expect("room for the tail frame");
    body.push(0xff);
    body.extend_from_slice(&(rest as u64 + 1).to_be_bytes());
    body.push(0);
    body.extend(std::iter::repeat_n(b'z', rest));
    assert_eq!(body.len(), len);
    body
}

/// Runs headless Chromium on a blank page whose one expression POSTs `body` to `port` with
/// `fetch(..., {mode: "no-cors"})`; returns what the promise settled with.
fn chromium_post(scratch: &Path, port: u16, body: &[u8]) -> String {
    let page = scratch.join("blank.html");
    std::fs::write(&page, "<!doctype html><title>post</title>").unwrap();
    let bytes: Vec<String> = body.iter().map(|b| b.to_string()).collect();
    let js = format!(
        "(() => {{ const c = new AbortController(); setTimeout(() => c.abort(), 8000); \
         return fetch('http://127.0.0.1:{port}/x', {{method: 'POST', mode: 'no-cors', signal: c.signal, \
         body: new Uint8Array([{}])}}).then(r => 'response ' + r.type, e => 'error ' + e); }})()",
        bytes.join(",")
    );
    let exprs = scratch.join("exprs.json");
    std::fs::write(&exprs, serde_json::json!({ "post": js }).to_string()).unwrap();
    let out = std::process::Command::new(tests::python())
        .arg(tests::workspace_root().join("tests/py/timeline_cdp.py"))
        .arg(tests::chromium())
        .arg(&page)
        .arg(scratch.join("shot.png"))
        .arg(&exprs)
        .args(tests::CHROMIUM_FLAGS)
        .output()
        .expect("start the CDP peer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "CDP peer failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("one JSON object");
    v["eval"]["post"].as_str().unwrap_or_default().to_string()
}

/// Accepts one HTTP request on `listener` and returns its header block (through the blank line).
fn capture_request(listener: std::net::TcpListener, body_len: usize) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("Chromium connects");
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = c.read(&mut buf).expect("read the request");
            assert!(n > 0, "connection closed before the header ended");
            got.extend_from_slice(&buf[..n]);
        };
        while got.len() < head_end + body_len {
            let n = c.read(&mut buf).expect("read the body");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        got.truncate(head_end);
        got
    })
}

#[test]
fn a_browser_pages_no_cors_post_injects_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let len = 2048;
    // 1. What Chromium sends: capture the request header on a plain TCP listener.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let probe_port = probe.local_addr().unwrap().port();
    let captured = capture_request(probe, len);
    chromium_post(scratch.path(), probe_port, &vec![b'p'; len]);
    let head = captured.join().unwrap();
    let head = String::from_utf8(head).expect("an ASCII header");
    assert!(head.starts_with("POST /x HTTP/1.1\r\n"), "{head}");
    let for_port = |port: u16| {
        assert_eq!(port.to_string().len(), probe_port.to_string().len(), "same header length");
        let h = head.replace(&format!("127.0.0.1:{probe_port}"), &format!("127.0.0.1:{port}"));
        injection_body(h.as_bytes(), len)
    };
    // 2. The body is a real attack: a PULL socket that accepts ZMTP/1.0 peers (no ZAP domain) gets the series.
    let ctx = zmq::Context::new();
    let control = ctx.socket(zmq::PULL).unwrap();
    control.bind("tcp://127.0.0.1:*").unwrap();
    let ep = control.get_last_endpoint().unwrap().unwrap();
    let control_port: u16 = ep.rsplit(':').next().unwrap().parse().unwrap();
    chromium_post(scratch.path(), control_port, &for_port(control_port));
    control.set_rcvtimeo(3000).unwrap();
    let mut kinds = Vec::new();
    while let Ok(parts) = control.recv_multipart(0) {
        kinds.push(String::from_utf8_lossy(&parts[0]).into_owned());
    }
    for k in ["series_start", "frame", "series_end"] {
        assert!(kinds.iter().any(|x| x == k), "the crafted POST did not frame a {k} (got {kinds:?})");
    }
    // 3. beamline's receiver refuses the old framing: nothing arrives, nothing is even rejected.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = acquisition::receiver::ReceiverConfig::new(acquisition::receiver::Output::Dir(dir.path().into()));
    cfg.endpoint = "tcp://127.0.0.1:*".into();
    let rx = acquisition::receiver::Receiver::bind(cfg).unwrap();
    let rx_ep = rx.endpoint();
    let rx_port: u16 = rx_ep.rsplit(':').next().unwrap().parse().unwrap();
    let thread = rx.spawn().unwrap();
    let settled = chromium_post(scratch.path(), rx_port, &for_port(rx_port));
    let mut tx = SeriesSender::connect(&rx_ep).unwrap();
    tx.start_series(&SeriesStart::new("legit", Shape([2, 2]), Dtype::Uint8, Compression::None, 1)).unwrap();
    let h = FrameHeader { index: FrameIndex(0), image_key: ImageKey::Projection, angle: Degrees(0.0), timestamp: 0.0 };
    tx.send_frame(&h, &[1u8; 4]).unwrap();
    tx.end_series(SeriesStatus::Complete, None).unwrap();
    let live = thread.live();
    let t0 = Instant::now();
    while live.series_done.load(std::sync::atomic::Ordering::Relaxed) < 1 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let summary = thread.stop_and_join().unwrap();
    let names: Vec<&str> = summary.series.iter().map(|s| s.series.as_str()).collect();
    assert_eq!(names, ["legit"], "the page injected a series (fetch settled: {settled})");
    assert_eq!(summary.rejected_total().total(), 0, "the page's bytes reached the receiver");
    assert!(!dir.path().join("evil.h5").exists());
}

//! CURVE: who may send, and who may listen. `beamline keys new` makes the key pairs; `receive --curve-secret
//! --curve-allow` admits only listed senders (a ZAP handler logs and counts the others); `simulate
//! --curve-secret --curve-server` and a pyzmq sender (keys made by pyzmq's `zmq.auth`) deliver; a wrong key
//! and a plain sender deliver nothing; and a plain TCP relay between the two ends sees a known pixel pattern
//! without CURVE and never with it.

mod acquisition_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acquisition::curve::{self, CurveClient, CurveServer, KeyPair};
use acquisition::protocol::Shape;
use acquisition::protocol::{
    Compression, Degrees, Dtype, FrameHeader, FrameIndex, ImageKey, SeriesStart, SeriesStatus,
};
use acquisition::receiver::{Output, Receiver, ReceiverConfig};
use acquisition::sender::SeriesSender;
use acquisition_common::{check, spawn_receiver, wait};
use tests::{beamline, free_endpoint, python, run_python};

fn keys(dir: &Path, name: &str) {
    let out = beamline().args(["keys", "new", name, "--dir"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "keys new {name}: {}", String::from_utf8_lossy(&out.stderr));
}

fn p(dir: &Path, file: &str) -> String {
    dir.join(file).to_str().unwrap().to_string()
}

fn simulate(ep: &str, extra: &[String]) -> std::process::Child {
    beamline()
        .args(["simulate", "--connect", ep, "--size", "32", "--angles", "6", "--flats", "1", "--darks", "1", "-q"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn simulate_to_receive_over_curve_delivers_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keys(d, "rx");
    keys(d, "tx");
    let ep = free_endpoint();
    let file = d.join("curve.h5");
    let rx = spawn_receiver(&ep, &file, &["--curve-secret", &p(d, "rx.key_secret"), "--curve-allow", &p(d, "tx.key")]);
    let tx = simulate(&ep, &["--curve-secret".into(), p(d, "tx.key_secret"), "--curve-server".into(), p(d, "rx.key")]);
    let sent = wait(tx, Duration::from_secs(60), "beamline simulate --curve-secret");
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let out = wait(rx, Duration::from_secs(60), "beamline receive --curve-secret");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("expected 8, received 8, rejected 0"), "{stdout}");
    assert!(!stdout.contains("CURVE: refused"), "{stdout}");
}

#[test]
fn pyzmq_curve_sender_with_pyzmq_certificates_lands_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keys(d, "rx");
    let made = Command::new(python())
        .args(["-c", "import sys, zmq.auth; zmq.auth.create_certificates(sys.argv[1], 'py')"])
        .arg(d)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let ep = free_endpoint();
    let file = d.join("py.h5");
    let rx = spawn_receiver(&ep, &file, &["--curve-secret", &p(d, "rx.key_secret"), "--curve-allow", &p(d, "py.key")]);
    run_python("acq_sender.py", &[&ep, d.to_str().unwrap(), "none", &p(d, "py.key_secret"), &p(d, "rx.key")]);
    let out = wait(rx, Duration::from_secs(120), "beamline receive --curve-secret");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("expected 30, received 29, rejected 1 (duplicate_frame 1), missing 1 (5); status aborted"),
        "{stdout}"
    );
    assert_eq!(check(&file, &d.join("expected.json"), false)["checked_frames"], 29);
}

#[test]
fn a_wrong_key_and_a_plain_sender_deliver_nothing_and_the_refused_key_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["rx", "tx", "intruder"] {
        keys(d, k);
    }
    let out_dir = d.join("out");
    let ep = free_endpoint();
    let rx = beamline()
        .args(["receive", "--bind", &ep, "--output-dir"])
        .arg(&out_dir)
        .args(["--curve-secret", &p(d, "rx.key_secret"), "--curve-allow", &p(d, "tx.key")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Neither can hand its frames over: libzmq queues them and the sender waits for a receiver that takes
    // them (saying so every 5 s). Give both time to try, then stop them.
    let intruder =
        simulate(&ep, &["--curve-secret".into(), p(d, "intruder.key_secret"), "--curve-server".into(), p(d, "rx.key")]);
    let plain = simulate(&ep, &[]);
    std::thread::sleep(Duration::from_secs(8));
    for mut child in [intruder, plain] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let kill = Command::new("kill").args(["-INT", &rx.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = wait(rx, Duration::from_secs(60), "beamline receive --curve-secret --output-dir");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("no series received"), "{stdout}");
    assert!(stdout.contains("CURVE: refused"), "{stdout}");
    let intruder_key = curve::z85(&curve::read_public(&d.join("intruder.key")).unwrap());
    assert!(stderr.contains("refused a sender") && stderr.contains(&intruder_key), "{stderr}");
    let files: Vec<_> = std::fs::read_dir(&out_dir).unwrap().filter_map(Result::ok).map(|e| e.path()).collect();
    assert!(files.iter().all(|f| f.extension().is_none_or(|x| x != "h5")), "files written: {files:?}");
}

/// A plain TCP relay: forwards one side's bytes to `to` and back, and records what the sender sent.
fn relay(to: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(from) = conn else { return };
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", to)) else { return };
            let (mut a, mut b) = (from.try_clone().unwrap(), upstream.try_clone().unwrap());
            let rec = rec.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = a.read(&mut buf) {
                    rec.lock().unwrap().extend_from_slice(&buf[..n]);
                    if b.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
            let (mut a, mut b) = (upstream, from);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, seen)
}

const PATTERN: &[u8; 16] = b"KNOWN-PIXELS-42!";

/// Sends 4 raw 64x64 uint16 frames holding PATTERN over the relay; returns (frames received, bytes seen).
fn through_relay(secure: bool) -> (u64, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (rx_keys, tx_keys) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let mut cfg = ReceiverConfig::new(Output::File(dir.path().join("relay.h5")));
    cfg.endpoint = "tcp://127.0.0.1:*".into();
    if secure {
        cfg.curve = Some(CurveServer { keys: rx_keys.clone(), allowed: vec![tx_keys.public] });
    }
    let receiver = Receiver::bind(cfg).unwrap();
    let port: u16 = receiver.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let thread = receiver.spawn().unwrap();
    let (relay_port, seen) = relay(port);
    let client = CurveClient { keys: tx_keys, server: rx_keys.public };
    let mut tx =
        SeriesSender::open_secure(&format!("tcp://127.0.0.1:{relay_port}"), false, secure.then_some(&client)).unwrap();
    tx.set_checksum(false);
    let pixels: Vec<u8> = PATTERN.iter().copied().cycle().take(64 * 64 * 2).collect();
    tx.start_series(&SeriesStart::new("relay", Shape([64, 64]), Dtype::Uint16, Compression::None, 4)).unwrap();
    for i in 0..4 {
        let h = FrameHeader {
            index: FrameIndex(i),
            image_key: ImageKey::Projection,
            angle: Degrees(i as f64),
            timestamp: 1.0,
        };
        tx.send_frame(&h, &pixels).unwrap();
    }
    tx.end_series(SeriesStatus::Complete, None).unwrap();
    let summary = thread.join().unwrap();
    drop(tx);
    let seen = seen.lock().unwrap().clone();
    (summary.series.first().map_or(0, |s| s.received), seen)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_tcp_relay_sees_the_pixels_without_curve_and_never_with_it() {
    assert!(curve::available(), "{}", curve::CurveError::Unavailable);
    let (got, plain) = through_relay(false);
    assert_eq!(got, 4);
    assert!(contains(&plain, PATTERN), "the relay should see the pixels in the clear ({} bytes)", plain.len());
    let (got, secured) = through_relay(true);
    assert_eq!(got, 4, "every frame crossed the relay under CURVE");
    assert!(secured.len() > 4 * 64 * 64 * 2, "the relay forwarded the frames ({} bytes)", secured.len());
    assert!(!contains(&secured, PATTERN), "a pixel pattern leaked through CURVE");
    assert!(!contains(&secured, b"relay"), "the series id leaked through CURVE");
}

/// A `beamline receive` admitting only `tx.key` into `out_dir` (`extra`: e.g. `--format stream2`).
fn guarded_receiver(d: &Path, ep: &str, out_dir: &Path, extra: &[&str]) -> std::process::Child {
    beamline()
        .args(["receive", "--bind", ep, "-q", "--output-dir"])
        .arg(out_dir)
        .args(["--curve-secret", &p(d, "rx.key_secret"), "--curve-allow", &p(d, "tx.key")])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A sender with the wrong key has had its chance (`intruder`, killed after a few seconds): the receiver
/// stopped with Ctrl-C must have written nothing and logged and counted the intruder's key as refused.
fn assert_refused(d: &Path, rx: std::process::Child, mut intruder: std::process::Child, out_dir: &Path) {
    std::thread::sleep(Duration::from_secs(6));
    let _ = intruder.kill();
    let _ = intruder.wait();
    assert!(Command::new("kill").args(["-INT", &rx.id().to_string()]).status().unwrap().success());
    let out = wait(rx, Duration::from_secs(60), "beamline receive --curve-secret (wrong key)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("no series received") && stdout.contains("CURVE: refused"), "{stdout}");
    let intruder_key = curve::z85(&curve::read_public(&d.join("intruder.key")).unwrap());
    assert!(stderr.contains("refused a sender") && stderr.contains(&intruder_key), "{stderr}");
    let files: Vec<_> = std::fs::read_dir(out_dir).unwrap().filter_map(Result::ok).map(|e| e.path()).collect();
    assert!(files.iter().all(|f| f.extension().is_none_or(|x| x != "h5")), "files written: {files:?}");
}

fn closing(out: &std::process::Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn curve_args(d: &Path, who: &str) -> [String; 4] {
    ["--curve-secret".into(), p(d, &format!("{who}.key_secret")), "--curve-server".into(), p(d, "rx.key")]
}

#[test]
fn spread_over_curve_delivers_to_every_receiver_and_a_wrong_key_to_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["rx", "tx", "intruder"] {
        keys(d, k);
    }
    let spread = |eps: &[String], who: &str| {
        let mut c = beamline();
        c.args(["spread", "--size", "24", "--angles", "6", "--darks", "1", "--flats", "1", "--series", "cs"]);
        for e in eps {
            c.args(["--to", e]);
        }
        c.args(curve_args(d, who)).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    // Both receivers hold the same server key pair; the sender trusts that public key.
    let eps: Vec<String> = (0..2).map(|_| free_endpoint()).collect();
    let files: Vec<_> = (0..2).map(|k| d.join(format!("w{k}.h5"))).collect();
    let rxs: Vec<_> = eps
        .iter()
        .zip(&files)
        .map(|(e, f)| {
            spawn_receiver(e, f, &["--curve-secret", &p(d, "rx.key_secret"), "--curve-allow", &p(d, "tx.key")])
        })
        .collect();
    let sent = wait(spread(&eps, "tx"), Duration::from_secs(60), "beamline spread --curve-secret");
    assert!(sent.status.success(), "{}", closing(&sent));
    for rx in rxs {
        let out = wait(rx, Duration::from_secs(60), "beamline receive --curve-secret (spread)");
        assert_eq!(out.status.code(), Some(0), "{}", closing(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("missing 0; status complete"), "{}", closing(&out));
    }
    let master = d.join("master.h5");
    let st = beamline().arg("stitch").args(&files).arg("-o").arg(&master).output().unwrap();
    assert!(st.status.success() && String::from_utf8_lossy(&st.stdout).contains("8 frames"), "{}", closing(&st));

    let (ep, out_dir) = (free_endpoint(), d.join("refused"));
    let rx = guarded_receiver(d, &ep, &out_dir, &[]);
    assert_refused(d, rx, spread(std::slice::from_ref(&ep), "intruder"), &out_dir);
}

#[test]
fn scan_detector_over_curve_delivers_and_a_wrong_key_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["rx", "tx", "intruder"] {
        keys(d, k);
    }
    let printed = beamline().args(["scan", "--print-config"]).output().unwrap();
    assert!(printed.status.success(), "{}", closing(&printed));
    let default = String::from_utf8_lossy(&printed.stdout).to_string();
    assert!(default.contains("# endpoint = "), "the built-in configuration changed: {default}");
    let script = d.join("cv.rhai");
    std::fs::write(&script, "tomo_scan(#{projections: 6, darks: 1, flats: 1, sample_out: 8.0, name: \"cv\"});")
        .unwrap();
    let scan = |ep: &str, who: &str| {
        let cfg = d.join(format!("{who}.toml"));
        let detector = format!(
            "endpoint = {ep:?}\ncurve_secret = {:?}\ncurve_server = {:?}\n# endpoint = ",
            p(d, &format!("{who}.key_secret")),
            p(d, "rx.key")
        );
        std::fs::write(&cfg, default.replacen("# endpoint = ", &detector, 1)).unwrap();
        beamline()
            .args(["scan", script.to_str().unwrap(), "--time-scale", "0", "-q", "--config"])
            .arg(&cfg)
            .current_dir(d)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ep = free_endpoint();
    let file = d.join("scan.h5");
    let rx = spawn_receiver(&ep, &file, &["--curve-secret", &p(d, "rx.key_secret"), "--curve-allow", &p(d, "tx.key")]);
    let ran = wait(scan(&ep, "tx"), Duration::from_secs(120), "beamline scan ([detector] curve_secret)");
    assert!(ran.status.success(), "{}", closing(&ran));
    let out = wait(rx, Duration::from_secs(60), "beamline receive --curve-secret (scan)");
    assert_eq!(out.status.code(), Some(0), "{}", closing(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("expected 8, received 8, rejected 0"), "{}", closing(&out));

    let (ep, out_dir) = (free_endpoint(), d.join("refused"));
    let rx = guarded_receiver(d, &ep, &out_dir, &[]);
    assert_refused(d, rx, scan(&ep, "intruder"), &out_dir);
}

#[test]
fn stream2_over_curve_delivers_and_a_wrong_key_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["rx", "tx", "intruder"] {
        keys(d, k);
    }
    let simulate2 = |ep: &str, who: &str| {
        beamline()
            .args(["simulate", "--format", "stream2", "--connect", ep, "--size", "32", "--angles", "6"])
            .args(["--flats", "1", "--darks", "1", "-q"])
            .args(curve_args(d, who))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ep = free_endpoint();
    let file = d.join("s2.h5");
    let allow = ["--curve-secret", &p(d, "rx.key_secret"), "--curve-allow", &p(d, "tx.key")];
    let rx = spawn_receiver(&ep, &file, &[&["--format", "stream2"][..], &allow[..]].concat());
    let sent = wait(simulate2(&ep, "tx"), Duration::from_secs(60), "beamline simulate --format stream2 --curve-secret");
    assert!(sent.status.success(), "{}", closing(&sent));
    let out = wait(rx, Duration::from_secs(60), "beamline receive --format stream2 --curve-secret");
    assert_eq!(out.status.code(), Some(0), "{}", closing(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("expected 8, received 8, rejected 0"), "{}", closing(&out));

    let (ep, out_dir) = (free_endpoint(), d.join("refused"));
    let rx = guarded_receiver(d, &ep, &out_dir, &["--format", "stream2"]);
    assert_refused(d, rx, simulate2(&ep, "intruder"), &out_dir);
}

//! A real detector simulator as the peer: the tickit-devices Eiger (SIMPLON REST API + stream v2 PUSH socket,
//! streaming the start/image/end messages captured from a real EIGER2 16M) is driven over REST by
//! `tests/py/eiger_tickit.py`; `beamline receive --format stream2 --connect` writes the file, and h5py +
//! hdf5plugin check it against the simulator's images decoded independently with `dectris-compression`.
//! (The simulator runs with two fixes, a bind-only stream socket and one ZeroMQ message per stream v2 message: see
//! `tests/py/eiger_tickit.py`.)

mod acquisition_common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use acquisition_common::wait;
use tests::{beamline, python, run_python};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the simulator when the test ends, however it ends.
struct Simulator(Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tickit_eiger_series_lands_as_sent_with_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let (rest, cbor, legacy) = (free_port(), free_port(), free_port());
    let yaml = dir.path().join("eiger.yaml");
    let ports = [rest.to_string(), cbor.to_string(), legacy.to_string()];
    run_python("eiger_tickit.py", &["config", yaml.to_str().unwrap(), &ports[0], &ports[1], &ports[2]]);
    let log = std::fs::File::create(dir.path().join("tickit.log")).unwrap();
    let sim = Simulator(
        Command::new(python())
            .arg(tests::workspace_root().join("tests/py/eiger_tickit.py"))
            .arg("serve")
            .arg(&yaml)
            // Its scratch folder. (The start message that sometimes came "in two parts" was not the folder: the
            // published simulator bundles start and image 0 into one multipart message when `trigger` follows
            // `arm` before its next update; `serve` fixes that, see tests/py/eiger_tickit.py.)
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the tickit Eiger simulator (`make test` installs tickit-devices)"),
    );
    let file = dir.path().join("eiger.h5");
    let rx = beamline()
        .args(["receive", "--format", "stream2", "--quiet", "--connect", &format!("tcp://127.0.0.1:{cbor}")])
        .arg("--output")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let driven = run_python("eiger_tickit.py", &["drive", &ports[0], "3"]);
    assert!(driven.contains("\"state\": \"idle\""), "{driven}");
    let out = wait(rx, Duration::from_secs(120), "beamline receive --format stream2 (tickit Eiger)");
    drop(sim);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("expected 3, received 3, rejected 0"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(run_python("eiger_tickit.py", &["check", file.to_str().unwrap(), "3"]).trim()).unwrap();
    assert_eq!(r["checked"], 3);
    assert_eq!(r["status"], "complete");
    assert_eq!(r["shape"], serde_json::json!([4362, 4148]));
    assert_eq!(r["number_of_images"], 3);
    assert!(r["nonzero"].as_u64().unwrap() > 1000, "{r}");
}

//! Tests: end-to-end tests and interop tests against independent peers (Python pyzmq, h5py + hdf5plugin,
//! tifffile, headless Chromium). Helpers here locate the `beamline` binary and the Python peers.
//!
//! This crate must not contain product code; it only drives the real binary and real peers. Peers are
//! required, never skipped: when one is missing the test fails and says to run `make test`, which installs
//! them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Root of the workspace (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests crate sits inside the workspace").to_path_buf()
}

/// Path of the `beamline` binary built by the same `cargo test` profile as this test.
///
/// Panics with instructions when it has not been built (`make test` builds it first).
pub fn beamline_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> -> target/<profile>/beamline
    let profile_dir = exe.parent().and_then(Path::parent).expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("beamline{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build --release -p beamline` (or run `make test`)",
        bin.display()
    );
    bin
}

/// A `Command` for the `beamline` binary.
pub fn beamline() -> Command {
    Command::new(beamline_bin())
}

/// Python interpreter of the test virtualenv holding numpy, pyzmq, h5py, hdf5plugin and tifffile.
///
/// `BEAMLINE_PYTHON` overrides; otherwise `target/pyenv/bin/python`. Panics when missing: run `make test`.
pub fn python() -> PathBuf {
    let p = std::env::var_os("BEAMLINE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/pyenv/bin/python"));
    assert!(
        p.exists(),
        "Python peers not installed ({}): run `make test` once, which creates the virtualenv",
        p.display()
    );
    p
}

/// Runs a Python peer script from `tests/py/` with arguments; returns its stdout, panics with its stderr
/// when it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let path = workspace_root().join("tests/py").join(script);
    let out = Command::new(python()).arg(&path).args(args).output().expect("start python");
    assert!(
        out.status.success(),
        "python {} {:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        script,
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Headless Chromium (`BEAMLINE_CHROMIUM` overrides `/usr/bin/chromium`). Panics when missing.
pub fn chromium() -> PathBuf {
    let p = profiling::browser::chromium_path();
    assert!(p.exists(), "Chromium not found at {}: run `make test`, which installs it", p.display());
    p
}

/// The flags Chromium needs to run headless as root here without touching the network (the same ones
/// `beamline bench trace` uses).
pub use profiling::browser::HEADLESS_FLAGS as CHROMIUM_FLAGS;

/// A loopback TCP endpoint on a port that was free a moment ago, e.g. `tcp://127.0.0.1:40123`.
pub fn free_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = l.local_addr().expect("local addr").port();
    format!("tcp://127.0.0.1:{port}")
}

/// Writes an NXtomo (or DXchange) test file with `tests/py/recon_make_nxtomo.py` (h5py + hdf5plugin, an
/// independent writer); `extra` are its options.
pub fn make_nxtomo(path: &Path, extra: &[&str]) {
    let mut args = vec![path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    run_python("recon_make_nxtomo.py", &args);
}

/// Runs `beamline recon ARGS --quiet` to the end.
pub fn recon_quiet(args: &[&str]) -> std::process::Output {
    beamline().arg("recon").args(args).arg("--quiet").output().expect("run beamline")
}

/// A finished process's stdout and stderr, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Waits for a child up to `limit`, killing it (and failing the test) when it takes longer.
pub fn wait(child: Child, limit: Duration, what: &str) -> Output {
    wait_or_stop(child, limit).unwrap_or_else(|out| {
        panic!("{what} did not finish within {limit:?} (stopped with SIGINT, then SIGKILL)\n{}", output_text(&out))
    })
}

/// Waits for a child up to `limit`: `Ok` with its output when it exited, else `Err` with its output once
/// stopped. SIGINT first: a receiver then prints its closing line (what it received, rejected, misses), which
/// says why it hung; SIGKILL only if it does not exit within 5 s.
pub fn wait_or_stop(mut child: Child, limit: Duration) -> Result<Output, Output> {
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("wait for a child").is_some() {
            return Ok(child.wait_with_output().expect("child output"));
        }
        if t0.elapsed() >= limit {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let t1 = Instant::now();
            while child.try_wait().ok().flatten().is_none() && t1.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            return Err(child.wait_with_output().expect("child output"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `beamline simulate --connect EP -q SIM_ARGS` into `beamline receive --bind EP --output FILE -q` on a free
/// loopback endpoint; both must succeed within 120 s.
pub fn simulate_into(file: &Path, sim_args: &[&str]) {
    let ep = free_endpoint();
    let rx = beamline()
        .args(["receive", "--bind", &ep, "--output", file.to_str().expect("utf-8 path"), "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beamline receive");
    let sim = beamline()
        .args(["simulate", "--connect", &ep, "-q"])
        .args(sim_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beamline simulate");
    let limit = Duration::from_secs(120);
    let s = wait(sim, limit, "simulate");
    assert!(s.status.success(), "simulate failed\n{}", output_text(&s));
    let r = wait(rx, limit, "receive");
    assert!(r.status.success(), "receive failed\n{}", output_text(&r));
}

/// The `provenance.json` a reconstruction wrote into `out_dir`.
pub fn provenance(out_dir: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(out_dir.join("provenance.json")).expect("provenance.json");
    serde_json::from_str(&s).expect("provenance JSON")
}

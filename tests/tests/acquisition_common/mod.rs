//! Helpers shared by the acquisition end-to-end tests: expected-series files for `tests/py/acq_check.py`,
//! the simulator's frames regenerated in-process, and child processes with time limits.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Output};

use acquisition::protocol::{Compression, Dtype};
use acquisition::sim::{FrameGenerator, Schedule, SimConfig};

/// What a test sent, written for the Python checker.
pub struct Expected {
    pub series: String,
    pub rows: usize,
    pub cols: usize,
    pub dtype: Dtype,
    /// Raw little-endian pixels per index; `None` = never sent.
    pub frames: Vec<Option<Vec<u8>>>,
    pub keys: Vec<u8>,
    pub angles: Vec<f64>,
    pub compression: Compression,
    pub status: String,
    pub frames_sent: Option<u64>,
    pub metadata: serde_json::Value,
    pub end_metadata: Option<serde_json::Value>,
    pub rejected: Option<u64>,
}

impl Expected {
    /// Writes `<dir>/<name>.json` and `<dir>/<name>.bin`; returns the JSON path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let frame_bytes = self.rows * self.cols * self.dtype.size();
        let mut bin = Vec::with_capacity(frame_bytes * self.frames.len());
        for f in &self.frames {
            match f {
                Some(px) => {
                    assert_eq!(px.len(), frame_bytes);
                    bin.extend_from_slice(px);
                }
                None => bin.resize(bin.len() + frame_bytes, 0),
            }
        }
        std::fs::write(dir.join(format!("{name}.bin")), bin).unwrap();
        let missing: Vec<usize> = (0..self.frames.len()).filter(|i| self.frames[*i].is_none()).collect();
        let mut j = serde_json::json!({
            "series": self.series, "shape": [self.rows, self.cols], "dtype": self.dtype.name(),
            "frames": self.frames.len(), "keys": self.keys, "angles": self.angles, "missing": missing,
            "compression": self.compression, "status": self.status, "metadata": self.metadata,
            "end_metadata": self.end_metadata,
        });
        if let Some(n) = self.frames_sent {
            j["frames_sent"] = n.into();
        }
        if let Some(n) = self.rejected {
            j["rejected"] = n.into();
        }
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, j.to_string()).unwrap();
        path
    }
}

/// The frames `beamline simulate` sends for this configuration (it is deterministic given the seed).
pub fn simulated(series: &str, cfg: &SimConfig, schedule: &Schedule, compression: Compression) -> Expected {
    let mut gen = FrameGenerator::new(cfg);
    let (mut frames, mut keys, mut angles) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..schedule.frames() {
        let (key, angle) = schedule.frame(i);
        frames.push(Some(gen.frame(key, angle)));
        keys.push(key.code());
        angles.push(angle.0);
    }
    Expected {
        series: series.into(),
        rows: cfg.rows,
        cols: cfg.cols,
        dtype: cfg.dtype,
        frames,
        keys,
        angles,
        compression,
        status: "complete".into(),
        frames_sent: Some(schedule.frames()),
        metadata: serde_json::json!({"source": "beamline simulate", "seed": cfg.seed}),
        end_metadata: None,
        rejected: Some(0),
    }
}

/// Runs the independent h5py + hdf5plugin checker.
pub fn check(file: &Path, expected_json: &Path, flushed_only: bool) -> serde_json::Value {
    let mut args = vec![file.to_str().unwrap(), expected_json.to_str().unwrap()];
    if flushed_only {
        args.push("--flushed-only");
    }
    let out = tests::run_python("acq_check.py", &args);
    serde_json::from_str(out.trim().lines().last().unwrap_or("null")).expect("checker prints JSON")
}

// Not every test binary that includes this module waits for a child.
#[allow(unused_imports)]
pub use tests::wait;

/// Asserts success and returns stdout.
pub fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Starts `beamline receive --bind endpoint --output file -q` plus `extra`, stdout/stderr piped.
pub fn spawn_receiver(endpoint: &str, file: &Path, extra: &[&str]) -> Child {
    tests::beamline()
        .args(["receive", "--bind", endpoint, "--output", file.to_str().expect("utf-8 path"), "-q"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start beamline receive")
}

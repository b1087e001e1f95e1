//! Helpers shared by the scripting integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use scripting::config::BeamlineConfig;
use scripting::device::detector::RecordingDetector;
use scripting::{DetectorChoice, ScanOptions, ScanOutcome, ScanRun};

/// The built-in beamline in zero time.
pub fn zero_time() -> BeamlineConfig {
    let mut c = BeamlineConfig::default();
    c.clock.time_scale = 0.0;
    c
}

/// Options with a recording detector (kept frames) and captured output.
pub fn recording(config: BeamlineConfig) -> (ScanOptions, Arc<RecordingDetector>, Arc<Mutex<Vec<String>>>) {
    let det = Arc::new(RecordingDetector::new("det", std::time::Duration::ZERO, true));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let opts = ScanOptions {
        config,
        detector: DetectorChoice::Custom(det.clone()),
        output: Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_string())),
        ..ScanOptions::default()
    };
    (opts, det, lines)
}

/// Runs `text` to the end.
pub fn run(text: &str, opts: ScanOptions) -> ScanOutcome {
    ScanRun::start("test.rhai", text.to_string(), opts).expect("start").wait().expect("wait")
}

/// The error text of an outcome (empty when none).
pub fn error_text(o: &ScanOutcome) -> String {
    o.error.as_ref().map(|e| e.to_string()).unwrap_or_default()
}

/// What a test checks in an NXtomo file written by a scan.
#[derive(Debug)]
pub struct Nxtomo {
    /// `/entry/acquisition/status`.
    pub status: String,
    /// `/entry/instrument/detector/image_key`.
    pub image_key: Vec<i32>,
    /// `/entry/sample/rotation_angle`.
    pub angles: Vec<f64>,
    /// Shape of `/entry/instrument/detector/data`.
    pub shape: Vec<usize>,
    /// `/entry/acquisition/end_metadata`, parsed.
    pub end: serde_json::Value,
}

fn read_str(f: &hdf5::File, path: &str) -> String {
    f.dataset(path)
        .and_then(|d| d.read_scalar::<hdf5::types::VarLenUnicode>())
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Reads the parts of an NXtomo file the tests check, with the hdf5 crate (an independent reader of the
/// file the receiver wrote).
pub fn read_nxtomo(path: &std::path::Path) -> Nxtomo {
    let f = hdf5::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    use acquisition::nexus::{acq, path};
    let end = read_str(&f, &format!("{}/{}", path::ACQUISITION, acq::END_METADATA));
    Nxtomo {
        status: read_str(&f, &format!("{}/{}", path::ACQUISITION, acq::STATUS)),
        image_key: f.dataset(path::IMAGE_KEY).unwrap().read_raw::<i32>().unwrap(),
        angles: f.dataset(path::ROTATION_ANGLE).unwrap().read_raw::<f64>().unwrap(),
        shape: f.dataset(path::DATA).unwrap().shape(),
        end: serde_json::from_str(&end).unwrap(),
    }
}

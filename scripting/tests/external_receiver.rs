//! With `[detector] endpoint` the scan pushes its frames to an external receiver (as `beamline receive`
//! runs it) instead of starting one in-process.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use acquisition::receiver::{Output, Receiver, ReceiverConfig};
use common::{error_text, read_nxtomo, zero_time};
use scripting::{DetectorChoice, RunStatus, ScanOptions, ScanRun};

#[test]
fn frames_go_to_the_configured_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut rc = ReceiverConfig::new(Output::Dir(dir.path().to_path_buf()));
    rc.endpoint = "tcp://127.0.0.1:*".into();
    let receiver = Receiver::bind(rc).unwrap();
    let endpoint = receiver.endpoint();
    let thread = receiver.spawn().unwrap();
    let live = thread.live();

    let mut cfg = zero_time();
    cfg.detector.endpoint = Some(endpoint);
    let opts = ScanOptions {
        config: cfg,
        detector: DetectorChoice::Acquisition,
        output: std::sync::Arc::new(|_: &str| {}),
        ..ScanOptions::default()
    };
    let script = "tomo_scan(#{projections: 24, darks: 2, flats: 3, sample_out: 8.0, name: \"ext\"});";
    let o = ScanRun::start("ext.rhai", script.into(), opts).unwrap().wait().unwrap();
    assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
    assert_eq!(o.series[0].file, None, "the external receiver names the file");
    assert_eq!(o.series[0].frames, 29);

    let deadline = Instant::now() + Duration::from_secs(30);
    while live.series_done.load(Ordering::Acquire) < 1 {
        assert!(Instant::now() < deadline, "the receiver never finished the series");
        std::thread::sleep(Duration::from_millis(10));
    }
    let summary = thread.stop_and_join().unwrap();
    let f = read_nxtomo(&summary.series[0].path);
    assert_eq!(f.status, "complete");
    assert_eq!(f.shape[0], 29);
    assert_eq!(f.end["scan"]["projections"], 24);
}

//! `beamline bench ingest --json` runs every sink at both sizes (the Python peer too when BEAMLINE_PYTHON is
//! set) and prints one JSON object on its last line (figures are not asserted: tests never judge wall-clock
//! time).

use tests::beamline;

#[test]
fn bench_ingest_json_reports_every_sink_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = beamline()
        .args(["bench", "ingest", "--json", "--large-frames", "3", "--small-frames", "40", "--repeat", "1"])
        .args(["--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.trim().lines().last().unwrap();
    let j: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(j["bench"], "ingest");
    assert_eq!(j["sender"], "separate process");
    let python = std::env::var_os("BEAMLINE_PYTHON").is_some();
    let mut want_sinks = vec!["zmq_discard", "zmq_append_file", "beamline_receive", "beamline_receive_no_checksum"];
    // The O_DIRECT ceiling runs where the folder's file system takes O_DIRECT, and says so where it does not.
    if !stdout.contains("O_DIRECT: not taken") {
        want_sinks.push("zmq_append_direct");
    }
    // The same receiver writing through the page cache runs where its writes bypass it, and the bench says which.
    if stdout.contains("writer: frame chunks bypass the page cache") {
        want_sinks.push("beamline_receive_buffered");
    } else {
        assert!(stdout.contains("writer: frame chunks go through the page cache"), "{stdout}");
    }
    if python {
        want_sinks.push("python_h5py");
    }
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2 * want_sinks.len(), "{runs:?}");
    for r in runs {
        let want = if r["frame"] == "2048x2048" { 3 } else { 40 };
        assert_eq!(r["frames"], want, "{r}");
        assert!(r["frames_per_s"].as_f64().unwrap() > 0.0);
        assert!(r["gb_per_s_uncompressed"].as_f64().unwrap() > 0.0);
    }
    let sinks: Vec<&str> = runs.iter().map(|r| r["sink"].as_str().unwrap()).collect();
    for s in &want_sinks {
        assert_eq!(sinks.iter().filter(|x| *x == s).count(), 2, "{s}");
    }
    let ratios = &j["ratios_per_round"];
    assert_eq!(ratios["2048x2048 beamline / receive-and-discard"].as_array().map(|r| r.len()), Some(1));
    if python {
        assert_eq!(ratios["512x512 beamline / python"].as_array().map(|r| r.len()), Some(1), "{ratios}");
    }
}

#[test]
fn bench_ingest_ack_adds_the_acknowledged_receiver_to_every_round() {
    let dir = tempfile::tempdir().unwrap();
    let out = beamline()
        .args(["bench", "ingest", "--json", "--ack", "--only", "512", "--small-frames", "40", "--repeat", "2"])
        .args(["--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).expect("JSON");
    let runs = j["runs"].as_array().unwrap();
    let ack: Vec<_> = runs.iter().filter(|r| r["sink"] == "beamline_receive_ack").collect();
    assert_eq!(ack.len(), 1, "one median entry for the acknowledged sink: {runs:?}");
    assert_eq!(ack[0]["frames"], 40, "every frame arrived with acknowledgements");
    let cost = &j["ratios_per_round"]["512x512 acknowledgements cost: with / without"];
    assert_eq!(cost.as_array().map(|r| r.len()), Some(2), "one ratio per round: {cost}");
    assert!(runs.iter().all(|r| r["frame"] == "512x512"), "--only 512");
}

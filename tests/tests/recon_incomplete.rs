//! Issue 14 §2: an incomplete scan (a receiver that stopped after 82 of 420 frames, written by h5py) is
//! refused before any work starts with one message saying what is missing and naming `--allow-incomplete`;
//! with the flag it reconstructs.

use tests::{beamline, make_nxtomo as make, output_text as text, recon_quiet as recon};

#[test]
fn receiver_stopped_after_82_of_420_frames_is_refused_then_accepted_with_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("stopped.h5");
    // 3 darks + 4 flats + 409 projections + 4 flats = 420 frames; stopped after 82: 75 projections, no flats after.
    make(&input, &["--angles", "409", "--rows", "2", "--stop-after", "82"]);
    let out = dir.path().join("out");
    for center in ["127.5", "auto"] {
        let o = recon(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--center", center]);
        assert!(!o.status.success(), "an incomplete scan must be refused: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.matches("incomplete scan").count(), 1, "one message, said once: {err}");
        for what in [
            "the 75 projections cover 33.0 degrees",
            "of the 180.0 declared in the file",
            "75 of the 409 announced projections",
            "338 invalid frame(s)",
            "82..420",
            "the receiver got 82 of 420 frames",
            "--allow-incomplete",
        ] {
            assert!(err.contains(what), "message lacks {what:?}: {err}");
        }
        assert!(!out.join("provenance.json").exists(), "refused before any work starts");
    }

    let o = recon(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--center", "63.5", "--allow-incomplete"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("slice_00000.tif").exists() && out.join("slice_00001.tif").exists());
    let prov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(prov["parameters"]["allow_incomplete"], true);
    assert!(prov["parameters"]["scan_problems"].as_array().is_some_and(|p| !p.is_empty()), "{prov}");
}

#[test]
fn no_darks_is_one_message_with_the_flag_and_accepted_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("nodarks.h5");
    make(&input, &["--rows", "2", "--bad", "no-darks"]);
    let out = dir.path().join("out");
    let o = recon(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--center", "63.5"]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no dark fields (image_key 2 in /entry/instrument/detector/image_key)")
            && err.contains("--allow-incomplete"),
        "{err}"
    );
    let o = recon(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--center", "63.5", "--allow-incomplete"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn inspect_summarises_a_complete_and_an_incomplete_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.h5");
    make(&good, &["--rows", "2"]);
    let o = beamline().arg("inspect").arg(&good).output().expect("run beamline");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [
        "format: NXtomo",
        "data: /entry/instrument/detector/data [191 frames x 2 rows x 128 columns]",
        "Blosc",
        "180 projections, 8 flats, 3 darks, 0 invalid",
        "0.000 to 179.000 degrees, step 1.0000, coverage 180.00 of 180.0 degrees",
        "angular gaps: none",
        "missing frames: none",
        "status: not recorded",
        "verdict: complete",
    ] {
        assert!(out.contains(line), "summary lacks {line:?}:\n{out}");
    }
    assert!(out.lines().count() <= 24, "one screen:\n{out}");

    let bad = dir.path().join("stopped.h5");
    make(&bad, &["--angles", "409", "--rows", "2", "--stop-after", "82"]);
    let o = beamline().arg("inspect").arg(&bad).output().expect("run beamline");
    assert!(!o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [
        "75 projections, 4 flats, 3 darks, 338 invalid",
        "coverage 33.01 of 180.0 degrees declared",
        "missing frames: 82..420",
        "status: incomplete (receiver stopped before series end), 82 of 420 frames received",
        "verdict: INCOMPLETE",
        "--allow-incomplete",
    ] {
        assert!(out.contains(line), "summary lacks {line:?}:\n{out}");
    }
}

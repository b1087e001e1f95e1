//! Issue 15 §4: Vo's centre end to end. `--center auto` on a scan with no 0/180-degree pair falls back to Vo's
//! Fourier metric instead of failing, `--center vo` asks for it; the centre found is printed and stored in
//! provenance, and centre-sweep file names carry exactly the centre each trial was reconstructed with.

use serde_json::Value;
use tests::{make_nxtomo as make, output_text as text, provenance, recon_quiet as recon, run_python};

#[test]
fn auto_falls_back_to_vo_when_the_last_angle_has_no_partner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan165.h5");
    // 0 .. 164 degrees in 1-degree steps: no projection is 180 degrees (nor within two steps of it) from another.
    make(&input, &["--center", "66.4", "--span", "165", "--angles", "165"]);
    let out = dir.path().join("out");
    // A 165-degree scan covers less than the 180 degrees FBP needs: refused unless asked for.
    let refused = recon(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--slices", "2:4"]);
    assert!(!refused.status.success() && text(&refused).contains("--allow-incomplete"), "{}", text(&refused));
    let o = recon(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--slices", "2:4", "--allow-incomplete"]);
    assert!(o.status.success(), "{}", text(&o));
    let prov = provenance(&out);
    let c = prov["parameters"]["center"].as_f64().expect("center");
    assert!((c - 66.4).abs() < 0.3, "centre {c}, true 66.4");
    assert_eq!(prov["parameters"]["center_mode"], "auto-vo");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("centre {c:.2} (auto-vo)")), "the centre used is printed: {stdout}");
}

#[test]
fn center_vo_on_a_half_turn_and_sweep_names_match_the_centre_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--center", "61.7"]);
    let out = dir.path().join("out");
    let o = recon(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--slices", "2:3", "--center", "vo"]);
    assert!(o.status.success(), "{}", text(&o));
    let prov = provenance(&out);
    let c = prov["parameters"]["center"].as_f64().expect("center");
    assert!((c - 61.7).abs() < 0.3, "centre {c}, true 61.7");
    assert_eq!(prov["parameters"]["center_mode"], "vo");

    let sweep = dir.path().join("sweep");
    let o = recon(&[input.to_str().unwrap(), "-o", sweep.to_str().unwrap(), "--center-sweep", "60.5:62.5:0.25"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_str(run_python("recon_sweep_centres.py", &[sweep.to_str().unwrap()]).trim())
        .expect("JSON from recon_sweep_centres.py");
    let map = v.as_object().expect("object");
    assert_eq!(map.len(), 9, "{v}");
    for (name, used) in map {
        let used = used.as_f64().expect("center in provenance");
        let named: f64 = name.trim_start_matches("center_").trim_end_matches(".tif").parse().expect("number in name");
        assert!((named - used).abs() < 0.005, "{name} was reconstructed with centre {used}");
    }
}

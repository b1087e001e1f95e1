//! `beamline recon --gpu-dtype f32|f16 --gpu-filter auto|fft|convolve`: parsed, recorded in provenance
//! (and replayed by `beamline rerun`), refused where no GPU can run (`--backend cpu`, CPU-only methods),
//! and with `--backend auto` on a node without a usable GPU the run goes on on the CPU and says in one line
//! that the options were not applied. On a GPU node the same test checks that they were.

use serde_json::Value;
use tests::{beamline, make_nxtomo, output_text as text};

fn provenance(dir: &std::path::Path) -> Value {
    let p = dir.join("provenance.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .expect("provenance JSON")
}

#[test]
fn gpu_options_are_refused_on_the_cpu_backend_and_for_cpu_only_methods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make_nxtomo(&input, &[]);
    let out = dir.path().join("out");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());

    let r = beamline().args(["recon", i, "-o", o, "--backend", "cpu", "--gpu-dtype", "f16"]).output().unwrap();
    assert!(!r.status.success(), "--backend cpu --gpu-dtype f16 must be refused:\n{}", text(&r));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("--gpu-dtype f16") && err.contains("--backend cpu") && err.contains("runs on the CPU"),
        "must say which option and why:\n{err}"
    );
    assert!(!out.exists(), "nothing may be written when refused");

    let r = beamline()
        .args(["recon", i, "-o", o, "--method", "gridrec", "--gpu-filter", "fft", "--gpu-dtype", "f32"])
        .output()
        .unwrap();
    assert!(!r.status.success(), "a CPU-only method with GPU options must be refused:\n{}", text(&r));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("--gpu-dtype f32 --gpu-filter fft") && err.contains("--method gridrec"), "{err}");

    // clap knows the values.
    let r = beamline().args(["recon", i, "-o", o, "--gpu-dtype", "f64"]).output().unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("f32") && err.contains("f16"), "must list the possible values:\n{err}");
}

#[test]
fn gpu_options_are_recorded_and_replayed_and_said_when_not_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make_nxtomo(&input, &[]);
    let out = dir.path().join("out");
    let r = beamline()
        .args(["recon", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--center", "63.5"])
        .args(["--backend", "auto", "--gpu-dtype", "f16", "--gpu-filter", "convolve"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", text(&r));
    let err = String::from_utf8_lossy(&r.stderr);
    let prov = provenance(&out);
    assert_eq!(prov["options"]["gpu_dtype"], "f16", "{}", prov["options"]);
    assert_eq!(prov["options"]["gpu_filter"], "convolve");
    let gpu = &prov["parameters"]["gpu"];
    assert_eq!((gpu["dtype"].as_str(), gpu["filter"].as_str()), (Some("f16"), Some("convolve")), "{gpu}");
    assert_eq!(gpu["given"], "--gpu-dtype f16 --gpu-filter convolve");
    let used = prov["parameters"]["backend_used"].as_str().expect("backend_used").to_string();
    if used.starts_with("backend: cuda") {
        // A GPU node: the options reached the CUDA backend.
        assert_eq!(gpu["applied"], true);
        assert!(used.contains("f16 storage, convolve filter"), "{used}");
    } else {
        assert_eq!(gpu["applied"], false);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("not applied")).collect();
        assert_eq!(lines.len(), 1, "one line saying so:\n{err}");
        assert!(lines[0].contains("--gpu-dtype f16 --gpu-filter convolve not applied: no GPU ran"), "{err}");
        assert!(used.contains("not applied"), "{used}");
    }

    // The recorded options re-execute as they were.
    let r = beamline().args(["rerun", out.to_str().unwrap()]).output().unwrap();
    assert!(r.status.success(), "{}", text(&r));
    assert!(String::from_utf8_lossy(&r.stdout).contains("identical"), "{}", text(&r));
}

/// Without the options the provenance says so (defaults, nothing given) and no line is added.
#[test]
fn without_gpu_options_provenance_records_the_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make_nxtomo(&input, &[]);
    let out = dir.path().join("out");
    let r = beamline()
        .args(["recon", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--center", "63.5", "--backend", "cpu"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", text(&r));
    assert!(!String::from_utf8_lossy(&r.stderr).contains("not applied"), "{}", text(&r));
    let prov = provenance(&out);
    assert_eq!(prov["options"]["gpu_dtype"], Value::Null);
    let gpu = &prov["parameters"]["gpu"];
    assert_eq!((gpu["dtype"].as_str(), gpu["filter"].as_str()), (Some("f32"), Some("auto")), "{gpu}");
    assert_eq!((&gpu["given"], &gpu["applied"]), (&Value::Null, &Value::Bool(false)));
}

//! The GPU check bundle, assembled from the built `beamline` by the same script `make gpu-bundle` runs
//! (`reconstruct/src/gpu/bundle/make-bundle.sh`) into a scratch folder, then its `run.sh` run there with
//! small shapes (`BEAMLINE_BUNDLE_QUICK=1`) and without the test environment's `LD_LIBRARY_PATH`.
//!
//! Checks: the bundle fits 60 MiB; with `lib/` on the path every shared library the binary needs that is
//! not glibc resolves inside the bundle; on a machine without a CUDA driver `run.sh` says "no CUDA driver",
//! still writes the NXtomo file, the CPU reconstruction and the timeline, and exits 0 with a summary.json
//! that names every step; with a driver it runs the GPU steps (whose success the summary records).

use std::process::Command;

#[test]
fn bundle_builds_within_the_limit_and_run_sh_runs_its_cpu_half() {
    let dir = tempfile::tempdir().expect("scratch folder");
    let bundle = dir.path().join("gpu-bundle");
    let script = tests::workspace_root().join("reconstruct/src/gpu/bundle/make-bundle.sh");
    let made = Command::new(&script).arg(tests::beamline_bin()).arg(&bundle).output().expect("run make-bundle.sh");
    let made_out = String::from_utf8_lossy(&made.stdout).into_owned() + &String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "make-bundle.sh failed:\n{made_out}");
    let size: u64 = walk(&bundle).iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    assert!(size <= 60 << 20, "bundle is {size} bytes, over 60 MiB");
    for f in ["beamline", "run.sh", "README.md", "MANIFEST", "lib"] {
        assert!(bundle.join(f).exists(), "bundle lacks {f}");
    }
    assert!(
        std::fs::read_dir(bundle.join("lib")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("libhdf5")),
        "the HDF5 library must travel with the binary"
    );

    // With lib/ first on the path, nothing but glibc comes from the system.
    let ldd = Command::new("ldd")
        .arg(bundle.join("beamline"))
        .env("LD_LIBRARY_PATH", bundle.join("lib"))
        .output()
        .expect("ldd");
    let lib_dir = bundle.join("lib").canonicalize().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let Some((name, path)) = line.trim().split_once(" => ") else { continue };
        let glibc = ["libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so", "libresolv.so", "ld-linux"]
            .iter()
            .any(|g| name.starts_with(g));
        assert!(glibc || path.starts_with(lib_dir.to_str().unwrap()), "{name} resolves outside the bundle: {path}");
    }

    let out = dir.path().join("out");
    let run = Command::new(bundle.join("run.sh"))
        .arg(&out)
        .env_remove("LD_LIBRARY_PATH")
        .env("BEAMLINE_BUNDLE_QUICK", "1")
        .output()
        .expect("run run.sh");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let log = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let summary: serde_json::Value = serde_json::from_str(&log("summary.json"))
        .unwrap_or_else(|e| panic!("summary.json is not JSON ({e}):\n{}\nrun.sh said:\n{stdout}", log("summary.json")));
    let steps: Vec<String> = summary["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| format!("{}={}", s["step"].as_str().unwrap_or("?"), s["rc"]))
        .collect();
    println!("run.sh: {stdout}\nsteps: {steps:?}");
    for step in ["gpu_check", "simulate", "receive", "recon_cpu", "timeline"] {
        assert!(steps.iter().any(|s| s.starts_with(&format!("{step}="))), "summary lacks step {step}: {steps:?}");
    }
    if !reconstruct::gpu::driver_present() {
        assert!(stdout.contains("no CUDA driver"), "run.sh must say there is no CUDA driver:\n{stdout}");
        assert_eq!(summary["gpu"], false);
        assert!(steps.iter().all(|s| !s.starts_with("compare_")), "no GPU step may run without a driver: {steps:?}");
    }
    assert!(run.status.success(), "run.sh failed: {steps:?}\n{stdout}\nrecon_cpu: {}", log("recon_cpu.txt"));
    assert!(std::fs::metadata(out.join("data/scan.h5")).map(|m| m.len() > 0).unwrap_or(false), "no NXtomo file");
    assert!(out.join("recon_cpu.h5").exists(), "no CPU reconstruction: {}", log("recon_cpu.txt"));
    let html = log("timeline.html");
    assert!(html.contains("<html") || html.contains("<!DOCTYPE"), "timeline.html is not a page");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

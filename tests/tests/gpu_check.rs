//! `beamline gpu check` and backend selection on a machine without a GPU (every CI machine): the check
//! still compiles every kernel and exits 0; `--backend auto` falls back to the CPU with one line and
//! `cuda` refuses clearly. On a GPU node the same tests check the GPU side instead.

use reconstruct::cpu::CpuBackend;
use reconstruct::gpu::{driver_present, kernels, select_backends};
use reconstruct::pipeline::BackendChoice;

#[test]
fn gpu_check_compiles_every_kernel_and_reports_ptx_sizes() {
    let out = tests::beamline().args(["gpu", "check", "--json"]).output().expect("run beamline gpu check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "beamline gpu check failed (is NVRTC installed? run `make test`):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kernel in kernels::ALL {
        for arch in ["sm_80", "sm_90"] {
            assert!(
                stdout.lines().any(|l| l.contains(arch) && l.contains(kernel.name) && l.contains("bytes PTX")),
                "no PTX size for {} on {arch}:\n{stdout}",
                kernel.name
            );
        }
    }
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("JSON last line");
    assert_eq!(json["ok"], true);
    let sizes: Vec<u64> =
        json["kernels"].as_array().expect("kernels").iter().filter_map(|k| k["ptx_bytes"].as_u64()).collect();
    assert_eq!(sizes.len(), 2 * kernels::ALL.len());
    assert!(sizes.iter().all(|s| *s > 500), "{sizes:?}");
    if !driver_present() {
        assert!(stdout.contains("devices: none"), "{stdout}");
    }
}

#[test]
fn gpu_check_fails_without_nvrtc() {
    let out = tests::beamline()
        .args(["gpu", "check"])
        .env("LD_LIBRARY_PATH", "/nonexistent")
        .output()
        .expect("run beamline gpu check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.contains("NVRTC 1") {
        // NVRTC is installed system-wide (CUDA toolkit), so hiding the pip copy cannot take it away: the
        // check must then still compile every kernel.
        assert!(out.status.success(), "NVRTC was found, yet the check failed:\n{stdout}");
        for kernel in kernels::ALL {
            assert!(
                stdout.lines().any(|l| l.contains(kernel.name) && l.contains("bytes PTX")),
                "NVRTC was found, yet no PTX for {}:\n{stdout}",
                kernel.name
            );
        }
        return;
    }
    assert!(!out.status.success(), "must fail when no kernel can be compiled:\n{stdout}");
    assert!(stdout.contains("pip install nvidia-cuda-nvrtc-cu12"), "must say what to do:\n{stdout}");
}

#[test]
fn backend_selection_without_and_with_a_gpu() {
    let cpu = CpuBackend::default();
    let (devices, line) = select_backends(BackendChoice::Cpu, &cpu).expect("cpu");
    assert_eq!(devices.len(), 1);
    assert!(line.starts_with("backend: cpu"), "{line}");

    let (devices, line) = select_backends(BackendChoice::Auto, &cpu).expect("auto never fails");
    assert!(!devices.is_empty());
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    if driver_present() {
        assert!(line.contains("cuda") || line.contains("using the CPU"), "{line}");
    } else {
        assert!(
            line.starts_with("backend: cpu") && line.contains("no CUDA driver") && line.contains("using the CPU"),
            "{line}"
        );
        let err = match select_backends(BackendChoice::Cuda, &cpu) {
            Err(e) => e.to_string(),
            Ok((_, line)) => panic!("--backend cuda without a driver must fail, got {line}"),
        };
        assert!(err.contains("no CUDA driver") && err.contains("--backend cpu"), "{err}");
    }
}

/// `bench recon --backend cuda` (and `gpu bench`): on a GPU node it measures the GPUs with per-stage device
/// times; without one it says so in one line, runs the scheduler path on the CPU, and its JSON says the CPU
/// ran and carries no stage figure.
#[test]
fn bench_on_cuda_reports_stages_or_says_it_ran_on_the_cpu() {
    let out = tests::beamline()
        .args(["bench", "recon", "--backend", "cuda", "--json"])
        .output()
        .expect("run beamline bench recon --backend cuda");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"));
    assert_eq!(json["backend_asked"], "cuda");
    let stage_keys = ["upload_s", "preprocess_s", "filter_s", "backproject_s", "download_s", "overlap_share"];
    if json["backend_ran"] == "cuda" {
        let total = &json["stages"]["total"];
        for k in stage_keys {
            assert!(total[k].is_f64(), "stage {k} missing: {json}");
        }
        assert!(stdout.contains("device stages over"), "{stdout}");
        return;
    }
    assert!(!driver_present() || json["fallback"].is_string(), "{json}");
    assert_eq!(json["backend_ran"], "cpu", "{json}");
    let why: Vec<&str> = stderr.lines().filter(|l| l.starts_with("no GPU:")).collect();
    assert_eq!(why.len(), 1, "one line saying the CPU runs instead:\n{stderr}");
    assert!(why[0].contains("on the CPU instead") && why[0].contains("no GPU figure"), "{stderr}");
    assert!(json["fallback"].as_str().is_some_and(|f| !f.is_empty()), "{json}");
    assert_eq!(json["stages"], serde_json::Value::Null, "no stage figure without a GPU: {json}");
    assert_eq!(json["gpu_dtype"], serde_json::Value::Null);
    for p in json["points"].as_array().expect("points") {
        assert_eq!(p["stages"], serde_json::Value::Null, "{p}");
        assert!(p["per_device"].as_array().expect("per_device").iter().all(|d| d.get("stages").is_none()), "{p}");
    }
    assert!(!stdout.contains("device stages"), "printed stage times without a GPU:\n{stdout}");
    assert!(stdout.contains("on cpu"), "the header names what ran:\n{stdout}");
}

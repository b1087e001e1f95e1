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

#[test]
fn bench_recon_on_cuda_refuses_without_a_gpu_and_never_prints_a_figure() {
    let out = tests::beamline()
        .args(["bench", "recon", "--backend", "cuda", "--json"])
        .output()
        .expect("run beamline bench recon --backend cuda");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if reconstruct::gpu::device::driver_present() {
        // A GPU node: the benchmark must run and end with its JSON line.
        assert!(out.status.success(), "bench failed on a GPU node:\n{stdout}\n{stderr}");
        let last = stdout.lines().last().unwrap_or_default();
        assert!(serde_json::from_str::<serde_json::Value>(last).is_ok(), "last line is not JSON: {last}");
        return;
    }
    assert!(!out.status.success(), "must refuse without a GPU:\n{stdout}");
    assert!(
        stderr.contains("GPU figures are only ever measured on GPUs") && stderr.contains("--backend cpu"),
        "must say why and what to do:\n{stderr}"
    );
    assert!(!stdout.contains("G updates/s"), "printed a figure without a GPU:\n{stdout}");
}

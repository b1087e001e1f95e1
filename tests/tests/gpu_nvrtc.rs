//! Every CUDA kernel compiles with NVRTC to PTX for sm_80 (A100) and sm_90 (H100), without a warning.
//! Needs no GPU, only libnvrtc (from PyPI: `make test` installs it and puts it on LD_LIBRARY_PATH). When
//! NVRTC is missing these tests FAIL, they do not skip.

use reconstruct::gpu::kernels::{self, Kernel};
use reconstruct::gpu::nvrtc::{self, CompileError};

const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

fn require_nvrtc() {
    assert!(
        nvrtc::nvrtc_present(),
        "libnvrtc not found on LD_LIBRARY_PATH: run `make test` (it installs nvidia-cuda-nvrtc-cu12 into \
         target/pyenv and target/env.sh points the loader at it), or `. target/env.sh` before cargo test"
    );
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_warnings() {
    require_nvrtc();
    let (major, minor) = nvrtc::nvrtc_version().expect("NVRTC version");
    for arch in ARCHS {
        for kernel in kernels::ALL {
            let compiled = nvrtc::compile(kernel, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(compiled.ptx().contains(&format!(".target {arch}")), "{}: PTX not for {arch}", kernel.name);
            assert!(compiled.ptx().contains(&format!(".entry {}", kernel.name)));
            println!("NVRTC {major}.{minor} {arch} {:<20} {:>6} bytes of PTX", kernel.name, compiled.ptx().len());
        }
    }
}

#[test]
fn compilation_is_cached_per_process() {
    require_nvrtc();
    let a = nvrtc::compile(kernels::BACKPROJECT, "sm_80").expect("compile");
    let b = nvrtc::compile(kernels::BACKPROJECT, "sm_80").expect("compile");
    assert!(std::sync::Arc::ptr_eq(&a, &b), "the second request must come from the cache");
}

#[test]
fn warnings_and_errors_are_rejected() {
    require_nvrtc();
    const WARNS: Kernel = Kernel {
        name: "warns",
        file: "warns.cu",
        source: "extern \"C\" __global__ void warns(float* out) { int unused = 3; out[0] = 1.0f; }",
    };
    const BROKEN: Kernel = Kernel {
        name: "broken",
        file: "broken.cu",
        source: "extern \"C\" __global__ void broken(float* out) { out[0] = ; }",
    };
    for (kernel, what) in [(WARNS, "warning"), (BROKEN, "error")] {
        match nvrtc::compile(kernel, "sm_80") {
            Err(CompileError::Rejected { log, .. }) => {
                assert!(log.contains(what), "{what} expected in log:\n{log}")
            }
            other => panic!("{} must be rejected, got {other:?}", kernel.name),
        }
    }
}

//! Each kernel source goes through NVRTC once per process: opening the CUDA backend's compile path a
//! second time (a second device, a second backend) compiles nothing, and the kernels of one file
//! (`backproject_rows.cu` holds three) share one compilation. Needs no GPU, only libnvrtc (`. target/env.sh`);
//! without it the test FAILS. Alone in its own test binary, so no other test's compilations touch the count.

use std::collections::HashSet;
use std::sync::Arc;

use reconstruct::gpu::device::{compile_backend_kernels, BACKEND_KERNELS};
use reconstruct::gpu::kernels;
use reconstruct::gpu::nvrtc;

#[test]
fn each_source_is_compiled_once_per_process_and_reused() {
    assert!(
        nvrtc::nvrtc_present(),
        "libnvrtc not found on LD_LIBRARY_PATH: `. target/env.sh` (or `make test`) before cargo test"
    );
    let files: HashSet<&str> = BACKEND_KERNELS.iter().map(|k| k.file).collect();
    assert!(files.len() < BACKEND_KERNELS.len(), "some kernels share a file: {files:?}");

    let before = nvrtc::compilations();
    let first = compile_backend_kernels("sm_90").unwrap_or_else(|e| panic!("{e}"));
    let after_first = nvrtc::compilations();
    assert_eq!(after_first - before, files.len(), "one NVRTC run per source file, not per kernel");

    let second = compile_backend_kernels("sm_90").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nvrtc::compilations(), after_first, "opening the compile path again must compile nothing");
    for (a, b) in first.iter().zip(&second) {
        assert!(Arc::ptr_eq(a, b), "{}: the second opening must reuse the first's PTX", a.kernel.name);
    }

    // The three kernels of backproject_rows.cu are entry points of one module.
    let rows = |k: kernels::Kernel| first.iter().find(|c| c.kernel.name == k.name).expect("backend kernel");
    let m = rows(kernels::BACKPROJECT_ROWS);
    for k in [kernels::BACKPROJECT_ROWS_F16, kernels::TO_HALF] {
        assert!(Arc::ptr_eq(&m.module, &rows(k).module), "{} compiled separately", k.name);
        assert!(m.ptx().contains(&format!(".entry {}", k.name)));
    }

    // Another architecture is another compilation of each file; the kernels outside the backend's set add
    // only their own files.
    compile_backend_kernels("sm_80").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nvrtc::compilations(), after_first + files.len());
    nvrtc::compile_all("sm_90").unwrap_or_else(|e| panic!("{e}"));
    let all_files: HashSet<&str> = kernels::ALL.iter().map(|k| k.file).collect();
    assert_eq!(nvrtc::compilations(), after_first + files.len() + (all_files.len() - files.len()));
}

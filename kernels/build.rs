//! Compiles the CPU harness: the CUDA kernel sources in `cuda/` built as C++ through `harness/shim.h`.

fn main() {
    println!("cargo:rerun-if-changed=cuda");
    println!("cargo:rerun-if-changed=harness");
    cc::Build::new()
        .cpp(true)
        .file("harness/harness.cpp")
        .flag_if_supported("-std=c++17")
        // The CPU backend never fuses multiply-adds; neither may the harness, or it would not reproduce it.
        .flag_if_supported("-ffp-contract=off")
        .flag_if_supported("-fno-fast-math")
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Wno-unused-parameter")
        // `#pragma unroll` is a hint for NVRTC only.
        .flag_if_supported("-Wno-unknown-pragmas")
        .opt_level(2)
        .compile("beamline_kernel_harness");
}

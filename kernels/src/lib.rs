//! Kernels: the CUDA C sources of every GPU kernel, embedded as strings for NVRTC, plus a CPU harness that
//! compiles the same kernel bodies as C++ so tests can check their arithmetic without a GPU.
//!
//! This crate must not link CUDA or decide scheduling; it only owns kernel text and the harness.

//! Command-line front ends, one module per area; `main.rs` only dispatches.
//!
//! Each module exposes a `Command` enum (flattened into the top-level subcommands) and, where it has
//! benchmarks, a `Bench` enum (flattened under `beamline bench`). Each `run` returns the process exit code.

pub mod acquire;
pub mod demo;
pub mod gpu;
pub mod profile;
pub mod recon;
pub mod scan;

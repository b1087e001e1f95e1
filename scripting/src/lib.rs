//! Scripting: the Rhai scan engine, the (simulated) devices behind traits, scan primitives, and the command
//! line of the one `beamline` binary that orchestrates the other crates.
//!
//! This crate must not implement wire formats, file formats or reconstruction itself — it calls
//! `acquisition`, `reconstruct` and `profiling` — and a script must never be able to hang the beamline or
//! leave a device in an unsafe state.

pub mod cli;

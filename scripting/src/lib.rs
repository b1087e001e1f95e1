//! Scripting: the Rhai scan engine, the (simulated) devices behind traits and scan primitives. The
//! `beamline` binary that orchestrates every crate is the separate package in `scripting/cli/`, so users of
//! the engine do not pull the command line's dependencies.
//!
//! This crate must not implement wire formats, file formats or reconstruction itself — it calls
//! `acquisition` — must not hold command-line parsing or printing (that is the binary's), and a script must
//! never be able to hang the beamline or leave a device in an unsafe state.
//!
//! Layers, each in its own module: [`device`] (traits + the simulated beamline + the acquisition detector),
//! [`config`] (the TOML beamline file), [`clock`] and [`control`] (beamline time, abort/pause),
//! [`session`] (motion, acquisition with the beam suspender, series, returns), [`plans`] (scan shapes),
//! [`api`] and [`engine`] (what Rhai scripts see), [`run`] (preflight + live run on the script's thread),
//! [`diagnostics`] and [`report`] (what the operator reads), [`memory`] (the script's memory bound). The scripting API is documented in `API.md`.

#![warn(missing_docs)]

pub mod api;
pub mod clock;
pub mod config;
pub mod control;
pub mod device;
pub mod diagnostics;
pub mod engine;
pub mod error;
pub mod memory;
pub mod numbering;
pub mod plans;
pub mod provenance;
pub mod report;
pub mod run;
pub mod session;
pub mod stats;

pub use error::{RunStatus, ScanError};
pub use run::{run_scan_file, DetectorChoice, RunError, ScanOptions, ScanOutcome, ScanRun};

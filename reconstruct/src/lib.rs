//! Reconstruction: reads NXtomo files, preprocesses (dark/flat, -log, rings, zingers), filters, finds the
//! centre of rotation, backprojects on CPU (rayon) or CUDA GPUs, schedules work over devices and writes TIFF
//! stacks or HDF5 volumes with provenance.
//!
//! This crate must not talk to detectors or ZeroMQ, and must never load a whole dataset into memory when a
//! `--memory` budget says otherwise.

pub mod backend;
pub mod schedule;

//! Reconstruction: reads NXtomo files, preprocesses (dark/flat, -log, rings, zingers), filters, finds the
//! centre of rotation, backprojects on CPU (rayon) or CUDA GPUs or inverts in Fourier space (gridrec, CPU),
//! schedules work over devices and writes TIFF stacks or HDF5 volumes with provenance.
//!
//! This crate must not talk to detectors or ZeroMQ, and must never load a whole dataset into memory when a
//! `--memory` budget says otherwise.
//!
//! Entry points: [`pipeline::reconstruct_file`] (a file to a volume on disk) and
//! [`cpu::SinogramPipeline::reconstruct_minus_log`] (one in-memory sinogram to one slice, for live previews).

#![warn(missing_docs)]

pub mod accuracy;
pub mod backend;
pub mod backproject;
pub mod bench;
pub mod center;
pub mod chunks;
pub mod completeness;
pub mod cpu;
pub mod filter;
pub mod geometry;
pub mod gpu;
pub mod gridrec;
pub mod inspect;
pub mod iterative;
pub mod method;
pub mod offset_axis;
pub mod output;
pub mod paganin;
pub mod pipeline;
pub mod preprocess;
pub mod preview;
pub mod reader;
pub mod request;
pub mod schedule;
pub mod stripes;
pub mod vo_center;

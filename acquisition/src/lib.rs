//! Acquisition: the wire protocol (and DECTRIS stream v2 in), the detector simulator, the receiver, the blosc codec and the NXtomo HDF5
//! writer — everything between a detector frame and a frame on disk.
//!
//! This crate must not reconstruct, script scans or render timelines; it must never decompress and
//! recompress a frame on the ingest path, and it must never panic on anything that arrives over the wire.
#![warn(missing_docs)]

pub mod ack;
pub mod bench;
pub mod blosc;
pub mod budget;
pub mod curve;
pub mod direct;
pub mod frame_memory;
pub mod nexus;
pub mod phantom;
pub mod protocol;
pub mod receiver;
pub mod reject;
pub mod replay;
pub mod scan_data;
pub mod sender;
pub mod sim;
pub mod stream2;
pub mod timefmt;
pub mod vds;
pub mod writer;

//! Errors of the profiling crate.

use std::path::PathBuf;

/// Everything that can go wrong while recording, reading or rendering run logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be created.
    #[error("cannot create {0}: {1} (check that the folder is writable, or pass --log FILE elsewhere)")]
    Create(PathBuf, #[source] std::io::Error),
    /// A file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// Writing the log failed (disk full?).
    #[error("writing the run log failed: {0} (is the disk full?)")]
    Write(#[source] std::io::Error),
    /// The background writer thread panicked.
    #[error("the run-log writer thread panicked; the log may be incomplete")]
    WriterPanicked,
    /// A global `tracing` subscriber was already installed.
    #[error("a global tracing subscriber is already installed; install the recorder once, first thing in main")]
    AlreadyInstalled,
    /// The file does not start with a beamline log header.
    #[error("{0} is not a beamline run log (its first line is not a header record); pass the .jsonl files written by `beamline --log FILE ...` or found in the run directory")]
    NotALog(PathBuf),
    /// A line in the middle of a log is not valid.
    #[error("{path}:{line}: not a valid log record: {message}")]
    BadLine {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// Nothing to render.
    #[error("no logs given: pass one or more run logs (see `beamline timeline --help`)")]
    NoLogs,
    /// A workload thread could not be started.
    #[error("cannot start a thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A workload thread panicked.
    #[error("a workload thread panicked")]
    WorkloadPanicked,
    /// Writing JSON output failed.
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
}

//! Errors of scan primitives, and the exit statuses of a scan run.

use std::process::ExitCode;

use crate::control::Interrupted;
use crate::device::DeviceError;

/// A scan primitive failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScanError {
    /// A device refused or failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A target lies outside a motor's soft limits; checked before anything moves.
    #[error(
        "device `{motor}`: target {target} {units} is outside the soft limits [{low}, {high}]; nothing was \
         moved (change the scan, or the limits in the beamline configuration)"
    )]
    SoftLimit {
        /// The motor.
        motor: String,
        /// The refused target.
        target: f64,
        /// Its units.
        units: String,
        /// Low limit.
        low: f64,
        /// High limit.
        high: f64,
    },
    /// An abort was requested.
    #[error(transparent)]
    Aborted(#[from] Interrupted),
    /// The script passed a bad argument.
    #[error("{0}")]
    Argument(String),
    /// A request beyond the engine's size limits (a scan with too many points); refused before anything is
    /// allocated or moved (exit 6).
    #[error("{0}")]
    TooLarge(String),
}

impl ScanError {
    /// The device involved, when there is one.
    pub fn device(&self) -> Option<&str> {
        match self {
            ScanError::Device(d) => Some(&d.device),
            ScanError::SoftLimit { motor, .. } => Some(motor),
            _ => None,
        }
    }
}

/// How a scan run ended; each has its own process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The script ran to the end (exit 0).
    Success,
    /// The script does not parse (exit 3).
    SyntaxError,
    /// The script raised an error (exit 4).
    ScriptError,
    /// A device refused or failed, including soft-limit refusals at run time (exit 5).
    DeviceError,
    /// An engine limit (operations, call depth, sizes) stopped the script (exit 6).
    LimitExceeded,
    /// The preflight dry run found soft-limit violations, so nothing was moved (exit 7).
    LimitViolation,
    /// Aborted by Ctrl-C, the API or the script (exit 130, like a shell's SIGINT).
    Aborted,
    /// Could not start: configuration, files, receiver (exit 1).
    Failed,
}

impl RunStatus {
    /// The process exit status.
    pub fn exit_code(self) -> u8 {
        match self {
            RunStatus::Success => 0,
            RunStatus::Failed => 1,
            RunStatus::SyntaxError => 3,
            RunStatus::ScriptError => 4,
            RunStatus::DeviceError => 5,
            RunStatus::LimitExceeded => 6,
            RunStatus::LimitViolation => 7,
            RunStatus::Aborted => 130,
        }
    }

    /// As an [`ExitCode`].
    pub fn exit(self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }

    /// The word stored in provenance: `success`, `aborted` or `failed`.
    pub fn provenance_word(self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::Aborted => "aborted",
            _ => "failed",
        }
    }
}

//! Provenance stored with every series: the script text and its SHA-256, the `--set` parameters, start and
//! stop times and the exit status.

use std::collections::BTreeMap;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// What produced a scan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Provenance {
    /// Path of the script as given.
    pub script_path: String,
    /// The script text.
    pub script: String,
    /// Lower-case hex SHA-256 of the script text.
    pub script_sha256: String,
    /// `--set key=value` parameters, as given.
    pub parameters: BTreeMap<String, String>,
    /// When the script started, UTC, RFC 3339.
    pub started: String,
    /// `beamline` version.
    pub software: String,
}

impl Provenance {
    /// Provenance of `script` (at `path`) run now with `parameters`.
    pub fn new(path: &str, script: &str, parameters: BTreeMap<String, String>) -> Provenance {
        Provenance {
            script_path: path.to_string(),
            script: script.to_string(),
            script_sha256: sha256_hex(script.as_bytes()),
            parameters,
            started: utc_now(),
            software: format!("beamline {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time, UTC, RFC 3339 with microseconds (`2026-11-22T03:41:50.123456Z`), formatted as the
/// acquisition crate formats every other time in the file.
pub fn utc_now() -> String {
    acquisition::timefmt::rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

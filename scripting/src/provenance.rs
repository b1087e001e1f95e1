//! Provenance stored with every series: the script text and its SHA-256, the `--set` parameters, start and
//! stop times and the exit status.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// The current time, UTC, RFC 3339 with milliseconds (`2026-11-22T03:41:50.123Z`).
pub fn utc_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format_utc(d.as_secs() as i64, d.subsec_millis())
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC.
pub fn format_utc(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(format_utc(1_795_318_910, 0), "2026-11-22T03:41:50.000Z");
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

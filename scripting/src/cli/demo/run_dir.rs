//! The run directory of a demo: one folder that receives every output and every log, and nothing outside
//! it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// The folder of one demo run and the fixed places of its outputs inside it.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates `dir`, or a new `beamline-demo-YYYYMMDD-HHMMSS` folder in the current directory when `dir` is
    /// `None`. An existing folder is accepted only when it is empty, so a demo never mixes its outputs with
    /// another run's.
    pub fn create(dir: Option<&Path>) -> anyhow::Result<RunDir> {
        let root = match dir {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from(format!("beamline-demo-{}", utc_stamp(SystemTime::now()))),
        };
        if root.exists() {
            let mut entries = std::fs::read_dir(&root)
                .with_context(|| format!("{} exists and is not a readable folder", root.display()))?;
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} already holds files: pass a new or empty folder with --out, or leave --out away for a \
                     fresh timestamped one",
                    root.display()
                );
            }
        }
        std::fs::create_dir_all(root.join("logs"))
            .with_context(|| format!("cannot create the run folder {}", root.display()))?;
        let root = std::fs::canonicalize(&root).with_context(|| format!("resolving {}", root.display()))?;
        Ok(RunDir { root })
    }

    /// The folder itself (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where every step's trace log and captured output go (`BEAMLINE_RUN_DIR` of the children).
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The simulated beamline configuration the scan runs with.
    pub fn beamline_config(&self) -> PathBuf {
        self.root.join("beamline.toml")
    }

    /// The receiver's NXtomo file.
    pub fn scan_file(&self) -> PathBuf {
        self.root.join("scan.h5")
    }

    /// The folder of the reconstructed TIFF stack.
    pub fn recon_dir(&self) -> PathBuf {
        self.root.join("recon")
    }

    /// The folder of the live-preview slices.
    pub fn preview_dir(&self) -> PathBuf {
        self.root.join("preview")
    }

    /// The timeline page of the whole run.
    pub fn timeline(&self) -> PathBuf {
        self.root.join("timeline.html")
    }

    /// The machine-readable summary.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }

    /// `path` relative to the current directory when it is below it (for short messages), else as is.
    pub fn show(&self, path: &Path) -> String {
        let cwd = std::env::current_dir().ok();
        match cwd.as_deref().and_then(|c| path.strip_prefix(c).ok()) {
            Some(rel) => rel.display().to_string(),
            None => path.display().to_string(),
        }
    }
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        // 2026-11-22 03:41:09 UTC
        assert_eq!(utc_stamp(UNIX_EPOCH + std::time::Duration::from_secs(1_795_318_869)), "20261122-034109");
        // A leap day.
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn refuses_a_folder_that_already_holds_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"").unwrap();
        let e = RunDir::create(Some(dir.path())).unwrap_err();
        assert!(e.to_string().contains("already holds files"), "{e}");
        let fresh = dir.path().join("run");
        let run = RunDir::create(Some(&fresh)).unwrap();
        assert!(run.logs().is_dir());
    }
}

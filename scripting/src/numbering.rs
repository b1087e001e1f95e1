//! Scan names unique per day, as SPEC users expect scan numbers to be: a counter persisted in the output
//! folder (`.beamline-scan-numbers`, one line `YYYY-MM-DD N`), taken under an advisory lock so that two runs
//! writing into one folder never get the same number. The counter restarts at 1 each (UTC) day and the date
//! is part of the name (`tomo_scan_20261202_004`), so names never repeat in a folder.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The counter file inside the output folder.
pub const COUNTER_FILE: &str = ".beamline-scan-numbers";

/// The counter could not be read or advanced.
#[derive(Debug, thiserror::Error)]
#[error("scan numbering: {path}: {source} (check that the output folder is writable)")]
pub struct NumberingError {
    /// The counter file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// Today's UTC date as `YYYY-MM-DD`.
pub fn today() -> String {
    profiling::clock::Civil::from_unix_ns(profiling::clock::unix_ns()).date()
}

/// Takes the next scan number of `date` (`YYYY-MM-DD`) in `dir`: 1 for the first scan of a day, then 2, 3,
/// ... across runs. The folder is created if needed.
pub fn next_number(dir: &Path, date: &str) -> Result<u32, NumberingError> {
    let path = dir.join(COUNTER_FILE);
    let err = |source: std::io::Error| NumberingError { path: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(err)?;
    // SAFETY: flock on a file descriptor we own; the lock is released when `f` is closed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(err)?;
    let last = parse(&text).filter(|(d, _)| d == date).map_or(0, |(_, n)| n);
    let next = last.saturating_add(1);
    f.set_len(0).map_err(err)?;
    f.seek(SeekFrom::Start(0)).map_err(err)?;
    f.write_all(format!("{date} {next}\n").as_bytes()).map_err(err)?;
    f.sync_data().map_err(err)?;
    Ok(next)
}

/// The name of scan number `n` of kind `kind` on `date`: `kind_YYYYMMDD_NNN`.
pub fn scan_name(kind: &str, date: &str, n: u32) -> String {
    format!("{kind}_{}_{n:03}", date.replace('-', ""))
}

/// `YYYY-MM-DD N` → (date, N); anything else (an empty or foreign file) reads as no count.
fn parse(text: &str) -> Option<(String, u32)> {
    let (d, n) = text.trim().split_once(' ')?;
    Some((d.to_string(), n.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_continue_across_calls_and_restart_each_day() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_number(dir.path(), "2026-12-02").unwrap(), 1);
        assert_eq!(next_number(dir.path(), "2026-12-02").unwrap(), 2);
        assert_eq!(next_number(dir.path(), "2026-12-02").unwrap(), 3);
        assert_eq!(next_number(dir.path(), "2026-12-03").unwrap(), 1);
        assert_eq!(scan_name("tomo_scan", "2026-12-03", 1), "tomo_scan_20261203_001");
    }

    #[test]
    fn a_damaged_counter_starts_again_at_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(COUNTER_FILE), "not a counter").unwrap();
        assert_eq!(next_number(dir.path(), "2026-12-02").unwrap(), 1);
    }

    #[test]
    fn concurrent_takers_never_share_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let taken: Vec<u32> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| (0..25).map(|_| next_number(dir.path(), "2026-12-02").unwrap()).collect::<Vec<_>>())
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = taken.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 200);
        assert_eq!(sorted, (1..=200).collect::<Vec<_>>());
    }
}

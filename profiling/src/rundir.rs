//! Where run logs go and how many stay (the run directory), the recording of one process from start to
//! exit ([`Recording`]), and the folder of one demo run that holds every output and log of it
//! ([`RunFolder`]).
//!
//! The run directory is `$BEAMLINE_RUN_DIR`, else `$XDG_STATE_HOME/beamline/runs`, else
//! `~/.local/state/beamline/runs` ([`default_dir`]). Each process records into a new file there, named
//! `YYYYMMDDTHHMMSSZ-<command>-<pid>.jsonl` (UTC), and before doing so deletes the oldest such files beyond
//! the newest [`keep_runs`] (`$BEAMLINE_RUN_KEEP`, default 1000, 0 keeps all). Nothing else in the folder
//! is touched.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::clock;
use crate::{Error, Guard, Outcome, RunInfo, Totals};

/// Default folder for run logs: `$BEAMLINE_RUN_DIR`, else `$XDG_STATE_HOME/beamline/runs`, else
/// `~/.local/state/beamline/runs`; `None` when none of these variables is set.
pub fn default_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("BEAMLINE_RUN_DIR")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("beamline/runs")))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/beamline/runs")))
}

/// How many logs the run directory keeps: `$BEAMLINE_RUN_KEEP` (0 keeps all), default 1000.
pub fn keep_runs() -> usize {
    std::env::var("BEAMLINE_RUN_KEEP").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

/// Whether `name` is the name of a log this module writes (`YYYYMMDDTHHMMSSZ-....jsonl`).
fn is_run_log_name(name: &str) -> bool {
    let b = name.as_bytes();
    name.ends_with(".jsonl")
        && b.len() > 17
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && &b[15..17] == b"Z-"
}

/// Deletes the oldest run logs in `dir` beyond the newest `keep - 1` (making room for this run's log);
/// `keep == 0` keeps all. Only files named like the logs this module writes are touched; files that cannot
/// be listed or deleted are left alone.
pub fn prune(dir: &Path, keep: usize) {
    if keep == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_run_log_name))
        .collect();
    if logs.len() < keep {
        return;
    }
    logs.sort();
    for old in &logs[..=logs.len() - keep] {
        let _ = std::fs::remove_file(old);
    }
}

/// The subcommand named on a command line, e.g. `acquire` or `bench trace` (skipping options and the
/// values of the global options `--log` and `--trace`).
pub fn command_name(argv: &[String]) -> String {
    let mut words = Vec::new();
    let mut skip = false;
    for a in argv.iter().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if a == "--log" || a == "--trace" {
            skip = true;
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        words.push(a.as_str());
        if !matches!(words[0], "bench" | "runs") || words.len() == 2 {
            break;
        }
    }
    if words.is_empty() {
        "beamline".into()
    } else {
        words.join(" ")
    }
}

/// This process's run log, recorded from [`Recording::start`] to [`Recording::finish`].
pub struct Recording {
    guard: Option<Guard>,
    not_recording: Option<Error>,
    started: Instant,
}

/// How a [`Recording`] ended.
#[derive(Debug)]
pub struct RecordingEnd {
    /// The log file, when one was written.
    pub path: Option<PathBuf>,
    /// What the recorder wrote and dropped, or why the log is incomplete (`None`: nothing was recorded).
    pub totals: Option<Result<Totals, Error>>,
    /// Whether the run failed.
    pub failed: bool,
    /// Wall time from start to finish.
    pub elapsed: Duration,
}

impl RecordingEnd {
    /// Whether the log is worth naming to the operator: the run failed or took 2 s or more.
    pub fn worth_showing(&self) -> bool {
        self.failed || self.elapsed >= Duration::from_secs(2)
    }
}

impl Recording {
    /// Starts recording every span of this process (installed as the global subscriber) into `log`, or
    /// into a new file in [`default_dir`] after [`prune`]. `argv` is the command line (it names the
    /// command in the log and the file), `version` the program's. Never fails: when no log can be written
    /// the process runs without one and [`Recording::not_recording`] says why.
    pub fn start(log: Option<&Path>, argv: Vec<String>, version: &str) -> Recording {
        let command = command_name(&argv);
        let path = match log {
            Some(p) => Some(p.to_path_buf()),
            None => default_dir().map(|d| {
                prune(&d, keep_runs());
                let stamp = clock::Civil::from_unix_ns(clock::unix_ns()).compact();
                d.join(format!("{stamp}-{}-{}.jsonl", command.replace(' ', "-"), std::process::id()))
            }),
        };
        let info = RunInfo { command, argv, version: version.into() };
        let (guard, not_recording) = match path.map(|p| crate::install(&p, &info)) {
            Some(Ok(g)) => (Some(g), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        Recording { guard, not_recording, started: Instant::now() }
    }

    /// Why no log is being recorded although one was asked for (`None` when recording, or when no run
    /// directory is known at all).
    pub fn not_recording(&self) -> Option<&Error> {
        self.not_recording.as_ref()
    }

    /// The log being written.
    pub fn path(&self) -> Option<&Path> {
        self.guard.as_ref().and_then(Guard::path)
    }

    /// Writes the footer (exit status, error text, dropped records) and closes the log.
    pub fn finish(self, outcome: &Outcome) -> RecordingEnd {
        let path = self.path().map(Path::to_path_buf);
        let failed = *outcome != Outcome::Success;
        let totals = self.guard.map(|g| g.finish(outcome));
        RecordingEnd { path, totals, failed, elapsed: self.started.elapsed() }
    }
}

/// Why a [`RunFolder`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RunFolderError {
    /// The folder exists but cannot be listed.
    #[error("{0} exists and is not a readable folder: {1}")]
    Unreadable(PathBuf, #[source] std::io::Error),
    /// The folder already holds files of something else.
    #[error(
        "{0} already holds files: pass a new or empty folder with --out, or leave --out away for a fresh \
         timestamped one"
    )]
    NotEmpty(PathBuf),
    /// The folder (or its `logs/`) cannot be created or resolved.
    #[error("cannot create the run folder {0}: {1}")]
    Create(PathBuf, #[source] std::io::Error),
}

/// The folder of one demo run and the fixed places of its outputs inside it: everything the run writes
/// goes here, and nothing outside it.
#[derive(Debug, Clone)]
pub struct RunFolder {
    root: PathBuf,
}

impl RunFolder {
    /// Creates `dir`, or a new `beamline-demo-YYYYMMDDTHHMMSSZ` (UTC) folder in the current directory when
    /// `dir` is `None`, with its `logs/`. An existing folder is accepted only when it is empty, so a run
    /// never mixes its outputs with another run's.
    pub fn create(dir: Option<&Path>) -> Result<RunFolder, RunFolderError> {
        let root = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let stamp = clock::Civil::from_unix_ns(clock::unix_ns()).compact();
                PathBuf::from(format!("beamline-demo-{stamp}"))
            }
        };
        if root.exists() {
            let mut entries = std::fs::read_dir(&root).map_err(|e| RunFolderError::Unreadable(root.clone(), e))?;
            if entries.next().is_some() {
                return Err(RunFolderError::NotEmpty(root));
            }
        }
        std::fs::create_dir_all(root.join("logs")).map_err(|e| RunFolderError::Create(root.clone(), e))?;
        let root = std::fs::canonicalize(&root).map_err(|e| RunFolderError::Create(root.clone(), e))?;
        Ok(RunFolder { root })
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

    /// The folder of the live preview slices.
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

    /// The trace logs (`*.jsonl`) in [`RunFolder::logs`], sorted.
    pub fn trace_logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.logs())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
        logs.sort();
        logs
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_keeps_the_newest_logs_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("2026112{i}T000000Z-acquire-1.jsonl")), "").unwrap();
        }
        std::fs::write(dir.path().join("notes.jsonl"), "").unwrap();
        prune(dir.path(), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        left.sort();
        assert_eq!(left, ["20261123T000000Z-acquire-1.jsonl", "20261124T000000Z-acquire-1.jsonl", "notes.jsonl"]);
    }

    #[test]
    fn command_names() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(command_name(&v("beamline --log x.jsonl acquire --frames 3")), "acquire");
        assert_eq!(command_name(&v("beamline bench --json trace")), "bench trace");
        assert_eq!(command_name(&v("beamline --trace frames bench trace --pipeline-only")), "bench trace");
        assert_eq!(command_name(&v("beamline runs report d")), "runs report");
        assert_eq!(command_name(&v("beamline")), "beamline");
    }

    #[test]
    fn a_run_folder_must_be_new_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"").unwrap();
        let e = RunFolder::create(Some(dir.path())).unwrap_err();
        assert!(matches!(e, RunFolderError::NotEmpty(_)), "{e}");
        assert!(e.to_string().contains("already holds files"), "{e}");
        let fresh = dir.path().join("run");
        let run = RunFolder::create(Some(&fresh)).unwrap();
        assert!(run.logs().is_dir());
        assert!(run.root().is_absolute());
        std::fs::write(run.logs().join("b.jsonl"), "").unwrap();
        std::fs::write(run.logs().join("a.jsonl"), "").unwrap();
        std::fs::write(run.logs().join("a.stdout"), "").unwrap();
        assert_eq!(run.trace_logs(), vec![run.logs().join("a.jsonl"), run.logs().join("b.jsonl")]);
    }
}

//! The run directory of a demo: one folder that receives every output and every log, and nothing outside
//! it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The folder of one demo run and the fixed places of its outputs inside it.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates `dir`, or a new `beamline-demo-YYYYMMDDTHHMMSSZ` folder in the current directory when `dir` is
    /// `None`. An existing folder is accepted only when it is empty, so a demo never mixes its outputs with
    /// another run's.
    pub fn create(dir: Option<&Path>) -> anyhow::Result<RunDir> {
        let root = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let stamp = profiling::clock::Civil::from_unix_ns(profiling::clock::unix_ns()).compact();
                PathBuf::from(format!("beamline-demo-{stamp}"))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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

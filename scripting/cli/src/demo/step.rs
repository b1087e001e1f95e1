//! One step of the demo: a `beamline` subcommand run as a child process of this very binary, with its
//! working directory, its trace log (`BEAMLINE_RUN_DIR`) and its captured output all inside the run folder.
//!
//! Running steps as processes keeps them decoupled exactly as a facility would run them (each leaves its
//! own log, the timeline shows one process group per step) and a failing step cannot take the driver down
//! with it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use profiling::rundir::RunFolder as RunDir;

/// A step ready to start.
#[derive(Debug)]
pub struct Step {
    name: String,
    args: Vec<String>,
    cmd: Command,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Step {
    /// `beamline ARGS...` named `name` (the names of its output files in `logs/`).
    pub fn new(run: &RunDir, name: &str, args: &[String]) -> anyhow::Result<Step> {
        let exe = std::env::current_exe().context("cannot locate the beamline binary to run the steps")?;
        let mut cmd = Command::new(exe);
        cmd.args(args).current_dir(run.root()).env("BEAMLINE_RUN_DIR", run.logs()).stdin(Stdio::null());
        Ok(Step {
            name: name.to_string(),
            args: args.to_vec(),
            cmd,
            stdout: run.logs().join(format!("{name}.stdout")),
            stderr: run.logs().join(format!("{name}.stderr")),
        })
    }

    /// Starts the step in the background.
    pub fn spawn(mut self) -> anyhow::Result<Running> {
        let out = File::create(&self.stdout).with_context(|| format!("creating {}", self.stdout.display()))?;
        let err = File::create(&self.stderr).with_context(|| format!("creating {}", self.stderr.display()))?;
        let child = self
            .cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting `beamline {}`", self.args.join(" ")))?;
        Ok(Running { step: self, child: Some(child), started: Instant::now() })
    }

    /// Runs the step to its end.
    pub fn run(self) -> anyhow::Result<Finished> {
        self.spawn()?.wait()
    }
}

/// A step that has been started. Dropping it kills the child, so a failing demo leaves no process behind.
#[derive(Debug)]
pub struct Running {
    step: Step,
    child: Option<Child>,
    started: Instant,
}

/// A step that ended successfully.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Its name.
    pub name: String,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Wall time from start to exit.
    pub elapsed: Duration,
}

impl Running {
    /// Whether the child has exited (without reaping an error: [`Running::wait`] reports it).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) | None => true,
            Some(Ok(None)) => false,
            Some(Err(_)) => true,
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for the end; an unsuccessful exit is an error quoting the end of the step's stderr.
    pub fn wait(mut self) -> anyhow::Result<Finished> {
        let mut child = self.child.take().context("step already reaped")?;
        let status = child.wait().with_context(|| format!("waiting for step {}", self.step.name))?;
        self.finish(status)
    }

    /// Waits at most `limit`, then kills the child and reports that it did not finish.
    pub fn wait_timeout(mut self, limit: Duration) -> anyhow::Result<Finished> {
        while !self.has_exited() {
            if self.started.elapsed() > limit {
                anyhow::bail!(
                    "step {} did not finish within {} s and was stopped; its output is in {}",
                    self.step.name,
                    limit.as_secs(),
                    self.step.stderr.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait()
    }

    fn finish(&mut self, status: ExitStatus) -> anyhow::Result<Finished> {
        let stdout = std::fs::read_to_string(&self.step.stdout).unwrap_or_default();
        let stderr = std::fs::read_to_string(&self.step.stderr).unwrap_or_default();
        if !status.success() {
            return Err(failure(&self.step, status, &stderr));
        }
        Ok(Finished { name: self.step.name.clone(), stdout, elapsed: self.started.elapsed() })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The error for a failed step: which command, its exit status, the last lines of its stderr, and where
/// the rest is.
fn failure(step: &Step, status: ExitStatus, stderr: &str) -> anyhow::Error {
    let command = format!("beamline {}", step.args.join(" "));
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
    anyhow::anyhow!(
        "step {} failed ({status}): {command}\n{}\n(full output: {} and {})",
        step.name,
        tail.join("\n"),
        step.stderr.display(),
        step.stdout.display()
    )
}

/// Path as a command-line argument.
pub fn arg(p: &Path) -> String {
    p.display().to_string()
}

//! `beamline`: one binary, a subcommand for every role.
//!
//! # Why a package of its own
//!
//! The binary lives in `scripting/cli/`, a small package nested in the scan engine's folder and a member of
//! the workspace, not in the `scripting` library. Cargo resolves dependencies per package, so a binary
//! target inside `scripting` would make every user of the scan engine pull what the command line needs
//! (clap, indicatif, the reconstruction, profiling and their own dependencies). A nested package keeps the
//! library's dependency list to what the engine uses, needs no feature flags to get right (a default `cli`
//! feature would be switched on again by any crate that forgets `default-features = false`), and keeps
//! `target/release/beamline` where it always was.
//!
//! # The rule
//!
//! A command module holds its clap types, calls one library function, and prints. Anything a test or
//! another program could want (a file format, a wire bridge, a run folder, an orchestration) is a library
//! call in the crate that owns it, with a typed error; this crate only turns arguments into that call, shows
//! progress and words the outcome. `anyhow` lives here and nowhere else.
//!
//! Each module exposes a `Command` enum (flattened into the top-level subcommands) and, where it has
//! benchmarks, a `Bench` enum (flattened under `beamline bench`). Each `run` returns the process exit code.

mod acquire;
mod demo;
mod gpu;
mod inspect;
mod keys;
mod profile;
mod recon;
mod scaleout;
mod scan;

use clap::{Parser, Subcommand};

/// Synchrotron tomography from the detector to a reconstructed volume.
#[derive(Debug, Parser)]
#[command(
    name = "beamline",
    version,
    about = "Synchrotron tomography from the detector to a reconstructed volume.",
    long_about = "Synchrotron tomography from the detector to a reconstructed volume: simulate or receive detector \
                  frames over ZeroMQ into NeXus NXtomo files, script scans in Rhai, reconstruct on CPU or CUDA \
                  GPUs, and see where every run spent its time.\n\nStart with `beamline demo`.",
    propagate_version = true
)]
struct Cli {
    /// Record this run's trace log (spans of every thread) into FILE instead of a new file in the run
    /// directory ($BEAMLINE_RUN_DIR, else $XDG_STATE_HOME/beamline/runs, else ~/.local/state/beamline/runs).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<std::path::PathBuf>,
    /// What the run log records: `stages` (default: per-stage spans, every wait, counters) or `frames`
    /// (per-frame spans too, a few hundred ns each). Same as $BEAMLINE_TRACE; child processes inherit it.
    #[arg(long, global = true, value_name = "DETAIL", value_parser = parse_detail)]
    trace: Option<profiling::Detail>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process and matched at once: the size of the largest command's arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Acquire(acquire::Command),
    #[command(flatten)]
    Recon(recon::Command),
    #[command(flatten)]
    Gpu(gpu::Command),
    #[command(flatten)]
    Scan(scan::Command),
    #[command(flatten)]
    Profile(profile::Command),
    #[command(flatten)]
    Demo(demo::Command),
    #[command(flatten)]
    ScaleOut(scaleout::Command),
    /// One-screen summary of an NXtomo file: shape, type, filters, keys, angles and coverage, missing frames,
    /// status, provenance, energy/distance/pixel size, and whether `beamline recon` would accept it
    /// (exit 1 when incomplete).
    ///
    /// Example: beamline inspect scan.h5
    Inspect(inspect::Command),
    /// CURVE keys: who may send to a receiver (`receive --curve-allow`), and whom a sender trusts
    /// (`simulate --curve-server`).
    Keys {
        #[command(subcommand)]
        which: keys::Command,
    },
    /// Benchmarks: print figures, and with --json one JSON object on the last line.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    #[command(flatten)]
    Acquire(acquire::Bench),
    #[command(flatten)]
    Recon(recon::Bench),
    #[command(flatten)]
    Scan(scan::Bench),
    #[command(flatten)]
    Profile(profile::Bench),
    #[command(flatten)]
    Gpu(gpu::Bench),
}

/// Counts the bytes the process holds, so a scan script's memory is bounded (`[engine] max_memory_mb`).
#[global_allocator]
static ALLOC: scripting::memory::CountingAllocator = scripting::memory::CountingAllocator;

/// The command-line definition (every subcommand's options), for reading other runs' command lines.
pub(crate) fn cli_command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

fn parse_detail(s: &str) -> Result<profiling::Detail, String> {
    profiling::Detail::parse(s).ok_or_else(|| format!("`{s}` is not `stages` or `frames`"))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(detail) = cli.trace {
        // Before any thread starts: the recorder below and every child process read it.
        let v = if detail == profiling::Detail::Frames { "frames" } else { "stages" };
        std::env::set_var(profiling::recorder::TRACE_ENV, v);
    }
    // `beamline demo` records into its own run folder (nothing may land outside it) unless `--log` says where.
    let demo_records_itself = matches!(cli.command, Command::Demo(_)) && cli.log.is_none();
    let recording = (!demo_records_itself).then(|| profile::start_recording(cli.log.as_deref()));
    let result = match cli.command {
        Command::Acquire(c) => c.run(),
        Command::Recon(c) => c.run(),
        Command::Gpu(c) => c.run(),
        Command::Scan(c) => c.run(),
        Command::Profile(c) => c.run(),
        Command::Demo(c) => c.run(),
        Command::ScaleOut(c) => c.run(),
        Command::Inspect(c) => c.run(),
        Command::Keys { which } => which.run(),
        Command::Bench { which } => match which {
            Bench::Acquire(b) => b.run(),
            Bench::Recon(b) => b.run(),
            Bench::Scan(b) => b.run(),
            Bench::Profile(b) => b.run(),
            Bench::Gpu(b) => b.run(),
        },
    };
    let code = match &result {
        Ok(code) => *code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    if let Some(recording) = recording {
        profile::finish_recording(recording, &result);
    }
    code
}

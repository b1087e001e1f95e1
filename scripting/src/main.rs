//! `beamline`: one binary, a subcommand for every role.

use clap::{Parser, Subcommand};

use scripting::cli;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Acquire(cli::acquire::Command),
    #[command(flatten)]
    Recon(cli::recon::Command),
    #[command(flatten)]
    Gpu(cli::gpu::Command),
    #[command(flatten)]
    Scan(cli::scan::Command),
    #[command(flatten)]
    Profile(cli::profile::Command),
    #[command(flatten)]
    Demo(cli::demo::Command),
    /// Benchmarks: print figures, and with --json one JSON object on the last line.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    #[command(flatten)]
    Acquire(cli::acquire::Bench),
    #[command(flatten)]
    Recon(cli::recon::Bench),
    #[command(flatten)]
    Scan(cli::scan::Bench),
    #[command(flatten)]
    Profile(cli::profile::Bench),
    #[command(flatten)]
    Gpu(cli::gpu::Bench),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `beamline demo` records into its own run folder (nothing may land outside it) unless `--log` says where.
    let demo_records_itself = matches!(cli.command, Command::Demo(_)) && cli.log.is_none();
    let recording = (!demo_records_itself).then(|| cli::profile::Recording::start(cli.log.as_deref()));
    let result = match cli.command {
        Command::Acquire(c) => c.run(),
        Command::Recon(c) => c.run(),
        Command::Gpu(c) => c.run(),
        Command::Scan(c) => c.run(),
        Command::Profile(c) => c.run(),
        Command::Demo(c) => c.run(),
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
        recording.finish(&result);
    }
    code
}

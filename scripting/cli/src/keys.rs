//! `beamline keys new NAME`: a CURVE key pair for `receive --curve-secret` / `simulate --curve-secret`
//! ([`acquisition::curve::write_keypair`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// `beamline keys ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a CURVE key pair: NAME.key (public: give it to the other end) and NAME.key_secret (mode 0600:
    /// keep it). The files are ZeroMQ certificates, as pyzmq's `zmq.auth` writes and reads them.
    ///
    /// Example: beamline keys new receiver && beamline keys new detector
    New {
        /// Name of the pair (the files are DIR/NAME.key and DIR/NAME.key_secret; neither is overwritten).
        name: String,
        /// Folder for the files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::New { name, dir } => {
                let (public, secret) = acquisition::curve::write_keypair(&dir, &name)?;
                let key = acquisition::curve::z85(&acquisition::curve::read_public(&public)?);
                println!("public key {key}\n  {} (give to the other end)", public.display());
                println!("  {} (secret, mode 0600)", secret.display());
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

//! `beamline stitch`: one master NXtomo file over the files of several receivers (see
//! [`acquisition::vds`]).

use std::process::ExitCode;

use anyhow::Context;

use acquisition::vds;

use super::StitchArgs;

/// Reads what every source claims, checks the claims against the files, writes the master.
pub fn run(args: StitchArgs) -> anyhow::Result<ExitCode> {
    let mut sources = Vec::with_capacity(args.sources.len());
    let mut n_frames: Option<(u64, std::path::PathBuf)> = None;
    for path in &args.sources {
        let (rows, source) = vds::read_claims(path)?;
        match &n_frames {
            None => n_frames = Some((rows, path.clone())),
            Some((n, first)) if *n != rows => anyhow::bail!(
                "{} is a series of {rows} frames but {} is one of {n}: these files are not from the same series",
                path.display(),
                first.display()
            ),
            Some(_) => {}
        }
        sources.push(source);
    }
    let (n_frames, _) = n_frames.context("no source files given")?;
    let held: Vec<usize> = sources.iter().map(|s| s.frames.len()).collect();
    let plan = vds::StitchPlan::new(n_frames, sources)?;
    let layout = vds::verify(&plan)?;
    vds::write_master(&args.output, &plan, &layout)?;
    let per_file: Vec<String> = args.sources.iter().zip(&held).map(|(p, n)| format!("{} ({n})", p.display())).collect();
    println!(
        "{}: {n_frames} frames of {}x{} in frame order, {} virtual mapping(s) over {} files: {}",
        args.output.display(),
        layout.frame_shape[0],
        layout.frame_shape[1],
        plan.mappings.len(),
        held.len(),
        per_file.join(", ")
    );
    println!("next: beamline recon {} -o recon/", args.output.display());
    Ok(ExitCode::SUCCESS)
}

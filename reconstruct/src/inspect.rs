//! `beamline inspect FILE`: a one-screen summary of an NXtomo file — shape, sample type, chunking and
//! filters, image keys, angles and coverage, missing frames, the receiver's status and provenance, energy,
//! distance and pixel size — ending with the same completeness verdict `beamline recon` applies
//! ([`crate::completeness::ScanCheck`]).

use std::fmt::Write as _;
use std::path::Path;

use acquisition::nexus::{acq, NxTomoFile};

use crate::completeness::{ranges_text, ScanCheck};
use crate::reader::ReadError;

/// Where energy, distance and pixel size are looked for (first match wins): label and candidate paths.
pub const PHYSICS: &[(&str, &[&str])] = &[
    (
        "energy",
        &["/entry/instrument/source/energy", "/entry/beam/incident_energy", "/entry/instrument/monochromator/energy"],
    ),
    ("distance", &["/entry/instrument/detector/distance", "/entry/instrument/detector/sample_distance"]),
    ("x pixel size", &["/entry/instrument/detector/x_pixel_size"]),
    ("y pixel size", &["/entry/instrument/detector/y_pixel_size"]),
];

fn scalar_with_units(file: &hdf5::File, path: &str) -> Option<String> {
    let ds = file.dataset(path).ok()?;
    let v: f64 = ds.read_raw::<f64>().ok()?.first().copied()?;
    let units = ds
        .attr("units")
        .ok()
        .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>().ok())
        .map(|u| format!(" {}", u.as_str()))
        .unwrap_or_default();
    Some(format!("{v}{units} ({path})"))
}

/// The summary text of `path` (several lines, each `label: value`).
pub fn summary(path: &Path) -> Result<String, ReadError> {
    let file = NxTomoFile::open(path)?;
    let check = ScanCheck::of_file(&file);
    let [n, rows, cols] = file.shape();
    let mut s = String::new();
    let ds = file.data();
    let dtype = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map(|t| format!("{t:?}"))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let _ = writeln!(s, "file: {}", path.display());
    let _ = writeln!(s, "format: NXtomo");
    let _ = writeln!(s, "data: {} [{n} frames x {rows} rows x {cols} columns] {dtype}", file.data_path());
    let filters: Vec<String> = ds.filters().iter().map(|f| format!("{f:?}")).collect();
    let chunk = ds.chunk().map(|c| format!("{c:?}")).unwrap_or_else(|| "contiguous".into());
    let _ = writeln!(
        s,
        "storage: chunks {chunk}, filters {}",
        if filters.is_empty() { "none".to_string() } else { filters.join(", ") }
    );
    let _ = writeln!(
        s,
        "image keys ({}): {} projections, {} flats, {} darks, {} invalid",
        file.key_path(),
        check.projections,
        check.flats,
        check.darks,
        check.invalid
    );
    match (check.angle_min_max, check.step_deg) {
        (Some((lo, hi)), step) => {
            let _ = writeln!(
                s,
                "angles ({}): {lo:.3} to {hi:.3} degrees, step {}, coverage {:.2} of {:.1} degrees{}",
                file.angle_path(),
                step.map_or("-".into(), |d| format!("{d:.4}")),
                check.coverage_deg,
                check.declared_deg,
                if check.declared_in_file { " declared" } else { " (none declared; parallel beam needs 180)" }
            );
        }
        _ => {
            let _ = writeln!(s, "angles ({}): no projection has an angle", file.angle_path());
        }
    }
    let gaps: Vec<String> = check.gaps.iter().take(8).map(|(a, b)| format!("{a:.2}..{b:.2}")).collect();
    let _ = writeln!(s, "angular gaps: {}", if gaps.is_empty() { "none".into() } else { gaps.join(", ") });
    let _ = writeln!(
        s,
        "missing frames: {}",
        if check.invalid_frames.is_empty() { "none".into() } else { ranges_text(&check.invalid_frames) }
    );
    let received = match (check.frames_received, check.frames_expected) {
        (Some(r), Some(e)) => format!(", {r} of {e} frames received"),
        _ => String::new(),
    };
    let _ = writeln!(s, "status: {}{received}", check.status.as_deref().unwrap_or("not recorded"));
    let software = file.acquisition_str(acq::SOFTWARE);
    let command = file.acquisition_str(acq::COMMAND_LINE);
    let _ = writeln!(
        s,
        "provenance: {}{}",
        software.as_deref().unwrap_or("not recorded"),
        command.map(|c| format!(" ({c})")).unwrap_or_default()
    );
    for (label, paths) in PHYSICS {
        let v = paths.iter().find_map(|p| scalar_with_units(file.file(), p));
        let _ = writeln!(s, "{label}: {}", v.as_deref().unwrap_or("not recorded"));
    }
    if check.is_complete() {
        let _ = writeln!(s, "verdict: complete");
    } else {
        let _ = writeln!(
            s,
            "verdict: INCOMPLETE: {}; `beamline recon` refuses it without --allow-incomplete",
            check.problems.join("; ")
        );
    }
    Ok(s)
}

//! `beamline inspect FILE`: a one-screen summary of an NXtomo or DXchange file — shape, sample type, chunking and
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
        &[
            "/entry/instrument/source/energy",
            "/entry/beam/incident_energy",
            "/entry/instrument/monochromator/energy",
            "/measurement/instrument/monochromator/energy",
        ],
    ),
    (
        "distance",
        &[
            "/entry/instrument/detector/distance",
            "/entry/instrument/detector/sample_distance",
            "/measurement/instrument/detection_system/objective/camera_distance",
        ],
    ),
    ("x pixel size", X_PIXEL_SIZE),
    (
        "y pixel size",
        &[
            "/entry/instrument/detector/y_pixel_size",
            "/measurement/instrument/detection_system/objective/resolution",
            "/measurement/instrument/detector/pixel_size_y",
        ],
    ),
];

/// Where the (effective) pixel size is looked for: NXtomo's `x_pixel_size`; DXchange's objective
/// resolution (the pixel size at the sample), then the detector's `pixel_size_x`.
pub const X_PIXEL_SIZE: &[&str] = &[
    "/entry/instrument/detector/x_pixel_size",
    "/measurement/instrument/detection_system/objective/resolution",
    "/measurement/instrument/detector/pixel_size_x",
];

/// The pixel size the file records ([`X_PIXEL_SIZE`]) and its unit (`unknown` when the data set has no
/// `units` attribute).
pub fn pixel_size(path: &Path) -> Option<(f64, String)> {
    let file = hdf5::File::open(path).ok()?;
    X_PIXEL_SIZE.iter().find_map(|p| {
        let ds = file.dataset(p).ok()?;
        let v: f64 = ds.read_raw::<f64>().ok()?.first().copied()?;
        let units = ds
            .attr("units")
            .ok()
            .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>().ok())
            .map(|u| u.as_str().to_string())
            .unwrap_or_else(|| "unknown".into());
        (v.is_finite() && v > 0.0).then_some((v, units))
    })
}

/// The filters of `ds` in words: name, id, and whether `beamline recon` decodes them.
pub fn filters_text(ds: &hdf5::Dataset) -> String {
    let fast = crate::chunks::RawChunks::plan(ds);
    let filters: Vec<String> = ds
        .filters()
        .iter()
        .map(|f| {
            let id = f.id();
            let how = if fast.is_some() {
                "decoded by beamline"
            } else if f.is_available() {
                "decoded by HDF5"
            } else {
                "NOT decodable here: beamline recon refuses it"
            };
            match f {
                hdf5::filters::Filter::User(_, cd) => {
                    format!("{} ({id}, cd_values {cd:?}; {how})", crate::chunks::filter_name(id))
                }
                other => format!("{other:?} ({id}; {how})"),
            }
        })
        .collect();
    if filters.is_empty() {
        "none".into()
    } else {
        filters.join(", ")
    }
}

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
    if path.exists() && crate::reader::layout_of(path) == crate::reader::Layout::DXchange {
        return summary_dxchange(path);
    }
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
    let chunk = ds.chunk().map(|c| format!("{c:?}")).unwrap_or_else(|| "contiguous".into());
    let _ = writeln!(s, "storage: chunks {chunk}, filters {}", filters_text(ds));
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

/// [`summary`] of a DXchange file: the same lines, from the reader's view of the file.
fn summary_dxchange(path: &Path) -> Result<String, ReadError> {
    use crate::reader::{dxchange, NxTomo};
    let file = NxTomo::open(path)?;
    let h5 = hdf5::File::open(path).map_err(|e| {
        ReadError::File(acquisition::nexus::NexusError::Open { path: path.to_path_buf(), reason: e.to_string() })
    })?;
    let check = file.check();
    let mut s = String::new();
    let ds = file.data();
    let dtype = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map(|t| format!("{t:?}"))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let [rows, cols] = file.detector();
    let _ = writeln!(s, "file: {}", path.display());
    let _ = writeln!(s, "format: DXchange");
    let _ =
        writeln!(s, "data: {} [{} projections x {rows} rows x {cols} columns] {dtype}", dxchange::DATA, ds.shape()[0]);
    let chunk = ds.chunk().map(|c| format!("{c:?}")).unwrap_or_else(|| "contiguous".into());
    let _ = writeln!(s, "storage: chunks {chunk}, filters {}", filters_text(ds));
    let (fb, _, d) = file.reference_counts();
    let _ = writeln!(s, "references: {fb} flats ({}), {d} darks ({})", dxchange::WHITE, dxchange::DARK);
    let units = h5
        .dataset(dxchange::THETA)
        .ok()
        .and_then(|t| t.attr("units").ok())
        .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>().ok())
        .map(|u| format!("units \"{}\"", u.as_str()))
        .unwrap_or_else(|| "no units attribute: degrees, as tomocupy and dxchange store them".into());
    match (check.angle_min_max, check.step_deg) {
        (Some((lo, hi)), step) => {
            let _ = writeln!(
                s,
                "angles ({}, {units}): {lo:.3} to {hi:.3} degrees, step {}, coverage {:.2} of {:.1} degrees",
                dxchange::THETA,
                step.map_or("-".into(), |d| format!("{d:.4}")),
                check.coverage_deg,
                check.declared_deg,
            );
        }
        _ => {
            let _ = writeln!(s, "angles ({}): no projection has an angle", dxchange::THETA);
        }
    }
    let gaps: Vec<String> = check.gaps.iter().take(8).map(|(a, b)| format!("{a:.2}..{b:.2}")).collect();
    let _ = writeln!(s, "angular gaps: {}", if gaps.is_empty() { "none".into() } else { gaps.join(", ") });
    for (label, paths) in PHYSICS {
        let v = paths.iter().find_map(|p| scalar_with_units(&h5, p));
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

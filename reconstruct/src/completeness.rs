//! Whether a scan is complete enough to reconstruct, decided before any work starts: angular coverage from
//! the projections actually present (image_key 0; invalid frames, image_key 3, do not count), gaps in the
//! angles, frames the receiver never got, and missing flats or darks. [`ScanCheck::problems`] lists, in
//! words, everything that would make the volume mislead; `beamline recon` refuses such a scan unless
//! `--allow-incomplete` is given, and `beamline inspect` prints the same findings.

use std::ops::Range;

use acquisition::nexus::{acq, Degrees, ImageKey, NxTomoFile};

/// A gap wider than this many median angular steps is reported.
pub const GAP_STEPS: f64 = 1.5;

/// What the frames of a scan say about its completeness.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScanCheck {
    /// Projections (image_key 0).
    pub projections: usize,
    /// Flat fields (image_key 1).
    pub flats: usize,
    /// Dark fields (image_key 2).
    pub darks: usize,
    /// Invalid frames (image_key 3, or an unknown code): frames never received or excluded.
    pub invalid: usize,
    /// Ranges of frame indices that are invalid, in order.
    pub invalid_frames: Vec<Range<usize>>,
    /// Smallest and largest projection angle, degrees.
    pub angle_min_max: Option<(f64, f64)>,
    /// Median step between consecutive sorted projection angles, degrees.
    pub step_deg: Option<f64>,
    /// Angular range the projections cover: last minus first plus one step, degrees.
    pub coverage_deg: f64,
    /// The range the scan was meant to cover (`range_deg` of the series metadata; 180 for a parallel-beam
    /// scan that records none).
    pub declared_deg: f64,
    /// Whether `declared_deg` came from the file.
    pub declared_in_file: bool,
    /// Projections the series metadata announced, if it did.
    pub declared_projections: Option<u64>,
    /// Angular gaps wider than [`GAP_STEPS`] median steps: `(from, to)` degrees.
    pub gaps: Vec<(f64, f64)>,
    /// Frames the receiver expected and received, when the file records them.
    pub frames_expected: Option<u64>,
    /// Frames received.
    pub frames_received: Option<u64>,
    /// The receiver's status string, when recorded.
    pub status: Option<String>,
    /// Everything that makes the scan incomplete or inconsistent, one sentence each.
    pub problems: Vec<String>,
}

/// Formats frame ranges as `3, 82..420` (at most 8 ranges, then a count of the rest).
pub fn ranges_text(ranges: &[Range<usize>]) -> String {
    let mut parts: Vec<String> = ranges
        .iter()
        .take(8)
        .map(|r| if r.len() == 1 { r.start.to_string() } else { format!("{}..{}", r.start, r.end) })
        .collect();
    if ranges.len() > 8 {
        parts.push(format!("and {} more ranges", ranges.len() - 8));
    }
    parts.join(", ")
}

impl ScanCheck {
    /// Checks the keys and angles of `file` and the acquisition record it carries, if any.
    pub fn of_file(file: &NxTomoFile) -> ScanCheck {
        ScanCheck::of_file_frames(file, file.image_keys(), file.angles())
    }

    /// [`ScanCheck::of_file`] for some of the file's frames (`keys` and `angles` of the frames kept, e.g.
    /// the projections `--start-proj/--end-proj` select, with the references).
    pub fn of_file_frames(file: &NxTomoFile, keys: &[ImageKey], angles: &[Degrees]) -> ScanCheck {
        let meta: Option<serde_json::Value> =
            file.acquisition_str(acq::SERIES_METADATA).and_then(|s| serde_json::from_str(&s).ok());
        let declared = meta.as_ref().and_then(|m| m.get("range_deg")).and_then(|v| v.as_f64());
        let declared_projections = meta.as_ref().and_then(|m| m.get("angles")).and_then(|v| v.as_u64());
        let mut c = ScanCheck::of_frames(keys, angles, declared, declared_projections, file.key_path());
        c.frames_expected = file.acquisition_u64(acq::FRAMES_EXPECTED);
        c.frames_received = file.acquisition_u64(acq::FRAMES_RECEIVED);
        c.status = file.status();
        c.add_receiver_problems();
        c
    }

    /// Checks per-frame `keys` and `angles` against a declared range and projection count (when known);
    /// `key_path` (the image-key dataset) is named in the findings about references.
    pub fn of_frames(
        keys: &[ImageKey],
        angles: &[Degrees],
        declared_deg: Option<f64>,
        declared_projections: Option<u64>,
        key_path: &str,
    ) -> ScanCheck {
        let mut c = ScanCheck { declared_projections, ..ScanCheck::default() };
        let mut proj_angles = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match k {
                ImageKey::Projection => {
                    c.projections += 1;
                    if let Some(a) = angles.get(i).filter(|a| a.0.is_finite()) {
                        proj_angles.push(a.0);
                    }
                }
                ImageKey::Flat => c.flats += 1,
                ImageKey::Dark => c.darks += 1,
                ImageKey::Invalid => {
                    c.invalid += 1;
                    match c.invalid_frames.last_mut() {
                        Some(r) if r.end == i => r.end = i + 1,
                        _ => c.invalid_frames.push(i..i + 1),
                    }
                }
            }
        }
        proj_angles.sort_by(|a, b| a.total_cmp(b));
        let steps: Vec<f64> = proj_angles.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 1e-9).collect();
        if let (Some(&lo), Some(&hi)) = (proj_angles.first(), proj_angles.last()) {
            c.angle_min_max = Some((lo, hi));
            let mut sorted = steps.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            let step = sorted.get(sorted.len() / 2).copied();
            c.step_deg = step;
            c.coverage_deg = hi - lo + step.unwrap_or(0.0);
            if let Some(step) = step {
                c.gaps =
                    proj_angles.windows(2).filter(|w| w[1] - w[0] > GAP_STEPS * step).map(|w| (w[0], w[1])).collect();
            }
        }
        c.declared_in_file = declared_deg.is_some();
        c.declared_deg = declared_deg.unwrap_or(180.0);
        c.add_frame_problems(key_path);
        c
    }

    fn add_frame_problems(&mut self, key_path: &str) {
        let step = self.step_deg.unwrap_or(0.0);
        if self.projections < 2 {
            self.problems.push(format!("{} projection(s) (image_key 0); at least 2 are needed", self.projections));
        } else if self.coverage_deg + GAP_STEPS * step.max(1e-6) < self.declared_deg {
            let (lo, hi) = self.angle_min_max.unwrap_or((0.0, 0.0));
            self.problems.push(format!(
                "the {} projections cover {:.1} degrees ({lo:.1} to {hi:.1}) of the {:.1} {}",
                self.projections,
                self.coverage_deg,
                self.declared_deg,
                if self.declared_in_file { "declared in the file" } else { "a parallel-beam scan needs" }
            ));
        }
        if let Some(n) = self.declared_projections.filter(|n| (self.projections as u64) < *n) {
            self.problems.push(format!("{} of the {n} announced projections are present", self.projections));
        }
        if !self.gaps.is_empty() {
            let list: Vec<String> =
                self.gaps.iter().take(8).map(|(a, b)| format!("{a:.2} to {b:.2}")).collect::<Vec<_>>();
            self.problems.push(format!("angular gaps (no projection) between {} degrees", list.join(", ")));
        }
        if self.invalid > 0 {
            self.problems.push(format!(
                "{} invalid frame(s) (image_key 3, never received or excluded): {}",
                self.invalid,
                ranges_text(&self.invalid_frames)
            ));
        }
        if self.flats == 0 {
            self.problems.push(format!("no flat fields (image_key 1 in {key_path})"));
        }
        if self.darks == 0 {
            self.problems.push(format!("no dark fields (image_key 2 in {key_path})"));
        }
    }

    fn add_receiver_problems(&mut self) {
        if let (Some(e), Some(r)) = (self.frames_expected, self.frames_received) {
            if r < e {
                self.problems.push(format!("the receiver got {r} of {e} frames"));
            }
        }
        if let Some(s) = self.status.as_deref().filter(|s| !s.starts_with("complete")) {
            self.problems.push(format!("acquisition status \"{s}\""));
        }
    }

    /// Whether nothing is missing.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(n: usize, span: f64) -> (Vec<ImageKey>, Vec<Degrees>) {
        let mut keys = vec![ImageKey::Dark, ImageKey::Flat];
        let mut angles = vec![Degrees(0.0), Degrees(0.0)];
        for i in 0..n {
            keys.push(ImageKey::Projection);
            angles.push(Degrees(i as f64 * span / n as f64));
        }
        (keys, angles)
    }

    #[test]
    fn a_full_scan_has_no_problems() {
        let (k, a) = scan(180, 180.0);
        let c = ScanCheck::of_frames(&k, &a, None, None, "keys");
        assert!(c.is_complete(), "{:?}", c.problems);
        assert!((c.coverage_deg - 180.0).abs() < 1e-9);
        let c = ScanCheck::of_frames(&k, &a, Some(180.0), Some(180), "keys");
        assert!(c.is_complete(), "{:?}", c.problems);
    }

    #[test]
    fn stopped_receiver_short_coverage_gaps_and_missing_references() {
        let (mut k, mut a) = scan(420, 180.0);
        for i in 84..k.len() {
            k[i] = ImageKey::Invalid;
            a[i] = Degrees(f64::NAN);
        }
        let c = ScanCheck::of_frames(&k, &a, Some(180.0), Some(420), "keys");
        assert_eq!(c.projections, 82);
        assert_eq!(c.invalid_frames, vec![84..422]);
        let text = c.problems.join("; ");
        assert!(text.contains("cover 35.1 degrees"), "{text}");
        assert!(text.contains("82 of the 420 announced"), "{text}");
        assert!(text.contains("338 invalid frame(s)") && text.contains("84..422"), "{text}");

        let (mut k, a) = scan(100, 180.0);
        for key in k.iter_mut().skip(40).take(10) {
            *key = ImageKey::Invalid;
        }
        k[0] = ImageKey::Invalid;
        k[1] = ImageKey::Invalid;
        let c = ScanCheck::of_frames(&k, &a, None, None, "keys");
        let text = c.problems.join("; ");
        assert_eq!(c.gaps.len(), 1, "{text}");
        assert!(text.contains("angular gaps") && text.contains("no flat fields") && text.contains("no dark"), "{text}");
    }
}

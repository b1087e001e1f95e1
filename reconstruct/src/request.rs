//! A reconstruction asked for in words: the text forms of [`ReconOptions`] that a command line, a job file
//! or a web form hands over (`--slices 100:200`, `--center auto`, `--memory 8G`, `--part 3/16`,
//! `--center-sweep 250:260:0.5`), parsed and checked here, once, with errors that say which option is wrong
//! and how to write it.
//!
//! [`ReconRequest::options`] turns a whole request into [`ReconOptions`]; the parsers are public for
//! callers that take one value at a time.

use std::ops::Range;
use std::path::PathBuf;

use crate::filter::{FilterKind, UnknownFilter};
use crate::method::Method;
use crate::pipeline::{BackendChoice, Bits, CenterChoice, Format, ReconOptions};

/// Why a request could not become [`ReconOptions`]. Each message names the option as written on the
/// command line (`--slices`, `--memory`, ...) and the text that was given.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No input file.
    #[error("give the input NXtomo file")]
    NoInput,
    /// No output path.
    #[error("give the output with -o")]
    NoOutput,
    /// A pair without its separator (`A:B`, `LO:HI`, `I/N`, `A:B:STEP`).
    #[error("{option} {text:?}: expected {form}")]
    Form {
        /// The option, e.g. `--slices`.
        option: String,
        /// What was given.
        text: String,
        /// The form expected, with an example.
        form: &'static str,
    },
    /// A part of the value that is not an integer.
    #[error("{option} {text:?}: {part:?} is not {what}")]
    NotInteger {
        /// The option.
        option: String,
        /// What was given.
        text: String,
        /// The part that does not parse.
        part: String,
        /// What it should be ("a row number", "a number").
        what: &'static str,
        /// The parse error.
        #[source]
        source: std::num::ParseIntError,
    },
    /// A part of the value that is not a number.
    #[error("{option} {text:?}: {part:?} is not a number")]
    NotNumber {
        /// The option.
        option: String,
        /// What was given.
        text: String,
        /// The part that does not parse.
        part: String,
        /// The parse error.
        #[source]
        source: std::num::ParseFloatError,
    },
    /// A row range that ends before it starts.
    #[error("{option} {text:?}: the end must be after the start (B is exclusive)")]
    EmptyRange {
        /// The option.
        option: String,
        /// What was given.
        text: String,
    },
    /// A value range whose top is not above its bottom.
    #[error("{option} {text:?}: HI must be above LO")]
    InvertedRange {
        /// The option.
        option: String,
        /// What was given.
        text: String,
    },
    /// A memory size that is not a size.
    #[error("--memory {text:?}: expected a size like 512M or 8G")]
    SizeForm {
        /// What was given.
        text: String,
        /// The parse error of the number.
        #[source]
        source: std::num::ParseFloatError,
    },
    /// A memory size that is zero or negative.
    #[error("--memory {text:?} must be positive")]
    SizeNotPositive {
        /// What was given.
        text: String,
    },
    /// `--part I/N` with I outside 1..=N.
    #[error("--part {text:?}: I counts from 1 to N")]
    PartOutOfRange {
        /// What was given.
        text: String,
    },
    /// `--part I/N` where I or N is not a number.
    #[error("--part {text:?}: {which} is not a number")]
    PartNotNumber {
        /// What was given.
        text: String,
        /// `I` or `N`.
        which: &'static str,
        /// The parse error.
        #[source]
        source: std::num::ParseIntError,
    },
    /// A centre sweep with B < A or a step that is not positive.
    #[error("--center-sweep {text:?}: need A <= B and STEP > 0")]
    SweepOrder {
        /// What was given.
        text: String,
    },
    /// A centre sweep with too many trials.
    #[error("--center-sweep {text:?} gives {count} slices; use a larger STEP (at most {MAX_SWEEP} trials)")]
    SweepTooLong {
        /// What was given.
        text: String,
        /// Trials it would give.
        count: usize,
    },
    /// A centre that is neither `auto` nor a number.
    #[error("--center {text:?}: give `auto`, `vo` or a column position like 255.5")]
    Center {
        /// What was given.
        text: String,
        /// The parse error.
        #[source]
        source: std::num::ParseFloatError,
    },
    /// An unknown filter name.
    #[error(transparent)]
    Filter(#[from] UnknownFilter),
    /// Method settings that do not fit the method (`--iterations` with FBP, ...).
    #[error(transparent)]
    MethodOptions(#[from] crate::method::MethodOptionError),
    /// A TIFF depth other than 32, 16 or 8.
    #[error("--bits {0}: use 32, 16 or 8")]
    Bits(u32),
    /// Integer samples asked for an HDF5 volume.
    #[error("--bits {0} applies to TIFF output; HDF5 volumes are float32")]
    BitsForHdf5(u32),
    // --- issue 14 request errors ---
    /// An even stripe-removal window.
    #[error("--stripes {0}: the median window must be odd (a centre column and as many on each side), e.g. {lo} or {hi}", lo = .0.saturating_sub(1).max(1), hi = .0 + 1)]
    StripesEven(usize),
    /// A binning other than 1, 2 or 4.
    #[error("--binning {0}: use 2 or 4 (the mean of 2x2 or 4x4 detector pixels), or 1 for none")]
    Binning(usize),
    /// `--end-proj`/`--end-column` not after the start.
    #[error("{option} {end} must be after {start_option} {start} (the end is exclusive)")]
    EndBeforeStart {
        /// `--end-proj` or `--end-column`.
        option: &'static str,
        /// The end given.
        end: usize,
        /// `--start-proj` or `--start-column`.
        start_option: &'static str,
        /// The start given (0 when not given).
        start: usize,
    },
    /// `-o NAME.tif` with an HDF5 format or `-o NAME.h5` with TIFF bits, or a file output with `--part`.
    #[error("-o {output}: {reason}")]
    OutputName {
        /// The output given.
        output: String,
        /// What does not fit.
        reason: &'static str,
    },
    // --- end issue 14 request errors ---
}

/// Most trials [`parse_sweep`] gives.
pub const MAX_SWEEP: usize = 1000;

/// A reconstruction as text: every field as the user wrote it, `None` where they wrote nothing.
#[derive(Debug, Clone)]
pub struct ReconRequest {
    /// NXtomo input file.
    pub input: Option<PathBuf>,
    /// Output folder (TIFF), or folder or `.h5` file (HDF5).
    pub output: Option<PathBuf>,
    /// Detector rows `A:B` (B exclusive).
    pub slices: Option<String>,
    /// `auto` or a detector column.
    pub center: String,
    /// Filter name (see [`FilterKind`]).
    pub filter: String,
    /// Container.
    pub format: Format,
    /// TIFF bits per sample: 32, 16 or 8.
    pub bits: u32,
    /// Value range `LO:HI` for integer TIFF output.
    pub range: Option<String>,
    /// Hardware.
    pub backend: BackendChoice,
    /// Memory budget such as `512M` or `8G`.
    pub memory: String,
    /// Stripe removal window.
    pub stripes: Option<usize>,
    /// Zinger threshold.
    pub zinger: Option<f32>,
    /// CPU threads.
    pub threads: Option<usize>,
    /// Share `I/N` of the slices.
    pub part: Option<String>,
    /// Output slice side.
    pub size: Option<usize>,
    /// Reconstruction method.
    pub method: Method,
    // --- issue 14 request fields ---
    /// `--allow-incomplete`: reconstruct a scan with missing frames, coverage or references.
    pub allow_incomplete: bool,
    /// `--start-proj`: first projection (index among the projections).
    pub start_proj: Option<usize>,
    /// `--end-proj`: one past the last projection.
    pub end_proj: Option<usize>,
    /// `--start-column`: first detector column read.
    pub start_column: Option<usize>,
    /// `--end-column`: one past the last detector column read.
    pub end_column: Option<usize>,
    /// `--binning`: 1, 2 or 4.
    pub binning: usize,
    /// `--overwrite`: replace what a previous run wrote to the output.
    pub overwrite: bool,
    // --- end issue 14 request fields ---
    // --- issue 15 request fields ---
    /// `--iterations`, `--nonnegative`, `--init` (SIRT and CGLS).
    pub method_options: crate::method::MethodOptions,
    // --- end issue 15 request fields ---
    // --- issue 16 request fields ---
    /// `--gpu-dtype` (CUDA backend only; refused with `--backend cpu`).
    pub gpu_dtype: Option<crate::gpu::GpuDtype>,
    /// `--gpu-filter` (CUDA backend only; refused with `--backend cpu`).
    pub gpu_filter: Option<crate::gpu::GpuFilter>,
    // --- end issue 16 request fields ---
}

impl ReconRequest {
    /// The options this request asks for, every value checked.
    pub fn options(&self) -> Result<ReconOptions, RequestError> {
        let input = self.input.clone().ok_or(RequestError::NoInput)?;
        let output = self.output.clone().ok_or(RequestError::NoOutput)?;
        let mut o = ReconOptions::new(input, output.clone());
        o.slices = self.slices.as_deref().map(|s| parse_range(s, "--slices")).transpose()?;
        o.center = parse_center(&self.center)?;
        o.filter = self.filter.parse::<FilterKind>()?;
        o.format = self.format;
        // --- issue 14: the output's extension says what it is ---
        let name = output.display().to_string();
        if crate::pipeline::is_h5_file(&output) {
            o.format = crate::pipeline::Format::Hdf5;
        } else if crate::pipeline::is_tiff_file(&output) {
            if self.format == Format::Hdf5 {
                return Err(RequestError::OutputName {
                    output: name,
                    reason: "a .tif name with --format h5; name the volume NAME.h5 or leave out --format",
                });
            }
            if self.part.is_some() {
                return Err(RequestError::OutputName {
                    output: name,
                    reason: "one multi-page TIFF cannot hold one of several --part runs; give a folder",
                });
            }
        }
        o.bits = parse_bits(self.bits)?;
        if o.format == Format::Hdf5 && o.bits != Bits::F32 {
            return Err(RequestError::BitsForHdf5(self.bits));
        }
        o.range = self.range.as_deref().map(|s| parse_pair_f32(s, "--range")).transpose()?;
        o.backend = self.backend;
        o.memory_bytes = parse_size(&self.memory)?;
        if let Some(w) = self.stripes.filter(|w| w % 2 == 0) {
            return Err(RequestError::StripesEven(w));
        }
        o.stripe_size = self.stripes;
        o.zinger = self.zinger;
        o.threads = self.threads;
        o.part = self.part.as_deref().map(parse_part).transpose()?;
        o.out_size = self.size;
        o.method = self.method;
        // --- issue 14 ---
        o.allow_incomplete = self.allow_incomplete;
        o.overwrite = self.overwrite;
        if !matches!(self.binning, 1 | 2 | 4) {
            return Err(RequestError::Binning(self.binning));
        }
        o.selection.binning = self.binning;
        o.selection.projections = span(self.start_proj, self.end_proj, "--start-proj", "--end-proj")?;
        o.selection.columns = span(self.start_column, self.end_column, "--start-column", "--end-column")?;
        // --- end issue 14 ---
        // --- issue 15 ---
        self.method_options.iterative_for(self.method)?;
        o.method_options = self.method_options;
        // --- end issue 15 ---
        o.gpu_dtype = self.gpu_dtype;
        o.gpu_filter = self.gpu_filter;
        Ok(o)
    }
}

/// `--start-X A --end-X B` as `A..B` (`None` when neither is given; an open end runs to the file's end,
/// written `usize::MAX` and resolved by the reader).
fn span(
    start: Option<usize>,
    end: Option<usize>,
    start_option: &'static str,
    option: &'static str,
) -> Result<Option<Range<usize>>, RequestError> {
    match (start, end) {
        (None, None) => Ok(None),
        (s, Some(e)) if e <= s.unwrap_or(0) => {
            Err(RequestError::EndBeforeStart { option, end: e, start_option, start: s.unwrap_or(0) })
        }
        (s, e) => Ok(Some(s.unwrap_or(0)..e.unwrap_or(usize::MAX))),
    }
}

/// Parses `A:B` into a row range (B exclusive) for the option named `option`.
pub fn parse_range(s: &str, option: &str) -> Result<Range<usize>, RequestError> {
    let (a, b) = s.split_once(':').ok_or_else(|| RequestError::Form {
        option: option.into(),
        text: s.into(),
        form: "A:B, e.g. 100:200",
    })?;
    let row = |x: &str| {
        x.trim().parse::<usize>().map_err(|source| RequestError::NotInteger {
            option: option.into(),
            text: s.into(),
            part: x.into(),
            what: "a row number",
            source,
        })
    };
    let (a, b) = (row(a)?, row(b)?);
    if b <= a {
        return Err(RequestError::EmptyRange { option: option.into(), text: s.into() });
    }
    Ok(a..b)
}

/// Parses a size like `512M`, `8G`, `1.5GiB`, `1000000` (binary multiples: K = 1024) into bytes.
pub fn parse_size(s: &str) -> Result<u64, RequestError> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.trim().parse().map_err(|source| RequestError::SizeForm { text: s.into(), source })?;
    if v.is_nan() || v <= 0.0 {
        return Err(RequestError::SizeNotPositive { text: s.into() });
    }
    Ok((v * mul as f64) as u64)
}

/// Parses `LO:HI` (HI above LO) for the option named `option`.
pub fn parse_pair_f32(s: &str, option: &str) -> Result<(f32, f32), RequestError> {
    let (a, b) =
        s.split_once(':').ok_or_else(|| RequestError::Form { option: option.into(), text: s.into(), form: "LO:HI" })?;
    let num = |x: &str| {
        x.trim().parse::<f32>().map_err(|source| RequestError::NotNumber {
            option: option.into(),
            text: s.into(),
            part: x.into(),
            source,
        })
    };
    let (lo, hi) = (num(a)?, num(b)?);
    if lo.is_nan() || hi.is_nan() || hi <= lo {
        return Err(RequestError::InvertedRange { option: option.into(), text: s.into() });
    }
    Ok((lo, hi))
}

/// Parses `A:B:STEP` into the centres A, A+STEP, ... <= B (at most [`MAX_SWEEP`] of them).
pub fn parse_sweep(s: &str) -> Result<Vec<f64>, RequestError> {
    let parts: Vec<&str> = s.split(':').collect();
    let [a, b, step] = parts[..] else {
        return Err(RequestError::Form {
            option: "--center-sweep".into(),
            text: s.into(),
            form: "A:B:STEP, e.g. 250:260:0.5",
        });
    };
    let num = |x: &str| {
        x.trim().parse::<f64>().map_err(|source| RequestError::NotNumber {
            option: "--center-sweep".into(),
            text: s.into(),
            part: x.into(),
            source,
        })
    };
    let (a, b, step) = (num(a)?, num(b)?, num(step)?);
    if step.is_nan() || step <= 0.0 || b < a {
        return Err(RequestError::SweepOrder { text: s.into() });
    }
    let n = ((b - a) / step + 1e-9).floor() as usize + 1;
    if n > MAX_SWEEP {
        return Err(RequestError::SweepTooLong { text: s.into(), count: n });
    }
    Ok((0..n).map(|i| a + i as f64 * step).collect())
}

/// Parses `I/N` (1-based share I of N).
pub fn parse_part(s: &str) -> Result<(usize, usize), RequestError> {
    let (i, n) = s.split_once('/').ok_or_else(|| RequestError::Form {
        option: "--part".into(),
        text: s.into(),
        form: "I/N, e.g. 3/16",
    })?;
    let i: usize =
        i.trim().parse().map_err(|source| RequestError::PartNotNumber { text: s.into(), which: "I", source })?;
    let n: usize =
        n.trim().parse().map_err(|source| RequestError::PartNotNumber { text: s.into(), which: "N", source })?;
    if i == 0 || i > n {
        return Err(RequestError::PartOutOfRange { text: s.into() });
    }
    Ok((i, n))
}

/// Parses `auto` or `vo` (any case) or a detector column.
pub fn parse_center(s: &str) -> Result<CenterChoice, RequestError> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(CenterChoice::Auto);
    }
    // --- issue 15 §4 ---
    if s.eq_ignore_ascii_case("vo") {
        return Ok(CenterChoice::Vo);
    }
    s.parse::<f64>().map(CenterChoice::Column).map_err(|source| RequestError::Center { text: s.into(), source })
}

/// The TIFF sample type for 32, 16 or 8 bits.
pub fn parse_bits(bits: u32) -> Result<Bits, RequestError> {
    match bits {
        32 => Ok(Bits::F32),
        16 => Ok(Bits::U16),
        8 => Ok(Bits::U8),
        b => Err(RequestError::Bits(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ReconRequest {
        ReconRequest {
            input: Some("scan.h5".into()),
            output: Some("out".into()),
            slices: None,
            center: "auto".into(),
            filter: "ramp".into(),
            format: Format::Tiff,
            bits: 32,
            range: None,
            backend: BackendChoice::Auto,
            memory: "4G".into(),
            stripes: None,
            zinger: None,
            threads: None,
            part: None,
            size: None,
            method: Method::Fbp,
            allow_incomplete: false,
            start_proj: None,
            end_proj: None,
            start_column: None,
            end_column: None,
            binning: 1,
            overwrite: false,
            method_options: Default::default(),
            gpu_dtype: None,
            gpu_filter: None,
        }
    }

    #[test]
    fn row_ranges() {
        assert_eq!(parse_range("100:200", "--slices").unwrap(), 100..200);
        assert_eq!(parse_range(" 3 : 4 ", "--slices").unwrap(), 3..4);
        let e = parse_range("5:5", "--slices").unwrap_err();
        assert!(matches!(e, RequestError::EmptyRange { .. }), "{e}");
        let e = parse_range("100-200", "--slices").unwrap_err();
        assert_eq!(e.to_string(), "--slices \"100-200\": expected A:B, e.g. 100:200");
        let e = parse_range("a:2", "--slices").unwrap_err();
        assert_eq!(e.to_string(), "--slices \"a:2\": \"a\" is not a row number");
        assert!(parse_range("-1:2", "--slices").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("8g").unwrap(), 8 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("2kb").unwrap(), 2048);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        assert_eq!(parse_size("1000000").unwrap(), 1_000_000);
        assert!(matches!(parse_size("0").unwrap_err(), RequestError::SizeNotPositive { .. }));
        assert!(matches!(parse_size("-1G").unwrap_err(), RequestError::SizeNotPositive { .. }));
        assert!(matches!(parse_size("lots").unwrap_err(), RequestError::SizeForm { .. }));
    }

    #[test]
    fn value_ranges() {
        assert_eq!(parse_pair_f32("-0.5:2", "--range").unwrap(), (-0.5, 2.0));
        assert!(matches!(parse_pair_f32("2:2", "--range").unwrap_err(), RequestError::InvertedRange { .. }));
        assert!(matches!(parse_pair_f32("2", "--range").unwrap_err(), RequestError::Form { .. }));
        assert!(matches!(parse_pair_f32("x:2", "--range").unwrap_err(), RequestError::NotNumber { .. }));
    }

    #[test]
    fn sweeps() {
        assert_eq!(parse_sweep("62:65:0.5").unwrap(), vec![62.0, 62.5, 63.0, 63.5, 64.0, 64.5, 65.0]);
        assert_eq!(parse_sweep("1:1:1").unwrap(), vec![1.0]);
        // B not on the grid: the last centre stays at or below B.
        assert_eq!(parse_sweep("0:1:0.4").unwrap().len(), 3);
        assert!(matches!(parse_sweep("2:1:1").unwrap_err(), RequestError::SweepOrder { .. }));
        assert!(matches!(parse_sweep("1:2:0").unwrap_err(), RequestError::SweepOrder { .. }));
        assert!(matches!(parse_sweep("1:2").unwrap_err(), RequestError::Form { .. }));
        assert!(matches!(parse_sweep("0:1000:0.5").unwrap_err(), RequestError::SweepTooLong { count: 2001, .. }));
        assert_eq!(parse_sweep("0:999:1").unwrap().len(), MAX_SWEEP);
    }

    #[test]
    fn parts() {
        assert_eq!(parse_part("3/16").unwrap(), (3, 16));
        assert_eq!(parse_part("16/16").unwrap(), (16, 16));
        assert!(matches!(parse_part("0/4").unwrap_err(), RequestError::PartOutOfRange { .. }));
        assert!(matches!(parse_part("5/4").unwrap_err(), RequestError::PartOutOfRange { .. }));
        assert!(matches!(parse_part("x/4").unwrap_err(), RequestError::PartNotNumber { which: "I", .. }));
        assert!(matches!(parse_part("1/y").unwrap_err(), RequestError::PartNotNumber { which: "N", .. }));
        assert!(matches!(parse_part("3").unwrap_err(), RequestError::Form { .. }));
    }

    #[test]
    fn centres_and_bits() {
        assert_eq!(parse_center("AUTO").unwrap(), CenterChoice::Auto);
        assert_eq!(parse_center("Vo").unwrap(), CenterChoice::Vo);
        assert_eq!(parse_center("255.5").unwrap(), CenterChoice::Column(255.5));
        assert_eq!(parse_center("-3").unwrap(), CenterChoice::Column(-3.0));
        assert!(matches!(parse_center("middle").unwrap_err(), RequestError::Center { .. }));
        assert_eq!(parse_bits(16).unwrap(), Bits::U16);
        assert!(matches!(parse_bits(12).unwrap_err(), RequestError::Bits(12)));
    }

    #[test]
    fn a_whole_request() {
        let mut r = request();
        r.slices = Some("10:20".into());
        r.center = "63.5".into();
        r.filter = "shepp-logan".into();
        r.bits = 16;
        r.range = Some("0:1".into());
        r.memory = "512M".into();
        r.part = Some("2/3".into());
        let o = r.options().unwrap();
        assert_eq!(o.slices, Some(10..20));
        assert_eq!(o.center, CenterChoice::Column(63.5));
        assert_eq!(o.filter, FilterKind::SheppLogan);
        assert_eq!(o.bits, Bits::U16);
        assert_eq!(o.range, Some((0.0, 1.0)));
        assert_eq!(o.memory_bytes, 512 << 20);
        assert_eq!(o.part, Some((2, 3)));

        let mut r = request();
        r.format = Format::Hdf5;
        r.bits = 8;
        assert!(matches!(r.options().unwrap_err(), RequestError::BitsForHdf5(8)));
        let mut r = request();
        r.input = None;
        assert!(matches!(r.options().unwrap_err(), RequestError::NoInput));
        let mut r = request();
        r.filter = "box".into();
        assert!(matches!(r.options().unwrap_err(), RequestError::Filter(_)));
    }

    #[test]
    fn issue14_options_checked() {
        let mut r = request();
        r.stripes = Some(20);
        assert_eq!(
            r.options().unwrap_err().to_string(),
            "--stripes 20: the median window must be odd (a centre column and as many on each side), e.g. 19 or 21"
        );
        r.stripes = Some(21);
        assert_eq!(r.options().unwrap().stripe_size, Some(21));
        let mut r = request();
        r.binning = 3;
        assert!(matches!(r.options().unwrap_err(), RequestError::Binning(3)));
        let mut r = request();
        r.binning = 2;
        r.start_proj = Some(10);
        r.end_proj = Some(50);
        r.start_column = Some(4);
        let o = r.options().unwrap();
        assert_eq!((o.selection.binning, o.selection.projections), (2, Some(10..50)));
        assert_eq!(o.selection.columns, Some(4..usize::MAX));
        r.end_column = Some(4);
        assert!(matches!(r.options().unwrap_err(), RequestError::EndBeforeStart { option: "--end-column", .. }));
        let mut r = request();
        r.output = Some("vol.h5".into());
        assert_eq!(r.options().unwrap().format, Format::Hdf5);
        r.output = Some("vol.tif".into());
        assert_eq!(r.options().unwrap().format, Format::Tiff);
        r.format = Format::Hdf5;
        assert!(matches!(r.options().unwrap_err(), RequestError::OutputName { .. }));
    }
}

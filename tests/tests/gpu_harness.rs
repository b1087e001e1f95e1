//! The CUDA kernels, compiled as C++ by the `kernels` crate's CPU harness and launched over their whole
//! grids, against the CPU backend's own functions.
//!
//! Tolerances (`f32::EPSILON` = 1.19e-7 is written eps):
//! - normalisation: `4 eps * max(1, |value|)`. The harness performs the CPU backend's operations in the same
//!   order without fused multiply-adds, so it should agree to the bit; the bound is what the GPU itself may
//!   differ by (its `logf` is within 1 ulp, and a fused flat interpolation moves the transmission by about
//!   1 ulp, which `-log` turns into an absolute error of about eps), so a harness difference beyond it is a
//!   kernel bug, not rounding.
//! - zingers: exact. Only comparisons, min/max and one subtraction, all exactly rounded everywhere.
//! - filter: the kernel convolves directly in real space, the CPU multiplies in frequency space after an
//!   FFT; both compute the same linear map with different rounding. The FFT's rounding error is spread over
//!   the whole line: in 2-norm it is at most about `eps log2(L) ||x||_2 max|H|` (Higham, *Accuracy and
//!   Stability of Numerical Algorithms*, sec. 24.1; `L` the padded length, `H` the frequency response), and
//!   every single output is below the 2-norm. The direct sum's error is at most `n eps S` and typically
//!   `sqrt(n) eps S`, with `S = sum_j |x_j h_(i-j)|`. Tolerance per output: `4 eps log2(L) ||x||_2 max|H| +
//!   4 eps sqrt(n) S`. Measured: at most 12% of it on this data.
//! - backprojection: `1e-6 * max |slice|`. Same frame, same operations, same angle order as the CPU
//!   backend, so the harness agrees to the bit in practice; the bound only absorbs a different compiler
//!   evaluating `(int)s` paths. On the GPU, FMA contraction moves detector positions by up to half an ulp
//!   of `s` (1e-4 column for `s ~ 2000`): NOT covered here.
//! - whole chain against `CpuBackend::reconstruct`: `1e-4 * max |volume|`, dominated by the filter's
//!   rounding (relative 1e-6) accumulated over angles.

use reconstruct::backend::{Backend, ReconSetup, Slab};
use reconstruct::cpu::CpuBackend;
use reconstruct::filter::{padded_len, FilterKind, RowFilter};
use reconstruct::geometry::ScanRange;
use reconstruct::gpu::host;
use reconstruct::gpu::kernels::harness::{self, Fields};
use reconstruct::gpu::kernels::SlabShape;
use reconstruct::preprocess::{normalize_minus_log, remove_zingers, TRANSMISSION_FLOOR};

const ROWS: usize = 3;
const ANGLES: usize = 60;
const COLS: usize = 64;
const OUT: usize = 64;
/// Axis half a column left of the middle (31.5), so the off-centre path is exercised.
const CENTER: f64 = 31.0;

fn shape() -> SlabShape {
    SlabShape { rows: ROWS as u32, angles: ANGLES as u32, cols: COLS as u32 }
}

fn angles() -> Vec<f32> {
    (0..ANGLES).map(|a| (a as f64 * std::f64::consts::PI / ANGLES as f64) as f32).collect()
}

fn setup(filter: FilterKind) -> ReconSetup {
    let mut s = ReconSetup::new(angles(), COLS, CENTER, OUT);
    s.filter = filter;
    s
}

/// A raw slab of the Shepp-Logan phantom: counts = dark + flat * exp(-mu p), with flats drifting between
/// before and after, a different attenuation per row, and deliberately broken values (counts below dark,
/// a dead column where flat equals dark) so the clamping path runs.
fn raw_slab() -> Slab {
    let ellipses = acquisition::phantom::shepp_logan_2d();
    let angles64: Vec<f64> = angles().iter().map(|a| *a as f64).collect();
    let sino = acquisition::phantom::sinogram_2d(&ellipses, &angles64, COLS, CENTER, COLS as f64 / 2.2);
    let mut slab = Slab {
        rows: 10..10 + ROWS,
        projections: Vec::with_capacity(ROWS * ANGLES * COLS),
        dark: Vec::new(),
        flat_before: Vec::new(),
        flat_after: Vec::new(),
        flat_weight: (0..ANGLES).map(|a| a as f32 / (ANGLES - 1) as f32).collect(),
    };
    for r in 0..ROWS {
        for c in 0..COLS {
            slab.dark.push(95.0 + ((r * 31 + c * 7) % 11) as f32);
            slab.flat_before.push(9000.0 + 13.0 * c as f32 + 100.0 * r as f32);
            slab.flat_after.push(9400.0 - 5.0 * c as f32);
        }
        // Dead column: flat equals dark.
        slab.flat_before[r * COLS + 5] = slab.dark[r * COLS + 5];
        slab.flat_after[r * COLS + 5] = slab.dark[r * COLS + 5];
        let mu = 0.02 * (1.0 + 0.3 * r as f32);
        for a in 0..ANGLES {
            let w = slab.flat_weight[a];
            for c in 0..COLS {
                let f = r * COLS + c;
                let flat = (1.0 - w) * slab.flat_before[f] + w * slab.flat_after[f];
                let d = slab.dark[f];
                let mut v = d + (flat - d) * (-mu * sino[a * COLS + c]).exp();
                if (a * 17 + c * 3 + r) % 97 == 0 {
                    v = d - 3.0; // below dark: clamped
                }
                slab.projections.push(v);
            }
        }
    }
    slab
}

fn fields(slab: &Slab) -> Fields<'_> {
    Fields {
        dark: &slab.dark,
        flat_before: &slab.flat_before,
        flat_after: &slab.flat_after,
        flat_weight: &slab.flat_weight,
    }
}

/// The CPU backend's normalisation, row by row.
fn cpu_minus_log(slab: &Slab) -> (Vec<f32>, u64) {
    let mut out = slab.projections.clone();
    let mut clamped = 0;
    for (r, sino) in out.chunks_mut(ANGLES * COLS).enumerate() {
        let f = r * COLS..(r + 1) * COLS;
        clamped += normalize_minus_log(
            sino,
            &slab.dark[f.clone()],
            &slab.flat_before[f.clone()],
            &slab.flat_after[f],
            &slab.flat_weight,
        );
    }
    (out, clamped)
}

#[test]
fn normalisation_matches_the_cpu_backend() {
    let slab = raw_slab();
    let (want, clamped) = cpu_minus_log(&slab);
    assert!(clamped > ROWS as u64 * ANGLES as u64, "the test data must exercise clamping ({clamped})");
    let got = harness::normalize_minus_log(shape(), &slab.projections, fields(&slab), TRANSMISSION_FLOOR)
        .expect("harness launch");
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = 4.0 * f32::EPSILON * w.abs().max(1.0);
        assert!((g - w).abs() <= tol, "value {i}: kernel {g}, CPU {w}");
        worst = worst.max((g - w).abs());
    }
    println!("normalisation: max |kernel - CPU| = {worst:e} over {} values", got.len());
}

#[test]
fn zinger_removal_matches_the_cpu_backend() {
    let slab = raw_slab();
    let (mut minus_log, _) = cpu_minus_log(&slab);
    // Spikes on single angles, including the first and last angle (mirrored neighbours).
    for (k, i) in [7usize, 64 * 3 + 2, 64 * 59 + 40, 3 * 64 * 60 - 1, 64 * 60 + 64 * 30 + 12].iter().enumerate() {
        minus_log[*i] += if k % 2 == 0 { 5.0 } else { -5.0 };
    }
    let threshold = 1.5;
    let got = harness::remove_zingers(shape(), &minus_log, threshold).expect("harness launch");
    let mut want = minus_log.clone();
    let mut replaced = 0;
    for sino in want.chunks_mut(ANGLES * COLS) {
        replaced += remove_zingers(sino, COLS, threshold);
    }
    assert!(replaced >= 5, "the spikes must be found ({replaced})");
    let differing = got.iter().zip(&want).filter(|(g, w)| g.to_bits() != w.to_bits()).count();
    assert_eq!(differing, 0, "zinger removal must match the CPU bit for bit");
}

#[test]
fn filter_matches_the_cpu_fft_filter_for_every_window() {
    let slab = raw_slab();
    let (minus_log, _) = cpu_minus_log(&slab);
    let l = padded_len(COLS);
    for kind in FilterKind::ALL {
        let s = setup(kind);
        let taps = host::filter_taps(&s);
        let got = harness::filter_convolve(shape(), &minus_log, &taps).expect("harness launch");
        let mut want = minus_log.clone();
        let weight = ScanRange::of(&s.angles_rad).weight(ANGLES);
        RowFilter::new(kind, COLS, weight).apply(&mut want, ANGLES);
        let max_h =
            reconstruct::filter::frequency_response(kind, l, weight).iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        let eps = f32::EPSILON as f64;
        let mut worst_ratio = 0f64;
        for (line, (g_line, w_line)) in got.chunks(COLS).zip(want.chunks(COLS)).enumerate() {
            let x = &minus_log[line * COLS..(line + 1) * COLS];
            let norm2 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            for i in 0..COLS {
                let direct: f64 = (0..COLS).map(|j| (x[j] as f64 * taps[i + COLS - 1 - j] as f64).abs()).sum();
                let tol = 4.0 * eps * (l as f64).log2() * norm2 * max_h + 4.0 * eps * (COLS as f64).sqrt() * direct;
                let diff = (g_line[i] as f64 - w_line[i] as f64).abs();
                assert!(
                    diff <= tol,
                    "{kind}: line {line} col {i}: kernel {} CPU {} (tolerance {tol:e})",
                    g_line[i],
                    w_line[i]
                );
                worst_ratio = worst_ratio.max(diff / tol);
            }
        }
        println!("filter {kind}: worst |kernel - CPU| is {:.3} of the tolerance", worst_ratio);
    }
}

#[test]
fn backprojection_matches_the_cpu_backend() {
    let slab = raw_slab();
    let (mut filtered, _) = cpu_minus_log(&slab);
    let s = setup(FilterKind::SheppLogan);
    let weight = ScanRange::of(&s.angles_rad).weight(ANGLES);
    RowFilter::new(FilterKind::SheppLogan, COLS, weight).apply(&mut filtered, ANGLES);
    let (cos, sin) = host::trig_tables(&s.angles_rad);
    let geometry = host::backproject_geometry(&s).expect("geometry");
    let got = harness::backproject(shape(), &filtered, &cos, &sin, geometry).expect("harness launch");
    let want: Vec<f32> = filtered
        .chunks(ANGLES * COLS)
        .flat_map(|sino| reconstruct::backproject::backproject_sinogram(sino, COLS, &s.angles_rad, CENTER, OUT))
        .collect();
    assert_eq!(got.len(), want.len());
    let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max > 0.1, "the slice must not be empty");
    let tol = 1e-6 * max;
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= tol, "pixel {i}: kernel {g}, CPU {w}");
        worst = worst.max((g - w).abs());
    }
    let exact = got.iter().zip(&want).filter(|(g, w)| g.to_bits() == w.to_bits()).count();
    println!("backprojection: max |kernel - CPU| = {worst:e}; {exact} of {} pixels bit-identical", got.len());
}

#[test]
fn whole_kernel_chain_matches_the_cpu_backend() {
    let slab = raw_slab();
    let mut s = setup(FilterKind::Hann);
    s.zinger_threshold = Some(2.0);
    let want = CpuBackend::default().reconstruct(&s, &slab).expect("CPU backend");

    let minus_log =
        harness::normalize_minus_log(shape(), &slab.projections, fields(&slab), TRANSMISSION_FLOOR).expect("normalise");
    let dezingered = harness::remove_zingers(shape(), &minus_log, 2.0).expect("zingers");
    let filtered = harness::filter_convolve(shape(), &dezingered, &host::filter_taps(&s)).expect("filter");
    let (cos, sin) = host::trig_tables(&s.angles_rad);
    let geometry = host::backproject_geometry(&s).expect("geometry");
    let got = harness::backproject(shape(), &filtered, &cos, &sin, geometry).expect("backproject");

    let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(&want).fold(0f32, |m, (g, w)| m.max((g - w).abs()));
    println!("whole chain: max |kernels - CPU backend| = {worst:e}, max |volume| = {max}");
    assert!(max > 0.1);
    assert!(worst <= 1e-4 * max, "kernels differ from the CPU backend by {worst} (max {max})");
}

#[test]
fn harness_rejects_wrong_lengths() {
    let err = harness::remove_zingers(shape(), &[0.0; 10], 1.0).unwrap_err();
    assert!(err.to_string().contains("needs"), "{err}");
}

/// Slabs larger than the element-wise grid (`ELEMENTWISE_MAX_BLOCKS x ELEMENTWISE_BLOCK` threads) make the
/// grid-stride loops of `normalize_minus_log` and `remove_zingers` take a second turn.
#[test]
fn grid_stride_loops_cover_slabs_larger_than_the_grid() {
    use reconstruct::gpu::kernels::launch::{ELEMENTWISE_BLOCK, ELEMENTWISE_MAX_BLOCKS};
    let threads = ELEMENTWISE_BLOCK as usize * ELEMENTWISE_MAX_BLOCKS as usize;
    let (rows, cols) = (2usize, 256usize);
    let angles = threads / (rows * cols) + 7;
    let shape = SlabShape { rows: rows as u32, angles: angles as u32, cols: cols as u32 };
    assert!(shape.len() > threads);
    let raw: Vec<f32> = (0..shape.len()).map(|i| 120.0 + (i % 977) as f32 * 9.5).collect();
    let dark = vec![100.0; rows * cols];
    let flat = vec![9500.0; rows * cols];
    let weight: Vec<f32> = (0..angles).map(|a| (a % 3) as f32 / 2.0).collect();
    let f = Fields { dark: &dark, flat_before: &flat, flat_after: &flat, flat_weight: &weight };
    let got = harness::normalize_minus_log(shape, &raw, f, TRANSMISSION_FLOOR).expect("normalise");
    let mut want = raw.clone();
    for (r, sino) in want.chunks_mut(angles * cols).enumerate() {
        let f = r * cols..(r + 1) * cols;
        normalize_minus_log(sino, &dark[f.clone()], &flat[f.clone()], &flat[f], &weight);
    }
    let bad = got.iter().zip(&want).filter(|(g, w)| (*g - *w).abs() > 4.0 * f32::EPSILON * w.abs().max(1.0)).count();
    assert_eq!(bad, 0, "{bad} values differ; the tail past the grid must be computed too");
    let dezingered = harness::remove_zingers(shape, &want, 0.5).expect("zingers");
    for sino in want.chunks_mut(angles * cols) {
        remove_zingers(sino, cols, 0.5);
    }
    assert!(dezingered.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()));
}

/// A filtered slab of `rows` sinograms with `angles` angles (each row a differently scaled phantom), the
/// CPU backend's own per-slice backprojection of it, and what the kernels need.
struct RowsCase {
    shape: SlabShape,
    setup: ReconSetup,
    filtered: Vec<f32>,
    cpu: Vec<f32>,
}

fn rows_case(rows: usize, angles: usize, center: f64, out: usize) -> RowsCase {
    let angles_rad: Vec<f32> = (0..angles).map(|a| (a as f64 * std::f64::consts::PI / angles as f64) as f32).collect();
    let angles64: Vec<f64> = angles_rad.iter().map(|a| *a as f64).collect();
    let ellipses = acquisition::phantom::shepp_logan_2d();
    let sino = acquisition::phantom::sinogram_2d(&ellipses, &angles64, COLS, center, COLS as f64 / 2.2);
    let mut s = ReconSetup::new(angles_rad.clone(), COLS, center, out);
    s.filter = FilterKind::SheppLogan;
    let weight = ScanRange::of(&s.angles_rad).weight(angles);
    let mut filtered = Vec::with_capacity(rows * angles * COLS);
    for r in 0..rows {
        let scale = 0.02 * (1.0 + 0.25 * r as f32);
        filtered.extend(sino.iter().map(|v| v * scale));
    }
    RowFilter::new(FilterKind::SheppLogan, COLS, weight).apply(&mut filtered, angles);
    let cpu: Vec<f32> = filtered
        .chunks(angles * COLS)
        .flat_map(|sino| reconstruct::backproject::backproject_sinogram(sino, COLS, &angles_rad, center, out))
        .collect();
    let shape = SlabShape { rows: rows as u32, angles: angles as u32, cols: COLS as u32 };
    RowsCase { shape, setup: s, filtered, cpu }
}

/// `backproject_rows` (8 slices per block, angles tiled 128 at a time through shared memory) is bit for
/// bit the CPU backend: 11 rows (one full and one partial group of 8) and 300 angles (two full tiles and a
/// partial one), axis off centre; and 50 x 50 slices, so blocks hold threads outside the slice that must
/// still meet every barrier (the harness reports a block whose threads do not).
#[test]
fn multi_row_backprojection_is_the_cpu_backend_bit_for_bit() {
    for (rows, angles, out) in [(11, 300, OUT), (3, 60, OUT), (9, 200, 50)] {
        let case = rows_case(rows, angles, CENTER, out);
        let (cos, sin) = host::trig_tables(&case.setup.angles_rad);
        let geometry = host::backproject_geometry(&case.setup).expect("geometry");
        let got = harness::backproject_rows(case.shape, harness::Filtered::F32(&case.filtered), &cos, &sin, geometry)
            .expect("harness launch");
        assert_eq!(got.len(), case.cpu.len());
        let max = case.cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.01, "the slices must not be empty ({max})");
        let differing: Vec<usize> =
            (0..got.len()).filter(|&i| got[i].to_bits() != case.cpu[i].to_bits()).take(5).collect();
        assert!(
            differing.is_empty(),
            "{rows} rows x {angles} angles: pixels {differing:?} differ, e.g. kernel {} vs CPU {}",
            got[differing[0]],
            case.cpu[differing[0]]
        );
        let single = harness::backproject(case.shape, &case.filtered, &cos, &sin, geometry).expect("one-slice kernel");
        assert!(single.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()));
        println!("backproject_rows {rows} x {angles} -> {out}^2: all {} pixels bit-identical to the CPU", got.len());
    }
}

/// `to_half` rounds exactly like the `half` crate's `f16::from_f32` (round to nearest even, overflow to
/// infinity, subnormals), over ties, subnormals, the overflow threshold and a dense sweep.
#[test]
fn to_half_rounds_like_ieee_binary16() {
    let mut values: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        65504.0,
        65519.99,
        65520.0,
        -65520.0,
        1e6,
        f32::INFINITY,
        f32::NEG_INFINITY,
        6.0e-8,
        5.96e-8,
        2.98e-8,
        2.99e-8,
        1.0e-9,
        6.1035156e-5,
        6.1e-5,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
    ];
    let mut x = 1.0e-9f32;
    while x < 1.0e5 {
        values.push(x);
        values.push(-x * 1.37);
        x *= 1.0009;
    }
    // Exact ties between neighbouring halves: the half at 1 + k/1024 plus half an ulp.
    values.extend((0..1024).map(|k| 1.0 + (2 * k + 1) as f32 / 2048.0));
    let got = harness::to_half(&values);
    for (v, g) in values.iter().zip(&got) {
        let want = half::f16::from_f32(*v).to_bits();
        assert_eq!(*g, want, "to_half({v:e}) = {g:#06x}, IEEE binary16 is {want:#06x}");
    }
    let nan = harness::to_half(&[f32::NAN]);
    assert!(half::f16::from_bits(nan[0]).is_nan());
}

/// Half-precision storage of the filtered sinogram (`--gpu-dtype f16`): stated bound and measurement.
///
/// Each stored value is `q (1 + d)` with `|d| <= 2^-11` (normal halves; subnormals add at most 2^-25 in
/// absolute value), and interpolation is a convex combination, so a pixel moves by at most
/// `2^-11 B|q|(x, y) + 2^-25 n_angles`, where `B|q|` is the backprojection of the absolute filtered values;
/// both float sums add at most `n_angles eps B|q|` of rounding each. The test asserts that bound per pixel
/// and prints the measured error relative to the slice maximum.
#[test]
fn f16_storage_stays_within_its_stated_error_bound() {
    let case = rows_case(9, 300, CENTER, OUT);
    let (cos, sin) = host::trig_tables(&case.setup.angles_rad);
    let geometry = host::backproject_geometry(&case.setup).expect("geometry");
    let halves = harness::to_half(&case.filtered);
    let got = harness::backproject_rows(case.shape, harness::Filtered::F16(&halves), &cos, &sin, geometry)
        .expect("harness launch");
    let abs: Vec<f32> = case.filtered.iter().map(|v| v.abs()).collect();
    let bound_base =
        harness::backproject_rows(case.shape, harness::Filtered::F32(&abs), &cos, &sin, geometry).expect("B|q|");
    let n_angles = case.shape.angles as f64;
    let eps = f32::EPSILON as f64;
    let (mut worst_ratio, mut worst_abs, mut sq) = (0f64, 0f64, 0f64);
    for i in 0..got.len() {
        let diff = (got[i] as f64 - case.cpu[i] as f64).abs();
        let tol = (2f64.powi(-11) + 2.0 * n_angles * eps) * bound_base[i] as f64 + 2f64.powi(-25) * n_angles;
        assert!(diff <= tol, "pixel {i}: f16 {} vs CPU {} (bound {tol:e})", got[i], case.cpu[i]);
        worst_ratio = worst_ratio.max(diff / tol);
        worst_abs = worst_abs.max(diff);
        sq += diff * diff;
    }
    let max = case.cpu.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let rms = (sq / got.len() as f64).sqrt();
    assert!(worst_abs > 0.0, "half storage must round something (else the test proves nothing)");
    println!(
        "f16 storage: max |f16 - CPU| = {worst_abs:e} ({:.2e} of max |slice| {max:.3}), rms {rms:e} ({:.2e} of max), \
         worst pixel at {:.3} of its bound",
        worst_abs / max,
        rms / max,
        worst_ratio
    );
}

/// uint16 counts uploaded as they come from the detector and normalised on the device give the CPU
/// backend's normalisation of the same counts as float (to the same 4 eps as the float kernel), and the
/// float kernel's values to the bit.
#[test]
fn uint16_normalisation_matches_the_cpu_backend() {
    let mut slab = raw_slab();
    let counts: Vec<u16> = slab.projections.iter().map(|v| v.round().clamp(0.0, 65535.0) as u16).collect();
    slab.projections = counts.iter().map(|c| *c as f32).collect();
    let (want, _) = cpu_minus_log(&slab);
    let got = harness::normalize_minus_log_u16(shape(), &counts, fields(&slab), TRANSMISSION_FLOOR).expect("launch");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 4.0 * f32::EPSILON * w.abs().max(1.0), "value {i}: kernel {g}, CPU {w}");
    }
    let float = harness::normalize_minus_log(shape(), &slab.projections, fields(&slab), TRANSMISSION_FLOOR)
        .expect("float kernel");
    assert!(float.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// The cuFFT filter's own kernels (pad, multiply by the response, crop) around a CPU FFT standing in for
/// cuFFT's batched real-to-complex transforms give the CPU backend's filter, to the filter test's FFT
/// rounding bound. cuFFT itself is checked on a device only (the GPU bundle's run.sh).
#[test]
fn cufft_filter_kernels_around_a_cpu_fft_give_the_cpu_filter() {
    use rustfft::num_complex::Complex64;
    let slab = raw_slab();
    let (minus_log, _) = cpu_minus_log(&slab);
    for kind in [FilterKind::Ramp, FilterKind::SheppLogan, FilterKind::Hann] {
        let s = setup(kind);
        let (l, response) = host::fft_response(&s);
        let padded = harness::pad_lines(&minus_log, COLS as u32, l as u32).expect("pad");
        assert!(padded.iter().all(|v| v.is_finite()), "pad_lines must write every value");
        // cuFFT's R2C: the L/2 + 1 non-negative frequencies of each padded line (here in f64).
        let mut planner = rustfft::FftPlanner::<f64>::new();
        let (fwd, inv) = (planner.plan_fft_forward(l), planner.plan_fft_inverse(l));
        let mut spectrum = Vec::with_capacity(padded.len() / l * (l + 2));
        for line in padded.chunks(l) {
            let mut b: Vec<Complex64> = line.iter().map(|v| Complex64::new(*v as f64, 0.0)).collect();
            fwd.process(&mut b);
            spectrum.extend(b[..l / 2 + 1].iter().flat_map(|c| [c.re as f32, c.im as f32]));
        }
        harness::multiply_response(&mut spectrum, &response).expect("multiply");
        // cuFFT's C2R (unnormalised): rebuild the Hermitian spectrum and invert.
        let mut filtered_padded = Vec::with_capacity(padded.len());
        for half in spectrum.chunks(l + 2) {
            let mut b = vec![Complex64::new(0.0, 0.0); l];
            for k in 0..=l / 2 {
                b[k] = Complex64::new(half[2 * k] as f64, half[2 * k + 1] as f64);
                if k > 0 && k < l - k {
                    b[l - k] = b[k].conj();
                }
            }
            inv.process(&mut b);
            filtered_padded.extend(b.iter().map(|c| c.re as f32));
        }
        let got = harness::crop_lines(&filtered_padded, COLS as u32, l as u32).expect("crop");
        let mut want = minus_log.clone();
        let weight = ScanRange::of(&s.angles_rad).weight(ANGLES);
        RowFilter::new(kind, COLS, weight).apply(&mut want, ANGLES);
        let max_h = response.iter().fold(0f64, |m, v| m.max(v.abs() as f64)) * l as f64;
        let eps = f32::EPSILON as f64;
        for (line, (g, w)) in got.chunks(COLS).zip(want.chunks(COLS)).enumerate() {
            let x = &minus_log[line * COLS..(line + 1) * COLS];
            let norm2 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            let tol = 8.0 * eps * (l as f64).log2() * norm2 * max_h;
            for i in 0..COLS {
                assert!((g[i] - w[i]).abs() as f64 <= tol, "{kind} line {line} col {i}: {} vs CPU {}", g[i], w[i]);
            }
        }
    }
}

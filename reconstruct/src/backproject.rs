//! Parallel-beam backprojection of filtered sinograms, the hot loop of the CPU backend.
//!
//! Geometry as in [`crate::geometry`]: output pixel `[row][col]` at `(x, y)` takes, for every angle, the
//! linearly interpolated filtered value at detector position `s = x cos + y sin + center`.
//!
//! How the loop is made fast (and deterministic):
//! * the filtered sinogram is copied once into rows padded with zeros on both sides, wide enough that every
//!   pixel of the square slice lands inside; the inner loop then has no bounds tests and no branches;
//! * per angle, `cos` and `sin` are precomputed; along an output row `s` is `s0 + col * cos` (one multiply and
//!   one add per pixel, no accumulated rounding drift), then truncation, the fraction, two loads and one
//!   multiply-add of the interpolation;
//! * output rows are processed in tiles of a few rows that stay in L1 while every angle streams over them,
//!   so each padded sinogram row is loaded once per tile;
//! * on x86-64 the same loop is compiled a second time with AVX2 (gathers) and chosen at run time; it
//!   performs the same IEEE operations in the same order (no FMA contraction), so both give the same bits;
//! * every output pixel sums its angles in acquisition order, so the result does not depend on how rows,
//!   tiles or slices are spread over threads.

use rayon::prelude::*;

/// One filtered sinogram prepared for backprojection: zero-padded rows and per-angle trigonometry.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Padded rows, `[angle][width]`; detector column `c` is at index `c + pad`.
    padded: Vec<f32>,
    width: usize,
    /// Per angle `(cos, sin)` as f32.
    trig: Vec<(f32, f32)>,
    /// Detector position of the axis plus the padding, per angle already folded into `s0` below.
    center_padded: f64,
}

/// Number of output rows per tile for slices of `out_size` (about 16 KiB of output per tile).
pub fn tile_rows(out_size: usize) -> usize {
    (4096 / out_size.max(1)).clamp(1, 16)
}

impl Prepared {
    /// Pads `filtered` (`[angle][col]`, `angles_rad.len()` rows of `n_cols`) for an `out_size` slice with
    /// the axis at `center`.
    pub fn new(filtered: &[f32], n_cols: usize, angles_rad: &[f32], center: f64, out_size: usize) -> Prepared {
        let reach = (out_size as f64) * std::f64::consts::FRAC_1_SQRT_2 + 2.0;
        let lo = (center - reach).floor().min(0.0);
        let hi = (center + reach).ceil().max(n_cols as f64);
        let pad = (-lo) as usize + 2;
        let width = pad + (hi as usize) + 3;
        let mut padded = vec![0f32; width * angles_rad.len()];
        for (a, row) in filtered.chunks(n_cols.max(1)).take(angles_rad.len()).enumerate() {
            padded[a * width + pad..a * width + pad + n_cols].copy_from_slice(row);
        }
        let trig = angles_rad
            .iter()
            .map(|&t| {
                let t = t as f64;
                (t.cos() as f32, t.sin() as f32)
            })
            .collect();
        Prepared { padded, width, trig, center_padded: center + pad as f64 }
    }

    /// Backprojects output rows `row0 .. row0 + tile.len() / out_size` of an `out_size` slice into `tile`
    /// (overwritten). Angles are taken [`ANGLE_BLOCK`] at a time per pass over an output row; each pixel
    /// still adds its angles one by one in acquisition order.
    pub fn backproject_tile(&self, out_size: usize, row0: usize, tile: &mut [f32]) {
        tile.iter_mut().for_each(|v| *v = 0.0);
        let h = (out_size as f32 - 1.0) * 0.5;
        let c0 = self.center_padded as f32;
        let max_index = (self.width - 2) as f32;
        let n_angles = self.trig.len();
        let mut a0 = 0;
        while a0 < n_angles {
            let k = ANGLE_BLOCK.min(n_angles - a0);
            for (r, out) in tile.chunks_mut(out_size).enumerate() {
                let y = h - (row0 + r) as f32;
                let mut rays = [Ray { q: &[], s0: 0.0, c: 0.0 }; ANGLE_BLOCK];
                let mut safe = true;
                for (j, ray) in rays.iter_mut().enumerate().take(k) {
                    let a = a0 + j;
                    let (cs, sn) = self.trig[a];
                    // s(col) = (col - h) cos + y sin + center + pad = s0 + col * cos
                    let s0 = c0 + y * sn - h * cs;
                    let s_end = s0 + (out_size as f32 - 1.0) * cs;
                    // The padding guarantees this; the check keeps the unchecked loads below sound.
                    safe &= s0 >= 0.0 && s_end >= 0.0 && s0 < max_index && s_end < max_index;
                    *ray = Ray { q: &self.padded[a * self.width..(a + 1) * self.width], s0, c: cs };
                }
                if safe && k == ANGLE_BLOCK {
                    accumulate_block(out, &rays);
                } else {
                    for ray in &rays[..k] {
                        accumulate_checked(out, ray);
                    }
                }
            }
            a0 += k;
        }
    }
}

/// Angles accumulated per pass over an output row.
pub const ANGLE_BLOCK: usize = 8;

/// One angle's contribution to one output row: the padded filtered row and `s = s0 + col * c`.
#[derive(Debug, Clone, Copy)]
struct Ray<'a> {
    q: &'a [f32],
    s0: f32,
    c: f32,
}

/// `out[x] += lerp(q_j, s0_j + x c_j)` for the angles of `rays` in order. The caller guarantees
/// `0 <= s < q.len() - 1` at both ends of the row for every ray (so everywhere: `s` is monotone in `x`).
#[inline]
fn accumulate_block(out: &mut [f32], rays: &[Ray<'_>; ANGLE_BLOCK]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present; index bounds are the caller's guarantee.
            unsafe { accumulate_avx512(out, rays) };
            return;
        }
    }
    // SAFETY: bounds guaranteed by the caller.
    unsafe { accumulate_scalar(out, rays, 0) }
}

/// The reference loop, from column `x0` on. Every vector path performs exactly these IEEE operations in
/// this order (multiply, add, truncate, subtract, multiply, add; no FMA), so all paths give the same bits.
#[inline(always)]
unsafe fn accumulate_scalar(out: &mut [f32], rays: &[Ray<'_>; ANGLE_BLOCK], x0: usize) {
    for (x, slot) in out.iter_mut().enumerate().skip(x0) {
        let mut o = *slot;
        for ray in rays {
            let s = ray.s0 + x as f32 * ray.c;
            let i = s as i32;
            let f = s - i as f32;
            // SAFETY: 0 <= i and i + 1 < q.len() (caller's guarantee).
            let (a, b) = unsafe { (*ray.q.get_unchecked(i as usize), *ray.q.get_unchecked(i as usize + 1)) };
            o += a + f * (b - a);
        }
        *slot = o;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_avx512(out: &mut [f32], rays: &[Ray<'_>; ANGLE_BLOCK]) {
    use std::arch::x86_64::*;
    let n = out.len();
    let lanes = _mm512_setr_ps(0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12., 13., 14., 15.);
    let s0: [__m512; ANGLE_BLOCK] = std::array::from_fn(|j| _mm512_set1_ps(rays[j].s0));
    let c: [__m512; ANGLE_BLOCK] = std::array::from_fn(|j| _mm512_set1_ps(rays[j].c));
    let op = out.as_mut_ptr();
    let mut x = 0;
    while x + 16 <= n {
        let xv = _mm512_add_ps(_mm512_set1_ps(x as f32), lanes);
        // SAFETY: x + 16 <= n.
        let mut o = unsafe { _mm512_loadu_ps(op.add(x)) };
        for j in 0..ANGLE_BLOCK {
            let s = _mm512_add_ps(s0[j], _mm512_mul_ps(xv, c[j]));
            let i = _mm512_cvttps_epi32(s);
            let f = _mm512_sub_ps(s, _mm512_cvtepi32_ps(i));
            let qp = rays[j].q.as_ptr();
            // SAFETY: indices within bounds (caller's guarantee).
            let (a, b) = unsafe { (_mm512_i32gather_ps::<4>(i, qp), _mm512_i32gather_ps::<4>(i, qp.add(1))) };
            o = _mm512_add_ps(o, _mm512_add_ps(a, _mm512_mul_ps(f, _mm512_sub_ps(b, a))));
        }
        // SAFETY: x + 16 <= n.
        unsafe { _mm512_storeu_ps(op.add(x), o) };
        x += 16;
    }
    // SAFETY: forwarded from the caller.
    unsafe { accumulate_scalar(out, rays, x) }
}

/// The same accumulation with bounds tests, for geometry the padding does not cover and for the last few
/// angles (never a different result: same operations, same order).
fn accumulate_checked(out: &mut [f32], ray: &Ray<'_>) {
    let q = ray.q;
    for (x, o) in out.iter_mut().enumerate() {
        let s = ray.s0 + x as f32 * ray.c;
        if s.is_nan() || s < 0.0 {
            continue;
        }
        let i = s as i32 as usize;
        let f = s - i as f32;
        if i + 1 < q.len() {
            *o += q[i] + f * (q[i + 1] - q[i]);
        }
    }
}

/// Backprojects one filtered sinogram `[angle][col]` into an `out_size x out_size` slice `[row][col]`,
/// parallel over row tiles (rayon): the per-stage CPU reference for the GPU kernel.
pub fn backproject_sinogram(
    filtered: &[f32],
    n_cols: usize,
    angles_rad: &[f32],
    center: f64,
    out_size: usize,
) -> Vec<f32> {
    let prep = Prepared::new(filtered, n_cols, angles_rad, center, out_size);
    let mut out = vec![0f32; out_size * out_size];
    let tr = tile_rows(out_size);
    out.par_chunks_mut(tr * out_size).enumerate().for_each(|(t, tile)| prep.backproject_tile(out_size, t * tr, tile));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector path and the scalar reference give the same bits on arbitrary data and geometry.
    #[test]
    fn vector_and_scalar_paths_agree_bit_for_bit() {
        let q: Vec<f32> = (0..400).map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.5).collect();
        let rays: [Ray<'_>; ANGLE_BLOCK] =
            std::array::from_fn(|j| Ray { q: &q, s0: 150.3 + 3.1 * j as f32, c: 0.37 - 0.11 * j as f32 });
        let mut fast = vec![0.25f32; 300];
        let mut slow = fast.clone();
        // Every ray stays inside q over the row (checked here), as accumulate_block requires.
        for r in &rays {
            let end = r.s0 + 299.0 * r.c;
            assert!(r.s0 >= 0.0 && end >= 0.0 && r.s0 < 398.0 && end < 398.0);
        }
        accumulate_block(&mut fast, &rays);
        // SAFETY: bounds checked above.
        unsafe { accumulate_scalar(&mut slow, &rays, 0) };
        assert!(fast.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut checked = vec![0.25f32; 300];
        for r in &rays {
            accumulate_checked(&mut checked, r);
        }
        assert!(checked.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    /// A single detector column lit at one angle backprojects to a line through the right pixels.
    #[test]
    fn single_ray_lands_where_the_geometry_says() {
        let n_cols = 16;
        let mut sino = vec![0f32; n_cols];
        sino[10] = 1.0;
        let out = backproject_sinogram(&sino, n_cols, &[0.0], 7.5, 16);
        // theta = 0: s = x + center, x = col - 7.5 => col = 10 is lit in every row.
        for r in 0..16 {
            for c in 0..16 {
                let want = if c == 10 { 1.0 } else { 0.0 };
                assert_eq!(out[r * 16 + c], want, "row {r} col {c}");
            }
        }
    }
}

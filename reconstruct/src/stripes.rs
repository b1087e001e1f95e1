//! Stripe (ring artefact) removal by Vo's sorting-based method (Vo, Atwood, Drakopoulos, Opt. Express 26,
//! 28396 (2018), algorithm 3, "remove_stripe_based_sorting"): sort every detector column of the sinogram
//! over angles, median-filter the sorted image across columns, and put the values back in their original
//! angular order. Defective columns (constant offsets or gains) show up as outliers across columns in the
//! sorted image and are removed by the median.

/// Removes stripes from one `-log` sinogram `[angle][col]` in place with a median window of `size`
/// columns (odd; algotom's default is 21). Deterministic: ties in the sort are broken by angle index.
pub fn remove_stripes_sorting(sino: &mut [f32], n_cols: usize, size: usize) {
    let n_angles = sino.len() / n_cols.max(1);
    if n_angles == 0 || n_cols < 3 || size < 3 {
        return;
    }
    let half = size / 2;
    // order[c][rank] = angle index of the rank-th smallest value in column c.
    let mut order = vec![0u32; n_cols * n_angles];
    let mut sorted = vec![0f32; n_cols * n_angles]; // [col][rank]
    let mut idx: Vec<u32> = Vec::with_capacity(n_angles);
    for c in 0..n_cols {
        idx.clear();
        idx.extend(0..n_angles as u32);
        idx.sort_by(|&a, &b| sino[a as usize * n_cols + c].total_cmp(&sino[b as usize * n_cols + c]).then(a.cmp(&b)));
        for (rank, &a) in idx.iter().enumerate() {
            order[c * n_angles + rank] = a;
            sorted[c * n_angles + rank] = sino[a as usize * n_cols + c];
        }
    }
    // Median across columns (window clipped at the edges by reflection) for every rank.
    let mut window = Vec::with_capacity(size);
    for rank in 0..n_angles {
        for c in 0..n_cols {
            window.clear();
            for k in 0..size {
                let j = reflect(c as isize + k as isize - half as isize, n_cols);
                window.push(sorted[j * n_angles + rank]);
            }
            let mid = window.len() / 2;
            let (_, m, _) = window.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
            let a = order[c * n_angles + rank] as usize;
            sino[a * n_cols + c] = *m;
        }
    }
}

fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    if i < 0 {
        i = -i - 1;
    }
    if i >= n {
        i = 2 * n - i - 1;
    }
    i.clamp(0, n - 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_column_offset_is_removed() {
        let (na, nc) = (50, 40);
        let mut s: Vec<f32> = (0..na * nc).map(|i| ((i / nc) as f32 * 0.1).sin() + (i % nc) as f32 * 0.01).collect();
        let clean = s.clone();
        for a in 0..na {
            s[a * nc + 20] += 0.5;
        }
        remove_stripes_sorting(&mut s, nc, 5);
        let err: f32 = (0..na).map(|a| (s[a * nc + 20] - clean[a * nc + 20]).abs()).fold(0.0, f32::max);
        assert!(err < 0.05, "stripe left: {err}");
    }
}

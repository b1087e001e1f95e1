//! Grid and block shapes of every kernel, shared by the GPU backend and the CPU harness so both run the
//! same threads.

use crate::SlabShape;

/// A kernel launch shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// Blocks per grid, `(x, y, z)`.
    pub grid: [u32; 3],
    /// Threads per block, `(x, y, z)`.
    pub block: [u32; 3],
}

/// A slab too large for one launch of a kernel.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} = {value} exceeds the CUDA grid limit {limit}; use smaller slabs (fewer rows per slab)")]
pub struct LaunchError {
    /// Which dimension.
    pub what: &'static str,
    /// Requested.
    pub value: u64,
    /// Limit.
    pub limit: u64,
}

/// Threads per block of the element-wise kernels.
pub const ELEMENTWISE_BLOCK: u32 = 256;
/// Upper bound on blocks of the element-wise kernels (they loop with a grid stride beyond it).
pub const ELEMENTWISE_MAX_BLOCKS: u32 = 16 * 1024;
/// Threads per block of the filter (consecutive output columns of one line).
pub const FILTER_BLOCK: u32 = 128;
/// Block of the backprojection: 32 consecutive x (one warp) by 8 rows.
pub const BACKPROJECT_BLOCK: [u32; 3] = [32, 8, 1];

/// Slices per block of `backproject_rows` (`BP_ROWS` in `cuda/backproject_rows.cu`).
pub const BACKPROJECT_ROWS: u32 = 8;
/// Angles per shared-memory tile of `backproject_rows` (`BP_TILE` in `cuda/backproject_rows.cu`).
pub const BACKPROJECT_TILE: u32 = 128;
/// Threads per block of the cuFFT filter's line kernels.
pub const LINE_BLOCK: u32 = 256;

const GRID_X_MAX: u64 = (1 << 31) - 1;
const GRID_YZ_MAX: u64 = 65_535;

fn check(what: &'static str, value: u64, limit: u64) -> Result<u32, LaunchError> {
    if value > limit {
        Err(LaunchError { what, value, limit })
    } else {
        Ok(value as u32)
    }
}

/// `normalize_minus_log` and `remove_zingers` over a slab: a grid-stride loop, so any size fits.
pub fn elementwise(shape: SlabShape) -> Launch {
    let blocks = (shape.len() as u64).div_ceil(ELEMENTWISE_BLOCK as u64).clamp(1, ELEMENTWISE_MAX_BLOCKS as u64);
    Launch { grid: [blocks as u32, 1, 1], block: [ELEMENTWISE_BLOCK, 1, 1] }
}

/// `filter_convolve`: x = line, y = block of output columns.
pub fn filter(shape: SlabShape) -> Result<Launch, LaunchError> {
    let lines = check("filter lines (rows x angles)", shape.lines().max(1), GRID_X_MAX)?;
    let col_blocks =
        check("filter column blocks", (shape.cols as u64).div_ceil(FILTER_BLOCK as u64).max(1), GRID_YZ_MAX)?;
    Ok(Launch { grid: [lines, col_blocks, 1], block: [FILTER_BLOCK, 1, 1] })
}

/// `backproject`: x, y = output pixel tiles, z = slice.
pub fn backproject(rows: u32, out_size: u32) -> Result<Launch, LaunchError> {
    let [bx, by, _] = BACKPROJECT_BLOCK;
    let gx = (out_size as u64).div_ceil(bx as u64).max(1);
    let gy = check("backprojection tile rows", (out_size as u64).div_ceil(by as u64).max(1), GRID_YZ_MAX)?;
    let gz = check("rows per slab", (rows as u64).max(1), GRID_YZ_MAX)?;
    Ok(Launch { grid: [gx as u32, gy, gz], block: BACKPROJECT_BLOCK })
}

/// `backproject_rows` (and `_f16`): x, y = output pixel tiles, z = group of [`BACKPROJECT_ROWS`] slices.
pub fn backproject_rows(rows: u32, out_size: u32) -> Result<Launch, LaunchError> {
    let [bx, by, _] = BACKPROJECT_BLOCK;
    let gx = (out_size as u64).div_ceil(bx as u64).max(1);
    let gy = check("backprojection tile rows", (out_size as u64).div_ceil(by as u64).max(1), GRID_YZ_MAX)?;
    let gz = check("slice groups per slab", (rows as u64).div_ceil(BACKPROJECT_ROWS as u64).max(1), GRID_YZ_MAX)?;
    Ok(Launch { grid: [gx as u32, gy, gz], block: BACKPROJECT_BLOCK })
}

/// `pad_lines`, `multiply_response`, `crop_lines`: x = line, y = block of `width` positions in the line.
pub fn lines(n_lines: u64, width: u32) -> Result<Launch, LaunchError> {
    let gx = check("filter lines (rows x angles)", n_lines.max(1), GRID_X_MAX)?;
    let gy = check("line blocks", (width as u64).div_ceil(LINE_BLOCK as u64).max(1), GRID_YZ_MAX)?;
    Ok(Launch { grid: [gx, gy, 1], block: [LINE_BLOCK, 1, 1] })
}

/// `to_half` over `n` values (grid-stride).
pub fn elementwise_len(n: u64) -> Launch {
    let blocks = n.div_ceil(ELEMENTWISE_BLOCK as u64).clamp(1, ELEMENTWISE_MAX_BLOCKS as u64);
    Launch { grid: [blocks as u32, 1, 1], block: [ELEMENTWISE_BLOCK, 1, 1] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_every_output() {
        let s = SlabShape { rows: 3, angles: 5, cols: 130 };
        let f = filter(s).unwrap();
        assert_eq!(f.grid, [15, 2, 1]);
        let b = backproject(3, 33).unwrap();
        assert_eq!(b.grid, [2, 5, 3]);
        assert!(backproject(70_000, 16).is_err());
        let e = elementwise(SlabShape { rows: 1000, angles: 1000, cols: 1000 });
        assert_eq!(e.grid[0], ELEMENTWISE_MAX_BLOCKS);
        assert_eq!(backproject_rows(17, 33).unwrap().grid, [2, 5, 3]);
    }

    /// The Rust constants are the kernel's `#define`s (grid shapes depend on them).
    #[test]
    fn row_constants_match_the_kernel_source() {
        let src = crate::BACKPROJECT_ROWS.source;
        assert!(src.contains(&format!("#define BP_ROWS {BACKPROJECT_ROWS}\n")));
        assert!(src.contains(&format!("#define BP_TILE {BACKPROJECT_TILE}\n")));
    }
}

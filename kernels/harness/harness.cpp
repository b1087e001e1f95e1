// The CUDA kernels of ../cuda compiled as C++ on the CPU, each with a C entry point that launches it over
// a whole grid (see shim.h). Built by build.rs with -ffp-contract=off so that, like the CPU backend, no
// multiply-add is fused.
#include "shim.h"

#include "../cuda/normalize.cu"
#include "../cuda/zingers.cu"
#include "../cuda/filter.cu"
#include "../cuda/backproject.cu"

extern "C" {

void harness_normalize_minus_log(const unsigned int grid[3], const unsigned int block[3], const float* raw,
                                 const float* dark, const float* flat_before, const float* flat_after,
                                 const float* flat_weight, float* out, unsigned int n_rows,
                                 unsigned int n_angles, unsigned int n_cols, float floor_value) {
    shim::launch(grid, block, [&] {
        normalize_minus_log(raw, dark, flat_before, flat_after, flat_weight, out, n_rows, n_angles, n_cols,
                            floor_value);
    });
}

void harness_remove_zingers(const unsigned int grid[3], const unsigned int block[3], const float* in,
                            float* out, unsigned int n_rows, unsigned int n_angles, unsigned int n_cols,
                            float threshold) {
    shim::launch(grid, block, [&] { remove_zingers(in, out, n_rows, n_angles, n_cols, threshold); });
}

void harness_filter_convolve(const unsigned int grid[3], const unsigned int block[3], const float* in,
                             const float* taps, float* out, unsigned int n_lines, unsigned int n_cols) {
    shim::launch(grid, block, [&] { filter_convolve(in, taps, out, n_lines, n_cols); });
}

void harness_backproject(const unsigned int grid[3], const unsigned int block[3], const float* filtered,
                         const float* cos_t, const float* sin_t, float* out, unsigned int n_rows,
                         unsigned int n_angles, unsigned int n_cols, unsigned int out_size, float c0,
                         int pad) {
    shim::launch(grid, block, [&] {
        backproject(filtered, cos_t, sin_t, out, n_rows, n_angles, n_cols, out_size, c0, pad);
    });
}

}  // extern "C"

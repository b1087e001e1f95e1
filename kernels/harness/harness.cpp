// The CUDA kernels of ../cuda compiled as C++ on the CPU, each with a C entry point that launches it over
// a whole grid (see shim.h). Built by build.rs with -ffp-contract=off so that, like the CPU backend, no
// multiply-add is fused.
#include "shim.h"

#include "../cuda/normalize.cu"
#include "../cuda/zingers.cu"
#include "../cuda/filter.cu"
#include "../cuda/backproject.cu"
#include "../cuda/backproject_rows.cu"
#include "../cuda/filter_fft.cu"

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

void harness_normalize_minus_log_u16(const unsigned int grid[3], const unsigned int block[3],
                                     const unsigned short* raw, const float* dark, const float* flat_before,
                                     const float* flat_after, const float* flat_weight, float* out,
                                     unsigned int n_rows, unsigned int n_angles, unsigned int n_cols,
                                     float floor_value) {
    shim::launch(grid, block, [&] {
        normalize_minus_log_u16(raw, dark, flat_before, flat_after, flat_weight, out, n_rows, n_angles, n_cols,
                                floor_value);
    });
}

// Returns 1 when every thread of every block reached the same barriers, 0 otherwise.
int harness_backproject_rows(const unsigned int grid[3], const unsigned int block[3], const float* filtered,
                             const float* cos_t, const float* sin_t, float* out, unsigned int n_rows,
                             unsigned int n_angles, unsigned int n_cols, unsigned int out_size, float c0,
                             int pad) {
    return shim::launch_cooperative(grid, block, [&] {
        backproject_rows(filtered, cos_t, sin_t, out, n_rows, n_angles, n_cols, out_size, c0, pad);
    });
}

int harness_backproject_rows_f16(const unsigned int grid[3], const unsigned int block[3],
                                 const unsigned short* filtered, const float* cos_t, const float* sin_t,
                                 float* out, unsigned int n_rows, unsigned int n_angles, unsigned int n_cols,
                                 unsigned int out_size, float c0, int pad) {
    return shim::launch_cooperative(grid, block, [&] {
        backproject_rows_f16(filtered, cos_t, sin_t, out, n_rows, n_angles, n_cols, out_size, c0, pad);
    });
}

void harness_to_half(const unsigned int grid[3], const unsigned int block[3], const float* in,
                     unsigned short* out, unsigned long long n) {
    shim::launch(grid, block, [&] { to_half(in, out, n); });
}

void harness_pad_lines(const unsigned int grid[3], const unsigned int block[3], const float* in, float* padded,
                       unsigned int n_lines, unsigned int n_cols, unsigned int padded_len) {
    shim::launch(grid, block, [&] { pad_lines(in, padded, n_lines, n_cols, padded_len); });
}

void harness_multiply_response(const unsigned int grid[3], const unsigned int block[3], float* spectrum,
                               const float* response, unsigned int n_lines, unsigned int n_freq) {
    shim::launch(grid, block, [&] {
        multiply_response(reinterpret_cast<float2_*>(spectrum), response, n_lines, n_freq);
    });
}

void harness_crop_lines(const unsigned int grid[3], const unsigned int block[3], const float* padded, float* out,
                        unsigned int n_lines, unsigned int n_cols, unsigned int padded_len) {
    shim::launch(grid, block, [&] { crop_lines(padded, out, n_lines, n_cols, padded_len); });
}

}  // extern "C"

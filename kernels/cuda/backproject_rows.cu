// Parallel-beam backprojection that reuses every fetched value: one thread per output pixel (x, y) of
// BP_ROWS consecutive slices, angles staged through shared memory in tiles of BP_TILE.
//
// Same geometry, frame and arithmetic as backproject.cu (see there), in the same order per pixel, so each
// slice is bit-for-bit what the one-slice kernel and the CPU backend compute (without FMA contraction):
//   s = (c0 + (h - y) sin - h cos) + x cos,  i = (int)s,  f = s - i,  acc += q[i] + f (q[i+1] - q[i]).
// What changes is the reuse:
// - cos/sin of a tile of BP_TILE angles are loaded once per block (256 threads, BP_ROWS slices) into
//   shared memory instead of once per thread from global memory;
// - the detector position s, its floor, fraction and bounds test are computed once per angle and used for
//   BP_ROWS slices (the same (x, y) projects to the same s in every slice of a parallel-beam slab), so the
//   per-update cost is two loads and three flops instead of the ~10 instructions of the position.
// Filtered values are stored as float (backproject_rows) or IEEE half (backproject_rows_f16, converted
// from float by to_half with round-to-nearest-even; arithmetic stays in float).
//
// Block (32, 8): as in backproject.cu. Grid: (ceil(out_size / 32), ceil(out_size / 8), ceil(rows / BP_ROWS)).
// Every thread of a block reaches every barrier (no early return before the loop), as CUDA requires.

#define BP_ROWS 8
#define BP_TILE 128

#ifndef BEAMLINE_HARNESS
// IEEE binary16 <-> float with PTX conversions (no header needed, so the source stays self-contained).
__device__ __forceinline__ float half_bits_to_float(unsigned short h) {
    float f;
    asm("{ .reg .b16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short float_to_half_bits(float f) {
    unsigned short h;
    asm("{ .reg .b16 t; cvt.rn.f16.f32 t, %1; mov.b16 %0, t; }" : "=h"(h) : "f"(f));
    return h;
}
#endif

__device__ __forceinline__ float load_filtered(const float* p, unsigned long long i) { return p[i]; }
__device__ __forceinline__ float load_filtered(const unsigned short* p, unsigned long long i) {
    return half_bits_to_float(p[i]);
}

template <class T>
__device__ __forceinline__ void backproject_rows_body(
    const T* __restrict__ filtered,
    const float* __restrict__ cos_t,
    const float* __restrict__ sin_t,
    float* __restrict__ out,
    unsigned int n_rows,
    unsigned int n_angles,
    unsigned int n_cols,
    unsigned int out_size,
    float c0,
    int pad)
{
    __shared__ float tile_cos[BP_TILE];
    __shared__ float tile_sin[BP_TILE];
    const unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    const unsigned int row0 = blockIdx.z * BP_ROWS;
    const unsigned int rows_here = row0 < n_rows ? (n_rows - row0 < BP_ROWS ? n_rows - row0 : BP_ROWS) : 0u;
    const bool inside = x < out_size && y < out_size;
    const unsigned int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const unsigned int n_threads = blockDim.x * blockDim.y;
    const float h = ((float)out_size - 1.0f) * 0.5f;
    const float py = h - (float)y;
    const float fx = (float)x;
    const unsigned long long sino_len = (unsigned long long)n_angles * n_cols;
    const T* sino = filtered + (unsigned long long)row0 * sino_len;
    float acc[BP_ROWS];
#pragma unroll
    for (int r = 0; r < BP_ROWS; ++r) {
        acc[r] = 0.0f;
    }
    for (unsigned int a0 = 0; a0 < n_angles; a0 += BP_TILE) {
        const unsigned int tile = n_angles - a0 < BP_TILE ? n_angles - a0 : BP_TILE;
        __syncthreads();  // every thread is done with the previous tile
        for (unsigned int k = tid; k < tile; k += n_threads) {
            tile_cos[k] = cos_t[a0 + k];
            tile_sin[k] = sin_t[a0 + k];
        }
        __syncthreads();
        if (!inside) {
            continue;
        }
        for (unsigned int k = 0; k < tile; ++k) {
            const float cs = tile_cos[k];
            const float sn = tile_sin[k];
            const float s0 = c0 + py * sn - h * cs;
            const float s = s0 + fx * cs;
            if (!(s >= 0.0f)) {
                continue;
            }
            const int i = (int)s;
            const float f = s - (float)i;
            const int c = i - pad;
            const bool lo_in = c >= 0 && c < (int)n_cols;
            const bool hi_in = c + 1 >= 0 && c + 1 < (int)n_cols;
            const unsigned long long base = (unsigned long long)(a0 + k) * n_cols + (unsigned long long)(long long)c;
            if (lo_in && hi_in && rows_here == BP_ROWS) {
                // The common case, without a branch per slice: both neighbours on the detector, full group.
#pragma unroll
                for (int r = 0; r < BP_ROWS; ++r) {
                    const unsigned long long at = (unsigned long long)r * sino_len + base;
                    const float lo = load_filtered(sino, at);
                    const float hi = load_filtered(sino, at + 1);
                    acc[r] += lo + f * (hi - lo);
                }
            } else {
#pragma unroll
                for (int r = 0; r < BP_ROWS; ++r) {
                    if ((unsigned int)r < rows_here) {
                        const unsigned long long at = (unsigned long long)r * sino_len + base;
                        const float lo = lo_in ? load_filtered(sino, at) : 0.0f;
                        const float hi = hi_in ? load_filtered(sino, at + 1) : 0.0f;
                        acc[r] += lo + f * (hi - lo);
                    }
                }
            }
        }
    }
    if (inside) {
#pragma unroll
        for (int r = 0; r < BP_ROWS; ++r) {
            if ((unsigned int)r < rows_here) {
                out[((unsigned long long)(row0 + r) * out_size + y) * out_size + x] = acc[r];
            }
        }
    }
}

extern "C" __global__ void backproject_rows(
    const float* __restrict__ filtered,
    const float* __restrict__ cos_t,
    const float* __restrict__ sin_t,
    float* __restrict__ out,
    unsigned int n_rows,
    unsigned int n_angles,
    unsigned int n_cols,
    unsigned int out_size,
    float c0,
    int pad)
{
    backproject_rows_body(filtered, cos_t, sin_t, out, n_rows, n_angles, n_cols, out_size, c0, pad);
}

extern "C" __global__ void backproject_rows_f16(
    const unsigned short* __restrict__ filtered,
    const float* __restrict__ cos_t,
    const float* __restrict__ sin_t,
    float* __restrict__ out,
    unsigned int n_rows,
    unsigned int n_angles,
    unsigned int n_cols,
    unsigned int out_size,
    float c0,
    int pad)
{
    backproject_rows_body(filtered, cos_t, sin_t, out, n_rows, n_angles, n_cols, out_size, c0, pad);
}

// float -> IEEE half (round to nearest even; beyond 65504 becomes infinity), grid-stride over n values.
extern "C" __global__ void to_half(const float* __restrict__ in, unsigned short* __restrict__ out,
                                   unsigned long long n)
{
    const unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = float_to_half_bits(in[i]);
    }
}

// CPU shim for the CUDA kernels in ../cuda: just enough of CUDA C for the kernel bodies to compile as C++
// and run one simulated thread at a time. Faithful for kernels that need no cooperation between threads
// (no __syncthreads, shared memory, warp intrinsics or atomics) -- which is all of ours.
#pragma once

#include <math.h>

// Qualifiers: kernels become ordinary functions.
#define __global__
#define __device__
#define __forceinline__ inline
// __restrict__ is a GCC/Clang keyword already.

/// CUDA's dim3 (only the fields the kernels read).
struct dim3 {
    unsigned int x, y, z;
};

namespace shim {
// Per OS thread, so tests running in parallel each simulate their own launch.
inline thread_local dim3 thread_idx{0, 0, 0};
inline thread_local dim3 block_idx{0, 0, 0};
inline thread_local dim3 block_dim{1, 1, 1};
inline thread_local dim3 grid_dim{1, 1, 1};

/// Runs `body` once per simulated thread of the whole grid, block by block, thread by thread (x fastest).
template <class F>
void launch(const unsigned int grid[3], const unsigned int block[3], F body) {
    grid_dim = dim3{grid[0], grid[1], grid[2]};
    block_dim = dim3{block[0], block[1], block[2]};
    for (unsigned int bz = 0; bz < grid[2]; ++bz)
        for (unsigned int by = 0; by < grid[1]; ++by)
            for (unsigned int bx = 0; bx < grid[0]; ++bx)
                for (unsigned int tz = 0; tz < block[2]; ++tz)
                    for (unsigned int ty = 0; ty < block[1]; ++ty)
                        for (unsigned int tx = 0; tx < block[0]; ++tx) {
                            block_idx = dim3{bx, by, bz};
                            thread_idx = dim3{tx, ty, tz};
                            body();
                        }
}
}  // namespace shim

#define threadIdx (shim::thread_idx)
#define blockIdx (shim::block_idx)
#define blockDim (shim::block_dim)
#define gridDim (shim::grid_dim)

// CPU shim for the CUDA kernels in ../cuda: just enough of CUDA C for the kernel bodies to compile as C++
// and run one simulated thread at a time.
//
// Two launchers:
// - `launch` runs the threads of the grid one after the other, each to completion: faithful for kernels
//   with no cooperation between threads (no __syncthreads, shared memory, warp intrinsics or atomics).
// - `launch_cooperative` runs every simulated thread of a block as a coroutine (ucontext) on its own stack:
//   __syncthreads() switches back to a scheduler, which resumes the next thread, so every thread of the
//   block reaches a barrier before any passes it, and `__shared__` variables (function statics) are shared
//   by the block's threads. A block whose threads do not all reach the same number of barriers is reported
//   (CUDA leaves that undefined). Warp intrinsics and atomics are still not simulated; no kernel uses them.
#pragma once

#include <math.h>
#include <string.h>
#include <ucontext.h>

#include <cstdint>
#include <functional>
#include <vector>

#define BEAMLINE_HARNESS 1

// Qualifiers: kernels become ordinary functions.
#define __global__
#define __device__
#define __forceinline__ inline
// One copy per OS thread (tests run in parallel); a block's coroutines share their OS thread, so its
// simulated threads share it, and blocks run one after another.
#define __shared__ static thread_local
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

/// State of one cooperative launch: the scheduler's context and one coroutine per thread of the block.
struct Coop {
    ucontext_t scheduler;
    std::vector<ucontext_t> threads;
    std::vector<char> done;
    unsigned int current = 0;
    const std::function<void()>* body = nullptr;
};
inline thread_local Coop* coop = nullptr;

inline void coroutine_entry() {
    Coop* c = coop;
    (*c->body)();
    c->done[c->current] = 1;  // returning resumes uc_link, the scheduler
}

/// __syncthreads(): in a cooperative launch, hand control back to the scheduler until every other thread
/// of the block has arrived. Outside one (plain `launch`) a barrier cannot be honoured: it aborts.
inline void sync_threads() {
    if (coop == nullptr) {
        abort();
    }
    swapcontext(&coop->threads[coop->current], &coop->scheduler);
}

/// Makes thread `t`'s coroutine start at the kernel body (kept out of line: getcontext returns twice).
__attribute__((noinline)) inline void init_coroutine(Coop& c, unsigned int t, char* stack, size_t bytes) {
    getcontext(&c.threads[t]);
    c.threads[t].uc_stack.ss_sp = stack;
    c.threads[t].uc_stack.ss_size = bytes;
    c.threads[t].uc_link = &c.scheduler;
    makecontext(&c.threads[t], coroutine_entry, 0);
    c.done[t] = 0;
}

/// Runs `body` for every thread of the grid, block by block; within a block the threads are coroutines
/// that run in turn from one barrier to the next. Returns false when a block's threads reached different
/// numbers of barriers.
template <class F>
bool launch_cooperative(const unsigned int grid[3], const unsigned int block[3], F body) {
    constexpr size_t stack_bytes = 64 * 1024;
    grid_dim = dim3{grid[0], grid[1], grid[2]};
    block_dim = dim3{block[0], block[1], block[2]};
    const unsigned int n = block[0] * block[1] * block[2];
    std::function<void()> fn = body;
    Coop c;
    c.body = &fn;
    c.threads.resize(n);
    c.done.resize(n);
    std::vector<char> stacks(static_cast<size_t>(n) * stack_bytes);
    coop = &c;
    bool consistent = true;
    for (unsigned int bz = 0; bz < grid[2]; ++bz)
        for (unsigned int by = 0; by < grid[1]; ++by)
            for (unsigned int bx = 0; bx < grid[0]; ++bx) {
                for (unsigned int t = 0; t < n; ++t) {
                    init_coroutine(c, t, stacks.data() + static_cast<size_t>(t) * stack_bytes, stack_bytes);
                }
                for (;;) {
                    unsigned int finished = 0, waiting = 0;
                    for (unsigned int t = 0; t < n; ++t) {
                        if (c.done[t]) {
                            continue;
                        }
                        c.current = t;
                        block_idx = dim3{bx, by, bz};
                        thread_idx = dim3{t % block[0], (t / block[0]) % block[1], t / (block[0] * block[1])};
                        swapcontext(&c.scheduler, &c.threads[t]);
                        if (c.done[t]) {
                            ++finished;
                        } else {
                            ++waiting;
                        }
                    }
                    if (waiting == 0) {
                        break;
                    }
                    if (finished > 0) {
                        // Some threads ended while others wait at a barrier: release them, but report it.
                        consistent = false;
                    }
                }
            }
    coop = nullptr;
    return consistent;
}

/// IEEE binary16 bits -> float (exact).
inline float half_bits_to_float(unsigned short h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    float f;
    if (exp == 0) {
        f = ldexpf(static_cast<float>(man), -24);  // zero or subnormal: man * 2^-24, exact
        uint32_t bits;
        memcpy(&bits, &f, 4);
        bits |= sign;
        memcpy(&f, &bits, 4);
        return f;
    }
    uint32_t bits = exp == 31 ? (sign | 0x7f800000u | (man << 13)) : (sign | ((exp + 112u) << 23) | (man << 13));
    memcpy(&f, &bits, 4);
    return f;
}

/// float -> IEEE binary16 bits, round to nearest even, overflow to infinity, NaN kept (as PTX cvt.rn.f16.f32).
inline unsigned short float_to_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t abs = x & 0x7fffffffu;
    if (abs >= 0x7f800000u) {  // inf or NaN
        return static_cast<unsigned short>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    }
    if (abs >= 0x477ff000u) {  // rounds to >= 65520: infinity
        return static_cast<unsigned short>(sign | 0x7c00u);
    }
    if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
        // value / 2^-24, rounded to nearest even (exact in float: a scaling by a power of two, then rint).
        float a;
        memcpy(&a, &abs, 4);
        const float q = nearbyintf(ldexpf(a, 24));  // default rounding mode: to nearest even
        return static_cast<unsigned short>(sign | static_cast<uint32_t>(q));
    }
    // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
    uint32_t h = ((abs >> 13) - (112u << 10));
    const uint32_t rest = abs & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) {
        ++h;  // may carry into the exponent, which is still correct (up to 0x7c00 = infinity)
    }
    return static_cast<unsigned short>(sign | h);
}
}  // namespace shim

#define __syncthreads() (shim::sync_threads())
using shim::float_to_half_bits;
using shim::half_bits_to_float;

#define threadIdx (shim::thread_idx)
#define blockIdx (shim::block_idx)
#define blockDim (shim::block_dim)
#define gridDim (shim::grid_dim)

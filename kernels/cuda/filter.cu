// Row filter as a direct real-space convolution, one thread per output value.
//
// The CPU backend filters by FFT: zero-pad a row of n values to L >= 2n, multiply by the real, even
// response H, transform back. That is exactly the circular convolution of the padded row with
// h = IFFT(H), and because L >= 2n no wrap-around reaches the n outputs, so
//     out[i] = sum_{j < n} in[j] * h[(i - j) mod L],    i < n.
// `taps` holds h[(d) mod L] for d = -(n-1) .. n-1 at index d + n - 1 (2n - 1 values, computed on the host
// from the CPU backend's frequency response, backprojection weight included).
//
// Threads of a warp take consecutive outputs of one line: `in[j]` is one broadcast load and
// `taps[i - j + n - 1]` consecutive addresses, so loads coalesce; the line (<= a few KiB) stays in L1.
// Cost is n multiply-adds per value, O(n^2) per line, against O(L log L) for cuFFT: chosen because the CPU
// harness can run it exactly as the GPU does (see the crate documentation).
//
// Grid: x = line (row * n_angles + angle), y * blockDim.x + threadIdx.x = output column.
extern "C" __global__ void filter_convolve(
    const float* __restrict__ in,
    const float* __restrict__ taps,
    float* __restrict__ out,
    unsigned int n_lines,
    unsigned int n_cols)
{
    const unsigned int line = blockIdx.x;
    const unsigned int col = blockIdx.y * blockDim.x + threadIdx.x;
    if (line >= n_lines || col >= n_cols) {
        return;
    }
    const float* x = in + (unsigned long long)line * n_cols;
    const float* h = taps + (n_cols - 1u) + col;  // h[-j] is the tap for input j
    float acc = 0.0f;
    for (unsigned int j = 0; j < n_cols; ++j) {
        acc += x[j] * h[-(int)j];
    }
    out[(unsigned long long)line * n_cols + col] = acc;
}

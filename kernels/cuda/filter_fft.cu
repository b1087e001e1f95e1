// The cuFFT filter's own kernels: cuFFT does the transforms (batched real-to-complex and back over every
// line of a chunk, padded length L = the CPU backend's padded_len(n_cols)); these three do the rest.
//
//   pad_lines:         in [line][n_cols]  -> padded [line][L], the row then zeros (the CPU pads the same way)
//   multiply_response: spectrum [line][L/2 + 1] (float2) *= response[k], the CPU backend's real, even
//                      frequency response (backprojection weight included) divided by L, so the inverse
//                      transform (unnormalised in cuFFT) needs no extra scaling
//   crop_lines:        padded [line][L]   -> out [line][n_cols], the first n_cols values
//
// All three are element-wise over a 2-D grid: x = line, y * blockDim.x + threadIdx.x = position in the line,
// so consecutive threads touch consecutive addresses. They are the parts of the cuFFT path the CPU harness
// can check (with a CPU FFT in between); cuFFT itself is checked against the CPU backend on a device only.
struct float2_ {
    float x, y;
};

extern "C" __global__ void pad_lines(
    const float* __restrict__ in,
    float* __restrict__ padded,
    unsigned int n_lines,
    unsigned int n_cols,
    unsigned int padded_len)
{
    const unsigned int line = blockIdx.x;
    const unsigned int k = blockIdx.y * blockDim.x + threadIdx.x;
    if (line >= n_lines || k >= padded_len) {
        return;
    }
    padded[(unsigned long long)line * padded_len + k] = k < n_cols ? in[(unsigned long long)line * n_cols + k] : 0.0f;
}

extern "C" __global__ void multiply_response(
    float2_* __restrict__ spectrum,
    const float* __restrict__ response,
    unsigned int n_lines,
    unsigned int n_freq)
{
    const unsigned int line = blockIdx.x;
    const unsigned int k = blockIdx.y * blockDim.x + threadIdx.x;
    if (line >= n_lines || k >= n_freq) {
        return;
    }
    float2_* v = spectrum + (unsigned long long)line * n_freq + k;
    const float h = response[k];
    v->x = v->x * h;
    v->y = v->y * h;
}

extern "C" __global__ void crop_lines(
    const float* __restrict__ padded,
    float* __restrict__ out,
    unsigned int n_lines,
    unsigned int n_cols,
    unsigned int padded_len)
{
    const unsigned int line = blockIdx.x;
    const unsigned int k = blockIdx.y * blockDim.x + threadIdx.x;
    if (line >= n_lines || k >= n_cols) {
        return;
    }
    out[(unsigned long long)line * n_cols + k] = padded[(unsigned long long)line * padded_len + k];
}

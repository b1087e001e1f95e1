// Dark/flat normalisation and -log, one thread per value (grid-stride loop over the whole slab).
//
// raw/out are [row][angle][col]; dark, flat_before, flat_after are [row][col]; flat_weight is [angle].
// flat = (1 - w) flat_before + w flat_after; t = (raw - dark) / (flat - dark); a transmission that is not
// positive or not finite is replaced by `floor_value` (the CPU backend's TRANSMISSION_FLOOR); out = -log(t).
// Consecutive threads take consecutive columns, so every load and store is coalesced.
// Two entry points share the body: `normalize_minus_log` reads float counts, `normalize_minus_log_u16`
// reads the detector's uint16 counts as uploaded (half the bytes of float over PCIe); a uint16 converts
// to float exactly, so both give the same values for the same counts.
template <class Raw>
__device__ __forceinline__ void normalize_minus_log_body(
    const Raw* __restrict__ raw,
    const float* __restrict__ dark,
    const float* __restrict__ flat_before,
    const float* __restrict__ flat_after,
    const float* __restrict__ flat_weight,
    float* __restrict__ out,
    unsigned int n_rows,
    unsigned int n_angles,
    unsigned int n_cols,
    float floor_value)
{
    const unsigned long long total = (unsigned long long)n_rows * n_angles * n_cols;
    const unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const unsigned long long line = i / n_cols;
        const unsigned int col = (unsigned int)(i - line * n_cols);
        const unsigned int angle = (unsigned int)(line % n_angles);
        const unsigned long long row = line / n_angles;
        const unsigned long long f = row * n_cols + col;
        const float w = flat_weight[angle];
        const float d = dark[f];
        const float flat = (1.0f - w) * flat_before[f] + w * flat_after[f];
        float t = ((float)raw[i] - d) / (flat - d);
        // Not positive, NaN or infinite: clamp (the comparison is false for NaN).
        if (!(t > 0.0f && t <= 3.402823466e38f)) {
            t = floor_value;
        }
        out[i] = -logf(t);
    }
}

#define NORMALIZE_ARGS                                                                                      \
    const float* __restrict__ dark, const float* __restrict__ flat_before, const float* __restrict__ flat_after, \
        const float* __restrict__ flat_weight, float* __restrict__ out, unsigned int n_rows, unsigned int n_angles, \
        unsigned int n_cols, float floor_value

extern "C" __global__ void normalize_minus_log(const float* __restrict__ raw, NORMALIZE_ARGS)
{
    normalize_minus_log_body(raw, dark, flat_before, flat_after, flat_weight, out, n_rows, n_angles, n_cols,
                             floor_value);
}

extern "C" __global__ void normalize_minus_log_u16(const unsigned short* __restrict__ raw, NORMALIZE_ARGS)
{
    normalize_minus_log_body(raw, dark, flat_before, flat_after, flat_weight, out, n_rows, n_angles, n_cols,
                             floor_value);
}

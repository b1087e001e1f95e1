// Zinger removal on -log sinograms, one thread per value (grid-stride loop): a value differing from the
// median of itself and its two angular neighbours by more than `threshold` becomes that median. At the
// first and last angle the missing neighbour is mirrored (angle 1, angle n-2). Reads `in`, writes `out`
// (never in place: neighbours must see original values). Sinograms with fewer than 3 angles are copied.
extern "C" __global__ void remove_zingers(
    const float* __restrict__ in,
    float* __restrict__ out,
    unsigned int n_rows,
    unsigned int n_angles,
    unsigned int n_cols,
    float threshold)
{
    const unsigned long long total = (unsigned long long)n_rows * n_angles * n_cols;
    const unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const float v = in[i];
        if (n_angles < 3) {
            out[i] = v;
            continue;
        }
        const unsigned int angle = (unsigned int)((i / n_cols) % n_angles);
        const unsigned long long base = i - (unsigned long long)angle * n_cols;
        const unsigned int prev = angle == 0 ? 1u : angle - 1u;
        const unsigned int next = angle + 1u == n_angles ? n_angles - 2u : angle + 1u;
        const float a = in[base + (unsigned long long)prev * n_cols];
        const float c = in[base + (unsigned long long)next * n_cols];
        const float med = fmaxf(fminf(a, v), fminf(fmaxf(a, v), c));
        out[i] = fabsf(v - med) > threshold ? med : v;
    }
}

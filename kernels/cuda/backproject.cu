// Parallel-beam backprojection, one thread per output pixel, looping over every angle.
//
// filtered is [row][angle][col] (filter weight included), out is [row][y][x] with out_size^2 pixels per
// slice. Geometry (reconstruct::geometry): pixel (y, x) is at (x - h, h - y) with h = (out_size - 1) / 2;
// at angle a it projects onto detector position s = c0 + (h - y) sin - h cos + x cos, computed in the
// padded column frame of the CPU backend (c0 = center + pad, so s >= 0 and truncation equals floor);
// column c of the detector is padded index c + pad, and columns outside the detector read as 0.
// Interpolation is linear and done by hand (not by texture hardware, whose 8-bit fraction would differ
// from the CPU backend): v = q[i] + f (q[i+1] - q[i]). Angles are summed in acquisition order.
//
// Block (32, 8): a warp covers 32 consecutive x of one output row, so stores are coalesced and, per angle,
// the warp reads a run of at most ~33 neighbouring detector values (cached in L1). cos/sin are broadcast
// loads. Grid: (ceil(out_size / 32), ceil(out_size / 8), rows).
extern "C" __global__ void backproject(
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
    const unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    const unsigned int row = blockIdx.z;
    if (x >= out_size || y >= out_size || row >= n_rows) {
        return;
    }
    const float h = ((float)out_size - 1.0f) * 0.5f;
    const float py = h - (float)y;
    const float fx = (float)x;
    const float* sino = filtered + (unsigned long long)row * n_angles * n_cols;
    float acc = 0.0f;
    for (unsigned int a = 0; a < n_angles; ++a) {
        const float cs = cos_t[a];
        const float sn = sin_t[a];
        const float s0 = c0 + py * sn - h * cs;
        const float s = s0 + fx * cs;
        if (!(s >= 0.0f)) {
            continue;
        }
        const int i = (int)s;
        const float f = s - (float)i;
        const int c = i - pad;
        const float* q = sino + (unsigned long long)a * n_cols;
        const float lo = (c >= 0 && c < (int)n_cols) ? q[c] : 0.0f;
        const float hi = (c + 1 >= 0 && c + 1 < (int)n_cols) ? q[c + 1] : 0.0f;
        acc += lo + f * (hi - lo);
    }
    out[((unsigned long long)row * out_size + y) * out_size + x] = acc;
}

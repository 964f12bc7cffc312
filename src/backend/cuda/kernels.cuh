// backend/cuda/kernels.cuh: the CUDA kernels of the backend, one small kernel per op of backend/backend.hpp.
//
// Shapes and semantics are those of the op interface (and of the CPU siblings in backend/cpu/ops_cpu.cpp); every
// kernel here has a CPU reference it is tested against. Written in the subset of cuda_compat.cuh so that the same
// code runs under the CPU emulator in CI. Included by cuda_backend.cu only (kernels have internal linkage).
//
// Conventions: element-wise kernels use grid-stride loops over int64 indices; row kernels use one block per row
// with a block reduction; attention uses one warp per query row. No kernel assumes a block size it does not get
// as a template parameter.
#pragma once

#include <cmath>

#include "backend/cuda/cuda_compat.cuh"

namespace hs {
namespace {
HS_CUDA_NAMESPACE_PRELUDE

constexpr int kThreads = 256;       // block size of element-wise and row kernels
constexpr int kAttnWarps = 4;       // query rows (warps) per attention block
constexpr int kMaxHeadDim = 256;    // attention kernels hold a query row of at most this many dims

// Grid for a grid-stride loop over n elements (capped: the loop covers the rest).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
    const int64_t blocks = (n + threads - 1) / threads;
    return unsigned(blocks < 1 ? 1 : (blocks > 65535 * 4 ? 65535 * 4 : blocks));
}

__device__ __forceinline__ int64_t global_index() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t global_stride() { return int64_t(gridDim.x) * blockDim.x; }

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), in T (float, or double where the CPU sibling
// sums in double); every thread gets the result. `scratch` is 32 T of shared memory; the trailing barrier lets the
// caller reuse it at once.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    T total = lane < n_warps ? scratch[lane] : T(0);
    total = warp_sum(total);
    __syncthreads();
    return total;
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float m = lane < n_warps ? scratch[lane] : -INFINITY;
    m = warp_max(m);
    __syncthreads();
    return m;
}

// ---------------------------------------------------------------- element-wise

// out[i] = T(in[i]): activations to the GEMM input type, and fp32 weights to their 16-bit copies.
template <class T>
__global__ void convert_kernel(const float* __restrict__ in, T* __restrict__ out, int64_t n) {
    for (int64_t i = global_index(); i < n; i += global_stride()) out[i] = hs_from_float<T>(in[i]);
}

__global__ void fill_kernel(float* x, int64_t n, float v) {
    for (int64_t i = global_index(); i < n; i += global_stride()) x[i] = v;
}

__global__ void add_kernel(float* x, const float* __restrict__ y, int64_t n) {
    for (int64_t i = global_index(); i < n; i += global_stride()) x[i] += y[i];
}

// y[r, i] += b[i]  over rows x n
__global__ void add_bias_kernel(float* y, const float* __restrict__ b, int64_t rows, int64_t n) {
    const int64_t total = rows * n;
    for (int64_t i = global_index(); i < total; i += global_stride()) y[i] += b[i % n];
}

// x[r, i] += a[r % a_rows, i]  over rows x n
__global__ void add_cyclic_kernel(float* x, const float* __restrict__ a, int64_t rows, int64_t a_rows, int64_t n) {
    const int64_t total = rows * n;
    for (int64_t i = global_index(); i < total; i += global_stride()) {
        const int64_t r = i / n, c = i - r * n;
        x[i] += a[(r % a_rows) * n + c];
    }
}

// x[r, col0 + c] *= s  over rows x cols (row stride `stride`)
__global__ void scale_columns_kernel(float* x, int64_t rows, int64_t stride, int64_t col0, int64_t cols, float s) {
    const int64_t total = rows * cols;
    for (int64_t i = global_index(); i < total; i += global_stride()) {
        const int64_t r = i / cols, c = i - r * cols;
        x[r * stride + col0 + c] *= s;
    }
}

// x[offsets[i] + j] = values[i * block + j]  over n_blocks x block
__global__ void write_blocks_kernel(float* x, const int64_t* __restrict__ offsets, int64_t n_blocks, int32_t block,
                                    const float* __restrict__ values) {
    const int64_t total = n_blocks * block;
    for (int64_t i = global_index(); i < total; i += global_stride()) {
        const int64_t k = i / block, j = i - k * block;
        x[offsets[k] + j] = values[i];
    }
}

// out[r, :] = scale * table[ids[r], :]; ids were checked on the host. One block per row.
template <class T>
__global__ void embed_kernel(const T* __restrict__ table, int64_t cols, const int32_t* __restrict__ ids, float scale,
                             float* __restrict__ out) {
    const int64_t r = blockIdx.x;
    const T* src = table + int64_t(ids[r]) * cols;
    float* dst = out + r * cols;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dst[i] = hs_to_float(src[i]) * scale;
}

// act = 0: SiLU, 1: GELU (tanh approximation), as the CPU sibling.
__device__ __forceinline__ float activation(float x, int act) {
    if (act == 0) return x / (1.0f + __expf(-x));
    const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

__global__ void gated_activation_kernel(const float* gate, const float* __restrict__ up, float* out, int64_t n,
                                        int act) {
    for (int64_t i = global_index(); i < n; i += global_stride()) out[i] = activation(gate[i], act) * up[i];
}

// ---------------------------------------------------------------- row kernels (one block per row)

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w.  out may equal x: each thread reads its own elements
// before it writes them.
__global__ void rmsnorm_kernel(const float* x, const float* __restrict__ w, float* out, int64_t n, float eps) {
    __shared__ float scratch[32];
    const float* xr = x + int64_t(blockIdx.x) * n;
    float* o = out + int64_t(blockIdx.x) * n;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, scratch);
    const float inv = rsqrtf(ss / float(n) + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * inv * w[i];
}

// Rotate-half RoPE in place on x [B*T, n_heads*d_head]; cos/sin tables [n_pos, d_head/2] computed on the host in
// double (as the CPU backend). inverse: rotate by minus the angle (the backward).
__global__ void rope_kernel(float* x, int64_t rows, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head,
                            const float* __restrict__ cos_t, const float* __restrict__ sin_t, int inverse) {
    const int32_t half = d_head / 2;
    const int64_t total = rows * n_heads * half;
    for (int64_t i = global_index(); i < total; i += global_stride()) {
        const int64_t j = i % half, rh = i / half, h = rh % n_heads, r = rh / n_heads;
        const int64_t pos = pos0 + r % seq;
        const float c = cos_t[pos * half + j], s = inverse ? -sin_t[pos * half + j] : sin_t[pos * half + j];
        float* v = x + r * int64_t(n_heads) * d_head + h * d_head;
        const float x1 = v[j], x2 = v[j + half];
        v[j] = x1 * c - x2 * s;
        v[j + half] = x2 * c + x1 * s;
    }
}

// ---------------------------------------------------------------- attention

// One chunk of up to 32 keys of an online softmax, for one query row held by a warp: lane i brings the score s
// of key i (valid: the key is visible), v_rows[jj * v_stride ..] is key jj's value row. Updates the running max m,
// the sum l and the lane's dims (d = lane + 32 i) of the unnormalised output acc.
template <int DPL>
__device__ __forceinline__ void online_softmax_step(float s, bool valid, int n_keys, const float* v_rows,
                                                    int64_t v_stride, int lane, int d_head, float& m, float& l,
                                                    float* acc) {
    const float m_new = fmaxf(m, warp_max(s));
    const float p = valid ? __expf(s - m_new) : 0.0f;
    const float corr = __expf(m - m_new);  // 0 on the first chunk (m = -inf)
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[i] *= corr;
    for (int jj = 0; jj < n_keys; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, p, jj);
        const float* vr = v_rows + jj * v_stride;
#pragma unroll
        for (int i = 0; i < DPL; ++i) {
            const int d = lane + 32 * i;
            if (d < d_head) acc[i] += pj * vr[d];
        }
    }
    m = m_new;
}

// z row of one head = acc / l; lane owns dims lane + 32 i.
template <int DPL>
__device__ __forceinline__ void store_head_row(float* zr, const float* acc, float l, int lane, int d_head) {
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
        const int d = lane + 32 * i;
        if (d < d_head) zr[d] = acc[i] * inv;
    }
}

// Causal (sliding-window) GQA attention, one warp per query row, online softmax over chunks of 32 keys:
// lane i scores key j0 + i against the query (held in shared memory, pre-scaled), the chunk's max and sum come
// from warp reductions, then every lane accumulates its dims (d = lane + 32 k) of p_j * v_j with p_j broadcast
// by shuffle. Keys are read once per query row; the score of a key is one lane's dot product (no per-key
// reduction). DPL = dims per lane = ceil(d_head / 32).
// grid (ceil(T / kAttnWarps), B * n_head), block kAttnWarps * 32.
template <int DPL>
__global__ void __launch_bounds__(kAttnWarps * 32)
attention_kernel(const float* __restrict__ q, const float* __restrict__ k_cache, const float* __restrict__ v_cache,
                 float* __restrict__ z, int64_t seq, int64_t pos0, int64_t cache_len, int32_t n_head,
                 int32_t n_head_kv, int32_t d_head, float scale, int32_t window) {
    __shared__ float q_s[kAttnWarps][kMaxHeadDim];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t t = int64_t(blockIdx.x) * kAttnWarps + warp;
    if (t >= seq) return;  // the whole warp leaves together; no block barrier below
    const int64_t b = blockIdx.y / n_head;
    const int32_t h = int32_t(blockIdx.y % n_head), kvh = h / (n_head / n_head_kv);
    const int64_t q_dim = int64_t(n_head) * d_head, kv_dim = int64_t(n_head_kv) * d_head;
    const float* qr = q + (b * seq + t) * q_dim + int64_t(h) * d_head;
    for (int d = lane; d < d_head; d += 32) q_s[warp][d] = qr[d] * scale;
    __syncwarp();

    const float* K = k_cache + b * cache_len * kv_dim + int64_t(kvh) * d_head;
    const float* V = v_cache + b * cache_len * kv_dim + int64_t(kvh) * d_head;
    const int64_t qpos = pos0 + t, hi = qpos + 1;
    const int64_t lo = window > 0 ? (qpos - window + 1 > 0 ? qpos - window + 1 : 0) : 0;

    float m = -INFINITY, l = 0.0f, acc[DPL];
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[i] = 0.0f;
    for (int64_t j0 = lo; j0 < hi; j0 += 32) {
        const int64_t j = j0 + lane;
        float s = -INFINITY;
        if (j < hi) {
            const float* kr = K + j * kv_dim;
            float dot = 0.0f;
            for (int d = 0; d < d_head; ++d) dot += q_s[warp][d] * kr[d];
            s = dot;
        }
        online_softmax_step<DPL>(s, j < hi, int(hi - j0 < 32 ? hi - j0 : 32), V + j0 * kv_dim, kv_dim, lane, d_head, m,
                                 l, acc);
    }
    store_head_row<DPL>(z + (b * seq + t) * q_dim + int64_t(h) * d_head, acc, l, lane, d_head);
}

// The same attention for d_head <= kTileHeadDim, with the keys and values a block needs staged in shared memory:
// a block is kTileWarps consecutive query rows of one (sequence, head), one warp per row; every tile of 32 keys is
// loaded once per block with coalesced reads (instead of once per row, one key row per lane) and each warp scores
// its row against the tile (lane = key; K rows padded to kTileHeadDim + 1 floats so the lanes hit different banks).
// Warps whose row is past the end still load tiles and meet every barrier. grid (ceil(T / kTileWarps), B * n_head),
// block kTileWarps * 32.
constexpr int kTileWarps = 8;
constexpr int kTileHeadDim = 128;

template <int DPL>
__global__ void __launch_bounds__(kTileWarps * 32)
attention_tiled_kernel(const float* __restrict__ q, const float* __restrict__ k_cache,
                       const float* __restrict__ v_cache, float* __restrict__ z, int64_t seq, int64_t pos0,
                       int64_t cache_len, int32_t n_head, int32_t n_head_kv, int32_t d_head, float scale,
                       int32_t window) {
    __shared__ float k_s[32][kTileHeadDim + 1];
    __shared__ float v_s[32][kTileHeadDim];
    __shared__ float q_s[kTileWarps][kTileHeadDim];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t t0 = int64_t(blockIdx.x) * kTileWarps, t = t0 + warp;
    const bool active = t < seq;
    const int64_t b = blockIdx.y / n_head;
    const int32_t h = int32_t(blockIdx.y % n_head), kvh = h / (n_head / n_head_kv);
    const int64_t q_dim = int64_t(n_head) * d_head, kv_dim = int64_t(n_head_kv) * d_head;
    if (active) {
        const float* qr = q + (b * seq + t) * q_dim + int64_t(h) * d_head;
        for (int d = lane; d < d_head; d += 32) q_s[warp][d] = qr[d] * scale;
    }
    const float* K = k_cache + b * cache_len * kv_dim + int64_t(kvh) * d_head;
    const float* V = v_cache + b * cache_len * kv_dim + int64_t(kvh) * d_head;
    // Keys of this row, and of the whole block.
    const int64_t qpos = pos0 + t, hi = qpos + 1;
    const int64_t lo = window > 0 ? (qpos - window + 1 > 0 ? qpos - window + 1 : 0) : 0;
    const int64_t t_last = (t0 + kTileWarps < seq ? t0 + kTileWarps : seq) - 1;
    const int64_t block_hi = pos0 + t_last + 1;
    const int64_t block_lo = window > 0 ? (pos0 + t0 - window + 1 > 0 ? pos0 + t0 - window + 1 : 0) : 0;

    float m = -INFINITY, l = 0.0f, acc[DPL];
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[i] = 0.0f;
    for (int64_t j0 = block_lo; j0 < block_hi; j0 += 32) {
        const int n_tile = int(block_hi - j0 < 32 ? block_hi - j0 : 32);
        __syncthreads();  // the previous tile is used up (and q_s is written, on the first pass)
        for (int e = threadIdx.x; e < n_tile * d_head; e += blockDim.x) {
            const int r = e / d_head, c = e - r * d_head;
            k_s[r][c] = K[(j0 + r) * kv_dim + c];
            v_s[r][c] = V[(j0 + r) * kv_dim + c];
        }
        __syncthreads();
        if (!active || j0 >= hi || j0 + n_tile <= lo) continue;  // warp-uniform: this row sees none of the tile
        const int64_t j = j0 + lane;
        const bool valid = lane < n_tile && j >= lo && j < hi;
        float s = -INFINITY;
        if (valid) {
            float dot = 0.0f;
            for (int d = 0; d < d_head; ++d) dot += q_s[warp][d] * k_s[lane][d];
            s = dot;
        }
        // the tile holds at least one key of this row, so the running max stays finite
        online_softmax_step<DPL>(s, valid, n_tile, &v_s[0][0], kTileHeadDim, lane, d_head, m, l, acc);
    }
    if (!active) return;
    store_head_row<DPL>(z + (b * seq + t) * q_dim + int64_t(h) * d_head, acc, l, lane, d_head);
}

// Softmax probabilities of chosen query rows: out [B, n_head, n_rows, n_keys], zero where masked.
// grid (n_rows, B * n_head), block kThreads; one block per (sequence, head, row).
__global__ void attention_probs_kernel(const float* __restrict__ q, const float* __restrict__ k_cache,
                                       const int32_t* __restrict__ rows, int64_t n_rows, float* __restrict__ out,
                                       int64_t seq, int64_t pos0, int64_t cache_len, int32_t n_head,
                                       int32_t n_head_kv, int32_t d_head, float scale, int32_t window) {
    __shared__ float scratch[32];
    const int64_t i = blockIdx.x, b = blockIdx.y / n_head;
    const int32_t h = int32_t(blockIdx.y % n_head), kvh = h / (n_head / n_head_kv);
    const int64_t q_dim = int64_t(n_head) * d_head, kv_dim = int64_t(n_head_kv) * d_head;
    const int64_t t = rows[i], n_keys = pos0 + seq, qpos = pos0 + t, hi = qpos + 1;
    const int64_t lo = window > 0 ? (qpos - window + 1 > 0 ? qpos - window + 1 : 0) : 0;
    const float* qr = q + (b * seq + t) * q_dim + int64_t(h) * d_head;
    const float* K = k_cache + b * cache_len * kv_dim + int64_t(kvh) * d_head;
    float* o = out + ((b * n_head + h) * n_rows + i) * n_keys;

    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n_keys; j += blockDim.x) {
        float s = 0.0f;
        if (j >= lo && j < hi) {
            const float* kr = K + j * kv_dim;
            for (int d = 0; d < d_head; ++d) s += qr[d] * kr[d];
            s *= scale;
            mx = fmaxf(mx, s);
        }
        o[j] = s;
    }
    mx = block_max(mx, scratch);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < n_keys; j += blockDim.x) {
        const float e = (j >= lo && j < hi) ? __expf(o[j] - mx) : 0.0f;
        o[j] = e;
        sum += e;
    }
    const float inv = 1.0f / block_sum(sum, scratch);
    for (int64_t j = threadIdx.x; j < n_keys; j += blockDim.x) o[j] *= inv;
}

// ---------------------------------------------------------------- backward kernels
// The CUDA siblings of backend/cpu/backward_cpu.hpp (same formulas; see there for the derivations).

// dx (+)= inv * w * dy - x * inv^3 / n * sum_j w_j dy_j x_j, one block per row. dx must not alias x or dy.
__global__ void rmsnorm_backward_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                        const float* __restrict__ dy, float* __restrict__ dx, int64_t n, float eps,
                                        int accumulate) {
    __shared__ double scratch[32];
    const int64_t off = int64_t(blockIdx.x) * n;
    double ss = 0, dot = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const double xi = x[off + i];
        ss += xi * xi;
        dot += double(w[i]) * double(dy[off + i]) * xi;
    }
    ss = block_sum(ss, scratch);
    dot = block_sum(dot, scratch);
    const double inv = 1.0 / sqrt(ss / double(n) + double(eps));
    const float a = float(inv), c = float(dot * inv * inv * inv / double(n));
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = a * w[i] * dy[off + i] - x[off + i] * c;
        dx[off + i] = accumulate ? dx[off + i] + v : v;
    }
}

// out = act(g) * u:  dgate = act'(g) * u * dout, dup = act(g) * dout. dgate may alias dout (read before written).
__global__ void gated_activation_backward_kernel(const float* gate, const float* __restrict__ up, const float* dout,
                                                 float* dgate, float* __restrict__ dup, int64_t n, int act) {
    for (int64_t i = global_index(); i < n; i += global_stride()) {
        const float g = gate[i], u = up[i], d = dout[i];
        float a, da;
        if (act == 0) {
            const float sig = 1.0f / (1.0f + expf(-g));
            a = g * sig;
            da = sig * (1.0f + g * (1.0f - sig));
        } else {
            const float th = tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g));
            a = 0.5f * g * (1.0f + th);
            da = 0.5f * (1.0f + th) + 0.5f * g * (1.0f - th * th) * 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * g * g);
        }
        dgate[i] = da * u * d;
        dup[i] = a * d;
    }
}

// Backward of training-form attention (keys/values of the same T positions, [B*T, kv_dim]); one warp per query
// row, lanes own dims d = lane + 32 k. Three passes over the visible keys: softmax statistics, D = sum_j P_j dP_j,
// then dq_i (in registers) and dk_j, dv_j (atomic adds: query rows and grouped heads share them). dk and dv must be
// zeroed before the launch. Same grid/block as attention_kernel.
template <int DPL>
__global__ void __launch_bounds__(kAttnWarps * 32)
attention_backward_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                          const float* __restrict__ dz, float* __restrict__ dq, float* dk, float* dv, int64_t seq,
                          int32_t n_head, int32_t n_head_kv, int32_t d_head, float scale, int32_t window) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t i = int64_t(blockIdx.x) * kAttnWarps + warp;
    if (i >= seq) return;
    const int64_t b = blockIdx.y / n_head;
    const int32_t h = int32_t(blockIdx.y % n_head), kvh = h / (n_head / n_head_kv);
    const int64_t q_dim = int64_t(n_head) * d_head, kv_dim = int64_t(n_head_kv) * d_head;
    const int64_t qoff = (b * seq + i) * q_dim + int64_t(h) * d_head, kvoff = b * seq * kv_dim + int64_t(kvh) * d_head;
    float qr[DPL], gr[DPL], dqr[DPL];
#pragma unroll
    for (int c = 0; c < DPL; ++c) {
        const int d = lane + 32 * c;
        qr[c] = d < d_head ? q[qoff + d] : 0.0f;
        gr[c] = d < d_head ? dz[qoff + d] : 0.0f;
        dqr[c] = 0.0f;
    }
    const int64_t hi = i + 1, lo = window > 0 ? (i - window + 1 > 0 ? i - window + 1 : 0) : 0;
    auto dot_row = [&](const float* base, const float* r) {
        float s = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const int d = lane + 32 * c;
            if (d < d_head) s += r[c] * base[d];
        }
        return warp_sum(s);
    };
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = lo; j < hi; ++j) {
        const float s = dot_row(k + kvoff + j * kv_dim, qr) * scale;
        const float m_new = fmaxf(m, s);
        l = l * __expf(m - m_new) + __expf(s - m_new);
        m = m_new;
    }
    const float inv_l = 1.0f / l;
    float D = 0.0f;
    for (int64_t j = lo; j < hi; ++j) {
        const float p = __expf(dot_row(k + kvoff + j * kv_dim, qr) * scale - m) * inv_l;
        D += p * dot_row(v + kvoff + j * kv_dim, gr);
    }
    for (int64_t j = lo; j < hi; ++j) {
        const float* kj = k + kvoff + j * kv_dim;
        const float p = __expf(dot_row(kj, qr) * scale - m) * inv_l;
        const float ds = p * (dot_row(v + kvoff + j * kv_dim, gr) - D) * scale;
        float* dkj = dk + kvoff + j * kv_dim;
        float* dvj = dv + kvoff + j * kv_dim;
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const int d = lane + 32 * c;
            if (d < d_head) {
                dqr[c] += ds * kj[d];
                atomicAdd(dkj + d, ds * qr[c]);
                atomicAdd(dvj + d, p * gr[c]);
            }
        }
    }
#pragma unroll
    for (int c = 0; c < DPL; ++c) {
        const int d = lane + 32 * c;
        if (d < d_head) dq[qoff + d] = dqr[c];
    }
}

// Cross-entropy per row, in place: logits <- grad_scale * (softmax - onehot(target)); loss = lse - x[target],
// correct = (first argmax == target). One block per row; sums in double as on the CPU.
__global__ void softmax_cross_entropy_kernel(float* logits, const int32_t* __restrict__ targets, int64_t V,
                                             double grad_scale, double* __restrict__ loss,
                                             uint8_t* __restrict__ correct) {
    __shared__ double scratch[32];
    __shared__ float best_v[32];
    __shared__ int64_t best_i[32];
    float* x = logits + int64_t(blockIdx.x) * V;
    const int64_t tgt = targets[blockIdx.x];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    // argmax, first index among equal maxima
    float bv = -INFINITY;
    int64_t bi = V;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
        if (x[j] > bv) bv = x[j], bi = j;  // j increases within a thread: the first of equal values stays
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    if (lane == 0) best_v[warp] = bv, best_i[warp] = bi;
    __syncthreads();
    bv = -INFINITY;
    bi = V;
    for (int w = 0; w < n_warps; ++w)
        if (best_v[w] > bv || (best_v[w] == bv && best_i[w] < bi)) bv = best_v[w], bi = best_i[w];
    const double mx = double(bv);
    double sum = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) sum += exp(double(x[j]) - mx);
    sum = block_sum(sum, scratch);
    const double lse = mx + log(sum);
    if (threadIdx.x == 0) {
        if (loss) loss[blockIdx.x] = lse - double(x[tgt]);
        if (correct) correct[blockIdx.x] = uint8_t(bi == tgt);
    }
    __syncthreads();  // x[tgt] has been read
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) x[j] = float(grad_scale * exp(double(x[j]) - lse));
    __syncthreads();
    if (threadIdx.x == 0) x[tgt] -= float(grad_scale);
}

// out[h] = sum over rows and the columns of block h of a * b (row stride `stride`), in double; one block per h.
__global__ void head_dots_kernel(const float* __restrict__ a, const float* __restrict__ b, int64_t rows,
                                 int64_t stride, int32_t block, double* __restrict__ out) {
    __shared__ double scratch[32];
    const int32_t h = blockIdx.x;
    const int64_t total = rows * block;
    double s = 0;
    for (int64_t e = threadIdx.x; e < total; e += blockDim.x) {
        const int64_t r = e / block, c = e - r * block;
        const int64_t at = r * stride + int64_t(h) * block + c;
        s += double(a[at]) * double(b[at]);
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) out[h] = s;
}

}  // namespace
}  // namespace hs

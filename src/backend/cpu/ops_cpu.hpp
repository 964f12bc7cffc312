// backend/cpu/ops_cpu.hpp: the CPU implementation of every op of backend.hpp, as free functions.
// Shapes and semantics are those documented in backend/backend.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backend/backend.hpp"

namespace hs::cpu {

class ThreadPool;  // backend/cpu/thread_pool.hpp

// exp(x) to ~2 ulp for x in [-87, 88], branch-free so that loops over it vectorise (inline for that reason: called
// through a symbol it kept the softmax scalar, 22% of a long prefill's time). exp(-inf) = 0.
inline float fast_exp(float x) {
    // exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2/2; exp(r) by its degree-6 Taylor polynomial
    // (truncation error r^7/7! < 1.3e-7 relative).
    const bool neg_inf = x < -1e30f;
    x = std::min(std::max(x, -87.0f), 88.0f);
    // floor(y) through a truncating conversion (|y| < 128): GCC does not vectorise std::floor under trapping math
    const float y = x * 1.44269504088896341f + 0.5f;
    const float t = float(int32_t(y));
    const float n = t > y ? t - 1.0f : t;
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
    float p = 1.3888889e-3f;
    p = p * r + 8.3333338e-3f;
    p = p * r + 4.1666668e-2f;
    p = p * r + 1.6666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = int32_t(n + 127.0f) << 23;  // 2^n (a memcpy, not std::bit_cast: nvcc reads this header as C++17)
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return neg_inf ? 0.0f : p * scale;
}

// In place: s[0, n) -> softmax over [lo, hi), 0 elsewhere. The max and the sum run in 16 lanes (lane k takes
// elements lo + k, lo + k + 16, ...): AVX-512 where the build targets it (fast_exp's steps on 16 floats), else the
// same lanes in scalar code.
void softmax_row(float* s, int64_t n, int64_t lo, int64_t hi);

void matmul_cpu(const float* x, const Matrix& w, float* y, int64_t rows, bool accumulate);
void rmsnorm_cpu(const float* x, const float* w, float* out, int64_t rows, int64_t n, float eps);
// cos/sin table for positions [0, n_pos): table[pos * half + j] for j < d_head/2.
struct RopeTable {
    float base = 0;
    int32_t d_head = 0;
    int64_t n_pos = 0;
    std::vector<float> cos, sin;
};
void rope_table_extend(RopeTable& t, float base, int32_t d_head, int64_t n_pos);
void rope_cpu(float* x, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head,
              const RopeTable& table);
void store_kv_cpu(const float* kv, float* cache, int64_t batch, int64_t seq, int64_t pos0, int64_t cache_len,
                  int64_t kv_dim);
// With a pool of several threads and few queries per head (decode), the heads are shared out over the pool's
// threads (each head's products are small enough that OpenBLAS runs them on the calling thread); otherwise the
// heads run one after the other and OpenBLAS threads the larger products itself. The result is the same.
void attention_cpu(const AttentionArgs& a, ThreadPool* pool = nullptr);
void attention_probs_cpu(const AttentionArgs& a, const int32_t* rows, int64_t n_rows, float* out);
void gated_activation_cpu(const float* gate, const float* up, float* out, int64_t n, Activation act);

}  // namespace hs::cpu

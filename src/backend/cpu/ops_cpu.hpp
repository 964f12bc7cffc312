// backend/cpu/ops_cpu.hpp: the CPU implementation of every op of backend.hpp, as free functions.
// Shapes and semantics are those documented in backend/backend.hpp.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.hpp"

namespace hs::cpu {

class ThreadPool;  // backend/cpu/thread_pool.hpp

// exp(x) to ~2 ulp for x in [-87, 88], branch-free so that loops over it vectorise. exp(-inf) = 0.
float fast_exp(float x);

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

// CPU ops: OpenBLAS for every matrix product, plain loops (written to vectorise) for the rest.
#include "backend/cpu/ops_cpu.hpp"

#include "backend/cpu/thread_pool.hpp"

#include <cblas.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace hs::cpu {

#if defined(__AVX512F__)
namespace {
// fast_exp on 16 lanes, the same steps (the scalar form's floor, clamps and polynomial; FMAs where the compiler
// contracts the scalar form's multiply-adds too).
inline __m512 exp16(__m512 x) {
    const __mmask16 neg_inf = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-1e30f), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 y = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f));
    const __m512 n = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.3888889e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3333338e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1666668e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666667e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_cvttps_epi32(_mm512_add_ps(n, _mm512_set1_ps(127.0f))), 23);
    return _mm512_maskz_mul_ps(static_cast<__mmask16>(~neg_inf), p, _mm512_castsi512_ps(e));
}
inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }
}  // namespace

void softmax_row(float* s, int64_t n, int64_t lo, int64_t hi) {
    const int64_t m = hi - lo;
    float* x = s + lo;
    __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t j = 0; j < m; j += 16)
        vmax = _mm512_mask_max_ps(vmax, tail_mask(m - j), vmax, _mm512_maskz_loadu_ps(tail_mask(m - j), x + j));
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t j = 0; j < m; j += 16) {
        const __mmask16 k = tail_mask(m - j);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), mx));
        _mm512_mask_storeu_ps(x + j, k, e);
        vsum = _mm512_mask_add_ps(vsum, k, vsum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    for (int64_t j = 0; j < m; j += 16) {
        const __mmask16 k = tail_mask(m - j);
        _mm512_mask_storeu_ps(x + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + j), inv));
    }
    std::fill(s, s + lo, 0.0f);
    std::fill(s + hi, s + n, 0.0f);
}
#else
void softmax_row(float* s, int64_t n, int64_t lo, int64_t hi) {
    constexpr int64_t kLanes = 16;  // as the AVX-512 form: 16 partial maxima and sums
    const int64_t m = hi - lo, full = m / kLanes * kLanes;
    float* x = s + lo;
    float lane[kLanes];
    std::fill(lane, lane + kLanes, -std::numeric_limits<float>::infinity());
    for (int64_t j = 0; j < full; j += kLanes)
        for (int64_t k = 0; k < kLanes; ++k) lane[k] = std::max(lane[k], x[j + k]);
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t k = 0; k < kLanes; ++k) mx = std::max(mx, lane[k]);
    for (int64_t j = full; j < m; ++j) mx = std::max(mx, x[j]);
    for (int64_t j = 0; j < m; ++j) x[j] = fast_exp(x[j] - mx);
    std::fill(lane, lane + kLanes, 0.0f);
    for (int64_t j = 0; j < full; j += kLanes)
        for (int64_t k = 0; k < kLanes; ++k) lane[k] += x[j + k];
    float sum = 0;
    for (int64_t k = 0; k < kLanes; ++k) sum += lane[k];
    for (int64_t j = full; j < m; ++j) sum += x[j];
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < m; ++j) x[j] *= inv;
    std::fill(s, s + lo, 0.0f);
    std::fill(s + hi, s + n, 0.0f);
}
#endif

void matmul_cpu(const float* x, const Matrix& w, float* y, int64_t rows, bool accumulate) {
    if (rows == 0) return;
    if (rows == 1) {
        // One row (decode): a GEMV reads W once. OpenBLAS's SGEMM packs all of W first even for one row (its copy
        // routine took 31% of an evaluation's time; the output head 49152 x 576: 62 vs 23 ms per token here).
        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(w.rows), int(w.cols), 1.0f, w.data, int(w.cols), x, 1,
                    accumulate ? 1.0f : 0.0f, y, 1);
        return;
    }
    // Row-major x[rows, in] . W[out, in]^T -> y[rows, out]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(w.rows), int(w.cols), 1.0f, x,
                int(w.cols), w.data, int(w.cols), accumulate ? 1.0f : 0.0f, y, int(w.rows));
}

void rmsnorm_cpu(const float* x, const float* w, float* out, int64_t rows, int64_t n, float eps) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* o = out + r * n;
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
        const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
        for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * inv * w[i];
    }
}

void rope_table_extend(RopeTable& t, float base, int32_t d_head, int64_t n_pos) {
    if (t.base == base && t.d_head == d_head && t.n_pos >= n_pos) return;
    if (t.base != base || t.d_head != d_head) t = RopeTable{base, d_head, 0, {}, {}};
    n_pos = std::max<int64_t>(n_pos, std::max<int64_t>(2 * t.n_pos, 256));
    const int32_t half = d_head / 2;
    t.cos.resize(size_t(n_pos) * half);
    t.sin.resize(size_t(n_pos) * half);
    for (int32_t j = 0; j < half; ++j) {
        // HF: inv_freq_j = 1 / base^(2j / d_head); angles in double, rounded once.
        const double inv_freq = 1.0 / std::pow(double(base), double(2 * j) / double(d_head));
        for (int64_t p = t.n_pos; p < n_pos; ++p) {
            t.cos[p * half + j] = float(std::cos(double(p) * inv_freq));
            t.sin[p * half + j] = float(std::sin(double(p) * inv_freq));
        }
    }
    t.n_pos = n_pos;
}

void rope_cpu(float* x, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head,
              const RopeTable& table) {
    const int32_t half = d_head / 2;
    const int64_t width = int64_t(n_heads) * d_head;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < seq; ++t) {
            const float* c = table.cos.data() + (pos0 + t) * half;
            const float* s = table.sin.data() + (pos0 + t) * half;
            float* row = x + (b * seq + t) * width;
            for (int32_t h = 0; h < n_heads; ++h) {
                float* v = row + int64_t(h) * d_head;
                for (int32_t j = 0; j < half; ++j) {
                    // rotate-half: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)
                    const float x1 = v[j], x2 = v[j + half];
                    v[j] = x1 * c[j] - x2 * s[j];
                    v[j + half] = x2 * c[j] + x1 * s[j];
                }
            }
        }
}

void store_kv_cpu(const float* kv, float* cache, int64_t batch, int64_t seq, int64_t pos0, int64_t cache_len,
                  int64_t kv_dim) {
    for (int64_t b = 0; b < batch; ++b)
        std::memcpy(cache + (b * cache_len + pos0) * kv_dim, kv + b * seq * kv_dim,
                    sizeof(float) * size_t(seq * kv_dim));
}

namespace {

// First and one-past-last visible key of the query at absolute position qpos.
inline void visible_keys(const AttentionArgs& a, int64_t qpos, int64_t& lo, int64_t& hi) {
    hi = qpos + 1;
    lo = a.window > 0 ? std::max<int64_t>(0, qpos - a.window + 1) : 0;
}

constexpr int64_t kQueryTile = 128;  // query rows per score tile: bounds scratch to kQueryTile x keys

}  // namespace

namespace {

// Head h of sequence b: z[b, :, h] = softmax(q k^T * scale) v over the visible keys; scores is scratch.
void attention_head(const AttentionArgs& a, int64_t b, int32_t h, std::vector<float>& scores) {
    const int64_t q_dim = int64_t(a.n_head) * a.d_head, kv_dim = int64_t(a.n_head_kv) * a.d_head;
    const int32_t group = a.n_head / a.n_head_kv;
    const int32_t kvh = h / group;  // consecutive query heads share a kv head
    const float* K = a.k_cache + b * a.cache_len * kv_dim + int64_t(kvh) * a.d_head;
    const float* V = a.v_cache + b * a.cache_len * kv_dim + int64_t(kvh) * a.d_head;
    for (int64_t t0 = 0; t0 < a.seq; t0 += kQueryTile) {
        const int64_t nt = std::min(kQueryTile, a.seq - t0);
        const int64_t n_keys = a.pos0 + t0 + nt;  // keys visible to the last query of the tile
        // With a sliding window only keys from the first query's window on are read (Gemma 3's local layers:
        // ~window + tile keys per tile instead of every key before it).
        const int64_t k0 = a.window > 0 ? std::max<int64_t>(0, a.pos0 + t0 - a.window + 1) : 0;
        const int64_t nk = n_keys - k0;
        scores.resize(size_t(nt * nk));
        const float* Q = a.q + (b * a.seq + t0) * q_dim + int64_t(h) * a.d_head;
        // scores[nt, nk] = scale * Q[nt, d_head] . K[k0 .. n_keys, d_head]^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nt), int(nk), a.d_head, a.scale, Q,
                    int(q_dim), K + k0 * kv_dim, int(kv_dim), 0.0f, scores.data(), int(nk));
        for (int64_t i = 0; i < nt; ++i) {
            int64_t lo, hi;
            visible_keys(a, a.pos0 + t0 + i, lo, hi);
            softmax_row(scores.data() + i * nk, nk, lo - k0, hi - k0);
        }
        // Z[nt, d_head] = P[nt, nk] . V[k0 .. n_keys, d_head]
        float* Z = a.z + (b * a.seq + t0) * q_dim + int64_t(h) * a.d_head;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(nt), a.d_head, int(nk), 1.0f,
                    scores.data(), int(nk), V + k0 * kv_dim, int(kv_dim), 0.0f, Z, int(q_dim));
    }
}

// Multiply-adds of one head's larger product below which OpenBLAS runs an SGEMM on the calling thread alone (its
// interface/gemm.c threshold, 65536 x GEMM_MULTITHREAD_THRESHOLD = 4): such heads can run on our threads side by side.
constexpr int64_t kBlasSingleThreadMacs = 65536 * 4;

}  // namespace

void attention_cpu(const AttentionArgs& a, ThreadPool* pool) {
    const int64_t nt = std::min(kQueryTile, a.seq);
    const int64_t keys = a.window > 0 ? std::min(a.pos0 + a.seq, a.window + nt) : a.pos0 + a.seq;  // per tile, at most
    const bool parallel = pool && pool->size() > 1 && a.batch * a.n_head > 1 &&
                          nt * keys * a.d_head < kBlasSingleThreadMacs;
    if (parallel) {
        pool->parallel_items(a.batch * a.n_head, [&](int64_t i0, int64_t i1) {
            std::vector<float> scores;
            for (int64_t i = i0; i < i1; ++i) attention_head(a, i / a.n_head, int32_t(i % a.n_head), scores);
        });
        return;
    }
    std::vector<float> scores;
    for (int64_t b = 0; b < a.batch; ++b)
        for (int32_t h = 0; h < a.n_head; ++h) attention_head(a, b, h, scores);
}

void attention_probs_cpu(const AttentionArgs& a, const int32_t* rows, int64_t n_rows, float* out) {
    const int64_t q_dim = int64_t(a.n_head) * a.d_head, kv_dim = int64_t(a.n_head_kv) * a.d_head;
    const int64_t n_keys = a.pos0 + a.seq;
    const int32_t group = a.n_head / a.n_head_kv;
    for (int64_t b = 0; b < a.batch; ++b)
        for (int32_t h = 0; h < a.n_head; ++h) {
            const float* K = a.k_cache + b * a.cache_len * kv_dim + int64_t(h / group) * a.d_head;
            for (int64_t i = 0; i < n_rows; ++i) {
                const int64_t t = rows[i];
                const float* q = a.q + (b * a.seq + t) * q_dim + int64_t(h) * a.d_head;
                float* s = out + ((b * a.n_head + h) * n_rows + i) * n_keys;
                cblas_sgemv(CblasRowMajor, CblasNoTrans, int(n_keys), a.d_head, a.scale, K, int(kv_dim), q, 1, 0.0f,
                            s, 1);
                int64_t lo, hi;
                visible_keys(a, a.pos0 + t, lo, hi);
                softmax_row(s, n_keys, lo, hi);
            }
        }
}

void gated_activation_cpu(const float* gate, const float* up, float* out, int64_t n, Activation act) {
    int64_t i0 = 0;
#if defined(__AVX512F__)
    // 16 at a time with exp16 (the scalar loops below stay for the tail and for builds without AVX-512)
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i0 + 16 <= n; i0 += 16) {
        const __m512 x = _mm512_loadu_ps(gate + i0), v = _mm512_loadu_ps(up + i0);
        __m512 y;
        if (act == Activation::SILU) {
            y = _mm512_div_ps(x, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        } else {
            const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
            const __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f),
                                           _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
            const __m512 e = exp16(_mm512_add_ps(u, u));
            const __m512 th = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
            y = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(one, th));
        }
        _mm512_storeu_ps(out + i0, _mm512_mul_ps(y, v));
    }
#endif
    if (act == Activation::SILU) {
        for (int64_t i = i0; i < n; ++i) out[i] = gate[i] / (1.0f + fast_exp(-gate[i])) * up[i];
    } else {
        // GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); tanh(u) = 1 - 2/(e^{2u}+1)
        for (int64_t i = i0; i < n; ++i) {
            const float x = gate[i];
            const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            const float th = 1.0f - 2.0f / (fast_exp(2.0f * u) + 1.0f);
            out[i] = 0.5f * x * (1.0f + th) * up[i];
        }
    }
}

}  // namespace hs::cpu

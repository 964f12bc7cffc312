// backend/cpu/backward_cpu.hpp: the CPU backward ops, templated on the scalar type.
//
// The CPU backend instantiates them with float (production); the gradient-check tests instantiate them with double
// and compare against central finite differences of the matching double forward (also here, *_fwd), so every op is
// checked in fp64 and the float instantiation is checked against the double one. Shapes and semantics are those of
// the backward ops documented in backend/backend.hpp. Attention here is the training form: keys and values of the
// same T positions ([B*T, kv_dim], positions 0..T-1), causal, optional sliding window.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "model/config.hpp"

namespace hs::cpu {

// ---------------------------------------------------------------- matmul
// y[rows, out] = x[rows, in] . W[out, in]^T
template <class T>
void matmul_fwd(const T* x, const T* W, int64_t out, int64_t in, T* y, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) {
            T s = 0;
            for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * W[o * in + i];
            y[r * out + o] = s;
        }
}
// dx[rows, in] (+)= dy[rows, out] . W[out, in]
template <class T>
void matmul_dx(const T* dy, const T* W, int64_t out, int64_t in, T* dx, int64_t rows, bool accumulate) {
    for (int64_t r = 0; r < rows; ++r) {
        T* d = dx + r * in;
        if (!accumulate) std::fill(d, d + in, T(0));
        for (int64_t o = 0; o < out; ++o) {
            const T g = dy[r * out + o];
            const T* w = W + o * in;
            for (int64_t i = 0; i < in; ++i) d[i] += g * w[i];
        }
    }
}

// ---------------------------------------------------------------- RMSNorm
template <class T>
void rmsnorm_fwd(const T* x, const T* w, T* y, int64_t rows, int64_t n, double eps) {
    for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += double(x[r * n + i]) * double(x[r * n + i]);
        const T inv = T(1.0 / std::sqrt(ss / double(n) + eps));
        for (int64_t i = 0; i < n; ++i) y[r * n + i] = x[r * n + i] * inv * w[i];
    }
}
// y = x * inv * w with inv = (mean(x^2) + eps)^(-1/2):
//   dx_i = inv * w_i dy_i - x_i * inv^3 / n * sum_j w_j dy_j x_j          (dx (+)= ; dx may not alias dy)
template <class T>
void rmsnorm_backward(const T* x, const T* w, const T* dy, T* dx, int64_t rows, int64_t n, double eps,
                      bool accumulate) {
    for (int64_t r = 0; r < rows; ++r) {
        const T* xr = x + r * n;
        const T* g = dy + r * n;
        T* o = dx + r * n;
        double ss = 0, dot = 0;
        for (int64_t i = 0; i < n; ++i) {
            ss += double(xr[i]) * double(xr[i]);
            dot += double(w[i]) * double(g[i]) * double(xr[i]);
        }
        const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
        const T a = T(inv), c = T(dot * inv * inv * inv / double(n));
        for (int64_t i = 0; i < n; ++i) {
            const T v = a * w[i] * g[i] - xr[i] * c;
            o[i] = accumulate ? o[i] + v : v;
        }
    }
}

// ---------------------------------------------------------------- RoPE
// Rotate-half RoPE in place with tables cos/sin[pos * (d_head/2) + j]; inverse = rotation by minus the angle,
// which is the backward of the forward rotation (the rotation is orthogonal).
template <class T, class C>
void rope_apply(T* x, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head, const C* cos_t,
                const C* sin_t, bool inverse) {
    const int32_t half = d_head / 2;
    const int64_t width = int64_t(n_heads) * d_head;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < seq; ++t) {
            const C* c = cos_t + (pos0 + t) * half;
            const C* s = sin_t + (pos0 + t) * half;
            T* row = x + (b * seq + t) * width;
            for (int32_t h = 0; h < n_heads; ++h) {
                T* v = row + int64_t(h) * d_head;
                for (int32_t j = 0; j < half; ++j) {
                    const T x1 = v[j], x2 = v[j + half], cj = T(c[j]), sj = inverse ? -T(s[j]) : T(s[j]);
                    v[j] = x1 * cj - x2 * sj;
                    v[j + half] = x2 * cj + x1 * sj;
                }
            }
        }
}

// ---------------------------------------------------------------- gated activation
template <class T>
inline T gelu_tanh_u(T x) { return T(0.7978845608028654) * (x + T(0.044715) * x * x * x); }

template <class T>
void gated_activation_fwd(const T* gate, const T* up, T* out, int64_t n, Activation act) {
    for (int64_t i = 0; i < n; ++i) {
        const T g = gate[i];
        if (act == Activation::SILU) {
            out[i] = g / (T(1) + std::exp(-g)) * up[i];
        } else {
            out[i] = T(0.5) * g * (T(1) + std::tanh(gelu_tanh_u(g))) * up[i];
        }
    }
}
// out = act(g) * u:  dg = act'(g) * u * dout,  du = act(g) * dout. dgate may alias dout.
template <class T>
void gated_activation_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t n,
                               Activation act) {
    for (int64_t i = 0; i < n; ++i) {
        const T g = gate[i], u = up[i], d = dout[i];
        T a, da;
        if (act == Activation::SILU) {
            const T sig = T(1) / (T(1) + std::exp(-g));
            a = g * sig;
            da = sig * (T(1) + g * (T(1) - sig));
        } else {
            const T th = std::tanh(gelu_tanh_u(g));
            a = T(0.5) * g * (T(1) + th);
            da = T(0.5) * (T(1) + th) +
                 T(0.5) * g * (T(1) - th * th) * T(0.7978845608028654) * (T(1) + T(3 * 0.044715) * g * g);
        }
        dgate[i] = da * u * d;
        dup[i] = a * d;
    }
}

// ---------------------------------------------------------------- attention (training form)
struct AttnShape {
    int64_t batch = 0, seq = 0;
    int32_t n_head = 0, n_head_kv = 0, d_head = 0;
    double scale = 1.0;
    int32_t window = 0;  // 0: full causal
};

namespace detail {
// softmax over visible keys [lo, i] of query i into p[0..i-lo]
template <class T>
void attn_probs_row(const T* qi, const T* K, int64_t kv_dim, int64_t lo, int64_t hi, int32_t dh, double scale,
                    std::vector<T>& p) {
    p.resize(size_t(hi - lo));
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = lo; j < hi; ++j) {
        T s = 0;
        const T* kj = K + j * kv_dim;
        for (int32_t a = 0; a < dh; ++a) s += qi[a] * kj[a];
        s *= T(scale);
        p[size_t(j - lo)] = s;
        mx = std::max(mx, s);
    }
    T sum = 0;
    for (auto& v : p) sum += (v = std::exp(v - mx));
    const T inv = T(1) / sum;
    for (auto& v : p) v *= inv;
}
}  // namespace detail

// z[B*T, q_dim] = softmax(scale q k^T, causal) v per head; q [B*T, q_dim], k/v [B*T, kv_dim].
template <class T>
void attention_fwd(const T* q, const T* k, const T* v, T* z, const AttnShape& s) {
    const int64_t q_dim = int64_t(s.n_head) * s.d_head, kv_dim = int64_t(s.n_head_kv) * s.d_head;
    const int32_t group = s.n_head / s.n_head_kv, dh = s.d_head;
    std::vector<T> p;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int32_t h = 0; h < s.n_head; ++h) {
            const T* K = k + b * s.seq * kv_dim + int64_t(h / group) * dh;
            const T* V = v + b * s.seq * kv_dim + int64_t(h / group) * dh;
            for (int64_t i = 0; i < s.seq; ++i) {
                const int64_t lo = s.window > 0 ? std::max<int64_t>(0, i - s.window + 1) : 0, hi = i + 1;
                const T* qi = q + (b * s.seq + i) * q_dim + int64_t(h) * dh;
                detail::attn_probs_row(qi, K, kv_dim, lo, hi, dh, s.scale, p);
                T* zi = z + (b * s.seq + i) * q_dim + int64_t(h) * dh;
                std::fill(zi, zi + dh, T(0));
                for (int64_t j = lo; j < hi; ++j)
                    for (int32_t a = 0; a < dh; ++a) zi[a] += p[size_t(j - lo)] * V[j * kv_dim + a];
            }
        }
}

// Backward of attention_fwd: from dz, dq [B*T, q_dim], dk/dv [B*T, kv_dim] (overwritten). The probabilities are
// recomputed from q and k (nothing but q, k, v needs to be kept). With P the softmax row of query i:
//   dP_ij = dz_i . v_j,  dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij'),  dq_i = scale sum_j dS_ij k_j,
//   dk_j += scale dS_ij q_i,  dv_j += P_ij dz_i   (grouped-query heads accumulate into their shared kv head).
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* dz, T* dq, T* dk, T* dv, const AttnShape& s) {
    const int64_t q_dim = int64_t(s.n_head) * s.d_head, kv_dim = int64_t(s.n_head_kv) * s.d_head;
    const int32_t group = s.n_head / s.n_head_kv, dh = s.d_head;
    std::fill(dk, dk + s.batch * s.seq * kv_dim, T(0));
    std::fill(dv, dv + s.batch * s.seq * kv_dim, T(0));
    std::vector<T> p, dp;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int32_t h = 0; h < s.n_head; ++h) {
            const int64_t off = b * s.seq * kv_dim + int64_t(h / group) * dh;
            const T *K = k + off, *V = v + off;
            T *dK = dk + off, *dV = dv + off;
            for (int64_t i = 0; i < s.seq; ++i) {
                const int64_t lo = s.window > 0 ? std::max<int64_t>(0, i - s.window + 1) : 0, hi = i + 1;
                const T* qi = q + (b * s.seq + i) * q_dim + int64_t(h) * dh;
                const T* gi = dz + (b * s.seq + i) * q_dim + int64_t(h) * dh;
                T* dqi = dq + (b * s.seq + i) * q_dim + int64_t(h) * dh;
                detail::attn_probs_row(qi, K, kv_dim, lo, hi, dh, s.scale, p);
                dp.resize(p.size());
                T D = 0;
                for (int64_t j = lo; j < hi; ++j) {
                    T d = 0;
                    const T* vj = V + j * kv_dim;
                    for (int32_t a = 0; a < dh; ++a) d += gi[a] * vj[a];
                    dp[size_t(j - lo)] = d;
                    D += p[size_t(j - lo)] * d;
                }
                std::fill(dqi, dqi + dh, T(0));
                for (int64_t j = lo; j < hi; ++j) {
                    const T pj = p[size_t(j - lo)];
                    const T ds = pj * (dp[size_t(j - lo)] - D) * T(s.scale);
                    const T* kj = K + j * kv_dim;
                    T* dkj = dK + j * kv_dim;
                    T* dvj = dV + j * kv_dim;
                    for (int32_t a = 0; a < dh; ++a) {
                        dqi[a] += ds * kj[a];
                        dkj[a] += ds * qi[a];
                        dvj[a] += pj * gi[a];
                    }
                }
            }
        }
}

// ---------------------------------------------------------------- loss and head reductions
// Cross-entropy of rows of logits against targets, in place: logits[r, :] <- grad_scale * (softmax - onehot).
// loss[r] = -log softmax[target]; correct[r] = 1 when the target is the (first) argmax. Either output may be null.
template <class T>
void softmax_cross_entropy(T* logits, const int32_t* targets, int64_t rows, int64_t V, double grad_scale,
                           double* loss, uint8_t* correct) {
    for (int64_t r = 0; r < rows; ++r) {
        T* x = logits + r * V;
        const int64_t tgt = targets[r];
        int64_t best = 0;
        for (int64_t v = 1; v < V; ++v)
            if (x[v] > x[best]) best = v;
        const double mx = double(x[best]);
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(double(x[v]) - mx);
        const double lse = mx + std::log(sum);
        if (loss) loss[r] = lse - double(x[tgt]);
        if (correct) correct[r] = uint8_t(best == tgt);
        for (int64_t v = 0; v < V; ++v) x[v] = T(grad_scale * std::exp(double(x[v]) - lse));
        x[tgt] -= T(grad_scale);
    }
}

// out[h] += sum over rows and the columns of block h of a * b (row stride `stride`, blocks of `block` columns from 0).
template <class T>
void head_dots(const T* a, const T* b, int64_t rows, int64_t stride, int32_t n_blocks, int32_t block, double* out) {
    for (int32_t h = 0; h < n_blocks; ++h) {
        double s = 0;
        for (int64_t r = 0; r < rows; ++r) {
            const T* x = a + r * stride + int64_t(h) * block;
            const T* y = b + r * stride + int64_t(h) * block;
            double rs = 0;
            for (int32_t c = 0; c < block; ++c) rs += double(x[c]) * double(y[c]);
            s += rs;
        }
        out[h] += s;
    }
}

}  // namespace hs::cpu

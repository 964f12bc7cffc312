// tests/naive_forward.hpp: a deliberately naive transformer forward in double precision, written from the math
// (no shared code with src/engine or src/backend), for checking the engine and its hooks on small random models.
// One sequence; every quantity for every position. Covers every block feature of ModelConfig: q/k/v biases, the
// embedding scale, per-head q/k RMSNorm before RoPE, post-norms on the attention and MLP outputs, SiLU or GELU-tanh
// gating, per-layer RoPE base and sliding window (a query at i sees keys i-w+1..i).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "model/model.hpp"

namespace naive {

struct Edits {
    std::vector<float> head_scale;          // [L*H] or empty
    int patch_layer = -1, patch_head = -1;  // replace z[patch_layer, patch_head] at patch_pos by patch_value
    int patch_pos = -1;
    std::vector<float> patch_value;
};

struct Result {
    std::vector<std::vector<double>> logits;             // [T][V]
    std::vector<std::vector<std::vector<double>>> z;     // [L][T][q_dim] (before edits)
    std::vector<std::vector<std::vector<double>>> probs; // [L][H*T][T]  row (h*T + i), column j
    std::vector<std::vector<std::vector<double>>> resid_in;  // [L][T][d] entering block l
    std::vector<std::vector<double>> final_hidden;       // [T][d]
};

inline std::vector<double> rmsnorm(const std::vector<double>& x, const float* w, double eps) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / double(x.size()) + eps);
    std::vector<double> o(x.size());
    for (size_t i = 0; i < x.size(); ++i) o[i] = x[i] * inv * w[i];
    return o;
}

// y = W x for W [rows][cols] row-major
inline std::vector<double> matvec(const hs::Matrix& W, const std::vector<double>& x) {
    std::vector<double> y(W.rows, 0.0);
    for (int64_t r = 0; r < W.rows; ++r) {
        double s = 0;
        for (int64_t c = 0; c < W.cols; ++c) s += double(W.data[r * W.cols + c]) * x[c];
        y[r] = s;
    }
    return y;
}

// act(g) of the gated MLP: SiLU, or GELU with the tanh approximation
inline double activation(double g, hs::Activation a) {
    if (a == hs::Activation::SILU) return g / (1.0 + std::exp(-g));
    const double k = std::sqrt(2.0 / M_PI);
    return 0.5 * g * (1.0 + std::tanh(k * (g + 0.044715 * g * g * g)));
}

// First key a query at position i sees (window 0: all of 0..i).
inline int first_key(int i, int window) { return window > 0 ? std::max(0, i - window + 1) : 0; }

// Rotate-half RoPE on one head vector at position pos.
inline void rope(double* v, int d, double pos, double base) {
    const int half = d / 2;
    for (int j = 0; j < half; ++j) {
        const double ang = pos * std::pow(base, -2.0 * j / d);
        const double a = v[j], b = v[j + half];
        v[j] = a * std::cos(ang) - b * std::sin(ang);
        v[j + half] = b * std::cos(ang) + a * std::sin(ang);
    }
}

inline Result forward(const hs::Model& m, const std::vector<int32_t>& ids, const Edits& e = {}) {
    const hs::ModelConfig& c = m.config;
    const int T = int(ids.size()), d = c.d_model, H = c.n_head, dh = c.d_head, grp = c.n_head / c.n_head_kv;
    Result r;
    std::vector<std::vector<double>> x(T, std::vector<double>(d));
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < d; ++i) x[t][i] = m.weights.token_embd.data[int64_t(ids[t]) * d + i] * double(c.embed_scale);
    r.z.resize(c.n_layer);
    r.probs.resize(c.n_layer);
    r.resid_in.resize(c.n_layer);
    for (int l = 0; l < c.n_layer; ++l) {
        const hs::LayerWeights& W = m.weights.layers[l];
        r.resid_in[l] = x;
        std::vector<std::vector<double>> q(T), k(T), v(T);
        for (int t = 0; t < T; ++t) {
            auto xn = rmsnorm(x[t], W.attn_norm, c.rms_eps);
            q[t] = matvec(W.wq, xn);
            k[t] = matvec(W.wk, xn);
            v[t] = matvec(W.wv, xn);
            if (c.qkv_bias) {
                for (int i = 0; i < c.q_dim(); ++i) q[t][i] += W.bq[i];
                for (int i = 0; i < c.kv_dim(); ++i) k[t][i] += W.bk[i], v[t][i] += W.bv[i];
            }
            if (c.qk_norm) {  // every head's d_head vector on its own
                auto head_norm = [&](std::vector<double>& x, int h, const float* w) {
                    std::vector<double> part(x.begin() + h * dh, x.begin() + (h + 1) * dh);
                    part = rmsnorm(part, w, c.rms_eps);
                    std::copy(part.begin(), part.end(), x.begin() + h * dh);
                };
                for (int h = 0; h < H; ++h) head_norm(q[t], h, W.q_norm);
                for (int h = 0; h < c.n_head_kv; ++h) head_norm(k[t], h, W.k_norm);
            }
            for (int h = 0; h < H; ++h) rope(&q[t][h * dh], dh, t, c.layers[l].rope_base);
            for (int h = 0; h < c.n_head_kv; ++h) rope(&k[t][h * dh], dh, t, c.layers[l].rope_base);
        }
        std::vector<std::vector<double>> z(T, std::vector<double>(c.q_dim(), 0.0));
        r.probs[l].assign(size_t(H) * T, std::vector<double>(T, 0.0));
        for (int h = 0; h < H; ++h) {
            const int kh = h / grp;
            for (int i = 0; i < T; ++i) {
                const int j0 = first_key(i, c.layers[l].window);
                std::vector<double> s(i + 1);
                double mx = -1e300;
                for (int j = j0; j <= i; ++j) {
                    double dot = 0;
                    for (int a = 0; a < dh; ++a) dot += q[i][h * dh + a] * k[j][kh * dh + a];
                    s[j] = dot * c.attn_scale;
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (int j = j0; j <= i; ++j) sum += s[j] = std::exp(s[j] - mx);
                for (int j = j0; j <= i; ++j) {
                    const double p = s[j] / sum;
                    r.probs[l][size_t(h) * T + i][j] = p;
                    for (int a = 0; a < dh; ++a) z[i][h * dh + a] += p * v[j][kh * dh + a];
                }
            }
        }
        r.z[l] = z;
        for (int h = 0; h < H; ++h) {
            const double s = e.head_scale.empty() ? 1.0 : e.head_scale[size_t(l) * H + h];
            for (int t = 0; t < T; ++t)
                for (int a = 0; a < dh; ++a) z[t][h * dh + a] *= s;
        }
        if (e.patch_layer == l)
            for (int a = 0; a < dh; ++a) z[e.patch_pos][e.patch_head * dh + a] = e.patch_value[a];
        for (int t = 0; t < T; ++t) {
            auto o = matvec(W.wo, z[t]);
            if (c.post_norms) o = rmsnorm(o, W.post_attn_norm, c.rms_eps);
            for (int i = 0; i < d; ++i) x[t][i] += o[i];
            auto xn = rmsnorm(x[t], W.ffn_norm, c.rms_eps);
            auto g = matvec(W.w_gate, xn), u = matvec(W.w_up, xn);
            for (int i = 0; i < c.d_ff; ++i) g[i] = activation(g[i], c.activation) * u[i];
            auto dn = matvec(W.w_down, g);
            if (c.post_norms) dn = rmsnorm(dn, W.post_ffn_norm, c.rms_eps);
            for (int i = 0; i < d; ++i) x[t][i] += dn[i];
        }
    }
    r.logits.resize(T);
    r.final_hidden.resize(T);
    for (int t = 0; t < T; ++t) {
        r.final_hidden[t] = rmsnorm(x[t], m.weights.output_norm, c.rms_eps);
        r.logits[t] = matvec(m.weights.output, r.final_hidden[t]);
    }
    return r;
}

}  // namespace naive

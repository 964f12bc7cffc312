// tests/naive_backward.hpp: a deliberately naive forward + backward in double precision, written from the math
// (no shared code with src/engine or src/backend), for checking the engine's backward pass. One sequence; the loss
// is  scale * sum over loss positions of  -log softmax(logits)[target]  (cross-entropy) or
// logit[target] - mean(logit) (margin). Gradients: dL/dtau for every head, dL/dx entering layer 0, and per layer the
// head outputs z and dL/d(tau z). Every block feature of ModelConfig is covered (as in naive_forward.hpp): q/k/v
// biases, embedding scale, per-head q/k norms, post-norms, SiLU or GELU-tanh gating, per-layer RoPE base and window.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "model/model.hpp"

namespace naive {

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;

struct GradOut {
    double loss = 0;
    std::vector<double> head_grad;  // [L*H]
    Mat dx0;                        // [T][d] dL/d(residual entering layer 0)
    std::vector<Mat> z, dz;         // [L][T][q_dim] head outputs before tau, and dL/d(tau z)
};

namespace bw {

inline Vec rms(const Vec& x, const float* w, double eps) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / double(x.size()) + eps);
    Vec o(x.size());
    for (size_t i = 0; i < x.size(); ++i) o[i] = x[i] * inv * w[i];
    return o;
}
// d/dx of rms(x) w applied to dy
inline Vec rms_back(const Vec& x, const float* w, const Vec& dy, double eps) {
    const double n = double(x.size());
    double ss = 0, dot = 0;
    for (size_t i = 0; i < x.size(); ++i) ss += x[i] * x[i], dot += w[i] * dy[i] * x[i];
    const double inv = 1.0 / std::sqrt(ss / n + eps);
    Vec o(x.size());
    for (size_t i = 0; i < x.size(); ++i) o[i] = inv * w[i] * dy[i] - x[i] * inv * inv * inv * dot / n;
    return o;
}
inline Vec mv(const hs::Matrix& W, const Vec& x) {  // W x
    Vec y(W.rows, 0.0);
    for (int64_t r = 0; r < W.rows; ++r)
        for (int64_t c = 0; c < W.cols; ++c) y[r] += double(W.data[r * W.cols + c]) * x[c];
    return y;
}
inline Vec mtv(const hs::Matrix& W, const Vec& y) {  // W^T y
    Vec x(W.cols, 0.0);
    for (int64_t r = 0; r < W.rows; ++r)
        for (int64_t c = 0; c < W.cols; ++c) x[c] += double(W.data[r * W.cols + c]) * y[r];
    return x;
}
inline void rot(double* v, int d, double pos, double base, double sign) {
    const int half = d / 2;
    for (int j = 0; j < half; ++j) {
        const double ang = sign * pos * std::pow(base, -2.0 * j / d);
        const double a = v[j], b = v[j + half];
        v[j] = a * std::cos(ang) - b * std::sin(ang);
        v[j + half] = b * std::cos(ang) + a * std::sin(ang);
    }
}
inline void addto(Vec& a, const Vec& b) {
    for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
}
// act(g) and act'(g) of the gated MLP. GELU-tanh: 0.5 g (1 + tanh(u)), u = k (g + 0.044715 g^3), k = sqrt(2/pi);
// d/dg = 0.5 (1 + tanh u) + 0.5 g (1 - tanh^2 u) k (1 + 3 * 0.044715 g^2).
inline double act(double g, hs::Activation a) {
    if (a == hs::Activation::SILU) return g / (1.0 + std::exp(-g));
    const double k = std::sqrt(2.0 / M_PI), th = std::tanh(k * (g + 0.044715 * g * g * g));
    return 0.5 * g * (1.0 + th);
}
inline double act_grad(double g, hs::Activation a) {
    if (a == hs::Activation::SILU) {
        const double sg = 1.0 / (1.0 + std::exp(-g));
        return sg * (1.0 + g * (1.0 - sg));
    }
    const double k = std::sqrt(2.0 / M_PI), th = std::tanh(k * (g + 0.044715 * g * g * g));
    return 0.5 * (1.0 + th) + 0.5 * g * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * g * g);
}
// The d_head slice of head h in a row of heads, and writing it back.
inline Vec head_of(const Vec& x, int h, int dh) { return Vec(x.begin() + h * dh, x.begin() + (h + 1) * dh); }
inline void set_head(Vec& x, int h, int dh, const Vec& v) { std::copy(v.begin(), v.end(), x.begin() + h * dh); }
inline int key0(int i, int window) { return window > 0 ? std::max(0, i - window + 1) : 0; }

}  // namespace bw

// positions/targets: the loss rows; tau: [L*H] or empty; margin: use the logit-margin loss instead of CE.
inline GradOut loss_and_grad(const hs::Model& m, const std::vector<int32_t>& ids, const std::vector<int>& positions,
                             const std::vector<int>& targets, const std::vector<double>& tau, double scale,
                             bool margin = false) {
    using namespace bw;
    const hs::ModelConfig& c = m.config;
    const int T = int(ids.size()), d = c.d_model, H = c.n_head, dh = c.d_head, grp = c.n_head / c.n_head_kv;
    const int L = c.n_layer, qd = c.q_dim(), kvd = c.kv_dim();
    auto ts = [&](int l, int h) { return tau.empty() ? 1.0 : tau[size_t(l) * H + h]; };
    struct Layer {
        Mat x_in, q_raw, k_raw, q, k, v, z, ao, x_mid, g, u, fo;  // ao/fo: attention/MLP outputs before post-norms
        std::vector<Mat> P;  // [H][T][T]
    };
    std::vector<Layer> tape(L);
    Mat x(T, Vec(d));
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < d; ++i) x[t][i] = m.weights.token_embd.data[int64_t(ids[t]) * d + i] * double(c.embed_scale);
    for (int l = 0; l < L; ++l) {
        const hs::LayerWeights& W = m.weights.layers[l];
        Layer& tp = tape[l];
        tp.x_in = x;
        tp.q.resize(T), tp.k.resize(T), tp.v.resize(T);
        for (int t = 0; t < T; ++t) {
            Vec xn = rms(x[t], W.attn_norm, c.rms_eps);
            tp.q[t] = mv(W.wq, xn), tp.k[t] = mv(W.wk, xn), tp.v[t] = mv(W.wv, xn);
            if (c.qkv_bias) {
                for (int i = 0; i < qd; ++i) tp.q[t][i] += W.bq[i];
                for (int i = 0; i < kvd; ++i) tp.k[t][i] += W.bk[i], tp.v[t][i] += W.bv[i];
            }
            tp.q_raw.push_back(tp.q[t]), tp.k_raw.push_back(tp.k[t]);
            if (c.qk_norm) {
                for (int h = 0; h < H; ++h) set_head(tp.q[t], h, dh, rms(head_of(tp.q[t], h, dh), W.q_norm, c.rms_eps));
                for (int h = 0; h < c.n_head_kv; ++h)
                    set_head(tp.k[t], h, dh, rms(head_of(tp.k[t], h, dh), W.k_norm, c.rms_eps));
            }
            for (int h = 0; h < H; ++h) rot(&tp.q[t][h * dh], dh, t, c.layers[l].rope_base, 1);
            for (int h = 0; h < c.n_head_kv; ++h) rot(&tp.k[t][h * dh], dh, t, c.layers[l].rope_base, 1);
        }
        tp.z.assign(T, Vec(qd, 0.0));
        tp.P.assign(H, Mat(T, Vec(T, 0.0)));
        for (int h = 0; h < H; ++h) {
            const int kh = h / grp;
            for (int i = 0; i < T; ++i) {
                const int j0 = key0(i, c.layers[l].window);  // P[h][i][j] = 0 outside j0..i
                double mx = -1e300;
                Vec s(i + 1);
                for (int j = j0; j <= i; ++j) {
                    double dot = 0;
                    for (int a = 0; a < dh; ++a) dot += tp.q[i][h * dh + a] * tp.k[j][kh * dh + a];
                    s[j] = dot * c.attn_scale;
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (int j = j0; j <= i; ++j) sum += s[j] = std::exp(s[j] - mx);
                for (int j = j0; j <= i; ++j) {
                    tp.P[h][i][j] = s[j] / sum;
                    for (int a = 0; a < dh; ++a) tp.z[i][h * dh + a] += tp.P[h][i][j] * tp.v[j][kh * dh + a];
                }
            }
        }
        tp.g.resize(T), tp.u.resize(T), tp.ao.resize(T), tp.fo.resize(T);
        for (int t = 0; t < T; ++t) {
            Vec zs = tp.z[t];
            for (int h = 0; h < H; ++h)
                for (int a = 0; a < dh; ++a) zs[h * dh + a] *= ts(l, h);
            tp.ao[t] = mv(W.wo, zs);
            addto(x[t], c.post_norms ? rms(tp.ao[t], W.post_attn_norm, c.rms_eps) : tp.ao[t]);
        }
        tp.x_mid = x;
        for (int t = 0; t < T; ++t) {
            Vec xn = rms(x[t], W.ffn_norm, c.rms_eps);
            tp.g[t] = mv(W.w_gate, xn), tp.u[t] = mv(W.w_up, xn);
            Vec a(c.d_ff);
            for (int f = 0; f < c.d_ff; ++f) a[f] = act(tp.g[t][f], c.activation) * tp.u[t][f];
            tp.fo[t] = mv(W.w_down, a);
            addto(x[t], c.post_norms ? rms(tp.fo[t], W.post_ffn_norm, c.rms_eps) : tp.fo[t]);
        }
    }
    GradOut out;
    Mat dx(T, Vec(d, 0.0));
    const int V = c.n_vocab;
    for (size_t r = 0; r < positions.size(); ++r) {
        const int t = positions[r], tgt = targets[r];
        Vec hdn = rms(x[t], m.weights.output_norm, c.rms_eps);
        Vec lg = mv(m.weights.output, hdn);
        Vec dl(V);
        if (margin) {
            double mean = 0;
            for (double v : lg) mean += v;
            mean /= V;
            out.loss += scale * (lg[tgt] - mean);
            for (int v = 0; v < V; ++v) dl[v] = scale * ((v == tgt) - 1.0 / V);
        } else {
            double mx = -1e300, sum = 0;
            for (double v : lg) mx = std::max(mx, v);
            for (double v : lg) sum += std::exp(v - mx);
            const double lse = mx + std::log(sum);
            out.loss += scale * (lse - lg[tgt]);
            for (int v = 0; v < V; ++v) dl[v] = scale * (std::exp(lg[v] - lse) - (v == tgt));
        }
        addto(dx[t], rms_back(x[t], m.weights.output_norm, mtv(m.weights.output, dl), c.rms_eps));
    }
    out.head_grad.assign(size_t(L) * H, 0.0);
    out.z.resize(L), out.dz.resize(L);
    for (int l = L - 1; l >= 0; --l) {
        const hs::LayerWeights& W = m.weights.layers[l];
        const Layer& tp = tape[l];
        Mat dmid = dx, dz(T);
        for (int t = 0; t < T; ++t) {
            const Vec dfo = c.post_norms ? rms_back(tp.fo[t], W.post_ffn_norm, dx[t], c.rms_eps) : dx[t];
            Vec da = mtv(W.w_down, dfo), dg(c.d_ff), du(c.d_ff);
            for (int f = 0; f < c.d_ff; ++f) {
                dg[f] = da[f] * tp.u[t][f] * act_grad(tp.g[t][f], c.activation);
                du[f] = da[f] * act(tp.g[t][f], c.activation);
            }
            Vec dxn = mtv(W.w_gate, dg);
            addto(dxn, mtv(W.w_up, du));
            addto(dmid[t], rms_back(tp.x_mid[t], W.ffn_norm, dxn, c.rms_eps));
            const Vec dao = c.post_norms ? rms_back(tp.ao[t], W.post_attn_norm, dmid[t], c.rms_eps) : dmid[t];
            dz[t] = mtv(W.wo, dao);  // dL/d(tau z)
            out.dz[l].push_back(dz[t]);
            for (int h = 0; h < H; ++h) {
                for (int a = 0; a < dh; ++a) out.head_grad[size_t(l) * H + h] += dz[t][h * dh + a] * tp.z[t][h * dh + a];
                for (int a = 0; a < dh; ++a) dz[t][h * dh + a] *= ts(l, h);
            }
        }
        out.z[l] = tp.z;
        Mat dq(T, Vec(qd, 0.0)), dk(T, Vec(kvd, 0.0)), dv(T, Vec(kvd, 0.0));
        for (int h = 0; h < H; ++h) {
            const int kh = h / grp;
            for (int i = 0; i < T; ++i) {
                const int j0 = key0(i, c.layers[l].window);
                Vec dp(i + 1);
                double D = 0;
                for (int j = j0; j <= i; ++j) {
                    double s = 0;
                    for (int a = 0; a < dh; ++a) s += dz[i][h * dh + a] * tp.v[j][kh * dh + a];
                    dp[j] = s;
                    D += tp.P[h][i][j] * s;
                }
                for (int j = j0; j <= i; ++j) {
                    const double ds = tp.P[h][i][j] * (dp[j] - D) * c.attn_scale;
                    for (int a = 0; a < dh; ++a) {
                        dq[i][h * dh + a] += ds * tp.k[j][kh * dh + a];
                        dk[j][kh * dh + a] += ds * tp.q[i][h * dh + a];
                        dv[j][kh * dh + a] += tp.P[h][i][j] * dz[i][h * dh + a];
                    }
                }
            }
        }
        for (int t = 0; t < T; ++t) {
            for (int h = 0; h < H; ++h) rot(&dq[t][h * dh], dh, t, c.layers[l].rope_base, -1);
            for (int h = 0; h < c.n_head_kv; ++h) rot(&dk[t][h * dh], dh, t, c.layers[l].rope_base, -1);
            if (c.qk_norm) {  // through each head's norm, from its input before the norm
                auto back = [&](Mat& dy, const Mat& raw, int h, const float* w) {
                    set_head(dy[t], h, dh, rms_back(head_of(raw[t], h, dh), w, head_of(dy[t], h, dh), c.rms_eps));
                };
                for (int h = 0; h < H; ++h) back(dq, tp.q_raw, h, W.q_norm);
                for (int h = 0; h < c.n_head_kv; ++h) back(dk, tp.k_raw, h, W.k_norm);
            }
            Vec dxn = mtv(W.wq, dq[t]);
            addto(dxn, mtv(W.wk, dk[t]));
            addto(dxn, mtv(W.wv, dv[t]));
            dx[t] = dmid[t];
            addto(dx[t], rms_back(tp.x_in[t], W.attn_norm, dxn, c.rms_eps));
        }
    }
    out.dx0 = dx;
    return out;
}

}  // namespace naive

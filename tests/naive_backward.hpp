// tests/naive_backward.hpp: a deliberately naive forward + backward in double precision, written from the math
// (no shared code with src/engine or src/backend), for checking the engine's backward pass. One sequence; the loss
// is  scale * sum over loss positions of  -log softmax(logits)[target]  (cross-entropy) or
// logit[target] - mean(logit) (margin). Gradients: dL/dtau for every head, and dL/dx entering layer 0.
#pragma once

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
        Mat x_in, q, k, v, z, x_mid, g, u;
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
            for (int h = 0; h < H; ++h) rot(&tp.q[t][h * dh], dh, t, c.layers[l].rope_base, 1);
            for (int h = 0; h < c.n_head_kv; ++h) rot(&tp.k[t][h * dh], dh, t, c.layers[l].rope_base, 1);
        }
        tp.z.assign(T, Vec(qd, 0.0));
        tp.P.assign(H, Mat(T, Vec(T, 0.0)));
        for (int h = 0; h < H; ++h) {
            const int kh = h / grp;
            for (int i = 0; i < T; ++i) {
                double mx = -1e300;
                Vec s(i + 1);
                for (int j = 0; j <= i; ++j) {
                    double dot = 0;
                    for (int a = 0; a < dh; ++a) dot += tp.q[i][h * dh + a] * tp.k[j][kh * dh + a];
                    s[j] = dot * c.attn_scale;
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (int j = 0; j <= i; ++j) sum += s[j] = std::exp(s[j] - mx);
                for (int j = 0; j <= i; ++j) {
                    tp.P[h][i][j] = s[j] / sum;
                    for (int a = 0; a < dh; ++a) tp.z[i][h * dh + a] += tp.P[h][i][j] * tp.v[j][kh * dh + a];
                }
            }
        }
        tp.g.resize(T), tp.u.resize(T);
        for (int t = 0; t < T; ++t) {
            Vec zs = tp.z[t];
            for (int h = 0; h < H; ++h)
                for (int a = 0; a < dh; ++a) zs[h * dh + a] *= ts(l, h);
            addto(x[t], mv(W.wo, zs));
        }
        tp.x_mid = x;
        for (int t = 0; t < T; ++t) {
            Vec xn = rms(x[t], W.ffn_norm, c.rms_eps);
            tp.g[t] = mv(W.w_gate, xn), tp.u[t] = mv(W.w_up, xn);
            Vec a(c.d_ff);
            for (int f = 0; f < c.d_ff; ++f) a[f] = tp.g[t][f] / (1.0 + std::exp(-tp.g[t][f])) * tp.u[t][f];
            addto(x[t], mv(W.w_down, a));
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
    for (int l = L - 1; l >= 0; --l) {
        const hs::LayerWeights& W = m.weights.layers[l];
        const Layer& tp = tape[l];
        Mat dmid = dx, dz(T);
        for (int t = 0; t < T; ++t) {
            Vec da = mtv(W.w_down, dx[t]), dg(c.d_ff), du(c.d_ff);
            for (int f = 0; f < c.d_ff; ++f) {
                const double gg = tp.g[t][f], sg = 1.0 / (1.0 + std::exp(-gg));
                dg[f] = da[f] * tp.u[t][f] * sg * (1.0 + gg * (1.0 - sg));
                du[f] = da[f] * gg * sg;
            }
            Vec dxn = mtv(W.w_gate, dg);
            addto(dxn, mtv(W.w_up, du));
            addto(dmid[t], rms_back(tp.x_mid[t], W.ffn_norm, dxn, c.rms_eps));
            dz[t] = mtv(W.wo, dmid[t]);  // dL/d(tau z)
            for (int h = 0; h < H; ++h) {
                for (int a = 0; a < dh; ++a) out.head_grad[size_t(l) * H + h] += dz[t][h * dh + a] * tp.z[t][h * dh + a];
                for (int a = 0; a < dh; ++a) dz[t][h * dh + a] *= ts(l, h);
            }
        }
        Mat dq(T, Vec(qd, 0.0)), dk(T, Vec(kvd, 0.0)), dv(T, Vec(kvd, 0.0));
        for (int h = 0; h < H; ++h) {
            const int kh = h / grp;
            for (int i = 0; i < T; ++i) {
                Vec dp(i + 1);
                double D = 0;
                for (int j = 0; j <= i; ++j) {
                    double s = 0;
                    for (int a = 0; a < dh; ++a) s += dz[i][h * dh + a] * tp.v[j][kh * dh + a];
                    dp[j] = s;
                    D += tp.P[h][i][j] * s;
                }
                for (int j = 0; j <= i; ++j) {
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

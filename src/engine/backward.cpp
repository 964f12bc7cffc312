// The backward pass: gradients of a loss w.r.t. activations of the frozen model (no weight gradients).
//
// 1. Training forward: the same ops as Engine::forward (so the same numbers), recording on the tape what the
//    backward of each layer >= from_layer needs (grad_workspace.hpp: x_in, q, k, v, z, x_mid, gate, up, and the
//    inputs of the architecture's extra norms: q_raw, k_raw with q/k norms, attn_o, ffn_o with post-norms).
// 2. Output head at the loss positions only: gather the residual rows, final norm, logits, loss and dlogits
//    (in chunks of rows that bound the logits' memory), back through the output matrix and the final norm.
// 3. Backward sweep over layers L-1 .. from_layer. Per layer, with PA and PF the post-norms (identity without them)
//    and NQ, NK the per-head q/k norms (identity without them):
//      q = RoPE(NQ(xn W_q^T)), k = RoPE(NK(xn W_k^T)), v = xn W_v^T with xn = rmsnorm(x_in)
//      x_mid = x_in + PA(attn_o),  attn_o = (tau z) W_O^T
//      x_out = x_mid + PF(ffn_o),  ffn_o = act(gate, up) W_down^T,  (gate, up) = rmsnorm(x_mid) (W_gate, W_up)^T
//    the sweep is
//      (dgate, dup) = act'(gate, up)[ PF'(ffn_o)[dx] W_down ]        (act: SiLU or GELU-tanh gating)
//      dx_mid = dx + rmsnorm'(x_mid)[ dgate W_gate + dup W_up ]
//      d(tau z) = PA'(attn_o)[dx_mid] W_O;   dL/dtau_h += sum over rows of <d(tau z)_h, z_h>
//      dz = tau d(tau z);  (dq, dk, dv) = attention'(dz)  (causal, within the layer's sliding window if any)
//      dq <- NQ'(q_raw)[RoPE^-1 dq],  dk <- NK'(k_raw)[RoPE^-1 dk]   (norm weights are frozen: no weight gradient)
//      dx_in = dx_mid + rmsnorm'(x_in)[ dq W_q + dk W_k + dv W_v ]
//    It stops after the head gradients of from_layer (nothing below is needed) unless the residual gradient is asked.
//    The residual gradient is w.r.t. the residual itself (after the embedding scale), so that scale never enters.
//    Final logit softcapping is refused (as by the forward, which does not apply it).
#include <algorithm>
#include <cmath>
#include <utility>

#include "engine/engine.hpp"
#include "engine/grad_workspace.hpp"
#include "engine/rows.hpp"
#include "util/error.hpp"

namespace hs {

GradResult Engine::loss_gradients(const std::vector<int32_t>& tokens, int64_t B, int64_t T, const GradRequest& rq) {
    const ModelConfig& c = model_.config;
    const int32_t L = c.n_layer, H = c.n_head, dh = c.d_head, V = c.n_vocab;
    const int64_t rows = B * T, d = c.d_model, q_dim = c.q_dim(), kv_dim = c.kv_dim(), ff = c.d_ff;
    const int64_t np = int64_t(rq.positions.size());
    check(c.final_logit_softcap == 0.0f, "backward: final logit softcapping (final_logit_softcap = ",
          c.final_logit_softcap, ") is not supported, as in the forward");
    check(B > 0 && T > 0, "backward: batch and sequence length must be positive");
    check(int64_t(tokens.size()) == rows, "backward: expected batch*seq tokens");
    check(rq.from_layer >= 0 && rq.from_layer < L, "backward: from_layer ", rq.from_layer, " is outside 0..", L - 1);
    check(rq.head_scale.empty() || int64_t(rq.head_scale.size()) == int64_t(L) * H,
          "backward: head_scale must have n_layer*n_head entries");
    check(np > 0, "backward: no loss positions");
    for (int32_t t : rq.positions) check(t >= 0 && t < T, "backward: loss position ", t, " outside the sequence");
    check(int64_t(rq.targets.size()) == B * np, "backward: targets must be [batch, positions]");
    for (int32_t t : rq.targets) check(t >= 0 && t < V, "backward: target ", t, " outside the vocabulary");

    if (!gws_) gws_ = std::make_unique<GradWorkspace>();
    GradWorkspace& g = *gws_;
    Backend& be = backend_;
    const int32_t L0 = rq.from_layer;
    g.tape.resize(L);
    for (auto* buf : {&g.x, &g.xn, &g.zs, &g.dx, &g.dmid, &g.dxn}) buf->ensure(be, rows * std::max(d, q_dim));
    for (auto* buf : {&g.q, &g.z, &g.dz, &g.dq}) buf->ensure(be, rows * q_dim);
    for (auto* buf : {&g.k, &g.v, &g.dk, &g.dv}) buf->ensure(be, rows * kv_dim);
    if (c.post_norms)
        for (auto* buf : {&g.out, &g.dout}) buf->ensure(be, rows * d);
    if (c.qk_norm) {
        g.dq_raw.ensure(be, rows * q_dim);
        g.dk_raw.ensure(be, rows * kv_dim);
    }
    for (auto* buf : {&g.gate, &g.up, &g.act, &g.dff1, &g.dff2}) buf->ensure(be, rows * ff);

    auto layer_scaled = [&](int32_t l) {
        if (rq.head_scale.empty()) return false;
        for (int32_t h = 0; h < H; ++h)
            if (rq.head_scale[size_t(l) * H + h] != 1.0f) return true;
        return false;
    };
    auto attention_args = [&](int32_t l, const float* q, const float* k, const float* v, float* z) {
        AttentionArgs a;
        a.q = q;
        a.k_cache = k;
        a.v_cache = v;
        a.z = z;
        a.batch = B;
        a.seq = T;
        a.pos0 = 0;
        a.cache_len = T;
        a.n_head = H;
        a.n_head_kv = c.n_head_kv;
        a.d_head = dh;
        a.scale = c.attn_scale;
        a.window = c.layers[l].window;
        return a;
    };

    // ---------------------------------------------------------------- 1. training forward, recording the tape
    float* x = g.x.get();
    be.embed(weights_.token_embd, tokens.data(), rows, c.embed_scale, x);
    for (int32_t l = 0; l < L; ++l) {
        const LayerWeights& W = weights_.layers[l];
        const bool rec = l >= L0;
        GradWorkspace::LayerTape& tp = g.tape[l];
        if (rec) {
            for (auto* buf : {&tp.x_in, &tp.x_mid}) buf->ensure(be, rows * d);
            for (auto* buf : {&tp.q, &tp.z}) buf->ensure(be, rows * q_dim);
            for (auto* buf : {&tp.k, &tp.v}) buf->ensure(be, rows * kv_dim);
            for (auto* buf : {&tp.gate, &tp.up}) buf->ensure(be, rows * ff);
            if (c.qk_norm) {
                tp.q_raw.ensure(be, rows * q_dim);
                tp.k_raw.ensure(be, rows * kv_dim);
            }
            if (c.post_norms)
                for (auto* buf : {&tp.attn_o, &tp.ffn_o}) buf->ensure(be, rows * d);
            be.copy_2d(x, d, tp.x_in.get(), d, rows, d);
        }
        float* q = rec ? tp.q.get() : g.q.get();
        float* k = rec ? tp.k.get() : g.k.get();
        float* v = rec ? tp.v.get() : g.v.get();
        float* z = rec ? tp.z.get() : g.z.get();
        float* gate = rec ? tp.gate.get() : g.gate.get();
        float* up = rec ? tp.up.get() : g.up.get();
        float* xn = g.xn.get();
        // q/k as projected (and biased): the tape's q_raw/k_raw where the per-head norms' backward will need them,
        // else q/k themselves (normalised in place, as in the forward)
        float* q_raw = c.qk_norm && rec ? tp.q_raw.get() : q;
        float* k_raw = c.qk_norm && rec ? tp.k_raw.get() : k;
        // attention and MLP outputs before their post-norms: on the tape, or scratch
        float* attn_o = c.post_norms ? (rec ? tp.attn_o.get() : g.out.get()) : nullptr;
        float* ffn_o = c.post_norms ? (rec ? tp.ffn_o.get() : g.out.get()) : nullptr;

        be.rmsnorm(x, W.attn_norm, xn, rows, d, c.rms_eps);
        be.matmul(xn, W.wq, q_raw, rows, false);
        be.matmul(xn, W.wk, k_raw, rows, false);
        be.matmul(xn, W.wv, v, rows, false);
        if (c.qkv_bias) {
            be.add_bias(q_raw, W.bq, rows, q_dim);
            be.add_bias(k_raw, W.bk, rows, kv_dim);
            be.add_bias(v, W.bv, rows, kv_dim);
        }
        if (c.qk_norm) {  // per-head RMSNorm over d_head: rows*H (rows*H_kv) rows of d_head
            be.rmsnorm(q_raw, W.q_norm, q, rows * H, dh, c.rms_eps);
            be.rmsnorm(k_raw, W.k_norm, k, rows * c.n_head_kv, dh, c.rms_eps);
        }
        be.rope(q, B, T, 0, H, dh, c.layers[l].rope_base);
        be.rope(k, B, T, 0, c.n_head_kv, dh, c.layers[l].rope_base);
        be.attention(attention_args(l, q, k, v, z));
        const float* zsrc = z;
        if (layer_scaled(l)) {
            be.copy_2d(z, q_dim, g.zs.get(), q_dim, rows, q_dim);
            for (int32_t h = 0; h < H; ++h) {
                const float s = rq.head_scale[size_t(l) * H + h];
                if (s != 1.0f) be.scale_columns(g.zs.get(), rows, q_dim, int64_t(h) * dh, dh, s);
            }
            zsrc = g.zs.get();
        }
        if (c.post_norms) {  // x += PA(attn_o)
            be.matmul(zsrc, W.wo, attn_o, rows, false);
            be.rmsnorm(attn_o, W.post_attn_norm, xn, rows, d, c.rms_eps);
            be.add(x, xn, rows * d);
        } else {
            be.matmul(zsrc, W.wo, x, rows, /*accumulate=*/true);
        }
        if (rec) be.copy_2d(x, d, tp.x_mid.get(), d, rows, d);
        be.rmsnorm(x, W.ffn_norm, xn, rows, d, c.rms_eps);
        be.matmul(xn, W.w_gate, gate, rows, false);
        be.matmul(xn, W.w_up, up, rows, false);
        be.gated_activation(gate, up, g.act.get(), rows * ff, c.activation);
        if (c.post_norms) {  // x += PF(ffn_o)
            be.matmul(g.act.get(), W.w_down, ffn_o, rows, false);
            be.rmsnorm(ffn_o, W.post_ffn_norm, xn, rows, d, c.rms_eps);
            be.add(x, xn, rows * d);
        } else {
            be.matmul(g.act.get(), W.w_down, x, rows, /*accumulate=*/true);
        }
    }

    // ---------------------------------------------------------------- 2. output head at the loss positions
    GradResult res;
    const int64_t out_rows = B * np;
    res.per_position.assign(size_t(out_rows), 0.0);
    if (rq.loss == LossKind::CROSS_ENTROPY) res.correct.assign(size_t(out_rows), 0);
    float* dx = g.dx.get();
    float* dmid = g.dmid.get();
    be.fill(dx, rows * d, 0.0f);
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(out_rows, (int64_t(1) << 24) / V));
    g.x_out.ensure(be, chunk * d);
    g.hidden.ensure(be, chunk * d);
    g.dhidden.ensure(be, chunk * d);
    g.dxrows.ensure(be, chunk * d);
    g.logits.ensure(be, chunk * V);
    std::vector<float> host_logits, host_dh;
    std::vector<double> mean_unembed;
    if (rq.loss == LossKind::LOGIT_MARGIN) {  // d l / d hidden = E[target] - mean_v E[v]
        const Matrix& E = model_.weights.output;
        mean_unembed.assign(size_t(d), 0.0);
        std::vector<float> row(static_cast<size_t>(d));
        for (int64_t vv = 0; vv < E.rows; ++vv) {
            read_rows(E, vv, 1, row.data());  // any host precision
            for (int64_t i = 0; i < d; ++i) mean_unembed[i] += row[size_t(i)];
        }
        for (auto& m : mean_unembed) m /= double(E.rows);
    }
    for (int64_t r0 = 0; r0 < out_rows; r0 += chunk) {
        const int64_t n = std::min(chunk, out_rows - r0);
        for (int64_t o = 0; o < n; ++o) {
            const int64_t b = (r0 + o) / np, i = (r0 + o) % np;
            be.copy_2d(x + (b * T + rq.positions[i]) * d, d, g.x_out.get() + o * d, d, 1, d);
        }
        be.rmsnorm(g.x_out.get(), weights_.output_norm, g.hidden.get(), n, d, c.rms_eps);
        be.matmul(g.hidden.get(), weights_.output, g.logits.get(), n, false);
        if (rq.loss == LossKind::CROSS_ENTROPY) {
            be.softmax_cross_entropy(g.logits.get(), rq.targets.data() + r0, n, V, rq.loss_scale,
                                     res.per_position.data() + r0, res.correct.data() + r0);
            be.matmul_dx(g.logits.get(), weights_.output, g.dhidden.get(), n, false);
        } else {
            host_logits.resize(size_t(n * V));
            be.download(g.logits.get(), host_logits.data(), n * V);
            host_dh.resize(size_t(n * d));
            const Matrix& E = model_.weights.output;
            std::vector<float> e_row(static_cast<size_t>(d));
            for (int64_t o = 0; o < n; ++o) {
                const float* lg = host_logits.data() + o * V;
                double m = 0;
                for (int64_t vv = 0; vv < V; ++vv) m += lg[vv];
                const int32_t t = rq.targets[size_t(r0 + o)];
                res.per_position[size_t(r0 + o)] = double(lg[t]) - m / V;
                read_rows(E, t, 1, e_row.data());
                for (int64_t i = 0; i < d; ++i)
                    host_dh[size_t(o * d + i)] = float(rq.loss_scale * (double(e_row[size_t(i)]) - mean_unembed[i]));
            }
            be.upload(host_dh.data(), g.dhidden.get(), n * d);
        }
        be.rmsnorm_backward(g.x_out.get(), weights_.output_norm, g.dhidden.get(), g.dxrows.get(), n, d, c.rms_eps,
                            false);
        for (int64_t o = 0; o < n; ++o) {
            const int64_t b = (r0 + o) / np, i = (r0 + o) % np;
            be.add(dx + (b * T + rq.positions[i]) * d, g.dxrows.get() + o * d, d);
        }
    }
    double total = 0;
    for (double v : res.per_position) total += v;
    res.loss = rq.loss_scale * total;

    // ---------------------------------------------------------------- 3. backward sweep, layers in reverse
    res.head_grad.assign(size_t(L) * H, 0.0);
    if (rq.capture) {
        res.capture_positions = rq.capture_positions;
        if (res.capture_positions.empty())
            for (int32_t t = 0; t < T; ++t) res.capture_positions.push_back(t);
        for (int32_t t : res.capture_positions) check(t >= 0 && t < T, "backward: capture position ", t, " outside");
        res.z.resize(L);
        res.dz.resize(L);
    }
    for (int32_t l = L - 1; l >= L0; --l) {
        const LayerWeights& W = weights_.layers[l];
        GradWorkspace::LayerTape& tp = g.tape[l];
        // MLP: x_out = x_mid + PF(ffn_o), ffn_o = act(gate, up) W_down^T
        be.copy_2d(dx, d, dmid, d, rows, d);
        const float* dffn_o = dx;
        if (c.post_norms) {
            be.rmsnorm_backward(tp.ffn_o.get(), W.post_ffn_norm, dx, g.dout.get(), rows, d, c.rms_eps, false);
            dffn_o = g.dout.get();
        }
        be.matmul_dx(dffn_o, W.w_down, g.dff1.get(), rows, false);
        be.gated_activation_backward(tp.gate.get(), tp.up.get(), g.dff1.get(), g.dff1.get(), g.dff2.get(), rows * ff,
                                     c.activation);
        be.matmul_dx(g.dff1.get(), W.w_gate, g.dxn.get(), rows, false);
        be.matmul_dx(g.dff2.get(), W.w_up, g.dxn.get(), rows, true);
        be.rmsnorm_backward(tp.x_mid.get(), W.ffn_norm, g.dxn.get(), dmid, rows, d, c.rms_eps, true);
        // output projection: x_mid = x_in + PA(attn_o), attn_o = (tau z) W_O^T
        float* dz = g.dz.get();
        const float* dattn_o = dmid;
        if (c.post_norms) {
            be.rmsnorm_backward(tp.attn_o.get(), W.post_attn_norm, dmid, g.dout.get(), rows, d, c.rms_eps, false);
            dattn_o = g.dout.get();
        }
        be.matmul_dx(dattn_o, W.wo, dz, rows, false);
        be.head_dots(dz, tp.z.get(), rows, q_dim, H, dh, res.head_grad.data() + size_t(l) * H);
        if (rq.capture) {
            download_rows(be, tp.z.get(), q_dim, B, T, res.capture_positions, res.z[l]);
            download_rows(be, dz, q_dim, B, T, res.capture_positions, res.dz[l]);
        }
        if (l == L0 && !rq.residual_grad) break;
        if (layer_scaled(l))
            for (int32_t h = 0; h < H; ++h) {
                const float s = rq.head_scale[size_t(l) * H + h];
                if (s != 1.0f) be.scale_columns(dz, rows, q_dim, int64_t(h) * dh, dh, s);
            }
        // attention (its window included), RoPE, the per-head q/k norms, q/k/v projections and the attention norm
        AttentionArgs a = attention_args(l, tp.q.get(), tp.k.get(), tp.v.get(), tp.z.get());
        be.attention_backward(a, dz, g.dq.get(), g.dk.get(), g.dv.get());
        be.rope_backward(g.dq.get(), B, T, 0, H, dh, c.layers[l].rope_base);
        be.rope_backward(g.dk.get(), B, T, 0, c.n_head_kv, dh, c.layers[l].rope_base);
        const float* dq_raw = g.dq.get();
        const float* dk_raw = g.dk.get();
        if (c.qk_norm) {  // rows*H (rows*H_kv) rows of d_head, as in the forward
            be.rmsnorm_backward(tp.q_raw.get(), W.q_norm, g.dq.get(), g.dq_raw.get(), rows * H, dh, c.rms_eps, false);
            be.rmsnorm_backward(tp.k_raw.get(), W.k_norm, g.dk.get(), g.dk_raw.get(), rows * c.n_head_kv, dh,
                                c.rms_eps, false);
            dq_raw = g.dq_raw.get();
            dk_raw = g.dk_raw.get();
        }
        be.matmul_dx(dq_raw, W.wq, g.dxn.get(), rows, false);
        be.matmul_dx(dk_raw, W.wk, g.dxn.get(), rows, true);
        be.matmul_dx(g.dv.get(), W.wv, g.dxn.get(), rows, true);
        be.rmsnorm_backward(tp.x_in.get(), W.attn_norm, g.dxn.get(), dmid, rows, d, c.rms_eps, true);
        std::swap(dx, dmid);
    }
    if (rq.residual_grad) {
        res.residual_grad.resize(size_t(rows * d));
        be.download(dx, res.residual_grad.data(), rows * d);
    }
    return res;
}

}  // namespace hs

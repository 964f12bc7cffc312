// The forward pass: one function that reads top to bottom, every step a named backend op.
#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "engine/engine.hpp"
#include "engine/grad_workspace.hpp"
#include "engine/rows.hpp"
#include "util/error.hpp"

namespace hs {

KvCache::KvCache(Backend& be, const ModelConfig& c, int64_t batch, int64_t capacity)
    : batch_(batch), capacity_(capacity) {
    check(batch > 0 && capacity > 0, "kv cache: batch and capacity must be positive");
    for (int32_t l = 0; l < c.n_layer; ++l) {
        k_.emplace_back(be, batch * capacity * c.kv_dim());
        v_.emplace_back(be, batch * capacity * c.kv_dim());
    }
}

// Device scratch, grown on demand and reused across calls.
struct Engine::Workspace {
    DeviceBuffer x, xn, q, k, v, z, attn, gate, up, hidden, logits;
};

Engine::Engine(const Model& model, Backend& backend)
    : model_(model), backend_(backend), ws_(std::make_unique<Workspace>()) {
    weights_ = backend_.prepare_weights(model.config, model.weights);
}

Engine::~Engine() = default;

namespace {

std::vector<int32_t> resolve_positions(const std::vector<int32_t>& given, int64_t seq, const char* what) {
    if (given.empty()) {
        std::vector<int32_t> all(seq);
        for (int64_t t = 0; t < seq; ++t) all[t] = int32_t(t);
        return all;
    }
    for (int32_t t : given) check(t >= 0 && t < seq, what, " position ", t, " is outside the sequence (0..", seq - 1, ")");
    return given;
}

}  // namespace

void download_rows(Backend& be, const float* x, int64_t width, int64_t B, int64_t T, const std::vector<int32_t>& pos,
                   std::vector<float>& out) {
    const int64_t P = int64_t(pos.size());
    out.resize(size_t(B * P * width));
    if (P == 0) return;
    if (P == T) return be.download(x, out.data(), B * T * width);
    DeviceBuffer rows(be, B * P * width);
    for (int64_t i = 0; i < P; ++i)  // rows (b, pos[i]) of every b: B rows, source stride T*width
        be.copy_2d(x + pos[size_t(i)] * width, T * width, rows.get() + i * width, P * width, B, width);
    be.download(rows.get(), out.data(), B * P * width);
}

void Engine::mlp_block(int32_t l, float* x, int64_t rows) {
    const ModelConfig& c = model_.config;
    const LayerWeights& L = weights_.layers[l];
    Workspace& w = *ws_;
    w.xn.ensure(backend_, rows * c.d_model);
    w.gate.ensure(backend_, rows * c.d_ff);
    w.up.ensure(backend_, rows * c.d_ff);
    backend_.rmsnorm(x, L.ffn_norm, w.xn.get(), rows, c.d_model, c.rms_eps);
    backend_.matmul_many(w.xn.get(), rows, {{&L.w_gate, w.gate.get()}, {&L.w_up, w.up.get()}});
    backend_.gated_activation(w.gate.get(), w.up.get(), w.gate.get(), rows * c.d_ff, c.activation);
    if (c.post_norms) {
        backend_.matmul(w.gate.get(), L.w_down, w.xn.get(), rows, false);
        backend_.rmsnorm(w.xn.get(), L.post_ffn_norm, w.xn.get(), rows, c.d_model, c.rms_eps);
        backend_.add(x, w.xn.get(), rows * c.d_model);
    } else {
        backend_.matmul(w.gate.get(), L.w_down, x, rows, /*accumulate=*/true);
    }
}

void Engine::final_norm(const float* x, float* out, int64_t rows) {
    backend_.rmsnorm(x, weights_.output_norm, out, rows, model_.config.d_model, model_.config.rms_eps);
}

void Engine::unembed(const float* hidden, float* logits, int64_t rows) {
    backend_.matmul(hidden, weights_.output, logits, rows, false);
    check(model_.config.final_logit_softcap == 0.0f, "final logit softcapping is not implemented yet");
}

ForwardResult Engine::forward(const std::vector<int32_t>& tokens, int64_t B, int64_t T, const ForwardHooks& hk,
                              KvCache* cache) {
    const ModelConfig& c = model_.config;
    const int64_t rows = B * T, d = c.d_model, q_dim = c.q_dim(), kv_dim = c.kv_dim();
    const int32_t L0 = hk.start_layer;
    check(B > 0 && T > 0, "forward: batch and sequence length must be positive");
    check(L0 >= 0 && L0 < c.n_layer, "forward: start layer ", L0, " is outside 0..", c.n_layer - 1);
    check(hk.start_residual != nullptr || L0 == 0, "forward: start_layer > 0 needs start_residual");
    check(hk.start_residual != nullptr || int64_t(tokens.size()) == rows, "forward: expected batch*seq tokens");
    check(hk.head_scale.empty() || int64_t(hk.head_scale.size()) == int64_t(c.n_layer) * c.n_head,
          "forward: head_scale must have n_layer*n_head entries");
    check(!hk.frozen_attention || int32_t(hk.frozen_attention->size()) == c.n_layer,
          "forward: frozen_attention must have one entry per layer");

    // With a cache, positions continue it and keys/values are stored into it. Without one, a layer's k and v are
    // only needed inside that layer: the k/v buffers themselves ([B*T, kv_dim] = [B, T, kv_dim]) serve as a
    // one-layer cache, so nothing of size n_layer x B x T is allocated.
    Workspace& w = *ws_;
    check(!cache || cache->batch() == B, "forward: kv cache batch ", cache ? cache->batch() : 0, " differs from batch ", B);
    const int64_t pos0 = cache ? cache->n_past() : 0;
    check(!cache || pos0 + T <= cache->capacity(), "forward: ", pos0 + T, " positions exceed the kv cache capacity ",
          cache ? cache->capacity() : 0);

    ForwardResult res;
    res.batch = B;
    res.seq = T;
    res.pos0 = pos0;
    res.z_positions = resolve_positions(hk.z_positions, T, "z capture");
    res.residual_positions = resolve_positions(hk.residual_positions, T, "residual capture");
    res.attn_prob_rows = resolve_positions(hk.attn_prob_rows, T, "attention-probability");
    res.z.resize(c.n_layer);
    res.attn_probs.resize(c.n_layer);
    std::vector<char> want_z(c.n_layer, 0), want_probs(c.n_layer, 0);
    for (int32_t l : hk.z_layers) check(l >= 0 && l < c.n_layer, "z capture: no layer ", l), want_z[l] = 1;
    for (int32_t l : hk.attn_prob_layers)
        check(l >= 0 && l < c.n_layer, "attention capture: no layer ", l), want_probs[l] = 1;
    for (const auto& p : hk.head_patches) {
        check(p.layer >= 0 && p.layer < c.n_layer && p.head >= 0 && p.head < c.n_head, "head patch: no head (",
              p.layer, ", ", p.head, ")");
        check(p.sequence >= -1 && p.sequence < B, "head patch: sequence ", p.sequence, " outside the batch");
        check(p.values.size() == size_t(c.d_head) || p.values.size() == p.positions.size() * c.d_head,
              "head patch: values must be [d_head] or [positions, d_head]");
        for (int32_t t : p.positions) check(t >= 0 && t < T, "head patch: position ", t, " outside the sequence");
    }
    auto capture_residual = [&](int32_t l, ResidualPoint pt, const float* x) {
        for (const auto& r : hk.residuals)
            if (r.first == l && r.second == pt)
                download_rows(backend_, x, d, B, T, res.residual_positions, res.residuals[r]);
    };

    w.x.ensure(backend_, rows * d);
    w.xn.ensure(backend_, rows * d);
    w.q.ensure(backend_, rows * q_dim);
    w.k.ensure(backend_, rows * kv_dim);
    w.v.ensure(backend_, rows * kv_dim);
    w.z.ensure(backend_, rows * q_dim);
    w.attn.ensure(backend_, rows * d);
    float *x = w.x.get(), *xn = w.xn.get(), *q = w.q.get(), *k = w.k.get(), *v = w.v.get(), *z = w.z.get();

    // ---- residual stream entering the first computed layer: x [B*T, d]
    if (hk.start_residual && hk.start_residual_on_device)
        backend_.copy_2d(hk.start_residual, d, x, d, rows, d);
    else if (hk.start_residual)
        backend_.upload(hk.start_residual, x, rows * d);
    else
        backend_.embed(weights_.token_embd, tokens.data(), rows, c.embed_scale, x);

    // A forward that produces no output (no logits, no final hidden state, no kv cache to fill) stops after the last
    // layer any read asks for: e.g. InfiniRetri scoring with a middle layer's attention never runs the layers above.
    int32_t end_layer = c.n_layer;
    if (hk.logits == LogitsMode::NONE && !hk.final_hidden && !cache) {
        int32_t last = -1;
        for (int32_t l : hk.z_layers) last = std::max(last, l);
        for (int32_t l : hk.attn_prob_layers) last = std::max(last, l);
        for (const auto& r : hk.residuals) last = std::max(last, r.first);
        if (last >= L0) end_layer = last + 1;
    }

    for (int32_t l = L0; l < end_layer; ++l) {
        const LayerWeights& W = weights_.layers[l];
        capture_residual(l, ResidualPoint::BLOCK_INPUT, x);

        // ---- attention: z [B*T, q_dim] = softmax(q k^T * scale) v per head
        const bool frozen = hk.frozen_attention && !(*hk.frozen_attention)[l].empty();
        if (frozen) {
            check(int64_t((*hk.frozen_attention)[l].size()) == rows * q_dim, "frozen attention of layer ", l,
                  " must be [batch*seq, q_dim]");
            check(!want_probs[l], "attention probabilities of layer ", l, " cannot be read when it is frozen");
            backend_.upload((*hk.frozen_attention)[l].data(), z, rows * q_dim);
        } else {
            backend_.rmsnorm(x, W.attn_norm, xn, rows, d, c.rms_eps);
            // q [B*T, q_dim], k and v [B*T, kv_dim]
            backend_.matmul_many(xn, rows, {{&W.wq, q}, {&W.wk, k}, {&W.wv, v}});
            if (c.qkv_bias) {
                backend_.add_bias(q, W.bq, rows, q_dim);
                backend_.add_bias(k, W.bk, rows, kv_dim);
                backend_.add_bias(v, W.bv, rows, kv_dim);
            }
            if (c.qk_norm) {  // per-head RMSNorm over d_head
                backend_.rmsnorm(q, W.q_norm, q, rows * c.n_head, c.d_head, c.rms_eps);
                backend_.rmsnorm(k, W.k_norm, k, rows * c.n_head_kv, c.d_head, c.rms_eps);
            }
            const float base = c.layers[l].rope_base;
            backend_.rope(q, B, T, pos0, c.n_head, c.d_head, base);
            backend_.rope(k, B, T, pos0, c.n_head_kv, c.d_head, base);
            if (cache) {
                backend_.store_kv(k, cache->k(l), B, T, pos0, cache->capacity(), kv_dim);
                backend_.store_kv(v, cache->v(l), B, T, pos0, cache->capacity(), kv_dim);
            }
            AttentionArgs a;
            a.q = q;
            a.k_cache = cache ? cache->k(l) : k;
            a.v_cache = cache ? cache->v(l) : v;
            a.z = z;
            a.batch = B;
            a.seq = T;
            a.pos0 = pos0;
            a.cache_len = cache ? cache->capacity() : T;
            a.n_head = c.n_head;
            a.n_head_kv = c.n_head_kv;
            a.d_head = c.d_head;
            a.scale = c.attn_scale;
            a.window = c.layers[l].window;
            backend_.attention(a);
            if (want_probs[l]) {
                const auto& r = res.attn_prob_rows;
                res.attn_probs[l].resize(size_t(B) * c.n_head * r.size() * (pos0 + T));
                backend_.attention_probs(a, r.data(), int64_t(r.size()), res.attn_probs[l].data());
            }
        }
        if (want_z[l]) download_rows(backend_, z, q_dim, B, T, res.z_positions, res.z[l]);

        // ---- interventions on head outputs
        if (!hk.head_scale.empty())
            for (int32_t h = 0; h < c.n_head; ++h) {
                const float s = hk.head_scale[size_t(l) * c.n_head + h];
                if (s != 1.0f) backend_.scale_columns(z, rows, q_dim, int64_t(h) * c.d_head, c.d_head, s);
            }
        // Every patch of the layer in one write: offsets into z and the d_head values of each. Where patches
        // overlap the later one wins (one entry per offset, so no backend writes a block twice in parallel).
        std::vector<int64_t> patch_at;
        std::vector<float> patch_values;
        std::unordered_map<int64_t, size_t> patch_slot;
        for (const auto& p : hk.head_patches) {
            if (p.layer != l) continue;
            const bool one = p.values.size() == size_t(c.d_head);
            for (int64_t b = (p.sequence < 0 ? 0 : p.sequence); b < (p.sequence < 0 ? B : p.sequence + 1); ++b)
                for (size_t i = 0; i < p.positions.size(); ++i) {
                    const int64_t at = (b * T + p.positions[i]) * q_dim + int64_t(p.head) * c.d_head;
                    const float* v = p.values.data() + (one ? 0 : i * c.d_head);
                    auto [it, fresh] = patch_slot.try_emplace(at, patch_at.size());
                    if (fresh) {
                        patch_at.push_back(at);
                        patch_values.insert(patch_values.end(), v, v + c.d_head);
                    } else {
                        std::copy(v, v + c.d_head, patch_values.begin() + int64_t(it->second) * c.d_head);
                    }
                }
        }
        if (!patch_at.empty())
            backend_.write_blocks(z, patch_at.data(), int64_t(patch_at.size()), c.d_head, patch_values.data());

        // ---- output projection and residual add: x += z . W_O^T
        if (c.post_norms) {
            backend_.matmul(z, W.wo, w.attn.get(), rows, false);
            backend_.rmsnorm(w.attn.get(), W.post_attn_norm, w.attn.get(), rows, d, c.rms_eps);
            backend_.add(x, w.attn.get(), rows * d);
        } else {
            backend_.matmul(z, W.wo, x, rows, /*accumulate=*/true);
        }
        capture_residual(l, ResidualPoint::AFTER_ATTENTION, x);

        // ---- MLP: x += down(act(gate(norm x)) * up(norm x))
        mlp_block(l, x, rows);
        capture_residual(l, ResidualPoint::BLOCK_OUTPUT, x);
    }
    if (cache) cache->advance(T);

    // ---- final norm and output head at the requested positions
    switch (hk.logits) {
        case LogitsMode::LAST: res.logit_positions = {int32_t(T - 1)}; break;
        case LogitsMode::POSITIONS: res.logit_positions = resolve_positions(hk.logit_positions, T, "logit"); break;
        case LogitsMode::ALL: res.logit_positions = resolve_positions({}, T, "logit"); break;
        case LogitsMode::NONE: break;
    }
    if (hk.logits == LogitsMode::POSITIONS && hk.logit_positions.empty()) res.logit_positions.clear();
    const int64_t np = int64_t(res.logit_positions.size());
    if (np > 0 && (hk.logits != LogitsMode::NONE || hk.final_hidden)) {
        const int64_t out_rows = B * np;
        w.hidden.ensure(backend_, out_rows * d);
        for (int64_t i = 0; i < np; ++i)  // position i of every sequence: B rows, source stride T*d
            backend_.copy_2d(x + res.logit_positions[size_t(i)] * d, T * d, w.hidden.get() + i * d, np * d, B, d);
        final_norm(w.hidden.get(), w.hidden.get(), out_rows);
        if (hk.final_hidden) {
            res.final_hidden.resize(size_t(out_rows * d));
            backend_.download(w.hidden.get(), res.final_hidden.data(), out_rows * d);
        }
        if (!(hk.hidden_only && hk.final_hidden)) {
            w.logits.ensure(backend_, out_rows * c.n_vocab);
            unembed(w.hidden.get(), w.logits.get(), out_rows);
            res.logits.resize(size_t(out_rows) * c.n_vocab);
            backend_.download(w.logits.get(), res.logits.data(), out_rows * c.n_vocab);
        }
    }
    return res;
}

}  // namespace hs

#include "model/config.hpp"

#include <cmath>

#include "util/error.hpp"

namespace hs {

const char* arch_name(Arch a) {
    switch (a) {
        case Arch::LLAMA: return "llama";
        case Arch::QWEN2: return "qwen2";
        case Arch::GEMMA3: return "gemma3";
    }
    return "?";
}

int64_t ModelConfig::n_params() const {
    const int64_t d = d_model;
    int64_t per_layer = d * q_dim() + 2 * d * kv_dim() + q_dim() * d  // q, k, v, o
                        + 3 * d * d_ff                                 // gate, up, down
                        + 2 * d;                                       // norms
    if (qkv_bias) per_layer += q_dim() + 2 * kv_dim();
    if (qk_norm) per_layer += 2 * d_head;
    if (post_norms) per_layer += 2 * d;
    int64_t total = per_layer * n_layer + int64_t(n_vocab) * d + d;
    if (!tied_embeddings) total += int64_t(n_vocab) * d;
    return total;
}

void ModelConfig::validate(const std::string& ctx) const {
    check(n_layer > 0 && n_layer <= 1024, ctx, ": implausible layer count ", n_layer);
    check(d_model > 0 && d_model <= 65536, ctx, ": implausible embedding length ", d_model);
    check(n_head > 0 && n_head <= 1024, ctx, ": implausible head count ", n_head);
    check(n_head_kv > 0 && n_head_kv <= n_head, ctx, ": kv head count ", n_head_kv, " not in 1..", n_head);
    check(n_head % n_head_kv == 0, ctx, ": head count ", n_head, " is not a multiple of the kv head count ",
          n_head_kv);
    check(d_head > 0 && d_head <= 1024 && d_head % 2 == 0, ctx, ": implausible head dimension ", d_head);
    check(rope_dims > 0 && rope_dims <= d_head && rope_dims % 2 == 0, ctx, ": rope dimension count ", rope_dims,
          " must be even and at most the head dimension ", d_head);
    check(rope_dims == d_head, ctx, ": partial rotary embeddings (", rope_dims, " of ", d_head,
          " dims) are not supported");
    check(d_ff > 0 && d_ff <= 1 << 20, ctx, ": implausible feed-forward length ", d_ff);
    check(n_vocab > 0 && n_vocab <= 1 << 22, ctx, ": implausible vocabulary size ", n_vocab);
    check(n_ctx > 0, ctx, ": context length must be positive");
    check(std::isfinite(rms_eps) && rms_eps > 0 && rms_eps < 1, ctx, ": implausible RMS norm epsilon ", rms_eps);
    check(std::isfinite(attn_scale) && attn_scale > 0, ctx, ": attention scale must be positive");
    check(int32_t(layers.size()) == n_layer, ctx, ": per-layer table has ", layers.size(), " entries for ",
          n_layer, " layers");
    for (const auto& l : layers)
        check(std::isfinite(l.rope_base) && l.rope_base > 1, ctx, ": implausible RoPE base ", l.rope_base);
}

}  // namespace hs

// model/config.hpp: what a transformer is, independent of where its weights came from.
//
// One ModelConfig describes every architecture we run. Architectures differ by data (flags and per-layer
// tables), never by if-chains on the architecture name inside the forward pass: llama, qwen2 (q/k/v biases) and
// gemma3 (embedding scale, q/k norms, post-norms, GELU, per-layer sliding windows and RoPE bases) all fit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hs {

enum class Arch { LLAMA, QWEN2, GEMMA3 };
enum class Activation { SILU, GELU_TANH };  // gated MLP: down(act(gate(x)) * up(x))

// Per-layer attention geometry (gemma3 alternates sliding-window and global layers with different RoPE bases).
struct LayerAttention {
    float rope_base = 10000.0f;
    int32_t window = 0;  // 0: full causal attention; w > 0: a query at p sees keys p-w+1..p
};

struct ModelConfig {
    Arch arch = Arch::LLAMA;
    std::string arch_name = "llama";
    std::string name;          // general.name, or the random shape's name

    int32_t n_layer = 0;
    int32_t d_model = 0;
    int32_t n_head = 0;
    int32_t n_head_kv = 0;
    int32_t d_head = 0;
    int32_t d_ff = 0;
    int32_t n_vocab = 0;
    int32_t n_ctx = 0;         // trained context length
    float rms_eps = 1e-5f;
    int32_t rope_dims = 0;     // rotated dims per head (== d_head for all supported models)
    float attn_scale = 0.0f;   // multiplies q.k; 1/sqrt(d_head) unless the architecture says otherwise

    // Block description (data, not code paths):
    bool tied_embeddings = false;  // the output head reuses token_embd
    bool qkv_bias = false;         // qwen2
    bool qk_norm = false;          // gemma3: RMSNorm over d_head on every q and k head before RoPE
    bool post_norms = false;       // gemma3: norms on the attention and MLP outputs before the residual add
    float embed_scale = 1.0f;      // gemma3: sqrt(d_model)
    float final_logit_softcap = 0.0f;
    Activation activation = Activation::SILU;
    std::vector<LayerAttention> layers;  // [n_layer]

    int32_t q_dim() const { return n_head * d_head; }
    int32_t kv_dim() const { return n_head_kv * d_head; }
    int32_t group_size() const { return n_head / n_head_kv; }  // query heads per kv head
    int32_t n_heads_total() const { return n_layer * n_head; }
    // Parameter count (embedding counted once when tied).
    int64_t n_params() const;
    // Throws hs::Error(context + ": ...") when the numbers are inconsistent (head counts, divisibility, ranges).
    void validate(const std::string& context) const;
};

const char* arch_name(Arch a);

}  // namespace hs

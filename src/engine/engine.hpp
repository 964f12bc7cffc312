// engine/engine.hpp: the forward pass of a decoder-only transformer on any backend, with hooks on every head.
//
// A batch is B sequences of T tokens (row r = b*T + t). Hooks are declarative (what to read, what to change) and
// cost nothing when absent. Names of the activations (shapes per sequence):
//   residual  x        [T, d_model]          entering a block (BLOCK_INPUT), after its attention add
//                                            (AFTER_ATTENTION), leaving it (BLOCK_OUTPUT)
//   head output z[l,h] [T, d_head]           attention output of head h before the output projection; the head's
//                                            contribution to the residual is z[l,h] . W_O[:, h*d_head:(h+1)*d_head]^T
//   attention probs    [n_head, rows, keys]  softmax rows of chosen queries
//   final hidden       [T, d_model]          after the final norm (what the output head reads)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "backend/backend.hpp"
#include "model/model.hpp"

namespace hs {

enum class ResidualPoint { BLOCK_INPUT, AFTER_ATTENTION, BLOCK_OUTPUT };
enum class LogitsMode { LAST, POSITIONS, ALL, NONE };

// Host activations per layer; an empty entry means "not captured" / "not supplied".
using LayerActivations = std::vector<std::vector<float>>;

// Replace head output z[layer, head] at some positions of one sequence (or of all) by given vectors.
struct HeadPatch {
    int32_t layer = 0, head = 0;
    int32_t sequence = -1;           // b, or -1 for every sequence
    std::vector<int32_t> positions;  // t indices
    std::vector<float> values;       // [positions.size(), d_head], or one [d_head] vector for every position
};

struct ForwardHooks {
    // ---- interventions, applied to z after it is computed (or taken from frozen_attention), before W_O
    std::vector<float> head_scale;          // [n_layer * n_head]: z[l,h] *= head_scale[l*n_head + h]; empty: none
    std::vector<HeadPatch> head_patches;
    // Frozen attention: layer l's z is taken from (*frozen_attention)[l] ([B*T, q_dim], all positions) instead of
    // being computed; empty entries compute normally. With every layer frozen this is the path-patching
    // "attention frozen at clean values".
    const LayerActivations* frozen_attention = nullptr;
    // Start at start_layer from a given residual ([B*T, d_model], entering start_layer; tokens are ignored): host
    // memory, or the backend's own when start_residual_on_device (no transfer: sweeps keep it on the GPU).
    int32_t start_layer = 0;
    const float* start_residual = nullptr;
    bool start_residual_on_device = false;

    // ---- reads (captured into ForwardResult)
    std::vector<int32_t> z_layers;               // capture z of these layers (before interventions)
    std::vector<int32_t> z_positions;            // ... at these t (empty: all positions)
    std::vector<std::pair<int32_t, ResidualPoint>> residuals;  // capture the residual at these points
    std::vector<int32_t> residual_positions;     // ... at these t (empty: all)
    std::vector<int32_t> attn_prob_layers;       // capture attention probabilities of these layers
    std::vector<int32_t> attn_prob_rows;         // ... for these query t (empty: all)
    bool final_hidden = false;                   // capture the final hidden state at the logit positions
    bool hidden_only = false;                    // with final_hidden: skip the output head (no logits computed)

    // ---- output
    LogitsMode logits = LogitsMode::LAST;
    std::vector<int32_t> logit_positions;        // for LogitsMode::POSITIONS
};

struct ForwardResult {
    int64_t batch = 0, seq = 0, pos0 = 0;
    std::vector<int32_t> logit_positions;        // resolved t indices
    std::vector<float> logits;                   // [B, n_logit_positions, n_vocab]
    std::vector<float> final_hidden;             // [B, n_logit_positions, d_model]
    LayerActivations z;                          // [n_layer] -> [B, n_z_positions, q_dim]
    std::vector<int32_t> z_positions;            // resolved
    std::map<std::pair<int32_t, ResidualPoint>, std::vector<float>> residuals;  // -> [B, n_res_positions, d]
    std::vector<int32_t> residual_positions;     // resolved
    LayerActivations attn_probs;                 // [n_layer] -> [B, n_head, n_rows, pos0 + T]
    std::vector<int32_t> attn_prob_rows;         // resolved

    const float* logits_at(int64_t b, int64_t i, int64_t n_vocab) const {
        return logits.data() + (b * int64_t(logit_positions.size()) + i) * n_vocab;
    }
};

// ---- backward pass (engine/backward.cpp): gradients of a loss w.r.t. activations of the frozen model.
// Loss = loss_scale * sum over sequences b and loss positions i of l(b, i), read at positions[i] with target
// targets[b, i]:
//   CROSS_ENTROPY  l = -log softmax(logits)[target]
//   LOGIT_MARGIN   l = logit[target] - mean over the vocabulary of logit   (the PEAR metric pi, per sample)
enum class LossKind { CROSS_ENTROPY, LOGIT_MARGIN };

struct GradRequest {
    std::vector<float> head_scale;     // runtime tau [n_layer * n_head] (as ForwardHooks::head_scale); empty: all 1
    std::vector<int32_t> positions;    // loss positions t, the same for every sequence
    std::vector<int32_t> targets;      // [B, positions.size()]
    LossKind loss = LossKind::CROSS_ENTROPY;
    double loss_scale = 1.0;           // e.g. 1 / (B * positions) for the mean
    int32_t from_layer = 0;            // backpropagate down to this layer only (the earliest layer of interest)
    std::vector<int32_t> capture_positions;  // capture z and dL/d(tau z) at these t for layers >= from_layer
    bool capture = false;              // ... (empty positions: all)
    bool residual_grad = false;        // also return dL/dx entering from_layer
};

struct GradResult {
    double loss = 0;                   // loss_scale * sum of l
    std::vector<double> per_position;  // [B, positions] l(b, i)
    std::vector<uint8_t> correct;      // [B, positions] argmax == target (CROSS_ENTROPY only)
    // dL/dtau for every head [n_layer * n_head]: sum over all positions of <dL/d(tau_h z_h), z_h>; 0 below from_layer.
    std::vector<double> head_grad;
    LayerActivations z, dz;            // capture: [n_layer] -> [B, n_capture, q_dim]; z before tau, dz = dL/d(tau z)
    std::vector<int32_t> capture_positions;  // resolved
    std::vector<float> residual_grad;  // [B*T, d_model] (residual_grad)
};

// Keys and values of past positions, per layer, for incremental decoding.
class KvCache {
public:
    KvCache(Backend& backend, const ModelConfig& config, int64_t batch, int64_t capacity);
    int64_t batch() const { return batch_; }
    int64_t capacity() const { return capacity_; }
    int64_t n_past() const { return n_past_; }
    void clear() { n_past_ = 0; }
    float* k(int32_t layer) const { return k_[layer].get(); }
    float* v(int32_t layer) const { return v_[layer].get(); }
    void advance(int64_t n) { n_past_ += n; }

private:
    int64_t batch_, capacity_, n_past_ = 0;
    std::vector<DeviceBuffer> k_, v_;
};

class Engine {
public:
    // The engine keeps references: model and backend must outlive it.
    Engine(const Model& model, Backend& backend);
    ~Engine();

    const ModelConfig& config() const { return model_.config; }
    const Model& model() const { return model_; }
    Backend& backend() const { return backend_; }
    const ModelWeights& device_weights() const { return weights_; }

    // tokens: [batch * seq] (ignored when hooks.start_layer > 0). With a cache, the new tokens continue the cached
    // sequences (positions cache->n_past()..); without, positions start at 0.
    ForwardResult forward(const std::vector<int32_t>& tokens, int64_t batch, int64_t seq,
                          const ForwardHooks& hooks = {}, KvCache* cache = nullptr);

    // Training forward (recording the tape: every activation of layers >= from_layer that the backward needs),
    // the loss at the requested positions, and the backward sweep over layers in reverse, all on the backend.
    // Starts at position 0 (no cache). Every block the forward runs is supported (q/k biases, q/k norms,
    // post-norms, SiLU/GELU-tanh gating, sliding windows); final logit softcapping is refused, as in the forward.
    GradResult loss_gradients(const std::vector<int32_t>& tokens, int64_t batch, int64_t seq,
                              const GradRequest& request);

    // ---- building blocks (device memory) for sweeps that re-run parts of the network
    // x[rows, d] += MLP_l(norm(x))   (including the architecture's post-norm)
    void mlp_block(int32_t layer, float* x, int64_t rows);
    // out[rows, d] = final_norm(x)
    void final_norm(const float* x, float* out, int64_t rows);
    // logits[rows, n_vocab] = hidden[rows, d] . W_out^T (softcap applied when the architecture has one)
    void unembed(const float* hidden, float* logits, int64_t rows);

private:
    struct Workspace;
    struct GradWorkspace;
    const Model& model_;
    Backend& backend_;
    ModelWeights weights_;
    std::unique_ptr<Workspace> ws_;
    std::unique_ptr<GradWorkspace> gws_;
};

// Greedy or sampled generation with a KV cache (batch 1).
struct GenerateOptions {
    int32_t max_new_tokens = 64;
    float temperature = 0.0f;            // 0: greedy
    float top_p = 1.0f;
    uint64_t seed = 0;
    bool stop_at_eog = true;             // stop at the tokenizer's end-of-generation ids
    std::vector<int32_t> stop_ids;       // extra stop ids
    // checked after each new token with every new token so far: true ends the generation there (e.g. "the answer's
    // first non-empty line is complete"); empty: never
    std::function<bool(const std::vector<int32_t>&)> stop_when;
    std::vector<float> head_scale;       // runtime head scaling (PEAR), [n_layer*n_head] or empty
    int64_t max_context = 0;             // 0: the model's n_ctx
};
struct GenerateResult {
    std::vector<int32_t> tokens;         // new tokens (the stop token included when one was produced)
    bool stopped = false;                // ended on a stop token
    double prefill_seconds = 0, decode_seconds = 0;
};
GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& options);

// Per-token log-probabilities of ids[1..] given the prefix (teacher forcing), computed in forwards of `chunk`
// positions through a KV cache (chunk 1: token by token, the decode path).
std::vector<double> token_logprobs(Engine& engine, const std::vector<int32_t>& ids, int64_t chunk = 256);

}  // namespace hs

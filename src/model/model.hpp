// model/model.hpp: a loaded model = config + fp32 weights + tokenizer.
//
// Weights are dequantised once at load into one 64-byte-aligned fp32 arena; every tensor below points into it.
// Matrices are row-major [rows = out][cols = in], exactly GGUF's layout, so y = x . W^T is one GEMM with W
// transposed. For `llama`, the Q/K row permutation of llama.cpp's converter is undone at load, so one
// rotate-half RoPE (pairs j, j + d_head/2, as in HF) serves every architecture.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "tokenizer/tokenizer.hpp"

namespace hs {

// How a backend stores a weight matrix. Host weights (and the CPU backend's) are always F32; a GPU backend may keep
// 16-bit copies (BF16 default on CUDA) and computes with fp32 accumulation.
enum class WeightType : uint8_t { F32, BF16, F16 };
const char* weight_type_name(WeightType t);       // "fp32" | "bf16" | "fp16"
WeightType parse_weight_type(const std::string& s);  // the names above; throws hs::Error naming the choices

struct Matrix {
    float* data = nullptr;    // [rows, cols] row-major, when type == F32
    int64_t rows = 0;         // output features
    int64_t cols = 0;         // input features
    WeightType type = WeightType::F32;
    void* data16 = nullptr;   // [rows, cols] row-major 16-bit elements, when type is BF16 or F16
};

struct LayerWeights {
    float* attn_norm = nullptr;                  // [d_model]
    Matrix wq, wk, wv;                           // [q_dim, d], [kv_dim, d], [kv_dim, d]
    float* bq = nullptr;                         // [q_dim]  (qkv_bias)
    float* bk = nullptr;                         // [kv_dim]
    float* bv = nullptr;                         // [kv_dim]
    float* q_norm = nullptr;                     // [d_head] (qk_norm)
    float* k_norm = nullptr;                     // [d_head]
    Matrix wo;                                   // [d, q_dim]; column block h*d_head.. is head h's W_O
    float* post_attn_norm = nullptr;             // [d] (post_norms)
    float* ffn_norm = nullptr;                   // [d]
    Matrix w_gate, w_up;                         // [d_ff, d]
    Matrix w_down;                               // [d, d_ff]
    float* post_ffn_norm = nullptr;              // [d] (post_norms)
};

struct ModelWeights {
    Matrix token_embd;      // [n_vocab, d]
    float* output_norm = nullptr;  // [d]
    Matrix output;          // [n_vocab, d]; aliases token_embd when tied
    std::vector<LayerWeights> layers;

    // Storage behind the pointers (fp32, 64-byte aligned). Moving a ModelWeights keeps the pointers valid.
    struct Arena;
    std::shared_ptr<Arena> arena;
    int64_t n_floats = 0;
};

// Where the weights came from (for `headsweep info` and provenance attributes in output files).
struct ModelSource {
    std::string path;                          // GGUF path, or "random:<shape>:seed=<n>"
    std::map<std::string, int64_t> tensor_types;  // type name -> tensor count
    int64_t file_bytes = 0;
};

struct Model {
    ModelConfig config;
    ModelWeights weights;
    Tokenizer tokenizer;
    ModelSource source;
};

struct LoadOptions {
    bool verbose = false;  // progress on stderr
};

// Loads a GGUF model (architectures: llama, qwen2). Throws hs::Error("<path>: <problem>") on anything unexpected:
// unknown architecture, missing metadata or tensors, shapes that disagree with the metadata.
Model load_model(const std::string& path, const LoadOptions& options = {});

// Random-weight models of named real shapes, for tests and benchmarks. Weights ~ N(0, 0.02) (norms = 1) from a
// seeded generator, so the same (shape, seed) gives the same model. Shapes: "tiny" (2 layers, d 64, 4 heads, 2 kv
// heads, vocab 300), "tiny-mha" (no GQA), "tiny-qwen2" (with q/k/v biases), "tiny-gemma3" (Gemma 3 blocks: q/k
// norms, post-norms, GELU-tanh, embedding scale, 1 kv head, sliding-window layers), "smollm2-135m", "qwen2.5-0.5b",
// "gemma3-270m", "llama2-7b", "llama3-8b". The tokenizer is byte-level.
Model make_random_model(const std::string& shape, uint64_t seed = 1);
ModelConfig random_model_config(const std::string& shape);  // throws for unknown names, listing the known ones
std::vector<std::string> random_model_shapes();

// A model named on a command line or in a job file: a GGUF path, or "random:<shape>[:<seed>]".
Model open_model(const std::string& spec, const LoadOptions& options = {});

// Allocates zeroed fp32 storage for `config` and points every tensor of `weights` into it.
void allocate_weights(const ModelConfig& config, ModelWeights& weights);

}  // namespace hs

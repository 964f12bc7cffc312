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

#include "gguf/quant.hpp"
#include "model/config.hpp"
#include "tokenizer/tokenizer.hpp"

namespace hs {

// How a weight matrix is stored. Host weights follow the run's WeightPrecision (F32 by default; BF16; or GGML: the
// file's own blocks); a GPU backend keeps its own copies (BF16 default on CUDA) and computes with fp32 accumulation.
enum class WeightType : uint8_t { F32, BF16, F16, GGML };
const char* weight_type_name(WeightType t);       // "fp32" | "bf16" | "fp16" | "ggml"
WeightType parse_weight_type(const std::string& s);  // fp32 | bf16 | fp16; throws hs::Error naming the choices

struct Matrix {
    float* data = nullptr;    // [rows, cols] row-major, when type == F32
    int64_t rows = 0;         // output features
    int64_t cols = 0;         // input features
    WeightType type = WeightType::F32;
    void* data16 = nullptr;   // [rows, cols] row-major 16-bit elements, when type is BF16 or F16
    // type == GGML: rows of ggml blocks of block_type exactly as in the GGUF file (row_bytes each, row-major).
    void* blocks = nullptr;
    GgmlType block_type = GgmlType::F32;
    uint64_t row_bytes = 0;
};

// Decodes rows row0 .. row0 + n_rows of m into out [n_rows, m.cols] (fp32), whatever m's storage type (host memory).
void read_rows(const Matrix& m, int64_t row0, int64_t n_rows, float* out);
// Bytes of m's weight storage (for memory reports).
int64_t matrix_bytes(const Matrix& m);
struct ModelWeights;
// Bytes of all of w's host storage: the fp32 arena plus every matrix stored outside it (tied matrices once).
int64_t weights_bytes(const ModelWeights& w);

// The precision host weight matrices are kept in for a run (norms, biases and other vectors are always fp32).
//   F32     every matrix dequantised to fp32 at load: exact, the reference, and the sweeps' default
//   BF16    matrices rounded to bf16 (half the memory of F32; products in fp32)
//   NATIVE  the GGUF's own blocks (Q4_0 ... Q6_K, F16, BF16, F32) kept as they are in the file: the least memory,
//           products through 8-bit-activation integer kernels (decode) or dequantised tiles (prefill)
enum class WeightPrecision : uint8_t { F32, BF16, NATIVE };
const char* weight_precision_name(WeightPrecision p);       // "f32" | "bf16" | "native"
WeightPrecision parse_weight_precision(const std::string& s);  // the names above (fp32 too); throws naming them

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
    // Storage of matrices that are not fp32 (BF16 or GGML precision; matrices converted later, e.g. by a fold).
    std::vector<std::shared_ptr<void>> matrix_storage;
    WeightPrecision precision = WeightPrecision::F32;
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
    WeightPrecision precision = WeightPrecision::F32;
    // The GGUF file's bytes already in memory (a copy shared by the ranks of a node, dist/node_file.hpp); nullptr:
    // map the file. Weights are copied out of them, so they may be freed once the model is loaded.
    const uint8_t* file_bytes = nullptr;
    size_t file_size = 0;
};

// Loads a GGUF model (architectures: llama, qwen2, gemma3). Throws hs::Error("<path>: <problem>") on anything unexpected:
// unknown architecture, missing metadata or tensors, shapes that disagree with the metadata.
Model load_model(const std::string& path, const LoadOptions& options = {});

// Random-weight models of named real shapes, for tests and benchmarks. Weights ~ N(0, 0.02) (norms = 1) from a
// seeded generator, so the same (shape, seed) gives the same model. Shapes: "tiny" (2 layers, d 64, 4 heads, 2 kv
// heads, vocab 300), "tiny-mha" (no GQA), "tiny-qwen2" (with q/k/v biases), "tiny-gemma3" (Gemma 3 blocks: q/k
// norms, post-norms, GELU-tanh, embedding scale, 1 kv head, sliding-window layers), "smollm2-135m", "qwen2.5-0.5b",
// "gemma3-270m", "llama2-7b", "llama3-8b". The tokenizer is byte-level.
Model make_random_model(const std::string& shape, uint64_t seed = 1);
ModelConfig random_model_config(const std::string& shape);
// The same random model (same values) as a GGUF file laid out as llama.cpp's converter writes it: matrices in
// matrix_type (F32, F16, BF16, Q8_0, Q4_0, Q4_1), vectors F32, llama's Q/K rows interleaved, a byte-level GPT-2
// vocabulary without merges. Written tensor by tensor: memory ~ the file's size plus one fp32 tensor (an 8B shape in
// Q4_0 fits a 24 GiB machine). Loads with load_model, and with llama.cpp.
void write_random_gguf(const std::string& shape, uint64_t seed, GgmlType matrix_type, const std::string& path,
                       bool verbose = false);  // throws for unknown names, listing the known ones
std::vector<std::string> random_model_shapes();

// A model named on a command line or in a job file: a GGUF path, a Hugging Face checkpoint folder (a directory
// with config.json), or "random:<shape>[:<seed>]".
Model open_model(const std::string& spec, const LoadOptions& options = {});

// ---- Hugging Face checkpoint folders (model/loader_hf.cpp; docs/file-formats.md)
// config.json + model.safetensors, or model.safetensors.index.json + its shards (F32, F16 or BF16 tensors), for
// model_type llama, qwen2, gemma3_text (and gemma3 with a text_config). Precision: F32 decodes every matrix to fp32;
// BF16 keeps bf16 tensors and rounds f32/f16 ones; NATIVE keeps each matrix in the file's dtype (WeightType BF16, F16
// or F32). Norms and biases are always fp32. Throws hs::Error naming the file and the field or tensor.
bool is_hf_folder(const std::string& path);  // a directory that holds config.json
// config.json -> ModelConfig; unknown model_type and options the engine lacks (RoPE scaling, softcapping, biases
// where the architecture has none, another activation) are refused by name.
ModelConfig read_hf_config(const std::string& dir);
// The weights of `dir` and its tokenizer (tokenizer.json, tokenizer_config.json).
Model load_hf_model(const std::string& dir, const LoadOptions& options = {});
// The same with `tokenizer` instead of the folder's (tests; folders written by write_random_hf, which have none).
Model load_hf_model(const std::string& dir, const LoadOptions& options, const Tokenizer& tokenizer);
// The files that make the model, in the order the sha256 rule hashes them: config.json, then
// model.safetensors.index.json and its shards in byte-wise name order (or model.safetensors).
std::vector<std::string> hf_model_files(const std::string& dir);
// sha256 of the text "<sha256 hex>  <file name>\n" for each of hf_model_files (sha256sum's output lines, in that order).
std::string hf_model_sha256(const std::string& dir);
// The random model of (shape, seed) (the values of make_random_model) as an HF folder: config.json and safetensors
// with HF's names and conventions (llama Q/K rows not interleaved; Gemma norms stored as w - 1), matrices in
// matrix_type (F32, F16 or BF16), vectors F32; sharded with an index when the matrices pass max_shard_bytes (0: one
// file). No tokenizer files (the random models' tokenizer is byte-level).
void write_random_hf(const std::string& shape, uint64_t seed, GgmlType matrix_type, const std::string& dir,
                     uint64_t max_shard_bytes = 0);

// Allocates zeroed fp32 storage for `config` and points every tensor of `weights` into it. With a precision other
// than F32, matrices get no fp32 storage (data = nullptr, type left to the caller; see set_matrix_blocks).
void allocate_weights(const ModelConfig& config, ModelWeights& weights,
                      WeightPrecision precision = WeightPrecision::F32);
// Gives m its own storage of n_bytes (64-byte aligned, owned by w) and returns it.
void* allocate_matrix_storage(ModelWeights& w, size_t n_bytes);
// Converts every F32 matrix of w to `precision` (BF16: rounded to nearest even; NATIVE: kept F32, there being no
// file blocks to keep). For random models and tests.
void convert_weights(ModelWeights& w, WeightPrecision precision);
// Stores m (any type) as F32 in storage owned by w (exact for F32/BF16/F16; decodes GGML blocks). A fold uses it
// where a head's columns do not align with the matrix's blocks.
void make_matrix_f32(ModelWeights& w, Matrix& m);

}  // namespace hs

// Random-weight models of named real shapes (tests and benchmarks: timing does not depend on weight values).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fstream>

#include <nlohmann/json.hpp>

#include "gguf/gguf.hpp"
#include "model/model.hpp"
#include "safetensors/safetensors.hpp"
#include "util/error.hpp"

namespace hs {

namespace {

struct Shape {
    const char* name;
    Arch arch;
    int32_t n_layer, d_model, n_head, n_head_kv, d_ff, n_vocab;
    float rope_base;
    bool tied, qkv_bias;
};

// Gemma-3-style blocks (Arch::GEMMA3): what their shapes add to the above. Every block has q/k norms, post-norms,
// GELU-tanh and the sqrt(d_model) embedding scale; layers alternate local (sliding-window, local RoPE base) and
// global attention, layer l being global when (l + 1) % global_every == 0 (HF's sliding_window_pattern).
struct GemmaShape {
    const char* name;
    int32_t d_head;                   // not d_model / n_head in Gemma
    int32_t window, global_every;     // sliding window of the local layers; every global_every-th layer is global
    float local_rope_base;            // (Shape::rope_base is the global layers' base)
    float query_pre_attn_scalar;      // attn_scale = query_pre_attn_scalar^(-1/2), not d_head^(-1/2)
    float rms_eps;
};

// Real shapes from the models' published configs; "tiny*" are small test shapes.
constexpr Shape kShapes[] = {
    {"tiny", Arch::LLAMA, 2, 64, 4, 2, 128, 300, 10000.0f, true, false},
    {"tiny-mha", Arch::LLAMA, 3, 48, 3, 3, 96, 280, 10000.0f, false, false},
    {"tiny-qwen2", Arch::QWEN2, 2, 64, 4, 1, 160, 290, 1000000.0f, true, true},
    // 3 layers (local, local, global), 1 kv head, d_head 16 with q_dim 64 != d_model 48, window 4 (tests use longer
    // sequences, so the local layers really slide), a query_pre_attn_scalar that is not d_head.
    {"tiny-gemma3", Arch::GEMMA3, 3, 48, 4, 1, 96, 270, 1000000.0f, true, false},
    {"smollm2-135m", Arch::LLAMA, 30, 576, 9, 3, 1536, 49152, 100000.0f, true, false},
    {"qwen2.5-0.5b", Arch::QWEN2, 24, 896, 14, 2, 4864, 151936, 1000000.0f, true, true},
    {"gemma3-270m", Arch::GEMMA3, 18, 640, 4, 1, 2048, 262144, 1000000.0f, true, false},
    {"llama2-7b", Arch::LLAMA, 32, 4096, 32, 32, 11008, 32000, 10000.0f, false, false},
    {"llama3-8b", Arch::LLAMA, 32, 4096, 32, 8, 14336, 128256, 500000.0f, false, false},
    {"llama3-70b", Arch::LLAMA, 80, 8192, 64, 8, 28672, 128256, 500000.0f, false, false},
};
constexpr GemmaShape kGemmaShapes[] = {
    {"tiny-gemma3", 16, 4, 3, 10000.0f, 24.0f, 1e-6f},
    {"gemma3-270m", 256, 512, 6, 10000.0f, 256.0f, 1e-6f},
};

const GemmaShape* gemma_shape(const char* name) {
    for (const auto& g : kGemmaShapes)
        if (std::string(g.name) == name) return &g;
    return nullptr;
}

// Uniform in (0,1) from raw 64-bit draws: the standard's engines are portable, its distributions are not.
double uniform01(std::mt19937_64& g) { return (double(g() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

// N(0, stddev^2) values that depend only on (stream, element index): blocks of 2^16 elements each draw from their
// own generator (seeded by SplitMix of stream and block), so the blocks fill in parallel and the result does not
// depend on the thread count. Large shapes (llama3-8b: 8e9 values) would take minutes on one thread.
uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void fill_block(float* p, int64_t n, float stddev, uint64_t seed) {
    std::mt19937_64 g(seed);
    for (int64_t i = 0; i + 1 < n; i += 2) {  // Box-Muller, two values per pair of draws
        double u1 = uniform01(g), u2 = uniform01(g);
        double r = std::sqrt(-2.0 * std::log(u1));
        p[i] = float(stddev * r * std::cos(2 * M_PI * u2));
        p[i + 1] = float(stddev * r * std::sin(2 * M_PI * u2));
    }
    if (n % 2) p[n - 1] = float(stddev * std::sqrt(-2.0 * std::log(uniform01(g))) * std::cos(2 * M_PI * uniform01(g)));
}

void fill_normal(float* p, int64_t n, float stddev, uint64_t stream) {
    constexpr int64_t kBlock = int64_t(1) << 16;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    auto run = [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
            fill_block(p + b * kBlock, std::min(kBlock, n - b * kBlock), stddev, splitmix64(stream ^ splitmix64(uint64_t(b))));
    };
    const int64_t threads = std::min<int64_t>(blocks, std::max(1u, std::thread::hardware_concurrency()));
    if (threads <= 1) return run(0, blocks);
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < threads; ++t) pool.emplace_back(run, blocks * t / threads, blocks * (t + 1) / threads);
    for (auto& th : pool) th.join();
}

void fill_const(float* p, int64_t n, float v) {
    for (int64_t i = 0; i < n; ++i) p[i] = v;
}

}  // namespace

std::vector<std::string> random_model_shapes() {
    std::vector<std::string> out;
    for (const auto& s : kShapes) out.push_back(s.name);
    return out;
}

ModelConfig random_model_config(const std::string& shape_spec) {
    // "<shape>/<k>": the shape's first k layers only (a slice of a model too large to hold here, with its real
    // matrix shapes: per-layer costs are timed on it and scaled by the layer count).
    std::string shape = shape_spec;
    int32_t slice_layers = 0;
    if (const auto slash = shape_spec.find('/'); slash != std::string::npos) {
        shape = shape_spec.substr(0, slash);
        const std::string k = shape_spec.substr(slash + 1);
        check(!k.empty() && k.size() <= 4 && k.find_first_not_of("0123456789") == std::string::npos,
              "model shape '", shape_spec, "': the layer count after '/' must be a positive number");
        slice_layers = std::stoi(k);
        check(slice_layers >= 1, "model shape '", shape_spec, "': the layer count after '/' must be at least 1");
    }
    for (const auto& s : kShapes) {
        if (shape != s.name) continue;
        check(slice_layers <= s.n_layer, "model shape '", shape_spec, "': ", shape, " has only ", s.n_layer, " layers");
        ModelConfig c;
        c.arch = s.arch;
        c.arch_name = arch_name(s.arch);
        c.name = s.name;
        c.n_layer = s.n_layer;
        c.d_model = s.d_model;
        c.n_head = s.n_head;
        c.n_head_kv = s.n_head_kv;
        c.d_head = s.d_model / s.n_head;
        c.d_ff = s.d_ff;
        c.n_vocab = s.n_vocab;
        c.n_ctx = 8192;
        c.rms_eps = 1e-5f;
        c.rope_dims = c.d_head;
        c.attn_scale = 1.0f / std::sqrt(float(c.d_head));
        c.tied_embeddings = s.tied;
        c.qkv_bias = s.qkv_bias;
        if (slice_layers > 0) {
            c.n_layer = slice_layers;
            c.name = shape_spec;
        }
        c.layers.assign(c.n_layer, LayerAttention{s.rope_base, 0});
        if (s.arch == Arch::GEMMA3) {
            const GemmaShape* g = gemma_shape(s.name);
            check(g != nullptr, "random shape ", shape, ": gemma3 shape without its GemmaShape row");
            c.d_head = g->d_head;
            c.rope_dims = g->d_head;
            c.rms_eps = g->rms_eps;
            c.n_ctx = 32768;
            // As transformers (query_pre_attn_scalar ** -0.5 in double, used as fp32) and the loaders compute it.
            c.attn_scale = float(1.0 / std::sqrt(double(g->query_pre_attn_scalar)));
            c.qk_norm = true;
            c.post_norms = true;
            c.embed_scale = std::sqrt(float(c.d_model));
            c.activation = Activation::GELU_TANH;
            for (int32_t l = 0; l < c.n_layer; ++l)
                if ((l + 1) % g->global_every != 0) c.layers[size_t(l)] = LayerAttention{g->local_rope_base, g->window};
        }
        c.validate("random shape " + shape_spec);
        return c;
    }
    std::string known;
    for (const auto& s : kShapes) known += std::string(known.empty() ? "" : ", ") + s.name;
    fail("unknown model shape '", shape, "' (known: ", known, "; <shape>/<k> for its first k layers)");
}

namespace {

// One tensor of a random model, in GGUF naming: [rows, cols] (rows = 1 for vectors), values offset + N(0, stddev^2)
// from `stream` (stddev 0: the constant offset).
struct RandomTensor {
    std::string name;
    int64_t rows = 1, cols = 0;
    float stddev = 0, offset = 0;
    uint64_t stream = 0;
};

// Every tensor of the random model of `c`, in the order their streams are numbered (the order the values were
// always drawn in: changing it changes every random model).
std::vector<RandomTensor> random_tensors(const ModelConfig& c, uint64_t seed) {
    std::vector<RandomTensor> out;
    uint64_t stream = splitmix64(seed);
    auto next = [&] { return stream = splitmix64(stream + 1); };
    auto add = [&](std::string name, int64_t rows, int64_t cols, float stddev, float offset = 0.0f) {
        out.push_back(RandomTensor{std::move(name), rows, cols, stddev, offset, stddev > 0 ? next() : 0});
    };
    const int64_t d = c.d_model;
    // Embeddings larger than the other weights so that the residual stream has a realistic scale (with an
    // embedding scale, divided by it: the scaled embedding, and the tied output head, stay O(1)).
    add("token_embd.weight", c.n_vocab, d, 1.0f / c.embed_scale);
    add("output_norm.weight", 1, d, 0.0f, 1.0f);
    if (!c.tied_embeddings) add("output.weight", c.n_vocab, d, 0.02f);
    for (int32_t l = 0; l < c.n_layer; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        // Norm weights near 1 but not exactly, so that tests notice a norm applied with the wrong weight.
        add(b + "attn_norm.weight", 1, d, 0.1f, 1.0f);
        add(b + "ffn_norm.weight", 1, d, 0.1f, 1.0f);
        // Larger q/k weights than 0.02 so attention patterns are not uniform (tests must see softmax at work).
        add(b + "attn_q.weight", c.q_dim(), d, 0.15f);
        add(b + "attn_k.weight", c.kv_dim(), d, 0.15f);
        add(b + "attn_v.weight", c.kv_dim(), d, 0.02f);
        add(b + "attn_output.weight", d, c.q_dim(), 0.02f);
        if (c.qkv_bias) {
            add(b + "attn_q.bias", 1, c.q_dim(), 0.1f);
            add(b + "attn_k.bias", 1, c.kv_dim(), 0.1f);
            add(b + "attn_v.bias", 1, c.kv_dim(), 0.1f);
        }
        // Gemma's extra norms: near 1 as well (the (1 + w) of HF's Gemma RMSNorm is already in GGUF norm weights).
        if (c.qk_norm) {
            add(b + "attn_q_norm.weight", 1, c.d_head, 0.1f, 1.0f);
            add(b + "attn_k_norm.weight", 1, c.d_head, 0.1f, 1.0f);
        }
        if (c.post_norms) {
            add(b + "post_attention_norm.weight", 1, d, 0.1f, 1.0f);
            add(b + "post_ffw_norm.weight", 1, d, 0.1f, 1.0f);
        }
        add(b + "ffn_gate.weight", c.d_ff, d, 0.02f);
        add(b + "ffn_up.weight", c.d_ff, d, 0.02f);
        add(b + "ffn_down.weight", d, c.d_ff, 0.02f);
    }
    return out;
}

void fill_tensor(const RandomTensor& t, float* dst) {
    const int64_t n = t.rows * t.cols;
    if (t.stddev > 0) {
        fill_normal(dst, n, t.stddev, t.stream);
        if (t.offset != 0.0f)
            for (int64_t i = 0; i < n; ++i) dst[i] += t.offset;
    } else {
        fill_const(dst, n, t.offset);
    }
}

// Where each GGUF-named tensor lives in `w` (fp32 storage).
float* tensor_storage(const ModelConfig& c, ModelWeights& w, const std::string& name) {
    if (name == "token_embd.weight") return w.token_embd.data;
    if (name == "output_norm.weight") return w.output_norm;
    if (name == "output.weight") return w.output.data;
    const size_t dot = name.find('.', 4);
    const int32_t l = std::stoi(name.substr(4, dot - 4));
    check(l >= 0 && l < c.n_layer, "random model: tensor ", name, " outside the layers");
    LayerWeights& L = w.layers[size_t(l)];
    const std::string t = name.substr(dot + 1);
    if (t == "attn_norm.weight") return L.attn_norm;
    if (t == "ffn_norm.weight") return L.ffn_norm;
    if (t == "attn_q.weight") return L.wq.data;
    if (t == "attn_k.weight") return L.wk.data;
    if (t == "attn_v.weight") return L.wv.data;
    if (t == "attn_output.weight") return L.wo.data;
    if (t == "attn_q.bias") return L.bq;
    if (t == "attn_k.bias") return L.bk;
    if (t == "attn_v.bias") return L.bv;
    if (t == "attn_q_norm.weight") return L.q_norm;
    if (t == "attn_k_norm.weight") return L.k_norm;
    if (t == "post_attention_norm.weight") return L.post_attn_norm;
    if (t == "post_ffw_norm.weight") return L.post_ffn_norm;
    if (t == "ffn_gate.weight") return L.w_gate.data;
    if (t == "ffn_up.weight") return L.w_up.data;
    if (t == "ffn_down.weight") return L.w_down.data;
    fail("random model: no storage for tensor ", name);
}

}  // namespace

Model make_random_model(const std::string& shape, uint64_t seed) {
    Model m;
    m.config = random_model_config(shape);
    const ModelConfig& c = m.config;
    allocate_weights(c, m.weights);
    for (const RandomTensor& t : random_tensors(c, seed)) fill_tensor(t, tensor_storage(c, m.weights, t.name));
    m.tokenizer = Tokenizer::byte_level(c.n_vocab);
    m.source.path = "random:" + shape + ":seed=" + std::to_string(seed);
    m.source.tensor_types["F32"] = 0;
    return m;
}

void write_random_gguf(const std::string& shape, uint64_t seed, GgmlType matrix_type, const std::string& path,
                       bool verbose) {
    check(ggml_type_can_encode(matrix_type), "write_random_gguf: ", ggml_type_name(matrix_type),
          " has no encoder here (use F32, F16, BF16, Q8_0, Q4_0 or Q4_1)");
    const ModelConfig c = random_model_config(shape);
    const std::string a = c.arch_name;
    GgufWriter w;
    w.add("general.architecture", GgufWriter::string(a));
    w.add("general.name", GgufWriter::string("random:" + shape + ":" + std::to_string(seed)));
    w.add(a + ".block_count", GgufWriter::u32(uint32_t(c.n_layer)));
    w.add(a + ".context_length", GgufWriter::u32(uint32_t(c.n_ctx)));
    w.add(a + ".embedding_length", GgufWriter::u32(uint32_t(c.d_model)));
    w.add(a + ".feed_forward_length", GgufWriter::u32(uint32_t(c.d_ff)));
    w.add(a + ".attention.head_count", GgufWriter::u32(uint32_t(c.n_head)));
    w.add(a + ".attention.head_count_kv", GgufWriter::u32(uint32_t(c.n_head_kv)));
    w.add(a + ".attention.key_length", GgufWriter::u32(uint32_t(c.d_head)));
    w.add(a + ".attention.value_length", GgufWriter::u32(uint32_t(c.d_head)));
    w.add(a + ".attention.layer_norm_rms_epsilon", GgufWriter::f32(c.rms_eps));
    w.add(a + ".rope.dimension_count", GgufWriter::u32(uint32_t(c.rope_dims)));
    float global_base = c.layers[0].rope_base;
    for (const LayerAttention& la : c.layers)
        if (la.window == 0) global_base = la.rope_base;
    w.add(a + ".rope.freq_base", GgufWriter::f32(global_base));
    if (c.arch == Arch::GEMMA3) {
        int32_t window = 0;
        float local_base = 10000.0f;
        std::vector<int32_t> pattern;
        for (const LayerAttention& la : c.layers) {
            if (la.window > 0) window = la.window, local_base = la.rope_base;
            pattern.push_back(la.window > 0 ? 1 : 0);
        }
        w.add(a + ".attention.sliding_window", GgufWriter::u32(uint32_t(window)));
        w.add(a + ".rope.freq_base_swa", GgufWriter::f32(local_base));
        w.add(a + ".attention.sliding_window_pattern", GgufWriter::i32_array(pattern));
        w.add(a + ".attention.scale", GgufWriter::f32(c.attn_scale));
    }
    // A byte-level vocabulary as GPT-2-style BPE without merges: token i < 256 is byte i's byte-level symbol (so any
    // text encodes byte by byte, to the ids Tokenizer::byte_level gives random:<shape> models), "t<i>" above.
    std::vector<std::string> tokens;
    for (int32_t i = 0; i < c.n_vocab; ++i)
        tokens.push_back(i < 256 ? byte_level_symbol(uint8_t(i)) : "t" + std::to_string(i));
    w.add("tokenizer.ggml.model", GgufWriter::string("gpt2"));
    w.add("tokenizer.ggml.pre", GgufWriter::string("gpt-2"));  // llama.cpp refuses "gpt2" (unknown pre-tokenizer)
    w.add("tokenizer.ggml.tokens", GgufWriter::string_array(tokens));
    w.add("tokenizer.ggml.token_type", GgufWriter::i32_array(std::vector<int32_t>(size_t(c.n_vocab), 1)));
    w.add("tokenizer.ggml.merges", GgufWriter::string_array({}));

    const std::vector<RandomTensor> all = random_tensors(c, seed);
    std::vector<float> values;
    for (size_t i = 0; i < all.size(); ++i) {
        const RandomTensor& t = all[i];
        const bool vector = t.rows == 1 && t.name != "token_embd.weight" && t.name != "output.weight";
        const GgmlType type = vector ? GgmlType::F32 : matrix_type;
        values.resize(size_t(t.rows * t.cols));
        fill_tensor(t, values.data());
        // llama.cpp's converter stores llama's Q/K rows interleaved per head (the loader undoes it): do the same.
        const bool permute = c.arch == Arch::LLAMA &&
                             (t.name.find("attn_q.weight") != std::string::npos || t.name.find("attn_k.weight") != std::string::npos);
        if (permute) {
            std::vector<float> p(values.size());
            const int32_t dh = c.d_head, half = dh / 2;
            for (int64_t h = 0; h < t.rows / dh; ++h)
                for (int32_t r = 0; r < dh; ++r) {
                    const int64_t src = h * dh + (r % 2 == 0 ? r / 2 : r / 2 + half);
                    std::copy_n(values.data() + src * t.cols, t.cols, p.data() + (h * dh + r) * t.cols);
                }
            values.swap(p);
        }
        const uint64_t rb = ggml_row_bytes(type, t.cols);
        std::vector<uint8_t> bytes(size_t(rb * uint64_t(t.rows)));
        for (int64_t r = 0; r < t.rows; ++r) quantize_row(type, values.data() + r * t.cols, bytes.data() + r * rb, t.cols);
        w.add_tensor(t.name, vector ? std::vector<int64_t>{t.cols} : std::vector<int64_t>{t.cols, t.rows}, type,
                     std::move(bytes));
        if (verbose && (i + 1) % 16 == 0)
            std::fprintf(stderr, "\rwrite-random: %zu/%zu tensors", i + 1, all.size());
    }
    if (verbose) std::fprintf(stderr, "\rwrite-random: %zu/%zu tensors, writing %s\n", all.size(), all.size(), path.c_str());
    w.write(path);
}

namespace {

// The HF name of a random model's (GGUF-named) tensor; `gemma` picks Gemma 3's norm names.
std::string hf_tensor_name(const std::string& gguf, bool gemma) {
    if (gguf == "token_embd.weight") return "model.embed_tokens.weight";
    if (gguf == "output_norm.weight") return "model.norm.weight";
    if (gguf == "output.weight") return "lm_head.weight";
    const size_t dot = gguf.find('.', 4);
    const std::string layer = "model.layers." + gguf.substr(4, dot - 4) + ".", t = gguf.substr(dot + 1);
    static const std::pair<const char*, const char*> kNames[] = {
        {"attn_norm.weight", "input_layernorm.weight"},
        {"attn_q.weight", "self_attn.q_proj.weight"},
        {"attn_k.weight", "self_attn.k_proj.weight"},
        {"attn_v.weight", "self_attn.v_proj.weight"},
        {"attn_output.weight", "self_attn.o_proj.weight"},
        {"attn_q.bias", "self_attn.q_proj.bias"},
        {"attn_k.bias", "self_attn.k_proj.bias"},
        {"attn_v.bias", "self_attn.v_proj.bias"},
        {"attn_q_norm.weight", "self_attn.q_norm.weight"},
        {"attn_k_norm.weight", "self_attn.k_norm.weight"},
        {"post_attention_norm.weight", "post_attention_layernorm.weight"},
        {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
        {"ffn_gate.weight", "mlp.gate_proj.weight"},
        {"ffn_up.weight", "mlp.up_proj.weight"},
        {"ffn_down.weight", "mlp.down_proj.weight"},
    };
    if (t == "ffn_norm.weight") return layer + (gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight");
    for (const auto& [g, h] : kNames)
        if (t == g) return layer + h;
    fail("write_random_hf: no HF name for tensor ", gguf);
}

SafetensorsDtype safetensors_dtype_of(GgmlType t) {
    switch (t) {
        case GgmlType::F32: return SafetensorsDtype::F32;
        case GgmlType::F16: return SafetensorsDtype::F16;
        case GgmlType::BF16: return SafetensorsDtype::BF16;
        default: fail("write_random_hf: matrix type ", ggml_type_name(t), " has no safetensors dtype (use F32, F16 or BF16)");
    }
}

// config.json as transformers writes it for the model's architecture (the fields read_hf_config reads).
nlohmann::json random_hf_config(const ModelConfig& c, const std::string& shape, uint64_t seed, GgmlType matrix_type) {
    nlohmann::json j;
    const bool gemma = c.arch == Arch::GEMMA3;
    j["architectures"] = {gemma ? "Gemma3ForCausalLM" : c.arch == Arch::QWEN2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
    j["model_type"] = gemma ? "gemma3_text" : c.arch_name;
    j["hidden_size"] = c.d_model;
    j["intermediate_size"] = c.d_ff;
    j["num_hidden_layers"] = c.n_layer;
    j["num_attention_heads"] = c.n_head;
    j["num_key_value_heads"] = c.n_head_kv;
    j["head_dim"] = c.d_head;
    j["vocab_size"] = c.n_vocab;
    j["max_position_embeddings"] = c.n_ctx;
    j["rms_norm_eps"] = c.rms_eps;
    j["tie_word_embeddings"] = c.tied_embeddings;
    j["rope_scaling"] = nullptr;
    j["torch_dtype"] = matrix_type == GgmlType::F32 ? "float32" : matrix_type == GgmlType::F16 ? "float16" : "bfloat16";
    j["headsweep_random"] = shape + ":" + std::to_string(seed);
    float global_base = c.layers[0].rope_base;
    for (const LayerAttention& la : c.layers)
        if (la.window == 0) global_base = la.rope_base;
    j["rope_theta"] = global_base;
    if (!gemma) {
        j["hidden_act"] = "silu";
        return j;
    }
    j["hidden_activation"] = "gelu_pytorch_tanh";
    double qpas = 1.0 / (double(c.attn_scale) * double(c.attn_scale));  // attn_scale = qpas^-1/2
    if (std::fabs(qpas - std::round(qpas)) < 1e-3) qpas = std::round(qpas);
    j["query_pre_attn_scalar"] = qpas;
    nlohmann::json types = nlohmann::json::array();
    for (const LayerAttention& la : c.layers) {
        types.push_back(la.window > 0 ? "sliding_attention" : "full_attention");
        if (la.window > 0) j["sliding_window"] = la.window, j["rope_local_base_freq"] = la.rope_base;
    }
    j["layer_types"] = types;
    j["final_logit_softcapping"] = nullptr;
    j["attn_logit_softcapping"] = nullptr;
    return j;
}

}  // namespace

void write_random_hf(const std::string& shape, uint64_t seed, GgmlType matrix_type, const std::string& dir,
                     uint64_t max_shard_bytes) {
    const SafetensorsDtype dtype = safetensors_dtype_of(matrix_type);
    const ModelConfig c = random_model_config(shape);
    const bool gemma = c.arch == Arch::GEMMA3;
    std::vector<SafetensorsWriter::Entry> entries;
    std::vector<float> values;
    for (const RandomTensor& t : random_tensors(c, seed)) {
        const bool vector = t.rows == 1 && t.name != "token_embd.weight" && t.name != "output.weight";
        values.resize(size_t(t.rows * t.cols));
        fill_tensor(t, values.data());
        // HF's Gemma RMSNorm computes x * (1 + w): store w (the random model's weights are the factors).
        if (gemma && vector && t.name.find("norm") != std::string::npos)
            for (float& v : values) v -= 1.0f;
        const SafetensorsDtype dt = vector ? SafetensorsDtype::F32 : dtype;
        std::vector<uint8_t> bytes(values.size() * safetensors_dtype_size(dt));
        quantize_row(dt == SafetensorsDtype::F32 ? GgmlType::F32 : matrix_type, values.data(), bytes.data(),
                     int64_t(values.size()));
        entries.push_back({hf_tensor_name(t.name, gemma), dt,
                           vector ? std::vector<int64_t>{t.cols} : std::vector<int64_t>{t.rows, t.cols},
                           std::move(bytes)});
    }
    write_safetensors_checkpoint(dir, entries, max_shard_bytes);
    const std::string path = dir + "/config.json";
    std::ofstream out(path, std::ios::trunc);
    check(bool(out), path, ": cannot write");
    out << random_hf_config(c, shape, seed, matrix_type).dump(2) << "\n";
    check(bool(out), path, ": write failed");
}

Model open_model(const std::string& spec, const LoadOptions& options) {
    if (is_hf_folder(spec)) return load_hf_model(spec, options);
    if (spec.rfind("random:", 0) != 0) return load_model(spec, options);
    std::string rest = spec.substr(7);
    uint64_t seed = 1;
    if (auto colon = rest.find(':'); colon != std::string::npos) {
        try {
            seed = std::stoull(rest.substr(colon + 1));
        } catch (const std::exception&) {
            fail("model '", spec, "': the seed after the shape must be a number");
        }
        rest = rest.substr(0, colon);
    }
    Model m = make_random_model(rest, seed);
    convert_weights(m.weights, options.precision);  // native: a random model has no file blocks, it stays f32
    return m;
}

}  // namespace hs

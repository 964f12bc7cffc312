// Random-weight models of named real shapes (tests and benchmarks: timing does not depend on weight values).
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "model/model.hpp"
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

ModelConfig random_model_config(const std::string& shape) {
    for (const auto& s : kShapes) {
        if (shape != s.name) continue;
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
        c.layers.assign(c.n_layer, LayerAttention{s.rope_base, 0});
        if (s.arch == Arch::GEMMA3) {
            const GemmaShape* g = gemma_shape(s.name);
            check(g != nullptr, "random shape ", shape, ": gemma3 shape without its GemmaShape row");
            c.d_head = g->d_head;
            c.rope_dims = g->d_head;
            c.rms_eps = g->rms_eps;
            c.n_ctx = 32768;
            c.attn_scale = 1.0f / std::sqrt(g->query_pre_attn_scalar);
            c.qk_norm = true;
            c.post_norms = true;
            c.embed_scale = std::sqrt(float(c.d_model));
            c.activation = Activation::GELU_TANH;
            for (int32_t l = 0; l < c.n_layer; ++l)
                if ((l + 1) % g->global_every != 0) c.layers[size_t(l)] = LayerAttention{g->local_rope_base, g->window};
        }
        c.validate("random shape " + shape);
        return c;
    }
    std::string known;
    for (const auto& s : kShapes) known += std::string(known.empty() ? "" : ", ") + s.name;
    fail("unknown model shape '", shape, "' (known: ", known, ")");
}

Model make_random_model(const std::string& shape, uint64_t seed) {
    Model m;
    m.config = random_model_config(shape);
    const ModelConfig& c = m.config;
    allocate_weights(c, m.weights);
    // Every tensor draws from its own stream, numbered in the order below.
    uint64_t stream = splitmix64(seed);
    auto next = [&] { return stream = splitmix64(stream + 1); };
    auto mat = [&](Matrix& w) { fill_normal(w.data, w.rows * w.cols, 0.02f, next()); };
    // Embeddings larger than the other weights so that the residual stream has a realistic scale (with an
    // embedding scale, divided by it: the scaled embedding, and the tied output head, stay O(1)).
    fill_normal(m.weights.token_embd.data, int64_t(c.n_vocab) * c.d_model, 1.0f / c.embed_scale, next());
    fill_const(m.weights.output_norm, c.d_model, 1.0f);
    if (!c.tied_embeddings) mat(m.weights.output);
    for (auto& L : m.weights.layers) {
        // Norm weights near 1 but not exactly, so that tests notice a norm applied with the wrong weight.
        fill_normal(L.attn_norm, c.d_model, 0.1f, next());
        fill_normal(L.ffn_norm, c.d_model, 0.1f, next());
        for (int i = 0; i < c.d_model; ++i) L.attn_norm[i] += 1.0f, L.ffn_norm[i] += 1.0f;
        // Larger q/k weights than 0.02 so attention patterns are not uniform (tests must see softmax at work).
        fill_normal(L.wq.data, L.wq.rows * L.wq.cols, 0.15f, next());
        fill_normal(L.wk.data, L.wk.rows * L.wk.cols, 0.15f, next());
        mat(L.wv);
        mat(L.wo);
        if (c.qkv_bias) {
            fill_normal(L.bq, c.q_dim(), 0.1f, next());
            fill_normal(L.bk, c.kv_dim(), 0.1f, next());
            fill_normal(L.bv, c.kv_dim(), 0.1f, next());
        }
        // Gemma's extra norms: near 1 as well (the (1 + w) of HF's Gemma RMSNorm is already in GGUF norm weights).
        auto near_one = [&](float* w, int32_t n) {
            fill_normal(w, n, 0.1f, next());
            for (int32_t i = 0; i < n; ++i) w[i] += 1.0f;
        };
        if (c.qk_norm) {
            near_one(L.q_norm, c.d_head);
            near_one(L.k_norm, c.d_head);
        }
        if (c.post_norms) {
            near_one(L.post_attn_norm, c.d_model);
            near_one(L.post_ffn_norm, c.d_model);
        }
        mat(L.w_gate);
        mat(L.w_up);
        mat(L.w_down);
    }
    m.tokenizer = Tokenizer::byte_level(c.n_vocab);
    m.source.path = "random:" + shape + ":seed=" + std::to_string(seed);
    m.source.tensor_types["F32"] = 0;
    return m;
}

Model open_model(const std::string& spec, const LoadOptions& options) {
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
    return make_random_model(rest, seed);
}

}  // namespace hs

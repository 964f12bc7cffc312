// Model loading: a random model written to GGUF exactly as llama.cpp's converter lays it out (Q/K rows permuted for
// llama, dims fastest-first, F32/F16/Q8_0 blocks) loads back into the same model; bad files are refused by name.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <unistd.h>

#include "engine/engine.hpp"
#include "gguf/gguf.hpp"

using namespace hs;

namespace {

struct WriteOptions {
    GgmlType matrix_type = GgmlType::F32;
    std::string arch_override;                  // general.architecture to write instead of the model's
    std::string drop_key, drop_tensor;          // leave one out
    std::string extra_tensor;                   // add one the loader does not know
    bool bad_shape = false;                     // write ffn_up of layer 0 with swapped dims
    int32_t vocab_tokens = 0;                   // 0: the model's vocabulary size
    // gemma3 only: keys llama.cpp's gemma3 files do not carry (the loader's defaults apply when absent)
    float rope_base_swa = 0;                    // > 0: write gemma3.rope.freq_base_swa
    int32_t swa_pattern = 0;                    // > 0: write gemma3.attention.sliding_window_pattern
    std::vector<std::pair<std::string, GgufValue>> extra_keys;  // written after the architecture's keys
};

std::vector<uint8_t> encode(GgmlType t, const float* x, int64_t n) {
    std::vector<uint8_t> out(ggml_row_bytes(t, n));
    REQUIRE(quantize_row(t, x, out.data(), n));
    return out;
}

// The rows of a Q or K matrix in the order llama.cpp's converter writes them: within each head of d rows, file row
// 2j holds HF row j and file row 2j+1 holds HF row j + d/2.
std::vector<float> permute_rows(const Matrix& m, int32_t n_heads, int32_t d) {
    std::vector<float> out(size_t(m.rows * m.cols));
    for (int32_t h = 0; h < n_heads; ++h)
        for (int32_t r = 0; r < d; ++r) {
            const int32_t src = h * d + (r % 2 == 0 ? r / 2 : r / 2 + d / 2);
            std::copy_n(m.data + int64_t(src) * m.cols, m.cols, out.data() + (int64_t(h) * d + r) * m.cols);
        }
    return out;
}

std::string write_gguf(const Model& m, const std::string& path, const WriteOptions& o = {}) {
    const ModelConfig& c = m.config;
    const std::string a = c.arch_name;
    GgufWriter w;
    auto key = [&](const std::string& k, GgufValue v) {
        if (k != o.drop_key) w.add(k, std::move(v));
    };
    key("general.architecture", GgufWriter::string(o.arch_override.empty() ? a : o.arch_override));
    key(a + ".block_count", GgufWriter::u32(c.n_layer));
    key(a + ".context_length", GgufWriter::u32(c.n_ctx));
    key(a + ".embedding_length", GgufWriter::u32(c.d_model));
    key(a + ".feed_forward_length", GgufWriter::u32(c.d_ff));
    key(a + ".attention.head_count", GgufWriter::u32(c.n_head));
    key(a + ".attention.head_count_kv", GgufWriter::u32(c.n_head_kv));
    key(a + ".attention.layer_norm_rms_epsilon", GgufWriter::f32(c.rms_eps));
    if (c.arch == Arch::GEMMA3) {
        // As llama.cpp's converter writes gemma3: the global layers' RoPE base, the window, the head length.
        const auto global = std::find_if(c.layers.begin(), c.layers.end(), [](const LayerAttention& l) {
            return l.window == 0;
        });
        REQUIRE(global != c.layers.end());
        key(a + ".rope.freq_base", GgufWriter::f32(global->rope_base));
        key(a + ".attention.sliding_window", GgufWriter::u32(c.layers[0].window));
        key(a + ".attention.key_length", GgufWriter::u32(c.d_head));
        key(a + ".attention.value_length", GgufWriter::u32(c.d_head));
        if (o.rope_base_swa > 0) key(a + ".rope.freq_base_swa", GgufWriter::f32(o.rope_base_swa));
        if (o.swa_pattern > 0) key(a + ".attention.sliding_window_pattern", GgufWriter::u32(o.swa_pattern));
    } else {
        key(a + ".rope.freq_base", GgufWriter::f32(c.layers[0].rope_base));
    }
    for (const auto& [k, v] : o.extra_keys) w.add(k, v);  // even a dropped key: this replaces it
    const int32_t nv = o.vocab_tokens ? o.vocab_tokens : c.n_vocab;
    std::vector<std::string> tokens;
    for (int32_t i = 0; i < nv; ++i) tokens.push_back("t" + std::to_string(i));
    key("tokenizer.ggml.model", GgufWriter::string("gpt2"));
    key("tokenizer.ggml.pre", GgufWriter::string("gpt2"));
    key("tokenizer.ggml.tokens", GgufWriter::string_array(tokens));
    key("tokenizer.ggml.token_type", GgufWriter::i32_array(std::vector<int32_t>(nv, 1)));

    auto tensor = [&](const std::string& name, const float* x, int64_t rows, int64_t cols, GgmlType t) {
        if (name == o.drop_tensor) return;
        std::vector<uint8_t> bytes;
        for (int64_t r = 0; r < rows; ++r) {
            auto row = encode(t, x + r * cols, cols);
            bytes.insert(bytes.end(), row.begin(), row.end());
        }
        w.add_tensor(name, rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{cols, rows}, t, std::move(bytes));
    };
    auto matrix = [&](const std::string& name, const Matrix& x) { tensor(name, x.data, x.rows, x.cols, o.matrix_type); };
    auto vec = [&](const std::string& name, const float* x, int64_t n) { tensor(name, x, 1, n, GgmlType::F32); };
    const ModelWeights& W = m.weights;
    matrix("token_embd.weight", W.token_embd);
    vec("output_norm.weight", W.output_norm, c.d_model);
    if (!c.tied_embeddings) matrix("output.weight", W.output);
    const bool llama = c.arch == Arch::LLAMA;
    for (int32_t l = 0; l < c.n_layer; ++l) {
        const LayerWeights& L = W.layers[l];
        const std::string b = "blk." + std::to_string(l) + ".";
        vec(b + "attn_norm.weight", L.attn_norm, c.d_model);
        if (llama) {
            auto q = permute_rows(L.wq, c.n_head, c.d_head), k = permute_rows(L.wk, c.n_head_kv, c.d_head);
            tensor(b + "attn_q.weight", q.data(), L.wq.rows, L.wq.cols, o.matrix_type);
            tensor(b + "attn_k.weight", k.data(), L.wk.rows, L.wk.cols, o.matrix_type);
        } else {
            matrix(b + "attn_q.weight", L.wq);
            matrix(b + "attn_k.weight", L.wk);
        }
        if (c.qkv_bias) {
            vec(b + "attn_q.bias", L.bq, c.q_dim());
            vec(b + "attn_k.bias", L.bk, c.kv_dim());
            vec(b + "attn_v.bias", L.bv, c.kv_dim());
        }
        if (c.qk_norm) {
            vec(b + "attn_q_norm.weight", L.q_norm, c.d_head);
            vec(b + "attn_k_norm.weight", L.k_norm, c.d_head);
        }
        matrix(b + "attn_v.weight", L.wv);
        matrix(b + "attn_output.weight", L.wo);
        if (c.post_norms) {
            vec(b + "post_attention_norm.weight", L.post_attn_norm, c.d_model);
            vec(b + "post_ffw_norm.weight", L.post_ffn_norm, c.d_model);
        }
        vec(b + "ffn_norm.weight", L.ffn_norm, c.d_model);
        matrix(b + "ffn_gate.weight", L.w_gate);
        if (o.bad_shape && l == 0)
            tensor(b + "ffn_up.weight", L.w_up.data, L.w_up.cols, L.w_up.rows, o.matrix_type);
        else
            matrix(b + "ffn_up.weight", L.w_up);
        matrix(b + "ffn_down.weight", L.w_down);
    }
    if (!o.extra_tensor.empty()) vec(o.extra_tensor, W.output_norm, c.d_model);
    w.write(path);
    return path;
}

std::string temp_path(const char* tag) {
    return "/tmp/headsweep-test-loader-" + std::to_string(::getpid()) + "-" + tag + ".gguf";
}

// Round every matrix of a model through type t (what loading a file of that type gives).
void round_trip_matrices(Model& m, GgmlType t) {
    auto rt = [&](Matrix& x) {
        std::vector<uint8_t> buf(ggml_row_bytes(t, x.cols));
        for (int64_t r = 0; r < x.rows; ++r) {
            quantize_row(t, x.data + r * x.cols, buf.data(), x.cols);
            dequantize_row(t, buf.data(), x.data + r * x.cols, x.cols);
        }
    };
    rt(m.weights.token_embd);
    if (!m.config.tied_embeddings) rt(m.weights.output);
    for (auto& L : m.weights.layers)
        for (Matrix* x : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) rt(*x);
}

// A small gemma3-shaped model: 7 layers (5 sliding, 1 global, 1 sliding: the pattern wraps), one kv head, a head
// length (32) that is not d_model / n_head (16) and q_dim (128) != d_model (64), as in Gemma 3 (1024 vs 640). The
// random gemma3 shape lives in random_model.cpp; this one is built here to fix the loader's format independently.
Model tiny_gemma3(uint64_t seed, int32_t window = 4) {
    Model m;
    ModelConfig& c = m.config;
    c.arch = Arch::GEMMA3;
    c.arch_name = "gemma3";
    c.name = "tiny-gemma3";
    c.n_layer = 7, c.d_model = 64, c.n_head = 4, c.n_head_kv = 1, c.d_head = 32, c.d_ff = 128, c.n_vocab = 300;
    c.n_ctx = 1024, c.rms_eps = 1e-6f, c.rope_dims = 32;
    c.attn_scale = 1.0f / std::sqrt(32.0f);
    c.tied_embeddings = true;
    c.qk_norm = c.post_norms = true;
    c.embed_scale = std::sqrt(64.0f);
    c.activation = Activation::GELU_TANH;
    for (int32_t l = 0; l < c.n_layer; ++l)
        c.layers.push_back(l % 6 == 5 ? LayerAttention{1e6f, 0} : LayerAttention{10000.0f, window});
    c.validate("tiny gemma3");
    allocate_weights(c, m.weights);
    std::mt19937_64 g(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto fill = [&](float* p, int64_t n, float mean, float sd) {
        for (int64_t i = 0; i < n; ++i) p[i] = mean + sd * normal(g);
    };
    auto mat = [&](Matrix& w, float sd) { fill(w.data, w.rows * w.cols, 0.0f, sd); };
    mat(m.weights.token_embd, 0.1f);
    fill(m.weights.output_norm, c.d_model, 1.0f, 0.1f);
    for (auto& L : m.weights.layers) {
        for (float* n : {L.attn_norm, L.ffn_norm, L.post_attn_norm, L.post_ffn_norm}) fill(n, c.d_model, 1.0f, 0.1f);
        fill(L.q_norm, c.d_head, 1.0f, 0.1f);
        fill(L.k_norm, c.d_head, 1.0f, 0.1f);
        mat(L.wq, 0.2f), mat(L.wk, 0.2f), mat(L.wv, 0.1f), mat(L.wo, 0.1f);
        mat(L.w_gate, 0.1f), mat(L.w_up, 0.1f), mat(L.w_down, 0.1f);
    }
    m.tokenizer = Tokenizer::byte_level(c.n_vocab);
    return m;
}

std::vector<float> all_logits(const Model& m, const std::vector<int32_t>& ids) {
    auto be = make_cpu_backend(1);
    Engine e(m, *be);
    ForwardHooks hk;
    hk.logits = LogitsMode::ALL;
    return e.forward(ids, 1, int64_t(ids.size()), hk).logits;
}

}  // namespace

TEST_CASE("a model written as llama.cpp lays it out loads back to the same model", "[loader]") {
    for (const char* shape : {"tiny", "tiny-mha", "tiny-qwen2"})
        for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0}) {
            INFO("shape " << shape << ", matrices " << ggml_type_name(t));
            Model ref = make_random_model(shape, 11);
            const int64_t blk = ggml_block_size(t);
            if (ref.config.d_model % blk || ref.config.d_ff % blk) continue;  // tiny-mha's d = 48 has no Q8_0 rows
            const std::string path = write_gguf(ref, temp_path("rt"), WriteOptions{t});
            Model loaded = load_model(path);
            std::remove(path.c_str());
            round_trip_matrices(ref, t);
            const ModelConfig& c = loaded.config;
            CHECK(c.arch == ref.config.arch);
            CHECK(c.n_layer == ref.config.n_layer);
            CHECK(c.n_head_kv == ref.config.n_head_kv);
            CHECK(c.tied_embeddings == ref.config.tied_embeddings);
            CHECK(c.qkv_bias == ref.config.qkv_bias);
            // Weights equal bit for bit (the Q/K permutation undone), hence logits too.
            for (int32_t l = 0; l < c.n_layer; ++l) {
                const auto& A = loaded.weights.layers[l];
                const auto& B = ref.weights.layers[l];
                REQUIRE(std::equal(A.wq.data, A.wq.data + A.wq.rows * A.wq.cols, B.wq.data));
                REQUIRE(std::equal(A.wk.data, A.wk.data + A.wk.rows * A.wk.cols, B.wk.data));
            }
            std::vector<int32_t> ids = {5, 17, 200, 33, 33, 1, 250, 7, 90, 91};
            CHECK(all_logits(loaded, ids) == all_logits(ref, ids));
        }
}

TEST_CASE("the llama Q/K permutation matters: loading without undoing it would change the logits", "[loader]") {
    // Guard against a test that cannot fail: a model whose Q/K rows are NOT permuted in the file, loaded as llama,
    // must differ from the original.
    Model ref = make_random_model("tiny", 12);
    Model scrambled = make_random_model("tiny", 12);
    for (auto& L : scrambled.weights.layers) {
        auto q = permute_rows(L.wq, scrambled.config.n_head, scrambled.config.d_head);
        std::copy(q.begin(), q.end(), L.wq.data);  // now "un-permuting" at load will scramble instead
    }
    const std::string path = write_gguf(scrambled, temp_path("perm"));
    Model loaded = load_model(path);
    std::remove(path.c_str());
    std::vector<int32_t> ids = {5, 17, 200, 33, 1, 250, 7};
    CHECK(all_logits(loaded, ids) != all_logits(ref, ids));
}

TEST_CASE("bad model files are refused with the file and the problem named", "[loader]") {
    Model m = make_random_model("tiny", 13);
    struct Case {
        const char* tag;
        WriteOptions opt;
        const char* message;
    };
    WriteOptions arch, key, tensor, shape, extra, vocab;
    arch.arch_override = "mamba";
    key.drop_key = "llama.block_count";
    tensor.drop_tensor = "blk.1.ffn_up.weight";
    shape.bad_shape = true;
    extra.extra_tensor = "blk.0.attn_output.bias";
    vocab.vocab_tokens = 299;
    const Case cases[] = {
        {"arch", arch, "unsupported architecture 'mamba'"},
        {"key", key, "llama.block_count"},
        {"tensor", tensor, "blk.1.ffn_up.weight"},
        {"shape", shape, "blk.0.ffn_up.weight has shape"},
        {"extra", extra, "unexpected tensor blk.0.attn_output.bias"},
        {"vocab", vocab, "tokenizer has 299 tokens"},
    };
    for (const auto& c : cases) {
        INFO(c.tag);
        const std::string path = write_gguf(m, temp_path(c.tag), c.opt);
        CHECK_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains(c.message));
        std::remove(path.c_str());
    }
    CHECK_THROWS_WITH(load_model("/nonexistent/model.gguf"), Catch::Contains("/nonexistent/model.gguf"));
}

TEST_CASE("a gemma3 file as llama.cpp writes it loads back to the same model, every layer's geometry from the file",
          "[loader][gemma3]") {
    for (GgmlType t : {GgmlType::F32, GgmlType::Q8_0}) {
        INFO("matrices " << ggml_type_name(t));
        Model ref = tiny_gemma3(21);
        const std::string path = write_gguf(ref, temp_path("gemma3"), WriteOptions{t});
        Model loaded = load_model(path);
        std::remove(path.c_str());
        round_trip_matrices(ref, t);
        const ModelConfig& c = loaded.config;
        CHECK(c.arch == Arch::GEMMA3);
        CHECK(c.d_head == 32);  // key_length, not d_model / n_head
        CHECK(c.n_head_kv == 1);
        CHECK(c.rms_eps == 1e-6f);
        CHECK((c.qk_norm && c.post_norms && !c.qkv_bias && c.tied_embeddings));
        CHECK(c.activation == Activation::GELU_TANH);
        CHECK(c.embed_scale == std::sqrt(64.0f));
        CHECK(c.attn_scale == 1.0f / std::sqrt(32.0f));
        REQUIRE(c.layers.size() == 7);
        for (int32_t l = 0; l < 7; ++l) {
            INFO("layer " << l);
            const bool global = l == 5;
            CHECK(c.layers[l].window == (global ? 0 : 4));
            CHECK(c.layers[l].rope_base == (global ? 1e6f : 10000.0f));
        }
        // Norm weights unchanged (the file's w + 1 is used as it is), Q/K rows not permuted: equal logits.
        for (int32_t l = 0; l < c.n_layer; ++l) {
            const auto& A = loaded.weights.layers[l];
            const auto& B = ref.weights.layers[l];
            REQUIRE(std::equal(A.q_norm, A.q_norm + c.d_head, B.q_norm));
            REQUIRE(std::equal(A.post_ffn_norm, A.post_ffn_norm + c.d_model, B.post_ffn_norm));
            REQUIRE(std::equal(A.wq.data, A.wq.data + A.wq.rows * A.wq.cols, B.wq.data));
        }
        std::vector<int32_t> ids = {2, 17, 200, 33, 33, 1, 250, 7, 90, 91, 5, 17};
        CHECK(all_logits(loaded, ids) == all_logits(ref, ids));
    }
}

TEST_CASE("gemma3 keys that llama.cpp leaves out are honoured when a file has them", "[loader][gemma3]") {
    Model ref = tiny_gemma3(22);
    WriteOptions o;
    o.rope_base_swa = 5000.0f;
    o.swa_pattern = 3;  // layers 2 and 5 global
    const std::string path = write_gguf(ref, temp_path("gemma3-keys"), o);
    Model loaded = load_model(path);
    std::remove(path.c_str());
    for (int32_t l = 0; l < 7; ++l) {
        INFO("layer " << l);
        const bool global = l % 3 == 2;
        CHECK(loaded.config.layers[l].window == (global ? 0 : 4));
        CHECK(loaded.config.layers[l].rope_base == (global ? 1e6f : 5000.0f));
    }
}

TEST_CASE("a gemma3 file without a key or tensor it needs is refused, naming the file and what is missing",
          "[loader][gemma3]") {
    Model m = tiny_gemma3(23);
    const char* keys[] = {"gemma3.attention.sliding_window", "gemma3.attention.key_length",
                          "gemma3.attention.value_length", "gemma3.attention.head_count_kv",
                          "gemma3.rope.freq_base", "gemma3.attention.layer_norm_rms_epsilon",
                          "gemma3.block_count"};
    for (const char* k : keys) {
        INFO(k);
        WriteOptions o;
        o.drop_key = k;
        const std::string path = write_gguf(m, temp_path("gemma3-key"), o);
        CHECK_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains("missing metadata key") &&
                                                Catch::Contains(k));
        std::remove(path.c_str());
    }
    const char* tensors[] = {"blk.0.attn_q_norm.weight", "blk.3.attn_k_norm.weight",
                             "blk.5.post_attention_norm.weight", "blk.6.post_ffw_norm.weight",
                             "blk.2.ffn_norm.weight"};
    for (const char* t : tensors) {
        INFO(t);
        WriteOptions o;
        o.drop_tensor = t;
        const std::string path = write_gguf(m, temp_path("gemma3-tensor"), o);
        CHECK_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains("missing tensor") &&
                                                Catch::Contains(t));
        std::remove(path.c_str());
    }
    WriteOptions extra;
    extra.extra_tensor = "blk.0.attn_q.bias";  // gemma3 has no biases: refused, not ignored
    const std::string path = write_gguf(m, temp_path("gemma3-extra"), extra);
    CHECK_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains("unexpected tensor blk.0.attn_q.bias"));
    std::remove(path.c_str());
}

TEST_CASE("gemma3 keys that would change the model in ways the engine does not implement are refused by name",
          "[loader][gemma3]") {
    Model m = tiny_gemma3(24);
    struct Case {
        const char* tag;
        std::string key;
        GgufValue value;
        const char* message;
    };
    const Case cases[] = {
        {"softcap", "gemma3.final_logit_softcapping", GgufWriter::f32(30.0f), "final_logit_softcapping = 30"},
        {"attn-softcap", "gemma3.attn_logit_softcapping", GgufWriter::f32(50.0f), "attn_logit_softcapping"},
        {"pattern-len", "gemma3.attention.sliding_window_pattern", GgufWriter::i32_array({1, 1, 0}),
         "sliding_window_pattern has 3 entries for 7 layers"},
        {"pattern-0", "gemma3.attention.sliding_window_pattern", GgufWriter::u32(0), "sliding_window_pattern = 0"},
        {"window-0", "gemma3.attention.sliding_window", GgufWriter::u32(0), "sliding_window = 0"},
    };
    for (const auto& c : cases) {
        INFO(c.tag);
        WriteOptions o;
        if (c.key == "gemma3.attention.sliding_window") o.drop_key = c.key;  // replace the one write_gguf writes
        o.extra_keys = {{c.key, c.value}};
        const std::string path = write_gguf(m, temp_path(c.tag), o);
        CHECK_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains(c.message));
        std::remove(path.c_str());
    }
}

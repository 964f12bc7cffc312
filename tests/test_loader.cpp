// Model loading: a random model written to GGUF exactly as llama.cpp's converter lays it out (Q/K rows permuted for
// llama, dims fastest-first, F32/F16/Q8_0 blocks) loads back into the same model; bad files are refused by name.
#include <catch2/catch.hpp>

#include <cstdio>
#include <functional>
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
    key(a + ".rope.freq_base", GgufWriter::f32(c.layers[0].rope_base));
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
            vec(b + "attn_q.bias", L.bq, c.q_dim());
            vec(b + "attn_k.bias", L.bk, c.kv_dim());
            vec(b + "attn_v.bias", L.bv, c.kv_dim());
        }
        matrix(b + "attn_v.weight", L.wv);
        matrix(b + "attn_output.weight", L.wo);
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

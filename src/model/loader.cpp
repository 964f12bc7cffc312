// Loading a GGUF model: read the architecture's config from the metadata, check every tensor's shape against it,
// dequantise into the fp32 arena, undo llama's Q/K permutation (llama only: qwen2 and gemma3 files are not permuted).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include "gguf/gguf.hpp"
#include "model/model.hpp"
#include "util/error.hpp"

namespace hs {

namespace {

// What an architecture needs from the file, as data. Adding gemma3 means adding a row and a config reader.
struct ArchitectureSpec {
    const char* name;
    Arch arch;
    bool permuted_qk;  // llama.cpp's converter interleaved the rotary halves of Q/K rows (llama family)
    void (*read_extra)(const GgufFile&, ModelConfig&);
    // "<arch>.<key>" that must be present although the generic reader has a (llama) fallback for them; nullptr-ended.
    const char* const* required_keys;
};

void read_llama_extra(const GgufFile&, ModelConfig&) {}
void read_qwen2_extra(const GgufFile&, ModelConfig& c) { c.qkv_bias = true; }
void read_gemma3_extra(const GgufFile& f, ModelConfig& c);

// gemma3's head length (256) is not d_model / head_count (160), it has 1 kv head, not head_count, and its base
// is 1e6, not 10000: a file without these keys would otherwise load as a different, wrong model.
constexpr const char* kGemma3RequiredKeys[] = {"attention.head_count_kv", "attention.key_length",
                                               "attention.value_length", "rope.freq_base",
                                               "attention.sliding_window", nullptr};

constexpr ArchitectureSpec kArchitectures[] = {
    {"llama", Arch::LLAMA, true, read_llama_extra, nullptr},
    {"qwen2", Arch::QWEN2, false, read_qwen2_extra, nullptr},
    {"gemma3", Arch::GEMMA3, false, read_gemma3_extra, kGemma3RequiredKeys},
};

const ArchitectureSpec& find_architecture(const GgufFile& f) {
    const std::string& name = f.get_string("general.architecture");
    for (const auto& a : kArchitectures)
        if (name == a.name) return a;
    std::string known;
    for (const auto& a : kArchitectures) known += std::string(known.empty() ? "" : ", ") + a.name;
    fail(f.path(), ": unsupported architecture '", name, "' (supported: ", known, ")");
}

int32_t get_i32(const GgufFile& f, const std::string& key, int64_t lo, int64_t hi) {
    int64_t v = f.get_int(key);
    check(v >= lo && v <= hi, f.path(), ": metadata ", key, " = ", v, " is outside ", lo, "..", hi);
    return int32_t(v);
}

ModelConfig read_config(const GgufFile& f, const ArchitectureSpec& spec) {
    const std::string a = spec.name;
    for (const char* const* k = spec.required_keys; k && *k; ++k) f.get(a + "." + *k);  // "<file>: missing metadata key <key>"
    ModelConfig c;
    c.arch = spec.arch;
    c.arch_name = a;
    if (const GgufValue* v = f.find("general.name")) c.name = v->as_string("general.name");
    c.n_layer = get_i32(f, a + ".block_count", 1, 1024);
    c.d_model = get_i32(f, a + ".embedding_length", 1, 1 << 16);
    c.d_ff = get_i32(f, a + ".feed_forward_length", 1, 1 << 20);
    c.n_head = get_i32(f, a + ".attention.head_count", 1, 1024);
    c.n_head_kv = int32_t(f.get_int(a + ".attention.head_count_kv", c.n_head));
    c.n_ctx = get_i32(f, a + ".context_length", 1, 1 << 24);
    c.d_head = int32_t(f.get_int(a + ".attention.key_length", c.n_head ? c.d_model / c.n_head : 0));
    int64_t v_len = f.get_int(a + ".attention.value_length", c.d_head);
    check(v_len == c.d_head, f.path(), ": value head length ", v_len, " differs from key head length ", c.d_head,
          " (not supported)");
    c.rope_dims = int32_t(f.get_int(a + ".rope.dimension_count", c.d_head));
    c.rms_eps = float(f.get_float(a + ".attention.layer_norm_rms_epsilon"));
    float rope_base = float(f.get_float(a + ".rope.freq_base", 10000.0));
    c.layers.assign(c.n_layer, LayerAttention{rope_base, 0});
    c.attn_scale = 1.0f / std::sqrt(float(c.d_head));
    check(!f.find(a + ".rope.scaling.type") ||
              f.get_string(a + ".rope.scaling.type") == "none",
          f.path(), ": RoPE scaling (", a, ".rope.scaling.type) is not supported");
    const GgufTensorInfo& embd = f.tensor("token_embd.weight");
    check(embd.dims.size() == 2, f.path(), ": token_embd.weight must be 2-D");
    c.n_vocab = int32_t(f.get_int(a + ".vocab_size", embd.dims[1]));
    c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    spec.read_extra(f, c);
    c.validate(f.path());
    return c;
}

// Which layers use the sliding window, from `key`: absent, every sixth layer is global (layers 5, 11, ...: llama.cpp's
// fixed gemma3 pattern, HF's sliding_window_pattern = 6); an integer n >= 1, layer l slides unless l % n == n - 1;
// an array, one flag per layer (true: sliding).
std::vector<bool> gemma3_sliding_layers(const GgufFile& f, const std::string& key, int32_t n_layer) {
    std::vector<bool> sliding(size_t(n_layer), false);
    const GgufValue* v = f.find(key);
    if (v && v->type == GgufValueType::ARRAY) {
        check(int64_t(v->array.size()) == n_layer, f.path(), ": metadata ", key, " has ", v->array.size(),
              " entries for ", n_layer, " layers");
        try {
            for (int32_t l = 0; l < n_layer; ++l) {
                const GgufValue& e = v->array[size_t(l)];
                sliding[size_t(l)] = e.type == GgufValueType::BOOL ? e.as_bool(key) : e.as_int(key) != 0;
            }
        } catch (const Error& e) {
            fail(f.path(), ": ", e.what());
        }
        return sliding;
    }
    const int32_t period = v ? get_i32(f, key, 1, 1 << 16) : 6;
    for (int32_t l = 0; l < n_layer; ++l) sliding[size_t(l)] = l % period != period - 1;
    return sliding;
}

// gemma3 as llama.cpp's converter (Gemma3Model) writes it and HF's Gemma3ForCausalLM computes it. What the block
// does is data in the config (read by the forward pass); what the file must say is read here, and refused by name
// when absent (kGemma3RequiredKeys: the generic reader's fallbacks are llama's conventions).
//  - Every layer: QK-norm (RMSNorm over d_head on each q and k head, before RoPE), post-attention and post-MLP norms,
//    GELU-tanh gated MLP, token embeddings scaled by sqrt(d_model) (HF: the normaliser in the weights' dtype, f32).
//  - Norm weights: HF's Gemma RMSNorm multiplies by (1 + w); the converter already stored w + 1 for every
//    *norm.weight (q/k norms included), so the file's weights are used as they are, like llama's.
//  - Attention: sliding-window layers (gemma3.attention.sliding_window, HF's `sliding_window`: a query at p sees
//    keys p-w+1..p, the same convention as ours and llama.cpp's) with RoPE base 10000, and a global layer every
//    sixth (layers 5, 11, 17, ...) with gemma3.rope.freq_base (1e6). The converter writes neither the local base nor
//    the pattern (llama.cpp hard-codes both for gemma3: rope_freq_base_train_swa = 10000, set_swa_pattern(6)); newer
//    files may (rope.freq_base_swa; attention.sliding_window_pattern as a period or a per-layer flag array), and
//    when they do, they win.
//  - Scores are scaled by query_pre_attn_scalar^-1/2, which the GGUF does not carry; llama.cpp uses
//    1/sqrt(key_length) for every Gemma 3 but the 27B (1/sqrt(d_model/head_count)), and so do HF's configs of the
//    270M, 1B, 4B and 12B (query_pre_attn_scalar = head_dim = 256). An explicit gemma3.attention.scale wins.
void read_gemma3_extra(const GgufFile& f, ModelConfig& c) {
    const std::string a = "gemma3";
    c.qk_norm = true;
    c.post_norms = true;
    c.activation = Activation::GELU_TANH;
    c.embed_scale = std::sqrt(float(c.d_model));
    c.attn_scale = float(f.get_float(a + ".attention.scale", 1.0 / std::sqrt(double(c.d_head))));
    const float softcap = float(f.get_float(a + ".final_logit_softcapping", 0.0));
    check(softcap == 0.0f, f.path(), ": ", a, ".final_logit_softcapping = ", softcap, " is not supported");
    check(!f.find(a + ".attn_logit_softcapping"), f.path(), ": ", a,
          ".attn_logit_softcapping is not supported (Gemma 3 has none)");

    const int32_t window = get_i32(f, a + ".attention.sliding_window", 1, 1 << 24);
    const float global_base = c.layers.at(0).rope_base;  // gemma3.rope.freq_base
    const float local_base = float(f.get_float(a + ".rope.freq_base_swa", 10000.0));
    const std::vector<bool> sliding = gemma3_sliding_layers(f, a + ".attention.sliding_window_pattern", c.n_layer);
    for (int32_t l = 0; l < c.n_layer; ++l)
        c.layers[l] = sliding[l] ? LayerAttention{local_base, window} : LayerAttention{global_base, 0};
}

std::string dims_str(const std::vector<int64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

struct TensorLoader {
    const GgufFile& f;
    ModelWeights& w;
    std::set<std::string> used;

    const GgufTensorInfo& expect(const std::string& name, std::vector<int64_t> dims) {
        const GgufTensorInfo& t = f.tensor(name);
        check(t.dims == dims, f.path(), ": tensor ", name, " has shape ", dims_str(t.dims), ", expected ",
              dims_str(dims), " from the metadata");
        used.insert(name);
        return t;
    }
    // Vector [n] (norms, biases): always fp32.
    void vector(const std::string& name, float* dst, int64_t n) {
        const GgufTensorInfo& t = expect(name, {n});
        dequantize_row(t.type, t.data, dst, n);
    }
    // Matrix [rows][cols] in the run's precision; row_map (optional) gives the destination row of each file row.
    void matrix(const std::string& name, Matrix& m, const std::vector<int64_t>* row_map = nullptr) {
        const GgufTensorInfo& t = expect(name, {m.cols, m.rows});
        const uint64_t row_bytes = ggml_row_bytes(t.type, m.cols);
        auto dst_row = [&](int64_t r) { return row_map ? (*row_map)[r] : r; };
        struct Release {  // the file's pages of this tensor go once it is copied out (an 8B Q4_0: 9.0 -> 4.6 GB peak)
            const GgufFile& f;
            const GgufTensorInfo& t;
            ~Release() { f.release_pages(t); }
        } release{f, t};
        switch (w.precision) {
            case WeightPrecision::F32:
                for (int64_t r = 0; r < m.rows; ++r)
                    dequantize_row(t.type, t.data + r * row_bytes, m.data + dst_row(r) * m.cols, m.cols);
                return;
            case WeightPrecision::BF16: {
                auto* dst = static_cast<uint16_t*>(allocate_matrix_storage(w, size_t(m.rows * m.cols) * 2));
                std::vector<float> row(size_t(m.cols));
                for (int64_t r = 0; r < m.rows; ++r) {
                    dequantize_row(t.type, t.data + r * row_bytes, row.data(), m.cols);
                    uint16_t* d = dst + dst_row(r) * m.cols;
                    for (int64_t i = 0; i < m.cols; ++i) d[i] = fp32_to_bf16(row[size_t(i)]);
                }
                m.data16 = dst;
                m.type = WeightType::BF16;
                return;
            }
            case WeightPrecision::NATIVE: {
                auto* dst = static_cast<uint8_t*>(allocate_matrix_storage(w, size_t(m.rows) * row_bytes));
                for (int64_t r = 0; r < m.rows; ++r)
                    std::memcpy(dst + uint64_t(dst_row(r)) * row_bytes, t.data + r * row_bytes, row_bytes);
                m.blocks = dst;
                m.block_type = t.type;
                m.row_bytes = row_bytes;
                m.type = WeightType::GGML;
                return;
            }
        }
    }
};

// llama.cpp's converter stores, within each head of d rows, HF row j at file row 2j and HF row j + d/2 at file row
// 2j+1 (so that adjacent-pair RoPE equals HF's rotate-half). Map file rows back to HF order.
std::vector<int64_t> unpermute_rows(int32_t n_heads, int32_t d_head) {
    std::vector<int64_t> map(int64_t(n_heads) * d_head);
    const int32_t half = d_head / 2;
    for (int32_t h = 0; h < n_heads; ++h)
        for (int32_t j = 0; j < half; ++j) {
            map[int64_t(h) * d_head + 2 * j] = int64_t(h) * d_head + j;
            map[int64_t(h) * d_head + 2 * j + 1] = int64_t(h) * d_head + j + half;
        }
    return map;
}

}  // namespace

Model load_model(const std::string& path, const LoadOptions& opt) {
    auto t0 = std::chrono::steady_clock::now();
    GgufFile f = opt.file_bytes ? GgufFile::open_bytes(path, opt.file_bytes, opt.file_size) : GgufFile::open(path);
    const ArchitectureSpec& spec = find_architecture(f);
    check(!f.find_tensor("rope_freqs.weight"), path, ": RoPE frequency factors (rope_freqs.weight) are not supported");

    Model m;
    m.config = read_config(f, spec);
    const ModelConfig& c = m.config;
    allocate_weights(c, m.weights, opt.precision);
    ModelWeights& w = m.weights;

    TensorLoader tl{f, w, {}};
    const int64_t d = c.d_model;
    tl.matrix("token_embd.weight", w.token_embd);
    if (c.tied_embeddings) w.output = w.token_embd;
    tl.vector("output_norm.weight", w.output_norm, d);
    if (!c.tied_embeddings) tl.matrix("output.weight", w.output);

    const std::vector<int64_t> q_map = unpermute_rows(c.n_head, c.d_head);
    const std::vector<int64_t> k_map = unpermute_rows(c.n_head_kv, c.d_head);
    const bool unpermute = spec.permuted_qk;
    for (int32_t l = 0; l < c.n_layer; ++l) {
        LayerWeights& L = w.layers[l];
        const std::string b = "blk." + std::to_string(l) + ".";
        tl.vector(b + "attn_norm.weight", L.attn_norm, d);
        tl.matrix(b + "attn_q.weight", L.wq, unpermute ? &q_map : nullptr);
        tl.matrix(b + "attn_k.weight", L.wk, unpermute ? &k_map : nullptr);
        tl.matrix(b + "attn_v.weight", L.wv);
        if (c.qkv_bias) {
            // A bias is a 1-row matrix: the same row permutation applies to its elements.
            Matrix bq{L.bq, c.q_dim(), 1}, bk{L.bk, c.kv_dim(), 1};
            const GgufTensorInfo& tq = tl.expect(b + "attn_q.bias", {c.q_dim()});
            const GgufTensorInfo& tk = tl.expect(b + "attn_k.bias", {c.kv_dim()});
            std::vector<float> tmp(std::max(c.q_dim(), c.kv_dim()));
            dequantize_row(tq.type, tq.data, tmp.data(), c.q_dim());
            for (int64_t i = 0; i < c.q_dim(); ++i) bq.data[unpermute ? q_map[i] : i] = tmp[i];
            dequantize_row(tk.type, tk.data, tmp.data(), c.kv_dim());
            for (int64_t i = 0; i < c.kv_dim(); ++i) bk.data[unpermute ? k_map[i] : i] = tmp[i];
            tl.vector(b + "attn_v.bias", L.bv, c.kv_dim());
        }
        if (c.qk_norm) {  // [d_head], shared by all heads
            tl.vector(b + "attn_q_norm.weight", L.q_norm, c.d_head);
            tl.vector(b + "attn_k_norm.weight", L.k_norm, c.d_head);
        }
        tl.matrix(b + "attn_output.weight", L.wo);
        if (c.post_norms) {
            tl.vector(b + "post_attention_norm.weight", L.post_attn_norm, d);
            tl.vector(b + "post_ffw_norm.weight", L.post_ffn_norm, d);
        }
        tl.vector(b + "ffn_norm.weight", L.ffn_norm, d);  // gemma3: the pre-MLP norm
        tl.matrix(b + "ffn_gate.weight", L.w_gate);
        tl.matrix(b + "ffn_up.weight", L.w_up);
        tl.matrix(b + "ffn_down.weight", L.w_down);
    }
    // Refuse files with parts we would silently ignore (an output-projection bias, rope factors, ...).
    for (const auto& t : f.tensors()) {
        check(tl.used.count(t.name) > 0, path, ": unexpected tensor ", t.name, " for architecture ", spec.name,
              " (not supported: the loader would ignore it)");
        m.source.tensor_types[ggml_type_name(t.type)] += 1;
    }

    m.tokenizer = Tokenizer::from_gguf(f);
    check(m.tokenizer.n_vocab() == c.n_vocab, path, ": tokenizer has ", m.tokenizer.n_vocab(),
          " tokens but the model's vocabulary is ", c.n_vocab);
    m.source.path = path;
    m.source.file_bytes = 0;
    for (const auto& t : f.tensors()) m.source.file_bytes += int64_t(t.nbytes);
    f.release_pages();
    if (opt.verbose) {
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "loaded %s: %s, %d layers, %.1f M parameters, %s weights, %.2f s\n", path.c_str(),
                     c.arch_name.c_str(), c.n_layer, c.n_params() / 1e6, weight_precision_name(opt.precision), s);
    }
    return m;
}

}  // namespace hs

// Loading a GGUF model: read the architecture's config from the metadata, check every tensor's shape against it,
// dequantise into the fp32 arena, undo llama's Q/K permutation.
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
};

void read_llama_extra(const GgufFile&, ModelConfig&) {}
void read_qwen2_extra(const GgufFile&, ModelConfig& c) { c.qkv_bias = true; }

constexpr ArchitectureSpec kArchitectures[] = {
    {"llama", Arch::LLAMA, true, read_llama_extra},
    {"qwen2", Arch::QWEN2, false, read_qwen2_extra},
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

std::string dims_str(const std::vector<int64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

struct TensorLoader {
    const GgufFile& f;
    std::set<std::string> used;

    const GgufTensorInfo& expect(const std::string& name, std::vector<int64_t> dims) {
        const GgufTensorInfo& t = f.tensor(name);
        check(t.dims == dims, f.path(), ": tensor ", name, " has shape ", dims_str(t.dims), ", expected ",
              dims_str(dims), " from the metadata");
        used.insert(name);
        return t;
    }
    // Vector [n] (norms, biases).
    void vector(const std::string& name, float* dst, int64_t n) {
        const GgufTensorInfo& t = expect(name, {n});
        dequantize_row(t.type, t.data, dst, n);
    }
    // Matrix [rows][cols]; row_map (optional) gives the destination row of each file row.
    void matrix(const std::string& name, Matrix& m, const std::vector<int64_t>* row_map = nullptr) {
        const GgufTensorInfo& t = expect(name, {m.cols, m.rows});
        const uint64_t row_bytes = ggml_row_bytes(t.type, m.cols);
        for (int64_t r = 0; r < m.rows; ++r) {
            int64_t dst = row_map ? (*row_map)[r] : r;
            dequantize_row(t.type, t.data + r * row_bytes, m.data + dst * m.cols, m.cols);
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
    GgufFile f = GgufFile::open(path);
    const ArchitectureSpec& spec = find_architecture(f);
    check(!f.find_tensor("rope_freqs.weight"), path, ": RoPE frequency factors (rope_freqs.weight) are not supported");

    Model m;
    m.config = read_config(f, spec);
    const ModelConfig& c = m.config;
    allocate_weights(c, m.weights);
    ModelWeights& w = m.weights;

    TensorLoader tl{f, {}};
    const int64_t d = c.d_model;
    tl.matrix("token_embd.weight", w.token_embd);
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
        tl.matrix(b + "attn_output.weight", L.wo);
        tl.vector(b + "ffn_norm.weight", L.ffn_norm, d);
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
        std::fprintf(stderr, "loaded %s: %s, %d layers, %.1f M parameters, %.2f s\n", path.c_str(),
                     c.arch_name.c_str(), c.n_layer, c.n_params() / 1e6, s);
    }
    return m;
}

}  // namespace hs

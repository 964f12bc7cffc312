// Loading a Hugging Face checkpoint folder: config.json mapped onto ModelConfig, the safetensors weights (one file or
// shards with an index) mapped onto ModelWeights by name, per architecture. docs/file-formats.md has the tables.
//
// Differences from a GGUF of the same model that the loader undoes here (checked against transformers' modeling code
// and llama.cpp's convert_hf_to_gguf.py):
//  - HF matrices are [out, in] row-major, our Matrix layout: no transpose (GGUF's dims are the reverse order, same bytes).
//  - llama's Q/K rows are in HF's rotate-half order already (only llama.cpp's converter interleaves them): no
//    permutation to undo.
//  - Gemma's RMSNorm computes x * (1 + w) and HF stores w; the GGUF converter stores w + 1 and our forward multiplies
//    by the stored weight, so every Gemma 3 norm weight (input, post-attention, pre/post-feed-forward, q/k, final) gets
//    + 1 at load.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "model/model.hpp"
#include "safetensors/safetensors.hpp"
#include "util/error.hpp"
#include "util/sha256.hpp"

namespace hs {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kConfigName = "config.json";

// Fields of one JSON object of config.json (the top level, or text_config), with messages that name the file and the
// field's path ("text_config.hidden_size").
struct ConfigFields {
    const json& j;
    std::string file;    // <dir>/config.json
    std::string prefix;  // "" or "text_config."

    const json* find(const char* key) const {
        auto it = j.find(key);
        return it == j.end() || it->is_null() ? nullptr : &*it;
    }
    [[noreturn]] void bad(const char* key, const char* what) const {
        fail(file, ": field ", prefix, key, " ", what, " (is ", j.at(key).dump(), ")");
    }
    int64_t get_int(const char* key, int64_t lo, int64_t hi) const {
        const json* v = find(key);
        check(v != nullptr, file, ": missing field ", prefix, key);
        return checked_int(key, *v, lo, hi);
    }
    int64_t get_int(const char* key, int64_t lo, int64_t hi, int64_t fallback) const {
        const json* v = find(key);
        return v ? checked_int(key, *v, lo, hi) : fallback;
    }
    int64_t checked_int(const char* key, const json& v, int64_t lo, int64_t hi) const {
        if (!v.is_number_integer()) bad(key, "must be an integer");
        const int64_t x = v.get<int64_t>();
        if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) bad(key, "is out of range");
        check(x >= lo && x <= hi, file, ": field ", prefix, key, " = ", x, " is outside ", lo, "..", hi);
        return x;
    }
    double get_float(const char* key, double fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_number()) bad(key, "must be a number");
        return v->get<double>();
    }
    bool get_bool(const char* key, bool fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_boolean()) bad(key, "must be true or false");
        return v->get<bool>();
    }
    std::string get_string(const char* key, const std::string& fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_string()) bad(key, "must be a string");
        return v->get<std::string>();
    }
};

json read_json_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path, ": cannot open");
    try {
        return json::parse(in);
    } catch (const json::exception& e) {
        fail(path, ": not valid JSON (", e.what(), ")");
    }
}

// transformers' defaults for what a config.json may leave out (the config class's __init__ defaults; to_diff_dict
// drops only keys equal to PretrainedConfig's defaults, e.g. tie_word_embeddings when it is true).
struct HfArchitecture {
    const char* model_type;
    Arch arch;
    double rope_theta;        // LlamaConfig 10000, Qwen2Config 10000, Gemma3TextConfig 1e6
    double rms_norm_eps;      // 1e-6 for all three
    int64_t max_position_embeddings;
    bool tie_word_embeddings;  // LlamaConfig/Qwen2Config False, Gemma3TextConfig True
    const char* activation;    // the only activation the forward has for this architecture
};

constexpr HfArchitecture kHfArchitectures[] = {
    {"llama", Arch::LLAMA, 10000.0, 1e-6, 2048, false, "silu"},
    {"qwen2", Arch::QWEN2, 10000.0, 1e-6, 32768, false, "silu"},
    {"gemma3_text", Arch::GEMMA3, 1000000.0, 1e-6, 131072, true, "gelu_pytorch_tanh"},
};

// One RoPE description: transformers 4.x writes rope_theta and rope_scaling (null, or {"rope_type": ..., "factor":
// ...}); 5.x writes rope_parameters ({"rope_type", "rope_theta", ...}, or for Gemma 3 one such object per attention
// kind: "full_attention", "sliding_attention"). Only plain RoPE exists in the forward: any other rope_type is refused.
void check_plain_rope(const ConfigFields& f, const json& params, const std::string& what) {
    check(params.is_object(), f.file, ": field ", f.prefix, what, " must be an object or null");
    std::string type = "default";
    if (auto it = params.find("rope_type"); it != params.end() && !it->is_null()) type = it->dump();
    else if (auto it2 = params.find("type"); it2 != params.end() && !it2->is_null()) type = it2->dump();
    if (type.size() >= 2 && type.front() == '"') type = type.substr(1, type.size() - 2);
    check(type == "default", f.file, ": field ", f.prefix, what, " asks for RoPE scaling of type '", type,
          "', which the engine does not have (only plain RoPE: rope_type default)");
}

double rope_theta_of(const ConfigFields& f, const json* params, const char* key, double fallback) {
    if (!params) return fallback;
    auto it = params->find("rope_theta");
    if (it == params->end() || it->is_null()) return fallback;
    check(it->is_number(), f.file, ": field ", f.prefix, key, ".rope_theta must be a number");
    return it->get<double>();
}

}  // namespace

bool is_hf_folder(const std::string& path) {
    std::error_code ec;
    return fs::is_directory(path, ec) && fs::exists(fs::path(path) / kConfigName, ec);
}

ModelConfig read_hf_config(const std::string& dir) {
    const std::string file = (fs::path(dir) / kConfigName).string();
    check(fs::exists(file), dir, ": no ", kConfigName, " (not a Hugging Face checkpoint folder)");
    const json root = read_json_file(file);
    check(root.is_object(), file, ": not a JSON object");
    // Gemma3ForConditionalGeneration (model_type gemma3) keeps the language model's settings in text_config.
    const json* jp = &root;
    std::string prefix;
    std::string model_type = ConfigFields{root, file, ""}.get_string("model_type", "");
    check(!model_type.empty(), file, ": missing field model_type");
    if (model_type == "gemma3") {
        auto it = root.find("text_config");
        check(it != root.end() && it->is_object(), file, ": missing field text_config (model_type gemma3 keeps the "
              "language model's settings there)");
        jp = &*it;
        prefix = "text_config.";
        model_type = ConfigFields{*jp, file, prefix}.get_string("model_type", "gemma3_text");
    }
    const ConfigFields f{*jp, file, prefix};
    // Quantised checkpoints (GPTQ, AWQ, bitsandbytes, fp8, ...) store other tensors (qweight, scales) than the plain
    // F32/F16/BF16 weights read here.
    if (const auto q = root.find("quantization_config"); q != root.end() && !q->is_null())
        fail(file, ": field quantization_config: quantised checkpoints are not supported (method ",
             q->is_object() && q->contains("quant_method") ? q->at("quant_method").dump() : std::string("?"),
             "; use an unquantised F32, F16 or BF16 checkpoint, or a GGUF file)");
    const HfArchitecture* spec = nullptr;
    for (const auto& a : kHfArchitectures)
        if (model_type == a.model_type) spec = &a;
    if (!spec) {
        std::string known;
        for (const auto& a : kHfArchitectures) known += std::string(known.empty() ? "" : ", ") + a.model_type;
        fail(file, ": field ", prefix, "model_type = '", model_type, "' is not supported (supported: ", known,
             ", gemma3 with a text_config)");
    }

    ModelConfig c;
    c.arch = spec->arch;
    c.arch_name = arch_name(spec->arch);
    // The folder's name (config.json's _name_or_path is wherever the writer loaded the model from).
    c.name = fs::path(dir).filename().string();
    if (c.name.empty()) c.name = fs::path(dir).parent_path().filename().string();
    c.n_layer = int32_t(f.get_int("num_hidden_layers", 1, 1024));
    c.d_model = int32_t(f.get_int("hidden_size", 1, 1 << 16));
    c.d_ff = int32_t(f.get_int("intermediate_size", 1, 1 << 20));
    c.n_head = int32_t(f.get_int("num_attention_heads", 1, 1024));
    c.n_vocab = int32_t(f.get_int("vocab_size", 1, 1 << 22));
    c.n_head_kv = int32_t(f.get_int("num_key_value_heads", 1, 1024, c.n_head));
    c.d_head = int32_t(f.get_int("head_dim", 1, 1024, c.d_model / c.n_head));
    c.n_ctx = int32_t(f.get_int("max_position_embeddings", 1, 1 << 24, spec->max_position_embeddings));
    c.rms_eps = float(f.get_float("rms_norm_eps", spec->rms_norm_eps));
    c.rope_dims = c.d_head;
    c.attn_scale = 1.0f / std::sqrt(float(c.d_head));
    c.tied_embeddings = f.get_bool("tie_word_embeddings",
                                   // a composite config's tie flag may sit at the top level
                                   ConfigFields{root, file, ""}.get_bool("tie_word_embeddings", spec->tie_word_embeddings));
    c.qkv_bias = spec->arch == Arch::QWEN2;  // Qwen2 always has q/k/v biases

    // What the forward does not have is refused by name, not ignored.
    const std::string act = f.get_string(spec->arch == Arch::GEMMA3 ? "hidden_activation" : "hidden_act",
                                         spec->activation);
    check(act == spec->activation, file, ": field ", prefix,
          spec->arch == Arch::GEMMA3 ? "hidden_activation" : "hidden_act", " = '", act, "' is not supported for ",
          model_type, " (only ", spec->activation, ")");
    if (spec->arch != Arch::QWEN2)
        check(!f.get_bool("attention_bias", false), file, ": field ", prefix,
              "attention_bias = true is not supported for ", model_type);
    check(!f.get_bool("mlp_bias", false), file, ": field ", prefix, "mlp_bias = true is not supported");
    check(f.get_float("partial_rotary_factor", 1.0) == 1.0, file, ": field ", prefix,
          "partial_rotary_factor: partial rotary embeddings are not supported");
    if (spec->arch == Arch::QWEN2)
        check(!f.get_bool("use_sliding_window", false), file, ": field ", prefix,
              "use_sliding_window = true is not supported for qwen2");

    // RoPE: bases, and no scaling.
    const json* rope_parameters = f.find("rope_parameters");
    if (const json* rs = f.find("rope_scaling")) check_plain_rope(f, *rs, "rope_scaling");
    double theta = f.get_float("rope_theta", spec->rope_theta);
    double local_theta = f.get_float("rope_local_base_freq", 10000.0);
    if (rope_parameters) {
        check(rope_parameters->is_object(), file, ": field ", prefix, "rope_parameters must be an object");
        if (spec->arch == Arch::GEMMA3 && (rope_parameters->contains("full_attention") ||
                                           rope_parameters->contains("sliding_attention"))) {
            for (const auto& [kind, p] : rope_parameters->items()) {
                check(kind == "full_attention" || kind == "sliding_attention", file, ": field ", prefix,
                      "rope_parameters.", kind, " is not an attention kind of gemma3");
                check_plain_rope(f, p, "rope_parameters." + kind);
            }
            auto get = [&](const char* kind) {
                auto it = rope_parameters->find(kind);
                return it == rope_parameters->end() ? nullptr : &*it;
            };
            theta = rope_theta_of(f, get("full_attention"), "rope_parameters.full_attention", theta);
            local_theta = rope_theta_of(f, get("sliding_attention"), "rope_parameters.sliding_attention", local_theta);
        } else {
            check_plain_rope(f, *rope_parameters, "rope_parameters");
            theta = rope_theta_of(f, rope_parameters, "rope_parameters", theta);
        }
    }
    c.layers.assign(size_t(c.n_layer), LayerAttention{float(theta), 0});

    if (spec->arch == Arch::GEMMA3) {
        c.qk_norm = true;
        c.post_norms = true;
        c.activation = Activation::GELU_TANH;
        c.embed_scale = std::sqrt(float(c.d_model));
        // Gemma3TextConfig's defaults where the file leaves a field out.
        c.d_head = int32_t(f.get_int("head_dim", 1, 1024, 256));
        c.rope_dims = c.d_head;
        c.n_head_kv = int32_t(f.get_int("num_key_value_heads", 1, 1024, 4));
        const double qpas = f.get_float("query_pre_attn_scalar", 256.0);
        check(qpas > 0, file, ": field ", prefix, "query_pre_attn_scalar must be positive");
        c.attn_scale = float(1.0 / std::sqrt(qpas));
        check(!f.find("final_logit_softcapping"), file, ": field ", prefix,
              "final_logit_softcapping is not supported (Gemma 3 has none: null)");
        check(!f.find("attn_logit_softcapping"), file, ": field ", prefix,
              "attn_logit_softcapping is not supported (Gemma 3 has none: null)");
        check(!f.get_bool("use_bidirectional_attention", false), file, ": field ", prefix,
              "use_bidirectional_attention = true is not supported (causal attention only)");
        const int32_t window = int32_t(f.get_int("sliding_window", 1, 1 << 24, 4096));
        // Which layers slide: layer_types (transformers >= 4.53: "sliding_attention" | "full_attention" per layer),
        // else sliding_window_pattern n (layer l is global when (l + 1) % n == 0; default 6).
        std::vector<bool> sliding(size_t(c.n_layer));
        if (const json* lt = f.find("layer_types")) {
            check(lt->is_array() && lt->size() == size_t(c.n_layer), file, ": field ", prefix, "layer_types must list ",
                  c.n_layer, " layer kinds (num_hidden_layers)");
            for (size_t l = 0; l < lt->size(); ++l) {
                const json& k = (*lt)[l];
                check(k.is_string() && (k == "sliding_attention" || k == "full_attention"), file, ": field ", prefix,
                      "layer_types[", l, "] = ", k.dump(), " (expected \"sliding_attention\" or \"full_attention\")");
                sliding[l] = k == "sliding_attention";
            }
        } else {
            const int64_t period = f.get_int("sliding_window_pattern", 1, 1 << 16, 6);
            for (int32_t l = 0; l < c.n_layer; ++l) sliding[size_t(l)] = (l + 1) % period != 0;
        }
        for (int32_t l = 0; l < c.n_layer; ++l)
            c.layers[size_t(l)] = sliding[size_t(l)] ? LayerAttention{float(local_theta), window}
                                                     : LayerAttention{float(theta), 0};
    }
    c.validate(file);
    return c;
}

namespace {

// Where a tensor of the checkpoint goes, and what happens to it on the way.
struct TensorSlot {
    std::string name;       // HF name
    Matrix* matrix = nullptr;
    float* vector = nullptr;
    int64_t n = 0;          // vector length
    bool norm_plus_one = false;  // Gemma: stored w, computed with 1 + w
};

// The names under which the language model's tensors sit: model.* (XForCausalLM), model.language_model.*
// (transformers >= 4.52's Gemma3ForConditionalGeneration) or language_model.model.* (earlier ones); the output head
// beside them. Tensors of a vision tower or projector are not the language model's and are left alone.
struct NameScheme {
    std::string body, head;  // "model." + "lm_head." etc.
};

NameScheme find_scheme(const SafetensorsCheckpoint& ck) {
    const NameScheme schemes[] = {{"model.", "lm_head."},
                                  {"model.language_model.", "lm_head."},
                                  {"language_model.model.", "language_model.lm_head."}};
    for (const NameScheme& s : schemes)
        if (ck.find(s.body + "embed_tokens.weight")) return s;
    fail(ck.source(), ": missing tensor model.embed_tokens.weight (nor model.language_model.embed_tokens.weight, "
         "language_model.model.embed_tokens.weight)");
}

bool ignored_tensor(const std::string& name) {
    for (const char* p : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."})
        if (name.rfind(p, 0) == 0) return true;
    // Older checkpoints saved RoPE's inverse frequencies as a buffer; they follow from the config.
    const std::string inv = "rotary_emb.inv_freq";
    return name.size() >= inv.size() && name.compare(name.size() - inv.size(), inv.size(), inv) == 0;
}

std::string shape_str(const std::vector<int64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

GgmlType ggml_type_of(SafetensorsDtype t) {
    switch (t) {
        case SafetensorsDtype::F32: return GgmlType::F32;
        case SafetensorsDtype::F16: return GgmlType::F16;
        case SafetensorsDtype::BF16: return GgmlType::BF16;
        default: return GgmlType::F32;
    }
}

void load_matrix(const SafetensorsCheckpoint& ck, const SafetensorsTensor& t, ModelWeights& w, Matrix& m) {
    const std::string& file = ck.file_of(t.name);
    const int64_t n = m.rows * m.cols;
    check(t.dtype == SafetensorsDtype::F32 || t.dtype == SafetensorsDtype::F16 || t.dtype == SafetensorsDtype::BF16,
          file, ": tensor ", t.name, " has dtype ", safetensors_dtype_name(t.dtype), " (weights must be F32, F16 or BF16)");
    WeightPrecision p = w.precision;
    if (p == WeightPrecision::NATIVE && t.dtype == SafetensorsDtype::F32) {
        // The file's fp32, in storage of its own (allocate_weights gave matrices none for NATIVE).
        m.data = static_cast<float*>(allocate_matrix_storage(w, size_t(n) * 4));
        m.type = WeightType::F32;
        safetensors_read_f32(t, 0, n, m.data, file);
        return;
    }
    if (p == WeightPrecision::F32) {
        safetensors_read_f32(t, 0, n, m.data, file);
        return;
    }
    auto* dst = static_cast<uint16_t*>(allocate_matrix_storage(w, size_t(n) * 2));
    // NATIVE keeps a 16-bit file's elements; BF16 keeps bf16 ones and rounds the others.
    const bool keep = p == WeightPrecision::NATIVE || t.dtype == SafetensorsDtype::BF16;
    if (keep) {  // BF16 -> BF16, or NATIVE of a 16-bit file: the file's bytes (little-endian, as in memory here)
        std::memcpy(dst, t.data, size_t(n) * 2);
        m.type = t.dtype == SafetensorsDtype::BF16 ? WeightType::BF16 : WeightType::F16;
    } else {  // BF16 precision of an F32 or F16 file: rounded to nearest even
        std::vector<float> row(size_t(m.cols));
        for (int64_t r = 0; r < m.rows; ++r) {
            safetensors_read_f32(t, r * m.cols, m.cols, row.data(), file);
            for (int64_t i = 0; i < m.cols; ++i) dst[r * m.cols + i] = fp32_to_bf16(row[size_t(i)]);
        }
        m.type = WeightType::BF16;
    }
    m.data = nullptr;
    m.data16 = dst;
}

// The tokenizer of an HF folder (tokenizer.json, tokenizer_config.json). One place to switch to
// Tokenizer::from_hf_folder(dir) once that exists (issue 18, tokenizer side).
Tokenizer load_hf_tokenizer(const std::string& dir) { return Tokenizer::from_hf_folder(dir); }

Model load_hf(const std::string& dir, const LoadOptions& opt, const Tokenizer* given_tokenizer) {
    auto t0 = std::chrono::steady_clock::now();
    Model m;
    m.config = read_hf_config(dir);
    const ModelConfig& c = m.config;
    const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir);
    const NameScheme ns = find_scheme(ck);
    allocate_weights(c, m.weights, opt.precision);
    ModelWeights& w = m.weights;
    const bool gemma = c.arch == Arch::GEMMA3;

    std::vector<TensorSlot> slots;
    auto mat = [&](std::string name, Matrix& x) { slots.push_back({std::move(name), &x, nullptr, 0, false}); };
    auto vec = [&](std::string name, float* p, int64_t n, bool norm) {
        slots.push_back({std::move(name), nullptr, p, n, norm && gemma});
    };
    const int64_t d = c.d_model;
    mat(ns.body + "embed_tokens.weight", w.token_embd);
    vec(ns.body + "norm.weight", w.output_norm, d, true);
    if (!c.tied_embeddings) mat(ns.head + "weight", w.output);
    for (int32_t l = 0; l < c.n_layer; ++l) {
        LayerWeights& L = w.layers[size_t(l)];
        const std::string b = ns.body + "layers." + std::to_string(l) + ".";
        vec(b + "input_layernorm.weight", L.attn_norm, d, true);
        mat(b + "self_attn.q_proj.weight", L.wq);
        mat(b + "self_attn.k_proj.weight", L.wk);
        mat(b + "self_attn.v_proj.weight", L.wv);
        mat(b + "self_attn.o_proj.weight", L.wo);
        if (c.qkv_bias) {
            vec(b + "self_attn.q_proj.bias", L.bq, c.q_dim(), false);
            vec(b + "self_attn.k_proj.bias", L.bk, c.kv_dim(), false);
            vec(b + "self_attn.v_proj.bias", L.bv, c.kv_dim(), false);
        }
        if (c.qk_norm) {
            vec(b + "self_attn.q_norm.weight", L.q_norm, c.d_head, true);
            vec(b + "self_attn.k_norm.weight", L.k_norm, c.d_head, true);
        }
        if (c.post_norms) {  // Gemma: post_attention_layernorm is the norm on the attention output
            vec(b + "post_attention_layernorm.weight", L.post_attn_norm, d, true);
            vec(b + "pre_feedforward_layernorm.weight", L.ffn_norm, d, true);
            vec(b + "post_feedforward_layernorm.weight", L.post_ffn_norm, d, true);
        } else {  // llama, qwen2: post_attention_layernorm is the pre-MLP norm
            vec(b + "post_attention_layernorm.weight", L.ffn_norm, d, false);
        }
        mat(b + "mlp.gate_proj.weight", L.w_gate);
        mat(b + "mlp.up_proj.weight", L.w_up);
        mat(b + "mlp.down_proj.weight", L.w_down);
    }

    std::set<std::string> used;
    for (const TensorSlot& s : slots) {
        const SafetensorsTensor& t = ck.tensor(s.name);
        const std::string& file = ck.file_of(s.name);
        const std::vector<int64_t> want =
            s.matrix ? std::vector<int64_t>{s.matrix->rows, s.matrix->cols} : std::vector<int64_t>{s.n};
        check(t.shape == want, file, ": tensor ", s.name, " has shape ", shape_str(t.shape), ", expected ",
              shape_str(want), " from ", kConfigName);
        used.insert(s.name);
        if (s.matrix) {
            load_matrix(ck, t, w, *s.matrix);
        } else {
            safetensors_read_f32(t, 0, s.n, s.vector, file);
            if (s.norm_plus_one)
                for (int64_t i = 0; i < s.n; ++i) s.vector[i] += 1.0f;
        }
    }
    if (c.tied_embeddings) {
        w.output = w.token_embd;
        used.insert(ns.head + "weight");  // a tied head saved anyway is the embedding (transformers ties it too)
    }
    for (const std::string& name : ck.names()) {
        if (used.count(name) || ignored_tensor(name)) continue;
        fail(ck.file_of(name), ": unexpected tensor ", name, " for ", c.arch_name,
             " (not supported: the loader would ignore it)");
    }
    for (const std::string& name : used)
        if (const SafetensorsTensor* t = ck.find(name)) m.source.tensor_types[ggml_type_name(ggml_type_of(t->dtype))] += 1;

    if (given_tokenizer) m.tokenizer = *given_tokenizer;
    else m.tokenizer = load_hf_tokenizer(dir);
    // HF vocabularies may be padded past the tokenizer's last id (the embedding rows are still there).
    check(m.tokenizer.n_vocab() <= c.n_vocab, dir, ": tokenizer has ", m.tokenizer.n_vocab(),
          " tokens but the model's vocabulary (vocab_size) is ", c.n_vocab);
    m.source.path = dir;
    m.source.file_bytes = int64_t(ck.data_bytes());
    ck.release_pages();
    if (opt.verbose) {
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "loaded %s: %s (Hugging Face folder, %zu file%s), %d layers, %.1f M parameters, %s "
                     "weights, %.2f s\n", dir.c_str(), c.arch_name.c_str(), ck.files().size(),
                     ck.files().size() == 1 ? "" : "s", c.n_layer, c.n_params() / 1e6,
                     weight_precision_name(opt.precision), s);
    }
    return m;
}

}  // namespace

Model load_hf_model(const std::string& dir, const LoadOptions& options) { return load_hf(dir, options, nullptr); }

Model load_hf_model(const std::string& dir, const LoadOptions& options, const Tokenizer& tokenizer) {
    return load_hf(dir, options, &tokenizer);
}

std::vector<std::string> hf_model_files(const std::string& dir) {
    std::vector<std::string> out{(fs::path(dir) / kConfigName).string()};
    const std::string index = (fs::path(dir) / SafetensorsCheckpoint::kIndexName).string();
    if (fs::exists(index)) {
        out.push_back(index);
        for (const std::string& s : read_safetensors_index(index).shards) out.push_back((fs::path(dir) / s).string());
    } else {
        out.push_back((fs::path(dir) / SafetensorsCheckpoint::kSingleName).string());
    }
    return out;
}

std::string hf_model_sha256(const std::string& dir) {
    std::string listing;
    for (const std::string& p : hf_model_files(dir))
        listing += sha256_file(p) + "  " + fs::path(p).filename().string() + "\n";
    return sha256_hex(listing);
}

}  // namespace hs

// Hugging Face checkpoint folders (issue 18, model side): config.json + safetensors (sharded with an index) loaded
// as the same model as the GGUF file of the same weights. Random models are written both ways (write_random_gguf:
// llama.cpp's converter's layout, Q/K interleaved, Gemma norms stored as 1 + w; write_random_hf: HF's layout), loaded
// back and compared tensor by tensor and by logits; every kind of bad input is refused naming the file and the field.
// The [slow] case compares folders that transformers wrote (tools/make_hf_folder.py) with the shipped GGUF models.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "logits_util.hpp"
#include "backend/backend.hpp"
#include "emulated_backend.hpp"
#include "engine/engine.hpp"
#include "gguf/gguf.hpp"
#include "pear/job.hpp"
#include "pear/run_job.hpp"
#include "pear/sweep.hpp"
#include "pear/sweep_file.hpp"
#include "safetensors/safetensors.hpp"
#include "temp_dir.hpp"
#include "test_model_path.hpp"
#include "util/error.hpp"
#include "util/sha256.hpp"

using namespace hs;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const char* const kShapes[] = {"tiny", "tiny-mha", "tiny-qwen2", "tiny-gemma3"};

std::vector<float> all_rows(const Matrix& m) {
    std::vector<float> out(size_t(m.rows * m.cols));
    read_rows(m, 0, m.rows, out.data());
    return out;
}

std::vector<float> vec(const float* p, int64_t n) { return p ? std::vector<float>(p, p + n) : std::vector<float>{}; }

using test::rel_diff;

// Logits of every position of one sequence of n random tokens.
// prefill "f32": the exact products (bf16 weights off oneDNN, whose activations are bf16).
std::vector<float> logits_of(const Model& m, int64_t n = 12, const std::string& prefill = "f32") {
    auto be = make_cpu_backend(1, "auto", prefill);
    return test::random_sequence_logits(m, *be, n, 7);
}

Model load_hf(const std::string& dir, WeightPrecision p = WeightPrecision::F32) {
    LoadOptions lo;
    lo.precision = p;
    return load_hf_model(dir, lo, Tokenizer::byte_level(read_hf_config(dir).n_vocab));
}

Model load_gguf(const std::string& path, WeightPrecision p = WeightPrecision::F32) {
    LoadOptions lo;
    lo.precision = p;
    return load_model(path, lo);
}

// Every tensor of a and b, exactly.
void require_same_weights(const Model& a, const Model& b) {
    const ModelConfig& c = b.config;
    CHECK(a.config.tied_embeddings == c.tied_embeddings);
    CHECK(all_rows(a.weights.token_embd) == all_rows(b.weights.token_embd));
    CHECK(all_rows(a.weights.output) == all_rows(b.weights.output));
    CHECK(vec(a.weights.output_norm, c.d_model) == vec(b.weights.output_norm, c.d_model));
    for (int32_t l = 0; l < c.n_layer; ++l) {
        INFO("layer " << l);
        const LayerWeights &x = a.weights.layers[size_t(l)], &y = b.weights.layers[size_t(l)];
        for (auto m : {&LayerWeights::wq, &LayerWeights::wk, &LayerWeights::wv, &LayerWeights::wo,
                       &LayerWeights::w_gate, &LayerWeights::w_up, &LayerWeights::w_down})
            CHECK(all_rows(x.*m) == all_rows(y.*m));
        CHECK(vec(x.attn_norm, c.d_model) == vec(y.attn_norm, c.d_model));
        CHECK(vec(x.ffn_norm, c.d_model) == vec(y.ffn_norm, c.d_model));
        CHECK(vec(x.bq, c.qkv_bias ? c.q_dim() : 0) == vec(y.bq, c.qkv_bias ? c.q_dim() : 0));
        CHECK(vec(x.bk, c.qkv_bias ? c.kv_dim() : 0) == vec(y.bk, c.qkv_bias ? c.kv_dim() : 0));
        CHECK(vec(x.bv, c.qkv_bias ? c.kv_dim() : 0) == vec(y.bv, c.qkv_bias ? c.kv_dim() : 0));
        CHECK(vec(x.q_norm, c.qk_norm ? c.d_head : 0) == vec(y.q_norm, c.qk_norm ? c.d_head : 0));
        CHECK(vec(x.k_norm, c.qk_norm ? c.d_head : 0) == vec(y.k_norm, c.qk_norm ? c.d_head : 0));
        CHECK(vec(x.post_attn_norm, c.post_norms ? c.d_model : 0) == vec(y.post_attn_norm, c.post_norms ? c.d_model : 0));
        CHECK(vec(x.post_ffn_norm, c.post_norms ? c.d_model : 0) == vec(y.post_ffn_norm, c.post_norms ? c.d_model : 0));
    }
}

void require_same_config(const ModelConfig& a, const ModelConfig& b) {
    CHECK(a.arch == b.arch);
    CHECK(a.n_layer == b.n_layer);
    CHECK(a.d_model == b.d_model);
    CHECK(a.n_head == b.n_head);
    CHECK(a.n_head_kv == b.n_head_kv);
    CHECK(a.d_head == b.d_head);
    CHECK(a.d_ff == b.d_ff);
    CHECK(a.n_vocab == b.n_vocab);
    CHECK(a.n_ctx == b.n_ctx);
    CHECK(a.rms_eps == b.rms_eps);
    CHECK(a.attn_scale == b.attn_scale);
    CHECK(a.tied_embeddings == b.tied_embeddings);
    CHECK(a.qkv_bias == b.qkv_bias);
    CHECK(a.qk_norm == b.qk_norm);
    CHECK(a.post_norms == b.post_norms);
    CHECK(a.embed_scale == b.embed_scale);
    CHECK(a.activation == b.activation);
    REQUIRE(a.layers.size() == b.layers.size());
    for (size_t l = 0; l < a.layers.size(); ++l) {
        INFO("layer " << l);
        CHECK(a.layers[l].window == b.layers[l].window);
        CHECK(a.layers[l].rope_base == b.layers[l].rope_base);
    }
}

json read_json(const std::string& path) {
    std::ifstream in(path);
    return json::parse(in);
}
void write_json(const std::string& path, const json& j) { std::ofstream(path, std::ios::trunc) << j.dump(2); }

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(b.data()),
                                                                   std::streamsize(b.size()));
}

// Replaces the JSON header of a safetensors file by edit(header), keeping the data bytes as they are.
template <class F>
void edit_header(const std::string& path, F&& edit) {
    std::vector<uint8_t> b = read_bytes(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | b[size_t(i)];
    json h = json::parse(b.begin() + 8, b.begin() + 8 + long(n));
    edit(h);
    std::string text = h.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(uint64_t(text.size()) >> (8 * i));
    out.insert(out.end(), text.begin(), text.end());
    out.insert(out.end(), b.begin() + 8 + long(n), b.end());
    write_bytes(path, out);
}

// A random tiny model as an HF folder sharded in 3+ files (tiny: ~120 KiB of f32 matrices; 40 KB shards).
struct Folder {
    TempDir tmp{"hf"};
    std::string dir;
    Folder(const std::string& shape, uint64_t seed, GgmlType type = GgmlType::F32, uint64_t shard = 40000)
        : dir(tmp.file("model")) {
        write_random_hf(shape, seed, type, dir, shard);
    }
    std::string path(const std::string& name) const { return dir + "/" + name; }
    std::string index() const { return path(SafetensorsCheckpoint::kIndexName); }
    // The shard holding `tensor`.
    std::string shard_of(const std::string& tensor) const {
        return path(read_json(index())["weight_map"][tensor].get<std::string>());
    }
};

}  // namespace

TEST_CASE("an HF folder of a random model loads as the GGUF of the same weights, in f32, for every architecture",
          "[hf]") {
    for (const char* shape : kShapes) {
        INFO(shape);
        Folder hf(shape, 3);
        REQUIRE(fs::exists(hf.index()));  // sharded: the index path is exercised
        REQUIRE(read_json(hf.index())["weight_map"].size() > 10);
        TempDir tmp("hfgguf");
        const std::string gguf = tmp.file("m.gguf");
        write_random_gguf(shape, 3, GgmlType::F32, gguf);
        const Model a = load_hf(hf.dir), b = load_gguf(gguf), r = make_random_model(shape, 3);
        require_same_config(a.config, b.config);
        require_same_config(a.config, r.config);
        require_same_weights(a, b);
        require_same_weights(a, r);
        CHECK(rel_diff(logits_of(a), logits_of(b)) < 1e-5);
        CHECK(is_hf_folder(hf.dir));
        CHECK(a.source.path == hf.dir);
        CHECK(a.source.tensor_types.at("F32") > 0);
    }
}

TEST_CASE("HF folders in bf16 and f16 give the GGUF's values in every precision", "[hf]") {
    for (const char* shape : {"tiny", "tiny-gemma3"}) {
        for (GgmlType type : {GgmlType::BF16, GgmlType::F16}) {
            INFO(shape << " " << ggml_type_name(type));
            Folder hf(shape, 4, type, 20000);
            TempDir tmp("hfgguf");
            const std::string gguf = tmp.file("m.gguf");
            write_random_gguf(shape, 4, type, gguf);  // matrices in `type`, vectors F32: the same values
            // f32: both decode the same 16-bit values.
            const Model a = load_hf(hf.dir), b = load_gguf(gguf);
            require_same_weights(a, b);
            CHECK(rel_diff(logits_of(a), logits_of(b)) < 1e-5);
            // native: the file's 16-bit elements kept (WeightType BF16/F16), the same products as the GGUF's blocks.
            const Model an = load_hf(hf.dir, WeightPrecision::NATIVE);
            CHECK(an.weights.layers[0].wq.type == (type == GgmlType::BF16 ? WeightType::BF16 : WeightType::F16));
            CHECK(all_rows(an.weights.layers[0].wq) == all_rows(a.weights.layers[0].wq));
            require_same_weights(an, a);
            CHECK(rel_diff(logits_of(an), logits_of(load_gguf(gguf, WeightPrecision::NATIVE))) < 1e-4);
            CHECK(rel_diff(logits_of(an), logits_of(a)) < 1e-4);
            // the default prefill: bf16 matrices may take oneDNN (bf16 activations, as ggml's BF16 dot) for short
            // prompts; f16 ones never do
            CHECK(rel_diff(logits_of(an, 12, "auto"), logits_of(a)) < (type == GgmlType::BF16 ? 2e-2 : 1e-4));
            // bf16: kept when bf16, rounded from f16 otherwise.
            const Model ab = load_hf(hf.dir, WeightPrecision::BF16);
            CHECK(ab.weights.layers[0].w_up.type == WeightType::BF16);
            const Model gb = load_gguf(gguf, WeightPrecision::BF16);
            require_same_weights(ab, gb);
        }
    }
}

TEST_CASE("precision bf16 and native of an f32 HF folder", "[hf]") {
    Folder hf("tiny-qwen2", 5);
    Model want = make_random_model("tiny-qwen2", 5);
    convert_weights(want.weights, WeightPrecision::BF16);  // rounded to nearest even, as the loader must
    const Model ab = load_hf(hf.dir, WeightPrecision::BF16);
    CHECK(ab.weights.layers[1].wk.type == WeightType::BF16);
    require_same_weights(ab, want);
    const Model an = load_hf(hf.dir, WeightPrecision::NATIVE);  // f32 file: fp32 matrices
    CHECK(an.weights.layers[1].wk.type == WeightType::F32);
    CHECK(rel_diff(logits_of(an), logits_of(make_random_model("tiny-qwen2", 5))) < 1e-6);
}

TEST_CASE("an unsharded HF folder (model.safetensors) loads, and open_model takes a folder", "[hf]") {
    Folder hf("tiny", 6, GgmlType::F32, 0);
    CHECK(fs::exists(hf.path("model.safetensors")));
    CHECK(!fs::exists(hf.index()));
    require_same_weights(load_hf(hf.dir), make_random_model("tiny", 6));
    // open_model sees a folder and reads its tokenizer; a random folder has none, which is refused, naming the file.
    CHECK_THROWS_WITH(open_model(hf.dir), Catch::Contains(hf.dir + "/tokenizer.json: "));
    const pear::ModelShape s = pear::peek_model_shape(hf.dir, "models");
    CHECK(s.n_layer == 2);
    CHECK(s.n_head == 4);
    CHECK(s.n_ctx == 8192);
    CHECK(pear::model_stem(hf.dir + "/") == "model");
}

TEST_CASE("config.json variants: composite Gemma 3, transformers 5 rope_parameters, sliding_window_pattern", "[hf]") {
    Folder hf("tiny-gemma3", 8);
    const ModelConfig want = read_hf_config(hf.dir);
    const json base = read_json(hf.path("config.json"));
    SECTION("rope_parameters per attention kind (transformers 5)") {
        json j = base;
        j.erase("rope_theta");
        j.erase("rope_local_base_freq");
        j.erase("rope_scaling");
        j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", base["rope_theta"]}}},
                                {"sliding_attention",
                                 {{"rope_type", "default"}, {"rope_theta", base["rope_local_base_freq"]}}}};
        write_json(hf.path("config.json"), j);
        require_same_config(read_hf_config(hf.dir), want);
    }
    SECTION("sliding_window_pattern instead of layer_types") {
        json j = base;
        j.erase("layer_types");
        j["sliding_window_pattern"] = 3;  // tiny-gemma3: layers 0, 1 local, 2 global
        write_json(hf.path("config.json"), j);
        require_same_config(read_hf_config(hf.dir), want);
    }
    SECTION("Gemma3ForConditionalGeneration: text_config, model.language_model.* names, a vision tower left alone") {
        json j = {{"model_type", "gemma3"}, {"architectures", {"Gemma3ForConditionalGeneration"}},
                  {"text_config", base}, {"vision_config", {{"hidden_size", 8}}}};
        write_json(hf.path("config.json"), j);
        const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(hf.dir);
        std::vector<SafetensorsWriter::Entry> entries;
        for (const std::string& name : ck.names()) {
            const SafetensorsTensor& t = ck.tensor(name);
            std::string renamed = "model.language_model." + name.substr(6);  // model.X -> model.language_model.X
            entries.push_back({renamed, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes())});
        }
        entries.push_back({"model.vision_tower.vision_model.post_layernorm.weight", SafetensorsDtype::F32, {2},
                           std::vector<uint8_t>(8, 0)});
        fs::remove_all(hf.dir + "2");
        write_safetensors_checkpoint(hf.dir + "2", entries, 30000);
        fs::copy_file(hf.path("config.json"), hf.dir + "2/config.json");
        require_same_config(read_hf_config(hf.dir + "2"), want);
        require_same_weights(load_hf(hf.dir + "2"), make_random_model("tiny-gemma3", 8));
        fs::remove_all(hf.dir + "2");
    }
}

TEST_CASE("config.json that the engine cannot honour is refused naming the file and the field", "[hf]") {
    Folder hf("tiny", 9);
    const std::string cfg = hf.path("config.json");
    const json base = read_json(cfg);
    auto refused = [&](const json& j, const std::string& what) {
        write_json(cfg, j);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(cfg + ": ") && Catch::Contains(what));
        CHECK_THROWS_WITH(read_hf_config(hf.dir), Catch::Contains(cfg + ": ") && Catch::Contains(what));
    };
    for (const char* field : {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                              "vocab_size", "model_type"}) {
        json j = base;
        j.erase(field);
        refused(j, std::string("missing field ") + field);
    }
    json j = base;
    j["num_hidden_layers"] = "two";
    refused(j, "field num_hidden_layers must be an integer");
    j = base;
    j["num_hidden_layers"] = -2;
    refused(j, "num_hidden_layers = -2 is outside");
    j = base;
    j["model_type"] = "mistral";
    refused(j, "model_type = 'mistral' is not supported");
    j = base;
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
    refused(j, "rope_scaling asks for RoPE scaling of type 'llama3'");
    j = base;
    j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 10000}};
    refused(j, "rope_parameters asks for RoPE scaling of type 'linear'");
    j = base;
    j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
    refused(j, "field quantization_config: quantised checkpoints are not supported (method \"gptq\"");
    j = base;
    j["hidden_act"] = "gelu";
    refused(j, "hidden_act = 'gelu' is not supported");
    j = base;
    j["attention_bias"] = true;
    refused(j, "attention_bias = true");
    j = base;
    j["num_key_value_heads"] = 3;  // 4 heads
    refused(j, "is not a multiple of the kv head count");
    j = base;
    j["intermediate_size"] = 100;  // the tensors say 128
    write_json(cfg, j);
    CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains("model.layers.0.mlp.gate_proj.weight has shape [128, 64], "
                                                        "expected [100, 64] from config.json"));
    write_json(cfg, "[1, 2]");
    CHECK_THROWS_WITH(read_hf_config(hf.dir), Catch::Contains(cfg + ": not a JSON object"));
    std::ofstream(cfg, std::ios::trunc) << "{\"model_type\": ";
    CHECK_THROWS_WITH(read_hf_config(hf.dir), Catch::Contains(cfg + ": not valid JSON"));
}

TEST_CASE("Gemma 3 options the engine lacks are refused", "[hf]") {
    Folder hf("tiny-gemma3", 9);
    const std::string cfg = hf.path("config.json");
    const json base = read_json(cfg);
    json j = base;
    j["final_logit_softcapping"] = 30.0;
    write_json(cfg, j);
    CHECK_THROWS_WITH(read_hf_config(hf.dir), Catch::Contains("final_logit_softcapping is not supported"));
    j = base;
    j["layer_types"] = {"sliding_attention", "full_attention"};  // 3 layers
    write_json(cfg, j);
    CHECK_THROWS_WITH(read_hf_config(hf.dir), Catch::Contains("layer_types must list 3 layer kinds"));
    j = base;
    j["rope_parameters"] = {{"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}}}};
    write_json(cfg, j);
    CHECK_THROWS_WITH(read_hf_config(hf.dir), Catch::Contains("rope_parameters.full_attention asks for RoPE scaling "
                                                                "of type 'linear'"));
}

TEST_CASE("bad safetensors checkpoints are refused naming the file and the tensor", "[hf]") {
    Folder hf("tiny", 10);
    const std::string q0 = "model.layers.0.self_attn.q_proj.weight";
    SECTION("missing shard") {
        const std::string shard = hf.shard_of(q0);
        fs::remove(shard);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(hf.index() + ": shard " + fs::path(shard).filename().string()) &&
                                               Catch::Contains("is missing"));
    }
    SECTION("the index names a tensor that its shard lacks") {
        json idx = read_json(hf.index());
        idx["weight_map"]["model.layers.0.self_attn.extra.weight"] = idx["weight_map"][q0];
        write_json(hf.index(), idx);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(hf.index() + ": weight_map names tensor "
                                                           "model.layers.0.self_attn.extra.weight in ") &&
                                               Catch::Contains("which has no such tensor"));
    }
    SECTION("a shard holds a tensor the index does not name") {
        json idx = read_json(hf.index());
        idx["weight_map"].erase(q0);
        write_json(hf.index(), idx);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(": tensor " + q0 + " is not in the index"));
    }
    SECTION("a tensor the model needs is absent") {
        const std::string shard = hf.shard_of(q0);
        json idx = read_json(hf.index());
        idx["weight_map"].erase(q0);
        write_json(hf.index(), idx);
        edit_header(shard, [&](json& h) {  // drop it and keep the data section tiled: re-point the next tensors
            const uint64_t b = h[q0]["data_offsets"][0], e = h[q0]["data_offsets"][1];
            h.erase(q0);
            for (auto& [name, t] : h.items())
                if (name != "__metadata__" && t["data_offsets"][0].get<uint64_t>() >= e) {
                    t["data_offsets"][0] = t["data_offsets"][0].get<uint64_t>() - (e - b);
                    t["data_offsets"][1] = t["data_offsets"][1].get<uint64_t>() - (e - b);
                }
        });
        // (the shard now has e - b extra bytes at its end; cut them)
        std::vector<uint8_t> bytes = read_bytes(shard);
        bytes.resize(bytes.size() - 64 * 64 * 4);
        write_bytes(shard, bytes);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(hf.index() + ": missing tensor " + q0));
    }
    SECTION("a shard truncated mid-tensor") {
        const std::string shard = hf.shard_of(q0);
        std::vector<uint8_t> bytes = read_bytes(shard);
        bytes.resize(bytes.size() - 100);
        write_bytes(shard, bytes);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": tensor ") &&
                                               Catch::Contains("run past the end of the file"));
    }
    SECTION("a header that lies about offsets") {
        const std::string shard = hf.shard_of(q0);
        edit_header(shard, [&](json& h) { h[q0]["data_offsets"][1] = h[q0]["data_offsets"][1].get<uint64_t>() + 4; });
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": tensor " + q0 + ": shape [64,64] of F32 is 16384 "
                                                           "bytes but data_offsets"));
    }
    SECTION("a header whose offsets overlap") {
        const std::string shard = hf.shard_of(q0);
        edit_header(shard, [&](json& h) {
            for (auto& [name, t] : h.items())
                if (name != "__metadata__" && t["data_offsets"][0].get<uint64_t>() > 0) {
                    t["data_offsets"][0] = t["data_offsets"][0].get<uint64_t>() - 4;
                    t["data_offsets"][1] = t["data_offsets"][1].get<uint64_t>() - 4;
                    break;
                }
        });
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": tensor ") &&
                                               Catch::Contains("overlap the previous tensor"));
    }
    SECTION("a header that lies about the dtype") {
        const std::string shard = hf.shard_of(q0);
        edit_header(shard, [&](json& h) { h[q0]["dtype"] = "F16"; });
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": tensor " + q0 + ": shape [64,64] of F16 is 8192 "
                                                           "bytes but data_offsets"));
        edit_header(shard, [&](json& h) { h[q0]["dtype"] = "F33"; });
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": tensor " + q0 + ": unknown dtype \"F33\""));
        edit_header(shard, [&](json& h) { h[q0]["dtype"] = "I32"; });
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": tensor " + q0 + " has dtype I32"));
    }
    SECTION("header fields missing, extra or repeated") {
        const std::string shard = hf.shard_of(q0);
        edit_header(shard, [&](json& h) { h[q0].erase("shape"); });
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": tensor " + q0 + ": missing field shape"));
        Folder hf2("tiny", 10);
        const std::string shard2 = hf2.shard_of(q0);
        edit_header(shard2, [&](json& h) { h[q0]["offsets"] = 1; });
        CHECK_THROWS_WITH(load_hf(hf2.dir), Catch::Contains(shard2 + ": tensor " + q0 + ": unknown field \"offsets\""));
        // A repeated key (nlohmann would keep the last one silently).
        Folder hf3("tiny", 10, GgmlType::F32, 0);
        const std::string single = hf3.path("model.safetensors");
        std::vector<uint8_t> s = read_bytes(single);
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | s[size_t(i)];
        std::string h(s.begin() + 8, s.begin() + 8 + long(n));
        const size_t entry = h.find("{\"data_offsets\"");  // the first tensor's entry (keys sorted)
        REQUIRE(entry != std::string::npos);
        h.insert(entry + 1, "\"dtype\":\"F32\",");
        h = h.substr(0, h.find_last_not_of(' ') + 1);
        h.append((8 - h.size() % 8) % 8, ' ');
        std::vector<uint8_t> out(8);
        for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(uint64_t(h.size()) >> (8 * i));
        out.insert(out.end(), h.begin(), h.end());
        out.insert(out.end(), s.begin() + 8 + long(n), s.end());
        write_bytes(single, out);
        CHECK_THROWS_WITH(load_hf(hf3.dir), Catch::Contains(single + ": header: key \"dtype\" appears twice"));
    }
    SECTION("header length past the end, not JSON, too short") {
        const std::string shard = hf.shard_of(q0);
        std::vector<uint8_t> b = read_bytes(shard);
        b[7] = 0x01;  // N ~ 2^56
        write_bytes(shard, b);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": header length ") &&
                                               Catch::Contains("larger than the limit"));
        b[7] = 0;
        b[3] = 0x01;  // N += 16 MiB: past the end of a 40 KB file
        write_bytes(shard, b);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains("runs past the end of the file"));
        b[3] = 0;
        b[8] = '[';
        write_bytes(shard, b);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": the header is not a JSON object"));
        write_bytes(shard, {1, 2, 3});
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": 3 bytes is too short"));
    }
    SECTION("an index that is not an index") {
        write_json(hf.index(), json{{"metadata", json::object()}});
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(hf.index() + ": missing field weight_map"));
        write_json(hf.index(), json{{"weight_map", {{q0, "../elsewhere.safetensors"}}}});
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains("is not a file name in the checkpoint's folder"));
    }
    SECTION("a tensor the architecture does not have") {
        const std::string shard = hf.shard_of(q0);
        json idx = read_json(hf.index());
        idx["weight_map"]["model.layers.0.self_attn.q_proj.bias"] = idx["weight_map"][q0];
        write_json(hf.index(), idx);
        edit_header(shard, [&](json& h) {
            uint64_t end = 0;
            for (auto& [name, t] : h.items())
                if (name != "__metadata__") end = std::max(end, t["data_offsets"][1].get<uint64_t>());
            h["model.layers.0.self_attn.q_proj.bias"] = {{"dtype", "F32"}, {"shape", {64}}, {"data_offsets", {end, end + 256}}};
        });
        std::vector<uint8_t> bytes = read_bytes(shard);
        bytes.resize(bytes.size() + 256);
        write_bytes(shard, bytes);
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains(shard + ": unexpected tensor model.layers.0.self_attn.q_proj.bias "
                                                           "for llama"));
    }
    SECTION("no weights at all") {
        fs::remove(hf.index());
        CHECK_THROWS_WITH(load_hf(hf.dir), Catch::Contains("no model.safetensors.index.json and no model.safetensors"));
    }
}

TEST_CASE("the model sha256 of an HF folder covers config.json, the index and the shards", "[hf]") {
    Folder hf("tiny", 11);
    const std::vector<std::string> files = hf_model_files(hf.dir);
    REQUIRE(files.size() >= 4);
    CHECK(fs::path(files[0]).filename() == "config.json");
    CHECK(fs::path(files[1]).filename() == SafetensorsCheckpoint::kIndexName);
    char first[64];
    std::snprintf(first, sizeof first, "model-00001-of-%05zu.safetensors", files.size() - 2);
    CHECK(fs::path(files[2]).filename() == first);
    // As `sha256sum config.json model.safetensors.index.json model-0000*.safetensors | sha256sum` computes it.
    std::string listing;
    for (const std::string& f : files) listing += sha256_file(f) + "  " + fs::path(f).filename().string() + "\n";
    const std::string sha = hf_model_sha256(hf.dir);
    CHECK(sha == sha256_hex(listing));
    CHECK(pear::model_sha256(hf.dir) == sha);
    // Any byte of a shard changes it.
    std::vector<uint8_t> b = read_bytes(files.back());
    b.back() ^= 1;
    write_bytes(files.back(), b);
    CHECK(hf_model_sha256(hf.dir) != sha);
}

TEST_CASE("a sweep on an HF folder scores as on the GGUF of the same weights", "[hf]") {
    Folder hf("tiny-gemma3", 12);
    TempDir tmp("hfgguf");
    const std::string gguf = tmp.file("m.gguf");
    write_random_gguf("tiny-gemma3", 12, GgmlType::F32, gguf);
    const Model a = load_hf(hf.dir), b = load_gguf(gguf);
    auto be = make_cpu_backend(1);
    Engine ea(a, *be), eb(b, *be);
    pear::SweepOptions o;
    o.settings = {{4, 6}, {3, 8}};
    o.validate(a.config);
    for (int32_t s = 0; s < 2; ++s) {
        pear::SettingRun ra(ea, o, s), rb(eb, o, s);
        CHECK(ra.pi_clean() == Approx(rb.pi_clean()).epsilon(1e-6));
        CHECK(ra.copy_accuracy() == rb.copy_accuracy());
        const pear::WorkItem item{s, 0, a.config.n_layer, 0, a.config.n_head};
        const std::vector<double> x = ra.score(item), y = rb.score(item);
        REQUIRE(x.size() == y.size());
        for (size_t i = 0; i < x.size(); ++i) CHECK(x[i] == Approx(y[i]).epsilon(1e-6).margin(1e-7));
    }
    // The provenance differs only in the model's own attributes.
    const pear::SweepFileInfo ia = pear::describe_model(a, hf.dir), ib = pear::describe_model(b, gguf);
    CHECK(ia.model_sha256 == hf_model_sha256(hf.dir));
    CHECK(ia.architecture == ib.architecture);
    CHECK(ia.n_layer == ib.n_layer);
    CHECK(ia.n_head == ib.n_head);
    CHECK(ia.n_head_kv == ib.n_head_kv);
    CHECK(ia.d_model == ib.d_model);
}

// Folders written by tools/make_hf_folder.py (transformers' save_pretrained of the shipped GGUF models, fp32, sharded)
// against the GGUF models themselves: the GGUF's dequantised weights went through transformers, so the logits agree
// to float rounding. Skipped with a message when the folders have not been generated.
TEST_CASE("transformers-written HF folders of the shipped models give the GGUF models' logits", "[hf][slow]") {
    struct Case { std::string folder, gguf; };
    const std::string root = repo_dir() + "/models/hf";
    for (const Case& k : {Case{root + "/SmolLM2-135M-Instruct-f32", test_model_file()},
                          Case{root + "/gemma-3-270m-f32", test_gemma3_file()}}) {
        INFO(k.folder);
        if (!is_hf_folder(k.folder) || !fs::exists(k.gguf)) {
            WARN(k.folder << " (or " << k.gguf << ") is absent: run tools/make_hf_folder.py to make it");
            continue;
        }
        const Model g = load_model(k.gguf);
        const Model h = load_hf_model(k.folder, {}, g.tokenizer);
        require_same_config(h.config, g.config);
        const std::vector<float> lg = logits_of(g, 16), lh = logits_of(h, 16);
        const double d = rel_diff(lh, lg);
        INFO("max |logit difference| / max |logit| = " << d);
        CHECK(d < 1e-4);
        // The bf16 folder (every tensor rounded to bf16 by transformers, norms included), kept in bf16: near, not equal.
        std::string bf16 = k.folder;
        bf16.replace(bf16.size() - 3, 3, "bf16");
        if (is_hf_folder(bf16)) {
            LoadOptions lo;
            lo.precision = WeightPrecision::NATIVE;
            const Model b = load_hf_model(bf16, lo, g.tokenizer);
            CHECK(b.weights.layers[0].wq.type == WeightType::BF16);
            const double db = rel_diff(logits_of(b, 16), lg);
            WARN(bf16 << ": max |logit difference| / max |logit| against the GGUF = " << db);
            CHECK(db < 0.1);
        }
    }
}

// The fuzz target's contract (tools/fuzz/safetensors_fuzz.cpp) in every build: a deterministic mutation loop over
// small valid files (bytes flipped, set to 0/0xff/'{'/'"'/digits, the file cut short or grown) -- each mutant opens or
// is refused with hs::Error naming the file, never anything else; what opens satisfies the tiling invariants.
TEST_CASE("safetensors reader: mutated files are opened or refused with hs::Error, nothing else", "[hf]") {
    TempDir tmp("stmut");
    std::vector<std::vector<uint8_t>> seeds;
    {
        SafetensorsWriter w;
        w.metadata["format"] = "pt";
        w.add("a.weight", SafetensorsDtype::F32, {2, 3}, std::vector<uint8_t>(24, 7));
        w.add("b", SafetensorsDtype::BF16, {4}, std::vector<uint8_t>(8, 9));
        w.add("c", SafetensorsDtype::I64, {1}, std::vector<uint8_t>(8, 1));
        seeds.push_back(w.to_bytes());
        SafetensorsWriter e;
        seeds.push_back(e.to_bytes());
    }
    const std::string path = tmp.file("m.safetensors");
    std::mt19937_64 g(2026);
    const uint8_t specials[] = {0, 0xff, '{', '}', '"', '[', ']', ',', ':', '0', '9', ' ', '-', 'e'};
    int opened = 0, refused = 0;
    for (int it = 0; it < 3000; ++it) {
        std::vector<uint8_t> b = seeds[size_t(it) % seeds.size()];
        const int n_mut = 1 + int(g() % 3);
        for (int k = 0; k < n_mut; ++k) {
            switch (g() % 5) {
                case 0: b[g() % b.size()] ^= uint8_t(1u << (g() % 8)); break;
                case 1: b[g() % b.size()] = specials[g() % sizeof specials]; break;
                case 2: b.resize(g() % (b.size() + 1)); if (b.empty()) b.push_back(0); break;
                case 3: b.insert(b.end(), 1 + g() % 16, uint8_t(g())); break;
                default: if (b.size() > 8) b[8 + g() % (b.size() - 8)] = uint8_t('0' + g() % 10); break;
            }
        }
        write_bytes(path, b);
        try {
            const SafetensorsFile f = SafetensorsFile::open(path);
            uint64_t pos = 0;
            for (const SafetensorsTensor& t : f.tensors()) {
                REQUIRE(t.begin == pos);
                REQUIRE(uint64_t(t.n_elements()) * safetensors_dtype_size(t.dtype) == t.nbytes());
                pos = t.end;
            }
            REQUIRE(f.data_offset() + pos == f.file_size());
            ++opened;
        } catch (const Error& e) {
            REQUIRE(std::string(e.what()).rfind(path + ": ", 0) == 0);
            ++refused;
        }
    }
    CHECK(opened > 0);
    CHECK(refused > 1000);
}

// transformers' own fp32 forward (tests/fixtures/hf_reference_logits.json, written by tools/make_hf_folder.py from
// the GGUF files' dequantised weights) against the engine on the GGUF model and on the transformers-written folder:
// per position, the logits of the fixture's ids (the top 8 and 24 spread ids) and the log-sum-exp of all logits.
TEST_CASE("the engine on GGUF and HF folder agrees with transformers' logits", "[hf][slow]") {
    const std::string fixture = fixtures_dir() + "/hf_reference_logits.json";
    REQUIRE(fs::exists(fixture));
    const json ref = read_json(fixture);
    const std::string root = repo_dir() + "/models/hf";
    for (const auto& [key, m] : ref["models"].items()) {
        const std::string gguf = repo_dir() + "/models/" + m["gguf"].get<std::string>();
        const std::string folder = root + "/" + m["folder"].get<std::string>();
        if (!fs::exists(gguf)) {
            WARN(gguf << " is absent: skipped");
            continue;
        }
        const Model g = load_model(gguf);
        std::vector<std::pair<std::string, const Model*>> runs{{"gguf", &g}};
        Model h;
        if (is_hf_folder(folder)) {
            h = load_hf_model(folder, {}, g.tokenizer);
            runs.push_back({"hf", &h});
        } else {
            WARN(folder << " is absent (tools/make_hf_folder.py makes it): only the GGUF is compared");
        }
        for (const auto& [what, model] : runs) {
            auto be = make_cpu_backend(2);
            Engine e(*model, *be);
            const int64_t V = model->config.n_vocab;
            for (const json& seq : m["sequences"]) {
                const std::vector<int32_t> ids = seq["ids"].get<std::vector<int32_t>>();
                ForwardHooks hk;
                hk.logits = LogitsMode::ALL;
                const std::vector<float> lg = e.forward(ids, 1, int64_t(ids.size()), hk).logits;
                double worst = 0, scale = 0, worst_lse = 0;
                for (size_t t = 0; t < ids.size(); ++t) {
                    const json& p = seq["positions"][t];
                    const float* row = lg.data() + t * size_t(V);
                    double mx = -1e300, s = 0;
                    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
                    for (int64_t v = 0; v < V; ++v) s += std::exp(double(row[v]) - mx);
                    worst_lse = std::max(worst_lse, std::fabs(mx + std::log(s) - p["lse"].get<double>()));
                    const auto pid = p["ids"].get<std::vector<int64_t>>();
                    const auto pl = p["logits"].get<std::vector<double>>();
                    for (size_t i = 0; i < pid.size(); ++i) {
                        worst = std::max(worst, std::fabs(double(row[pid[i]]) - pl[i]));
                        scale = std::max(scale, std::fabs(pl[i]));
                    }
                }
                INFO(key << " " << what << ": max |logit - transformers'| = " << worst << " (max |logit| " << scale
                          << "), max |logsumexp difference| = " << worst_lse);
                CHECK(worst / scale < 1e-4);
                CHECK(worst_lse < 1e-3);
                WARN(key << " " << what << ": max |logit - transformers'| = " << worst << " of max |logit| " << scale
                          << ", max |logsumexp difference| = " << worst_lse);
            }
        }
    }
}

// The real model as GGUF and as the transformers-written fp32 folder, through the whole sweep job path
// (open_model, the folder's sha256, the output file): the same scores apart from the dequantisation's last bits and
// the model attributes.
TEST_CASE("a sweep job on the HF folder of SmolLM2 gives the GGUF's scores", "[hf][slow]") {
    const std::string folder = repo_dir() + "/models/hf/SmolLM2-135M-Instruct-f32";
    if (!is_hf_folder(folder) || !fs::exists(test_model_file())) {
        WARN(folder << " is absent (tools/make_hf_folder.py makes it): skipped");
        return;
    }
    TempDir tmp("hfsweep");
    auto run = [&](const std::string& model) {
        pear::SweepJob job = pear::parse_job_text("model = \"" + model + "\"\nmode = \"path\"\nsettings = "
                                                  "[{N = 4, n = 6}]\ntop_k = 8\n", "hf.toml");
        job.output = tmp.file("{model}-{mode}.h5");
        pear::RunJobOptions o;
        o.progress = false;
        return pear::run_job(job, o).at(0).output;
    };
    const pear::SweepFile a = pear::SweepFile::open(run(folder)), b = pear::SweepFile::open(run(test_model_file()));
    CHECK(a.info().model_sha256 == hf_model_sha256(folder));
    CHECK(a.info().n_layer == b.info().n_layer);
    const pear::HeadScores sa = a.read_scores(), sb = b.read_scores();
    REQUIRE(sa.mean_ratio.size() == sb.mean_ratio.size());
    for (size_t i = 0; i < sa.mean_ratio.size(); ++i) CHECK(sa.mean_ratio[i] == Approx(sb.mean_ratio[i]).margin(1e-4));
    CHECK(sa.ranking == sb.ranking);
}

// The CUDA backend's code (on the CPU emulator) with an HF folder's 16-bit host matrices (WeightType F16 and BF16
// at native precision; no GGUF load produces F16 host matrices): fp32 device weights decode them exactly, so the
// logits are the CPU's.
TEST_CASE("HF folders' f16 and bf16 matrices through the CUDA backend on the emulator", "[hf][cuda_emu]") {
    for (GgmlType type : {GgmlType::F16, GgmlType::BF16}) {
        INFO(ggml_type_name(type));
        Folder hf("tiny-qwen2", 13, type, 0);
        const Model m = load_hf(hf.dir, WeightPrecision::NATIVE);
        REQUIRE(m.weights.layers[0].wv.type == (type == GgmlType::F16 ? WeightType::F16 : WeightType::BF16));
        BackendOptions o;
        o.gpu_weights = WeightType::F32;
        auto gpu = make_emulated_cuda_backend(o);
        auto cpu = make_cpu_backend(1, "auto", "f32");  // the exact prefill (bf16 weights off oneDNN)
        Engine eg(m, *gpu), ec(m, *cpu);
        std::vector<int32_t> tokens{1, 7, 42, 99, 3, 250, 17, 8};
        ForwardHooks hk;
        hk.logits = LogitsMode::ALL;
        CHECK(rel_diff(eg.forward(tokens, 1, 8, hk).logits, ec.forward(tokens, 1, 8, hk).logits) < 1e-5);
    }
}

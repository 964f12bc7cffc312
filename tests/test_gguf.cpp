// tests/test_gguf.cpp: GGUF reader/writer: real model, round trips, malicious files, corruption sweep.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gguf/gguf.hpp"
#include "util/error.hpp"

using namespace hs;

namespace {

const std::string kModel = HEADSWEEP_TEST_MODEL;

void require_model() {
    if (!std::filesystem::exists(kModel))
        FAIL("test model " << kModel << " is missing: run scripts/fetch_model.sh (or copy the file there)");
}

}  // namespace

TEST_CASE("the default model opens with the expected metadata and tensors", "[gguf]") {
    require_model();
    const GgufFile f = GgufFile::open(kModel);
    CHECK(f.version() == 3);
    CHECK(f.alignment() == 32);
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.metadata().size() == 33);
    CHECK(f.tensors().size() == 272);
    std::map<std::string, int> by_type;
    for (const GgufTensorInfo& t : f.tensors()) by_type[ggml_type_name(t.type)]++;
    CHECK(by_type["Q4_1"] == 210);
    CHECK(by_type["F32"] == 61);
    CHECK(by_type["Q8_0"] == 1);
    CHECK(by_type.size() == 3);

    CHECK(f.get_int("llama.block_count") == 30);
    CHECK(f.get_int("llama.embedding_length") == 576);
    CHECK(f.get_int("llama.attention.head_count") == 9);
    CHECK(f.get_int("llama.attention.head_count_kv") == 3);
    CHECK(f.get_float("llama.rope.freq_base") == 100000.0);
    CHECK(f.get_float("llama.attention.layer_norm_rms_epsilon") == Approx(1e-5));
    CHECK(f.get_bool("tokenizer.ggml.add_bos_token", true) == false);
    CHECK(f.get_string_array("tokenizer.ggml.tokens").size() == 49152);
    CHECK(f.get_int_array("tokenizer.ggml.token_type").size() == 49152);
    CHECK(f.get_string_array("tokenizer.ggml.merges").size() == 48900);
    CHECK(f.get_int("no.such.key", -7) == -7);
    CHECK(f.find("no.such.key") == nullptr);

    const GgufTensorInfo& emb = f.tensor("token_embd.weight");
    CHECK(emb.type == GgmlType::Q8_0);
    CHECK(emb.dims == std::vector<int64_t>{576, 49152});
    CHECK(emb.row_length() == 576);
    CHECK(emb.n_rows() == 49152);
    CHECK(emb.n_elements() == 576 * 49152);
    CHECK(emb.nbytes == 30081024);
    CHECK(emb.data != nullptr);
    CHECK(f.find_tensor("nope") == nullptr);
}

TEST_CASE("every tensor of the default model dequantises to finite values", "[gguf][quant]") {
    require_model();
    const GgufFile f = GgufFile::open(kModel);
    std::vector<float> row;
    for (const GgufTensorInfo& t : f.tensors()) {
        row.resize(static_cast<size_t>(t.row_length()));
        const uint64_t row_bytes = ggml_row_bytes(t.type, t.row_length());
        REQUIRE(row_bytes * static_cast<uint64_t>(t.n_rows()) == t.nbytes);
        bool finite = true;
        for (int64_t r = 0; r < t.n_rows(); ++r) {
            dequantize_row(t.type, t.data + r * row_bytes, row.data(), t.row_length());
            for (float v : row) finite = finite && std::isfinite(v);
        }
        INFO(t.name);
        CHECK(finite);
    }
}

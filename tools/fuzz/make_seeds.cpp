// tools/fuzz/make_seeds.cpp: writes small valid GGUF files (every value type, several tensor types) as the fuzzer's
// seed corpus. Usage: make_seeds <dir>
#include <cstdio>
#include <string>
#include <vector>

#include "gguf/gguf.hpp"

using namespace hs;

static GgufValue scalar(GgufValueType t, uint64_t u) { GgufValue v; v.type = t; v.scalar = u; return v; }
static GgufValue signed_scalar(GgufValueType t, int64_t i) { GgufValue v; v.type = t; v.scalar = i; return v; }

static std::vector<uint8_t> encoded(GgmlType t, int64_t n) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = static_cast<float>((i * 37) % 19) - 9.0f;
    std::vector<uint8_t> b(ggml_row_bytes(t, n));
    if (!quantize_row(t, x.data(), b.data(), n)) {
        for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 13);  // raw blocks for K-quants etc.
    }
    return b;
}

int main(int argc, char** argv) {
    if (argc != 2) { std::fprintf(stderr, "usage: make_seeds <dir>\n"); return 2; }
    const std::string dir = argv[1];
    {   // metadata of every type, no tensors
        GgufWriter w;
        w.add("general.architecture", GgufWriter::string("llama"));
        w.add("a.u8", scalar(GgufValueType::U8, 7));
        w.add("a.i8", signed_scalar(GgufValueType::I8, -7));
        w.add("a.u16", scalar(GgufValueType::U16, 700));
        w.add("a.i16", signed_scalar(GgufValueType::I16, -700));
        w.add("a.u32", GgufWriter::u32(70000));
        w.add("a.i32", GgufWriter::i32(-70000));
        w.add("a.f32", GgufWriter::f32(0.5f));
        w.add("a.bool", GgufWriter::boolean(true));
        w.add("a.u64", scalar(GgufValueType::U64, 1ull << 40));
        w.add("a.i64", signed_scalar(GgufValueType::I64, -(1ll << 40)));
        GgufValue f64; f64.type = GgufValueType::F64; f64.scalar = 2.5;
        w.add("a.f64", f64);
        w.add("a.strs", GgufWriter::string_array({"he", "llo", ""}));
        w.add("a.ints", GgufWriter::i32_array({1, -2, 3}));
        w.add("a.floats", GgufWriter::f32_array({1.0f, 2.0f}));
        w.write(dir + "/meta_only.gguf");
    }
    {   // one tensor of every type
        GgufWriter w;
        w.add("general.architecture", GgufWriter::string("llama"));
        w.add("general.alignment", GgufWriter::u32(64));
        const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                                  GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                  GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
        for (GgmlType t : types) {
            const int64_t n = ggml_block_size(t) == 256 ? 256 : 64;
            w.add_tensor(std::string("t.") + ggml_type_name(t), {n, 1}, t, encoded(t, n));
        }
        w.write(dir + "/all_types.gguf");
    }
    {   // llama-like small model layout
        GgufWriter w;
        w.add("general.architecture", GgufWriter::string("llama"));
        w.add("llama.block_count", GgufWriter::u32(1));
        w.add("llama.embedding_length", GgufWriter::u32(64));
        w.add("tokenizer.ggml.tokens", GgufWriter::string_array({"<s>", "</s>", "a", "b"}));
        w.add_tensor("token_embd.weight", {64, 4}, GgmlType::Q8_0, encoded(GgmlType::Q8_0, 256));
        w.add_tensor("blk.0.attn_q.weight", {64, 64}, GgmlType::Q4_1, encoded(GgmlType::Q4_1, 64 * 64));
        w.add_tensor("output_norm.weight", {64}, GgmlType::F32, encoded(GgmlType::F32, 64));
        w.write(dir + "/tiny_llama.gguf");
    }
    return 0;
}

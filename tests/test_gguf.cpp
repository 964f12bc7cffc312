// tests/test_gguf.cpp: GGUF reader/writer: real model, round trips, malicious files, corruption sweep.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.hpp"
#include "util/error.hpp"
#include "test_model_path.hpp"

using namespace hs;
namespace fs = std::filesystem;

namespace {

const std::string kModel = test_model_file();

void require_model() {
    if (!fs::exists(kModel))
        FAIL("test model " << kModel << " is missing: run scripts/fetch_model.sh (or copy the file there)");
}

// A private temporary directory, removed with its files at scope exit.
class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "hs_gguf_test_XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        dir_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::string file(const std::string& name) const { return (dir_ / name).string(); }
    std::string write(const std::string& name, const std::vector<uint8_t>& bytes) const {
        const std::string p = file(name);
        std::ofstream out(p, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        REQUIRE(out.good());
        return p;
    }

private:
    fs::path dir_;
};

template <typename T>
void poke(std::vector<uint8_t>& b, size_t at, T v) {
    REQUIRE(at + sizeof(T) <= b.size());
    std::memcpy(b.data() + at, &v, sizeof(T));
}

// Offset of the first occurrence of `text` in the bytes (the tests use names that occur once).
size_t find_text(const std::vector<uint8_t>& b, const std::string& text) {
    auto it = std::search(b.begin(), b.end(), text.begin(), text.end());
    REQUIRE(it != b.end());
    return static_cast<size_t>(it - b.begin());
}

// Where the fields of a tensor info lie: name | u32 n_dims | i64 dims[n] | u32 type | u64 offset.
struct InfoAt {
    size_t n_dims, dims, type, offset;
};
InfoAt tensor_info_at(const std::vector<uint8_t>& b, const std::string& name) {
    const size_t name_at = find_text(b, name);
    InfoAt at{};
    at.n_dims = name_at + name.size();
    uint32_t n;
    std::memcpy(&n, b.data() + at.n_dims, 4);
    at.dims = at.n_dims + 4;
    at.type = at.dims + 8 * n;
    at.offset = at.type + 4;
    return at;
}

// Offset of the value of metadata key `key` (after its u32 type tag).
size_t value_at(const std::vector<uint8_t>& b, const std::string& key) { return find_text(b, key) + key.size() + 4; }

GgufValue make_scalar(GgufValueType t, uint64_t u) {
    GgufValue v;
    v.type = t;
    v.scalar = u;
    return v;
}
GgufValue make_signed(GgufValueType t, int64_t i) {
    GgufValue v;
    v.type = t;
    v.scalar = i;
    return v;
}
GgufValue make_f64(double d) {
    GgufValue v;
    v.type = GgufValueType::F64;
    v.scalar = d;
    return v;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

// A small valid file with a few keys of several types and three tensors; the malicious tests patch its bytes.
GgufWriter small_writer() {
    GgufWriter w;
    w.add("general.architecture", GgufWriter::string("llama"));
    w.add("test.count", GgufWriter::u32(7));
    w.add("test.flag", GgufWriter::boolean(true));
    w.add("test.ids", GgufWriter::i32_array({1, 2, 3}));
    w.add("test.words", GgufWriter::string_array({"x", "yy"}));
    w.add_tensor("tensor.alpha", {4, 2}, GgmlType::F32, f32_bytes({1, 2, 3, 4, 5, 6, 7, 8}));
    w.add_tensor("tensor.beta", {32, 1, 1}, GgmlType::Q8_0, std::vector<uint8_t>(34, 1));
    w.add_tensor("tensor.gamma", {32, 2}, GgmlType::Q4_0, std::vector<uint8_t>(36, 2));
    return w;
}

// Opens the bytes as a file named `name`, requires hs::Error whose message starts with the path and contains every
// one of `parts`.
void expect_rejected(const std::vector<uint8_t>& bytes, const std::vector<std::string>& parts,
                     const std::string& name = "bad.gguf") {
    TempDir dir;
    const std::string path = dir.write(name, bytes);
    try {
        GgufFile::open(path);
        FAIL("opened without error; expected: " << parts.front());
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(msg.rfind(path + ": ", 0) == 0);
        for (const std::string& p : parts) CHECK(msg.find(p) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
    }
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

TEST_CASE("the default model: tensor pointers, sizes and row geometry", "[gguf]") {
    require_model();
    const GgufFile f = GgufFile::open(kModel);
    CHECK(f.data_offset() % f.alignment() == 0);
    CHECK(f.file_size() == fs::file_size(kModel));
    const GgufTensorInfo& q = f.tensor("blk.0.attn_q.weight");
    CHECK(q.type == GgmlType::Q4_1);
    CHECK(q.dims == std::vector<int64_t>{576, 576});
    CHECK(q.nbytes == 576 / 32 * 20 * 576);
    const GgufTensorInfo& k = f.tensor("blk.0.attn_k.weight");
    CHECK(k.dims == std::vector<int64_t>{576, 192});
    CHECK(k.n_rows() == 192);
    const GgufTensorInfo& norm = f.tensor("output_norm.weight");
    CHECK(norm.type == GgmlType::F32);
    CHECK(norm.dims == std::vector<int64_t>{576});
    CHECK(norm.n_rows() == 1);
    CHECK(norm.nbytes == 576 * 4);
    // the last tensor ends exactly at the end of the file; every pointer lies inside the mapping
    const uint8_t* base = f.tensors().front().data - f.tensors().front().offset;
    uint64_t end = 0;
    for (const GgufTensorInfo& t : f.tensors()) {
        CHECK(t.data == base + t.offset);
        CHECK(t.offset % f.alignment() == 0);
        end = std::max(end, f.data_offset() + t.offset + t.nbytes);
    }
    CHECK(end == f.file_size());
    // the token embedding row of token 1 (bos) decodes to finite, non-trivial values
    const GgufTensorInfo& emb = f.tensor("token_embd.weight");
    std::vector<float> row(576);
    dequantize_row(emb.type, emb.data + 1 * ggml_row_bytes(emb.type, 576), row.data(), 576);
    double norm2 = 0;
    for (float v : row) norm2 += double(v) * v;
    CHECK(norm2 > 0);
    f.release_pages();
}

TEST_CASE("metadata accessors: typed, range-checked, errors name the file and key", "[gguf]") {
    require_model();
    const GgufFile f = GgufFile::open(kModel);
    CHECK_THROWS_WITH(f.get("no.such.key"), kModel + ": missing metadata key no.such.key");
    CHECK_THROWS_WITH(f.tensor("no.such.tensor"), kModel + ": missing tensor no.such.tensor");
    CHECK_THROWS_WITH(f.get_int("general.architecture"),
                      kModel + ": metadata key general.architecture is string, expected an integer");
    CHECK_THROWS_WITH(f.get_string("llama.block_count"),
                      kModel + ": metadata key llama.block_count is u32, expected a string");
    CHECK_THROWS_WITH(f.get_string_array("tokenizer.ggml.token_type"),
                      Catch::Contains("expected an array of string"));
    CHECK_THROWS_AS(f.get_bool("llama.block_count", false), Error);
    CHECK(f.get_float("llama.block_count") == 30.0);  // integers widen to float
    CHECK(f.get_float("no.such.key", 2.5) == 2.5);
    CHECK(f.get_bool("no.such.key", true));
    CHECK(f.get_float_array("tokenizer.ggml.token_type").size() == 49152);
}

TEST_CASE("GgufWriter -> GgufFile round trip: every value type, arrays, tensors of several types", "[gguf]") {
    GgufWriter w;
    w.add("t.u8", make_scalar(GgufValueType::U8, 255));
    w.add("t.i8", make_signed(GgufValueType::I8, -128));
    w.add("t.u16", make_scalar(GgufValueType::U16, 65535));
    w.add("t.i16", make_signed(GgufValueType::I16, -32768));
    w.add("t.u32", GgufWriter::u32(4000000000u));
    w.add("t.i32", GgufWriter::i32(-2000000000));
    w.add("t.f32", GgufWriter::f32(0.1f));
    w.add("t.bool", GgufWriter::boolean(true));
    w.add("t.string", GgufWriter::string("h\xc3\xa9llo, \"world\""));
    w.add("t.u64", make_scalar(GgufValueType::U64, std::numeric_limits<uint64_t>::max()));
    w.add("t.i64", make_signed(GgufValueType::I64, std::numeric_limits<int64_t>::min()));
    w.add("t.f64", make_f64(1e300));
    w.add("t.empty_string", GgufWriter::string(""));
    w.add("t.strings", GgufWriter::string_array({"a", "", "ccc"}));
    w.add("t.ints", GgufWriter::i32_array({-1, 0, 7}));
    w.add("t.floats", GgufWriter::f32_array({1.5f, -2.0f}));
    w.add("t.empty_array", GgufWriter::i32_array({}));
    GgufValue bools;
    bools.type = GgufValueType::ARRAY;
    bools.elem_type = GgufValueType::BOOL;
    bools.array = {GgufWriter::boolean(false), GgufWriter::boolean(true)};
    w.add("t.bools", bools);
    GgufValue u64s;
    u64s.type = GgufValueType::ARRAY;
    u64s.elem_type = GgufValueType::U64;
    u64s.array = {make_scalar(GgufValueType::U64, 5), make_scalar(GgufValueType::U64, 1ull << 40)};
    w.add("t.u64s", u64s);

    // tensors: encode known floats with our encoders, check the reader returns the same bytes
    std::vector<float> src(64 * 3);
    for (size_t i = 0; i < src.size(); ++i) src[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
    std::map<std::string, std::vector<uint8_t>> expect;
    struct Spec { const char* name; GgmlType type; std::vector<int64_t> dims; };
    const std::vector<Spec> specs = {{"w.f32", GgmlType::F32, {3, 5}},          {"w.f16", GgmlType::F16, {7}},
                                     {"w.bf16", GgmlType::BF16, {2, 2, 2, 2}}, {"w.q8_0", GgmlType::Q8_0, {64, 3}},
                                     {"w.q4_0", GgmlType::Q4_0, {32, 1, 2}},   {"w.q4_1", GgmlType::Q4_1, {96}}};
    for (const Spec& s : specs) {
        int64_t n = 1;
        for (int64_t d : s.dims) n *= d;
        std::vector<uint8_t> bytes(ggml_row_bytes(s.type, n));
        REQUIRE(quantize_row(s.type, src.data(), bytes.data(), n));
        expect[s.name] = bytes;
        w.add_tensor(s.name, s.dims, s.type, bytes);
    }

    for (uint32_t align : {0u, 64u, 1u}) {
        GgufWriter wa = w;
        if (align) wa.add("general.alignment", GgufWriter::u32(align));
        const uint32_t a = align ? align : 32;
        TempDir dir;
        const std::string path = dir.file("rt.gguf");
        wa.write(path);
        const std::vector<uint8_t> bytes = wa.to_bytes();
        CHECK(fs::file_size(path) == bytes.size());
        const GgufFile f = GgufFile::open(path);
        CHECK(f.path() == path);
        CHECK(f.version() == 3);
        CHECK(f.alignment() == a);
        CHECK(f.data_offset() % a == 0);
        CHECK(f.metadata().size() == 19 + (align ? 1 : 0));
        CHECK(f.metadata()[0].first == "t.u8");
        CHECK(f.get("t.u8").type == GgufValueType::U8);
        CHECK(f.get_int("t.u8") == 255);
        CHECK(f.get_int("t.i8") == -128);
        CHECK(f.get_int("t.u16") == 65535);
        CHECK(f.get_int("t.i16") == -32768);
        CHECK(f.get_int("t.u32") == 4000000000);
        CHECK(f.get("t.u32").type == GgufValueType::U32);
        CHECK(f.get_int("t.i32") == -2000000000);
        CHECK(f.get_float("t.f32") == 0.1f);
        CHECK(f.get("t.f32").type == GgufValueType::F32);
        CHECK(f.get_bool("t.bool", false));
        CHECK(f.get_string("t.string") == "h\xc3\xa9llo, \"world\"");
        CHECK_THROWS_WITH(f.get_int("t.u64"), Catch::Contains("does not fit in int64"));
        CHECK(std::get<uint64_t>(f.get("t.u64").scalar) == std::numeric_limits<uint64_t>::max());
        CHECK(f.get_int("t.i64") == std::numeric_limits<int64_t>::min());
        CHECK(f.get_float("t.f64") == 1e300);
        CHECK(f.get_string("t.empty_string").empty());
        CHECK(f.get_string_array("t.strings") == std::vector<std::string>{"a", "", "ccc"});
        CHECK(f.get_int_array("t.ints") == std::vector<int64_t>{-1, 0, 7});
        CHECK(f.get_float_array("t.floats") == std::vector<float>{1.5f, -2.0f});
        CHECK(f.get_int_array("t.empty_array").empty());
        CHECK(f.get("t.empty_array").elem_type == GgufValueType::I32);
        CHECK(f.get("t.bools").array.at(1).as_bool("t.bools"));
        CHECK(f.get_int_array("t.u64s") == std::vector<int64_t>{5, 1ll << 40});

        REQUIRE(f.tensors().size() == specs.size());
        for (size_t i = 0; i < specs.size(); ++i) {
            const GgufTensorInfo& t = f.tensors()[i];
            INFO(t.name);
            CHECK(t.name == specs[i].name);
            CHECK(t.type == specs[i].type);
            CHECK(t.dims == specs[i].dims);
            CHECK(t.offset % a == 0);
            REQUIRE(t.nbytes == expect[t.name].size());
            CHECK(std::memcmp(t.data, expect[t.name].data(), t.nbytes) == 0);
        }
    }
}

TEST_CASE("GgufWriter rejects inconsistent input", "[gguf]") {
    GgufWriter w;
    w.add("a", GgufWriter::u32(1));
    CHECK_THROWS_AS(w.add("a", GgufWriter::u32(2)), Error);
    CHECK_THROWS_AS(w.add("", GgufWriter::u32(2)), Error);
    CHECK_THROWS_AS(w.add_tensor("t", {33}, GgmlType::Q8_0, std::vector<uint8_t>(34)), Error);  // 33 % 32
    CHECK_THROWS_AS(w.add_tensor("t", {32}, GgmlType::Q8_0, std::vector<uint8_t>(33)), Error);  // wrong size
    CHECK_THROWS_AS(w.add_tensor("t", {}, GgmlType::F32, {}), Error);
    CHECK_THROWS_AS(w.add_tensor("t", {1, 1, 1, 1, 1}, GgmlType::F32, std::vector<uint8_t>(4)), Error);
    CHECK_THROWS_AS(w.add_tensor(std::string(64, 'n'), {1}, GgmlType::F32, std::vector<uint8_t>(4)), Error);
    w.add_tensor("t", {1}, GgmlType::F32, std::vector<uint8_t>(4));
    CHECK_THROWS_AS(w.add_tensor("t", {1}, GgmlType::F32, std::vector<uint8_t>(4)), Error);
    GgufWriter bad;
    bad.add("x", make_scalar(GgufValueType::U8, 256));
    CHECK_THROWS_WITH(bad.to_bytes(), Catch::Contains("does not fit in u8"));
    TempDir dir;
    CHECK_THROWS_WITH(w.write(dir.file("no/such/dir/x.gguf")), Catch::StartsWith(dir.file("no/such/dir/x.gguf") + ": "));
}

// ------------------------------------------------------------------------------------------------ malicious files

TEST_CASE("malicious: the small base file is valid", "[gguf]") {
    TempDir dir;
    const GgufFile f = GgufFile::open(dir.write("ok.gguf", small_writer().to_bytes()));
    CHECK(f.tensors().size() == 3);
    CHECK(f.metadata().size() == 5);
}

TEST_CASE("malicious: too short, empty and bad magic", "[gguf]") {
    expect_rejected({}, {"not a GGUF file", "at byte 0"});
    expect_rejected({'G', 'G', 'U'}, {"not a GGUF file"});
    std::vector<uint8_t> b = small_writer().to_bytes();
    b[0] = 'X';
    expect_rejected(b, {"bad magic"});
    b = small_writer().to_bytes();
    b.resize(12);
    expect_rejected(b, {"file ends inside the tensor count", "at byte 8"});
}

TEST_CASE("malicious: unsupported versions", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    poke<uint32_t>(b, 4, 0);
    expect_rejected(b, {"invalid GGUF version 0", "at byte 4"});
    poke<uint32_t>(b, 4, 1);
    expect_rejected(b, {"GGUF version 1 is not supported"});
    poke<uint32_t>(b, 4, 2);
    expect_rejected(b, {"GGUF version 2 is not supported (only version 3)"});
    poke<uint32_t>(b, 4, 4);
    expect_rejected(b, {"GGUF version 4 is newer than the supported version 3"});
}

TEST_CASE("malicious: byte-order-swapped file", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    poke<uint32_t>(b, 4, 0x03000000u);  // version 3 written big-endian
    expect_rejected(b, {"byte-swapped", "big-endian GGUF files are not supported"});
    std::memcpy(b.data(), "FUGG", 4);
    expect_rejected(b, {"big-endian GGUF files are not supported"});
}

TEST_CASE("malicious: counts larger than the file could hold", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    poke<uint64_t>(b, 8, 1ull << 40);
    expect_rejected(b, {"tensor count 1099511627776 cannot fit", "at byte 8"});
    b = small_writer().to_bytes();
    poke<uint64_t>(b, 16, ~0ull);
    expect_rejected(b, {"metadata count 18446744073709551615 cannot fit", "at byte 16"});
    b = small_writer().to_bytes();
    poke<uint64_t>(b, 16, 6);  // one more KV than present: the tensor infos are read as a KV; rejected somewhere
    expect_rejected(b, {""});
}

TEST_CASE("malicious: string and array lengths past the end", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    poke<uint64_t>(b, 24, 1ull << 62);  // length of the first key
    expect_rejected(b, {"key length 4611686018427387904 runs past the end of the file", "metadata pair #0",
                        "at byte 24"});
    b = small_writer().to_bytes();
    const size_t v = value_at(b, "general.architecture");
    poke<uint64_t>(b, v, b.size());  // string value length
    expect_rejected(b, {"string value length", "runs past the end", "key general.architecture"});
    b = small_writer().to_bytes();
    const size_t a = value_at(b, "test.ids");  // u32 elem type | u64 count
    poke<uint64_t>(b, a + 4, 1ull << 61);
    expect_rejected(b, {"array length 2305843009213693952 of i32 cannot fit", "key test.ids"});
    b = small_writer().to_bytes();
    const size_t s = value_at(b, "test.words");
    poke<uint64_t>(b, s + 4 + 8, 1ull << 40);  // length of the first string element
    expect_rejected(b, {"string value length 1099511627776 runs past the end", "key test.words"});
    b = small_writer().to_bytes();
    const InfoAt t = tensor_info_at(b, "tensor.beta");
    poke<uint64_t>(b, t.n_dims - std::string("tensor.beta").size() - 8, 100000);
    expect_rejected(b, {"tensor name length 100000 runs past the end", "tensor #1"});
}

TEST_CASE("malicious: key and tensor name limits", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    const InfoAt t = tensor_info_at(b, "tensor.beta");
    // a 64-byte name: ggml's limit is 63 bytes plus NUL. Reuse the file's own bytes as the name.
    poke<uint64_t>(b, t.n_dims - std::string("tensor.beta").size() - 8, 64);
    expect_rejected(b, {"tensor name is 64 bytes long (limit 63)", "tensor #1"});
}

TEST_CASE("malicious: unknown value types and nested arrays", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    const size_t count_type = value_at(b, "test.count") - 4;
    poke<uint32_t>(b, count_type, 13);
    expect_rejected(b, {"unknown metadata value type 13", "key test.count"});
    poke<uint32_t>(b, count_type, 0xFFFFFFFFu);
    expect_rejected(b, {"unknown metadata value type 4294967295", "key test.count"});
    b = small_writer().to_bytes();
    const size_t a = value_at(b, "test.ids");
    poke<uint32_t>(b, a, 9);
    expect_rejected(b, {"nested arrays are not supported", "key test.ids"});
    poke<uint32_t>(b, a, 77);
    expect_rejected(b, {"unknown metadata value type 77", "key test.ids"});
}

TEST_CASE("malicious: bool not 0 or 1", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    b[value_at(b, "test.flag")] = 2;
    expect_rejected(b, {"bool value is 2 (must be 0 or 1)", "key test.flag"});
}

TEST_CASE("malicious: empty and duplicate keys", "[gguf]") {
    // an empty key: hand-built, since the writer refuses it
    std::vector<uint8_t> b;
    auto put = [&b](const void* p, size_t n) { b.insert(b.end(), (const uint8_t*)p, (const uint8_t*)p + n); };
    const uint32_t version = 3, type_u8 = 0;
    const uint64_t n_tensors = 0, n_kv = 1, empty = 0;
    const uint8_t value = 5;
    put("GGUF", 4);
    put(&version, 4);
    put(&n_tensors, 8);
    put(&n_kv, 8);
    put(&empty, 8);
    put(&type_u8, 4);
    put(&value, 1);
    b.resize(b.size() + 16, 0);  // so that the count check passes and the key itself is read
    expect_rejected(b, {"empty metadata key", "metadata pair #0", "at byte 24"});

    GgufWriter w;
    w.add("dup.keyA", GgufWriter::u32(1));
    w.add("dup.keyB", GgufWriter::u32(2));
    b = w.to_bytes();
    b[find_text(b, "dup.keyB") + 7] = 'A';
    expect_rejected(b, {"duplicate metadata key", "key dup.keyA"});
}

TEST_CASE("malicious: general.alignment", "[gguf]") {
    GgufWriter w = small_writer();
    w.add("general.alignment", GgufWriter::u32(64));
    std::vector<uint8_t> b = w.to_bytes();
    poke<uint32_t>(b, value_at(b, "general.alignment"), 48);
    expect_rejected(b, {"general.alignment 48 is not a power of two", "key general.alignment"});
    poke<uint32_t>(b, value_at(b, "general.alignment"), 0);
    expect_rejected(b, {"general.alignment 0 is not a power of two"});
    GgufWriter w2 = small_writer();
    w2.add("general.alignment", GgufWriter::i32(32));
    expect_rejected(w2.to_bytes(), {"general.alignment is i32, must be u32", "key general.alignment"});
}

TEST_CASE("malicious: tensor dimensions", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    InfoAt t = tensor_info_at(b, "tensor.beta");
    poke<uint32_t>(b, t.n_dims, 0);
    expect_rejected(b, {"tensor has 0 dimensions (must be 1 to 4)", "tensor tensor.beta"});
    poke<uint32_t>(b, t.n_dims, 5);
    expect_rejected(b, {"tensor has 5 dimensions", "tensor tensor.beta"});
    poke<uint32_t>(b, t.n_dims, 0x7FFFFFFF);
    expect_rejected(b, {"tensor has 2147483647 dimensions"});

    b = small_writer().to_bytes();
    poke<int64_t>(b, t.dims + 8, 0);
    expect_rejected(b, {"dimension 1 is 0 (must be positive)", "tensor tensor.beta"});
    poke<int64_t>(b, t.dims + 8, -5);
    expect_rejected(b, {"dimension 1 is -5 (must be positive)", "tensor tensor.beta"});

    b = small_writer().to_bytes();
    poke<int64_t>(b, t.dims + 8, 1ll << 32);
    poke<int64_t>(b, t.dims + 16, 1ll << 32);  // 32 * 2^64 elements
    expect_rejected(b, {"element count overflows int64", "tensor tensor.beta"});

    b = small_writer().to_bytes();
    t = tensor_info_at(b, "tensor.alpha");  // F32 {4, 2}
    poke<int64_t>(b, t.dims, 1ll << 31);
    poke<int64_t>(b, t.dims + 8, 1ll << 31);  // 2^62 elements fit int64, 2^64 bytes do not fit
    expect_rejected(b, {"tensor byte size overflows", "tensor tensor.alpha"});
}

TEST_CASE("malicious: tensor types and block geometry", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    const InfoAt t = tensor_info_at(b, "tensor.beta");
    poke<uint32_t>(b, t.type, 16);
    expect_rejected(b, {"unsupported tensor type IQ2_XXS (16)", "tensor tensor.beta"});
    poke<uint32_t>(b, t.type, 77);
    expect_rejected(b, {"unsupported tensor type unknown (77)", "tensor tensor.beta"});
    poke<uint32_t>(b, t.type, 4);
    expect_rejected(b, {"unsupported tensor type unknown (4)"});
    b = small_writer().to_bytes();
    poke<int64_t>(b, t.dims, 48);
    expect_rejected(b, {"row length 48 is not a multiple of the Q8_0 block size 32", "tensor tensor.beta"});
}

TEST_CASE("malicious: tensor offsets and data placement", "[gguf]") {
    std::vector<uint8_t> b = small_writer().to_bytes();
    const InfoAt beta = tensor_info_at(b, "tensor.beta");
    uint64_t off;
    std::memcpy(&off, b.data() + beta.offset, 8);
    CHECK(off == 32);
    poke<uint64_t>(b, beta.offset, 36);
    expect_rejected(b, {"data offset 36 is not a multiple of the alignment 32", "tensor tensor.beta"});
    poke<uint64_t>(b, beta.offset, 0);  // on top of tensor.alpha
    expect_rejected(b, {"tensor data overlaps: tensor.alpha", "tensor.beta"});
    poke<uint64_t>(b, beta.offset, 1ull << 60);
    expect_rejected(b, {"runs past the end of the file", "tensor tensor.beta"});
    poke<uint64_t>(b, beta.offset, ~0ull & ~31ull);  // offset + nbytes wraps around
    expect_rejected(b, {"runs past the end of the file", "tensor tensor.beta"});

    b = small_writer().to_bytes();
    b.pop_back();  // the last tensor loses its last byte
    expect_rejected(b, {"tensor data [96, +36) runs past the end of the file", "tensor tensor.gamma"});
}

TEST_CASE("malicious: duplicate tensor names", "[gguf]") {
    GgufWriter w;
    w.add_tensor("dup.tensorA", {1}, GgmlType::F32, std::vector<uint8_t>(4));
    w.add_tensor("dup.tensorB", {1}, GgmlType::F32, std::vector<uint8_t>(4));
    std::vector<uint8_t> b = w.to_bytes();
    b[find_text(b, "dup.tensorB") + 10] = 'A';
    expect_rejected(b, {"duplicate tensor name", "tensor dup.tensorA"});
}

TEST_CASE("malicious: total array elements are capped", "[gguf]") {
    // 5M one-byte elements: fits the file, but would cost ~360 MB as GgufValues
    std::vector<uint8_t> b;
    auto put = [&b](const void* p, size_t n) { b.insert(b.end(), (const uint8_t*)p, (const uint8_t*)p + n); };
    const uint32_t version = 3, type_array = 9, type_u8 = 0;
    const uint64_t n_tensors = 0, n_kv = 1, key_len = 3, count = 5000000;
    put("GGUF", 4);
    put(&version, 4);
    put(&n_tensors, 8);
    put(&n_kv, 8);
    put(&key_len, 8);
    put("big", 3);
    put(&type_array, 4);
    put(&type_u8, 4);
    put(&count, 8);
    b.resize(b.size() + count, 0);
    expect_rejected(b, {"metadata arrays hold more than 4194304 elements", "key big"});
}

// ------------------------------------------------------------------------------------------------ corruption sweep

namespace {

// Opens the file; returns true when it opened, false on hs::Error; anything else fails the test.
bool opens(const std::string& path) {
    try {
        GgufFile::open(path);
        return true;
    } catch (const Error& e) {
        const std::string msg = e.what();
        if (msg.rfind(path + ": ", 0) != 0) FAIL_CHECK("message does not start with the path: " << msg);
        return false;
    } catch (const std::exception& e) {
        FAIL_CHECK("non-hs::Error exception: " << e.what());
        return false;
    }
}

}  // namespace

TEST_CASE("corruption sweep over the default model's header: flips and truncations never crash", "[gguf][corrupt]") {
    require_model();
    uint64_t header_end = 0, first_info = 0, file_size = 0;
    {
        const GgufFile f = GgufFile::open(kModel);
        header_end = f.data_offset();
        file_size = f.file_size();
    }
    TempDir dir;
    const std::string path = dir.file("corrupt.gguf");
    fs::copy_file(kModel, path);
    std::vector<uint8_t> header(header_end);
    {
        std::ifstream in(kModel, std::ios::binary);
        in.read(reinterpret_cast<char*>(header.data()), static_cast<std::streamsize>(header.size()));
        REQUIRE(in.good());
        // the tensor infos start with the first tensor's name (token_embd.weight), preceded by its u64 length
        const std::string first = "token_embd.weight";
        auto it = std::search(header.begin(), header.end(), first.begin(), first.end());
        REQUIRE(it != header.end());
        first_info = static_cast<uint64_t>(it - header.begin()) - 8;
    }
    const int fd = ::open(path.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    std::mt19937_64 rng(42);

    // 1. single-byte flips, restored after each open: a third in the fixed header and first KVs, a third in the
    //    tensor infos, a third anywhere before the data section
    int flips_ok = 0, flips_rejected = 0;
    for (int i = 0; i < 500; ++i) {
        uint64_t at;
        if (i % 3 == 0) at = rng() % std::min<uint64_t>(header_end, 2048);
        else if (i % 3 == 1) at = first_info + rng() % (header_end - first_info);
        else at = rng() % header_end;
        const uint8_t orig = header[at];
        const uint8_t flipped = static_cast<uint8_t>(orig ^ (1u << (rng() % 8)));
        REQUIRE(::pwrite(fd, &flipped, 1, static_cast<off_t>(at)) == 1);
        (opens(path) ? flips_ok : flips_rejected)++;
        REQUIRE(::pwrite(fd, &orig, 1, static_cast<off_t>(at)) == 1);
    }
    REQUIRE(opens(path));  // restored
    INFO("flips: " << flips_ok << " opened, " << flips_rejected << " rejected");
    CHECK(flips_rejected > 0);

    // 2. truncations inside the tensor data (descending, so one file serves all): always detected
    int data_cuts = 0;
    for (uint64_t cut = file_size - 1; cut > header_end; cut = cut > 200000 + header_end ? cut - cut / 17 : header_end) {
        REQUIRE(::ftruncate(fd, static_cast<off_t>(cut)) == 0);
        if (opens(path)) FAIL_CHECK("truncation at " << cut << " inside the tensor data was not detected");
        ++data_cuts;
    }
    CHECK(data_cuts > 20);

    // 3. truncations in the header/metadata/tensor-info region: 500 points at a stride, plus the first 64 bytes
    std::vector<uint64_t> cuts;
    for (uint64_t c = 0; c < 64; ++c) cuts.push_back(c);
    for (int i = 0; i < 500; ++i) cuts.push_back(header_end * static_cast<uint64_t>(i) / 500);
    cuts.push_back(first_info);
    std::sort(cuts.begin(), cuts.end(), std::greater<>());
    int header_cuts = 0;
    for (uint64_t cut : cuts) {
        REQUIRE(::ftruncate(fd, static_cast<off_t>(cut)) == 0);
        if (opens(path)) FAIL_CHECK("truncation at " << cut << " in the header was not detected");
        ++header_cuts;
    }
    ::close(fd);
    CHECK(header_cuts >= 500);
}

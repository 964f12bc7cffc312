// tests/test_quant.cpp: block codecs against gguf-py fixtures, encoder round trips, half/bfloat conversions.
//
// The fixture (tests/fixtures/quant/quant_fixtures.bin, format in tools/gen_quant_fixtures.py) holds random blocks of
// every type with gguf-py's dequantisation, and random rows with gguf-py's Q8_0/Q4_0/Q4_1 encodings.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "gguf/quant.hpp"
#include "test_model_path.hpp"

using namespace hs;

namespace {

struct FixtureRecord {
    uint32_t kind;  // 0 decode, 1 encode
    GgmlType type;
    std::vector<uint8_t> bytes;
    std::vector<float> floats;  // decode: gguf-py output; encode: input
};

std::vector<FixtureRecord> load_fixtures() {
    const std::string path = fixtures_dir() + "/quant/quant_fixtures.bin";
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    const std::vector<uint8_t> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t pos = 0;
    auto u32 = [&] {
        REQUIRE(pos + 4 <= buf.size());
        uint32_t v;
        std::memcpy(&v, buf.data() + pos, 4);
        pos += 4;
        return v;
    };
    REQUIRE(buf.size() >= 12);
    REQUIRE(std::memcmp(buf.data(), "HSQF", 4) == 0);
    pos = 4;
    REQUIRE(u32() == 1);
    const uint32_t n = u32();
    std::vector<FixtureRecord> out;
    for (uint32_t i = 0; i < n; ++i) {
        FixtureRecord r;
        r.kind = u32();
        const auto type = ggml_type_from_id(u32());
        REQUIRE(type.has_value());
        r.type = *type;
        const uint32_t n_elem = u32(), n_bytes = u32();
        r.bytes.resize(n_bytes);
        r.floats.resize(n_elem);
        auto take = [&](void* dst, size_t len) {
            REQUIRE(pos + len <= buf.size());
            std::memcpy(dst, buf.data() + pos, len);
            pos += len;
        };
        if (r.kind == 0) {
            take(r.bytes.data(), n_bytes);
            take(r.floats.data(), n_elem * 4);
        } else {
            take(r.floats.data(), n_elem * 4);
            take(r.bytes.data(), n_bytes);
        }
        out.push_back(std::move(r));
    }
    REQUIRE(pos == buf.size());
    return out;
}

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

}  // namespace

TEST_CASE("type table matches ggml's ids and block geometry", "[quant]") {
    struct Row { uint32_t id; const char* name; int64_t qk, bytes; };
    const Row rows[] = {{0, "F32", 1, 4},       {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},  {3, "Q4_1", 32, 20},
                        {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},  {12, "Q4_K", 256, 144},
                        {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210}, {30, "BF16", 1, 2}};
    for (const Row& r : rows) {
        const auto t = ggml_type_from_id(r.id);
        REQUIRE(t.has_value());
        CHECK(std::string(ggml_type_name(*t)) == r.name);
        CHECK(ggml_type_name_of_id(r.id) == r.name);
        CHECK(ggml_block_size(*t) == r.qk);
        CHECK(ggml_block_bytes(*t) == r.bytes);
        CHECK(ggml_row_bytes(*t, r.qk * 3) == static_cast<uint64_t>(r.bytes * 3));
    }
    for (uint32_t id : {4u, 5u, 9u, 10u, 11u, 15u, 16u, 29u, 31u, 39u, 77u, 0xFFFFFFFFu})
        CHECK_FALSE(ggml_type_from_id(id).has_value());
    CHECK(ggml_type_name_of_id(16) == "IQ2_XXS");
    CHECK(ggml_type_name_of_id(10) == "Q2_K");
    CHECK(ggml_type_name_of_id(39) == "MXFP4");
    CHECK(ggml_type_name_of_id(4) == "unknown");
    CHECK(ggml_type_name_of_id(77) == "unknown");
    CHECK(ggml_type_can_encode(GgmlType::Q4_1));
    CHECK_FALSE(ggml_type_can_encode(GgmlType::Q6_K));
}

// gguf-py computes in float32 with the same operation order as ggml's reference (q*d, q*d + m, (d*sc)*q - dmin*mn),
// so we expect bit-exact equality, nan payloads included. GCC does contract a*b+c into FMAs here (C++ mode,
// -march=native), but every product that feeds an addition is exact in float (f16 mantissa 11 bits x 6-bit scale x
// <= 5-bit quant <= 24 bits), so fused and unfused results agree; Q6_K's possibly-rounded product is never added.
TEST_CASE("dequantize_row matches gguf-py bit for bit on random blocks of every type", "[quant]") {
    const std::vector<FixtureRecord> recs = load_fixtures();
    int n_decode = 0;
    for (const FixtureRecord& r : recs) {
        if (r.kind != 0) continue;
        ++n_decode;
        INFO("type " << ggml_type_name(r.type));
        const int64_t n = static_cast<int64_t>(r.floats.size());
        REQUIRE(ggml_row_bytes(r.type, n) == r.bytes.size());
        std::vector<float> got(r.floats.size());
        dequantize_row(r.type, r.bytes.data(), got.data(), n);
        int mismatches = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            if (!same_bits(got[i], r.floats[i])) {
                if (mismatches < 5) UNSCOPED_INFO("element " << i << ": ours " << got[i] << " gguf-py " << r.floats[i]);
                ++mismatches;
            }
        }
        CHECK(mismatches == 0);
    }
    CHECK(n_decode == 11);
}

TEST_CASE("Q8_0/Q4_0/Q4_1 encoders match gguf-py (= ggml's reference rounding) byte for byte", "[quant]") {
    const std::vector<FixtureRecord> recs = load_fixtures();
    int n_encode = 0;
    for (const FixtureRecord& r : recs) {
        if (r.kind != 1) continue;
        ++n_encode;
        INFO("type " << ggml_type_name(r.type));
        std::vector<uint8_t> got(r.bytes.size());
        REQUIRE(quantize_row(r.type, r.floats.data(), got.data(), static_cast<int64_t>(r.floats.size())));
        int first_diff = -1;
        for (size_t i = 0; i < got.size() && first_diff < 0; ++i)
            if (got[i] != r.bytes[i]) first_diff = static_cast<int>(i);
        INFO("first differing byte " << first_diff);
        CHECK(first_diff == -1);
    }
    CHECK(n_encode == 3);
}

TEST_CASE("encoders round-trip within their error bounds", "[quant]") {
    std::mt19937 rng(1234);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> log_scale(-8.0f, 8.0f);
    const int64_t n = 32 * 256;
    std::vector<float> x(n), y(n);
    for (int64_t b = 0; b < n / 32; ++b) {
        const float s = std::exp2(log_scale(rng));
        const float offset = (b % 3 == 0) ? 4.0f * s : 0.0f;
        for (int j = 0; j < 32; ++j) x[b * 32 + j] = normal(rng) * s + offset;
    }
    const float half_ulp16 = std::ldexp(1.0f, -11);  // relative rounding error of an f16 scale

    for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1}) {
        INFO("type " << ggml_type_name(t));
        std::vector<uint8_t> q(ggml_row_bytes(t, n));
        REQUIRE(quantize_row(t, x.data(), q.data(), n));
        dequantize_row(t, q.data(), y.data(), n);
        int bad = 0;
        for (int64_t b = 0; b < n / 32; ++b) {
            const float* xb = &x[b * 32];
            float amax = 0, mn = xb[0], mx = xb[0];
            for (int j = 0; j < 32; ++j) {
                amax = std::max(amax, std::fabs(xb[j]));
                mn = std::min(mn, xb[j]);
                mx = std::max(mx, xb[j]);
            }
            for (int j = 0; j < 32; ++j) {
                const float v = xb[j], err = std::fabs(y[b * 32 + j] - v);
                float bound = 0;
                switch (t) {
                case GgmlType::F32: bound = 0; break;
                case GgmlType::F16: bound = std::fabs(v) * half_ulp16 + std::ldexp(1.0f, -25); break;  // + subnormal step/2
                case GgmlType::BF16: bound = std::fabs(v) * std::ldexp(1.0f, -8); break;
                // half a step, plus the f16 rounding of d times the largest quant (127)
                case GgmlType::Q8_0: bound = amax / 127 * 0.5f + amax * half_ulp16 * 1.01f; break;
                // the element opposite the max can clamp from +8 to +7: up to one full step d = amax/8
                case GgmlType::Q4_0: bound = amax / 8 * 1.0f + amax * half_ulp16 * 1.01f; break;
                // half a step, plus f16 rounding of d (times 15) and of m
                case GgmlType::Q4_1:
                    bound = (mx - mn) / 15 * 0.5f + (mx - mn) * half_ulp16 * 1.01f + std::fabs(mn) * half_ulp16 * 1.01f;
                    break;
                default: break;
                }
                bound *= 1.0001f;
                if (err > bound + 1e-30f) ++bad;
            }
        }
        CHECK(bad == 0);
    }
}

TEST_CASE("Q8_0 and Q4_0 encode all-zero blocks as zero scale", "[quant]") {
    std::vector<float> x(32, 0.0f), y(32, 1.0f);
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1}) {
        std::vector<uint8_t> q(ggml_row_bytes(t, 32));
        REQUIRE(quantize_row(t, x.data(), q.data(), 32));
        dequantize_row(t, q.data(), y.data(), 32);
        for (float v : y) CHECK(v == 0.0f);
    }
    std::vector<uint8_t> q(400);
    CHECK_FALSE(quantize_row(GgmlType::Q6_K, x.data(), q.data(), 32));
}

TEST_CASE("fp16 conversions: exact widening, round-to-nearest-even narrowing", "[quant]") {
    // every half widens exactly and narrows back to itself (nan stays nan)
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = fp16_to_fp32(static_cast<uint16_t>(h));
        const uint16_t back = fp32_to_fp16(f);
        if (std::isnan(f)) {
            CHECK((back & 0x7C00) == 0x7C00);
            CHECK((back & 0x3FF) != 0);
        } else if (back != h) {
            FAIL_CHECK("half 0x" << std::hex << h << " -> " << f << " -> 0x" << back);
        }
    }
    CHECK(fp16_to_fp32(0x3C00) == 1.0f);
    CHECK(fp16_to_fp32(0xC000) == -2.0f);
    CHECK(fp16_to_fp32(0x7BFF) == 65504.0f);
    CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
    CHECK(fp32_to_fp16(65519.0f) == 0x7BFF);
    CHECK(fp32_to_fp16(65520.0f) == 0x7C00);  // tie between 65504 and "65536": even is inf
    CHECK(fp32_to_fp16(1e10f) == 0x7C00);
    CHECK(fp32_to_fp16(-1e10f) == 0xFC00);
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);          // tie, rounds to even 0
    CHECK(fp32_to_fp16(std::ldexp(1.5f, -25)) == 0x0001);
    CHECK(fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);          // 1.5 * 2^-24: tie, rounds to even 2
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -14) * (1 - 1.0f / 4096)) == 0x0400);  // rounds up into the normals
    CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);   // tie, to even
    CHECK(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie, to even (up)
    CHECK(fp32_to_fp16(-0.0f) == 0x8000);

    // against an independent narrowing: nearest of the two neighbouring halves, ties to the even one
    std::mt19937 rng(7);
    std::uniform_int_distribution<uint32_t> bits;
    for (int i = 0; i < 200000; ++i) {
        const float f = std::bit_cast<float>(bits(rng) & 0xBFFFFFFFu | 0x30000000u);  // |f| in roughly [2^-31, 2^33)
        if (std::fabs(f) >= 65520.0f) continue;
        const uint16_t h = fp32_to_fp16(f);
        const double here = fp16_to_fp32(h);
        const double up = fp16_to_fp32(static_cast<uint16_t>(h + 1)), down = fp16_to_fp32(static_cast<uint16_t>(h - 1));
        const double e = std::fabs(here - f);
        if ((h & 0x7FFF) != 0x7BFF && std::fabs(up - f) < e) FAIL_CHECK("not nearest: " << f);
        if ((h & 0x7FFF) != 0 && std::fabs(down - f) < e) FAIL_CHECK("not nearest: " << f);
    }
}

TEST_CASE("bf16 conversions", "[quant]") {
    CHECK(bf16_to_fp32(0x3F80) == 1.0f);
    CHECK(fp32_to_bf16(1.0f) == 0x3F80);
    CHECK(fp32_to_bf16(std::bit_cast<float>(0x3F808000u)) == 0x3F80);  // tie, to even
    CHECK(fp32_to_bf16(std::bit_cast<float>(0x3F818000u)) == 0x3F82);  // tie, to even (up)
    CHECK(fp32_to_bf16(std::bit_cast<float>(0x3F808001u)) == 0x3F81);
    CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(std::bit_cast<float>(0x7F800001u)))));  // nan stays nan
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = bf16_to_fp32(static_cast<uint16_t>(h));
        if (!std::isnan(f) && fp32_to_bf16(f) != h) FAIL_CHECK("bf16 0x" << std::hex << h);
    }
}

// scale_block folds a head scale into a block without re-quantising. Two properties, on every type's random blocks
// from the gguf-py fixtures: s = 2 multiplies every decoded value exactly (a power of two scales d, dmin and every
// product exactly); any s changes only the fp16 scale fields, each to fp16(old * s), and leaves the quants alone.
TEST_CASE("scale_block multiplies a block's values through its scale fields only, for every type", "[quant]") {
    auto scale_fields = [](GgmlType t) -> std::vector<size_t> {
        switch (t) {
            case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: return {0};
            case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K: return {0, 2};
            case GgmlType::Q6_K: return {208};
            default: return {};  // float types: every element is its own value
        }
    };
    auto f16_at = [](const uint8_t* p) {
        uint16_t h;
        std::memcpy(&h, p, 2);
        return h;
    };
    int n_types = 0;
    for (const FixtureRecord& r : load_fixtures()) {
        if (r.kind != 0) continue;
        ++n_types;
        INFO("type " << ggml_type_name(r.type));
        const int64_t bs = ggml_block_size(r.type), bb = ggml_block_bytes(r.type);
        const int64_t n_blocks = int64_t(r.floats.size()) / bs;
        int exact_blocks = 0;
        for (int64_t b = 0; b < n_blocks; ++b) {
            const uint8_t* orig = r.bytes.data() + b * bb;
            std::vector<float> y(size_t(bs), 0.0f), y2(size_t(bs), 0.0f);
            dequantize_row(r.type, orig, y.data(), bs);
            bool finite = true;
            for (float v : y) finite &= std::isfinite(v) && std::fabs(v) < 1e30f;
            for (size_t off : scale_fields(r.type)) finite &= std::fabs(fp16_to_fp32(f16_at(orig + off))) < 16384.0f;
            if (r.type == GgmlType::F16) finite &= std::fabs(y[0]) < 16384.0f;  // 2x stays below fp16's max
            // s = 2: exact.
            std::vector<uint8_t> blk(orig, orig + bb);
            scale_block(r.type, blk.data(), 2.0f);
            if (finite) {
                dequantize_row(r.type, blk.data(), y2.data(), bs);
                for (int64_t i = 0; i < bs; ++i) REQUIRE(same_bits(y2[size_t(i)], 2.0f * y[size_t(i)]));
                ++exact_blocks;
            }
            // s = 0.73: only the scale fields change, each to its rounded product.
            const std::vector<size_t> fields = scale_fields(r.type);
            if (fields.empty()) continue;
            blk.assign(orig, orig + bb);
            scale_block(r.type, blk.data(), 0.73f);
            for (int64_t i = 0; i < bb; ++i) {
                const bool in_field = std::any_of(fields.begin(), fields.end(),
                                                  [&](size_t off) { return size_t(i) >= off && size_t(i) < off + 2; });
                if (!in_field) REQUIRE(blk[size_t(i)] == orig[i]);
            }
            for (size_t off : fields) {
                const float old = fp16_to_fp32(f16_at(orig + off));
                if (std::isnan(old)) continue;
                CHECK(f16_at(blk.data() + off) == fp32_to_fp16(old * 0.73f));
            }
        }
        CHECK(exact_blocks > 0);
    }
    CHECK(n_types == 11);
}

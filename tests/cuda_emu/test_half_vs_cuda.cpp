// tests/cuda_emu/test_half_vs_cuda.cpp: the emulator's hs_bf16/hs_f16 conversions, bit for bit against CUDA's own
// host conversions (__float2bfloat16, __float2half, __bfloat162float, __half2float from cuda_bf16.h/cuda_fp16.h).
//
// Built into headsweep_tests only where CUDA's headers are installed (CMakeLists.txt); only the headers are used,
// as host C++, and nothing is linked. CUDA documents its host and device conversions as the same rounding (round to
// nearest even); the host ones are what a machine without a GPU can compare with.
#include <catch2/catch.hpp>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_emu_half.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace {

uint16_t cuda_bf16_bits(float f) { return __nv_bfloat16_raw(__float2bfloat16(f)).x; }
uint16_t cuda_f16_bits(float f) { return __half_raw(__float2half(f)).x; }
float cuda_bf16_to_float(uint16_t b) {
    __nv_bfloat16_raw r;
    r.x = b;
    return __bfloat162float(__nv_bfloat16(r));
}
float cuda_f16_to_float(uint16_t b) {
    __half_raw r;
    r.x = b;
    return __half2float(__half(r));
}

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

// Counts disagreements (REQUIRE per value would be slow); reports the first.
struct Mismatches {
    uint64_t count = 0;
    uint32_t first_input = 0;
    uint32_t first_ours = 0, first_cuda = 0;
    void add(uint32_t input, uint32_t ours, uint32_t cuda) {
        if (ours == cuda) return;
        if (count++ == 0) {
            first_input = input;
            first_ours = ours;
            first_cuda = cuda;
        }
    }
};

#define CHECK_NO_MISMATCH(m)                                                                                    \
    do {                                                                                                        \
        INFO(std::hex << "first mismatch: input 0x" << (m).first_input << " ours 0x" << (m).first_ours          \
                      << " CUDA 0x" << (m).first_cuda);                                                         \
        CHECK((m).count == 0);                                                                                  \
    } while (0)

void compare_narrowing(float f, Mismatches& bf, Mismatches& hf) {
    bf.add(bits(f), hs_from_float<hs_bf16>(f).bits, cuda_bf16_bits(f));
    hf.add(bits(f), hs_from_float<hs_f16>(f).bits, cuda_f16_bits(f));
}

// Values where rounding is decided: 0, +-inf, NaNs, float denormals, max, and for every 16-bit value the midpoint to
// its neighbour and the floats on either side of it.
std::vector<float> edge_cases() {
    std::vector<float> v = {0.0f,
                            -0.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::signaling_NaN(),
                            std::bit_cast<float>(0x7f800001u),
                            std::bit_cast<float>(0xffc00001u),
                            std::numeric_limits<float>::denorm_min(),
                            -std::numeric_limits<float>::denorm_min(),
                            std::bit_cast<float>(0x007fffffu),
                            std::numeric_limits<float>::min(),
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            65504.0f,
                            65519.996f,
                            65520.0f,
                            0x1p-24f,
                            0x1p-25f,
                            0x1.000002p-25f,
                            0x1.8p-24f,
                            0x1p-14f,
                            0x1.ffcp-15f};
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float bf_lo = hs_to_float(hs_bf16{uint16_t(h)});
        const float hf_lo = hs_to_float(hs_f16{uint16_t(h)});
        const float bf_mid = std::bit_cast<float>(bits(bf_lo) + 0x8000u);
        const double hf_hi = h + 1 < 0x10000 ? double(hs_to_float(hs_f16{uint16_t(h + 1)})) : double(hf_lo);
        const float hf_mid = float((double(hf_lo) + hf_hi) / 2);  // 12 significant bits: exact in float
        for (const float m : {bf_mid, hf_mid}) {
            if (!std::isfinite(m)) continue;
            v.push_back(m);
            v.push_back(std::nextafter(m, std::numeric_limits<float>::infinity()));
            v.push_back(std::nextafter(m, -std::numeric_limits<float>::infinity()));
        }
    }
    return v;
}

TEST_CASE("cuda_emu: 16-bit widening equals CUDA's on all 2^16 values", "[cuda_emu]") {
    Mismatches bf, hf;
    for (uint32_t h = 0; h < 0x10000; ++h) {
        bf.add(h, bits(hs_to_float(hs_bf16{uint16_t(h)})), bits(cuda_bf16_to_float(uint16_t(h))));
        hf.add(h, bits(hs_to_float(hs_f16{uint16_t(h)})), bits(cuda_f16_to_float(uint16_t(h))));
    }
    CHECK_NO_MISMATCH(bf);
    CHECK_NO_MISMATCH(hf);
}

TEST_CASE("cuda_emu: float to bf16/f16 equals CUDA's on edge cases and 10^7 random floats", "[cuda_emu]") {
    Mismatches bf, hf;
    const std::vector<float> edges = edge_cases();
    for (const float f : edges) compare_narrowing(f, bf, hf);
    CHECK(edges.size() > 300000);
    std::mt19937 rng(20261123);
    for (int i = 0; i < 10'000'000; ++i) compare_narrowing(std::bit_cast<float>(uint32_t(rng())), bf, hf);
    // Random bit patterns are mostly far outside half's range; these land inside it.
    std::uniform_real_distribution<float> in_range(-70000.0f, 70000.0f);
    for (int i = 0; i < 1'000'000; ++i) compare_narrowing(in_range(rng) * (i % 2 ? 1.0f : 1e-5f), bf, hf);
    CHECK_NO_MISMATCH(bf);
    CHECK_NO_MISMATCH(hf);
}

// All 2^32 floats: about 10 s, so [slow] (ctest -L slow, or ./headsweep_tests "[cuda_emu_exhaustive]").
TEST_CASE("cuda_emu: float to bf16/f16 equals CUDA's on every float", "[slow][cuda_emu_exhaustive]") {
    Mismatches bf, hf;
    for (uint64_t u = 0; u <= 0xffffffffull; ++u) compare_narrowing(std::bit_cast<float>(uint32_t(u)), bf, hf);
    CHECK_NO_MISMATCH(bf);
    CHECK_NO_MISMATCH(hf);
}

}  // namespace

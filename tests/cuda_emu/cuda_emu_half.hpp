// tests/cuda_emu/cuda_emu_half.hpp: the 16-bit storage types of the CUDA emulator (hs_bf16, hs_f16) and their
// conversions, bit-identical to CUDA's __float2bfloat16 / __float2half (round to nearest even) and to the host
// versions of __bfloat162float / __half2float.
//
// Split from cuda_emu.hpp because this part must also compile next to the real cuda_bf16.h / cuda_fp16.h (the test
// that compares the two conversions bit for bit), which the rest of the emulator cannot: its macros (__host__,
// __device__, ...) clash with CUDA's own. Global names, as in the non-emulated branch of cuda_compat.cuh.
#pragma once

#include <bit>
#include <cstdint>

struct hs_bf16 {
    uint16_t bits;
};
struct hs_f16 {
    uint16_t bits;
};

namespace hs_emu::half_bits {

// float -> bfloat16, round to nearest even. Every NaN becomes the canonical 0x7FFF, as CUDA's conversion does.
constexpr uint16_t from_float_bf16(float f) {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    const uint32_t lsb = (u >> 16) & 1u;  // ties go to the even neighbour
    return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);  // a carry out of the mantissa bumps the exponent: right
}

// bfloat16 -> float is exact: bfloat16 is the top half of a float (NaN payloads kept, as in CUDA).
constexpr float to_float_bf16(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// float -> IEEE half, round to nearest even; overflow gives +-inf, results below 2^-14 become half subnormals,
// every NaN becomes the canonical 0x7FFF (CUDA drops the sign and payload of a NaN).
constexpr uint16_t from_float_f16(float f) {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return 0x7fff;
    if (a == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);
    if (a >= 0x38800000u) {                      // |f| >= 2^-14: a normal half unless it rounds past 65504
        uint32_t v = a - 0x38000000u;            // rebias the exponent from 127 to 15
        v += 0xfffu + ((v >> 13) & 1u);          // round the 23-bit mantissa to 10 bits, ties to even
        v >>= 13;
        return static_cast<uint16_t>(sign | (v >= 0x7c00u ? 0x7c00u : v));
    }
    if (a <= 0x33000000u) return static_cast<uint16_t>(sign);  // |f| <= 2^-25: rounds to zero (2^-25 is a tie)
    // A half subnormal counts units of 2^-24: |f| = mant * 2^(exp-150), so the count is mant >> (126 - exp).
    const uint32_t exp = a >> 23;
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14..24
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;  // may carry into 0x400, the smallest normal: still right
    return static_cast<uint16_t>(sign | r);
}

// IEEE half -> float is exact. A NaN becomes the canonical 0x7FFFFFFF, as CUDA's host conversion does.
constexpr float to_float_f16(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return std::bit_cast<float>(mant != 0 ? 0x7fffffffu : (sign | 0x7f800000u));
    if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
        const float v = static_cast<float>(mant) * 0x1p-24f;
        return sign ? -v : v;
    }
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

}  // namespace hs_emu::half_bits

inline float hs_to_float(float x) { return x; }
inline float hs_to_float(hs_bf16 x) { return hs_emu::half_bits::to_float_bf16(x.bits); }
inline float hs_to_float(hs_f16 x) { return hs_emu::half_bits::to_float_f16(x.bits); }

template <class T>
T hs_from_float(float f);
template <>
inline float hs_from_float<float>(float f) {
    return f;
}
template <>
inline hs_bf16 hs_from_float<hs_bf16>(float f) {
    return hs_bf16{hs_emu::half_bits::from_float_bf16(f)};
}
template <>
inline hs_f16 hs_from_float<hs_f16>(float f) {
    return hs_f16{hs_emu::half_bits::from_float_f16(f)};
}

// gguf/quant.cpp: ggml type traits, half/bfloat conversions, and the block codecs.
//
// Every quantised type packs a fixed number of elements into a fixed-size block; blocks are stored back to back with
// no padding, so multi-byte fields are unaligned and are read with memcpy (little-endian host assumed, as in ggml).
// The formulas follow ggml's reference (non-SIMD) code in ggml-quants.c; the per-block loops below are written so
// that GCC vectorises them, which is plenty for the ~135M weights dequantised at start-up.
#include "gguf/quant.hpp"

#include <bit>
#include <cmath>
#include <algorithm>
#include <cstring>
#include <limits>

static_assert(std::endian::native == std::endian::little, "GGUF blocks are little-endian; big-endian hosts unsupported");

namespace hs {

// ------------------------------------------------------------------------------------------------ type table

namespace {

struct TypeTraits {
    GgmlType type;
    const char* name;
    int64_t block_size;   // elements per block
    int64_t block_bytes;  // bytes per block
    bool can_encode;
};

constexpr TypeTraits kTypes[] = {
    {GgmlType::F32, "F32", 1, 4, true},
    {GgmlType::F16, "F16", 1, 2, true},
    {GgmlType::Q4_0, "Q4_0", 32, 18, true},
    {GgmlType::Q4_1, "Q4_1", 32, 20, true},
    {GgmlType::Q5_0, "Q5_0", 32, 22, false},
    {GgmlType::Q5_1, "Q5_1", 32, 24, false},
    {GgmlType::Q8_0, "Q8_0", 32, 34, true},
    {GgmlType::Q4_K, "Q4_K", 256, 144, false},
    {GgmlType::Q5_K, "Q5_K", 256, 176, false},
    {GgmlType::Q6_K, "Q6_K", 256, 210, false},
    {GgmlType::BF16, "BF16", 1, 2, true},
};

const TypeTraits& traits(GgmlType t) {
    for (const TypeTraits& tr : kTypes)
        if (tr.type == t) return tr;
    return kTypes[0];  // unreachable for valid enum values; GgmlType is only built through ggml_type_from_id
}

// Names of every id ggml has used (enum ggml_type); "" marks ids that were removed (4, 5, 31-33, 36-38).
constexpr const char* kAllTypeNames[] = {
    "F32",     "F16",    "Q4_0",   "Q4_1",    "",      "",      "Q5_0",  "Q5_1",   "Q8_0",   "Q8_1",
    "Q2_K",    "Q3_K",   "Q4_K",   "Q5_K",    "Q6_K",  "Q8_K",  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
    "IQ4_NL",  "IQ3_S",  "IQ2_S",  "IQ4_XS",  "I8",    "I16",   "I32",   "I64",    "F64",    "IQ1_M",
    "BF16",    "",       "",       "",        "TQ1_0", "TQ2_0", "",      "",       "",       "MXFP4",
    "NVFP4",   "Q1_0",   "Q2_0",
};

}  // namespace

std::optional<GgmlType> ggml_type_from_id(uint32_t id) {
    for (const TypeTraits& tr : kTypes)
        if (static_cast<uint32_t>(tr.type) == id) return tr.type;
    return std::nullopt;
}

const char* ggml_type_name(GgmlType t) { return traits(t).name; }

std::string_view ggml_type_name_of_id(uint32_t id) {
    constexpr uint32_t n = sizeof(kAllTypeNames) / sizeof(kAllTypeNames[0]);
    if (id < n && kAllTypeNames[id][0] != '\0') return kAllTypeNames[id];
    return "unknown";
}

int64_t ggml_block_size(GgmlType t) { return traits(t).block_size; }
int64_t ggml_block_bytes(GgmlType t) { return traits(t).block_bytes; }
bool ggml_type_can_encode(GgmlType t) { return traits(t).can_encode; }

uint64_t ggml_row_bytes(GgmlType t, int64_t n) {
    const TypeTraits& tr = traits(t);
    return static_cast<uint64_t>(n / tr.block_size) * static_cast<uint64_t>(tr.block_bytes);
}

// ------------------------------------------------------------------------------------------------ fp16 / bf16

// binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Every half is exactly representable as a float.
float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);               // inf / nan (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);  // normal: rebias the exponent
    } else {
        // zero or subnormal: mant * 2^-24 is exact in float
        const float v = static_cast<float>(mant) * 0x1p-24f;
        bits = sign | std::bit_cast<uint32_t>(v);
    }
    return std::bit_cast<float>(bits);
}

// Round to nearest, ties to even; overflow gives inf, nan stays nan (quiet).
uint16_t fp32_to_fp16(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t abs = x & 0x7FFFFFFFu;
    if (abs >= 0x7F800000u) {  // inf or nan
        return static_cast<uint16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u | ((abs >> 13) & 0x3FFu) : 0u));
    }
    if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
    if (abs < 0x38800000u) {
        // result is subnormal or zero (|f| < 2^-14): scale to units of 2^-24 and round-half-even on the integer
        const int e = static_cast<int>(abs >> 23);       // biased float exponent, <= 112
        if (e < 102) return sign;                      // < 2^-25: rounds to zero (2^-25 itself is a tie to 0)
        const uint32_t m = (abs & 0x7FFFFFu) | 0x800000u;  // implicit bit
        const int shift = 126 - e;                     // m * 2^(e-150) / 2^-24 = m >> (126 - e)
        uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) ++q;
        return static_cast<uint16_t>(sign | q);         // q may carry into the smallest normal: still correct
    }
    // normal: rebias, then round the 13 dropped mantissa bits half-to-even (a carry may bump the exponent)
    uint32_t r = abs - ((127u - 15u) << 23);
    r += 0xFFFu + ((r >> 13) & 1u);
    return static_cast<uint16_t>(sign | (r >> 13));
}

float bf16_to_fp32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

uint16_t fp32_to_bf16(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // nan: force quiet
    return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

// ------------------------------------------------------------------------------------------------ decoders

namespace {

inline float read_f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return fp16_to_fp32(h);
}

inline void write_f16(uint8_t* p, float f) {
    const uint16_t h = fp32_to_fp16(f);
    std::memcpy(p, &h, 2);
}

// Q4_0 block (18 B): d f16 | qs[16]. Element j in the low nibble of qs[j], element j+16 in the high nibble.
void dequant_q4_0(const uint8_t* b, float* y) {
    const float d = read_f16(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
        y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
}

// Q4_1 block (20 B): d f16 | m f16 | qs[16]. y = q*d + m (the min is added).
void dequant_q4_1(const uint8_t* b, float* y) {
    const float d = read_f16(b);
    const float m = read_f16(b + 2);
    const uint8_t* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
        y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
}

// Q5_0 block (22 B): d f16 | qh[4] (u32 LE, bit j = 5th bit of element j) | qs[16] as in Q4_0. y = (q - 16)*d.
void dequant_q5_0(const uint8_t* b, float* y) {
    const float d = read_f16(b);
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    const uint8_t* qs = b + 6;
    for (int j = 0; j < 16; ++j) {
        const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
        const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
        y[j] = static_cast<float>(lo - 16) * d;
        y[j + 16] = static_cast<float>(hi - 16) * d;
    }
}

// Q5_1 block (24 B): d f16 | m f16 | qh[4] | qs[16]. y = q*d + m.
void dequant_q5_1(const uint8_t* b, float* y) {
    const float d = read_f16(b);
    const float m = read_f16(b + 2);
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    const uint8_t* qs = b + 8;
    for (int j = 0; j < 16; ++j) {
        const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
        const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
        y[j] = static_cast<float>(lo) * d + m;
        y[j + 16] = static_cast<float>(hi) * d + m;
    }
}

// Q8_0 block (34 B): d f16 | int8 qs[32]. y = q*d.
void dequant_q8_0(const uint8_t* b, float* y) {
    const float d = read_f16(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// The 12 `scales` bytes of Q4_K/Q5_K hold 8 six-bit scales and 8 six-bit mins:
//   s < 4:  sc = scales[s] & 63,                                 mn = scales[s+4] & 63
//   s >= 4: sc = (scales[s+4] & 15) | (scales[s-4] >> 6) << 4,   mn = (scales[s+4] >> 4) | (scales[s] >> 6) << 4
inline void k_scale_min(int s, const uint8_t* scales, uint8_t* sc, uint8_t* mn) {
    if (s < 4) {
        *sc = scales[s] & 63;
        *mn = scales[s + 4] & 63;
    } else {
        *sc = static_cast<uint8_t>((scales[s + 4] & 0x0F) | ((scales[s - 4] >> 6) << 4));
        *mn = static_cast<uint8_t>((scales[s + 4] >> 4) | ((scales[s] >> 6) << 4));
    }
}

// Scale and min of chunk c's two sub-blocks (2c: low nibbles, 2c+1: high nibbles), times the super-block's d, dmin.
inline void k_chunk_scales(int c, float d, float dmin, const uint8_t* scales, float& d1, float& m1, float& d2,
                           float& m2) {
    uint8_t sc, mn;
    k_scale_min(2 * c, scales, &sc, &mn);
    d1 = d * static_cast<float>(sc);
    m1 = dmin * static_cast<float>(mn);
    k_scale_min(2 * c + 1, scales, &sc, &mn);
    d2 = d * static_cast<float>(sc);
    m2 = dmin * static_cast<float>(mn);
}

// Q4_K super-block (144 B, 256 elements): d f16 | dmin f16 | scales[12] | qs[128].
// Four chunks of 64 outputs; chunk c reads qs[32c..32c+31]: low nibbles -> sub-block 2c, high -> 2c+1.
// y = d*sc*q - dmin*mn (the min is subtracted).
void dequant_q4_k(const uint8_t* b, float* y) {
    const float d = read_f16(b);
    const float dmin = read_f16(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qs = b + 16;
    for (int c = 0; c < 4; ++c) {
        float d1, m1, d2, m2;
        k_chunk_scales(c, d, dmin, scales, d1, m1, d2, m2);
        const uint8_t* q = qs + 32 * c;
        float* out = y + 64 * c;
        for (int l = 0; l < 32; ++l) out[l] = d1 * static_cast<float>(q[l] & 0x0F) - m1;
        for (int l = 0; l < 32; ++l) out[32 + l] = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
}

// Q5_K super-block (176 B): d f16 | dmin f16 | scales[12] | qh[32] | qs[128]. As Q4_K, plus a 5th bit:
// in chunk c, bit 2c of qh[l] adds 16 to the low-nibble value, bit 2c+1 to the high-nibble value.
void dequant_q5_k(const uint8_t* b, float* y) {
    const float d = read_f16(b);
    const float dmin = read_f16(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + 48;
    for (int c = 0; c < 4; ++c) {
        float d1, m1, d2, m2;
        k_chunk_scales(c, d, dmin, scales, d1, m1, d2, m2);
        const uint8_t* q = qs + 32 * c;
        float* out = y + 64 * c;
        for (int l = 0; l < 32; ++l) {
            const int v = (q[l] & 0x0F) + (((qh[l] >> (2 * c)) & 1) << 4);
            out[l] = d1 * static_cast<float>(v) - m1;
        }
        for (int l = 0; l < 32; ++l) {
            const int v = (q[l] >> 4) + (((qh[l] >> (2 * c + 1)) & 1) << 4);
            out[32 + l] = d2 * static_cast<float>(v) - m2;
        }
    }
}

// Q6_K super-block (210 B): ql[128] (low 4 bits) | qh[64] (high 2 bits) | int8 scales[16] | d f16 (d is LAST).
// Two halves of 128 outputs; in half h, for l < 32 (is = l/16), four outputs share ql/qh bytes:
//   y[l]    <- ql[l] & 15,    qh[l] bits 0-1, scale sc[is]
//   y[l+32] <- ql[l+32] & 15, qh[l] bits 2-3, scale sc[is+2]
//   y[l+64] <- ql[l] >> 4,    qh[l] bits 4-5, scale sc[is+4]
//   y[l+96] <- ql[l+32] >> 4, qh[l] bits 6-7, scale sc[is+6]
// each value is d * sc * (q6 - 32).
void dequant_q6_k(const uint8_t* b, float* y) {
    const float d = read_f16(b + 208);
    for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = b + 64 * h;
        const uint8_t* qh = b + 128 + 32 * h;
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192 + 8 * h);
        float* out = y + 128 * h;
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            out[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
            out[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
            out[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
            out[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
        }
    }
}

template <typename BlockFn>
void dequant_blocks(BlockFn fn, const uint8_t* src, float* dst, int64_t n, int64_t qk, int64_t bytes) {
    const int64_t nb = n / qk;
    for (int64_t i = 0; i < nb; ++i) fn(src + i * bytes, dst + i * qk);
}

}  // namespace

void dequantize_row(GgmlType t, const void* src_v, float* dst, int64_t n) {
    const uint8_t* src = static_cast<const uint8_t*>(src_v);
    const TypeTraits& tr = traits(t);
    switch (t) {
    case GgmlType::F32:
        std::memcpy(dst, src, static_cast<size_t>(n) * 4);
        return;
    case GgmlType::F16:
        for (int64_t i = 0; i < n; ++i) dst[i] = read_f16(src + 2 * i);
        return;
    case GgmlType::BF16:
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, src + 2 * i, 2);
            dst[i] = bf16_to_fp32(h);
        }
        return;
    case GgmlType::Q4_0: dequant_blocks(dequant_q4_0, src, dst, n, tr.block_size, tr.block_bytes); return;
    case GgmlType::Q4_1: dequant_blocks(dequant_q4_1, src, dst, n, tr.block_size, tr.block_bytes); return;
    case GgmlType::Q5_0: dequant_blocks(dequant_q5_0, src, dst, n, tr.block_size, tr.block_bytes); return;
    case GgmlType::Q5_1: dequant_blocks(dequant_q5_1, src, dst, n, tr.block_size, tr.block_bytes); return;
    case GgmlType::Q8_0: dequant_blocks(dequant_q8_0, src, dst, n, tr.block_size, tr.block_bytes); return;
    case GgmlType::Q4_K: dequant_blocks(dequant_q4_k, src, dst, n, tr.block_size, tr.block_bytes); return;
    case GgmlType::Q5_K: dequant_blocks(dequant_q5_k, src, dst, n, tr.block_size, tr.block_bytes); return;
    case GgmlType::Q6_K: dequant_blocks(dequant_q6_k, src, dst, n, tr.block_size, tr.block_bytes); return;
    }
}

// ------------------------------------------------------------------------------------------------ encoders
// These reproduce ggml's quantize_row_*_ref rounding exactly (the scale is computed in float, the stored f16 scale
// is its rounding, and the quants are computed with the unrounded reciprocal), so our files match llama-quantize's.

namespace {

inline float clampf(float v, float lo, float hi) { return std::fminf(std::fmaxf(v, lo), hi); }

// Q8_0: d = amax/127, q = round-half-away(x/d) computed as x * (1/d).
void quant_q8_0(const float* x, uint8_t* b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    write_f16(b, d);
    int8_t* qs = reinterpret_cast<int8_t*>(b + 2);
    // the clamp only matters for non-finite input (where ggml's cast is undefined); fmaxf maps nan to the bound
    for (int j = 0; j < 32; ++j) qs[j] = static_cast<int8_t>(std::roundf(clampf(x[j] * id, -127.0f, 127.0f)));
}

// Q4_0: d = max/-8 where max is the signed element of largest magnitude (first one on ties), so that element maps
// to q=0 exactly; q = min(15, trunc(x/d + 8.5)).
void quant_q4_0(const float* x, uint8_t* b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    write_f16(b, d);
    uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        // truncating a value clamped to [0, 15] equals ggml's min(15, (int8)v) for every finite v >= 0
        const int lo = static_cast<int>(clampf(x[j] * id + 8.5f, 0.0f, 15.0f));
        const int hi = static_cast<int>(clampf(x[j + 16] * id + 8.5f, 0.0f, 15.0f));
        qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
}

// Q4_1: d = (max-min)/15, m = min, q = min(15, trunc((x-min)/d + 0.5)).
void quant_q4_1(const float* x, uint8_t* b) {
    float mn = std::numeric_limits<float>::max(), mx = -std::numeric_limits<float>::max();
    for (int j = 0; j < 32; ++j) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
    }
    const float d = (mx - mn) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    write_f16(b, d);
    write_f16(b + 2, mn);
    uint8_t* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
        const int lo = static_cast<int>(clampf((x[j] - mn) * id + 0.5f, 0.0f, 15.0f));
        const int hi = static_cast<int>(clampf((x[j + 16] - mn) * id + 0.5f, 0.0f, 15.0f));
        qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
}

}  // namespace

void scale_block(GgmlType t, void* block, float s) {
    uint8_t* b = static_cast<uint8_t*>(block);
    auto scale_f16 = [&](size_t offset) { write_f16(b + offset, read_f16(b + offset) * s); };
    switch (t) {
        case GgmlType::F32: {
            float v;
            std::memcpy(&v, b, 4);
            v *= s;
            std::memcpy(b, &v, 4);
            return;
        }
        case GgmlType::F16: return scale_f16(0);
        case GgmlType::BF16: {
            uint16_t h;
            std::memcpy(&h, b, 2);
            h = fp32_to_bf16(bf16_to_fp32(h) * s);
            std::memcpy(b, &h, 2);
            return;
        }
        case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0:  // y = q * d
            return scale_f16(0);
        case GgmlType::Q4_1: case GgmlType::Q5_1:  // y = q * d + m
        case GgmlType::Q4_K: case GgmlType::Q5_K:  // y = d * sc * q - dmin * mn
            scale_f16(0);
            return scale_f16(2);
        case GgmlType::Q6_K:  // ql[128] qh[64] scales[16] | d f16 at 208: y = d * sc * q
            return scale_f16(208);
    }
}

bool quantize_row(GgmlType t, const float* src, void* dst_v, int64_t n) {
    uint8_t* dst = static_cast<uint8_t*>(dst_v);
    switch (t) {
    case GgmlType::F32:
        std::memcpy(dst, src, static_cast<size_t>(n) * 4);
        return true;
    case GgmlType::F16:
        for (int64_t i = 0; i < n; ++i) write_f16(dst + 2 * i, src[i]);
        return true;
    case GgmlType::BF16:
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = fp32_to_bf16(src[i]);
            std::memcpy(dst + 2 * i, &h, 2);
        }
        return true;
    case GgmlType::Q8_0:
        for (int64_t i = 0; i < n / 32; ++i) quant_q8_0(src + 32 * i, dst + 34 * i);
        return true;
    case GgmlType::Q4_0:
        for (int64_t i = 0; i < n / 32; ++i) quant_q4_0(src + 32 * i, dst + 18 * i);
        return true;
    case GgmlType::Q4_1:
        for (int64_t i = 0; i < n / 32; ++i) quant_q4_1(src + 32 * i, dst + 20 * i);
        return true;
    default:
        return false;
    }
}

}  // namespace hs

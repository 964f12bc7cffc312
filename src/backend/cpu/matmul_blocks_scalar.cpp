// backend/cpu/matmul_blocks_scalar.cpp: the portable GEMV dot kernels, the reference for every SIMD variant.
//
// Written for clarity, not speed: each block is decoded to its signed integer values (the offsets -8/-16/-32 and
// the mins applied directly, not through the activation sums the SIMD kernels use), and dotted with the int8
// activations. The integer sums therefore equal the SIMD kernels' exactly when both are right; only the float
// accumulation order differs. Everything here has internal linkage (see matmul_blocks_kernels.hpp).
#include <cstring>

#include "backend/cpu/matmul_blocks_kernels.hpp"
#include "gguf/quant.hpp"

namespace hs::cpu::detail {
namespace {

inline float f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return fp16_to_fp32(h);
}

float dot_f32(const uint8_t* w, int64_t cols, const XRow& x) {
    float s = 0.0f;
    for (int64_t i = 0; i < cols; ++i) {
        float v;
        std::memcpy(&v, w + 4 * i, 4);
        s += v * x.f[i];
    }
    return s;
}

float dot_f16(const uint8_t* w, int64_t cols, const XRow& x) {
    float s = 0.0f;
    for (int64_t i = 0; i < cols; ++i) s += f16(w + 2 * i) * x.f[i];
    return s;
}

float dot_bf16(const uint8_t* w, int64_t cols, const XRow& x) {
    float s = 0.0f;
    for (int64_t i = 0; i < cols; ++i) {
        uint16_t h;
        std::memcpy(&h, w + 2 * i, 2);
        s += bf16_to_fp32(h) * x.f[i];
    }
    return s;
}

// Signed integer values of one 32-element block; the min (Q4_1/Q5_1) is returned separately.
int dot_i8(const int* q, const int8_t* x, int n) {
    int s = 0;
    for (int j = 0; j < n; ++j) s += q[j] * x[j];
    return s;
}
int sum_i8(const int8_t* x, int n) {
    int s = 0;
    for (int j = 0; j < n; ++j) s += x[j];
    return s;
}

float dot_q4_0(const uint8_t* w, int64_t cols, const XRow& x) {
    float s = 0.0f;
    for (int64_t b = 0; b < cols / 32; ++b, w += 18) {
        int q[32];
        for (int j = 0; j < 16; ++j) {
            q[j] = (w[2 + j] & 0x0F) - 8;
            q[j + 16] = (w[2 + j] >> 4) - 8;
        }
        s += f16(w) * x.d32[b] * static_cast<float>(dot_i8(q, x.qs + 32 * b, 32));
    }
    return s;
}

float dot_q4_1(const uint8_t* w, int64_t cols, const XRow& x) {
    float s = 0.0f;
    for (int64_t b = 0; b < cols / 32; ++b, w += 20) {
        int q[32];
        for (int j = 0; j < 16; ++j) {
            q[j] = w[4 + j] & 0x0F;
            q[j + 16] = w[4 + j] >> 4;
        }
        const int8_t* xq = x.qs + 32 * b;
        s += f16(w) * x.d32[b] * static_cast<float>(dot_i8(q, xq, 32)) +
             f16(w + 2) * x.d32[b] * static_cast<float>(sum_i8(xq, 32));
    }
    return s;
}

void q5_values(const uint8_t* qh4, const uint8_t* qs, int off, int* q) {
    uint32_t qh;
    std::memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; ++j) {
        q[j] = ((qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4)) - off;
        q[j + 16] = ((qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4)) - off;
    }
}

float dot_q5_0(const uint8_t* w, int64_t cols, const XRow& x) {
    float s = 0.0f;
    for (int64_t b = 0; b < cols / 32; ++b, w += 22) {
        int q[32];
        q5_values(w + 2, w + 6, 16, q);
        s += f16(w) * x.d32[b] * static_cast<float>(dot_i8(q, x.qs + 32 * b, 32));
    }
    return s;
}

float dot_q5_1(const uint8_t* w, int64_t cols, const XRow& x) {
    float s = 0.0f;
    for (int64_t b = 0; b < cols / 32; ++b, w += 24) {
        int q[32];
        q5_values(w + 4, w + 8, 0, q);
        const int8_t* xq = x.qs + 32 * b;
        s += f16(w) * x.d32[b] * static_cast<float>(dot_i8(q, xq, 32)) +
             f16(w + 2) * x.d32[b] * static_cast<float>(sum_i8(xq, 32));
    }
    return s;
}

float dot_q8_0(const uint8_t* w, int64_t cols, const XRow& x) {
    float s = 0.0f;
    for (int64_t b = 0; b < cols / 32; ++b, w += 34) {
        int q[32];
        for (int j = 0; j < 32; ++j) q[j] = static_cast<int8_t>(w[2 + j]);
        s += f16(w) * x.d32[b] * static_cast<float>(dot_i8(q, x.qs + 32 * b, 32));
    }
    return s;
}

// The 6-bit scale and min of sub-block s (0..7) of a Q4_K/Q5_K super-block.
void k_scale_min(int s, const uint8_t* scales, int* sc, int* mn) {
    if (s < 4) {
        *sc = scales[s] & 63;
        *mn = scales[s + 4] & 63;
    } else {
        *sc = (scales[s + 4] & 0x0F) | ((scales[s - 4] >> 6) << 4);
        *mn = (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4);
    }
}

// Q4_K / Q5_K: value = d*sc*q - dmin*mn per 32-element sub-block; qh is null for Q4_K.
float dot_qk45(const uint8_t* w, int64_t cols, const XRow& x, bool five) {
    const int64_t stride = five ? 176 : 144;
    float s = 0.0f;
    for (int64_t i = 0; i < cols / 256; ++i, w += stride) {
        const float d = f16(w), dmin = f16(w + 2);
        const uint8_t* scales = w + 4;
        const uint8_t* qh = five ? w + 16 : nullptr;
        const uint8_t* qs = w + (five ? 48 : 16);
        const int8_t* xq = x.qs + 256 * i;
        int sumi = 0, summ = 0;
        for (int sb = 0; sb < 8; ++sb) {
            const int c = sb / 2;
            const bool high = sb & 1;
            int q[32];
            for (int l = 0; l < 32; ++l) {
                const uint8_t byte = qs[32 * c + l];
                q[l] = high ? byte >> 4 : byte & 0x0F;
                if (qh) q[l] += ((qh[l] >> sb) & 1) << 4;
            }
            int sc, mn;
            k_scale_min(sb, scales, &sc, &mn);
            sumi += sc * dot_i8(q, xq + 32 * sb, 32);
            summ += mn * sum_i8(xq + 32 * sb, 32);
        }
        s += d * x.dk[i] * static_cast<float>(sumi) - dmin * x.dk[i] * static_cast<float>(summ);
    }
    return s;
}
float dot_q4_k(const uint8_t* w, int64_t cols, const XRow& x) { return dot_qk45(w, cols, x, false); }
float dot_q5_k(const uint8_t* w, int64_t cols, const XRow& x) { return dot_qk45(w, cols, x, true); }

float dot_q6_k(const uint8_t* w, int64_t cols, const XRow& x) {
    float s = 0.0f;
    for (int64_t i = 0; i < cols / 256; ++i, w += 210) {
        int q[256];
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = w + 64 * h;
            const uint8_t* qh = w + 128 + 32 * h;
            int* o = q + 128 * h;
            for (int l = 0; l < 32; ++l) {
                o[l] = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                o[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                o[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                o[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            }
        }
        const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
        int sumi = 0;
        for (int g = 0; g < 16; ++g) sumi += sc[g] * dot_i8(q + 16 * g, x.qs + 256 * i + 16 * g, 16);
        s += f16(w + 208) * x.dk[i] * static_cast<float>(sumi);
    }
    return s;
}

constexpr GemvKernels kScalar = {{dot_f32, dot_f16, dot_bf16, dot_q4_0, dot_q4_1, dot_q5_0, dot_q5_1, dot_q8_0,
                                  dot_q4_k, dot_q5_k, dot_q6_k},
                                 {},
                                 {},
                                 {}};

}  // namespace

const GemvKernels* gemv_kernels_scalar() { return &kScalar; }

}  // namespace hs::cpu::detail

// backend/cpu/matmul_blocks_avx2.cpp: the AVX2 + FMA + F16C GEMV dot kernels (compiled with -march=x86-64-v3, see
// CMakeLists.txt). One 32-element block per 256-bit register: unsigned weights x signed int8 activations through
// vpmaddubsw (pairs to int16; no saturation: |w| <= 128 or <= 63 here, |x| <= 127) and vpmaddwd (to int32). The
// offsets of Q4_0/Q5_0/Q6_K are subtracted through the activation sums, Q8_0 uses the sign trick (|w| and x with w's
// sign). Everything has internal linkage (see matmul_blocks_kernels.hpp).
#include "backend/cpu/matmul_blocks_kernels.hpp"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define HS_HAVE_AVX2_KERNELS 1
#include <immintrin.h>

#include <cstring>

#include "gguf/quant.hpp"

namespace hs::cpu::detail {
namespace {

inline float f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// 8 int32: sums of 4 products u (unsigned bytes) x s (signed bytes).
inline __m256i dot_us(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// The 16 packed nibbles of a Q4/Q5 block as 32 bytes in element order: low nibbles, then high nibbles.
inline __m256i nibbles32(const uint8_t* qs) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

// 0x10 in byte j where bit j of the 32-bit little-endian qh is set (the 5th bit of a Q5 block).
inline __m256i fifth_bits32(const uint8_t* qh4) {
    uint32_t x32;
    std::memcpy(&x32, qh4, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x32)), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// lane 0 of an otherwise zero vector
inline __m256i lane0(int v) { return _mm256_zextsi128_si256(_mm_cvtsi32_si128(v)); }

// ---------------------------------------------------------------- float types

float dot_f32(const uint8_t* w, int64_t cols, const XRow& x) {
    const float* wf = reinterpret_cast<const float*>(w);  // F32 rows: memory-mapped tensor data is 4-aligned
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= cols; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wf + i), _mm256_loadu_ps(x.f + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wf + i + 8), _mm256_loadu_ps(x.f + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < cols; ++i) s += wf[i] * x.f[i];
    return s;
}

float dot_f16(const uint8_t* w, int64_t cols, const XRow& x) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= cols; i += 16) {
        const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * i)));
        const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * i + 16)));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x.f + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.f + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < cols; ++i) s += f16(w + 2 * i) * x.f[i];
    return s;
}

inline __m256 bf16x8(const uint8_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

float dot_bf16(const uint8_t* w, int64_t cols, const XRow& x) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= cols; i += 16) {
        a0 = _mm256_fmadd_ps(bf16x8(w + 2 * i), _mm256_loadu_ps(x.f + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(w + 2 * i + 16), _mm256_loadu_ps(x.f + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < cols; ++i) {
        uint16_t h;
        std::memcpy(&h, w + 2 * i, 2);
        s += bf16_to_fp32(h) * x.f[i];
    }
    return s;
}

// ---------------------------------------------------------------- 32-element blocks

float dot_q4_0(const uint8_t* w, int64_t cols, const XRow& x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; ++b, w += 18) {
        __m256i p = dot_us(nibbles32(w + 2), load256(x.qs + 32 * b));
        p = _mm256_sub_epi32(p, lane0(8 * x.s32[b]));  // (q - 8) . x
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w) * x.d32[b]), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

float dot_q4_1(const uint8_t* w, int64_t cols, const XRow& x) {
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t b = 0; b < cols / 32; ++b, w += 20) {
        const __m256i p = dot_us(nibbles32(w + 4), load256(x.qs + 32 * b));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w) * x.d32[b]), _mm256_cvtepi32_ps(p), acc);
        mins += f16(w + 2) * x.d32[b] * static_cast<float>(x.s32[b]);
    }
    return hsum(acc) + mins;
}

float dot_q5_0(const uint8_t* w, int64_t cols, const XRow& x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; ++b, w += 22) {
        const __m256i q = _mm256_or_si256(nibbles32(w + 6), fifth_bits32(w + 2));
        __m256i p = dot_us(q, load256(x.qs + 32 * b));
        p = _mm256_sub_epi32(p, lane0(16 * x.s32[b]));  // (q - 16) . x
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w) * x.d32[b]), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

float dot_q5_1(const uint8_t* w, int64_t cols, const XRow& x) {
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t b = 0; b < cols / 32; ++b, w += 24) {
        const __m256i q = _mm256_or_si256(nibbles32(w + 8), fifth_bits32(w + 4));
        const __m256i p = dot_us(q, load256(x.qs + 32 * b));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w) * x.d32[b]), _mm256_cvtepi32_ps(p), acc);
        mins += f16(w + 2) * x.d32[b] * static_cast<float>(x.s32[b]);
    }
    return hsum(acc) + mins;
}

float dot_q8_0(const uint8_t* w, int64_t cols, const XRow& x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; ++b, w += 34) {
        const __m256i q = load256(w + 2);
        const __m256i p = dot_us(_mm256_sign_epi8(q, q), _mm256_sign_epi8(load256(x.qs + 32 * b), q));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w) * x.d32[b]), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

// ---------------------------------------------------------------- K-quants (256-element super-blocks)

// The 6-bit scales and mins of a Q4_K/Q5_K super-block.
inline void k_scales_mins(const uint8_t* scales, int* sc, int* mn) {
    for (int s = 0; s < 4; ++s) {
        sc[s] = scales[s] & 63;
        mn[s] = scales[s + 4] & 63;
    }
    for (int s = 4; s < 8; ++s) {
        sc[s] = (scales[s + 4] & 0x0F) | ((scales[s - 4] >> 6) << 4);
        mn[s] = (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4);
    }
}

template <bool kFive>
float dot_qk45(const uint8_t* w, int64_t cols, const XRow& x) {
    constexpr int64_t kStride = kFive ? 176 : 144;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float s = 0.0f;
    for (int64_t i = 0; i < cols / 256; ++i, w += kStride) {
        int sc[8], mn[8];
        k_scales_mins(w + 4, sc, mn);
        const uint8_t* qs = w + (kFive ? 48 : 16);
        const int8_t* xq = x.qs + 256 * i;
        __m256i qh = kFive ? load256(w + 16) : _mm256_setzero_si256();
        __m256i acc = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
            const __m256i q = load256(qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (kFive) {
                const __m256i one = _mm256_set1_epi8(1);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qh, one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4));
                qh = _mm256_srli_epi16(qh, 2);
            }
            const __m256i plo = _mm256_maddubs_epi16(lo, load256(xq + 64 * c));
            const __m256i phi = _mm256_maddubs_epi16(hi, load256(xq + 64 * c + 32));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(plo, _mm256_set1_epi16(static_cast<int16_t>(sc[2 * c]))));
            acc = _mm256_add_epi32(acc,
                                   _mm256_madd_epi16(phi, _mm256_set1_epi16(static_cast<int16_t>(sc[2 * c + 1]))));
        }
        int summ = 0;
        for (int sb = 0; sb < 8; ++sb) summ += mn[sb] * (x.bsums[16 * i + 2 * sb] + x.bsums[16 * i + 2 * sb + 1]);
        s += f16(w) * x.dk[i] * static_cast<float>(hsum_i32(acc)) - f16(w + 2) * x.dk[i] * static_cast<float>(summ);
    }
    return s;
}
float dot_q4_k(const uint8_t* w, int64_t cols, const XRow& x) { return dot_qk45<false>(w, cols, x); }
float dot_q5_k(const uint8_t* w, int64_t cols, const XRow& x) { return dot_qk45<true>(w, cols, x); }

float dot_q6_k(const uint8_t* w, int64_t cols, const XRow& x) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    float s = 0.0f;
    for (int64_t i = 0; i < cols / 256; ++i, w += 210) {
        const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
        const int8_t* xq = x.qs + 256 * i;
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = load256(w + 64 * h), ql1 = load256(w + 64 * h + 32);
            const __m256i qh = load256(w + 128 + 32 * h);
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)),
            };
            for (int k = 0; k < 4; ++k) {
                const int g = 8 * h + 2 * k;  // the two 16-element groups of this quarter
                const __m256i p = _mm256_maddubs_epi16(q[k], load256(xq + 128 * h + 32 * k));
                const __m256i scv = _mm256_setr_m128i(_mm_set1_epi16(sc[g]), _mm_set1_epi16(sc[g + 1]));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scv));
            }
        }
        int corr = 0;  // q6 - 32: subtract 32 * sum_g sc[g] * bsums[g]
        for (int g = 0; g < 16; ++g) corr += sc[g] * x.bsums[16 * i + g];
        s += f16(w + 208) * x.dk[i] * static_cast<float>(hsum_i32(acc) - 32 * corr);
    }
    return s;
}

// ---------------------------------------------------------------- decoders (the SGEMM path's tiles)

// 8 floats: q * d (q 8 int32), and q * d + m.
inline void put8(float* y, __m256i q, float d) { _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_set1_ps(d))); }
inline void put8_min(float* y, __m256i q, float d, float m) {
    _mm256_storeu_ps(y, _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_set1_ps(d), _mm256_set1_ps(m)));
}
// bytes [0, 8) and [8, 16) of v as int32
inline __m256i u8lo(__m128i v) { return _mm256_cvtepu8_epi32(v); }
inline __m256i u8hi(__m128i v) { return _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)); }
// 16 in the lanes whose bit (0-7) is set
inline __m256i bits8(uint32_t b) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i hit = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(b)), sel), sel);
    return _mm256_and_si256(hit, _mm256_set1_epi32(16));
}

// The 32 values of a Q4/Q5 block (qs: 16 packed bytes; qh: the 32 5th bits, 0 for Q4) as 4 x 8 int32.
inline void values32(const uint8_t* qs, uint32_t qh, __m256i v[4]) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)), m4 = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(t, m4), hi = _mm_and_si128(_mm_srli_epi16(t, 4), m4);
    v[0] = _mm256_add_epi32(u8lo(lo), bits8(qh & 0xFF));
    v[1] = _mm256_add_epi32(u8hi(lo), bits8((qh >> 8) & 0xFF));
    v[2] = _mm256_add_epi32(u8lo(hi), bits8((qh >> 16) & 0xFF));
    v[3] = _mm256_add_epi32(u8hi(hi), bits8(qh >> 24));
}

template <int kBytes, int kQs, int kQh, int kOffset, bool kMin>
void decode_q45(const uint8_t* b, float* y, int64_t n) {
    for (int64_t k = 0; k < n / 32; ++k, b += kBytes, y += 32) {
        uint32_t qh = 0;
        if (kQh >= 0) std::memcpy(&qh, b + kQh, 4);
        __m256i v[4];
        values32(b + kQs, qh, v);
        const float d = f16(b);
        for (int j = 0; j < 4; ++j) {
            if (kMin)
                put8_min(y + 8 * j, v[j], d, f16(b + 2));
            else
                put8(y + 8 * j, _mm256_sub_epi32(v[j], _mm256_set1_epi32(kOffset)), d);
        }
    }
}

void decode_q8_0(const uint8_t* b, float* y, int64_t n) {
    for (int64_t k = 0; k < n / 32; ++k, b += 34, y += 32)
        for (int j = 0; j < 4; ++j)
            put8(y + 8 * j, _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + 8 * j))), f16(b));
}

void decode_f16(const uint8_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
    for (; i < n; ++i) dst[i] = f16(src + 2 * i);
}

// Q4_K / Q5_K (see matmul_blocks_avx512.inc's decoder and gguf/quant.cpp)
template <bool kFive>
void decode_qk45(const uint8_t* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / 256; ++i, b += kFive ? 176 : 144, y += 256) {
        const float d = f16(b), dmin = f16(b + 2);
        int sc[8], mn[8];
        k_scales_mins(b + 4, sc, mn);
        const uint8_t* qh = b + 16;
        const uint8_t* qs = b + (kFive ? 48 : 16);
        for (int s = 0; s < 8; ++s) {
            const __m256 ds = _mm256_set1_ps(d * static_cast<float>(sc[s])), ms = _mm256_set1_ps(dmin * static_cast<float>(mn[s]));
            const uint8_t* q = qs + 32 * (s / 2);
            for (int j = 0; j < 4; ++j) {
                const __m128i t = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * j));
                __m256i v = _mm256_cvtepu8_epi32(_mm_and_si128(s & 1 ? _mm_srli_epi16(t, 4) : t, _mm_set1_epi8(0x0F)));
                if (kFive) {
                    const __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qh + 8 * j)));
                    v = _mm256_add_epi32(v, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, s), _mm256_set1_epi32(1)), 4));
                }
                _mm256_storeu_ps(y + 32 * s + 8 * j, _mm256_fmsub_ps(ds, _mm256_cvtepi32_ps(v), ms));
            }
        }
    }
}

void decode_q6_k(const uint8_t* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / 256; ++i, b += 210, y += 256) {
        const float d = f16(b + 208);
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = b + 64 * h;
            const uint8_t* qh = b + 128 + 32 * h;
            float* out = y + 128 * h;
            for (int l = 0; l < 32; l += 8) {
                const int is = l / 16;
                auto ld8 = [](const uint8_t* p) {
                    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
                };
                const __m256i a = ld8(ql + l), c = ld8(ql + l + 32), hb = ld8(qh + l);
                const __m256i m4 = _mm256_set1_epi32(15), m3 = _mm256_set1_epi32(3), k32 = _mm256_set1_epi32(32);
                auto high = [&](int sh) { return _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hb, sh), m3), 4); };
                put8(out + l, _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a, m4), high(0)), k32),
                     d * static_cast<float>(sc[8 * h + is]));
                put8(out + l + 32, _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(c, m4), high(2)), k32),
                     d * static_cast<float>(sc[8 * h + is + 2]));
                put8(out + l + 64, _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a, 4), high(4)), k32),
                     d * static_cast<float>(sc[8 * h + is + 4]));
                put8(out + l + 96, _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(c, 4), high(6)), k32),
                     d * static_cast<float>(sc[8 * h + is + 6]));
            }
        }
    }
}

// F32 and BF16 tiles decode with dequantize_row (a copy and a shift, which the compiler vectorises).
constexpr GemvKernels kAvx2 = {{dot_f32, dot_f16, dot_bf16, dot_q4_0, dot_q4_1, dot_q5_0, dot_q5_1, dot_q8_0,
                                dot_q4_k, dot_q5_k, dot_q6_k},
                               {nullptr, decode_f16, nullptr, decode_q45<18, 2, -1, 8, false>,
                                decode_q45<20, 4, -1, 0, true>, decode_q45<22, 6, 2, 16, false>,
                                decode_q45<24, 8, 4, 0, true>, decode_q8_0, decode_qk45<false>, decode_qk45<true>,
                                decode_q6_k},
                               {},
                               {}};

}  // namespace

const GemvKernels* gemv_kernels_avx2() { return &kAvx2; }

}  // namespace hs::cpu::detail

#else

namespace hs::cpu::detail {
const GemvKernels* gemv_kernels_avx2() { return nullptr; }
}  // namespace hs::cpu::detail

#endif

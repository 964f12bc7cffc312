// backend/cpu/matmul_blocks_kernels.hpp: the per-instruction-set GEMV dot kernels behind matmul_blocks (internal).
//
// Each variant lives in its own translation unit compiled for its instruction set (matmul_blocks_scalar.cpp,
// matmul_blocks_avx2.cpp, matmul_blocks_avx512.cpp, matmul_blocks_avx512_vnni.cpp) with every helper in an anonymous
// namespace, so that no inline function or template instantiation built for AVX-512 can be merged by the linker into
// code that a lesser CPU runs. Only the table accessors below have external linkage; they are plain functions
// that return a pointer to a constant table and execute no vector instruction themselves.
#pragma once

#include <cstdint>

namespace hs::cpu::detail {

// One input row as the dot kernels read it. `f` is the fp32 row (for F32/F16/BF16 weights). The 32-element types
// read the Q8_0-style quantisation: qs[cols] int8, d32[cols/32] the block scales (fp16-rounded, as ggml stores
// them), s32[cols/32] the sum of each block's qs. The K-quants read the Q8_K quantisation: qs[cols] int8,
// dk[cols/256] float scales, bsums[cols/16] the sums of each 16 qs. qs is 64-byte aligned; a row holds only the
// quantisation its weight type needs (the others are null).
struct XRow {
    const float* f = nullptr;
    const int8_t* qs = nullptr;
    const float* d32 = nullptr;
    const int32_t* s32 = nullptr;
    const float* dk = nullptr;
    const int16_t* bsums = nullptr;
    // Prefill only (n >= kGemmMinRows, 32-element types): qs again, regrouped for the 4 x 4 tiles: per group of 16
    // blocks (512 bytes, the last group zero-padded to 16 blocks), 8 runs of 64 bytes, run c holding elements
    // 4c..4c+3 of block 0, then of block 1, ... block 15; so that int32 lane b of a 512-bit product belongs to
    // block b. 64-byte aligned.
    const int8_t* qt = nullptr;
};

// y = dot(W row `w` (cols elements in the table's type), x).
using DotFn = float (*)(const uint8_t* w, int64_t cols, const XRow& x);

// Indexed by DotType.
enum DotType : int { DT_F32, DT_F16, DT_BF16, DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q8_0, DT_Q4_K, DT_Q5_K, DT_Q6_K,
                     DT_COUNT };

// dst[0..n) = decode(src), n a multiple of the type's block size: the same values as gguf's dequantize_row up to
// the rounding of one fused multiply-add (whether the compiler contracted the scalar code or not).
using DecodeFn = void (*)(const uint8_t* src, float* dst, int64_t n);

// y[0..4) = the dots of the 4 W rows at w, w + row_bytes, w + 2 row_bytes, w + 3 row_bytes with x: one pass over
// x for four rows (the activation loads, the per-block scale work and the final reductions shared). Each y[r]
// equals dot(w + r row_bytes, cols, x) bit for bit, so the grouping of rows never changes a result.
using Dot4Fn = void (*)(const uint8_t* w, uint64_t row_bytes, int64_t cols, const XRow& x, float* y);

// The int8 prefill tile: y[4 i + r] (i, r < 4) = the dot of W row r (at w + r row_bytes) with input row x[i]: four
// weight rows against four input rows in one pass, each weight pair decoded once for the four inputs and each
// input load shared by the four rows. Equal to dot() up to the order of the float sums (the integer block sums are
// the same), not bit for bit.
using Dot4x4Fn = void (*)(const uint8_t* w, uint64_t row_bytes, int64_t cols, const XRow* x, float* y);

struct GemvKernels {
    DotFn dot[DT_COUNT];
    DecodeFn decode[DT_COUNT];  // null where a variant has no decoder of its own (dequantize_row is used)
    Dot4Fn dot4[DT_COUNT];      // null where a variant has no 4-row kernel for the type (dot is called per row)
    Dot4x4Fn dot4x4[DT_COUNT];  // null where a variant has no 4 x 4 tile for the type (dot4 per input row instead)
};

const GemvKernels* gemv_kernels_scalar();
const GemvKernels* gemv_kernels_avx2();         // null when the build has no x86 AVX2 variant
const GemvKernels* gemv_kernels_avx512();       // null when the build has no AVX-512 variant
const GemvKernels* gemv_kernels_avx512_vnni();  // null when the build has no AVX-512-VNNI variant

}  // namespace hs::cpu::detail

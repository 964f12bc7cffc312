// backend/cpu/matmul_blocks.hpp: matrix products with weights kept at the GGUF file's own precision (issue 16).
//
// A weight matrix W [rows = out][cols = in] is stored row by row in ggml blocks of one type (Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q4_K, Q5_K, Q6_K; or BF16/F16/F32 elements), each row ggml_row_bytes(type, cols) bytes, exactly as in the
// file. Two strategies, chosen by the number of input rows n:
//   - n small (decode, n < kGemmMinRows): a GEMV per input row. Activations are quantised to 8 bits per block
//     (Q8_0 for the 32-element types, Q8_K for the K-quants, as ggml does) and dotted with integer instructions;
//     BF16/F16 rows are widened to fp32 and dotted with FMA (no rounding of the activations).
//   - n large (prefill): tiles of W rows are dequantised into a per-thread fp32 buffer and multiplied with the
//     fp32 SGEMM (OpenBLAS). The result equals the f32 path's up to summation order. BF16 weights with fewer than
//     kOnednnMaxRows rows go to oneDNN's bf16 GEMM where KernelOptions::onednn is set (onednn_gemm.hpp). Or, for quantised blocks and
//     short prompts (NativePrefill, below), the decode arithmetic over all rows with 4 x 4 int8 tiles.
// The instruction set is chosen at run time from the CPU's features (best_kernel_isa); a lower one can be forced
// (tests run every variant the machine can execute against the scalar reference).
#pragma once

#include <cstdint>
#include <string>

#include "gguf/quant.hpp"
#include "util/cpu_features.hpp"

namespace hs::cpu {

enum class KernelIsa : uint8_t {
    SCALAR,       // portable C++ (the reference every other variant is tested against)
    AVX2,         // AVX2 + FMA (+ F16C)
    AVX512,       // AVX-512 F/BW/DQ/VL
    AVX512_VNNI,  // AVX-512 + VNNI (vpdpbusd) and, where present, AVX-512-BF16
};
const char* kernel_isa_name(KernelIsa isa);         // "scalar" | "avx2" | "avx512" | "avx512-vnni"
KernelIsa parse_kernel_isa(const std::string& s);   // the names above or "auto"-less; throws hs::Error naming them
KernelIsa best_kernel_isa(const CpuFeatures& cpu);  // the best variant this CPU (and OS) can run
bool can_run_kernel_isa(const CpuFeatures& cpu, KernelIsa isa);

// The weight operand as it sits in memory.
struct BlockMatrix {
    GgmlType type = GgmlType::F32;
    const void* data = nullptr;  // rows * row_bytes bytes
    int64_t rows = 0;            // output features
    int64_t cols = 0;            // input features (a multiple of the type's block size)
    uint64_t row_bytes = 0;      // ggml_row_bytes(type, cols)
};

// Types with native kernels (every GgmlType the reader decodes).
bool has_block_kernels(GgmlType t);

// Input rows from which the dequantise-tile + SGEMM path may be used instead of the integer GEMV.
inline constexpr int64_t kGemmMinRows = 8;

// How products of n >= kGemmMinRows input rows (prefill) multiply quantised blocks (Q4_0 ... Q6_K; F16/BF16/F32
// weights always take the SGEMM path there). The int8 path is the decode arithmetic (8-bit activations, integer
// block dots, as llama.cpp), run over all n rows with 4 x 4 tiles (4 weight rows x 4 input rows) where the ISA has
// them; the f32 path dequantises tiles of W and calls SGEMM (equal to --precision f32 up to summation order).
enum class NativePrefill : uint8_t {
    AUTO,  // INT8 for n below the crossover (kInt8PrefillMaxRows*) where the ISA has a 4 x 4 tile for the type
    INT8,  // always the int8 path
    F32,   // always the f32 path (the behaviour before the int8 path existed); BF16 weights keep off oneDNN too
};
const char* native_prefill_name(NativePrefill p);        // "auto" | "int8" | "f32"
NativePrefill parse_native_prefill(const std::string& s);  // the names above; throws hs::Error naming them
// For labels in output files: "" for F32 (the arithmetic of files written before the option), ", int8 prefill
// below N tokens (M from C columns)" for AUTO, ", int8 prefill" for INT8.
std::string native_prefill_label(NativePrefill p);
// AUTO's crossover: the int8 path below kInt8PrefillMaxRows input rows, or below kInt8PrefillMaxRowsWide for
// matrices of kInt8PrefillWideCols columns or more. Measured (results/precision/native-prefill.md; Xeon Emerald
// Rapids, 2 threads, AVX-512-VNNI, OpenBLAS Cooperlake): on the 8B llama3 Q4_0 matrices (4096 and 14336 columns)
// the int8 tiles are 1.4-2.3x faster than dequantise + SGEMM still at 256 rows; on SmolLM2 (576 and 1536 columns:
// small matrices whose dequantised tiles stay in cache, and a 16-block group of the tiles half empty) the engine's
// prefill is even at ~96 tokens and 0.6-0.8x from 128.
inline constexpr int64_t kInt8PrefillMaxRows = 96;
inline constexpr int64_t kInt8PrefillMaxRowsWide = 256;
inline constexpr int64_t kInt8PrefillWideCols = 2048;

class ThreadPool;      // backend/cpu/thread_pool.hpp
class OnednnBf16Gemm;  // backend/cpu/onednn_gemm.hpp

struct KernelOptions {
    KernelIsa isa = KernelIsa::SCALAR;
    ThreadPool* pool = nullptr;  // the GEMV's and the tile dequantisation's threads; nullptr: the calling thread only
    NativePrefill prefill = NativePrefill::AUTO;
    // BF16 weights, kGemmMinRows <= n < kOnednnMaxRows, prefill not F32: oneDNN's bf16 GEMM (activations rounded to
    // bf16, as ggml's BF16 dot) instead of the fp32 tiles + SGEMM; nullptr: never (no oneDNN in the build, a CPU
    // without bf16 instructions, or off).
    OnednnBf16Gemm* onednn = nullptr;
};

// Whether a product of n input rows with type-t weights of `cols` columns takes the integer (GEMV / int8 tile)
// path under o.
bool uses_int8_path(GgmlType t, int64_t cols, int64_t n, const KernelOptions& o);

// y[n, w.rows] = x[n, w.cols] . W^T  (+ y when accumulate).
void matmul_blocks(const float* x, const BlockMatrix& w, float* y, int64_t n, bool accumulate,
                   const KernelOptions& o);
// One product of matmul_blocks_many: y[n, w.rows] = x . W^T (+ y when accumulate).
struct BlockProduct {
    BlockMatrix w;
    float* y = nullptr;
    bool accumulate = false;
};
// The products of several matrices with one input x[n, cols] (q/k/v, gate/up; every w.cols equal). GEMV path: the
// activations are quantised once per quantisation kind and the rows of all the matrices are one parallel job
// (one wake-up and one join instead of one per matrix); SGEMM path: matmul_blocks per matrix.
void matmul_blocks_many(const float* x, const BlockProduct* products, int count, int64_t n, const KernelOptions& o);
// dx[n, w.cols] = dy[n, w.rows] . W  (+ dx when accumulate): the backward of matmul_blocks (PEAR training).
void matmul_dx_blocks(const float* dy, const BlockMatrix& w, float* dx, int64_t n, bool accumulate,
                      const KernelOptions& o);
// out[0 .. n_rows * w.cols) = decode(W rows row0 .. row0 + n_rows).
void dequantize_rows(const BlockMatrix& w, int64_t row0, int64_t n_rows, float* out);

}  // namespace hs::cpu

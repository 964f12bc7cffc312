// backend/cpu/matmul_blocks.cpp: dispatch, activation quantisation, threading and the dequantise + SGEMM path of
// the native-precision matrix products (see matmul_blocks.hpp; the per-ISA dot kernels are in matmul_blocks_*.cpp).
#include "backend/cpu/matmul_blocks.hpp"

#include <cblas.h>

#include "backend/cpu/onednn_gemm.hpp"
#include "backend/cpu/thread_pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "backend/cpu/matmul_blocks_kernels.hpp"
#include "util/error.hpp"

namespace hs::cpu {

using detail::DotType;
using detail::GemvKernels;
using detail::XRow;

// ------------------------------------------------------------------------------------------------ ISA selection

const char* kernel_isa_name(KernelIsa isa) {
    switch (isa) {
    case KernelIsa::SCALAR: return "scalar";
    case KernelIsa::AVX2: return "avx2";
    case KernelIsa::AVX512: return "avx512";
    case KernelIsa::AVX512_VNNI: return "avx512-vnni";
    }
    return "scalar";
}

KernelIsa parse_kernel_isa(const std::string& s) {
    for (KernelIsa isa : {KernelIsa::SCALAR, KernelIsa::AVX2, KernelIsa::AVX512, KernelIsa::AVX512_VNNI})
        if (s == kernel_isa_name(isa)) return isa;
    fail("unknown kernel instruction set '", s, "' (expected scalar, avx2, avx512 or avx512-vnni)");
}

const char* native_prefill_name(NativePrefill p) {
    switch (p) {
    case NativePrefill::AUTO: return "auto";
    case NativePrefill::INT8: return "int8";
    case NativePrefill::F32: return "f32";
    }
    return "auto";
}

NativePrefill parse_native_prefill(const std::string& s) {
    for (NativePrefill p : {NativePrefill::AUTO, NativePrefill::INT8, NativePrefill::F32})
        if (s == native_prefill_name(p)) return p;
    fail("unknown native prefill arithmetic '", s, "' (expected auto, int8 or f32)");
}

std::string native_prefill_label(NativePrefill p) {
    switch (p) {
    case NativePrefill::AUTO:
        return ", int8 prefill below " + std::to_string(kInt8PrefillMaxRows) + " tokens (" +
               std::to_string(kInt8PrefillMaxRowsWide) + " from " + std::to_string(kInt8PrefillWideCols) + " columns)";
    case NativePrefill::INT8: return ", int8 prefill";
    case NativePrefill::F32: return "";
    }
    return "";
}

namespace {

const GemvKernels* kernels_for(KernelIsa isa) {
    switch (isa) {
    case KernelIsa::SCALAR: return detail::gemv_kernels_scalar();
    case KernelIsa::AVX2: return detail::gemv_kernels_avx2();
    case KernelIsa::AVX512: return detail::gemv_kernels_avx512();
    case KernelIsa::AVX512_VNNI: return detail::gemv_kernels_avx512_vnni();
    }
    return nullptr;
}

// dst[0..n) = decode(src) with the variant's own decoder where it has one, else gguf's dequantize_row.
void decode_rows(KernelIsa isa, GgmlType t, const uint8_t* src, float* dst, int64_t n);

}  // namespace

bool can_run_kernel_isa(const CpuFeatures& cpu, KernelIsa isa) {
    if (kernels_for(isa) == nullptr) return false;  // not built into this binary
    switch (isa) {
    case KernelIsa::SCALAR: return true;
    // The AVX2 file is compiled for x86-64-v3 (AVX2, FMA, F16C, and BMI1/2, LZCNT, MOVBE, which every CPU with the
    // first three has).
    case KernelIsa::AVX2: return cpu.avx2 && cpu.fma && cpu.f16c;
    case KernelIsa::AVX512: return cpu.avx512_core() && cpu.avx2 && cpu.fma && cpu.f16c;
    case KernelIsa::AVX512_VNNI: return cpu.avx512_core() && cpu.avx512_vnni && cpu.avx2 && cpu.fma && cpu.f16c;
    }
    return false;
}

KernelIsa best_kernel_isa(const CpuFeatures& cpu) {
    for (KernelIsa isa : {KernelIsa::AVX512_VNNI, KernelIsa::AVX512, KernelIsa::AVX2})
        if (can_run_kernel_isa(cpu, isa)) return isa;
    return KernelIsa::SCALAR;
}

bool has_block_kernels(GgmlType t) {
    switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q4_0: case GgmlType::Q4_1:
    case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0: case GgmlType::Q4_K: case GgmlType::Q5_K:
    case GgmlType::Q6_K:
        return true;
    }
    return false;
}

namespace {

DotType dot_type(GgmlType t) {
    switch (t) {
    case GgmlType::F32: return detail::DT_F32;
    case GgmlType::F16: return detail::DT_F16;
    case GgmlType::BF16: return detail::DT_BF16;
    case GgmlType::Q4_0: return detail::DT_Q4_0;
    case GgmlType::Q4_1: return detail::DT_Q4_1;
    case GgmlType::Q5_0: return detail::DT_Q5_0;
    case GgmlType::Q5_1: return detail::DT_Q5_1;
    case GgmlType::Q8_0: return detail::DT_Q8_0;
    case GgmlType::Q4_K: return detail::DT_Q4_K;
    case GgmlType::Q5_K: return detail::DT_Q5_K;
    case GgmlType::Q6_K: return detail::DT_Q6_K;
    }
    fail("matmul_blocks: no kernel for ggml type ", ggml_type_name(t));
}

enum class ActQuant { NONE, Q8_0, Q8_K };

ActQuant act_quant(GgmlType t) {
    switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: return ActQuant::NONE;
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: return ActQuant::Q8_K;
    default: return ActQuant::Q8_0;
    }
}

bool int8_path(GgmlType t, int64_t cols, int64_t n, const KernelOptions& o) {
    if (n < kGemmMinRows) return true;
    if (act_quant(t) == ActQuant::NONE) return false;  // float weights: SGEMM
    switch (o.prefill) {
    case NativePrefill::INT8: return true;
    case NativePrefill::F32: return false;
    case NativePrefill::AUTO: break;
    }
    const GemvKernels* k = kernels_for(o.isa);
    const int64_t limit = cols >= kInt8PrefillWideCols ? kInt8PrefillMaxRowsWide : kInt8PrefillMaxRows;
    return n < limit && k != nullptr && k->dot4x4[dot_type(t)] != nullptr;
}

void check_matrix(const BlockMatrix& w, const char* what) {
    check(has_block_kernels(w.type), what, ": no kernel for ggml type ", ggml_type_name(w.type));
    check(w.rows >= 0 && w.cols >= 0 && w.cols % ggml_block_size(w.type) == 0, what, ": ", w.cols,
          " columns are not a whole number of ", ggml_type_name(w.type), " blocks");
    check(w.row_bytes == ggml_row_bytes(w.type, w.cols), what, ": row_bytes ", w.row_bytes, " != ",
          ggml_row_bytes(w.type, w.cols), " for ", w.cols, " ", ggml_type_name(w.type), " columns");
    check(w.data != nullptr || w.rows == 0 || w.cols == 0, what, ": no weight data");
}

// fn(begin, end) over [0, n), split over the pool's threads (or run here when there is no pool or parallel is false).
template <typename F>
void split(const KernelOptions& o, int64_t n, bool parallel, F&& fn) {
    if (o.pool && parallel) o.pool->parallel_for(n, fn);
    else fn(0, n);
}

// 64-byte aligned scratch that frees itself.
struct AlignedFree {
    void operator()(void* p) const { std::free(p); }
};
template <typename T>
std::unique_ptr<T[], AlignedFree> aligned_array(size_t n) {
    const size_t bytes = std::max<size_t>(64, (n * sizeof(T) + 63) / 64 * 64);
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    return std::unique_ptr<T[], AlignedFree>(static_cast<T*>(p));
}

float round_fp16(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }

// The activations of n input rows, quantised once before the parallel loop.
struct QuantizedInput {
    std::unique_ptr<int8_t[], AlignedFree> qs;
    std::unique_ptr<int8_t[], AlignedFree> qt;  // XRow::qt (prefill of the 32-element types)
    std::vector<float> d;
    std::vector<int32_t> s32;
    std::vector<int16_t> bsums;
    std::vector<XRow> rows;
};

// roundf(v) for |v| <= 127 (halves away from zero, as ggml), without the libm call per element: truncate, then
// step away from zero when the dropped fraction (exact: |v| < 2^23) is at least a half.
inline int round_half_away(float v) {
    const int t = static_cast<int>(v);
    const float f = v - static_cast<float>(t);
    return t + (f >= 0.5f) - (f <= -0.5f);
}

// Q8_0 as ggml: d = amax/127 (stored as fp16), q = round(x / d) with the unrounded reciprocal; plus each block's sum.
void quantize_q8_0(const float* x, int64_t cols, int8_t* qs, float* d, int32_t* s) {
    for (int64_t b = 0; b < cols / 32; ++b) {
        const float* xb = x + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float db = amax / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; ++j) {
            const int v = round_half_away(std::clamp(xb[j] * id, -127.0f, 127.0f));
            qs[32 * b + j] = static_cast<int8_t>(v);
            sum += v;
        }
        d[b] = round_fp16(db);
        s[b] = sum;
    }
}

// Q8_K as ggml: a float scale per 256 (amax/127), int8 quants, the sum of each 16.
void quantize_q8_k(const float* x, int64_t cols, int8_t* qs, float* d, int16_t* bsums) {
    for (int64_t b = 0; b < cols / 256; ++b) {
        const float* xb = x + 256 * b;
        float amax = 0.0f;
        for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float iscale = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < 256; ++j)
            qs[256 * b + j] = static_cast<int8_t>(std::nearbyint(std::clamp(xb[j] * iscale, -127.0f, 127.0f)));
        for (int g = 0; g < 16; ++g) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += qs[256 * b + 16 * g + j];
            bsums[16 * b + g] = static_cast<int16_t>(sum);
        }
        d[b] = amax != 0.0f ? 1.0f / iscale : 0.0f;
    }
}

// XRow::qt of one row from its qs (cols / 32 blocks).
void regroup_q8_0(const int8_t* qs, int64_t cols, int8_t* qt) {
    for (int64_t b = 0; b < cols / 32; ++b) {
        int8_t* dst = qt + (b / 16) * 512 + (b % 16) * 4;
        for (int c = 0; c < 8; ++c) std::memcpy(dst + 64 * c, qs + 32 * b + 4 * c, 4);
    }
}

QuantizedInput quantize_input(const float* x, int64_t n, int64_t cols, ActQuant aq) {
    QuantizedInput q;
    q.rows.resize(static_cast<size_t>(n));
    if (aq == ActQuant::NONE) {
        for (int64_t i = 0; i < n; ++i) q.rows[i].f = x + i * cols;
        return q;
    }
    // each row's quants start on a 64-byte boundary
    const int64_t stride = (cols + 63) / 64 * 64;
    q.qs = aligned_array<int8_t>(static_cast<size_t>(n * stride));
    if (aq == ActQuant::Q8_0) {
        const int64_t nb = cols / 32;
        q.d.resize(static_cast<size_t>(n * nb));
        q.s32.resize(static_cast<size_t>(n * nb));
        const int64_t tstride = (nb + 15) / 16 * 512;  // XRow::qt, prefill only
        if (n >= kGemmMinRows) {
            q.qt = aligned_array<int8_t>(static_cast<size_t>(n * tstride));
            std::memset(q.qt.get(), 0, static_cast<size_t>(n * tstride));
        }
        for (int64_t i = 0; i < n; ++i) {
            quantize_q8_0(x + i * cols, cols, q.qs.get() + i * stride, q.d.data() + i * nb, q.s32.data() + i * nb);
            q.rows[i].qs = q.qs.get() + i * stride;
            q.rows[i].d32 = q.d.data() + i * nb;
            q.rows[i].s32 = q.s32.data() + i * nb;
            if (q.qt) {
                regroup_q8_0(q.rows[i].qs, cols, q.qt.get() + i * tstride);
                q.rows[i].qt = q.qt.get() + i * tstride;
            }
        }
    } else {
        const int64_t nb = cols / 256;
        q.d.resize(static_cast<size_t>(n * nb));
        q.bsums.resize(static_cast<size_t>(n * nb * 16));
        for (int64_t i = 0; i < n; ++i) {
            quantize_q8_k(x + i * cols, cols, q.qs.get() + i * stride, q.d.data() + i * nb,
                          q.bsums.data() + i * nb * 16);
            q.rows[i].qs = q.qs.get() + i * stride;
            q.rows[i].dk = q.d.data() + i * nb;
            q.rows[i].bsums = q.bsums.data() + i * nb * 16;
        }
    }
    return q;
}

// Weight bytes per work item of the GEMV: big enough that taking an item (one atomic on a line both cores write)
// is cheap beside it, small enough that two threads finish a 192 x 576 matrix (69 KB of Q4_1) close together. The
// item's weights stay in L1/L2 across the n inputs.
constexpr uint64_t kGemvItemBytes = 24u << 10;

// Rows per work item for rows of row_bytes: a multiple of 16 (so the 4-row kernels group the same rows whatever
// the split), 16 to 512.
int64_t gemv_item_rows(uint64_t row_bytes) {
    const int64_t r = static_cast<int64_t>(kGemvItemBytes / std::max<uint64_t>(row_bytes, 1)) / 16 * 16;
    return std::clamp<int64_t>(r, 16, 512);
}

// Rows ahead of the dot kernels whose lines are prefetched: the kernel's first reads of a row group (the gather of
// the block scales) otherwise wait for memory (SmolLM2's decode GEMVs on one thread: 12.8-13.0 -> 9.7-11.0 CPU ms
// per token; 8 and 16 rows alike, 32 and 64 a little worse).
constexpr int64_t kPrefetchRows = 16;

// Only rows shorter than this are prefetched. Long rows are one long sequential stream per 4-row group, which the
// hardware prefetcher follows on its own; there the extra instructions only queue behind the demand misses (8B Q4_0,
// rows of 2,304 and 8,064 bytes, decode on 2 threads: 2.7-2.9 tok/s with the prefetch, 3.3-3.4 without; SmolLM2
// Q4_1, rows of 360 and 960 bytes: 120-122 tok/s with it, 99-102 without; Intel Xeon family 6 model 207).
constexpr uint64_t kPrefetchMaxRowBytes = 2048;

// One matrix of a GEMV job, with its kernels, its quantised input rows and its first work item.
struct GemvPart {
    const BlockProduct* p = nullptr;
    detail::DotFn dot = nullptr;
    detail::Dot4Fn dot4 = nullptr;
    detail::Dot4x4Fn dot4x4 = nullptr;
    const XRow* x = nullptr;  // n rows
    int64_t item_rows = 0;
    int64_t first_item = 0;
};

// W rows [r0, r1) of one part times the n input rows. With a 4 x 4 tile kernel (prefill, n >= kGemmMinRows), the
// input rows go in groups of four from row 0 (the last n % 4 as below) and the weight rows four at a time: the
// item's weights (~24 KiB) stay in L1/L2 across the groups. Otherwise rows go four at a time through dot4 where the
// variant has it, counted from row 0 of the matrix (r0 is a multiple of 16), the last rows % 4 of the matrix one at
// a time. Which kernel computes an output depends only on its row and column, never on the thread split.
void gemv_rows(const GemvPart& part, int64_t r0, int64_t r1, int64_t n) {
    const BlockMatrix& w = part.p->w;
    const uint8_t* base = static_cast<const uint8_t*>(w.data);
    const bool acc = part.p->accumulate;
    const bool prefetch = w.row_bytes < kPrefetchMaxRowBytes;
    int64_t i0 = 0;
    if (part.dot4x4 && n >= kGemmMinRows) {
        const int64_t r4 = r0 + (r1 - r0) / 4 * 4;
        for (; i0 + 4 <= n; i0 += 4) {
            const XRow* xr = part.x + i0;
            for (int64_t r = r0; r < r4; r += 4) {
                float v[16];
                part.dot4x4(base + r * w.row_bytes, w.row_bytes, w.cols, xr, v);
                for (int i = 0; i < 4; ++i) {
                    float* yi = part.p->y + (i0 + i) * w.rows + r;
                    for (int j = 0; j < 4; ++j) yi[j] = acc ? yi[j] + v[4 * i + j] : v[4 * i + j];
                }
            }
            for (int64_t r = r4; r < r1; ++r)
                for (int i = 0; i < 4; ++i) {
                    const float v = part.dot(base + r * w.row_bytes, w.cols, xr[i]);
                    float& yv = part.p->y[(i0 + i) * w.rows + r];
                    yv = acc ? yv + v : v;
                }
        }
    }
    for (int64_t i = i0; i < n; ++i) {
        float* yi = part.p->y + i * w.rows;
        const XRow& xr = part.x[i];
        int64_t r = r0;
        if (part.dot4) {
            for (; r + 4 <= r1; r += 4) {
                if (prefetch && r + kPrefetchRows + 4 <= w.rows) {
                    // the 4 rows kPrefetchRows ahead, a line at a time (rows are contiguous)
                    const uint8_t* p = base + (r + kPrefetchRows) * w.row_bytes;
                    for (uint64_t off = 0; off < 4 * w.row_bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
                }
                float v[4];
                part.dot4(base + r * w.row_bytes, w.row_bytes, w.cols, xr, v);
                for (int j = 0; j < 4; ++j) yi[r + j] = acc ? yi[r + j] + v[j] : v[j];
            }
        }
        for (; r < r1; ++r) {
            if (prefetch && r + kPrefetchRows < w.rows) {
                const uint8_t* p = base + (r + kPrefetchRows) * w.row_bytes;
                for (uint64_t off = 0; off < w.row_bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
            }
            const float v = part.dot(base + r * w.row_bytes, w.cols, xr);
            yi[r] = acc ? yi[r] + v : v;
        }
    }
}

constexpr int kMaxProducts = 8;

void gemv_many(const float* x, const BlockProduct* ps, int count, int64_t n, const KernelOptions& o) {
    const GemvKernels* k = kernels_for(o.isa);
    check(k != nullptr, "matmul_blocks: the ", kernel_isa_name(o.isa), " kernels are not built into this binary");
    QuantizedInput q[3];  // by ActQuant
    bool have[3] = {false, false, false};
    GemvPart parts[kMaxProducts];
    int64_t items = 0;
    uint64_t bytes = 0;
    for (int j = 0; j < count; ++j) {
        const BlockMatrix& w = ps[j].w;
        const ActQuant aq = act_quant(w.type);
        const int a = static_cast<int>(aq);
        if (!have[a]) q[a] = quantize_input(x, n, w.cols, aq), have[a] = true;
        GemvPart& part = parts[j];
        part.p = ps + j;
        part.dot = k->dot[dot_type(w.type)];
        part.dot4 = k->dot4[dot_type(w.type)];
        part.dot4x4 = k->dot4x4[dot_type(w.type)];
        part.x = q[a].rows.data();
        part.item_rows = gemv_item_rows(w.row_bytes);
        part.first_item = items;
        items += (w.rows + part.item_rows - 1) / part.item_rows;
        bytes += static_cast<uint64_t>(w.rows) * w.row_bytes;
    }
    auto run = [&](int64_t i0, int64_t i1) {
        int j = 0;
        for (int64_t it = i0; it < i1; ++it) {
            while (j + 1 < count && parts[j + 1].first_item <= it) ++j;
            const GemvPart& part = parts[j];
            const int64_t r0 = (it - part.first_item) * part.item_rows;
            gemv_rows(part, r0, std::min(part.p->w.rows, r0 + part.item_rows), n);
        }
    };
    // One thread for tiny products, where waking the team costs more than the work (< ~64 KiB of weights).
    // (Prefill: the weights are read n times, so the work is n times that of one row.)
    const uint64_t work = n < kGemmMinRows ? bytes : bytes * static_cast<uint64_t>(n);
    if (o.pool && o.pool->size() > 1 && items > 1 && work >= (64u << 10))
        o.pool->parallel_items(items, run);
    else
        run(0, items);
}

void gemv(const float* x, const BlockMatrix& w, float* y, int64_t n, bool accumulate, const KernelOptions& o) {
    const BlockProduct p{w, y, accumulate};
    gemv_many(x, &p, 1, n, o);
}

void decode_rows(KernelIsa isa, GgmlType t, const uint8_t* src, float* dst, int64_t n) {
    const GemvKernels* k = kernels_for(isa);
    const detail::DecodeFn dec = k ? k->decode[dot_type(t)] : nullptr;
    if (dec)
        dec(src, dst, n);
    else
        dequantize_row(t, src, dst, n);
}

// Rows of W per dequantised tile of the SGEMM path: about 2 MiB of fp32 (L2-sized slices per thread in OpenBLAS's
// packing), a multiple of 16, at least 16.
int64_t tile_rows_for(int64_t cols, int64_t rows) {
    const int64_t t = std::max<int64_t>(16, ((int64_t{2} << 20) / (4 * std::max<int64_t>(cols, 1))) / 16 * 16);
    return std::min(t, std::max<int64_t>(rows, 1));
}

// Decodes W rows [r0, r0 + nr) into tile (row-major, w.cols per row), the rows split over the pool's threads.
void dequantize_tile(const BlockMatrix& w, int64_t r0, int64_t nr, float* tile, const KernelOptions& o) {
    const uint8_t* base = static_cast<const uint8_t*>(w.data);
    constexpr int64_t kStep = 8;
    const int64_t steps = (nr + kStep - 1) / kStep;
    split(o, steps, steps > 1, [&](int64_t s0, int64_t s1) {
        const int64_t a = s0 * kStep, b = std::min(nr, s1 * kStep);
        decode_rows(o.isa, w.type, base + (r0 + a) * w.row_bytes, tile + a * w.cols, (b - a) * w.cols);
    });
}

// The prefill path. Threading: the tiles are decoded by the pool's threads, then multiplied by ONE cblas_sgemm call
// from this (the calling) thread, so OpenBLAS parallelises it with its own thread count (the backend sets it).
// Concurrent sgemm calls from our threads would each start OpenBLAS's threads and oversubscribe the cores (and
// openblas_set_num_threads is process-global, so it cannot be lowered safely around a call). The pool's workers
// sleep after a short spin, so they do not compete with OpenBLAS's threads during the call.
void gemm(const float* x, const BlockMatrix& w, float* y, int64_t n, bool accumulate, const KernelOptions& o) {
    const float beta = accumulate ? 1.0f : 0.0f;
    if (w.type == GgmlType::F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(w.rows), int(w.cols), 1.0f, x, int(w.cols),
                    static_cast<const float*>(w.data), int(w.cols), beta, y, int(w.rows));
        return;
    }
    // Few rows of bf16 weights: oneDNN (bf16 x bf16, fp32 accumulation), 1.1-3.4x the tiles + SGEMM below 48 rows.
    if (w.type == GgmlType::BF16 && o.onednn && o.prefill != NativePrefill::F32 && n < kOnednnMaxRows &&
        o.onednn->matmul(x, static_cast<const uint16_t*>(w.data), w.rows, w.cols, y, n, accumulate, o.pool))
        return;
    const int64_t tr = tile_rows_for(w.cols, w.rows);
    auto tile = aligned_array<float>(static_cast<size_t>(tr * w.cols));
    for (int64_t r0 = 0; r0 < w.rows; r0 += tr) {
        const int64_t nr = std::min(tr, w.rows - r0);
        dequantize_tile(w, r0, nr, tile.get(), o);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(nr), int(w.cols), 1.0f, x, int(w.cols),
                    tile.get(), int(w.cols), beta, y + r0, int(w.rows));
    }
}

}  // namespace

bool uses_int8_path(GgmlType t, int64_t cols, int64_t n, const KernelOptions& o) { return int8_path(t, cols, n, o); }

void matmul_blocks(const float* x, const BlockMatrix& w, float* y, int64_t n, bool accumulate,
                   const KernelOptions& o) {
    check_matrix(w, "matmul_blocks");
    if (n <= 0 || w.rows == 0) return;
    if (w.cols == 0) {
        if (!accumulate) std::fill(y, y + n * w.rows, 0.0f);
        return;
    }
    if (int8_path(w.type, w.cols, n, o))
        gemv(x, w, y, n, accumulate, o);
    else
        gemm(x, w, y, n, accumulate, o);
}

void matmul_blocks_many(const float* x, const BlockProduct* products, int count, int64_t n, const KernelOptions& o) {
    check(count >= 0, "matmul_blocks_many: negative count");
    for (int j = 0; j < count; ++j) {
        check_matrix(products[j].w, "matmul_blocks_many");
        check(products[j].w.cols == products[0].w.cols, "matmul_blocks_many: matrix ", j, " has ",
              products[j].w.cols, " columns, matrix 0 has ", products[0].w.cols, " (they share the input)");
    }
    if (count == 0 || n <= 0) return;
    bool int8 = count <= kMaxProducts && products[0].w.cols != 0;
    for (int j = 0; j < count; ++j) int8 = int8 && int8_path(products[j].w.type, products[j].w.cols, n, o);
    if (!int8) {
        for (int j = 0; j < count; ++j)
            matmul_blocks(x, products[j].w, products[j].y, n, products[j].accumulate, o);
        return;
    }
    gemv_many(x, products, count, n, o);
}

void matmul_dx_blocks(const float* dy, const BlockMatrix& w, float* dx, int64_t n, bool accumulate,
                      const KernelOptions& o) {
    check_matrix(w, "matmul_dx_blocks");
    if (n <= 0 || w.cols == 0) return;
    if (w.rows == 0) {
        if (!accumulate) std::fill(dx, dx + n * w.cols, 0.0f);
        return;
    }
    if (w.type == GgmlType::F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(w.cols), int(w.rows), 1.0f, dy,
                    int(w.rows), static_cast<const float*>(w.data), int(w.cols), accumulate ? 1.0f : 0.0f, dx,
                    int(w.cols));
        return;
    }
    // dx = sum over row tiles of dy[:, tile] . W[tile, :]
    const int64_t tr = tile_rows_for(w.cols, w.rows);
    auto tile = aligned_array<float>(static_cast<size_t>(tr * w.cols));
    for (int64_t r0 = 0; r0 < w.rows; r0 += tr) {
        const int64_t nr = std::min(tr, w.rows - r0);
        dequantize_tile(w, r0, nr, tile.get(), o);
        const float beta = (r0 == 0 && !accumulate) ? 0.0f : 1.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(w.cols), int(nr), 1.0f, dy + r0,
                    int(w.rows), tile.get(), int(w.cols), beta, dx, int(w.cols));
    }
}

void dequantize_rows(const BlockMatrix& w, int64_t row0, int64_t n_rows, float* out) {
    check_matrix(w, "dequantize_rows");
    check(row0 >= 0 && n_rows >= 0 && row0 + n_rows <= w.rows, "dequantize_rows: rows [", row0, ", ",
          row0 + n_rows, ") out of range (", w.rows, " rows)");
    if (n_rows == 0 || w.cols == 0) return;
    // rows are stored back to back with no padding, so the range decodes as one run of blocks
    dequantize_row(w.type, static_cast<const uint8_t*>(w.data) + row0 * w.row_bytes, out, n_rows * w.cols);
}

}  // namespace hs::cpu

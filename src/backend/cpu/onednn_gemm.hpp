// backend/cpu/onednn_gemm.hpp: the bf16-weight prefill GEMM through oneDNN (optional dependency, issue 16).
//
// `--precision bf16` keeps weight matrices as bf16. Without oneDNN, its prefill (n >= kGemmMinRows input rows)
// widens tiles of W to fp32 and calls cblas_sgemm (matmul_blocks.cpp). OpenBLAS is slow for few rows, so products
// of kGemmMinRows <= n < kOnednnMaxRows rows go to oneDNN's matmul instead: the fp32 activations rounded to bf16
// (round to nearest even), bf16 x bf16 products accumulated in fp32, fp32 output. The weights are used in place,
// in their own row-major layout: no reordered copy, no extra memory (a copy in oneDNN's preferred blocked layout
// would double the bf16 weights, 16 GB more for an 8B model, for 1.1-1.3x more at 32 rows).
//
// Measured (results/precision/onednn-bf16.md; Intel Xeon family 6 model 207 in a VM that does not expose AMX, so
// oneDNN 2.6.3 runs brg:avx512_core_bf16; SmolLM2 and 8B llama3 matrices): this path / the SGEMM path at 16 rows
// 1.3-2.0x (1 thread) and 1.2-2.8x (2 threads), 32 rows 0.86-1.35x and 1.0-1.9x, 48 rows 0.72-1.23x and
// 0.82-1.74x, 96 rows 0.59-0.99x and 0.63-1.51x: below 48 rows oneDNN (SmolLM2's small matrices lose from ~32-48,
// the 8B ones gain further), from 48 the SGEMM path. Engine, 2 threads: bf16 prefill of 32 tokens 1.4-1.8x
// (SmolLM2), 1.7x (8B).
//
// Threads: Debian's oneDNN uses OpenMP, whose idle workers spin for a long time after each parallel region
// (GOMP_SPINCOUNT, read at program load; ~15 ms of PAUSE on this CPU) and took the cores from our pool and
// OpenBLAS: SmolLM2 bf16 prefill of 32 tokens 19.5 tok/s with oneDNN's OpenMP threads vs 177.5 without oneDNN
// (OMP_WAIT_POLICY=PASSIVE: 249.5). So oneDNN runs sequentially (its primitives created and run with OpenMP's
// thread count at 1 on the calling thread, restored after) and the product is split by W rows over the backend's
// ThreadPool, one primitive call per thread with its own stream and scratchpad: no OpenMP worker ever starts.
//
// Not used: under NativePrefill::F32 (--native-prefill f32, the exact fp32 products; the default auto uses it, for
// BF16 weights at --precision bf16 and for BF16 files at native), when the build has no oneDNN
// (HEADSWEEP_WITH_ONEDNN), when the CPU has neither AVX-512-BF16 nor AMX-BF16 (oneDNN would emulate bf16, slower than
// the SGEMM path), when HEADSWEEP_ONEDNN=off is set, or for a shape where oneDNN picks no brgemm kernel (the caller's
// path runs).
// oneDNN 2.6 asks Linux for the AMX tile state itself (arch_prctl ARCH_REQ_XCOMP_PERM); prepare_cpu_runtime does too.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "util/cpu_features.hpp"

namespace hs::cpu {

class ThreadPool;  // backend/cpu/thread_pool.hpp

// bf16-weight products of kGemmMinRows <= n < kOnednnMaxRows input rows use oneDNN where it is available.
inline constexpr int64_t kOnednnMaxRows = 48;

bool onednn_built();           // this binary was built with oneDNN
std::string onednn_version();  // "oneDNN 2.6.3 (OpenMP)"; "" when not built
// The CPU has a bf16 instruction set oneDNN computes with (AMX-BF16 or AVX-512-BF16).
bool onednn_bf16_cpu_ok(const CpuFeatures& cpu);
// HEADSWEEP_ONEDNN=off|0|no in the environment turns the oneDNN path off.
bool onednn_disabled_by_env();

// What output files record of the bf16 prefill arithmetic a CPU backend made with this native-prefill choice would
// run here: "onednn-bf16<48" where oneDNN takes the short bf16 prefills (built in, a bf16 CPU, not turned off by the
// environment, prefill not f32), else "" (the SGEMM path, as files written before oneDNN). A resume compares it, so
// files are never continued with the other arithmetic.
std::string bf16_prefill_tag(const std::string& native_prefill);

class OnednnBf16Gemm {
public:
    // nullptr when the build has no oneDNN or the CPU has no bf16 instructions (*why says which, when given).
    static std::unique_ptr<OnednnBf16Gemm> create(const CpuFeatures& cpu, std::string* why = nullptr);
    ~OnednnBf16Gemm();
    OnednnBf16Gemm(const OnednnBf16Gemm&) = delete;
    OnednnBf16Gemm& operator=(const OnednnBf16Gemm&) = delete;

    // y[n, rows] = bf16(x)[n, cols] . W^T (+ y when accumulate), W rows x cols bf16 row-major (as BlockMatrix BF16).
    // The rows of W are split over pool's threads (nullptr: the calling thread only). Returns false, with y
    // untouched, when oneDNN has no brgemm kernel for the shape: the caller computes it. One product at a time.
    bool matmul(const float* x, const uint16_t* w, int64_t rows, int64_t cols, float* y, int64_t n, bool accumulate,
                ThreadPool* pool);

    // oneDNN's kernel for the bf16 matmul on this CPU, e.g. "brg:avx512_core_amx" or "brg:avx512_core_bf16".
    const std::string& kernel() const;
    // "oneDNN 2.6.3 (OpenMP) brg:avx512_core_bf16, bf16 activations, below 48 rows"
    std::string describe() const;

private:
    struct Impl;
    explicit OnednnBf16Gemm(std::unique_ptr<Impl> p);
    std::unique_ptr<Impl> p_;
};

}  // namespace hs::cpu

// backend/cpu/matmul_blocks_avx512.cpp: the AVX-512 (F/BW/DQ/VL/CD, no VNNI) GEMV dot kernels, compiled with
// -march=x86-64-v4 (see CMakeLists.txt); the kernels are in matmul_blocks_avx512.inc.
#include "backend/cpu/matmul_blocks_kernels.hpp"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) && defined(__F16C__) && !defined(__AVX512VNNI__)
#define HS_VNNI 0
#include "backend/cpu/matmul_blocks_avx512.inc"

namespace hs::cpu::detail {
const GemvKernels* gemv_kernels_avx512() { return &kTable; }
}  // namespace hs::cpu::detail

#else

namespace hs::cpu::detail {
const GemvKernels* gemv_kernels_avx512() { return nullptr; }
}  // namespace hs::cpu::detail

#endif

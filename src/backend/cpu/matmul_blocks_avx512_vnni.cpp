// backend/cpu/matmul_blocks_avx512_vnni.cpp: the AVX-512 + VNNI GEMV dot kernels (vpdpbusd), compiled with
// -march=x86-64-v4 -mavx512vnni (see CMakeLists.txt); the kernels are in matmul_blocks_avx512.inc. AVX-512-BF16 is
// not enabled: the BF16 weights are widened to fp32 (vdpbf16ps would round the activations to bf16).
#include "backend/cpu/matmul_blocks_kernels.hpp"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) && defined(__F16C__) && defined(__AVX512VNNI__)
#define HS_VNNI 1
#include "backend/cpu/matmul_blocks_avx512.inc"

namespace hs::cpu::detail {
const GemvKernels* gemv_kernels_avx512_vnni() { return &kTable; }
}  // namespace hs::cpu::detail

#else

namespace hs::cpu::detail {
const GemvKernels* gemv_kernels_avx512_vnni() { return nullptr; }
}  // namespace hs::cpu::detail

#endif

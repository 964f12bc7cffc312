// backend/cuda/cuda_compat.cuh: the one place where the CUDA backend meets CUDA.
//
// The backend (cuda_backend.cu) and its kernels (kernels.cuh) are written against the subset of the CUDA runtime,
// cuBLAS and device intrinsics listed below, plus three names of our own:
//   HS_LAUNCH(kernel, grid, block, smem_bytes, stream, args...)   a kernel launch (<<<...>>> under nvcc)
//   hs_dynamic_smem<T>()                                          the block's dynamic shared memory
//   hs_bf16 / hs_f16, hs_to_float(x), hs_from_float<T>(f)         16-bit storage types and conversions
// Built by nvcc (HEADSWEEP_HAVE_CUDA) this is real CUDA. Built by a plain C++ compiler with HS_CUDA_EMULATION
// defined, the same sources run on the CPU against tests/cuda_emu/cuda_emu.hpp, an emulator of exactly this subset
// (threads of a block as fibers, so __syncthreads and warp shuffles behave as on a GPU; cuBLAS as a naive GEMM).
// That is how CI, on machines without a GPU, tests the kernels' indexing, masking and reductions. Using a CUDA
// name outside this subset breaks the emulated build: add it to the emulator first.
//
// Runtime: cudaError_t, cudaSuccess, cudaStream_t, cudaStreamNonBlocking, dim3, cudaMemcpyKind (HostToDevice,
//   DeviceToHost, DeviceToDevice), cudaDeviceProp (name, totalGlobalMem, major, minor, multiProcessorCount),
//   cudaGetDeviceCount, cudaSetDevice, cudaGetDevice, cudaGetDeviceProperties, cudaMemGetInfo,
//   cudaStreamCreateWithFlags, cudaStreamDestroy, cudaStreamSynchronize, cudaDeviceSynchronize,
//   cudaMalloc, cudaFree, cudaMallocAsync, cudaFreeAsync, cudaDeviceGetDefaultMemPool, cudaMemPool_t,
//   cudaMemPoolSetAttribute + cudaMemPoolAttrReleaseThreshold, cudaMemcpyAsync, cudaMemcpy2DAsync, cudaMemsetAsync,
//   cudaGetLastError, cudaPeekAtLastError, cudaGetErrorString, cudaEvent_t, cudaEventCreate, cudaEventRecord,
//   cudaEventSynchronize, cudaEventElapsedTime, cudaEventDestroy.
// cuBLAS: cublasHandle_t, cublasStatus_t, CUBLAS_STATUS_SUCCESS, cublasCreate, cublasDestroy, cublasSetStream,
//   cublasSetMathMode + CUBLAS_DEFAULT_MATH, cublasGetStatusString, cublasOperation_t (CUBLAS_OP_N, CUBLAS_OP_T),
//   cudaDataType (CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF), cublasComputeType_t (CUBLAS_COMPUTE_32F),
//   cublasGemmAlgo_t (CUBLAS_GEMM_DEFAULT), cublasGemmEx.
// Device: __global__ __device__ __host__ __forceinline__ __restrict__ __shared__ (static arrays), __launch_bounds__,
//   threadIdx blockIdx blockDim gridDim, warpSize, __syncthreads, __syncwarp, __shfl_xor_sync, __shfl_sync,
//   __shfl_down_sync (full-warp masks only), atomicAdd (float, double), __expf, __logf, expf, logf, sqrtf, rsqrtf,
//   tanhf, fmaxf, fminf, __ldg.
#pragma once

#include <cstdint>

#if defined(HS_CUDA_EMULATION)

#include "cuda_emu.hpp"  // namespace hs_emu: the subset above, on the CPU
#define HS_CUDA_NAMESPACE_PRELUDE using namespace hs_emu;

#else

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define HS_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define HS_CUDA_NAMESPACE_PRELUDE

using hs_bf16 = __nv_bfloat16;
using hs_f16 = __half;
__host__ __device__ __forceinline__ float hs_to_float(float x) { return x; }
__host__ __device__ __forceinline__ float hs_to_float(hs_bf16 x) { return __bfloat162float(x); }
__host__ __device__ __forceinline__ float hs_to_float(hs_f16 x) { return __half2float(x); }
template <class T> __host__ __device__ __forceinline__ T hs_from_float(float f);
template <> __host__ __device__ __forceinline__ float hs_from_float<float>(float f) { return f; }
template <> __host__ __device__ __forceinline__ hs_bf16 hs_from_float<hs_bf16>(float f) { return __float2bfloat16(f); }
template <> __host__ __device__ __forceinline__ hs_f16 hs_from_float<hs_f16>(float f) { return __float2half(f); }

template <class T>
__device__ __forceinline__ T* hs_dynamic_smem() {
    extern __shared__ __align__(16) unsigned char hs_dynamic_smem_bytes[];
    return reinterpret_cast<T*>(hs_dynamic_smem_bytes);
}

#endif

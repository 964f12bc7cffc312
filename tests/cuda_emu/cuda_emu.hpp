// tests/cuda_emu/cuda_emu.hpp: a CPU emulator of the CUDA subset in src/backend/cuda/cuda_compat.cuh.
//
// What it emulates. The CUDA runtime calls, the cuBLAS subset and the device built-ins listed in cuda_compat.cuh,
// so that the CUDA backend's kernels and host code, compiled by a plain C++ compiler with HS_CUDA_EMULATION
// defined, run and are tested on machines without a GPU (CI; a laptop without the CUDA toolkit: no CUDA header is
// included here and nothing links against libcudart or libcublas).
//   - A launch (HS_LAUNCH) runs its blocks one after another on the calling thread. The threads of a block are
//     fibers (Boost.Context) on pooled stacks with guard pages, scheduled round-robin: __syncthreads is a real
//     block barrier, __syncwarp and the shuffles are real barriers among the 32 lanes of a warp. Even blocks start
//     their threads in ascending order, odd blocks in descending order, so a missing barrier shows up as a wrong
//     result in one direction or the other.
//   - __shared__ is `static`: blocks run one at a time, so one static copy is the block's shared memory.
//   - Device memory is host memory: one mmap'ed block of whole pages per cudaMalloc, in a table of live blocks.
//   - cuBLAS is a naive GEMM that accumulates in double.
// What it does NOT emulate: timing or performance of any kind, concurrency between blocks or streams (streams and
// events are synchronous; cudaEventElapsedTime measures the emulator), memory coalescing, bank conflicts, caches,
// registers and occupancy, warp-synchronous code without __syncwarp (lanes of a warp do NOT run in lockstep here),
// the numerics of real cuBLAS (which accumulates in float, in an order of its own) and of __expf/__logf (here the
// accurate expf/logf), a context made unusable by a launch failure (here only the last-error state records it).
// How it catches bugs that a GPU would show (or hide) at run time:
//   - every pointer argument of a kernel must be nullptr or point into a live device allocation (host/device
//     pointer mix-ups); memcpy/memset ranges are checked against their kind and the allocation they lie in;
//   - the other way round, HOST code touching device memory (reading engine.device_weights()...data[i], say): every
//     block is PROT_NONE except while an emulated device operation (launch, memcpy, memset, cublasGemmEx) runs,
//     which opens what it touches and closes it again; a host access faults, and a SIGSEGV handler (in front of
//     any earlier one, to which other faults go) prints "cuda emulator: host code touched device memory at 0x...
//     (offset N of a cudaMalloc'ed block of M bytes): ..." and aborts. HS_EMU_GUARD=0 (read at each cudaMalloc)
//     leaves the blocks allocated meanwhile open. Fiber stacks and dynamic shared memory are not guarded;
//   - cudaMalloc'd memory and dynamic shared memory (per block) are filled with 0xFF bytes, NaN as floats, so reads
//     of never-written memory poison the results; static __shared__ arrays are NOT poisoned (they keep the
//     previous block's values);
//   - a barrier that can never be released (a __syncthreads or a shuffle in divergent code) stops the launch with
//     cudaErrorLaunchFailure and a message naming the kernel, the block and who waits where, instead of hanging;
//     a shuffle that reads a lane which did not take part (exited, beyond blockDim, or at another warp operation)
//     fails the same way;
//   - launch configurations are validated as CUDA does; errors are CUDA's sticky last error, with a human-readable
//     reason in hs_emu::last_error_detail();
//   - a stack overflow in a kernel hits a guard page (SIGSEGV) instead of corrupting another thread's stack.
// Built with -fsanitize=address, out-of-bounds accesses to device allocations are reported too: the bytes after the
// requested size, up to the block's page end, are poisoned.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_emu_half.hpp"

namespace hs_emu {

// ---------------------------------------------------------------- runtime types

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline constexpr int warpSize = 32;

// The numeric values are CUDA's, so that logs read the same on both.
enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidPitchValue = 12,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999,
};
using cudaError_t = cudaError;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,  // direction inferred from the pointers
};

inline constexpr unsigned cudaStreamDefault = 0x00;
inline constexpr unsigned cudaStreamNonBlocking = 0x01;

struct StreamObject;
struct EventObject;
struct MemPoolObject;
using cudaStream_t = StreamObject*;  // nullptr is the default stream
using cudaEvent_t = EventObject*;
using cudaMemPool_t = MemPoolObject*;

enum cudaMemPoolAttr {
    cudaMemPoolAttrReleaseThreshold = 4,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major;
    int minor;
    int multiProcessorCount;
};

// ---------------------------------------------------------------- runtime API (all calls are synchronous)

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize();

cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream);
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream);
// The typed overloads of CUDA's C++ runtime API (cudaMalloc(&float_ptr, bytes)).
template <class T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
template <class T>
cudaError_t cudaMallocAsync(T** ptr, size_t bytes, cudaStream_t stream) {
    return cudaMallocAsync(reinterpret_cast<void**>(ptr), bytes, stream);
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value);

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width_bytes,
                              size_t height, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream = nullptr);

cudaError_t cudaGetLastError();    // returns the last error and resets it to cudaSuccess
cudaError_t cudaPeekAtLastError();  // returns the last error, keeps it
const char* cudaGetErrorString(cudaError_t error);

cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);

// Not in cuda_compat.cuh's list, but real CUDA needs it before a launch with more than 48 KiB of dynamic shared
// memory, and the emulator enforces that limit (see launch validation in cuda_emu.cpp).
namespace detail {
cudaError_t func_set_attribute(const void* kernel, cudaFuncAttribute attr, int value);
}
template <class... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
    return detail::func_set_attribute(reinterpret_cast<const void*>(kernel), attr, value);
}

// ---------------------------------------------------------------- emulator extras (not CUDA)

// Why the last failing call failed (runtime or cuBLAS), in words; "" if nothing failed yet. Kept until the next
// failure, so it is still there after cudaGetLastError() cleared the error code.
const char* last_error_detail();

struct Stats {
    uint64_t launches = 0;          // kernel launches that ran
    uint64_t allocations_live = 0;  // device allocations not yet freed
    uint64_t bytes_live = 0;
    uint64_t bytes_peak = 0;     // most bytes live at once since the last reset_stats()
    uint64_t bytes_copied = 0;   // by cudaMemcpy*Async
};
Stats stats();
void reset_stats();  // zeroes launches and bytes_copied; bytes_peak restarts from bytes_live

// ---------------------------------------------------------------- cuBLAS subset

struct CublasObject;
using cublasHandle_t = CublasObject*;

enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
using cudaDataType = cudaDataType_t;
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
const char* cublasGetStatusString(cublasStatus_t status);
// Column-major C = alpha * op(A) * op(B) + beta * C as cuBLAS defines it; alpha and beta are host floats. When
// beta == 0, C is not read (NaN there does not propagate).
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo);

// ---------------------------------------------------------------- kernel execution

namespace detail {

// The per-fiber state that threadIdx reads; the emulator's thread record extends it.
struct ThreadContext {
    dim3 thread_idx;
};
extern ThreadContext* g_thread;  // the running GPU thread, nullptr outside kernels
extern dim3 g_block_idx, g_block_dim, g_grid_dim;
extern unsigned char* g_dynamic_smem;

[[noreturn]] void outside_kernel(const char* what);

inline const dim3& block_idx() {
    if (!g_thread) [[unlikely]] outside_kernel("blockIdx");
    return g_block_idx;
}
inline const dim3& block_dim() {
    if (!g_thread) [[unlikely]] outside_kernel("blockDim");
    return g_block_dim;
}
inline const dim3& grid_dim() {
    if (!g_thread) [[unlikely]] outside_kernel("gridDim");
    return g_grid_dim;
}
inline unsigned char* dynamic_smem() {
    if (!g_thread) [[unlikely]] outside_kernel("hs_dynamic_smem");
    return g_dynamic_smem;
}

struct KernelPointerArg {
    unsigned index;  // position in the kernel's parameter list, from 0
    const void* value;
};

struct LaunchRequest {
    const char* kernel_name;
    const void* kernel;  // identity only (cudaFuncSetAttribute)
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const KernelPointerArg* pointers;
    size_t pointer_count;
    void (*body)(void*);  // runs the kernel for the current thread
    void* frame;          // the kernel and its arguments, for body
};
void run_launch(const LaunchRequest& request);

template <class T>
constexpr bool is_data_pointer = std::is_pointer_v<T> && !std::is_function_v<std::remove_pointer_t<T>>;

template <size_t I, class T>
void collect_pointer(const T& value, KernelPointerArg* out, size_t& count) {
    if constexpr (is_data_pointer<T>) out[count++] = KernelPointerArg{static_cast<unsigned>(I), value};
}

enum class ShuffleMode { idx, down, xor_ };
uint64_t shuffle(ShuffleMode mode, unsigned mask, uint64_t value, unsigned b, int width);

template <class T>
T shuffle_as(ShuffleMode mode, unsigned mask, T var, unsigned b, int width) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(uint64_t),
                  "the emulated shuffles move values of at most 8 bytes");
    uint64_t bits = 0;
    std::memcpy(&bits, &var, sizeof(T));
    bits = shuffle(mode, mask, bits, b, width);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}

}  // namespace detail

inline const detail::ThreadContext& this_thread() {
    if (!detail::g_thread) [[unlikely]] detail::outside_kernel("threadIdx");
    return *detail::g_thread;
}

// HS_LAUNCH's target. The arguments are converted to the kernel's parameter types once, as CUDA copies them into
// the kernel's parameter buffer; every thread then calls the kernel with its own copy of them.
template <class... Params, class... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            Args&&... args) {
    static_assert(sizeof...(Params) == sizeof...(Args), "HS_LAUNCH: argument count differs from the kernel's");
    static_assert((!std::is_reference_v<Params> && ...), "kernel parameters are passed by value");
    struct Frame {
        void (*kernel)(Params...);
        std::tuple<Params...> args;
    };
    Frame frame{kernel, std::tuple<Params...>(std::forward<Args>(args)...)};
    detail::KernelPointerArg pointers[sizeof...(Params) + 1];
    size_t count = 0;
    [&]<size_t... I>(std::index_sequence<I...>) {
        (detail::collect_pointer<I>(std::get<I>(frame.args), pointers, count), ...);
    }(std::index_sequence_for<Params...>{});
    auto body = [](void* f) {
        auto* fr = static_cast<Frame*>(f);
        std::apply(fr->kernel, fr->args);  // by-value parameters: each thread gets its own copies
    };
    detail::run_launch(detail::LaunchRequest{name, reinterpret_cast<const void*>(kernel), grid, block, smem, stream,
                                             pointers, count, +body, &frame});
}

// ---------------------------------------------------------------- device functions

void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);

template <class T>
T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize) {
    return detail::shuffle_as(detail::ShuffleMode::idx, mask, var, static_cast<unsigned>(srcLane), width);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    return detail::shuffle_as(detail::ShuffleMode::down, mask, var, delta, width);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize) {
    return detail::shuffle_as(detail::ShuffleMode::xor_, mask, var, static_cast<unsigned>(laneMask), width);
}

// Plain read-modify-writes: all GPU threads run on one OS thread and switch only at barriers, so they are atomic.
// One template for CUDA's float, double, int and unsigned overloads (the value's type must match the pointer's).
template <class T>
inline T atomicAdd(T* address, T value) {
    const T old = *address;
    *address = old + value;
    return old;
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

template <class T>
inline T __ldg(const T* p) {
    return *p;
}

}  // namespace hs_emu

template <class T>
inline T* hs_dynamic_smem() {
    return reinterpret_cast<T*>(::hs_emu::detail::dynamic_smem());
}

// ---------------------------------------------------------------- CUDA's keywords and built-in variables

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#ifndef __restrict__
#define __restrict__ __restrict
#endif

#define threadIdx (::hs_emu::this_thread().thread_idx)
#define blockIdx (::hs_emu::detail::block_idx())
#define blockDim (::hs_emu::detail::block_dim())
#define gridDim (::hs_emu::detail::grid_dim())

// glibc declares __expf and __logf itself (internal aliases), so functions of ours by those names would make calls
// ambiguous under `using namespace hs_emu`; macros sidestep that. <cmath> is included above, before they exist.
#define __expf(x) (::expf(x))
#define __logf(x) (::logf(x))

#define HS_LAUNCH(kernel, grid, block, smem, stream, ...)                                                         \
    ::hs_emu::launch(#kernel, kernel, ::hs_emu::dim3(grid), ::hs_emu::dim3(block), static_cast<size_t>(smem), \
                     stream __VA_OPT__(, ) __VA_ARGS__)

// tests/test_cuda_emu.cpp: the CPU emulator of CUDA (tests/cuda_emu) that the CUDA backend is tested on in CI.
//
// The kernels below are written as real CUDA kernels against cuda_compat.cuh, as the backend's are. The tests check
// that well-formed kernels compute what they would on a GPU (barriers, shuffles, indexing, shared memory, cuBLAS),
// and that the bugs the emulator exists to catch are caught: host pointers passed to kernels or copies, barriers in
// divergent code, bad launch configurations, reads of uninitialised memory, a missing __syncthreads.
#include <catch2/catch.hpp>

#define HS_CUDA_EMULATION 1
#include "backend/cuda/cuda_compat.cuh"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

HS_CUDA_NAMESPACE_PRELUDE

constexpr unsigned kFullMask = 0xffffffffu;

// ---------------------------------------------------------------- kernels

// Sum of each block's slice of x; any block size up to 1024. kSync = false drops the barrier between the stores
// and the tree: the race a GPU would (sometimes) show, which the emulator must turn into a wrong result.
template <bool kSync>
__global__ void block_sum_kernel(const float* __restrict__ x, float* __restrict__ out, int n) {
    __shared__ float partial[1024];
    const unsigned tid = threadIdx.x;
    const unsigned i = blockIdx.x * blockDim.x + tid;
    partial[tid] = i < unsigned(n) ? x[i] : 0.0f;
    if constexpr (kSync) __syncthreads();
    unsigned pow2 = 1;
    while (pow2 < blockDim.x) pow2 <<= 1;
    for (unsigned s = pow2 / 2; s > 0; s >>= 1) {
        if (tid < s && tid + s < blockDim.x) partial[tid] += partial[tid + s];
        __syncthreads();
    }
    if (tid == 0) out[blockIdx.x] = partial[0];
}

template <class T>
__device__ __forceinline__ T warp_sum_xor(T v) {
    for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
    return v;
}

template <class T>
__device__ __forceinline__ T warp_sum_down(T v) {
    for (unsigned offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(kFullMask, v, offset);
    return v;
}

// Every lane gets its warp's sum by butterfly; lane 0 gets it by shifting down.
template <class T>
__global__ void warp_sums_kernel(const T* __restrict__ x, T* __restrict__ xor_out, T* __restrict__ down_out) {
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    const T v = x[i];
    xor_out[i] = warp_sum_xor(v);
    const T d = warp_sum_down(v);
    if (threadIdx.x % warpSize == 0) down_out[i / warpSize] = d;
}

// Shuffles within segments of a warp (the width argument).
__global__ void segment_shuffle_kernel(const int* x, int* sum16, int* bcast8, int* down8, int* xor16w16, int* idx35) {
    const unsigned i = threadIdx.x;
    const int v = x[i];
    int s = v;
    for (int o = 8; o > 0; o /= 2) s += __shfl_xor_sync(kFullMask, s, o, 16);
    sum16[i] = s;
    bcast8[i] = __shfl_sync(kFullMask, v, 3, 8);
    down8[i] = __shfl_down_sync(kFullMask, v, 4, 8);
    xor16w16[i] = __shfl_xor_sync(kFullMask, v, 16, 16);
    idx35[i] = __shfl_sync(kFullMask, v, 35);
}

// Each thread writes its coordinates: a 2-D grid of 3-D blocks.
__global__ void index_kernel(unsigned* out) {
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned g = block * (blockDim.x * blockDim.y * blockDim.z) + thread;
    out[4 * g + 0] += 1;  // written exactly once
    out[4 * g + 1] = blockIdx.x | blockIdx.y << 8 | blockIdx.z << 16;
    out[4 * g + 2] = threadIdx.x | threadIdx.y << 8 | threadIdx.z << 16;
    out[4 * g + 3] = gridDim.x | gridDim.y << 8 | blockDim.x << 16 | blockDim.y << 20 | blockDim.z << 24;
}

__global__ void reverse_kernel(const float* __restrict__ in, float* __restrict__ out) {
    float* tile = hs_dynamic_smem<float>();
    const unsigned t = threadIdx.x, base = blockIdx.x * blockDim.x;
    tile[t] = in[base + t];
    __syncthreads();
    out[base + t] = tile[blockDim.x - 1 - t];
}

// Block 0 fills its tile, block 1 writes only tile[0]; both read the whole tile.
__global__ void partial_tile_kernel(float* out, unsigned* misaligned) {
    float* tile = hs_dynamic_smem<float>();
    if (reinterpret_cast<uintptr_t>(tile) % 16 != 0) *misaligned = 1;
    if (blockIdx.x == 0 || threadIdx.x == 0) tile[threadIdx.x] = 1.0f;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = tile[threadIdx.x];
}

// Lane 0 of each warp waits at __syncthreads while its other lanes wait at a shuffle that needs lane 0: a cycle.
__global__ void split_warp_kernel(float* out) {
    float v = float(threadIdx.x);
    if (threadIdx.x % warpSize == 0) {
        __syncthreads();
    } else {
        v = __shfl_xor_sync(kFullMask, v, 1);
    }
    out[threadIdx.x] = v;
}

// Threads past n return before the barrier: fine on sm_70+ (exited threads do not count), so fine here.
__global__ void early_exit_kernel(const float* in, float* out, int n) {
    __shared__ float s[256];
    const unsigned i = threadIdx.x;
    if (i >= unsigned(n)) return;
    s[i] = in[i];
    __syncthreads();
    out[i] = s[n - 1 - i];
}

// A full-warp shuffle after some lanes returned: lanes read lanes that are gone.
__global__ void shuffle_after_return_kernel(const float* in, float* out, int n) {
    const unsigned i = threadIdx.x;
    if (i >= unsigned(n)) return;
    float v = in[i];
    v += __shfl_xor_sync(kFullMask, v, 16);
    out[i] = v;
}

// Half of each warp shuffles, the other half waits at __syncwarp.
__global__ void mixed_warp_ops_kernel(float* out) {
    float v = float(threadIdx.x);
    if (threadIdx.x % warpSize < 16) {
        v = __shfl_xor_sync(kFullMask, v, 1);
    } else {
        __syncwarp();
    }
    out[threadIdx.x] = v;
}

__global__ void scale_kernel(const float* __restrict__ in, float* __restrict__ out, float s, int n) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) out[i] = s * in[i];
}

__global__ void fill_kernel(float* out, float value) {
    out[(blockIdx.x * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x] = value;
}

__global__ void atomic_count_kernel(float* fsum, double* dsum) {
    atomicAdd(fsum, 1.0f);
    atomicAdd(dsum, 0.5);
}

__global__ void math_kernel(const float* in, float* out) {
    const unsigned i = threadIdx.x;
    const float x = __ldg(in + i);
    out[6 * i + 0] = __expf(x);
    out[6 * i + 1] = __logf(x);
    out[6 * i + 2] = rsqrtf(x);
    out[6 * i + 3] = tanhf(x);
    out[6 * i + 4] = fmaxf(x, 1.0f);
    out[6 * i + 5] = fminf(sqrtf(x), 1.0f);
}

// Four block barriers per thread: the emulator's speed measure.
__global__ void barrier_stress_kernel(float* out) {
    __shared__ float s[1024];
    const unsigned t = threadIdx.x, n = blockDim.x;
    s[t] = float(t);
    __syncthreads();
    float v = s[(t + 1) % n];
    __syncthreads();
    s[t] = 2.0f * v;
    __syncthreads();
    v += s[(t + 2) % n];
    __syncthreads();
    out[blockIdx.x * n + t] = v;
}

// ---------------------------------------------------------------- helpers

// Drains the last error and a pending launch failure, so that each test starts clean.
void clear_errors() {
    (void)cudaDeviceSynchronize();
    (void)cudaGetLastError();
}

template <class T>
struct DeviceBuffer {
    T* ptr = nullptr;
    size_t count = 0;
    explicit DeviceBuffer(size_t n) : count(n) { REQUIRE(cudaMalloc(&ptr, n * sizeof(T)) == cudaSuccess); }
    DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
    ~DeviceBuffer() { (void)cudaFree(ptr); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    void upload(const std::vector<T>& host) {
        REQUIRE(host.size() == count);
        REQUIRE(cudaMemcpyAsync(ptr, host.data(), count * sizeof(T), cudaMemcpyHostToDevice, nullptr) == cudaSuccess);
    }
    std::vector<T> download() const {
        std::vector<T> host(count);
        REQUIRE(cudaMemcpyAsync(host.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost, nullptr) == cudaSuccess);
        return host;
    }
};

bool detail_has(const std::string& needle) {
    const std::string d = last_error_detail();
    INFO("detail: " << d);
    return d.find(needle) != std::string::npos;
}

std::vector<float> iota_floats(size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = scale * float(int(i % 97) - 40);
    return v;
}

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

// ---------------------------------------------------------------- execution model

TEST_CASE("cuda_emu: block reduction with __shared__ and __syncthreads, any block size", "[cuda_emu]") {
    clear_errors();
    for (const unsigned block : {1u, 32u, 48u, 100u, 256u, 1024u}) {
        INFO("block " << block);
        const int n = std::max(1, int(block) * 3 - 5);  // the last block is partial
        const unsigned grid = (unsigned(n) + block - 1) / block;
        const std::vector<float> x = iota_floats(size_t(n));
        DeviceBuffer<float> dx(x), dout(grid);
        HS_LAUNCH(block_sum_kernel<true>, grid, block, 0, nullptr, dx.ptr, dout.ptr, n);
        REQUIRE(cudaGetLastError() == cudaSuccess);
        const std::vector<float> out = dout.download();
        for (unsigned b = 0; b < grid; ++b) {
            double expect = 0;
            for (unsigned i = b * block; i < std::min(unsigned(n), (b + 1) * block); ++i) expect += x[i];
            CHECK(out[b] == float(expect));  // small integers: exact in any order
        }
    }
}

TEST_CASE("cuda_emu: a missing __syncthreads gives a wrong result", "[cuda_emu]") {
    clear_errors();
    const unsigned block = 256, grid = 4;
    const std::vector<float> x = iota_floats(block * grid);
    DeviceBuffer<float> dx(x), dout(grid);
    HS_LAUNCH(block_sum_kernel<false>, grid, block, 0, nullptr, dx.ptr, dout.ptr, int(block * grid));
    REQUIRE(cudaGetLastError() == cudaSuccess);  // a race is no launch error: the result is what shows it
    const std::vector<float> out = dout.download();
    int wrong = 0;
    for (unsigned b = 0; b < grid; ++b) {
        double expect = 0;
        for (unsigned i = b * block; i < (b + 1) * block; ++i) expect += x[i];
        wrong += out[b] != float(expect);
    }
    CHECK(wrong > 0);
}

template <class T>
void check_warp_sums() {
    const unsigned block = 128, grid = 2, n = block * grid;
    std::vector<T> x(n);
    for (unsigned i = 0; i < n; ++i) x[i] = T(i % 13 + 1);
    DeviceBuffer<T> dx(x), dxor(n), ddown(n / 32);
    HS_LAUNCH(warp_sums_kernel<T>, grid, block, 0, nullptr, dx.ptr, dxor.ptr, ddown.ptr);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<T> xo = dxor.download(), dn = ddown.download();
    for (unsigned w = 0; w < n / 32; ++w) {
        T expect = 0;
        for (unsigned l = 0; l < 32; ++l) expect += x[w * 32 + l];
        CHECK(dn[w] == expect);
        for (unsigned l = 0; l < 32; ++l) CHECK(xo[w * 32 + l] == expect);
    }
}

TEST_CASE("cuda_emu: warp-shuffle reductions (xor and down) for every shuffled type", "[cuda_emu]") {
    clear_errors();
    check_warp_sums<float>();
    check_warp_sums<double>();
    check_warp_sums<int>();
    check_warp_sums<unsigned>();
    check_warp_sums<int64_t>();
}

TEST_CASE("cuda_emu: shuffles within segments follow CUDA's width rules", "[cuda_emu]") {
    clear_errors();
    std::vector<int> x(64);
    for (int i = 0; i < 64; ++i) x[size_t(i)] = 100 + i * i;
    DeviceBuffer<int> dx(x), sum16(64), bcast8(64), down8(64), xor16(64), idx35(64);
    HS_LAUNCH(segment_shuffle_kernel, 1, 64, 0, nullptr, dx.ptr, sum16.ptr, bcast8.ptr, down8.ptr, xor16.ptr,
              idx35.ptr);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const auto s16 = sum16.download(), b8 = bcast8.download(), d8 = down8.download(), x16 = xor16.download(),
               i35 = idx35.download();
    for (int i = 0; i < 64; ++i) {
        INFO("thread " << i);
        int seg = 0;
        for (int j = i / 16 * 16; j < i / 16 * 16 + 16; ++j) seg += x[size_t(j)];
        CHECK(s16[size_t(i)] == seg);
        CHECK(b8[size_t(i)] == x[size_t(i / 8 * 8 + 3)]);
        CHECK(d8[size_t(i)] == (i % 8 + 4 < 8 ? x[size_t(i + 4)] : x[size_t(i)]));  // past the segment: own value
        // xor 16 with width 16: the lower half-warp would read the upper (a later segment): own value; the upper
        // half reads the lower (an earlier segment), as CUDA documents.
        const int lane = i % 32;
        CHECK(x16[size_t(i)] == (lane < 16 ? x[size_t(i)] : x[size_t(i - 16)]));
        CHECK(i35[size_t(i)] == x[size_t(i / 32 * 32 + 3)]);  // srcLane is taken modulo 32
    }
}

TEST_CASE("cuda_emu: 2-D grid of 3-D blocks sees its coordinates", "[cuda_emu]") {
    clear_errors();
    const dim3 grid(3, 2), block(4, 3, 2);
    const unsigned threads = 3 * 2 * 4 * 3 * 2;
    DeviceBuffer<unsigned> out(4 * threads);
    REQUIRE(cudaMemsetAsync(out.ptr, 0, out.count * sizeof(unsigned), nullptr) == cudaSuccess);
    HS_LAUNCH(index_kernel, grid, block, 0, nullptr, out.ptr);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<unsigned> o = out.download();
    unsigned g = 0;
    for (unsigned by = 0; by < 2; ++by) {
        for (unsigned bx = 0; bx < 3; ++bx) {
            for (unsigned tz = 0; tz < 2; ++tz) {
                for (unsigned ty = 0; ty < 3; ++ty) {
                    for (unsigned tx = 0; tx < 4; ++tx, ++g) {
                        INFO("thread " << g);
                        CHECK(o[4 * g + 0] == 1);
                        CHECK(o[4 * g + 1] == (bx | by << 8));
                        CHECK(o[4 * g + 2] == (tx | ty << 8 | tz << 16));
                        CHECK(o[4 * g + 3] == (3u | 2u << 8 | 4u << 16 | 3u << 20 | 2u << 24));
                    }
                }
            }
        }
    }
}

TEST_CASE("cuda_emu: dynamic shared memory, 16-byte aligned and NaN-filled for every block", "[cuda_emu]") {
    clear_errors();
    const unsigned block = 96, grid = 3;
    const std::vector<float> x = iota_floats(block * grid);
    DeviceBuffer<float> din(x), dout(block * grid);
    HS_LAUNCH(reverse_kernel, grid, block, block * sizeof(float), nullptr, din.ptr, dout.ptr);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<float> r = dout.download();
    for (unsigned b = 0; b < grid; ++b) {
        for (unsigned t = 0; t < block; ++t) CHECK(r[b * block + t] == x[b * block + block - 1 - t]);
    }

    DeviceBuffer<float> tiles(2 * 64);
    DeviceBuffer<unsigned> misaligned(std::vector<unsigned>{0});
    HS_LAUNCH(partial_tile_kernel, 2, 64, 64 * sizeof(float), nullptr, tiles.ptr, misaligned.ptr);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    CHECK(misaligned.download()[0] == 0);
    const std::vector<float> t = tiles.download();
    for (unsigned i = 0; i < 64; ++i) CHECK(t[i] == 1.0f);  // block 0 wrote its whole tile
    CHECK(t[64] == 1.0f);
    for (unsigned i = 65; i < 128; ++i) CHECK(std::isnan(t[i]));  // block 1 did not: poisoned, not block 0's values
}

TEST_CASE("cuda_emu: exited threads do not hold up __syncthreads", "[cuda_emu]") {
    clear_errors();
    const int n = 100;
    const std::vector<float> x = iota_floats(128);
    DeviceBuffer<float> din(x), dout(128);
    HS_LAUNCH(early_exit_kernel, 1, 128, 0, nullptr, din.ptr, dout.ptr, n);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<float> r = dout.download();
    for (int i = 0; i < n; ++i) CHECK(r[size_t(i)] == x[size_t(n - 1 - i)]);
    for (int i = n; i < 128; ++i) CHECK(std::isnan(r[size_t(i)]));
}

TEST_CASE("cuda_emu: a barrier cycle is a launch failure naming the kernel, not a hang", "[cuda_emu]") {
    clear_errors();
    DeviceBuffer<float> out(64);
    HS_LAUNCH(split_warp_kernel, 2, 64, 0, nullptr, out.ptr);
    CHECK(cudaPeekAtLastError() == cudaErrorLaunchFailure);
    CHECK(detail_has("split_warp_kernel"));
    CHECK(detail_has("deadlock"));
    CHECK(detail_has("__syncthreads"));
    CHECK(detail_has("__shfl_xor_sync"));
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
    // As on a GPU, where the kernel runs asynchronously, the next synchronize reports the failure too, once.
    CHECK(cudaStreamSynchronize(nullptr) == cudaErrorLaunchFailure);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    clear_errors();

    // The emulator is usable afterwards: its fibers were unwound, not leaked.
    const std::vector<float> x = iota_floats(64);
    DeviceBuffer<float> din(x), dsum(1);
    HS_LAUNCH(block_sum_kernel<true>, 1, 64, 0, nullptr, din.ptr, dsum.ptr, 64);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    double expect = 0;
    for (float v : x) expect += v;
    CHECK(dsum.download()[0] == float(expect));
}

TEST_CASE("cuda_emu: shuffles reading lanes that returned, do not exist, or sit elsewhere fail", "[cuda_emu]") {
    clear_errors();
    const std::vector<float> x = iota_floats(64);
    DeviceBuffer<float> din(x), dout(64);

    HS_LAUNCH(shuffle_after_return_kernel, 1, 32, 0, nullptr, din.ptr, dout.ptr, 20);
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
    CHECK(detail_has("shuffle_after_return_kernel"));
    CHECK(detail_has("did not take part"));
    clear_errors();

    HS_LAUNCH(shuffle_after_return_kernel, 1, 32, 0, nullptr, din.ptr, dout.ptr, 32);  // every lane: fine
    CHECK(cudaGetLastError() == cudaSuccess);

    DeviceBuffer<float> wx(48), wd(2);
    HS_LAUNCH(warp_sums_kernel<float>, 1, 48, 0, nullptr, din.ptr, wx.ptr, wd.ptr);  // last warp has 16 lanes
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
    CHECK(detail_has("does not exist"));
    clear_errors();

    HS_LAUNCH(mixed_warp_ops_kernel, 1, 64, 0, nullptr, dout.ptr);
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
    CHECK(detail_has("different warp operations"));
    clear_errors();
}

TEST_CASE("cuda_emu: a host pointer passed to a kernel is caught, naming the argument", "[cuda_emu]") {
    clear_errors();
    const int n = 64;
    std::vector<float> host = iota_floats(n);
    DeviceBuffer<float> din(host), dout(n);
    reset_stats();

    HS_LAUNCH(scale_kernel, 1, n, 0, nullptr, host.data(), dout.ptr, 2.0f, n);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(detail_has("scale_kernel"));
    CHECK(detail_has("argument 0"));
    CHECK(std::isnan(dout.download()[0]));  // it did not run

    HS_LAUNCH(scale_kernel, 1, n, 0, nullptr, din.ptr, host.data(), 2.0f, n);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(detail_has("argument 1"));

    float* freed = nullptr;
    REQUIRE(cudaMalloc(&freed, n * sizeof(float)) == cudaSuccess);
    REQUIRE(cudaFree(freed) == cudaSuccess);
    HS_LAUNCH(scale_kernel, 1, n, 0, nullptr, din.ptr, freed, 2.0f, n);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(stats().launches == 0);

    // nullptr, a pointer inside an allocation and its end pointer are all fine.
    HS_LAUNCH(scale_kernel, 1, n, 0, nullptr, din.ptr + 8, dout.ptr, 2.0f, n - 8);
    CHECK(cudaGetLastError() == cudaSuccess);
    HS_LAUNCH(scale_kernel, 1, 1, 0, nullptr, din.ptr + n, dout.ptr + n, 2.0f, 0);
    CHECK(cudaGetLastError() == cudaSuccess);
    HS_LAUNCH(scale_kernel, 1, 1, 0, nullptr, nullptr, nullptr, 2.0f, 0);
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK(stats().launches == 3);
    const std::vector<float> r = dout.download();
    for (int i = 0; i < n - 8; ++i) CHECK(r[size_t(i)] == 2.0f * host[size_t(i + 8)]);
}

TEST_CASE("cuda_emu: launch configurations are validated as CUDA does", "[cuda_emu]") {
    clear_errors();
    DeviceBuffer<float> out(2048);
    reset_stats();
    struct Bad {
        dim3 grid, block;
        size_t smem;
        cudaError_t error;
    };
    const Bad bad[] = {
        {dim3(1), dim3(0), 0, cudaErrorInvalidConfiguration},
        {dim3(1), dim3(1025), 0, cudaErrorInvalidConfiguration},
        {dim3(1), dim3(32, 32, 2), 0, cudaErrorInvalidConfiguration},
        {dim3(1), dim3(1, 1, 65), 0, cudaErrorInvalidConfiguration},
        {dim3(0), dim3(32), 0, cudaErrorInvalidConfiguration},
        {dim3(1, 65536), dim3(32), 0, cudaErrorInvalidConfiguration},
        {dim3(1, 1, 65536), dim3(32), 0, cudaErrorInvalidConfiguration},
        {dim3(1), dim3(32), 232449, cudaErrorInvalidConfiguration},
        {dim3(1), dim3(32), 48 * 1024 + 1, cudaErrorInvalidValue},  // above 48 KiB needs the opt-in
    };
    for (const Bad& b : bad) {
        INFO("grid " << b.grid.x << "," << b.grid.y << "," << b.grid.z << " block " << b.block.x << "," << b.block.y
                     << "," << b.block.z << " smem " << b.smem);
        HS_LAUNCH(fill_kernel, b.grid, b.block, b.smem, nullptr, out.ptr, 1.0f);
        CHECK(cudaGetLastError() == b.error);
        CHECK(detail_has("fill_kernel"));
    }
    CHECK(stats().launches == 0);
    CHECK(std::isnan(out.download()[0]));

    REQUIRE(cudaFuncSetAttribute(fill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024) == cudaSuccess);
    HS_LAUNCH(fill_kernel, 1, 32, 100 * 1024, nullptr, out.ptr, 1.0f);
    CHECK(cudaGetLastError() == cudaSuccess);
    HS_LAUNCH(fill_kernel, dim3(2, 1, 1), dim3(32, 32, 1), 0, nullptr, out.ptr, 3.0f);  // 1024 threads: the maximum
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK(out.download()[2047] == 3.0f);

    cudaStream_t stream = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
    HS_LAUNCH(fill_kernel, 1, 32, 0, stream, out.ptr, 4.0f);
    CHECK(cudaGetLastError() == cudaSuccess);
    REQUIRE(cudaStreamDestroy(stream) == cudaSuccess);
    HS_LAUNCH(fill_kernel, 1, 32, 0, stream, out.ptr, 5.0f);
    CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);
    CHECK(out.download()[0] == 4.0f);
}

TEST_CASE("cuda_emu: errors are sticky until cudaGetLastError", "[cuda_emu]") {
    clear_errors();
    CHECK(cudaGetLastError() == cudaSuccess);
    int local = 0;
    CHECK(cudaFree(&local) == cudaErrorInvalidValue);
    CHECK(detail_has("cudaFree"));
    float* p = nullptr;
    CHECK(cudaMalloc(&p, 16) == cudaSuccess);  // success does not clear the error
    CHECK(cudaPeekAtLastError() == cudaErrorInvalidValue);
    CHECK(cudaPeekAtLastError() == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK(cudaFree(p) == cudaSuccess);
    CHECK(cudaFree(p) == cudaErrorInvalidValue);  // twice
    CHECK(cudaFree(nullptr) == cudaSuccess);
    clear_errors();

    CHECK(std::string(cudaGetErrorString(cudaSuccess)) == "no error");
    CHECK(std::string(cudaGetErrorString(cudaErrorInvalidValue)) == "invalid argument");
    CHECK(std::string(cudaGetErrorString(cudaErrorMemoryAllocation)) == "out of memory");
    CHECK(std::string(cudaGetErrorString(cudaErrorInvalidConfiguration)) == "invalid configuration argument");
    CHECK(std::string(cudaGetErrorString(cudaErrorLaunchFailure)) == "unspecified launch failure");
    CHECK(std::string(cudaGetErrorString(cudaErrorNoDevice)) == "no CUDA-capable device is detected");
}

// ---------------------------------------------------------------- memory

TEST_CASE("cuda_emu: memcpy checks its kind against where the pointers live", "[cuda_emu]") {
    clear_errors();
    std::vector<float> host = iota_floats(32), back(32);
    DeviceBuffer<float> a(32), b(32);
    reset_stats();
    const size_t bytes = 32 * sizeof(float);
    CHECK(cudaMemcpyAsync(a.ptr, host.data(), bytes, cudaMemcpyHostToDevice) == cudaSuccess);
    CHECK(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice) == cudaSuccess);
    CHECK(cudaMemcpyAsync(back.data(), b.ptr, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
    CHECK(back == host);
    CHECK(stats().bytes_copied == 3 * bytes);

    CHECK(cudaMemcpyAsync(host.data(), a.ptr, bytes, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);  // swapped
    CHECK(detail_has("destination"));
    CHECK(cudaMemcpyAsync(a.ptr, b.ptr, bytes, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);  // src on device
    CHECK(detail_has("source"));
    CHECK(cudaMemcpyAsync(back.data(), host.data(), bytes, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
    CHECK(cudaMemcpyAsync(a.ptr, host.data(), bytes, cudaMemcpyDeviceToDevice) == cudaErrorInvalidValue);
    CHECK(cudaMemcpyAsync(a.ptr + 1, host.data(), bytes, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);  // overrun
    CHECK(detail_has("past the end"));
    CHECK(cudaMemcpyAsync(a.ptr, host.data(), bytes, static_cast<cudaMemcpyKind>(7)) ==
          cudaErrorInvalidMemcpyDirection);
    CHECK(stats().bytes_copied == 3 * bytes);  // none of the failed copies ran
    clear_errors();

    // cudaMemcpyDefault infers the direction; offsets inside an allocation are fine.
    CHECK(cudaMemcpyAsync(a.ptr + 4, host.data(), 8 * sizeof(float), cudaMemcpyDefault) == cudaSuccess);
    CHECK(cudaMemcpyAsync(back.data(), a.ptr + 4, 8 * sizeof(float), cudaMemcpyDefault) == cudaSuccess);
    for (int i = 0; i < 8; ++i) CHECK(back[size_t(i)] == host[size_t(i)]);
    CHECK(cudaMemcpyAsync(a.ptr, host.data(), 0, cudaMemcpyHostToDevice) == cudaSuccess);
}

TEST_CASE("cuda_emu: cudaMemcpy2DAsync copies pitched rows and checks pitches", "[cuda_emu]") {
    clear_errors();
    const size_t rows = 5, cols = 7, host_pitch = 11, dev_pitch = 16;  // in floats
    std::vector<float> host(rows * host_pitch);
    for (size_t i = 0; i < host.size(); ++i) host[i] = float(i);
    DeviceBuffer<float> dev(rows * dev_pitch);
    CHECK(cudaMemcpy2DAsync(dev.ptr, dev_pitch * 4, host.data(), host_pitch * 4, cols * 4, rows,
                            cudaMemcpyHostToDevice, nullptr) == cudaSuccess);
    const std::vector<float> d = dev.download();
    for (size_t r = 0; r < rows; ++r) {
        for (size_t c = 0; c < dev_pitch; ++c) {
            if (c < cols) {
                CHECK(d[r * dev_pitch + c] == host[r * host_pitch + c]);
            } else {
                CHECK(std::isnan(d[r * dev_pitch + c]));  // padding untouched
            }
        }
    }
    std::vector<float> back(rows * cols, 0.0f);
    CHECK(cudaMemcpy2DAsync(back.data(), cols * 4, dev.ptr, dev_pitch * 4, cols * 4, rows, cudaMemcpyDeviceToHost,
                            nullptr) == cudaSuccess);
    for (size_t r = 0; r < rows; ++r) {
        for (size_t c = 0; c < cols; ++c) CHECK(back[r * cols + c] == host[r * host_pitch + c]);
    }
    CHECK(cudaMemcpy2DAsync(dev.ptr, 4, host.data(), host_pitch * 4, cols * 4, rows, cudaMemcpyHostToDevice,
                            nullptr) == cudaErrorInvalidPitchValue);
    CHECK(cudaMemcpy2DAsync(dev.ptr, dev_pitch * 8, host.data(), host_pitch * 4, cols * 4, rows,
                            cudaMemcpyHostToDevice, nullptr) == cudaErrorInvalidValue);  // runs past the allocation
    clear_errors();
}

TEST_CASE("cuda_emu: memset, and uninitialised device memory reads as NaN", "[cuda_emu]") {
    clear_errors();
    DeviceBuffer<float> a(16);
    for (float v : a.download()) CHECK(std::isnan(v));
    DeviceBuffer<uint8_t> raw(5);
    for (uint8_t v : raw.download()) CHECK(v == 0xFF);
    CHECK(cudaMemsetAsync(a.ptr, 0, 8 * sizeof(float), nullptr) == cudaSuccess);
    const std::vector<float> v = a.download();
    for (int i = 0; i < 8; ++i) CHECK(v[size_t(i)] == 0.0f);
    for (int i = 8; i < 16; ++i) CHECK(std::isnan(v[size_t(i)]));
    float host[4];
    CHECK(cudaMemsetAsync(host, 0, sizeof host, nullptr) == cudaErrorInvalidValue);
    CHECK(cudaMemsetAsync(a.ptr, 0, 17 * sizeof(float), nullptr) == cudaErrorInvalidValue);
    clear_errors();
}

TEST_CASE("cuda_emu: a memory limit makes allocations fail with out of memory", "[cuda_emu]") {
    clear_errors();
    const Stats before = stats();
    REQUIRE(setenv("HS_EMU_MEMORY_LIMIT", std::to_string(before.bytes_live + (1 << 20)).c_str(), 1) == 0);
    size_t free_bytes = 0, total = 0;
    CHECK(cudaMemGetInfo(&free_bytes, &total) == cudaSuccess);
    CHECK(total == before.bytes_live + (1 << 20));
    CHECK(free_bytes == 1 << 20);
    void* p = nullptr;
    CHECK(cudaMalloc(&p, 2 << 20) == cudaErrorMemoryAllocation);
    CHECK(p == nullptr);
    CHECK(detail_has("HS_EMU_MEMORY_LIMIT"));
    CHECK(cudaGetLastError() == cudaErrorMemoryAllocation);
    CHECK(cudaMallocAsync(&p, 512 << 10, nullptr) == cudaSuccess);
    void* q = nullptr;
    CHECK(cudaMalloc(&q, 768 << 10) == cudaErrorMemoryAllocation);
    CHECK(cudaFreeAsync(p, nullptr) == cudaSuccess);
    CHECK(cudaMalloc(&q, 768 << 10) == cudaSuccess);
    CHECK(cudaFree(q) == cudaSuccess);
    REQUIRE(unsetenv("HS_EMU_MEMORY_LIMIT") == 0);
    CHECK(cudaMemGetInfo(&free_bytes, &total) == cudaSuccess);
    CHECK(total == size_t(16) << 30);
    clear_errors();
}

TEST_CASE("cuda_emu: stats count launches, allocations and copies", "[cuda_emu]") {
    clear_errors();
    const Stats s0 = stats();
    reset_stats();
    {
        DeviceBuffer<float> a(1000);
        CHECK(stats().allocations_live == s0.allocations_live + 1);
        CHECK(stats().bytes_live == s0.bytes_live + 4000);
        CHECK(stats().bytes_peak == s0.bytes_live + 4000);
        HS_LAUNCH(fill_kernel, 10, 100, 0, nullptr, a.ptr, 1.0f);
        HS_LAUNCH(fill_kernel, 10, 100, 0, nullptr, a.ptr, 2.0f);
        CHECK(stats().launches == 2);
        (void)a.download();
        CHECK(stats().bytes_copied == 4000);
    }
    CHECK(stats().allocations_live == s0.allocations_live);
    CHECK(stats().bytes_peak == s0.bytes_live + 4000);
    reset_stats();
    CHECK(stats().launches == 0);
    CHECK(stats().bytes_peak == s0.bytes_live);
}

// ---------------------------------------------------------------- the guard: device memory is off-limits to host code

// What a forked child did: how it ended, and what it wrote to stderr.
struct ChildOutcome {
    bool exited = false;
    int exit_code = -1;
    bool signaled = false;
    int signal = 0;
    std::string err;
};

// Runs f in a forked child (stdout discarded, stderr captured); the child exits with 0 when f returns, 99 when it
// throws. The host accesses that the guard must stop kill the process, so they can only be tested this way.
template <class F>
ChildOutcome run_in_child(F&& f) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    std::fflush(nullptr);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // Catch2's SIGABRT handler would report into the parent's output: the default action, as in a plain program,
        // without a core file.
        std::signal(SIGABRT, SIG_DFL);
        const struct rlimit no_core {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        const int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        try {
            f();
        } catch (...) {
            _exit(99);
        }
        _exit(0);
    }
    close(fds[1]);
    ChildOutcome out;
    char buf[4096];
    for (;;) {
        const ssize_t n = read(fds[0], buf, sizeof buf);
        if (n > 0) {
            out.err.append(buf, size_t(n));
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    close(fds[0]);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    out.exited = WIFEXITED(status);
    out.exit_code = out.exited ? WEXITSTATUS(status) : -1;
    out.signaled = WIFSIGNALED(status);
    out.signal = out.signaled ? WTERMSIG(status) : 0;
    return out;
}

// The guard's report for an access at p, offset bytes into a block of size bytes.
std::string guard_message(const void* p, size_t offset, size_t size) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "cuda emulator: host code touched device memory at 0x%" PRIxPTR
                  " (offset %zu of a cudaMalloc'ed block of %zu bytes): a host/device pointer mix-up; on a GPU this "
                  "is a segfault\n",
                  reinterpret_cast<uintptr_t>(p), offset, size);
    return buf;
}

// A host read of p in a child: it must die of SIGABRT with the guard's report.
void check_host_read_dies(const float* p, size_t offset_floats, size_t block_bytes) {
    const ChildOutcome r = run_in_child([&] {
        const volatile float* v = p;
        const float x = v[offset_floats];
        std::fprintf(stderr, "host read %g\n", double(x));
    });
    INFO("child's stderr: " << r.err);
    CHECK(r.signaled);
    CHECK(r.signal == SIGABRT);
    CHECK(r.err == guard_message(p + offset_floats, offset_floats * sizeof(float), block_bytes));
}

struct PointerPair {
    const float* in;
    float* out;
};

// Reaches its blocks only through a struct: the guard cannot know which blocks a kernel uses.
__global__ void pair_copy_kernel(PointerPair p, int n) {
    const int i = int(threadIdx.x);
    if (i < n) p.out[i] = p.in[i] + 1.0f;
}

TEST_CASE("cuda_emu: host code reading or writing device memory dies with a clear message", "[cuda_emu]") {
    clear_errors();
    DeviceBuffer<float> a(1000);  // 4000 bytes in one page
    check_host_read_dies(a.ptr, 3, 4000);

    const ChildOutcome w = run_in_child([&] {
        volatile unsigned char* bytes = reinterpret_cast<unsigned char*>(a.ptr);
        bytes[100] = 1;
        std::fprintf(stderr, "host write went through\n");
    });
    INFO("child's stderr: " << w.err);
    CHECK(w.signaled);
    CHECK(w.signal == SIGABRT);
    CHECK(w.err == guard_message(reinterpret_cast<unsigned char*>(a.ptr) + 100, 100, 4000));

    // Pages of a larger block, and the rounding after its end, are guarded alike.
    DeviceBuffer<float> big(3 * 4096 / sizeof(float) + 10);
    const size_t big_bytes = big.count * sizeof(float);
    check_host_read_dies(big.ptr, big.count - 1, big_bytes);
    check_host_read_dies(big.ptr, 2 * 4096 / sizeof(float) + 5, big_bytes);
    check_host_read_dies(big.ptr, big.count + 3, big_bytes);  // past the end, in the block's last page
    CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("cuda_emu: copies, memset, kernels and GEMM work on guarded memory, which stays guarded", "[cuda_emu]") {
    clear_errors();
    const int n = 256;
    DeviceBuffer<float> x(iota_floats(n)), y(n);
    HS_LAUNCH(scale_kernel, 2, 128, 0, nullptr, x.ptr, y.ptr, 2.0f, n);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    std::vector<float> host = y.download();
    for (int i = 0; i < n; ++i) CHECK(host[size_t(i)] == 2.0f * iota_floats(n)[size_t(i)]);

    // A kernel that reaches its blocks through a struct.
    HS_LAUNCH(pair_copy_kernel, 1, 256, 0, nullptr, PointerPair{y.ptr, x.ptr}, n);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    host = x.download();
    for (int i = 0; i < n; ++i) CHECK(host[size_t(i)] == 2.0f * iota_floats(n)[size_t(i)] + 1.0f);

    // Copies within one block, between blocks, pitched; memset.
    REQUIRE(cudaMemcpyAsync(y.ptr, y.ptr + 128, 128 * sizeof(float), cudaMemcpyDeviceToDevice, nullptr) ==
            cudaSuccess);
    REQUIRE(cudaMemcpyAsync(x.ptr, y.ptr, n * sizeof(float), cudaMemcpyDefault, nullptr) == cudaSuccess);
    REQUIRE(cudaMemcpy2DAsync(y.ptr, 8 * sizeof(float), x.ptr, 4 * sizeof(float), 4 * sizeof(float), 32,
                              cudaMemcpyDeviceToDevice, nullptr) == cudaSuccess);
    REQUIRE(cudaMemsetAsync(x.ptr + 200, 0, 56 * sizeof(float), nullptr) == cudaSuccess);
    const std::vector<float> xs = x.download(), ys = y.download();
    CHECK(xs[0] == 2.0f * iota_floats(n)[128]);
    CHECK(xs[199] == ys[199]);
    CHECK(xs[200] == 0.0f);
    CHECK(ys[8 * 31 + 3] == xs[4 * 31 + 3]);

    // GEMM: C (2x2) = A (2x3) * B (3x2), column-major, A and B in one block, C in another.
    cublasHandle_t h = nullptr;
    REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    const std::vector<float> ab = {1, 2, 3, 4, 5, 6, /* B: */ 1, 0, 1, 0, 1, 1};
    DeviceBuffer<float> dab(ab), dc(4);
    const float alpha = 1.0f, beta = 0.0f;
    REQUIRE(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &alpha, dab.ptr, CUDA_R_32F, 2, dab.ptr + 6, CUDA_R_32F,
                         3, &beta, dc.ptr, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
            CUBLAS_STATUS_SUCCESS);
    CHECK(dc.download() == std::vector<float>{1 + 5, 2 + 6, 3 + 5, 4 + 6});
    REQUIRE(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);

    // Every block is closed again afterwards.
    check_host_read_dies(x.ptr, 0, n * sizeof(float));
    check_host_read_dies(y.ptr, 5, n * sizeof(float));
    check_host_read_dies(dab.ptr, 7, ab.size() * sizeof(float));
    check_host_read_dies(dc.ptr, 1, 4 * sizeof(float));
    CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("cuda_emu: HS_EMU_GUARD=0 leaves device memory readable by the host", "[cuda_emu]") {
    clear_errors();
    const ChildOutcome r = run_in_child([] {
        setenv("HS_EMU_GUARD", "0", 1);
        float* p = nullptr;
        if (cudaMalloc(&p, 64 * sizeof(float)) != cudaSuccess) _exit(3);
        const std::vector<float> host = iota_floats(64);
        if (cudaMemcpyAsync(p, host.data(), 64 * sizeof(float), cudaMemcpyHostToDevice, nullptr)) _exit(4);
        HS_LAUNCH(scale_kernel, 1, 64, 0, nullptr, p, p, 3.0f, 64);
        if (cudaGetLastError() != cudaSuccess) _exit(5);
        const volatile float* v = p;
        std::fprintf(stderr, "host read %g\n", double(v[10]));
        p[11] = 7.0f;  // and a write
        if (cudaFree(p) != cudaSuccess) _exit(6);
    });
    INFO("child's stderr: " << r.err);
    CHECK(r.exited);
    CHECK(r.exit_code == 0);
    CHECK(r.err == "host read " + std::to_string(int(3.0f * iota_floats(64)[10])) + "\n");
}

TEST_CASE("cuda_emu: other faults go to the previous SIGSEGV handler", "[cuda_emu]") {
    clear_errors();
    static void* own_page = nullptr;
    own_page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(own_page != MAP_FAILED);
    DeviceBuffer<float> a(16);
    // A handler of the program's own, installed before the emulator (re)installs its own in front of it.
    const auto with_own_handler = [&](auto touch) {
        return run_in_child([&] {
            struct sigaction sa {};
            sa.sa_flags = SA_SIGINFO;
            sigemptyset(&sa.sa_mask);
            sa.sa_sigaction = [](int, siginfo_t* info, void*) {
                const char* what = info->si_addr == own_page ? "own page\n" : "elsewhere\n";
                (void)!write(STDERR_FILENO, what, std::strlen(what));
                _exit(42);
            };
            sigaction(SIGSEGV, &sa, nullptr);
            if (cudaMemsetAsync(a.ptr, 0, 16, nullptr) != cudaSuccess) _exit(3);  // a device operation
            touch();
        });
    };
    ChildOutcome r = with_own_handler([] { *static_cast<volatile char*>(own_page) = 1; });
    INFO("child's stderr: " << r.err);
    CHECK(r.exited);
    CHECK(r.exit_code == 42);
    CHECK(r.err == "own page\n");
    // A freed block is no longer device memory: its fault is not the guard's either.
    float* freed = nullptr;
    REQUIRE(cudaMalloc(&freed, 64) == cudaSuccess);
    REQUIRE(cudaFree(freed) == cudaSuccess);
    r = with_own_handler([freed] { (void)*static_cast<volatile float*>(freed); });
    CHECK(r.exited);
    CHECK(r.exit_code == 42);
    CHECK(r.err == "elsewhere\n");
    // And device memory, with that handler behind the guard's.
    r = with_own_handler([&] { (void)*static_cast<volatile float*>(a.ptr + 2); });
    CHECK(r.signaled);
    CHECK(r.signal == SIGABRT);
    CHECK(r.err == guard_message(a.ptr + 2, 8, 64));
    munmap(own_page, 4096);
}

// ---------------------------------------------------------------- device, streams, events, device functions

TEST_CASE("cuda_emu: device queries, and HS_EMU_NO_DEVICE for the no-GPU path", "[cuda_emu]") {
    clear_errors();
    int count = -1, dev = -1;
    CHECK(cudaGetDeviceCount(&count) == cudaSuccess);
    CHECK(count == 1);
    CHECK(cudaSetDevice(0) == cudaSuccess);
    CHECK(cudaGetDevice(&dev) == cudaSuccess);
    CHECK(dev == 0);
    CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
    cudaDeviceProp prop{};
    CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess);
    CHECK(std::string(prop.name) == "headsweep CUDA emulator (CPU)");
    CHECK(prop.totalGlobalMem == size_t(16) << 30);
    CHECK(prop.major == 9);
    CHECK(prop.minor == 0);
    CHECK(prop.multiProcessorCount == 4);
    cudaMemPool_t pool = nullptr;
    CHECK(cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess);
    uint64_t threshold = UINT64_MAX;
    CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) == cudaSuccess);

    REQUIRE(setenv("HS_EMU_NO_DEVICE", "1", 1) == 0);
    CHECK(cudaGetDeviceCount(&count) == cudaErrorNoDevice);
    CHECK(count == 0);
    CHECK(cudaSetDevice(0) == cudaErrorNoDevice);
    void* p = nullptr;
    CHECK(cudaMalloc(&p, 16) == cudaErrorNoDevice);
    cublasHandle_t h = nullptr;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_NOT_INITIALIZED);
    REQUIRE(unsetenv("HS_EMU_NO_DEVICE") == 0);
    CHECK(cudaGetDeviceCount(&count) == cudaSuccess);
    clear_errors();
}

TEST_CASE("cuda_emu: events time the emulator, and streams are checked handles", "[cuda_emu]") {
    clear_errors();
    cudaStream_t s = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    cudaEvent_t start = nullptr, end = nullptr;
    REQUIRE(cudaEventCreate(&start) == cudaSuccess);
    REQUIRE(cudaEventCreate(&end) == cudaSuccess);
    float ms = -1.0f;
    CHECK(cudaEventElapsedTime(&ms, start, end) == cudaErrorInvalidResourceHandle);  // not recorded yet
    CHECK(cudaEventRecord(start, s) == cudaSuccess);
    DeviceBuffer<float> a(1024);
    HS_LAUNCH(fill_kernel, 4, 256, 0, s, a.ptr, 1.0f);
    CHECK(cudaEventRecord(end, s) == cudaSuccess);
    CHECK(cudaEventSynchronize(end) == cudaSuccess);
    CHECK(cudaEventElapsedTime(&ms, start, end) == cudaSuccess);
    CHECK(ms >= 0.0f);
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(cudaEventDestroy(start) == cudaSuccess);
    CHECK(cudaEventDestroy(end) == cudaSuccess);
    CHECK(cudaEventDestroy(end) == cudaErrorInvalidResourceHandle);
    CHECK(cudaStreamDestroy(s) == cudaSuccess);
    CHECK(cudaStreamSynchronize(s) == cudaErrorInvalidResourceHandle);
    clear_errors();
}

TEST_CASE("cuda_emu: atomicAdd and the math built-ins", "[cuda_emu]") {
    clear_errors();
    DeviceBuffer<float> fsum(std::vector<float>{0.0f});
    DeviceBuffer<double> dsum(std::vector<double>{0.0});
    HS_LAUNCH(atomic_count_kernel, 7, 96, 0, nullptr, fsum.ptr, dsum.ptr);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    CHECK(fsum.download()[0] == 7.0f * 96.0f);
    CHECK(dsum.download()[0] == 7.0 * 96.0 * 0.5);

    const std::vector<float> x = {0.25f, 1.0f, 2.0f, 9.0f};
    DeviceBuffer<float> din(x), dout(6 * x.size());
    HS_LAUNCH(math_kernel, 1, unsigned(x.size()), 0, nullptr, din.ptr, dout.ptr);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<float> r = dout.download();
    for (size_t i = 0; i < x.size(); ++i) {
        CHECK(r[6 * i + 0] == std::exp(x[i]));
        CHECK(r[6 * i + 1] == std::log(x[i]));
        CHECK(r[6 * i + 2] == Approx(1.0 / std::sqrt(double(x[i]))).epsilon(1e-6));
        CHECK(r[6 * i + 3] == std::tanh(x[i]));
        CHECK(r[6 * i + 4] == std::max(x[i], 1.0f));
        CHECK(r[6 * i + 5] == std::min(std::sqrt(x[i]), 1.0f));
    }
    CHECK_THROWS(threadIdx.x);  // outside a kernel there is no thread
}

TEST_CASE("cuda_emu: speed of 256 blocks x 256 threads with 4 __syncthreads each", "[cuda_emu]") {
    clear_errors();
    const unsigned grid = 256, block = 256;
    DeviceBuffer<float> out(grid * block);
    HS_LAUNCH(barrier_stress_kernel, grid, block, 0, nullptr, out.ptr);  // warm the stack pool
    const auto t0 = std::chrono::steady_clock::now();
    HS_LAUNCH(barrier_stress_kernel, grid, block, 0, nullptr, out.ptr);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<float> r = out.download();
    for (unsigned b = 0; b < grid; b += 37) {
        for (unsigned t = 0; t < block; ++t) {
            CHECK(r[b * block + t] == float((t + 1) % block) + 2.0f * float((t + 3) % block));
        }
    }
    INFO("one launch of 65536 threads x 4 barriers took " << seconds << " s");
    CHECK(seconds < 5.0);  // typically ~0.03 s; a generous bound so that only a pathological slowdown fails CI
}

// ---------------------------------------------------------------- cuBLAS

struct GemmTypes {
    cudaDataType ab, c;
};

size_t type_bytes(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

// Values of type t, stored as raw bytes, and their exact float values.
std::vector<uint8_t> encode(const std::vector<float>& v, cudaDataType t) {
    std::vector<uint8_t> out(v.size() * type_bytes(t));
    for (size_t i = 0; i < v.size(); ++i) {
        if (t == CUDA_R_32F) {
            std::memcpy(out.data() + 4 * i, &v[i], 4);
        } else {
            const uint16_t b = t == CUDA_R_16BF ? hs_from_float<hs_bf16>(v[i]).bits : hs_from_float<hs_f16>(v[i]).bits;
            std::memcpy(out.data() + 2 * i, &b, 2);
        }
    }
    return out;
}
std::vector<float> decode(const std::vector<uint8_t>& raw, cudaDataType t) {
    std::vector<float> out(raw.size() / type_bytes(t));
    for (size_t i = 0; i < out.size(); ++i) {
        if (t == CUDA_R_32F) {
            std::memcpy(&out[i], raw.data() + 4 * i, 4);
        } else {
            uint16_t b;
            std::memcpy(&b, raw.data() + 2 * i, 2);
            out[i] = t == CUDA_R_16BF ? hs_to_float(hs_bf16{b}) : hs_to_float(hs_f16{b});
        }
    }
    return out;
}

void check_gemm(cublasHandle_t h, GemmTypes types, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                int pad, float alpha, float beta, std::mt19937& rng) {
    INFO("types " << types.ab << "/" << types.c << " ta " << ta << " tb " << tb << " m " << m << " n " << n << " k "
                  << k << " pad " << pad << " alpha " << alpha << " beta " << beta);
    const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
    const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
    const int lda = std::max(1, a_rows) + pad, ldb = std::max(1, b_rows) + pad, ldc = std::max(1, m) + pad;
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    auto random = [&](size_t count) {
        std::vector<float> v(count);
        for (float& x : v) x = dist(rng);
        return v;
    };
    const std::vector<float> a = decode(encode(random(size_t(lda) * a_cols), types.ab), types.ab);
    const std::vector<float> b = decode(encode(random(size_t(ldb) * b_cols), types.ab), types.ab);
    std::vector<float> c = random(size_t(ldc) * n);
    if (beta == 0.0f) std::fill(c.begin(), c.end(), std::numeric_limits<float>::quiet_NaN());
    c = decode(encode(c, types.c), types.c);  // as stored

    DeviceBuffer<uint8_t> da(encode(a, types.ab)), db(encode(b, types.ab)), dc(encode(c, types.c));
    REQUIRE(cublasGemmEx(h, ta, tb, m, n, k, &alpha, da.ptr, types.ab, lda, db.ptr, types.ab, ldb, &beta, dc.ptr,
                         types.c, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
    const std::vector<float> got = decode(dc.download(), types.c);

    // The naive triple loop on cuBLAS's definition: op(A)(i,p) and op(B)(p,j) straight from the column-major layout.
    auto opa = [&](int i, int p) { return ta == CUBLAS_OP_N ? a[size_t(i + p * lda)] : a[size_t(p + i * lda)]; };
    auto opb = [&](int p, int j) { return tb == CUBLAS_OP_N ? b[size_t(p + j * ldb)] : b[size_t(j + p * ldb)]; };
    const double tol = types.c == CUDA_R_32F ? 1e-6 : types.c == CUDA_R_16F ? 1.0 / 1024 : 1.0 / 128;
    for (int j = 0; j < n; ++j) {
        for (int i = 0; i < ldc; ++i) {
            const size_t idx = size_t(i + j * ldc);
            if (i >= m) {  // padding rows of C are untouched
                CHECK(bits(got[idx]) == bits(c[idx]));
                continue;
            }
            double ref = 0;
            for (int p = 0; p < k; ++p) ref += double(opa(i, p)) * double(opb(p, j));
            ref = double(alpha) * ref + (beta == 0.0f ? 0.0 : double(beta) * double(c[idx]));
            CHECK(std::abs(double(got[idx]) - ref) <= tol * std::max(1.0, std::abs(ref)));
        }
    }
}

TEST_CASE("cuda_emu: cublasGemmEx matches a naive column-major GEMM", "[cuda_emu]") {
    clear_errors();
    cublasHandle_t h = nullptr;
    REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    REQUIRE(cublasSetStream(h, nullptr) == CUBLAS_STATUS_SUCCESS);
    REQUIRE(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS);
    std::mt19937 rng(7);
    const GemmTypes types[] = {{CUDA_R_32F, CUDA_R_32F},
                               {CUDA_R_16BF, CUDA_R_32F},
                               {CUDA_R_16F, CUDA_R_32F},
                               {CUDA_R_16BF, CUDA_R_16BF},
                               {CUDA_R_16F, CUDA_R_16F}};
    struct Shape {
        int m, n, k, pad;
    };
    const Shape shapes[] = {{5, 7, 3, 0}, {17, 4, 9, 3}, {1, 1, 1, 0}, {33, 2, 64, 1}};
    for (const GemmTypes& t : types) {
        for (const cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T}) {
            for (const cublasOperation_t tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
                for (const Shape& s : shapes) check_gemm(h, t, ta, tb, s.m, s.n, s.k, s.pad, 1.5f, 0.5f, rng);
                check_gemm(h, t, ta, tb, 6, 5, 4, 2, 1.0f, 0.0f, rng);  // beta 0 over a NaN-filled C
                check_gemm(h, t, ta, tb, 6, 5, 0, 0, 1.0f, 2.0f, rng);  // k = 0: C = beta * C
            }
        }
    }
    REQUIRE(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
}

TEST_CASE("cuda_emu: cublasGemmEx rejects what cuBLAS rejects", "[cuda_emu]") {
    clear_errors();
    cublasHandle_t h = nullptr;
    REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    DeviceBuffer<float> a(64), b(64), c(64);
    std::vector<float> host(64, 1.0f);
    const float one = 1.0f, zero = 0.0f;
    auto gemm = [&](cublasOperation_t ta, int m, int n, int k, const void* A, int lda, int ldb, int ldc,
                    cudaDataType ct = CUDA_R_32F, cublasComputeType_t compute = CUBLAS_COMPUTE_32F) {
        return cublasGemmEx(h, ta, CUBLAS_OP_N, m, n, k, &one, A, CUDA_R_32F, lda, b.ptr, CUDA_R_32F, ldb, &zero,
                            c.ptr, ct, ldc, compute, CUBLAS_GEMM_DEFAULT);
    };
    CHECK(gemm(CUBLAS_OP_N, 4, 4, 4, a.ptr, 4, 4, 4) == CUBLAS_STATUS_SUCCESS);
    CHECK(gemm(CUBLAS_OP_N, -1, 4, 4, a.ptr, 4, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(gemm(CUBLAS_OP_N, 4, 4, 4, a.ptr, 3, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);   // lda < m
    CHECK(gemm(CUBLAS_OP_T, 4, 4, 5, a.ptr, 4, 5, 4) == CUBLAS_STATUS_INVALID_VALUE);   // transposed: lda < k
    CHECK(gemm(CUBLAS_OP_N, 4, 4, 4, a.ptr, 4, 3, 4) == CUBLAS_STATUS_INVALID_VALUE);   // ldb < k
    CHECK(gemm(CUBLAS_OP_N, 4, 4, 4, a.ptr, 4, 4, 3) == CUBLAS_STATUS_INVALID_VALUE);   // ldc < m
    CHECK(gemm(CUBLAS_OP_N, 4, 4, 4, host.data(), 4, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);  // host pointer
    CHECK(detail_has("A ("));
    CHECK(gemm(CUBLAS_OP_N, 4, 4, 4, a.ptr, 4, 4, 40) == CUBLAS_STATUS_INVALID_VALUE);  // C runs past its allocation
    CHECK(detail_has("C ("));
    CHECK(gemm(CUBLAS_OP_N, 4, 4, 4, a.ptr, 4, 4, 4, CUDA_R_16BF) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(gemm(CUBLAS_OP_N, 4, 4, 4, a.ptr, 4, 4, 4, CUDA_R_32F, static_cast<cublasComputeType_t>(77)) ==
          CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(std::string(cublasGetStatusString(CUBLAS_STATUS_SUCCESS)) !=
          std::string(cublasGetStatusString(CUBLAS_STATUS_INVALID_VALUE)));
    REQUIRE(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
    CHECK(gemm(CUBLAS_OP_N, 4, 4, 4, a.ptr, 4, 4, 4) == CUBLAS_STATUS_NOT_INITIALIZED);
    CHECK(cudaPeekAtLastError() == cudaSuccess);  // cuBLAS statuses are not CUDA errors
}

// ---------------------------------------------------------------- 16-bit types (without CUDA's headers)

// Without CUDA's headers these are the only checks of the conversions; with them, test_half_vs_cuda.cpp compares
// with CUDA's own bit for bit.
TEST_CASE("cuda_emu: hs_bf16 and hs_f16 round to nearest even", "[cuda_emu]") {
    auto bf = [](float f) { return hs_from_float<hs_bf16>(f).bits; };
    auto hf = [](float f) { return hs_from_float<hs_f16>(f).bits; };
    CHECK(bf(1.0f) == 0x3f80);
    CHECK(bf(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie, even below
    CHECK(bf(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie, even above
    CHECK(bf(std::bit_cast<float>(0x3f808001u)) == 0x3f81);
    CHECK(bf(std::numeric_limits<float>::max()) == 0x7f80);  // rounds up to inf
    CHECK(bf(-0.0f) == 0x8000);
    CHECK(bf(std::numeric_limits<float>::quiet_NaN()) == 0x7fff);
    CHECK(hf(1.0f) == 0x3c00);
    CHECK(hf(65504.0f) == 0x7bff);
    CHECK(hf(65519.0f) == 0x7bff);
    CHECK(hf(65520.0f) == 0x7c00);  // the tie above the largest half rounds to inf
    CHECK(hf(-1e9f) == 0xfc00);
    CHECK(hf(0x1p-24f) == 0x0001);   // smallest subnormal
    CHECK(hf(0x1p-25f) == 0x0000);   // tie to even: zero
    CHECK(hf(0x1.8p-24f) == 0x0002);  // tie to even: 2
    CHECK(hf(0x1p-14f) == 0x0400);   // smallest normal
    CHECK(hf(std::numeric_limits<float>::infinity()) == 0x7c00);
    CHECK(hf(-std::numeric_limits<float>::quiet_NaN()) == 0x7fff);
    CHECK(hs_to_float(hs_f16{0x0001}) == 0x1p-24f);
    CHECK(hs_to_float(hs_f16{0xfbff}) == -65504.0f);
    CHECK(hs_to_float(hs_bf16{0xc040}) == -3.0f);
    CHECK(std::isnan(hs_to_float(hs_f16{0x7e00})));
    for (uint32_t h = 0; h < 0x10000; ++h) {  // every non-NaN 16-bit value survives a round trip
        const auto b = uint16_t(h);
        if (!std::isnan(hs_to_float(hs_bf16{b}))) REQUIRE(bf(hs_to_float(hs_bf16{b})) == b);
        if (!std::isnan(hs_to_float(hs_f16{b}))) REQUIRE(hf(hs_to_float(hs_f16{b})) == b);
    }
}

}  // namespace

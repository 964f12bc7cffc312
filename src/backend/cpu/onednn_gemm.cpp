// backend/cpu/onednn_gemm.cpp: see onednn_gemm.hpp.
#include "backend/cpu/onednn_gemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "backend/cpu/thread_pool.hpp"
#include "gguf/quant.hpp"
#include "util/error.hpp"

#ifdef HEADSWEEP_HAVE_ONEDNN
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace hs::cpu {

bool onednn_bf16_cpu_ok(const CpuFeatures& cpu) {
    return (cpu.amx_tile && cpu.amx_bf16) || (cpu.avx512_core() && cpu.avx512_bf16);
}

bool onednn_disabled_by_env() {
    const char* v = std::getenv("HEADSWEEP_ONEDNN");
    if (!v) return false;
    const std::string s = v;
    return s == "off" || s == "0" || s == "no" || s == "false";
}

std::string bf16_prefill_tag(const std::string& native_prefill) {
    if (native_prefill == "f32" || onednn_disabled_by_env()) return "";
    return OnednnBf16Gemm::create(detect_cpu_features()) ? "onednn-bf16<" + std::to_string(kOnednnMaxRows) : "";
}

#ifdef HEADSWEEP_HAVE_ONEDNN

bool onednn_built() { return true; }

std::string onednn_version() {
    const dnnl_version_t* v = dnnl_version();
    const char* rt = v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : v->cpu_runtime == DNNL_RUNTIME_TBB ? "TBB" : "other";
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
           " (" + rt + ")";
}

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// One sequential matmul primitive (created with OpenMP's thread count at 1, so oneDNN opens no parallel region).
struct Prim {
    dnnl::matmul::primitive_desc pd;
    dnnl::matmul prim;
    bool fast = false;  // a brgemm kernel (else the caller's path runs)
};

// Runs f with OpenMP's thread count for this thread at 1 (oneDNN's OpenMP runtime then runs sequentially, and
// creates no OpenMP workers whose idle spinning would take the cores from our threads), the count restored after.
template <typename F>
void with_one_omp_thread(F&& f) {
    const int before = omp_get_max_threads();
    if (before != 1) omp_set_num_threads(1);
    try {
        f();
    } catch (...) {
        if (before != 1) omp_set_num_threads(before);
        throw;
    }
    if (before != 1) omp_set_num_threads(before);
}

// W rows per slice: the rows split evenly over the threads in multiples of 16 (oneDNN's N blocking), at least 64.
int64_t slice_rows(int64_t rows, int threads) {
    if (threads <= 1) return rows;
    const int64_t per = (rows + threads - 1) / threads;
    return std::min(rows, std::max<int64_t>(64, (per + 15) / 16 * 16));
}

}  // namespace

struct OnednnBf16Gemm::Impl {
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    std::vector<dnnl::stream> streams;  // one per slice (thread)
    std::string kernel;
    std::mutex mu;  // one product at a time: the primitive cache and the buffers
    std::map<std::tuple<int64_t, int64_t, int64_t>, Prim> cache;  // (n, slice rows, cols)
    std::vector<uint16_t> xb;                    // the activations in bf16
    std::vector<std::vector<uint8_t>> scratch;  // one user scratchpad per slice
    std::vector<std::vector<float>> ys;         // one dense output per slice, copied (added) into y

    // y[n, nr] = x16[n, cols] . W[nr rows]^T, W as stored (cols x nr, "ba"), y dense: with a row stride on y,
    // oneDNN 2.6 picks gemm:jit instead of its brgemm kernel. Created with one OpenMP thread.
    Prim& prim(int64_t n, int64_t nr, int64_t cols) {
        const auto key = std::make_tuple(n, nr, cols);
        auto it = cache.find(key);
        if (it != cache.end()) return it->second;
        if (cache.size() >= 1024) cache.clear();  // bounded: distinct prompt lengths x matrix shapes
        dnnl::memory::desc xd({n, cols}, dt::bf16, tag::ab), wd({cols, nr}, dt::bf16, tag::ba),
            yd({n, nr}, dt::f32, tag::ab);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per slice: the slices run concurrently
        Prim p;
        with_one_omp_thread([&] {
            p.pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(xd, wd, yd), attr, eng);
            p.fast = std::string(p.pd.impl_info_str()).rfind("brg", 0) == 0;
            p.prim = dnnl::matmul(p.pd);
        });
        return cache.emplace(key, std::move(p)).first->second;
    }
};

OnednnBf16Gemm::OnednnBf16Gemm(std::unique_ptr<Impl> p) : p_(std::move(p)) {}
OnednnBf16Gemm::~OnednnBf16Gemm() = default;

std::unique_ptr<OnednnBf16Gemm> OnednnBf16Gemm::create(const CpuFeatures& cpu, std::string* why) {
    if (!onednn_bf16_cpu_ok(cpu)) {
        if (why) *why = "the CPU has neither AMX-BF16 nor AVX-512-BF16";
        return nullptr;
    }
    auto impl = std::make_unique<Impl>();
    // The kernel oneDNN picks for a prefill-sized product (for labels; every shape is checked again on use).
    const Prim& p = impl->prim(32, 576, 576);
    impl->kernel = p.pd.impl_info_str();
    if (!p.fast) {
        if (why) *why = "oneDNN offers no brgemm kernel here (" + impl->kernel + ")";
        return nullptr;
    }
    return std::unique_ptr<OnednnBf16Gemm>(new OnednnBf16Gemm(std::move(impl)));
}

bool OnednnBf16Gemm::matmul(const float* x, const uint16_t* w, int64_t rows, int64_t cols, float* y, int64_t n,
                            bool accumulate, ThreadPool* pool) {
    if (n <= 0 || rows <= 0 || cols <= 0) return false;
    Impl& m = *p_;
    std::lock_guard<std::mutex> lock(m.mu);
    const int threads = pool ? pool->size() : 1;
    const int64_t sr = slice_rows(rows, threads);
    const int64_t slices = (rows + sr - 1) / sr;
    Prim* full = &m.prim(n, sr, cols);
    Prim* last = rows % sr ? &m.prim(n, rows % sr, cols) : full;
    if (!full->fast || !last->fast) return false;
    const size_t count = static_cast<size_t>(n * cols);
    if (m.xb.size() < count) m.xb.resize(count);
    for (size_t i = 0; i < count; ++i) m.xb[i] = fp32_to_bf16(x[i]);
    if (int64_t(m.streams.size()) < slices) {
        m.streams.resize(size_t(slices));
        m.scratch.resize(size_t(slices));
        m.ys.resize(size_t(slices));
    }
    for (int64_t s = 0; s < slices; ++s) {
        if (!m.streams[size_t(s)]) m.streams[size_t(s)] = dnnl::stream(m.eng);
        const Prim& p = s + 1 < slices ? *full : *last;
        const size_t need = p.pd.scratchpad_desc().get_size();
        if (m.scratch[size_t(s)].size() < need) m.scratch[size_t(s)].resize(need);
        if (m.ys[size_t(s)].size() < size_t(n * sr)) m.ys[size_t(s)].resize(size_t(n * sr));
    }
    dnnl::memory xm({{n, cols}, dt::bf16, tag::ab}, m.eng, m.xb.data());
    auto run = [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s) {
            const Prim& p = s + 1 < slices ? *full : *last;
            const int64_t r0 = s * sr, nr = std::min(sr, rows - r0);
            float* ys = m.ys[size_t(s)].data();
            dnnl::memory wm({{cols, nr}, dt::bf16, tag::ba}, m.eng, const_cast<uint16_t*>(w) + r0 * cols);
            dnnl::memory ym({{n, nr}, dt::f32, tag::ab}, m.eng, ys);
            dnnl::memory sm(p.pd.scratchpad_desc(), m.eng, m.scratch[size_t(s)].data());
            with_one_omp_thread([&] {
                p.prim.execute(m.streams[size_t(s)], {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm},
                                                      {DNNL_ARG_DST, ym}, {DNNL_ARG_SCRATCHPAD, sm}});
                m.streams[size_t(s)].wait();
            });
            for (int64_t i = 0; i < n; ++i) {
                float* dst = y + i * rows + r0;
                const float* src = ys + i * nr;
                if (accumulate)
                    for (int64_t j = 0; j < nr; ++j) dst[j] += src[j];
                else
                    std::memcpy(dst, src, sizeof(float) * size_t(nr));
            }
        }
    };
    if (pool && slices > 1) pool->parallel_for(slices, run);
    else run(0, slices);
    return true;
}

const std::string& OnednnBf16Gemm::kernel() const { return p_->kernel; }

std::string OnednnBf16Gemm::describe() const {
    return onednn_version() + " " + p_->kernel + ", bf16 activations, below " + std::to_string(kOnednnMaxRows) +
           " rows";
}

#else  // no oneDNN in this build

bool onednn_built() { return false; }
std::string onednn_version() { return ""; }

struct OnednnBf16Gemm::Impl {};
OnednnBf16Gemm::OnednnBf16Gemm(std::unique_ptr<Impl> p) : p_(std::move(p)) {}
OnednnBf16Gemm::~OnednnBf16Gemm() = default;

std::unique_ptr<OnednnBf16Gemm> OnednnBf16Gemm::create(const CpuFeatures&, std::string* why) {
    if (why) *why = "not built with oneDNN (HEADSWEEP_WITH_ONEDNN)";
    return nullptr;
}
bool OnednnBf16Gemm::matmul(const float*, const uint16_t*, int64_t, int64_t, float*, int64_t, bool, ThreadPool*) {
    return false;
}
const std::string& OnednnBf16Gemm::kernel() const {
    static const std::string none;
    return none;
}
std::string OnednnBf16Gemm::describe() const { return ""; }

#endif

}  // namespace hs::cpu

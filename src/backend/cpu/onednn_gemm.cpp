// backend/cpu/onednn_gemm.cpp: see onednn_gemm.hpp.
#include "backend/cpu/onednn_gemm.hpp"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

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

struct Prim {
    dnnl::matmul prim;
    bool fast = false;  // a brgemm kernel (else the caller's path runs)
};

// Runs f with OpenMP's thread count set to `threads` for this thread, the previous count restored after.
template <typename F>
void with_omp_threads(int threads, F&& f) {
    const int before = omp_get_max_threads();
    if (threads > 0 && threads != before) omp_set_num_threads(threads);
    try {
        f();
    } catch (...) {
        if (threads > 0 && threads != before) omp_set_num_threads(before);
        throw;
    }
    if (threads > 0 && threads != before) omp_set_num_threads(before);
}

}  // namespace

struct OnednnBf16Gemm::Impl {
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    dnnl::stream strm{eng};
    int threads = 0;
    std::string kernel;
    std::mutex mu;  // the primitive cache and the activation buffer
    std::map<std::tuple<int64_t, int64_t, int64_t, bool>, Prim> cache;  // (n, rows, cols, accumulate)
    std::vector<uint16_t> xb;                                            // the activations in bf16

    // The primitive for y[n, rows] (+)= x16[n, cols] . W^T with W as it is stored (cols x rows, "ba").
    Prim& prim(int64_t n, int64_t rows, int64_t cols, bool acc) {
        const auto key = std::make_tuple(n, rows, cols, acc);
        auto it = cache.find(key);
        if (it != cache.end()) return it->second;
        if (cache.size() >= 1024) cache.clear();  // bounded: distinct prompt lengths x matrix shapes
        dnnl::memory::desc xd({n, cols}, dt::bf16, tag::ab), wd({cols, rows}, dt::bf16, tag::ba),
            yd({n, rows}, dt::f32, tag::ab);
        dnnl::primitive_attr attr;
        if (acc) {
            dnnl::post_ops po;
            po.append_sum(1.0f);
            attr.set_post_ops(po);
        }
        Prim p;
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(xd, wd, yd), attr, eng);
        p.fast = std::string(pd.impl_info_str()).rfind("brg", 0) == 0;
        p.prim = dnnl::matmul(pd);
        return cache.emplace(key, std::move(p)).first->second;
    }
};

OnednnBf16Gemm::OnednnBf16Gemm(std::unique_ptr<Impl> p) : p_(std::move(p)) {}
OnednnBf16Gemm::~OnednnBf16Gemm() = default;

std::unique_ptr<OnednnBf16Gemm> OnednnBf16Gemm::create(const CpuFeatures& cpu, int threads, std::string* why) {
    if (!onednn_bf16_cpu_ok(cpu)) {
        if (why) *why = "the CPU has neither AMX-BF16 nor AVX-512-BF16";
        return nullptr;
    }
    auto impl = std::make_unique<Impl>();
    impl->threads = threads > 0 ? threads : omp_get_max_threads();
    // The kernel oneDNN picks for a prefill-sized product (for labels; every shape is checked again on use).
    dnnl::memory::desc xd({32, 576}, dt::bf16, tag::ab), wd({576, 576}, dt::bf16, tag::ba),
        yd({32, 576}, dt::f32, tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(xd, wd, yd), impl->eng);
    impl->kernel = pd.impl_info_str();
    if (impl->kernel.rfind("brg", 0) != 0) {
        if (why) *why = "oneDNN offers no brgemm kernel here (" + impl->kernel + ")";
        return nullptr;
    }
    return std::unique_ptr<OnednnBf16Gemm>(new OnednnBf16Gemm(std::move(impl)));
}

bool OnednnBf16Gemm::matmul(const float* x, const uint16_t* w, int64_t rows, int64_t cols, float* y, int64_t n,
                            bool accumulate) {
    if (n <= 0 || rows <= 0 || cols <= 0) return false;
    Impl& m = *p_;
    std::lock_guard<std::mutex> lock(m.mu);
    Prim& p = m.prim(n, rows, cols, accumulate);
    if (!p.fast) return false;
    const size_t count = static_cast<size_t>(n * cols);
    if (m.xb.size() < count) m.xb.resize(count);
    for (size_t i = 0; i < count; ++i) m.xb[i] = fp32_to_bf16(x[i]);
    dnnl::memory xm({{n, cols}, dt::bf16, tag::ab}, m.eng, m.xb.data());
    dnnl::memory wm({{cols, rows}, dt::bf16, tag::ba}, m.eng, const_cast<uint16_t*>(w));
    dnnl::memory ym({{n, rows}, dt::f32, tag::ab}, m.eng, y);
    with_omp_threads(m.threads, [&] {
        p.prim.execute(m.strm, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}});
        m.strm.wait();
    });
    return true;
}

const std::string& OnednnBf16Gemm::kernel() const { return p_->kernel; }
int OnednnBf16Gemm::threads() const { return p_->threads; }

std::string OnednnBf16Gemm::describe() const {
    return onednn_version() + " " + p_->kernel + ", bf16 activations, below " + std::to_string(kOnednnMaxRows) +
           " rows, " + std::to_string(p_->threads) + (p_->threads == 1 ? " thread" : " threads");
}

#else  // no oneDNN in this build

bool onednn_built() { return false; }
std::string onednn_version() { return ""; }

struct OnednnBf16Gemm::Impl {};
OnednnBf16Gemm::OnednnBf16Gemm(std::unique_ptr<Impl> p) : p_(std::move(p)) {}
OnednnBf16Gemm::~OnednnBf16Gemm() = default;

std::unique_ptr<OnednnBf16Gemm> OnednnBf16Gemm::create(const CpuFeatures&, int, std::string* why) {
    if (why) *why = "not built with oneDNN (HEADSWEEP_WITH_ONEDNN)";
    return nullptr;
}
bool OnednnBf16Gemm::matmul(const float*, const uint16_t*, int64_t, int64_t, float*, int64_t, bool) { return false; }
const std::string& OnednnBf16Gemm::kernel() const {
    static const std::string none;
    return none;
}
int OnednnBf16Gemm::threads() const { return 0; }
std::string OnednnBf16Gemm::describe() const { return ""; }

#endif

}  // namespace hs::cpu

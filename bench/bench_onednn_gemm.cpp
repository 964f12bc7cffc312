// bench/bench_onednn_gemm.cpp: the bf16 prefill GEMM three ways, on the same matrices, in one invocation (issue 16):
//   ours    matmul_blocks with BF16 weights (what `--precision bf16` runs for n >= kGemmMinRows without oneDNN:
//           tiles of rows widened to fp32, then cblas_sgemm; exact fp32 products of the bf16 weights);
//   onednn  oneDNN's matmul with the bf16 weights reordered ONCE into the layout oneDNN prefers for them (as an
//           integration keeps them), the fp32 activations reordered to bf16 on every call (counted), fp32 output;
//   engine  what the engine runs for bf16 prefills below kOnednnMaxRows rows (backend/cpu/onednn_gemm.hpp): sequential
//           oneDNN primitives on the weights in place, W's rows split over our ThreadPool (no OpenMP threads),
//           called here at every n to find the crossover;
//   sgemm   cblas_sgemm on an fp32 copy of the weights (the `--precision f32` path), for reference.
// y[n, rows] = x[n, cols] . W^T with W rows x cols (rows = output features). GFLOP/s = 2 n rows cols / time.
// Threads: OpenBLAS and our pool get `threads`; oneDNN (OpenMP runtime in Debian's build) gets omp_set_num_threads.
//
// Usage: headsweep_bench_onednn_gemm [--shapes 576x576,...] [--n 128,512] [--threads 1,2] [--min-time 0.5]
//        [--smollm2] [--llama8b]  (default: both model's shape sets, each with its own n list)
// ONEDNN_VERBOSE=1 shows the implementation oneDNN picks (e.g. brg:avx512_core_amx); the program prints it too.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "backend/cpu/cpu_runtime.hpp"
#include "backend/cpu/matmul_blocks.hpp"
#include "backend/cpu/onednn_gemm.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "gguf/quant.hpp"
#include "util/cpu_features.hpp"

extern "C" void openblas_set_num_threads(int num_threads);

using namespace hs;
using namespace hs::cpu;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds per call: one warm-up call, then calls until min_time has passed (at least 2).
template <typename F>
double time_call(F&& f, double min_time) {
    f();
    int reps = 0;
    const double t0 = now();
    double t = t0;
    while (reps < 2 || t - t0 < min_time) {
        f();
        ++reps;
        t = now();
    }
    return (t - t0) / reps;
}

struct Shape {
    int64_t rows, cols;  // W rows (output features) x cols (input features)
    std::vector<int64_t> ns;
    const char* model;
};

std::vector<int64_t> parse_list(const std::string& s) {
    std::vector<int64_t> v;
    size_t p = 0;
    while (p < s.size()) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        v.push_back(std::stoll(s.substr(p, q - p)));
        p = q + 1;
    }
    return v;
}

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// One oneDNN matmul of n x cols by the (reordered) weights.
struct OnednnGemm {
    dnnl::engine& eng;
    dnnl::stream& strm;
    dnnl::matmul prim;
    dnnl::reorder to_bf16;
    dnnl::memory x32, x16, wmem, ymem;
    std::string impl;

    // plain: the weights as they are (W row-major, "ba"), no reordered copy; else the layout oneDNN prefers.
    OnednnGemm(dnnl::engine& e, dnnl::stream& s, const uint16_t* w_bf16, int64_t rows, int64_t cols, int64_t n,
               float* x, float* y, bool plain)
        : eng(e), strm(s) {
        const dnnl::memory::dims xd{n, cols}, wd{cols, rows}, yd{n, rows};
        dnnl::memory::desc x16_md(xd, dt::bf16, tag::ab), w_any(wd, dt::bf16, plain ? tag::ba : tag::any),
            y_md(yd, dt::f32, tag::ab);
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(x16_md, w_any, y_md), eng);
        impl = pd.impl_info_str();
        prim = dnnl::matmul(pd);
        // W is rows x cols row-major = the cols x rows weights of the matmul in column-major ("ba")
        dnnl::memory wuser({wd, dt::bf16, tag::ba}, eng, const_cast<uint16_t*>(w_bf16));
        wmem = dnnl::memory(pd.weights_desc(), eng);
        dnnl::reorder(wuser, wmem).execute(strm, wuser, wmem);
        x32 = dnnl::memory({xd, dt::f32, tag::ab}, eng, x);
        x16 = dnnl::memory(x16_md, eng);
        to_bf16 = dnnl::reorder(x32, x16);
        ymem = dnnl::memory(y_md, eng, y);
        strm.wait();
    }
    void run() {
        to_bf16.execute(strm, x32, x16);
        run_matmul();
    }
    void run_matmul() {
        prim.execute(strm, {{DNNL_ARG_SRC, x16}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, ymem}});
        strm.wait();
    }
};

}  // namespace

int main(int argc, char** argv) {
    prepare_cpu_runtime(argv);  // OpenBLAS core check, and the AMX tile state (else a tile instruction is SIGILL)
    std::vector<Shape> shapes;
    std::vector<int64_t> threads{1, 2};
    std::vector<int64_t> ns_override;
    double min_time = 0.5;
    bool smol = false, big = false;
    std::string shape_arg;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); }
            return argv[++i];
        };
        if (a == "--shapes") shape_arg = next();
        else if (a == "--n") ns_override = parse_list(next());
        else if (a == "--threads") threads = parse_list(next());
        else if (a == "--min-time") min_time = std::stod(next());
        else if (a == "--smollm2") smol = true;
        else if (a == "--llama8b") big = true;
        else { std::fprintf(stderr, "unknown argument %s (see the file's header)\n", a.c_str()); return 2; }
    }
    if (!shape_arg.empty()) {
        for (const std::string& s : [&] {
                 std::vector<std::string> v;
                 size_t p = 0;
                 while (p < shape_arg.size()) {
                     size_t q = shape_arg.find(',', p);
                     if (q == std::string::npos) q = shape_arg.size();
                     v.push_back(shape_arg.substr(p, q - p));
                     p = q + 1;
                 }
                 return v;
             }()) {
            const size_t x = s.find('x');
            shapes.push_back({std::stoll(s.substr(0, x)), std::stoll(s.substr(x + 1)), {128, 512}, "custom"});
        }
    } else {
        if (!smol && !big) smol = big = true;
        if (smol)
            for (auto [r, c] : {std::pair{576, 576}, {192, 576}, {1536, 576}, {576, 1536}})
                shapes.push_back({r, c, {128, 512}, "smollm2"});
        if (big)
            for (auto [r, c] : {std::pair{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}})
                shapes.push_back({r, c, {32, 128, 512}, "llama3-8b"});
    }
    if (!ns_override.empty())
        for (Shape& s : shapes) s.ns = ns_override;

    const CpuRuntime rt = describe_cpu_runtime();
    const KernelIsa isa = best_kernel_isa(rt.cpu);
    std::printf("# cpu: %s (family %d model %d); features: %s; AMX tile state: %s\n", rt.cpu.brand.c_str(),
                rt.cpu.family, rt.cpu.model, rt.cpu.summary().c_str(), amx_state_name(rt.amx));
    std::printf("# blas: %s; our kernels: %s\n", rt.blas.describe().c_str(), kernel_isa_name(isa));
    const dnnl_version_t* v = dnnl_version();
    std::printf("# oneDNN %d.%d.%d (cpu runtime %s)\n", v->major, v->minor, v->patch,
                v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : v->cpu_runtime == DNNL_RUNTIME_TBB ? "TBB" : "other");
    std::printf("# GFLOP/s = 2 n rows cols / s; ours = bf16 tiles -> fp32 + sgemm; onednn = bf16 x bf16 -> f32 "
                "(activation reorder f32->bf16 counted; dnn-plain: the weights in their own row-major layout, no reordered copy); sgemm = fp32 weights\n");
    std::printf("%-10s %-11s %5s %3s %9s %9s %9s %9s %9s %8s %8s %8s  %s\n", "model", "shape", "n", "thr", "ours", "onednn",
                "dnn-plain", "engine", "sgemm", "dnn/ours", "eng/ours", "dnn/sgemm", "onednn impl");

    dnnl::engine dnn_eng(dnnl::engine::kind::cpu, 0);
    dnnl::stream strm(dnn_eng);
    const std::unique_ptr<OnednnBf16Gemm> eng = OnednnBf16Gemm::create(rt.cpu);
    if (!eng) { std::fprintf(stderr, "oneDNN's bf16 GEMM is not available on this CPU\n"); return 1; }
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::map<int64_t, std::unique_ptr<ThreadPool>> pools;
    for (const Shape& s : shapes) {
        const int64_t R = s.rows, C = s.cols;
        std::vector<float> w32(static_cast<size_t>(R * C));
        std::vector<uint16_t> w16(w32.size());
        for (size_t i = 0; i < w32.size(); ++i) {
            w16[i] = fp32_to_bf16(nd(rng) * 0.05f);
            w32[i] = bf16_to_fp32(w16[i]);
        }
        BlockMatrix bm{GgmlType::BF16, w16.data(), R, C, ggml_row_bytes(GgmlType::BF16, C)};
        for (int64_t n : s.ns) {
            std::vector<float> x(static_cast<size_t>(n * C)), y0(static_cast<size_t>(n * R)),
                y1(y0.size()), y2(y0.size());
            for (float& f : x) f = nd(rng);
            for (int64_t t : threads) {
                auto& pool = pools[t];
                if (!pool) pool = std::make_unique<ThreadPool>(static_cast<int>(t));
                openblas_set_num_threads(static_cast<int>(t));
                omp_set_num_threads(static_cast<int>(t));
                KernelOptions o{isa, pool.get()};
                const double t_ours = time_call([&] { matmul_blocks(x.data(), bm, y0.data(), n, false, o); }, min_time);
                OnednnGemm g(dnn_eng, strm, w16.data(), R, C, n, x.data(), y1.data(), false);
                const double t_dnn = time_call([&] { g.run(); }, min_time);
                OnednnGemm gp(dnn_eng, strm, w16.data(), R, C, n, x.data(), y1.data(), true);
                const double t_mm = time_call([&] { gp.run(); }, min_time);
                if (gp.impl != g.impl) g.impl += " / plain: " + gp.impl;
                std::vector<float> y3(y0.size());
                const double t_eng = time_call([&] {
                    if (!eng->matmul(x.data(), w16.data(), R, C, y3.data(), n, false, pool.get()))
                        std::fprintf(stderr, "engine path: no brgemm kernel for %lldx%lld n %lld\n", (long long)R,
                                     (long long)C, (long long)n);
                }, min_time);
                const double t_sg = time_call([&] {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(R), int(C), 1.0f, x.data(),
                                int(C), w32.data(), int(C), 0.0f, y2.data(), int(R));
                }, min_time);
                // agreement (bf16 activations: relative to the magnitude of the products)
                double maxd = 0, maxr = 0;
                for (size_t i = 0; i < y0.size(); ++i) {
                    maxd = std::max(maxd, double(std::fabs(y1[i] - y0[i])));
                    maxr = std::max(maxr, double(std::fabs(y0[i])));
                }
                const double fl = 2.0 * double(n) * double(R) * double(C) * 1e-9;
                std::printf("%-10s %5lldx%-5lld %5lld %3lld %9.1f %9.1f %9.1f %9.1f %9.1f %8.2f %8.2f %8.2f  %s (max|diff| %.3g of "
                            "max|y| %.3g)\n",
                            s.model, (long long)R, (long long)C, (long long)n, (long long)t, fl / t_ours,
                            fl / t_dnn, fl / t_mm, fl / t_eng, fl / t_sg, t_ours / t_dnn, t_ours / t_eng, t_sg / t_dnn, g.impl.c_str(), maxd, maxr);
                std::fflush(stdout);
            }
        }
    }
    return 0;
}

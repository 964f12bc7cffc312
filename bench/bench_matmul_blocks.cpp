// bench/bench_matmul_blocks.cpp: the native-precision matmul kernels (backend/cpu/matmul_blocks.hpp) against the
// fp32 BLAS on the same matrix, as JSON lines.
//
// Usage: headsweep_bench_matmul_blocks [--types Q4_1,Q8_0,...] [--shapes 576x1536,...] [--threads 1,2]
//        [--isas avx512-vnni,...] [--gemm-n 512] [--min-time 0.3] [--hot] [--no-peer] [--smoke]
//        headsweep_bench_matmul_blocks --model smollm2|gemma3 [--threads 1,2] [--isas ...] [--min-time 1]
//        headsweep_bench_matmul_blocks --prefill-n 8,16,32,64,128 [--types Q4_0] [--shapes 4096x4096,...]
//            [--threads 2] [--isas ...]: the native prefill paths only, int8 tiles vs dequantise + SGEMM (the
//            crossover of NativePrefill::AUTO), for every n.
//
// For every type, shape (rows = output features x cols = input features; default the SmolLM2-135M matrices) and
// ISA: the GEMV (n = 1) at each thread count, in GB/s of weight bytes read, beside cblas_sgemv on the fp32 copy of
// the same matrix with the same thread count (the peer: "speedup" = peer time / our time); and the SGEMM path at
// n = --gemm-n beside cblas_sgemm on the fp32 copy. By default the weights are cold, as in a decode step, where the
// whole model (~100 MB) passes through the caches once per token: each call reads the next of enough copies of
// the matrix to exceed 256 MiB (--hot: one copy, which then sits in L2/L3 for the small shapes).
// --model: all the GEMVs of one decode step of that model instead (every layer's matrices, in their own memory),
// in ms per token beside cblas_sgemv on fp32 copies.
#include <cblas.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_runtime.hpp"
#include "backend/cpu/matmul_blocks.hpp"
#include "backend/cpu/matmul_blocks_kernels.hpp"
#include "gguf/quant.hpp"
#include "util/error.hpp"
#include "backend/cpu/thread_pool.hpp"
#include <map>
#include <memory>

extern "C" void openblas_set_num_threads(int num_threads);

using namespace hs;

// Kernel options with a pool of `threads` threads (one pool per count, kept for the process).
static hs::cpu::KernelOptions kernel_options(hs::cpu::KernelIsa isa, int threads) {
    static std::map<int, std::unique_ptr<hs::cpu::ThreadPool>> pools;
    auto& p = pools[threads];
    if (!p) p = std::make_unique<hs::cpu::ThreadPool>(threads);
    return hs::cpu::KernelOptions{isa, p.get()};
}
using namespace hs::cpu;

namespace {

double cpu_now() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> v;
    size_t a = 0;
    while (a <= s.size()) {
        const size_t b = std::min(s.find(',', a), s.size());
        if (b > a) v.push_back(s.substr(a, b - a));
        a = b + 1;
    }
    return v;
}

// GgmlType in the order of detail::DotType.
constexpr GgmlType kTypeOrder[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                                   GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                   GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

GgmlType parse_type(const std::string& name) {
    for (uint32_t id = 0; id < 64; ++id)
        if (auto t = ggml_type_from_id(id); t && name == ggml_type_name(*t)) return *t;
    fail("unknown type ", name);
}

void put_f16(uint8_t* p, float v) {
    const uint16_t h = fp32_to_fp16(v);
    std::memcpy(p, &h, 2);
}

// Random weights of type t: encoded normal rows where the type has an encoder, else random bytes with sane fp16
// scale fields (the kernels' speed does not depend on the values).
std::vector<uint8_t> make_weights(GgmlType t, int64_t rows, int64_t cols, std::mt19937& rng) {
    const uint64_t rb = ggml_row_bytes(t, cols);
    std::vector<uint8_t> w(rb * rows);
    if (ggml_type_can_encode(t)) {
        std::normal_distribution<float> nd(0.0f, 0.05f);
        std::vector<float> row(cols);
        for (int64_t r = 0; r < rows; ++r) {
            for (float& v : row) v = nd(rng);
            quantize_row(t, row.data(), w.data() + r * rb, cols);
        }
        return w;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    for (uint8_t& b : w) b = static_cast<uint8_t>(byte(rng));
    const int64_t bs = ggml_block_size(t), bb = ggml_block_bytes(t);
    for (int64_t b = 0; b < rows * cols / bs; ++b) {
        uint8_t* p = w.data() + b * bb;
        if (t == GgmlType::Q6_K) {
            put_f16(p + 208, 0.001f);
        } else {
            put_f16(p, 0.01f);
            if (t != GgmlType::Q5_0) put_f16(p + 2, 0.01f);
        }
    }
    return w;
}

// Seconds per call of f, wall clock and process CPU time (all threads): the fastest of 25 batches, each repeating
// f for about min_time / 25. Short batches, so that some run between the scheduler slices of other load on a shared
// machine; the CPU time shows how much of the wall time the process actually ran.
struct Timing {
    double wall = 0, cpu = 0;
};
template <typename F>
Timing time_call(F f, double min_time) {
    f();
    const double t0 = now();
    f();
    const double once = std::max(now() - t0, 1e-7);
    constexpr int kBatches = 25;
    const int reps = std::max(1, static_cast<int>(min_time / kBatches / once));
    Timing best{1e30, 1e30};
    for (int b = 0; b < kBatches; ++b) {
        const double s = now(), c = cpu_now();
        for (int r = 0; r < reps; ++r) f();
        best.wall = std::min(best.wall, (now() - s) / reps);
        best.cpu = std::min(best.cpu, (cpu_now() - c) / reps);
    }
    return best;
}

// The weight matrices that one decode step of a model multiplies with (type, rows, cols, how many), from the GGUF
// files in models/ (SmolLM2-135M-Instruct.Q4_1, gemma-3-270m-q4_k_m); the last is the tied output projection.
struct ModelMatrix {
    GgmlType type;
    int64_t rows, cols;
    int count;
};
std::vector<ModelMatrix> model_matrices(const std::string& model) {
    if (model == "smollm2")
        return {{GgmlType::Q4_1, 576, 576, 60},   {GgmlType::Q4_1, 192, 576, 60}, {GgmlType::Q4_1, 1536, 576, 60},
                {GgmlType::Q4_1, 576, 1536, 30},  {GgmlType::Q8_0, 49152, 576, 1}};
    if (model == "gemma3")
        return {{GgmlType::Q5_0, 1024, 640, 18}, {GgmlType::Q5_0, 256, 640, 27}, {GgmlType::Q8_0, 256, 640, 9},
                {GgmlType::Q4_K, 640, 1024, 18}, {GgmlType::Q5_0, 2048, 640, 36}, {GgmlType::Q4_K, 640, 2048, 9},
                {GgmlType::Q6_K, 640, 2048, 9},  {GgmlType::Q8_0, 262144, 640, 1}};
    fail("unknown model ", model, " (smollm2 or gemma3)");
}

// Every GEMV of one decode step, one after the other, each matrix in its own memory (so the weights stream from
// DRAM as in a real step), beside cblas_sgemv over fp32 copies of the same matrices.
void bench_model(const std::string& model, const std::vector<KernelIsa>& isas, const std::vector<int>& threads,
                 double min_time, bool peer, std::mt19937& rng) {
    struct Inst {
        GgmlType type;
        int64_t rows, cols;
        std::vector<uint8_t> w;
        std::vector<float> wf;
    };
    std::vector<Inst> mats;
    uint64_t bytes = 0, fbytes = 0;
    int64_t max_rows = 0, max_cols = 0;
    for (const ModelMatrix& mm : model_matrices(model)) {
        const std::vector<uint8_t> w0 = make_weights(mm.type, mm.rows, mm.cols, rng);
        std::vector<float> f0(static_cast<size_t>(mm.rows * mm.cols));
        dequantize_row(mm.type, w0.data(), f0.data(), mm.rows * mm.cols);
        for (int c = 0; c < mm.count; ++c) {
            mats.push_back({mm.type, mm.rows, mm.cols, w0, peer ? f0 : std::vector<float>()});
            bytes += w0.size();
            fbytes += f0.size() * 4;
        }
        max_rows = std::max(max_rows, mm.rows);
        max_cols = std::max(max_cols, mm.cols);
    }
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(max_cols)), y(static_cast<size_t>(max_rows));
    for (float& v : x) v = nd(rng);
    for (int th : threads) {
        openblas_set_num_threads(th);
        double t_peer = 0;
        if (peer)
            t_peer = time_call(
                [&] {
                    for (const Inst& m : mats)
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(m.rows), int(m.cols), 1.0f, m.wf.data(),
                                    int(m.cols), x.data(), 1, 0.0f, y.data(), 1);
                },
                min_time).wall;
        for (KernelIsa isa : isas) {
            const KernelOptions o = kernel_options(isa, th);
            const Timing ours = time_call(
                [&] {
                    for (const Inst& m : mats) {
                        const BlockMatrix bm{m.type, m.w.data(), m.rows, m.cols, ggml_row_bytes(m.type, m.cols)};
                        matmul_blocks(x.data(), bm, y.data(), 1, false, o);
                    }
                },
                min_time);
            std::printf("{\"op\": \"decode_gemvs\", \"model\": \"%s\", \"matrices\": %zu, \"MB\": %.1f, \"isa\": \"%s\", "
                        "\"threads\": %d, \"ms_per_token\": %.3f, \"cpu_ms\": %.3f, \"GBps\": %.2f, "
                        "\"sgemv_ms_per_token\": %.3f, \"speedup_vs_sgemv\": %.2f}\n",
                        model.c_str(), mats.size(), bytes / 1e6, kernel_isa_name(isa), th, ours.wall * 1e3,
                        ours.cpu * 1e3, bytes / ours.wall / 1e9, t_peer * 1e3, t_peer / ours.wall);
            std::fflush(stdout);
        }
    }
}

// "ROWSxCOLS" -> (rows, cols).
std::pair<int64_t, int64_t> parse_shape(const std::string& shape) {
    const size_t xpos = shape.find('x');
    check(xpos != std::string::npos, "shape ", shape, " is not ROWSxCOLS");
    return {std::stoll(shape.substr(0, xpos)), std::stoll(shape.substr(xpos + 1))};
}

// The two native prefill paths at each n, one matrix (cold: a copy of the matrix per call where it is small),
// as JSON lines: ms of the int8 path and of the dequantise + SGEMM path, and their ratio.
void bench_prefill(const std::vector<std::string>& types, const std::vector<std::string>& shapes,
                   const std::vector<int64_t>& ns, const std::vector<KernelIsa>& isas, const std::vector<int>& threads,
                   double min_time, std::mt19937& rng) {
    for (const std::string& shape : shapes) {
        const auto [rows, cols] = parse_shape(shape);
        for (const std::string& tname : types) {
            const GgmlType t = parse_type(tname);
            if (cols % ggml_block_size(t) != 0) continue;
            const std::vector<uint8_t> w0 = make_weights(t, rows, cols, rng);
            const size_t copies = std::clamp<size_t>((64u << 20) / w0.size() + 1, 1, 64);
            std::vector<std::vector<uint8_t>> w(copies, w0);
            const int64_t nmax = *std::max_element(ns.begin(), ns.end());
            std::normal_distribution<float> nd(0.0f, 1.0f);
            std::vector<float> x(static_cast<size_t>(nmax * cols)), y(static_cast<size_t>(nmax * rows));
            for (float& v : x) v = nd(rng);
            for (int th : threads) {
                openblas_set_num_threads(th);
                for (KernelIsa isa : isas) {
                    for (int64_t n : ns) {
                        double ms[2] = {0, 0}, cpu_ms[2] = {0, 0};
                        for (int f32 = 0; f32 < 2; ++f32) {
                            KernelOptions o = kernel_options(isa, th);
                            o.prefill = f32 ? NativePrefill::F32 : NativePrefill::INT8;
                            size_t wi = 0;
                            const Timing tm = time_call(
                                [&] {
                                    const BlockMatrix m{t, w[wi].data(), rows, cols, ggml_row_bytes(t, cols)};
                                    matmul_blocks(x.data(), m, y.data(), n, false, o);
                                    wi = (wi + 1) % copies;
                                },
                                min_time);
                            ms[f32] = 1e3 * tm.wall;
                            cpu_ms[f32] = 1e3 * tm.cpu;
                        }
                        std::printf("{\"op\": \"prefill\", \"type\": \"%s\", \"rows\": %lld, \"cols\": %lld, "
                                    "\"isa\": \"%s\", \"threads\": %d, \"n\": %lld, \"int8_ms\": %.3f, "
                                    "\"f32_ms\": %.3f, \"int8_cpu_ms\": %.3f, \"f32_cpu_ms\": %.3f, "
                                    "\"int8_GMACs\": %.1f, \"f32_over_int8\": %.2f}\n",
                                    tname.c_str(), (long long)rows, (long long)cols, kernel_isa_name(isa), th,
                                    (long long)n, ms[0], ms[1], cpu_ms[0], cpu_ms[1],
                                    double(n) * rows * cols / ms[0] / 1e6, ms[1] / ms[0]);
                        std::fflush(stdout);
                    }
                }
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) try {
    hs::prepare_cpu_runtime(argv);
    std::vector<std::string> types = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K",
                                      "F16",  "BF16", "F32"};
    std::vector<std::string> shapes = {"576x1536", "1536x576", "576x576", "49152x576"};
    std::vector<int> threads = {1, 2};
    std::vector<std::string> isa_names;
    int64_t gemm_n = 512;
    double min_time = 0.3;
    bool hot = false, peer = true;
    std::string model;
    std::vector<int64_t> prefill_ns;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) fail("option ", k, " needs a value");
            return argv[++i];
        };
        if (k == "--types") types = split(val());
        else if (k == "--shapes") shapes = split(val());
        else if (k == "--threads") {
            threads.clear();
            for (const std::string& s : split(val())) threads.push_back(std::stoi(s));
        } else if (k == "--isas") isa_names = split(val());
        else if (k == "--gemm-n") gemm_n = std::stoll(val());
        else if (k == "--min-time") min_time = std::stod(val());
        else if (k == "--hot") hot = true;
        else if (k == "--no-peer") peer = false;
        else if (k == "--model") model = val();
        else if (k == "--prefill-n") {
            for (const std::string& s : split(val())) prefill_ns.push_back(std::stoll(s));
        }
        else if (k == "--smoke") {
            types = {"Q4_1", "Q6_K"};
            shapes = {"64x256"};
            threads = {1};
            gemm_n = 16;
            min_time = 0.01;
            hot = true;
        } else fail("unknown option ", k);
    }
    const CpuFeatures cpu = detect_cpu_features();
    std::vector<KernelIsa> isas;
    if (isa_names.empty()) {
        for (KernelIsa isa : {KernelIsa::SCALAR, KernelIsa::AVX2, KernelIsa::AVX512, KernelIsa::AVX512_VNNI})
            if (can_run_kernel_isa(cpu, isa)) isas.push_back(isa);
    } else {
        for (const std::string& s : isa_names) {
            const KernelIsa isa = parse_kernel_isa(s);
            check(can_run_kernel_isa(cpu, isa), "this CPU cannot run the ", s, " kernels");
            isas.push_back(isa);
        }
    }
    const KernelIsa best = best_kernel_isa(cpu);
    std::printf("{\"machine\": \"%s\", \"features\": \"%s\", \"blas\": \"%s\", \"best_isa\": \"%s\", \"cache\": \"%s\"}\n",
                cpu.brand.c_str(), cpu.summary().c_str(), describe_cpu_runtime().blas.describe().c_str(),
                kernel_isa_name(best), hot ? "hot" : "cold");
    std::fflush(stdout);

    std::mt19937 rng(42);
    if (!prefill_ns.empty()) {
        bench_prefill(types, shapes, prefill_ns, isas, threads, min_time, rng);
        return 0;
    }
    if (!model.empty()) {
        bench_model(model, isas, threads, min_time, peer, rng);
        return 0;
    }
    for (const std::string& shape : shapes) {
        const auto [rows, cols] = parse_shape(shape);
        for (const std::string& tname : types) {
            const GgmlType t = parse_type(tname);
            if (cols % ggml_block_size(t) != 0) continue;
            const std::vector<uint8_t> w0 = make_weights(t, rows, cols, rng);
            const uint64_t wbytes = w0.size(), fbytes = static_cast<uint64_t>(rows * cols) * 4;
            const size_t copies = hot ? 1 : std::clamp<size_t>((256u << 20) / wbytes + 1, 1, 256);
            const size_t fcopies = hot ? 1 : std::clamp<size_t>((256u << 20) / fbytes + 1, 1, 256);
            std::vector<std::vector<uint8_t>> w(copies, w0);
            std::vector<std::vector<float>> wf(fcopies, std::vector<float>(static_cast<size_t>(rows * cols)));
            dequantize_row(t, w0.data(), wf[0].data(), rows * cols);
            for (size_t c = 1; c < fcopies; ++c) wf[c] = wf[0];
            std::normal_distribution<float> nd(0.0f, 1.0f);
            std::vector<float> x(static_cast<size_t>(std::max<int64_t>(gemm_n, 1) * cols));
            for (float& v : x) v = nd(rng);
            std::vector<float> y(static_cast<size_t>(std::max<int64_t>(gemm_n, 1) * rows));
            for (int th : threads) {
                openblas_set_num_threads(th);
                size_t fi = 0;
                const double t_peer = !peer ? 0.0 : time_call(
                    [&] {
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(rows), int(cols), 1.0f, wf[fi].data(), int(cols),
                                    x.data(), 1, 0.0f, y.data(), 1);
                        fi = (fi + 1) % fcopies;
                    },
                    min_time).wall;
                for (KernelIsa isa : isas) {
                    size_t wi = 0;
                    const KernelOptions o = kernel_options(isa, th);
                    const Timing ours = time_call(
                        [&] {
                            const BlockMatrix m{t, w[wi].data(), rows, cols, ggml_row_bytes(t, cols)};
                            matmul_blocks(x.data(), m, y.data(), 1, false, o);
                            wi = (wi + 1) % copies;
                        },
                        min_time);
                    const double t_ours = ours.wall;
                    std::printf("{\"op\": \"gemv\", \"type\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"isa\": \"%s\", "
                                "\"threads\": %d, \"us\": %.2f, \"cpu_us\": %.2f, \"GBps\": %.2f, \"sgemv_us\": %.2f, "
                                "\"sgemv_GBps\": %.2f, \"speedup_vs_sgemv\": %.2f}\n",
                                tname.c_str(), (long long)rows, (long long)cols, kernel_isa_name(isa), th,
                                t_ours * 1e6, ours.cpu * 1e6, wbytes / t_ours / 1e9, t_peer * 1e6,
                                t_peer > 0 ? fbytes / t_peer / 1e9 : 0.0,
                                t_peer / t_ours);
                    std::fflush(stdout);
                }
                if (th == threads.front()) {  // the decoding that the SGEMM path does first (single-threaded)
                    std::vector<float> out(static_cast<size_t>(rows * cols));
                    const BlockMatrix m{t, w[0].data(), rows, cols, ggml_row_bytes(t, cols)};
                    const double t_dq = time_call([&] { dequantize_rows(m, 0, rows, out.data()); }, min_time).wall;
                    // the best variant's own decoder (the SGEMM path's tiles), where it has one
                    const detail::GemvKernels* k = best == KernelIsa::AVX512_VNNI ? detail::gemv_kernels_avx512_vnni()
                                                   : best == KernelIsa::AVX512    ? detail::gemv_kernels_avx512()
                                                   : best == KernelIsa::AVX2      ? detail::gemv_kernels_avx2()
                                                                                  : detail::gemv_kernels_scalar();
                    const detail::DecodeFn dec = k->decode[static_cast<int>(
                        std::find(std::begin(kTypeOrder), std::end(kTypeOrder), t) - std::begin(kTypeOrder))];
                    const double t_simd =
                        dec ? time_call([&] { dec(w[0].data(), out.data(), rows * cols); }, min_time).wall : t_dq;
                    std::printf("{\"op\": \"dequantize\", \"type\": \"%s\", \"rows\": %lld, \"cols\": %lld, "
                                "\"us\": %.2f, \"ns_per_element\": %.3f, \"simd_ns_per_element\": %.3f}\n",
                                tname.c_str(), (long long)rows, (long long)cols, t_dq * 1e6, t_dq * 1e9 / (rows * cols),
                                t_simd * 1e9 / (rows * cols));
                }
                if (gemm_n >= kGemmMinRows) {
                    const double flops = 2.0 * gemm_n * rows * cols;
                    const double t_peer_mm = !peer ? 0.0 : time_call(
                        [&] {
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(gemm_n), int(rows), int(cols),
                                        1.0f, x.data(), int(cols), wf[0].data(), int(cols), 0.0f, y.data(), int(rows));
                        },
                        min_time).wall;
                    const BlockMatrix m{t, w[0].data(), rows, cols, ggml_row_bytes(t, cols)};
                    const double t_mm = time_call(
                        [&] { matmul_blocks(x.data(), m, y.data(), gemm_n, false, kernel_options(best, th)); },
                        min_time).wall;
                    std::printf("{\"op\": \"gemm\", \"type\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"n\": %lld, "
                                "\"threads\": %d, \"ms\": %.3f, \"GFLOPs\": %.1f, \"sgemm_ms\": %.3f, "
                                "\"sgemm_GFLOPs\": %.1f, \"ratio_vs_sgemm\": %.2f}\n",
                                tname.c_str(), (long long)rows, (long long)cols, (long long)gemm_n, th, t_mm * 1e3,
                                flops / t_mm / 1e9, t_peer_mm * 1e3, t_peer_mm > 0 ? flops / t_peer_mm / 1e9 : 0.0,
                                t_peer_mm / t_mm);
                    std::fflush(stdout);
                }
            }
        }
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "headsweep_bench_matmul_blocks: %s\n", e.what());
    return 1;
}

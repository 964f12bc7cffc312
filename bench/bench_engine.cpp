// bench/bench_engine.cpp: prefill and decode throughput and peak memory of the engine, as JSON lines.
// Usage: headsweep_bench_engine MODEL [--threads N] [--tokens 512] [--batches 1,16] [--decode 64] [--reps 3]
//        [--device cpu|cuda] [--gpu-weights bf16|fp16|fp32] [--precision f32|bf16|native] [--cpu-kernels auto|...]
// MODEL is a GGUF file or random:<shape>. bench/bench_engine.py runs this and llama.cpp in one invocation and
// prints the ratios.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "backend/cpu/cpu_runtime.hpp"
#include "util/error.hpp"

using namespace hs;

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static double peak_rss_mib() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

int main(int argc, char** argv) try {
    hs::prepare_cpu_runtime(argv);
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL [--threads N] [--tokens T] [--batches 1,16] [--decode N] [--reps R] "
                             "[--device cpu|cuda] [--gpu-weights bf16|fp16|fp32] [--precision f32|bf16|native] "
                             "[--cpu-kernels auto|scalar|avx2|avx512|avx512-vnni] [--native-prefill auto|int8|f32]\n", argv[0]);
        return 2;
    }
    std::string model_spec = argv[1];
    int threads = 2, tokens = 512, decode = 64, reps = 3;
    std::string device = "cpu", gpu_weights = "bf16", precision = "f32", cpu_kernels = "auto",
                native_prefill = "auto";
    std::vector<int> batches = {1, 16};
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--threads") threads = std::stoi(v);
        else if (k == "--tokens") tokens = std::stoi(v);
        else if (k == "--decode") decode = std::stoi(v);
        else if (k == "--reps") reps = std::stoi(v);
        else if (k == "--device") device = v;
        else if (k == "--gpu-weights") gpu_weights = v;
        else if (k == "--precision") precision = v;
        else if (k == "--cpu-kernels") cpu_kernels = v;
        else if (k == "--native-prefill") native_prefill = v;
        else if (k == "--batches") {
            batches.clear();
            for (char* p = std::strtok(v.data(), ","); p; p = std::strtok(nullptr, ",")) batches.push_back(std::atoi(p));
        } else fail("unknown option ", k);
    }
    double t0 = now();
    LoadOptions lo;
    lo.precision = parse_weight_precision(precision);
    Model m = open_model(model_spec, lo);
    const double load_s = now() - t0;
    const double weights_mib = weights_bytes(m.weights) / 1048576.0;  // host weights as stored in this precision
    BackendOptions bo;
    bo.threads = threads;
    bo.cpu_kernels = cpu_kernels;
    bo.native_prefill = native_prefill;
    bo.gpu_weights = parse_weight_type(gpu_weights);
    auto be = make_backend(parse_device(device), bo);
    Engine e(m, *be);
    std::mt19937_64 g(1);
    auto random_ids = [&](int64_t n) {
        std::vector<int32_t> ids(n);
        for (auto& x : ids) x = int32_t(100 + g() % uint64_t(m.config.n_vocab - 100));
        return ids;
    };
    std::printf("{\"engine\":\"headsweep\",\"model\":\"%s\",\"device\":\"%s\",\"backend\":\"%s\",\"threads\":%d,"
                "\"precision\":\"%s\",\"load_s\":%.3f,\"weights_mib\":%.1f}\n",
                model_spec.c_str(), device.c_str(), be->describe().c_str(), threads, precision.c_str(), load_s,
                weights_mib);
    for (int B : batches) {
        auto ids = random_ids(int64_t(B) * tokens);
        e.forward(ids, B, tokens);  // warm-up: workspace allocation, page faults
        std::vector<double> times;
        for (int r = 0; r < reps; ++r) {
            double s = now();
            e.forward(ids, B, tokens);
            times.push_back(now() - s);
        }
        std::sort(times.begin(), times.end());
        const double med = times[times.size() / 2];
        std::printf("{\"engine\":\"headsweep\",\"test\":\"prefill\",\"batch\":%d,\"tokens\":%d,\"seconds\":%.4f,\"tokens_per_s\":%.1f}\n",
                    B, tokens, med, B * tokens / med);
        std::fflush(stdout);
    }
    if (decode > 0) {
        KvCache cache(*be, m.config, 1, tokens + decode);
        auto prompt = random_ids(tokens);
        ForwardResult r = e.forward(prompt, 1, tokens, {}, &cache);
        double s = now();
        for (int i = 0; i < decode; ++i) {
            const int32_t next = int32_t(std::max_element(r.logits.begin(), r.logits.end()) - r.logits.begin());
            r = e.forward({next}, 1, 1, {}, &cache);
        }
        const double dt = now() - s;
        std::printf("{\"engine\":\"headsweep\",\"test\":\"decode\",\"context\":%d,\"tokens\":%d,\"seconds\":%.4f,\"tokens_per_s\":%.1f}\n",
                    tokens, decode, dt, decode / dt);
    }
    const double rss = peak_rss_mib();
    std::printf("{\"engine\":\"headsweep\",\"test\":\"memory\",\"peak_rss_mib\":%.1f,\"weights_mib\":%.1f,\"ratio\":%.3f}\n", rss,
                weights_mib, rss / weights_mib);
    return 0;
} catch (const std::exception& ex) {
    std::fprintf(stderr, "headsweep_bench_engine: error: %s\n", ex.what());
    return 1;
}

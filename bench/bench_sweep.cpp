// bench/bench_sweep.cpp: time a PEAR sweep (path or total mode) through the pear API, as one JSON line.
// Usage: headsweep_bench_sweep MODEL --mode path|total [--settings 20x50,40x25,...] [--threads 2]
//        [--mean-over batch|sequence] [--device cpu|cuda] [--gpu-weights bf16|fp16|fp32] [--layers L]
//        (--layers: time only the first L layers' items and extrapolate the item time to all layers, for slow
//        configurations)
// bench/bench_sweep.py runs this and the PyTorch peer in one invocation and prints the ratios.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "pear/sweep.hpp"
#include "backend/cpu/cpu_runtime.hpp"
#include "util/error.hpp"

using namespace hs;
using namespace hs::pear;

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int main(int argc, char** argv) try {
    hs::prepare_cpu_runtime(argv);
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL --mode path|total [--settings NxN,...] [--threads T] [--mean-over M] "
                             "[--device cpu|cuda] [--gpu-weights W] [--layers L]\n", argv[0]);
        return 2;
    }
    SweepOptions o;
    int threads = 2, max_layers = 0;
    std::string device = "cpu", gpu_weights = "bf16";
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--mode") o.mode = parse_score_mode(v);
        else if (k == "--threads") threads = std::stoi(v);
        else if (k == "--mean-over") o.mean_over = parse_mean_over(v);
        else if (k == "--layers") max_layers = std::stoi(v);
        else if (k == "--device") device = v;
        else if (k == "--gpu-weights") gpu_weights = v;
        else if (k == "--settings") {
            o.settings.clear();
            for (char* p = std::strtok(v.data(), ","); p; p = std::strtok(nullptr, ",")) {
                int N = 0, n = 0;
                check(std::sscanf(p, "%dx%d", &N, &n) == 2, "bad setting '", p, "' (want NxN)");
                o.settings.push_back({N, n});
            }
        } else fail("unknown option ", k);
    }
    Model m = open_model(argv[1]);
    BackendOptions bo;
    bo.threads = threads;
    bo.gpu_weights = parse_weight_type(gpu_weights);
    auto be = make_backend(parse_device(device), bo);
    Engine e(m, *be);
    const ModelConfig& c = m.config;
    o.validate(c);
    double clean_s = 0, items_s = 0, extrapolated = 0;
    for (int32_t s = 0; s < int32_t(o.settings.size()); ++s) {
        double t = now();
        SettingRun run(e, o, s);
        clean_s += now() - t;
        const int32_t L = max_layers > 0 ? std::min(max_layers, c.n_layer) : c.n_layer;
        double ts = 0;
        for (int32_t l = 0; l < L; ++l) {
            t = now();
            run.score(WorkItem{s, l, l + 1, 0, c.n_head});
            ts += now() - t;
        }
        items_s += ts;
        // Path-mode item cost falls with the layer (fewer MLPs downstream); total mode too: extrapolate by the
        // number of downstream layers, sum over l of (L - l), from the timed layers.
        double timed_w = 0, all_w = 0;
        for (int32_t l = 0; l < c.n_layer; ++l) (l < L ? timed_w : all_w) += c.n_layer - l;
        extrapolated += ts * (timed_w + all_w) / timed_w;
        std::fprintf(stderr, "setting (%d, %d): clean %.2f s, %d layers of items %.2f s, pi %.3f, copy acc %.3f\n",
                     o.settings[s].n_samples, o.settings[s].half_len, clean_s, L, ts, run.pi_clean(), run.copy_accuracy());
    }
    std::printf("{\"engine\":\"headsweep\",\"mode\":\"%s\",\"model\":\"%s\",\"device\":\"%s\",\"threads\":%d,\"clean_s\":%.3f,"
                "\"items_timed_s\":%.3f,\"full_sweep_secs_est\":%.4f,\"layers_timed\":%d,\"blas\":\"%s\"}\n",
                score_mode_name(o.mode), argv[1], device.c_str(), threads, clean_s, items_s, clean_s + extrapolated,
                max_layers > 0 ? max_layers : c.n_layer, cpu_runtime_tag().c_str());
    return 0;
} catch (const std::exception& ex) {
    std::fprintf(stderr, "headsweep_bench_sweep: error: %s\n", ex.what());
    return 1;
}

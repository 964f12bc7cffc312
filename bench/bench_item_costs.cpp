// bench/bench_item_costs.cpp: seconds of single sweep items and clean runs (PATH mode), one JSON line each, for the
// protocol simulation's cost model (tools/simulate_sweep.py --fit).
//
//   build/headsweep_bench_item_costs [--shapes smollm2-135m,qwen2.5-0.5b] [--threads 1] [--repeat 2]
//
// Per random shape and per setting (20,50) and (100,10): the clean run, then items of layer 0 and the last layer
// with 1 head and with all heads (the cost grows with heads x samples x downstream layers). One BLAS thread per rank,
// as the distributed sweep runs by default. The best of --repeat timings is printed.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "backend/cpu/cpu_runtime.hpp"
#include "engine/engine.hpp"
#include "model/model.hpp"
#include "pear/sweep.hpp"
#include "util/error.hpp"
#include "util/timer.hpp"

using namespace hs;
using namespace hs::pear;

int main(int argc, char** argv) try {
    hs::prepare_cpu_runtime(argv);
    std::string shapes = "smollm2-135m,qwen2.5-0.5b";
    int threads = 1, repeat = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--shapes") shapes = argv[i + 1];
        else if (k == "--threads") threads = std::atoi(argv[i + 1]);
        else if (k == "--repeat") repeat = std::max(1, std::atoi(argv[i + 1]));
        else fail("unknown option ", k);
    }
    std::stringstream ss(shapes);
    std::string shape;
    while (std::getline(ss, shape, ',')) {
        Model m = open_model("random:" + shape);
        BackendOptions bo;
        bo.threads = threads;
        auto be = make_backend(parse_device("cpu"), bo);
        Engine e(m, *be);
        const ModelConfig& c = m.config;
        SweepOptions o;
        o.settings = {{20, 50}, {100, 10}};
        for (int32_t s = 0; s < int32_t(o.settings.size()); ++s) {
            double best = 1e300;
            std::unique_ptr<SettingRun> run;
            for (int r = 0; r < repeat; ++r) {
                Timer t;
                run = std::make_unique<SettingRun>(e, o, s);
                best = std::min(best, t.seconds());
            }
            std::printf("{\"shape\":\"%s\",\"kind\":\"clean\",\"N\":%d,\"n\":%d,\"seconds\":%.6f,\"threads\":%d,"
                        "\"blas\":\"%s\"}\n",
                        shape.c_str(), o.settings[s].n_samples, o.settings[s].half_len, best, threads,
                        cpu_runtime_tag().c_str());
            for (int32_t l : {0, c.n_layer - 1})
                for (int32_t h : {1, c.n_head}) {
                    double bi = 1e300;
                    for (int r = 0; r < repeat; ++r) {
                        Timer t;
                        run->score_samples(WorkItem{s, l, l + 1, 0, h});
                        bi = std::min(bi, t.seconds());
                    }
                    std::printf("{\"shape\":\"%s\",\"kind\":\"item\",\"N\":%d,\"n\":%d,\"layer\":%d,\"heads\":%d,"
                                "\"seconds\":%.6f,\"threads\":%d}\n",
                                shape.c_str(), o.settings[s].n_samples, o.settings[s].half_len, l, h, bi, threads);
                    std::fflush(stdout);
                }
        }
    }
    return 0;
} catch (const std::exception& ex) {
    std::fprintf(stderr, "headsweep_bench_item_costs: error: %s\n", ex.what());
    return 1;
}

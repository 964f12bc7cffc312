// bench/bench_item_costs.cpp: seconds of single sweep items and clean runs (PATH mode), one JSON line each, for the
// protocol simulation's cost model (tools/simulate_sweep.py --fit).
//
//   build/headsweep_bench_item_costs [--shapes smollm2-135m,qwen2.5-0.5b] [--threads 1] [--repeat 2]
//   build/headsweep_bench_item_costs --model M.gguf --label llama3-8b --precision native --settings 20x2,4x16
//                                    --layers 0,16,31 --heads 1 --repeat 1
//
// --model: one model file instead of random shapes (--label names its shape for the fit); --settings, --layers and
// --heads choose what is timed (default: (20,50) and (100,10), layers 0 and L-1, 1 head and all). Each clean run
// also prints its shared state (SettingRun::export_state): bytes, export and import (from_state) seconds.
//
// Per random shape and per setting (20,50) and (100,10): the clean run, then items of layer 0 and the last layer
// with 1 head and with all heads (the cost grows with heads x samples x downstream layers). One BLAS thread per rank,
// as the distributed sweep runs by default. The best of --repeat timings is printed.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
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
    std::string model_path, label, precision = "f32", settings_text, layers_text, heads_text, items_text;
    auto ints = [](const std::string& text) {
        std::vector<int32_t> v;
        std::stringstream ss(text);
        std::string part;
        while (std::getline(ss, part, ',')) v.push_back(int32_t(std::atoi(part.c_str())));
        return v;
    };
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--shapes") shapes = argv[i + 1];
        else if (k == "--model") model_path = argv[i + 1];
        else if (k == "--label") label = argv[i + 1];
        else if (k == "--precision") precision = argv[i + 1];
        else if (k == "--settings") settings_text = argv[i + 1];
        else if (k == "--layers") layers_text = argv[i + 1];
        else if (k == "--heads") heads_text = argv[i + 1];
        else if (k == "--items") items_text = argv[i + 1];
        else if (k == "--threads") threads = std::atoi(argv[i + 1]);
        else if (k == "--repeat") repeat = std::max(1, std::atoi(argv[i + 1]));
        else fail("unknown option ", k);
    }
    if (!model_path.empty()) shapes = label.empty() ? model_path : label;
    std::stringstream ss(shapes);
    std::string shape;
    while (std::getline(ss, shape, ',')) {
        LoadOptions lo;
        lo.precision = parse_weight_precision(precision);
        Timer load;
        Model m = open_model(model_path.empty() ? "random:" + shape : model_path, lo);
        std::fprintf(stderr, "%s: loaded in %.1f s (%s weights)\n", shape.c_str(), load.seconds(), precision.c_str());
        BackendOptions bo;
        bo.threads = threads;
        auto be = make_backend(parse_device("cpu"), bo);
        Engine e(m, *be);
        const ModelConfig& c = m.config;
        SweepOptions o;
        o.settings = {{20, 50}, {100, 10}};
        if (!settings_text.empty()) {
            o.settings.clear();
            std::stringstream st(settings_text);
            std::string part;
            while (std::getline(st, part, ',')) {
                const size_t x = part.find('x');
                o.settings.push_back({std::atoi(part.substr(0, x).c_str()), std::atoi(part.substr(x + 1).c_str())});
            }
        }
        const std::vector<int32_t> layers = layers_text.empty() ? std::vector<int32_t>{0, c.n_layer - 1} : ints(layers_text);
        const std::vector<int32_t> heads = heads_text.empty() ? std::vector<int32_t>{1, c.n_head} : ints(heads_text);
        // (layer, heads) pairs: --items 0:1,24:32, else every --layers x --heads
        std::vector<std::pair<int32_t, int32_t>> pairs;
        if (!items_text.empty()) {
            std::stringstream st(items_text);
            std::string part;
            while (std::getline(st, part, ','))
                pairs.emplace_back(std::atoi(part.substr(0, part.find(':')).c_str()),
                                   std::atoi(part.substr(part.find(':') + 1).c_str()));
        } else {
            for (int32_t l : layers)
                for (int32_t h : heads) pairs.emplace_back(l, h);
        }
        for (int32_t s = 0; s < int32_t(o.settings.size()); ++s) {
            double best = 1e300, best_cpu = 1e300;
            std::unique_ptr<SettingRun> run;
            for (int r = 0; r < repeat; ++r) {
                Timer t;
                const std::clock_t c0 = std::clock();
                run = std::make_unique<SettingRun>(e, o, s);
                best = std::min(best, t.seconds());
                best_cpu = std::min(best_cpu, double(std::clock() - c0) / CLOCKS_PER_SEC);
            }
            Timer te;
            const std::vector<char> state = run->export_state();
            const double export_s = te.seconds();
            Timer ti;
            run = SettingRun::from_state(e, o, s, state);
            const double import_s = ti.seconds();
            std::printf("{\"shape\":\"%s\",\"kind\":\"clean\",\"N\":%d,\"n\":%d,\"seconds\":%.6f,\"threads\":%d,"
                        "\"blas\":\"%s\",\"precision\":\"%s\",\"state_bytes\":%zu,\"export_s\":%.6f,\"import_s\":%.6f,"
                        "\"cpu_s\":%.6f}\n",
                        shape.c_str(), o.settings[s].n_samples, o.settings[s].half_len, best, threads,
                        cpu_runtime_tag().c_str(), precision.c_str(), state.size(), export_s, import_s, best_cpu);
            std::fflush(stdout);
            for (const auto& [l, h] : pairs) {
                    double bi = 1e300, bc = 1e300;
                    for (int r = 0; r < repeat; ++r) {
                        Timer t;
                        const std::clock_t c0 = std::clock();
                        run->score_samples(WorkItem{s, l, l + 1, 0, h});
                        bi = std::min(bi, t.seconds());
                        bc = std::min(bc, double(std::clock() - c0) / CLOCKS_PER_SEC);
                    }
                    std::printf("{\"shape\":\"%s\",\"kind\":\"item\",\"N\":%d,\"n\":%d,\"layer\":%d,\"heads\":%d,"
                                "\"seconds\":%.6f,\"threads\":%d,\"precision\":\"%s\",\"cpu_s\":%.6f}\n",
                                shape.c_str(), o.settings[s].n_samples, o.settings[s].half_len, l, h, bi, threads,
                                precision.c_str(), bc);
                    std::fflush(stdout);
                }
        }
    }
    return 0;
} catch (const std::exception& ex) {
    std::fprintf(stderr, "headsweep_bench_item_costs: error: %s\n", ex.what());
    return 1;
}

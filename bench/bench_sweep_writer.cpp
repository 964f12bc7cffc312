// bench/bench_sweep_writer.cpp: results per second of the sweep's single writer (rank 0) on local disk, the former
// discipline against the journal with one commit per message, in one invocation.
//
//   build/headsweep_bench_sweep_writer [--layers 80] [--heads 64] [--results 2000] [--heads-per-item 2] [--dir /tmp]
//
// Synthetic results of a real shape (default Llama-3-70B's 80 layers x 64 heads; paper settings N = 20, 40, 80, 100; pi~ per head and sample, as file format 2
// stores them) are written in plan order through SweepFile:
//   flush_each           the former discipline: per result its values, a flush, its done marks, a flush (and, as
//                        the former code did, each dataset opened for each write)
//   flush_once, m/msg    per message of m results: the HDF5 writes, one flush (no journal: not crash safe)
//   journal, m/msg       per message: one journal append + fdatasync, the HDF5 writes, one flush (the sweep's)
// m = 1, 4 (the sweep's max_batch) and 16. The variants run interleaved, --rounds times (the median is printed:
// the machine may be shared); results/s and ms per result for each.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "pear/sweep_file.hpp"
#include "util/timer.hpp"

using namespace hs;
using namespace hs::pear;

namespace {

ItemScores fake_scores(const WorkItem& it, int32_t N) {
    ItemScores sc;
    sc.n_samples = N;
    for (int32_t h = it.head_begin; h < it.head_end; ++h) {
        const size_t at = sc.pi_tilde.size();
        for (int32_t b = 0; b < N; ++b) sc.pi_tilde.push_back(float(1.0 + 0.001 * (h + b + it.layer_begin)));
        sc.pi_ablated.push_back(sample_mean(&sc.pi_tilde[at], N));
    }
    return sc;
}

struct Row {
    std::string name;
    int64_t results = 0;
    double seconds = 0;
};

}  // namespace

int main(int argc, char** argv) {
    std::string dir = "/tmp";
    int32_t n_layer = 80, n_head = 64;
    int64_t n_results = 2000;
    int32_t hpi = 2, rounds = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--layers") n_layer = std::atoi(argv[i + 1]);
        else if (k == "--heads") n_head = std::atoi(argv[i + 1]);
        else if (k == "--results") n_results = std::atoll(argv[i + 1]);
        else if (k == "--heads-per-item") hpi = std::atoi(argv[i + 1]);
        else if (k == "--dir") dir = argv[i + 1];
        else if (k == "--rounds") rounds = std::max(1, std::atoi(argv[i + 1]));
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    ModelConfig cfg;  // only the shape matters to the file
    cfg.n_layer = n_layer;
    cfg.n_head = n_head;
    cfg.n_ctx = 8192;
    SweepFileInfo info;
    info.model = "synthetic";
    info.model_sha256 = "0";
    info.model_name = "synthetic";
    info.architecture = "llama";
    info.n_layer = n_layer;
    info.n_head = n_head;
    info.n_head_kv = 8;
    info.d_model = 128 * n_head;
    info.d_head = 128;
    info.n_vocab = 128256;
    info.n_ctx = cfg.n_ctx;
    const std::vector<WorkItem> plan = plan_items(cfg, info.options, 1, hpi);
    n_results = std::min<int64_t>(n_results, int64_t(plan.size()));
    std::printf("sweep writer: %d layers x %d heads, settings %s, items of %d heads, %lld results per run, dir %s\n",
                cfg.n_layer, cfg.n_head, settings_string(info.options.settings).c_str(), hpi,
                (long long)n_results, dir.c_str());
    std::vector<ItemScores> scores;
    for (int64_t i = 0; i < n_results; ++i)
        scores.push_back(fake_scores(plan[size_t(i)], info.options.settings[size_t(plan[size_t(i)].setting)].n_samples));
    const std::string path = dir + "/bench_sweep_writer_" + std::to_string(::getpid()) + ".h5";

    struct Variant {
        std::string name;
        WriteDiscipline d;
        int32_t per_message;
        std::vector<double> seconds;
    };
    std::vector<Variant> variants = {{"flush_each (former: 2 flushes per result)", WriteDiscipline::flush_each, 1, {}}};
    for (int32_t m : {1, 4, 16})
        variants.push_back({"flush_once, " + std::to_string(m) + "/message (1 flush, no journal)",
                            WriteDiscipline::flush_once, m, {}});
    for (int32_t m : {1, 4, 16})
        variants.push_back({"journal, " + std::to_string(m) + "/message (1 fsync + 1 flush)", WriteDiscipline::journal,
                            m, {}});
    for (int r = 0; r < rounds; ++r)
        for (Variant& v : variants) {
            WriteOptions w;
            w.discipline = v.d;
            SweepFile f = SweepFile::create(path, info, /*overwrite=*/true, w);
            Timer t;
            for (int64_t i = 0; i < n_results; ++i) {
                f.stage_item(plan[size_t(i)], scores[size_t(i)]);
                if ((i + 1) % v.per_message == 0 || i + 1 == n_results) f.commit();
            }
            v.seconds.push_back(t.seconds());
            f.close();
            std::filesystem::remove(path);
            std::filesystem::remove(journal_path(path));
        }
    for (Variant& v : variants) {
        std::sort(v.seconds.begin(), v.seconds.end());
        const double med = v.seconds[v.seconds.size() / 2];
        std::printf("  %-46s %9.0f results/s  %7.3f ms/result (median of %d; best %.0f/s)\n", v.name.c_str(),
                    double(n_results) / med, 1e3 * med / double(n_results), rounds,
                    double(n_results) / v.seconds.front());
    }
    return 0;
}

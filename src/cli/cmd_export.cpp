// headsweep export: fold trained tau into W_O and write a new GGUF (pear/fold.hpp).
// headsweep rank-heads: score every head on the paper's proxy settings through the pear API (path and/or
// attribution mode), print the top K, write a small HDF5 file that `train --sweep` reads (/ranking, /top_k/*).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>

#include "backend/cpu/cpu_runtime.hpp"
#include "cli/commands.hpp"
#include "engine/engine.hpp"
#include "io/h5.hpp"
#include "model/model.hpp"
#include "pear/fold.hpp"
#include "pear/sweep.hpp"
#include "pear/train.hpp"
#include "util/error.hpp"

namespace hs::cli {

void add_export_command(CLI::App& app) {
    struct Opts {
        std::string model = kDefaultModel, train, heads, tau, output;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("export", "Write a GGUF with tau folded into W_O (zero inference overhead)");
    cmd->add_option("-m,--model", o->model, "source GGUF file")->capture_default_str();
    cmd->add_option("--train", o->train, "a `headsweep train` output file (heads and tau)");
    cmd->add_option("--heads", o->heads, "heads \"l:h,...\" (with --tau, instead of --train)");
    cmd->add_option("--tau", o->tau, "tau values \"t1,t2,...\" (with --heads)");
    cmd->add_option("-o,--output", o->output, "the new GGUF file")->required();
    cmd->callback([o] {
        std::vector<pear::HeadRef> heads;
        std::vector<float> tau;
        if (!o->train.empty()) {
            check(o->heads.empty() && o->tau.empty(), "export: give --train or --heads/--tau, not both");
            pear::TrainedTau t = pear::read_trained_tau(o->train);
            heads = std::move(t.heads);
            tau = std::move(t.tau);
        } else {
            check(!o->heads.empty() && !o->tau.empty(), "export: give --train, or --heads and --tau");
            heads = pear::parse_heads(o->heads);
            std::string s = o->tau;
            size_t pos = 0;
            while (pos <= s.size()) {
                size_t e = s.find(',', pos);
                if (e == std::string::npos) e = s.size();
                try {
                    tau.push_back(std::stof(s.substr(pos, e - pos)));
                } catch (const std::logic_error&) {
                    fail("export: bad tau value '", s.substr(pos, e - pos), "'");
                }
                pos = e + 1;
            }
        }
        const auto rep = pear::export_folded_gguf(o->model, o->output, heads, tau);
        std::printf("wrote %s: %zu attn_output tensors folded (%s, %lld blocks rescaled), %lld tensors copied "
                    "byte for byte\n", o->output.c_str(), rep.touched.size(), rep.type.c_str(),
                    (long long)rep.rescaled_blocks, (long long)rep.copied_tensors);
    });
}

namespace {

std::vector<double> ranks_of(const std::vector<double>& v) {  // average ranks for ties
    std::vector<size_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < idx.size();) {
        size_t j = i;
        while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
        for (size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * double(i + j);
        i = j + 1;
    }
    return r;
}

}  // namespace

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
    const auto ra = ranks_of(a), rb = ranks_of(b);
    const double n = double(a.size());
    double ma = 0, mb = 0;
    for (size_t i = 0; i < a.size(); ++i) ma += ra[i], mb += rb[i];
    ma /= n, mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    return sab / std::sqrt(saa * sbb);
}

void add_rank_heads_command(CLI::App& app) {
    struct Opts {
        std::string model = kDefaultModel, mode = "path", output;
        int32_t top_k = 8;
        int threads = 0;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "rank-heads", "Score every head on the paper's proxy settings (path, attribution or both) and rank them");
    cmd->add_option("-m,--model", o->model, "GGUF file, Hugging Face checkpoint folder, or random:<shape>[:<seed>]")->capture_default_str();
    cmd->add_option("--mode", o->mode, "path | attribution | both")->capture_default_str();
    cmd->add_option("-k,--top-k", o->top_k, "heads to keep")->capture_default_str();
    cmd->add_option("-o,--output", o->output, "HDF5 file with /ranking and /top_k (the first mode's)");
    cmd->add_option("-t,--threads", o->threads, "BLAS threads");
    cmd->callback([o] {
        check(o->mode == "path" || o->mode == "attribution" || o->mode == "both",
              "rank-heads: mode must be path, attribution or both");
        Model m = open_model(o->model);
        const ModelConfig& c = m.config;
        auto be = make_cpu_backend(o->threads);
        Engine engine(m, *be);
        std::vector<pear::ScoreMode> modes;
        if (o->mode != "attribution") modes.push_back(pear::ScoreMode::PATH);
        if (o->mode != "path") modes.push_back(pear::ScoreMode::ATTRIBUTION);
        std::vector<pear::HeadScores> results;
        std::vector<double> seconds;
        for (auto mode : modes) {
            pear::SweepOptions so;
            so.mode = mode;
            so.top_k = o->top_k;
            so.validate(c);
            pear::HeadScores hs;
            hs.n_layer = c.n_layer;
            hs.n_head = c.n_head;
            hs.settings = so.settings;
            hs.pi_ablated.assign(so.settings.size() * size_t(c.n_heads_total()), 0.0);
            const auto t0 = std::chrono::steady_clock::now();
            for (int32_t s = 0; s < int32_t(so.settings.size()); ++s) {
                pear::SettingRun run(engine, so, s);
                hs.pi_clean.push_back(run.pi_clean());
                hs.copy_accuracy.push_back(run.copy_accuracy());
                auto sc = run.score(pear::WorkItem{s, 0, c.n_layer, 0, c.n_head});
                std::copy(sc.begin(), sc.end(), hs.pi_ablated.begin() + size_t(s) * c.n_heads_total());
                std::fprintf(stderr, "rank-heads: %s: setting (%d, %d) done, pi %.4f, copy accuracy %.3f\n",
                             pear::score_mode_name(mode), so.settings[s].n_samples, so.settings[s].half_len,
                             run.pi_clean(), run.copy_accuracy());
            }
            seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            pear::finish_scores(hs, o->top_k);
            results.push_back(std::move(hs));
        }
        for (size_t i = 0; i < modes.size(); ++i) {
            const auto& hs = results[i];
            std::printf("%s mode (%.1f s): top %d:", pear::score_mode_name(modes[i]), seconds[i], o->top_k);
            for (int32_t k = 0; k < o->top_k; ++k)
                std::printf(" %d:%d(%.3f)", hs.ranking[k] / c.n_head, hs.ranking[k] % c.n_head,
                            hs.mean_ratio[size_t(hs.ranking[k])]);
            std::printf("\n");
        }
        double rho = std::nan("");
        if (results.size() == 2) {
            rho = spearman(results[0].mean_ratio, results[1].mean_ratio);
            int32_t overlap = 0;
            for (int32_t a = 0; a < o->top_k; ++a)
                for (int32_t b = 0; b < o->top_k; ++b) overlap += results[0].ranking[a] == results[1].ranking[b];
            std::printf("spearman(path, attribution) over all %d heads: %.4f; top-%d overlap %d\n", c.n_heads_total(),
                        rho, o->top_k, overlap);
        }
        if (!o->output.empty()) {
            h5::File f = h5::File::create(o->output, h5::Overwrite::yes);
            f.set_attr("model", o->model);
            f.set_attr("top_k", o->top_k);
            for (const auto& [key, value] : cpu_runtime_provenance()) f.set_attr(key, value);
            for (size_t i = 0; i < modes.size(); ++i) {
                const auto& hs = results[i];
                const std::string g = i == 0 ? "" : std::string(pear::score_mode_name(modes[i])) + "/";
                if (i == 0) f.set_attr("mode", pear::score_mode_name(modes[i]));
                f.create_dataset<int32_t>(g + "ranking", {uint64_t(hs.ranking.size())}).write(hs.ranking);
                f.create_dataset<double>(g + "mean_ratio", {uint64_t(c.n_layer), uint64_t(c.n_head)})
                    .write(hs.mean_ratio);
                std::vector<int32_t> tl, th;
                for (int32_t k = 0; k < o->top_k; ++k)
                    tl.push_back(hs.ranking[k] / c.n_head), th.push_back(hs.ranking[k] % c.n_head);
                f.create_dataset<int32_t>(g + "top_k/layer", {uint64_t(o->top_k)}).write(tl);
                f.create_dataset<int32_t>(g + "top_k/head", {uint64_t(o->top_k)}).write(th);
            }
            if (results.size() == 2) f.set_attr("spearman_path_attribution", rho);
            f.close();
        }
    });
}

}  // namespace hs::cli

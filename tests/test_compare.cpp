// pear/compare (headsweep compare) and the sweep file's stored inputs checked through the engine.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "engine/engine.hpp"
#include "io/h5.hpp"
#include "model/model.hpp"
#include "pear/compare.hpp"
#include "pear/job.hpp"
#include "pear/run_job.hpp"
#include "pear/sweep_file.hpp"
#include "temp_dir.hpp"
#include "util/error.hpp"
#include "util/json.hpp"

using namespace hs;
using namespace hs::pear;
namespace fs = std::filesystem;

namespace {

RunJobOptions quiet() {
    RunJobOptions o;
    o.progress = false;
    return o;
}

// A finished sweep of random:tiny (2 layers x 4 heads), settings 4x6 and 6x5, top-3.
std::string tiny_sweep(const TempDir& tmp, uint64_t seed, const std::string& mode = "path",
                       const std::string& settings = "[{N = 4, n = 6}, {N = 6, n = 5}]",
                       const std::string& model = "random:tiny") {
    SweepJob job = parse_job_text("model = \"" + model + "\"\nmode = \"" + mode + "\"\nsettings = " + settings +
                                      "\ntop_k = 3\n",
                                  "tiny.toml");
    job.options.seed = seed;
    job.output = tmp.file("{model}-{mode}-" + std::to_string(seed) + "-" + std::to_string(settings.size()) + ".h5");
    return run_job(job, quiet()).at(0).output;
}

// A copy of `src` with the heads' scores permuted: head i of the copy gets head perm[i]'s mean_ratio (and the
// per-sample datasets dropped, as in a version-1 file).
std::string permuted_copy(const TempDir& tmp, const std::string& src, const std::vector<int>& perm) {
    const std::string dst = tmp.file("permuted.h5");
    fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
    h5::File h = h5::File::open(dst, h5::Mode::read_write);
    auto mr = h.open_dataset("mean_ratio").read<double>();
    std::vector<double> out(mr.size());
    for (size_t i = 0; i < mr.size(); ++i) out[i] = mr[size_t(perm[i])];
    h.open_dataset("mean_ratio").write(out);
    for (const char* p : {"inputs", "pi_clean_samples", "pi_tilde", "stats", "top_k/mean_ratio_se",
                          "top_k/mean_ratio_lo", "top_k/mean_ratio_hi", "top_k/frequency", "axes/sample",
                          "axes/position"})
        h.unlink(p);
    h.set_attr("format_version", int32_t(1));
    return dst;
}

}  // namespace

TEST_CASE("compare: spearman and jaccard helpers", "[compare]") {
    CHECK(spearman({1, 2, 3, 4}, {10, 20, 30, 40}) == Approx(1.0));
    CHECK(spearman({1, 2, 3, 4}, {4, 3, 2, 1}) == Approx(-1.0));
    // Ties get their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4).
    CHECK(spearman({1, 2, 2, 3}, {1, 2, 3, 4}) == Approx(4.5 / std::sqrt(4.5 * 5.0)));
    CHECK(jaccard({1, 1, 0, 0}, {0, 1, 1, 0}) == Approx(1.0 / 3));
    CHECK(jaccard({1, 1, 0, 0}, {1, 1, 0, 0}) == 1.0);
}

TEST_CASE("compare: identical sweeps agree fully, a permuted one does not, seeds give a stability table",
          "[compare][sweep]") {
    TempDir tmp{"compare"};
    const std::string a = tiny_sweep(tmp, 5);
    const std::string b = tmp.file("copy.h5");
    fs::copy_file(a, b);
    CompareResult r = compare_sweeps({a, b}, {});
    REQUIRE(r.pairs.size() == 1);
    CHECK(r.top_k == 3);
    CHECK(r.pairs[0].spearman == Approx(1.0));
    CHECK(r.pairs[0].jaccard == 1.0);
    CHECK(r.pairs[0].changes.at(0).diff == 0.0);
    REQUIRE(r.pairs[0].changes[0].se >= 0);  // both have per-sample values
    REQUIRE(r.stability.size() == 3);
    CHECK(r.stability[0].file_frequency == 1.0);
    CHECK(r.stability[0].bootstrap_frequency >= 0);

    // The ranking reversed (the head of rank r gets the score of rank 7 - r): rho -1, the top K at the bottom.
    const std::vector<int32_t> ranking = SweepFile::open(a).read_scores().ranking;
    std::vector<int> rev(8);
    for (int r = 0; r < 8; ++r) rev[size_t(ranking[size_t(r)])] = ranking[size_t(7 - r)];
    const std::string p = permuted_copy(tmp, a, rev);
    r = compare_sweeps({a, p}, {});
    CHECK(r.pairs[0].spearman == Approx(-1.0));
    CHECK(r.pairs[0].jaccard == 0.0);
    CHECK(r.pairs[0].changes[0].se < 0);  // the copy has no per-sample values: absent
    CHECK(r.stability[0].bootstrap_frequency < 0);
    const std::string table = compare_table(r);
    CHECK_THAT(table, Catch::Contains("absent (format version 1)") && Catch::Contains("spearman -1.0000"));
    const json::Value j = json::parse(compare_json(r));
    CHECK(j.at("pairs").arr.at(0).at("spearman").num == Approx(-1.0));
    CHECK(j.at("pairs").arr.at(0).at("changes").arr.at(0).at("se").kind == json::Value::NUL);
    CHECK(j.at("files").arr.at(1).at("per_sample").b == false);
    CHECK(compare_json(r).find('\n') == std::string::npos);

    // Three seeds: every pair, and the fraction of seeds in whose top K each head is.
    const std::string s6 = tiny_sweep(tmp, 6), s7 = tiny_sweep(tmp, 7);
    CompareOptions o;
    o.top_k = 2;  // not the stored K: the bootstrap frequency is recomputed from the samples
    r = compare_sweeps({a, s6, s7}, o);
    CHECK(r.pairs.size() == 3);
    CHECK(r.top_k == 2);
    double total = 0;
    for (const auto& h : r.stability) {
        CHECK(h.bootstrap_frequency >= 0);
        total += h.file_frequency;
    }
    CHECK(total == Approx(2.0));  // each file contributes K heads / 3 files
}

TEST_CASE("compare: refuses other shapes, settings and modes, unfinished and damaged files, naming both files",
          "[compare][sweep]") {
    TempDir tmp{"compare"};
    const std::string a = tiny_sweep(tmp, 5);
    const std::string other_shape = tiny_sweep(tmp, 5, "path", "[{N = 4, n = 6}, {N = 6, n = 5}]", "random:tiny-mha");
    const std::string other_settings = tiny_sweep(tmp, 5, "path", "[{N = 4, n = 6}]");
    const std::string attribution = tiny_sweep(tmp, 5, "attribution");
    CHECK_THROWS_WITH(compare_sweeps({a, other_shape}, {}),
                      Catch::Contains(a) && Catch::Contains(other_shape) &&
                          (Catch::Contains("n_layer differs") || Catch::Contains("n_head differs")));
    CHECK_THROWS_WITH(compare_sweeps({a, other_settings}, {}),
                      Catch::Contains(a) && Catch::Contains(other_settings) &&
                          Catch::Contains("settings (N x n) differs") && Catch::Contains("4x6,6x5"));
    CHECK_THROWS_WITH(compare_sweeps({a, attribution}, {}),
                      Catch::Contains("mode differs") && Catch::Contains("path") &&
                          Catch::Contains("attribution") && Catch::Contains("--allow-modes"));
    CompareOptions modes;
    modes.allow_modes = true;
    CHECK(compare_sweeps({a, attribution}, modes).pairs.size() == 1);
    CHECK_THROWS_WITH(compare_sweeps({a}, {}), Catch::Contains("at least two"));

    // Damaged per-sample values: the file and the dataset are named.
    const std::string d = tmp.file("damaged.h5");
    fs::copy_file(a, d);
    {
        h5::File h = h5::File::open(d, h5::Mode::read_write);
        const float v = 123.0f;
        h.open_dataset("pi_tilde").write(&v, 1, {1, 1, 2, 0}, {1, 1, 1, 1});
    }
    CHECK_THROWS_WITH(compare_sweeps({a, d}, {}), Catch::Contains(d) && Catch::Contains("/pi_tilde is damaged"));
    {
        h5::File h = h5::File::open(d, h5::Mode::read_write);
        h.unlink("pi_tilde");
    }
    CHECK_THROWS_WITH(compare_sweeps({a, d}, {}), Catch::Contains(d) && Catch::Contains("/pi_tilde is missing"));
    // Unfinished.
    h5::File::open(d, h5::Mode::read_write).set_attr("complete", int32_t(0));
    CHECK_THROWS_WITH(compare_sweeps({a, d}, {}), Catch::Contains(d) && Catch::Contains("not complete"));
}

TEST_CASE("sweep file: the stored inputs are the sweep's proxy batch and recompute a head's per-sample scores",
          "[sweep][sweep_file][compare]") {
    TempDir tmp{"compare"};
    const std::string path = tiny_sweep(tmp, 5);
    SweepFile f = SweepFile::open(path);
    const SampleData d = f.read_samples();
    Model model = open_model("random:tiny");
    const ModelConfig& c = model.config;
    auto be = make_cpu_backend(1);
    Engine engine(model, *be);
    for (int32_t s = 0; s < 2; ++s) {
        const ProxySetting st = f.info().options.settings[size_t(s)];
        const std::vector<int32_t> tokens = f.read_tokens(s);
        CHECK(tokens == make_proxy_batch(st, s, 5, model.tokenizer, c.n_vocab, false).tokens);
    }
    // Recompute from the stored ids alone (no seed): the clean margins and head (1, 2)'s ablated margins of
    // setting 1, by the brute-force PATH ablation (every layer's attention frozen at its clean value, the head's
    // output at p replaced by its batch mean, full forward, margins from the full logits).
    const int32_t s = 1, L = 1, Hd = 2;
    const int32_t N = 6, n = 5, T = 2 * n, p = T - 2;
    const std::vector<int32_t> tokens = f.read_tokens(s);
    ForwardHooks cap;
    for (int32_t j = 0; j < c.n_layer; ++j) cap.z_layers.push_back(j);
    cap.logits = LogitsMode::POSITIONS;
    cap.logit_positions = {p};
    ForwardResult clean = engine.forward(tokens, N, T, cap);
    std::vector<float> mean(size_t(c.d_head));
    for (int32_t a = 0; a < c.d_head; ++a) {
        double m = 0;
        for (int32_t b = 0; b < N; ++b) m += clean.z[size_t(L)][(size_t(b) * T + p) * c.q_dim() + Hd * c.d_head + a];
        mean[size_t(a)] = float(m / N);
    }
    ForwardHooks hk;
    hk.logits = LogitsMode::POSITIONS;
    hk.logit_positions = {p};
    hk.frozen_attention = &clean.z;
    hk.head_patches.push_back(HeadPatch{L, Hd, -1, {p}, mean});
    ForwardResult ablated = engine.forward(tokens, N, T, hk);
    auto margin = [&](const ForwardResult& r, int32_t b) {
        const float* lg = r.logits_at(b, 0, c.n_vocab);
        double m = 0;
        for (int32_t v = 0; v < c.n_vocab; ++v) m += lg[v];
        return double(lg[tokens[size_t(b) * T + n - 1]]) - m / c.n_vocab;
    };
    for (int32_t b = 0; b < N; ++b) {
        INFO("sample " << b);
        CHECK(d.pi_clean[size_t(s) * d.n_max + b] == Approx(margin(clean, b)).epsilon(1e-4).margin(1e-4));
        CHECK(d.pi_tilde[d.at(s, L, Hd) + size_t(b)] == Approx(margin(ablated, b)).epsilon(1e-4).margin(1e-4));
    }
}

// pear/sweep_file: the HDF5 file of one sweep -- layout, round trip, done mask, partial files, resume checks.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "temp_dir.hpp"
#include "io/h5.hpp"
#include "pear/sweep_file.hpp"
#include "util/error.hpp"

using namespace hs;
using namespace hs::pear;
namespace fs = std::filesystem;

namespace {


SweepFileInfo small_info() {
    SweepFileInfo info;
    info.model = "random:tiny";
    info.model_sha256 = model_sha256("random:tiny");
    info.model_name = "tiny";
    info.architecture = "llama";
    info.n_layer = 3;
    info.n_head = 4;
    info.n_head_kv = 2;
    info.d_model = 64;
    info.d_head = 16;
    info.n_vocab = 300;
    info.n_ctx = 8192;
    info.options.settings = {{4, 6}, {8, 5}};
    info.options.seed = 7;
    return info;
}

int n_of(int s) { return s == 0 ? 4 : 8; }  // N of small_info()'s settings
int t_of(int s) { return s == 0 ? 12 : 10; }  // 2n

// Per-sample pi~ of (s, l, h, b): values that identify the cell, spread around 1 + 0.5 s + 0.1 l + 0.01 h.
float sample_value(int s, int l, int h, int b) {
    return float(1.0 + 0.5 * s + 0.1 * l + 0.01 * h + 0.003 * ((b * 7 + h + l) % 5) - 0.006);
}
std::vector<float> cell_samples(int s, int l, int h) {
    std::vector<float> v;
    for (int b = 0; b < n_of(s); ++b) v.push_back(sample_value(s, l, h, b));
    return v;
}
// pi_ablated of (s, l, h): the mean of its samples.
double cell(int s, int l, int h) { return sample_mean(cell_samples(s, l, h).data(), n_of(s)); }

ItemScores layer_scores(int s, int l) {
    ItemScores sc;
    sc.n_samples = n_of(s);
    for (int h = 0; h < 4; ++h) {
        sc.pi_ablated.push_back(cell(s, l, h));
        const auto v = cell_samples(s, l, h);
        sc.pi_tilde.insert(sc.pi_tilde.end(), v.begin(), v.end());
    }
    return sc;
}

void write_layer(SweepFile& f, int s, int l) { f.write_item(WorkItem{s, l, l + 1, 0, 4}, layer_scores(s, l)); }

// Clean values of setting s around `pi` whose mean is returned; tokens 100 s + 10 b + t.
double write_clean(SweepFile& f, int s, double pi, double acc) {
    std::vector<float> pc;
    for (int b = 0; b < n_of(s); ++b) pc.push_back(float(pi + 0.01 * ((b % 3) - 1)));
    std::vector<int32_t> tokens;
    for (int b = 0; b < n_of(s); ++b)
        for (int t = 0; t < t_of(s); ++t) tokens.push_back(100 * s + 10 * b + t);
    const double mean = sample_mean(pc.data(), n_of(s));
    f.write_clean(s, mean, acc, tokens, pc);
    return mean;
}

}  // namespace

TEST_CASE("sweep file: round trip of a complete sweep", "[sweep][io]") {
    TempDir tmp{"sweepfile"};
    const std::string path = tmp.file("full.h5");
    {
        SweepFile f = SweepFile::create(path, small_info());
        CHECK_FALSE(f.complete());
        for (int s = 0; s < 2; ++s) {
            write_clean(f, s, 2.0 + s, 0.25 * (s + 1));
            for (int l = 0; l < 3; ++l) write_layer(f, s, l);
        }
        CHECK(f.all_done());
        CHECK_FALSE(f.complete());  // done, but not finished
        HeadScores s = f.finish(5);
        CHECK(s.top_k == 5);
        CHECK(f.complete());
        f.close();
    }
    {  // provenance of the machine: the CPU and the BLAS kernels that computed the scores
        h5::File raw = h5::File::open(path);
        for (const char* key : {"cpu", "cpu_features", "blas", "blas_core"}) CHECK(raw.has_attr(key));
    }
    SweepFile f = SweepFile::open(path);
    CHECK(f.complete());
    const SweepFileInfo& info = f.info();
    CHECK(info.model == "random:tiny");
    CHECK(info.model_sha256 == model_sha256("random:tiny:1"));  // the same model spelled two ways
    CHECK(info.n_layer == 3);
    CHECK(info.n_head == 4);
    CHECK(settings_string(info.options.settings) == "4x6,8x5");
    CHECK(info.options.seed == 7);
    CHECK(info.options.mode == ScoreMode::PATH);
    CHECK(differing_parameters(info, small_info()).empty());

    HeadScores s = f.read_scores();
    REQUIRE(s.pi_ablated.size() == 2 * 3 * 4);
    for (int st = 0; st < 2; ++st)
        for (int l = 0; l < 3; ++l)
            for (int h = 0; h < 4; ++h) {
                const size_t i = size_t(st * 12 + l * 4 + h);
                CHECK(s.pi_ablated[i] == cell(st, l, h));
                CHECK(s.raw[i] == Approx(cell(st, l, h) - s.pi_clean[size_t(st)]));
                CHECK(s.ratio[i] == Approx(cell(st, l, h) / s.pi_clean[size_t(st)] - 1.0));
            }
    CHECK(s.pi_clean[0] == Approx(2.0).margin(0.01));
    CHECK(s.pi_clean[1] == Approx(3.0).margin(0.01));
    CHECK(s.copy_accuracy == std::vector<double>{0.25, 0.5});
    CHECK(s.top_k == 5);
    REQUIRE(s.ranking.size() == 12);
    for (size_t r = 1; r < s.ranking.size(); ++r)
        CHECK(s.mean_ratio[size_t(s.ranking[r - 1])] >= s.mean_ratio[size_t(s.ranking[r])]);

    // The top-K datasets, the rank matrix and the named axes.
    h5::File h = h5::File::open(path);
    auto tl = h.open_dataset("top_k/layer").read<int32_t>();
    auto th = h.open_dataset("top_k/head").read<int32_t>();
    REQUIRE(tl.size() == 5);
    for (int r = 0; r < 5; ++r) CHECK(tl[size_t(r)] * 4 + th[size_t(r)] == s.ranking[size_t(r)]);
    auto rank = h.open_dataset("rank").read<int32_t>();
    CHECK(rank[size_t(s.ranking[0])] == 0);
    h5::Dataset ratio = h.open_dataset("ratio");
    CHECK(ratio.attached_scale_names(0) == std::vector<std::string>{"setting", "setting_N", "setting_n"});
    CHECK(ratio.attached_scale_names(1) == std::vector<std::string>{"layer"});
    CHECK(ratio.attached_scale_names(2) == std::vector<std::string>{"head"});
    CHECK(h.open_dataset("mean_ratio").attached_scale_names(1) == std::vector<std::string>{"head"});
    CHECK(h.open_dataset("done").attached_scale_names(1) == std::vector<std::string>{"layer"});
    CHECK(h.open_dataset("axes/setting_N").read<int32_t>() == std::vector<int32_t>{4, 8});
    CHECK_FALSE(h.open_group("run").attr_string("start_time").empty());
    CHECK_FALSE(h.open_group("run").attr_string("end_time").empty());
}

TEST_CASE("sweep file: done mask, partial file never complete, remaining items", "[sweep][io]") {
    TempDir tmp{"sweepfile"};
    const std::string path = tmp.file("partial.h5");
    {
        SweepFile f = SweepFile::create(path, small_info());
        write_clean(f, 0, 2.0, 0.5);
        write_layer(f, 0, 0);
        write_layer(f, 0, 2);
        // no close(): the file must be readable from what the flushes put on disk
    }
    SweepFile f = SweepFile::open(path);
    CHECK_FALSE(f.complete());
    CHECK_FALSE(f.all_done());
    CHECK(f.done() == std::vector<uint8_t>{1, 0, 1, 0, 0, 0});
    CHECK_FALSE(f.setting_done(0));
    HeadScores s = f.read_scores();
    CHECK(s.pi_ablated[0] == cell(0, 0, 0));
    CHECK(std::isnan(s.pi_ablated[4]));   // setting 0, layer 1: not written
    CHECK(std::isnan(s.pi_clean[1]));
    CHECK(std::isnan(s.mean_ratio[0]));   // not finished
    CHECK(s.ranking.empty());

    std::vector<WorkItem> plan;
    for (int st = 0; st < 2; ++st)
        for (int l = 0; l < 3; ++l) plan.push_back({st, l, l + 1, 0, 4});
    auto rest = f.remaining(plan);
    REQUIRE(rest.size() == 4);
    CHECK((rest[0].setting == 0 && rest[0].layer_begin == 1));
    CHECK((rest[1].setting == 1 && rest[1].layer_begin == 0));

    f.close();
    SweepFile w = SweepFile::open_for_resume(path, small_info());
    CHECK_THROWS_WITH(w.finish(3), Catch::Contains("cannot finish") && Catch::Contains("layer 1 is not done"));
    CHECK_FALSE(w.complete());
    // Heads outside the model are refused; a value count that does not match the heads too.
    CHECK_THROWS_WITH(w.write_item({0, 1, 2, 2, 5}, ItemScores{4, {1.0, 2.0, 3.0}, {}}),
                      Catch::Contains("heads 2..5 are outside 0..4"));
    CHECK_THROWS_WITH(w.write_item({0, 1, 2, 0, 4}, ItemScores{4, {1.0}, {}}), Catch::Contains("4 heads but 1 values"));
    // Per-sample values: the right count, and means that are their means.
    ItemScores bad = layer_scores(0, 1);
    bad.pi_tilde.pop_back();
    CHECK_THROWS_WITH(w.write_item({0, 1, 2, 0, 4}, bad), Catch::Contains("per-sample values"));
    bad = layer_scores(0, 1);
    bad.pi_ablated[2] += 1e-12;
    CHECK_THROWS_WITH(w.write_item({0, 1, 2, 0, 4}, bad), Catch::Contains("value 2 is not the mean"));
    CHECK(w.done() == std::vector<uint8_t>{1, 0, 1, 0, 0, 0});
}

TEST_CASE("sweep file: an existing file is refused unless overwrite", "[sweep][io]") {
    TempDir tmp{"sweepfile"};
    const std::string path = tmp.file("exists.h5");
    SweepFile::create(path, small_info()).close();
    CHECK_THROWS_WITH(SweepFile::create(path, small_info()),
                      Catch::Contains(path) && Catch::Contains("exists") && Catch::Contains("--overwrite"));
    SweepFile f = SweepFile::create(path, small_info(), /*overwrite=*/true);
    CHECK_FALSE(f.complete());
    CHECK_THROWS_WITH(SweepFile::open_for_resume(tmp.file("missing.h5"), small_info()),
                      Catch::Contains("no such file"));
}

TEST_CASE("sweep file: resume refuses each mismatched job parameter, naming it", "[sweep][io]") {
    TempDir tmp{"sweepfile"};
    const std::string path = tmp.file("resume.h5");
    {
        SweepFile f = SweepFile::create(path, small_info());
        write_clean(f, 0, 2.0, 0.5);
        write_layer(f, 0, 0);
    }
    struct Case {
        const char* name;
        void (*change)(SweepFileInfo&);
    };
    const Case cases[] = {
        {"mode", [](SweepFileInfo& i) { i.options.mode = ScoreMode::TOTAL; }},
        {"settings", [](SweepFileInfo& i) { i.options.settings[1].half_len = 6; }},
        {"seed", [](SweepFileInfo& i) { i.options.seed = 8; }},
        {"exclude_special", [](SweepFileInfo& i) { i.options.exclude_special = true; }},
        {"mean_over", [](SweepFileInfo& i) { i.options.mean_over = MeanOver::SEQUENCE; }},
        {"positions", [](SweepFileInfo& i) { i.options.total_positions = {1, 2}; }},
        {"model_sha256", [](SweepFileInfo& i) { i.model_sha256 = model_sha256("random:tiny:2"); }},
        {"n_layer", [](SweepFileInfo& i) { i.n_layer = 4; }},
        {"n_head", [](SweepFileInfo& i) { i.n_head = 8; }},
        {"heads_per_item", [](SweepFileInfo& i) { i.heads_per_item = 2; }},
    };
    for (const Case& c : cases) {
        SweepFileInfo other = small_info();
        c.change(other);
        INFO(c.name);
        CHECK_THROWS_WITH(SweepFile::open_for_resume(path, other),
                          Catch::Contains("cannot resume") && Catch::Contains(std::string(c.name) + " (file: "));
    }
    // What does not change a score may differ: K, the model's path, the chunk size.
    SweepFileInfo same = small_info();
    same.options.top_k = 2;
    same.model = "elsewhere/random:tiny";
    same.options.max_rows_per_chunk = 16;
    SweepFile f = SweepFile::open_for_resume(path, same);
    CHECK(f.done() == std::vector<uint8_t>{1, 0, 0, 0, 0, 0});
    // Not a sweep file at all.
    h5::File::create(tmp.file("other.h5")).close();
    CHECK_THROWS_WITH(SweepFile::open_for_resume(tmp.file("other.h5"), small_info()),
                      Catch::Contains("not a headsweep sweep file"));
}

TEST_CASE("sweep file: comparison ignores /run times and finds changed values", "[sweep][io]") {
    TempDir tmp{"sweepfile"};
    auto make = [&](const std::string& name, double pi) {
        SweepFile f = SweepFile::create(tmp.file(name), small_info());
        for (int s = 0; s < 2; ++s) {
            write_clean(f, s, pi, 0.5);
            for (int l = 0; l < 3; ++l) write_layer(f, s, l);
        }
        f.finish(3);
        f.close();
    };
    make("a.h5", 2.0);
    make("b.h5", 2.0);
    make("c.h5", 2.5);
    CHECK(compare_sweep_files(tmp.file("a.h5"), tmp.file("b.h5")).empty());
    auto d = compare_sweep_files(tmp.file("a.h5"), tmp.file("c.h5"));
    CHECK_FALSE(d.empty());
    CHECK(std::find(d.begin(), d.end(), "/pi_clean: values differ") != d.end());
}

// ------------------------------------------------------------------------------------------------ format version 2

namespace {

// A finished file of small_info() (clean pi 2 and 3).
std::string finished_file(const TempDir& tmp, const std::string& name, int32_t resamples = 200) {
    const std::string path = tmp.file(name);
    SweepFile f = SweepFile::create(path, small_info());
    for (int s = 0; s < 2; ++s) {
        write_clean(f, s, 2.0 + s, 0.5);
        for (int l = 0; l < 3; ++l) write_layer(f, s, l);
    }
    f.finish(3, resamples);
    f.close();
    return path;
}

uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// The documented draw of resample r: N indices by rejection from mt19937_64(splitmix(seed ^ splitmix(r + 1))).
std::vector<int> naive_draw(std::mt19937_64& g, int N) {
    std::vector<int> idx;
    const uint64_t lim = ~uint64_t(0) - ~uint64_t(0) % uint64_t(N);
    for (int b = 0; b < N; ++b) {
        uint64_t r;
        do r = g(); while (r >= lim);
        idx.push_back(int(r % uint64_t(N)));
    }
    return idx;
}

double naive_mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / double(v.size());
}

double naive_sd(const std::vector<double>& v) {
    const double m = naive_mean(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size() - 1));
}

}  // namespace

TEST_CASE("sweep file v2: per-sample values average exactly to the stored means, inputs stored with named axes",
          "[sweep][io][sweep_file]") {
    TempDir tmp{"sweepfile"};
    const std::string path = finished_file(tmp, "v2.h5");
    SweepFile f = SweepFile::open(path);
    CHECK(f.format_version() == 2);
    CHECK(f.has_samples());
    const HeadScores sc = f.read_scores();
    const SampleData d = f.read_samples();
    REQUIRE(d.n_max == 8);
    for (int s = 0; s < 2; ++s)
        for (int l = 0; l < 3; ++l)
            for (int h = 0; h < 4; ++h) {
                const float* x = &d.pi_tilde[d.at(s, l, h)];
                CHECK(std::vector<float>(x, x + n_of(s)) == cell_samples(s, l, h));
                // The stored mean, bit for bit, is the sequential double sum of the samples / N.
                double sum = 0;
                for (int b = 0; b < n_of(s); ++b) sum += double(x[b]);
                CHECK(sum / n_of(s) == sc.pi_ablated[size_t((s * 3 + l) * 4 + h)]);
                for (int b = n_of(s); b < 8; ++b) CHECK(std::isnan(x[b]));  // padding of the smaller setting
            }
    std::vector<int32_t> t1 = f.read_tokens(1);
    REQUIRE(t1.size() == 8 * 10);
    CHECK(t1[3 * 10 + 4] == 100 + 30 + 4);
    h5::File h = h5::File::open(path);
    CHECK(h.attr<int32_t>("format_version") == 2);
    h5::Dataset tok = h.open_dataset("inputs/tokens");
    CHECK(tok.dims() == std::vector<uint64_t>{2, 8, 12});
    auto all = tok.read<int32_t>();
    CHECK(all[(0 * 8 + 4) * 12 + 0] == -1);  // setting 0 has 4 samples
    CHECK(all[(1 * 8 + 0) * 12 + 10] == -1); // setting 1 has 10 positions
    CHECK(tok.attached_scale_names(1) == std::vector<std::string>{"sample"});
    CHECK(tok.attached_scale_names(2) == std::vector<std::string>{"position"});
    h5::Dataset pt = h.open_dataset("pi_tilde");
    CHECK(pt.dims() == std::vector<uint64_t>{2, 3, 4, 8});
    CHECK(pt.attached_scale_names(0) == std::vector<std::string>{"setting", "setting_N", "setting_n"});
    CHECK(pt.attached_scale_names(3) == std::vector<std::string>{"sample"});
    CHECK(h.open_dataset("pi_clean_samples").attached_scale_names(1) == std::vector<std::string>{"sample"});
    CHECK(h.open_dataset("stats/mean_ratio_lo").attached_scale_names(0) == std::vector<std::string>{"layer"});
    CHECK(h.open_group("stats").attr<int32_t>("bootstrap_resamples") == 200);
    CHECK(h.open_group("stats").attr<uint64_t>("bootstrap_seed") == 7);
    CHECK(h.open_dataset("top_k/mean_ratio_lo").dims() == std::vector<uint64_t>{3});
}

TEST_CASE("sweep file stats: standard errors and bootstrap against a naive implementation", "[sweep][sweep_file]") {
    TempDir tmp{"sweepfile"};
    const int32_t B = 300;
    const std::string path = finished_file(tmp, "stats.h5", B);
    SweepFile f = SweepFile::open(path);
    const SampleData d = f.read_samples();
    const HeadScores sc = f.read_scores();
    const auto stored = f.read_stats();
    REQUIRE(stored.has_value());
    BootstrapOptions o;
    o.resamples = B;
    o.seed = 7;
    o.top_k = 3;
    const HeadStats st = head_stats(d, o);
    CHECK(st.mean_ratio == sc.mean_ratio);  // the samples give the sweep's own scores, bit for bit
    CHECK(stored->mean_ratio_lo == st.mean_ratio_lo);
    CHECK(stored->top_k_frequency == st.top_k_frequency);
    CHECK(stored->bootstrap.resamples == B);

    const int S = 2, LH = 12;
    auto tilde = [&](int s, int i) {
        std::vector<double> v;
        for (int b = 0; b < n_of(s); ++b) v.push_back(d.pi_tilde[(size_t(s) * LH + i) * 8 + b]);
        return v;
    };
    auto clean = [&](int s) {
        std::vector<double> v;
        for (int b = 0; b < n_of(s); ++b) v.push_back(d.pi_clean[size_t(s) * 8 + b]);
        return v;
    };
    // Standard errors.
    for (int i = 0; i < LH; ++i) {
        double var_mr = 0;
        for (int s = 0; s < S; ++s) {
            const auto t = tilde(s, i), c = clean(s);
            const double N = double(t.size());
            CHECK(st.pi_ablated_se[size_t(s * LH + i)] == Approx(naive_sd(t) / std::sqrt(N)).epsilon(1e-12));
            const double R = naive_mean(t) / naive_mean(c);
            std::vector<double> resid;
            for (size_t b = 0; b < t.size(); ++b) resid.push_back(t[b] - R * c[b]);
            const double se = naive_sd(resid) / std::sqrt(N) / std::fabs(naive_mean(c));
            CHECK(st.ratio_se[size_t(s * LH + i)] == Approx(se).epsilon(1e-9));
            var_mr += se * se;
        }
        CHECK(st.mean_ratio_se[size_t(i)] == Approx(std::sqrt(var_mr) / S).epsilon(1e-9));
    }
    // Bootstrap: explicit resampled vectors, replicate mean_ratio, full sort for percentiles and top-K.
    std::vector<std::vector<double>> reps(LH);
    std::vector<int> in_top(LH, 0);
    for (int r = 0; r < B; ++r) {
        std::mt19937_64 g(splitmix(7 ^ splitmix(uint64_t(r) + 1)));
        std::vector<double> mr(LH, 0.0);
        for (int s = 0; s < S; ++s) {
            const auto idx = naive_draw(g, n_of(s));
            std::vector<double> c;
            for (int b : idx) c.push_back(clean(s)[size_t(b)]);
            for (int i = 0; i < LH; ++i) {
                std::vector<double> t;
                for (int b : idx) t.push_back(tilde(s, i)[size_t(b)]);
                mr[size_t(i)] += (naive_mean(t) / naive_mean(c) - 1.0) / S;
            }
        }
        std::vector<int> order(LH);
        for (int i = 0; i < LH; ++i) order[size_t(i)] = i;
        std::sort(order.begin(), order.end(), [&](int a, int b) { return mr[size_t(a)] > mr[size_t(b)] || (mr[size_t(a)] == mr[size_t(b)] && a < b); });
        for (int k = 0; k < 3; ++k) ++in_top[size_t(order[size_t(k)])];
        for (int i = 0; i < LH; ++i) reps[size_t(i)].push_back(mr[size_t(i)]);
    }
    for (int i = 0; i < LH; ++i) {
        auto v = reps[size_t(i)];
        std::sort(v.begin(), v.end());
        auto q = [&](double p) {  // numpy "linear"
            const double pos = p * (B - 1);
            const int lo = int(pos);
            return v[size_t(lo)] + (v[size_t(std::min(lo + 1, B - 1))] - v[size_t(lo)]) * (pos - lo);
        };
        INFO("head " << i);
        CHECK(st.mean_ratio_lo[size_t(i)] == Approx(q(0.025)).epsilon(1e-9));
        CHECK(st.mean_ratio_hi[size_t(i)] == Approx(q(0.975)).epsilon(1e-9));
        CHECK(st.top_k_frequency[size_t(i)] == Approx(double(in_top[size_t(i)]) / B).margin(2.0 / B));
        CHECK(st.mean_ratio_lo[size_t(i)] <= sc.mean_ratio[size_t(i)] + 1e-3);
        CHECK(st.mean_ratio_hi[size_t(i)] >= sc.mean_ratio[size_t(i)] - 1e-3);
    }
    // The top-K table carries the intervals of its heads.
    h5::File h = h5::File::open(path);
    const auto lo = h.open_dataset("top_k/mean_ratio_lo").read<double>();
    const auto fr = h.open_dataset("top_k/frequency").read<double>();
    for (int r = 0; r < 3; ++r) {
        CHECK(lo[size_t(r)] == st.mean_ratio_lo[size_t(sc.ranking[size_t(r)])]);
        CHECK(fr[size_t(r)] == st.top_k_frequency[size_t(sc.ranking[size_t(r)])]);
    }
}

TEST_CASE("sweep file: a version-1 file is read without per-sample data, not resumed, newer versions refused",
          "[sweep][io][sweep_file]") {
    TempDir tmp{"sweepfile"};
    // The version-1 layout: a version-2 file without what version 2 added.
    const std::string v1 = finished_file(tmp, "v1.h5");
    {
        h5::File h = h5::File::open(v1, h5::Mode::read_write);
        for (const char* p : {"inputs", "pi_clean_samples", "pi_tilde", "stats", "top_k/mean_ratio_se",
                              "top_k/mean_ratio_lo", "top_k/mean_ratio_hi", "top_k/frequency", "axes/sample",
                              "axes/position"})
            h.unlink(p);
        h.set_attr("format_version", int32_t(1));
    }
    SweepFile f = SweepFile::open(v1);
    CHECK(f.format_version() == 1);
    CHECK_FALSE(f.has_samples());
    CHECK(f.complete());
    CHECK(f.read_scores().ranking.size() == 12);
    CHECK_FALSE(f.read_stats().has_value());
    CHECK_THROWS_WITH(f.read_samples(), Catch::Contains(v1) && Catch::Contains("absent") &&
                                            Catch::Contains("format version 1"));
    CHECK_THROWS_WITH(f.read_tokens(0), Catch::Contains("inputs (/inputs/tokens) absent"));
    f.close();
    CHECK_THROWS_WITH(SweepFile::open_for_resume(v1, small_info()),
                      Catch::Contains(v1) && Catch::Contains("cannot resume") &&
                          Catch::Contains("format version 1") && Catch::Contains("--overwrite"));

    const std::string v3 = finished_file(tmp, "v3.h5");
    h5::File::open(v3, h5::Mode::read_write).set_attr("format_version", int32_t(3));
    CHECK_THROWS_WITH(SweepFile::open(v3), Catch::Contains(v3) && Catch::Contains("format version 3 is newer"));
    h5::File::open(v3, h5::Mode::read_write).set_attr("format_version", int32_t(0));
    CHECK_THROWS_WITH(SweepFile::open(v3), Catch::Contains("unknown sweep file format version 0"));
}

TEST_CASE("sweep file: a damaged per-sample dataset is named", "[sweep][io][sweep_file]") {
    TempDir tmp{"sweepfile"};
    const std::string path = finished_file(tmp, "damaged.h5");
    auto poke = [&](const std::vector<uint64_t>& at, float v) {
        h5::File h = h5::File::open(path, h5::Mode::read_write);
        h.open_dataset("pi_tilde").write(&v, 1, at, {1, 1, 1, 1});
    };
    poke({1, 2, 3, 5}, std::numeric_limits<float>::quiet_NaN());
    CHECK_THROWS_WITH(SweepFile::open(path).read_samples(),
                      Catch::Contains(path) && Catch::Contains("/pi_tilde is damaged") &&
                          Catch::Contains("setting 1 layer 2 head 3 sample 5 is not finite"));
    poke({1, 2, 3, 5}, 42.0f);
    CHECK_THROWS_WITH(SweepFile::open(path).read_samples(), Catch::Contains("does not average to /pi_ablated"));
    {
        h5::File h = h5::File::open(path, h5::Mode::read_write);
        h.unlink("pi_tilde");
    }
    CHECK_THROWS_WITH(SweepFile::open(path).read_samples(),
                      Catch::Contains(path) && Catch::Contains("dataset /pi_tilde is missing"));
}

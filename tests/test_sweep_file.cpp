// pear/sweep_file: the HDF5 file of one sweep -- layout, round trip, done mask, partial files, resume checks.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>

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

// pi_ablated of (s, l, h): a value that identifies the cell.
double cell(int s, int l, int h) { return 1.0 + 0.5 * s + 0.1 * l + 0.01 * h; }

void write_layer(SweepFile& f, int s, int l) {
    WorkItem it{s, l, l + 1, 0, 4};
    std::vector<double> v;
    for (int h = 0; h < 4; ++h) v.push_back(cell(s, l, h));
    f.write_item(it, v);
}

}  // namespace

TEST_CASE("sweep file: round trip of a complete sweep", "[sweep][io]") {
    TempDir tmp{"sweepfile"};
    const std::string path = tmp.file("full.h5");
    {
        SweepFile f = SweepFile::create(path, small_info());
        CHECK_FALSE(f.complete());
        for (int s = 0; s < 2; ++s) {
            f.write_clean(s, 2.0 + s, 0.25 * (s + 1));
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
                CHECK(s.raw[i] == Approx(cell(st, l, h) - (2.0 + st)));
                CHECK(s.ratio[i] == Approx(cell(st, l, h) / (2.0 + st) - 1.0));
            }
    CHECK(s.pi_clean == std::vector<double>{2.0, 3.0});
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
        f.write_clean(0, 2.0, 0.5);
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
    // An item must cover whole layers (the done mask is per setting and layer).
    CHECK_THROWS_WITH(w.write_item({0, 1, 2, 0, 2}, {1.0, 2.0}), Catch::Contains("must cover all 4 heads"));
    CHECK_THROWS_WITH(w.write_item({0, 1, 2, 0, 4}, {1.0}), Catch::Contains("4 heads but 1 values"));
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
        f.write_clean(0, 2.0, 0.5);
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
            f.write_clean(s, pi, 0.5);
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

// pear/job + pear/run_job: job files (every class of bad input, with its message) and whole sweeps on random:tiny
// (complete file, determinism, resume after a cut-short run, several models and modes).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "temp_dir.hpp"
#include "test_model_path.hpp"
#include "io/h5.hpp"
#include "pear/job.hpp"
#include "pear/run_job.hpp"
#include "pear/sweep_file.hpp"
#include "util/error.hpp"

using namespace hs;
using namespace hs::pear;
namespace fs = std::filesystem;

namespace {


// A small, fast job on random:tiny (2 layers x 4 heads).
SweepJob tiny_job(const TempDir& tmp, uint64_t seed = 5) {
    SweepJob job = parse_job_text("model = \"random:tiny\"\nsettings = [{N = 4, n = 6}, {N = 6, n = 5}]\ntop_k = 3\n",
                                  "tiny.toml");
    job.options.seed = seed;
    job.output = tmp.file("{model}-{mode}-" + std::to_string(seed) + ".h5");
    return job;
}

RunJobOptions quiet() {
    RunJobOptions o;
    o.progress = false;
    return o;
}

// The error message of parse + validate + per-model validation of a job text.
std::string job_error(const std::string& text, const std::string& name = "jobs/x.toml") {
    try {
        SweepJob job = parse_job_text(text, name);
        validate_job_fully(job);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("job: every key parses, runs expand from the output template", "[sweep][job]") {
    TempDir tmp{"job"};
    SweepJob job = parse_job_text(R"(
models = ["models/a.gguf", "random:tiny:3"]
modes = ["path", "total"]
settings = [{N = 20, n = 50}, {N = 40, n = 25}]
seed = 42
top_k = 12
exclude_special = true
mean_over = "sequence"
positions = [0, 3, 5]
output = "out/{model}-{mode}.h5"
overwrite = false
resume = true
threads = 2
device = "cpu"
heads_per_item = 2
model_read = "node"
share_clean_runs = false
)",
                                  "jobs/all.toml");
    CHECK(job.models == std::vector<std::string>{"models/a.gguf", "random:tiny:3"});
    CHECK(job.modes == std::vector<ScoreMode>{ScoreMode::PATH, ScoreMode::TOTAL});
    CHECK(settings_string(job.options.settings) == "20x50,40x25");
    CHECK(job.options.seed == 42);
    CHECK(job.options.top_k == 12);
    CHECK(job.options.exclude_special);
    CHECK(job.options.mean_over == MeanOver::SEQUENCE);
    CHECK(job.options.total_positions == std::vector<int32_t>{0, 3, 5});
    CHECK(job.resume);
    CHECK_FALSE(job.overwrite);
    CHECK(job.threads == 2);
    CHECK(job.heads_per_item == 2);
    CHECK(job.model_read == "node");
    CHECK_FALSE(job.share_clean_runs);
    auto runs = expand_runs(job);
    REQUIRE(runs.size() == 4);
    CHECK(runs[0].output == "out/a-path.h5");
    CHECK(runs[1].output == "out/a-total.h5");
    CHECK(runs[3].output == "out/random-tiny-3-total.h5");

    SweepJob defaults = parse_job_text("", "jobs/empty.toml");
    CHECK(defaults.models == std::vector<std::string>{kDefaultSweepModel});
    CHECK(settings_string(defaults.options.settings) == "20x50,40x25,80x15,100x10");
    CHECK(defaults.options.seed == kPaperSeed);
    CHECK(defaults.heads_per_item == 0);
    CHECK(defaults.model_read == "rank");
    CHECK(defaults.share_clean_runs);
    CHECK(expand_runs(defaults)[0].output == "out/SmolLM2-135M-Instruct.Q4_1-path.h5");
    CHECK(settings_string(parse_settings_list("4x6,8x5", "--settings")) == "4x6,8x5");
}

TEST_CASE("job: bad job files fail with file, key and value named", "[sweep][job]") {
    TempDir tmp{"job"};
    const std::string out = "output = \"" + tmp.file("o.h5") + "\"\n";
    const std::string tiny = "model = \"random:tiny\"\n" + out;
    // unknown key (a typo must not be ignored), also inside a setting
    CHECK_THAT(job_error("sede = 3\n"), Catch::Contains("jobs/x.toml: unknown key 'sede'"));
    CHECK_THAT(job_error("settings = [{N = 4, n = 6, m = 1}]\n"), Catch::Contains("unknown key 'settings[0].m'"));
    // wrong types
    CHECK_THAT(job_error("seed = \"abc\"\n"),
               Catch::Contains("jobs/x.toml: key seed = \"abc\" must be an integer (got string)"));
    CHECK_THAT(job_error("overwrite = 1\n"), Catch::Contains("key overwrite = 1 must be true or false"));
    CHECK_THAT(job_error("settings = [3]\n"), Catch::Contains("key settings[0] = 3 must be a table"));
    CHECK_THAT(job_error("models = [\"a\", 2]\n"), Catch::Contains("key models[1] = 2 must be a string"));
    // bad N / n
    CHECK_THAT(job_error("settings = [{N = 4, n = 6}, {N = 4, n = 6}, {N = 4, n = 0}]\n"),
               Catch::Contains("jobs/x.toml: key settings[2].n = 0 must be >= 2"));
    CHECK_THAT(job_error("settings = [{N = 1, n = 6}]\n"), Catch::Contains("key settings[0].N = 1 must be >= 2"));
    CHECK_THAT(job_error("settings = [{N = 4}]\n"), Catch::Contains("key settings[0] = { N = 4 } must have both N and n"));
    // n too long for the model's context (random:tiny: 8192)
    CHECK_THAT(job_error(tiny + "settings = [{N = 4, n = 5000}]\n"),
               Catch::Contains("jobs/x.toml: key settings[0].n = 5000 does not fit the context of model random:tiny") &&
                   Catch::Contains("2n = 10000 > n_ctx = 8192"));
    // K larger than the number of heads (2 x 4)
    CHECK_THAT(job_error(tiny + "settings = [{N = 4, n = 6}]\ntop_k = 9\n"),
               Catch::Contains("jobs/x.toml: key top_k = 9 is larger than the number of heads of model random:tiny") &&
                   Catch::Contains("= 8"));
    // unknown mode, mean_over, device
    CHECK_THAT(job_error("mode = \"fast\"\n"), Catch::Contains("jobs/x.toml: key mode = \"fast\" is not a mode (path, total, attribution)"));
    CHECK_THAT(job_error("modes = [\"path\", \"fast\"]\n"), Catch::Contains("key modes[1] = \"fast\" is not a mode"));
    CHECK_THAT(job_error("mean_over = \"tokens\"\n"), Catch::Contains("key mean_over = \"tokens\" is not batch or sequence"));
    CHECK_THAT(job_error("device = \"tpu\"\n"), Catch::Contains("key device = \"tpu\" is not a device"));
    CHECK_THAT(job_error("heads_per_item = -1\n"), Catch::Contains("jobs/x.toml: key heads_per_item = -1"));
    CHECK_THAT(job_error("share_clean_runs = \"yes\"\n"), Catch::Contains("jobs/x.toml: key share_clean_runs"));
    CHECK_THAT(job_error("model_read = \"disk\"\n"),
               Catch::Contains("jobs/x.toml: key model_read = \"disk\" is not rank or node"));
    // every mode the sweep implements is accepted (attribution arrived with the backward pass)
    CHECK(job_error(tiny + "settings = [{N = 4, n = 6}]\nmode = \"attribution\"\n") == "(no error)");
    // unwritable output directory (its parent is a regular file)
    tmp.write("plainfile", "x");
    CHECK_THAT(job_error("output = \"" + tmp.file("plainfile") + "/out/{model}.h5\"\n"),
               Catch::Contains("jobs/x.toml: key output = \"" + tmp.file("plainfile") + "/out/{model}.h5\"") &&
                   Catch::Contains("cannot create directory"));
    // an existing output file, without overwrite or resume
    tmp.write("exists.h5", "x");
    CHECK_THAT(job_error(tiny.substr(0, tiny.find('\n') + 1) + "output = \"" + tmp.file("exists.h5") + "\"\n"),
               Catch::Contains("output file " + tmp.file("exists.h5") + " exists") && Catch::Contains("--overwrite"));
    // output template: unknown placeholder, several models into one file, both overwrite and resume
    CHECK_THAT(job_error("output = \"out/{name}.h5\"\n"), Catch::Contains("unknown placeholder {name}"));
    CHECK_THAT(job_error("models = [\"random:tiny\", \"random:tiny-mha\"]\n" + out),
               Catch::Contains("must contain {model} when several models are listed"));
    CHECK_THAT(job_error("overwrite = true\nresume = true\n"), Catch::Contains("choose one"));
    CHECK_THAT(job_error("model = \"a\"\nmodels = [\"b\"]\n"), Catch::Contains("either key model or key models"));
    // a model that does not exist; TOML syntax
    CHECK_THAT(job_error("model = \"" + tmp.file("nope.gguf") + "\"\n" + out),
               Catch::Contains("key model = \"" + tmp.file("nope.gguf") + "\""));
    CHECK_THAT(job_error("seed = = 3\n"), Catch::Contains("jobs/x.toml:1:") && Catch::Contains("TOML syntax error"));
    CHECK_THAT(job_error("x"), Catch::Contains("jobs/x.toml"));
    // a job file that does not exist
    CHECK_THROWS_WITH(parse_job_file(tmp.file("missing.toml")), Catch::Contains("missing.toml: job file not found"));
    // the settings flag syntax
    CHECK_THROWS_WITH(parse_settings_list("4x6,4by6", "command line: --settings"),
                      Catch::Contains("command line: --settings[1] = \"4by6\" is not NxN"));
}

TEST_CASE("job: nothing is written when any run of the job is invalid", "[sweep][job]") {
    TempDir tmp{"job"};
    SweepJob job = tiny_job(tmp);
    job.models = {"random:tiny", "random:tiny-mha"};
    job.options.settings = {{4, 6}, {4, 9000}};  // n too long for both
    CHECK_THROWS_WITH(run_job(job, quiet()), Catch::Contains("settings[1].n = 9000"));
    CHECK(fs::is_empty(tmp.dir));
}

TEST_CASE("sweep run on random:tiny: complete file, deterministic, seed matters", "[sweep][io][job]") {
    TempDir tmp{"job"};
    SweepJob a = tiny_job(tmp, 5);
    auto sa = run_job(a, quiet());
    REQUIRE(sa.size() == 1);
    CHECK(sa[0].complete);
    CHECK(sa[0].heads_scored == 2 * 8);
    CHECK(sa[0].top.size() == 3);
    CHECK_THAT(sa[0].line(), Catch::Contains("sweep random-tiny path: 8 heads (2x4)") && Catch::Contains("top-3: L"));
    const std::string fa = sa[0].output;
    HeadScores s;
    {
        SweepFile f = SweepFile::open(fa);
        CHECK(f.complete());
        CHECK(f.all_done());
        s = f.read_scores();
    }
    for (double v : s.pi_ablated) CHECK(std::isfinite(v));
    for (double v : s.mean_ratio) CHECK(std::isfinite(v));

    // Same seed, another file: the same datasets, bit for bit (times live in /run attributes only).
    SweepJob b = a;
    b.output = tmp.file("again.h5");
    auto sb = run_job(b, quiet());
    CHECK(compare_sweep_files(fa, sb[0].output).empty());
    if (fs::exists("/usr/bin/h5diff"))
        CHECK(std::system(("/usr/bin/h5diff --exclude-path /run " + fa + " " + sb[0].output + " > /dev/null").c_str()) == 0);
    // Another seed: another proxy batch, another clean pi.
    SweepJob c = tiny_job(tmp, 6);
    auto sc = run_job(c, quiet());
    HeadScores s6 = SweepFile::open(sc[0].output).read_scores();
    CHECK(s6.pi_clean[0] != s.pi_clean[0]);
    CHECK_FALSE(compare_sweep_files(fa, sc[0].output).empty());

    // Running again refuses the existing file; --resume on a complete file does no work; overwrite redoes it.
    CHECK_THROWS_WITH(run_job(a, quiet()), Catch::Contains("exists"));
    a.resume = true;
    auto again = run_job(a, quiet());
    CHECK(again[0].complete);
    CHECK(again[0].heads_scored == 0);
    a.resume = false;
    a.overwrite = true;
    CHECK(run_job(a, quiet())[0].heads_scored == 16);
    CHECK(compare_sweep_files(fa, sb[0].output).empty());
    // Resuming with another seed is refused before any work.
    a.overwrite = false;
    a.resume = true;
    a.options.seed = 99;
    CHECK_THROWS_WITH(run_job(a, quiet()), Catch::Contains("cannot resume") && Catch::Contains("seed (file: 5, job: 99)"));
}

TEST_CASE("sweep run: a run cut short leaves a partial file, resume completes it identically", "[sweep][io][job]") {
    TempDir tmp{"job"};
    SweepJob full = tiny_job(tmp, 5);
    const std::string ref = run_job(full, quiet())[0].output;

    SweepJob part = tiny_job(tmp, 5);
    part.output = tmp.file("part.h5");
    RunJobOptions stop = quiet();
    stop.max_items = 3;  // of 2 settings x 2 layers
    auto s1 = run_job(part, stop);
    CHECK_FALSE(s1[0].complete);
    CHECK_THAT(s1[0].line(), Catch::Contains("PARTIAL"));
    {
        SweepFile f = SweepFile::open(part.output);
        CHECK_FALSE(f.complete());
        CHECK(f.done() == std::vector<uint8_t>{1, 1, 1, 0});
    }
    part.resume = true;
    auto s2 = run_job(part, quiet());
    CHECK(s2[0].complete);
    CHECK(s2[0].resumed);
    CHECK(s2[0].heads_scored == 4);
    CHECK(compare_sweep_files(ref, part.output).empty());
}

TEST_CASE("sweep run: several models and modes, one file each", "[sweep][io][job]") {
    TempDir tmp{"job"};
    const std::string path = tmp.write("multi.toml", R"(
models = ["random:tiny", "random:tiny-mha"]
modes = ["path", "total"]
settings = [{N = 3, n = 4}]
top_k = 2
positions = [5, 6]
output = ")" + tmp.file("{model}/{mode}.h5") + "\"\n");
    SweepJob job = parse_job_file(path);
    auto sums = run_job(job, quiet());
    REQUIRE(sums.size() == 4);
    for (const auto& s : sums) {
        CHECK(s.complete);
        SweepFile f = SweepFile::open(s.output);
        CHECK(f.complete());
        CHECK(f.info().job_file.empty() == false);
        CHECK(f.info().options.mode == parse_score_mode(s.mode));
    }
    CHECK(fs::exists(tmp.file("random-tiny-mha/total.h5")));
}

TEST_CASE("analysis/plot_heads.py reads a sweep file", "[sweep][io][python]") {
    if (!fs::exists("/usr/bin/python3") ||
        std::system("/usr/bin/python3 -c 'import h5py, matplotlib' > /dev/null 2>&1") != 0) {
        WARN("no /usr/bin/python3 with h5py and matplotlib: skipped");
        return;
    }
    TempDir tmp{"job"};
    SweepJob job = tiny_job(tmp, 5);
    const std::string h5 = run_job(job, quiet())[0].output;
    const std::string script = repo_dir() + "/analysis/plot_heads.py";
    const std::string png = tmp.file("heat.png");
    const std::string cmd = "MPLBACKEND=Agg /usr/bin/python3 " + script + " " + h5 + " --png " + png + " --top 3 > " +
                            tmp.file("table.txt") + " 2>&1";
    CHECK(std::system(cmd.c_str()) == 0);
    CHECK(fs::file_size(png) > 1000);
    std::ifstream in(tmp.file("table.txt"));
    std::string text((std::istreambuf_iterator<char>(in)), {});
    CHECK_THAT(text, Catch::Contains("rank") && Catch::Contains("layer") && Catch::Contains("head"));

    // A partial file is refused unless --partial.
    SweepJob part = tiny_job(tmp, 5);
    part.output = tmp.file("part.h5");
    RunJobOptions stop = quiet();
    stop.max_items = 1;
    run_job(part, stop);
    CHECK(std::system(("/usr/bin/python3 " + script + " " + part.output + " > /dev/null 2>&1").c_str()) != 0);
    CHECK(std::system(("MPLBACKEND=Agg /usr/bin/python3 " + script + " " + part.output + " --partial --png " +
                       tmp.file("p.png") + " > /dev/null 2>&1")
                          .c_str()) == 0);
}

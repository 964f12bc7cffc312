// Evaluation: scoring and prompt primitives against hand-computed cases, task building on the tiny fixtures in
// tests/fixtures/eval_data, the bootstrap on synthetic data, the records file, and `headsweep eval` end to end on
// random:tiny (records, resume, an interrupted run).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <unistd.h>

#include "engine/engine.hpp"
#include "eval/methods.hpp"
#include "eval/records.hpp"
#include "eval/run_eval.hpp"
#include "eval/stats.hpp"
#include "eval/tasks.hpp"
#include "eval/text.hpp"
#include "model/model.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"
#include "util/json.hpp"
#include "temp_dir.hpp"
#include "test_model_path.hpp"

namespace fs = std::filesystem;
using namespace hs;
using namespace hs::eval;

namespace {

const std::string kData = fixtures_dir() + "/eval_data";

struct TmpDir {
    fs::path path;
    TmpDir() {
        std::string t = (fs::temp_directory_path() / "hs_eval_test_XXXXXX").string();
        path = mkdtemp(t.data());
    }
    ~TmpDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

TaskBuildOptions fixture_options(int64_t limit = -1) {
    TaskBuildOptions o;
    o.data_dir = kData;
    o.limit = limit;
    o.n_ctx = 100000;
    return o;
}

}  // namespace

TEST_CASE("eval text: normalize_answer follows lost-in-the-middle step by step", "[eval]") {
    CHECK(normalize_answer("The  Quick, brown-fox!") == "quick brownfox");
    CHECK(normalize_answer("An apple a day") == "apple day");
    CHECK(normalize_answer("band the") == "band");
    CHECK(normalize_answer("anthem theatre") == "anthem theatre");  // articles only as whole words
    CHECK(normalize_answer("a_b") == "ab");                          // '_' is in string.punctuation
    CHECK(normalize_answer("the-end") == "theend");                  // punctuation goes before articles
    CHECK(normalize_answer("  \tWilhelm\nRöntgen ") == "wilhelm röntgen");
    CHECK(normalize_answer("ÉCOLE") == "école");                     // Latin-1 capitals are lowered
    CHECK(normalize_answer("299,792 km/s") == "299792 kms");
    CHECK(normalize_answer("") == "");
}

TEST_CASE("eval text: best_subspan_em and the KV substring match", "[eval]") {
    CHECK(best_subspan_em("The answer is William Shakespeare.", {"william shakespeare"}) == 1.0);
    CHECK(best_subspan_em("Shakespeare", {"Shakespeare, William"}) == 0.0);
    CHECK(best_subspan_em("Paris", {"The Paris"}) == 1.0);
    CHECK(best_subspan_em("it is 100 degrees", {"boiling", "100 Degrees"}) == 1.0);
    CHECK(best_subspan_em("nothing", {"", "x"}) == 1.0);  // an empty normalised answer matches (as in Python)
    CHECK(best_subspan_em("nothing", {}) == 0.0);
    CHECK(kv_substring_match("Value: ABC-def.", "abc-DEF") == 1.0);
    CHECK(kv_substring_match("abc", "abcd") == 0.0);
}

TEST_CASE("eval text: middle truncation, gold placement, CSV", "[eval]") {
    std::vector<int32_t> ids{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    auto t = ids;
    CHECK(middle_truncate(t, 4));
    CHECK(t == std::vector<int32_t>{0, 1, 8, 9});
    t = ids;
    CHECK(middle_truncate(t, 5));  // LongBench: half = 5 // 2 on each side
    CHECK(t == std::vector<int32_t>{0, 1, 8, 9});
    t = ids;
    CHECK_FALSE(middle_truncate(t, 10));
    CHECK(t == ids);
    const std::vector<std::string> v{"a", "b", "c", "d"};
    CHECK(move_to(v, 2, 0) == std::vector<std::string>{"c", "a", "b", "d"});
    CHECK(move_to(v, 0, 3) == std::vector<std::string>{"b", "c", "d", "a"});
    CHECK(move_to(v, 1, 1) == v);
    CHECK(parse_csv_record("\"a, \"\"b\"\"\",x,,y") == std::vector<std::string>{"a, \"b\"", "x", "", "y"});
    CHECK(split_csv_records("a,\"b\nc\"\r\nd\n").size() == 2);
}

TEST_CASE("eval json: strings, escapes, numbers, errors", "[eval]") {
    const json::Value v = json::parse(R"({"a": [1, 2.5, "x\u00e9\n"], "b": {"c": true, "d": null}})");
    CHECK(v.at("a").arr[1].num == 2.5);
    CHECK(v.at("a").arr[2].str == "x\xc3\xa9\n");
    CHECK(v.at("b").at("c").b);
    CHECK_THROWS_AS(json::parse("{\"a\": }", "f.jsonl:3"), hs::Error);
    const std::string raw = "q\"b\\s\n\t\r\x01 \xc3\xa9";  // escape() round-trips through the reader
    CHECK(json::escape(raw) == "q\\\"b\\\\s\\n\\t\\r\\u0001 \xc3\xa9");
    CHECK(json::parse("\"" + json::escape(raw) + "\"").str == raw);
    CHECK_THROWS_WITH(v.at("zz", "f.jsonl:3"), Catch::Contains("f.jsonl:3") && Catch::Contains("zz"));
}

TEST_CASE("eval json: a malformed JSON line is refused with its file and line", "[eval]") {
    TempDir dir("jsonl");
    const std::string bad = dir.write("bad.jsonl", "{\"a\": 1}\n\n{\"a\": [1, 2}\n");
    CHECK_THROWS_WITH(json::read_jsonl(bad), Catch::Contains(bad + ":3") && Catch::Contains("parse error"));
    const std::string trailing = dir.write("trailing.jsonl", "{\"a\": 1}\n{\"b\": \"x\"} trailing\n");
    CHECK_THROWS_WITH(json::read_jsonl(trailing), Catch::Contains(trailing + ":2"));
    CHECK(json::read_jsonl(dir.write("ok.jsonl", "{\"a\": 1}\n  \n[2]\n")).size() == 2);
    CHECK_THROWS_WITH(json::read_jsonl(dir.file("absent.jsonl")), Catch::Contains("absent.jsonl: cannot open"));
}

TEST_CASE("eval prompts: the paper's templates, exactly", "[eval]") {
    CHECK(render_kv_prompt({{"k1", "v1"}, {"k2", "v2"}}, "k2") ==
          "Extract the value corresponding to the specified key in the JSON object below.\n\nJSON data:\n"
          "{\"k1\": \"v1\",\n \"k2\": \"v2\"}\n\nKey: \"k2\"\nCorresponding value:");
    CHECK(render_mdqa_prompt({{"T1", "x1"}, {"T2", "x2"}}, "q?") ==
          "Write a high-quality answer for the given question using only the provided search results (some of which "
          "might be irrelevant).\n\nDocument [1](Title: T1) x1\nDocument [2](Title: T2) x2\n\nQuestion: q?\nAnswer:");
    CHECK(render_closedbook_prompt("q?") == "Write a high-quality answer for the given question.\n\nQuestion: q?\nAnswer:");
}

TEST_CASE("eval tasks: mdqa places the gold document at every position", "[eval]") {
    const Tokenizer tok = Tokenizer::byte_level(300);  // no chat template: the raw prompt
    const auto ex = build_task("mdqa-3docs", tok, fixture_options(2));
    REQUIRE(ex.size() == 6);
    CHECK(ex[0].id == "nq-0");
    CHECK(ex[1].gold_position == 2);
    CHECK(ex[3].id == "nq-1");
    CHECK(ex[1].prompt_text ==
          "Write a high-quality answer for the given question using only the provided search results (some of which "
          "might be irrelevant).\n\nDocument [1](Title: Macbeth) Macbeth is a play.\nDocument [2](Title: Hamlet) "
          "Hamlet was written by William Shakespeare.\nDocument [3](Title: Othello) Othello is a tragedy.\n\n"
          "Question: who wrote hamlet\nAnswer:");
    CHECK(ex[1].prompt_ids.size() == ex[1].prompt_text.size());  // byte-level
    CHECK_FALSE(ex[1].chat);
    CHECK(ex[1].max_new_tokens == 128);
    CHECK(ex[1].stop_at_newline);
    CHECK(score_output(ex[0], "It was William Shakespeare") == 1.0);
}

TEST_CASE("eval tasks: mdqa-10docs adds other questions' gold passages, skipping those with the answer", "[eval]") {
    const Tokenizer tok = Tokenizer::byte_level(300);
    const auto ex = build_task("mdqa-10docs", tok, fixture_options(2));
    REQUIRE(ex.size() == 10);  // 2 questions x positions 1,3,5,7,10
    const Example& e = ex[9];  // question 1 (Paris), gold last
    CHECK(e.id == "nq-1");
    CHECK(e.gold_position == 10);
    // 2 real distractors, then gold passages of questions 2, 4, 5, 6, 7, 8, 9 (3 mentions Paris), then the gold.
    const std::vector<std::string> titles{"Berlin", "Rome", "Jupiter", "Water", "Dune", "Cheetah", "Gold", "Everest",
                                          "Light", "France"};
    for (size_t k = 0; k < titles.size(); ++k)
        CHECK(e.context.find("Document [" + std::to_string(k + 1) + "](Title: " + titles[k] + ")") != std::string::npos);
    CHECK(ex[1].context.find("Document [3](Title: Hamlet)") != std::string::npos);  // question 0, gold at 3
}

TEST_CASE("eval tasks: kv moves the gold pair to the paper's indices", "[eval]") {
    const Tokenizer tok = Tokenizer::byte_level(300);
    const auto ex = build_task("kv-75", tok, fixture_options(1));
    REQUIRE(ex.size() == 4);
    const std::vector<int32_t> pos{0, 24, 49, 74};
    for (size_t i = 0; i < 4; ++i) {
        CHECK(ex[i].gold_position == pos[i]);
        // line i of the JSON block holds the gold pair "k0-010"
        const std::string& p = ex[i].prompt_text;
        const size_t start = p.find("JSON data:\n") + 11;
        size_t line = 0;
        for (size_t k = start; k < p.find("\"k0-010\": \"v0-010\""); ++k) line += p[k] == '\n';
        CHECK(line == size_t(pos[i]));
    }
    CHECK(ex[0].answers == std::vector<std::string>{"v0-010"});
    CHECK(score_output(ex[0], "The value is V0-010.") == 1.0);
    CHECK(build_task("kv-140", tok, fixture_options(1)).back().gold_position == 139);
}

TEST_CASE("eval tasks: closed-book, oracle, LongBench filtering and truncation, MMLU prompt", "[eval]") {
    const Tokenizer tok = Tokenizer::byte_level(300);
    const auto cb = build_task("nq-closedbook", tok, fixture_options(3));
    REQUIRE(cb.size() == 3);
    CHECK(cb[0].prompt_text == "Write a high-quality answer for the given question.\n\nQuestion: who wrote hamlet\nAnswer:");
    const auto oracle = build_task("nq-oracle", tok, fixture_options(1));
    CHECK(oracle[0].context == "Document [1](Title: Hamlet) Hamlet was written by William Shakespeare.");

    TaskBuildOptions o = fixture_options();
    o.max_prompt_tokens = 100;
    const auto lb = build_task("longbench-2wikimqa", tok, o);
    REQUIRE(lb.size() == 2);
    CHECK(lb[0].id == "lb-3");
    CHECK_FALSE(lb[0].truncated);
    CHECK(lb[1].truncated);
    CHECK(lb[1].original_tokens == 208);
    CHECK(lb[1].prompt_ids.size() == 100);
    CHECK(lb[1].prompt_ids.back() == ':');  // the end survives
    CHECK(lb[1].max_new_tokens == 32);
    CHECK(build_task("longbench-qasper", tok, o)[0].max_new_tokens == 128);
    o.max_new_tokens_cap = 16;
    CHECK(build_task("longbench-qasper", tok, o)[0].max_new_tokens == 16);

    TaskBuildOptions m = fixture_options();
    m.mmlu_shots = 0;
    const auto mm = build_task("mmlu", tok, m);
    REQUIRE(mm.size() == 4);
    CHECK(mm[0].id == "mmlu-anatomy-0");
    CHECK(mm[1].id == "mmlu-astronomy-0");  // a round over the subjects first
    CHECK(mm[0].prompt_text ==
          "The following are multiple choice questions (with answers) about anatomy.\n\n"
          "Which bone, if any, is \"hyoid\"?\nA. one\nB. two\nC. three\nD. four\nAnswer:");
    CHECK(mm[0].answers == std::vector<std::string>{"B"});
    CHECK(mm[0].choice_ids == std::vector<int32_t>{'A', 'B', 'C', 'D'});  // " A" is two bytes here
    CHECK(score_output(mm[0], "B") == 1.0);
    m.mmlu_shots = 2;
    CHECK(build_task("mmlu", tok, m)[1].prompt_text.find("Dev astronomy q1?\nA. a1\nB. b1\nC. c1\nD. d1\nAnswer: B\n\n") !=
          std::string::npos);
    CHECK(expand_task_names({"mdqa", "kv", "mmlu"}) ==
          std::vector<std::string>{"mdqa-3docs", "mdqa-10docs", "kv-75", "kv-140", "mmlu"});
    CHECK_THROWS_WITH(find_task("nope"), Catch::Contains("mdqa-3docs"));
    TaskBuildOptions bad = fixture_options();
    bad.data_dir = "/nonexistent";
    CHECK_THROWS_WITH(build_task("kv-75", tok, bad), Catch::Contains("nonexistent"));
}

TEST_CASE("eval stats: bootstrap intervals on synthetic data", "[eval]") {
    CHECK(quantile_linear({4, 1, 3, 2}, 0.5) == Approx(2.5));
    CHECK(quantile_linear({1, 2, 3, 4}, 0.25) == Approx(1.75));
    const Interval ones = bootstrap_mean(std::vector<double>(20, 1.0));
    CHECK(ones.estimate == 1.0);
    CHECK(ones.low == 1.0);
    CHECK(ones.high == 1.0);
    std::vector<double> half(100);
    for (size_t i = 0; i < half.size(); ++i) half[i] = i % 2;
    const Interval h = bootstrap_mean(half);
    CHECK(h.estimate == 0.5);
    CHECK(h.n == 100);
    // normal approximation: 0.5 +- 1.96 * 0.05 = [0.402, 0.598]
    CHECK(h.low == Approx(0.40).margin(0.02));
    CHECK(h.high == Approx(0.60).margin(0.02));
    const Interval h2 = bootstrap_mean(half);
    CHECK(h2.low == h.low);  // fixed seed: the same interval every time
    CHECK(bootstrap_mean(half, 1000, 7).low != bootstrap_mean(half, 1000, 8).low + 1);  // other seeds run
    const Interval same = bootstrap_paired_difference(half, half);
    CHECK(same.estimate == 0.0);
    CHECK(same.low == 0.0);
    CHECK(same.high == 0.0);
    std::vector<double> a(50, 1.0), b(50, 0.0);
    const Interval d = bootstrap_paired_difference(a, b);
    CHECK(d.estimate == 1.0);
    CHECK(d.low == 1.0);
    CHECK(std::isnan(bootstrap_mean({}).estimate));
    CHECK_THROWS_AS(bootstrap_paired_difference(a, {1.0}), hs::Error);
}

TEST_CASE("eval summary: cells, paired differences, independent of record order", "[eval]") {
    std::vector<Record> recs;
    for (int pos : {1, 2})
        for (int i = 0; i < 10; ++i) {
            Record v{"m", "vanilla", "t", "q" + std::to_string(i), pos};
            v.score = i < 5 ? 1 : 0;
            Record p = v;
            p.method = "pear";
            p.score = i < 8 ? 1 : 0;  // pear fixes 3 of 10
            recs.push_back(v);
            recs.push_back(p);
        }
    Record lone{"m", "pear", "t", "extra", 1};  // no vanilla partner: counted in accuracy, not in the difference
    lone.score = 1;
    recs.push_back(lone);
    const auto rows = summarize(recs);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].method == "pear");
    CHECK(rows[0].gold_position == 1);
    CHECK(rows[0].accuracy.n == 11);
    CHECK(rows[0].accuracy.estimate == Approx(9.0 / 11));
    CHECK(rows[0].diff.n == 10);
    CHECK(rows[0].diff.estimate == Approx(0.3));
    CHECK(rows[0].diff.low >= 0.0);
    CHECK(rows[0].diff.high <= 0.6);
    CHECK(rows[2].method == "vanilla");
    CHECK(std::isnan(rows[2].diff.estimate));
    CHECK(rows[2].accuracy.estimate == 0.5);
    std::shuffle(recs.begin(), recs.end(), std::mt19937(3));
    const auto again = summarize(recs);
    for (size_t i = 0; i < rows.size(); ++i) {
        CHECK(again[i].accuracy.low == rows[i].accuracy.low);
        CHECK((again[i].diff.low == rows[i].diff.low || std::isnan(rows[i].diff.low)));
    }
    CHECK(format_summary_table(rows).find("+0.300") != std::string::npos);
}

TEST_CASE("eval records file: round trip, resume checks, repair of a cut append", "[eval]") {
    TmpDir dir;
    const std::string path = (dir.path / "e.h5").string();
    {
        RecordsFile f = RecordsFile::create(path, "limit=1", "data", false);
        f.check_method("vanilla", "vanilla");
        Record r{"m", "vanilla", "t", "q0", 3, 10, 12, 2, 1, "out \xc3\xa9", "{\"chunks\":3}", 1.0, 0.5, 0};
        f.append(r);
        f.write_summary(summarize({r}), {});
        f.close();
    }
    CHECK_THROWS_WITH(RecordsFile::create(path, "limit=1", "data", false), Catch::Contains("--resume"));
    CHECK_THROWS_WITH(RecordsFile::open_for_resume(path, "limit=2"), Catch::Contains("limit=1"));
    {
        RecordsFile f = RecordsFile::open_for_resume(path, "limit=1");
        CHECK_THROWS_WITH(f.check_method("vanilla", "other"), Catch::Contains("vanilla"));
        const auto rs = f.records();
        REQUIRE(rs.size() == 1);
        CHECK(rs[0].output == "out \xc3\xa9");
        CHECK(rs[0].gold_position == 3);
        CHECK(rs[0].truncated == 1);
        CHECK(rs[0].original_tokens == 12);
        CHECK(rs[0].detail == "{\"chunks\":3}");
        f.close();
    }
    {  // a run killed between two column appends
        h5::File h = h5::File::open(path, h5::Mode::read_write);
        h.open_group("records").open_dataset("model").append_strings({"m"});
        h.close();
    }
    RecordsFile f = RecordsFile::open_for_resume(path, "limit=1");
    CHECK(f.records().size() == 1);
    f.close();
    CHECK(RecordsFile::read(path).size() == 1);
}

TEST_CASE("eval records file: version 1 (no detail) is read and upgraded on resume, a newer version is refused",
          "[eval]") {
    TmpDir dir;
    const std::string path = (dir.path / "v1.h5").string();
    {
        RecordsFile f = RecordsFile::create(path, "limit=1", "data", false);
        f.append(Record{"m", "vanilla", "t", "q0", -1, 10, 10, 2, 0, "x", "", 1.0, 0.5, 0});
        f.close();
        h5::File h = h5::File::open(path, h5::Mode::read_write);  // make it what version 1 wrote
        h.set_attr("format_version", int32_t(1));
        h.open_group("records").unlink("detail");
        h.close();
    }
    REQUIRE(RecordsFile::read(path).size() == 1);
    CHECK(RecordsFile::read(path)[0].detail.empty());
    {
        RecordsFile f = RecordsFile::open_for_resume(path, "limit=1");
        f.append(Record{"m", "vanilla", "t", "q1", -1, 10, 10, 2, 0, "y", "{\"a\":1}", 0.0, 0.5, 0});
        f.close();
    }
    const auto rs = RecordsFile::read(path);
    REQUIRE(rs.size() == 2);
    CHECK(rs[0].detail.empty());
    CHECK(rs[1].detail == "{\"a\":1}");
    {
        h5::File h = h5::File::open(path, h5::Mode::read_write);
        h.set_attr("format_version", int32_t(99));
        h.close();
    }
    CHECK_THROWS_WITH(RecordsFile::read(path), Catch::Contains("format_version 99"));
    CHECK_THROWS_WITH(RecordsFile::open_for_resume(path, "limit=1"), Catch::Contains("newer headsweep"));
}

TEST_CASE("eval PEAR: folding tau into W_O equals runtime head scaling", "[eval]") {
    const std::vector<HeadTau> h = parse_head_taus("1:2=0.5,0:1=1.5");
    CHECK(format_head_taus(h) == "L0H1=1.5,L1H2=0.5");
    CHECK(format_head_taus(parse_head_taus("L1H2=0.5")) == "L1H2=0.5");
    CHECK_THROWS_AS(parse_head_taus("1:2"), hs::Error);
    CHECK_THROWS_AS(parse_head_taus("1:2=0.5,1:2=0.7"), hs::Error);
    Model base = make_random_model("tiny", 5);
    Model folded = make_random_model("tiny", 5);
    fold_head_taus(folded, h);
    CHECK_THROWS_AS(fold_head_taus(folded, parse_head_taus("9:0=0.5")), hs::Error);
    auto cpu = make_backend(Device::CPU, 1);
    Engine e0(base, *cpu), e1(folded, *cpu);
    std::vector<float> scale(size_t(base.config.n_layer * base.config.n_head), 1.0f);
    scale[size_t(1 * base.config.n_head + 2)] = 0.5f;
    scale[size_t(0 * base.config.n_head + 1)] = 1.5f;
    const std::vector<int32_t> ids{1, 5, 9, 33, 70, 2};
    ForwardHooks hooks;
    hooks.head_scale = scale;
    hooks.logits = LogitsMode::ALL;
    ForwardHooks plain;
    plain.logits = LogitsMode::ALL;
    const auto a = e0.forward(ids, 1, int64_t(ids.size()), hooks).logits;
    const auto b = e1.forward(ids, 1, int64_t(ids.size()), plain).logits;
    const auto c = e0.forward(ids, 1, int64_t(ids.size()), plain).logits;
    double diff = 0, changed = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, double(std::abs(a[i] - b[i])));
        changed = std::max(changed, double(std::abs(a[i] - c[i])));
    }
    CHECK(diff < 1e-5);
    CHECK(changed > 1e-4);
}

TEST_CASE("eval composition: pear+vanilla answers exactly as pear, bad compositions are named", "[eval]") {
    TmpDir dir;
    EvalJob job;
    job.models = {"random:tiny"};
    job.tasks = {"mdqa-3docs", "mmlu"};
    job.methods = {"vanilla", "pear", "pear+vanilla"};
    job.method_settings.pear_heads = "0:0=8,0:1=0,0:2=8,0:3=8,1:0=8,1:1=0,1:2=8,1:3=8";
    job.task_options.data_dir = kData;
    job.task_options.limit = 2;
    job.task_options.max_new_tokens_cap = 6;
    job.task_options.mmlu_shots = 1;
    job.threads = 1;
    job.progress = false;
    job.output = (dir.path / "c.h5").string();
    run_eval(job, nullptr);
    std::map<std::pair<std::string, std::string>, std::string> out;  // (method, task/id) -> output
    for (const Record& r : RecordsFile::read(job.output))
        out[{r.method, r.task + "/" + r.id + "/" + std::to_string(r.gold_position)}] = r.output;
    size_t compared = 0;
    for (const auto& [key, text] : out) {
        if (key.first != "pear+vanilla") continue;
        CHECK(text == out.at({"pear", key.second}));
        ++compared;
    }
    CHECK(compared == 2 * 3 + 2);

    MethodSettings ms;
    ms.pear_heads = "0:1=0.5";
    CHECK(make_method("pear+vanilla", ms)->name() == "pear+vanilla");
    CHECK_THROWS_WITH(make_method("pear+nosuch", ms), Catch::Contains("nosuch"));
    CHECK_THROWS_WITH(make_method("pear+", ms), Catch::Contains("a+b"));
    Model base = make_random_model("tiny");  // what open_model("random:tiny") gives (seed 1)
    auto cpu = make_backend(Device::CPU, 1);
    EvalContext ctx(base, "random:tiny", *cpu);
    {  // the model offered to the right-hand method is the re-weighted one, not the base
        auto pear = make_method("pear", ms);
        pear->prepare(ctx);
        REQUIRE(pear->composable_model() != nullptr);
        Engine e0(base, *cpu), e1(*pear->composable_model(), *cpu);
        const std::vector<int32_t> ids{1, 5, 9, 33, 70, 2};
        const auto a = e0.forward(ids, 1, 6).logits, b = e1.forward(ids, 1, 6).logits;
        double changed = 0;
        for (size_t i = 0; i < a.size(); ++i) changed = std::max(changed, double(std::abs(a[i] - b[i])));
        CHECK(changed > 1e-4);
    }
    ms.pear_mode = "runtime";
    auto runtime = make_method("pear+vanilla", ms);
    CHECK_THROWS_WITH(runtime->prepare(ctx), Catch::Contains("--pear-mode fold"));
}

TEST_CASE("stop at newline: the answer is its first non-empty line", "[eval]") {
    CHECK(first_nonempty_line(" Marie Curie\nand more") == " Marie Curie");
    CHECK(first_nonempty_line(" Marie Curie") == " Marie Curie");
    // a model that starts with a newline (Gemma 3 after the InfiniRetri answer prompt) keeps its answer
    CHECK(first_nonempty_line("\n Marie Curie\nand more") == "\n Marie Curie");
    CHECK(first_nonempty_line("\n\n \t1948\n") == "\n\n \t1948");
    // whitespace only, or nothing: returned whole (it scores as empty)
    CHECK(first_nonempty_line("\n \n") == "\n \n");
    CHECK(first_nonempty_line("").empty());
}

TEST_CASE("eval run: random:tiny end to end, resume, interrupted run gives the same records", "[eval]") {
    TmpDir dir;
    EvalJob job;
    job.models = {"random:tiny"};
    job.tasks = {"mdqa-3docs", "kv-75", "longbench-2wikimqa", "mmlu"};
    job.methods = {"vanilla", "pear"};
    job.method_settings.pear_heads = "0:1=0.5,1:3=0.0";
    job.task_options.data_dir = kData;
    job.task_options.limit = 1;
    job.task_options.max_new_tokens_cap = 4;
    job.task_options.mmlu_shots = 1;
    job.threads = 1;
    job.progress = false;
    job.output = (dir.path / "full.h5").string();
    const EvalOutcome full = run_eval(job, nullptr);
    const size_t n_examples = 3 + 4 + 1 + 1;
    CHECK(full.computed == int64_t(2 * n_examples));
    const auto recs = sorted_records(RecordsFile::read(job.output));
    REQUIRE(recs.size() == 2 * n_examples);
    for (const Record& r : recs) {
        CHECK((r.score == 0.0 || r.score == 1.0));
        CHECK(r.prompt_tokens > 0);
        CHECK(r.new_tokens <= 4);
        // generation answers say where their time went (prefill vs decode), within the record's latency
        INFO(r.task << " " << r.method << " detail " << r.detail);
        if (r.task == "mmlu") {
            CHECK(r.detail.empty());
            continue;
        }
        double prefill = -1, decode = -1;
        REQUIRE(std::sscanf(r.detail.c_str(), "{\"prefill_s\":%lf,\"decode_s\":%lf}", &prefill, &decode) == 2);
        CHECK(prefill > 0);
        CHECK(decode >= 0);
        CHECK(prefill + decode <= r.latency_s + 1e-3);
    }
    CHECK(full.summary.size() == 2 * (3 + 4 + 1 + 1));

    const EvalOutcome again = [&] {
        EvalJob j = job;
        j.resume = true;
        return run_eval(j, nullptr);
    }();
    CHECK(again.computed == 0);
    CHECK(again.skipped == int64_t(2 * n_examples));

    EvalJob cut = job;
    cut.output = (dir.path / "cut.h5").string();
    cut.max_results = 5;
    CHECK(run_eval(cut, nullptr).computed == 5);
    cut.max_results = -1;
    cut.resume = true;
    CHECK(run_eval(cut, nullptr).computed == int64_t(2 * n_examples - 5));
    const auto recs2 = sorted_records(RecordsFile::read(cut.output));
    REQUIRE(recs2.size() == recs.size());
    for (size_t i = 0; i < recs.size(); ++i) {
        CHECK(recs2[i].key() == recs[i].key());
        CHECK(recs2[i].output == recs[i].output);
        CHECK(recs2[i].score == recs[i].score);
    }
    EvalJob other = job;
    other.resume = true;
    other.method_settings.pear_heads = "0:1=0.25";
    CHECK_THROWS_WITH(run_eval(other, nullptr), Catch::Contains("pear"));
    EvalJob fresh = job;
    CHECK_THROWS_WITH(run_eval(fresh, nullptr), Catch::Contains("--resume"));
}

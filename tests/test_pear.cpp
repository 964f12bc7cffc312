// PEAR sweep core: proxy batches, the exact cheap path form and total mode against brute-force references.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <set>

#include "pear/sweep.hpp"
#include "test_model_path.hpp"

using namespace hs;
using namespace hs::pear;

namespace {

struct Fixture {
    Model model;
    std::unique_ptr<Backend> be = make_cpu_backend(1);
    std::unique_ptr<Engine> engine;
    explicit Fixture(Model m) : model(std::move(m)) { engine = std::make_unique<Engine>(model, *be); }
};

}  // namespace

TEST_CASE("proxy batches are [X, X], seeded per setting, and can exclude special tokens", "[pear]") {
    Model m = make_random_model("tiny");
    ProxySetting s{6, 9};
    ProxyBatch a = make_proxy_batch(s, 0, 10024, m.tokenizer, m.config.n_vocab, false);
    ProxyBatch b = make_proxy_batch(s, 0, 10024, m.tokenizer, m.config.n_vocab, false);
    ProxyBatch c = make_proxy_batch(s, 1, 10024, m.tokenizer, m.config.n_vocab, false);
    REQUIRE(a.tokens.size() == 6 * 18);
    CHECK(a.tokens == b.tokens);
    CHECK(a.tokens != c.tokens);
    for (int i = 0; i < 6; ++i)
        for (int t = 0; t < 9; ++t) REQUIRE(a.tokens[i * 18 + t] == a.tokens[i * 18 + 9 + t]);
    CHECK(a.target(2) == a.tokens[2 * 18 + 8]);
    ProxyBatch big = make_proxy_batch({50, 50}, 0, 1, m.tokenizer, m.config.n_vocab, true);
    for (int32_t id : big.tokens) REQUIRE(!m.tokenizer.is_special(id));
}

TEST_CASE("path mode: the exact cheap form equals the brute-force frozen-attention forward (random model)", "[pear]") {
    Fixture f(make_random_model("tiny-mha", 3));
    SweepOptions o;
    o.settings = {{5, 7}, {4, 12}};
    for (int32_t s = 0; s < 2; ++s) {
        SettingRun run(*f.engine, o, s);
        const auto& c = f.model.config;
        // Two layers per item exercises rows joining at later layers; a head sub-range exercises slicing.
        std::vector<double> cheap = run.score(WorkItem{s, 0, 2, 1, 3});
        std::vector<double> last = run.score(WorkItem{s, 2, 3, 0, c.n_head});
        REQUIRE(cheap.size() == 4);
        for (int l = 0; l < 2; ++l)
            for (int k = 0; k < 2; ++k) {
                const double ref = run.score_reference(l, 1 + k);
                INFO("setting " << s << " head (" << l << ", " << 1 + k << ")");
                REQUIRE(cheap[l * 2 + k] == Approx(ref).epsilon(1e-4).margin(1e-4));
            }
        for (int h = 0; h < c.n_head; ++h) REQUIRE(last[h] == Approx(run.score_reference(2, h)).epsilon(1e-4).margin(1e-4));
        // Chunking must not change anything.
        SweepOptions small = o;
        small.max_rows_per_chunk = 3;
        SettingRun run2(*f.engine, small, s);
        std::vector<double> chunked = run2.score(WorkItem{s, 0, 2, 1, 3});
        for (size_t i = 0; i < cheap.size(); ++i) REQUIRE(chunked[i] == Approx(cheap[i]).epsilon(1e-6).margin(1e-6));
    }
}

TEST_CASE("total mode: batched heads from the cached residual equal per-head full forwards", "[pear]") {
    Fixture f(make_random_model("tiny-qwen2", 4));
    const auto& c = f.model.config;
    for (MeanOver mo : {MeanOver::BATCH, MeanOver::SEQUENCE}) {
        SweepOptions o;
        o.mode = ScoreMode::TOTAL;
        o.mean_over = mo;
        o.settings = {{4, 6}};
        if (mo == MeanOver::SEQUENCE) o.total_positions = {3, 10};
        SettingRun run(*f.engine, o, 0);
        for (int32_t l = 0; l < c.n_layer; ++l) {
            std::vector<double> got = run.score(WorkItem{0, l, l + 1, 0, c.n_head});
            for (int h = 0; h < c.n_head; ++h) {
                INFO("mean over " << mean_over_name(mo) << ", head (" << l << ", " << h << ")");
                REQUIRE(got[h] == Approx(run.score_reference(l, h)).epsilon(1e-4).margin(1e-4));
            }
        }
    }
}

TEST_CASE("total mode: heads in groups per pass give the scores of one pass", "[pear]") {
    Fixture f(make_random_model("tiny", 6));
    const auto& c = f.model.config;
    SweepOptions o;
    o.mode = ScoreMode::TOTAL;
    o.settings = {{3, 5}};
    SettingRun whole(*f.engine, o, 0);
    SweepOptions grouped = o;
    grouped.max_tokens_per_pass = 2 * 3 * 10;  // two heads (3 sequences of 10 tokens each) per pass: 4 = 2 + 2
    SettingRun parts(*f.engine, grouped, 0);
    SweepOptions single = o;
    single.max_tokens_per_pass = 1;            // below one head: still one head per pass
    SettingRun ones(*f.engine, single, 0);
    const WorkItem all{0, 0, c.n_layer, 0, c.n_head};
    const auto a = whole.score(all), b = parts.score(all), s = ones.score(all);
    REQUIRE(a.size() == size_t(c.n_layer * c.n_head));
    for (size_t i = 0; i < a.size(); ++i) {
        REQUIRE(b[i] == Approx(a[i]).epsilon(1e-6).margin(1e-6));
        REQUIRE(s[i] == Approx(a[i]).epsilon(1e-6).margin(1e-6));
    }
}

TEST_CASE("scores do not depend on how the sweep is cut into items", "[pear]") {
    Fixture f(make_random_model("tiny", 5));
    const auto& c = f.model.config;
    SweepOptions o;
    o.settings = {{6, 8}};
    SettingRun run(*f.engine, o, 0);
    std::vector<double> whole = run.score(WorkItem{0, 0, c.n_layer, 0, c.n_head});
    for (int32_t l = 0; l < c.n_layer; ++l)
        for (int32_t h = 0; h < c.n_head; ++h) {
            std::vector<double> one = run.score(WorkItem{0, l, l + 1, h, h + 1});
            REQUIRE(one[0] == Approx(whole[l * c.n_head + h]).epsilon(1e-6).margin(1e-6));
        }
}

TEST_CASE("score aggregation: ratios, means, ranking, top-K", "[pear]") {
    HeadScores s;
    s.n_layer = 1;
    s.n_head = 3;
    s.settings = {{10, 5}, {30, 5}};
    s.pi_clean = {2.0, 4.0};
    s.pi_ablated = {2.0, 3.0, 1.0, /* setting 1 */ 4.0, 8.0, 2.0};
    finish_scores(s, 2);
    CHECK(s.raw[1] == Approx(1.0));
    CHECK(s.ratio[1] == Approx(0.5));
    CHECK(s.ratio[4] == Approx(1.0));
    CHECK(s.mean_ratio[1] == Approx(0.75));
    CHECK(s.weighted_ratio[1] == Approx(0.5 * 0.25 + 1.0 * 0.75));
    CHECK(s.ranking == std::vector<int32_t>{1, 0, 2});
    CHECK(s.top_k == 2);
    CHECK(default_top_k(270) == 8);
    CHECK(default_top_k(1024) == 31);
    CHECK(default_top_k(4) == 1);
}

TEST_CASE("bad sweep options are refused", "[pear]") {
    ModelConfig c = random_model_config("tiny");
    SweepOptions o;
    o.settings = {{5, 5000}};
    CHECK_THROWS_WITH(o.validate(c), Catch::Contains("more than the model's context"));
    o.settings = {{1, 5}};
    CHECK_THROWS_WITH(o.validate(c), Catch::Contains("N must be at least 2"));
    o.settings = {{4, 5}};
    o.top_k = 9;
    CHECK_THROWS_WITH(o.validate(c), Catch::Contains("top-K 9"));
    o.top_k = 0;
    o.mode = ScoreMode::ATTRIBUTION;  // available since the backward pass exists
    CHECK_NOTHROW(o.validate(c));
    CHECK_THROWS_WITH(parse_score_mode("fast"), Catch::Contains("unknown scoring mode 'fast'"));
}

TEST_CASE("path mode on the real model: cheap form equals brute force for a slice of heads", "[pear][model]") {
    Fixture f(load_model(test_model_path()));
    SweepOptions o;
    o.settings = {{8, 12}};
    SettingRun run(*f.engine, o, 0);
    INFO("clean pi " << run.pi_clean() << ", copy accuracy " << run.copy_accuracy());
    // SmolLM2 copies random sequences (measured: 0.30 at n=10 up to 0.63 at n=50); chance is ~1/49152.
    CHECK(run.copy_accuracy() > 0.2);
    CHECK(run.pi_clean() > 1.0);
    for (int32_t l : {0, 14, 29}) {
        std::vector<double> cheap = run.score(WorkItem{0, l, l + 1, 0, 3});
        for (int32_t h = 0; h < 3; ++h) {
            const double ref = run.score_reference(l, h);
            INFO("head (" << l << ", " << h << "): cheap " << cheap[h] << " brute force " << ref);
            REQUIRE(cheap[h] == Approx(ref).epsilon(2e-4).margin(2e-4 * std::fabs(run.pi_clean())));
        }
    }
}

TEST_CASE("clean state: a run made from another run's exported state scores every item bit for bit alike",
          "[pear][sweep]") {
    // Every mode, a pre-norm model with GQA and a post-norm (gemma3) one; the importing engine is a second engine
    // on its own backend (as on another rank), so nothing but the bytes carries the clean run over.
    const auto same = [](const ItemScores& a, const ItemScores& b) {
        return a.pi_ablated.size() == b.pi_ablated.size() && a.pi_tilde.size() == b.pi_tilde.size() &&
               std::memcmp(a.pi_ablated.data(), b.pi_ablated.data(), a.pi_ablated.size() * sizeof(double)) == 0 &&
               std::memcmp(a.pi_tilde.data(), b.pi_tilde.data(), a.pi_tilde.size() * sizeof(float)) == 0;
    };
    for (const char* shape : {"tiny", "tiny-gemma3"})
        for (ScoreMode mode : {ScoreMode::PATH, ScoreMode::TOTAL, ScoreMode::ATTRIBUTION}) {
            INFO(shape << " " << score_mode_name(mode));
            Fixture a(make_random_model(shape, 7)), b(make_random_model(shape, 7));
            SweepOptions o;
            o.mode = mode;
            o.settings = {{4, 6}, {5, 4}};
            o.seed = 3;
            SettingRun clean(*a.engine, o, 1);
            const std::vector<char> state = clean.export_state();
            CHECK(int64_t(state.size()) == state_bytes(a.model.config, mode, o.settings[1]));
            std::unique_ptr<SettingRun> shared = SettingRun::from_state(*b.engine, o, 1, state);
            const double pa = clean.pi_clean(), pb = shared->pi_clean();
            CHECK(std::memcmp(&pa, &pb, sizeof(double)) == 0);
            CHECK(clean.copy_accuracy() == shared->copy_accuracy());
            CHECK(clean.pi_clean_samples() == shared->pi_clean_samples());
            CHECK(clean.batch().tokens == shared->batch().tokens);
            const ModelConfig& c = a.model.config;
            for (int32_t l = 0; l < c.n_layer; ++l) {
                const WorkItem whole{1, l, l + 1, 0, c.n_head}, one{1, l, l + 1, c.n_head - 1, c.n_head};
                CHECK(same(clean.score_samples(whole), shared->score_samples(whole)));
                CHECK(same(clean.score_samples(one), shared->score_samples(one)));
            }
            // bytes of another setting, another mode or cut short are refused, naming the setting
            CHECK_THROWS_WITH(SettingRun::from_state(*b.engine, o, 0, state),
                              Catch::Contains("clean state given for setting 0") && Catch::Contains("not of this run"));
            SweepOptions other = o;
            other.mode = mode == ScoreMode::PATH ? ScoreMode::TOTAL : ScoreMode::PATH;
            CHECK_THROWS_WITH(SettingRun::from_state(*b.engine, other, 1, state), Catch::Contains("not of this run"));
            std::vector<char> cut(state.begin(), state.end() - 1);
            CHECK_THROWS_WITH(SettingRun::from_state(*b.engine, o, 1, cut), Catch::Contains("truncated"));
            std::vector<char> junk(state.size(), 'x');
            CHECK_THROWS_WITH(SettingRun::from_state(*b.engine, o, 1, junk), Catch::Contains("not a clean state"));
        }
}

// The engine and every hook, on small random models, against the naive double-precision forward or a direct
// computation (tests/naive_forward.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "engine/engine.hpp"
#include "naive_forward.hpp"

using namespace hs;

namespace {

std::vector<int32_t> random_ids(int n, int vocab, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> ids(n);
    for (auto& i : ids) i = int32_t(g() % uint64_t(vocab));
    return ids;
}

double max_abs(const std::vector<double>& a) {
    double m = 0;
    for (double v : a) m = std::max(m, std::fabs(v));
    return m;
}

// max |engine - naive| over all positions, relative to the largest |logit|.
double logits_rel_error(const ForwardResult& r, const naive::Result& ref, int64_t b, int64_t V) {
    double err = 0, scale = 1e-30;
    for (size_t i = 0; i < r.logit_positions.size(); ++i) {
        const auto& row = ref.logits[r.logit_positions[i]];
        scale = std::max(scale, max_abs(row));
        const float* got = r.logits_at(b, int64_t(i), V);
        for (int64_t v = 0; v < V; ++v) err = std::max(err, std::fabs(got[v] - row[v]));
    }
    return err / scale;
}

struct Fixture {
    Model model;
    std::unique_ptr<Backend> be = make_cpu_backend(1);
    std::unique_ptr<Engine> engine;
    explicit Fixture(const std::string& shape, uint64_t seed = 7) : model(make_random_model(shape, seed)) {
        engine = std::make_unique<Engine>(model, *be);
    }
};

}  // namespace

TEST_CASE("forward matches the naive reference on random models of several shapes", "[engine]") {
    for (const char* shape : {"tiny", "tiny-mha", "tiny-qwen2", "tiny-gemma3"}) {
        INFO("shape " << shape);
        Fixture f(shape);
        const auto& c = f.model.config;
        auto ids = random_ids(37, c.n_vocab, 3);
        ForwardHooks hk;
        hk.logits = LogitsMode::ALL;
        ForwardResult r = f.engine->forward(ids, 1, int64_t(ids.size()), hk);
        naive::Result ref = naive::forward(f.model, ids);
        REQUIRE(r.logits.size() == ids.size() * size_t(c.n_vocab));
        CHECK(logits_rel_error(r, ref, 0, c.n_vocab) < 2e-5);
    }
}

TEST_CASE("a batch of sequences equals each sequence alone", "[engine]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    const int T = 19, B = 3;
    std::vector<int32_t> all;
    for (int b = 0; b < B; ++b) {
        auto ids = random_ids(T, c.n_vocab, 100 + b);
        all.insert(all.end(), ids.begin(), ids.end());
    }
    ForwardHooks hk;
    hk.logits = LogitsMode::POSITIONS;
    hk.logit_positions = {0, 7, T - 1};
    ForwardResult rb = f.engine->forward(all, B, T, hk);
    for (int b = 0; b < B; ++b) {
        std::vector<int32_t> one(all.begin() + b * T, all.begin() + (b + 1) * T);
        ForwardResult r1 = f.engine->forward(one, 1, T, hk);
        for (size_t i = 0; i < hk.logit_positions.size(); ++i)
            for (int v = 0; v < c.n_vocab; ++v)
                REQUIRE(rb.logits_at(b, i, c.n_vocab)[v] == Approx(r1.logits_at(0, i, c.n_vocab)[v]).margin(1e-5));
    }
}

TEST_CASE("incremental decoding with the kv cache equals the full forward", "[engine]") {
    Fixture f("tiny-mha");
    const auto& c = f.model.config;
    auto ids = random_ids(24, c.n_vocab, 5);
    ForwardHooks all;
    all.logits = LogitsMode::ALL;
    ForwardResult full = f.engine->forward(ids, 1, 24, all);
    KvCache cache(f.engine->backend(), c, 1, 32);
    // prefill 10, then 14 single tokens
    std::vector<int32_t> head(ids.begin(), ids.begin() + 10);
    ForwardResult r = f.engine->forward(head, 1, 10, {}, &cache);
    for (int v = 0; v < c.n_vocab; ++v) REQUIRE(r.logits[v] == Approx(full.logits_at(0, 9, c.n_vocab)[v]).margin(1e-5));
    for (int t = 10; t < 24; ++t) {
        r = f.engine->forward({ids[t]}, 1, 1, {}, &cache);
        REQUIRE(r.pos0 == t);
        for (int v = 0; v < c.n_vocab; ++v)
            REQUIRE(r.logits[v] == Approx(full.logits_at(0, t, c.n_vocab)[v]).margin(1e-5));
    }
    CHECK(cache.n_past() == 24);
}

TEST_CASE("z capture equals the naive head outputs", "[engine][hooks]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    auto ids = random_ids(15, c.n_vocab, 9);
    ForwardHooks hk;
    hk.z_layers = {0, 1};
    hk.z_positions = {2, 14};
    ForwardResult r = f.engine->forward(ids, 1, 15, hk);
    naive::Result ref = naive::forward(f.model, ids);
    for (int l = 0; l < 2; ++l) {
        REQUIRE(r.z[l].size() == 2 * size_t(c.q_dim()));
        for (int i = 0; i < 2; ++i)
            for (int a = 0; a < c.q_dim(); ++a)
                REQUIRE(r.z[l][i * c.q_dim() + a] == Approx(ref.z[l][hk.z_positions[i]][a]).margin(1e-5));
    }
}

TEST_CASE("scaling a head by tau = 0 equals removing its output projection columns", "[engine][hooks]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    auto ids = random_ids(21, c.n_vocab, 11);
    ForwardHooks hk;
    hk.logits = LogitsMode::ALL;
    hk.head_scale.assign(size_t(c.n_layer) * c.n_head, 1.0f);
    hk.head_scale[1 * c.n_head + 2] = 0.0f;  // head (1, 2)
    hk.head_scale[0 * c.n_head + 1] = 0.35f;  // and a partial scale of head (0, 1)
    ForwardResult scaled = f.engine->forward(ids, 1, 21, hk);

    // Direct computation: the same edits done to a copy of the weights (W_O columns of the head).
    Model edited = make_random_model("tiny", 7);
    auto scale_cols = [&](int l, int h, float s) {
        Matrix& wo = edited.weights.layers[l].wo;
        for (int64_t r = 0; r < wo.rows; ++r)
            for (int a = 0; a < c.d_head; ++a) wo.data[r * wo.cols + h * c.d_head + a] *= s;
    };
    scale_cols(1, 2, 0.0f);
    scale_cols(0, 1, 0.35f);
    naive::Result ref = naive::forward(edited, ids);
    CHECK(logits_rel_error(scaled, ref, 0, c.n_vocab) < 2e-5);
    // ... and the naive forward with the same runtime scaling agrees too.
    naive::Edits e;
    e.head_scale = hk.head_scale;
    CHECK(logits_rel_error(scaled, naive::forward(f.model, ids, e), 0, c.n_vocab) < 2e-5);
    // The head mattered: unscaled logits differ.
    ForwardHooks plain;
    plain.logits = LogitsMode::ALL;
    CHECK(logits_rel_error(f.engine->forward(ids, 1, 21, plain), ref, 0, c.n_vocab) > 1e-3);
}

TEST_CASE("replacing a head output at one position matches the naive patched forward", "[engine][hooks]") {
    Fixture f("tiny-qwen2");
    const auto& c = f.model.config;
    auto ids = random_ids(17, c.n_vocab, 12);
    std::vector<float> value(c.d_head);
    for (int a = 0; a < c.d_head; ++a) value[a] = 0.3f * std::sin(1.0f + a);
    ForwardHooks hk;
    hk.logits = LogitsMode::ALL;
    hk.head_patches.push_back(HeadPatch{0, 3, -1, {9}, value});
    ForwardResult r = f.engine->forward(ids, 1, 17, hk);
    naive::Edits e;
    e.patch_layer = 0, e.patch_head = 3, e.patch_pos = 9, e.patch_value = value;
    naive::Result ref = naive::forward(f.model, ids, e);
    CHECK(logits_rel_error(r, ref, 0, c.n_vocab) < 2e-5);
    // Positions before the patch cannot see it (causality): their logits equal the clean run's.
    naive::Result clean = naive::forward(f.model, ids);
    for (int v = 0; v < c.n_vocab; ++v) CHECK(r.logits_at(0, 8, c.n_vocab)[v] == Approx(clean.logits[8][v]).margin(1e-4));
}

TEST_CASE("patches can target one sequence of a batch", "[engine][hooks]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    auto a = random_ids(12, c.n_vocab, 1), b = random_ids(12, c.n_vocab, 2);
    std::vector<int32_t> both(a);
    both.insert(both.end(), b.begin(), b.end());
    std::vector<float> zero(c.d_head, 0.0f);
    ForwardHooks hk;
    hk.head_patches.push_back(HeadPatch{1, 0, 1, {11}, zero});  // only sequence 1, last position
    ForwardResult r = f.engine->forward(both, 2, 12, hk);
    ForwardResult ra = f.engine->forward(a, 1, 12, {});
    ForwardHooks hk1 = hk;
    hk1.head_patches[0].sequence = 0;
    ForwardResult rb = f.engine->forward(b, 1, 12, hk1);
    for (int v = 0; v < c.n_vocab; ++v) {
        REQUIRE(r.logits_at(0, 0, c.n_vocab)[v] == Approx(ra.logits[v]).margin(1e-5));
        REQUIRE(r.logits_at(1, 0, c.n_vocab)[v] == Approx(rb.logits[v]).margin(1e-5));
    }
}

TEST_CASE("overlapping patches: the later one wins", "[engine][hooks]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    auto ids = random_ids(24, c.n_vocab, 3);
    std::vector<float> ones(c.d_head, 1.0f), twos(c.d_head, 2.0f);
    ForwardHooks both, later;
    both.logits = later.logits = LogitsMode::ALL;
    both.head_patches = {HeadPatch{1, 2, 1, {5, 9}, ones}, HeadPatch{1, 2, -1, {9}, twos}};
    later.head_patches = {HeadPatch{1, 2, 1, {5}, ones}, HeadPatch{1, 2, -1, {9}, twos}};
    const ForwardResult a = f.engine->forward(ids, 2, 12, both), b = f.engine->forward(ids, 2, 12, later);
    REQUIRE(a.logits == b.logits);
    ForwardHooks reversed = both;
    std::swap(reversed.head_patches[0], reversed.head_patches[1]);  // now the ones win at (1, 9)
    REQUIRE(f.engine->forward(ids, 2, 12, reversed).logits != a.logits);
}

TEST_CASE("a forward with attention frozen at clean values equals the plain forward", "[engine][hooks]") {
    Fixture f("tiny-mha");
    const auto& c = f.model.config;
    const int T = 16, B = 2;
    auto ids = random_ids(T * B, c.n_vocab, 21);
    ForwardHooks cap;
    cap.logits = LogitsMode::ALL;
    for (int l = 0; l < c.n_layer; ++l) cap.z_layers.push_back(l);
    ForwardResult clean = f.engine->forward(ids, B, T, cap);
    ForwardHooks frozen;
    frozen.logits = LogitsMode::ALL;
    frozen.frozen_attention = &clean.z;
    ForwardResult r = f.engine->forward(ids, B, T, frozen);
    for (size_t i = 0; i < r.logits.size(); ++i) REQUIRE(r.logits[i] == Approx(clean.logits[i]).margin(1e-6));
    // Frozen attention really replaces the computation: feeding other tokens still gives the clean logits'
    // attention contribution (only the MLP/embedding path sees the new tokens).
    auto other = random_ids(T * B, c.n_vocab, 22);
    ForwardResult r2 = f.engine->forward(other, B, T, frozen);
    ForwardResult plain_other = f.engine->forward(other, B, T, cap);
    double diff = 0;
    for (size_t i = 0; i < r2.logits.size(); ++i) diff = std::max(diff, double(std::fabs(r2.logits[i] - plain_other.logits[i])));
    CHECK(diff > 1e-3);
}

TEST_CASE("starting at layer l from the captured residual equals the full forward", "[engine][hooks]") {
    Fixture f("tiny-mha");
    const auto& c = f.model.config;
    auto ids = random_ids(14, c.n_vocab, 31);
    ForwardHooks cap;
    cap.logits = LogitsMode::ALL;
    cap.residuals = {{1, ResidualPoint::BLOCK_INPUT}, {2, ResidualPoint::BLOCK_INPUT}};
    ForwardResult full = f.engine->forward(ids, 1, 14, cap);
    for (int32_t l : {1, 2}) {
        ForwardHooks hk;
        hk.logits = LogitsMode::ALL;
        hk.start_layer = l;
        hk.start_residual = full.residuals.at({l, ResidualPoint::BLOCK_INPUT}).data();
        ForwardResult r = f.engine->forward({}, 1, 14, hk);
        for (size_t i = 0; i < r.logits.size(); ++i) REQUIRE(r.logits[i] == Approx(full.logits[i]).margin(1e-5));
    }
}

TEST_CASE("residual captures agree with each other and with the naive forward", "[engine][hooks]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    auto ids = random_ids(10, c.n_vocab, 41);
    ForwardHooks hk;
    hk.residuals = {{0, ResidualPoint::BLOCK_INPUT}, {0, ResidualPoint::AFTER_ATTENTION},
                    {0, ResidualPoint::BLOCK_OUTPUT}, {1, ResidualPoint::BLOCK_INPUT}};
    hk.residual_positions = {3, 9};
    hk.z_layers = {0};
    hk.z_positions = {3, 9};
    ForwardResult r = f.engine->forward(ids, 1, 10, hk);
    naive::Result ref = naive::forward(f.model, ids);
    const auto& out0 = r.residuals.at({0, ResidualPoint::BLOCK_OUTPUT});
    const auto& in1 = r.residuals.at({1, ResidualPoint::BLOCK_INPUT});
    const auto& in0 = r.residuals.at({0, ResidualPoint::BLOCK_INPUT});
    const auto& mid0 = r.residuals.at({0, ResidualPoint::AFTER_ATTENTION});
    for (size_t i = 0; i < in1.size(); ++i) REQUIRE(out0[i] == in1[i]);
    for (int i = 0; i < 2; ++i)
        for (int a = 0; a < c.d_model; ++a) {
            REQUIRE(in1[i * c.d_model + a] == Approx(ref.resid_in[1][hk.residual_positions[i]][a]).margin(1e-4));
            // AFTER_ATTENTION = BLOCK_INPUT + sum over heads of z[h] . W_O[:, h]^T
            double attn = 0;
            const Matrix& wo = f.model.weights.layers[0].wo;
            for (int k = 0; k < c.q_dim(); ++k) attn += double(wo.data[a * wo.cols + k]) * r.z[0][i * c.q_dim() + k];
            REQUIRE(mid0[i * c.d_model + a] == Approx(in0[i * c.d_model + a] + attn).margin(1e-4));
        }
}

TEST_CASE("attention probabilities of chosen rows match the naive softmax", "[engine][hooks]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    const int T = 23;
    auto ids = random_ids(T, c.n_vocab, 51);
    ForwardHooks hk;
    hk.attn_prob_layers = {1};
    hk.attn_prob_rows = {0, 11, 22};
    ForwardResult r = f.engine->forward(ids, 1, T, hk);
    naive::Result ref = naive::forward(f.model, ids);
    CHECK(r.attn_probs[0].empty());  // layer 0 not asked for
    const auto& p = r.attn_probs[1];
    REQUIRE(p.size() == size_t(c.n_head) * 3 * T);
    for (int h = 0; h < c.n_head; ++h)
        for (int i = 0; i < 3; ++i) {
            const int t = hk.attn_prob_rows[i];
            double sum = 0;
            for (int j = 0; j < T; ++j) {
                const float got = p[(size_t(h) * 3 + i) * T + j];
                sum += got;
                REQUIRE(got == Approx(ref.probs[1][size_t(h) * T + t][j]).margin(1e-6));
                if (j > t) REQUIRE(got == 0.0f);
            }
            REQUIRE(sum == Approx(1.0).margin(1e-5));
        }
}

TEST_CASE("a forward with no output reads the same from low layers as a full one (it may stop after them)", "[engine][hooks]") {
    Fixture f("tiny-mha");  // 2 layers: reading layer 0 alone runs only layer 0
    const auto& c = f.model.config;
    const int T = 19;
    auto ids = random_ids(T, c.n_vocab, 61);
    ForwardHooks hk;
    hk.logits = LogitsMode::NONE;
    hk.attn_prob_layers = {0};
    hk.attn_prob_rows = {3, 18};
    hk.z_layers = {0};
    ForwardHooks whole = hk;  // the same reads from a forward that runs every layer (it computes logits)
    whole.logits = LogitsMode::ALL;
    const ForwardResult r = f.engine->forward(ids, 1, T, hk);
    const ForwardResult full = f.engine->forward(ids, 1, T, whole);
    CHECK(r.logits.empty());
    REQUIRE(r.attn_probs[0].size() == full.attn_probs[0].size());
    REQUIRE(r.z[0].size() == full.z[0].size());
    CHECK(r.attn_probs[0] == full.attn_probs[0]);  // bit for bit: the same ops up to layer 0
    CHECK(r.z[0] == full.z[0]);
    const naive::Result ref = naive::forward(f.model, ids);
    for (int h = 0; h < c.n_head; ++h)
        for (int j = 0; j < T; ++j)
            REQUIRE(r.attn_probs[0][(size_t(h) * 2 + 1) * T + j] == Approx(ref.probs[0][size_t(h) * T + 18][j]).margin(1e-6));

    // With a kv cache every layer still runs (a later step reads all of them): a prefill with no output, then one
    // token, equals the full forward's last logits.
    KvCache cache(f.engine->backend(), c, 1, T);
    ForwardHooks none;
    none.logits = LogitsMode::NONE;
    none.attn_prob_layers = {0};
    f.engine->forward(std::vector<int32_t>(ids.begin(), ids.end() - 1), 1, T - 1, none, &cache);
    const ForwardResult last = f.engine->forward({ids.back()}, 1, 1, {}, &cache);
    for (int v = 0; v < c.n_vocab; ++v)
        REQUIRE(last.logits[v] == Approx(full.logits_at(0, T - 1, c.n_vocab)[v]).margin(1e-5));
}

TEST_CASE("final hidden state is what the output head reads", "[engine][hooks]") {
    Fixture f("tiny-mha");
    const auto& c = f.model.config;
    auto ids = random_ids(9, c.n_vocab, 61);
    ForwardHooks hk;
    hk.final_hidden = true;
    hk.logits = LogitsMode::POSITIONS;
    hk.logit_positions = {4, 8};
    ForwardResult r = f.engine->forward(ids, 1, 9, hk);
    naive::Result ref = naive::forward(f.model, ids);
    const Matrix& out = f.model.weights.output;
    for (int i = 0; i < 2; ++i) {
        for (int a = 0; a < c.d_model; ++a)
            REQUIRE(r.final_hidden[i * c.d_model + a] == Approx(ref.final_hidden[hk.logit_positions[i]][a]).margin(1e-4));
        for (int v = 0; v < c.n_vocab; v += 17) {
            double s = 0;
            for (int a = 0; a < c.d_model; ++a) s += double(out.data[int64_t(v) * c.d_model + a]) * r.final_hidden[i * c.d_model + a];
            REQUIRE(r.logits_at(0, i, c.n_vocab)[v] == Approx(s).margin(1e-4));
        }
    }
}

TEST_CASE("building blocks reproduce the forward's last layer", "[engine]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    auto ids = random_ids(8, c.n_vocab, 71);
    ForwardHooks hk;
    hk.residuals = {{1, ResidualPoint::AFTER_ATTENTION}};
    hk.logits = LogitsMode::ALL;
    ForwardResult r = f.engine->forward(ids, 1, 8, hk);
    Backend& be = f.engine->backend();
    std::vector<float> x = r.residuals.at({1, ResidualPoint::AFTER_ATTENTION});
    DeviceBuffer dx(be, int64_t(x.size())), dh(be, int64_t(x.size())), dl(be, 8 * int64_t(c.n_vocab));
    be.upload(x.data(), dx.get(), int64_t(x.size()));
    f.engine->mlp_block(1, dx.get(), 8);
    f.engine->final_norm(dx.get(), dh.get(), 8);
    f.engine->unembed(dh.get(), dl.get(), 8);
    std::vector<float> logits(8 * size_t(c.n_vocab));
    be.download(dl.get(), logits.data(), int64_t(logits.size()));
    for (size_t i = 0; i < logits.size(); ++i) REQUIRE(logits[i] == Approx(r.logits[i]).margin(1e-5));
}

TEST_CASE("greedy generation equals repeated argmax of full forwards", "[engine][generate]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    auto prompt = random_ids(6, 256, 81);
    GenerateOptions o;
    o.max_new_tokens = 12;
    o.stop_at_eog = false;
    GenerateResult g = generate(*f.engine, prompt, o);
    REQUIRE(g.tokens.size() == 12);
    std::vector<int32_t> seq = prompt;
    for (int i = 0; i < 12; ++i) {
        ForwardResult r = f.engine->forward(seq, 1, int64_t(seq.size()));
        const int32_t next = int32_t(std::max_element(r.logits.begin(), r.logits.end()) - r.logits.begin());
        REQUIRE(g.tokens[i] == next);
        seq.push_back(next);
    }
    // Sampling with a seed is reproducible, and a different seed changes something. (The tiny random model's
    // tied embeddings make its distribution very peaked: a high temperature flattens it.)
    o.temperature = 50.0f;
    o.top_p = 0.95f;
    o.seed = 5;
    auto s1 = generate(*f.engine, prompt, o), s2 = generate(*f.engine, prompt, o);
    CHECK(s1.tokens == s2.tokens);
    o.seed = 6;
    CHECK(generate(*f.engine, prompt, o).tokens != s1.tokens);

    // stop_when sees every new token so far and ends the generation on the token it first returns true for
    o.temperature = 0;
    std::vector<size_t> seen;
    o.stop_when = [&](const std::vector<int32_t>& t) {
        seen.push_back(t.size());
        return t.size() == 5;
    };
    const GenerateResult w = generate(*f.engine, prompt, o);
    CHECK(w.stopped);
    CHECK(seen == std::vector<size_t>{1, 2, 3, 4, 5});
    CHECK(std::vector<int32_t>(g.tokens.begin(), g.tokens.begin() + 5) == w.tokens);
}

TEST_CASE("token log-probabilities equal log-softmax of the forward's logits", "[engine]") {
    Fixture f("tiny");
    const auto& c = f.model.config;
    auto ids = random_ids(300, c.n_vocab, 91);  // longer than one 256-position chunk
    auto lp = token_logprobs(*f.engine, ids);
    REQUIRE(lp.size() == 299);
    ForwardHooks hk;
    hk.logits = LogitsMode::ALL;
    ForwardResult r = f.engine->forward(ids, 1, 300, hk);
    for (int t : {0, 100, 255, 256, 298}) {
        const float* lg = r.logits_at(0, t, c.n_vocab);
        double mx = *std::max_element(lg, lg + c.n_vocab), s = 0;
        for (int v = 0; v < c.n_vocab; ++v) s += std::exp(lg[v] - mx);
        REQUIRE(lp[t] == Approx(lg[ids[t + 1]] - mx - std::log(s)).margin(1e-4));
    }
}

TEST_CASE("bad forward requests are refused with clear errors", "[engine]") {
    Fixture f("tiny");
    ForwardHooks hk;
    hk.z_layers = {5};
    CHECK_THROWS_WITH(f.engine->forward({1, 2, 3}, 1, 3, hk), Catch::Contains("no layer 5"));
    CHECK_THROWS_WITH(f.engine->forward({1, 2, 3}, 1, 4), Catch::Contains("batch*seq"));
    CHECK_THROWS_WITH(f.engine->forward({1, 2, 999}, 1, 3), Catch::Contains("outside the vocabulary"));
    ForwardHooks p;
    p.head_patches.push_back(HeadPatch{0, 9, -1, {0}, std::vector<float>(16)});
    CHECK_THROWS_WITH(f.engine->forward({1, 2, 3}, 1, 3, p), Catch::Contains("no head"));
    CHECK_THROWS_WITH(make_random_model("nope"), Catch::Contains("unknown model shape"));
}

TEST_CASE("random shapes: <shape>/<k> is the shape's first k layers, with the shape's matrices", "[engine]") {
    const ModelConfig full = random_model_config("tiny-mha");
    const ModelConfig two = random_model_config("tiny-mha/2");
    CHECK(full.n_layer == 3);
    CHECK(two.n_layer == 2);
    CHECK(two.layers.size() == 2);
    CHECK(two.d_model == full.d_model);
    CHECK(two.d_ff == full.d_ff);
    CHECK(two.n_head == full.n_head);
    const ModelConfig big = random_model_config("llama3-70b/4");  // the config alone: no weights allocated
    CHECK(big.n_layer == 4);
    CHECK(big.d_model == 8192);
    CHECK(big.d_ff == 28672);
    CHECK(big.n_head_kv == 8);
    // A slice model holds that many layers of weights.
    Model m2 = make_random_model("tiny-mha/2", 5);
    CHECK(m2.weights.layers.size() == 2);
    CHECK_THROWS_WITH(random_model_config("tiny-mha/4"), Catch::Contains("has only 3 layers"));
    CHECK_THROWS_WITH(random_model_config("tiny-mha/0"), Catch::Contains("at least 1"));
    CHECK_THROWS_WITH(random_model_config("tiny-mha/x"), Catch::Contains("positive number"));
    CHECK_THROWS_WITH(random_model_config("tiny-mha/"), Catch::Contains("positive number"));
    CHECK_THROWS_WITH(random_model_config("nope/2"), Catch::Contains("unknown model shape 'nope'"));
}

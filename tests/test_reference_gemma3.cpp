// The engine against Hugging Face transformers on the real Gemma 3 270M (fixtures made by
// tools/gen_reference_fixtures.py --kind gemma3; format in tests/fixtures/reference/README.md). Ids are fed
// directly, so the tokenizer is out of the loop here.
//
// The vocabulary is 262144 wide, so logits for all positions of a long prompt at once would be GBs: one forward
// keeps the final hidden states ([T, d_model]) and the engine's own output head turns them into logits in chunks
// of positions (what token_logprobs does through the cache, here without one, in one full-sequence pass as HF did).
//
// Default suite (~20 s on 2 threads): the logits of kDefaultLogits (6 to 600 tokens, one past the 512-token
// window) and the greedy continuation of the 600-token prompt (decoding costs a 262144 x 640 output head per token).
// [slow]: the logits of the other 6 prompts, among them the 4024-token one over which the window slides for
// thousands of positions, and the other 10 continuations.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

#include "engine/engine.hpp"
#include "io/h5.hpp"
#include "loaded_model.hpp"
#include "test_model_path.hpp"

using namespace hs;

namespace {

const std::string kFixtures = fixtures_dir() + "/reference/";
const std::string kLogitsFile = kFixtures + "gemma3_hf_logits.h5";
constexpr int64_t kLogitChunk = 256;  // positions per output-head call
const std::vector<std::string> kDefaultLogits = {"short_en", "numbers", "chat_single", "induction_random",
                                                  "long_document"};
const std::vector<std::string> kDefaultGreedy = {"long_document"};

LoadedModel& loaded() { return loaded_model(test_gemma3_path()); }

// Statistics of one prompt's logits against the reference.
struct PromptParity {
    int64_t T = 0;
    double worst = 0;              // max over rows of max|delta| / (row_max - row_min), columns + max + min + full rows
    double worst_lse = 0;          // max over rows of |delta logsumexp| / range
    int64_t argmax_mismatch = 0;
    double worst_argmax_gap = 0;   // where argmax differs: (ours - HF's choice) / range, in our logits
};

// All logits of `ids` ([T, V], one full-sequence forward), handed to `row(t, logits)` in position order.
void for_each_logit_row(Engine& e, const std::vector<int32_t>& ids,
                        const std::function<void(int64_t, const float*)>& row) {
    const ModelConfig& c = e.config();
    const int64_t T = int64_t(ids.size()), V = c.n_vocab, d = c.d_model;
    ForwardHooks hk;
    hk.logits = LogitsMode::ALL;
    hk.final_hidden = true;
    hk.hidden_only = true;
    ForwardResult r = e.forward(ids, 1, T, hk);
    REQUIRE(int64_t(r.final_hidden.size()) == T * d);
    Backend& be = e.backend();
    DeviceBuffer hidden(be, kLogitChunk * d), logits(be, kLogitChunk * V);
    std::vector<float> host(size_t(kLogitChunk * V));
    for (int64_t t0 = 0; t0 < T; t0 += kLogitChunk) {
        const int64_t n = std::min(kLogitChunk, T - t0);
        be.upload(r.final_hidden.data() + t0 * d, hidden.get(), n * d);
        e.unembed(hidden.get(), logits.get(), n);
        be.download(logits.get(), host.data(), n * V);
        for (int64_t i = 0; i < n; ++i) row(t0 + i, host.data() + i * V);
    }
}

PromptParity compare_prompt(Engine& engine, const h5::File& f, const h5::File& full, int64_t i) {
    const int64_t V = engine.config().n_vocab;
    const std::vector<int32_t> cols = f.open_dataset("cols").read<int32_t>();
    h5::Group p = f.open_group("prompts/" + std::to_string(i));
    const std::vector<int32_t> ids = p.open_dataset("ids").read<int32_t>();
    const std::vector<float> ref_cols = p.open_dataset("logits_cols").read<float>();
    const std::vector<float> row_max = p.open_dataset("row_max").read<float>();
    const std::vector<float> row_min = p.open_dataset("row_min").read<float>();
    const std::vector<float> row_lse = p.open_dataset("row_logsumexp").read<float>();
    const std::vector<int32_t> ref_argmax = p.open_dataset("argmax").read<int32_t>();
    std::vector<int32_t> full_pos;
    std::vector<float> full_rows;
    const std::string fg = "prompts/" + std::to_string(i);
    if (full.has_group(fg)) {
        full_pos = full.open_group(fg).open_dataset("full_row_positions").read<int32_t>();
        full_rows = full.open_group(fg).open_dataset("full_rows").read<float>();
    }
    PromptParity out;
    out.T = int64_t(ids.size());
    REQUIRE(int64_t(ref_cols.size()) == out.T * int64_t(cols.size()));
    for_each_logit_row(engine, ids, [&](int64_t t, const float* lg) {
        const double range = double(row_max[t]) - row_min[t];
        double d = 0;
        for (size_t c = 0; c < cols.size(); ++c)
            d = std::max(d, std::fabs(double(lg[cols[c]]) - ref_cols[t * cols.size() + c]));
        const float* mx = std::max_element(lg, lg + V);
        d = std::max(d, std::fabs(double(*mx) - row_max[t]));
        d = std::max(d, std::fabs(double(*std::min_element(lg, lg + V)) - row_min[t]));
        for (size_t k = 0; k < full_pos.size(); ++k)
            if (full_pos[k] == t)
                for (int64_t v = 0; v < V; ++v) d = std::max(d, std::fabs(double(lg[v]) - full_rows[k * V + v]));
        out.worst = std::max(out.worst, d / range);
        double s = 0;  // logsumexp over the whole row: every logit has its say
        for (int64_t v = 0; v < V; ++v) s += std::exp(double(lg[v]) - *mx);
        out.worst_lse = std::max(out.worst_lse, std::fabs(double(*mx) + std::log(s) - row_lse[t]) / range);
        const int32_t ours = int32_t(mx - lg);
        if (ours != ref_argmax[t]) {
            ++out.argmax_mismatch;
            out.worst_argmax_gap = std::max(out.worst_argmax_gap, (*mx - lg[ref_argmax[t]]) / range);
        }
    });
    return out;
}

// Logit parity on the prompts that `take(T)` selects; returns how many were compared.
int64_t check_logits(const std::function<bool(const std::string&, int64_t)>& take) {
    LoadedModel& L = loaded();
    h5::File f = h5::File::open(kLogitsFile);
    h5::File full = h5::File::open(kFixtures + f.attr_string("full_rows_file"));
    const int64_t n_prompts = f.attr<int64_t>("n_prompts");
    int64_t compared = 0, positions = 0;
    double worst = 0, worst_lse = 0;
    for (int64_t i = 0; i < n_prompts; ++i) {
        h5::Group p = f.open_group("prompts/" + std::to_string(i));
        if (!take(p.attr_string("name"), p.attr<int64_t>("length"))) continue;
        const PromptParity r = compare_prompt(*L.engine, f, full, i);
        INFO("prompt " << i << " (" << p.attr_string("name") << ", " << r.T << " tokens): max |dlogit| / range = "
                       << r.worst << ", |d logsumexp| / range = " << r.worst_lse << ", argmax differs at "
                       << r.argmax_mismatch << " positions (largest gap " << r.worst_argmax_gap << " of the range)");
        CHECK(r.worst < 1e-3);
        CHECK(r.worst_lse < 1e-3);
        CHECK(r.argmax_mismatch == 0);
        worst = std::max(worst, r.worst);
        worst_lse = std::max(worst_lse, r.worst_lse);
        positions += r.T;
        ++compared;
    }
    WARN("Gemma 3 HF parity over " << compared << " prompts, " << positions << " positions: max |dlogit| / row range = "
                                   << worst << ", max |d logsumexp| / range = " << worst_lse);
    return compared;
}

// Greedy continuations of the prompts that `take(T)` selects; returns how many were compared.
int64_t check_greedy(const std::function<bool(const std::string&, int64_t)>& take) {
    LoadedModel& L = loaded();
    h5::File f = h5::File::open(kLogitsFile);
    const int64_t n_prompts = f.attr<int64_t>("n_prompts");
    int64_t compared = 0;
    for (int64_t i = 0; i < n_prompts; ++i) {
        h5::Group p = f.open_group("prompts/" + std::to_string(i));
        if (!take(p.attr_string("name"), p.attr<int64_t>("length"))) continue;
        const std::vector<int32_t> ids = p.open_dataset("ids").read<int32_t>();
        const std::vector<int32_t> ref = p.open_dataset("greedy_ids").read<int32_t>();
        GenerateOptions o;
        o.max_new_tokens = int32_t(ref.size());
        o.stop_at_eog = false;
        GenerateResult g = generate(*L.engine, ids, o);
        INFO("prompt " << i << " (" << p.attr_string("name") << ", " << ids.size() << " tokens)");
        CHECK(g.tokens == ref);
        ++compared;
    }
    return compared;
}

bool in(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}
bool default_logits(const std::string& name, int64_t) { return in(kDefaultLogits, name); }
bool slow_logits(const std::string& name, int64_t) { return !in(kDefaultLogits, name); }
bool default_greedy(const std::string& name, int64_t) { return in(kDefaultGreedy, name); }
bool slow_greedy(const std::string& name, int64_t) { return !in(kDefaultGreedy, name); }

}  // namespace

TEST_CASE("gemma3: the config read from the GGUF equals what transformers read", "[model][reference][gemma3]") {
    const ModelConfig& c = loaded().model.config;
    h5::File f = h5::File::open(kLogitsFile);
    h5::Group g = f.open_group("hf_config");
    CHECK(c.arch == Arch::GEMMA3);
    CHECK(c.n_layer == g.attr<int64_t>("num_hidden_layers"));
    CHECK(c.n_head == g.attr<int64_t>("num_attention_heads"));
    CHECK(c.n_head_kv == g.attr<int64_t>("num_key_value_heads"));
    CHECK(c.d_head == g.attr<int64_t>("head_dim"));
    CHECK(c.d_model == g.attr<int64_t>("hidden_size"));
    CHECK(c.d_ff == g.attr<int64_t>("intermediate_size"));
    CHECK(c.n_vocab == g.attr<int64_t>("vocab_size"));
    CHECK(c.n_ctx == g.attr<int64_t>("max_position_embeddings"));
    CHECK(c.tied_embeddings == (g.attr<int64_t>("tie_word_embeddings") != 0));
    CHECK(c.rms_eps == float(g.attr<double>("rms_norm_eps")));
    CHECK(c.activation == Activation::GELU_TANH);
    CHECK(g.attr_string("hidden_act") == "gelu_pytorch_tanh");
    CHECK((c.qk_norm && c.post_norms));
    CHECK(c.final_logit_softcap == 0.0f);
    // HF: scaling = query_pre_attn_scalar ** -0.5; embeddings * sqrt(hidden_size) in the weights' dtype (f32).
    CHECK(c.attn_scale == float(1.0 / std::sqrt(g.attr<double>("query_pre_attn_scalar"))));
    CHECK(c.embed_scale == float(g.attr<double>("embed_scale")));
    // Per layer: HF's full_attention layers have no window and base rope_theta; the others slide over
    // sliding_window keys (HF: kv_idx > q_idx - sliding_window, our "p-w+1..p") with base rope_local_base_freq.
    const std::vector<int32_t> global = g.open_dataset("full_attention_layers").read<int32_t>();
    for (int32_t l = 0; l < c.n_layer; ++l) {
        INFO("layer " << l);
        const bool full = std::find(global.begin(), global.end(), l) != global.end();
        CHECK(c.layers[l].window == (full ? 0 : g.attr<int64_t>("sliding_window")));
        CHECK(c.layers[l].rope_base == float(g.attr<double>(full ? "rope_theta" : "rope_local_base_freq")));
    }
}

TEST_CASE("gemma3: the residual stream and attention match HF's layer by layer on the shortest prompts",
          "[model][reference][gemma3]") {
    LoadedModel& L = loaded();
    const ModelConfig& c = L.model.config;
    h5::File f = h5::File::open(kFixtures + "gemma3_hf_intermediates.h5");
    for (const std::string& name : f.open_group("prompts").children()) {
        h5::Group p = f.open_group("prompts/" + name);
        const std::vector<int32_t> ids = p.open_dataset("ids").read<int32_t>();
        const int64_t T = int64_t(ids.size());
        ForwardHooks hk;
        hk.logits = LogitsMode::ALL;
        hk.final_hidden = true;
        hk.hidden_only = true;
        hk.residuals = {{0, ResidualPoint::BLOCK_INPUT}};
        for (int32_t l : {0, 1, 5, 17}) hk.residuals.push_back({l, ResidualPoint::BLOCK_OUTPUT});
        hk.attn_prob_layers = {0, 5};
        ForwardResult r = L.engine->forward(ids, 1, T, hk);
        // Per position, relative to the largest |value| of the reference row: the residual stream at <bos> grows to
        // ~66000 while other positions stay in the hundreds, so one scale for the whole tensor would hide them.
        auto rel = [&](const std::vector<float>& ours, const std::vector<float>& ref) {
            REQUIRE(ours.size() == ref.size());
            REQUIRE(int64_t(ref.size()) == T * c.d_model);
            double worst = 0;
            for (int64_t t = 0; t < T; ++t) {
                double d = 0, m = 0;
                for (int64_t k = t * c.d_model; k < (t + 1) * c.d_model; ++k) {
                    d = std::max(d, std::fabs(double(ours[k]) - ref[k]));
                    m = std::max(m, std::fabs(double(ref[k])));
                }
                worst = std::max(worst, d / m);
            }
            return worst;
        };
        INFO("prompt " << name << " (" << T << " tokens)");
        CHECK(rel(r.residuals[{0, ResidualPoint::BLOCK_INPUT}], p.open_dataset("hidden_embed").read<float>()) < 1e-6);
        for (int32_t l : {0, 1, 5, 17}) {
            INFO("after layer " << l);
            CHECK(rel(r.residuals[{l, ResidualPoint::BLOCK_OUTPUT}],
                      p.open_dataset("hidden_after_layer_" + std::to_string(l)).read<float>()) < 1e-4);
        }
        CHECK(rel(r.final_hidden, p.open_dataset("final_norm").read<float>()) < 1e-4);
        for (int32_t l : {0, 5}) {
            INFO("attention probabilities of layer " << l);
            const std::vector<float> ref = p.open_dataset("attn_probs_layer_" + std::to_string(l)).read<float>();
            REQUIRE(r.attn_probs[l].size() == size_t(c.n_head * T * T));
            double d = 0;
            for (size_t k = 0; k < ref.size(); ++k) d = std::max(d, std::fabs(double(r.attn_probs[l][k]) - ref[k]));
            CHECK(d < 1e-5);
        }
    }
}

TEST_CASE("gemma3: logits match HF transformers on 5 prompts of 6 to 600 tokens (one past the window)",
          "[model][reference][gemma3]") {
    CHECK(check_logits(default_logits) == int64_t(kDefaultLogits.size()));
}

TEST_CASE("gemma3: logits match HF transformers on the other 6 prompts, up to 4024 tokens (the window slides)",
          "[model][reference][gemma3][slow]") {
    CHECK(check_logits(slow_logits) >= 6);
}

TEST_CASE("gemma3: the greedy continuation of 32 tokens of the 600-token prompt equals HF's",
          "[model][reference][gemma3]") {
    CHECK(check_greedy(default_greedy) == 1);
}

TEST_CASE("gemma3: greedy continuations of 32 tokens equal HF's on the other 10 prompts, up to 4024 tokens",
          "[model][reference][gemma3][slow]") {
    CHECK(check_greedy(slow_greedy) >= 10);
}

TEST_CASE("gemma3: the parity test sees the window: off by one either way, or none, fails it on 4024 tokens",
          "[model][reference][gemma3][slow]") {
    // Guard against a test that cannot fail. HF's sliding layers let a query at p see keys p-511..p (512 keys:
    // kv_idx > q_idx - sliding_window); the same weights with windows of 511 or 513 keys, or no window, must leave
    // the tolerance. (Measured: max |dlogit| / range 1.8e-2 for 511 and 2.1e-2 for 513 keys, with 8-9 argmax
    // changes, 0.57 with no window; on the 600-token prompt row max and logsumexp move by only ~1.3e-3 of the range,
    // which is why the long prompt is the one that pins the convention down.)
    LoadedModel& L = loaded();
    h5::File f = h5::File::open(kLogitsFile);
    h5::File full = h5::File::open(kFixtures + f.attr_string("full_rows_file"));
    int64_t i = 0;
    while (f.open_group("prompts/" + std::to_string(i)).attr_string("name") != "very_long_document") ++i;
    for (int32_t w : {511, 513, 0}) {
        Model m = L.model;  // shares the weights
        for (auto& layer : m.config.layers)
            if (layer.window > 0) layer.window = w;
        Engine e(m, *L.be);
        const PromptParity r = compare_prompt(e, f, full, i);
        INFO("window " << w << ": max |dlogit| / range = " << r.worst << ", argmax differs at " << r.argmax_mismatch);
        CHECK(r.worst > 2e-3);
    }
}

// The engine against Hugging Face transformers on the real default model (fixtures made by
// tools/gen_reference_fixtures.py; format in tests/fixtures/reference/README.md). Ids are fed directly, so the
// tokenizer is out of the loop here (it has its own parity test).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/engine.hpp"
#include "io/h5.hpp"
#include "loaded_model.hpp"
#include "test_model_path.hpp"

using namespace hs;

namespace {

const std::string kFixtures = fixtures_dir() + "/reference/";

LoadedModel& loaded() { return loaded_model(test_model_path()); }

}  // namespace

TEST_CASE("config read from the GGUF equals what transformers read", "[model][reference]") {
    const ModelConfig& c = loaded().model.config;
    h5::File f = h5::File::open(kFixtures + "smollm2_hf_logits.h5");
    h5::Group g = f.open_group("hf_config");
    CHECK(c.n_layer == g.attr<int64_t>("num_hidden_layers"));
    CHECK(c.n_head == g.attr<int64_t>("num_attention_heads"));
    CHECK(c.n_head_kv == g.attr<int64_t>("num_key_value_heads"));
    CHECK(c.d_head == g.attr<int64_t>("head_dim"));
    CHECK(c.d_model == g.attr<int64_t>("hidden_size"));
    CHECK(c.d_ff == g.attr<int64_t>("intermediate_size"));
    CHECK(c.n_vocab == g.attr<int64_t>("vocab_size"));
    CHECK(c.tied_embeddings == (g.attr<int64_t>("tie_word_embeddings") != 0));
    CHECK(c.layers[0].rope_base == Approx(g.attr<double>("rope_theta")));
    CHECK(c.rms_eps == float(g.attr<double>("rms_norm_eps")));
}

TEST_CASE("logits match HF transformers on 10 prompts of 5 to 1023 tokens", "[model][reference]") {
    LoadedModel& L = loaded();
    const int64_t V = L.model.config.n_vocab;
    h5::File f = h5::File::open(kFixtures + "smollm2_hf_logits.h5");
    h5::File full = h5::File::open(kFixtures + "smollm2_hf_full_rows.h5");
    const std::vector<int32_t> cols = f.open_dataset("cols").read<int32_t>();
    const int64_t n_prompts = f.attr<int64_t>("n_prompts");
    REQUIRE(n_prompts >= 8);
    double worst = 0;  // max over rows of max|delta| / (row_max - row_min)
    int64_t positions = 0, argmax_mismatch = 0;
    for (int64_t i = 0; i < n_prompts; ++i) {
        h5::Group p = f.open_group("prompts/" + std::to_string(i));
        const std::vector<int32_t> ids = p.open_dataset("ids").read<int32_t>();
        const std::vector<float> ref_cols = p.open_dataset("logits_cols").read<float>();
        const std::vector<float> row_max = p.open_dataset("row_max").read<float>();
        const std::vector<float> row_min = p.open_dataset("row_min").read<float>();
        const std::vector<int32_t> ref_argmax = p.open_dataset("argmax").read<int32_t>();
        const int64_t T = int64_t(ids.size());
        ForwardHooks hk;
        hk.logits = LogitsMode::ALL;
        ForwardResult r = L.engine->forward(ids, 1, T, hk);
        double prompt_worst = 0;
        for (int64_t t = 0; t < T; ++t) {
            const float* lg = r.logits_at(0, t, V);
            const double range = double(row_max[t]) - row_min[t];
            double d = 0;
            for (size_t c = 0; c < cols.size(); ++c) d = std::max(d, std::fabs(double(lg[cols[c]]) - ref_cols[t * cols.size() + c]));
            d = std::max(d, std::fabs(double(*std::max_element(lg, lg + V)) - row_max[t]));
            d = std::max(d, std::fabs(double(*std::min_element(lg, lg + V)) - row_min[t]));
            prompt_worst = std::max(prompt_worst, d / range);
            // Argmax: equal, or HF's choice within the tolerance of ours (a near tie).
            const int32_t ours = int32_t(std::max_element(lg, lg + V) - lg);
            if (ours != ref_argmax[t]) {
                ++argmax_mismatch;
                CHECK(lg[ours] - lg[ref_argmax[t]] < 1e-3 * range);
            }
            ++positions;
        }
        // Full-vocabulary rows at 3 positions.
        h5::Group fr = full.open_group("prompts/" + std::to_string(i));
        const std::vector<int32_t> rp = fr.open_dataset("full_row_positions").read<int32_t>();
        const std::vector<float> rows = fr.open_dataset("full_rows").read<float>();
        for (size_t k = 0; k < rp.size(); ++k) {
            const float* lg = r.logits_at(0, rp[k], V);
            const double range = double(row_max[rp[k]]) - row_min[rp[k]];
            double d = 0;
            for (int64_t v = 0; v < V; ++v) d = std::max(d, std::fabs(double(lg[v]) - rows[k * V + v]));
            prompt_worst = std::max(prompt_worst, d / range);
        }
        INFO("prompt " << i << " (" << p.attr_string("name") << ", " << T << " tokens): max |dlogit| / range = "
                       << prompt_worst);
        CHECK(prompt_worst < 1e-3);
        worst = std::max(worst, prompt_worst);
    }
    WARN("HF parity over " << positions << " positions: max |dlogit| / row range = " << worst << "; argmax differs at "
                           << argmax_mismatch << " positions (all within tolerance)");
}

TEST_CASE("greedy continuations of 32 tokens equal HF's", "[model][reference]") {
    LoadedModel& L = loaded();
    h5::File f = h5::File::open(kFixtures + "smollm2_hf_logits.h5");
    const int64_t n_prompts = f.attr<int64_t>("n_prompts");
    for (int64_t i = 0; i < n_prompts; ++i) {
        h5::Group p = f.open_group("prompts/" + std::to_string(i));
        const std::vector<int32_t> ids = p.open_dataset("ids").read<int32_t>();
        const std::vector<int32_t> ref = p.open_dataset("greedy_ids").read<int32_t>();
        GenerateOptions o;
        o.max_new_tokens = int32_t(ref.size());
        o.stop_at_eog = false;
        GenerateResult g = generate(*L.engine, ids, o);
        INFO("prompt " << i << " (" << p.attr_string("name") << ")");
        CHECK(g.tokens == ref);
    }
}

// PEAR sweep: settings, options, proxy batches, the work plan and the score aggregation.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "pear/sweep.hpp"
#include "util/error.hpp"

namespace hs::pear {

std::vector<ProxySetting> paper_settings() { return {{20, 50}, {40, 25}, {80, 15}, {100, 10}}; }

const char* score_mode_name(ScoreMode m) {
    switch (m) {
        case ScoreMode::PATH: return "path";
        case ScoreMode::TOTAL: return "total";
        case ScoreMode::ATTRIBUTION: return "attribution";
    }
    return "?";
}

ScoreMode parse_score_mode(const std::string& s) {
    if (s == "path") return ScoreMode::PATH;
    if (s == "total") return ScoreMode::TOTAL;
    if (s == "attribution") return ScoreMode::ATTRIBUTION;
    fail("unknown scoring mode '", s, "' (choose path, total or attribution)");
}

const char* mean_over_name(MeanOver m) { return m == MeanOver::BATCH ? "batch" : "sequence"; }

MeanOver parse_mean_over(const std::string& s) {
    if (s == "batch") return MeanOver::BATCH;
    if (s == "sequence") return MeanOver::SEQUENCE;
    fail("unknown mean '", s, "' (choose batch or sequence)");
}

int32_t default_top_k(int32_t n_heads) { return std::max(1, int32_t(std::lround(0.03 * n_heads))); }

void SweepOptions::validate(const ModelConfig& c) const {
    check(!settings.empty(), "sweep: no (N, n) settings given");
    for (const auto& s : settings) {
        check(s.n_samples >= 2, "sweep: setting (", s.n_samples, ", ", s.half_len,
              "): N must be at least 2 (the ablation uses the batch mean)");
        check(s.half_len >= 2, "sweep: setting (", s.n_samples, ", ", s.half_len, "): n must be at least 2");
        check(2 * int64_t(s.half_len) <= c.n_ctx, "sweep: setting (", s.n_samples, ", ", s.half_len,
              "): the input [X, X] has ", 2 * int64_t(s.half_len), " tokens, more than the model's context of ",
              c.n_ctx);
    }
    check(top_k >= 0 && top_k <= c.n_heads_total(), "sweep: top-K ", top_k, " must be between 1 and the number of heads (",
          c.n_heads_total(), ")");
    for (const auto& s : settings)
        for (int32_t t : total_positions)
            check(t >= 0 && t < 2 * s.half_len, "sweep: ablation position ", t, " is outside the input of setting (",
                  s.n_samples, ", ", s.half_len, ")");
    check(max_rows_per_chunk >= 1, "sweep: max_rows_per_chunk must be positive");
    check(max_tokens_per_pass >= 1, "sweep: max_tokens_per_pass must be positive");
}

namespace {

// SplitMix64: decorrelates (seed, setting) into a generator seed.
uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Uniform integer in [0, n) by rejection (portable, unbiased).
uint32_t uniform_below(std::mt19937_64& g, uint32_t n) {
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
    uint64_t r;
    do r = g(); while (r >= limit);
    return uint32_t(r % n);
}

}  // namespace

ProxyBatch make_proxy_batch(const ProxySetting& s, int32_t setting_index, uint64_t seed, const Tokenizer& tok,
                            int32_t n_vocab, bool exclude_special) {
    std::vector<int32_t> pool;
    if (exclude_special)
        for (int32_t id = 0; id < n_vocab; ++id)
            if (id >= tok.n_vocab() || !tok.is_special(id)) pool.push_back(id);
    std::mt19937_64 g(mix(seed ^ mix(uint64_t(setting_index) + 1)));
    ProxyBatch b;
    b.setting = s;
    const int32_t n = s.half_len;
    b.tokens.resize(size_t(s.n_samples) * 2 * n);
    for (int32_t i = 0; i < s.n_samples; ++i) {
        int32_t* row = b.tokens.data() + size_t(i) * 2 * n;
        for (int32_t t = 0; t < n; ++t) {
            row[t] = pool.empty() ? int32_t(uniform_below(g, uint32_t(n_vocab)))
                                  : pool[uniform_below(g, uint32_t(pool.size()))];
            row[t + n] = row[t];
        }
    }
    return b;
}

std::vector<WorkItem> plan_items(const ModelConfig& c, const SweepOptions& o, int32_t layers_per_item,
                                 int32_t heads_per_item) {
    check(layers_per_item >= 1, "plan: layers per item must be positive");
    check(heads_per_item >= 0, "plan: heads per item must be >= 0 (0: all heads of a layer)");
    const int32_t hpi = heads_per_item == 0 ? c.n_head : std::min(heads_per_item, c.n_head);
    check(layers_per_item == 1 || hpi == c.n_head, "plan: head ranges need items of one layer");
    std::vector<WorkItem> items;
    for (int32_t s = 0; s < int32_t(o.settings.size()); ++s)
        for (int32_t l = 0; l < c.n_layer; l += layers_per_item)
            for (int32_t h = 0; h < c.n_head; h += hpi)
                items.push_back(WorkItem{s, l, std::min(c.n_layer, l + layers_per_item), h, std::min(c.n_head, h + hpi)});
    return items;
}

int32_t heads_per_item_for(int64_t n_settings, int32_t n_layer, int32_t n_head, int64_t min_items) {
    const int64_t layer_items = n_settings * int64_t(n_layer);
    if (layer_items <= 0 || layer_items >= min_items) return 0;
    // ranges per layer needed, then the range size that gives at least that many ranges
    const int64_t per_layer = std::min<int64_t>(n_head, (min_items + layer_items - 1) / layer_items);
    return std::max<int32_t>(1, int32_t(n_head / per_layer));
}

void finish_scores(HeadScores& s, int32_t top_k) {
    const size_t S = s.settings.size(), LH = size_t(s.n_layer) * s.n_head;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    s.raw.assign(S * LH, nan);
    s.ratio.assign(S * LH, nan);
    s.mean_ratio.assign(LH, 0.0);
    s.weighted_ratio.assign(LH, 0.0);
    double n_total = 0;
    for (size_t k = 0; k < S; ++k) n_total += s.settings[k].n_samples;
    for (size_t k = 0; k < S; ++k)
        for (size_t i = 0; i < LH; ++i) {
            const double pa = s.pi_ablated[k * LH + i];
            s.raw[k * LH + i] = pa - s.pi_clean[k];
            s.ratio[k * LH + i] = pa / s.pi_clean[k] - 1.0;
            s.mean_ratio[i] += s.ratio[k * LH + i] / double(S);
            s.weighted_ratio[i] += s.ratio[k * LH + i] * s.settings[k].n_samples / n_total;
        }
    s.ranking.resize(LH);
    std::iota(s.ranking.begin(), s.ranking.end(), 0);
    // Largest mean ratio first; heads not scored (NaN) last; ties by index for a deterministic order.
    std::stable_sort(s.ranking.begin(), s.ranking.end(), [&](int32_t a, int32_t b) {
        const double x = s.mean_ratio[a], y = s.mean_ratio[b];
        if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
        return x > y;
    });
    s.top_k = top_k > 0 ? top_k : default_top_k(int32_t(LH));
}

}  // namespace hs::pear

// Generation with a KV cache, and teacher-forced token log-probabilities.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "engine/engine.hpp"
#include "util/error.hpp"

namespace hs {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int32_t argmax(const float* x, int64_t n) { return int32_t(std::max_element(x, x + n) - x); }

// Temperature + nucleus sampling from raw engine bits (portable across standard libraries).
int32_t sample(const float* logits, int64_t n, float temperature, float top_p, std::mt19937_64& rng) {
    std::vector<int32_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    std::vector<double> p(n);
    const double mx = logits[idx[0]];
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += p[i] = std::exp((double(logits[idx[i]]) - mx) / temperature);
    int64_t keep = n;
    double cum = 0;
    for (int64_t i = 0; i < n; ++i) {
        cum += p[i] / sum;
        if (cum >= top_p) { keep = i + 1; break; }
    }
    double total = 0;
    for (int64_t i = 0; i < keep; ++i) total += p[i];
    const double u = (double(rng() >> 11) * (1.0 / 9007199254740992.0)) * total;
    double acc = 0;
    for (int64_t i = 0; i < keep; ++i) {
        acc += p[i];
        if (u < acc) return idx[i];
    }
    return idx[keep - 1];
}

}  // namespace

GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& o) {
    const ModelConfig& c = engine.config();
    check(!prompt.empty(), "generate: empty prompt");
    check(o.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
    check(o.temperature >= 0 && o.top_p > 0 && o.top_p <= 1, "generate: temperature must be >= 0, top_p in (0, 1]");
    const int64_t limit = o.max_context > 0 ? o.max_context : c.n_ctx;
    const int64_t capacity = int64_t(prompt.size()) + o.max_new_tokens;
    check(capacity <= limit, "generate: prompt (", prompt.size(), " tokens) + ", o.max_new_tokens,
          " new tokens exceed the context length ", limit);

    std::vector<int32_t> stops = o.stop_ids;
    if (o.stop_at_eog)
        for (int32_t id : engine.model().tokenizer.eog_ids()) stops.push_back(id);

    KvCache cache(engine.backend(), c, 1, std::max<int64_t>(capacity, 1));
    ForwardHooks hooks;
    hooks.head_scale = o.head_scale;
    std::mt19937_64 rng(o.seed);
    GenerateResult out;
    if (o.max_new_tokens == 0) return out;

    auto t0 = std::chrono::steady_clock::now();
    ForwardResult r = engine.forward(prompt, 1, int64_t(prompt.size()), hooks, &cache);
    out.prefill_seconds = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    for (int32_t i = 0; i < o.max_new_tokens; ++i) {
        const float* lg = r.logits.data();
        const int32_t next = o.temperature == 0 ? argmax(lg, c.n_vocab) : sample(lg, c.n_vocab, o.temperature, o.top_p, rng);
        out.tokens.push_back(next);
        if (std::find(stops.begin(), stops.end(), next) != stops.end() || (o.stop_when && o.stop_when(out.tokens))) {
            out.stopped = true;
            break;
        }
        if (i + 1 == o.max_new_tokens) break;
        r = engine.forward({next}, 1, 1, hooks, &cache);
    }
    out.decode_seconds = seconds_since(t0);
    return out;
}

std::vector<double> token_logprobs(Engine& engine, const std::vector<int32_t>& ids, int64_t chunk) {
    const ModelConfig& c = engine.config();
    check(ids.size() >= 2, "score: need at least 2 tokens");
    check(int64_t(ids.size()) <= c.n_ctx, "score: ", ids.size(), " tokens exceed the context length ", c.n_ctx);
    const int64_t T = int64_t(ids.size());
    std::vector<double> out;
    out.reserve(T - 1);
    // Logits for all positions at once would be T x n_vocab floats; take them in chunks of positions instead,
    // from one forward that keeps the final hidden states.
    ForwardHooks hk;
    hk.logits = LogitsMode::ALL;
    check(chunk >= 1, "score: the step must be >= 1 token");
    KvCache cache(engine.backend(), c, 1, T);
    for (int64_t t0 = 0; t0 < T - 1; t0 += chunk) {
        const int64_t n = std::min(chunk, T - 1 - t0);
        std::vector<int32_t> part(ids.begin() + t0, ids.begin() + t0 + n);
        ForwardResult r = engine.forward(part, 1, n, hk, &cache);
        for (int64_t i = 0; i < n; ++i) {
            const float* lg = r.logits.data() + i * c.n_vocab;
            const double mx = *std::max_element(lg, lg + c.n_vocab);
            double s = 0;
            for (int64_t v = 0; v < c.n_vocab; ++v) s += std::exp(double(lg[v]) - mx);
            out.push_back(double(lg[ids[t0 + i + 1]]) - mx - std::log(s));
        }
    }
    return out;
}

}  // namespace hs

// tests/logits_util.hpp: logits of a seeded random token sequence, and the relative difference of two logit sets --
// the comparison the precision and Hugging Face folder tests make between two loads of one model.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "backend/backend.hpp"
#include "engine/engine.hpp"
#include "model/model.hpp"

namespace hs::test {

// Logits of every position of one sequence of `n` tokens drawn from a generator seeded with `seed`: [n, n_vocab].
inline std::vector<float> random_sequence_logits(const Model& m, Backend& be, int64_t n, uint32_t seed) {
    Engine e(m, be);
    std::vector<int32_t> tokens;
    std::mt19937 g(seed);
    for (int64_t i = 0; i < n; ++i) tokens.push_back(int32_t(g() % uint32_t(m.config.n_vocab)));
    ForwardHooks h;
    h.logits = LogitsMode::ALL;
    return e.forward(tokens, 1, n, h).logits;
}

// max |a - b| / max |b|
inline double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num = std::max(num, double(std::fabs(a[i] - b[i])));
        den = std::max(den, double(std::fabs(b[i])));
    }
    return num / den;
}

}  // namespace hs::test

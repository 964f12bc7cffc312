#include "eval/stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "util/error.hpp"

namespace hs::eval {

double quantile_linear(std::vector<double> v, double q) {
    check(!v.empty(), "quantile of no values");
    std::sort(v.begin(), v.end());
    const double pos = q * double(v.size() - 1);
    const size_t lo = size_t(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

Interval bootstrap_mean(const std::vector<double>& x, int32_t resamples, uint64_t seed, double level) {
    check(resamples > 0 && level > 0 && level < 1, "bootstrap: resamples must be > 0 and level in (0, 1)");
    Interval r;
    r.n = int64_t(x.size());
    if (x.empty()) {
        r.estimate = r.low = r.high = std::numeric_limits<double>::quiet_NaN();
        return r;
    }
    double sum = 0;
    for (double v : x) sum += v;
    r.estimate = sum / double(x.size());
    std::mt19937_64 rng(seed);
    std::vector<double> means(static_cast<size_t>(resamples));
    const uint64_t n = x.size();
    for (int32_t b = 0; b < resamples; ++b) {
        double s = 0;
        for (uint64_t i = 0; i < n; ++i) s += x[size_t(rng() % n)];
        means[size_t(b)] = s / double(n);
    }
    r.low = quantile_linear(means, (1 - level) / 2);
    r.high = quantile_linear(means, (1 + level) / 2);
    return r;
}

Interval bootstrap_paired_difference(const std::vector<double>& a, const std::vector<double>& b, int32_t resamples,
                                     uint64_t seed, double level) {
    check(a.size() == b.size(), "bootstrap: paired samples of different sizes (", a.size(), " and ", b.size(), ")");
    std::vector<double> d(a.size());
    for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
    return bootstrap_mean(d, resamples, seed, level);
}

}  // namespace hs::eval

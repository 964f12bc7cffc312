// Per-head standard errors, bootstrap intervals and top-K stability (sample_stats.hpp).
#include "pear/sample_stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "util/error.hpp"

namespace hs::pear {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint32_t below(std::mt19937_64& g, uint32_t n) {
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
    uint64_t r;
    do r = g(); while (r >= limit);
    return uint32_t(r % n);
}

// Sequential double sum of weights[b] * x[b], b < n.
double weighted_sum(const float* x, const int32_t* w, int32_t n) {
    double s = 0;
    for (int32_t b = 0; b < n; ++b)
        if (w[b]) s += double(w[b]) * double(x[b]);
    return s;
}

}  // namespace

double quantile_sorted(const std::vector<double>& v, double q) {
    if (v.empty()) return kNaN;
    const double pos = q * double(v.size() - 1);
    const size_t lo = size_t(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    const double frac = pos - double(lo);
    return v[lo] + (v[hi] - v[lo]) * frac;
}

std::vector<uint8_t> top_k_mask(const std::vector<double>& scores, int32_t k) {
    std::vector<int32_t> order(scores.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        const double x = scores[size_t(a)], y = scores[size_t(b)];
        if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
        return x > y;
    });
    std::vector<uint8_t> mask(scores.size(), 0);
    for (int32_t r = 0; r < k && size_t(r) < order.size(); ++r) mask[size_t(order[size_t(r)])] = 1;
    return mask;
}

HeadStats head_stats(const SampleData& d, const BootstrapOptions& o) {
    check(d.S > 0 && d.L > 0 && d.H > 0, "stats: empty sample data");
    check(o.resamples >= 0, "stats: the number of bootstrap resamples must not be negative");
    check(o.confidence > 0 && o.confidence < 1, "stats: confidence ", o.confidence, " is not in (0, 1)");
    const int32_t S = d.S, LH = d.L * d.H;
    HeadStats st;
    st.bootstrap = o;
    st.bootstrap.top_k = std::clamp(o.top_k, 1, LH);
    st.pi_ablated_se.assign(size_t(S) * LH, kNaN);
    st.ratio_se.assign(size_t(S) * LH, kNaN);
    st.mean_ratio.assign(size_t(LH), 0.0);
    st.mean_ratio_se.assign(size_t(LH), 0.0);

    // Means and standard errors.
    std::vector<double> clean_mean(static_cast<size_t>(S));
    for (int32_t s = 0; s < S; ++s) {
        const int32_t N = d.n[size_t(s)];
        check(N >= 2 && N <= d.n_max, "stats: setting ", s, " has ", N, " samples");
        const float* pc = &d.pi_clean[size_t(s) * d.n_max];
        double sum = 0;
        for (int32_t b = 0; b < N; ++b) sum += double(pc[b]);
        const double mc = sum / N;
        clean_mean[size_t(s)] = mc;
        for (int32_t i = 0; i < LH; ++i) {
            const float* pt = &d.pi_tilde[(size_t(s) * LH + i) * d.n_max];
            double t = 0;
            for (int32_t b = 0; b < N; ++b) t += double(pt[b]);
            const double mt = t / N, R = mt / mc;
            double v1 = 0, v2 = 0;
            for (int32_t b = 0; b < N; ++b) {
                const double e = double(pt[b]) - mt, f = double(pt[b]) - R * double(pc[b]);
                v1 += e * e;
                v2 += f * f;
            }
            const size_t at = size_t(s) * LH + i;
            st.pi_ablated_se[at] = std::sqrt(v1 / (N - 1)) / std::sqrt(double(N));
            st.ratio_se[at] = std::sqrt(v2 / (N - 1)) / std::sqrt(double(N)) / std::fabs(mc);
            st.mean_ratio[size_t(i)] += (R - 1.0) / S;
            st.mean_ratio_se[size_t(i)] += st.ratio_se[at] * st.ratio_se[at];
        }
    }
    for (double& v : st.mean_ratio_se) v = std::sqrt(v) / S;

    // Bootstrap: replicates [B, LH].
    const int32_t B = o.resamples;
    st.mean_ratio_lo.assign(size_t(LH), kNaN);
    st.mean_ratio_hi.assign(size_t(LH), kNaN);
    st.top_k_frequency.assign(size_t(LH), kNaN);
    if (B == 0) return st;
    std::vector<double> rep(size_t(B) * LH, 0.0);
    std::vector<double> freq(size_t(LH), 0.0);
    std::vector<int32_t> counts(static_cast<size_t>(d.n_max));
    for (int32_t r = 0; r < B; ++r) {
        std::mt19937_64 g(splitmix(o.seed ^ splitmix(uint64_t(r) + 1)));
        double* row = &rep[size_t(r) * LH];
        for (int32_t s = 0; s < S; ++s) {
            const int32_t N = d.n[size_t(s)];
            std::fill(counts.begin(), counts.end(), 0);
            for (int32_t b = 0; b < N; ++b) ++counts[below(g, uint32_t(N))];
            const double mc = weighted_sum(&d.pi_clean[size_t(s) * d.n_max], counts.data(), N) / N;
            for (int32_t i = 0; i < LH; ++i) {
                const double mt = weighted_sum(&d.pi_tilde[(size_t(s) * LH + i) * d.n_max], counts.data(), N) / N;
                row[i] += (mt / mc - 1.0) / S;
            }
        }
        const std::vector<double> one(row, row + LH);
        const auto mask = top_k_mask(one, st.bootstrap.top_k);
        for (int32_t i = 0; i < LH; ++i) freq[size_t(i)] += mask[size_t(i)];
    }
    std::vector<double> col(static_cast<size_t>(B));
    const double a = (1.0 - o.confidence) / 2;
    for (int32_t i = 0; i < LH; ++i) {
        bool finite = true;
        for (int32_t r = 0; r < B; ++r) {
            col[size_t(r)] = rep[size_t(r) * LH + i];
            finite = finite && std::isfinite(col[size_t(r)]);
        }
        st.top_k_frequency[size_t(i)] = freq[size_t(i)] / B;
        if (!finite) continue;  // a zero clean margin in a resample: no interval
        std::sort(col.begin(), col.end());
        st.mean_ratio_lo[size_t(i)] = quantile_sorted(col, a);
        st.mean_ratio_hi[size_t(i)] = quantile_sorted(col, 1.0 - a);
    }
    return st;
}

}  // namespace hs::pear

// eval/stats.hpp: percentile bootstrap intervals for accuracies and paired differences.
//
// Resampling: `resamples` draws of n indices with replacement from std::mt19937_64(seed) (index = draw mod n), the
// statistic is the mean of the drawn values; the interval is the (1-level)/2 and (1+level)/2 quantiles of the
// resampled means, with numpy's default linear interpolation. The generator is re-seeded for every call, so an
// interval depends only on the values (in their given order), the seed and the number of resamples.
#pragma once

#include <cstdint>
#include <vector>

namespace hs::eval {

inline constexpr int32_t kBootstrapResamples = 10000;
inline constexpr uint64_t kBootstrapSeed = 20240917;

struct Interval {
    double estimate = 0, low = 0, high = 0;  // NaN when there are no values
    int64_t n = 0;
};

Interval bootstrap_mean(const std::vector<double>& x, int32_t resamples = kBootstrapResamples,
                        uint64_t seed = kBootstrapSeed, double level = 0.95);
// Paired difference mean(a - b): the pairs (a_i, b_i) are resampled together. a and b must have the same size.
Interval bootstrap_paired_difference(const std::vector<double>& a, const std::vector<double>& b,
                                     int32_t resamples = kBootstrapResamples, uint64_t seed = kBootstrapSeed,
                                     double level = 0.95);
double quantile_linear(std::vector<double> v, double q);  // numpy.quantile(v, q), method "linear"

}  // namespace hs::eval

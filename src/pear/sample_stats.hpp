// pear/sample_stats.hpp: uncertainty of the per-head scores from the per-sample values of a sweep.
//
// Inputs (a sweep file's /pi_tilde and /pi_clean_samples): for each setting s with N_s samples, pi~[s,l,h,b] (the
// head-ablated logit margin of sample b) and pi[s,b] (its clean margin). The scores are
//   ratio[s,l,h] = mean_b pi~ / mean_b pi - 1        mean_ratio[l,h] = mean over s of ratio[s,l,h]
// Statistics (docs/file-formats.md, "/stats"):
//   pi_ablated_se[s,l,h]  sd_b(pi~) / sqrt(N_s)                      (sd with N_s - 1 degrees of freedom)
//   ratio_se[s,l,h]       delta method for the paired ratio: sd_b(pi~_b - R pi_b) / sqrt(N_s) / |mean_b pi|,
//                         R = mean_b pi~ / mean_b pi
//   mean_ratio_se[l,h]    sqrt(sum_s ratio_se^2) / S                 (settings use independent samples)
//   mean_ratio_lo/hi      bootstrap percentile interval of mean_ratio: B resamples; resample r draws, for every
//                         setting, N_s sample indices with replacement (the same draw for every head, so that the
//                         heads' replicates are joint), and recomputes mean_ratio; lo/hi are the (1-c)/2 and
//                         (1+c)/2 quantiles of the B replicates (linear interpolation, numpy's default)
//   top_k_frequency[l,h]  fraction of the B resamples in which the head is among the K largest replicate
//                         mean_ratio (ties by head index, NaN last: the order of finish_scores)
// Resample r uses its own generator, mt19937_64(splitmix(seed ^ splitmix(r + 1))), drawing indices by rejection,
// so the statistics depend only on the values, the seed and B, never on threads or ranks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hs::pear {

struct SampleData {
    int32_t S = 0, L = 0, H = 0, n_max = 0;
    std::vector<int32_t> n;           // [S]: N_s (<= n_max)
    std::vector<float> pi_tilde;      // [S, L, H, n_max]: entries b >= N_s unused
    std::vector<float> pi_clean;      // [S, n_max]
    size_t at(int32_t s, int32_t l, int32_t h) const { return ((size_t(s) * L + l) * H + h) * size_t(n_max); }
};

struct BootstrapOptions {
    int32_t resamples = 1000;
    uint64_t seed = 1;
    double confidence = 0.95;
    int32_t top_k = 1;
};

struct HeadStats {
    BootstrapOptions bootstrap;
    std::vector<double> pi_ablated_se;    // [S, L, H]
    std::vector<double> ratio_se;         // [S, L, H]
    std::vector<double> mean_ratio;       // [L, H] (from the samples; equals the sweep's mean_ratio)
    std::vector<double> mean_ratio_se;    // [L, H]
    std::vector<double> mean_ratio_lo;    // [L, H]
    std::vector<double> mean_ratio_hi;    // [L, H]
    std::vector<double> top_k_frequency;  // [L, H]
};

HeadStats head_stats(const SampleData& data, const BootstrapOptions& options);

// The quantile q of sorted values (linear interpolation between order statistics, numpy's default "linear").
double quantile_sorted(const std::vector<double>& sorted, double q);

// The K largest of `scores` as a 0/1 mask (ties by index, NaN last).
std::vector<uint8_t> top_k_mask(const std::vector<double>& scores, int32_t k);

}  // namespace hs::pear

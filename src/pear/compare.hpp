// pear/compare.hpp: how far two or more sweeps agree (seeds, modes, devices, precisions, models of one shape).
//
// For every pair of files (A, B), on the per-head score mean_ratio [L,H]:
//   spearman   Spearman rank correlation (Pearson correlation of the ranks, ties given their mean rank)
//   jaccard    |top-K(A) n top-K(B)| / |top-K(A) u top-K(B)| (top-K: the K largest, ties by head index)
//   changes    the heads with the largest |B - A|: (layer, head, A, B, B - A, and the standard error of the
//              difference sqrt(se_A^2 + se_B^2) when both files have per-sample values)
// and over all files: per head, the fraction of files whose top K holds it (stability over seeds or other
// conditions) and the mean over files of the bootstrap top-K frequency (absent unless every file has per-sample
// values). The files must have the same n_layer, n_head and (N, n) settings, and the same mode unless
// allow_modes; they must be complete. Errors name both files and the difference.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hs::pear {

struct CompareOptions {
    int32_t top_k = 0;          // 0: the files' own top_k (they must agree), else this K
    int32_t changes = 10;       // how many of the largest changes per pair
    bool allow_modes = false;   // compare files of different scoring modes (path vs attribution, ...)
    int32_t resamples = 1000;   // bootstrap resamples for the top-K frequency when K differs from the stored one
};

struct CompareFile {
    std::string path;
    std::string mode, model_name, device;
    uint64_t seed = 0;
    int32_t format_version = 0;
    bool has_samples = false;
    std::vector<double> mean_ratio;       // [L*H]
    std::vector<double> mean_ratio_se;    // [L*H] or empty when absent
    std::vector<double> top_k_frequency;  // [L*H] bootstrap frequency for the compared K, or empty when absent
};

struct HeadChange {
    int32_t layer = 0, head = 0;
    double a = 0, b = 0, diff = 0;
    double se = -1;  // standard error of the difference; < 0: absent
};

struct PairComparison {
    size_t a = 0, b = 0;  // indices into CompareResult::files
    double spearman = 0;
    double jaccard = 0;
    int32_t top_k_common = 0;
    std::vector<HeadChange> changes;
};

struct HeadStability {
    int32_t layer = 0, head = 0;
    double file_frequency = 0;        // fraction of files with the head in their top K
    double bootstrap_frequency = -1;  // mean over files of the bootstrap top-K frequency; < 0: absent
    double mean_score = 0;            // mean over files of mean_ratio
};

struct CompareResult {
    int32_t n_layer = 0, n_head = 0, top_k = 0;
    std::vector<CompareFile> files;
    std::vector<PairComparison> pairs;
    std::vector<HeadStability> stability;  // heads in any file's top K, most stable first
};

CompareResult compare_sweeps(const std::vector<std::string>& paths, const CompareOptions& options);

// Spearman's rho of two equally long vectors (average ranks for ties); NaN when either is constant.
double spearman(const std::vector<double>& a, const std::vector<double>& b);
// Jaccard index of two 0/1 masks.
double jaccard(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);

std::string compare_table(const CompareResult& r);  // human-readable, several lines
std::string compare_json(const CompareResult& r);   // one JSON object on one line (no newline)

}  // namespace hs::pear

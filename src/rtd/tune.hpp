// rtd/tune.hpp: choosing RTD's temperature T on a dev split made from the training data itself, leave-item-out:
// evenly spaced datastore entries are the queries, and each query's own item (its option rotations) is removed
// from its neighbours. No forward passes; the test split is never seen.
//
// The grid is relative to the scale of the hidden states: T = D * 2^j, j = -8..4, with D the median squared
// distance to the k-th neighbour over the queries. The T with the best accuracy of argmax r wins (the smallest on
// ties); MH-RTD is tuned the same way with T / n_head per head slice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rtd/datastore.hpp"
#include "rtd/search.hpp"

namespace hs::rtd {

struct TuneResult {
    int64_t queries = 0;
    int32_t k = 0;
    double D = 0;                        // the scale
    std::vector<double> factors, T;      // T = factors * D
    std::vector<double> acc, acc_mh;     // leave-item-out accuracy per T
    size_t best = 0, best_mh = 0;
    std::string report() const;          // one line for the file's tune_report
};

TuneResult tune_temperature(const Datastore& ds, int32_t k, int64_t max_queries, IndexKind kind = IndexKind::FLAT,
                            const std::string& what = "datastore");

}  // namespace hs::rtd

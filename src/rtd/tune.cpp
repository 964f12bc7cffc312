#include "rtd/tune.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "util/error.hpp"

namespace hs::rtd {

namespace {

// Accuracy of argmax r for each T; nbs[h] = the over-fetched neighbours of every query in head slice h (one
// element: the full key). The first k neighbours from other items count.
std::vector<double> loo_accuracy(const std::vector<Neighbours>& nbs, const std::vector<int64_t>& q, const Datastore& ds,
                                 int32_t k, const std::vector<double>& Ts, bool mh) {
    std::vector<double> acc(Ts.size(), 0.0);
    const double H = double(nbs.size());
    for (size_t qi = 0; qi < q.size(); ++qi) {
        const int32_t item = ds.items[size_t(q[qi])], gold = ds.labels[size_t(q[qi])];
        std::vector<std::vector<float>> d(nbs.size());
        std::vector<std::vector<int64_t>> id(nbs.size());
        for (size_t h = 0; h < nbs.size(); ++h) {
            const Neighbours& nb = nbs[h];
            for (int64_t j = 0; j < nb.k && int32_t(id[h].size()) < k; ++j) {
                const int64_t e = nb.ids[size_t(int64_t(qi) * nb.k + j)];
                if (ds.items[size_t(e)] == item) continue;
                d[h].push_back(nb.dist[size_t(int64_t(qi) * nb.k + j)]);
                id[h].push_back(e);
            }
        }
        for (size_t t = 0; t < Ts.size(); ++t) {
            std::vector<double> r(size_t(ds.info.n_labels), 0.0);
            for (size_t h = 0; h < nbs.size(); ++h) {
                const auto rh = label_distribution(d[h].data(), id[h].data(), int64_t(id[h].size()), ds.labels.data(),
                                                   ds.info.n_labels, mh ? Ts[t] / H : Ts[t]);
                for (size_t y = 0; y < r.size(); ++y) r[y] += rh[y];
            }
            acc[t] += argmax(r) == size_t(gold) ? 1.0 : 0.0;
        }
    }
    for (double& a : acc) a /= double(q.size());
    return acc;
}

}  // namespace

TuneResult tune_temperature(const Datastore& ds, int32_t k, int64_t max_queries, IndexKind kind, const std::string& what) {
    TuneResult res;
    res.k = k;
    int64_t per_item = 0;  // the most entries one item has: how many neighbours to over-fetch
    std::vector<int64_t> count;
    for (int32_t it : ds.items) {
        check(it >= 0, what, ": negative item index");
        if (size_t(it) >= count.size()) count.resize(size_t(it) + 1, 0);
        per_item = std::max(per_item, ++count[size_t(it)]);
    }
    const int64_t kk = int64_t(k) + per_item;
    check(k >= 1 && kk <= ds.size(), what, ": k = ", k, " plus ", per_item, " same-item entries is larger than the datastore (",
          ds.size(), " entries)");
    const int64_t nq = std::min<int64_t>(max_queries, ds.size());
    std::vector<int64_t> q;
    std::vector<float> qkeys;
    for (int64_t i = 0; i < nq; ++i) {
        q.push_back(i * ds.size() / nq);
        qkeys.insert(qkeys.end(), ds.keys.begin() + q.back() * ds.info.d, ds.keys.begin() + (q.back() + 1) * ds.info.d);
    }
    const RtdIndex index(ds.keys.data(), ds.labels.data(), ds.size(), ds.info.d, ds.info.n_labels, ds.info.n_head, true,
                         true, kind);
    const std::vector<Neighbours> full = {index.search(qkeys.data(), nq, kk, what)};
    const std::vector<Neighbours> heads = index.search_heads(qkeys.data(), nq, kk, what);
    std::vector<float> kth;
    for (int64_t i = 0; i < nq; ++i) kth.push_back(full[0].dist[size_t(i * kk + k - 1)]);
    std::nth_element(kth.begin(), kth.begin() + int64_t(kth.size() / 2), kth.end());
    res.D = std::max(double(kth[kth.size() / 2]), 1e-12);
    for (int j = -8; j <= 4; ++j) {
        res.factors.push_back(std::ldexp(1.0, j));
        res.T.push_back(res.factors.back() * res.D);
    }
    res.queries = nq;
    res.acc = loo_accuracy(full, q, ds, k, res.T, false);
    res.acc_mh = loo_accuracy(heads, q, ds, k, res.T, true);
    res.best = size_t(std::max_element(res.acc.begin(), res.acc.end()) - res.acc.begin());
    res.best_mh = size_t(std::max_element(res.acc_mh.begin(), res.acc_mh.end()) - res.acc_mh.begin());
    return res;
}

std::string TuneResult::report() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "leave-item-out on %lld train entries, k=%d, D=%.6g, grid T=D*2^j j=-8..4; ",
                  (long long)queries, k, D);
    std::string s = buf;
    for (size_t t = 0; t < T.size(); ++t) {
        std::snprintf(buf, sizeof buf, "%s%.4g:%.4f/%.4f", t ? "," : "acc(T/D:rtd/mh)=", factors[t], acc[t], acc_mh[t]);
        s += buf;
    }
    return s;
}

}  // namespace hs::rtd

#include "rtd/search.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>
#include <unordered_set>

#include <cblas.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>

#include "backend/backend.hpp"
#include "util/error.hpp"

namespace hs::rtd {

IndexKind parse_index_kind(const std::string& s) {
    if (s == "flat") return IndexKind::FLAT;
    if (s == "naive") return IndexKind::NAIVE;
    if (s == "hnsw") return IndexKind::HNSW;
    if (s == "ivf") return IndexKind::IVF;
    if (s == "blas") return IndexKind::BLAS;
    if (s == "device") return IndexKind::DEVICE;
    fail("index kind \"", s, "\" is not flat, naive, hnsw, ivf, blas or device");
}

const char* index_kind_name(IndexKind k) {
    switch (k) {
        case IndexKind::FLAT: return "flat";
        case IndexKind::NAIVE: return "naive";
        case IndexKind::HNSW: return "hnsw";
        case IndexKind::IVF: return "ivf";
        case IndexKind::BLAS: return "blas";
        case IndexKind::DEVICE: return "device";
    }
    return "?";
}

namespace {

void check_k(int64_t k, int64_t n, const std::string& what) {
    check(k >= 1, what, ": k = ", k, " must be >= 1");
    check(n > 0, what, ": the datastore is empty");
    check(k <= n, what, ": k = ", k, " is larger than the datastore (", n, " entries)");
}

}  // namespace

void sort_rows(Neighbours& nb) {
    std::vector<size_t> order(static_cast<size_t>(nb.k));
    std::vector<float> d(static_cast<size_t>(nb.k));
    std::vector<int64_t> id(static_cast<size_t>(nb.k));
    for (int64_t q = 0; q < nb.nq; ++q) {
        float* dr = nb.dist.data() + q * nb.k;
        int64_t* ir = nb.ids.data() + q * nb.k;
        std::iota(order.begin(), order.end(), size_t(0));
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
            return dr[a] != dr[b] ? dr[a] < dr[b] : ir[a] < ir[b];
        });
        for (size_t j = 0; j < order.size(); ++j) d[j] = dr[order[j]], id[j] = ir[order[j]];
        std::copy(d.begin(), d.end(), dr);
        std::copy(id.begin(), id.end(), ir);
    }
}

Neighbours naive_search(const float* keys, int64_t n, int32_t d, const float* queries, int64_t nq, int64_t k) {
    check_k(k, n, "naive search");
    Neighbours nb{nq, k, std::vector<float>(size_t(nq * k)), std::vector<int64_t>(size_t(nq * k))};
    std::vector<std::pair<float, int64_t>> all(static_cast<size_t>(n));
    for (int64_t q = 0; q < nq; ++q) {
        const float* x = queries + q * d;
        for (int64_t i = 0; i < n; ++i) {
            const float* y = keys + i * d;
            double s = 0;
            for (int32_t c = 0; c < d; ++c) {
                const double t = double(x[c]) - double(y[c]);
                s += t * t;
            }
            all[size_t(i)] = {float(s), i};
        }
        std::partial_sort(all.begin(), all.begin() + k, all.end());
        for (int64_t j = 0; j < k; ++j) {
            nb.dist[size_t(q * k + j)] = all[size_t(j)].first;
            nb.ids[size_t(q * k + j)] = all[size_t(j)].second;
        }
    }
    return nb;
}

// The device kind's keys in a backend's memory, uploaded at the first search after an add.
struct DeviceKeys {
    Backend* backend = nullptr;
    float* data = nullptr;     // [n, d] in the backend's memory
    int64_t n = 0;             // keys uploaded (0: none yet, or stale after an add)
    float* scratch = nullptr;  // queries [block, d] then products [block, n]
    int64_t scratch_floats = 0;
    std::mutex m;              // search() is const and may run on several threads
    ~DeviceKeys() {
        if (!backend) return;
        if (data) backend->release(data);
        if (scratch) backend->release(scratch);
    }
};

struct KnnIndex::Impl {
    std::unique_ptr<faiss::Index> index;   // flat/hnsw/ivf
    std::unique_ptr<faiss::IndexFlatL2> quantizer;   // ivf's coarse quantizer (must outlive index)
    std::vector<float> keys;               // naive, blas, device: [n, d] (host)
    std::vector<float> norms;              // blas, device: |k|^2 [n]
    std::unique_ptr<DeviceKeys> device;    // device
};

namespace {

// Queries per GEMM: at most 64, and at most 2^24 products in flight.
int64_t query_block(int64_t n) {
    return std::max<int64_t>(1, std::min<int64_t>(64, (int64_t(1) << 24) / std::max<int64_t>(n, 1)));
}

// Rows q0 .. q0+m of nb from their products dots[m, n] = Q . K^T. The norm form |k_i|^2 + |q|^2 - 2 q.k_i is fast
// but loses digits where |q - k_i| is small against |q| and |k_i| (near-duplicate keys, a query that is a key), so
// it only chooses candidates: every key whose norm-form distance is within twice its error bound of the k-th
// smallest (bound: 4 (d + 4) u (|q|^2 + max |k|^2), u = 2^-24, above the fp32 error of the norms and the dot
// product); those are re-ranked by their exact distance (differences squared, double sums, as naive_search), so
// the result is naive_search's, ordered by (distance, id).
void select_rows(const float* dots, const std::vector<float>& keys, const std::vector<float>& norms, float max_norm,
                 int32_t d, const float* queries, int64_t q0, int64_t m, int64_t k,
                 std::vector<std::pair<float, int64_t>>& row, Neighbours& nb) {
    const int64_t n = int64_t(norms.size());
    std::vector<std::pair<double, int64_t>> exact;
    for (int64_t a = 0; a < m; ++a) {
        const float* q = queries + (q0 + a) * d;
        float qn = 0;
        for (int32_t c = 0; c < d; ++c) qn += q[c] * q[c];
        const float* dr = dots + a * n;
        for (int64_t i = 0; i < n; ++i) row[size_t(i)] = {norms[size_t(i)] + qn - 2 * dr[i], i};
        std::nth_element(row.begin(), row.begin() + (k - 1), row.end());
        const double bound = 4.0 * (d + 4) * std::ldexp(1.0, -24) * (double(qn) + double(max_norm));
        const double limit = double(row[size_t(k - 1)].first) + 2 * bound;
        exact.clear();
        for (int64_t i = 0; i < n; ++i) {
            if (double(row[size_t(i)].first) > limit) continue;
            const int64_t id = row[size_t(i)].second;
            const float* key = keys.data() + id * d;
            double s = 0;
            for (int32_t c = 0; c < d; ++c) {
                const double t = double(q[c]) - double(key[c]);
                s += t * t;
            }
            exact.push_back({s, id});
        }
        std::sort(exact.begin(), exact.end());  // (distance, id)
        for (int64_t j = 0; j < k; ++j) {
            nb.dist[size_t((q0 + a) * k + j)] = float(exact[size_t(j)].first);
            nb.ids[size_t((q0 + a) * k + j)] = exact[size_t(j)].second;
        }
    }
}

// Exact top-k by one GEMM per block of queries, then a selection.
Neighbours blas_search(const std::vector<float>& keys, const std::vector<float>& norms, int32_t d,
                       const float* queries, int64_t nq, int64_t k) {
    const int64_t n = int64_t(norms.size());
    const float max_norm = norms.empty() ? 0.0f : *std::max_element(norms.begin(), norms.end());
    Neighbours nb{nq, k, std::vector<float>(size_t(nq * k)), std::vector<int64_t>(size_t(nq * k))};
    const int64_t block = query_block(n);
    std::vector<float> dots(static_cast<size_t>(block * n));
    std::vector<std::pair<float, int64_t>> row(static_cast<size_t>(n));
    for (int64_t q0 = 0; q0 < nq; q0 += block) {
        const int64_t m = std::min(block, nq - q0);
        // dots[m, n] = Q[m, d] . K[n, d]^T
        if (m == 1)  // one query (answer time): a matrix-vector product, OpenBLAS's GEMV kernel
            cblas_sgemv(CblasRowMajor, CblasNoTrans, int(n), d, 1.0f, keys.data(), d, queries + q0 * d, 1, 0.0f,
                        dots.data(), 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), d, 1.0f, queries + q0 * d, d,
                        keys.data(), d, 0.0f, dots.data(), int(n));
        select_rows(dots.data(), keys, norms, max_norm, d, queries, q0, m, k, row, nb);
    }
    return nb;
}

// The same with the products on the backend: keys uploaded once (again after an add), per block of queries one
// upload of [m, d], one GEMM (Backend::matmul: y = Q . K^T) and one download of [m, n].
Neighbours device_search(const std::vector<float>& keys, const std::vector<float>& norms, int32_t d,
                         DeviceKeys& dev, const float* queries, int64_t nq, int64_t k) {
    const int64_t n = int64_t(norms.size());
    const float max_norm = norms.empty() ? 0.0f : *std::max_element(norms.begin(), norms.end());
    std::lock_guard<std::mutex> g(dev.m);
    Backend& be = *dev.backend;
    if (dev.n != n) {
        if (dev.data) be.release(dev.data);
        dev.data = nullptr;
        dev.data = be.allocate(n * d);
        be.upload(keys.data(), dev.data, n * d);
        dev.n = n;
    }
    const int64_t block = query_block(n);
    const int64_t need = block * d + block * n;
    if (dev.scratch_floats < need) {
        if (dev.scratch) be.release(dev.scratch);
        dev.scratch = nullptr;
        dev.scratch = be.allocate(need);
        dev.scratch_floats = need;
    }
    Matrix K;
    K.data = dev.data;
    K.rows = n;
    K.cols = d;
    K.type = WeightType::F32;
    Neighbours nb{nq, k, std::vector<float>(size_t(nq * k)), std::vector<int64_t>(size_t(nq * k))};
    std::vector<float> dots(static_cast<size_t>(block * n));
    std::vector<std::pair<float, int64_t>> row(static_cast<size_t>(n));
    float* q_dev = dev.scratch;
    float* y_dev = dev.scratch + block * d;
    for (int64_t q0 = 0; q0 < nq; q0 += block) {
        const int64_t m = std::min(block, nq - q0);
        be.upload(queries + q0 * d, q_dev, m * d);
        be.matmul(q_dev, K, y_dev, m, false);
        be.download(y_dev, dots.data(), m * n);  // synchronous: the products are on the host after it
        select_rows(dots.data(), keys, norms, max_norm, d, queries, q0, m, k, row, nb);
    }
    return nb;
}

}  // namespace


KnnIndex::KnnIndex(IndexKind kind, int32_t d, const IndexOptions& options)
    : impl_(std::make_unique<Impl>()), kind_(kind), d_(d), opt_(options) {
    check(d > 0, "knn index: dimension ", d, " must be > 0");
    if (kind == IndexKind::FLAT) impl_->index = std::make_unique<faiss::IndexFlatL2>(d);
    if (kind == IndexKind::DEVICE) {
        check(options.backend != nullptr, "knn index: the device kind needs a backend (IndexOptions::backend)");
        impl_->device = std::make_unique<DeviceKeys>();
        impl_->device->backend = options.backend;
    }
    if (kind == IndexKind::HNSW) {
        auto h = std::make_unique<faiss::IndexHNSWFlat>(d, options.hnsw_m);
        h->hnsw.efSearch = options.ef_search;
        impl_->index = std::move(h);
    }
}

KnnIndex::~KnnIndex() = default;
KnnIndex::KnnIndex(KnnIndex&&) noexcept = default;
KnnIndex& KnnIndex::operator=(KnnIndex&&) noexcept = default;

void KnnIndex::add(const float* keys, int64_t n) {
    if (n <= 0) return;
    try {
        if (kind_ == IndexKind::NAIVE || kind_ == IndexKind::BLAS || kind_ == IndexKind::DEVICE) {
            impl_->keys.insert(impl_->keys.end(), keys, keys + n * d_);
            if (kind_ != IndexKind::NAIVE)
                for (int64_t i = 0; i < n; ++i) {
                    float s = 0;
                    for (int32_t c = 0; c < d_; ++c) s += keys[i * d_ + c] * keys[i * d_ + c];
                    impl_->norms.push_back(s);
                }
        } else if (kind_ == IndexKind::IVF) {
            check(n_ == 0, "knn index: ivf takes all keys in one add");
            const int32_t nlist = opt_.nlist > 0 ? opt_.nlist : std::max<int32_t>(1, int32_t(std::lround(std::sqrt(double(n)))));
            impl_->quantizer = std::make_unique<faiss::IndexFlatL2>(d_);
            auto ivf = std::make_unique<faiss::IndexIVFFlat>(impl_->quantizer.get(), d_, size_t(nlist));
            ivf->train(n, keys);
            ivf->nprobe = size_t(std::min(opt_.nprobe, nlist));
            impl_->index = std::move(ivf);
            impl_->index->add(n, keys);
        } else {
            impl_->index->add(n, keys);
        }
    } catch (const faiss::FaissException& e) {
        fail("knn index (", index_kind_name(kind_), "): faiss: ", e.what());
    }
    n_ += n;
}

void KnnIndex::reserve(int64_t n) {
    if (kind_ == IndexKind::FLAT) static_cast<faiss::IndexFlatL2*>(impl_->index.get())->codes.reserve(size_t(n) * size_t(d_) * 4);
    if (kind_ == IndexKind::NAIVE || kind_ == IndexKind::BLAS || kind_ == IndexKind::DEVICE)
        impl_->keys.reserve(size_t(n) * size_t(d_));
    if (kind_ == IndexKind::BLAS || kind_ == IndexKind::DEVICE) impl_->norms.reserve(size_t(n));
}

Neighbours KnnIndex::search(const float* queries, int64_t nq, int64_t k, const std::string& what) const {
    check_k(k, n_, what);
    if (kind_ == IndexKind::NAIVE) {
        Neighbours nb = naive_search(impl_->keys.data(), n_, d_, queries, nq, k);
        sort_rows(nb);
        return nb;
    }
    if (kind_ == IndexKind::BLAS) return blas_search(impl_->keys, impl_->norms, d_, queries, nq, k);
    if (kind_ == IndexKind::DEVICE)
        return device_search(impl_->keys, impl_->norms, d_, *impl_->device, queries, nq, k);
    Neighbours nb{nq, k, std::vector<float>(size_t(nq * k)), std::vector<int64_t>(size_t(nq * k))};
    try {
        impl_->index->search(nq, queries, k, nb.dist.data(), nb.ids.data());
    } catch (const faiss::FaissException& e) {
        fail(what, ": faiss search: ", e.what());
    }
    sort_rows(nb);
    return nb;
}

double recall_at_k(const Neighbours& approx, const Neighbours& exact) {
    check(approx.nq == exact.nq && approx.k == exact.k, "recall: shapes differ");
    if (exact.nq == 0) return 1.0;
    int64_t hit = 0;
    for (int64_t q = 0; q < exact.nq; ++q) {
        std::unordered_set<int64_t> s(exact.ids.begin() + q * exact.k, exact.ids.begin() + (q + 1) * exact.k);
        for (int64_t j = 0; j < approx.k; ++j) hit += s.count(approx.ids[size_t(q * approx.k + j)]);
    }
    return double(hit) / double(exact.nq * exact.k);
}

Neighbours merge_topk(const std::vector<Neighbours>& shards, int64_t k) {
    check(!shards.empty(), "merge_topk: no shards");
    const int64_t nq = shards[0].nq;
    int64_t total = 0;
    for (const Neighbours& s : shards) {
        check(s.nq == nq, "merge_topk: shards disagree on the number of queries");
        total += s.k;
    }
    check(k <= total, "merge_topk: k = ", k, " is larger than the shards' candidates (", total, ")");
    Neighbours out{nq, k, std::vector<float>(size_t(nq * k)), std::vector<int64_t>(size_t(nq * k))};
    std::vector<std::pair<float, int64_t>> cand;
    for (int64_t q = 0; q < nq; ++q) {
        cand.clear();
        for (const Neighbours& s : shards)
            for (int64_t j = 0; j < s.k; ++j) cand.emplace_back(s.dist[size_t(q * s.k + j)], s.ids[size_t(q * s.k + j)]);
        std::partial_sort(cand.begin(), cand.begin() + k, cand.end());
        for (int64_t j = 0; j < k; ++j) {
            out.dist[size_t(q * k + j)] = cand[size_t(j)].first;
            out.ids[size_t(q * k + j)] = cand[size_t(j)].second;
        }
    }
    return out;
}

std::vector<double> label_distribution(const float* dist, const int64_t* ids, int64_t k, const int32_t* labels,
                                       int32_t n_labels, double T) {
    check(T > 0 && std::isfinite(T), "RTD: temperature T = ", T, " must be > 0");
    std::vector<double> r(size_t(n_labels), 0.0);
    if (k <= 0) return r;
    // softmax(-d/T), shifted by the smallest distance so that exp never underflows to all-zero.
    const double d0 = *std::min_element(dist, dist + k);
    std::vector<double> w(static_cast<size_t>(k));
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += (w[size_t(j)] = std::exp(-(double(dist[j]) - d0) / T));
    for (int64_t j = 0; j < k; ++j) {
        const int32_t y = labels[ids[j]];
        check(y >= 0 && y < n_labels, "RTD: label ", y, " out of range 0..", n_labels - 1);
        r[size_t(y)] += w[size_t(j)] / sum;
    }
    return r;
}

std::vector<double> softmax(const std::vector<double>& logits) {
    std::vector<double> p(logits.size());
    if (logits.empty()) return p;
    const double m = *std::max_element(logits.begin(), logits.end());
    double s = 0;
    for (size_t i = 0; i < p.size(); ++i) s += (p[i] = std::exp(logits[i] - m));
    for (double& x : p) x /= s;
    return p;
}

std::vector<double> fuse(const std::vector<double>& r, const std::vector<double>& p_lm, double lambda) {
    check(r.size() == p_lm.size(), "RTD fusion: ", r.size(), " reference labels vs ", p_lm.size(), " LM labels");
    check(lambda >= 0 && lambda <= 1, "RTD fusion: lambda = ", lambda, " must be in [0, 1]");
    std::vector<double> f(r.size());
    for (size_t i = 0; i < r.size(); ++i) f[i] = lambda * r[i] + (1 - lambda) * p_lm[i];
    return f;
}

size_t argmax(const std::vector<double>& v) {
    return size_t(std::max_element(v.begin(), v.end()) - v.begin());
}

std::vector<float> head_slice(const float* keys, int64_t n, int32_t d, int32_t n_head, int32_t h) {
    check(n_head > 0 && d % n_head == 0 && h >= 0 && h < n_head, "head slice: d = ", d, " is not split by n_head = ",
          n_head, " (head ", h, ")");
    const int32_t hd = d / n_head;
    std::vector<float> out(size_t(n) * size_t(hd));
    for (int64_t i = 0; i < n; ++i) std::copy_n(keys + i * d + int64_t(h) * hd, hd, out.data() + i * hd);
    return out;
}

RtdIndex::RtdIndex(const float* keys, const int32_t* labels, int64_t n, int32_t d, int32_t n_labels, int32_t n_head,
                   bool single, bool multi_head, IndexKind kind, const IndexOptions& options)
    : labels_(labels, labels + n), d_(d), n_labels_(n_labels), n_head_(n_head) {
    if (single) {
        full_ = std::make_unique<KnnIndex>(kind, d, options);
        full_->add(keys, n);
    }
    if (multi_head) {
        check(n_head > 0 && d % n_head == 0, "MH-RTD: d = ", d, " is not divisible by n_head = ", n_head);
        for (int32_t h = 0; h < n_head; ++h) {
            heads_.emplace_back(kind, d / n_head, options);
            const std::vector<float> s = head_slice(keys, n, d, n_head, h);
            heads_.back().add(s.data(), n);
        }
    }
}

Neighbours RtdIndex::search(const float* queries, int64_t nq, int64_t k, const std::string& what) const {
    check(full_ != nullptr, what, ": single-head index not built");
    return full_->search(queries, nq, k, what);
}

std::vector<Neighbours> RtdIndex::search_heads(const float* queries, int64_t nq, int64_t k, const std::string& what) const {
    check(!heads_.empty(), what, ": multi-head index not built");
    std::vector<Neighbours> out;
    for (int32_t h = 0; h < n_head_; ++h) {
        const std::vector<float> q = head_slice(queries, nq, d_, n_head_, h);
        out.push_back(heads_[size_t(h)].search(q.data(), nq, k, what));
    }
    return out;
}

std::vector<double> RtdIndex::rtd(const float* query, int64_t k, double T, const std::string& what) const {
    const Neighbours nb = search(query, 1, k, what);
    return label_distribution(nb.dist.data(), nb.ids.data(), k, labels_.data(), n_labels_, T);
}

std::vector<double> RtdIndex::mh_rtd(const float* query, int64_t k, double T, const std::string& what) const {
    std::vector<double> r(size_t(n_labels_), 0.0);
    for (const Neighbours& nb : search_heads(query, 1, k, what)) {
        const std::vector<double> rh =
            label_distribution(nb.dist.data(), nb.ids.data(), k, labels_.data(), n_labels_, T / n_head_);
        for (size_t y = 0; y < r.size(); ++y) r[y] += rh[y] / n_head_;
    }
    return r;
}

}  // namespace hs::rtd

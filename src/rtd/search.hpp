// rtd/search.hpp: k-nearest-neighbour search over datastore keys and RTD's label distributions
// (shared/docs/methods.md §3 steps 2-5).
//
// Distances are squared L2 throughout (as faiss's IndexFlatL2 returns and the reference code's T applies to).
// Each result row is ordered by (distance, id) ascending, so that merging shards gives the unsharded answer.
// Index kinds:
//   flat   faiss::IndexFlatL2: exact, BLAS-backed for query batches (the default; FAISS is what the reference
//          code uses, well kept, and in Debian as libfaiss-dev)
//   naive  our own exact loops (double accumulation): the reference for tests
//   blas   our own exact search by one OpenBLAS GEMM: d = |k|^2 + |q|^2 - 2 q.k (norms kept; the form faiss uses
//          for query batches, and the one a cuBLAS search would use), then an O(n) top-k selection
//   device the blas form with the products q.k on a Backend (IndexOptions::backend): the keys live in the backend's
//          memory and one GEMM per block of queries runs there (cuBLAS, fp32 in and out, no TF32, on the CUDA
//          backend; the CPU backend's own GEMM otherwise); only the [queries, n] products come back for the norms
//          and the top-k selection on the host. `headsweep eval --device cuda` uses it unless --rtd-index is given.
//   hnsw   faiss::IndexHNSWFlat (M = 32, efSearch from options): approximate, for large datastores
//   ivf    faiss::IndexIVFFlat (nlist ~ sqrt(M), nprobe from options): approximate, trained on the keys
// Approximate kinds report recall@k against flat (recall_at_k).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace hs {
class Backend;
}

namespace hs::rtd {

struct Neighbours {
    int64_t nq = 0, k = 0;
    std::vector<float> dist;     // [nq, k] squared L2, ascending
    std::vector<int64_t> ids;    // [nq, k] entry indices (global: offset added by the caller for shards)
};

enum class IndexKind { FLAT, NAIVE, HNSW, IVF, BLAS, DEVICE };
IndexKind parse_index_kind(const std::string& s);   // flat | naive | hnsw | ivf | blas | device
const char* index_kind_name(IndexKind k);

struct IndexOptions {
    int32_t hnsw_m = 32, ef_search = 128;
    int32_t nlist = 0;           // ivf: 0 = round(sqrt(n)) (at least 1)
    int32_t nprobe = 16;
    Backend* backend = nullptr;  // device: where the keys live and the products run (must outlive the index)
};

// Exact top-k by plain loops: reference for the tests. Throws when k > n or k < 1.
Neighbours naive_search(const float* keys, int64_t n, int32_t d, const float* queries, int64_t nq, int64_t k);

// Sorts each row by (distance, id) (faiss returns ties in heap order).
void sort_rows(Neighbours& nb);

class KnnIndex {
public:
    KnnIndex(IndexKind kind, int32_t d, const IndexOptions& options = {});
    ~KnnIndex();
    KnnIndex(KnnIndex&&) noexcept;
    KnnIndex& operator=(KnnIndex&&) noexcept;
    // keys [n, d]; approximate kinds are trained on the first add (ivf).
    void add(const float* keys, int64_t n);
    void reserve(int64_t n);   // room for n keys in total (flat, naive, blas): block-wise adds never reallocate
    int64_t size() const { return n_; }
    int32_t dim() const { return d_; }
    IndexKind kind() const { return kind_; }
    // queries [nq, d]; k <= size() (hs::Error otherwise, naming `what`).
    Neighbours search(const float* queries, int64_t nq, int64_t k, const std::string& what = "datastore") const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    IndexKind kind_;
    int32_t d_;
    int64_t n_ = 0;
    IndexOptions opt_;
};

// Fraction of the exact top-k ids found in the approximate top-k (averaged over queries).
double recall_at_k(const Neighbours& approx, const Neighbours& exact);

// Merges per-shard results (ids already global) into the global top-k, ordered by (distance, id).
Neighbours merge_topk(const std::vector<Neighbours>& shards, int64_t k);

// r[y] = sum of softmax(-d_j / T) over the neighbours j with label y (one query row of nb). T > 0.
std::vector<double> label_distribution(const float* dist, const int64_t* ids, int64_t k, const int32_t* labels,
                                       int32_t n_labels, double T);

// softmax over the label tokens' logits.
std::vector<double> softmax(const std::vector<double>& logits);
// lambda * r + (1 - lambda) * p_lm; lambda in [0, 1].
std::vector<double> fuse(const std::vector<double>& r, const std::vector<double>& p_lm, double lambda);
size_t argmax(const std::vector<double>& v);   // first maximum

// Column slice h of keys [n, d] split into n_head slices of d / n_head dims: [n, d / n_head] contiguous.
std::vector<float> head_slice(const float* keys, int64_t n, int32_t d, int32_t n_head, int32_t h);

// A datastore's keys and labels ready for RTD queries: the full-key index (single-head RTD) and, for MH-RTD, one
// index per head slice.
class RtdIndex {
public:
    RtdIndex(const float* keys, const int32_t* labels, int64_t n, int32_t d, int32_t n_labels, int32_t n_head,
             bool single, bool multi_head, IndexKind kind = IndexKind::FLAT, const IndexOptions& options = {});
    int64_t size() const { return int64_t(labels_.size()); }
    // RTD: r over the labels from the k nearest full keys with temperature T.
    std::vector<double> rtd(const float* query, int64_t k, double T, const std::string& what = "datastore") const;
    // MH-RTD: each head slice searched with temperature T / n_head; the per-head r summed, then divided by n_head
    // (so that it sums to 1 for the fusion; the argmax is the reference code's sum).
    std::vector<double> mh_rtd(const float* query, int64_t k, double T, const std::string& what = "datastore") const;
    // The raw neighbours (for tuning: several T on one search).
    Neighbours search(const float* queries, int64_t nq, int64_t k, const std::string& what = "datastore") const;
    std::vector<Neighbours> search_heads(const float* queries, int64_t nq, int64_t k,
                                         const std::string& what = "datastore") const;
    const std::vector<int32_t>& labels() const { return labels_; }
    int32_t n_labels() const { return n_labels_; }
    int32_t n_head() const { return n_head_; }

private:
    std::vector<int32_t> labels_;
    int32_t d_, n_labels_, n_head_;
    std::unique_ptr<KnnIndex> full_;
    std::vector<KnnIndex> heads_;
};

}  // namespace hs::rtd

#include "rtd/sharded.hpp"

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/serialization/vector.hpp>

#include "util/error.hpp"

namespace hs::rtd {

void shard_range(int64_t n, int rank, int ranks, int64_t& begin, int64_t& end) {
    begin = n * rank / ranks;
    end = n * (rank + 1) / ranks;
}

Neighbours sharded_search(const boost::mpi::communicator& comm, const KnnIndex& shard, int64_t offset,
                          const float* queries, int64_t nq, int64_t k) {
    int64_t total = 0;
    boost::mpi::all_reduce(comm, shard.size(), total, std::plus<int64_t>());
    check(k >= 1 && k <= total, "sharded search: k = ", k, " is larger than the datastore (", total,
          " entries over ", comm.size(), " ranks)");
    const int64_t kk = std::min<int64_t>(k, shard.size());
    // One message per rank: [nq * kk distances as doubles, then nq * kk global ids]; kk = 0 for an empty shard.
    std::vector<double> mine;
    if (kk > 0) {
        const Neighbours nb = shard.search(queries, nq, kk, "shard");
        mine.reserve(size_t(2 * nq * kk + 1));
        mine.push_back(double(kk));
        for (float d : nb.dist) mine.push_back(double(d));
        for (int64_t id : nb.ids) mine.push_back(double(id + offset));
    } else {
        mine.push_back(0.0);
    }
    std::vector<std::vector<double>> all;
    boost::mpi::gather(comm, mine, all, 0);
    if (comm.rank() != 0) return {};
    std::vector<Neighbours> parts;
    for (const std::vector<double>& m : all) {
        const int64_t pk = int64_t(m.at(0));
        if (pk == 0) continue;
        Neighbours p{nq, pk, std::vector<float>(size_t(nq * pk)), std::vector<int64_t>(size_t(nq * pk))};
        for (int64_t i = 0; i < nq * pk; ++i) {
            p.dist[size_t(i)] = float(m[size_t(1 + i)]);
            p.ids[size_t(i)] = int64_t(m[size_t(1 + nq * pk + i)]);
        }
        parts.push_back(std::move(p));
    }
    return merge_topk(parts, k);
}

}  // namespace hs::rtd

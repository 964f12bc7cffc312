// rtd/sharded.hpp: a datastore sharded over MPI ranks (how one larger than a node's memory is served). Every rank
// holds a contiguous shard of the entries (global ids offset..offset+size-1) and the same queries; each searches
// its shard for its own top-min(k, shard size), rank 0 gathers the candidates and merges them by (distance, id).
// With an exact index this is exactly the unsharded top-k (distances of an entry do not depend on the other
// entries; ties are broken by the global id on both sides).
#pragma once

#include <cstdint>

#include "rtd/search.hpp"

namespace boost::mpi {
class communicator;
}

namespace hs::rtd {

// The shard of rank r of R over n entries: [n*r/R, n*(r+1)/R).
void shard_range(int64_t n, int rank, int ranks, int64_t& begin, int64_t& end);

// Collective. Returns the merged top-k on rank 0 (ids global), an empty Neighbours elsewhere. Throws on every
// rank when k exceeds the total size.
Neighbours sharded_search(const boost::mpi::communicator& comm, const KnnIndex& shard, int64_t offset,
                          const float* queries, int64_t nq, int64_t k);

}  // namespace hs::rtd

// dist/node_file.hpp: a file read once per node and shared by the node's ranks (MPI shared memory).
//
// The ranks of `comm` that share a node (MPI_Comm_split_type SHARED) make one MPI shared-memory window the size
// of the file; the node's first rank reads the file into it (one read from shared storage per node, not one per
// rank) and the others use the same bytes. The distributed sweep builds every rank's model from them
// (LoadOptions::file_bytes) and drops the copy once the model is loaded (the weights are copies).
// Collective over `comm` (constructor and destructor); errors (a missing file, a failed read) reach every rank of
// the node as the same hs::Error naming the file.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include <boost/mpi/communicator.hpp>

namespace hs::dist {

class NodeSharedFile {
public:
    NodeSharedFile(const boost::mpi::communicator& comm, const std::string& path);
    ~NodeSharedFile();  // collective over the node (MPI_Win_free)
    NodeSharedFile(const NodeSharedFile&) = delete;
    NodeSharedFile& operator=(const NodeSharedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    int node_ranks() const { return node_size_; }
    bool reader() const { return node_rank_ == 0; }  // this rank read the file

private:
    MPI_Comm node_ = MPI_COMM_NULL;
    MPI_Win win_ = MPI_WIN_NULL;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    int node_rank_ = 0, node_size_ = 1;
};

}  // namespace hs::dist

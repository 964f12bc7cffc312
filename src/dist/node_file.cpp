// A file read once per node, shared through an MPI shared-memory window (node_file.hpp).
#include "dist/node_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "util/error.hpp"

namespace hs::dist {

namespace {

// The node's verdict: rank 0 of the node broadcasts its error text (empty: success); everyone throws it.
void node_verdict(MPI_Comm node, std::string& error) {
    int n = int(error.size());
    MPI_Bcast(&n, 1, MPI_INT, 0, node);
    error.resize(size_t(n));
    if (n > 0) MPI_Bcast(error.data(), n, MPI_CHAR, 0, node);
}

}  // namespace

NodeSharedFile::NodeSharedFile(const boost::mpi::communicator& comm, const std::string& path) {
    MPI_Comm_split_type(MPI_Comm(comm), MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &node_);
    MPI_Comm_rank(node_, &node_rank_);
    MPI_Comm_size(node_, &node_size_);
    // 1. The size (and whether the file can be opened at all), from the node's reader.
    std::string error;
    int fd = -1;
    uint64_t size = 0;
    if (node_rank_ == 0) {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        struct stat st {};
        if (fd < 0)
            error = path + ": cannot open: " + std::strerror(errno);
        else if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
            error = path + ": not a regular file";
        else
            size = uint64_t(st.st_size);
    }
    node_verdict(node_, error);
    if (!error.empty()) {
        if (fd >= 0) ::close(fd);
        MPI_Comm_free(&node_);
        throw Error(error);
    }
    MPI_Bcast(&size, 1, MPI_UINT64_T, 0, node_);
    size_ = size_t(size);
    // 2. One window of the file's size, all of it on the reader's side; everyone maps the reader's segment.
    void* base = nullptr;
    MPI_Win_allocate_shared(MPI_Aint(node_rank_ == 0 ? size_ : 0), 1, MPI_INFO_NULL, node_, &base, &win_);
    // A passive-target epoch for the whole life of the copy: the reader's stores are made visible with
    // MPI_Win_sync on both sides of the node's broadcast (the unified memory model of shared windows).
    MPI_Win_lock_all(MPI_MODE_NOCHECK, win_);
    if (node_rank_ == 0) {
        uint8_t* p = static_cast<uint8_t*>(base);
        size_t done = 0;
        while (done < size_ && error.empty()) {
            const ssize_t n = ::pread(fd, p + done, size_ - done, off_t(done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) error = path + ": read failed after " + std::to_string(done) + " of " + std::to_string(size_) +
                                " bytes: " + (n < 0 ? std::strerror(errno) : "unexpected end of file");
            else done += size_t(n);
        }
        ::close(fd);
        data_ = p;
        MPI_Win_sync(win_);
    }
    node_verdict(node_, error);  // also orders the reader's writes before everyone's reads
    MPI_Win_sync(win_);
    if (!error.empty()) {
        MPI_Win_unlock_all(win_);
        MPI_Win_free(&win_);
        MPI_Comm_free(&node_);
        throw Error(error);
    }
    if (node_rank_ != 0) {
        MPI_Aint bytes = 0;
        int disp = 1;
        void* q = nullptr;
        MPI_Win_shared_query(win_, 0, &bytes, &disp, &q);
        data_ = static_cast<const uint8_t*>(q);
    }
}

NodeSharedFile::~NodeSharedFile() {
    if (win_ != MPI_WIN_NULL) {
        MPI_Win_unlock_all(win_);
        MPI_Win_free(&win_);
    }
    if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
}

}  // namespace hs::dist

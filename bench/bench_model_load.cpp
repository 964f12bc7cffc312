// bench/bench_model_load.cpp: model load time of every rank, the file read by each rank (mmap) against read once
// per node into shared memory (dist/node_file.hpp), in one invocation.
//
//   mpirun --oversubscribe -n 4 build/headsweep_bench_model_load MODEL.gguf [--repeat 3] [--precision f32]
//   bench/bench_model_load.sh MODEL.gguf      (1, 2 and 4 ranks, one table)
//
// Before each timing the file's pages are dropped from the page cache (posix_fadvise DONTNEED, rank 0), so every
// variant starts from the disk. Printed per variant: the slowest rank's load time (the sweep waits for it) and the
// bytes read from the file system (per node: ranks x file size, or 1 x file size).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <boost/mpi.hpp>

#include "backend/cpu/cpu_runtime.hpp"
#include "dist/node_file.hpp"
#include "model/model.hpp"
#include "util/timer.hpp"

using namespace hs;

namespace {

void drop_page_cache(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
    hs::prepare_cpu_runtime(argv);
    boost::mpi::environment env(argc, argv, boost::mpi::threading::funneled);
    boost::mpi::communicator world;
    if (argc < 2) {
        if (world.rank() == 0) std::fprintf(stderr, "usage: %s MODEL.gguf [--repeat N] [--precision f32|bf16|native]\n", argv[0]);
        return 2;
    }
    const std::string path = argv[1];
    int repeat = 3;
    LoadOptions base;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--repeat") repeat = std::max(1, std::atoi(argv[i + 1]));
        else if (k == "--precision") base.precision = parse_weight_precision(argv[i + 1]);
    }
    const int R = world.size();
    double best[2] = {1e300, 1e300};
    size_t file_size = 0;
    for (int rep = 0; rep < repeat; ++rep)
        for (int variant = 0; variant < 2; ++variant) {
            if (world.rank() == 0) drop_page_cache(path);
            world.barrier();
            Timer t;
            LoadOptions lo = base;
            if (variant == 0) {
                Model m = open_model(path, lo);
            } else {
                dist::NodeSharedFile shared(world, path);
                lo.file_bytes = shared.data();
                lo.file_size = shared.size();
                file_size = shared.size();
                Model m = open_model(path, lo);
            }
            const double mine = t.seconds();
            double slowest = 0;
            boost::mpi::all_reduce(world, mine, slowest, boost::mpi::maximum<double>());
            best[variant] = std::min(best[variant], slowest);
        }
    if (world.rank() == 0) {
        std::printf("{\"ranks\":%d,\"file_mb\":%.1f,\"per_rank_read_s\":%.3f,\"per_node_read_s\":%.3f,"
                    "\"per_rank_read_mb\":%.1f,\"per_node_read_mb\":%.1f,\"repeat\":%d}\n",
                    R, file_size / 1e6, best[0], best[1], R * file_size / 1e6, file_size / 1e6, repeat);
    }
    return 0;
}

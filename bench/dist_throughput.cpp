// bench/dist_throughput.cpp: coordinator throughput of the dist/ protocol with a no-op item (pure protocol).
//
//   mpirun --oversubscribe -n 16 build/headsweep_bench_dist [items=200000] [values_per_item=9] [max_batch=256]
//
// Rank 0 only coordinates (no local worker); every other rank answers each item at once with values_per_item
// doubles (9 = one SmolLM2 layer of heads) and the item's two clean values, as a real sweep result would.
// Prints items/s, messages and bytes. Goal: >= 20,000 items/s.
#include <cstdio>
#include <cstdlib>

#include <boost/mpi.hpp>

#include "backend/cpu/cpu_runtime.hpp"
#include "dist/protocol.hpp"

namespace {
class Noop : public hs::dist::Executor {
public:
    explicit Noop(int n) : n_(n) {}
    void run(int32_t index, hs::dist::TaskResult& out) override {
        out.values.assign(size_t(n_), double(index));
        out.group_values = {1.0, 0.5};
    }

private:
    int n_;
};
}  // namespace

int main(int argc, char** argv) {
    hs::prepare_cpu_runtime(argv);  // before MPI_Init: may re-execute
    boost::mpi::environment env(argc, argv, boost::mpi::threading::funneled);
    boost::mpi::communicator world;
    const int64_t items = argc > 1 ? std::atoll(argv[1]) : 200000;
    const int values = argc > 2 ? std::atoi(argv[2]) : 9;
    const int batch = argc > 3 ? std::atoi(argv[3]) : 256;
    Noop ex(values);
    if (world.rank() == 0) {
        std::vector<hs::dist::Task> tasks;
        for (int64_t i = 0; i < items; ++i) tasks.push_back({int32_t(i), int32_t(i * 4 / items)});
        hs::dist::CoordinatorOptions co;
        co.local_worker = world.size() == 1;
        co.max_batch = batch;
        int64_t got = 0;
        const auto st = hs::dist::coordinate(world, tasks, &ex, [&](const hs::dist::TaskResult&) { ++got; }, co);
        std::printf("dist protocol: %d ranks (%d workers), %lld no-op items, max batch %d: %.0f items/s "
                    "(%.3f s; %lld messages in, %lld out; %.1f MB in)\n",
                    world.size(), world.size() - 1, (long long)got, batch, st.tasks_per_second(), st.seconds,
                    (long long)st.messages_in, (long long)st.messages_out, double(st.bytes_in) / 1e6);
        return got == items ? 0 : 1;
    }
    hs::dist::serve(world, ex);
    return 0;
}

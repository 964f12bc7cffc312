// headsweep_train_mpi_tests: data-parallel PEAR training under mpiexec (registered for 1, 2 and 4 ranks).
// Every rank trains the distributed run (ranks split each batch; gradients gathered to rank 0, summed in sequence
// order, broadcast) and, alone, the single-process run of the same job; tau, the Adam state and the logged losses
// after 60 steps must be identical bit for bit. Equality with the single-process run for every rank count makes
// the 1-, 2- and 4-rank results identical to each other. Exit status 0 on success.
#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/mpi/environment.hpp>

#include <cstdio>
#include <cstring>

#include "backend/cpu/cpu_runtime.hpp"
#include "engine/engine.hpp"
#include "pear/train.hpp"

using namespace hs;

int main(int argc, char** argv) {
    hs::prepare_cpu_runtime(argv);  // before MPI_Init: may re-execute
    boost::mpi::environment env(argc, argv);
    boost::mpi::communicator world;
    try {
        Model m = make_random_model("tiny-mha", 11);
        auto be = make_cpu_backend(1);
        Engine engine(m, *be);
        pear::TrainOptions o;
        o.heads = {{0, 1}, {1, 2}, {2, 0}, {2, 2}};
        o.half_len = 6;
        o.batch = 7;  // not a multiple of 2 or 4: ranks get unequal shares
        o.steps = 60;
        o.planned_steps = 100;
        o.lr = 0.02;
        pear::Trainer dist(engine, o, world);
        while (dist.state().step < o.steps) dist.step();
        pear::Trainer alone(engine, o);
        while (alone.state().step < o.steps) alone.step();
        const auto &a = dist.state(), &b = alone.state();
        const bool same = std::memcmp(a.tau.data(), b.tau.data(), a.tau.size() * sizeof(float)) == 0 &&
                          std::memcmp(a.adam_v.data(), b.adam_v.data(), a.adam_v.size() * sizeof(float)) == 0 &&
                          a.loss == b.loss && a.grad_norm == b.grad_norm;
        int ok = same ? 1 : 0, all_ok = 0;
        boost::mpi::all_reduce(world, ok, all_ok, boost::mpi::minimum<int>());
        if (world.rank() == 0) {
            std::printf("ranks %d: tau after %d steps:", world.size(), a.step);
            for (float t : a.tau) {
                uint32_t bits;
                std::memcpy(&bits, &t, 4);
                std::printf(" %.9g (0x%08x)", t, bits);
            }
            std::printf("\n%s\n", all_ok ? "identical to the single-process run" : "DIFFERS from the single-process run");
        }
        return all_ok ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", world.rank(), e.what());
        return 2;
    }
}

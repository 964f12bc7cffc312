// Catch2 runner for the MPI tests: initialises MPI (funneled, as `headsweep sweep` does), runs every test case
// on every rank (rank 0 reports; the others write to /dev/null), and fails when any rank failed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <boost/mpi.hpp>

#include "backend/cpu/cpu_runtime.hpp"

int main(int argc, char** argv) {
    hs::prepare_cpu_runtime(argv);  // before MPI_Init: may re-execute
    boost::mpi::environment env(argc, argv, boost::mpi::threading::funneled, false);
    boost::mpi::communicator world;
    Catch::Session session;
    if (int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
    if (world.rank() != 0) session.configData().outputFilename = "/dev/null";
    const int rc = session.run();
    const int worst = boost::mpi::all_reduce(world, rc, boost::mpi::maximum<int>());
    return worst;
}

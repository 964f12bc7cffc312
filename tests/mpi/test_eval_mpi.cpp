// `headsweep eval` over MPI (run under mpiexec with 1, 2 and 4 ranks): the distributed records equal those of a
// single-process run on rank 0 (everything but latency and rank), and a distributed resume computes nothing.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <unistd.h>

#include <boost/mpi.hpp>
#include <boost/serialization/string.hpp>

#include "eval/run_eval.hpp"

namespace fs = std::filesystem;
using namespace hs::eval;

TEST_CASE("eval mpi: records do not depend on the number of ranks, resume", "[eval][mpi]") {
    boost::mpi::communicator world;
    std::string dir;
    if (world.rank() == 0) {
        std::string t = (fs::temp_directory_path() / "hs_eval_mpi_XXXXXX").string();
        dir = mkdtemp(t.data());
    }
    boost::mpi::broadcast(world, dir, 0);
    EvalJob job;
    job.models = {"random:tiny"};
    job.tasks = {"mdqa-3docs", "nq-closedbook", "mmlu"};
    job.methods = {"vanilla", "pear"};
    job.method_settings.pear_heads = "0:1=0.5,1:3=0.0";
    job.task_options.data_dir = std::string(HEADSWEEP_SOURCE_DIR) + "/tests/fixtures/eval_data";
    job.task_options.limit = 2;
    job.task_options.max_new_tokens_cap = 4;
    job.task_options.mmlu_shots = 0;
    job.threads = 1;
    job.progress = false;
    job.output = dir + "/dist.h5";
    const EvalOutcome d = run_eval(job, &world);
    const int64_t total = 2 * (2 * 3 + 2 + 2);
    if (world.rank() == 0) {
        CHECK(d.computed == total);
        EvalJob single = job;
        single.output = dir + "/single.h5";
        run_eval(single, nullptr);
        const auto a = sorted_records(RecordsFile::read(job.output));
        const auto b = sorted_records(RecordsFile::read(single.output));
        REQUIRE(a.size() == size_t(total));
        REQUIRE(b.size() == a.size());
        for (size_t i = 0; i < a.size(); ++i) {
            CHECK(a[i].key() == b[i].key());
            CHECK(a[i].output == b[i].output);
            CHECK(a[i].score == b[i].score);
            CHECK(a[i].prompt_tokens == b[i].prompt_tokens);
            CHECK(a[i].new_tokens == b[i].new_tokens);
        }
    }
    world.barrier();
    EvalJob again = job;
    again.resume = true;
    const EvalOutcome r = run_eval(again, &world);
    if (world.rank() == 0) {
        CHECK(r.computed == 0);
        CHECK(r.skipped == total);
        CHECK(r.summary.size() == 2 * (3 + 1 + 1));
        fs::remove_all(dir);
    }
}

// MPI tests of dist/: the protocol and the distributed sweep. Run by ctest under mpiexec with 1, 2 and 4 ranks
// (CMakeLists.txt: dist_mpi_np1/np2/np4). Every test case is collective: every rank runs it.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <iterator>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <chrono>

#include <boost/mpi.hpp>
#include <boost/serialization/string.hpp>

#include "dist/node_file.hpp"
#include "dist/protocol.hpp"
#include "gguf/quant.hpp"
#include "model/model.hpp"
#include "dist/sweep_mpi.hpp"
#include "io/h5.hpp"
#include "pear/sweep_file.hpp"
#include "util/error.hpp"

using namespace hs;
using namespace hs::dist;
namespace fs = std::filesystem;
namespace mpi = boost::mpi;

namespace {

// A temporary directory made by rank 0 and known to every rank; removed at the end.
struct SharedTmp {
    const mpi::communicator& comm;
    std::string path;
    explicit SharedTmp(const mpi::communicator& c) : comm(c) {
        if (comm.rank() == 0) {
            char tmpl[] = "/tmp/headsweep_dist_XXXXXX";
            REQUIRE(::mkdtemp(tmpl) != nullptr);
            path = tmpl;
        }
        mpi::broadcast(comm, path, 0);
    }
    ~SharedTmp() {
        comm.barrier();
        if (comm.rank() == 0) fs::remove_all(path);
    }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// Values that depend only on the task.
class NoopExecutor : public Executor {
public:
    std::string fail_at;  // "index" to throw at, on whichever rank gets it
    int32_t throw_index = -1;
    void run(int32_t index, TaskResult& out) override {
        if (index == throw_index) throw Error("boom at item " + std::to_string(index));
        out.values = {double(index), double(index) * 0.5};
        out.group_values = {double(index % 3)};
    }
};

std::vector<Task> some_tasks(int32_t n, int32_t groups) {
    std::vector<Task> t;
    for (int32_t i = 0; i < n; ++i) t.push_back(Task{i, i * groups / n});
    return t;
}

pear::SweepJob tiny_job(const std::string& out_template) {
    pear::SweepJob job;
    job.models = {"random:tiny", "random:tiny-qwen2:3"};
    job.modes = {pear::ScoreMode::PATH, pear::ScoreMode::TOTAL};
    job.options.settings = {{4, 6}, {6, 5}, {3, 8}};
    job.options.seed = 77;
    job.output = out_template;
    job.threads = 1;
    return job;
}

DistSweepOptions quiet() {
    DistSweepOptions o;
    o.progress = false;
    return o;
}

std::vector<std::string> outputs(const pear::SweepJob& job) {
    std::vector<std::string> r;
    for (const auto& run : pear::expand_runs(job)) r.push_back(run.output);
    return r;
}

// Every rank gets the same error, or none.
std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("protocol: every task reaches the sink once with its values, with any number of ranks", "[dist][mpi]") {
    mpi::communicator world;
    NoopExecutor ex;
    for (int32_t n : {0, 1, 7, 1000}) {
        if (world.rank() == 0) {
            std::map<int32_t, int> seen;
            CoordinatorOptions co;
            co.max_batch = 16;
            CoordinatorStats st = coordinate(
                world, some_tasks(n, 4), &ex,
                [&](const TaskResult& r) {
                    ++seen[r.index];
                    REQUIRE(r.values == std::vector<double>{double(r.index), double(r.index) * 0.5});
                    REQUIRE(r.rank >= 0);
                    REQUIRE(r.rank < world.size());
                },
                co);
            REQUIRE(int32_t(seen.size()) == n);
            for (auto& [i, c] : seen) REQUIRE(c == 1);
            CHECK(st.tasks == n);
            int64_t sum = 0;
            for (int64_t k : st.tasks_per_rank) sum += k;
            CHECK(sum == n);
        } else {
            serve(world, ex);
        }
    }
}

TEST_CASE("protocol: every result is followed by a batch end (group commit), none left uncommitted", "[dist][mpi]") {
    mpi::communicator world;
    NoopExecutor ex;
    if (world.rank() == 0) {
        int64_t staged = 0, committed = 0, commits = 0;
        CoordinatorOptions co;
        co.max_batch = 4;
        const CoordinatorStats st = coordinate(
            world, some_tasks(500, 3), &ex, [&](const TaskResult&) { ++staged; }, co,
            [&] {
                REQUIRE(staged > 0);  // a batch end follows results
                committed += staged;
                staged = 0;
                ++commits;
            });
        CHECK(staged == 0);
        CHECK(committed == 500);
        CHECK(commits >= 1);
        CHECK(commits <= st.messages_in + 500);  // at most one per message (or per local batch)
    } else {
        serve(world, ex);
    }
}

TEST_CASE("protocol: the coordinator alone needs no other rank, and may leave the work to workers", "[dist][mpi]") {
    mpi::communicator world;
    NoopExecutor ex;
    if (world.size() == 1) {
        int64_t got = 0;
        coordinate(world, some_tasks(50, 2), &ex, [&](const TaskResult&) { ++got; });
        CHECK(got == 50);
        return;
    }
    if (world.rank() == 0) {
        CoordinatorOptions co;
        co.local_worker = false;
        CoordinatorStats st = coordinate(world, some_tasks(200, 3), nullptr, [](const TaskResult&) {}, co);
        CHECK(st.tasks_per_rank[0] == 0);
        CHECK(st.tasks == 200);
    } else {
        serve(world, ex);
    }
}

TEST_CASE("protocol: an executor error on any rank stops every rank with that message", "[dist][mpi]") {
    mpi::communicator world;
    NoopExecutor ex;
    ex.throw_index = 37;
    std::string err = error_of([&] {
        if (world.rank() == 0)
            coordinate(world, some_tasks(100, 2), &ex, [](const TaskResult&) {});
        else
            serve(world, ex);
    });
    CHECK_THAT(err, Catch::Contains("boom at item 37"));
    // and the communicator is usable afterwards (nobody is left waiting)
    int sum = mpi::all_reduce(world, 1, std::plus<int>());
    CHECK(sum == world.size());
}

TEST_CASE("protocol: a sink error (e.g. a failed write) stops every rank with that message", "[dist][mpi]") {
    mpi::communicator world;
    NoopExecutor ex;
    std::string err = error_of([&] {
        if (world.rank() == 0)
            coordinate(world, some_tasks(100, 2), &ex, [](const TaskResult& r) {
                if (r.index == 10) throw Error("disk full writing item 10");
            });
        else
            serve(world, ex);
    });
    CHECK_THAT(err, Catch::Contains("disk full writing item 10"));
}

namespace {

// A group's state: bytes that depend only on the group (and are not small: several messages' worth of work).
std::vector<char> group_state(int32_t g) {
    std::vector<char> b(size_t(4096 + g));
    for (size_t i = 0; i < b.size(); ++i) b[i] = char((i * 31 + size_t(g) * 7) & 0x7f);
    return b;
}

double checksum(const std::vector<char>& b) {
    double s = 0;
    for (size_t i = 0; i < b.size(); ++i) s += double(b[i]) * double(i % 13 + 1);
    return s;
}

// Records how it came by each group's state; prepare_group is slow, so that workers wait for states being made.
class StateExecutor : public Executor {
public:
    int32_t n = 0, groups = 1;
    int32_t fail_prepare = -1;  // group whose prepare_group throws (on whichever rank makes it)
    int64_t prepared = 0, imported = 0, made_in_run = 0;
    int32_t held = -1;
    std::vector<char> state;
    int32_t group_of(int32_t index) const { return index * groups / n; }
    void prepare_group(int32_t g) override {
        if (g == fail_prepare) throw Error("clean run of group " + std::to_string(g) + " failed");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        state = group_state(g);
        held = g;
        ++prepared;
    }
    std::vector<char> export_group(int32_t g) override {
        check(held == g, "export of a group not held");
        return state;
    }
    void import_group(int32_t g, const std::vector<char>& st) override {
        state = st;
        held = g;
        ++imported;
    }
    void run(int32_t index, TaskResult& out) override {
        const int32_t g = group_of(index);
        if (held != g) {  // the unshared way: make it here
            state = group_state(g);
            held = g;
            ++made_in_run;
        }
        out.values = {double(index), checksum(state)};
    }
};

}  // namespace

TEST_CASE("protocol: shared group state is made once per group and reaches every worker that takes it up",
          "[dist][mpi]") {
    // Pieces: the default (each state one message) and 1000 bytes (states of 4096+ bytes in 5 messages, the last
    // shorter), both directions (worker -> rank 0 -> workers).
    mpi::communicator world;
    for (int64_t piece : {kMaxStatePiece, int64_t(1000)})
    for (bool local : {true, false}) {
        if (!local && world.size() == 1) continue;
        INFO("state pieces of " << piece << " bytes");
        StateExecutor ex;
        ex.n = 400;
        ex.groups = 5;
        CoordinatorStats st;
        if (world.rank() == 0) {
            CoordinatorOptions co;
            co.share_group_state = true;
            co.local_worker = local;
            co.max_batch = 2;
            co.state_piece_bytes = piece;
            std::map<int32_t, int> seen;
            st = coordinate(
                world, some_tasks(ex.n, ex.groups), &ex,
                [&](const TaskResult& r) {
                    ++seen[r.index];
                    REQUIRE(r.values.size() == 2);
                    REQUIRE(r.values[1] == checksum(group_state(ex.group_of(r.index))));  // the task's group's state
                },
                co);
            CHECK(int32_t(seen.size()) == ex.n);
        } else {
            ServeOptions so;
            so.state_piece_bytes = piece;
            serve(world, ex, so);
        }
        const int64_t prepared = mpi::all_reduce(world, ex.prepared, std::plus<int64_t>());
        const int64_t imported = mpi::all_reduce(world, ex.imported, std::plus<int64_t>());
        const int64_t made_in_run = mpi::all_reduce(world, ex.made_in_run, std::plus<int64_t>());
        if (world.size() == 1) {  // nobody to share with: the executor makes what it needs
            CHECK(prepared == 0);
            CHECK(made_in_run == ex.groups);
            continue;
        }
        INFO(world.size() << " ranks, rank 0 " << (local ? "works too" : "only coordinates"));
        CHECK(prepared == ex.groups);  // each group's state made exactly once
        CHECK(made_in_run == 0);       // nobody ran a task without the group's state
        if (world.rank() == 0) {
            CHECK(st.states_made == ex.groups);
            CHECK(st.states_sent == imported);
            int64_t takeups = 0;
            for (int32_t k : st.group_switches) takeups += k;
            CHECK(takeups == prepared + imported);  // every take-up either made the state or received it
        }
    }
}

TEST_CASE("protocol: a failing group state stops every rank, those waiting for it too", "[dist][mpi]") {
    mpi::communicator world;
    StateExecutor ex;
    ex.n = 200;
    ex.groups = 2;
    ex.fail_prepare = 1;
    const std::string err = error_of([&] {
        if (world.rank() == 0) {
            CoordinatorOptions co;
            co.share_group_state = true;
            co.max_batch = 1;
            coordinate(world, some_tasks(ex.n, ex.groups), &ex, [](const TaskResult&) {}, co);
        } else {
            serve(world, ex);
        }
    });
    if (world.size() > 1) CHECK_THAT(err, Catch::Contains("clean run of group 1 failed"));
    CHECK(mpi::all_reduce(world, 1, std::plus<int>()) == world.size());  // nobody left waiting
}

TEST_CASE("distributed sweep: shared clean runs give the files of unshared ones and of one process", "[dist][mpi]") {
    // One-head items (many take-ups of each setting), every mode; clean runs shared (the default) and not.
    mpi::communicator world;
    SharedTmp tmp(world);
    pear::SweepJob ref = tiny_job(tmp / "ref-{model}-{mode}.h5");
    ref.models = {"random:tiny", "random:tiny-gemma3:2"};
    ref.modes.push_back(pear::ScoreMode::ATTRIBUTION);
    ref.heads_per_item = 1;
    if (world.rank() == 0) {
        pear::RunJobOptions ro;
        ro.progress = false;
        pear::run_job(ref, ro);
    }
    for (bool shared : {true, false}) {
        pear::SweepJob job = ref;
        job.output = tmp / ((shared ? "shared-" : "each-") + std::string("{model}-{mode}.h5"));
        job.share_clean_runs = shared;
        DistSweepOptions o = quiet();
        o.state_piece_bytes = 1021;  // every clean-run state (6 KB and up) in many pieces, the last one shorter
        const auto sums = run_distributed_sweep(job, world, o);
        if (world.rank() != 0) continue;
        REQUIRE(sums.size() == 6);
        const auto a = outputs(ref), b = outputs(job);
        for (size_t i = 0; i < a.size(); ++i) {
            INFO(world.size() << " ranks, clean runs " << (shared ? "shared" : "each its own") << ": " << b[i]);
            CHECK(sums[i].complete);
            CHECK(pear::compare_sweep_files(a[i], b[i]).empty());
            if (shared && world.size() > 1) CHECK(sums[i].clean_runs == 3);  // once per setting
            if (!shared || world.size() == 1) CHECK(sums[i].clean_runs_received == 0);
            CHECK(sums[i].clean_runs >= 3);
        }
    }
}

TEST_CASE("distributed sweep: 1, 2 and 4 ranks and the single-process sweep give identical files", "[dist][mpi]") {
    // Whole-layer items, and head-range items of uneven size (3 + 1 heads): for each item size every rank count
    // gives the single process's file.
    mpi::communicator world;
    SharedTmp tmp(world);
    // Reference: the single-process sweep (one thread) on rank 0.
    pear::SweepJob ref = tiny_job(tmp / "ref-{model}-{mode}.h5");
    // Attribution too: its per-sample values come from one backward per setting (file format 2 stores them all).
    ref.modes.push_back(pear::ScoreMode::ATTRIBUTION);
    pear::SweepJob ref3 = ref;
    ref3.output = tmp / "ref3-{model}-{mode}.h5";
    ref3.heads_per_item = 3;
    if (world.rank() == 0) {
        pear::RunJobOptions ro;
        ro.progress = false;
        pear::run_job(ref, ro);
        pear::run_job(ref3, ro);
    }
    // The same job on sub-worlds of 1, 2 and 4 ranks (those that exist), one after another; then the whole world
    // with ranges of 3 heads.
    for (int n : {1, 2, 4, 0}) {
        if (n > world.size()) break;
        const bool uneven = n == 0;
        if (uneven) n = world.size();
        mpi::communicator sub = world.split(world.rank() < n ? 0 : 1);
        pear::SweepJob job =
            tiny_job(tmp / ((uneven ? "h3-np" : "np") + std::to_string(n) + "-{model}-{mode}.h5"));
        job.modes = ref.modes;
        if (uneven) job.heads_per_item = 3;
        if (world.rank() < n) {
            auto sums = run_distributed_sweep(job, sub, quiet());
            if (sub.rank() == 0) {
                REQUIRE(sums.size() == 6);
                for (const auto& s : sums) CHECK(s.complete);
            }
        }
        world.barrier();
        if (world.rank() == 0) {
            const auto a = outputs(uneven ? ref3 : ref), b = outputs(job);
            for (size_t i = 0; i < a.size(); ++i) {
                INFO(n << " ranks" << (uneven ? ", ranges of 3 heads" : "") << ": " << b[i] << " vs " << a[i]);
                CHECK(pear::compare_sweep_files(a[i], b[i]).empty());
            }
        }
    }
}

TEST_CASE("distributed sweep: a cut-short run resumes to the uninterrupted run's file", "[dist][mpi]") {
    mpi::communicator world;
    SharedTmp tmp(world);
    pear::SweepJob full = tiny_job(tmp / "full-{model}-{mode}.h5");
    full.models = {"random:tiny"};
    run_distributed_sweep(full, world, quiet());

    pear::SweepJob part = tiny_job(tmp / "part-{model}-{mode}.h5");
    part.models = {"random:tiny"};
    part.heads_per_item = 4;  // whole layers
    DistSweepOptions cut = quiet();
    cut.max_items = 4;  // of 6 items (3 settings x 2 layers) in the first run
    auto s1 = run_distributed_sweep(part, world, cut);
    if (world.rank() == 0) {
        REQUIRE(s1.size() == 1);
        CHECK_FALSE(s1[0].complete);
        pear::SweepFile f = pear::SweepFile::open(outputs(part)[0]);
        CHECK_FALSE(f.complete());
        CHECK(f.remaining(pear::plan_items(hs::make_random_model("tiny").config, f.info().options)).size() == 2);
    }
    part.resume = true;
    auto s2 = run_distributed_sweep(part, world, quiet());
    if (world.rank() == 0) {
        REQUIRE(s2.size() == 2);
        CHECK(s2[0].resumed);
        CHECK(s2[0].heads_scored == 2 * 4);  // the 2 missing items of 4 heads each
        for (size_t i = 0; i < 2; ++i) CHECK(pear::compare_sweep_files(outputs(full)[i], outputs(part)[i]).empty());
    }

    // Head granularity: one-head items, cut after 10 of the first run's 24, resumed; the same job in one process
    // is the reference (the item size is part of the result).
    pear::SweepJob heads = tiny_job(tmp / "heads-{model}-{mode}.h5");
    heads.models = {"random:tiny"};
    heads.heads_per_item = 1;
    pear::SweepJob heads_ref = heads;
    heads_ref.output = tmp / "heads-ref-{model}-{mode}.h5";
    if (world.rank() == 0) {
        pear::RunJobOptions ro;
        ro.progress = false;
        pear::run_job(heads_ref, ro);
    }
    cut.max_items = 10;
    run_distributed_sweep(heads, world, cut);
    if (world.rank() == 0) {
        pear::SweepFile f = pear::SweepFile::open(outputs(heads)[0]);
        int done = 0;
        for (uint8_t d : f.done_heads()) done += d;
        CHECK(done == 10);
    }
    heads.resume = true;
    pear::SweepJob other_size = heads;
    other_size.heads_per_item = 2;
    const std::string refused = error_of([&] { run_distributed_sweep(other_size, world, quiet()); });
    CHECK_THAT(refused, Catch::Contains("cannot resume") && Catch::Contains("heads_per_item (file: 1, job: 2)"));
    auto s3 = run_distributed_sweep(heads, world, quiet());
    if (world.rank() == 0) {
        REQUIRE(s3.size() == 2);
        CHECK(s3[0].heads_scored == 24 - 10);
        for (size_t i = 0; i < 2; ++i)
            CHECK(pear::compare_sweep_files(outputs(heads_ref)[i], outputs(heads)[i]).empty());
    }
}

TEST_CASE("distributed sweep: resuming a file of another job or model is refused on every rank", "[dist][mpi]") {
    mpi::communicator world;
    SharedTmp tmp(world);
    pear::SweepJob job = tiny_job(tmp / "x-{mode}.h5");
    job.models = {"random:tiny"};
    job.modes = {pear::ScoreMode::PATH};
    job.heads_per_item = 4;  // whole layers: 2 items are 2 layers
    DistSweepOptions cut = quiet();
    cut.max_items = 2;
    run_distributed_sweep(job, world, cut);
    job.resume = true;
    pear::SweepJob other_seed = job;
    other_seed.options.seed = 78;
    std::string err = error_of([&] { run_distributed_sweep(other_seed, world, quiet()); });
    CHECK_THAT(err, Catch::Contains("cannot resume") && Catch::Contains("seed"));
    pear::SweepJob other_model = job;
    other_model.models = {"random:tiny:2"};
    other_model.output = tmp / "x-{mode}.h5";
    err = error_of([&] { run_distributed_sweep(other_model, world, quiet()); });
    CHECK_THAT(err, Catch::Contains("cannot resume") && Catch::Contains("model_sha256"));
    // the file is untouched: still 2 items done
    if (world.rank() == 0) {
        pear::SweepFile f = pear::SweepFile::open(tmp / "x-path.h5");
        int done = 0;
        for (uint8_t d : f.done()) done += d;
        CHECK(done == 2);
    }
}

TEST_CASE("distributed sweep: a resumed file whose clean run differs bitwise is refused", "[dist][mpi]") {
    mpi::communicator world;
    SharedTmp tmp(world);
    pear::SweepJob job = tiny_job(tmp / "c-{mode}.h5");
    job.models = {"random:tiny"};
    job.modes = {pear::ScoreMode::PATH};
    DistSweepOptions cut = quiet();
    cut.max_items = 1;
    run_distributed_sweep(job, world, cut);
    if (world.rank() == 0) {  // as if another binary or thread count had computed setting 0's clean run
        // (a sample's clean value one float up, and pi_clean its new mean: a consistent file of another run)
        h5::File f = h5::File::open(tmp / "c-path.h5", h5::Mode::read_write);
        auto samples = f.open_dataset("pi_clean_samples").read<float>();  // [S, N_max]
        const int32_t n_max = int32_t(samples.size() / 3), N0 = 4;
        samples[0] = std::nextafter(samples[0], 1e30f);
        f.open_dataset("pi_clean_samples").write(samples);
        auto pi = f.open_dataset("pi_clean").read<double>();
        pi[0] = pear::sample_mean(samples.data(), N0);
        REQUIRE(n_max >= N0);
        f.open_dataset("pi_clean").write(pi);
        f.close();
        // without its journal the file is what resume continues (with it, resume would rebuild the file from the
        // journal's values and undo this change)
        fs::remove(pear::journal_path(tmp / "c-path.h5"));
    }
    job.resume = true;
    std::string err = error_of([&] { run_distributed_sweep(job, world, quiet()); });
    CHECK_THAT(err, Catch::Contains("different clean run for setting 0"));
}

TEST_CASE("distributed sweep: bad jobs are refused before any rank loads a model or writes", "[dist][mpi]") {
    mpi::communicator world;
    SharedTmp tmp(world);
    if (world.rank() == 0) std::ofstream(tmp / "a-file") << "x";
    world.barrier();
    pear::SweepJob job = tiny_job(tmp / "a-file/{model}-{mode}.h5");  // the output directory is a file
    std::string err = error_of([&] { run_distributed_sweep(job, world, quiet()); });
    CHECK_FALSE(err.empty());
    CHECK_THAT(err, Catch::Contains("a-file"));

    pear::SweepJob bad = tiny_job(tmp / "{model}-{mode}.h5");
    bad.options.settings = {{4, 6}, {1, 6}};  // N = 1: no batch mean
    err = error_of([&] { run_distributed_sweep(bad, world, quiet()); });
    CHECK_FALSE(err.empty());
    world.barrier();
    if (world.rank() == 0) CHECK(fs::directory_entry(tmp / "random-tiny-path.h5").exists() == false);
}

TEST_CASE("node-shared model file: read once per node, every rank's model equals the mapped file's, the sweep too",
          "[dist][mpi]") {
    mpi::communicator world;
    SharedTmp tmp(world);
    const std::string gguf = tmp / "tiny-q8.gguf";
    if (world.rank() == 0) write_random_gguf("tiny", 5, GgmlType::Q8_0, gguf);
    world.barrier();
    {
        NodeSharedFile shared(world, gguf);
        std::ifstream in(gguf, std::ios::binary);
        const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        REQUIRE(shared.size() == bytes.size());
        CHECK(std::memcmp(shared.data(), bytes.data(), bytes.size()) == 0);
        CHECK(shared.node_ranks() == world.size());  // one node here
        LoadOptions lo;
        lo.file_bytes = shared.data();
        lo.file_size = shared.size();
        const Model a = open_model(gguf, lo), b = open_model(gguf);
        const Matrix &wa = a.weights.layers[1].w_down, &wb = b.weights.layers[1].w_down;
        REQUIRE(wa.rows * wa.cols == wb.rows * wb.cols);
        CHECK(std::memcmp(wa.data, wb.data, size_t(wa.rows * wa.cols) * sizeof(float)) == 0);
        CHECK(a.tokenizer.n_vocab() == b.tokenizer.n_vocab());
    }
    // A missing file: the same error, naming it, on every rank.
    const std::string err = error_of([&] { NodeSharedFile missing(world, tmp / "absent.gguf"); });
    CHECK_THAT(err, Catch::Contains("absent.gguf") && Catch::Contains("cannot open"));

    // The distributed sweep of the GGUF (models built from the node's copy) equals the single process's.
    pear::SweepJob job;
    job.models = {gguf};
    job.modes = {pear::ScoreMode::PATH};
    job.options.settings = {{4, 6}, {3, 5}};
    job.options.seed = 3;
    job.threads = 1;
    job.model_read = "node";
    job.output = tmp / "shared-{mode}.h5";
    pear::SweepJob ref = job;
    ref.output = tmp / "single-{mode}.h5";
    pear::SweepJob ref3 = ref;
    ref3.output = tmp / "ref3-{model}-{mode}.h5";
    ref3.heads_per_item = 3;
    if (world.rank() == 0) {
        pear::RunJobOptions ro;
        ro.progress = false;
        pear::run_job(ref, ro);
        pear::run_job(ref3, ro);
    }
    run_distributed_sweep(job, world, quiet());
    if (world.rank() == 0) CHECK(pear::compare_sweep_files(outputs(ref)[0], outputs(job)[0]).empty());
}

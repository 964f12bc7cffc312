// RTD over MPI ranks: a datastore sharded over the ranks gives exactly the unsharded top-k (ids and distances),
// and a datastore build distributed over the ranks writes the same file as one process.
#include <catch2/catch.hpp>

#include <filesystem>
#include <random>

#include <boost/mpi.hpp>

#include "engine/engine.hpp"
#include "eval/method_rtd.hpp"
#include "model/model.hpp"
#include "rtd/builder.hpp"
#include "rtd/datastore.hpp"
#include "rtd/sharded.hpp"

using namespace hs;

namespace {

std::vector<float> random_keys(int64_t n, int32_t d, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> v(size_t(n) * size_t(d));
    for (float& x : v) x = g(rng);
    return v;
}

}  // namespace

TEST_CASE("rtd mpi: sharded exact search equals one rank", "[rtd][mpi]") {
    boost::mpi::communicator world;
    const int64_t n = 5003, nq = 9, k = 32;
    const int32_t d = 64;
    const std::vector<float> keys = random_keys(n, d, 11), q = random_keys(nq, d, 12);  // the same on every rank
    int64_t b = 0, e = 0;
    rtd::shard_range(n, world.rank(), world.size(), b, e);
    rtd::KnnIndex shard(rtd::IndexKind::FLAT, d);
    shard.add(keys.data() + b * d, e - b);
    const rtd::Neighbours got = rtd::sharded_search(world, shard, b, q.data(), nq, k);
    if (world.rank() == 0) {
        rtd::KnnIndex all(rtd::IndexKind::FLAT, d);
        all.add(keys.data(), n);
        const rtd::Neighbours want = all.search(q.data(), nq, k);
        CHECK(got.ids == want.ids);
        CHECK(got.dist == want.dist);
    } else {
        CHECK(got.ids.empty());
    }
    CHECK_THROWS_WITH(rtd::sharded_search(world, shard, b, q.data(), nq, n + 1), Catch::Contains("larger than the datastore"));
}

TEST_CASE("rtd mpi: a distributed datastore build writes the single-process file", "[rtd][mpi]") {
    boost::mpi::communicator world;
    const Model model = open_model("random:tiny");
    auto backend = make_backend(Device::CPU, 1);
    Engine engine(model, *backend);
    std::vector<rtd::BuildEntry> plan;
    for (int32_t i = 0; i < 13; ++i)
        plan.push_back({i / 2, i % 2, model.tokenizer.encode("entry " + std::to_string(i * 7), false, false)});
    rtd::DatastoreInfo info;
    info.task = "unit";
    info.model_spec = "random:tiny";
    info.model_sha256 = eval::datastore_model_identity("random:tiny");
    info.d = model.config.d_model;
    info.n_head = model.config.n_head;
    info.head_dim = info.d / info.n_head;
    info.n_labels = 2;
    info.label_names = {"A", "B"};
    info.planned = int64_t(plan.size());
    std::string dir = (std::filesystem::temp_directory_path() / ("hs_rtd_mpi_" + std::to_string(world.size()))).string();
    boost::mpi::broadcast(world, dir, 0);
    if (world.rank() == 0) {
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    world.barrier();
    rtd::BuildOptions o;
    o.progress = false;
    o.flush_every = 3;
    rtd::build_datastore(engine, plan, info, dir + "/dist.h5", o, &world);
    if (world.rank() == 0) {
        rtd::build_datastore(engine, plan, info, dir + "/one.h5", o, nullptr);
        const rtd::Datastore a = rtd::read_datastore(dir + "/dist.h5"), b = rtd::read_datastore(dir + "/one.h5");
        CHECK(a.keys == b.keys);
        CHECK(a.labels == b.labels);
        CHECK(a.items == b.items);
        std::filesystem::remove_all(dir);
    }
}

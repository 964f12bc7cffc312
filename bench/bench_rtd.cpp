// bench/bench_rtd.cpp: RTD speed, our side, as JSON lines (bench/bench_rtd.py runs it with the peers and prints
// the ratios).
//   headsweep_bench_rtd build MODEL TASK ITEMS [--data-dir D] [--threads N]
//       datastore-build embedding (final hidden only) vs the engine's plain prefill (logits of the last position) on
//       the same prompts (the task's first ITEMS training items with their rotations): prompts/s and tokens/s
//   headsweep_bench_rtd answer MODEL DATASTORE TASK ITEMS [--data-dir D] [--threads N] [--k 32]
//       answer-time overhead of RTD over zero-shot: forward(logits) vs forward(final hidden + logits) + k-NN search
//       + label distribution, on the task's first ITEMS test prompts
//   headsweep_bench_rtd search DATASTORE NQ DUMP_DIR [--k 32]
//       queries/s of our exact index (faiss flat, one query at a time as at answer time, and batched; naive) on the
//       datastore's keys; writes keys.f32 / queries.f32 / ids.i64 into DUMP_DIR for the faiss-cpu peer
//   [mpirun -n R] headsweep_bench_rtd scale N D NQ OUT_IDS [--k 32]
//       a random N x D datastore (entry i's keys are a hash of (i, dim): any rank makes any shard) sharded over the
//       ranks: build and query times, queries/s; rank 0 writes the merged ids to OUT_IDS for the exactness check
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/mpi.hpp>

#include "backend/cpu/cpu_runtime.hpp"
#include "engine/engine.hpp"
#include "eval/tasks_choice.hpp"
#include "model/model.hpp"
#include "rtd/builder.hpp"
#include "backend/backend.hpp"
#include "rtd/datastore.hpp"
#include "rtd/search.hpp"
#include "rtd/sharded.hpp"
#include "util/error.hpp"

using namespace hs;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Opts {
    std::string data_dir = "../shared/data";
    std::string device = "cpu";  // search: the device kind's backend (cuda: cuBLAS)
    int threads = 1, k = 32;
};

Opts parse_opts(int argc, char** argv, int first) {
    Opts o;
    for (int i = first; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--data-dir") o.data_dir = v;
        else if (a == "--threads") o.threads = std::stoi(v);
        else if (a == "--k") o.k = std::stoi(v);
        else if (a == "--device") o.device = v;
        else fail("unknown option ", a);
    }
    return o;
}

std::vector<std::vector<int32_t>> task_prompts(const std::string& task, eval::ChoiceSplit split, int64_t items,
                                               const Tokenizer& tok, const Opts& o, bool rotations,
                                               std::vector<int32_t>* item_of = nullptr) {
    eval::TaskBuildOptions to;
    to.data_dir = o.data_dir;
    eval::ChoiceData d = eval::load_choice_data(task, split, to);
    if (int64_t(d.items.size()) > items) d.items.resize(size_t(items));
    const eval::ChoiceDatastorePlan p = eval::plan_choice_datastore(d, tok, 1 << 30, 1 << 30, rotations);
    std::vector<std::vector<int32_t>> out;
    for (const auto& e : p.entries) {
        out.push_back(e.ids);
        if (item_of) item_of->push_back(e.item);
    }
    return out;
}

int bench_build(int argc, char** argv) {
    check(argc >= 5, "build MODEL TASK ITEMS");
    const Opts o = parse_opts(argc, argv, 5);
    const Model m = open_model(argv[2]);
    auto be = make_backend(Device::CPU, o.threads);
    Engine engine(m, *be);
    std::vector<int32_t> item_of;
    const auto prompts = task_prompts(argv[3], eval::ChoiceSplit::TRAIN, std::stoll(argv[4]), m.tokenizer, o, true, &item_of);
    int64_t tokens = 0;
    for (const auto& p : prompts) tokens += int64_t(p.size());
    rtd::embed_prompt(engine, prompts[0]);  // warm-up
    // As the builder does: the entries of one item (its rotations) together, their shared prefix once.
    double t = now();
    for (size_t i = 0; i < prompts.size();) {
        std::vector<const std::vector<int32_t>*> group;
        size_t j = i;
        for (; j < prompts.size() && item_of[j] == item_of[i]; ++j) group.push_back(&prompts[j]);
        rtd::embed_group(engine, group);
        i = j;
    }
    const double embed_s = now() - t;
    t = now();
    for (const auto& p : prompts) {
        ForwardHooks h;
        h.logits = LogitsMode::LAST;
        engine.forward(p, 1, int64_t(p.size()), h);
    }
    const double prefill_s = now() - t;
    std::printf("{\"bench\":\"build\",\"prompts\":%zu,\"tokens\":%lld,\"embed_s\":%.4f,\"prefill_s\":%.4f,"
                "\"embed_prompts_per_s\":%.3f,\"embed_tokens_per_s\":%.1f,\"prefill_prompts_per_s\":%.3f,"
                "\"prefill_tokens_per_s\":%.1f,\"threads\":%d,\"blas\":\"%s\"}\n",
                prompts.size(), (long long)tokens, embed_s, prefill_s, prompts.size() / embed_s, tokens / embed_s,
                prompts.size() / prefill_s, tokens / prefill_s, o.threads, cpu_runtime_tag().c_str());
    return 0;
}

int bench_answer(int argc, char** argv) {
    check(argc >= 6, "answer MODEL DATASTORE TASK ITEMS");
    const Opts o = parse_opts(argc, argv, 6);
    const Model m = open_model(argv[2]);
    auto be = make_backend(Device::CPU, o.threads);
    Engine engine(m, *be);
    const rtd::Datastore ds = rtd::read_datastore(argv[3]);
    const rtd::RtdIndex index(ds.keys.data(), ds.labels.data(), ds.size(), ds.info.d, ds.info.n_labels, ds.info.n_head,
                              true, true);
    const auto prompts = task_prompts(argv[4], eval::ChoiceSplit::TEST, std::stoll(argv[5]), m.tokenizer, o, false);
    const double T = ds.info.tuned_T > 0 ? ds.info.tuned_T : 1.0;
    double zs = 0, rtd_s = 0, mh_s = 0, search_s = 0;
    for (int rep = 0; rep < 2; ++rep) {  // rep 0 warms up
        double a = 0, b = 0, c = 0, s = 0;
        for (const auto& p : prompts) {
            ForwardHooks h0;
            h0.logits = LogitsMode::LAST;
            double t = now();
            engine.forward(p, 1, int64_t(p.size()), h0);
            a += now() - t;
            ForwardHooks h;
            h.logits = LogitsMode::LAST;
            h.final_hidden = true;
            t = now();
            const ForwardResult r = engine.forward(p, 1, int64_t(p.size()), h);
            const double t1 = now();
            index.rtd(r.final_hidden.data(), o.k, T);
            const double t2 = now();
            b += t2 - t;
            s += t2 - t1;
            index.mh_rtd(r.final_hidden.data(), o.k, T);
            c += (now() - t2) + (t1 - t);
        }
        zs = a, rtd_s = b, mh_s = c, search_s = s;
    }
    std::printf("{\"bench\":\"answer\",\"queries\":%zu,\"datastore\":%lld,\"d\":%d,\"k\":%d,\"zero_shot_s\":%.4f,"
                "\"rtd_s\":%.4f,\"mh_rtd_s\":%.4f,\"search_s\":%.5f,\"rtd_overhead\":%.4f,\"mh_rtd_overhead\":%.4f,"
                "\"threads\":%d}\n",
                prompts.size(), (long long)ds.size(), ds.info.d, o.k, zs, rtd_s, mh_s, search_s, rtd_s / zs - 1,
                mh_s / zs - 1, o.threads);
    return 0;
}

int bench_search(int argc, char** argv) {
    check(argc >= 5, "search DATASTORE NQ DUMP_DIR");
    const Opts o = parse_opts(argc, argv, 5);
    const rtd::Datastore ds = rtd::read_datastore(argv[2]);
    const int64_t nq = std::stoll(argv[3]);
    const std::string dump = argv[4];
    const int32_t d = ds.info.d;
    // Queries: keys of evenly spaced entries, shifted (so that the nearest is not always the entry itself).
    std::vector<float> q;
    for (int64_t i = 0; i < nq; ++i) {
        const int64_t e = i * ds.size() / nq;
        for (int32_t c = 0; c < d; ++c) q.push_back(ds.keys[size_t(e * d + c)] + 0.01f * float((c * 7 + i) % 13 - 6));
    }
    rtd::KnnIndex flat(rtd::IndexKind::FLAT, d);
    double t = now();
    flat.add(ds.keys.data(), ds.size());
    const double add_s = now() - t;
    t = now();
    rtd::Neighbours one{nq, o.k, {}, {}};
    for (int64_t i = 0; i < nq; ++i) {
        const rtd::Neighbours r = flat.search(q.data() + i * d, 1, o.k);
        one.dist.insert(one.dist.end(), r.dist.begin(), r.dist.end());
        one.ids.insert(one.ids.end(), r.ids.begin(), r.ids.end());
    }
    const double single_s = now() - t;
    t = now();
    const rtd::Neighbours batch = flat.search(q.data(), nq, o.k);
    const double batch_s = now() - t;
    // An exact index's single-query and batched time, and how many of its single-query ids equal flat's.
    struct Timed {
        double single_s, batch_s;
        int64_t same;
    };
    auto time_index = [&](const rtd::KnnIndex& index) {
        Timed r{0, 0, 0};
        double t0 = now();
        for (int64_t i = 0; i < nq; ++i) {
            const rtd::Neighbours nb = index.search(q.data() + i * d, 1, o.k);
            for (int64_t j = 0; j < o.k; ++j) r.same += nb.ids[size_t(j)] == one.ids[size_t(i * o.k + j)];
        }
        r.single_s = now() - t0;
        t0 = now();
        index.search(q.data(), nq, o.k);
        r.batch_s = now() - t0;
        return r;
    };
    rtd::KnnIndex gemm(rtd::IndexKind::BLAS, d);
    gemm.add(ds.keys.data(), ds.size());
    const Timed blas = time_index(gemm);
    // the device kind: products by the backend's GEMM (--device cuda: cuBLAS), exact re-ranking on the host
    BackendOptions bo;
    bo.threads = o.threads;
    bo.gpu_weights = WeightType::F32;
    auto be = make_backend(parse_device(o.device), bo);
    rtd::IndexOptions io;
    io.backend = be.get();
    rtd::KnnIndex dev(rtd::IndexKind::DEVICE, d, io);
    dev.add(ds.keys.data(), ds.size());
    dev.search(q.data(), 1, o.k);  // the upload, outside the timing
    const Timed device = time_index(dev);
    rtd::KnnIndex naive(rtd::IndexKind::NAIVE, d);
    naive.add(ds.keys.data(), ds.size());
    const int64_t nq_naive = std::min<int64_t>(nq, 20);
    t = now();
    const rtd::Neighbours nv = naive.search(q.data(), nq_naive, o.k);
    const double naive_s = now() - t;
    int64_t same = 0;
    for (size_t i = 0; i < nv.ids.size(); ++i) same += nv.ids[i] == batch.ids[i];
    std::filesystem::create_directories(dump);
    std::ofstream(dump + "/keys.f32", std::ios::binary).write(reinterpret_cast<const char*>(ds.keys.data()), std::streamsize(ds.keys.size() * 4));
    std::ofstream(dump + "/queries.f32", std::ios::binary).write(reinterpret_cast<const char*>(q.data()), std::streamsize(q.size() * 4));
    std::ofstream(dump + "/ids.i64", std::ios::binary).write(reinterpret_cast<const char*>(batch.ids.data()), std::streamsize(batch.ids.size() * 8));
    std::printf("{\"bench\":\"search\",\"n\":%lld,\"d\":%d,\"nq\":%lld,\"k\":%d,\"add_s\":%.4f,\"single_qps\":%.2f,"
                "\"batch_qps\":%.2f,\"naive_qps\":%.2f,\"naive_equal_ids\":%.4f,\"single_equals_batch\":%s,"
                "\"blas_single_qps\":%.2f,\"blas_batch_qps\":%.2f,\"blas_equal_ids\":%.4f,\"device\":\"%s\","
                "\"device_single_qps\":%.2f,\"device_batch_qps\":%.2f,\"device_equal_ids\":%.4f}\n",
                (long long)ds.size(), d, (long long)nq, o.k, add_s, nq / single_s, nq / batch_s, nq_naive / naive_s,
                double(same) / double(nv.ids.size()), one.ids == batch.ids ? "true" : "false", nq / blas.single_s,
                nq / blas.batch_s, double(blas.same) / double(nq * o.k), be->describe().c_str(), nq / device.single_s,
                nq / device.batch_s, double(device.same) / double(nq * o.k));
    return 0;
}

// Entry i's key: uniform [-1, 1) from a hash of (i, c) (splitmix64), so that every rank makes its own shard.
float hashed(uint64_t i, uint64_t c) {
    uint64_t z = i * 0x9E3779B97F4A7C15ull + c * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return float(double(z >> 11) / double(1ull << 53) * 2.0 - 1.0);
}

int bench_scale(int argc, char** argv) {
    check(argc >= 6, "scale N D NQ OUT_IDS");
    const Opts o = parse_opts(argc, argv, 6);
    boost::mpi::environment env(boost::mpi::threading::funneled, false);
    boost::mpi::communicator world;
    const int64_t n = std::stoll(argv[2]), nq = std::stoll(argv[4]);
    const int32_t d = std::stoi(argv[3]);
    int64_t b = 0, e = 0;
    rtd::shard_range(n, world.rank(), world.size(), b, e);
    double t = now();
    rtd::KnnIndex shard(rtd::IndexKind::FLAT, d);
    shard.reserve(e - b);
    {
        const int64_t block = 4096;
        std::vector<float> keys;
        for (int64_t s = b; s < e; s += block) {
            const int64_t m = std::min(block, e - s);
            keys.resize(size_t(m * d));
            for (int64_t i = 0; i < m; ++i)
                for (int32_t c = 0; c < d; ++c) keys[size_t(i * d + c)] = hashed(uint64_t(s + i), uint64_t(c));
            shard.add(keys.data(), m);
        }
    }
    world.barrier();
    const double build_s = now() - t;
    std::vector<float> q(size_t(nq * d));
    for (int64_t i = 0; i < nq; ++i)
        for (int32_t c = 0; c < d; ++c) q[size_t(i * d + c)] = hashed(uint64_t(n + 17 + i), uint64_t(c));
    rtd::sharded_search(world, shard, b, q.data(), 1, o.k);  // warm-up
    world.barrier();
    t = now();
    for (int64_t i = 0; i < nq; ++i) {  // one query at a time, as at answer time
        const rtd::Neighbours r = rtd::sharded_search(world, shard, b, q.data() + i * d, 1, o.k);
        if (world.rank() == 0) {
            std::ofstream out(argv[5], i == 0 ? std::ios::binary : std::ios::binary | std::ios::app);
            out.write(reinterpret_cast<const char*>(r.ids.data()), std::streamsize(r.ids.size() * 8));
        }
    }
    const double query_s = now() - t;
    if (world.rank() == 0)
        std::printf("{\"bench\":\"scale\",\"n\":%lld,\"d\":%d,\"ranks\":%d,\"nq\":%lld,\"k\":%d,\"build_s\":%.3f,"
                    "\"qps\":%.3f,\"shard_gib\":%.3f}\n",
                    (long long)n, d, world.size(), (long long)nq, o.k, build_s, nq / query_s,
                    double(e - b) * d * 4 / (1 << 30));
    return 0;
}

}  // namespace

int main(int argc, char** argv) try {
    hs::prepare_cpu_runtime(argv);
    check(argc >= 2, "usage: headsweep_bench_rtd build|answer|search|scale ... (see the file's header)");
    const std::string mode = argv[1];
    if (mode == "build") return bench_build(argc, argv);
    if (mode == "answer") return bench_answer(argc, argv);
    if (mode == "search") return bench_search(argc, argv);
    if (mode == "scale") return bench_scale(argc, argv);
    fail("unknown mode ", mode);
} catch (const std::exception& e) {
    std::fprintf(stderr, "headsweep_bench_rtd: %s\n", e.what());
    return 1;
}

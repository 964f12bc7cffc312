// RTD (issue 13): the k-NN search against plain loops (random data, ties, bad k), the label distribution and the
// fusion by hand, the MH-RTD split, shard merging, the option rotations, the datastore file (round trip and every
// bad input, each message naming the file), the builder on random:tiny (resume = uninterrupted), and `rtd` /
// `mh-rtd` / `icl` end to end in the evaluation on a tiny user dataset.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "backend/backend.hpp"
#include "emulated_backend.hpp"
#include "engine/engine.hpp"
#include "eval/method_rtd.hpp"
#include "eval/records.hpp"
#include "eval/run_eval.hpp"
#include "eval/tasks_choice.hpp"
#include "io/h5.hpp"
#include "model/model.hpp"
#include "rtd/builder.hpp"
#include "rtd/datastore.hpp"
#include "rtd/search.hpp"
#include "rtd/tune.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace hs;
using Catch::Contains;

namespace {

std::vector<float> random_keys(int64_t n, int32_t d, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> v(size_t(n) * size_t(d));
    for (float& x : v) x = g(rng);
    return v;
}

rtd::Datastore small_store(int64_t n, int32_t d, int32_t n_head, int32_t n_labels, uint64_t seed) {
    rtd::Datastore ds;
    ds.info.task = "unit";
    ds.info.sources = "none";
    ds.info.prompt_template = "{question}";
    ds.info.model_spec = "random:tiny";
    ds.info.model_sha256 = "abc123";
    ds.info.d = d;
    ds.info.n_head = n_head;
    ds.info.head_dim = d / n_head;
    ds.info.n_labels = n_labels;
    for (int32_t y = 0; y < n_labels; ++y) ds.info.label_names.push_back(std::string(1, char('A' + y)));
    ds.info.planned = n;
    ds.keys = random_keys(n, d, seed);
    for (int64_t i = 0; i < n; ++i) {
        ds.labels.push_back(int32_t(i % n_labels));
        ds.items.push_back(int32_t(i / n_labels));
    }
    return ds;
}

}  // namespace

TEST_CASE("rtd search: faiss flat equals the naive exact search on random data", "[rtd]") {
    const int64_t n = 500, nq = 7, k = 32;
    const int32_t d = 24;
    const std::vector<float> keys = random_keys(n, d, 1), q = random_keys(nq, d, 2);
    rtd::KnnIndex flat(rtd::IndexKind::FLAT, d);
    flat.add(keys.data(), n);
    const rtd::Neighbours a = flat.search(q.data(), nq, k);
    const rtd::Neighbours b = rtd::naive_search(keys.data(), n, d, q.data(), nq, k);
    REQUIRE(a.ids.size() == size_t(nq * k));
    CHECK(a.ids == b.ids);
    for (size_t i = 0; i < a.dist.size(); ++i) CHECK(a.dist[i] == Approx(b.dist[i]).epsilon(1e-5));
    rtd::KnnIndex gemm(rtd::IndexKind::BLAS, d);
    gemm.add(keys.data(), n);
    const rtd::Neighbours c = gemm.search(q.data(), nq, k);
    CHECK(c.ids == b.ids);
    for (size_t i = 0; i < c.dist.size(); ++i) CHECK(c.dist[i] == Approx(b.dist[i]).epsilon(1e-4));
    // squared L2, not L2: one hand-checked distance
    double s = 0;
    for (int32_t c = 0; c < d; ++c) s += double(q[size_t(c)] - keys[size_t(b.ids[0] * d + c)]) * (q[size_t(c)] - keys[size_t(b.ids[0] * d + c)]);
    CHECK(a.dist[0] == Approx(s).epsilon(1e-5));
    // ascending
    for (int64_t j = 1; j < k; ++j) CHECK(a.dist[size_t(j)] >= a.dist[size_t(j - 1)]);
}

namespace {

// The exact search with its products on `be` against the naive search: the same ids and distances (squared L2,
// 1e-4 relative: the norm form's rounding), in blocks of queries (70 = 64 + 6) and one query alone; an add after a
// search is seen by the next one (the keys are uploaded again).
void check_device_search(Backend& be) {
    const int64_t n = 700, nq = 70, k = 16;
    const int32_t d = 40;
    const std::vector<float> keys = random_keys(n, d, 11), q = random_keys(nq, d, 12);
    rtd::IndexOptions o;
    o.backend = &be;
    rtd::KnnIndex dev(rtd::IndexKind::DEVICE, d, o);
    dev.add(keys.data(), 500);
    dev.add(keys.data() + 500 * d, n - 500);  // two adds before the first search
    for (int64_t m : {nq, int64_t(1)}) {
        const rtd::Neighbours a = dev.search(q.data(), m, k);
        const rtd::Neighbours b = rtd::naive_search(keys.data(), n, d, q.data(), m, k);
        CHECK(a.ids == b.ids);
        for (size_t i = 0; i < a.dist.size(); ++i) CHECK(a.dist[i] == Approx(b.dist[i]).epsilon(1e-4));
    }
    const std::vector<float> more = random_keys(50, d, 13);
    std::vector<float> all = keys;
    all.insert(all.end(), more.begin(), more.end());
    dev.add(more.data(), 50);
    const rtd::Neighbours a = dev.search(q.data(), nq, k);
    const rtd::Neighbours b = rtd::naive_search(all.data(), n + 50, d, q.data(), nq, k);
    CHECK(a.ids == b.ids);
    CHECK(dev.size() == n + 50);
    // MH-RTD and RTD through RtdIndex give the flat index's distributions
    const int32_t n_head = 4, n_labels = 3;
    std::vector<int32_t> labels;
    for (int64_t i = 0; i < n; ++i) labels.push_back(int32_t((i * 7) % n_labels));
    rtd::RtdIndex on_dev(keys.data(), labels.data(), n, d, n_labels, n_head, true, true, rtd::IndexKind::DEVICE, o);
    rtd::RtdIndex flat(keys.data(), labels.data(), n, d, n_labels, n_head, true, true, rtd::IndexKind::FLAT);
    for (int64_t i = 0; i < 5; ++i) {
        const float* qi = q.data() + i * d;
        const std::vector<double> r1 = on_dev.rtd(qi, 32, 5.0), r2 = flat.rtd(qi, 32, 5.0);
        const std::vector<double> m1 = on_dev.mh_rtd(qi, 32, 5.0), m2 = flat.mh_rtd(qi, 32, 5.0);
        for (int32_t y = 0; y < n_labels; ++y) {
            CHECK(r1[size_t(y)] == Approx(r2[size_t(y)]).margin(1e-5));
            CHECK(m1[size_t(y)] == Approx(m2[size_t(y)]).margin(1e-5));
        }
    }
}

}  // namespace

TEST_CASE("rtd search: the device kind (products on a backend) equals the naive search", "[rtd][cuda_emu]") {
    SECTION("the CPU backend") {
        auto be = make_backend(Device::CPU, 1);
        check_device_search(*be);
    }
    SECTION("the CUDA backend on the CPU emulator (cuBLAS GEMM, fp32)") {
        BackendOptions o;
        o.gpu_weights = WeightType::F32;
        auto be = make_emulated_cuda_backend(o);
        check_device_search(*be);
    }
    CHECK_THROWS_WITH(rtd::KnnIndex(rtd::IndexKind::DEVICE, 8), Contains("needs a backend"));
    CHECK(rtd::parse_index_kind("device") == rtd::IndexKind::DEVICE);
    CHECK_THROWS_WITH(rtd::parse_index_kind("gpu"), Contains("blas or device"));
}

TEST_CASE("rtd search on a GPU: the device kind equals the naive search", "[rtd][gpu]") {
    BackendOptions o;
    o.gpu_weights = WeightType::F32;
    std::unique_ptr<Backend> be;
    try {
        be = make_backend(Device::CUDA, o);
    } catch (const Error& e) {
        WARN("SKIPPED (no GPU): " << e.what());
        return;
    }
    check_device_search(*be);
}

TEST_CASE("rtd search: ties are ordered by id, k larger than the datastore and k < 1 are errors", "[rtd]") {
    const int32_t d = 4;
    // Entries 0..5: three pairs of identical keys.
    std::vector<float> keys = {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0};
    const std::vector<float> q = {0, 0, 0, 0};
    auto cpu = make_backend(Device::CPU, 1);
    rtd::IndexOptions on_cpu;
    on_cpu.backend = cpu.get();
    for (rtd::IndexKind kind : {rtd::IndexKind::FLAT, rtd::IndexKind::NAIVE, rtd::IndexKind::BLAS, rtd::IndexKind::DEVICE}) {
        rtd::KnnIndex idx(kind, d, on_cpu);
        idx.add(keys.data(), 6);
        const rtd::Neighbours nb = idx.search(q.data(), 1, 4);  // the boundary falls between tie groups
        CHECK(nb.ids == std::vector<int64_t>{0, 1, 2, 3});
        CHECK(nb.dist == std::vector<float>{0, 0, 1, 1});
        CHECK_THROWS_WITH(idx.search(q.data(), 1, 7, "store.h5"), Contains("store.h5") && Contains("k = 7 is larger than the datastore (6 entries)"));
        CHECK_THROWS_WITH(idx.search(q.data(), 1, 0), Contains("k = 0"));
    }
    rtd::KnnIndex empty(rtd::IndexKind::FLAT, d);
    CHECK_THROWS_WITH(empty.search(q.data(), 1, 1, "e.h5"), Contains("empty"));
}

TEST_CASE("rtd search: hnsw and ivf recall against exact", "[rtd]") {
    const int64_t n = 3000, nq = 50, k = 10;
    const int32_t d = 16;
    const std::vector<float> keys = random_keys(n, d, 3), q = random_keys(nq, d, 4);
    rtd::KnnIndex flat(rtd::IndexKind::FLAT, d);
    flat.add(keys.data(), n);
    const rtd::Neighbours exact = flat.search(q.data(), nq, k);
    CHECK(rtd::recall_at_k(exact, exact) == 1.0);
    rtd::IndexOptions o;
    o.nprobe = 16;
    for (rtd::IndexKind kind : {rtd::IndexKind::HNSW, rtd::IndexKind::IVF}) {
        rtd::KnnIndex a(kind, d, o);
        a.add(keys.data(), n);
        const double r = rtd::recall_at_k(a.search(q.data(), nq, k), exact);
        INFO(rtd::index_kind_name(kind) << " recall " << r);
        CHECK(r >= 0.9);
    }
}

TEST_CASE("rtd distribution: softmax(-d/T) by label, fusion and argmax by hand", "[rtd]") {
    const std::vector<float> dist = {0, 1, 2};
    const std::vector<int64_t> ids = {0, 1, 2};
    const std::vector<int32_t> labels = {0, 1, 0};
    const double S = 1 + std::exp(-1.0) + std::exp(-2.0);
    const std::vector<double> r = rtd::label_distribution(dist.data(), ids.data(), 3, labels.data(), 2, 1.0);
    CHECK(r[0] == Approx((1 + std::exp(-2.0)) / S));
    CHECK(r[1] == Approx(std::exp(-1.0) / S));
    // T = 2 halves the exponents; shifting all distances changes nothing
    const std::vector<float> shifted = {100, 101, 102};
    const std::vector<double> r2 = rtd::label_distribution(shifted.data(), ids.data(), 3, labels.data(), 2, 2.0);
    const double S2 = 1 + std::exp(-0.5) + std::exp(-1.0);
    CHECK(r2[1] == Approx(std::exp(-0.5) / S2));
    CHECK_THROWS_WITH(rtd::label_distribution(dist.data(), ids.data(), 3, labels.data(), 2, 0.0), Contains("T = 0"));
    const std::vector<double> p = rtd::softmax({0.0, std::log(3.0)});
    CHECK(p[0] == Approx(0.25));
    CHECK(p[1] == Approx(0.75));
    const std::vector<double> f = rtd::fuse({1.0, 0.0}, p, 0.3);
    CHECK(f[0] == Approx(0.3 + 0.7 * 0.25));
    CHECK(rtd::argmax(rtd::fuse({1.0, 0.0}, p, 1.0)) == 0);
    CHECK(rtd::argmax(rtd::fuse({1.0, 0.0}, p, 0.0)) == 1);
    CHECK(rtd::argmax({0.5, 0.5}) == 0);
    CHECK_THROWS(rtd::fuse({1.0}, p, 0.5));
    CHECK_THROWS(rtd::fuse({1.0, 0.0}, p, 1.5));
}

TEST_CASE("rtd multi-head: slices of d/n_head, T/n_head per head, distributions averaged", "[rtd]") {
    const int64_t n = 200;
    const int32_t d = 48, H = 4, L = 3;  // tiny-gemma3's shape: d_model 48, 4 heads (q_dim 64 is not used)
    const rtd::Datastore ds = small_store(n, d, H, L, 5);
    const std::vector<float> q = random_keys(1, d, 6);
    const std::vector<float> s2 = rtd::head_slice(ds.keys.data(), n, d, H, 2);
    REQUIRE(s2.size() == size_t(n * 12));
    CHECK(s2[12] == ds.keys[size_t(d + 24)]);  // entry 1, dim 0 of head 2 = column 24
    const rtd::RtdIndex index(ds.keys.data(), ds.labels.data(), n, d, L, H, true, true);
    const double T = 3.0;
    const int64_t k = 8;
    std::vector<double> want(L, 0.0);
    for (int32_t h = 0; h < H; ++h) {
        const std::vector<float> kh = rtd::head_slice(ds.keys.data(), n, d, H, h), qh = rtd::head_slice(q.data(), 1, d, H, h);
        const rtd::Neighbours nb = rtd::naive_search(kh.data(), n, d / H, qh.data(), 1, k);
        const auto rh = rtd::label_distribution(nb.dist.data(), nb.ids.data(), k, ds.labels.data(), L, T / H);
        for (int32_t y = 0; y < L; ++y) want[size_t(y)] += rh[size_t(y)] / H;
    }
    const std::vector<double> got = index.mh_rtd(q.data(), k, T);
    for (int32_t y = 0; y < L; ++y) CHECK(got[size_t(y)] == Approx(want[size_t(y)]));
    const rtd::Neighbours full = rtd::naive_search(ds.keys.data(), n, d, q.data(), 1, k);
    const auto r1 = rtd::label_distribution(full.dist.data(), full.ids.data(), k, ds.labels.data(), L, T);
    const auto g1 = index.rtd(q.data(), k, T);
    for (int32_t y = 0; y < L; ++y) CHECK(g1[size_t(y)] == Approx(r1[size_t(y)]));
    CHECK_THROWS_WITH(rtd::RtdIndex(ds.keys.data(), ds.labels.data(), n, d, L, 5, false, true), Contains("n_head = 5"));
}

TEST_CASE("rtd shards: merging per-shard top-k equals the unsharded top-k", "[rtd]") {
    const int64_t n = 1000, nq = 5, k = 16;
    const int32_t d = 8;
    const std::vector<float> keys = random_keys(n, d, 7), q = random_keys(nq, d, 8);
    rtd::KnnIndex all(rtd::IndexKind::FLAT, d);
    all.add(keys.data(), n);
    const rtd::Neighbours want = all.search(q.data(), nq, k);
    for (int shards : {2, 3, 7}) {
        std::vector<rtd::Neighbours> parts;
        for (int s = 0; s < shards; ++s) {
            const int64_t b = n * s / shards, e = n * (s + 1) / shards;
            rtd::KnnIndex idx(rtd::IndexKind::FLAT, d);
            idx.add(keys.data() + b * d, e - b);
            rtd::Neighbours p = idx.search(q.data(), nq, std::min<int64_t>(k, e - b));
            for (int64_t& id : p.ids) id += b;
            parts.push_back(std::move(p));
        }
        const rtd::Neighbours got = rtd::merge_topk(parts, k);
        CHECK(got.ids == want.ids);
        CHECK(got.dist == want.dist);
    }
}

TEST_CASE("rtd prompts: one entry per rotation, the value is the rotated gold index", "[rtd]") {
    eval::ChoiceData d;
    d.task = "user";
    d.multiple_choice = true;
    d.label_names = {"A", "B", "C", "D"};
    d.label_tokens = d.label_names;
    const eval::ChoiceItem it{"q1", "Which is red?", {"sky", "grass", "blood", "snow"}, 2};
    for (int32_t r = 0; r < 4; ++r) {
        int32_t y = -1;
        const std::string p = eval::render_choice_prompt(d, it, r, &y);
        CHECK(y == ((2 - r) % 4 + 4) % 4);
        // the option shown at the label's letter is the gold text
        CHECK(p.find(std::string(1, char('A' + y)) + ". blood\n") != std::string::npos);
        CHECK(p.rfind("Choose the best answer of the question. Output A, B, C, etc.\nQuestion: Which is red?\nOptions: \n", 0) == 0);
        CHECK(p.ends_with("\nThe answer is: "));
    }
    int32_t y = -1;
    CHECK(eval::render_choice_prompt(d, it, 0, &y) ==
          "Choose the best answer of the question. Output A, B, C, etc.\nQuestion: Which is red?\nOptions: \nA. sky\nB. "
          "grass\nC. blood\nD. snow\nThe answer is: ");
    const Tokenizer tok = Tokenizer::byte_level(300);
    d.items = {it, {"q2", "Two?", {"a", "b", "c"}, 0}};
    CHECK_THROWS_WITH(eval::plan_choice_datastore(d, tok, 100, 1000, true), Contains("3 choices, the task has 4 labels"));
    d.items = {it, it, it};
    const eval::ChoiceDatastorePlan p = eval::plan_choice_datastore(d, tok, 10, 1000, true);
    CHECK(p.entries.size() == 8);  // the cap keeps whole items: 2 of 3
    CHECK(p.info.items_used == 2);
    CHECK(p.entries[5].label == 1);
    CHECK(p.entries[5].item == 1);
    CHECK(eval::plan_choice_datastore(d, tok, 100, 1000, false).entries.size() == 3);
    CHECK(eval::plan_choice_datastore(d, tok, 100, 20, true).info.items_skipped == 3);  // prompts too long
}

TEST_CASE("rtd datastore file: round trip, tuned T, and every bad input names the file", "[rtd]") {
    TempDir dir("rtd");
    const rtd::Datastore ds = small_store(40, 16, 4, 4, 9);
    const std::string path = dir.file("ds.h5");
    rtd::write_datastore(path, ds);
    const rtd::Datastore back = rtd::read_datastore(path);
    CHECK(back.keys == ds.keys);
    CHECK(back.labels == ds.labels);
    CHECK(back.items == ds.items);
    CHECK(back.info.label_names == ds.info.label_names);
    CHECK(back.info.model_sha256 == "abc123");
    CHECK(back.info.tuned_T == 0);
    rtd::write_tuned(path, 12.5, 3.25, "grid");
    CHECK(rtd::read_datastore_info(path).tuned_T == 12.5);
    CHECK(rtd::read_datastore_info(path).tuned_T_mh == 3.25);
    CHECK_THROWS_WITH(rtd::write_datastore(path, ds), Contains("ds.h5"));  // exists

    // another model: sha256 or dimension differs; choices count differs
    CHECK_NOTHROW(rtd::check_compatible(back, path, "abc123", 16, 4, "task t"));
    CHECK_THROWS_WITH(rtd::check_compatible(back, path, "ffff", 16, 4, "task t"), Contains(path) && Contains("another model"));
    CHECK_THROWS_WITH(rtd::check_compatible(back, path, "abc123", 32, 4, "task t"), Contains(path) && Contains("dimension 16"));
    CHECK_THROWS_WITH(rtd::check_compatible(back, path, "abc123", 16, 3, "task t"),
                      Contains(path) && Contains("3 choices but the datastore has 4 labels"));

    // empty datastore
    rtd::Datastore empty = small_store(0, 16, 4, 4, 9);
    const std::string epath = dir.file("empty.h5");
    rtd::write_datastore(epath, empty);
    CHECK_THROWS_WITH(rtd::read_datastore(epath), Contains(epath) && Contains("empty datastore"));

    // labels out of range: the writer refuses them; a file edited afterwards is refused on reading
    rtd::Datastore badl = ds;
    badl.labels[3] = 7;
    CHECK_THROWS_WITH(rtd::write_datastore(dir.file("badl.h5"), badl), Contains("label 7 out of range"));
    const std::string lpath = dir.file("labels.h5");
    rtd::write_datastore(lpath, ds);
    {
        h5::File f = h5::File::open(lpath, h5::Mode::read_write);
        std::vector<int32_t> l = ds.labels;
        l[5] = -1;
        f.open_dataset("labels").write(l);
        f.close();
    }
    CHECK_THROWS_WITH(rtd::read_datastore(lpath), Contains(lpath) && Contains("label -1 of entry 5 is out of range"));

    // corrupt, truncated, zero bytes, missing, not a datastore
    const std::string cpath = dir.write("corrupt.h5", std::string(4096, 'x'));
    CHECK_THROWS_WITH(rtd::read_datastore(cpath), Contains(cpath) && Contains("corrupt or truncated"));
    const std::string tpath = dir.file("trunc.h5");
    {
        std::ifstream in(path, std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(tpath, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    CHECK_THROWS_WITH(rtd::read_datastore(tpath), Contains(tpath));
    const std::string zpath = dir.write("zero.h5", "");
    CHECK_THROWS_WITH(rtd::read_datastore(zpath), Contains(zpath) && Contains("empty file"));
    CHECK_THROWS_WITH(rtd::read_datastore(dir.file("none.h5")), Contains("none.h5") && Contains("no such file"));
    const std::string other = dir.file("other.h5");
    h5::File::create(other).close();
    CHECK_THROWS_WITH(rtd::read_datastore(other), Contains(other) && Contains("not an RTD datastore"));

    // a partial build is refused until resumed
    const std::string ppath = dir.file("partial.h5");
    {
        rtd::DatastoreWriter w(ppath, ds.info, false, false);
        w.append(ds.keys.data(), ds.labels.data(), ds.items.data(), 10);
    }
    CHECK_THROWS_WITH(rtd::read_datastore(ppath), Contains(ppath) && Contains("incomplete build (10 of 40"));
    rtd::DatastoreInfo changed = ds.info;
    changed.cap = 7;
    CHECK_THROWS_WITH(rtd::DatastoreWriter(ppath, changed, true, false), Contains("cannot resume") && Contains("cap"));
}

TEST_CASE("rtd builder: keys are the final hidden state, an interrupted, resumed build equals an uninterrupted one", "[rtd]") {
    TempDir dir("rtd_build");
    const Model model = open_model("random:tiny");
    auto backend = make_backend(Device::CPU, 1);
    Engine engine(model, *backend);
    const std::vector<int32_t> ids = model.tokenizer.encode("Question: x?\nThe answer is: ", false, false);
    const std::vector<float> key = rtd::embed_prompt(engine, ids);
    ForwardHooks h;
    h.final_hidden = true;
    const ForwardResult r = engine.forward(ids, 1, int64_t(ids.size()), h);
    CHECK(key == r.final_hidden);  // hidden_only gives the same state as a forward with logits
    CHECK(key.size() == size_t(model.config.d_model));

    // Rotations share a prefix: run once into a KV cache, the same keys up to rounding.
    std::vector<std::vector<int32_t>> rot;
    for (const char* t : {"Question: which?\nA. x\nB. y\nThe answer is: ", "Question: which?\nA. y\nB. x\nThe answer is: "})
        rot.push_back(model.tokenizer.encode(t, false, false));
    const std::vector<float> grouped = rtd::embed_group(engine, {&rot[0], &rot[1]});
    REQUIRE(grouped.size() == 2 * size_t(model.config.d_model));
    for (int i = 0; i < 2; ++i) {
        const std::vector<float> alone = rtd::embed_prompt(engine, rot[size_t(i)]);
        for (size_t c = 0; c < alone.size(); ++c)
            CHECK(grouped[size_t(i) * alone.size() + c] == Approx(alone[c]).margin(1e-4));
    }

    std::vector<rtd::BuildEntry> plan;
    for (int32_t i = 0; i < 9; ++i)
        plan.push_back({i / 3, i % 3, model.tokenizer.encode("prompt number " + std::to_string(i), false, false)});
    rtd::DatastoreInfo info;
    info.task = "unit";
    info.model_spec = "random:tiny";
    info.model_sha256 = eval::datastore_model_identity("random:tiny");
    info.d = model.config.d_model;
    info.n_head = model.config.n_head;
    info.head_dim = info.d / info.n_head;
    info.n_labels = 3;
    info.label_names = {"A", "B", "C"};
    info.planned = 9;
    rtd::BuildOptions o;
    o.progress = false;
    o.flush_every = 2;
    rtd::build_datastore(engine, plan, info, dir.file("full.h5"), o);
    o.max_entries = 4;
    rtd::build_datastore(engine, plan, info, dir.file("cut.h5"), o);
    CHECK_THROWS_WITH(rtd::read_datastore(dir.file("cut.h5")), Contains("incomplete"));
    o.max_entries = -1;
    o.resume = true;
    const rtd::BuildStats st = rtd::build_datastore(engine, plan, info, dir.file("cut.h5"), o);
    CHECK(st.already == 3);  // entry 3 of item 1 was cut from its item: the item is embedded again, together
    CHECK(st.computed == 6);
    const rtd::Datastore a = rtd::read_datastore(dir.file("full.h5")), b = rtd::read_datastore(dir.file("cut.h5"));
    CHECK(a.keys == b.keys);
    CHECK(a.labels == b.labels);
    CHECK(a.items == b.items);
    const std::vector<float> k4 = rtd::embed_prompt(engine, plan[4].ids);
    for (int32_t c = 0; c < info.d; ++c) CHECK(a.keys[size_t(4 * info.d + c)] == Approx(k4[size_t(c)]).margin(1e-4));
}

TEST_CASE("rtd eval: rtd, mh-rtd and icl end to end on a tiny user dataset, bad datastores fail before any answer", "[rtd][eval]") {
    TempDir dir("rtd_eval");
    // 6 four-option questions; the test set is the train set, so with a small T the nearest key is the query's own
    // rotation-0 entry and rtd answers every item correctly.
    std::string jsonl;
    const char* qs[] = {"red", "blue", "green", "black", "white", "pink"};
    for (int i = 0; i < 6; ++i)
        jsonl += std::string("{\"query\": \"Which colour is ") + qs[i] + "?\", \"choices\": [\"c" + std::to_string(i) +
                 "a\", \"c" + std::to_string(i) + "b\", \"c" + std::to_string(i) + "c\", \"c" + std::to_string(i) +
                 "d\"], \"gold\": " + std::to_string(i % 4) + "}\n";
    const std::string train = dir.write("train.jsonl", jsonl);
    eval::TaskBuildOptions to;
    to.data_dir = dir.dir.string();
    to.user_train = train;
    to.user_test = train;
    const Model model = open_model("random:tiny");
    auto backend = make_backend(Device::CPU, 1);
    Engine engine(model, *backend);
    const eval::ChoiceData data = eval::load_choice_data("user", eval::ChoiceSplit::TRAIN, to);
    eval::ChoiceDatastorePlan plan = eval::plan_choice_datastore(data, model.tokenizer, 20480, 100000, true);
    CHECK(plan.entries.size() == 24);
    plan.info.model_spec = "random:tiny";
    plan.info.model_sha256 = eval::datastore_model_identity("random:tiny");
    plan.info.d = model.config.d_model;
    plan.info.n_head = model.config.n_head;
    plan.info.head_dim = plan.info.d / plan.info.n_head;
    rtd::BuildOptions bo;
    bo.progress = false;
    const std::string ds = dir.file("ds-user.h5");
    rtd::build_datastore(engine, plan.entries, plan.info, ds, bo);
    rtd::write_tuned(ds, 1e-3, 1e-3, "test");

    eval::EvalJob job;
    job.models = {"random:tiny"};
    job.tasks = {"user"};
    job.methods = {"vanilla", "rtd", "mh-rtd", "icl"};
    job.method_settings.rtd_datastore = dir.file("ds-{task}.h5");
    job.method_settings.rtd_k = 4;
    job.task_options = to;
    job.task_options.choice_shots = 2;
    job.threads = 1;
    job.progress = false;
    job.output = dir.file("eval.h5");
    const eval::EvalOutcome out = eval::run_eval(job, nullptr);
    CHECK(out.computed == 24);
    int rtd_right = 0;
    for (const eval::Record& r : eval::RecordsFile::read(job.output)) {
        if (r.method == "rtd") {
            rtd_right += int(r.score);
            CHECK(r.detail.find("\"r\":[") != std::string::npos);
            CHECK(r.detail.find("\"p_lm\":[") != std::string::npos);
            // the answer's time split: the forward and the neighbour search, within the record's latency
            const auto num = [&](const char* key) {
                const size_t at = r.detail.find(std::string("\"") + key + "\":");
                REQUIRE(at != std::string::npos);
                return std::stod(r.detail.substr(at + std::strlen(key) + 3));
            };
            CHECK(num("forward_s") > 0);
            CHECK(num("search_s") >= 0);
            CHECK(num("forward_s") + num("search_s") <= r.latency_s + 1e-3);
        }
        if (r.method == "icl") CHECK(r.detail.find("icl_tokens") != std::string::npos);
    }
    CHECK(rtd_right == 6);

    // The device index (products by the run's backend GEMM; cuBLAS with --device cuda) answers as the flat one.
    eval::EvalJob on_dev = job;
    on_dev.methods = {"rtd", "mh-rtd"};
    on_dev.method_settings.rtd_index = "device";
    on_dev.output = dir.file("eval-device.h5");
    CHECK(eval::run_eval(on_dev, nullptr).computed == 12);
    std::map<std::string, std::string> flat_answers;
    for (const eval::Record& r : eval::RecordsFile::read(job.output))
        if (r.method == "rtd" || r.method == "mh-rtd") flat_answers[r.method + "/" + r.id] = r.output;
    int compared = 0;
    for (const eval::Record& r : eval::RecordsFile::read(on_dev.output)) {
        CHECK(flat_answers[r.method + "/" + r.id] == r.output);
        ++compared;
    }
    CHECK(compared == 12);

    // Bad input stops the run before any answer, naming the file.
    eval::EvalJob bad = job;
    bad.methods = {"rtd"};
    bad.output = dir.file("bad.h5");
    bad.method_settings.rtd_k = 25;
    CHECK_THROWS_WITH(eval::run_eval(bad, nullptr), Contains("ds-user.h5") && Contains("k = 25 is larger"));
    bad.method_settings.rtd_k = 4;
    bad.overwrite = true;
    bad.models = {"random:tiny:2"};  // another model (same shape, other weights)
    CHECK_THROWS_WITH(eval::run_eval(bad, nullptr), Contains("ds-user.h5") && Contains("another model"));
    bad.models = {"random:tiny-mha"};  // another dimension
    CHECK_THROWS_WITH(eval::run_eval(bad, nullptr), Contains("ds-user.h5") && Contains("dimension"));
    bad.models = {"random:tiny"};
    bad.method_settings.rtd_datastore = dir.file("missing-{task}.h5");
    CHECK_THROWS_WITH(eval::run_eval(bad, nullptr), Contains("missing-user.h5"));
    // a test item whose choices differ in number from the datastore's labels
    std::string three;
    for (int i = 0; i < 3; ++i) three += "{\"query\": \"q\", \"choices\": [\"a\", \"b\", \"c\"], \"gold\": 1}\n";
    bad.method_settings.rtd_datastore = job.method_settings.rtd_datastore;
    bad.task_options.user_test = dir.write("three.jsonl", three);
    CHECK_THROWS_WITH(eval::run_eval(bad, nullptr), Contains("ds-user.h5") && Contains("3 choices but the datastore has 4 labels"));
    CHECK(eval::RecordsFile::read(bad.output).empty());
}

TEST_CASE("rtd composition: pear+rtd searches a datastore of PEAR's folded model, the base model's is refused", "[rtd][eval]") {
    TempDir dir("rtd_pear");
    std::string jsonl;
    for (int i = 0; i < 4; ++i)
        jsonl += "{\"query\": \"item " + std::to_string(i) + "\", \"choices\": [\"x\", \"y\"], \"gold\": " +
                 std::to_string(i % 2) + "}\n";
    eval::TaskBuildOptions to;
    to.data_dir = dir.dir.string();
    to.user_train = to.user_test = dir.write("t.jsonl", jsonl);
    const Model base = open_model("random:tiny");
    auto backend = make_backend(Device::CPU, 1);
    eval::MethodSettings ms;
    ms.pear_heads = "0:1=0.5";
    ms.rtd_datastore = dir.file("{task}.h5");
    ms.rtd_k = 2;
    ms.rtd_T = 1.0;
    // The datastore as `headsweep datastore build --compose pear` makes it.
    auto pear = eval::make_method("pear", ms);
    eval::EvalContext ctx(base, "random:tiny", *backend);
    pear->prepare(ctx);
    const Model* folded = pear->composable_model();
    REQUIRE(folded != nullptr);
    const std::string spec = "random:tiny|" + pear->config();
    Engine engine(*folded, *backend);
    const eval::ChoiceData data = eval::load_choice_data("user", eval::ChoiceSplit::TRAIN, to);
    eval::ChoiceDatastorePlan plan = eval::plan_choice_datastore(data, base.tokenizer, 100, 10000, true);
    plan.info.model_spec = spec;
    plan.info.model_sha256 = eval::datastore_model_identity(spec);
    CHECK(plan.info.model_sha256 != eval::datastore_model_identity("random:tiny"));
    plan.info.d = base.config.d_model;
    plan.info.n_head = base.config.n_head;
    plan.info.head_dim = plan.info.d / plan.info.n_head;
    rtd::BuildOptions bo;
    bo.progress = false;
    rtd::build_datastore(engine, plan.entries, plan.info, dir.file("user.h5"), bo);

    eval::EvalJob job;
    job.models = {"random:tiny"};
    job.tasks = {"user"};
    job.methods = {"pear+rtd"};
    job.method_settings = ms;
    job.task_options = to;
    job.threads = 1;
    job.progress = false;
    job.output = dir.file("eval.h5");
    CHECK(eval::run_eval(job, nullptr).computed == 4);
    job.methods = {"rtd"};
    job.output = dir.file("eval2.h5");
    CHECK_THROWS_WITH(eval::run_eval(job, nullptr), Contains("user.h5") && Contains("another model"));
}

TEST_CASE("rtd tune: leave-item-out excludes the query's own rotations, the relative grid and the choice", "[rtd]") {
    // Labels are random; each item has 4 entries with identical keys and the same label. Without excluding the
    // query's item its 3 twins (distance 0) would decide every answer: accuracy 1 at small T. With the exclusion
    // the labels are unpredictable (about 1/2 for 2 labels).
    const int64_t items = 150;
    const int32_t d = 8;
    rtd::Datastore ds = small_store(items * 4, d, 2, 2, 13);
    std::mt19937_64 rng(14);
    for (int64_t it = 0; it < items; ++it) {
        const int32_t y = int32_t(rng() % 2);
        for (int r = 0; r < 4; ++r) {
            const int64_t e = it * 4 + r;
            ds.items[size_t(e)] = int32_t(it);
            ds.labels[size_t(e)] = y;
            std::copy_n(ds.keys.begin() + it * 4 * d, d, ds.keys.begin() + e * d);
        }
    }
    const rtd::TuneResult r = rtd::tune_temperature(ds, 8, 200);
    CHECK(r.queries == 200);
    REQUIRE(r.T.size() == 13);
    CHECK(r.T[8] == Approx(r.D));  // factor 2^0
    for (double a : r.acc) CHECK(a < 0.75);
    CHECK(r.acc[r.best] == *std::max_element(r.acc.begin(), r.acc.end()));
    // Separable labels (key dim 0 = the label): leave-item-out finds them.
    for (int64_t e = 0; e < ds.size(); ++e) ds.keys[size_t(e * d)] += 50.0f * float(ds.labels[size_t(e)]);
    const rtd::TuneResult s = rtd::tune_temperature(ds, 8, 200);
    CHECK(s.acc[s.best] == 1.0);
    CHECK(s.report().find("leave-item-out on 200") != std::string::npos);
    CHECK_THROWS_WITH(rtd::tune_temperature(ds, 600, 10, rtd::IndexKind::FLAT, "t.h5"), Contains("t.h5") && Contains("k = 600"));
}

TEST_CASE("rtd tasks: MMLU train = dev + val, subjects interleaved, CSV read as Python's csv module", "[rtd]") {
    eval::TaskBuildOptions to;
    to.data_dir = std::string(HEADSWEEP_SOURCE_DIR) + "/tests/fixtures/rtd_data";
    const eval::ChoiceData d = eval::load_choice_data("mmlu-0shot", eval::ChoiceSplit::TRAIN, to);
    REQUIRE(d.items.size() == 11);  // anatomy 2 dev + 1 val, college_medicine 2 dev + 6 val
    CHECK(d.items[0].id == "anatomy-dev-0");
    CHECK(d.items[1].id == "college_medicine-dev-0");
    CHECK(d.items[4].id == "anatomy-val-0");
    CHECK(d.items[10].id == "college_medicine-val-5");
    CHECK(d.items[10].question == "Which of the following would be the most accurate definition of Nietzsche\u2019s Will to Truth?\"");
    CHECK(d.items[10].options[0] == "An intrinsic desire to know the truth.");
    CHECK(d.items[10].gold == 0);
    const eval::ChoiceData t = eval::load_choice_data("mmlu-0shot", eval::ChoiceSplit::TEST, to);
    REQUIRE(t.items.size() == 3);
    CHECK(t.items[1].id == "college_medicine-0");  // question k of every subject, in turn
}

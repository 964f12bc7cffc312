// PEAR training (pear/train.hpp), folding and export (pear/fold.hpp), attribution mode (pear/sweep.hpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "engine/engine.hpp"
#include "gguf/gguf.hpp"
#include "io/h5.hpp"
#include "pear/fold.hpp"
#include "pear/sweep.hpp"
#include "pear/train.hpp"
#include "test_model_path.hpp"

using namespace hs;
using namespace hs::pear;

namespace {

std::string tmp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("headsweep_test_" + name)).string();
}

TrainOptions tiny_options() {
    TrainOptions o;
    o.heads = {{0, 1}, {1, 3}, {1, 0}};
    o.half_len = 6;
    o.batch = 5;
    o.steps = 8;
    o.planned_steps = 40;
    o.lr = 0.05;
    o.eval_batch = 4;
    return o;
}

}  // namespace

TEST_CASE("heads parse and print, and bad heads are refused", "[train]") {
    auto h = parse_heads("3:1,0:7");
    REQUIRE(h.size() == 2);
    CHECK(h[0] == HeadRef{3, 1});
    CHECK(heads_string(h) == "3:1,0:7");
    CHECK_THROWS_WITH(parse_heads("3-1"), Catch::Contains("layer:head"));
    CHECK_THROWS_WITH(parse_heads("a:1"), Catch::Contains("layer:head"));
    TrainOptions o = tiny_options();
    ModelConfig c = random_model_config("tiny");
    o.heads = {{2, 0}};
    CHECK_THROWS_WITH(o.validate(c), Catch::Contains("does not exist"));
    o.heads = {{1, 0}, {1, 0}};
    CHECK_THROWS_WITH(o.validate(c), Catch::Contains("twice"));
}

TEST_CASE("learning-rate schedule follows HF linear-with-warmup", "[train]") {
    TrainOptions o;
    CHECK(lr_at(o, 0) == 0.0);
    CHECK(lr_at(o, 1) == Approx(0.0025));
    CHECK(lr_at(o, 2) == Approx(0.005));
    CHECK(lr_at(o, 59) == Approx(0.005 * (2500 - 59) / 2498.0));
    CHECK(lr_at(o, 2500) == 0.0);
}

TEST_CASE("a training step's gradient is the mean of per-sequence gradients and tau moves against it", "[train]") {
    Model m = make_random_model("tiny", 3);
    auto be = make_cpu_backend(1);
    Engine engine(m, *be);
    TrainOptions o = tiny_options();
    Trainer tr(engine, o);
    EvalStats before = tr.evaluate(std::vector<float>(3, 1.0f));
    CHECK(std::isfinite(before.loss));
    CHECK(before.loss > 0);
    for (int i = 0; i < o.steps; ++i) tr.step();
    const auto& s = tr.state();
    CHECK(s.step == o.steps);
    CHECK(s.loss.size() == size_t(o.steps));
    CHECK(s.tau_history.size() == size_t(o.steps) * 3);
    CHECK(s.lr[0] == 0.0);  // the first warm-up step has lr 0: tau unchanged
    CHECK(s.tau_history[0] == 1.0f);
    bool moved = false;
    for (float t : s.tau) moved |= t != 1.0f;
    CHECK(moved);
    // the evaluation after training with the same tau is deterministic
    CHECK(tr.evaluate(s.tau).loss == tr.evaluate(s.tau).loss);
}

TEST_CASE("a resumed run ends with the same tau as an uninterrupted one", "[train]") {
    Model m = make_random_model("tiny", 3);
    auto be = make_cpu_backend(1);
    Engine engine(m, *be);
    TrainOptions o = tiny_options();
    Trainer full(engine, o);
    while (full.state().step < o.steps) full.step();

    const std::string path = tmp_path("resume.h5");
    {
        Trainer first(engine, o);  // "killed" after 3 steps: only its checkpoint survives
        for (int i = 0; i < 3; ++i) first.step();
        write_train_file(path, o, first.state(), "random:tiny:3");
    }
    Trainer second(engine, o);
    second.restore(read_train_file(path, o));
    CHECK(second.state().step == 3);
    while (second.state().step < o.steps) second.step();
    CHECK(second.state().tau == full.state().tau);
    CHECK(second.state().adam_m == full.state().adam_m);
    CHECK(second.state().loss == full.state().loss);

    // a checkpoint of another job is refused
    TrainOptions other = o;
    other.seed = 9;
    CHECK_THROWS_WITH(read_train_file(path, other), Catch::Contains("seed differs"));
    other = o;
    other.heads = {{0, 1}};
    CHECK_THROWS_WITH(read_train_file(path, other), Catch::Contains("heads differ"));
    std::filesystem::remove(path);
}

TEST_CASE("folding tau into W_O gives the logits of runtime scaling", "[fold]") {
    for (const char* shape : {"tiny", "tiny-qwen2"}) {
        Model m = make_random_model(shape, 5);
        Model folded = make_random_model(shape, 5);
        const auto& c = m.config;
        std::vector<HeadRef> heads = {{0, 2}, {1, 1}, {1, 3}};
        std::vector<float> tau = {0.6f, 1.7f, -0.3f};
        const auto hs = head_scale_of(c, heads, tau);
        fold_head_scale(c, folded.weights, hs);
        auto be = make_cpu_backend(1);
        Engine e1(m, *be), e2(folded, *be);
        std::vector<int32_t> ids;
        for (int i = 0; i < 21; ++i) ids.push_back((i * 37 + 5) % c.n_vocab);
        ForwardHooks hk;
        hk.logits = LogitsMode::ALL;
        hk.head_scale = hs;
        auto r1 = e1.forward(ids, 1, 21, hk);
        hk.head_scale.clear();
        auto r2 = e2.forward(ids, 1, 21, hk);
        double err = 0, scale = 0;
        for (size_t i = 0; i < r1.logits.size(); ++i)
            err = std::max(err, double(std::fabs(r1.logits[i] - r2.logits[i]))),
            scale = std::max(scale, double(std::fabs(r1.logits[i])));
        INFO("shape " << shape);
        CHECK(err / scale < 1e-5);
        // biases are never scaled
        if (c.qkv_bias) CHECK(folded.weights.layers[1].bv[0] == m.weights.layers[1].bv[0]);
    }
}

TEST_CASE("export writes a GGUF with tau folded in that our loader reads back", "[fold][model]") {
    const std::string src = test_model_path();
    const std::string dst = tmp_path("export.gguf");
    std::vector<HeadRef> heads = {{5, 2}, {5, 7}, {20, 0}};
    std::vector<float> tau = {0.8f, 0.9f, 1.25f};
    ExportReport rep = export_folded_gguf(src, dst, heads, tau);
    CHECK(rep.touched.size() == 2);  // layers 5 and 20
    GgufFile a = GgufFile::open(src), b = GgufFile::open(dst);
    // every untouched tensor is byte for byte the same (so Q/K keep the file's own order); every key is kept
    REQUIRE(a.tensors().size() == b.tensors().size());
    for (const auto& t : a.tensors()) {
        const GgufTensorInfo& u = b.tensor(t.name);
        CHECK(u.type == t.type);
        CHECK(u.dims == t.dims);
        const bool same = t.nbytes == u.nbytes && std::equal(t.data, t.data + t.nbytes, u.data);
        if (t.name == "blk.5.attn_output.weight" || t.name == "blk.20.attn_output.weight") CHECK(!same);
        else CHECK(same);
    }
    for (const auto& [k, v] : a.metadata()) CHECK(b.find(k) != nullptr);
    CHECK(b.get_string("headsweep.pear.heads") == "5:2,5:7,20:0");
    CHECK(b.get_float_array("headsweep.pear.tau") == tau);

    // logits: exported model vs runtime scaling of the original. The scaled heads' Q4_1 blocks carry tau * d and
    // tau * m rounded to fp16 (quants unchanged), so the agreement is that of fp16 scale rounding on 3 heads.
    Model ma = load_model(src), mb = load_model(dst);
    auto be = make_cpu_backend(2);
    Engine ea(ma, *be), eb(mb, *be);
    std::vector<int32_t> ids = ma.tokenizer.encode("The capital of France is Paris. The capital of Italy is", false, false);
    const int64_t T = int64_t(ids.size());
    ForwardHooks hk;
    hk.logits = LogitsMode::ALL;
    hk.head_scale = head_scale_of(ma.config, heads, tau);
    auto ra = ea.forward(ids, 1, T, hk);
    hk.head_scale.clear();
    auto rb = eb.forward(ids, 1, T, hk);
    auto r0 = ea.forward(ids, 1, T, hk);  // unscaled original, for scale
    double err = 0, eff = 0, scale = 0;
    for (size_t i = 0; i < ra.logits.size(); ++i) {
        err = std::max(err, double(std::fabs(ra.logits[i] - rb.logits[i])));
        eff = std::max(eff, double(std::fabs(ra.logits[i] - r0.logits[i])));
        scale = std::max(scale, double(std::fabs(ra.logits[i])));
    }
    WARN("export: max |logit(exported) - logit(runtime tau)| = " << err << " (max |logit| " << scale
                                                                  << "; effect of tau itself " << eff << ")");
    CHECK(err < 0.25 * eff);
    // the folded in-memory model matches runtime scaling to fp32 rounding
    fold_head_scale(ma.config, ma.weights, head_scale_of(ma.config, heads, tau));
    Engine ef(ma, *be);
    auto rf = ef.forward(ids, 1, T, hk);
    double ferr = 0;
    for (size_t i = 0; i < ra.logits.size(); ++i) ferr = std::max(ferr, double(std::fabs(ra.logits[i] - rf.logits[i])));
    CHECK(ferr / scale < 1e-5);
    std::filesystem::remove(dst);
}

TEST_CASE("attribution mode: the estimate is the derivative of pi along the ablation direction", "[pear][attribution]") {
    Model m = make_random_model("tiny", 4);
    auto be = make_cpu_backend(1);
    Engine engine(m, *be);
    const auto& c = m.config;
    SweepOptions o;
    o.mode = ScoreMode::ATTRIBUTION;
    o.settings = {{6, 8}};
    SettingRun run(engine, o, 0);
    auto est = run.score(WorkItem{0, 0, c.n_layer, 0, c.n_head});
    REQUIRE(est.size() == size_t(c.n_heads_total()));
    const int32_t N = 6, n = 8, T = 2 * n, p = T - 2, dh = c.d_head, q_dim = c.q_dim();
    const auto& tokens = run.batch().tokens;
    ForwardHooks cap;
    for (int32_t l = 0; l < c.n_layer; ++l) cap.z_layers.push_back(l);
    cap.z_positions = {p};
    cap.logits = LogitsMode::NONE;
    auto clean = engine.forward(tokens, N, T, cap);
    auto pi_at = [&](int32_t l, int32_t h, double eps) {  // z at p -> z + eps (zbar - z), full recompute
        ForwardHooks hk;
        hk.logits = LogitsMode::POSITIONS;
        hk.logit_positions = {p};
        for (int32_t b = 0; b < N; ++b) {
            std::vector<float> v(dh);
            for (int32_t a = 0; a < dh; ++a) {
                double mean = 0;
                for (int32_t s = 0; s < N; ++s) mean += clean.z[l][size_t(s) * q_dim + h * dh + a];
                mean /= N;
                const double z = clean.z[l][size_t(b) * q_dim + h * dh + a];
                v[a] = float(z + eps * (mean - z));
            }
            hk.head_patches.push_back(HeadPatch{l, h, b, {p}, v});
        }
        auto r = engine.forward(tokens, N, T, hk);
        double pi = 0;
        for (int32_t b = 0; b < N; ++b) {
            const float* lg = r.logits_at(b, 0, c.n_vocab);
            double mean = 0;
            for (int32_t v = 0; v < c.n_vocab; ++v) mean += lg[v];
            pi += lg[run.batch().target(b)] - mean / c.n_vocab;
        }
        return pi / N;
    };
    std::vector<double> fd, an;
    for (int32_t l = 0; l < c.n_layer; ++l)
        for (int32_t h = 0; h < c.n_head; ++h) {
            const double e = 0.05;
            fd.push_back((pi_at(l, h, e) - pi_at(l, h, -e)) / (2 * e));
            an.push_back(est[size_t(l) * c.n_head + h] - run.pi_clean());
        }
    double err = 0, sc = 0;
    for (size_t i = 0; i < fd.size(); ++i) err = std::max(err, std::fabs(fd[i] - an[i])), sc = std::max(sc, std::fabs(fd[i]));
    INFO("max err " << err << " scale " << sc);
    CHECK(err < 1e-3 * sc + 1e-6);
}

TEST_CASE("the top heads are read from a sweep file's /top_k or /ranking", "[train]") {
    const std::string path = tmp_path("sweep_heads.h5");
    {
        h5::File f = h5::File::create(path, h5::Overwrite::yes);
        f.create_dataset<int32_t>("ranking", {6}).write(std::vector<int32_t>{7, 2, 4, 0, 1, 3});
        f.close();
    }
    auto h = read_sweep_top_heads(path, 3, 4);  // ranking l*H + h with H = 4
    REQUIRE(h.size() == 3);
    CHECK(h[0] == HeadRef{1, 3});
    CHECK(h[1] == HeadRef{0, 2});
    CHECK(h[2] == HeadRef{1, 0});
    CHECK_THROWS_WITH(read_sweep_top_heads(path, 9, 4), Catch::Contains("asked for 9"));
    {
        h5::File f = h5::File::open(path, h5::Mode::read_write);
        f.create_dataset<int32_t>("top_k/layer", {2}).write(std::vector<int32_t>{5, 6});
        f.create_dataset<int32_t>("top_k/head", {2}).write(std::vector<int32_t>{1, 0});
        f.close();
    }
    h = read_sweep_top_heads(path, 2, 4);
    REQUIRE(h.size() == 2);
    CHECK(h[0] == HeadRef{5, 1});
    CHECK(read_sweep_top_heads(path, 0, 4).size() == 2);
    CHECK(read_sweep_top_heads(path, 3, 4)[0] == HeadRef{1, 3});  // more than /top_k holds: from /ranking
    std::filesystem::remove(path);
}

// PEAR training (pear/train.hpp), folding and export (pear/fold.hpp), attribution mode (pear/sweep.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "engine/engine.hpp"
#include "gguf/gguf.hpp"
#include "gguf/quant.hpp"
#include "io/h5.hpp"
#include "pear/fold.hpp"
#include "pear/sweep.hpp"
#include "pear/train.hpp"
#include "attribution_reference.hpp"
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
    // the checkpoint is not a result: eval --pear-train and export refuse its tau, naming the file and the step
    CHECK_THROWS_WITH(read_trained_tau(path), Catch::Contains("resume.h5") && Catch::Contains("not finished (step 3 of"));
    write_train_file(path, o, second.state(), "random:tiny:3");  // the finished run's file is read
    const TrainedTau t = read_trained_tau(path);
    CHECK(t.step == o.steps);
    CHECK(t.tau == second.state().tau);
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

namespace {

// One model for the export test: its file and three heads, two of them in one layer (so a touched tensor has scaled
// and unscaled heads side by side).
struct ExportCase {
    const char* name;
    std::string (*path)();
    std::vector<HeadRef> heads;
};

// Max over a tensor's elements of |a - b|, and of |b|, over the columns [c0, c1) of every row (dequantized).
std::pair<double, double> column_block_error(const GgufTensorInfo& a, const GgufTensorInfo& b, int64_t c0, int64_t c1,
                                             float s) {
    const int64_t cols = a.dims[0], rows = a.dims[1];
    std::vector<float> ra(static_cast<size_t>(cols)), rb(static_cast<size_t>(cols));
    double err = 0, scale = 0;
    for (int64_t r = 0; r < rows; ++r) {
        dequantize_row(a.type, a.data + uint64_t(r) * ggml_row_bytes(a.type, cols), ra.data(), cols);
        dequantize_row(b.type, b.data + uint64_t(r) * ggml_row_bytes(b.type, cols), rb.data(), cols);
        for (int64_t c = c0; c < c1; ++c) {
            err = std::max(err, std::fabs(double(rb[size_t(c)]) - double(s) * double(ra[size_t(c)])));
            scale = std::max(scale, std::fabs(double(s) * double(ra[size_t(c)])));
        }
    }
    return {err, scale};
}

}  // namespace

TEST_CASE("export writes a GGUF with tau folded in that our loader reads back", "[fold][model]") {
    // SmolLM2 (attn_output Q4_1, d_head 64: two blocks of 32 per head and row) and Gemma 3 270M (attn_output Q4_K,
    // d_head 256: one super-block of 256 per head and row; layer 5 is global, layer 16 sliding).
    const ExportCase ec = GENERATE(ExportCase{"SmolLM2-135M", test_model_path, {{5, 2}, {5, 7}, {20, 0}}},
                                   ExportCase{"gemma3-270m", test_gemma3_path, {{5, 1}, {5, 3}, {16, 0}}});
    INFO("model " << ec.name);
    const std::string src = ec.path();
    const std::string dst = tmp_path("export.gguf");
    const std::vector<HeadRef>& heads = ec.heads;
    const std::vector<float> tau = {0.8f, 0.9f, 1.25f};
    const std::string t_first = "blk." + std::to_string(heads[0].layer) + ".attn_output.weight";
    const std::string t_last = "blk." + std::to_string(heads[2].layer) + ".attn_output.weight";
    ExportReport rep = export_folded_gguf(src, dst, heads, tau);
    std::sort(rep.touched.begin(), rep.touched.end());  // in the file's tensor order
    CHECK(rep.touched == std::vector<std::string>{t_last, t_first});
    GgufFile a = GgufFile::open(src), b = GgufFile::open(dst);
    const std::string arch = a.get_string("general.architecture");
    const int64_t n_head = a.get_int(arch + ".attention.head_count");
    const int64_t d_head = a.get_int(arch + ".attention.key_length", a.get_int(arch + ".embedding_length") / n_head);
    // The scaled W_O keeps its own type (no re-quantisation): one rescaled block per scaled head, row and block.
    const GgufTensorInfo& wo = a.tensor(t_first);
    CHECK(rep.type == ggml_type_name(wo.type));
    CHECK(rep.rescaled_blocks == 3 * wo.dims[1] * (d_head / ggml_block_size(wo.type)));
    // every tensor keeps its type and shape; every untouched tensor is byte for byte the same (so Q/K keep the
    // file's own order); every key is kept
    REQUIRE(a.tensors().size() == b.tensors().size());
    for (const auto& t : a.tensors()) {
        INFO("tensor " << t.name);
        const GgufTensorInfo& u = b.tensor(t.name);
        CHECK(u.type == t.type);
        CHECK(u.dims == t.dims);
        const bool same = t.nbytes == u.nbytes && std::equal(t.data, t.data + t.nbytes, u.data);
        if (t.name == t_first || t.name == t_last) CHECK(!same);
        else CHECK(same);
    }
    for (const auto& [k, v] : a.metadata()) CHECK(b.find(k) != nullptr);
    CHECK(b.get_string("headsweep.pear.heads") == heads_string(heads));
    CHECK(b.get_float_array("headsweep.pear.tau") == tau);
    // In a touched tensor the scaled heads' columns decode to tau times the original up to the fp16 rounding of the
    // new block scales (relative 2^-11 each), and the other heads' columns are unchanged.
    double worst_block = 0;
    for (const std::string& name : {t_first, t_last}) {
        const int32_t layer = name == t_first ? heads[0].layer : heads[2].layer;
        for (int64_t h = 0; h < n_head; ++h) {
            float s = 1.0f;
            for (size_t i = 0; i < heads.size(); ++i)
                if (heads[i].layer == layer && heads[i].head == h) s = tau[i];
            const auto [err, scale] = column_block_error(a.tensor(name), b.tensor(name), h * d_head, (h + 1) * d_head, s);
            INFO(name << " head " << h << " tau " << s << ": max |folded - tau * original| " << err << " of " << scale);
            if (s == 1.0f) CHECK(err == 0.0);
            else CHECK(err <= 4e-3 * scale);
            if (s != 1.0f) worst_block = std::max(worst_block, err / scale);
        }
    }
    WARN(ec.name << " export: " << rep.touched.size() << " " << rep.type << " tensors, " << rep.rescaled_blocks
                 << " blocks rescaled; scaled heads decode to tau * original within " << worst_block
                 << " of their largest value");

    // logits: exported model vs runtime scaling of the original. The scaled heads' blocks carry tau * d (and
    // tau * m / tau * dmin) rounded to fp16 (quants unchanged), so the agreement is that of fp16 scale rounding on
    // 3 heads.
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
    WARN(ec.name << " export: max |logit(exported) - logit(runtime tau)| = " << err << " (max |logit| " << scale
                 << "; effect of tau itself " << eff << ")");
    CHECK(err < 0.02 * eff);  // measured: 0.0017 of 1.03 (SmolLM2), 0.0093 of 4.93 (Gemma 3)
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
    const AttributionReference ref(engine, c, run, 6, 8);  // z at p -> z + eps (zbar - z), full recompute
    std::vector<double> fd, an;
    for (int32_t l = 0; l < c.n_layer; ++l)
        for (int32_t h = 0; h < c.n_head; ++h) {
            const double e = 0.05;
            fd.push_back(ref.derivative(l, h, e));
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

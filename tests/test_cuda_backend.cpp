// The CUDA backend against the CPU backend: every op on random data, then the engine with its hooks, the KV cache,
// greedy generation and both sweep modes on random models. The same checks run twice:
//   [cuda_emu]  on the CPU emulator of CUDA (tests/cuda_emu), in CI: the kernels' indexing, masking, reductions and
//               the backend's memory handling, without a GPU;
//   [gpu]       on a real GPU (skipped, with a message saying so, where the build has no CUDA or there is no GPU).
// Tolerances per weight type: fp32 weights differ from the CPU only in summation order (1e-4 relative); bf16/fp16
// weights round GEMM inputs to 16 bits, so logits are compared as ||delta|| / ||ref|| < 1e-2 (the bound).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "backend/backend.hpp"
#include "emulated_backend.hpp"
#include "engine/engine.hpp"
#include "pear/sweep.hpp"
#include "test_model_path.hpp"
#include "util/error.hpp"

using namespace hs;

namespace {

using BackendFactory = std::function<std::unique_ptr<Backend>(WeightType)>;

std::unique_ptr<Backend> emulated(WeightType t) {
    BackendOptions o;
    o.gpu_weights = t;
    return make_emulated_cuda_backend(o);
}

// The real GPU, or null (with the reason in `why`) where there is none.
std::unique_ptr<Backend> real_gpu(WeightType t, std::string* why = nullptr) {
    BackendOptions o;
    o.gpu_weights = t;
    try {
        return make_backend(Device::CUDA, o);
    } catch (const Error& e) {
        if (why) *why = e.what();
        return nullptr;
    }
}

#define REQUIRE_GPU(be, type)                                                     \
    std::string why_no_gpu;                                                       \
    auto be = real_gpu(type, &why_no_gpu);                                        \
    if (!be) {                                                                    \
        WARN("SKIPPED (no GPU): " << why_no_gpu);                                 \
        return;                                                                   \
    }

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

std::vector<int32_t> random_ids(int n, int vocab, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> ids(n);
    for (auto& i : ids) i = int32_t(g() % uint64_t(vocab));
    return ids;
}

// ||a - ref|| / ||ref||
double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
    REQUIRE(a.size() == ref.size());
    double num = 0, den = 1e-300;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
        den += double(ref[i]) * ref[i];
    }
    return std::sqrt(num / den);
}
// max |a - ref| / max |ref|
double rel_max(const std::vector<float>& a, const std::vector<float>& ref) {
    REQUIRE(a.size() == ref.size());
    double err = 0, scale = 1e-30;
    for (size_t i = 0; i < a.size(); ++i) {
        REQUIRE(std::isfinite(a[i]));
        err = std::max(err, std::fabs(double(a[i]) - ref[i]));
        scale = std::max(scale, std::fabs(double(ref[i])));
    }
    return err / scale;
}

double tolerance(WeightType t) { return t == WeightType::F32 ? 1e-4 : 1e-2; }

// Host <-> device helpers for one backend.
struct Io {
    Backend& be;
    DeviceBuffer put(const std::vector<float>& h) {
        DeviceBuffer d(be, int64_t(h.size()));
        be.upload(h.data(), d.get(), int64_t(h.size()));
        return d;
    }
    std::vector<float> get(const float* d, size_t n) {
        std::vector<float> h(n);
        be.download(d, h.data(), int64_t(n));
        return h;
    }
};

// ---------------------------------------------------------------- op by op
void check_elementwise_ops(Backend& dev) {
    auto cpu = make_cpu_backend(1);
    Io io{dev};
    const int64_t rows = 7, n = 45;
    const auto x = randn(size_t(rows * n), 1), y = randn(size_t(rows * n), 2), b = randn(size_t(n), 3);

    SECTION("add, add_bias, add_cyclic, scale_columns, fill") {
        DeviceBuffer dx = io.put(x), dy = io.put(y), db = io.put(b);
        std::vector<float> ref = x;
        dev.add(dx.get(), dy.get(), rows * n);
        cpu->add(ref.data(), y.data(), rows * n);
        dev.add_bias(dx.get(), db.get(), rows, n);
        cpu->add_bias(ref.data(), b.data(), rows, n);
        DeviceBuffer da = io.put(std::vector<float>(y.begin(), y.begin() + 3 * n));
        dev.add_cyclic(dx.get(), rows, da.get(), 3, n);
        cpu->add_cyclic(ref.data(), rows, y.data(), 3, n);
        dev.scale_columns(dx.get(), rows - 1, n, 5, 11, -0.37f);
        cpu->scale_columns(ref.data(), rows - 1, n, 5, 11, -0.37f);
        REQUIRE(rel_max(io.get(dx.get(), x.size()), ref) < 1e-6);
        dev.fill(dx.get(), 10, 2.5f);
        auto got = io.get(dx.get(), x.size());
        for (int i = 0; i < 10; ++i) REQUIRE(got[i] == 2.5f);
        REQUIRE(got[10] == Approx(ref[10]).margin(1e-6));
    }
    SECTION("write_blocks and copy_2d") {
        DeviceBuffer dx = io.put(x);
        std::vector<float> ref = x;
        const std::vector<int64_t> at = {3, 100, 250, 7 * 45 - 9};
        const auto vals = randn(at.size() * 9, 4);
        dev.write_blocks(dx.get(), at.data(), int64_t(at.size()), 9, vals.data());
        cpu->write_blocks(ref.data(), at.data(), int64_t(at.size()), 9, vals.data());
        REQUIRE(io.get(dx.get(), x.size()) == ref);
        DeviceBuffer dz(dev, 4 * 20);
        dev.fill(dz.get(), 4 * 20, 0.0f);
        dev.copy_2d(dx.get() + 2, n, dz.get() + 1, 20, 4, 13);
        auto got = io.get(dz.get(), 4 * 20);
        for (int r = 0; r < 4; ++r)
            for (int c = 0; c < 20; ++c)
                REQUIRE(got[r * 20 + c] == ((c >= 1 && c < 14) ? ref[r * n + 2 + c - 1] : 0.0f));
    }
    SECTION("gated activations") {
        for (Activation act : {Activation::SILU, Activation::GELU_TANH}) {
            DeviceBuffer dg = io.put(x), du = io.put(y);
            std::vector<float> ref(x.size());
            dev.gated_activation(dg.get(), du.get(), dg.get(), rows * n, act);
            cpu->gated_activation(x.data(), y.data(), ref.data(), rows * n, act);
            REQUIRE(rel_max(io.get(dg.get(), x.size()), ref) < 1e-5);
        }
    }
    SECTION("rmsnorm, in place and not, rows of several widths") {
        for (int64_t width : {int64_t(16), int64_t(45), int64_t(300), int64_t(1000)}) {
            INFO("width " << width);
            const auto xs = randn(size_t(rows * width), 5, 3.0f), w = randn(size_t(width), 6);
            DeviceBuffer dx = io.put(xs), dw = io.put(w), dout(dev, rows * width);
            std::vector<float> ref(xs.size());
            dev.rmsnorm(dx.get(), dw.get(), dout.get(), rows, width, 1e-5f);
            cpu->rmsnorm(xs.data(), w.data(), ref.data(), rows, width, 1e-5f);
            REQUIRE(rel_max(io.get(dout.get(), xs.size()), ref) < 1e-5);
            dev.rmsnorm(dx.get(), dw.get(), dx.get(), rows, width, 1e-5f);
            REQUIRE(rel_max(io.get(dx.get(), xs.size()), ref) < 1e-5);
        }
    }
    SECTION("rope and its inverse") {
        const int64_t B = 2, T = 5, pos0 = 300;  // past the first table size: the table must grow
        const int32_t H = 3, dh = 24;
        const auto xs = randn(size_t(B * T * H * dh), 7);
        DeviceBuffer dx = io.put(xs);
        std::vector<float> ref = xs;
        dev.rope(dx.get(), B, T, pos0, H, dh, 10000.0f);
        cpu->rope(ref.data(), B, T, pos0, H, dh, 10000.0f);
        REQUIRE(rel_max(io.get(dx.get(), xs.size()), ref) < 1e-6);
        dev.rope_backward(dx.get(), B, T, pos0, H, dh, 10000.0f);
        REQUIRE(rel_max(io.get(dx.get(), xs.size()), xs) < 1e-5);
    }
}

void check_attention(Backend& dev) {
    auto cpu = make_cpu_backend(1);
    Io io{dev};
    struct Shape {
        int32_t n_head, n_head_kv, d_head;
        int64_t batch, seq, pos0;
        int32_t window;
    };
    const Shape shapes[] = {{4, 2, 16, 2, 13, 0, 0},  {4, 4, 40, 1, 9, 5, 0},   {6, 2, 64, 2, 3, 70, 0},
                            {2, 1, 128, 1, 37, 4, 8}, {2, 2, 256, 1, 5, 29, 0}, {8, 2, 80, 3, 1, 40, 16}};
    for (const Shape& s : shapes) {
        INFO("heads " << s.n_head << "/" << s.n_head_kv << " d_head " << s.d_head << " B " << s.batch << " T "
                      << s.seq << " pos0 " << s.pos0 << " window " << s.window);
        const int64_t cap = s.pos0 + s.seq + 3, q_dim = int64_t(s.n_head) * s.d_head,
                      kv_dim = int64_t(s.n_head_kv) * s.d_head;
        const auto q = randn(size_t(s.batch * s.seq * q_dim), 11), k = randn(size_t(s.batch * cap * kv_dim), 12),
                   v = randn(size_t(s.batch * cap * kv_dim), 13);
        DeviceBuffer dq = io.put(q), dk = io.put(k), dv = io.put(v), dz(dev, s.batch * s.seq * q_dim);
        std::vector<float> ref(q.size());
        AttentionArgs a;
        a.batch = s.batch;
        a.seq = s.seq;
        a.pos0 = s.pos0;
        a.cache_len = cap;
        a.n_head = s.n_head;
        a.n_head_kv = s.n_head_kv;
        a.d_head = s.d_head;
        a.scale = 1.0f / std::sqrt(float(s.d_head));
        a.window = s.window;
        AttentionArgs ah = a, ad = a;
        ah.q = q.data(), ah.k_cache = k.data(), ah.v_cache = v.data(), ah.z = ref.data();
        ad.q = dq.get(), ad.k_cache = dk.get(), ad.v_cache = dv.get(), ad.z = dz.get();
        cpu->attention(ah);
        dev.attention(ad);
        REQUIRE(rel_max(io.get(dz.get(), ref.size()), ref) < 1e-5);

        const std::vector<int32_t> rows = {int32_t(s.seq - 1), 0};
        const size_t n_out = size_t(s.batch * s.n_head * 2 * (s.pos0 + s.seq));
        std::vector<float> p_dev(n_out, -1.0f), p_cpu(n_out, -2.0f);
        dev.attention_probs(ad, rows.data(), 2, p_dev.data());
        cpu->attention_probs(ah, rows.data(), 2, p_cpu.data());
        REQUIRE(rel_max(p_dev, p_cpu) < 1e-5);
    }
}

// Weight-dependent ops (embed, matmul, matmul_dx) against the CPU on the weights of a random model.
void check_weight_ops(Backend& dev, WeightType t) {
    Model m = make_random_model("tiny-qwen2", 2);
    auto cpu = make_cpu_backend(1);
    Engine e_dev(m, dev);
    const ModelWeights& W = e_dev.device_weights();
    const LayerWeights &Ld = W.layers[1], &Lh = m.weights.layers[1];
    REQUIRE(Ld.wq.type == t);
    Io io{dev};
    const int64_t rows = 11;
    const auto x = randn(size_t(rows * Lh.w_down.cols), 21), y0 = randn(size_t(rows * Lh.w_down.rows), 22);
    DeviceBuffer dx = io.put(x), dy = io.put(y0);
    std::vector<float> ref = y0;
    dev.matmul(dx.get(), Ld.w_down, dy.get(), rows, /*accumulate=*/true);
    cpu->matmul(x.data(), Lh.w_down, ref.data(), rows, true);
    REQUIRE(rel_l2(io.get(dy.get(), ref.size()), ref) < tolerance(t) / 10);
    dev.matmul(dx.get(), Ld.w_down, dy.get(), rows, false);
    cpu->matmul(x.data(), Lh.w_down, ref.data(), rows, false);
    REQUIRE(rel_l2(io.get(dy.get(), ref.size()), ref) < tolerance(t));

    std::vector<float> dxr(x.size());
    DeviceBuffer ddx(dev, int64_t(x.size()));
    dev.matmul_dx(dy.get(), Ld.w_down, ddx.get(), rows, false);
    cpu->matmul_dx(ref.data(), Lh.w_down, dxr.data(), rows, false);
    REQUIRE(rel_l2(io.get(ddx.get(), dxr.size()), dxr) < tolerance(t));

    const auto ids = random_ids(int(rows), m.config.n_vocab, 5);
    DeviceBuffer de(dev, rows * m.config.d_model);
    std::vector<float> eref(size_t(rows * m.config.d_model));
    dev.embed(W.token_embd, ids.data(), rows, 1.5f, de.get());
    cpu->embed(m.weights.token_embd, ids.data(), rows, 1.5f, eref.data());
    REQUIRE(rel_max(io.get(de.get(), eref.size()), eref) < (t == WeightType::F32 ? 1e-7 : 1e-2));
    const int32_t bad = m.config.n_vocab;
    REQUIRE_THROWS_WITH(dev.embed(W.token_embd, &bad, 1, 1.0f, de.get()), Catch::Contains("outside the vocabulary"));
}

// ---------------------------------------------------------------- the engine on top
void check_engine(Backend& dev, WeightType t) {
    for (const char* shape : {"tiny", "tiny-qwen2", "tiny-gemma3"}) {
        INFO("shape " << shape << ", weights " << weight_type_name(t));
        Model m = make_random_model(shape, 9);
        const ModelConfig& c = m.config;
        auto cpu = make_cpu_backend(1);
        Engine ec(m, *cpu), ed(m, dev);
        const int64_t B = 2, T = 19;
        const auto ids = random_ids(int(B * T), c.n_vocab, 17);

        ForwardHooks hk;
        hk.logits = LogitsMode::ALL;
        hk.head_scale.assign(size_t(c.n_layer) * c.n_head, 1.0f);
        hk.head_scale[1] = 0.0f;
        hk.head_scale[size_t(c.n_head) + 2] = 1.7f;
        hk.head_patches.push_back(HeadPatch{1, 1, 1, {3, 7}, randn(size_t(2 * c.d_head), 31)});
        hk.head_patches.push_back(HeadPatch{0, 0, -1, {5}, randn(size_t(c.d_head), 32)});
        hk.head_patches.push_back(HeadPatch{1, 1, -1, {7}, randn(size_t(c.d_head), 33)});  // overlaps the first
        hk.z_layers = {0, 1};
        hk.z_positions = {2, 18};
        hk.residuals = {{0, ResidualPoint::AFTER_ATTENTION}, {1, ResidualPoint::BLOCK_OUTPUT}};
        hk.attn_prob_layers = {1};
        hk.attn_prob_rows = {0, 11};
        hk.final_hidden = true;
        const ForwardResult rc = ec.forward(ids, B, T, hk), rd = ed.forward(ids, B, T, hk);
        REQUIRE(rel_l2(rd.logits, rc.logits) < tolerance(t));
        REQUIRE(rel_l2(rd.final_hidden, rc.final_hidden) < tolerance(t));
        for (int l = 0; l < 2; ++l) REQUIRE(rel_l2(rd.z[l], rc.z[l]) < tolerance(t));
        for (const auto& [key, v] : rc.residuals) REQUIRE(rel_l2(rd.residuals.at(key), v) < tolerance(t));
        REQUIRE(rel_max(rd.attn_probs[1], rc.attn_probs[1]) < (t == WeightType::F32 ? 1e-4 : 5e-2));
        if (t == WeightType::F32) {
            // argmax agrees wherever the CPU's top two logits are not a near tie
            for (int64_t r = 0; r < B * T; ++r) {
                const float* a = rc.logits.data() + r * c.n_vocab;
                const float* b = rd.logits.data() + r * c.n_vocab;
                std::vector<float> sorted(a, a + c.n_vocab);
                std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
                if (sorted[0] - sorted[1] > 1e-3f)
                    REQUIRE(std::max_element(a, a + c.n_vocab) - a == std::max_element(b, b + c.n_vocab) - b);
            }
        }

        // Start from a residual at layer 1, frozen attention at layer 0 (start skips it), logits at positions.
        ForwardHooks hst;
        hst.start_layer = 1;
        const auto start = randn(size_t(B * T * c.d_model), 41);
        hst.start_residual = start.data();
        hst.logits = LogitsMode::POSITIONS;
        hst.logit_positions = {0, 4, 18};
        REQUIRE(rel_l2(ed.forward({}, B, T, hst).logits, ec.forward({}, B, T, hst).logits) < tolerance(t));

        // KV cache: a prefill of 12 then 7 single-token steps equals the full forward's last logits.
        KvCache cache(dev, c, 1, 32);
        const std::vector<int32_t> seq(ids.begin(), ids.begin() + T);
        ForwardResult step = ed.forward(std::vector<int32_t>(seq.begin(), seq.begin() + 12), 1, 12, {}, &cache);
        for (int64_t i = 12; i < T; ++i) step = ed.forward({seq[size_t(i)]}, 1, 1, {}, &cache);
        const ForwardResult full = ec.forward(seq, 1, T);
        REQUIRE(rel_l2(step.logits, full.logits) < tolerance(t));
    }
}

void check_generation_fp32(Backend& dev) {
    Model m = make_random_model("tiny", 4);
    auto cpu = make_cpu_backend(1);
    Engine ec(m, *cpu), ed(m, dev);
    GenerateOptions o;
    o.max_new_tokens = 24;
    o.stop_at_eog = false;
    const auto prompt = random_ids(9, m.config.n_vocab, 8);
    REQUIRE(generate(ed, prompt, o).tokens == generate(ec, prompt, o).tokens);
}

void check_sweeps(Backend& dev, WeightType t) {
    using namespace hs::pear;
    // tiny-gemma3: post-norms (the path form's non-additive step), windows, and attribution through its backward
    for (const char* shape : {"tiny-mha", "tiny-gemma3"}) {
        Model m = make_random_model(shape, 3);
        const ModelConfig& c = m.config;
        auto cpu = make_cpu_backend(1);
        Engine ec(m, *cpu), ed(m, dev);
        for (ScoreMode mode : {ScoreMode::PATH, ScoreMode::TOTAL, ScoreMode::ATTRIBUTION}) {
            INFO("shape " << shape << ", mode " << score_mode_name(mode));
            SweepOptions o;
            o.mode = mode;
            o.settings = {{5, 7}};
            SettingRun rc(ec, o, 0), rd(ed, o, 0);
            REQUIRE(rd.pi_clean() == Approx(rc.pi_clean()).epsilon(tolerance(t)).margin(tolerance(t)));
            const WorkItem all{0, 0, c.n_layer, 0, c.n_head};
            const auto sc = rc.score(all), sd = rd.score(all);
            double err = 0, scale = 0;
            for (size_t i = 0; i < sc.size(); ++i) {
                err = std::max(err, std::fabs(sd[i] - sc[i]));
                scale = std::max(scale, std::fabs(sc[i] - rc.pi_clean()));
            }
            // Differences from the clean pi are what rank heads: compare against their size.
            REQUIRE(err <= tolerance(t) * std::max(scale, 1e-3) * 10);
            if (t == WeightType::F32) {
                auto order = [](std::vector<double> s) {
                    std::vector<int> idx(s.size());
                    for (size_t i = 0; i < idx.size(); ++i) idx[i] = int(i);
                    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return s[size_t(a)] < s[size_t(b)]; });
                    return std::vector<int>(idx.begin(), idx.begin() + 3);
                };
                REQUIRE(order(sd) == order(sc));
            }
        }
    }
}

// ---------------------------------------------------------------- backward ops and the engine's gradients
void check_backward(Backend& dev) {
    auto cpu = make_cpu_backend(1);
    Io io{dev};
    SECTION("rmsnorm and gated activation backward") {
        const int64_t rows = 5, n = 70;
        const auto x = randn(size_t(rows * n), 51, 2.0f), w = randn(size_t(n), 52), dy = randn(size_t(rows * n), 53),
                   dx0 = randn(size_t(rows * n), 54);
        for (bool acc : {false, true}) {
            DeviceBuffer dX = io.put(x), dW = io.put(w), dDY = io.put(dy), dDX = io.put(dx0);
            std::vector<float> ref = dx0;
            dev.rmsnorm_backward(dX.get(), dW.get(), dDY.get(), dDX.get(), rows, n, 1e-6f, acc);
            cpu->rmsnorm_backward(x.data(), w.data(), dy.data(), ref.data(), rows, n, 1e-6f, acc);
            REQUIRE(rel_max(io.get(dDX.get(), ref.size()), ref) < 1e-5);
        }
        for (Activation act : {Activation::SILU, Activation::GELU_TANH}) {
            DeviceBuffer dG = io.put(x), dU = io.put(dx0), dD = io.put(dy), dUp(dev, rows * n);
            std::vector<float> rg(x.size()), ru(x.size());
            dev.gated_activation_backward(dG.get(), dU.get(), dD.get(), dD.get(), dUp.get(), rows * n, act);
            cpu->gated_activation_backward(x.data(), dx0.data(), dy.data(), rg.data(), ru.data(), rows * n, act);
            REQUIRE(rel_max(io.get(dD.get(), rg.size()), rg) < 1e-5);
            REQUIRE(rel_max(io.get(dUp.get(), ru.size()), ru) < 1e-5);
        }
    }
    SECTION("per-head q/k norm backward (Gemma 3: rows of d_head)") {
        // rows = positions * heads, n = d_head: one short row per head, as the engine's q/k-norm backward calls it
        for (int32_t dh : {16, 256}) {
            const int64_t rows = 6 * 4;
            const auto x = randn(size_t(rows * dh), 55, 1.5f), w = randn(size_t(dh), 56, 0.3f),
                       dy = randn(size_t(rows * dh), 57);
            DeviceBuffer dX = io.put(x), dW = io.put(w), dDY = io.put(dy), dDX(dev, rows * dh);
            std::vector<float> ref(x.size());
            dev.rmsnorm_backward(dX.get(), dW.get(), dDY.get(), dDX.get(), rows, dh, 1e-6f, false);
            cpu->rmsnorm_backward(x.data(), w.data(), dy.data(), ref.data(), rows, dh, 1e-6f, false);
            INFO("d_head " << dh);
            REQUIRE(rel_max(io.get(dDX.get(), ref.size()), ref) < 1e-5);
        }
    }
    SECTION("attention backward (training form)") {
        struct Case {
            int32_t H, Hkv, dh, window;
        };
        // grouped heads with and without a window; Gemma 3's 1 kv head of 256 dims, sliding and global
        for (const Case cs : {Case{4, 2, 40, 0}, Case{4, 2, 40, 3}, Case{4, 1, 256, 5}, Case{4, 1, 256, 0}}) {
            INFO("heads " << cs.H << "/" << cs.Hkv << " d_head " << cs.dh << " window " << cs.window);
            const int64_t B = 2, T = 11;
            const int32_t H = cs.H, Hkv = cs.Hkv, dh = cs.dh, window = cs.window;
            const int64_t q_dim = H * dh, kv_dim = Hkv * dh;
            const auto q = randn(size_t(B * T * q_dim), 61), k = randn(size_t(B * T * kv_dim), 62),
                       v = randn(size_t(B * T * kv_dim), 63), dz = randn(size_t(B * T * q_dim), 64);
            DeviceBuffer dQ = io.put(q), dK = io.put(k), dV = io.put(v), dZ = io.put(dz), dq(dev, B * T * q_dim),
                         dk(dev, B * T * kv_dim), dv(dev, B * T * kv_dim);
            std::vector<float> rq(q.size()), rk(k.size()), rv(v.size());
            AttentionArgs a;
            a.batch = B, a.seq = T, a.pos0 = 0, a.cache_len = T, a.n_head = H, a.n_head_kv = Hkv, a.d_head = dh;
            a.scale = dh > 64 ? 0.0625f : 0.2f, a.window = window;
            AttentionArgs ah = a, ad = a;
            ah.q = q.data(), ah.k_cache = k.data(), ah.v_cache = v.data();
            ad.q = dQ.get(), ad.k_cache = dK.get(), ad.v_cache = dV.get();
            cpu->attention_backward(ah, dz.data(), rq.data(), rk.data(), rv.data());
            dev.attention_backward(ad, dZ.get(), dq.get(), dk.get(), dv.get());
            REQUIRE(rel_max(io.get(dq.get(), rq.size()), rq) < 1e-4);
            REQUIRE(rel_max(io.get(dk.get(), rk.size()), rk) < 1e-4);
            REQUIRE(rel_max(io.get(dv.get(), rv.size()), rv) < 1e-4);
        }
    }
    SECTION("cross-entropy and head dots") {
        const int64_t rows = 3, V = 1000;
        auto logits = randn(size_t(rows * V), 71, 3.0f);
        logits[5] = logits[9] = 40.0f;                 // a tie: the first index is the argmax
        const std::vector<int32_t> tgt = {5, 9, 999};
        DeviceBuffer dL = io.put(logits);
        std::vector<double> loss_d(rows), loss_c(rows);
        std::vector<uint8_t> ok_d(rows), ok_c(rows);
        dev.softmax_cross_entropy(dL.get(), tgt.data(), rows, V, 0.25, loss_d.data(), ok_d.data());
        cpu->softmax_cross_entropy(logits.data(), tgt.data(), rows, V, 0.25, loss_c.data(), ok_c.data());
        for (int r = 0; r < rows; ++r) REQUIRE(loss_d[size_t(r)] == Approx(loss_c[size_t(r)]).epsilon(1e-9));
        REQUIRE(ok_d == ok_c);
        REQUIRE(ok_c == std::vector<uint8_t>{1, 0, 0});
        REQUIRE(rel_max(io.get(dL.get(), logits.size()), logits) < 1e-6);
        const int32_t bad = int32_t(V);
        REQUIRE_THROWS_WITH(dev.softmax_cross_entropy(dL.get(), &bad, 1, V, 1.0, nullptr, nullptr),
                            Catch::Contains("outside the vocabulary"));

        const auto a = randn(6 * 50, 72), b = randn(6 * 50, 73);
        DeviceBuffer dA = io.put(a), dB = io.put(b);
        std::vector<double> hd(4, 1.0), hc(4, 1.0);
        dev.head_dots(dA.get(), dB.get(), 6, 50, 4, 12, hd.data());
        cpu->head_dots(a.data(), b.data(), 6, 50, 4, 12, hc.data());
        for (int h = 0; h < 4; ++h) REQUIRE(hd[size_t(h)] == Approx(hc[size_t(h)]).epsilon(1e-6));
    }
}

void check_gradients(Backend& dev, WeightType t) {
    for (const char* shape : {"tiny-qwen2", "tiny-gemma3"}) {  // tiny-gemma3: T = 10 > its window of 4
        INFO("shape " << shape << ", weights " << weight_type_name(t));
        Model m = make_random_model(shape, 6);
        const ModelConfig& c = m.config;
        auto cpu = make_cpu_backend(1);
        Engine ec(m, *cpu), ed(m, dev);
        const int64_t B = 3, T = 10;
        const auto ids = random_ids(int(B * T), c.n_vocab, 19);
        for (LossKind loss : {LossKind::CROSS_ENTROPY, LossKind::LOGIT_MARGIN}) {
            GradRequest rq;
            rq.head_scale.assign(size_t(c.n_layer) * c.n_head, 0.8f);
            rq.positions = {4, 9};
            rq.targets = random_ids(int(B * 2), c.n_vocab, 23);
            rq.loss = loss;
            rq.loss_scale = 1.0 / 6;
            rq.capture = true;
            rq.residual_grad = true;
            const GradResult gc = ec.loss_gradients(ids, B, T, rq), gd = ed.loss_gradients(ids, B, T, rq);
            REQUIRE(gd.loss == Approx(gc.loss).epsilon(tolerance(t)).margin(tolerance(t)));
            double err = 0, scale = 1e-12;
            for (size_t i = 0; i < gc.head_grad.size(); ++i) {
                err = std::max(err, std::fabs(gd.head_grad[i] - gc.head_grad[i]));
                scale = std::max(scale, std::fabs(gc.head_grad[i]));
            }
            const double res_err = rel_l2(gd.residual_grad, gc.residual_grad);
            INFO((loss == LossKind::CROSS_ENTROPY ? "cross-entropy" : "margin") << ": head grad max err / max "
                 << err / scale << ", residual grad rel l2 " << res_err);
            REQUIRE(err / scale < tolerance(t) * 3);
            REQUIRE(res_err < tolerance(t) * 3);
            if (loss == LossKind::CROSS_ENTROPY && t == WeightType::F32) REQUIRE(gd.correct == gc.correct);
        }
    }
}

void check_all(const BackendFactory& make) {
    SECTION("backward ops") { check_backward(*make(WeightType::F32)); }
    SECTION("element-wise and row ops") { check_elementwise_ops(*make(WeightType::F32)); }
    SECTION("attention and attention probabilities") { check_attention(*make(WeightType::F32)); }
    for (WeightType t : {WeightType::F32, WeightType::BF16, WeightType::F16}) {
        DYNAMIC_SECTION("weight ops, " << weight_type_name(t)) { check_weight_ops(*make(t), t); }
        DYNAMIC_SECTION("engine with hooks and kv cache, " << weight_type_name(t)) { check_engine(*make(t), t); }
        DYNAMIC_SECTION("path and total sweeps, " << weight_type_name(t)) { check_sweeps(*make(t), t); }
        DYNAMIC_SECTION("loss gradients, " << weight_type_name(t)) { check_gradients(*make(t), t); }
    }
    SECTION("greedy generation, fp32 weights") { check_generation_fp32(*make(WeightType::F32)); }
}

}  // namespace

TEST_CASE("cuda backend on the CPU emulator equals the CPU backend", "[cuda_emu]") { check_all(emulated); }

TEST_CASE("cuda backend on the CPU emulator: clear errors", "[cuda_emu]") {
    SECTION("no device") {
        ::setenv("HS_EMU_NO_DEVICE", "1", 1);
        REQUIRE_THROWS_WITH(emulated(WeightType::BF16), Catch::Contains("no CUDA device") && Catch::Contains("--device cpu"));
        ::unsetenv("HS_EMU_NO_DEVICE");
    }
    SECTION("unsupported head dimension names the op") {
        auto be = emulated(WeightType::F32);
        AttentionArgs a;
        a.batch = 1, a.seq = 1, a.n_head = 1, a.n_head_kv = 1, a.d_head = 512;
        REQUIRE_THROWS_WITH(be->attention(a), Catch::Contains("attention") && Catch::Contains("512"));
    }
    SECTION("the device name and weight type are described") {
        REQUIRE_THAT(emulated(WeightType::F16)->describe(), Catch::Contains("cuda:0") && Catch::Contains("fp16"));
    }
}

TEST_CASE("cuda backend on a GPU equals the CPU backend (random models)", "[gpu]") {
    std::string why;
    if (!real_gpu(WeightType::F32, &why)) {
        WARN("SKIPPED (no GPU): " << why);
        return;
    }
    check_all([](WeightType t) { return real_gpu(t); });
}

TEST_CASE("cuda backend on a GPU: the real default model", "[gpu][model]") {
    REQUIRE_GPU(gpu, WeightType::BF16);
    Model m = load_model(test_model_path());
    auto cpu = make_cpu_backend(0);
    Engine ec(m, *cpu), eg(m, *gpu);
    const auto prompt = m.tokenizer.encode("The capital of France is Paris. The capital of Italy is", false);
    ForwardHooks hk;
    hk.logits = LogitsMode::ALL;
    const int64_t T = int64_t(prompt.size());
    REQUIRE(rel_l2(eg.forward(prompt, 1, T, hk).logits, ec.forward(prompt, 1, T, hk).logits) < 1e-2);
    // fp32 compute: greedy continuations identical.
    auto gpu32 = real_gpu(WeightType::F32);
    Engine e32(m, *gpu32);
    GenerateOptions o;
    o.max_new_tokens = 32;
    REQUIRE(generate(e32, prompt, o).tokens == generate(ec, prompt, o).tokens);
}

TEST_CASE("cuda backend on a GPU: the default model's path sweep has the CPU's top-K heads", "[gpu][model][slow]") {
    using namespace hs::pear;
    REQUIRE_GPU(gpu, WeightType::BF16);
    Model m = load_model(test_model_path());
    auto cpu = make_cpu_backend(0);
    Engine ec(m, *cpu), eg(m, *gpu);
    const ModelConfig& c = m.config;
    SweepOptions o;  // the paper's settings and seed
    auto sweep = [&](Engine& e) {
        HeadScores s;
        s.n_layer = c.n_layer;
        s.n_head = c.n_head;
        s.settings = o.settings;
        for (int32_t i = 0; i < int32_t(o.settings.size()); ++i) {
            SettingRun run(e, o, i);
            s.pi_clean.push_back(run.pi_clean());
            s.copy_accuracy.push_back(run.copy_accuracy());
            const auto v = run.score(WorkItem{i, 0, c.n_layer, 0, c.n_head});
            s.pi_ablated.insert(s.pi_ablated.end(), v.begin(), v.end());
        }
        finish_scores(s, default_top_k(c.n_layer * c.n_head));
        std::vector<int32_t> top(s.ranking.begin(), s.ranking.begin() + s.top_k);
        std::sort(top.begin(), top.end());
        return top;
    };
    REQUIRE(sweep(eg) == sweep(ec));
}

TEST_CASE("cuda backend on the CPU emulator: the real default model", "[cuda_emu][model]") {
    // The real weights through the CUDA backend's code (bf16 weights: the bound on logits; fp32 weights:
    // greedy continuation identical to the CPU's). Short prompt: the emulator's GEMM is a naive double loop.
    // The host-access guard re-protects every allocation around each launch, which costs page-table work in
    // proportion to the 300 MB of weights; the random-model cases above run with it, this one without.
    ::setenv("HS_EMU_GUARD", "0", 1);
    struct Restore {
        ~Restore() { ::unsetenv("HS_EMU_GUARD"); }
    } restore;
    Model m = load_model(test_model_path());
    auto cpu = make_cpu_backend(1);
    Engine ec(m, *cpu);
    const auto prompt = m.tokenizer.encode("The capital of France is", false);
    const int64_t T = int64_t(prompt.size());
    ForwardHooks hk;
    hk.logits = LogitsMode::ALL;
    const ForwardResult ref = ec.forward(prompt, 1, T, hk);
    auto bf16 = emulated(WeightType::BF16);
    Engine eb(m, *bf16);
    const double err = rel_l2(eb.forward(prompt, 1, T, hk).logits, ref.logits);
    INFO("bf16 logits ||delta|| / ||ref|| = " << err);
    REQUIRE(err < 1e-2);
    auto fp32 = emulated(WeightType::F32);
    Engine e32(m, *fp32);
    GenerateOptions o;
    o.max_new_tokens = 4;
    o.stop_at_eog = false;
    REQUIRE(generate(e32, prompt, o).tokens == generate(ec, prompt, o).tokens);
}

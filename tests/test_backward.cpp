// Gradient checks of the backward pass.
//  * every backward op in fp64 (the double instantiation of backend/cpu/backward_cpu.hpp) against central finite
//    differences of its double forward: relative error < 1e-4 (max |analytic - fd| / max |fd|);
//  * the CPU backend's fp32 ops against the fp64 instantiation;
//  * the whole model: the naive double forward/backward (tests/naive_backward.hpp) against central finite
//    differences on every head's tau (< 1e-4), then the production fp32 Engine::loss_gradients against it, on
//    llama-, qwen2- and Gemma-3-shaped random models (tiny-gemma3: q/k norms, post-norms, GELU-tanh, windows of 4
//    keys on sequences of 12-14, so the local layers slide);
//  * the real model in fp32 against finite differences of the engine's own forward on a few tau ([slow]).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <utility>

#include "backend/cpu/backward_cpu.hpp"
#include "engine/engine.hpp"
#include "naive_backward.hpp"
#include "naive_forward.hpp"
#include "test_model_path.hpp"

using namespace hs;

namespace {

std::vector<double> randn(size_t n, uint64_t seed, double sd = 1.0) {
    std::mt19937_64 g(seed);
    std::normal_distribution<double> nd(0.0, sd);
    std::vector<double> v(n);
    for (auto& x : v) x = nd(g);
    return v;
}

// max |a - b| / max |b|
double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double e = 0, s = 1e-300;
    for (size_t i = 0; i < a.size(); ++i) e = std::max(e, std::fabs(a[i] - b[i])), s = std::max(s, std::fabs(b[i]));
    return e / s;
}

// Central differences of f at x, step h, for every coordinate.
std::vector<double> fd_grad(const std::function<double(const std::vector<double>&)>& f, std::vector<double> x,
                            double h = 1e-6) {
    std::vector<double> g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const double fp = f(x);
        x[i] = x0 - h;
        const double fm = f(x);
        x[i] = x0;
        g[i] = (fp - fm) / (2 * h);
    }
    return g;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

std::vector<float> to_f(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }
std::vector<double> to_d(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace

// ================================================================ ops in fp64
TEST_CASE("backward op gradients match finite differences in fp64", "[backward][gradcheck]") {
    SECTION("matmul") {
        const int64_t rows = 3, out = 5, in = 4;
        auto W = randn(out * in, 1), x = randn(rows * in, 2), r = randn(rows * out, 3);
        auto f = [&](const std::vector<double>& xx) {
            std::vector<double> y(rows * out);
            cpu::matmul_fwd(xx.data(), W.data(), out, in, y.data(), rows);
            return dot(r, y);
        };
        std::vector<double> dx(rows * in);
        cpu::matmul_dx(r.data(), W.data(), out, in, dx.data(), rows, false);
        CHECK(rel_err(dx, fd_grad(f, x)) < 1e-4);
    }
    SECTION("rmsnorm") {
        const int64_t rows = 3, n = 8;
        auto w = randn(n, 4), x = randn(rows * n, 5), r = randn(rows * n, 6);
        auto f = [&](const std::vector<double>& xx) {
            std::vector<double> y(rows * n);
            cpu::rmsnorm_fwd(xx.data(), w.data(), y.data(), rows, n, 1e-5);
            return dot(r, y);
        };
        std::vector<double> dx(rows * n, 0.5);
        cpu::rmsnorm_backward(x.data(), w.data(), r.data(), dx.data(), rows, n, 1e-5, false);
        const double e = rel_err(dx, fd_grad(f, x));
        INFO("rmsnorm rel err " << e);
        CHECK(e < 1e-4);
        // accumulate adds to what is there
        std::vector<double> acc(rows * n, 0.5);
        cpu::rmsnorm_backward(x.data(), w.data(), r.data(), acc.data(), rows, n, 1e-5, true);
        for (size_t i = 0; i < acc.size(); ++i) CHECK(acc[i] == Approx(dx[i] + 0.5).epsilon(1e-12));
    }
    SECTION("rope") {
        const int64_t B = 2, T = 5;
        const int32_t nh = 3, dh = 8, half = dh / 2;
        std::vector<double> cs(T * half), sn(T * half);
        for (int64_t p = 0; p < T; ++p)
            for (int j = 0; j < half; ++j) {
                const double ang = double(p) * std::pow(10000.0, -2.0 * j / dh);
                cs[p * half + j] = std::cos(ang), sn[p * half + j] = std::sin(ang);
            }
        auto x = randn(B * T * nh * dh, 7), r = randn(B * T * nh * dh, 8);
        auto f = [&](const std::vector<double>& xx) {
            auto y = xx;
            cpu::rope_apply(y.data(), B, T, 0, nh, dh, cs.data(), sn.data(), false);
            return dot(r, y);
        };
        auto dx = r;
        cpu::rope_apply(dx.data(), B, T, 0, nh, dh, cs.data(), sn.data(), true);
        CHECK(rel_err(dx, fd_grad(f, x)) < 1e-4);
    }
    SECTION("gated activations") {
        for (Activation act : {Activation::SILU, Activation::GELU_TANH}) {
            const int64_t n = 40;
            auto g = randn(n, 9, 2.0), u = randn(n, 10), r = randn(n, 11);
            auto f = [&](const std::vector<double>& gu) {
                std::vector<double> y(n);
                cpu::gated_activation_fwd(gu.data(), gu.data() + n, y.data(), n, act);
                return dot(r, y);
            };
            std::vector<double> gu(g);
            gu.insert(gu.end(), u.begin(), u.end());
            std::vector<double> dg(n), du(n);
            cpu::gated_activation_backward(g.data(), u.data(), r.data(), dg.data(), du.data(), n, act);
            dg.insert(dg.end(), du.begin(), du.end());
            const double e = rel_err(dg, fd_grad(f, gu));
            INFO("activation " << int(act) << " rel err " << e);
            CHECK(e < 1e-4);
        }
    }
    SECTION("attention (grouped-query, causal, with and without a window)") {
        for (int32_t window : {0, 3}) {
            cpu::AttnShape s{2, 6, 4, 2, 4, 0.5, window};
            const int64_t qn = s.batch * s.seq * s.n_head * s.d_head, kn = s.batch * s.seq * s.n_head_kv * s.d_head;
            auto q = randn(qn, 12), k = randn(kn, 13), v = randn(kn, 14), r = randn(qn, 15);
            std::vector<double> qkv(q);
            qkv.insert(qkv.end(), k.begin(), k.end());
            qkv.insert(qkv.end(), v.begin(), v.end());
            auto f = [&](const std::vector<double>& a) {
                std::vector<double> z(qn);
                cpu::attention_fwd(a.data(), a.data() + qn, a.data() + qn + kn, z.data(), s);
                return dot(r, z);
            };
            std::vector<double> dq(qn), dk(kn), dv(kn);
            cpu::attention_backward(q.data(), k.data(), v.data(), r.data(), dq.data(), dk.data(), dv.data(), s);
            dq.insert(dq.end(), dk.begin(), dk.end());
            dq.insert(dq.end(), dv.begin(), dv.end());
            const double e = rel_err(dq, fd_grad(f, qkv));
            INFO("window " << window << " rel err " << e);
            CHECK(e < 1e-4);
        }
    }
    SECTION("softmax cross-entropy") {
        const int64_t rows = 3, V = 11;
        auto x = randn(rows * V, 16, 2.0);
        std::vector<int32_t> tg = {3, 0, 10};
        auto f = [&](const std::vector<double>& xx) {
            auto y = xx;
            std::vector<double> loss(rows);
            cpu::softmax_cross_entropy(y.data(), tg.data(), rows, V, 1.0, loss.data(), nullptr);
            return loss[0] + loss[1] + loss[2];
        };
        auto g = x;
        cpu::softmax_cross_entropy(g.data(), tg.data(), rows, V, 1.0, nullptr, nullptr);
        CHECK(rel_err(g, fd_grad(f, x)) < 1e-4);
    }
}

// ================================================================ the fp32 CPU backend against fp64
TEST_CASE("the CPU backend's fp32 backward ops agree with the fp64 instantiation", "[backward]") {
    auto be = make_cpu_backend(1);
    SECTION("matmul_dx, rmsnorm_backward, gated_activation_backward, head_dots") {
        const int64_t rows = 5, out = 12, in = 16;
        auto Wd = randn(out * in, 20), dy = randn(rows * out, 21);
        auto Wf = to_f(Wd), dyf = to_f(dy);
        Matrix W{Wf.data(), out, in};
        std::vector<float> dxf(rows * in);
        be->matmul_dx(dyf.data(), W, dxf.data(), rows, false);
        std::vector<double> dxd(rows * in);
        cpu::matmul_dx(dy.data(), Wd.data(), out, in, dxd.data(), rows, false);
        CHECK(rel_err(to_d(dxf), dxd) < 1e-5);

        auto x = randn(rows * in, 22), w = randn(in, 23), g = randn(rows * in, 24);
        auto xf = to_f(x), wf = to_f(w), gf = to_f(g);
        std::vector<float> rf(rows * in);
        be->rmsnorm_backward(xf.data(), wf.data(), gf.data(), rf.data(), rows, in, 1e-5f, false);
        std::vector<double> rd(rows * in);
        cpu::rmsnorm_backward(to_d(xf).data(), to_d(wf).data(), to_d(gf).data(), rd.data(), rows, in, double(1e-5f),
                              false);
        CHECK(rel_err(to_d(rf), rd) < 1e-5);

        for (Activation act : {Activation::SILU, Activation::GELU_TANH}) {
            INFO("activation " << int(act));
            std::vector<float> dgf(rows * in), duf(rows * in);
            be->gated_activation_backward(xf.data(), gf.data(), xf.data(), dgf.data(), duf.data(), rows * in, act);
            std::vector<double> dgd(rows * in), dud(rows * in);
            cpu::gated_activation_backward(to_d(xf).data(), to_d(gf).data(), to_d(xf).data(), dgd.data(), dud.data(),
                                           rows * in, act);
            CHECK(rel_err(to_d(dgf), dgd) < 1e-5);
            CHECK(rel_err(to_d(duf), dud) < 1e-5);
        }

        std::vector<double> hd(4, 0.0);
        be->head_dots(xf.data(), gf.data(), rows, in, 4, 4, hd.data());
        for (int h = 0; h < 4; ++h) {
            double s = 0;
            for (int64_t r = 0; r < rows; ++r)
                for (int c = 0; c < 4; ++c) s += double(xf[r * in + h * 4 + c]) * gf[r * in + h * 4 + c];
            CHECK(hd[h] == Approx(s).epsilon(1e-12));
        }
    }
    SECTION("attention_backward and rope_backward") {
        // grouped heads over the whole causal past; Gemma-style: one kv head and a sliding window of 3 keys
        for (const auto& [n_kv, window] : {std::pair<int32_t, int32_t>{2, 0}, {1, 3}}) {
            INFO("kv heads " << n_kv << " window " << window);
            cpu::AttnShape s{1, 9, 4, n_kv, 8, 1.0 / std::sqrt(8.0), window};
            const int64_t qn = s.seq * 4 * 8, kn = s.seq * n_kv * 8;
            auto q = randn(qn, 30), k = randn(kn, 31), v = randn(kn, 32), dz = randn(qn, 33);
            auto qf = to_f(q), kf = to_f(k), vf = to_f(v), dzf = to_f(dz);
            std::vector<float> zf(qn), dqf(qn), dkf(kn), dvf(kn);
            AttentionArgs a;
            a.q = qf.data(), a.k_cache = kf.data(), a.v_cache = vf.data(), a.z = zf.data();
            a.batch = 1, a.seq = s.seq, a.pos0 = 0, a.cache_len = s.seq, a.n_head = 4, a.n_head_kv = n_kv;
            a.d_head = 8, a.scale = float(s.scale), a.window = window;
            be->attention(a);
            be->attention_backward(a, dzf.data(), dqf.data(), dkf.data(), dvf.data());
            std::vector<double> dq(qn), dk(kn), dv(kn);
            cpu::attention_backward(to_d(qf).data(), to_d(kf).data(), to_d(vf).data(), to_d(dzf).data(), dq.data(),
                                    dk.data(), dv.data(), s);
            CHECK(rel_err(to_d(dqf), dq) < 1e-5);
            CHECK(rel_err(to_d(dkf), dk) < 1e-5);
            CHECK(rel_err(to_d(dvf), dv) < 1e-5);
        }
        const int64_t qn = 9 * 4 * 8;
        auto qf = to_f(randn(qn, 30)), dzf = to_f(randn(qn, 33));
        std::vector<float> kf(qn), vf(qn), zf(qn), dqf(qn), dkf(qn), dvf(qn);
        AttentionArgs a;
        a.q = qf.data(), a.k_cache = kf.data(), a.v_cache = vf.data(), a.z = zf.data();
        a.batch = 1, a.seq = 9, a.pos0 = 0, a.cache_len = 9, a.n_head = 4, a.n_head_kv = 4, a.d_head = 8;
        a.scale = 0.3f;
        // rope then rope_backward is the identity (orthogonal rotation)
        auto y = qf;
        be->rope(y.data(), 1, 9, 0, 4, 8, 10000.0f);
        be->rope_backward(y.data(), 1, 9, 0, 4, 8, 10000.0f);
        CHECK(rel_err(to_d(y), to_d(qf)) < 1e-6);
        // training form only
        a.pos0 = 1;
        CHECK_THROWS_WITH(be->attention_backward(a, dzf.data(), dqf.data(), dkf.data(), dvf.data()),
                          Catch::Contains("training form"));
    }
}

// ================================================================ whole model
namespace {

struct ModelCase {
    Model model;
    std::vector<int32_t> ids;
    std::vector<int> pos, tgt;
    std::vector<double> tau;
};

ModelCase make_case(const std::string& shape, int T, uint64_t seed, bool random_tau) {
    ModelCase mc{make_random_model(shape, 7), {}, {}, {}, {}};
    const auto& c = mc.model.config;
    std::mt19937_64 g(seed);
    for (int t = 0; t < T; ++t) mc.ids.push_back(int32_t(2 + g() % uint64_t(c.n_vocab - 2)));
    for (int t = T / 2 - 1; t < T - 1; ++t) mc.pos.push_back(t), mc.tgt.push_back(mc.ids[t + 1]);
    mc.tau.assign(size_t(c.n_layer) * c.n_head, 1.0);
    if (random_tau)
        for (auto& x : mc.tau) x = float(0.5 + double(g() % 1000) / 1000.0);  // float-representable
    return mc;
}

}  // namespace

TEST_CASE("the double reference backward matches finite differences on every head's tau", "[backward][gradcheck]") {
    for (const char* shape : {"tiny", "tiny-mha", "tiny-qwen2", "tiny-gemma3"}) {
        for (bool margin : {false, true}) {
            INFO("shape " << shape << (margin ? " margin loss" : " cross-entropy"));
            ModelCase mc = make_case(shape, 12, 5, true);
            const double scale = 1.0 / double(mc.pos.size());
            auto f = [&](const std::vector<double>& tau) {
                return naive::loss_and_grad(mc.model, mc.ids, mc.pos, mc.tgt, tau, scale, margin).loss;
            };
            naive::GradOut g = naive::loss_and_grad(mc.model, mc.ids, mc.pos, mc.tgt, mc.tau, scale, margin);
            const double e = rel_err(g.head_grad, fd_grad(f, mc.tau, 1e-5));
            INFO("rel err " << e);
            CHECK(e < 1e-4);
        }
    }
    // its forward is the naive forward (the loss from naive::forward's logits)
    ModelCase mc = make_case("tiny", 10, 6, true);
    naive::Edits ed;
    ed.head_scale = to_f(mc.tau);
    naive::Result r = naive::forward(mc.model, mc.ids, ed);
    double loss = 0;
    for (size_t i = 0; i < mc.pos.size(); ++i) {
        const auto& lg = r.logits[mc.pos[i]];
        double mx = *std::max_element(lg.begin(), lg.end()), s = 0;
        for (double v : lg) s += std::exp(v - mx);
        loss += mx + std::log(s) - lg[mc.tgt[i]];
    }
    CHECK(naive::loss_and_grad(mc.model, mc.ids, mc.pos, mc.tgt, mc.tau, 1.0).loss == Approx(loss).epsilon(1e-10));
}

TEST_CASE("the fp32 engine backward matches the double reference", "[backward]") {
    for (const char* shape : {"tiny", "tiny-mha", "tiny-qwen2", "tiny-gemma3"}) {
        for (bool margin : {false, true}) {
            INFO("shape " << shape << (margin ? " margin loss" : " cross-entropy"));
            // two sequences in one batch: the engine's sum must equal the sum of the per-sequence references
            ModelCase a = make_case(shape, 14, 11, true), b = make_case(shape, 14, 12, false);
            b.tau = a.tau;
            const auto& c = a.model.config;
            auto be = make_cpu_backend(1);
            Engine engine(a.model, *be);
            GradRequest rq;
            rq.head_scale = to_f(a.tau);
            rq.positions = std::vector<int32_t>(a.pos.begin(), a.pos.end());
            rq.targets.insert(rq.targets.end(), a.tgt.begin(), a.tgt.end());
            rq.targets.insert(rq.targets.end(), b.tgt.begin(), b.tgt.end());
            rq.loss = margin ? LossKind::LOGIT_MARGIN : LossKind::CROSS_ENTROPY;
            rq.loss_scale = 1.0 / double(2 * a.pos.size());
            rq.residual_grad = true;
            std::vector<int32_t> toks = a.ids;
            toks.insert(toks.end(), b.ids.begin(), b.ids.end());
            GradResult gr = engine.loss_gradients(toks, 2, 14, rq);
            auto ra = naive::loss_and_grad(a.model, a.ids, a.pos, a.tgt, a.tau, rq.loss_scale, margin);
            auto rb = naive::loss_and_grad(b.model, b.ids, b.pos, b.tgt, b.tau, rq.loss_scale, margin);
            std::vector<double> ref(ra.head_grad);
            for (size_t i = 0; i < ref.size(); ++i) ref[i] += rb.head_grad[i];
            const double e = rel_err(gr.head_grad, ref);
            INFO("head grad rel err " << e);
            CHECK(e < 1e-4);
            // The margin loss is a difference of O(1) logits and may itself be near 0: an absolute floor of fp32
            // rounding on that scale (1e-6) as well as the relative bound.
            CHECK(gr.loss == Approx(ra.loss + rb.loss).epsilon(1e-5).margin(1e-6));
            std::vector<double> dref;
            for (const auto* o : {&ra, &rb})
                for (const auto& row : o->dx0) dref.insert(dref.end(), row.begin(), row.end());
            const double ex = rel_err(to_d(gr.residual_grad), dref);
            INFO("residual grad rel err " << ex);
            CHECK(ex < 1e-4);
            if (!margin) {  // the loss from the engine's ordinary forward at the same tau
                ForwardHooks hk;
                hk.head_scale = rq.head_scale;
                hk.logits = LogitsMode::POSITIONS;
                hk.logit_positions = rq.positions;
                ForwardResult fr = engine.forward(toks, 2, 14, hk);
                double l = 0;
                for (int64_t s = 0; s < 2; ++s)
                    for (size_t i = 0; i < rq.positions.size(); ++i) {
                        const float* lg = fr.logits_at(s, int64_t(i), c.n_vocab);
                        double mx = *std::max_element(lg, lg + c.n_vocab), sum = 0;
                        for (int v = 0; v < c.n_vocab; ++v) sum += std::exp(lg[v] - mx);
                        l += mx + std::log(sum) - lg[rq.targets[s * rq.positions.size() + i]];
                    }
                CHECK(gr.loss == Approx(l * rq.loss_scale).epsilon(1e-5));
            }
        }
    }
}

TEST_CASE("backward from a later layer gives the same head gradients there and zeros below", "[backward]") {
    ModelCase mc = make_case("tiny-mha", 12, 3, true);
    auto be = make_cpu_backend(1);
    Engine engine(mc.model, *be);
    GradRequest rq;
    rq.head_scale = to_f(mc.tau);
    rq.positions = std::vector<int32_t>(mc.pos.begin(), mc.pos.end());
    rq.targets = std::vector<int32_t>(mc.tgt.begin(), mc.tgt.end());
    GradResult full = engine.loss_gradients(mc.ids, 1, 12, rq);
    rq.from_layer = 1;
    rq.capture = true;
    rq.capture_positions = {3, 11};
    GradResult part = engine.loss_gradients(mc.ids, 1, 12, rq);
    const int H = mc.model.config.n_head;
    for (int i = 0; i < 3 * H; ++i) {
        if (i < H) CHECK(part.head_grad[i] == 0.0);
        else CHECK(part.head_grad[i] == full.head_grad[i]);
    }
    CHECK(part.loss == full.loss);
    // captured z and dz give back the head gradient restricted to those positions; the layer below is not captured
    REQUIRE(part.z[1].size() == 2 * size_t(mc.model.config.q_dim()));
    CHECK(part.z[0].empty());
    CHECK_THROWS_WITH(engine.loss_gradients(mc.ids, 1, 12, GradRequest{}), Catch::Contains("no loss positions"));
}

TEST_CASE("real model: fp32 head gradients match finite differences of the forward", "[backward][slow]") {
    // fp32 finite differences: step 0.05 on tau (loss is smooth in tau; truncation O(h^2) ~ 1e-4 relative) keeps
    // the rounding noise of the loss (~1e-6 relative) small against the difference; tolerance 2% of the largest
    // checked gradient, which catches any wrong term (those are O(1) errors) but not fp32 noise.
    const std::string path = test_model_path();
    if (path.empty()) return;
    Model m = load_model(path);
    const auto& c = m.config;
    auto be = make_cpu_backend(2);
    Engine engine(m, *be);
    const int n = 12, T = 2 * n;
    std::mt19937_64 g(3);
    std::vector<int32_t> toks;
    for (int b = 0; b < 2; ++b) {
        std::vector<int32_t> x(n);
        for (auto& t : x) t = int32_t(2 + g() % uint64_t(c.n_vocab - 2));
        toks.insert(toks.end(), x.begin(), x.end());
        toks.insert(toks.end(), x.begin(), x.end());
    }
    GradRequest rq;
    rq.head_scale.assign(size_t(c.n_layer) * c.n_head, 1.0f);
    for (int t = n - 1; t < T - 1; ++t) rq.positions.push_back(t);
    for (int b = 0; b < 2; ++b)
        for (int t = n - 1; t < T - 1; ++t) rq.targets.push_back(toks[size_t(b) * T + t + 1]);
    rq.loss_scale = 1.0 / double(rq.targets.size());
    const std::vector<int> heads = {3 * c.n_head + 1, 15 * c.n_head + 4, 25 * c.n_head + 0, 29 * c.n_head + 8};
    rq.from_layer = 3;
    GradResult gr = engine.loss_gradients(toks, 2, T, rq);
    std::vector<double> an, fd;
    for (int h : heads) {
        auto loss_at = [&](float tau) {
            GradRequest r2 = rq;
            r2.head_scale[h] = tau;
            r2.from_layer = c.n_layer - 1;
            return engine.loss_gradients(toks, 2, T, r2).loss;
        };
        const double step = 0.05;
        fd.push_back((loss_at(1.0f + float(step)) - loss_at(1.0f - float(step))) / (2 * step));
        an.push_back(gr.head_grad[h]);
    }
    const double e = rel_err(an, fd);
    for (size_t i = 0; i < an.size(); ++i) WARN("head " << heads[i] << " analytic " << an[i] << " fd " << fd[i]);
    WARN("real-model fp32 rel err " << e);
    CHECK(e < 2e-2);
}

// The CPU kernels' thread pool: every index is covered exactly once, by the same thread on every call (parallel_for)
// or by whichever thread takes it (parallel_items), for any pool size and job size, over many back-to-back jobs (the
// decode pattern) and after the workers went to sleep; and the decode attention run over the pool.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <tuple>
#include <random>
#include <vector>

#include "backend/cpu/ops_cpu.hpp"
#include "backend/cpu/thread_pool.hpp"

using hs::cpu::ThreadPool;

TEST_CASE("thread pool: parallel_for covers 0..n-1 once, with a fixed split, job after job", "[thread_pool]") {
    for (int threads : {1, 2, 3, 5}) {
        ThreadPool pool(threads);
        CHECK(pool.size() == threads);
        for (int64_t n : {int64_t(0), int64_t(1), int64_t(2), int64_t(7), int64_t(1000)}) {
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            std::vector<std::thread::id> owner(static_cast<size_t>(n)), again(static_cast<size_t>(n));
            for (int rep = 0; rep < 200; ++rep)
                pool.parallel_for(n, [&](int64_t b, int64_t e) {
                    for (int64_t i = b; i < e; ++i) {
                        hits[size_t(i)].fetch_add(1);
                        (rep == 0 ? owner : again)[size_t(i)] = std::this_thread::get_id();
                    }
                });
            for (int64_t i = 0; i < n; ++i) REQUIRE(hits[size_t(i)].load() == 200);
            CHECK(owner == again);  // range i always runs on thread i
        }
    }
}

TEST_CASE("thread pool: workers that went to sleep wake for the next job", "[thread_pool]") {
    ThreadPool pool(3);
    std::atomic<int64_t> sum{0};
    for (int rep = 0; rep < 3; ++rep) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // well past the spin: the workers sleep
        pool.parallel_for(300, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
        });
    }
    CHECK(sum.load() == 3 * (299 * 300 / 2));
}

TEST_CASE("thread pool: parallel_items runs every item once, between fixed-split jobs, awake or asleep",
          "[thread_pool]") {
    for (int threads : {1, 2, 3, 5}) {
        ThreadPool pool(threads);
        for (int64_t n : {int64_t(0), int64_t(1), int64_t(2), int64_t(7), int64_t(1000)}) {
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            std::atomic<int64_t> ranges{0}, wide{0};
            for (int rep = 0; rep < 300; ++rep) {
                pool.parallel_items(n, [&](int64_t b, int64_t e) {
                    if (e != b + 1) wide.fetch_add(1);  // (Catch2 assertions are not thread-safe)
                    for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
                });
                if (rep % 3 == 0)  // a fixed-split job in between: no worker may run an item of another job
                    pool.parallel_for(n, [&](int64_t, int64_t) { ranges.fetch_add(1); });
                if (rep == 100) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // workers fall asleep
            }
            for (int64_t i = 0; i < n; ++i) REQUIRE(hits[size_t(i)].load() == 300);
            CHECK(wide.load() == 0);
            CHECK(ranges.load() == 100 * std::min<int64_t>(n, threads));
        }
    }
}

TEST_CASE("thread pool: parallel_items shares out the work, and finishes it when a worker is busy elsewhere",
          "[thread_pool]") {
    ThreadPool pool(2);
    // items long enough that the worker wakes and takes some
    std::atomic<int> on_caller{0}, on_worker{0};
    const auto caller = std::this_thread::get_id();
    for (int rep = 0; rep < 20; ++rep)
        pool.parallel_items(64, [&](int64_t, int64_t) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            (std::this_thread::get_id() == caller ? on_caller : on_worker).fetch_add(1);
        });
    CHECK(on_caller.load() + on_worker.load() == 20 * 64);
    CHECK(on_worker.load() > 0);
    CHECK(on_caller.load() > 0);
}

namespace {

// z of every query and head by the definition, in double: softmax over the visible keys of scale * q.k, times v.
std::vector<double> naive_attention(const hs::AttentionArgs& a) {
    const int64_t q_dim = int64_t(a.n_head) * a.d_head, kv_dim = int64_t(a.n_head_kv) * a.d_head;
    std::vector<double> z(size_t(a.batch * a.seq * q_dim), 0.0);
    for (int64_t b = 0; b < a.batch; ++b)
        for (int64_t t = 0; t < a.seq; ++t)
            for (int32_t h = 0; h < a.n_head; ++h) {
                const int32_t kvh = h / (a.n_head / a.n_head_kv);
                const int64_t qpos = a.pos0 + t, hi = qpos + 1;
                const int64_t lo = a.window > 0 ? std::max<int64_t>(0, qpos - a.window + 1) : 0;
                const float* q = a.q + (b * a.seq + t) * q_dim + int64_t(h) * a.d_head;
                std::vector<double> s(size_t(hi - lo));
                double mx = -1e300, sum = 0;
                for (int64_t j = lo; j < hi; ++j) {
                    const float* k = a.k_cache + (b * a.cache_len + j) * kv_dim + int64_t(kvh) * a.d_head;
                    double d = 0;
                    for (int32_t c = 0; c < a.d_head; ++c) d += double(q[c]) * k[c];
                    s[size_t(j - lo)] = d * a.scale;
                    mx = std::max(mx, s[size_t(j - lo)]);
                }
                for (double& v : s) sum += (v = std::exp(v - mx));
                double* out = z.data() + (b * a.seq + t) * q_dim + int64_t(h) * a.d_head;
                for (int64_t j = lo; j < hi; ++j) {
                    const float* v = a.v_cache + (b * a.cache_len + j) * kv_dim + int64_t(kvh) * a.d_head;
                    for (int32_t c = 0; c < a.d_head; ++c) out[c] += s[size_t(j - lo)] / sum * v[c];
                }
            }
    return z;
}

}  // namespace

TEST_CASE("attention: decode units shared out over the pool equal the serial ones and the definition",
          "[thread_pool]") {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    ThreadPool pool(2);
    // (n_head, n_head_kv, seq): grouped decode (kv-head units), multi-head decode and a few queries (head units)
    for (auto [n_head, n_head_kv, seq] : {std::tuple{6, 2, 1}, std::tuple{4, 1, 1}, std::tuple{3, 3, 1},
                                          std::tuple{6, 2, 3}}) {
        for (int32_t window : {0, 5}) {
            INFO("heads " << n_head << " kv heads " << n_head_kv << " seq " << seq << " window " << window);
            hs::AttentionArgs a;
            a.batch = 2;
            a.seq = seq;
            a.pos0 = 37;
            a.cache_len = 50;
            a.n_head = n_head;
            a.n_head_kv = n_head_kv;
            a.d_head = 16;
            a.scale = 0.25f;
            a.window = window;
            std::vector<float> q(size_t(a.batch * a.seq * a.n_head * a.d_head)),
                k(size_t(a.batch * a.cache_len * a.n_head_kv * a.d_head)), v(k.size());
            for (auto* vec : {&q, &k, &v})
                for (float& x : *vec) x = nd(rng);
            a.q = q.data();
            a.k_cache = k.data();
            a.v_cache = v.data();
            std::vector<float> z1(q.size(), -1.0f), z2(q.size(), -2.0f);
            a.z = z1.data();
            hs::cpu::attention_cpu(a, nullptr);
            a.z = z2.data();
            for (int rep = 0; rep < 10; ++rep) hs::cpu::attention_cpu(a, &pool);
            CHECK(z1 == z2);
            const std::vector<double> want = naive_attention(a);
            double worst = 0;
            for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(want[i] - z1[i]));
            CHECK(worst < 1e-5);
        }
    }
}

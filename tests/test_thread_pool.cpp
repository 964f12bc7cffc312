// The CPU kernels' thread pool: every index is covered exactly once, by the same thread on every call (parallel_for)
// or by whichever thread takes it (parallel_items), for any pool size and job size, over many back-to-back jobs (the
// decode pattern) and after the workers went to sleep; and the decode attention run over the pool.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <random>
#include <vector>

#include "backend/cpu/ops_cpu.hpp"
#include "backend/cpu/thread_pool.hpp"

using hs::cpu::ThreadPool;

TEST_CASE("thread pool: parallel_for covers [0, n) once, with a fixed split, job after job", "[thread_pool]") {
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

TEST_CASE("attention: the decode heads shared out over the pool equal the heads one after the other",
          "[thread_pool]") {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int32_t window : {0, 5}) {
        hs::AttentionArgs a;
        a.batch = 2;
        a.seq = 1;
        a.pos0 = 37;
        a.cache_len = 50;
        a.n_head = 6;
        a.n_head_kv = 2;
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
        ThreadPool pool(2);
        a.z = z2.data();
        for (int rep = 0; rep < 10; ++rep) hs::cpu::attention_cpu(a, &pool);
        CHECK(z1 == z2);
    }
}

// The CPU kernels' thread pool: every index is covered exactly once, by the same thread on every call, for any
// pool size and job size, over many back-to-back jobs (the decode pattern) and after the workers went to sleep.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

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

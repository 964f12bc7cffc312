#include "backend/cpu/thread_pool.hpp"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HS_CPU_RELAX() _mm_pause()
#else
#define HS_CPU_RELAX() std::this_thread::yield()
#endif

namespace hs::cpu {

namespace {

// How long an idle worker spins before it sleeps: long enough to bridge the gaps between the products of one
// decode step (a few microseconds of norms and attention), short enough not to compete with OpenBLAS's threads.
constexpr auto kSpin = std::chrono::microseconds(50);

}  // namespace

ThreadPool::ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    stop_.store(true);
    generation_.fetch_add(1);
    generation_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    const int threads = int(std::min<int64_t>(n, size()));
    if (threads == 1) return fn(0, n);
    job_ = &fn;
    job_n_ = n;
    job_threads_ = threads;
    pending_.store(threads - 1);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    fn(0, n / threads);  // the caller takes range 0
    // Wait for the others: spin briefly, then sleep (on a loaded machine a spinning caller would hold the core the
    // worker it waits for needs: measured 0.8 tokens/s decode instead of 24 with every other core busy).
    const auto until = std::chrono::steady_clock::now() + kSpin;
    int left = pending_.load(std::memory_order_acquire);
    while (left != 0 && std::chrono::steady_clock::now() < until) {
        for (int i = 0; i < 16; ++i) HS_CPU_RELAX();
        left = pending_.load(std::memory_order_acquire);
    }
    while (left != 0) {
        pending_.wait(left, std::memory_order_acquire);
        left = pending_.load(std::memory_order_acquire);
    }
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;
    for (;;) {
        // Spin, then sleep until the generation moves.
        const auto until = std::chrono::steady_clock::now() + kSpin;
        uint64_t g = generation_.load(std::memory_order_acquire);
        while (g == seen && std::chrono::steady_clock::now() < until) {
            for (int i = 0; i < 64; ++i) HS_CPU_RELAX();
            g = generation_.load(std::memory_order_acquire);
        }
        while (g == seen) {
            generation_.wait(seen, std::memory_order_acquire);
            g = generation_.load(std::memory_order_acquire);
        }
        seen = g;
        if (stop_.load()) return;
        if (index < job_threads_) {
            const int64_t b = job_n_ * index / job_threads_, e = job_n_ * (index + 1) / job_threads_;
            (*job_)(b, e);
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
        }
    }
}

}  // namespace hs::cpu

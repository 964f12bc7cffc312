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

// How long an idle thread spins before it sleeps: long enough to bridge the gaps between the products of one
// decode step (a few microseconds of norms and attention), short enough not to compete with OpenBLAS's threads.
constexpr auto kSpin = std::chrono::microseconds(50);

// parallel_items' ticket: the job's generation above, the next item below (jobs have far fewer than 2^24 items).
constexpr int kIndexBits = 24;
constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;

// Waits (spin, then futex) until a != old; returns the new value.
template <typename T>
T wait_change(const std::atomic<T>& a, T old) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    T v = a.load(std::memory_order_acquire);
    while (v == old && std::chrono::steady_clock::now() < until) {
        for (int i = 0; i < 16; ++i) HS_CPU_RELAX();
        v = a.load(std::memory_order_acquire);
    }
    while (v == old) {
        a.wait(old, std::memory_order_acquire);
        v = a.load(std::memory_order_acquire);
    }
    return v;
}

// Waits (spin, then futex) until a == 0.
void wait_zero(const std::atomic<int>& a) {
    int left = a.load();
    if (left == 0) return;
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (left != 0 && std::chrono::steady_clock::now() < until) {
        for (int i = 0; i < 16; ++i) HS_CPU_RELAX();
        left = a.load();
    }
    while (left != 0) {
        a.wait(left);
        left = a.load();
    }
}

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

// Writes the job of generation next_gen_ + 1 and wakes the workers. The job fields are rewritten only when no
// worker can be using the previous job (parallel_for waited for all; parallel_items for every worker that took
// an item), but a late worker may still read them: the sequence number job_gen_ tells it whether it read one job.
void ThreadPool::publish(bool items, RangeFn* fn, int64_t n, int threads) {
    const uint64_t g = ++next_gen_;
    job_gen_.store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    job_items_.store(items, std::memory_order_relaxed);
    job_fn_.store(fn, std::memory_order_relaxed);
    job_n_.store(n, std::memory_order_relaxed);
    job_threads_.store(threads, std::memory_order_relaxed);
    job_gen_.store(g, std::memory_order_release);
    if (items) ticket_.store(g << kIndexBits);
    else pending_.store(threads - 1);
    generation_.store(g, std::memory_order_seq_cst);
    generation_.notify_all();
}

bool ThreadPool::read_job(uint64_t g, Job& j) const {
    if (job_gen_.load(std::memory_order_acquire) != g) return false;
    j.items = job_items_.load(std::memory_order_relaxed);
    j.fn = job_fn_.load(std::memory_order_relaxed);
    j.n = job_n_.load(std::memory_order_relaxed);
    j.threads = job_threads_.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    return job_gen_.load(std::memory_order_relaxed) == g;
}

// Takes items of job g until none is left (or the job is no longer g: then its items are all taken).
void ThreadPool::take_items(uint64_t g, const Job& j) {
    const uint64_t tag = (g << kIndexBits) & ~kIndexMask;
    uint64_t t = ticket_.load();
    for (;;) {
        if ((t & ~kIndexMask) != tag || int64_t(t & kIndexMask) >= j.n) return;
        if (!ticket_.compare_exchange_weak(t, t + 1)) continue;  // t reloaded
        const int64_t i = int64_t(t & kIndexMask);
        (*j.fn)(i, i + 1);
        t = ticket_.load();
    }
}

void ThreadPool::run_static(int64_t n, RangeFn fn) {
    if (n <= 0) return;
    const int threads = int(std::min<int64_t>(n, size()));
    if (threads == 1) return fn(0, n);
    publish(false, &fn, n, threads);
    fn(0, n / threads);  // the caller takes range 0
    // Wait for the others: spin briefly, then sleep (on a loaded machine a spinning caller would hold the core the
    // worker it waits for needs: measured 0.8 tokens/s decode instead of 24 with every other core busy).
    wait_zero(pending_);
}

void ThreadPool::run_items(int64_t n, RangeFn fn) {
    if (n <= 0) return;
    if (size() == 1 || n == 1) {
        for (int64_t i = 0; i < n; ++i) fn(i, i + 1);
        return;
    }
    publish(true, &fn, n, size());
    Job j;
    j.items = true;
    j.fn = &fn;
    j.n = n;
    take_items(next_gen_, j);
    // Every item is taken; wait for the workers that may still run one. A worker registers in busy_ before it
    // takes an item, so one that is not registered now can only find the ticket used up (or a later job's).
    wait_zero(busy_);
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;
    for (;;) {
        const uint64_t g = wait_change(generation_, seen);
        seen = g;
        if (stop_.load()) return;
        Job j;
        if (!read_job(g, j)) continue;  // a parallel_items job already over, its fields being rewritten
        if (j.items) {
            busy_.fetch_add(1);
            take_items(g, j);
            if (busy_.fetch_sub(1) == 1) busy_.notify_one();
        } else if (index < j.threads) {
            const int64_t b = j.n * index / j.threads, e = j.n * (index + 1) / j.threads;
            (*j.fn)(b, e);
            if (pending_.fetch_sub(1) == 1) pending_.notify_one();
        }
    }
}

}  // namespace hs::cpu

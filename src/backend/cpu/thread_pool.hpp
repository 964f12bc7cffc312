// backend/cpu/thread_pool.hpp: the worker threads of our own CPU kernels (the bf16/native matrix products, the
// decode attention).
//
// Why not OpenMP: libgomp's idle workers spin for a long time after each parallel region (its spin count is read
// from the environment at program load, before main can set it), and in the prefill path the next thing to run is
// OpenBLAS's own threads: on a 2-core node the spinning workers took the cores from the SGEMM (prefill 19.5 vs
// 81.5 tokens/s, decode 1.2 vs 24.1 on a loaded machine, OMP_WAIT_POLICY active vs passive). These workers spin
// only briefly (decode issues ~150 jobs per token, microseconds apart, so they stay awake within a token) and
// then sleep on a futex until the next job.
//
// Two kinds of job:
//   - parallel_for: a fixed split, range i to thread i; returns when every thread has run its range.
//   - parallel_items: n work items handed out one at a time to whichever thread asks next (the caller included);
//     returns when all items are done. A worker that is asleep or descheduled (a loaded machine) is not waited
//     for: the threads that run take its share. The decode GEMVs use this.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace hs::cpu {

// A non-owning reference to a callable fn(int64_t begin, int64_t end) (no allocation per job, unlike
// std::function with a lambda that captures more than two pointers).
class RangeFn {
public:
    template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, RangeFn>>>
    RangeFn(F& f)  // NOLINT(google-explicit-constructor): lambdas convert at the call
        : obj_(const_cast<void*>(static_cast<const void*>(&f))),
          call_([](void* o, int64_t b, int64_t e) { (*static_cast<F*>(o))(b, e); }) {}
    void operator()(int64_t b, int64_t e) const { call_(obj_, b, e); }

private:
    void* obj_;
    void (*call_)(void*, int64_t, int64_t);
};

class ThreadPool {
public:
    // threads - 1 workers; the calling thread is the last member of every job.
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }
    // Calls fn(begin, end) on contiguous ranges that split [0, n) over min(n, size()) threads (range i to thread i,
    // so the split is the same on every call) and returns when all are done. Not reentrant; one job at a time.
    template <typename F>
    void parallel_for(int64_t n, F&& fn) { run_static(n, RangeFn(fn)); }
    // Calls fn(i, i + 1) for every item i of [0, n), each once, on whichever thread takes it next; returns when all
    // are done. Not reentrant; one job at a time.
    template <typename F>
    void parallel_items(int64_t n, F&& fn) { run_items(n, RangeFn(fn)); }

private:
    struct Job {
        bool items = false;  // parallel_items (else parallel_for)
        RangeFn* fn = nullptr;
        int64_t n = 0;
        int threads = 0;
    };
    void run_static(int64_t n, RangeFn fn);
    void run_items(int64_t n, RangeFn fn);
    void publish(bool items, RangeFn* fn, int64_t n, int threads);
    bool read_job(uint64_t g, Job& j) const;
    void take_items(uint64_t g, const Job& j);
    void worker(int index);

    std::vector<std::thread> workers_;
    std::atomic<uint64_t> generation_{0};  // bumped per job; workers wait for a change
    // The job of generation job_gen_ (a sequence lock: 0 while it is being rewritten).
    std::atomic<uint64_t> job_gen_{0};
    std::atomic<bool> job_items_{false};
    std::atomic<RangeFn*> job_fn_{nullptr};
    std::atomic<int64_t> job_n_{0};
    std::atomic<int> job_threads_{0};
    std::atomic<int> pending_{0};       // parallel_for: workers still running the current job
    std::atomic<uint64_t> ticket_{0};   // parallel_items: (generation << kIndexBits) | next item
    std::atomic<int> busy_{0};          // parallel_items: workers that may still be running an item
    std::atomic<bool> stop_{false};
    uint64_t next_gen_ = 0;             // the calling thread's count of jobs
};

}  // namespace hs::cpu

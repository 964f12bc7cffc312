// backend/cpu/thread_pool.hpp: the worker threads of our own CPU kernels (the bf16/native matrix products).
//
// Why not OpenMP: libgomp's idle workers spin for a long time after each parallel region (its spin count is read
// from the environment at program load, before main can set it), and in the prefill path the next thing to run is
// OpenBLAS's own threads: on a 2-core node the spinning workers took the cores from the SGEMM (prefill 19.5 vs
// 81.5 tokens/s, decode 1.2 vs 24.1 on a loaded machine, OMP_WAIT_POLICY active vs passive). These workers spin
// only briefly (decode issues ~200 products per token, microseconds apart, so they stay awake within a token) and
// then sleep on a futex until the next job.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace hs::cpu {

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
    void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

private:
    void worker(int index);

    std::vector<std::thread> workers_;
    std::atomic<uint64_t> generation_{0};  // bumped per job; workers wait for a change
    std::atomic<int> pending_{0};          // workers still running the current job
    std::atomic<bool> stop_{false};
    const std::function<void(int64_t, int64_t)>* job_ = nullptr;
    int64_t job_n_ = 0;
    int job_threads_ = 0;
};

}  // namespace hs::cpu

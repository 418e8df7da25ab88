// A fixed pool of worker threads that run one job at a time on every thread,
// ggml-style: the whole graph is one job, and threads meet at a spinning
// barrier between nodes. Spinning costs far less than sleeping and waking
// between the hundreds of small ops of one decode step; between jobs the
// workers sleep on a condition variable.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace quanta {

class ThreadPool {
public:
    // n_threads includes the calling thread; <= 0 means one per usable core,
    // and more than that is capped at it.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    // Runs job(ith, nth) on all threads, the caller as thread 0; returns when
    // all are done. An exception thrown on any thread is rethrown here.
    void run(const std::function<void(int ith, int nth)>& job);
    // Blocks until every thread of the current job has reached it, or until
    // some thread has failed (then returns at once; check failed()).
    void barrier();
    bool failed() const { return failed_.load(std::memory_order_acquire); }

    static int default_threads();

private:
    void worker(int ith);
    void stop();
    void run_guarded(int ith);

    int n_threads_;
    std::vector<std::thread> threads_;
    const std::function<void(int, int)>* job_ = nullptr;

    std::mutex mutex_;
    std::condition_variable wake_;
    uint64_t generation_ = 0;  // bumped per job, guarded by mutex_
    bool stopping_ = false;
    std::atomic<int> running_{0};
    std::exception_ptr error_;
    std::atomic<bool> failed_{false};

    std::atomic<int> barrier_count_{0};
    std::atomic<uint32_t> barrier_phase_{0};
};

}  // namespace quanta

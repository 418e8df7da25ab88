// The thread pool (threadpool.h): workers that sleep between jobs and spin at barriers within one.
#include "core/threadpool.h"

#include <algorithm>
#include <string>
#include <system_error>

#include "base/error.h"
#if defined(__linux__)
#include <sched.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define QUANTA_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define QUANTA_PAUSE() __asm__ __volatile__("yield")
#else
#define QUANTA_PAUSE() ((void)0)
#endif

namespace quanta {
namespace {

// Waiting for other threads: spin briefly (a barrier between two ops usually
// opens within microseconds), then yield, so that when the machine has more
// runnable threads than cores the thread we wait for gets our core instead of
// waiting out a scheduler time slice (measured: a 24-layer decode step went
// from 0.75 ms to 70 ms on a loaded 2-core machine with spins of ~0.3 ms).
void relax(int spins) {
    if (spins < 1 << 10) QUANTA_PAUSE();
    else std::this_thread::yield();
}

}  // namespace

int ThreadPool::default_threads() {
#if defined(__linux__)
    // The cores this process may run on (taskset, cgroups' cpusets), not every core of the machine.
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : (int)n;
}

// More threads than cores only spin against each other at every barrier
// (measured: 999 threads on 2 cores took over a minute for 3 tokens), so the
// count is capped; the Python layer warns when it caps.
ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads <= 0 ? default_threads() : std::min(n_threads, default_threads())) {
    try {
        for (int i = 1; i < n_threads_; ++i) threads_.emplace_back(&ThreadPool::worker, this, i);
    } catch (const std::system_error& e) {
        stop();  // the threads already started must be joined before they are destroyed
        fail(ErrorKind::OutOfMemory, std::string("cannot start ") + std::to_string(n_threads_) + " threads: " + e.what());
    }
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
}

void ThreadPool::run_guarded(int ith) {
    try {
        (*job_)(ith, n_threads_);
    } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true, std::memory_order_release);
    }
}

void ThreadPool::worker(int ith) {
    uint64_t seen = 0;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
            if (stopping_) return;
            seen = generation_;
        }
        run_guarded(ith);
        running_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

void ThreadPool::run(const std::function<void(int, int)>& job) {
    job_ = &job;
    error_ = nullptr;
    failed_.store(false, std::memory_order_release);
    barrier_count_.store(0, std::memory_order_relaxed);
    if (n_threads_ > 1) {
        running_.store(n_threads_ - 1, std::memory_order_release);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++generation_;
        }
        wake_.notify_all();
    }
    run_guarded(0);
    for (int spins = 0; running_.load(std::memory_order_acquire) != 0; ++spins) relax(spins);
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
}

void ThreadPool::barrier() {
    if (n_threads_ == 1) return;
    const uint32_t phase = barrier_phase_.load(std::memory_order_acquire);
    if (barrier_count_.fetch_add(1, std::memory_order_acq_rel) == n_threads_ - 1) {
        barrier_count_.store(0, std::memory_order_relaxed);
        barrier_phase_.fetch_add(1, std::memory_order_acq_rel);
        return;
    }
    for (int spins = 0; barrier_phase_.load(std::memory_order_acquire) == phase && !failed(); ++spins) relax(spins);
}

}  // namespace quanta

#pragma once
/// \file
/// A small persistent thread pool for the CPU backend.
///
/// Why not OpenMP: a header-only library cannot choose the user's OpenMP runtime or flags, and
/// OpenMP's default spin-wait makes the many small parallel regions of a merge (one per tensor)
/// slow when cores are oversubscribed. The caller runs a share of every job itself, so a pool of
/// N threads starts N-1 workers.
///
/// Waking a sleeping thread costs tens of microseconds (on a VM, about 60 us: the idle vCPU must be
/// woken too), as much as a whole pass over a 1 MiB tensor. So waiting is two-phase: workers poll
/// for the next job for `spin_window` after each one before they sleep on a condition variable,
/// and the caller polls for the workers' completion for as long before it sleeps. A merge streams
/// tensors back to back, so workers stay awake between them; an idle pool costs nothing.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace skillvec::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

class thread_pool {
public:
    /// How long an idle thread polls before it sleeps.
    static constexpr std::chrono::microseconds spin_window{200};

    /// A pool that runs jobs on `threads` threads in all (the caller included).
    explicit thread_pool(unsigned threads) : size_(threads == 0 ? 1 : threads) {
        workers_.reserve(size_ - 1);
        for (unsigned i = 1; i < size_; ++i) workers_.emplace_back([this] { worker_loop(); });
    }

    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    ~thread_pool() {
        {
            std::lock_guard lk(mu_);
            stop_.store(true);
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
    }

    [[nodiscard]] unsigned size() const noexcept { return size_; }

    /// Runs `f(i)` for every i in [0, tasks) on at most `max_threads` threads and returns when all
    /// are done. The first exception thrown by a task is rethrown here. Called from inside a task,
    /// or while another thread is using the pool, it runs the tasks serially on the calling thread
    /// instead of waiting (so nesting can't deadlock).
    template <class F> void run(std::size_t tasks, F&& f, unsigned max_threads = 0) {
        if (tasks == 0) return;
        unsigned want = max_threads == 0 ? size_ : (max_threads < size_ ? max_threads : size_);
        if (want > tasks) want = static_cast<unsigned>(tasks);
        std::unique_lock submit(submit_mu_, std::try_to_lock);
        if (want <= 1 || inside_task() || !submit.owns_lock()) {
            for (std::size_t i = 0; i < tasks; ++i) f(i);
            return;
        }
        job j;
        j.ctx = &f;
        j.call = [](void* ctx, std::size_t i) { (*static_cast<std::remove_reference_t<F>*>(ctx))(i); };
        j.tasks = tasks;
        j.helpers = want - 1;
        {
            std::lock_guard lk(mu_);
            job_ = &j;
            generation_.fetch_add(1, std::memory_order_release);
            if (sleepers_) wake_.notify_all();
        }
        work_on(j);
        // Poll for the helpers to finish, then make sure under the lock that none is still inside
        // the job (joining needs the lock) before `j` goes out of scope.
        const auto deadline = std::chrono::steady_clock::now() + spin_window;
        while (!j.complete() && std::chrono::steady_clock::now() < deadline) cpu_relax();
        {
            std::unique_lock lk(mu_);
            caller_waiting_ = true;
            done_.wait(lk, [&] { return j.complete(); });
            caller_waiting_ = false;
            job_ = nullptr;
        }
        if (j.failure) std::rethrow_exception(j.failure);
    }

private:
    struct job {
        void* ctx = nullptr;
        void (*call)(void*, std::size_t) = nullptr;
        std::size_t tasks = 0;
        unsigned helpers = 0;                // workers still allowed to join (guarded by mu_)
        std::atomic<std::size_t> next{0};    // next task index to take
        std::atomic<std::size_t> finished{0};
        std::atomic<unsigned> active{0};     // workers inside this job (changed under mu_)
        std::exception_ptr failure;          // guarded by mu_
        [[nodiscard]] bool complete() const noexcept {
            return active.load(std::memory_order_acquire) == 0 && finished.load(std::memory_order_acquire) == tasks;
        }
    };

    static bool& inside_task() noexcept {
        thread_local bool flag = false;
        return flag;
    }

    void work_on(job& j) {
        inside_task() = true;
        for (;;) {
            const std::size_t i = j.next.fetch_add(1, std::memory_order_relaxed);
            if (i >= j.tasks) break;
            try {
                j.call(j.ctx, i);
            } catch (...) {
                std::lock_guard lk(mu_);
                if (!j.failure) j.failure = std::current_exception();
            }
            j.finished.fetch_add(1, std::memory_order_acq_rel);
        }
        inside_task() = false;
    }

    void worker_loop() {
        std::uint64_t seen = 0;
        for (;;) {
            const auto deadline = std::chrono::steady_clock::now() + spin_window;
            while (generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed) &&
                   std::chrono::steady_clock::now() < deadline)
                cpu_relax();
            job* j = nullptr;
            {
                std::unique_lock lk(mu_);
                if (generation_.load(std::memory_order_relaxed) == seen && !stop_.load()) {
                    ++sleepers_;
                    wake_.wait(lk, [&] { return stop_.load() || generation_.load(std::memory_order_relaxed) != seen; });
                    --sleepers_;
                }
                if (stop_.load()) return;
                seen = generation_.load(std::memory_order_relaxed);
                if (job_ == nullptr || job_->helpers == 0) continue; // finished already, or enough helpers
                --job_->helpers;
                j = job_;
                j->active.fetch_add(1, std::memory_order_acq_rel);
            }
            work_on(*j);
            {
                std::lock_guard lk(mu_);
                j->active.fetch_sub(1, std::memory_order_acq_rel);
                if (caller_waiting_) done_.notify_all();
            }
        }
    }

    unsigned size_;
    std::vector<std::thread> workers_;
    std::mutex submit_mu_;
    std::mutex mu_;
    std::condition_variable wake_;
    std::condition_variable done_;
    job* job_ = nullptr;                       // guarded by mu_
    std::atomic<std::uint64_t> generation_{0}; // bumped (under mu_) for every job
    std::atomic<bool> stop_{false};
    unsigned sleepers_ = 0;                    // guarded by mu_
    bool caller_waiting_ = false;              // guarded by mu_
};

/// Threads used when a backend asks for "all": $SKILLVEC_NUM_THREADS if set, else the hardware's.
[[nodiscard]] inline unsigned default_thread_count() {
    if (const char* env = std::getenv("SKILLVEC_NUM_THREADS")) {
        try {
            const long n = std::stol(env);
            if (n >= 1 && n <= 1024) return static_cast<unsigned>(n);
        } catch (...) {
        }
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : hw;
}

/// The process-wide pool, created on first use.
[[nodiscard]] inline thread_pool& default_pool() {
    static thread_pool pool(default_thread_count());
    return pool;
}

} // namespace skillvec::detail

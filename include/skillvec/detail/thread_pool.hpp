#pragma once
/// \file
/// A small persistent thread pool for the CPU backend.
///
/// Why not OpenMP: a header-only library cannot choose the user's OpenMP runtime or flags, and
/// OpenMP's default spin-wait makes the many small parallel regions of a merge (one per tensor)
/// slow. Workers here block on a condition variable between jobs. The caller runs task 0 itself,
/// so a pool of N threads starts N-1 workers.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace skillvec::detail {

class thread_pool {
public:
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
            stop_ = true;
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
            ++generation_;
        }
        wake_.notify_all();
        work_on(j);
        {
            // Wait for the helpers that joined this job to leave it, so `j` can die safely.
            std::unique_lock lk(mu_);
            done_.wait(lk, [&] { return j.active == 0 && j.finished == j.tasks; });
            job_ = nullptr;
        }
        if (j.failure) std::rethrow_exception(j.failure);
    }

private:
    struct job {
        void* ctx = nullptr;
        void (*call)(void*, std::size_t) = nullptr;
        std::size_t tasks = 0;
        unsigned helpers = 0;                // workers allowed to join
        std::atomic<std::size_t> next{0};    // next task index to take
        std::size_t finished = 0;            // guarded by mu_
        unsigned active = 0;                 // workers inside this job, guarded by mu_
        std::exception_ptr failure;          // guarded by mu_
    };

    static bool& inside_task() noexcept {
        thread_local bool flag = false;
        return flag;
    }

    void work_on(job& j) {
        inside_task() = true;
        std::size_t did = 0;
        for (;;) {
            const std::size_t i = j.next.fetch_add(1, std::memory_order_relaxed);
            if (i >= j.tasks) break;
            try {
                j.call(j.ctx, i);
            } catch (...) {
                std::lock_guard lk(mu_);
                if (!j.failure) j.failure = std::current_exception();
            }
            ++did;
        }
        inside_task() = false;
        std::lock_guard lk(mu_);
        j.finished += did;
    }

    void worker_loop() {
        std::uint64_t seen = 0;
        for (;;) {
            job* j = nullptr;
            {
                std::unique_lock lk(mu_);
                wake_.wait(lk, [&] { return stop_ || (generation_ != seen && job_ != nullptr); });
                if (stop_) return;
                seen = generation_;
                if (job_->helpers == 0) continue; // enough helpers already
                --job_->helpers;
                j = job_;
                ++j->active;
            }
            work_on(*j);
            {
                std::lock_guard lk(mu_);
                --j->active;
            }
            done_.notify_all();
        }
    }

    unsigned size_;
    std::vector<std::thread> workers_;
    std::mutex submit_mu_;
    std::mutex mu_;
    std::condition_variable wake_;
    std::condition_variable done_;
    job* job_ = nullptr;
    std::uint64_t generation_ = 0;
    bool stop_ = false;
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

// The CPU backend's thread pool: every task runs exactly once, exceptions reach the caller,
// nesting and concurrent callers neither deadlock nor lose work.
#include <skillvec/detail/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

using skillvec::detail::thread_pool;

TEST_CASE("every task runs exactly once, on up to the requested threads", "[thread_pool]") {
    thread_pool pool(4);
    CHECK(pool.size() == 4);
    for (std::size_t tasks : {1u, 2u, 3u, 4u, 5u, 100u, 1000u}) {
        for (unsigned max_threads : {0u, 1u, 2u, 8u}) {
            std::vector<std::atomic<int>> hits(tasks);
            pool.run(tasks, [&](std::size_t i) { hits[i].fetch_add(1); }, max_threads);
            for (auto& h : hits) REQUIRE(h.load() == 1);
        }
    }
    pool.run(0, [](std::size_t) { FAIL("no tasks, no calls"); });
}

TEST_CASE("work really spreads over threads", "[thread_pool]") {
    thread_pool pool(3);
    std::mutex mu;
    std::set<std::thread::id> ids;
    std::atomic<int> arrived{0};
    pool.run(3, [&](std::size_t) {
        {
            std::lock_guard lk(mu);
            ids.insert(std::this_thread::get_id());
        }
        arrived.fetch_add(1);
        // Wait (bounded) until all three tasks are in flight at once: only possible on 3 threads.
        for (int spin = 0; spin < 2000 && arrived.load() < 3; ++spin) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    CHECK(ids.size() == 3);
}

TEST_CASE("the first exception reaches the caller and the pool stays usable", "[thread_pool]") {
    thread_pool pool(3);
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH(pool.run(50, [&](std::size_t i) {
        ran.fetch_add(1);
        if (i == 7) throw std::runtime_error("task 7 failed");
    }), "task 7 failed");
    CHECK(ran.load() == 50); // the other tasks still ran
    std::atomic<int> again{0};
    pool.run(10, [&](std::size_t) { again.fetch_add(1); });
    CHECK(again.load() == 10);
}

TEST_CASE("nested runs and concurrent callers do not deadlock", "[thread_pool]") {
    thread_pool pool(2);
    std::atomic<int> inner{0};
    pool.run(4, [&](std::size_t) { pool.run(5, [&](std::size_t) { inner.fetch_add(1); }); });
    CHECK(inner.load() == 20);

    std::atomic<int> total{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 4; ++c)
        callers.emplace_back([&] {
            for (int r = 0; r < 50; ++r) pool.run(7, [&](std::size_t) { total.fetch_add(1); });
        });
    for (auto& t : callers) t.join();
    CHECK(total.load() == 4 * 50 * 7);
}

// Merge methods (include/skillvec/recipe/methods.hpp) against PaST, on the same machine, in one run.
//
// One tensor per model (bf16 or f32), three fine-tuned models and their base, a bf16/f32 output;
// each row evaluates one method over the whole tensor (prepare() once, then run(): the statistic
// passes of ties/magnitude_prune/breadcrumbs are part of run(), as in `skillvec merge`). Rows are
//   <method>/<dtype>/<bytes per tensor>/threads:<n>
// and report bytes_per_second (inputs read once plus the output written, whatever the method's
// extra passes read) and ns_per_element. The comparison that matters is the time ratio to the
// `past` row of the same dtype, size and threads (3 input streams and one output, the library's
// memory-bound kernel): benchmarks/report_methods prints it.
//
//   bench_methods                              all rows (about a minute)
//   bench_methods --fast                       small sizes, short runs
//   bench_methods --benchmark_filter='/bf16/'  any Google Benchmark flag works
#include <skillvec/recipe/methods.hpp>
#include <skillvec/skillvec.hpp>

#include "bench_common.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sv = skillvec;

namespace {

bool g_fast = false;

/// base, and three models = base + a task vector about a tenth of its size.
struct working_set {
    sv::dtype dt;
    std::size_t n;
    sv::memory_store base{"base"}, m1{"m1"}, m2{"m2"}, m3{"m3"}, out{"out"};

    working_set(sv::dtype t, std::size_t count) : dt(t), n(count) {
        std::vector<float> b(n), tmp(n);
        for (std::size_t i = 0; i < n; ++i) b[i] = sv::bench::value(i, 1);
        base.add_converted("w", dt, {n}, b);
        std::uint64_t seed = 2;
        for (auto* m : {&m1, &m2, &m3}) {
            for (std::size_t i = 0; i < n; ++i) tmp[i] = b[i] + 0.1f * sv::bench::value(i, seed);
            m->add_converted("w", dt, {n}, tmp);
            ++seed;
        }
        out.add("w", dt, {n});
    }
};

working_set& get_ws(sv::dtype dt, std::size_t n) { return sv::bench::working_set_for<working_set>(dt, n); }

/// A method: how many model streams it reads (for bytes_per_second), and its prepared step.
struct method {
    const char* name;
    int reads;
    std::function<std::function<void()>(working_set&, const sv::cpu_backend&)> make;
};

template <class E> std::function<void()> step_of(E&& e, working_set& ws, const sv::cpu_backend& be) {
    return [p = sv::prepare(std::forward<E>(e), be), &ws] { p.run(sv::into(ws.out)); };
}

std::vector<method> methods() {
    using sv::weights;
    auto tau = [](sv::memory_store& m, sv::memory_store& b) { return weights(m) - weights(b); };
    return {
        {"past", 3, [](working_set& ws, const sv::cpu_backend& be) { return step_of(sv::past(weights(ws.m1), weights(ws.m2), weights(ws.m3), 0.5f), ws, be); }},
        {"task_arithmetic", 4, [tau](working_set& ws, const sv::cpu_backend& be) {
             return step_of(weights(ws.base) + sv::task_arithmetic({.lambda = 0.5f}, sv::task(tau(ws.m1, ws.base)), sv::task(tau(ws.m2, ws.base)),
                                                                   sv::task(tau(ws.m3, ws.base))), ws, be);
         }},
        {"ties", 4, [tau](working_set& ws, const sv::cpu_backend& be) {
             return step_of(weights(ws.base) + sv::ties({}, sv::task(tau(ws.m1, ws.base), {.density = 0.5f}),
                                                        sv::task(tau(ws.m2, ws.base), {.density = 0.5f}),
                                                        sv::task(tau(ws.m3, ws.base), {.density = 0.5f})), ws, be);
         }},
        {"dare_ties", 4, [tau](working_set& ws, const sv::cpu_backend& be) {
             return step_of(weights(ws.base) + sv::dare({.sign = sv::consensus::sum, .seed = 7}, sv::task(tau(ws.m1, ws.base), {.density = 0.5f}),
                                                        sv::task(tau(ws.m2, ws.base), {.density = 0.5f}),
                                                        sv::task(tau(ws.m3, ws.base), {.density = 0.5f})), ws, be);
         }},
        {"dare_linear", 4, [tau](working_set& ws, const sv::cpu_backend& be) {
             return step_of(weights(ws.base) + sv::dare({.seed = 7}, sv::task(tau(ws.m1, ws.base), {.density = 0.5f}),
                                                        sv::task(tau(ws.m2, ws.base), {.density = 0.5f}),
                                                        sv::task(tau(ws.m3, ws.base), {.density = 0.5f})), ws, be);
         }},
        {"breadcrumbs_ties", 4, [tau](working_set& ws, const sv::cpu_backend& be) {
             return step_of(weights(ws.base) + sv::breadcrumbs({.sign = sv::consensus::sum}, sv::task(tau(ws.m1, ws.base), {.density = 0.5f}),
                                                               sv::task(tau(ws.m2, ws.base), {.density = 0.5f}),
                                                               sv::task(tau(ws.m3, ws.base), {.density = 0.5f})), ws, be);
         }},
        {"magnitude_prune", 4, [tau](working_set& ws, const sv::cpu_backend& be) {
             return step_of(weights(ws.base) + sv::magnitude_prune({}, sv::task(tau(ws.m1, ws.base), {.density = 0.5f}),
                                                                   sv::task(tau(ws.m2, ws.base), {.density = 0.5f}),
                                                                   sv::task(tau(ws.m3, ws.base), {.density = 0.5f})), ws, be);
         }},
        {"linear", 3, [](working_set& ws, const sv::cpu_backend& be) {
             return step_of(sv::linear(true, sv::task(weights(ws.m1)), sv::task(weights(ws.m2)), sv::task(weights(ws.m3))), ws, be);
         }},
        {"slerp", 2, [](working_set& ws, const sv::cpu_backend& be) { return step_of(sv::slerp(weights(ws.m1), weights(ws.m2), 0.3f), ws, be); }},
        {"orthogonal_past", 4, [](working_set& ws, const sv::cpu_backend& be) {
             return step_of(sv::orthogonal_past(weights(ws.m1), weights(ws.m2), weights(ws.m3), weights(ws.base)), ws, be);
         }},
    };
}

void bench(benchmark::State& st, const method& m, sv::dtype dt, std::size_t n, unsigned threads) {
    working_set& ws = get_ws(dt, n);
    const auto step = m.make(ws, sv::cpu_backend{.threads = threads});
    step(); // warm up
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : st) {
        step();
        benchmark::ClobberMemory();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double elements = static_cast<double>(n) * static_cast<double>(st.iterations());
    const double elem = static_cast<double>(sv::bits_of(dt)) / 8.0;
    st.SetBytesProcessed(static_cast<std::int64_t>((m.reads + 1) * elem * elements));
    st.counters["ns_per_element"] = seconds * 1e9 / elements;
}

void register_all() {
    std::vector<std::size_t> sizes = {std::size_t{1} << 20, std::size_t{32} << 20};
    if (g_fast) sizes = {std::size_t{256} << 10};
    std::vector<unsigned> thread_counts = {1};
    if (const unsigned all = sv::detail::default_pool().size(); all > 1) thread_counts.push_back(all);
    static const std::vector<method> all = methods();
    for (sv::dtype dt : {sv::dtype::bf16, sv::dtype::f32}) {
        for (std::size_t bytes : sizes) {
            const std::size_t n = bytes / (sv::bits_of(dt) / 8);
            for (const method& m : all) {
                for (unsigned th : thread_counts) {
                    const std::string name = std::string(m.name) + "/" + std::string(sv::name_of(dt)) + "/" + std::to_string(bytes) +
                                             "/threads:" + std::to_string(th);
                    auto* b = benchmark::RegisterBenchmark(name.c_str(), bench, std::cref(m), dt, n, th);
                    b->UseRealTime()->Unit(benchmark::kMillisecond);
                    if (g_fast) b->MinTime(0.01);
                }
            }
        }
    }
}

} // namespace

int main(int argc, char** argv) {
    std::vector<char*> args = sv::bench::without_fast_flag(argc, argv, g_fast);
    int n = static_cast<int>(args.size());
    benchmark::Initialize(&n, args.data());
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

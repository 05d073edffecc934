// Delta-kernel micro-benchmarks against this machine's own limit.
//
// Every kernel runs for f32, bf16 and f16 storage, at sizes from L1-resident to 4x the last-level
// cache, on 1 thread and on all threads. Each row reports bytes_per_second and ratio_to_limit:
// its speed over that of a streaming loop with the same read and write streams, the same bytes,
// the same thread partition and the same store policy, doing trivial arithmetic (XOR of the raw
// bytes). The ratio is measured in interleaved pairs (see measure_pair), in the same process.
//
// Rows are named  <kernel>/<implementation>/<dtype>/<bytes per tensor>/threads:<n>  with
// implementation one of
//   skillvec       the library's kernel: prepare() once, then time run() (one fused pass)
//   evaluate       the same through evaluate(), which binds on every call (f32 PaST, small sizes)
//   limit          the streaming loop (the limit itself; its ratio shows the run's noise)
//   scalar         a plain scalar loop, as one would write it, on the same threads
//   xtensor_eager  xtensor, unfused: v = a - b materialized, then t + l*v      (f32 PaST only)
//   xtensor_lazy   xtensor's own lazy expression t + l*(a - b)                 (f32 PaST only)
//
//   bench_kernels                       the full suite (a few minutes); see benchmarks/report
//   bench_kernels --fast                seconds: small sizes, short runs (CI)
//   bench_kernels --benchmark_filter='^past/'   any Google Benchmark flag works
#include <skillvec/interop/xtensor.hpp>
#include <skillvec/skillvec.hpp>

#include "bench_common.hpp"

#include <benchmark/benchmark.h>

#include <xtensor/xnoalias.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace sv = skillvec;
namespace cpuk = skillvec::backend::cpu;

namespace {

bool g_fast = false;
constexpr float lambda = 0.5f;
// In place, every pass changes the working set that later rows read. A lambda this small keeps
// the update below half an ulp of 16-bit storage and negligible in f32, so millions of passes
// cannot drift the data towards overflow; the kernel's cost does not depend on its value.
constexpr float lambda_in_place = 1e-6f;

// --- kernels and their stream shapes ---------------------------------------------------------------

enum class kernel { extract, scale, inject, past, past_inplace, cosine, norm, sparsity };

struct kernel_info {
    kernel k;
    const char* name;
    int model_reads;  ///< streams of the storage dtype read
    int f32_reads;    ///< streams of f32 read (the stored skill vector of inject)
    int write_bytes;  ///< bytes written per element: 0, 4 (f32 vector), or -1 for the storage dtype
    bool in_place;    ///< the written stream is the first read stream
};

constexpr kernel_info kernels[] = {
    {kernel::extract, "extract", 2, 0, 4, false},      // v = a - b            (vector result: f32)
    {kernel::scale, "scale", 1, 0, 4, false},          // 0.5 * v              (f32)
    {kernel::inject, "inject", 1, 1, -1, false},       // t + 0.5 * v, v a saved f32 skill vector
    {kernel::past, "past", 3, 0, -1, false},           // t + 0.5 * (a - b) into a new tensor
    {kernel::past_inplace, "past_inplace", 3, 0, -1, true}, // t += 0.5 * (a - b)
    {kernel::cosine, "cosine", 2, 0, 0, false},        // dot and both norms, one pass
    {kernel::norm, "norm", 1, 0, 0, false},
    {kernel::sparsity, "sparsity", 1, 0, 0, false},
};

std::size_t elem_bytes(sv::dtype t) { return sv::bits_of(t) / 8; }

std::size_t write_bytes(const kernel_info& ki, sv::dtype dt) {
    return ki.write_bytes < 0 ? elem_bytes(dt) : static_cast<std::size_t>(ki.write_bytes);
}

/// Bytes one pass moves per element (reads + writes): the bytes_per_second numerator.
std::size_t pass_bytes_per_element(const kernel_info& ki, sv::dtype dt) {
    return ki.model_reads * elem_bytes(dt) + 4u * ki.f32_reads + write_bytes(ki, dt);
}

// --- working sets ------------------------------------------------------------------------------------

struct working_set {
    sv::dtype dt;
    std::size_t n;
    sv::memory_store a{"a"}, b{"b"}, c{"c"}, out{"out"}, v{"v"}, out_f32{"out_f32"};

    working_set(sv::dtype t, std::size_t count) : dt(t), n(count) {
        std::vector<float> tmp(n);
        std::uint64_t seed = 1;
        for (auto* s : {&a, &b, &c, &out}) {
            for (std::size_t i = 0; i < n; ++i) tmp[i] = sv::bench::value(i, seed);
            s->add_converted("w", dt, {n}, tmp);
            ++seed;
        }
        for (std::size_t i = 0; i < n; ++i) tmp[i] = sv::bench::value(i, 99) * 0.1f;
        v.add_converted("w", sv::dtype::f32, {n}, tmp);
        out_f32.add("w", sv::dtype::f32, {n});
    }
    std::byte* ptr(sv::memory_store& s) { return s.at_mutable("w").bytes.data(); }
};

working_set& get_ws(sv::dtype dt, std::size_t n) { return sv::bench::working_set_for<working_set>(dt, n); }

unsigned all_threads() { return sv::detail::default_pool().size(); }

/// The kernels' partition: ranges on 64-element multiples, one per thread, none below the grain.
template <class F> void partitioned(std::size_t n, unsigned threads, F&& body) {
    const std::size_t tasks = std::max<std::size_t>(1, std::min<std::size_t>(threads, (n + cpuk::parallel_grain - 1) / cpuk::parallel_grain));
    const std::size_t chunk = ((n + tasks - 1) / tasks + 63) / 64 * 64;
    sv::detail::default_pool().run(tasks, [&](std::size_t t) {
        const std::size_t b = t * chunk, e = std::min(n, b + chunk);
        if (b < e) body(b, e);
    }, threads);
}

/// The kernels' store policy, for the same tensor: stream when inputs and output exceed the LLC.
bool streams(const kernel_info& ki, sv::dtype dt, std::size_t n) {
    return write_bytes(ki, dt) > 0 && !ki.in_place && pass_bytes_per_element(ki, dt) * n > cpuk::last_level_cache_bytes();
}

// --- the limit: a streaming loop over the same bytes ------------------------------------------

using byte_batch = xsimd::batch<std::uint8_t>;
constexpr std::size_t R = byte_batch::size; // bytes per register

template <bool Stream> void put_bytes(std::uint8_t* p, const byte_batch& x) {
    // byte_batch is the default architecture's widest register, which the #if ladder matches.
#if XSIMD_WITH_AVX512F
    cpuk::detail::put512<Stream>(p, x);
#elif XSIMD_WITH_AVX
    cpuk::detail::put256<Stream>(p, x);
#elif XSIMD_WITH_SSE2
    cpuk::detail::put128<Stream>(p, x);
#else
    x.store_unaligned(p);
#endif
}

/// The limit loop for one stream shape, all bounds compile-time (loops unrolled with cpuk::unroll,
/// so the accumulators are indexed by constants and live in registers): Nm model streams of Wm bytes per
/// element, Nv f32 streams, an output of Wo bytes per element (0: a reduction), written in place
/// over model stream 0 or not. Per 64 elements it loads every input register once, XORs them
/// into the output's registers (or into 4 accumulators for a reduction) and stores each output
/// register once, streaming when the kernel would.
template <int Nm, int Wm, int Nv, int Wo, bool InPlace, bool Stream>
void limit_range(std::uint8_t* const* m, const std::uint8_t* v, std::uint8_t* out, std::size_t b, std::size_t e,
                 std::uint8_t* sink) {
    constexpr std::size_t block = 64, m_regs = block * Wm / R, v_regs = block * 4 / R;
    constexpr std::size_t out_regs = Wo ? block * Wo / R : 4;
    if constexpr (InPlace) out = m[0];
    byte_batch acc[out_regs];
    cpuk::unroll<out_regs>([&](auto r) { acc[r] = byte_batch(std::uint8_t{0}); });
    std::size_t i = b;
    for (; i + block <= e; i += block) {
        if constexpr (Wo != 0) cpuk::unroll<out_regs>([&](auto r) { acc[r] = byte_batch(std::uint8_t{0}); });
        cpuk::unroll<Nm>([&](auto k) {
            cpuk::unroll<m_regs>([&](auto r) { acc[(k * m_regs + r) % out_regs] ^= byte_batch::load_unaligned(m[k] + i * Wm + r * R); });
        });
        cpuk::unroll<Nv>([&](auto) {
            cpuk::unroll<v_regs>([&](auto r) { acc[(Nm * m_regs + r) % out_regs] ^= byte_batch::load_unaligned(v + i * 4 + r * R); });
        });
        if constexpr (Wo != 0) cpuk::unroll<out_regs>([&](auto r) { put_bytes<Stream>(out + i * Wo + r * R, acc[r]); });
    }
    if constexpr (Stream) cpuk::detail::stream_fence();
    for (; i < e; ++i) { // tail, bytewise (sizes here are multiples of 64 elements: never runs)
        std::uint8_t x = 0;
        for (int k = 0; k < Nm; ++k)
            for (int w = 0; w < Wm; ++w) x ^= m[k][i * Wm + w];
        for (int k = 0; k < Nv; ++k)
            for (int w = 0; w < 4; ++w) x ^= v[i * 4 + w];
        if constexpr (Wo != 0) std::memset(out + i * Wo, x, Wo);
        else *sink ^= x;
    }
    if constexpr (Wo == 0) {
        alignas(64) std::uint8_t lanes[R];
        for (auto& x : acc) {
            x.store_aligned(lanes);
            for (auto l : lanes) *sink ^= l;
        }
    }
}

void run_limit(const kernel_info& ki, working_set& ws, unsigned threads, std::uint8_t* sink) {
    auto bytes = [&](sv::memory_store& s) { return reinterpret_cast<std::uint8_t*>(ws.ptr(s)); };
    std::uint8_t* m[3] = {bytes(ws.a), bytes(ws.b), bytes(ws.c)};
    const std::uint8_t* v = bytes(ws.v);
    const bool wide = elem_bytes(ws.dt) == 4;
    std::uint8_t* out = write_bytes(ki, ws.dt) == elem_bytes(ws.dt) ? bytes(ws.out) : bytes(ws.out_f32);
    const bool stream = streams(ki, ws.dt, ws.n);
    partitioned(ws.n, threads, [&](std::size_t b, std::size_t e) {
        std::uint8_t local = 0;
        // One instantiation per kernel shape and model width (2: bf16/f16, 4: f32).
        auto go = [&]<int Nm, int Nv, int WoF32, bool WoModel, bool InPlace>() {
            auto with = [&]<int Wm>() {
                constexpr int Wo = WoModel ? Wm : WoF32;
                if (stream) limit_range<Nm, Wm, Nv, Wo, InPlace, true>(m, v, out, b, e, &local);
                else limit_range<Nm, Wm, Nv, Wo, InPlace, false>(m, v, out, b, e, &local);
            };
            if (wide) with.template operator()<4>();
            else with.template operator()<2>();
        };
        switch (ki.k) {
        case kernel::extract: go.template operator()<2, 0, 4, false, false>(); break;
        case kernel::scale: go.template operator()<1, 0, 4, false, false>(); break;
        case kernel::inject: go.template operator()<1, 1, 0, true, false>(); break;
        case kernel::past: go.template operator()<3, 0, 0, true, false>(); break;
        case kernel::past_inplace: go.template operator()<3, 0, 0, true, true>(); break;
        case kernel::cosine: go.template operator()<2, 0, 0, false, false>(); break;
        case kernel::norm:
        case kernel::sparsity: go.template operator()<1, 0, 0, false, false>(); break;
        }
        *sink ^= local; // keeps reductions from being optimized away (races on a byte don't matter)
    });
    benchmark::DoNotOptimize(*sink);
}

/// ratio_to_limit, measured in pairs: rounds alternate a timed segment of the measured code and
/// one of its limit (the same number of passes each, the order flipping every round), and the
/// ratio is the median over rounds of limit time / kernel time. Whatever drifts on a shared
/// machine (other tenants, clocks) drifts for both halves of a pair, so it mostly cancels.
struct paired {
    double ratio;          ///< kernel speed / limit speed
    double limit_bytes_s;  ///< the limit's median speed in these rounds
    double kernel_bytes_s; ///< the measured code's median speed in the same rounds
};

template <class Kernel, class Limit> paired measure_pair(Kernel&& kernel, Limit&& limit, double bytes_per_pass) {
    auto time = [](auto& f, int reps) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) f();
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    // Passes per segment: enough for about 20 us (2 us in fast mode) of work.
    const double one = std::max(time(limit, 1), 1e-9);
    const int reps = static_cast<int>(std::clamp((g_fast ? 2e-6 : 2e-5) / one, 1.0, 1e6));
    // 9 rounds, fewer when a round is slow (a scalar loop over 512 MB), never fewer than 3.
    const int max_rounds = g_fast ? 3 : 9;
    const double budget = g_fast ? 0.01 : 0.5;
    double spent = 0;
    std::vector<double> ratios, limits, kernel_rates;
    for (int r = 0; r < max_rounds && (r < 3 || spent < budget); ++r) {
        double tk, tl;
        if (r % 2) {
            tk = time(kernel, reps);
            tl = time(limit, reps);
        } else {
            tl = time(limit, reps);
            tk = time(kernel, reps);
        }
        spent += tk + tl;
        ratios.push_back(tl / tk);
        limits.push_back(bytes_per_pass * reps / tl);
        kernel_rates.push_back(bytes_per_pass * reps / tk);
    }
    auto median = [](std::vector<double> v) {
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
        return v[v.size() / 2];
    };
    return {median(ratios), median(limits), median(kernel_rates)};
}

// --- skillvec ------------------------------------------------------------------------------------

/// The library's kernel for `ki`, bound once (prepare) so that each call is one fused pass.
std::function<void()> skillvec_step(const kernel_info& ki, working_set& ws, unsigned threads) {
    const sv::cpu_backend be{.threads = threads};
    const sv::eval_options mixed{.allow_mixed_float_dtypes = true};
    auto into = [](sv::memory_store& s) { return sv::into(s); };
    switch (ki.k) {
    case kernel::extract: return [p = sv::prepare(sv::weights(ws.a) - sv::weights(ws.b), be), &ws, into] { p.run(into(ws.out_f32)); };
    case kernel::scale: return [p = sv::prepare(lambda * sv::delta(ws.a), be), &ws, into] { p.run(into(ws.out_f32)); };
    case kernel::inject:
        return [p = sv::prepare(sv::inject(sv::weights(ws.a), sv::delta(ws.v), lambda), be, mixed), &ws, into] { p.run(into(ws.out)); };
    case kernel::past:
        return [p = sv::prepare(sv::past(sv::weights(ws.a), sv::weights(ws.b), sv::weights(ws.c), lambda), be), &ws, into] { p.run(into(ws.out)); };
    case kernel::past_inplace:
        return [p = sv::prepare(sv::past(sv::weights(ws.a), sv::weights(ws.b), sv::weights(ws.c), lambda_in_place), be), &ws, into] {
            p.run(into(ws.a));
        };
    case kernel::cosine: return [p = sv::prepare(sv::cosine(sv::delta(ws.a), sv::delta(ws.b)), be)] { benchmark::DoNotOptimize(p.run().value()); };
    case kernel::norm: return [p = sv::prepare(sv::norm(sv::delta(ws.a)), be)] { benchmark::DoNotOptimize(p.run().value()); };
    case kernel::sparsity: return [p = sv::prepare(sv::sparsity(sv::delta(ws.a), 1e-3f), be)] { benchmark::DoNotOptimize(p.run().value()); };
    }
    return [] {};
}

/// The same PaST through evaluate(): binding (name, shape and dtype checks, the plan) on every call.
void run_evaluate_past(working_set& ws, unsigned threads) {
    sv::evaluate(sv::past(sv::weights(ws.a), sv::weights(ws.b), sv::weights(ws.c), lambda), sv::into(ws.out),
                 sv::cpu_backend{.threads = threads});
}

/// Relative error of the cosine against a compensated double sum (once per working set).
double cosine_relative_error(working_set& ws) {
    static std::map<std::pair<int, std::size_t>, double> cache;
    const auto key = std::make_pair(static_cast<int>(ws.dt), ws.n);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    const auto va = ws.a.to_f32("w"), vb = ws.b.to_f32("w");
    long double d = 0, aa = 0, bb = 0;
    for (std::size_t i = 0; i < ws.n; ++i) {
        d += static_cast<long double>(va[i]) * vb[i];
        aa += static_cast<long double>(va[i]) * va[i];
        bb += static_cast<long double>(vb[i]) * vb[i];
    }
    const double want = static_cast<double>(d / std::sqrt(aa * bb));
    const double got = sv::evaluate(sv::cosine(sv::delta(ws.a), sv::delta(ws.b))).value();
    return cache[key] = std::fabs(got - want) / std::fabs(want);
}

// --- plain scalar loops ---------------------------------------------------------------------------

template <class T> float f32(T x) { return static_cast<float>(x); }
template <class T> T from(float x) {
    if constexpr (std::is_same_v<T, float>) return x;
    else return T::from(x);
}

template <class T> void run_scalar_typed(const kernel_info& ki, working_set& ws, unsigned threads) {
    T* a = reinterpret_cast<T*>(ws.ptr(ws.a));
    const T* b = reinterpret_cast<const T*>(ws.ptr(ws.b));
    const T* c = reinterpret_cast<const T*>(ws.ptr(ws.c));
    T* out = reinterpret_cast<T*>(ws.ptr(ws.out));
    float* out32 = reinterpret_cast<float*>(ws.ptr(ws.out_f32));
    const float* v = reinterpret_cast<const float*>(ws.ptr(ws.v));
    std::atomic<double> result{0};
    auto add = [&](double x) {
        double cur = result.load();
        while (!result.compare_exchange_weak(cur, cur + x)) {
        }
    };
    // One plain loop per kernel, as one would write it (the compiler may vectorize the f32 ones).
    partitioned(ws.n, threads, [&](std::size_t lo, std::size_t hi) {
        switch (ki.k) {
        case kernel::extract: for (std::size_t i = lo; i < hi; ++i) out32[i] = f32(a[i]) - f32(b[i]); break;
        case kernel::scale: for (std::size_t i = lo; i < hi; ++i) out32[i] = lambda * f32(a[i]); break;
        case kernel::inject: for (std::size_t i = lo; i < hi; ++i) out[i] = from<T>(f32(a[i]) + lambda * v[i]); break;
        case kernel::past:
            for (std::size_t i = lo; i < hi; ++i) out[i] = from<T>(f32(a[i]) + lambda * (f32(b[i]) - f32(c[i])));
            break;
        case kernel::past_inplace:
            for (std::size_t i = lo; i < hi; ++i) a[i] = from<T>(f32(a[i]) + lambda_in_place * (f32(b[i]) - f32(c[i])));
            break;
        case kernel::cosine: {
            double d = 0, x2 = 0, y2 = 0;
            for (std::size_t i = lo; i < hi; ++i) {
                const double x = f32(a[i]), y = f32(b[i]);
                d += x * y;
                x2 += x * x;
                y2 += y * y;
            }
            add(d + x2 + y2);
            break;
        }
        case kernel::norm: {
            double x2 = 0;
            for (std::size_t i = lo; i < hi; ++i) x2 += static_cast<double>(f32(a[i])) * f32(a[i]);
            add(x2);
            break;
        }
        case kernel::sparsity: {
            std::size_t small = 0;
            for (std::size_t i = lo; i < hi; ++i) small += std::fabs(f32(a[i])) <= 1e-3f;
            add(static_cast<double>(small));
            break;
        }
        }
    });
    benchmark::DoNotOptimize(result.load());
}

void run_scalar(const kernel_info& ki, working_set& ws, unsigned threads) {
    switch (ws.dt) {
    case sv::dtype::bf16: return run_scalar_typed<sv::bfloat16>(ki, ws, threads);
    case sv::dtype::f16: return run_scalar_typed<sv::float16>(ki, ws, threads);
    default: return run_scalar_typed<float>(ki, ws, threads);
    }
}

// --- xtensor (f32 PaST) -------------------------------------------------------------------------

void run_xtensor(working_set& ws, unsigned threads, bool eager) {
    float* t = reinterpret_cast<float*>(ws.ptr(ws.a));
    float* a = reinterpret_cast<float*>(ws.ptr(ws.b));
    float* b = reinterpret_cast<float*>(ws.ptr(ws.c));
    float* o = reinterpret_cast<float*>(ws.ptr(ws.out));
    float* v = reinterpret_cast<float*>(ws.ptr(ws.out_f32)); // the materialized skill vector
    partitioned(ws.n, threads, [&](std::size_t lo, std::size_t hi) {
        const std::size_t m = hi - lo;
        auto xt_ = xt::adapt(t + lo, m, xt::no_ownership(), std::vector<std::size_t>{m});
        auto xa = xt::adapt(a + lo, m, xt::no_ownership(), std::vector<std::size_t>{m});
        auto xb = xt::adapt(b + lo, m, xt::no_ownership(), std::vector<std::size_t>{m});
        auto xo = xt::adapt(o + lo, m, xt::no_ownership(), std::vector<std::size_t>{m});
        if (eager) {
            auto xv = xt::adapt(v + lo, m, xt::no_ownership(), std::vector<std::size_t>{m});
            xt::noalias(xv) = xa - xb;
            xt::noalias(xo) = xt_ + lambda * xv;
        } else {
            xt::noalias(xo) = xt_ + lambda * (xa - xb);
        }
    });
}

// --- registration ---------------------------------------------------------------------------------

enum class impl { skillvec, evaluate, limit, scalar, xtensor_eager, xtensor_lazy };
const char* impl_name(impl i) {
    switch (i) {
    case impl::skillvec: return "skillvec";
    case impl::evaluate: return "evaluate";
    case impl::limit: return "limit";
    case impl::scalar: return "scalar";
    case impl::xtensor_eager: return "xtensor_eager";
    case impl::xtensor_lazy: return "xtensor_lazy";
    }
    return "?";
}

void bench(benchmark::State& st, kernel_info ki, impl im, sv::dtype dt, std::size_t n, unsigned threads) {
    working_set& ws = get_ws(dt, n);
    std::uint8_t sink = 0;
    const std::function<void()> kernel_step = im == impl::skillvec ? skillvec_step(ki, ws, threads) : std::function<void()>();
    auto step = [&] {
        switch (im) {
        case impl::skillvec: kernel_step(); break;
        case impl::evaluate: run_evaluate_past(ws, threads); break;
        case impl::limit: run_limit(ki, ws, threads, &sink); break;
        case impl::scalar: run_scalar(ki, ws, threads); break;
        case impl::xtensor_eager: run_xtensor(ws, threads, true); break;
        case impl::xtensor_lazy: run_xtensor(ws, threads, false); break;
        }
    };
    auto limit_step = [&] { run_limit(ki, ws, threads, &sink); };
    step(); // warm up (first touch, caches)
    for (auto _ : st) {
        step();
        benchmark::ClobberMemory();
    }
    const double bytes_per_pass = static_cast<double>(pass_bytes_per_element(ki, dt) * n);
    st.SetBytesProcessed(static_cast<std::int64_t>(bytes_per_pass * static_cast<double>(st.iterations())));
    const paired p = measure_pair(step, limit_step, bytes_per_pass);
    st.counters["ratio_to_limit"] = p.ratio;
    st.counters["limit_GBps"] = p.limit_bytes_s / 1e9;
    st.counters["paired_GBps"] = p.kernel_bytes_s / 1e9;
    if (ki.k == kernel::cosine && im == impl::skillvec) st.counters["rel_err"] = cosine_relative_error(ws);
}

void register_all() {
    const sv::dtype dtypes[] = {sv::dtype::f32, sv::dtype::bf16, sv::dtype::f16};
    // Bytes per tensor: L1, L2, L3-resident, the LLC size, and 4x the LLC.
    std::vector<std::size_t> sizes = {std::size_t{4} << 10, std::size_t{64} << 10, std::size_t{1} << 20, std::size_t{8} << 20,
                                      std::size_t{32} << 20, std::size_t{128} << 20};
    if (g_fast) sizes = {std::size_t{4} << 10, std::size_t{1} << 20};
    std::vector<unsigned> thread_counts = {1};
    if (all_threads() > 1) thread_counts.push_back(all_threads());
    for (sv::dtype dt : dtypes) {
        for (std::size_t bytes : sizes) {
            const std::size_t n = bytes / elem_bytes(dt);
            for (const auto& ki : kernels) {
                std::vector<impl> impls = {impl::limit, impl::skillvec, impl::scalar};
                if (ki.k == kernel::past && dt == sv::dtype::f32) {
                    impls.push_back(impl::xtensor_eager);
                    impls.push_back(impl::xtensor_lazy);
                    if (bytes <= (std::size_t{1} << 20)) impls.push_back(impl::evaluate); // where binding shows
                }
                for (impl im : impls) {
                    for (unsigned th : thread_counts) {
                        const std::string name = std::string(ki.name) + "/" + impl_name(im) + "/" +
                                                 std::string(sv::name_of(dt)) + "/" + std::to_string(bytes) +
                                                 "/threads:" + std::to_string(th);
                        auto* b = benchmark::RegisterBenchmark(name.c_str(), bench, ki, im, dt, n, th);
                        b->UseRealTime()->Unit(benchmark::kMicrosecond);
                        if (g_fast) b->MinTime(0.002);
                        if (im == impl::scalar) b->Repetitions(1); // 10-100x slower, and only a reference
                    }
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
    benchmark::AddCustomContext("skillvec_simd", std::string(xsimd::default_arch::name()) + " x" + std::to_string(cpuk::simd_width));
    benchmark::AddCustomContext("skillvec_threads", std::to_string(all_threads()));
    benchmark::AddCustomContext("skillvec_llc_bytes", std::to_string(cpuk::last_level_cache_bytes()));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

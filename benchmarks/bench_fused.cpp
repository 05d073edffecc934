// The fused PaST kernel o = t + lambda*(rl - sft) against a plain streaming loop over the same
// bytes (three read streams, one write stream, trivial arithmetic), and against the unfused route
// (materialize v, then add). Both threads of the pool are used by every variant, with the same
// contiguous partition, so the ratio fused/stream is how close the kernel runs to the memory limit.
//
//   bench_fused                                   # 512 MB f32 tensors (and 512 MB bf16), a few minutes
//   bench_fused --benchmark_filter='/4194304'     # 16 MB, seconds
#include <skillvec/skillvec.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace sv = skillvec;

namespace {

struct operands {
    sv::memory_store t{"t"}, rl{"rl"}, sft{"sft"}, out{"out"}, v{"v"};
    operands(sv::dtype dt, std::uint64_t n) {
        for (auto* s : {&t, &rl, &sft, &out}) {
            auto w = s->add("w", dt, {n}); // zero-filled: every page is touched before timing
            (void)w;
        }
        v.add("w", sv::dtype::f32, {n});
        // Non-trivial values (zeros would be just as fast, but make the check below meaningless).
        auto tw = t.at_mutable("w");
        for (std::uint64_t i = 0; i < n; i += 4096) sv::store_from_f32(dt, tw.bytes.data(), i, 1.0f);
    }
    [[nodiscard]] std::uint64_t bytes_per_pass() const { return t.at("w").bytes.size() * 4; }
};

/// One working set at a time (the 512 MB sets take 2.5 GB): a new size or dtype frees the last one.
operands& get(sv::dtype dt, std::uint64_t n) {
    static std::unique_ptr<operands> current;
    static std::pair<sv::dtype, std::uint64_t> key{};
    if (!current || key != std::pair{dt, n}) {
        current.reset();
        current = std::make_unique<operands>(dt, n);
        key = {dt, n};
    }
    return *current;
}

/// o[i] = a[i] + b[i] + c[i] with the backend's partition: the machine's limit for 3 reads + 1 write.
template <class T> void stream(const T* a, const T* b, const T* c, T* o, std::size_t n) {
    auto& pool = sv::detail::default_pool();
    const std::size_t tasks = pool.size(), chunk = ((n + tasks - 1) / tasks + 63) / 64 * 64;
    pool.run(tasks, [&](std::size_t k) {
        const std::size_t b0 = k * chunk, e = std::min(n, b0 + chunk);
        for (std::size_t i = b0; i < e; ++i) o[i] = static_cast<T>(a[i] + b[i] + c[i]);
    });
}

template <sv::dtype D> void BM_stream(benchmark::State& st) {
    using T = std::conditional_t<D == sv::dtype::f32, float, std::uint16_t>;
    auto& op = get(D, static_cast<std::uint64_t>(st.range(0)));
    auto ptr = [](sv::memory_store& s) { return reinterpret_cast<T*>(s.at_mutable("w").bytes.data()); };
    const std::size_t n = static_cast<std::size_t>(st.range(0));
    for (auto _ : st) {
        stream(ptr(op.t), ptr(op.rl), ptr(op.sft), ptr(op.out), n);
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * op.bytes_per_pass()));
}

template <sv::dtype D> void BM_fused_past(benchmark::State& st) {
    auto& op = get(D, static_cast<std::uint64_t>(st.range(0)));
    const auto e = sv::past(sv::weights(op.t), sv::weights(op.rl), sv::weights(op.sft), 0.5f);
    for (auto _ : st) {
        sv::evaluate(e, sv::into(op.out));
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * op.bytes_per_pass()));
}

/// The same result the unfused way: v = rl - sft written out (f32), then t + 0.5 v.
template <sv::dtype D> void BM_unfused_past(benchmark::State& st) {
    auto& op = get(D, static_cast<std::uint64_t>(st.range(0)));
    const sv::eval_options mixed{.allow_mixed_float_dtypes = true};
    for (auto _ : st) {
        sv::evaluate(sv::weights(op.rl) - sv::weights(op.sft), sv::into(op.v));
        sv::evaluate(sv::inject(sv::weights(op.t), sv::delta(op.v), 0.5f), sv::into(op.out), mixed);
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * op.bytes_per_pass())); // useful bytes
}

constexpr std::int64_t k16mb_f32 = std::int64_t{1} << 22, k512mb_f32 = std::int64_t{1} << 27;

} // namespace

BENCHMARK(BM_stream<sv::dtype::f32>)->Arg(k16mb_f32)->Arg(k512mb_f32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_fused_past<sv::dtype::f32>)->Arg(k16mb_f32)->Arg(k512mb_f32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_unfused_past<sv::dtype::f32>)->Arg(k16mb_f32)->Arg(k512mb_f32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_stream<sv::dtype::bf16>)->Arg(2 * k16mb_f32)->Arg(2 * k512mb_f32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_fused_past<sv::dtype::bf16>)->Arg(2 * k16mb_f32)->Arg(2 * k512mb_f32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_unfused_past<sv::dtype::bf16>)->Arg(2 * k16mb_f32)->Arg(2 * k512mb_f32)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();

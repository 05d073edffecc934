#pragma once
// Shared by the CPU micro-benchmarks (bench_kernels, bench_methods): synthetic weights and the
// one-working-set-at-a-time cache.
#include <skillvec/core/dtype.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace skillvec::bench {

/// Deterministic, non-trivial values in about [-0.02, 0.02] (weights-like), cheap to generate.
inline float value(std::uint64_t i, std::uint64_t seed) {
    std::uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0xBF58476D1CE4E5B9ull);
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return (static_cast<float>(x >> 40) / 16777216.0f - 0.5f) * 0.04f;
}

/// One working set at a time (WS has members dt and n and a (dtype, n) constructor): a new dtype
/// or size frees the previous one before building the next.
template <class WS> WS& working_set_for(dtype dt, std::size_t n) {
    static std::unique_ptr<WS> current;
    if (!current || current->dt != dt || current->n != n) {
        current.reset();
        current = std::make_unique<WS>(dt, n);
    }
    return *current;
}

/// argv without the benchmarks' own `--fast` flag (small sizes, short runs), which sets `fast`;
/// the rest goes to benchmark::Initialize.
inline std::vector<char*> without_fast_flag(int argc, char** argv, bool& fast) {
    std::vector<char*> args;
    for (int i = 0; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--fast") fast = true;
        else args.push_back(argv[i]);
    }
    return args;
}

} // namespace skillvec::bench

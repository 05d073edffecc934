#pragma once
/// \file
/// Deterministic random numbers for training: the same seed gives the same model, data order and
/// samples on every platform and standard library.
///
/// Why not <random>: std::mt19937 is portable but the distributions (normal, uniform_real) are
/// implementation-defined, so libstdc++ and libc++ would train different models from one seed.
/// Here both the generator (xoshiro256**, seeded through splitmix64) and the distributions are
/// spelled out.

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>

namespace skillvec::nn {

namespace detail {
__extension__ using uint128 = unsigned __int128; // GCC and Clang; __extension__ keeps -Wpedantic quiet
}

/// splitmix64: one step. Used to expand a seed and to derive independent streams.
[[nodiscard]] constexpr std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// A seed derived from `seed` for the named purpose `stream` (for example "init", "shuffle",
/// "sample"), so that components seeded from one user seed do not share a sequence.
[[nodiscard]] constexpr std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) noexcept {
    std::uint64_t s = seed ^ (stream * 0xD1B54A32D192ED03ull);
    (void)splitmix64(s);
    return splitmix64(s);
}

/// xoshiro256**: fast, 256-bit state, passes BigCrush. Models UniformRandomBitGenerator.
class rng {
public:
    using result_type = std::uint64_t;

    explicit constexpr rng(std::uint64_t seed = 0) noexcept { reseed(seed); }

    constexpr void reseed(std::uint64_t seed) noexcept {
        std::uint64_t sm = seed;
        for (auto& w : s_) w = splitmix64(sm);
        has_spare_ = false;
    }

    static constexpr result_type min() noexcept { return 0; }
    static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

    constexpr result_type operator()() noexcept {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    /// Uniform in [0, 1) with 53 random bits.
    double uniform() noexcept { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }

    /// Uniform integer in [0, n) without modulo bias (Lemire's method). n must be > 0.
    std::uint64_t below(std::uint64_t n) noexcept {
        detail::uint128 m = static_cast<detail::uint128>((*this)()) * n;
        auto low = static_cast<std::uint64_t>(m);
        if (low < n) {
            const std::uint64_t threshold = (0 - n) % n;
            while (low < threshold) {
                m = static_cast<detail::uint128>((*this)()) * n;
                low = static_cast<std::uint64_t>(m);
            }
        }
        return static_cast<std::uint64_t>(m >> 64);
    }

    /// Standard normal (Box-Muller with a cached spare; uses only the portable log/sqrt/cos/sin).
    double normal() noexcept {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        double u1 = uniform();
        while (u1 <= 0.0) u1 = uniform();
        const double u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double a = 2.0 * std::numbers::pi * u2;
        spare_ = r * std::sin(a);
        has_spare_ = true;
        return r * std::cos(a);
    }

    /// Fisher-Yates shuffle of a random-access range.
    template <class It> void shuffle(It first, It last) noexcept {
        const auto n = static_cast<std::uint64_t>(last - first);
        for (std::uint64_t i = n; i > 1; --i) {
            const std::uint64_t j = below(i);
            using std::swap;
            swap(first[static_cast<std::ptrdiff_t>(i - 1)], first[static_cast<std::ptrdiff_t>(j)]);
        }
    }

private:
    static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4]{};
    double spare_ = 0.0;
    bool has_spare_ = false;
};

} // namespace skillvec::nn

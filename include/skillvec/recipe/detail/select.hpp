#pragma once
/// \file
/// Exact magnitude order statistics of sub-expressions of one tensor, for the magnitude-based
/// merge methods (TIES, magnitude pruning, breadcrumbs), computed in bounded memory.
///
/// Magnitudes are ranked by the bit pattern of |x| as an f32 (`magnitude_bits`): for non-negative
/// floats the pattern orders like the value, and NaN (any sign, any payload) ranks above +Inf.
///
/// Method: a two-pass radix select over the 31-bit pattern. Pass 1 counts the high 15 bits (the
/// sign bit is clear), which fixes the bin holding the k-th largest and the rank within it; pass 2
/// counts the low 16 bits of the elements in that bin. Exact, two streaming passes, and 2^15 plus
/// 2^16 counters per task and child, whatever the tensor's size. Tensors of at most
/// `direct_select_max` elements instead gather their keys once and use nth_element (one pass; the
/// counters would cost more than the data).

#include <skillvec/backend/cpu/values.hpp>
#include <skillvec/expr/context.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace skillvec::method_detail {

/// The ranking key of magnitude selection: the f32 bit pattern of |x|.
[[nodiscard]] inline std::uint32_t magnitude_bits(float x) noexcept { return std::bit_cast<std::uint32_t>(x) & 0x7FFFFFFFu; }

/// Order statistics asked for per child: two ranks (breadcrumbs needs a high and a low threshold).
inline constexpr std::size_t ranks_per_child = 2;
/// Tensors up to this size select by nth_element over gathered keys.
inline constexpr std::uint64_t direct_select_max = std::uint64_t{1} << 16;

template <std::size_t M> using rank_table = std::array<std::array<std::uint64_t, ranks_per_child>, M>;
template <std::size_t M> using key_table = std::array<std::array<std::uint32_t, ranks_per_child>, M>;

/// For each child j (children's leaves consecutive from leaf I) and each rank r with
/// 1 <= ranks[j][r] <= numel, the key of the ranks[j][r]-th largest magnitude of child j's values
/// (1 is the largest); 0 where ranks[j][r] is 0 (not asked for).
template <std::size_t I, class... C>
[[nodiscard]] key_table<sizeof...(C)> kth_largest_magnitudes(const tensor_context& ctx, const rank_table<sizeof...(C)>& ranks,
                                                             const C&... children) {
    constexpr std::size_t M = sizeof...(C), R = ranks_per_child;
    key_table<M> out{};
    std::array<bool, M> active{};
    std::vector<std::size_t> act; // active children, compacted: scratch is only allocated for them
    for (std::size_t j = 0; j < M; ++j) {
        for (std::size_t r = 0; r < R; ++r) active[j] = active[j] || ranks[j][r] != 0;
        if (active[j]) act.push_back(j);
    }
    const std::uint64_t n = ctx.numel;
    if (act.empty() || n == 0) return out;

    if (n <= direct_select_max) {
        std::array<std::vector<std::uint32_t>, M> keys;
        for (std::size_t j : act) keys[j].resize(static_cast<std::size_t>(n));
        backend::cpu::for_each_values_tile<I>(ctx, active, [&](std::size_t, const std::array<const float*, M>& v, std::uint64_t first, std::size_t count) {
            for (std::size_t j = 0; j < M; ++j)
                if (v[j])
                    for (std::size_t i = 0; i < count; ++i) keys[j][first + i] = magnitude_bits(v[j][i]);
        }, children...);
        for (std::size_t j : act)
            for (std::size_t r = 0; r < R; ++r)
                if (const std::uint64_t k = ranks[j][r]) {
                    auto nth = keys[j].begin() + static_cast<std::ptrdiff_t>(k - 1);
                    std::nth_element(keys[j].begin(), nth, keys[j].end(), std::greater<>());
                    out[j][r] = *nth;
                }
        return out;
    }

    const std::size_t A = act.size(), T = backend::cpu::value_pass_tasks(ctx);
    std::array<std::size_t, M> slot{}; // child -> compacted index
    for (std::size_t a = 0; a < A; ++a) slot[act[a]] = a;

    // Pass 1: high 15 bits. Per-task 32-bit counters, merged into 64-bit totals after every chunk
    // (a task counts at most a chunk's elements between merges).
    constexpr std::size_t HI = std::size_t{1} << 15, LO = std::size_t{1} << 16;
    std::array<std::array<std::uint32_t, R>, M> bin{};      // high 15 bits of each asked-for key
    std::array<std::array<std::uint64_t, R>, M> residual{}; // its rank among the elements of that bin
    {
        std::vector<std::uint32_t> local(T * A * HI, 0);
        std::vector<std::uint64_t> total(A * HI, 0);
        backend::cpu::for_each_values_tile<I>(ctx, active, [&](std::size_t task, const std::array<const float*, M>& v, std::uint64_t, std::size_t count) {
            for (std::size_t j = 0; j < M; ++j) {
                if (!v[j]) continue;
                std::uint32_t* h = &local[(task * A + slot[j]) * HI];
                for (std::size_t i = 0; i < count; ++i) ++h[magnitude_bits(v[j][i]) >> 16];
            }
        }, [&](std::uint64_t, std::uint64_t) {
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t i = 0; i < A * HI; ++i) {
                    total[i] += std::exchange(local[t * A * HI + i], 0u);
                }
        }, children...);
        for (std::size_t j : act)
            for (std::size_t r = 0; r < R; ++r)
                if (const std::uint64_t k = ranks[j][r]) {
                    const std::uint64_t* h = &total[slot[j] * HI];
                    std::uint64_t above = 0; // elements in higher bins
                    std::size_t b = HI - 1;
                    while (b > 0 && above + h[b] < k) above += h[b--];
                    bin[j][r] = static_cast<std::uint32_t>(b);
                    residual[j][r] = k - above;
                }
    }
    // Pass 2: low 16 bits of the elements in each chosen bin.
    {
        std::vector<std::uint32_t> local(T * A * R * LO, 0);
        std::vector<std::uint64_t> total(A * R * LO, 0);
        backend::cpu::for_each_values_tile<I>(ctx, active, [&](std::size_t task, const std::array<const float*, M>& v, std::uint64_t, std::size_t count) {
            for (std::size_t j = 0; j < M; ++j) {
                if (!v[j]) continue;
                std::uint32_t* h = &local[(task * A + slot[j]) * R * LO];
                for (std::size_t r = 0; r < R; ++r) {
                    if (!ranks[j][r]) continue;
                    const std::uint32_t want = bin[j][r];
                    std::uint32_t* hr = h + r * LO;
                    for (std::size_t i = 0; i < count; ++i) {
                        const std::uint32_t key = magnitude_bits(v[j][i]);
                        if ((key >> 16) == want) ++hr[key & 0xFFFFu];
                    }
                }
            }
        }, [&](std::uint64_t, std::uint64_t) {
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t i = 0; i < A * R * LO; ++i) {
                    total[i] += std::exchange(local[t * A * R * LO + i], 0u);
                }
        }, children...);
        for (std::size_t j : act)
            for (std::size_t r = 0; r < R; ++r)
                if (ranks[j][r]) {
                    const std::uint64_t* h = &total[(slot[j] * R + r) * LO];
                    std::uint64_t above = 0;
                    std::size_t b = LO - 1;
                    while (b > 0 && above + h[b] < residual[j][r]) above += h[b--];
                    out[j][r] = bin[j][r] << 16 | static_cast<std::uint32_t>(b);
                }
    }
    return out;
}

} // namespace skillvec::method_detail

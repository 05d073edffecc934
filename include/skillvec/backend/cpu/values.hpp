#pragma once
/// \file
/// Statistic passes for merge methods: streaming walks over the values of sub-expressions of one
/// tensor, run from a node's per-tensor `prepare` hook before the tensor is evaluated (a magnitude
/// threshold for TIES, a dot product for SLERP and orthogonalization).
///
///   for_each_value_tile<I>(child, ctx, f);         // f(task, const float* v, first, count)
///   for_each_values_tile<I>(ctx, active, f, c...); // f(task, const std::array<const float*, M>& v, first, count)
///   sum_values<I, K>(ctx, g, c...);                // fixed-order double sums, g(acc, values) per element
///
/// `I` is the index, among all the leaves of the whole expression, of the first leaf of the
/// (first) child; the children's leaves are consecutive from there, as in `eval<I>`.
///
/// Memory is bounded whatever the tensor's size: each task converts its leaves and evaluates the
/// children one L1 tile (`tile` elements) at a time, into buffers on its own stack. The tensor is
/// walked in chunks of `value_chunk_elements`, like evaluate's main pass, and each consumed chunk
/// is released (`tensor_context::release`), so a memory-mapped checkpoint keeps at most a chunk or
/// two of each input resident during a statistic pass too.
///
/// Work is split into blocks of `reduce_block` elements, each handled whole by one task, in
/// order, so that per-block results (the partial sums of `sum_values`) do not depend on the
/// thread count. Per-task scratch is indexed by the task id, which is below value_pass_tasks(ctx).

#include <skillvec/backend/cpu/convert.hpp>
#include <skillvec/backend/cpu/kernels.hpp>
#include <skillvec/core/dtype.hpp>
#include <skillvec/detail/thread_pool.hpp>
#include <skillvec/expr/context.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace skillvec::backend::cpu {

/// Elements per chunk of a statistic pass; consumed chunks are released (evaluate's chunk size).
inline constexpr std::uint64_t value_chunk_elements = std::uint64_t{1} << 24;
static_assert(value_chunk_elements % reduce_block == 0 && reduce_block % tile == 0);

/// Threads a statistic pass may use: the context's count, 0 meaning the whole pool.
[[nodiscard]] inline unsigned value_pass_threads(const tensor_context& ctx) {
    const unsigned t = ctx.threads == 0 ? skillvec::detail::default_pool().size() : ctx.threads;
    return t == 0 ? 1 : t;
}

/// An upper bound on the task ids of a statistic pass over ctx's tensor (at least 1): size
/// per-task scratch with it.
[[nodiscard]] inline std::size_t value_pass_tasks(const tensor_context& ctx) {
    const std::uint64_t per_chunk = std::min<std::uint64_t>(ctx.numel, value_chunk_elements);
    const std::uint64_t blocks = (per_chunk + reduce_block - 1) / reduce_block;
    return static_cast<std::size_t>(std::max<std::uint64_t>(1, std::min<std::uint64_t>(value_pass_threads(ctx), blocks)));
}

namespace values_detail {

/// Index of child J's first leaf relative to the first child's.
template <std::size_t J, class... C> constexpr std::size_t leaf_offset() {
    constexpr std::size_t arities[] = {C::arity...};
    std::size_t s = 0;
    for (std::size_t j = 0; j < J; ++j) s += arities[j];
    return s;
}

/// Whether a child is a bare leaf (its value is the loaded input itself).
template <class C> inline constexpr bool is_leaf = requires { typename C::store_type; };

/// Values of elements [t0, t0 + n) of child `c`, whose leaves are ctx's leaves [L, L + arity):
/// either a pointer into the input (an f32 leaf) or `out`, filled.
template <std::size_t L, class C>
const float* child_tile(const C& c, const tensor_context& ctx, std::uint64_t t0, std::size_t n, float* out) {
    constexpr std::size_t A = C::arity;
    if constexpr (is_leaf<C>) { // the input itself: no copy for f32, else converted straight into `out`
        const dtype t = ctx.types[L];
        const std::byte* src = ctx.data[L];
        if (t == dtype::f32) return reinterpret_cast<const float*>(src) + t0;
        if (ctx.simd) to_f32(t, src, t0, n, out);
        else scalar_to_f32(t, src, t0, n, out);
        return out;
    } else {
        alignas(64) float buf[A][tile];
        const float* p[A];
        for (std::size_t l = 0; l < A; ++l) {
            const dtype t = ctx.types[L + l];
            const std::byte* src = ctx.data[L + l];
            if (t == dtype::f32) {
                p[l] = reinterpret_cast<const float*>(src) + t0;
            } else {
                if (ctx.simd) to_f32(t, src, t0, n, buf[l]);
                else scalar_to_f32(t, src, t0, n, buf[l]);
                p[l] = buf[l];
            }
        }
        for (std::size_t i = 0; i < n; ++i) {
            std::array<float, A> x;
            for (std::size_t l = 0; l < A; ++l) x[l] = p[l][i];
            out[i] = c.template eval<0>(x, t0 + i);
        }
        return out;
    }
}

/// The walk: for each chunk, blocks split across tasks; for each tile of a task's blocks, the
/// values of the active children, then on_tile(task, values, first, count). After each chunk,
/// after_chunk(c0, c), then the chunk is released unless it is the last.
template <std::size_t I, class F, class G, class... C>
void walk(const tensor_context& ctx, const std::array<bool, sizeof...(C)>& active, F& on_tile, G& after_chunk,
          const C&... children) {
    constexpr std::size_t M = sizeof...(C);
    const std::uint64_t n = ctx.numel;
    if (n == 0) return;
    auto& pool = skillvec::detail::default_pool();
    const unsigned threads = value_pass_threads(ctx);
    for (std::uint64_t c0 = 0; c0 < n; c0 += value_chunk_elements) {
        const std::uint64_t c = std::min<std::uint64_t>(value_chunk_elements, n - c0);
        const std::uint64_t blocks = (c + reduce_block - 1) / reduce_block;
        const std::uint64_t tasks = std::max<std::uint64_t>(1, std::min<std::uint64_t>(threads, blocks));
        const std::uint64_t per_task = (blocks + tasks - 1) / tasks;
        pool.run(static_cast<std::size_t>(tasks), [&](std::size_t task) {
            alignas(64) float vals[M][tile];
            const std::uint64_t b0 = c0 + task * per_task * reduce_block;
            const std::uint64_t b1 = std::min<std::uint64_t>(c0 + c, c0 + (task + 1) * per_task * reduce_block);
            for (std::uint64_t t0 = b0; t0 < b1; t0 += tile) {
                const std::size_t cnt = static_cast<std::size_t>(std::min<std::uint64_t>(tile, b1 - t0));
                std::array<const float*, M> v{};
                [&]<std::size_t... J>(std::index_sequence<J...>) {
                    ((v[J] = active[J] ? child_tile<I + leaf_offset<J, C...>()>(children, ctx, t0, cnt, vals[J]) : nullptr), ...);
                }(std::make_index_sequence<M>{});
                on_tile(task, v, t0, cnt);
            }
        }, threads);
        after_chunk(c0, c);
        if (c0 + c < n && ctx.release) ctx.release(c0, c);
    }
}

} // namespace values_detail

/// Calls f(task, values, first, count) for consecutive tiles covering the tensor: `values` holds
/// the f32 values of each active child (nullptr for an inactive one) for elements
/// [first, first + count). Tiles of one task come in increasing order; tasks run concurrently.
template <std::size_t I, class F, class... C>
void for_each_values_tile(const tensor_context& ctx, const std::array<bool, sizeof...(C)>& active, F&& f,
                          const C&... children) {
    auto none = [](std::uint64_t, std::uint64_t) {};
    values_detail::walk<I>(ctx, active, f, none, children...);
}

/// The same with an `after_chunk(c0, c)` callback, called on the calling thread after every
/// chunk of value_chunk_elements (per-task scratch can be merged and reset there, which keeps
/// 32-bit per-task counters from overflowing).
template <std::size_t I, class F, class G, class... C>
void for_each_values_tile(const tensor_context& ctx, const std::array<bool, sizeof...(C)>& active, F&& f,
                          G&& after_chunk, const C&... children) {
    values_detail::walk<I>(ctx, active, f, after_chunk, children...);
}

/// One child: f(task, const float* values, first, count).
template <std::size_t I, class Child, class F>
void for_each_value_tile(const Child& c, const tensor_context& ctx, F&& f) {
    auto g = [&](std::size_t task, const std::array<const float*, 1>& v, std::uint64_t first, std::size_t count) {
        f(task, v[0], first, count);
    };
    for_each_values_tile<I>(ctx, std::array<bool, 1>{true}, g, c);
}

/// K sums in double over the tensor, g(std::array<double, K>& acc, const std::array<float, M>& x)
/// adding element x's terms. Each block of reduce_block elements is summed element by element in
/// order and the block sums are added in order, so the result is the same for any thread count and
/// chunking. (Products of two f32 values are exact in double; only the additions round.)
template <std::size_t I, std::size_t K, class G, class... C>
[[nodiscard]] std::array<double, K> sum_values(const tensor_context& ctx, G&& g, const C&... children) {
    constexpr std::size_t M = sizeof...(C);
    constexpr std::uint64_t blocks_per_chunk = value_chunk_elements / reduce_block;
    std::array<double, K> total{};
    if (ctx.numel == 0) return total;
    const std::uint64_t slots = std::min<std::uint64_t>(blocks_per_chunk, (ctx.numel + reduce_block - 1) / reduce_block);
    std::vector<std::array<double, K>> partial(static_cast<std::size_t>(slots), std::array<double, K>{});
    auto on_tile = [&](std::size_t, const std::array<const float*, M>& v, std::uint64_t first, std::size_t count) {
        auto& acc = partial[static_cast<std::size_t>((first / reduce_block) % blocks_per_chunk)];
        for (std::size_t i = 0; i < count; ++i) {
            std::array<float, M> x;
            for (std::size_t j = 0; j < M; ++j) x[j] = v[j][i];
            g(acc, x);
        }
    };
    auto after_chunk = [&](std::uint64_t, std::uint64_t c) {
        const std::uint64_t used = (c + reduce_block - 1) / reduce_block;
        for (std::uint64_t b = 0; b < used; ++b) {
            for (std::size_t k = 0; k < K; ++k) total[k] += partial[b][k];
            partial[b] = {};
        }
    };
    std::array<bool, M> all;
    all.fill(true);
    values_detail::walk<I>(ctx, all, on_tile, after_chunk, children...);
    return total;
}

} // namespace skillvec::backend::cpu

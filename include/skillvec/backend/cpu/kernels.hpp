#pragma once
/// \file
/// CPU kernels: one fused pass per tensor for element-wise expressions and for reductions.
///
/// Two paths, both computing `eval<0>` of the same expression tree, in f32:
///  - uniform: every leaf and the output are f32, bf16 or f16, all leaves of one dtype. Each SIMD
///    step loads one batch per leaf, converting in registers, evaluates, rounds and stores.
///  - tiled: anything else (mixed dtypes, f64, and the scalar fallback). Tiles of `tile` elements
///    of each non-f32 leaf are converted into L1-resident f32 buffers, the f32 kernel runs over them
///    and the output tile is converted back. Memory traffic is the same as the uniform path (each
///    input read once, the output written once); only L1 sees the extra copy.
/// The scalar fallback (`cpu_backend{.simd = false}`) is the tiled path with scalar loops: an
/// independent implementation that the SIMD one is tested against.

#include <skillvec/backend/cpu/convert.hpp>
#include <skillvec/core/dtype.hpp>
#include <skillvec/detail/thread_pool.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <tuple>
#include <utility>
#include <vector>

namespace skillvec {

/// The CPU backend: SIMD (xsimd, compile-time architecture) on a persistent thread pool.
struct cpu_backend {
    /// Threads to use; 0 means all (the pool's size: $SKILLVEC_NUM_THREADS or the hardware's).
    unsigned threads = 0;
    /// false selects the scalar fallback, the reference the SIMD kernels are tested against.
    bool simd = true;
};

/// `evaluate(expr, sink, skillvec::cpu)`: all threads, SIMD.
inline constexpr cpu_backend cpu{};

namespace backend::cpu {

/// Elements per tile of the tiled path: with up to 8 leaves the tiles stay in a 32 KiB L1.
inline constexpr std::size_t tile = 512;
/// Elements per reduction block. Blocks are reduced independently and summed in order, so a
/// reduction's result does not depend on the thread count.
inline constexpr std::size_t reduce_block = std::size_t{1} << 14;
/// Smallest share of an element-wise tensor worth a thread of its own.
inline constexpr std::size_t parallel_grain = std::size_t{1} << 15;

[[nodiscard]] constexpr bool simd_dtype(dtype t) noexcept {
    return t == dtype::f32 || t == dtype::bf16 || t == dtype::f16;
}

/// Calls f(std::integral_constant<dtype, D>{}) for D = t (t must satisfy simd_dtype).
template <class F> decltype(auto) with_simd_dtype(dtype t, F&& f) {
    switch (t) {
    case dtype::bf16: return f(std::integral_constant<dtype, dtype::bf16>{});
    case dtype::f16: return f(std::integral_constant<dtype, dtype::f16>{});
    default: return f(std::integral_constant<dtype, dtype::f32>{});
    }
}

// --- element-wise ----------------------------------------------------------------------------

/// out[i] = e(in_0[i], ..., in_L-1[i]) for i in [begin, end); all inputs of dtype In.
template <dtype In, dtype Out, class E>
void simd_map(const E& e, const std::byte* const* in, std::byte* out, std::size_t begin, std::size_t end) {
    constexpr std::size_t L = E::arity, W = simd_width;
    std::size_t i = begin;
    if constexpr (In == dtype::bf16 && Out == dtype::bf16) {
        // bf16 -> bf16 (PaST on bf16 checkpoints): pair order, see load_bf16_pair.
        for (; i + 2 * W <= end; i += 2 * W) {
            std::array<fbatch<>, L> lo, hi;
            for (std::size_t k = 0; k < L; ++k)
                std::tie(lo[k], hi[k]) = load_bf16_pair(reinterpret_cast<const std::uint16_t*>(in[k]) + i);
            store_bf16_pair(reinterpret_cast<std::uint16_t*>(out) + i, e.template eval<0>(lo), e.template eval<0>(hi));
        }
    }
    for (; i + W <= end; i += W) {
        std::array<fbatch<>, L> x;
        for (std::size_t k = 0; k < L; ++k) x[k] = load<In>(in[k], i);
        store<Out>(out, i, e.template eval<0>(x));
    }
    for (; i < end; ++i) {
        std::array<float, L> x;
        for (std::size_t k = 0; k < L; ++k) x[k] = load_as_f32(In, in[k], i);
        store_from_f32(Out, out, i, e.template eval<0>(x));
    }
}

/// The scalar reference: f32 in, f32 out, one element at a time.
template <class E> void scalar_map(const E& e, const float* const* in, float* out, std::size_t n) {
    constexpr std::size_t L = E::arity;
    for (std::size_t i = 0; i < n; ++i) {
        std::array<float, L> x;
        for (std::size_t k = 0; k < L; ++k) x[k] = in[k][i];
        out[i] = e.template eval<0>(x);
    }
}

inline void scalar_to_f32(dtype t, const std::byte* src, std::size_t first, std::size_t n, float* dst) noexcept {
    for (std::size_t i = 0; i < n; ++i) dst[i] = load_as_f32(t, src, first + i);
}
inline void scalar_from_f32(dtype t, const float* src, std::size_t n, std::byte* dst, std::size_t first) noexcept {
    for (std::size_t i = 0; i < n; ++i) store_from_f32(t, dst, first + i, src[i]);
}

/// Any float dtypes, through L1-resident f32 tiles.
template <class E>
void tiled_map(const E& e, const dtype* in_t, const std::byte* const* in, dtype out_t, std::byte* out,
               std::size_t begin, std::size_t end, bool simd) {
    constexpr std::size_t L = E::arity;
    alignas(64) float buf[L][tile];
    alignas(64) float obuf[tile];
    for (std::size_t t0 = begin; t0 < end; t0 += tile) {
        const std::size_t n = std::min(tile, end - t0);
        const float* p[L];
        for (std::size_t k = 0; k < L; ++k) {
            if (in_t[k] == dtype::f32) {
                p[k] = reinterpret_cast<const float*>(in[k]) + t0;
            } else {
                if (simd) to_f32(in_t[k], in[k], t0, n, buf[k]);
                else scalar_to_f32(in_t[k], in[k], t0, n, buf[k]);
                p[k] = buf[k];
            }
        }
        float* o = out_t == dtype::f32 ? reinterpret_cast<float*>(out) + t0 : obuf;
        if (simd) {
            const std::byte* pb[L];
            for (std::size_t k = 0; k < L; ++k) pb[k] = reinterpret_cast<const std::byte*>(p[k]);
            simd_map<dtype::f32, dtype::f32>(e, pb, reinterpret_cast<std::byte*>(o), 0, n);
        } else {
            scalar_map(e, p, o, n);
        }
        if (out_t != dtype::f32) {
            if (simd) from_f32(out_t, obuf, n, out, t0);
            else scalar_from_f32(out_t, obuf, n, out, t0);
        }
    }
}

/// Evaluates elements [begin, end) of one tensor, choosing the uniform or the tiled path.
template <class E>
void map_range(const E& e, const dtype* in_t, const std::byte* const* in, dtype out_t, std::byte* out,
               std::size_t begin, std::size_t end, bool simd) {
    bool uniform = simd && simd_dtype(out_t) && simd_dtype(in_t[0]);
    for (std::size_t k = 1; k < E::arity && uniform; ++k) uniform = in_t[k] == in_t[0];
    if (uniform) {
        with_simd_dtype(in_t[0], [&](auto in_c) {
            with_simd_dtype(out_t, [&](auto out_c) { simd_map<decltype(in_c)::value, decltype(out_c)::value>(e, in, out, begin, end); });
        });
    } else {
        tiled_map(e, in_t, in, out_t, out, begin, end, simd);
    }
}

/// Evaluates a whole tensor of n elements, split into contiguous ranges across threads.
template <class E>
void map_tensor(const E& e, const dtype* in_t, const std::byte* const* in, dtype out_t, std::byte* out,
                std::size_t n, const cpu_backend& be) {
    if (n == 0) return;
    auto& pool = skillvec::detail::default_pool();
    const unsigned threads = be.threads == 0 ? pool.size() : be.threads;
    const std::size_t tasks = std::min<std::size_t>(threads, (n + parallel_grain - 1) / parallel_grain);
    if (tasks <= 1) {
        map_range(e, in_t, in, out_t, out, 0, n, be.simd);
        return;
    }
    // Range boundaries on 64-element multiples keep every thread's output cache-line aligned.
    const std::size_t chunk = ((n + tasks - 1) / tasks + 63) / 64 * 64;
    pool.run(tasks, [&](std::size_t t) {
        const std::size_t b = t * chunk, end = std::min(n, b + chunk);
        if (b < end) map_range(e, in_t, in, out_t, out, b, end, be.simd);
    }, threads);
}

// --- reductions ------------------------------------------------------------------------------

/// Accumulates elements [begin, end) into acc[0 .. R::accumulators), all inputs of dtype In.
/// Two sets of f32 SIMD accumulators (to hide FMA latency) are flushed to f64 every
/// `flush_every` steps, lane by lane in a fixed order; the tail is summed in f64 directly.
template <dtype In, class R>
void simd_reduce(const R& r, const std::byte* const* in, std::size_t begin, std::size_t end, double* acc) {
    constexpr std::size_t L = R::arity, K = R::accumulators, W = simd_width;
    constexpr int flush_every = 8; // each f32 lane sums 8 terms before f64: error ~ u * sqrt(8)
    using B = fbatch<>;
    std::array<B, K> a0, a1;
    a0.fill(B(0.0f));
    a1.fill(B(0.0f));
    auto flush = [&] {
        alignas(64) float l0[W], l1[W];
        for (std::size_t k = 0; k < K; ++k) {
            a0[k].store_aligned(l0);
            a1[k].store_aligned(l1);
            double s = 0;
            for (std::size_t w = 0; w < W; ++w) s += static_cast<double>(l0[w]) + static_cast<double>(l1[w]);
            acc[k] += s;
            a0[k] = B(0.0f);
            a1[k] = B(0.0f);
        }
    };
    std::size_t i = begin;
    int steps = 0;
    for (; i + 2 * W <= end; i += 2 * W) {
        std::array<B, L> x0, x1;
        for (std::size_t k = 0; k < L; ++k) {
            if constexpr (In == dtype::bf16) { // lane order is irrelevant to a sum
                std::tie(x0[k], x1[k]) = load_bf16_pair(reinterpret_cast<const std::uint16_t*>(in[k]) + i);
            } else {
                x0[k] = load<In>(in[k], i);
                x1[k] = load<In>(in[k], i + W);
            }
        }
        r.accumulate(a0, x0);
        r.accumulate(a1, x1);
        if (++steps == flush_every) {
            flush();
            steps = 0;
        }
    }
    if (steps) flush();
    for (; i < end; ++i) {
        std::array<float, L> x;
        for (std::size_t k = 0; k < L; ++k) x[k] = load_as_f32(In, in[k], i);
        r.accumulate_exact(acc, x);
    }
}

/// Any float dtypes (or the scalar fallback), through f32 tiles.
template <class R>
void tiled_reduce(const R& r, const dtype* in_t, const std::byte* const* in, std::size_t begin, std::size_t end,
                  double* acc, bool simd) {
    constexpr std::size_t L = R::arity;
    alignas(64) float buf[L][tile];
    for (std::size_t t0 = begin; t0 < end; t0 += tile) {
        const std::size_t n = std::min(tile, end - t0);
        const std::byte* p[L];
        for (std::size_t k = 0; k < L; ++k) {
            if (in_t[k] == dtype::f32) {
                p[k] = in[k] + 4 * t0;
            } else {
                if (simd) to_f32(in_t[k], in[k], t0, n, buf[k]);
                else scalar_to_f32(in_t[k], in[k], t0, n, buf[k]);
                p[k] = reinterpret_cast<const std::byte*>(buf[k]);
            }
        }
        if (simd) {
            simd_reduce<dtype::f32>(r, p, 0, n, acc);
        } else {
            for (std::size_t i = 0; i < n; ++i) {
                std::array<float, L> x;
                for (std::size_t k = 0; k < L; ++k) x[k] = reinterpret_cast<const float*>(p[k])[i];
                r.accumulate_exact(acc, x);
            }
        }
    }
}

template <class R>
void reduce_range(const R& r, const dtype* in_t, const std::byte* const* in, std::size_t begin, std::size_t end,
                  double* acc, bool simd) {
    bool uniform = simd && simd_dtype(in_t[0]);
    for (std::size_t k = 1; k < R::arity && uniform; ++k) uniform = in_t[k] == in_t[0];
    if (uniform) with_simd_dtype(in_t[0], [&](auto in_c) { simd_reduce<decltype(in_c)::value>(r, in, begin, end, acc); });
    else tiled_reduce(r, in_t, in, begin, end, acc, simd);
}

/// Reduces a whole tensor of n elements into acc[0 .. R::accumulators) (added to what is there).
template <class R>
void reduce_tensor(const R& r, const dtype* in_t, const std::byte* const* in, std::size_t n, double* acc,
                   const cpu_backend& be) {
    if (n == 0) return;
    constexpr std::size_t K = R::accumulators;
    const std::size_t blocks = (n + reduce_block - 1) / reduce_block;
    std::vector<double> partial(blocks * K, 0.0);
    auto& pool = skillvec::detail::default_pool();
    const unsigned threads = be.threads == 0 ? pool.size() : be.threads;
    const std::size_t tasks = std::min<std::size_t>(threads, blocks);
    const std::size_t per_task = (blocks + tasks - 1) / tasks;
    pool.run(tasks, [&](std::size_t t) {
        for (std::size_t b = t * per_task; b < std::min(blocks, (t + 1) * per_task); ++b)
            reduce_range(r, in_t, in, b * reduce_block, std::min(n, (b + 1) * reduce_block), &partial[b * K], be.simd);
    }, threads);
    for (std::size_t b = 0; b < blocks; ++b)
        for (std::size_t k = 0; k < K; ++k) acc[k] += partial[b * K + k];
}

} // namespace backend::cpu
} // namespace skillvec

#pragma once
/// \file
/// CPU kernels: one fused pass per tensor for element-wise expressions and for reductions.
///
/// Three paths, all computing `eval<0>` of the same expression tree, in f32:
///  - uniform: every leaf and the output are f32, bf16 or f16, all leaves of one dtype. Each SIMD
///    step loads one batch per leaf, converting in registers, evaluates, rounds and stores.
///  - mixed: leaf 0 and the output are bf16 or f16, other leaves that dtype or f32 (a model plus
///    saved f32 skill vectors), up to 4 leaves: also converted in registers.
///  - tiled: anything else (other mixes, f64, and the scalar fallback). Tiles of `tile` elements
///    of each non-f32 leaf are converted into L1-resident f32 buffers, the f32 kernel runs over them
///    and the output tile is converted back. Memory traffic is the same as the uniform path (each
///    input read once, the output written once); only L1 sees the extra copy.
/// The scalar fallback (`cpu_backend{.simd = false}`) is the tiled path with scalar loops: an
/// independent implementation that the SIMD one is tested against.

#include <skillvec/backend/cpu/convert.hpp>
#include <skillvec/core/dtype.hpp>
#include <skillvec/core/tensor_view.hpp>
#include <skillvec/detail/thread_pool.hpp>
#include <skillvec/expr/space.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace skillvec {

/// How results are written.
enum class store_policy {
    automatic, ///< streaming when a tensor's inputs and output together exceed the last-level cache
    cached,    ///< always ordinary stores (the result stays in cache for whoever reads it next)
    streaming  ///< always non-temporal stores (except in place, where the lines are already cached)
};

/// The CPU backend: SIMD (xsimd, compile-time architecture) on a persistent thread pool.
struct cpu_backend {
    /// Threads to use; 0 means all (the pool's size: $SKILLVEC_NUM_THREADS or the hardware's).
    unsigned threads = 0;
    /// false selects the scalar fallback, the reference the SIMD kernels are tested against.
    bool simd = true;
    /// Non-temporal stores skip the read that writing a line not in cache costs: about a fifth of
    /// the traffic of t + l*(a - b) when nothing fits in cache.
    store_policy stores = store_policy::automatic;
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

/// Size of the last-level cache. Linux's sysfs first: it is what this machine (a VM included)
/// really has, where CPUID as read by glibc's sysconf may report the host's (seen: 256 MiB for a
/// 32 MiB L3). Then sysconf; then 32 MiB.
[[nodiscard]] inline std::size_t last_level_cache_bytes() {
    static const std::size_t bytes = [] {
        std::size_t best = 0;
        int best_level = 0;
        for (int i = 0; i < 16; ++i) {
            const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
            std::ifstream level_f(dir + "level"), size_f(dir + "size"), type_f(dir + "type");
            int level = 0;
            std::string size, type;
            if (!(level_f >> level) || !(size_f >> size)) break;
            type_f >> type;
            if (type == "Instruction" || size.empty()) continue;
            std::size_t value = 0, pos = 0;
            try {
                value = std::stoull(size, &pos);
            } catch (...) {
                continue;
            }
            const char unit = pos < size.size() ? size[pos] : 'B';
            value <<= unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : 0;
            if (level > best_level) {
                best_level = level;
                best = value;
            }
        }
        long b = 0;
#if defined(_SC_LEVEL3_CACHE_SIZE)
        if (!best) {
            b = sysconf(_SC_LEVEL3_CACHE_SIZE);
            if (b <= 0) b = sysconf(_SC_LEVEL2_CACHE_SIZE);
        }
#endif
        if (!best && b > 0) best = static_cast<std::size_t>(b);
        return best ? best : std::size_t{32} << 20;
    }();
    return bytes;
}

/// Calls f(std::integral_constant<dtype, D>{}) for D = t (t must satisfy simd_dtype_of).
template <class F> decltype(auto) with_simd_dtype(dtype t, F&& f) {
    switch (t) {
    case dtype::bf16: return f(std::integral_constant<dtype, dtype::bf16>{});
    case dtype::f16: return f(std::integral_constant<dtype, dtype::f16>{});
    default: return f(std::integral_constant<dtype, dtype::f32>{});
    }
}

// --- element-wise ----------------------------------------------------------------------------

/// Calls f(std::integral_constant<std::size_t, K>{}) for K in [0, N): loops over leaves whose
/// dtype is a compile-time function of the leaf index.
template <std::size_t N, class F> void unroll(F&& f) {
    [&]<std::size_t... K>(std::index_sequence<K...>) { (f(std::integral_constant<std::size_t, K>{}), ...); }(std::make_index_sequence<N>{});
}

/// Leaf dtypes of an in-register kernel: all D ...
template <dtype D> struct uniform_leaves {
    static constexpr dtype of(std::size_t) noexcept { return D; }
    static constexpr bool bf16_pairs = D == dtype::bf16; ///< pair order possible (see load_bf16_pair)
};
/// ... or D with the leaves whose bit is set in Mask in f32 (a model plus saved f32 skill vectors).
template <dtype D, unsigned Mask> struct mixed_leaves {
    static constexpr dtype of(std::size_t k) noexcept { return (Mask >> k) & 1u ? dtype::f32 : D; }
    static constexpr bool bf16_pairs = false; // f32 leaves load in element order
};

/// out[i] = e(in_0[i], ..., in_L-1[i]) for i in [begin, end), leaf k of dtype Leaves::of(k),
/// converted in registers. With Stream, the output is written with non-temporal stores after a
/// scalar run up to 64-byte alignment.
template <class Leaves, dtype Out, bool Stream, class E>
void simd_map(const E& e, const std::byte* const* in, std::byte* out, std::size_t begin, std::size_t end) {
#if !defined(__CUDA_ARCH__) // nvcc's device pass: SIMD batches cannot appear in device code (host-only body)
    constexpr std::size_t L = E::arity, W = simd_width;
    auto scalar = [&](std::size_t i) {
        std::array<float, L> x;
        for (std::size_t k = 0; k < L; ++k) x[k] = load_as_f32(Leaves::of(k), in[k], i);
        store_from_f32(Out, out, i, e.template eval<0>(x));
    };
    std::size_t i = begin;
    if constexpr (Stream) {
        const std::size_t peel = elements_to_alignment(out, begin, bits_of(Out) / 8);
        if (peel == SIZE_MAX) return simd_map<Leaves, Out, false>(e, in, out, begin, end); // cannot align
        for (const std::size_t stop = std::min(end, begin + peel); i < stop; ++i) scalar(i);
    }
    if constexpr (Leaves::bf16_pairs && Out == dtype::bf16) {
        // bf16 -> bf16 (PaST on bf16 checkpoints): pair order, see load_bf16_pair.
        for (; i + 2 * W <= end; i += 2 * W) {
            std::array<fbatch<>, L> lo, hi;
            for (std::size_t k = 0; k < L; ++k)
                std::tie(lo[k], hi[k]) = load_bf16_pair(reinterpret_cast<const std::uint16_t*>(in[k]) + i);
            store_bf16_pair<Stream>(reinterpret_cast<std::uint16_t*>(out) + i, e.template eval<0>(lo), e.template eval<0>(hi));
        }
    }
    for (; i + W <= end; i += W) {
        std::array<fbatch<>, L> x;
        unroll<L>([&](auto k) { x[k] = load<Leaves::of(k)>(in[k], i); });
        store<Out, Stream>(out, i, e.template eval<0>(x));
    }
    if constexpr (Stream) detail::stream_fence();
    for (; i < end; ++i) scalar(i);
#endif
}

/// The scalar reference: f32 in, f32 out, one element at a time. `first` is the index of element
/// 0 within the tensor, passed to nodes that depend on it (seeded random drops).
template <class E> void scalar_map(const E& e, const float* const* in, float* out, std::size_t n, std::uint64_t first) {
    constexpr std::size_t L = E::arity;
    for (std::size_t i = 0; i < n; ++i) {
        std::array<float, L> x;
        for (std::size_t k = 0; k < L; ++k) x[k] = in[k][i];
        out[i] = e.template eval<0>(x, first + i);
    }
}

inline void scalar_to_f32(dtype t, const std::byte* src, std::size_t first, std::size_t n, float* dst) noexcept {
    for (std::size_t i = 0; i < n; ++i) dst[i] = load_as_f32(t, src, first + i);
}
inline void scalar_from_f32(dtype t, const float* src, std::size_t n, std::byte* dst, std::size_t first) noexcept {
    for (std::size_t i = 0; i < n; ++i) store_from_f32(t, dst, first + i, src[i]);
}

/// Any float dtypes, through L1-resident f32 tiles. An expression with a scalar-only node (a merge
/// method) converts with SIMD but evaluates element by element; `base` is the tensor index of
/// element 0 of `in` and `out`.
template <class E>
void tiled_map(const E& e, const dtype* in_t, const std::byte* const* in, dtype out_t, std::byte* out,
               std::size_t begin, std::size_t end, bool simd, bool stream, std::uint64_t base = 0) {
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
        bool done = false;
        if constexpr (!skillvec::detail::scalar_only_v<E>) { // scalar-only nodes have no SIMD eval to instantiate
            if (simd) {
                const std::byte* pb[L];
                for (std::size_t k = 0; k < L; ++k) pb[k] = reinterpret_cast<const std::byte*>(p[k]);
                using f32_leaves = uniform_leaves<dtype::f32>;
                if (stream && out_t == dtype::f32) simd_map<f32_leaves, dtype::f32, true>(e, pb, reinterpret_cast<std::byte*>(o), 0, n);
                else simd_map<f32_leaves, dtype::f32, false>(e, pb, reinterpret_cast<std::byte*>(o), 0, n);
                done = true;
            }
        }
        if (!done) scalar_map(e, p, o, n, base + t0);
        if (out_t != dtype::f32) {
            if (simd) from_f32(out_t, obuf, n, out, t0, stream);
            else scalar_from_f32(out_t, obuf, n, out, t0);
        }
    }
}

/// Leaves that can take the mixed in-register path: up to this many.
inline constexpr std::size_t max_mixed_leaves = 4;

/// Evaluates elements [begin, end) of one tensor: in registers when all leaves share a dtype, or
/// when the output and leaf 0 share a 16-bit dtype and the other leaves are that or f32 (a bf16
/// model plus f32 skill vectors); through f32 tiles otherwise.
template <class E>
void map_range(const E& e, const dtype* in_t, const std::byte* const* in, dtype out_t, std::byte* out,
               std::size_t begin, std::size_t end, bool simd, bool stream, std::uint64_t base = 0) {
    constexpr std::size_t L = E::arity;
    if constexpr (skillvec::detail::scalar_only_v<E>) { // no SIMD eval: convert in tiles, evaluate element by element
        tiled_map(e, in_t, in, out_t, out, begin, end, simd, stream, base);
    } else {
        bool uniform = simd && simd_dtype_of(out_t) && simd_dtype_of(in_t[0]);
        for (std::size_t k = 1; k < L && uniform; ++k) uniform = in_t[k] == in_t[0];
        if (uniform) {
            with_simd_dtype(in_t[0], [&](auto in_c) {
                with_simd_dtype(out_t, [&](auto out_c) {
                    using leaves = uniform_leaves<decltype(in_c)::value>;
                    constexpr dtype O = decltype(out_c)::value;
                    if (stream) simd_map<leaves, O, true>(e, in, out, begin, end);
                    else simd_map<leaves, O, false>(e, in, out, begin, end);
                });
            });
            return;
        }
        if constexpr (L <= max_mixed_leaves) {
            const dtype d = in_t[0];
            bool mixed = simd && out_t == d && (d == dtype::bf16 || d == dtype::f16);
            unsigned mask = 0;
            for (std::size_t k = 1; k < L && mixed; ++k) {
                mixed = in_t[k] == d || in_t[k] == dtype::f32;
                if (in_t[k] == dtype::f32) mask |= 1u << k;
            }
            if (mixed) {
                // One instantiation per D in {bf16, f16} and non-zero mask with bit 0 clear (leaf 0 has
                // the output's dtype; mask 0 is the uniform case).
                auto run = [&]<dtype D, unsigned Mask>() {
                    if (stream) simd_map<mixed_leaves<D, Mask>, D, true>(e, in, out, begin, end);
                    else simd_map<mixed_leaves<D, Mask>, D, false>(e, in, out, begin, end);
                };
                [&]<std::size_t... M>(std::index_sequence<M...>) {
                    (void)((mask == 2 * (M + 1) && (d == dtype::bf16 ? run.template operator()<dtype::bf16, 2 * (M + 1)>()
                                                                    : run.template operator()<dtype::f16, 2 * (M + 1)>(),
                                                     true)) ||
                           ...);
                }(std::make_index_sequence<(std::size_t{1} << (L - 1)) - 1>{});
                return;
            }
        }
        tiled_map(e, in_t, in, out_t, out, begin, end, simd, stream, base);
    }
}

/// Evaluates a whole tensor of n elements, split into contiguous ranges across threads.
/// `in_place` says the output buffer is one of the inputs (then streaming stores never pay); `base`
/// is the tensor index of element 0 of `in` and `out` (they may point into the middle of a tensor).
template <class E>
void map_tensor(const E& e, const dtype* in_t, const std::byte* const* in, dtype out_t, std::byte* out,
                std::size_t n, const cpu_backend& be, bool in_place, std::uint64_t base = 0) {
    if (n == 0) return;
    std::size_t touched = byte_size(out_t, n);
    for (std::size_t k = 0; k < E::arity; ++k) touched += byte_size(in_t[k], n);
    const bool stream = be.simd && !in_place &&
                        (be.stores == store_policy::streaming ||
                         (be.stores == store_policy::automatic && touched > last_level_cache_bytes()));
    auto& pool = skillvec::detail::default_pool();
    const unsigned threads = be.threads == 0 ? pool.size() : be.threads;
    const std::size_t tasks = std::min<std::size_t>(threads, (n + parallel_grain - 1) / parallel_grain);
    if (tasks <= 1) {
        map_range(e, in_t, in, out_t, out, 0, n, be.simd, stream, base);
        return;
    }
    // Range boundaries on 64-element multiples keep every thread's output cache-line aligned.
    const std::size_t chunk = ((n + tasks - 1) / tasks + 63) / 64 * 64;
    pool.run(tasks, [&](std::size_t t) {
        const std::size_t b = t * chunk, end = std::min(n, b + chunk);
        if (b < end) map_range(e, in_t, in, out_t, out, b, end, be.simd, stream, base);
    }, threads);
}

// --- reductions ------------------------------------------------------------------------------

/// Loads the batches at elements i and i + W of every leaf into x0 and x1 (bf16 in pair order,
/// which a sum does not mind).
template <dtype In, std::size_t L>
void load_two(const std::byte* const* in, std::size_t i, std::array<fbatch<>, L>& x0, std::array<fbatch<>, L>& x1) {
    for (std::size_t k = 0; k < L; ++k) {
        if constexpr (In == dtype::bf16) {
            std::tie(x0[k], x1[k]) = load_bf16_pair(reinterpret_cast<const std::uint16_t*>(in[k]) + i);
        } else {
            x0[k] = load<In>(in[k], i);
            x1[k] = load<In>(in[k], i + simd_width);
        }
    }
}

/// Accumulates elements [begin, end) into acc[0 .. R::accumulators), all inputs of dtype In.
/// Independent sets of f32 SIMD accumulators hide the FMA latency (with one set the loop is
/// latency-bound, below memory speed even on one core): 4 sets, or 2 for four or more
/// accumulators or bf16 with three, so that everything stays in 16 registers. The sets are locals of one window of
/// `window` steps, after which they are widened into f64 SIMD accumulators; the f64 lanes are
/// summed once at the end in a fixed order. The tail is summed in f64 directly.
template <dtype In, class R>
void simd_reduce(const R& r, const std::byte* const* in, std::size_t begin, std::size_t end, double* acc) {
#if !defined(__CUDA_ARCH__) // as in simd_map
    constexpr std::size_t L = R::arity, K = R::accumulators, W = simd_width;
    // 4 sets, except with 4+ accumulators (compare) or bf16 with 3 (cosine): those would spill.
    constexpr std::size_t sets = (K >= 4 || (K == 3 && In == dtype::bf16)) ? 2 : 4, step = sets * W;
    constexpr std::size_t window = 16; // each f32 lane sums 16 terms before f64: error ~ u * sqrt(16)
    using B = fbatch<>;
    using D = dbatch<>;
    std::array<D, K> d_lo, d_hi;
    d_lo.fill(D(0.0));
    d_hi.fill(D(0.0));
    auto add_wide = [&](const std::array<B, K>& a) {
        for (std::size_t k = 0; k < K; ++k) {
            const auto [lo, hi] = widen_f64(a[k]);
            d_lo[k] = d_lo[k] + lo;
            d_hi[k] = d_hi[k] + hi;
        }
    };
    std::size_t i = begin;
    while (i + step <= end) {
        const std::size_t stop = std::min(i + window * step, begin + (end - begin) / step * step);
        std::array<B, K> a0, a1, a2, a3;
        a0.fill(B(0.0f));
        a1.fill(B(0.0f));
        a2.fill(B(0.0f));
        a3.fill(B(0.0f));
        for (; i < stop; i += step) {
            std::array<B, L> x0, x1;
            load_two<In>(in, i, x0, x1);
            r.accumulate(a0, x0);
            r.accumulate(a1, x1);
            if constexpr (sets == 4) {
                load_two<In>(in, i + 2 * W, x0, x1);
                r.accumulate(a2, x0);
                r.accumulate(a3, x1);
            }
        }
        add_wide(a0);
        add_wide(a1);
        if constexpr (sets == 4) {
            add_wide(a2);
            add_wide(a3);
        }
    }
    for (std::size_t k = 0; k < K; ++k) {
        alignas(64) double lanes[2 * D::size];
        d_lo[k].store_aligned(lanes);
        d_hi[k].store_aligned(lanes + D::size);
        double sum = 0;
        for (double l : lanes) sum += l;
        acc[k] += sum;
    }
    for (; i < end; ++i) {
        std::array<float, L> x;
        for (std::size_t k = 0; k < L; ++k) x[k] = load_as_f32(In, in[k], i);
        r.accumulate_exact(acc, x);
    }
#endif
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
    bool uniform = simd && simd_dtype_of(in_t[0]);
    for (std::size_t k = 1; k < R::arity && uniform; ++k) uniform = in_t[k] == in_t[0];
    if (uniform) with_simd_dtype(in_t[0], [&](auto in_c) { simd_reduce<decltype(in_c)::value>(r, in, begin, end, acc); });
    else tiled_reduce(r, in_t, in, begin, end, acc, simd);
}

/// Reduces a whole tensor of n elements into acc[0 .. R::accumulators) (added to what is there).
template <class R>
void reduce_tensor(const R& r, const dtype* in_t, const std::byte* const* in, std::size_t n, double* acc,
                   const cpu_backend& be) {
    static_assert(!skillvec::detail::scalar_only_v<R>,
                  "reductions of merge-method results are not supported: materialize the merged vector first");
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

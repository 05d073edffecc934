#pragma once
/// \file
/// The transformer's layer primitives, forward and backward: row-parallel helpers, LayerNorm,
/// tanh-GELU, bias add/reduce and causal attention for one (sequence, head). Shapes are in the
/// comments: BT = batch x time rows, C = width, everything row-major.
///
/// Determinism: every reduction over rows (bias and LayerNorm parameter gradients) runs in one
/// fixed order, and row-parallel work writes disjoint rows, so results do not depend on the
/// number of threads.

#include <skillvec/detail/thread_pool.hpp>
#include <skillvec/nn/detail/gemm.hpp>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numbers>

namespace skillvec::nn::detail {

using skillvec::detail::thread_pool;

/// Calls f(begin, end). Every chunk goes through this one out-of-line instantiation, whatever the
/// thread count: GCC contracts a*b+c into FMA by its own judgment per inlined copy, so a body
/// inlined once on the serial path and once on the pool path could round differently.
template <class F> [[gnu::noinline]] void run_chunk(F& f, std::size_t begin, std::size_t end) { f(begin, end); }

/// Runs f(begin, end) over [0, n) in contiguous chunks of at least `grain` on the pool (or inline).
/// Chunk boundaries are multiples of `align` (so a SIMD body and its scalar tail see the same
/// elements whatever the thread count).
template <class F> void parallel_rows(thread_pool* pool, std::size_t n, std::size_t grain, F&& f, std::size_t align = 1) {
    if (n == 0) return;
    if (pool == nullptr || pool->size() <= 1 || n < 2 * grain) {
        run_chunk(f, 0, n);
        return;
    }
    const std::size_t chunks = std::min<std::size_t>(n / grain, std::size_t{pool->size()} * 4);
    auto bound = [&](std::size_t i) { return i == chunks ? n : std::min(n, n * i / chunks / align * align); };
    pool->run(chunks, [&](std::size_t i) { run_chunk(f, bound(i), bound(i + 1)); });
}

/// y[BT, C] = LayerNorm(x) * w + b, with eps inside the square root; keeps mean and 1/std per row.
template <class T>
void layernorm_forward(thread_pool* pool, T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, std::size_t rows,
                       std::size_t C, T eps) {
    parallel_rows(pool, rows, 64, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r) {
            const T* xr = x + r * C;
            T m = 0;
            for (std::size_t i = 0; i < C; ++i) m += xr[i];
            m /= static_cast<T>(C);
            T v = 0;
            for (std::size_t i = 0; i < C; ++i) {
                const T d = xr[i] - m;
                v += d * d;
            }
            v /= static_cast<T>(C);
            const T s = T(1) / std::sqrt(v + eps);
            T* yr = y + r * C;
            for (std::size_t i = 0; i < C; ++i) yr[i] = (xr[i] - m) * s * w[i] + b[i];
            mean[r] = m;
            rstd[r] = s;
        }
    });
}

/// Backward of layernorm_forward: dx[BT, C] += ..., dw[C] += ..., db[C] += ... .
/// dw/db are summed over rows in row order (deterministic).
template <class T>
void layernorm_backward(thread_pool* pool, T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean,
                        const T* rstd, std::size_t rows, std::size_t C) {
    parallel_rows(pool, rows, 64, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r) {
            const T* xr = x + r * C;
            const T* dyr = dy + r * C;
            const T m = mean[r], s = rstd[r];
            // g = dy * w;  dx = s * (g - mean(g) - xhat * mean(g * xhat))
            T g_mean = 0, gx_mean = 0;
            for (std::size_t i = 0; i < C; ++i) {
                const T g = dyr[i] * w[i];
                g_mean += g;
                gx_mean += g * ((xr[i] - m) * s);
            }
            g_mean /= static_cast<T>(C);
            gx_mean /= static_cast<T>(C);
            T* dxr = dx + r * C;
            for (std::size_t i = 0; i < C; ++i) {
                const T xhat = (xr[i] - m) * s;
                dxr[i] += s * (dyr[i] * w[i] - g_mean - xhat * gx_mean);
            }
        }
    });
    for (std::size_t r = 0; r < rows; ++r) {
        const T* xr = x + r * C;
        const T* dyr = dy + r * C;
        const T m = mean[r], s = rstd[r];
        for (std::size_t i = 0; i < C; ++i) {
            dw[i] += dyr[i] * ((xr[i] - m) * s);
            db[i] += dyr[i];
        }
    }
}

/// y[BT, N] += b[N] for every row.
template <class T> void add_bias(thread_pool* pool, T* y, const T* b, std::size_t rows, std::size_t N) {
    parallel_rows(pool, rows, 128, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r)
            for (std::size_t i = 0; i < N; ++i) y[r * N + i] += b[i];
    });
}

/// db[N] += sum over rows of dy[BT, N], in row order.
template <class T> void bias_backward(T* db, const T* dy, std::size_t rows, std::size_t N) {
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < N; ++i) db[i] += dy[r * N + i];
}

/// Linear layer y[rows, N] = x[rows, K] W[N, K]^T + b[N] (PyTorch layout).
template <class T>
void linear_forward(thread_pool* pool, T* y, const T* x, const T* W, const T* b, std::size_t rows, std::size_t K,
                    std::size_t N) {
    gemm<T>(trans::n, trans::t, rows, N, K, T(1), x, K, W, K, T(0), y, N, pool);
    if (b != nullptr) add_bias(pool, y, b, rows, N);
}

/// Backward of linear_forward: dx = dy W (overwritten, or added to when `accumulate_dx`),
/// dW += dy^T x, db += colsum(dy). A null dx skips the input gradient.
template <class T>
void linear_backward(thread_pool* pool, T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, std::size_t rows,
                     std::size_t K, std::size_t N, bool accumulate_dx = false) {
    if (dx != nullptr) gemm<T>(trans::n, trans::n, rows, K, N, T(1), dy, N, W, K, accumulate_dx ? T(1) : T(0), dx, K, pool);
    gemm<T>(trans::t, trans::n, N, K, rows, T(1), dy, N, x, K, T(1), dW, K, pool);
    if (db != nullptr) bias_backward(db, dy, rows, N);
}

// GELU, tanh approximation (as GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <class T> inline constexpr T gelu_k0 = static_cast<T>(0.79788456080286535587989211986876); // sqrt(2/pi)
template <class T> inline constexpr T gelu_k1 = static_cast<T>(0.044715);

/// y = gelu(x), n elements; vectorized because tanh is the costliest element-wise call per step.
template <class T> void gelu_forward(thread_pool* pool, T* y, const T* x, std::size_t n) {
    using batch = xsimd::batch<T>;
    constexpr std::size_t W = batch::size;
    parallel_rows(pool, n, 16384, [&](std::size_t i0, std::size_t i1) {
        std::size_t i = i0;
        const batch k0(gelu_k0<T>), k1(gelu_k1<T>), half(T(0.5)), one(T(1));
        for (; i + W <= i1; i += W) {
            const batch v = batch::load_unaligned(x + i);
            const batch u = k0 * xsimd::fma(k1 * v * v, v, v);
            (half * v * (one + xsimd::tanh(u))).store_unaligned(y + i);
        }
        for (; i < i1; ++i) {
            const T v = x[i];
            const T u = gelu_k0<T> * (v + gelu_k1<T> * v * v * v);
            y[i] = T(0.5) * v * (T(1) + std::tanh(u));
        }
    }, W);
}

/// dx = dy * gelu'(x), n elements (dx may alias dy).
template <class T> void gelu_backward(thread_pool* pool, T* dx, const T* dy, const T* x, std::size_t n) {
    using batch = xsimd::batch<T>;
    constexpr std::size_t W = batch::size;
    parallel_rows(pool, n, 16384, [&](std::size_t i0, std::size_t i1) {
        std::size_t i = i0;
        const batch k0(gelu_k0<T>), k1(gelu_k1<T>), k3(T(3) * gelu_k1<T>), half(T(0.5)), one(T(1));
        for (; i + W <= i1; i += W) {
            const batch v = batch::load_unaligned(x + i);
            const batch t = xsimd::tanh(k0 * xsimd::fma(k1 * v * v, v, v));
            const batch du = k0 * xsimd::fma(k3, v * v, one);
            const batch d = half * (one + t) + half * v * (one - t * t) * du;
            (batch::load_unaligned(dy + i) * d).store_unaligned(dx + i);
        }
        for (; i < i1; ++i) {
            const T v = x[i];
            const T t = std::tanh(gelu_k0<T> * (v + gelu_k1<T> * v * v * v));
            const T du = gelu_k0<T> * (T(1) + T(3) * gelu_k1<T> * v * v);
            dx[i] = dy[i] * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
        }
    }, W);
}

/// Causal self-attention of one sequence and one head.
///   q, k, v: [T, hs] with row stride `qkv_stride` (slices of the fused qkv activation)
///   P:       [T, T]  softmax(q k^T / sqrt(hs)) with the future masked to exactly 0 (kept for backward)
///   out:     [T, hs] with row stride `out_stride`
template <class T>
void attention_forward(T* out, std::size_t out_stride, T* P, const T* q, const T* k, const T* v, std::size_t qkv_stride,
                       std::size_t Tn, std::size_t hs) {
    const T scale = T(1) / std::sqrt(static_cast<T>(hs));
    gemm<T>(trans::n, trans::t, Tn, Tn, hs, scale, q, qkv_stride, k, qkv_stride, T(0), P, Tn, nullptr);
    for (std::size_t i = 0; i < Tn; ++i) {
        T* row = P + i * Tn;
        T mx = row[0];
        for (std::size_t j = 1; j <= i; ++j) mx = std::max(mx, row[j]);
        T sum = 0;
        for (std::size_t j = 0; j <= i; ++j) {
            row[j] = std::exp(row[j] - mx);
            sum += row[j];
        }
        const T inv = T(1) / sum;
        for (std::size_t j = 0; j <= i; ++j) row[j] *= inv;
        for (std::size_t j = i + 1; j < Tn; ++j) row[j] = T(0);
    }
    gemm<T>(trans::n, trans::n, Tn, hs, Tn, T(1), P, Tn, v, qkv_stride, T(0), out, out_stride, nullptr);
}

/// Backward of attention_forward. Writes (not accumulates) dq, dk, dv ([T, hs], stride
/// `qkv_stride`); `scratch` holds T*T elements.
template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dout, std::size_t out_stride, const T* P, const T* q,
                        const T* k, const T* v, std::size_t qkv_stride, std::size_t Tn, std::size_t hs) {
    const T scale = T(1) / std::sqrt(static_cast<T>(hs));
    T* dP = scratch;
    // dP = dout v^T;  dv = P^T dout
    gemm<T>(trans::n, trans::t, Tn, Tn, hs, T(1), dout, out_stride, v, qkv_stride, T(0), dP, Tn, nullptr);
    gemm<T>(trans::t, trans::n, Tn, hs, Tn, T(1), P, Tn, dout, out_stride, T(0), dv, qkv_stride, nullptr);
    // softmax backward, in place: dS = P * (dP - sum_j P dP), zero in the masked future
    for (std::size_t i = 0; i < Tn; ++i) {
        const T* p = P + i * Tn;
        T* d = dP + i * Tn;
        T dot = 0;
        for (std::size_t j = 0; j <= i; ++j) dot += p[j] * d[j];
        for (std::size_t j = 0; j <= i; ++j) d[j] = p[j] * (d[j] - dot);
        for (std::size_t j = i + 1; j < Tn; ++j) d[j] = T(0);
    }
    // S = scale q k^T:  dq = scale dS k;  dk = scale dS^T q
    gemm<T>(trans::n, trans::n, Tn, hs, Tn, scale, dP, Tn, k, qkv_stride, T(0), dq, qkv_stride, nullptr);
    gemm<T>(trans::t, trans::n, Tn, hs, Tn, scale, dP, Tn, q, qkv_stride, T(0), dk, qkv_stride, nullptr);
}

} // namespace skillvec::nn::detail

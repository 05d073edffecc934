#pragma once
/// \file
/// Dense matrix multiply for the in-library transformer: C = alpha * op(A) * op(B) + beta * C,
/// row-major, with BLAS semantics.
///
/// Why our own and not cblas: the library is header-only and must build on a bare machine, so a
/// BLAS could only be optional, and the model's products are small (K and N of 96..512, M of 1..1024)
/// where a BLAS's per-call overhead and its own thread pool matter. This is the usual Goto/BLIS
/// scheme: op(A) and op(B) are copied ("packed") into contiguous micro-panels, so all four
/// transposition cases share one register-tiled FMA microkernel, and the panels stay in L1/L2.
///
/// The float path is SIMD (xsimd's compile-time arch, as elsewhere in skillvec); every other T uses a
/// plain loop nest that serves the finite-difference gradient checks in double.

#include <skillvec/detail/thread_pool.hpp>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstddef>
#include <new>
#include <type_traits>

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#endif

#if defined(__clang__)
#define SKILLVEC_GEMM_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define SKILLVEC_GEMM_UNROLL _Pragma("GCC unroll 16")
#else
#define SKILLVEC_GEMM_UNROLL
#endif

namespace skillvec::nn::detail {

enum class trans : bool { n = false, t = true };

namespace gemm_impl {

using fbatch = xsimd::batch<float>;
inline constexpr std::size_t W = fbatch::size;

// Register tile: MR rows by NV vectors. 6 x 2 vectors is 12 accumulators, 2 B loads and one
// broadcast: 15 of the 16 registers of both SSE2 and AVX2, and enough independent FMA chains to
// cover the FMA latency on two pipes.
inline constexpr std::size_t MR = 6;
inline constexpr std::size_t NV = 2;
inline constexpr std::size_t NR = NV * W;

// Cache blocks. A KC x NR panel of B (24 KiB with AVX2) stays in L1 while an MC x KC block of A
// streams from L2; a KC x NC block of B sits in L2/L3 across all of A's blocks.
// K = 96..384, the model's common case, is one pass; SKILLVEC_GEMM_KC overrides it for tuning.
#ifndef SKILLVEC_GEMM_KC
#define SKILLVEC_GEMM_KC 384
#endif
inline constexpr std::size_t KC = SKILLVEC_GEMM_KC;
inline constexpr std::size_t MC = 24 * MR;
inline constexpr std::size_t NC = 192 * NR;

// Below this many flops a second thread costs more (waking it, packing B twice) than it saves;
// above it, extra tasks (for balance) must each have task_min_flops and task_min_units
// micro-tiles along the split side: every task packs the whole of the other operand, which costs
// about as much as 1/16 of a micro-tile row's product per element.
inline constexpr double parallel_min_flops = 1.5e6;
inline constexpr double task_min_flops = 1.0e6;
inline constexpr std::size_t task_min_units = 8;

/// A 64-byte aligned buffer that only grows, one per thread and role, so that steady-state calls
/// allocate nothing.
struct pack_buffer {
    float* data = nullptr;
    std::size_t capacity = 0;
    pack_buffer() = default;
    pack_buffer(const pack_buffer&) = delete;
    pack_buffer& operator=(const pack_buffer&) = delete;
    ~pack_buffer() { release(); }
    void release() noexcept {
        if (data != nullptr) ::operator delete[](data, std::align_val_t{64});
        data = nullptr;
        capacity = 0;
    }
    float* get(std::size_t n) {
        if (n > capacity) {
            release();
            data = static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{64}));
            capacity = n;
        }
        return data;
    }
};

inline pack_buffer& a_buffer() {
    thread_local pack_buffer b;
    return b;
}
inline pack_buffer& b_buffer() {
    thread_local pack_buffer b;
    return b;
}

/// Packs op(A) = A^T (A stored [K, M], already offset to the block) for rows [0, mc) and steps
/// [0, kc) into MR-row micro-panels: panel p holds op(A)(p*MR + r, k) at [p*MR*kc + k*MR + r], rows
/// past mc zero. Read in place, each step of a panel would touch its own cache line, lda apart: the
/// panel would need KC lines of L1 (and collide in a few sets when lda is a power of two).
/// `avail` (>= mc) is how many elements each row of A has from the block's start, so whole vectors
/// can be copied: a vector's lanes past MR land on the next step's slot, written right after, and
/// `dst` has pack_slack floats to spare for the last one.
inline constexpr std::size_t pack_vectors = (MR + W - 1) / W;
inline constexpr std::size_t pack_slack = pack_vectors * W;
inline void pack_at(const float* A, std::size_t lda, std::size_t mc, std::size_t avail, std::size_t kc, float* dst) {
    for (std::size_t i = 0; i < mc; i += MR, dst += MR * kc) {
        if (i + pack_vectors * W <= avail) {
            for (std::size_t k = 0; k < kc; ++k) {
                SKILLVEC_GEMM_UNROLL
                for (std::size_t v = 0; v < pack_vectors; ++v)
                    fbatch::load_unaligned(A + k * lda + i + v * W).store_unaligned(dst + k * MR + v * W);
            }
        } else {
            for (std::size_t k = 0; k < kc; ++k)
                for (std::size_t r = 0; r < MR; ++r) dst[k * MR + r] = i + r < mc ? A[k * lda + i + r] : 0.0f;
        }
    }
}

/// Transposes a TB x TB block: d[t*ldd + c] = s[c*lds + t]. Packing op(B) = B^T (the forward
/// linear layer's weights) is a transpose; element by element it costs about as much as the product
/// itself when M is small (sampling, attention), so x86 gets register transposes. xsimd 8 has no
/// portable transpose (its zip_lo stays within 128-bit lanes on AVX), hence the intrinsics.
#if defined(__AVX__)
inline constexpr std::size_t transpose_block = 8;
inline void transpose(const float* s, std::size_t lds, float* d, std::size_t ldd) noexcept {
    __m256 r[8], t[8];
    for (std::size_t c = 0; c < 8; ++c) r[c] = _mm256_loadu_ps(s + c * lds);
    for (std::size_t c = 0; c < 8; c += 2) {
        t[c] = _mm256_unpacklo_ps(r[c], r[c + 1]);
        t[c + 1] = _mm256_unpackhi_ps(r[c], r[c + 1]);
    }
    for (std::size_t c = 0; c < 8; c += 4) {
        r[c] = _mm256_shuffle_ps(t[c], t[c + 2], 0x44);
        r[c + 1] = _mm256_shuffle_ps(t[c], t[c + 2], 0xEE);
        r[c + 2] = _mm256_shuffle_ps(t[c + 1], t[c + 3], 0x44);
        r[c + 3] = _mm256_shuffle_ps(t[c + 1], t[c + 3], 0xEE);
    }
    for (std::size_t c = 0; c < 4; ++c) {
        _mm256_storeu_ps(d + c * ldd, _mm256_permute2f128_ps(r[c], r[c + 4], 0x20));
        _mm256_storeu_ps(d + (c + 4) * ldd, _mm256_permute2f128_ps(r[c], r[c + 4], 0x31));
    }
}
#elif defined(__SSE2__) || defined(_M_X64)
inline constexpr std::size_t transpose_block = 4;
inline void transpose(const float* s, std::size_t lds, float* d, std::size_t ldd) noexcept {
    __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + lds), r2 = _mm_loadu_ps(s + 2 * lds), r3 = _mm_loadu_ps(s + 3 * lds);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(d, r0);
    _mm_storeu_ps(d + ldd, r1);
    _mm_storeu_ps(d + 2 * ldd, r2);
    _mm_storeu_ps(d + 3 * ldd, r3);
}
#else
inline constexpr std::size_t transpose_block = 1;
inline void transpose(const float* s, std::size_t, float* d, std::size_t) noexcept { *d = *s; }
#endif

/// Packs rows [0, kc) and columns [0, nc) of op(B) into NR-column micro-panels: panel p holds
/// op(B)(k, p*NR + j) at [p*NR*kc + k*NR + j]; columns past nc are zero.
inline void pack_b(trans tb, const float* B, std::size_t ldb, std::size_t kc, std::size_t nc, float* dst) {
    for (std::size_t j = 0; j < nc; j += NR, dst += NR * kc) {
        const std::size_t nr = std::min(NR, nc - j);
        if (tb == trans::n) {
            for (std::size_t k = 0; k < kc; ++k) {
                const float* s = B + k * ldb + j;
                float* d = dst + k * NR;
                if (nr == NR) {
                    SKILLVEC_GEMM_UNROLL
                    for (std::size_t v = 0; v < NV; ++v) fbatch::load_unaligned(s + v * W).store_aligned(d + v * W);
                } else {
                    for (std::size_t c = 0; c < NR; ++c) d[c] = c < nr ? s[c] : 0.0f;
                }
            }
        } else {
            // op(B)(k, j) = B[j*ldb + k]: read each of the NR rows of B contiguously.
            constexpr std::size_t tbk = NR % transpose_block == 0 ? transpose_block : 1;
            if (nr == NR && tbk > 1) {
                std::size_t k = 0;
                for (; k + tbk <= kc; k += tbk)
                    for (std::size_t c = 0; c < NR; c += tbk) transpose(B + (j + c) * ldb + k, ldb, dst + k * NR + c, NR);
                for (; k < kc; ++k)
                    for (std::size_t c = 0; c < NR; ++c) dst[k * NR + c] = B[(j + c) * ldb + k];
                continue;
            }
            for (std::size_t c = 0; c < NR; ++c) {
                if (c < nr) {
                    const float* s = B + (j + c) * ldb;
                    for (std::size_t k = 0; k < kc; ++k) dst[k * NR + c] = s[k];
                } else {
                    for (std::size_t k = 0; k < kc; ++k) dst[k * NR + c] = 0.0f;
                }
            }
        }
    }
}

/// C[0:mr, 0:nr] = alpha * (op(A) * pb) + beta * C over kc steps; beta == 0 does not read C.
/// op(A) is read in place: row r of the tile, step k, is a[k*sak + off[r]] (rows past mr repeat row 0
/// and are dropped at the store), so A is never copied. The broadcasts are loads anyway, and the
/// MR rows are MR sequential streams that the prefetcher follows.
/// The tile is written with the same vector arithmetic whether it is whole or at an edge, so a
/// result does not depend on where its element falls.
inline void kernel(std::size_t kc, const float* a, const std::size_t (&off)[MR], std::size_t sak,
                   const float* __restrict pb, float* C, std::size_t ldc, std::size_t mr, std::size_t nr, float alpha,
                   float beta) noexcept {
    std::size_t o[MR];
    SKILLVEC_GEMM_UNROLL
    for (std::size_t r = 0; r < MR; ++r) o[r] = off[r];

    fbatch c[MR][NV];
    SKILLVEC_GEMM_UNROLL
    for (std::size_t r = 0; r < MR; ++r) {
        SKILLVEC_GEMM_UNROLL
        for (std::size_t v = 0; v < NV; ++v) c[r][v] = fbatch(0.0f);
    }
#if defined(__clang__)
#pragma unroll 4
#elif defined(__GNUC__)
#pragma GCC unroll 4
#endif
    for (std::size_t k = 0; k < kc; ++k) {
        fbatch b[NV];
        SKILLVEC_GEMM_UNROLL
        for (std::size_t v = 0; v < NV; ++v) b[v] = fbatch::load_aligned(pb + v * W);
        SKILLVEC_GEMM_UNROLL
        for (std::size_t r = 0; r < MR; ++r) {
            const fbatch x(a[o[r]]);
            SKILLVEC_GEMM_UNROLL
            for (std::size_t v = 0; v < NV; ++v) c[r][v] = xsimd::fma(x, b[v], c[r][v]);
        }
        a += sak;
        pb += NR;
    }
    const fbatch va(alpha), vb(beta);
    if (mr == MR && nr == NR) {
        SKILLVEC_GEMM_UNROLL
        for (std::size_t r = 0; r < MR; ++r) {
            float* row = C + r * ldc;
            SKILLVEC_GEMM_UNROLL
            for (std::size_t v = 0; v < NV; ++v) {
                if (beta == 0.0f) (va * c[r][v]).store_unaligned(row + v * W);
                else xsimd::fma(va, c[r][v], vb * fbatch::load_unaligned(row + v * W)).store_unaligned(row + v * W);
            }
        }
        return;
    }
    alignas(64) float tile[MR * NR];
    if (beta != 0.0f)
        for (std::size_t r = 0; r < mr; ++r)
            for (std::size_t j = 0; j < nr; ++j) tile[r * NR + j] = C[r * ldc + j];
    SKILLVEC_GEMM_UNROLL
    for (std::size_t r = 0; r < MR; ++r) {
        SKILLVEC_GEMM_UNROLL
        for (std::size_t v = 0; v < NV; ++v) {
            float* t = tile + r * NR + v * W;
            if (beta == 0.0f) (va * c[r][v]).store_aligned(t);
            else xsimd::fma(va, c[r][v], vb * fbatch::load_aligned(t)).store_aligned(t);
        }
    }
    for (std::size_t r = 0; r < mr; ++r)
        for (std::size_t j = 0; j < nr; ++j) C[r * ldc + j] = tile[r * NR + j];
}

inline constexpr std::size_t packed_offsets[MR] = {0, 1, 2, 3, 4, 5};
static_assert(MR == 6, "packed_offsets lists MR offsets");

/// One thread's share: the whole blocked product for a sub-matrix of C (M, N, K > 0).
inline void gemm_serial(trans ta, trans tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
                        std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
    // Equal K blocks (K = 384 is two of 192, not 256 + 128) keep every pass at full length.
    const std::size_t kblocks = (K + KC - 1) / KC;
    const std::size_t kc_max = (K + kblocks - 1) / kblocks;
    const std::size_t nc_max = std::min(NC, (N + NR - 1) / NR * NR);
    float* pb = b_buffer().get(kc_max * nc_max);
    // op(A) = A is read in place (op(A)(i, k) = A[i*lda + k]: MR rows, each a sequential stream);
    // op(A) = A^T is packed per MC x KC block, then panel p starts at pa + p*MR*kc.
    float* pa = ta == trans::t ? a_buffer().get(std::min(MC, (M + MR - 1) / MR * MR) * kc_max + pack_slack) : nullptr;
    for (std::size_t jc = 0; jc < N; jc += NC) {
        const std::size_t nc = std::min(NC, N - jc);
        for (std::size_t pc = 0; pc < K; pc += kc_max) {
            const std::size_t kc = std::min(kc_max, K - pc);
            const float bet = pc == 0 ? beta : 1.0f;
            pack_b(tb, tb == trans::n ? B + pc * ldb + jc : B + jc * ldb + pc, ldb, kc, nc, pb);
            for (std::size_t ic = 0; ic < M; ic += MC) {
                const std::size_t mc = std::min(MC, M - ic);
                if (ta == trans::t) pack_at(A + pc * lda + ic, lda, mc, M - ic, kc, pa);
                for (std::size_t jr = 0; jr < nc; jr += NR) {
                    const std::size_t nr = std::min(NR, nc - jr);
                    for (std::size_t ir = 0; ir < mc; ir += MR) {
                        const std::size_t mr = std::min(MR, mc - ir);
                        if (ta == trans::t) {
                            kernel(kc, pa + ir * kc, packed_offsets, MR, pb + jr * kc, C + (ic + ir) * ldc + jc + jr,
                                   ldc, mr, nr, alpha, bet);
                        } else {
                            std::size_t off[MR];
                            for (std::size_t r = 0; r < MR; ++r) off[r] = (r < mr ? r : 0) * lda;
                            kernel(kc, A + (ic + ir) * lda + pc, off, 1, pb + jr * kc, C + (ic + ir) * ldc + jc + jr,
                                   ldc, mr, nr, alpha, bet);
                        }
                    }
                }
            }
        }
    }
}

inline void gemm_f32(trans ta, trans tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
                     std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc,
                     skillvec::detail::thread_pool* pool) {
    const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
    // Split C along its longer side, in whole micro-tiles, so each task packs only its own share
    // of one operand (the other is packed by every task: cheap next to the product). Up to 4 tasks
    // a thread, taken dynamically: on a shared machine a core is often busy with something else,
    // and with one task per thread the caller would wait for the slowest.
    const bool split_m = M >= N;
    const std::size_t unit = split_m ? MR : NR;
    const std::size_t units = ((split_m ? M : N) + unit - 1) / unit;
    std::size_t tasks = 1;
    if (pool != nullptr && pool->size() > 1 && flops >= parallel_min_flops)
        tasks = std::min(units, std::clamp(std::min(units / task_min_units, static_cast<std::size_t>(flops / task_min_flops)),
                                           std::size_t{pool->size()}, std::size_t{4} * pool->size()));
    if (tasks <= 1 || pool == nullptr) {
        gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    pool->run(tasks, [&](std::size_t t) {
        const std::size_t lo = units * t / tasks * unit, hi = std::min(units * (t + 1) / tasks * unit, split_m ? M : N);
        if (lo >= hi) return;
        if (split_m)
            gemm_serial(ta, tb, hi - lo, N, K, alpha, ta == trans::n ? A + lo * lda : A + lo, lda, B, ldb, beta,
                        C + lo * ldc, ldc);
        else
            gemm_serial(ta, tb, M, hi - lo, K, alpha, A, lda, tb == trans::n ? B + lo : B + lo * ldb, ldb, beta,
                        C + lo, ldc);
    });
}

/// The reference loop nest for any T: inner loops run along contiguous memory where the layout
/// allows (i-k-j when op(B) rows are contiguous, dot products when B is transposed).
template <class T>
void gemm_generic(trans ta, trans tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
                  std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    auto a = [&](std::size_t i, std::size_t k) -> const T& { return ta == trans::n ? A[i * lda + k] : A[k * lda + i]; };
    for (std::size_t i = 0; i < M; ++i) {
        T* c = C + i * ldc;
        if (tb == trans::t) {
            for (std::size_t j = 0; j < N; ++j) {
                const T* b = B + j * ldb;
                T s = T(0);
                for (std::size_t k = 0; k < K; ++k) s += a(i, k) * b[k];
                c[j] = beta == T(0) ? alpha * s : alpha * s + beta * c[j];
            }
        } else {
            for (std::size_t j = 0; j < N; ++j) c[j] = beta == T(0) ? T(0) : beta * c[j];
            for (std::size_t k = 0; k < K; ++k) {
                const T s = alpha * a(i, k);
                const T* b = B + k * ldb;
                for (std::size_t j = 0; j < N; ++j) c[j] += s * b[j];
            }
        }
    }
}

} // namespace gemm_impl

/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major with row strides lda, ldb,
/// ldc (in elements). op(A) is A, stored [M,K] with lda >= K, or A^T, stored [K,M] with lda >= M;
/// likewise B. As in BLAS, beta == 0 means C is only written (NaN or garbage there is overwritten),
/// and K == 0 or alpha == 0 leave beta * C without reading A or B. Elements of C outside the M x N
/// window and of A and B outside theirs are never touched.
///
/// For float, `pool` (if given) splits products above a few MFLOP across its threads; smaller
/// ones stay on the calling thread, where waking a worker would cost more than it saves. The result
/// does not depend on the thread count: each element is summed in the same order either way. Other T
/// (double, for gradient checks) use a plain loop nest and ignore `pool`.
template <class T>
void gemm(trans ta, trans tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
          const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc, skillvec::detail::thread_pool* pool = nullptr) {
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == T(0)) {
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
        return;
    }
    if constexpr (std::is_same_v<T, float>)
        gemm_impl::gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool);
    else {
        (void)pool;
        gemm_impl::gemm_generic(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}

} // namespace skillvec::nn::detail

#undef SKILLVEC_GEMM_UNROLL

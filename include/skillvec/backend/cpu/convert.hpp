#pragma once
/// \file
/// SIMD loads and stores of f32, bf16 and f16 tensors as `xsimd::batch<float>`, in element order.
///
/// bf16 and f16 are widened and narrowed in registers. xsimd 8 has no 16-bit widening load, so the
/// widening/narrowing step uses the ISA's own instruction where there is one (SSE2 unpack, AVX2
/// vpmovzxwd/vpackusdw, AVX-512 vpmovdw, F16C vcvtph2ps/vcvtps2ph) and an xsimd integer fallback
/// elsewhere. Every path matches the scalar reference in core/dtype.hpp bit for bit; the tests
/// check that over all 65,536 patterns.
///
/// The architecture is xsimd's compile-time `default_arch`, set by the user's -march: a header-only
/// library cannot ship per-ISA translation units for runtime dispatch.

#include <skillvec/core/config.hpp>
#include <skillvec/core/dtype.hpp>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace skillvec {

namespace backend::cpu {

using arch = xsimd::default_arch;
template <class A = arch> using fbatch = xsimd::batch<float, A>;
template <class A = arch> using ubatch = xsimd::batch<std::uint32_t, A>;

/// Lanes of a float batch on the compile-time architecture.
inline constexpr std::size_t simd_width = fbatch<>::size;

/// The dtypes the SIMD loads and stores handle directly (f64 goes through scalar conversion).
[[nodiscard]] constexpr bool simd_dtype_of(dtype t) noexcept {
    return t == dtype::f32 || t == dtype::bf16 || t == dtype::f16;
}

namespace detail {

template <class A> inline constexpr bool is_avx512 = std::is_base_of_v<xsimd::avx512f, A>;
template <class A> inline constexpr bool is_avx2 = std::is_base_of_v<xsimd::avx2, A>;
template <class A> inline constexpr bool is_avx = std::is_base_of_v<xsimd::avx, A>;
template <class A> inline constexpr bool is_sse2 = std::is_base_of_v<xsimd::sse2, A>;

// Raw stores of one register. Stream = true is a non-temporal store: it bypasses the caches and
// saves the read that a normal store of a line not in cache costs (write-allocate). The address
// must then be aligned to the register size (kernels peel to 64 bytes first).
#if XSIMD_WITH_SSE2
template <bool Stream> void put64(void* p, __m128i v) noexcept {
#if defined(__x86_64__) || defined(_M_X64)
    if constexpr (Stream) _mm_stream_si64(static_cast<long long*>(p), _mm_cvtsi128_si64(v));
    else
#endif
    _mm_storel_epi64(static_cast<__m128i*>(p), v);
}
template <bool Stream> void put128(void* p, __m128i v) noexcept {
    if constexpr (Stream) _mm_stream_si128(static_cast<__m128i*>(p), v);
    else _mm_storeu_si128(static_cast<__m128i*>(p), v);
}
#endif
#if XSIMD_WITH_AVX
template <bool Stream> void put256(void* p, __m256i v) noexcept {
    if constexpr (Stream) _mm256_stream_si256(static_cast<__m256i*>(p), v);
    else _mm256_storeu_si256(static_cast<__m256i*>(p), v);
}
#endif
#if XSIMD_WITH_AVX512F
template <bool Stream> void put512(void* p, __m512i v) noexcept {
    if constexpr (Stream) _mm512_stream_si512(static_cast<__m512i*>(p), v);
    else _mm512_storeu_si512(p, v);
}
#endif

template <bool Stream, class A> void put_f32(float* p, const xsimd::batch<float, A>& x) noexcept {
    if constexpr (Stream) {
#if XSIMD_WITH_AVX512F
        if constexpr (is_avx512<A>) return _mm512_stream_ps(p, x);
#endif
#if XSIMD_WITH_AVX
        if constexpr (is_avx<A>) return _mm256_stream_ps(p, x);
#endif
#if XSIMD_WITH_SSE2
        if constexpr (is_sse2<A>) return _mm_stream_ps(p, x);
#endif
    }
    x.store_unaligned(p);
}

/// Orders the streaming stores before whatever follows (a no-op where nothing streams).
inline void stream_fence() noexcept {
#if XSIMD_WITH_SSE2
    _mm_sfence();
#endif
}

/// Loads size() consecutive uint16 values zero-extended to uint32 lanes, in order.
template <class A> ubatch<A> widen_u16(const std::uint16_t* p) noexcept {
#if XSIMD_WITH_AVX512F
    if constexpr (is_avx512<A>) return ubatch<A>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
    else
#endif
#if XSIMD_WITH_AVX2
    if constexpr (is_avx2<A>) return ubatch<A>(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    else
#endif
#if XSIMD_WITH_AVX
    if constexpr (is_avx<A>) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i z = _mm_setzero_si128();
        return ubatch<A>(_mm256_insertf128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(v, z)), _mm_unpackhi_epi16(v, z), 1));
    } else
#endif
#if XSIMD_WITH_SSE2
    if constexpr (is_sse2<A>) return ubatch<A>(_mm_unpacklo_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), _mm_setzero_si128()));
    else
#endif
    {
        alignas(64) std::uint32_t tmp[ubatch<A>::size];
        for (std::size_t i = 0; i < ubatch<A>::size; ++i) tmp[i] = p[i];
        return ubatch<A>::load_aligned(tmp);
    }
}

/// Stores the low 16 bits of each uint32 lane (all lanes hold values <= 0xFFFF), in order.
template <bool Stream = false, class A> void narrow_u16(std::uint16_t* p, const ubatch<A>& r) noexcept {
#if XSIMD_WITH_AVX512F
    if constexpr (is_avx512<A>) put256<Stream>(p, _mm512_cvtepi32_epi16(r));
    else
#endif
#if XSIMD_WITH_AVX2
    if constexpr (is_avx2<A>) {
        // packus works per 128-bit lane: [r0..r3 r0..r3 | r4..r7 r4..r7]; gather quads 0 and 2.
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        put128<Stream>(p, _mm256_castsi256_si128(packed));
    } else
#endif
#if XSIMD_WITH_AVX
    if constexpr (is_avx<A>) {
        alignas(32) std::uint32_t tmp[8];
        r.store_aligned(tmp);
        for (std::size_t i = 0; i < 8; ++i) p[i] = static_cast<std::uint16_t>(tmp[i]);
    } else
#endif
#if XSIMD_WITH_SSE4_1
    if constexpr (is_sse2<A>) put64<Stream>(p, _mm_packus_epi32(r, r));
    else
#endif
#if XSIMD_WITH_SSE2
    if constexpr (is_sse2<A>) {
        // No unsigned pack in SSE2: bias into the signed range, pack with saturation (exact), unbias.
        const __m128i bias = _mm_set1_epi32(0x8000);
        const __m128i s = _mm_packs_epi32(_mm_sub_epi32(r, bias), _mm_setzero_si128());
        put64<Stream>(p, _mm_xor_si128(s, _mm_set1_epi16(static_cast<short>(0x8000))));
    } else
#endif
    {
        alignas(64) std::uint32_t tmp[ubatch<A>::size];
        r.store_aligned(tmp);
        for (std::size_t i = 0; i < ubatch<A>::size; ++i) p[i] = static_cast<std::uint16_t>(tmp[i]);
    }
}

template <class A> fbatch<A> as_float(const ubatch<A>& u) noexcept { return xsimd::bitwise_cast<fbatch<A>>(u); }
template <class A> ubatch<A> as_bits(const fbatch<A>& f) noexcept { return xsimd::bitwise_cast<ubatch<A>>(f); }

} // namespace detail

// --- bf16 ----------------------------------------------------------------------------------------

namespace detail {
/// Rounds f32 lanes to bf16 (nearest even), result in the low 16 bits of each lane. NaN becomes a
/// quiet NaN keeping sign and upper payload. The NaN test and blend stay in float registers
/// (xsimd 8 has no cast between batch_bool types): about 8 operations per batch. The test is
/// xsimd::isnan, not x != x: xsimd 8's AVX operator!= is the *ordered* compare, false for NaN.
template <class A> ubatch<A> bf16_bits(const fbatch<A>& x) noexcept {
    using U = ubatch<A>;
    const U u = as_bits<A>(x);
    const U hi = u >> 16;
    const U rounded = (u + U(0x7FFFu) + (hi & U(1u))) >> 16;
    return as_bits<A>(xsimd::select(xsimd::isnan(x), as_float<A>(hi | U(0x40u)), as_float<A>(rounded)));
}
} // namespace detail

template <class A = arch> fbatch<A> load_bf16(const std::uint16_t* p) noexcept {
    return detail::as_float<A>(detail::widen_u16<A>(p) << 16);
}

template <bool Stream = false, class A = arch> void store_bf16(std::uint16_t* p, const fbatch<A>& x) noexcept {
    detail::narrow_u16<Stream>(p, detail::bf16_bits<A>(x));
}

/// Loads 2 * size() bf16 values as two f32 batches in *pair order*: the order of the unpack
/// instructions within each 128-bit lane, which put a bf16 straight into the high half of an f32
/// lane (no shift), and whose inverse, the in-lane unsigned pack of store_bf16_pair, restores
/// element order (no cross-lane permute). Element-wise kernels and reductions do not care about
/// lane order, so a bf16 -> bf16 pass uses this and saves about a quarter of its operations.
template <class A = arch> std::pair<fbatch<A>, fbatch<A>> load_bf16_pair(const std::uint16_t* p) noexcept {
#if XSIMD_WITH_AVX512BW
    if constexpr (detail::is_avx512<A>) {
        const __m512i v = _mm512_loadu_si512(p), z = _mm512_setzero_si512();
        return {fbatch<A>(_mm512_castsi512_ps(_mm512_unpacklo_epi16(z, v))),
                fbatch<A>(_mm512_castsi512_ps(_mm512_unpackhi_epi16(z, v)))};
    } else
#endif
#if XSIMD_WITH_AVX2
    if constexpr (detail::is_avx2<A>) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), z = _mm256_setzero_si256();
        return {fbatch<A>(_mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v))),
                fbatch<A>(_mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v)))};
    } else
#endif
#if XSIMD_WITH_SSE2
    if constexpr (detail::is_sse2<A>) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), z = _mm_setzero_si128();
        return {fbatch<A>(_mm_castsi128_ps(_mm_unpacklo_epi16(z, v))), fbatch<A>(_mm_castsi128_ps(_mm_unpackhi_epi16(z, v)))};
    } else
#endif
    return {load_bf16<A>(p), load_bf16<A>(p + fbatch<A>::size)};
}

/// Rounds two batches loaded by load_bf16_pair (or computed from such) and stores them in element order.
template <bool Stream = false, class A = arch>
void store_bf16_pair(std::uint16_t* p, const fbatch<A>& lo, const fbatch<A>& hi) noexcept {
    const ubatch<A> a = detail::bf16_bits<A>(lo), b = detail::bf16_bits<A>(hi);
#if XSIMD_WITH_AVX512BW
    if constexpr (detail::is_avx512<A>) detail::put512<Stream>(p, _mm512_packus_epi32(a, b));
    else
#endif
#if XSIMD_WITH_AVX2
    if constexpr (detail::is_avx2<A>) detail::put256<Stream>(p, _mm256_packus_epi32(a, b));
    else
#endif
#if XSIMD_WITH_SSE4_1
    if constexpr (detail::is_sse2<A>) detail::put128<Stream>(p, _mm_packus_epi32(a, b));
    else
#endif
#if XSIMD_WITH_SSE2
    if constexpr (detail::is_sse2<A>) {
        const __m128i bias = _mm_set1_epi32(0x8000);
        const __m128i s = _mm_packs_epi32(_mm_sub_epi32(a, bias), _mm_sub_epi32(b, bias));
        detail::put128<Stream>(p, _mm_xor_si128(s, _mm_set1_epi16(static_cast<short>(0x8000))));
    } else
#endif
    {
        detail::narrow_u16<Stream>(p, a);
        detail::narrow_u16<Stream>(p + fbatch<A>::size, b);
    }
}

// --- f16 -----------------------------------------------------------------------------------------

/// f16 -> f32 with integer operations only (no F16C). Exposed so tests can check it on F16C machines.
template <class A = arch> fbatch<A> load_f16_soft(const std::uint16_t* p) noexcept {
    using U = ubatch<A>;
    const U h = detail::widen_u16<A>(p);
    const U sign = (h & U(0x8000u)) << 16;
    const U em = h & U(0x7FFFu);
    const U exp = em >> 10;
    const U man = em & U(0x3FFu);
    const U normal = (em << 13) + U(0x38000000u); // rebias 15 -> 127
    const U quiet = xsimd::select(man != U(0u), U(0x00400000u), U(0u));
    const U special = U(0x7F800000u) | (man << 13) | quiet;
    // Subnormal: man * 2^-24, exact through an int -> float conversion.
    const auto sub_f = xsimd::batch_cast<float>(xsimd::bitwise_cast<xsimd::batch<std::int32_t, A>>(man)) * fbatch<A>(5.9604644775390625e-8f);
    const U sub = detail::as_bits<A>(sub_f);
    U r = xsimd::select(exp == U(0x1Fu), special, normal);
    r = xsimd::select(exp == U(0u), sub, r);
    return detail::as_float<A>(r | sign);
}

/// f32 -> f16 with integer operations only (no F16C), round to nearest even.
template <bool Stream = false, class A = arch> void store_f16_soft(std::uint16_t* p, const fbatch<A>& x) noexcept {
    using U = ubatch<A>;
    const U u = detail::as_bits<A>(x);
    const U sign = (u >> 16) & U(0x8000u);
    const U a = u & U(0x7FFFFFFFu);
    const U normal = (a + U(0xC8000FFFu) + ((a >> 13) & U(1u))) >> 13;
    const U sub = detail::as_bits<A>(detail::as_float<A>(a) + fbatch<A>(0.5f)) - U(0x3F000000u);
    U r = xsimd::select(a < U(0x38800000u), sub, normal);
    r = xsimd::select(a >= U(0x477FF000u), U(0x7C00u), r);
    r = xsimd::select(a > U(0x7F800000u), U(0x7E00u) | ((a >> 13) & U(0x3FFu)), r);
    detail::narrow_u16<Stream>(p, r | sign);
}

template <class A = arch> fbatch<A> load_f16(const std::uint16_t* p) noexcept {
#if defined(__F16C__) && XSIMD_WITH_AVX512F
    if constexpr (detail::is_avx512<A>) return fbatch<A>(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
    else
#endif
#if defined(__F16C__) && XSIMD_WITH_AVX
    if constexpr (detail::is_avx<A>) return fbatch<A>(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    else
#endif
#if defined(__F16C__) && XSIMD_WITH_SSE2
    if constexpr (detail::is_sse2<A>) return fbatch<A>(_mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    else
#endif
    return load_f16_soft<A>(p);
}

template <bool Stream = false, class A = arch> void store_f16(std::uint16_t* p, const fbatch<A>& x) noexcept {
#if defined(__F16C__)
    constexpr int rne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
#endif
#if defined(__F16C__) && XSIMD_WITH_AVX512F
    if constexpr (detail::is_avx512<A>) detail::put256<Stream>(p, _mm512_cvtps_ph(x, rne));
    else
#endif
#if defined(__F16C__) && XSIMD_WITH_AVX
    if constexpr (detail::is_avx<A>) detail::put128<Stream>(p, _mm256_cvtps_ph(x, rne));
    else
#endif
#if defined(__F16C__) && XSIMD_WITH_SSE2
    if constexpr (detail::is_sse2<A>) detail::put64<Stream>(p, _mm_cvtps_ph(x, rne));
    else
#endif
    store_f16_soft<Stream>(p, x);
}

// --- f32 -> f64 ---------------------------------------------------------------------------------

template <class A = arch> using dbatch = xsimd::batch<double, A>;

/// The f32 lanes of x widened to f64: lanes [0, size/2) in the first batch, the rest in the second.
template <class A = arch> std::pair<dbatch<A>, dbatch<A>> widen_f64(const fbatch<A>& x) noexcept {
#if XSIMD_WITH_AVX512F
    if constexpr (detail::is_avx512<A>)
        return {dbatch<A>(_mm512_cvtps_pd(_mm512_castps512_ps256(x))),
                dbatch<A>(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))))};
    else
#endif
#if XSIMD_WITH_AVX
    if constexpr (detail::is_avx<A>)
        return {dbatch<A>(_mm256_cvtps_pd(_mm256_castps256_ps128(x))), dbatch<A>(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)))};
    else
#endif
#if XSIMD_WITH_SSE2
    if constexpr (detail::is_sse2<A>) return {dbatch<A>(_mm_cvtps_pd(x)), dbatch<A>(_mm_cvtps_pd(_mm_movehl_ps(x, x)))};
    else
#endif
    {
        constexpr std::size_t H = dbatch<A>::size;
        alignas(64) float f[2 * H];
        alignas(64) double d[2 * H];
        x.store_aligned(f);
        for (std::size_t i = 0; i < 2 * H; ++i) d[i] = f[i];
        return {dbatch<A>::load_aligned(d), dbatch<A>::load_aligned(d + H)};
    }
}

// --- by dtype ------------------------------------------------------------------------------------

/// Loads size() elements of a float-kind tensor (f32, bf16 or f16) starting at element `i`.
template <dtype D, class A = arch> fbatch<A> load(const std::byte* base, std::size_t i) noexcept {
    static_assert(D == dtype::f32 || D == dtype::bf16 || D == dtype::f16, "SIMD load: f32, bf16 or f16");
    if constexpr (D == dtype::f32) return fbatch<A>::load_unaligned(reinterpret_cast<const float*>(base) + i);
    else if constexpr (D == dtype::bf16) return load_bf16<A>(reinterpret_cast<const std::uint16_t*>(base) + i);
    else return load_f16<A>(reinterpret_cast<const std::uint16_t*>(base) + i);
}

/// Stores size() elements at element `i`, rounding to nearest even. With Stream the store is
/// non-temporal and the address must be aligned to the stored width.
template <dtype D, bool Stream = false, class A = arch> void store(std::byte* base, std::size_t i, const fbatch<A>& x) noexcept {
    static_assert(D == dtype::f32 || D == dtype::bf16 || D == dtype::f16, "SIMD store: f32, bf16 or f16");
    if constexpr (D == dtype::f32) detail::put_f32<Stream>(reinterpret_cast<float*>(base) + i, x);
    else if constexpr (D == dtype::bf16) store_bf16<Stream>(reinterpret_cast<std::uint16_t*>(base) + i, x);
    else store_f16<Stream>(reinterpret_cast<std::uint16_t*>(base) + i, x);
}

/// Elements to handle one by one from element `first` of a buffer of `elem`-byte elements before
/// its address is 64-byte aligned; SIZE_MAX if it never will be (a misaligned element).
inline std::size_t elements_to_alignment(const std::byte* base, std::size_t first, std::size_t elem) noexcept {
    const auto addr = reinterpret_cast<std::uintptr_t>(base + first * elem);
    if (addr % elem) return SIZE_MAX;
    return ((64 - addr % 64) % 64) / elem;
}

/// Converts n elements of a float-kind tensor to f32 (SIMD body, scalar tail).
inline void to_f32(dtype t, const std::byte* src, std::size_t first, std::size_t n, float* dst) noexcept {
    constexpr std::size_t W = simd_width;
    std::size_t i = 0;
    switch (t) {
    case dtype::f32: if (n) std::memcpy(dst, src + 4 * first, 4 * n); return; // empty tensors may be null
    case dtype::bf16: for (; i + W <= n; i += W) load<dtype::bf16>(src, first + i).store_unaligned(dst + i); break;
    case dtype::f16: for (; i + W <= n; i += W) load<dtype::f16>(src, first + i).store_unaligned(dst + i); break;
    default: break; // f64: scalar below (the compiler vectorizes the narrowing loop)
    }
    for (; i < n; ++i) dst[i] = load_as_f32(t, src, first + i);
}

/// Converts n f32 values into a float-kind tensor starting at element `first`. With `stream`,
/// stores bypass the caches (after a scalar run up to 64-byte alignment).
inline void from_f32(dtype t, const float* src, std::size_t n, std::byte* dst, std::size_t first, bool stream = false) noexcept {
    constexpr std::size_t W = simd_width;
    std::size_t i = 0;
    if (stream && simd_dtype_of(t)) {
        const std::size_t peel = elements_to_alignment(dst, first, bits_of(t) / 8);
        if (peel != SIZE_MAX) {
            for (; i < std::min(peel, n); ++i) store_from_f32(t, dst, first + i, src[i]);
            switch (t) {
            case dtype::f32: for (; i + W <= n; i += W) store<dtype::f32, true>(dst, first + i, fbatch<>::load_unaligned(src + i)); break;
            case dtype::bf16: for (; i + W <= n; i += W) store<dtype::bf16, true>(dst, first + i, fbatch<>::load_unaligned(src + i)); break;
            default: for (; i + W <= n; i += W) store<dtype::f16, true>(dst, first + i, fbatch<>::load_unaligned(src + i)); break;
            }
            detail::stream_fence();
        }
    }
    switch (t) {
    case dtype::f32: if (n > i) std::memcpy(dst + 4 * (first + i), src + i, 4 * (n - i)); return;
    case dtype::bf16: for (; i + W <= n; i += W) store<dtype::bf16>(dst, first + i, fbatch<>::load_unaligned(src + i)); break;
    case dtype::f16: for (; i + W <= n; i += W) store<dtype::f16>(dst, first + i, fbatch<>::load_unaligned(src + i)); break;
    default: break;
    }
    for (; i < n; ++i) store_from_f32(t, dst, first + i, src[i]);
}

} // namespace backend::cpu

/// SIMD batches work with the expression nodes through the same lane_ops as float.
template <class A> struct lane_ops<xsimd::batch<float, A>> {
    using B = xsimd::batch<float, A>;
    static B fma(const B& a, const B& b, const B& c) noexcept { return xsimd::fma(a, b, c); }
    static B abs(const B& a) noexcept { return xsimd::abs(a); }
    static B small_indicator(const B& a, float tol) noexcept {
        const auto small = xsimd::abs(a) <= B(tol); // NaN compares false
        if constexpr (!backend::cpu::detail::is_avx512<A> &&
                      (backend::cpu::detail::is_avx<A> || backend::cpu::detail::is_sse2<A>)) {
            // SSE/AVX masks are float registers of all-ones lanes: AND with 1.0f beats a blend.
            return B(1.0f) & B(static_cast<typename B::register_type>(small));
        } else {
            return xsimd::select(small, B(1.0f), B(0.0f)); // AVX-512 masks are k-registers
        }
    }
    static B broadcast(float s) noexcept { return B(s); }
};

} // namespace skillvec

#pragma once
/// \file
/// Build configuration shared by every backend.

/// Marks functions that run on both host and device. The arithmetic of every expression node is
/// written once, with this macro, and serves the CPU (scalar and SIMD) and CUDA backends alike.
#if defined(__CUDACC__)
#define SKILLVEC_HD __host__ __device__
#else
#define SKILLVEC_HD
#endif

#define SKILLVEC_VERSION_MAJOR 0
#define SKILLVEC_VERSION_MINOR 1
#define SKILLVEC_VERSION_PATCH 0

namespace skillvec {

/// Per-lane arithmetic used by expression nodes, specialized per value type: `float` here, SIMD
/// batches by the CPU backend. A class template (not overloads) so a backend declared after the
/// nodes can still extend it.
template <class T> struct lane_ops;

/// Whether `lane_ops<float>::fma` (and so `t + λ·v`) rounds once, with a hardware fused
/// multiply-add, or twice, as a*b + c: it depends on the target this is compiled for.
inline constexpr bool has_hardware_fma =
#if defined(__CUDA_ARCH__) || defined(__FMA__) || defined(__AVX512F__) || defined(__ARM_FEATURE_FMA)
    true;
#else
    false;
#endif

template <> struct lane_ops<float> {
    /// Fused multiply-add where the hardware has it, so that scalar tails and SIMD bodies (which
    /// use the same instruction) round identically. Without hardware FMA both use a*b + c.
    SKILLVEC_HD static float fma(float a, float b, float c) noexcept {
        if constexpr (has_hardware_fma) return __builtin_fmaf(a, b, c);
        else return a * b + c;
    }
    SKILLVEC_HD static float abs(float a) noexcept { return __builtin_fabsf(a); }
    /// 1 where |a| <= tol, else 0 (NaN counts as not small).
    SKILLVEC_HD static float small_indicator(float a, float tol) noexcept { return __builtin_fabsf(a) <= tol ? 1.0f : 0.0f; }
    SKILLVEC_HD static float broadcast(float s) noexcept { return s; }
};

} // namespace skillvec

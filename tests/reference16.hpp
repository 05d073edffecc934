#pragma once
// An independent reference for the 16-bit float formats: decoding by the IEEE formula in double,
// encoding by choosing the nearest value from a sorted table of every finite 16-bit value (ties
// to the even pattern). Nothing here shares code with core/dtype.hpp or the SIMD converters.
#include <skillvec/core/dtype.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace reference16 {
using namespace skillvec;

enum class kind16 { bf16, f16 };

// --- independent reference -------------------------------------------------------------------

// Decodes by the formula: (-1)^s * 2^(e - bias) * (1.m) or the subnormal form.
inline double ref_decode(kind16 k, std::uint16_t h) {
    const int ebits = k == kind16::f16 ? 5 : 8, mbits = k == kind16::f16 ? 10 : 7;
    const int bias = (1 << (ebits - 1)) - 1;
    const int s = h >> 15, e = (h >> mbits) & ((1 << ebits) - 1), m = h & ((1 << mbits) - 1);
    double mag;
    if (e == (1 << ebits) - 1) mag = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    else if (e == 0) mag = std::ldexp(static_cast<double>(m), 1 - bias - mbits);
    else mag = std::ldexp(1.0 + std::ldexp(static_cast<double>(m), -mbits), e - bias);
    return s ? -mag : mag;
}

struct table16 {
    kind16 k;
    std::vector<std::pair<double, std::uint16_t>> pos; // finite non-negative values, ascending
    double max_finite = 0, overflow_at = 0;            // |x| >= overflow_at rounds to Inf

    explicit table16(kind16 kind) : k(kind) {
        for (std::uint32_t h = 0; h < 0x8000; ++h) {
            const double v = ref_decode(k, static_cast<std::uint16_t>(h));
            if (std::isfinite(v)) pos.emplace_back(v, static_cast<std::uint16_t>(h));
        }
        std::sort(pos.begin(), pos.end());
        max_finite = pos.back().first;
        // The next value the format would have is max + ulp(max); halfway between rounds to Inf
        // (ties to even: the largest finite pattern is odd).
        const double ulp = pos.back().first - pos[pos.size() - 2].first;
        overflow_at = max_finite + ulp / 2;
    }

    // Nearest 16-bit pattern to a finite or infinite x; ties to the even pattern.
    std::uint16_t encode(double x) const {
        const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
        const double a = std::fabs(x);
        const std::uint16_t inf = k == kind16::f16 ? 0x7C00 : 0x7F80;
        if (a >= overflow_at) return sign | inf;
        auto it = std::lower_bound(pos.begin(), pos.end(), std::make_pair(a, std::uint16_t{0}));
        if (it == pos.end()) return sign | pos.back().second; // above the largest finite, below overflow_at
        if (it->first == a || it == pos.begin()) return sign | it->second;
        auto lo = it - 1;
        const double dlo = a - lo->first, dhi = it->first - a;
        if (dlo < dhi) return sign | lo->second;
        if (dhi < dlo) return sign | it->second;
        return sign | ((lo->second & 1) == 0 ? lo->second : it->second);
    }
};

inline const table16& table(kind16 k) {
    static const table16 b(kind16::bf16), h(kind16::f16);
    return k == kind16::bf16 ? b : h;
}

inline float to_f32(kind16 k, std::uint16_t h) { return k == kind16::bf16 ? bf16_to_f32(h) : f16_to_f32(h); }
inline std::uint16_t from_f32(kind16 k, float f) { return k == kind16::bf16 ? f32_to_bf16(f) : f32_to_f16(f); }
inline bool is_nan16(kind16 k, std::uint16_t h) {
    return k == kind16::bf16 ? ((h & 0x7F80) == 0x7F80 && (h & 0x7F)) : ((h & 0x7C00) == 0x7C00 && (h & 0x3FF));
}
inline std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

// Every f32 input that matters for rounding: each 16-bit value, each midpoint between
// neighbours, one f32 ulp either side of each midpoint, and special values.
inline std::vector<float> rounding_corpus(kind16 k) {
    std::vector<float> out;
    const auto& t = table(k);
    for (std::size_t i = 0; i + 1 < t.pos.size(); ++i) {
        const double lo = t.pos[i].first, hi = t.pos[i + 1].first;
        const float mid = static_cast<float>((lo + hi) / 2);
        REQUIRE(static_cast<double>(mid) == (lo + hi) / 2); // midpoints are exact in f32
        for (float v : {static_cast<float>(lo), mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
            out.push_back(v);
            out.push_back(-v);
        }
    }
    const float over = static_cast<float>(t.overflow_at);
    for (float v : {over, std::nextafter(over, 0.0f), std::nextafter(over, INFINITY), static_cast<float>(t.max_finite),
                    INFINITY, std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                    std::numeric_limits<float>::min(), 0.0f}) {
        out.push_back(v);
        out.push_back(-v);
    }
    return out;
}

} // namespace reference16

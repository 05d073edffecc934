// dtype conversions, checked exhaustively over all 65,536 bf16 and f16 patterns against an
// independent reference: decoding by the IEEE formula in double, encoding by choosing the nearest
// value from a sorted table of every finite 16-bit value (ties to the even pattern). Nothing here
// shares code with the bit tricks in core/dtype.hpp or the SIMD converters.
#include <skillvec/backend/cpu/convert.hpp>
#include <skillvec/core/dtype.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

using namespace skillvec;

namespace {

enum class kind16 { bf16, f16 };

// --- independent reference -------------------------------------------------------------------

// Decodes by the formula: (-1)^s * 2^(e - bias) * (1.m) or the subnormal form.
double ref_decode(kind16 k, std::uint16_t h) {
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

const table16& table(kind16 k) {
    static const table16 b(kind16::bf16), h(kind16::f16);
    return k == kind16::bf16 ? b : h;
}

float to_f32(kind16 k, std::uint16_t h) { return k == kind16::bf16 ? bf16_to_f32(h) : f16_to_f32(h); }
std::uint16_t from_f32(kind16 k, float f) { return k == kind16::bf16 ? f32_to_bf16(f) : f32_to_f16(f); }
bool is_nan16(kind16 k, std::uint16_t h) {
    return k == kind16::bf16 ? ((h & 0x7F80) == 0x7F80 && (h & 0x7F)) : ((h & 0x7C00) == 0x7C00 && (h & 0x3FF));
}
std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

// Every f32 input that matters for rounding: each 16-bit value, each midpoint between
// neighbours, one f32 ulp either side of each midpoint, and special values.
std::vector<float> rounding_corpus(kind16 k) {
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

} // namespace

TEST_CASE("dtype metadata: names round-trip, sizes, float kinds", "[dtype]") {
    for (dtype t : all_dtypes) {
        CHECK(parse_dtype(name_of(t)) == t);
        std::string lower(name_of(t));
        for (auto& c : lower) c = static_cast<char>(std::tolower(c));
        CHECK(parse_dtype(lower) == t);
        CHECK(bits_of(t) > 0);
    }
    CHECK_FALSE(parse_dtype("F31").has_value());
    CHECK_FALSE(parse_dtype("").has_value());
    CHECK(bits_of(dtype::bf16) == 16);
    CHECK(bits_of(dtype::f4) == 4);
    CHECK(bits_of(dtype::c64) == 64);
    CHECK(is_arithmetic(dtype::f16));
    CHECK(is_arithmetic(dtype::f64));
    CHECK_FALSE(is_arithmetic(dtype::i64));
    CHECK_FALSE(is_arithmetic(dtype::f8_e4m3));
}

TEST_CASE("16-bit -> f32 decoding is exact for all 65,536 patterns", "[dtype][exhaustive]") {
    for (kind16 k : {kind16::bf16, kind16::f16}) {
        for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
            const auto p = static_cast<std::uint16_t>(h);
            const double want = ref_decode(k, p);
            const float got = to_f32(k, p);
            if (std::isnan(want)) {
                REQUIRE(std::isnan(got));
                REQUIRE(std::signbit(got) == ((p & 0x8000) != 0));
            } else {
                REQUIRE(static_cast<double>(got) == want);
                REQUIRE(std::signbit(got) == std::signbit(want)); // -0 stays -0
            }
        }
    }
}

TEST_CASE("f32 -> 16-bit round-trips every non-NaN pattern and keeps NaN a NaN", "[dtype][exhaustive]") {
    for (kind16 k : {kind16::bf16, kind16::f16}) {
        for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
            const auto p = static_cast<std::uint16_t>(h);
            const std::uint16_t back = from_f32(k, to_f32(k, p));
            if (is_nan16(k, p)) {
                REQUIRE(is_nan16(k, back));
                REQUIRE((back & 0x8000) == (p & 0x8000));
            } else {
                REQUIRE(back == p);
            }
        }
    }
}

TEST_CASE("f32 -> 16-bit rounds to nearest even at every tie and either side of it", "[dtype][exhaustive]") {
    for (kind16 k : {kind16::bf16, kind16::f16}) {
        const auto corpus = rounding_corpus(k);
        for (float v : corpus) {
            INFO("kind " << (k == kind16::bf16 ? "bf16" : "f16") << " input bits " << std::hex << bits(v));
            REQUIRE(from_f32(k, v) == table(k).encode(v));
        }
    }
}

TEST_CASE("f32 -> 16-bit agrees with the reference on random f32 bit patterns", "[dtype]") {
    std::mt19937 rng(12345);
    for (kind16 k : {kind16::bf16, kind16::f16}) {
        for (int i = 0; i < 400000; ++i) {
            const float v = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
            if (std::isnan(v)) {
                const std::uint16_t r = from_f32(k, v);
                REQUIRE(is_nan16(k, r));
                REQUIRE(((r & 0x8000) != 0) == std::signbit(v));
                continue;
            }
            INFO("input bits " << std::hex << bits(v));
            REQUIRE(from_f32(k, v) == table(k).encode(v));
        }
    }
}

TEST_CASE("NaN payloads: quiet bit set, sign and upper payload kept", "[dtype]") {
    // Signalling f32 NaN with payload in the low bits only: must not become Inf (a truncating
    // conversion would), must become a quiet NaN.
    const float snan = std::bit_cast<float>(0x7F800001u);
    CHECK(f32_to_bf16(snan) == 0x7FC0);
    CHECK(f32_to_f16(snan) == 0x7E00);
    CHECK(f32_to_bf16(std::bit_cast<float>(0xFFA00000u)) == 0xFFE0);
    CHECK(f32_to_f16(std::bit_cast<float>(0xFFA00000u)) == 0xFF00);
    CHECK(bits(f16_to_f32(0x7C01)) == 0x7FC02000u); // quieted like vcvtph2ps
    CHECK(bits(bf16_to_f32(0x7F81)) == 0x7F810000u); // bf16 widening is a plain shift
}

TEST_CASE("constexpr conversions", "[dtype]") {
    static_assert(f32_to_bf16(1.0f) == 0x3F80);
    static_assert(f32_to_f16(1.0f) == 0x3C00);
    static_assert(f16_to_f32(0x3C00) == 1.0f);
    static_assert(bf16_to_f32(0xC000) == -2.0f);
    static_assert(f32_to_f16(65520.0f) == 0x7C00);
    static_assert(f32_to_f16(65519.0f) == 0x7BFF);
    static_assert(bfloat16::from(3.0f) == bfloat16{0x4040});
    CHECK(static_cast<float>(float16::from(0.5f)) == 0.5f);
}

// --- SIMD converters agree with the scalar ones bit for bit -----------------------------------

namespace {
using namespace skillvec::backend::cpu;
constexpr std::size_t W = simd_width;

template <class Load> void check_simd_load(kind16 k, Load load) {
    std::vector<std::uint16_t> all(0x10000);
    for (std::uint32_t h = 0; h <= 0xFFFF; ++h) all[h] = static_cast<std::uint16_t>(h);
    alignas(64) float out[64];
    for (std::size_t i = 0; i < all.size(); i += W) {
        load(all.data() + i).store_aligned(out);
        for (std::size_t j = 0; j < W; ++j)
            REQUIRE(bits(out[j]) == bits(to_f32(k, all[i + j])));
    }
}

template <class Store> void check_simd_store(kind16 k, Store store) {
    std::vector<float> in = rounding_corpus(k);
    std::mt19937 rng(7);
    for (int i = 0; i < 100000; ++i) in.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
    for (std::uint32_t nan : {0x7F800001u, 0xFF800001u, 0x7FC00000u, 0x7FFFFFFFu, 0x7F802000u, 0xFFBFE001u}) in.push_back(std::bit_cast<float>(nan));
    while (in.size() % W) in.push_back(0.0f);
    std::uint16_t out[64];
    for (std::size_t i = 0; i < in.size(); i += W) {
        store(out, fbatch<>::load_unaligned(in.data() + i));
        for (std::size_t j = 0; j < W; ++j) {
            INFO("input bits " << std::hex << bits(in[i + j]));
            REQUIRE(out[j] == from_f32(k, in[i + j]));
        }
    }
}
} // namespace

TEST_CASE("SIMD bf16 load/store match the scalar conversions on every pattern", "[dtype][simd][exhaustive]") {
    check_simd_load(kind16::bf16, [](const std::uint16_t* p) { return load_bf16(p); });
    check_simd_store(kind16::bf16, [](std::uint16_t* p, const fbatch<>& x) { store_bf16(p, x); });
}

TEST_CASE("SIMD f16 load/store (hardware path) match the scalar conversions on every pattern", "[dtype][simd][exhaustive]") {
    check_simd_load(kind16::f16, [](const std::uint16_t* p) { return load_f16(p); });
    check_simd_store(kind16::f16, [](std::uint16_t* p, const fbatch<>& x) { store_f16(p, x); });
}

TEST_CASE("SIMD f16 load/store (integer path, no F16C) match the scalar conversions", "[dtype][simd][exhaustive]") {
    check_simd_load(kind16::f16, [](const std::uint16_t* p) { return load_f16_soft(p); });
    check_simd_store(kind16::f16, [](std::uint16_t* p, const fbatch<>& x) { store_f16_soft(p, x); });
}

TEST_CASE("bulk to_f32/from_f32 handle odd lengths and unaligned starts", "[dtype][simd]") {
    for (dtype t : {dtype::f32, dtype::bf16, dtype::f16, dtype::f64}) {
        for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 31u, 100u}) {
            for (std::size_t first : {0u, 1u, 3u}) {
                const std::size_t es = bits_of(t) / 8;
                std::vector<std::byte> buf((n + first) * es + 1);
                std::byte* base = buf.data() + 1; // deliberately misaligned
                std::vector<float> src(n);
                for (std::size_t i = 0; i < n; ++i) src[i] = 0.37f * static_cast<float>(i) - 3.1f;
                from_f32(t, src.data(), n, base, first);
                std::vector<float> back(n);
                to_f32(t, base, first, n, back.data());
                for (std::size_t i = 0; i < n; ++i) {
                    store_from_f32(t, base, first + i, src[i]); // scalar reference rounding
                    REQUIRE(back[i] == load_as_f32(t, base, first + i));
                }
            }
        }
    }
}

// Scalar dtype conversions (core/dtype.hpp), checked exhaustively over all 65,536 bf16 and f16
// patterns against the independent reference in reference16.hpp.
#include "reference16.hpp"

#include <skillvec/core/dtype.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace skillvec;
using namespace reference16;

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

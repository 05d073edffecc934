// SIMD loads and stores (backend/cpu/convert.hpp) agree with the scalar conversions bit for bit,
// over all 65,536 patterns and the rounding corpus, on every code path this build has.
#include "reference16.hpp"

#include <skillvec/backend/cpu/convert.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <vector>

using namespace skillvec;
using namespace reference16;

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

TEST_CASE("bf16 pair order: load_bf16_pair/store_bf16_pair restore element order and round like the scalar code", "[dtype][simd][exhaustive]") {
    std::vector<std::uint16_t> a(0x10000), b(0x10000);
    for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
        a[h] = static_cast<std::uint16_t>(h);
        b[h] = static_cast<std::uint16_t>((h * 40503u + 12345u) & 0xFFFFu); // another permutation of all patterns
    }
    std::vector<std::uint16_t> copy(a.size()), sum(a.size());
    for (std::size_t i = 0; i < a.size(); i += 2 * W) {
        const auto [alo, ahi] = load_bf16_pair(a.data() + i);
        const auto [blo, bhi] = load_bf16_pair(b.data() + i);
        store_bf16_pair(copy.data() + i, alo, ahi);
        store_bf16_pair(sum.data() + i, alo + blo, ahi + bhi); // sums need rounding
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO("element " << i);
        REQUIRE(copy[i] == f32_to_bf16(bf16_to_f32(a[i]))); // identity, NaN quieted
        REQUIRE(sum[i] == f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i])));
    }
}

// memory_store, shape and tensor views.
#include "helpers.hpp"

#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <cstdint>

using namespace skillvec;
using Catch::Contains;

TEST_CASE("shape: rank 0 to 8, checked element counts", "[shape]") {
    CHECK(shape{}.numel() == 1);
    CHECK(shape{}.rank() == 0);
    CHECK(shape{0}.numel() == 0);
    CHECK(shape{3, 0, 2}.numel() == 0);
    CHECK(shape{2, 3, 4}.numel() == 24);
    CHECK(shape{2, 3}.to_string() == "[2, 3]");
    CHECK(shape{}.to_string() == "[]");
    CHECK(shape(std::vector<int>{4, 5}) == shape{4, 5});
    CHECK_FALSE(shape{4, 5} == shape{5, 4});
    CHECK_FALSE(shape{4} == shape{4, 1});
    CHECK_THROWS_WITH(shape(std::vector<int>{2, -1}), Contains("negative"));
    CHECK_THROWS_WITH(shape(std::vector<int>(9, 1)), Contains("rank above 8"));
    CHECK_THROWS_WITH((shape{1ull << 40, 1ull << 40}.numel()), Contains("overflows"));
    CHECK(shape{1ull << 31, 1ull << 31}.numel() == (1ull << 62));
}

TEST_CASE("byte sizes of every dtype, sub-byte tensors must fill whole bytes", "[shape][dtype]") {
    CHECK(byte_size(dtype::bf16, 3) == 6);
    CHECK(byte_size(dtype::f64, 3) == 24);
    CHECK(byte_size(dtype::f4, 4) == 2);
    CHECK(byte_size(dtype::f6_e2m3, 4) == 3);
    CHECK_THROWS_WITH(byte_size(dtype::f4, 3), Contains("whole number of bytes"));
    CHECK_THROWS_WITH(byte_size(dtype::f64, 1ull << 62), Contains("overflows"));
}

TEST_CASE("memory_store: add, find, typed views, order, erase, clone", "[memory_store]") {
    memory_store s("m");
    auto w = s.add("w", dtype::f32, {2, 3});
    CHECK(w.bytes.size() == 24);
    CHECK(reinterpret_cast<std::uintptr_t>(w.bytes.data()) % 64 == 0); // aligned
    for (float x : w.as<float>()) CHECK(x == 0.0f);                    // zero-filled
    w.as<float>()[4] = 7.0f;
    s.add<std::int32_t>("ids", {3}, std::vector<std::int32_t>{4, 5, 6});
    s.add_converted("h", dtype::bf16, {2}, std::vector<float>{1.0f, 1.00390625f}); // the second is a tie -> even
    s.add("empty", dtype::f16, {0});
    s.add("scalar", dtype::f64, {});

    CHECK(s.size() == 5);
    CHECK(s.tensor_names() == std::vector<std::string>{"w", "ids", "h", "empty", "scalar"});
    CHECK(s.at("w").as<float>()[4] == 7.0f);
    CHECK(s.at("ids").as<std::int32_t>()[2] == 6);
    CHECK(s.at("h").as<bfloat16>()[1] == bfloat16{0x3F80});
    CHECK(s.to_f32("h") == std::vector<float>{1.0f, 1.0f});
    CHECK(s.at("empty").bytes.empty());
    CHECK(s.at("scalar").bytes.size() == 8);
    CHECK(s.nbytes() == 24 + 12 + 4 + 0 + 8);
    CHECK_FALSE(s.find("nope").has_value());
    CHECK_THROWS_WITH(s.at("nope"), Contains("memory_store 'm': no tensor 'nope'"));
    CHECK_THROWS_WITH(s.add("w", dtype::f32, {1}), Contains("already exists"));
    CHECK_THROWS_WITH(s.at("w").as<double>(), Contains("holds F32, not F64"));
    CHECK_THROWS_WITH(s.to_f32("ids"), Contains("not a float kind"));
    CHECK_THROWS_WITH(s.add_bytes("x", dtype::f32, {2}, std::span<const std::byte>()), Contains("needs 8 bytes, got 0"));
    CHECK_THROWS_WITH(s.add_converted("y", dtype::i8, {1}, std::vector<float>{1}), Contains("float dtype"));
    CHECK_THROWS_WITH(s.add_converted("y", dtype::f32, {2}, std::vector<float>{1}), Contains("1 values for shape [2]"));

    auto c = s.clone();
    c.at_mutable("w").as<float>()[4] = 9.0f;
    CHECK(s.at("w").as<float>()[4] == 7.0f); // deep copy

    CHECK(s.erase("ids"));
    CHECK_FALSE(s.erase("ids"));
    CHECK(s.tensor_names() == std::vector<std::string>{"w", "h", "empty", "scalar"});
    CHECK(s.at("scalar").bytes.size() == 8); // indices stay right after erase
    memory_store moved = std::move(s);
    CHECK(moved.size() == 4);
    static_assert(!std::is_copy_constructible_v<memory_store>);
}

TEST_CASE("evaluating into a memory_store that already holds result names fails before any work", "[memory_store][sink]") {
    const auto a = test::random_store("a", {{"x", dtype::f32, {4}}, {"y", dtype::f32, {2}}, {"z", dtype::f32, {3}}}, 1);
    memory_store out("out");
    out.add("y", dtype::f32, {1});
    out.add("z", dtype::f32, {1});
    CHECK_THROWS_WITH(evaluate(weights(a) - weights(a), out),
                      Contains("memory_store 'out': the result would overwrite 2 existing tensors: 'y', 'z'"));
    CHECK(out.tensor_names() == std::vector<std::string>{"y", "z"}); // 'x' was not created
}

// xtensor interop, and xtensor as an independent reference for the fused evaluation.
#include "helpers.hpp"

#include <skillvec/interop/xtensor.hpp>
#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

using namespace skillvec;

TEST_CASE("xview adapts a tensor without copying, with its shape", "[xtensor]") {
    memory_store s;
    auto w = s.add("w", {2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
    auto x = xview<float>(s.at("w"));
    CHECK(x.dimension() == 2);
    CHECK(x(1, 2) == 6.0f);
    CHECK(&x(0, 0) == reinterpret_cast<const float*>(w.bytes.data()));
    auto m = xview<float>(s.at_mutable("w"));
    m(0, 1) = 20.0f;
    CHECK(s.at("w").as<float>()[1] == 20.0f);
    CHECK_THROWS_WITH(xview<double>(s.at("w")), Catch::Contains("holds F32, not F64"));
    s.add("scalar", {}, std::vector<float>{7});
    CHECK(xview<float>(s.at("scalar"))() == 7.0f); // rank 0
}

TEST_CASE("to_xarray widens and add_xexpression rounds", "[xtensor]") {
    memory_store s;
    s.add_converted("h", dtype::bf16, {3}, std::vector<float>{1.0f, -2.5f, 1.00390625f});
    const auto a = to_xarray(s.at("h"));
    CHECK(a(0) == 1.0f);
    CHECK(a(2) == 1.0f); // the tie rounded to even when stored
    add_xexpression(s, "twice", dtype::f16, 2.0f * a);
    CHECK(s.to_f32("twice") == std::vector<float>{2.0f, -5.0f, 2.0f});
    CHECK(s.at("twice").type == dtype::f16);
    s.add("ids", dtype::i32, {2});
    CHECK_THROWS_WITH(to_xarray(s.at("ids")), Catch::Contains("not a float kind"));
}

TEST_CASE("the fused PaST pass agrees with the same arithmetic written in xtensor", "[xtensor][evaluate]") {
    const std::vector<test::tensor_spec> sp = {{"model.layers.0.w", dtype::f32, {33, 65}}, {"model.layers.1.w", dtype::f32, {4097}}};
    const auto t = test::random_store("t", sp, 1), rl = test::random_store("rl", sp, 2), sft = test::random_store("sft", sp, 3);
    const auto out = materialize(past(weights(t), weights(rl), weights(sft), 0.5f));
    for (const auto& s : sp) {
        const auto xt_t = xview<float>(t.at(s.name)), xt_rl = xview<float>(rl.at(s.name)), xt_sft = xview<float>(sft.at(s.name));
        // In double: the exact value, which the f32 result must match to within its rounding.
        const xt::xarray<double> exact = xt::cast<double>(xt_t) + 0.5 * (xt::cast<double>(xt_rl) - xt::cast<double>(xt_sft));
        const auto got = xview<float>(out.at(s.name));
        REQUIRE(got.shape() == exact.shape());
        const xt::xarray<double> err = xt::abs(xt::cast<double>(got) - exact);
        const xt::xarray<double> tol = 1.2e-7 * (xt::abs(exact) + 0.5 * xt::abs(xt::cast<double>(xt_rl) - xt::cast<double>(xt_sft)));
        CHECK(xt::all(err <= tol));
        // The cosine between deltas, summed in double with xtensor.
        const xt::xarray<double> a = xt::cast<double>(xt_rl) - xt::cast<double>(xt_sft), b = xt::cast<double>(xt_t) - xt::cast<double>(xt_sft);
        const double cos_ref = xt::sum(a * b)() / std::sqrt(xt::sum(a * a)() * xt::sum(b * b)());
        const auto cos = evaluate(cosine(weights(rl) - weights(sft), weights(t) - weights(sft)));
        CHECK(cos.tensor(s.name).stats.cosine() == Approx(cos_ref).epsilon(1e-6));
    }
}

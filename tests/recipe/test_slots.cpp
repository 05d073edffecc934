// Compile-time recipes (recipe/slot.hpp) at run time: a bound recipe is the same expression as the
// one written by hand, so it gives the same bits; slot names label the operands.
#include "../helpers.hpp"

#include <skillvec/recipe/slot.hpp>
#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <cstring>

using namespace skillvec;
using test::tensor_spec;

namespace {
const std::vector<tensor_spec> specs{{"embed.weight", dtype::bf16, {50, 8}},
                                     {"layers.0.w", dtype::bf16, {70001}},
                                     {"layers.1.w", dtype::bf16, {513}},
                                     {"ids", dtype::i64, {3}}};

void require_same_bits(const memory_store& a, const memory_store& b) {
    REQUIRE(a.tensor_names().size() == b.tensor_names().size());
    for (const auto& n : a.tensor_names()) {
        const auto x = a.at(n), y = b.at(n);
        REQUIRE(x.type == y.type);
        REQUIRE(x.bytes.size() == y.bytes.size());
        CHECK(std::memcmp(x.bytes.data(), y.bytes.data(), x.bytes.size()) == 0);
    }
}
} // namespace

TEST_CASE("recipes::past bound to stores is past() bit for bit, and names its operands", "[recipe][slot]") {
    const auto t = test::random_store("t.st", specs, 1), rl = test::random_store("rl.st", specs, 2),
               sft = test::random_store("sft.st", specs, 3);
    for (float lambda : {1.0f, 0.3f, -2.0f}) {
        const auto expr = bind(recipes::past, arg<"target"> = t, arg<"rl"> = rl, arg<"sft"> = sft, arg<"lambda"> = lambda);
        static_assert(std::is_same_v<std::remove_const_t<decltype(expr)>, decltype(past(weights(t, "target"), weights(rl, "rl"), weights(sft, "sft"), lambda))>);
        require_same_bits(materialize(expr), materialize(past(weights(t), weights(rl), weights(sft), lambda)));
    }
    const auto expr = bind(recipes::past, arg<"lambda"> = 0.5f, arg<"sft"> = sft, arg<"rl"> = rl, arg<"target"> = t);
    CHECK(describe(expr) == "target + 0.5 * (rl - sft)");
    CHECK(describe(recipes::past) == "target + lambda * (rl - sft)");
}

TEST_CASE("a parameter slot takes a per-tensor parameter", "[recipe][slot]") {
    const auto t = test::random_store("t", specs, 4), rl = test::random_store("rl", specs, 5), sft = test::random_store("sft", specs, 6);
    const parameter lam = parameter::rules({{tensor_filter{"embed"}, 0.0f}, {tensor_filter{}, parameter::gradient({0.5f, 1.0f})}});
    const auto a = materialize(bind(recipes::past, arg<"target"> = t, arg<"rl"> = rl, arg<"sft"> = sft, arg<"lambda"> = lam));
    require_same_bits(a, materialize(past(weights(t), weights(rl), weights(sft), lam)));
    CHECK(a.to_f32("embed.weight") == t.to_f32("embed.weight")); // lambda 0 there
}

TEST_CASE("bound stores: lvalues by reference, rvalues owned", "[recipe][slot]") {
    const auto t = test::random_store("t", specs, 7), rl = test::random_store("rl", specs, 8);
    auto expr = bind(recipes::past, arg<"target"> = t, arg<"rl"> = rl, arg<"sft"> = test::random_store("sft", specs, 9),
                     arg<"lambda"> = 1.0f);
    // The moved-in sft store lives in the expression: evaluating after this statement is safe.
    const auto out = materialize(expr);
    const auto sft = test::random_store("sft", specs, 9);
    require_same_bits(out, materialize(past(weights(t), weights(rl), weights(sft), 1.0f)));
}

TEST_CASE("other ready recipes: inject a saved vector, linear, task arithmetic, iterative PaST", "[recipe][slot]") {
    const auto t = test::random_store("t", specs, 10), a = test::random_store("a", specs, 11), b = test::random_store("b", specs, 12);
    const auto v = materialize(weights(a) - weights(b));
    eval_options mixed;
    mixed.allow_mixed_float_dtypes = true; // a bf16 model plus an f32 vector
    require_same_bits(materialize(bind(recipes::inject, arg<"target"> = t, arg<"v"> = v, arg<"lambda"> = 0.75f), mixed),
                      materialize(inject(weights(t), delta(v), 0.75f), mixed));
    require_same_bits(materialize(bind(recipes::linear, arg<"a"> = a, arg<"b"> = b, arg<"t"> = 0.25f)),
                      materialize(lerp(weights(a), weights(b), 0.25f)));
    require_same_bits(materialize(bind(recipes::task_arithmetic, arg<"base"> = t, arg<"a"> = a, arg<"b"> = b, arg<"lambda"> = 0.5f)),
                      materialize(weights(t) + 0.5f * ((weights(a) - weights(t)) + (weights(b) - weights(t)))));
    require_same_bits(materialize(bind(recipes::iterative_past, arg<"sft"> = t, arg<"prev_rl"> = a, arg<"prev_sft"> = b, arg<"lambda"> = 1.0f)),
                      materialize(past(weights(t), weights(a), weights(b), 1.0f)));
}

TEST_CASE("reductions over slots bind too", "[recipe][slot]") {
    const auto a = test::random_store("a", specs, 13), b = test::random_store("b", specs, 14), c = test::random_store("c", specs, 15);
    const auto r = cosine(slot<"a"> - slot<"c">, slot<"b"> - slot<"c">);
    const auto got = evaluate(bind(r, arg<"a"> = a, arg<"b"> = b, arg<"c"> = c));
    const auto want = evaluate(cosine(weights(a) - weights(c), weights(b) - weights(c)));
    CHECK(got.value() == want.value());
}

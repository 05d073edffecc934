// Binding is strict and complete: every missing, extra and mismatched tensor is reported in one
// error, before any data is read or any output is created.
#include "helpers.hpp"

#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

using namespace skillvec;
using Catch::Contains;

namespace {
struct watching_sink {
    memory_store inner;
    int calls = 0;
    void begin(std::span<const tensor_info>) { ++calls; }
    std::span<std::byte> acquire(const tensor_info& i) {
        ++calls;
        return inner.acquire(i);
    }
    void commit(const tensor_info&) { ++calls; }
};

std::size_t count(const std::vector<binding_problem>& ps, binding_problem::kind k) {
    return static_cast<std::size_t>(std::count_if(ps.begin(), ps.end(), [&](const auto& p) { return p.what == k; }));
}
} // namespace

TEST_CASE("one binding_error lists every missing, extra, shape and dtype problem", "[bind]") {
    const auto rl = test::random_store("rl", {{"layers.0.w", dtype::bf16, {4, 4}},
                                              {"layers.1.w", dtype::bf16, {4, 4}},
                                              {"layers.2.w", dtype::bf16, {4, 4}},
                                              {"norm", dtype::bf16, {4}},
                                              {"embed", dtype::bf16, {10, 4}}},
                                       1);
    const auto sft = test::random_store("sft", {{"layers.0.w", dtype::bf16, {4, 4}},
                                                {"layers.2.w", dtype::bf16, {4, 5}}, // shape
                                                {"norm", dtype::f16, {4}},            // dtype
                                                {"embed", dtype::bf16, {10, 4}},
                                                {"lm_head", dtype::bf16, {10, 4}}},   // extra
                                        2);                                           // layers.1.w missing
    const auto t = test::random_store("target", {{"layers.0.w", dtype::bf16, {4, 4}},
                                                 {"layers.1.w", dtype::bf16, {4, 4}},
                                                 {"layers.2.w", dtype::bf16, {4, 4}},
                                                 {"norm", dtype::bf16, {4}}},
                                      3); // embed missing
    watching_sink sink;
    try {
        evaluate(weights(t) + (weights(rl) - weights(sft)), sink);
        FAIL("expected a binding_error");
    } catch (const binding_error& e) {
        const std::string msg = e.what();
        INFO(msg);
        const auto& ps = e.problems();
        CHECK(count(ps, binding_problem::kind::missing) == 1); // layers.1.w in sft
        CHECK(count(ps, binding_problem::kind::extra) == 3);   // embed in rl and sft, lm_head in sft
        CHECK(count(ps, binding_problem::kind::shape) == 1);
        CHECK(count(ps, binding_problem::kind::dtype) == 1);
        CHECK(ps.size() == 6);
        CHECK_THAT(msg, Contains("6 problems"));
        CHECK_THAT(msg, Contains("#1 'target' (point), #2 'rl' (point), #3 'sft' (point)"));
        CHECK_THAT(msg, Contains("missing: 'layers.1.w' is in #1 'target' but not in #3 'sft'"));
        CHECK_THAT(msg, Contains("shape: 'layers.2.w' is [4, 4] in #1 'target' but [4, 5] in #3 'sft'"));
        CHECK_THAT(msg, Contains("dtype: 'norm' is BF16 in #1 'target' but F16 in #3 'sft'"));
        CHECK_THAT(msg, Contains("extra: 'embed' is in #2 'rl' but not in #1 'target'"));
        CHECK_THAT(msg, Contains("extra: 'lm_head' is in #3 'sft' but not in #1 'target'"));
    }
    CHECK(sink.calls == 0); // nothing was started
}

TEST_CASE("labels come from weights(s, label), else the store, else the operand number", "[bind]") {
    memory_store a("from-store"), b;
    a.add("x", dtype::f32, {2});
    b.add("x", dtype::f32, {3});
    CHECK_THROWS_WITH(materialize(weights(a) - weights(b)), Contains("#1 'from-store'") && Contains("[3] in #2"));
    CHECK_THROWS_WITH(materialize(weights(a, "rl") - weights(b, "sft")), Contains("#1 'rl'") && Contains("#2 'sft'"));
}

TEST_CASE("non-float dtypes must agree even when float kinds may mix", "[bind]") {
    memory_store a, b;
    a.add("ids", dtype::i64, {3});
    b.add("ids", dtype::i32, {3});
    CHECK_THROWS_WITH(materialize(weights(a) - weights(b), eval_options{.allow_mixed_float_dtypes = true}),
                      Contains("dtype: 'ids' is I64 in #1 but I32 in #2"));
    memory_store c, d;
    c.add("w", dtype::f32, {3});
    d.add("w", dtype::i32, {3});
    CHECK_THROWS_AS(materialize(weights(c) - weights(d), eval_options{.allow_mixed_float_dtypes = true}), binding_error);
}

namespace {
/// A badly written adapter: lists a name twice, has a view of the wrong size, and lists a name it can't find.
struct broken_store {
    std::vector<std::string> names = {"a", "a", "short", "ghost"};
    std::vector<float> data = std::vector<float>(8);
    const std::vector<std::string>& tensor_names() const { return names; }
    std::optional<tensor_view> find(std::string_view n) const {
        if (n == "a") return tensor_view{dtype::f32, {2}, std::as_bytes(std::span(data).first(2))};
        if (n == "short") return tensor_view{dtype::f32, {4}, std::as_bytes(std::span(data).first(3))};
        return std::nullopt;
    }
};
} // namespace

TEST_CASE("adapter bugs are binding problems too: duplicates, wrong byte counts, unfindable names", "[bind]") {
    broken_store s;
    memory_store m;
    m.add("a", dtype::f32, {2});
    m.add("short", dtype::f32, {4});
    m.add("ghost", dtype::f32, {1});
    try {
        (void)materialize(weights(s, "mine") - weights(m));
        FAIL("expected a binding_error");
    } catch (const binding_error& e) {
        INFO(e.what());
        CHECK(count(e.problems(), binding_problem::kind::duplicate) == 1);
        CHECK(count(e.problems(), binding_problem::kind::invalid) == 2);
        CHECK_THAT(e.what(), Contains("'short' in #1 'mine': F32 [4] needs 16 bytes but the view has 12"));
        CHECK_THAT(e.what(), Contains("lists 'ghost' but find() does not return it"));
    }
}

TEST_CASE("reductions bind the same way", "[bind][reduce]") {
    const auto a = test::random_store("a", {{"x", dtype::f32, {4}}}, 1);
    const auto b = test::random_store("b", {{"y", dtype::f32, {4}}}, 2);
    CHECK_THROWS_AS(evaluate(cosine(weights(a) - weights(b), weights(a) - weights(a))), binding_error);
}

TEST_CASE("a saved vector may lack the model's non-float tensors; a point operand may not", "[bind]") {
    auto t = test::random_store("t", {{"w", dtype::bf16, {8}}}, 1);
    t.add<std::int64_t>("position_ids", {3}, std::vector<std::int64_t>{0, 1, 2});
    auto rl = test::random_store("rl", {{"w", dtype::bf16, {8}}}, 2);
    rl.add<std::int64_t>("position_ids", {3}, std::vector<std::int64_t>{0, 1, 2});
    const auto v = materialize(weights(rl) - weights(t)); // skips position_ids
    REQUIRE_FALSE(v.contains("position_ids"));
    const auto out = materialize(inject(weights(t), delta(v), 1.0f), eval_options{.allow_mixed_float_dtypes = true});
    CHECK(test::same_bits(out.at("position_ids"), t.at("position_ids")));
    CHECK(test::same_bits(out.at("w"), rl.at("w")));
    // A point operand without it is still a binding problem.
    const auto no_ids = test::random_store("x", {{"w", dtype::bf16, {8}}}, 3);
    CHECK_THROWS_WITH(materialize(weights(t) + (weights(rl) - weights(no_ids))), Contains("missing: 'position_ids'"));
    // And a vector operand without a float tensor too.
    memory_store partial;
    partial.add("other", dtype::f32, {8});
    CHECK_THROWS_WITH(materialize(inject(weights(t), delta(partial), 1.0f), eval_options{.allow_mixed_float_dtypes = true}),
                      Contains("missing: 'w'"));
}

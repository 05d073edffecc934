// Reductions against compensated double references: dot, norm, cosine and sparsity per tensor,
// per layer and globally; accuracy on 10^8 elements; determinism across thread counts.
#include "helpers.hpp"

#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>

using namespace skillvec;
using test::tensor_spec;

namespace {
std::vector<tensor_spec> layered(dtype t) {
    return {{"model.embed_tokens.weight", t, {50, 8}},
            {"model.layers.0.self_attn.q_proj.weight", t, {8, 8}},
            {"model.layers.0.mlp.up_proj.weight", t, {8, 33}},
            {"model.layers.1.self_attn.q_proj.weight", t, {8, 8}},
            {"model.layers.1.mlp.up_proj.weight", t, {8, 33}},
            {"model.layers.10.mlp.up_proj.weight", t, {40003}},
            {"lm_head.weight", t, {50, 8}}};
}

struct ref_stats {
    test::exact_sum dot, abs_dot, aa, bb;
    std::uint64_t small_a = 0, n = 0;
};

// The accuracy the scheme guarantees: each f32 SIMD lane adds 16 products (formed exactly by the
// FMA) before the sum moves to f64, so |dot error| <= 16 u sum|a_i b_i| (u = 2^-24), the squared
// norms are within 16 u relatively, and a cosine, which Cauchy-Schwarz bounds by 1, is within
// about 16 u = 1e-6 *absolutely*. (Relative to a tiny cosine of a small tensor that can be more
// than 1e-6; on 10^8 elements the errors average out, see the [large] test.)
constexpr double u = 5.9604644775390625e-08;
bool dot_ok(double got, const ref_stats& r) { return std::fabs(got - r.dot.value()) <= 16 * u * r.abs_dot.value() + 1e-300; }
bool cosine_ok(double got, const ref_stats& r) {
    const double want = r.dot.value() / std::sqrt(r.aa.value() * r.bb.value());
    return std::fabs(got - want) <= 1e-6;
}

double rel(double got, double want) { return std::fabs(got - want) / std::max(std::fabs(want), 1e-300); }
} // namespace

TEST_CASE("cosine, dot, norm and sparsity match a double reference per tensor, layer and globally", "[reduce]") {
    for (dtype dt : {dtype::f32, dtype::bf16, dtype::f16, dtype::f64}) {
        const auto base = test::random_store("base", layered(dt), 1, 0.02f);
        const auto sft = test::perturbed(base, "sft", 2, 0.01f);
        const auto rl = test::perturbed(sft, "rl", 3, 0.002f);
        const auto A = weights(sft) - weights(base);
        const auto B = weights(rl) - weights(sft);

        std::map<int, ref_stats> layers;
        ref_stats global;
        std::map<std::string, ref_stats> per;
        for (const auto& name : base.tensor_names()) {
            const auto vb = test::values(base, name), vs = test::values(sft, name), vr = test::values(rl, name);
            auto& r = per[name];
            for (std::size_t i = 0; i < vb.size(); ++i) {
                // Each side is computed in f32 by the library; the reference does the same rounding of the difference.
                const double a = static_cast<float>(static_cast<float>(vs[i]) - static_cast<float>(vb[i]));
                const double b = static_cast<float>(static_cast<float>(vr[i]) - static_cast<float>(vs[i]));
                for (ref_stats* s : {&r, &layers[layer_of(name)], &global}) {
                    s->dot.add(a * b);
                    s->abs_dot.add(std::fabs(a * b));
                    s->aa.add(a * a);
                    s->bb.add(b * b);
                    s->small_a += std::fabs(static_cast<float>(a)) <= 1e-3f;
                    ++s->n;
                }
            }
        }
        const auto cos = evaluate(cosine(A, B));
        const auto dt_ = evaluate(dot(A, B));
        const auto nr = evaluate(norm(A));
        const auto sp = evaluate(sparsity(A, 1e-3f));
        INFO("dtype " << name_of(dt));
        REQUIRE(cos.tensors.size() == base.size());
        for (const auto& te : cos.tensors) {
            const auto& r = per[te.name];
            INFO(te.name);
            CHECK(te.layer == layer_of(te.name));
            CHECK(dot_ok(te.stats.dot, r));
            CHECK(rel(te.stats.norm_a(), std::sqrt(r.aa.value())) < 1e-6);
            CHECK(rel(te.stats.norm_b(), std::sqrt(r.bb.value())) < 1e-6);
            CHECK(cosine_ok(te.stats.cosine(), r));
            CHECK(te.stats.numel == r.n);
            CHECK(dot_ok(dt_.tensor(te.name).stats.value(), r));
            CHECK(rel(nr.tensor(te.name).stats.value(), std::sqrt(r.aa.value())) < 1e-6);
            CHECK(sp.tensor(te.name).stats.small == r.small_a);
        }
        // Layers: 0, 1, 10 ascending, then the no-layer group (embeddings and head).
        REQUIRE(cos.layers.size() == 4);
        CHECK(cos.layers[0].layer == 0);
        CHECK(cos.layers[1].layer == 1);
        CHECK(cos.layers[2].layer == 10);
        CHECK(cos.layers[3].layer == no_layer);
        CHECK(cos.layers[3].tensors == 2);
        for (const auto& le : cos.layers) {
            const auto& r = layers[le.layer];
            CHECK(dot_ok(le.stats.dot, r));
            CHECK(cosine_ok(le.stats.cosine(), r));
            CHECK(le.stats.numel == r.n);
            CHECK(rel(sp.layer(le.layer).stats.value(), static_cast<double>(r.small_a) / static_cast<double>(r.n)) < 1e-12);
        }
        CHECK(dot_ok(cos.global.dot, global));
        CHECK(cosine_ok(cos.value(), global));
        CHECK(rel(nr.value(), std::sqrt(global.aa.value())) < 1e-6);
    }
}

TEST_CASE("hand-computed values", "[reduce]") {
    memory_store z, a, b;
    z.add("w", dtype::f32, {4});
    a.add("w", {4}, std::vector<float>{1, 2, 0, -2});
    b.add("w", {4}, std::vector<float>{2, -1, 0, 0});
    const auto va = weights(a) - weights(z), vb = weights(b) - weights(z);
    CHECK(evaluate(dot(va, vb)).value() == 0.0);                     // 2 - 2 + 0 + 0
    CHECK(evaluate(norm(va)).value() == 3.0);                        // sqrt(1 + 4 + 0 + 4)
    CHECK(evaluate(cosine(va, va)).value() == Approx(1.0).epsilon(1e-15));
    CHECK(evaluate(cosine(va, -va)).value() == Approx(-1.0).epsilon(1e-15));
    CHECK(evaluate(sparsity(va)).value() == 0.25);                   // one exact zero
    CHECK(evaluate(sparsity(va, 1.0f)).value() == 0.5);              // |x| <= 1: 1 and 0
    CHECK(evaluate(dot(va, 2.0f * vb + va)).value() == 9.0);         // 2*0 + 9
}

TEST_CASE("undefined and non-finite cases: zero vectors, empty tensors, NaN, skipped ints", "[reduce][edge]") {
    memory_store z, a;
    z.add("w", dtype::f32, {3});
    z.add("empty", dtype::f32, {0});
    z.add("ids", dtype::i64, {2});
    z.add("s", dtype::f32, {});
    a.add("w", {3}, std::vector<float>{1, std::numeric_limits<float>::quiet_NaN(), 0});
    a.add("empty", dtype::f32, {0});
    a.add("ids", dtype::i64, {2});
    a.add("s", {}, std::vector<float>{2.0f});
    const auto v = weights(a) - weights(z), zero = weights(z) - weights(z);
    const auto c = evaluate(cosine(zero, v));
    CHECK(std::isnan(c.tensor("empty").stats.cosine())); // 0/0: undefined, not "orthogonal"
    CHECK(std::isnan(c.tensor("s").stats.cosine()));
    CHECK(c.skipped == std::vector<std::string>{"ids"});
    CHECK(std::isnan(evaluate(norm(v)).tensor("w").stats.value())); // NaN propagates
    CHECK(evaluate(norm(v)).tensor("s").stats.value() == 2.0);      // rank 0 is one element
    const auto sp = evaluate(sparsity(v));
    CHECK(sp.tensor("w").stats.small == 1); // NaN is not small, 0 is
    CHECK(std::isnan(sp.tensor("empty").stats.value()));
    CHECK(sp.tensor("empty").stats.numel == 0);
}

TEST_CASE("reductions are bit-identical across thread counts, and SIMD agrees with the scalar fallback", "[reduce][determinism]") {
    const std::vector<tensor_spec> sp = {{"a", dtype::f32, {1000003}}, {"b", dtype::bf16, {333333}}, {"c", dtype::f16, {70001}}};
    const auto x = test::random_store("x", sp, 1), y = test::random_store("y", sp, 2), z = test::random_store("z", sp, 3);
    const auto r = cosine(weights(x) - weights(z), weights(y) - weights(z));
    const auto one = evaluate(r, cpu_backend{.threads = 1});
    for (unsigned th : {2u, 3u, 8u, 0u}) {
        const auto many = evaluate(r, cpu_backend{.threads = th});
        for (std::size_t i = 0; i < one.tensors.size(); ++i) {
            REQUIRE(many.tensors[i].stats.dot == one.tensors[i].stats.dot);
            REQUIRE(many.tensors[i].stats.sum_sq_a == one.tensors[i].stats.sum_sq_a);
            REQUIRE(many.tensors[i].stats.sum_sq_b == one.tensors[i].stats.sum_sq_b);
        }
    }
    const auto scalar = evaluate(r, cpu_backend{.simd = false});
    for (std::size_t i = 0; i < one.tensors.size(); ++i) {
        CHECK(rel(one.tensors[i].stats.dot, scalar.tensors[i].stats.dot) < 1e-7);
        CHECK(rel(one.tensors[i].stats.sum_sq_a, scalar.tensors[i].stats.sum_sq_a) < 1e-7);
        CHECK(rel(one.tensors[i].stats.cosine(), scalar.tensors[i].stats.cosine()) < 1e-7);
    }
}

TEST_CASE("cosine of 10^8 elements is within 1e-6 of an exact double reference", "[reduce][large]") {
    // 100M f32 elements per operand (400 MB each). Correlated deltas (cos ~ 0.3), nearly orthogonal
    // ones (cos ~ 1e-3, the PaST regime) and independent ones (cos ~ 1e-4, where cancellation is
    // worst) are checked. The measured errors are printed (docs/performance.md quotes them).
    constexpr std::uint64_t n = 100'000'000;
    memory_store a, b;
    auto va = a.add("model.layers.0.w", dtype::f32, {n}).as<float>();
    auto vb = b.add("model.layers.0.w", dtype::f32, {n}).as<float>();
    memory_store z;
    z.add("model.layers.0.w", dtype::f32, {n});
    std::mt19937 rng(2024);
    std::normal_distribution<float> nd(0.0f, 0.01f);
    for (double mix : {0.3, 1e-3, 0.0}) {
        for (std::uint64_t i = 0; i < n; ++i) {
            const float x = nd(rng), w = nd(rng);
            va[i] = x;
            vb[i] = static_cast<float>(mix * x + std::sqrt(1 - mix * mix) * w);
        }
        test::exact_sum d, aa, bb;
        for (std::uint64_t i = 0; i < n; ++i) {
            const double x = va[i], y = vb[i];
            d.add(x * y);
            aa.add(x * x);
            bb.add(y * y);
        }
        const double want = d.value() / std::sqrt(aa.value() * bb.value());
        const auto got = evaluate(cosine(weights(a) - weights(z), weights(b) - weights(z))).value();
        WARN("cosine of 1e8 elements, mix " << mix << ": exact " << want << ", relative error " << rel(got, want));
        CHECK(rel(got, want) <= 1e-6);
    }
}

TEST_CASE("compare() gives cosine, norms and sparsities of two deltas from one pass", "[reduce][compare]") {
    for (dtype dt : {dtype::f32, dtype::bf16, dtype::f16}) {
        const auto base = test::random_store("base", layered(dt), 1, 0.02f);
        const auto sft = test::perturbed(base, "sft", 2, 0.01f);
        const auto rl = test::perturbed(sft, "rl", 3, 0.002f);
        const auto A = weights(sft) - weights(base);
        const auto B = weights(rl) - weights(sft);
        const auto cmp = evaluate(compare(A, B, 1e-3f));
        const auto cos = evaluate(cosine(A, B));
        const auto spa = evaluate(sparsity(A, 1e-3f)), spb = evaluate(sparsity(B, 1e-3f));
        REQUIRE(cmp.tensors.size() == cos.tensors.size());
        for (std::size_t i = 0; i < cmp.tensors.size(); ++i) {
            const auto& c = cmp.tensors[i].stats;
            INFO(name_of(dt) << " " << cmp.tensors[i].name);
            // The same sums as the single-purpose reductions (which accumulate in their own order).
            CHECK(std::fabs(c.cosine() - cos.tensors[i].stats.cosine()) <= 1e-6);
            CHECK(rel(c.norm_a(), cos.tensors[i].stats.norm_a()) < 1e-6);
            CHECK(rel(c.norm_b(), cos.tensors[i].stats.norm_b()) < 1e-6);
            CHECK(c.small_a == spa.tensors[i].stats.small);
            CHECK(c.small_b == spb.tensors[i].stats.small);
            CHECK(c.sparsity_b() == spb.tensors[i].stats.value());
        }
        CHECK(std::fabs(cmp.value() - cos.value()) <= 1e-6);
        CHECK(cmp.layers.size() == cos.layers.size());
    }
}

TEST_CASE("a reduction's per-tensor callback: every tensor once, in order, with the bytes read; a throw stops it",
          "[reduce][progress]") {
    auto specs = layered(dtype::bf16);
    specs.push_back({"model.layers.0.position_ids", dtype::i64, {7}});
    const auto a0 = test::random_store("a0", specs, 1), a = test::perturbed(a0, "a", 2, 0.1f);
    const auto b = test::perturbed(a0, "b", 3, 0.1f);
    const auto job = prepare(cosine(weights(a) - weights(a0), weights(b) - weights(a0)));
    std::vector<std::string> seen;
    std::uint64_t bytes = 0;
    const auto res = job.run([&](const tensor_info& t, std::uint64_t read) {
        seen.push_back(t.name);
        bytes += read;
        if (t.type == dtype::i64) CHECK(read == 0);
        else CHECK(read == 4 * t.dims.numel() * 2); // four bf16 leaves: a0 is read once per difference
    });
    REQUIRE(seen.size() == job.tensor_count());
    for (std::size_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == job.tensor_name(i));
    std::uint64_t want = 0;
    for (const auto& s : specs)
        if (is_arithmetic(s.type)) want += 4 * s.dims.numel() * 2;
    CHECK(bytes == want);
    CHECK(res.value() == job.run().value());
    std::size_t calls = 0;
    CHECK_THROWS_WITH(job.run([&](const tensor_info&, std::uint64_t) {
        if (++calls == 2) throw error("stop");
    }), "stop");
    CHECK(calls == 2);
}

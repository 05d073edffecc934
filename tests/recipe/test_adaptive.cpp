// Adaptive lambda (recipe/adaptive.hpp): per-layer parameters, the coordinate search on a score
// with a known optimum, and the norm-ratio rule against norms computed by hand in double.
#include "../helpers.hpp"

#include <skillvec/recipe/adaptive.hpp>
#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

using namespace skillvec;
using test::tensor_spec;

namespace {
tensor_site site(std::string_view n, int layers) { return {n, layer_of(n), layers}; }
} // namespace

TEST_CASE("layer_lambdas: one value per layer, another outside the layers", "[recipe][adaptive]") {
    const parameter p = layer_lambdas({0.5f, 1.5f, 2.0f}, 0.25f);
    CHECK(p.at(site("layers.0.w", 3)) == 0.5f);
    CHECK(p.at(site("layers.1.attn.w", 3)) == 1.5f);
    CHECK(p.at(site("layers.2.w", 3)) == 2.0f);
    CHECK(p.at(site("embed.weight", 3)) == 0.25f);
    CHECK(p.at(site("layers.7.w", 3)) == 0.25f); // beyond the known layers: the default
}

TEST_CASE("search_layer_lambdas finds a separable optimum in one sweep, and stops when nothing moves", "[recipe][adaptive]") {
    const std::vector<float> best{0.5f, 2.0f, 0.0f, 1.0f};
    auto score = [&](const parameter& lam) {
        double s = 0;
        for (int l = 0; l < 4; ++l) {
            const std::string n = "layers." + std::to_string(l) + ".w";
            const double d = lam.at(site(n, 4)) - best[static_cast<std::size_t>(l)];
            s -= d * d;
        }
        const double o = lam.at(site("lm_head.weight", 4)) - 1.5;
        return s - o * o;
    };
    layer_search_options opt;
    opt.sweeps = 3;
    const auto r = search_layer_lambdas(4, score, opt);
    CHECK(r.layers == best);
    CHECK(r.other == 1.5f);
    CHECK(r.score == 0.0);
    // Sweep 1 moves, sweep 2 confirms and stops: 1 + 2 sweeps * 5 coordinates * 4 other candidates.
    CHECK(r.evaluations == 1 + 2 * 5 * 4);
    CHECK_THROWS(search_layer_lambdas(2, score, layer_search_options{.candidates = {}}));
}

TEST_CASE("search_layer_lambdas on real weights: recovers the per-layer lambda that made a model", "[recipe][adaptive]") {
    const std::vector<tensor_spec> specs{{"layers.0.w", dtype::f32, {300}}, {"layers.1.w", dtype::f32, {300}}, {"head.w", dtype::f32, {10}}};
    const auto t = test::random_store("t", specs, 1), rl = test::random_store("rl", specs, 2), sft = test::random_store("sft", specs, 3);
    const parameter truth = layer_lambdas({1.5f, 0.5f}, 1.0f);
    const auto goal = materialize(past(weights(t), weights(rl), weights(sft), truth));
    memory_store work = materialize(weights(t));
    auto score = [&](const parameter& lam) {
        evaluate(past(weights(t), weights(rl), weights(sft), lam), into(work));
        return -evaluate(norm(weights(work) - weights(goal))).value();
    };
    const auto r = search_layer_lambdas(2, score);
    CHECK(r.layers == std::vector<float>{1.5f, 0.5f});
    CHECK(r.other == 1.0f);
    CHECK(r.score == 0.0);
}

TEST_CASE("norm_ratio_lambdas: |sft_T - theta0| / |sft_S - theta0| per layer, clamped (hand-computed norms)", "[recipe][adaptive]") {
    const std::vector<tensor_spec> specs{{"layers.0.w", dtype::f32, {1000}},
                                         {"layers.1.w", dtype::f32, {500}},
                                         {"layers.1.b", dtype::f32, {7}},
                                         {"layers.2.w", dtype::f32, {100}},
                                         {"lm_head.weight", dtype::f32, {50}}};
    const auto theta0 = test::random_store("theta0", specs, 4);
    const auto s = test::perturbed(theta0, "sft_S", 5, 0.01f);
    const auto tg = test::perturbed(theta0, "sft_T", 6, 0.02f);
    const auto r = norm_ratio_lambdas(theta0, s, tg, norm_ratio_options{.max = 10.0f});
    auto norm_of = [&](const memory_store& a, std::initializer_list<const char*> names) {
        double q = 0;
        for (const char* n : names) {
            const auto x = a.to_f32(n), y = theta0.to_f32(n);
            for (std::size_t i = 0; i < x.size(); ++i) {
                const double d = static_cast<double>(x[i] - y[i]); // the f32 difference, as evaluation computes it
                q += d * d;
            }
        }
        return std::sqrt(q);
    };
    REQUIRE(r.layers.size() == 3);
    const double l0 = norm_of(tg, {"layers.0.w"}) / norm_of(s, {"layers.0.w"});
    const double l1 = norm_of(tg, {"layers.1.w", "layers.1.b"}) / norm_of(s, {"layers.1.w", "layers.1.b"});
    CHECK(r.layers[0] == Approx(l0).epsilon(1e-6));
    CHECK(r.layers[1] == Approx(l1).epsilon(1e-6));
    CHECK(r.layers[0] == Approx(2.0).epsilon(0.1)); // twice the noise: about twice the norm
    CHECK(r.other == Approx(norm_of(tg, {"lm_head.weight"}) / norm_of(s, {"lm_head.weight"})).epsilon(1e-6));
    // Clamped to [min, max].
    const auto c = norm_ratio_lambdas(theta0, s, tg, norm_ratio_options{.max = 1.5f});
    CHECK(c.layers[0] == 1.5f);
    // The lambda parameter gives those values per tensor.
    CHECK(r.lambda().at(site("layers.1.b", 3)) == r.layers[1]);
    // A layer the source's SFT left unchanged: max if the target's moved it.
    memory_store s2 = materialize(weights(s));
    auto w2 = s2.find_mutable("layers.2.w").value();
    std::memcpy(w2.bytes.data(), theta0.at("layers.2.w").bytes.data(), w2.bytes.size());
    CHECK(norm_ratio_lambdas(theta0, s2, tg, norm_ratio_options{.max = 3.0f}).layers[2] == 3.0f);
}

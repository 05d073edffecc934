// AdamW against an independent double-precision reference written from the paper's / PyTorch's
// documented formulas, group semantics, validation, and global-norm clipping.
#include <skillvec/nn/adamw.hpp>
#include <skillvec/nn/rng.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace nn = skillvec::nn;

namespace {

// Reference AdamW in double, in the textbook form (m_hat, v_hat), written independently of the
// header's PyTorch term order.
struct reference_adamw {
    struct group {
        std::size_t offset, count;
        double wd, lr_scale;
    };
    std::vector<group> groups;
    double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    std::vector<double> m, v;
    int t = 0;

    void step(std::vector<double>& p, const std::vector<double>& g, double lr) {
        if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
        ++t;
        for (const group& gr : groups) {
            const double a = lr * gr.lr_scale;
            for (std::size_t i = gr.offset; i < gr.offset + gr.count; ++i) {
                p[i] = p[i] - a * gr.wd * p[i];
                m[i] = b1 * m[i] + (1 - b1) * g[i];
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
                const double m_hat = m[i] / (1 - std::pow(b1, t));
                const double v_hat = v[i] / (1 - std::pow(b2, t));
                p[i] = p[i] - a * m_hat / (std::sqrt(v_hat) + eps);
            }
        }
    }
};

template <class T> std::vector<T> cast(const std::vector<double>& x) { return std::vector<T>(x.begin(), x.end()); }

} // namespace

TEMPLATE_TEST_CASE("adamw matches a double reference over several steps, per group", "[adamw]", float, double) {
    // 10 parameters: [0,4) decays, [4,8) runs at half the learning rate without decay, [8,10)
    // belongs to no group and must not move.
    const std::vector<nn::param_group> groups{{0, 4, 0.1, 1.0}, {4, 4, 0.0, 0.5}};
    nn::adamw_options opt;
    opt.beta1 = 0.8;
    opt.beta2 = 0.95;
    opt.eps = 1e-6;
    nn::adamw<TestType> adam(10, groups, opt);

    reference_adamw ref;
    ref.groups = {{0, 4, 0.1, 1.0}, {4, 4, 0.0, 0.5}};
    ref.b1 = 0.8, ref.b2 = 0.95, ref.eps = 1e-6;

    nn::rng r(42);
    std::vector<double> p_ref(10);
    for (auto& x : p_ref) x = r.normal();
    std::vector<TestType> p = cast<TestType>(p_ref);
    p_ref = std::vector<double>(p.begin(), p.end()); // both start from the same (T-rounded) values
    const std::vector<double> p0 = p_ref;

    const double tol = std::is_same_v<TestType, float> ? 2e-5 : 1e-12;
    const double lrs[] = {1e-2, 3e-2, 2e-2, 5e-3, 1e-2};
    for (int s = 0; s < 5; ++s) {
        std::vector<double> g_ref(10);
        for (auto& x : g_ref) x = r.normal() * (s + 1);
        const std::vector<TestType> g = cast<TestType>(g_ref);
        g_ref = std::vector<double>(g.begin(), g.end());
        adam.step(p, g, lrs[s]);
        ref.step(p_ref, g_ref, lrs[s]);
        for (std::size_t i = 0; i < 10; ++i) REQUIRE(static_cast<double>(p[i]) == Approx(p_ref[i]).margin(tol).epsilon(tol));
    }
    CHECK(adam.step_count() == 5);
    for (std::size_t i = 8; i < 10; ++i) {
        CHECK(static_cast<double>(p[i]) == p0[i]); // uncovered: untouched, bit for bit
        CHECK(adam.first_moment()[i] == 0);
        CHECK(adam.second_moment()[i] == 0);
    }
}

TEST_CASE("adamw step 1: bias correction makes the update lr * sign(g), decay is decoupled", "[adamw]") {
    // At t = 1, m_hat = g and v_hat = g^2, so the Adam step is lr * g / (|g| + eps) ~ lr * sign(g)
    // whatever g's magnitude.
    nn::adamw<double> adam(4, {{0, 2, 0.0, 1.0}, {2, 2, 0.5, 1.0}});
    std::vector<double> p{1.0, 1.0, 1.0, -2.0};
    const std::vector<double> g{0.5, -1e-3, 100.0, -3.0};
    adam.step(p, g, 0.1);
    CHECK(p[0] == Approx(1.0 - 0.1 * 0.5 / (0.5 + 1e-8)).epsilon(1e-15));
    CHECK(p[0] == Approx(0.9).epsilon(1e-7));
    CHECK(p[1] == Approx(1.1).epsilon(1e-5)); // |g| = 1e-3: eps shows at 1e-5 relative
    // decay first: p *= 1 - lr * wd = 0.95, then the sign step
    CHECK(p[2] == Approx(0.95 - 0.1 * 100.0 / (100.0 + 1e-8)).epsilon(1e-14));
    CHECK(p[3] == Approx(-2.0 * 0.95 + 0.1 * 3.0 / (3.0 + 1e-8)).epsilon(1e-14));
    CHECK(p[3] == Approx(-1.8).epsilon(1e-9));
}

TEST_CASE("adamw lr_scale and a zero gradient", "[adamw]") {
    nn::adamw<float> adam(3, {{0, 1, 0.0, 1.0}, {1, 1, 0.0, 0.25}, {2, 1, 0.0, 0.0}});
    std::vector<float> p{0.0f, 0.0f, 0.0f};
    adam.step(p, std::vector<float>{1.0f, 1.0f, 1.0f}, 0.04);
    CHECK(p[0] == Approx(-0.04f));
    CHECK(p[1] == Approx(-0.01f));
    CHECK(p[2] == 0.0f); // lr_scale 0 freezes the group (its moments still accumulate)
    CHECK(adam.first_moment()[2] != 0.0f);

    // A zero gradient on a fresh optimizer: m = v = 0 and the step is 0 / eps = 0.
    nn::adamw<float> fresh(2);
    std::vector<float> q{1.0f, 2.0f};
    fresh.step(q, std::vector<float>{0.0f, 0.0f}, 1.0);
    CHECK(q == std::vector<float>{1.0f, 2.0f});
}

TEST_CASE("adamw reset gives a fresh optimizer; load_state resumes exactly", "[adamw]") {
    const std::vector<nn::param_group> groups{{0, 6, 0.01, 1.0}};
    nn::rng r(7);
    std::vector<double> start(6), g1(6), g2(6);
    for (auto* v : {&start, &g1, &g2})
        for (auto& x : *v) x = r.normal();

    nn::adamw<double> used(6, groups);
    std::vector<double> scratch = start;
    used.step(scratch, g1, 0.1);
    used.step(scratch, g2, 0.1);
    used.reset();
    CHECK(used.step_count() == 0);
    for (double x : used.first_moment()) CHECK(x == 0.0);
    for (double x : used.second_moment()) CHECK(x == 0.0);

    nn::adamw<double> fresh(6, groups);
    std::vector<double> a = start, b = start;
    used.step(a, g2, 0.1);
    fresh.step(b, g2, 0.1);
    CHECK(a == b);

    // Save after one step, restore into another optimizer, take the same second step.
    nn::adamw<double> restored(6, groups);
    restored.load_state(fresh.step_count(), fresh.first_moment(), fresh.second_moment());
    std::vector<double> c = b;
    fresh.step(b, g1, 0.05);
    restored.step(c, g1, 0.05);
    CHECK(b == c);
    CHECK(restored.step_count() == 2);
    CHECK_THROWS_AS(restored.load_state(1, std::vector<double>(5), std::vector<double>(6)), skillvec::error);
}

TEST_CASE("adamw rejects bad groups, options and buffer sizes", "[adamw]") {
    using Catch::Matchers::Contains;
    CHECK_THROWS_WITH((nn::adamw<float>(10, {{0, 5}, {4, 3}})), Contains("groups 0 [0, 5) and 1 [4, 7) overlap"));
    CHECK_THROWS_WITH((nn::adamw<float>(10, {{6, 4}, {0, 2}, {1, 1}})), Contains("groups 1 [0, 2) and 2 [1, 2) overlap"));
    CHECK_THROWS_WITH((nn::adamw<float>(10, {{0, 5}, {8, 3}})), Contains("group 1") && Contains("inside the parameter buffer of 10"));
    CHECK_THROWS_AS((nn::adamw<float>(10, {{11, 0}})), skillvec::error);
    CHECK_THROWS_AS((nn::adamw<float>(10, {{std::numeric_limits<std::size_t>::max(), 2}})), skillvec::error);
    CHECK_THROWS_WITH((nn::adamw<float>(10, {{0, 5, -0.1}})), Contains("weight_decay"));
    CHECK_THROWS_WITH((nn::adamw<float>(10, {{0, 5, 0.0, std::nan("")}})), Contains("lr_scale"));
    CHECK_THROWS_WITH((nn::adamw<float>(10, 0.0, nn::adamw_options{1.0, 0.999, 1e-8})), Contains("beta1"));
    CHECK_THROWS_WITH((nn::adamw<float>(10, 0.0, nn::adamw_options{0.9, -0.1, 1e-8})), Contains("beta2"));
    CHECK_THROWS_WITH((nn::adamw<float>(10, 0.0, nn::adamw_options{0.9, 0.999, -1.0})), Contains("eps"));

    // Adjacent groups, empty groups and gaps are fine.
    CHECK_NOTHROW(nn::adamw<float>(10, {{0, 5}, {5, 5}, {3, 0}, {10, 0}}));
    CHECK_NOTHROW(nn::adamw<float>(10, {{2, 3}}));
    CHECK_NOTHROW(nn::adamw<float>(0, std::vector<nn::param_group>{}));

    nn::adamw<float> adam(4);
    std::vector<float> p(4), g(3);
    CHECK_THROWS_WITH(adam.step(p, g, 0.1), Contains("built for 4 parameters"));
    std::vector<float> g4(4);
    CHECK_THROWS_WITH(adam.step(p, g4, std::nan("")), Contains("learning rate"));
    CHECK(adam.step_count() == 0); // a rejected step is not counted
}

TEST_CASE("clip_grad_norm on hand values", "[adamw]") {
    SECTION("3-4-5 is clipped to max_norm") {
        std::vector<float> g{3.0f, 4.0f};
        CHECK(nn::clip_grad_norm(std::span<float>(g), 1.0) == 5.0);
        CHECK(g[0] == Approx(3.0 / (5.0 + 1e-6)));
        CHECK(g[1] == Approx(4.0 / (5.0 + 1e-6)));
        CHECK(nn::l2_norm(std::span<const float>(g)) == Approx(1.0).epsilon(1e-6));
    }
    SECTION("double, three elements, spread over a span") {
        std::vector<double> g{1.0, -2.0, 2.0}; // norm 3
        CHECK(nn::clip_grad_norm(std::span<double>(g), 1.5) == 3.0);
        CHECK(g[1] == Approx(-2.0 * 1.5 / (3.0 + 1e-6)).epsilon(1e-15));
    }
    SECTION("no clipping: under, at, max_norm <= 0, infinite") {
        for (double max_norm : {10.0, 5.0, 0.0, -1.0, std::numeric_limits<double>::infinity()}) {
            std::vector<double> g{3.0, 4.0};
            CHECK(nn::clip_grad_norm(std::span<double>(g), max_norm) == 5.0);
            CHECK(g == std::vector<double>{3.0, 4.0});
        }
    }
    SECTION("a non-finite norm is returned and nothing is scaled") {
        std::vector<float> g{3.0f, std::numeric_limits<float>::quiet_NaN()};
        CHECK(std::isnan(nn::clip_grad_norm(std::span<float>(g), 1.0)));
        CHECK(g[0] == 3.0f);
        std::vector<double> h{3.0, -std::numeric_limits<double>::infinity()};
        CHECK(std::isinf(nn::clip_grad_norm(std::span<double>(h), 1.0)));
        CHECK(h[0] == 3.0);
    }
    SECTION("no spurious overflow") {
        std::vector<float> f{1.5e38f, 2e38f}; // squares overflow float, not double
        CHECK(nn::clip_grad_norm(std::span<float>(f), 1.0) == Approx(2.5e38));
        CHECK(f[0] == Approx(0.6f));
        std::vector<double> d{3e300, 4e300}; // squares overflow double: rescaled
        CHECK(nn::l2_norm(std::span<const double>(d)) == Approx(5e300));
    }
    SECTION("empty") {
        std::vector<float> g;
        CHECK(nn::clip_grad_norm(std::span<float>(g), 1.0) == 0.0);
    }
}

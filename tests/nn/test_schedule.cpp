// lr_schedule against hand-computed values and its edge cases.
#include <skillvec/nn/schedule.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>

namespace nn = skillvec::nn;
using kind = nn::lr_schedule::decay_kind;

TEST_CASE("lr_schedule: warmup then cosine", "[schedule]") {
    const nn::lr_schedule s{1e-3, 1e-4, 4, 12, kind::cosine};
    CHECK(s(0) == Approx(2.5e-4)); // peak / warmup: never 0 at the first step
    CHECK(s(1) == Approx(5.0e-4));
    CHECK(s(2) == Approx(7.5e-4));
    CHECK(s(3) == 1e-3); // warmup ends on the peak exactly
    CHECK(s(4) == 1e-3); // decay starts from it (x = 0)
    CHECK(s(6) == Approx(1e-4 + 9e-4 * 0.5 * (1.0 + std::sqrt(0.5)))); // x = 1/4
    CHECK(s(6) == Approx(8.6819805e-4));
    CHECK(s(8) == Approx(5.5e-4)); // x = 1/2: halfway between peak and min
    CHECK(s(11) == Approx(1e-4 + 9e-4 * 0.5 * (1.0 + std::cos(std::numbers::pi * 7.0 / 8.0))));
    CHECK(s(11) > 1e-4);
    CHECK(s(12) == 1e-4);  // reaches min_lr at total_steps
    CHECK(s(1000) == 1e-4); // and stays there
    for (std::size_t i = 4; i < 12; ++i) CHECK(s(i + 1) < s(i));
}

TEST_CASE("lr_schedule: linear and constant decay", "[schedule]") {
    const nn::lr_schedule lin{2.0, 0.0, 2, 10, kind::linear};
    CHECK(lin(0) == 1.0);
    CHECK(lin(1) == 2.0);
    CHECK(lin(2) == 2.0);
    CHECK(lin(4) == Approx(1.5)); // x = 2/8
    CHECK(lin(6) == Approx(1.0));
    CHECK(lin(9) == Approx(0.25));
    CHECK(lin(10) == 0.0);
    CHECK(lin(11) == 0.0);

    const nn::lr_schedule flat{3e-4, 0.0, 3, 0, kind::constant}; // total_steps is not needed
    CHECK(flat(0) == Approx(1e-4));
    CHECK(flat(2) == 3e-4);
    CHECK(flat(3) == 3e-4);
    CHECK(flat(1000000) == 3e-4);
}

TEST_CASE("lr_schedule edge cases", "[schedule]") {
    SECTION("no warmup: step 0 is the peak") {
        const nn::lr_schedule s{1e-3, 0.0, 0, 4, kind::cosine};
        CHECK(s(0) == 1e-3);
        CHECK(s(2) == Approx(5e-4));
        CHECK(s(4) == 0.0);
        const nn::lr_schedule l{1e-3, 0.0, 0, 4, kind::linear};
        CHECK(l(1) == Approx(7.5e-4));
    }
    SECTION("total <= warmup: warmup, then min_lr at once (constant: the peak)") {
        const nn::lr_schedule s{1.0, 0.1, 5, 3, kind::cosine};
        CHECK(s(0) == Approx(0.2));
        CHECK(s(3) == Approx(0.8)); // still warming up, though past total_steps
        CHECK(s(4) == 1.0);
        CHECK(s(5) == 0.1);
        CHECK(s(50) == 0.1);
        const nn::lr_schedule eq{1.0, 0.1, 5, 5, kind::linear};
        CHECK(eq(4) == 1.0);
        CHECK(eq(5) == 0.1);
        const nn::lr_schedule c{1.0, 0.1, 5, 3, kind::constant};
        CHECK(c(5) == 1.0);
    }
    SECTION("one-step decay") {
        const nn::lr_schedule s{1.0, 0.5, 1, 2, kind::cosine};
        CHECK(s(0) == 1.0);
        CHECK(s(1) == 1.0);
        CHECK(s(2) == 0.5);
    }
    SECTION("invalid configurations throw") {
        using Catch::Matchers::Contains;
        nn::lr_schedule s; // default: cosine, total_steps = 0
        CHECK_THROWS_WITH(s(0), Contains("total_steps is 0"));
        CHECK_THROWS_AS(s.validate(), skillvec::error);
        s.decay = kind::constant;
        CHECK(s(0) == 1e-3);
        CHECK_THROWS_WITH((nn::lr_schedule{1e-3, 2e-3, 0, 10}(0)), Contains("min_lr"));
        CHECK_THROWS_WITH((nn::lr_schedule{-1.0, 0.0, 0, 10}(0)), Contains("peak"));
        CHECK_THROWS_AS((nn::lr_schedule{std::nan(""), 0.0, 0, 10}(0)), skillvec::error);
    }
}

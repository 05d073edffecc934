// The formula of merge_method: expression: parsing, type rules, the affine form's coefficients,
// and the invariant that they sum to 1 (a point) or 0 (a vector) for any parameter values.
#include <skillvec/recipe/formula.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <string>

namespace sr = skillvec::recipe;
using skillvec::parameter;
using skillvec::tensor_site;

namespace {

const std::set<std::string> models{"a", "b", "c", "target", "rl", "sft"};
const std::set<std::string> params{"lambda", "t", "mu"};

sr::affine_form parse(const std::string& text) { return sr::parse_formula(text, models, params); }

/// The coefficient of `model` (0 if the form has no such term).
double coef(const sr::affine_form& f, const std::string& model, const tensor_site& s,
            const std::map<std::string, parameter>& values) {
    for (std::size_t i = 0; i < f.terms.size(); ++i)
        if (f.terms[i].model == model) return f.coefficient(i, s, values);
    return 0;
}

double sum(const sr::affine_form& f, const tensor_site& s, const std::map<std::string, parameter>& values) {
    double total = 0;
    for (std::size_t i = 0; i < f.terms.size(); ++i) total += f.coefficient(i, s, values);
    return total;
}

std::string error_of(const std::string& text) {
    try {
        (void)parse(text);
    } catch (const sr::formula_error& e) {
        return std::to_string(e.offset()) + ": " + e.what();
    }
    return "(no error)";
}

const tensor_site layer0{"model.layers.0.mlp.w", 0, 5};
const tensor_site layer2{"model.layers.2.mlp.w", 2, 5};
const tensor_site head{"lm_head.weight", -1, 5};

} // namespace

TEST_CASE("formula: PaST", "[formula]") {
    auto f = parse("target + lambda * (rl - sft)");
    CHECK(f.is_point);
    CHECK(f.point_operand == "target");
    CHECK(f.parameters == std::vector<std::string>{"lambda"});
    REQUIRE(f.terms.size() == 3);
    CHECK(f.terms[0].model == "target");
    CHECK(f.terms[1].model == "rl");
    CHECK(f.terms[2].model == "sft");
    std::map<std::string, parameter> v{{"lambda", parameter::gradient({0.0f, 2.0f})}};
    CHECK(coef(f, "target", layer2, v) == 1.0);
    CHECK(coef(f, "rl", layer2, v) == 1.0);   // lambda = 1 at the middle layer
    CHECK(coef(f, "sft", layer2, v) == -1.0);
    CHECK(coef(f, "rl", head, v) == 2.0);
    CHECK(coef(f, "sft", layer0, v) == 0.0);
    CHECK(f.describe() == "point: 1 * target + lambda * rl + (-lambda) * sft");
}

TEST_CASE("formula: lerp with a constant t", "[formula]") {
    auto f = parse("lerp(a, b, 0.25)");
    CHECK(f.is_point);
    CHECK(f.point_operand == "a");
    CHECK(f.parameters.empty());
    CHECK(f.terms[0].coefficient.is_constant());
    CHECK(f.terms[0].coefficient.constant() == 0.75);
    CHECK(f.terms[1].coefficient.constant() == 0.25);
}

TEST_CASE("formula: a + 0.5*(b - a) - 0.5*(c - a)/2", "[formula]") {
    auto f = parse("a + 0.5*(b - a) - 0.5*(c - a)/2");
    CHECK(f.is_point);
    REQUIRE(f.terms.size() == 3);
    CHECK(f.terms[0].coefficient.constant() == 0.75); // 1 - 0.5 + 0.25
    CHECK(f.terms[1].coefficient.constant() == 0.5);
    CHECK(f.terms[2].coefficient.constant() == -0.25);
}

TEST_CASE("formula: nested parentheses, unary minus, scalar arithmetic", "[formula]") {
    std::map<std::string, parameter> v{{"lambda", parameter(0.5f)}, {"t", parameter::gradient({0.0f, 1.0f})},
                                       {"mu", parameter(2.0f)}};
    auto f = parse("-((a - b)) * -(lambda) + ((c))");
    CHECK(f.is_point);
    CHECK(f.point_operand == "c");
    CHECK(coef(f, "a", layer0, v) == 0.5);
    CHECK(coef(f, "b", layer0, v) == -0.5);
    CHECK(coef(f, "c", layer0, v) == 1.0);

    auto g = parse("(a - b) / (mu - 1 / lambda + 1) - -(c - b)"); // vector / (2 - 2 + 1) + (c - b)
    CHECK(!g.is_point);
    CHECK(g.point_operand.empty());
    CHECK(coef(g, "a", layer0, v) == 1.0);
    CHECK(coef(g, "b", layer0, v) == -2.0);
    CHECK(coef(g, "c", layer0, v) == 1.0);

    auto h = parse("lerp(a, b, t) + lerp(b - c, a - c, 1 - t) * mu"); // lerp(vectors) scaled
    CHECK(h.is_point);
    CHECK(h.point_operand == "a");
    // t = 0.5 at layer 2 of 5: 0.5a + 0.5b + 2 * (0.5(b - c) + 0.5(a - c))
    CHECK(coef(h, "a", layer2, v) == Approx(1.5));
    CHECK(coef(h, "b", layer2, v) == Approx(1.5));
    CHECK(coef(h, "c", layer2, v) == Approx(-2.0));
    CHECK(sum(h, layer0, v) == Approx(1.0));

    auto k = parse("a - (b - c) * 1e-1");
    CHECK(coef(k, "b", layer0, v) == Approx(-0.1));
    CHECK(parse(".5 * (a - b) + a").terms[0].coefficient.constant() == 1.5);
}

TEST_CASE("formula: the point operand follows the C++ algebra", "[formula]") {
    CHECK(parse("(b - c) + a").point_operand == "a");
    CHECK(parse("a - (b - c)").point_operand == "a");
    CHECK(parse("lerp(c, a, t)").point_operand == "c");
}

TEST_CASE("formula: errors and their offsets", "[formula]") {
    CHECK(error_of("a + b") == "2: point + point is undefined: subtract them for a vector or use lerp");
    CHECK(error_of("2 * a") == "2: scaling a point is undefined: scale a vector such as (a - b)");
    CHECK(error_of("a * lambda") == "2: scaling a point is undefined: scale a vector such as (a - b)");
    CHECK(error_of("-a") == "0: negating a point is undefined: negate a vector such as (a - b)");
    CHECK(error_of("(a - b) - c") == "8: vector - point is undefined: write point - vector");
    CHECK(error_of("lerp(a, b - c, t)") == "0: lerp needs two points or two vectors");
    CHECK(error_of("lerp(a, b, (c - a))") == "11: lerp's t must be a number");
    CHECK(error_of("lerp(a, b, t, t)") == "12: lerp takes 3 arguments (a, b, t), not more");
    CHECK(error_of("lerp()") == "5: lerp takes 3 arguments (a, b, t), not 0");
    CHECK(error_of("lerp + a") == "0: lerp is a function: lerp(a, b, t)");
    CHECK(error_of("x") ==
          "0: unknown name 'x': not a model under models: (a, b, c, rl, sft, target) or a parameter under parameters: (lambda, mu, t)");
    CHECK(error_of("lambda * 2") == "0: the expression is a number, not a model");
    CHECK(error_of("a / (b - c)") == "2: dividing by a model is undefined: divide by a number");
    CHECK(error_of("lambda / a") == "7: dividing by a model is undefined: divide by a number");
    CHECK(error_of("(a - b) / (1 - 1)") == "8: division by zero");
    CHECK(error_of("a + 1") == "2: point + number is undefined: a number can only scale a vector");
    CHECK(error_of("a * (b - c)") == "2: point * vector is undefined: models can only be scaled by numbers");
    CHECK(error_of("") == "0: the expression is empty");
    CHECK(error_of("   ") == "0: the expression is empty");
    CHECK(error_of("a +") == "3: expected a model, a parameter or a number at the end");
    CHECK(error_of("a + )") == "4: expected a model, a parameter or a number before ')'");
    CHECK(error_of("a + * b") == "4: expected a model, a parameter or a number before '*'");
    CHECK(error_of("(a - b))") == "7: unmatched ')'");
    CHECK(error_of("lerp(a, b, t") == "0: lerp( is never closed");
    CHECK(error_of("lerp(a b, t)") == "7: expected ',' before 'b'");
    CHECK(error_of("a @ b") == "2: expected an operator (+ - * /) before '@'");
    CHECK(error_of("@a") == "0: unexpected character '@'");
    CHECK(error_of("1.2.3 * (a - b) + a") == "0: malformed number '1.2.'");
    CHECK(error_of("2x * (a - b) + a") == "0: malformed number '2x'");
    CHECK(error_of("1e999 * (a - b) + a") == "0: number '1e999' is out of range");
    CHECK(error_of(std::string(300, '(') + "a" + std::string(300, ')')).find("nested too deeply") != std::string::npos);
}

// Random well-typed formulas: a point's coefficients sum to 1, a vector's to 0, at every site.
namespace {
struct generator {
    std::mt19937 rng;
    int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }

    // Each helper draws its operands in named statements: the operands of an overloaded `+` are
    // unsequenced, and g++ and clang draw them in opposite orders, so inline calls would give each
    // compiler different formulas.
    std::string join(std::string a, const char* op, std::string b) { return "(" + a + op + b + ")"; }
    std::string lerp(std::string a, std::string b, std::string t) {
        return "lerp(" + a + ", " + b + ", " + t + ")";
    }

    std::string scalar(int depth) {
        static const char* leaves[] = {"lambda", "t", "mu", "0.5", "2", "3.25"};
        if (depth <= 0 || pick(3) == 0) return leaves[pick(6)];
        const int kind = pick(4);
        if (kind == 3) return "-" + scalar(depth - 1);
        std::string a = scalar(depth - 1);
        std::string b = scalar(depth - 1);
        if (kind == 2) return a + " * " + b;
        return join(a, kind == 0 ? " + " : " - ", b);
    }
    std::string point(int depth) {
        static const char* leaves[] = {"a", "b", "c", "target", "rl", "sft"};
        if (depth <= 0 || pick(3) == 0) return leaves[pick(6)];
        const int kind = pick(4);
        std::string p = point(depth - 1);
        if (kind == 3) {
            std::string q = point(depth - 1);
            return lerp(p, q, scalar(depth - 1));
        }
        std::string x = vector(depth - 1);
        if (kind == 0) return join(p, " + ", x);
        if (kind == 1) return join(x, " + ", p);
        return join(p, " - ", x);
    }
    std::string vector(int depth) {
        if (depth <= 0) {
            std::string p = point(0);
            return join(p, " - ", point(0));
        }
        const int kind = pick(7);
        if (kind == 0) {
            std::string p = point(depth - 1);
            return join(p, " - ", point(depth - 1));
        }
        if (kind == 3) {
            std::string s = scalar(depth - 1);
            return join(s, " * ", vector(depth - 1));
        }
        // The divisor s*s + 7 is at least 7: a random formula never divides by zero.
        if (kind == 4) {
            std::string x = vector(depth - 1);
            std::string s = scalar(depth - 1);
            return join(x, " / ", "((" + s + ") * (" + s + ") + 7)");
        }
        std::string x = vector(depth - 1);
        if (kind == 5) return "(-" + x + ")";
        std::string y = vector(depth - 1);
        if (kind == 1) return join(x, " + ", y);
        if (kind == 2) return join(x, " - ", y);
        return lerp(x, y, scalar(depth - 1));
    }
};
} // namespace

TEST_CASE("formula: coefficients sum to 1 for a point and 0 for a vector (random formulas)", "[formula]") {
    generator gen{std::mt19937(12345)};
    std::map<std::string, parameter> v{{"lambda", parameter::gradient({-1.0f, 0.5f, 2.0f})},
                                       {"t", parameter::gradient({0.0f, 1.0f})},
                                       {"mu", parameter::rules({{skillvec::tensor_filter{"mlp", {}}, 0.25f},
                                                                {skillvec::tensor_filter{}, 1.5f}})}};
    const tensor_site sites[] = {layer0, layer2, head, {"model.layers.3.self_attn.q.weight", 3, 5}};
    int points = 0, vectors = 0;
    for (int i = 0; i < 400; ++i) {
        const bool want_point = i % 2 == 0;
        const std::string text = want_point ? gen.point(4) : gen.vector(4);
        CAPTURE(text);
        auto f = parse(text);
        REQUIRE(f.is_point == want_point);
        (f.is_point ? points : vectors)++;
        for (const auto& s : sites) {
            double scale = 1; // the coefficients' magnitude, for a relative tolerance
            for (std::size_t k = 0; k < f.terms.size(); ++k) scale += std::abs(f.coefficient(k, s, v));
            CHECK(std::abs(sum(f, s, v) - (want_point ? 1.0 : 0.0)) <= 1e-12 * scale);
        }
        if (want_point) CHECK(models.count(f.point_operand) == 1);
    }
    CHECK(points == 200);
    CHECK(vectors == 200);
}

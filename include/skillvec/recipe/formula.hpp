#pragma once
/// \file
/// The formula of `merge_method: expression`: text such as `target + lambda * (rl - sft)` parsed
/// and type-checked with skillvec's affine algebra, then reduced to an *affine form*: one
/// coefficient per model, each a function of the (per-tensor) parameters.
///
///   target + lambda * (rl - sft)   ->  point: target * 1 + rl * lambda + sft * (-lambda)
///   lerp(a, b, t)                  ->  point: a * (1 - t) + b * t
///
/// Grammar: `+ - * /`, unary minus, parentheses, numbers (`0.5`, `.5`, `1e-3`), names
/// (`[A-Za-z_][A-Za-z0-9_]*`) and `lerp(a, b, t)`. A name is a model (a point) or a parameter (a
/// number). The type rules are those of the C++ algebra (expr/ops.hpp): point - point is a vector,
/// point ± vector a point, vectors add and scale by numbers, lerp takes two points or two vectors;
/// numbers combine freely. The errors read like the C++ ones ("point + point is undefined: ...").
///
/// The coefficients of a point result sum to 1 and those of a vector result to 0 for every value
/// of the parameters: the type rules guarantee it, which is what makes the result independent of
/// where the origin of weight space is.

#include <skillvec/core/error.hpp>
#include <skillvec/expr/parameter.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace skillvec::recipe {

/// A malformed or ill-typed formula. `offset` is the byte offset of the offending operator or
/// operand in the formula text; the recipe loader turns it into a file position.
class formula_error : public error {
public:
    formula_error(std::size_t offset, const std::string& message) : error(message), offset_(offset) {}
    [[nodiscard]] std::size_t offset() const noexcept { return offset_; }

private:
    std::size_t offset_;
};

/// A number computed from constants and named parameters with + - * / and negation.
/// Immutable and cheap to copy. Constants are folded as it is built, so `1 - 0.5` is `0.5`.
class scalar_form {
public:
    /// A constant.
    scalar_form(double value = 0) : node_(std::make_shared<const node>(node{op::constant, value, {}, {}, {}})) {} // NOLINT
    /// The parameter called `name`.
    [[nodiscard]] static scalar_form named(std::string name) {
        return scalar_form(std::make_shared<const node>(node{op::name, 0, std::move(name), {}, {}}));
    }

    [[nodiscard]] bool is_constant() const noexcept { return node_->kind == op::constant; }
    /// The constant (only if is_constant()).
    [[nodiscard]] double constant() const noexcept { return node_->value; }

    /// The value, with `lookup(name)` giving each parameter's value.
    [[nodiscard]] double eval(const std::function<double(const std::string&)>& lookup) const { return eval(*node_, lookup); }

    /// Every parameter name it uses, added to `out`.
    void names(std::set<std::string>& out) const { names(*node_, out); }

    /// "1 - t", "lambda * 0.5", "-lambda": parenthesized where precedence needs it.
    [[nodiscard]] std::string describe() const { return describe(*node_, 0); }
    /// As describe(), parenthesized as needed to be an operand of `*` ("(1 - t)", "(-0.5)").
    [[nodiscard]] std::string describe_factor() const { return describe(*node_, 2); }

    friend scalar_form operator+(const scalar_form& a, const scalar_form& b) {
        if (a.is_constant() && b.is_constant()) return a.constant() + b.constant();
        if (a.is_zero()) return b;
        if (b.is_zero()) return a;
        return make(op::add, a, b);
    }
    friend scalar_form operator-(const scalar_form& a, const scalar_form& b) {
        if (a.is_constant() && b.is_constant()) return a.constant() - b.constant();
        if (b.is_zero()) return a;
        if (a.is_zero()) return -b;
        return make(op::sub, a, b);
    }
    friend scalar_form operator*(const scalar_form& a, const scalar_form& b) {
        if (a.is_constant() && b.is_constant()) return a.constant() * b.constant();
        if (a.is_zero() || b.is_zero()) return 0.0;
        if (a.is_constant() && a.constant() == 1) return b;
        if (b.is_constant() && b.constant() == 1) return a;
        if (a.is_constant() && a.constant() == -1) return -b;
        if (b.is_constant() && b.constant() == -1) return -a;
        return make(op::mul, a, b);
    }
    friend scalar_form operator/(const scalar_form& a, const scalar_form& b) {
        if (a.is_constant() && b.is_constant()) return a.constant() / b.constant();
        if (b.is_constant() && b.constant() == 1) return a;
        return make(op::div, a, b);
    }
    friend scalar_form operator-(const scalar_form& a) {
        if (a.is_constant()) return -a.constant();
        if (a.node_->kind == op::neg) return scalar_form(a.node_->lhs);
        return scalar_form(std::make_shared<const node>(node{op::neg, 0, {}, a.node_, {}}));
    }

private:
    enum class op { constant, name, add, sub, mul, div, neg };
    struct node {
        op kind;
        double value;
        std::string name;
        std::shared_ptr<const node> lhs, rhs;
    };
    std::shared_ptr<const node> node_;

    explicit scalar_form(std::shared_ptr<const node> n) : node_(std::move(n)) {}
    [[nodiscard]] bool is_zero() const noexcept { return is_constant() && constant() == 0; }
    static scalar_form make(op k, const scalar_form& a, const scalar_form& b) {
        return scalar_form(std::make_shared<const node>(node{k, 0, {}, a.node_, b.node_}));
    }
    static double eval(const node& n, const std::function<double(const std::string&)>& lookup) {
        switch (n.kind) {
        case op::constant: return n.value;
        case op::name: return lookup(n.name);
        case op::add: return eval(*n.lhs, lookup) + eval(*n.rhs, lookup);
        case op::sub: return eval(*n.lhs, lookup) - eval(*n.rhs, lookup);
        case op::mul: return eval(*n.lhs, lookup) * eval(*n.rhs, lookup);
        case op::div: return eval(*n.lhs, lookup) / eval(*n.rhs, lookup);
        case op::neg: return -eval(*n.lhs, lookup);
        }
        return 0;
    }
    static void names(const node& n, std::set<std::string>& out) {
        if (n.kind == op::name) out.insert(n.name);
        if (n.lhs) names(*n.lhs, out);
        if (n.rhs) names(*n.rhs, out);
    }
    // prec: 0 anywhere, 1 right of '-' (a sum needs parentheses), 2 an operand of * and / or of
    // negation (a sum or a negative number needs them), 3 right of '/' (a product needs them too).
    static std::string describe(const node& n, int prec) {
        auto wrap = [](bool yes, const std::string& s) { return yes ? "(" + s + ")" : s; };
        switch (n.kind) {
        case op::constant: return wrap(n.value < 0 && prec > 0, detail::format_scalar(static_cast<float>(n.value)));
        case op::name: return n.name;
        case op::add: return wrap(prec > 0, describe(*n.lhs, 0) + " + " + describe(*n.rhs, 0));
        case op::sub: return wrap(prec > 0, describe(*n.lhs, 0) + " - " + describe(*n.rhs, 1));
        case op::mul: return wrap(prec > 2, describe(*n.lhs, 2) + " * " + describe(*n.rhs, 2));
        case op::div: return wrap(prec > 2, describe(*n.lhs, 2) + " / " + describe(*n.rhs, 3));
        case op::neg: return wrap(prec > 0, "-" + describe(*n.lhs, 2));
        }
        return "?";
    }
};

/// A formula reduced to one coefficient per model: sum_i c_i * model_i, where the c_i sum to 1
/// (a point: a model) or to 0 (a vector: a delta).
struct affine_form {
    struct term {
        std::string model;       ///< a model name, as the formula spells it
        scalar_form coefficient; ///< a function of the parameters
    };

    bool is_point = true;
    std::vector<term> terms;              ///< one per model the formula names, in order of first appearance
    std::string point_operand;            ///< a point's point operand as in the C++ algebra (p of p + v, a of lerp(a, b, t)); "" for a vector
    std::vector<std::string> parameters;  ///< the parameter names the formula uses, sorted

    /// Term `i`'s coefficient for one tensor, each parameter taking its value there.
    /// Throws `error` for a parameter missing from `values`.
    [[nodiscard]] double coefficient(std::size_t i, const tensor_site& site, const std::map<std::string, parameter>& values) const {
        return terms.at(i).coefficient.eval([&](const std::string& name) -> double {
            auto it = values.find(name);
            if (it == values.end()) throw error("expression parameter '" + name + "' has no value");
            return it->second.at(site);
        });
    }

    /// "point: 1 * target + lambda * rl + (-lambda) * sft".
    [[nodiscard]] std::string describe() const {
        std::string out = is_point ? "point:" : "vector:";
        for (std::size_t i = 0; i < terms.size(); ++i)
            out += (i ? " + " : " ") + terms[i].coefficient.describe_factor() + " * " + terms[i].model;
        return out;
    }
};

namespace formula_detail {

struct ast {
    enum class op { number, name, neg, add, sub, mul, div, lerp } kind;
    std::size_t offset; // of the operator (binary, unary), the name, the number, or 'lerp'
    double value = 0;
    std::string name;
    std::vector<ast> args;
    std::size_t start = offset; // where its text begins (an operand's column in errors)
};

/// Recursive descent: expr := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*;
/// unary := '-' unary | primary; primary := number | name | lerp '(' expr ',' expr ',' expr ')' | '(' expr ')'.
class parser {
public:
    explicit parser(std::string_view text) : s_(text) {}

    ast parse() {
        skip();
        if (i_ == s_.size()) throw formula_error(0, "the expression is empty");
        ast e = expr();
        skip();
        if (i_ < s_.size()) {
            if (s_[i_] == ')') throw formula_error(i_, "unmatched ')'");
            throw formula_error(i_, "expected an operator (+ - * /) before '" + token_text() + "'");
        }
        return e;
    }

private:
    std::string_view s_;
    std::size_t i_ = 0;
    int depth_ = 0;

    void skip() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    static bool ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
    static bool ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9'); }
    static bool digit(char c) { return c >= '0' && c <= '9'; }
    std::string token_text() const {
        if (i_ >= s_.size()) return "";
        std::size_t j = i_ + 1;
        if (ident_char(s_[i_]) || s_[i_] == '.')
            while (j < s_.size() && (ident_char(s_[j]) || s_[j] == '.')) ++j;
        return std::string(s_.substr(i_, j - i_));
    }

    ast expr() {
        if (++depth_ > 200) throw formula_error(i_, "the expression is nested too deeply");
        ast lhs = term();
        for (;;) {
            skip();
            if (i_ >= s_.size() || (s_[i_] != '+' && s_[i_] != '-')) break;
            const std::size_t at = i_;
            const auto k = s_[i_++] == '+' ? ast::op::add : ast::op::sub;
            ast rhs = term();
            const std::size_t start = lhs.start;
            lhs = ast{k, at, 0, {}, {std::move(lhs), std::move(rhs)}, start};
        }
        --depth_;
        return lhs;
    }
    ast term() {
        ast lhs = unary();
        for (;;) {
            skip();
            if (i_ >= s_.size() || (s_[i_] != '*' && s_[i_] != '/')) break;
            const std::size_t at = i_;
            const auto k = s_[i_++] == '*' ? ast::op::mul : ast::op::div;
            ast rhs = unary();
            const std::size_t start = lhs.start;
            lhs = ast{k, at, 0, {}, {std::move(lhs), std::move(rhs)}, start};
        }
        return lhs;
    }
    ast unary() {
        skip();
        if (i_ < s_.size() && s_[i_] == '-') {
            if (++depth_ > 200) throw formula_error(i_, "the expression is nested too deeply");
            const std::size_t at = i_++;
            ast operand = unary();
            --depth_;
            return ast{ast::op::neg, at, 0, {}, {std::move(operand)}};
        }
        return primary();
    }
    ast primary() {
        skip();
        if (i_ >= s_.size()) throw formula_error(s_.size(), "expected a model, a parameter or a number at the end");
        const char c = s_[i_];
        const std::size_t at = i_;
        if (c == '(') {
            ++i_;
            ast e = expr();
            expect(')', at, "'(' is never closed");
            e.start = at;
            return e;
        }
        if (digit(c) || (c == '.' && i_ + 1 < s_.size() && digit(s_[i_ + 1]))) return number();
        if (ident_start(c)) {
            while (i_ < s_.size() && ident_char(s_[i_])) ++i_;
            std::string name(s_.substr(at, i_ - at));
            std::size_t j = i_;
            while (j < s_.size() && (s_[j] == ' ' || s_[j] == '\t')) ++j;
            const bool call = j < s_.size() && s_[j] == '(';
            if (name == "lerp") {
                if (!call) throw formula_error(at, "lerp is a function: lerp(a, b, t)");
                i_ = j + 1;
                ast node{ast::op::lerp, at, 0, {}, {}};
                for (int k = 0; k < 3; ++k) {
                    skip();
                    if (i_ < s_.size() && s_[i_] == ')')
                        throw formula_error(i_, "lerp takes 3 arguments (a, b, t), not " + std::to_string(k));
                    node.args.push_back(expr());
                    skip();
                    if (k < 2) {
                        if (i_ < s_.size() && s_[i_] == ')')
                            throw formula_error(i_, "lerp takes 3 arguments (a, b, t), not " + std::to_string(k + 1));
                        expect(',', at, "lerp( is never closed");
                    }
                }
                skip();
                if (i_ < s_.size() && s_[i_] == ',') throw formula_error(i_, "lerp takes 3 arguments (a, b, t), not more");
                expect(')', at, "lerp( is never closed");
                return node;
            }
            if (call) throw formula_error(at, "unknown function '" + name + "': the only function is lerp(a, b, t)");
            return ast{ast::op::name, at, 0, std::move(name), {}};
        }
        if (c == ')') throw formula_error(at, "expected a model, a parameter or a number before ')'");
        if (c == '+' || c == '*' || c == '/' || c == ',')
            throw formula_error(at, std::string("expected a model, a parameter or a number before '") + c + "'");
        throw formula_error(at, std::string("unexpected character '") + c + "'");
    }
    ast number() {
        const std::size_t at = i_;
        std::size_t j = i_;
        while (j < s_.size() && digit(s_[j])) ++j;
        if (j < s_.size() && s_[j] == '.') {
            ++j;
            while (j < s_.size() && digit(s_[j])) ++j;
        }
        if (j < s_.size() && (s_[j] == 'e' || s_[j] == 'E')) {
            std::size_t k = j + 1;
            if (k < s_.size() && (s_[k] == '+' || s_[k] == '-')) ++k;
            if (k < s_.size() && digit(s_[k])) {
                j = k;
                while (j < s_.size() && digit(s_[j])) ++j;
            }
        }
        if (j < s_.size() && (ident_char(s_[j]) || s_[j] == '.'))
            throw formula_error(at, "malformed number '" + std::string(s_.substr(at, j + 1 - at)) + "'");
        double v = 0;
        const std::string text(s_.substr(at, j - at));
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v) ||
            !std::isfinite(static_cast<float>(v)))
            throw formula_error(at, "number '" + text + "' is out of range");
        i_ = j;
        return ast{ast::op::number, at, v, {}, {}};
    }
    void expect(char c, std::size_t open, const char* unclosed) {
        skip();
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return;
        }
        if (i_ >= s_.size()) throw formula_error(open, unclosed);
        throw formula_error(i_, std::string("expected '") + c + "' before '" + token_text() + "'");
    }
};

enum class kind { number, point, vector };
inline const char* kind_name(kind k) { return k == kind::number ? "number" : k == kind::point ? "point" : "vector"; }

struct typed {
    kind k = kind::number;
    scalar_form value;                            // kind::number
    std::vector<std::pair<std::string, scalar_form>> terms; // point / vector, in order of first appearance
    std::string point_operand;                    // kind::point
};

using combination = std::vector<std::pair<std::string, scalar_form>>;

inline combination combine(const combination& a, const scalar_form& ca, const combination& b, const scalar_form& cb) {
    combination out;
    for (const auto& [m, c] : a) out.emplace_back(m, ca * c);
    for (const auto& term : b) { // not a structured binding: clang 14 cannot capture one in the lambda
        auto it = std::find_if(out.begin(), out.end(), [&](const auto& t) { return t.first == term.first; });
        if (it == out.end())
            out.emplace_back(term.first, cb * term.second);
        else
            it->second = it->second + cb * term.second;
    }
    return out;
}
inline combination scale(const combination& a, const scalar_form& s) { return combine(a, s, {}, 0.0); }

struct checker {
    const std::set<std::string>& models;
    const std::set<std::string>& params;
    std::set<std::string> used_params;

    typed check(const ast& e) {
        switch (e.kind) {
        case ast::op::number: return typed{kind::number, e.value, {}, {}};
        case ast::op::name: {
            if (models.count(e.name)) return typed{kind::point, 0.0, {{e.name, 1.0}}, e.name};
            if (params.count(e.name)) {
                used_params.insert(e.name);
                return typed{kind::number, scalar_form::named(e.name), {}, {}};
            }
            throw formula_error(e.offset, "unknown name '" + e.name + "': not a model under models: (" + list(models) +
                                              ") or a parameter under parameters: (" + list(params) + ")");
        }
        case ast::op::neg: {
            typed a = check(e.args[0]);
            if (a.k == kind::point) throw formula_error(e.offset, "negating a point is undefined: negate a vector such as (a - b)");
            if (a.k == kind::number) return typed{kind::number, -a.value, {}, {}};
            return typed{kind::vector, 0.0, scale(a.terms, -1.0), {}};
        }
        case ast::op::add:
        case ast::op::sub: {
            typed a = check(e.args[0]), b = check(e.args[1]);
            const bool add = e.kind == ast::op::add;
            const std::string sym = add ? " + " : " - ";
            if (a.k == kind::number && b.k == kind::number)
                return typed{kind::number, add ? a.value + b.value : a.value - b.value, {}, {}};
            if (a.k == kind::number || b.k == kind::number)
                throw formula_error(e.offset, std::string(kind_name(a.k)) + sym + kind_name(b.k) +
                                                  " is undefined: a number can only scale a vector");
            if (add && a.k == kind::point && b.k == kind::point)
                throw formula_error(e.offset, "point + point is undefined: subtract them for a vector or use lerp");
            if (!add && a.k == kind::vector && b.k == kind::point)
                throw formula_error(e.offset, "vector - point is undefined: write point - vector");
            const kind k = (a.k == kind::point) != (b.k == kind::point) ? kind::point : kind::vector;
            typed r{k, 0.0, combine(a.terms, 1.0, b.terms, add ? 1.0 : -1.0), {}};
            if (k == kind::point) r.point_operand = a.k == kind::point ? a.point_operand : b.point_operand;
            return r;
        }
        case ast::op::mul: {
            typed a = check(e.args[0]), b = check(e.args[1]);
            if (a.k == kind::number && b.k == kind::number) return typed{kind::number, a.value * b.value, {}, {}};
            if (a.k == kind::point || b.k == kind::point) {
                if (a.k == kind::number || b.k == kind::number)
                    throw formula_error(e.offset, "scaling a point is undefined: scale a vector such as (a - b)");
                throw formula_error(e.offset, std::string(kind_name(a.k)) + " * " + kind_name(b.k) +
                                                  " is undefined: models can only be scaled by numbers");
            }
            if (a.k == kind::vector && b.k == kind::vector)
                throw formula_error(e.offset, "vector * vector is undefined: models can only be scaled by numbers");
            return a.k == kind::vector ? typed{kind::vector, 0.0, scale(a.terms, b.value), {}}
                                       : typed{kind::vector, 0.0, scale(b.terms, a.value), {}};
        }
        case ast::op::div: {
            typed a = check(e.args[0]), b = check(e.args[1]);
            if (b.k != kind::number) throw formula_error(e.offset, "dividing by a model is undefined: divide by a number");
            if (b.value.is_constant() && b.value.constant() == 0) throw formula_error(e.offset, "division by zero");
            if (a.k == kind::number) return typed{kind::number, a.value / b.value, {}, {}};
            if (a.k == kind::point) throw formula_error(e.offset, "scaling a point is undefined: scale a vector such as (a - b)");
            return typed{kind::vector, 0.0, scale(a.terms, 1.0 / b.value), {}};
        }
        case ast::op::lerp: {
            typed a = check(e.args[0]), b = check(e.args[1]), t = check(e.args[2]);
            if (a.k != b.k) throw formula_error(e.offset, "lerp needs two points or two vectors");
            if (t.k != kind::number) throw formula_error(e.args[2].start, "lerp's t must be a number");
            if (a.k == kind::number) return typed{kind::number, (1.0 - t.value) * a.value + t.value * b.value, {}, {}};
            typed r{a.k, 0.0, combine(a.terms, 1.0 - t.value, b.terms, t.value), {}};
            if (a.k == kind::point) r.point_operand = a.point_operand;
            return r;
        }
        }
        return {};
    }

    static std::string list(const std::set<std::string>& names) {
        std::string out;
        for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
        return out.empty() ? "none" : out;
    }
};

} // namespace formula_detail

/// Parses and type-checks `text`: every name must be in `models` (points) or `parameters`
/// (numbers), and the result must be a point or a vector. Throws `formula_error` with the offset
/// of the offending operator or operand. Names in neither set, and a result that is a number,
/// are errors; unused models or parameters are not (the recipe loader reports those).
[[nodiscard]] inline affine_form parse_formula(std::string_view text, const std::set<std::string>& models,
                                               const std::set<std::string>& parameters) {
    formula_detail::ast tree = formula_detail::parser(text).parse();
    formula_detail::checker check{models, parameters, {}};
    formula_detail::typed r = check.check(tree);
    if (r.k == formula_detail::kind::number) throw formula_error(0, "the expression is a number, not a model");
    affine_form out;
    out.is_point = r.k == formula_detail::kind::point;
    for (auto& [m, c] : r.terms) out.terms.push_back({m, c});
    out.point_operand = r.point_operand;
    out.parameters.assign(check.used_params.begin(), check.used_params.end());
    return out;
}

} // namespace skillvec::recipe

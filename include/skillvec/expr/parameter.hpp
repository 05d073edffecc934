#pragma once
/// \file
/// Per-tensor parameters: a method parameter (lambda, a model's weight, a density, SLERP's t) that
/// may take a different value for each tensor, the way mergekit's recipe parameters do.
///
///   parameter lam = 0.5f;                                   // the same everywhere
///   parameter t   = parameter::gradient({0.0f, 0.5f, 1.0f}); // over layer position, interpolated
///   parameter w   = parameter::rules({{tensor_filter{"mlp"}, 0.5f},          // first match wins
///                                     {tensor_filter{"", {{0, 3}}}, 0.8f},   // layers 0..3
///                                     {tensor_filter{}, 1.0f}});             // the default
///
/// A value is looked up with `at(site)`, where a `tensor_site` says the tensor's name, its layer
/// and how many layers the model has.
///
/// Conventions (mergekit's, so recipes carry over):
///  - Layer position: layer l of L is at t = l / (L - 1) (0 for a one-layer model). Tensors outside
///    the layers sit at an end: embeddings (a name containing "embed", "wte" or "wpe") at t = 0,
///    everything else (final norm, lm_head) at t = 1.
///  - A gradient [v0, ..., vm] is linear between its points: t * m falls between i and i + 1.
///  - A filter pattern matches as a substring of the name (mergekit's rule); a pattern containing
///    `*` or `?` is instead a glob over the whole name; an empty pattern or "*" matches every
///    tensor. A filter may also require the tensor's layer to lie in an inclusive range.

#include <skillvec/analysis/layers.hpp>
#include <skillvec/core/error.hpp>
#include <skillvec/expr/space.hpp>

#include <charconv>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace skillvec {

namespace detail {
/// Shortest decimal that reads back as the same float ("0.5", "1", "-1.5e-05").
inline std::string format_scalar(float x) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, x);
    return std::string(buf, r.ptr);
}
} // namespace detail

/// Where a tensor sits: what per-tensor parameters and filters look at.
struct tensor_site {
    std::string_view name;
    int layer = no_layer;  ///< layer_of(name)
    int num_layers = 0;    ///< layers in the model (largest layer index + 1), 0 if none
};

/// The tensor's position in [0, 1] along the stack of layers (see the file comment).
[[nodiscard]] inline double layer_position(const tensor_site& s) {
    if (s.layer >= 0) return s.num_layers > 1 ? static_cast<double>(s.layer) / (s.num_layers - 1) : 0.0;
    for (std::string_view input : {"embed", "wte", "wpe"})
        if (s.name.find(input) != std::string_view::npos) return 0.0;
    return 1.0;
}

namespace detail {
/// Glob match of the whole string: `*` any run, `?` any one character.
inline bool glob_match(std::string_view pat, std::string_view s) noexcept {
    std::size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
    while (i < s.size()) {
        if (p < pat.size() && (pat[p] == '?' || pat[p] == s[i])) {
            ++p;
            ++i;
        } else if (p < pat.size() && pat[p] == '*') {
            star = p++;
            mark = i;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            i = ++mark;
        } else {
            return false;
        }
    }
    while (p < pat.size() && pat[p] == '*') ++p;
    return p == pat.size();
}
} // namespace detail

/// Which tensors something applies to: a name pattern and, optionally, a range of layers.
struct tensor_filter {
    std::string pattern;                          ///< substring, or a glob if it has * or ?; "" or "*": any
    std::optional<std::pair<int, int>> layers = std::nullopt; ///< inclusive [first, last]; tensors outside layers never match

    [[nodiscard]] bool matches(const tensor_site& s) const {
        if (layers && (s.layer < layers->first || s.layer > layers->second)) return false;
        if (pattern.empty() || pattern == "*") return true;
        if (pattern.find_first_of("*?") != std::string::npos) return detail::glob_match(pattern, s.name);
        return s.name.find(pattern) != std::string_view::npos;
    }
    [[nodiscard]] bool matches_all() const noexcept { return (pattern.empty() || pattern == "*") && !layers; }
    [[nodiscard]] std::string describe() const {
        std::string out = pattern.empty() ? "*" : pattern;
        if (layers) out += " @layers " + std::to_string(layers->first) + ".." + std::to_string(layers->second);
        return out;
    }
};

/// A float that may differ per tensor: a constant, a gradient over layer position, or filter rules.
/// Copying is cheap (the rules are shared and immutable).
class parameter {
public:
    struct rule;

    /// A constant. Implicit from float only: `parameter p = 0.5f;` (a double does not convert,
    /// like every scalar in skillvec's algebra).
    parameter(float value = 0.0f); // NOLINT(google-explicit-constructor)
    template <class D>
        requires non_float_scalar<D>
    parameter(D) = delete;

    /// Values at evenly spaced layer positions, linearly interpolated (mergekit's gradients).
    [[nodiscard]] static parameter gradient(std::vector<float> points);

    /// The value of the first rule whose filter matches; a tensor no rule matches is an error when
    /// its value is asked for (end with an unfiltered rule to give a default).
    [[nodiscard]] static parameter rules(std::vector<rule> rs);

    /// The value for one tensor. Throws `error` if no rule matches it.
    [[nodiscard]] float at(const tensor_site& s) const;

    /// Whether the value is the same for every tensor (a plain constant).
    [[nodiscard]] bool is_constant() const noexcept { return std::holds_alternative<float>(node_->value); }
    /// The constant (only if is_constant()).
    [[nodiscard]] float constant() const { return std::get<float>(node_->value); }

    /// "0.5", "gradient(0, 0.5, 1)", "rules(mlp: 0.5, *: 1)".
    [[nodiscard]] std::string describe() const;

private:
    struct node {
        std::variant<float, std::vector<float>, std::vector<rule>> value;
    };
    std::shared_ptr<const node> node_;
};

struct parameter::rule {
    tensor_filter filter;
    parameter value;
};

// Defined here, where `rule` is complete: clang instantiates the node's variant in them.
inline parameter::parameter(float value) : node_(std::make_shared<const node>(node{value})) {}

inline parameter parameter::gradient(std::vector<float> points) {
    if (points.empty()) throw error("parameter::gradient: no points");
    if (points.size() == 1) return parameter(points[0]);
    parameter p;
    p.node_ = std::make_shared<const node>(node{std::move(points)});
    return p;
}

inline parameter parameter::rules(std::vector<rule> rs) {
    if (rs.empty()) throw error("parameter::rules: no rules");
    if (rs.size() == 1 && rs[0].filter.matches_all()) return rs[0].value;
    parameter p;
    p.node_ = std::make_shared<const node>(node{std::move(rs)});
    return p;
}

inline float parameter::at(const tensor_site& s) const {
    const auto& v = node_->value;
    if (const float* c = std::get_if<float>(&v)) return *c;
    if (const auto* g = std::get_if<std::vector<float>>(&v)) {
        const double scaled = layer_position(s) * static_cast<double>(g->size() - 1);
        const std::size_t i0 = std::min(static_cast<std::size_t>(scaled), g->size() - 1);
        const std::size_t i1 = std::min(g->size() - 1, i0 + 1);
        const double frac = scaled - static_cast<double>(i0);
        return static_cast<float>((1.0 - frac) * (*g)[i0] + frac * (*g)[i1]);
    }
    for (const auto& r : std::get<std::vector<rule>>(v))
        if (r.filter.matches(s)) return r.value.at(s);
    throw error("parameter " + describe() + " has no value for tensor '" + std::string(s.name) +
                "': no rule matches it (end the rules with one without a filter to give a default)");
}

inline std::string parameter::describe() const {
    const auto& v = node_->value;
    if (const float* c = std::get_if<float>(&v)) return detail::format_scalar(*c);
    std::string out;
    if (const auto* g = std::get_if<std::vector<float>>(&v)) {
        out = "gradient(";
        for (std::size_t i = 0; i < g->size(); ++i) out += (i ? ", " : "") + detail::format_scalar((*g)[i]);
        return out + ")";
    }
    out = "rules(";
    const auto& rs = std::get<std::vector<rule>>(v);
    for (std::size_t i = 0; i < rs.size(); ++i) out += (i ? ", " : "") + rs[i].filter.describe() + ": " + rs[i].value.describe();
    return out + ")";
}

} // namespace skillvec

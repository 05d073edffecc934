#pragma once
/// \file
/// The merge methods a recipe may name, with their inputs and parameters: one table, read by the
/// recipe validator (recipe/yaml.hpp) to check a file and by the runner to find defaults.
///
///   const method_def* m = find_method("ties");
///   for (const parameter_def& p : m->parameters) ...   // weight, density, lambda, normalize, consensus
///
/// `number` parameters are per tensor (a `parameter`: constant, gradient or rules); booleans,
/// words and integers are global constants. A `per_model` parameter may also be given once under
/// the top-level `parameters:`, which then applies to every model that does not set its own
/// (mergekit's rule).

#include <cstddef>
#include <limits>
#include <span>
#include <string_view>

namespace skillvec::recipe {

/// What a parameter's value is.
enum class parameter_kind {
    number,  ///< a float per tensor: a constant, a gradient over layers, or filter rules
    boolean, ///< true / false
    word,    ///< one of `parameter_def::words`
    integer, ///< a whole number >= 0 (a seed)
};

/// Where a parameter is given.
enum class parameter_scope {
    global,    ///< under the top-level `parameters:` only
    per_model, ///< under a model's `parameters:`, or globally for every model
};

/// One parameter of a method.
struct parameter_def {
    std::string_view name;
    parameter_kind kind = parameter_kind::number;
    parameter_scope scope = parameter_scope::global;
    bool required = false;
    double default_value = 0;                      ///< number / integer default; boolean: 0 or 1 (unused if required)
    std::string_view default_word{};               ///< word default
    std::span<const std::string_view> words{};     ///< the allowed words (kind::word)
    double min = -std::numeric_limits<double>::infinity(); ///< inclusive bounds on every value (numbers)
    double max = std::numeric_limits<double>::infinity();
    std::string_view doc{};

    [[nodiscard]] constexpr bool bounded() const noexcept {
        return min != -std::numeric_limits<double>::infinity() || max != std::numeric_limits<double>::infinity();
    }
};

/// How a method names its input models.
enum class method_inputs {
    past_roles,       ///< top-level target:, rl:, sft:
    orthogonal_roles, ///< target:, rl:, sft: and base: (or base_model:) the model the target was fine-tuned from
    base_and_models,  ///< base_model: and a models: list
    models_only,      ///< a models: list; no base_model
    base_and_one,     ///< base_model: and exactly one other model (slerp)
    named_models,     ///< models: a mapping name -> path, combined by expression:
};

/// One merge method.
struct method_def {
    std::string_view name;
    method_inputs inputs = method_inputs::base_and_models;
    std::size_t min_models = 0; ///< models: entries (besides base_model); 0 for role-based methods
    std::size_t max_models = 0; ///< inclusive; `unlimited` for no bound
    std::span<const parameter_def> parameters{};
    std::string_view doc{};

    static constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();

    /// The parameter called `name`, or nullptr.
    [[nodiscard]] constexpr const parameter_def* find_parameter(std::string_view n) const noexcept {
        for (const parameter_def& p : parameters)
            if (p.name == n) return &p;
        return nullptr;
    }
    /// The top-level role keys this method reads (target, rl, sft[, base]); empty for others.
    [[nodiscard]] constexpr std::span<const std::string_view> roles() const noexcept;
    /// Whether the method has a `base_model:` (required where it has one).
    [[nodiscard]] constexpr bool takes_base_model() const noexcept {
        return inputs == method_inputs::base_and_models || inputs == method_inputs::base_and_one;
    }
    /// Whether the method has a `models:` key (a list, or for expression a mapping).
    [[nodiscard]] constexpr bool takes_models() const noexcept {
        return inputs != method_inputs::past_roles && inputs != method_inputs::orthogonal_roles;
    }
};

namespace catalog_detail {

inline constexpr std::string_view consensus_words[] = {"sum", "count"};
inline constexpr std::string_view past_role_names[] = {"target", "rl", "sft"};
inline constexpr std::string_view orthogonal_role_names[] = {"target", "rl", "sft", "base"};

using K = parameter_kind;
using S = parameter_scope;

// Shared rows. Designated initializers keep each row readable (C++20).
inline constexpr parameter_def lambda{.name = "lambda", .default_value = 1,
                                      .doc = "scale of the merged delta added to the base"};
inline constexpr parameter_def weight_1{.name = "weight", .scope = S::per_model, .default_value = 1,
                                        .doc = "the model's weight"};
inline constexpr parameter_def weight_req{.name = "weight", .scope = S::per_model, .required = true,
                                          .doc = "the model's weight"};
inline constexpr parameter_def density_1{.name = "density", .scope = S::per_model, .default_value = 1, .min = 0,
                                         .max = 1, .doc = "fraction of the delta's entries kept (by magnitude)"};
inline constexpr parameter_def density_req{.name = "density", .scope = S::per_model, .required = true, .min = 0,
                                           .max = 1, .doc = "fraction of the delta's entries kept"};
inline constexpr parameter_def gamma{.name = "gamma", .scope = S::per_model, .default_value = 0.01, .min = 0, .max = 1,
                                     .doc = "fraction of the largest-magnitude entries dropped as outliers"};
inline constexpr parameter_def normalize_true{.name = "normalize", .kind = K::boolean, .default_value = 1,
                                              .doc = "divide by the sum of the weights"};
inline constexpr parameter_def normalize_false{.name = "normalize", .kind = K::boolean, .default_value = 0,
                                               .doc = "divide by the sum of the weights"};
inline constexpr parameter_def consensus{.name = "consensus", .kind = K::word, .default_word = "sum",
                                         .words = consensus_words,
                                         .doc = "sign election: by summed mass (sum) or by vote (count)"};
inline constexpr parameter_def rescale{.name = "rescale", .kind = K::boolean, .default_value = 1,
                                       .doc = "divide the kept entries by the density"};
inline constexpr parameter_def seed{.name = "seed", .kind = K::integer, .default_value = 0,
                                    .doc = "seed of the random drop (reproducible)"};
inline constexpr parameter_def slerp_t{.name = "t", .required = true,
                                       .doc = "interpolation position: 0 is base_model, 1 the other model"};

inline constexpr parameter_def past_params[] = {lambda};
inline constexpr parameter_def task_arithmetic_params[] = {weight_1, lambda, normalize_false};
inline constexpr parameter_def linear_params[] = {weight_req, normalize_true};
inline constexpr parameter_def ties_params[] = {weight_1, density_1, lambda, normalize_true, consensus};
inline constexpr parameter_def dare_linear_params[] = {weight_1, density_req, lambda, normalize_false, rescale, seed};
inline constexpr parameter_def dare_ties_params[] = {weight_1, density_req, lambda, normalize_true, rescale, seed,
                                                     consensus};
inline constexpr parameter_def breadcrumbs_params[] = {weight_1, density_req, gamma, lambda, normalize_false};
inline constexpr parameter_def breadcrumbs_ties_params[] = {weight_1, density_req, gamma, lambda, normalize_true,
                                                            consensus};
inline constexpr parameter_def magnitude_prune_params[] = {weight_1, density_req, lambda, normalize_false};
inline constexpr parameter_def slerp_params[] = {slerp_t};

constexpr std::size_t many = method_def::unlimited;
using I = method_inputs;

inline constexpr method_def table[] = {
    {"past", I::past_roles, 0, 0, past_params, "target + lambda * (rl - sft)"},
    {"orthogonal_past", I::orthogonal_roles, 0, 0, past_params,
     "target + lambda * v', v = rl - sft with its component along (target - base) removed"},
    {"task_arithmetic", I::base_and_models, 1, many, task_arithmetic_params,
     "base + lambda * sum_i weight_i * (model_i - base)"},
    {"linear", I::models_only, 1, many, linear_params, "sum_i weight_i * model_i (weights normalized by default)"},
    {"ties", I::base_and_models, 1, many, ties_params, "trim each delta to its density, elect signs, disjoint merge"},
    {"dare_linear", I::base_and_models, 1, many, dare_linear_params,
     "randomly drop delta entries (keep density), rescale, task arithmetic"},
    {"dare_ties", I::base_and_models, 1, many, dare_ties_params, "DARE drop and rescale, then TIES sign election"},
    {"breadcrumbs", I::base_and_models, 1, many, breadcrumbs_params,
     "drop the largest (gamma) and smallest entries of each delta, task arithmetic"},
    {"breadcrumbs_ties", I::base_and_models, 1, many, breadcrumbs_ties_params,
     "breadcrumbs, then TIES sign election"},
    {"magnitude_prune", I::base_and_models, 1, many, magnitude_prune_params,
     "keep the largest-magnitude entries of each delta (density), task arithmetic"},
    {"slerp", I::base_and_one, 1, 1, slerp_params, "spherical interpolation from base_model (t = 0) to the model (t = 1)"},
    {"expression", I::named_models, 1, many, {}, "a formula over named models and parameters (affine algebra)"},
};

} // namespace catalog_detail

constexpr std::span<const std::string_view> method_def::roles() const noexcept {
    if (inputs == method_inputs::past_roles) return catalog_detail::past_role_names;
    if (inputs == method_inputs::orthogonal_roles) return catalog_detail::orthogonal_role_names;
    return {};
}

/// Every method, in documentation order.
[[nodiscard]] constexpr std::span<const method_def> methods() noexcept { return catalog_detail::table; }

/// The method called `name` (exact spelling), or nullptr.
[[nodiscard]] constexpr const method_def* find_method(std::string_view name) noexcept {
    for (const method_def& m : catalog_detail::table)
        if (m.name == name) return &m;
    return nullptr;
}

namespace catalog_detail {
/// Whether the table has method `name` taking parameter `param` (any parameter when empty). It
/// compares names only: GCC's UBSan makes comparisons of pointers into the table non-constant.
constexpr bool declares(std::string_view name, std::string_view param = {}) noexcept {
    for (const method_def& m : table) {
        if (m.name != name) continue;
        if (param.empty()) return true;
        for (const parameter_def& p : m.parameters)
            if (p.name == param) return true;
    }
    return false;
}
} // namespace catalog_detail

static_assert(catalog_detail::declares("ties", "consensus"));
static_assert(!catalog_detail::declares("della"));

} // namespace skillvec::recipe

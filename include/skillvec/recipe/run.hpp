#pragma once
/// \file
/// Carrying out a recipe spec (recipe/spec.hpp, usually from recipe/yaml.hpp): open the models,
/// build the typed expression of its method (the same expressions C++ users write by hand: `past`,
/// `ties`, `slerp`, ...), check every tensor's parameters, then evaluate in one streaming pass.
///
///   recipe::merge_job job(recipe::load_recipe("merge.yaml"));
///   for (const auto& row : job.plan()) ...;        // what --dry-run prints; reads no tensor data
///   safetensors_writer out("merged/");
///   job.run(out);
///
/// Models are opened read-only (safetensors_store: mapped, validated). Errors are recipe_errors
/// naming the recipe file and the line of the model or parameter at fault.

#include <skillvec/expr/evaluate.hpp>
#include <skillvec/io/safetensors.hpp>
#include <skillvec/recipe/formula.hpp>
#include <skillvec/recipe/methods.hpp>
#include <skillvec/recipe/spec.hpp>

#include <array>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace skillvec::recipe {

/// Most models one recipe merges (the methods are instantiated for each count up to this).
inline constexpr std::size_t max_models = 8;

/// sum_k c_k x_k over models, in double, with coefficients that are functions of per-tensor
/// parameters: what a `merge_method: expression` formula reduces to (recipe/formula.hpp). For a
/// point the coefficients sum to 1, for a vector to 0 (the formula's type check guarantees it).
template <class Space, std::size_t K> class affine_combination : public expression_base {
public:
    using space = Space;
    using leaf = store_leaf<safetensors_store, point_space>;
    static constexpr std::size_t arity = K;
    static constexpr bool scalar_only = true;

    /// coefficient(k, site) gives term k's coefficient for one tensor.
    affine_combination(std::array<leaf, K> leaves, std::function<double(std::size_t, const tensor_site&)> coefficient,
                       std::string text)
        : leaves_(std::move(leaves)), coefficient_(std::move(coefficient)), text_(std::move(text)) {}

    template <std::size_t I, class T, std::size_t N>
        requires std::same_as<T, float> // scalar_only: evaluated one element at a time
    T eval(const std::array<T, N>& x, std::uint64_t = 0) const {
        double s = 0;
        for (std::size_t k = 0; k < K; ++k) s += c_[k] * static_cast<double>(x[I + k]);
        return static_cast<float>(s);
    }
    template <std::size_t I, class Ctx> void prepare(const Ctx& ctx) {
        for (std::size_t k = 0; k < K; ++k) c_[k] = coefficient_(k, ctx.site);
    }
    template <class F> void for_each_leaf(F&& f) const {
        for (const auto& l : leaves_) f(l);
    }
    [[nodiscard]] std::string describe() const { return text_; }

private:
    std::array<leaf, K> leaves_;
    std::function<double(std::size_t, const tensor_site&)> coefficient_;
    std::string text_;
    std::array<double, K> c_{};
};

/// One row of a merge plan (what `skillvec merge --dry-run` prints).
struct plan_row {
    std::string tensor;
    shape dims;
    dtype in = dtype::f32;  ///< the point operand's dtype
    dtype out = dtype::f32;
    std::string action;     ///< "merge", "keep" (excluded), "copy" (non-float, from the point operand), "skip"
    std::string detail;     ///< resolved parameters ("lambda=1 weight=[1, 0.5] density=[0.2, 0.5]"), or why kept
};

namespace run_detail {

inline float number_at(const setting& s, const std::string& what, const tensor_site& site) {
    try {
        return std::get<parameter>(s.value).at(site);
    } catch (const recipe_error&) {
        throw;
    } catch (const error&) {
        throw recipe_error(s.where, what + " has no value for tensor '" + std::string(site.name) +
                                        "': none of its filters matches it (end its rules with one without a filter, the default)");
    }
}

template <class T> T get_or(const std::map<std::string, setting>& m, const std::string& key, T fallback) {
    auto it = m.find(key);
    if (it == m.end()) return fallback;
    if (const T* v = std::get_if<T>(&it->second.value)) return *v;
    return fallback;
}

inline parameter param_or(const std::map<std::string, setting>& m, const std::string& key, float fallback) {
    auto it = m.find(key);
    if (it == m.end()) return fallback;
    if (const parameter* p = std::get_if<parameter>(&it->second.value)) return *p;
    return fallback;
}

inline consensus consensus_of(const recipe_spec& s, consensus fallback) {
    const std::string w = get_or<std::string>(s.parameters, "consensus", "");
    if (w == "sum") return consensus::sum;
    if (w == "count") return consensus::count;
    return fallback;
}

/// Calls f(std::integral_constant<std::size_t, K>{}) for the runtime count k in [1, max_models].
template <class F> void with_count(std::size_t k, F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (void)((k == I + 1 ? (f(std::integral_constant<std::size_t, I + 1>{}), true) : false) || ...);
    }(std::make_index_sequence<max_models>{});
}

} // namespace run_detail

/// A recipe with its models opened, ready to plan and run.
class merge_job {
public:
    /// Opens every model the spec names (read-only). A model that cannot be opened is a
    /// recipe_error at its line in the recipe.
    explicit merge_job(recipe_spec spec, cpu_backend backend = cpu) : spec_(std::move(spec)), backend_(backend) {
        auto open = [&](const model_ref& m) {
            if (stores_.count(m.path.string())) return;
            try {
                stores_.emplace(m.path.string(), std::make_unique<safetensors_store>(safetensors_store::open(m.path)));
            } catch (const error& e) {
                throw recipe_error(m.where, "cannot open model '" + m.name + "': " + e.what());
            }
        };
        if (spec_.base_model) open(*spec_.base_model);
        for (const auto& m : spec_.models) open(m);
        for (const auto& [role, m] : spec_.roles) open(m);
        const std::size_t k = spec_.method == "expression" ? spec_.roles.size() : spec_.models.size();
        if (k > max_models)
            throw recipe_error(spec_.method_pos, "this build of skillvec merges at most " + std::to_string(max_models) +
                                                     " models per recipe; the recipe has " + std::to_string(k));
        if (spec_.method == "expression" && !spec_.formula)
            throw recipe_error(spec_.expression_pos, "merge_method: expression needs an expression");
    }

    [[nodiscard]] const recipe_spec& spec() const noexcept { return spec_; }

    /// The evaluation options: the output dtype and the excluded tensors.
    [[nodiscard]] eval_options options() const {
        eval_options o;
        o.out_dtype = spec_.out_dtype;
        o.allow_mixed_float_dtypes = true; // everything is computed in f32 (or f64) anyway
        if (!spec_.exclude.empty()) {
            const int layers = num_layers();
            o.keep = [this, layers](std::string_view name) { return excluded_by(tensor_site{name, layer_of(name), layers}) != nullptr; };
        }
        return o;
    }

    /// Calls f(expr) with the typed expression of the recipe (bound to the opened models).
    template <class F> void visit(F&& f) const {
        const auto& m = spec_.method;
        if (m == "past") return f(past(point("target"), point("rl"), point("sft"), lambda()));
        if (m == "orthogonal_past") return f(orthogonal_past(point("target"), point("rl"), point("sft"), point("base"), lambda()));
        if (m == "slerp") return f(slerp(base(), model(0), run_detail::param_or(spec_.parameters, "t", 0.5f)));
        if (m == "expression") return visit_expression(f);
        run_detail::with_count(spec_.models.size(), [&](auto count) {
            constexpr std::size_t K = decltype(count)::value;
            if (m == "linear") {
                const bool normalize = run_detail::get_or<bool>(spec_.parameters, "normalize", true);
                with_tasks<K, true>([&](auto... t) { f(linear(normalize, t...)); });
                return;
            }
            const parameter lam = lambda();
            const bool normalize_default = m == "ties" || m == "dare_ties" || m == "breadcrumbs_ties";
            const bool normalize = run_detail::get_or<bool>(spec_.parameters, "normalize", normalize_default);
            with_tasks<K, false>([&](auto... t) {
                if (m == "task_arithmetic") f(base() + task_arithmetic({.lambda = lam, .normalize = normalize}, t...));
                else if (m == "ties")
                    f(base() + ties({.lambda = lam, .normalize = normalize, .sign = run_detail::consensus_of(spec_, consensus::sum)}, t...));
                else if (m == "dare_linear" || m == "dare_ties")
                    f(base() + dare({.lambda = lam,
                                     .normalize = normalize,
                                     .sign = m == "dare_ties" ? run_detail::consensus_of(spec_, consensus::sum) : consensus::none,
                                     .seed = static_cast<std::uint64_t>(run_detail::get_or<std::int64_t>(spec_.parameters, "seed", 0)),
                                     .rescale = run_detail::get_or<bool>(spec_.parameters, "rescale", true)},
                                    t...));
                else if (m == "breadcrumbs" || m == "breadcrumbs_ties")
                    f(base() + breadcrumbs({.lambda = lam,
                                            .normalize = normalize,
                                            .sign = m == "breadcrumbs_ties" ? run_detail::consensus_of(spec_, consensus::sum) : consensus::none},
                                           t...));
                else if (m == "magnitude_prune") f(base() + magnitude_prune({.lambda = lam, .normalize = normalize}, t...));
                else throw recipe_error(spec_.method_pos, "unknown merge_method '" + m + "'");
            });
        });
    }

    /// The per-tensor plan, with every parameter resolved for every tensor: a parameter with no
    /// value for some tensor, or a model whose tensors disagree with the others, is reported
    /// here, before any tensor data is read.
    [[nodiscard]] std::vector<plan_row> plan() const {
        std::vector<plan_row> rows;
        visit([&](const auto& expr) {
            const auto prepared = prepare(expr, backend_, options());
            for (std::size_t i = 0; i < prepared.tensor_count(); ++i) {
                const auto site = prepared.site(i);
                plan_row r;
                r.tensor = prepared.tensor_name(i);
                const auto& e = prepared.entry(i);
                r.dims = e.out.dims;
                r.in = e.inputs[0].type;
                r.out = e.out.type;
                switch (e.action) {
                case tensor_action::compute:
                    r.action = "merge";
                    r.detail = resolved(site);
                    break;
                case tensor_action::keep: {
                    r.action = "keep";
                    const auto* x = excluded_by(site);
                    r.detail = "excluded by '" + x->first.describe() + "' (" + x->second.str() + ")";
                    break;
                }
                case tensor_action::pass_through:
                    r.action = "copy";
                    r.detail = "not a float tensor";
                    break;
                case tensor_action::skip:
                    r.action = "skip";
                    r.detail = "not a float tensor";
                    break;
                }
                rows.push_back(std::move(r));
            }
        });
        return rows;
    }

    /// Plans (checking every tensor), then evaluates into the sink in one streaming pass.
    template <class K> evaluation_report run(K&& sink) const {
        (void)plan();
        evaluation_report rep;
        visit([&](const auto& expr) { rep = prepare(expr, backend_, options()).run(std::forward<K>(sink)); });
        return rep;
    }

    /// The formula of the recipe with its operands' names ("target + lambda * (rl - sft)").
    [[nodiscard]] std::string formula() const {
        std::string out;
        visit([&](const auto& expr) { out = describe(expr); });
        return out;
    }

    /// The directory of the point operand (its config and tokenizer files are copied to the output).
    [[nodiscard]] std::filesystem::path point_operand_directory() const {
        std::filesystem::path p;
        visit([&](const auto& expr) {
            expr.for_each_leaf([&](const auto& operand) {
                if (p.empty()) p = operand.store().directory();
            });
        });
        return p;
    }

    /// Layers in the models: the largest layer index among the point operand's tensors, plus one.
    [[nodiscard]] int num_layers() const {
        int top = no_layer;
        for (const auto& [path, s] : stores_)
            for (const auto& n : s->tensor_names()) top = std::max(top, layer_of(n));
        return top + 1;
    }

private:
    using leaf = store_leaf<safetensors_store, point_space>;

    [[nodiscard]] const safetensors_store& store_of(const model_ref& m) const { return *stores_.at(m.path.string()); }
    [[nodiscard]] leaf weights_of(const model_ref& m) const { return weights(store_of(m), m.name); }
    [[nodiscard]] leaf point(const std::string& role) const { return weights_of(spec_.roles.at(role)); }
    [[nodiscard]] leaf base() const { return weights_of(*spec_.base_model); }
    [[nodiscard]] leaf model(std::size_t k) const { return weights_of(spec_.models.at(k)); }
    [[nodiscard]] parameter lambda() const { return run_detail::param_or(spec_.parameters, "lambda", 1.0f); }

    /// Calls f(task(...)...) with K tasks: model - base, or with Points the models themselves.
    template <std::size_t K, bool Points, class F> void with_tasks(F&& f) const {
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            if constexpr (Points) f(task(model(I), options_of(spec_.models[I]))...);
            else f(task(model(I) - base(), options_of(spec_.models[I]))...);
        }(std::make_index_sequence<K>{});
    }

    [[nodiscard]] task_options options_of(const model_ref& m) const {
        return {.weight = run_detail::param_or(m.parameters, "weight", 1.0f),
                .density = run_detail::param_or(m.parameters, "density", 1.0f),
                .gamma = run_detail::param_or(m.parameters, "gamma", 0.01f)};
    }

    template <class F> void visit_expression(F&& f) const {
        const affine_form& form = *spec_.formula;
        const auto values = number_parameters();
        // The point operand first: it is the binding's reference (tensor order, pass-through, dtype).
        std::vector<std::size_t> order;
        for (std::size_t i = 0; i < form.terms.size(); ++i)
            if (form.terms[i].model == form.point_operand) order.push_back(i);
        for (std::size_t i = 0; i < form.terms.size(); ++i)
            if (form.terms[i].model != form.point_operand) order.push_back(i);
        auto coefficient = [form, values, order](std::size_t k, const tensor_site& site) {
            return form.coefficient(order[k], site, values);
        };
        run_detail::with_count(form.terms.size(), [&](auto count) {
            constexpr std::size_t K = decltype(count)::value;
            std::array<leaf, K> leaves = [&]<std::size_t... I>(std::index_sequence<I...>) {
                return std::array<leaf, K>{point(form.terms[order[I]].model)...};
            }(std::make_index_sequence<K>{});
            if (form.is_point) f(affine_combination<point_space, K>(std::move(leaves), coefficient, spec_.expression));
            else f(affine_combination<vector_space, K>(std::move(leaves), coefficient, spec_.expression));
        });
    }

    /// The recipe's global number parameters by name (what a formula's coefficients read).
    [[nodiscard]] std::map<std::string, parameter> number_parameters() const {
        std::map<std::string, parameter> values;
        for (const auto& [name, s] : spec_.parameters)
            if (const parameter* p = std::get_if<parameter>(&s.value)) values.emplace(name, *p);
        return values;
    }

    /// The exclusion rule that matches a tensor, if any.
    [[nodiscard]] const std::pair<tensor_filter, source_pos>* excluded_by(const tensor_site& site) const {
        for (const auto& x : spec_.exclude)
            if (x.first.matches(site)) return &x;
        return nullptr;
    }

    /// "lambda=1 weight=[1, 0.5] density=[0.2, 0.5]": every number parameter at this tensor.
    /// Throws a recipe_error naming the parameter's line if one has no value here.
    [[nodiscard]] std::string resolved(const tensor_site& site) const {
        std::string out;
        auto fmt = [](float x) { return detail::format_scalar(x); };
        for (const auto& [name, s] : spec_.parameters)
            if (std::holds_alternative<parameter>(s.value))
                out += (out.empty() ? "" : " ") + name + "=" + fmt(run_detail::number_at(s, "parameter '" + name + "'", site));
        std::map<std::string, std::vector<float>> per_model;
        std::vector<std::string> names;
        for (const auto& m : spec_.models)
            for (const auto& [name, s] : m.parameters)
                if (std::holds_alternative<parameter>(s.value)) {
                    if (!per_model.count(name)) names.push_back(name);
                    per_model[name].push_back(run_detail::number_at(s, "parameter '" + name + "' of model '" + m.name + "'", site));
                }
        for (const auto& name : names) {
            out += (out.empty() ? "" : " ") + name + "=[";
            const auto& v = per_model[name];
            for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + fmt(v[i]);
            out += "]";
        }
        if (spec_.method == "linear" && !run_detail::get_or<bool>(spec_.parameters, "normalize", true)) {
            double sum = 0;
            for (float w : per_model["weight"]) sum += w;
            if (std::abs(sum - 1.0) > 1e-6)
                throw recipe_error(spec_.method_pos, "linear: the weights sum to " + detail::format_scalar(static_cast<float>(sum)) +
                                                         " for tensor '" + std::string(site.name) +
                                                         "', so the result is not a model; set normalize: true or make them sum to 1");
        }
        if (spec_.formula) {
            const auto values = number_parameters();
            std::string c;
            for (std::size_t i = 0; i < spec_.formula->terms.size(); ++i)
                c += (i ? ", " : "") + spec_.formula->terms[i].model + ": " +
                     detail::format_scalar(static_cast<float>(spec_.formula->coefficient(i, site, values)));
            out += (out.empty() ? "" : " ") + std::string("coefficients={") + c + "}";
        }
        return out;
    }

    recipe_spec spec_;
    cpu_backend backend_;
    std::map<std::string, std::unique_ptr<safetensors_store>> stores_;
};

} // namespace skillvec::recipe

#pragma once
/// \file
/// Merge methods as expression nodes: task arithmetic, TIES, DARE (linear and TIES), breadcrumbs,
/// magnitude pruning, linear, SLERP, and orthogonalized PaST. They compose with the affine algebra
/// and run in the same fused, streaming evaluation as `t + lambda * (rl - sft)`:
///
///   auto base = weights(b, "base");
///   auto merged = materialize(base + ties({}, task(weights(m1, "m1") - base, {.density = 0.5f}),
///                                             task(weights(m2, "m2") - base)));
///
/// The vector-valued methods (task_arithmetic, ties, dare, breadcrumbs, magnitude_prune) take task
/// vectors and already include lambda and the normalization, so `base + method(...)` is the merge.
/// linear and slerp take points and give a point; orthogonalize takes two vectors.
///
/// Conventions (docs/recipes.md, section Methods, says why). Per tensor, tau_k is task k's value,
/// w_k, density_k, gamma_k its parameters for this tensor (`parameter::at`), n the element count:
///
/// - Magnitude selection (ties, magnitude_prune): keep count k = floor(density * n); density >= 1
///   keeps all (no statistic pass), density <= 0 or n == 0 keeps none, else k = max(1, k). The
///   threshold t is the k-th largest |tau|, ranked by the f32 bit pattern of |tau| (NaN ranks above
///   +Inf); an element is kept iff bits(|tau|) >= bits(t), so every element tied with the
///   threshold is kept (torch.topk, and so mergekit, keeps an arbitrary subset of the ties).
///   Found exactly by a two-pass radix select (recipe/detail/select.hpp).
/// - breadcrumbs (mergekit's magnitude_outliers): n_keep = floor(density * n),
///   n_top = floor(gamma * n), n_bot = n - n_keep - n_top; if n_bot < 0, n_top += n_bot. The n_top
///   largest are dropped (bits >= bits of the n_top-th largest, when n_top > 0), and of the rest
///   those with bits >= bits of the (n_top + n_keep)-th largest are kept (all of them if
///   n_top + n_keep >= n; none if n_keep == 0). density >= 1 keeps everything.
/// - DARE random drop: keep iff u < density, u a counter-based uniform (dare_uniform) that depends
///   only on the seed, the task's position, the tensor's name and the element's index, so results
///   do not depend on threads, chunks or sink ranges. Kept values are divided by the density when
///   `rescale` is set (the DARE paper's 1/(1 - p)); density >= 1 keeps all, unscaled.
/// - d_k = w_k * sparsified(tau_k).
/// - Consensus (sign election): sum: elected = sum_k d_k >= 0 ? +1 : -1; count: elected =
///   sum_k sign(d_k) >= 0 ? +1 : -1, sign(0) = 0. Task k takes part iff sign(d_k) == elected, so a
///   zero (or dropped, or NaN) entry never does.
/// - Mix: with consensus, mixed = sum of the agreeing d_k, divisor = sum of their w_k (0 -> 1);
///   without, mixed = sum_k d_k, divisor = sum_k w_k (|divisor| < 1e-8 -> 1). With normalize,
///   mixed /= divisor. The result is lambda * mixed. mergekit's generalized task arithmetic.
/// - Arithmetic is in double per element, rounded once to f32.
///
/// NaN and Inf follow IEEE arithmetic through these formulas: a NaN entry of a task is kept by
/// magnitude selection (it ranks highest), makes a plain sum NaN, and in a sign election counts
/// towards the sum (making it NaN, which elects -1) but never agrees with the elected sign, as in
/// mergekit. In slerp and orthogonalize a NaN (or Inf) anywhere in a tensor makes its statistic,
/// and so that whole tensor's result, NaN.
///
/// Every method's result is identical for any thread count, SIMD choice, chunking and sink.

#include <skillvec/backend/cpu/values.hpp>
#include <skillvec/core/error.hpp>
#include <skillvec/expr/context.hpp>
#include <skillvec/expr/nodes.hpp>
#include <skillvec/expr/ops.hpp>
#include <skillvec/expr/parameter.hpp>
#include <skillvec/recipe/detail/select.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

/// Method nodes' `eval` is inlined into the kernel's element loop. Left out of line, it reads the
/// loaded leaf values back from memory as vector pairs just written as single floats, and the
/// failed store forwarding costs more than the method's arithmetic (measured: 3.5x slower).
#if defined(__GNUC__) || defined(__clang__)
#define SKILLVEC_METHOD_INLINE [[gnu::always_inline]] inline
#else
#define SKILLVEC_METHOD_INLINE inline
#endif

namespace skillvec {

/// How the sign of each merged entry is elected (TIES); `none` adds the tasks as they are.
enum class consensus {
    none,  ///< no election: every task contributes
    sum,   ///< the sign of the summed weighted entries (TIES, mergekit's default)
    count, ///< the sign with more votes (ties go to +)
};

/// How each task vector is sparsified before mixing (the node's template argument).
enum class sparsification {
    none,      ///< task arithmetic, linear
    magnitude, ///< keep the largest magnitudes (TIES, magnitude pruning)
    random,    ///< seeded random drop (DARE)
    outliers,  ///< drop the largest (gamma) and the smallest (breadcrumbs)
};

/// Per-task parameters; each may differ per tensor (a `parameter`: constant, gradient, rules).
struct task_options {
    parameter weight = 1.0f;  ///< w_k: the task's weight
    parameter density = 1.0f; ///< fraction of entries kept (ties, dare, breadcrumbs, magnitude_prune)
    parameter gamma = 0.01f;  ///< fraction of largest entries dropped as outliers (breadcrumbs only)
};

/// One input of a merge method: an expression (a task vector, or a point for linear) and its
/// parameters. Make one with `task(expr, {...})`.
template <tensor_expression X> struct task_input {
    X expr;
    task_options options;
};

/// A merge input: `task(weights(m) - weights(base), {.weight = 0.5f, .density = 0.3f})`.
template <class X>
    requires tensor_expression<std::remove_cvref_t<X>>
[[nodiscard]] task_input<std::remove_cvref_t<X>> task(X&& expr, task_options options = {}) {
    return {std::forward<X>(expr), std::move(options)};
}

/// task_arithmetic: lambda * sum_k w_k tau_k (divided by sum_k w_k if normalize).
struct task_arithmetic_options {
    parameter lambda = 1.0f;
    bool normalize = false;
};
/// ties: magnitude trim to each task's density, sign election, disjoint mean (normalize).
struct ties_options {
    parameter lambda = 1.0f;
    bool normalize = true;
    consensus sign = consensus::sum;
};
/// dare: seeded random drop (keep each entry with probability density), rescale, then a plain sum
/// (sign none: dare_linear) or a sign election (sum/count: dare_ties).
struct dare_options {
    parameter lambda = 1.0f;
    bool normalize = false;
    consensus sign = consensus::none;
    std::uint64_t seed = 0;
    bool rescale = true;
};
/// breadcrumbs: drop each task's gamma largest and its smallest entries, keeping density of them.
struct breadcrumbs_options {
    parameter lambda = 1.0f;
    bool normalize = false;
    consensus sign = consensus::none;
};
/// magnitude_prune: keep each task's density largest entries, then a plain sum.
struct magnitude_options {
    parameter lambda = 1.0f;
    bool normalize = false;
};

/// Types whose names are the compile errors of misused methods (see expr/ops.hpp's affine_error).
namespace method_error {
struct task_methods_take_task_vectors__write_task_of_model_minus_base {};
struct linear_takes_points__write_task_of_weights {};
struct slerp_takes_two_points {};
struct orthogonalize_takes_two_vectors {};
struct orthogonal_past_takes_four_points__target_rl_sft_base {};
struct a_merge_needs_at_least_one_task {};
} // namespace method_error

namespace method_detail {

/// SplitMix64's finalizer: the DARE hash. Documented constants, so other tools can reproduce a
/// drop mask exactly.
[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// FNV-1a, 64 bits, over the bytes of a tensor name.
[[nodiscard]] constexpr std::uint64_t fnv1a64(std::string_view s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (const char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;
    }
    return h;
}

/// The random stream of task `model` (0-based position among the tasks) in tensor `name`.
[[nodiscard]] constexpr std::uint64_t dare_key(std::uint64_t seed, std::uint64_t model, std::string_view name) noexcept {
    return mix64(mix64(mix64(seed) ^ model) ^ fnv1a64(name));
}

/// Element i's uniform in [0, 1): the top 24 bits of a hash, so it is exact in f32 and f64.
[[nodiscard]] constexpr double dare_uniform(std::uint64_t key, std::uint64_t i) noexcept {
    return static_cast<double>(mix64(key ^ i) >> 40) * 0x1p-24;
}

/// Index of child J's first leaf, relative to the node's first leaf.
template <std::size_t J, class... C> inline constexpr std::size_t leaf_offset_v = backend::cpu::values_detail::leaf_offset<J, C...>();

[[nodiscard]] inline std::string_view consensus_name(consensus c) noexcept {
    return c == consensus::sum ? "sum" : c == consensus::count ? "count" : "none";
}

/// A parameter's value for a tensor, refusing NaN (it would make the keep count meaningless).
[[nodiscard]] inline float value_at(const parameter& p, const tensor_site& site, std::string_view method,
                                    std::string_view what, std::size_t model) {
    const float v = p.at(site);
    if (std::isnan(v))
        throw error(std::string(method) + ": " + std::string(what) + " of task " + std::to_string(model + 1) +
                    " is NaN for tensor '" + std::string(site.name) + "'");
    return v;
}

[[nodiscard]] inline bool is_constant_value(const parameter& p, float v) { return p.is_constant() && p.constant() == v; }

/// Keep count floor(fraction * n) for fraction in [0, 1) (in double: exact for any realistic n).
[[nodiscard]] inline std::uint64_t fraction_of(float fraction, std::uint64_t n) {
    if (!(fraction > 0)) return 0;
    if (fraction >= 1) return n;
    return std::min<std::uint64_t>(n, static_cast<std::uint64_t>(std::floor(static_cast<double>(fraction) * static_cast<double>(n))));
}

/// The settings of a generalized task arithmetic node, whatever the method.
struct task_merge_settings {
    std::string_view method; ///< "ties", "dare", ...: names the method in errors and describe()
    parameter lambda = 1.0f;
    bool normalize = false;
    consensus sign = consensus::none;
    std::uint64_t seed = 0;
    bool rescale = false;
};

/// The body of a method's `eval` for SIMD batches. kernels.hpp instantiates every node's eval
/// for batches, but never calls it for a scalar_only expression: methods compute one f32 element
/// at a time.
template <class T> [[noreturn]] T not_per_element() { std::abort(); }

/// x if keep, else +0: a mask, not a branch (and Inf or NaN times 0 would be NaN).
[[nodiscard]] inline double keep_if(double x, bool keep) noexcept {
    return std::bit_cast<double>(std::bit_cast<std::uint64_t>(x) & (std::uint64_t{0} - static_cast<std::uint64_t>(keep)));
}

/// Keys in [lo, hi) are kept: all of them (0, 2^31), none (2^31, 2^31).
inline constexpr std::uint32_t key_none = 0x80000000u;

} // namespace method_detail

/// Generalized task arithmetic over task vectors (mergekit's generalized_task_arithmetic): each
/// task sparsified by S, weighted, optionally sign-elected, summed, optionally normalized, scaled
/// by lambda. task_arithmetic, ties, dare, breadcrumbs and magnitude_prune build one.
template <sparsification S, vector_expression... V>
    requires(sizeof...(V) >= 1)
class task_merge : public expression_base {
public:
    using space = vector_space;
    static constexpr std::size_t arity = (V::arity + ...);
    static constexpr bool scalar_only = true;
    static constexpr std::size_t tasks = sizeof...(V);

    task_merge(method_detail::task_merge_settings settings, task_input<V>... inputs)
        : settings_(std::move(settings)), children_(std::move(inputs.expr)...), options_{std::move(inputs.options)...} {
        for (std::size_t k = 0; k < tasks; ++k) {
            const std::string who = std::string(settings_.method) + ": task " + std::to_string(k + 1) + " sets ";
            if (S == sparsification::none && !method_detail::is_constant_value(options_[k].density, 1.0f))
                throw error(who + "a density, which " + std::string(settings_.method) +
                            " does not use (ties, dare, breadcrumbs and magnitude_prune do)");
            if (S != sparsification::outliers && !method_detail::is_constant_value(options_[k].gamma, 0.01f))
                throw error(who + "gamma, which only breadcrumbs uses");
        }
    }

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_METHOD_INLINE T eval(const std::array<T, N>& x, std::uint64_t index = 0) const {
        if constexpr (!std::is_same_v<T, float>) return method_detail::not_per_element<T>();
        else {
            std::array<double, tasks> d;
            [&]<std::size_t... J>(std::index_sequence<J...>) {
                ((d[J] = sparsified<J>(std::get<J>(children_).template eval<I + method_detail::leaf_offset_v<J, V...>>(x, index), index)), ...);
            }(std::make_index_sequence<tasks>{});
            double mixed = 0, divisor = divisor_;
            if (settings_.sign == consensus::none) {
                for (std::size_t k = 0; k < tasks; ++k) mixed += d[k];
            } else {
                bool positive;
                if (settings_.sign == consensus::sum) {
                    double s = 0;
                    for (std::size_t k = 0; k < tasks; ++k) s += d[k];
                    positive = s >= 0; // NaN elects -1, as in mergekit
                } else {
                    int votes = 0;
                    for (std::size_t k = 0; k < tasks; ++k) votes += (d[k] > 0) - (d[k] < 0);
                    positive = votes >= 0;
                }
                divisor = 0;
                for (std::size_t k = 0; k < tasks; ++k) {
                    const bool agree = ((d[k] > 0) & positive) | ((d[k] < 0) & !positive); // no branch
                    mixed += method_detail::keep_if(d[k], agree);
                    divisor += method_detail::keep_if(state_[k].weight, agree);
                }
                if (divisor == 0) divisor = 1;
            }
            if (settings_.normalize) mixed /= divisor;
            return static_cast<float>(lambda_ * mixed);
        }
    }

    template <class F> void for_each_leaf(F&& f) const {
        std::apply([&](const auto&... c) { (c.for_each_leaf(f), ...); }, children_);
    }

    /// Per tensor: the children's own hooks, the parameters' values, and the statistic pass that
    /// finds the magnitude thresholds (none for task arithmetic, DARE, or densities >= 1).
    template <std::size_t I, class Ctx> void prepare(const Ctx& ctx) {
        static_assert(std::is_same_v<Ctx, tensor_context>, "merge methods need evaluate's tensor_context (the CPU backend)");
        [&]<std::size_t... J>(std::index_sequence<J...>) {
            (detail::prepare_node<I + method_detail::leaf_offset_v<J, V...>>(std::get<J>(children_), ctx), ...);
        }(std::make_index_sequence<tasks>{});
        const tensor_site& site = ctx.site;
        const std::uint64_t n = ctx.numel;
        const std::string_view m = settings_.method;
        lambda_ = settings_.lambda.at(site);
        double weight_sum = 0;
        method_detail::rank_table<tasks> ranks{};
        for (std::size_t k = 0; k < tasks; ++k) {
            model_state& s = state_[k];
            s = model_state{};
            s.weight = method_detail::value_at(options_[k].weight, site, m, "weight", k);
            weight_sum += s.weight;
            if constexpr (S == sparsification::magnitude) {
                const float density = method_detail::value_at(options_[k].density, site, m, "density", k);
                if (density >= 1) continue; // keep all
                if (density <= 0 || n == 0) {
                    s.lo = method_detail::key_none;
                    continue;
                }
                ranks[k][0] = std::max<std::uint64_t>(1, method_detail::fraction_of(density, n));
            } else if constexpr (S == sparsification::outliers) {
                const float density = method_detail::value_at(options_[k].density, site, m, "density", k);
                const float gamma = method_detail::value_at(options_[k].gamma, site, m, "gamma", k);
                if (density >= 1) continue;
                const auto keep = static_cast<std::int64_t>(method_detail::fraction_of(density, n));
                auto top = static_cast<std::int64_t>(method_detail::fraction_of(gamma, n));
                const std::int64_t bottom = static_cast<std::int64_t>(n) - keep - top;
                if (bottom < 0) top += bottom;
                if (top > 0) ranks[k][0] = static_cast<std::uint64_t>(top);
                if (keep == 0) s.lo = method_detail::key_none;
                else if (top + keep < static_cast<std::int64_t>(n)) ranks[k][1] = static_cast<std::uint64_t>(top + keep);
            } else if constexpr (S == sparsification::random) {
                const float density = method_detail::value_at(options_[k].density, site, m, "density", k);
                if (density >= 1) continue;
                s.density = density;
                if (settings_.rescale && density > 0) s.rescale = density;
                s.key = method_detail::dare_key(settings_.seed, k, site.name);
            }
        }
        divisor_ = std::abs(weight_sum) < 1e-8 ? 1.0 : weight_sum; // the divisor without consensus
        if constexpr (S == sparsification::magnitude || S == sparsification::outliers) {
            const auto keys = std::apply(
                [&](const auto&... c) { return method_detail::kth_largest_magnitudes<I>(ctx, ranks, c...); }, children_);
            for (std::size_t k = 0; k < tasks; ++k) {
                if constexpr (S == sparsification::magnitude) {
                    if (ranks[k][0]) state_[k].lo = keys[k][0];
                } else {
                    if (ranks[k][0]) state_[k].hi = keys[k][0];
                    if (ranks[k][1]) state_[k].lo = keys[k][1];
                }
            }
        }
    }

    /// "ties(lambda=1, normalize=true, consensus=sum; task(m1 - base; weight=1, density=0.5), ...)".
    [[nodiscard]] std::string describe() const {
        std::string out = std::string(settings_.method) + "(lambda=" + settings_.lambda.describe() +
                          ", normalize=" + (settings_.normalize ? "true" : "false");
        if (settings_.sign != consensus::none) out += ", consensus=" + std::string(method_detail::consensus_name(settings_.sign));
        if constexpr (S == sparsification::random)
            out += ", seed=" + std::to_string(settings_.seed) + ", rescale=" + (settings_.rescale ? "true" : "false");
        out += ";";
        [&]<std::size_t... J>(std::index_sequence<J...>) {
            ((out += (J ? ", " : " ") + describe_task(std::get<J>(children_), options_[J])), ...);
        }(std::make_index_sequence<tasks>{});
        return out + ")";
    }

    /// For tensor being evaluated (after prepare): the kept interval [lo, hi) of task k's
    /// magnitude keys (magnitude_bits); [0, 2^31) keeps all, lo = 2^31 none.
    [[nodiscard]] std::pair<std::uint32_t, std::uint32_t> kept_keys(std::size_t k) const { return {state_[k].lo, state_[k].hi}; }

private:
    struct model_state {
        double weight = 1;
        std::uint32_t lo = 0, hi = method_detail::key_none; // kept magnitude keys: [lo, hi)
        std::uint64_t key = 0;                               // DARE stream
        double density = 2;                                  // DARE: kept iff u < density (u < 1: all)
        double rescale = 1;                                  // DARE: kept values are divided by this
    };

    template <class C> std::string describe_task(const C& c, const task_options& o) const {
        std::string s = "task(" + c.describe() + "; weight=" + o.weight.describe();
        if (S != sparsification::none) s += ", density=" + o.density.describe();
        if (S == sparsification::outliers) s += ", gamma=" + o.gamma.describe();
        return s + ")";
    }

    /// w_k * sparsified(tau_k), in double. Branch-free: whether an entry is kept is a coin flip
    /// for the branch predictor (half the entries at density 0.5), so the value is masked instead.
    template <std::size_t J> double sparsified(float tau, std::uint64_t index) const {
        const model_state& s = state_[J];
        if constexpr (S == sparsification::magnitude || S == sparsification::outliers) {
            const std::uint32_t key = method_detail::magnitude_bits(tau);
            return method_detail::keep_if(s.weight * static_cast<double>(tau), (key >= s.lo) & (key < s.hi));
        } else if constexpr (S == sparsification::random) {
            // Not dropping (density >= 1): u < 2 always holds, and the divisor is 1.
            const bool keep = method_detail::dare_uniform(s.key, index) < s.density;
            return method_detail::keep_if(s.weight * (static_cast<double>(tau) / s.rescale), keep);
        } else {
            (void)index;
            return s.weight * static_cast<double>(tau);
        }
    }

    method_detail::task_merge_settings settings_;
    std::tuple<V...> children_;
    std::array<task_options, tasks> options_;
    // Per tensor, set by prepare:
    std::array<model_state, tasks> state_{};
    double lambda_ = 1;
    double divisor_ = 1;
};

/// sum_k w_k theta_k over points (divided by sum_k w_k if normalize): a point.
template <point_expression... P>
    requires(sizeof...(P) >= 1)
class linear_merge : public expression_base {
public:
    using space = point_space;
    static constexpr std::size_t arity = (P::arity + ...);
    static constexpr bool scalar_only = true;
    static constexpr std::size_t models = sizeof...(P);

    linear_merge(bool normalize, task_input<P>... inputs)
        : normalize_(normalize), children_(std::move(inputs.expr)...), options_{std::move(inputs.options)...} {
        for (std::size_t k = 0; k < models; ++k)
            if (!method_detail::is_constant_value(options_[k].density, 1.0f) ||
                !method_detail::is_constant_value(options_[k].gamma, 0.01f))
                throw error("linear: model " + std::to_string(k + 1) + " sets a density or gamma, which linear does not use");
    }

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_METHOD_INLINE T eval(const std::array<T, N>& x, std::uint64_t index = 0) const {
        if constexpr (!std::is_same_v<T, float>) return method_detail::not_per_element<T>();
        else {
            double acc = 0;
            [&]<std::size_t... J>(std::index_sequence<J...>) {
                ((acc += weight_[J] * static_cast<double>(std::get<J>(children_).template eval<I + method_detail::leaf_offset_v<J, P...>>(x, index))), ...);
            }(std::make_index_sequence<models>{});
            return static_cast<float>(acc / divisor_);
        }
    }

    template <class F> void for_each_leaf(F&& f) const {
        std::apply([&](const auto&... c) { (c.for_each_leaf(f), ...); }, children_);
    }

    /// Per tensor: the weights, and the check that they make an affine combination.
    template <std::size_t I, class Ctx> void prepare(const Ctx& ctx) {
        [&]<std::size_t... J>(std::index_sequence<J...>) {
            (detail::prepare_node<I + method_detail::leaf_offset_v<J, P...>>(std::get<J>(children_), ctx), ...);
        }(std::make_index_sequence<models>{});
        double sum = 0;
        for (std::size_t k = 0; k < models; ++k) sum += weight_[k] = method_detail::value_at(options_[k].weight, ctx.site, "linear", "weight", k);
        const std::string name(ctx.site.name);
        if (normalize_) {
            if (std::abs(sum) < 1e-8)
                throw error("linear: the weights sum to " + detail::format_scalar(static_cast<float>(sum)) + " for tensor '" +
                            name + "', so normalize cannot divide by their sum");
            divisor_ = sum;
        } else {
            // Weights that do not sum to 1 give a result that depends on where the origin is: not a model.
            if (!(std::abs(sum - 1.0) <= 1e-6))
                throw error("linear: the weights sum to " + detail::format_scalar(static_cast<float>(sum)) + " for tensor '" +
                            name + "', so the result is not a model; set normalize or make them sum to 1");
            divisor_ = 1;
        }
    }

    [[nodiscard]] std::string describe() const {
        std::string out = std::string("linear(normalize=") + (normalize_ ? "true" : "false") + ";";
        [&]<std::size_t... J>(std::index_sequence<J...>) {
            ((out += (J ? ", " : " ") + std::string("task(") + std::get<J>(children_).describe() + "; weight=" +
                     options_[J].weight.describe() + ")"),
             ...);
        }(std::make_index_sequence<models>{});
        return out + ")";
    }

private:
    bool normalize_;
    std::tuple<P...> children_;
    std::array<task_options, models> options_;
    std::array<double, models> weight_{};
    double divisor_ = 1;
};

/// Spherical interpolation of two points, per tensor (mergekit's slerp): a point.
template <point_expression A, point_expression B> class spherical_interpolation : public detail::binary_node<A, B> {
public:
    using space = point_space;
    static constexpr bool scalar_only = true;

    spherical_interpolation(A a, B b, parameter t) : detail::binary_node<A, B>(std::move(a), std::move(b)), t_(std::move(t)) {}

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_METHOD_INLINE T eval(const std::array<T, N>& x, std::uint64_t index = 0) const {
        if constexpr (!std::is_same_v<T, float>) return method_detail::not_per_element<T>();
        else {
            const double a = this->a_.template eval<I>(x, index), b = this->b_.template eval<I + A::arity>(x, index);
            return static_cast<float>(s0_ * a + s1_ * b);
        }
    }

    /// Per tensor: |a|, |b| and <a, b> in one pass (double, fixed order), then the two coefficients.
    template <std::size_t I, class Ctx> void prepare(const Ctx& ctx) {
        static_assert(std::is_same_v<Ctx, tensor_context>, "merge methods need evaluate's tensor_context (the CPU backend)");
        detail::binary_node<A, B>::template prepare<I>(ctx);
        const double t = t_.at(ctx.site);
        const auto s = backend::cpu::sum_values<I, 3>(ctx, [](std::array<double, 3>& acc, const std::array<float, 2>& v) {
            const double a = v[0], b = v[1];
            acc[0] += a * a;
            acc[1] += b * b;
            acc[2] += a * b;
        }, this->a_, this->b_);
        const double na = std::sqrt(s[0]), nb = std::sqrt(s[1]);
        // A (near-)zero tensor is not normalized (mergekit's eps rule).
        const double dot = s[2] / ((na > 1e-8 ? na : 1.0) * (nb > 1e-8 ? nb : 1.0));
        if (std::abs(dot) > 0.9995) { // (nearly) colinear: the angle is ill-conditioned, interpolate linearly
            s0_ = 1.0 - t;
            s1_ = t;
        } else {
            const double theta = std::acos(dot), sin_theta = std::sin(theta);
            s0_ = std::sin((1.0 - t) * theta) / sin_theta;
            s1_ = std::sin(t * theta) / sin_theta;
        }
    }

    /// The coefficients of a and b for the tensor being evaluated (after prepare).
    [[nodiscard]] std::pair<double, double> coefficients() const noexcept { return {s0_, s1_}; }

    [[nodiscard]] std::string describe() const {
        return "slerp(" + this->a_.describe() + ", " + this->b_.describe() + ", " + t_.describe() + ")";
    }

private:
    parameter t_;
    double s0_ = 1, s1_ = 0;
};

/// v minus its projection on d, per tensor: v - (<v, d> / <d, d>) d (a vector).
template <vector_expression V, vector_expression D> class orthogonalized : public detail::binary_node<V, D> {
public:
    using space = vector_space;
    static constexpr bool scalar_only = true;

    using detail::binary_node<V, D>::binary_node;

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_METHOD_INLINE T eval(const std::array<T, N>& x, std::uint64_t index = 0) const {
        if constexpr (!std::is_same_v<T, float>) return method_detail::not_per_element<T>();
        else {
            const double v = this->a_.template eval<I>(x, index), d = this->b_.template eval<I + V::arity>(x, index);
            return static_cast<float>(v - c_ * d);
        }
    }

    /// Per tensor: <v, d> and <d, d> in one pass (double, fixed order).
    template <std::size_t I, class Ctx> void prepare(const Ctx& ctx) {
        static_assert(std::is_same_v<Ctx, tensor_context>, "merge methods need evaluate's tensor_context (the CPU backend)");
        detail::binary_node<V, D>::template prepare<I>(ctx);
        const auto s = backend::cpu::sum_values<I, 2>(ctx, [](std::array<double, 2>& acc, const std::array<float, 2>& x) {
            const double v = x[0], d = x[1];
            acc[0] += v * d;
            acc[1] += d * d;
        }, this->a_, this->b_);
        c_ = s[1] == 0 ? 0.0 : s[0] / s[1];
    }

    /// <v, d> / <d, d> for the tensor being evaluated (after prepare).
    [[nodiscard]] double coefficient() const noexcept { return c_; }

    [[nodiscard]] std::string describe() const {
        return "orthogonalize(" + this->a_.describe() + ", " + this->b_.describe() + ")";
    }

private:
    double c_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The methods
// ---------------------------------------------------------------------------------------------

/// Task arithmetic: lambda * sum_k w_k tau_k, divided by sum_k w_k with normalize.
template <vector_expression... V>
    requires(sizeof...(V) >= 1)
[[nodiscard]] auto task_arithmetic(const task_arithmetic_options& o, task_input<V>... tasks) {
    return task_merge<sparsification::none, V...>({"task_arithmetic", o.lambda, o.normalize, consensus::none, 0, false},
                                                  std::move(tasks)...);
}

/// TIES: trim each task to its density by magnitude, elect signs, mean of the agreeing entries.
template <vector_expression... V>
    requires(sizeof...(V) >= 1)
[[nodiscard]] auto ties(const ties_options& o, task_input<V>... tasks) {
    return task_merge<sparsification::magnitude, V...>({"ties", o.lambda, o.normalize, o.sign, 0, false}, std::move(tasks)...);
}

/// DARE: drop each entry with probability 1 - density (seeded), rescale, then sum (sign none:
/// dare_linear) or elect signs (sum or count: dare_ties).
template <vector_expression... V>
    requires(sizeof...(V) >= 1)
[[nodiscard]] auto dare(const dare_options& o, task_input<V>... tasks) {
    return task_merge<sparsification::random, V...>({"dare", o.lambda, o.normalize, o.sign, o.seed, o.rescale}, std::move(tasks)...);
}

/// Model breadcrumbs: drop each task's gamma largest and its smallest entries, keeping density.
template <vector_expression... V>
    requires(sizeof...(V) >= 1)
[[nodiscard]] auto breadcrumbs(const breadcrumbs_options& o, task_input<V>... tasks) {
    return task_merge<sparsification::outliers, V...>({"breadcrumbs", o.lambda, o.normalize, o.sign, 0, false}, std::move(tasks)...);
}

/// Magnitude pruning: keep each task's density largest entries, then task arithmetic.
template <vector_expression... V>
    requires(sizeof...(V) >= 1)
[[nodiscard]] auto magnitude_prune(const magnitude_options& o, task_input<V>... tasks) {
    return task_merge<sparsification::magnitude, V...>({"magnitude_prune", o.lambda, o.normalize, consensus::none, 0, false},
                                                       std::move(tasks)...);
}

/// Linear: sum_k w_k theta_k over points. Without normalize the weights must sum to 1 for every
/// tensor (else evaluation throws, naming the tensor): any other sum depends on the origin.
template <point_expression... P>
    requires(sizeof...(P) >= 1)
[[nodiscard]] auto linear(bool normalize, task_input<P>... models) {
    return linear_merge<P...>(normalize, std::move(models)...);
}

/// SLERP from a (t = 0) to b (t = 1).
template <class A, class B>
    requires point_expression<detail::bare<A>> && point_expression<detail::bare<B>>
[[nodiscard]] auto slerp(A&& a, B&& b, const parameter& t) {
    return spherical_interpolation<detail::bare<A>, detail::bare<B>>(std::forward<A>(a), std::forward<B>(b), t);
}

/// v with its component along d removed, per tensor.
template <class V, class D>
    requires vector_expression<detail::bare<V>> && vector_expression<detail::bare<D>>
[[nodiscard]] auto orthogonalize(V&& v, D&& d) {
    return orthogonalized<detail::bare<V>, detail::bare<D>>(std::forward<V>(v), std::forward<D>(d));
}

/// Orthogonalized PaST: target + lambda * orthogonalize(rl - sft, target - base). The skill vector
/// loses its component along the target's own fine-tuning delta, per tensor: what the PaST paper
/// says is (nearly) orthogonal is made exactly so.
template <class T, class R, class S, class B>
    requires point_expression<detail::bare<T>> && point_expression<detail::bare<R>> &&
             point_expression<detail::bare<S>> && point_expression<detail::bare<B>>
[[nodiscard]] auto orthogonal_past(T&& target, R&& rl, S&& sft, B&& base, const parameter& lambda = 1.0f) {
    detail::bare<T> again = target; // a copy of the leaves (cheap: stores are shared, never copied)
    return inject(std::forward<T>(target),
                  orthogonalize(extract(std::forward<R>(rl), std::forward<S>(sft)), extract(std::move(again), std::forward<B>(base))),
                  lambda);
}

// --- misuse: one clear line each ---------------------------------------------------------------

template <class... X>
    requires(sizeof...(X) >= 1) && (!(vector_expression<X> && ...))
method_error::task_methods_take_task_vectors__write_task_of_model_minus_base task_arithmetic(const task_arithmetic_options&, task_input<X>...) = delete;
template <class... X>
    requires(sizeof...(X) >= 1) && (!(vector_expression<X> && ...))
method_error::task_methods_take_task_vectors__write_task_of_model_minus_base ties(const ties_options&, task_input<X>...) = delete;
template <class... X>
    requires(sizeof...(X) >= 1) && (!(vector_expression<X> && ...))
method_error::task_methods_take_task_vectors__write_task_of_model_minus_base dare(const dare_options&, task_input<X>...) = delete;
template <class... X>
    requires(sizeof...(X) >= 1) && (!(vector_expression<X> && ...))
method_error::task_methods_take_task_vectors__write_task_of_model_minus_base breadcrumbs(const breadcrumbs_options&, task_input<X>...) = delete;
template <class... X>
    requires(sizeof...(X) >= 1) && (!(vector_expression<X> && ...))
method_error::task_methods_take_task_vectors__write_task_of_model_minus_base magnitude_prune(const magnitude_options&, task_input<X>...) = delete;
template <class... X>
    requires(sizeof...(X) >= 1) && (!(point_expression<X> && ...))
method_error::linear_takes_points__write_task_of_weights linear(bool, task_input<X>...) = delete;

method_error::a_merge_needs_at_least_one_task task_arithmetic(const task_arithmetic_options&) = delete;
method_error::a_merge_needs_at_least_one_task ties(const ties_options&) = delete;
method_error::a_merge_needs_at_least_one_task dare(const dare_options&) = delete;
method_error::a_merge_needs_at_least_one_task breadcrumbs(const breadcrumbs_options&) = delete;
method_error::a_merge_needs_at_least_one_task magnitude_prune(const magnitude_options&) = delete;
method_error::a_merge_needs_at_least_one_task linear(bool) = delete;

template <class A, class B, class S>
    requires tensor_expression<detail::bare<A>> && tensor_expression<detail::bare<B>> &&
             (!(point_expression<detail::bare<A>> && point_expression<detail::bare<B>>))
method_error::slerp_takes_two_points slerp(A&&, B&&, S&&) = delete;

template <class V, class D>
    requires tensor_expression<detail::bare<V>> && tensor_expression<detail::bare<D>> &&
             (!(vector_expression<detail::bare<V>> && vector_expression<detail::bare<D>>))
method_error::orthogonalize_takes_two_vectors orthogonalize(V&&, D&&) = delete;

template <class T, class R, class S, class B, class... L>
    requires tensor_expression<detail::bare<T>> && tensor_expression<detail::bare<R>> && tensor_expression<detail::bare<S>> &&
             tensor_expression<detail::bare<B>> &&
             (!(point_expression<detail::bare<T>> && point_expression<detail::bare<R>> && point_expression<detail::bare<S>> &&
                point_expression<detail::bare<B>>))
method_error::orthogonal_past_takes_four_points__target_rl_sft_base orthogonal_past(T&&, R&&, S&&, B&&, L&&...) = delete;

} // namespace skillvec

#pragma once
/// \file
/// Expression nodes. They hold structure and scalars, never tensor data: building an expression
/// computes nothing. Evaluation flattens the leaves (the stores) into an array, loads one element
/// (or one SIMD batch) of each, and calls `eval<0>(x)` on the root, so the whole tree is one
/// fused per-element function.
///
/// Node interface:
///   using space;                         point_space or vector_space
///   static constexpr std::size_t arity;  number of leaves below
///   template <std::size_t I, class T, std::size_t N> T eval(const std::array<T, N>& x) const;
///       value of this node given the loaded leaf values; this node's leaves are x[I .. I+arity)
///   template <class F> void for_each_leaf(F&& f) const;   visits the leaves left to right
///   std::string describe() const;        the formula, with operand labels ("t + 0.5 * (rl - sft)")

#include <skillvec/core/config.hpp>
#include <skillvec/core/store.hpp>
#include <skillvec/expr/parameter.hpp>
#include <skillvec/expr/space.hpp>

#include <array>
#include <charconv>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

namespace skillvec {

// ---------------------------------------------------------------------------------------------
// Leaves
// ---------------------------------------------------------------------------------------------

/// A store used as a point (`weights(s)`) or as a vector (`delta(s)`).
///
/// Lifetime: a leaf built from an lvalue store refers to it (no copy); the store must outlive
/// every evaluation of the expression. A leaf built from an rvalue store owns it (moved into a
/// shared_ptr), so expressions stay cheap to copy and never dangle on a temporary.
template <weight_store S, class Space> class store_leaf : public expression_base {
public:
    using space = Space;
    using store_type = S;
    static constexpr std::size_t arity = 1;

    store_leaf(std::shared_ptr<const S> store, std::string label) : store_(std::move(store)), label_(std::move(label)) {}

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_HD T eval(const std::array<T, N>& x, std::uint64_t /*index*/ = 0) const {
        return x[I];
    }
    template <class F> void for_each_leaf(F&& f) const { f(*this); }

    [[nodiscard]] const S& store() const noexcept { return *store_; }
    /// The label given to `weights`/`delta`, else the store's own label, else empty.
    [[nodiscard]] std::string label() const { return label_.empty() ? label_of(*store_, "") : label_; }
    [[nodiscard]] std::string describe() const {
        const std::string l = label();
        return l.empty() ? (std::is_same_v<Space, point_space> ? "weights(?)" : "delta(?)") : l;
    }

private:
    std::shared_ptr<const S> store_;
    std::string label_;
};

namespace detail {
template <class S> std::shared_ptr<const std::remove_cvref_t<S>> hold(S&& s) {
    using T = std::remove_cvref_t<S>;
    if constexpr (std::is_lvalue_reference_v<S>) {
        // Aliasing constructor with an empty owner: a non-owning pointer in owning clothes.
        return std::shared_ptr<const T>(std::shared_ptr<const T>{}, &s);
    } else {
        return std::make_shared<const T>(std::move(s));
    }
}
} // namespace detail

/// The weights held in a store, as a point. `label` names it in error messages ("rl", "sft").
template <class S>
    requires weight_store<std::remove_cvref_t<S>>
[[nodiscard]] auto weights(S&& store, std::string label = {}) {
    return store_leaf<std::remove_cvref_t<S>, point_space>(detail::hold(std::forward<S>(store)), std::move(label));
}

/// A store that holds a vector (for example a saved skill vector), as a vector.
template <class S>
    requires weight_store<std::remove_cvref_t<S>>
[[nodiscard]] auto delta(S&& store, std::string label = {}) {
    return store_leaf<std::remove_cvref_t<S>, vector_space>(detail::hold(std::forward<S>(store)), std::move(label));
}

// ---------------------------------------------------------------------------------------------
// Inner nodes
// ---------------------------------------------------------------------------------------------

namespace detail {
/// Calls the node's per-tensor hook `prepare<I>(ctx)`, if it has one. Evaluation calls it on a
/// copy of the expression before each tensor: per-tensor parameters take their value for that
/// tensor, and merge methods compute the statistics they need (a magnitude threshold, a norm).
/// `I` is the index of the node's first leaf.
template <std::size_t I, class N, class Ctx> void prepare_node(N& n, const Ctx& ctx) {
    if constexpr (requires { n.template prepare<I>(ctx); }) n.template prepare<I>(ctx);
}

/// Storage and leaf traversal of a node with one operand.
template <class A> class unary_node : public expression_base {
public:
    static constexpr std::size_t arity = A::arity;
    static constexpr bool scalar_only = scalar_only_v<A>;
    constexpr explicit unary_node(A a) : a_(std::move(a)) {}
    template <class F> void for_each_leaf(F&& f) const { a_.for_each_leaf(f); }
    template <std::size_t I, class Ctx> void prepare(const Ctx& ctx) { prepare_node<I>(a_, ctx); }
    [[nodiscard]] SKILLVEC_HD const A& inner() const noexcept { return a_; }

protected:
    A a_;
};

/// Storage and leaf traversal of a node with two operands: a's leaves come first, then b's.
template <class A, class B> class binary_node : public expression_base {
public:
    static constexpr std::size_t arity = A::arity + B::arity;
    static constexpr bool scalar_only = scalar_only_v<A> || scalar_only_v<B>;
    constexpr binary_node(A a, B b) : a_(std::move(a)), b_(std::move(b)) {}
    template <class F> void for_each_leaf(F&& f) const {
        a_.for_each_leaf(f);
        b_.for_each_leaf(f);
    }
    [[nodiscard]] SKILLVEC_HD const A& left() const noexcept { return a_; }
    [[nodiscard]] SKILLVEC_HD const B& right() const noexcept { return b_; }
    template <std::size_t I, class Ctx> void prepare(const Ctx& ctx) {
        prepare_node<I>(a_, ctx);
        prepare_node<I + A::arity>(b_, ctx);
    }

protected:
    A a_;
    B b_;
};

/// A scalar of a node: a float, or a per-tensor `parameter` whose value for the tensor being
/// evaluated is put in `value` by `prepare`.
struct node_scalar {
    float value = 0;
    std::shared_ptr<const parameter> per_tensor; ///< null for a plain float

    node_scalar(float v) : value(v) {} // NOLINT(google-explicit-constructor)
    node_scalar(const parameter& p)    // NOLINT(google-explicit-constructor)
        : value(p.is_constant() ? p.constant() : 0.0f),
          per_tensor(p.is_constant() ? nullptr : std::make_shared<const parameter>(p)) {}
    template <class Ctx> void prepare(const Ctx& ctx) {
        if (per_tensor) value = per_tensor->at(ctx.site);
    }
    [[nodiscard]] std::string describe() const { return per_tensor ? per_tensor->describe() : format_scalar(value); }
};
} // namespace detail

/// s * v (vector).
template <vector_expression V> class scaled : public detail::unary_node<V> {
public:
    using space = vector_space;

    /// A factor that is a float, or a `parameter` (a value per tensor).
    scaled(detail::node_scalar factor, V inner) : detail::unary_node<V>(std::move(inner)), factor_(std::move(factor)) {}

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_HD T eval(const std::array<T, N>& x, std::uint64_t i = 0) const {
        return lane_ops<T>::broadcast(factor_.value) * this->a_.template eval<I>(x, i);
    }
    template <std::size_t I, class Ctx> void prepare(const Ctx& ctx) {
        detail::unary_node<V>::template prepare<I>(ctx);
        factor_.prepare(ctx);
    }
    /// The factor (for the tensor being evaluated, if it is per tensor).
    [[nodiscard]] SKILLVEC_HD float factor() const noexcept { return factor_.value; }
    /// The factor as given: a float or a per-tensor parameter.
    [[nodiscard]] const detail::node_scalar& scalar() const noexcept { return factor_; }
    [[nodiscard]] std::string describe() const { return factor_.describe() + " * (" + this->a_.describe() + ")"; }

private:
    detail::node_scalar factor_;
};

/// -v (vector).
template <vector_expression V> class negated : public detail::unary_node<V> {
public:
    using space = vector_space;

    constexpr explicit negated(V inner) : detail::unary_node<V>(std::move(inner)) {}

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_HD T eval(const std::array<T, N>& x, std::uint64_t i = 0) const {
        return -this->a_.template eval<I>(x, i);
    }
    [[nodiscard]] std::string describe() const { return "-(" + this->a_.describe() + ")"; }
};

namespace detail {
template <class E> struct is_scaled : std::false_type {};
template <class V> struct is_scaled<scaled<V>> : std::true_type {};
template <class V> struct is_scaled<negated<scaled<V>>> : std::true_type {};

/// Factor and inner expression of s*v or -(s*v) (the sign moves into the factor, exactly).
template <class V> SKILLVEC_HD float scale_factor(const scaled<V>& s) { return s.factor(); }
template <class V> SKILLVEC_HD float scale_factor(const negated<scaled<V>>& s) { return -s.inner().factor(); }
template <class V> SKILLVEC_HD const V& scale_inner(const scaled<V>& s) { return s.inner(); }
template <class V> SKILLVEC_HD const V& scale_inner(const negated<scaled<V>>& s) { return s.inner().inner(); }

template <class E> struct is_negated : std::false_type {};
template <class V> struct is_negated<negated<V>> : std::true_type {};

/// "a + b", or "a - (c)" when b is -c.
template <class A, class B> std::string describe_sum(const A& a, const B& b) {
    if constexpr (is_negated<B>::value) return a.describe() + " - (" + b.inner().describe() + ")";
    else return a.describe() + " + " + b.describe();
}

/// a + b for two nodes whose leaves start at I and I + A::arity. A scaled operand is folded into
/// a fused multiply-add: `t + l*v` rounds once, the same way on every backend, instead of leaving
/// the choice to the compiler's contraction settings.
template <std::size_t I, class A, class B, class T, std::size_t N>
SKILLVEC_HD T eval_sum(const A& a, const B& b, const std::array<T, N>& x, std::uint64_t i) {
    constexpr std::size_t J = I + A::arity;
    if constexpr (is_scaled<B>::value) {
        return lane_ops<T>::fma(lane_ops<T>::broadcast(scale_factor(b)), scale_inner(b).template eval<J>(x, i),
                                a.template eval<I>(x, i));
    } else if constexpr (is_scaled<A>::value) {
        return lane_ops<T>::fma(lane_ops<T>::broadcast(scale_factor(a)), scale_inner(a).template eval<I>(x, i),
                                b.template eval<J>(x, i));
    } else {
        return a.template eval<I>(x, i) + b.template eval<J>(x, i);
    }
}
} // namespace detail

/// p - q: the vector from q to p (extract).
template <point_expression P, point_expression Q> class difference : public detail::binary_node<P, Q> {
public:
    using space = vector_space;
    using detail::binary_node<P, Q>::binary_node;

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_HD T eval(const std::array<T, N>& x, std::uint64_t i = 0) const {
        return this->a_.template eval<I>(x, i) - this->b_.template eval<I + P::arity>(x, i);
    }
    [[nodiscard]] std::string describe() const { return this->a_.describe() + " - " + this->b_.describe(); }
};

/// x + v, where v is a vector: the result has x's space. With x a point this is p + v, the point v
/// away from p (inject); p is then the *point operand*: non-float tensors pass through from it, and
/// it fixes the output dtype when none is requested. With x a vector it is a vector sum.
template <tensor_expression X, vector_expression V> class sum : public detail::binary_node<X, V> {
public:
    using space = typename X::space;
    using detail::binary_node<X, V>::binary_node;

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_HD T eval(const std::array<T, N>& x, std::uint64_t i = 0) const {
        return detail::eval_sum<I>(this->a_, this->b_, x, i);
    }
    [[nodiscard]] std::string describe() const { return detail::describe_sum(this->a_, this->b_); }
};

/// p + v (a point).
template <point_expression P, vector_expression V> using translation = sum<P, V>;
/// v + w (a vector).
template <vector_expression V, vector_expression W> using vector_sum = sum<V, W>;

/// (1 - t) * a + t * b, for two points (a point) or two vectors (a vector). Computed as
/// fma(t, b, (1 - t) * a), which is exact at t = 0 and t = 1.
template <expression A, expression B>
    requires std::same_as<typename A::space, typename B::space> && tensor_expression<A>
class interpolation : public detail::binary_node<A, B> {
public:
    using space = typename A::space;

    /// t is a float or a `parameter` (a value per tensor).
    interpolation(A a, B b, detail::node_scalar t) : detail::binary_node<A, B>(std::move(a), std::move(b)), t_(std::move(t)) {}

    template <std::size_t I, class T, std::size_t N>
    SKILLVEC_HD T eval(const std::array<T, N>& x, std::uint64_t i = 0) const {
        using ops = lane_ops<T>;
        return ops::fma(ops::broadcast(t_.value), this->b_.template eval<I + A::arity>(x, i),
                        ops::broadcast(1.0f - t_.value) * this->a_.template eval<I>(x, i));
    }
    template <std::size_t I, class Ctx> void prepare(const Ctx& ctx) {
        detail::binary_node<A, B>::template prepare<I>(ctx);
        t_.prepare(ctx);
    }
    [[nodiscard]] float t() const noexcept { return t_.value; }
    /// t as given: a float or a per-tensor parameter.
    [[nodiscard]] const detail::node_scalar& scalar() const noexcept { return t_; }
    [[nodiscard]] std::string describe() const {
        return "lerp(" + this->a_.describe() + ", " + this->b_.describe() + ", " + t_.describe() + ")";
    }

private:
    detail::node_scalar t_;
};

/// The expression as a formula with its operands' labels, e.g. "target + 0.5 * (rl - sft)". Used
/// to record how an output was made.
template <expression E> [[nodiscard]] std::string describe(const E& e) { return e.describe(); }

} // namespace skillvec

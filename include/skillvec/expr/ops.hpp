#pragma once
/// \file
/// The affine algebra over expressions:
///
///   point  - point  -> vector        extract(p, q)
///   point  + vector -> point         inject(p, v, lambda)   (vector + point too)
///   point  - vector -> point
///   vector + vector, vector - vector, -vector, s * vector, vector * s, vector / s -> vector
///   lerp(point, point, t) -> point;  lerp(vector, vector, t) -> vector
///
/// Everything else is a compile error. The forbidden forms are declared `= delete` with a return
/// type that spells out the rule, so the compiler's first error line says what went wrong
/// ("use of deleted function 'skillvec::affine_error::point_plus_point_is_undefined ...'")
/// instead of listing forty candidate overloads. Concepts see them as ill-formed, so tests can
/// `static_assert(!addable<point, point>)`.

#include <skillvec/expr/nodes.hpp>

#include <type_traits>
#include <utility>

namespace skillvec {

/// Empty types whose names are the error messages of forbidden operations.
namespace affine_error {
struct point_plus_point_is_undefined__subtract_them_for_a_vector_or_use_lerp {};
struct scaling_a_point_is_undefined__scale_a_vector_such_as_p_minus_q {};
struct negating_a_point_is_undefined__negate_a_vector_such_as_p_minus_q {};
struct vector_minus_point_is_undefined__write_point_minus_vector {};
struct lerp_needs_two_points_or_two_vectors {};
struct scalars_are_float__write_0_5f_not_0_5 {};
struct inject_needs_a_point_and_a_vector__extract_one_with_rl_minus_sft {};
struct extract_needs_two_points__wrap_stores_with_weights {};
} // namespace affine_error

namespace detail {
template <class E> using bare = std::remove_cvref_t<E>;
}

// --- allowed ---------------------------------------------------------------------------------

/// p - q: the vector that takes q to p.
template <class P, class Q>
    requires point_expression<detail::bare<P>> && point_expression<detail::bare<Q>>
[[nodiscard]] constexpr auto operator-(P&& p, Q&& q) {
    return difference<detail::bare<P>, detail::bare<Q>>(std::forward<P>(p), std::forward<Q>(q));
}

/// p + v: move the point p by v.
template <class P, class V>
    requires point_expression<detail::bare<P>> && vector_expression<detail::bare<V>>
[[nodiscard]] constexpr auto operator+(P&& p, V&& v) {
    return translation<detail::bare<P>, detail::bare<V>>(std::forward<P>(p), std::forward<V>(v));
}

/// v + p: the same as p + v (the point stays the point operand).
template <class V, class P>
    requires vector_expression<detail::bare<V>> && point_expression<detail::bare<P>>
[[nodiscard]] constexpr auto operator+(V&& v, P&& p) {
    return translation<detail::bare<P>, detail::bare<V>>(std::forward<P>(p), std::forward<V>(v));
}

/// -v.
template <class V>
    requires vector_expression<detail::bare<V>>
[[nodiscard]] constexpr auto operator-(V&& v) {
    return negated<detail::bare<V>>(std::forward<V>(v));
}

/// p - v = p + (-v).
template <class P, class V>
    requires point_expression<detail::bare<P>> && vector_expression<detail::bare<V>>
[[nodiscard]] constexpr auto operator-(P&& p, V&& v) {
    return std::forward<P>(p) + (-std::forward<V>(v));
}

/// v + w.
template <class V, class W>
    requires vector_expression<detail::bare<V>> && vector_expression<detail::bare<W>>
[[nodiscard]] constexpr auto operator+(V&& v, W&& w) {
    return vector_sum<detail::bare<V>, detail::bare<W>>(std::forward<V>(v), std::forward<W>(w));
}

/// v - w = v + (-w).
template <class V, class W>
    requires vector_expression<detail::bare<V>> && vector_expression<detail::bare<W>>
[[nodiscard]] constexpr auto operator-(V&& v, W&& w) {
    return std::forward<V>(v) + (-std::forward<W>(w));
}

/// s * v.
template <class V>
    requires vector_expression<detail::bare<V>>
[[nodiscard]] auto operator*(float s, V&& v) {
    return scaled<detail::bare<V>>(s, std::forward<V>(v));
}

/// v * s.
template <class V>
    requires vector_expression<detail::bare<V>>
[[nodiscard]] auto operator*(V&& v, float s) {
    return scaled<detail::bare<V>>(s, std::forward<V>(v));
}

/// v / s, computed as v * (1/s): one rounding of 1/s, then one per element.
template <class V>
    requires vector_expression<detail::bare<V>>
[[nodiscard]] auto operator/(V&& v, float s) {
    return scaled<detail::bare<V>>(1.0f / s, std::forward<V>(v));
}

/// s * v and v * s with a per-tensor factor (a `parameter`: a gradient over layers, filter rules).
template <class V>
    requires vector_expression<detail::bare<V>>
[[nodiscard]] auto operator*(const parameter& s, V&& v) {
    return scaled<detail::bare<V>>(detail::node_scalar(s), std::forward<V>(v));
}

template <class V>
    requires vector_expression<detail::bare<V>>
[[nodiscard]] auto operator*(V&& v, const parameter& s) {
    return scaled<detail::bare<V>>(detail::node_scalar(s), std::forward<V>(v));
}

/// (1 - t) * a + t * b with a per-tensor t.
template <class A, class B>
    requires tensor_expression<detail::bare<A>> && std::same_as<typename detail::bare<A>::space, typename detail::bare<B>::space>
[[nodiscard]] auto lerp(A&& a, B&& b, const parameter& t) {
    return interpolation<detail::bare<A>, detail::bare<B>>(std::forward<A>(a), std::forward<B>(b), detail::node_scalar(t));
}

/// (1 - t) * a + t * b, for two points or two vectors.
template <class A, class B>
    requires tensor_expression<detail::bare<A>> && std::same_as<typename detail::bare<A>::space, typename detail::bare<B>::space>
[[nodiscard]] auto lerp(A&& a, B&& b, float t) {
    return interpolation<detail::bare<A>, detail::bare<B>>(std::forward<A>(a), std::forward<B>(b), t);
}

/// extract(rl, sft) = rl - sft: the skill vector.
template <class P, class Q>
    requires point_expression<detail::bare<P>> && point_expression<detail::bare<Q>>
[[nodiscard]] auto extract(P&& rl, Q&& sft) {
    return std::forward<P>(rl) - std::forward<Q>(sft);
}

/// inject(target, v, lambda) = target + lambda * v.
template <class P, class V>
    requires point_expression<detail::bare<P>> && vector_expression<detail::bare<V>>
[[nodiscard]] auto inject(P&& target, V&& v, float lambda = 1.0f) {
    return std::forward<P>(target) + lambda * std::forward<V>(v);
}

/// past(target, rl, sft, lambda) = target + lambda * (rl - sft): Parametric Skill Transfer.
template <class T, class R, class S>
    requires point_expression<detail::bare<T>> && point_expression<detail::bare<R>> && point_expression<detail::bare<S>>
[[nodiscard]] auto past(T&& target, R&& rl, S&& sft, float lambda = 1.0f) {
    return inject(std::forward<T>(target), extract(std::forward<R>(rl), std::forward<S>(sft)), lambda);
}

/// inject and past with a per-tensor lambda.
template <class P, class V>
    requires point_expression<detail::bare<P>> && vector_expression<detail::bare<V>>
[[nodiscard]] auto inject(P&& target, V&& v, const parameter& lambda) {
    return std::forward<P>(target) + lambda * std::forward<V>(v);
}

template <class T, class R, class S>
    requires point_expression<detail::bare<T>> && point_expression<detail::bare<R>> && point_expression<detail::bare<S>>
[[nodiscard]] auto past(T&& target, R&& rl, S&& sft, const parameter& lambda) {
    return inject(std::forward<T>(target), extract(std::forward<R>(rl), std::forward<S>(sft)), lambda);
}

// --- forbidden: one clear line each ------------------------------------------------------------

template <class P, class Q>
    requires point_expression<detail::bare<P>> && point_expression<detail::bare<Q>>
affine_error::point_plus_point_is_undefined__subtract_them_for_a_vector_or_use_lerp operator+(P&&, Q&&) = delete;

template <class S, class P>
    requires(scalar<S> || non_float_scalar<S>) && point_expression<detail::bare<P>>
affine_error::scaling_a_point_is_undefined__scale_a_vector_such_as_p_minus_q operator*(S, P&&) = delete;

template <class P, class S>
    requires(scalar<S> || non_float_scalar<S>) && point_expression<detail::bare<P>>
affine_error::scaling_a_point_is_undefined__scale_a_vector_such_as_p_minus_q operator*(P&&, S) = delete;

template <class P, class S>
    requires(scalar<S> || non_float_scalar<S>) && point_expression<detail::bare<P>>
affine_error::scaling_a_point_is_undefined__scale_a_vector_such_as_p_minus_q operator/(P&&, S) = delete;

template <class P>
    requires point_expression<detail::bare<P>>
affine_error::scaling_a_point_is_undefined__scale_a_vector_such_as_p_minus_q operator*(const parameter&, P&&) = delete;

template <class P>
    requires point_expression<detail::bare<P>>
affine_error::scaling_a_point_is_undefined__scale_a_vector_such_as_p_minus_q operator*(P&&, const parameter&) = delete;

template <class P>
    requires point_expression<detail::bare<P>>
affine_error::negating_a_point_is_undefined__negate_a_vector_such_as_p_minus_q operator-(P&&) = delete;

template <class V, class P>
    requires vector_expression<detail::bare<V>> && point_expression<detail::bare<P>>
affine_error::vector_minus_point_is_undefined__write_point_minus_vector operator-(V&&, P&&) = delete;

template <class S, class V>
    requires non_float_scalar<S> && vector_expression<detail::bare<V>>
affine_error::scalars_are_float__write_0_5f_not_0_5 operator*(S, V&&) = delete;

template <class V, class S>
    requires non_float_scalar<S> && vector_expression<detail::bare<V>>
affine_error::scalars_are_float__write_0_5f_not_0_5 operator*(V&&, S) = delete;

template <class V, class S>
    requires non_float_scalar<S> && vector_expression<detail::bare<V>>
affine_error::scalars_are_float__write_0_5f_not_0_5 operator/(V&&, S) = delete;

template <class A, class B, class S>
    requires tensor_expression<detail::bare<A>> && tensor_expression<detail::bare<B>> &&
             (!std::same_as<typename detail::bare<A>::space, typename detail::bare<B>::space>)
affine_error::lerp_needs_two_points_or_two_vectors lerp(A&&, B&&, S) = delete;

template <class A, class B, class S>
    requires tensor_expression<detail::bare<A>> && std::same_as<typename detail::bare<A>::space, typename detail::bare<B>::space> &&
             non_float_scalar<S>
affine_error::scalars_are_float__write_0_5f_not_0_5 lerp(A&&, B&&, S) = delete;

template <class P, class V, class... S>
    requires tensor_expression<detail::bare<P>> && tensor_expression<detail::bare<V>> &&
             (!(point_expression<detail::bare<P>> && vector_expression<detail::bare<V>>))
affine_error::inject_needs_a_point_and_a_vector__extract_one_with_rl_minus_sft inject(P&&, V&&, S...) = delete;

template <class P, class V, class S>
    requires point_expression<detail::bare<P>> && vector_expression<detail::bare<V>> && non_float_scalar<S>
affine_error::scalars_are_float__write_0_5f_not_0_5 inject(P&&, V&&, S) = delete;

template <class P, class Q>
    requires tensor_expression<detail::bare<P>> && tensor_expression<detail::bare<Q>> &&
             (!(point_expression<detail::bare<P>> && point_expression<detail::bare<Q>>))
affine_error::extract_needs_two_points__wrap_stores_with_weights extract(P&&, Q&&) = delete;

} // namespace skillvec

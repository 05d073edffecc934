#pragma once
/// \file
/// The affine spaces of expressions: a model's weights are a *point*; the difference of two points
/// is a *vector* (a task or skill vector). Every expression node declares which one it is, and the
/// operators in ops.hpp only exist where the affine algebra defines them.

#include <concepts>
#include <cstddef>
#include <type_traits>

namespace skillvec {

/// Weights of a model: something you can load and run.
struct point_space {};
/// A displacement between two models: something you can add to weights, scale and compare.
struct vector_space {};
/// A reduction (dot, norm, cosine, sparsity): evaluated to numbers, not to tensors.
struct reduction_space {};

/// Common base of every expression node, so operators never capture unrelated types.
struct expression_base {};

/// Any skillvec expression: a node type with a space and a number of leaves (its `arity`).
template <class E>
concept expression = std::derived_from<E, expression_base> && requires {
    typename E::space;
    { E::arity } -> std::convertible_to<std::size_t>;
};

template <class E>
concept point_expression = expression<E> && std::same_as<typename E::space, point_space>;

template <class E>
concept vector_expression = expression<E> && std::same_as<typename E::space, vector_space>;

/// Point or vector: an expression that evaluates to tensors.
template <class E>
concept tensor_expression = point_expression<E> || vector_expression<E>;

template <class E>
concept reduction_expression = expression<E> && std::same_as<typename E::space, reduction_space>;

namespace detail {
/// Whether an expression contains a node that only has a scalar (one element at a time) `eval`:
/// merge methods with per-element branching or random draws. Evaluation then converts inputs with
/// SIMD but evaluates element by element, passing each element's index.
template <class E> inline constexpr bool scalar_only_v = requires { requires E::scalar_only; };
} // namespace detail

/// Scalars in expressions are `float`: computation is in f32, and a silent double would suggest
/// precision that is not there. Write `0.5f`.
template <class S>
concept scalar = std::same_as<std::remove_cvref_t<S>, float>;

/// An arithmetic type other than float, used only to reject it with a clear message.
template <class S>
concept non_float_scalar = std::is_arithmetic_v<std::remove_cvref_t<S>> && !scalar<S>;

} // namespace skillvec

#pragma once
/// \file
/// The weight-store concept: a named set of tensors, each with a dtype, a shape and bytes.
///
/// A type models `weight_store` with two const members:
///
/// \code
///   R   tensor_names() const;                                 // a range of names, in a stable order
///   std::optional<tensor_view> find(std::string_view) const;  // nullopt if there is no such tensor
/// \endcode
///
/// That is all. Optional members, detected at compile time, add capabilities:
///
/// \code
///   std::string label() const;                                  // used in error messages ("rl", a path)
///   void release(std::string_view name) const;                  // the tensor has been consumed: its pages may go
///   void release(std::string_view name, uint64_t offset, uint64_t count) const;  // ... or part of it
///   std::optional<mutable_tensor_view> find_mutable(std::string_view);   // writable: mutable_weight_store
/// \endcode
///
/// `memory_store`, safetensors checkpoints and a model's own parameters all model it, so every
/// expression and reduction works on any of them.

#include <skillvec/core/tensor_view.hpp>

#include <concepts>
#include <cstdint>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>

namespace skillvec {

/// A named set of readable tensors.
template <class S>
concept weight_store = requires(const S& s, std::string_view name) {
    { s.tensor_names() } -> std::ranges::input_range;
    requires std::convertible_to<std::ranges::range_reference_t<decltype(s.tensor_names())>, std::string_view>;
    { s.find(name) } -> std::same_as<std::optional<tensor_view>>;
};

/// A weight store whose tensors can be overwritten in place.
template <class S>
concept mutable_weight_store = weight_store<S> && requires(S& s, std::string_view name) {
    { s.find_mutable(name) } -> std::same_as<std::optional<mutable_tensor_view>>;
};

/// The store's label for messages: `s.label()` if it has one, else `fallback`.
template <weight_store S> [[nodiscard]] std::string label_of(const S& s, std::string fallback) {
    if constexpr (requires { { s.label() } -> std::convertible_to<std::string>; }) {
        std::string l = s.label();
        return l.empty() ? fallback : l;
    } else {
        return fallback;
    }
}

/// Tells a store that `name` has been consumed, if it cares (a mapped file drops the pages).
template <weight_store S> void release(const S& s, std::string_view name) {
    if constexpr (requires { s.release(name); }) s.release(name);
}

/// Tells a store that bytes [offset, offset + count) of `name` have been consumed, if it can
/// release part of a tensor (optional member `release(name, offset, count)`).
template <weight_store S> void release(const S& s, std::string_view name, std::uint64_t offset, std::uint64_t count) {
    if constexpr (requires { s.release(name, offset, count); }) s.release(name, offset, count);
}

} // namespace skillvec

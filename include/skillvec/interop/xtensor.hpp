#pragma once
/// \file
/// xtensor interop: look at a stored tensor as an xtensor expression (zero-copy), or put the
/// value of an xtensor expression into a memory_store. Useful for custom per-tensor work that the
/// affine algebra does not cover, and for checking skillvec against plain xtensor arithmetic.
///
/// \code
///   auto w = skillvec::xview<float>(store.at("w"));       // xt adaptor over the bytes, shape kept
///   double s = xt::sum(xt::cast<double>(w))();           // accumulate in double: xt::sum of floats
///                                                        // accumulates in float and drifts
///   skillvec::add_xexpression(out, "w2", skillvec::dtype::bf16, 2.0f * w);
/// \endcode

#include <skillvec/core/memory_store.hpp>
#include <skillvec/core/tensor_view.hpp>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xexpression.hpp>

#include <string>
#include <vector>

namespace skillvec {

namespace detail {
inline std::vector<std::size_t> xshape(const shape& s) {
    std::vector<std::size_t> out;
    for (auto d : s) out.push_back(static_cast<std::size_t>(d));
    return out;
}
} // namespace detail

/// A read-only xtensor adaptor over a tensor's elements as T (float, double, bfloat16, int32_t, ...).
/// The dtype must be T's; the view may be unaligned. The store must outlive the adaptor.
template <class T> [[nodiscard]] auto xview(const tensor_view& v) {
    const auto elems = v.as<T>();
    return xt::adapt(elems.data(), elems.size(), xt::no_ownership(), detail::xshape(v.dims));
}

/// A writable xtensor adaptor (assigning to it writes the store's bytes).
template <class T> [[nodiscard]] auto xview(const mutable_tensor_view& v) {
    const auto elems = v.as<T>();
    return xt::adapt(elems.data(), elems.size(), xt::no_ownership(), detail::xshape(v.dims));
}

/// A float-kind tensor widened (f16, bf16) or rounded (f64) to f32, as an owning xarray.
[[nodiscard]] inline xt::xarray<float> to_xarray(const tensor_view& v) {
    if (!is_arithmetic(v.type))
        throw error("to_xarray: tensor is " + std::string(name_of(v.type)) + ", not a float kind");
    xt::xarray<float> out = xt::xarray<float>::from_shape(detail::xshape(v.dims));
    for (std::size_t i = 0; i < out.size(); ++i) out.flat(i) = load_as_f32(v.type, v.bytes.data(), i);
    return out;
}

/// Evaluates an xtensor expression and stores it in `store` as a new tensor of float kind `type`
/// (rounded to nearest even).
template <class E>
mutable_tensor_view add_xexpression(memory_store& store, std::string name, dtype type, const xt::xexpression<E>& e) {
    const xt::xarray<float> values = e.derived_cast();
    return store.add_converted(std::move(name), type, shape(values.shape()),
                               std::span<const float>(values.data(), values.size()));
}

} // namespace skillvec

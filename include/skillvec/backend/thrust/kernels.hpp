#pragma once
/// \file
/// Thrust kernels: one fused pass per tensor for element-wise expressions and for reductions,
/// over operands that are already in device memory.
///
/// The arithmetic is the expression's own: `eval_element` and `accumulate_element` below are the
/// only two places that call into the nodes (`eval<0>` and `accumulate_exact`), for every path.
/// Two paths each:
///  - typed: every operand has one dtype of f32, bf16 and f16, and the result is one of those.
///    `thrust::transform` runs over a zip of a counting iterator (the element index) and the
///    operands' typed pointers, which Thrust unpacks for CUB's multi-input transform; bf16/f16
///    are converted in the functor with the library's scalar conversions (SKILLVEC_HD).
///  - dynamic: any other mix (f64, an f32 vector into a bf16 model...), each element loaded
///    through `load_as_f32` on its operand's dtype. Correct for every combination; the dtype
///    branch is uniform across a warp.
/// Reductions run `thrust::transform_reduce` in f64: each element's terms are formed in f64
/// (`accumulate_exact`) and summed in f64, in the order the device system chooses; with CUDA
/// (CUB) that order is fixed for a given GPU and size, so results repeat run to run.
///
/// The expression is handed to the device as an `expr_image`, a byte copy (see there).

#include <skillvec/backend/thrust/backend.hpp>
#include <skillvec/core/config.hpp>
#include <skillvec/core/dtype.hpp>

#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/zip_iterator.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>
#include <thrust/zip_function.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

namespace skillvec::backend::device {

/// A byte copy of an expression, to pass to device code by value. Expression nodes are not
/// trivially copyable (a leaf holds a shared_ptr to its store and a label), but `eval` and
/// `accumulate_exact` read only scalars and child nodes (a leaf returns x[I]); the copy is never
/// constructed or destroyed as an E, only read through `get()` for those calls. The one
/// requirement on nodes: what their arithmetic reads must be stored in the node by value.
template <class E> class expr_image {
public:
    explicit expr_image(const E& e) noexcept { std::memcpy(bytes_, static_cast<const void*>(&e), sizeof(E)); }
    [[nodiscard]] SKILLVEC_HD const E& get() const noexcept { return *reinterpret_cast<const E*>(bytes_); }

private:
    alignas(E) unsigned char bytes_[sizeof(E)];
};

/// The one place element-wise kernels evaluate an expression: element `index` of the tensor,
/// given its operands' values `x`. (Nodes that take the element index get it.)
template <class E, std::size_t N>
SKILLVEC_HD float eval_element(const E& e, const std::array<float, N>& x, std::uint64_t index) {
    if constexpr (requires { e.template eval<0>(x, index); }) return e.template eval<0>(x, index);
    else return e.template eval<0>(x);
}

/// The one place reductions evaluate one: adds element `index`'s terms to `acc` in f64.
template <class E, std::size_t N>
SKILLVEC_HD void accumulate_element(const E& e, double* acc, const std::array<float, N>& x, std::uint64_t index) {
    if constexpr (requires { e.accumulate_exact(acc, x, index); }) e.accumulate_exact(acc, x, index);
    else e.accumulate_exact(acc, x);
}

/// Storage of one element of the dtypes the typed path handles.
template <dtype D> struct element;
template <> struct element<dtype::f32> { using type = float; };
template <> struct element<dtype::bf16> { using type = std::uint16_t; };
template <> struct element<dtype::f16> { using type = std::uint16_t; };
template <dtype D> using element_t = typename element<D>::type;

template <dtype D> SKILLVEC_HD float to_f32(element_t<D> v) noexcept {
    if constexpr (D == dtype::f32) return v;
    else if constexpr (D == dtype::bf16) return bf16_to_f32(v);
    else return f16_to_f32(v);
}
template <dtype D> SKILLVEC_HD element_t<D> from_f32(float v) noexcept {
    if constexpr (D == dtype::f32) return v;
    else if constexpr (D == dtype::bf16) return f32_to_bf16(v);
    else return f32_to_f16(v);
}

/// Sums of a reduction's accumulators, in f64.
template <std::size_t K> struct accumulators {
    double v[K];
};
template <std::size_t K> struct add_accumulators {
    SKILLVEC_HD accumulators<K> operator()(const accumulators<K>& a, const accumulators<K>& b) const {
        accumulators<K> r;
        for (std::size_t k = 0; k < K; ++k) r.v[k] = a.v[k] + b.v[k];
        return r;
    }
};

/// Typed element-wise functor: (index, one value per operand) -> the result's storage.
template <class E, dtype In, dtype Out> struct typed_map_fn {
    expr_image<E> e;
    template <class... V> SKILLVEC_HD element_t<Out> operator()(std::uint64_t i, V... v) const {
        const std::array<float, sizeof...(V)> x{to_f32<In>(v)...};
        return from_f32<Out>(eval_element(e.get(), x, i));
    }
};

/// Typed reduction functor: (index, one value per operand) -> that element's terms.
template <class R, dtype In> struct typed_reduce_fn {
    expr_image<R> e;
    template <class... V> SKILLVEC_HD accumulators<R::accumulators> operator()(std::uint64_t i, V... v) const {
        const std::array<float, sizeof...(V)> x{to_f32<In>(v)...};
        accumulators<R::accumulators> a{};
        accumulate_element(e.get(), a.v, x, i);
        return a;
    }
};

/// Operands of the dynamic path: raw bytes and dtypes, indexed from `first`.
template <std::size_t N> struct dynamic_operands {
    dtype types[N];
    const std::byte* data[N];
    std::uint64_t first; // element index of data[k][0] within the tensor

    SKILLVEC_HD std::array<float, N> load(std::uint64_t i) const {
        std::array<float, N> x{};
        for (std::size_t k = 0; k < N; ++k) x[k] = load_as_f32(types[k], data[k], i - first);
        return x;
    }
};

template <class E, std::size_t N> struct dynamic_map_fn {
    expr_image<E> e;
    dynamic_operands<N> in;
    dtype out_type;
    std::byte* out;
    SKILLVEC_HD void operator()(std::uint64_t i) const {
        store_from_f32(out_type, out, i - in.first, eval_element(e.get(), in.load(i), i));
    }
};

template <class R, std::size_t N> struct dynamic_reduce_fn {
    expr_image<R> e;
    dynamic_operands<N> in;
    SKILLVEC_HD accumulators<R::accumulators> operator()(std::uint64_t i) const {
        accumulators<R::accumulators> a{};
        accumulate_element(e.get(), a.v, in.load(i), i);
        return a;
    }
};

/// Calls f(std::integral_constant<dtype, D>) for f32, bf16 and f16; false for any other dtype.
template <class F> bool with_typed_dtype(dtype t, F&& f) {
    switch (t) {
    case dtype::f32: f(std::integral_constant<dtype, dtype::f32>{}); return true;
    case dtype::bf16: f(std::integral_constant<dtype, dtype::bf16>{}); return true;
    case dtype::f16: f(std::integral_constant<dtype, dtype::f16>{}); return true;
    default: return false;
    }
}

/// The dtype all N operands share, if they share one.
template <std::size_t N> std::optional<dtype> common_dtype(const dtype* t) {
    for (std::size_t k = 1; k < N; ++k)
        if (t[k] != t[0]) return std::nullopt;
    return t[0];
}

/// The zip of the element index (from `first`) and every operand's typed device pointer.
template <dtype In, std::size_t... K>
auto zip_operands(const std::byte* const* in, std::uint64_t first, std::index_sequence<K...>) {
    using T = element_t<In>;
    return thrust::make_zip_iterator(thrust::counting_iterator<std::uint64_t>(first),
                                     thrust::device_pointer_cast(reinterpret_cast<const T*>(in[K]))...);
}

/// Evaluates elements [first, first + n) of a tensor: operand k's values at in[k] (device
/// memory, element `first` first), the result to `out`. `first` is the index the nodes see.
template <class E>
void map_tensor(const E& expr, const dtype* in_types, const std::byte* const* in, dtype out_type, std::byte* out,
                std::uint64_t n, std::uint64_t first) {
    constexpr std::size_t N = E::arity;
    if (n == 0) return;
    const expr_image<E> img(expr);
    bool done = false;
    if (const auto common = common_dtype<N>(in_types)) {
        with_typed_dtype(*common, [&](auto in_tag) {
            done = with_typed_dtype(out_type, [&](auto out_tag) {
                constexpr dtype In = decltype(in_tag)::value, Out = decltype(out_tag)::value;
                const auto zip = zip_operands<In>(in, first, std::make_index_sequence<N>{});
                thrust::transform(thrust::device, zip, zip + static_cast<std::ptrdiff_t>(n),
                                  thrust::device_pointer_cast(reinterpret_cast<element_t<Out>*>(out)),
                                  thrust::make_zip_function(typed_map_fn<E, In, Out>{img}));
            });
        });
    }
    if (done) return;
    dynamic_map_fn<E, N> fn{img, {}, out_type, out};
    for (std::size_t k = 0; k < N; ++k) {
        fn.in.types[k] = in_types[k];
        fn.in.data[k] = in[k];
    }
    fn.in.first = first;
    thrust::for_each_n(thrust::device, thrust::counting_iterator<std::uint64_t>(first), n, fn);
}

/// Adds the reduction's f64 sums over elements [first, first + n) of a tensor to `acc`
/// (R::accumulators values). Operands as for map_tensor.
template <class R>
void reduce_tensor(const R& red, const dtype* in_types, const std::byte* const* in, std::uint64_t n, std::uint64_t first,
                   double* acc) {
    constexpr std::size_t N = R::arity, K = R::accumulators;
    if (n == 0) return;
    const expr_image<R> img(red);
    const accumulators<K> zero{};
    accumulators<K> sum = zero;
    bool done = false;
    if (const auto common = common_dtype<N>(in_types)) {
        done = with_typed_dtype(*common, [&](auto in_tag) {
            constexpr dtype In = decltype(in_tag)::value;
            const auto zip = zip_operands<In>(in, first, std::make_index_sequence<N>{});
            sum = thrust::transform_reduce(thrust::device, zip, zip + static_cast<std::ptrdiff_t>(n),
                                           thrust::make_zip_function(typed_reduce_fn<R, In>{img}), zero,
                                           add_accumulators<K>{});
        });
    }
    if (!done) {
        dynamic_reduce_fn<R, N> fn{img, {}};
        for (std::size_t k = 0; k < N; ++k) {
            fn.in.types[k] = in_types[k];
            fn.in.data[k] = in[k];
        }
        fn.in.first = first;
        sum = thrust::transform_reduce(thrust::device, thrust::counting_iterator<std::uint64_t>(first),
                                       thrust::counting_iterator<std::uint64_t>(first + n), fn, zero, add_accumulators<K>{});
    }
    for (std::size_t k = 0; k < K; ++k) acc[k] += sum.v[k];
}

} // namespace skillvec::backend::device

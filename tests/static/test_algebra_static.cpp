// Compile-time proofs of the affine algebra: what must compile does, what must not compile is
// rejected (the concepts below are false for the forbidden forms). This translation unit has no
// runtime part; building it is the test.
#include <skillvec/skillvec.hpp>

#include <cstdint>

namespace sv = skillvec;

namespace {

using P = decltype(sv::weights(std::declval<const sv::memory_store&>()));
using V = decltype(sv::delta(std::declval<const sv::memory_store&>()));
using PV = decltype(std::declval<P>() - std::declval<P>());   // extract: a vector
using PP = decltype(std::declval<P>() + std::declval<PV>());  // inject: a point

template <class A, class B> concept addable = requires(A a, B b) { a + b; };
template <class A, class B> concept subtractable = requires(A a, B b) { a - b; };
template <class A> concept negatable = requires(A a) { -a; };
template <class S, class A> concept left_scalable = requires(S s, A a) { s * a; };
template <class A, class S> concept right_scalable = requires(A a, S s) { a * s; };
template <class A, class S> concept divisible = requires(A a, S s) { a / s; };
template <class A, class B> concept lerpable = requires(A a, B b) { sv::lerp(a, b, 0.5f); };
template <class A, class B> concept lerpable_double = requires(A a, B b) { sv::lerp(a, b, 0.5); };
template <class A, class B> concept injectable = requires(A a, B b) { sv::inject(a, b, 1.0f); };
template <class A, class B> concept injectable_double = requires(A a, B b) { sv::inject(a, b, 1.0); };
template <class A, class B> concept extractable = requires(A a, B b) { sv::extract(a, b); };
template <class A, class B> concept cosine_ok = requires(A a, B b) { sv::cosine(a, b); };
template <class A, class B> concept dot_ok = requires(A a, B b) { sv::dot(a, b); };
template <class A> concept norm_ok = requires(A a) { sv::norm(a); };
template <class A> concept sparsity_ok = requires(A a) { sv::sparsity(a, 0.0f); };
template <class E> concept evaluable_into_store = requires(E e, sv::memory_store& m) { sv::evaluate(e, m); };

// --- spaces of the leaves and of the results ---------------------------------------------------
static_assert(sv::point_expression<P>);
static_assert(sv::vector_expression<V>);
static_assert(sv::vector_expression<PV>);
static_assert(sv::point_expression<PP>);
static_assert(PP::arity == 3); // t + (rl - sft) has three leaves

// --- what the algebra defines ------------------------------------------------------------------
static_assert(subtractable<P, P>);          // point - point -> vector
static_assert(addable<P, V>);               // point + vector -> point
static_assert(addable<V, P>);               // vector + point -> point
static_assert(subtractable<P, V>);          // point - vector -> point
static_assert(addable<V, V> && subtractable<V, V>);
static_assert(negatable<V>);
static_assert(left_scalable<float, V> && right_scalable<V, float> && divisible<V, float>);
static_assert(lerpable<P, P> && lerpable<V, V>);
static_assert(injectable<P, V> && injectable<P, PV>);
static_assert(extractable<P, P>);
static_assert(cosine_ok<PV, V> && dot_ok<V, V> && norm_ok<V> && sparsity_ok<PV>);
static_assert(sv::point_expression<decltype(std::declval<P>() - std::declval<V>())>);
static_assert(sv::vector_expression<decltype(2.0f * (std::declval<V>() + std::declval<PV>()))>);
static_assert(sv::point_expression<decltype(sv::lerp(std::declval<P>(), std::declval<P>(), 0.3f))>);
static_assert(sv::vector_expression<decltype(sv::lerp(std::declval<V>(), std::declval<V>(), 0.3f))>);
static_assert(sv::point_expression<decltype(sv::past(std::declval<P>(), std::declval<P>(), std::declval<P>(), 1.0f))>);
static_assert(evaluable_into_store<P> && evaluable_into_store<PV>);

// --- what it forbids (each is a deleted overload with a one-line message) ----------------------
static_assert(!addable<P, P>);                  // point + point
static_assert(!addable<P, PP>);
static_assert(!left_scalable<float, P>);        // s * point
static_assert(!right_scalable<P, float>);       // point * s
static_assert(!divisible<P, float>);            // point / s
static_assert(!negatable<P>);                   // -point
static_assert(!subtractable<V, P>);             // vector - point
static_assert(!lerpable<P, V> && !lerpable<V, P>);
static_assert(!injectable<P, P>);               // inject needs a vector
static_assert(!injectable<V, V>);
static_assert(!extractable<P, V> && !extractable<V, V>);
static_assert(!cosine_ok<P, P> && !cosine_ok<PV, P>);   // reductions take vectors
static_assert(!dot_ok<P, V> && !norm_ok<P> && !sparsity_ok<P>);
template <class A, class B> concept compare_ok = requires(A a, B b) { sv::compare(a, b, 0.0f); };
static_assert(compare_ok<PV, V> && !compare_ok<P, P> && !compare_ok<PV, P>);

// --- scalars are float: a double or an int is rejected, never silently promoted ---------------
static_assert(!left_scalable<double, V> && !right_scalable<V, double> && !divisible<V, double>);
static_assert(!left_scalable<int, V> && !right_scalable<V, std::int64_t>);
static_assert(!lerpable_double<P, P>);
static_assert(!injectable_double<P, V>);

// --- reductions and arbitrary types do not mix with the algebra ---------------------------------
using R = decltype(sv::cosine(std::declval<PV>(), std::declval<PV>()));
static_assert(sv::reduction_expression<R>);
static_assert(!addable<R, R> && !addable<P, R> && !left_scalable<float, R>);
static_assert(!addable<P, int> && !addable<int, V>);
static_assert(!evaluable_into_store<R>);

// --- the store and sink concepts -----------------------------------------------------------------
struct not_a_store {
    int tensor_names() const { return 0; }
};
static_assert(!sv::weight_store<not_a_store>);
static_assert(sv::weight_store<sv::memory_store> && sv::mutable_weight_store<sv::memory_store>);
static_assert(sv::weight_sink<sv::memory_store>);
static_assert(sv::weight_sink<sv::overwrite_sink<sv::memory_store>>);
template <class S> concept weights_ok = requires(S s) { sv::weights(s); };
static_assert(!weights_ok<not_a_store> && !weights_ok<int>);

} // namespace

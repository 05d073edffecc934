// Compile-time proofs for recipes over slots (recipe/slot.hpp): what binds does, what must not bind
// is rejected with the rule and the slot's name in the deleted overload's return type. Building
// this translation unit is the test.
#include <skillvec/recipe/slot.hpp>
#include <skillvec/skillvec.hpp>

#include <type_traits>

namespace sv = skillvec;
using sv::arg;
using sv::param;
using sv::slot;
using sv::vector_slot;

namespace {

using store = sv::memory_store;
template <sv::fixed_string N, class X> using B = sv::binding<N, X>;

template <class A, class Bx> concept addable = requires(A a, Bx b) { a + b; };
template <class S, class A> concept left_scalable = requires(S s, A a) { s * a; };
template <class A, class Bx> concept cosine_ok = requires(A a, Bx b) { sv::cosine(a, b); };
template <class A, class Bx> concept lerp_param = requires(A a, Bx b) { sv::lerp(a, b, param<"t">); };
template <class E> concept evaluable = requires(E e, store& m) { sv::evaluate(e, m); };

// --- recipes are compile-time values of the algebra ----------------------------------------------
constexpr auto past = sv::recipes::past;
using R = std::remove_cvref_t<decltype(past)>;
static_assert(sv::point_expression<R>);
static_assert(R::arity == 3);
static_assert(sv::vector_expression<std::remove_cvref_t<decltype(slot<"a"> - slot<"b">)>>);
static_assert(sv::vector_expression<std::remove_cvref_t<decltype(vector_slot<"v">)>>);
static_assert(sv::point_expression<std::remove_cvref_t<decltype(sv::recipes::inject)>>);
static_assert(sv::point_expression<std::remove_cvref_t<decltype(sv::recipes::linear)>>);

// --- the algebra's type errors hold for slots ----------------------------------------------------
using SP = std::remove_cvref_t<decltype(slot<"a">)>;
using SV = std::remove_cvref_t<decltype(slot<"a"> - slot<"b">)>;
static_assert(!addable<SP, SP>);                           // point + point
static_assert(addable<SP, SV> && addable<SV, SV>);
static_assert(!cosine_ok<SP, SP>);                         // cosine of points
static_assert(cosine_ok<SV, SV>);
static_assert(!left_scalable<sv::param_slot<"l">, SP>);    // param * point
static_assert(left_scalable<sv::param_slot<"l">, SV>);
static_assert(!left_scalable<double, SV>);                 // a double factor
static_assert(lerp_param<SP, SP> && lerp_param<SV, SV> && !lerp_param<SP, SV>);

// --- an unbound recipe cannot be evaluated: its leaves are not stores ----------------------------
static_assert(!sv::detail::scalar_only_v<R>);

// --- binding -------------------------------------------------------------------------------------
using T_ = B<"target", store>;
using RL = B<"rl", store>;
using SF = B<"sft", store>;
using LF = B<"lambda", float>;
static_assert(sv::bindable<R, T_, RL, SF, LF>);
static_assert(sv::bindable<R, LF, SF, RL, T_>);                           // any order
static_assert(sv::bindable<R, T_, RL, SF, B<"lambda", sv::parameter>>);   // per-tensor lambda
static_assert(sv::point_expression<decltype(sv::bind(past, std::declval<T_>(), std::declval<RL>(), std::declval<SF>(),
                                                      std::declval<LF>()))>);
static_assert(evaluable<decltype(sv::bind(past, std::declval<T_>(), std::declval<RL>(), std::declval<SF>(), std::declval<LF>()))>);

template <class... Bs> using failure = typename sv::detail::binding_failure<R, Bs...>::type;

// A missing slot, named.
static_assert(!sv::bindable<R, T_, RL, LF>);
static_assert(std::is_same_v<failure<T_, RL, LF>, sv::recipe_error::slot_is_not_bound<"sft">>);
static_assert(!sv::bindable<R, T_, RL, SF>);
static_assert(std::is_same_v<failure<T_, RL, SF>, sv::recipe_error::slot_is_not_bound<"lambda">>);
static_assert(std::is_same_v<failure<>, sv::recipe_error::slot_is_not_bound<"target">>);
// A slot bound twice.
static_assert(!sv::bindable<R, T_, RL, SF, LF, RL>);
static_assert(std::is_same_v<failure<T_, RL, SF, LF, RL>, sv::recipe_error::slot_is_bound_twice<"rl">>);
// A binding for a slot the recipe does not have.
static_assert(!sv::bindable<R, T_, RL, SF, LF, B<"base", store>>);
static_assert(std::is_same_v<failure<T_, RL, SF, LF, B<"base", store>>, sv::recipe_error::recipe_has_no_slot<"base">>);
// A lambda of the wrong kind: a double, a store, a string; a model slot given a float.
static_assert(!sv::bindable<R, T_, RL, SF, B<"lambda", double>>);
static_assert(std::is_same_v<failure<T_, RL, SF, B<"lambda", double>>, sv::recipe_error::param_slots_are_float__write_0_5f_not_0_5<"lambda">>);
static_assert(!sv::bindable<R, T_, RL, SF, B<"lambda", store>>);
static_assert(std::is_same_v<failure<T_, RL, SF, B<"lambda", store>>, sv::recipe_error::param_slot_needs_a_float_or_parameter<"lambda">>);
static_assert(!sv::bindable<R, T_, RL, SF, B<"lambda", const char*>>);
static_assert(!sv::bindable<R, B<"target", float>, RL, SF, LF>);
static_assert(std::is_same_v<failure<B<"target", float>, RL, SF, LF>, sv::recipe_error::model_slot_needs_a_weight_store<"target">>);

// A slot used twice in a recipe is bound once (and both uses get the same store).
constexpr auto twice = slot<"base"> + param<"lambda"> * ((slot<"a"> - slot<"base">) + (slot<"b"> - slot<"base">));
static_assert(sv::bindable<std::remove_cvref_t<decltype(twice)>, B<"base", store>, B<"a", store>, B<"b", store>, LF>);

} // namespace

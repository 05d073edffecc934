#pragma once
/// \file
/// Compile-time recipes: expressions over named *slots* instead of stores, bound to stores later.
///
/// \code
///   using namespace skillvec;
///   constexpr auto recipe = slot<"target"> + param<"lambda"> * (slot<"rl"> - slot<"sft">);  // = recipes::past
///   auto expr = bind(recipe, arg<"target"> = sft_t, arg<"rl"> = rl_s, arg<"sft"> = sft_s, arg<"lambda"> = 1.0f);
///   evaluate(expr, writer);
/// \endcode
///
/// A slot is a point (`slot<"name">`) or a vector (`vector_slot<"name">`, a saved skill vector);
/// `param<"name">` is a scalar bound to a float or a per-tensor `parameter`. Slots take part in
/// the affine algebra like stores do, so `slot<"a"> + slot<"b">` is the usual one-line error.
///
/// `bind` checks the bindings against the recipe at compile time. Each failure is one deleted
/// overload whose return type names the rule and the slot, for example
///   use of deleted function 'skillvec::recipe_error::slot_is_not_bound<skillvec::fixed_string<3>{"rl"}> skillvec::bind(...)'
/// - every slot bound (slot_is_not_bound), none twice (slot_is_bound_twice), no binding for a
///   slot the recipe lacks (recipe_has_no_slot);
/// - a model slot bound to a weight store (model_slot_needs_a_weight_store), a parameter slot to
///   a float or a `parameter` (param_slot_needs_a_float_or_parameter; a double gets
///   param_slots_are_float__write_0_5f_not_0_5).
/// An unbound recipe cannot be evaluated: its leaves are not stores.

#include <skillvec/expr/ops.hpp>
#include <skillvec/expr/reduce.hpp>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace skillvec {

/// A string usable as a template argument: `slot<"rl">`.
template <std::size_t N> struct fixed_string {
    char chars[N]{};
    constexpr fixed_string(const char (&s)[N]) noexcept { std::copy_n(s, N, chars); } // NOLINT(google-explicit-constructor)
    [[nodiscard]] constexpr std::string_view view() const noexcept { return {chars, N - 1}; }
};

template <std::size_t N, std::size_t M>
constexpr bool operator==(const fixed_string<N>& a, const fixed_string<M>& b) noexcept {
    return a.view() == b.view();
}

namespace detail {
template <class> inline constexpr bool dependent_false = false;
}

/// A model placeholder of a recipe: a point (`slot<"rl">`) or a vector (`vector_slot<"v">`).
template <fixed_string Name, class Space> struct slot_leaf : expression_base {
    using space = Space;
    static constexpr std::size_t arity = 1;
    static constexpr auto name = Name;

    template <std::size_t I, class T, std::size_t N> T eval(const std::array<T, N>& x, std::uint64_t = 0) const { return x[I]; }
    template <class F> void for_each_leaf(F&&) const {
        static_assert(detail::dependent_false<F>,
                      "a recipe's slots must be bound to stores before it is evaluated: bind(recipe, arg<\"name\"> = store, ...)");
    }
    [[nodiscard]] std::string describe() const { return std::string(Name.view()); }
};

/// A point slot: the weights of a model, bound later.
template <fixed_string Name> inline constexpr slot_leaf<Name, point_space> slot{};
/// A vector slot: a saved skill vector, bound later.
template <fixed_string Name> inline constexpr slot_leaf<Name, vector_space> vector_slot{};

/// A scalar placeholder: `param<"lambda"> * v`, bound to a float or a per-tensor `parameter`.
template <fixed_string Name> struct param_slot {
    static constexpr auto name = Name;
};
template <fixed_string Name> inline constexpr param_slot<Name> param{};

/// param * v with the factor not yet known: becomes `scaled` when bound.
template <fixed_string Name, vector_expression V> class slot_scaled : public detail::unary_node<V> {
public:
    using space = vector_space;
    static constexpr auto name = Name;
    constexpr explicit slot_scaled(V v) : detail::unary_node<V>(std::move(v)) {}
    template <std::size_t I, class T, std::size_t N> T eval(const std::array<T, N>& x, std::uint64_t i = 0) const {
        return this->a_.template eval<I>(x, i); // never evaluated: bind() replaces this node
    }
    [[nodiscard]] std::string describe() const { return std::string(Name.view()) + " * (" + this->a_.describe() + ")"; }
};

/// lerp(a, b, param) with t not yet known: becomes `interpolation` when bound.
template <fixed_string Name, tensor_expression A, tensor_expression B>
    requires std::same_as<typename A::space, typename B::space>
class slot_interpolation : public detail::binary_node<A, B> {
public:
    using space = typename A::space;
    static constexpr auto name = Name;
    constexpr slot_interpolation(A a, B b) : detail::binary_node<A, B>(std::move(a), std::move(b)) {}
    template <std::size_t I, class T, std::size_t N> T eval(const std::array<T, N>& x, std::uint64_t i = 0) const {
        return this->a_.template eval<I>(x, i); // never evaluated: bind() replaces this node
    }
    [[nodiscard]] std::string describe() const {
        return "lerp(" + this->a_.describe() + ", " + this->b_.describe() + ", " + std::string(Name.view()) + ")";
    }
};

template <fixed_string Name, class V>
    requires vector_expression<std::remove_cvref_t<V>>
[[nodiscard]] constexpr auto operator*(param_slot<Name>, V&& v) {
    return slot_scaled<Name, std::remove_cvref_t<V>>(std::forward<V>(v));
}
template <fixed_string Name, class V>
    requires vector_expression<std::remove_cvref_t<V>>
[[nodiscard]] constexpr auto operator*(V&& v, param_slot<Name>) {
    return slot_scaled<Name, std::remove_cvref_t<V>>(std::forward<V>(v));
}
template <fixed_string Name, class A, class B>
    requires tensor_expression<std::remove_cvref_t<A>> &&
             std::same_as<typename std::remove_cvref_t<A>::space, typename std::remove_cvref_t<B>::space>
[[nodiscard]] constexpr auto lerp(A&& a, B&& b, param_slot<Name>) {
    return slot_interpolation<Name, std::remove_cvref_t<A>, std::remove_cvref_t<B>>(std::forward<A>(a), std::forward<B>(b));
}
template <fixed_string Name, class P>
    requires point_expression<std::remove_cvref_t<P>>
affine_error::scaling_a_point_is_undefined__scale_a_vector_such_as_p_minus_q operator*(param_slot<Name>, P&&) = delete;
template <fixed_string Name, class P>
    requires point_expression<std::remove_cvref_t<P>>
affine_error::scaling_a_point_is_undefined__scale_a_vector_such_as_p_minus_q operator*(P&&, param_slot<Name>) = delete;

// ---------------------------------------------------------------------------------------------
// Bindings
// ---------------------------------------------------------------------------------------------

/// `arg<"rl"> = store` (or `= 0.5f`, `= parameter`): one binding of a slot.
template <fixed_string Name, class X> struct binding {
    static constexpr auto name = Name;
    using value_type = X;
    /// Stores are held like `weights(s)` holds them: by reference if an lvalue, owned if moved in.
    std::conditional_t<weight_store<X>, std::shared_ptr<const X>, X> value;
};

template <fixed_string Name> struct arg_t {
    template <class X> [[nodiscard]] auto operator=(X&& x) const { // NOLINT(misc-unconventional-assign-operator)
        using T = std::remove_cvref_t<X>;
        if constexpr (weight_store<T>) return binding<Name, T>{detail::hold(std::forward<X>(x))};
        else return binding<Name, T>{std::forward<X>(x)};
    }
};
/// Names a slot when binding: `bind(recipe, arg<"rl"> = rl_store, arg<"lambda"> = 0.5f)`.
template <fixed_string Name> inline constexpr arg_t<Name> arg{};

/// Empty types whose names are the messages of bind's compile errors.
namespace recipe_error {
template <fixed_string Name> struct slot_is_not_bound {};
template <fixed_string Name> struct slot_is_bound_twice {};
template <fixed_string Name> struct recipe_has_no_slot {};
template <fixed_string Name> struct model_slot_needs_a_weight_store {};
template <fixed_string Name> struct param_slot_needs_a_float_or_parameter {};
template <fixed_string Name> struct param_slots_are_float__write_0_5f_not_0_5 {};
} // namespace recipe_error

namespace detail {

template <class... T> struct type_list {};

/// Slot kinds: a model (point or vector slot) or a scalar.
template <fixed_string Name, bool Model> struct slot_id {
    static constexpr auto name = Name;
    static constexpr bool model = Model;
};

template <class... L> struct concat;
template <> struct concat<> { using type = type_list<>; };
template <class... A> struct concat<type_list<A...>> { using type = type_list<A...>; };
template <class... A, class... B, class... R> struct concat<type_list<A...>, type_list<B...>, R...> {
    using type = typename concat<type_list<A..., B...>, R...>::type;
};

/// The slots an expression mentions, in leaf order, with repetitions.
template <class E> struct slots_of { using type = type_list<>; }; // stores
template <fixed_string N, class S> struct slots_of<slot_leaf<N, S>> { using type = type_list<slot_id<N, true>>; };
template <fixed_string N, class V> struct slots_of<slot_scaled<N, V>> {
    using type = typename concat<type_list<slot_id<N, false>>, typename slots_of<V>::type>::type;
};
template <fixed_string N, class A, class B> struct slots_of<slot_interpolation<N, A, B>> {
    using type = typename concat<typename slots_of<A>::type, typename slots_of<B>::type, type_list<slot_id<N, false>>>::type;
};
template <template <class> class U, class A>
    requires std::derived_from<U<A>, unary_node<A>>
struct slots_of<U<A>> { using type = typename slots_of<A>::type; };
template <template <class, class> class Bn, class A, class B>
    requires std::derived_from<Bn<A, B>, binary_node<A, B>>
struct slots_of<Bn<A, B>> { using type = typename concat<typename slots_of<A>::type, typename slots_of<B>::type>::type; };

template <class Id, class... Bs> inline constexpr std::size_t times_bound = ((Bs::name == Id::name ? 1u : 0u) + ... + 0u);
template <class B, class L> struct in_recipe;
template <class B, class... Ids> struct in_recipe<B, type_list<Ids...>> : std::bool_constant<((Ids::name == B::name) || ...)> {};
template <class B, class L> struct model_slot_of;
template <class B, class... Ids>
struct model_slot_of<B, type_list<Ids...>> : std::bool_constant<((Ids::name == B::name && Ids::model) || ...)> {};

template <class X> inline constexpr bool scalar_value = std::same_as<X, float> || std::same_as<X, parameter>;

/// The first problem with binding recipe R with bindings Bs, as a recipe_error type; void if none.
template <class R, class... Bs> struct binding_failure {
    using slots = typename slots_of<R>::type;

    template <class L> struct unbound;
    template <class... Ids> struct unbound<type_list<Ids...>> {
        template <class Id, class... Rest> static auto first() {
            if constexpr (times_bound<Id, Bs...> == 0) return recipe_error::slot_is_not_bound<Id::name>{};
            else if constexpr (sizeof...(Rest) > 0) return first<Rest...>();
            else return;
        }
        static auto get() {
            if constexpr (sizeof...(Ids) > 0) return first<Ids...>();
        }
    };

    template <class B, class... Rest> static auto check_bindings() {
        using X = typename B::value_type;
        constexpr bool model = model_slot_of<B, slots>::value;
        if constexpr (times_bound<B, Bs...> > 1) return recipe_error::slot_is_bound_twice<B::name>{};
        else if constexpr (!in_recipe<B, slots>::value) return recipe_error::recipe_has_no_slot<B::name>{};
        else if constexpr (model && !weight_store<X>) return recipe_error::model_slot_needs_a_weight_store<B::name>{};
        else if constexpr (!model && non_float_scalar<X>) return recipe_error::param_slots_are_float__write_0_5f_not_0_5<B::name>{};
        else if constexpr (!model && !scalar_value<X>) return recipe_error::param_slot_needs_a_float_or_parameter<B::name>{};
        else if constexpr (sizeof...(Rest) > 0) return check_bindings<Rest...>();
        else return;
    }
    static auto get() {
        if constexpr (sizeof...(Bs) > 0) {
            using first = decltype(check_bindings<Bs...>());
            if constexpr (!std::is_void_v<first>) return first{};
            else return unbound<slots>::get();
        } else {
            return unbound<slots>::get();
        }
    }
    using type = decltype(get());
};

// --- substitution: the recipe's tree with slots replaced by stores and parameters --------------

template <class Id, class B, class... Bs> const auto& find_binding(const B& b, const Bs&... bs) {
    if constexpr (B::name == Id::name) return b;
    else return find_binding<Id>(bs...);
}

template <class... Bs> struct substituter {
    std::tuple<const Bs&...> bindings;

    template <class Id> const auto& get() const {
        return std::apply([](const auto&... b) -> const auto& { return find_binding<Id>(b...); }, bindings);
    }

    template <class S, class Space> auto operator()(const store_leaf<S, Space>& l) const { return l; }
    template <fixed_string N, class Space> auto operator()(const slot_leaf<N, Space>&) const {
        const auto& b = get<slot_id<N, true>>();
        using S = typename std::remove_cvref_t<decltype(b)>::value_type;
        return store_leaf<S, Space>(b.value, std::string(N.view()));
    }
    template <fixed_string N, class V> auto operator()(const slot_scaled<N, V>& n) const {
        auto inner = (*this)(n.inner());
        return scaled<decltype(inner)>(node_scalar(get<slot_id<N, false>>().value), std::move(inner));
    }
    template <fixed_string N, class A, class B> auto operator()(const slot_interpolation<N, A, B>& n) const {
        auto a = (*this)(n.left());
        auto b = (*this)(n.right());
        return interpolation<decltype(a), decltype(b)>(std::move(a), std::move(b), node_scalar(get<slot_id<N, false>>().value));
    }
    template <class V> auto operator()(const scaled<V>& n) const {
        auto inner = (*this)(n.inner());
        return scaled<decltype(inner)>(n.scalar(), std::move(inner));
    }
    template <class V> auto operator()(const negated<V>& n) const {
        auto inner = (*this)(n.inner());
        return negated<decltype(inner)>(std::move(inner));
    }
    template <class P, class Q> auto operator()(const difference<P, Q>& n) const {
        auto a = (*this)(n.left());
        auto b = (*this)(n.right());
        return difference<decltype(a), decltype(b)>(std::move(a), std::move(b));
    }
    template <class X, class V> auto operator()(const sum<X, V>& n) const {
        auto a = (*this)(n.left());
        auto b = (*this)(n.right());
        return sum<decltype(a), decltype(b)>(std::move(a), std::move(b));
    }
    template <class A, class B> auto operator()(const interpolation<A, B>& n) const {
        auto a = (*this)(n.left());
        auto b = (*this)(n.right());
        return interpolation<decltype(a), decltype(b)>(std::move(a), std::move(b), n.scalar());
    }
    template <class A, class B> auto operator()(const dot_reduction<A, B>& n) const { return dot((*this)(n.left()), (*this)(n.right())); }
    template <class A, class B> auto operator()(const cosine_reduction<A, B>& n) const {
        return cosine((*this)(n.left()), (*this)(n.right()));
    }
    template <class A, class B> auto operator()(const compare_reduction<A, B>& n) const {
        return compare((*this)(n.left()), (*this)(n.right()), n.tolerance());
    }
    template <class A> auto operator()(const norm_reduction<A>& n) const { return norm((*this)(n.inner())); }
    template <class A> auto operator()(const sparsity_reduction<A>& n) const { return sparsity((*this)(n.inner()), n.tolerance()); }
};

} // namespace detail

/// Whether `bind(recipe, bindings...)` is well-formed (for static_assert tests).
template <class R, class... Bs>
concept bindable = requires(const R& r, Bs&&... bs) { bind(r, std::forward<Bs>(bs)...); };

/// The recipe with every slot replaced: a model slot by its store (labelled with the slot's name),
/// a parameter slot by its float or `parameter`. The result is an ordinary expression.
template <expression R, class... Bs>
    requires std::is_void_v<typename detail::binding_failure<R, std::remove_cvref_t<Bs>...>::type>
[[nodiscard]] auto bind(const R& recipe, const Bs&... bindings) {
    return detail::substituter<Bs...>{std::tie(bindings...)}(recipe);
}

/// The first problem with the bindings, as a compile error that names the rule and the slot (GCC
/// prints the return type on the error line; clang prints `Failure` in the candidate note).
template <expression R, class... Bs, class Failure = typename detail::binding_failure<R, std::remove_cvref_t<Bs>...>::type>
    requires(!std::is_void_v<Failure>)
Failure bind(const R&, const Bs&...) = delete;

/// Recipes ready to use.
namespace recipes {
/// Parametric Skill Transfer: target + lambda * (rl - sft).
inline constexpr auto past = slot<"target"> + param<"lambda"> * (slot<"rl"> - slot<"sft">);
/// Task arithmetic with two task vectors: base + lambda * ((a - base) + (b - base)).
inline constexpr auto task_arithmetic = slot<"base"> + param<"lambda"> * ((slot<"a"> - slot<"base">) + (slot<"b"> - slot<"base">));
/// Linear interpolation of two models: (1 - t) * a + t * b.
inline constexpr auto linear = lerp(slot<"a">, slot<"b">, param<"t">);
/// Where round k of iterative PaST starts its RL: this round's SFT model plus the previous
/// round's skill vector, sft + lambda * (prev_rl - prev_sft) (the paper's iterative refinement).
inline constexpr auto iterative_past = slot<"sft"> + param<"lambda"> * (slot<"prev_rl"> - slot<"prev_sft">);
/// Inject a saved skill vector: target + lambda * v.
inline constexpr auto inject = slot<"target"> + param<"lambda"> * vector_slot<"v">;
} // namespace recipes

} // namespace skillvec

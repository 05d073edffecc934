// The merge methods (include/skillvec/recipe/methods.hpp) against independent double-precision
// references (tests/recipe/reference.hpp), on small random tensors of every float dtype and of
// sizes 0 (empty), 1, rank 0, 7, 513, 70000 and 300000 (several tiles, blocks, threads and sink
// ranges; above the direct-selection limit, so thresholds come from the radix select).
//
// Tolerance: the references compute in double from the same f32 task values; the library computes
// in double and rounds once to f32, in a possibly different order (fixed-block sums). So results
// are within 1 ulp of f32 of the reference rounded to f32, and exactly equal where the method is
// exact (a kept mask times the task values). Magnitude thresholds are checked exactly: the kept
// masks must be identical.
#include "../helpers.hpp"
#include "reference.hpp"

#include <skillvec/recipe/methods.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace sv = skillvec;
using sv::dtype;

namespace {

// --- the models ----------------------------------------------------------------------------------

const std::vector<test::tensor_spec> specs = {
    {"model.embed_tokens.weight", dtype::bf16, {7}},
    {"model.layers.0.mlp.up_proj.weight", dtype::f16, {513}},
    {"model.layers.1.self_attn.q_proj.weight", dtype::f32, {70000}},
    {"model.layers.2.mlp.down_proj.weight", dtype::bf16, {1}},
    {"model.layers.3.self_attn.o_proj.weight", dtype::bf16, {70000}},
    {"model.layers.3.input_layernorm.weight", dtype::f32, {0}},
    {"model.norm.weight", dtype::f16, {}},
    {"lm_head.weight", dtype::f32, {300000}}, // more than one range of a range sink (2^18 f32 elements)
};

/// Layer of each tensor, by hand (not via the library's layer_of): 4 layers.
int layer(const std::string& name) {
    for (int l = 0; l < 4; ++l)
        if (name.find("layers." + std::to_string(l) + ".") != std::string::npos) return l;
    return -1;
}

/// parameter::gradient({1, 2, 3, 4}) by hand: layer l of 4 sits at l / 3, i.e. on point l; the
/// embeddings at 0, the final norm at 1.
float gradient_1234(const std::string& name) {
    const int l = layer(name);
    if (l >= 0) return static_cast<float>(l + 1);
    return name.find("embed") != std::string::npos ? 1.0f : 4.0f;
}
sv::parameter gradient_1234() { return sv::parameter::gradient({1.0f, 2.0f, 3.0f, 4.0f}); }

/// Rules: mlp tensors 0.3, layer 1 0.7, else 0.5 (first match wins).
float density_rules(const std::string& name) {
    if (name.find("mlp") != std::string::npos) return 0.3f;
    if (layer(name) == 1) return 0.7f;
    return 0.5f;
}
sv::parameter density_rules() {
    return sv::parameter::rules({{sv::tensor_filter{"mlp"}, 0.3f},
                                 {sv::tensor_filter{"", std::pair{1, 1}}, 0.7f},
                                 {sv::tensor_filter{}, 0.5f}});
}

struct models {
    sv::memory_store base, m1, m2, m3;
    explicit models(const std::vector<test::tensor_spec>& s = specs)
        : base(test::random_store("base", s, 11)), m1(test::perturbed(base, "m1", 12, 0.1f)),
          m2(test::perturbed(base, "m2", 13, 0.1f)), m3(test::perturbed(base, "m3", 14, 0.05f)) {}
};

/// m - base in f32, as the library's `weights(m) - weights(base)` computes it.
std::vector<float> tau(const sv::memory_store& m, const sv::memory_store& b, const std::string& name) {
    const auto x = m.to_f32(name), y = b.to_f32(name);
    std::vector<float> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] - y[i];
    return out;
}

std::vector<float> values(const sv::memory_store& m, const std::string& name) { return m.to_f32(name); }

/// A store of quantized values (multiples of 0.25 in [-2, 2]): magnitudes with many exact ties.
sv::memory_store quantized(const std::string& label, std::uint32_t seed, const std::vector<test::tensor_spec>& s = specs) {
    sv::memory_store out(label);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> q(-8, 8);
    for (const auto& t : s) {
        std::vector<float> v(t.dims.numel());
        for (auto& x : v) x = 0.25f * static_cast<float>(q(rng));
        out.add_converted(t.name, t.type, t.dims, v);
    }
    return out;
}

// --- comparisons -----------------------------------------------------------------------------------

bool same_value(float a, float b) { return std::isnan(a) ? std::isnan(b) : a == b; }

/// Every element within `ulps` of the reference rounded to f32 (NaN matches NaN, Inf itself).
/// Where the result comes from a sum of terms that nearly cancel, a difference of the terms'
/// coefficients in the last bits of double (the statistics are summed in another order) shows as
/// more than 1 ulp of a tiny result: `scale` (the sum of the terms' magnitudes) then allows an
/// absolute 1e-14 * scale.
void check_close(const sv::memory_store& out, const std::string& name, const std::vector<double>& expect, int ulps = 1,
                 const std::vector<double>* scale = nullptr) {
    const auto got = out.to_f32(name);
    REQUIRE(got.size() == expect.size());
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const float e = static_cast<float>(expect[i]);
        const bool ok = (std::isnan(e) || std::isinf(e) || std::isnan(got[i]) || std::isinf(got[i]))
                            ? same_value(got[i], e)
                            : test::ulp_distance(got[i], e) <= ulps ||
                                  (scale && std::abs(got[i] - expect[i]) <= 1e-14 * (*scale)[i]);
        if (!ok && bad++ == 0) first = i;
    }
    INFO("tensor " << name << ": " << bad << " of " << got.size() << " differ; first at " << first << ": got "
                   << (bad ? got[first] : 0.0f) << ", reference " << (bad ? expect[first] : 0.0));
    CHECK(bad == 0);
}

void check_slerp(const sv::memory_store& out, const std::string& name, const std::vector<float>& a, const std::vector<float>& b, float t) {
    std::vector<double> scale;
    const auto expect = ref::slerp(a, b, t, &scale);
    check_close(out, name, expect, 1, &scale);
}

void check_orthogonalize(const sv::memory_store& out, const std::string& name, const std::vector<float>& v, const std::vector<float>& d) {
    std::vector<double> scale;
    const auto expect = ref::orthogonalize(v, d, &scale);
    check_close(out, name, expect, 1, &scale);
}

/// Every element exactly the reference (which must be an f32 value).
void check_exact(const sv::memory_store& out, const std::string& name, const std::vector<double>& expect) {
    const auto got = out.to_f32(name);
    REQUIRE(got.size() == expect.size());
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
        if (!same_value(got[i], static_cast<float>(expect[i])) && bad++ == 0) first = i;
    INFO("tensor " << name << ": " << bad << " of " << got.size() << " differ; first at " << first);
    CHECK(bad == 0);
}

bool same_bits(const sv::memory_store& a, const sv::memory_store& b) {
    if (a.tensor_names() != b.tensor_names()) return false;
    for (const auto& n : a.tensor_names())
        if (!test::same_bits(a.at(n), b.at(n))) return false;
    return true;
}

/// A range sink: collects each tensor from its ranges.
struct range_capture {
    std::map<std::string, std::vector<std::byte>> data;
    std::map<std::string, sv::tensor_info> infos;
    std::span<std::byte> acquire(const sv::tensor_info&) {
        FAIL("acquire() called on a range sink");
        return {};
    }
    void commit(const sv::tensor_info&) {}
    std::span<std::byte> acquire_range(const sv::tensor_info& i, std::uint64_t off, std::uint64_t n) {
        auto& v = data[i.name];
        v.resize(i.nbytes());
        infos[i.name] = i;
        return {v.data() + off, n};
    }
    void commit_range(const sv::tensor_info&, std::uint64_t, std::uint64_t) {}
    /// As a memory_store, to compare with materialize's.
    sv::memory_store store(const std::vector<std::string>& order) const {
        sv::memory_store s;
        for (const auto& n : order) {
            const auto& i = infos.at(n);
            s.add_bytes(n, i.type, i.dims, data.at(n));
        }
        return s;
    }
};
static_assert(sv::range_sink<range_capture>);

/// The expression evaluated five ways: all threads, 1 thread, 2 threads, the scalar fallback, and
/// into a range sink. All must agree bit for bit.
template <class E> sv::memory_store check_invariant(const E& e, const sv::eval_options& opt = {}) {
    auto whole = sv::materialize(e, sv::cpu_backend{}, opt);
    CHECK(same_bits(whole, sv::materialize(e, sv::cpu_backend{.threads = 1}, opt)));
    CHECK(same_bits(whole, sv::materialize(e, sv::cpu_backend{.threads = 2}, opt)));
    CHECK(same_bits(whole, sv::materialize(e, sv::cpu_backend{.threads = 2, .simd = false}, opt)));
    range_capture r;
    sv::evaluate(e, r, sv::cpu_backend{.threads = 2}, opt);
    std::vector<std::string> order;
    for (const auto& n : whole.tensor_names())
        if (whole.at(n).dims.numel() > 0) order.push_back(n);
    auto ranged = r.store(order);
    for (const auto& n : order) CHECK(test::same_bits(whole.at(n), ranged.at(n)));
    return whole;
}

const sv::eval_options f32_out{.out_dtype = dtype::f32};

// --- compile-time rules ------------------------------------------------------------------------------

using point_t = decltype(sv::weights(std::declval<sv::memory_store&>()));
using vector_t = decltype(std::declval<point_t>() - std::declval<point_t>());

template <class X> concept ties_takes = requires(X x) { sv::ties(sv::ties_options{}, sv::task(x)); };
template <class X> concept dare_takes = requires(X x) { sv::dare(sv::dare_options{}, sv::task(x)); };
template <class X> concept arithmetic_takes = requires(X x) { sv::task_arithmetic({}, sv::task(x), sv::task(x)); };
template <class X> concept breadcrumbs_takes = requires(X x) { sv::breadcrumbs({}, sv::task(x)); };
template <class X> concept prune_takes = requires(X x) { sv::magnitude_prune({}, sv::task(x)); };
template <class X> concept linear_takes = requires(X x) { sv::linear(true, sv::task(x)); };
template <class A, class B> concept slerp_takes = requires(A a, B b) { sv::slerp(a, b, 0.5f); };
template <class T> concept slerp_t_is = requires(point_t p, T t) { sv::slerp(p, p, t); };
template <class A, class B> concept orthogonalize_takes = requires(A a, B b) { sv::orthogonalize(a, b); };
template <class R> concept orthogonal_past_rl_is = requires(point_t p, R r) { sv::orthogonal_past(p, r, p, p); };
template <class L> concept orthogonal_past_lambda_is = requires(point_t p, L l) { sv::orthogonal_past(p, p, p, p, l); };
template <class L> concept ties_lambda_is = requires(L l) { sv::ties_options{.lambda = l}; };
template <class L> concept task_weight_is = requires(L l) { sv::task_options{.weight = l}; };
template <class X> concept taskable = requires(X x) { sv::task(x); };
template <class O> concept ties_without_tasks = requires(O o) { sv::ties(o); };

static_assert(ties_takes<vector_t> && !ties_takes<point_t>, "ties takes task vectors, not models");
static_assert(dare_takes<vector_t> && !dare_takes<point_t>);
static_assert(arithmetic_takes<vector_t> && !arithmetic_takes<point_t>);
static_assert(breadcrumbs_takes<vector_t> && !breadcrumbs_takes<point_t>);
static_assert(prune_takes<vector_t> && !prune_takes<point_t>);
static_assert(linear_takes<point_t> && !linear_takes<vector_t>, "linear takes models, not task vectors");
static_assert(slerp_takes<point_t, point_t> && !slerp_takes<vector_t, vector_t> && !slerp_takes<point_t, vector_t>);
static_assert(slerp_t_is<float> && slerp_t_is<sv::parameter> && !slerp_t_is<double> && !slerp_t_is<int>);
static_assert(orthogonalize_takes<vector_t, vector_t> && !orthogonalize_takes<point_t, point_t> &&
              !orthogonalize_takes<vector_t, point_t>);
static_assert(orthogonal_past_rl_is<point_t> && !orthogonal_past_rl_is<vector_t>);
static_assert(orthogonal_past_lambda_is<float> && orthogonal_past_lambda_is<sv::parameter> && !orthogonal_past_lambda_is<double>);
static_assert(ties_lambda_is<float> && ties_lambda_is<sv::parameter> && !ties_lambda_is<double> && !ties_lambda_is<int>,
              "a double lambda is a compile error, like every scalar of the algebra");
static_assert(task_weight_is<float> && !task_weight_is<double>);
static_assert(taskable<point_t> && taskable<vector_t> && !taskable<float> &&
              !taskable<decltype(sv::cosine(std::declval<vector_t>(), std::declval<vector_t>()))>);
static_assert(!ties_without_tasks<sv::ties_options>, "a merge needs at least one task");

using ties_t = decltype(sv::ties({}, sv::task(std::declval<vector_t>()), sv::task(std::declval<vector_t>())));
static_assert(sv::vector_expression<ties_t> && sv::detail::scalar_only_v<ties_t> && ties_t::arity == 4);
static_assert(sv::point_expression<decltype(std::declval<point_t>() + std::declval<ties_t>())>);
static_assert(sv::detail::scalar_only_v<decltype(std::declval<point_t>() + std::declval<ties_t>())>);
static_assert(sv::point_expression<decltype(sv::linear(true, sv::task(std::declval<point_t>())))>);
static_assert(sv::point_expression<decltype(sv::slerp(std::declval<point_t>(), std::declval<point_t>(), 0.5f))>);
static_assert(sv::vector_expression<decltype(sv::orthogonalize(std::declval<vector_t>(), std::declval<vector_t>()))>);
static_assert(sv::point_expression<decltype(sv::orthogonal_past(std::declval<point_t>(), std::declval<point_t>(),
                                                                std::declval<point_t>(), std::declval<point_t>()))>);

} // namespace

// --- the DARE hash ----------------------------------------------------------------------------------

TEST_CASE("the DARE hash matches its documented constants", "[methods][dare]") {
    for (std::uint64_t seed : {0ull, 1ull, 0xDEADBEEFull})
        for (std::uint64_t k : {0ull, 2ull})
            for (std::uint64_t i : {0ull, 1ull, 12345ull, (1ull << 40) + 7}) {
                const std::uint64_t key = sv::method_detail::dare_key(seed, k, "model.layers.0.mlp.up_proj.weight");
                CHECK(sv::method_detail::dare_uniform(key, i) == ref::dare_u(seed, k, "model.layers.0.mlp.up_proj.weight", i));
            }
    // SplitMix64 of 0 is a published value; FNV-1a of "" is the offset basis, of "a" a published value.
    CHECK(sv::method_detail::mix64(0) == 0xE220A8397B1DCDAFull);
    CHECK(sv::method_detail::fnv1a64("") == 0xcbf29ce484222325ull);
    CHECK(sv::method_detail::fnv1a64("a") == 0xaf63dc4c8601ec8cull);
}

// --- task arithmetic ----------------------------------------------------------------------------

TEST_CASE("task_arithmetic matches the reference: per-tensor and negative weights, lambda per tensor, normalize",
          "[methods][task_arithmetic]") {
    models m;
    auto base = sv::weights(m.base, "base");
    for (bool normalize : {false, true}) {
        INFO("normalize " << normalize);
        auto e = sv::task_arithmetic({.lambda = density_rules(), .normalize = normalize},
                                     sv::task(sv::weights(m.m1, "m1") - base, {.weight = gradient_1234()}),
                                     sv::task(sv::weights(m.m2, "m2") - base, {.weight = -0.5f}),
                                     sv::task(sv::weights(m.m3, "m3") - base, {.weight = 0.25f}));
        const auto out = check_invariant(e);
        for (const auto& s : specs) {
            const auto expect = ref::merge({.normalize = normalize, .lambda = density_rules(s.name)}, s.name,
                                           {{tau(m.m1, m.base, s.name), gradient_1234(s.name)},
                                            {tau(m.m2, m.base, s.name), -0.5f},
                                            {tau(m.m3, m.base, s.name), 0.25f}});
            check_close(out, s.name, expect);
        }
    }
}

TEST_CASE("task_arithmetic with weights summing to zero does not divide by zero", "[methods][task_arithmetic]") {
    models m;
    auto base = sv::weights(m.base);
    auto e = sv::task_arithmetic({.normalize = true}, sv::task(sv::weights(m.m1) - base, {.weight = 1.0f}),
                                 sv::task(sv::weights(m.m2) - base, {.weight = -1.0f}));
    const auto out = sv::materialize(e);
    for (const auto& s : specs)
        check_close(out, s.name, ref::merge({.normalize = true}, s.name, {{tau(m.m1, m.base, s.name), 1.0f}, {tau(m.m2, m.base, s.name), -1.0f}}));
}

// --- TIES and magnitude pruning -----------------------------------------------------------------------

TEST_CASE("magnitude_prune keeps exactly the reference's mask, ties at the threshold included", "[methods][magnitude]") {
    // One task, weight 1, lambda 1: the output is tau where kept and 0 elsewhere, exactly.
    models m;
    const auto qb = quantized("qbase", 21), qm = quantized("qm", 22);
    for (float density : {0.0f, 1e-7f, 0.1f, 0.5f, 0.999f, 1.0f, 1.5f, -0.5f}) {
        INFO("density " << density);
        for (bool with_ties : {false, true}) {
            INFO("quantized (many exact ties) " << with_ties);
            const auto& b = with_ties ? qb : m.base;
            const auto& x = with_ties ? qm : m.m1;
            const auto out = check_invariant(sv::magnitude_prune({}, sv::task(sv::weights(x) - sv::weights(b), {.density = density})));
            for (const auto& s : specs) {
                const auto t = tau(x, b, s.name);
                const auto mask = ref::magnitude_mask(t, density);
                std::vector<double> expect(t.size());
                for (std::size_t i = 0; i < t.size(); ++i) expect[i] = mask[i] ? t[i] : 0.0;
                check_exact(out, s.name, expect);
                if (with_ties && density > 0 && density < 1 && t.size() > 100) {
                    // The threshold's ties are all kept: more than floor(density n) survive.
                    std::size_t kept = 0;
                    for (bool k : mask) kept += k;
                    CHECK(kept > static_cast<std::size_t>(static_cast<double>(density) * static_cast<double>(t.size())));
                }
            }
        }
    }
}

TEST_CASE("ties matches the reference: sum and count election, normalize, per-tensor densities and weights",
          "[methods][ties]") {
    models m;
    const auto qb = quantized("qbase", 31), q1 = quantized("q1", 32), q2 = quantized("q2", 33), q3 = quantized("q3", 34);
    for (bool with_ties : {false, true}) {
        const auto& B = with_ties ? qb : m.base;
        const auto& M1 = with_ties ? q1 : m.m1;
        const auto& M2 = with_ties ? q2 : m.m2;
        const auto& M3 = with_ties ? q3 : m.m3;
        auto base = sv::weights(B, "base");
        for (auto sign : {sv::consensus::sum, sv::consensus::count, sv::consensus::none})
            for (bool normalize : {true, false}) {
                INFO("quantized " << with_ties << ", consensus " << static_cast<int>(sign) << ", normalize " << normalize);
                auto e = sv::ties({.lambda = 0.7f, .normalize = normalize, .sign = sign},
                                  sv::task(sv::weights(M1, "m1") - base, {.weight = gradient_1234(), .density = density_rules()}),
                                  sv::task(sv::weights(M2, "m2") - base, {.weight = 0.5f, .density = 0.2f}),
                                  sv::task(sv::weights(M3, "m3") - base, {.weight = -1.0f, .density = 1.0f}));
                const auto out = check_invariant(e);
                const ref::election el = sign == sv::consensus::sum   ? ref::election::sum
                                         : sign == sv::consensus::count ? ref::election::count
                                                                        : ref::election::none;
                for (const auto& s : specs) {
                    const auto expect = ref::merge(
                        {.method = ref::sparsify::magnitude, .sign = el, .normalize = normalize, .lambda = 0.7f}, s.name,
                        {{tau(M1, B, s.name), gradient_1234(s.name), density_rules(s.name)},
                         {tau(M2, B, s.name), 0.5f, 0.2f},
                         {tau(M3, B, s.name), -1.0f, 1.0f}});
                    check_close(out, s.name, expect);
                }
            }
    }
}

TEST_CASE("ties with an all-zero task vector: zeros never agree with the elected sign", "[methods][ties]") {
    models m;
    auto base = sv::weights(m.base);
    auto e = sv::ties({}, sv::task(sv::weights(m.base) - base, {.density = 0.5f}), sv::task(sv::weights(m.m1) - base, {.density = 0.5f}));
    const auto out = check_invariant(e);
    for (const auto& s : specs) {
        // The zero task neither contributes nor counts in the divisor: the result is m1's trimmed delta.
        const auto t = tau(m.m1, m.base, s.name);
        const auto mask = ref::magnitude_mask(t, 0.5f);
        std::vector<double> expect(t.size());
        for (std::size_t i = 0; i < t.size(); ++i) expect[i] = mask[i] ? t[i] : 0.0;
        check_exact(out, s.name, expect);
    }
}

// --- breadcrumbs ----------------------------------------------------------------------------------

TEST_CASE("breadcrumbs keeps exactly the reference's band, for every edge of density and gamma", "[methods][breadcrumbs]") {
    models m;
    const auto qb = quantized("qbase", 41), qm = quantized("qm", 42);
    const std::pair<float, float> cases[] = {
        {0.5f, 0.01f}, {0.9f, 0.2f} /* n_bot < 0 */, {0.3f, 0.0f}, {0.0f, 0.1f}, {1.0f, 0.5f} /* density 1 keeps all */,
        {0.2f, 1.0f} /* gamma 1 */, {0.5f, 0.5f} /* n_bot == 0 */, {0.999f, 0.001f}, {1e-7f, 0.01f}};
    for (auto [density, gamma] : cases)
        for (bool with_ties : {false, true}) {
            INFO("density " << density << ", gamma " << gamma << ", quantized " << with_ties);
            const auto& b = with_ties ? qb : m.base;
            const auto& x = with_ties ? qm : m.m1;
            const auto out = check_invariant(
                sv::breadcrumbs({}, sv::task(sv::weights(x) - sv::weights(b), {.density = density, .gamma = gamma})));
            for (const auto& s : specs) {
                const auto t = tau(x, b, s.name);
                const auto mask = ref::outlier_mask(t, density, gamma);
                std::vector<double> expect(t.size());
                for (std::size_t i = 0; i < t.size(); ++i) expect[i] = mask[i] ? t[i] : 0.0;
                check_exact(out, s.name, expect);
            }
        }
}

TEST_CASE("breadcrumbs over several tasks matches the reference, with and without sign election", "[methods][breadcrumbs]") {
    models m;
    auto base = sv::weights(m.base, "base");
    for (auto sign : {sv::consensus::none, sv::consensus::sum}) {
        auto e = sv::breadcrumbs({.lambda = gradient_1234(), .normalize = true, .sign = sign},
                                 sv::task(sv::weights(m.m1) - base, {.weight = 0.6f, .density = density_rules(), .gamma = 0.05f}),
                                 sv::task(sv::weights(m.m2) - base, {.weight = -0.4f, .density = 0.8f, .gamma = 0.1f}),
                                 sv::task(sv::weights(m.m3) - base, {.density = 0.4f}));
        const auto out = check_invariant(e);
        for (const auto& s : specs)
            check_close(out, s.name,
                        ref::merge({.method = ref::sparsify::outliers,
                                    .sign = sign == sv::consensus::sum ? ref::election::sum : ref::election::none,
                                    .normalize = true, .lambda = gradient_1234(s.name)},
                                   s.name,
                                   {{tau(m.m1, m.base, s.name), 0.6f, density_rules(s.name), 0.05f},
                                    {tau(m.m2, m.base, s.name), -0.4f, 0.8f, 0.1f},
                                    {tau(m.m3, m.base, s.name), 1.0f, 0.4f, 0.01f}}));
    }
}

// --- DARE ----------------------------------------------------------------------------------------

TEST_CASE("dare matches the reference, which recomputes every draw from the documented hash", "[methods][dare]") {
    models m;
    auto base = sv::weights(m.base, "base");
    struct variant {
        sv::consensus sign;
        bool normalize, rescale;
        std::uint64_t seed;
    };
    for (const variant v : {variant{sv::consensus::none, false, true, 0}, variant{sv::consensus::sum, true, true, 7},
                            variant{sv::consensus::count, false, false, 123456789}, variant{sv::consensus::none, true, false, 1}}) {
        INFO("consensus " << static_cast<int>(v.sign) << ", normalize " << v.normalize << ", rescale " << v.rescale << ", seed " << v.seed);
        auto e = sv::dare({.lambda = 1.5f, .normalize = v.normalize, .sign = v.sign, .seed = v.seed, .rescale = v.rescale},
                          sv::task(sv::weights(m.m1) - base, {.weight = gradient_1234(), .density = density_rules()}),
                          sv::task(sv::weights(m.m2) - base, {.weight = -0.5f, .density = 0.9f}),
                          sv::task(sv::weights(m.m3) - base, {.weight = 0.5f, .density = 1.0f}));
        const auto out = check_invariant(e);
        const ref::election el = v.sign == sv::consensus::sum ? ref::election::sum
                                 : v.sign == sv::consensus::count ? ref::election::count
                                                                  : ref::election::none;
        for (const auto& s : specs)
            check_close(out, s.name,
                        ref::merge({.method = ref::sparsify::random, .sign = el, .normalize = v.normalize, .rescale = v.rescale,
                                    .lambda = 1.5f, .seed = v.seed},
                                   s.name,
                                   {{tau(m.m1, m.base, s.name), gradient_1234(s.name), density_rules(s.name)},
                                    {tau(m.m2, m.base, s.name), -0.5f, 0.9f},
                                    {tau(m.m3, m.base, s.name), 0.5f, 1.0f}}));
    }
}

TEST_CASE("dare is reproducible under its seed, differs across seeds, and keeps density of the entries",
          "[methods][dare]") {
    models m;
    auto base = sv::weights(m.base);
    auto make = [&](std::uint64_t seed, float density) {
        return sv::dare({.seed = seed}, sv::task(sv::weights(m.m1) - base, {.density = density}));
    };
    const auto a = check_invariant(make(42, 0.3f)); // whole, 1 and 2 threads, scalar, range sink: bit-identical
    CHECK(same_bits(a, sv::materialize(make(42, 0.3f))));
    const auto b = sv::materialize(make(43, 0.3f));
    const std::string big = "model.layers.1.self_attn.q_proj.weight";
    const auto xa = a.to_f32(big), xb = b.to_f32(big), t = tau(m.m1, m.base, big);
    std::size_t differ = 0, kept = 0, nonzero = 0;
    for (std::size_t i = 0; i < xa.size(); ++i) {
        differ += xa[i] != xb[i];
        nonzero += t[i] != 0;
        kept += xa[i] != 0;
        if (xa[i] != 0) CHECK(xa[i] == static_cast<float>(static_cast<double>(t[i]) / static_cast<double>(0.3f))); // rescaled
    }
    CHECK(differ > xa.size() / 4);
    REQUIRE(nonzero == t.size());
    const double n = static_cast<double>(t.size()), p = 0.3, sigma = std::sqrt(n * p * (1 - p));
    CHECK(std::abs(static_cast<double>(kept) - n * p) < 4 * sigma);
    // The stream depends on the task's position: the same vector as task 1 and task 2 drops differently.
    const auto two = sv::materialize(sv::dare({.seed = 42}, sv::task(sv::weights(m.m1) - base, {.weight = 1.0f, .density = 0.3f}),
                                              sv::task(sv::weights(m.m1) - base, {.weight = 0.0f, .density = 0.3f})));
    CHECK(same_bits(a, two)); // task 2 has weight 0: the result is task 1's, the same stream as alone
}

// --- linear ------------------------------------------------------------------------------------------

TEST_CASE("linear matches the reference, normalized or with weights summing to 1", "[methods][linear]") {
    models m;
    const auto a = check_invariant(sv::linear(false, sv::task(sv::weights(m.m1), {.weight = 0.2f}),
                                              sv::task(sv::weights(m.m2), {.weight = 0.3f}),
                                              sv::task(sv::weights(m.m3), {.weight = 0.5f})),
                                   f32_out);
    const auto b = check_invariant(sv::linear(true, sv::task(sv::weights(m.m1), {.weight = gradient_1234()}),
                                              sv::task(sv::weights(m.m2), {.weight = -1.0f}),
                                              sv::task(sv::weights(m.m3), {.weight = 3.0f})),
                                   f32_out);
    for (const auto& s : specs) {
        const std::vector<std::vector<float>> th = {values(m.m1, s.name), values(m.m2, s.name), values(m.m3, s.name)};
        check_close(a, s.name, ref::linear(th, {0.2f, 0.3f, 0.5f}, false));
        check_close(b, s.name, ref::linear(th, {gradient_1234(s.name), -1.0f, 3.0f}, true));
    }
    // A point result keeps the first model's dtypes by default.
    const auto native = sv::materialize(sv::linear(true, sv::task(sv::weights(m.m1)), sv::task(sv::weights(m.m2))));
    for (const auto& s : specs) CHECK(native.at(s.name).type == s.type);
}

TEST_CASE("linear without normalize throws, naming the tensor and the sum, when the weights do not sum to 1",
          "[methods][linear]") {
    models m;
    auto e = sv::linear(false, sv::task(sv::weights(m.m1), {.weight = 0.5f}), sv::task(sv::weights(m.m2), {.weight = 0.8f}));
    CHECK_THROWS_WITH(sv::materialize(e), Catch::Contains("linear: the weights sum to 1.3 for tensor 'model.embed_tokens.weight'") &&
                                              Catch::Contains("set normalize or make them sum to 1"));
    // Per-tensor weights that are fine everywhere but in layer 1.
    auto w1 = sv::parameter::rules({{sv::tensor_filter{"layers.1."}, 0.6f}, {sv::tensor_filter{}, 0.5f}});
    auto f = sv::linear(false, sv::task(sv::weights(m.m1), {.weight = w1}), sv::task(sv::weights(m.m2), {.weight = 0.5f}));
    CHECK_THROWS_WITH(sv::materialize(f), Catch::Contains("sum to 1.1 for tensor 'model.layers.1.self_attn.q_proj.weight'"));
    // normalize with weights summing to 0 cannot divide.
    auto g = sv::linear(true, sv::task(sv::weights(m.m1), {.weight = 1.0f}), sv::task(sv::weights(m.m2), {.weight = -1.0f}));
    CHECK_THROWS_WITH(sv::materialize(g), Catch::Contains("normalize cannot divide"));
}

// --- SLERP ------------------------------------------------------------------------------------------

TEST_CASE("slerp matches mergekit's formula: per-tensor t, the colinear fallback, zero tensors", "[methods][slerp]") {
    models m;
    for (float t : {0.0f, 0.3f, 1.0f, 0.75f}) {
        INFO("t " << t);
        const auto out = check_invariant(sv::slerp(sv::weights(m.m1), sv::weights(m.m2), t), f32_out);
        for (const auto& s : specs) check_slerp(out, s.name, values(m.m1, s.name), values(m.m2, s.name), t);
    }
    // t per tensor: 0.25 for mlp tensors, 0.6 elsewhere.
    auto tp = sv::parameter::rules({{sv::tensor_filter{"mlp"}, 0.25f}, {sv::tensor_filter{}, 0.6f}});
    const auto out = check_invariant(sv::slerp(sv::weights(m.m1), sv::weights(m.m3), tp), f32_out);
    for (const auto& s : specs) {
        const float t = s.name.find("mlp") != std::string::npos ? 0.25f : 0.6f;
        check_slerp(out, s.name, values(m.m1, s.name), values(m.m3, s.name), t);
    }
    // Colinear (b = 2a, exactly): |cos| = 1 > 0.9995, so linear interpolation; and a zero tensor,
    // which is not normalized (cos = 0, a quarter turn).
    sv::memory_store a("a"), b("b"), z("z");
    for (const auto& s : specs) {
        const auto v = values(m.m1, s.name);
        std::vector<float> twice(v.size()), zero(v.size(), 0.0f);
        for (std::size_t i = 0; i < v.size(); ++i) twice[i] = 2 * v[i];
        a.add_converted(s.name, dtype::f32, s.dims, v);
        b.add_converted(s.name, dtype::f32, s.dims, twice);
        z.add_converted(s.name, dtype::f32, s.dims, zero);
    }
    const auto col = check_invariant(sv::slerp(sv::weights(a), sv::weights(b), 0.3f));
    const auto from_zero = check_invariant(sv::slerp(sv::weights(z), sv::weights(a), 0.3f));
    for (const auto& s : specs) {
        const auto va = values(a, s.name), vb = values(b, s.name), vz = values(z, s.name);
        std::vector<double> lerp(va.size());
        for (std::size_t i = 0; i < va.size(); ++i) lerp[i] = 0.7 * va[i] + 0.3 * vb[i];
        check_slerp(col, s.name, va, vb, 0.3f);
        if (!va.empty()) check_close(col, s.name, lerp, 2); // 0.7 and 0.3 are the float's, not exact decimals
        check_slerp(from_zero, s.name, vz, va, 0.3f);
    }
}

// --- orthogonalization ----------------------------------------------------------------------------------

TEST_CASE("orthogonalize matches the reference and leaves a vector orthogonal to d", "[methods][orthogonal]") {
    models m;
    auto base = sv::weights(m.base);
    auto v = sv::weights(m.m1) - sv::weights(m.m2);
    auto d = sv::weights(m.m3) - base;
    const auto out = check_invariant(sv::orthogonalize(v, d));
    for (const auto& s : specs) {
        const auto vv = tau(m.m1, m.m2, s.name), dd = tau(m.m3, m.base, s.name);
        check_orthogonalize(out, s.name, vv, dd);
        const auto o = out.to_f32(s.name);
        double od = 0, oo = 0, ddd = 0;
        for (std::size_t i = 0; i < o.size(); ++i) {
            od += static_cast<double>(o[i]) * dd[i];
            oo += static_cast<double>(o[i]) * o[i];
            ddd += static_cast<double>(dd[i]) * dd[i];
        }
        if (o.size() > 1) CHECK(std::abs(od) <= 1e-6 * std::sqrt(oo * ddd));
    }
    // d = 0 (the target is the base): nothing to remove.
    const auto same = sv::materialize(sv::orthogonalize(v, sv::weights(m.base) - base));
    for (const auto& s : specs) {
        const auto t = tau(m.m1, m.m2, s.name);
        check_exact(same, s.name, std::vector<double>(t.begin(), t.end()));
    }
}

TEST_CASE("orthogonal_past is target + lambda * orthogonalize(rl - sft, target - base), fused", "[methods][orthogonal]") {
    models m; // roles: base = pretrained, m1 = target (SFT on new documents), m2 = sft, m3 = rl
    const auto fused = check_invariant(sv::orthogonal_past(sv::weights(m.m1, "target"), sv::weights(m.m3, "rl"), sv::weights(m.m2, "sft"),
                                                           sv::weights(m.base, "base"), gradient_1234()));
    const auto v = sv::materialize(sv::orthogonalize(sv::weights(m.m3) - sv::weights(m.m2), sv::weights(m.m1) - sv::weights(m.base)));
    const auto two_step = sv::materialize(sv::inject(sv::weights(m.m1), sv::delta(v), gradient_1234()),
                                          sv::eval_options{.allow_mixed_float_dtypes = true});
    CHECK(same_bits(fused, two_step));
    for (const auto& s : specs) CHECK(fused.at(s.name).type == s.type); // the target's dtypes
    const std::string d = sv::describe(sv::orthogonal_past(sv::weights(m.m1, "target"), sv::weights(m.m3, "rl"),
                                                           sv::weights(m.m2, "sft"), sv::weights(m.base, "base")));
    CHECK(d == "target + 1 * (orthogonalize(rl - sft, target - base))");
}

// --- composition, special values, errors, bounded passes --------------------------------------------

TEST_CASE("methods nest: a method's statistic pass evaluates prepared children, with the right indices",
          "[methods][nested]") {
    models m;
    auto base = sv::weights(m.base);
    auto orth = sv::orthogonalize(sv::weights(m.m1) - base, sv::weights(m.m2) - base);
    const auto o = sv::materialize(orth);
    auto nested_ties = sv::ties({}, sv::task(orth, {.density = 0.3f}), sv::task(sv::weights(m.m3) - base));
    auto stepwise_ties = sv::ties({}, sv::task(sv::delta(o), {.density = 0.3f}), sv::task(sv::weights(m.m3) - base));
    CHECK(same_bits(check_invariant(nested_ties), sv::materialize(stepwise_ties, sv::eval_options{.allow_mixed_float_dtypes = true})));
    auto inner_dare = sv::dare({.seed = 5}, sv::task(sv::weights(m.m1) - base, {.density = 0.5f}));
    const auto d = sv::materialize(inner_dare);
    auto nested = sv::magnitude_prune({}, sv::task(inner_dare, {.density = 0.2f}));
    auto stepwise = sv::magnitude_prune({}, sv::task(sv::delta(d), {.density = 0.2f}));
    CHECK(same_bits(check_invariant(nested), sv::materialize(stepwise)));
}

TEST_CASE("NaN and Inf in a model follow IEEE arithmetic through each method's formula", "[methods][special]") {
    models m;
    // m1 gets NaN, +Inf and -Inf at a few places in three tensors.
    for (const char* name : {"model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight", "model.embed_tokens.weight"}) {
        auto v = m.m1.at_mutable(name);
        const float specials[] = {std::nanf(""), INFINITY, -INFINITY};
        for (std::size_t k = 0; k < 3; ++k) sv::store_from_f32(v.type, v.bytes.data(), 2 * k + 1, specials[k]);
    }
    auto base = sv::weights(m.base);
    auto t1 = [&] { return sv::weights(m.m1) - base; };
    auto t2 = [&] { return sv::weights(m.m2) - base; };
    auto tasks = [&](const std::string& n) {
        return std::vector<ref::task>{{tau(m.m1, m.base, n), 1.0f, 0.5f}, {tau(m.m2, m.base, n), 1.0f, 0.5f}};
    };
    const auto a = check_invariant(sv::task_arithmetic({}, sv::task(t1()), sv::task(t2())));
    const auto t = check_invariant(sv::ties({}, sv::task(t1(), {.density = 0.5f}), sv::task(t2(), {.density = 0.5f})));
    const auto d = check_invariant(sv::dare({.sign = sv::consensus::sum}, sv::task(t1(), {.density = 0.5f}), sv::task(t2(), {.density = 0.5f})));
    const auto s = check_invariant(sv::slerp(sv::weights(m.m1), sv::weights(m.m2), 0.5f), f32_out);
    const auto o = check_invariant(sv::orthogonalize(t2(), t1()));
    for (const auto& spec : specs) {
        const auto& n = spec.name;
        auto tk = tasks(n);
        check_close(a, n, ref::merge({}, n, {{tk[0].tau, 1.0f}, {tk[1].tau, 1.0f}}));
        check_close(t, n, ref::merge({.method = ref::sparsify::magnitude, .sign = ref::election::sum, .normalize = true}, n, tk));
        check_close(d, n, ref::merge({.method = ref::sparsify::random, .sign = ref::election::sum}, n, tk));
        check_slerp(s, n, values(m.m1, n), values(m.m2, n), 0.5f);
        check_orthogonalize(o, n, tk[1].tau, tk[0].tau);
    }
    // What that means: a NaN entry makes a plain sum NaN there; in TIES it is kept (it ranks above
    // Inf), elects -1 and agrees with nothing; slerp and orthogonalize turn the whole tensor NaN.
    const std::string n = "model.layers.1.self_attn.q_proj.weight";
    CHECK(std::isnan(a.to_f32(n)[1]));
    CHECK(!std::isnan(t.to_f32(n)[1]));
    CHECK(std::isnan(s.to_f32(n)[100]));
    CHECK(std::isnan(o.to_f32(n)[100]));
}

TEST_CASE("method parameters are checked: unused ones at construction, NaN ones per tensor", "[methods][errors]") {
    models m;
    auto base = sv::weights(m.base);
    CHECK_THROWS_WITH(sv::task_arithmetic({}, sv::task(sv::weights(m.m1) - base, {.density = 0.5f})),
                      Catch::Contains("task_arithmetic: task 1 sets a density"));
    CHECK_THROWS_WITH(sv::ties({}, sv::task(sv::weights(m.m1) - base), sv::task(sv::weights(m.m2) - base, {.gamma = 0.2f})),
                      Catch::Contains("ties: task 2 sets gamma, which only breadcrumbs uses"));
    CHECK_THROWS_WITH(sv::linear(true, sv::task(sv::weights(m.m1), {.density = 0.5f})), Catch::Contains("linear: model 1"));
    auto nan_density = sv::parameter::rules({{sv::tensor_filter{"mlp"}, std::nanf("")}, {sv::tensor_filter{}, 0.5f}});
    CHECK_THROWS_WITH(sv::materialize(sv::ties({}, sv::task(sv::weights(m.m1) - base, {.density = nan_density}))),
                      Catch::Contains("ties: density of task 1 is NaN for tensor 'model.layers.0.mlp.up_proj.weight'"));
}

TEST_CASE("describe() spells out each method with its parameters", "[methods][describe]") {
    models m;
    auto base = sv::weights(m.base, "base");
    CHECK(sv::describe(base + sv::ties({}, sv::task(sv::weights(m.m1, "m1") - base, {.density = 0.5f}))) ==
          "base + ties(lambda=1, normalize=true, consensus=sum; task(m1 - base; weight=1, density=0.5))");
    CHECK(sv::describe(sv::dare({.sign = sv::consensus::count, .seed = 3}, sv::task(sv::weights(m.m1, "m1") - base))) ==
          "dare(lambda=1, normalize=false, consensus=count, seed=3, rescale=true; task(m1 - base; weight=1, density=1))");
    CHECK(sv::describe(sv::linear(true, sv::task(sv::weights(m.m1, "m1"), {.weight = 0.5f}), sv::task(sv::weights(m.m2, "m2")))) ==
          "linear(normalize=true; task(m1; weight=0.5), task(m2; weight=1))");
    CHECK(sv::describe(sv::slerp(sv::weights(m.m1, "a"), sv::weights(m.m2, "b"), sv::parameter::gradient({0.0f, 1.0f}))) ==
          "slerp(a, b, gradient(0, 1))");
}

namespace {
/// A store that logs partial releases (what lets a mapped checkpoint drop pages).
struct logging_store {
    const sv::memory_store* inner;
    std::vector<std::pair<std::uint64_t, std::uint64_t>>* log;
    [[nodiscard]] const std::vector<std::string>& tensor_names() const { return inner->tensor_names(); }
    [[nodiscard]] std::optional<sv::tensor_view> find(std::string_view n) const { return inner->find(n); }
    void release(std::string_view, std::uint64_t off, std::uint64_t count) const { log->emplace_back(off, count); }
};
} // namespace

TEST_CASE("statistic passes stream in chunks and release what they consumed, like the main pass", "[methods][memory]") {
    // Just over one chunk (2^24 elements) of bf16: the radix select's two passes and the main pass
    // each release the first chunk of each input before going on.
    const std::uint64_t n = (std::uint64_t{1} << 24) + 4096;
    sv::memory_store b("b"), x("x");
    std::vector<float> vb(n), vx(n);
    for (std::uint64_t i = 0; i < n; ++i) {
        vb[i] = static_cast<float>(static_cast<std::int64_t>(sv::method_detail::mix64(i) % 2001) - 1000) * 1e-3f;
        vx[i] = vb[i] + static_cast<float>(static_cast<std::int64_t>(sv::method_detail::mix64(i + n) % 2001) - 1000) * 1e-4f;
    }
    b.add_converted("model.layers.0.w", dtype::bf16, {n}, vb);
    x.add_converted("model.layers.0.w", dtype::bf16, {n}, vx);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> log_b, log_x;
    logging_store lb{&b, &log_b}, lx{&x, &log_x};
    auto e = sv::magnitude_prune({}, sv::task(sv::weights(lx) - sv::weights(lb), {.density = 0.25f}));
    const auto out = sv::materialize(e);
    const std::pair<std::uint64_t, std::uint64_t> first_chunk{0, (std::uint64_t{1} << 24) * 2};
    CHECK(std::count(log_x.begin(), log_x.end(), first_chunk) == 3);
    CHECK(std::count(log_b.begin(), log_b.end(), first_chunk) == 3);
    // And the result is right: exactly the reference's mask.
    const auto t = tau(x, b, "model.layers.0.w");
    const auto mask = ref::magnitude_mask(t, 0.25f);
    std::vector<double> expect(n);
    for (std::uint64_t i = 0; i < n; ++i) expect[i] = mask[i] ? t[i] : 0.0;
    check_exact(out, "model.layers.0.w", expect);
    // The main pass's chunks pass their first element's index on: DARE's draws past 2^24 are the
    // reference's, whole and through a range sink.
    auto dare = sv::dare({.seed = 9}, sv::task(sv::weights(lx) - sv::weights(lb), {.density = 0.5f}));
    const auto dared = check_invariant(dare);
    for (std::uint64_t i = 0; i < n; ++i)
        expect[i] = ref::dare_u(9, 0, "model.layers.0.w", i) < 0.5 ? static_cast<double>(t[i]) / 0.5 : 0.0;
    check_exact(dared, "model.layers.0.w", expect);
}

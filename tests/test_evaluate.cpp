// evaluate(): element-wise expressions against double references, laziness, fusion, the PaST
// identity, in-place evaluation, dtype handling and edge cases.
#include "helpers.hpp"

#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <new>

using namespace skillvec;
using test::tensor_spec;

// --- allocation accounting, to prove the skill vector is never materialized -----------------
namespace {
std::atomic<std::uint64_t> g_allocated{0};
std::atomic<bool> g_counting{false};
void* counted_alloc(std::size_t n, std::size_t align) {
    if (g_counting.load(std::memory_order_relaxed)) g_allocated.fetch_add(n, std::memory_order_relaxed);
    void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align) : std::malloc(n ? n : 1);
    if (!p) throw std::bad_alloc();
    return p;
}
} // namespace
// Every replaceable form is replaced, so that all of them agree on malloc/free (sanitizers check).
void* operator new(std::size_t n) { return counted_alloc(n, alignof(std::max_align_t)); }
void* operator new[](std::size_t n) { return counted_alloc(n, alignof(std::max_align_t)); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    try { return counted_alloc(n, alignof(std::max_align_t)); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    try { return counted_alloc(n, alignof(std::max_align_t)); } catch (...) { return nullptr; }
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    try { return counted_alloc(n, static_cast<std::size_t>(a)); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    try { return counted_alloc(n, static_cast<std::size_t>(a)); } catch (...) { return nullptr; }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

/// A store that counts how often it is asked for anything: laziness and single-pass evidence.
struct counting_store {
    const memory_store* inner;
    mutable int names_calls = 0, find_calls = 0, release_calls = 0;
    const std::vector<std::string>& tensor_names() const {
        ++names_calls;
        return inner->tensor_names();
    }
    std::optional<tensor_view> find(std::string_view n) const {
        ++find_calls;
        return inner->find(n);
    }
    void release(std::string_view) const { ++release_calls; }
    std::string label() const { return inner->label(); }
};

std::vector<tensor_spec> model_specs(dtype t) {
    return {{"model.embed_tokens.weight", t, {37, 16}},
            {"model.layers.0.self_attn.q_proj.weight", t, {16, 16}},
            {"model.layers.0.mlp.up_proj.weight", t, {16, 45}},
            {"model.layers.1.self_attn.q_proj.weight", t, {16, 16}},
            {"model.layers.1.mlp.up_proj.weight", t, {16, 45}},
            {"model.norm.weight", t, {16}},
            {"big.odd", t, {70001}}}; // above the parallel grain, not a multiple of the SIMD width
}

/// Error bound of the f32 result r of an expression whose exact value is x and whose
/// intermediates have magnitude at most m: u*(|x| + m) with u = 2^-24, plus the output rounding.
double bound(double exact, double magnitude, dtype out) {
    const double u = std::ldexp(1.0, -24);
    const double out_u = out == dtype::f32 ? 0 : (out == dtype::bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11));
    return 2 * u * (std::fabs(exact) + magnitude) + out_u * std::fabs(exact) * 1.0001 +
           (out == dtype::f16 ? std::ldexp(1.0, -24) : 0.0) + 1e-44;
}

} // namespace

TEST_CASE("building an expression touches no data, evaluating asks each store once per tensor", "[evaluate][lazy]") {
    const auto t = test::random_store("t", model_specs(dtype::f32), 1);
    const auto rl = test::random_store("rl", model_specs(dtype::f32), 2);
    const auto sft = test::random_store("sft", model_specs(dtype::f32), 3);
    counting_store ct{&t}, crl{&rl}, csft{&sft};
    auto e = weights(ct) + 1.0f * (weights(crl) - weights(csft));
    auto e2 = 0.5f * (weights(crl) - weights(csft)); // more unevaluated structure
    (void)e2;
    CHECK(ct.names_calls + ct.find_calls + crl.names_calls + crl.find_calls + csft.find_calls == 0);

    memory_store out;
    const auto rep = evaluate(e, out);
    const int n = static_cast<int>(t.size());
    CHECK(ct.find_calls == n);
    CHECK(crl.find_calls == n);
    CHECK(csft.find_calls == n);
    CHECK(ct.release_calls == n); // each consumed tensor is released once
    CHECK(rep.computed.size() == t.size());
    CHECK(out.size() == t.size());
}

TEST_CASE("t + 1.0f*(rl - sft) never materializes the skill vector", "[evaluate][fused]") {
    const std::vector<tensor_spec> big = {{"w", dtype::f32, {1u << 22}}}; // 16 MiB per tensor
    auto t = test::random_store("t", big, 1);
    const auto rl = test::random_store("rl", big, 2);
    const auto sft = test::random_store("sft", big, 3);
    const auto want = materialize(weights(t) + 1.0f * (weights(rl) - weights(sft)));
    g_allocated = 0;
    g_counting = true;
    const auto rep = evaluate(weights(t) + 1.0f * (weights(rl) - weights(sft)), into(t));
    g_counting = false;
    // A materialized v would be 16 MiB; the whole evaluation allocates only bookkeeping.
    CHECK(g_allocated.load() < 256u * 1024u);
    CHECK(rep.bytes_read == 3u * 4u * (1u << 22));
    CHECK(rep.bytes_written == 4u * (1u << 22));
    CHECK(test::same_bits(t.at("w"), want.at("w")));
}

TEST_CASE("PaST t + lambda*(rl - sft) matches a double reference in every storage dtype", "[evaluate]") {
    for (dtype dt : {dtype::f32, dtype::bf16, dtype::f16, dtype::f64}) {
        for (float lambda : {1.0f, 0.5f, -1.5f}) {
            const auto t = test::random_store("t", model_specs(dt), 10);
            const auto sft = test::random_store("sft", model_specs(dt), 11);
            const auto rl = test::perturbed(sft, "rl", 12, 0.05f);
            const auto out = materialize(past(weights(t), weights(rl), weights(sft), lambda));
            for (const auto& name : t.tensor_names()) {
                REQUIRE(out.at(name).type == dt); // the point operand's dtype is kept
                const auto vt = test::values(t, name), vr = test::values(rl, name), vs = test::values(sft, name);
                const auto vo = test::values(out, name);
                for (std::size_t i = 0; i < vo.size(); ++i) {
                    const double d = static_cast<double>(static_cast<float>(vr[i]) - static_cast<float>(vs[i]));
                    const double exact = vt[i] + lambda * (vr[i] - vs[i]);
                    const double mag = std::fabs(lambda * d) + std::fabs(vr[i]) + std::fabs(vs[i]) * std::fabs(lambda);
                    INFO(name << "[" << i << "] dtype " << name_of(dt) << " lambda " << lambda);
                    REQUIRE(std::fabs(vo[i] - exact) <= bound(exact, mag, dt));
                }
            }
        }
    }
}

TEST_CASE("inject(sft, extract(rl, sft)) reproduces rl to within 1 ulp", "[evaluate][identity]") {
    SECTION("f32, fine-tuning-sized deltas and unrelated values") {
        const auto sft = test::random_store("sft", model_specs(dtype::f32), 21, 0.02f);
        for (float delta_sd : {1e-4f, 1e-2f, 0.02f}) {
            const auto rl = test::perturbed(sft, "rl", 22, delta_sd);
            const auto back = materialize(inject(weights(sft), extract(weights(rl), weights(sft))));
            for (const auto& name : rl.tensor_names()) {
                const auto a = rl.at(name).as<float>(), b = back.at(name).as<float>();
                for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(test::ulp_distance(a[i], b[i]) <= 1);
            }
        }
    }
    SECTION("bf16: the round trip is bit-exact (differences of bf16 values are exact in f32)") {
        const auto sft = test::random_store("sft", model_specs(dtype::bf16), 23, 0.02f);
        const auto rl = test::perturbed(sft, "rl", 24, 1e-3f);
        const auto back = materialize(inject(weights(sft), weights(rl) - weights(sft)));
        for (const auto& name : rl.tensor_names()) REQUIRE(test::same_bits(rl.at(name), back.at(name)));
    }
    SECTION("rl == sft leaves the target bit-exact (lambda 1 and 0.5)") {
        const auto t = test::random_store("t", model_specs(dtype::bf16), 25);
        const auto s = test::random_store("s", model_specs(dtype::bf16), 26);
        for (float l : {1.0f, 0.5f}) {
            const auto out = materialize(past(weights(t), weights(s), weights(s), l));
            for (const auto& name : t.tensor_names()) REQUIRE(test::same_bits(t.at(name), out.at(name)));
        }
    }
}

TEST_CASE("vector algebra: sums, negation, scaling, division, p - v, lerp", "[evaluate]") {
    const std::vector<tensor_spec> sp = {{"a.0.w", dtype::f32, {1001}}, {"b", dtype::bf16, {3, 5}}};
    const auto a = test::random_store("a", sp, 31), b = test::random_store("b", sp, 32);
    const auto c = test::random_store("c", sp, 33), d = test::random_store("d", sp, 34);
    const auto A = weights(a), B = weights(b), C = weights(c), D = weights(d);
    const eval_options f32out{.out_dtype = dtype::f32};

    auto check = [&](const memory_store& out, auto ref) {
        for (const auto& name : a.tensor_names()) {
            const auto va = test::values(a, name), vb = test::values(b, name), vc = test::values(c, name),
                       vd = test::values(d, name), vo = test::values(out, name);
            for (std::size_t i = 0; i < vo.size(); ++i) {
                const double x = ref(va[i], vb[i], vc[i], vd[i]);
                REQUIRE(std::fabs(vo[i] - x) <= 8 * std::ldexp(1.0, -24) * (std::fabs(x) + std::fabs(va[i]) + std::fabs(vb[i]) +
                                                                          std::fabs(vc[i]) + std::fabs(vd[i])));
            }
        }
    };
    check(materialize((A - B) + (C - D), f32out), [](double x, double y, double z, double w) { return (x - y) + (z - w); });
    check(materialize((A - B) - 0.25f * (C - D), f32out), [](double x, double y, double z, double w) { return (x - y) - 0.25 * (z - w); });
    check(materialize(-(A - B), f32out), [](double x, double y, double, double) { return y - x; });
    check(materialize((A - B) / 4.0f, f32out), [](double x, double y, double, double) { return (x - y) / 4; });
    check(materialize(A - 2.0f * (C - D), f32out), [](double x, double, double z, double w) { return x - 2 * (z - w); });
    check(materialize((C - D) + A, f32out), [](double x, double, double z, double w) { return x + (z - w); });
    check(materialize(lerp(A, B, 0.25f), f32out), [](double x, double y, double, double) { return 0.75 * x + 0.25 * y; });
    check(materialize(lerp(A - B, C - D, 0.5f), f32out), [](double x, double y, double z, double w) { return 0.5 * (x - y) + 0.5 * (z - w); });

    // lerp is exact at its ends.
    for (const auto& name : a.tensor_names()) {
        REQUIRE(test::same_bits(materialize(lerp(A, B, 0.0f)).at(name), a.at(name)));
        REQUIRE(test::same_bits(materialize(lerp(A, B, 1.0f), eval_options{.allow_mixed_float_dtypes = false}).at(name), b.at(name)));
    }
}

TEST_CASE("output dtypes: kept for points, f32 for vectors, or as asked", "[evaluate][dtype]") {
    const auto a = test::random_store("a", model_specs(dtype::bf16), 41), b = test::random_store("b", model_specs(dtype::bf16), 42);
    CHECK(materialize(weights(a) - weights(b)).at("model.norm.weight").type == dtype::f32);
    CHECK(materialize(lerp(weights(a), weights(b), 0.5f)).at("model.norm.weight").type == dtype::bf16);
    const auto h = materialize(lerp(weights(a), weights(b), 0.5f), eval_options{.out_dtype = dtype::f16});
    CHECK(h.at("model.norm.weight").type == dtype::f16);
    const auto d = materialize(weights(a) - weights(b), eval_options{.out_dtype = dtype::f64});
    const auto va = test::values(a, "big.odd"), vb = test::values(b, "big.odd"), vd = test::values(d, "big.odd");
    for (std::size_t i = 0; i < vd.size(); ++i) REQUIRE(vd[i] == static_cast<double>(static_cast<float>(va[i]) - static_cast<float>(vb[i])));
    CHECK_THROWS_WITH(materialize(weights(a) - weights(b), eval_options{.out_dtype = dtype::i32}),
                      Catch::Contains("not a float kind"));
}

TEST_CASE("mixed float dtypes: rejected by default, converted when allowed", "[evaluate][dtype]") {
    const auto t = test::random_store("target", model_specs(dtype::bf16), 51);
    const auto sft = test::random_store("sft", model_specs(dtype::bf16), 52);
    const auto rl = test::perturbed(sft, "rl", 53, 0.01f);
    const auto v = materialize(weights(rl) - weights(sft)); // a saved f32 skill vector
    REQUIRE(v.at("big.odd").type == dtype::f32);
    CHECK_THROWS_AS(materialize(inject(weights(t), delta(v))), binding_error);
    CHECK_THROWS_WITH(materialize(inject(weights(t), delta(v))), Catch::Contains("allow_mixed_float_dtypes"));
    const auto out = materialize(inject(weights(t), delta(v)), eval_options{.allow_mixed_float_dtypes = true});
    const auto fused = materialize(past(weights(t), weights(rl), weights(sft)));
    // The f32 vector holds exactly rl - sft, so the two routes agree bit for bit.
    for (const auto& name : t.tensor_names()) REQUIRE(test::same_bits(out.at(name), fused.at(name)));
}

TEST_CASE("non-float tensors pass through a point result and are skipped from a vector result", "[evaluate]") {
    auto specs = model_specs(dtype::f32);
    auto mk = [&](const char* label, std::uint32_t seed, std::int64_t tag) {
        auto s = test::random_store(label, specs, seed);
        s.add<std::int64_t>("position_ids", {3}, std::vector<std::int64_t>{tag, 1, 2});
        s.add<std::uint8_t>("mask", {2, 2}, std::vector<std::uint8_t>{1, 0, 0, 1});
        return s;
    };
    const auto t = mk("t", 61, 100), rl = mk("rl", 62, 200), sft = mk("sft", 63, 300);
    memory_store out;
    const auto rep = evaluate(past(weights(t), weights(rl), weights(sft)), out);
    CHECK(rep.passed_through == std::vector<std::string>{"position_ids", "mask"});
    CHECK(test::same_bits(out.at("position_ids"), t.at("position_ids"))); // from the point operand
    CHECK(test::same_bits(out.at("mask"), t.at("mask")));
    CHECK(rep.computed.size() == specs.size());

    memory_store vec;
    const auto rv = evaluate(weights(rl) - weights(sft), vec);
    CHECK(rv.skipped == std::vector<std::string>{"position_ids", "mask"});
    CHECK_FALSE(vec.contains("mask"));
}

TEST_CASE("edge cases: empty, rank-0, odd lengths, NaN and Inf", "[evaluate][edge]") {
    std::vector<tensor_spec> sp = {{"empty", dtype::f32, {0}}, {"empty2", dtype::bf16, {3, 0, 2}}, {"scalar", dtype::f32, {}},
                                   {"scalar16", dtype::f16, {}}};
    for (std::uint64_t n : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 129, 1023, 32769, 65537})
        for (dtype dt : {dtype::f32, dtype::bf16, dtype::f16})
            sp.push_back({"n" + std::to_string(n) + std::string(name_of(dt)), dt, {n}});
    const auto t = test::random_store("t", sp, 71), rl = test::random_store("rl", sp, 72), sft = test::random_store("sft", sp, 73);
    const auto out = materialize(past(weights(t), weights(rl), weights(sft), 0.75f));
    for (const auto& s : sp) {
        const auto o = out.at(s.name);
        REQUIRE(o.dims == s.dims);
        REQUIRE(o.bytes.size() == t.at(s.name).bytes.size());
        const auto vt = test::values(t, s.name), vr = test::values(rl, s.name), vs = test::values(sft, s.name), vo = test::values(out, s.name);
        for (std::size_t i = 0; i < vo.size(); ++i) {
            // Bit-exact against the same formula computed one element at a time in f32.
            const float d = static_cast<float>(vr[i]) - static_cast<float>(vs[i]);
            const float r = lane_ops<float>::fma(0.75f, d, static_cast<float>(vt[i]));
            REQUIRE(o.type == s.type);
            float want = 0;
            std::byte buf[8];
            store_from_f32(s.type, buf, 0, r);
            want = load_as_f32(s.type, buf, 0);
            REQUIRE(vo[i] == want);
        }
    }
    CHECK(out.at("scalar").numel() == 1);

    SECTION("NaN and Inf propagate as IEEE says") {
        const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
        memory_store a, b, c;
        a.add("x", {6}, std::vector<float>{1, inf, 1, nan, inf, 2});
        b.add("x", {6}, std::vector<float>{inf, inf, 1, 1, 1, -inf});
        c.add("x", {6}, std::vector<float>{0, 0, nan, 0, inf, inf});
        const auto res = materialize(weights(a) + (weights(b) - weights(c)));
        const auto o = res.at("x").as<float>();
        CHECK(o[0] == inf);          // 1 + (inf - 0)
        CHECK(o[1] == inf);          // inf + (inf - 0)
        CHECK(std::isnan(o[2]));     // 1 + (1 - nan)
        CHECK(std::isnan(o[3]));     // nan + ...
        CHECK(std::isnan(o[4]));     // inf + (1 - inf) = inf - inf
        CHECK(o[5] == -inf);         // 2 + (-inf - inf)
        for (dtype dt : {dtype::bf16, dtype::f16}) {
            const auto h = materialize(weights(a) + (weights(b) - weights(c)), eval_options{.out_dtype = dt});
            const auto v = h.to_f32("x");
            CHECK(v[0] == inf);
            CHECK(std::isnan(v[2]));
            CHECK(v[5] == -inf);
        }
    }
}

namespace {
/// Views into a shared byte buffer at chosen offsets: unaligned, overlapping or aliasing views.
struct window_store {
    std::vector<std::string> names;
    std::vector<tensor_view> views;
    std::vector<mutable_tensor_view> mviews;
    const std::vector<std::string>& tensor_names() const { return names; }
    std::optional<tensor_view> find(std::string_view n) const {
        for (std::size_t i = 0; i < names.size(); ++i)
            if (names[i] == n) return views[i];
        return std::nullopt;
    }
    std::optional<mutable_tensor_view> find_mutable(std::string_view n) {
        for (std::size_t i = 0; i < names.size(); ++i)
            if (names[i] == n) return mviews[i];
        return std::nullopt;
    }
    void add(std::string n, dtype t, std::uint64_t count, std::byte* p) {
        names.push_back(std::move(n));
        const std::size_t nb = count * bits_of(t) / 8;
        views.push_back({t, shape{count}, {p, nb}});
        mviews.push_back({t, shape{count}, {p, nb}});
    }
};
} // namespace

TEST_CASE("unaligned views are evaluated correctly", "[evaluate][edge]") {
    for (dtype dt : {dtype::f32, dtype::bf16, dtype::f16}) {
        const std::size_t n = 1037, es = bits_of(dt) / 8;
        std::vector<std::byte> buf(3 * (n * es + 16));
        const std::size_t offs[3] = {1, n * es + 16 + 3, 2 * (n * es + 16) + 2};
        window_store t, rl, sft;
        std::mt19937 rng(5);
        std::normal_distribution<float> nd;
        for (int k = 0; k < 3; ++k)
            for (std::size_t i = 0; i < n; ++i) store_from_f32(dt, buf.data() + offs[k], i, nd(rng));
        t.add("w", dt, n, buf.data() + offs[0]);
        rl.add("w", dt, n, buf.data() + offs[1]);
        sft.add("w", dt, n, buf.data() + offs[2]);
        const auto out = materialize(past(weights(t), weights(rl), weights(sft), 0.5f));
        const auto o = out.to_f32("w");
        for (std::size_t i = 0; i < n; ++i) {
            const float d = load_as_f32(dt, buf.data() + offs[1], i) - load_as_f32(dt, buf.data() + offs[2], i);
            std::byte tmp[8];
            store_from_f32(dt, tmp, 0, lane_ops<float>::fma(0.5f, d, load_as_f32(dt, buf.data() + offs[0], i)));
            REQUIRE(o[i] == load_as_f32(dt, tmp, 0));
        }
    }
}

TEST_CASE("streaming stores into outputs at any offset give the same bits as cached stores", "[evaluate][stream]") {
    for (dtype in : {dtype::f32, dtype::bf16, dtype::f16}) {
        for (dtype out : {dtype::f32, dtype::bf16, dtype::f16, dtype::f64}) {
            const std::size_t n = 70001, es = bits_of(out) / 8;
            const auto a = test::random_store("a", {{"w", in, {n}}}, 1), b = test::random_store("b", {{"w", in, {n}}}, 2);
            const auto m = test::random_store("m", {{"w", dtype::f32, {n}}}, 3);
            const eval_options o{.out_dtype = out, .allow_mixed_float_dtypes = true};
            const auto want = materialize(weights(a) + 0.5f * (weights(b) - weights(a)), cpu_backend{.stores = store_policy::cached}, o);
            const auto want_mixed = materialize(weights(a) + 0.5f * delta(m), cpu_backend{.stores = store_policy::cached}, o);
            // Offsets 0..67 bytes: every alignment, including elements that can never be aligned.
            for (std::size_t off : {0u, 1u, 2u, 4u, 6u, 8u, 16u, 32u, 36u, 60u, 67u}) {
                std::vector<std::byte> buf(n * es + 128);
                window_store sink;
                sink.add("w", out, n, buf.data() + off);
                for (unsigned th : {1u, 2u}) {
                    const cpu_backend be{.threads = th, .simd = true, .stores = store_policy::streaming};
                    INFO(name_of(in) << " -> " << name_of(out) << " offset " << off << " threads " << th);
                    evaluate(weights(a) + 0.5f * (weights(b) - weights(a)), into(sink), be, o); // uniform path
                    REQUIRE(test::same_bits(*sink.find("w"), want.at("w")));
                    evaluate(weights(a) + 0.5f * delta(m), into(sink), be, o); // mixed dtypes: tiled path
                    REQUIRE(test::same_bits(*sink.find("w"), want_mixed.at("w")));
                }
            }
        }
    }
}

TEST_CASE("in place: into(t) gives the out-of-place result, shifted overlaps are refused", "[evaluate][inplace]") {
    for (dtype dt : {dtype::f32, dtype::bf16}) {
        auto t = test::random_store("t", model_specs(dt), 81);
        const auto sft = test::random_store("sft", model_specs(dt), 82);
        const auto rl = test::perturbed(sft, "rl", 83, 0.1f);
        const auto want = materialize(past(weights(t), weights(rl), weights(sft), 1.5f));
        const auto rep = evaluate(past(weights(t), weights(rl), weights(sft), 1.5f), into(t));
        CHECK(rep.computed.size() == t.size());
        for (const auto& name : t.tensor_names()) REQUIRE(test::same_bits(t.at(name), want.at(name)));
    }
    SECTION("a result whose buffer overlaps an input at an offset is an error") {
        std::vector<std::byte> buf(4 * 200);
        window_store a, shifted;
        a.add("w", dtype::f32, 100, buf.data());
        shifted.add("w", dtype::f32, 100, buf.data() + 4 * 10);
        memory_store b;
        b.add("w", dtype::f32, {100});
        CHECK_THROWS_WITH(evaluate(weights(a) + (weights(b) - weights(b)), into(shifted)), Catch::Contains("overlaps"));
    }
    SECTION("the sink must hold the planned dtype and shape") {
        auto t = test::random_store("t", {{"w", dtype::bf16, {10}}}, 1);
        const auto u = test::random_store("u", {{"w", dtype::bf16, {10}}}, 2);
        CHECK_THROWS_WITH(evaluate(weights(u) - weights(u), into(t)), Catch::Contains("F32") && Catch::Contains("BF16"));
    }
}

TEST_CASE("thread count and SIMD on/off do not change element-wise results", "[evaluate][determinism]") {
    const std::vector<tensor_spec> sp = {{"a", dtype::f32, {300001}}, {"b", dtype::bf16, {200003}}, {"c", dtype::f16, {131075}}};
    const auto t = test::random_store("t", sp, 91), rl = test::random_store("rl", sp, 92), sft = test::random_store("sft", sp, 93);
    const auto e = lerp(weights(t), weights(t) + 0.3f * (weights(rl) - weights(sft)), 0.7f);
    for (auto out_dt : {std::optional<dtype>{}, std::optional<dtype>{dtype::f32}, std::optional<dtype>{dtype::f16}}) {
        const eval_options o{.out_dtype = out_dt};
        const auto ref = materialize(e, cpu_backend{.threads = 1, .simd = false}, o);
        for (cpu_backend be : {cpu_backend{.threads = 1}, cpu_backend{.threads = 2}, cpu_backend{.threads = 7}, cpu_backend{},
                               cpu_backend{.threads = 3, .simd = false},
                               cpu_backend{.threads = 2, .simd = true, .stores = store_policy::streaming},
                               cpu_backend{.threads = 1, .simd = true, .stores = store_policy::cached}}) {
            const auto out = materialize(e, be, o);
            for (const auto& s : sp) REQUIRE(test::same_bits(out.at(s.name), ref.at(s.name)));
        }
    }
}

TEST_CASE("the SIMD kernels agree bit for bit with the scalar fallback for every dtype combination", "[evaluate][simd]") {
    const std::vector<dtype> kinds = {dtype::f32, dtype::bf16, dtype::f16, dtype::f64};
    for (dtype in : kinds) {
        for (dtype out : kinds) {
            for (std::uint64_t n : {1u, 13u, 64u, 1000u, 4099u}) {
                const std::vector<tensor_spec> sp = {{"w", in, {n}}};
                const auto a = test::random_store("a", sp, 101), b = test::random_store("b", sp, 102), c = test::random_store("c", sp, 103);
                const auto e = weights(a) + (-0.5f * (weights(b) - weights(c)) + 2.0f * (weights(c) - weights(a)));
                const eval_options o{.out_dtype = out};
                const auto simd = materialize(e, cpu_backend{.simd = true}, o);
                const auto scal = materialize(e, cpu_backend{.simd = false}, o);
                const auto streamed = materialize(e, cpu_backend{.simd = true, .stores = store_policy::streaming}, o);
                INFO(name_of(in) << " -> " << name_of(out) << " n=" << n);
                REQUIRE(test::same_bits(simd.at("w"), scal.at("w")));
                REQUIRE(test::same_bits(streamed.at("w"), scal.at("w")));
            }
        }
    }
    SECTION("mixed input dtypes (tiled path)") {
        memory_store a, b, c;
        std::vector<float> x(2051);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i)) * 3.0f;
        a.add_converted("w", dtype::f32, {2051}, x);
        b.add_converted("w", dtype::bf16, {2051}, x);
        c.add_converted("w", dtype::f16, {2051}, x);
        const eval_options mixed{.allow_mixed_float_dtypes = true};
        const auto e = weights(b) + 0.25f * (weights(a) - weights(c));
        REQUIRE(test::same_bits(materialize(e, cpu_backend{.simd = true}, mixed).at("w"),
                                materialize(e, cpu_backend{.simd = false}, mixed).at("w")));
    }
}

TEST_CASE("expressions own rvalue stores and can be copied and reused", "[evaluate][lifetime]") {
    auto make = [](std::uint32_t seed) { return test::random_store("tmp", {{"w", dtype::f32, {100}}}, seed); };
    const auto keep_rl = make(2), keep_sft = make(3), keep_t = make(1);
    // The temporaries are moved into the expression; nothing dangles after this statement.
    auto e = weights(make(1), "t") + 1.0f * (weights(make(2), "rl") - weights(make(3), "sft"));
    auto copy = e;
    const auto out1 = materialize(e), out2 = materialize(copy);
    const auto want = materialize(past(weights(keep_t), weights(keep_rl), weights(keep_sft)));
    CHECK(test::same_bits(out1.at("w"), want.at("w")));
    CHECK(test::same_bits(out2.at("w"), want.at("w")));
}

TEST_CASE("sinks get begin() with the whole plan before any tensor and finish() after", "[evaluate][sink]") {
    struct recording_sink {
        memory_store inner;
        std::vector<std::string> log;
        void begin(std::span<const tensor_info> plan) { log.push_back("begin:" + std::to_string(plan.size())); }
        std::span<std::byte> acquire(const tensor_info& i) {
            log.push_back("acquire:" + i.name);
            return inner.acquire(i);
        }
        void commit(const tensor_info& i) { log.push_back("commit:" + i.name); }
        void finish() { log.push_back("finish"); }
    };
    const auto a = test::random_store("a", {{"x", dtype::f32, {4}}, {"y", dtype::f32, {2}}}, 1);
    recording_sink s;
    evaluate(weights(a) - weights(a), s);
    CHECK(s.log == std::vector<std::string>{"begin:2", "acquire:x", "commit:x", "acquire:y", "commit:y", "finish"});

    SECTION("a sink that hands out the wrong size is an error, not an overflow") {
        struct short_sink {
            std::vector<std::byte> buf = std::vector<std::byte>(4);
            std::span<std::byte> acquire(const tensor_info&) { return buf; }
            void commit(const tensor_info&) {}
        } bad;
        CHECK_THROWS_WITH(evaluate(weights(a) - weights(a), bad), Catch::Contains("needs 16"));
    }
}

TEST_CASE("describe() writes the formula with the operands' labels", "[evaluate][describe]") {
    memory_store t("target"), rl, sft;
    CHECK(describe(past(weights(t), weights(rl, "rl"), weights(sft, "sft"), 0.5f)) == "target + 0.5 * (rl - sft)");
    CHECK(describe(weights(t) - 1.5f * (weights(rl, "rl") - weights(sft, "sft"))) == "target - (1.5 * (rl - sft))");
    CHECK(describe(lerp(weights(t), weights(rl), 0.25f)) == "lerp(target, weights(?), 0.25)");
    CHECK(describe(cosine(weights(rl, "rl") - weights(sft, "sft"), delta(t))) == "cosine(rl - sft, target)");
    CHECK(describe(sparsity(delta(rl, "v"), 1e-6f)) == "sparsity(v, 1e-06)");
    CHECK(describe(norm(-(delta(rl, "v")) + delta(sft, "w"))) == "norm(-(v) + w)");
}

TEST_CASE("prepare binds once; run evaluates as often as asked and sees new values", "[evaluate][prepare]") {
    auto t = test::random_store("t", {{"w", dtype::f32, {1000}}, {"ids", dtype::i32, {2}}}, 1);
    const auto rl = test::random_store("rl", {{"w", dtype::f32, {1000}}, {"ids", dtype::i32, {2}}}, 2);
    const auto sft = test::random_store("sft", {{"w", dtype::f32, {1000}}, {"ids", dtype::i32, {2}}}, 3);
    const auto e = past(weights(t), weights(rl), weights(sft), 0.5f);
    const auto p = prepare(e);
    const auto outs = p.outputs();
    REQUIRE(outs.size() == 2);
    CHECK(outs[0].name == "w");
    CHECK(outs[1].type == dtype::i32);
    memory_store a, b;
    p.run(a);
    p.run(b);
    CHECK(test::same_bits(a.at("w"), b.at("w")));
    CHECK(test::same_bits(a.at("w"), materialize(e).at("w")));
    // In-place updates of the bound stores are seen by the next run (the plan holds views).
    p.run(into(t));
    memory_store c;
    p.run(c);
    const auto vt = test::values(t, "w"), vc = test::values(c, "w");
    const auto vr = test::values(rl, "w"), vs = test::values(sft, "w");
    for (std::size_t i = 0; i < vt.size(); ++i)
        REQUIRE(vc[i] == static_cast<double>(lane_ops<float>::fma(0.5f, static_cast<float>(vr[i]) - static_cast<float>(vs[i]),
                                                                  static_cast<float>(vt[i]))));
    // Reductions too.
    const auto pc = prepare(cosine(weights(rl) - weights(sft), weights(t) - weights(sft)));
    CHECK(pc.run().value() == evaluate(cosine(weights(rl) - weights(sft), weights(t) - weights(sft))).value());
    // Binding problems surface at prepare, before any run.
    memory_store other;
    other.add("x", dtype::f32, {1});
    CHECK_THROWS_AS(prepare(weights(t) - weights(other)), binding_error);
}

TEST_CASE("a 16-bit model plus f32 vectors is converted in registers and matches the scalar fallback", "[evaluate][simd][mixed]") {
    for (dtype d : {dtype::bf16, dtype::f16}) {
        for (std::uint64_t n : {5u, 64u, 1001u, 70001u}) {
            const auto t = test::random_store("t", {{"w", d, {n}}}, 1), u = test::random_store("u", {{"w", d, {n}}}, 2);
            const auto v = test::random_store("v", {{"w", dtype::f32, {n}}}, 3), w = test::random_store("w", {{"w", dtype::f32, {n}}}, 4);
            const eval_options mixed{.allow_mixed_float_dtypes = true};
            auto check = [&](const auto& e) {
                INFO(name_of(d) << " n=" << n << " " << describe(e));
                const auto want = materialize(e, cpu_backend{.simd = false}, mixed);
                REQUIRE(want.at("w").type == d);
                for (auto stores : {store_policy::cached, store_policy::streaming})
                    REQUIRE(test::same_bits(materialize(e, cpu_backend{.stores = stores}, mixed).at("w"), want.at("w")));
            };
            check(inject(weights(t), delta(v), 0.5f));                                  // leaves d, f32
            check(weights(t) + 0.5f * delta(v) - 0.25f * delta(w));                   // d, f32, f32
            check(weights(t) + 0.5f * (weights(u) - weights(t)) + 2.0f * delta(v));   // d, d, d, f32
            check(weights(t) + (delta(v) + delta(w)) + 0.125f * (weights(u) - weights(t))); // 5 leaves: tiled
        }
    }
}

TEST_CASE("a range sink gets each tensor in ordered, covering ranges of at most range_sink_bytes, bit-identical",
          "[evaluate][sink][range]") {
    // Ranges of whole elements; tensors larger than one range (f32, bf16 and an int pass-through),
    // odd lengths, empty and rank-0 tensors.
    const std::vector<test::tensor_spec> specs = {{"big.f32", dtype::f32, {600'001}},     {"big.bf16", dtype::bf16, {3, 700'001}},
                                                  {"ids", dtype::i64, {300'007}},        {"odd", dtype::f16, {1031}},
                                                  {"empty", dtype::f32, {0}},            {"scalar", dtype::bf16, {}}};
    const auto t = test::random_store("t", specs, 1), rl = test::perturbed(t, "rl", 2, 0.1f), sft = test::perturbed(t, "sft", 3, 0.1f);
    struct ranged_sink {
        memory_store inner;
        std::vector<std::string> log;
        std::map<std::string, std::uint64_t> next;
        std::vector<std::byte> scratch;
        std::span<std::byte> acquire(const tensor_info&) {
            FAIL("acquire() called on a range sink");
            return {};
        }
        std::span<std::byte> acquire_range(const tensor_info& i, std::uint64_t off, std::uint64_t n) {
            CHECK(off == next[i.name]); // in order, no gap
            CHECK(n <= range_sink_bytes);
            CHECK(n % std::max<std::uint64_t>(1, bits_of(i.type) / 8) == 0); // whole elements
            scratch.assign(n, std::byte{0xAB});                             // a fresh buffer each time
            return scratch;
        }
        void commit_range(const tensor_info& i, std::uint64_t off, std::uint64_t n) {
            if (!inner.find(i.name)) inner.add(i.name, i.type, i.dims);
            std::memcpy(inner.find_mutable(i.name)->bytes.data() + off, scratch.data(), n);
            next[i.name] = off + n;
        }
        void commit(const tensor_info& i) {
            if (!inner.find(i.name)) inner.add(i.name, i.type, i.dims);
            CHECK(next[i.name] == i.nbytes()); // covered exactly
            log.push_back(i.name);
        }
    };
    static_assert(range_sink<ranged_sink>);
    const auto e = past(weights(t), weights(rl), weights(sft), 0.3f);
    ranged_sink s;
    const auto rep = evaluate(e, s);
    const auto want = materialize(e);
    CHECK(s.log == want.tensor_names());
    for (const auto& n : want.tensor_names()) {
        INFO(n);
        CHECK(test::same_bits(s.inner.at(n), want.at(n)));
    }
    CHECK(rep.passed_through == std::vector<std::string>{"ids"});
    CHECK(s.next["big.bf16"] == 3 * 700'001 * 2);
}

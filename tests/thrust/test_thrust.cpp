// The Thrust backend against the xsimd backend (and, where it helps, against scalar references).
//
// Built twice from this one file: with g++ and THRUST_DEVICE_SYSTEM=OMP in CI (the Thrust
// algorithms then run on the host, through the same functors as on a GPU), and with nvcc as
// tests/thrust/test_thrust.cu in a CUDA build (-DSKILLVEC_CUDA=ON), where they run on the GPU.
// Element-wise results must be bit-identical to the CPU backend's (same f32 arithmetic, same
// explicit FMA, same conversions); reductions (f64 on the device, f32 blocks flushed to f64 on
// the CPU) must agree to 1e-6 relative.
#include "../helpers.hpp"
#include "../tmpdir.hpp"

#include <skillvec/gpu.hpp>
#include <skillvec/io/safetensors.hpp>
#include <skillvec/io/safetensors_writer.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

using namespace skillvec;
using test::tensor_spec;

namespace {

/// Tensors of every awkward kind: odd lengths, a rank-0 scalar, an empty one, and one larger than
/// a small staging piece.
std::vector<tensor_spec> specs_of(dtype t) {
    return {{"model.layers.0.attn.w", t, {33, 7}},     {"model.layers.0.mlp.w", t, {1001}}, {"model.layers.1.attn.w", t, {5, 13, 3}},
            {"model.norm.scale", t, {}},               {"model.empty", t, {0, 4}},          {"lm_head.w", t, {70001}}};
}

/// Requires two stores to hold bit-identical tensors, in the same order.
void require_same(const memory_store& got, const memory_store& want) {
    REQUIRE(got.tensor_names() == want.tensor_names());
    for (const auto& n : want.tensor_names()) {
        INFO("tensor " << n);
        REQUIRE(test::same_bits(*got.find(n), *want.find(n)));
    }
}

/// Relative agreement of two f64 sums, measured against `scale` (the sum of magnitudes).
bool close(double got, double want, double scale, double rel = 1e-6) {
    if (std::isnan(want)) return std::isnan(got);
    return std::fabs(got - want) <= rel * scale;
}

/// Puts the values into tensor `name` (f32 values, rounded to the tensor's dtype).
void put(memory_store& s, const std::string& name, const std::vector<float>& v) {
    const auto t = s.at(name).type;
    auto dst = *s.find_mutable(name);
    REQUIRE(dst.numel() == v.size());
    for (std::size_t i = 0; i < v.size(); ++i) store_from_f32(t, dst.bytes.data(), i, v[i]);
}

} // namespace

TEST_CASE("the backend reports its Thrust device system", "[thrust]") {
    const auto name = gpu_system_name();
    CHECK((name == "cuda" || name == "omp" || name == "cpp" || name == "tbb"));
}

TEST_CASE("device_store: upload and download are byte-exact for every dtype, rank-0 and empty", "[thrust][device_store]") {
    memory_store src("src");
    std::vector<tensor_spec> specs = {{"a", dtype::f32, {3, 5}}, {"b", dtype::bf16, {7}}, {"c", dtype::f16, {}},
                                      {"d", dtype::f64, {2, 2}}, {"e", dtype::i32, {9}},  {"f", dtype::boolean, {3}},
                                      {"g", dtype::u8, {0}},     {"h", dtype::f32, {0, 3}}};
    auto filled = test::random_store("src", specs, 7);
    const auto d = device_store::upload(filled);
    CHECK(d.label() == "src");
    REQUIRE(d.tensor_names() == filled.tensor_names());
    const auto first = reinterpret_cast<std::uintptr_t>(d.find_device("a")->bytes.data());
    for (const auto& s : specs) {
        const auto v = d.find_device(s.name);
        REQUIRE(v);
        CHECK(v->type == s.type);
        CHECK(v->dims == s.dims);
        // One pooled allocation, each tensor at an aligned offset in it.
        CHECK((reinterpret_cast<std::uintptr_t>(v->bytes.data()) - first) % backend::device::device_alignment == 0);
    }
    require_same(d.download(), filled);
    CHECK_FALSE(d.find_device("nope"));
    CHECK_FALSE(d.find("nope"));
    // The bytes are on the device: the CPU backend must not read them, and says why.
    CHECK_THROWS_WITH(d.find("a"), Catch::Contains("device memory") && Catch::Contains("skillvec::gpu"));
    memory_store out;
    CHECK_THROWS_WITH(evaluate(weights(d) - weights(d), out), Catch::Contains("'a'") && Catch::Contains("device memory"));
}

TEST_CASE("device_store as a sink: begin allocates the plan and refuses names it holds", "[thrust][device_store]") {
    auto a = test::random_store("a", specs_of(dtype::bf16), 1);
    auto b = test::random_store("b", specs_of(dtype::bf16), 2);
    device_store d("d");
    evaluate(weights(a) - weights(b), d, gpu);
    CHECK(d.size() == a.size());
    CHECK(d.device_bytes() >= 4 * (33 * 7 + 1001 + 5 * 13 * 3 + 1 + 70001));
    require_same(d.download(), materialize(weights(a) - weights(b)));
    CHECK_THROWS_WITH(evaluate(weights(a) - weights(b), d, gpu), Catch::Contains("already exists"));
}

TEST_CASE("element-wise expressions give the CPU backend's bits, on device and host operands", "[thrust][map]") {
    for (dtype t : {dtype::f32, dtype::bf16, dtype::f16}) {
        INFO("dtype " << name_of(t));
        auto tgt = test::random_store("t", specs_of(t), 11);
        auto rl = test::perturbed(tgt, "rl", 12, 0.05f);
        auto sft = test::perturbed(tgt, "sft", 13, 0.05f);
        const auto dt = device_store::upload(tgt), drl = device_store::upload(rl), dsft = device_store::upload(sft);
        // PaST, and the other forms the algebra builds: a scaled sum (an FMA), a plain sum,
        // negation, division, a point minus a vector, lerp of points and of vectors.
        auto check = [&](const auto& cpu_expr, const auto& gpu_expr, eval_options opt = {}) {
            const auto want = materialize(cpu_expr, cpu, opt);
            // All operands on the device, result on the device: one kernel per tensor.
            device_store out;
            evaluate(gpu_expr, out, gpu, opt);
            require_same(out.download(), want);
            // Host operands staged in small pieces, result copied back to a memory_store.
            require_same(materialize(cpu_expr, gpu_backend{.staging_elements = 1000}, opt), want);
        };
        check(past(weights(tgt), weights(rl), weights(sft), 0.7f), past(weights(dt), weights(drl), weights(dsft), 0.7f));
        check(weights(tgt) + (weights(rl) - weights(sft)), weights(dt) + (weights(drl) - weights(dsft)));
        check(-(weights(rl) - weights(sft)) / 3.0f + (weights(tgt) - weights(sft)),
              -(weights(drl) - weights(dsft)) / 3.0f + (weights(dt) - weights(dsft)));
        check(weights(tgt) - 0.25f * (weights(rl) - weights(sft)), weights(dt) - 0.25f * (weights(drl) - weights(dsft)));
        check(lerp(weights(rl), weights(sft), 0.3f), lerp(weights(drl), weights(dsft), 0.3f));
        check(lerp(weights(rl) - weights(tgt), weights(sft) - weights(tgt), 0.6f),
              lerp(weights(drl) - weights(dt), weights(dsft) - weights(dt), 0.6f));
        // Output dtype conversions on the way out (f32 -> 16-bit in the functor, and f64).
        for (dtype o : {dtype::f32, dtype::bf16, dtype::f16, dtype::f64})
            check(weights(rl) - weights(sft), weights(drl) - weights(dsft), eval_options{.out_dtype = o});
    }
}

TEST_CASE("bf16 and f16 rounding ties, NaN and Inf come out as on the CPU and as the scalar reference", "[thrust][edge]") {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    // a - b with b = 0 is exact in f32, so the result's rounding is the output conversion alone:
    // exact halfway points between bf16 (1 + 2^-8 = halfway between 1 and 1 + 2^-7) and f16
    // neighbours (1 + 2^-11), both parities, and specials.
    const std::vector<float> a = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -(1.0f + 0x1p-8f), 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f,
                                  65520.0f,       inf,                -inf,              nan,             -nan,
                                  0x1p-25f,       0x1p-149f,          -0.0f,             3.0e38f,         1.0f + 0x1p-9f};
    const std::vector<float> b(a.size(), 0.0f);
    memory_store sa("a"), sb("b");
    sa.add("x", dtype::f32, {a.size()});
    sb.add("x", dtype::f32, {b.size()});
    put(sa, "x", a);
    put(sb, "x", b);
    const auto da = device_store::upload(sa), db = device_store::upload(sb);
    for (dtype o : {dtype::bf16, dtype::f16}) {
        INFO("out " << name_of(o));
        const eval_options opt{.out_dtype = o};
        const auto want = materialize(weights(sa) - weights(sb), cpu, opt);
        device_store out;
        evaluate(weights(da) - weights(db), out, gpu, opt);
        const auto got = out.download();
        require_same(got, want);
        const auto* bits = reinterpret_cast<const std::uint16_t*>(got.at("x").bytes.data());
        for (std::size_t i = 0; i < a.size(); ++i)
            CHECK(bits[i] == (o == dtype::bf16 ? f32_to_bf16(a[i]) : f32_to_f16(a[i])));
    }
    // Inf - Inf is NaN; NaN propagates through the FMA; 16-bit NaN inputs stay NaN.
    memory_store t("t");
    t.add("x", dtype::bf16, {4});
    put(t, "x", {inf, nan, 1.0f, -inf});
    memory_store u("u");
    u.add("x", dtype::bf16, {4});
    put(u, "x", {inf, 1.0f, nan, 2.0f});
    const auto dtt = device_store::upload(t), du = device_store::upload(u);
    device_store out;
    evaluate(weights(dtt) + 2.0f * (weights(dtt) - weights(du)), out, gpu);
    const auto got = out.download();
    require_same(got, materialize(weights(t) + 2.0f * (weights(t) - weights(u))));
    const auto f = got.to_f32("x");
    CHECK(std::isnan(f[0]));
    CHECK(std::isnan(f[1]));
    CHECK(std::isnan(f[2]));
    CHECK(f[3] == -inf);
}

TEST_CASE("mixed float dtypes and f64 take the dynamic path and still match the CPU", "[thrust][dtype]") {
    auto model = test::random_store("model", specs_of(dtype::bf16), 21);
    auto vec = test::random_store("vec", specs_of(dtype::f32), 22, 0.01f);
    auto wide = test::random_store("wide", specs_of(dtype::f64), 23);
    auto wide2 = test::perturbed(wide, "wide2", 24, 0.1f);
    const eval_options mixed{.allow_mixed_float_dtypes = true};
    const auto dm = device_store::upload(model), dv = device_store::upload(vec);
    device_store out;
    evaluate(inject(weights(dm), delta(dv), 1.5f), out, gpu, mixed);
    require_same(out.download(), materialize(inject(weights(model), delta(vec), 1.5f), cpu, mixed));
    // Device and host operands in one expression.
    require_same(materialize(inject(weights(model), delta(dv), 1.5f), gpu, mixed),
                 materialize(inject(weights(model), delta(vec), 1.5f), cpu, mixed));
    require_same(materialize(weights(wide) - weights(wide2), gpu), materialize(weights(wide) - weights(wide2)));
    require_same(materialize(weights(wide) + 0.5f * (weights(wide2) - weights(wide)), gpu),
                 materialize(weights(wide) + 0.5f * (weights(wide2) - weights(wide))));
    // Without the option, binding refuses the mix exactly as on the CPU, before any work.
    CHECK_THROWS_AS(evaluate(inject(weights(dm), delta(dv), 1.5f), out, gpu), binding_error);
}

TEST_CASE("non-float tensors pass through a point result and are skipped from a vector result", "[thrust][passthrough]") {
    std::vector<tensor_spec> specs = specs_of(dtype::bf16);
    specs.push_back({"model.position_ids", dtype::i64, {1, 37}});
    specs.push_back({"model.mask", dtype::boolean, {11}});
    auto t = test::random_store("t", specs, 31);
    auto rl = test::perturbed(t, "rl", 32, 0.1f), sft = test::perturbed(t, "sft", 33, 0.1f);
    const auto dt = device_store::upload(t), drl = device_store::upload(rl), dsft = device_store::upload(sft);
    device_store out;
    const auto rep = evaluate(past(weights(dt), weights(drl), weights(dsft), 1.0f), out, gpu);
    CHECK(rep.passed_through == std::vector<std::string>{"model.position_ids", "model.mask"});
    CHECK(rep.computed.size() == specs.size() - 2);
    require_same(out.download(), materialize(past(weights(t), weights(rl), weights(sft), 1.0f)));
    // Host operands, host sink, and a device point operand into a host sink.
    require_same(materialize(past(weights(t), weights(rl), weights(sft), 1.0f), gpu),
                 materialize(past(weights(t), weights(rl), weights(sft), 1.0f)));
    require_same(materialize(past(weights(dt), weights(rl), weights(sft), 1.0f), gpu),
                 materialize(past(weights(t), weights(rl), weights(sft), 1.0f)));
    memory_store vec;
    const auto vrep = evaluate(weights(drl) - weights(dsft), vec, gpu);
    CHECK(vrep.skipped == std::vector<std::string>{"model.position_ids", "model.mask"});
    require_same(vec, materialize(weights(rl) - weights(sft)));
}

TEST_CASE("reductions agree with the CPU backend to 1e-6 and with an exact sum", "[thrust][reduce]") {
    for (dtype t : {dtype::f32, dtype::bf16, dtype::f16}) {
        INFO("dtype " << name_of(t));
        auto specs = specs_of(t);
        specs.push_back({"model.layers.2.big", t, {3, 100003}}); // several CPU reduction blocks
        auto base = test::random_store("base", specs, 41);
        auto a = test::perturbed(base, "a", 42, 0.02f), b = test::perturbed(base, "b", 43, 0.02f);
        const auto dbase = device_store::upload(base), da = device_store::upload(a), db = device_store::upload(b);
        const auto va = weights(da) - weights(dbase), vb = weights(db) - weights(dbase);
        const auto ha = weights(a) - weights(base), hb = weights(b) - weights(base);

        const auto cos_g = evaluate(cosine(va, vb), gpu), cos_c = evaluate(cosine(ha, hb));
        REQUIRE(cos_g.tensors.size() == cos_c.tensors.size());
        for (std::size_t i = 0; i < cos_c.tensors.size(); ++i) {
            const auto& g = cos_g.tensors[i].stats;
            const auto& c = cos_c.tensors[i].stats;
            INFO("tensor " << cos_c.tensors[i].name);
            CHECK(cos_g.tensors[i].name == cos_c.tensors[i].name);
            CHECK(g.numel == c.numel);
            const double scale = std::sqrt(c.sum_sq_a * c.sum_sq_b); // |dot| <= |a||b|
            CHECK(close(g.dot, c.dot, scale));
            CHECK(close(g.sum_sq_a, c.sum_sq_a, c.sum_sq_a));
            CHECK(close(g.sum_sq_b, c.sum_sq_b, c.sum_sq_b));
        }
        REQUIRE(cos_g.layers.size() == cos_c.layers.size());
        for (std::size_t i = 0; i < cos_c.layers.size(); ++i) {
            CHECK(cos_g.layers[i].layer == cos_c.layers[i].layer);
            CHECK(cos_g.layers[i].tensors == cos_c.layers[i].tensors);
        }
        CHECK(std::fabs(cos_g.value() - cos_c.value()) <= 1e-6);

        // An exact reference that shares nothing with either backend.
        test::exact_sum ex_dot, aa, bb;
        for (const auto& n : base.tensor_names()) {
            const auto x0 = base.to_f32(n), x1 = a.to_f32(n), x2 = b.to_f32(n);
            for (std::size_t i = 0; i < x0.size(); ++i) {
                const double u = x1[i] - x0[i], v = x2[i] - x0[i]; // rounded to f32 as the nodes do, then exact
                ex_dot.add(u * v);
                aa.add(u * u);
                bb.add(v * v);
            }
        }
        CHECK(close(cos_g.global.dot, ex_dot.value(), std::sqrt(aa.value() * bb.value()), 1e-9));
        CHECK(close(cos_g.global.sum_sq_a, aa.value(), aa.value(), 1e-12));
        CHECK(close(cos_g.global.sum_sq_b, bb.value(), bb.value(), 1e-12));

        // Correlated vectors: their cosine is far from 0, so it is compared relatively too.
        const auto corr = evaluate(cosine(va, va + 0.5f * vb), gpu), corr_c = evaluate(cosine(ha, ha + 0.5f * hb));
        CHECK(close(corr.value(), corr_c.value(), std::fabs(corr_c.value())));

        const auto dot_g = evaluate(dot(va, vb), gpu), dot_c = evaluate(dot(ha, hb));
        CHECK(close(dot_g.value(), dot_c.value(), std::sqrt(cos_c.global.sum_sq_a * cos_c.global.sum_sq_b)));
        CHECK(close(evaluate(norm(va), gpu).value(), evaluate(norm(ha)).value(), evaluate(norm(ha)).value()));
        const auto sp_g = evaluate(sparsity(va, 0.01f), gpu), sp_c = evaluate(sparsity(ha, 0.01f));
        CHECK(sp_g.global.small == sp_c.global.small);
        CHECK(sp_g.global.numel == sp_c.global.numel);
        const auto cmp_g = evaluate(compare(va, vb, 0.02f), gpu), cmp_c = evaluate(compare(ha, hb, 0.02f));
        CHECK(cmp_g.global.small_a == cmp_c.global.small_a);
        CHECK(cmp_g.global.small_b == cmp_c.global.small_b);
        CHECK(close(cmp_g.global.sum_sq_a, cmp_c.global.sum_sq_a, cmp_c.global.sum_sq_a));
        // Host operands, staged in small pieces: the same sums.
        const auto staged = evaluate(cosine(ha, hb), gpu_backend{.staging_elements = 4096});
        CHECK(close(staged.global.dot, cos_c.global.dot, std::sqrt(cos_c.global.sum_sq_a * cos_c.global.sum_sq_b)));
        CHECK(close(staged.global.sum_sq_a, cos_c.global.sum_sq_a, cos_c.global.sum_sq_a));
    }
}

TEST_CASE("reductions: empty tensors, zero vectors, NaN and mixed dtypes", "[thrust][reduce][edge]") {
    memory_store z("z"), o("o");
    z.add("model.empty", dtype::f32, {0});
    z.add("model.zero", dtype::bf16, {5});
    o.add("model.empty", dtype::f32, {0});
    o.add("model.zero", dtype::bf16, {5});
    put(o, "model.zero", {1, 2, 3, 4, 5});
    const auto dz = device_store::upload(z), dob = device_store::upload(o);
    const auto r = evaluate(cosine(weights(dob) - weights(dz), weights(dz) - weights(dz)), gpu);
    CHECK(r.tensor("model.empty").stats.numel == 0);
    CHECK(std::isnan(r.tensor("model.empty").stats.cosine()));
    CHECK(std::isnan(r.tensor("model.zero").stats.cosine())); // a zero vector: undefined, not orthogonal
    CHECK(r.tensor("model.zero").stats.sum_sq_a == 55.0);
    CHECK(std::isnan(evaluate(sparsity(weights(dz) - weights(dz)), gpu).tensor("model.empty").stats.value()));
    CHECK(evaluate(sparsity(weights(dz) - weights(dz)), gpu).tensor("model.zero").stats.small == 5);

    memory_store n("n");
    n.add("model.empty", dtype::f32, {0});
    n.add("model.zero", dtype::bf16, {5});
    put(n, "model.zero", {1, std::numeric_limits<float>::quiet_NaN(), 3, 4, 5});
    const auto dn = device_store::upload(n);
    CHECK(std::isnan(evaluate(norm(weights(dn) - weights(dz)), gpu).value()));
    CHECK(evaluate(sparsity(weights(dn) - weights(dn), 0.0f), gpu).global.small == 4); // NaN - NaN is never small

    // Mixed dtypes: a bf16 delta against an f32 one.
    auto b16 = test::random_store("b16", specs_of(dtype::bf16), 51);
    auto f32 = test::random_store("f32", specs_of(dtype::f32), 52);
    const eval_options mixed{.allow_mixed_float_dtypes = true};
    const auto g = evaluate(cosine(delta(b16), delta(f32)), gpu, mixed), c = evaluate(cosine(delta(b16), delta(f32)), cpu, mixed);
    CHECK(close(g.global.dot, c.global.dot, std::sqrt(c.global.sum_sq_a * c.global.sum_sq_b)));
    CHECK(close(g.global.sum_sq_b, c.global.sum_sq_b, c.global.sum_sq_b));
}

TEST_CASE("binding on the device reports every problem at once, before any work", "[thrust][bind]") {
    auto a = test::random_store("a", specs_of(dtype::f32), 61);
    auto b = test::random_store("b", {{"model.layers.0.attn.w", dtype::f32, {33, 8}}, {"extra", dtype::f32, {2}}}, 62);
    const auto da = device_store::upload(a), db = device_store::upload(b);
    device_store out;
    try {
        evaluate(weights(da, "a") - weights(db, "b"), out, gpu);
        FAIL("no binding_error");
    } catch (const binding_error& e) {
        CHECK(e.problems().size() == specs_of(dtype::f32).size() - 1 + 1 + 1); // missing, shape, extra
        CHECK(std::string(e.what()).find("'b'") != std::string::npos);
    }
    CHECK(out.size() == 0);
}

TEST_CASE("in place on the device: into(d) gives the out-of-place result", "[thrust][inplace]") {
    for (dtype t : {dtype::f32, dtype::bf16}) {
        auto tgt = test::random_store("t", specs_of(t), 71);
        auto rl = test::perturbed(tgt, "rl", 72, 0.1f), sft = test::perturbed(tgt, "sft", 73, 0.1f);
        auto d = device_store::upload(tgt);
        const auto drl = device_store::upload(rl), dsft = device_store::upload(sft);
        evaluate(past(weights(d), weights(drl), weights(dsft), 1.0f), into(d), gpu);
        require_same(d.download(), materialize(past(weights(tgt), weights(rl), weights(sft), 1.0f)));
        // A host store in place, through host staging.
        evaluate(past(weights(tgt), weights(rl), weights(sft), 1.0f), into(tgt), gpu_backend{.staging_elements = 777});
        require_same(tgt, d.download());
        // The wrong shape is refused with the tensor's name.
        auto other = test::random_store("o", {{"model.layers.0.attn.w", t, {1}}}, 74);
        auto dother = device_store::upload(other);
        CHECK_THROWS_WITH(evaluate(weights(drl) - weights(dsft), into(dother), gpu, eval_options{.out_dtype = t}),
                          Catch::Contains("model.layers.0.attn.w"));
    }
}

TEST_CASE("safetensors -> device -> safetensors equals the CPU's safetensors output", "[thrust][safetensors]") {
    test::tmpdir dir;
    std::vector<tensor_spec> specs = specs_of(dtype::bf16);
    specs.push_back({"model.position_ids", dtype::i64, {1, 9}});
    auto t = test::random_store("t", specs, 81);
    auto rl = test::perturbed(t, "rl", 82, 0.05f), sft = test::perturbed(t, "sft", 83, 0.05f);
    // Written through device_store::download into the writer (a range sink).
    for (auto* s : {&t, &rl, &sft}) device_store::upload(*s).download(safetensors_writer(dir / (s->label() + ".safetensors")));
    const auto ft = safetensors_store::open(dir / "t.safetensors"), frl = safetensors_store::open(dir / "rl.safetensors"),
               fsft = safetensors_store::open(dir / "sft.safetensors");
    require_same(device_store::upload(ft).download(), t);

    auto read_file = [](const std::filesystem::path& p) {
        std::ifstream f(p, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), {});
    };
    evaluate(past(weights(ft), weights(frl), weights(fsft), 1.0f), safetensors_writer(dir / "cpu.safetensors"));
    // Uploaded, evaluated on the device, downloaded into a writer.
    const auto dt = device_store::upload(ft), drl = device_store::upload(frl), dsft = device_store::upload(fsft);
    device_store out;
    evaluate(past(weights(dt), weights(drl), weights(dsft), 1.0f), out, gpu);
    out.download(safetensors_writer(dir / "device.safetensors"));
    // Mapped files staged to the device piece by piece, the result straight into a writer.
    evaluate(past(weights(ft), weights(frl), weights(fsft), 1.0f), safetensors_writer(dir / "staged.safetensors"),
             gpu_backend{.staging_elements = 5000});
    const auto want = read_file(dir / "cpu.safetensors");
    CHECK(want.size() > 8);
    CHECK(read_file(dir / "device.safetensors") == want);
    CHECK(read_file(dir / "staged.safetensors") == want);
}

TEST_CASE("per-tensor parameters take each tensor's value on the gpu backend too", "[thrust][parameter]") {
    auto tgt = test::random_store("t", specs_of(dtype::bf16), 21);
    auto rl = test::perturbed(tgt, "rl", 22, 0.05f);
    auto sft = test::perturbed(tgt, "sft", 23, 0.05f);
    const parameter lam = parameter::rules({{tensor_filter{"attn"}, 0.0f}, {tensor_filter{}, parameter::gradient({0.5f, 2.0f})}});
    const auto want = materialize(past(weights(tgt), weights(rl), weights(sft), lam));
    require_same(materialize(past(weights(tgt), weights(rl), weights(sft), lam), gpu), want);
    // A lambda of 0 somewhere: that tensor is the target's (a stale factor would not be).
    const auto ev = evaluate(norm(lam * (weights(rl) - weights(sft))), gpu);
    const auto cv = evaluate(norm(lam * (weights(rl) - weights(sft))));
    for (std::size_t i = 0; i < cv.tensors.size(); ++i)
        CHECK(ev.tensors[i].stats.value() == Approx(cv.tensors[i].stats.value()).epsilon(1e-6).margin(1e-12));
}

TEST_CASE("reductions leave out tensors excluded by eval_options::keep, as on the CPU", "[thrust][reduce]") {
    auto a = test::random_store("a", specs_of(dtype::f32), 31);
    auto b = test::perturbed(a, "b", 32, 0.05f);
    eval_options opt;
    opt.keep = [](std::string_view n) { return n.find("attn") != std::string_view::npos; };
    const auto g = evaluate(norm(weights(a) - weights(b)), gpu, opt);
    const auto c = evaluate(norm(weights(a) - weights(b)), opt);
    CHECK(g.skipped == c.skipped);
    REQUIRE(g.tensors.size() == c.tensors.size());
    REQUIRE(g.layers.size() == c.layers.size());
    for (std::size_t i = 0; i < c.tensors.size(); ++i) CHECK(g.tensors[i].name == c.tensors[i].name);
    CHECK(g.value() == Approx(c.value()).epsilon(1e-6));
}

// Per-tensor parameters (expr/parameter.hpp): layer positions, gradients, filter rules; their use
// in the algebra (parameter * vector, lerp, past) and eval_options::keep (excluded tensors).
#include "helpers.hpp"
#include "tmpdir.hpp"

#include <skillvec/io/safetensors.hpp>
#include <skillvec/io/safetensors_writer.hpp>
#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

using namespace skillvec;
using test::tensor_spec;

namespace {
tensor_site at(std::string_view name, int num_layers) { return {name, layer_of(name), num_layers}; }
} // namespace

TEST_CASE("layer position: layers spread over [0, 1], embeddings first, heads last", "[parameter]") {
    CHECK(layer_position(at("model.layers.0.mlp.weight", 5)) == 0.0);
    CHECK(layer_position(at("model.layers.4.mlp.weight", 5)) == 1.0);
    CHECK(layer_position(at("model.layers.1.mlp.weight", 5)) == 0.25);
    CHECK(layer_position(at("model.layers.0.mlp.weight", 1)) == 0.0);
    CHECK(layer_position(at("model.embed_tokens.weight", 5)) == 0.0);
    CHECK(layer_position(at("transformer.wte.weight", 5)) == 0.0);
    CHECK(layer_position(at("model.norm.weight", 5)) == 1.0);
    CHECK(layer_position(at("lm_head.weight", 5)) == 1.0);
}

TEST_CASE("gradient: linear between evenly spaced points (hand-computed)", "[parameter]") {
    const parameter g = parameter::gradient({0.0f, 1.0f, 0.5f});
    // 9 layers: t = l/8, scaled = t*2.
    CHECK(g.at(at("layers.0.w", 9)) == 0.0f);
    CHECK(g.at(at("layers.2.w", 9)) == 0.5f);    // scaled 0.5 -> 0.5*0 + 0.5*1
    CHECK(g.at(at("layers.4.w", 9)) == 1.0f);    // exactly on the middle point
    CHECK(g.at(at("layers.6.w", 9)) == 0.75f);   // scaled 1.5 -> 0.5*1 + 0.5*0.5
    CHECK(g.at(at("layers.8.w", 9)) == 0.5f);    // last point
    CHECK(g.at(at("lm_head.weight", 9)) == 0.5f);
    CHECK(g.at(at("embed.weight", 9)) == 0.0f);
    CHECK(parameter::gradient({2.5f}).is_constant());
    CHECK_THROWS_AS(parameter::gradient({}), error);
    CHECK(g.describe() == "gradient(0, 1, 0.5)");
}

TEST_CASE("rules: first match wins; substrings, globs, layer ranges; no match is an error", "[parameter]") {
    const parameter p = parameter::rules({{tensor_filter{"mlp"}, 0.5f},
                                          {tensor_filter{"*.attn.*.weight"}, 0.25f},
                                          {tensor_filter{"", std::pair{1, 2}}, parameter::gradient({1.0f, 3.0f})},
                                          {tensor_filter{"ln_f"}, 2.0f}});
    CHECK(p.at(at("layers.0.mlp.fc.weight", 4)) == 0.5f);
    CHECK(p.at(at("layers.3.attn.qkv.weight", 4)) == 0.25f);
    CHECK_THROWS(p.at(at("layers.3.attn.qkv.bias", 4))); // the glob is anchored at both ends: no rule matches
    CHECK(p.at(at("layers.1.ln1.bias", 4)) == Approx(1.0f + 2.0f / 3.0f));
    CHECK(p.at(at("ln_f.weight", 4)) == 2.0f);            // outside the layers: the layer rule never matches
    CHECK_THROWS_WITH(p.at(at("wte.weight", 4)),
                      Catch::Contains("has no value for tensor 'wte.weight'") && Catch::Contains("default"));
    CHECK(p.describe() == "rules(mlp: 0.5, *.attn.*.weight: 0.25, * @layers 1..2: gradient(1, 3), ln_f: 2)");
    // A single unfiltered rule is just its value.
    CHECK(parameter::rules({{tensor_filter{}, 3.0f}}).is_constant());
}

TEST_CASE("glob matching", "[parameter]") {
    CHECK(detail::glob_match("a*c", "abbbc"));
    CHECK(detail::glob_match("a?c", "abc"));
    CHECK_FALSE(detail::glob_match("a?c", "abbc"));
    CHECK(detail::glob_match("*", ""));
    CHECK(detail::glob_match("**x", "yx"));
    CHECK_FALSE(detail::glob_match("*x", "xy"));
}

TEST_CASE("a per-tensor lambda gives each tensor the PaST of its own lambda, bit for bit", "[parameter][evaluate]") {
    const std::vector<tensor_spec> specs{{"embed.weight", dtype::bf16, {33}},
                                         {"layers.0.w", dtype::bf16, {1000}},
                                         {"layers.1.w", dtype::f32, {777}},
                                         {"layers.2.w", dtype::f16, {70000}},
                                         {"head.weight", dtype::f32, {5}}};
    const auto target = test::random_store("t", specs, 1);
    const auto rl = test::random_store("rl", specs, 2);
    const auto sft = test::random_store("sft", specs, 3);
    const parameter lam = parameter::rules({{tensor_filter{"embed"}, 0.0f}, {tensor_filter{}, parameter::gradient({0.5f, 1.5f})}});
    const auto out = materialize(past(weights(target), weights(rl), weights(sft), lam));
    for (const auto& name : target.tensor_names()) {
        const float l = lam.at(tensor_site{name, layer_of(name), 3});
        memory_store t1, r1, s1;
        for (auto [dst, src] : {std::pair{&t1, &target}, {&r1, &rl}, {&s1, &sft}}) {
            auto v = src->at(name);
            dst->add_bytes(name, v.type, v.dims, v.bytes);
        }
        const auto want = materialize(past(weights(t1), weights(r1), weights(s1), l));
        const auto a = out.at(name), b = want.at(name);
        REQUIRE(a.bytes.size() == b.bytes.size());
        CHECK(std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0);
    }
    // The expression describes its parameter.
    CHECK(describe(past(weights(target, "t"), weights(rl, "rl"), weights(sft, "sft"), parameter::gradient({0.0f, 1.0f}))) ==
          "t + gradient(0, 1) * (rl - sft)");
}

TEST_CASE("lerp with a per-tensor t", "[parameter][evaluate]") {
    const std::vector<tensor_spec> specs{{"layers.0.w", dtype::f32, {100}}, {"layers.1.w", dtype::f32, {100}}};
    const auto a = test::random_store("a", specs, 4), b = test::random_store("b", specs, 5);
    const auto out = materialize(lerp(weights(a), weights(b), parameter::gradient({0.0f, 1.0f})));
    const auto x0 = out.to_f32("layers.0.w"), a0 = a.to_f32("layers.0.w");
    const auto x1 = out.to_f32("layers.1.w"), b1 = b.to_f32("layers.1.w");
    for (std::size_t i = 0; i < 100; ++i) {
        CHECK(x0[i] == a0[i]); // t = 0: exactly a
        CHECK(x1[i] == b1[i]); // t = 1: exactly b
    }
}

TEST_CASE("keep: excluded tensors come from the point operand (converted), zeros in a vector, absent from reductions",
          "[parameter][evaluate]") {
    const std::vector<tensor_spec> specs{{"embed.weight", dtype::bf16, {10, 3}},
                                         {"layers.0.w", dtype::bf16, {70001}},
                                         {"mask", dtype::i64, {4}},
                                         {"lm_head.weight", dtype::bf16, {3, 10}}};
    const auto target = test::random_store("t", specs, 7);
    const auto rl = test::random_store("rl", specs, 8), sft = test::random_store("sft", specs, 9);
    eval_options opt;
    opt.keep = [](std::string_view n) { return n.find("embed") != n.npos || n.find("lm_head") != n.npos; };
    const auto expr = past(weights(target), weights(rl), weights(sft), 0.5f);

    memory_store out;
    const auto rep = evaluate(expr, out, opt);
    CHECK(rep.kept == std::vector<std::string>{"embed.weight", "lm_head.weight"});
    CHECK(rep.computed == std::vector<std::string>{"layers.0.w"});
    for (const char* n : {"embed.weight", "lm_head.weight", "mask"}) {
        const auto a = out.at(n), b = target.at(n);
        CHECK(a.type == b.type);
        CHECK(std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0);
    }
    // The computed tensor is what it would be without the option.
    const auto plain = materialize(expr);
    CHECK(std::memcmp(out.at("layers.0.w").bytes.data(), plain.at("layers.0.w").bytes.data(), out.at("layers.0.w").bytes.size()) == 0);

    // Converted when the output dtype differs: the bf16 values, exactly, as f32.
    opt.out_dtype = dtype::f32;
    const auto wide = materialize(expr, opt);
    CHECK(wide.at("embed.weight").type == dtype::f32);
    CHECK(wide.to_f32("embed.weight") == target.to_f32("embed.weight"));

    // A vector result: zeros.
    eval_options vopt;
    vopt.keep = opt.keep;
    const auto v = materialize(weights(rl) - weights(sft), vopt);
    for (float x : v.to_f32("lm_head.weight")) CHECK(x == 0.0f);
    CHECK(v.to_f32("layers.0.w") == materialize(weights(rl) - weights(sft)).to_f32("layers.0.w"));

    // Reductions leave them out.
    const auto r = evaluate(norm(weights(rl) - weights(sft)), vopt);
    CHECK(r.tensors.size() == 1);
    CHECK(r.skipped.size() == 3);

    // In place (into the target itself): kept tensors stay untouched.
    auto t2 = test::random_store("t2", specs, 7);
    const auto before = t2.to_f32("embed.weight");
    evaluate(past(weights(t2), weights(rl), weights(sft), 0.5f), into(t2), vopt);
    CHECK(t2.to_f32("embed.weight") == before);
    CHECK(t2.to_f32("layers.0.w") == plain.to_f32("layers.0.w"));
}

TEST_CASE("keep through a range sink (the safetensors writer) matches the whole-tensor path", "[parameter][evaluate]") {
    const std::vector<tensor_spec> specs{{"embed.weight", dtype::f32, {300000}}, {"layers.0.w", dtype::bf16, {300001}}};
    const auto target = test::random_store("t", specs, 11);
    const auto rl = test::random_store("rl", specs, 12), sft = test::random_store("sft", specs, 13);
    eval_options opt;
    opt.keep = [](std::string_view n) { return n.starts_with("embed"); };
    opt.out_dtype = dtype::bf16;
    const auto expr = past(weights(target), weights(rl), weights(sft), 0.5f);
    const auto whole = materialize(expr, opt);
    test::tmpdir dir;
    {
        safetensors_writer w(dir / "out");
        evaluate(expr, w, opt);
    }
    const auto back = safetensors_store::open(dir / "out");
    for (const char* n : {"embed.weight", "layers.0.w"}) {
        const auto a = back.find(n).value(), b = whole.at(n);
        REQUIRE(a.bytes.size() == b.bytes.size());
        CHECK(std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0);
    }
}

// Saving and loading the model through safetensors: bit-exact round trips, the config in the
// metadata, conversion from 16-bit stores, and clear errors for mismatched checkpoints.
#include "../tmpdir.hpp"

#include <skillvec/core/memory_store.hpp>
#include <skillvec/io/safetensors.hpp>
#include <skillvec/nn/checkpoint.hpp>

#include <catch2/catch.hpp>

using namespace skillvec;
using namespace skillvec::nn;
using test::tmpdir;

namespace {
gpt_config small_config() {
    gpt_config c;
    c.vocab = 40;
    c.context = 12;
    c.width = 16;
    c.layers = 2;
    c.heads = 2;
    return c;
}
} // namespace

TEST_CASE("save_gpt / load_gpt round trip bit-exactly, file and directory layouts", "[checkpoint]") {
    tmpdir dir;
    gpt<float> m(small_config(), 1);
    for (auto& p : m.params()) p *= 1.5f; // not just the init
    for (const char* name : {"model.safetensors", "model_dir"}) {
        save_gpt(m, dir / name, {{"stage", "test"}});
        const auto back = load_gpt<float>(dir / name);
        CHECK(back.config() == m.config());
        CHECK(std::equal(m.params().begin(), m.params().end(), back.params().begin()));
        const auto store = safetensors_store::open(dir / name);
        CHECK(store.metadata().at("stage") == "test");
        CHECK(store.metadata().count(gpt_config_key) == 1);
        CHECK(store.find("layers.1.attn.qkv.weight")->type == dtype::f32);
    }
    CHECK_THROWS_WITH(save_gpt(m, dir / "model.safetensors"), Catch::Contains("already exists"));
    save_gpt(m, dir / "model.safetensors", {}, true); // overwrite on request
}

TEST_CASE("load_parameters converts bf16 stores and rejects mismatches by name", "[checkpoint]") {
    gpt<float> m(small_config(), 2);
    memory_store bf("bf16-copy");
    for (const auto& s : m.layout()) {
        const auto v = m.find(s.name)->as<float>();
        bf.add_converted(s.name, dtype::bf16, s.dims, v);
    }
    gpt<float> n(small_config(), 3);
    load_parameters(n, bf);
    for (std::size_t i = 0; i < m.num_params(); ++i) REQUIRE(n.params()[i] == bf16_to_f32(f32_to_bf16(m.params()[i])));

    memory_store missing("short");
    for (const auto& s : m.layout())
        if (s.name != "ln_f.bias") missing.add_converted(s.name, dtype::f32, s.dims, m.find(s.name)->as<float>());
    CHECK_THROWS_WITH(load_parameters(n, missing), Catch::Contains("short: missing tensor 'ln_f.bias'"));
    missing.add_converted("extra.weight", dtype::f32, shape{2}, std::vector<float>{1, 2});
    CHECK_THROWS_WITH(load_parameters(n, missing), Catch::Contains("short: tensor 'extra.weight' is not a parameter"));

    gpt_config wider = small_config();
    wider.width = 24;
    wider.heads = 3;
    gpt<float> w(wider, 4);
    CHECK_THROWS_WITH(load_parameters(w, bf), Catch::Contains("bf16-copy: tensor 'embed.tokens.weight' has shape [40, 16], the model needs [40, 24]"));
}

TEST_CASE("load_gpt needs the config metadata", "[checkpoint]") {
    tmpdir dir;
    memory_store s;
    s.add_converted("x", dtype::f32, shape{1}, std::vector<float>{1});
    safetensors_writer w(dir / "plain.safetensors");
    std::vector<tensor_info> plan = {tensor_info{"x", dtype::f32, shape{1}}};
    w.begin(plan);
    auto b = w.acquire(plan[0]);
    std::memset(b.data(), 0, b.size());
    w.commit(plan[0]);
    w.finish();
    CHECK_THROWS_WITH(load_gpt<float>(dir / "plain.safetensors"), Catch::Contains("no 'skillvec.gpt_config' in __metadata__"));
}

TEST_CASE("a gpt<double> checkpoint is f64 and loads into gpt<float> by rounding", "[checkpoint]") {
    tmpdir dir;
    gpt<double> d(small_config(), 5);
    save_gpt(d, dir / "d.safetensors");
    CHECK(safetensors_store::open(dir / "d.safetensors").find("ln_f.weight")->type == dtype::f64);
    const auto f = load_gpt<float>(dir / "d.safetensors");
    for (std::size_t i = 0; i < f.num_params(); ++i) REQUIRE(f.params()[i] == static_cast<float>(d.params()[i]));
}

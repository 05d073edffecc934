// The decoder: layout, weight-store view, finite-difference gradients in double, causality,
// batch and thread independence, float against double, and the loss at initialization.
#include <skillvec/skillvec.hpp>
#include <skillvec/nn/gpt.hpp>
#include <skillvec/nn/loss.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <vector>

using namespace skillvec;
using nn::gpt;
using nn::gpt_config;

namespace {

gpt_config tiny_config() {
    gpt_config c;
    c.vocab = 11;
    c.context = 7;
    c.width = 8;
    c.layers = 2;
    c.heads = 2;
    c.mlp_ratio = 3;
    c.init_std = 0.4; // large enough that attention is far from uniform and every path matters
    return c;
}

std::vector<std::int32_t> random_tokens(std::size_t n, std::size_t vocab, std::uint64_t seed) {
    nn::rng g(seed);
    std::vector<std::int32_t> t(n);
    for (auto& x : t) x = static_cast<std::int32_t>(g.below(vocab));
    return t;
}

/// Perturbs every parameter (LayerNorm weights and biases included) so no gradient is trivially 0.
template <class T> void jitter(gpt<T>& m, std::uint64_t seed, double sd) {
    nn::rng g(seed);
    for (auto& p : m.params()) p += static_cast<T>(sd * g.normal());
}

/// L = sum_t c_t logp_t at temperature tau, with some positions ignored: exercises loss.hpp too.
struct probe_loss {
    std::vector<std::int32_t> targets;
    std::vector<double> coeff;
    double tau;

    template <class T> double value(gpt<T>& m, const std::vector<std::int32_t>& tokens, std::size_t B, std::size_t Tn) {
        auto logits = m.forward(tokens, B, Tn);
        std::vector<double> logp(targets.size());
        nn::token_logprobs<T>(logits, m.config().vocab, targets, tau, logp);
        double l = 0;
        for (std::size_t i = 0; i < logp.size(); ++i) l += coeff[i] * logp[i];
        return l;
    }
    template <class T> void gradient(gpt<T>& m, const std::vector<std::int32_t>& tokens, std::size_t B, std::size_t Tn) {
        auto logits = m.forward(tokens, B, Tn);
        m.zero_grad();
        nn::logprob_backward<T>(logits, m.config().vocab, targets, tau, coeff, m.dlogits());
        m.backward();
    }
};

} // namespace

TEST_CASE("gpt layout: names, shapes, contiguous slices and the default size", "[gpt]") {
    const gpt_config def;
    const auto layout = nn::gpt_layout(def);
    std::size_t off = 0;
    for (const auto& s : layout) {
        CHECK(s.offset == off);
        CHECK(s.numel == s.dims.numel());
        off += s.numel;
    }
    // V C + T C + L (12 C^2 + 13 C) + 2 C, with the MLP 4x wide
    const std::size_t V = 512, T = 64, C = 96, L = 3;
    CHECK(off == V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C);
    CHECK(off == 391'008);
    CHECK(layout.front().name == "embed.tokens.weight");
    CHECK(layout[4].name == "layers.0.attn.qkv.weight");
    CHECK(layout[4].dims == shape{3 * C, C});
    CHECK(layout.back().name == "ln_f.bias");

    gpt<float> m(def, 1);
    CHECK(m.num_params() == off);
    auto v = m.find("layers.2.mlp.proj.weight");
    REQUIRE(v);
    CHECK(v->type == dtype::f32);
    CHECK(v->dims == shape{C, 4 * C});
    CHECK(v->as<float>().data() == m.param("layers.2.mlp.proj.weight").data());
    CHECK_FALSE(m.find("layers.3.mlp.proj.weight"));
    CHECK_THROWS_WITH(m.slice("nope"), Catch::Contains("no parameter named 'nope'"));
}

TEST_CASE("gpt init is deterministic and follows the GPT-2 scheme", "[gpt]") {
    gpt<float> a(gpt_config{}, 7), b(gpt_config{}, 7), c(gpt_config{}, 8);
    CHECK(std::equal(a.params().begin(), a.params().end(), b.params().begin()));
    CHECK_FALSE(std::equal(a.params().begin(), a.params().end(), c.params().begin()));
    for (float x : a.param("layers.1.ln2.weight")) CHECK(x == 1.0f);
    for (float x : a.param("layers.1.attn.qkv.bias")) CHECK(x == 0.0f);
    auto sd = [](std::span<const float> s) {
        double q = 0;
        for (float x : s) q += double(x) * x;
        return std::sqrt(q / double(s.size()));
    };
    CHECK(sd(a.param("layers.0.mlp.fc.weight")) == Approx(0.02).epsilon(0.03));
    CHECK(sd(a.param("layers.0.mlp.proj.weight")) == Approx(0.02 / std::sqrt(6.0)).epsilon(0.03));
}

TEST_CASE("gpt config validation and JSON round trip", "[gpt]") {
    gpt_config c;
    c.heads = 5;
    CHECK_THROWS_WITH(c.validate(), Catch::Contains("multiple of heads"));
    c = gpt_config{};
    c.context = 0;
    CHECK_THROWS_WITH(gpt<float>(c), Catch::Contains("context must be > 0"));
    const gpt_config t = tiny_config();
    CHECK(gpt_config::from_json(t.to_json()) == t);
    CHECK_THROWS_WITH(gpt_config::from_json(nlohmann::json{{"vocab", 3}}), Catch::Contains("gpt_config"));
}

TEST_CASE("gpt forward rejects bad shapes and token ids, naming the position", "[gpt]") {
    gpt<float> m(tiny_config(), 1);
    std::vector<std::int32_t> tok(2 * 3, 1);
    CHECK_THROWS_WITH(m.forward(tok, 2, 8), Catch::Contains("outside [1, context = 7]"));
    CHECK_THROWS_WITH(m.forward(tok, 3, 3), Catch::Contains("6 tokens for a [3, 3] batch"));
    tok[4] = 11;
    CHECK_THROWS_WITH(m.forward(tok, 2, 3), Catch::Contains("token id 11 at [1, 1]"));
    tok[4] = -1;
    CHECK_THROWS_WITH(m.forward(tok, 2, 3), Catch::Contains("token id -1"));
    CHECK_THROWS_WITH(m.backward(), Catch::Contains("no forward pass"));
}

TEST_CASE("gpt gradients match central finite differences in double for every tensor", "[gpt][gradcheck]") {
    const gpt_config cfg = tiny_config();
    gpt<double> m(cfg, 3, nullptr);
    jitter(m, 4, 0.3);
    const std::size_t B = 2, Tn = 6; // Tn < context: positions beyond the sequence stay unused
    const auto tokens = random_tokens(B * Tn, cfg.vocab, 5);
    probe_loss loss;
    loss.tau = 0.7;
    nn::rng g(6);
    for (std::size_t i = 0; i < B * Tn; ++i) {
        const bool ignored = i % 5 == 2;
        loss.targets.push_back(ignored ? nn::ignore_index : static_cast<std::int32_t>(g.below(cfg.vocab)));
        loss.coeff.push_back(ignored ? 0.0 : g.normal());
    }
    loss.gradient(m, tokens, B, Tn);
    const std::vector<double> analytic(m.grads().begin(), m.grads().end());

    // Central difference of the loss in parameter i.
    auto numeric = [&](std::size_t i) {
        const double h = 1e-5;
        double& p = m.params()[i];
        const double saved = p;
        p = saved + h;
        const double up = loss.value(m, tokens, B, Tn);
        p = saved - h;
        const double down = loss.value(m, tokens, B, Tn);
        p = saved;
        return (up - down) / (2 * h);
    };
    for (const auto& s : m.layout()) {
        // Position embeddings: also the row for position Tn, which the sequence never reaches,
        // must get exactly nothing.
        const bool positions = s.name == "embed.positions.weight";
        double diff2 = 0, sum2 = 0;
        bool unused_rows_zero = true;
        for (std::size_t i = 0; i < s.numel; ++i) {
            const double fd = numeric(s.offset + i), an = analytic[s.offset + i];
            if (positions && i / cfg.width >= Tn) unused_rows_zero = unused_rows_zero && an == 0.0 && std::abs(fd) < 1e-12;
            diff2 += (fd - an) * (fd - an);
            sum2 += (fd + an) * (fd + an);
        }
        INFO(s.name);
        REQUIRE(sum2 > 0); // every tensor gets a gradient
        CHECK(std::sqrt(diff2 / sum2) < 1e-7);
        CHECK(unused_rows_zero);
    }
}

TEST_CASE("gpt backward accumulates into grads until zero_grad", "[gpt]") {
    gpt<double> m(tiny_config(), 3, nullptr);
    const auto tokens = random_tokens(2 * 5, 11, 9);
    std::vector<std::int32_t> targets = random_tokens(2 * 5, 11, 10);
    auto logits = m.forward(tokens, 2, 5);
    nn::cross_entropy<double>(logits, 11, targets, m.dlogits());
    m.zero_grad();
    m.backward();
    std::vector<double> once(m.grads().begin(), m.grads().end());
    m.backward();
    for (std::size_t i = 0; i < once.size(); ++i) CHECK(m.grads()[i] == Approx(2 * once[i]).margin(1e-15));
}

TEST_CASE("gpt is causal: changing future tokens leaves past logits bit-identical", "[gpt][causal]") {
    gpt<float> m(gpt_config{}, 11);
    const std::size_t B = 3, Tn = 64, V = 512;
    auto tokens = random_tokens(B * Tn, V, 12);
    const auto base_logits = m.forward(tokens, B, Tn);
    const std::vector<float> base(base_logits.begin(), base_logits.end());
    for (std::size_t cut : {std::size_t{0}, std::size_t{17}, std::size_t{62}}) {
        auto changed = tokens;
        nn::rng g(cut);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t t = cut + 1; t < Tn; ++t) changed[b * Tn + t] = static_cast<std::int32_t>(g.below(V));
        const auto l = m.forward(changed, B, Tn);
        bool past_same = true, future_differs = false;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t t = 0; t < Tn; ++t)
                for (std::size_t v = 0; v < V; ++v) {
                    const std::size_t i = (b * Tn + t) * V + v;
                    if (t <= cut) past_same = past_same && l[i] == base[i];
                    else future_differs = future_differs || l[i] != base[i];
                }
        INFO("cut " << cut);
        CHECK(past_same);
        CHECK(future_differs);
    }
}

TEST_CASE("gpt rows are independent of the rest of the batch, and of shorter runs", "[gpt][causal]") {
    gpt<float> m(gpt_config{}, 13);
    const std::size_t B = 4, Tn = 20, V = 512;
    const auto tokens = random_tokens(B * Tn, V, 14);
    const auto all_logits = m.forward(tokens, B, Tn);
    const std::vector<float> all(all_logits.begin(), all_logits.end());
    // Row 2 alone, and its first 9 positions alone: same logits (to rounding: gemm blocking may
    // differ with the row count, so allow a few ulps).
    std::vector<std::int32_t> row(tokens.begin() + 2 * Tn, tokens.begin() + 2 * Tn + 9);
    const auto one = m.forward(row, 1, 9);
    for (std::size_t i = 0; i < 9 * V; ++i) CHECK(one[i] == Approx(all[2 * Tn * V + i]).epsilon(1e-5).margin(1e-6));
}

TEST_CASE("gpt results do not depend on the number of threads", "[gpt]") {
    skillvec::detail::thread_pool one(1), two(2);
    gpt<float> a(gpt_config{}, 21, &one), b(gpt_config{}, 21, &two);
    const std::size_t B = 8, Tn = 64, V = 512;
    const auto tokens = random_tokens(B * Tn, V, 22);
    const auto targets = random_tokens(B * Tn, V, 23);
    auto run = [&](gpt<float>& m) {
        auto logits = m.forward(tokens, B, Tn);
        nn::cross_entropy<float>(logits, V, targets, m.dlogits());
        m.zero_grad();
        m.backward();
        return std::vector<float>(m.logits().begin(), m.logits().end());
    };
    const auto la = run(a), lb = run(b);
    CHECK(la == lb);
    CHECK(std::equal(a.grads().begin(), a.grads().end(), b.grads().begin()));
}

TEST_CASE("gpt<float> agrees with gpt<double> on the same parameters", "[gpt]") {
    gpt_config cfg;
    cfg.vocab = 64;
    cfg.context = 32;
    gpt<double> d(cfg, 31);
    gpt<float> f(cfg, 31);
    for (std::size_t i = 0; i < f.num_params(); ++i) d.params()[i] = f.params()[i];
    const auto tokens = random_tokens(2 * 32, 64, 32);
    const auto targets = random_tokens(2 * 32, 64, 33);
    auto lf = f.forward(tokens, 2, 32);
    auto ld = d.forward(tokens, 2, 32);
    for (std::size_t i = 0; i < lf.size(); ++i) CHECK(lf[i] == Approx(ld[i]).margin(2e-5));
    nn::cross_entropy<float>(lf, 64, targets, f.dlogits());
    nn::cross_entropy<double>(ld, 64, targets, d.dlogits());
    f.zero_grad();
    d.zero_grad();
    f.backward();
    d.backward();
    double diff2 = 0, sum2 = 0;
    for (std::size_t i = 0; i < f.num_params(); ++i) {
        diff2 += (f.grads()[i] - d.grads()[i]) * (f.grads()[i] - d.grads()[i]);
        sum2 += d.grads()[i] * d.grads()[i];
    }
    CHECK(std::sqrt(diff2 / sum2) < 1e-5);
}

TEST_CASE("gpt loss at initialization is about ln(vocab)", "[gpt]") {
    gpt<float> m(gpt_config{}, 41);
    const std::size_t B = 8, Tn = 64, V = 512;
    const auto tokens = random_tokens(B * Tn, V, 42);
    const auto targets = random_tokens(B * Tn, V, 43);
    std::vector<float> dl(B * Tn * V);
    const double loss = nn::cross_entropy<float>(m.forward(tokens, B, Tn), V, targets, dl);
    // Logits have a spread of about sigma = sqrt(C) * init_std = 0.2 (unit-variance ln_f output
    // against N(0, 0.02) embedding rows), which adds about sigma^2 / 2 = 0.02 to ln V.
    CHECK(loss == Approx(std::log(512.0) + 0.5 * 96 * 0.02 * 0.02).margin(0.02));
}

TEST_CASE("a model is a weight store: deltas and cosines work on it directly", "[gpt]") {
    gpt<float> a(gpt_config{}, 51), b(a);
    for (auto& p : b.param("layers.1.mlp.fc.weight")) p += 0.5f;
    memory_store delta;
    evaluate(weights(b) - weights(a), delta);
    auto v = delta.find("layers.1.mlp.fc.weight");
    REQUIRE(v);
    for (float x : v->as<float>()) CHECK(x == Approx(0.5f).margin(1e-6));
    auto w = delta.find("layers.0.mlp.fc.weight");
    REQUIRE(w);
    for (float x : w->as<float>()) CHECK(x == 0.0f);
}

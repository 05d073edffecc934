// Sampling and GRPO: EOS handling, sampling frequencies, advantages, exact-zero gradients for
// equal rewards, the A = 1 / ratio 1 equivalence with SFT, clipping, a one-token bandit and the
// k3 estimator.
#include <skillvec/nn/grpo.hpp>
#include <skillvec/nn/sampling.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <vector>

using namespace skillvec;
using namespace skillvec::nn;

namespace {

gpt_config small_config(std::size_t vocab = 16) {
    gpt_config c;
    c.vocab = vocab;
    c.context = 16;
    c.width = 32;
    c.layers = 2;
    c.heads = 2;
    c.init_std = 0.2;
    return c;
}

} // namespace

TEST_CASE("pick_token: greedy takes the first maximum; sampling follows softmax(z / tau)", "[sampling]") {
    const std::vector<float> z = {0.f, 2.f, 2.f, std::log(2.f)};
    sampling_options g;
    g.greedy = true;
    CHECK(pick_token<float>(z, g, 0.0) == 1);
    sampling_options s;
    s.temperature = 0.5;
    // softmax(z / 0.5) ~ exp(2z): weights 1, e^4, e^4, 4
    rng gen(1);
    std::map<int, int> counts;
    const int n = 200000;
    for (int i = 0; i < n; ++i) ++counts[pick_token<float>(z, s, gen.uniform())];
    const double total = 1 + 2 * std::exp(4.0) + 4;
    CHECK(double(counts[0]) / n == Approx(1 / total).margin(0.002));
    CHECK(double(counts[1]) / n == Approx(std::exp(4.0) / total).margin(0.005));
    CHECK(double(counts[3]) / n == Approx(4 / total).margin(0.002));
}

TEST_CASE("generate stops rows at EOS, at max_new_tokens and at the context, independently", "[sampling]") {
    gpt<float> m(small_config(), 3);
    const std::vector<std::vector<std::int32_t>> prompts = {{1, 5}, {1, 6, 6}, {1}};
    sampling_options o;
    o.greedy = true;
    o.max_new_tokens = 5;
    rng gen(0);
    const auto out = generate(m, prompts, o, gen);
    REQUIRE(out.size() == 3);
    for (std::size_t i = 0; i < out.size(); ++i) {
        INFO("row " << i);
        CHECK(!out[i].empty());
        CHECK(out[i].size() <= 5);
        // A row ends with EOS only as its last token; otherwise it ran to max_new_tokens.
        for (std::size_t t = 0; t + 1 < out[i].size(); ++t) CHECK(out[i][t] != o.eos_id);
        if (out[i].back() != o.eos_id) CHECK(out[i].size() == 5);
        // Greedy rows are the same alone as in a batch.
        const auto alone = generate(m, std::span(prompts).subspan(i, 1), o, gen);
        CHECK(alone[0] == out[i]);
    }
    // Context: a prompt of context tokens gets exactly one more (a training sequence holds context + 1).
    std::vector<std::vector<std::int32_t>> full = {std::vector<std::int32_t>(16, 4)};
    o.eos_id = -1; // never
    CHECK(generate(m, full, o, gen)[0].size() == 1);
    full[0].resize(17, 4);
    CHECK_THROWS_WITH(generate(m, full, o, gen), Catch::Contains("prompt 0 has 17 tokens"));
}

TEST_CASE("generate with a fixed seed is reproducible", "[sampling]") {
    gpt<float> m(small_config(), 4);
    const std::vector<std::vector<std::int32_t>> prompts(6, std::vector<std::int32_t>{1, 4});
    sampling_options o;
    o.max_new_tokens = 6;
    rng a(9), b(9), c(10);
    const auto x = generate(m, prompts, o, a), y = generate(m, prompts, o, b), z = generate(m, prompts, o, c);
    CHECK(x == y);
    CHECK(x != z);
}

TEST_CASE("group_advantages: normalized per group, zero for equal rewards", "[grpo]") {
    const std::vector<double> r = {1, 0, 0, 0, /**/ 1, 1, 1, 1, /**/ 0, 2, 4, 6};
    std::size_t zero = 0;
    const auto a = group_advantages(r, 4, true, &zero);
    CHECK(zero == 1);
    const double sd1 = std::sqrt((0.75 * 0.75 + 3 * 0.25 * 0.25) / 3);
    CHECK(a[0] == Approx(0.75 / (sd1 + 1e-4)));
    CHECK(a[1] == Approx(-0.25 / (sd1 + 1e-4)));
    for (int i = 4; i < 8; ++i) CHECK(a[i] == 0.0);
    const double sd3 = std::sqrt((9 + 1 + 1 + 9) / 3.0);
    CHECK(a[11] == Approx(3 / (sd3 + 1e-4)));
    const auto u = group_advantages(r, 4, false);
    CHECK(u[11] == Approx(3.0));
    CHECK(u[0] == Approx(0.75));
    CHECK_THROWS_WITH(group_advantages(r, 5, true), Catch::Contains("not whole groups of 5"));
}

TEST_CASE("GRPO: a group with equal rewards gives exactly zero policy gradient", "[grpo]") {
    gpt<float> m(small_config(), 5);
    grpo_options o;
    o.group_size = 4;
    o.max_new_tokens = 4;
    grpo_trainer<float> t(m, nullptr, o);
    const std::vector<std::vector<std::int32_t>> prompts = {{1, 4}, {1, 5, 6}};
    const auto rb = t.sample(prompts, {}, [](std::size_t, std::span<const std::int32_t>) { return 0.5; });
    CHECK(rb.zero_variance_groups == 2);
    t.gradient(rb);
    for (float g : m.grads()) REQUIRE(g == 0.0f);
    // And a full step leaves the parameters exactly unchanged (AdamW with zero gradients, wd 0).
    const std::vector<float> before(m.params().begin(), m.params().end());
    const auto log = t.optimize(rb, 1e-2);
    CHECK(log.grad_norm == 0.0);
    CHECK(std::equal(before.begin(), before.end(), m.params().begin()));
}

TEST_CASE("GRPO with A = 1, one sample, beta = 0 and ratio 1 has the SFT gradient", "[grpo]") {
    gpt<double> a(small_config(), 6, nullptr), b(a);
    rollout_batch rb;
    sequence s;
    s.tokens = {1, 4, 9, 3, 2};
    s.scored = {0, 0, 1, 1, 1}; // prompt {1, 4}; completion {9, 3, <eos>}
    rb.seqs = {s};
    rb.prompt = {0};
    rb.rewards = {1};
    rb.advantages = {1};
    rb.groups = 1;
    grpo_options o;
    o.group_size = 1;
    grpo_trainer<double> t(a, nullptr, o, nullptr);
    const double obj = t.gradient(rb);
    CHECK(obj == Approx(-1.0)); // -min(rho A, clip(rho) A) with rho = 1, A = 1, averaged over 3 tokens

    const batch bt = make_batch(std::span<const sequence>(rb.seqs), 0, 16);
    const auto logits = b.forward(bt.inputs, bt.rows, bt.len);
    cross_entropy<double>(logits, 16, bt.targets, b.dlogits());
    b.zero_grad();
    b.backward();
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < a.num_params(); ++i) {
        diff = std::max(diff, std::abs(a.grads()[i] - b.grads()[i]));
        norm = std::max(norm, std::abs(b.grads()[i]));
    }
    CHECK(norm > 0);
    CHECK(diff <= 1e-14 * norm);
}

TEST_CASE("GRPO aggregation: token mean against Dr. GRPO's constant normalizer", "[grpo]") {
    gpt<double> a(small_config(), 7, nullptr), b(a);
    rollout_batch rb;
    sequence s1, s2;
    s1.tokens = {1, 4, 9, 2};
    s1.scored = {0, 0, 1, 1};
    s2.tokens = {1, 4, 2};
    s2.scored = {0, 0, 1};
    rb.seqs = {s1, s2};
    rb.prompt = {0, 0};
    rb.rewards = {1, 0};
    rb.advantages = {1, -1};
    rb.groups = 1;
    grpo_options o;
    o.group_size = 2;
    o.max_new_tokens = 4;
    grpo_trainer<double> tm(a, nullptr, o, nullptr);
    const double l_tm = tm.gradient(rb);
    o.aggregation = grpo_aggregation::dr_grpo;
    grpo_trainer<double> dr(b, nullptr, o, nullptr);
    const double l_dr = dr.gradient(rb);
    // token mean: (-1 -1 +1) / 3 tokens;  Dr. GRPO: the same sum / (2 completions x 4)
    CHECK(l_tm == Approx(-1.0 / 3));
    CHECK(l_dr == Approx(-1.0 / 8));
    for (std::size_t i = 0; i < a.num_params(); ++i) CHECK(b.grads()[i] == Approx(a.grads()[i] * 3.0 / 8).margin(1e-15));
}

TEST_CASE("GRPO: inner iterations move the ratio and the clip engages", "[grpo]") {
    gpt<float> m(small_config(), 8);
    grpo_options o;
    o.group_size = 8;
    o.max_new_tokens = 3;
    o.inner_iterations = 6;
    o.clip_eps = 0.05;
    o.max_grad_norm = 0;
    grpo_trainer<float> t(m, nullptr, o);
    const std::vector<std::vector<std::int32_t>> prompts = {{1, 4}, {1, 5}};
    const auto rb = t.sample(prompts, {}, [](std::size_t, std::span<const std::int32_t> c) { return c[0] % 2 == 0 ? 1.0 : 0.0; });
    REQUIRE(rb.zero_variance_groups < 2);
    const auto log = t.optimize(rb, 5e-3);
    CHECK(log.clip_frac > 0.0);
    CHECK(log.clip_frac < 1.0);
    CHECK(t.optimizer().step_count() == 6);
}

TEST_CASE("GRPO learns a one-token bandit", "[grpo]") {
    gpt<float> m(small_config(8), 9);
    grpo_options o;
    o.group_size = 8;
    o.prompts_per_step = 4;
    o.max_new_tokens = 1;
    o.schedule.peak = 3e-3;
    o.seed = 10;
    grpo_trainer<float> t(m, nullptr, o);
    const std::vector<std::vector<std::int32_t>> prompts = {{1}, {1, 4}, {1, 5}, {1, 6}};
    const reward_fn reward = [](std::size_t, std::span<const std::int32_t> c) { return c.size() == 1 && c[0] == 7 ? 1.0 : 0.0; };
    std::vector<grpo_log> logs;
    t.train(prompts, 80, reward, [&](const grpo_log& l) { logs.push_back(l); });
    REQUIRE(logs.size() == 80);
    CHECK(logs.front().mean_reward < 0.5);
    double last = 0;
    for (std::size_t i = 70; i < 80; ++i) last += logs[i].mean_reward / 10;
    CHECK(last > 0.95);
    CHECK(logs.back().entropy < logs.front().entropy);
    CHECK(logs.back().zero_variance_frac > 0.5); // solved groups carry no signal any more
    // Greedy decoding now answers 7 everywhere.
    sampling_options g;
    g.greedy = true;
    g.max_new_tokens = 1;
    rng gen(0);
    for (const auto& c : generate(m, prompts, g, gen)) CHECK(c == std::vector<std::int32_t>{7});
}

TEST_CASE("GRPO with a reference: KL starts at 0, grows with training, and beta pulls it back", "[grpo]") {
    auto run = [](double beta) {
        gpt<float> m(small_config(8), 11);
        const gpt<float> ref(m);
        grpo_options o;
        o.group_size = 8;
        o.prompts_per_step = 4;
        o.max_new_tokens = 1;
        o.schedule.peak = 3e-3;
        o.beta = beta;
        o.seed = 12;
        grpo_trainer<float> t(m, &ref, o);
        const std::vector<std::vector<std::int32_t>> prompts = {{1}, {1, 4}, {1, 5}, {1, 6}};
        std::vector<grpo_log> logs;
        t.train(prompts, 40, [](std::size_t, std::span<const std::int32_t> c) { return c[0] == 7 ? 1.0 : 0.0; },
                [&](const grpo_log& l) { logs.push_back(l); });
        return logs;
    };
    const auto free = run(0.0), held = run(0.5);
    CHECK(free.front().kl == Approx(0.0).margin(1e-6));
    CHECK(free.back().kl > 0.1);
    CHECK(held.back().kl < free.back().kl);
    CHECK_THROWS_WITH(([] {
                          gpt<float> m(small_config(8), 1);
                          grpo_options o;
                          o.beta = 0.1;
                          grpo_trainer<float> t(m, nullptr, o);
                      }()),
                      Catch::Contains("beta > 0 needs a reference model"));
}

TEST_CASE("the k3 estimator's mean approaches the true KL", "[grpo]") {
    // KL(pi || ref) for two categorical distributions, estimated from samples of pi with the
    // trainer's per-token k3.
    const std::vector<double> pi = {0.5, 0.3, 0.15, 0.05}, ref = {0.25, 0.25, 0.25, 0.25};
    double kl = 0;
    for (std::size_t i = 0; i < pi.size(); ++i) kl += pi[i] * std::log(pi[i] / ref[i]);
    rng g(13);
    double sum = 0;
    bool never_negative = true;
    const int n = 400000;
    for (int s = 0; s < n; ++s) {
        double u = g.uniform(), acc = 0;
        std::size_t i = 0;
        for (; i + 1 < pi.size(); ++i) {
            acc += pi[i];
            if (u < acc) break;
        }
        const double k3 = k3_kl(std::log(ref[i]), std::log(pi[i]));
        never_negative = never_negative && k3 >= 0;
        sum += k3;
    }
    CHECK(never_negative);
    CHECK(sum / n == Approx(kl).epsilon(0.01));
    CHECK(k3_kl(-1.0, -1.0) == 0.0);
    CHECK(k3_kl(std::log(0.5), std::log(0.25)) == Approx(2 - std::log(2.0) - 1));
}

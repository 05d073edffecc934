#pragma once
// The PaST pipeline's pieces on bioS-mini: datasets from the world, the training stages, and
// the measurements (exact match, cloze, KL to the base, per-layer cosines).
#include "world.hpp"

#include <skillvec/skillvec.hpp>
#include <skillvec/nn/checkpoint.hpp>
#include <skillvec/nn/grpo.hpp>
#include <skillvec/nn/sampling.hpp>
#include <skillvec/nn/sft.hpp>
#include <skillvec/nn/tokenizer.hpp>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace past_demo {

namespace nn = skillvec::nn;
using model = nn::gpt<float>;

/// Knobs of one run; `quick()` is the CI smoke version.
struct settings {
    std::size_t n_p0 = 240, n_s = 80, n_t = 80;
    std::size_t bios = 4;                 ///< biographies per person (paraphrased, permuted)
    std::size_t pretrain_epochs = 30;
    double pretrain_lr = 2e-3;
    std::size_t sft_epochs = 20;          ///< SFT on a group's documents
    double sft_lr = 1e-3;
    std::size_t qa_sft_epochs = 6;        ///< the QA-SFT skill-vector control
    std::size_t rl_steps = 160;           ///< GRPO steps (per round with K rounds: rl_steps / K)
    double rl_lr = 2e-4;
    std::size_t group_size = 8, prompts_per_step = 16;
    std::size_t batch = 32;
    nn::gpt_config model_config{};        ///< vocab is set from the tokenizer

    static settings quick() {
        settings s;
        s.n_p0 = 60;
        s.n_s = 24;
        s.n_t = 24;
        s.bios = 2;
        s.pretrain_epochs = 4;
        s.sft_epochs = 3;
        s.qa_sft_epochs = 2;
        s.rl_steps = 6;
        s.prompts_per_step = 8;
        s.group_size = 4;
        return s;
    }
};

/// Shared by every stage of a run.
struct context {
    settings cfg;
    nn::tokenizer tok;
    std::function<void(const std::string&)> say; ///< progress lines
};

// --- datasets ---------------------------------------------------------------------------------

/// `bios` biographies per person, each `<bos> text <eos>` with every token scored.
inline std::vector<nn::sequence> documents(const context& c, const std::vector<person>& people, nn::rng& g) {
    std::vector<nn::sequence> out;
    for (const auto& p : people)
        for (auto& b : biographies(p, c.cfg.bios, g)) out.push_back({c.tok.encode(b, true, true), {}});
    return out;
}

inline std::vector<question> questions_for(const std::vector<person>& people) {
    std::vector<question> out;
    for (std::size_t i = 0; i < people.size(); ++i)
        for (auto& q : questions_about(people[i], i)) out.push_back(std::move(q));
    return out;
}

/// `<bos> question answer <eos>` with only the answer and EOS scored (QA supervision).
inline std::vector<nn::sequence> qa_sequences(const context& c, const std::vector<question>& qs) {
    std::vector<nn::sequence> out;
    for (const auto& q : qs) {
        nn::sequence s;
        s.tokens = c.tok.encode(q.prompt, true);
        s.scored.assign(s.tokens.size(), 0);
        s.tokens.push_back(c.tok.id(q.answer));
        s.tokens.push_back(nn::tokenizer::eos_id);
        s.scored.push_back(1);
        s.scored.push_back(1);
        out.push_back(std::move(s));
    }
    return out;
}

inline std::vector<std::vector<std::int32_t>> prompts_of(const context& c, const std::vector<question>& qs) {
    std::vector<std::vector<std::int32_t>> out;
    for (const auto& q : qs) out.push_back(c.tok.encode(q.prompt, true));
    return out;
}

// --- stages -----------------------------------------------------------------------------------

/// SFT of `m` on `data` with a fresh optimizer; weight decay `wd` (0 in the PaST stages).
inline void sft(const context& c, model& m, const std::vector<nn::sequence>& data, std::size_t epochs, double lr, double wd,
                std::uint64_t seed, const std::string& stage) {
    nn::sft_options o;
    o.batch_size = c.cfg.batch;
    o.epochs = epochs;
    o.schedule.peak = lr;
    o.schedule.min_lr = lr / 10;
    o.schedule.warmup_steps = 10;
    o.weight_decay = wd;
    o.seed = seed;
    nn::sft_trainer<float> t(m, o, nn::tokenizer::pad_id);
    const std::size_t every = std::max<std::size_t>(1, (data.size() + o.batch_size - 1) / o.batch_size * epochs / 4);
    t.train(data, [&](const nn::sft_log& l) {
        if ((l.step + 1) % every == 0 || l.step + 1 == l.steps_total) {
            char line[200];
            std::snprintf(line, sizeof line, "  %-12s step %5zu/%zu  loss %.3f  lr %.1e  %5.0f tok/s", stage.c_str(), l.step + 1,
                          l.steps_total, l.loss, l.lr, l.tokens_per_s);
            c.say(line);
        }
    });
}

/// Exact match of the first generated token, per attribute, greedy.
struct em_result {
    double overall = 0;
    std::array<double, attribute_count> per_attribute{};
};

inline em_result exact_match(const context& c, model& m, const std::vector<question>& qs) {
    nn::sampling_options o;
    o.greedy = true;
    o.max_new_tokens = 1;
    o.eos_id = nn::tokenizer::eos_id;
    o.pad_id = nn::tokenizer::pad_id;
    o.max_batch = 128;
    nn::rng unused(0);
    const auto prompts = prompts_of(c, qs);
    const auto out = nn::generate(m, prompts, o, unused);
    em_result r;
    std::array<double, attribute_count> right{}, total{};
    for (std::size_t i = 0; i < qs.size(); ++i) {
        const bool ok = !out[i].empty() && out[i][0] == c.tok.id(qs[i].answer);
        right[qs[i].attribute] += ok;
        total[qs[i].attribute] += 1;
        r.overall += ok;
    }
    r.overall /= static_cast<double>(std::max<std::size_t>(qs.size(), 1));
    for (std::size_t a = 0; a < attribute_count; ++a) r.per_attribute[a] = total[a] > 0 ? right[a] / total[a] : 0.0;
    return r;
}

/// GRPO on questions with an exact-match reward (1 if the first answer token is right).
inline void grpo(const context& c, model& m, const std::vector<question>& qs, std::size_t steps, std::uint64_t seed,
                 const std::string& stage) {
    nn::grpo_options o;
    o.group_size = c.cfg.group_size;
    o.prompts_per_step = c.cfg.prompts_per_step;
    o.max_new_tokens = 2;
    o.schedule.peak = c.cfg.rl_lr;
    o.eos_id = nn::tokenizer::eos_id;
    o.pad_id = nn::tokenizer::pad_id;
    o.seed = seed;
    o.max_batch = 128;
    nn::grpo_trainer<float> t(m, nullptr, o);
    const auto prompts = prompts_of(c, qs);
    std::vector<std::int32_t> answers;
    for (const auto& q : qs) answers.push_back(c.tok.id(q.answer));
    const nn::reward_fn reward = [&](std::size_t i, std::span<const std::int32_t> comp) {
        return !comp.empty() && comp[0] == answers[i] ? 1.0 : 0.0;
    };
    double acc = 0;
    std::size_t n = 0;
    const std::size_t every = std::max<std::size_t>(1, steps / 4);
    t.train(prompts, steps, reward, [&](const nn::grpo_log& l) {
        acc += l.mean_reward;
        ++n;
        if ((l.step + 1) % every == 0 || l.step + 1 == steps) {
            char line[200];
            std::snprintf(line, sizeof line, "  %-12s step %5zu/%zu  reward %.2f  zero-var %.2f  H %.2f  |g| %.2f", stage.c_str(),
                          l.step + 1, steps, acc / static_cast<double>(n), l.zero_variance_frac, l.entropy, l.grad_norm);
            c.say(line);
            acc = 0;
            n = 0;
        }
    });
}

/// `target + lambda * (rl - sft)`, evaluated by the library's fused PaST kernel into a copy of target.
inline model past(const model& target, const model& rl, const model& sft_model, float lambda) {
    model out(target);
    skillvec::evaluate(skillvec::past(skillvec::weights(target), skillvec::weights(rl), skillvec::weights(sft_model), lambda),
                       skillvec::into(out));
    return out;
}

/// `target + r`, r with the per-tensor norms of (rl - sft) and Gaussian directions.
inline model random_like(const model& target, const model& rl, const model& sft_model, std::uint64_t seed) {
    model out(target);
    nn::rng g(nn::derive_seed(seed, 0x726e64 /* "rnd" */));
    for (const auto& s : target.layout()) {
        double vn = 0, rn = 0;
        std::vector<double> r(s.numel);
        for (std::size_t i = 0; i < s.numel; ++i) {
            const double d = double(rl.params()[s.offset + i]) - double(sft_model.params()[s.offset + i]);
            vn += d * d;
            r[i] = g.normal();
            rn += r[i] * r[i];
        }
        const double k = rn > 0 ? std::sqrt(vn / rn) : 0.0;
        for (std::size_t i = 0; i < s.numel; ++i) out.params()[s.offset + i] += static_cast<float>(k * r[i]);
    }
    return out;
}

/// E over prompts of KL(base(.|q) || m(.|q)) at the first answer position: exact, over the
/// whole vocabulary (answers are single tokens).
inline double razor_kl(const context& c, model& base, model& m, const std::vector<question>& qs) {
    const auto prompts = prompts_of(c, qs);
    const std::size_t V = base.config().vocab;
    double sum = 0;
    for (std::size_t i0 = 0; i0 < prompts.size(); i0 += 128) {
        const std::size_t i1 = std::min(prompts.size(), i0 + 128);
        std::size_t len = 0;
        for (std::size_t i = i0; i < i1; ++i) len = std::max(len, prompts[i].size());
        std::vector<std::int32_t> tokens((i1 - i0) * len, nn::tokenizer::pad_id);
        for (std::size_t i = i0; i < i1; ++i) std::copy(prompts[i].begin(), prompts[i].end(), tokens.begin() + (i - i0) * len);
        const auto lb = base.forward(tokens, i1 - i0, len);
        const std::vector<float> pb(lb.begin(), lb.end());
        const auto lm = m.forward(tokens, i1 - i0, len);
        for (std::size_t i = i0; i < i1; ++i) {
            const std::size_t row = ((i - i0) * len + prompts[i].size() - 1) * V;
            auto log_softmax = [&](const float* z, std::vector<double>& out) {
                double mx = z[0];
                for (std::size_t v = 1; v < V; ++v) mx = std::max(mx, double(z[v]));
                double s = 0;
                for (std::size_t v = 0; v < V; ++v) s += std::exp(double(z[v]) - mx);
                const double lse = mx + std::log(s);
                out.resize(V);
                for (std::size_t v = 0; v < V; ++v) out[v] = double(z[v]) - lse;
            };
            std::vector<double> a, b;
            log_softmax(pb.data() + row, a);
            log_softmax(lm.data() + row, b);
            double kl = 0;
            for (std::size_t v = 0; v < V; ++v) kl += std::exp(a[v]) * (a[v] - b[v]);
            sum += kl;
        }
    }
    return prompts.empty() ? 0.0 : sum / static_cast<double>(prompts.size());
}

} // namespace past_demo

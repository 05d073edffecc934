#pragma once
/// \file
/// GRPO: group-relative policy optimization with outcome rewards.
///
/// Per step, for each prompt p, G completions are sampled from the policy at temperature tau and
/// scored by the user's reward function; the advantage of completion i of a group is
///
///   A_i = (r_i - mean(r)) / (std(r) + 1e-4)      (std unbiased; or just r_i - mean(r))
///
/// and every completion token t is trained with
///
///   rho_t = exp(logp_t - logp_old_t)
///   l_t   = -min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A) + beta k3_t,
///   k3_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1        (an unbiased, positive KL estimate)
///
/// aggregated as a token mean over every completion token of the step (DAPO) or as Dr. GRPO's
/// sum / (completions x max_new_tokens). The log-probabilities of the policy, the old policy and
/// the reference all divide logits by the same tau. Only completion tokens are scored: the prompt
/// is context, and a completion ends at its first EOS (the sampler stops there), so nothing after
/// an EOS is ever trained. `logp_old` is the policy at sampling time; with several inner
/// iterations per batch of samples (inner_iterations > 1) the ratio moves away from 1 and the clip
/// matters.

#include <skillvec/core/error.hpp>
#include <skillvec/nn/adamw.hpp>
#include <skillvec/nn/batch.hpp>
#include <skillvec/nn/gpt.hpp>
#include <skillvec/nn/loss.hpp>
#include <skillvec/nn/rng.hpp>
#include <skillvec/nn/sampling.hpp>
#include <skillvec/nn/schedule.hpp>
#include <skillvec/nn/sft.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <span>
#include <vector>

namespace skillvec::nn {

enum class grpo_aggregation {
    token_mean, ///< sum of token losses / active tokens in the step (DAPO)
    dr_grpo,    ///< sum of token losses / (completions x max_new_tokens): no length bias (Dr. GRPO)
};

struct grpo_options {
    std::size_t group_size = 8;        ///< G completions per prompt
    std::size_t prompts_per_step = 16;
    double temperature = 1.0;          ///< sampling and every log-prob
    std::size_t max_new_tokens = 8;
    double clip_eps = 0.2;
    double beta = 0.0;                 ///< k3 KL penalty weight (needs a reference model)
    bool scale_rewards = true;         ///< divide advantages by the group's std
    grpo_aggregation aggregation = grpo_aggregation::token_mean;
    std::size_t inner_iterations = 1;  ///< optimizer steps per batch of samples (mu)
    lr_schedule schedule{1e-4, 0.0, 0, 0, lr_schedule::decay_kind::constant};
    double weight_decay = 0.0;
    double max_grad_norm = 1.0;
    adamw_options adam{};
    std::uint64_t seed = 0;            ///< sampling and prompt order
    std::int32_t eos_id = 2, pad_id = 0;
    std::size_t max_batch = 64;        ///< rows per forward pass
};

/// What one GRPO step did.
struct grpo_log {
    std::size_t step = 0;
    double mean_reward = 0;
    double zero_variance_frac = 0; ///< groups whose rewards are all equal (no signal)
    double kl = 0;                 ///< mean k3 to the reference over completion tokens (0 without one)
    double entropy = 0;            ///< mean policy entropy at tau over completion tokens
    double grad_norm = 0;          ///< pre-clip, last inner iteration
    double clip_frac = 0;          ///< tokens where the clipped term was the minimum, over all inner iterations
    double loss = 0;               ///< the aggregated objective, first inner iteration
    double lr = 0;
    double mean_completion_tokens = 0;
    double seconds = 0;
};

/// reward(prompt index, completion tokens) -> reward. The index is the prompt's position in the
/// span given to step()/train().
using reward_fn = std::function<double(std::size_t, std::span<const std::int32_t>)>;

/// Sampled completions, ready for the policy-gradient pass.
struct rollout_batch {
    std::vector<sequence> seqs;        ///< prompt + completion; only the completion is scored
    std::vector<std::size_t> prompt;   ///< which prompt each sequence answers
    std::vector<double> rewards, advantages;
    std::size_t groups = 0, zero_variance_groups = 0;
};

/// The k3 estimate of KL(pi || ref) from one sample of pi: exp(d) - d - 1 with d = ref - logp.
/// Unbiased (E_pi[exp(d)] = 1) and never negative, unlike the plain log-ratio.
[[nodiscard]] inline double k3_kl(double ref_logp, double logp) noexcept {
    const double d = ref_logp - logp;
    return std::expm1(d) - d;
}

/// Group-normalized advantages of consecutive groups of `group_size` rewards.
[[nodiscard]] inline std::vector<double> group_advantages(std::span<const double> rewards, std::size_t group_size, bool scale,
                                                          std::size_t* zero_variance_groups = nullptr) {
    if (group_size == 0 || rewards.size() % group_size != 0)
        throw error("group_advantages: " + std::to_string(rewards.size()) + " rewards are not whole groups of " +
                    std::to_string(group_size));
    std::vector<double> adv(rewards.size());
    std::size_t zero = 0;
    for (std::size_t g0 = 0; g0 < rewards.size(); g0 += group_size) {
        const auto grp = rewards.subspan(g0, group_size);
        double mean = 0;
        for (double r : grp) mean += r;
        mean /= static_cast<double>(group_size);
        double var = 0;
        for (double r : grp) var += (r - mean) * (r - mean);
        const double sd = group_size > 1 ? std::sqrt(var / static_cast<double>(group_size - 1)) : 0.0;
        bool all_equal = true;
        for (double r : grp) all_equal = all_equal && r == grp[0];
        zero += all_equal;
        for (std::size_t i = 0; i < group_size; ++i)
            adv[g0 + i] = all_equal ? 0.0 : (scale ? (grp[i] - mean) / (sd + 1e-4) : grp[i] - mean);
    }
    if (zero_variance_groups) *zero_variance_groups = zero;
    return adv;
}

template <class T> class grpo_trainer {
public:
    /// Trains `policy` in place. `reference` (may be null) is the frozen model for the KL penalty
    /// and the KL log; the trainer keeps its own copy. beta > 0 needs one.
    grpo_trainer(gpt<T>& policy, const gpt<T>* reference, grpo_options options,
                 skillvec::detail::thread_pool* pool = &skillvec::detail::default_pool())
        : policy_(policy), opt_(options), pool_(pool),
          adam_(policy.num_params(), decay_groups(policy.layout(), options.weight_decay), options.adam),
          gen_(derive_seed(options.seed, 0x73616d70 /* "samp" */)), order_rng_(derive_seed(options.seed, 0x6f726472 /* "ordr" */)) {
        if (reference) reference_.emplace(*reference);
        if (opt_.group_size == 0 || opt_.prompts_per_step == 0 || opt_.inner_iterations == 0 || opt_.max_new_tokens == 0)
            throw error("grpo: group_size, prompts_per_step, inner_iterations and max_new_tokens must be > 0");
        if (!(opt_.temperature > 0)) throw error("grpo: temperature must be > 0");
        if (!(opt_.clip_eps >= 0)) throw error("grpo: clip_eps must be >= 0");
        if (opt_.beta < 0) throw error("grpo: beta must be >= 0");
        if (opt_.beta > 0 && !reference) throw error("grpo: beta > 0 needs a reference model");
        if (reference && !(reference->config() == policy.config())) throw error("grpo: the reference model has another config");
    }

    /// Samples G completions for each prompt and scores them.
    rollout_batch sample(std::span<const std::vector<std::int32_t>> prompts, std::span<const std::size_t> prompt_ids,
                         const reward_fn& reward) {
        std::vector<std::vector<std::int32_t>> rows;
        rows.reserve(prompts.size() * opt_.group_size);
        for (const auto& p : prompts)
            for (std::size_t g = 0; g < opt_.group_size; ++g) rows.push_back(p);
        sampling_options so;
        so.temperature = opt_.temperature;
        so.max_new_tokens = opt_.max_new_tokens;
        so.eos_id = opt_.eos_id;
        so.pad_id = opt_.pad_id;
        so.max_batch = opt_.max_batch;
        const auto completions = generate(policy_, rows, so, gen_);
        rollout_batch rb;
        rb.groups = prompts.size();
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const std::size_t p = i / opt_.group_size;
            const std::size_t id = prompt_ids.empty() ? p : prompt_ids[p];
            rb.rewards.push_back(reward(id, completions[i]));
            sequence s;
            s.tokens = rows[i];
            s.scored.assign(s.tokens.size(), 0);
            for (auto t : completions[i]) {
                s.tokens.push_back(t);
                s.scored.push_back(1);
            }
            rb.prompt.push_back(id);
            rb.seqs.push_back(std::move(s));
        }
        rb.advantages = group_advantages(rb.rewards, opt_.group_size, opt_.scale_rewards, &rb.zero_variance_groups);
        return rb;
    }

    /// The policy-gradient part of a step: `inner_iterations` optimizer steps on `rb` at `lr`.
    /// Fills the loss, KL, entropy, clip and gradient fields of the returned log.
    grpo_log optimize(const rollout_batch& rb, double lr) {
        grpo_log log;
        log.lr = lr;
        prepare(rb);
        std::size_t clipped = 0, counted = 0;
        for (std::size_t it = 0; it < opt_.inner_iterations; ++it) {
            policy_.zero_grad();
            const auto st = accumulate_gradient(it == 0);
            clipped += st.clipped;
            counted += st.active;
            if (it == 0) {
                log.loss = st.loss;
                log.kl = st.kl;
                log.entropy = st.entropy;
            }
            log.grad_norm = clip_grad_norm<T>(policy_.grads(), opt_.max_grad_norm);
            if (!std::isfinite(log.grad_norm)) throw error("grpo: non-finite gradient; lower the learning rate");
            adam_.step(policy_.params(), policy_.grads(), lr);
        }
        log.clip_frac = counted ? static_cast<double>(clipped) / static_cast<double>(counted) : 0.0;
        return log;
    }

    /// Only the gradient of the GRPO objective on `rb` with the current policy as the old policy
    /// (ratio 1), accumulated into policy.grads() after zeroing them; returns the objective. The
    /// building block of optimize(), exposed for tests and custom loops.
    double gradient(const rollout_batch& rb) {
        prepare(rb);
        policy_.zero_grad();
        return accumulate_gradient(true).loss;
    }

    /// One full step: sample, score, optimize.
    grpo_log step(std::span<const std::vector<std::int32_t>> prompts, std::span<const std::size_t> prompt_ids,
                  const reward_fn& reward) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto rb = sample(prompts, prompt_ids, reward);
        const double lr = schedule()(step_);
        grpo_log log = optimize(rb, lr);
        log.step = step_++;
        log.mean_reward = std::accumulate(rb.rewards.begin(), rb.rewards.end(), 0.0) / static_cast<double>(rb.rewards.size());
        log.zero_variance_frac = static_cast<double>(rb.zero_variance_groups) / static_cast<double>(rb.groups);
        std::size_t ctoks = 0;
        for (const auto& s : rb.seqs) ctoks += static_cast<std::size_t>(std::count(s.scored.begin(), s.scored.end(), std::uint8_t{1}));
        log.mean_completion_tokens = static_cast<double>(ctoks) / static_cast<double>(rb.seqs.size());
        log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return log;
    }

    /// `steps` steps over `prompts`, prompts_per_step at a time in shuffled epochs; the reward
    /// function gets indices into `prompts`. `on_step` is called after each step.
    void train(std::span<const std::vector<std::int32_t>> prompts, std::size_t steps, const reward_fn& reward,
               const std::function<void(const grpo_log&)>& on_step = {}) {
        if (prompts.empty()) throw error("grpo: no prompts");
        total_steps_ = steps;
        std::vector<std::size_t> ids;
        std::vector<std::vector<std::int32_t>> chosen;
        for (std::size_t s = 0; s < steps; ++s) {
            ids.clear();
            chosen.clear();
            while (ids.size() < std::min(opt_.prompts_per_step, prompts.size())) {
                if (cursor_ == order_.size()) {
                    order_.resize(prompts.size());
                    std::iota(order_.begin(), order_.end(), std::size_t{0});
                    order_rng_.shuffle(order_.begin(), order_.end());
                    cursor_ = 0;
                }
                ids.push_back(order_[cursor_++]);
                chosen.push_back(prompts[ids.back()]);
            }
            const auto log = step(chosen, ids, reward);
            if (on_step) on_step(log);
        }
    }

    [[nodiscard]] adamw<T>& optimizer() noexcept { return adam_; }
    [[nodiscard]] std::size_t steps_done() const noexcept { return step_; }

private:
    struct micro {
        batch b;
        std::vector<double> adv;      // per position: its row's advantage
        std::vector<double> old_logp; // per position, at sampling time
        std::vector<double> ref_logp; // per position (empty without a reference)
    };
    struct grad_stats {
        double loss = 0, kl = 0, entropy = 0;
        std::size_t clipped = 0, active = 0;
    };

    [[nodiscard]] lr_schedule schedule() const {
        lr_schedule s = opt_.schedule;
        if (s.total_steps == 0) s.total_steps = std::max<std::size_t>(total_steps_, 1);
        return s;
    }

    /// Cuts the rollouts into micro-batches and records the old (and reference) log-probs.
    void prepare(const rollout_batch& rb) {
        micro_.clear();
        active_ = 0;
        std::vector<const sequence*> rows;
        for (std::size_t r0 = 0; r0 < rb.seqs.size(); r0 += opt_.max_batch) {
            const std::size_t r1 = std::min(rb.seqs.size(), r0 + opt_.max_batch);
            rows.clear();
            for (std::size_t r = r0; r < r1; ++r) rows.push_back(&rb.seqs[r]);
            micro m;
            m.b = make_batch(std::span<const sequence* const>(rows), opt_.pad_id, policy_.config().context);
            m.adv.resize(m.b.targets.size());
            for (std::size_t i = 0; i < m.adv.size(); ++i) m.adv[i] = rb.advantages[r0 + i / m.b.len];
            active_ += m.b.scored();
            if (reference_) {
                m.ref_logp.resize(m.b.targets.size());
                token_logprobs<T>(reference_->forward(m.b.inputs, m.b.rows, m.b.len), reference_->config().vocab, m.b.targets,
                                  opt_.temperature, m.ref_logp, {}, pool_);
            }
            micro_.push_back(std::move(m));
        }
        completions_ = rb.seqs.size();
    }

    /// One pass over the micro-batches: forward, per-token objective, backward (accumulating).
    /// On the first pass the current policy *is* the old policy: its log-probs are recorded as
    /// logp_old in the same forward, so the ratio is exactly 1 without a second pass.
    grad_stats accumulate_gradient(bool first) {
        grad_stats st;
        const double denom = opt_.aggregation == grpo_aggregation::token_mean
                                 ? static_cast<double>(std::max<std::size_t>(active_, 1))
                                 : static_cast<double>(completions_ * opt_.max_new_tokens);
        const double lo = 1.0 - opt_.clip_eps, hi = 1.0 + opt_.clip_eps;
        const std::size_t V = policy_.config().vocab;
        for (auto& m : micro_) {
            const std::size_t n = m.b.targets.size();
            const auto logits = policy_.forward(m.b.inputs, m.b.rows, m.b.len);
            std::vector<double> logp(n), ent(first ? n : 0), coeff(n, 0.0);
            token_logprobs<T>(logits, V, m.b.targets, opt_.temperature, logp, ent, pool_);
            if (first) m.old_logp = logp;
            for (std::size_t i = 0; i < n; ++i) {
                if (m.b.targets[i] == ignore_index) continue;
                const double A = m.adv[i];
                const double ratio = std::exp(logp[i] - m.old_logp[i]);
                const double unclipped = ratio * A, clipped = std::clamp(ratio, lo, hi) * A;
                double loss = -std::min(unclipped, clipped);
                double dloss = unclipped <= clipped ? -ratio * A : 0.0; // d(loss)/d(logp)
                st.clipped += unclipped > clipped;
                ++st.active;
                if (!m.ref_logp.empty()) {
                    const double k3 = k3_kl(m.ref_logp[i], logp[i]);
                    st.kl += k3;
                    if (opt_.beta > 0) { // d(k3)/d(logp) = 1 - exp(ref - logp)
                        loss += opt_.beta * k3;
                        dloss -= opt_.beta * std::expm1(m.ref_logp[i] - logp[i]);
                    }
                }
                if (first) st.entropy += ent[i];
                st.loss += loss / denom;
                coeff[i] = dloss / denom;
            }
            logprob_backward<T>(logits, V, m.b.targets, opt_.temperature, coeff, policy_.dlogits(), pool_);
            policy_.backward();
        }
        if (st.active) {
            st.kl /= static_cast<double>(st.active);
            st.entropy /= static_cast<double>(st.active);
        }
        return st;
    }

    gpt<T>& policy_;
    std::optional<gpt<T>> reference_;
    grpo_options opt_;
    skillvec::detail::thread_pool* pool_;
    adamw<T> adam_;
    rng gen_, order_rng_;
    std::vector<micro> micro_;
    std::size_t active_ = 0, completions_ = 0, step_ = 0, total_steps_ = 0, cursor_ = 0;
    std::vector<std::size_t> order_;
};

} // namespace skillvec::nn

#pragma once
/// \file
/// Supervised fine-tuning: masked next-token cross-entropy with AdamW, batches, shuffled epochs,
/// gradient clipping, a warmup + decay schedule and an evaluation hook.
///
/// The loss is the token mean over the scored positions of a batch (the `sequence::scored` mask
/// selects, for example, only answer tokens). Each trainer owns a fresh optimizer, so a new stage
/// of a pipeline (pretrain, SFT, ...) starts from zero moments, as PaST prescribes.

#include <skillvec/core/error.hpp>
#include <skillvec/nn/adamw.hpp>
#include <skillvec/nn/batch.hpp>
#include <skillvec/nn/gpt.hpp>
#include <skillvec/nn/loss.hpp>
#include <skillvec/nn/rng.hpp>
#include <skillvec/nn/schedule.hpp>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <span>
#include <vector>

namespace skillvec::nn {

/// Weight-decay groups for a model: `weight_decay` on 2-D weights (embeddings included, as
/// GPT-2), none on biases and LayerNorm parameters.
[[nodiscard]] inline std::vector<param_group> decay_groups(std::span<const param_slice> layout, double weight_decay) {
    std::vector<param_group> g;
    for (const auto& s : layout) {
        const double wd = s.matrix ? weight_decay : 0.0;
        if (!g.empty() && g.back().weight_decay == wd && g.back().offset + g.back().count == s.offset)
            g.back().count += s.numel; // merge neighbours: fewer, longer loops
        else
            g.push_back(param_group{s.offset, s.numel, wd, 1.0});
    }
    return g;
}

/// Options of an SFT run.
struct sft_options {
    std::size_t batch_size = 16;
    std::size_t epochs = 1;
    std::size_t max_steps = 0; ///< stop after this many optimizer steps (0: run all epochs)
    lr_schedule schedule{};    ///< total_steps 0 means "the run's step count"
    double weight_decay = 0.0; ///< on 2-D weights (see decay_groups)
    double max_grad_norm = 1.0; ///< <= 0: no clipping
    adamw_options adam{};
    bool shuffle = true;
    std::uint64_t seed = 0;     ///< the data order
    std::size_t eval_every = 0; ///< call the evaluation hook every this many steps (0: only at the end)
};

/// What one optimizer step did.
struct sft_log {
    std::size_t step = 0, epoch = 0, steps_total = 0;
    double loss = 0, grad_norm = 0, lr = 0;
    std::size_t tokens = 0;       ///< scored tokens in the batch
    double tokens_per_s = 0;      ///< input tokens (scored or not) per second of this step
};

/// The whole run.
struct sft_summary {
    std::size_t steps = 0;
    double first_loss = 0, last_loss = 0, seconds = 0;
};

/// Mean token cross-entropy of `model` over `data` (no gradient, no parameter change).
template <class T>
[[nodiscard]] double mean_loss(gpt<T>& model, std::span<const sequence> data, std::int32_t pad_id, std::size_t batch_size = 32,
                               skillvec::detail::thread_pool* pool = nullptr) {
    double sum = 0;
    std::size_t n = 0;
    for (std::size_t i = 0; i < data.size(); i += batch_size) {
        const auto b = make_batch(data.subspan(i, std::min(batch_size, data.size() - i)), pad_id, model.config().context);
        const auto logits = model.forward(b.inputs, b.rows, b.len);
        std::vector<double> lp(b.targets.size());
        token_logprobs<T>(logits, model.config().vocab, b.targets, 1.0, lp, {}, pool);
        for (std::size_t r = 0; r < lp.size(); ++r)
            if (b.targets[r] != ignore_index) {
                sum -= lp[r];
                ++n;
            }
    }
    return n == 0 ? 0.0 : sum / static_cast<double>(n);
}

/// Trains `model` in place.
template <class T> class sft_trainer {
public:
    using step_hook = std::function<void(const sft_log&)>;
    using eval_hook = std::function<void(std::size_t step)>;

    sft_trainer(gpt<T>& model, sft_options options, std::int32_t pad_id,
                skillvec::detail::thread_pool* pool = &skillvec::detail::default_pool())
        : model_(model), opt_(options), pad_(pad_id), pool_(pool),
          adam_(model.num_params(), decay_groups(model.layout(), options.weight_decay), options.adam) {
        if (opt_.batch_size == 0) throw error("sft: batch_size must be > 0");
    }

    /// Runs the epochs over `data` (or max_steps), calling `on_step` after every step and
    /// `on_eval` every eval_every steps and after the last one.
    sft_summary train(std::span<const sequence> data, const step_hook& on_step = {}, const eval_hook& on_eval = {}) {
        if (data.empty()) throw error("sft: no training sequences");
        const std::size_t per_epoch = (data.size() + opt_.batch_size - 1) / opt_.batch_size;
        std::size_t total = per_epoch * opt_.epochs;
        if (opt_.max_steps != 0) total = std::min(total, opt_.max_steps);
        lr_schedule sched = opt_.schedule;
        if (sched.total_steps == 0) sched.total_steps = total;
        sched.validate();

        std::vector<std::size_t> order(data.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        rng shuffler(derive_seed(opt_.seed, 0x736674 /* "sft" */));
        sft_summary sum;
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<const sequence*> chosen;
        std::size_t step = 0;
        for (std::size_t epoch = 0; step < total; ++epoch) {
            if (opt_.shuffle) shuffler.shuffle(order.begin(), order.end());
            for (std::size_t i = 0; i < data.size() && step < total; i += opt_.batch_size, ++step) {
                const auto ts = std::chrono::steady_clock::now();
                chosen.clear();
                for (std::size_t j = i; j < std::min(i + opt_.batch_size, data.size()); ++j) chosen.push_back(&data[order[j]]);
                const batch b = make_batch(std::span<const sequence* const>(chosen), pad_, model_.config().context);
                sft_log log;
                log.step = step;
                log.epoch = epoch;
                log.steps_total = total;
                log.lr = sched(step);
                log.tokens = b.scored();
                log.loss = train_batch(b, log.lr, &log.grad_norm);
                log.tokens_per_s = static_cast<double>(b.rows * b.len) /
                                   std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
                if (step == 0) sum.first_loss = log.loss;
                sum.last_loss = log.loss;
                if (on_step) on_step(log);
                if (on_eval && opt_.eval_every != 0 && (step + 1) % opt_.eval_every == 0 && step + 1 != total) on_eval(step + 1);
            }
        }
        sum.steps = step;
        sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (on_eval) on_eval(step);
        return sum;
    }

    /// One optimizer step on a prepared batch at learning rate `lr`; returns the loss (and the
    /// pre-clip gradient norm through `grad_norm`). A non-finite gradient skips the update and throws.
    double train_batch(const batch& b, double lr, double* grad_norm = nullptr) {
        const auto logits = model_.forward(b.inputs, b.rows, b.len);
        const double loss = cross_entropy<T>(logits, model_.config().vocab, b.targets, model_.dlogits(), 1.0, pool_);
        model_.zero_grad();
        model_.backward();
        const double norm = clip_grad_norm<T>(model_.grads(), opt_.max_grad_norm);
        if (grad_norm) *grad_norm = norm;
        if (!std::isfinite(norm) || !std::isfinite(loss))
            throw error("sft: non-finite loss or gradient (loss " + std::to_string(loss) + ", gradient norm " +
                        std::to_string(norm) + "); lower the learning rate");
        adam_.step(model_.params(), model_.grads(), lr);
        return loss;
    }

    [[nodiscard]] adamw<T>& optimizer() noexcept { return adam_; }

private:
    gpt<T>& model_;
    sft_options opt_;
    std::int32_t pad_;
    skillvec::detail::thread_pool* pool_;
    adamw<T> adam_;
};

} // namespace skillvec::nn

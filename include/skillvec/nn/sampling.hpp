#pragma once
/// \file
/// Batched autoregressive decoding: temperature sampling or greedy, EOS-aware.
///
/// Prompts of different lengths share one forward pass: each row is right-padded and reads its
/// next-token logits at its own last position (causal attention makes the padding invisible).
/// A row stops after it emits EOS (the EOS is kept, so callers can tell a finished answer from a
/// truncated one), after `max_new_tokens`, or when the context is full. Each step recomputes the
/// whole prefix; for the short answers of the PaST tasks that costs less than a KV cache's
/// bookkeeping would save.

#include <skillvec/core/error.hpp>
#include <skillvec/nn/gpt.hpp>
#include <skillvec/nn/rng.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace skillvec::nn {

struct sampling_options {
    double temperature = 1.0;     ///< logits are divided by it; must be > 0 unless greedy
    bool greedy = false;          ///< argmax (the lowest id on ties) instead of sampling
    std::size_t max_new_tokens = 16;
    std::int32_t eos_id = 2;      ///< a row ends after emitting it
    std::int32_t pad_id = 0;      ///< fills the batch behind shorter rows (never read)
    std::size_t max_batch = 64;   ///< rows per forward pass (bounds activation memory)
};

/// Picks a token from one row of logits. `u` in [0, 1) is the uniform draw (unused if greedy).
template <class T> [[nodiscard]] std::int32_t pick_token(std::span<const T> z, const sampling_options& o, double u) {
    const std::size_t V = z.size();
    if (o.greedy) {
        std::size_t best = 0;
        for (std::size_t i = 1; i < V; ++i)
            if (z[i] > z[best]) best = i;
        return static_cast<std::int32_t>(best);
    }
    const double inv_t = 1.0 / o.temperature;
    double mx = -INFINITY;
    for (std::size_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(z[i]) * inv_t);
    double sum = 0;
    for (std::size_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(z[i]) * inv_t - mx);
    const double target = u * sum;
    double acc = 0;
    for (std::size_t i = 0; i < V; ++i) {
        acc += std::exp(static_cast<double>(z[i]) * inv_t - mx);
        if (acc > target) return static_cast<std::int32_t>(i);
    }
    // Rounding left the draw just past the total: take the last token with non-zero mass.
    for (std::size_t i = V; i-- > 0;)
        if (std::exp(static_cast<double>(z[i]) * inv_t - mx) > 0) return static_cast<std::int32_t>(i);
    return 0;
}

/// Generates one completion per prompt (the new tokens only; EOS included when emitted).
/// Deterministic for a given `gen` state: rows draw in order, one draw per row per step.
template <class T>
[[nodiscard]] std::vector<std::vector<std::int32_t>> generate(gpt<T>& model, std::span<const std::vector<std::int32_t>> prompts,
                                                              const sampling_options& o, rng& gen) {
    if (!o.greedy && !(o.temperature > 0)) throw error("generate: temperature must be > 0 (or use greedy decoding)");
    if (o.max_batch == 0) throw error("generate: max_batch must be > 0");
    const std::size_t ctx = model.config().context, V = model.config().vocab;
    for (std::size_t i = 0; i < prompts.size(); ++i)
        if (prompts[i].empty() || prompts[i].size() > ctx)
            throw error("generate: prompt " + std::to_string(i) + " has " + std::to_string(prompts[i].size()) +
                        " tokens; it needs 1 to context = " + std::to_string(ctx));
    std::vector<std::vector<std::int32_t>> out(prompts.size());
    std::vector<std::vector<std::int32_t>> seq;
    std::vector<std::size_t> active;
    std::vector<std::int32_t> tokens;
    for (std::size_t c0 = 0; c0 < prompts.size(); c0 += o.max_batch) {
        const std::size_t c1 = std::min(prompts.size(), c0 + o.max_batch);
        seq.assign(prompts.begin() + static_cast<std::ptrdiff_t>(c0), prompts.begin() + static_cast<std::ptrdiff_t>(c1));
        std::vector<bool> done(c1 - c0, false);
        for (std::size_t step = 0; step < o.max_new_tokens; ++step) {
            active.clear();
            std::size_t len = 0;
            for (std::size_t r = 0; r < seq.size(); ++r) {
                if (seq[r].size() > ctx) done[r] = true; // context full: a training sequence holds context + 1
                if (done[r]) continue;
                active.push_back(r);
                len = std::max(len, seq[r].size());
            }
            if (active.empty()) break;
            tokens.assign(active.size() * len, o.pad_id);
            for (std::size_t a = 0; a < active.size(); ++a)
                std::copy(seq[active[a]].begin(), seq[active[a]].end(), tokens.begin() + static_cast<std::ptrdiff_t>(a * len));
            const auto logits = model.forward(tokens, active.size(), len);
            for (std::size_t a = 0; a < active.size(); ++a) {
                const std::size_t r = active[a];
                const std::size_t pos = seq[r].size() - 1;
                const double u = o.greedy ? 0.0 : gen.uniform();
                const std::int32_t tok = pick_token<T>(logits.subspan((a * len + pos) * V, V), o, u);
                seq[r].push_back(tok);
                out[c0 + r].push_back(tok);
                if (tok == o.eos_id) done[r] = true;
            }
        }
    }
    return out;
}

} // namespace skillvec::nn

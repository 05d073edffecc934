#pragma once
/// \file
/// Adaptive lambda: a PaST scale per layer instead of one global lambda (the paper's first open
/// question). Two ways, both returning a per-tensor `parameter` to use as `past(..., lambda)`:
///
///  - `search_layer_lambdas(layers, score, opt)`: coordinate ascent on a user-supplied validation
///    score. Each call to `score(lambda)` should build the model with that per-layer lambda (for
///    example `evaluate(past(t, rl, sft, lambda), into(model))`) and return a number to maximize
///    (held-out accuracy, minus a loss). Costs sweeps * (layers + 1) * candidates calls.
///
///  - `norm_ratio_lambdas(theta0, sft_source, sft_target, opt)`: a closed form from the weights
///    alone, lambda_l = scale * |sft_T - theta0|_l / |sft_S - theta0|_l, clamped.
///    Why: the skill vector v = rl_S - sft_S is the correction RL made on top of the source's SFT
///    displacement d_S = sft_S - theta0. RL's update of a layer is driven by the activations and
///    errors SFT left there, so its size scales, to first order, with how far SFT moved that
///    layer; on the target, SFT moved layer l by |d_T|_l instead of |d_S|_l, so the same skill
///    needs v scaled by their ratio there. Where the two SFT runs moved a layer equally the rule
///    gives lambda = 1 (plain PaST); a layer the target's SFT barely touched gets little of v.
///    It needs theta0, which PaST itself does not. It is a heuristic: measure it (the past_demo
///    reports it as an arm beside plain PaST).

#include <skillvec/expr/evaluate.hpp>
#include <skillvec/expr/ops.hpp>
#include <skillvec/expr/parameter.hpp>
#include <skillvec/expr/reduce.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>
#include <vector>

namespace skillvec {

/// Per-layer values as a parameter: layer l gets values[l], tensors outside the layers `other`.
[[nodiscard]] inline parameter layer_lambdas(const std::vector<float>& values, float other) {
    std::vector<parameter::rule> rules;
    for (std::size_t l = 0; l < values.size(); ++l)
        rules.push_back({tensor_filter{"", std::pair<int, int>{static_cast<int>(l), static_cast<int>(l)}}, values[l]});
    rules.push_back({tensor_filter{}, other});
    return parameter::rules(std::move(rules));
}

/// Options of `search_layer_lambdas`.
struct layer_search_options {
    std::vector<float> candidates = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f}; ///< values tried for each layer
    float initial = 1.0f;                                            ///< every layer's lambda at the start
    int sweeps = 1;                                                  ///< passes over the layers
};

/// The result of a search: the per-layer lambdas, the best score and how many scores were taken.
struct layer_search_result {
    std::vector<float> layers; ///< lambda per layer
    float other = 1.0f;        ///< lambda of the tensors outside the layers (embeddings, heads)
    double score = -std::numeric_limits<double>::infinity();
    int evaluations = 0;
    [[nodiscard]] parameter lambda() const { return layer_lambdas(layers, other); }
};

/// Coordinate ascent over layers (the tensors outside the layers are one more coordinate, last):
/// for each coordinate, try every candidate with the others fixed and keep the best (ties keep the
/// current value, so a flat score never moves lambda). Deterministic given a deterministic score.
template <class Score>
    requires std::invocable<Score&, const parameter&>
[[nodiscard]] layer_search_result search_layer_lambdas(int num_layers, Score&& score, const layer_search_options& opt = {}) {
    if (num_layers < 0) throw error("search_layer_lambdas: negative layer count");
    if (opt.candidates.empty()) throw error("search_layer_lambdas: no candidates");
    layer_search_result r;
    r.layers.assign(static_cast<std::size_t>(num_layers), opt.initial);
    r.other = opt.initial;
    r.score = static_cast<double>(score(r.lambda()));
    r.evaluations = 1;
    for (int sweep = 0; sweep < opt.sweeps; ++sweep) {
        bool moved = false;
        for (int c = 0; c <= num_layers; ++c) {
            float& slot = c < num_layers ? r.layers[static_cast<std::size_t>(c)] : r.other;
            const float current = slot;
            float best = current;
            for (float cand : opt.candidates) {
                if (cand == current) continue;
                slot = cand;
                const double s = static_cast<double>(score(r.lambda()));
                ++r.evaluations;
                if (s > r.score) {
                    r.score = s;
                    best = cand;
                }
            }
            slot = best;
            moved = moved || best != current;
        }
        if (!moved) break;
    }
    return r;
}

/// Options of `norm_ratio_lambdas`.
struct norm_ratio_options {
    float scale = 1.0f;  ///< multiplies every ratio
    float min = 0.0f;    ///< clamp
    float max = 2.0f;    ///< clamp
    float other = 1.0f;  ///< lambda of tensors outside the layers when the rule has nothing to say
    eval_options eval = {};
};

/// Per-layer norms of the two SFT deltas and the lambdas they give.
struct norm_ratio_result {
    std::vector<double> source_norm; ///< |sft_S - theta0| per layer
    std::vector<double> target_norm; ///< |sft_T - theta0| per layer
    std::vector<float> layers;       ///< lambda per layer
    float other = 1.0f;              ///< lambda outside the layers (from their norms, or options.other)
    [[nodiscard]] parameter lambda() const { return layer_lambdas(layers, other); }
};

/// lambda_l = clamp(scale * |sft_T - theta0|_l / |sft_S - theta0|_l, min, max); a layer the
/// source's SFT left unchanged gets `max` if the target's moved, else 1. Two streaming passes.
template <weight_store A, weight_store B, weight_store C>
[[nodiscard]] norm_ratio_result norm_ratio_lambdas(const A& theta0, const B& sft_source, const C& sft_target,
                                                   const norm_ratio_options& opt = {}) {
    const auto src = evaluate(norm(weights(sft_source, "sft_source") - weights(theta0, "theta0")), opt.eval);
    const auto tgt = evaluate(norm(weights(sft_target, "sft_target") - weights(theta0, "theta0")), opt.eval);
    int top = no_layer;
    for (const auto& l : src.layers) top = std::max(top, l.layer);
    norm_ratio_result r;
    const std::size_t L = static_cast<std::size_t>(top + 1);
    r.source_norm.assign(L, 0.0);
    r.target_norm.assign(L, 0.0);
    double src_other = 0, tgt_other = 0;
    for (const auto& l : src.layers) (l.layer >= 0 ? r.source_norm[static_cast<std::size_t>(l.layer)] : src_other) = l.stats.value();
    for (const auto& l : tgt.layers)
        if (l.layer < top + 1) (l.layer >= 0 ? r.target_norm[static_cast<std::size_t>(l.layer)] : tgt_other) = l.stats.value();
    auto rule = [&](double s, double t, float fallback) {
        if (!(s > 0)) return t > 0 ? opt.max : fallback;
        return static_cast<float>(std::clamp(static_cast<double>(opt.scale) * t / s, static_cast<double>(opt.min),
                                             static_cast<double>(opt.max)));
    };
    r.layers.resize(L);
    for (std::size_t l = 0; l < L; ++l) r.layers[l] = rule(r.source_norm[l], r.target_norm[l], 1.0f);
    r.other = rule(src_other, tgt_other, opt.other);
    return r;
}

} // namespace skillvec

#pragma once
/// \file
/// `lr_schedule`: the learning rate at each optimizer step (linear warmup, then cosine, linear or
/// no decay).

#include <skillvec/core/error.hpp>

#include <cmath>
#include <cstddef>
#include <numbers>
#include <string>

namespace skillvec::nn {

/// Learning rate as a function of the 0-based optimizer step `s`. With W = warmup_steps,
/// N = total_steps, P = peak and M = min_lr:
///
///     s < W:            P * (s + 1) / W                      (warmup; s = 0 gives P / W, never 0)
///     constant decay:   P                                    (for every s >= W; N is not used)
///     s >= N:           M                                    (decay finished; clamped beyond N)
///     otherwise, with   x = (s - W) / (N - W)  in [0, 1):
///       cosine:         M + (P - M) * (1 + cos(pi * x)) / 2
///       linear:         M + (P - M) * (1 - x)
///
/// So the rate reaches P at step W - 1, stays P at step W (x = 0), and would reach M at step N; a
/// run of N steps (0 .. N-1) therefore ends just above M. Warmup takes precedence: when N <= W
/// there is no decay phase, and every step from W on gets M (cosine, linear) or P (constant).
///
/// A decaying schedule needs N: evaluating one with total_steps = 0 throws, because the default
/// would otherwise be a learning rate of min_lr (0) at every step, a run that silently learns
/// nothing.
struct lr_schedule {
    double peak = 1e-3;
    double min_lr = 0.0;
    std::size_t warmup_steps = 0;
    std::size_t total_steps = 0;
    enum class decay_kind { cosine, linear, constant } decay = decay_kind::cosine;

    /// The learning rate at step `step`. Throws skillvec::error if validate() does.
    [[nodiscard]] double operator()(std::size_t step) const {
        validate();
        if (step < warmup_steps) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
        if (decay == decay_kind::constant) return peak;
        if (step >= total_steps) return min_lr;
        const double x = static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
        const double factor = decay == decay_kind::cosine ? 0.5 * (1.0 + std::cos(std::numbers::pi * x)) : 1.0 - x;
        return min_lr + (peak - min_lr) * factor;
    }

    /// Throws skillvec::error unless 0 <= min_lr <= peak (both finite) and, for a decaying
    /// schedule, total_steps > 0. Call it when a run is configured, to fail before training.
    void validate() const {
        if (!std::isfinite(peak) || peak < 0.0) throw error("lr_schedule: peak must be finite and >= 0, got " + std::to_string(peak));
        if (!std::isfinite(min_lr) || min_lr < 0.0 || min_lr > peak)
            throw error("lr_schedule: min_lr must be in [0, peak = " + std::to_string(peak) + "], got " + std::to_string(min_lr));
        if (decay != decay_kind::constant && total_steps == 0)
            throw error("lr_schedule: total_steps is 0 with a decaying schedule (every step would get min_lr); "
                        "set total_steps, or use decay_kind::constant");
    }
};

} // namespace skillvec::nn

#pragma once
/// \file
/// AdamW over a flat parameter buffer, and global gradient-norm clipping.
///
/// The model keeps every parameter in one `std::span<T>` (named slices of it) and its gradients
/// in a same-sized buffer, so the optimizer works on slices of that buffer: `param_group`s. A
/// group carries what differs between slices in practice (weight decay on matrices but not on
/// norms and biases, a learning-rate multiplier).
///
/// The update is PyTorch's `torch.optim.AdamW` (amsgrad off, maximize off), term for term, so a
/// run can be checked against a PyTorch reference:
///
///     p  *= 1 - lr_g * wd_g                          (decoupled weight decay, before the Adam step)
///     m   = m + (1 - beta1) * (g - m)                (torch's lerp form of beta1*m + (1-beta1)*g)
///     v   = beta2 * v + (1 - beta2) * g * g
///     p  -= (lr_g / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
///
/// with t the step number (1 at the first step), lr_g = lr * lr_scale of the group and wd_g its
/// weight decay. Per-element arithmetic is in T; the scalar coefficients are computed in double
/// and rounded to T once, as PyTorch does with its Python-float hyperparameters. Moments are kept
/// in T (for T = float that halves the optimizer's memory against double moments, and matches
/// PyTorch's float32 state).

#include <skillvec/core/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace skillvec::nn {

/// A contiguous slice `[offset, offset + count)` of the flat parameter buffer and the
/// hyperparameters that apply to it.
struct param_group {
    std::size_t offset = 0, count = 0;
    double weight_decay = 0.0; ///< decoupled (AdamW) decay coefficient; 0 turns it off
    double lr_scale = 1.0;     ///< this group's learning rate is `lr * lr_scale`
};

/// Hyperparameters shared by all groups (PyTorch's defaults).
struct adamw_options {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

/// AdamW on a flat buffer of `T` (float or double).
///
/// Only elements inside some group are updated. An element that no group covers keeps its value
/// and its moments stay zero: that is how a slice is frozen. (Use `adamw(count, weight_decay)`
/// for the common single group covering everything.)
template <class T> class adamw {
    static_assert(std::is_floating_point_v<T>, "adamw<T>: T must be float or double");

public:
    /// An optimizer for a buffer of `param_count` elements. Throws skillvec::error when a group
    /// does not lie inside the buffer, two groups overlap, or a hyperparameter is out of range
    /// (as PyTorch: 0 <= beta < 1, eps >= 0, weight_decay >= 0; and lr_scale >= 0, all finite).
    adamw(std::size_t param_count, std::vector<param_group> groups, adamw_options options = {})
        : size_(param_count), groups_(std::move(groups)), opt_(options), m_(param_count, T(0)), v_(param_count, T(0)) {
        validate();
    }

    /// One group covering the whole buffer, with the given weight decay.
    explicit adamw(std::size_t param_count, double weight_decay = 0.0, adamw_options options = {})
        : adamw(param_count, std::vector<param_group>{param_group{0, param_count, weight_decay, 1.0}}, options) {}

    /// One AdamW step at learning rate `lr` (scaled per group by `lr_scale`). `params` and
    /// `grads` must both hold `param_count()` elements. Non-finite gradients are not filtered:
    /// they propagate into the moments and parameters, so check the norm (clip_grad_norm returns
    /// it) before stepping.
    void step(std::span<T> params, std::span<const T> grads, double lr) {
        if (params.size() != size_ || grads.size() != size_)
            throw error("adamw::step: the optimizer was built for " + std::to_string(size_) + " parameters, got " +
                        std::to_string(params.size()) + " parameters and " + std::to_string(grads.size()) + " gradients");
        if (!std::isfinite(lr) || lr < 0.0) throw error("adamw::step: learning rate must be finite and >= 0, got " + std::to_string(lr));

        ++step_;
        const double t = static_cast<double>(step_);
        const double bc1 = 1.0 - std::pow(opt_.beta1, t);
        const double bc2_sqrt = std::sqrt(1.0 - std::pow(opt_.beta2, t));
        const T one_minus_beta1 = static_cast<T>(1.0 - opt_.beta1);
        const T beta2 = static_cast<T>(opt_.beta2);
        const T one_minus_beta2 = static_cast<T>(1.0 - opt_.beta2);
        const T eps = static_cast<T>(opt_.eps);
        const T bc2s = static_cast<T>(bc2_sqrt);

        for (const param_group& g : groups_) {
            const double lr_g = lr * g.lr_scale;
            const T decay = static_cast<T>(1.0 - lr_g * g.weight_decay);
            const T step_size = static_cast<T>(lr_g / bc1);
            const bool decays = g.weight_decay != 0.0;
            T* p = params.data() + g.offset;
            const T* gr = grads.data() + g.offset;
            T* m = m_.data() + g.offset;
            T* v = v_.data() + g.offset;
            for (std::size_t i = 0; i < g.count; ++i) {
                if (decays) p[i] *= decay;
                const T gi = gr[i];
                m[i] += one_minus_beta1 * (gi - m[i]);
                v[i] = v[i] * beta2 + one_minus_beta2 * gi * gi;
                const T denom = std::sqrt(v[i]) / bc2s + eps;
                p[i] -= step_size * (m[i] / denom);
            }
        }
    }

    /// Steps taken since construction or the last reset() (the `t` of the bias correction).
    [[nodiscard]] std::size_t step_count() const noexcept { return step_; }

    /// Back to a fresh optimizer: zero moments, step 0. Groups and options are kept.
    void reset() noexcept {
        std::fill(m_.begin(), m_.end(), T(0));
        std::fill(v_.begin(), v_.end(), T(0));
        step_ = 0;
    }

    [[nodiscard]] std::size_t param_count() const noexcept { return size_; }
    [[nodiscard]] const std::vector<param_group>& groups() const noexcept { return groups_; }
    [[nodiscard]] const adamw_options& options() const noexcept { return opt_; }

    /// The first moment (PyTorch's `exp_avg`), one element per parameter, for checkpointing.
    [[nodiscard]] std::span<const T> first_moment() const noexcept { return m_; }
    /// The second moment (PyTorch's `exp_avg_sq`), one element per parameter.
    [[nodiscard]] std::span<const T> second_moment() const noexcept { return v_; }

    /// Restores the state saved from first_moment(), second_moment() and step_count(), so that a
    /// resumed run continues exactly. Throws skillvec::error on a size mismatch.
    void load_state(std::size_t steps, std::span<const T> first, std::span<const T> second) {
        if (first.size() != size_ || second.size() != size_)
            throw error("adamw::load_state: the optimizer has " + std::to_string(size_) + " parameters, got moments of " +
                        std::to_string(first.size()) + " and " + std::to_string(second.size()) + " elements");
        std::copy(first.begin(), first.end(), m_.begin());
        std::copy(second.begin(), second.end(), v_.begin());
        step_ = steps;
    }

private:
    static std::string range(const param_group& g) {
        return "[" + std::to_string(g.offset) + ", " + std::to_string(g.offset + g.count) + ")";
    }

    void validate() const {
        auto in_unit = [](double b) { return std::isfinite(b) && b >= 0.0 && b < 1.0; };
        if (!in_unit(opt_.beta1)) throw error("adamw: beta1 must be in [0, 1), got " + std::to_string(opt_.beta1));
        if (!in_unit(opt_.beta2)) throw error("adamw: beta2 must be in [0, 1), got " + std::to_string(opt_.beta2));
        if (!std::isfinite(opt_.eps) || opt_.eps < 0.0) throw error("adamw: eps must be finite and >= 0, got " + std::to_string(opt_.eps));

        std::vector<std::size_t> order;
        for (std::size_t i = 0; i < groups_.size(); ++i) {
            const param_group& g = groups_[i];
            const std::string name = "adamw: parameter group " + std::to_string(i);
            if (g.offset > size_ || g.count > size_ - g.offset) // written so that offset + count cannot overflow
                throw error(name + " [offset " + std::to_string(g.offset) + ", count " + std::to_string(g.count) +
                            "] does not lie inside the parameter buffer of " + std::to_string(size_) + " elements");
            if (!std::isfinite(g.weight_decay) || g.weight_decay < 0.0)
                throw error(name + " " + range(g) + ": weight_decay must be finite and >= 0, got " + std::to_string(g.weight_decay));
            if (!std::isfinite(g.lr_scale) || g.lr_scale < 0.0)
                throw error(name + " " + range(g) + ": lr_scale must be finite and >= 0, got " + std::to_string(g.lr_scale));
            if (g.count > 0) order.push_back(i); // an empty group covers nothing, so it overlaps nothing
        }
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return groups_[a].offset < groups_[b].offset; });
        for (std::size_t k = 1; k < order.size(); ++k) {
            const param_group& a = groups_[order[k - 1]];
            const param_group& b = groups_[order[k]];
            if (a.offset + a.count > b.offset) {
                const std::size_t lo = std::min(order[k - 1], order[k]), hi = std::max(order[k - 1], order[k]);
                throw error("adamw: parameter groups " + std::to_string(lo) + " " + range(groups_[lo]) + " and " +
                            std::to_string(hi) + " " + range(groups_[hi]) + " overlap");
            }
        }
    }

    std::size_t size_;
    std::vector<param_group> groups_;
    adamw_options opt_;
    std::vector<T> m_, v_;
    std::size_t step_ = 0;
};

/// The global L2 norm of `values`, accumulated in double. T may be const-qualified. Safe from
/// overflow for double input: if the plain sum of squares overflows while every element is
/// finite, the norm is recomputed on values scaled by the largest magnitude.
template <class T> [[nodiscard]] double l2_norm(std::span<T> values) noexcept {
    static_assert(std::is_floating_point_v<std::remove_const_t<T>>, "l2_norm: T must be float or double");
    double sum = 0.0;
    for (const auto x : values) sum += static_cast<double>(x) * static_cast<double>(x);
    if (std::isfinite(sum)) return std::sqrt(sum);
    double biggest = 0.0;
    for (const auto x : values) {
        const double a = std::fabs(static_cast<double>(x));
        if (!std::isfinite(a)) return std::isnan(a) ? a : std::numeric_limits<double>::infinity(); // a real NaN or inf
        biggest = std::max(biggest, a);
    }
    double scaled = 0.0;
    for (const auto x : values) {
        const double s = static_cast<double>(x) / biggest;
        scaled += s * s;
    }
    return biggest * std::sqrt(scaled);
}

/// Clips gradients by their global L2 norm, as PyTorch's `clip_grad_norm_`: when the norm
/// exceeds `max_norm`, every gradient is multiplied by `max_norm / (norm + 1e-6)`. Returns the
/// norm before clipping. `max_norm <= 0` or infinite means no clipping (the norm is still
/// returned, for logging). A non-finite norm (a NaN or infinite gradient) leaves the gradients
/// untouched and is returned as is: the caller decides whether to skip the step.
///
/// One difference from PyTorch: PyTorch always multiplies by min(1, max_norm / (norm + 1e-6)),
/// which shrinks gradients by up to 1e-6 relative when norm is within 1e-6 of max_norm; here a
/// norm at or below max_norm leaves them bit-for-bit unchanged.
template <class T> double clip_grad_norm(std::span<T> grads, double max_norm) noexcept {
    static_assert(std::is_floating_point_v<T>, "clip_grad_norm: T must be float or double (and not const)");
    const double norm = l2_norm(grads);
    if (!std::isfinite(norm) || !(max_norm > 0.0) || !std::isfinite(max_norm) || norm <= max_norm) return norm;
    const T scale = static_cast<T>(max_norm / (norm + 1e-6));
    for (auto& g : grads) g *= scale;
    return norm;
}

} // namespace skillvec::nn

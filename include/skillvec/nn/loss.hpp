#pragma once
/// \file
/// Token log-probabilities from logits, and their gradients: the one piece of arithmetic that SFT
/// (cross-entropy) and GRPO (ratios, KL, entropy) share.
///
/// For a position with logits z [V], a target y and a temperature tau:
///
///   logp = log softmax(z / tau)[y]
///   d(logp)/dz = (onehot(y) - softmax(z / tau)) / tau
///
/// A loss is any L = sum_t c_t * logp_t (+ terms that do not depend on z); its gradient wrt the
/// logits is c_t * d(logp_t)/dz_t, which is what `logprob_backward` writes. Cross-entropy with a
/// token mean is c_t = -1/N on the N scored positions.
///
/// Exponentials run in T with SIMD (they are most of the loss's time); the sums over the vocabulary
/// run in double. Rows are independent, so a pool splits them without changing any result.

#include <skillvec/core/error.hpp>
#include <skillvec/detail/thread_pool.hpp>
#include <skillvec/nn/detail/layers.hpp>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace skillvec::nn {

/// A target of `ignore_index` scores nothing (padding, prompt tokens, tokens after EOS).
inline constexpr std::int32_t ignore_index = -1;

namespace detail {
inline void check_logit_shapes(std::size_t logits, std::size_t V, std::size_t targets, const char* who) {
    if (V == 0 || logits != targets * V)
        throw error(std::string(who) + ": " + std::to_string(logits) + " logits do not match " + std::to_string(targets) +
                    " positions x vocab " + std::to_string(V));
}
/// The checks token_logprobs and logprob_backward share: shapes, temperature, every target.
inline void check_positions(std::size_t logits, std::size_t V, std::span<const std::int32_t> targets, double temperature,
                            const char* who) {
    check_logit_shapes(logits, V, targets.size(), who);
    if (!(temperature > 0)) throw error(std::string(who) + ": temperature must be > 0");
    for (std::size_t r = 0; r < targets.size(); ++r) {
        const std::int32_t y = targets[r];
        if (y != ignore_index && (y < 0 || static_cast<std::size_t>(y) >= V))
            throw error(std::string(who) + ": target " + std::to_string(y) + " at position " + std::to_string(r) +
                        " is outside [0, " + std::to_string(V) + ")");
    }
}

/// log softmax(z / tau)[y] from a row's exp_row statistics.
template <class T> double target_logp(const T* z, std::int32_t y, T inv_t, double mx, double sum) {
    return static_cast<double>(z[y] * inv_t) - mx - std::log(sum);
}

/// One row: e[i] = exp(z[i] / tau - max), returns {max, sum e, sum e * (z / tau - max)}. SIMD in
/// T (exp is most of a training step's loss time); sums of the V terms in double.
struct softmax_row {
    double mx, sum, sum_es;
};
template <class T> softmax_row exp_row(const T* z, std::size_t V, T inv_t, T* e) {
    using batch = xsimd::batch<T>;
    constexpr std::size_t W = batch::size;
    T mx = z[0] * inv_t;
    std::size_t i = 0;
    if (V >= W) {
        batch m = batch::load_unaligned(z) * inv_t;
        for (i = W; i + W <= V; i += W) m = xsimd::max(m, batch::load_unaligned(z + i) * inv_t);
        alignas(64) T lanes[W];
        m.store_aligned(lanes);
        for (T x : lanes) mx = std::max(mx, x);
    }
    for (; i < V; ++i) mx = std::max(mx, z[i] * inv_t);
    double sum = 0, sum_es = 0;
    i = 0;
    const batch bm(mx), bt(inv_t);
    for (; i + W <= V; i += W) {
        const batch s = xsimd::fms(batch::load_unaligned(z + i), bt, bm);
        const batch ex = xsimd::exp(s);
        ex.store_unaligned(e + i);
        sum += static_cast<double>(xsimd::hadd(ex));
        sum_es += static_cast<double>(xsimd::hadd(ex * s));
    }
    for (; i < V; ++i) {
        const T s = z[i] * inv_t - mx;
        e[i] = std::exp(s);
        sum += static_cast<double>(e[i]);
        sum_es += static_cast<double>(e[i]) * static_cast<double>(s);
    }
    return {static_cast<double>(mx), sum, sum_es};
}
} // namespace detail

/// For every position: the log-probability of its target at `temperature` (0 where the target is
/// ignore_index) and, if `entropy` is non-empty, the entropy of softmax(z / temperature) (0 where
/// ignored). Throws on a target outside [0, V) other than ignore_index, or a temperature <= 0.
template <class T>
void token_logprobs(std::span<const T> logits, std::size_t V, std::span<const std::int32_t> targets, double temperature,
                    std::span<double> logp, std::span<double> entropy = {},
                    skillvec::detail::thread_pool* pool = nullptr) {
    detail::check_positions(logits.size(), V, targets, temperature, "token_logprobs");
    if (logp.size() != targets.size() || (!entropy.empty() && entropy.size() != targets.size()))
        throw error("token_logprobs: output sizes do not match the positions");
    const T inv_t = static_cast<T>(1.0 / temperature);
    detail::parallel_rows(pool, targets.size(), 16, [&](std::size_t r0, std::size_t r1) {
        std::vector<T> e(V);
        for (std::size_t r = r0; r < r1; ++r) {
            const std::int32_t y = targets[r];
            if (y == ignore_index) {
                logp[r] = 0;
                if (!entropy.empty()) entropy[r] = 0;
                continue;
            }
            const T* z = logits.data() + r * V;
            const auto st = detail::exp_row(z, V, inv_t, e.data());
            logp[r] = detail::target_logp(z, y, inv_t, st.mx, st.sum);
            // H = -sum p log p = lse - sum p s  (s = scaled logits minus their max)
            if (!entropy.empty()) entropy[r] = std::log(st.sum) - st.sum_es / st.sum;
        }
    });
}

/// dlogits[r, :] = coeff[r] * (onehot(y_r) - softmax(z_r / temperature)) / temperature, and 0 on
/// ignored positions: the gradient of sum_r coeff[r] * logp_r. If `logp` is non-empty it also
/// receives logp_r for every row with a non-zero coefficient (the same values token_logprobs
/// gives, from the same exponentials), and 0 elsewhere.
template <class T>
void logprob_backward(std::span<const T> logits, std::size_t V, std::span<const std::int32_t> targets, double temperature,
                      std::span<const double> coeff, std::span<T> dlogits, skillvec::detail::thread_pool* pool = nullptr,
                      std::span<double> logp = {}) {
    detail::check_positions(logits.size(), V, targets, temperature, "logprob_backward");
    if (coeff.size() != targets.size() || dlogits.size() != logits.size() || (!logp.empty() && logp.size() != targets.size()))
        throw error("logprob_backward: coefficient, gradient or log-prob sizes do not match the positions");
    const T inv_t = static_cast<T>(1.0 / temperature);
    detail::parallel_rows(pool, targets.size(), 16, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r) {
            T* d = dlogits.data() + r * V;
            const std::int32_t y = targets[r];
            if (y == ignore_index || coeff[r] == 0.0) {
                std::fill(d, d + V, T(0));
                if (!logp.empty()) logp[r] = 0;
                continue;
            }
            const T* z = logits.data() + r * V;
            const auto st = detail::exp_row(z, V, inv_t, d);
            if (!logp.empty()) logp[r] = detail::target_logp(z, y, inv_t, st.mx, st.sum);
            const double scale = coeff[r] * static_cast<double>(inv_t);
            const T k = static_cast<T>(-scale / st.sum);
            for (std::size_t i = 0; i < V; ++i) d[i] *= k;
            d[y] = static_cast<T>(static_cast<double>(d[y]) + scale);
        }
    });
}

/// Token-mean cross-entropy over the positions whose target is not ignore_index; writes its
/// gradient into `dlogits` (zero on ignored positions) and returns the loss (0 if none is scored).
/// `weight` scales the loss and gradient (for example 1/micro-batches when accumulating).
template <class T>
double cross_entropy(std::span<const T> logits, std::size_t V, std::span<const std::int32_t> targets, std::span<T> dlogits,
                     double weight = 1.0, skillvec::detail::thread_pool* pool = nullptr) {
    // The coefficients are known before the log-probs, so one pass over the exponentials gives
    // both the gradient and the loss.
    std::size_t n = 0;
    for (auto y : targets) n += y != ignore_index;
    std::vector<double> logp(targets.size()), coeff(targets.size(), 0.0);
    for (std::size_t r = 0; r < targets.size(); ++r)
        if (targets[r] != ignore_index) coeff[r] = -weight / static_cast<double>(n);
    logprob_backward<T>(logits, V, targets, 1.0, coeff, dlogits, pool, logp);
    if (n == 0) return 0.0;
    double loss = 0;
    for (std::size_t r = 0; r < targets.size(); ++r)
        if (targets[r] != ignore_index) loss -= logp[r];
    return weight * loss / static_cast<double>(n);
}

} // namespace skillvec::nn

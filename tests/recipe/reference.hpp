#pragma once
// Reference implementations of the merge methods, for tests/recipe/test_methods.cpp: written
// straightforwardly and independently of the library (full sorts instead of radix selection,
// std::vector, one element at a time, everything in double). The only thing shared with
// include/skillvec/recipe/methods.hpp is what its documentation fixes: the conventions and the
// DARE hash constants.
//
// Inputs are the task values as f32 (what the library's child expressions produce, e.g. m - base
// computed in f32); outputs are exact-ish doubles, which the tests round to f32 and compare.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ref {

enum class sparsify { none, magnitude, random, outliers };
enum class election { none, sum, count };

/// The ranking key of a magnitude: the f32 bit pattern of |x| (NaN above +Inf).
inline std::uint32_t magnitude_key(float x) {
    return std::bit_cast<std::uint32_t>(x) & 0x7FFFFFFFu;
}

/// All keys, largest first.
inline std::vector<std::uint32_t> sorted_keys(const std::vector<float>& tau) {
    std::vector<std::uint32_t> k;
    for (float x : tau) k.push_back(magnitude_key(x));
    std::sort(k.begin(), k.end(), std::greater<>());
    return k;
}

/// floor(fraction * n), 0 for fraction <= 0, n for fraction >= 1.
inline std::uint64_t count_of(float fraction, std::uint64_t n) {
    if (fraction <= 0) return 0;
    if (fraction >= 1) return n;
    return static_cast<std::uint64_t>(std::floor(static_cast<double>(fraction) * static_cast<double>(n)));
}

/// TIES / magnitude pruning: keep the max(1, floor(density n)) largest, with every tie at the threshold.
inline std::vector<bool> magnitude_mask(const std::vector<float>& tau, float density) {
    const std::size_t n = tau.size();
    if (density >= 1) return std::vector<bool>(n, true);
    if (density <= 0 || n == 0) return std::vector<bool>(n, false);
    const std::uint64_t k = std::max<std::uint64_t>(1, count_of(density, n));
    const std::uint32_t t = sorted_keys(tau)[k - 1];
    std::vector<bool> m(n);
    for (std::size_t i = 0; i < n; ++i) m[i] = magnitude_key(tau[i]) >= t;
    return m;
}

/// Breadcrumbs: drop the n_top largest, keep the next n_keep (with ties), drop the rest.
inline std::vector<bool> outlier_mask(const std::vector<float>& tau, float density, float gamma) {
    const std::size_t n = tau.size();
    if (density >= 1) return std::vector<bool>(n, true);
    const auto sorted = sorted_keys(tau);
    const auto n_keep = static_cast<std::int64_t>(count_of(density, n));
    auto n_top = static_cast<std::int64_t>(count_of(gamma, n));
    const std::int64_t n_bot = static_cast<std::int64_t>(n) - n_keep - n_top;
    if (n_bot < 0) n_top += n_bot;
    std::vector<bool> m(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t k = magnitude_key(tau[i]);
        const bool dropped = n_top > 0 && k >= sorted[n_top - 1];
        const bool in_band = n_keep > 0 && (n_top + n_keep >= static_cast<std::int64_t>(n) || k >= sorted[n_top + n_keep - 1]);
        m[i] = !dropped && in_band;
    }
    return m;
}

// The DARE hash, from the constants documented in methods.hpp.
inline std::uint64_t splitmix(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
inline std::uint64_t fnv(const std::string& s) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}
inline double dare_u(std::uint64_t seed, std::uint64_t model, const std::string& name, std::uint64_t i) {
    const std::uint64_t key = splitmix(splitmix(splitmix(seed) ^ model) ^ fnv(name));
    return std::ldexp(static_cast<double>(splitmix(key ^ i) >> 40), -24);
}

/// One task of a generalized task arithmetic merge, at one tensor.
struct task {
    std::vector<float> tau;
    float weight = 1, density = 1, gamma = 0.01f;
};

struct merge_settings {
    sparsify method = sparsify::none;
    election sign = election::none;
    bool normalize = false;
    bool rescale = true; // DARE only
    float lambda = 1;
    std::uint64_t seed = 0;
};

/// mergekit's generalized task arithmetic, element by element, in double.
inline std::vector<double> merge(const merge_settings& s, const std::string& name, const std::vector<task>& tasks) {
    const std::size_t n = tasks.at(0).tau.size(), K = tasks.size();
    // d[k][i] = w_k * sparsified(tau_k)[i]
    std::vector<std::vector<double>> d(K, std::vector<double>(n, 0.0));
    for (std::size_t k = 0; k < K; ++k) {
        const task& t = tasks[k];
        std::vector<bool> keep(n, true);
        if (s.method == sparsify::magnitude) keep = magnitude_mask(t.tau, t.density);
        if (s.method == sparsify::outliers) keep = outlier_mask(t.tau, t.density, t.gamma);
        const bool random = s.method == sparsify::random && t.density < 1;
        for (std::size_t i = 0; i < n; ++i) {
            double v = t.tau[i];
            if (random) {
                if (!(dare_u(s.seed, k, name, i) < static_cast<double>(t.density))) keep[i] = false;
                else if (s.rescale) v = v / static_cast<double>(t.density);
            }
            if (keep[i]) d[k][i] = static_cast<double>(t.weight) * v;
        }
    }
    std::vector<double> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        double mixed = 0, divisor = 0;
        if (s.sign == election::none) {
            for (std::size_t k = 0; k < K; ++k) {
                mixed += d[k][i];
                divisor += tasks[k].weight;
            }
            if (std::fabs(divisor) < 1e-8) divisor = 1;
        } else {
            double total = 0;
            int votes = 0;
            for (std::size_t k = 0; k < K; ++k) {
                total += d[k][i];
                votes += d[k][i] > 0 ? 1 : d[k][i] < 0 ? -1 : 0;
            }
            const int elected = (s.sign == election::sum ? total >= 0 : votes >= 0) ? 1 : -1;
            for (std::size_t k = 0; k < K; ++k) {
                const int sg = d[k][i] > 0 ? 1 : d[k][i] < 0 ? -1 : 0;
                if (sg == elected) {
                    mixed += d[k][i];
                    divisor += tasks[k].weight;
                }
            }
            if (divisor == 0) divisor = 1;
        }
        if (s.normalize) mixed /= divisor;
        out[i] = static_cast<double>(s.lambda) * mixed;
    }
    return out;
}

/// sum_k w_k theta_k (/ sum_k w_k).
inline std::vector<double> linear(const std::vector<std::vector<float>>& thetas, const std::vector<float>& w, bool normalize) {
    std::vector<double> out(thetas.at(0).size(), 0.0);
    double sum = 0;
    for (float x : w) sum += x;
    for (std::size_t i = 0; i < out.size(); ++i) {
        for (std::size_t k = 0; k < thetas.size(); ++k) out[i] += static_cast<double>(w[k]) * thetas[k][i];
        if (normalize) out[i] /= sum;
    }
    return out;
}

/// mergekit's slerp (normalize each side unless its norm is <= 1e-8; lerp when |cos| > 0.9995).
/// `scale`, if given, receives |s0 a| + |s1 b| per element (what rounding errors are relative to).
inline std::vector<double> slerp(const std::vector<float>& a, const std::vector<float>& b, float t,
                                 std::vector<double>* scale = nullptr) {
    double aa = 0, bb = 0, ab = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        aa += static_cast<double>(a[i]) * a[i];
        bb += static_cast<double>(b[i]) * b[i];
        ab += static_cast<double>(a[i]) * b[i];
    }
    double na = std::sqrt(aa), nb = std::sqrt(bb);
    if (!(na > 1e-8)) na = 1;
    if (!(nb > 1e-8)) nb = 1;
    const double dot = ab / na / nb;
    double s0, s1;
    if (std::fabs(dot) > 0.9995) {
        s0 = 1 - static_cast<double>(t);
        s1 = t;
    } else {
        const double theta = std::acos(dot);
        s0 = std::sin((1 - static_cast<double>(t)) * theta) / std::sin(theta);
        s1 = std::sin(static_cast<double>(t) * theta) / std::sin(theta);
    }
    std::vector<double> out(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) out[i] = s0 * a[i] + s1 * b[i];
    if (scale) {
        scale->resize(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) (*scale)[i] = std::fabs(s0 * a[i]) + std::fabs(s1 * b[i]);
    }
    return out;
}

/// v - (<v, d> / <d, d>) d, with 0 for a zero d; `scale` as for slerp: |v| + |c d|.
inline std::vector<double> orthogonalize(const std::vector<float>& v, const std::vector<float>& d,
                                         std::vector<double>* scale = nullptr) {
    double vd = 0, dd = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        vd += static_cast<double>(v[i]) * d[i];
        dd += static_cast<double>(d[i]) * d[i];
    }
    const double c = dd == 0 ? 0 : vd / dd;
    std::vector<double> out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = v[i] - c * d[i];
    if (scale) {
        scale->resize(v.size());
        for (std::size_t i = 0; i < v.size(); ++i) (*scale)[i] = std::fabs(v[i]) + std::fabs(c * d[i]);
    }
    return out;
}

} // namespace ref

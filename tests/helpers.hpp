#pragma once
// Shared test helpers: random stores, values as double, ulp distances, a compensated reference sum.
#include <skillvec/skillvec.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace test {

struct tensor_spec {
    std::string name;
    skillvec::dtype type;
    skillvec::shape dims;
};

/// A store with the given tensors filled with N(mean, sd) values (rounded to each dtype).
inline skillvec::memory_store random_store(const std::string& label, const std::vector<tensor_spec>& specs,
                                           std::uint32_t seed, float sd = 1.0f, float mean = 0.0f) {
    skillvec::memory_store s(label);
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(mean, sd);
    for (const auto& t : specs) {
        if (!skillvec::is_arithmetic(t.type)) { // non-float: a deterministic byte pattern
            auto v = s.add(t.name, t.type, t.dims);
            for (std::size_t i = 0; i < v.bytes.size(); ++i) v.bytes[i] = static_cast<std::byte>((i * 131 + seed) & 0xFF);
            continue;
        }
        std::vector<float> v(t.dims.numel());
        for (auto& x : v) x = nd(rng);
        s.add_converted(t.name, t.type, t.dims, v);
    }
    return s;
}

/// `base` plus N(0, sd) noise, same names and dtypes: a fine-tuned copy.
inline skillvec::memory_store perturbed(const skillvec::memory_store& base, const std::string& label,
                                        std::uint32_t seed, float sd) {
    skillvec::memory_store s(label);
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, sd);
    for (const auto& n : base.tensor_names()) {
        auto v = base.at(n);
        if (!skillvec::is_arithmetic(v.type)) {
            s.add_bytes(n, v.type, v.dims, v.bytes);
            continue;
        }
        auto x = base.to_f32(n);
        for (auto& e : x) e += nd(rng);
        s.add_converted(n, v.type, v.dims, x);
    }
    return s;
}

inline std::vector<double> values(const skillvec::memory_store& s, const std::string& name) {
    auto f = s.to_f32(name);
    return {f.begin(), f.end()};
}

/// Distance in units in the last place between two finite floats (0 when bit-identical).
inline std::int64_t ulp_distance(float a, float b) {
    auto key = [](float f) {
        const auto u = static_cast<std::int64_t>(std::bit_cast<std::uint32_t>(f));
        return u & 0x80000000 ? 0x80000000 - u : u; // monotonic integer line through +-0
    };
    const auto d = key(a) - key(b);
    return d < 0 ? -d : d;
}

/// Neumaier-compensated sum: an accurate double reference that shares nothing with the kernels.
struct exact_sum {
    double sum = 0, comp = 0;
    void add(double x) {
        const double t = sum + x;
        if (std::fabs(sum) >= std::fabs(x)) comp += (sum - t) + x;
        else comp += (x - t) + sum;
        sum = t;
    }
    [[nodiscard]] double value() const { return sum + comp; }
};

inline bool same_bits(const skillvec::tensor_view& a, const skillvec::tensor_view& b) {
    return a.type == b.type && a.dims == b.dims && a.bytes.size() == b.bytes.size() &&
           std::equal(a.bytes.begin(), a.bytes.end(), b.bytes.begin());
}

} // namespace test

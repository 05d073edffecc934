// skillvec quickstart: PaST on a small synthetic bf16 model, with the cosine tables that show why
// it works (the SFT delta and the skill vector are nearly orthogonal).
//
// The four checkpoints are synthetic: theta0 is random; each fine-tune adds a delta. The two SFT
// deltas share a "knowledge" component plus their own noise; the RL delta is an independent
// low-magnitude direction. Real checkpoints come from the `skillvec` command and the PaST demo.
#include <skillvec/skillvec.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace sv = skillvec;

namespace {

struct layout {
    std::string name;
    sv::shape dims;
};

std::vector<layout> model_layout(int layers, std::uint64_t d, std::uint64_t vocab) {
    std::vector<layout> l = {{"model.embed_tokens.weight", {vocab, d}}};
    for (int i = 0; i < layers; ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        l.push_back({p + "self_attn.qkv_proj.weight", {3 * d, d}});
        l.push_back({p + "self_attn.o_proj.weight", {d, d}});
        l.push_back({p + "mlp.up_proj.weight", {4 * d, d}});
        l.push_back({p + "mlp.down_proj.weight", {d, 4 * d}});
        l.push_back({p + "input_layernorm.weight", {d}});
    }
    l.push_back({"model.norm.weight", {d}});
    return l;
}

/// theta0 + sum_k scale_k * direction_k, where each direction is seeded noise (same seed = same direction).
sv::memory_store checkpoint(const char* label, const std::vector<layout>& lay,
                            const std::vector<std::pair<std::uint32_t, float>>& parts) {
    sv::memory_store m(label);
    for (std::size_t t = 0; t < lay.size(); ++t) {
        std::vector<float> w(lay[t].dims.numel(), 0.0f);
        for (auto [seed, scale] : parts) {
            std::mt19937 rng(seed * 7919u + static_cast<std::uint32_t>(t));
            std::normal_distribution<float> nd(0.0f, scale);
            for (auto& x : w) x += nd(rng);
        }
        m.add_converted(lay[t].name, sv::dtype::bf16, lay[t].dims, w);
    }
    return m;
}

} // namespace

int main() {
    const auto lay = model_layout(4, 64, 512);
    // Directions: 1 = theta0, 2 = shared document knowledge, 3/4 = source/target specifics, 5 = RL skill.
    const auto theta0 = checkpoint("theta0", lay, {{1, 0.02f}});
    const auto sft_s = checkpoint("sft_S", lay, {{1, 0.02f}, {2, 0.004f}, {3, 0.004f}});
    const auto rl_s = checkpoint("rl_S", lay, {{1, 0.02f}, {2, 0.004f}, {3, 0.004f}, {5, 0.002f}});
    const auto sft_t = checkpoint("sft_T", lay, {{1, 0.02f}, {2, 0.004f}, {4, 0.004f}});

    std::printf("skillvec quickstart: PaST on a synthetic %zu-tensor bf16 model (%.2f M parameters)\n",
                theta0.size(), static_cast<double>(theta0.nbytes()) / 2e6);

    // 1. The skill vector v = rl_S - sft_S: an expression, nothing computed yet.
    const auto v = sv::extract(sv::weights(rl_s, "rl_S"), sv::weights(sft_s, "sft_S"));
    // 2. Inject it into the target: past_T = sft_T + 1.0 * v, in one fused pass (v is never stored).
    sv::memory_store past_t("past_T");
    const auto rep = sv::evaluate(sv::inject(sv::weights(sft_t, "sft_T"), v, 1.0f), past_t);
    std::printf("injected v into sft_T: %zu tensors, %.1f MB read, %.1f MB written in %.2f ms\n\n", rep.computed.size(),
                static_cast<double>(rep.bytes_read) / 1e6, static_cast<double>(rep.bytes_written) / 1e6, rep.seconds * 1e3);

    // 3. Why it works: cos(SFT delta, skill vector) ~ 0, against the two SFT deltas' cosine.
    const auto d_sft_s = sv::weights(sft_s) - sv::weights(theta0);
    const auto d_sft_t = sv::weights(sft_t) - sv::weights(theta0);
    const auto c_rl = sv::evaluate(sv::cosine(d_sft_s, v));
    const auto c_sft = sv::evaluate(sv::cosine(d_sft_s, d_sft_t));

    std::printf("per tensor                                  numel   |sft_S-theta0|   |v|   cos(sft_S-theta0, v)\n");
    for (const auto& t : c_rl.tensors)
        std::printf("  %-40s %8llu  %12.4f  %8.4f  %+10.4f\n", t.name.c_str(), static_cast<unsigned long long>(t.stats.numel),
                    t.stats.norm_a(), t.stats.norm_b(), t.stats.cosine());

    std::printf("\nper layer   cos(sft_S-theta0, v)   cos(sft_S-theta0, sft_T-theta0)   1/sqrt(numel)\n");
    for (std::size_t i = 0; i < c_rl.layers.size(); ++i) {
        const auto& a = c_rl.layers[i];
        const auto& b = c_sft.layers[i];
        const std::string label = a.layer == sv::no_layer ? "other" : std::to_string(a.layer);
        std::printf("  %-9s %+20.4f %+33.4f %15.4f\n", label.c_str(), a.stats.cosine(), b.stats.cosine(),
                    1.0 / std::sqrt(static_cast<double>(a.stats.numel)));
    }
    std::printf("  %-9s %+20.4f %+33.4f\n", "global", c_rl.value(), c_sft.value());

    // 4. Check: past_T - sft_T is v, up to bf16 rounding of the result.
    const auto check = sv::evaluate(sv::cosine(sv::weights(past_t) - sv::weights(sft_t), v));
    std::printf("\ncheck: cos(past_T - sft_T, v) = %.4f (1 up to bf16 rounding)\n", check.value());
    return check.value() > 0.9 ? 0 : 1;
}

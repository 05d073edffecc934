// A consumer program: PaST extract + inject on in-memory models, checked against plain loops.
// Exits non-zero if anything disagrees, so it doubles as the packaging test.
#include <skillvec/skillvec.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

namespace sv = skillvec;

static sv::memory_store model(const char* label, float offset, float slope) {
    sv::memory_store m(label);
    for (const char* name : {"model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight"}) {
        std::vector<float> w(1000);
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = offset + slope * std::sin(static_cast<float>(i) + offset);
        m.add_converted(name, sv::dtype::bf16, {10, 100}, w);
    }
    return m;
}

int main() {
    const auto sft = model("sft", 0.10f, 0.02f), rl = model("rl", 0.11f, 0.02f), target = model("target", -0.3f, 0.05f);

    // Extract the skill vector once (f32), then inject it: two passes, v stored in between.
    const auto v = sv::materialize(sv::extract(sv::weights(rl, "rl"), sv::weights(sft, "sft")));
    const auto two_step = sv::materialize(sv::inject(sv::weights(target, "target"), sv::delta(v, "v"), 1.0f),
                                          sv::eval_options{.allow_mixed_float_dtypes = true});
    // The fused form: one pass, v never stored.
    const auto fused = sv::materialize(sv::past(sv::weights(target), sv::weights(rl), sv::weights(sft), 1.0f));

    int bad = 0;
    for (const auto& name : target.tensor_names()) {
        const auto t = target.to_f32(name), r = rl.to_f32(name), s = sft.to_f32(name);
        const auto a = two_step.to_f32(name), b = fused.to_f32(name);
        for (std::size_t i = 0; i < t.size(); ++i) {
            const float want = sv::bf16_to_f32(sv::f32_to_bf16(t[i] + (r[i] - s[i])));
            if (a[i] != want || b[i] != want) ++bad;
        }
    }
    const auto cos = sv::evaluate(sv::cosine(sv::weights(rl) - sv::weights(sft), sv::weights(target) - sv::weights(sft)));
    std::printf("skillvec %d.%d.%d: PaST on %zu tensors, %d mismatches, cos(v, target - sft) = %.4f\n",
                SKILLVEC_VERSION_MAJOR, SKILLVEC_VERSION_MINOR, SKILLVEC_VERSION_PATCH, fused.size(), bad, cos.value());
    return bad == 0 && std::isfinite(cos.value()) ? 0 : 1;
}

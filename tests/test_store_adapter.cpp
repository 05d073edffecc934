// The weight-store concept is small: a user's own parameter container becomes a store (and an
// in-place target) with the ~20-line adapter below, and then every expression works on it.
#include "helpers.hpp"

#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <map>

namespace user {
// What a user already has: their own model type, knowing nothing of skillvec.
struct param {
    std::vector<float> values;
    std::vector<std::size_t> dims;
};
struct model {
    std::map<std::string, param> params;
};
} // namespace user

// ---- the adapter: 20 lines ----------------------------------------------------------------
struct model_store {
    user::model* m;
    std::vector<std::string> names;
    explicit model_store(user::model& model) : m(&model) {
        for (auto& [name, p] : model.params) names.push_back(name);
    }
    const std::vector<std::string>& tensor_names() const { return names; }
    std::optional<skillvec::tensor_view> find(std::string_view name) const {
        auto it = m->params.find(std::string(name));
        if (it == m->params.end()) return std::nullopt;
        return skillvec::tensor_view{skillvec::dtype::f32, skillvec::shape(it->second.dims), std::as_bytes(std::span(it->second.values))};
    }
    std::optional<skillvec::mutable_tensor_view> find_mutable(std::string_view name) {
        auto it = m->params.find(std::string(name));
        if (it == m->params.end()) return std::nullopt;
        return skillvec::mutable_tensor_view{skillvec::dtype::f32, skillvec::shape(it->second.dims), std::as_writable_bytes(std::span(it->second.values))};
    }
};
// ---- end of adapter ---------------------------------------------------------------------------

static_assert(skillvec::weight_store<model_store>);
static_assert(skillvec::mutable_weight_store<model_store>);

TEST_CASE("a user's model adapted in 20 lines: extract, inject in place, cosine", "[store][adapter]") {
    auto make = [](float base, float step) {
        user::model m;
        m.params["layers.0.w"] = {std::vector<float>(6), {2, 3}};
        m.params["layers.1.w"] = {std::vector<float>(4), {4}};
        for (auto& [n, p] : m.params)
            for (std::size_t i = 0; i < p.values.size(); ++i) p.values[i] = base + step * static_cast<float>(i);
        return m;
    };
    user::model sft = make(1.0f, 0.5f), rl = make(1.5f, 0.25f), target = make(-2.0f, 1.0f);
    model_store s_sft(sft), s_rl(rl), s_t(target);

    // PaST straight into the user's own parameters.
    auto rep = skillvec::evaluate(skillvec::past(skillvec::weights(s_t), skillvec::weights(s_rl), skillvec::weights(s_sft), 2.0f),
                                  skillvec::into(s_t));
    CHECK(rep.computed.size() == 2);
    for (auto& [n, p] : target.params)
        for (std::size_t i = 0; i < p.values.size(); ++i) {
            const float x = static_cast<float>(i);
            const double want = (-2.0 + x) + 2.0 * ((1.5 + 0.25 * x) - (1.0 + 0.5 * x));
            REQUIRE(p.values[i] == Approx(want).margin(1e-6));
        }

    // Reductions work the same; the layer comes from the name.
    const auto v = skillvec::weights(s_rl) - skillvec::weights(s_sft);
    const auto c = skillvec::evaluate(skillvec::cosine(v, v));
    CHECK(c.layers.size() == 2);
    CHECK(c.tensor("layers.1.w").stats.cosine() == Approx(1.0));
}

// analysis/heatmap.hpp: the layers x modules grid (rows, column order, combined cells) and its SVG.
#include <skillvec/analysis/heatmap.hpp>
#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <regex>

using namespace skillvec;

namespace {
struct fake_tensor {
    std::string name;
    int layer;
    compare_stats stats;
};
struct fake_result {
    std::vector<fake_tensor> tensors;
};
fake_tensor t(const std::string& name, double dot, double aa, double bb) {
    return {name, layer_of(name), compare_stats{dot, aa, bb, 0, 0, 4}};
}
} // namespace

TEST_CASE("layer_module_grid: rows by layer number, columns in block order, weight and bias combined", "[heatmap]") {
    fake_result r;
    // Shard order, not block order; layer 10 before layer 2 as strings.
    r.tensors = {t("lm_head.weight", 0, 1, 1),
                 t("model.layers.10.mlp.down_proj.weight", 1, 1, 1),
                 t("model.layers.10.self_attn.q_proj.weight", 0.5, 1, 1),
                 t("model.layers.2.mlp.up_proj.weight", -1, 1, 1),
                 t("model.layers.2.self_attn.q_proj.weight", 3, 4, 9),
                 t("model.layers.2.self_attn.q_proj.bias", 0, 0, 7), // combined with the weight: 3 / (2 * 4)
                 t("model.layers.2.custom_thing.weight", 0.25, 1, 1),
                 t("model.embed_tokens.weight", 0, 1, 1),
                 t("model.norm.weight", 0, 1, 1)};
    const auto g = layer_module_grid(r, [](const compare_stats& s) { return s.cosine(); });
    CHECK(g.rows == std::vector<std::string>{"layer 2", "layer 10", "other"});
    CHECK(g.cols == std::vector<std::string>{"self_attn.q_proj", "mlp.up_proj", "mlp.down_proj", "custom_thing", "model.embed_tokens",
                                             "model.norm", "lm_head"});
    REQUIRE(g.values.size() == g.rows.size() * g.cols.size());
    CHECK(g.at(0, 0) == Approx(3.0 / (2.0 * 4.0)));
    CHECK(g.at(0, 1) == Approx(-1));
    CHECK(std::isnan(g.at(0, 2))); // layer 2 has no down_proj
    CHECK(g.at(0, 3) == Approx(0.25));
    CHECK(g.at(1, 0) == Approx(0.5));
    CHECK(g.at(1, 2) == Approx(1));
    CHECK(std::isnan(g.at(1, 3)));
    CHECK(std::isnan(g.at(2, 0)));
    CHECK(g.at(2, 4) == 0);
}

TEST_CASE("module_rank orders common architectures' modules as in a block", "[heatmap]") {
    using detail::module_rank;
    CHECK(module_rank("model.embed_tokens") < module_rank("input_layernorm"));
    CHECK(module_rank("input_layernorm") < module_rank("self_attn.q_proj"));
    CHECK(module_rank("self_attn.v_proj") < module_rank("self_attn.o_proj"));
    CHECK(module_rank("self_attn.o_proj") < module_rank("post_attention_layernorm"));
    CHECK(module_rank("post_attention_layernorm") < module_rank("mlp.gate_proj"));
    CHECK(module_rank("mlp.gate_proj") < module_rank("mlp.up_proj"));
    CHECK(module_rank("mlp.up_proj") < module_rank("mlp.down_proj"));
    CHECK(module_rank("mlp.down_proj") < module_rank("model.norm"));
    CHECK(module_rank("model.norm") < module_rank("lm_head"));
    CHECK(module_rank("attn.c_attn") < module_rank("attn.c_proj")); // GPT-2
    CHECK(module_rank("mlp.c_fc") < module_rank("mlp.c_proj"));
    CHECK(module_rank("ln_1") < module_rank("ln_2"));
    CHECK(module_rank("ln1") < module_rank("attn.qkv")); // skillvec's nn::gpt
    CHECK(module_rank("attn.qkv") < module_rank("attn.proj"));
    CHECK(module_rank("attn.proj") < module_rank("ln2"));
    CHECK(module_rank("ln2") < module_rank("mlp.fc"));
    CHECK(module_rank("mlp.fc") < module_rank("mlp.proj"));
    CHECK(module_rank("mlp.proj") < module_rank("ln_f"));
    CHECK(module_rank("embed.positions") < module_rank("ln1"));
    CHECK(module_rank("something_new") == 1000);
}

TEST_CASE("render_heatmap_svg: one cell per value, escaped labels, n/a for empty cells", "[heatmap]") {
    heatmap_grid g;
    g.rows = {"layer 0", "layer 1"};
    g.cols = {"a<b", "c&d"};
    g.values = {0.5, -0.25, std::nan(""), 0.0};
    const std::string svg = render_heatmap_svg(g, "title \"x\"", "caption");
    CHECK(svg.rfind("<svg ", 0) == 0);
    CHECK(svg.ends_with("</svg>\n"));
    CHECK(svg.find("a&lt;b") != std::string::npos);
    CHECK(svg.find("c&amp;d") != std::string::npos);
    CHECK(svg.find("title &quot;x&quot;") != std::string::npos);
    CHECK(svg.find("a<b") == std::string::npos);
    CHECK(svg.find(">+0.5000<") != std::string::npos);
    CHECK(svg.find(">-0.2500<") != std::string::npos);
    CHECK(svg.find(">n/a<") != std::string::npos);
    // The scale spans the largest |value|; its ends are labelled.
    CHECK(svg.find(">+0.5<") != std::string::npos);
    CHECK(svg.find(">-0.5<") != std::string::npos);
    // 21 scale swatches, a background, one rect per cell.
    const std::regex rect("<rect ");
    const auto rects = std::distance(std::sregex_iterator(svg.begin(), svg.end(), rect), std::sregex_iterator());
    CHECK(rects == 1 + 21 + 4);
    // The most negative value is drawn blue, the most positive red, zero white.
    CHECK(svg.find("fill=\"#ffffff\" stroke") != std::string::npos);
}

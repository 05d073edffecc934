#pragma once
/// \file
/// An SVG heatmap of layers x module types, like the orthogonality figures of the PaST paper:
/// each cell is coloured on a diverging scale and also shows its value as text, so it reads
/// without looking up a legend.

#include <skillvec/analysis/layers.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace skillvec {

/// A grid of values: rows (e.g. layers) by columns (e.g. modules). NaN marks an empty cell.
struct heatmap_grid {
    std::vector<std::string> rows, cols;
    std::vector<double> values; ///< row-major, rows.size() x cols.size()
    [[nodiscard]] double at(std::size_t r, std::size_t c) const { return values[r * cols.size() + c]; }
};

namespace detail {
/// Where a module type sits in a transformer block, for column order: embeddings, the attention
/// norm, q/k/v, the attention output, the MLP norm, gate/up, down, the final norm, the head.
/// Unknown modules rank last (and keep their first-seen order).
inline int module_rank(std::string_view m) {
    struct key {
        std::string_view text;
        int rank;
    };
    static constexpr key keys[] = {
        {"embed", 0},      {"wte", 0},        {"wpe", 1},
        {"input_layernorm", 10}, {"ln_1", 10},  {"ln1", 10},       {"attention_norm", 10}, {"attn_norm", 10},
        {"post_attention_layernorm", 30}, {"ln_2", 30}, {"ln2", 30}, {"ffn_norm", 30},  {"mlp_norm", 30},
        {"q_proj", 20},    {"query", 20},     {"k_proj", 21},    {"key", 21},       {"v_proj", 22},  {"value", 22},
        {"qkv", 23},       {"c_attn", 23},    {"o_proj", 24},    {"out_proj", 24},  {"attn.c_proj", 24},
        {"attn.proj", 24}, {"attention.dense", 24},
        {"gate", 40},      {"w1", 40},        {"up_proj", 41},   {"fc1", 41},       {"c_fc", 41},    {"w3", 41},
        {"down", 42},      {"fc2", 42},       {"mlp.c_proj", 42}, {"w2", 42},
        {"mlp.fc", 41},    {"mlp.proj", 42}, // skillvec's own model (nn/gpt.hpp)
        {"lm_head", 60},   {"norm", 50},      {"ln_f", 50},
    };
    for (const auto& k : keys)
        if (m.find(k.text) != std::string_view::npos) return k.rank;
    return 1000;
}
} // namespace detail

/// Builds a layers x modules grid from per-tensor results, combining the tensors of one cell
/// (a weight and its bias) by adding their stats, as per-layer aggregation does. `value` maps
/// combined stats to the number shown (for example `[](auto& s) { return s.cosine(); }`).
template <class Result, class Value>
[[nodiscard]] heatmap_grid layer_module_grid(const Result& res, Value value) {
    using stats = std::remove_cvref_t<decltype(res.tensors.front().stats)>;
    std::map<int, std::map<std::string, stats>> cells;
    std::vector<std::string> col_order;
    for (const auto& t : res.tensors) {
        const std::string m = module_of(t.name);
        if (std::find(col_order.begin(), col_order.end(), m) == col_order.end()) col_order.push_back(m);
        cells[t.layer][m] += t.stats;
    }
    heatmap_grid g;
    std::vector<int> row_keys;
    for (const auto& [layer, _] : cells)
        if (layer != no_layer) row_keys.push_back(layer);
    if (cells.count(no_layer)) row_keys.push_back(no_layer);
    // Columns: modules that appear in layers first, then the rest; each in block order (module_rank).
    std::vector<std::string> in_layers, others;
    for (const auto& m : col_order) {
        bool layered = false;
        for (const auto& [layer, row] : cells)
            if (layer != no_layer && row.count(m)) layered = true;
        (layered ? in_layers : others).push_back(m);
    }
    auto by_rank = [](const std::string& a, const std::string& b) { return detail::module_rank(a) < detail::module_rank(b); };
    std::stable_sort(in_layers.begin(), in_layers.end(), by_rank);
    std::stable_sort(others.begin(), others.end(), by_rank);
    g.cols = in_layers;
    g.cols.insert(g.cols.end(), others.begin(), others.end());
    for (int r : row_keys) {
        g.rows.push_back(r == no_layer ? "other" : "layer " + std::to_string(r));
        for (const auto& c : g.cols) {
            const auto& row = cells[r];
            const auto it = row.find(c);
            g.values.push_back(it == row.end() ? std::nan("") : static_cast<double>(value(it->second)));
        }
    }
    return g;
}

namespace detail {
inline std::string xml_escape(const std::string& s) {
    std::string o;
    for (char ch : s) {
        switch (ch) {
        case '<': o += "&lt;"; break;
        case '>': o += "&gt;"; break;
        case '&': o += "&amp;"; break;
        case '"': o += "&quot;"; break;
        default: o += ch;
        }
    }
    return o;
}
/// Blue (negative) - white (0) - red (positive), t in [-1, 1].
inline std::string diverging(double t) {
    t = std::clamp(t, -1.0, 1.0);
    const auto mix = [](double a, double b, double u) { return static_cast<int>(std::lround(a + (b - a) * u)); };
    int r, g, b;
    if (t >= 0) r = mix(255, 178, t), g = mix(255, 24, t), b = mix(255, 43, t);
    else r = mix(255, 33, -t), g = mix(255, 102, -t), b = mix(255, 172, -t);
    char buf[16];
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", r, g, b);
    return buf;
}
} // namespace detail

/// Renders the grid. The colour scale is symmetric around 0 and spans the largest |value|
/// (at least `min_scale`), so cosines near 0 still show their sign; every cell prints its value.
[[nodiscard]] inline std::string render_heatmap_svg(const heatmap_grid& g, const std::string& title, const std::string& caption,
                                                   double min_scale = 0.01) {
    double scale = min_scale;
    for (double v : g.values)
        if (std::isfinite(v)) scale = std::max(scale, std::fabs(v));
    const int cw = 86, ch = 22, left = 70, top = 118, right = 20;
    int label_room = 0;
    for (const auto& c : g.cols) label_room = std::max(label_room, static_cast<int>(c.size()) * 6);
    // Column labels are rotated 40 degrees: the last one reaches about 0.77 of its length to the right.
    const int width = left + cw * static_cast<int>(g.cols.size()) + std::max(right, label_room * 77 / 100 - cw / 2 + right);
    const int height = top + label_room + ch * static_cast<int>(g.rows.size()) + 60;
    const int grid_top = top + label_room;
    std::string o;
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n"
                  "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
                  width, height, width, height);
    o += buf;
    o += "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">" + detail::xml_escape(title) + "</text>\n";
    o += "<text x=\"10\" y=\"38\" fill=\"#444\">" + detail::xml_escape(caption) + "</text>\n";
    // Scale bar.
    for (int i = 0; i <= 20; ++i) {
        const double t = -1.0 + i / 10.0;
        std::snprintf(buf, sizeof buf, "<rect x=\"%d\" y=\"52\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", 10 + 12 * i,
                      detail::diverging(t).c_str());
        o += buf;
    }
    std::snprintf(buf, sizeof buf,
                  "<text x=\"10\" y=\"78\">%+.3g</text><text x=\"130\" y=\"78\" text-anchor=\"middle\">0</text>"
                  "<text x=\"262\" y=\"78\" text-anchor=\"end\">%+.3g</text>\n",
                  -scale, scale);
    o += buf;
    for (std::size_t c = 0; c < g.cols.size(); ++c) {
        const int x = left + cw * static_cast<int>(c) + cw / 2;
        std::snprintf(buf, sizeof buf, "<text transform=\"translate(%d,%d) rotate(-40)\">%s</text>\n", x, grid_top - 6,
                      detail::xml_escape(g.cols[c]).c_str());
        o += buf;
    }
    for (std::size_t r = 0; r < g.rows.size(); ++r) {
        const int y = grid_top + ch * static_cast<int>(r);
        std::snprintf(buf, sizeof buf, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", left - 6, y + 15,
                      detail::xml_escape(g.rows[r]).c_str());
        o += buf;
        for (std::size_t c = 0; c < g.cols.size(); ++c) {
            const double v = g.at(r, c);
            const int x = left + cw * static_cast<int>(c);
            if (!std::isfinite(v)) {
                std::snprintf(buf, sizeof buf,
                              "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#f2f2f2\" stroke=\"white\"/>"
                              "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#999\">%s</text>\n",
                              x, y, cw, ch, x + cw / 2, y + 15, std::isnan(v) ? "n/a" : "inf");
            } else {
                const double t = v / scale;
                std::snprintf(buf, sizeof buf,
                              "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"white\"/>"
                              "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%+.4f</text>\n",
                              x, y, cw, ch, detail::diverging(t).c_str(), x + cw / 2, y + 15, std::fabs(t) > 0.6 ? "white" : "black", v);
            }
            o += buf;
        }
    }
    o += "</svg>\n";
    return o;
}

} // namespace skillvec

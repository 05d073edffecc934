#pragma once
/// \file
/// Layer index and module name from Hugging Face style tensor names.
///
///   model.layers.12.mlp.up_proj.weight        -> layer 12, module "mlp.up_proj"
///   transformer.h.3.attn.c_attn.bias          -> layer 3,  module "attn.c_attn"
///   encoder.block.0.layer.1.SelfAttention.q.weight -> layer 0 (the first layer-like index wins)
///   layers.2.attn.qkv.weight (skillvec's own model) -> layer 2
///   model.embed_tokens.weight                 -> no layer (-1), module "model.embed_tokens"
///
/// A component is a layer index if it is all digits and follows one of the usual container names
/// (layers, layer, h, blocks, block, decoder_layers, encoder_layers); failing that, the first
/// all-digit component counts.

#include <string>
#include <string_view>

namespace skillvec {

/// "No layer": embeddings, final norms, heads.
inline constexpr int no_layer = -1;

namespace detail {
inline bool all_digits(std::string_view s) noexcept {
    if (s.empty() || s.size() > 9) return false; // 9 digits fit an int
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}
inline bool layer_container(std::string_view s) noexcept {
    return s == "layers" || s == "layer" || s == "h" || s == "blocks" || s == "block" || s == "decoder_layers" ||
           s == "encoder_layers";
}

/// Position (component index) of the layer number in a dotted name, or -1.
inline int layer_component(std::string_view name, int* value) {
    int first_numeric = -1, first_value = 0;
    std::string_view prev;
    int idx = 0;
    std::size_t pos = 0;
    while (pos <= name.size()) {
        std::size_t dot = name.find('.', pos);
        if (dot == std::string_view::npos) dot = name.size();
        std::string_view comp = name.substr(pos, dot - pos);
        if (all_digits(comp)) {
            const int v = std::stoi(std::string(comp));
            if (layer_container(prev)) {
                *value = v;
                return idx;
            }
            if (first_numeric < 0) {
                first_numeric = idx;
                first_value = v;
            }
        }
        prev = comp;
        ++idx;
        pos = dot + 1;
    }
    *value = first_value;
    return first_numeric;
}
} // namespace detail

/// Layer index of a tensor name, or `no_layer`.
[[nodiscard]] inline int layer_of(std::string_view name) {
    int v = 0;
    return detail::layer_component(name, &v) >= 0 ? v : no_layer;
}

/// Module name: the components after the layer index (or the whole name without a layer), minus a
/// trailing "weight" or "bias". Used to group tensors by kind, e.g. for a layers x modules heatmap.
[[nodiscard]] inline std::string module_of(std::string_view name) {
    int v = 0;
    const int comp = detail::layer_component(name, &v);
    std::string_view rest = name;
    if (comp >= 0) {
        std::size_t pos = 0;
        for (int i = 0; i <= comp; ++i) pos = rest.find('.', pos) + 1;
        rest = (pos == 0 || pos > rest.size()) ? std::string_view{} : rest.substr(pos);
    }
    for (std::string_view suffix : {std::string_view(".weight"), std::string_view(".bias")}) {
        if (rest.size() > suffix.size() && rest.substr(rest.size() - suffix.size()) == suffix) {
            rest.remove_suffix(suffix.size());
            break;
        }
    }
    return std::string(rest);
}

} // namespace skillvec

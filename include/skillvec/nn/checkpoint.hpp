#pragma once
/// \file
/// Saving and loading the in-library model as safetensors, through skillvec's own checkpoint I/O.
///
/// A checkpoint holds every parameter under its layout name, in the model's dtype (f32 for
/// gpt<float>), and the config as JSON in `__metadata__["skillvec.gpt_config"]`, so the
/// `skillvec` command can inspect, analyze and merge it like any Hugging Face checkpoint, and
/// `load_gpt` can rebuild the model without being told its shape. Writing is atomic (temporary
/// name, fsync, rename); loading validates like the reference reader and then checks that the
/// tensor set is exactly the model's, naming the file and tensor on any mismatch.

#include <skillvec/core/dtype.hpp>
#include <skillvec/core/error.hpp>
#include <skillvec/io/safetensors.hpp>
#include <skillvec/io/safetensors_writer.hpp>
#include <skillvec/nn/gpt.hpp>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace skillvec::nn {

/// The metadata key holding the model config.
inline constexpr const char* gpt_config_key = "skillvec.gpt_config";

/// Writes `model` to `path` (a `.safetensors` file, or a directory for the sharded layout).
/// `metadata` is added to the file's `__metadata__` (for example the training stage).
template <class T>
void save_gpt(const gpt<T>& model, const std::filesystem::path& path, std::map<std::string, std::string> metadata = {},
              bool overwrite = false) {
    safetensors_writer_options o;
    o.metadata = std::move(metadata);
    o.metadata[gpt_config_key] = model.config().to_json().dump();
    o.overwrite = overwrite;
    safetensors_writer w(path, std::move(o));
    std::vector<tensor_info> plan;
    for (const auto& s : model.layout()) plan.push_back(tensor_info{s.name, dtype_of_v<T>, s.dims});
    w.begin(plan);
    for (const auto& info : plan) {
        const auto src = model.find(info.name)->bytes;
        auto dst = w.acquire(info);
        std::memcpy(dst.data(), src.data(), src.size());
        w.commit(info);
    }
    w.finish();
}

/// Copies the parameters of `store` into `model`, converting f32/f64/bf16/f16 to T. The store
/// must hold exactly the model's tensors with the model's shapes; otherwise throws naming the
/// store (`label_of`) and the first offending tensor.
template <class T, weight_store S> void load_parameters(gpt<T>& model, const S& store) {
    const std::string who = label_of(store, "checkpoint");
    for (std::string_view name : store.tensor_names()) {
        if (!model.find(name))
            throw error(who + ": tensor '" + std::string(name) + "' is not a parameter of this model (" +
                        std::to_string(model.config().layers) + " layers, width " + std::to_string(model.config().width) + ")");
    }
    for (const auto& s : model.layout()) {
        const auto v = store.find(s.name);
        if (!v) throw error(who + ": missing tensor '" + s.name + "'");
        if (!(v->dims == s.dims))
            throw error(who + ": tensor '" + s.name + "' has shape " + v->dims.to_string() + ", the model needs " + s.dims.to_string());
        T* dst = model.params().data() + s.offset;
        switch (v->type) {
        case dtype::f64:
            for (std::size_t i = 0; i < s.numel; ++i) {
                double x;
                std::memcpy(&x, v->bytes.data() + 8 * i, 8);
                dst[i] = static_cast<T>(x);
            }
            break;
        case dtype::f32:
        case dtype::bf16:
        case dtype::f16:
            for (std::size_t i = 0; i < s.numel; ++i) dst[i] = static_cast<T>(load_as_f32(v->type, v->bytes.data(), i));
            break;
        default:
            throw error(who + ": tensor '" + s.name + "' is " + std::string(name_of(v->type)) + "; parameters must be floating point");
        }
    }
}

/// Reads a checkpoint written by save_gpt (or any store with the same names and a config).
template <class T>
[[nodiscard]] gpt<T> load_gpt(const std::filesystem::path& path,
                              skillvec::detail::thread_pool* pool = &skillvec::detail::default_pool()) {
    const auto store = safetensors_store::open(path);
    const auto& meta = store.metadata();
    const auto it = meta.find(gpt_config_key);
    if (it == meta.end())
        throw error(path.string() + ": no '" + std::string(gpt_config_key) +
                    "' in __metadata__ (not written by skillvec::nn::save_gpt; build the model and call load_parameters)");
    gpt_config cfg;
    try {
        cfg = gpt_config::from_json(nlohmann::json::parse(it->second));
    } catch (const std::exception& e) {
        throw error(path.string() + ": bad '" + std::string(gpt_config_key) + "': " + e.what());
    }
    gpt<T> model(cfg, 0, pool);
    load_parameters(model, store);
    return model;
}

} // namespace skillvec::nn

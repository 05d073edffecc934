#pragma once
/// \file
/// A minimal GPT-style decoder with a hand-written forward and backward pass.
///
///   tokens [B, T] -> embed.tokens[tok] + embed.positions[t]                       x    [B, T, C]
///   L x { x += attn.proj(causal_attention(attn.qkv(ln1(x))))                   (pre-LayerNorm)
///         x += mlp.proj(gelu_tanh(mlp.fc(ln2(x)))) }
///   logits = ln_f(x) embed.tokens^T                                (tied output)  logits [B, T, V]
///
/// The parameters are named slices of one flat buffer, in a fixed order:
///
///   embed.tokens.weight [V, C]      embed.positions.weight [context, C]
///   layers.{i}.ln1.weight/bias [C]          layers.{i}.attn.qkv.weight [3C, C], .bias [3C]
///   layers.{i}.attn.proj.weight [C, C], .bias [C]    layers.{i}.ln2.weight/bias [C]
///   layers.{i}.mlp.fc.weight [4C, C], .bias [4C]     layers.{i}.mlp.proj.weight [C, 4C], .bias [C]
///   ln_f.weight/bias [C]
///
/// So a model is at once a `mutable_weight_store` (deltas, skill vectors, cosines and checkpoints
/// work on it directly, with no copy), a flat vector for optimizers, and a safetensors checkpoint.
/// The gradients have the same layout in a second buffer.
///
/// The scalar type is a template parameter: `gpt<double>` runs the same code for finite-difference
/// gradient checks. Results do not depend on the number of threads (see detail/layers.hpp).

#include <skillvec/core/dtype.hpp>
#include <skillvec/core/error.hpp>
#include <skillvec/core/shape.hpp>
#include <skillvec/core/store.hpp>
#include <skillvec/core/tensor_view.hpp>
#include <skillvec/detail/thread_pool.hpp>
#include <skillvec/nn/detail/gemm.hpp>
#include <skillvec/nn/detail/layers.hpp>
#include <skillvec/nn/rng.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace skillvec::nn {

/// Hyper-parameters of the decoder. The defaults are the ~0.4M-parameter model of the PaST demo.
struct gpt_config {
    std::size_t vocab = 512;   ///< V: token ids are in [0, V)
    std::size_t context = 64;  ///< the longest sequence (positions)
    std::size_t width = 96;    ///< C: the residual stream
    std::size_t layers = 3;    ///< L
    std::size_t heads = 4;     ///< C must be a multiple of heads
    std::size_t mlp_ratio = 4; ///< the MLP's hidden width is mlp_ratio * C
    double init_std = 0.02;    ///< N(0, init_std) for matrices; residual projections get init_std / sqrt(2 L)

    [[nodiscard]] std::size_t head_size() const { return width / heads; }
    [[nodiscard]] std::size_t hidden() const { return mlp_ratio * width; }

    /// Throws `skillvec::error` naming the first bad field.
    void validate() const {
        auto bad = [](const std::string& what) { throw error("gpt_config: " + what); };
        if (vocab == 0) bad("vocab must be > 0");
        if (vocab > std::size_t{1} << 31) bad("vocab must fit int32 token ids");
        if (context == 0) bad("context must be > 0");
        if (width == 0) bad("width must be > 0");
        if (layers == 0) bad("layers must be > 0");
        if (heads == 0 || width % heads != 0)
            bad("width (" + std::to_string(width) + ") must be a positive multiple of heads (" + std::to_string(heads) + ")");
        if (mlp_ratio == 0) bad("mlp_ratio must be > 0");
        if (!(init_std > 0) || !std::isfinite(init_std)) bad("init_std must be finite and > 0");
    }

    friend bool operator==(const gpt_config&, const gpt_config&) = default;

    [[nodiscard]] nlohmann::json to_json() const {
        return {{"vocab", vocab}, {"context", context}, {"width", width},       {"layers", layers},
                {"heads", heads}, {"mlp_ratio", mlp_ratio}, {"init_std", init_std}};
    }
    [[nodiscard]] static gpt_config from_json(const nlohmann::json& j) {
        gpt_config c;
        try {
            c.vocab = j.at("vocab").get<std::size_t>();
            c.context = j.at("context").get<std::size_t>();
            c.width = j.at("width").get<std::size_t>();
            c.layers = j.at("layers").get<std::size_t>();
            c.heads = j.at("heads").get<std::size_t>();
            c.mlp_ratio = j.value("mlp_ratio", std::size_t{4});
            c.init_std = j.value("init_std", 0.02);
        } catch (const nlohmann::json::exception& e) {
            throw error(std::string("gpt_config: ") + e.what());
        }
        c.validate();
        return c;
    }
};

/// One parameter tensor: a named slice [offset, offset + numel) of the flat buffer.
struct param_slice {
    std::string name;
    skillvec::shape dims;
    std::size_t offset = 0;
    std::size_t numel = 0;
    bool matrix = false; ///< a 2-D weight (the usual weight-decay group); biases and norms are not
};

/// The parameter layout of a config, in buffer order.
[[nodiscard]] inline std::vector<param_slice> gpt_layout(const gpt_config& c) {
    c.validate();
    std::vector<param_slice> out;
    std::size_t off = 0;
    auto add = [&](std::string name, std::vector<std::uint64_t> dims) {
        param_slice s;
        s.name = std::move(name);
        s.matrix = dims.size() == 2;
        s.dims = skillvec::shape(std::move(dims));
        s.numel = static_cast<std::size_t>(s.dims.numel());
        s.offset = off;
        off += s.numel;
        out.push_back(std::move(s));
    };
    const std::uint64_t V = c.vocab, T = c.context, C = c.width, H = c.hidden();
    add("embed.tokens.weight", {V, C});
    add("embed.positions.weight", {T, C});
    for (std::size_t l = 0; l < c.layers; ++l) {
        const std::string p = "layers." + std::to_string(l) + ".";
        add(p + "ln1.weight", {C});
        add(p + "ln1.bias", {C});
        add(p + "attn.qkv.weight", {3 * C, C});
        add(p + "attn.qkv.bias", {3 * C});
        add(p + "attn.proj.weight", {C, C});
        add(p + "attn.proj.bias", {C});
        add(p + "ln2.weight", {C});
        add(p + "ln2.bias", {C});
        add(p + "mlp.fc.weight", {H, C});
        add(p + "mlp.fc.bias", {H});
        add(p + "mlp.proj.weight", {C, H});
        add(p + "mlp.proj.bias", {C});
    }
    add("ln_f.weight", {C});
    add("ln_f.bias", {C});
    return out;
}

/// The decoder: parameters, gradients and the activations of the last forward pass.
///
/// Not thread-safe: one forward/backward at a time per model. Copying a model copies its
/// parameters (and gradients), which is how a frozen reference policy is made.
template <class T> class gpt {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "gpt<T>: T is float or double");

public:
    using value_type = T;

    /// A model with parameters initialized from `seed` (deterministically, on any platform).
    explicit gpt(gpt_config config, std::uint64_t seed = 0, skillvec::detail::thread_pool* pool = &skillvec::detail::default_pool())
        : cfg_(config), layout_(gpt_layout(cfg_)), pool_(pool) {
        std::size_t n = 0;
        for (const auto& s : layout_) {
            index_.emplace(s.name, names_.size());
            names_.push_back(s.name);
            n = s.offset + s.numel;
        }
        params_.assign(n, T(0));
        grads_.assign(n, T(0));
        init(seed);
        resolve();
    }

    gpt(const gpt& o) : cfg_(o.cfg_), layout_(o.layout_), names_(o.names_), index_(o.index_), params_(o.params_),
                        grads_(o.grads_), pool_(o.pool_), label_(o.label_) { resolve(); }
    gpt& operator=(const gpt& o) {
        if (this != &o) {
            gpt tmp(o);
            *this = std::move(tmp);
        }
        return *this;
    }
    gpt(gpt&&) noexcept = default;
    gpt& operator=(gpt&&) noexcept = default;

    /// Re-draws every parameter from `seed`: matrices and embeddings N(0, init_std) (residual
    /// projections N(0, init_std / sqrt(2 L)), as GPT-2), biases 0, LayerNorm weights 1.
    void init(std::uint64_t seed) {
        rng g(derive_seed(seed, 0x696e6974 /* "init" */));
        const double resid_std = cfg_.init_std / std::sqrt(2.0 * static_cast<double>(cfg_.layers));
        for (const auto& s : layout_) {
            T* p = params_.data() + s.offset;
            const bool norm = s.name.find(".ln") != std::string::npos || s.name.rfind("ln_", 0) == 0;
            const bool bias = s.name.ends_with(".bias");
            if (bias) {
                std::fill(p, p + s.numel, T(0));
            } else if (norm) {
                std::fill(p, p + s.numel, T(1));
            } else {
                const bool resid = s.name.ends_with("attn.proj.weight") || s.name.ends_with("mlp.proj.weight");
                const double sd = resid ? resid_std : cfg_.init_std;
                for (std::size_t i = 0; i < s.numel; ++i) p[i] = static_cast<T>(sd * g.normal());
            }
        }
    }

    [[nodiscard]] const gpt_config& config() const noexcept { return cfg_; }
    [[nodiscard]] const std::vector<param_slice>& layout() const noexcept { return layout_; }
    [[nodiscard]] std::size_t num_params() const noexcept { return params_.size(); }

    /// The flat parameter and gradient buffers (layout() gives the slices).
    [[nodiscard]] std::span<T> params() noexcept { return params_; }
    [[nodiscard]] std::span<const T> params() const noexcept { return params_; }
    [[nodiscard]] std::span<T> grads() noexcept { return grads_; }
    [[nodiscard]] std::span<const T> grads() const noexcept { return grads_; }
    void zero_grad() noexcept { std::fill(grads_.begin(), grads_.end(), T(0)); }

    /// The slice called `name`; throws if there is none.
    [[nodiscard]] const param_slice& slice(std::string_view name) const {
        auto it = index_.find(std::string(name));
        if (it == index_.end()) throw error("gpt: no parameter named '" + std::string(name) + "'");
        return layout_[it->second];
    }
    [[nodiscard]] std::span<T> param(std::string_view name) {
        const auto& s = slice(name);
        return {params_.data() + s.offset, s.numel};
    }
    [[nodiscard]] std::span<T> grad(std::string_view name) {
        const auto& s = slice(name);
        return {grads_.data() + s.offset, s.numel};
    }

    // --- weight_store ----------------------------------------------------------------------
    [[nodiscard]] const std::vector<std::string>& tensor_names() const noexcept { return names_; }
    [[nodiscard]] std::optional<tensor_view> find(std::string_view name) const {
        auto it = index_.find(std::string(name));
        if (it == index_.end()) return std::nullopt;
        const auto& s = layout_[it->second];
        return tensor_view{dtype_of_v<T>, s.dims, std::as_bytes(std::span<const T>(params_.data() + s.offset, s.numel))};
    }
    [[nodiscard]] std::optional<mutable_tensor_view> find_mutable(std::string_view name) {
        auto it = index_.find(std::string(name));
        if (it == index_.end()) return std::nullopt;
        const auto& s = layout_[it->second];
        return mutable_tensor_view{dtype_of_v<T>, s.dims,
                                   std::as_writable_bytes(std::span<T>(params_.data() + s.offset, s.numel))};
    }
    [[nodiscard]] std::string label() const { return label_; }
    void set_label(std::string l) { label_ = std::move(l); }

    /// The thread pool used for the passes (null: single-threaded).
    void set_pool(skillvec::detail::thread_pool* pool) noexcept { pool_ = pool; }

    // --- forward / backward ----------------------------------------------------------------

    /// Runs the model on `tokens` ([B, Tn] row-major, 1 <= Tn <= context, ids in [0, V)) and
    /// returns the logits [B, Tn, V], valid until the next forward. Activations are kept for
    /// backward(). Throws on a bad shape or token id (naming the position).
    std::span<const T> forward(std::span<const std::int32_t> tokens, std::size_t B, std::size_t Tn) {
        check_tokens(tokens, B, Tn);
        reserve(B, Tn);
        B_ = B;
        T_ = Tn;
        const std::size_t C = cfg_.width, V = cfg_.vocab, H = cfg_.hidden(), NH = cfg_.heads, hs = cfg_.head_size();
        const std::size_t BT = B * Tn;
        thread_pool_t* pool = pool_;
        tokens_.assign(tokens.begin(), tokens.end());

        // x0 = wte[tok] + wpe[t]
        T* x = act_.residual.data();
        detail::parallel_rows(pool, BT, 256, [&](std::size_t r0, std::size_t r1) {
            for (std::size_t r = r0; r < r1; ++r) {
                const T* te = w_.wte + static_cast<std::size_t>(tokens_[r]) * C;
                const T* pe = w_.wpe + (r % Tn) * C;
                for (std::size_t i = 0; i < C; ++i) x[r * C + i] = te[i] + pe[i];
            }
        });
        for (std::size_t l = 0; l < cfg_.layers; ++l) {
            const layer_w& lw = w_.layer[l];
            layer_act a = act_.layer(l, BT, C, H, B * NH * Tn * Tn);
            T* xin = act_.residual.data() + l * 2 * BT * C; // layer input
            T* xmid = xin + BT * C;                          // after attention
            T* xout = xmid + BT * C;                         // layer output
            detail::layernorm_forward(pool, a.ln1, a.ln1_mean, a.ln1_rstd, xin, lw.ln1_w, lw.ln1_b, BT, C, ln_eps);
            detail::linear_forward(pool, a.qkv, a.ln1, lw.qkv_w, lw.qkv_b, BT, C, 3 * C);
            detail::parallel_rows(pool, B * NH, 1, [&](std::size_t i0, std::size_t i1) {
                for (std::size_t i = i0; i < i1; ++i) {
                    const std::size_t b = i / NH, h = i % NH;
                    const T* q = a.qkv + b * Tn * 3 * C + h * hs;
                    detail::attention_forward(a.atty + b * Tn * C + h * hs, C, a.att + i * Tn * Tn, q, q + C, q + 2 * C,
                                              3 * C, Tn, hs);
                }
            });
            detail::linear_forward(pool, xmid, a.atty, lw.proj_w, lw.proj_b, BT, C, C);
            add_inplace(xmid, xin, BT * C);
            detail::layernorm_forward(pool, a.ln2, a.ln2_mean, a.ln2_rstd, xmid, lw.ln2_w, lw.ln2_b, BT, C, ln_eps);
            detail::linear_forward(pool, a.fch, a.ln2, lw.fc_w, lw.fc_b, BT, C, H);
            detail::gelu_forward(pool, a.fcg, a.fch, BT * H);
            detail::linear_forward(pool, xout, a.fcg, lw.mproj_w, lw.mproj_b, BT, H, C);
            add_inplace(xout, xmid, BT * C);
        }
        const T* xL = act_.residual.data() + cfg_.layers * 2 * BT * C;
        detail::layernorm_forward(pool, act_.lnf.data(), act_.lnf_mean.data(), act_.lnf_rstd.data(), xL, w_.lnf_w, w_.lnf_b,
                                  BT, C, ln_eps);
        detail::linear_forward<T>(pool, act_.logits.data(), act_.lnf.data(), w_.wte, nullptr, BT, C, V);
        have_forward_ = true;
        return {act_.logits.data(), BT * V};
    }

    /// The logits of the last forward, [B, Tn, V].
    [[nodiscard]] std::span<const T> logits() const noexcept { return {act_.logits.data(), B_ * T_ * cfg_.vocab}; }

    /// A buffer [B, Tn, V] for d(loss)/d(logits) of the last forward; fill it, then call backward().
    [[nodiscard]] std::span<T> dlogits() noexcept { return {act_.dlogits.data(), B_ * T_ * cfg_.vocab}; }

    /// Accumulates d(loss)/d(parameters) into grads() from dlogits(), for the last forward.
    void backward() {
        if (!have_forward_) throw error("gpt::backward: no forward pass to differentiate");
        const std::size_t B = B_, Tn = T_, C = cfg_.width, V = cfg_.vocab, H = cfg_.hidden(), NH = cfg_.heads,
                          hs = cfg_.head_size(), BT = B * Tn;
        thread_pool_t* pool = pool_;
        T* dx = act_.dres.data(); // d(residual stream) [BT, C]
        T* dtmp = act_.dtmp.data(); // [BT, max(C, H)]
        T* dqkv = act_.dqkv.data(); // [BT, 3C]

        const T* xL = act_.residual.data() + cfg_.layers * 2 * BT * C;
        // logits = lnf wte^T:  dlnf = dlogits wte;  dwte += dlogits^T lnf
        detail::linear_backward<T>(pool, dtmp, g_.wte, nullptr, act_.dlogits.data(), act_.lnf.data(), w_.wte, BT, C, V);
        std::fill(dx, dx + BT * C, T(0));
        detail::layernorm_backward(pool, dx, g_.lnf_w, g_.lnf_b, dtmp, xL, w_.lnf_w, act_.lnf_mean.data(),
                                   act_.lnf_rstd.data(), BT, C);
        for (std::size_t l = cfg_.layers; l-- > 0;) {
            const layer_w& lw = w_.layer[l];
            layer_w& lg = g_.layer[l];
            layer_act a = act_.layer(l, BT, C, H, B * NH * Tn * Tn);
            const T* xin = act_.residual.data() + l * 2 * BT * C;
            const T* xmid = xin + BT * C;
            // xout = xmid + mproj(gelu(fc(ln2(xmid)))): dx flows to xmid unchanged, plus the MLP branch
            T* dh = act_.dhid.data(); // [BT, H]
            detail::linear_backward(pool, dh, lg.mproj_w, lg.mproj_b, dx, a.fcg, lw.mproj_w, BT, H, C);
            detail::gelu_backward(pool, dh, dh, a.fch, BT * H);
            detail::linear_backward(pool, dtmp, lg.fc_w, lg.fc_b, dh, a.ln2, lw.fc_w, BT, C, H);
            detail::layernorm_backward(pool, dx, lg.ln2_w, lg.ln2_b, dtmp, xmid, lw.ln2_w, a.ln2_mean, a.ln2_rstd, BT, C);
            // xmid = xin + proj(attention(qkv(ln1(xin))))
            detail::linear_backward(pool, dtmp, lg.proj_w, lg.proj_b, dx, a.atty, lw.proj_w, BT, C, C);
            detail::parallel_rows(pool, B * NH, 1, [&](std::size_t i0, std::size_t i1) {
                for (std::size_t i = i0; i < i1; ++i) {
                    const std::size_t b = i / NH, h = i % NH;
                    const std::size_t off = b * Tn * 3 * C + h * hs;
                    const T* q = a.qkv + off;
                    detail::attention_backward(dqkv + off, dqkv + off + C, dqkv + off + 2 * C, act_.scratch.data() + i * Tn * Tn,
                                               dtmp + b * Tn * C + h * hs, C, a.att + i * Tn * Tn, q, q + C, q + 2 * C,
                                               3 * C, Tn, hs);
                }
            });
            detail::linear_backward(pool, dtmp, lg.qkv_w, lg.qkv_b, dqkv, a.ln1, lw.qkv_w, BT, C, 3 * C);
            detail::layernorm_backward(pool, dx, lg.ln1_w, lg.ln1_b, dtmp, xin, lw.ln1_w, a.ln1_mean, a.ln1_rstd, BT, C);
        }
        // x0 = wte[tok] + wpe[t]: scatter-add in row order (deterministic)
        for (std::size_t r = 0; r < BT; ++r) {
            T* gte = g_.wte + static_cast<std::size_t>(tokens_[r]) * C;
            T* gpe = g_.wpe + (r % Tn) * C;
            for (std::size_t i = 0; i < C; ++i) {
                gte[i] += dx[r * C + i];
                gpe[i] += dx[r * C + i];
            }
        }
    }

    /// LayerNorm's epsilon (as PyTorch's default).
    static constexpr T ln_eps = static_cast<T>(1e-5);

private:
    using thread_pool_t = skillvec::detail::thread_pool;

    struct layer_w {
        T *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc_w, *fc_b, *mproj_w, *mproj_b;
    };
    struct model_w {
        T *wte = nullptr, *wpe = nullptr, *lnf_w = nullptr, *lnf_b = nullptr;
        std::vector<layer_w> layer;
    };
    struct layer_act {
        T *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *ln2, *ln2_mean, *ln2_rstd, *fch, *fcg;
    };
    struct activations {
        std::vector<T> residual; // [(2L + 1), BT, C]: layer inputs, after-attention, ..., final
        std::vector<T> per_layer; // L x the layer_act buffers
        std::vector<T> lnf, lnf_mean, lnf_rstd, logits, dlogits;
        std::vector<T> dres, dtmp, dqkv, dhid, scratch;

        [[nodiscard]] static std::size_t layer_size(std::size_t BT, std::size_t C, std::size_t H, std::size_t att) {
            return BT * C + 2 * BT + BT * 3 * C + att + BT * C + BT * C + 2 * BT + 2 * BT * H;
        }
        layer_act layer(std::size_t l, std::size_t BT, std::size_t C, std::size_t H, std::size_t att) {
            T* p = per_layer.data() + l * layer_size(BT, C, H, att);
            layer_act a{};
            a.ln1 = p, p += BT * C;
            a.ln1_mean = p, p += BT;
            a.ln1_rstd = p, p += BT;
            a.qkv = p, p += BT * 3 * C;
            a.att = p, p += att;
            a.atty = p, p += BT * C;
            a.ln2 = p, p += BT * C;
            a.ln2_mean = p, p += BT;
            a.ln2_rstd = p, p += BT;
            a.fch = p, p += BT * H;
            a.fcg = p;
            return a;
        }
    };

    void resolve() {
        auto p = [&](std::string_view n) { return params_.data() + slice(n).offset; };
        auto g = [&](std::string_view n) { return grads_.data() + slice(n).offset; };
        auto fill = [&](model_w& m, auto&& at) {
            m.wte = at("embed.tokens.weight");
            m.wpe = at("embed.positions.weight");
            m.lnf_w = at("ln_f.weight");
            m.lnf_b = at("ln_f.bias");
            m.layer.resize(cfg_.layers);
            for (std::size_t l = 0; l < cfg_.layers; ++l) {
                const std::string q = "layers." + std::to_string(l) + ".";
                m.layer[l] = {at(q + "ln1.weight"),      at(q + "ln1.bias"),     at(q + "attn.qkv.weight"),
                              at(q + "attn.qkv.bias"),   at(q + "attn.proj.weight"), at(q + "attn.proj.bias"),
                              at(q + "ln2.weight"),      at(q + "ln2.bias"),     at(q + "mlp.fc.weight"),
                              at(q + "mlp.fc.bias"),     at(q + "mlp.proj.weight"), at(q + "mlp.proj.bias")};
            }
        };
        fill(w_, p);
        fill(g_, g);
        have_forward_ = false;
        B_ = T_ = 0;
    }

    void check_tokens(std::span<const std::int32_t> tokens, std::size_t B, std::size_t Tn) const {
        if (Tn == 0 || Tn > cfg_.context)
            throw error("gpt::forward: sequence length " + std::to_string(Tn) + " is outside [1, context = " +
                        std::to_string(cfg_.context) + "]");
        if (B == 0) throw error("gpt::forward: empty batch");
        if (tokens.size() != B * Tn)
            throw error("gpt::forward: " + std::to_string(tokens.size()) + " tokens for a [" + std::to_string(B) + ", " +
                        std::to_string(Tn) + "] batch");
        for (std::size_t i = 0; i < tokens.size(); ++i)
            if (tokens[i] < 0 || static_cast<std::size_t>(tokens[i]) >= cfg_.vocab)
                throw error("gpt::forward: token id " + std::to_string(tokens[i]) + " at [" + std::to_string(i / Tn) + ", " +
                            std::to_string(i % Tn) + "] is outside [0, vocab = " + std::to_string(cfg_.vocab) + ")");
    }

    /// Sizes the activation buffers for [B, Tn] (they only grow).
    void reserve(std::size_t B, std::size_t Tn) {
        const std::size_t C = cfg_.width, V = cfg_.vocab, H = cfg_.hidden(), L = cfg_.layers, BT = B * Tn;
        const std::size_t att = B * cfg_.heads * Tn * Tn;
        auto grow = [](std::vector<T>& v, std::size_t n) {
            if (v.size() < n) v.resize(n);
        };
        grow(act_.residual, (2 * L + 1) * BT * C);
        grow(act_.per_layer, L * activations::layer_size(BT, C, H, att));
        grow(act_.lnf, BT * C);
        grow(act_.lnf_mean, BT);
        grow(act_.lnf_rstd, BT);
        grow(act_.logits, BT * V);
        grow(act_.dlogits, BT * V);
        grow(act_.dres, BT * C);
        grow(act_.dtmp, BT * C);
        grow(act_.dqkv, BT * 3 * C);
        grow(act_.dhid, BT * H);
        grow(act_.scratch, att);
    }

    static void add_inplace(T* y, const T* x, std::size_t n) noexcept {
        for (std::size_t i = 0; i < n; ++i) y[i] += x[i];
    }

    gpt_config cfg_;
    std::vector<param_slice> layout_;
    std::vector<std::string> names_;
    std::unordered_map<std::string, std::size_t> index_;
    std::vector<T> params_, grads_;
    thread_pool_t* pool_ = nullptr;
    std::string label_ = "gpt";
    model_w w_, g_;
    activations act_;
    std::vector<std::int32_t> tokens_;
    std::size_t B_ = 0, T_ = 0;
    bool have_forward_ = false;
};

static_assert(mutable_weight_store<gpt<float>>);

} // namespace skillvec::nn

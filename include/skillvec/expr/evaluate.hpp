#pragma once
/// \file
/// `evaluate`: the only place where work happens.
///
///   evaluate(point_or_vector_expr, sink [, backend] [, options]) -> evaluation_report
///   evaluate(reduction [, backend] [, options])                 -> reduction_result<stats>
///   materialize(expr [, backend] [, options])                    -> memory_store
///   prepare(expr [, backend] [, options]).run(sink) / .run()     -> bind once, run many times
///
/// Steps: bind (check every store against the reference, report every problem at once), hand the
/// sink the whole plan, then stream tensor by tensor: one fused pass over the leaves per tensor,
/// the result written once into the sink's buffer, consumed input tensors released.

#include <skillvec/analysis/layers.hpp>
#include <skillvec/backend/cpu/kernels.hpp>
#include <skillvec/core/memory_store.hpp>
#include <skillvec/core/sink.hpp>
#include <skillvec/expr/bind.hpp>
#include <skillvec/expr/context.hpp>
#include <skillvec/expr/reduce.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace skillvec {

/// What an evaluation did.
struct evaluation_report {
    std::vector<std::string> computed;       ///< float tensors evaluated by the expression
    std::vector<std::string> passed_through; ///< non-float tensors copied unchanged from the point operand
    std::vector<std::string> skipped;        ///< non-float tensors left out of a vector result
    std::vector<std::string> kept;           ///< float tensors excluded by eval_options::keep (copied, or zeros)
    std::uint64_t elements = 0;              ///< elements computed
    std::uint64_t bytes_read = 0;            ///< input bytes of computed and passed-through tensors
    std::uint64_t bytes_written = 0;         ///< bytes handed to the sink
    double seconds = 0;
};

/// Per-tensor, per-layer and global results of a reduction.
template <class Stats> struct reduction_result {
    struct tensor_entry {
        std::string name;
        int layer; ///< from the name (layer_of), or no_layer
        Stats stats;
    };
    struct layer_entry {
        int layer; ///< no_layer groups embeddings, final norms and heads
        std::size_t tensors = 0;
        Stats stats;
    };
    std::vector<tensor_entry> tensors;  ///< in the reference store's order
    std::vector<layer_entry> layers;    ///< ascending layer index, no_layer last
    Stats global;
    std::vector<std::string> skipped;   ///< non-float tensors, not reduced

    [[nodiscard]] double value() const { return global.value(); }

    [[nodiscard]] const tensor_entry& tensor(std::string_view name) const {
        for (const auto& t : tensors)
            if (t.name == name) return t;
        throw error("reduction_result: no tensor '" + std::string(name) + "'");
    }
    [[nodiscard]] const layer_entry& layer(int index) const {
        for (const auto& l : layers)
            if (l.layer == index) return l;
        throw error("reduction_result: no layer " + std::to_string(index));
    }
};

namespace detail {

/// Assembles a reduction's result from per-tensor statistics, in plan order: the per-layer sums
/// (ascending layer, no_layer last) and the global one. Shared by every backend, so they agree on
/// which tensors are reduced and how results are grouped.
template <class Stats> class reduction_builder {
public:
    /// Whether a plan entry is reduced: non-float and excluded (eval_options::keep) tensors are not.
    [[nodiscard]] static bool reduces(const plan_entry& e) noexcept { return e.action == tensor_action::compute; }

    void skip(const std::string& name) { res_.skipped.push_back(name); }

    void add(const std::string& name, const Stats& s) {
        const int layer = layer_of(name);
        res_.tensors.push_back({name, layer, s});
        auto& le = layers_.try_emplace(layer, typename reduction_result<Stats>::layer_entry{layer, 0, {}}).first->second;
        le.stats += s;
        ++le.tensors;
        res_.global += s;
    }

    [[nodiscard]] reduction_result<Stats> finish() && {
        for (auto& [idx, le] : layers_)
            if (idx != no_layer) res_.layers.push_back(le);
        if (auto it = layers_.find(no_layer); it != layers_.end()) res_.layers.push_back(it->second);
        return std::move(res_);
    }

private:
    reduction_result<Stats> res_;
    std::map<int, typename reduction_result<Stats>::layer_entry> layers_;
};

inline bool overlaps(std::span<const std::byte> a, std::span<const std::byte> b) noexcept {
    if (a.empty() || b.empty()) return false;
    const auto a0 = reinterpret_cast<std::uintptr_t>(a.data()), b0 = reinterpret_cast<std::uintptr_t>(b.data());
    return a0 < b0 + b.size() && b0 < a0 + a.size();
}

template <class K> void sink_begin(K& sink, const plan& p) {
    if constexpr (requires(std::span<const tensor_info> s) { sink.begin(s); }) {
        std::vector<tensor_info> infos;
        for (const auto& e : p.entries)
            if (e.action != tensor_action::skip) infos.push_back(e.out);
        sink.begin(std::span<const tensor_info>(infos));
    }
}

template <class K> void sink_finish(K& sink) {
    if constexpr (requires { sink.finish(); }) sink.finish();
}

template <std::size_t L> struct gathered {
    std::array<dtype, L> types;
    std::array<const std::byte*, L> data;
};

template <std::size_t L> gathered<L> gather(const plan_entry& e) {
    gathered<L> g;
    for (std::size_t k = 0; k < L; ++k) {
        g.types[k] = e.inputs[k].type;
        g.data[k] = e.inputs[k].bytes.data();
    }
    return g;
}

/// The first leaf, unchanged: converts the point operand of a tensor that eval_options::keep excludes.
struct first_leaf : expression_base {
    using space = point_space;
    static constexpr std::size_t arity = 1;
    template <std::size_t I, class T, std::size_t N> T eval(const std::array<T, N>& x, std::uint64_t = 0) const { return x[I]; }
};

/// Layers in a plan: the largest layer index of its tensors, plus one.
inline int count_layers(const plan& p) {
    int top = no_layer;
    for (const auto& e : p.entries) top = std::max(top, layer_of(e.out.name));
    return top + 1;
}

} // namespace detail

/// An expression bound to its stores, ready to run: `prepare` does the binding (and its strict
/// checks) once, `run` streams the data. Use it to evaluate the same expression many times (a
/// training loop, a benchmark); `evaluate` is `prepare(...).run(...)`.
///
/// The plan holds views of the stores' tensors: between `prepare` and `run`, tensors may change
/// value (in place) but must not be added, removed or reallocated.
template <expression E> class prepared_evaluation {
public:
    prepared_evaluation(const E& expr, const cpu_backend& be, const eval_options& opt)
        : expr_(expr), be_(be), plan_(detail::make_plan(detail::collect_leaves(expr_), point_expression<E>, opt)),
          num_layers_(detail::count_layers(plan_)) {}

    /// The tensors `run` will hand the sink (computed and passed through), in order.
    [[nodiscard]] std::vector<tensor_info> outputs() const {
        std::vector<tensor_info> out;
        for (const auto& e : plan_.entries)
            if (e.action != tensor_action::skip) out.push_back(e.out);
        return out;
    }

    /// Evaluates a point or vector expression into a sink, one fused pass per tensor.
    template <class K>
        requires tensor_expression<E> && weight_sink<std::remove_cvref_t<K>>
    evaluation_report run(K&& sink) const {
        const auto t0 = std::chrono::steady_clock::now();
        evaluation_report rep;
        detail::sink_begin(sink, plan_);
        for (std::size_t i = 0; i < plan_.entries.size(); ++i) run_tensor(i, sink, rep);
        detail::sink_finish(sink);
        rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return rep;
    }

    /// Number of tensors in the plan (computed, passed through or skipped), and their names.
    [[nodiscard]] std::size_t tensor_count() const noexcept { return plan_.entries.size(); }
    [[nodiscard]] const std::string& tensor_name(std::size_t i) const { return plan_.entries.at(i).out.name; }

    /// Evaluates tensor `i` of the plan into the sink, adding to `rep`, without the sink's
    /// begin/finish: for interleaving several evaluations tensor by tensor (one skill vector
    /// applied to many targets reads the vector's stores once per tensor, not once per target).
    template <class K>
        requires tensor_expression<E> && weight_sink<std::remove_cvref_t<K>>
    void run_tensor(std::size_t i, K&& sink, evaluation_report& rep) const {
        const auto& e = plan_.entries.at(i);
        if (e.action == tensor_action::skip) {
            rep.skipped.push_back(e.out.name);
            return;
        }
        const auto g = detail::gather<E::arity>(e);
        const E expr = prepared_for(e, g);
        if constexpr (range_sink<std::remove_cvref_t<K>>) run_tensor_in_ranges(expr, e, sink, rep);
        else run_tensor_whole(expr, e, sink, rep);
        rep.bytes_written += e.out.nbytes();
        sink.commit(e.out);
        for (const auto& leaf : plan_.leaves) leaf.release(e.out.name);
    }

    /// Entry `i` of the plan: the output tensor, what is done with it, and its input views.
    [[nodiscard]] const detail::plan_entry& entry(std::size_t i) const { return plan_.entries.at(i); }

    /// The layer count per-tensor parameters see (largest layer index in the plan, plus one).
    [[nodiscard]] int num_layers() const noexcept { return num_layers_; }

    /// Where tensor `i` of the plan sits, as per-tensor parameters see it.
    [[nodiscard]] tensor_site site(std::size_t i) const {
        const auto& name = plan_.entries.at(i).out.name;
        return tensor_site{name, layer_of(name), num_layers_};
    }

private:
    /// A copy of the expression with its per-tensor hooks run for tensor `e`: per-tensor
    /// parameters take their value, merge methods compute their statistics.
    E prepared_for(const detail::plan_entry& e, const detail::gathered<E::arity>& g) const {
        E expr = expr_;
        tensor_context ctx;
        ctx.site = tensor_site{e.out.name, layer_of(e.out.name), num_layers_};
        ctx.numel = e.out.numel();
        ctx.types = std::span<const dtype>(g.types);
        ctx.data = std::span<const std::byte* const>(g.data);
        ctx.threads = be_.threads;
        ctx.simd = be_.simd;
        ctx.release = [this, &e, &g](std::uint64_t first, std::uint64_t count) { release_elements(e.out.name, g, first, count); };
        detail::prepare_node<0>(expr, ctx);
        return expr;
    }

    /// Writes elements [c0, c0 + c) of a tensor excluded by eval_options::keep into `out`: the point
    /// operand's values converted to the output dtype, or zeros in a vector result.
    void keep_range(const detail::plan_entry& e, const detail::gathered<E::arity>& g, std::uint64_t c0, std::uint64_t c,
                    std::byte* out) const {
        const std::size_t out_es = bits_of(e.out.type) / 8;
        if constexpr (!point_expression<E>) {
            std::memset(out, 0, c * out_es);
        } else if (g.types[0] == e.out.type) {
            std::memcpy(out, g.data[0] + c0 * out_es, c * out_es);
        } else {
            const dtype in_t[1] = {g.types[0]};
            const std::byte* in[1] = {g.data[0] + c0 * (bits_of(g.types[0]) / 8)};
            backend::cpu::map_tensor(detail::first_leaf{}, in_t, in, e.out.type, out, c, be_, false);
        }
    }

    /// Pointers to element `c0` of each gathered input.
    static std::array<const std::byte*, E::arity> inputs_at(const detail::gathered<E::arity>& g, std::uint64_t c0) {
        std::array<const std::byte*, E::arity> in;
        for (std::size_t k = 0; k < E::arity; ++k) in[k] = g.data[k] + c0 * (bits_of(g.types[k]) / 8);
        return in;
    }

    /// Releases elements [from, from + count) of tensor `name` in every leaf's store.
    void release_elements(const std::string& name, const detail::gathered<E::arity>& g, std::uint64_t from,
                          std::uint64_t count) const {
        for (std::size_t k = 0; k < plan_.leaves.size(); ++k) {
            const std::uint64_t es = bits_of(g.types[k]) / 8;
            plan_.leaves[k].release_range(name, from * es, count * es);
        }
    }

    /// run_tensor for an ordinary sink: the whole tensor into the buffer the sink gives.
    template <class K> void run_tensor_whole(const E& expr, const detail::plan_entry& e, K& sink, evaluation_report& rep) const {
        const std::uint64_t need = e.out.nbytes();
        std::span<std::byte> out = sink.acquire(e.out);
        if (out.size() != need)
            throw error("sink gave " + std::to_string(out.size()) + " bytes for tensor '" + e.out.name +
                        "', which needs " + std::to_string(need));
        if (e.action == tensor_action::pass_through) {
            const auto src = e.inputs[0].bytes;
            if (need && out.data() != src.data()) std::memmove(out.data(), src.data(), need);
            rep.passed_through.push_back(e.out.name);
            rep.bytes_read += src.size();
        } else if (e.action == tensor_action::keep) {
            const auto g = detail::gather<E::arity>(e);
            if (point_expression<E> && detail::overlaps(e.inputs[0].bytes, out) &&
                (e.inputs[0].bytes.data() != out.data() || e.inputs[0].type != e.out.type))
                throw error("tensor '" + e.out.name + "': the output buffer overlaps the point operand without coinciding with it");
            if (!(point_expression<E> && out.data() == e.inputs[0].bytes.data())) keep_range(e, g, 0, e.out.numel(), out.data());
            rep.kept.push_back(e.out.name);
            if (point_expression<E>) rep.bytes_read += e.inputs[0].bytes.size();
        } else {
            bool in_place = false;
            for (std::size_t k = 0; k < plan_.leaves.size(); ++k) {
                const auto in = e.inputs[k].bytes;
                // In place is fine element by element; a shifted overlap would read clobbered data.
                if (detail::overlaps(in, out) && (in.data() != out.data() || e.inputs[k].type != e.out.type))
                    throw error("tensor '" + e.out.name + "': the output buffer overlaps operand " +
                                detail::operand_name(plan_.leaves, k) + " without coinciding with it");
                in_place = in_place || detail::overlaps(in, out);
                rep.bytes_read += in.size();
            }
            auto g = detail::gather<E::arity>(e);
            const std::uint64_t n = e.out.numel();
            const std::size_t out_es = bits_of(e.out.type) / 8;
            // Chunk by chunk, releasing each consumed input range, so that a store that maps a file
            // holds at most a chunk of each input resident, whatever the tensor's size.
            for (std::uint64_t c0 = 0; c0 < n; c0 += chunk_elements) {
                const std::uint64_t c = std::min<std::uint64_t>(chunk_elements, n - c0);
                const auto in_c = inputs_at(g, c0);
                backend::cpu::map_tensor(expr, g.types.data(), in_c.data(), e.out.type, out.data() + c0 * out_es, c, be_, in_place, c0);
                if (c0 + c < n) release_elements(e.out.name, g, c0, c);
            }
            rep.computed.push_back(e.out.name);
            rep.elements += n;
        }
    }

    /// run_tensor for a range sink: the tensor is computed (or copied) range by range into the
    /// sink's buffers, each handed back while still in cache; inputs are released a
    /// chunk_elements block at a time.
    template <class K> void run_tensor_in_ranges(const E& expr, const detail::plan_entry& e, K& sink, evaluation_report& rep) const {
        const std::uint64_t n = e.out.numel();
        const std::uint64_t out_es = std::max<std::uint64_t>(1, bits_of(e.out.type) / 8);
        // Whole elements per range; for computed tensors a multiple of 64, which keeps the
        // kernels' per-thread pieces cache-line aligned.
        const std::uint64_t per = std::max<std::uint64_t>(64, (range_sink_bytes / out_es) / 64 * 64);
        const bool pass = e.action == tensor_action::pass_through;
        const std::uint64_t total = e.out.nbytes();
        auto take = [&](std::uint64_t off, std::uint64_t count) {
            std::span<std::byte> buf = sink.acquire_range(e.out, off, count);
            if (buf.size() != count)
                throw error("sink gave " + std::to_string(buf.size()) + " bytes for bytes [" + std::to_string(off) + ", " +
                            std::to_string(off + count) + ") of tensor '" + e.out.name + "'");
            for (std::size_t k = 0; k < plan_.leaves.size(); ++k)
                if (detail::overlaps(e.inputs[k].bytes, buf))
                    throw error("tensor '" + e.out.name + "': the sink's buffer overlaps operand " + detail::operand_name(plan_.leaves, k));
            return buf;
        };
        if (pass) { // non-float: bytes as they are (sub-byte dtypes too), in ranges of range_sink_bytes
            const auto src = e.inputs[0].bytes;
            for (std::uint64_t off = 0; off < total; off += range_sink_bytes) {
                const std::uint64_t count = std::min<std::uint64_t>(range_sink_bytes, total - off);
                auto buf = take(off, count);
                std::memcpy(buf.data(), src.data() + off, count);
                sink.commit_range(e.out, off, count);
            }
            rep.passed_through.push_back(e.out.name);
            rep.bytes_read += src.size();
            return;
        }
        const bool keep = e.action == tensor_action::keep;
        if (!keep) for (std::size_t k = 0; k < plan_.leaves.size(); ++k) rep.bytes_read += e.inputs[k].bytes.size();
        else if (point_expression<E>) rep.bytes_read += e.inputs[0].bytes.size();
        const auto g = detail::gather<E::arity>(e);
        for (std::uint64_t c0 = 0; c0 < n; c0 += per) {
            const std::uint64_t c = std::min<std::uint64_t>(per, n - c0);
            const auto in_c = inputs_at(g, c0);
            auto buf = take(c0 * out_es, c * out_es);
            if (keep) keep_range(e, g, c0, c, buf.data());
            else backend::cpu::map_tensor(expr, g.types.data(), in_c.data(), e.out.type, buf.data(), c, be_, false, c0);
            sink.commit_range(e.out, c0 * out_es, c * out_es);
            // Release what has been consumed, a chunk_elements block at a time (fewer madvise calls).
            const std::uint64_t done = c0 + c;
            if (done < n && (done / chunk_elements != c0 / chunk_elements)) {
                const std::uint64_t from = (c0 / chunk_elements) * chunk_elements, upto = (done / chunk_elements) * chunk_elements;
                release_elements(e.out.name, g, from, upto - from);
            }
        }
        if (keep) {
            rep.kept.push_back(e.out.name);
            return;
        }
        rep.computed.push_back(e.out.name);
        rep.elements += n;
    }

public:
    /// Evaluates a reduction in one fused pass over all its leaves.
    [[nodiscard]] auto run() const
        requires reduction_expression<E>
    {
        return run([](const tensor_info&, std::uint64_t) {});
    }

    /// The same, calling `after_tensor(info, bytes_read)` once per tensor, in order (bytes_read is
    /// 0 for a skipped tensor). It may throw to stop the evaluation, for example on Ctrl-C.
    template <class F>
    [[nodiscard]] auto run(F&& after_tensor) const
        requires reduction_expression<E> && std::invocable<F&, const tensor_info&, std::uint64_t>
    {
        detail::reduction_builder<typename E::stats_type> res;
        for (const auto& e : plan_.entries) {
            if (!res.reduces(e)) {
                res.skip(e.out.name);
                after_tensor(e.out, std::uint64_t{0});
                continue;
            }
            std::array<double, E::accumulators> acc{};
            const auto g = detail::gather<E::arity>(e);
            const E expr = prepared_for(e, g);
            const std::uint64_t n = e.out.numel();
            // Chunks are multiples of the reduction block, so the result does not depend on them.
            for (std::uint64_t c0 = 0; c0 < n; c0 += chunk_elements) {
                const std::uint64_t c = std::min<std::uint64_t>(chunk_elements, n - c0);
                const auto in_c = inputs_at(g, c0);
                backend::cpu::reduce_tensor(expr, g.types.data(), in_c.data(), c, acc.data(), be_);
                if (c0 + c < n) release_elements(e.out.name, g, c0, c);
            }
            res.add(e.out.name, expr.finish(acc.data(), n));
            for (const auto& leaf : plan_.leaves) leaf.release(e.out.name);
            std::uint64_t read = 0;
            for (std::size_t k = 0; k < E::arity; ++k) read += n * (bits_of(g.types[k]) / 8);
            after_tensor(e.out, read);
        }
        return std::move(res).finish();
    }

    /// Elements per chunk of a large tensor: inputs are released chunk by chunk. A multiple of the
    /// reduction block, so reductions give the same result whatever the chunking.
    static constexpr std::uint64_t chunk_elements = std::uint64_t{1} << 24;
    static_assert(chunk_elements % backend::cpu::reduce_block == 0);

private:
    E expr_; // a copy: owning leaves keep their stores alive for as long as this object
    cpu_backend be_;
    detail::plan plan_;
    int num_layers_ = 0;
};

/// Binds an expression to its stores (throwing `binding_error` if they disagree) without running it.
template <expression E>
[[nodiscard]] prepared_evaluation<E> prepare(const E& expr, const cpu_backend& be = cpu, const eval_options& opt = {}) {
    return prepared_evaluation<E>(expr, be, opt);
}

/// Evaluates a point or vector expression into a sink, tensor by tensor, in one fused pass per
/// tensor. Throws `binding_error` (before touching any data) if the stores disagree.
template <tensor_expression E, class K>
    requires weight_sink<std::remove_cvref_t<K>>
evaluation_report evaluate(const E& expr, K&& sink, const cpu_backend& be, const eval_options& opt = {}) {
    return prepare(expr, be, opt).run(std::forward<K>(sink));
}

template <tensor_expression E, class K>
    requires weight_sink<std::remove_cvref_t<K>>
evaluation_report evaluate(const E& expr, K&& sink, const eval_options& opt = {}) {
    return evaluate(expr, std::forward<K>(sink), cpu, opt);
}

/// Evaluates a point or vector expression into a new memory_store.
template <tensor_expression E>
[[nodiscard]] memory_store materialize(const E& expr, const cpu_backend& be = cpu, const eval_options& opt = {}) {
    memory_store out;
    evaluate(expr, out, be, opt);
    return out;
}

template <tensor_expression E>
[[nodiscard]] memory_store materialize(const E& expr, const eval_options& opt) {
    return materialize(expr, cpu, opt);
}

/// Evaluates a reduction in one fused pass over all its leaves.
template <reduction_expression R>
[[nodiscard]] reduction_result<typename R::stats_type> evaluate(const R& red, const cpu_backend& be = cpu,
                                                                 const eval_options& opt = {}) {
    return prepare(red, be, opt).run();
}

template <reduction_expression R>
[[nodiscard]] reduction_result<typename R::stats_type> evaluate(const R& red, const eval_options& opt) {
    return evaluate(red, cpu, opt);
}

} // namespace skillvec

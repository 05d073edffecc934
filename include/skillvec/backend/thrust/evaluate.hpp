#pragma once
/// \file
/// `evaluate` on the Thrust backend: the same expressions, bound the same way, run on the device.
///
///   evaluate(point_or_vector_expr, sink, skillvec::gpu [, options]) -> evaluation_report
///   evaluate(reduction, skillvec::gpu [, options])                   -> reduction_result<stats>
///   materialize(expr, skillvec::gpu [, options])                     -> memory_store
///   prepare(expr, skillvec::gpu [, options])                         -> gpu_prepared_evaluation
///
/// Binding is the CPU backend's (detail::make_plan): every missing, extra, shape- and
/// dtype-mismatched tensor in one binding_error, before any work. Then, per tensor:
///  - operands in a `device_store` are read in place; any other operand is copied to a device
///    staging buffer, `gpu_backend::staging_elements` at a time, and its consumed ranges are
///    released (so a mapped checkpoint stays paged out, as on the CPU);
///  - a device sink (`device_store`, `into(device_store&)`) receives the result in device memory;
///    any other sink (memory_store, safetensors_writer, into(memory_store&)) receives it copied
///    back piece by piece (in ranges for a range sink);
///  - non-float tensors of a point result pass through byte for byte, as on the CPU.
/// When everything is on the device a tensor is one kernel, whatever its size.

#include <skillvec/backend/thrust/backend.hpp>
#include <skillvec/backend/thrust/device_store.hpp>
#include <skillvec/backend/thrust/kernels.hpp>
#include <skillvec/expr/evaluate.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace skillvec {

namespace detail {

/// Leaves for binding on the device: a device_store leaf is bound through `find_device`, so its
/// views carry device addresses; `resident[k]` says which views those are.
struct gpu_leaves {
    std::vector<leaf_handle> handles;
    std::vector<bool> resident;
};

template <class E> gpu_leaves collect_gpu_leaves(const E& e) {
    gpu_leaves out;
    e.for_each_leaf([&](const auto& leaf) {
        using S = std::remove_cvref_t<decltype(leaf.store())>;
        const S* store = &leaf.store();
        leaf_handle h;
        h.label = leaf.label();
        h.is_point = std::is_same_v<typename std::remove_cvref_t<decltype(leaf)>::space, point_space>;
        if constexpr (device_resident_store<S>) h.find = [store](std::string_view n) { return store->find_device(n); };
        else h.find = [store](std::string_view n) { return store->find(n); };
        h.release = [store](std::string_view n) { skillvec::release(*store, n); };
        h.release_range = [store](std::string_view n, std::uint64_t off, std::uint64_t count) {
            skillvec::release(*store, n, off, count);
        };
        for (auto&& n : store->tensor_names()) h.names.emplace_back(std::string_view(n));
        out.handles.push_back(std::move(h));
        out.resident.push_back(device_resident_store<S>);
    });
    return out;
}

} // namespace detail

/// An expression bound to its stores for the gpu backend: the interface of
/// `prepared_evaluation` (outputs, run, tensor_count, tensor_name, run_tensor), so code written
/// against one runs on the other. Holds staging buffers, so one object must not run on two
/// threads at once.
template <expression E> class gpu_prepared_evaluation {
    static_assert(!skillvec::detail::scalar_only_v<E>,
                  "merge methods (ties, dare, slerp, ...) run on the CPU backend: evaluate them with skillvec::cpu");

public:
    gpu_prepared_evaluation(const E& expr, const gpu_backend& be, const eval_options& opt) : expr_(expr), be_(be) {
        auto leaves = detail::collect_gpu_leaves(expr_);
        resident_ = std::move(leaves.resident);
        plan_ = detail::make_plan(std::move(leaves.handles), point_expression<E>, opt);
        num_layers_ = detail::count_layers(plan_);
        if (be_.staging_elements == 0) throw error("gpu_backend: staging_elements must be positive");
    }

    /// The tensors `run` hands the sink (computed and passed through), in order.
    [[nodiscard]] std::vector<tensor_info> outputs() const {
        std::vector<tensor_info> out;
        for (const auto& e : plan_.entries)
            if (e.action != tensor_action::skip) out.push_back(e.out);
        return out;
    }
    [[nodiscard]] std::size_t tensor_count() const noexcept { return plan_.entries.size(); }
    [[nodiscard]] const std::string& tensor_name(std::size_t i) const { return plan_.entries.at(i).out.name; }

    /// Evaluates a point or vector expression into a host sink or a device sink.
    template <class K>
        requires tensor_expression<E> && (weight_sink<std::remove_cvref_t<K>> || device_sink<std::remove_cvref_t<K>>)
    evaluation_report run(K&& sink) const {
        const auto t0 = std::chrono::steady_clock::now();
        evaluation_report rep;
        detail::sink_begin(sink, plan_);
        for (std::size_t i = 0; i < plan_.entries.size(); ++i) run_tensor(i, sink, rep);
        detail::sink_finish(sink);
        rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return rep;
    }

    /// Evaluates tensor `i` of the plan into the sink (no begin/finish), adding to `rep`.
    template <class K>
        requires tensor_expression<E> && (weight_sink<std::remove_cvref_t<K>> || device_sink<std::remove_cvref_t<K>>)
    void run_tensor(std::size_t i, K&& sink, evaluation_report& rep) const {
        const auto& e = plan_.entries.at(i);
        if (e.action == tensor_action::skip) {
            rep.skipped.push_back(e.out.name);
            return;
        }
        if (e.action == tensor_action::pass_through) pass_through(e, sink, rep);
        else if (e.action == tensor_action::compute) compute(e, sink, rep);
        else throw error("tensor '" + e.out.name + "': the gpu backend does not support this tensor's action yet (eval_options::keep)");
        rep.bytes_written += e.out.nbytes();
        sink.commit(e.out);
        for (const auto& leaf : plan_.leaves) leaf.release(e.out.name);
    }

    /// Evaluates a reduction in one fused pass per tensor.
    [[nodiscard]] auto run() const
        requires reduction_expression<E>
    {
        return run([](const tensor_info&, std::uint64_t) {});
    }

    /// The same, calling `after_tensor(info, bytes_read)` after each tensor (it may throw to stop).
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
            const std::uint64_t n = e.out.numel();
            const E expr = prepared_for(e);
            for_each_piece(e, [&](std::uint64_t c0, std::uint64_t c, const std::array<const std::byte*, E::arity>& in) {
                backend::device::reduce_tensor(expr, types_of(e).data(), in.data(), c, c0, acc.data());
            });
            res.add(e.out.name, expr.finish(acc.data(), n));
            for (const auto& leaf : plan_.leaves) leaf.release(e.out.name);
            std::uint64_t read = 0;
            for (const auto& in : e.inputs) read += in.bytes.size();
            after_tensor(e.out, read);
        }
        return std::move(res).finish();
    }

private:
    static std::array<dtype, E::arity> types_of(const detail::plan_entry& e) {
        std::array<dtype, E::arity> t;
        for (std::size_t k = 0; k < E::arity; ++k) t[k] = e.inputs[k].type;
        return t;
    }

    /// Whether every operand of the plan is already in device memory.
    [[nodiscard]] bool all_resident() const {
        return std::all_of(resident_.begin(), resident_.end(), [](bool r) { return r; });
    }

    /// Calls f(first, count, device pointers of each operand at element `first`) for consecutive
    /// pieces covering the tensor: one piece when every operand is on the device, otherwise
    /// pieces of staging_elements, host operands copied into the staging buffers (and their
    /// consumed ranges released). With `whole`, always one piece (the caller stages the output).
    template <class F> void for_each_piece(const detail::plan_entry& e, F&& f, bool host_result = false) const {
        const std::uint64_t n = e.out.numel();
        const std::uint64_t piece = (all_resident() && !host_result) ? std::max<std::uint64_t>(n, 1) : be_.staging_elements;
        for (std::uint64_t c0 = 0; c0 < n; c0 += piece) {
            const std::uint64_t c = std::min(piece, n - c0);
            std::array<const std::byte*, E::arity> in;
            for (std::size_t k = 0; k < E::arity; ++k) {
                const std::uint64_t es = bits_of(e.inputs[k].type) / 8;
                const std::byte* src = e.inputs[k].bytes.data() + c0 * es;
                if (resident_[k]) {
                    in[k] = src;
                } else {
                    staging_[k].reserve(c * es);
                    backend::device::copy_to_device(staging_[k].data(), src, c * es);
                    in[k] = staging_[k].data();
                }
            }
            f(c0, c, in);
            if (c0 + c < n)
                for (std::size_t k = 0; k < E::arity; ++k)
                    if (!resident_[k]) {
                        const std::uint64_t es = bits_of(e.inputs[k].type) / 8;
                        plan_.leaves[k].release_range(e.out.name, c0 * es, c * es);
                    }
        }
    }

    /// A copy of the expression with its per-tensor values set for tensor `e` (per-tensor
    /// parameters). Only the site is given: merge methods, which read data in their hook, are
    /// CPU-only (see the static_assert above).
    E prepared_for(const detail::plan_entry& e) const {
        E expr = expr_;
        tensor_context ctx;
        ctx.site = tensor_site{e.out.name, layer_of(e.out.name), num_layers_};
        ctx.numel = e.out.numel();
        detail::prepare_node<0>(expr, ctx);
        return expr;
    }

    template <class K> void compute(const detail::plan_entry& e, K& sink, evaluation_report& rep) const {
        using KK = std::remove_cvref_t<K>;
        const E expr = prepared_for(e);
        const std::uint64_t n = e.out.numel(), need = e.out.nbytes();
        const std::uint64_t out_es = bits_of(e.out.type) / 8;
        for (const auto& in : e.inputs) rep.bytes_read += in.bytes.size();
        const auto types = types_of(e);
        if constexpr (device_sink<KK>) {
            std::span<std::byte> out = sink.acquire_device(e.out);
            check_size(e, out.size(), need);
            for (std::size_t k = 0; k < E::arity; ++k)
                if (resident_[k] && detail::overlaps(e.inputs[k].bytes, out) &&
                    (e.inputs[k].bytes.data() != out.data() || e.inputs[k].type != e.out.type))
                    throw error("tensor '" + e.out.name + "': the output buffer overlaps operand " +
                                detail::operand_name(plan_.leaves, k) + " without coinciding with it");
            for_each_piece(e, [&](std::uint64_t c0, std::uint64_t c, const std::array<const std::byte*, E::arity>& in) {
                backend::device::map_tensor(expr, types.data(), in.data(), e.out.type, out.data() + c0 * out_es, c, c0);
            });
        } else {
            // A host sink: each piece is computed into a device buffer and copied back.
            std::span<std::byte> whole;
            if constexpr (!range_sink<KK>) {
                whole = sink.acquire(e.out);
                check_size(e, whole.size(), need);
                for (std::size_t k = 0; k < E::arity; ++k)
                    if (!resident_[k] && detail::overlaps(e.inputs[k].bytes, whole) &&
                        (e.inputs[k].bytes.data() != whole.data() || e.inputs[k].type != e.out.type))
                        throw error("tensor '" + e.out.name + "': the output buffer overlaps operand " +
                                    detail::operand_name(plan_.leaves, k) + " without coinciding with it");
            }
            for_each_piece(
                e,
                [&](std::uint64_t c0, std::uint64_t c, const std::array<const std::byte*, E::arity>& in) {
                    staging_out_.reserve(c * out_es);
                    backend::device::map_tensor(expr, types.data(), in.data(), e.out.type, staging_out_.data(), c, c0);
                    if constexpr (range_sink<KK>) to_ranges(e, sink, c0 * out_es, staging_out_.data(), c * out_es);
                    else backend::device::copy_to_host(whole.data() + c0 * out_es, staging_out_.data(), c * out_es);
                },
                true);
        }
        rep.computed.push_back(e.out.name);
        rep.elements += n;
    }

    template <class K> void pass_through(const detail::plan_entry& e, K& sink, evaluation_report& rep) const {
        using KK = std::remove_cvref_t<K>;
        const auto src = e.inputs[0].bytes;
        const bool on_device = resident_[0];
        rep.bytes_read += src.size();
        if constexpr (device_sink<KK>) {
            std::span<std::byte> out = sink.acquire_device(e.out);
            check_size(e, out.size(), src.size());
            if (on_device) backend::device::copy_on_device(out.data(), src.data(), src.size());
            else backend::device::copy_to_device(out.data(), src.data(), src.size());
        } else if constexpr (range_sink<KK>) {
            for (std::uint64_t off = 0; off < src.size(); off += range_sink_bytes) {
                const std::uint64_t c = std::min<std::uint64_t>(range_sink_bytes, src.size() - off);
                auto buf = take_range(e, sink, off, c);
                if (on_device) backend::device::copy_to_host(buf.data(), src.data() + off, c);
                else std::memcpy(buf.data(), src.data() + off, c);
                sink.commit_range(e.out, off, c);
            }
        } else {
            std::span<std::byte> out = sink.acquire(e.out);
            check_size(e, out.size(), src.size());
            if (on_device) backend::device::copy_to_host(out.data(), src.data(), src.size());
            else if (!src.empty() && out.data() != src.data()) std::memmove(out.data(), src.data(), src.size());
        }
        rep.passed_through.push_back(e.out.name);
    }

    /// Copies `count` result bytes from device memory into a range sink, at byte `offset` of the
    /// tensor, in ranges of at most range_sink_bytes.
    template <class K>
    void to_ranges(const detail::plan_entry& e, K& sink, std::uint64_t offset, const std::byte* dev, std::uint64_t count) const {
        for (std::uint64_t off = 0; off < count; off += range_sink_bytes) {
            const std::uint64_t c = std::min<std::uint64_t>(range_sink_bytes, count - off);
            auto buf = take_range(e, sink, offset + off, c);
            backend::device::copy_to_host(buf.data(), dev + off, c);
            sink.commit_range(e.out, offset + off, c);
        }
    }

    template <class K>
    std::span<std::byte> take_range(const detail::plan_entry& e, K& sink, std::uint64_t off, std::uint64_t count) const {
        std::span<std::byte> buf = sink.acquire_range(e.out, off, count);
        if (buf.size() != count)
            throw error("sink gave " + std::to_string(buf.size()) + " bytes for bytes [" + std::to_string(off) + ", " +
                        std::to_string(off + count) + ") of tensor '" + e.out.name + "'");
        for (std::size_t k = 0; k < E::arity; ++k)
            if (!resident_[k] && detail::overlaps(e.inputs[k].bytes, buf))
                throw error("tensor '" + e.out.name + "': the sink's buffer overlaps operand " + detail::operand_name(plan_.leaves, k));
        return buf;
    }

    static void check_size(const detail::plan_entry& e, std::uint64_t got, std::uint64_t need) {
        if (got != need)
            throw error("sink gave " + std::to_string(got) + " bytes for tensor '" + e.out.name + "', which needs " +
                        std::to_string(need));
    }

    E expr_; // a copy: owning leaves keep their stores alive for as long as this object
    int num_layers_ = 0;
    gpu_backend be_;
    std::vector<bool> resident_;
    detail::plan plan_;
    mutable std::array<backend::device::device_allocation, E::arity> staging_;
    mutable backend::device::device_allocation staging_out_;
};

/// Binds an expression to its stores for the gpu backend (throwing binding_error if they disagree).
template <expression E>
[[nodiscard]] gpu_prepared_evaluation<E> prepare(const E& expr, const gpu_backend& be, const eval_options& opt = {}) {
    return gpu_prepared_evaluation<E>(expr, be, opt);
}

/// Evaluates a point or vector expression on the device into a host or device sink.
template <tensor_expression E, class K>
    requires weight_sink<std::remove_cvref_t<K>> || device_sink<std::remove_cvref_t<K>>
evaluation_report evaluate(const E& expr, K&& sink, const gpu_backend& be, const eval_options& opt = {}) {
    return prepare(expr, be, opt).run(std::forward<K>(sink));
}

/// Evaluates a point or vector expression on the device into a new (host) memory_store.
template <tensor_expression E>
[[nodiscard]] memory_store materialize(const E& expr, const gpu_backend& be, const eval_options& opt = {}) {
    memory_store out;
    evaluate(expr, out, be, opt);
    return out;
}

/// Evaluates a reduction on the device, in f64.
template <reduction_expression R>
[[nodiscard]] reduction_result<typename R::stats_type> evaluate(const R& red, const gpu_backend& be, const eval_options& opt = {}) {
    return prepare(red, be, opt).run();
}

} // namespace skillvec

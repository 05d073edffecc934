#pragma once
/// \file
/// `device_store`: named tensors in device memory (GPU memory under CUDA).
///
/// \code
///   auto rl  = skillvec::device_store::upload(skillvec::safetensors_store::open("ckpt/rl"), "rl");
///   auto sft = skillvec::device_store::upload(skillvec::safetensors_store::open("ckpt/sft"), "sft");
///   auto t   = skillvec::device_store::upload(skillvec::safetensors_store::open("ckpt/sft_T"), "target");
///   skillvec::device_store out;
///   skillvec::evaluate(skillvec::past(weights(t), weights(rl), weights(sft), 1.0f), out, skillvec::gpu);
///   out.download(skillvec::safetensors_writer("out/past_T"));   // or out.download() -> memory_store
/// \endcode
///
/// A device_store is a weight store: `weights(d)` and `delta(d)` are expressions like any other,
/// and binding checks them as strictly. Its tensors live in device memory, so only the gpu
/// backend reads them: `find()` throws an error that says so (a CPU evaluation over a device_store
/// therefore fails at binding, before any work), and `find_device()` gives the device view. It is
/// also the gpu backend's device sink: `begin(plan)` allocates every planned tensor in one
/// allocation and `acquire_device` hands out its slices. `into(d)` overwrites its own tensors
/// instead (in place, like `into(memory_store&)`).
///
/// Each `upload` or `begin` makes one pooled allocation, tensors 256-byte aligned inside it. The
/// store is move-only. An upload from pageable memory (a mapped file) copies tensor by tensor;
/// `skillvec::cuda::upload_overlapped` (backend/thrust/cuda_upload.cuh, CUDA only) overlaps
/// reading the source with the PCIe transfer through pinned staging buffers.

#include <skillvec/backend/thrust/detail/device_memory.hpp>
#include <skillvec/core/memory_store.hpp>
#include <skillvec/core/sink.hpp>
#include <skillvec/core/store.hpp>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace skillvec {

namespace detail {
/// Every tensor of a store about to be uploaded, in its order, each view validated: what both
/// device_store::upload and cuda::upload_overlapped copy.
template <weight_store S> std::pair<std::vector<tensor_info>, std::vector<tensor_view>> upload_views(const S& src) {
    std::vector<tensor_info> infos;
    std::vector<tensor_view> views;
    for (auto&& n : src.tensor_names()) {
        const std::string name{std::string_view(n)};
        auto v = src.find(name);
        if (!v) throw error("upload from '" + label_of(src, "store") + "': it lists '" + name + "' but find() does not return it");
        check_view(*v, "upload from '" + label_of(src, "store") + "', tensor '" + name + "'");
        infos.push_back({name, v->type, v->dims});
        views.push_back(*v);
    }
    return {std::move(infos), std::move(views)};
}
} // namespace detail

/// A sink whose buffers are in device memory: the gpu backend writes there directly.
template <class K>
concept device_sink = requires(K& k, const tensor_info& info) {
    { k.acquire_device(info) } -> std::same_as<std::span<std::byte>>;
    k.commit(info);
};

/// A store whose tensors are in device memory (`static constexpr bool device_resident = true`
/// and `find_device`): the gpu backend reads them in place.
template <class S>
concept device_resident_store = weight_store<S> && requires(const S& s, std::string_view name) {
    requires S::device_resident;
    { s.find_device(name) } -> std::same_as<std::optional<tensor_view>>;
};

/// Named tensors in device memory. See the file comment.
class device_store {
public:
    /// Marks the store for the gpu backend: its views are device addresses.
    static constexpr bool device_resident = true;

    device_store() = default;
    explicit device_store(std::string label) : label_(std::move(label)) {}
    device_store(device_store&&) noexcept = default;
    device_store& operator=(device_store&&) noexcept = default;
    device_store(const device_store&) = delete;
    device_store& operator=(const device_store&) = delete;

    /// Copies every tensor of `src` (any dtype) to the device, in src's order, in one allocation.
    /// Each source tensor is released (skillvec::release) once copied, so a mapped checkpoint's
    /// pages do not accumulate.
    template <weight_store S> [[nodiscard]] static device_store upload(const S& src, std::string label = {}) {
        device_store d(label.empty() ? label_of(src, "") : std::move(label));
        const auto [infos, views] = detail::upload_views(src);
        d.allocate(infos);
        for (std::size_t i = 0; i < infos.size(); ++i) {
            backend::device::copy_to_device(d.device_data(infos[i].name), views[i].bytes.data(), views[i].bytes.size());
            release(src, infos[i].name);
        }
        return d;
    }

    /// Adds uninitialized tensors for `infos`, in one allocation. Throws, before allocating, if a
    /// name is taken or given twice. (Used by `begin` and by uploaders that fill the bytes.)
    void allocate(std::span<const tensor_info> infos) {
        std::map<std::string, int, std::less<>> seen;
        for (const auto& t : infos)
            if (index_.count(t.name) || !seen.emplace(t.name, 0).second)
                throw error("device_store '" + label_ + "': tensor '" + t.name + "' already exists");
        std::uint64_t total = 0;
        std::vector<std::uint64_t> offsets;
        for (const auto& t : infos) {
            offsets.push_back(total);
            total += backend::device::align_up(t.nbytes());
        }
        pools_.emplace_back(total);
        for (std::size_t i = 0; i < infos.size(); ++i) {
            index_.emplace(infos[i].name, entries_.size());
            entries_.push_back({infos[i], pools_.size() - 1, offsets[i]});
            names_.push_back(infos[i].name);
        }
    }

    // --- weight store ------------------------------------------------------------------------

    [[nodiscard]] const std::vector<std::string>& tensor_names() const noexcept { return names_; }
    [[nodiscard]] std::string label() const { return label_; }

    /// Always throws (for a tensor it holds): the bytes are in device memory, where the CPU
    /// backend cannot read them. nullopt for a tensor it does not hold.
    [[nodiscard]] std::optional<tensor_view> find(std::string_view name) const {
        if (!index_.count(name)) return std::nullopt;
        throw error("device_store '" + label_ + "', tensor '" + std::string(name) +
                    "': it is in device memory; evaluate with skillvec::gpu, or download() it first");
    }

    /// The tensor's view with a device address (readable only by device code).
    [[nodiscard]] std::optional<tensor_view> find_device(std::string_view name) const {
        const auto it = index_.find(name);
        if (it == index_.end()) return std::nullopt;
        const entry& e = entries_[it->second];
        return tensor_view{e.info.type, e.info.dims, {slice(e), e.info.nbytes()}};
    }

    /// The same, writable.
    [[nodiscard]] std::optional<mutable_tensor_view> find_device_mutable(std::string_view name) {
        const auto it = index_.find(name);
        if (it == index_.end()) return std::nullopt;
        const entry& e = entries_[it->second];
        return mutable_tensor_view{e.info.type, e.info.dims, {slice(e), e.info.nbytes()}};
    }

    /// Device bytes of a tensor it holds (throws if it does not).
    [[nodiscard]] std::byte* device_data(std::string_view name) {
        auto v = find_device_mutable(name);
        if (!v) throw error("device_store '" + label_ + "': no tensor '" + std::string(name) + "'");
        return v->bytes.data();
    }

    /// Bytes of device memory held (tensors plus alignment padding).
    [[nodiscard]] std::uint64_t device_bytes() const noexcept {
        std::uint64_t b = 0;
        for (const auto& p : pools_) b += p.size();
        return b;
    }
    [[nodiscard]] std::size_t size() const noexcept { return names_.size(); }

    // --- device sink (the gpu backend) ---------------------------------------------------------

    /// Allocates every planned tensor at once, refusing up front a plan that names a tensor the
    /// store already holds (use `into(store)` to overwrite).
    void begin(std::span<const tensor_info> plan) {
        allocate(plan);
        for (const auto& t : plan) pending_.emplace(t.name, 0);
    }

    /// The device buffer for a planned tensor (or, without `begin`, a new one of its own).
    std::span<std::byte> acquire_device(const tensor_info& info) {
        if (!pending_.count(info.name)) allocate(std::span<const tensor_info>(&info, 1));
        else pending_.erase(pending_.find(info.name));
        return find_device_mutable(info.name)->bytes;
    }
    void commit(const tensor_info&) noexcept {}

    // --- download ------------------------------------------------------------------------------

    /// Copies every tensor, in order, into a host sink (memory_store, safetensors_writer, ...),
    /// byte for byte, calling its begin, acquire (or acquire_range), commit and finish.
    template <class K>
        requires weight_sink<std::remove_cvref_t<K>>
    void download(K&& sink) const {
        std::vector<tensor_info> plan;
        for (const auto& e : entries_) plan.push_back(e.info);
        if constexpr (requires { sink.begin(std::span<const tensor_info>(plan)); }) sink.begin(std::span<const tensor_info>(plan));
        for (const auto& e : entries_) {
            const std::uint64_t n = e.info.nbytes();
            if constexpr (range_sink<std::remove_cvref_t<K>>) {
                for (std::uint64_t off = 0; off < n; off += range_sink_bytes) {
                    const std::uint64_t c = std::min(range_sink_bytes, n - off);
                    auto buf = sink.acquire_range(e.info, off, c);
                    if (buf.size() != c) throw error("download: the sink gave the wrong size for tensor '" + e.info.name + "'");
                    backend::device::copy_to_host(buf.data(), slice(e) + off, c);
                    sink.commit_range(e.info, off, c);
                }
            } else {
                auto buf = sink.acquire(e.info);
                if (buf.size() != n) throw error("download: the sink gave the wrong size for tensor '" + e.info.name + "'");
                backend::device::copy_to_host(buf.data(), slice(e), n);
            }
            sink.commit(e.info);
        }
        if constexpr (requires { sink.finish(); }) sink.finish();
    }

    /// Copies every tensor into a new memory_store (same label).
    [[nodiscard]] memory_store download() const {
        memory_store m(label_);
        download(m);
        return m;
    }

private:
    struct entry {
        tensor_info info;
        std::size_t pool;
        std::uint64_t offset;
    };
    [[nodiscard]] std::byte* slice(const entry& e) const { return pools_[e.pool].data() + e.offset; }

    std::string label_;
    std::vector<backend::device::device_allocation> pools_;
    std::vector<entry> entries_;
    std::vector<std::string> names_;
    std::map<std::string, std::size_t, std::less<>> index_;
    std::map<std::string, int, std::less<>> pending_; // planned by begin, not yet acquired
};

/// Overwrites a device_store's own tensors (`evaluate(e, into(d), gpu)`), in place: every
/// planned tensor must exist there with the planned dtype and shape. As with `into(memory_store&)`,
/// the result may alias an operand exactly.
class device_overwrite_sink {
public:
    explicit device_overwrite_sink(device_store& s) : store_(&s) {}
    std::span<std::byte> acquire_device(const tensor_info& info) {
        auto v = store_->find_device_mutable(info.name);
        const auto who = [&] { return "overwrite into device_store '" + store_->label() + "', tensor '" + info.name + "'"; };
        if (!v) throw error(who() + ": no such tensor");
        if (v->type != info.type || !(v->dims == info.dims))
            throw error(who() + ": holds " + std::string(name_of(v->type)) + " " + v->dims.to_string() + " but the result is " +
                        std::string(name_of(info.type)) + " " + info.dims.to_string());
        return v->bytes;
    }
    void commit(const tensor_info&) noexcept {}

private:
    device_store* store_;
};

/// `evaluate(expr, into(d), skillvec::gpu)` writes over the device_store's tensors.
[[nodiscard]] inline device_overwrite_sink into(device_store& s) { return device_overwrite_sink(s); }

} // namespace skillvec

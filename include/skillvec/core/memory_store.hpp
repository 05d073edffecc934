#pragma once
/// \file
/// `memory_store`: an owning, in-memory weight store with 64-byte aligned tensors. It is also a
/// sink, so `evaluate(expr, out)` can fill one.

#include <skillvec/core/sink.hpp>
#include <skillvec/core/store.hpp>
#include <skillvec/core/tensor_view.hpp>

#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace skillvec {

namespace detail {
struct aligned_free {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{64}); }
};
using aligned_bytes = std::unique_ptr<std::byte[], aligned_free>;

[[nodiscard]] inline aligned_bytes allocate_aligned(std::size_t n) {
    if (n == 0) return {};
    return aligned_bytes(static_cast<std::byte*>(::operator new[](n, std::align_val_t{64})));
}

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
} // namespace detail

/// Owning weight store: tensors in insertion order, each in its own 64-byte aligned buffer.
/// Move-only, because an accidental copy of a model is expensive; use `clone()` to copy.
class memory_store {
public:
    memory_store() = default;
    explicit memory_store(std::string label) : label_(std::move(label)) {}
    memory_store(memory_store&&) noexcept = default;
    memory_store& operator=(memory_store&&) noexcept = default;
    memory_store(const memory_store&) = delete;
    memory_store& operator=(const memory_store&) = delete;

    /// Adds a zero-filled tensor. Throws if the name is taken.
    mutable_tensor_view add(std::string name, dtype type, shape dims) {
        auto v = add_uninitialized(std::move(name), type, dims);
        if (!v.bytes.empty()) std::memset(v.bytes.data(), 0, v.bytes.size());
        return v;
    }

    /// Adds a tensor holding a copy of `values`; the dtype is that of T (float, bfloat16, int32_t, ...).
    template <class T> mutable_tensor_view add(std::string name, shape dims, std::span<const T> values) {
        return add_bytes(std::move(name), dtype_of_v<T>, dims, std::as_bytes(values));
    }
    template <class T> mutable_tensor_view add(std::string name, shape dims, const std::vector<T>& values) {
        return add(std::move(name), dims, std::span<const T>(values));
    }

    /// Adds a tensor of float kind `type` from f32 values, rounding to nearest even.
    mutable_tensor_view add_converted(std::string name, dtype type, shape dims, std::span<const float> values) {
        if (!is_arithmetic(type))
            throw error("memory_store '" + label_ + "': add_converted('" + name + "') needs a float dtype, not " +
                        std::string(name_of(type)));
        if (values.size() != dims.numel())
            throw error("memory_store '" + label_ + "': add_converted('" + name + "'): " +
                        std::to_string(values.size()) + " values for shape " + dims.to_string());
        auto v = add_uninitialized(std::move(name), type, dims);
        for (std::size_t i = 0; i < values.size(); ++i) store_from_f32(type, v.bytes.data(), i, values[i]);
        return v;
    }

    /// Adds a tensor from raw bytes, which must be exactly the size the dtype and shape need.
    mutable_tensor_view add_bytes(std::string name, dtype type, shape dims, std::span<const std::byte> bytes) {
        const std::uint64_t want = byte_size(type, dims.numel());
        if (bytes.size() != want)
            throw error("memory_store '" + label_ + "': tensor '" + name + "' " + std::string(name_of(type)) + " " +
                        dims.to_string() + " needs " + std::to_string(want) + " bytes, got " +
                        std::to_string(bytes.size()));
        auto v = add_uninitialized(std::move(name), type, dims);
        if (!bytes.empty()) std::memcpy(v.bytes.data(), bytes.data(), bytes.size());
        return v;
    }

    [[nodiscard]] std::optional<tensor_view> find(std::string_view name) const {
        auto it = index_.find(name);
        if (it == index_.end()) return std::nullopt;
        const entry& e = entries_[it->second];
        return tensor_view{e.type, e.dims, {e.data.get(), e.nbytes}};
    }

    [[nodiscard]] std::optional<mutable_tensor_view> find_mutable(std::string_view name) {
        auto it = index_.find(name);
        if (it == index_.end()) return std::nullopt;
        entry& e = entries_[it->second];
        return mutable_tensor_view{e.type, e.dims, {e.data.get(), e.nbytes}};
    }

    /// The tensor called `name`; throws `skillvec::error` naming the store if there is none.
    [[nodiscard]] tensor_view at(std::string_view name) const {
        if (auto v = find(name)) return *v;
        throw error("memory_store '" + label_ + "': no tensor '" + std::string(name) + "'");
    }
    [[nodiscard]] mutable_tensor_view at_mutable(std::string_view name) {
        if (auto v = find_mutable(name)) return *v;
        throw error("memory_store '" + label_ + "': no tensor '" + std::string(name) + "'");
    }

    /// A float-kind tensor's values widened to f32.
    [[nodiscard]] std::vector<float> to_f32(std::string_view name) const {
        tensor_view v = at(name);
        if (!is_arithmetic(v.type))
            throw error("memory_store '" + label_ + "': tensor '" + std::string(name) + "' is " +
                        std::string(name_of(v.type)) + ", not a float kind");
        std::vector<float> out(v.numel());
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = load_as_f32(v.type, v.bytes.data(), i);
        return out;
    }

    [[nodiscard]] const std::vector<std::string>& tensor_names() const noexcept { return names_; }
    [[nodiscard]] bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }
    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
    [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }

    /// Total bytes of tensor data held.
    [[nodiscard]] std::uint64_t nbytes() const noexcept {
        std::uint64_t n = 0;
        for (const auto& e : entries_) n += e.nbytes;
        return n;
    }

    /// Removes a tensor; returns false if there was none.
    bool erase(std::string_view name) {
        auto it = index_.find(name);
        if (it == index_.end()) return false;
        const std::size_t i = it->second;
        index_.erase(it);
        entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
        names_.erase(names_.begin() + static_cast<std::ptrdiff_t>(i));
        for (auto& [k, j] : index_)
            if (j > i) --j;
        return true;
    }

    void clear() noexcept {
        entries_.clear();
        names_.clear();
        index_.clear();
    }

    [[nodiscard]] const std::string& label() const noexcept { return label_; }
    void set_label(std::string l) { label_ = std::move(l); }

    /// A deep copy.
    [[nodiscard]] memory_store clone() const {
        memory_store c(label_);
        for (const auto& e : entries_) c.add_bytes(e.name, e.type, e.dims, {e.data.get(), e.nbytes});
        return c;
    }

    // --- sink interface: evaluation creates each result tensor here -----------------------------
    /// Refuses, before any work, a plan that would overwrite tensors already here.
    void begin(std::span<const tensor_info> plan) const {
        std::string clash;
        std::size_t n = 0;
        for (const auto& info : plan)
            if (contains(info.name)) clash += (n++ ? ", '" : "'") + info.name + "'";
        if (n) throw error("memory_store '" + label_ + "': the result would overwrite " + std::to_string(n) +
                           " existing tensor" + (n == 1 ? "" : "s") + ": " + clash);
    }
    /// Room for a new tensor (uninitialized: evaluation overwrites every byte).
    std::span<std::byte> acquire(const tensor_info& info) { return add_uninitialized(info.name, info.type, info.dims).bytes; }
    void commit(const tensor_info&) noexcept {}

private:
    struct entry {
        std::string name;
        dtype type;
        skillvec::shape dims;
        std::size_t nbytes;
        detail::aligned_bytes data;
    };

    mutable_tensor_view add_uninitialized(std::string name, dtype type, shape dims) {
        if (index_.find(name) != index_.end())
            throw error("memory_store '" + label_ + "': tensor '" + name + "' already exists");
        const std::uint64_t n = byte_size(type, dims.numel());
        if (n > static_cast<std::uint64_t>(PTRDIFF_MAX))
            throw error("memory_store '" + label_ + "': tensor '" + name + "' of " + std::to_string(n) +
                        " bytes is too large");
        entry e{name, type, dims, static_cast<std::size_t>(n), detail::allocate_aligned(static_cast<std::size_t>(n))};
        index_.emplace(name, entries_.size());
        names_.push_back(name);
        entries_.push_back(std::move(e));
        entry& b = entries_.back();
        return {b.type, b.dims, {b.data.get(), b.nbytes}};
    }

    std::string label_;
    std::vector<entry> entries_;
    std::vector<std::string> names_;
    std::unordered_map<std::string, std::size_t, detail::string_hash, std::equal_to<>> index_;
};

static_assert(weight_store<memory_store>);
static_assert(mutable_weight_store<memory_store>);
static_assert(weight_sink<memory_store>);

} // namespace skillvec

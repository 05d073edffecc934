#pragma once
/// \file
/// Non-owning views of one stored tensor: dtype, shape and raw bytes.

#include <skillvec/core/dtype.hpp>
#include <skillvec/core/error.hpp>
#include <skillvec/core/shape.hpp>

#include <cstddef>
#include <span>
#include <string>

namespace skillvec {

/// Byte size of a tensor of `n` elements of dtype `t`. Throws if the bit count overflows or is not
/// a whole number of bytes (safetensors rejects such tensors too).
[[nodiscard]] inline std::uint64_t byte_size(dtype t, std::uint64_t n) {
    std::uint64_t bits = 0;
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(bits_of(t)), &bits))
        throw error(std::string("tensor of ") + std::to_string(n) + " " + std::string(name_of(t)) +
                    " elements: byte size overflows 64 bits");
    if (bits % 8 != 0)
        throw error(std::string("tensor of ") + std::to_string(n) + " " + std::string(name_of(t)) +
                    " elements is not a whole number of bytes");
    return bits / 8;
}

/// What a tensor is, without its data: the unit a sink is asked to provide room for.
struct tensor_info {
    std::string name;
    dtype type = dtype::f32;
    skillvec::shape dims;

    [[nodiscard]] std::uint64_t numel() const { return dims.numel(); }
    [[nodiscard]] std::uint64_t nbytes() const { return byte_size(type, dims.numel()); }
};

/// A read-only view of one tensor's bytes. The bytes may be unaligned (for example inside an
/// mmap-ed safetensors file): kernels never assume alignment.
struct tensor_view {
    dtype type = dtype::f32;
    skillvec::shape dims;
    std::span<const std::byte> bytes;

    [[nodiscard]] std::uint64_t numel() const { return dims.numel(); }

    /// Typed access, checked against the stored dtype. Throws `skillvec::error` on a mismatch.
    template <class T> [[nodiscard]] std::span<const T> as() const {
        if (dtype_of_v<T> != type)
            throw error(std::string("tensor_view::as: tensor holds ") + std::string(name_of(type)) + ", not " +
                        std::string(name_of(dtype_of_v<T>)));
        return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
    }
};

/// A writable view of one tensor's bytes.
struct mutable_tensor_view {
    dtype type = dtype::f32;
    skillvec::shape dims;
    std::span<std::byte> bytes;

    [[nodiscard]] std::uint64_t numel() const { return dims.numel(); }
    operator tensor_view() const { return {type, dims, bytes}; } // NOLINT: a writable view is readable

    template <class T> [[nodiscard]] std::span<T> as() const {
        if (dtype_of_v<T> != type)
            throw error(std::string("mutable_tensor_view::as: tensor holds ") + std::string(name_of(type)) +
                        ", not " + std::string(name_of(dtype_of_v<T>)));
        return {reinterpret_cast<T*>(bytes.data()), bytes.size() / sizeof(T)};
    }
};

/// Checks that a view's byte count matches its dtype and shape; `who` names the store and tensor.
inline void check_view(const tensor_view& v, const std::string& who) {
    const std::uint64_t want = byte_size(v.type, v.dims.numel());
    if (v.bytes.size() != want)
        throw error(who + ": " + std::string(name_of(v.type)) + " " + v.dims.to_string() + " needs " +
                    std::to_string(want) + " bytes but the view has " + std::to_string(v.bytes.size()));
}

} // namespace skillvec

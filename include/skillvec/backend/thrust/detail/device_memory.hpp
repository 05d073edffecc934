#pragma once
/// \file
/// Device memory for the Thrust backend: an owning, uninitialized allocation, and byte copies
/// between host and device. Everything here goes through Thrust, so it runs on whichever device
/// system the translation unit is compiled for (CUDA, or OpenMP/C++ on the host in tests).

#include <skillvec/core/error.hpp>

#include <thrust/copy.h>
#include <thrust/device_free.h>
#include <thrust/device_malloc.h>
#include <thrust/device_ptr.h>
#include <thrust/execution_policy.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <utility>

namespace skillvec::backend::device {

/// Device tensors start at multiples of this (cudaMalloc's own alignment), so that kernels can
/// use wide, aligned loads of any dtype.
inline constexpr std::uint64_t device_alignment = 256;

[[nodiscard]] constexpr std::uint64_t align_up(std::uint64_t n) noexcept {
    return (n + device_alignment - 1) / device_alignment * device_alignment;
}

/// One uninitialized device allocation (no fill kernel: it is about to be overwritten).
class device_allocation {
public:
    device_allocation() = default;
    explicit device_allocation(std::uint64_t bytes) : bytes_(bytes) {
        if (bytes == 0) return;
        try {
            ptr_ = thrust::device_malloc<std::byte>(static_cast<std::size_t>(bytes));
        } catch (const std::exception& e) {
            throw error("device memory: cannot allocate " + std::to_string(bytes) + " bytes (" + e.what() + ")");
        }
    }
    device_allocation(device_allocation&& o) noexcept
        : ptr_(std::exchange(o.ptr_, thrust::device_ptr<std::byte>())), bytes_(std::exchange(o.bytes_, 0)) {}
    device_allocation& operator=(device_allocation&& o) noexcept {
        if (this != &o) {
            reset();
            ptr_ = std::exchange(o.ptr_, thrust::device_ptr<std::byte>());
            bytes_ = std::exchange(o.bytes_, 0);
        }
        return *this;
    }
    device_allocation(const device_allocation&) = delete;
    device_allocation& operator=(const device_allocation&) = delete;
    ~device_allocation() { reset(); }

    /// The device address (not dereferenceable on the host under CUDA).
    [[nodiscard]] std::byte* data() const noexcept { return thrust::raw_pointer_cast(ptr_); }
    [[nodiscard]] std::uint64_t size() const noexcept { return bytes_; }

    /// Makes this at least `bytes` long; the old contents are not kept.
    void reserve(std::uint64_t bytes) {
        if (bytes > bytes_) *this = device_allocation(bytes);
    }

private:
    void reset() noexcept {
        if (ptr_.get()) thrust::device_free(ptr_);
        ptr_ = thrust::device_ptr<std::byte>();
        bytes_ = 0;
    }
    thrust::device_ptr<std::byte> ptr_{};
    std::uint64_t bytes_ = 0;
};

/// Byte copies. `host` pointers may be unaligned (a mapped safetensors file).
inline void copy_to_device(std::byte* dev, const std::byte* host, std::uint64_t n) {
    if (n) thrust::copy_n(host, static_cast<std::size_t>(n), thrust::device_pointer_cast(dev));
}
inline void copy_to_host(std::byte* host, const std::byte* dev, std::uint64_t n) {
    if (n) thrust::copy_n(thrust::device_pointer_cast(dev), static_cast<std::size_t>(n), host);
}
inline void copy_on_device(std::byte* dst, const std::byte* src, std::uint64_t n) {
    if (n && dst != src)
        thrust::copy_n(thrust::device, thrust::device_pointer_cast(src), static_cast<std::size_t>(n),
                       thrust::device_pointer_cast(dst));
}

} // namespace skillvec::backend::device

#pragma once
/// \file
/// `shape`: the dimensions of a tensor, stored inline (no allocation), rank 0 to 8.

#include <skillvec/core/error.hpp>

#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <ranges>
#include <string>

namespace skillvec {

/// Dimensions of a tensor. Rank 0 (a scalar, one element) and zero-sized dimensions (an empty
/// tensor) are legal, as in safetensors. The rank is capped at `max_rank`; `numel()` is checked
/// against overflow, so a hostile shape cannot wrap a size computation.
class shape {
public:
    static constexpr std::size_t max_rank = 8;

    constexpr shape() noexcept = default;

    constexpr shape(std::initializer_list<std::uint64_t> dims) { assign(dims); }

    /// From any range of integers (std::vector<int>, std::span<const size_t>, ...). Negative
    /// dimensions are rejected.
    template <std::ranges::input_range R>
        requires std::integral<std::ranges::range_value_t<R>> && (!std::same_as<std::remove_cvref_t<R>, shape>)
    constexpr explicit shape(R&& dims) {
        assign(std::forward<R>(dims));
    }

    [[nodiscard]] constexpr std::size_t rank() const noexcept { return rank_; }
    [[nodiscard]] constexpr std::uint64_t operator[](std::size_t i) const noexcept { return dims_[i]; }
    [[nodiscard]] constexpr const std::uint64_t* begin() const noexcept { return dims_.data(); }
    [[nodiscard]] constexpr const std::uint64_t* end() const noexcept { return dims_.data() + rank_; }

    /// Number of elements (1 for rank 0). Throws `skillvec::error` if the product overflows 64 bits.
    [[nodiscard]] constexpr std::uint64_t numel() const {
        std::uint64_t n = 1;
        for (std::size_t i = 0; i < rank_; ++i) {
            if (__builtin_mul_overflow(n, dims_[i], &n))
                throw error("shape " + to_string() + ": element count overflows 64 bits");
        }
        return n;
    }

    /// "[4096, 11008]"; "[]" for rank 0.
    [[nodiscard]] std::string to_string() const {
        std::string s = "[";
        for (std::size_t i = 0; i < rank_; ++i) {
            if (i) s += ", ";
            s += std::to_string(dims_[i]);
        }
        return s + "]";
    }

    friend constexpr bool operator==(const shape& a, const shape& b) noexcept {
        return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
    }

private:
    template <class R> constexpr void assign(R&& dims) {
        for (auto d : dims) {
            if (rank_ == max_rank) throw error("shape: rank above " + std::to_string(max_rank) + " is not supported");
            if constexpr (std::is_signed_v<decltype(d)>) {
                if (d < 0) throw error("shape: negative dimension " + std::to_string(d));
            }
            dims_[rank_++] = static_cast<std::uint64_t>(d);
        }
    }

    std::array<std::uint64_t, max_rank> dims_{};
    std::uint8_t rank_ = 0;
};

} // namespace skillvec

#pragma once
/// \file
/// What a node's per-tensor hook (`prepare<I>(ctx)`, see detail::prepare_node) is told about the
/// tensor about to be evaluated: where it sits (for per-tensor parameters) and its input data (for
/// merge methods that need a statistic of the whole tensor first, such as a magnitude threshold).

#include <skillvec/core/dtype.hpp>
#include <skillvec/expr/parameter.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

namespace skillvec {

/// One tensor of an evaluation, as seen by `prepare` hooks.
struct tensor_context {
    tensor_site site;                      ///< name, layer and the model's layer count
    std::uint64_t numel = 0;               ///< elements of the tensor
    std::span<const dtype> types;          ///< dtype of every leaf of the whole expression
    std::span<const std::byte* const> data; ///< first byte of the tensor in every leaf
    unsigned threads = 0;                  ///< the backend's thread count (0: the pool's size)
    bool simd = true;                      ///< the backend's SIMD choice, for statistic passes too
    /// Releases elements [first, first + count) of every leaf (a mapped file drops the pages), for
    /// statistic passes that stream through the tensor. May be empty.
    std::function<void(std::uint64_t first, std::uint64_t count)> release;
};

} // namespace skillvec

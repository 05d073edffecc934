#pragma once
/// \file
/// The sink concept: where evaluation writes its result, one tensor at a time.
///
/// \code
///   std::span<std::byte> acquire(const tensor_info&);  // room for exactly info.nbytes() bytes
///   void commit(const tensor_info&);                   // the bytes are final
/// \endcode
///
/// Optional members: `begin(std::span<const tensor_info>)` is called once with the whole plan
/// before any tensor (a file writer lays out its header from it), and `finish()` once after the
/// last tensor when everything succeeded. A sink that is abandoned without `finish()` must not
/// leave a result that looks complete.
///
/// A *range sink* also takes a tensor piece by piece, so that it never needs a buffer the size of
/// the largest tensor and hands on each piece while it is still in cache:
///
/// \code
///   std::span<std::byte> acquire_range(const tensor_info&, std::uint64_t offset, std::uint64_t count);
///   void commit_range(const tensor_info&, std::uint64_t offset, std::uint64_t count);
/// \endcode
///
/// Evaluation then calls, for each tensor, `acquire_range`/`commit_range` for consecutive byte
/// ranges of whole elements that cover it exactly, in order, each at most `range_sink_bytes`
/// long, and then `commit(info)` (an empty tensor gets no range); it never calls `acquire`. The
/// buffers must not overlap the expression's inputs.

#include <skillvec/core/store.hpp>
#include <skillvec/core/tensor_view.hpp>

#include <cstdint>
#include <span>

namespace skillvec {

/// Receives evaluated tensors.
template <class K>
concept weight_sink = requires(K& k, const tensor_info& info) {
    { k.acquire(info) } -> std::same_as<std::span<std::byte>>;
    k.commit(info);
};

/// A sink that can also take tensors in byte ranges (see above).
template <class K>
concept range_sink = weight_sink<K> && requires(K& k, const tensor_info& info, std::uint64_t off, std::uint64_t n) {
    { k.acquire_range(info, off, n) } -> std::same_as<std::span<std::byte>>;
    k.commit_range(info, off, n);
};

/// The largest range evaluation gives a range sink: small enough that the range, and the inputs
/// it was computed from, are still in the cache when the sink copies it out.
inline constexpr std::uint64_t range_sink_bytes = std::uint64_t{1} << 20;

/// A sink that overwrites the tensors of an existing mutable store in place (for example
/// `t += lambda * (rl - sft)` on a model's own parameters). Every planned tensor must already exist
/// there with the planned dtype and shape. Element-wise kernels read an element before writing it,
/// so the output may alias an input of the expression exactly (same address); a partial overlap is
/// rejected by evaluation.
template <mutable_weight_store S> class overwrite_sink {
public:
    explicit overwrite_sink(S& store) : store_(&store) {}

    std::span<std::byte> acquire(const tensor_info& info) {
        auto v = store_->find_mutable(info.name);
        auto who = [&] { return "overwrite into '" + label_of(*store_, "store") + "', tensor '" + info.name + "'"; };
        if (!v) throw error(who() + ": no such tensor");
        if (v->type != info.type || !(v->dims == info.dims))
            throw error(who() + ": holds " + std::string(name_of(v->type)) + " " + v->dims.to_string() +
                        " but the result is " + std::string(name_of(info.type)) + " " + info.dims.to_string());
        if (v->bytes.size() != info.nbytes()) check_view(*v, who()); // throws with the details
        return v->bytes;
    }
    void commit(const tensor_info&) {}

private:
    S* store_;
};

/// `evaluate(expr, into(store))` writes the result over the store's own tensors.
template <mutable_weight_store S> [[nodiscard]] overwrite_sink<S> into(S& store) { return overwrite_sink<S>(store); }

} // namespace skillvec

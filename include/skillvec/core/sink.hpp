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

#include <skillvec/core/store.hpp>
#include <skillvec/core/tensor_view.hpp>

#include <span>

namespace skillvec {

/// Receives evaluated tensors.
template <class K>
concept weight_sink = requires(K& k, const tensor_info& info) {
    { k.acquire(info) } -> std::same_as<std::span<std::byte>>;
    k.commit(info);
};

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

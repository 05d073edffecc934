#pragma once
/// \file
/// skillvec: weight arithmetic for model merging and Parametric Skill Transfer.
///
/// \code
///   skillvec::memory_store rl = ..., sft = ..., target = ...;
///   auto v   = skillvec::weights(rl, "rl") - skillvec::weights(sft, "sft");   // a vector; nothing computed
///   auto out = skillvec::materialize(skillvec::weights(target, "target") + 1.0f * v);  // one fused pass
///   auto cos = skillvec::evaluate(skillvec::cosine(v, skillvec::weights(target) - skillvec::weights(sft)));
/// \endcode
///
/// See docs/concepts.md for the model (stores, points and vectors, laziness, lifetimes).

#include <skillvec/core/config.hpp>
#include <skillvec/core/dtype.hpp>
#include <skillvec/core/error.hpp>
#include <skillvec/core/memory_store.hpp>
#include <skillvec/core/shape.hpp>
#include <skillvec/core/sink.hpp>
#include <skillvec/core/store.hpp>
#include <skillvec/core/tensor_view.hpp>

#include <skillvec/expr/bind.hpp>
#include <skillvec/expr/evaluate.hpp>
#include <skillvec/expr/nodes.hpp>
#include <skillvec/expr/ops.hpp>
#include <skillvec/expr/reduce.hpp>
#include <skillvec/expr/space.hpp>

#include <skillvec/analysis/layers.hpp>

// Optional: #include <skillvec/interop/xtensor.hpp> for xtensor adaptors (not included here to keep
// compile times down).

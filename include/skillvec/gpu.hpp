#pragma once
/// \file
/// The Thrust backend, in one include: `skillvec::gpu`, `device_store`, and the `evaluate`,
/// `prepare` and `materialize` overloads that take it (docs/gpu.md).
///
/// Compile with nvcc (`-std=c++20 --expt-relaxed-constexpr`) for CUDA, or with a C++ compiler and
/// `-DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP -fopenmp` (or `_CPP`) to run the same code on
/// the host. Either way Thrust comes from CCCL 3 (`-isystem <cuda>/include/cccl`).

#include <skillvec/skillvec.hpp>

#include <skillvec/backend/thrust/backend.hpp>
#include <skillvec/backend/thrust/device_store.hpp>
#include <skillvec/backend/thrust/evaluate.hpp>
#include <skillvec/backend/thrust/kernels.hpp>

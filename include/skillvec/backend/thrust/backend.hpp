#pragma once
/// \file
/// The Thrust backend's tag: `evaluate(expr, sink, skillvec::gpu)`.
///
/// The backend runs the same expression nodes as the CPU backend (their `eval`, written once with
/// SKILLVEC_HD) through Thrust algorithms on Thrust's *device system*. Under nvcc that is CUDA: the
/// kernels run on the GPU. Compiled by an ordinary C++ compiler with
/// `-DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP` (or `_CPP`) it is OpenMP (or serial C++) on
/// the host, which is how the backend is tested on machines without a GPU (docs/gpu.md).
///
/// Including this header needs Thrust (CCCL 3, `-isystem <cuda>/include/cccl`); the CPU-only
/// library never includes it.

#include <thrust/version.h>

#include <cstdint>
#include <string_view>

namespace skillvec {

/// The Thrust backend. Operands held in a `device_store` are read where they are; operands in
/// any other store are copied to the device piece by piece, and so is a result bound for a host
/// sink (a memory_store, a safetensors_writer).
struct gpu_backend {
    /// Elements per piece when an operand or the result has to be staged between host and device
    /// memory: it bounds the staging buffers (one per operand, plus the result) and is how often
    /// a mapped input's pages are released. Tensors whose operands and result are all on the
    /// device run in one pass, whatever their size.
    std::uint64_t staging_elements = std::uint64_t{1} << 24;
};

/// `evaluate(expr, sink, skillvec::gpu)`.
inline constexpr gpu_backend gpu{};

/// Which Thrust device system this translation unit was compiled for: "cuda", "omp", "tbb" or
/// "cpp" (the last three run on the host; they exist to test the backend without a GPU).
[[nodiscard]] constexpr std::string_view gpu_system_name() noexcept {
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    return "cuda";
#elif THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_OMP
    return "omp";
#elif THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_TBB
    return "tbb";
#else
    return "cpp";
#endif
}

} // namespace skillvec

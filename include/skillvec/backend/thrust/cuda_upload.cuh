#pragma once
/// \file
/// CUDA only (include from .cu files): uploads a weight store to a `device_store`, overlapping
/// the reading of the source with the PCIe transfer.
///
/// A plain `device_store::upload` copies from pageable memory (a mapped file), which the driver
/// stages through its own small pinned buffer, synchronously: reading the file and transferring
/// take turns. Here the host thread copies the next piece of the source into one of `buffers`
/// pinned staging buffers while the copy engine transfers the previous ones (cudaMemcpyAsync on
/// one stream, an event per buffer), so a checkpoint streams to the GPU at about the slower of
/// the two, not their sum.

#include <skillvec/backend/thrust/device_store.hpp>

#include <cuda_runtime.h>

#include <cstring>
#include <string>
#include <vector>

namespace skillvec::cuda {

/// Pinned staging for `upload_overlapped`.
struct upload_options {
    std::size_t staging_bytes = std::size_t{64} << 20; ///< per buffer
    int buffers = 3;
};

namespace detail {
inline void check(cudaError_t e, const std::string& what) {
    if (e != cudaSuccess) throw error("upload to the GPU: " + what + ": " + cudaGetErrorString(e));
}
} // namespace detail

/// Copies every tensor of `src` into a new device_store (one allocation, src's order), with the
/// reading of the source overlapped with the transfer. Each source tensor is released once its
/// last byte has been staged.
template <weight_store S>
[[nodiscard]] device_store upload_overlapped(const S& src, std::string label = {}, upload_options opt = {}) {
    if (opt.buffers < 2 || opt.staging_bytes == 0) throw error("upload_overlapped: needs 2 or more buffers of 1 byte or more");
    device_store d(label.empty() ? label_of(src, "") : std::move(label));
    const auto [infos, views] = skillvec::detail::upload_views(src);
    d.allocate(infos);

    struct staging {
        void* host = nullptr;
        cudaEvent_t done = nullptr;
    };
    std::vector<staging> bufs(static_cast<std::size_t>(opt.buffers));
    cudaStream_t stream = nullptr;
    auto cleanup = [&] {
        if (stream) cudaStreamSynchronize(stream);
        for (auto& b : bufs) {
            if (b.done) cudaEventDestroy(b.done);
            if (b.host) cudaFreeHost(b.host);
        }
        if (stream) cudaStreamDestroy(stream);
    };
    try {
        detail::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
        for (auto& b : bufs) {
            detail::check(cudaMallocHost(&b.host, opt.staging_bytes), "cudaMallocHost");
            detail::check(cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming), "cudaEventCreate");
        }
        std::size_t next = 0;
        for (std::size_t i = 0; i < infos.size(); ++i) {
            const auto bytes = views[i].bytes;
            std::byte* dst = d.device_data(infos[i].name);
            for (std::size_t off = 0; off < bytes.size(); off += opt.staging_bytes) {
                const std::size_t c = std::min(opt.staging_bytes, bytes.size() - off);
                staging& b = bufs[next];
                next = (next + 1) % bufs.size();
                // Wait until this buffer's previous transfer is done, then refill it (this read of
                // the source overlaps the transfers still queued from the other buffers).
                detail::check(cudaEventSynchronize(b.done), "cudaEventSynchronize");
                std::memcpy(b.host, bytes.data() + off, c);
                detail::check(cudaMemcpyAsync(dst + off, b.host, c, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
                detail::check(cudaEventRecord(b.done, stream), "cudaEventRecord");
            }
            release(src, infos[i].name); // its bytes are all in pinned buffers or on the device
        }
        detail::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    } catch (...) {
        cleanup();
        throw;
    }
    cleanup();
    return d;
}

} // namespace skillvec::cuda

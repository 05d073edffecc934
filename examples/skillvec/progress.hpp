#pragma once
// A progress line on stderr for long commands: tensors and bytes done, rate and ETA. Quiet when
// stderr is not a terminal or --quiet is given. Also the place where Ctrl-C is noticed: the sink
// wrapper throws between tensors, so writers unwind and remove their temporary outputs.
#include <skillvec/core/error.hpp>
#include <skillvec/core/sink.hpp>
#include <skillvec/core/tensor_view.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <span>
#include <string>

#include <unistd.h>

namespace skillvec::cli {

inline std::atomic<bool>& interrupted() {
    static std::atomic<bool> flag{false};
    return flag;
}

/// From here on, SIGINT and SIGTERM set interrupted(), which progress::advance turns into an
/// exception between tensors. Install it only where that check runs (the tensor loop): before it,
/// a command stuck in, say, open() on a FIFO would otherwise ignore both signals for ever. A
/// second signal before the first was acted on ends the process at once.
inline void install_interrupt_handler() {
    auto on_signal = [](int sig) {
        if (interrupted().exchange(true)) {
            std::signal(sig, SIG_DFL);
            std::raise(sig);
        }
    };
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
}

inline std::string human_bytes(double b) {
    const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000 && u < 4) b /= 1000, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", b, units[u]);
    return buf;
}

class progress {
public:
    progress(std::size_t tensors, double bytes, bool enabled)
        : total_tensors_(tensors), total_bytes_(bytes), enabled_(enabled && ::isatty(STDERR_FILENO)),
          start_(std::chrono::steady_clock::now()) {}
    ~progress() { clear(); }

    /// One tensor of `bytes` output bytes is done.
    void advance(double bytes) {
        ++tensors_;
        bytes_ += bytes;
        if (interrupted().load()) throw error("interrupted");
        if (!enabled_) return;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_ < std::chrono::milliseconds(100) && tensors_ < total_tensors_) return;
        last_ = now;
        const double secs = std::chrono::duration<double>(now - start_).count();
        const double rate = secs > 0 ? bytes_ / secs : 0;
        const double frac = total_bytes_ > 0 ? bytes_ / total_bytes_ : 1.0;
        const double eta = rate > 0 ? (total_bytes_ - bytes_) / rate : 0;
        char bar[31];
        const int filled = static_cast<int>(frac * 30);
        for (int i = 0; i < 30; ++i) bar[i] = i < filled ? '#' : '.';
        bar[30] = 0;
        const int n = std::fprintf(stderr, "\r[%s] %3.0f%%  %zu/%zu tensors  %s/%s  %s/s  ETA %.0fs   ", bar, frac * 100, tensors_,
                                   total_tensors_, human_bytes(bytes_).c_str(), human_bytes(total_bytes_).c_str(),
                                   human_bytes(rate).c_str(), eta);
        width_ = std::max(width_, n);
        std::fflush(stderr);
        drawn_ = true;
    }

    void clear() {
        if (drawn_) std::fprintf(stderr, "\r%*s\r", width_, "");
        drawn_ = false;
    }

private:
    std::size_t total_tensors_, tensors_ = 0;
    double total_bytes_, bytes_ = 0;
    bool enabled_, drawn_ = false;
    int width_ = 0;
    std::chrono::steady_clock::time_point start_, last_{};
};

/// Forwards to a sink and reports each committed tensor to a progress line.
template <class Sink> class progress_sink {
public:
    progress_sink(Sink& sink, progress& p) : sink_(&sink), p_(&p) {}
    void begin(std::span<const tensor_info> plan) {
        if constexpr (requires { sink_->begin(plan); }) sink_->begin(plan);
    }
    std::span<std::byte> acquire(const tensor_info& i) { return sink_->acquire(i); }
    // A range sink stays one (so the writer gets tensors in cache-sized pieces).
    std::span<std::byte> acquire_range(const tensor_info& i, std::uint64_t off, std::uint64_t n)
        requires range_sink<Sink>
    {
        return sink_->acquire_range(i, off, n);
    }
    void commit_range(const tensor_info& i, std::uint64_t off, std::uint64_t n)
        requires range_sink<Sink>
    {
        sink_->commit_range(i, off, n);
    }
    void commit(const tensor_info& i) {
        sink_->commit(i);
        p_->advance(static_cast<double>(i.nbytes()));
    }
    void finish() {
        if constexpr (requires { sink_->seal(); sink_->publish(); }) {
            sink_->seal(); // the slow part (fsync): a Ctrl-C during it still cancels the output
            if (interrupted().load()) throw error("interrupted");
            sink_->publish();
        } else if constexpr (requires { sink_->finish(); }) {
            sink_->finish();
        }
    }

private:
    Sink* sink_;
    progress* p_;
};

} // namespace skillvec::cli

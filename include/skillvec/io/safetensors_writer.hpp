#pragma once
/// \file
/// `safetensors_writer`: a sink that writes a Hugging Face style checkpoint.
///
///   out/                      (out has no .safetensors extension: a checkpoint directory)
///     model.safetensors                       one shard, or
///     model-00001-of-00003.safetensors ...    several, with
///     model.safetensors.index.json            {"metadata": {"total_size": N}, "weight_map": {...}}
///     config.json, tokenizer files, ...        copied from copy_files_from
///   out.safetensors           (a .safetensors path: one file)
///
/// Nothing is ever half-written where a reader would find it. Everything goes to a hidden
/// temporary directory beside the output, renamed into place by `finish()` once every tensor is
/// written and synced. A writer destroyed without `finish()` (an error, an exception) removes its
/// temporary directory. A killed process leaves only `.<name>.skillvec-tmp-*`, which no loader
/// mistakes for a checkpoint. An existing output is never replaced unless `overwrite` is set.
/// Shard files are preallocated in `begin()`, so a full disk is reported before any work, and
/// writes use pwrite from one reused buffer, so a late I/O error is an exception, never SIGBUS.
/// It is a range sink (core/sink.hpp): evaluation hands it tensors in 1 MiB ranges, so that
/// buffer stays 1 MiB and each range is copied out while it is still in cache.

#include <skillvec/core/config.hpp>
#include <skillvec/core/error.hpp>
#include <skillvec/core/memory_store.hpp> // detail::allocate_aligned
#include <skillvec/core/tensor_view.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace skillvec {

struct safetensors_writer_options {
    /// Largest shard; a tensor larger than this gets a shard of its own. Hugging Face's default.
    std::uint64_t max_shard_bytes = 5'000'000'000;
    /// Written as every shard's __metadata__. "format": "pt" is added if absent (transformers
    /// checks it). Record here how the file was made: recipe, lambda, inputs.
    std::map<std::string, std::string> metadata = {};
    /// A checkpoint directory whose non-weight files (config.json, tokenizer files,
    /// generation_config.json, ...) are copied into the output.
    std::optional<std::filesystem::path> copy_files_from = std::nullopt;
    /// Replace an existing output (after the new one is complete). Off: an existing output is an error.
    bool overwrite = false;
};

class safetensors_writer {
public:
    /// Prepares to write `out` (a directory, or one file if it ends in .safetensors). Fails now,
    /// before any work, if `out` exists (without `overwrite`) or its parent does not.
    explicit safetensors_writer(std::filesystem::path out, safetensors_writer_options opt = {})
        : out_(std::move(out)), opt_(std::move(opt)) {
        namespace fs = std::filesystem;
        if (out_.filename().empty()) out_ = out_.parent_path(); // "dir/" -> "dir"
        single_file_ = out_.extension() == ".safetensors";
        std::error_code ec;
        if (fs::exists(out_, ec) && !opt_.overwrite)
            throw error(out_.string() + ": already exists (choose another output, or overwrite)");
        const fs::path parent = out_.has_parent_path() ? out_.parent_path() : fs::path(".");
        if (!fs::is_directory(parent, ec)) throw error(out_.string() + ": parent directory " + parent.string() + " does not exist");
        if (opt_.max_shard_bytes == 0) throw error(out_.string() + ": max shard size must be positive");
        std::string templ = (parent / ("." + out_.filename().string() + ".skillvec-tmp-XXXXXX")).string();
        if (!::mkdtemp(templ.data())) throw error(out_.string() + ": cannot create a temporary directory beside it: " + std::strerror(errno));
        tmp_ = templ;
    }

    safetensors_writer(const safetensors_writer&) = delete;
    safetensors_writer& operator=(const safetensors_writer&) = delete;

    /// Removes the temporary output unless finish() succeeded.
    ~safetensors_writer() {
        for (auto& s : shards_)
            if (s.fd >= 0) ::close(s.fd);
        if (!finished_) {
            std::error_code ec;
            std::filesystem::remove_all(tmp_, ec);
        }
    }

    /// Lays out the shards and their headers for the whole plan, and reserves their space.
    void begin(std::span<const tensor_info> plan) {
        if (begun_) throw error(out_.string() + ": begin() called twice");
        begun_ = true;
        // Greedy shards in plan order (the source order, which keeps layers together).
        shards_.clear();
        for (std::size_t i = 0; i < plan.size(); ++i) {
            const std::uint64_t nb = plan[i].nbytes();
            if (shards_.empty() || (!single_file_ && shards_.back().data_bytes > 0 &&
                                    shards_.back().data_bytes + nb > opt_.max_shard_bytes))
                shards_.emplace_back();
            shard& s = shards_.back();
            slots_.emplace(plan[i].name, slot{shards_.size() - 1, s.data_bytes, plan[i]});
            s.tensors.push_back(i);
            s.data_bytes += nb;
            total_bytes_ += nb;
        }
        if (shards_.empty()) shards_.emplace_back(); // an empty checkpoint is still a valid file
        auto meta = opt_.metadata;
        meta.emplace("format", "pt");
        const std::size_t n = shards_.size();
        for (std::size_t k = 0; k < n; ++k) {
            shard& s = shards_[k];
            if (single_file_) s.name = out_.filename().string();
            else if (n == 1) s.name = "model.safetensors";
            else {
                char buf[64];
                std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, n);
                s.name = buf;
            }
            nlohmann::ordered_json h;
            h["__metadata__"] = meta;
            std::uint64_t at = 0;
            for (std::size_t i : s.tensors) {
                const tensor_info& t = plan[i];
                nlohmann::ordered_json e;
                e["dtype"] = std::string(name_of(t.type));
                e["shape"] = std::vector<std::uint64_t>(t.dims.begin(), t.dims.end());
                e["data_offsets"] = {at, at + t.nbytes()};
                at += t.nbytes();
                h[t.name] = std::move(e);
            }
            std::string text = h.dump();
            while ((8 + text.size()) % 8) text += ' '; // data starts 8-byte aligned
            s.header_bytes = 8 + text.size();
            const std::string path = (tmp_ / s.name).string();
            s.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (s.fd < 0) fail(s, "cannot create", errno);
            reserve(s, s.header_bytes + s.data_bytes);
            std::vector<std::byte> head(s.header_bytes);
            const std::uint64_t len = text.size();
            for (int b = 0; b < 8; ++b) head[static_cast<std::size_t>(b)] = static_cast<std::byte>((len >> (8 * b)) & 0xFF);
            std::memcpy(head.data() + 8, text.data(), text.size());
            write_all(s, head.data(), head.size(), 0, "writing the header");
        }
        for (auto& [name, sl] : slots_) sl.offset += shards_[sl.shard].header_bytes;
    }

    /// A buffer for one tensor's bytes (reused from tensor to tensor).
    std::span<std::byte> acquire(const tensor_info& info) {
        (void)find(info); // planned, with this dtype and shape
        return buffer(info.nbytes());
    }

    /// A buffer for bytes [offset, offset + count) of a tensor: ranges come in order and cover
    /// the tensor (a range sink, see core/sink.hpp). Memory stays at one range, whatever the
    /// tensor's size, and each range is written while it is still in cache.
    std::span<std::byte> acquire_range(const tensor_info& info, std::uint64_t offset, std::uint64_t count) {
        slot& sl = find(info);
        if (sl.written || offset != sl.ranged || count > info.nbytes() - offset)
            throw error(out_.string() + ": tensor '" + info.name + "': range [" + std::to_string(offset) + ", " +
                        std::to_string(offset + count) + ") is out of order or out of bounds");
        sl.by_ranges = true;
        return buffer(count);
    }

    /// Writes an acquired range to its place in its shard.
    void commit_range(const tensor_info& info, std::uint64_t offset, std::uint64_t count) {
        slot& sl = find(info);
        if (!sl.by_ranges || offset != sl.ranged || count > info.nbytes() - offset)
            throw error(out_.string() + ": tensor '" + info.name + "': committed a range that was not acquired");
        write_all(shards_[sl.shard], buffer_.get(), count, sl.offset + offset, "writing tensor '" + info.name + "'");
        sl.ranged += count;
    }

    /// Writes the acquired buffer to its place in its shard (after acquire), or checks that the
    /// ranges written cover the tensor (after acquire_range/commit_range).
    void commit(const tensor_info& info) {
        slot& sl = find(info);
        if (!sl.by_ranges) {
            write_all(shards_[sl.shard], buffer_.get(), info.nbytes(), sl.offset, "writing tensor '" + info.name + "'");
        } else if (sl.ranged != info.nbytes()) {
            throw error(out_.string() + ": tensor '" + info.name + "': ranges cover " + std::to_string(sl.ranged) + " of " +
                        std::to_string(info.nbytes()) + " bytes");
        }
        sl.written = true;
        written_bytes_ += info.nbytes();
    }

    /// Syncs the shards, writes the index and the copied files, and renames the result into place:
    /// seal() then publish().
    void finish() {
        seal();
        publish();
    }

    /// The first half of finish(): checks every planned tensor was written, syncs the shards,
    /// writes the index and copies the side files, all still under the temporary name. Writing
    /// several outputs, seal them all and only then publish them all: a failure or a kill while
    /// sealing (the slow part) then leaves none of them in place.
    void seal() {
        if (sealed_) return;
        if (!begun_) begin({});
        for (const auto& [name, sl] : slots_)
            if (!sl.written) throw error(out_.string() + ": tensor '" + name + "' was planned but never written");
        for (auto& s : shards_) {
            if (::fsync(s.fd) != 0) fail(s, "cannot sync", errno);
            if (::close(s.fd) != 0) {
                s.fd = -1;
                fail(s, "cannot close", errno);
            }
            s.fd = -1;
        }
        if (!single_file_) {
            if (shards_.size() > 1) write_index();
            if (opt_.copy_files_from) copy_side_files(*opt_.copy_files_from);
        }
        sync_dir(tmp_);
        sealed_ = true;
    }

    /// The second half of finish(): renames the sealed output into place (a rename or two).
    void publish() {
        namespace fs = std::filesystem;
        if (!sealed_) throw error(out_.string() + ": publish() before seal()");
        if (finished_) return;
        std::error_code ec;
        const fs::path produced = single_file_ ? tmp_ / shards_.front().name : tmp_;
        const auto appeared = [&] {
            return error(out_.string() + ": already exists (it appeared while this output was being written); left as it is, "
                                         "and the new output discarded");
        };
        fs::path backup;
        if (occupied(out_)) {
            // The constructor checked; something created it since. Only `overwrite` may replace it.
            if (!opt_.overwrite) throw appeared();
            backup = out_.string() + ".skillvec-old"; // keep the old output until the new one is in place
            fs::remove_all(backup, ec);
            fs::rename(out_, backup, ec);
            if (ec) throw error(out_.string() + ": cannot move the existing output aside: " + ec.message());
            fs::rename(produced, out_, ec);
        } else {
            rename_no_replace(produced, out_, ec); // an output that appears meanwhile is never clobbered
            if (ec == std::errc::file_exists || ec == std::errc::directory_not_empty) throw appeared();
        }
        if (ec) {
            const std::string why = ec.message(); // before the restore below reuses ec
            if (!backup.empty()) fs::rename(backup, out_, ec);
            throw error(out_.string() + ": cannot rename the finished output into place: " + why);
        }
        if (!backup.empty()) fs::remove_all(backup, ec);
        if (single_file_) fs::remove_all(tmp_, ec);
        sync_dir(out_.has_parent_path() ? out_.parent_path() : fs::path("."));
        finished_ = true;
    }

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return out_; }
    [[nodiscard]] std::size_t shard_count() const noexcept { return shards_.size(); }
    [[nodiscard]] std::uint64_t total_bytes() const noexcept { return total_bytes_; }
    [[nodiscard]] std::uint64_t written_bytes() const noexcept { return written_bytes_; }

private:
    struct shard {
        std::string name;
        std::vector<std::size_t> tensors; // plan indices
        std::uint64_t data_bytes = 0, header_bytes = 0;
        int fd = -1;
    };
    struct slot {
        std::size_t shard;
        std::uint64_t offset; // in its file (after begin())
        tensor_info info;
        bool written = false;
        bool by_ranges = false;   // acquire_range was used
        std::uint64_t ranged = 0; // bytes written so far through commit_range
    };

    slot& find(const tensor_info& info) {
        if (!begun_) throw error(out_.string() + ": acquire() before begin()");
        const auto it = slots_.find(info.name);
        if (it == slots_.end()) throw error(out_.string() + ": tensor '" + info.name + "' is not in the plan");
        if (it->second.info.type != info.type || !(it->second.info.dims == info.dims))
            throw error(out_.string() + ": tensor '" + info.name + "' does not match its planned dtype and shape");
        return it->second;
    }

    /// The reused buffer, grown to at least `bytes`.
    std::span<std::byte> buffer(std::uint64_t bytes) {
        if (bytes > capacity_) {
            buffer_ = detail::allocate_aligned(static_cast<std::size_t>(bytes));
            capacity_ = bytes;
        }
        return {buffer_.get(), static_cast<std::size_t>(bytes)};
    }

    /// Whether anything (a file, a directory, a dangling symlink) is at `p`.
    static bool occupied(const std::filesystem::path& p) {
        std::error_code ec;
        return std::filesystem::exists(p, ec) || std::filesystem::is_symlink(p, ec);
    }

    /// rename(2) that fails with EEXIST instead of replacing `to` (renameat2 RENAME_NOREPLACE;
    /// where that is missing, a check then rename, which leaves a small race).
    static void rename_no_replace(const std::filesystem::path& from, const std::filesystem::path& to, std::error_code& ec) {
        ec.clear();
#ifdef RENAME_NOREPLACE
        if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return;
        if (errno != EINVAL && errno != ENOSYS) { // not EINVAL/ENOSYS: the file system supports the flag
            ec.assign(errno, std::generic_category());
            return;
        }
#endif
        if (occupied(to)) {
            ec = std::make_error_code(std::errc::file_exists);
            return;
        }
        std::filesystem::rename(from, to, ec);
    }

    [[noreturn]] void fail(const shard& s, const std::string& what, int err) const {
        const std::string reason = err == ENOSPC   ? "disk full"
                                   : err == EDQUOT ? "disk quota exceeded"
                                   : err == EFBIG  ? "file too large (a file size limit, or the file system's maximum)"
                                                   : std::strerror(err);
        // A single-file output is out_ itself, not out_/<its own name>.
        throw error((single_file_ && s.name == out_.filename().string() ? out_ : out_ / s.name).string() + ": " + what + ": " + reason);
    }

    void reserve(const shard& s, std::uint64_t bytes) const {
        if (bytes == 0) return;
        const int r = ::posix_fallocate(s.fd, 0, static_cast<off_t>(bytes));
        if (r == ENOSPC || r == EDQUOT || r == EFBIG) fail(s, "cannot reserve " + std::to_string(bytes) + " bytes", r);
        // EOPNOTSUPP/EINVAL: the file system cannot preallocate; writes will report errors instead.
    }

    void write_all(const shard& s, const std::byte* p, std::uint64_t n, std::uint64_t offset, const std::string& what) const {
        while (n > 0) {
            const std::size_t step = static_cast<std::size_t>(std::min<std::uint64_t>(n, std::uint64_t{1} << 30));
            const ssize_t w = ::pwrite(s.fd, p, step, static_cast<off_t>(offset));
            if (w < 0) {
                if (errno == EINTR) continue;
                fail(s, what, errno);
            }
            if (w == 0) fail(s, what, ENOSPC);
            p += w;
            n -= static_cast<std::uint64_t>(w);
            offset += static_cast<std::uint64_t>(w);
        }
    }

    void write_index() {
        nlohmann::ordered_json idx;
        idx["metadata"]["total_size"] = total_bytes_;
        std::map<std::string, std::string> wm; // sorted by tensor name, as transformers writes it
        for (const auto& [name, sl] : slots_) wm[name] = shards_[sl.shard].name;
        idx["weight_map"] = wm;
        write_text_file(tmp_ / "model.safetensors.index.json", idx.dump(2) + "\n");
    }

    /// Copies regular files that are not weights (or weight indexes) from a checkpoint directory.
    void copy_side_files(const std::filesystem::path& from) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (!fs::is_directory(from, ec)) return;
        for (const auto& e : fs::directory_iterator(from, ec)) {
            if (!e.is_regular_file()) continue;
            const std::string name = e.path().filename().string();
            const std::string ext = e.path().extension().string();
            const bool weights = ext == ".safetensors" || ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt" ||
                                 ext == ".h5" || ext == ".msgpack" || ext == ".gguf" || ext == ".onnx" ||
                                 name.ends_with(".index.json");
            if (weights || name.starts_with(".")) continue;
            fs::copy_file(e.path(), tmp_ / name, fs::copy_options::overwrite_existing, ec);
            // libstdc++ reports a copy that stopped short (a full disk, a file size limit) as EIO.
            if (ec)
                throw error((out_ / name).string() + ": cannot copy " + e.path().string() + ": " + ec.message() +
                            (ec == std::errc::io_error ? " (the copy stopped short: disk full?)" : ""));
        }
    }

    void write_text_file(const std::filesystem::path& p, const std::string& text) const {
        shard s;
        s.name = p.filename().string();
        s.fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (s.fd < 0) fail(s, "cannot create", errno);
        try {
            write_all(s, reinterpret_cast<const std::byte*>(text.data()), text.size(), 0, "writing");
            if (::fsync(s.fd) != 0) fail(s, "cannot sync", errno);
        } catch (...) {
            ::close(s.fd);
            throw;
        }
        ::close(s.fd);
    }

    static void sync_dir(const std::filesystem::path& d) noexcept {
        const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            ::fsync(fd);
            ::close(fd);
        }
    }

    std::filesystem::path out_, tmp_;
    safetensors_writer_options opt_;
    bool single_file_ = false, begun_ = false, sealed_ = false, finished_ = false;
    std::vector<shard> shards_;
    std::unordered_map<std::string, slot> slots_;
    std::uint64_t total_bytes_ = 0, written_bytes_ = 0;
    detail::aligned_bytes buffer_;
    std::uint64_t capacity_ = 0;
};

static_assert(weight_sink<safetensors_writer>);

} // namespace skillvec

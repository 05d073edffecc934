#pragma once
/// \file
/// `safetensors_store`: a read-only, memory-mapped safetensors checkpoint (one file, or a
/// Hugging Face directory with `model.safetensors.index.json` and shards) as a weight store.
///
/// Validation follows the reference reader (the `safetensors` Rust crate) rule by rule, and is
/// stricter where it is silent: the header length (<= 100,000,000) and its bounds, UTF-8, a JSON
/// object starting with '{', no duplicate keys, known dtypes, offsets that tile the data buffer
/// from 0 without holes or overlaps, checked element and byte counts, sub-byte tensors that fill
/// whole bytes, and a file exactly as long as header plus data. For a sharded checkpoint the
/// index must agree with the shards both ways. Every violation throws `safetensors_error`, which
/// names the file, the tensor when there is one, and the rule.
///
/// Views are zero-copy slices of the mapping (possibly unaligned). `release` drops the pages of a
/// consumed tensor (or of a consumed range of it) from this process, so that a merge's resident
/// memory does not grow with the model: the file stays in the page cache, not in the process.

#include <skillvec/core/dtype.hpp>
#include <skillvec/core/error.hpp>
#include <skillvec/core/store.hpp>
#include <skillvec/core/tensor_view.hpp>
#include <skillvec/core/memory_store.hpp> // detail::string_hash

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace skillvec {

/// Which rule of the format a file broke.
enum class safetensors_rule {
    io,                    ///< the file could not be opened, read or mapped
    header_too_small,      ///< fewer than 8 bytes: no header length
    header_too_large,      ///< header length above 100,000,000
    header_beyond_file,    ///< 8 + header length runs past the end of the file
    header_not_utf8,       ///< header bytes are not UTF-8
    header_bad_start,      ///< header does not start with '{'
    header_not_json,       ///< header is not JSON (or not an object)
    duplicate_key,         ///< a key appears twice in one JSON object
    bad_entry,             ///< a tensor entry lacks or mistypes dtype, shape or data_offsets
    unknown_dtype,         ///< dtype not in the safetensors list
    bad_metadata,          ///< __metadata__ is not an object of strings
    offsets_reversed,      ///< end < begin
    offsets_not_contiguous,///< offsets (sorted) do not start at 0 and touch: a hole or an overlap
    size_overflow,         ///< element or bit count overflows 64 bits
    misaligned,            ///< elements x bits is not a whole number of bytes
    size_mismatch,         ///< end - begin differs from what dtype and shape need
    file_length_mismatch,  ///< 8 + header + data differs from the file's length (trailing or missing bytes)
    index_invalid,         ///< model.safetensors.index.json is not the expected JSON
    index_missing_shard,   ///< the index names a shard file that does not exist
    index_disagrees,       ///< index and shards disagree about which tensor lives where
    no_checkpoint          ///< a directory with no safetensors file, or several and no index
};

[[nodiscard]] constexpr std::string_view name_of(safetensors_rule r) noexcept {
    switch (r) {
    case safetensors_rule::io: return "cannot read";
    case safetensors_rule::header_too_small: return "header too small";
    case safetensors_rule::header_too_large: return "header too large";
    case safetensors_rule::header_beyond_file: return "header beyond end of file";
    case safetensors_rule::header_not_utf8: return "header not UTF-8";
    case safetensors_rule::header_bad_start: return "header does not start with '{'";
    case safetensors_rule::header_not_json: return "header not a JSON object";
    case safetensors_rule::duplicate_key: return "duplicate key";
    case safetensors_rule::bad_entry: return "bad tensor entry";
    case safetensors_rule::unknown_dtype: return "unknown dtype";
    case safetensors_rule::bad_metadata: return "bad __metadata__";
    case safetensors_rule::offsets_reversed: return "data_offsets end before begin";
    case safetensors_rule::offsets_not_contiguous: return "data_offsets not contiguous";
    case safetensors_rule::size_overflow: return "size overflow";
    case safetensors_rule::misaligned: return "not a whole number of bytes";
    case safetensors_rule::size_mismatch: return "byte size mismatch";
    case safetensors_rule::file_length_mismatch: return "file length mismatch";
    case safetensors_rule::index_invalid: return "invalid index";
    case safetensors_rule::index_missing_shard: return "missing shard";
    case safetensors_rule::index_disagrees: return "index disagrees with shards";
    case safetensors_rule::no_checkpoint: return "no checkpoint";
    }
    return "?";
}

/// A safetensors file or checkpoint broke a rule. what() is one line:
/// "<file>: tensor '<name>': <rule>: <detail>" (the tensor part only when there is one), with
/// control characters (a newline or NUL in a tensor name, say) written as \xNN; file() and
/// tensor() are the names as they are.
class safetensors_error : public error {
public:
    safetensors_error(std::string file, std::string tensor, safetensors_rule rule, const std::string& detail)
        : error(format(file, tensor, rule, detail)), file_(std::move(file)), tensor_(std::move(tensor)), rule_(rule) {}
    [[nodiscard]] const std::string& file() const noexcept { return file_; }
    [[nodiscard]] const std::string& tensor() const noexcept { return tensor_; }
    [[nodiscard]] safetensors_rule rule() const noexcept { return rule_; }

private:
    static std::string format(const std::string& file, const std::string& tensor, safetensors_rule rule,
                              const std::string& detail) {
        std::string s = file + ": ";
        if (!tensor.empty()) s += "tensor '" + tensor + "': ";
        s += std::string(name_of(rule));
        if (!detail.empty()) s += ": " + detail;
        std::string out; // control characters would break the line, or end what() early (NUL)
        out.reserve(s.size());
        for (const char c : s) {
            const auto u = static_cast<unsigned char>(c);
            if (u >= 0x20 && u != 0x7F) {
                out += c;
            } else {
                constexpr char hex[] = "0123456789ABCDEF";
                out += "\\x";
                out += hex[u >> 4];
                out += hex[u & 0xF];
            }
        }
        return out;
    }
    std::string file_, tensor_;
    safetensors_rule rule_;
};

namespace io {

/// Largest header the reference reader accepts.
inline constexpr std::uint64_t max_header_bytes = 100'000'000;

/// One tensor as the header describes it. Offsets are relative to the data buffer.
struct header_entry {
    std::string name;
    dtype type = dtype::f32;
    skillvec::shape dims;
    std::uint64_t begin = 0, end = 0;
};

/// A validated header.
struct header {
    std::uint64_t header_bytes = 0;       ///< N, the JSON's length (including padding)
    std::vector<header_entry> entries;    ///< in data order (by begin offset)
    std::map<std::string, std::string> metadata;
    [[nodiscard]] std::uint64_t data_offset() const noexcept { return 8 + header_bytes; }
};

namespace detail {

/// True if s is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
[[nodiscard]] inline bool valid_utf8(std::string_view s) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const auto* end = p + s.size();
    while (p < end) {
        const unsigned char c = *p;
        if (c < 0x80) {
            ++p;
            continue;
        }
        int n;
        std::uint32_t cp;
        if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07;
        else return false;
        if (end - p <= n) return false;
        for (int i = 1; i <= n; ++i) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false; // overlong
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        p += n + 1;
    }
    return true;
}

/// Parses JSON, rejecting duplicate keys in any object (nlohmann keeps the last one silently).
/// Returns the key path of the first duplicate in `dup`, or parses normally.
inline nlohmann::json parse_json_strict(std::string_view text, std::string& dup) {
    std::vector<std::set<std::string>> keys; // one set per open object
    std::vector<std::string> path;
    auto cb = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
        using ev_t = nlohmann::json::parse_event_t;
        if (ev == ev_t::object_start) {
            keys.emplace_back();
        } else if (ev == ev_t::object_end) {
            if (!keys.empty()) keys.pop_back();
        } else if (ev == ev_t::key && !keys.empty()) {
            const std::string k = parsed.get<std::string>();
            if (!keys.back().insert(k).second && dup.empty()) dup = k;
        }
        return true;
    };
    return nlohmann::json::parse(text.begin(), text.end(), cb);
}

} // namespace detail

/// Validates a whole safetensors file held in memory (header + data) and returns its header.
/// `file` names it in errors. This is the parser the fuzzer drives.
[[nodiscard]] inline header parse_header(std::span<const std::byte> bytes, const std::string& file) {
    using R = safetensors_rule;
    auto fail = [&](R rule, const std::string& detail, const std::string& tensor = {}) {
        throw safetensors_error(file, tensor, rule, detail);
    };
    if (bytes.size() < 8) fail(R::header_too_small, std::to_string(bytes.size()) + " bytes; the header length alone takes 8");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<std::uint8_t>(bytes[static_cast<std::size_t>(i)]);
    if (n > max_header_bytes) fail(R::header_too_large, std::to_string(n) + " bytes (the limit is 100000000)");
    if (n > bytes.size() - 8)
        fail(R::header_beyond_file, "8 + " + std::to_string(n) + " header bytes, but the file has " + std::to_string(bytes.size()));
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<std::size_t>(n));
    if (!detail::valid_utf8(text)) fail(R::header_not_utf8, "");
    if (text.empty() || text.front() != '{') fail(R::header_bad_start, "");
    nlohmann::json j;
    std::string dup;
    try {
        j = detail::parse_json_strict(text, dup);
    } catch (const nlohmann::json::exception& e) {
        fail(R::header_not_json, e.what());
    }
    if (!dup.empty()) fail(R::duplicate_key, "'" + dup + "'");
    if (!j.is_object()) fail(R::header_not_json, "the header is not an object");

    header h;
    h.header_bytes = n;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& name = it.key();
        const auto& v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object()) fail(R::bad_metadata, "not an object");
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string()) fail(R::bad_metadata, "value of '" + m.key() + "' is not a string");
                h.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        if (!v.is_object()) fail(R::bad_entry, "not an object", name);
        header_entry e;
        e.name = name;
        const auto dt = v.find("dtype"), sh = v.find("shape"), off = v.find("data_offsets");
        if (dt == v.end() || !dt->is_string()) fail(R::bad_entry, "missing or non-string 'dtype'", name);
        const auto parsed = parse_dtype(dt->get<std::string>());
        if (!parsed || dt->get<std::string>() != name_of(*parsed))
            fail(R::unknown_dtype, "'" + dt->get<std::string>() + "'", name);
        e.type = *parsed;
        if (sh == v.end() || !sh->is_array()) fail(R::bad_entry, "missing or non-array 'shape'", name);
        if (sh->size() > shape::max_rank) fail(R::bad_entry, "rank " + std::to_string(sh->size()) + " is above 8", name);
        std::vector<std::uint64_t> dims;
        for (const auto& d : *sh) {
            if (!d.is_number_unsigned()) // an array or object by its kind: dump() recurses, and nesting is unbounded
                fail(R::bad_entry,
                     "shape holds " + (d.is_structured() ? std::string("an ") + d.type_name() : d.dump()) +
                         ", not a non-negative integer",
                     name);
            dims.push_back(d.get<std::uint64_t>());
        }
        e.dims = shape(dims);
        if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
            !(*off)[1].is_number_unsigned())
            fail(R::bad_entry, "'data_offsets' must be two non-negative integers", name);
        e.begin = (*off)[0].get<std::uint64_t>();
        e.end = (*off)[1].get<std::uint64_t>();
        h.entries.push_back(std::move(e));
    }
    // Sorted by offsets, the tensors must tile the data buffer from 0: no hole, no overlap.
    std::stable_sort(h.entries.begin(), h.entries.end(), [](const header_entry& a, const header_entry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t at = 0;
    for (const auto& e : h.entries) {
        if (e.end < e.begin) fail(R::offsets_reversed, "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ")", e.name);
        if (e.begin != at)
            fail(R::offsets_not_contiguous,
                 "begins at " + std::to_string(e.begin) + " where " + std::to_string(at) +
                     (e.begin < at ? " was expected (overlap)" : " was expected (hole)"),
                 e.name);
        std::uint64_t count = 1, bits = 0;
        for (auto d : e.dims)
            if (__builtin_mul_overflow(count, d, &count)) fail(R::size_overflow, "element count of " + e.dims.to_string(), e.name);
        if (__builtin_mul_overflow(count, static_cast<std::uint64_t>(bits_of(e.type)), &bits))
            fail(R::size_overflow, "bit count of " + e.dims.to_string() + " " + std::string(name_of(e.type)), e.name);
        if (bits % 8 != 0)
            fail(R::misaligned, std::to_string(count) + " elements of " + std::string(name_of(e.type)), e.name);
        if (e.end - e.begin != bits / 8)
            fail(R::size_mismatch,
                 std::string(name_of(e.type)) + " " + e.dims.to_string() + " needs " + std::to_string(bits / 8) +
                     " bytes, data_offsets span " + std::to_string(e.end - e.begin),
                 e.name);
        at = e.end;
    }
    // n <= 1e8 and bytes.size() >= 8 + n here, so only `at` can make 8 + n + at wrap around.
    const std::uint64_t room = bytes.size() - 8 - n;
    if (at != room)
        fail(R::file_length_mismatch,
             at > room ? "data take " + std::to_string(at) + " bytes but the file has " + std::to_string(room) + " after the header (truncated)"
                       : "header and data take " + std::to_string(8 + n + at) + " bytes but the file has " +
                             std::to_string(bytes.size()) + " (trailing bytes)");
    return h;
}

/// A read-only memory mapping of a whole file.
class mapped_file {
public:
    explicit mapped_file(const std::filesystem::path& path) : path_(path.string()) {
        // O_NONBLOCK: a FIFO must not block open() before fstat() can refuse it (no effect on files).
        fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd_ < 0) throw safetensors_error(path_, "", safetensors_rule::io, std::strerror(errno));
        struct stat st{};
        if (::fstat(fd_, &st) != 0) fail_errno();
        if (!S_ISREG(st.st_mode)) {
            ::close(fd_);
            throw safetensors_error(path_, "", safetensors_rule::io, "not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
            if (p == MAP_FAILED) fail_errno();
            data_ = static_cast<const std::byte*>(p);
            ::madvise(const_cast<std::byte*>(data_), size_, MADV_SEQUENTIAL);
        }
    }
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;
    ~mapped_file() {
        if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
        if (fd_ >= 0) ::close(fd_);
    }

    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }

    /// Drops the pages wholly inside [offset, offset + count) from this process (they stay in the
    /// page cache and come back on the next touch). Partial pages at the ends are kept, since a
    /// neighbour may still be in use.
    void release(std::uint64_t offset, std::uint64_t count) const noexcept {
        if (!data_ || count == 0) return;
        static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
        const auto base = reinterpret_cast<std::uintptr_t>(data_);
        const std::uint64_t first = (base + offset + page - 1) / page * page;
        const std::uint64_t last = (base + offset + count) / page * page;
        if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
    }

private:
    [[noreturn]] void fail_errno() {
        const int err = errno;
        ::close(fd_);
        fd_ = -1;
        throw safetensors_error(path_, "", safetensors_rule::io, std::strerror(err));
    }
    std::string path_;
    int fd_ = -1;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

} // namespace io

/// A safetensors checkpoint as a read-only weight store: one file, or a directory with
/// `model.safetensors.index.json` and its shards (or a directory holding exactly one
/// `.safetensors` file). Tensor order is data order, shard by shard, so that evaluation reads
/// each file front to back.
class safetensors_store {
public:
    /// Opens and validates a checkpoint. Throws `safetensors_error`.
    [[nodiscard]] static safetensors_store open(const std::filesystem::path& path) {
        namespace fs = std::filesystem;
        safetensors_store s;
        std::error_code ec;
        if (fs::is_directory(path, ec)) {
            s.dir_ = path;
            const fs::path index = path / "model.safetensors.index.json";
            if (fs::exists(index, ec)) {
                s.open_index(index);
            } else {
                std::vector<fs::path> files;
                for (const auto& e : fs::directory_iterator(path, ec))
                    if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path());
                std::sort(files.begin(), files.end());
                if (files.size() != 1)
                    throw safetensors_error(path.string(), "", safetensors_rule::no_checkpoint,
                                            files.empty() ? "no .safetensors file in the directory"
                                                          : std::to_string(files.size()) +
                                                                " .safetensors files and no model.safetensors.index.json");
                s.add_shard(files.front());
            }
        } else {
            if (!fs::exists(path, ec))
                throw safetensors_error(path.string(), "", safetensors_rule::io, "no such file or directory");
            s.dir_ = path.parent_path();
            s.add_shard(path);
        }
        s.label_ = path.string();
        return s;
    }

    safetensors_store(safetensors_store&&) noexcept = default;
    safetensors_store& operator=(safetensors_store&&) noexcept = default;

    // --- weight_store -----------------------------------------------------------------------------
    [[nodiscard]] const std::vector<std::string>& tensor_names() const noexcept { return names_; }

    [[nodiscard]] std::optional<tensor_view> find(std::string_view name) const {
        const auto it = index_.find(name);
        if (it == index_.end()) return std::nullopt;
        const location& l = locations_[it->second];
        const auto bytes = shards_[l.shard].file->bytes();
        return tensor_view{l.type, l.dims, bytes.subspan(l.offset, l.nbytes)};
    }

    /// Drops a consumed tensor's pages from this process.
    void release(std::string_view name) const { release(name, 0, UINT64_MAX); }

    /// Drops the pages of bytes [offset, offset + count) of a tensor (clamped to the tensor).
    void release(std::string_view name, std::uint64_t offset, std::uint64_t count) const {
        const auto it = index_.find(name);
        if (it == index_.end()) return;
        const location& l = locations_[it->second];
        if (offset >= l.nbytes) return;
        count = std::min(count, l.nbytes - offset);
        shards_[l.shard].file->release(l.offset + offset, count);
    }

    [[nodiscard]] const std::string& label() const noexcept { return label_; }

    // --- about the checkpoint -----------------------------------------------------------------------
    /// The first shard's __metadata__.
    [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept { return shards_.front().metadata; }
    /// The directory the checkpoint lives in (for its config.json, tokenizer files...).
    [[nodiscard]] const std::filesystem::path& directory() const noexcept { return dir_; }
    /// Shard files, in order.
    [[nodiscard]] std::vector<std::string> files() const {
        std::vector<std::string> f;
        for (const auto& s : shards_) f.push_back(s.file->path());
        return f;
    }
    /// The shard file that holds a tensor (empty if there is no such tensor).
    [[nodiscard]] std::string file_of(std::string_view name) const {
        const auto it = index_.find(name);
        return it == index_.end() ? std::string() : shards_[locations_[it->second].shard].file->path();
    }
    /// Sum of tensor byte sizes (what an index's total_size records).
    [[nodiscard]] std::uint64_t tensor_bytes() const noexcept {
        std::uint64_t n = 0;
        for (const auto& l : locations_) n += l.nbytes;
        return n;
    }

private:
    safetensors_store() = default;

    struct shard {
        std::shared_ptr<io::mapped_file> file;
        std::map<std::string, std::string> metadata;
    };
    struct location {
        std::size_t shard;
        std::uint64_t offset; ///< from the start of the file
        std::uint64_t nbytes;
        dtype type;
        shape dims;
    };

    /// Maps and validates one shard, adding its tensors. Returns the names it added.
    std::vector<std::string> add_shard(const std::filesystem::path& path) {
        auto file = std::make_shared<io::mapped_file>(path);
        const io::header h = io::parse_header(file->bytes(), file->path());
        const std::size_t shard_index = shards_.size();
        shards_.push_back({file, h.metadata});
        std::vector<std::string> added;
        for (const auto& e : h.entries) {
            if (index_.count(e.name))
                throw safetensors_error(file->path(), e.name, safetensors_rule::index_disagrees,
                                        "also stored in another shard");
            index_.emplace(e.name, locations_.size());
            locations_.push_back({shard_index, h.data_offset() + e.begin, e.end - e.begin, e.type, e.dims});
            names_.push_back(e.name);
            added.push_back(e.name);
        }
        return added;
    }

    void open_index(const std::filesystem::path& index_path) {
        namespace fs = std::filesystem;
        const std::string ip = index_path.string();
        auto bad = [&](const std::string& detail, const std::string& tensor = {}) {
            throw safetensors_error(ip, tensor, safetensors_rule::index_invalid, detail);
        };
        std::string text;
        {
            io::mapped_file f(index_path);
            const auto b = f.bytes();
            text.assign(reinterpret_cast<const char*>(b.data()), b.size());
        }
        nlohmann::json j;
        std::string dup;
        try {
            j = io::detail::parse_json_strict(text, dup);
        } catch (const nlohmann::json::exception& e) {
            bad(std::string("not JSON: ") + e.what());
        }
        if (!dup.empty()) throw safetensors_error(ip, "", safetensors_rule::duplicate_key, "'" + dup + "'");
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) bad("no \"weight_map\" object");
        // Shards in the order the index first names them, then by name: deterministic.
        std::map<std::string, std::string> wanted; // tensor -> shard file
        std::set<std::string> shard_files;
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it.value().is_string()) bad("weight_map value is not a file name", it.key());
            const std::string f = it.value().get<std::string>();
            if (f.empty() || f.find('/') != std::string::npos || f.find('\0') != std::string::npos || f == "." ||
                f == "..") // (a NUL would cut the path short: "s1.safetensors\u0000x" opened s1.safetensors)
                bad("shard name '" + f + "' is not a plain file name", it.key());
            wanted[it.key()] = f;
            shard_files.insert(f);
        }
        for (const auto& f : shard_files) {
            const fs::path p = index_path.parent_path() / f;
            std::error_code ec;
            if (!fs::exists(p, ec)) {
                std::string who;
                for (const auto& [t, s] : wanted)
                    if (s == f) {
                        who = t;
                        break;
                    }
                throw safetensors_error(ip, who, safetensors_rule::index_missing_shard, "'" + f + "' does not exist");
            }
            for (const auto& t : add_shard(p)) {
                const auto w = wanted.find(t);
                if (w == wanted.end())
                    throw safetensors_error(p.string(), t, safetensors_rule::index_disagrees, "not in the index's weight_map");
                if (w->second != f)
                    throw safetensors_error(p.string(), t, safetensors_rule::index_disagrees,
                                            "the index places it in '" + w->second + "'");
            }
        }
        for (const auto& [t, f] : wanted)
            if (!index_.count(t))
                throw safetensors_error(ip, t, safetensors_rule::index_disagrees, "listed in weight_map but not in '" + f + "'");
        if (j.contains("metadata") && j["metadata"].is_object() && j["metadata"].contains("total_size")) {
            const auto& ts = j["metadata"]["total_size"];
            if (!ts.is_number_unsigned()) bad("metadata.total_size is not a non-negative integer");
            if (ts.get<std::uint64_t>() != tensor_bytes())
                bad("metadata.total_size is " + std::to_string(ts.get<std::uint64_t>()) + " but the tensors take " +
                    std::to_string(tensor_bytes()) + " bytes");
        }
    }

    std::string label_;
    std::filesystem::path dir_;
    std::vector<shard> shards_;
    std::vector<location> locations_;
    std::vector<std::string> names_;
    std::unordered_map<std::string, std::size_t, detail::string_hash, std::equal_to<>> index_;
};

static_assert(weight_store<safetensors_store>);

} // namespace skillvec

// libFuzzer target for the safetensors header parser, io::parse_header.
//
// Every input is checked as a whole file image (8-byte length N, N bytes of JSON, data buffer).
// An input that starts with '{' is also checked a second way, as a bare JSON header: the harness
// adds the length prefix and a data buffer as long as the largest data_offsets end it finds (at
// most 64 KiB), so that the fuzzer reaches the offset, size and success paths without having to
// get two lengths right by chance. A custom mutator (bottom of the file) edits half of the headers
// that parse as JSON objects structurally (dtypes, shapes, offsets, entries, metadata, type
// confusion, often with the offsets recomputed so the file is valid) and fixes up the length prefix
// and data buffer; the other half get libFuzzer's own byte-level mutations (with the dict).
//
// parse_header may only throw safetensors_error; anything else escapes and crashes the run. For
// each input the harness also runs an independent reference validator written from the rules the
// header documents (its own UTF-8 decoder, a SAX duplicate-key check, its own dtype table, 128-bit
// length arithmetic) and traps when the two disagree on accept/reject. An accepted file must
// satisfy the documented invariants (entries in data order tiling [0, data size) exactly, byte
// sizes that match dtype x shape without overflow, unique names, no "__metadata__" entry, ...), must
// agree field by field with the reference, and must read back through safetensors_store (mapped
// from a memfd) byte for byte, before and after release(). A rejection must name the file in a
// one-line what() and, for the length checks that come first, the right rule.
//
// The parser runs with a reduced stack limit (SKILLVEC_FUZZ_STACK_KB, default 512 KiB; 0 leaves
// it alone) so that unbounded recursion shows up at fuzzer-sized inputs (about 1,000 levels of
// nesting) instead of needing megabytes of it. SKILLVEC_FUZZ_STORE=0 skips the store checks.

#include <skillvec/io/safetensors.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

using skillvec::safetensors_error;
using R = skillvec::safetensors_rule;
namespace io = skillvec::io;

namespace {

const std::string file_name = "fuzz.safetensors";

__extension__ typedef unsigned __int128 u128; // exact length arithmetic for the reference

[[noreturn]] void violated(const char* what, int line, const std::string& detail = {}) {
    std::fprintf(stderr, "\n*** skillvec fuzz invariant violated (fuzz_safetensors_header.cpp:%d): %s\n", line, what);
    if (!detail.empty()) std::fprintf(stderr, "*** %s\n", detail.c_str());
    std::fflush(stderr);
    __builtin_trap();
}
#define FUZZ_CHECK(cond)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) violated(#cond, __LINE__);                                                                        \
    } while (0)
#define FUZZ_CHECK_MSG(cond, msg)                                                                                      \
    do {                                                                                                               \
        if (!(cond)) violated(#cond, __LINE__, (msg));                                                                 \
    } while (0)

// ----------------------------------------------------------------------------------------------
// The reference validator: the documented rules, written independently of parse_header.
// ----------------------------------------------------------------------------------------------

/// Well-formed UTF-8 per the Unicode standard's table of well-formed byte sequences (Table 3-7).
bool ref_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned c = p[i];
        if (c <= 0x7F) {
            ++i;
            continue;
        }
        std::size_t more;
        unsigned lo = 0x80, hi = 0xBF; // range of the second byte
        if (c >= 0xC2 && c <= 0xDF) more = 1;
        else if (c == 0xE0) more = 2, lo = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) more = 2;
        else if (c == 0xED) more = 2, hi = 0x9F;
        else if (c == 0xF0) more = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) more = 3;
        else if (c == 0xF4) more = 3, hi = 0x8F;
        else return false;
        if (n - i <= more) return false;
        if (p[i + 1] < lo || p[i + 1] > hi) return false;
        for (std::size_t k = 2; k <= more; ++k)
            if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
        i += more + 1;
    }
    return true;
}

/// SAX pass that only looks for a key repeated within one object, at any depth.
class dup_key_finder : public nlohmann::json_sax<nlohmann::json> {
public:
    bool duplicate = false;
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override {
        open_.emplace_back();
        return true;
    }
    bool key(string_t& k) override {
        if (!open_.back().insert(k).second) duplicate = true;
        return true;
    }
    bool end_object() override {
        open_.pop_back();
        return true;
    }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

private:
    std::vector<std::unordered_set<std::string>> open_;
};

struct ref_dtype {
    const char* name;
    unsigned bits;
};
// The safetensors dtype list, spelled as the format spells it (only this spelling is accepted).
constexpr ref_dtype ref_dtypes[] = {{"BOOL", 8},    {"U8", 8},      {"I8", 8},       {"I16", 16},     {"U16", 16},
                                    {"I32", 32},    {"U32", 32},    {"I64", 64},     {"U64", 64},     {"F16", 16},
                                    {"BF16", 16},   {"F32", 32},    {"F64", 64},     {"C64", 64},     {"F8_E5M2", 8},
                                    {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F6_E2M3", 6},  {"F6_E3M2", 6},  {"F4", 4}};

struct ref_entry {
    std::string name, dtype;
    std::vector<std::uint64_t> shape;
    std::uint64_t begin = 0, end = 0;
};

enum class ref_stage { too_small, too_large, beyond_file, later, accepted };

struct ref_result {
    ref_stage stage = ref_stage::later;
    std::string why; // for a rejection after the length checks
    std::vector<ref_entry> entries;
    std::map<std::string, std::string> metadata;
};

std::uint64_t le64(std::span<const std::byte> b) {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < 8; ++i) n |= std::uint64_t{static_cast<unsigned char>(b[i])} << (8 * i);
    return n;
}

ref_result reference(std::span<const std::byte> bytes) {
    ref_result r;
    auto reject = [&](const char* why) {
        r.stage = ref_stage::later;
        r.why = why;
        return r;
    };
    if (bytes.size() < 8) {
        r.stage = ref_stage::too_small;
        return r;
    }
    const std::uint64_t n = le64(bytes);
    if (n > 100'000'000) {
        r.stage = ref_stage::too_large;
        return r;
    }
    if (u128{8} + n > bytes.size()) {
        r.stage = ref_stage::beyond_file;
        return r;
    }
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<std::size_t>(n));
    if (!ref_utf8(text)) return reject("not UTF-8");
    if (text.empty() || text[0] != '{') return reject("does not start with {");
    dup_key_finder dups;
    if (!nlohmann::json::sax_parse(text.begin(), text.end(), &dups)) return reject("not JSON");
    if (dups.duplicate) return reject("duplicate key");
    const nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return reject("not an object");

    std::vector<ref_entry> es;
    for (const auto& [name, v] : j.items()) {
        if (name == "__metadata__") {
            if (!v.is_object()) return reject("__metadata__ not an object");
            for (const auto& [k, s] : v.items()) {
                if (!s.is_string()) return reject("__metadata__ value not a string");
                r.metadata[k] = s.get<std::string>();
            }
            continue;
        }
        if (!v.is_object()) return reject("entry not an object");
        if (!v.contains("dtype") || !v["dtype"].is_string()) return reject("no dtype");
        if (!v.contains("shape") || !v["shape"].is_array()) return reject("no shape");
        if (!v.contains("data_offsets") || !v["data_offsets"].is_array()) return reject("no data_offsets");
        ref_entry e;
        e.name = name;
        e.dtype = v["dtype"].get<std::string>();
        bool known = false;
        for (const auto& d : ref_dtypes) known = known || e.dtype == d.name;
        if (!known) return reject("unknown dtype");
        if (v["shape"].size() > 8) return reject("rank above 8");
        for (const auto& d : v["shape"]) {
            if (!d.is_number_unsigned()) return reject("dimension not an unsigned integer");
            e.shape.push_back(d.get<std::uint64_t>());
        }
        const auto& off = v["data_offsets"];
        if (off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            return reject("data_offsets not two unsigned integers");
        e.begin = off[0].get<std::uint64_t>();
        e.end = off[1].get<std::uint64_t>();
        es.push_back(std::move(e));
    }
    // Tiling: sorted by (begin, end), each begins where the previous ended, from 0.
    std::vector<const ref_entry*> order;
    for (const auto& e : es) order.push_back(&e);
    std::stable_sort(order.begin(), order.end(), [](const ref_entry* a, const ref_entry* b) {
        return a->begin < b->begin || (a->begin == b->begin && a->end < b->end);
    });
    u128 at = 0;
    for (const ref_entry* e : order) {
        if (e->end < e->begin) return reject("end before begin");
        if (e->begin != at) return reject("hole or overlap");
        // Element count as the reference reader folds it: checked, left to right.
        u128 count = 1;
        for (std::uint64_t d : e->shape) {
            count *= d;
            if (count > UINT64_MAX) return reject("element count overflow");
        }
        unsigned bits_per = 0;
        for (const auto& d : ref_dtypes)
            if (e->dtype == d.name) bits_per = d.bits;
        const u128 bits = count * bits_per;
        if (bits > UINT64_MAX) return reject("bit count overflow");
        if (bits % 8 != 0) return reject("not whole bytes");
        if (e->end - e->begin != bits / 8) return reject("size mismatch");
        at = e->end;
    }
    if (u128{8} + n + at != bytes.size()) return reject("file length mismatch");
    r.stage = ref_stage::accepted;
    r.entries = std::move(es);
    return r;
}

// ----------------------------------------------------------------------------------------------
// Invariants of an accepted file, and the same file through safetensors_store.
// ----------------------------------------------------------------------------------------------

void check_store(std::span<const std::byte> bytes, const io::header& h);

void check_accepted(std::span<const std::byte> bytes, const io::header& h, const ref_result& ref) {
    const std::uint64_t n = le64(bytes);
    FUZZ_CHECK(h.header_bytes == n);
    FUZZ_CHECK(n <= io::max_header_bytes);
    FUZZ_CHECK(h.data_offset() == 8 + n);
    FUZZ_CHECK(h.data_offset() <= bytes.size());
    const std::uint64_t data_size = bytes.size() - h.data_offset();

    std::uint64_t at = 0;
    std::set<std::string> names;
    for (const auto& e : h.entries) {
        FUZZ_CHECK_MSG(e.begin == at, e.name); // data order, contiguous from 0: no hole, no overlap
        FUZZ_CHECK(e.end >= e.begin);
        FUZZ_CHECK(e.end <= data_size);
        FUZZ_CHECK(e.name != "__metadata__");
        FUZZ_CHECK_MSG(names.insert(e.name).second, e.name);
        FUZZ_CHECK(io::detail::valid_utf8(e.name) && ref_utf8(e.name));
        FUZZ_CHECK(e.dims.rank() <= skillvec::shape::max_rank);
        FUZZ_CHECK(skillvec::parse_dtype(skillvec::name_of(e.type)) == e.type);
        // numel x bits is a whole number of bytes without overflow, and that is the span.
        std::uint64_t count = 1, bits = 0;
        for (auto d : e.dims) FUZZ_CHECK(!__builtin_mul_overflow(count, d, &count));
        FUZZ_CHECK(!__builtin_mul_overflow(count, static_cast<std::uint64_t>(skillvec::bits_of(e.type)), &bits));
        FUZZ_CHECK(bits % 8 == 0);
        FUZZ_CHECK(e.end - e.begin == bits / 8);
        try { // the library's own size helpers agree and do not throw on an accepted entry
            FUZZ_CHECK(e.dims.numel() == count);
            FUZZ_CHECK(skillvec::byte_size(e.type, count) == e.end - e.begin);
        } catch (const skillvec::error& x) {
            violated("shape/byte_size threw on an accepted entry", __LINE__, x.what());
        }
        at = e.end;
    }
    FUZZ_CHECK(at == data_size); // the tensors fill the data buffer exactly
    for (const auto& [k, v] : h.metadata) FUZZ_CHECK(ref_utf8(k) && ref_utf8(v));

    // Field by field against the reference.
    FUZZ_CHECK_MSG(ref.stage == ref_stage::accepted, "the reference rejects it: " + ref.why);
    FUZZ_CHECK(h.entries.size() == ref.entries.size());
    FUZZ_CHECK(h.metadata == ref.metadata);
    std::map<std::string, const ref_entry*> by_name;
    for (const auto& e : ref.entries) by_name[e.name] = &e;
    for (const auto& e : h.entries) {
        const auto it = by_name.find(e.name);
        FUZZ_CHECK_MSG(it != by_name.end(), e.name);
        const ref_entry& r = *it->second;
        FUZZ_CHECK(skillvec::name_of(e.type) == r.dtype);
        FUZZ_CHECK(e.dims.rank() == r.shape.size());
        FUZZ_CHECK(std::equal(e.dims.begin(), e.dims.end(), r.shape.begin(), r.shape.end()));
        FUZZ_CHECK(e.begin == r.begin && e.end == r.end);
    }
    check_store(bytes, h);
}

/// The accepted bytes as a file (a memfd, opened by its /proc path) through safetensors_store:
/// mapping, view construction and release. Only accepted inputs get here, so it is cheap.
void check_store(std::span<const std::byte> bytes, const io::header& h) {
    static const bool enabled = [] {
        const char* e = std::getenv("SKILLVEC_FUZZ_STORE");
        return !(e && std::string_view(e) == "0");
    }();
    if (!enabled) return;
    const int fd = ::memfd_create("skillvec-fuzz", MFD_CLOEXEC);
    if (fd < 0) return; // no memfd here: the parse checks above still ran
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (w <= 0) {
            ::close(fd);
            return;
        }
        done += static_cast<std::size_t>(w);
    }
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    try {
        const auto store = skillvec::safetensors_store::open(path);
        FUZZ_CHECK(store.tensor_names().size() == h.entries.size());
        FUZZ_CHECK(store.metadata() == h.metadata);
        FUZZ_CHECK(store.tensor_bytes() == bytes.size() - h.data_offset());
        FUZZ_CHECK(!store.find("__metadata__"));
        for (std::size_t i = 0; i < h.entries.size(); ++i) {
            const auto& e = h.entries[i];
            FUZZ_CHECK(store.tensor_names()[i] == e.name); // data order
            for (int pass = 0; pass < 2; ++pass) {
                const auto v = store.find(e.name);
                FUZZ_CHECK(v.has_value());
                FUZZ_CHECK(v->type == e.type && v->dims == e.dims);
                FUZZ_CHECK(v->bytes.size() == e.end - e.begin);
                skillvec::check_view(*v, e.name);
                FUZZ_CHECK(v->bytes.empty() ||
                           std::memcmp(v->bytes.data(), bytes.data() + h.data_offset() + e.begin, v->bytes.size()) == 0);
                store.release(e.name); // the pages come back on the next read (pass 1)
            }
            store.release(e.name, e.end - e.begin, 1); // past the end: nothing
            store.release(e.name, 1, UINT64_MAX);      // clamped to the tensor
        }
    } catch (const skillvec::error& x) {
        ::close(fd);
        violated("safetensors_store rejected a file parse_header accepted", __LINE__, x.what());
    }
    ::close(fd);
}

void check_rejected(std::span<const std::byte> bytes, const safetensors_error& e, const ref_result& ref) {
    const std::string what = e.what();
    FUZZ_CHECK(e.file() == file_name);
    FUZZ_CHECK(what.rfind(file_name + ": ", 0) == 0);           // names the file first
    FUZZ_CHECK_MSG(what.find('\n') == std::string::npos, what); // one line
    FUZZ_CHECK_MSG(what.find('\r') == std::string::npos, what);
    FUZZ_CHECK(what.find(std::string(skillvec::name_of(e.rule()))) != std::string::npos);
    // parse_header only ever breaks the rules of one file in memory.
    FUZZ_CHECK(e.rule() != R::io && e.rule() != R::index_invalid && e.rule() != R::index_missing_shard &&
               e.rule() != R::index_disagrees && e.rule() != R::no_checkpoint);
    switch (ref.stage) {
    case ref_stage::too_small: FUZZ_CHECK(e.rule() == R::header_too_small); break;
    case ref_stage::too_large: FUZZ_CHECK(e.rule() == R::header_too_large); break;
    case ref_stage::beyond_file: FUZZ_CHECK(e.rule() == R::header_beyond_file); break;
    case ref_stage::later:
        FUZZ_CHECK(e.rule() != R::header_too_small && e.rule() != R::header_too_large &&
                   e.rule() != R::header_beyond_file);
        break;
    case ref_stage::accepted:
        violated("parse_header rejected a file the reference validator accepts", __LINE__, what);
    }
    (void)bytes;
}

void check_one(std::span<const std::byte> bytes) {
    std::optional<io::header> h;
    std::optional<safetensors_error> err;
    try {
        h = io::parse_header(bytes, file_name);
    } catch (const safetensors_error& e) {
        err = e;
    } // anything else escapes: a bug
    const ref_result ref = reference(bytes);
    if (h) {
        check_accepted(bytes, *h, ref);
    } else {
        check_rejected(bytes, *err, ref);
    }
}

/// The bare-JSON mode: `text` as the header of a file whose data buffer is as long as the largest
/// data_offsets end in it (capped; a pattern, so the store's read-back compares something).
void check_as_header(std::string_view text) {
    constexpr std::uint64_t cap = 64 * 1024;
    std::uint64_t data = 0;
    const auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_object())
        for (const auto& [k, v] : j.items())
            if (v.is_object() && v.contains("data_offsets") && v["data_offsets"].is_array())
                for (const auto& o : v["data_offsets"])
                    if (o.is_number_unsigned() && o.get<std::uint64_t>() <= cap) data = std::max(data, o.get<std::uint64_t>());
    std::vector<std::byte> file(8 + text.size() + data);
    for (std::size_t i = 0; i < 8; ++i) file[i] = static_cast<std::byte>((std::uint64_t{text.size()} >> (8 * i)) & 0xFF);
    std::memcpy(file.data() + 8, text.data(), text.size());
    for (std::size_t i = 0; i < data; ++i) file[8 + text.size() + i] = static_cast<std::byte>(i * 131 + 7);
    check_one(file);
}

// ----------------------------------------------------------------------------------------------
// The structure-aware mutator: half the time, a header that parses as a JSON object is edited as
// JSON (dtype, shape, offsets, entries, metadata, type confusion) and written back, often with its
// offsets recomputed so that the file is valid; the length prefix and the data buffer of a whole
// file follow. The other half, and for anything else, libFuzzer's own mutations (with the dict).
// ----------------------------------------------------------------------------------------------

using json = nlohmann::json;
using rng_t = std::minstd_rand;

std::uint64_t pick(rng_t& r, std::uint64_t n) { return n ? r() % n : 0; }

const char* const mut_dtypes[] = {"BOOL",    "U8",      "I8",      "I16",     "U16",     "I32",     "U32",
                                  "I64",     "U64",     "F16",     "BF16",    "F32",     "F64",     "C64",
                                  "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",      "f32",
                                  "bf16",    "F31",     "",        "I4",      "F8_E4M3FN"};
const std::uint64_t mut_numbers[] = {0, 1, 2, 3, 4, 5, 7, 8, 255, 256, 65535, 1ull << 31, 1ull << 32, (1ull << 32) + 1,
                                     1ull << 61, 1ull << 62, 1ull << 63, UINT64_MAX / 8, UINT64_MAX - 1, UINT64_MAX};
const std::string mut_names[] = {"w", "a", "b", "model.layers.0.self_attn.q_proj.weight", "", "__metadata__",
                                 "__metadata", "a\nb", std::string(1, '\0'), "caf\xc3\xa9", "\xf0\x9f\x98\x80", "x\x7f"};

std::uint64_t mut_number(rng_t& r) {
    return pick(r, 3) ? pick(r, 9) : mut_numbers[pick(r, std::size(mut_numbers))];
}

json mut_value(rng_t& r) { // a value of any JSON type
    switch (pick(r, 9)) {
    case 0: return nullptr;
    case 1: return true;
    case 2: return -static_cast<std::int64_t>(pick(r, 3));
    case 3: return 2.5;
    case 4: return mut_number(r);
    case 5: return mut_names[pick(r, std::size(mut_names))];
    case 6: return json::array();
    case 7: return json::array({mut_number(r), mut_number(r)});
    default: return json::object();
    }
}

std::vector<std::string> entry_keys(const json& j) {
    std::vector<std::string> k;
    for (const auto& [name, v] : j.items())
        if (name != "__metadata__") k.push_back(name);
    return k;
}

/// Rewrites every entry's data_offsets to tile from 0 in a random order (wrapping arithmetic, so
/// overflowing shapes still produce numbers). Returns the end of the last one.
std::uint64_t repair(json& j, rng_t& r) {
    auto keys = entry_keys(j);
    std::shuffle(keys.begin(), keys.end(), r);
    std::uint64_t at = 0;
    for (const auto& k : keys) {
        json& e = j[k];
        if (!e.is_object()) continue;
        std::uint64_t count = 1, bits = 32;
        if (e.contains("shape") && e["shape"].is_array())
            for (const auto& d : e["shape"])
                if (d.is_number_unsigned()) count *= d.get<std::uint64_t>();
        if (e.contains("dtype") && e["dtype"].is_string())
            for (const auto& d : ref_dtypes)
                if (e["dtype"].get<std::string>() == d.name) bits = d.bits;
        const std::uint64_t size = count * bits / 8;
        e["data_offsets"] = json::array({at, at + size});
        at += size;
    }
    return at;
}

void mutate_json(json& j, rng_t& r) {
    auto keys = entry_keys(j);
    const std::string key = keys.empty() ? std::string("w") : keys[pick(r, keys.size())];
    auto entry = [&]() -> json& {
        json& e = j[key];
        if (!e.is_object()) e = json::object();
        return e;
    };
    switch (keys.empty() ? 4 : pick(r, 10)) {
    case 0: entry()["dtype"] = mut_dtypes[pick(r, std::size(mut_dtypes))]; break;
    case 1: {
        json sh = json::array();
        const std::uint64_t rank = pick(r, 8) ? pick(r, 4) : pick(r, 11);
        for (std::uint64_t i = 0; i < rank; ++i) sh.push_back(mut_number(r));
        entry()["shape"] = sh;
        break;
    }
    case 2: break; // just repair below
    case 3: {      // nudge one offset
        json& off = entry()["data_offsets"];
        if (!off.is_array() || off.size() != 2) off = json::array({0, 0});
        json& o = off[pick(r, 2)];
        const std::uint64_t v = o.is_number_unsigned() ? o.get<std::uint64_t>() : 0;
        o = pick(r, 2) ? v + 1 - 2 * pick(r, 2) : mut_number(r);
        return; // no repair: the point is a broken offset
    }
    case 4: {
        json e = {{"dtype", mut_dtypes[pick(r, 20)]}, {"shape", json::array()}, {"data_offsets", {0, 0}}};
        for (std::uint64_t i = pick(r, 4); i > 0; --i) e["shape"].push_back(pick(r, 6));
        std::string name = mut_names[pick(r, std::size(mut_names))];
        if (pick(r, 2)) name += std::to_string(pick(r, 100));
        j[name] = e;
        break;
    }
    case 5: j.erase(key); break;
    case 6: { // metadata
        json& m = j["__metadata__"];
        if (!m.is_object() || pick(r, 8) == 0) m = pick(r, 4) ? json::object() : mut_value(r);
        if (m.is_object()) m[mut_names[pick(r, std::size(mut_names))]] = pick(r, 6) ? json(mut_names[pick(r, 5)]) : mut_value(r);
        return;
    }
    case 7: { // type confusion in one field, or the entry itself
        const char* fields[] = {"dtype", "shape", "data_offsets"};
        if (pick(r, 4)) entry()[fields[pick(r, 3)]] = mut_value(r);
        else j[key] = mut_value(r);
        return;
    }
    case 8: { // swap two entries' offsets
        const std::string other = keys[pick(r, keys.size())];
        if (j[key].is_object() && j[other].is_object() && j[key].contains("data_offsets") && j[other].contains("data_offsets"))
            std::swap(j[key]["data_offsets"], j[other]["data_offsets"]);
        return;
    }
    default: { // rename
        json v = j[key];
        j.erase(key);
        j[mut_names[pick(r, std::size(mut_names))] + (pick(r, 2) ? "" : std::to_string(pick(r, 10)))] = v;
        break;
    }
    }
    if (pick(r, 4)) repair(j, r);
}

/// Deepest [ / { nesting outside strings (dump() recurses, and the stack is small here).
std::size_t nesting(std::string_view text) {
    std::size_t depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}

/// The new header text, or nothing if `text` is not a JSON object (or is nested too deep).
std::optional<std::string> mutate_header(std::string_view text, rng_t& r, std::size_t prefix) {
    if (nesting(text) > 64) return std::nullopt;
    json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return std::nullopt;
    for (std::uint64_t n = 1 + pick(r, 3); n > 0; --n) mutate_json(j, r);
    std::string out = j.dump(-1, ' ', false, json::error_handler_t::replace);
    if (pick(r, 3) == 0)
        while ((prefix + out.size()) % 8) out += ' '; // the padding writers add
    return out;
}

std::size_t largest_end(const std::string& text) {
    std::uint64_t end = 0;
    const json j = json::parse(text, nullptr, false);
    if (j.is_object())
        for (const auto& [k, v] : j.items())
            if (v.is_object() && v.contains("data_offsets") && v["data_offsets"].is_array())
                for (const auto& o : v["data_offsets"])
                    if (o.is_number_unsigned()) end = std::max(end, o.get<std::uint64_t>());
    return static_cast<std::size_t>(std::min<std::uint64_t>(end, 64 * 1024));
}

} // namespace

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                              unsigned int seed) {
    rng_t r(seed);
    if (size == 0 || pick(r, 2) == 0) return LLVMFuzzerMutate(data, size, max_size);
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    std::string out;
    if (data[0] == '{') { // a bare header
        const auto h = mutate_header(in, r, 8);
        if (!h) return LLVMFuzzerMutate(data, size, max_size);
        out = *h;
    } else { // a whole file whose header is an object: new header, new prefix, data resized
        if (size < 8) return LLVMFuzzerMutate(data, size, max_size);
        const std::uint64_t n = le64(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), 8));
        if (n > size - 8) return LLVMFuzzerMutate(data, size, max_size);
        const auto h = mutate_header(in.substr(8, n), r, 8);
        if (!h) return LLVMFuzzerMutate(data, size, max_size);
        std::string old_data(in.substr(8 + n));
        if (pick(r, 4)) old_data.resize(largest_end(*h), '\x5a'); // fits the offsets, usually
        out.resize(8);
        for (std::size_t i = 0; i < 8; ++i) out[i] = static_cast<char>((std::uint64_t{h->size()} >> (8 * i)) & 0xFF);
        out += *h;
        out += old_data;
    }
    if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
    std::memcpy(data, out.data(), out.size());
    return out.size();
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::uint64_t kb = 512;
    if (const char* e = std::getenv("SKILLVEC_FUZZ_STACK_KB")) kb = std::strtoull(e, nullptr, 10);
    if (kb > 0) {
        rlimit rl{};
        if (::getrlimit(RLIMIT_STACK, &rl) == 0 && (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > kb * 1024)) {
            rl.rlim_cur = kb * 1024; // the main thread's stack cannot grow past this any more
            ::setrlimit(RLIMIT_STACK, &rl);
        }
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    check_one(bytes);
    if (size > 0 && data[0] == '{') check_as_header(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}

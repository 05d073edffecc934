// The safetensors reader: valid files (single and sharded) read back exactly, and a corpus of
// malformed files, each rejected with an error that names the file, the tensor and the rule.
#include "helpers.hpp"
#include "tmpdir.hpp"

#include <skillvec/io/safetensors.hpp>
#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <cstring>

using namespace skillvec;
using Catch::Contains;
using R = safetensors_rule;

namespace {

/// A safetensors file from a header text and a data buffer; the length prefix is N unless given.
std::vector<std::byte> make_file(const std::string& header, std::size_t data_bytes, std::optional<std::uint64_t> n = {}) {
    std::vector<std::byte> f(8 + header.size() + data_bytes);
    const std::uint64_t len = n.value_or(header.size());
    for (int i = 0; i < 8; ++i) f[static_cast<std::size_t>(i)] = static_cast<std::byte>((len >> (8 * i)) & 0xFF);
    std::memcpy(f.data() + 8, header.data(), header.size());
    for (std::size_t i = 0; i < data_bytes; ++i) f[8 + header.size() + i] = static_cast<std::byte>(i * 7 + 1);
    return f;
}

/// The rule (and message) a file is rejected with; fails the test if it is accepted.
std::pair<R, std::string> rejection(const std::vector<std::byte>& bytes, const std::string& name = "bad.safetensors") {
    try {
        (void)io::parse_header(bytes, name);
    } catch (const safetensors_error& e) {
        return {e.rule(), e.what()};
    }
    FAIL("accepted a malformed file");
    return {R::io, ""};
}

} // namespace

TEST_CASE("a valid file: header order, padding, metadata, rank 0 and empty tensors", "[safetensors]") {
    // Offsets deliberately not in key order; header right-padded with spaces to a multiple of 8.
    std::string h = R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[2,10]},)"
                    R"("a":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"e":{"dtype":"F16","shape":[3,0],"data_offsets":[10,10]}})";
    while ((8 + h.size()) % 8) h += ' ';
    const auto bytes = make_file(h, 10);
    const auto hdr = io::parse_header(bytes, "ok.safetensors");
    REQUIRE(hdr.entries.size() == 3);
    CHECK(hdr.entries[0].name == "a"); // data order
    CHECK(hdr.entries[1].name == "b");
    CHECK(hdr.entries[2].name == "e");
    CHECK(hdr.entries[0].dims.rank() == 0);
    CHECK(hdr.entries[2].dims.numel() == 0);
    CHECK(hdr.metadata.at("format") == "pt");
    CHECK(hdr.data_offset() % 8 == 0);
}

TEST_CASE("the malformed-file corpus: every rule, named", "[safetensors][corpus]") {
    const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    struct bad_case {
        const char* what;
        std::vector<std::byte> bytes;
        R rule;
        const char* tensor; // expected in the message, or ""
    };
    std::vector<std::byte> not_utf8 = make_file("{\"w\xff\":{}}", 0);
    const std::vector<bad_case> corpus = {
        {"empty file", {}, R::header_too_small, ""},
        {"truncated length", std::vector<std::byte>(5), R::header_too_small, ""},
        {"header too large", make_file("{}", 0, 100'000'001), R::header_too_large, ""},
        {"header beyond file", make_file("{}", 0, 64), R::header_beyond_file, ""},
        {"header length near 2^64", make_file("{}", 0, ~std::uint64_t{0} - 4), R::header_too_large, ""},
        {"bad UTF-8", not_utf8, R::header_not_utf8, ""},
        {"not starting with {", make_file(" {}", 0), R::header_bad_start, ""},
        {"not JSON", make_file("{\"w\": [1, 2", 0), R::header_not_json, ""},
        {"JSON but not an object", make_file("{\"a\":1} 2", 0), R::header_not_json, ""},
        {"duplicate key", make_file("{" + ok_entry + "," + ok_entry + "}", 8), R::duplicate_key, ""},
        {"entry not an object", make_file(R"({"w":[1,2]})", 0), R::bad_entry, "w"},
        {"missing dtype", make_file(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8), R::bad_entry, "w"},
        {"unknown dtype", make_file(R"({"w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8), R::unknown_dtype, "w"},
        {"lower-case dtype", make_file(R"({"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8), R::unknown_dtype, "w"},
        {"negative dimension", make_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), R::bad_entry, "w"},
        {"fractional dimension", make_file(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8), R::bad_entry, "w"},
        // Found by the fuzz work: the message dumped the element, recursively, and overflowed the stack.
        {"shape element nested a million arrays deep",
         make_file(R"({"w":{"dtype":"F32","shape":[)" + std::string(1'000'000, '[') + std::string(1'000'000, ']') +
                       R"(],"data_offsets":[0,0]}})",
                   0),
         R::bad_entry, "w"},
        {"three offsets", make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})", 8), R::bad_entry, "w"},
        {"metadata not strings", make_file(R"({"__metadata__":{"a":1},)" + ok_entry + "}", 8), R::bad_metadata, ""},
        {"end before begin", make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8), R::offsets_reversed, "w"},
        {"not starting at 0", make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), R::offsets_not_contiguous, "w"},
        {"overlap", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
         R::offsets_not_contiguous, "b"},
        {"hole", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", 20),
         R::offsets_not_contiguous, "b"},
        {"element count overflow", make_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
         R::size_overflow, "w"},
        {"bit count overflow", make_file(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8),
         R::size_overflow, "w"},
        {"sub-byte tensor of odd length", make_file(R"({"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2), R::misaligned, "w"},
        {"size not matching offsets", make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), R::size_mismatch, "w"},
        {"trailing bytes", make_file("{" + ok_entry + "}", 9), R::file_length_mismatch, ""},
        {"truncated data", make_file("{" + ok_entry + "}", 7), R::file_length_mismatch, ""},
    };
    CHECK(corpus.size() >= 15);
    for (const auto& c : corpus) {
        INFO(c.what);
        const auto [rule, msg] = rejection(c.bytes);
        CHECK(rule == c.rule);
        CHECK_THAT(msg, Contains("bad.safetensors: "));
        CHECK_THAT(msg, Contains(std::string(name_of(c.rule))));
        if (*c.tensor) CHECK_THAT(msg, Contains(std::string("tensor '") + c.tensor + "'"));
        CHECK(msg.find('\n') == std::string::npos); // one line
    }
}

TEST_CASE("a file length check that cannot wrap around: offsets summing to almost 2^64 are 'truncated'", "[safetensors]") {
    // Eight U8 tensors of 2^61 - 1 bytes (the most whose bit count fits 64 bits) tile [0, 2^64 - 8):
    // the offsets pass, and 8 + N + 2^64 - 8 would wrap to N, making the file look too long.
    const std::uint64_t big = (std::uint64_t{1} << 61) - 1;
    std::string h = "{";
    for (std::uint64_t k = 0; k < 8; ++k)
        h += (k ? ",\"t" : "\"t") + std::to_string(k) + R"(":{"dtype":"U8","shape":[)" + std::to_string(big) +
             R"(],"data_offsets":[)" + std::to_string(k * big) + "," + std::to_string((k + 1) * big) + "]}";
    h += "}";
    const auto [rule, msg] = rejection(make_file(h, 16));
    CHECK(rule == R::file_length_mismatch);
    CHECK_THAT(msg, Contains("data take " + std::to_string(8 * big) + " bytes") && Contains("(truncated)"));
    CHECK_THAT(rejection(make_file("{" + std::string(R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})") + "}", 7)).second,
               Contains("data take 8 bytes but the file has 7 after the header (truncated)"));
    CHECK_THAT(rejection(make_file("{" + std::string(R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})") + "}", 9)).second,
               Contains("(trailing bytes)"));
}

TEST_CASE("control characters in names do not break the one-line message", "[safetensors]") {
    // Found by the fuzz work: a tensor named "\u0000" cut what() short (before the rule), and a
    // newline made it two lines. The message escapes them; tensor() keeps the name as it is.
    try {
        (void)io::parse_header(make_file(R"({"\u0000":[]})", 0), "nul.safetensors");
        FAIL("accepted");
    } catch (const safetensors_error& e) {
        CHECK(e.rule() == R::bad_entry);
        CHECK(e.tensor() == std::string(1, '\0'));
        CHECK(std::string(e.what()) == "nul.safetensors: tensor '\\x00': bad tensor entry: not an object");
    }
    try {
        (void)io::parse_header(make_file(R"({"a\nb":{"dtype":"F\r32","shape":[],"data_offsets":[0,4]}})", 4), "nl.safetensors");
        FAIL("accepted");
    } catch (const safetensors_error& e) {
        CHECK(e.rule() == R::unknown_dtype);
        CHECK(e.tensor() == "a\nb");
        CHECK(std::string(e.what()) == "nl.safetensors: tensor 'a\\x0Ab': unknown dtype: 'F\\x0D32'");
    }
}

TEST_CASE("UTF-8 validation rejects overlongs, surrogates and truncation", "[safetensors]") {
    CHECK(io::detail::valid_utf8("plain"));
    CHECK(io::detail::valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK_FALSE(io::detail::valid_utf8("\xc0\xaf"));         // overlong '/'
    CHECK_FALSE(io::detail::valid_utf8("\xed\xa0\x80"));     // surrogate
    CHECK_FALSE(io::detail::valid_utf8("\xf4\x90\x80\x80")); // above U+10FFFF
    CHECK_FALSE(io::detail::valid_utf8("\xe2\x82"));         // truncated
    CHECK_FALSE(io::detail::valid_utf8("\x80"));             // stray continuation
}

namespace {
/// Writes `store`'s tensors as one safetensors file (a tiny independent writer for the tests).
void write_store(const std::filesystem::path& p, const memory_store& s, const std::vector<std::string>& names = {}) {
    std::string h = "{";
    std::uint64_t at = 0;
    std::vector<std::byte> data;
    for (const auto& n : names.empty() ? s.tensor_names() : names) {
        const auto v = s.at(n);
        if (h.size() > 1) h += ",";
        h += "\"" + n + "\":{\"dtype\":\"" + std::string(name_of(v.type)) + "\",\"shape\":[";
        for (std::size_t i = 0; i < v.dims.rank(); ++i) h += (i ? "," : "") + std::to_string(v.dims[i]);
        h += "],\"data_offsets\":[" + std::to_string(at) + "," + std::to_string(at + v.bytes.size()) + "]}";
        at += v.bytes.size();
        data.insert(data.end(), v.bytes.begin(), v.bytes.end());
    }
    h += "}";
    auto f = make_file(h, 0);
    f.insert(f.end(), data.begin(), data.end());
    test::write_file(p, f);
}
} // namespace

TEST_CASE("safetensors_store reads a file and a sharded directory exactly, and works in expressions", "[safetensors]") {
    test::tmpdir dir;
    const std::vector<test::tensor_spec> sp = {{"model.layers.0.w", dtype::bf16, {33, 7}},
                                               {"model.layers.1.w", dtype::f32, {1001}},
                                               {"ids", dtype::i64, {5}},
                                               {"scalar", dtype::f16, {}}};
    const auto t = test::random_store("t", sp, 1), rl = test::random_store("rl", sp, 2), sft = test::random_store("sft", sp, 3);
    write_store(dir / "t.safetensors", t);
    // rl sharded in two, with an index.
    std::filesystem::create_directory(dir / "rl");
    write_store(dir.path() / "rl" / "model-00001-of-00002.safetensors", rl, {"model.layers.0.w", "ids"});
    write_store(dir.path() / "rl" / "model-00002-of-00002.safetensors", rl, {"model.layers.1.w", "scalar"});
    test::write_file(dir.path() / "rl" / "model.safetensors.index.json",
                     R"({"metadata":{"total_size":)" + std::to_string(rl.nbytes()) +
                         R"(},"weight_map":{"model.layers.0.w":"model-00001-of-00002.safetensors","ids":"model-00001-of-00002.safetensors",)"
                         R"("model.layers.1.w":"model-00002-of-00002.safetensors","scalar":"model-00002-of-00002.safetensors"}})");
    // sft as a directory with one unindexed file.
    std::filesystem::create_directory(dir / "sft");
    write_store(dir.path() / "sft" / "model.safetensors", sft);

    const auto st = safetensors_store::open(dir / "t.safetensors");
    const auto srl = safetensors_store::open(dir / "rl");
    const auto ssft = safetensors_store::open(dir / "sft");
    CHECK(srl.files().size() == 2);
    CHECK(srl.tensor_bytes() == rl.nbytes());
    for (const auto& n : t.tensor_names()) {
        REQUIRE(test::same_bits(*st.find(n), t.at(n)));
        REQUIRE(test::same_bits(*srl.find(n), rl.at(n)));
        REQUIRE(test::same_bits(*ssft.find(n), sft.at(n)));
    }
    // Releasing pages loses nothing: the next access reads the file again.
    srl.release("model.layers.1.w");
    srl.release("model.layers.0.w", 2, 100);
    CHECK(test::same_bits(*srl.find("model.layers.1.w"), rl.at("model.layers.1.w")));

    const auto from_files = materialize(past(weights(st), weights(srl), weights(ssft), 0.5f));
    const auto from_memory = materialize(past(weights(t), weights(rl), weights(sft), 0.5f));
    for (const auto& n : t.tensor_names()) REQUIRE(test::same_bits(from_files.at(n), from_memory.at(n)));
}

TEST_CASE("sharded checkpoints: the index must agree with the shards", "[safetensors][corpus]") {
    test::tmpdir dir;
    memory_store m;
    m.add("a", dtype::f32, {2});
    m.add("b", dtype::f32, {3});
    auto setup = [&](const std::string& index) {
        std::filesystem::remove_all(dir / "ck");
        std::filesystem::create_directory(dir / "ck");
        write_store(dir.path() / "ck" / "s1.safetensors", m, {"a"});
        write_store(dir.path() / "ck" / "s2.safetensors", m, {"b"});
        test::write_file(dir.path() / "ck" / "model.safetensors.index.json", index);
    };
    auto rule_of = [&]() -> std::pair<R, std::string> {
        try {
            (void)safetensors_store::open(dir / "ck");
        } catch (const safetensors_error& e) {
            return {e.rule(), e.what()};
        }
        FAIL("accepted");
        return {R::io, ""};
    };
    setup(R"({"metadata":{"total_size":20},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
    CHECK(safetensors_store::open(dir / "ck").tensor_names().size() == 2);

    setup(R"({"weight_map":{"a":"s1.safetensors","b":"s3.safetensors"}})");
    auto [r1, m1] = rule_of();
    CHECK(r1 == R::index_missing_shard);
    CHECK_THAT(m1, Contains("tensor 'b'") && Contains("'s3.safetensors' does not exist"));

    setup(R"({"weight_map":{"a":"s1.safetensors"}})"); // s2 is a stray file the index does not name: ignored
    CHECK(safetensors_store::open(dir / "ck").tensor_names() == std::vector<std::string>{"a"});
    setup(R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
    auto [r2, m2] = rule_of();
    CHECK(r2 == R::index_disagrees);
    CHECK_THAT(m2, Contains("tensor 'b'"));

    setup(R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors","c":"s2.safetensors"}})");
    auto [r3, m3] = rule_of();
    CHECK(r3 == R::index_disagrees);
    CHECK_THAT(m3, Contains("tensor 'c'") && Contains("not in 's2.safetensors'"));

    setup(R"({"metadata":{"total_size":21},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
    CHECK(rule_of().first == R::index_invalid);
    setup(R"({"weight_map":{"a":"../s1.safetensors","b":"s2.safetensors"}})");
    CHECK(rule_of().first == R::index_invalid);
    setup(R"({"weight_map":{"a":"s1.safetensors\u0000x","b":"s2.safetensors"}})"); // not s1.safetensors
    CHECK(rule_of().first == R::index_invalid);
    setup(R"({"weight_map":)");
    CHECK(rule_of().first == R::index_invalid);
    setup(R"({"weight_map":{"a":"s1.safetensors","a":"s2.safetensors"}})");
    CHECK(rule_of().first == R::duplicate_key);

    // A directory with two files and no index is ambiguous; an empty one holds nothing.
    std::filesystem::remove(dir.path() / "ck" / "model.safetensors.index.json");
    CHECK(rule_of().first == R::no_checkpoint);
    std::filesystem::create_directory(dir / "empty");
    CHECK_THROWS_WITH(safetensors_store::open(dir / "empty"), Contains("no .safetensors file"));
    CHECK_THROWS_WITH(safetensors_store::open(dir / "nope.safetensors"), Contains("no such file"));
}

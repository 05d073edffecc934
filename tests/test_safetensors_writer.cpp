// The safetensors writer: round trips, shards and index, and nothing left behind when a write fails.
#include "helpers.hpp"
#include "tmpdir.hpp"

#include <skillvec/io/safetensors.hpp>
#include <skillvec/io/safetensors_writer.hpp>
#include <skillvec/skillvec.hpp>

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <sys/resource.h>

using namespace skillvec;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> listing(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}
std::string read_text(const fs::path& p) {
    std::ifstream f(p);
    return {std::istreambuf_iterator<char>(f), {}};
}
/// Forwards begin/acquire/commit (and the range calls) but not finish(): the test seals and
/// publishes by hand.
struct no_finish {
    safetensors_writer* w;
    void begin(std::span<const tensor_info> p) { w->begin(p); }
    std::span<std::byte> acquire(const tensor_info& i) { return w->acquire(i); }
    void commit(const tensor_info& i) { w->commit(i); }
    std::span<std::byte> acquire_range(const tensor_info& i, std::uint64_t o, std::uint64_t n) { return w->acquire_range(i, o, n); }
    void commit_range(const tensor_info& i, std::uint64_t o, std::uint64_t n) { w->commit_range(i, o, n); }
};
no_finish without_finish(safetensors_writer& w) { return {&w}; }
const std::vector<test::tensor_spec> specs = {{"model.embed_tokens.weight", dtype::bf16, {50, 16}},
                                              {"model.layers.0.w", dtype::f32, {300}},
                                              {"model.layers.1.w", dtype::f16, {7, 3}},
                                              {"position_ids", dtype::i64, {4}},
                                              {"empty", dtype::f32, {0}},
                                              {"scalar", dtype::bf16, {}}};
} // namespace

TEST_CASE("a checkpoint written and read back is bit-identical, with metadata and 8-byte aligned data", "[writer]") {
    test::tmpdir dir;
    const auto m = test::random_store("m", specs, 1);
    safetensors_writer w(dir / "out", {.metadata = {{"skillvec_recipe", "target + 1 * (rl - sft)"}}});
    const auto rep = evaluate(weights(m), w);
    CHECK(rep.passed_through == std::vector<std::string>{"position_ids"});
    CHECK(listing(dir.path()) == std::vector<std::string>{"out"}); // the temporary directory is gone
    CHECK(listing(dir / "out") == std::vector<std::string>{"model.safetensors"});
    const auto back = safetensors_store::open(dir / "out");
    CHECK(back.tensor_names() == m.tensor_names()); // written in plan order
    for (const auto& n : m.tensor_names()) REQUIRE(test::same_bits(*back.find(n), m.at(n)));
    CHECK(back.metadata().at("format") == "pt");
    CHECK(back.metadata().at("skillvec_recipe") == "target + 1 * (rl - sft)");
    std::ifstream f(dir.path() / "out" / "model.safetensors", std::ios::binary);
    std::uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    CHECK((8 + n) % 8 == 0);
}

TEST_CASE("shards: HF names, a maximum size, an index with total_size; a big tensor gets its own shard", "[writer]") {
    test::tmpdir dir;
    memory_store m;
    for (int i = 0; i < 5; ++i) m.add("layers." + std::to_string(i) + ".w", dtype::f32, {100}); // 400 bytes each
    m.add("big", dtype::f32, {1000});                                                            // 4000 bytes
    m.add("tail", dtype::f32, {10});
    safetensors_writer w(dir / "ck", {.max_shard_bytes = 900});
    evaluate(weights(m), w);
    CHECK(w.shard_count() == 5);
    CHECK(listing(dir / "ck") == std::vector<std::string>{"model-00001-of-00005.safetensors", "model-00002-of-00005.safetensors",
                                                          "model-00003-of-00005.safetensors", "model-00004-of-00005.safetensors",
                                                          "model-00005-of-00005.safetensors", "model.safetensors.index.json"});
    const std::string index = read_text(dir.path() / "ck" / "model.safetensors.index.json");
    CHECK_THAT(index, Contains("\"total_size\": 6040"));
    CHECK_THAT(index, Contains("\"big\": \"model-00004-of-00005.safetensors\""));
    const auto back = safetensors_store::open(dir / "ck"); // the reader checks index against shards
    for (const auto& n : m.tensor_names()) REQUIRE(test::same_bits(*back.find(n), m.at(n)));
}

TEST_CASE("a .safetensors path writes one file; side files are copied into a directory output", "[writer]") {
    test::tmpdir dir;
    const auto m = test::random_store("m", specs, 2);
    {
        safetensors_writer w(dir / "v.safetensors", {.max_shard_bytes = 10});
        evaluate(weights(m), w);
    }
    CHECK(listing(dir.path()) == std::vector<std::string>{"v.safetensors"});
    CHECK(safetensors_store::open(dir / "v.safetensors").tensor_names().size() == m.size());

    fs::create_directory(dir / "src");
    test::write_file(dir.path() / "src" / "config.json", std::string("{\"model_type\": \"llama\"}"));
    test::write_file(dir.path() / "src" / "tokenizer.json", std::string("{}"));
    test::write_file(dir.path() / "src" / "generation_config.json", std::string("{}"));
    test::write_file(dir.path() / "src" / "model.safetensors", std::string("weights are not copied"));
    test::write_file(dir.path() / "src" / "pytorch_model.bin", std::string("nor these"));
    test::write_file(dir.path() / "src" / "pytorch_model.bin.index.json", std::string("{}"));
    safetensors_writer w(dir / "out", {.copy_files_from = dir / "src"});
    evaluate(weights(m), w);
    CHECK(listing(dir / "out") == std::vector<std::string>{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"});
    CHECK(read_text(dir.path() / "out" / "config.json") == "{\"model_type\": \"llama\"}");
}

TEST_CASE("an existing output is refused before any work, and replaced only when asked", "[writer]") {
    test::tmpdir dir;
    const auto m = test::random_store("m", specs, 3);
    fs::create_directory(dir / "out");
    test::write_file(dir.path() / "out" / "precious.txt", std::string("keep me"));
    CHECK_THROWS_WITH(safetensors_writer(dir / "out"), Contains("already exists"));
    CHECK(read_text(dir.path() / "out" / "precious.txt") == "keep me");
    CHECK_THROWS_WITH(safetensors_writer(dir / "missing" / "out"), Contains("does not exist"));
    safetensors_writer w(dir / "out", {.overwrite = true});
    evaluate(weights(m), w);
    CHECK(listing(dir / "out") == std::vector<std::string>{"model.safetensors"});
    CHECK(listing(dir.path()) == std::vector<std::string>{"out"}); // no backup or temporary left
}

TEST_CASE("an output that appears while writing is never replaced without overwrite", "[writer]") {
    test::tmpdir dir;
    const auto m = test::random_store("m", specs, 5);
    for (const std::string name : {"out", "v.safetensors"}) {
        // A sink that lets someone else create the output between the last tensor and finish().
        struct racing_sink {
            safetensors_writer* w;
            fs::path out;
            bool as_dir;
            void begin(std::span<const tensor_info> p) { w->begin(p); }
            std::span<std::byte> acquire(const tensor_info& i) { return w->acquire(i); }
            void commit(const tensor_info& i) { w->commit(i); }
            void finish() {
                if (as_dir) fs::create_directory(out); // empty: a plain rename(2) would replace it
                else test::write_file(out, std::string("theirs"));
                w->finish();
            }
        };
        SECTION(name) {
            {
                safetensors_writer w(dir / name);
                racing_sink sink{&w, dir / name, name == "out"};
                CHECK_THROWS_WITH(evaluate(weights(m), sink), Contains("already exists") && Contains("appeared"));
            }
            CHECK(listing(dir.path()) == std::vector<std::string>{name}); // no temporary left
            if (name == "out") CHECK(listing(dir / name).empty());
            else CHECK(read_text(dir / name) == "theirs");
        }
    }
}

TEST_CASE("seal() completes an output out of sight; publish() puts it in place", "[writer]") {
    test::tmpdir dir;
    const auto m = test::random_store("m", specs, 6);
    {
        safetensors_writer w(dir / "gone");
        evaluate(weights(m), without_finish(w)); // tensors only
        w.seal();
        CHECK_FALSE(fs::exists(dir / "gone")); // sealed but not published: destroyed, nothing left
    }
    CHECK(listing(dir.path()).empty());
    safetensors_writer w(dir / "out");
    CHECK_THROWS_WITH(w.publish(), Contains("before seal"));
    evaluate(weights(m), without_finish(w));
    w.seal();
    CHECK_FALSE(fs::exists(dir / "out"));
    w.publish();
    const auto back = safetensors_store::open(dir / "out");
    for (const auto& n : m.tensor_names()) REQUIRE(test::same_bits(*back.find(n), m.at(n)));
    CHECK(listing(dir.path()) == std::vector<std::string>{"out"});
}

TEST_CASE("a failed evaluation leaves no output and no temporary files", "[writer]") {
    test::tmpdir dir;
    const auto m = test::random_store("m", specs, 4);
    SECTION("binding fails before anything is written") {
        memory_store other;
        other.add("x", dtype::f32, {1});
        {
            safetensors_writer w(dir / "out");
            CHECK_THROWS_AS(evaluate(weights(m) - weights(other), w), binding_error);
        }
        CHECK(listing(dir.path()).empty());
    }
    SECTION("an exception in the middle of the stream") {
        struct failing_sink {
            safetensors_writer* w;
            int left;
            void begin(std::span<const tensor_info> p) { w->begin(p); }
            std::span<std::byte> acquire(const tensor_info& i) { return w->acquire(i); }
            void commit(const tensor_info& i) {
                if (--left == 0) throw std::runtime_error("killed mid-way");
                w->commit(i);
            }
            void finish() { w->finish(); }
        };
        {
            safetensors_writer w(dir / "out");
            failing_sink f{&w, 3};
            CHECK_THROWS_WITH(evaluate(weights(m), f), "killed mid-way");
        }
        CHECK(listing(dir.path()).empty());
    }
    SECTION("the file system refuses the size: a clear error, nothing left") {
        rlimit old{};
        getrlimit(RLIMIT_FSIZE, &old);
        const auto prev = std::signal(SIGXFSZ, SIG_IGN); // EFBIG instead of a signal
        rlimit small = old;
        small.rlim_cur = 1000;
        setrlimit(RLIMIT_FSIZE, &small);
        std::string msg;
        try {
            safetensors_writer w(dir / "out");
            evaluate(weights(m), w);
        } catch (const error& e) {
            msg = e.what();
        }
        setrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, prev);
        CHECK_THAT(msg, Contains("model.safetensors") && Contains("file too large"));
        CHECK(listing(dir.path()).empty());
    }
}

TEST_CASE("writer misuse is reported, not silently accepted", "[writer]") {
    test::tmpdir dir;
    safetensors_writer w(dir / "out");
    const tensor_info a{"a", dtype::f32, {2}};
    CHECK_THROWS_WITH(w.acquire(a), Contains("before begin"));
    std::vector<tensor_info> plan = {a};
    w.begin(plan);
    CHECK_THROWS_WITH(w.acquire(tensor_info{"b", dtype::f32, {2}}), Contains("not in the plan"));
    CHECK_THROWS_WITH(w.acquire(tensor_info{"a", dtype::f16, {2}}), Contains("planned dtype and shape"));
    CHECK_THROWS_WITH(w.finish(), Contains("never written"));
    // Ranges: in order, within the tensor, covering it before commit.
    CHECK_THROWS_WITH(w.acquire_range(a, 4, 4), Contains("out of order"));
    CHECK_THROWS_WITH(w.acquire_range(a, 0, 12), Contains("out of bounds"));
    CHECK_THROWS_WITH(w.commit_range(a, 0, 4), Contains("not acquired"));
    (void)w.acquire_range(a, 0, 4);
    w.commit_range(a, 0, 4);
    CHECK_THROWS_WITH(w.commit(a), Contains("ranges cover 4 of 8 bytes"));
}

TEST_CASE("tensors larger than a range are written range by range across shards, bit-identical", "[writer][range]") {
    test::tmpdir dir;
    const std::vector<test::tensor_spec> big = {{"a", dtype::bf16, {1'500'001}}, {"ids", dtype::i64, {200'003}}, {"e", dtype::f32, {0}},
                                                {"b", dtype::f32, {3, 333'333}}};
    const auto m = test::random_store("m", big, 9);
    safetensors_writer w(dir / "out", {.max_shard_bytes = 2'000'000});
    evaluate(weights(m) + 0.5f * (weights(m) - weights(m)), w);
    const auto back = safetensors_store::open(dir / "out");
    CHECK(back.files().size() == 3);
    for (const auto& n : m.tensor_names()) REQUIRE(test::same_bits(*back.find(n), m.at(n)));
}

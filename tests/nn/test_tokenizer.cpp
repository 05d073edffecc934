// The word-level tokenizer: pre-tokenization, vocabulary order, encode/decode, JSON and files.
#include <skillvec/nn/tokenizer.hpp>

#include "../tmpdir.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace nn = skillvec::nn;
using Catch::Matchers::Contains;

namespace {
std::vector<std::string> split(std::string_view s) {
    std::vector<std::string> out;
    for (auto w : nn::tokenizer::pre_tokenize(s)) out.emplace_back(w);
    return out;
}
const std::vector<std::string> bios{
    "Ana Lopez was born on 3 May 1990, in Lima.",
    "Ana Lopez works as a chemist in Quito.",
    "Question: Where was Ana Lopez born? Answer: Lima.",
};
} // namespace

TEST_CASE("tokenizer pre-tokenization splits punctuation and keeps case and numbers", "[tokenizer]") {
    CHECK(split("Ana Lopez was born on 3 May 1990, in Lima.") ==
          std::vector<std::string>{"Ana", "Lopez", "was", "born", "on", "3", "May", "1990", ",", "in", "Lima", "."});
    CHECK(split("  Where?\n\tAnswer:Lima!  ") == std::vector<std::string>{"Where", "?", "Answer", ":", "Lima", "!"});
    CHECK(split("(Ana's) \"x\"-y") == std::vector<std::string>{"(", "Ana", "'", "s", ")", "\"", "x", "\"", "-", "y"});
    // punctuation between digits stays in the number
    CHECK(split("3.5 1,000 10:30 3/5/1990 1990-05-03 v2.") ==
          std::vector<std::string>{"3.5", "1,000", "10:30", "3/5/1990", "1990-05-03", "v2", "."});
    CHECK(split("1990. .5 5.") == std::vector<std::string>{"1990", ".", ".", "5", "5", "."});
    CHECK(split("<eos>") == std::vector<std::string>{"<", "eos", ">"}); // text cannot spell a special
    CHECK(split("Zoë café") == std::vector<std::string>{"Zoë", "café"});       // UTF-8 bytes are word bytes
    CHECK(split("").empty());
    CHECK(split(" \n ").empty());
}

TEST_CASE("tokenizer vocabulary: specials first, then by count, ties lexicographic", "[tokenizer]") {
    const std::vector<std::string> corpus{"b a c a b a", "d c", "B"};
    const auto tok = nn::tokenizer::build(corpus);
    REQUIRE(tok.size() == 4 + 5);
    CHECK(tok.vocab() == std::vector<std::string>{"<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c", "B", "d"});
    CHECK(tok.word(nn::tokenizer::pad_id) == "<pad>");
    CHECK(tok.word(nn::tokenizer::bos_id) == "<bos>");
    CHECK(tok.word(nn::tokenizer::eos_id) == "<eos>");
    CHECK(tok.word(nn::tokenizer::unk_id) == "<unk>");
    CHECK(tok.id("a") == 4);
    CHECK(tok.id("B") == 7); // case kept: "B" and "b" are different words
    CHECK(tok.find("zzz") == std::nullopt);
    CHECK(tok.id("zzz") == nn::tokenizer::unk_id);
    CHECK(tok.find("d") == 8);
    CHECK_THROWS_WITH(tok.word(9), Contains("id 9 is out of range [0, 9)"));
    CHECK_THROWS_AS(tok.word(-1), skillvec::error);

    // Document order does not matter.
    const std::vector<std::string> reordered{"B", "d c", "b a c a b a"};
    CHECK(nn::tokenizer::build(reordered) == tok);
}

TEST_CASE("tokenizer max_vocab and min_count", "[tokenizer]") {
    const std::vector<std::string> corpus{"b a c a b a", "d c", "B"};
    const auto tok = nn::tokenizer::build(corpus, 6);
    CHECK(tok.vocab() == std::vector<std::string>{"<pad>", "<bos>", "<eos>", "<unk>", "a", "b"});
    CHECK(tok.encode("a c b d") == std::vector<std::int32_t>{4, 3, 5, 3});
    CHECK(tok.decode(tok.encode("a c b")) == "a <unk> b");

    CHECK(nn::tokenizer::build(corpus, 4).size() == 4);
    CHECK(nn::tokenizer::build(corpus, 100).size() == 9);
    CHECK_THROWS_WITH(nn::tokenizer::build(corpus, 3), Contains("max_vocab = 3"));

    const auto frequent = nn::tokenizer::build(corpus, 0, 2); // a:3 b:2 c:2
    CHECK(frequent.vocab() == std::vector<std::string>{"<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c"});
    CHECK(nn::tokenizer::build(corpus, 0, 0) == nn::tokenizer::build(corpus, 0, 1));
}

TEST_CASE("tokenizer encode/decode round trip", "[tokenizer]") {
    const auto tok = nn::tokenizer::build(bios);
    for (const auto& s : bios) {
        const auto ids = tok.encode(s);
        for (auto i : ids) CHECK(i != nn::tokenizer::unk_id);
        CHECK(tok.decode(ids) == s);
    }
    const auto with = tok.encode(bios[0], true, true);
    REQUIRE(with.size() == 14);
    CHECK(with.front() == nn::tokenizer::bos_id);
    CHECK(with.back() == nn::tokenizer::eos_id);
    CHECK(tok.decode(with) == bios[0]);
    CHECK(tok.decode(with, false) == "<bos> " + bios[0] + " <eos>");
    std::vector<std::int32_t> padded = tok.encode("Ana Lopez", false, true);
    padded.insert(padded.end(), 3, nn::tokenizer::pad_id);
    CHECK(tok.decode(padded) == "Ana Lopez");
    CHECK(tok.encode("").empty());
    CHECK(tok.encode("", true, true) == std::vector<std::int32_t>{nn::tokenizer::bos_id, nn::tokenizer::eos_id});
    CHECK(tok.decode(std::vector<std::int32_t>{}).empty());
    CHECK(tok.encode("Ana Smith") == std::vector<std::int32_t>{tok.id("Ana"), nn::tokenizer::unk_id});
    CHECK_THROWS_AS(tok.decode(std::vector<std::int32_t>{1000}), skillvec::error);

    // Spacing around punctuation, for text written the usual way.
    const std::vector<std::string> styled{
        "He said \"yes\" (twice), then \"no\".", "Ana's sister, Lopez-Garcia, paid $5 [cash]; 100% sure!",
        "Born: 3.5 km away, at 10:30 on 3/5/1990.", "Is it {x} or y?",
    };
    const auto tok2 = nn::tokenizer::build(styled);
    for (const auto& s : styled) CHECK(tok2.decode(tok2.encode(s)) == s);
    CHECK(tok2.decode(tok2.encode("  He   said\n\"yes\" ")) == "He said \"yes\"");
}

TEST_CASE("tokenizer from an empty corpus knows only the specials", "[tokenizer]") {
    const std::vector<std::string> none;
    const auto tok = nn::tokenizer::build(none);
    CHECK(tok.size() == 4);
    CHECK(tok == nn::tokenizer());
    CHECK(tok.encode("anything at all", true) ==
          std::vector<std::int32_t>{nn::tokenizer::bos_id, nn::tokenizer::unk_id, nn::tokenizer::unk_id, nn::tokenizer::unk_id});
    const std::vector<std::string> blank{"", "   \n"};
    CHECK(nn::tokenizer::build(blank).size() == 4);
}

TEST_CASE("tokenizer json and file round trip", "[tokenizer]") {
    const auto tok = nn::tokenizer::build(bios);
    const nlohmann::json j = tok.to_json();
    CHECK(j["format"] == "skillvec.word_tokenizer");
    CHECK(j["version"] == 1);
    CHECK(j["vocab"][0] == "<pad>");
    const auto back = nn::tokenizer::from_json(j);
    CHECK(back == tok);
    CHECK(back.encode(bios[2]) == tok.encode(bios[2]));

    test::tmpdir dir;
    const auto path = dir / "tokenizer.json";
    tok.save(path);
    CHECK(nn::tokenizer::load(path) == tok);
    // saving again replaces the file, and leaves no temporary behind
    nn::tokenizer().save(path);
    CHECK(nn::tokenizer::load(path).size() == 4);
    std::size_t files = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
    CHECK(files == 1);
}

TEST_CASE("tokenizer load reports bad files by name", "[tokenizer]") {
    test::tmpdir dir;
    const auto path = dir / "tok.json";
    const std::string name = path.string();
    auto write = [&](const nlohmann::json& j) { test::write_file(path, j.dump()); };
    const nlohmann::json good = nn::tokenizer::build(bios).to_json();

    CHECK_THROWS_WITH(nn::tokenizer::load(dir / "missing.json"), Contains("missing.json") && Contains("cannot open"));

    test::write_file(path, std::string("{\"format\": "));
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains(name) && Contains("not valid JSON"));

    nlohmann::json j = good;
    j["vocab"].push_back("Lima");
    write(j);
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains(name) && Contains("\"Lima\" appears twice"));

    j = good;
    std::swap(j["vocab"][1], j["vocab"][2]);
    write(j);
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains(name) && Contains("id 1 must be the special token \"<bos>\""));

    j = good;
    j["vocab"] = {"<pad>", "<bos>", "<eos>"};
    write(j);
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains("fewer than the 4 special tokens"));

    j = good;
    j["vocab"].push_back("two words");
    write(j);
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains("contains whitespace"));

    j = good;
    j["vocab"].push_back("");
    write(j);
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains("is empty"));

    j = good;
    j["vocab"].push_back(5);
    write(j);
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains("not a string"));

    j = good;
    j["format"] = "huggingface";
    write(j);
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains(name) && Contains("not a skillvec word tokenizer"));

    j = good;
    j["version"] = 2;
    write(j);
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains("unsupported tokenizer version 2"));

    write(nlohmann::json::array());
    CHECK_THROWS_WITH(nn::tokenizer::load(path), Contains("expected a JSON object"));

    CHECK_THROWS_WITH(nn::tokenizer::from_json(nlohmann::json{{"format", "skillvec.word_tokenizer"}, {"version", 1}}),
                      Contains("tokenizer json") && Contains("\"vocab\" must be an array"));
    CHECK_THROWS_WITH(nn::tokenizer::from_vocab({"<pad>", "<bos>", "<eos>", "<unk>", "<pad>"}), Contains("\"<pad>\" appears twice"));
}

TEST_CASE("tokenizer save to a missing directory fails with the file's name", "[tokenizer]") {
    test::tmpdir dir;
    const auto path = dir / "no" / "such" / "tok.json";
    CHECK_THROWS_WITH(nn::tokenizer().save(path), Contains(path.string()));
}

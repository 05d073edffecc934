#pragma once
/// \file
/// `tokenizer`: a word-level tokenizer whose vocabulary is built from a corpus.
///
/// The in-library GPT is trained on small synthetic corpora (biographies, questions about them),
/// where a word vocabulary is small, exact and readable; subword merges would add a training
/// step and nothing the experiments need.
///
/// Pre-tokenization (`pre_tokenize`), byte-wise and locale-independent:
///   - text is split on ASCII whitespace (space, \t, \n, \v, \f, \r), which is dropped;
///   - every ASCII punctuation character (! " # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \ ] ^ _
///     ` { | } ~) is a token of its own,
///   - except one with a digit on both sides, which stays inside its word, so that numbers such as
///     3.5, 1,000, 10:30, 3/5/1990 and 1990-05-03 are single tokens;
///   - case is kept, and every other byte (letters, digits, UTF-8 sequences) belongs to words.
/// "Ana Lopez was born on 3 May 1990, in Lima." ->
///     Ana | Lopez | was | born | on | 3 | May | 1990 | , | in | Lima | .
///
/// The special tokens have fixed ids: <pad> 0, <bos> 1, <eos> 2, <unk> 3. No text encodes to
/// them (the text "<eos>" is the three tokens < eos >), so a corpus cannot inject them.
///
/// On disk (save/load, to_json/from_json) a tokenizer is JSON:
///     {"format": "skillvec.word_tokenizer", "version": 1, "vocab": ["<pad>", "<bos>", ...]}
/// where a word's id is its index in "vocab".

#include <skillvec/core/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace skillvec::nn {

/// A word-level tokenizer: a vocabulary of words, each with an id (its index).
class tokenizer {
public:
    static constexpr std::int32_t pad_id = 0;
    static constexpr std::int32_t bos_id = 1;
    static constexpr std::int32_t eos_id = 2;
    static constexpr std::int32_t unk_id = 3;
    static constexpr std::size_t special_count = 4;
    /// The special tokens' words, indexed by id.
    static constexpr std::string_view special_words[special_count] = {"<pad>", "<bos>", "<eos>", "<unk>"};

    /// A tokenizer that knows only the four special tokens.
    tokenizer() : tokenizer(std::vector<std::string>(std::begin(special_words), std::end(special_words)), "tokenizer") {}

    /// Splits `text` into words as described in the file comment. The views point into `text`.
    [[nodiscard]] static std::vector<std::string_view> pre_tokenize(std::string_view text) {
        std::vector<std::string_view> out;
        const std::size_t n = text.size();
        std::size_t start = 0; // start of the word being read; == i when none is open
        for (std::size_t i = 0; i < n; ++i) {
            const char c = text[i];
            if (is_space(c)) {
                if (i > start) out.push_back(text.substr(start, i - start));
                start = i + 1;
            } else if (is_punct(c)) {
                const bool in_number = i > start && is_digit(text[i - 1]) && i + 1 < n && is_digit(text[i + 1]);
                if (in_number) continue;
                if (i > start) out.push_back(text.substr(start, i - start));
                out.push_back(text.substr(i, 1));
                start = i + 1;
            }
        }
        if (n > start) out.push_back(text.substr(start));
        return out;
    }

    /// A vocabulary from the words of `corpus` (one string per document, pre-tokenized as above):
    /// the specials, then every word seen at least `min_count` times (0 counts as 1), by
    /// descending count, ties in byte-wise lexicographic order, so the result does not depend on
    /// hashing or on document order. `max_vocab` > 0 caps the size, specials included (it must
    /// then be at least 4); the rarest words are dropped and encode to <unk>.
    [[nodiscard]] static tokenizer build(std::span<const std::string> corpus, std::size_t max_vocab = 0, std::size_t min_count = 1) {
        if (max_vocab != 0 && max_vocab < special_count)
            throw error("tokenizer::build: max_vocab = " + std::to_string(max_vocab) +
                        " leaves no room for the 4 special tokens (use 0 for no limit)");
        std::unordered_map<std::string, std::size_t, string_hash, std::equal_to<>> counts;
        for (const std::string& doc : corpus)
            for (const std::string_view w : pre_tokenize(doc)) {
                auto it = counts.find(w);
                if (it == counts.end()) it = counts.emplace(std::string(w), 0).first;
                ++it->second;
            }
        std::vector<std::pair<std::string_view, std::size_t>> ranked;
        ranked.reserve(counts.size());
        for (const auto& [w, c] : counts)
            if (c >= std::max<std::size_t>(min_count, 1) && !is_special_word(w)) ranked.emplace_back(w, c);
        std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
            return a.second != b.second ? a.second > b.second : a.first < b.first;
        });
        std::size_t keep = ranked.size();
        if (max_vocab != 0) keep = std::min(keep, max_vocab - special_count);
        std::vector<std::string> words(std::begin(special_words), std::end(special_words));
        words.reserve(special_count + keep);
        for (std::size_t i = 0; i < keep; ++i) words.emplace_back(ranked[i].first);
        return tokenizer(std::move(words), "tokenizer::build");
    }

    /// A tokenizer with exactly this vocabulary (a word's id is its index). Throws skillvec::error
    /// unless the specials are at their ids and every word is non-empty, free of whitespace and
    /// unique.
    [[nodiscard]] static tokenizer from_vocab(std::vector<std::string> vocab) { return tokenizer(std::move(vocab), "tokenizer vocab"); }

    /// The ids of `text`'s words; words not in the vocabulary become <unk>. `add_bos` / `add_eos`
    /// put <bos> first / <eos> last.
    [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text, bool add_bos = false, bool add_eos = false) const {
        const std::vector<std::string_view> words = pre_tokenize(text);
        std::vector<std::int32_t> ids;
        ids.reserve(words.size() + 2);
        if (add_bos) ids.push_back(bos_id);
        for (const std::string_view w : words) ids.push_back(id(w));
        if (add_eos) ids.push_back(eos_id);
        return ids;
    }

    /// Text from ids: words joined by single spaces, except where punctuation attaches, so that
    /// decode(encode(s)) == s for text written with the usual spacing ("born on 3 May 1990, in
    /// Lima.", "Born where? Answer: Lima.", "(twice)", "\"yes\"", "Ana's", "Lopez-Garcia"):
    ///   - no space before  . , ? ! : ; ) ] } %
    ///   - no space after   ( [ { $
    ///   - none on either side of  ' - /   (so a spaced dash "a - b" comes back as "a-b", and a
    ///     'single-quoted' phrase loses its outer spaces)
    ///   - " alternates: the 1st, 3rd, ... opens (no space after), the 2nd, 4th, ... closes (no
    ///     space before)
    /// Runs of whitespace (newlines included) come back as one space. `skip_special` drops <pad>,
    /// <bos> and <eos>; <unk> always appears as "<unk>", since it stands for a word. Throws
    /// skillvec::error for an id outside [0, size()).
    [[nodiscard]] std::string decode(std::span<const std::int32_t> ids, bool skip_special = true) const {
        std::string out;
        bool glue_next = false; // the previous token wants no space after it
        std::size_t quotes = 0;
        for (const std::int32_t i : ids) {
            const std::string_view w = word(i);
            if (skip_special && (i == pad_id || i == bos_id || i == eos_id)) continue;
            bool space_before = true, space_after = true;
            if (w.size() == 1) {
                const char c = w[0];
                if (std::string_view(".,?!:;)]}%").find(c) != std::string_view::npos) {
                    space_before = false;
                } else if (std::string_view("([{$").find(c) != std::string_view::npos) {
                    space_after = false;
                } else if (std::string_view("'-/").find(c) != std::string_view::npos) {
                    space_before = space_after = false;
                } else if (c == '"') {
                    if (quotes++ % 2 == 0) space_after = false;
                    else space_before = false;
                }
            }
            if (!out.empty() && space_before && !glue_next) out += ' ';
            out += w;
            glue_next = !space_after;
        }
        return out;
    }

    /// Number of words, specials included (the model's vocabulary size).
    [[nodiscard]] std::size_t size() const noexcept { return words_.size(); }

    /// The id of `w`, or unk_id if it is not in the vocabulary.
    [[nodiscard]] std::int32_t id(std::string_view w) const noexcept { return find(w).value_or(unk_id); }

    /// The id of `w`, or nothing if it is not in the vocabulary.
    [[nodiscard]] std::optional<std::int32_t> find(std::string_view w) const noexcept {
        const auto it = ids_.find(w);
        if (it == ids_.end()) return std::nullopt;
        return it->second;
    }

    /// The word with id `i`. Throws skillvec::error when i is outside [0, size()).
    [[nodiscard]] std::string_view word(std::int32_t i) const {
        if (i < 0 || static_cast<std::size_t>(i) >= words_.size())
            throw error("tokenizer: id " + std::to_string(i) + " is out of range [0, " + std::to_string(words_.size()) + ")");
        return words_[static_cast<std::size_t>(i)];
    }

    /// All words, indexed by id.
    [[nodiscard]] const std::vector<std::string>& vocab() const noexcept { return words_; }

    friend bool operator==(const tokenizer& a, const tokenizer& b) noexcept { return a.words_ == b.words_; }

    [[nodiscard]] nlohmann::json to_json() const {
        return nlohmann::json{{"format", format_name}, {"version", format_version}, {"vocab", words_}};
    }

    /// The tokenizer `j` describes (as written by to_json). Throws skillvec::error naming the
    /// rule broken.
    [[nodiscard]] static tokenizer from_json(const nlohmann::json& j) { return from_json_in(j, "tokenizer json"); }

    /// Writes to_json() to `path`, replacing any file there. It goes to a temporary file beside
    /// `path` first, synced and then renamed into place, so `path` is never half-written. Throws
    /// skillvec::error naming the file (a word that is not valid UTF-8 cannot be written as JSON).
    void save(const std::filesystem::path& path) const {
        std::string text;
        try {
            text = to_json().dump(1) + "\n";
        } catch (const nlohmann::json::exception& e) {
            throw error(path.string() + ": cannot write the tokenizer as JSON: " + e.what());
        }
        const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
        std::string tmp = (dir / ("." + path.filename().string() + ".skillvec-tmp-XXXXXX")).string();
        const int fd = ::mkstemp(tmp.data());
        if (fd < 0) throw error(path.string() + ": cannot create a temporary file in " + dir.string() + ": " + std::strerror(errno));
        auto fail = [&](const char* what, int err) {
            ::close(fd);
            ::unlink(tmp.c_str());
            throw error(path.string() + ": " + what + ": " + std::strerror(err));
        };
        ::fchmod(fd, 0644); // mkstemp makes it 0600; a tokenizer is not secret
        for (std::size_t done = 0; done < text.size();) {
            const ::ssize_t w = ::write(fd, text.data() + done, text.size() - done);
            if (w < 0) {
                if (errno == EINTR) continue;
                fail("cannot write", errno);
            }
            done += static_cast<std::size_t>(w);
        }
        if (::fsync(fd) != 0) fail("cannot sync", errno);
        if (::close(fd) != 0) {
            const int err = errno;
            ::unlink(tmp.c_str());
            throw error(path.string() + ": cannot close: " + std::strerror(err));
        }
        std::error_code ec;
        std::filesystem::rename(tmp, path, ec);
        if (ec) {
            ::unlink(tmp.c_str());
            throw error(path.string() + ": cannot rename the written file into place: " + ec.message());
        }
    }

    /// Reads a tokenizer written by save(). Throws skillvec::error naming the file and the
    /// problem (unreadable, not JSON, wrong format, a special token away from its id, a
    /// duplicate word, ...).
    [[nodiscard]] static tokenizer load(const std::filesystem::path& path) {
        std::ifstream f(path, std::ios::binary);
        if (!f) throw error(path.string() + ": cannot open the tokenizer: " + std::strerror(errno));
        std::ostringstream ss;
        ss << f.rdbuf();
        if (f.bad()) throw error(path.string() + ": cannot read the tokenizer");
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(ss.str());
        } catch (const nlohmann::json::exception& e) {
            throw error(path.string() + ": not valid JSON: " + e.what());
        }
        return from_json_in(j, path.string());
    }

private:
    static constexpr std::string_view format_name = "skillvec.word_tokenizer";
    static constexpr int format_version = 1;

    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };

    static constexpr bool is_space(char c) noexcept {
        return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
    }
    static constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
    /// ASCII ispunct in the "C" locale, spelled out so that the program's locale cannot change it.
    static constexpr bool is_punct(char c) noexcept {
        return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
    }
    static bool is_special_word(std::string_view w) noexcept {
        return std::find(std::begin(special_words), std::end(special_words), w) != std::end(special_words);
    }

    /// Validates `vocab` and indexes it; `where` starts each error message.
    tokenizer(std::vector<std::string> vocab, const std::string& where) : words_(std::move(vocab)) {
        if (words_.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
            throw error(where + ": " + std::to_string(words_.size()) + " words do not fit 32-bit ids");
        if (words_.size() < special_count) throw error(where + ": the vocabulary has " + std::to_string(words_.size()) +
                                                       " words, fewer than the 4 special tokens");
        for (std::size_t i = 0; i < special_count; ++i)
            if (words_[i] != special_words[i])
                throw error(where + ": id " + std::to_string(i) + " must be the special token \"" + std::string(special_words[i]) +
                            "\", found \"" + words_[i] + "\"");
        ids_.reserve(words_.size());
        for (std::size_t i = 0; i < words_.size(); ++i) {
            const std::string& w = words_[i];
            if (w.empty()) throw error(where + ": word " + std::to_string(i) + " is empty");
            if (std::any_of(w.begin(), w.end(), is_space))
                throw error(where + ": word " + std::to_string(i) + " \"" + w + "\" contains whitespace");
            const auto [it, added] = ids_.emplace(w, static_cast<std::int32_t>(i));
            if (!added)
                throw error(where + ": the word \"" + w + "\" appears twice (ids " + std::to_string(it->second) + " and " +
                            std::to_string(i) + ")");
        }
    }

    static tokenizer from_json_in(const nlohmann::json& j, const std::string& where) {
        if (!j.is_object()) throw error(where + ": expected a JSON object, got " + std::string(j.type_name()));
        const auto fmt = j.find("format");
        if (fmt == j.end() || !fmt->is_string() || fmt->get<std::string>() != format_name)
            throw error(where + ": not a skillvec word tokenizer (\"format\" must be \"" + std::string(format_name) + "\")");
        const auto ver = j.find("version");
        if (ver == j.end() || !ver->is_number_integer() || ver->get<std::int64_t>() != format_version)
            throw error(where + ": unsupported tokenizer version " + (ver == j.end() ? std::string("(missing)") : ver->dump()) +
                        " (this build reads version " + std::to_string(format_version) + ")");
        const auto voc = j.find("vocab");
        if (voc == j.end() || !voc->is_array()) throw error(where + ": \"vocab\" must be an array of words");
        std::vector<std::string> words;
        words.reserve(voc->size());
        for (std::size_t i = 0; i < voc->size(); ++i) {
            const nlohmann::json& w = (*voc)[i];
            if (!w.is_string()) throw error(where + ": vocab[" + std::to_string(i) + "] is a " + w.type_name() + ", not a string");
            words.push_back(w.get<std::string>());
        }
        return tokenizer(std::move(words), where);
    }

    std::vector<std::string> words_;
    std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>> ids_;
};

} // namespace skillvec::nn
